import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { prefillTileBudget, topkBudget } from './budget.js';
import { SelectionError, ShapeError } from './errors.js';
import {
  chunkArbitrary,
  decodeQuery,
  naiveProbabilities,
  prefillQuery,
  propertyRuns,
  randomDecode,
  randomPrefill,
  range,
  seedArbitrary,
  shapeArbitrary,
  sortTopk,
  toShape,
} from './naive.test-support.js';
import { pooledDecodeScores, pooledPrefillScores } from './pooling.js';
import {
  allHeadsPooledDecodeTopk,
  allHeadsPooledPrefillTopk,
  anchorDecodeTopk,
  anchorPrefillTopk,
  validateSelection,
} from './selection.js';
import type { DecodeInputs, PrefillInputs } from './types.js';

const shape = shapeArbitrary({ maxKvHeads: 3, maxHeadDim: 6 });
const chunk = chunkArbitrary({ maxTile: 8, maxStartTiles: 5, maxQueries: 21 });
// Small kMin and percent so budgets bite at these sizes; also k >= n through large kMin.
const budget = fc.record({
  percent: fc.constantFrom(10, 25, 50, 100),
  kMin: fc.integer({ min: 0, max: 12 }),
  roundTo: fc.constantFrom(1, 2, 4),
});
const seed = seedArbitrary;
const runs = propertyRuns;

/** Naive S over heads `heads` for decode. */
function naiveDecodePool(inputs: DecodeInputs, heads: number[], g: number): number[] {
  const s = new Array<number>(inputs.n).fill(0);
  for (const h of heads) {
    const p = naiveProbabilities(inputs, decodeQuery(inputs, h), Math.floor(h / g), range(0, inputs.n));
    for (const [x, w] of p) s[x] += w;
  }
  return s;
}

/** Naive S[t] over heads `heads` for prefill, keys before the tile only. */
function naiveTilePool(inputs: PrefillInputs, heads: number[], g: number, t: number): number[] {
  const start = inputs.queryStart + t * inputs.tileSize;
  const s = new Array<number>(start).fill(0);
  for (const h of heads) {
    for (let pos = start; pos < Math.min(start + inputs.tileSize, inputs.n); pos++) {
      const p = naiveProbabilities(
        inputs,
        prefillQuery(inputs, h, pos - inputs.queryStart),
        Math.floor(h / g),
        range(0, pos + 1),
      );
      for (const [x, w] of p) if (x < start) s[x] += w;
    }
  }
  return s;
}

/** Every chosen key scores at least as much as every key left out (1e-12 slack for float sums); ascending, unique. */
function expectDominant(chosen: ArrayLike<number>, scores: number[], k: number): void {
  expect(chosen.length).toBe(k);
  const set = new Set<number>();
  for (let c = 0; c < chosen.length; c++) {
    if (c > 0) expect(chosen[c]).toBeGreaterThan(chosen[c - 1]);
    expect(chosen[c]).toBeGreaterThanOrEqual(0);
    expect(chosen[c]).toBeLessThan(scores.length);
    set.add(chosen[c]);
  }
  let minIn = Number.POSITIVE_INFINITY;
  let maxOut = Number.NEGATIVE_INFINITY;
  scores.forEach((v, x) => {
    if (set.has(x)) minIn = Math.min(minIn, v);
    else maxOut = Math.max(maxOut, v);
  });
  expect(minIn).toBeGreaterThanOrEqual(maxOut - 1e-12);
}

describe('anchor Top-k, decode', () => {
  it('selects k = topkBudget(n) keys per KV head, dominant under naive post-softmax group pooling', () => {
    fc.assert(
      fc.property(shape, fc.integer({ min: 1, max: 40 }), budget, seed, (s, n, b, sd) => {
        const inputs = randomDecode(toShape(s), n, sd);
        const sel = anchorDecodeTopk(inputs, b);
        const k = topkBudget(n, b);
        expect(sel.k).toBe(k);
        expect(sel.kvHeads).toBe(s.kvHeads);
        validateSelection(sel, n, s.kvHeads);
        const pooled = pooledDecodeScores(inputs);
        for (let j = 0; j < s.kvHeads; j++) {
          const row = sel.indices.subarray(j * k, (j + 1) * k);
          expectDominant(row, naiveDecodePool(inputs, range(j * s.group, (j + 1) * s.group), s.group), k);
          // The tie rule is exactly the sort oracle's on the reference's own scores.
          expect(Array.from(row)).toEqual(sortTopk(pooled.subarray(j * n, (j + 1) * n), k));
        }
      }),
      runs,
    );
  });

  it('all-heads-pooled copies one set, pooled over every head, to each row', () => {
    fc.assert(
      fc.property(shape, fc.integer({ min: 1, max: 40 }), budget, seed, (s, n, b, sd) => {
        const inputs = randomDecode(toShape(s), n, sd);
        const sel = allHeadsPooledDecodeTopk(inputs, b);
        const k = topkBudget(n, b);
        const first = Array.from(sel.indices.subarray(0, k));
        for (let j = 1; j < s.kvHeads; j++)
          expect(Array.from(sel.indices.subarray(j * k, (j + 1) * k))).toEqual(first);
        expectDominant(first, naiveDecodePool(inputs, range(0, inputs.heads), s.group), k);
      }),
      runs,
    );
  });
});

