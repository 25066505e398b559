/**
 * Shared by `webgpu-decode` and `webgpu-prefill`: opening the device (Dawn in Node, from
 * `$DAWN_NODE_PATH` when set, e.g. on the H200 machine), timing with timestamp queries, the
 * WebGPU copy bandwidth, an L2 flush between timed runs, and filling buffers with random data.
 */
import { createRequire } from 'node:module';
import {
  type DecodeArgs,
  encodeCopy,
  encodeFillRandom,
  KascadeGPU,
  type LayerRole,
  timeGPU,
} from '@kascade/webgpu';
import type { BenchContext } from '../harness.js';
import { type BenchResults, type MachineInfo, type Row, validateResults } from '../results.js';
import { type Stats, summarize } from '../stats.js';

interface DawnModule {
  create(flags: string[]): GPU;
  globals: object;
}

/** Opens the device: `$DAWN_NODE_PATH`'s `dawn.node` if set, else the `webgpu` package. */
/** The inputs every decode op of a bench run shares (one context and batch). */
export type DecodeInputs = Pick<
  DecodeArgs,
  'heads' | 'q' | 'kv' | 'n' | 'out' | 'slot' | 'headMap' | 'budget'
>;

/** The arguments of one decode op on the shared inputs: the team kernel unless `extra` says otherwise. */
export function decodeCall(on: DecodeInputs, role: LayerRole, extra: Partial<DecodeArgs> = {}): DecodeArgs {
  const { heads, q, kv, n, out, slot, headMap, budget } = on;
  return { role, heads, q, kv, n, out, slot, headMap, budget, kernel: 'teams', ...extra };
}

export async function openGPU(): Promise<KascadeGPU> {
  let gpu: GPU | undefined;
  const flags = ['disable-dawn-features=timestamp_quantization'];
  // Extra Dawn toggles for measurements, e.g. KASCADE_DAWN_ENABLE=disable_robustness (what the bounds
  // clamps that Dawn adds to every storage access cost); results name them in `machine.dawnToggles`.
  if (process.env.KASCADE_DAWN_ENABLE) flags.push(`enable-dawn-features=${process.env.KASCADE_DAWN_ENABLE}`);
  if (process.env.DAWN_NODE_PATH) {
    const dawn = createRequire(import.meta.url)(process.env.DAWN_NODE_PATH) as DawnModule;
    Object.assign(globalThis, dawn.globals);
    gpu = dawn.create(flags);
  } else {
    const name = 'webgpu';
    const dawn = (await import(name)) as DawnModule;
    Object.assign(globalThis, dawn.globals);
    gpu = dawn.create(flags);
  }
  return KascadeGPU.create({ gpu });
}

export function machineOf(gpu: KascadeGPU): Partial<MachineInfo> {
  const i = gpu.info.adapterInfo;
  return {
    gpu: [i.vendor, i.architecture, i.description].filter(Boolean).join(' ') || 'unknown',
    ...(process.env.KASCADE_DAWN_ENABLE ? { dawnToggles: process.env.KASCADE_DAWN_ENABLE } : {}),
  };
}

/**
 * A scratch buffer larger than the L2 cache, overwritten between timed runs (`copy`, leaving the L2
 * full of dirty lines that the timed pass's misses write back), or only read (`read`: the L2 full of
 * clean lines, as the weight reads of a model's projections leave it before an attention op).
 */
export function l2Flusher(
  gpu: KascadeGPU,
  quick = false,
  kind: 'copy' | 'read' = 'copy',
): (pass: GPUComputePassEncoder) => void {
  const bytes = (quick ? 4 : 256) * 2 ** 20;
  const a = gpu.scratchBuffer('bench.flushA', bytes);
  const b = gpu.scratchBuffer('bench.flushB', bytes);
  return (pass) => encodeCopy(gpu, pass, a, b, bytes, kind === 'read');
}

const SPIN_BINDINGS = [
  [0, 'uniform'],
  [1, 'read'],
  [2, 'read'],
  [3, 'read'],
  [4, 'write'],
] as const;
/** Dependent multiply-adds per invocation of the clock check (~30 us at 1980 MHz). */
const SPIN_STEPS = 15000;

/**
 * The SM-clock guard of the timings: a kernel whose time follows the SM clock alone (probe.wgsl's
 * spin), timed at the start (the baseline, the fastest of five) and around each op; `ratio()` is its
 * time now over the baseline (1 at full clock; on the H200 the clock log of call A2 showed stretches
 * of ~1.5 s at 675-990 MHz, which slowed batch-1 timings up to 2.6x).
 */
export class ClockGuard {
  private baselineUs = 0;
  private waitedMs = 0;
  constructor(private readonly gpu: KascadeGPU) {}

  private async spinUs(): Promise<number> {
    const gpu = this.gpu;
    const p = gpu.pipeline(
      'probe',
      'spin',
      { WG: 128, U: 1, TW: 16, PV: 2, KP: 'f16', INDEXED: false, READ_V: false },
      SPIN_BINDINGS,
    );
    const sink = gpu.scratchBuffer('probe.sink', 256);
    const { samplesUs } = await timeGPU(
      gpu,
      'clock check',
      (pass) => {
        pass.setPipeline(p.pipeline);
        pass.setBindGroup(
          0,
          gpu.bindGroup(p, 'kascade:probe.spin', {
            0: gpu.params(new Uint32Array([SPIN_STEPS, 0, 0, 0]).buffer),
            4: sink,
          }),
        );
        pass.dispatchWorkgroups(1);
      },
      { warmup: 1, repeats: 3 },
    );
    return summarize(samplesUs).median;
  }

