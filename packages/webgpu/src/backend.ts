import {
  type AttentionBackend,
  type BudgetOptions,
  type DecodeInputs,
  type DecodeSelection,
  type HeadMap,
  type PrefillInputs,
  type PrefillSelection,
  type SelectedOutput,
  topkBudget,
} from '@kascade/core';
import { KascadeGPU } from './context.js';
import type { DeviceOptions } from './device.js';
import { WebGPUShapeError } from './errors.js';
import {
  createDecodeSlot,
  type DecodeKernel,
  type DeviceDecodeSlot,
  encodeDecode,
  type LayerRole,
} from './ops/decode.js';
import { createPrefillSlot, type DevicePrefillSlot, encodePrefill } from './ops/prefill.js';
import type { KVDType } from './program.js';
import { checkHeadDim, createDeviceKV, type DeviceKV, destroyDeviceKV, packKV } from './tensors.js';

export interface WebGPUBackendOptions extends DeviceOptions {
  /** How K/V are stored on the device (default f32; f16 is packed two per u32). */
  readonly kvDType?: KVDType;
  /** Share a device (and its pipeline cache) with other backends instead of opening one. */
  readonly context?: KascadeGPU;
  /** The decode kernel (default: `teams` where the device can run it, else `chunked`). */
  readonly decodeKernel?: DecodeKernel;
}

/** Uploads host data into a new storage buffer. */
export function uploadBuffer(
  gpu: KascadeGPU,
  data: ArrayBufferView,
  label: string,
  extraUsage = 0,
): GPUBuffer {
  const size = Math.max(16, Math.ceil(data.byteLength / 4) * 4);
  gpu.checkBinding(label, size);
  const buf = gpu.device.createBuffer({
    label: `kascade:${label}`,
    size,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage,
  });
  gpu.device.queue.writeBuffer(buf, 0, data.buffer, data.byteOffset, data.byteLength);
  return buf;
}

