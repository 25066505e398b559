import type { NativeBinding, NativeDeviceBuffer } from './binding.types.js';
import { CudaArgumentError, CudaUnavailableError } from './errors.js';
import { loadNative } from './load.js';

/** Element types of device tensors: attention data in f16/bf16 (raw 16-bit patterns), f32, int32 indices. */
export type DeviceDType = 'bf16' | 'f16' | 'f32' | 'i32';

/** The host array a dtype travels as. */
export type HostArrayOf<D extends DeviceDType> = D extends 'f32'
  ? Float32Array
  : D extends 'i32'
    ? Int32Array
    : Uint16Array;

const BYTES: Record<DeviceDType, number> = { bf16: 2, f16: 2, f32: 4, i32: 4 };

/** The loaded addon, or a {@link CudaUnavailableError} saying why there is none. */
export function requireNative(): NativeBinding {
  const r = loadNative();
  if (!r.binding || r.reason) throw new CudaUnavailableError(r.reason ?? 'CUDA is unavailable');
  return r.binding;
}

function elements(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) {
    if (!(Number.isInteger(s) && s >= 1)) {
      throw new CudaArgumentError(`tensor shape [${shape.join(', ')}] must hold positive integers`);
    }
    n *= s;
  }
  return n;
}

/**
 * A tensor in device memory with a typed dtype and shape (row-major). Its memory is freed by
 * {@link DeviceTensor.free} or, failing that, when the object is garbage-collected (the
 * addon's finalizer), so leaks cannot pile up.
 */
export class DeviceTensor<D extends DeviceDType = DeviceDType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly size: number;
  /** @internal */
  readonly buffer: NativeDeviceBuffer;

  private constructor(dtype: D, shape: readonly number[]) {
    if (!(dtype in BYTES)) throw new CudaArgumentError(`unknown dtype '${String(dtype)}'`);
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.size = elements(shape);
    this.buffer = new (requireNative().DeviceBuffer)(this.size * BYTES[dtype]);
  }

  /** Uninitialised device memory. */
  static empty<D extends DeviceDType>(dtype: D, shape: readonly number[]): DeviceTensor<D> {
    return new DeviceTensor(dtype, shape);
  }

  /** Copies host data (its length must match the shape) to a new device tensor. */
  static fromHost<D extends DeviceDType>(
    dtype: D,
    shape: readonly number[],
    data: HostArrayOf<D>,
  ): DeviceTensor<D> {
    const t = new DeviceTensor(dtype, shape);
    try {
      t.upload(data);
    } catch (e) {
      t.free();
      throw e;
    }
    return t;
  }

  get bytes(): number {
    return this.size * BYTES[this.dtype];
  }

  get freed(): boolean {
    return this.buffer.freed;
  }

  upload(data: HostArrayOf<D>): void {
    if (data.length !== this.size) {
      throw new CudaArgumentError(
        `upload: ${data.length} elements for a [${this.shape.join(', ')}] ${this.dtype} tensor of ${this.size}`,
      );
    }
    this.buffer.upload(data);
  }

  /** Waits for queued work, then copies the tensor to a new host array. */
  download(): HostArrayOf<D> {
    const out = (
      this.dtype === 'f32'
        ? new Float32Array(this.size)
        : this.dtype === 'i32'
          ? new Int32Array(this.size)
          : new Uint16Array(this.size)
    ) as HostArrayOf<D>;
    this.buffer.download(out);
    return out;
  }

  /** Sets every byte to `byte` (0xff poisons f16/bf16/f32 data with NaN). Asynchronous. */
  fill(byte: number): void {
    this.buffer.fill(byte);
  }

  free(): void {
    this.buffer.free();
  }
}
