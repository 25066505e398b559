/**
 * The generation loop: prefill in query tiles (yielding to the event loop and checking the
 * abort signal between tiles), then decode token by token with sampling, streaming text
 * that is correct across multi-byte UTF-8, stop strings that are never emitted, and usage.
 */
import { KascadeRangeError } from '@kascade/core';
import type { FinishReason, GenerateOptions, Generation, GenerationChunk, GenerationUsage } from './api.js';
import type { LayerAttention } from './model/hooks.js';
import type { AttentionPolicy } from './policies/index.js';
import { createSampler } from './sampling.js';

/** The part of a model the generation loop uses (the CPU model implements it). */
export interface GenerationModel<S = unknown> {
  readonly config: { readonly maxContext: number };
  readonly tokenizer: {
    decode(ids: readonly number[]): string;
    readonly eosTokenIds: readonly number[];
  };
  createSequence(capacity: number): S;
  prefill(
    seq: S,
    tokenIds: Int32Array | number[],
    attention: LayerAttention,
    options?: { tileSize?: number; signal?: AbortSignal },
  ): Float32Array;
  decode(seq: S, tokenId: number, attention: LayerAttention): Float32Array;
}

/**
 * Streams text from token ids without splitting multi-byte characters: it decodes a short
 * window that starts a few tokens back (so word-boundary spaces come out right) and holds
 * output while the window ends in an incomplete character (U+FFFD).
 */
export class IncrementalDetokenizer {
  private readonly ids: number[];
  private prefixOffset = 0;
  private readOffset: number;

  constructor(
    private readonly decodeIds: (ids: readonly number[]) => string,
    context: readonly number[] = [],
  ) {
    this.ids = context.slice(-4);
    this.readOffset = this.ids.length;
  }

