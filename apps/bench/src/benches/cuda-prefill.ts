/**
 * `kascade-bench cuda-prefill`: the CUDA prefill kernels on one layer, Llama-3.1-8B attention shape
 * (32 query heads, 8 KV heads, d 128), bf16, batch 1, p = 10% (kMin 128), query tile T = 32,
 * contexts 8k / 32k / 128k (the whole context prefilled as one chunk).
 *
 * Per context: dense causal prefill, dense + softmax statistics, layer-0 anchor, anchor and reuse
 * (through a non-identity head map), each timed with CUDA events per call (warm-up, then repeats;
 * medians) with achieved TFLOP/s over the causal QK^T + PV work; PyTorch SDPA (cuDNN and flash,
 * is_causal, GQA) on the same shapes in the same run when python3 with CUDA torch is present (the
 * script is embedded below); the whole-model prefill attention of the paper's layout,
 * t(layer0) + 4 t(anchor) + 27 t(reuse), against 32 t(dense); and the device memory the Kascade
 * layer uses (inputs, output, selection slot, anchor workspace). Inputs are normal random
 * (device-side fill), never zeros.
 *
 * Kernel presets (`PREFILL_KERNEL_PRESETS` of @kascade/cuda): `KASCADE_PREFILL_VARIANTS=v67,v60` (the
 * presets that passed parity in the same device call; default: the current selection) times every op
 * under each, in the same run; rows carry `variant`, and the summary takes for each op the fastest
 * preset (named in `config.chosen`), so the whole-model figure selects kernels per layer role. Each op's
 * output (poisoned with NaN before the timing loop) is sampled after it (the first 32 and last 64 query
 * rows of every head) and compared with the first preset's: a preset that differs by 2e-2 or more
 * (`relErrVsFirst`, `consistent: false`) is never chosen. So is one whose layer 0 or anchor selected other key sets
 * than the first preset's in a sample of tiles (`selectionMismatch`: rows that differ).
 */
