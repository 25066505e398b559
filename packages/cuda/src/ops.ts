import { type BudgetOptions, topkBudget } from '@kascade/core';
import type { NativeDecodeShape, NativeGraph } from './binding.types.js';
import { CudaArgumentError } from './errors.js';
import { DeviceTensor, requireNative } from './tensor.js';

/** The largest decode kernel variant value: bits 1..1073741824 (KascadeDecodeVariant in kernels/cuda/kascade_cuda.h). */
export const DECODE_VARIANT_MAX = 2147483647;

/** The decode ops, as the default-variant table names them. */
export type DecodeOp = 'dense' | 'layer0' | 'anchor' | 'reuse';

/**
 * One row of the default-variant table: ops with `batch <= maxBatch` and `n <= maxN` run `variant`
 * unless the batch names one. The first matching row wins; no match means variant 0.
 */
export interface DecodeVariantRule {
  readonly op: DecodeOp;
  readonly maxBatch: number;
  readonly maxN: number;
  readonly variant: number;
}

/**
 * The library's default decode variants per op and shape class, from the H200 run at 5bd2ba3
 * (`apps/bench/results/cuda-decode.json`; Llama-3.1-8B shape, bf16): per op, batch (1 or 32) and
 * context (8k, 32k, 128k, 512k), among the variants within 1.5 % of that shape's fastest, the
 * one fastest on average over the op's contexts at that batch. Batch <= 4 takes the batch-1
 * choice, larger batches the batch-32 one; contexts up to 16k / 64k / 256k take the 8k / 32k /
 * 128k choice. Dense and reuse never run the anchors' select, so their rows drop bits 256/512
 * (the same kernels). Every variant computes the same result (device parity per variant).
 */
