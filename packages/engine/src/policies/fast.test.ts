/**
 * Parity of the `fast` (float32 WebAssembly SIMD) attention ops with the core float64
 * reference: outputs within `||out - ref|| / ||ref|| < 1e-5`, selections equal as sets except
 * where two keys' reference pooled scores are within float32 rounding of the k-th largest.
 * Fresh random inputs, the workspace's memory NaN-poisoned before every op, sizes that are
 * not multiples of the tile, 4, or 16.
 */
import {
  allHeadsPooledDecodeTopk,
  allHeadsPooledPrefillTopk,
  anchorDecodeTopk,
  anchorPrefillTopk,
  type DecodeInputs,
  type DecodeSelection,
  denseCausalPrefillAttention,
  denseDecodeAttention,
  type PrefillInputs,
  type PrefillSelection,
  pooledDecodeScores,
  pooledPrefillScores,
  prefillTileBudget,
  SelectionError,
  ShapeError,
  sparseDecodeAttention,
  sparsePrefillAttention,
} from '@kascade/core';
import { afterEach, describe, expect, it } from 'vitest';
import { attentionWorkspace } from '../model/attention-wasm.js';
import { mulberry32 } from '../model/random.js';
import { fastAttentionOps, fastLimits } from './fast.js';
import { attentionOps, referenceOps } from './ops.js';

const TOL = 1e-5;

function random(n: number, rand: () => number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (2 * rand() - 1) * scale);
}

/** `||a - b|| / ||b||`, after checking every value of `a` is finite. */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!)) throw new Error(`non-finite output ${a[i]} at ${i}`);
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  expect(den).toBeGreaterThan(0);
  return Math.sqrt(num / den);
}

interface Shape {
  heads: number;
  kvHeads: number;
  headDim: number;
}

function decodeInputs(s: Shape, n: number, seed: number, capacity = n): DecodeInputs {
  const rand = mulberry32(seed);
  return {
    ...s,
    n,
    capacity,
    q: random(s.heads * s.headDim, rand, 2),
    k: random(s.kvHeads * capacity * s.headDim, rand, 2),
    v: random(s.kvHeads * capacity * s.headDim, rand),
  };
}

function prefillInputs(s: Shape, n: number, queries: number, tileSize: number, seed: number): PrefillInputs {
  const rand = mulberry32(seed);
  const capacity = n + 5;
  return {
    ...s,
    n,
    capacity,
    queries,
    queryStart: n - queries,
    tileSize,
    q: random(s.heads * queries * s.headDim, rand, 2),
    k: random(s.kvHeads * capacity * s.headDim, rand, 2),
    v: random(s.kvHeads * capacity * s.headDim, rand),
  };
}

const fast = () => {
  const ops = fastAttentionOps(64) ?? fastAttentionOps(16);
  if (!ops) throw new Error('the fast ops must run here (WebAssembly SIMD)');
  return ops;
};

/** NaN in every byte of the workspace, so an op that reads scratch it did not write shows. */
function poison(headDim: number): void {
  attentionWorkspace(headDim)!.poison();
}

/**
 * `chosen` (indices of `count` keys among the first `length` scores) is a valid Top-k of the
 * reference scores: no duplicates, in range, and every chosen score at least the k-th
 * largest, up to float32 rounding of the pooled sums. Returns whether it equals the exact set.
 */
function checkTopk(
  chosen: ArrayLike<number>,
  count: number,
  ref: ArrayLike<number>,
  length: number,
): boolean {
  expect(chosen.length).toBe(count);
  const set = new Set<number>();
  for (let i = 0; i < count; i++) {
    const x = chosen[i]!;
    expect(x >= 0 && x < length).toBe(true);
    set.add(x);
  }
  expect(set.size).toBe(count);
  const sorted = Array.from({ length }, (_, x) => ref[x]!).sort((a, b) => b - a);
  const kth = sorted[count - 1]!;
  const tol = 1e-5 * Math.max(1e-30, sorted[0]!);
  for (const x of set) expect(ref[x]!).toBeGreaterThanOrEqual(kth - tol);
  let exact = true;
  for (let x = 0; x < length; x++) if (ref[x]! > kth + tol && !set.has(x)) exact = false;
  return exact && [...set].every((x) => ref[x]! >= kth);
}

