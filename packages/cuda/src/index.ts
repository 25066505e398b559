/**
 * `@kascade/cuda`: Kascade's decode attention on NVIDIA Hopper GPUs, through a Node addon over
 * the kernels in `kernels/cuda/`. Importing never throws; {@link isAvailable} says whether a
 * device can be used and {@link unavailableReason} why not.
 */
import type { NativeDeviceInfo } from './binding.types.js';
import { loadNative } from './load.js';
import { requireNative } from './tensor.js';

export { createCudaDecodeBackend, uploadDecodeInputs } from './backend.js';
export type {
  NativeBinding,
  NativeDecodeShape,
  NativeDeviceInfo,
  NativeGraph,
  NativePrefillShape,
} from './binding.types.js';
export { CudaArgumentError, CudaUnavailableError, CudaUnsupportedError } from './errors.js';
export {
  type AttentionDType,
  anchorDecode,
  captureGraph,
  copyDevice,
  DECODE_VARIANT_MAX,
  DEFAULT_DECODE_VARIANTS,
  type DecodeOp,
  type DecodeVariantRule,
  type DeviceDecodeBatch,
  type DeviceSelectedOutput,
  type DeviceSelection,
  decodeShape,
  defaultDecodeVariant,
  denseAnchorDecode,
  denseDecode,
  fillNormal,
  pooledScores,
  reuseDecode,
  synchronize,
  timeDevice,
  uploadSelection,
} from './ops.js';
export {
  anchorPrefill,
  DEFAULT_PREFILL_KERNELS,
  type DevicePrefillChunk,
  type DevicePrefillSelectedOutput,
  type DevicePrefillSelection,
  denseAnchorPrefill,
  densePrefill,
  PREFILL_DENSE_VARIANTS,
  PREFILL_KERNEL_PRESETS,
  PREFILL_KERNEL_VARIANTS,
  PREFILL_POOL_VARIANTS,
  PREFILL_SPARSE_VARIANTS,
  PREFILL_TILE_SIZE,
  type PrefillDenseVariant,
  type PrefillKernelSelection,
  type PrefillKernelVariant,
  type PrefillPoolVariant,
  type PrefillSparseVariant,
  prefillCounts,
  prefillKernelPreset,
  prefillKernels,
  prefillPooledScores,
  prefillSelectionSlot,
  prefillShape,
  prefillTiles,
  prefillWorkspaceBytes,
  reusePrefill,
  setPrefillKernels,
  uploadPrefillSelection,
} from './prefill.js';
export { type DeviceDType, DeviceTensor, type HostArrayOf } from './tensor.js';

/** True when the addon is built, loads, and sees a CUDA device. */
export function isAvailable(): boolean {
  const r = loadNative();
  return r.binding !== null && r.reason === undefined;
}

/** Why CUDA is off (no build, no toolkit at build time, no driver, no device); undefined when available. */
export function unavailableReason(): string | undefined {
  return loadNative().reason;
}

/** Whether the addon binary itself loaded (it can load on a machine without a GPU). */
export function isAddonLoaded(): boolean {
  return loadNative().binding !== null;
}

/** The current device: name, compute capability, SMs, memory, CUDA runtime and driver versions. */
export function deviceInfo(): NativeDeviceInfo {
  return requireNative().deviceInfo();
}
