/**
 * The lean (stream-K) work partition of the decode kernels (variant bit 128), in TypeScript: the
 * twin of `lean_plan` / `lean_tile_begin` / `lean_cta_of` / `lean_segment` in
 * `kernels/cuda/decode_attention.cuh`, which the kernel runs. The tests check this twin's
 * invariants and that the C++ functions produce the same segments.
 *
 * Every (sequence b, KV head j) row's key list is cut into tiles of {@link LEAN_TILE_KEYS} keys,
 * `tiles` per row; rows are laid end to end (row `b * kvHeads + j`), `work = rows * tiles` tiles in
 * all, and CTA `c` of `ctas` takes tiles `[floor(c * work / ctas), floor((c + 1) * work / ctas))`.
 * A CTA writes one partial `(m, l, o)` per row it touches, in slot `c - firstCta(row)`.
 */

/** Keys per tile: 4 warps x 16-key steps (`kTile`). */
export const LEAN_TILE_KEYS = 64;

export interface LeanPlan {
  /** Tiles in all (`rows * tiles`). */
  readonly work: number;
  /** Tiles per row. */
  readonly tiles: number;
  /** CTAs, at most `work` (each gets at least one tile). */
  readonly ctas: number;
  /** Partial slots per row: an upper bound on the CTAs any row has. */
  readonly slots: number;
}

/** One CTA's share of one row. */
export interface LeanSegment {
  readonly row: number;
  /** List entries `[begin, end)` of the row. */
  readonly begin: number;
  readonly end: number;
  /** The CTA's partial slot in the row, and how many CTAs the row has. */
  readonly slot: number;
  readonly nslots: number;
  /** The CTA holds the row's last tile. */
  readonly rowLast: boolean;
}

export function leanPlan(rows: number, listLen: number, ctas: number): LeanPlan {
  const tiles = listLen > 0 ? Math.ceil(listLen / LEAN_TILE_KEYS) : 1;
  const work = rows * tiles;
  const p = Math.max(1, Math.min(ctas, work));
  // A row meets CTAs ctaOf(t0) .. ctaOf(t0 + tiles - 1): at most 1 + ceil((tiles - 1) * ctas / work).
  const slots = Math.min(p, 1 + Math.ceil(((tiles - 1) * p) / work));
  return { work, tiles, ctas: p, slots };
}

/** First tile of CTA `c` (and, for `c = ctas`, the end of the last). */
export function leanTileBegin(c: number, plan: LeanPlan): number {
  return Math.floor((c * plan.work) / plan.ctas);
}

/** The CTA that holds tile `t`: the largest `c` with `floor(c * work / ctas) <= t`. */
export function leanCtaOf(t: number, plan: LeanPlan): number {
  return Math.floor(((t + 1) * plan.ctas - 1) / plan.work);
}

/** The segments CTA `c` runs, in order. */
export function leanSegments(c: number, plan: LeanPlan, listLen: number): LeanSegment[] {
  const out: LeanSegment[] = [];
  const tEnd = leanTileBegin(c + 1, plan);
  for (let t = leanTileBegin(c, plan); t < tEnd; ) {
    const row = Math.floor(t / plan.tiles);
    const t0 = row * plan.tiles;
    const segEnd = Math.min(tEnd, t0 + plan.tiles);
    const c0 = leanCtaOf(t0, plan);
    const c1 = leanCtaOf(t0 + plan.tiles - 1, plan);
    out.push({
      row,
      begin: (t - t0) * LEAN_TILE_KEYS,
      end: Math.min(listLen, (segEnd - t0) * LEAN_TILE_KEYS),
      slot: c - c0,
      nslots: c1 - c0 + 1,
      rowLast: c === c1,
    });
    t = segEnd;
  }
  return out;
}

/**
 * Splits per row so that `rows` rows' splits fill at most `ctas` CTAs at once (twin of
 * `grain_split_count` in `kernels/cuda/decode_attention.cuh`): `floor(ctas / rows)` (at least 1, at
 * most one per `grain`-entry group), then whole groups per split. Variant bit 8192 (`kGatherLite`)
 * cuts in 64-key tiles (the default grain), bit 32768 (the warp-specialised gather) in 16-key groups.
 */
export function liteSplits(
  rows: number,
  listLen: number,
  ctas: number,
  grain: number = LEAN_TILE_KEYS,
): { splits: number; chunk: number } {
  const groups = listLen > 0 ? Math.ceil(listLen / grain) : 1;
  const s = Math.max(1, Math.min(groups, rows > 0 ? Math.floor(ctas / rows) : 1));
  const chunk = Math.max(grain, Math.ceil(Math.ceil(listLen / s) / grain) * grain);
  return { splits: listLen > 0 ? Math.ceil(listLen / chunk) : 1, chunk };
}

/** Split granularity of the warp-specialised gather (variant bit 32768): one consumer warp's 16-key step. */
export const WS_GROUP_KEYS = 16;
