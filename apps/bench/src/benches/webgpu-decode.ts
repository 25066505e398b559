/**
 * `kascade-bench webgpu-decode`: the WebGPU (WGSL) decode attention ops on one layer's KV cache,
 * Llama-3.1-8B attention shape (32 query heads, 8 KV heads, d 128), K/V f16 packed in u32,
 * p = 10% (kMin 128), contexts 8k/32k/128k, batch 1 and 8.
 *
 * Per (context, batch): dense, layer-0 dense anchor, anchor (scores + pooling + radix Top-k on the
 * GPU, then sparse attention) and reuse, each in its own compute pass, timed with timestamp queries
 * where the adapter has them (else wall clock to onSubmittedWorkDone), an L2 flush between runs;
 * medians. Bandwidth over the bytes each op must read at least; a 1 GiB WGSL vec4 copy in the same
 * run; the whole-model attention of the paper's layout, t(layer0) + 4 t(anchor) + 27 t(reuse),
 * against 32 t(dense). Inputs are device-side uniform random, never zeros.
 */
import { topkBudget } from '@kascade/core';
import {
  createDecodeSlot,
  createDeviceKV,
  destroyDeviceKV,
  encodeDecode,
  type LayerRole,
} from '@kascade/webgpu';
import type { Bench } from '../harness.js';
import type { Row } from '../results.js';
import { copyBandwidth, fillBuffer, l2Flusher, machineOf, openGPU, round, timeOp } from './webgpu-common.js';

const H = 32;
const G = 8;
const D = 128;
const PERCENT = 10;
const KMIN = 128;

const bench: Bench = {
  name: 'webgpu-decode',
  description:
    'WebGPU decode attention: dense, layer-0 anchor, anchor, reuse (Llama-3.1-8B shape, f16 K/V, p=10%)',
  defaults: { warmup: 3, repeats: 20 },
  async run(ctx) {
    const gpu = await openGPU();
    const flush = l2Flusher(gpu, ctx.quick);
    const rows: Row[] = [];
    const summary: Record<string, number> = {};
    const copy = await copyBandwidth(gpu, ctx, flush);
    rows.push(copy.row);
    summary.copyGbPerS = Math.round(copy.gbPerS);
    const contexts = ctx.quick ? [4096] : [8192, 32768, 131072];
    const batches = ctx.quick ? [1] : [1, 8];
    const budget = { percent: PERCENT, kMin: KMIN };
    for (const n of contexts) {
      for (const batch of batches) {
        const k = topkBudget(n, budget);
        let kv: ReturnType<typeof createDeviceKV>;
        try {
          kv = createDeviceKV(gpu, { batch, kvHeads: G, capacity: n, headDim: D, dtype: 'f16' }, 'bench.kv');
        } catch (e) {
          ctx.progress(`skip n=${n} batch=${batch}: ${e instanceof Error ? e.message : String(e)}`);
          continue;
        }
        const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
        const q = gpu.device.createBuffer({ label: 'bench.q', size: batch * H * D * 4, usage });
        const out = gpu.device.createBuffer({ label: 'bench.out', size: batch * H * D * 4, usage });
        for (const [i, part] of kv.parts.entries()) {
          fillBuffer(gpu, part.k, 1 + 2 * i, true);
          fillBuffer(gpu, part.v, 2 + 2 * i, true);
        }
        fillBuffer(gpu, q, 3, false);
        // kStride a multiple of 64 so a K/V split by sequence can address each sequence's rows.
        const slot = createDecodeSlot(gpu, batch, G, Math.ceil(k / 64) * 64);
        const headMap = [1, 0, 3, 2, 5, 4, 7, 6];
        const times: Partial<Record<LayerRole, number>> = {};
        const kvRow = 2 * D * 2; // K + V bytes per token and head
        const minBytes: Record<LayerRole, number> = {
          dense: batch * G * n * kvRow,
          'dense-anchor': batch * G * n * kvRow,
          anchor: batch * G * (n * D * 2 + k * D * 2),
          reuse: batch * G * k * kvRow,
        };
        for (const role of ['dense', 'dense-anchor', 'anchor', 'reuse'] as const) {
          const label = `${role} n=${n} b=${batch}`;
          try {
            const s = await timeOp(
              gpu,
              ctx,
              label,
              (pass) => encodeDecode(gpu, pass, { role, heads: H, q, kv, n, out, slot, headMap, budget }),
              flush,
            );
            times[role] = s.median;
            rows.push({
              kernel: role === 'dense-anchor' ? 'layer0' : role,
              context: n,
              batch,
              k: role === 'dense' ? n : k,
              medianUs: round(s.median),
              p10Us: round(s.p10),
              p90Us: round(s.p90),
              gbPerS: Math.round(minBytes[role] / (s.median * 1e3)),
              timing: s.source,
            });
          } catch (e) {
            ctx.progress(`${label} failed: ${e instanceof Error ? e.message : String(e)}`);
          }
        }
        const { dense, anchor, reuse } = times;
        const layer0 = times['dense-anchor'];
        if (dense && anchor && reuse && layer0) {
          const whole = layer0 + 4 * anchor + 27 * reuse;
          rows.push({
            kernel: 'whole-model',
            context: n,
            batch,
            k,
            medianUs: round(whole),
            denseUs: round(32 * dense),
            speedupVsDense: round((32 * dense) / whole, 3),
          });
          const tag = n === 131072 ? '128k' : n === 32768 ? '32k' : n === 8192 ? '8k' : `${n}`;
          const suffix = batch === 1 ? '' : `_b${batch}`;
          summary[`reuseOverDense_${tag}${suffix}`] = round(reuse / dense, 4);
          summary[`anchorOverDense_${tag}${suffix}`] = round(anchor / dense, 4);
          summary[`layer0OverDense_${tag}${suffix}`] = round(layer0 / dense, 4);
          summary[`wholeModelSpeedupVsDense_${tag}${suffix}`] = round((32 * dense) / whole, 3);
        }
        if (dense && n === 131072 && batch === 8) {
          summary.denseBandwidthShare_128k = round(minBytes.dense / (dense * 1e3) / copy.gbPerS, 4);
        }
        destroyDeviceKV(kv);
        for (const b of [q, out, slot.indices]) b.destroy();
      }
    }
    const timing = rows.find((r) => typeof r.timing === 'string')?.timing ?? 'none';
    gpu.destroy();
    return {
      config: {
        dtype: 'f16 (packed in u32)',
        heads: H,
        kvHeads: G,
        headDim: D,
        topkPercent: PERCENT,
        kMin: KMIN,
        timing: String(timing),
        layout: 't(layer0) + 4 t(anchor) + 27 t(reuse) vs 32 t(dense)',
      },
      rows,
      summary,
      machine: machineOf(gpu),
    };
  },
};

export default bench;
