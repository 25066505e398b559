/**
 * The inner loops of the reference ops (internal). Everything is float64; inputs are read
 * through their typed arrays and widened on the fly.
 */
import type { Resolved, ResolvedPrefill } from './validate.js';

/**
 * Scaled logits of query row `q[qOff ..]` against KV head `kvHead`'s keys: `logits[c]` for the
 * key `keys[c]`, or key `c` itself when `keys` is null, for `c < count`.
 */
export function scoreRow(
  r: Resolved,
  qOff: number,
  kvHead: number,
  keys: Int32Array | null,
  count: number,
  logits: Float64Array,
): void {
  const { q, k, headDim: d, scale } = r;
  const base = kvHead * r.capacity * d;
  for (let c = 0; c < count; c++) {
    const kOff = base + (keys === null ? c : keys[c]) * d;
    let dot = 0;
    for (let e = 0; e < d; e++) dot += q[qOff + e] * k[kOff + e];
    logits[c] = dot * scale;
  }
}

/** In-place stable softmax of `logits[0 .. count)`. */
export function softmaxPrefix(logits: Float64Array, count: number): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let c = 0; c < count; c++) if (logits[c] > max) max = logits[c];
  let sum = 0;
  for (let c = 0; c < count; c++) {
    const e = Math.exp(logits[c] - max);
    logits[c] = e;
    sum += e;
  }
  const inv = 1 / sum;
  for (let c = 0; c < count; c++) logits[c] *= inv;
}

/**
 * One output row: softmax over the listed keys (or keys `0 .. count - 1`), then the weighted sum
 * of their V rows, written to `out[outOff .. outOff + headDim)`. `count >= 1`.
 */
export function attendRow(
  r: Resolved,
  qOff: number,
  kvHead: number,
  keys: Int32Array | null,
  count: number,
  scratch: Float64Array,
  out: Float64Array,
  outOff: number,
): void {
  scoreRow(r, qOff, kvHead, keys, count, scratch);
  softmaxPrefix(scratch, count);
  const { v, headDim: d } = r;
  const base = kvHead * r.capacity * d;
  for (let e = 0; e < d; e++) out[outOff + e] = 0;
  for (let c = 0; c < count; c++) {
    const p = scratch[c];
    const vOff = base + (keys === null ? c : keys[c]) * d;
    for (let e = 0; e < d; e++) out[outOff + e] += p * v[vOff + e];
  }
}

/**
 * Pools tile `t` over query heads `hFrom .. hTo - 1` (internal): writes
 * `scores[x] = sum over h, queries i of the tile of P[h,i](x)` for keys `x` before the tile's
 * first query, and returns the mass the same sum puts on the tile's diagonal keys.
 * `scratch` must hold `n` values.
 */
export function poolTile(
  r: ResolvedPrefill,
  hFrom: number,
  hTo: number,
  t: number,
  scores: Float64Array,
  scratch: Float64Array,
): number {
  const { headDim: d, group, n, queries, queryStart, tileSize: T } = r;
  const start = queryStart + t * T;
  const end = Math.min(start + T, n);
  scores.fill(0, 0, start);
  let diagonal = 0;
  for (let h = hFrom; h < hTo; h++) {
    const j = Math.floor(h / group);
    for (let pos = start; pos < end; pos++) {
      const count = pos + 1;
      scoreRow(r, (h * queries + pos - queryStart) * d, j, null, count, scratch);
      softmaxPrefix(scratch, count);
      for (let x = 0; x < start; x++) scores[x] += scratch[x];
      for (let x = start; x < count; x++) diagonal += scratch[x];
    }
  }
  return diagonal;
}
