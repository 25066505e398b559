import { capturedMassShare, type PrefillInputs, pooledPrefillScores, prefillTileBudget } from '@kascade/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CalibrationAccumulator, type CalibrationStatistics } from './accumulator.js';
import { CalibrationError } from './errors.js';
import { headMaps, headSimilarity } from './heads.js';

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Shape {
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  tileSize: number;
}

/** One layer's dense prefill inputs for a whole prompt of `n` tokens, random q and k (sharp enough to be sparse). */
function randomPrefill(shape: Shape, n: number, next: () => number, queryStart = 0): PrefillInputs {
  const { heads, kvHeads, headDim, tileSize } = shape;
  const rand = (len: number, amp: number) => Float64Array.from({ length: len }, () => (next() * 2 - 1) * amp);
  return {
    heads,
    kvHeads,
    headDim,
    q: rand(heads * (n - queryStart) * headDim, 3),
    k: rand(kvHeads * n * headDim, 3),
    v: rand(kvHeads * n * headDim, 1),
    n,
    queries: n - queryStart,
    queryStart,
    tileSize,
  };
}

/** Distinct indices of the `k` largest of the first `m` scores, ties to the lower index (a sort, not core's selection). */
function naiveTopk(row: ArrayLike<number>, k: number, m: number): number[] {
  return Array.from({ length: m }, (_, i) => i)
    .sort((x, y) => row[y] - row[x] || x - y)
    .slice(0, k);
}

interface LayerRecord {
  scores: Float64Array;
  diagonalMass: Float64Array;
  tiles: number;
  importance: number;
}

/**
 * Naive twin of the whole statistic, from its definition: per prompt, per (a <= l, j, u), the min
 * over tiles of `capturedMassShare`, then the mean over prompts.
 */
function naiveStatistics(
  prompts: LayerRecord[][],
  G: number,
  T: number,
  budget: { percent: number; kMin: number },
): { sim: (a: number, l: number, j: number, u: number) => number; importance: number[] } {
  const L = prompts[0].length;
  const sum = new Map<string, number>();
  const importance = new Array<number>(L).fill(0);
  for (const layers of prompts) {
    const tiles = layers[0].tiles;
    const n = layers[0].scores.length / (G * tiles);
    const row = (rec: LayerRecord, j: number, t: number) =>
      rec.scores.subarray((j * tiles + t) * n, (j * tiles + t + 1) * n);
    const sets = layers.map((rec) =>
      Array.from({ length: G }, (_, j) =>
        Array.from({ length: tiles }, (_, t) =>
          naiveTopk(row(rec, j, t), prefillTileBudget(t * T, budget), t * T),
        ),
      ),
    );
    for (let l = 0; l < L; l++) {
      importance[l] += layers[l].importance / prompts.length;
      for (let a = 0; a <= l; a++) {
        for (let j = 0; j < G; j++) {
          for (let u = 0; u < G; u++) {
            let worst = Number.POSITIVE_INFINITY;
            for (let t = 0; t < tiles; t++) {
              const d = layers[l].diagonalMass[j * tiles + t];
              worst = Math.min(
                worst,
                capturedMassShare(row(layers[l], j, t), sets[a][u][t], sets[l][j][t], d),
              );
            }
            const key = `${a},${l},${j},${u}`;
            sum.set(key, (sum.get(key) ?? 0) + worst / prompts.length);
          }
        }
      }
    }
  }
  return { sim: (a, l, j, u) => sum.get(`${a},${l},${j},${u}`) ?? Number.NaN, importance };
}

function expectMatches(
  stats: CalibrationStatistics,
  naive: ReturnType<typeof naiveStatistics>,
  tol: number,
): number {
  let checked = 0;
  const { layers: L, kvHeads: G } = stats;
  for (let a = 0; a < L; a++) {
    for (let l = a; l < L; l++) {
      for (let j = 0; j < G; j++) {
        for (let u = 0; u < G; u++) {
          const want = naive.sim(a, l, j, u);
          expect(Number.isFinite(want)).toBe(true);
          expect(Math.abs(headSimilarity(stats.similarity, a, l, j, u) - want)).toBeLessThanOrEqual(tol);
          checked++;
        }
      }
    }
  }
  stats.importance.forEach((w, l) => {
    expect(Math.abs(w - naive.importance[l])).toBeLessThanOrEqual(tol);
  });
  return checked;
}

