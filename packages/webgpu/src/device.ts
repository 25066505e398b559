import { WebGPUNotAvailableError } from './errors.js';

/** What the ops ask the adapter for, beyond the defaults. */
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupsPerDimension',
] as const;

export interface DeviceOptions {
  /** A `GPU` to use (e.g. from the `webgpu` package's `create([])`); default `navigator.gpu`, else Dawn from the `webgpu` package. */
  readonly gpu?: GPU;
  readonly powerPreference?: GPUPowerPreference;
  /** Use the `subgroups` feature when the adapter offers it (default true). */
  readonly subgroups?: boolean;
  /** Request `timestamp-query` when offered (default true). */
  readonly timestamps?: boolean;
}

/** A device with what Kascade's ops learned about it. */
export interface KascadeDevice {
  /** The entry point the device came from; held so Dawn's instance outlives the device. */
  readonly gpu: GPU;
  readonly device: GPUDevice;
  readonly adapterInfo: { vendor: string; architecture: string; description: string; device: string };
  readonly hasSubgroups: boolean;
  /**
   * The adapter's subgroup sizes (`GPUAdapterInfo.subgroupMinSize/MaxSize`), when it has subgroups
   * and says; the team decode kernel needs them.
   */
  readonly subgroupSizes?: { readonly min: number; readonly max: number };
  readonly hasTimestamps: boolean;
  readonly limits: GPUSupportedLimits;
}

interface DawnModule {
  create(options: string[]): GPU;
  globals: object;
}

let dawnGpu: GPU | undefined;

async function loadDawn(): Promise<GPU> {
  if (dawnGpu) return dawnGpu;
  let mod: DawnModule;
  try {
    // A variable specifier so bundlers for the browser leave it alone.
    const name = 'webgpu';
    mod = (await import(/* @vite-ignore */ name)) as DawnModule;
  } catch (e) {
    throw new WebGPUNotAvailableError(
      `No navigator.gpu and the optional peer dependency 'webgpu' (Dawn for Node) could not be loaded: ${String(e)}. ` +
        'Install it with `npm install webgpu`, or pass { gpu } yourself.',
    );
  }
  Object.assign(globalThis, mod.globals);
  dawnGpu = mod.create([]);
  return dawnGpu;
}

/** The `GPU` entry point of this environment: `navigator.gpu` in a browser, Dawn in Node. */
export async function getGPU(gpu?: GPU): Promise<GPU> {
  if (gpu) return gpu;
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  return loadDawn();
}

/**
 * Requests an adapter and a device with the adapter's full storage/workgroup limits, `subgroups`
 * and `timestamp-query` when offered. Throws {@link WebGPUNotAvailableError} when there is none.
 */
export async function requestKascadeDevice(options: DeviceOptions = {}): Promise<KascadeDevice> {
  const gpu = await getGPU(options.gpu);
  const adapter = await gpu.requestAdapter({
    powerPreference: options.powerPreference ?? 'high-performance',
  });
  if (!adapter) {
    throw new WebGPUNotAvailableError(
      'requestAdapter() returned null: no WebGPU adapter (in Node: is a Vulkan driver installed? ' +
        'On Debian, `apt-get install chromium libvulkan1` and VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json give a CPU one)',
    );
  }
  const features: GPUFeatureName[] = [];
  const hasSubgroups = (options.subgroups ?? true) && adapter.features.has('subgroups');
  if (hasSubgroups) features.push('subgroups' as GPUFeatureName);
  const hasTimestamps = (options.timestamps ?? true) && adapter.features.has('timestamp-query');
  if (hasTimestamps) features.push('timestamp-query');
  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  const device = await adapter.requestDevice({
    requiredFeatures: features,
    requiredLimits,
    label: 'kascade',
  });
  const info = adapter.info;
  const sizes = info as unknown as { subgroupMinSize?: unknown; subgroupMaxSize?: unknown };
  const subgroupSizes =
    hasSubgroups && typeof sizes.subgroupMinSize === 'number' && typeof sizes.subgroupMaxSize === 'number'
      ? { min: sizes.subgroupMinSize, max: sizes.subgroupMaxSize }
      : undefined;
  return {
    gpu,
    device,
    adapterInfo: {
      vendor: info?.vendor ?? '',
      architecture: info?.architecture ?? '',
      description: info?.description ?? '',
      device: info?.device ?? '',
    },
    hasSubgroups,
    ...(subgroupSizes ? { subgroupSizes } : {}),
    hasTimestamps,
    limits: device.limits,
  };
}
