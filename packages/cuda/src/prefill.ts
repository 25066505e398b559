/**
 * Prefill ops on the device (kernels/cuda/prefill_*.cu): dense causal attention, layer-0 anchor,
 * anchor (tile-pooled post-softmax Top-k with the rolling budget, then sparse tile attention) and
 * reuse (sparse tile attention through a head map). Written and compiled; NOT yet run on a GPU
 * (see the README's "Prefill (untested on GPU yet)" section).
 */
import { type BudgetOptions, prefillTileBudget } from '@kascade/core';
import type { NativePrefillShape } from './binding.types.js';
import { CudaArgumentError } from './errors.js';
import { type AttentionDType, checkDTypes, checkKV } from './ops.js';
import { DeviceTensor, requireNative } from './tensor.js';

/** The query tile the prefill kernels are built for. */
export const PREFILL_TILE_SIZE = 32;

/**
 * One prefill chunk of a batch on the device, one layer.
 * - `q [batch, heads, queries, headDim]`: query `i` sits at position `queryStart + i`;
 * - `k`, `v` `[batch, kvHeads, capacity, headDim]`: keys `0 .. queryStart + queries - 1` valid
 *   (the chunk's own keys already written).
 */
export interface DevicePrefillChunk<D extends AttentionDType = AttentionDType> {
  readonly q: DeviceTensor<D>;
  readonly k: DeviceTensor<D>;
  readonly v: DeviceTensor<D>;
  /** Position of the first query, a multiple of `tileSize` (default 0). */
  readonly queryStart?: number;
  /** Query tile size `T`; the kernels take 32 (the default). */
  readonly tileSize?: number;
  /** Softmax scale; defaults to `1 / sqrt(headDim)`. */
  readonly scale?: number;
}

/**
 * The prefill index slot on the device, the layout of core's `PrefillSelection`:
 * `indices [batch, kvHeads, tiles, kMax]` int32; tile `t` uses its first `counts[t]` entries
 * (order free), the anchors write -1 in the others. `counts` is kept on the host and the device.
 */
export interface DevicePrefillSelection {
  readonly kvHeads: number;
  readonly tiles: number;
  readonly tileSize: number;
  readonly kMax: number;
  readonly counts: Int32Array;
  readonly countsDevice: DeviceTensor<'i32'>;
  readonly indices: DeviceTensor<'i32'>;
}

/** Result of the prefill ops that attend and select. */
export interface DevicePrefillSelectedOutput<D extends AttentionDType> {
  readonly out: DeviceTensor<D>;
  readonly selection: DevicePrefillSelection;
}

/** The shape a chunk implies, checked: q and k/v agree, dtype, group size, head dim, tile, capacity. */
export function prefillShape(chunk: DevicePrefillChunk): NativePrefillShape {
  const { q, k, v } = chunk;
  checkDTypes(q, k, v);
  if (q.shape.length !== 4 || k.shape.length !== 4) {
    throw new CudaArgumentError(
      `q must be [batch, heads, queries, headDim] and k, v [batch, kvHeads, capacity, headDim] (got q [${q.shape}], k [${k.shape}])`,
    );
  }
  const [b, heads, queries, headDim] = q.shape as [number, number, number, number];
  const { kvHeads, capacity } = checkKV(q, k, v, b, heads, headDim);
  const tileSize = chunk.tileSize ?? PREFILL_TILE_SIZE;
  if (tileSize !== PREFILL_TILE_SIZE)
    throw new CudaArgumentError(
      `tileSize must be ${PREFILL_TILE_SIZE} (the kernels' query tile), got ${tileSize}`,
    );
  const queryStart = chunk.queryStart ?? 0;
  if (!(Number.isInteger(queryStart) && queryStart >= 0 && queryStart % tileSize === 0)) {
    throw new CudaArgumentError(
      `queryStart must be a non-negative multiple of ${tileSize}, got ${queryStart}`,
    );
  }
  if (queryStart + queries > capacity) {
    throw new CudaArgumentError(
      `queryStart + queries = ${queryStart + queries} exceeds the cache capacity ${capacity}`,
    );
  }
  const scale = chunk.scale ?? 1 / Math.sqrt(headDim);
  if (!(scale > 0 && Number.isFinite(scale)))
    throw new CudaArgumentError(`scale must be positive, got ${scale}`);
  return {
    batch: b,
    heads,
    kvHeads,
    headDim,
    queries,
    queryStart,
    capacity,
    tileSize,
    scale,
    dtype: q.dtype,
  };
}

