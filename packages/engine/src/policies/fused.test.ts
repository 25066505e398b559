import {
  anchorDecodeTopk,
  anchorPrefillTopk,
  type DecodeInputs,
  denseCausalPrefillAttention,
  denseDecodeAttention,
  type PrefillInputs,
} from '@kascade/core';
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../model/random.js';
import { denseAnchorDecode, denseAnchorPrefill } from './fused.js';

function random(n: number, rand: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => (2 * rand() - 1) * 2);
}

/** `||a - b|| / ||b||`, after checking every value is finite. */
function relDiff(a: Float64Array, b: Float64Array): number {
  expect(a.length).toBe(b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    expect(Number.isFinite(a[i]!)).toBe(true);
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  expect(den).toBeGreaterThan(0);
  return Math.sqrt(num / den);
}

// Outputs agree to float64 rounding (the summation order may differ from core's); the
// selections are the same index sets (random inputs have no exact ties).
describe('one-pass dense-anchor ops', () => {
  for (const [heads, kvHeads] of [
    [4, 1],
    [8, 2],
    [3, 3],
  ] as const) {
    it(`decode equals dense + anchorDecodeTopk (heads ${heads}, kvHeads ${kvHeads})`, () => {
      const d = 16;
      for (const [n, capacity] of [
        [1, 1],
        [50, 64],
        [333, 333],
      ] as const) {
        const rand = mulberry32(n * 31 + heads);
        const inputs: DecodeInputs = {
          heads,
          kvHeads,
          headDim: d,
          n,
          capacity,
          q: random(heads * d, rand),
          k: random(kvHeads * capacity * d, rand),
          v: random(kvHeads * capacity * d, rand),
        };
        const budget = { kMin: 7, percent: 10 };
        const fused = denseAnchorDecode(inputs, budget);
        expect(relDiff(fused.out, denseDecodeAttention(inputs))).toBeLessThan(1e-13);
        expect(fused.selection).toEqual(anchorDecodeTopk(inputs, budget));
      }
    });

    it(`prefill equals dense + anchorPrefillTopk (heads ${heads}, kvHeads ${kvHeads})`, () => {
      const d = 8;
      for (const [queryStart, queries, T, capacity] of [
        [0, 5, 4, 9],
        [16, 37, 8, 60],
        [96, 64, 32, 160],
      ] as const) {
        const rand = mulberry32(queryStart + queries + heads);
        const n = queryStart + queries;
        const inputs: PrefillInputs = {
          heads,
          kvHeads,
          headDim: d,
          n,
          capacity,
          queries,
          queryStart,
          tileSize: T,
          q: random(heads * queries * d, rand),
          k: random(kvHeads * capacity * d, rand),
          v: random(kvHeads * capacity * d, rand),
        };
        const budget = { kMin: 5, percent: 10 };
        const fused = denseAnchorPrefill(inputs, budget);
        const outRef = denseCausalPrefillAttention(inputs);
        expect(fused.out.length).toBe(outRef.length);
        expect(relDiff(fused.out, outRef)).toBeLessThan(1e-13);
        expect(fused.selection).toEqual(anchorPrefillTopk(inputs, budget));
      }
    });
  }

  it('rejects inconsistent prefill shapes', () => {
    const inputs = {
      heads: 2,
      kvHeads: 1,
      headDim: 4,
      n: 8,
      queries: 4,
      queryStart: 2,
      tileSize: 4,
      q: new Float32Array(32),
      k: new Float32Array(32),
      v: new Float32Array(32),
    };
    expect(() => denseAnchorPrefill(inputs, {})).toThrow(/multiple of tileSize/);
    expect(() => denseAnchorPrefill({ ...inputs, queryStart: 4, q: new Float32Array(3) }, {})).toThrow(
      /q has/,
    );
  });
});
