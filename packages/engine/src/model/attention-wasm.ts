/**
 * WebAssembly SIMD (f32x4) kernels for attention, assembled here like the matrix kernels
 * (`wasm.ts`), and the workspace that runs them on one block of query rows sharing a KV
 * head. The block is computed the direct way: all scores of its rows against its key list,
 * the full softmax of each row (`P = exp(S - max)`, row sums `l`), then what the op needs
 * from `P`: the output `P V / l`, and/or the pooled column sums `sum_r P[r, x] w[r]` (the
 * method's post-softmax pooling, with `w = 1 / l`). One pass gives both, which is what a
 * dense anchor needs. Scores live in the workspace's memory (`rows x keys` f32), so the ops
 * split large blocks by rows to bound it. K and V rows are read from the caller's caches a
 * chunk of keys at a time (`attentionLimits.keyChunk`): copied into a small buffer and
 * consumed by the kernels at once, so each crosses memory once and is then read from cache.
 *
 * Kernels (byte pointers; rows padded to a multiple of 4, keys to a multiple of 16, head
 * dim a multiple of 16). Scores are held key-major, `S[c * ldS + r]` (`ldS` = padded rows):
 * - `qk(q, k, s, R, C, dB, ldSB, scale)`: `S[c, r] = scale * q[r] . k[c]`; `q` interleaved
 *   per 4-row block as `[d / 4][4 rows][4]`, `k` row-major `[C, d]`; 4 rows x 2 keys a step.
 * - `softmaxRows(s, R, C, ldSB, l)`: per row, `P = exp(S - max)` in place and `l[r] = sum P`,
 *   four rows at a time down the keys; `-Infinity` scores (masked keys) give exactly 0.
 * - `pv(s, R, C, ldSB, v, dB, o)`: `O[r, :] += sum_c P[c, r] V[c, :]`; 2 rows x 16 columns a step.
 * - `colsum(s, R, C, ldSB, w, out)`: `out[c] += sum_r P[c, r] w[r]`; four keys a step.
 */
import { Code, F32, func, I32, name, OP, section, uleb, V128 } from './wasm.js';

const SIMD = {
  load: 0x00,
  load32Splat: 0x09,
  store: 0x0b,
  const: 0x0c,
  shuffle: 0x0d,
  f32x4Splat: 0x13,
  f32x4Lt: 0x43,
  andnot: 0x4f,
  i32x4Shl: 0xab,
  i32x4Add: 0xae,
  add: 0xe4,
  sub: 0xe5,
  mul: 0xe6,
  bitselect: 0x52,
  f32x4Ge: 0x46,
  abs: 0xe0,
  neg: 0xe1,
  div: 0xe7,
  /** `f32x4.pmax` (`a < b ? b : a`): one instruction, unlike `f32x4.max`'s NaN and -0 handling. */
  pmax: 0xeb,
} as const;

