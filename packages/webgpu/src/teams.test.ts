import {
  type DecodeInputs,
  type DecodeSelection,
  denseDecodeAttention,
  fromF16,
  pooledDecodeScores,
  sparseDecodeAttention,
  toF16,
} from '@kascade/core';
import { afterAll, describe, expect, it } from 'vitest';
import { readBuffer, uploadBuffer } from './backend.js';
import type { KascadeGPU } from './context.js';
import { WebGPUFeatureError } from './errors.js';
import {
  createDecodeSlot,
  type DecodeArgs,
  type DecodeKernel,
  encodeDecode,
  resolveDecodeKernel,
  teamSplits,
  teamsLayout,
} from './ops/decode.js';
import { createDeviceKV, destroyDeviceKV, packKV, sequenceInputs } from './tensors.js';
import {
  checkDecodeRole,
  checkTopk,
  type DecodeCase,
  decodeOp,
  decodeSlotCase,
  openTestBackends,
  randomFloats,
  relError,
  runComputePass,
  runDecodeRoles,
  uploadDecodeCase,
} from './test-gpu.js';

// Both decode kernels on the same device, batched, through encodeDecode (what an engine calls).
const probe = await openTestBackends(['f32']);
afterAll(() => probe.context?.destroy());

const run = (gpu: KascadeGPU, encode: (pass: GPUComputePassEncoder) => void): Promise<void> =>
  runComputePass(gpu, 'teams test', encode);

describe('decode kernel choice', () => {
  const fake = (info: object) => ({ info }) as unknown as KascadeGPU;
  it("needs subgroups and the adapter's subgroup sizes for 'teams'", () => {
    const none = fake({ hasSubgroups: false });
    expect(teamsLayout(none, 128, 'f16')).toBeNull();
    expect(resolveDecodeKernel(none, 128, 'f16')).toBe('chunked');
    expect(() => resolveDecodeKernel(none, 128, 'f16', 'teams')).toThrow(WebGPUFeatureError);
    const unknownSizes = fake({ hasSubgroups: true });
    expect(resolveDecodeKernel(unknownSizes, 64, 'f32')).toBe('chunked');
  });

  it('sizes teams from the smallest subgroup, 16-byte pieces per row', () => {
    const nvidia = fake({ hasSubgroups: true, subgroupSizes: { min: 32, max: 32 } });
    expect(teamsLayout(nvidia, 128, 'f16')).toEqual({ WG: 128, TW: 16, PPL: 1, PV: 2 });
    expect(teamsLayout(nvidia, 128, 'f32')).toEqual({ WG: 128, TW: 32, PPL: 1, PV: 1 });
    expect(teamsLayout(nvidia, 64, 'f16')).toEqual({ WG: 128, TW: 8, PPL: 1, PV: 2 });
    expect(teamsLayout(nvidia, 128, 'f16', 8)).toEqual({ WG: 128, TW: 32, PPL: 1, PV: 1 });
    expect(teamsLayout(nvidia, 128, 'f16', 16, 8)).toEqual({ WG: 128, TW: 8, PPL: 2, PV: 2 });
    expect(teamsLayout(nvidia, 128, 'f16', 8, 4)).toEqual({ WG: 64, TW: 4, PPL: 8, PV: 1 });
    expect(teamsLayout(nvidia, 128, 'f16', 16, 1)).toBeNull();
    expect(teamsLayout(nvidia, 128, 'f32', 8)).toBeNull();
    const small = fake({ hasSubgroups: true, subgroupSizes: { min: 4, max: 4 } });
    expect(teamsLayout(small, 128, 'f32')).toEqual({ WG: 64, TW: 4, PPL: 8, PV: 1 });
    expect(resolveDecodeKernel(small, 128, 'f32')).toBe('teams');
    expect(resolveDecodeKernel(small, 128, 'f32', 'chunked')).toBe('chunked');
    const wide = fake({ hasSubgroups: true, subgroupSizes: { min: 32, max: 256 } });
    expect(teamsLayout(wide, 128, 'f16')).toBeNull();
  });

  it('splits the keys into about 2048 workgroups of at least 4 steps', () => {
    expect(teamSplits(1, 8, 131072, 32)).toEqual({ span: 512, splits: 256 });
    expect(teamSplits(8, 8, 131072, 32)).toEqual({ span: 4096, splits: 32 });
    const small = teamSplits(1, 8, 1000, 32);
    expect(small.span).toBe(128);
    expect(small.splits * small.span).toBeGreaterThanOrEqual(1000);
  });
});

