import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KascadeRangeError } from './budget.js';
import { capturedMassShare, layerImportance } from './similarity.js';

/** Naive float64 twin: the formula as written. */
function naiveShare(scores: number[], borrowed: number[], own: number[], d: number): number {
  const num = borrowed.reduce((s, x) => s + scores[x], 0) + d;
  const den = own.reduce((s, x) => s + scores[x], 0) + d;
  return num === 0 && den === 0 ? 1 : num / den;
}

/** Naive float64 twin: 1 - dot / (|x| |y|) per token, averaged. */
function naiveImportance(x: number[], a: number[], tokens: number, hidden: number): number {
  let total = 0;
  for (let t = 0; t < tokens; t++) {
    let dot = 0;
    let xx = 0;
    let yy = 0;
    for (let i = t * hidden; i < (t + 1) * hidden; i++) {
      const y = x[i] + a[i];
      dot += x[i] * y;
      xx += x[i] * x[i];
      yy += y * y;
    }
    total += 1 - dot / Math.sqrt(xx * yy);
  }
  return total / tokens;
}

/** Distinct indices of the `k` largest scores, ties to the lower index. */
function naiveTopk(scores: number[], k: number): number[] {
  return scores
    .map((s, i) => [s, i] as const)
    .sort((p, q) => q[0] - p[0] || p[1] - q[1])
    .slice(0, k)
    .map((p) => p[1]);
}

const scoresArb = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 200 });

