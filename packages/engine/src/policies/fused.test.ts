import { anchorDecodeTopk, type DecodeInputs, denseDecodeAttention } from '@kascade/core';
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../model/random.js';
import { denseAnchorDecode } from './fused.js';

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

// The output agrees with core's to float64 rounding (core may sum in another order); the
// selection is core's own (same probabilities, same pooling, same Top-k).
describe('one-pass dense-anchor decode', () => {
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
  }
});