/** Query tiles of a chunk. */
export function prefillTiles(shape: { queries: number; tileSize: number }): number {
  return Math.ceil(shape.queries / shape.tileSize);
}

/** The rolling budget per tile, `counts[t] = prefillTileBudget(queryStart + t * T)`, and `kMax` (at least 1). */
export function prefillCounts(
  shape: { queries: number; queryStart: number; tileSize: number },
  budget: BudgetOptions = {},
): { counts: Int32Array; kMax: number } {
  const tiles = prefillTiles(shape);
  const counts = new Int32Array(tiles);
  let kMax = 1;
  for (let t = 0; t < tiles; t++) {
    counts[t] = prefillTileBudget(shape.queryStart + t * shape.tileSize, budget);
    kMax = Math.max(kMax, counts[t] as number);
  }
  return { counts, kMax };
}

function outputFor<D extends AttentionDType>(
  chunk: DevicePrefillChunk<D>,
  out?: DeviceTensor<D>,
): DeviceTensor<D> {
  if (!out) return DeviceTensor.empty(chunk.q.dtype, chunk.q.shape);
  if (out.dtype !== chunk.q.dtype || out.shape.join() !== chunk.q.shape.join()) {
    throw new CudaArgumentError(
      `out must be ${chunk.q.dtype} [${chunk.q.shape}], got ${out.dtype} [${out.shape}]`,
    );
  }
  return out;
}

/** A fresh selection slot for a chunk and budget (counts uploaded; indices uninitialised). */
export function prefillSelectionSlot(
  shape: NativePrefillShape,
  budget: BudgetOptions = {},
): DevicePrefillSelection {
  const { counts, kMax } = prefillCounts(shape, budget);
  const tiles = counts.length;
  return {
    kvHeads: shape.kvHeads,
    tiles,
    tileSize: shape.tileSize,
    kMax,
    counts,
    countsDevice: DeviceTensor.fromHost('i32', [tiles], counts),
    indices: DeviceTensor.empty('i32', [shape.batch, shape.kvHeads, tiles, kMax]),
  };
}

function checkSlot(shape: NativePrefillShape, sel: DevicePrefillSelection, rows: number, what: string): void {
  const tiles = prefillTiles(shape);
  if (sel.tiles !== tiles || sel.tileSize !== shape.tileSize || sel.counts.length !== tiles) {
    throw new CudaArgumentError(
      `${what}: selection has ${sel.tiles} tiles of ${sel.tileSize}, the chunk needs ${tiles} of ${shape.tileSize}`,
    );
  }
  if (sel.kvHeads !== rows || sel.indices.size !== shape.batch * rows * tiles * sel.kMax) {
    throw new CudaArgumentError(
      `${what}: selection indices hold [${sel.indices.shape}], expected [${shape.batch}, ${rows}, ${tiles}, ${sel.kMax}]`,
    );
  }
  if (sel.countsDevice.size !== tiles)
    throw new CudaArgumentError(`${what}: countsDevice must hold ${tiles} entries`);
  for (let t = 0; t < tiles; t++) {
    const c = sel.counts[t] as number;
    const s = shape.queryStart + t * shape.tileSize;
    if (!(c >= 0 && c <= Math.min(s, sel.kMax)))
      throw new CudaArgumentError(
        `${what}: counts[${t}] = ${c} is outside 0..min(s = ${s}, kMax = ${sel.kMax})`,
      );
  }
}

/**
 * Dense causal prefill attention (FlashAttention-2 style on mma.sync). Asynchronous; returns
 * `out [batch, heads, queries, headDim]`. With `stats` (f32 `[batch, heads, queries, 2]`) it
 * also writes each row's softmax max (log2 domain) and sum.
 */
export function densePrefill<D extends AttentionDType>(
  chunk: DevicePrefillChunk<D>,
  out?: DeviceTensor<D>,
  stats?: DeviceTensor<'f32'>,
): DeviceTensor<D> {
  const shape = prefillShape(chunk);
  const o = outputFor(chunk, out);
  if (stats && stats.size !== shape.batch * shape.heads * shape.queries * 2) {
    throw new CudaArgumentError(`stats must be f32 [${shape.batch}, ${shape.heads}, ${shape.queries}, 2]`);
  }
  requireNative().densePrefill(
    shape,
    chunk.q.buffer,
    chunk.k.buffer,
    chunk.v.buffer,
    o.buffer,
    stats ? stats.buffer : null,
  );
  return o;
}

