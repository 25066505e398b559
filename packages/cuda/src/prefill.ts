/**
 * Prefill ops on the device (kernels/cuda/prefill_*.cu): dense causal attention, layer-0 anchor,
 * anchor (tile-pooled post-softmax Top-k with the rolling budget, then sparse tile attention) and
 * reuse (sparse tile attention through a head map). Checked and timed on the H200 by the device jobs
 * (scripts/device/prefill.sh; figures in the README's "Prefill" section and apps/bench/results/cuda-prefill.json).
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
 *   - `v1` (dense and sparse): mma.sync, 16 query rows per warp (the first version; every shape, and where the
 *     defaults do not apply: head dim 64, sparse at g != 4);
 *   - dense `v22` (the default since session 6's call B): dense and dense + statistics on dense v9
 *     (prefill_dense_v9.cu, FlashAttention-3's structure: TMA copies into a 2-stage mbarrier ring, a producer
 *     warpgroup and two consumer warpgroups); the statistics-only pass on four consumer warpgroups taking turns
 *     (prefill_stats_v17.cu), each thread exponentiating a step against its previous max (no per-step row max;
 *     the step is redone only when its sum reaches 2^64), the quad's (max, sum) pairs merged at the end (128k:
 *     the anchor 301.6 against 308.4 ms with session 5's per-step max);
 *   - sparse `v12`: the dense v9 skeleton gathering the selected rows into a 3-stage ring, one CTA per (tile, KV
 *     head) item (prefill_sparse_v9.cu; head dim 128, g = 4); `v61` (the default since session 8's call B): the same
 *     kernel persistent, one CTA per SM walking the items with the ring running on across them (an item's first
 *     gather and Q load overlap the previous item's last steps and output store) and the next step's list entries
 *     loaded ahead (ncu: 1.82 against v12's 2.12 ms at 32k in call B, 28.7-31.1 against 31.7-34.0 at 128k in call C;
 *     reuse at 128k 29.4 against 30.2 ms in call C). Session 8's `v58` (v61 without the entries ahead) and `v62`
 *     (v61 walking the items in a snake order: within the run's spread at 128k, slower at 8k) are gone.
 *   (Session 7 removed dense `v12` / `v17`, session 5's statistics pass with a per-step row max, and sparse `v17`,
 *   a 2-stage ring; sessions 2-6's `v2`-`v11`, `v13`-`v16`, `v18`-`v20` and `v24` lost earlier and are gone.)
 * - `pool` (the anchors' pooled post-softmax scores and their Top-k): `v1` mma.sync (every shape); `v60` (the
 *   default from session 8's call B to session 9): four consumer warpgroups taking one tile's 64-key steps
 *   round-robin and issuing their products in step order (prefill_pool_v17.cu; head dim 128 and g = 4, else v1),
 *   each row's largest score written beside it, then for rows of 16384 scores or more a select that counts a sample
 *   (an eighth of the row) under the row's largest score and keeps a band around the k-th in one pass, its writes
 *   placed by warp scans (one and an eighth passes over the row), for shorter rows and where the band misses the
 *   k-th or overflows a count in 4096 bins of 1/256 octave under the row's largest score keeping the k-th's bin
 *   (two passes); `v67` (the default from session 9 to session 11's call B): v60's select after pool v67, whose steps' wgmma descriptors
 *   are constant offsets from two low words (11 % fewer instructions than v60) and which, on launches of at least
 *   2048 four-tile CTAs (32k and longer at batch 1), pools four query tiles per CTA, consumer warpgroup w tile
 *   t0 + w over every K step, so each step is loaded once for four tiles (a quarter of the K copies and L2 reads
 *   per pooled score; session 9's call B, 32k, ncu: 6.75 against v60's 7.06 ms; at 8k, 512 such CTAs lost: hence
 *   the threshold); `v75` (the default since session 11's call B): v67 with the four-tile pool holding the row
 *   constants of 6 of its 16 column blocks in registers, loaded once per warpgroup (10 instead of 16 shared-memory
 *   loads per warp and step; holding 7, or all 16, spills; the same sums: the same bits). Session 11's call B, 32k,
 *   ncu: 11.57 against v67's 11.66 M cycles, L1 67.7 against 73.8 %; 128k layer 0 345.3 against 347.2 ms. Session 12's
 *   `v76`-`v78` (the four-tile pool with no producer warpgroup: five consumer warpgroups, or all row constants in
 *   registers: 6-12 % more cycles) and `v79`-`v82` (v75 / v67 with each key's pooled terms added as a tree after its
 *   exponentials: the same cycles) are gone. Session 11's `v71`-`v74` (each step's product as two m64n64 halves: slower) and session 10's `v68` /
 *   `v69` (the query rows in registers, three / two consumer warpgroups: slower), `v70` (layer 0's
 *   dense pass split by pooled pass: no gain)
 *   and session 9's candidates `v63`-`v66` (the four tiles alone, serialised by ptxas; the
 *   descriptors alone; both at every size; float4 row constants), session 7's `v56` (a two-pass select on every
 *   row), session 8's `v32` and `v57`, session 7's `v53`-`v55`, session 5's `v19`, session 6's `v23`, `v27`,
 *   `v28`, `v31`, `v33`-`v36` and sessions 2-5's `v2`-`v18`, `v20`-`v22` are gone.
 * Held in the environment (`KASCADE_PREFILL_DENSE`, `KASCADE_PREFILL_SPARSE`, `KASCADE_PREFILL_POOL`),
 * read by the addon at every launch, so one process can time them side by side.
 */
