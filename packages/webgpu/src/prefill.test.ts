import {
  anchorPrefillTopk,
  denseCausalPrefillAttention,
  fromF16,
  type PrefillInputs,
  type PrefillSelection,
  pooledPrefillScores,
  prefillTileBudget,
  sparsePrefillAttention,
  toF16,
} from '@kascade/core';
import { afterAll, describe, expect, it } from 'vitest';
import type { KVDType } from './program.js';
import { allFinite, checkTopk, openTestBackends, randomFloats, relError } from './test-gpu.js';

const probe = await openTestBackends();
afterAll(() => probe.context?.destroy());

function makeInputs(
  shape: {
    heads: number;
    kvHeads: number;
    headDim: number;
    queries: number;
    queryStart: number;
    tileSize: number;
  },
  seed: number,
  dtype: KVDType,
): { gpu: PrefillInputs; ref: PrefillInputs } {
  const n = shape.queryStart + shape.queries;
  const cap = n + 3;
  const q = randomFloats(shape.heads * shape.queries * shape.headDim, seed, 2.5);
  const k = randomFloats(shape.kvHeads * cap * shape.headDim, seed + 1, 1);
  const v = randomFloats(shape.kvHeads * cap * shape.headDim, seed + 2, 1);
  const gpu = { ...shape, n, capacity: cap, q, k, v };
  const stored = (x: Float32Array) => (dtype === 'f32' ? x : fromF16(toF16(x)));
  return { gpu, ref: { ...gpu, k: stored(k), v: stored(v) } };
}

const CASES = [
  { dtype: 'f32', heads: 8, kvHeads: 2, headDim: 64, queries: 100, queryStart: 64, tileSize: 16 },
  { dtype: 'f32', heads: 8, kvHeads: 8, headDim: 128, queries: 70, queryStart: 0, tileSize: 32 },
  { dtype: 'f16', heads: 6, kvHeads: 1, headDim: 128, queries: 40, queryStart: 96, tileSize: 8 },
] as const;
const BUDGET = { percent: 25, kMin: 8 };

describe.each(CASES)(
  'prefill parity, K/V $dtype, $heads/$kvHeads heads, d $headDim, $queries queries from $queryStart, T $tileSize',
  (c) => {
    const backend = probe.backends[c.dtype];
    describe.skipIf(!backend)(`on WebGPU${probe.reason ? ` (skipped: ${probe.reason})` : ''}`, () => {
      it('dense, dense-anchor, anchor, reuse agree with the reference', async () => {
        const { dtype, ...shape } = c;
        const { gpu, ref } = makeInputs(shape, shape.queries * 31 + shape.heads, dtype);
        const b = backend!;
        const tol = 1e-5;
        const denseRef = denseCausalPrefillAttention(ref);
        const dense = await b.densePrefill(gpu);
        expect(allFinite(dense)).toBe(true);
        expect(relError(dense, denseRef)).toBeLessThan(tol);

        const pooled = pooledPrefillScores(ref);
        const n = gpu.n;
        const tiles = pooled.tiles;
        const checkSel = (sel: PrefillSelection) => {
          expect(sel.tiles).toBe(tiles);
          for (let t = 0; t < tiles; t++) {
            expect(sel.counts[t]).toBe(prefillTileBudget(shape.queryStart + t * shape.tileSize, BUDGET));
          }
          const rows = checkTopk(
            sel,
            (r) => r * sel.kMax,
            shape.kvHeads * tiles,
            (r) => shape.queryStart + (r % tiles) * shape.tileSize,
            (r) => sel.counts[r % tiles],
            (r) => pooled.scores.subarray(r * n, (r + 1) * n),
          );
          expect(rows).toBeGreaterThan(0);
        };
        const d0 = await b.denseAnchorPrefill(gpu, BUDGET);
        expect(relError(d0.out, denseRef)).toBeLessThan(tol);
        checkSel(d0.selection);

        const an = await b.anchorPrefill(gpu, BUDGET);
        checkSel(an.selection);
        expect(allFinite(an.out)).toBe(true);
        expect(relError(an.out, sparsePrefillAttention(ref, an.selection))).toBeLessThan(tol);

        const refSel = anchorPrefillTopk(ref, BUDGET);
        const headMap = Array.from({ length: shape.kvHeads }, (_, j) => (j + 1) % shape.kvHeads);
        const reuse = await b.reusePrefill(gpu, refSel, headMap);
        expect(allFinite(reuse)).toBe(true);
        expect(relError(reuse, sparsePrefillAttention(ref, refSel, headMap))).toBeLessThan(tol);
        if (dtype === 'f16') {
          expect(relError(reuse, sparsePrefillAttention(gpu, refSel, headMap))).toBeLessThan(1e-2);
        }
      });
    });
  },
);

describe.skipIf(!probe.backends.f32)('prefill errors', () => {
  it('rejects a tile too large for one workgroup and a misaligned start', async () => {
    const { gpu } = makeInputs(
      { heads: 16, kvHeads: 2, headDim: 64, queries: 8, queryStart: 0, tileSize: 64 },
      1,
      'f32',
    );
    await expect(probe.backends.f32!.densePrefill(gpu)).rejects.toThrow(/maxComputeInvocationsPerWorkgroup/);
    const { gpu: g2 } = makeInputs(
      { heads: 2, kvHeads: 2, headDim: 64, queries: 8, queryStart: 5, tileSize: 4 },
      1,
      'f32',
    );
    await expect(probe.backends.f32!.densePrefill(g2)).rejects.toThrow(/multiple of tileSize/);
  });
});