function anchorOp<D extends AttentionDType>(
  layer0: boolean,
  chunk: DevicePrefillChunk<D>,
  budget: BudgetOptions,
  into: { out?: DeviceTensor<D>; selection?: DevicePrefillSelection },
): DevicePrefillSelectedOutput<D> {
  const shape = prefillShape(chunk);
  const o = outputFor(chunk, into.out);
  const sel = into.selection ?? prefillSelectionSlot(shape, budget);
  checkSlot(shape, sel, shape.kvHeads, layer0 ? 'denseAnchorPrefill' : 'anchorPrefill');
  const native = requireNative();
  (layer0 ? native.denseAnchorPrefill : native.anchorPrefill)(
    shape,
    chunk.q.buffer,
    chunk.k.buffer,
    chunk.v.buffer,
    o.buffer,
    sel.countsDevice.buffer,
    sel.kMax,
    sel.indices.buffer,
  );
  return { out: o, selection: sel };
}

/**
 * Layer 0: dense causal output, plus per KV head and query tile the `counts[t]` earlier keys
 * with the largest post-softmax pooled scores (rolling budget from `budget`, or the given slot).
 */
export function denseAnchorPrefill<D extends AttentionDType>(
  chunk: DevicePrefillChunk<D>,
  budget: BudgetOptions = {},
  into: { out?: DeviceTensor<D>; selection?: DevicePrefillSelection } = {},
): DevicePrefillSelectedOutput<D> {
  return anchorOp(true, chunk, budget, into);
}

/** Anchor: statistics pass, pooled scores + Top-k per (KV head, tile), then sparse tile attention. */
export function anchorPrefill<D extends AttentionDType>(
  chunk: DevicePrefillChunk<D>,
  budget: BudgetOptions = {},
  into: { out?: DeviceTensor<D>; selection?: DevicePrefillSelection } = {},
): DevicePrefillSelectedOutput<D> {
  return anchorOp(false, chunk, budget, into);
}

/**
 * Reuse: KV head `j` of tile `t` attends the keys `selection[b, headMap[j], t, 0..counts[t])`
 * that lie before the tile, plus the tile's own keys causally. Entries outside that range
 * (e.g. -1) are masked, never read.
 */
export function reusePrefill<D extends AttentionDType>(
  chunk: DevicePrefillChunk<D>,
  selection: DevicePrefillSelection,
  headMap: ArrayLike<number>,
  out?: DeviceTensor<D>,
): DeviceTensor<D> {
  const shape = prefillShape(chunk);
  checkSlot(shape, selection, selection.kvHeads, 'reusePrefill');
  if (headMap.length !== shape.kvHeads) {
    throw new CudaArgumentError(`headMap has ${headMap.length} entries, expected kvHeads = ${shape.kvHeads}`);
  }
  for (let j = 0; j < headMap.length; j++) {
    const m = headMap[j] as number;
    if (!(Number.isInteger(m) && m >= 0 && m < selection.kvHeads))
      throw new CudaArgumentError(`headMap[${j}] = ${m} is outside 0..${selection.kvHeads - 1}`);
  }
  const o = outputFor(chunk, out);
  requireNative().reusePrefill(
    shape,
    chunk.q.buffer,
    chunk.k.buffer,
    chunk.v.buffer,
    o.buffer,
    selection.countsDevice.buffer,
    selection.kMax,
    selection.indices.buffer,
    selection.kvHeads,
    Int32Array.from(headMap),
  );
  return o;
}

/** The anchor's pooled scores `[batch, kvHeads, tiles, n]` f32 (0 at and after each tile's start), for checks. */
export function prefillPooledScores(chunk: DevicePrefillChunk): DeviceTensor<'f32'> {
  const shape = prefillShape(chunk);
  const n = shape.queryStart + shape.queries;
  const pooled = DeviceTensor.empty('f32', [shape.batch, shape.kvHeads, prefillTiles(shape), n]);
  requireNative().pooledPrefillScores(shape, chunk.q.buffer, chunk.k.buffer, null, pooled.buffer);
  return pooled;
}

/** Device workspace bytes the prefill anchors of this chunk use (statistics + pooled rows in passes). */
export function prefillWorkspaceBytes(chunk: DevicePrefillChunk): number {
  return requireNative().prefillWorkspaceBytes(prefillShape(chunk));
}

/**
 * Uploads a host prefill selection (core's `PrefillSelection` layout, `batch` sequences stacked),
 * checking `counts[t] <= min(s_t, kMax)`, every used entry in `0..n-1` and no repeats within a row.
 */
