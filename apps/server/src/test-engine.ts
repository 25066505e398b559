/**
 * A small deterministic engine implementing the `KascadeEngine` contract, for tests of the
 * server's HTTP behaviour (timing, queueing, cancellation) without running a model.
 * Its tokens are words picked from the prompt's hash; it counts one token per word.
 */
import { KascadeRangeError } from '@kascade/core';
import type {
  ChatMessage,
  FinishReason,
  GenerateInput,
  GenerateOptions,
  Generation,
  GenerationChunk,
  GenerationUsage,
  KascadeEngine,
  ModelInfo,
  PolicySpec,
} from '@kascade/engine';

const WORDS = ['alpha', 'beta', 'gamma', 'delta', 'kappa', 'lambda', 'sigma', 'omega', 'tau', 'zeta'];

export interface TestEngineOptions {
  /** Milliseconds before each generated token. */
  readonly tokenDelayMs?: number;
  /** Milliseconds of "prefill", spent in 4 slices with an abort check between them. */
  readonly prefillDelayMs?: number;
  readonly maxContext?: number;
  readonly defaultPlan?: unknown;
  /** Prompts containing this string make `generate` throw (to test 500s). */
  readonly failOn?: string;
  /** Keep generating after the abort signal (a misbehaving engine). */
  readonly ignoreAbort?: boolean;
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

function textOf(input: GenerateInput): string {
  return typeof input === 'string'
    ? input
    : input.map((m: ChatMessage) => `${m.role}: ${m.content}`).join('\n');
}

function hash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
  return h;
}

export class TestEngine implements KascadeEngine {
  readonly model: ModelInfo;
  readonly backend = { backend: 'cpu', reason: 'test engine' } as const;
  readonly defaultPlan: unknown;
  /** Generations started and not yet finished (the "KV caches" held). */
  live = 0;
  started = 0;
  aborted = 0;
  /** Tokens yielded by all generations. */
  yielded = 0;
  /** Options of the latest `generate` call. */
  lastOptions: GenerateOptions | undefined;
  lastInput: GenerateInput | undefined;
  readonly #options: TestEngineOptions;

  constructor(options: TestEngineOptions = {}) {
    this.#options = options;
    this.defaultPlan = options.defaultPlan;
    this.model = {
      id: 'test-engine (deterministic)',
      architecture: 'test',
      layers: 4,
      heads: 4,
      kvHeads: 2,
      headDim: 8,
      vocabSize: WORDS.length,
      maxContext: options.maxContext ?? 512,
      randomWeights: true,
    };
  }

  countTokens(input: GenerateInput): number {
    const words = textOf(input)
      .split(/\s+/)
      .filter((w) => w !== '').length;
    return typeof input === 'string' ? words : words + 3;
  }

  generate(input: GenerateInput, options: GenerateOptions = {}): Generation {
    const text = textOf(input);
    if (this.#options.failOn !== undefined && text.includes(this.#options.failOn)) {
      throw new Error('test engine: asked to fail');
    }
    if (text.includes('RANGE_ERROR')) throw new KascadeRangeError('test engine: an argument out of range');
    this.lastOptions = options;
    this.lastInput = input;
    const promptTokens = this.countTokens(input);
    const maxTokens = options.maxTokens ?? 128;
    const policy: PolicySpec = options.policy ?? { kind: 'dense' };
    const signal = this.#options.ignoreAbort ? undefined : options.signal;
    const tokenDelayMs = this.#options.tokenDelayMs ?? 0;
    const prefillDelayMs = this.#options.prefillDelayMs ?? 0;
    const stop = options.stop ?? [];
    this.live++;
    this.started++;
    const t0 = performance.now();
    let prefillMs = 0;
    let produced = 0;
    let settled = false;
    let resolveUsage: (usage: GenerationUsage) => void = () => {};
    const usage = new Promise<GenerationUsage>((resolve) => {
      resolveUsage = resolve;
    });
    const finish = (finishReason: FinishReason): void => {
      if (settled) return;
      settled = true;
      this.live--;
      if (finishReason === 'abort') this.aborted++;
      const totalMs = performance.now() - t0;
      const decodeMs = Math.max(totalMs - prefillMs, 1e-3);
      const contextKeys = promptTokens + produced / 2;
      const sparse = policy.kind !== 'dense';
      resolveUsage({
        promptTokens,
        completionTokens: produced,
        prefillTokensPerS: promptTokens / (Math.max(prefillMs, 1e-3) / 1000),
        decodeTokensPerS: produced / (decodeMs / 1000),
        attentionMs: totalMs / 2,
        totalMs,
        finishReason,
        kascade: {
          policy: policy.kind,
          effectiveK: sparse ? Math.max(1, Math.ceil(contextKeys / 10)) : contextKeys,
          contextKeys,
          anchorLayers: policy.kind === 'kascade' ? [0, 2] : [],
          anchorsHit: policy.kind === 'kascade' ? 2 * produced : 0,
        },
      });
    };
    const seed = hash(text) ^ (options.seed ?? 0);
    const engine = this;
    async function* run(): AsyncGenerator<GenerationChunk> {
      try {
        for (let slice = 0; slice < 4; slice++) {
          if (signal?.aborted) return finish('abort');
          await sleep(prefillDelayMs / 4);
        }
        prefillMs = performance.now() - t0;
        if (text.includes('STOP_EARLY') && maxTokens > 2) {
          for (let i = 0; i < 2; i++) {
            produced++;
            yield { tokenId: i, text: `${WORDS[i]} ` };
          }
          return finish('stop');
        }
        for (let i = 0; i < maxTokens; i++) {
          if (signal?.aborted) return finish('abort');
          await sleep(tokenDelayMs);
          if (signal?.aborted) return finish('abort');
          const tokenId = (seed + i * 7) % WORDS.length;
          const word = WORDS[tokenId]!;
          if (stop.some((s) => `${word} `.includes(s))) return finish('stop');
          produced++;
          engine.yielded++;
          yield { tokenId, text: `${word} ` };
        }
        finish('length');
      } finally {
        finish('abort');
      }
    }
    const iterator = run();
    return { usage, [Symbol.asyncIterator]: () => iterator };
  }

  async dispose(): Promise<void> {}
}