export type PrefillDenseVariant = 'v1' | 'v22';
export type PrefillSparseVariant = 'v1' | 'v12' | 'v61';
/** Any attention variant name (dense or sparse). */
export type PrefillKernelVariant = PrefillDenseVariant | PrefillSparseVariant;
export type PrefillPoolVariant = 'v1' | 'v60' | 'v67' | 'v75';
export const PREFILL_DENSE_VARIANTS: readonly PrefillDenseVariant[] = ['v1', 'v22'];
export const PREFILL_SPARSE_VARIANTS: readonly PrefillSparseVariant[] = ['v1', 'v12', 'v61'];
export const PREFILL_KERNEL_VARIANTS: readonly PrefillKernelVariant[] = ['v1', 'v12', 'v22', 'v61'];
export const PREFILL_POOL_VARIANTS: readonly PrefillPoolVariant[] = ['v1', 'v60', 'v67', 'v75'];

export interface PrefillKernelSelection {
  readonly dense: PrefillDenseVariant;
  readonly sparse: PrefillSparseVariant;
  readonly pool: PrefillPoolVariant;
}

/**
 * Named selections the device scripts check and time: `v1` = the first kernels of every part (mma.sync
 * attention and pool), `v60` = dense v22, sparse v61, pool v60 (the defaults from session 8's call B to session 9,
 * the comparison row until session 10), `v67` = dense v22, sparse v61, pool v67 (the defaults from session 9 to
 * session 11's call B, the comparison row), `v75` = dense v22, sparse v61, pool v75 (the defaults since session 11's
 * call B). Sessions 2-6's other
 * presets (v2-v47, v48 = session 6's defaults, v49-v52; v37 = session 5's defaults), session 7's v53-v56, session
 * 8's v57-v59 and v62, session 9's v63-v66, session 10's v68-v70, session 11's v71-v74 and session 12's v76-v82 lost or
 * went into these and are gone.
 */
export const PREFILL_KERNEL_PRESETS: Readonly<Record<string, PrefillKernelSelection>> = {
  v1: { dense: 'v1', sparse: 'v1', pool: 'v1' },
  v60: { dense: 'v22', sparse: 'v61', pool: 'v60' },
  v67: { dense: 'v22', sparse: 'v61', pool: 'v67' },
  v75: { dense: 'v22', sparse: 'v61', pool: 'v75' },
};

/**
 * What runs when nothing is selected (the environment variables unset): preset `v75` (session 11's call B, 128k:
 * layer 0 345.3 against v67's 347.2 ms, the anchor 273.6 against 273.6; 32k, ncu: the pool 11.57 against 11.66 M
 * cycles): dense v22 (dense v9 for dense and layer 0's dense + statistics pass; the anchors' statistics-only pass on
 * four consumer warpgroups without a per-step row max), sparse v61 (the anchors' sparse pass and reuse, persistent)
 * and pool v75 (above; v67's one-tile pool on launches under 2048 four-tile CTAs). Where they do not apply (head
 * dim 64; sparse and the pool at g != 4) v1 runs.
 */
export const DEFAULT_PREFILL_KERNELS: PrefillKernelSelection = { dense: 'v22', sparse: 'v61', pool: 'v75' };

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
    dense: variantOf(process.env[ENV.dense], PREFILL_DENSE_VARIANTS, DEFAULT_PREFILL_KERNELS.dense),
    sparse: variantOf(process.env[ENV.sparse], PREFILL_SPARSE_VARIANTS, DEFAULT_PREFILL_KERNELS.sparse),
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
  check('dense', PREFILL_DENSE_VARIANTS);
  check('sparse', PREFILL_SPARSE_VARIANTS);
  check('pool', PREFILL_POOL_VARIANTS);
  for (const key of ['dense', 'sparse', 'pool'] as const) {
    const v = sel[key];
    if (v !== undefined) process.env[ENV[key]] = v;
  }
}
