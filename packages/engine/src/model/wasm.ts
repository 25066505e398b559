/**
 * WebAssembly SIMD (f32x4) kernels for matrix-vector and matrix-matrix products, with the
 * module's bytes assembled here (no toolchain). Weights live in one shared
 * `WebAssembly.Memory` (an arena); activations are copied into a scratch region per call.
 */

import { Worker } from 'node:worker_threads';
import type { WeightMatrix } from './weights.js';

// Opcodes used below (WebAssembly core + fixed-width SIMD).
export const OP = {
  block: 0x02,
  loop: 0x03,
  br: 0x0c,
  brIf: 0x0d,
  end: 0x0b,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  i32Const: 0x41,
  i32GeU: 0x4f,
  i32LtU: 0x49,
  i32Add: 0x6a,
  i32Mul: 0x6c,
  f32Store: 0x38,
  f32Add: 0x92,
  simd: 0xfd,
} as const;
export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/** A tiny instruction emitter. */
export class Code {
  readonly bytes: number[] = [];
  get(i: number) {
    this.bytes.push(OP.localGet, ...uleb(i));
    return this;
  }
  set(i: number) {
    this.bytes.push(OP.localSet, ...uleb(i));
    return this;
  }
  tee(i: number) {
    this.bytes.push(OP.localTee, ...uleb(i));
    return this;
  }
  i32(n: number) {
    this.bytes.push(OP.i32Const, ...sleb(n));
    return this;
  }
  op(...b: number[]) {
    this.bytes.push(...b);
    return this;
  }
  simd(code: number, ...imm: number[]) {
    this.bytes.push(OP.simd, ...uleb(code), ...imm);
    return this;
  }
  v128Load(offset = 0) {
    return this.simd(0x00, 4, ...uleb(offset));
  }
  v128Zero() {
    return this.simd(0x0c, ...new Array(16).fill(0));
  }
  f32x4Add() {
    return this.simd(0xe4);
  }
  f32x4Mul() {
    return this.simd(0xe6);
  }
  /** Horizontal sum of the v128 in local `v` onto the stack as one f32. */
  hsum(v: number) {
    this.get(v).simd(0x1f, 0);
    for (let lane = 1; lane < 4; lane++) this.get(v).simd(0x1f, lane).op(OP.f32Add);
    return this;
  }
}

export function func(locals: [number, number][], body: Code): number[] {
  const localBytes = [...uleb(locals.length), ...locals.flatMap(([count, type]) => [...uleb(count), type])];
  const code = [...localBytes, ...body.bytes, OP.end];
  return [...uleb(code.length), ...code];
}

/** Widens the bf16 halves of the v128 in local `v` to f32x4 (`high` picks lanes 4-7): zero-extend, shift left 16. */
function bf16ToF32x4(c: Code, v: number, high: boolean): Code {
  return c
    .get(v)
    .simd(high ? 0xaa : 0xa9)
    .i32(16)
    .simd(0xab);
}

/**
 * `matvec(w, x, y, rows, cols)`: `y[o] = dot(w[o, :], x)`; byte pointers; `cols % 16 == 0`.
 * Four f32x4 accumulators per row, 16 columns an iteration. With `bf16`, `w` holds bf16 bits
 * widened exactly to f32 (the sums then equal the f32 kernel's on the same values).
 */
function matvecBody(bf16: boolean): Code {
  // params: 0 w, 1 x, 2 y, 3 rows, 4 cols; i32 locals: 5 o, 6 wp, 7 xp, 8 end, 9 wRowBytes
  // v128 locals: 10..13 acc, 14 w (bf16 only)
  const c = new Code();
  c.get(4)
    .i32(bf16 ? 2 : 4)
    .op(OP.i32Mul)
    .set(9);
  c.i32(0).set(5);
  c.op(OP.block, 0x40, OP.loop, 0x40);
  c.get(5).get(3).op(OP.i32GeU, OP.brIf, 1);
  for (let a = 10; a < 14; a++) c.v128Zero().set(a);
  c.get(0).get(5).get(9).op(OP.i32Mul, OP.i32Add).set(6);
  c.get(1).set(7);
  c.get(1).get(4).i32(4).op(OP.i32Mul, OP.i32Add).set(8);
  c.op(OP.loop, 0x40);
  for (let u = 0; u < 4; u++) {
    c.get(10 + u);
    if (bf16) {
      if (u % 2 === 0)
        c.get(6)
          .v128Load(16 * (u / 2))
          .set(14);
      bf16ToF32x4(c, 14, u % 2 === 1);
    } else {
      c.get(6).v128Load(16 * u);
    }
    c.get(7)
      .v128Load(16 * u)
      .f32x4Mul()
      .f32x4Add()
      .set(10 + u);
  }
  c.get(6)
    .i32(bf16 ? 32 : 64)
    .op(OP.i32Add)
    .set(6);
  c.get(7).i32(64).op(OP.i32Add).tee(7).get(8).op(OP.i32LtU, OP.brIf, 0);
  c.op(OP.end);
  c.get(10).get(11).f32x4Add().get(12).get(13).f32x4Add().f32x4Add().set(10);
  c.get(2).get(5).i32(4).op(OP.i32Mul, OP.i32Add);
  c.hsum(10);
  c.op(OP.f32Store, 2, 0);
  c.get(5).i32(1).op(OP.i32Add).set(5);
  c.op(OP.br, 0, OP.end, OP.end);
  return c;
}

