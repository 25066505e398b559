import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { NativeBinding } from './binding.types.js';
import {
  CudaArgumentError,
  CudaUnavailableError,
  DECODE_VARIANT_MAX,
  DEFAULT_DECODE_VARIANTS,
  DeviceTensor,
  decodeShape,
  defaultDecodeVariant,
  isAddonLoaded,
  isAvailable,
  prefillCounts,
  prefillShape,
  unavailableReason,
  uploadPrefillSelection,
  uploadSelection,
} from './index.js';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const nvcc = [
  '/usr/local/cuda/bin/nvcc',
  process.env.CUDA_HOME && join(process.env.CUDA_HOME, 'bin', 'nvcc'),
].find((p): p is string => !!p && existsSync(p));

describe('loading', () => {
  it('imports without throwing and says whether CUDA is usable', () => {
    expect(typeof isAvailable()).toBe('boolean');
    if (!isAvailable()) {
      expect(unavailableReason()).toMatch(/\S/);
      expect(() => DeviceTensor.empty('bf16', [4])).toThrow(CudaUnavailableError);
    } else {
      expect(unavailableReason()).toBeUndefined();
    }
  });
});

// CI has nvcc (no GPU): this compiles every kernel, so a syntax or template error fails CI.
describe.skipIf(!nvcc)('native build (nvcc found)', () => {
  it('compiles the addon for sm_90a and the binary loads', { timeout: 600_000 }, () => {
    const r = spawnSync(process.execPath, [join(pkg, 'native', 'build.mjs'), '--strict'], {
      encoding: 'utf8',
    });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    const status = JSON.parse(readFileSync(join(pkg, 'build', 'status.json'), 'utf8')) as { built: boolean };
    expect(status.built).toBe(true);
    const native = createRequire(import.meta.url)(join(pkg, 'build', 'kascade_cuda.node')) as NativeBinding;
    const probe = native.probe();
    expect(typeof probe.available).toBe('boolean');
    if (!probe.available) expect(probe.reason).toMatch(/cuda|device|driver/i);
    for (const fn of [
      'denseDecode',
      'denseAnchorDecode',
      'anchorDecode',
      'reuseDecode',
      'densePrefill',
      'denseAnchorPrefill',
      'anchorPrefill',
      'reusePrefill',
      'pooledPrefillScores',
      'prefillWorkspaceBytes',
      'synchronize',
    ] as const) {
      expect(typeof native[fn]).toBe('function');
    }
    expect(isAddonLoaded()).toBe(true);
  });
});

