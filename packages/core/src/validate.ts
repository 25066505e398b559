/**
 * Input checks shared by the reference ops (internal; not exported from the package).
 * Every failure is a typed error whose message names the op and the argument.
 */
import { KascadeRangeError } from './budget.js';
import { SelectionError, ShapeError } from './errors.js';
import type {
  AttentionShape,
  DecodeInputs,
  DecodeSelection,
  FloatArray,
  HeadMap,
  PrefillInputs,
  PrefillSelection,
} from './types.js';

/** Inputs after checking, with defaults filled in. */
export interface Resolved {
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Group size `g = heads / kvHeads`. */
  readonly group: number;
  readonly n: number;
  /** Row stride between KV heads, in tokens. */
  readonly capacity: number;
  readonly scale: number;
  readonly q: FloatArray;
  readonly k: FloatArray;
  readonly v: FloatArray;
}

export interface ResolvedPrefill extends Resolved {
  readonly queries: number;
  readonly queryStart: number;
  readonly tileSize: number;
  readonly tiles: number;
}

export function positiveInt(fn: string, name: string, value: unknown): number {
  if (!(typeof value === 'number' && Number.isInteger(value) && value >= 1)) {
    throw new KascadeRangeError(`${fn}: ${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

export function nonNegativeInt(fn: string, name: string, value: unknown): number {
  if (!(typeof value === 'number' && Number.isInteger(value) && value >= 0)) {
    throw new KascadeRangeError(`${fn}: ${name} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

function expectArray(fn: string, name: string, value: unknown, expected: number, how: string): void {
  if (!(value instanceof Float32Array || value instanceof Float64Array)) {
    const got = value == null ? String(value) : ((value as object).constructor?.name ?? typeof value);
    throw new ShapeError(
      `${fn}: ${name} must be a Float32Array or Float64Array, got ${got} (widen f16/bf16 bits with fromF16/fromBf16)`,
    );
  }
  const length = (value as FloatArray).length;
  if (length !== expected) {
    throw new ShapeError(`${fn}: ${name} has length ${length}, expected ${how} = ${expected}`);
  }
}

export function resolveShape(
  fn: string,
  shape: AttentionShape,
): { heads: number; kvHeads: number; headDim: number; group: number } {
  if (shape == null || typeof shape !== 'object') {
    throw new KascadeRangeError(`${fn}: inputs must be an object`);
  }
  const heads = positiveInt(fn, 'heads', shape.heads);
  const kvHeads = positiveInt(fn, 'kvHeads', shape.kvHeads);
  const headDim = positiveInt(fn, 'headDim', shape.headDim);
  if (heads % kvHeads !== 0) {
    throw new KascadeRangeError(`${fn}: heads (${heads}) must be a multiple of kvHeads (${kvHeads})`);
  }
  return { heads, kvHeads, headDim, group: heads / kvHeads };
}

function resolveBase(fn: string, inputs: DecodeInputs | PrefillInputs): Omit<Resolved, 'q'> {
  const { heads, kvHeads, headDim, group } = resolveShape(fn, inputs);
  const n = positiveInt(fn, 'n', inputs.n);
  const capacity = inputs.capacity === undefined ? n : positiveInt(fn, 'capacity', inputs.capacity);
  if (capacity < n) throw new KascadeRangeError(`${fn}: capacity (${capacity}) must be >= n (${n})`);
  const kvLength = kvHeads * capacity * headDim;
  const how = 'kvHeads * capacity * headDim';
  expectArray(fn, 'inputs.k', inputs.k, kvLength, how);
  expectArray(fn, 'inputs.v', inputs.v, kvLength, how);
  const scale = inputs.scale ?? 1 / Math.sqrt(headDim);
  if (!(typeof scale === 'number' && Number.isFinite(scale))) {
    throw new KascadeRangeError(`${fn}: scale must be a finite number, got ${String(scale)}`);
  }
  return { heads, kvHeads, headDim, group, n, capacity, scale, k: inputs.k, v: inputs.v };
}

export function resolveDecode(fn: string, inputs: DecodeInputs): Resolved {
  const base = resolveBase(fn, inputs);
  expectArray(fn, 'inputs.q', inputs.q, base.heads * base.headDim, 'heads * headDim');
  return { ...base, q: inputs.q };
}

export function resolvePrefill(fn: string, inputs: PrefillInputs): ResolvedPrefill {
  const base = resolveBase(fn, inputs);
  const queries = positiveInt(fn, 'queries', inputs.queries);
  const tileSize = positiveInt(fn, 'tileSize', inputs.tileSize);
  const queryStart = nonNegativeInt(fn, 'queryStart', inputs.queryStart);
  if (queryStart % tileSize !== 0) {
    throw new KascadeRangeError(
      `${fn}: queryStart (${queryStart}) must be a multiple of tileSize (${tileSize})`,
    );
  }
  if (base.n !== queryStart + queries) {
    throw new KascadeRangeError(
      `${fn}: n (${base.n}) must equal queryStart + queries (${queryStart} + ${queries})`,
    );
  }
  expectArray(fn, 'inputs.q', inputs.q, base.heads * queries * base.headDim, 'heads * queries * headDim');
  return {
    ...base,
    q: inputs.q,
    queries,
    queryStart,
    tileSize,
    tiles: Math.ceil(queries / tileSize),
  };
}

// Marks for duplicate detection, reused between calls (stamped, so never cleared).
let marks = new Int32Array(0);
let stamp = 0;

function checkRow(
  fn: string,
  indices: Int32Array,
  offset: number,
  count: number,
  n: number,
  where: string,
): void {
  if (marks.length < n) {
    marks = new Int32Array(Math.max(n, marks.length * 2));
    stamp = 0;
  }
  stamp++;
  if (stamp === 0x7fffffff) {
    marks.fill(0);
    stamp = 1;
  }
  for (let c = 0; c < count; c++) {
    const x = indices[offset + c];
    if (!(x >= 0 && x < n)) {
      throw new SelectionError(
        `${fn}: selection index ${x} at ${where}, entry ${c} is out of range [0, ${n})`,
      );
    }
    if (marks[x] === stamp) {
      throw new SelectionError(`${fn}: selection index ${x} appears twice at ${where}`);
    }
    marks[x] = stamp;
  }
}

function isPrefillSelection(selection: DecodeSelection | PrefillSelection): selection is PrefillSelection {
  return 'tiles' in selection && 'counts' in selection;
}

/**
 * Checks an index slot against `n` keys and `kvHeads` rows: shapes and lengths agree, every
 * used index is an integer in `[0, n)`, no row holds an index twice, and (prefill) every count is
 * in `[0, kMax]`. Throws {@link SelectionError} or {@link ShapeError} naming the problem.
 */
export function validateSelection(
  selection: DecodeSelection | PrefillSelection,
  n: number,
  kvHeads: number,
  fn = 'validateSelection',
): void {
  if (selection == null || typeof selection !== 'object') {
    throw new SelectionError(`${fn}: selection must be an object`);
  }
  positiveInt(fn, 'n', n);
  positiveInt(fn, 'kvHeads', kvHeads);
  if (selection.kvHeads !== kvHeads) {
    throw new ShapeError(`${fn}: selection.kvHeads is ${selection.kvHeads}, expected ${kvHeads}`);
  }
  if (!(selection.indices instanceof Int32Array)) {
    throw new ShapeError(`${fn}: selection.indices must be an Int32Array`);
  }
  if (isPrefillSelection(selection)) {
    const tiles = nonNegativeInt(fn, 'selection.tiles', selection.tiles);
    const kMax = nonNegativeInt(fn, 'selection.kMax', selection.kMax);
    positiveInt(fn, 'selection.tileSize', selection.tileSize);
    if (!(selection.counts instanceof Int32Array) || selection.counts.length !== tiles) {
      throw new ShapeError(`${fn}: selection.counts must be an Int32Array of length tiles = ${tiles}`);
    }
    const expected = kvHeads * tiles * kMax;
    if (selection.indices.length !== expected) {
      throw new ShapeError(
        `${fn}: selection.indices has length ${selection.indices.length}, expected kvHeads * tiles * kMax = ${expected}`,
      );
    }
    for (let t = 0; t < tiles; t++) {
      const count = selection.counts[t];
      if (!(count >= 0 && count <= kMax)) {
        throw new SelectionError(`${fn}: selection.counts[${t}] = ${count} is outside [0, kMax = ${kMax}]`);
      }
    }
    for (let j = 0; j < kvHeads; j++) {
      for (let t = 0; t < tiles; t++) {
        checkRow(
          fn,
          selection.indices,
          (j * tiles + t) * kMax,
          selection.counts[t],
          n,
          `kv head ${j}, tile ${t}`,
        );
      }
    }
  } else {
    const k = nonNegativeInt(fn, 'selection.k', selection.k);
    const expected = kvHeads * k;
    if (selection.indices.length !== expected) {
      throw new ShapeError(
        `${fn}: selection.indices has length ${selection.indices.length}, expected kvHeads * k = ${expected}`,
      );
    }
    for (let j = 0; j < kvHeads; j++) checkRow(fn, selection.indices, j * k, k, n, `kv head ${j}`);
  }
}

/**
 * Resolves a head map against the layer's `kvHeads` and the selection's rows; absent means
 * identity (and then the selection must have exactly `kvHeads` rows).
 */
export function resolveHeadMap(
  fn: string,
  headMap: HeadMap | undefined,
  kvHeads: number,
  selectionRows: number,
): Int32Array {
  const map = new Int32Array(kvHeads);
  if (headMap === undefined) {
    if (selectionRows !== kvHeads) {
      throw new ShapeError(
        `${fn}: selection has ${selectionRows} KV head rows but the layer has ${kvHeads}; pass a headMap`,
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
    if (!(Number.isInteger(u) && u >= 0 && u < selectionRows)) {
      throw new SelectionError(`${fn}: headMap[${j}] = ${u} is outside [0, ${selectionRows})`);
    }
    map[j] = u;
  }
  return map;
}