export const DEFAULT_DECODE_VARIANTS: readonly DecodeVariantRule[] = [
  { op: 'dense', maxBatch: 4, maxN: 16384, variant: 148 },
  { op: 'dense', maxBatch: 4, maxN: Number.POSITIVE_INFINITY, variant: 252 },
  // Batch > 4 (session 6, call C at f3cc0d9): the lean schedule; 176 at 8k / 32k, 148 at 128k (3774.7 us
  // against 176's 3779.8; bit 262144 on the split schedule: 3814.0).
  { op: 'dense', maxBatch: Number.POSITIVE_INFINITY, maxN: 65536, variant: 176 },
  { op: 'dense', maxBatch: Number.POSITIVE_INFINITY, maxN: Number.POSITIVE_INFINITY, variant: 148 },
  // Layer 0 and the anchor at batch > 4 (session 4, call B at cd03a04, `cuda-decode.json`): the fastest
  // variant at each measured context (8k, 32k, 128k at batch 32). The stream select with the f16
  // intermediate wins at 128k batch 32 (layer 0 3196: 1.2 % faster than the next without it; the
  // anchor 19644: 4 %), the cluster select (764) at 8k/32k.
  // Batch <= 4 (session 5, call C at fcda072, `cuda-decode.json` and `cuda-b1-probe.json`): the b1 select
  // (bit 131072, one cooperative launch) with the warp-specialised gather for the anchor's sparse pass
  // (164028 = 188 + 32768 + 131072) is the fastest layer 0 at 32k/128k and anchor at 8k/32k/128k; at
  // 512k the warp-specialised gather alone (32956 = 188 + 32768); the cluster select (764) for layer 0
  // at 8k.
  // Session 9 up to 256k (call B's bench at 2b5dca9, batch 1): 12816636 = 168188 | 65536 | 4194304 | 8388608, the pass's
  // f32 logits kept in L2 (bit 8388608; layer 0 has no sparse pass, so bits 65536 / 4194304 change nothing here): 8k 31.49
  // against 164028's 31.55 and 764's 33.22 us, 32k 60.96 against 64.98, 128k 162.24 against 173.66.
  { op: 'layer0', maxBatch: 4, maxN: 262144, variant: 12816636 },
  { op: 'layer0', maxBatch: 4, maxN: Number.POSITIVE_INFINITY, variant: 32956 },
  // Batch > 4 (session 6, call C at f3cc0d9, the fastest at 8k / 32k / 128k batch 32): layer 0 164028
  // (cuda-b1's select; 317.1 against 764's 317.9 us), 764 (1152.6 against 1163.7), then 265340 (3196 with
  // the TMA maps unpromoted in L2: 4431.0 against 3196's 4444.5); the anchor 164028 (214.0 against 764's
  // 221.7), then 265340 (751.4 against 764's 754.8; 2791.0 against 3196's 2831.7 and 19644's 2851.7).
  { op: 'layer0', maxBatch: Number.POSITIVE_INFINITY, maxN: 16384, variant: 164028 },
  // Session 8: beyond 64k the key-major intermediate (1838204 = 789628 | 1048576; layer 0 runs 265340's kernels with
  // bit 1048576): calls A / B at 128k batch 32 4407.4 / 4413.3 against 265340's 4438.6 / 4438.6 us.
  // Session 9, call C at 1a87690 (`cuda-decode.json`): beyond 16k the burst writes on the lean schedule (3935484 =
  // 1838204 | 128 | 2097152: the pass's f16 intermediate stored in GPU-wide %globaltimer windows by TMA bulk copies):
  // 32k batch 32 1099.9 us against 764's 1139.3 and 1838204's 1146.1, 128k 4216.0 against 1838204's 4327.2 (8k:
  // 324.5 against 164028's 313.2, so 164028 stays there).
  { op: 'layer0', maxBatch: Number.POSITIVE_INFINITY, maxN: Number.POSITIVE_INFINITY, variant: 3935484 },
  // Batch <= 4, session 7 (b1 probe, calls A and B at 128k batch 1): 168124 = 164028 | 4096, the anchor's sparse
  // pass launched while the b1 select's rows finish (programmatic dependent launch): 122.05 / 122.78 us against
  // 124.90 / 125.22 (32k: 55.55 against 56.86; 8k: 33.98 against 35.07); layer 0 has no sparse pass (the same).
  // Session 8: 168188 = 168124 | 64, the sparse pass with one wide ws-gather CTA per SM (call B's bench at 735f9ac:
  // 8k 32.85 against 33.42 us, 32k 52.51 against 53.20, 128k 119.89 against 119.87).
  // Session 9 (call B's bench at 2b5dca9): 12816636 = 168188 | 65536 | 4194304 | 8388608, the logits kept in L2 and
  // dropped by the select (the sparse pass copies K rows, with the register split and the wide gather's epilogue): 8k
  // 33.50 against 168188's 33.33 us, 32k 49.82 against 53.71, 128k 113.55 against 121.44.
  // Session 10 (call B's bench at e5ca618): 46371068 = 12816636 | 33554432, the sparse pass started on the b1 select's
  // phase-2 indices beside its phase 3 (its splits in the SMs the phase-3 CTAs leave free): 8k 33.62 against 33.65 us,
  // 32k 48.58 against 49.92, 128k 109.84 against 114.00 (512k: 439.52 against 438.00; 32956 stays beyond 256k).
  // Session 11 (call B's bench at 7e6e148): 583241980 = 46371068 | 536870912, the sparse pass's split merge through each
  // row's f64 accumulator: 8k 32.53 against 33.71 us, 32k 47.62 against 48.32, 128k 108.74 against 109.92.
  { op: 'anchor', maxBatch: 4, maxN: 262144, variant: 583241980 },
  { op: 'anchor', maxBatch: 4, maxN: Number.POSITIVE_INFINITY, variant: 32956 },
  { op: 'anchor', maxBatch: Number.POSITIVE_INFINITY, maxN: 16384, variant: 164028 },
  // Session 7: beyond 16k the anchor's sparse pass reads the scores from the f16 intermediate (789628 = 265340 |
  // 524288): call C at daaa4e2, 128k batch 32 2717.4 against 265340's 2737.9 us, 32k 737.4 against 742.6 (calls A
  // and B: the same order).
  // Session 8: the key-major intermediate (1838204 = 789628 | 1048576): calls A / B at 128k batch 32 2745.3 / 2742.2
  // against 789628's 2783.5 / 2781.4 us, 32k 745.6 / 741.6 against 756.9 / 750.0.
  // Session 10: the sparse pass beside the stream select's phase 4 (136055932 = 1838204 | 134217728: released after phase
  // 3, reading each row's list as its ready count allows): call B at e5ca618, 128k batch 32 2738.3 against 1838204's
  // 2748.6 us, 32k 746.5 against 750.8; call C at b21e491 (final): 2690.5 against 2699.8, 32k 732.5 against 737.8.
  { op: 'anchor', maxBatch: Number.POSITIVE_INFINITY, maxN: Number.POSITIVE_INFINITY, variant: 136055932 },
  // Reuse at batch <= 4 (the batch-1 probe of sessions 4 and 5, call C's bench; figures in the README's
  // batch-1 sections): the 2-stage gather (bit 8192) up to 16k, the warp-specialised gather (bit 32768
  // with 16-bit P: 32800, the same kernel as 32956) beyond: call C's fastest reuse at 32k and 512k; at
  // 128k within 2 % of the split gather (124: 22.56 against 23.01 us per call with events, 19.89
  // against 20.43 in a graph, 24.56 against 24.14 over 4 layers in turn).
  // Session 7 beyond 16k: 98336 = 32800 | 65536, the ws gather's producers give registers to its consumers (no
  // spills): 22.53 / 23.52 us against 32800's 23.10 / 23.78 at 128k (b1 probe, calls A / B; graph 20.01 / 20.53
  // against 20.69 / 21.14).
  // Session 8 at every context: 98400 = 98336 | 64, one wide ws-gather CTA per SM (16 splits per row at batch 1, the
  // last CTA merging them in one L2 round trip): call B's bench at 735f9ac, 8k 10.11 against 8252's 10.30 us, 32k
  // 11.90 against 98336's 12.43, 128k 21.42 against 22.70, 512k 63.90 against 63.65.
  // Session 9 at every context: 4292704 = 98400 | 4194304, the wide gather's epilogue (call B: its acq_rel split counter
  // alone; bench at 2b5dca9 32k 11.65 against 11.98 us, 128k 21.30 against 21.58; b1 probe 512k 63.55 against 63.87).
  // Session 11 at every context: 541163616 = 4292704 | 536870912, the split merge through each row's f64 accumulator (the
  // row's last CTA loads GS x (D + 1) sums instead of 16 slots; call B's bench at 7e6e148: 8k 10.53 against 12.19 us,
  // 32k 10.66 against 14.51, 128k 20.54 against 21.34, 512k 61.60 against 62.56).
  { op: 'reuse', maxBatch: 4, maxN: Number.POSITIVE_INFINITY, variant: 541163616 },
  { op: 'reuse', maxBatch: Number.POSITIVE_INFINITY, maxN: Number.POSITIVE_INFINITY, variant: 188 },
];

