import { toF16 } from '@kascade/core';
import type { KascadeGPU } from './context.js';
import { WebGPUShapeError } from './errors.js';
import type { KVDType } from './program.js';

/**
 * Keys and values of one layer on the device, `[batch, kvHeads, capacity, headDim]` each, as f32 or
 * as f16 packed two per `u32`. The first `n` tokens of each head are valid (the op is told `n`).
 */
export interface DeviceKV {
  readonly k: GPUBuffer;
  readonly v: GPUBuffer;
  readonly dtype: KVDType;
  readonly batch: number;
  readonly kvHeads: number;
  readonly capacity: number;
  readonly headDim: number;
}

/** Bytes of one K (or V) element. */
export function kvBytes(dtype: KVDType): number {
  return dtype === 'f32' ? 4 : 2;
}

/** Allocates a K/V pair for `batch x kvHeads x capacity` tokens (checked against the binding limits). */
export function createDeviceKV(
  gpu: KascadeGPU,
  shape: { batch: number; kvHeads: number; capacity: number; headDim: number; dtype: KVDType },
  label = 'kv',
): DeviceKV {
  const { batch, kvHeads, capacity, headDim, dtype } = shape;
  checkHeadDim(headDim);
  const size = batch * kvHeads * capacity * headDim * kvBytes(dtype);
  gpu.checkBinding(`${label} (${batch}x${kvHeads}x${capacity}x${headDim} ${dtype})`, size);
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  return {
    k: gpu.device.createBuffer({ label: `kascade:${label}.k`, size, usage }),
    v: gpu.device.createBuffer({ label: `kascade:${label}.v`, size, usage }),
    dtype,
    batch,
    kvHeads,
    capacity,
    headDim,
  };
}

export function checkHeadDim(headDim: number): void {
  if (headDim !== 64 && headDim !== 128) {
    throw new WebGPUShapeError(`headDim must be 64 or 128 on WebGPU, got ${headDim}`);
  }
}

/** Host data laid out for a K/V buffer of `dtype`: f32 as is, f16 packed two per u32 (low half first). */
export function packKV(data: ArrayLike<number>, dtype: KVDType): Uint32Array | Float32Array {
  if (dtype === 'f32') return data instanceof Float32Array ? data : Float32Array.from(data);
  const out = new Uint16Array(Math.ceil(data.length / 2) * 2);
  out.set(toF16(data));
  return new Uint32Array(out.buffer);
}
