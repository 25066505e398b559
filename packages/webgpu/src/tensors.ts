import { type DecodeInputs, toF16 } from '@kascade/core';
import type { KascadeGPU } from './context.js';
import { WebGPUShapeError } from './errors.js';
import type { KVDType } from './program.js';

/**
 * Keys and values of one layer on the device, `[batch, kvHeads, capacity, headDim]` each, as f32 or
 * as f16 packed two per `u32`. The first `n` tokens of each head are valid (the op is told `n`).
 */
export interface DeviceKV {
  /** K of the first part (all of K when there is one part). */
  readonly k: GPUBuffer;
  /** V of the first part. */
  readonly v: GPUBuffer;
  /**
   * K/V split by sequence when the whole batch exceeds one storage binding: part `i` holds
   * sequences `batchStart .. batchStart + batch - 1`, laid out `[batch, kvHeads, capacity, headDim]`.
   */
  readonly parts: readonly DeviceKVPart[];
  readonly dtype: KVDType;
  readonly batch: number;
  readonly kvHeads: number;
  readonly capacity: number;
  readonly headDim: number;
}

export interface DeviceKVPart {
  readonly k: GPUBuffer;
  readonly v: GPUBuffer;
  readonly batchStart: number;
  readonly batch: number;
}

/** Bytes of one K (or V) element. */
export function kvBytes(dtype: KVDType): number {
  return dtype === 'f32' ? 4 : 2;
}

/**
 * Allocates K/V for `batch x kvHeads x capacity` tokens. When the batch does not fit one storage
 * binding it is split by sequence into parts, each filled to the binding limit (each op then runs once
 * per part; 128k at batch 8 on the H200: 7 + 1 sequences); a single sequence larger than a binding
 * throws {@link WebGPULimitError}. (Session 12 timed parts as equal as they can be, 4 + 4: dense 1.7%
 * faster, the reuse 6% and the anchor 2% slower at 128k batch 8; see the package README.)
 */
export function createDeviceKV(
  gpu: KascadeGPU,
  shape: { batch: number; kvHeads: number; capacity: number; headDim: number; dtype: KVDType },
  label = 'kv',
): DeviceKV {
  const { batch, kvHeads, capacity, headDim, dtype } = shape;
  checkHeadDim(headDim);
  const perSeq = kvHeads * capacity * headDim * kvBytes(dtype);
  gpu.checkBinding(`${label}: one sequence (${kvHeads}x${capacity}x${headDim} ${dtype})`, perSeq);
  const perPart = Math.max(1, Math.floor(gpu.maxBindingBytes / perSeq));
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const parts: DeviceKVPart[] = [];
  for (let b0 = 0; b0 < batch; b0 += perPart) {
    const nb = Math.min(perPart, batch - b0);
    const size = nb * perSeq;
    const suffix = batch > perPart ? `[${b0}..${b0 + nb - 1}]` : '';
    parts.push({
      k: gpu.device.createBuffer({ label: `kascade:${label}.k${suffix}`, size, usage }),
      v: gpu.device.createBuffer({ label: `kascade:${label}.v${suffix}`, size, usage }),
      batchStart: b0,
      batch: nb,
    });
  }
  return { k: parts[0].k, v: parts[0].v, parts, dtype, batch, kvHeads, capacity, headDim };
}

/** Destroys every buffer of a K/V pair. */
export function destroyDeviceKV(kv: DeviceKV): void {
  for (const p of kv.parts) {
    p.k.destroy();
    p.v.destroy();
  }
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

/**
 * The core reference's inputs of sequence `b` of batched host arrays: `q [batch, heads, headDim]`,
 * `k` and `v` `[batch, kvHeads, capacity, headDim]` (capacity defaults to `n`).
 */
export function sequenceInputs(
  shape: { heads: number; kvHeads: number; headDim: number; n: number; capacity?: number },
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
): (b: number) => DecodeInputs {
  const { heads: H, kvHeads: G, headDim: d, n } = shape;
  const per = G * (shape.capacity ?? n) * d;
  return (b) => ({
    heads: H,
    kvHeads: G,
    headDim: d,
    n,
    ...(shape.capacity !== undefined ? { capacity: shape.capacity } : {}),
    q: q.subarray(b * H * d, (b + 1) * H * d),
    k: k.subarray(b * per, (b + 1) * per),
    v: v.subarray(b * per, (b + 1) * per),
  });
}
