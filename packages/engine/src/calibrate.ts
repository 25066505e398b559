/**
 * Calibration: run the model densely over a development set with recording on, feed
 * `@kascade/anchors`' accumulator (pooled post-softmax attention per tile, diagonal mass,
 * layer importance), choose anchors with the DP (or automatic K), derive head maps and
 * return a validated plan.
 */
import {
  buildPlan,
  CalibrationAccumulator,
  type CalibrationStatistics,
  type KascadePlan,
  layerSimilarityMatrix,
  selectAnchors,
  selectAnchorsAuto,
} from '@kascade/anchors';
import {
  type BudgetOptions,
  DEFAULT_BUDGET,
  KascadeRangeError,
  layerImportance,
  pooledDecodeScores,
  topkBudget,
  topkIndices,
} from '@kascade/core';
import type { LayerAttention } from './model/hooks.js';
import {
  type AttentionImpl,
  type AttentionOps,
  attentionOps,
  type PooledScores,
  referenceOps,
} from './policies/ops.js';

/**
 * One development prompt: text, or `{ prompt, completion? }` as a JSONL line gives it. A
 * `completion` (e.g. `" " + answer` of a task instance) is fed after the prompt one token at a
 * time, teacher-forced, so the similarity is also measured from decode steps: the positions a
 * generating model attends from.
 */
export type DevPrompt = string | { readonly prompt: string; readonly completion?: string };

/**
 * Which query positions the similarity is measured from: the prefill's query tiles, the decode
 * steps of the prompts' completions, or both (each prompt's worst tile or step counts).
 */
export type CalibrationSource = 'prefill' | 'decode' | 'both';

export interface CalibrateOptions {
  /** How many anchors (layer 0 included), or `'auto'`: the fewest reaching `tau` in every layer. */
  readonly anchors: number | 'auto';
  /** Threshold of automatic K (default 0.9). */
  readonly tau?: number;
  /** The budget the plan records and calibration measures with (defaults: 10%, kMin 128, roundTo 1). */
  readonly budget?: BudgetOptions;
  /** Query tile size `T` (default 32). */
  readonly tileSize?: number;
  /** Tiles per forward chunk (default 8): bounds the memory of the pooled scores. */
  readonly chunkTiles?: number;
  /** Prompts longer than this many tokens are cut to it (default: the model's context). */
  readonly maxPromptTokens?: number;
  /**
   * Where similarity is measured from (default `'both'`: prefill tiles, plus the decode steps of
   * prompts that carry a completion). `'decode'` needs a completion on every prompt.
   */
  readonly attendFrom?: CalibrationSource;
  /** Attention ops of the dense passes (default `'fast'`, the float32 SIMD kernels; `'reference'`: core float64). */
  readonly attention?: AttentionImpl;
  readonly signal?: AbortSignal;
  /** Called after each prompt. */
  readonly onProgress?: (progress: CalibrationProgress) => void;
}

export interface CalibrationProgress {
  readonly done: number;
  readonly total: number;
  readonly tokens: number;
  readonly elapsedMs: number;
}

/** The part of a model calibration uses (the CPU model implements it; tests may plant their own). */
export interface CalibrationModel<S = unknown> {
  readonly id: string;
  readonly config: {
    readonly architecture?: string;
    readonly layers: number;
    readonly heads: number;
    readonly kvHeads: number;
    readonly headDim: number;
    readonly hiddenSize: number;
    readonly maxContext: number;
  };
  readonly tokenizer: { encode(text: string, options?: { addSpecialTokens?: boolean }): number[] };
  createSequence(capacity: number): S;
  prefill(
    seq: S,
    tokenIds: readonly number[],
    attention: LayerAttention,
    options?: { tileSize?: number; chunkTiles?: number; signal?: AbortSignal },
  ): Float32Array;
  /** One decode step (needed for prompts with a completion). */
  decode?(seq: S, tokenId: number, attention: LayerAttention): Float32Array;
}

export interface CalibrationResult {
  readonly plan: KascadePlan;
  readonly statistics: CalibrationStatistics;
  /** `layerSimilarity[a][l]` = mean over KV heads j of max over u of `Sim[a][l][j][u]` (`a <= l`; NaN above). */
  readonly layerSimilarity: number[][];
  /**
   * The same layer similarity from each source alone (diagnostics): `prefill` over the prompts'
   * prefill tiles, `decode` over the decode steps of the prompts with a completion (absent when
   * none has one or the source was not measured).
   */
  readonly bySource: { readonly prefill?: number[][]; readonly decode?: number[][] };
  /** Decode steps measured (completion tokens fed), over all prompts. */
  readonly decodeSteps: number;
}