function checkPrefillSelection(
  got: PrefillSelection,
  want: PrefillSelection,
  scores: (j: number, t: number, x: number) => number,
  inputs: PrefillInputs,
): number {
  expect(got.kvHeads).toBe(want.kvHeads);
  expect(got.tiles).toBe(want.tiles);
  expect(Array.from(got.counts)).toEqual(Array.from(want.counts));
  let checked = 0;
  for (let j = 0; j < got.kvHeads; j++) {
    for (let t = 0; t < got.tiles; t++) {
      const count = got.counts[t]!;
      if (count === 0) continue;
      const start = inputs.queryStart + t * inputs.tileSize;
      const row = got.indices.subarray(
        (j * got.tiles + t) * got.kMax,
        (j * got.tiles + t) * got.kMax + count,
      );
      const ref = Array.from({ length: start }, (_, x) => scores(j, t, x));
      // With random scores, float32 pooling picks exactly the reference set.
      expect(checkTopk(row, count, ref, start)).toBe(true);
      checked++;
    }
  }
  return checked;
}

const shapes: [string, Shape][] = [
  ['8/2 heads, d 64', { heads: 8, kvHeads: 2, headDim: 64 }],
  ['3/3 heads, d 16', { heads: 3, kvHeads: 3, headDim: 16 }],
  ['6/1 heads, d 32', { heads: 6, kvHeads: 1, headDim: 32 }],
];

afterEach(() => {
  fastLimits.scoreBytes = 32 * 2 ** 20;
});

