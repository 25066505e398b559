import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HeadSimilarity } from './accumulator.js';
import { AnchorSelectionError } from './errors.js';
import { headMaps, headSimilarity, layerSimilarity, layerSimilarityMatrix } from './heads.js';
import { anchorOfLayers } from './select.js';

/** Builds `Sim` from a function of (a, l, j, u), NaN where a > l. */
function simOf(
  L: number,
  G: number,
  f: (a: number, l: number, j: number, u: number) => number,
): HeadSimilarity {
  const values = new Float64Array(L * L * G * G).fill(Number.NaN);
  for (let a = 0; a < L; a++)
    for (let l = a; l < L; l++)
      for (let j = 0; j < G; j++)
        for (let u = 0; u < G; u++) values[((a * L + l) * G + j) * G + u] = f(a, l, j, u);
  return { layers: L, kvHeads: G, values };
}

const simArb = fc
  .record({ L: fc.integer({ min: 1, max: 6 }), G: fc.integer({ min: 1, max: 4 }) })
  .chain(({ L, G }) =>
    fc
      .array(fc.constantFrom(0, 0.3, 0.6, 0.6, 0.9, 1), {
        minLength: L * L * G * G,
        maxLength: L * L * G * G,
      })
      .map((vals) => simOf(L, G, (a, l, j, u) => vals[((a * L + l) * G + j) * G + u])),
  );

describe('layerSimilarity', () => {
  it('is the mean over j of the max over u, and 1 on the diagonal', () => {
    const sim = simOf(2, 2, (a, l, j, u) => (a === l ? 0.5 : [0.2, 0.8, 0.6, 0.4][j * 2 + u]));
    expect(layerSimilarity(sim, 0, 1)).toBeCloseTo((0.8 + 0.6) / 2, 15);
    expect(layerSimilarity(sim, 1, 1)).toBe(1);
    expect(layerSimilarity(sim, 0, 0)).toBe(1);
    const m = layerSimilarityMatrix(sim);
    expect(m[0][1]).toBeCloseTo(0.7, 15);
    expect(m[0][0]).toBe(1);
    expect(Number.isNaN(m[1][0])).toBe(true);
  });

  it('matches the definition on random similarity', () => {
    fc.assert(
      fc.property(simArb, (sim) => {
        const { layers: L, kvHeads: G } = sim;
        for (let a = 0; a < L; a++)
          for (let l = a + 1; l < L; l++) {
            let want = 0;
            for (let j = 0; j < G; j++) {
              want += Math.max(...Array.from({ length: G }, (_, u) => headSimilarity(sim, a, l, j, u))) / G;
            }
            expect(Math.abs(layerSimilarity(sim, a, l) - want)).toBeLessThanOrEqual(1e-15);
          }
      }),
    );
  });

  it('rejects a > l and out-of-range heads', () => {
    const sim = simOf(2, 2, () => 1);
    expect(() => layerSimilarity(sim, 1, 0)).toThrow(AnchorSelectionError);
    expect(() => layerSimilarity(sim, 0, 2)).toThrow(/a <= l/);
    expect(() => headSimilarity(sim, 0, 1, 2, 0)).toThrow(/heads must be in \[0, 2\)/);
  });
});

describe('headMaps', () => {
  it('takes the argmax over u with ties to the lowest u, and the identity at anchors', () => {
    const sim = simOf(3, 3, (a, l, j, u) => {
      if (a !== 0 || l !== 1) return 0.5;
      return [
        [0.1, 0.9, 0.9], // j = 0: tie 1 vs 2 -> 1
        [0.7, 0.7, 0.7], // j = 1: all tie -> 0
        [0.2, 0.3, 0.4], // j = 2 -> 2
      ][j][u];
    });
    expect(headMaps(sim, [0, 2])).toEqual([
      [0, 1, 2],
      [1, 0, 2],
      [0, 1, 2],
    ]);
  });

  it('maps every reuse head to an argmax of its anchor’s row, on random similarity', () => {
    fc.assert(
      fc.property(
        simArb.chain((sim) =>
          fc.tuple(
            fc.constant(sim),
            fc.subarray(
              Array.from({ length: sim.layers - 1 }, (_, i) => i + 1),
              { minLength: 0 },
            ),
          ),
        ),
        ([sim, rest]) => {
          const anchors = [0, ...rest];
          const maps = headMaps(sim, anchors);
          const of = anchorOfLayers(anchors, sim.layers);
          expect(maps.length).toBe(sim.layers);
          maps.forEach((map, l) => {
            expect(map.length).toBe(sim.kvHeads);
            map.forEach((u, j) => {
              if (of[l] === l) {
                expect(u).toBe(j);
                return;
              }
              const row = Array.from({ length: sim.kvHeads }, (_, x) => headSimilarity(sim, of[l], l, j, x));
              expect(row[u]).toBe(Math.max(...row));
              expect(row.indexOf(Math.max(...row))).toBe(u);
            });
          });
        },
      ),
    );
  });

  it('rejects anchors that do not start at 0 or are not increasing', () => {
    const sim = simOf(3, 1, () => 1);
    expect(() => headMaps(sim, [1])).toThrow(/start at layer 0/);
    expect(() => headMaps(sim, [0, 2, 2])).toThrow(/anchors\[2\]/);
    expect(() => headMaps(sim, [0, 3])).toThrow(/below 3/);
  });
});
