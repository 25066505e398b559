import {
  denseCausalPrefillAttention,
  type PrefillSelection,
  prefillTileBudget,
  sparsePrefillAttention,
} from '@kascade/core';
import { afterAll, describe, expect, it } from 'vitest';
import { readBuffer, uploadBuffer } from './backend.js';
import type { KascadeGPU } from './context.js';
import { createPrefillSlot, encodePrefill } from './ops/prefill.js';
import { createDeviceKV, type DeviceKV, destroyDeviceKV } from './tensors.js';
import {
  allFinite,
  decodeSlotCase,
  openTestBackends,
  randomFloats,
  relError,
  runComputePass,
  runDecodeRoles,
} from './test-gpu.js';

// Without subgroups, so the portable decode path is covered too (decode.test.ts uses them when offered).
const probe = await openTestBackends(['f32'], { subgroups: false });
afterAll(() => probe.context?.destroy());

/** Random K/V per sequence, written into whichever part holds it. */
function fillKV(gpu: KascadeGPU, kv: DeviceKV, seed: number): { k: Float32Array[]; v: Float32Array[] } {
  const per = kv.kvHeads * kv.capacity * kv.headDim;
  const k: Float32Array<ArrayBuffer>[] = [];
  const v: Float32Array<ArrayBuffer>[] = [];
  for (let b = 0; b < kv.batch; b++) {
    k.push(randomFloats(per, seed + 2 * b, 1));
    v.push(randomFloats(per, seed + 2 * b + 1, 1));
  }
  for (const part of kv.parts) {
    for (let i = 0; i < part.batch; i++) {
      const b = part.batchStart + i;
      gpu.device.queue.writeBuffer(part.k, i * per * 4, k[b]);
      gpu.device.queue.writeBuffer(part.v, i * per * 4, v[b]);
    }
  }
  return { k, v };
}

const run = (gpu: KascadeGPU, encode: (pass: GPUComputePassEncoder) => void): Promise<void> =>
  runComputePass(gpu, 'split test', encode);

describe.skipIf(!probe.context)('K/V split by sequence past the storage binding limit (no subgroups)', () => {
  it('runs without the subgroups feature', () => {
    expect(probe.context!.info.hasSubgroups).toBe(false);
  });

  it('decode: every role matches the reference per sequence', async () => {
    const gpu = probe.context!;
    const saved = gpu.maxBindingBytes;
    const [B, H, G, d, n] = [3, 8, 2, 64, 200];
    gpu.maxBindingBytes = 2 * G * n * d * 4; // two sequences per part
    try {
      const kv = createDeviceKV(gpu, { batch: B, kvHeads: G, capacity: n, headDim: d, dtype: 'f32' });
      expect(kv.parts.map((p) => p.batch)).toEqual([2, 1]);
      const { k, v } = fillKV(gpu, kv, 11);
      const qh = randomFloats(B * H * d, 5, 2.5);
      const q = uploadBuffer(gpu, qh, 'q');
      const out = uploadBuffer(gpu, new Float32Array(B * H * d).fill(Number.NaN), 'out');
      const { budget, slot, headMap } = decodeSlotCase(gpu, { batch: B, kvHeads: G, n });
      expect(slot.kStride).toBe(64);
      const ref = (b: number) => ({
        heads: H,
        kvHeads: G,
        headDim: d,
        n,
        q: qh.subarray(b * H * d, (b + 1) * H * d),
        k: k[b],
        v: v[b],
      });
      const _outOf = async () => new Float32Array(await readBuffer(gpu, out, B * H * d * 4));
      await runDecodeRoles(
        gpu,
        ['dense', 'anchor', 'reuse'],
        { heads: H, q, kv, n, out, slot, headMap, budget },
        { kernel: undefined },
        { batch: B, heads: H, kvHeads: G, headDim: d, n },
        ref,
      );
      destroyDeviceKV(kv);
    } finally {
      gpu.maxBindingBytes = saved;
    }
  });

  it('prefill: every role matches the reference per sequence', async () => {
    const gpu = probe.context!;
    const saved = gpu.maxBindingBytes;
    const [B, H, G, d, Q, T] = [2, 4, 2, 64, 40, 8];
    gpu.maxBindingBytes = G * Q * d * 4; // one sequence per part
    try {
      const kv = createDeviceKV(gpu, { batch: B, kvHeads: G, capacity: Q, headDim: d, dtype: 'f32' });
      gpu.maxBindingBytes = saved;
      expect(kv.parts.length).toBe(2);
      const { k, v } = fillKV(gpu, kv, 21);
      const qh = randomFloats(B * H * Q * d, 7, 2.5);
      const q = uploadBuffer(gpu, qh, 'q');
      const out = uploadBuffer(gpu, new Float32Array(B * H * Q * d).fill(Number.NaN), 'out');
      const budget = { percent: 25, kMin: 8 };
      const tiles = Q / T;
      const slot = createPrefillSlot(gpu, { batch: B, kvHeads: G, tiles, tileSize: T, kStride: 64 });
      const ref = (b: number) => ({
        heads: H,
        kvHeads: G,
        headDim: d,
        n: Q,
        queries: Q,
        queryStart: 0,
        tileSize: T,
        q: qh.subarray(b * H * Q * d, (b + 1) * H * Q * d),
        k: k[b],
        v: v[b],
      });
      const headMap = [1, 0];
      let sels: PrefillSelection[] = [];
      for (const role of ['dense', 'anchor', 'reuse'] as const) {
        await run(gpu, (pass) =>
          encodePrefill(gpu, pass, {
            role,
            heads: H,
            q,
            queries: Q,
            queryStart: 0,
            tileSize: T,
            kv,
            out,
            slot,
            headMap,
            budget,
          }),
        );
        const o = new Float32Array(await readBuffer(gpu, out, B * H * Q * d * 4));
        expect(allFinite(o)).toBe(true);
        if (role === 'anchor') {
          const all = new Int32Array(await readBuffer(gpu, slot.indices, B * G * tiles * 64 * 4));
          const counts = Int32Array.from({ length: tiles }, (_, t) => prefillTileBudget(t * T, budget));
          expect(Array.from(slot.hostCounts)).toEqual(Array.from(counts));
          sels = Array.from({ length: B }, (_, b) => ({
            kvHeads: G,
            tiles,
            tileSize: T,
            kMax: 64,
            counts,
            indices: all.slice(b * G * tiles * 64, (b + 1) * G * tiles * 64),
          }));
        }
        for (let b = 0; b < B; b++) {
          const want =
            role === 'dense'
              ? denseCausalPrefillAttention(ref(b))
              : sparsePrefillAttention(ref(b), sels[b], role === 'reuse' ? headMap : undefined);
          expect(
            relError(o.subarray(b * H * Q * d, (b + 1) * H * Q * d), want),
            `${role}, sequence ${b}`,
          ).toBeLessThan(1e-5);
        }
      }
      destroyDeviceKV(kv);
    } finally {
      gpu.maxBindingBytes = saved;
    }
  });

  it('says which limit a single sequence exceeds', () => {
    const gpu = probe.context!;
    const saved = gpu.maxBindingBytes;
    gpu.maxBindingBytes = 4096;
    try {
      expect(() =>
        createDeviceKV(gpu, { batch: 1, kvHeads: 2, capacity: 100, headDim: 64, dtype: 'f16' }),
      ).toThrow(/does not fit one storage binding \(needs maxBindingBytes.*>= 25600/);
    } finally {
      gpu.maxBindingBytes = saved;
    }
  });
});
