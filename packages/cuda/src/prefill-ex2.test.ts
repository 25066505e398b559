/**
 * `ex2_poly3` (kernels/cuda/prefill_wgmma.cuh): 2^x on the FMA pipe, for the prefill variants that move a share
 * of the selection's exponentials off the MUFU (session 6: pool v23, dense v24's statistics pass). This test reads
 * the function's constants from the header itself and replays its f32 arithmetic step by step (Math.fround after
 * every operation; a fused multiply-add rounds once), so a change to the kernel's polynomial is checked here
 * without a GPU: its relative error against 2^x in float64 must stay within 7.5e-5 (the device parity check's
 * selection tolerance is 1e-4 of the k-th score).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const header = join(dirname(fileURLToPath(import.meta.url)), '../../../kernels/cuda/prefill_wgmma.cuh');

interface Ex2Poly {
  readonly clamp: number;
  readonly shifter: number;
  /** Horner coefficients, highest degree first. */
  readonly coefficients: readonly number[];
}

/** The constants of ex2_poly3 as the header spells them (and a check of its exponent step's form). */
function readEx2Poly(): Ex2Poly {
  const src = readFileSync(header, 'utf8');
  const start = src.indexOf('__device__ __forceinline__ float ex2_poly3(float x) {');
  if (start < 0) throw new Error('ex2_poly3 not found in prefill_wgmma.cuh');
  const body = src.slice(start, src.indexOf('\n}\n', start));
  const num = '(-?[0-9.]+(?:e-?[0-9]+)?)f?';
  const clamp = body.match(new RegExp(`x = fmaxf\\(x, ${num}\\);`));
  const shifter = body.match(new RegExp(`__fadd_rn\\(x, ${num}\\)`));
  const first = body.match(new RegExp(`float p = ${num};`));
  const rest = [...body.matchAll(new RegExp(`p = fmaf\\(p, f, ${num}\\);`, 'g'))];
  if (!clamp || !shifter || !first || rest.length === 0) throw new Error('ex2_poly3 has an unexpected shape');
  if (!body.includes('__float_as_int(p) + (__float_as_int(j) << 23)'))
    throw new Error('ex2_poly3: unknown exponent step');
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

/** ex2_poly3's steps in f32. */
function ex2Poly(p: Ex2Poly, xIn: number): number {
  const x = Math.max(f32(xIn), f32(p.clamp));
  const j = f32(x + f32(p.shifter));
  const f = f32(x - f32(j - f32(p.shifter)));
  const [c0, ...cs] = p.coefficients;
  let q = f32(c0 as number);
  for (const c of cs) q = fmaf(q, f, f32(c));
  return asFloat((asInt(q) + (asInt(j) << 23)) | 0);
}

function maxRelErr(p: Ex2Poly, xs: readonly number[]): number {
  let worst = 0;
  for (const x of xs) {
    const want = 2 ** f32(x);
    worst = Math.max(worst, Math.abs(ex2Poly(p, x) - want) / want);
  }
  return worst;
}

function grid(lo: number, hi: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => lo + ((hi - lo) * i) / (count - 1));
}

describe('ex2_poly3 (2^x on the FMA pipe, degree 3, for selection scores)', () => {
  const p = readEx2Poly();
  // One reduction period finely, then the range the kernels feed it: pool scores minus the row constant (<= 0,
  // down to the clamp) and the statistics pass's steps against a held max (kept below 2^64).
  const xs = [...grid(-2, 2, 40001), ...grid(-124, 64, 18801)];
  const bound = 7.5e-5;

  it('reads a degree-3 polynomial and the 1.5 x 2^23 rounding constant from the header', () => {
    expect(p.coefficients).toHaveLength(4);
    expect(p.shifter).toBe(12582912);
    expect(p.clamp).toBe(-125);
  });

  it(`is within ${bound} of 2^x over [-124, 64], well inside the selection check's 1e-4`, () => {
    const worst = maxRelErr(p, xs);
    expect(worst).toBeLessThan(bound);
    // The error bound is the polynomial's, not a loose one: a minimax fit reaches it.
    expect(worst).toBeGreaterThan(5e-5);
  });

  it('clamps far below zero to about 2^-125 and stays finite at 64', () => {
    const lo = ex2Poly(p, Number.NEGATIVE_INFINITY);
    expect(Math.abs(lo / 2 ** -125 - 1)).toBeLessThan(bound);
    expect(ex2Poly(p, -1000)).toBe(lo);
    expect(Math.abs(ex2Poly(p, 64) / 2 ** 64 - 1)).toBeLessThan(bound);
  });

  it('would catch a wrong coefficient or a missing clamp', () => {
    const off = { ...p, coefficients: p.coefficients.map((c, i) => (i === 1 ? c * 1.001 : c)) };
    expect(maxRelErr(off, xs)).toBeGreaterThan(bound);
    // Below -126 the shift-add leaves the exponent field: without the clamp 2^-130 comes out as garbage.
    const x = ex2Poly({ ...p, clamp: -1000 }, -130);
    expect(Math.abs(x / 2 ** -130 - 1)).toBeGreaterThan(1);
  });
});