/** The variant an op runs when its batch names none. */
export function defaultDecodeVariant(op: DecodeOp, batch: number, n: number): number {
  for (const r of DEFAULT_DECODE_VARIANTS)
    if (r.op === op && batch <= r.maxBatch && n <= r.maxN) return r.variant;
  return 0;
}

/** Attention data types the kernels take. */
export type AttentionDType = 'bf16' | 'f16';

/**
 * One decode step of a batch on the device, one layer.
 * - `q [batch, heads, headDim]`
 * - `k`, `v` `[batch, kvHeads, capacity, headDim]`: the contiguous cache of each sequence;
 *   tokens `0 .. n-1` are valid (the new token's key already appended). All sequences share `n`.
 */
export interface DeviceDecodeBatch<D extends AttentionDType = AttentionDType> {
  readonly q: DeviceTensor<D>;
  readonly k: DeviceTensor<D>;
  readonly v: DeviceTensor<D>;
  readonly n: number;
  /** Softmax scale; defaults to `1 / sqrt(headDim)`. */
  readonly scale?: number;
  /** Split-KV factor override (tuning); automatic when absent. */
  readonly splits?: number;
  /**
   * Kernel variant bits (tuning; same results, checked per variant on the device): 1 rows by TMA
   * bulk copies, 2 an L2 256-byte prefetch hint on the 16-byte copies, 4 the last split block
   * merges the splits (no combine kernel), 8 anchors' Top-k passes over wider chunks with no
   * memsets, 16 contiguous passes by TMA tensor tiles, 32 P as one 16-bit value in P V (half
   * the MMAs), 64 with 32768 the ws gather as one 512-thread CTA per SM (half the splits per row), 128 the lean (stream-K) schedule: a persistent grid, each CTA
   * an equal share of all key tiles, and a wider combine; 256 / 512 the anchors' cluster select,
   * 1024 / 2048 their f16 intermediate and stream select, 4096 programmatic dependent launch, 8192
   * the 2-stage batch-1 gather, 32768 the warp-specialised gather (reuse, the anchors' sparse pass),
   * 65536 with 32768 the gather's producer warps giving registers to its consumers (head dim 128), 131072 the anchors' select as one launch over the whole GPU (few rows),
   * 262144 the contiguous passes' TMA maps without L2 promotion (as the lean schedule's), 524288 with
   * 1024 the anchor's sparse pass reading the scores from the f16 intermediate (V rows only); the rest in
   * kascade_cuda.h. 0 or absent: the first kernels.
   */
  readonly variant?: number;
}

