/**
 * Independent, deliberately naive float64 implementations and random inputs for the tests.
 * Plain arrays, no shared code with the package: this is the oracle the reference is held to.
 * Not exported from the package.
 */
import fc from 'fast-check';
import type { DecodeInputs, PrefillInputs } from './types.js';

/** Random attention shapes for property tests: g = 1, 2 and 8, small odd head dims. */
export function shapeArbitrary(limits: { maxKvHeads?: number; maxHeadDim?: number } = {}) {
  return fc.record({
    kvHeads: fc.integer({ min: 1, max: limits.maxKvHeads ?? 2 }),
    group: fc.constantFrom(1, 2, 8),
    headDim: fc.integer({ min: 1, max: limits.maxHeadDim ?? 9 }),
  });
}

export const toShape = (s: { kvHeads: number; group: number; headDim: number }) => ({
  heads: s.kvHeads * s.group,
  kvHeads: s.kvHeads,
  headDim: s.headDim,
});

/** Prefill chunks: T = 1 included, queries not a multiple of T, chunks that start mid-sequence. */
export function chunkArbitrary(
  limits: { maxTile?: number; maxStartTiles?: number; maxQueries?: number } = {},
) {
  return fc
    .record({
      tileSize: fc.integer({ min: 1, max: limits.maxTile ?? 9 }),
      startTiles: fc.integer({ min: 0, max: limits.maxStartTiles ?? 4 }),
      queries: fc.integer({ min: 1, max: limits.maxQueries ?? 23 }),
    })
    .map(({ tileSize, startTiles, queries }) => ({ tileSize, queryStart: startTiles * tileSize, queries }));
}

export const seedArbitrary = fc.integer({ min: 1, max: 2 ** 31 - 1 });
export const propertyRuns = { numRuns: 60 };

/** A small seeded PRNG (mulberry32) so fast-check only has to draw a seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomArray(length: number, next: () => number, spread = 2): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = (next() * 2 - 1) * spread;
  return out;
}

export interface Shape {
  heads: number;
  kvHeads: number;
  headDim: number;
}

export function randomDecode(shape: Shape, n: number, seed: number, spread = 2): DecodeInputs {
  const next = rng(seed);
  const { heads, kvHeads, headDim } = shape;
  return {
    heads,
    kvHeads,
    headDim,
    n,
    q: randomArray(heads * headDim, next, spread),
    k: randomArray(kvHeads * n * headDim, next, spread),
    v: randomArray(kvHeads * n * headDim, next, spread),
  };
}

export function randomPrefill(
  shape: Shape,
  queryStart: number,
  queries: number,
  tileSize: number,
  seed: number,
  spread = 2,
): PrefillInputs {
  const next = rng(seed);
  const { heads, kvHeads, headDim } = shape;
  const n = queryStart + queries;
  return {
    heads,
    kvHeads,
    headDim,
    n,
    queries,
    queryStart,
    tileSize,
    q: randomArray(heads * queries * headDim, next, spread),
    k: randomArray(kvHeads * n * headDim, next, spread),
    v: randomArray(kvHeads * n * headDim, next, spread),
  };
}

function row(a: ArrayLike<number>, offset: number, length: number): number[] {
  return Array.from({ length }, (_, e) => a[offset + e]);
}

/** Key x of KV head j as a plain array. */
export function keyRow(inputs: DecodeInputs | PrefillInputs, j: number, x: number): number[] {
  const cap = inputs.capacity ?? inputs.n;
  return row(inputs.k, (j * cap + x) * inputs.headDim, inputs.headDim);
}

export function valueRow(inputs: DecodeInputs | PrefillInputs, j: number, x: number): number[] {
  const cap = inputs.capacity ?? inputs.n;
  return row(inputs.v, (j * cap + x) * inputs.headDim, inputs.headDim);
}

export function decodeQuery(inputs: DecodeInputs, h: number): number[] {
  return row(inputs.q, h * inputs.headDim, inputs.headDim);
}

export function prefillQuery(inputs: PrefillInputs, h: number, i: number): number[] {
  return row(inputs.q, (h * inputs.queries + i) * inputs.headDim, inputs.headDim);
}

const dot = (a: number[], b: number[]): number => a.reduce((s, x, e) => s + x * b[e], 0);

/** Softmax probabilities of `q` over the given key indices (a map from key to probability). */
export function naiveProbabilities(
  inputs: DecodeInputs | PrefillInputs,
  q: number[],
  j: number,
  keys: number[],
): Map<number, number> {
  const scale = inputs.scale ?? 1 / Math.sqrt(inputs.headDim);
  const logits = keys.map((x) => dot(q, keyRow(inputs, j, x)) * scale);
  const max = Math.max(...logits);
  const w = logits.map((l) => Math.exp(l - max));
  const total = w.reduce((s, x) => s + x, 0);
  return new Map(keys.map((x, c) => [x, w[c] / total]));
}

/** Attention of `q` over the given key set: weighted sum of V rows. */
export function naiveAttend(
  inputs: DecodeInputs | PrefillInputs,
  q: number[],
  j: number,
  keys: number[],
): number[] {
  const p = naiveProbabilities(inputs, q, j, keys);
  const out = new Array<number>(inputs.headDim).fill(0);
  for (const [x, w] of p) {
    const vx = valueRow(inputs, j, x);
    for (let e = 0; e < out.length; e++) out[e] += w * vx[e];
  }
  return out;
}

export const range = (from: number, to: number): number[] =>
  Array.from({ length: Math.max(0, to - from) }, (_, c) => from + c);

/** Relative error `||a - b|| / ||b||` (with `||b||` floored at 1e-300). */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-300);
}

/** Sort-based Top-k oracle: order by score descending (NaN lowest), ties lower index first. */
export function sortTopk(scores: ArrayLike<number>, k: number, length = scores.length): number[] {
  const key = (x: number): number => (Number.isNaN(scores[x]) ? Number.NEGATIVE_INFINITY : scores[x]);
  const order = range(0, length).sort((a, b) => {
    const na = Number.isNaN(scores[a]);
    const nb = Number.isNaN(scores[b]);
    if (na !== nb) return na ? 1 : -1;
    if (!na && key(a) !== key(b)) return key(b) - key(a);
    return a - b;
  });
  return order.slice(0, Math.min(k, length)).sort((a, b) => a - b);
}

/** A Float64Array full of NaN, for poisoning outputs. */
export const poisoned = (length: number): Float64Array => new Float64Array(length).fill(Number.NaN);

/** fast-check-free helpers to draw random index sets from a seed. */
export function shuffled(count: number, next: () => number): number[] {
  const a = range(0, count);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
