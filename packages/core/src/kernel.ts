/**
 * The inner loops of the reference ops (internal). Everything is float64; inputs are read
 * through their typed arrays and widened on the fly.
 *
 * The loops work on a block of query rows that share a KV head (the heads of a GQA group, times
 * the queries of a tile in prefill), so each key and value row is read once per block rather
 * than once per query row. Attention uses an online softmax over key chunks, so its scratch
 * does not grow with `n`.
 */
import type { FloatArray } from './types.js';
import type { Resolved, ResolvedPrefill } from './validate.js';

/** Keys per chunk of the online softmax. */
const CHUNK = 256;

/** Tunables, mutable only so tests can force the sub-blocking paths at small sizes. */
export const kernelLimits = {
  /** Most float64 values a probability block holds at once (16 MiB). */
  probabilityValues: 1 << 21,
};

// Growable scratch, shared: JavaScript runs one op at a time and no op re-enters another.
let qBlock = new Float64Array(0);
let scratchLogits = new Float64Array(0);
let scratchAcc = new Float64Array(0);
let scratchMax = new Float64Array(0);
let scratchSum = new Float64Array(0);
let scratchProbs = new Float64Array(0);
const scratchVOffs = new Int32Array(CHUNK);

/** Fills every scratch buffer with NaN, so tests can show no op reads what an earlier call left. */
export function poisonScratch(): void {
  for (const buffer of [qBlock, scratchLogits, scratchAcc, scratchMax, scratchSum, scratchProbs])
    buffer.fill(Number.NaN);
  scratchVOffs.fill(-1);
}

function reserve(rows: number, d: number): void {
  if (qBlock.length < rows * d) {
    qBlock = new Float64Array(rows * d);
    scratchAcc = new Float64Array(rows * d);
  }
  if (scratchLogits.length < rows * CHUNK) scratchLogits = new Float64Array(rows * CHUNK);
  if (scratchMax.length < rows) {
    scratchMax = new Float64Array(rows);
    scratchSum = new Float64Array(rows);
  }
}

function loadQueries(q: FloatArray, qOffs: Int32Array, rows: number, d: number): void {
  const qb = qBlock;
  for (let rr = 0; rr < rows; rr++) {
    const src = qOffs[rr];
    const dst = rr * d;
    for (let e = 0; e < d; e++) qb[dst + e] = q[src + e];
  }
}

function dot(a: Float64Array, ao: number, b: FloatArray, bo: number, d: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let e = 0;
  for (; e + 3 < d; e += 4) {
    s0 += a[ao + e] * b[bo + e];
    s1 += a[ao + e + 1] * b[bo + e + 1];
    s2 += a[ao + e + 2] * b[bo + e + 2];
    s3 += a[ao + e + 3] * b[bo + e + 3];
  }
  for (; e < d; e++) s0 += a[ao + e] * b[bo + e];
  return s0 + s1 + (s2 + s3);
}

/**
 * Scores one key row against every query row of the block, four rows per pass so each key
 * element is read once per four rows: `dst[rr * stride + at] = scale * q[rr] . key`.
 */
function scoreKey(
  qb: Float64Array,
  rows: number,
  k: FloatArray,
  kOff: number,
  d: number,
  scale: number,
  dst: Float64Array,
  at: number,
  stride: number,
): void {
  let rr = 0;
  for (; rr + 3 < rows; rr += 4) {
    const q0 = rr * d;
    const q1 = q0 + d;
    const q2 = q1 + d;
    const q3 = q2 + d;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let e = 0; e < d; e++) {
      const x = k[kOff + e];
      s0 += qb[q0 + e] * x;
      s1 += qb[q1 + e] * x;
      s2 += qb[q2 + e] * x;
      s3 += qb[q3 + e] * x;
    }
    dst[rr * stride + at] = s0 * scale;
    dst[(rr + 1) * stride + at] = s1 * scale;
    dst[(rr + 2) * stride + at] = s2 * scale;
    dst[(rr + 3) * stride + at] = s3 * scale;
  }
  for (; rr < rows; rr++) dst[rr * stride + at] = dot(qb, rr * d, k, kOff, d) * scale;
}

/**
 * Attention for a block of query rows on one KV head. Row `rr` has its query at `q[qOffs[rr]]`,
 * sees the first `rowCounts[rr]` (>= 1) keys of the list (`keys`, or `0, 1, ..` when null), and
 * writes its output to `out[outOffs[rr] ..]`: the softmax-weighted sum of those V rows.
 */
