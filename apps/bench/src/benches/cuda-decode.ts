/**
 * `kascade-bench cuda-decode`: the CUDA decode kernels on one layer's KV cache, Llama-3.1-8B
 * attention shape (32 query heads, 8 KV heads, d 128), bf16, p = 10%.
 *
 * Per (context, batch): dense, layer-0 dense anchor, anchor and reuse, each timed with CUDA
 * events per call (warm-up, then repeats; medians), with achieved HBM bandwidth over the
 * bytes each must read at least; a device-to-device copy in the same run (its bandwidth
 * counts read + write); PyTorch SDPA (cuDNN and flash, enable_gqa) on the same shapes via
 * `cuda-decode-torch.py` when python3 with torch is present; and the whole-model attention time
 * of the paper's layout, t(layer0) + 4 t(anchor) + 27 t(reuse), against 32 t(dense).
 * Inputs are normal random (device-side hash fill), never zeros.
 *
 * Kernel variants (`-- --variants 0,1,4`, KascadeDecodeVariant bits; default 0 alone): pass only
 * variants that passed the device parity check (scripts/device/decode.sh takes them from
 * cuda-parity.json's passingVariants). Each op is timed under every variant (rows `<op>-v<bits>`);
 * the row `<op>` is the fastest variant timed again, and the summary figures use those rows.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { topkBudget } from '@kascade/core';
import {
  anchorDecode,
  captureGraph,
  copyDevice,
  DECODE_VARIANT_MAX,
  DeviceTensor,
  denseAnchorDecode,
  denseDecode,
  deviceInfo,
  fillNormal,
  isAvailable,
  reuseDecode,
  synchronize,
  timeDevice,
  unavailableReason,
} from '@kascade/cuda';
import { type Bench, timingCells } from '../harness.js';
import type { Row } from '../results.js';
import { summarize } from '../stats.js';

const H = 32;
const G = 8;
const D = 128;
const PERCENT = 10;
const LAYERS = 32;
const ANCHORS = 5; // layer 0 + 4 anchors (the paper's Llama-3.1-8B plan: 0 2 8 13 14)
const OPS = ['dense', 'layer0', 'anchor', 'reuse'] as const;
type Op = (typeof OPS)[number];

/** `--variants 0,1,4` among the bench arguments: the kernel variants to time (default: 0 alone). */
export function parseVariants(args: readonly string[] = []): number[] {
  const i = args.indexOf('--variants');
  if (i < 0) return [0];
  const list = (args[i + 1] ?? '').split(',').map((x) => (x.trim() === '' ? Number.NaN : Number(x)));
  if (list.length === 0 || list.some((v) => !(Number.isInteger(v) && v >= 0 && v <= DECODE_VARIANT_MAX))) {
    throw new Error(
      `--variants takes a comma list of integers in 0..${DECODE_VARIANT_MAX}, got '${args[i + 1] ?? ''}'`,
    );
  }
  return [...new Set(list)];
}

interface TorchRow {
  batch: number;
  context: number;
  cudnnUs?: number;
  flashUs?: number;
}

function torchScript(): string | null {
  // KASCADE_TORCH_SCRIPT=none: no PyTorch baselines (a second bench run of one call, e.g. under a tuning knob).
  if (process.env.KASCADE_TORCH_SCRIPT === 'none') return null;
  const candidates = [
    process.env.KASCADE_TORCH_SCRIPT,
    path.join(path.dirname(fileURLToPath(import.meta.url)), 'cuda-decode-torch.py'),
    path.resolve('apps/bench/src/benches/cuda-decode-torch.py'),
  ];
  return candidates.find((c): c is string => !!c && existsSync(c)) ?? null;
}

