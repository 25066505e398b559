/**
 * Parity on a real GPU: the host-array CUDA backend against the CPU reference. Skipped (with the
 * reason) where no CUDA device is usable, e.g. CI; the full device check is scripts/device-check.ts.
 */
import { cpuReferenceBackend, type DecodeInputs, fromBf16, toBf16 } from '@kascade/core';
import { describe, expect, it } from 'vitest';
import { createCudaDecodeBackend, isAvailable, unavailableReason } from './index.js';

const reason = unavailableReason();
if (!isAvailable()) console.warn(`[@kascade/cuda] GPU parity tests skipped: ${reason}`);

function inputs(n: number, seed: number): DecodeInputs {
  let s = seed;
  const next = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  };
  const heads = 8;
  const kvHeads = 2;
  const headDim = 128;
  const round = (len: number) => fromBf16(toBf16(Float32Array.from({ length: len }, () => next() * 4)));
  return {
    heads,
    kvHeads,
    headDim,
    n,
    q: round(heads * headDim),
    k: round(kvHeads * n * headDim),
    v: round(kvHeads * n * headDim),
  };
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += ((a[i] as number) - (b[i] as number)) ** 2;
    den += (b[i] as number) ** 2;
  }
  return Math.sqrt(num / den);
}

describe.skipIf(!isAvailable())('CUDA decode ops vs the CPU reference (GPU)', () => {
  const gpu = createCudaDecodeBackend({ dtype: 'bf16' });
  it.each([113, 1023, 4097])('dense, anchor and reuse at n = %i', async (n) => {
    const inp = inputs(n, n);
    const dense = await gpu.denseDecode(inp);
    expect(relErr(dense, cpuReferenceBackend.denseDecode(inp) as Float64Array)).toBeLessThan(1e-2);
    const anchor = await gpu.anchorDecode(inp, {});
    const ref = cpuReferenceBackend.reuseDecode(inp, anchor.selection, [0, 1]) as Float64Array;
    expect(relErr(anchor.out, ref)).toBeLessThan(1e-2);
    const reuse = await gpu.reuseDecode(inp, anchor.selection, [1, 0]);
    expect(
      relErr(reuse, cpuReferenceBackend.reuseDecode(inp, anchor.selection, [1, 0]) as Float64Array),
    ).toBeLessThan(1e-2);
  });
});