interface Case extends DecodeCase {
  readonly capacity: number;
}
// Group sizes 4 (four keys per team step) and 8 (two), both dtypes and head dims, n not a
// multiple of a step, capacity > n, a batch.
const CASES: Case[] = [
  { dtype: 'f16', batch: 2, heads: 8, kvHeads: 2, headDim: 128, n: 1037, capacity: 1040 },
  { dtype: 'f32', batch: 2, heads: 8, kvHeads: 1, headDim: 64, n: 517, capacity: 517 },
  { dtype: 'f32', batch: 1, heads: 3, kvHeads: 3, headDim: 128, n: 5, capacity: 9 },
];

describe.skipIf(!probe.context)('decode kernels teams and chunked, batched, against the reference', () => {
  it('the test device can run the team kernel', () => {
    expect(teamsLayout(probe.context!, 128, 'f16')).not.toBeNull();
  });

  const kernels: DecodeKernel[] = ['teams', 'chunked'];
  for (const kernel of kernels) {
    it.each(CASES)(`${kernel}: $dtype, batch $batch, $heads/$kvHeads heads, d $headDim, n $n`, async (c) => {
      const gpu = probe.context!;
      const { batch: B, heads: H, kvHeads: G, headDim: d, n } = c;
      const seed = n + H + (kernel === 'teams' ? 0 : 100);
      const { kv, q, ref } = uploadDecodeCase(gpu, c, seed, 2.5);
      const out = uploadBuffer(gpu, new Float32Array(B * H * d), 'out');
      const { budget, slot, headMap } = decodeSlotCase(
        gpu,
        { batch: B, kvHeads: G, n },
        { percent: 10, kMin: 4 },
      );
      let sels: DecodeSelection[] = [];
      for (const role of ['dense', 'dense-anchor', 'anchor', 'reuse'] as const) {
        gpu.device.queue.writeBuffer(out, 0, new Float32Array(B * H * d).fill(Number.NaN));
        await run(gpu, (pass) =>
          encodeDecode(
            gpu,
            pass,
            decodeOp({ heads: H, q, kv, n, out, slot, headMap, budget }, role, { kernel }),
          ),
        );
        const o = new Float32Array(await readBuffer(gpu, out, B * H * d * 4));
        sels = await checkDecodeRole(gpu, role, o, c, ref, slot, headMap, sels);
      }
      destroyDeviceKV(kv);
      for (const buf of [q, out, slot.indices]) buf.destroy();
    });
  }

  it('teams: more splits than the combine has invocations (dense, f32, n 70000)', async () => {
    const gpu = probe.context!;
    const layout = teamsLayout(gpu, 64, 'f32')!;
    const [n, d] = [70000, 64];
    expect(teamSplits(1, 1, n, (layout.WG / layout.TW) * 4).splits).toBeGreaterThan(256);
    const kh = randomFloats(n * d, 41);
    const vh = randomFloats(n * d, 42);
    const qh = randomFloats(4 * d, 43, 3);
    const kv = createDeviceKV(gpu, { batch: 1, kvHeads: 1, capacity: n, headDim: d, dtype: 'f32' });
    gpu.device.queue.writeBuffer(kv.parts[0].k, 0, kh);
    gpu.device.queue.writeBuffer(kv.parts[0].v, 0, vh);
    const q = uploadBuffer(gpu, qh, 'q');
    const out = uploadBuffer(gpu, new Float32Array(4 * d).fill(Number.NaN), 'out');
    await run(gpu, (pass) =>
      encodeDecode(gpu, pass, { role: 'dense', heads: 4, q, kv, n, out, kernel: 'teams' }),
    );
    const o = new Float32Array(await readBuffer(gpu, out, 4 * d * 4));
    const want = denseDecodeAttention({ heads: 4, kvHeads: 1, headDim: d, n, q: qh, k: kh, v: vh });
    expect(relError(o, want)).toBeLessThan(1e-5);
    destroyDeviceKV(kv);
    q.destroy();
    out.destroy();
  });

  it.each([
    [4, 2],
    [2, 2],
  ])(
    'transposed reduction, %i heads / %i KV heads: keys per step = team width / group (dense, anchor, reuse)',
    async (H, G) => {
      const gpu = probe.context!;
      const [d, n] = [128, 333];
      const TW = teamsLayout(gpu, d, 'f16', 16)!.TW;
      const group = H / G;
      const keysPerStep = TW / group;
      expect(Number.isInteger(keysPerStep) && keysPerStep >= 1).toBe(true);
      const kh = randomFloats(G * n * d, 61 + H);
      const vh = randomFloats(G * n * d, 62 + H);
      const qh = randomFloats(H * d, 63, 3);
      const kv = createDeviceKV(gpu, { batch: 1, kvHeads: G, capacity: n, headDim: d, dtype: 'f16' });
      for (const [buf, host] of [
        [kv.k, packKV(kh, 'f16')],
        [kv.v, packKV(vh, 'f16')],
      ] as const) {
        gpu.device.queue.writeBuffer(buf, 0, host.buffer as ArrayBuffer, host.byteOffset, host.byteLength);
      }
      const ref = {
        heads: H,
        kvHeads: G,
        headDim: d,
        n,
        q: qh,
        k: fromF16(toF16(kh)),
        v: fromF16(toF16(vh)),
      };
      const q = uploadBuffer(gpu, qh, 'q');
      const out = uploadBuffer(gpu, new Float32Array(H * d).fill(Number.NaN), 'out');
      const {
        budget,
        k: kk,
        slot,
        headMap,
      } = decodeSlotCase(gpu, { batch: 1, kvHeads: G, n }, undefined, G === 2 ? [1, 0] : [0, 1]);
      let sel: DecodeSelection = { kvHeads: G, k: 0, indices: new Int32Array(0) };
      for (const role of ['dense', 'anchor', 'reuse'] as const) {
        gpu.device.queue.writeBuffer(out, 0, new Float32Array(H * d).fill(Number.NaN));
        await run(gpu, (pass) =>
          encodeDecode(
            gpu,
            pass,
            decodeOp({ heads: H, q, kv, n, out, slot, headMap, budget }, role, {
              keysPerStep,
              pieceBytes: 16,
              transposedReduce: true,
            }),
          ),
        );
        if (role === 'anchor') {
          const ks = slot.kStride;
          const all = new Int32Array(await readBuffer(gpu, slot.indices, G * ks * 4));
          const indices = new Int32Array(G * kk);
          for (let j = 0; j < G; j++) indices.set(all.subarray(j * ks, j * ks + kk), j * kk);
          sel = { kvHeads: G, k: kk, indices };
          const pooled = pooledDecodeScores(ref);
          const rows = checkTopk(
            sel,
            (r) => r * kk,
            G,
            () => n,
            () => kk,
            (r) => pooled.subarray(r * n, (r + 1) * n),
          );
          expect(rows).toBe(G);
        }
        const o = new Float32Array(await readBuffer(gpu, out, H * d * 4));
        const want =
          role === 'dense'
            ? denseDecodeAttention(ref)
            : sparseDecodeAttention(ref, sel, role === 'reuse' ? headMap : undefined);
        expect(relError(o, want), role).toBeLessThan(1e-5);
      }
      expect(gpu.pipelineKeys.some((k) => k.includes('TRED=true') && k.includes('WRITE_SCORES=true'))).toBe(
        true,
      );
      expect(() =>
        encodeDecode(gpu, {} as GPUComputePassEncoder, {
          role: 'dense',
          heads: H,
          q,
          kv,
          n,
          out,
          keysPerStep: keysPerStep + 1,
          pieceBytes: 16,
          transposedReduce: true,
        }),
      ).toThrow(/transposedReduce needs keysPerStep x group = the team width/);
      destroyDeviceKV(kv);
      for (const buf of [q, out, slot.indices]) buf.destroy();
    },
  );

  // The last two: a team's next step loaded before this step's math, one workgroup per row, so that
  // the reuse (1200 keys, index blocks of 512 keys with 2 keys per step) stages indices three times.
  it.each([
    { keysPerStep: 1, n: 301, k: 40 },
    { keysPerStep: 8, n: 301, k: 40 },
    { keysPerStep: 16, n: 301, k: 40 },
    { keysPerStep: 2, n: 2000, k: 1200, loadsAhead: true, prefetchIndices: true, targetWorkgroups: 1 },
    { keysPerStep: 8, n: 2000, k: 1200, loadsAhead: true, prefetchIndices: false },
  ])('teams with $keysPerStep keys per step, loads ahead $loadsAhead (dense and reuse, f16)', async (c) => {
    const { keysPerStep, n, k: kk, ...tuning } = c;
    const gpu = probe.context!;
    const [H, G, d] = [4, 2, 128];
    const kh = randomFloats(G * n * d, 51 + keysPerStep);
    const vh = randomFloats(G * n * d, 52 + keysPerStep);
    const qh = randomFloats(H * d, 53, 3);
    const kv = createDeviceKV(gpu, { batch: 1, kvHeads: G, capacity: n, headDim: d, dtype: 'f16' });
    for (const [buf, host] of [
      [kv.k, packKV(kh, 'f16')],
      [kv.v, packKV(vh, 'f16')],
    ] as const) {
      gpu.device.queue.writeBuffer(buf, 0, host.buffer as ArrayBuffer, host.byteOffset, host.byteLength);
    }
    const ref = { heads: H, kvHeads: G, headDim: d, n, q: qh, k: fromF16(toF16(kh)), v: fromF16(toF16(vh)) };
    const q = uploadBuffer(gpu, qh, 'q');
    const out = uploadBuffer(gpu, new Float32Array(H * d).fill(Number.NaN), 'out');
    const sel = { kvHeads: G, k: kk, indices: Int32Array.from({ length: G * kk }, (_, i) => (i * 7) % n) };
    const ks = Math.ceil(kk / 64) * 64;
    const slot = createDecodeSlot(gpu, 1, G, ks);
    const rows = new Uint32Array(G * ks);
    for (let j = 0; j < G; j++) rows.set(sel.indices.subarray(j * kk, (j + 1) * kk), j * ks);
    gpu.device.queue.writeBuffer(slot.indices, 0, rows);
    slot.k = kk;
    for (const role of ['dense', 'reuse'] as const) {
      gpu.device.queue.writeBuffer(out, 0, new Float32Array(H * d).fill(Number.NaN));
      await run(gpu, (pass) =>
        encodeDecode(gpu, pass, {
          role,
          heads: H,
          q,
          kv,
          n,
          out,
          slot,
          headMap: [1, 0],
          kernel: 'teams',
          keysPerStep,
          ...tuning,
        }),
      );
      const o = new Float32Array(await readBuffer(gpu, out, H * d * 4));
      const want = role === 'dense' ? denseDecodeAttention(ref) : sparseDecodeAttention(ref, sel, [1, 0]);
      expect(relError(o, want), role).toBeLessThan(1e-5);
    }
    expect(() =>
      encodeDecode(gpu, {} as GPUComputePassEncoder, {
        role: 'dense',
        heads: H,
        q,
        kv,
        n,
        out,
        keysPerStep: 17,
      }),
    ).toThrow(/keysPerStep must be an integer in 1..16/);
    destroyDeviceKV(kv);
    for (const b of [q, out, slot.indices]) b.destroy();
  });

  it('teams on K/V split by sequence past the binding limit (what batch 8 at 128k needs)', async () => {
    const gpu = probe.context!;
    const saved = gpu.maxBindingBytes;
    const [B, H, G, d, n] = [3, 8, 2, 128, 250];
    const per = G * n * d;
    gpu.maxBindingBytes = 2 * per * 2; // two f16 sequences per part
    try {
      const kv = createDeviceKV(gpu, { batch: B, kvHeads: G, capacity: n, headDim: d, dtype: 'f16' });
      gpu.maxBindingBytes = saved;
      expect(kv.parts.map((p) => p.batch)).toEqual([2, 1]);
      const kh = randomFloats(B * per, 61);
      const vh = randomFloats(B * per, 62);
      for (const part of kv.parts) {
        const range = [part.batchStart * per, (part.batchStart + part.batch) * per] as const;
        for (const [buf, host] of [
          [part.k, packKV(kh.subarray(...range), 'f16')],
          [part.v, packKV(vh.subarray(...range), 'f16')],
        ] as const) {
          gpu.device.queue.writeBuffer(buf, 0, host.buffer as ArrayBuffer, host.byteOffset, host.byteLength);
        }
      }
      const qh = randomFloats(B * H * d, 63, 3);
      const ref = sequenceInputs(
        { heads: H, kvHeads: G, headDim: d, n },
        qh,
        fromF16(toF16(kh)),
        fromF16(toF16(vh)),
      );
      const q = uploadBuffer(gpu, qh, 'q');
      const out = uploadBuffer(gpu, new Float32Array(B * H * d), 'out');
      const { budget, slot, headMap } = decodeSlotCase(gpu, { batch: B, kvHeads: G, n });
      expect(slot.kStride).toBe(64);
      await runDecodeRoles(
        gpu,
        ['dense', 'anchor', 'reuse'],
        { heads: H, q, kv, n, out, slot, headMap, budget },
        {},
        { batch: B, heads: H, kvHeads: G, headDim: d, n },
        ref,
      );
      destroyDeviceKV(kv);
      for (const buf of [q, out, slot.indices]) buf.destroy();
    } finally {
      gpu.maxBindingBytes = saved;
    }
  });

  it('uses the team kernel by default where it can run', async () => {
    const gpu = probe.context!;
    const teamsG2 = () =>
      gpu.pipelineKeys.filter(
        (k) =>
          k.startsWith('decode_teams:teams_partial:') &&
          k.includes('GROUP=2,HEAD_DIM=64,') &&
          k.includes(',KP=f32,'),
      );
    expect(teamsG2()).toEqual([]);
    const kv = createDeviceKV(gpu, { batch: 1, kvHeads: 1, capacity: 40, headDim: 64, dtype: 'f32' });
    gpu.device.queue.writeBuffer(kv.parts[0].k, 0, randomFloats(40 * 64, 1));
    gpu.device.queue.writeBuffer(kv.parts[0].v, 0, randomFloats(40 * 64, 2));
    const qh = randomFloats(2 * 64, 3, 2.5);
    const q = uploadBuffer(gpu, qh, 'q');
    const out = uploadBuffer(gpu, new Float32Array(2 * 64).fill(Number.NaN), 'out');
    await run(gpu, (pass) => encodeDecode(gpu, pass, { role: 'dense', heads: 2, q, kv, n: 40, out }));
    expect(teamsG2().length).toBe(1);
    const o = new Float32Array(await readBuffer(gpu, out, 2 * 64 * 4));
    const kvHost = { k: randomFloats(40 * 64, 1), v: randomFloats(40 * 64, 2) };
    const want = denseDecodeAttention({ heads: 2, kvHeads: 1, headDim: 64, n: 40, q: qh, ...kvHost });
    expect(relError(o, want)).toBeLessThan(1e-5);
    destroyDeviceKV(kv);
    q.destroy();
    out.destroy();
  });
});

