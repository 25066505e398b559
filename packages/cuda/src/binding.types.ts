/**
 * The whole native surface of `build/kascade_cuda.node`, declared once. Nothing outside
 * `load.ts` touches the raw module; everything else goes through these types.
 */

/** A decode shape as the addon takes it (see kernels/cuda/kascade_cuda.h for the layout). */
export interface NativeDecodeShape {
  readonly batch: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Valid keys per sequence (the new token's key included). */
  readonly n: number;
  /** Tokens per KV-head block of the cache (the stride); defaults to `n`. */
  readonly capacity?: number;
  readonly scale: number;
  readonly dtype: 'bf16' | 'f16';
  /** Split-KV factor; 0 or absent chooses automatically. */
  readonly splits?: number;
  /** Kernel variant bits 0..2147483647 (KascadeDecodeVariant in kernels/cuda/kascade_cuda.h); 0 or absent: the first kernels. */
  readonly variant?: number;
}

/** A prefill chunk's shape as the addon takes it (see kernels/cuda/prefill_api.h for the layout). */
export interface NativePrefillShape {
  readonly batch: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Query tokens in the chunk. */
  readonly queries: number;
  /** Position of the first query (a multiple of tileSize); keys 0..queryStart+queries-1 are valid. */
  readonly queryStart: number;
  /** Tokens per KV-head block of the cache (the stride). */
  readonly capacity: number;
  /** Query tile size; the kernels take 32. */
  readonly tileSize: number;
  readonly scale: number;
  readonly dtype: 'bf16' | 'f16';
}

/** Device memory owned by a JS object; freed by `free()` or when collected. */
export interface NativeDeviceBuffer {
  readonly bytes: number;
  readonly freed: boolean;
  /** Host -> device copy of the whole view at `offsetBytes`; synchronous. */
  upload(src: ArrayBufferView, offsetBytes?: number): void;
  /** Device -> host copy into the whole view from `offsetBytes`; synchronous. */
  download(dst: ArrayBufferView, offsetBytes?: number): void;
  /** Sets every byte (asynchronous, on the op stream). */
  fill(byte: number): void;
  free(): void;
}

export interface NativeEvent {
  /** Records the event on the op stream. */
  record(): void;
}

export interface NativeGraph {
  /** Replays the captured ops on the op stream. */
  launch(): void;
}

export interface NativeProbe {
  readonly available: boolean;
  readonly reason?: string;
  readonly deviceCount: number;
  readonly runtimeVersion?: number;
  readonly driverVersion?: number;
}

export interface NativeDeviceInfo {
  readonly name: string;
  readonly computeCapability: string;
  readonly multiprocessors: number;
  readonly globalMemoryBytes: number;
  readonly l2Bytes: number;
  readonly runtimeVersion: number;
  readonly driverVersion: number;
}

/** Every op is asynchronous on one stream; `synchronize()` waits and surfaces kernel errors. */
export interface NativeBinding {
  readonly DeviceBuffer: new (bytes: number) => NativeDeviceBuffer;
  readonly Event: new () => NativeEvent;
  probe(): NativeProbe;
  deviceInfo(): NativeDeviceInfo;
  synchronize(): void;
  workspaceBytes(shape: NativeDecodeShape, topk?: number): number;
  denseDecode(
    shape: NativeDecodeShape,
    q: NativeDeviceBuffer,
    k: NativeDeviceBuffer,
    v: NativeDeviceBuffer,
    out: NativeDeviceBuffer,
  ): void;
  denseAnchorDecode(
    shape: NativeDecodeShape,
    q: NativeDeviceBuffer,
    k: NativeDeviceBuffer,
    v: NativeDeviceBuffer,
    out: NativeDeviceBuffer,
    topk: number,
    indices: NativeDeviceBuffer,
  ): void;
  anchorDecode(
    shape: NativeDecodeShape,
    q: NativeDeviceBuffer,
    k: NativeDeviceBuffer,
    v: NativeDeviceBuffer,
    out: NativeDeviceBuffer,
    topk: number,
    indices: NativeDeviceBuffer,
  ): void;
  reuseDecode(
    shape: NativeDecodeShape,
    q: NativeDeviceBuffer,
    k: NativeDeviceBuffer,
    v: NativeDeviceBuffer,
    out: NativeDeviceBuffer,
    topk: number,
    indices: NativeDeviceBuffer,
    selKvHeads: number,
    headMap: Int32Array,
  ): void;
  /** Post-softmax group-pooled scores `[batch, kvHeads, n]` f32, as the anchor computes them. */
  pooledScores(
    shape: NativeDecodeShape,
    q: NativeDeviceBuffer,
    k: NativeDeviceBuffer,
    unused: null,
    pooled: NativeDeviceBuffer,
  ): void;
  /** Workspace bytes the prefill anchors need (statistics + pooled rows, in bounded passes). */
  prefillWorkspaceBytes(shape: NativePrefillShape): number;
  /** Dense causal prefill; `stats` (f32 [batch, heads, queries, 2]) optional. */
  densePrefill(
    shape: NativePrefillShape,
    q: NativeDeviceBuffer,
    k: NativeDeviceBuffer,
    v: NativeDeviceBuffer,
    out: NativeDeviceBuffer,
    stats: NativeDeviceBuffer | null,
  ): void;
  denseAnchorPrefill(
    shape: NativePrefillShape,
    q: NativeDeviceBuffer,
    k: NativeDeviceBuffer,
    v: NativeDeviceBuffer,
    out: NativeDeviceBuffer,
    counts: NativeDeviceBuffer,
    kMax: number,
    indices: NativeDeviceBuffer,
  ): void;
  anchorPrefill(
    shape: NativePrefillShape,
    q: NativeDeviceBuffer,
    k: NativeDeviceBuffer,
    v: NativeDeviceBuffer,
    out: NativeDeviceBuffer,
    counts: NativeDeviceBuffer,
    kMax: number,
    indices: NativeDeviceBuffer,
  ): void;
  reusePrefill(
    shape: NativePrefillShape,
    q: NativeDeviceBuffer,
    k: NativeDeviceBuffer,
    v: NativeDeviceBuffer,
    out: NativeDeviceBuffer,
    counts: NativeDeviceBuffer,
    kMax: number,
    indices: NativeDeviceBuffer,
    selKvHeads: number,
    headMap: Int32Array,
  ): void;
  /** Pooled prefill scores `[batch, kvHeads, tiles, n]` f32, as the anchor computes them. */
  pooledPrefillScores(
    shape: NativePrefillShape,
    q: NativeDeviceBuffer,
    k: NativeDeviceBuffer,
    unused: null,
    pooled: NativeDeviceBuffer,
  ): void;
  /** Fills the buffer with normal(0, stddev) values of `dtype` (device-side hash; deterministic per seed). */
  fillNormal(buffer: NativeDeviceBuffer, dtype: 'f16' | 'bf16' | 'f32', seed: number, stddev: number): void;
  copyDevice(dst: NativeDeviceBuffer, src: NativeDeviceBuffer, bytes?: number): void;
  /** Waits for `end`, then the milliseconds between the two events. */
  elapsedMs(start: NativeEvent, end: NativeEvent): number;
  beginCapture(): void;
  endCapture(): NativeGraph;
}
