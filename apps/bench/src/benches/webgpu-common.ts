/**
 * Shared by `webgpu-decode` and `webgpu-prefill`: opening the device (Dawn in Node, from
 * `$DAWN_NODE_PATH` when set, e.g. on the H200 machine), timing with timestamp queries, the
 * WebGPU copy bandwidth, an L2 flush between timed runs, and filling buffers with random data.
 */
import { createRequire } from 'node:module';
import { encodeCopy, encodeFillRandom, KascadeGPU, timeGPU } from '@kascade/webgpu';
import type { BenchContext } from '../harness.js';
import { type BenchResults, type MachineInfo, type Row, validateResults } from '../results.js';
import { type Stats, summarize } from '../stats.js';

interface DawnModule {
  create(flags: string[]): GPU;
  globals: object;
}

/** Opens the device: `$DAWN_NODE_PATH`'s `dawn.node` if set, else the `webgpu` package. */
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

/** A scratch buffer larger than the L2 cache, overwritten between timed runs. */
export function l2Flusher(gpu: KascadeGPU, quick = false): (pass: GPUComputePassEncoder) => void {
  const bytes = (quick ? 4 : 256) * 2 ** 20;
  const a = gpu.scratchBuffer('bench.flushA', bytes);
  const b = gpu.scratchBuffer('bench.flushB', bytes);
  return (pass) => encodeCopy(gpu, pass, a, b, bytes);
}

/** Times `encode` (GPU time per run, medians) and returns the stats in microseconds. */
export async function timeOp(
  gpu: KascadeGPU,
  ctx: BenchContext,
  label: string,
  encode: (pass: GPUComputePassEncoder) => void,
  flush: (pass: GPUComputePassEncoder) => void,
  repeats = ctx.repeats,
  warmup = ctx.warmup,
): Promise<Stats & { source: string }> {
  const { samplesUs, source } = await timeGPU(gpu, label, encode, { warmup, repeats, between: flush });
  const s = summarize(samplesUs);
  // Wall time of the line (UTC), to line the timings up with the job's GPU clock log.
  ctx.progress(
    `${new Date().toISOString().slice(11, 23)} ${label}: median ${s.median.toFixed(1)} us (${source})`,
  );
  return { ...s, source };
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