describe('CalibrationAccumulator', () => {
  it('computes a small case by hand', () => {
    // L = 2, G = 1, T = 2, n = 4: tile 0 selects nothing, tile 1 selects k(2) = 1 of keys {0, 1}.
    const acc = new CalibrationAccumulator({
      layers: 2,
      kvHeads: 1,
      tileSize: 2,
      budget: { percent: 10, kMin: 1 },
    });
    const feed = (l0: number[], d0: number[], l1: number[], d1: number[], w: [number, number]) => {
      acc.beginPrompt();
      acc.addLayer({ layer: 0, scores: Float64Array.from(l0), diagonalMass: d0, tiles: 2, importance: w[0] });
      acc.addLayer({ layer: 1, scores: Float64Array.from(l1), diagonalMass: d1, tiles: 2, importance: w[1] });
      acc.endPrompt();
    };
    // prompt 1: layer 0 tile 1 picks key 0, layer 1 tile 1 picks key 1:
    //   tile 1: (0.2 + 0.4) / (0.6 + 0.4) = 0.6; tile 0: D / D = 1; min 0.6
    feed([0, 0, 0, 0, 0.7, 0.3, 0, 0], [2, 1], [0, 0, 0, 0, 0.2, 0.6, 0, 0], [2, 0.4], [0.1, 0.3]);
    // prompt 2: both pick key 0: 1
    feed([0, 0, 0, 0, 0.9, 0.1, 0, 0], [2, 1], [0, 0, 0, 0, 0.5, 0.1, 0, 0], [2, 0.2], [0.3, 0.5]);
    const stats = acc.statistics();
    expect(stats.prompts).toBe(2);
    expect(headSimilarity(stats.similarity, 0, 1, 0, 0)).toBeCloseTo(0.8, 15);
    expect(headSimilarity(stats.similarity, 0, 0, 0, 0)).toBe(1);
    expect(headSimilarity(stats.similarity, 1, 1, 0, 0)).toBe(1);
    expect(stats.importance[0]).toBeCloseTo(0.2, 15);
    expect(stats.importance[1]).toBeCloseTo(0.4, 15);
    expect(Number.isNaN(stats.similarity.values[2])).toBe(true); // a = 1 > l = 0
    expect(stats.budget).toEqual({ percent: 10, kMin: 1, roundTo: 1 });
    expect(stats.tileSize).toBe(2);
  });

  it('finds swapped heads: Sim[a][l][j][u] scores anchor head u’s set on layer l head j', () => {
    // G = 2, T = 2, n = 4, one prompt. Tile 1 selects 1 of keys {0, 1}.
    // Layer 0: head 0 prefers key 0, head 1 key 1. Layer 1: head 0 prefers key 1, head 1 key 0.
    const acc = new CalibrationAccumulator({
      layers: 2,
      kvHeads: 2,
      tileSize: 2,
      budget: { percent: 1, kMin: 1 },
    });
    const rows = (h0: number[], h1: number[]) =>
      Float64Array.from([0, 0, 0, 0, ...h0, 0, 0, 0, 0, 0, 0, ...h1, 0, 0]);
    acc.beginPrompt();
    acc.addLayer({
      layer: 0,
      scores: rows([0.9, 0.1], [0.2, 0.8]),
      diagonalMass: [1, 0, 1, 0],
      tiles: 2,
      importance: 1,
    });
    acc.addLayer({
      layer: 1,
      scores: rows([0.3, 0.7], [0.6, 0.4]),
      diagonalMass: [1, 0, 1, 0],
      tiles: 2,
      importance: 1,
    });
    expect(() => acc.statistics()).toThrow(CalibrationError); // the open prompt is not counted yet
    acc.endPrompt();
    const sim = acc.statistics().similarity;
    expect(headSimilarity(sim, 0, 1, 0, 1)).toBe(1);
    expect(headSimilarity(sim, 0, 1, 0, 0)).toBeCloseTo(0.3 / 0.7, 15);
    expect(headSimilarity(sim, 0, 1, 1, 0)).toBe(1);
    expect(headSimilarity(sim, 0, 1, 1, 1)).toBeCloseTo(0.4 / 0.6, 15);
    expect(headMaps(sim, [0])).toEqual([
      [0, 1],
      [1, 0],
    ]);
    // an aborted prompt leaves no trace
    acc.beginPrompt();
    acc.addLayer({
      layer: 0,
      scores: rows([0, 1], [1, 0]),
      diagonalMass: [0, 0, 0, 0],
      tiles: 2,
      importance: 9,
    });
    acc.abortPrompt();
    expect(acc.retainedLayers).toBe(0);
    expect(acc.statistics().prompts).toBe(1);
    expect(acc.statistics().similarity.values).toEqual(sim.values);
  });

  it('matches the naive twin on random attention (pooledPrefillScores), with partial tiles and g = 2', () => {
    let checked = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom(1, 2, 3),
        (seed, prompts, G) => {
          const next = rng(seed);
          const shape: Shape = { layers: 3, heads: 2 * G, kvHeads: G, headDim: 4, tileSize: 4 };
          const budget = { percent: 20, kMin: 3 };
          const acc = new CalibrationAccumulator({ layers: 3, kvHeads: G, tileSize: 4, budget });
          const records: LayerRecord[][] = [];
          for (let p = 0; p < prompts; p++) {
            const n = 9 + Math.floor(next() * 20); // 9 .. 28 tokens: the last tile is often partial
            const layers: LayerRecord[] = [];
            acc.beginPrompt();
            for (let l = 0; l < 3; l++) {
              const pooled = pooledPrefillScores(randomPrefill(shape, n, next));
              const rec = { ...pooled, importance: next() };
              layers.push(rec);
              acc.addLayer({ layer: l, ...rec });
            }
            acc.endPrompt();
            records.push(layers);
          }
          checked += expectMatches(acc.statistics(), naiveStatistics(records, G, 4, budget), 1e-12);
        },
      ),
      { numRuns: 25 },
    );
    expect(checked).toBeGreaterThan(25);
  });

  it('breaks score ties towards the lower key index, like the method', () => {
    // Scores on a coarse grid tie often; the naive twin sorts with the documented rule.
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
        const next = rng(seed);
        const G = 2;
        const tiles = 5;
        const T = 3;
        const n = tiles * T;
        const budget = { percent: 30, kMin: 2 };
        const acc = new CalibrationAccumulator({ layers: 2, kvHeads: G, tileSize: T, budget });
        const layers: LayerRecord[] = [];
        acc.beginPrompt();
        for (let l = 0; l < 2; l++) {
          const rec = {
            scores: Float64Array.from({ length: G * tiles * n }, () => Math.floor(next() * 3) / 4),
            diagonalMass: Float64Array.from({ length: G * tiles }, () => Math.floor(next() * 2) / 2),
            tiles,
            importance: 0.5,
          };
          layers.push(rec);
          acc.addLayer({ layer: l, ...rec });
        }
        acc.endPrompt();
        expectMatches(acc.statistics(), naiveStatistics([layers], G, T, budget), 1e-12);
      }),
      { numRuns: 30 },
    );
  });

  it('gives the same statistics when a prompt is fed in chunks', () => {
    const next = rng(7);
    const shape: Shape = { layers: 2, heads: 4, kvHeads: 2, headDim: 4, tileSize: 4 };
    const budget = { percent: 25, kMin: 2 };
    const n = 23;
    const inputs = [0, 1].map(() => randomPrefill(shape, n, next));
    const whole = new CalibrationAccumulator({ layers: 2, kvHeads: 2, tileSize: 4, budget });
    whole.beginPrompt();
    inputs.forEach((inp, l) => {
      whole.addLayer({ layer: l, ...pooledPrefillScores(inp), importance: 0.25 * (l + 1) });
    });
    whole.endPrompt();

    // Chunks of 8 + 15 queries: the second chunk's rows are the same queries over the same keys.
    const chunked = new CalibrationAccumulator({ layers: 2, kvHeads: 2, tileSize: 4, budget });
    chunked.beginPrompt();
    for (const [start, end] of [
      [0, 8],
      [8, 23],
    ]) {
      inputs.forEach((inp, l) => {
        const q = new Float64Array(4 * (end - start) * 4);
        for (let h = 0; h < 4; h++)
          q.set(inp.q.subarray((h * n + start) * 4, (h * n + end) * 4), h * (end - start) * 4);
        const kv = (x: Float64Array | Float32Array) => {
          const out = new Float64Array(2 * end * 4);
          for (let j = 0; j < 2; j++) out.set(x.subarray(j * n * 4, (j * n + end) * 4), j * end * 4);
          return out;
        };
        const chunk = {
          ...inp,
          q,
          k: kv(inp.k),
          v: kv(inp.v),
          n: end,
          queries: end - start,
          queryStart: start,
        };
        chunked.addLayer({
          layer: l,
          ...pooledPrefillScores(chunk),
          queryStart: start,
          importance: 0.25 * (l + 1),
          importanceTokens: end - start,
        });
      });
    }
    chunked.endPrompt();
    const a = whole.statistics();
    const b = chunked.statistics();
    expect(b.importance).toEqual(a.importance);
    for (let i = 0; i < a.similarity.values.length; i++) {
      if (Number.isNaN(a.similarity.values[i])) expect(Number.isNaN(b.similarity.values[i])).toBe(true);
      else expect(Math.abs(b.similarity.values[i] - a.similarity.values[i])).toBeLessThanOrEqual(1e-12);
    }
  });

  it('holds only the current chunk’s index sets, drops them at the next chunk and at the end, and keeps no scores', () => {
    const G = 2;
    const tiles = 4;
    const T = 4;
    const n = 16;
    const budget = { percent: 50, kMin: 1 };
    const next = rng(3);
    const make = () => ({
      scores: Float64Array.from({ length: G * tiles * n }, () => next()),
      diagonalMass: Float64Array.from({ length: G * tiles }, () => next()),
      tiles,
      importance: next(),
    });
    const sum = [0, 4, 8, 12].reduce((s, start) => s + prefillTileBudget(start, budget), 0);
    const acc = new CalibrationAccumulator({ layers: 3, kvHeads: G, tileSize: T, budget });
    const twin = new CalibrationAccumulator({ layers: 3, kvHeads: G, tileSize: T, budget });
    expect(acc.retainedLayers).toBe(0);
    for (let prompt = 0; prompt < 3; prompt++) {
      acc.beginPrompt();
      twin.beginPrompt();
      for (let chunk = 0; chunk < 2; chunk++) {
        for (let l = 0; l < 3; l++) {
          const rec = make();
          acc.addLayer({ layer: l, ...rec });
          twin.addLayer({
            layer: l,
            ...rec,
            scores: rec.scores.slice(),
            diagonalMass: rec.diagonalMass.slice(),
          });
          // the accumulator must not read the inputs later: overwrite them
          rec.scores.fill(Number.NaN);
          rec.diagonalMass.fill(Number.NaN);
          expect(acc.retainedLayers).toBe(l + 1);
          expect(acc.retainedBytes).toBe((l + 1) * G * sum * 4);
        }
      }
      acc.endPrompt();
      twin.endPrompt();
      expect(acc.retainedLayers).toBe(0);
      expect(acc.retainedBytes).toBe(0);
    }
    expect(acc.statistics().similarity.values).toEqual(twin.statistics().similarity.values);
    expect(acc.statistics().importance).toEqual(twin.statistics().importance);
    expect(acc.statistics().similarity.values.some((v) => v > 0 && v < 1)).toBe(true);
  });

  it('rejects out-of-order feeding and bad shapes with CalibrationError', () => {
    const acc = new CalibrationAccumulator({ layers: 2, kvHeads: 1, tileSize: 2, budget: { kMin: 1 } });
    const rec = {
      scores: new Float64Array(8).fill(0.1),
      diagonalMass: [0.5, 0.5],
      tiles: 2,
      importance: 0.1,
    };
    expect(() => acc.addLayer({ layer: 0, ...rec })).toThrow(/no prompt is open/);
    expect(() => acc.endPrompt()).toThrow(CalibrationError);
    expect(() => acc.statistics()).toThrow(/no prompt/);
    acc.beginPrompt();
    expect(() => acc.beginPrompt()).toThrow(/not ended/);
    expect(() => acc.addLayer({ layer: 1, ...rec })).toThrow(/expected layer 0/);
    expect(() => acc.addLayer({ layer: 0, ...rec, scores: new Float64Array(7) })).toThrow(
      /scores has 7 values/,
    );
    expect(() => acc.addLayer({ layer: 0, ...rec, diagonalMass: [1] })).toThrow(/diagonalMass has 1/);
    expect(() => acc.addLayer({ layer: 0, ...rec, diagonalMass: [1, -1] })).toThrow(/diagonalMass\[1\]/);
    expect(() => acc.addLayer({ layer: 0, ...rec, budgets: [0, 3] })).toThrow(/budgets\[1\] = 3/);
    expect(() => acc.addLayer({ layer: 0, ...rec, queryStart: 1 })).toThrow(/queryStart/);
    expect(() => acc.addLayer({ layer: 0, ...rec, tiles: 4, scores: new Float64Array(8) })).toThrow(
      /tile 3 starts at 6/,
    );
    expect(() => acc.addLayer({ layer: 0, ...rec, importance: Number.NaN })).toThrow(/importance/);
    expect(acc.retainedLayers).toBe(0); // failed calls changed nothing
    acc.addLayer({ layer: 0, ...rec });
    expect(() => acc.endPrompt()).toThrow(/incomplete/);
    expect(() => acc.addLayer({ layer: 1, ...rec, tiles: 1, scores: new Float64Array(4) })).toThrow(
      /layer 0 of this chunk/,
    );
    acc.addLayer({ layer: 1, ...rec });
    acc.endPrompt();
    expect(acc.prompts).toBe(1);
    expect(() => new CalibrationAccumulator({ layers: 0, kvHeads: 1 })).toThrow(/layers/);
    expect(() => new CalibrationAccumulator({ layers: 1, kvHeads: 1, budget: { percent: 0 } })).toThrow(
      /percent/,
    );
  });
});
