import {
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
import { readBuffer, uploadBuffer } from './backend.js';
import type { KascadeGPU } from './context.js';
import { WebGPUShapeError } from './errors.js';
import {
  createDecodeSlot,
  type DecodeArgs,
  encodeDecode,
  singleStepFits,
  teamsLayout,
} from './ops/decode.js';
import type { KVDType } from './program.js';
import { createDeviceKV, destroyDeviceKV, packKV } from './tensors.js';
import { allFinite, checkTopk, openTestBackends, randomFloats, relError } from './test-gpu.js';

// The single-step gathering kernel (`gather_partial`) and the two-level split merge, against the
// float64 core reference, NaN-poisoned outputs, each run twice (the fused merge must give the same bits).
const probe = await openTestBackends(['f32']);
afterAll(() => probe.context?.destroy());

async function run(gpu: KascadeGPU, encode: (pass: GPUComputePassEncoder) => void): Promise<void> {
  await gpu.checked('gather test', async () => {
    const enc = gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    encode(pass);
    pass.end();
    gpu.flushParams();
    gpu.device.queue.submit([enc.finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
  });
}

type Options = Partial<
  Pick<
    DecodeArgs,
    | 'keysPerStep'
    | 'pieceBytes'
    | 'fuseCombine'
    | 'splitMergeGroup'
    | 'singleStepGather'
    | 'workgroupSize'
    | 'subgroupTeamMerge'
  >
>;

interface Case {
  dtype: KVDType;
  batch: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  n: number;
  /** Keys a reuse layer gathers per KV head (a hand-made selection). */
  k: number;
  options: Options;
}

const single = { singleStepGather: true } as const;
// Group sizes 1, 2, 4 and 8 (scores per team step below, at and above the team width), both dtypes
// and head dims, 8-byte pieces, both merges, k not a multiple of a workgroup's keys.
const CASES: Case[] = [
  // The subgroup team merge (its workgroup memory fits this shape on 4-lane subgroups; the merge of the
  // teams inside a subgroup runs where teams are narrower than subgroups, e.g. the H200's parity check).
  {
    dtype: 'f16',
    batch: 2,
    heads: 4,
    kvHeads: 2,
    headDim: 64,
    n: 500,
    k: 177,
    options: { ...single, keysPerStep: 4, subgroupTeamMerge: true, fuseCombine: true, splitMergeGroup: 2 },
  },
  {
    dtype: 'f32',
    batch: 1,
    heads: 2,
    kvHeads: 2,
    headDim: 64,
    n: 300,
    k: 99,
    options: { ...single, keysPerStep: 2, subgroupTeamMerge: true, fuseCombine: false },
  },
  {
    dtype: 'f16',
    batch: 2,
    heads: 8,
    kvHeads: 2,
    headDim: 128,
    n: 900,
    k: 301,
    options: { ...single, keysPerStep: 8 },
  },
  {
    dtype: 'f16',
    batch: 1,
    heads: 8,
    kvHeads: 2,
    headDim: 128,
    n: 700,
    k: 333,
    options: { ...single, keysPerStep: 4, pieceBytes: 8, fuseCombine: true, splitMergeGroup: 3 },
  },
  {
    dtype: 'f16',
    batch: 2,
    heads: 4,
    kvHeads: 2,
    headDim: 64,
    n: 500,
    k: 77,
    options: { ...single, keysPerStep: 1, fuseCombine: false },
  },
  {
    dtype: 'f32',
    batch: 1,
    heads: 2,
    kvHeads: 2,
    headDim: 64,
    n: 400,
    k: 129,
    options: { ...single, keysPerStep: 2, fuseCombine: true, splitMergeGroup: 4 },
  },
  {
    dtype: 'f32',
    batch: 1,
    heads: 16,
    kvHeads: 2,
    headDim: 128,
    n: 300,
    k: 150,
    options: { ...single, keysPerStep: 2, fuseCombine: true },
  },
  {
    dtype: 'f16',
    batch: 1,
    heads: 8,
    kvHeads: 2,
    headDim: 128,
    n: 600,
    k: 250,
    options: { ...single, keysPerStep: 16, workgroupSize: 64, fuseCombine: true, splitMergeGroup: 2 },
  },
];

function fill(
  gpu: KascadeGPU,
  c: { batch: number; kvHeads: number; headDim: number; n: number; dtype: KVDType },
  seed: number,
) {
  const per = c.kvHeads * c.n * c.headDim;
  const kh = randomFloats(c.batch * per, seed, 1);
  const vh = randomFloats(c.batch * per, seed + 1, 1);
  const kv = createDeviceKV(gpu, {
    batch: c.batch,
    kvHeads: c.kvHeads,
    capacity: c.n,
    headDim: c.headDim,
    dtype: c.dtype,
  });
  for (const [buf, host] of [
    [kv.parts[0].k, packKV(kh, c.dtype)],
    [kv.parts[0].v, packKV(vh, c.dtype)],
  ] as const) {
    gpu.device.queue.writeBuffer(buf, 0, host.buffer as ArrayBuffer, host.byteOffset, host.byteLength);
  }
  const stored = (x: Float32Array) => (c.dtype === 'f32' ? x : fromF16(toF16(x)));
  return { kv, ks: stored(kh), vs: stored(vh), per };
}

describe('single-step gather: shapes it takes', () => {
  it('needs a power-of-two group and keysPerStep, teams of at most 32 lanes', () => {
    expect(singleStepFits(4, 8, 32)).toBe(true);
    expect(singleStepFits(1, 1, 4)).toBe(true);
    expect(singleStepFits(3, 8, 16)).toBe(false);
    expect(singleStepFits(4, 6, 16)).toBe(false);
    expect(singleStepFits(4, 8, 64)).toBe(false);
  });
});

describe.skipIf(!probe.context)('single-step gather and two-level merge against the reference', () => {
  it.each(CASES)(
    'reuse, $dtype, batch $batch, $heads/$kvHeads heads, d $headDim, k $k, $options',
    async (c) => {
      const gpu = probe.context!;
      const { batch: B, heads: H, kvHeads: G, headDim: d, n, k } = c;
      const { kv, ks, vs, per } = fill(gpu, c, n + H + k);
      const qh = randomFloats(B * H * d, n + 7, 2.5);
      const q = uploadBuffer(gpu, qh, 'q');
      const out = uploadBuffer(gpu, new Float32Array(B * H * d), 'out');
      const kStride = Math.ceil(k / 64) * 64;
      const slot = createDecodeSlot(gpu, B, G, kStride);
      // Distinct keys per row in a scattered order, different per sequence and KV head.
      const sels: DecodeSelection[] = [];
      const rows = new Uint32Array(B * G * kStride);
      for (let b = 0; b < B; b++) {
        const indices = new Int32Array(G * k);
        for (let j = 0; j < G; j++) {
          for (let i = 0; i < k; i++) indices[j * k + i] = (i * 37 + 11 * j + 5 * b) % n;
          rows.set(indices.subarray(j * k, (j + 1) * k), (b * G + j) * kStride);
        }
        sels.push({ kvHeads: G, k, indices });
      }
      expect(new Set(sels[0].indices.subarray(0, k)).size).toBe(k);
      gpu.device.queue.writeBuffer(slot.indices, 0, rows);
      slot.k = k;
      const headMap = Array.from({ length: G }, (_, j) => (j + 1) % G);
      const outs: Float32Array[] = [];
      for (let rep = 0; rep < 2; rep++) {
        gpu.device.queue.writeBuffer(out, 0, new Float32Array(B * H * d).fill(Number.NaN));
        await run(gpu, (pass) =>
          encodeDecode(gpu, pass, {
            role: 'reuse',
            heads: H,
            q,
            kv,
            n,
            out,
            slot,
            headMap,
            kernel: 'teams',
            ...c.options,
          }),
        );
        outs.push(new Float32Array(await readBuffer(gpu, out, B * H * d * 4)));
      }
      expect(allFinite(outs[0])).toBe(true);
      expect(Array.from(outs[1]), 'run to run').toEqual(Array.from(outs[0]));
      for (let b = 0; b < B; b++) {
        const ref: DecodeInputs = {
          heads: H,
          kvHeads: G,
          headDim: d,
          n,
          q: qh.subarray(b * H * d, (b + 1) * H * d),
          k: ks.subarray(b * per, (b + 1) * per),
          v: vs.subarray(b * per, (b + 1) * per),
        };
        const want = sparseDecodeAttention(ref, sels[b], headMap);
        expect(relError(outs[0].subarray(b * H * d, (b + 1) * H * d), want), `sequence ${b}`).toBeLessThan(
          1e-5,
        );
      }
      expect(gpu.pipelineKeys.some((key) => key.includes(':gather_partial:'))).toBe(true);
      if (c.options.subgroupTeamMerge) {
        expect(
          gpu.pipelineKeys.some((key) => key.includes(':gather_partial:') && key.includes('SGM=true')),
        ).toBe(true);
      }
      destroyDeviceKV(kv);
      for (const buf of [q, out, slot.indices]) buf.destroy();
    },
  );

  it('every role with the two-level merge on every pass and the single-step gather (batch 2, f16)', async () => {
    const gpu = probe.context!;
    const c = { dtype: 'f16' as const, batch: 2, kvHeads: 2, headDim: 128, n: 2100 };
    const H = 8;
    const { kv, ks, vs, per } = fill(gpu, c, 91);
    const qh = randomFloats(c.batch * H * c.headDim, 93, 3);
    const q = uploadBuffer(gpu, qh, 'q');
    const size = c.batch * H * c.headDim;
    const out = uploadBuffer(gpu, new Float32Array(size), 'out');
    const budget = { percent: 10, kMin: 16 };
    const kk = topkBudget(c.n, budget);
    const kStride = Math.ceil(kk / 64) * 64;
    const slot = createDecodeSlot(gpu, c.batch, c.kvHeads, kStride);
    const headMap = [1, 0];
    const ref = (b: number): DecodeInputs => ({
      heads: H,
      kvHeads: c.kvHeads,
      headDim: c.headDim,
      n: c.n,
      q: qh.subarray(b * H * c.headDim, (b + 1) * H * c.headDim),
      k: ks.subarray(b * per, (b + 1) * per),
      v: vs.subarray(b * per, (b + 1) * per),
    });
    const options = { fuseCombine: true, splitMergeGroup: 4, singleStepGather: true, minStepsPerSplit: 1 };
    let sels: DecodeSelection[] = [];
    for (const role of ['dense', 'dense-anchor', 'anchor', 'reuse'] as const) {
      gpu.device.queue.writeBuffer(out, 0, new Float32Array(size).fill(Number.NaN));
      await run(gpu, (pass) =>
        encodeDecode(gpu, pass, {
          role,
          heads: H,
          q,
          kv,
          n: c.n,
          out,
          slot,
          headMap,
          budget,
          kernel: 'teams',
          ...options,
        }),
      );
      const o = new Float32Array(await readBuffer(gpu, out, size * 4));
      expect(allFinite(o), role).toBe(true);
      if (role === 'dense-anchor' || role === 'anchor') {
        const all = new Int32Array(await readBuffer(gpu, slot.indices, c.batch * c.kvHeads * kStride * 4));
        sels = Array.from({ length: c.batch }, (_, b) => {
          const indices = new Int32Array(c.kvHeads * kk);
          for (let j = 0; j < c.kvHeads; j++)
            indices.set(
              all.subarray((b * c.kvHeads + j) * kStride, (b * c.kvHeads + j) * kStride + kk),
              j * kk,
            );
          return { kvHeads: c.kvHeads, k: kk, indices };
        });
        for (let b = 0; b < c.batch; b++) {
          const pooled = pooledDecodeScores(ref(b));
          const rows = checkTopk(
            sels[b],
            (r) => r * kk,
            c.kvHeads,
            () => c.n,
            () => kk,
            (r) => pooled.subarray(r * c.n, (r + 1) * c.n),
          );
          expect(rows).toBe(c.kvHeads);
        }
      }
      for (let b = 0; b < c.batch; b++) {
        const want =
          role === 'dense' || role === 'dense-anchor'
            ? denseDecodeAttention(ref(b))
            : sparseDecodeAttention(ref(b), sels[b], role === 'reuse' ? headMap : undefined);
        expect(
          relError(o.subarray(b * H * c.headDim, (b + 1) * H * c.headDim), want),
          `${role}, sequence ${b}`,
        ).toBeLessThan(1e-5);
      }
    }
    // The merge had two levels on the streaming passes (more splits than a group).
    expect(
      gpu.pipelineKeys.some((key) => key.includes(':teams_partial:') && key.includes('FUSED=true')),
    ).toBe(true);
    expect(() =>
      encodeDecode(gpu, {} as GPUComputePassEncoder, {
        role: 'reuse',
        heads: 6,
        q,
        kv,
        n: c.n,
        out,
        slot,
        kernel: 'teams',
        singleStepGather: true,
      }),
    ).toThrow(WebGPUShapeError);
    expect(() =>
      encodeDecode(gpu, {} as GPUComputePassEncoder, {
        role: 'dense',
        heads: H,
        q,
        kv,
        n: c.n,
        out,
        splitMergeGroup: 1,
      }),
    ).toThrow(/splitMergeGroup must be 0 or an integer >= 2/);
    expect(teamsLayout(gpu, 128, 'f16')).not.toBeNull();
    destroyDeviceKV(kv);
    for (const buf of [q, out, slot.indices]) buf.destroy();
  });
});