function torchBaselines(
  shapes: [number, number][],
  warmup: number,
  repeats: number,
  note: (m: string) => void,
): { rows: TorchRow[]; version?: string } {
  const script = torchScript();
  if (!script) {
    note('torch baseline script not found; skipping PyTorch');
    return { rows: [] };
  }
  const probe = spawnSync('python3', ['-c', 'import torch; assert torch.cuda.is_available()'], {
    encoding: 'utf8',
  });
  if (probe.status !== 0) {
    note('python3 with CUDA torch not found; skipping PyTorch baselines');
    return { rows: [] };
  }
  const cfg = JSON.stringify({ H, G, D, shapes, warmup, repeats });
  const r = spawnSync('python3', [script, cfg], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) {
    note(`torch baselines failed: ${r.stderr.slice(-400)}`);
    return { rows: [] };
  }
  const parsed = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as {
    rows: TorchRow[];
    torch?: string;
  };
  return { rows: parsed.rows, version: parsed.torch };
}

const bench: Bench = {
  name: 'cuda-decode',
  description: 'CUDA decode kernels (dense, layer-0 anchor, anchor, reuse) vs PyTorch SDPA on the H200',
  defaults: { warmup: 10, repeats: 50 },
  async run(ctx) {
    const variants = parseVariants(ctx.benchArgs);
    if (!isAvailable()) throw new Error(`cuda-decode needs a CUDA device: ${unavailableReason()}`);
    const info = deviceInfo();
    const contexts = ctx.quick ? [8192, 32768] : [8192, 32768, 131072];
    const batches = ctx.quick ? [1, 4] : [1, 32];
    const shapes: [number, number][] = [];
    for (const n of contexts) for (const b of batches) shapes.push([b, n]);
    if (!ctx.quick) shapes.push([1, 524288]);

    ctx.progress('PyTorch SDPA baselines');
    const torch = torchBaselines(shapes, ctx.warmup, ctx.repeats, ctx.progress);

    const rows: Row[] = [];
    const summary: Record<string, number> = {};
    const stat = (us: Float64Array) => summarize(us);

    // Copy bandwidth ceiling, same run: 2 GiB device-to-device, read + write counted.
    const copyBytes = 2 * 1024 ** 3;
    const src = DeviceTensor.empty('f32', [copyBytes / 4]);
    const dst = DeviceTensor.empty('f32', [copyBytes / 4]);
    fillNormal(src, 7);
    const copyStats = stat(timeDevice(() => copyDevice(dst, src), ctx.warmup, ctx.repeats));
    const copyGBps = (2 * copyBytes) / (copyStats.median * 1e3);
    rows.push({
      kernel: 'copy',
      context: 0,
      batch: 0,
      ...timingCells(copyStats),
      gbPerS: Math.round(copyGBps),
    });
    src.free();
    dst.free();

    const label = (n: number) => `${Math.round(n / 1024)}k`;
    for (const [batch, n] of shapes) {
      ctx.progress(`batch ${batch}, context ${n}`);
      const q = DeviceTensor.empty('bf16', [batch, H, D]);
      const k = DeviceTensor.empty('bf16', [batch, G, n, D]);
      const v = DeviceTensor.empty('bf16', [batch, G, n, D]);
      fillNormal(q, 1 + n + batch);
      fillNormal(k, 2 + n + batch);
      fillNormal(v, 3 + n + batch);
      const kk = topkBudget(n, { percent: PERCENT });
      const out = DeviceTensor.empty('bf16', [batch, H, D]);
      const sel = { kvHeads: G, k: kk, indices: DeviceTensor.empty('i32', [batch, G, kk]) };
      const b = { q, k, v, n };
      const identity = Array.from({ length: G }, (_, j) => j);
      const headMap = Array.from({ length: G }, (_, j) => (j * 3 + 1) % G);
      // The anchor fills the selection the reuse layers read.
      anchorDecode(b, kk, { out, selection: sel });
      synchronize();

      // Keep the GPU busy ~300 ms so clocks have ramped up before timing (the torch script does
      // the same): short batch-1 calls otherwise run partly at idle clocks.
      const one = timeDevice(() => denseDecode(b, out), 1, 1)[0] ?? 1000;
      for (let i = 0; i < Math.min(20000, Math.ceil(300_000 / Math.max(one, 1))); i++) denseDecode(b, out);
      synchronize();

      const kvBytes = 2 * batch * G * n * D * 2;
      const kBytes = kvBytes / 2;
      const gatherBytes = 2 * batch * G * kk * D * 2;
      const bytes: Record<Op, number> = {
        dense: kvBytes,
        layer0: kvBytes,
        anchor: kBytes + gatherBytes,
        reuse: gatherBytes,
      };
      const call: Record<Op, (variant: number) => () => void> = {
        dense: (variant) => () => denseDecode({ ...b, variant }, out),
        layer0: (variant) => () => denseAnchorDecode({ ...b, variant }, kk, { out, selection: sel }),
        anchor: (variant) => () => anchorDecode({ ...b, variant }, kk, { out, selection: sel }),
        reuse: (variant) => () => reuseDecode({ ...b, variant }, sel, headMap, out),
      };
      // Every variant of every op, then the fastest of each timed again (no best-of-N bias).
      const best = {} as Record<Op, number>;
      // The fastest with and without the lean schedule (bit 128), for the sweeps below.
      const bestOf = {
        lean: {} as Partial<Record<Op, [number, number]>>,
        split: {} as Partial<Record<Op, [number, number]>>,
      };
      for (const op of OPS) {
        let bestMedian = Number.POSITIVE_INFINITY;
        best[op] = variants[0] as number;
        if (variants.length === 1) continue;
        for (const v of variants) {
          const s = stat(timeDevice(call[op](v), ctx.warmup, ctx.repeats));
          rows.push({
            kernel: `${op}-v${v}`,
            context: n,
            batch,
            k: kk,
            variant: v,
            ...timingCells(s),
            gbPerS: Math.round(bytes[op] / (s.median * 1e3)),
          });
          if (s.median < bestMedian) {
            bestMedian = s.median;
            best[op] = v;
          }
          const kind = (v & 128) !== 0 ? bestOf.lean : bestOf.split;
          if (s.median < (kind[op]?.[1] ?? Number.POSITIVE_INFINITY)) kind[op] = [v, s.median];
        }
      }
      const t = {} as Record<Op, ReturnType<typeof stat>>;
      for (const op of OPS) t[op] = stat(timeDevice(call[op](best[op]), ctx.warmup, ctx.repeats));
      // Identity map too, to show the head map costs nothing.
      const reuseId = stat(
        timeDevice(
          () => reuseDecode({ ...b, variant: best.reuse }, sel, identity, out),
          ctx.warmup,
          ctx.repeats,
        ),
      );
      synchronize();
      for (const key of OPS) {
        const s = t[key];
        rows.push({
          kernel: key,
          context: n,
          batch,
          k: kk,
          variant: best[key],
          ...timingCells(s),
          gbPerS: Math.round(bytes[key] / (s.median * 1e3)),
        });
      }
      rows.push({
        kernel: 'reuse-identity-map',
        context: n,
        batch,
        k: kk,
        ...timingCells(reuseId),
        gbPerS: Math.round(gatherBytes / (reuseId.median * 1e3)),
      });
      const tr = torch.rows.find((r) => r.batch === batch && r.context === n);
      const torchBest = Math.min(
        tr?.cudnnUs ?? Number.POSITIVE_INFINITY,
        tr?.flashUs ?? Number.POSITIVE_INFINITY,
      );
      for (const [name, us] of [
        ['torch-cudnn', tr?.cudnnUs],
        ['torch-flash', tr?.flashUs],
      ] as const) {
        if (us !== undefined)
          rows.push({
            kernel: name,
            context: n,
            batch,
            medianUs: Math.round(us * 100) / 100,
            gbPerS: Math.round(kvBytes / (us * 1e3)),
          });
      }
      const whole = t.layer0.median + (ANCHORS - 1) * t.anchor.median + (LAYERS - ANCHORS) * t.reuse.median;
      const denseWhole = LAYERS * t.dense.median;
      rows.push({
        kernel: 'whole-model-kascade',
        context: n,
        batch,
        medianUs: Math.round(whole * 100) / 100,
      });
      rows.push({
        kernel: 'whole-model-dense',
        context: n,
        batch,
        medianUs: Math.round(denseWhole * 100) / 100,
      });
      // The whole layout as one CUDA graph (launch gaps removed), and 32 dense layers likewise. A capture
      // the driver refuses (e.g. a cooperative launch of the stream select, variant bit 2048) leaves the
      // graph figures out and says why on stderr, without losing the rest of the run.
      let tGraph: ReturnType<typeof stat> | undefined;
      try {
        const capture = (l0: number, an: number) =>
          captureGraph(() => {
            call.layer0(l0)();
            for (let i = 0; i < ANCHORS - 1; i++) call.anchor(an)();
            for (let i = 0; i < LAYERS - ANCHORS; i++) call.reuse(best.reuse)();
          });
        let wholeGraph: ReturnType<typeof captureGraph>;
        try {
          wholeGraph = capture(best.layer0, best.anchor);
        } catch (e) {
          // Without the anchors' session-4 bits (1024, 2048, 16384: the variant they extend is in the list).
          const l0 = best.layer0 & ~19456;
          const an = best.anchor & ~19456;
          console.error(
            `[cuda-decode] b${batch} n${n}: graph capture of layer0 v${best.layer0} / anchor v${best.anchor} failed (${(e as Error).message}); the graph row uses v${l0} / v${an}`,
          );
          wholeGraph = capture(l0, an);
        }
        const denseGraph = captureGraph(() => {
          for (let i = 0; i < LAYERS; i++) call.dense(best.dense)();
        });
        const reps = Math.max(5, Math.floor(ctx.repeats / 5));
        tGraph = stat(timeDevice(() => wholeGraph.launch(), 2, reps));
        const tDenseGraph = stat(timeDevice(() => denseGraph.launch(), 2, reps));
        rows.push({ kernel: 'whole-model-kascade-graph', context: n, batch, ...timingCells(tGraph) });
        rows.push({ kernel: 'whole-model-dense-graph', context: n, batch, ...timingCells(tDenseGraph) });
      } catch (e) {
        console.error(
          `[cuda-decode] b${batch} n${n}: CUDA graph capture failed, no graph figures: ${(e as Error).message}`,
        );
        tGraph = undefined;
      }
      // Grid sweeps at 128k (tuning data; the automatic choice is in the rows above): the split-KV
      // factor under the fastest variant without the lean schedule, and the lean grid's CTA count
      // (`splits` under bit 128) under the fastest lean variant.
      if (!ctx.quick && n === 131072) {
        const sweep = (
          op: 'dense' | 'reuse' | 'anchor',
          v: number,
          lean: boolean,
          counts: readonly number[],
        ) => {
          for (const splits of counts) {
            const fn =
              op === 'dense'
                ? () => denseDecode({ ...b, splits, variant: v }, out)
                : op === 'anchor'
                  ? () => anchorDecode({ ...b, splits, variant: v }, kk, { out, selection: sel })
                  : () => reuseDecode({ ...b, splits, variant: v }, sel, headMap, out);
            const ts = stat(timeDevice(fn, 3, 20));
            rows.push({
              kernel: `${op}-${lean ? 'lean-ctas' : 'splits'}-${splits}`,
              context: n,
              batch,
              variant: v,
              ...timingCells(ts),
              gbPerS: Math.round(
                (op === 'dense' ? kvBytes : op === 'anchor' ? kBytes + gatherBytes : gatherBytes) /
                  (ts.median * 1e3),
              ),
            });
          }
        };
        const ctas = [132, 264, 396, 528];
        // One variant timed: it is the fastest of its kind.
        const only = (op: Op, lean: boolean) =>
          variants.length === 1 && ((best[op] & 128) !== 0) === lean ? best[op] : undefined;
        const dl = bestOf.lean.dense?.[0] ?? only('dense', true);
        const ds = bestOf.split.dense?.[0] ?? only('dense', false);
        const rl = bestOf.lean.reuse?.[0] ?? only('reuse', true);
        const rs = bestOf.split.reuse?.[0] ?? only('reuse', false);
        if (ds !== undefined) sweep('dense', ds, false, batch === 1 ? [64, 192, 256] : [8, 16, 33]);
        if (dl !== undefined) sweep('dense', dl, true, ctas);
        if (rs !== undefined) sweep('reuse', rs, false, batch === 1 ? [26, 104, 205] : [2, 10, 20]);
        if (rl !== undefined) sweep('reuse', rl, true, ctas);
        // The anchor under its fastest lean variant: `splits` sets both of its passes' lean grids (the
        // scores pass runs 3 CTAs per SM by occupancy, 396 on the H200; dense streams best at 264).
        const al = bestOf.lean.anchor?.[0] ?? only('anchor', true);
        if (al !== undefined) sweep('anchor', al, true, [264, 528]);
      }
      const tag = `${label(n)}_b${batch}`;
      if (Number.isFinite(torchBest) && tGraph)
        summary[`wholeModelGraphSpeedupVsTorch_${tag}`] = round3((LAYERS * torchBest) / tGraph.median);
      if (Number.isFinite(torchBest)) {
        summary[`denseVsTorch_${tag}`] = round3(torchBest / t.dense.median);
        summary[`wholeModelSpeedupVsTorch_${tag}`] = round3((LAYERS * torchBest) / whole);
      }
      summary[`wholeModelSpeedupVsDense_${tag}`] = round3(denseWhole / whole);
      summary[`reuseOverDense_${tag}`] = round3(t.reuse.median / t.dense.median);
      summary[`anchorOverDense_${tag}`] = round3(t.anchor.median / t.dense.median);
      summary[`layer0OverDense_${tag}`] = round3(t.layer0.median / t.dense.median);
      summary[`reuseBandwidthShare_${tag}`] = round3(gatherBytes / (t.reuse.median * 1e3) / copyGBps);
      summary[`denseBandwidthShare_${tag}`] = round3(kvBytes / (t.dense.median * 1e3) / copyGBps);
      for (const op of OPS) summary[`variant_${op}_${tag}`] = best[op];
      for (const x of [q, k, v, out, sel.indices]) x.free();
    }
    summary.copyGBps = Math.round(copyGBps);
    return {
      config: {
        dtype: 'bf16',
        heads: H,
        kvHeads: G,
        headDim: D,
        topkPercent: PERCENT,
        layers: LAYERS,
        anchors: ANCHORS,
        timing:
          'CUDA events around each call on the op stream, medians, after ~300 ms of GPU warm-up per shape',
        bytes:
          'dense/layer0: K+V once; anchor: K once + gathered K+V rows; reuse: gathered K+V rows (k per KV head); copy: read+write',
        torch: torch.version ?? 'not run',
        variants: variants.join(','),
        variantChoice:
          variants.length > 1
            ? "per op and shape: every variant timed (rows <op>-v<bits>), the fastest timed again for the <op> row; summary variant_<op>_<shape> names it (bits: 1 TMA bulk rows, 2 L2 256 B prefetch, 4 fused combine, 8 wide Top-k chunks without memsets, 16 TMA tensor tiles for contiguous passes, 32 P as one 16-bit value in P V, 128 lean (stream-K) schedule: a persistent grid of the CTAs that fit, equal shares of all key tiles, and a wider combine; 256/512 the anchors' cluster select, 1024 their f16 intermediate, 2048 their stream select, 4096 programmatic dependent launch, 8192 the batch-1 gather, 16384 the 6-stage scores pass, 32768 the warp-specialised gather, 65536 with 32768 the gather's producer warps giving registers to its consumers, 131072 the batch-1 select as one launch, 262144 the contiguous passes' TMA maps without L2 promotion, 524288 with 1024 the anchor's sparse pass reading the scores from the f16 intermediate (V rows only), 1048576 with 1024 that intermediate key-major, 2097152 with it that intermediate stored in GPU-wide write windows by TMA bulk copies, 4194304 the wide gather's tagged merge, 8388608 the batch-1 logits kept in L2, 33554432 the batch-1 anchor's sparse pass started beside the b1 select's phase 3, 134217728 with 524288 the anchor's sparse pass released after the stream select's phase 3, 536870912 with 4194304 the wide gather's split merge through each row's f64 accumulator (kernels/cuda/kascade_cuda.h))"
            : 'one variant',
      },
      rows,
      summary,
      machine: {
        gpu: info.name,
        cuda: `${Math.floor(info.runtimeVersion / 1000)}.${(info.runtimeVersion % 1000) / 10}`,
        driver: `CUDA driver API ${Math.floor(info.driverVersion / 1000)}.${(info.driverVersion % 1000) / 10}`,
      },
    };
  },
};

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export default bench;
