import { describe, expect, it } from 'vitest';
import { bf16ToF32 } from './dtype.js';
import { matmul } from './kernels.js';
import { mulberry32 } from './random.js';
import { WasmArena } from './wasm.js';

/** Relative error against a float64 reference, as the project compares kernels. */
function relErr(
  out: Float32Array,
  w: Float32Array,
  x: Float32Array,
  tokens: number,
  rows: number,
  cols: number,
) {
  let num = 0;
  let den = 0;
  for (let t = 0; t < tokens; t++) {
    for (let o = 0; o < rows; o++) {
      let s = 0;
      for (let i = 0; i < cols; i++) s += w[o * cols + i] * x[t * cols + i];
      num += (out[t * rows + o] - s) ** 2;
      den += s * s;
    }
  }
  return Math.sqrt(num / den);
}

describe('kernels', () => {
  const rand = mulberry32(11);
  const fill = (n: number) => Float32Array.from({ length: n }, () => rand() * 2 - 1);
  const shapes = [
    [1, 1, 16],
    [1, 113, 64],
    [3, 7, 48],
    [4, 33, 128],
    [9, 65, 256],
    [5, 17, 20], // cols not a multiple of 16: the JS kernel
  ];

  it('the JS matmul matches float64 (fp32 < 1e-5)', () => {
    for (const [tokens, rows, cols] of shapes) {
      const w = fill(rows * cols);
      const x = fill(tokens * cols);
      const y = new Float32Array(tokens * rows).fill(Number.NaN);
      matmul(w, x, y, tokens, rows, cols);
      expect(relErr(y, w, x, tokens, rows, cols)).toBeLessThan(1e-5);
    }
  });

  it('the WebAssembly SIMD matmul matches float64 (fp32 < 1e-5), across arena growth', () => {
    const arena = WasmArena.create();
    if (!arena) throw new Error('WebAssembly SIMD with shared memory is unavailable on this Node');
    let ran = 0;
    for (const [tokens, rows, cols] of shapes) {
      const w = arena.adopt(fill(rows * cols));
      const x = fill(tokens * cols);
      const y = new Float32Array(tokens * rows).fill(Number.NaN);
      const ok = arena.matmul(w, x, y, tokens, rows, cols);
      expect(ok).toBe(cols % 16 === 0);
      if (!ok) continue;
      ran++;
      expect(relErr(y, w, x, tokens, rows, cols)).toBeLessThan(1e-5);
    }
    // A large allocation grows the memory; earlier weights stay valid.
    const big = arena.adopt(fill(300_000));
    const w = arena.adopt(fill(32 * 64));
    const x = fill(6 * 64);
    const y = new Float32Array(6 * 32).fill(Number.NaN);
    expect(arena.matmul(w, x, y, 6, 32, 64)).toBe(true);
    expect(relErr(y, w, x, 6, 32, 64)).toBeLessThan(1e-5);
    expect(big.length).toBe(300_000);
    expect(ran).toBe(5);
    expect(arena.matmul(fill(16), fill(16), new Float32Array(1), 1, 1, 16)).toBe(false); // not in the arena
  });

  it('the bf16-weight kernels match float64 on the bf16 values and equal the f32 kernels exactly', () => {
    const arena = WasmArena.create();
    if (!arena) throw new Error('WebAssembly SIMD with shared memory is unavailable on this Node');
    let ran = 0;
    for (const [tokens, rows, cols] of shapes.filter(([, , c]) => c % 16 === 0)) {
      const f = fill(rows * cols);
      const bits = new Uint16Array(f.length);
      const u32 = new Uint32Array(f.buffer);
      for (let i = 0; i < f.length; i++) bits[i] = u32[i] >>> 16; // truncate to bf16
      const values = bf16ToF32(bits);
      const wBf16 = arena.adopt(bits);
      const wF32 = arena.adopt(values);
      const x = fill(tokens * cols);
      const y = new Float32Array(tokens * rows).fill(Number.NaN);
      const yF32 = new Float32Array(tokens * rows).fill(Number.NaN);
      expect(arena.matmul(wBf16, x, y, tokens, rows, cols)).toBe(true);
      expect(arena.matmul(wF32, x, yF32, tokens, rows, cols)).toBe(true);
      expect(relErr(y, values, x, tokens, rows, cols)).toBeLessThan(1e-5);
      expect(y).toEqual(yF32);
      ran++;
    }
    expect(ran).toBe(5);
  });

  it('splits large products across worker threads with results equal to one thread', async () => {
    const arena = WasmArena.create();
    if (!arena) throw new Error('WebAssembly SIMD with shared memory is unavailable on this Node');
    arena.setThreads(2);
    expect(arena.threads).toBe(2);
    try {
      for (const [tokens, rows, cols, bf16] of [
        [1, 1030, 1024, false],
        [7, 514, 1024, false],
        [9, 302, 512, true],
      ] as const) {
        const f = fill(rows * cols);
        const u32 = new Uint32Array(f.buffer);
        const w = bf16 ? arena.adopt(Uint16Array.from(u32, (u) => u >>> 16)) : arena.adopt(f);
        const x = fill(tokens * cols);
        const two = new Float32Array(tokens * rows).fill(Number.NaN);
        const one = new Float32Array(tokens * rows).fill(Number.NaN);
        expect(arena.matmul(w, x, two, tokens, rows, cols)).toBe(true);
        arena.setThreads(1);
        expect(arena.matmul(w, x, one, tokens, rows, cols)).toBe(true);
        arena.setThreads(2);
        expect(two.every(Number.isFinite)).toBe(true);
        expect(two).toEqual(one);
      }
    } finally {
      await arena.close();
    }
    expect(arena.threads).toBe(1);
  });
});

describe('products over the same x', () => {
  it('sameX skips staging only when the staged x is that array, with the same shape', () => {
    const rand = mulberry32(5);
    const fill = (n: number) => Float32Array.from({ length: n }, () => rand() * 2 - 1);
    const arena = WasmArena.create(1 << 20)!;
    const [tokens, cols] = [7, 64];
    const w1 = arena.adopt(fill(33 * cols));
    const w2 = arena.adopt(fill(20 * cols));
    const x = fill(tokens * cols);
    const other = fill(tokens * cols);
    const y1 = new Float32Array(tokens * 33).fill(Number.NaN);
    const y2 = new Float32Array(tokens * 20).fill(Number.NaN);
    expect(arena.matmul(w1, x, y1, tokens, 33, cols)).toBe(true);
    expect(arena.matmul(w2, x, y2, tokens, 20, cols, true)).toBe(true);
    expect(relErr(y2, w2, x, tokens, 20, cols)).toBeLessThan(1e-6);
    // Another array than the staged one is staged, whatever the flag says.
    expect(arena.matmul(w2, other, y2, tokens, 20, cols, true)).toBe(true);
    expect(relErr(y2, w2, other, tokens, 20, cols)).toBeLessThan(1e-6);
    // And fewer tokens of the same array too.
    expect(arena.matmul(w1, other, y1, 3, 33, cols, true)).toBe(true);
    expect(relErr(y1.subarray(0, 3 * 33), w1, other, 3, 33, cols)).toBeLessThan(1e-6);
  });
});