/** A {@link Code} with the few extra instructions these kernels use. */
class Asm extends Code {
  store(offset = 0) {
    return this.simd(SIMD.store, 4, ...uleb(offset));
  }
  /** `v128.load32_splat`: one f32 from memory into all four lanes. */
  loadSplat(offset = 0) {
    return this.simd(SIMD.load32Splat, 2, ...uleb(offset));
  }
  /** `v128.const` of four copies of the f32 `x`. */
  splatConst(x: number) {
    const b = new Uint8Array(new Float32Array([x, x, x, x]).buffer);
    return this.simd(SIMD.const, ...b);
  }
  i32x4Const(x: number) {
    const b = new Uint8Array(new Int32Array([x, x, x, x]).buffer);
    return this.simd(SIMD.const, ...b);
  }
  /** `i8x16.shuffle` picking f32 lanes (0-3 from the first operand, 4-7 from the second). */
  shuffle(lanes: [number, number, number, number]) {
    return this.simd(SIMD.shuffle, ...lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]));
  }
  add(local: number, n: number) {
    return this.get(local).i32(n).op(OP.i32Add).set(local);
  }
  addLocal(local: number, other: number) {
    return this.get(local).get(other).op(OP.i32Add).set(local);
  }
  /** `acc += a * b` on v128 locals. */
  fma(acc: number, a: number, b: number) {
    return this.get(acc).get(a).get(b).f32x4Mul().f32x4Add().set(acc);
  }
  /**
   * The four horizontal sums of the v128 locals `a[0..3]` as one vector on the stack
   * (`[sum a0, sum a1, sum a2, sum a3]`), by two transpose-and-add steps; `t` is scratch.
   */
  reduce4(a: readonly number[], t: number) {
    this.get(a[0]!).get(a[1]!).shuffle([0, 4, 1, 5]);
    this.get(a[0]!).get(a[1]!).shuffle([2, 6, 3, 7]).f32x4Add().set(t);
    this.get(a[2]!).get(a[3]!).shuffle([0, 4, 1, 5]);
    this.get(a[2]!).get(a[3]!).shuffle([2, 6, 3, 7]).f32x4Add().set(a[3]!);
    this.get(t).get(a[3]!).shuffle([0, 1, 4, 5]);
    this.get(t).get(a[3]!).shuffle([2, 3, 6, 7]).f32x4Add();
    return this;
  }
  /** Sets the 13 v128 locals from `k` on to the constants {@link exp} reads. */
  expConstants(k: number) {
    EXP_CONSTANTS.forEach((x, i) => {
      if (i === 5) this.i32x4Const(x).set(k + i);
      else this.splatConst(x).set(k + i);
    });
    return this;
  }
  /**
   * `x = exp(x)` on the v128 local `x` (Cephes' expf: range reduction by ln 2, a degree-6
   * polynomial, `2^n` built from bits, `n` rounded by the 1.5 * 2^23 trick), with the
   * constants in locals `k ..` ({@link expConstants}). Inputs below -87 (and -Infinity)
   * give 0; inputs here are never positive (scores minus their row maximum). Relative
   * error about 2e-7.
   */
  exp(x: number, n: number, mask: number, t: number, k: number) {
    this.get(x).get(k).simd(SIMD.f32x4Lt).set(mask);
    this.get(x).get(k).simd(SIMD.pmax).set(x);
    this.get(x)
      .get(k + 1)
      .f32x4Mul()
      .get(k + 2)
      .f32x4Add()
      .set(t);
    this.get(t)
      .get(k + 2)
      .simd(SIMD.sub)
      .set(n);
    this.get(x)
      .get(n)
      .get(k + 3)
      .f32x4Mul()
      .simd(SIMD.sub)
      .set(x);
    this.get(x)
      .get(n)
      .get(k + 4)
      .f32x4Mul()
      .simd(SIMD.sub)
      .set(x);
    // 2^n: the bits of t are those of the magic number plus n; (bits + 127) << 23 is
    // (n + 127) << 23, since the magic number's bits shifted left by 23 vanish.
    this.get(t)
      .get(k + 5)
      .simd(SIMD.i32x4Add)
      .i32(23)
      .simd(SIMD.i32x4Shl)
      .set(n);
    this.get(k + 6);
    for (let i = 7; i < 12; i++)
      this.get(x)
        .f32x4Mul()
        .get(k + i)
        .f32x4Add();
    // (p * x * x + x + 1) * 2^n, zero where masked
    this.get(x)
      .f32x4Mul()
      .get(x)
      .f32x4Mul()
      .get(x)
      .f32x4Add()
      .get(k + 12)
      .f32x4Add();
    this.get(n).f32x4Mul().get(mask).simd(SIMD.andnot).set(x);
    return this;
  }
}

/** The constants of {@link Asm.exp}, in the order of its locals. */
const EXP_CONSTANTS = [
  -87,
  Math.LOG2E,
  12582912, // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits
  0.693359375, // ln 2, high part (exact in f32)
  -2.1219444e-4, // ln 2, low part
  127, // exponent bias (an i32x4)
  1.98756915e-4,
  1.3981999507e-3,
  8.3334519073e-3,
  4.1665795894e-2,
  1.6666665459e-1,
  5.0000001201e-1,
  1,
];

// Scores are stored key-major, `S[c * ldS + r]` (one key's scores of every row together), so
// the softmax runs down four rows at once with no horizontal reductions.