/** The decode index slot on the device: `indices [batch, kvHeads, k]` int32, row order free. */
export interface DeviceSelection {
  readonly kvHeads: number;
  readonly k: number;
  readonly indices: DeviceTensor<'i32'>;
}

/** q, k, v share bf16 or f16 (checked before their shapes, by decode and prefill alike). */
export function checkDTypes(q: DeviceTensor, k: DeviceTensor, v: DeviceTensor): void {
  if (q.dtype !== k.dtype || k.dtype !== v.dtype || (q.dtype !== 'bf16' && q.dtype !== 'f16')) {
    throw new CudaArgumentError(
      `q, k, v must share dtype bf16 or f16 (got ${q.dtype}, ${k.dtype}, ${v.dtype})`,
    );
  }
}

/**
 * K/V `[batch, kvHeads, capacity, headDim]` (rank already checked) against q's batch, heads and
 * head dim: v matches k, the group size is 1, 2, 4 or 8, the head dim 64 or 128.
 */
export function checkKV(
  q: DeviceTensor,
  k: DeviceTensor,
  v: DeviceTensor,
  batch: number,
  heads: number,
  headDim: number,
): { kvHeads: number; capacity: number } {
  const [kb, kvHeads, capacity, kd] = k.shape as [number, number, number, number];
  if (v.shape.join() !== k.shape.join())
    throw new CudaArgumentError(`v [${v.shape}] must match k [${k.shape}]`);
  if (kb !== batch || kd !== headDim) {
    throw new CudaArgumentError(`k [${k.shape}] does not fit q [${q.shape}] (batch and headDim must agree)`);
  }
  if (heads % kvHeads !== 0 || ![1, 2, 4, 8].includes(heads / kvHeads)) {
    throw new CudaArgumentError(`group size heads / kvHeads = ${heads}/${kvHeads} must be 1, 2, 4 or 8`);
  }
  if (headDim !== 64 && headDim !== 128)
    throw new CudaArgumentError(`headDim must be 64 or 128, got ${headDim}`);
  return { kvHeads, capacity };
}

/** The last shape checked per q tensor, with what it was checked for (see {@link decodeShape}). */
interface CheckedShape {
  readonly k: DeviceTensor;
  readonly v: DeviceTensor;
  readonly n: number;
  readonly scale: number | undefined;
  readonly splits: number | undefined;
  readonly variant: number | undefined;
  readonly op: DecodeOp;
  readonly shape: NativeDecodeShape;
}
const checkedShapes = new WeakMap<object, CheckedShape>();

/**
 * The shape a batch implies, checked: q and k/v agree, dtype matches, group size and head dim
 * supported. Without `batch.variant`, the variant is `op`'s default for the shape.
 *
 * A decode step at batch 1 is tens of microseconds of GPU time, so the host path counts: the result
 * is frozen and remembered per q tensor, and a call with the same tensors and fields (tensors'
 * dtypes and shapes never change) returns it without checking again. The addon, in turn, reuses
 * its parse of the last shape object it was given when it gets the same (frozen) object again.
 */
