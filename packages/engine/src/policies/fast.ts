/**
 * The `fast` attention ops: the same semantics as the `@kascade/core` reference (dense and
 * sparse attention, the diagonal tile, the rolling budget, head-aware and all-heads-pooled
 * post-softmax Top-k with ties to the lower index), computed in float32 on the WebAssembly
 * SIMD kernels of `model/attention-wasm.ts`. Every op works on blocks of query rows that
 * share a KV head (a GQA group, times a query tile in prefill), so each key is read once
 * per block. Selections pool float32 probabilities, so where two keys' pooled scores are
 * within float32 rounding of each other the set may differ from the float64 reference's
 * (documented; the tests check the selected scores against the reference threshold).
 */
import {
  type BudgetOptions,
  type DecodeInputs,
  type DecodeSelection,
  type HeadMap,
  KascadeRangeError,
  type PrefillInputs,
  type PrefillSelection,
  prefillTileBudget,
  SelectionError,
  ShapeError,
  topkBudget,
  topkIndices,
  validateSelection,
} from '@kascade/core';
import { type AttentionWorkspace, attentionWorkspace } from '../model/attention-wasm.js';
import type { AttendedSelection, AttentionOps } from './ops.js';

/** Tunables, mutable only so tests can force the row-splitting path at small sizes. */
export const fastLimits = {
  /** Most bytes of scores one block holds; larger blocks are split by rows (multiples of 4). */
  scoreBytes: 32 * 2 ** 20,
};

type Floats = Float32Array | Float64Array;

interface Checked {
  readonly heads: number;
  readonly kvHeads: number;
  readonly d: number;
  readonly group: number;
  readonly n: number;
  readonly cap: number;
  readonly scale: number;
  readonly q: Floats;
  readonly k: Floats;
  readonly v: Floats;
}

interface CheckedPrefill extends Checked {
  readonly queries: number;
  readonly queryStart: number;
  readonly tileSize: number;
  readonly tiles: number;
}

function int(fn: string, name: string, value: unknown, min: number): number {
  if (!(typeof value === 'number' && Number.isInteger(value) && value >= min)) {
    const what = min === 0 ? 'a non-negative integer' : 'a positive integer';
    throw new KascadeRangeError(`${fn}: ${name} must be ${what}, got ${String(value)}`);
  }
  return value;
}

function floats(fn: string, name: string, value: unknown, length: number, how: string): Floats {
  if (!(value instanceof Float32Array || value instanceof Float64Array)) {
    throw new ShapeError(`${fn}: ${name} must be a Float32Array or Float64Array`);
  }
  if (value.length !== length) {
    throw new ShapeError(`${fn}: ${name} has length ${value.length}, expected ${how} = ${length}`);
  }
  return value;
}

/** The same checks as the core reference ops, with the same error types. */
function check(fn: string, inputs: DecodeInputs | PrefillInputs, queries: number): Checked {
  if (inputs == null || typeof inputs !== 'object')
    throw new KascadeRangeError(`${fn}: inputs must be an object`);
  const heads = int(fn, 'heads', inputs.heads, 1);
  const kvHeads = int(fn, 'kvHeads', inputs.kvHeads, 1);
  const d = int(fn, 'headDim', inputs.headDim, 1);
  if (heads % kvHeads !== 0) {
    throw new KascadeRangeError(`${fn}: heads (${heads}) must be a multiple of kvHeads (${kvHeads})`);
  }
  const n = int(fn, 'n', inputs.n, 1);
  const cap = inputs.capacity === undefined ? n : int(fn, 'capacity', inputs.capacity, 1);
  if (cap < n) throw new KascadeRangeError(`${fn}: capacity (${cap}) must be >= n (${n})`);
  const kvLength = kvHeads * cap * d;
  const k = floats(fn, 'inputs.k', inputs.k, kvLength, 'kvHeads * capacity * headDim');
  const v = floats(fn, 'inputs.v', inputs.v, kvLength, 'kvHeads * capacity * headDim');
  const scale = inputs.scale ?? 1 / Math.sqrt(d);
  if (!(typeof scale === 'number' && Number.isFinite(scale))) {
    throw new KascadeRangeError(`${fn}: scale must be a finite number, got ${String(scale)}`);
  }
  const q = floats(
    fn,
    'inputs.q',
    inputs.q,
    heads * queries * d,
    queries === 1 && !('queries' in inputs) ? 'heads * headDim' : 'heads * queries * headDim',
  );
  return { heads, kvHeads, d, group: heads / kvHeads, n, cap, scale, q, k, v };
}

