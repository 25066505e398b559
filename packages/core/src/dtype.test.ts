import fc from 'fast-check';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { KascadeRangeError } from './budget.js';
import {
  bf16BitsToF32,
  createTensor,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  fromBf16,
  fromF16,
  tensorSize,
  tensorToFloat32,
  toBf16,
  toF16,
} from './dtype.js';
import { ShapeError } from './errors.js';

const f32Bits = (x: number): number => new Uint32Array(Float32Array.of(x).buffer)[0];
const fromF32Bits = (u: number): number => new Float32Array(Uint32Array.of(u).buffer)[0];

describe('f16', () => {
  it('matches known bit patterns', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [1 / 3, 0x3555],
      [0.1, 0x2e66],
      [65504, 0x7bff],
      [65519.99, 0x7bff],
      [65520, 0x7c00], // halfway to 65536: ties to even overflows
      [1e6, 0x7c00],
      [Number.POSITIVE_INFINITY, 0x7c00],
      [Number.NEGATIVE_INFINITY, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // halfway to it: ties to even gives zero
      [3 * 2 ** -26, 0x0001],
      [-(2 ** -24), 0x8001],
      [1023 * 2 ** -24, 0x03ff], // largest subnormal
      [2 ** -14 - 2 ** -26, 0x0400], // rounds up into the smallest normal
      [1 + 2 ** -11, 0x3c00], // tie, even mantissa stays
      [1 + 3 * 2 ** -11, 0x3c02], // tie, odd mantissa rounds up
    ];
    for (const [x, bits] of cases) expect(f32ToF16Bits(x), `f16(${x})`).toBe(bits);
    expect(f32ToF16Bits(Number.NaN)).toBe(0x7e00);
    expect(f16BitsToF32(0x7e00)).toBeNaN();
    expect(f16BitsToF32(0x7c01)).toBeNaN();
    expect(f16BitsToF32(0x3555)).toBeCloseTo(1 / 3, 3);
  });

  it('round-trips every non-NaN bit pattern exactly', () => {
    let nans = 0;
    for (let b = 0; b < 65536; b++) {
      const x = f16BitsToF32(b);
      if (Number.isNaN(x)) {
        nans++;
        continue;
      }
      if (f32ToF16Bits(x) !== b) throw new Error(`f16 bits ${b.toString(16)} -> ${x} -> ${f32ToF16Bits(x)}`);
    }
    expect(nans).toBe(2 * 1023);
  });

  it('rounds to the nearest representable value, ties to an even mantissa', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, min: -70000, max: 70000 }), (x) => {
        const b = f32ToF16Bits(x);
        const y = f16BitsToF32(b);
        if (!Number.isFinite(y)) {
          expect(Math.abs(x)).toBeGreaterThanOrEqual(65520);
          return;
        }
        // Neighbours one ulp either way (same sign), by bits.
        for (const nb of [(b & 0x7fff) - 1, (b & 0x7fff) + 1]) {
          if (nb < 0 || nb >= 0x7c00) continue;
          const z = f16BitsToF32((b & 0x8000) | nb);
          const dy = Math.abs(y - x);
          const dz = Math.abs(z - x);
          expect(dy).toBeLessThanOrEqual(dz);
          if (dy === dz && y !== z) expect(b & 1).toBe(0);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('converts arrays both ways', () => {
    const values = [0.25, -3.5, 1000, 2 ** -20];
    const bits = toF16(values);
    expect(bits).toBeInstanceOf(Uint16Array);
    expect(Array.from(fromF16(bits))).toEqual(values);
  });
});

