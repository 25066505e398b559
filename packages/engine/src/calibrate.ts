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
  denseCausalPrefillAttention,
  denseDecodeAttention,
  KascadeRangeError,
  layerImportance,
  type PooledPrefillScores,
  pooledPrefillScores,
} from '@kascade/core';
import type { LayerAttention } from './model/hooks.js';

/** One development prompt: text, or `{ prompt }` as a JSONL line gives it. */
export type DevPrompt = string | { readonly prompt: string };

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
}

export interface CalibrationResult {
  readonly plan: KascadePlan;
  readonly statistics: CalibrationStatistics;
  /** `layerSimilarity[a][l]` = mean over KV heads j of max over u of `Sim[a][l][j][u]` (`a <= l`; NaN above). */
  readonly layerSimilarity: number[][];
}

function promptText(p: DevPrompt, i: number): string {
  if (typeof p === 'string') return p;
  if (p && typeof p === 'object' && typeof p.prompt === 'string') return p.prompt;
  throw new KascadeRangeError(`devSet[${i}] must be a string or { prompt: string }`);
}

/**
 * A dense {@link LayerAttention} that records what calibration needs: for every layer of
 * every prefill chunk the pooled post-softmax scores and diagonal mass, joined with the
 * layer's importance from `observe`, fed to the accumulator in layer order.
 */
export function recordingAttention(acc: CalibrationAccumulator, hiddenSize: number): LayerAttention {
  let pending: { layer: number; pooled: PooledPrefillScores; queryStart: number } | undefined;
  return {
    decode(_layer, inputs) {
      return denseDecodeAttention(inputs);
    },
    prefill(layer, inputs) {
      const out = denseCausalPrefillAttention(inputs);
      pending = { layer, pooled: pooledPrefillScores(inputs), queryStart: inputs.queryStart };
      return out;
    },
    observe(layer, residual, attnOut, tokens) {
      if (!pending || pending.layer !== layer) {
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

/** Runs calibration and returns the validated plan with the statistics behind it. */
export async function calibrateModel<S>(
  model: CalibrationModel<S>,
  devSet: readonly DevPrompt[],
  options: CalibrateOptions,
): Promise<CalibrationResult> {
  if (!Array.isArray(devSet) || devSet.length === 0) {
    throw new KascadeRangeError('calibrate: devSet must be a non-empty array of prompts');
  }
  const { anchors } = options;
  const { layers, kvHeads, hiddenSize, maxContext } = model.config;
  if (anchors !== 'auto' && !(Number.isInteger(anchors) && anchors >= 1 && anchors <= layers)) {
    throw new KascadeRangeError(
      `calibrate: anchors must be 'auto' or an integer in [1, ${layers}], got ${anchors}`,
    );
  }
  const tileSize = options.tileSize ?? 32;
  const budget = {
    percent: options.budget?.percent ?? DEFAULT_BUDGET.percent,
    kMin: options.budget?.kMin ?? DEFAULT_BUDGET.kMin,
    roundTo: options.budget?.roundTo ?? DEFAULT_BUDGET.roundTo,
  };
  const maxTokens = Math.min(options.maxPromptTokens ?? maxContext, maxContext);
  const acc = new CalibrationAccumulator({ layers, kvHeads, tileSize, budget });
  const attention = recordingAttention(acc, hiddenSize);
  const t0 = performance.now();
  let tokens = 0;
  for (let i = 0; i < devSet.length; i++) {
    if (options.signal?.aborted) throw options.signal.reason ?? new Error('calibration aborted');
    const ids = model.tokenizer.encode(promptText(devSet[i]!, i)).slice(0, maxTokens);
    if (ids.length === 0) throw new KascadeRangeError(`calibrate: devSet[${i}] has no tokens`);
    const seq = model.createSequence(ids.length);
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
    tokens += ids.length;
    options.onProgress?.({ done: i + 1, total: devSet.length, tokens, elapsedMs: performance.now() - t0 });
    // Let timers and I/O run between prompts (progress output, abort signals).
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const statistics = acc.statistics();
  const layerSimilarity = layerSimilarityMatrix(statistics.similarity);
  const selection =
    anchors === 'auto'
      ? selectAnchorsAuto({ similarity: layerSimilarity, weights: statistics.importance, tau: options.tau })
      : selectAnchors({ similarity: layerSimilarity, weights: statistics.importance, anchors });
  const plan = buildPlan({
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
  return { plan, statistics, layerSimilarity };
}