function checkDecode(fn: string, inputs: DecodeInputs): Checked {
  return check(fn, inputs, 1);
}

function checkPrefill(fn: string, inputs: PrefillInputs): CheckedPrefill {
  if (inputs == null || typeof inputs !== 'object')
    throw new KascadeRangeError(`${fn}: inputs must be an object`);
  const queries = int(fn, 'queries', inputs.queries, 1);
  const tileSize = int(fn, 'tileSize', inputs.tileSize, 1);
  const queryStart = int(fn, 'queryStart', inputs.queryStart, 0);
  if (queryStart % tileSize !== 0) {
    throw new KascadeRangeError(
      `${fn}: queryStart (${queryStart}) must be a multiple of tileSize (${tileSize})`,
    );
  }
  const base = check(fn, inputs, queries);
  if (base.n !== queryStart + queries) {
    throw new KascadeRangeError(
      `${fn}: n (${base.n}) must equal queryStart + queries (${queryStart} + ${queries})`,
    );
  }
  return { ...base, queries, queryStart, tileSize, tiles: Math.ceil(queries / tileSize) };
}

function headMapOf(fn: string, headMap: HeadMap | undefined, kvHeads: number, rows: number): Int32Array {
  const map = new Int32Array(kvHeads);
  if (headMap === undefined) {
    if (rows !== kvHeads) {
      throw new ShapeError(
        `${fn}: selection has ${rows} KV head rows but the layer has ${kvHeads}; pass a headMap`,
      );
    }
    for (let j = 0; j < kvHeads; j++) map[j] = j;
    return map;
  }
  if (headMap == null || typeof headMap.length !== 'number' || headMap.length !== kvHeads) {
    throw new ShapeError(`${fn}: headMap must have kvHeads = ${kvHeads} entries, got ${headMap?.length}`);
  }
  for (let j = 0; j < kvHeads; j++) {
    const u = headMap[j];
    if (!(Number.isInteger(u) && u! >= 0 && u! < rows)) {
      throw new SelectionError(`${fn}: headMap[${j}] = ${u} is outside [0, ${rows})`);
    }
    map[j] = u!;
  }
  return map;
}

/** Per-row arrays of one (KV head, tile) block, grown as needed. */
class Rows {
  qOffs = new Int32Array(0);
  counts = new Int32Array(0);
  reserve(rows: number): void {
    if (this.qOffs.length < rows) {
      this.qOffs = new Int32Array(rows);
      this.counts = new Int32Array(rows);
    }
  }
}

/**
 * Runs rows `0 .. rows - 1` of `rr` on KV head `kvBase` in sub-blocks that bound the scores:
 * the output (rows' outputs go where their queries are: the layouts match) and/or pooling
 * into `pool[0 .. poolLength - 1]`. Returns the pooled mass on list entries from `poolLength` on.
 */
function runBlock(
  ws: AttentionWorkspace,
  c: Checked,
  rr: Rows,
  rows: number,
  kvBase: number,
  keys: Int32Array | null,
  keyCount: number,
  out: Floats | null,
  pool: Float32Array | null,
  poolLength: number,
): number {
  const perBlock = Math.max(4, Math.floor(fastLimits.scoreBytes / (Math.ceil(keyCount / 16) * 64)) & ~3);
  let rest = 0;
  for (let first = 0; first < rows; first += perBlock) {
    const count = Math.min(perBlock, rows - first);
    const qOffs = first === 0 && count === rows ? rr.qOffs : rr.qOffs.subarray(first, first + count);
    ws.run(
      {
        q: c.q,
        qOffs,
        rows: count,
        k: c.k,
        v: c.v,
        kvBase,
        keys,
        keyCount,
        counts: first === 0 && count === rows ? rr.counts : rr.counts.subarray(first, first + count),
        scale: c.scale,
      },
      out !== null,
    );
    if (out) ws.output(out, qOffs);
    if (pool) rest += ws.pool(pool, poolLength);
  }
  return rest;
}

