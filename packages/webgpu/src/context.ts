import { type DeviceOptions, type KascadeDevice, requestKascadeDevice } from './device.js';
import { WebGPULimitError, WebGPUOpError } from './errors.js';
import type { KernelFamily } from './kernels.generated.js';
import { buildShader, cacheKey, type Defines } from './program.js';

/** How a shader binding is used: a uniform, a read-only or a writable storage buffer. */
export type BindingKind = 'uniform' | 'read' | 'write';

interface CachedPipeline {
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  readonly bindings: readonly (readonly [number, BindingKind])[];
}

const PARAM_SLOT = 256;
const PARAM_PAGE = 64 * 1024;

/**
 * One WebGPU device and what Kascade keeps on it: compiled pipelines (cached and labelled by op),
 * a uniform arena for per-dispatch parameters, and named scratch buffers that only grow, so a
 * long generation does not allocate per token.
 */
export class KascadeGPU {
  readonly device: GPUDevice;
  readonly info: KascadeDevice;
  private readonly pipelines = new Map<string, CachedPipeline>();
  private readonly scratch = new Map<string, GPUBuffer>();
  private readonly paramPages: GPUBuffer[] = [];
  private readonly paramHost = new Uint8Array(PARAM_PAGE);
  private paramPage = 0;
  private paramUsed = 0;
  private readonly dummies = new Map<string, GPUBuffer>();

  /**
   * The largest storage binding ops will use: the device's `maxStorageBufferBindingSize` and
   * `maxBufferSize`, or less when set (tests use it to exercise split K/V on a small device).
   */
  maxBindingBytes: number;

  constructor(info: KascadeDevice) {
    this.info = info;
    this.maxBindingBytes = Math.min(
      info.device.limits.maxStorageBufferBindingSize,
      info.device.limits.maxBufferSize,
    );
    this.device = info.device;
  }

