import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  denseCausalPrefillAttention,
  denseDecodeAttention,
  sparseDecodeAttention,
  sparsePrefillAttention,
} from './attention.js';
import { KascadeRangeError } from './budget.js';
import { SelectionError, ShapeError } from './errors.js';
import {
  chunkArbitrary,
  decodeQuery,
  naiveAttend,
  prefillQuery,
  propertyRuns,
  randomDecode,
  randomPrefill,
  range,
  relativeError,
  rng,
  seedArbitrary,
  shapeArbitrary,
  shuffled,
  toShape,
} from './naive.test-support.js';
import { anchorDecodeTopk, anchorPrefillTopk } from './selection.js';
import type { DecodeSelection, PrefillSelection } from './types.js';

const shape = shapeArbitrary();
const chunk = chunkArbitrary();
const seed = seedArbitrary;
const runs = propertyRuns;

function naiveDenseDecode(inputs: ReturnType<typeof randomDecode>): number[] {
  const g = inputs.heads / inputs.kvHeads;
  return range(0, inputs.heads).flatMap((h) =>
    naiveAttend(inputs, decodeQuery(inputs, h), Math.floor(h / g), range(0, inputs.n)),
  );
}

function naiveDensePrefill(inputs: ReturnType<typeof randomPrefill>): number[] {
  const g = inputs.heads / inputs.kvHeads;
  const out: number[] = [];
  for (let h = 0; h < inputs.heads; h++)
    for (let i = 0; i < inputs.queries; i++)
      out.push(
        ...naiveAttend(
          inputs,
          prefillQuery(inputs, h, i),
          Math.floor(h / g),
          range(0, inputs.queryStart + i + 1),
        ),
      );
  return out;
}

function randomDecodeSelection(rows: number, n: number, k: number, s: number): DecodeSelection {
  const next = rng(s);
  const indices = new Int32Array(rows * k);
  for (let u = 0; u < rows; u++) indices.set(shuffled(n, next).slice(0, k), u * k);
  return { kvHeads: rows, k, indices };
}

/** Random prefill selection whose rows may also hold keys at or after the tile start (masked or diagonal). */
function randomPrefillSelection(
  rows: number,
  n: number,
  tiles: number,
  tileSize: number,
  s: number,
): PrefillSelection {
  const next = rng(s);
  const counts = Int32Array.from(range(0, tiles), () => Math.floor(next() * (n + 1)));
  const kMax = Math.max(0, ...counts);
  const indices = new Int32Array(rows * tiles * kMax).fill(-1);
  for (let u = 0; u < rows; u++)
    for (let t = 0; t < tiles; t++)
      indices.set(shuffled(n, next).slice(0, counts[t]), (u * tiles + t) * kMax);
  return { kvHeads: rows, tiles, tileSize, kMax, counts, indices };
}

describe('dense attention', () => {
  it('decode equals the naive float64 implementation', () => {
    fc.assert(
      fc.property(shape, fc.integer({ min: 1, max: 40 }), seed, (s, n, sd) => {
        const inputs = randomDecode(toShape(s), n, sd);
        expect(relativeError(denseDecodeAttention(inputs), naiveDenseDecode(inputs))).toBeLessThan(1e-12);
      }),
      runs,
    );
  });

  it('causal prefill equals the naive float64 implementation', () => {
    fc.assert(
      fc.property(shape, chunk, seed, (s, c, sd) => {
        const inputs = randomPrefill(toShape(s), c.queryStart, c.queries, c.tileSize, sd);
        expect(relativeError(denseCausalPrefillAttention(inputs), naiveDensePrefill(inputs))).toBeLessThan(
          1e-12,
        );
      }),
      runs,
    );
  });

  it('honours capacity (row stride) and an explicit scale', () => {
    const base = randomDecode({ heads: 4, kvHeads: 2, headDim: 3 }, 5, 7);
    const capacity = 8;
    const k = new Float32Array(2 * capacity * 3).fill(Number.NaN);
    const v = new Float32Array(2 * capacity * 3).fill(Number.NaN);
    for (let j = 0; j < 2; j++) {
      k.set(base.k.subarray(j * 15, j * 15 + 15), j * capacity * 3);
      v.set(base.v.subarray(j * 15, j * 15 + 15), j * capacity * 3);
    }
    const strided = denseDecodeAttention({ ...base, k, v, capacity, scale: 0.3 });
    expect(relativeError(strided, denseDecodeAttention({ ...base, scale: 0.3 }))).toBe(0);
    expect(relativeError(strided, denseDecodeAttention(base))).toBeGreaterThan(1e-6);
  });
});

