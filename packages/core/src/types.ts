/**
 * The shared vocabulary of Kascade.
 *
 * Layout, stated once for the whole project: every attention tensor is row-major with the
 * head axis outermost inside a sequence, i.e. `[batch, heads, tokens, headDim]`. The CPU
 * reference ops work on one sequence at a time (`batch = 1`, the leading axis dropped):
 *
 * - queries, decode:   `q  [heads, headDim]`
 * - queries, prefill:  `q  [heads, queries, headDim]`  (query `i` sits at position `queryStart + i`)
 * - keys and values:   `k, v [kvHeads, capacity, headDim]`, of which the first `n` tokens are valid
 * - outputs:           the same layout as the queries
 *
 * Query head `h` belongs to KV head `j = floor(h / groupSize)`, `groupSize = heads / kvHeads`.
 */

/** Element types a tensor may hold. f16/bf16 are stored as raw 16-bit patterns in a `Uint16Array`. */
export type DType = 'f32' | 'f16' | 'bf16';

/** A float array the reference ops read; they compute in float64 whatever comes in. */
export type FloatArray = Float32Array | Float64Array;

/** A host tensor: a typed array, its dtype and its shape (row-major). */
export interface Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly data: D extends 'f32' ? Float32Array : Uint16Array;
}

/** The attention shape of one layer. */
export interface AttentionShape {
  /** Query heads `H`. */
  readonly heads: number;
  /** KV heads `G`; `heads` is a multiple of it. */
  readonly kvHeads: number;
  /** Head dimension `d`. */
  readonly headDim: number;
}

/** Keys and values of one layer of one sequence: `[kvHeads, capacity, headDim]`, first `n` valid. */
export interface KeyValues {
  readonly k: FloatArray;
  readonly v: FloatArray;
  /** Valid tokens. */
  readonly n: number;
  /** Tokens the buffers hold room for per head (the row stride between heads); defaults to `n`. */
  readonly capacity?: number;
}

/** Inputs of a decode step: one query token per sequence, its own key already appended (`n` counts it). */
export interface DecodeInputs extends AttentionShape, KeyValues {
  /** `[heads, headDim]` */
  readonly q: FloatArray;
  /** Softmax scale; defaults to `1 / sqrt(headDim)`. */
  readonly scale?: number;
}

/** Inputs of a prefill chunk: `queries` tokens at positions `queryStart ..`, keys `0 .. n - 1` with `n = queryStart + queries`. */
export interface PrefillInputs extends AttentionShape, KeyValues {
  /** `[heads, queries, headDim]` */
  readonly q: FloatArray;
  readonly queries: number;
  /** Position of the first query; a multiple of `tileSize`. */
  readonly queryStart: number;
  /** Query tile size `T` (default 32 in plans). */
  readonly tileSize: number;
  readonly scale?: number;
}

/** Budget settings, exactly the plan's fields. */
export interface BudgetOptions {
  /** Top-k percentage `p` (default 10). */
  readonly percent?: number;
  /** Minimum budget `kMin` (default 128). */
  readonly kMin?: number;
  /** Round the budget up to a multiple of this (default 1, no rounding). */
  readonly roundTo?: number;
}

/** The decode index slot of one sequence: `k` key indices per KV head, `indices [kvHeads, k]`. Order within a row does not matter. */
export interface DecodeSelection {
  readonly kvHeads: number;
  readonly k: number;
  readonly indices: Int32Array;
}

/**
 * The prefill index slot of one chunk: per KV head and query tile, the selected earlier keys.
 * `indices [kvHeads, tiles, kMax]`; tile `t` uses the first `counts[t]` entries of its row
 * (the rolling budget is the same for every head). Tile `t` is the chunk's `t`-th tile,
 * whose first query sits at `queryStart + t * tileSize`.
 */
export interface PrefillSelection {
  readonly kvHeads: number;
  readonly tiles: number;
  readonly tileSize: number;
  readonly kMax: number;
  readonly counts: Int32Array;
  readonly indices: Int32Array;
}

/** A head map `M[l]`: KV head `j` of a reuse layer reads the anchor's index set of KV head `headMap[j]`. */
export type HeadMap = ArrayLike<number>;

/** The result of an op that attends and selects: its output and the index slot it wrote. */
export interface SelectedOutput<S> {
  readonly out: Float64Array;
  readonly selection: S;
}
