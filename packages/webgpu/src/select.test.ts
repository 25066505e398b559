import { afterAll, describe, expect, it } from 'vitest';
import { readBuffer, uploadBuffer } from './backend.js';
import type { KascadeGPU } from './context.js';
import { encodeSelect } from './ops/select.js';
import { openTestBackends, randomFloats } from './test-gpu.js';

// The radix select (topk_select.wgsl), classic at 4, 8 and 16 values per invocation and folded, against an exact
// CPU Top-k: the same indices in the same order (values > T by index, then the lowest-index copies of T).
const probe = await openTestBackends(['f32']);
afterAll(() => probe.context?.destroy());

/** Exact Top-k of a row, ties to the lower index, in the selects' output order. */
function topkRef(v: Float32Array, k: number): number[] {
  const order = Array.from(v.keys()).sort((a, b) => v[b] - v[a] || a - b);
  const keep = order.slice(0, k);
  if (k === 0) return [];
  const T = v[keep[k - 1]];
  const above = keep.filter((i) => v[i] > T).sort((a, b) => a - b);
  const ties = keep.filter((i) => v[i] === T).sort((a, b) => a - b);
  return [...above, ...ties];
}

interface Row {
  length: number;
  k: number;
  /** Values quantized to this many levels (ties), or continuous. */
  levels?: number;
}

// Lengths around the chunk (1024 values) and its multiples, k = 0, 1, length.
const ROWS: Row[] = [
  { length: 1, k: 1 },
  { length: 5, k: 0 },
  { length: 300, k: 300 },
  { length: 4097, k: 410 },
  { length: 9000, k: 900, levels: 7 },
  { length: 40000, k: 4000 },
  { length: 70001, k: 7000, levels: 1000 },
  { length: 2000, k: 1999, levels: 2 },
];

async function runSelect(
  gpu: KascadeGPU,
  variant: 'classic' | 'classic8' | 'classic16' | 'folded',
  vals: GPUBuffer,
  info: Uint32Array,
  rows: number,
  maxLength: number,
  outWords: number,
): Promise<Int32Array> {
  const rowInfo = uploadBuffer(gpu, info, 'rowInfo');
  const out = uploadBuffer(gpu, new Int32Array(outWords).fill(-7), 'out');
  await gpu.checked(`select ${variant}`, async () => {
    const enc = gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    const args = {
      vals,
      rowInfo: { buffer: rowInfo, offset: 0, size: rows * 16 },
      rows,
      maxLength,
      out,
      tag: 'test',
    };
    const per = variant.endsWith('16') ? 16 : variant.endsWith('8') ? 8 : undefined;
    const schedule = variant.startsWith('folded') ? ('folded' as const) : undefined;
    encodeSelect(gpu, pass, { ...args, valuesPerInvocation: per, schedule });
    pass.end();
    gpu.flushParams();
    gpu.device.queue.submit([enc.finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
  });
  const got = new Int32Array(await readBuffer(gpu, out, outWords * 4));
  rowInfo.destroy();
  out.destroy();
  return got;
}

describe.skipIf(!probe.context)('radix select (topk_select.wgsl)', () => {
  it('equals the exact Top-k at 4, 8 and 16 values per invocation and folded, many rows at once, ties and k = 0 / 1 / n', async () => {
    const gpu = probe.context!;
    const offsets: number[] = [];
    const outOffsets: number[] = [];
    let total = 0;
    let outTotal = 0;
    for (const r of ROWS) {
      offsets.push(total);
      outOffsets.push(outTotal);
      total += r.length;
      outTotal += r.k + 3; // a gap: nothing may be written past k
    }
    const host = new Float32Array(total);
    ROWS.forEach((r, i) => {
      const x = randomFloats(r.length, 900 + i, 1);
      for (let e = 0; e < r.length; e++) {
        const u = Math.abs(x[e]) * 3;
        host[offsets[i] + e] = r.levels ? Math.floor(u * (r.levels / 3)) / r.levels : u * u;
      }
    });
    const info = new Uint32Array(ROWS.length * 4);
    ROWS.forEach((r, i) => {
      info.set([offsets[i], r.length, r.k, outOffsets[i]], i * 4);
    });
    const vals = uploadBuffer(gpu, host, 'vals');
    const maxLength = Math.max(...ROWS.map((r) => r.length));
    const classic = await runSelect(gpu, 'classic', vals, info, ROWS.length, maxLength, outTotal);
    // Larger chunks (8 and 16 values per invocation) and the folded schedule: the same output; the
    // folded one twice (its three histograms must have been cleared by its own write pass).
    for (const variant of ['classic8', 'classic16', 'folded', 'folded'] as const) {
      const wide = await runSelect(gpu, variant, vals, info, ROWS.length, maxLength, outTotal);
      expect(Array.from(wide), variant).toEqual(Array.from(classic));
    }
    // A second run on the same scratch (its histogram must have been cleared).
    const again = await runSelect(gpu, 'classic', vals, info, ROWS.length, maxLength, outTotal);
    let checked = 0;
    ROWS.forEach((r, i) => {
      const want = topkRef(host.subarray(offsets[i], offsets[i] + r.length), r.k);
      const got = Array.from(classic.subarray(outOffsets[i], outOffsets[i] + r.k));
      expect(got, `row ${i} (length ${r.length}, k ${r.k})`).toEqual(want);
      expect(Array.from(classic.subarray(outOffsets[i] + r.k, outOffsets[i] + r.k + 3))).toEqual([
        -7, -7, -7,
      ]);
      checked++;
    });
    expect(checked).toBe(ROWS.length);
    expect(Array.from(again)).toEqual(Array.from(classic));
    vals.destroy();
  });
});
