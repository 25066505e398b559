import { describe, expect, it } from 'vitest';
import { siluMulWasm } from './attention-wasm.js';
import { mulberry32 } from './random.js';

describe('siluMul on the SIMD kernel', () => {
  it('matches silu(g) * u in float64 to float32 accuracy, at any n and magnitude', () => {
    const rand = mulberry32(3);
    for (const n of [1, 3, 4, 17, 70_001]) {
      const gate = Float32Array.from({ length: n }, (_, i) => (2 * rand() - 1) * (i % 7 === 0 ? 120 : 6));
      const up = Float32Array.from({ length: n }, () => 2 * rand() - 1);
      const want = Array.from(gate, (g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
      expect(siluMulWasm(gate, up, n)).toBe(true);
      let num = 0;
      let den = 0;
      for (let i = 0; i < n; i++) {
        expect(Number.isFinite(gate[i]!)).toBe(true);
        expect(Math.abs(gate[i]! - want[i]!)).toBeLessThanOrEqual(1e-6 * Math.abs(want[i]!) + 1e-30);
        num += (gate[i]! - want[i]!) ** 2;
        den += want[i]! ** 2;
      }
      expect(Math.sqrt(num / den)).toBeLessThan(1e-6);
    }
  });
});