/**
 * `matmul4xR(w, x, y, rows, cols, oStart, oEnd)`: four tokens at once for output rows
 * `oStart .. oEnd` taken `R` at a time. `x` is interleaved `[cols / 4][4 tokens][4]` so each
 * f32x4 of a token sits at a constant offset; `y` is `[4, rows]`. Each weight vector is
 * loaded once for the four tokens, each x vector once for the `R` rows: `4R` accumulators.
 * With `bf16`, each iteration widens 8 bf16 weights of a row into two f32x4 (same sums).
 */
function matmul4Body(R: 1 | 2, bf16: boolean): Code {
  // params: 0 w, 1 x, 2 y, 3 rows, 4 cols, 5 oStart, 6 oEnd
  // i32 locals: 7 o, 8 wp, 9 wp2, 10 xp, 11 xend, 12 wRowBytes, 13 yStride
  // v128 locals: W[r][k] (k: column quarter within the iteration), then xv, then acc[r * 4 + t]
  const chunks = bf16 ? 2 : 1;
  const W = (r: number, k: number) => 14 + r * chunks + k;
  const xv = 14 + 2 * chunks;
  const acc = (r: number, t: number) => xv + 1 + r * 4 + t;
  const c = new Code();
  c.get(4)
    .i32(bf16 ? 2 : 4)
    .op(OP.i32Mul)
    .set(12);
  c.get(3).i32(4).op(OP.i32Mul).set(13);
  c.get(5).set(7);
  c.op(OP.block, 0x40, OP.loop, 0x40);
  c.get(7).get(6).op(OP.i32GeU, OP.brIf, 1);
  for (let r = 0; r < R; r++) for (let t = 0; t < 4; t++) c.v128Zero().set(acc(r, t));
  c.get(0).get(7).get(12).op(OP.i32Mul, OP.i32Add).tee(8);
  c.get(12).op(OP.i32Add).set(9);
  c.get(1).set(10);
  c.get(1).get(4).i32(16).op(OP.i32Mul, OP.i32Add).set(11);
  c.op(OP.loop, 0x40);
  for (let r = 0; r < R; r++) {
    if (bf16) {
      c.get(8 + r)
        .v128Load(0)
        .set(W(r, 0));
      bf16ToF32x4(c, W(r, 0), true).set(W(r, 1));
      bf16ToF32x4(c, W(r, 0), false).set(W(r, 0));
    } else {
      c.get(8 + r)
        .v128Load(0)
        .set(W(r, 0));
    }
  }
  for (let k = 0; k < chunks; k++) {
    for (let t = 0; t < 4; t++) {
      c.get(10)
        .v128Load(64 * k + 16 * t)
        .set(xv);
      for (let r = 0; r < R; r++) c.get(acc(r, t)).get(W(r, k)).get(xv).f32x4Mul().f32x4Add().set(acc(r, t));
    }
  }
  for (let r = 0; r < R; r++)
    c.get(8 + r)
      .i32(16)
      .op(OP.i32Add)
      .set(8 + r);
  c.get(10)
    .i32(64 * chunks)
    .op(OP.i32Add)
    .tee(10)
    .get(11)
    .op(OP.i32LtU, OP.brIf, 0);
  c.op(OP.end);
  for (let r = 0; r < R; r++) {
    for (let t = 0; t < 4; t++) {
      c.get(2).get(7).i32(4).op(OP.i32Mul, OP.i32Add);
      for (let k = 0; k < t; k++) c.get(13).op(OP.i32Add);
      c.hsum(acc(r, t));
      c.op(OP.f32Store, 2, 4 * r);
    }
  }
  c.get(7).i32(R).op(OP.i32Add).set(7);
  c.op(OP.br, 0, OP.end, OP.end);
  return c;
}

export function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