  async calibrate(): Promise<number> {
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 5; i++) best = Math.min(best, await this.spinUs());
    this.baselineUs = best;
    return best;
  }

  /** The clock check's time over its baseline now (1: full clock). */
  async ratio(): Promise<number> {
    if (this.baselineUs === 0) await this.calibrate();
    return (await this.spinUs()) / this.baselineUs;
  }

  /** Waits (up to 2 s, 8 s per process in all) until the clock check is within 5% of its baseline. */
  async settle(): Promise<number> {
    let r = await this.ratio();
    for (let i = 0; i < 10 && r > 1.05 && this.waitedMs < 8000; i++) {
      await new Promise((done) => setTimeout(done, 200));
      this.waitedMs += 200;
      r = await this.ratio();
    }
    return r;
  }
}

const guards = new WeakMap<KascadeGPU, ClockGuard>();

/** Times `encode` (GPU time per run, medians) and returns the stats in microseconds. */
export async function timeOp(
  gpu: KascadeGPU,
  ctx: BenchContext,
  label: string,
  encode: (pass: GPUComputePassEncoder) => void,
  flush: (pass: GPUComputePassEncoder) => void,
  repeats = ctx.repeats,
  warmup = ctx.warmup,
): Promise<Stats & { source: string; clockRatio: number }> {
  // With KASCADE_CLOCK_GUARD=1: wait for a full SM clock before timing, and time again (up to twice)
  // when the clock check after the runs says the clock fell meanwhile; `clockRatio` is the worse check.
  const guarded = process.env.KASCADE_CLOCK_GUARD === '1' && gpu.info.hasTimestamps;
  let guard = guards.get(gpu);
  if (guarded && !guard) {
    guard = new ClockGuard(gpu);
    guards.set(gpu, guard);
    ctx.progress(`clock check baseline ${(await guard.calibrate()).toFixed(1)} us`);
  }
  let samplesUs: Float64Array = new Float64Array(0);
  let source = '';
  let clockRatio = 1;
  for (let attempt = 0; attempt < 3; attempt++) {
    const before = guarded && guard ? await guard.settle() : 1;
    ({ samplesUs, source } = await timeGPU(gpu, label, encode, { warmup, repeats, between: flush }));
    const after = guarded && guard ? await guard.ratio() : 1;
    clockRatio = Math.max(before, after);
    if (clockRatio <= 1.05) break;
    ctx.progress(`${label}: clock check ${clockRatio.toFixed(2)}x its baseline, timing again`);
  }
  const s = summarize(samplesUs);

  // Wall time of the line (UTC), to line the timings up with the job's GPU clock log.
  ctx.progress(
    `${new Date().toISOString().slice(11, 23)} ${label}: median ${s.median.toFixed(1)} us (${source})` +
      (guarded ? `, clock check ${clockRatio.toFixed(3)}x` : ''),
  );
  return { ...s, source, clockRatio: round(clockRatio, 3) };
}

/** WebGPU read + write bandwidth of a 1 GiB vec4 copy (16 MiB when quick), GB/s (bytes read + written). */
export async function copyBandwidth(
  gpu: KascadeGPU,
  ctx: BenchContext,
  flush: (pass: GPUComputePassEncoder) => void,
): Promise<{ row: Row; gbPerS: number }> {
  const most = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  const bytes = Math.min(ctx.quick ? 2 ** 24 : 2 ** 30, Math.floor(most / 16) * 16);
  const src = gpu.device.createBuffer({
    label: 'bench.copy.src',
    size: bytes,
    usage: GPUBufferUsage.STORAGE,
  });
  const dst = gpu.device.createBuffer({
    label: 'bench.copy.dst',
    size: bytes,
    usage: GPUBufferUsage.STORAGE,
  });
  const s = await timeOp(
    gpu,
    ctx,
    `copy ${bytes >> 20} MiB`,
    (p) => encodeCopy(gpu, p, src, dst, bytes),
    flush,
  );
  src.destroy();
  dst.destroy();
  const gbPerS = (2 * bytes) / (s.median * 1e3);
  return {
    row: {
      kernel: 'copy',
      context: 0,
      batch: 0,
      medianUs: round(s.median),
      p10Us: round(s.p10),
      p90Us: round(s.p90),
      gbPerS: Math.round(gbPerS),
      bytes,
      timing: s.source,
    },
    gbPerS,
  };
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Fills `buf` (f32 words, or f16 pairs) with seeded random values on the GPU and submits. */
export function fillBuffer(gpu: KascadeGPU, buf: GPUBuffer, seed: number, f16: boolean): void {
  const enc = gpu.device.createCommandEncoder({ label: 'bench.fill' });
  const pass = enc.beginComputePass({ label: 'bench.fill' });
  encodeFillRandom(gpu, pass, buf, buf.size / 4, { seed, f16 });
  pass.end();
  gpu.flushParams();
  gpu.device.queue.submit([enc.finish()]);
}

/** Joins results of one bench run made in pieces: rows in order, summaries merged (later wins). */
export function mergeResults(parts: readonly BenchResults[]): BenchResults {
  const [first, ...rest] = parts;
  if (!first) throw new RangeError('mergeResults: no results to merge');
  for (const p of rest) {
    if (p.bench !== first.bench) throw new RangeError(`mergeResults: ${p.bench} is not ${first.bench}`);
  }
  return validateResults({
    ...first,
    command: parts.map((p) => p.command).join(' && '),
    rows: parts.flatMap((p) => p.rows),
    summary: Object.assign({}, ...parts.map((p) => p.summary)),
  });
}
