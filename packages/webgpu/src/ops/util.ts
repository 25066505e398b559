import type { KascadeGPU } from '../context.js';
import { type Pass, packParams } from './common.js';

const WG = 256;
const FILL_BINDINGS = [
  [0, 'uniform'],
  [1, 'write'],
] as const;
const COPY_BINDINGS = [
  [0, 'uniform'],
  [2, 'read'],
  [3, 'write'],
] as const;

/** A 2D grid covering `invocations` (x up to the per-dimension limit, then rows). */
function grid(gpu: KascadeGPU, invocations: number): { x: number; y: number; rowStride: number } {
  const groups = Math.ceil(invocations / WG);
  const maxX = gpu.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(groups, maxX);
  return { x, y: Math.ceil(groups / x), rowStride: x * WG };
}

/**
 * Fills `words` u32 words of `buffer` with uniform pseudo-random values in `[-amplitude, amplitude)`
 * (never all zeros): f32 values, or pairs of f16 packed per word (`f16: true`).
 */
export function encodeFillRandom(
  gpu: KascadeGPU,
  pass: Pass,
  buffer: GPUBuffer,
  words: number,
  opts: { seed: number; f16?: boolean; amplitude?: number },
): void {
  const g = grid(gpu, words);
  const p = gpu.pipeline('bench_util', 'fill_random', { WG }, FILL_BINDINGS);
  pass.setPipeline(p.pipeline);
  pass.setBindGroup(
    0,
    gpu.bindGroup(p, 'kascade:fill_random', {
      0: gpu.params(
        packParams([words, opts.seed, opts.f16 ? 1 : 0, { f32: opts.amplitude ?? 1 }, g.rowStride, 0, 0, 0]),
      ),
      1: buffer,
    }),
  );
  pass.dispatchWorkgroups(g.x, g.y);
}

/**
 * Copies `bytes` (a multiple of 16) from `src` to `dst` with a WGSL vec4 copy (read + write bandwidth);
 * `readOnly`: reads `src` only (`dst` is never written in practice), an L2 flush that leaves no dirty lines.
 */
export function encodeCopy(
  gpu: KascadeGPU,
  pass: Pass,
  src: GPUBuffer,
  dst: GPUBuffer,
  bytes: number,
  readOnly = false,
): void {
  const n = Math.floor(bytes / 16);
  const g = grid(gpu, n);
  const p = gpu.pipeline('bench_util', readOnly ? 'read_vec4' : 'copy_vec4', { WG }, COPY_BINDINGS);
  pass.setPipeline(p.pipeline);
  pass.setBindGroup(
    0,
    gpu.bindGroup(p, 'kascade:copy_vec4', {
      0: gpu.params(packParams([n, 0, 0, 0, g.rowStride, 0, 0, 0])),
      2: src,
      3: dst,
    }),
  );
  pass.dispatchWorkgroups(g.x, g.y);
}
