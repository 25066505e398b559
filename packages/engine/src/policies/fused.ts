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

/** Keys per chunk of the P.V pass. */
const CHUNK = 256;

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
  // P.V per KV head, over chunks of keys (a chunk's V rows stay in cache for the whole
  // group), eight output columns at a time in locals.
  for (let j = 0; j < kvHeads; j++) {
    const base = j * capacity * d;
    for (let c0 = 0; c0 < n; c0 += CHUNK) {
      const c1 = Math.min(n, c0 + CHUNK);
      for (let h = j * group; h < (j + 1) * group; h++) {
        const pRow = h * n;
        const o = h * d;
        let e = 0;
        for (; e + 7 < d; e += 8) {
          let s0 = 0;
          let s1 = 0;
          let s2 = 0;
          let s3 = 0;
          let s4 = 0;
          let s5 = 0;
          let s6 = 0;
          let s7 = 0;
          for (let x = c0; x < c1; x++) {
            const p = probs[pRow + x]!;
            const vo = base + x * d + e;
            s0 += p * v[vo]!;
            s1 += p * v[vo + 1]!;
            s2 += p * v[vo + 2]!;
            s3 += p * v[vo + 3]!;
            s4 += p * v[vo + 4]!;
            s5 += p * v[vo + 5]!;
            s6 += p * v[vo + 6]!;
            s7 += p * v[vo + 7]!;
          }
          out[o + e] += s0;
          out[o + e + 1] += s1;
          out[o + e + 2] += s2;
          out[o + e + 3] += s3;
          out[o + e + 4] += s4;
          out[o + e + 5] += s5;
          out[o + e + 6] += s6;
          out[o + e + 7] += s7;
        }
        for (; e < d; e++) {
          let s0 = 0;
          for (let x = c0; x < c1; x++) s0 += probs[pRow + x]! * v[base + x * d + e]!;
          out[o + e] += s0;
        }
      }
    }
  }
  const pooled = poolGroupPostSoftmax(probs, inputs, n);
  const k = topkBudget(n, budget);
  const indices = new Int32Array(kvHeads * k);
  for (let j = 0; j < kvHeads; j++) indices.set(topkIndices(pooled.subarray(j * n, (j + 1) * n), k), j * k);
  return { out, selection: { kvHeads, k, indices } };
}