describe('argument checks (no device needed)', () => {
  const fake = <D extends 'bf16' | 'f16'>(dtype: D, shape: number[]) =>
    ({ dtype, shape, size: shape.reduce((a, b) => a * b, 1) }) as unknown as DeviceTensor<D>;
  const batch = (over: Partial<{ q: number[]; k: number[]; n: number; dtype: 'bf16' | 'f16' }> = {}) => ({
    q: fake('bf16', over.q ?? [2, 32, 128]),
    k: fake(over.dtype ?? 'bf16', over.k ?? [2, 8, 100, 128]),
    v: fake(over.dtype ?? 'bf16', over.k ?? [2, 8, 100, 128]),
    n: over.n ?? 90,
  });

  it('derives the native shape from consistent tensors', () => {
    expect(decodeShape(batch())).toEqual({
      batch: 2,
      heads: 32,
      kvHeads: 8,
      headDim: 128,
      n: 90,
      capacity: 100,
      scale: 1 / Math.sqrt(128),
      dtype: 'bf16',
      splits: 0,
      variant: defaultDecodeVariant('dense', 2, 90),
    });
  });

  it('hands back the same frozen shape for a repeated call and checks again when a field changes', () => {
    const b = batch();
    const first = decodeShape(b, 'reuse');
    expect(Object.isFrozen(first)).toBe(true);
    // The same tensors and fields (a fresh batch object, as callers spread them): the same object.
    expect(decodeShape({ ...b }, 'reuse')).toBe(first);
    const named = decodeShape({ ...b, variant: 60 }, 'reuse');
    expect(named).not.toBe(first);
    expect(named.variant).toBe(60);
    expect(decodeShape(b, 'dense').variant).toBe(defaultDecodeVariant('dense', 2, 90));
    expect(decodeShape({ ...b, n: 80 }, 'dense').n).toBe(80);
    expect(decodeShape({ ...b, splits: 3 }, 'dense').splits).toBe(3);
    // Bad fields are still rejected after a good call with the same tensors.
    expect(() => decodeShape({ ...b, n: 101 })).toThrow(/n must be an integer in 1\.\.capacity/);
    expect(() => decodeShape({ ...b, scale: -1 })).toThrow(/scale must be positive/);
    const short = fake('bf16', [2, 8, 50, 128]);
    expect(() => decodeShape({ ...b, k: short, v: short })).toThrow(/capacity = 50/);
    expect(decodeShape(b, 'reuse')).toEqual(first);
  });

  it("takes each op's default variant when the batch names none, and a named one over it", () => {
    for (const r of DEFAULT_DECODE_VARIANTS) {
      expect(['dense', 'layer0', 'anchor', 'reuse']).toContain(r.op);
      expect(Number.isInteger(r.variant) && r.variant >= 0 && r.variant <= DECODE_VARIANT_MAX).toBe(true);
    }
    for (const op of ['dense', 'layer0', 'anchor', 'reuse'] as const) {
      expect(decodeShape(batch(), op).variant).toBe(defaultDecodeVariant(op, 2, 90));
      expect(decodeShape({ ...batch(), variant: 5 }, op).variant).toBe(5);
      expect(decodeShape({ ...batch(), variant: 0 }, op).variant).toBe(0);
      // Every op and shape class has a measured default (the table covers every batch and n).
      for (const b of [1, 4, 5, 64])
        for (const n of [1, 16384, 16385, 262144, 1 << 20]) {
          const v = defaultDecodeVariant(op, b, n);
          expect(DEFAULT_DECODE_VARIANTS.some((r) => r.op === op && r.variant === v)).toBe(true);
        }
    }
    // The first matching row wins: batch 1 and batch 32 at 128k take their own rows.
    const first = (op: string, b: number, n: number) =>
      DEFAULT_DECODE_VARIANTS.find((r) => r.op === op && b <= r.maxBatch && n <= r.maxN)?.variant;
    expect(defaultDecodeVariant('reuse', 1, 131072)).toBe(first('reuse', 1, 131072));
    expect(defaultDecodeVariant('dense', 32, 131072)).toBe(first('dense', 32, 131072));
  });

  it('passes a kernel variant through and rejects one outside 0..2147483647', () => {
    for (const variant of [
      13, 128, 144, 512, 1023, 1024, 2048, 4096, 16383, 16384, 32767, 32768, 32800, 65535, 65536, 131071,
      262144, 265340, 524287, 524288, 789628, 1048575, 1048576, 1838204, 2097151, 2097152, 3935356, 4194303,
      8388608, 16777215, 16777216, 18615420, 33554432, 67108863, 68947068, 134217727, 134217728, 219942012,
      268435455, 268435456, 536870912, 1073741823, 1073741824, 2147483647,
    ])
      expect(decodeShape({ ...batch(), variant }).variant).toBe(variant);
    for (const variant of [2147483648, -1, 1.5, Number.NaN]) {
      expect(() => decodeShape({ ...batch(), variant })).toThrow(CudaArgumentError);
      expect(() => decodeShape({ ...batch(), variant })).toThrow(
        /variant must be an integer in 0\.\.2147483647/,
      );
    }
  });

  it.each([
    ['n above capacity', { n: 101 }, /n must be an integer in 1\.\.capacity/],
    ['n of 0', { n: 0 }, /n must be/],
    ['mixed dtypes', { dtype: 'f16' as const }, /share dtype/],
    ['group size 3', { q: [2, 24, 128] }, /group size/],
    ['head dim 96', { q: [2, 32, 96], k: [2, 8, 100, 96] }, /headDim must be 64 or 128/],
    ['batch mismatch', { k: [3, 8, 100, 128] }, /does not fit/],
  ])('rejects %s', (_name, over, message) => {
    expect(() => decodeShape(batch(over))).toThrow(CudaArgumentError);
    expect(() => decodeShape(batch(over))).toThrow(message);
  });

  it('checks host selections before they reach the device', () => {
    const dims = { batch: 1, kvHeads: 2, k: 3, n: 10 };
    expect(() => uploadSelection(Int32Array.from([0, 1, 2, 3, 4, 10]), dims)).toThrow(/outside 0\.\.9/);
    expect(() => uploadSelection(Int32Array.from([0, 1, 1, 3, 4, 5]), dims)).toThrow(/repeats in row 0/);
    expect(() => uploadSelection(Int32Array.from([0, 1, 2]), dims)).toThrow(
      /expected batch \* kvHeads \* k = 6/,
    );
    expect(() => uploadSelection(Int32Array.from([0, 1, 2, 3, 4, 5]), { ...dims, k: 11 })).toThrow(
      /k must be in 1\.\.n/,
    );
  });
});