/** Fills the rows of tile `t` on KV head `j` (dense causal counts); returns the row count. */
function tileRows(c: CheckedPrefill, rr: Rows, j: number, t: number, extra: number): number {
  const start = c.queryStart + t * c.tileSize;
  const end = Math.min(start + c.tileSize, c.n);
  const tr = end - start;
  rr.reserve(c.group * tr);
  for (let hh = 0; hh < c.group; hh++) {
    const h = j * c.group + hh;
    for (let i = 0; i < tr; i++) {
      const r = hh * tr + i;
      rr.qOffs[r] = (h * c.queries + start + i - c.queryStart) * c.d;
      rr.counts[r] = extra + i + 1;
    }
  }
  return c.group * tr;
}

function decodeRows(c: Checked, rr: Rows, j: number, count: number): number {
  rr.reserve(c.group);
  for (let hh = 0; hh < c.group; hh++) {
    rr.qOffs[hh] = (j * c.group + hh) * c.d;
    rr.counts[hh] = count;
  }
  return c.group;
}

const cache = new Map<number, AttentionOps | null>();

/** The ops on this thread's workspace for `headDim`, or `undefined` where the kernels cannot run. */
export function fastAttentionOps(headDim: number): AttentionOps | undefined {
  let ops = cache.get(headDim);
  if (ops === undefined) {
    ops = createFastOps(headDim) ?? null;
    cache.set(headDim, ops);
  }
  return ops ?? undefined;
}