export function name(s: string): number[] {
  const b = Array.from(new TextEncoder().encode(s));
  return [...uleb(b.length), ...b];
}

const KERNELS = [
  'matvec',
  'matmul4x1',
  'matmul4x2',
  'matvec_bf16',
  'matmul4x1_bf16',
  'matmul4x2_bf16',
] as const;

/** The module: imports a shared memory `env.memory`, exports the f32 and bf16-weight kernels. */
export function kernelModuleBytes(): Uint8Array<ArrayBuffer> {
  const type = [2, 0x60, 5, I32, I32, I32, I32, I32, 0, 0x60, 7, I32, I32, I32, I32, I32, I32, I32, 0];
  const imports = [1, ...name('env'), ...name('memory'), 0x02, 0x03, ...uleb(1), ...uleb(65536)];
  const funcs = [6, 0, 1, 1, 0, 1, 1];
  const exports = [6, ...KERNELS.flatMap((k, i) => [...name(k), 0x00, i])];
  const i32s = (n: number): [number, number] => [n, I32];
  const v128s = (n: number): [number, number] => [n, V128];
  const code = [
    6,
    ...func([i32s(5), v128s(4)], matvecBody(false)),
    ...func([i32s(7), v128s(2 + 1 + 4)], matmul4Body(1, false)),
    ...func([i32s(7), v128s(2 + 1 + 8)], matmul4Body(2, false)),
    ...func([i32s(5), v128s(5)], matvecBody(true)),
    ...func([i32s(7), v128s(4 + 1 + 4)], matmul4Body(1, true)),
    ...func([i32s(7), v128s(4 + 1 + 8)], matmul4Body(2, true)),
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

type Matvec = (w: number, x: number, y: number, rows: number, cols: number) => void;
type Matmul4 = (
  w: number,
  x: number,
  y: number,
  rows: number,
  cols: number,
  oStart: number,
  oEnd: number,
) => void;
interface KernelSet {
  readonly matvec: Matvec;
  readonly matmul4x1: Matmul4;
  readonly matmul4x2: Matmul4;
}
type KernelExports = Record<(typeof KERNELS)[number], Matvec & Matmul4>;

const PAGE = 65536;
let compiled: WebAssembly.Module | undefined;

/**
 * Weights in one shared WebAssembly memory plus a growable scratch region, and the SIMD
 * kernels over them. Arrays from {@link alloc} stay valid when the memory grows.
 */
export class WasmArena {
  readonly memory: WebAssembly.Memory;
  private readonly f32: KernelSet;
  private readonly bf16: KernelSet;
  private top = 0;
  private readonly ptrs = new WeakMap<WeightMatrix, number>();
  private scratch = 0;
  private scratchBytes = 0;
  private workers: ThreadHandle[] = [];
  private view: Float32Array;

  private constructor(memory: WebAssembly.Memory, k: KernelExports) {
    this.memory = memory;
    this.f32 = { matvec: k.matvec, matmul4x1: k.matmul4x1, matmul4x2: k.matmul4x2 };
    this.bf16 = { matvec: k.matvec_bf16, matmul4x1: k.matmul4x1_bf16, matmul4x2: k.matmul4x2_bf16 };
    this.view = new Float32Array(memory.buffer);
  }

  /** Returns `undefined` where WebAssembly SIMD or shared memory is unavailable. */
  static create(initialBytes = PAGE): WasmArena | undefined {
    try {
      const initial = Math.max(1, Math.ceil(initialBytes / PAGE));
      // Room to grow by 512 MiB (scratch, later weights), not the whole 4 GiB: each shared
      // memory reserves its maximum of address space, and tests make many models.
      const memory = new WebAssembly.Memory({
        initial,
        maximum: Math.min(65536, initial + 8192),
        shared: true,
      });
      compiled ??= new WebAssembly.Module(kernelModuleBytes());
      const module = compiled;
      const instance = new WebAssembly.Instance(module, { env: { memory } });
      return new WasmArena(memory, instance.exports as unknown as KernelExports);
    } catch {
      return undefined;
    }
  }

  private ensure(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) {
      this.memory.grow(Math.ceil((bytes - have) / PAGE));
      this.view = new Float32Array(this.memory.buffer);
    }
  }

  private reserve(bytes: number): number {
    // Weights allocated after a kernel call go past the scratch region, which then moves up.
    if (this.scratchBytes) {
      this.top = this.scratch + this.scratchBytes;
      this.scratchBytes = 0;
    }
    const ptr = this.top;
    const rounded = Math.ceil(bytes / 64) * 64;
    this.ensure(ptr + rounded);
    this.top = ptr + rounded;
    return ptr;
  }

  /** A zeroed f32 array of `n` values in the arena (64-byte aligned). */
  alloc(n: number): Float32Array {
    const ptr = this.reserve(n * 4);
    const a = new Float32Array(this.memory.buffer, ptr, n);
    this.ptrs.set(a, ptr);
    return a;
  }

  /** A zeroed array of `n` bf16 values (raw bits) in the arena. */
  allocBf16(n: number): Uint16Array {
    const ptr = this.reserve(n * 2);
    const a = new Uint16Array(this.memory.buffer, ptr, n);
    this.ptrs.set(a, ptr);
    return a;
  }

  /** Copies a matrix (f32, or bf16 bits) into the arena. */
  adopt<M extends WeightMatrix>(src: M): M {
    const a = src instanceof Float32Array ? this.alloc(src.length) : this.allocBf16(src.length);
    a.set(src);
    return a as M;
  }

  /** Byte offset of an array allocated here, or `undefined`. */
  ptrOf(a: WeightMatrix): number | undefined {
    return this.ptrs.get(a);
  }

  private scratchFor(floats: number): number {
    const bytes = floats * 4;
    if (bytes > this.scratchBytes) {
      this.scratch = this.top;
      this.scratchBytes = Math.max(bytes, this.scratchBytes * 2, PAGE);
      this.ensure(this.scratch + this.scratchBytes);
    }
    return this.scratch;
  }

  /**
   * `y[t, o] = dot(w[o, :], x[t, :])` with `w` (f32, or bf16 bits) in the arena and
   * `cols % 16 == 0`. Returns false (computing nothing) when those do not hold.
   */
  matmul(
    w: WeightMatrix,
    x: Float32Array,
    y: Float32Array,
    tokens: number,
    rows: number,
    cols: number,
    sameX = false,
  ): boolean {
    const wp = this.ptrs.get(w);
    if (wp === undefined || cols % 16 !== 0) return false;
    const k = w instanceof Uint16Array ? this.bf16 : this.f32;
    const base = this.scratchFor(tokens * (cols + rows) + 4);
    const xp = base;
    const yp = base + tokens * cols * 4;
    const s = this.staged;
    if (!(sameX && s.x === x && s.tokens === tokens && s.cols === cols && s.ptr === xp)) {
      this.stageX(x, xp, tokens, cols);
      this.staged = { x, tokens, cols, ptr: xp };
    }
    this.run(k, w, wp, xp, yp, tokens, rows, cols);
    y.set(this.view.subarray(yp / 4, yp / 4 + tokens * rows));
    return true;
  }

  /** What the scratch's x region holds (so a product over the same x can skip staging it). */
  private staged: { x: Float32Array | undefined; tokens: number; cols: number; ptr: number } = {
    x: undefined,
    tokens: 0,
    cols: 0,
    ptr: -1,
  };

  private stageX(x: Float32Array, xp: number, tokens: number, cols: number): void {
    const view = this.view;
    const xf = xp / 4;
    const blocks = tokens >> 2;
    // Tokens in blocks of 4, interleaved [cols / 4][4][4]; the rest row-major after them.
    for (let b = 0; b < blocks; b++) {
      const dst = xf + b * 4 * cols;
      for (let t = 0; t < 4; t++) {
        const src = (b * 4 + t) * cols;
        for (let c4 = 0; c4 < cols; c4 += 4) {
          const d = dst + c4 * 4 + t * 4;
          view[d] = x[src + c4];
          view[d + 1] = x[src + c4 + 1];
          view[d + 2] = x[src + c4 + 2];
          view[d + 3] = x[src + c4 + 3];
        }
      }
    }
    const rest = blocks * 4 * cols;
    view.set(x.subarray(rest, tokens * cols), xf + rest);
  }

  private run(
    k: KernelSet,
    w: WeightMatrix,
    wp: number,
    xp: number,
    yp: number,
    tokens: number,
    rows: number,
    cols: number,
  ): void {
    const wRowBytes = cols * (w instanceof Uint16Array ? 2 : 4);
    const parts = this.workers.length + 1;
    if (parts > 1 && tokens * rows * cols >= THREAD_MIN_MACS && rows >= 4 * parts) {
      // Split the rows (at even boundaries): the workers take the upper parts, this thread the first.
      const cut = (i: number) => (i === parts ? rows : Math.floor((rows * i) / parts) & ~1);
      const bf16 = w instanceof Uint16Array ? 1 : 0;
      this.workers.forEach((wk, i) => {
        const c = wk.control;
        c.set([bf16, wp, wRowBytes, xp, yp, tokens, rows, cols, cut(i + 1), cut(i + 2)], 2);
        wk.seq++;
        Atomics.store(c, 0, wk.seq);
        Atomics.notify(c, 0);
      });
      runRows(k, wp, wRowBytes, xp, yp, tokens, rows, cols, 0, cut(1));
      for (const wk of this.workers) this.join(wk);
    } else {
      runRows(k, wp, wRowBytes, xp, yp, tokens, rows, cols, 0, rows);
    }
  }

  /** Threads the matrix products use (this one included). */
  get threads(): number {
    return this.workers.length + 1;
  }

  /**
   * Uses `n` threads (this one and `n - 1` workers sharing the memory) for products of at
   * least 2^20 multiply-adds, split by output rows. The workers do not keep the process alive.
   */
  setThreads(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`threads must be a positive integer, got ${n}`);
    while (this.workers.length > n - 1) this.workers.pop()!.worker.terminate();
    while (this.workers.length < n - 1) {
      const control = new Int32Array(new SharedArrayBuffer(16 * 4));
      const worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { memory: this.memory, bytes: kernelModuleBytes(), control: control.buffer },
      });
      worker.unref();
      const handle: ThreadHandle = { worker, control, seq: 0, error: undefined };
      worker.on('error', (e) => {
        handle.error = e;
      });
      this.workers.push(handle);
    }
  }

  private join(wk: ThreadHandle): void {
    const c = wk.control;
    let waited = 0;
    for (;;) {
      const done = Atomics.load(c, 1);
      if (done === wk.seq) return;
      if (wk.error || waited > 60_000) {
        this.workers = this.workers.filter((x) => x !== wk);
        void wk.worker.terminate();
        throw new Error(`a kernel worker thread failed: ${wk.error?.message ?? 'no answer for 60 s'}`);
      }
      Atomics.wait(c, 1, done, 100);
      waited += 100;
    }
  }

  /** Stops the worker threads. */
  async close(): Promise<void> {
    const ws = this.workers;
    this.workers = [];
    await Promise.all(ws.map((w) => w.worker.terminate()));
  }
}