/** `qk`: params 0 q, 1 k, 2 s, 3 R, 4 C, 5 dB, 6 ldSB, 7 scale (f32). */
function qkBody(): Asm {
  // i32 locals: 8 r0, 9 qBlk, 10 c0, 11 k0p, 12 k1p, 13 kEnd, 14 qp, 15 sCol, 16 kRow, 17 sp
  // v128: 18..25 acc[kk * 4 + i], 26 k0, 27 k1, 28 qv, 29 vscale
  const acc = (i: number, kk: number) => 18 + kk * 4 + i;
  const c = new Asm();
  c.get(7).simd(SIMD.f32x4Splat).set(29);
  c.i32(0).set(8).get(0).set(9).get(2).set(15);
  c.op(OP.block, 0x40, OP.loop, 0x40);
  c.get(8).get(3).op(OP.i32GeU, OP.brIf, 1);
  c.i32(0).set(10).get(1).set(16).get(15).set(17);
  c.op(OP.block, 0x40, OP.loop, 0x40);
  c.get(10).get(4).op(OP.i32GeU, OP.brIf, 1);
  for (let i = 0; i < 4; i++) for (let kk = 0; kk < 2; kk++) c.v128Zero().set(acc(i, kk));
  c.get(16).set(11);
  c.get(16).get(5).op(OP.i32Add).tee(12).set(13);
  c.get(9).set(14);
  c.op(OP.loop, 0x40);
  c.get(11).v128Load(0).set(26);
  c.get(12).v128Load(0).set(27);
  for (let i = 0; i < 4; i++) {
    c.get(14)
      .v128Load(16 * i)
      .set(28);
    c.fma(acc(i, 0), 28, 26).fma(acc(i, 1), 28, 27);
  }
  c.add(14, 64).add(12, 16);
  c.get(11).i32(16).op(OP.i32Add).tee(11).get(13).op(OP.i32LtU, OP.brIf, 0);
  c.op(OP.end);
  // S[c0 + kk][r0 .. r0 + 3] = scale * the four dot products
  for (let kk = 0; kk < 2; kk++) {
    c.get(17);
    c.reduce4([acc(0, kk), acc(1, kk), acc(2, kk), acc(3, kk)], 28);
    c.get(29).f32x4Mul().store(0);
    c.addLocal(17, 6);
  }
  c.add(10, 2);
  c.get(16).get(5).op(OP.i32Add).get(5).op(OP.i32Add).set(16);
  c.op(OP.br, 0, OP.end, OP.end);
  c.add(8, 4);
  c.get(9).get(5).i32(4).op(OP.i32Mul, OP.i32Add).set(9);
  c.add(15, 16);
  c.op(OP.br, 0, OP.end, OP.end);
  return c;
}

/**
 * `softmaxRows`: params 0 s, 1 R, 2 C, 3 ldSB, 4 l. `4 * V` rows at a time down the keys
 * (`V = 4`: a whole 64-byte line of each key's scores per load, so the pass over the scores
 * reads each line once); `R` a multiple of `4 * V`.
 */
function softmaxBody(V: 1 | 4): Asm {
  // i32: 5 r0 (bytes), 6 p, 7 end; v128: 8 x, 9 n, 10 mask, 11 t, 12.. constants,
  // then vmax[V], vsum[V]
  const K = 12;
  const vmax = (i: number) => K + EXP_CONSTANTS.length + i;
  const vsum = (i: number) => K + EXP_CONSTANTS.length + V + i;
  const c = new Asm();
  c.expConstants(K);
  c.i32(0).set(5);
  c.op(OP.block, 0x40, OP.loop, 0x40);
  c.get(5).get(1).i32(4).op(OP.i32Mul, OP.i32GeU, OP.brIf, 1);
  for (let i = 0; i < V; i++) c.splatConst(Number.NEGATIVE_INFINITY).set(vmax(i));
  c.get(0).get(5).op(OP.i32Add).set(6);
  c.get(6).get(2).get(3).op(OP.i32Mul, OP.i32Add).set(7);
  c.op(OP.loop, 0x40);
  for (let i = 0; i < V; i++)
    c.get(vmax(i))
      .get(6)
      .v128Load(16 * i)
      .simd(SIMD.pmax)
      .set(vmax(i));
  c.get(6).get(3).op(OP.i32Add).tee(6).get(7).op(OP.i32LtU, OP.brIf, 0);
  c.op(OP.end);
  for (let i = 0; i < V; i++) c.v128Zero().set(vsum(i));
  c.get(0).get(5).op(OP.i32Add).set(6);
  c.op(OP.loop, 0x40);
  for (let i = 0; i < V; i++) {
    c.get(6)
      .v128Load(16 * i)
      .get(vmax(i))
      .simd(SIMD.sub)
      .set(8);
    c.exp(8, 9, 10, 11, K);
    c.get(6)
      .get(8)
      .store(16 * i);
    c.get(vsum(i)).get(8).f32x4Add().set(vsum(i));
  }
  c.get(6).get(3).op(OP.i32Add).tee(6).get(7).op(OP.i32LtU, OP.brIf, 0);
  c.op(OP.end);
  for (let i = 0; i < V; i++)
    c.get(4)
      .get(5)
      .op(OP.i32Add)
      .get(vsum(i))
      .store(16 * i);
  c.add(5, 16 * V);
  c.op(OP.br, 0, OP.end, OP.end);
  return c;
}

