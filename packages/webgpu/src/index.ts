/// <reference types="@webgpu/types" />
export { readBuffer, uploadBuffer, WebGPUBackend, type WebGPUBackendOptions } from './backend.js';
export { type BindingKind, KascadeGPU } from './context.js';
export { type DeviceOptions, getGPU, type KascadeDevice, requestKascadeDevice } from './device.js';
export {
  WebGPUFeatureError,
  WebGPULimitError,
  WebGPUNotAvailableError,
  WebGPUOpError,
  WebGPUShapeError,
} from './errors.js';
export { type KernelFamily, WGSL_SOURCES } from './kernels.generated.js';
export {
  createDecodeSlot,
  type DecodeArgs,
  type DecodeKernel,
  type DeviceDecodeSlot,
  decodeSplits,
  encodeDecode,
  FEW_ROWS,
  type LayerRole,
  resolveDecodeKernel,
  TEAM_DEFAULTS,
  type TeamPass,
  type TeamSettings,
  teamSplits,
  teamsLayout,
  view,
} from './ops/decode.js';
export { createPrefillSlot, type DevicePrefillSlot, encodePrefill, type PrefillArgs } from './ops/prefill.js';
export {
  encodeSelect,
  type SelectRow,
  type SelectSchedule,
} from './ops/select.js';
export { encodeCopy, encodeFillRandom } from './ops/util.js';
export { buildShader, type KVDType } from './program.js';
export {
  createDeviceKV,
  type DeviceKV,
  type DeviceKVPart,
  destroyDeviceKV,
  kvBytes,
  packKV,
  sequenceInputs,
} from './tensors.js';
export { timeGPU } from './timing.js';
