/**
 * `streaming` (StreamingLLM): every layer attends the first `sinkTokens` keys plus the most
 * recent ones, with the same budget rule as Kascade (`k(n)` in decode, the rolling `k(s)`
 * of earlier keys per prefill tile, plus the diagonal tile). `decodeOnly` keeps prefill dense.
 */
import {
  type BudgetOptions,
  type DecodeInputs,
  type DecodeSelection,
  KascadeRangeError,
  type PrefillInputs,
  type PrefillSelection,
  prefillTileBudget,
  topkBudget,
} from '@kascade/core';
import { attentionOps } from './ops.js';
import { createTablePolicy, fillRoles } from './table.js';
import type { AttentionPolicy, ModelShape, PolicyOptions } from './types.js';

export interface StreamingOptions extends PolicyOptions {
  /** Attention-sink tokens kept at the start (default 4). */
  readonly sinkTokens?: number;
  readonly budget?: BudgetOptions;
  readonly tileSize?: number;
  readonly decodeOnly?: boolean;
}

/** Writes `count` keys: `0..sinks-1` then the `count - sinks` keys just before `end`. */
function fillWindow(row: Int32Array, offset: number, count: number, sinkTokens: number, end: number): void {
  const sinks = Math.min(sinkTokens, count);
  for (let i = 0; i < sinks; i++) row[offset + i] = i;
  const recent = count - sinks;
  for (let i = 0; i < recent; i++) row[offset + sinks + i] = end - recent + i;
}

/** The streaming index set of a decode step: the same sinks + recent window for every KV head. */
export function streamingDecodeSelection(
  inputs: DecodeInputs,
  budget: BudgetOptions,
  sinkTokens: number,
): DecodeSelection {
  const k = topkBudget(inputs.n, budget);
  const indices = new Int32Array(inputs.kvHeads * k);
  for (let j = 0; j < inputs.kvHeads; j++) fillWindow(indices, j * k, k, sinkTokens, inputs.n);
  return { kvHeads: inputs.kvHeads, k, indices };
}

/** The streaming index sets of a prefill chunk: per tile, sinks + the keys just before the tile. */
export function streamingPrefillSelection(
  inputs: PrefillInputs,
  budget: BudgetOptions,
  sinkTokens: number,
): PrefillSelection {
  const { tileSize, queries, queryStart, kvHeads } = inputs;
  const tiles = Math.ceil(queries / tileSize);
  const counts = new Int32Array(tiles);
  for (let t = 0; t < tiles; t++) counts[t] = prefillTileBudget(queryStart + t * tileSize, budget);
  const kMax = Math.max(1, ...counts);
  const indices = new Int32Array(kvHeads * tiles * kMax);
  for (let j = 0; j < kvHeads; j++) {
    for (let t = 0; t < tiles; t++) {
      fillWindow(indices, (j * tiles + t) * kMax, counts[t]!, sinkTokens, queryStart + t * tileSize);
    }
  }
  return { kvHeads, tiles, tileSize, kMax, counts, indices };
}

export function createStreamingPolicy(shape: ModelShape, options: StreamingOptions = {}): AttentionPolicy {
  const sinkTokens = options.sinkTokens ?? 4;
  if (!(Number.isInteger(sinkTokens) && sinkTokens >= 0)) {
    throw new KascadeRangeError(
      `streaming policy: sinkTokens must be a non-negative integer, got ${sinkTokens}`,
    );
  }
  const roles = fillRoles(shape.layers, 'select');
  return createTablePolicy(
    {
      kind: 'streaming',
      shape,
      budget: options.budget ?? {},
      tileSize: options.tileSize ?? 32,
      decodeRoles: roles,
      prefillRoles: options.decodeOnly ? fillRoles(shape.layers, 'dense') : roles,
      anchorLayers: [],
      selectCountsAsAnchor: false,
      selectDecode: (inputs, budget) => streamingDecodeSelection(inputs, budget, sinkTokens),
      selectPrefill: (inputs, budget) => streamingPrefillSelection(inputs, budget, sinkTokens),
      ops: attentionOps(options.attention, shape.headDim),
    },
    options,
  );
}