  /** Opens a device (see {@link requestKascadeDevice}). */
  static async create(options: DeviceOptions = {}): Promise<KascadeGPU> {
    return new KascadeGPU(await requestKascadeDevice(options));
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /** A compiled pipeline for `family:entry` with these defines; compiled once, then cached. */
  pipeline(
    family: KernelFamily,
    entry: string,
    defines: Defines,
    bindings: readonly (readonly [number, BindingKind])[],
  ): CachedPipeline {
    const key = cacheKey(family, entry, defines);
    const hit = this.pipelines.get(key);
    if (hit) return hit;
    const label = `kascade:${key}`;
    const module = this.device.createShaderModule({ label, code: buildShader(family, defines) });
    const layout = this.device.createBindGroupLayout({
      label,
      entries: bindings.map(([binding, kind]) => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: kind === 'uniform' ? 'uniform' : kind === 'read' ? 'read-only-storage' : 'storage' },
      })),
    });
    const pipeline = this.device.createComputePipeline({
      label,
      layout: this.device.createPipelineLayout({ label, bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: entry },
    });
    const cached = { pipeline, layout, bindings };
    this.pipelines.set(key, cached);
    return cached;
  }

  /** Number of compiled pipelines (for tests of the cache). */
  get pipelineCount(): number {
    return this.pipelines.size;
  }

  /** Cache keys (`family:entry:defines`) of the compiled pipelines (for tests of which kernel ran). */
  get pipelineKeys(): string[] {
    return [...this.pipelines.keys()];
  }

  /**
   * Reserves a 256-byte uniform slot for one dispatch (each dispatch of a submission gets its own);
   * uploaded by {@link flushParams}. Pages of 64 KiB are allocated once and reused.
   */
  params(data: ArrayBuffer): GPUBufferBinding {
    if (data.byteLength > PARAM_SLOT) throw new RangeError('params larger than one slot');
    if (this.paramUsed + PARAM_SLOT > PARAM_PAGE) this.writeParamPage();
    while (this.paramPages.length <= this.paramPage) {
      this.paramPages.push(
        this.device.createBuffer({
          label: `kascade:params${this.paramPages.length}`,
          size: PARAM_PAGE,
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        }),
      );
    }
    const offset = this.paramUsed;
    this.paramHost.set(new Uint8Array(data), offset);
    this.paramUsed += PARAM_SLOT;
    return { buffer: this.paramPages[this.paramPage], offset, size: PARAM_SLOT };
  }

  private writeParamPage(): void {
    if (this.paramUsed > 0) {
      this.device.queue.writeBuffer(this.paramPages[this.paramPage], 0, this.paramHost, 0, this.paramUsed);
    }
    this.paramPage++;
    this.paramUsed = 0;
  }

  /** Uploads the parameter slots reserved since the last flush; call right before `queue.submit`. */
  flushParams(): void {
    this.writeParamPage();
    this.paramPage = 0;
  }

  /** Forgets parameter slots reserved for a submission that was abandoned. */
  resetParams(): void {
    this.paramPage = 0;
    this.paramUsed = 0;
  }

  /** A named scratch buffer of at least `size` bytes; reallocated only when it must grow. */
  scratchBuffer(name: string, size: number, extraUsage = 0): GPUBuffer {
    const need = Math.max(16, Math.ceil(size / 16) * 16);
    const cur = this.scratch.get(name);
    if (cur && cur.size >= need) return cur;
    this.checkBinding(`scratch ${name}`, need);
    cur?.destroy();
    const buf = this.device.createBuffer({
      label: `kascade:${name}`,
      size: need,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | extraUsage,
    });
    this.scratch.set(name, buf);
    return buf;
  }

  /** Throws {@link WebGPULimitError} when one storage binding of `bytes` exceeds the device's limits. */
  checkBinding(what: string, bytes: number): void {
    const lim = this.device.limits;
    if (bytes > this.maxBindingBytes) {
      const name =
        this.maxBindingBytes < Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize)
          ? 'maxBindingBytes (set on KascadeGPU)'
          : lim.maxStorageBufferBindingSize <= lim.maxBufferSize
            ? 'maxStorageBufferBindingSize'
            : 'maxBufferSize';
      throw new WebGPULimitError(
        name,
        bytes,
        this.maxBindingBytes,
        `${what} does not fit one storage binding`,
      );
    }
  }

  /** A small placeholder for a binding an op variant does not use (one per binding: writable ones may not alias). */
  private dummy(kind: BindingKind, binding: number): GPUBuffer {
    const key = `${kind}${binding}`;
    let b = this.dummies.get(key);
    if (!b) {
      b = this.device.createBuffer({
        label: `kascade:unused.${key}`,
        size: 256,
        usage: kind === 'uniform' ? GPUBufferUsage.UNIFORM : GPUBufferUsage.STORAGE,
      });
      this.dummies.set(key, b);
    }
    return b;
  }

  /** A bind group for a cached pipeline; missing entries get a small dummy buffer. */
  bindGroup(
    p: CachedPipeline,
    label: string,
    buffers: Record<number, GPUBufferBinding | GPUBuffer | undefined>,
  ): GPUBindGroup {
    return this.device.createBindGroup({
      label,
      layout: p.layout,
      entries: p.bindings.map(([binding, kind]) => {
        const b = buffers[binding] ?? this.dummy(kind, binding);
        const resource: GPUBufferBinding = 'buffer' in b ? (b as GPUBufferBinding) : { buffer: b };
        return { binding, resource };
      }),
    });
  }

  /** Runs `encode` inside an error scope; GPU validation/OOM errors come back as {@link WebGPUOpError} naming `op`. */
  async checked<T>(op: string, fn: () => T | Promise<T>): Promise<T> {
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    let result: T;
    try {
      result = await fn();
    } finally {
      const v = await this.device.popErrorScope();
      const o = await this.device.popErrorScope();
      const err = v ?? o;
      if (err) {
        this.resetParams();
        // biome-ignore lint/correctness/noUnsafeFinally: a GPU error outranks the result
        throw new WebGPUOpError(`${op}: ${err.message}`);
      }
    }
    return result;
  }

  destroy(): void {
    for (const b of this.scratch.values()) b.destroy();
    this.scratch.clear();
    for (const b of this.paramPages) b.destroy();
    for (const b of this.dummies.values()) b.destroy();
    this.device.destroy();
  }
}