import { spawnSync } from 'node:child_process';
import {
  anchorPrefill,
  DeviceTensor,
  denseAnchorPrefill,
  densePrefill,
  deviceInfo,
  fillNormal,
  isAvailable,
  prefillKernelPreset,
  prefillKernels,
  prefillSelectionSlot,
  prefillShape,
  prefillWorkspaceBytes,
  reusePrefill,
  setPrefillKernels,
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
const ANCHORS = 5; // layer 0 + 4 anchors

/** PyTorch SDPA prefill baselines: prints one JSON object (median us per context and backend). */
const TORCH_SCRIPT = `
import json, sys
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

def timed(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for i in range(repeats):
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    ts = sorted(s.elapsed_time(e) * 1000.0 for s, e in zip(starts, ends))
    return ts[len(ts) // 2]

cfg = json.loads(sys.argv[1])
H, G, D = cfg["H"], cfg["G"], cfg["D"]
out = {"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "rows": []}
gen = torch.Generator(device="cuda").manual_seed(0)
for n, warmup, repeats in cfg["shapes"]:
    q = torch.randn(1, H, n, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(1, G, n, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    v = torch.randn(1, G, n, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    row = {"context": n}
    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
        try:
            with sdpa_kernel(backend):
                row[name + "Us"] = timed(
                    lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), warmup, repeats)
        except Exception as ex:
            row[name + "Error"] = str(ex)[:160]
            try:  # a backend without GQA support: the same work on K/V expanded to every head
                ke = k.repeat_interleave(H // G, dim=1)
                ve = v.repeat_interleave(H // G, dim=1)
                with sdpa_kernel(backend):
                    row[name + "Us"] = timed(
                        lambda: F.scaled_dot_product_attention(q, ke, ve, is_causal=True), warmup, repeats)
                row[name + "ExpandedKv"] = True
                del ke, ve
            except Exception as ex2:
                row[name + "Error2"] = str(ex2)[:160]
    out["rows"].append(row)
    print(json.dumps(row), file=sys.stderr, flush=True)
    del q, k, v
    torch.cuda.empty_cache()
print(json.dumps(out))
`;

interface TorchRow {
  context: number;
  cudnnUs?: number;
  flashUs?: number;
  cudnnExpandedKv?: boolean;
  flashExpandedKv?: boolean;
  cudnnError?: string;
  flashError?: string;
}

function torchBaselines(
  shapes: [number, number, number][],
  note: (m: string) => void,
): { rows: TorchRow[]; version?: string } {
  const probe = spawnSync('python3', ['-c', 'import torch; assert torch.cuda.is_available()'], {
    encoding: 'utf8',
  });
  if (probe.status !== 0) {
    note('python3 with CUDA torch not found; skipping PyTorch baselines');
    return { rows: [] };
  }
  const cfg = JSON.stringify({ H, G, D, shapes });
  const r = spawnSync('python3', ['-c', TORCH_SCRIPT, cfg], { encoding: 'utf8', maxBuffer: 1 << 24 });
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

function contextsFromEnv(): number[] | undefined {
  const raw = process.env.KASCADE_PREFILL_CONTEXTS;
  if (raw === undefined || raw.trim() === '') return undefined;
  const list = raw.split(',').map((x) => Number(x.trim()));
  for (const n of list)
    if (!Number.isInteger(n) || n < 32 || n > 1 << 20)
      throw new Error(`KASCADE_PREFILL_CONTEXTS must list integers in 32..1048576, got ${raw}`);
  return list;
}

/** Causal attention FLOPs of one layer: QK^T and PV over n(n+1)/2 (query, key) pairs per head. */
function causalFlops(n: number): number {
  return 4 * H * D * ((n * (n + 1)) / 2);
}

const bench: Bench = {
  name: 'cuda-prefill',
  description: 'CUDA prefill kernels (dense, layer-0 anchor, anchor, reuse) vs PyTorch SDPA on the H200',
  defaults: { warmup: 2, repeats: 10 },
  async run(ctx) {
    if (!isAvailable()) throw new Error(`cuda-prefill needs a CUDA device: ${unavailableReason()}`);
    const info = deviceInfo();
    // KASCADE_PREFILL_CONTEXTS=32768 (comma list) narrows the contexts (the profile job runs one).
    const contexts = contextsFromEnv() ?? (ctx.quick ? [4096, 8192] : [8192, 32768, 131072]);
    // At most 8 repeats at 128k (a dense layer there is hundreds of ms; session 8: 3 medians were as noisy as the
    // candidates' differences, so the device job's 6 repeats now hold there too).
    const repsFor = (n: number) => (n >= 131072 ? Math.max(3, Math.min(ctx.repeats, 8)) : ctx.repeats);
    const warmFor = (n: number) => (n >= 131072 ? Math.min(ctx.warmup, 1) : ctx.warmup);

    ctx.progress('PyTorch SDPA baselines');
    // KASCADE_PREFILL_TORCH=0 leaves them out (the profile job times our kernels only).
    const torch =
      process.env.KASCADE_PREFILL_TORCH === '0'
        ? { rows: [] as TorchRow[], version: undefined }
        : torchBaselines(
            contexts.map((n) => [n, warmFor(n), repsFor(n)]),
            ctx.progress,
          );

    const rows: Row[] = [];
    const summary: Record<string, number> = {};
    // Named kernel presets (PREFILL_KERNEL_PRESETS); none named: the current selection only.
    const variants = (process.env.KASCADE_PREFILL_VARIANTS ?? '')
      .split(',')
      .filter((v) => v.length > 0)
      .map((name) => ({ name, kernels: prefillKernelPreset(name) }));
    if (variants.length === 0) variants.push({ name: 'current', kernels: prefillKernels() });
    const chosen: Record<string, string> = {};
    // Sum of a preset's op medians at the last context it ran (for the skip guards below).
    const lastTotal = new Map<string, { n: number; us: number }>();
    const deadline = Number(process.env.KASCADE_BENCH_DEADLINE_MS ?? 0);
    const label = (n: number) => `${Math.round(n / 1024)}k`;
    for (const n of contexts) {
      ctx.progress(`context ${n}`);
      const q = DeviceTensor.empty('bf16', [1, H, n, D]);
      const k = DeviceTensor.empty('bf16', [1, G, n, D]);
      const v = DeviceTensor.empty('bf16', [1, G, n, D]);
      fillNormal(q, 11 + n);
      fillNormal(k, 12 + n);
      fillNormal(v, 13 + n);
      const out = DeviceTensor.empty('bf16', [1, H, n, D]);
      const stats = DeviceTensor.empty('f32', [1, H, n, 2]);
      const chunk = { q, k, v };
      const shape = prefillShape(chunk);
      const sel = prefillSelectionSlot(shape, { percent: PERCENT });
      const headMap = Array.from({ length: G }, (_, j) => (j * 3 + 1) % G);
      // The anchor (current kernels) fills the selection the reuse layers read; it stays fixed while
      // the anchors under test write `sel`, so every preset's reuse runs on the same input.
      const reuseSel = prefillSelectionSlot(shape, { percent: PERCENT });
      anchorPrefill(chunk, { percent: PERCENT }, { out, selection: reuseSel });
      synchronize();

      const w = warmFor(n);
      const r = repsFor(n);
      const stat = (fn: () => void) => summarize(timeDevice(fn, w, r));
      const flops = causalFlops(n);
      type Stat = ReturnType<typeof stat>;
      type Timed = Record<'dense' | 'denseStats' | 'layer0' | 'anchor' | 'reuse', Stat>;
      const best: Partial<Timed> = {};
      const before = prefillKernels();
      // Output samples of the first preset, per op: every other preset's output must agree with them.
      const refSamples = new Map<keyof Timed, Float32Array>();
      // Selection samples of the first preset (layer 0, anchor): every other preset's must hold the same key sets.
      const refSelections = new Map<keyof Timed, Int32Array[]>();
      for (const [vi, variant] of variants.entries()) {
        // Guards (the device job has a hard time limit): a preset whose ops took SLOWER x the first
        // preset's at the previous context (32k or more), or whose predicted time (n^2 scaling) would
        // pass the deadline (KASCADE_BENCH_DEADLINE_MS, epoch ms), is skipped here and says so; the
        // first preset always runs.
        const prevT = lastTotal.get(variant.name);
        const refT = lastTotal.get(variants[0]?.name ?? '');
        if (vi > 0 && prevT && refT) {
          const predictedMs = (prevT.us * (n / prevT.n) ** 2 * (w + r)) / 1000;
          const slow = prevT.n >= 32768 && prevT.us > SLOWER * refT.us;
          const late = deadline > 0 && Date.now() + predictedMs > deadline;
          if (slow || late) {
            const why = slow
              ? `its ops took ${(prevT.us / refT.us).toFixed(2)}x ${variants[0]?.name}'s at ${label(prevT.n)}`
              : `predicted ${Math.round(predictedMs / 1000)} s would pass the job's deadline`;
            rows.push({ kernel: 'skipped', variant: variant.name, context: n, batch: 1, note: why });
            ctx.progress(`context ${n}, kernels ${variant.name}: skipped (${why})`);
            continue;
          }
        }
        setPrefillKernels(variant.kernels);
        ctx.progress(`context ${n}, kernels ${variant.name}`);
        let totalUs = 0;
        const ops: [keyof Timed, () => void][] = [
          ['dense', () => densePrefill(chunk, out)],
          ['denseStats', () => densePrefill(chunk, out, stats)],
          ['layer0', () => denseAnchorPrefill(chunk, { percent: PERCENT }, { out, selection: sel })],
          ['anchor', () => anchorPrefill(chunk, { percent: PERCENT }, { out, selection: sel })],
          ['reuse', () => reusePrefill(chunk, reuseSel, headMap, out)],
        ];
        for (const [key, fn] of ops) {
          out.fill(0xff); // NaN: rows a kernel leaves unwritten show up in the sample
          const s = stat(fn);
          totalUs += s.median;
          const smp = sampleOutput(out, n);
          const ref = refSamples.get(key);
          if (vi === 0) refSamples.set(key, smp);
          const err = ref
            ? relErr(smp, ref)
            : smp.some((x) => Number.isNaN(x))
              ? Number.POSITIVE_INFINITY
              : 0;
          let selectionMismatch: number | undefined;
          if (key === 'layer0' || key === 'anchor') {
            const rowsNow = sampleSelection(sel);
            const refRows = refSelections.get(key);
            if (vi === 0) refSelections.set(key, rowsNow);
            else if (refRows) selectionMismatch = refRows.filter((r, i) => !sameInts(r, rowsNow[i])).length;
          }
          const consistent = err < CONSISTENT && !selectionMismatch;
          rows.push({
            kernel: key,
            variant: variant.name,
            context: n,
            batch: 1,
            kMax: sel.kMax,
            ...timingCells(s),
            ...(key === 'dense' || key === 'denseStats'
              ? { tflopPerS: Math.round((flops / (s.median * 1e6)) * 10) / 10 }
              : {}),
            ...(key === 'layer0' || key === 'anchor'
              ? { anchorWorkspaceMB: Math.round(prefillWorkspaceBytes(chunk) / 1e6) }
              : {}),
            relErrVsFirst: Number.isFinite(err) ? Number(err.toPrecision(3)) : -1,
            ...(selectionMismatch !== undefined ? { selectionMismatch } : {}),
            consistent,
          });
          if (!consistent)
            ctx.progress(`  ${key} under ${variant.name} disagrees with ${variants[0]?.name}: ${err}`);
          const prev = best[key];
          if (consistent && (!prev || s.median < prev.median)) {
            best[key] = s;
            chosen[`${key}_${label(n)}`] = variant.name;
          }
        }
        lastTotal.set(variant.name, { n, us: totalUs });
      }
      setPrefillKernels(before);
      const t = best as Timed;
      const tr = torch.rows.find((x) => x.context === n);
      for (const [name, us, expanded] of [
        ['torch-cudnn', tr?.cudnnUs, tr?.cudnnExpandedKv],
        ['torch-flash', tr?.flashUs, tr?.flashExpandedKv],
      ] as const) {
        if (us !== undefined)
          rows.push({
            kernel: name,
            context: n,
            batch: 1,
            medianUs: Math.round(us * 100) / 100,
            tflopPerS: Math.round((flops / (us * 1e6)) * 10) / 10,
            ...(expanded ? { note: 'K/V expanded to every head (no GQA in this backend)' } : {}),
          });
      }
      const whole = t.layer0.median + (ANCHORS - 1) * t.anchor.median + (LAYERS - ANCHORS) * t.reuse.median;
      rows.push({ kernel: 'whole-model-kascade', context: n, batch: 1, medianUs: Math.round(whole) });
      rows.push({
        kernel: 'whole-model-dense',
        context: n,
        batch: 1,
        medianUs: Math.round(LAYERS * t.dense.median),
      });
      // Device memory of one Kascade layer at this context (the workspace of the preset chosen for the anchor).
      const anchorChosen = chosen[`anchor_${label(n)}`];
      setPrefillKernels(variants.find((x) => x.name === anchorChosen)?.kernels ?? before);
      const ws = prefillWorkspaceBytes(chunk);
      setPrefillKernels(before);
      const selBytes = sel.indices.bytes + sel.countsDevice.bytes;
      const ioBytes = q.bytes + k.bytes + v.bytes + out.bytes;
      rows.push({
        kernel: 'memory',
        context: n,
        batch: 1,
        anchorWorkspaceMB: Math.round(ws / 1e6),
        selectionMB: Math.round(selBytes / 1e6),
        qkvOutMB: Math.round(ioBytes / 1e6),
      });
      const tag = label(n);
      const torchBest = Math.min(
        tr?.cudnnUs ?? Number.POSITIVE_INFINITY,
        tr?.flashUs ?? Number.POSITIVE_INFINITY,
      );
      if (Number.isFinite(torchBest)) {
        summary[`denseVsTorch_${tag}`] = round3(torchBest / t.dense.median);
        summary[`wholeModelSpeedupVsTorch_${tag}`] = round3((LAYERS * torchBest) / whole);
      }
      summary[`wholeModelSpeedupVsDense_${tag}`] = round3((LAYERS * t.dense.median) / whole);
      summary[`layer0OverDense_${tag}`] = round3(t.layer0.median / t.dense.median);
      summary[`anchorOverDense_${tag}`] = round3(t.anchor.median / t.dense.median);
      summary[`reuseOverDense_${tag}`] = round3(t.reuse.median / t.dense.median);
      summary[`denseTflops_${tag}`] = Math.round((flops / (t.dense.median * 1e6)) * 10) / 10;
      summary[`memoryMB_${tag}`] = Math.round((ws + selBytes + ioBytes) / 1e6);
      for (const x of [
        q,
        k,
        v,
        out,
        stats,
        sel.indices,
        sel.countsDevice,
        reuseSel.indices,
        reuseSel.countsDevice,
      ])
        x.free();
    }
    return {
      config: {
        dtype: 'bf16',
        heads: H,
        kvHeads: G,
        headDim: D,
        batch: 1,
        tileSize: 32,
        topkPercent: PERCENT,
        kMin: 128,
        layers: LAYERS,
        anchors: ANCHORS,
        timing: 'CUDA events around each call on the op stream, medians (at most 8 repeats at 128k)',
        flops: '4 * heads * headDim * n(n+1)/2 (causal QK^T + PV)',
        torch: torch.version ?? 'not run',
        variants: variants
          .map((v) => `${v.name}=dense ${v.kernels.dense}/sparse ${v.kernels.sparse}/pool ${v.kernels.pool}`)
          .join(' '),
        chosen: Object.entries(chosen)
          .map(([k, v]) => `${k}=${v}`)
          .join(' '),
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

/** A preset this much slower than the first one (sum of op medians) at one context is not timed at the next. */
const SLOWER = 1.5;

/** Largest relative difference from the first preset's output sample that still counts as the same result. */
const CONSISTENT = 2e-2;

/**
 * A sample of a bf16 `[1, H, n, D]` output: the first 32 and the last 64 query rows of every head (the
 * last ones attend the most keys), as floats; NaN where the kernel left the poison.
 */
function sampleOutput(t: DeviceTensor<'bf16'>, n: number): Float32Array {
  const spans: [number, number][] = [
    [0, Math.min(32, n)],
    [Math.max(32, n - 64), n],
  ];
  const parts: Float32Array[] = [];
  for (let h = 0; h < H; h++) {
    for (const [a, b] of spans) {
      if (b <= a) continue;
      const raw = new Uint16Array((b - a) * D);
      t.buffer.download(raw, (h * n + a) * D * 2);
      parts.push(new Float32Array(Uint32Array.from(raw, (x) => x << 16).buffer));
    }
  }
  const outArr = new Float32Array(parts.reduce((acc, p) => acc + p.length, 0));
  let o = 0;
  for (const p of parts) {
    outArr.set(p, o);
    o += p.length;
  }
  return outArr;
}

/**
 * Sorted selection rows of a sample of tiles (every 61st tile and the last two, every KV head): the key sets a
 * preset's layer 0 or anchor chose, to compare with the first preset's (the selects are exact, so the sets must be
 * equal; the order inside a row is free).
 */
function sampleSelection(sel: ReturnType<typeof prefillSelectionSlot>): Int32Array[] {
  const out: Int32Array[] = [];
  const tiles = sel.tiles;
  const picked = new Set<number>([tiles - 1, tiles - 2].filter((t) => t >= 0));
  for (let t = 0; t < tiles; t += 61) picked.add(t);
  for (let j = 0; j < G; j++)
    for (const t of [...picked].sort((a, b) => a - b)) {
      const c = sel.counts[t] as number;
      const row = new Int32Array(c);
      if (c > 0) sel.indices.buffer.download(row, (j * tiles + t) * sel.kMax * 4);
      out.push(row.sort());
    }
  return out;
}

function sameInts(a: Int32Array, b: Int32Array | undefined): boolean {
  return b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);
}

/** ||a - ref|| / ||ref||; infinite when either holds a NaN. */
function relErr(a: Float32Array, ref: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = (a[i] as number) - (ref[i] as number);
    num += e * e;
    den += (ref[i] as number) ** 2;
  }
  return Number.isNaN(num) || Number.isNaN(den)
    ? Number.POSITIVE_INFINITY
    : Math.sqrt(num / Math.max(den, 1e-300));
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export default bench;
