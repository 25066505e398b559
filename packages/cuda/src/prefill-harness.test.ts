/**
 * The prefill parity harness (src/prefill-parity.ts) and the typed prefill ops, checked on the
 * CPU: the addon is replaced by a host-memory fake whose "kernels" are core's reference ops (results
 * rounded to the dtype, as a GPU writes them). The harness must pass a correct implementation and
 * fail broken ones; this says nothing about the CUDA kernels themselves (the device check does).
 */
import {
  denseCausalPrefillAttention,
  fromBf16,
  fromF16,
  type PrefillInputs,
  type PrefillSelection,
  pooledPrefillScores,
  sparsePrefillAttention,
  toBf16,
  toF16,
  topkIndices,
} from '@kascade/core';
import { describe, expect, it, vi } from 'vitest';
import type { NativeBinding, NativeDeviceBuffer, NativePrefillShape } from './binding.types.js';
import { CudaArgumentError } from './errors.js';
import { prefillKernelPreset, prefillKernels, setPrefillKernels } from './prefill.js';
import { type PrefillRow, runPrefillCase } from './prefill-parity.js';

type Fault =
  | 'none'
  | 'dense-shift'
  | 'dense-shift-v22'
  | 'drop-top'
  | 'anchor-dense'
  | 'reuse-ignores-map'
  | 'unwritten-tail'
  | 'ties-last';
const state: { fault: Fault } = { fault: 'none' };

class FakeBuffer implements NativeDeviceBuffer {
  mem: Uint8Array | null;
  constructor(readonly bytes: number) {
    this.mem = new Uint8Array(bytes);
  }
  get freed(): boolean {
    return this.mem === null;
  }
  private m(): Uint8Array {
    if (!this.mem) throw new Error('freed');
    return this.mem;
  }
  upload(src: ArrayBufferView, off = 0): void {
    this.m().set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength), off);
  }
  download(dst: ArrayBufferView, off = 0): void {
    new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength).set(
      this.m().subarray(off, off + dst.byteLength),
    );
  }
  fill(byte: number): void {
    this.m().fill(byte & 0xff);
  }
  free(): void {
    this.mem = null;
  }
  u16(): Uint16Array {
    const m = this.m();
    return new Uint16Array(m.buffer, m.byteOffset, m.byteLength / 2);
  }
  i32(): Int32Array {
    const m = this.m();
    return new Int32Array(m.buffer, m.byteOffset, m.byteLength / 4);
  }
  f32(): Float32Array {
    const m = this.m();
    return new Float32Array(m.buffer, m.byteOffset, m.byteLength / 4);
  }
}

const buf = (b: NativeDeviceBuffer) => b as FakeBuffer;
const widen = (s: NativePrefillShape, b: NativeDeviceBuffer) =>
  s.dtype === 'bf16' ? fromBf16(buf(b).u16()) : fromF16(buf(b).u16());
const narrow = (s: NativePrefillShape, x: ArrayLike<number>) => (s.dtype === 'bf16' ? toBf16(x) : toF16(x));

function seqs(s: NativePrefillShape, q: NativeDeviceBuffer, k: NativeDeviceBuffer, v: NativeDeviceBuffer) {
  const qf = widen(s, q);
  const kf = widen(s, k);
  const vf = v ? widen(s, v) : kf;
  const perQ = s.heads * s.queries * s.headDim;
  const perKv = s.kvHeads * s.capacity * s.headDim;
  return Array.from(
    { length: s.batch },
    (_, b): PrefillInputs => ({
      heads: s.heads,
      kvHeads: s.kvHeads,
      headDim: s.headDim,
      n: s.queryStart + s.queries,
      capacity: s.capacity,
      queries: s.queries,
      queryStart: s.queryStart,
      tileSize: s.tileSize,
      scale: s.scale,
      q: qf.subarray(b * perQ, (b + 1) * perQ),
      k: kf.subarray(b * perKv, (b + 1) * perKv),
      v: vf.subarray(b * perKv, (b + 1) * perKv),
    }),
  );
}