function promptOf(p: DevPrompt, i: number): { prompt: string; completion?: string } {
  if (typeof p === 'string') return { prompt: p };
  if (p && typeof p === 'object' && typeof p.prompt === 'string') {
    if (p.completion !== undefined && typeof p.completion !== 'string')
      throw new KascadeRangeError(`devSet[${i}].completion must be a string when given`);
    return p.completion === undefined ? { prompt: p.prompt } : { prompt: p.prompt, completion: p.completion };
  }
  throw new KascadeRangeError(`devSet[${i}] must be a string or { prompt: string, completion?: string }`);
}

/**
 * A dense {@link LayerAttention} that records what calibration needs: for every layer of
 * every prefill chunk the pooled post-softmax scores and diagonal mass, joined with the
 * layer's importance from `observe`, fed to the accumulator in layer order. Decode steps run
 * densely and are not recorded (see {@link calibrateModel} for decode-step similarity).
 */
export function recordingAttention(
  acc: CalibrationAccumulator,
  hiddenSize: number,
  ops: AttentionOps = referenceOps,
): LayerAttention {
  let pending: { layer: number; pooled: PooledScores; queryStart: number } | undefined;
  return {
    decode(_layer, inputs) {
      return ops.denseDecode(inputs);
    },
    prefill(layer, inputs) {
      const { out, pooled } = ops.densePrefillPooled(inputs);
      pending = { layer, pooled, queryStart: inputs.queryStart };
      return out;
    },
    observe(layer, residual, attnOut, tokens) {
      if (!pending) return; // a decode step
      if (pending.layer !== layer) {
        throw new KascadeRangeError(`calibration: observe(${layer}) came without that layer's prefill`);
      }
      const { pooled, queryStart } = pending;
      pending = undefined;
      acc.addLayer({
        layer,
        scores: pooled.scores,
        diagonalMass: pooled.diagonalMass,
        tiles: pooled.tiles,
        queryStart,
        importance: layerImportance(residual, attnOut, tokens, hiddenSize),
        importanceTokens: tokens,
      });
    },
  };
}

/**
 * Decode-step similarity of one prompt: for each step (one query, all `n` keys, budget `k(n)`)
 * and layer `l`, every earlier-or-equal layer `a`'s own Top-k set per KV head `u` against layer
 * `l`'s pooled post-softmax scores, as a share of what `l`'s own set captures; the prompt keeps
 * the minimum over steps, like the accumulator does over prefill tiles.
 */
class DecodeSimilarity {
  readonly min: Float64Array;
  steps = 0;
  readonly #held: (Int32Array | undefined)[];
  #k = 0;
  constructor(
    readonly layers: number,
    readonly kvHeads: number,
    readonly budget: BudgetOptions,
  ) {
    this.min = new Float64Array(layers * layers * kvHeads * kvHeads).fill(Number.POSITIVE_INFINITY);
    this.#held = new Array(layers).fill(undefined);
  }

  addLayer(layer: number, pooled: Float64Array, n: number): void {
    const L = this.layers;
    const G = this.kvHeads;
    if (layer === 0) {
      this.#held.fill(undefined);
      this.#k = topkBudget(n, this.budget);
      this.steps++;
    }
    const k = this.#k;
    const sets = new Int32Array(G * k);
    for (let j = 0; j < G; j++) sets.set(topkIndices(pooled.subarray(j * n, (j + 1) * n), k, n), j * k);
    this.#held[layer] = sets;
    const mass = (j: number, from: Int32Array, u: number) => {
      let s = 0;
      for (let i = u * k; i < (u + 1) * k; i++) s += pooled[j * n + from[i]!]!;
      return s;
    };
    for (let j = 0; j < G; j++) {
      const own = mass(j, sets, j);
      for (let a = 0; a <= layer; a++) {
        const borrowedSets = this.#held[a];
        if (borrowedSets === undefined) continue;
        for (let u = 0; u < G; u++) {
          const borrowed = mass(j, borrowedSets, u);
          const share = own === 0 && borrowed === 0 ? 1 : borrowed / own;
          const at = ((a * L + layer) * G + j) * G + u;
          if (share < this.min[at]!) this.min[at] = share;
        }
      }
    }
  }
}