/** `pv`: params 0 s, 1 R, 2 C, 3 ldSB, 4 v, 5 dB, 6 o. Two rows x 16 columns a step. */
function pvBody(): Asm {
  // i32: 7 r0, 8 e0, 9 sp, 10 (unused), 11 vp, 12 sEnd, 13 oRow, 14 sRow, 15 op
  // v128: 16..23 acc[i * 4 + k], 24 p0, 25 p1, 26 vv
  const acc = (i: number, k: number) => 16 + i * 4 + k;
  const c = new Asm();
  c.i32(0).set(7).get(6).set(13).get(0).set(14);
  c.op(OP.block, 0x40, OP.loop, 0x40);
  c.get(7).get(1).op(OP.i32GeU, OP.brIf, 1);
  c.i32(0).set(8);
  c.op(OP.block, 0x40, OP.loop, 0x40);
  c.get(8).get(5).op(OP.i32GeU, OP.brIf, 1);
  // Load the accumulators from O (rows r0, r0 + 1; columns e0 .. e0 + 16).
  c.get(13).get(8).op(OP.i32Add).set(15);
  for (let k = 0; k < 4; k++)
    c.get(15)
      .v128Load(16 * k)
      .set(acc(0, k));
  for (let k = 0; k < 4; k++)
    c.get(15)
      .get(5)
      .op(OP.i32Add)
      .v128Load(16 * k)
      .set(acc(1, k));
  c.get(14).set(9);
  c.get(14).get(2).get(3).op(OP.i32Mul, OP.i32Add).set(12);
  c.get(4).get(8).op(OP.i32Add).set(11);
  c.op(OP.loop, 0x40);
  c.get(9).loadSplat(0).set(24);
  c.get(9).loadSplat(4).set(25);
  for (let k = 0; k < 4; k++) {
    c.get(11)
      .v128Load(16 * k)
      .set(26);
    c.fma(acc(0, k), 24, 26).fma(acc(1, k), 25, 26);
  }
  c.addLocal(11, 5);
  c.get(9).get(3).op(OP.i32Add).tee(9).get(12).op(OP.i32LtU, OP.brIf, 0);
  c.op(OP.end);
  for (let k = 0; k < 4; k++)
    c.get(15)
      .get(acc(0, k))
      .store(16 * k);
  for (let k = 0; k < 4; k++)
    c.get(15)
      .get(5)
      .op(OP.i32Add)
      .get(acc(1, k))
      .store(16 * k);
  c.add(8, 64);
  c.op(OP.br, 0, OP.end, OP.end);
  c.add(7, 2);
  c.get(13).get(5).i32(2).op(OP.i32Mul, OP.i32Add).set(13);
  c.add(14, 8);
  c.op(OP.br, 0, OP.end, OP.end);
  return c;
}

/** `colsum`: params 0 s, 1 R, 2 C, 3 ldSB, 4 w, 5 out. Four keys at a time: `out[c] += S[c, :] . w`. */
function colsumBody(): Asm {
  // i32: 6 c0, 7 p0, 8 rb, 9 rEnd, 10 p1, 11 p2, 12 p3, 13 op; v128: 14..17 acc, 18 wv, 19 t
  const c = new Asm();
  const p = [7, 10, 11, 12];
  c.i32(0).set(6).get(0).set(7);
  c.get(1).i32(4).op(OP.i32Mul).set(9);
  c.op(OP.block, 0x40, OP.loop, 0x40);
  c.get(6).get(2).op(OP.i32GeU, OP.brIf, 1);
  for (let k = 1; k < 4; k++)
    c.get(p[k - 1]!)
      .get(3)
      .op(OP.i32Add)
      .set(p[k]!);
  for (let k = 0; k < 4; k++) c.v128Zero().set(14 + k);
  c.i32(0).set(8);
  c.op(OP.loop, 0x40);
  c.get(4).get(8).op(OP.i32Add).v128Load(0).set(18);
  for (let k = 0; k < 4; k++) {
    c.get(14 + k)
      .get(p[k]!)
      .get(8)
      .op(OP.i32Add)
      .v128Load(0)
      .get(18)
      .f32x4Mul()
      .f32x4Add()
      .set(14 + k);
  }
  c.get(8).i32(16).op(OP.i32Add).tee(8).get(9).op(OP.i32LtU, OP.brIf, 0);
  c.op(OP.end);
  c.get(5).get(6).i32(4).op(OP.i32Mul, OP.i32Add).set(13);
  c.get(13).get(13).v128Load(0);
  c.reduce4([14, 15, 16, 17], 19);
  c.f32x4Add().store(0);
  c.add(6, 4);
  c.get(12).get(3).op(OP.i32Add).set(7);
  c.op(OP.br, 0, OP.end, OP.end);
  return c;
}

/**
 * `siluMul`: params 0 g, 1 u, 2 n (a multiple of 4): `g[i] = silu(g[i]) * u[i]` with
 * `silu(x) = x / (1 + exp(-x))`, computed as `x * s` with `e = exp(-|x|)` and
 * `s = (x >= 0 ? 1 : e) / (1 + e)` so `exp` only sees non-positive inputs.
 */