interface ThreadHandle {
  readonly worker: Worker;
  /** [0] job sequence, [1] last job done, [2..11] the job's arguments. */
  readonly control: Int32Array;
  seq: number;
  error: Error | undefined;
}

/** Products smaller than this many multiply-adds stay on one thread (a hand-off costs tens of microseconds). */
const THREAD_MIN_MACS = 1 << 20;

/**
 * Output rows `o0 .. o1` of `y[t, o] = dot(w[o, :], x[t, :])` with x already in the scratch
 * layout. Self-contained (it is also the worker's code, via `toString`).
 */
function runRows(
  k: KernelSet,
  wp: number,
  wRowBytes: number,
  xp: number,
  yp: number,
  tokens: number,
  rows: number,
  cols: number,
  o0: number,
  o1: number,
): void {
  const blocks = tokens >> 2;
  const pairEnd = o0 + ((o1 - o0) & ~1);
  // Row blocks of about 128 KiB of f32 weights stay in cache while every token block passes over them.
  const rowBlock = Math.max(2, Math.floor(32768 / cols) & ~1);
  for (let o = o0; o < pairEnd; o += rowBlock) {
    const oEnd = Math.min(pairEnd, o + rowBlock);
    for (let b = 0; b < blocks; b++)
      k.matmul4x2(wp, xp + b * 16 * cols, yp + b * 16 * rows, rows, cols, o, oEnd);
  }
  if (pairEnd < o1) {
    for (let b = 0; b < blocks; b++)
      k.matmul4x1(wp, xp + b * 16 * cols, yp + b * 16 * rows, rows, cols, pairEnd, o1);
  }
  for (let t = blocks * 4; t < tokens; t++) {
    k.matvec(wp + o0 * wRowBytes, xp + t * cols * 4, yp + (t * rows + o0) * 4, o1 - o0, cols);
  }
}

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const runRows = ${runRows.toString()};
const { memory, bytes, control } = workerData;
const e = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports;
const f32 = { matvec: e.matvec, matmul4x1: e.matmul4x1, matmul4x2: e.matmul4x2 };
const bf16 = { matvec: e.matvec_bf16, matmul4x1: e.matmul4x1_bf16, matmul4x2: e.matmul4x2_bf16 };
const c = new Int32Array(control);
let seen = 0;
for (;;) {
  Atomics.wait(c, 0, seen);
  seen = Atomics.load(c, 0);
  runRows(c[2] ? bf16 : f32, c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]);
  Atomics.store(c, 1, seen);
  Atomics.notify(c, 1);
}
`;
