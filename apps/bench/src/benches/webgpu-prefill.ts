/**
 * `kascade-bench webgpu-prefill`: the WebGPU (WGSL) prefill attention ops for one whole prompt
 * (queries 0 .. n-1 as one chunk), Llama-3.1-8B attention shape (32 query heads, 8 KV heads,
 * d 128), K/V f16 packed in u32, p = 10% (kMin 128), query tiles of 32, contexts 8k and 32k,
 * batch 1.
 *
 * Per context: dense causal, layer-0 dense anchor, anchor (statistics pass, tile-pooled scores,
 * radix Top-k per (KV head, tile) on the GPU, sparse attention + diagonal tile) and reuse, each in
 * its own compute pass timed with timestamp queries where available (else wall clock), medians;
 * the whole-model layout t(layer0) + 4 t(anchor) + 27 t(reuse) against 32 t(dense).
 */
import { prefillTileBudget } from '@kascade/core';
import {
  createDeviceKV,
  createPrefillSlot,
  destroyDeviceKV,
  encodePrefill,
  type LayerRole,
} from '@kascade/webgpu';
import type { Bench } from '../harness.js';
import type { Row } from '../results.js';
import { fillBuffer, l2Flusher, machineOf, openGPU, round, timeOp } from './webgpu-common.js';

const H = 32;
const G = 8;
const D = 128;
const T = 32;
const PERCENT = 10;
const KMIN = 128;

const bench: Bench = {
  name: 'webgpu-prefill',
  description:
    'WebGPU prefill attention: dense causal, layer-0 anchor, anchor, reuse (Llama-3.1-8B shape, f16 K/V, p=10%)',
  defaults: { warmup: 1, repeats: 5 },
  async run(ctx) {
    const gpu = await openGPU();
    const flush = l2Flusher(gpu, ctx.quick);
    const rows: Row[] = [];
    const summary: Record<string, number> = {};
    const contexts = ctx.quick ? [1024] : [8192, 32768];
    const budget = { percent: PERCENT, kMin: KMIN };
    const started = performance.now();
    // Keeps one slow run from eating a device session: later measurements get fewer repeats.
    const deadlineMs = Number(process.env.KASCADE_BENCH_DEADLINE_S ?? 150) * 1000;
    for (const n of contexts) {
      const batch = 1;
      const tiles = Math.ceil(n / T);
      let kMax = 0;
      for (let t = 0; t < tiles; t++) kMax = Math.max(kMax, prefillTileBudget(t * T, budget));
      const kv = createDeviceKV(
        gpu,
        { batch, kvHeads: G, capacity: n, headDim: D, dtype: 'f16' },
        'bench.kv',
      );
      const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
      const q = gpu.device.createBuffer({ label: 'bench.q', size: batch * H * n * D * 4, usage });
      const out = gpu.device.createBuffer({ label: 'bench.out', size: batch * H * n * D * 4, usage });
      for (const [i, part] of kv.parts.entries()) {
        fillBuffer(gpu, part.k, 1 + 2 * i, true);
        fillBuffer(gpu, part.v, 2 + 2 * i, true);
      }
      fillBuffer(gpu, q, 3, false);
      const slot = createPrefillSlot(gpu, {
        batch,
        kvHeads: G,
        tiles,
        tileSize: T,
        kStride: Math.max(1, kMax),
      });
      const headMap = [1, 0, 3, 2, 5, 4, 7, 6];
      const times: Partial<Record<LayerRole, number>> = {};
      for (const role of ['dense', 'dense-anchor', 'anchor', 'reuse'] as const) {
        const label = `${role} n=${n}`;
        // 32k runs take about a second each: fewer repeats there.
        const late = performance.now() - started > deadlineMs;
        const repeats = late ? 1 : n >= 32768 ? Math.min(3, ctx.repeats) : ctx.repeats;
        let s: Awaited<ReturnType<typeof timeOp>>;
        try {
          s = await timeOp(
            gpu,
            ctx,
            label,
            (pass) =>
              encodePrefill(gpu, pass, {
                role,
                heads: H,
                q,
                queries: n,
                queryStart: 0,
                tileSize: T,
                kv,
                out,
                slot,
                headMap,
                budget,
              }),
            flush,
            repeats,
            late ? 1 : ctx.warmup,
          );
        } catch (e) {
          ctx.progress(`${label} failed: ${e instanceof Error ? e.message : String(e)}`);
          continue;
        }
        times[role] = s.median;
        const denseFlops = 4 * batch * H * D * ((n * (n + 1)) / 2);
        rows.push({
          kernel: role === 'dense-anchor' ? 'layer0' : role,
          context: n,
          batch,
          medianUs: round(s.median),
          p10Us: round(s.p10),
          p90Us: round(s.p90),
          ...(role === 'dense' ? { tflopPerS: round(denseFlops / (s.median * 1e6), 3) } : {}),
          repeats,
          timing: s.source,
        });
      }
      const { dense, anchor, reuse } = times;
      const layer0 = times['dense-anchor'];
      if (dense && anchor && reuse && layer0) {
        const whole = layer0 + 4 * anchor + 27 * reuse;
        rows.push({
          kernel: 'whole-model',
          context: n,
          batch,
          medianUs: round(whole),
          denseUs: round(32 * dense),
          speedupVsDense: round((32 * dense) / whole, 3),
        });
        const tag = n === 32768 ? '32k' : n === 8192 ? '8k' : `${n}`;
        summary[`reuseOverDense_${tag}`] = round(reuse / dense, 4);
        summary[`anchorOverDense_${tag}`] = round(anchor / dense, 4);
        summary[`layer0OverDense_${tag}`] = round(layer0 / dense, 4);
        summary[`wholeModelSpeedupVsDense_${tag}`] = round((32 * dense) / whole, 3);
      }
      destroyDeviceKV(kv);
      for (const b of [q, out, slot.indices, slot.counts]) b.destroy();
    }
    const timing = rows.find((r) => typeof r.timing === 'string')?.timing ?? 'none';
    gpu.destroy();
    return {
      config: {
        dtype: 'f16 (packed in u32)',
        heads: H,
        kvHeads: G,
        headDim: D,
        tileSize: T,
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