describe('prefill argument checks (no device needed)', () => {
  const fake = <D extends 'bf16' | 'f16'>(dtype: D, shape: number[]) =>
    ({ dtype, shape, size: shape.reduce((a, b) => a * b, 1) }) as unknown as DeviceTensor<D>;
  const chunk = (
    over: Partial<{
      q: number[];
      k: number[];
      queryStart: number;
      tileSize: number;
      dtype: 'bf16' | 'f16';
    }> = {},
  ) => ({
    q: fake('bf16', over.q ?? [1, 32, 100, 128]),
    k: fake(over.dtype ?? 'bf16', over.k ?? [1, 8, 200, 128]),
    v: fake(over.dtype ?? 'bf16', over.k ?? [1, 8, 200, 128]),
    ...(over.queryStart === undefined ? {} : { queryStart: over.queryStart }),
    ...(over.tileSize === undefined ? {} : { tileSize: over.tileSize }),
  });

  it('derives the native prefill shape from consistent tensors', () => {
    expect(prefillShape(chunk({ queryStart: 64 }))).toEqual({
      batch: 1,
      heads: 32,
      kvHeads: 8,
      headDim: 128,
      queries: 100,
      queryStart: 64,
      capacity: 200,
      tileSize: 32,
      scale: 1 / Math.sqrt(128),
      dtype: 'bf16',
    });
  });

  it.each([
    ['a chunk past the capacity', { queryStart: 128 }, /exceeds the cache capacity 200/],
    ['a queryStart off the tile grid', { queryStart: 48 }, /multiple of 32/],
    ['a tile size other than 32', { tileSize: 64 }, /tileSize must be 32/],
    ['mixed dtypes', { dtype: 'f16' as const }, /share dtype/],
    ['group size 3', { q: [1, 24, 100, 128] }, /group size/],
    ['a decode-shaped q', { q: [1, 32, 128] }, /q must be \[batch, heads, queries, headDim\]/],
  ])('rejects %s', (_name, over, message) => {
    expect(() => prefillShape(chunk(over))).toThrow(CudaArgumentError);
    expect(() => prefillShape(chunk(over))).toThrow(message);
  });

  it('computes the rolling budget per tile as core does', () => {
    const { counts, kMax } = prefillCounts({ queries: 100, queryStart: 1920, tileSize: 32 });
    // s = 1920, 1952, 1984, 2016: k(s) = max(128, floor(s / 10)).
    expect(Array.from(counts)).toEqual([192, 195, 198, 201]);
    expect(kMax).toBe(201);
    const early = prefillCounts({ queries: 70, queryStart: 0, tileSize: 32 });
    expect(Array.from(early.counts)).toEqual([0, 32, 64]);
    expect(early.kMax).toBe(64);
  });

  it('checks host prefill selections before they reach the device', () => {
    const sel = (counts: number[], indices: number[], kMax = 2) => ({
      kvHeads: 1,
      tiles: counts.length,
      tileSize: 32,
      kMax,
      counts: Int32Array.from(counts),
      indices: Int32Array.from(indices),
    });
    const dims = { batch: 1, queryStart: 0, n: 64 };
    expect(() => uploadPrefillSelection(sel([0, 2], [-1, -1, 0, 64]), dims)).toThrow(/outside 0\.\.63/);
    expect(() => uploadPrefillSelection(sel([0, 2], [-1, -1, 5, 5]), dims)).toThrow(
      /repeats in row 0, tile 1/,
    );
    expect(() => uploadPrefillSelection(sel([1, 0], [0, -1, -1, -1]), dims)).toThrow(/counts\[0\] = 1/);
    expect(() => uploadPrefillSelection(sel([0, 2], [0, 1]), dims)).toThrow(/expected batch \* kvHeads/);
  });
});