/** Reads `bytes` of a buffer back to the host. */
export async function readBuffer(
  gpu: KascadeGPU,
  buf: GPUBuffer,
  bytes: number,
  offset = 0,
): Promise<ArrayBuffer> {
  const size = Math.ceil(bytes / 4) * 4;
  const staging = gpu.device.createBuffer({
    label: 'kascade:readback',
    size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = gpu.device.createCommandEncoder({ label: 'kascade:readback' });
  enc.copyBufferToBuffer(buf, offset, staging, 0, size);
  gpu.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = staging.getMappedRange().slice(0, bytes);
  staging.unmap();
  staging.destroy();
  return out;
}

const NAN_POISON = Number.NaN;

/**
 * The host-array form of the WebGPU ops (`AttentionBackend`): uploads one sequence's inputs, runs
 * the op on the GPU and reads the result back. For tests and small tools; an engine keeps tensors
 * on the device and calls {@link encodeDecode} / {@link encodePrefill} directly.
 */
export class WebGPUBackend implements AttentionBackend {
  readonly name = 'webgpu';
  readonly kvDType: KVDType;
  readonly decodeKernel: DecodeKernel | undefined;

  private constructor(
    readonly gpu: KascadeGPU,
    kvDType: KVDType,
    private readonly ownsDevice: boolean,
    decodeKernel?: DecodeKernel,
  ) {
    this.kvDType = kvDType;
    this.decodeKernel = decodeKernel;
  }

  static async create(options: WebGPUBackendOptions = {}): Promise<WebGPUBackend> {
    const owns = !options.context;
    const gpu = options.context ?? (await KascadeGPU.create(options));
    return new WebGPUBackend(gpu, options.kvDType ?? 'f32', owns, options.decodeKernel);
  }

  /** Releases the device if this backend opened it. */
  destroy(): void {
    if (this.ownsDevice) this.gpu.destroy();
  }

  private uploadKV(inputs: DecodeInputs | PrefillInputs): DeviceKV {
    checkHeadDim(inputs.headDim);
    const capacity = inputs.capacity ?? inputs.n;
    const expected = inputs.kvHeads * capacity * inputs.headDim;
    if (inputs.k.length !== expected || inputs.v.length !== expected) {
      throw new WebGPUShapeError(`k and v must have kvHeads * capacity * headDim = ${expected} elements`);
    }
    const kv = createDeviceKV(this.gpu, {
      batch: 1,
      kvHeads: inputs.kvHeads,
      capacity,
      headDim: inputs.headDim,
      dtype: this.kvDType,
    });
    const k = packKV(inputs.k, this.kvDType);
    const v = packKV(inputs.v, this.kvDType);
    this.gpu.device.queue.writeBuffer(kv.k, 0, k.buffer, k.byteOffset, k.byteLength);
    this.gpu.device.queue.writeBuffer(kv.v, 0, v.buffer, v.byteOffset, v.byteLength);
    return kv;
  }

  private outputBuffer(elements: number): GPUBuffer {
    const poison = new Float32Array(elements).fill(NAN_POISON);
    return uploadBuffer(this.gpu, poison, 'out');
  }

  private async decode(
    role: LayerRole,
    inputs: DecodeInputs,
    opts: { budget?: BudgetOptions; selection?: DecodeSelection; headMap?: HeadMap },
  ): Promise<SelectedOutput<DecodeSelection>> {
    const { heads, kvHeads, headDim, n } = inputs;
    if (inputs.q.length !== heads * headDim)
      throw new WebGPUShapeError(`q must have heads * headDim = ${heads * headDim} elements`);
    const gpu = this.gpu;
    // Everything allocated below is freed in `finally`, also when a later check throws.
    let ownedKv: DeviceKV | undefined;
    let ownedQ: GPUBuffer | undefined;
    let ownedOut: GPUBuffer | undefined;
    let slot: DeviceDecodeSlot | undefined;
    try {
      const kv = this.uploadKV(inputs);
      ownedKv = kv;
      const q = uploadBuffer(gpu, Float32Array.from(inputs.q), 'q');
      ownedQ = q;
      const out = this.outputBuffer(heads * headDim);
      ownedOut = out;
      if (role === 'reuse') {
        const sel = opts.selection!;
        validateDecodeSelection(sel, kvHeads, n);
        slot = createDecodeSlot(gpu, 1, kvHeads, sel.k);
        gpu.device.queue.writeBuffer(slot.indices, 0, Uint32Array.from(sel.indices));
        slot.k = sel.k;
      } else if (role !== 'dense') {
        const k = topkBudget(n, opts.budget);
        slot = createDecodeSlot(gpu, 1, kvHeads, k);
        gpu.device.queue.writeBuffer(slot.indices, 0, new Uint32Array(kvHeads * k).fill(0xffffffff));
      }
      await gpu.checked(`decode ${role}`, async () => {
        const enc = gpu.device.createCommandEncoder({ label: `kascade:decode.${role}` });
        const pass = enc.beginComputePass({ label: `kascade:decode.${role}` });
        encodeDecode(gpu, pass, {
          role,
          heads,
          q,
          kv,
          n,
          out,
          slot,
          headMap: opts.headMap,
          budget: opts.budget,
          scale: inputs.scale,
          ...(this.decodeKernel ? { kernel: this.decodeKernel } : {}),
        });
        pass.end();
        gpu.flushParams();
        gpu.device.queue.submit([enc.finish()]);
        await gpu.device.queue.onSubmittedWorkDone();
      });
      const o = new Float32Array(await readBuffer(gpu, out, heads * headDim * 4));
      let selection: DecodeSelection = { kvHeads, k: 0, indices: new Int32Array(0) };
      if (slot && role !== 'reuse') {
        const idx = new Int32Array(await readBuffer(gpu, slot.indices, kvHeads * slot.k * 4));
        selection = { kvHeads, k: slot.k, indices: idx };
      }
      return { out: Float64Array.from(o), selection };
    } finally {
      gpu.resetParams();
      if (ownedKv) destroyDeviceKV(ownedKv);
      for (const b of [ownedQ, ownedOut, slot?.indices]) b?.destroy();
    }
  }

  private async prefill(
    role: LayerRole,
    inputs: PrefillInputs,
    opts: { budget?: BudgetOptions; selection?: PrefillSelection; headMap?: HeadMap },
  ): Promise<SelectedOutput<PrefillSelection>> {
    const { heads, kvHeads, headDim, queries, queryStart, tileSize } = inputs;
    if (inputs.q.length !== heads * queries * headDim) {
      throw new WebGPUShapeError(
        `q must have heads * queries * headDim = ${heads * queries * headDim} elements`,
      );
    }
    if (inputs.n !== queryStart + queries) {
      throw new WebGPUShapeError(`n must be queryStart + queries = ${queryStart + queries}, got ${inputs.n}`);
    }
    const gpu = this.gpu;
    const tiles = Math.ceil(queries / tileSize);
    // Everything allocated below is freed in `finally`, also when a later check throws.
    let ownedKv: DeviceKV | undefined;
    let ownedQ: GPUBuffer | undefined;
    let ownedOut: GPUBuffer | undefined;
    let slot: DevicePrefillSlot | undefined;
    try {
      const kv = this.uploadKV(inputs);
      ownedKv = kv;
      const q = uploadBuffer(gpu, Float32Array.from(inputs.q), 'q');
      ownedQ = q;
      const out = this.outputBuffer(heads * queries * headDim);
      ownedOut = out;
      if (role === 'reuse') {
        const sel = opts.selection!;
        validatePrefillSelection(sel, kvHeads, tiles, tileSize, queryStart);
        slot = createPrefillSlot(gpu, { batch: 1, kvHeads, tiles, tileSize, kStride: sel.kMax });
        if (sel.indices.length > 0)
          gpu.device.queue.writeBuffer(slot.indices, 0, Uint32Array.from(sel.indices));
        gpu.device.queue.writeBuffer(slot.counts, 0, Uint32Array.from(sel.counts));
      } else if (role !== 'dense') {
        let kMax = 0;
        for (let t = 0; t < tiles; t++)
          kMax = Math.max(kMax, topkBudget(queryStart + t * tileSize, opts.budget));
        slot = createPrefillSlot(gpu, { batch: 1, kvHeads, tiles, tileSize, kStride: Math.max(1, kMax) });
        gpu.device.queue.writeBuffer(
          slot.indices,
          0,
          new Uint32Array(kvHeads * tiles * slot.kStride).fill(0xffffffff),
        );
      }
      await gpu.checked(`prefill ${role}`, async () => {
        const enc = gpu.device.createCommandEncoder({ label: `kascade:prefill.${role}` });
        const pass = enc.beginComputePass({ label: `kascade:prefill.${role}` });
        encodePrefill(gpu, pass, {
          role,
          heads,
          q,
          queries,
          queryStart,
          tileSize,
          kv,
          out,
          slot,
          headMap: opts.headMap,
          budget: opts.budget,
          scale: inputs.scale,
        });
        pass.end();
        gpu.flushParams();
        gpu.device.queue.submit([enc.finish()]);
        await gpu.device.queue.onSubmittedWorkDone();
      });
      const o = new Float32Array(await readBuffer(gpu, out, heads * queries * headDim * 4));
      let selection: PrefillSelection = {
        kvHeads,
        tiles,
        tileSize,
        kMax: 0,
        counts: new Int32Array(tiles),
        indices: new Int32Array(0),
      };
      if (slot && role !== 'reuse') {
        const idx = new Int32Array(await readBuffer(gpu, slot.indices, kvHeads * tiles * slot.kStride * 4));
        selection = {
          kvHeads,
          tiles,
          tileSize,
          kMax: slot.kStride,
          counts: slot.hostCounts.slice(),
          indices: idx,
        };
      }
      return { out: Float64Array.from(o), selection };
    } finally {
      gpu.resetParams();
      if (ownedKv) destroyDeviceKV(ownedKv);
      for (const b of [ownedQ, ownedOut, slot?.indices, slot?.counts]) b?.destroy();
    }
  }

  async denseDecode(inputs: DecodeInputs): Promise<Float64Array> {
    return (await this.decode('dense', inputs, {})).out;
  }
  denseAnchorDecode(inputs: DecodeInputs, budget: BudgetOptions): Promise<SelectedOutput<DecodeSelection>> {
    return this.decode('dense-anchor', inputs, { budget });
  }
  anchorDecode(inputs: DecodeInputs, budget: BudgetOptions): Promise<SelectedOutput<DecodeSelection>> {
    return this.decode('anchor', inputs, { budget });
  }
  async reuseDecode(
    inputs: DecodeInputs,
    selection: DecodeSelection,
    headMap: HeadMap,
  ): Promise<Float64Array> {
    return (await this.decode('reuse', inputs, { selection, headMap })).out;
  }
  async densePrefill(inputs: PrefillInputs): Promise<Float64Array> {
    return (await this.prefill('dense', inputs, {})).out;
  }
  denseAnchorPrefill(
    inputs: PrefillInputs,
    budget: BudgetOptions,
  ): Promise<SelectedOutput<PrefillSelection>> {
    return this.prefill('dense-anchor', inputs, { budget });
  }
  anchorPrefill(inputs: PrefillInputs, budget: BudgetOptions): Promise<SelectedOutput<PrefillSelection>> {
    return this.prefill('anchor', inputs, { budget });
  }
  async reusePrefill(
    inputs: PrefillInputs,
    selection: PrefillSelection,
    headMap: HeadMap,
  ): Promise<Float64Array> {
    return (await this.prefill('reuse', inputs, { selection, headMap })).out;
  }
}

function validateDecodeSelection(sel: DecodeSelection, kvHeads: number, n: number): void {
  if (sel.kvHeads !== kvHeads || sel.indices.length !== kvHeads * sel.k || sel.k < 1) {
    throw new WebGPUShapeError(`selection must be [kvHeads = ${kvHeads}, k >= 1] indices`);
  }
  for (const x of sel.indices) {
    if (!(x >= 0 && x < n)) throw new WebGPUShapeError(`selection index ${x} is outside [0, ${n})`);
  }
}

function validatePrefillSelection(
  sel: PrefillSelection,
  kvHeads: number,
  tiles: number,
  tileSize: number,
  queryStart: number,
): void {
  if (sel.kvHeads !== kvHeads || sel.tiles !== tiles || sel.tileSize !== tileSize) {
    throw new WebGPUShapeError(
      `selection must be [kvHeads = ${kvHeads}, tiles = ${tiles}] of tileSize ${tileSize}`,
    );
  }
  if (sel.indices.length !== kvHeads * tiles * sel.kMax || sel.counts.length !== tiles) {
    throw new WebGPUShapeError('selection indices must be [kvHeads, tiles, kMax] and counts [tiles]');
  }
  for (let t = 0; t < tiles; t++) {
    const s = queryStart + t * tileSize;
    const c = sel.counts[t];
    if (!(c >= 0 && c <= sel.kMax && c <= s))
      throw new WebGPUShapeError(`selection counts[${t}] = ${c} is not in [0, min(kMax, ${s})]`);
    for (let j = 0; j < kvHeads; j++) {
      for (let i = 0; i < c; i++) {
        const x = sel.indices[(j * tiles + t) * sel.kMax + i];
        if (!(x >= 0 && x < s))
          throw new WebGPUShapeError(`selection index ${x} of tile ${t} is not an earlier key (< ${s})`);
      }
    }
  }
}
