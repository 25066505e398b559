import { type BudgetOptions, prefillTileBudget } from '@kascade/core';
import type { KascadeGPU } from '../context.js';
import { WebGPULimitError, WebGPUShapeError } from '../errors.js';
import type { DeviceKV } from '../tensors.js';
import { groupSize, type Pass, packParams, positiveInt, resolveHeadMap } from './common.js';
import { type LayerRole, slotBinding, view } from './decode.js';
import { encodeSelect } from './select.js';

/**
 * The prefill index slot on the device: `indices [batch, kvHeads, tiles, kStride]` u32 and
 * `counts [tiles]` u32 (the rolling budget, the same for every head).
 */
export interface DevicePrefillSlot {
  readonly indices: GPUBuffer;
  /** Where sequence 0's rows start in `indices` (set on the per-part views of a split K/V). */
  readonly byteOffset?: number;
  readonly counts: GPUBuffer;
  readonly batch: number;
  readonly kvHeads: number;
  readonly tiles: number;
  readonly tileSize: number;
  readonly kStride: number;
  /** Host copy of `counts` as the last anchor wrote it. */
  hostCounts: Int32Array;
}

export function createPrefillSlot(
  gpu: KascadeGPU,
  shape: { batch: number; kvHeads: number; tiles: number; tileSize: number; kStride: number },
): DevicePrefillSlot {
  const { batch, kvHeads, tiles, tileSize, kStride } = shape;
  const size = Math.max(16, batch * kvHeads * tiles * kStride * 4);
  gpu.checkBinding('prefill slot', size);
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  return {
    indices: gpu.device.createBuffer({ label: 'kascade:prefill-slot', size, usage }),
    counts: gpu.device.createBuffer({
      label: 'kascade:prefill-slot.counts',
      size: Math.max(16, tiles * 4),
      usage,
    }),
    batch,
    kvHeads,
    tiles,
    tileSize,
    kStride,
    hostCounts: new Int32Array(tiles),
  };
}

export interface PrefillArgs {
  readonly role: LayerRole;
  readonly heads: number;
  /** `[batch, heads, queries, headDim]` f32. */
  readonly q: GPUBuffer | GPUBufferBinding;
  readonly queries: number;
  /** Position of the first query (a multiple of `tileSize`); keys `0 .. queryStart + queries - 1` are valid. */
  readonly queryStart: number;
  readonly tileSize: number;
  readonly kv: DeviceKV;
  /** `[batch, heads, queries, headDim]` f32, written. */
  readonly out: GPUBuffer | GPUBufferBinding;
  readonly slot?: DevicePrefillSlot;
  readonly headMap?: ArrayLike<number>;
  readonly budget?: BudgetOptions;
  readonly scale?: number;
  /** Names this call's host-written scratch apart from other calls in the same submission (internal). */
  readonly scratchTag?: string;
  /** Upper bound on the pooled-score buffer of one batch of tiles (default 256 MiB). */
  readonly poolBytes?: number;
}

const ATTEND_BINDINGS = [
  [0, 'uniform'],
  [1, 'read'],
  [2, 'read'],
  [3, 'read'],
  [4, 'read'],
  [5, 'read'],
  [6, 'write'],
  [7, 'write'],
] as const;
const POOL_BINDINGS = [
  [0, 'uniform'],
  [2, 'read'],
  [3, 'write'],
  [4, 'read'],
  [5, 'read'],
] as const;

/**
 * Encodes one prefill attention op of a layer role into `pass` (tiles of `tileSize` queries):
 * - `dense`: dense causal attention.
 * - `dense-anchor`: dense causal attention, then the tile-pooled Top-k of earlier keys into `slot`.
 * - `anchor`: softmax statistics (K only), the tile-pooled Top-k into `slot`, then sparse attention
 *   over it plus the diagonal tile.
 * - `reuse`: sparse attention over `slot` through `headMap`, plus the diagonal tile.
 */
