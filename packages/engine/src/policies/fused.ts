/**
 * The dense-anchor ops (layer 0 under Kascade) computed in one pass: the post-softmax
 * probabilities are computed once and give both the dense output and the pooled Top-k.
 * Calling `denseDecodeAttention` then `anchorDecodeTopk` computes every score twice; this
 * costs about one dense layer. Same arithmetic in the same order as the core reference, so
 * the output and the selection are identical to those two core ops (the tests check it).
 */
import {
  type BudgetOptions,
  type DecodeInputs,
  type DecodeSelection,
  decodeProbabilities,
  type PrefillInputs,
  type PrefillSelection,
  poolGroupPostSoftmax,
  prefillTileBudget,
  type SelectedOutput,
  ShapeError,
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

function checkPrefill(inputs: PrefillInputs): { capacity: number; scale: number } {
  const { heads, kvHeads, headDim: d, n, queries, queryStart, tileSize, q, k, v } = inputs;
  const capacity = inputs.capacity ?? n;
  const fn = 'denseAnchorPrefill';
  if (!(heads > 0 && kvHeads > 0 && heads % kvHeads === 0 && d > 0)) {
    throw new ShapeError(`${fn}: heads (${heads}) must be a positive multiple of kvHeads (${kvHeads})`);
  }
  if (!(Number.isInteger(tileSize) && tileSize > 0 && queryStart % tileSize === 0)) {
    throw new ShapeError(`${fn}: queryStart (${queryStart}) must be a multiple of tileSize (${tileSize})`);
  }
  if (!(queries >= 1 && n === queryStart + queries && capacity >= n)) {
    throw new ShapeError(
      `${fn}: need n = queryStart + queries <= capacity, got n=${n} queries=${queries} capacity=${capacity}`,
    );
  }
  if (q.length !== heads * queries * d)
    throw new ShapeError(`${fn}: q has ${q.length} values, expected ${heads * queries * d}`);
  if (k.length < kvHeads * capacity * d || v.length < kvHeads * capacity * d) {
    throw new ShapeError(
      `${fn}: k and v must hold kvHeads * capacity * headDim = ${kvHeads * capacity * d} values`,
    );
  }
  return { capacity, scale: inputs.scale ?? 1 / Math.sqrt(d) };
}

/** Dense causal prefill output plus the tile-pooled anchor Top-k, from one set of probabilities per query. */
export function denseAnchorPrefill(
  inputs: PrefillInputs,
  budget: BudgetOptions,
): SelectedOutput<PrefillSelection> {
  const { capacity, scale } = checkPrefill(inputs);
  const { heads, kvHeads, headDim: d, n, queries, queryStart, tileSize: T, q, k, v } = inputs;
  const group = heads / kvHeads;
  const tiles = Math.ceil(queries / T);
  const counts = new Int32Array(tiles);
  let kMax = 0;
  for (let t = 0; t < tiles; t++) {
    counts[t] = prefillTileBudget(queryStart + t * T, budget);
    if (counts[t]! > kMax) kMax = counts[t]!;
  }
  const indices = new Int32Array(kvHeads * tiles * kMax).fill(-1);
  const out = new Float64Array(heads * queries * d);
  const probs = new Float64Array(n);
  const pooled = new Float64Array(n);
  for (let j = 0; j < kvHeads; j++) {
    const base = j * capacity * d;
    for (let t = 0; t < tiles; t++) {
      const start = queryStart + t * T;
      const end = Math.min(start + T, n);
      pooled.fill(0, 0, start);
      for (let h = j * group; h < (j + 1) * group; h++) {
        for (let pos = start; pos < end; pos++) {
          const count = pos + 1;
          const qOff = (h * queries + pos - queryStart) * d;
          let max = Number.NEGATIVE_INFINITY;
          for (let x = 0; x < count; x++) {
            const kOff = base + x * d;
            let dot = 0;
            for (let e = 0; e < d; e++) dot += q[qOff + e]! * k[kOff + e]!;
            const s = dot * scale;
            probs[x] = s;
            if (s > max) max = s;
          }
          let sum = 0;
          for (let x = 0; x < count; x++) {
            const ex = Math.exp(probs[x]! - max);
            probs[x] = ex;
            sum += ex;
          }
          const inv = 1 / sum;
          for (let x = 0; x < count; x++) probs[x]! *= inv;
          const o = qOff;
          for (let x = 0; x < count; x++) {
            const p = probs[x]!;
            const vOff = base + x * d;
            for (let e = 0; e < d; e++) out[o + e] += p * v[vOff + e]!;
          }
          for (let x = 0; x < start; x++) pooled[x] += probs[x]!;
        }
      }
      if (counts[t]! > 0) indices.set(topkIndices(pooled, counts[t]!, start), (j * tiles + t) * kMax);
    }
  }
  return { out, selection: { kvHeads, tiles, tileSize: T, kMax, counts, indices } };
}