describe('fast attention ops vs the float64 reference', () => {
  for (const [label, s] of shapes) {
    it(`dense and sparse decode (${label})`, () => {
      const ops = fastAttentionOps(s.headDim)!;
      expect(ops.impl).toBe('fast');
      for (const [n, seed] of [
        [1, 1],
        [5, 2],
        [17, 3],
        [300, 4],
      ] as const) {
        const inputs = decodeInputs(s, n, seed * 7 + s.heads, n + 3);
        poison(s.headDim);
        expect(relDiff(ops.denseDecode(inputs), denseDecodeAttention(inputs))).toBeLessThan(TOL);
        // A selection with its rows in no particular order, read through a head map.
        const k = Math.max(1, Math.floor(n / 3));
        const rand = mulberry32(seed);
        const indices = new Int32Array(2 * k);
        for (let row = 0; row < 2; row++) {
          const perm = Array.from({ length: n }, (_, i) => i).sort(() => rand() - 0.5);
          indices.set(perm.slice(0, k), row * k);
        }
        const selection: DecodeSelection = { kvHeads: 2, k, indices };
        const map = Array.from({ length: s.kvHeads }, (_, j) => (j + 1) % 2);
        poison(s.headDim);
        expect(
          relDiff(ops.sparseDecode(inputs, selection, map), sparseDecodeAttention(inputs, selection, map)),
        ).toBeLessThan(TOL);
      }
    });

    it(`dense causal and sparse prefill with the diagonal tile (${label})`, () => {
      const ops = fastAttentionOps(s.headDim)!;
      for (const [n, queries, T, seed] of [
        [8, 8, 8, 1],
        [37, 13, 8, 2],
        [203, 43, 16, 3],
        [70, 70, 32, 4],
      ] as const) {
        const inputs = prefillInputs(s, n, queries, T, seed * 13 + s.heads);
        poison(s.headDim);
        expect(relDiff(ops.denseCausalPrefill(inputs), denseCausalPrefillAttention(inputs))).toBeLessThan(
          TOL,
        );
        // Per tile: some earlier keys, plus keys at or after the tile start (covered by the
        // diagonal where visible, masked where not), in no particular order.
        const tiles = Math.ceil(queries / T);
        const rand = mulberry32(seed + 99);
        const counts = new Int32Array(tiles);
        const kMax = Math.max(1, Math.ceil(n / 2));
        const indices = new Int32Array(2 * tiles * kMax).fill(-1);
        for (let t = 0; t < tiles; t++) {
          const perm = Array.from({ length: n }, (_, i) => i).sort(() => rand() - 0.5);
          counts[t] = Math.floor(rand() * (kMax + 1));
          for (let row = 0; row < 2; row++) indices.set(perm.slice(0, counts[t]), (row * tiles + t) * kMax);
        }
        const selection: PrefillSelection = { kvHeads: 2, tiles, tileSize: T, kMax, counts, indices };
        const map = Array.from({ length: s.kvHeads }, (_, j) => (j * 7 + 1) % 2);
        poison(s.headDim);
        expect(
          relDiff(ops.sparsePrefill(inputs, selection, map), sparsePrefillAttention(inputs, selection, map)),
        ).toBeLessThan(TOL);
      }
    });

    it(`anchor and all-heads-pooled Top-k, decode (${label})`, () => {
      const ops = fastAttentionOps(s.headDim)!;
      let exact = 0;
      let rows = 0;
      for (const [n, budget] of [
        [9, { kMin: 4 }],
        [150, { kMin: 8, percent: 10 }],
        [301, { kMin: 1, percent: 33 }],
        [40, { kMin: 128 }],
      ] as const) {
        const inputs = decodeInputs(s, n, n + s.heads);
        poison(s.headDim);
        const got = ops.anchorDecodeTopk(inputs, budget);
        const want = anchorDecodeTopk(inputs, budget);
        expect(got.k).toBe(want.k);
        const pooled = pooledDecodeScores(inputs);
        for (let j = 0; j < s.kvHeads; j++) {
          const ok = checkTopk(
            got.indices.subarray(j * got.k, (j + 1) * got.k),
            got.k,
            pooled.subarray(j * n),
            n,
          );
          exact += ok ? 1 : 0;
          rows++;
        }
        // All heads pooled: one set, copied to every KV head row.
        poison(s.headDim);
        const all = ops.allHeadsPooledDecodeTopk(inputs, budget);
        expect(all.k).toBe(allHeadsPooledDecodeTopk(inputs, budget).k);
        const sum = new Float64Array(n);
        for (let j = 0; j < s.kvHeads; j++) for (let x = 0; x < n; x++) sum[x] += pooled[j * n + x]!;
        for (let j = 0; j < s.kvHeads; j++) {
          expect(Array.from(all.indices.subarray(j * all.k, (j + 1) * all.k))).toEqual(
            Array.from(all.indices.subarray(0, all.k)),
          );
        }
        checkTopk(all.indices.subarray(0, all.k), all.k, sum, n);
        // The fused dense-anchor op: the dense output and the same selection.
        poison(s.headDim);
        const fused = ops.denseAnchorDecode(inputs, budget);
        expect(relDiff(fused.out, denseDecodeAttention(inputs))).toBeLessThan(TOL);
        expect(Array.from(fused.selection.indices)).toEqual(Array.from(got.indices));
      }
      // With random scores, float32 pooling picks exactly the reference set.
      expect(exact).toBe(rows);
    });

    it(`anchor and all-heads-pooled Top-k, prefill, rolling budget (${label})`, () => {
      const ops = fastAttentionOps(s.headDim)!;
      let checked = 0;
      for (const [n, queries, T, budget] of [
        [83, 35, 8, { kMin: 4, percent: 20 }],
        [200, 200, 16, { kMin: 16, percent: 10 }],
        [61, 29, 32, { kMin: 128 }],
      ] as const) {
        const inputs = prefillInputs(s, n, queries, T, n * 3 + s.heads);
        poison(s.headDim);
        const got = ops.anchorPrefillTopk(inputs, budget);
        const want = anchorPrefillTopk(inputs, budget);
        const ref = pooledPrefillScores(inputs);
        const at = (j: number, t: number, x: number) => ref.scores[(j * ref.tiles + t) * n + x]!;
        checked += checkPrefillSelection(got, want, at, inputs);
        for (let t = 0; t < got.tiles; t++) {
          expect(got.counts[t]).toBe(prefillTileBudget(inputs.queryStart + t * T, budget));
        }
        poison(s.headDim);
        const fused = ops.denseAnchorPrefill(inputs, budget);
        expect(relDiff(fused.out, denseCausalPrefillAttention(inputs))).toBeLessThan(TOL);
        expect(Array.from(fused.selection.indices)).toEqual(Array.from(got.indices));
        poison(s.headDim);
        const all = ops.allHeadsPooledPrefillTopk(inputs, budget);
        const allWant = allHeadsPooledPrefillTopk(inputs, budget);
        const sumAt = (_j: number, t: number, x: number) => {
          let v = 0;
          for (let j = 0; j < s.kvHeads; j++) v += at(j, t, x);
          return v;
        };
        checked += checkPrefillSelection(all, allWant, sumAt, inputs);
      }
      expect(checked).toBeGreaterThan(4);
    });
  }

  it('dense prefill with the pooled scores calibration records (scores, diagonal mass)', () => {
    for (const [label, s] of shapes) {
      const ops = fastAttentionOps(s.headDim)!;
      for (const [n, queries, T] of [
        [45, 45, 8],
        [133, 37, 16],
      ] as const) {
        const inputs = prefillInputs(s, n, queries, T, n + s.heads);
        poison(s.headDim);
        const got = ops.densePrefillPooled(inputs);
        const want = referenceOps.densePrefillPooled(inputs);
        expect(relDiff(got.out, want.out), label).toBeLessThan(TOL);
        expect(got.pooled.tiles).toBe(want.pooled.tiles);
        expect(relDiff(got.pooled.scores, want.pooled.scores), label).toBeLessThan(TOL);
        expect(relDiff(got.pooled.diagonalMass, want.pooled.diagonalMass), label).toBeLessThan(TOL);
        // Every (KV head, tile) holds group x tile-queries of mass in all.
        const tiles = got.pooled.tiles;
        for (let j = 0; j < s.kvHeads; j++) {
          for (let t = 0; t < tiles; t++) {
            const start = inputs.queryStart + t * T;
            const rows = (s.heads / s.kvHeads) * (Math.min(start + T, n) - start);
            let sum = got.pooled.diagonalMass[j * tiles + t]!;
            for (let x = 0; x < n; x++) sum += got.pooled.scores[(j * tiles + t) * n + x]!;
            expect(Math.abs(sum - rows)).toBeLessThan(1e-4 * rows);
          }
        }
      }
    }
  });

  it('splits large blocks by rows with the same results', () => {
    const s = { heads: 8, kvHeads: 2, headDim: 64 };
    const ops = fast();
    const prefill = prefillInputs(s, 157, 45, 16, 5);
    const decode = decodeInputs(s, 150, 6);
    const budget = { kMin: 8, percent: 10 };
    const whole = ops.denseAnchorPrefill(prefill, budget);
    const wholeSparse = ops.sparsePrefill(prefill, whole.selection);
    const wholeDecode = ops.denseAnchorDecode(decode, budget);
    fastLimits.scoreBytes = 1; // four rows per block
    poison(64);
    const split = ops.denseAnchorPrefill(prefill, budget);
    expect(relDiff(split.out, denseCausalPrefillAttention(prefill))).toBeLessThan(TOL);
    expect(relDiff(split.out, whole.out)).toBeLessThan(1e-6);
    expect(Array.from(split.selection.indices)).toEqual(Array.from(whole.selection.indices));
    expect(relDiff(ops.sparsePrefill(prefill, whole.selection), wholeSparse)).toBeLessThan(1e-6);
    const splitDecode = ops.denseAnchorDecode(decode, budget);
    expect(relDiff(splitDecode.out, wholeDecode.out)).toBeLessThan(1e-6);
    expect(Array.from(splitDecode.selection.indices)).toEqual(Array.from(wholeDecode.selection.indices));
  });

  it('handles large score ranges (masked and tiny probabilities give exact zeros, no NaN)', () => {
    const s = { heads: 4, kvHeads: 1, headDim: 16 };
    const ops = fastAttentionOps(16)!;
    const inputs = prefillInputs(s, 64, 64, 16, 11);
    const q = inputs.q as Float32Array;
    for (let i = 0; i < q.length; i++) q[i]! *= 40; // scores far below the row maximum underflow
    poison(16);
    expect(relDiff(ops.denseCausalPrefill(inputs), denseCausalPrefillAttention(inputs))).toBeLessThan(TOL);
  });

  it('rejects bad inputs with the reference ops’ typed errors', () => {
    const s = { heads: 8, kvHeads: 2, headDim: 64 };
    const ops = fast();
    const inputs = decodeInputs(s, 10, 1);
    expect(() => ops.denseDecode({ ...inputs, q: new Float32Array(3) })).toThrow(ShapeError);
    expect(() => ops.denseDecode({ ...inputs, n: 11 })).toThrow(/capacity|length/);
    expect(() => ops.denseDecode({ ...inputs, heads: 7 })).toThrow(/multiple of kvHeads|length/);
    const bad: DecodeSelection = { kvHeads: 2, k: 2, indices: Int32Array.from([0, 0, 1, 2]) };
    expect(() => ops.sparseDecode(inputs, bad)).toThrow(SelectionError);
    const ok: DecodeSelection = { kvHeads: 2, k: 2, indices: Int32Array.from([0, 1, 1, 2]) };
    expect(() => ops.sparseDecode(inputs, ok, [0, 5])).toThrow(SelectionError);
    const pre = prefillInputs(s, 41, 17, 8, 2);
    expect(() =>
      ops.denseCausalPrefill({ ...pre, queryStart: 22, n: 39, q: new Float32Array(8 * 17 * 64) }),
    ).toThrow(/multiple of tileSize/);
    expect(() => ops.sparsePrefill(pre, ok as never)).toThrow(SelectionError);
    expect(() => fastAttentionOps(64)!.denseDecode(decodeInputs({ ...s, headDim: 16 }, 5, 1))).toThrow(
      /headDim 16/,
    );
  });

  it('the reference runs where asked, or where the kernels cannot (head dim not a multiple of 16)', () => {
    expect(attentionOps('reference', 64)).toBe(referenceOps);
    expect(attentionOps(undefined, 8)).toBe(referenceOps);
    expect(attentionOps(undefined, 64).impl).toBe('fast');
    expect(() => attentionOps('gpu' as never, 64)).toThrow(/fast' or 'reference/);
  });
});