export function encodePrefill(gpu: KascadeGPU, pass: Pass, a: PrefillArgs): void {
  const { kv } = a;
  if (kv.parts.length > 1) {
    // K/V split by sequence: one pass of the op per part, on views of q, out and the slot.
    const slot = a.slot;
    if (slot && (slot.kvHeads * slot.tiles * slot.kStride * 4) % 256 !== 0) {
      throw new WebGPUShapeError(
        `a split K/V needs each sequence's slot rows 256-byte aligned: use a kStride that is a multiple of 64 (got ${slot.kStride})`,
      );
    }
    if (slot && (slot.batch !== kv.batch || slot.kvHeads !== kv.kvHeads)) {
      throw new WebGPUShapeError(
        `slot is [${slot.batch}, ${slot.kvHeads}], K/V is [${kv.batch}, ${kv.kvHeads}]`,
      );
    }
    const qBytes = a.heads * a.queries * kv.headDim * 4;
    for (const [index, part] of kv.parts.entries()) {
      const partSlot = slot && {
        ...slot,
        batch: part.batch,
        byteOffset: (slot.byteOffset ?? 0) + part.batchStart * slot.kvHeads * slot.tiles * slot.kStride * 4,
      };
      encodePrefill(gpu, pass, {
        ...a,
        kv: { ...kv, k: part.k, v: part.v, batch: part.batch, parts: [{ ...part, batchStart: 0 }] },
        q: view(a.q, part.batchStart * qBytes, part.batch * qBytes),
        out: view(a.out, part.batchStart * qBytes, part.batch * qBytes),
        slot: partSlot,
        scratchTag: `${a.scratchTag ?? ''}.part${index}`,
      });
      if (slot && partSlot) slot.hostCounts = partSlot.hostCounts;
    }
    return;
  }
  encodePrefillPart(gpu, pass, a);
}

