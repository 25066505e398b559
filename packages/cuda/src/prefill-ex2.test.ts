/**
 * `ex2_fma` (kernels/cuda/prefill_wgmma.cuh): 2^x on the FMA pipe, used by the prefill variants that move a share
 * of the exponentials off the MUFU (dense v19's statistics-only pass, pool v21). This test reads the function's
 * constants from the header itself and replays its f32 arithmetic step by step (Math.fround after every
 * operation; a fused multiply-add rounds once), so a change to the kernel's polynomial is checked here without a
 * GPU: the relative error against 2^x in float64 must stay within 4e-7 (ex2.approx.ftz.f32 is documented at
 * 2 ulp, 2.4e-7).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const header = join(dirname(fileURLToPath(import.meta.url)), '../../../kernels/cuda/prefill_wgmma.cuh');

interface Ex2Fma {
  readonly clamp: number;
  readonly shifter: number;
  /** Horner coefficients, highest degree first. */
  readonly coefficients: readonly number[];
}

/** The constants of ex2_fma as the header spells them. */
function readEx2Fma(): Ex2Fma {
  const src = readFileSync(header, 'utf8');
  const start = src.indexOf('__device__ __forceinline__ float ex2_fma(float x) {');
  if (start < 0) throw new Error('ex2_fma not found in prefill_wgmma.cuh');
  const body = src.slice(start, src.indexOf('\n}\n', start));
  const num = '(-?[0-9.]+(?:e-?[0-9]+)?)f?';
  const clamp = body.match(new RegExp(`x = fmaxf\\(x, ${num}\\);`));
  const shifter = body.match(new RegExp(`__fadd_rn\\(x, ${num}\\)`));
  const first = body.match(new RegExp(`float p = ${num};`));
  const rest = [...body.matchAll(new RegExp(`p = fmaf\\(p, f, ${num}\\);`, 'g'))];
  if (!clamp || !shifter || !first || rest.length === 0) throw new Error('ex2_fma has an unexpected shape');
  return {
    clamp: Number(clamp[1]),
    shifter: Number(shifter[1]),
    coefficients: [Number(first[1]), ...rest.map((m) => Number(m[1]))],
  };
}

const f32 = Math.fround;
const bits = new DataView(new ArrayBuffer(4));
const asInt = (x: number) => {
  bits.setFloat32(0, x);
  return bits.getInt32(0);
};
const asFloat = (i: number) => {
  bits.setInt32(0, i);
  return bits.getFloat32(0);
};
// fmaf: one rounding of the exact a * b + c (a * b of two f32 is exact in float64).
const fmaf = (a: number, b: number, c: number) => f32(a * b + c);

/** ex2_fma's steps in f32. */
function ex2Fma(p: Ex2Fma, xIn: number): number {
  const x = Math.max(f32(xIn), f32(p.clamp));
  const j = f32(x + f32(p.shifter));
  const f = f32(x - f32(j - f32(p.shifter)));
  const [c0, ...cs] = p.coefficients;
  let q = f32(c0 as number);
  for (const c of cs) q = fmaf(q, f, f32(c));
  return asFloat((asInt(q) + (asInt(j) - asInt(f32(p.shifter))) * (1 << 23)) | 0);
}

function maxRelErr(p: Ex2Fma, xs: readonly number[]): number {
  let worst = 0;
  for (const x of xs) {
    const want = 2 ** f32(x);
    worst = Math.max(worst, Math.abs(ex2Fma(p, x) - want) / want);
  }
  return worst;
}

function grid(lo: number, hi: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => lo + ((hi - lo) * i) / (count - 1));
}

describe('ex2_fma (2^x on the FMA pipe)', () => {
  const p = readEx2Fma();
  // Fine steps over one period of the reduction (every fraction f in [-0.5, 0.5]) and a coarse sweep of the
  // exponent range the prefill kernels see (scores minus the row constant: at most 0, down to the clamp).
  const xs = [...grid(-2, 2, 40001), ...grid(-120, 120, 24001)];
  let seed = 12345;
  const random = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  for (let i = 0; i < 20000; i++) xs.push((random() - 0.5) * 240);

  it('reads a degree-5 polynomial and the 1.5 x 2^23 rounding constant from the header', () => {
    expect(p.coefficients).toHaveLength(6);
    expect(p.shifter).toBe(12582912);
    expect(p.clamp).toBe(-125);
    expect(p.coefficients.at(-1)).toBe(1);
  });

  it('is within 4e-7 of 2^x over [-120, 120]', () => {
    expect(maxRelErr(p, xs)).toBeLessThan(4e-7);
  });

  it('is exact at integers and clamps far below zero to 2^-125', () => {
    for (let k = -120; k <= 120; k += 7) expect(ex2Fma(p, k)).toBe(2 ** k);
    expect(ex2Fma(p, -1000)).toBe(2 ** -125);
    expect(ex2Fma(p, Number.NEGATIVE_INFINITY)).toBe(2 ** -125);
  });

  it('would catch a polynomial one degree short or a wrong coefficient', () => {
    const short = { ...p, coefficients: p.coefficients.slice(1) };
    expect(maxRelErr(short, xs)).toBeGreaterThan(4e-7);
    const off = { ...p, coefficients: p.coefficients.map((c, i) => (i === 3 ? c * 1.001 : c)) };
    expect(maxRelErr(off, xs)).toBeGreaterThan(4e-7);
  });
});