export function attendBlock(
  r: Resolved,
  qOffs: Int32Array,
  rows: number,
  kvHead: number,
  keys: Int32Array | null,
  rowCounts: Int32Array,
  out: Float64Array,
  outOffs: Int32Array,
): void {
  const { k, v, headDim: d, scale } = r;
  const base = kvHead * r.capacity * d;
  reserve(rows, d);
  loadQueries(r.q, qOffs, rows, d);
  // Local aliases: module-level bindings are slower to read in hot loops.
  const qb = qBlock;
  const logits = scratchLogits;
  const acc = scratchAcc;
  const rowMax = scratchMax;
  const rowSum = scratchSum;
  let maxCount = 0;
  for (let rr = 0; rr < rows; rr++) {
    rowMax[rr] = Number.NEGATIVE_INFINITY;
    rowSum[rr] = 0;
    if (rowCounts[rr] > maxCount) maxCount = rowCounts[rr];
  }
  acc.fill(0, 0, rows * d);
  for (let c0 = 0; c0 < maxCount; c0 += CHUNK) {
    const width = Math.min(CHUNK, maxCount - c0);
    // Scores of the chunk; keys a row may not see get -Infinity.
    for (let c = 0; c < width; c++) {
      scoreKey(qb, rows, k, base + (keys === null ? c0 + c : keys[c0 + c]) * d, d, scale, logits, c, CHUNK);
      for (let rr = 0; rr < rows; rr++) {
        if (c0 + c >= rowCounts[rr]) logits[rr * CHUNK + c] = Number.NEGATIVE_INFINITY;
      }
    }
    // Online softmax: rescale what the row holds to the new running maximum.
    for (let rr = 0; rr < rows; rr++) {
      const lo = rr * CHUNK;
      let chunkMax = Number.NEGATIVE_INFINITY;
      for (let c = 0; c < width; c++) if (logits[lo + c] > chunkMax) chunkMax = logits[lo + c];
      if (chunkMax === Number.NEGATIVE_INFINITY) {
        logits.fill(0, lo, lo + width);
        continue;
      }
      const oldMax = rowMax[rr];
      const newMax = Math.max(chunkMax, oldMax);
      if (newMax !== oldMax && oldMax !== Number.NEGATIVE_INFINITY) {
        const alpha = Math.exp(oldMax - newMax);
        rowSum[rr] *= alpha;
        for (let e = rr * d; e < (rr + 1) * d; e++) acc[e] *= alpha;
      }
      let sum = 0;
      for (let c = 0; c < width; c++) {
        const p = Math.exp(logits[lo + c] - newMax);
        logits[lo + c] = p;
        sum += p;
      }
      rowSum[rr] += sum;
      rowMax[rr] = newMax;
    }
    // Weighted V rows: per row, eight output columns at a time in locals (one read-modify-write
    // of the accumulator per chunk instead of one per key). A row stops at its own count, so
    // keys it may not see never touch it.
    const vOffs = scratchVOffs;
    for (let c = 0; c < width; c++) vOffs[c] = base + (keys === null ? c0 + c : keys[c0 + c]) * d;
    for (let rr = 0; rr < rows; rr++) {
      const w = Math.min(width, rowCounts[rr] - c0);
      if (w <= 0) continue;
      const lo = rr * CHUNK;
      const ao = rr * d;
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
        for (let c = 0; c < w; c++) {
          const p = logits[lo + c];
          const o = vOffs[c] + e;
          s0 += p * v[o];
          s1 += p * v[o + 1];
          s2 += p * v[o + 2];
          s3 += p * v[o + 3];
          s4 += p * v[o + 4];
          s5 += p * v[o + 5];
          s6 += p * v[o + 6];
          s7 += p * v[o + 7];
        }
        acc[ao + e] += s0;
        acc[ao + e + 1] += s1;
        acc[ao + e + 2] += s2;
        acc[ao + e + 3] += s3;
        acc[ao + e + 4] += s4;
        acc[ao + e + 5] += s5;
        acc[ao + e + 6] += s6;
        acc[ao + e + 7] += s7;
      }
      for (; e < d; e++) {
        let s0 = 0;
        for (let c = 0; c < w; c++) s0 += logits[lo + c] * v[vOffs[c] + e];
        acc[ao + e] += s0;
      }
    }
  }
  for (let rr = 0; rr < rows; rr++) {
    const inv = 1 / rowSum[rr];
    const dst = outOffs[rr];
    for (let e = 0; e < d; e++) out[dst + e] = acc[rr * d + e] * inv;
  }
}

/**
 * Full softmax probabilities for a block of query rows on one KV head over keys `0 ..
 * rowCounts[rr] - 1`: row `rr` lands in `into[rr * stride ..]`; its entries from its count up to
 * the block's largest count are overwritten with scratch.
 */
export function probabilityBlock(
  r: Resolved,
  qOffs: Int32Array,
  rows: number,
  kvHead: number,
  rowCounts: Int32Array,
  into: Float64Array,
  stride: number,
): void {
  const { k, headDim: d, scale } = r;
  const base = kvHead * r.capacity * d;
  reserve(rows, d);
  loadQueries(r.q, qOffs, rows, d);
  const qb = qBlock;
  let maxCount = 0;
  for (let rr = 0; rr < rows; rr++) if (rowCounts[rr] > maxCount) maxCount = rowCounts[rr];
  // Every key is scored for every row; a row's entries past its count are scratch it never reads.
  for (let x = 0; x < maxCount; x++) scoreKey(qb, rows, k, base + x * d, d, scale, into, x, stride);
  for (let rr = 0; rr < rows; rr++) softmaxAt(into, rr * stride, rowCounts[rr]);
}