function encodePrefillPart(gpu: KascadeGPU, pass: Pass, a: PrefillArgs): void {
  const { kv, heads, role, queries, queryStart, tileSize } = a;
  const { batch, kvHeads, headDim } = kv;
  const group = groupSize(heads, kvHeads);
  positiveInt('queries', queries);
  positiveInt('tileSize', tileSize);
  if (!(Number.isInteger(queryStart) && queryStart >= 0 && queryStart % tileSize === 0)) {
    throw new WebGPUShapeError(
      `queryStart must be a non-negative multiple of tileSize ${tileSize}, got ${queryStart}`,
    );
  }
  const n = queryStart + queries;
  if (n > kv.capacity)
    throw new WebGPUShapeError(`queryStart + queries = ${n} exceeds the K/V capacity ${kv.capacity}`);
  const wgp = group * tileSize;
  const maxInv = gpu.limits.maxComputeInvocationsPerWorkgroup;
  if (wgp > maxInv || wgp > gpu.limits.maxComputeWorkgroupSizeX) {
    throw new WebGPULimitError(
      'maxComputeInvocationsPerWorkgroup',
      wgp,
      maxInv,
      `prefill runs one invocation per (query head of a group, query of a tile): group ${group} x tileSize ${tileSize}`,
    );
  }
  const tiles = Math.ceil(queries / tileSize);
  const scale = a.scale ?? 1 / Math.sqrt(headDim);
  const D4 = headDim / 4;
  const slot = a.slot;
  if (role !== 'dense') {
    if (!slot) throw new WebGPUShapeError(`prefill role '${role}' needs an index slot`);
    if (
      slot.batch !== batch ||
      slot.kvHeads !== kvHeads ||
      slot.tiles !== tiles ||
      slot.tileSize !== tileSize
    ) {
      throw new WebGPUShapeError(
        `slot is [${slot.batch}, ${slot.kvHeads}, ${slot.tiles} tiles of ${slot.tileSize}], ` +
          `the call needs [${batch}, ${kvHeads}, ${tiles} tiles of ${tileSize}]`,
      );
    }
  }
  const headMap = resolveHeadMap(kvHeads, role === 'reuse' ? a.headMap : undefined);
  const storage = gpu.limits.maxComputeWorkgroupStorageSize;
  const BK = Math.max(4, Math.min(32, 2 ** Math.floor(Math.log2(storage / 2 / (2 * D4 * 16)))));
  const base = { HEAD_DIM: headDim, D4, GROUP: group, TILE: tileSize, BK, WGP: wgp, KV: kv.dtype };
  const stats = gpu.scratchBuffer('prefill.stats', batch * heads * queries * 8);

  const attend = (gather: boolean, accumV: boolean, writeStats: boolean) => {
    const defs = { ...base, GATHER: gather, ACCUM_V: accumV, WRITE_STATS: writeStats };
    const p = gpu.pipeline('prefill_attend', 'prefill_attend', defs, ATTEND_BINDINGS);
    const params = gpu.params(
      packParams(
        [
          queries,
          queryStart,
          kv.capacity,
          heads,
          kvHeads,
          slot?.kStride ?? 0,
          tiles,
          0,
          { f32: scale },
          0,
          0,
          0,
        ],
        headMap,
      ),
    );
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(
      0,
      gpu.bindGroup(p, 'kascade:prefill.attend', {
        0: params,
        1: a.q,
        2: kv.k,
        3: kv.v,
        ...(gather
          ? { 4: slotBinding(slot!, batch * kvHeads * tiles * slot!.kStride * 4), 5: slot!.counts }
          : {}),
        ...(accumV ? { 6: a.out } : {}),
        ...(writeStats ? { 7: stats } : {}),
      }),
    );
    pass.dispatchWorkgroups(tiles, kvHeads, batch);
  };

  if (role === 'dense' || role === 'reuse') {
    attend(role === 'reuse', true, false);
    return;
  }

  // Anchors. The rolling budget per tile, the same for every head.
  const counts = new Int32Array(tiles);
  for (let t = 0; t < tiles; t++) counts[t] = prefillTileBudget(queryStart + t * tileSize, a.budget);
  const kMax = counts.reduce((m, c) => Math.max(m, c), 0);
  if (kMax > slot!.kStride)
    throw new WebGPUShapeError(`budget k = ${kMax} exceeds the slot's kStride ${slot!.kStride}`);
  gpu.device.queue.writeBuffer(slot!.counts, 0, counts);
  slot!.hostCounts = counts;

  // Tiles are pooled and selected in batches so the pooled scores stay within one binding.
  const bg = batch * kvHeads;
  const sMax = queryStart + (tiles - 1) * tileSize;
  const poolLimit = Math.min(
    a.poolBytes ?? 256 * 2 ** 20,
    gpu.limits.maxStorageBufferBindingSize,
    gpu.limits.maxBufferSize,
  );
  let perBatch = Math.max(1, Math.floor(poolLimit / (bg * Math.max(1, sMax) * 4)));
  perBatch = Math.min(
    perBatch,
    tiles,
    Math.max(1, Math.floor(Math.min(4096, gpu.limits.maxComputeWorkgroupsPerDimension) / bg)),
  );
  const batches = Math.ceil(tiles / perBatch);
  const rowsPerBatch = bg * perBatch;
  const infoStride = Math.ceil((rowsPerBatch * 16) / 256) * 256;
  const pooled = gpu.scratchBuffer('prefill.pooled', rowsPerBatch * Math.max(1, sMax) * 4);
  const rowInfo = gpu.scratchBuffer(`prefill.rowInfo${a.scratchTag ?? ''}`, batches * infoStride);
  gpu.scratchBuffer('select.hist', rowsPerBatch * 2048 * 4);
  gpu.scratchBuffer('select.state.prefill', rowsPerBatch * 8);
  gpu.scratchBuffer('select.counts.prefill', rowsPerBatch * Math.ceil(Math.max(1, sMax) / 1024) * 8);
  const info = new Uint32Array((batches * infoStride) / 4);
  for (let bi = 0; bi < batches; bi++) {
    const t0 = bi * perBatch;
    const tn = Math.min(perBatch, tiles - t0);
    const stride = queryStart + (t0 + tn - 1) * tileSize;
    for (let r = 0; r < bg; r++) {
      for (let tb = 0; tb < tn; tb++) {
        const t = t0 + tb;
        const row = r * tn + tb;
        info.set(
          [row * stride, queryStart + t * tileSize, counts[t], (r * tiles + t) * slot!.kStride],
          (infoStride / 4) * bi + row * 4,
        );
      }
    }
  }
  gpu.device.queue.writeBuffer(rowInfo, 0, info);

  attend(false, role === 'dense-anchor', true);
  const pp = gpu.pipeline('pool', 'pool_prefill', { ...base, WG: 256, RB: 16 }, POOL_BINDINGS);
  for (let bi = 0; bi < batches; bi++) {
    const t0 = bi * perBatch;
    const tn = Math.min(perBatch, tiles - t0);
    const stride = queryStart + (t0 + tn - 1) * tileSize;
    if (stride === 0) continue; // only the first tile, which selects nothing
    pass.setPipeline(pp.pipeline);
    pass.setBindGroup(
      0,
      gpu.bindGroup(pp, 'kascade:prefill.pool', {
        0: gpu.params(
          packParams([
            stride,
            heads,
            kvHeads,
            kv.capacity,
            0,
            stride,
            queries,
            queryStart,
            t0,
            tn,
            { f32: scale },
            0,
          ]),
        ),
        2: stats,
        3: pooled,
        4: a.q,
        5: kv.k,
      }),
    );
    pass.dispatchWorkgroups(Math.ceil(stride / 256), tn, bg);
    encodeSelect(gpu, pass, {
      vals: pooled,
      rowInfo: { buffer: rowInfo, offset: bi * infoStride, size: bg * tn * 16 },
      rows: bg * tn,
      maxLength: stride,
      out: slotBinding(slot!, batch * kvHeads * tiles * slot!.kStride * 4),
      tag: 'prefill',
    });
  }
  if (role === 'anchor') attend(true, true, false);
}