describe.skipIf(!probe.context)(
  'team kernel options: index prefetch, short splits, select chunk and schedule, subgroup team merge',
  () => {
    const OPTIONS = [
      { prefetchIndices: true },
      { prefetchIndices: true, minStepsPerSplit: 1, keysPerStep: 8 },
      { selectValuesPerInvocation: 16 as const },
      { selectSchedule: 'folded' as const },
      { minStepsPerSplit: 1, keysPerStep: 2 },
      { pieceBytes: 8 as const, prefetchIndices: true },
      { minStepsPerSplit: 3, subgroupTeamMerge: true },
      { streamPass: { keysPerStep: 16, targetWorkgroups: 64 } },
      // keysPerStep x group = the team width on this device (SwiftShader: subgroups of 4).
      { transposedReduce: true, keysPerStep: 1, prefetchIndices: true },
      { prefetchIndices: true, pieceBytes: 8 as const, minStepsPerSplit: 5 },
      // The next team step's loads issued before this step's math.
      { loadsAhead: true, keysPerStep: 3, prefetchIndices: true, minStepsPerSplit: 1 },
      { loadsAhead: true, transposedReduce: true, keysPerStep: 1, minStepsPerSplit: 2 },
      // The transposed reduction on lane-permuted slots (no selects), with staged indices and a short split.
      { xorLayout: true, transposedReduce: true, keysPerStep: 1, prefetchIndices: true, minStepsPerSplit: 3 },
      // Teams narrower than the subgroup (here 2 of its 4 lanes), several pieces of a row per lane;
      // with the transposed reduction at group 2 (`heads: 4`: 1 key x 2 heads fill a team).
      { teamWidth: 2, prefetchIndices: true, streamPass: { teamWidth: 2, keysPerStep: 16 } },
      { teamWidth: 2, pieceBytes: 8 as const, keysPerStep: 3, subgroupTeamMerge: true, minStepsPerSplit: 1 },
      { heads: 4, teamWidth: 2, keysPerStep: 1, transposedReduce: true, minStepsPerSplit: 2 },
      // The anchors' scores pass with each lane's own softmax statistics, merged after the key loop.
      { transposedReduce: true, keysPerStep: 1, laneStats: true, xorLayout: true, minStepsPerSplit: 2 },
      { transposedReduce: true, keysPerStep: 1, laneStats: true },
      // The defaults at many rows (9 sequences x 2 KV heads > 16): layer 0's pass on narrow teams, the
      // anchors' scores pass with each lane's own statistics.
      { batch: 9 },
      // The butterfly's first round transposing (session 12): every pass with V and no transposed
      // reduction here (the gathers, layer 0's pass, dense: 8 keys x group 2 do not fill a team of 4).
      { halfTransposedReduce: true, prefetchIndices: true },
      { halfTransposedReduce: true, teamWidth: 2, keysPerStep: 2, minStepsPerSplit: 1 },
      { halfTransposedReduce: true, batch: 9 },
      { halfTransposedReduce: true, loadsAhead: true, keysPerStep: 4, minStepsPerSplit: 2 },
      // The second round transposing too (here teams of 4 lanes: one round left after the two).
      { quarterTransposedReduce: true, prefetchIndices: true, minStepsPerSplit: 3 },
      { quarterTransposedReduce: true, batch: 9 },
      // The lane-permuted slots filled after in-order loads (session 12): group 2 x 2 keys fill a team.
      {
        heads: 4,
        transposedReduce: true,
        xorLayout: true,
        permuteAfterLoad: true,
        keysPerStep: 2,
        prefetchIndices: true,
        minStepsPerSplit: 2,
      },
    ];
    it.each(OPTIONS)(
      '%o: every role against the reference, f16, many splits (batch 2 unless given)',
      async (opts) => {
        const gpu = probe.context!;
        const keysBefore = new Set(gpu.pipelineKeys);
        const shape = opts as { heads?: number; batch?: number };
        const [B, H, G, d, n] = [shape.batch ?? 2, shape.heads ?? 8, 2, 128, 3001];
        const per = G * n * d;
        const kh = randomFloats(B * per, 71);
        const vh = randomFloats(B * per, 72);
        const qh = randomFloats(B * H * d, 73, 3);
        const kv = createDeviceKV(gpu, { batch: B, kvHeads: G, capacity: n, headDim: d, dtype: 'f16' });
        for (const [buf, host] of [
          [kv.k, packKV(kh, 'f16')],
          [kv.v, packKV(vh, 'f16')],
        ] as const) {
          gpu.device.queue.writeBuffer(buf, 0, host.buffer as ArrayBuffer, host.byteOffset, host.byteLength);
        }
        const ks = fromF16(toF16(kh));
        const vs = fromF16(toF16(vh));
        const ref = (b: number): DecodeInputs => ({
          heads: H,
          kvHeads: G,
          headDim: d,
          n,
          q: qh.subarray(b * H * d, (b + 1) * H * d),
          k: ks.subarray(b * per, (b + 1) * per),
          v: vs.subarray(b * per, (b + 1) * per),
        });
        const q = uploadBuffer(gpu, qh, 'q');
        const out = uploadBuffer(gpu, new Float32Array(B * H * d), 'out');
        const { budget, slot, headMap } = decodeSlotCase(gpu, { batch: B, kvHeads: G, n });
        let sels: DecodeSelection[] = [];
        for (const role of ['dense', 'dense-anchor', 'anchor', 'reuse'] as const) {
          const outs: Float32Array[] = [];
          // Twice: every run must give the same bits.
          for (let rep = 0; rep < 2; rep++) {
            gpu.device.queue.writeBuffer(out, 0, new Float32Array(B * H * d).fill(Number.NaN));
            await run(gpu, (pass) =>
              encodeDecode(
                gpu,
                pass,
                decodeOp({ heads: H, q, kv, n, out, slot, headMap, budget }, role, opts),
              ),
            );
            outs.push(new Float32Array(await readBuffer(gpu, out, B * H * d * 4)));
          }
          expect(Array.from(outs[1]), `${role}: run to run`).toEqual(Array.from(outs[0]));
          if ('halfTransposedReduce' in opts || 'quarterTransposedReduce' in opts) {
            // The same bits as the full butterfly.
            const {
              halfTransposedReduce: _h,
              quarterTransposedReduce: _q,
              ...plain
            } = opts as Partial<DecodeArgs>;
            gpu.device.queue.writeBuffer(out, 0, new Float32Array(B * H * d).fill(Number.NaN));
            await run(gpu, (pass) =>
              encodeDecode(
                gpu,
                pass,
                decodeOp({ heads: H, q, kv, n, out, slot, headMap, budget }, role, plain),
              ),
            );
            const full = new Float32Array(await readBuffer(gpu, out, B * H * d * 4));
            expect(Array.from(full), `${role}: against the full butterfly`).toEqual(Array.from(outs[0]));
          }
          sels = await checkDecodeRole(
            gpu,
            role,
            outs[0],
            { batch: B, heads: H, kvHeads: G, headDim: d, n },
            ref,
            slot,
            headMap,
            sels,
          );
        }
        const keys = gpu.pipelineKeys;
        if (opts.prefetchIndices) expect(keys.some((k) => k.includes('PREFETCH=true'))).toBe(true);
        if ('pieceBytes' in opts) expect(keys.some((k) => k.includes('KP=f16x4'))).toBe(true);
        if ('loadsAhead' in opts) expect(keys.some((k) => k.includes('AHEAD=true'))).toBe(true);
        if ('xorLayout' in opts) expect(keys.some((k) => k.includes('TRED_XOR=true'))).toBe(true);
        if ('teamWidth' in opts) expect(keys.some((k) => k.includes('TW=2,'))).toBe(true);
        if ('permuteAfterLoad' in opts) {
          expect(keys.some((k) => k.includes('PERMUTE_AFTER_LOAD=true') && k.includes('U=2,'))).toBe(true);
        }
        if ('quarterTransposedReduce' in opts) {
          expect(keys.some((k) => k.includes('QUARTER_TRED=true') && k.includes('GATHER=true'))).toBe(true);
        }
        if ('halfTransposedReduce' in opts) {
          // Layer 0's pass at many rows takes the transposed reduction (2 keys x group 2 fill a team of 4).
          for (const pass of 'batch' in opts ? ['GATHER=true'] : ['GATHER=true', 'WRITE_SCORES=true']) {
            expect(keys.some((k) => k.includes('HALF_TRED=true') && k.includes(pass))).toBe(true);
          }
        }
        if ('laneStats' in opts || ('batch' in opts && Object.keys(opts).length === 1)) {
          expect(keys.some((k) => k.includes('LANE_STATS=true'))).toBe(true);
        }
        if ('streamPass' in opts) {
          // The anchors' streaming pass took its own keys per step; the sparse pass kept the default.
          const added = keys.filter((k) => !keysBefore.has(k));
          expect(added.some((k) => k.includes('U=16,') && k.includes('WRITE_SCORES=true'))).toBe(true);
          expect(added.some((k) => k.includes('U=16,') && k.includes('GATHER=true'))).toBe(false);
        }
        destroyDeviceKV(kv);
        for (const buf of [q, out, slot.indices]) buf.destroy();
      },
    );
  },
);