describe('sparse attention', () => {
  it('decode equals naive attention restricted to the selected keys, through a head map', () => {
    fc.assert(
      fc.property(shape, fc.integer({ min: 1, max: 40 }), seed, fc.nat(), (s, n, sd, kSeed) => {
        const inputs = randomDecode(toShape(s), n, sd);
        const k = 1 + (kSeed % n);
        const selection = randomDecodeSelection(s.kvHeads, n, k, sd + 1);
        const headMap = range(0, s.kvHeads).map((j) => (j * 7 + sd) % s.kvHeads);
        const got = sparseDecodeAttention(inputs, selection, headMap);
        const want = range(0, inputs.heads).flatMap((h) => {
          const j = Math.floor(h / s.group);
          const row = Array.from(selection.indices.subarray(headMap[j] * k, headMap[j] * k + k));
          return naiveAttend(inputs, decodeQuery(inputs, h), j, row);
        });
        expect(relativeError(got, want)).toBeLessThan(1e-12);
      }),
      runs,
    );
  });

  it('prefill equals naive attention over (selected earlier keys) + (causal diagonal), masking the rest', () => {
    fc.assert(
      fc.property(shape, chunk, seed, (s, c, sd) => {
        const inputs = randomPrefill(toShape(s), c.queryStart, c.queries, c.tileSize, sd);
        const tiles = Math.ceil(c.queries / c.tileSize);
        const selection = randomPrefillSelection(s.kvHeads, inputs.n, tiles, c.tileSize, sd + 1);
        const headMap = range(0, s.kvHeads).map((j) => (j + sd) % s.kvHeads);
        const got = sparsePrefillAttention(inputs, selection, headMap);
        const want: number[] = [];
        for (let h = 0; h < inputs.heads; h++) {
          const j = Math.floor(h / s.group);
          for (let i = 0; i < c.queries; i++) {
            const t = Math.floor(i / c.tileSize);
            const start = c.queryStart + t * c.tileSize;
            const pos = c.queryStart + i;
            const base = (headMap[j] * tiles + t) * selection.kMax;
            const chosen = Array.from(selection.indices.subarray(base, base + selection.counts[t]));
            const visible = new Set([...chosen.filter((x) => x <= pos), ...range(start, pos + 1)]);
            want.push(...naiveAttend(inputs, prefillQuery(inputs, h, i), j, [...visible]));
          }
        }
        expect(relativeError(got, want)).toBeLessThan(1e-12);
      }),
      runs,
    );
  });

  it('a budget of at least n makes anchor sparse attention equal to dense (1e-12)', () => {
    fc.assert(
      fc.property(shape, chunk, seed, (s, c, sd) => {
        const pre = randomPrefill(toShape(s), c.queryStart, c.queries, c.tileSize, sd);
        const budget = { kMin: pre.n };
        const sparse = sparsePrefillAttention(pre, anchorPrefillTopk(pre, budget));
        expect(relativeError(sparse, denseCausalPrefillAttention(pre))).toBeLessThan(1e-12);
        const dec = randomDecode(toShape(s), pre.n, sd + 3);
        const sparseDecode = sparseDecodeAttention(dec, anchorDecodeTopk(dec, { percent: 100 }));
        expect(relativeError(sparseDecode, denseDecodeAttention(dec))).toBeLessThan(1e-12);
      }),
      runs,
    );
  });

  it('does not count a selected diagonal key twice', () => {
    const inputs = randomPrefill({ heads: 1, kvHeads: 1, headDim: 4 }, 4, 4, 4, 11);
    const withDiagonal: PrefillSelection = {
      kvHeads: 1,
      tiles: 1,
      tileSize: 4,
      kMax: 4,
      counts: Int32Array.of(4),
      indices: Int32Array.of(0, 4, 5, 7),
    };
    const clean: PrefillSelection = {
      ...withDiagonal,
      kMax: 1,
      counts: Int32Array.of(1),
      indices: Int32Array.of(0),
    };
    expect(
      relativeError(sparsePrefillAttention(inputs, withDiagonal), sparsePrefillAttention(inputs, clean)),
    ).toBe(0);
  });
});