function siluMulBody(): Asm {
  // i32: 3 p, 4 end, 5 up; v128: 6 g, 7 x, 8 n, 9 mask, 10 t, 11 one, 12.. constants
  const K = 12;
  const c = new Asm();
  c.expConstants(K);
  c.splatConst(1).set(11);
  c.get(0).set(3).get(1).set(5);
  c.get(0).get(2).i32(4).op(OP.i32Mul, OP.i32Add).set(4);
  c.op(OP.block, 0x40, OP.loop, 0x40);
  c.get(3).get(4).op(OP.i32GeU, OP.brIf, 1);
  c.get(3).v128Load(0).set(6);
  c.get(6).simd(SIMD.abs).simd(SIMD.neg).set(7);
  c.exp(7, 8, 9, 10, K);
  // s = bitselect(1, e, g >= 0) / (1 + e); g = g * s * u
  c.get(3);
  c.get(6);
  c.get(11).get(7).get(6).v128Zero().simd(SIMD.f32x4Ge).simd(SIMD.bitselect);
  c.get(11).get(7).f32x4Add().simd(SIMD.div);
  c.f32x4Mul();
  c.get(5).v128Load(0).f32x4Mul();
  c.store(0);
  c.add(3, 16).add(5, 16);
  c.op(OP.br, 0, OP.end, OP.end);
  return c;
}

/** The module: its own (growable) memory `env.memory`, four exported kernels. */
export function attentionModuleBytes(): Uint8Array<ArrayBuffer> {
  // Types: 0 qk (7 x i32, f32); 1 softmaxRows (5 x i32); 2 pv (7 x i32); 3 colsum (6 x i32).
  // Functions: qk, softmaxRows (4 rows a step), pv, colsum, softmaxRows16 (16 rows a step).
  const fn = (params: number[]) => [0x60, ...uleb(params.length), ...params, 0];
  const i32s = (n: number) => new Array<number>(n).fill(I32);
  const type = [5, ...fn([...i32s(7), F32]), ...fn(i32s(5)), ...fn(i32s(7)), ...fn(i32s(6)), ...fn(i32s(3))];
  const imports = [1, ...name('env'), ...name('memory'), 0x02, 0x00, ...uleb(1)];
  const funcs = [6, 0, 1, 2, 3, 1, 4];
  const names = ['qk', 'softmaxRows', 'pv', 'colsum', 'softmaxRows16', 'siluMul'];
  const exports = [6, ...names.flatMap((k, i) => [...name(k), 0x00, i])];
  const code = [
    6,
    ...func(
      [
        [10, I32],
        [12, V128],
      ],
      qkBody(),
    ),
    ...func(
      [
        [3, I32],
        [4 + EXP_CONSTANTS.length + 2, V128],
      ],
      softmaxBody(1),
    ),
    ...func(
      [
        [9, I32],
        [11, V128],
      ],
      pvBody(),
    ),
    ...func(
      [
        [8, I32],
        [6, V128],
      ],
      colsumBody(),
    ),
    ...func(
      [
        [3, I32],
        [4 + EXP_CONSTANTS.length + 8, V128],
      ],
      softmaxBody(4),
    ),
    ...func(
      [
        [3, I32],
        [6 + EXP_CONSTANTS.length, V128],
      ],
      siluMulBody(),
    ),
  ];
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, type),
    ...section(2, imports),
    ...section(3, funcs),
    ...section(7, exports),
    ...section(10, code),
  ]);
}

interface AttentionKernels {
  qk(q: number, k: number, s: number, R: number, C: number, dB: number, ldSB: number, scale: number): void;
  softmaxRows(s: number, R: number, C: number, ldSB: number, l: number): void;
  softmaxRows16(s: number, R: number, C: number, ldSB: number, l: number): void;
  siluMul(g: number, u: number, n: number): void;
  pv(s: number, R: number, C: number, ldSB: number, v: number, dB: number, o: number): void;
  colsum(s: number, R: number, C: number, ldSB: number, w: number, out: number): void;
}

const PAGE = 65536;

/** Tunables, mutable only so tests can move the chunk boundaries (results do not depend on them). */
export const attentionLimits = {
  /**
   * Keys per chunk (a multiple of 16): `run` copies a chunk's K rows into the workspace and
   * scores them at once, `output` the same with V rows, so the cache's rows cross memory
   * once and the kernels read them from a copy that stays in L1/L2.
   */
  keyChunk: 128,
  /**
   * Before copying a chunk of scattered rows (a sparse key list), load one float of each
   * 64-byte line of them first, so their cache misses overlap (off: the copy alone).
   */
  touchScattered: true,
};