describe('anchor Top-k, prefill', () => {
  it('selects the rolling k(s) earlier keys per KV head and tile, dominant under naive tile pooling', () => {
    let rowsChecked = 0;
    fc.assert(
      fc.property(shape, chunk, budget, seed, (s, c, b, sd) => {
        const inputs = randomPrefill(toShape(s), c.queryStart, c.queries, c.tileSize, sd);
        const sel = anchorPrefillTopk(inputs, b);
        const tiles = Math.ceil(c.queries / c.tileSize);
        expect(sel.tiles).toBe(tiles);
        expect(sel.tileSize).toBe(c.tileSize);
        validateSelection(sel, inputs.n, s.kvHeads);
        const { scores } = pooledPrefillScores(inputs);
        for (let t = 0; t < tiles; t++) {
          const start = c.queryStart + t * c.tileSize;
          expect(sel.counts[t]).toBe(prefillTileBudget(start, b));
          for (let j = 0; j < s.kvHeads; j++) {
            const base = (j * tiles + t) * sel.kMax;
            const row = sel.indices.subarray(base, base + sel.counts[t]);
            expect(
              Array.from(sel.indices.subarray(base + sel.counts[t], base + sel.kMax)).every((x) => x === -1),
            ).toBe(true);
            expectDominant(
              row,
              naiveTilePool(inputs, range(j * s.group, (j + 1) * s.group), s.group, t),
              sel.counts[t],
            );
            const own = scores.subarray((j * tiles + t) * inputs.n, (j * tiles + t) * inputs.n + start);
            expect(Array.from(row)).toEqual(sortTopk(own, sel.counts[t]));
            rowsChecked++;
          }
        }
      }),
      runs,
    );
    expect(rowsChecked).toBeGreaterThan(60);
  });

  it('the first tile of a sequence selects nothing; early tiles take every earlier key', () => {
    const inputs = randomPrefill({ heads: 2, kvHeads: 1, headDim: 4 }, 0, 20, 4, 9);
    const sel = anchorPrefillTopk(inputs, { kMin: 8 });
    expect(Array.from(sel.counts)).toEqual([0, 4, 8, 8, 8]);
    expect(Array.from(sel.indices.subarray(sel.kMax, sel.kMax + 4))).toEqual([0, 1, 2, 3]);
  });

  it('all-heads-pooled copies one set per tile to each row', () => {
    fc.assert(
      fc.property(shape, chunk, budget, seed, (s, c, b, sd) => {
        const inputs = randomPrefill(toShape(s), c.queryStart, c.queries, c.tileSize, sd);
        const sel = allHeadsPooledPrefillTopk(inputs, b);
        for (let t = 0; t < sel.tiles; t++) {
          const rowOf = (j: number) =>
            Array.from(
              sel.indices.subarray(
                (j * sel.tiles + t) * sel.kMax,
                (j * sel.tiles + t) * sel.kMax + sel.counts[t],
              ),
            );
          for (let j = 1; j < s.kvHeads; j++) expect(rowOf(j)).toEqual(rowOf(0));
          expectDominant(rowOf(0), naiveTilePool(inputs, range(0, inputs.heads), s.group, t), sel.counts[t]);
        }
      }),
      { numRuns: 30 },
    );
  });
});

describe('validateSelection', () => {
  it('accepts good slots and names each problem in a typed error', () => {
    validateSelection({ kvHeads: 2, k: 2, indices: Int32Array.of(0, 3, 3, 1) }, 4, 2);
    expect(() => validateSelection({ kvHeads: 2, k: 2, indices: Int32Array.of(0, 4, 3, 1) }, 4, 2)).toThrow(
      SelectionError,
    );
    expect(() => validateSelection({ kvHeads: 2, k: 2, indices: Int32Array.of(0, 1, 3, 3) }, 4, 2)).toThrow(
      /kv head 1/,
    );
    expect(() => validateSelection({ kvHeads: 2, k: 2, indices: Int32Array.of(0, -1, 3, 2) }, 4, 2)).toThrow(
      /out of range/,
    );
    expect(() => validateSelection({ kvHeads: 1, k: 2, indices: Int32Array.of(0, 1) }, 4, 2)).toThrow(
      ShapeError,
    );
    expect(() => validateSelection({ kvHeads: 2, k: 2, indices: Int32Array.of(0, 1, 2) }, 4, 2)).toThrow(
      /expected kvHeads \* k = 4/,
    );
    const prefill = {
      kvHeads: 1,
      tiles: 2,
      tileSize: 2,
      kMax: 2,
      counts: Int32Array.of(0, 2),
      indices: Int32Array.of(-1, -1, 0, 1),
    };
    validateSelection(prefill, 4, 1);
    expect(() => validateSelection({ ...prefill, indices: Int32Array.of(-1, -1, 1, 1) }, 4, 1)).toThrow(
      /tile 1/,
    );
    expect(() => validateSelection({ ...prefill, counts: Int32Array.of(0, 3) }, 4, 1)).toThrow(
      /counts\[1\] = 3/,
    );
    expect(() => validateSelection({ ...prefill, counts: Int32Array.of(0) }, 4, 1)).toThrow(/counts must be/);
  });
});
