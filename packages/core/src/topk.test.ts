import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KascadeRangeError } from './budget.js';
import { sortTopk } from './naive.test-support.js';
import { topkIndices } from './topk.js';

// Scores with many ties, NaN, infinities and signed zeros.
const score = fc.oneof(
  { weight: 6, arbitrary: fc.double({ noNaN: true, min: -1e6, max: 1e6 }) },
  { weight: 3, arbitrary: fc.integer({ min: -3, max: 3 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 0),
  },
);

describe('topkIndices', () => {
  it('equals a sort-based oracle (ties: lower index; NaN lowest) on random scores', () => {
    let checked = 0;
    fc.assert(
      fc.property(fc.array(score, { minLength: 0, maxLength: 300 }), fc.nat(320), (values, k) => {
        const got = Array.from(topkIndices(values, k));
        expect(got).toEqual(sortTopk(values, k));
        checked++;
      }),
      { numRuns: 400 },
    );
    expect(checked).toBe(400);
  });

  it('respects length: only the first `length` scores compete', () => {
    fc.assert(
      fc.property(
        fc.array(score, { minLength: 1, maxLength: 200 }),
        fc.nat(210),
        fc.nat(),
        (values, k, l) => {
          const length = l % (values.length + 1);
          expect(Array.from(topkIndices(Float64Array.from(values), k, length))).toEqual(
            sortTopk(values, k, length),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('selects correctly past the sampling threshold (n > 600) on Float32Array input', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 601, max: 5000 }),
        fc.nat(),
        fc.integer({ min: 1, max: 50 }),
        (n, kSeed, distinct) => {
          // Few distinct values force heavy ties through the selection's partitioning.
          const values = new Float32Array(n);
          for (let i = 0; i < n; i++) values[i] = ((i * 2654435761) >>> 0) % distinct;
          const k = 1 + (kSeed % n);
          const got = topkIndices(values, k);
          expect(Array.from(got)).toEqual(sortTopk(values, k));
        },
      ),
      { numRuns: 30 },
    );
  });

  it('has the FlashInfer-style properties on a large random row', () => {
    const n = 131_072;
    const k = 13_107;
    const values = new Float64Array(n);
    for (let i = 0; i < n; i++) values[i] = Math.sin(i * 12.9898) * 43_758.5453;
    const got = topkIndices(values, k);
    expect(got.length).toBe(k);
    const picked = new Uint8Array(n);
    for (let c = 0; c < k; c++) {
      expect(got[c]).toBeGreaterThanOrEqual(0);
      expect(got[c]).toBeLessThan(n);
      if (c > 0) expect(got[c]).toBeGreaterThan(got[c - 1]); // ascending, so no duplicates
      picked[got[c]] = 1;
    }
    let minPicked = Number.POSITIVE_INFINITY;
    let maxUnpicked = Number.NEGATIVE_INFINITY;
    for (let x = 0; x < n; x++) {
      if (picked[x]) minPicked = Math.min(minPicked, values[x]);
      else maxUnpicked = Math.max(maxUnpicked, values[x]);
    }
    expect(minPicked).toBeGreaterThanOrEqual(maxUnpicked);
  });

  it('handles the edges: k = 0, k >= length, all equal, sorted and reversed input', () => {
    expect(Array.from(topkIndices([3, 1, 2], 0))).toEqual([]);
    expect(Array.from(topkIndices([3, 1, 2], 3))).toEqual([0, 1, 2]);
    expect(Array.from(topkIndices([3, 1, 2], 99))).toEqual([0, 1, 2]);
    expect(Array.from(topkIndices([], 5))).toEqual([]);
    expect(Array.from(topkIndices([5, 5, 5, 5], 2))).toEqual([0, 1]);
    expect(Array.from(topkIndices([Number.NaN, 1, Number.NaN, 0], 3))).toEqual([0, 1, 3]);
    expect(Array.from(topkIndices([Number.NaN, Number.NEGATIVE_INFINITY], 1))).toEqual([1]);
    expect(Array.from(topkIndices([-0, 0, -0], 2))).toEqual([0, 1]);
    const up = Float64Array.from({ length: 2000 }, (_, i) => i);
    expect(Array.from(topkIndices(up, 3))).toEqual([1997, 1998, 1999]);
    const down = Float64Array.from({ length: 2000 }, (_, i) => -i);
    expect(Array.from(topkIndices(down, 3))).toEqual([0, 1, 2]);
  });

  it('rejects bad k and length with a typed error naming them', () => {
    expect(() => topkIndices([1, 2], -1)).toThrow(KascadeRangeError);
    expect(() => topkIndices([1, 2], 1.5)).toThrow(/k must be/);
    expect(() => topkIndices([1, 2], 1, 3)).toThrow(/length must be/);
    expect(() => topkIndices([1, 2], 1, -1)).toThrow(KascadeRangeError);
  });
});