describe('bf16', () => {
  it('matches known bit patterns', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3f80],
      [-2, 0xc000],
      [Math.fround(0.1), 0x3dcd],
      [Math.fround(Math.PI), 0x4049],
      [1 + 2 ** -8, 0x3f80], // tie, even stays
      [1 + 3 * 2 ** -8, 0x3f82], // tie, odd rounds up
      [3.3895313892515355e38, 0x7f7f], // largest finite
      [3.4028234663852886e38, 0x7f80], // f32 max rounds to Infinity
      [Number.POSITIVE_INFINITY, 0x7f80],
      [Number.NEGATIVE_INFINITY, 0xff80],
      [2 ** -126, 0x0080],
      [2 ** -133, 0x0001],
      [2 ** -134, 0x0000],
    ];
    for (const [x, bits] of cases) expect(f32ToBf16Bits(x), `bf16(${x})`).toBe(bits);
    expect(f32ToBf16Bits(Number.NaN)).toBe(0x7fc0);
    expect(bf16BitsToF32(0x7fc0)).toBeNaN();
  });

  it('round-trips every non-NaN bit pattern exactly', () => {
    let nans = 0;
    for (let b = 0; b < 65536; b++) {
      const x = bf16BitsToF32(b);
      if (Number.isNaN(x)) {
        nans++;
        continue;
      }
      if (f32ToBf16Bits(x) !== b) throw new Error(`bf16 bits ${b.toString(16)} -> ${x}`);
    }
    expect(nans).toBe(2 * 127);
  });

  it('equals the usual float32 bit rounding on random float32 values', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (u) => {
        const x = fromF32Bits(u);
        fc.pre(!Number.isNaN(x));
        const expected = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
        expect(f32ToBf16Bits(x)).toBe(expected);
        expect(f32Bits(bf16BitsToF32(expected))).toBe((expected << 16) >>> 0);
      }),
      { numRuns: 3000 },
    );
  });

  it('converts arrays both ways', () => {
    const values = [0.25, -3.5, 1024, 2 ** -100];
    expect(Array.from(fromBf16(toBf16(values)))).toEqual(values);
  });
});

describe('tensors', () => {
  it('sizes shapes and checks dimensions', () => {
    expect(tensorSize([2, 3, 4])).toBe(24);
    expect(tensorSize([])).toBe(1);
    expect(tensorSize([5, 0])).toBe(0);
    expect(() => tensorSize([2, -1])).toThrow(ShapeError);
    expect(() => tensorSize([2.5])).toThrow(/shape\[0\]/);
  });

  it('creates tensors, converting values for 16-bit dtypes and keeping raw bits as given', () => {
    const f32 = createTensor('f32', [2, 2], [1, 2, 3, 4]);
    expect(f32.data).toBeInstanceOf(Float32Array);
    expect(Array.from(tensorToFloat32(f32))).toEqual([1, 2, 3, 4]);
    const bits = Uint16Array.of(0x3c00, 0xc000);
    const f16 = createTensor('f16', [2], bits);
    expect(f16.data).toBe(bits);
    expect(Array.from(tensorToFloat32(f16))).toEqual([1, -2]);
    const bf16 = createTensor('bf16', [1, 2], [1, -2]);
    expect(Array.from(bf16.data)).toEqual([0x3f80, 0xc000]);
    expect(Array.from(createTensor('f16', [3]).data)).toEqual([0, 0, 0]);
    expect(f32.shape).toEqual([2, 2]);
  });

  it('types the data array by dtype', () => {
    expectTypeOf(createTensor('f32', [1]).data).toEqualTypeOf<Float32Array>();
    expectTypeOf(createTensor('f16', [1]).data).toEqualTypeOf<Uint16Array>();
    expectTypeOf(createTensor('bf16', [1]).data).toEqualTypeOf<Uint16Array>();
    expect(createTensor('bf16', [1]).dtype).toBe('bf16');
  });

  it('rejects mismatched data and unknown dtypes with typed errors', () => {
    expect(() => createTensor('f32', [2, 2], [1, 2, 3])).toThrow(ShapeError);
    expect(() => createTensor('f32', [2, 2], [1, 2, 3])).toThrow(/data has length 3, expected 4/);
    expect(() => createTensor('f8' as 'f32', [1])).toThrow(KascadeRangeError);
    expect(() => f16BitsToF32(70000)).toThrow(KascadeRangeError);
  });
});