describe('capturedMassShare', () => {
  it('matches the naive float64 formula on random sets', () => {
    fc.assert(
      fc.property(
        scoresArb.chain((scores) =>
          fc.tuple(
            fc.constant(scores),
            fc.uniqueArray(fc.nat(scores.length - 1), { maxLength: scores.length }),
            fc.uniqueArray(fc.nat(scores.length - 1), { maxLength: scores.length }),
            fc.double({ min: 0, max: 4, noNaN: true }),
          ),
        ),
        ([scores, borrowed, own, d]) => {
          const got = capturedMassShare(Float64Array.from(scores), borrowed, Int32Array.from(own), d);
          const want = naiveShare(scores, borrowed, own, d);
          if (Number.isFinite(want)) expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-12 * Math.abs(want));
          else expect(got).toBe(want);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('lies in [0, 1] when own is the true Top-k of the same size, and is 1 for own itself', () => {
    fc.assert(
      fc.property(
        scoresArb.chain((scores) =>
          fc.tuple(
            fc.constant(scores),
            fc.uniqueArray(fc.nat(scores.length - 1), { minLength: 0, maxLength: scores.length }),
            fc.double({ min: 0, max: 1, noNaN: true }),
          ),
        ),
        ([scores, borrowed, d]) => {
          const own = naiveTopk(scores, borrowed.length);
          const share = capturedMassShare(scores, borrowed, own, d);
          expect(share).toBeGreaterThanOrEqual(0);
          expect(share).toBeLessThanOrEqual(1 + 1e-12);
          expect(capturedMassShare(scores, own, own, d)).toBe(1);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('computes a small case by hand, diagonal term included', () => {
    const s = [0.1, 0.4, 0.05, 0.25];
    // borrowed {0, 2}: 0.15 + 0.2 = 0.35; own {1, 3}: 0.65 + 0.2 = 0.85
    expect(capturedMassShare(s, [0, 2], [1, 3], 0.2)).toBeCloseTo(0.35 / 0.85, 15);
    expect(capturedMassShare(s, [0, 2], [1, 3])).toBeCloseTo(0.15 / 0.65, 15);
  });

  it('defines 0/0 as 1 and keeps x/0 as Infinity', () => {
    expect(capturedMassShare([0.5, 0.5], [], [], 0)).toBe(1);
    expect(capturedMassShare([0, 0, 0.3], [0], [1], 0)).toBe(1);
    expect(capturedMassShare([0, 0, 0.3], [2], [1], 0)).toBe(Number.POSITIVE_INFINITY);
  });

  it('rejects out-of-range indices and a bad diagonal mass with a typed error naming them', () => {
    expect(() => capturedMassShare([1, 2], [2], [0])).toThrow(KascadeRangeError);
    expect(() => capturedMassShare([1, 2], [2], [0])).toThrow(/borrowed\[0\] = 2/);
    expect(() => capturedMassShare([1, 2], [0], [0, -1])).toThrow(/own\[1\] = -1/);
    expect(() => capturedMassShare([1, 2], [0.5], [0])).toThrow(/borrowed\[0\]/);
    expect(() => capturedMassShare([1, 2], [0], [0], -0.1)).toThrow(/diagonalMass/);
    expect(() => capturedMassShare([1, 2], [0], [0], Number.NaN)).toThrow(KascadeRangeError);
  });
});

describe('layerImportance', () => {
  const shapeArb = fc.record({
    tokens: fc.integer({ min: 1, max: 9 }),
    hidden: fc.integer({ min: 1, max: 33 }),
  });

  it('matches the naive float64 formula on random residuals and outputs', () => {
    fc.assert(
      fc.property(
        shapeArb.chain(({ tokens, hidden }) =>
          fc.tuple(
            fc.constant(tokens),
            fc.constant(hidden),
            fc.array(fc.double({ min: -4, max: 4, noNaN: true }), {
              minLength: tokens * hidden,
              maxLength: tokens * hidden,
            }),
            fc.array(fc.double({ min: -4, max: 4, noNaN: true }), {
              minLength: tokens * hidden,
              maxLength: tokens * hidden,
            }),
          ),
        ),
        ([tokens, hidden, x, a]) => {
          // keep away from the zero vector, where the cosine is undefined (covered below)
          for (let t = 0; t < tokens; t++) {
            let xx = 0;
            let yy = 0;
            for (let i = t * hidden; i < (t + 1) * hidden; i++) {
              xx += x[i] * x[i];
              yy += (x[i] + a[i]) ** 2;
            }
            fc.pre(xx > 1e-6 && yy > 1e-6);
          }
          const got = layerImportance(Float32Array.from(x), Float32Array.from(a), tokens, hidden);
          const want = naiveImportance(
            Array.from(Float32Array.from(x)),
            Array.from(Float32Array.from(a)),
            tokens,
            hidden,
          );
          expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-9);
          expect(got).toBeGreaterThanOrEqual(0);
          expect(got).toBeLessThanOrEqual(2);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('is 0 for no change, 1 for orthogonal moves and tiny but positive for tiny moves', () => {
    expect(layerImportance([1, 2, 3], [0, 0, 0], 1, 3)).toBe(0);
    // x = (1, 0), x + a = (0, 1): cos = 0
    expect(layerImportance([1, 0], [-1, 1], 1, 2)).toBeCloseTo(1, 15);
    // x = (1, 0), x + a = (-1, 0): cos = -1
    expect(layerImportance([1, 0], [-2, 0], 1, 2)).toBeCloseTo(2, 15);
    // angle 1e-9: 1 - cos = 5e-19, lost entirely by the naive 1 - dot/norm in float64
    const eps = 1e-9;
    const got = layerImportance([1, 0], [Math.cos(eps) - 1, Math.sin(eps)], 1, 2);
    expect(got).toBeGreaterThan(0);
    expect(Math.abs(got - eps * eps * 0.5) / (eps * eps * 0.5)).toBeLessThan(1e-6);
    // averaged over tokens
    expect(layerImportance([1, 0, 1, 0], [0, 0, -1, 1], 2, 2)).toBeCloseTo(0.5, 15);
  });

  it('handles zero vectors by the documented convention', () => {
    expect(layerImportance([0, 0], [0, 0], 1, 2)).toBe(0);
    expect(layerImportance([0, 0], [1, 0], 1, 2)).toBe(1);
    expect(layerImportance([1, 0], [-1, 0], 1, 2)).toBe(1);
  });

  it('rejects bad shapes with a typed error', () => {
    expect(() => layerImportance([1, 2, 3], [1, 2, 3], 2, 2)).toThrow(KascadeRangeError);
    expect(() => layerImportance([1, 2, 3, 4], [1, 2, 3], 2, 2)).toThrow(/attnOut has 3 values/);
    expect(() => layerImportance([], [], 0, 2)).toThrow(/tokens/);
    expect(() => layerImportance([1], [1], 1, 1.5)).toThrow(/hidden/);
  });
});
