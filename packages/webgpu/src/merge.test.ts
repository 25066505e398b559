import type { DecodeSelection } from '@kascade/core';
import { afterAll, describe, expect, it } from 'vitest';
import { readBuffer, uploadBuffer } from './backend.js';
import type { KascadeGPU } from './context.js';
import { type DecodeArgs, encodeDecode, teamsWorkgroupBytes } from './ops/decode.js';
import { destroyDeviceKV } from './tensors.js';
import {
  checkDecodeRole,
  type DecodeCase,
  decodeOp,
  decodeSlotCase,
  openTestBackends,
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

// Also the transposed reduction on lane-permuted slots (`xorLayout`) at group 2 and 2 keys per step,
// so that on 4-lane teams both the key and the head permutations are exercised.
const RUNS: { c: DecodeCase; options: Partial<DecodeArgs>; key: string }[] = [
  ...CASES.map((c) => ({ c, options: { subgroupTeamMerge: true }, key: 'SGM=true' })),
  {
    c: CASES[0]!,
    options: { xorLayout: true, transposedReduce: true, keysPerStep: 2 },
    key: 'TRED_XOR=true',
  },
];

describe.skipIf(!probe.context)(
  'subgroup team merge and the permuted reduction against the reference',
  () => {
    it.each(RUNS)(
      'every role, $c.dtype, batch $c.batch, $c.heads/$c.kvHeads heads, d $c.headDim, $options',
      async ({ c, options, key: wanted }) => {
        const gpu = probe.context!;
        const { batch: B, heads: H, kvHeads: G, headDim: d, n } = c;
        const { kv, q, ref } = uploadDecodeCase(gpu, c, n + 1, 3);
        const size = B * H * d;
        const out = uploadBuffer(gpu, new Float32Array(size), 'out');
        const { budget, slot, headMap } = decodeSlotCase(gpu, { batch: B, kvHeads: G, n });
        let sels: DecodeSelection[] = [];
        for (const role of ['dense', 'dense-anchor', 'anchor', 'reuse'] as const) {
          const outs: Float32Array[] = [];
          for (let rep = 0; rep < 2; rep++) {
            gpu.device.queue.writeBuffer(out, 0, new Float32Array(size).fill(Number.NaN));
            await run(gpu, (pass) =>
              encodeDecode(
                gpu,
                pass,
                decodeOp({ heads: H, q, kv, n, out, slot, headMap, budget }, role, options),
              ),
            );
            outs.push(new Float32Array(await readBuffer(gpu, out, size * 4)));
          }
          expect(Array.from(outs[1]), `${role}: run to run`).toEqual(Array.from(outs[0]));
          sels = await checkDecodeRole(gpu, role, outs[0]!, c, ref, slot, headMap, sels);
        }
        expect(gpu.pipelineKeys.some((key) => key.includes(':teams_partial:') && key.includes(wanted))).toBe(
          true,
        );
        destroyDeviceKV(kv);
        for (const buf of [q, out, slot.indices]) buf.destroy();
      },
    );
  },
);
