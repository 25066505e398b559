import { afterEach, describe, expect, it } from 'vitest';
import { AttentionWorkspace, attentionLimits, type RowBlock, siluMulWasm } from './attention-wasm.js';
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

/** `||a - b|| / ||b||`, after checking every value of `a` is finite. */
function relDiff(a: Float32Array, b: Float64Array): number {
  const bad = a.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) throw new Error(`non-finite value ${a[bad]} at ${bad}`);
  const den = b.reduce((sum, y) => sum + y * y, 0);
  expect(den).toBeGreaterThan(0);
  return Math.sqrt(b.reduce((sum, y, i) => sum + (a[i]! - y) ** 2, 0) / den);
}

/** The block's outputs and pooled probabilities in float64, straight from the definition. */
function reference(b: RowBlock, d: number): { out: Float64Array; pool: Float64Array } {
  const out = new Float64Array(b.rows * d);
  const pool = new Float64Array(b.keyCount);
  for (let r = 0; r < b.rows; r++) {
    const seen = b.counts[r]!;
    const s = new Float64Array(seen);
    let max = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < seen; c++) {
      const row = b.kvBase + (b.keys ? b.keys[c]! : c) * d;
      let dot = 0;
      for (let e = 0; e < d; e++) dot += b.q[b.qOffs[r]! + e]! * b.k[row + e]!;
      s[c] = dot * b.scale;
      max = Math.max(max, s[c]!);
    }
    let l = 0;
    for (let c = 0; c < seen; c++) {
      s[c] = Math.exp(s[c]! - max);
      l += s[c]!;
    }
    for (let c = 0; c < seen; c++) {
      const row = b.kvBase + (b.keys ? b.keys[c]! : c) * d;
      const p = s[c]! / l;
      pool[c]! += p;
      for (let e = 0; e < d; e++) out[r * d + e]! += p * b.v[row + e]!;
    }
  }
  return { out, pool };
}

describe('AttentionWorkspace: keys and values read a chunk at a time', () => {
  const defaults = { ...attentionLimits };
  afterEach(() => {
    Object.assign(attentionLimits, defaults);
  });

  it('no chunk boundary drops or repeats a key: any chunk size, rows touched first or not, gives the same bits, within 1e-5 of float64', () => {
    const d = 64;
    const ws = AttentionWorkspace.create(d);
    if (!ws) throw new Error('the kernels must run here (WebAssembly SIMD)');
    const rand = mulberry32(11);
    const n = 700;
    const kvHeads = 2;
    const k = Float32Array.from({ length: kvHeads * n * d }, () => 4 * rand() - 2);
    const v = Float32Array.from({ length: kvHeads * n * d }, () => 2 * rand() - 1);
    const rows = 7;
    const q = Float32Array.from({ length: rows * d }, () => 4 * rand() - 2);
    const qOffs = Int32Array.from({ length: rows }, (_, r) => r * d);
    // Sorted lists mixing singletons, short runs and runs long enough for one bulk copy
    // (more than 8 rows), runs crossing chunk boundaries (16, 48, 128), a list ending mid-chunk.
    const lists: (Int32Array | null)[] = [null];
    const mixed: number[] = [];
    for (let x = 3; x < n; ) {
      const run = [1, 1, 2, 3, 1, 9, 1, 20, 5, 1][mixed.length % 10]!;
      for (let i = 0; i < run && x + i < n; i++) mixed.push(x + i);
      x += run + 1 + Math.floor(rand() * 4);
    }
    lists.push(Int32Array.from(mixed));
    lists.push(Int32Array.from({ length: 131 }, (_, i) => (i * 5 + (i % 3)) % n).sort());
    for (const keys of lists) {
      for (const keyCount of keys ? [1, 17, keys.length] : [1, 15, 16, 47, 130, n]) {
        // Rows see different prefixes of the list (the last row all of it): masking and chunks together.
        const counts = Int32Array.from({ length: rows }, (_, r) =>
          r === rows - 1 ? keyCount : 1 + Math.floor(rand() * keyCount),
        );
        const block: RowBlock = { q, qOffs, rows, k, v, kvBase: n * d, keys, keyCount, counts, scale: 0.2 };
        const want = reference(block, d);
        let first: { out: Float32Array; pool: Float32Array } | null = null;
        for (const [chunk, touch] of [
          [16, true],
          [48, false],
          [128, true],
          [128, false],
          [1024, true],
        ] as const) {
          attentionLimits.keyChunk = chunk;
          attentionLimits.touchScattered = touch;
          ws.poison();
          ws.run(block, true);
          const out = new Float32Array(rows * d).fill(Number.NaN);
          ws.output(out, qOffs);
          const pool = new Float32Array(keyCount);
          expect(ws.pool(pool, keyCount)).toBe(0);
          expect(relDiff(out, want.out)).toBeLessThan(1e-5);
          expect(relDiff(pool, want.pool)).toBeLessThan(1e-5);
          if (first === null) first = { out, pool };
          else {
            expect(Array.from(out)).toEqual(Array.from(first.out));
            expect(Array.from(pool)).toEqual(Array.from(first.pool));
          }
        }
      }
    }
  });

  it('output needs a run with values, once', () => {
    const ws = AttentionWorkspace.create(16)!;
    const block: RowBlock = {
      q: new Float32Array(16).fill(0.5),
      qOffs: new Int32Array(1),
      rows: 1,
      k: new Float32Array(32).fill(1),
      v: new Float32Array(32).fill(2),
      kvBase: 0,
      keys: null,
      keyCount: 2,
      counts: Int32Array.of(2),
      scale: 1,
    };
    const out = new Float32Array(16);
    ws.run(block, false);
    expect(() => ws.output(out, block.qOffs)).toThrow(/run\(block, true\)/);
    ws.run(block, true);
    ws.output(out, block.qOffs);
    expect(Array.from(out)).toEqual(new Array(16).fill(2));
    expect(() => ws.output(out, block.qOffs)).toThrow(/once per run/);
  });

  it('rejects a key chunk that is not a positive multiple of 16', () => {
    const ws = AttentionWorkspace.create(16)!;
    attentionLimits.keyChunk = 24;
    const block: RowBlock = {
      q: new Float32Array(16),
      qOffs: new Int32Array(1),
      rows: 1,
      k: new Float32Array(16),
      v: new Float32Array(16),
      kvBase: 0,
      keys: null,
      keyCount: 1,
      counts: Int32Array.of(1),
      scale: 1,
    };
    expect(() => ws.run(block, true)).toThrow(/keyChunk must be a positive multiple of 16, got 24/);
  });
});
