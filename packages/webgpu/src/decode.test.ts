import {
  anchorDecodeTopk,
  type DecodeInputs,
  type DecodeSelection,
  denseDecodeAttention,
  fromF16,
  pooledDecodeScores,
  sparseDecodeAttention,
  toF16,
  topkBudget,
} from '@kascade/core';
import { afterAll, describe, expect, it } from 'vitest';
import type { KVDType } from './program.js';
import { allFinite, checkTopk, openTestBackends, randomFloats, relError } from './test-gpu.js';

const probe = await openTestBackends();
afterAll(() => probe.context?.destroy());

/** The K/V the GPU actually sees: f16 inputs rounded through binary16. */
function asStored(x: Float32Array, dtype: KVDType): Float32Array {
  return dtype === 'f32' ? x : fromF16(toF16(x));
}

function makeInputs(
  shape: { heads: number; kvHeads: number; headDim: number; n: number; capacity?: number },
  seed: number,
  dtype: KVDType,
): { gpu: DecodeInputs; ref: DecodeInputs } {
  const cap = shape.capacity ?? shape.n;
  const q = randomFloats(shape.heads * shape.headDim, seed, 2.5);
  const k = randomFloats(shape.kvHeads * cap * shape.headDim, seed + 1, 1);
  const v = randomFloats(shape.kvHeads * cap * shape.headDim, seed + 2, 1);
  const gpu = { ...shape, capacity: cap, q, k, v };
  return { gpu, ref: { ...gpu, k: asStored(k, dtype), v: asStored(v, dtype) } };
}

// Each (group size, head dim, dtype) compiles its own pipelines, slow on SwiftShader: a few
// shapes cover head dims 64/128, group sizes 1/4/6/8, n = 1, capacity > n, and both dtypes.
interface Shape {
  heads: number;
  kvHeads: number;
  headDim: number;
  n: number;
  capacity?: number;
}
const SHAPES: Record<KVDType, Shape[]> = {
  f32: [
    { heads: 8, kvHeads: 2, headDim: 64, n: 300 },
    { heads: 4, kvHeads: 4, headDim: 128, n: 1000, capacity: 1030 },
    { heads: 8, kvHeads: 1, headDim: 64, n: 2100 },
    { heads: 2, kvHeads: 2, headDim: 128, n: 1 },
  ],
  f16: [
    { heads: 12, kvHeads: 2, headDim: 128, n: 777 },
    { heads: 8, kvHeads: 2, headDim: 64, n: 300 },
  ],
};
const BUDGET = { percent: 10, kMin: 16 };