  /** Adds a token; returns the text it completes ('' while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const prefix = this.decodeIds(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.decodeIds(this.ids.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return full.slice(prefix.length);
    }
    return '';
  }

  /** Whatever is still held (an incomplete character comes out as U+FFFD). */
  flush(): string {
    const prefix = this.decodeIds(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.decodeIds(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }
}

/**
 * Holds back text that could be the start of a stop string, and cuts the output before
 * the first stop string that appears: the stop string itself is never emitted.
 */
export class StopStringFilter {
  private pending = '';
  private readonly stops: readonly string[];

  constructor(stops: readonly string[] = []) {
    for (const s of stops) {
      if (typeof s !== 'string' || s.length === 0) {
        throw new KascadeRangeError(`stop strings must be non-empty strings, got ${JSON.stringify(s)}`);
      }
    }
    this.stops = stops;
  }

  /** Adds text; returns what may be emitted now and whether a stop string was reached. */
  push(text: string): { text: string; stopped: boolean } {
    this.pending += text;
    let cut = -1;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      const out = this.pending.slice(0, cut);
      this.pending = '';
      return { text: out, stopped: true };
    }
    let hold = 0;
    for (const s of this.stops) {
      for (let len = Math.min(s.length - 1, this.pending.length); len > hold; len--) {
        if (this.pending.endsWith(s.slice(0, len))) {
          hold = len;
          break;
        }
      }
    }
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { text: out, stopped: false };
  }

  /** Releases held text at the end of generation (no stop string completed). */
  flush(): string {
    const out = this.pending;
    this.pending = '';
    return out;
  }
}

export interface RunGenerationArgs<S> {
  readonly model: GenerationModel<S>;
  readonly promptIds: readonly number[];
  /** A fresh policy for this sequence. */
  readonly policy: AttentionPolicy;
  readonly options?: GenerateOptions;
  /** Query tile size for prefill (the plan's, or 32). */
  readonly tileSize: number;
  /** Tiles per prefill call between event-loop yields and abort checks (default 1). */
  readonly tilesPerChunk?: number;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Checks the options that do not depend on the model, throwing a typed error naming the field. */
export function validateGenerateOptions(options: GenerateOptions): void {
  const { maxTokens = 128 } = options;
  if (!(Number.isInteger(maxTokens) && maxTokens >= 0)) {
    throw new KascadeRangeError(`maxTokens must be a non-negative integer, got ${maxTokens}`);
  }
  if (options.stop !== undefined && !Array.isArray(options.stop)) {
    throw new KascadeRangeError('stop must be an array of strings');
  }
}

/** Starts a generation; nothing runs until the result is iterated. */
export function runGeneration<S>(args: RunGenerationArgs<S>): Generation {
  const options = args.options ?? {};
  validateGenerateOptions(options);
  const maxTokens = options.maxTokens ?? 128;
  const sample = createSampler(options);
  const stopFilter = new StopStringFilter(options.stop ?? []);
  const { model, promptIds, policy, tileSize } = args;
  const tilesPerChunk = args.tilesPerChunk ?? 1;
  if (promptIds.length === 0) throw new KascadeRangeError('the prompt has no tokens');
  const capacity = promptIds.length + maxTokens;
  if (capacity > model.config.maxContext) {
    throw new KascadeRangeError(
      `prompt tokens (${promptIds.length}) + maxTokens (${maxTokens}) = ${capacity} exceeds the model's context of ${model.config.maxContext}`,
    );
  }

  let resolveUsage!: (u: GenerationUsage) => void;
  let rejectUsage!: (e: unknown) => void;
  const usage = new Promise<GenerationUsage>((res, rej) => {
    resolveUsage = res;
    rejectUsage = rej;
  });
  // Callers that only iterate must not see an unhandled rejection; those who await `usage` still get it.
  usage.catch(() => {});

  async function* run(): AsyncGenerator<GenerationChunk> {
    const t0 = performance.now();
    let prefillMs = 0;
    let decodeMs = 0;
    let decodeSteps = 0;
    let completionTokens = 0;
    let finishReason: FinishReason = 'length';
    let settled = false;
    const signal = options.signal;
    const eos = new Set(model.tokenizer.eosTokenIds);
    const detok = new IncrementalDetokenizer((ids) => model.tokenizer.decode(ids), promptIds);
    const finish = () => {
      settled = true;
      const prefillS = prefillMs / 1000;
      const decodeS = decodeMs / 1000;
      resolveUsage({
        promptTokens: promptIds.length,
        completionTokens,
        prefillTokensPerS: prefillS > 0 ? promptIds.length / prefillS : 0,
        decodeTokensPerS: decodeS > 0 ? decodeSteps / decodeS : 0,
        attentionMs: policy.stats.attentionMs,
        totalMs: performance.now() - t0,
        finishReason,
        kascade: policy.usage(),
      });
    };
    try {
      const seq = model.createSequence(capacity);
      const chunk = tileSize * tilesPerChunk;
      let logits: Float32Array | undefined;
      for (let start = 0; start < promptIds.length; start += chunk) {
        if (signal?.aborted) {
          finishReason = 'abort';
          return;
        }
        const ids = promptIds.slice(start, start + chunk) as number[];
        const tp = performance.now();
        logits = model.prefill(seq, ids, policy, { tileSize, signal });
        prefillMs += performance.now() - tp;
        if (start + chunk < promptIds.length) await yieldToEventLoop();
      }
      for (let step = 0; step < maxTokens; step++) {
        if (signal?.aborted) {
          finishReason = 'abort';
          return;
        }
        const id = sample(logits!);
        if (eos.has(id)) {
          finishReason = 'stop';
          const rest = stopFilter.push(detok.flush());
          const text = rest.stopped ? rest.text : rest.text + stopFilter.flush();
          if (text.length > 0) yield { tokenId: id, text };
          return;
        }
        completionTokens++;
        const last = step === maxTokens - 1;
        let piece = detok.push(id);
        if (last) piece += detok.flush();
        const out = stopFilter.push(piece);
        if (out.stopped) {
          finishReason = 'stop';
          if (out.text.length > 0) yield { tokenId: id, text: out.text };
          return;
        }
        const text = last ? out.text + stopFilter.flush() : out.text;
        yield { tokenId: id, text };
        if (last) break;
        await yieldToEventLoop();
        if (signal?.aborted) {
          finishReason = 'abort';
          return;
        }
        const td = performance.now();
        logits = model.decode(seq, id, policy);
        decodeMs += performance.now() - td;
        decodeSteps++;
      }
      finishReason = 'length';
    } catch (error) {
      if (signal?.aborted) {
        finishReason = 'abort';
        return;
      }
      settled = true;
      rejectUsage(error);
      throw error;
    } finally {
      // An early `break` by the consumer lands here too: it counts as an abort.
      if (!settled) {
        if (finishReason === 'length' && completionTokens < maxTokens && !signal?.aborted)
          finishReason = 'abort';
        finish();
      }
    }
  }

  let iterated = false;
  return {
    usage,
    [Symbol.asyncIterator]() {
      if (iterated) throw new KascadeRangeError('a Generation can be iterated only once');
      iterated = true;
      return run();
    },
  };
}