export function uploadPrefillSelection(
  sel: {
    kvHeads: number;
    tiles: number;
    tileSize: number;
    kMax: number;
    counts: Int32Array;
    indices: Int32Array;
  },
  dims: { batch: number; queryStart: number; n: number },
): DevicePrefillSelection {
  const { kvHeads, tiles, tileSize, kMax, counts, indices } = sel;
  const { batch, queryStart, n } = dims;
  if (!(Number.isInteger(kMax) && kMax >= 1 && kMax <= n))
    throw new CudaArgumentError(`kMax must be in 1..n = ${n}, got ${kMax}`);
  if (counts.length !== tiles)
    throw new CudaArgumentError(`counts has ${counts.length} entries, expected ${tiles}`);
  if (indices.length !== batch * kvHeads * tiles * kMax) {
    throw new CudaArgumentError(
      `indices has ${indices.length} entries, expected batch * kvHeads * tiles * kMax = ${batch * kvHeads * tiles * kMax}`,
    );
  }
  const seen = new Int32Array(n).fill(-1);
  for (let t = 0; t < tiles; t++) {
    const c = counts[t] as number;
    const s = queryStart + t * tileSize;
    if (!(Number.isInteger(c) && c >= 0 && c <= Math.min(s, kMax)))
      throw new CudaArgumentError(`counts[${t}] = ${c} is outside 0..min(s = ${s}, kMax = ${kMax})`);
    for (let r = 0; r < batch * kvHeads; r++) {
      const row = r * tiles + t;
      for (let i = row * kMax; i < row * kMax + c; i++) {
        const x = indices[i] as number;
        if (!(x >= 0 && x < n))
          throw new CudaArgumentError(`index ${x} (row ${r}, tile ${t}) is outside 0..${n - 1}`);
        if (seen[x] === row) throw new CudaArgumentError(`index ${x} repeats in row ${r}, tile ${t}`);
        seen[x] = row;
      }
    }
  }
  return {
    kvHeads,
    tiles,
    tileSize,
    kMax,
    counts: Int32Array.from(counts),
    countsDevice: DeviceTensor.fromHost('i32', [tiles], counts),
    indices: DeviceTensor.fromHost('i32', [batch, kvHeads, tiles, kMax], indices),
  };
}

/**
 * Which prefill kernels run (kernels/cuda/prefill_*.cu), per part:
 * - attention (`dense`: dense, dense + statistics for layer 0, the anchor's statistics pass;
 *   `sparse`: the anchor's and reuse's sparse tile attention):
 *   - `v1`: mma.sync, 16 query rows per warp (the first version);
 *   - `v2`: mma.sync, 32 query rows per warp (two m16 tiles share every K/V fragment),
 *     Q in shared memory, exp2 as one FMA + `ex2.approx`, accumulators rescaled only when a row's
 *     max moves;
 *   - `v3`: Hopper `wgmma` for Q K^T and P V (A from registers, K/V from shared memory), 16 rows per
 *     warp, one warpgroup per block; the sparse op at group size 1 stays on v1;
 *   - `v4`: v3 with two warpgroups per block sharing each K/V step (dense: 128 queries; sparse: the
 *     four or eight query heads' tile rows of a KV head at g >= 4, g = 2 as v3) and a 3-stage ring;
 *   - `v5`: sparse: v2's layout with the gathered rows' positions staged in shared memory one step
 *     ahead (no index load on the copy path), masks only on the steps that need them, and K / V in
 *     separate copy groups (Q K^T runs while V lands); dense and dense + statistics: v2 with 8-warp
 *     blocks (256 queries, one block per SM: half the L2-to-SM traffic per query); statistics: v2;
 *   - `v6`: dense, dense + statistics and (at g = 4) sparse, head dim 128: `wgmma` with 128-key steps,
 *     two warpgroups per block (128 query rows: 128 queries of a head, or a tile's 32 queries of the
 *     group's 4 heads) and the next step's Q K^T overlapping this step's softmax; otherwise as `v5`;
 *   - `v7`: `v6` with Q and K in the 128-byte swizzled shared-memory layout (V as in v6);
 *   - `v8`: `v7` with V swizzled too;
 *   - `v12` (sparse default): dense and dense + statistics on dense v9 (prefill_dense_v9.cu, FlashAttention-3's
 *     structure: TMA copies into a 2-stage mbarrier ring, a producer warpgroup and two consumer warpgroups), the
 *     statistics-only pass on four consumer warpgroups taking turns (prefill_stats_v17.cu), sparse on the same
 *     skeleton gathering the selected rows with a 3-stage ring (prefill_sparse_v9.cu);
 *   - `v17` (dense default): v12 with sparse v9's 2-stage ring.
 *   (Session 4's `v9`, `v10`, `v11`, `v13` and session 5's `v14`-`v16`, `v18`-`v20` are gone.)
 * - `pool` (the anchors' pooled post-softmax scores): `v1` mma.sync, `v2` wgmma, `v3`
 *   wgmma with the next step's MMA in flight during this step's exponentials (g <= 4; g = 8 runs v2),
 *   `v4` v3 whose blocks first compute their rows' softmax statistics themselves, so the anchor skips
 *   its statistics pass (layer 0, whose dense pass writes them anyway, and g = 8 run as v3), `v5` / `v6`
 *   v3 / v4 with Q and K in the 128-byte swizzled shared-memory layout, `v19` (the default)
 *   four consumer warpgroups taking 64-key steps round-robin and issuing their products in step order
 *   (prefill_pool_v17.cu; else as v5). Every pool is followed by the same select since session 5 (16-byte
 *   loads, two in flight: prefill_select_v3.cu; session 3's two-pass select, pools v7 / v8, is gone; so are
 *   session 4's pools v9-v13 and session 5's v14-v18, v20-v22).
 * Held in the environment (`KASCADE_PREFILL_DENSE`, `KASCADE_PREFILL_SPARSE`, `KASCADE_PREFILL_POOL`),
 * read by the addon at every launch, so one process can time them side by side.
 */