describe.each(['f32', 'f16'] as const)('decode parity, K/V %s', (dtype) => {
  const backend = probe.backends[dtype];
  const tol = 1e-5;
  describe.skipIf(!backend)(`on WebGPU${probe.reason ? ` (skipped: ${probe.reason})` : ''}`, () => {
    it.each(SHAPES[dtype])(
      'dense, dense-anchor, anchor, reuse: $heads/$kvHeads heads, d $headDim, n $n',
      async (shape) => {
        const seed = shape.n * 7 + shape.heads;
        const { gpu, ref } = makeInputs(shape, seed, dtype);
        const b = backend!;
        const dense = await b.denseDecode(gpu);
        const denseRef = denseDecodeAttention(ref);
        expect(allFinite(dense)).toBe(true);
        expect(relError(dense, denseRef)).toBeLessThan(tol);
        if (dtype === 'f16') expect(relError(dense, denseDecodeAttention({ ...gpu }))).toBeLessThan(1e-2);

        const k = topkBudget(shape.n, BUDGET);
        const pooled = pooledDecodeScores(ref);
        const checkSel = (sel: DecodeSelection) => {
          expect(sel.k).toBe(k);
          expect(sel.kvHeads).toBe(shape.kvHeads);
          const rows = checkTopk(
            sel,
            (r) => r * k,
            shape.kvHeads,
            () => shape.n,
            () => k,
            (r) => pooled.subarray(r * shape.n, (r + 1) * shape.n),
          );
          expect(rows).toBe(shape.kvHeads);
        };

        const d0 = await b.denseAnchorDecode(gpu, BUDGET);
        expect(relError(d0.out, denseRef)).toBeLessThan(tol);
        checkSel(d0.selection);

        const an = await b.anchorDecode(gpu, BUDGET);
        checkSel(an.selection);
        expect(allFinite(an.out)).toBe(true);
        expect(relError(an.out, sparseDecodeAttention(ref, an.selection))).toBeLessThan(tol);

        // Reuse through a head map (reversed), on the reference's own selection.
        const refSel = anchorDecodeTopk(ref, BUDGET);
        const headMap = Array.from({ length: shape.kvHeads }, (_, j) => shape.kvHeads - 1 - j);
        const reuse = await b.reuseDecode(gpu, refSel, headMap);
        expect(allFinite(reuse)).toBe(true);
        expect(relError(reuse, sparseDecodeAttention(ref, refSel, headMap))).toBeLessThan(tol);
      },
    );

    it.runIf(dtype === 'f32')('breaks ties toward the lower index (identical keys)', async () => {
      const shape = { heads: 8, kvHeads: 2, headDim: 64, n: 1500 };
      const { gpu } = makeInputs(shape, 99, dtype);
      // Every key of a head identical: every pooled score ties.
      const k = new Float32Array(gpu.k.length);
      for (let j = 0; j < 2; j++) {
        for (let x = 0; x < shape.n; x++) {
          for (let e = 0; e < 64; e++) k[(j * shape.n + x) * 64 + e] = ((e % 7) - 3) / 8;
        }
      }
      const res = await backend!.anchorDecode({ ...gpu, k }, BUDGET);
      const kk = topkBudget(shape.n, BUDGET);
      for (let j = 0; j < 2; j++) {
        const row = Array.from(res.selection.indices.subarray(j * kk, (j + 1) * kk)).sort((a, b) => a - b);
        expect(row).toEqual(Array.from({ length: kk }, (_, i) => i));
      }
    });

    it.runIf(dtype === 'f32')('selects every key when the budget covers them (k = n)', async () => {
      const shape = { heads: 8, kvHeads: 2, headDim: 64, n: 100 };
      const { gpu, ref } = makeInputs(shape, 3, dtype);
      const res = await backend!.anchorDecode(gpu, { percent: 10, kMin: 128 });
      expect(res.selection.k).toBe(100);
      for (let j = 0; j < 2; j++) {
        const row = Array.from(res.selection.indices.subarray(j * 100, (j + 1) * 100)).sort((a, b) => a - b);
        expect(row).toEqual(Array.from({ length: 100 }, (_, i) => i));
      }
      expect(relError(res.out, denseDecodeAttention(ref))).toBeLessThan(1e-5);
    });

    it.runIf(dtype === 'f32')('uses subgroups when the adapter offers them', () => {
      const offered = backend!.gpu.device.features.has('subgroups');
      expect(backend!.gpu.info.hasSubgroups).toBe(offered);
      if (offered) console.info('[@kascade/webgpu] decode parity ran the subgroup scores path');
    });

    it.runIf(dtype === 'f32')('rejects bad input with typed errors', async () => {
      const { gpu } = makeInputs({ heads: 4, kvHeads: 2, headDim: 64, n: 10 }, 5, dtype);
      await expect(
        backend!.denseDecode({ ...gpu, headDim: 96, q: new Float32Array(4 * 96) }),
      ).rejects.toThrow(/headDim must be 64 or 128/);
      await expect(backend!.denseDecode({ ...gpu, heads: 3, q: new Float32Array(3 * 64) })).rejects.toThrow(
        /multiple of kvHeads/,
      );
      const bad = { kvHeads: 2, k: 2, indices: new Int32Array([0, 1, 2, 10]) };
      await expect(backend!.reuseDecode(gpu, bad, [0, 1])).rejects.toThrow(/outside \[0, 10\)/);
      await expect(backend!.reuseDecode(gpu, { ...bad, indices: new Int32Array(4) }, [0, 2])).rejects.toThrow(
        /headMap\[1\] = 2/,
      );
    });
  });
});