function writeOut(
  s: NativePrefillShape,
  out: NativeDeviceBuffer,
  per: (i: PrefillInputs, b: number) => Float64Array,
  ins: PrefillInputs[],
) {
  const o = buf(out).u16();
  const perQ = s.heads * s.queries * s.headDim;
  ins.forEach((inp, b) => {
    const r = per(inp, b);
    const v22 = process.env.KASCADE_PREFILL_DENSE === 'v22';
    if (state.fault === 'dense-shift' || (state.fault === 'dense-shift-v22' && v22))
      r[0] = (r[0] as number) + 1;
    o.set(narrow(s, r), b * perQ);
  });
}

/** The selection a correct anchor writes: the exact Top-k per (KV head, tile), -1 after counts[t]. */
function select(
  s: NativePrefillShape,
  ins: PrefillInputs[],
  counts: Int32Array,
  kMax: number,
  idx: Int32Array,
) {
  const tiles = counts.length;
  const n = s.queryStart + s.queries;
  ins.forEach((inp, b) => {
    const pooled = pooledPrefillScores(inp).scores;
    for (let j = 0; j < s.kvHeads; j++)
      for (let t = 0; t < tiles; t++) {
        const row = ((b * s.kvHeads + j) * tiles + t) * kMax;
        const st = s.queryStart + t * s.tileSize;
        let kt = counts[t] as number;
        const scores = pooled.subarray((j * tiles + t) * n, (j * tiles + t + 1) * n);
        const chosen = topkIndices(scores, kt, st);
        if (state.fault === 'drop-top' && kt > 0 && kt < st) {
          // Swap the best key for the best unchosen one.
          const set = new Set(chosen);
          const rest = topkIndices(scores, Math.min(st, kt + 1), st).filter((x) => !set.has(x));
          const best = topkIndices(scores, 1, st)[0] as number;
          const at = chosen.indexOf(best);
          if (rest.length > 0 && at >= 0) chosen[at] = rest[0] as number;
        }
        if (state.fault === 'ties-last' && kt > 0 && kt < st) {
          // Ties at the k-th score highest index first.
          let kth = Number.POSITIVE_INFINITY;
          for (const x of chosen) kth = Math.min(kth, scores[x] as number);
          const above = [...chosen].filter((x) => (scores[x] as number) > kth);
          const tied = Array.from({ length: st }, (_, x) => x).filter((x) => scores[x] === kth);
          chosen.set([...above, ...tied.slice(tied.length - (kt - above.length))]);
        }
        if (state.fault === 'unwritten-tail') kt = Math.max(0, kt - 1);
        for (let a = 0; a < kMax; a++)
          idx[row + a] =
            a < kt ? (chosen[a] as number) : a < (counts[t] as number) ? (idx[row + a] as number) : -1;
      }
  });
}

function hostSel(
  s: NativePrefillShape,
  rows: number,
  counts: Int32Array,
  kMax: number,
  idx: Int32Array,
  b: number,
): PrefillSelection {
  const tiles = counts.length;
  return {
    kvHeads: rows,
    tiles,
    tileSize: s.tileSize,
    kMax,
    counts,
    indices: idx.slice(b * rows * tiles * kMax, (b + 1) * rows * tiles * kMax),
  };
}

const fake: Partial<NativeBinding> = {
  DeviceBuffer: FakeBuffer,
  probe: () => ({ available: true, deviceCount: 1 }),
  deviceInfo: () => ({
    name: 'CPU fake',
    computeCapability: '0.0',
    multiprocessors: 1,
    globalMemoryBytes: 0,
    l2Bytes: 0,
    runtimeVersion: 0,
    driverVersion: 0,
  }),
  synchronize: () => {},
  prefillWorkspaceBytes: () => 0,
  densePrefill(s, q, k, v, out) {
    writeOut(s, out, (i) => denseCausalPrefillAttention(i), seqs(s, q, k, v));
  },
  denseAnchorPrefill(s, q, k, v, out, counts, kMax, indices) {
    const ins = seqs(s, q, k, v);
    writeOut(s, out, (i) => denseCausalPrefillAttention(i), ins);
    select(s, ins, buf(counts).i32(), kMax, buf(indices).i32());
  },
  anchorPrefill(s, q, k, v, out, counts, kMax, indices) {
    const ins = seqs(s, q, k, v);
    const c = buf(counts).i32();
    const idx = buf(indices).i32();
    select(s, ins, c, kMax, idx);
    writeOut(
      s,
      out,
      (i, b) =>
        state.fault === 'anchor-dense'
          ? denseCausalPrefillAttention(i)
          : sparsePrefillAttention(i, hostSel(s, s.kvHeads, c, kMax, idx, b)),
      ins,
    );
  },
  reusePrefill(s, q, k, v, out, counts, kMax, indices, selKvHeads, headMap) {
    const c = buf(counts).i32();
    const idx = buf(indices).i32();
    const map =
      state.fault === 'reuse-ignores-map' ? Array.from({ length: s.kvHeads }, (_, j) => j) : headMap;
    writeOut(
      s,
      out,
      (i, b) => sparsePrefillAttention(i, hostSel(s, selKvHeads, c, kMax, idx, b), map),
      seqs(s, q, k, v),
    );
  },
  pooledPrefillScores(s, q, k, _unused, pooled) {
    const ins = seqs(s, q, k, k);
    const p = buf(pooled).f32();
    const per = s.kvHeads * Math.ceil(s.queries / s.tileSize) * (s.queryStart + s.queries);
    ins.forEach((i, b) => {
      p.set(pooledPrefillScores(i).scores, b * per);
    });
  },
};