/** In-place stable softmax of `a[offset .. offset + count)`. */
export function softmaxAt(a: Float64Array, offset: number, count: number): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let c = offset; c < offset + count; c++) if (a[c] > max) max = a[c];
  let sum = 0;
  for (let c = offset; c < offset + count; c++) {
    const e = Math.exp(a[c] - max);
    a[c] = e;
    sum += e;
  }
  const inv = 1 / sum;
  for (let c = offset; c < offset + count; c++) a[c] *= inv;
}

/**
 * Scaled logits of one query row against KV head `kvHead`'s keys `0 .. count - 1` (used by the
 * pre-softmax variant).
 */
export function scoreRow(r: Resolved, qOff: number, kvHead: number, count: number, out: Float64Array): void {
  const { q, k, headDim: d, scale } = r;
  reserve(1, d);
  const qb = qBlock;
  for (let e = 0; e < d; e++) qb[e] = q[qOff + e];
  const base = kvHead * r.capacity * d;
  for (let x = 0; x < count; x++) out[x] = dot(qb, 0, k, base + x * d, d) * scale;
}

/**
 * Pools tile `t` over query heads `hFrom .. hTo - 1`: writes
 * `scores[x] = sum over those heads and the tile's queries of P[h,i](x)` for keys `x` before
 * the tile's first query (P the full causal softmax), and returns the mass the same sum puts on
 * the tile's diagonal keys.
 */
export function poolTile(
  r: ResolvedPrefill,
  hFrom: number,
  hTo: number,
  t: number,
  scores: Float64Array,
): number {
  const { group, n, queries, queryStart, tileSize: T, headDim: d } = r;
  const start = queryStart + t * T;
  const end = Math.min(start + T, n);
  const tileRows = end - start;
  scores.fill(0, 0, start);
  let diagonal = 0;
  // Rows are (head, query) pairs sharing a KV head, in sub-blocks small enough to hold.
  const perBlock = Math.max(
    1,
    Math.min((hTo - hFrom) * tileRows, Math.floor(kernelLimits.probabilityValues / end)),
  );
  if (scratchProbs.length < perBlock * end) scratchProbs = new Float64Array(perBlock * end);
  const probs = scratchProbs;
  const qOffs = new Int32Array(perBlock);
  const counts = new Int32Array(perBlock);
  for (let j = Math.floor(hFrom / group); j * group < hTo; j++) {
    const h0 = Math.max(hFrom, j * group);
    const h1 = Math.min(hTo, (j + 1) * group);
    const total = (h1 - h0) * tileRows;
    for (let first = 0; first < total; first += perBlock) {
      const rows = Math.min(perBlock, total - first);
      for (let rr = 0; rr < rows; rr++) {
        const h = h0 + Math.floor((first + rr) / tileRows);
        const pos = start + ((first + rr) % tileRows);
        qOffs[rr] = (h * queries + pos - queryStart) * d;
        counts[rr] = pos + 1;
      }
      probabilityBlock(r, qOffs, rows, j, counts, probs, end);
      for (let rr = 0; rr < rows; rr++) {
        const lo = rr * end;
        for (let x = 0; x < start; x++) scores[x] += probs[lo + x];
        for (let x = start; x < counts[rr]; x++) diagonal += probs[lo + x];
      }
    }
  }
  return diagonal;
}

/**
 * Decode pooling over query heads `hFrom .. hTo - 1`: adds `sum over those heads of P[h](x)` to
 * `into[x]` for every key `x < n`, without holding more than a block of probabilities.
 */
export function poolDecodeHeads(r: Resolved, hFrom: number, hTo: number, into: Float64Array): void {
  const { group, n, headDim: d } = r;
  const perBlock = Math.max(1, Math.min(hTo - hFrom, Math.floor(kernelLimits.probabilityValues / n)));
  if (scratchProbs.length < perBlock * n) scratchProbs = new Float64Array(perBlock * n);
  const probs = scratchProbs;
  const qOffs = new Int32Array(perBlock);
  const counts = new Int32Array(perBlock).fill(n);
  for (let j = Math.floor(hFrom / group); j * group < hTo; j++) {
    const h0 = Math.max(hFrom, j * group);
    const h1 = Math.min(hTo, (j + 1) * group);
    for (let first = h0; first < h1; first += perBlock) {
      const rows = Math.min(perBlock, h1 - first);
      for (let rr = 0; rr < rows; rr++) qOffs[rr] = (first + rr) * d;
      probabilityBlock(r, qOffs, rows, j, counts, probs, n);
      for (let rr = 0; rr < rows; rr++) {
        const lo = rr * n;
        for (let x = 0; x < n; x++) into[x] += probs[lo + x];
      }
    }
  }
}
