import { ShapeError } from './errors.js';
import { poolDecodeHeads, poolTile, probabilityBlock, scoreRow, softmaxAt } from './kernel.js';
import type { AttentionShape, DecodeInputs, PrefillInputs } from './types.js';
import { positiveInt, resolveDecode, resolvePrefill, resolveShape } from './validate.js';

/** Post-softmax attention of the decode token: `P[h](x)` over all `n` keys. Output `[heads, n]`. */
export function decodeProbabilities(inputs: DecodeInputs): Float64Array {
  const r = resolveDecode('decodeProbabilities', inputs);
  const { heads, kvHeads, headDim: d, group, n } = r;
  const probs = new Float64Array(heads * n);
  const offs = new Int32Array(group);
  const counts = new Int32Array(group).fill(n);
  for (let j = 0; j < kvHeads; j++) {
    for (let hh = 0; hh < group; hh++) offs[hh] = (j * group + hh) * d;
    probabilityBlock(r, offs, group, j, counts, probs.subarray(j * group * n), n);
  }
  return probs;
}

/**
 * Pools post-softmax probabilities `[heads, n]` over each GQA group: `S[j](x) = sum over h in
 * group j of P[h](x)`. Output `[kvHeads, n]`; each row sums to the group size `g`.
 */
export function poolGroupPostSoftmax(
  probs: ArrayLike<number>,
  shape: AttentionShape,
  n: number,
): Float64Array {
  const fn = 'poolGroupPostSoftmax';
  const { heads, kvHeads, group } = resolveShape(fn, shape);
  positiveInt(fn, 'n', n);
  if (probs == null || probs.length !== heads * n) {
    throw new ShapeError(`${fn}: probs has length ${probs?.length}, expected heads * n = ${heads * n}`);
  }
  const pooled = new Float64Array(kvHeads * n);
  for (let h = 0; h < heads; h++) {
    const dst = Math.floor(h / group) * n;
    const src = h * n;
    for (let x = 0; x < n; x++) pooled[dst + x] += probs[src + x];
  }
  return pooled;
}

/**
 * The cheaper, less accurate variant: softmax of the group-mean logits,
 * `softmax_x(mean over h in group j of q[h] . key[x] * scale)`. Output `[kvHeads, n]`; each row
 * sums to 1. Kept for comparison; the method pools after the softmax.
 */
export function poolGroupPreSoftmax(inputs: DecodeInputs): Float64Array {
  const r = resolveDecode('poolGroupPreSoftmax', inputs);
  const { kvHeads, headDim: d, group, n } = r;
  const pooled = new Float64Array(kvHeads * n);
  const logits = new Float64Array(n);
  for (let j = 0; j < kvHeads; j++) {
    const row = pooled.subarray(j * n, (j + 1) * n);
    for (let h = j * group; h < (j + 1) * group; h++) {
      scoreRow(r, h * d, j, n, logits);
      for (let x = 0; x < n; x++) row[x] += logits[x] / group;
    }
    softmaxAt(row, 0, n);
  }
  return pooled;
}

/** The method's decode scores: post-softmax pooling over each GQA group. Output `[kvHeads, n]`. */
export function pooledDecodeScores(inputs: DecodeInputs): Float64Array {
  const r = resolveDecode('pooledDecodeScores', inputs);
  const { kvHeads, group, n } = r;
  const pooled = new Float64Array(kvHeads * n);
  for (let j = 0; j < kvHeads; j++)
    poolDecodeHeads(r, j * group, (j + 1) * group, pooled.subarray(j * n, (j + 1) * n));
  return pooled;
}

/** Result of {@link pooledPrefillScores}. */
export interface PooledPrefillScores {
  /** `[kvHeads, tiles, n]`: mass on keys before each tile's first query; 0 at and after it. */
  readonly scores: Float64Array;
  /** `[kvHeads, tiles]`: the same pooled mass on the tile's own (causal) diagonal keys. */
  readonly diagonalMass: Float64Array;
  readonly tiles: number;
}

/**
 * The method's prefill scores: `S[j,t](x) = sum over h in group j and queries i of tile t of
 * P[h,i](x)`, with `P` the full causal softmax over keys `0 .. pos(i)`, kept for keys before the
 * tile; the diagonal block's share goes to `diagonalMass`. For every `(j, t)`,
 * `sum_x scores + diagonalMass = g * (queries in tile t)`.
 */
export function pooledPrefillScores(inputs: PrefillInputs): PooledPrefillScores {
  const r = resolvePrefill('pooledPrefillScores', inputs);
  const { kvHeads, group, n, tiles } = r;
  const scores = new Float64Array(kvHeads * tiles * n);
  const diagonalMass = new Float64Array(kvHeads * tiles);
  for (let j = 0; j < kvHeads; j++) {
    for (let t = 0; t < tiles; t++) {
      const row = scores.subarray((j * tiles + t) * n, (j * tiles + t + 1) * n);
      diagonalMass[j * tiles + t] = poolTile(r, j * group, (j + 1) * group, t, row);
    }
  }
  return { scores, diagonalMass, tiles };
}