export type PrefillKernelVariant = 'v1' | 'v2' | 'v3' | 'v4' | 'v5' | 'v6' | 'v7' | 'v8' | 'v12' | 'v17';
export type PrefillPoolVariant = 'v1' | 'v2' | 'v3' | 'v4' | 'v5' | 'v6' | 'v19';
export const PREFILL_KERNEL_VARIANTS: readonly PrefillKernelVariant[] = [
  'v1',
  'v2',
  'v3',
  'v4',
  'v5',
  'v6',
  'v7',
  'v8',
  'v12',
  'v17',
];
export const PREFILL_POOL_VARIANTS: readonly PrefillPoolVariant[] = [
  'v1',
  'v2',
  'v3',
  'v4',
  'v5',
  'v6',
  'v19',
];

export interface PrefillKernelSelection {
  readonly dense: PrefillKernelVariant;
  readonly sparse: PrefillKernelVariant;
  readonly pool: PrefillPoolVariant;
}

/**
 * Named selections the device scripts check and time: v1-v3 attention alone (pool v1), v4 = v3 + the
 * wgmma pool, v5 = the two-warpgroup wgmma attention (v4) + the wgmma pool, v6 = dense v2 + pool v2,
 * v7 = v6 with the v5 sparse kernel, v8 = v6 with the pipelined pool (v3), v9 = v6 with the pool that
 * computes the anchor's statistics itself (v4), v10 = v7 + v9 (each change alone, then together),
 * v11 = v10 with the 8-warp dense blocks (dense v5), v12 = v10 with the wgmma dense kernel (dense v6),
 * v13 = v12 with the wgmma sparse kernel (sparse v6); session 3: v14 = dense v2, sparse v5, pool v3, v15 =
 * v14 with the swizzled pool (v5), v16 = the swizzled wgmma dense (v7) + the swizzled pool that computes the
 * anchor's statistics (v6), v17 = v15 with the swizzled wgmma sparse (v7), v18 = the wgmma attention with Q,
 * K and V swizzled (v8) and pool v6 (session 3's defaults); v19 (v18 with the two-pass select) is gone.
 * Session 4's presets v20-v31 are gone (its defaults, v30 = dense v9, sparse v12, pool v12, after session 5's call
 * B). Session 5: v37 = dense v17, sparse v12, pool v19, the defaults (call B, 128k: anchor 304 ms, layer 0 363,
 * against v30's 342 and 388). Its calls A and B also timed v32-v36 and v38-v41 (the statistics pass and the pool
 * with turns or an issue-ahead on two or three warpgroups, FMA-pipe exponentials, no turns, a lazy max, the old
 * select): slower, gone.
 */
