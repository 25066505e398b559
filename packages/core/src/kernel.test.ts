import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { denseCausalPrefillAttention, denseDecodeAttention, sparseDecodeAttention } from './attention.js';
import { kernelLimits, poisonScratch } from './kernel.js';
import {
  decodeQuery,
  naiveAttend,
  naiveProbabilities,
  prefillQuery,
  randomDecode,
  randomPrefill,
  range,
  relativeError,
  rng,
  shuffled,
} from './naive.test-support.js';
import { pooledDecodeScores, pooledPrefillScores } from './pooling.js';
import { allHeadsPooledDecodeTopk } from './selection.js';

// Sizes past one online-softmax chunk (256 keys) and past the probability block limit, so the
// rescaling and sub-blocking paths run; the small property tests never reach them.
describe('blocked kernels at sizes past their chunk and block limits', () => {
  const defaultLimit = kernelLimits.probabilityValues;
  afterEach(() => {
    kernelLimits.probabilityValues = defaultLimit;
  });

  it('dense and sparse decode over 1000 keys equal the naive implementation', () => {
    const n = 1000;
    // A large spread makes later chunks raise the running maximum.
    const inputs = randomDecode({ heads: 4, kvHeads: 2, headDim: 5 }, n, 21, 6);
    const want = range(0, 4).flatMap((h) => naiveAttend(inputs, decodeQuery(inputs, h), h >> 1, range(0, n)));
    expect(relativeError(denseDecodeAttention(inputs), want)).toBeLessThan(1e-12);
    const next = rng(5);
    const k = 600;
    const rows = [shuffled(n, next).slice(0, k), shuffled(n, next).slice(0, k)];
    const selection = { kvHeads: 2, k, indices: Int32Array.from(rows.flat()) };
    const sparseWant = range(0, 4).flatMap((h) =>
      naiveAttend(inputs, decodeQuery(inputs, h), h >> 1, rows[h >> 1]),
    );
    expect(relativeError(sparseDecodeAttention(inputs, selection), sparseWant)).toBeLessThan(1e-12);
  });

  it('causal prefill past one chunk equals the naive implementation', () => {
    const inputs = randomPrefill({ heads: 2, kvHeads: 1, headDim: 3 }, 560, 9, 8, 8, 6);
    const want: number[] = [];
    for (let h = 0; h < 2; h++)
      for (let i = 0; i < 9; i++)
        want.push(...naiveAttend(inputs, prefillQuery(inputs, h, i), 0, range(0, 560 + i + 1)));
    expect(relativeError(denseCausalPrefillAttention(inputs), want)).toBeLessThan(1e-12);
  });

  it('prefill pooling gives the same scores when rows are split into small sub-blocks', () => {
    const inputs = randomPrefill({ heads: 4, kvHeads: 2, headDim: 4 }, 40, 13, 8, 17);
    const whole = pooledPrefillScores(inputs);
    kernelLimits.probabilityValues = 100; // about two rows per block at n = 53
    const split = pooledPrefillScores(inputs);
    expect(relativeError(split.scores, whole.scores)).toBeLessThan(1e-14);
    expect(relativeError(split.diagonalMass, whole.diagonalMass)).toBeLessThan(1e-14);
    // And both against the naive sum for one (KV head, tile).
    const t = 1;
    const start = 48;
    const naive = new Array<number>(start).fill(0);
    for (const h of [2, 3])
      for (let pos = start; pos < 53; pos++)
        for (const [x, w] of naiveProbabilities(
          inputs,
          prefillQuery(inputs, h, pos - 40),
          1,
          range(0, pos + 1),
        ))
          if (x < start) naive[x] += w;
    const row = split.scores.subarray((1 * split.tiles + t) * 53, (1 * split.tiles + t) * 53 + start);
    expect(relativeError(row, naive)).toBeLessThan(1e-12);
  });
});

describe('decode pooling in sub-blocks', () => {
  it('gives the same pooled scores and selections when heads are split', () => {
    const inputs = randomDecode({ heads: 8, kvHeads: 2, headDim: 4 }, 300, 4);
    const whole = pooledDecodeScores(inputs);
    const wholeAll = allHeadsPooledDecodeTopk(inputs, { kMin: 20 });
    kernelLimits.probabilityValues = 300; // one head per block
    try {
      expect(relativeError(pooledDecodeScores(inputs), whole)).toBeLessThan(1e-14);
      expect(allHeadsPooledDecodeTopk(inputs, { kMin: 20 })).toEqual(wholeAll);
    } finally {
      kernelLimits.probabilityValues = 1 << 21;
    }
  });
});

describe('scratch reuse', () => {
  it('no op reads scratch an earlier call left behind (scratch poisoned with NaN before each run)', () => {
    let checked = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 }),
        fc.constantFrom(1, 3, 8),
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        (kvHeads, group, headDim, n, seed) => {
          const shape = { heads: kvHeads * group, kvHeads, headDim };
          const dec = randomDecode(shape, n, seed);
          const want = range(0, shape.heads).flatMap((h) =>
            naiveAttend(dec, decodeQuery(dec, h), Math.floor(h / group), range(0, n)),
          );
          poisonScratch();
          expect(relativeError(denseDecodeAttention(dec), want)).toBeLessThan(1e-12);
          const pooledWant = new Float64Array(kvHeads * n);
          for (let h = 0; h < shape.heads; h++) {
            const j = Math.floor(h / group);
            for (const [x, w] of naiveProbabilities(dec, decodeQuery(dec, h), j, range(0, n)))
              pooledWant[j * n + x] += w;
          }
          poisonScratch();
          expect(relativeError(pooledDecodeScores(dec), pooledWant)).toBeLessThan(1e-12);
          const pre = randomPrefill(shape, 4 * (seed % 3), 1 + (seed % 11), 4, seed);
          const preWant: number[] = [];
          for (let h = 0; h < shape.heads; h++)
            for (let i = 0; i < pre.queries; i++)
              preWant.push(
                ...naiveAttend(
                  pre,
                  prefillQuery(pre, h, i),
                  Math.floor(h / group),
                  range(0, pre.queryStart + i + 1),
                ),
              );
          poisonScratch();
          expect(relativeError(denseCausalPrefillAttention(pre), preWant)).toBeLessThan(1e-12);
          poisonScratch();
          const pooled = pooledPrefillScores(pre);
          expect(Array.from(pooled.scores).every(Number.isFinite)).toBe(true);
          expect(Array.from(pooled.diagonalMass).every(Number.isFinite)).toBe(true);
          checked++;
        },
      ),
      { numRuns: 40 },
    );
    expect(checked).toBe(40);
  });
});