/** Runs of consecutive keys at least this many floats long are copied by one `set`; shorter ones by a loop. */
const SET_FLOATS = 512;

/** A float array the attention reads (the KV cache, queries). */
type Floats = Float32Array | Float64Array;

/**
 * One block of query rows on one KV head, as the workspace computes it: `rows` query rows
 * (row `r` at `q[qOffs[r] ..]`), the key list (`keys`, or `0 .. keyCount - 1` when null) of
 * the KV head whose rows start at `kvBase` in the caches, and per row the number of list
 * entries it may see (`counts[r]`, at least 1; entries after it are masked).
 */
export interface RowBlock {
  readonly q: Floats;
  readonly qOffs: Int32Array;
  readonly rows: number;
  readonly k: Floats;
  readonly v: Floats;
  readonly kvBase: number;
  readonly keys: Int32Array | null;
  readonly keyCount: number;
  readonly counts: Int32Array;
  readonly scale: number;
}

let compiled: WebAssembly.Module | undefined;

/**
 * The memory and kernels for attention on one thread: scratch for one row block (queries,
 * one chunk of keys and values, scores, outputs). JavaScript runs one op at a time, so one
 * workspace serves every policy of the thread ({@link attentionWorkspace}).
 */
export class AttentionWorkspace {
  readonly headDim: number;
  private readonly memory: WebAssembly.Memory;
  private readonly kernels: AttentionKernels;
  private f32: Float32Array;
  // Layout of the current block (byte offsets).
  private qPtr = 0;
  private kvPtr = 0;
  private sPtr = 0;
  private oPtr = 0;
  private lPtr = 0;
  private wPtr = 0;
  private poolPtr = 0;
  private rowsPadded = 0;
  private keysPadded = 0;
  private chunk = 0;
  private rows = 0;
  private keyCount = 0;
  /**
   * The block being computed: from `run(.., true)` until its `output` (which reads its V
   * rows), so the workspace keeps no KV cache alive after the op.
   */
  private block: RowBlock | null = null;
  /** The sum of the loads that bring a chunk's rows into cache (kept so they are not optimized away). */
  touched = 0;

  private constructor(memory: WebAssembly.Memory, kernels: AttentionKernels, headDim: number) {
    this.memory = memory;
    this.kernels = kernels;
    this.headDim = headDim;
    this.f32 = new Float32Array(memory.buffer);
  }

  /** A workspace for head dim `headDim` (a multiple of 16); `undefined` where WebAssembly SIMD is unavailable. */
  static create(headDim: number): AttentionWorkspace | undefined {
    if (!(Number.isInteger(headDim) && headDim > 0 && headDim % 16 === 0)) return undefined;
    try {
      compiled ??= new WebAssembly.Module(attentionModuleBytes());
      const memory = new WebAssembly.Memory({ initial: 16 });
      const instance = new WebAssembly.Instance(compiled, { env: { memory } });
      return new AttentionWorkspace(memory, instance.exports as unknown as AttentionKernels, headDim);
    } catch {
      return undefined;
    }
  }

  /** Fills the whole scratch memory with NaN, so tests can show no op reads what an earlier call left. */
  poison(): void {
    this.f32.fill(Number.NaN);
  }

  /** Bytes the scores of a block of `rows x keys` take (callers split blocks to bound it). */
  static scoreBytes(rows: number, keys: number): number {
    return roundUp(rows, 4) * roundUp(keys, 16) * 4;
  }

  private layout(rows: number, keys: number): void {
    const d = this.headDim;
    const R = roundUp(rows, 4);
    const C = roundUp(keys, 16);
    const chunk = attentionLimits.keyChunk;
    if (!(Number.isInteger(chunk) && chunk > 0 && chunk % 16 === 0)) {
      throw new RangeError(`attentionLimits.keyChunk must be a positive multiple of 16, got ${chunk}`);
    }
    let at = 0;
    const take = (floats: number) => {
      const p = at;
      at += roundUp(floats * 4, 64);
      return p;
    };
    this.qPtr = take(R * d);
    this.kvPtr = take(Math.min(chunk, C) * d);
    this.sPtr = take(R * C);
    this.oPtr = take(R * d);
    this.lPtr = take(R);
    this.wPtr = take(R);
    this.poolPtr = take(C);
    const have = this.memory.buffer.byteLength;
    if (at > have) {
      this.memory.grow(Math.ceil((at - have) / PAGE));
      this.f32 = new Float32Array(this.memory.buffer);
    }
    this.rowsPadded = R;
    this.keysPadded = C;
    this.chunk = chunk;
    this.rows = rows;
    this.keyCount = keys;
  }