export const PREFILL_KERNEL_PRESETS: Readonly<Record<string, PrefillKernelSelection>> = {
  v1: { dense: 'v1', sparse: 'v1', pool: 'v1' },
  v2: { dense: 'v2', sparse: 'v2', pool: 'v1' },
  v3: { dense: 'v3', sparse: 'v3', pool: 'v1' },
  v4: { dense: 'v3', sparse: 'v3', pool: 'v2' },
  v5: { dense: 'v4', sparse: 'v4', pool: 'v2' },
  v6: { dense: 'v2', sparse: 'v2', pool: 'v2' },
  v7: { dense: 'v2', sparse: 'v5', pool: 'v2' },
  v8: { dense: 'v2', sparse: 'v2', pool: 'v3' },
  v9: { dense: 'v2', sparse: 'v2', pool: 'v4' },
  v10: { dense: 'v2', sparse: 'v5', pool: 'v4' },
  v11: { dense: 'v5', sparse: 'v5', pool: 'v4' },
  v12: { dense: 'v6', sparse: 'v5', pool: 'v4' },
  v13: { dense: 'v6', sparse: 'v6', pool: 'v4' },
  v14: { dense: 'v2', sparse: 'v5', pool: 'v3' },
  v15: { dense: 'v2', sparse: 'v5', pool: 'v5' },
  v16: { dense: 'v7', sparse: 'v5', pool: 'v6' },
  v17: { dense: 'v2', sparse: 'v7', pool: 'v5' },
  v18: { dense: 'v8', sparse: 'v8', pool: 'v6' },
  v37: { dense: 'v17', sparse: 'v12', pool: 'v19' },
};

/**
 * What runs when nothing is selected (the environment variables unset): preset `v37`, the fastest measured in
 * session 5's call B (apps/bench/results/cuda-prefill.json): dense v17 (dense v9 for dense and layer 0's dense +
 * statistics pass; the anchors' statistics-only pass on four consumer warpgroups), sparse v12 (the anchors'
 * sparse pass and reuse) and pool v19 (four consumer warpgroups, then select v3). Where they do not apply, dense
 * runs v2 (head dim 64), sparse v5 (head dim 64 or g != 4), the pool v5 (head dim 64 or g != 4; g = 8: v2).
 */
export const DEFAULT_PREFILL_KERNELS: PrefillKernelSelection = { dense: 'v17', sparse: 'v12', pool: 'v19' };

/** The preset of that name; throws a CudaArgumentError naming the known ones. */
export function prefillKernelPreset(name: string): PrefillKernelSelection {
  const p = Object.hasOwn(PREFILL_KERNEL_PRESETS, name) ? PREFILL_KERNEL_PRESETS[name] : undefined;
  if (!p)
    throw new CudaArgumentError(
      `unknown prefill kernel preset ${name} (known: ${Object.keys(PREFILL_KERNEL_PRESETS).join(', ')})`,
    );
  return p;
}

const ENV = {
  dense: 'KASCADE_PREFILL_DENSE',
  sparse: 'KASCADE_PREFILL_SPARSE',
  pool: 'KASCADE_PREFILL_POOL',
} as const;

function variantOf<V extends string>(value: string | undefined, known: readonly V[], fallback: V): V {
  return known.includes(value as V) ? (value as V) : fallback;
}

/** The prefill kernels the next launches use. */
export function prefillKernels(): PrefillKernelSelection {
  return {
    dense: variantOf(process.env[ENV.dense], PREFILL_KERNEL_VARIANTS, DEFAULT_PREFILL_KERNELS.dense),
    sparse: variantOf(process.env[ENV.sparse], PREFILL_KERNEL_VARIANTS, DEFAULT_PREFILL_KERNELS.sparse),
    pool: variantOf(process.env[ENV.pool], PREFILL_POOL_VARIANTS, DEFAULT_PREFILL_KERNELS.pool),
  };
}

/** Selects the prefill kernels for the following launches (what is left out keeps its value). */
export function setPrefillKernels(sel: Partial<PrefillKernelSelection>): void {
  const check = (key: keyof PrefillKernelSelection, known: readonly string[]) => {
    const v = sel[key];
    if (v !== undefined && !known.includes(v))
      throw new CudaArgumentError(
        `prefill ${key} kernel must be one of ${known.join(', ')}, got ${String(v)}`,
      );
  };
  check('dense', PREFILL_KERNEL_VARIANTS);
  check('sparse', PREFILL_KERNEL_VARIANTS);
  check('pool', PREFILL_POOL_VARIANTS);
  for (const key of ['dense', 'sparse', 'pool'] as const) {
    const v = sel[key];
    if (v !== undefined) process.env[ENV[key]] = v;
  }
}
