import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AnchorSelectionError } from './errors.js';
import { anchorOfLayers, selectAnchors, selectAnchorsAuto } from './select.js';

/** Brute-force twin: the objective of one anchor choice, straight from the definition. */
function objectiveOf(sim: number[][], w: number[], anchors: number[]): { value: number; worst: number } {
  let value = 0;
  let worst = Number.POSITIVE_INFINITY;
  for (let l = 0; l < w.length; l++) {
    let a = 0;
    for (const x of anchors) if (x <= l) a = x;
    const s = a === l ? 1 : sim[a][l];
    value += w[l] * s;
    worst = Math.min(worst, s);
  }
  return { value, worst };
}

/** Every anchor set `{0} + (K-1 layers of 1..L-1)`. */
function* choices(L: number, K: number, from = 1, prefix: number[] = [0]): Generator<number[]> {
  if (prefix.length === K) {
    yield prefix;
    return;
  }
  for (let a = from; a < L; a++) yield* choices(L, K, a + 1, [...prefix, a]);
}

function bruteBest(sim: number[][], w: number[], K: number): number {
  let best = Number.NEGATIVE_INFINITY;
  for (const c of choices(w.length, K)) best = Math.max(best, objectiveOf(sim, w, c).value);
  return best;
}

function bruteAuto(sim: number[][], w: number[], tau: number): { K: number; best: number } {
  const L = w.length;
  for (let K = 1; K <= L; K++) {
    let best = Number.NEGATIVE_INFINITY;
    for (const c of choices(L, K)) {
      const o = objectiveOf(sim, w, c);
      if (o.worst >= tau) best = Math.max(best, o.value);
    }
    if (best > Number.NEGATIVE_INFINITY) return { K, best };
  }
  throw new Error('unreachable: every layer an anchor always qualifies');
}

function isValidAnchors(anchors: number[], L: number, K: number): boolean {
  return (
    anchors.length === K &&
    anchors[0] === 0 &&
    anchors.every((a, i) => i === 0 || (a > anchors[i - 1] && a < L))
  );
}

// Values from a coarse grid make ties common (the DP must still hit the optimum); smooth values cover the rest.
const value = fc.oneof(
  fc.double({ min: 0, max: 1, noNaN: true }),
  fc.constantFrom(0, 0.25, 0.5, 0.75, 0.9, 1),
);
const instance = fc.integer({ min: 1, max: 12 }).chain((L) =>
  fc.record({
    L: fc.constant(L),
    sim: fc.array(fc.array(value, { minLength: L, maxLength: L }), { minLength: L, maxLength: L }),
    w: fc.array(fc.oneof(fc.double({ min: 0, max: 2, noNaN: true }), fc.constantFrom(0, 1)), {
      minLength: L,
      maxLength: L,
    }),
    K: fc.integer({ min: 1, max: Math.min(5, L) }),
  }),
);

