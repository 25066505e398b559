import { KascadeRangeError } from './budget.js';
import { SelectionError, ShapeError } from './errors.js';
import { attendBlock } from './kernel.js';
import type { DecodeInputs, DecodeSelection, HeadMap, PrefillInputs, PrefillSelection } from './types.js';
import { positiveInt, resolveDecode, resolveHeadMap, resolvePrefill, validateSelection } from './validate.js';

/** Dense decode attention: each query head attends all `n` keys of its KV head. Output `[heads, headDim]`. */
export function denseDecodeAttention(inputs: DecodeInputs): Float64Array {
  const r = resolveDecode('denseDecodeAttention', inputs);
  const { heads, kvHeads, headDim: d, group, n } = r;
  const out = new Float64Array(heads * d);
  const offs = new Int32Array(group);
  const counts = new Int32Array(group).fill(n);
  for (let j = 0; j < kvHeads; j++) {
    for (let hh = 0; hh < group; hh++) offs[hh] = (j * group + hh) * d;
    attendBlock(r, offs, group, j, null, counts, out, offs);
  }
  return out;
}

/**
 * Dense causal prefill attention: query `i` (position `queryStart + i`) attends keys
 * `0 .. queryStart + i`. Output `[heads, queries, headDim]`.
 */
export function denseCausalPrefillAttention(inputs: PrefillInputs): Float64Array {
  const r = resolvePrefill('denseCausalPrefillAttention', inputs);
  const { heads, kvHeads, headDim: d, group, n, queries, queryStart, tileSize: T, tiles } = r;
  const out = new Float64Array(heads * queries * d);
  const offs = new Int32Array(group * T);
  const counts = new Int32Array(group * T);
  for (let j = 0; j < kvHeads; j++) {
    for (let t = 0; t < tiles; t++) {
      const start = queryStart + t * T;
      const rows = blockRows(j, group, start, Math.min(start + T, n), queries, queryStart, d, offs, counts);
      attendBlock(r, offs, rows, j, null, counts, out, offs);
    }
  }
  return out;
}

/**
 * Fills the rows of one (KV head, tile) block: query head `hh` of the group, position `pos`,
 * row `hh * tileRows + (pos - start)`; its causal count is `pos + 1`. Returns the row count.
 */
function blockRows(
  j: number,
  group: number,
  start: number,
  end: number,
  queries: number,
  queryStart: number,
  d: number,
  offs: Int32Array,
  counts: Int32Array,
): number {
  const tileRows = end - start;
  for (let hh = 0; hh < group; hh++) {
    const h = j * group + hh;
    for (let pos = start; pos < end; pos++) {
      const rr = hh * tileRows + pos - start;
      offs[rr] = (h * queries + pos - queryStart) * d;
      counts[rr] = pos + 1;
    }
  }
  return group * tileRows;
}

/**
 * Sparse decode attention: query head `h` of KV head `j` attends exactly the keys of selection
 * row `headMap[j]` (identity when absent), renormalised. Equal to dense attention restricted to
 * those keys. Output `[heads, headDim]`. An empty selection (`k = 0`) is an error: the token
 * would attend nothing.
 */
export function sparseDecodeAttention(
  inputs: DecodeInputs,
  selection: DecodeSelection,
  headMap?: HeadMap,
): Float64Array {
  const fn = 'sparseDecodeAttention';
  const r = resolveDecode(fn, inputs);
  if (selection != null && 'tiles' in selection) {
    throw new SelectionError(`${fn}: got a prefill selection (it has tiles); pass a DecodeSelection`);
  }
  const rows = positiveInt(fn, 'selection.kvHeads', selection?.kvHeads);
  validateSelection(selection, r.n, rows, fn);
  const map = resolveHeadMap(fn, headMap, r.kvHeads, rows);
  const k = selection.k;
  if (k === 0)
    throw new KascadeRangeError(`${fn}: selection.k is 0; a decode token must attend at least one key`);
  const { heads, kvHeads, headDim: d, group } = r;
  const out = new Float64Array(heads * d);
  const offs = new Int32Array(group);
  const counts = new Int32Array(group).fill(k);
  for (let j = 0; j < kvHeads; j++) {
    for (let hh = 0; hh < group; hh++) offs[hh] = (j * group + hh) * d;
    const row = map[j];
    attendBlock(r, offs, group, j, selection.indices.subarray(row * k, row * k + k), counts, out, offs);
  }
  return out;
}

/**
 * Sparse prefill attention: query `i` of tile `t` in query head `h` of KV head `j` attends the
 * union of the first `counts[t]` keys of selection row `(headMap[j], t)` and the tile's own
 * diagonal keys up to and including its position, renormalised. Selected keys at or after the
 * tile's start are covered by the diagonal where visible and masked where not (never counted
 * twice). Output `[heads, queries, headDim]`.
 */
export function sparsePrefillAttention(
  inputs: PrefillInputs,
  selection: PrefillSelection,
  headMap?: HeadMap,
): Float64Array {
  const fn = 'sparsePrefillAttention';
  const r = resolvePrefill(fn, inputs);
  if (selection == null || !('tiles' in selection)) {
    throw new SelectionError(`${fn}: selection must be a PrefillSelection (with tiles, counts, kMax)`);
  }
  const rows = positiveInt(fn, 'selection.kvHeads', selection.kvHeads);
  if (selection.tileSize !== r.tileSize) {
    throw new ShapeError(
      `${fn}: selection.tileSize (${selection.tileSize}) differs from tileSize (${r.tileSize})`,
    );
  }
  if (selection.tiles !== r.tiles) {
    throw new ShapeError(
      `${fn}: selection.tiles (${selection.tiles}) differs from ceil(queries / tileSize) = ${r.tiles}`,
    );
  }
  validateSelection(selection, r.n, rows, fn);
  const map = resolveHeadMap(fn, headMap, r.kvHeads, rows);
  const { heads, kvHeads, headDim: d, group, n, queries, queryStart, tileSize: T, tiles } = r;
  const { kMax, counts: counts_, indices } = selection;
  const out = new Float64Array(heads * queries * d);
  const keys = new Int32Array(kMax + T);
  const offs = new Int32Array(group * T);
  const counts = new Int32Array(group * T);
  for (let j = 0; j < kvHeads; j++) {
    const row = map[j];
    for (let t = 0; t < tiles; t++) {
      const start = queryStart + t * T;
      const end = Math.min(start + T, n);
      // Earlier selected keys, then the diagonal tile in order.
      let selected = 0;
      const base = (row * tiles + t) * kMax;
      for (let c = 0; c < counts_[t]; c++) {
        const x = indices[base + c];
        if (x < start) keys[selected++] = x;
      }
      for (let x = start; x < end; x++) keys[selected + x - start] = x;
      const rows = blockRows(j, group, start, end, queries, queryStart, d, offs, counts);
      // Row counts: the selected keys plus the causal part of the diagonal.
      for (let rr = 0; rr < rows; rr++) counts[rr] = selected + counts[rr] - start;
      attendBlock(r, offs, rows, j, keys, counts, out, offs);
    }
  }
  return out;
}