/** `layerSimilarityMatrix` of a `Sim` sum over `count` prompts (entries `a > l` stay NaN). */
function meanSimilarity(sum: Float64Array, count: number, L: number, G: number): number[][] {
  const values = new Float64Array(sum.length).fill(Number.NaN);
  for (let a = 0; a < L; a++) {
    for (let l = a; l < L; l++) {
      const base = (a * L + l) * G * G;
      for (let i = base; i < base + G * G; i++) values[i] = sum[i]! / count;
    }
  }
  return layerSimilarityMatrix({ layers: L, kvHeads: G, values });
}

/**
 * Runs calibration and returns the validated plan with the statistics behind it.
 *
 * Per prompt, `Sim[a][l][j][u]` is the minimum over the sources measured (`attendFrom`) of the
 * per-tile (prefill) and per-step (decode) shares, then averaged over prompts (KASCADE.md,
 * "Calibration": worst case per prompt). Importance `w[l]` averages every token the model
 * processed (prompt and completion).
 */
export async function calibrateModel<S>(
  model: CalibrationModel<S>,
  devSet: readonly DevPrompt[],
  options: CalibrateOptions,
): Promise<CalibrationResult> {
  if (!Array.isArray(devSet) || devSet.length === 0) {
    throw new KascadeRangeError('calibrate: devSet must be a non-empty array of prompts');
  }
  const { anchors } = options;
  const { layers, kvHeads, hiddenSize, maxContext, headDim } = model.config;
  if (anchors !== 'auto' && !(Number.isInteger(anchors) && anchors >= 1 && anchors <= layers)) {
    throw new KascadeRangeError(
      `calibrate: anchors must be 'auto' or an integer in [1, ${layers}], got ${anchors}`,
    );
  }
  const attendFrom = options.attendFrom ?? 'both';
  if (attendFrom !== 'prefill' && attendFrom !== 'decode' && attendFrom !== 'both') {
    throw new KascadeRangeError(
      `calibrate: attendFrom must be 'prefill', 'decode' or 'both', got ${JSON.stringify(attendFrom)}`,
    );
  }
  const prompts = devSet.map((p, i) => promptOf(p, i));
  if (attendFrom === 'decode') {
    const missing = prompts.findIndex((p) => !p.completion);
    if (missing >= 0)
      throw new KascadeRangeError(
        `calibrate: attendFrom 'decode' needs a non-empty completion on every prompt; devSet[${missing}] has none`,
      );
  }
  const decodeWanted = attendFrom !== 'prefill' && prompts.some((p) => p.completion);
  if (decodeWanted && typeof model.decode !== 'function') {
    throw new KascadeRangeError('calibrate: prompts have completions but the model has no decode()');
  }
  const tileSize = options.tileSize ?? 32;
  const budget = {
    percent: options.budget?.percent ?? DEFAULT_BUDGET.percent,
    kMin: options.budget?.kMin ?? DEFAULT_BUDGET.kMin,
    roundTo: options.budget?.roundTo ?? DEFAULT_BUDGET.roundTo,
  };
  const ops = attentionOps(options.attention, headDim);
  const maxTokens = Math.min(options.maxPromptTokens ?? maxContext, maxContext);
  const L = layers;
  const G = kvHeads;
  const size = L * L * G * G;
  const sumBoth = new Float64Array(size);
  const sumPrefill = new Float64Array(size);
  const sumDecode = new Float64Array(size);
  const importanceSum = new Float64Array(L);
  let decodePrompts = 0;
  let decodeSteps = 0;
  const t0 = performance.now();
  let tokens = 0;
  for (let i = 0; i < prompts.length; i++) {
    if (options.signal?.aborted) throw options.signal.reason ?? new Error('calibration aborted');
    const { prompt, completion } = prompts[i]!;
    const ids = model.tokenizer.encode(prompt).slice(0, maxTokens);
    if (ids.length === 0) throw new KascadeRangeError(`calibrate: devSet[${i}] has no tokens`);
    const tail =
      attendFrom !== 'prefill' && completion
        ? model.tokenizer.encode(completion, { addSpecialTokens: false }).slice(0, maxContext - ids.length)
        : [];
    if (attendFrom === 'decode' && tail.length === 0)
      throw new KascadeRangeError(
        `calibrate: devSet[${i}]'s completion has no room (or no tokens) after its ${ids.length}-token prompt`,
      );
    // A fresh accumulator per prompt: its statistics are this prompt's minima over tiles.
    const acc = new CalibrationAccumulator({ layers, kvHeads, tileSize, budget });
    const decodeSim = new DecodeSimilarity(L, G, budget);
    const importance = new Float64Array(L);
    const importanceTokens = new Float64Array(L);
    const prefillAttention = recordingAttention(acc, hiddenSize, ops);
    let decoding = false;
    const attention: LayerAttention = {
      prefill: (layer, inputs) => prefillAttention.prefill(layer, inputs),
      decode(layer, inputs) {
        if (decoding) decodeSim.addLayer(layer, pooledDecodeScores(inputs), inputs.n);
        return ops.denseDecode(inputs);
      },
      observe(layer, residual, attnOut, count) {
        importance[layer] += layerImportance(residual, attnOut, count, hiddenSize) * count;
        importanceTokens[layer] += count;
        if (!decoding) prefillAttention.observe!(layer, residual, attnOut, count);
      },
    };
    const seq = model.createSequence(ids.length + tail.length);
    acc.beginPrompt();
    try {
      model.prefill(seq, ids, attention, {
        tileSize,
        chunkTiles: options.chunkTiles ?? 8,
        signal: options.signal,
      });
      acc.endPrompt();
    } catch (e) {
      acc.abortPrompt();
      throw e;
    }
    decoding = true;
    for (const token of tail) {
      if (options.signal?.aborted) throw options.signal.reason ?? new Error('calibration aborted');
      model.decode!(seq, token, attention);
    }
    const prefillMin = acc.statistics().similarity.values;
    for (let x = 0; x < size; x++) {
      const p = prefillMin[x]!;
      if (Number.isNaN(p)) continue; // a > l
      const d = decodeSim.min[x]!;
      sumPrefill[x] += p;
      if (decodeSim.steps > 0) sumDecode[x] += d;
      sumBoth[x] += attendFrom === 'prefill' ? p : attendFrom === 'decode' ? d : Math.min(p, d);
    }
    if (decodeSim.steps > 0) decodePrompts++;
    decodeSteps += decodeSim.steps;
    for (let l = 0; l < L; l++) importanceSum[l] += importance[l]! / importanceTokens[l]!;
    tokens += ids.length + tail.length;
    options.onProgress?.({ done: i + 1, total: devSet.length, tokens, elapsedMs: performance.now() - t0 });
    // Let timers and I/O run between prompts (progress output, abort signals).
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const n = prompts.length;
  const values = new Float64Array(size).fill(Number.NaN);
  for (let a = 0; a < L; a++) {
    for (let l = a; l < L; l++) {
      const base = (a * L + l) * G * G;
      for (let x = base; x < base + G * G; x++) values[x] = sumBoth[x]! / n;
    }
  }
  const statistics: CalibrationStatistics = {
    layers: L,
    kvHeads: G,
    tileSize,
    budget,
    prompts: n,
    similarity: { layers: L, kvHeads: G, values },
    importance: Array.from(importanceSum, (s) => s / n),
  };
  const layerSimilarity = layerSimilarityMatrix(statistics.similarity);
  const plan = planFromStatistics(model, statistics, layerSimilarity, anchors, options.tau);
  return {
    plan,
    statistics,
    layerSimilarity,
    bySource: {
      ...(attendFrom !== 'decode' ? { prefill: meanSimilarity(sumPrefill, n, L, G) } : {}),
      ...(decodePrompts > 0 ? { decode: meanSimilarity(sumDecode, decodePrompts, L, G) } : {}),
    },
    decodeSteps,
  };
}

/**
 * The plan for `anchors` (a count, or `'auto'` with `tau`) from calibration statistics: one
 * calibration pass can give the plans of several K.
 */
export function planFromStatistics(
  model: Pick<CalibrationModel, 'id' | 'config'>,
  statistics: CalibrationStatistics,
  layerSimilarity: number[][],
  anchors: number | 'auto',
  tau?: number,
): KascadePlan {
  const { layers, kvHeads } = model.config;
  if (anchors !== 'auto' && !(Number.isInteger(anchors) && anchors >= 1 && anchors <= layers)) {
    throw new KascadeRangeError(
      `calibrate: anchors must be 'auto' or an integer in [1, ${layers}], got ${anchors}`,
    );
  }
  const selection =
    anchors === 'auto'
      ? selectAnchorsAuto({ similarity: layerSimilarity, weights: statistics.importance, tau })
      : selectAnchors({ similarity: layerSimilarity, weights: statistics.importance, anchors });
  return buildPlan({
    model: {
      id: model.id,
      ...(model.config.architecture ? { architecture: model.config.architecture } : {}),
      layers,
      heads: model.config.heads,
      kvHeads,
      headDim: model.config.headDim,
    },
    statistics,
    selection,
    createdAt: new Date().toISOString(),
    tool: '@kascade/engine calibrate',
  });
}