export function decodeShape(batch: DeviceDecodeBatch, op: DecodeOp = 'dense'): NativeDecodeShape {
  const last = checkedShapes.get(batch.q);
  if (
    last !== undefined &&
    last.k === batch.k &&
    last.v === batch.v &&
    last.n === batch.n &&
    last.scale === batch.scale &&
    last.splits === batch.splits &&
    last.variant === batch.variant &&
    last.op === op
  )
    return last.shape;
  const shape = Object.freeze(checkDecodeShape(batch, op));
  checkedShapes.set(batch.q, {
    k: batch.k,
    v: batch.v,
    n: batch.n,
    scale: batch.scale,
    splits: batch.splits,
    variant: batch.variant,
    op,
    shape,
  });
  return shape;
}

function checkDecodeShape(batch: DeviceDecodeBatch, op: DecodeOp): NativeDecodeShape {
  const { q, k, v, n } = batch;
  checkDTypes(q, k, v);
  if (q.shape.length !== 3 || k.shape.length !== 4) {
    throw new CudaArgumentError(
      `q must be [batch, heads, headDim] and k, v [batch, kvHeads, capacity, headDim] (got q [${q.shape}], k [${k.shape}])`,
    );
  }
  const [b, heads, headDim] = q.shape as [number, number, number];
  const { kvHeads, capacity } = checkKV(q, k, v, b, heads, headDim);
  if (!(Number.isInteger(n) && n >= 1 && n <= capacity)) {
    throw new CudaArgumentError(`n must be an integer in 1..capacity = ${capacity}, got ${n}`);
  }
  const scale = batch.scale ?? 1 / Math.sqrt(headDim);
  if (!(scale > 0 && Number.isFinite(scale)))
    throw new CudaArgumentError(`scale must be positive, got ${scale}`);
  const variant = batch.variant ?? defaultDecodeVariant(op, b, n);
  if (!(Number.isInteger(variant) && variant >= 0 && variant <= DECODE_VARIANT_MAX))
    throw new CudaArgumentError(`variant must be an integer in 0..${DECODE_VARIANT_MAX}, got ${variant}`);
  return {
    batch: b,
    heads,
    kvHeads,
    headDim,
    n,
    capacity,
    scale,
    dtype: q.dtype,
    splits: batch.splits ?? 0,
    variant,
  };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function outputFor<D extends AttentionDType>(
  batch: DeviceDecodeBatch<D>,
  out?: DeviceTensor<D>,
): DeviceTensor<D> {
  if (!out) return DeviceTensor.empty(batch.q.dtype, batch.q.shape);
  if (out.dtype !== batch.q.dtype || !sameShape(out.shape, batch.q.shape)) {
    throw new CudaArgumentError(
      `out must be ${batch.q.dtype} [${batch.q.shape}], got ${out.dtype} [${out.shape}]`,
    );
  }
  return out;
}

function resolveTopk(n: number, budget: BudgetOptions | number): number {
  const k = typeof budget === 'number' ? budget : topkBudget(n, budget);
  if (!(Number.isInteger(k) && k >= 1 && k <= n))
    throw new CudaArgumentError(`k must be in 1..n = ${n}, got ${k}`);
  return k;
}

function selectionFor(shape: NativeDecodeShape, k: number, into?: DeviceSelection): DeviceSelection {
  if (!into) {
    return { kvHeads: shape.kvHeads, k, indices: DeviceTensor.empty('i32', [shape.batch, shape.kvHeads, k]) };
  }
  if (
    into.k !== k ||
    into.kvHeads !== shape.kvHeads ||
    into.indices.size !== shape.batch * shape.kvHeads * k
  ) {
    throw new CudaArgumentError(
      `selection slot holds [${into.indices.shape}], the op needs [${shape.batch}, ${shape.kvHeads}, ${k}]`,
    );
  }
  return into;
}

/** Dense decode attention (split-KV, GQA-aware). Asynchronous; returns `out [batch, heads, headDim]`. */
export function denseDecode<D extends AttentionDType>(
  batch: DeviceDecodeBatch<D>,
  out?: DeviceTensor<D>,
): DeviceTensor<D> {
  const shape = decodeShape(batch, 'dense');
  const o = outputFor(batch, out);
  requireNative().denseDecode(shape, batch.q.buffer, batch.k.buffer, batch.v.buffer, o.buffer);
  return o;
}

/** Result of the ops that attend and select. */
export interface DeviceSelectedOutput<D extends AttentionDType> {
  readonly out: DeviceTensor<D>;
  readonly selection: DeviceSelection;
}

/** Dense-anchor and anchor decode: the same checks and slots, one native op or the other. */
function attendAndSelect<D extends AttentionDType>(
  op: 'denseAnchorDecode' | 'anchorDecode',
  batch: DeviceDecodeBatch<D>,
  budget: BudgetOptions | number,
  into: { out?: DeviceTensor<D>; selection?: DeviceSelection },
): DeviceSelectedOutput<D> {
  const shape = decodeShape(batch, op === 'denseAnchorDecode' ? 'layer0' : 'anchor');
  const k = resolveTopk(shape.n, budget);
  const o = outputFor(batch, into.out);
  const sel = selectionFor(shape, k, into.selection);
  requireNative()[op](shape, batch.q.buffer, batch.k.buffer, batch.v.buffer, o.buffer, k, sel.indices.buffer);
  return { out: o, selection: sel };
}

/**
 * Layer 0: dense output plus the post-softmax group-pooled Top-k of every KV head
 * (`k = topkBudget(n, budget)` unless a number is given) into the selection slot.
 */
export function denseAnchorDecode<D extends AttentionDType>(
  batch: DeviceDecodeBatch<D>,
  budget: BudgetOptions | number = {},
  into: { out?: DeviceTensor<D>; selection?: DeviceSelection } = {},
): DeviceSelectedOutput<D> {
  return attendAndSelect('denseAnchorDecode', batch, budget, into);
}

/** Anchor: fused scores, softmax, pooling and radix Top-k select, then sparse attention over the selection. */
export function anchorDecode<D extends AttentionDType>(
  batch: DeviceDecodeBatch<D>,
  budget: BudgetOptions | number = {},
  into: { out?: DeviceTensor<D>; selection?: DeviceSelection } = {},
): DeviceSelectedOutput<D> {
  return attendAndSelect('anchorDecode', batch, budget, into);
}

/**
 * Reuse: KV head `j` attends the rows `selection[b, headMap[j], :]` of its own K/V.
 * Indices outside `0..n-1` are masked by the kernel (never read); check host-made
 * selections with {@link uploadSelection}.
 */
export function reuseDecode<D extends AttentionDType>(
  batch: DeviceDecodeBatch<D>,
  selection: DeviceSelection,
  headMap: ArrayLike<number>,
  out?: DeviceTensor<D>,
): DeviceTensor<D> {
  const shape = decodeShape(batch, 'reuse');
  if (selection.k > shape.n)
    throw new CudaArgumentError(`selection.k = ${selection.k} exceeds n = ${shape.n}`);
  if (selection.indices.size !== shape.batch * selection.kvHeads * selection.k) {
    throw new CudaArgumentError(
      `selection indices hold ${selection.indices.size} entries, expected batch * kvHeads * k = ${shape.batch * selection.kvHeads * selection.k}`,
    );
  }
  if (headMap.length !== shape.kvHeads) {
    throw new CudaArgumentError(`headMap has ${headMap.length} entries, expected kvHeads = ${shape.kvHeads}`);
  }
  const map = Int32Array.from(headMap);
  for (let j = 0; j < map.length; j++) {
    if (
      !(
        Number.isInteger(headMap[j]) &&
        (headMap[j] as number) >= 0 &&
        (headMap[j] as number) < selection.kvHeads
      )
    ) {
      throw new CudaArgumentError(`headMap[${j}] = ${headMap[j]} is outside 0..${selection.kvHeads - 1}`);
    }
  }
  const o = outputFor(batch, out);
  requireNative().reuseDecode(
    shape,
    batch.q.buffer,
    batch.k.buffer,
    batch.v.buffer,
    o.buffer,
    selection.k,
    selection.indices.buffer,
    selection.kvHeads,
    map,
  );
  return o;
}

/** The anchor's post-softmax group-pooled scores `[batch, kvHeads, n]` f32 (for checks). */
export function pooledScores(batch: DeviceDecodeBatch): DeviceTensor<'f32'> {
  const shape = decodeShape(batch, 'anchor');
  const pooled = DeviceTensor.empty('f32', [shape.batch, shape.kvHeads, shape.n]);
  requireNative().pooledScores(shape, batch.q.buffer, batch.k.buffer, null, pooled.buffer);
  return pooled;
}

/**
 * Uploads a host selection `[batch, kvHeads, k]`, checking every index is in `0..n-1` and
 * no row repeats an index.
 */
export function uploadSelection(
  indices: Int32Array,
  dims: { batch: number; kvHeads: number; k: number; n: number },
): DeviceSelection {
  const { batch, kvHeads, k, n } = dims;
  if (!(Number.isInteger(k) && k >= 1 && k <= n))
    throw new CudaArgumentError(`k must be in 1..n = ${n}, got ${k}`);
  if (indices.length !== batch * kvHeads * k) {
    throw new CudaArgumentError(
      `indices has ${indices.length} entries, expected batch * kvHeads * k = ${batch * kvHeads * k}`,
    );
  }
  const seen = new Uint32Array(n);
  for (let r = 0; r < batch * kvHeads; r++) {
    for (let i = r * k; i < (r + 1) * k; i++) {
      const x = indices[i] as number;
      if (!(x >= 0 && x < n)) throw new CudaArgumentError(`index ${x} at row ${r} is outside 0..${n - 1}`);
      if (seen[x] === r + 1) throw new CudaArgumentError(`index ${x} repeats in row ${r}`);
      seen[x] = r + 1;
    }
  }
  return { kvHeads, k, indices: DeviceTensor.fromHost('i32', [batch, kvHeads, k], indices) };
}

/** Waits for every queued op; a kernel fault surfaces here as an Error with CUDA's message. */
export function synchronize(): void {
  requireNative().synchronize();
}

/** Device-to-device copy (the bandwidth ceiling benchmarks compare against). Asynchronous. */
export function copyDevice(
  dst: DeviceTensor,
  src: DeviceTensor,
  bytes = Math.min(dst.bytes, src.bytes),
): void {
  requireNative().copyDevice(dst.buffer, src.buffer, bytes);
}

/** Fills a bf16/f16/f32 tensor with normal(0, stddev) values on the device. Asynchronous. */
export function fillNormal(t: DeviceTensor, seed: number, stddev = 1): void {
  if (t.dtype === 'i32')
    throw new CudaArgumentError('fillNormal: i32 tensors hold indices, not random values');
  requireNative().fillNormal(t.buffer, t.dtype, seed, stddev);
}

/**
 * Times `fn` with CUDA events on the op stream: `warmup` untimed calls, then `repeats` calls each
 * bracketed by events. Returns the per-call microseconds.
 */
export function timeDevice(fn: () => void, warmup: number, repeats: number): Float64Array {
  const native = requireNative();
  for (let i = 0; i < warmup; i++) fn();
  native.synchronize();
  const starts = Array.from({ length: repeats }, () => new native.Event());
  const ends = Array.from({ length: repeats }, () => new native.Event());
  for (let i = 0; i < repeats; i++) {
    starts[i]?.record();
    fn();
    ends[i]?.record();
  }
  const us = new Float64Array(repeats);
  for (let i = 0; i < repeats; i++) us[i] = native.elapsedMs(starts[i] as never, ends[i] as never) * 1000;
  native.synchronize();
  return us;
}

/**
 * Captures the ops `fn` issues into a CUDA graph (run `fn` once uncaptured first, so workspaces
 * are allocated). `launch()` replays them with one launch.
 */
export function captureGraph(fn: () => void): NativeGraph {
  const native = requireNative();
  native.beginCapture();
  try {
    fn();
  } catch (e) {
    try {
      native.endCapture();
    } catch {}
    throw e;
  }
  return native.endCapture();
}
