import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ShapeError } from './errors.js';
import { poisoned, relativeError } from './naive.test-support.js';
import { softmax } from './softmax.js';

describe('softmax', () => {
  it('matches exp(x) / sum exp(x) on moderate logits and sums to 1', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ noNaN: true, min: -30, max: 30 }), { minLength: 1, maxLength: 64 }),
        (x) => {
          const out = softmax(x, poisoned(x.length));
          const e = x.map(Math.exp);
          const total = e.reduce((s, y) => s + y, 0);
          expect(
            relativeError(
              out,
              e.map((y) => y / total),
            ),
          ).toBeLessThan(1e-13);
          expect(out.reduce((s, y) => s + y, 0)).toBeCloseTo(1, 12);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('is stable for huge logits (shift invariance)', () => {
    const x = [1000, 1001, 999];
    const shifted = softmax(x);
    const plain = softmax([0, 1, -1]);
    expect(relativeError(shifted, plain)).toBeLessThan(1e-14);
    expect(Array.from(shifted).every(Number.isFinite)).toBe(true);
  });

  it('handles masked, infinite, NaN and empty rows', () => {
    expect(Array.from(softmax([0, Number.NEGATIVE_INFINITY]))).toEqual([1, 0]);
    expect(Array.from(softmax([Number.POSITIVE_INFINITY, 3, Number.POSITIVE_INFINITY]))).toEqual([
      0.5, 0, 0.5,
    ]);
    expect(
      Array.from(softmax([Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY])).every(Number.isNaN),
    ).toBe(true);
    expect(Array.from(softmax([1, Number.NaN])).every(Number.isNaN)).toBe(true);
    expect(softmax([]).length).toBe(0);
  });

  it('writes in place when out is the input', () => {
    const x = Float64Array.of(1, 2, 3);
    const out = softmax(x, x);
    expect(out).toBe(x);
    expect(relativeError(out, softmax([1, 2, 3]))).toBe(0);
  });

  it('rejects an out array of the wrong length', () => {
    expect(() => softmax([1, 2], new Float64Array(3))).toThrow(ShapeError);
  });
});