vi.mock('./load.js', () => ({ loadNative: () => ({ binding: fake, tried: [] }) }));

function run(
  fault: Fault,
  both = false,
  variants?: Parameters<typeof runPrefillCase>[4],
  keys?: 'ties',
): PrefillRow[] {
  state.fault = fault;
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const gauss = () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
  const rows: PrefillRow[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation(() => {});
  // Small cases keep this fast: 3 tiles (the last partial) with a real select (kMin 8), and a later
  // chunk (queryStart 64) at batch 2, f16, g 4.
  const base = { headDim: 64, capacity: 0, qSpread: 1 };
  const cases = [
    {
      ...base,
      dtype: 'bf16' as const,
      g: 2,
      kvHeads: 2,
      queries: 77,
      queryStart: 0,
      batch: 1,
      budget: { kMin: 8 },
    },
    {
      ...base,
      dtype: 'f16' as const,
      g: 4,
      kvHeads: 2,
      queries: 50,
      queryStart: 64,
      batch: 2,
      budget: { kMin: 8, percent: 25 },
    },
  ].map((c) => ({ ...c, capacity: c.queryStart + c.queries + 3, ...(keys ? { keys } : {}) }));
  for (const c of both ? cases : cases.slice(0, 1)) runPrefillCase(c, rows, rand, gauss, variants);
  log.mockRestore();
  return rows;
}

describe('prefill parity harness on a CPU fake of the addon', () => {
  it('passes a correct implementation on every op', { timeout: 60_000 }, () => {
    const rows = run('none', true);
    expect(rows.map((r) => r.op)).toEqual(
      [1, 2].flatMap(() => ['dense', 'pooled', 'denseAnchor', 'anchor', 'reuse']),
    );
    for (const r of rows) expect(r.pass, `${r.op}: ${r.why}`).toBe(true);
    const sel = rows.filter((r) => r.op === 'anchor' || r.op === 'denseAnchor');
    for (const r of sel) expect(r.rowsChecked).toBeGreaterThan(0);
  });

  it('checks every kernel variant, tags its rows, and restores the selection', { timeout: 60_000 }, () => {
    setPrefillKernels({ dense: 'v1', sparse: 'v1', pool: 'v1' });
    const rows = run('dense-shift-v22', false, [
      { name: 'v1', kernels: prefillKernelPreset('v1') },
      { name: 'v67', kernels: prefillKernelPreset('v67') },
    ]);
    expect(rows.map((r) => r.kernels)).toEqual([
      ...Array(5).fill('v1: dense v1 sparse v1 pool v1'),
      ...Array(5).fill('v67: dense v22 sparse v61 pool v67'),
    ]);
    for (const r of rows.slice(0, 5)) expect(r.pass, `${r.op} v1: ${r.why}`).toBe(true);
    const bad = rows.slice(5).filter((r) => !r.pass);
    expect(bad.map((r) => r.op)).toContain('dense');
    expect(prefillKernels()).toEqual({ dense: 'v1', sparse: 'v1', pool: 'v1' });
  });

  it('defaults to the kernels the H200 run measured fastest when nothing is selected', () => {
    const saved = { ...process.env };
    delete process.env.KASCADE_PREFILL_DENSE;
    delete process.env.KASCADE_PREFILL_SPARSE;
    delete process.env.KASCADE_PREFILL_POOL;
    try {
      expect(prefillKernels()).toEqual({ dense: 'v22', sparse: 'v61', pool: 'v75' });
      expect(prefillKernelPreset('v75')).toEqual(prefillKernels());
    } finally {
      for (const k of ['KASCADE_PREFILL_DENSE', 'KASCADE_PREFILL_SPARSE', 'KASCADE_PREFILL_POOL'])
        if (saved[k] !== undefined) process.env[k] = saved[k];
    }
  });

  it('rejects an unknown kernel variant or preset by name', () => {
    expect(() => setPrefillKernels({ dense: 'v10' as 'v1' })).toThrow(
      /dense kernel must be one of v1, v22, got v10/,
    );
    expect(() => setPrefillKernels({ sparse: 'fast' as 'v1' })).toThrow(
      /sparse kernel must be one of v1, v12, v61, got fast/,
    );
    expect(() => setPrefillKernels({ pool: 'v9' as 'v1' })).toThrow(
      /pool kernel must be one of v1, v60, v67, v75, got v9/,
    );
    expect(() => prefillKernelPreset('v99')).toThrow(
      /unknown prefill kernel preset v99 \(known: v1, v60, v67, v75\)/,
    );
    // Sessions 2-12's losing presets are gone.
    for (const gone of [
      'v2',
      'v8',
      'v18',
      'v19',
      'v20',
      'v30',
      'v32',
      'v36',
      'v37',
      'v41',
      'v42',
      'v45',
      'v47',
      'v49',
      'v51',
      'v52',
      'v53',
      'v54',
      'v55',
      'v48',
      'v57',
      'v58',
      'v59',
      'v62',
      'v63',
      'v56',
      'v64',
      'v65',
      'v66',
      'v68',
      'v69',
      'v70',
      'v71',
      'v72',
      'v73',
      'v74',
      'v76',
      'v77',
      'v78',
      'v79',
      'v80',
      'v81',
      'v82',
    ])
      expect(() => prefillKernelPreset(gone)).toThrow(CudaArgumentError);
    expect(prefillKernelPreset('v1')).toEqual({ dense: 'v1', sparse: 'v1', pool: 'v1' });
    expect(prefillKernelPreset('v60')).toEqual({ dense: 'v22', sparse: 'v61', pool: 'v60' });
    expect(prefillKernelPreset('v67')).toEqual({ dense: 'v22', sparse: 'v61', pool: 'v67' });
    expect(prefillKernelPreset('v75')).toEqual({ dense: 'v22', sparse: 'v61', pool: 'v75' });
  });

  it('checks tied pooled scores exactly: ties at the k-th lowest index first', { timeout: 60_000 }, () => {
    const good = run('none', false, undefined, 'ties');
    const sel = good.filter((r) => r.op === 'anchor' || r.op === 'denseAnchor');
    expect(sel).toHaveLength(2);
    for (const r of sel) {
      expect(r.pass, `${r.op}: ${r.why}`).toBe(true);
      expect(r.tieRowsCut).toBeGreaterThan(0);
    }
    const bad = run('ties-last', false, undefined, 'ties').filter((r) => !r.pass);
    expect(bad.map((r) => r.op).sort()).toEqual(['anchor', 'denseAnchor']);
    expect(bad[0]?.why).toMatch(/not in the reference's set, ties at the k-th/);
  });

  it.each([
    ['dense-shift', ['dense', 'denseAnchor']],
    ['drop-top', ['denseAnchor', 'anchor']],
    ['anchor-dense', ['anchor']],
    ['reuse-ignores-map', ['reuse']],
    ['unwritten-tail', ['denseAnchor', 'anchor']],
  ] as const)('fails a broken implementation (%s)', { timeout: 60_000 }, (fault, ops) => {
    const rows = run(fault, fault === 'reuse-ignores-map');
    for (const op of ops) {
      const bad = rows.filter((r) => r.op === op && !r.pass);
      expect(bad.length, `${fault} should fail ${op}`).toBeGreaterThan(0);
    }
  });
});