  /**
   * Copies the K (or V) rows of list entries `c0 .. c0 + width - 1` of block `b` into
   * the chunk buffer, zero rows past the list's end (masked keys: their zero probabilities
   * times zero values add nothing).
   */
  private loadChunk(b: RowBlock, src: Floats, c0: number, width: number): void {
    const d = this.headDim;
    const f = this.f32;
    const dst = this.kvPtr >> 2;
    const count = Math.min(width, b.keyCount - c0);
    const keys = b.keys;
    if (keys === null) {
      const from = b.kvBase + c0 * d;
      f.set(src.subarray(from, from + count * d), dst);
    } else {
      // A selection's rows are scattered through the cache, each one a miss. First one load
      // per 64 bytes of every row of the chunk: independent loads, so the processor has many
      // of the misses in flight at once (a copy row by row waits for each in turn).
      if (attentionLimits.touchScattered) {
        let touched = 0;
        for (let c = 0; c < count; c++) {
          const from = b.kvBase + keys[c0 + c]! * d;
          for (let e = 0; e < d; e += 16) touched += src[from + e]!;
        }
        this.touched = touched;
      }
      // Then the copy, from cache: runs of consecutive keys (selections are sorted; the
      // diagonal tile is one run) as one `set` when long, short runs and single keys by an
      // unrolled loop (no call or view per row; `d` is a multiple of 16).
      for (let c = 0; c < count; ) {
        const first = keys[c0 + c]!;
        let end = c + 1;
        while (end < count && keys[c0 + end] === first + (end - c)) end++;
        const from = b.kvBase + first * d;
        const floats = (end - c) * d;
        const to = dst + c * d;
        if (floats >= SET_FLOATS) f.set(src.subarray(from, from + floats), to);
        else
          for (let e = 0; e < floats; e += 8) {
            f[to + e] = src[from + e]!;
            f[to + e + 1] = src[from + e + 1]!;
            f[to + e + 2] = src[from + e + 2]!;
            f[to + e + 3] = src[from + e + 3]!;
            f[to + e + 4] = src[from + e + 4]!;
            f[to + e + 5] = src[from + e + 5]!;
            f[to + e + 6] = src[from + e + 6]!;
            f[to + e + 7] = src[from + e + 7]!;
          }
        c = end;
      }
    }
    if (count < width) f.fill(0, dst + count * d, dst + width * d);
  }

  /**
   * Scores and softmax of a block: afterwards the workspace holds `P = exp(S - max)` per
   * row and the row sums, ready for {@link output} (with `withValues`) and {@link pool}.
   * The block's K rows are copied one chunk at a time and scored at once.
   */
  run(b: RowBlock, withValues: boolean): void {
    const d = this.headDim;
    this.layout(b.rows, b.keyCount);
    this.block = b;
    const f = this.f32;
    const R = this.rowsPadded;
    const C = this.keysPadded;
    // Queries, interleaved per 4-row block as [d / 4][4][4]; padding rows are zero.
    const q0 = this.qPtr >> 2;
    for (let r = 0; r < R; r++) {
      const dst = q0 + (r >> 2) * 4 * d + (r & 3) * 4;
      if (r >= b.rows) {
        for (let e = 0; e < d; e += 4) f.fill(0, dst + e * 4, dst + e * 4 + 4);
        continue;
      }
      const src = b.qOffs[r]!;
      const q = b.q;
      for (let e = 0; e < d; e += 4) {
        const o = dst + e * 4;
        f[o] = q[src + e]!;
        f[o + 1] = q[src + e + 1]!;
        f[o + 2] = q[src + e + 2]!;
        f[o + 3] = q[src + e + 3]!;
      }
    }
    const ldSB = R * 4;
    const dB = d * 4;
    for (let c0 = 0; c0 < C; c0 += this.chunk) {
      const width = Math.min(this.chunk, C - c0);
      this.loadChunk(b, b.k, c0, width);
      this.kernels.qk(this.qPtr, this.kvPtr, this.sPtr + c0 * ldSB, R, width, dB, ldSB, b.scale);
    }
    // Mask what a row may not see: list entries from its count on (and the padding).
    const s0 = this.sPtr >> 2;
    const neg = Number.NEGATIVE_INFINITY;
    for (let r = 0; r < R; r++) {
      const from = r < b.rows ? b.counts[r]! : b.keyCount;
      for (let c = from; c < C; c++) f[s0 + c * R + r] = neg;
    }
    const R16 = R & ~15;
    if (R16 > 0) this.kernels.softmaxRows16(this.sPtr, R16, C, ldSB, this.lPtr);
    if (R16 < R) this.kernels.softmaxRows(this.sPtr + R16 * 4, R - R16, C, ldSB, this.lPtr + R16 * 4);
    if (!withValues) this.block = null;
  }