describe('input validation', () => {
  const dec = randomDecode({ heads: 4, kvHeads: 2, headDim: 3 }, 6, 5);
  const pre = randomPrefill({ heads: 4, kvHeads: 2, headDim: 3 }, 4, 5, 4, 5);

  it('names the bad argument in a typed error', () => {
    const cases: [() => unknown, RegExp, typeof KascadeRangeError][] = [
      [
        () => denseDecodeAttention({ ...dec, heads: 3 }),
        /heads \(3\) must be a multiple of kvHeads \(2\)/,
        KascadeRangeError,
      ],
      [
        () => denseDecodeAttention({ ...dec, q: new Float32Array(5) }),
        /inputs\.q has length 5, expected heads \* headDim = 12/,
        ShapeError,
      ],
      [() => denseDecodeAttention({ ...dec, k: new Float32Array(3) }), /inputs\.k has length 3/, ShapeError],
      [
        () => denseDecodeAttention({ ...dec, k: new Uint16Array(dec.k.length) as unknown as Float32Array }),
        /inputs\.k must be a Float32Array or Float64Array, got Uint16Array/,
        ShapeError,
      ],
      [() => denseDecodeAttention({ ...dec, n: 0 }), /n must be a positive integer/, KascadeRangeError],
      [
        () => denseDecodeAttention({ ...dec, capacity: 5 }),
        /capacity \(5\) must be >= n \(6\)/,
        KascadeRangeError,
      ],
      [
        () => denseDecodeAttention({ ...dec, headDim: 0 }),
        /headDim must be a positive integer/,
        KascadeRangeError,
      ],
      [
        () => denseDecodeAttention({ ...dec, scale: Number.NaN }),
        /scale must be a finite number/,
        KascadeRangeError,
      ],
      [
        () => denseCausalPrefillAttention({ ...pre, queryStart: 2, queries: 7 }),
        /queryStart \(2\) must be a multiple of tileSize \(4\)/,
        KascadeRangeError,
      ],
      [
        () => denseCausalPrefillAttention({ ...pre, n: 8, capacity: 9 }),
        /n \(8\) must equal queryStart \+ queries/,
        KascadeRangeError,
      ],
      [
        () => denseCausalPrefillAttention({ ...pre, tileSize: 0 }),
        /tileSize must be a positive integer/,
        KascadeRangeError,
      ],
    ];
    for (const [call, message, type] of cases) {
      expect(call).toThrow(type);
      expect(call).toThrow(message);
    }
  });

  it('rejects bad selections and head maps', () => {
    const sel: DecodeSelection = { kvHeads: 2, k: 2, indices: Int32Array.of(0, 1, 2, 3) };
    expect(() => sparseDecodeAttention(dec, { ...sel, indices: Int32Array.of(0, 6, 2, 3) })).toThrow(
      /index 6 .* out of range \[0, 6\)/,
    );
    expect(() => sparseDecodeAttention(dec, { ...sel, indices: Int32Array.of(1, 1, 2, 3) })).toThrow(
      SelectionError,
    );
    expect(() => sparseDecodeAttention(dec, { ...sel, indices: Int32Array.of(1, 1, 2, 3) })).toThrow(
      /appears twice/,
    );
    expect(() => sparseDecodeAttention(dec, sel, [0, 2])).toThrow(/headMap\[1\] = 2/);
    expect(() => sparseDecodeAttention(dec, sel, [0])).toThrow(/headMap must have kvHeads = 2 entries/);
    expect(() => sparseDecodeAttention(dec, { kvHeads: 1, k: 2, indices: Int32Array.of(0, 1) })).toThrow(
      /pass a headMap/,
    );
    expect(() => sparseDecodeAttention(dec, { kvHeads: 2, k: 0, indices: new Int32Array(0) })).toThrow(
      /selection\.k is 0/,
    );
    expect(() => sparseDecodeAttention(dec, { ...sel, indices: Int32Array.of(0, 1, 2) })).toThrow(ShapeError);
    const psel = anchorPrefillTopk(pre);
    expect(() => sparsePrefillAttention(pre, { ...psel, tileSize: 2 })).toThrow(/selection\.tileSize \(2\)/);
    expect(() => sparsePrefillAttention(pre, { ...psel, counts: Int32Array.of(0, psel.kMax + 1) })).toThrow(
      /counts\[1\]/,
    );
    expect(() => sparseDecodeAttention(dec, psel as unknown as DecodeSelection)).toThrow(/prefill selection/);
    expect(() => sparsePrefillAttention(pre, sel as unknown as PrefillSelection)).toThrow(/PrefillSelection/);
  });
});