function createFastOps(headDim: number): AttentionOps | undefined {
  const ws = attentionWorkspace(headDim);
  if (!ws) return undefined;
  const rr = new Rows();
  let pool = new Float32Array(0);
  const poolOf = (n: number) => {
    if (pool.length < n) pool = new Float32Array(Math.max(n, pool.length * 2));
    pool.fill(0, 0, n);
    return pool;
  };
  const checkDim = (fn: string, c: Checked) => {
    if (c.d !== headDim)
      throw new ShapeError(`${fn}: headDim ${c.d} differs from the ops' headDim ${headDim}`);
  };

  /** Dense causal attention of a prefill chunk, optionally pooling each tile for the anchor Top-k. */
  const prefillDense = (
    fn: string,
    inputs: PrefillInputs,
    withOut: boolean,
    budget: BudgetOptions | null,
    pooledHeads: 'group' | 'all',
  ): { out: Float32Array | null; selection: PrefillSelection | null } => {
    const c = checkPrefill(fn, inputs);
    checkDim(fn, c);
    const { kvHeads, tiles, tileSize, queryStart, cap, d } = c;
    const out = withOut ? new Float32Array(c.heads * c.queries * d) : null;
    let counts: Int32Array | null = null;
    let indices: Int32Array | null = null;
    let kMax = 0;
    if (budget) {
      counts = new Int32Array(tiles);
      for (let t = 0; t < tiles; t++) {
        counts[t] = prefillTileBudget(queryStart + t * tileSize, budget);
        if (counts[t]! > kMax) kMax = counts[t]!;
      }
      indices = new Int32Array(kvHeads * tiles * kMax).fill(-1);
    }
    for (let t = 0; t < tiles; t++) {
      const start = queryStart + t * tileSize;
      const end = Math.min(start + tileSize, c.n);
      const kt = counts ? counts[t]! : 0;
      // The budget takes every earlier key while s <= kMin: no scores needed to pick them.
      const trivial = kt >= start;
      const pooling = counts !== null && kt > 0 && !trivial;
      if (!withOut && !pooling) {
        if (indices && kt > 0)
          for (let j = 0; j < kvHeads; j++) fillRange(indices, (j * tiles + t) * kMax, kt);
        continue;
      }
      const shared = pooling && pooledHeads === 'all' ? poolOf(start) : null;
      for (let j = 0; j < kvHeads; j++) {
        const rows = tileRows(c, rr, j, t, start);
        const into = pooling ? (shared ?? poolOf(start)) : null;
        runBlock(ws, c, rr, rows, j * cap * d, null, end, out, into, start);
        if (indices && pooledHeads === 'group') {
          if (pooling) indices.set(topkIndices(into!, kt, start), (j * tiles + t) * kMax);
          else if (kt > 0) fillRange(indices, (j * tiles + t) * kMax, kt);
        }
      }
      if (indices && pooledHeads === 'all') {
        const chosen = pooling ? topkIndices(shared!, kt, start) : null;
        for (let j = 0; j < kvHeads; j++) {
          if (chosen) indices.set(chosen, (j * tiles + t) * kMax);
          else if (kt > 0) fillRange(indices, (j * tiles + t) * kMax, kt);
        }
      }
    }
    const selection = counts && indices ? { kvHeads, tiles, tileSize, kMax, counts, indices } : null;
    return { out, selection };
  };

  /** Dense decode attention, optionally pooling each group (or all heads) for the Top-k. */
  const decodeDense = (
    fn: string,
    inputs: DecodeInputs,
    withOut: boolean,
    budget: BudgetOptions | null,
    pooledHeads: 'group' | 'all',
  ): { out: Float32Array | null; selection: DecodeSelection | null } => {
    const c = checkDecode(fn, inputs);
    checkDim(fn, c);
    const { kvHeads, n, cap, d } = c;
    const out = withOut ? new Float32Array(c.heads * d) : null;
    const k = budget ? topkBudget(n, budget) : 0;
    const indices = budget ? new Int32Array(kvHeads * k) : null;
    const pooling = budget !== null && k < n;
    const shared = pooling && pooledHeads === 'all' ? poolOf(n) : null;
    for (let j = 0; j < kvHeads; j++) {
      if (!withOut && !pooling) break;
      const rows = decodeRows(c, rr, j, n);
      const into = pooling ? (shared ?? poolOf(n)) : null;
      runBlock(ws, c, rr, rows, j * cap * d, null, n, out, into, n);
      if (indices && pooledHeads === 'group' && pooling) indices.set(topkIndices(into!, k, n), j * k);
    }
    if (indices) {
      const chosen = pooling && pooledHeads === 'all' ? topkIndices(shared!, k, n) : null;
      for (let j = 0; j < kvHeads; j++) {
        if (!pooling) fillRange(indices, j * k, k);
        else if (chosen) indices.set(chosen, j * k);
      }
    }
    return { out, selection: indices ? { kvHeads, k, indices } : null };
  };

  const ops: AttentionOps = {
    impl: 'fast',
    denseDecode: (inputs) => decodeDense('denseDecodeAttention', inputs, true, null, 'group').out!,
    denseCausalPrefill: (inputs) =>
      prefillDense('denseCausalPrefillAttention', inputs, true, null, 'group').out!,
    anchorDecodeTopk: (inputs, budget) =>
      decodeDense('anchorDecodeTopk', inputs, false, budget, 'group').selection!,
    allHeadsPooledDecodeTopk: (inputs, budget) =>
      decodeDense('allHeadsPooledDecodeTopk', inputs, false, budget, 'all').selection!,
    anchorPrefillTopk: (inputs, budget) =>
      prefillDense('anchorPrefillTopk', inputs, false, budget, 'group').selection!,
    allHeadsPooledPrefillTopk: (inputs, budget) =>
      prefillDense('allHeadsPooledPrefillTopk', inputs, false, budget, 'all').selection!,
    denseAnchorDecode(inputs, budget): AttendedSelection<DecodeSelection> {
      const r = decodeDense('denseAnchorDecode', inputs, true, budget, 'group');
      return { out: r.out!, selection: r.selection! };
    },
    denseAnchorPrefill(inputs, budget): AttendedSelection<PrefillSelection> {
      const r = prefillDense('denseAnchorPrefill', inputs, true, budget, 'group');
      return { out: r.out!, selection: r.selection! };
    },

    densePrefillPooled(inputs) {
      const fn = 'densePrefillPooled';
      const c = checkPrefill(fn, inputs);
      checkDim(fn, c);
      const { kvHeads, tiles, tileSize, queryStart, cap, d, n } = c;
      const out = new Float32Array(c.heads * c.queries * d);
      const scores = new Float32Array(kvHeads * tiles * n);
      const diagonalMass = new Float64Array(kvHeads * tiles);
      for (let j = 0; j < kvHeads; j++) {
        for (let t = 0; t < tiles; t++) {
          const start = queryStart + t * tileSize;
          const end = Math.min(start + tileSize, n);
          const rows = tileRows(c, rr, j, t, start);
          const row = scores.subarray((j * tiles + t) * n, (j * tiles + t + 1) * n);
          diagonalMass[j * tiles + t] = runBlock(ws, c, rr, rows, j * cap * d, null, end, out, row, start);
        }
      }
      return { out, pooled: { scores, diagonalMass, tiles } };
    },

    sparseDecode(inputs, selection, headMap) {
      const fn = 'sparseDecodeAttention';
      const c = checkDecode(fn, inputs);
      checkDim(fn, c);
      if (selection != null && 'tiles' in selection) {
        throw new SelectionError(`${fn}: got a prefill selection (it has tiles); pass a DecodeSelection`);
      }
      const selRows = int(fn, 'selection.kvHeads', selection?.kvHeads, 1);
      validateSelection(selection, c.n, selRows, fn);
      const map = headMapOf(fn, headMap, c.kvHeads, selRows);
      const k = selection.k;
      if (k === 0)
        throw new KascadeRangeError(`${fn}: selection.k is 0; a decode token must attend at least one key`);
      const out = new Float32Array(c.heads * c.d);
      for (let j = 0; j < c.kvHeads; j++) {
        const rows = decodeRows(c, rr, j, k);
        const row = map[j]!;
        const keys = selection.indices.subarray(row * k, row * k + k);
        runBlock(ws, c, rr, rows, j * c.cap * c.d, keys, k, out, null, 0);
      }
      return out;
    },

    sparsePrefill(inputs, selection, headMap) {
      const fn = 'sparsePrefillAttention';
      const c = checkPrefill(fn, inputs);
      checkDim(fn, c);
      if (selection == null || !('tiles' in selection)) {
        throw new SelectionError(`${fn}: selection must be a PrefillSelection (with tiles, counts, kMax)`);
      }
      const selRows = int(fn, 'selection.kvHeads', selection.kvHeads, 1);
      if (selection.tileSize !== c.tileSize) {
        throw new ShapeError(
          `${fn}: selection.tileSize (${selection.tileSize}) differs from tileSize (${c.tileSize})`,
        );
      }
      if (selection.tiles !== c.tiles) {
        throw new ShapeError(
          `${fn}: selection.tiles (${selection.tiles}) differs from ceil(queries / tileSize) = ${c.tiles}`,
        );
      }
      validateSelection(selection, c.n, selRows, fn);
      const map = headMapOf(fn, headMap, c.kvHeads, selRows);
      const { tiles, tileSize, queryStart, kvHeads, cap, d } = c;
      const { kMax, counts, indices } = selection;
      const out = new Float32Array(c.heads * c.queries * d);
      let keys = new Int32Array(kMax + tileSize);
      for (let j = 0; j < kvHeads; j++) {
        const row = map[j]!;
        for (let t = 0; t < tiles; t++) {
          const start = queryStart + t * tileSize;
          const end = Math.min(start + tileSize, c.n);
          if (keys.length < kMax + tileSize) keys = new Int32Array(kMax + tileSize);
          // Earlier selected keys, then the diagonal tile in order (selected keys at or after
          // the tile's start are covered by the diagonal, never counted twice).
          let selected = 0;
          const base = (row * tiles + t) * kMax;
          for (let e = 0; e < counts[t]!; e++) {
            const x = indices[base + e]!;
            if (x < start) keys[selected++] = x;
          }
          for (let x = start; x < end; x++) keys[selected + x - start] = x;
          const rows = tileRows(c, rr, j, t, selected);
          runBlock(ws, c, rr, rows, j * cap * d, keys, selected + end - start, out, null, 0);
        }
      }
      return out;
    },
  };
  return ops;
}

/** `a[at .. at + count - 1] = 0 .. count - 1` (the whole prefix: every earlier key selected). */
function fillRange(a: Int32Array, at: number, count: number): void {
  for (let i = 0; i < count; i++) a[at + i] = i;
}
