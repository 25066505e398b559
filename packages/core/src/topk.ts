import { KascadeRangeError } from './budget.js';

// One growable scratch buffer: JavaScript runs one call at a time, and Top-k never re-enters itself.
let scratch = new Float64Array(0);

function scratchOf(size: number): Float64Array {
  if (scratch.length < size) scratch = new Float64Array(Math.max(size, scratch.length * 2));
  return scratch;
}

function swap(a: Float64Array, i: number, j: number): void {
  const t = a[i];
  a[i] = a[j];
  a[j] = t;
}

/**
 * Floyd-Rivest selection: afterwards `a[k]` holds the value that would sit at `k` if
 * `a[left..right]` were sorted ascending, with everything before it `<=` and after it `>=`.
 * Expected linear time; a loop that runs unusually long falls back to sorting what is left,
 * so the worst case stays `O(n log n)`.
 */
function select(a: Float64Array, k: number, left: number, right: number): void {
  let rounds = 64 + 4 * Math.ceil(Math.log2(right - left + 2));
  while (right > left) {
    if (--rounds < 0) {
      a.subarray(left, right + 1).sort();
      return;
    }
    if (right - left > 600) {
      // Recurse on a sample so the pivot lands close to position k.
      const size = right - left + 1;
      const rank = k - left + 1;
      const z = Math.log(size);
      const s = 0.5 * Math.exp((2 * z) / 3);
      const sd = 0.5 * Math.sqrt((z * s * (size - s)) / size) * (rank - size / 2 < 0 ? -1 : 1);
      const sampleLeft = Math.max(left, Math.floor(k - (rank * s) / size + sd));
      const sampleRight = Math.min(right, Math.floor(k + ((size - rank) * s) / size + sd));
      select(a, k, sampleLeft, sampleRight);
    }
    const pivot = a[k];
    let i = left;
    let j = right;
    swap(a, left, k);
    if (a[right] > pivot) swap(a, left, right);
    while (i < j) {
      swap(a, i, j);
      i++;
      j--;
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
    }
    if (a[left] === pivot) swap(a, left, j);
    else {
      j++;
      swap(a, j, right);
    }
    if (j <= k) left = j + 1;
    if (k <= j) right = j - 1;
  }
}

/**
 * Exact Top-k by selection (no full sort): the indices of the `k` largest of the first
 * `length` scores (default all), **sorted ascending by index**.
 *
 * - Ties: among equal scores the lower index wins (`-0` and `0` are equal).
 * - `NaN` ranks below every number, `-Infinity` included; NaNs are taken (lowest index first)
 *   only when fewer than `k` scores are numbers.
 * - `k >= length` returns every index `0 .. length - 1`; `k = 0` returns an empty array.
 *
 * Cost: one copy, one Floyd-Rivest selection for the k-th largest value, one pass to collect.
 */
export function topkIndices(scores: ArrayLike<number>, k: number, length?: number): Int32Array {
  if (scores == null || typeof scores.length !== 'number') {
    throw new KascadeRangeError('topkIndices: scores must be an array-like of numbers');
  }
  const n = length ?? scores.length;
  if (!(Number.isInteger(n) && n >= 0 && n <= scores.length)) {
    throw new KascadeRangeError(
      `topkIndices: length must be an integer in [0, scores.length = ${scores.length}], got ${length}`,
    );
  }
  if (!(Number.isInteger(k) && k >= 0)) {
    throw new KascadeRangeError(`topkIndices: k must be a non-negative integer, got ${k}`);
  }
  if (k >= n) {
    const all = new Int32Array(n);
    for (let i = 0; i < n; i++) all[i] = i;
    return all;
  }
  const out = new Int32Array(k);
  if (k === 0) return out;

  const buf = scratchOf(n);
  let m = 0;
  for (let i = 0; i < n; i++) {
    const s = scores[i];
    if (!Number.isNaN(s)) buf[m++] = s;
  }
  let c = 0;
  if (k >= m) {
    // Every number is in; fill up with the lowest-index NaNs.
    let nanQuota = k - m;
    for (let i = 0; i < n && c < k; i++) {
      const s = scores[i];
      if (!Number.isNaN(s)) out[c++] = i;
      else if (nanQuota > 0) {
        out[c++] = i;
        nanQuota--;
      }
    }
    return out;
  }
  // The k-th largest number sits at ascending position m - k.
  const at = m - k;
  select(buf, at, 0, m - 1);
  const threshold = buf[at];
  let greater = 0;
  for (let i = at + 1; i < m; i++) if (buf[i] > threshold) greater++;
  let equalQuota = k - greater;
  for (let i = 0; i < n && c < k; i++) {
    const s = scores[i];
    if (s > threshold) out[c++] = i;
    else if (s === threshold && equalQuota > 0) {
      out[c++] = i;
      equalQuota--;
    }
  }
  return out;
}
