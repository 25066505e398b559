/**
 * The host-side plan of the dense prefill kernel v9 (kernels/cuda/prefill_dense_v9.cu), a twin of
 * kernels/cuda/prefill_v9_plan.h that the tests compare with the C++ (kernels/cuda/dev/prefill_v9_plan_check.cu):
 * the CTA order (the g query heads of one query block consecutive, the last, heaviest, query blocks first)
 * and the TMA tensor-map parameters (a 3D view of 16-bit rows of 128 elements; boxes of 64 x 128 x 1).
 */

/** Query rows per CTA, and keys per step. */
export const PREFILL_V9_BLOCK_ROWS = 128;

/** The shape fields the plan reads. */
export interface PrefillPlanShape {
  readonly batch: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly queries: number;
}

export interface PrefillGrid {
  readonly x: number;
  readonly y: number;
  readonly z: number;
}

/** What one CTA computes: query rows 128 queryBlock .. + 127 of query head `head`. */
export interface PrefillV9Block {
  readonly queryBlock: number;
  readonly head: number;
}

/** cuTensorMapEncodeTiled's arguments: dims in elements, strides in bytes (dims 1 and 2), the box. */
export interface PrefillTensorMapParams {
  readonly dims: readonly [number, number, number];
  readonly strides: readonly [number, number];
  readonly box: readonly [number, number, number];
}

export function prefillV9QueryBlocks(s: PrefillPlanShape): number {
  return Math.ceil(s.queries / PREFILL_V9_BLOCK_ROWS);
}

/** Grid (g x query blocks, kvHeads, batch). */
export function prefillV9Grid(s: PrefillPlanShape): PrefillGrid {
  const g = s.heads / s.kvHeads;
  return { x: prefillV9QueryBlocks(s) * g, y: s.kvHeads, z: s.batch };
}

/** The CTA (bx, by): by = the KV head. */
export function prefillV9Block(s: PrefillPlanShape, bx: number, by: number): PrefillV9Block {
  const g = s.heads / s.kvHeads;
  return { queryBlock: prefillV9QueryBlocks(s) - 1 - Math.floor(bx / g), head: by * g + (bx % g) };
}

/**
 * The map over [planes][rows valid of planeRows][128] 16-bit elements: Q is (queries, queries, batch x heads),
 * K and V (n, capacity, batch x kvHeads); rows at or past `rows` read as zeros. Boxes of 64 elements x
 * `boxRows` (dense v9: 128; the pools: a query tile's 32 rows, K in 64-key steps).
 */
export function prefillTensorMapParams(
  rows: number,
  planeRows: number,
  planes: number,
  boxRows: number = PREFILL_V9_BLOCK_ROWS,
): PrefillTensorMapParams {
  return {
    dims: [128, rows, planes],
    strides: [128 * 2, planeRows * 128 * 2],
    box: [64, boxRows, 1],
  };
}