  /**
   * `out[outOffs[r] + e] = (P V)[r, e] / l[r]` for the block's rows, the V rows copied one
   * chunk at a time. Needs `run(.., true)`.
   */
  output(out: Float32Array | Float64Array, outOffs: Int32Array): void {
    const b = this.block;
    if (b === null) throw new Error('AttentionWorkspace.output needs run(block, true) first (once per run)');
    this.block = null;
    const d = this.headDim;
    const R = this.rowsPadded;
    const C = this.keysPadded;
    const f = this.f32;
    const o0 = this.oPtr >> 2;
    f.fill(0, o0, o0 + R * d);
    const dB = d * 4;
    for (let c0 = 0; c0 < C; c0 += this.chunk) {
      const width = Math.min(this.chunk, C - c0);
      this.loadChunk(b, b.v, c0, width);
      this.kernels.pv(this.sPtr + c0 * R * 4, R, width, R * 4, this.kvPtr, dB, this.oPtr);
    }
    const l0 = this.lPtr >> 2;
    for (let r = 0; r < this.rows; r++) {
      const inv = 1 / f[l0 + r]!;
      const src = o0 + r * d;
      const dst = outOffs[r]!;
      for (let e = 0; e < d; e++) out[dst + e] = f[src + e]! * inv;
    }
  }

  /**
   * Adds each row's post-softmax probabilities over the first `length` list entries into
   * `into` (`into[x] += sum_r P[r, x] / l[r]`), and returns the mass the rows put on entries
   * `length ..` of the list they may see (the diagonal share, in prefill).
   */
  pool(into: Float32Array | Float64Array, length: number): number {
    const f = this.f32;
    const R = this.rowsPadded;
    const C = this.keysPadded;
    const w0 = this.wPtr >> 2;
    const l0 = this.lPtr >> 2;
    for (let r = 0; r < R; r++) f[w0 + r] = r < this.rows ? 1 / f[l0 + r]! : 0;
    const p0 = this.poolPtr >> 2;
    f.fill(0, p0, p0 + C);
    this.kernels.colsum(this.sPtr, R, C, R * 4, this.wPtr, this.poolPtr);
    let rest = 0;
    for (let x = 0; x < length; x++) into[x] += f[p0 + x]!;
    for (let x = length; x < this.keyCount; x++) rest += f[p0 + x]!;
    return rest;
  }
}

function roundUp(x: number, m: number): number {
  return Math.ceil(x / m) * m;
}

const workspaces = new Map<number, AttentionWorkspace | null>();

/** This thread's workspace for `headDim`, or `undefined` where the kernels cannot run (head dim not a multiple of 16, no SIMD). */
export function attentionWorkspace(headDim: number): AttentionWorkspace | undefined {
  let w = workspaces.get(headDim);
  if (w === undefined) {
    w = AttentionWorkspace.create(headDim) ?? null;
    workspaces.set(headDim, w);
  }
  return w ?? undefined;
}

let activation:
  | { memory: WebAssembly.Memory; kernels: AttentionKernels; f32: Float32Array }
  | null
  | undefined;

/**
 * `gate[i] = silu(gate[i]) * up[i]` for `i < n` on the SIMD kernel (its own memory; chunks of
 * 64k values); returns false (computing nothing) where WebAssembly SIMD is unavailable.
 */
export function siluMulWasm(gate: Float32Array, up: Float32Array, n: number): boolean {
  if (activation === undefined) {
    try {
      compiled ??= new WebAssembly.Module(attentionModuleBytes());
      const memory = new WebAssembly.Memory({ initial: 9 });
      const kernels = new WebAssembly.Instance(compiled, { env: { memory } })
        .exports as unknown as AttentionKernels;
      activation = { memory, kernels, f32: new Float32Array(memory.buffer) };
    } catch {
      activation = null;
    }
  }
  if (activation === null) return false;
  const { kernels, f32 } = activation;
  const CHUNK = 65536;
  for (let i0 = 0; i0 < n; i0 += CHUNK) {
    const count = Math.min(CHUNK, n - i0);
    const vec = count & ~3;
    f32.set(gate.subarray(i0, i0 + vec), 0);
    f32.set(up.subarray(i0, i0 + vec), CHUNK);
    kernels.siluMul(0, CHUNK * 4, vec);
    gate.set(f32.subarray(0, vec), i0);
    for (let i = i0 + vec; i < i0 + count; i++) {
      const g = gate[i]!;
      gate[i] = (g / (1 + Math.exp(-g))) * up[i]!;
    }
  }
  return true;
}
