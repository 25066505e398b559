/**
 * The dense-anchor decode op (layer 0 under Kascade) in one pass: the post-softmax
 * probabilities (core's `decodeProbabilities`) give both the dense output and the pooled
 * Top-k. Calling `denseDecodeAttention` then `anchorDecodeTopk` computes every score twice;
 * this costs about one dense layer (measured 1.04x at 16k keys). The output equals core's
 * dense output to float64 rounding and the selection is core's (the tests check both).
 *
 * Prefill has no such op here: a one-pass prefill written this way measured slower than
 * core's blocked `denseCausalPrefillAttention` plus `anchorPrefillTopk`, so the policy calls
 * those two.
 */
import {
  type BudgetOptions,
  type DecodeInputs,
  type DecodeSelection,
  decodeProbabilities,
  poolGroupPostSoftmax,
  type SelectedOutput,
  topkBudget,
  topkIndices,
} from '@kascade/core';

/** Dense decode output plus the anchor Top-k, from one set of probabilities. */
export function denseAnchorDecode(
  inputs: DecodeInputs,
  budget: BudgetOptions,
): SelectedOutput<DecodeSelection> {
  const probs = decodeProbabilities(inputs); // validates the inputs
  const { heads, kvHeads, headDim: d, n, v } = inputs;
  const group = heads / kvHeads;
  const capacity = inputs.capacity ?? n;
  const out = new Float64Array(heads * d);
  for (let h = 0; h < heads; h++) {
    const base = Math.floor(h / group) * capacity * d;
    const o = h * d;
    for (let x = 0; x < n; x++) {
      const p = probs[h * n + x]!;
      const vOff = base + x * d;
      for (let e = 0; e < d; e++) out[o + e] += p * v[vOff + e]!;
    }
  }
  const pooled = poolGroupPostSoftmax(probs, inputs, n);
  const k = topkBudget(n, budget);
  const indices = new Int32Array(kvHeads * k);
  for (let j = 0; j < kvHeads; j++) indices.set(topkIndices(pooled.subarray(j * n, (j + 1) * n), k), j * k);
  return { out, selection: { kvHeads, k, indices } };
}
