/**
 * The attention ops a policy calls, in two implementations with the same semantics:
 * `reference` (the `@kascade/core` float64 definition) and `fast` (float32 WebAssembly SIMD
 * kernels, `fast.ts`), which policies use by default. `attention: 'reference'` in the
 * policy options selects the core ops, so any result can be re-checked against them.
 */
import {
  allHeadsPooledDecodeTopk,
  allHeadsPooledPrefillTopk,
  anchorDecodeTopk,
  anchorPrefillTopk,
  type BudgetOptions,
  type DecodeInputs,
  type DecodeSelection,
  denseCausalPrefillAttention,
  denseDecodeAttention,
  type HeadMap,
  type PrefillInputs,
  type PrefillSelection,
  pooledPrefillScores,
  sparseDecodeAttention,
  sparsePrefillAttention,
} from '@kascade/core';
import { fastAttentionOps } from './fast.js';
import { denseAnchorDecode } from './fused.js';

/** An op's output (`[heads, headDim]` or `[heads, queries, headDim]`) with the index slot it wrote. */
export interface AttendedSelection<S> {
  readonly out: Float32Array | Float64Array;
  readonly selection: S;
}

/** What calibration records per layer and prefill chunk (core's `PooledPrefillScores`, any float type). */
export interface PooledScores {
  /** `[kvHeads, tiles, n]`: pooled post-softmax mass on keys before each tile's first query; 0 at and after it. */
  readonly scores: Float32Array | Float64Array;
  /** `[kvHeads, tiles]`: the same pooled mass on each tile's own (causal) diagonal keys. */
  readonly diagonalMass: Float64Array;
  readonly tiles: number;
}

/** Which implementation of the attention ops a policy runs. */
export type AttentionImpl = 'fast' | 'reference';

export interface AttentionOps {
  readonly impl: AttentionImpl;
  denseDecode(inputs: DecodeInputs): Float32Array | Float64Array;
  denseCausalPrefill(inputs: PrefillInputs): Float32Array | Float64Array;
  sparseDecode(
    inputs: DecodeInputs,
    selection: DecodeSelection,
    headMap?: HeadMap,
  ): Float32Array | Float64Array;
  sparsePrefill(
    inputs: PrefillInputs,
    selection: PrefillSelection,
    headMap?: HeadMap,
  ): Float32Array | Float64Array;
  anchorDecodeTopk(inputs: DecodeInputs, budget: BudgetOptions): DecodeSelection;
  anchorPrefillTopk(inputs: PrefillInputs, budget: BudgetOptions): PrefillSelection;
  allHeadsPooledDecodeTopk(inputs: DecodeInputs, budget: BudgetOptions): DecodeSelection;
  allHeadsPooledPrefillTopk(inputs: PrefillInputs, budget: BudgetOptions): PrefillSelection;
  /** Dense output plus the head-aware anchor Top-k (the dense-anchor role). */
  denseAnchorDecode(inputs: DecodeInputs, budget: BudgetOptions): AttendedSelection<DecodeSelection>;
  denseAnchorPrefill(inputs: PrefillInputs, budget: BudgetOptions): AttendedSelection<PrefillSelection>;
  /** Dense causal output plus the pooled scores calibration records (one pass in `fast`). */
  densePrefillPooled(inputs: PrefillInputs): {
    readonly out: Float32Array | Float64Array;
    readonly pooled: PooledScores;
  };
}

/** The core float64 reference ops. */
export const referenceOps: AttentionOps = Object.freeze({
  impl: 'reference',
  denseDecode: denseDecodeAttention,
  denseCausalPrefill: denseCausalPrefillAttention,
  sparseDecode: sparseDecodeAttention,
  sparsePrefill: sparsePrefillAttention,
  anchorDecodeTopk,
  anchorPrefillTopk,
  allHeadsPooledDecodeTopk,
  allHeadsPooledPrefillTopk,
  denseAnchorDecode,
  // A one-pass float64 prefill measured slower than these two (see fused.ts).
  denseAnchorPrefill: (inputs: PrefillInputs, budget: BudgetOptions) => ({
    out: denseCausalPrefillAttention(inputs),
    selection: anchorPrefillTopk(inputs, budget),
  }),
  densePrefillPooled: (inputs: PrefillInputs) => ({
    out: denseCausalPrefillAttention(inputs),
    pooled: pooledPrefillScores(inputs),
  }),
} satisfies AttentionOps);

/**
 * The ops for a head dim: `fast` unless `reference` is asked for, or the fast kernels cannot
 * run (head dim not a multiple of 16, or no WebAssembly SIMD), where the reference runs.
 */
export function attentionOps(impl: AttentionImpl | undefined, headDim: number): AttentionOps {
  if (impl !== undefined && impl !== 'fast' && impl !== 'reference') {
    throw new RangeError(`attention must be 'fast' or 'reference', got ${JSON.stringify(impl)}`);
  }
  if (impl === 'reference') return referenceOps;
  return fastAttentionOps(headDim) ?? referenceOps;
}