describe('selectAnchors (the DP)', () => {
  it('equals brute force on every random instance with L <= 12, K <= 5', () => {
    let checked = 0;
    fc.assert(
      fc.property(instance, ({ L, sim, w, K }) => {
        const got = selectAnchors({ similarity: sim, weights: w, anchors: K });
        expect(isValidAnchors(got.anchors, L, K)).toBe(true);
        const achieved = objectiveOf(sim, w, got.anchors).value;
        const best = bruteBest(sim, w, K);
        expect(Math.abs(got.objective - best)).toBeLessThanOrEqual(1e-12);
        expect(Math.abs(achieved - best)).toBeLessThanOrEqual(1e-12);
        checked++;
      }),
      { numRuns: 1000 },
    );
    expect(checked).toBe(1000);
  });

  it('places the anchors where the similarity drops, on a hand-made instance', () => {
    // Layers 0-2 look alike, 3-5 look alike, nothing carries across the break.
    const L = 6;
    const sim = Array.from({ length: L }, (_, a) =>
      Array.from({ length: L }, (_, l) => (Math.floor(a / 3) === Math.floor(l / 3) ? 0.95 : 0.1)),
    );
    const w = [1, 1, 1, 1, 1, 1];
    const got = selectAnchors({ similarity: sim, weights: w, anchors: 2 });
    expect(got.anchors).toEqual([0, 3]);
    expect(got.layerSimilarity).toEqual([1, 0.95, 0.95, 1, 0.95, 0.95]);
    expect(got.objective).toBeCloseTo(4 * 0.95 + 2, 12);
    expect(selectAnchors({ similarity: sim, weights: w, anchors: 1 }).anchors).toEqual([0]);
    expect(selectAnchors({ similarity: sim, weights: w, anchors: 6 }).anchors).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('ignores the diagonal and the lower triangle of the similarity matrix', () => {
    const sim = [
      [Number.NaN, 0.5, 0.5],
      [Number.NaN, Number.NaN, 0.9],
      [Number.NaN, Number.NaN, Number.NaN],
    ];
    const got = selectAnchors({ similarity: sim, weights: [1, 1, 1], anchors: 2 });
    expect(got.anchors).toEqual([0, 1]);
    expect(got.objective).toBeCloseTo(2.9, 12);
  });

  it('rejects bad inputs with a typed error naming them', () => {
    const sim = [
      [1, 0.5],
      [0, 1],
    ];
    expect(() => selectAnchors({ similarity: sim, weights: [1, 1], anchors: 3 })).toThrow(
      AnchorSelectionError,
    );
    expect(() => selectAnchors({ similarity: sim, weights: [1, 1], anchors: 0 })).toThrow(/anchors must be/);
    expect(() => selectAnchors({ similarity: sim, weights: [], anchors: 1 })).toThrow(/weights is empty/);
    expect(() => selectAnchors({ similarity: sim, weights: [1, Number.NaN], anchors: 1 })).toThrow(
      /weights\[1\]/,
    );
    expect(() => selectAnchors({ similarity: [[1, 0.5]], weights: [1, 1], anchors: 1 })).toThrow(/1 rows/);
    expect(() =>
      selectAnchors({
        similarity: [
          [1, Number.NaN],
          [0, 1],
        ],
        weights: [1, 1],
        anchors: 1,
      }),
    ).toThrow(/similarity\[0\]\[1\]/);
  });
});

describe('selectAnchorsAuto', () => {
  it('finds the fewest anchors reaching tau, and the best plan among them, like brute force', () => {
    fc.assert(
      fc.property(instance, fc.constantFrom(0, 0.5, 0.8, 0.9, 1), ({ L, sim, w }, tau) => {
        const got = selectAnchorsAuto({ similarity: sim, weights: w, tau });
        const want = bruteAuto(sim, w, tau);
        expect(got.anchors.length).toBe(want.K);
        expect(isValidAnchors(got.anchors, L, want.K)).toBe(true);
        expect(Math.min(...got.layerSimilarity)).toBeGreaterThanOrEqual(tau);
        expect(Math.abs(got.objective - want.best)).toBeLessThanOrEqual(1e-12);
        expect(got.tau).toBe(tau);
      }),
      { numRuns: 300 },
    );
  });

  it('defaults tau to 0.9 and caps at L', () => {
    const sim = [
      [1, 0.89, 0.95],
      [0, 1, 0.95],
      [0, 0, 1],
    ];
    const got = selectAnchorsAuto({ similarity: sim, weights: [1, 1, 1] });
    expect(got.tau).toBe(0.9);
    expect(got.anchors).toEqual([0, 1]);
    const none = selectAnchorsAuto({
      similarity: [
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
      ],
      weights: [1, 1, 1],
    });
    expect(none.anchors).toEqual([0, 1, 2]);
    expect(() => selectAnchorsAuto({ similarity: sim, weights: [1, 1, 1], tau: 1.5 })).toThrow(/tau/);
  });
});

describe('anchorOfLayers', () => {
  it('maps every layer to the largest anchor at or before it', () => {
    expect(anchorOfLayers([0, 2, 5], 7)).toEqual([0, 0, 2, 2, 2, 5, 5]);
    expect(anchorOfLayers([0], 3)).toEqual([0, 0, 0]);
  });
});
