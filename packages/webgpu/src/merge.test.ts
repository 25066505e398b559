import { type DecodeSelection, topkBudget } from '@kascade/core';
import { afterAll, describe, expect, it } from 'vitest';
import { readBuffer, uploadBuffer } from './backend.js';
import type { KascadeGPU } from './context.js';
import { createDecodeSlot, encodeDecode, teamsWorkgroupBytes } from './ops/decode.js';
import { destroyDeviceKV } from './tensors.js';
import {
  allFinite,
  type DecodeCase,
  expectDecodeOutputs,
  openTestBackends,
  readCheckedSelections,
  runComputePass,
  uploadDecodeCase,
} from './test-gpu.js';

// The team kernel's subgroup team merge (`subgroupTeamMerge`): every role against the float64 core
// reference, NaN-poisoned outputs, each run twice (bit for bit). On 4-lane subgroups (SwiftShader) the
// teams are as wide as a subgroup, so this covers the merge of the subgroups through workgroup memory;
// the shuffle merge of teams inside a subgroup runs on wider subgroups (the H200's parity check).
const probe = await openTestBackends(['f32']);
afterAll(() => probe.context?.destroy());

const run = (gpu: KascadeGPU, encode: (pass: GPUComputePassEncoder) => void): Promise<void> =>
  runComputePass(gpu, 'merge test', encode);

// Shapes whose merge buffers fit 16 KiB of workgroup memory with 4-lane subgroups.
const CASES: DecodeCase[] = [
  { dtype: 'f16', batch: 2, heads: 4, kvHeads: 2, headDim: 64, n: 1500 },
  { dtype: 'f32', batch: 1, heads: 2, kvHeads: 2, headDim: 64, n: 900 },
];

describe('team workgroup memory', () => {
  it('counts the staged indices, the per-head merge and the subgroup merge buffers', () => {
    // 4 teams of 32 lanes, 512 indices, group 4, head dim 128, 4 subgroups.
    expect(teamsWorkgroupBytes({ WG: 128, TW: 32 }, 512, 4, 128, 4)).toBe(
      2048 + 32 + 2048 + 4 * 4 * 520 + 64,
    );
  });
});

describe.skipIf(!probe.context)('subgroup team merge against the reference', () => {
  it.each(CASES)(
    'every role, $dtype, batch $batch, $heads/$kvHeads heads, d $headDim, teams merged by subgroups',
    async (c) => {
      const gpu = probe.context!;
      const { batch: B, heads: H, kvHeads: G, headDim: d, n } = c;
      const { kv, q, ref } = uploadDecodeCase(gpu, c, n + 1, 3);
      const size = B * H * d;
      const out = uploadBuffer(gpu, new Float32Array(size), 'out');
      const budget = { percent: 10, kMin: 16 };
      const kk = topkBudget(n, budget);
      const kStride = Math.ceil(kk / 64) * 64;
      const slot = createDecodeSlot(gpu, B, G, kStride);
      const headMap = Array.from({ length: G }, (_, j) => (j + 1) % G);
      let sels: DecodeSelection[] = [];
      for (const role of ['dense', 'dense-anchor', 'anchor', 'reuse'] as const) {
        const outs: Float32Array[] = [];
        for (let rep = 0; rep < 2; rep++) {
          gpu.device.queue.writeBuffer(out, 0, new Float32Array(size).fill(Number.NaN));
          await run(gpu, (pass) =>
            encodeDecode(gpu, pass, {
              role,
              heads: H,
              q,
              kv,
              n,
              out,
              slot,
              headMap,
              budget,
              kernel: 'teams',
              subgroupTeamMerge: true,
            }),
          );
          outs.push(new Float32Array(await readBuffer(gpu, out, size * 4)));
        }
        expect(allFinite(outs[0]), role).toBe(true);
        expect(Array.from(outs[1]), `${role}: run to run`).toEqual(Array.from(outs[0]));
        if (role === 'dense-anchor' || role === 'anchor') {
          sels = await readCheckedSelections(
            gpu,
            slot.indices,
            { batch: B, kvHeads: G, k: kk, stride: kStride, n },
            ref,
          );
        }
        expectDecodeOutputs(role, outs[0]!, c, ref, sels, headMap);
      }
      expect(
        gpu.pipelineKeys.some((key) => key.includes(':teams_partial:') && key.includes('SGM=true')),
      ).toBe(true);
      destroyDeviceKV(kv);
      for (const buf of [q, out, slot.indices]) buf.destroy();
    },
  );
});
