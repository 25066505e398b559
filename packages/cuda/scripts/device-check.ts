/**
 * Device parity check: every CUDA decode op against the core CPU reference (float64), for
 * bf16 and f16, group sizes 1, 2, 4, 8, head dims 128 and 64, awkward context lengths,
 * batch > 1 and a cache capacity larger than n. Fresh random inputs each run (the seed is
 * printed), outputs poisoned with NaN before every launch.
 *
 * Checks
 * - outputs: ||out - ref|| / ||ref|| < 1e-2 and <= 2 x the error of a naive same-precision
 *   attention (probabilities and output rounded to the dtype) + 1e-4;
 * - Top-k (FlashInfer style): indices in range, no duplicates, every selected reference pooled
 *   score >= the reference k-th largest minus a tolerance, captured pooled mass >= the
 *   reference set's x (1 - 1e-3), and a guard that rows were actually checked;
 * - the fused anchor's output against the reference sparse attention over the indices the GPU
 *   selected; reuse against the reference over a random selection through a random head map.
 *
 * Prefill (src/prefill-parity.ts): the same standards for densePrefill, prefillPooledScores,
 * denseAnchorPrefill, anchorPrefill and reusePrefill; rows under `prefillRows`.
 *
 * Run (bundled so no node_modules travel): node dist-device/device-check.mjs [out.json]
 *   [--quick] [--prefill-only] [--no-prefill]
 */
import { writeFileSync } from 'node:fs';
import {
  type DecodeInputs,
  type DecodeSelection,
  denseDecodeAttention,
  fromBf16,
  fromF16,
  pooledDecodeScores,
  sparseDecodeAttention,
  toBf16,
  toF16,
  topkBudget,
  topkIndices,
} from '@kascade/core';
import {
  type AttentionDType,
  anchorDecode,
  type DeviceDecodeBatch,
  DeviceTensor,
  denseAnchorDecode,
  denseDecode,
  deviceInfo,
  isAvailable,
  pooledScores,
  reuseDecode,
  synchronize,
  unavailableReason,
  uploadSelection,
} from '../src/index.js';
import { type PrefillRow, prefillCases, runPrefillCase } from '../src/prefill-parity.js';

interface Case {
  dtype: AttentionDType;
  g: number;
  kvHeads: number;
  headDim: number;
  n: number;
  batch: number;
  capacity: number;
  qSpread: number;
}

interface Row {
  op: string;
  dtype: string;
  g: number;
  kvHeads: number;
  headDim: number;
  n: number;
  batch: number;
  k?: number;
  relErr?: number;
  naiveRelErr?: number;
  pooledRelErr?: number;
  rowsChecked?: number;
  minMassShare?: number;
  worstScoreGap?: number;
  pass: boolean;
  why?: string;
}

let seed = Number(process.env.SEED ?? Date.now() % 2147483647);
const seed0 = seed;
function rand(): number {
  // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
function gauss(): number {
  const u = Math.max(rand(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

const encode = (dt: AttentionDType, x: ArrayLike<number>) => (dt === 'bf16' ? toBf16(x) : toF16(x));
const decode = (dt: AttentionDType, b: Uint16Array) => (dt === 'bf16' ? fromBf16(b) : fromF16(b));

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    const d = (a[i] as number) - (b[i] as number);
    num += d * d;
    den += (b[i] as number) ** 2;
  }
  return Number.isNaN(num) ? Number.POSITIVE_INFINITY : Math.sqrt(num / Math.max(den, 1e-300));
}

/** Naive same-precision attention: float64 logits, probabilities and output rounded to the dtype. */
function naiveAttention(
  inp: DecodeInputs,
  dt: AttentionDType,
  keys: (j: number) => ArrayLike<number>,
): Float64Array {
  const { heads, kvHeads, headDim: d } = inp;
  const g = heads / kvHeads;
  const cap = inp.capacity ?? inp.n;
  const scale = 1 / Math.sqrt(d);
  const out = new Float64Array(heads * d);
  const round = (x: number) => decode(dt, encode(dt, [x]))[0] as number;
  for (let h = 0; h < heads; h++) {
    const j = Math.floor(h / g);
    const ks = keys(j);
    const s = new Float64Array(ks.length);
    let m = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < ks.length; i++) {
      let dot = 0;
      const base = (j * cap + (ks[i] as number)) * d;
      for (let e = 0; e < d; e++) dot += (inp.q[h * d + e] as number) * (inp.k[base + e] as number);
      s[i] = dot * scale;
      m = Math.max(m, s[i] as number);
    }
    let l = 0;
    for (let i = 0; i < ks.length; i++) {
      s[i] = Math.exp((s[i] as number) - m);
      l += s[i] as number;
    }
    for (let i = 0; i < ks.length; i++) {
      const p = round((s[i] as number) / l);
      const base = (j * cap + (ks[i] as number)) * d;
      for (let e = 0; e < d; e++)
        out[h * d + e] = (out[h * d + e] as number) + p * (inp.v[base + e] as number);
    }
    for (let e = 0; e < d; e++) out[h * d + e] = round(out[h * d + e] as number);
  }
  return out;
}

function makeCase(c: Case): { batch: DeviceDecodeBatch; seqs: DecodeInputs[] } {
  const heads = c.g * c.kvHeads;
  const qn = c.batch * heads * c.headDim;
  const kvn = c.batch * c.kvHeads * c.capacity * c.headDim;
  const q = new Float32Array(qn);
  for (let i = 0; i < qn; i++) q[i] = gauss() * c.qSpread;
  const k = new Float32Array(kvn);
  const v = new Float32Array(kvn);
  for (let i = 0; i < kvn; i++) {
    k[i] = gauss();
    v[i] = gauss();
  }
  const qb = encode(c.dtype, q);
  const kb = encode(c.dtype, k);
  const vb = encode(c.dtype, v);
  const qr = decode(c.dtype, qb);
  const kr = decode(c.dtype, kb);
  const vr = decode(c.dtype, vb);
  const seqs: DecodeInputs[] = [];
  const per = c.kvHeads * c.capacity * c.headDim;
  for (let b = 0; b < c.batch; b++) {
    seqs.push({
      heads,
      kvHeads: c.kvHeads,
      headDim: c.headDim,
      n: c.n,
      capacity: c.capacity,
      q: qr.subarray(b * heads * c.headDim, (b + 1) * heads * c.headDim),
      k: kr.subarray(b * per, (b + 1) * per),
      v: vr.subarray(b * per, (b + 1) * per),
    });
  }
  const batch: DeviceDecodeBatch = {
    q: DeviceTensor.fromHost(c.dtype, [c.batch, heads, c.headDim], qb),
    k: DeviceTensor.fromHost(c.dtype, [c.batch, c.kvHeads, c.capacity, c.headDim], kb),
    v: DeviceTensor.fromHost(c.dtype, [c.batch, c.kvHeads, c.capacity, c.headDim], vb),
    n: c.n,
  };
  return { batch, seqs };
}

function outErrors(
  c: Case,
  seqs: DecodeInputs[],
  got: Float32Array,
  ref: (s: DecodeInputs, b: number) => Float64Array,
  naive: (s: DecodeInputs, b: number) => Float64Array,
): { relErr: number; naiveRelErr: number; nan: boolean } {
  const per = seqs[0]?.heads ?? 0;
  const d = c.headDim;
  let worst = 0;
  let worstNaive = 0;
  let nan = false;
  seqs.forEach((s, b) => {
    const o = got.subarray(b * per * d, (b + 1) * per * d);
    if (o.some((x) => Number.isNaN(x))) nan = true;
    const r = ref(s, b);
    worst = Math.max(worst, relErr(o, r));
    worstNaive = Math.max(worstNaive, relErr(naive(s, b), r));
  });
  return { relErr: worst, naiveRelErr: worstNaive, nan };
}

function judgeOut(r: { relErr: number; naiveRelErr: number; nan: boolean }): { pass: boolean; why?: string } {
  if (r.nan) return { pass: false, why: 'NaN in output (unwritten or bad)' };
  if (!(r.relErr < 1e-2)) return { pass: false, why: `relErr ${r.relErr} >= 1e-2` };
  if (!(r.relErr <= 2 * r.naiveRelErr + 1e-4))
    return { pass: false, why: `relErr ${r.relErr} > 2 x naive ${r.naiveRelErr} + 1e-4` };
  return { pass: true };
}

/** FlashInfer-style Top-k properties against the reference pooled scores. */
function checkSelection(
  seqs: DecodeInputs[],
  k: number,
  idx: Int32Array,
): { pass: boolean; why?: string; rowsChecked: number; minMassShare: number; worstScoreGap: number } {
  let rowsChecked = 0;
  let minMassShare = 1;
  let worstScoreGap = 0;
  for (let b = 0; b < seqs.length; b++) {
    const s = seqs[b] as DecodeInputs;
    const pooled = pooledDecodeScores(s);
    const n = s.n;
    for (let j = 0; j < s.kvHeads; j++) {
      const row = pooled.subarray(j * n, (j + 1) * n);
      const sel = idx.subarray((b * s.kvHeads + j) * k, (b * s.kvHeads + j + 1) * k);
      const seen = new Set<number>();
      for (const x of sel) {
        if (!(x >= 0 && x < n))
          return {
            pass: false,
            why: `index ${x} out of range (b ${b}, j ${j})`,
            rowsChecked,
            minMassShare,
            worstScoreGap,
          };
        if (seen.has(x))
          return {
            pass: false,
            why: `duplicate index ${x} (b ${b}, j ${j})`,
            rowsChecked,
            minMassShare,
            worstScoreGap,
          };
        seen.add(x);
      }
      const refSet = topkIndices(row, k);
      let kth = Number.POSITIVE_INFINITY;
      let refMass = 0;
      for (const x of refSet) {
        kth = Math.min(kth, row[x] as number);
        refMass += row[x] as number;
      }
      let rowMax = 0;
      for (const x of row) rowMax = Math.max(rowMax, x);
      const tol = 1e-4 * kth + 1e-7 * rowMax;
      let mass = 0;
      for (const x of sel) {
        const sc = row[x] as number;
        mass += sc;
        worstScoreGap = Math.max(worstScoreGap, (kth - sc) / Math.max(kth, 1e-300));
        if (sc < kth - tol) {
          return {
            pass: false,
            why: `selected score ${sc} below k-th ${kth} - tol (b ${b}, j ${j}, x ${x})`,
            rowsChecked,
            minMassShare,
            worstScoreGap,
          };
        }
      }
      const share = mass / refMass;
      minMassShare = Math.min(minMassShare, share);
      if (share < 1 - 1e-3)
        return {
          pass: false,
          why: `captured mass share ${share} < 1 - 1e-3`,
          rowsChecked,
          minMassShare,
          worstScoreGap,
        };
      rowsChecked++;
    }
  }
  if (rowsChecked !== seqs.length * (seqs[0]?.kvHeads ?? 0) || rowsChecked === 0) {
    return { pass: false, why: 'no rows checked', rowsChecked, minMassShare, worstScoreGap };
  }
  return { pass: true, rowsChecked, minMassShare, worstScoreGap };
}

function runCase(c: Case, rows: Row[]): void {
  const { batch, seqs } = makeCase(c);
  const base = { dtype: c.dtype, g: c.g, kvHeads: c.kvHeads, headDim: c.headDim, n: c.n, batch: c.batch };
  const k = topkBudget(c.n, {});
  const all = (n: number) => Int32Array.from({ length: n }, (_, i) => i);
  const heads = c.g * c.kvHeads;
  const out = DeviceTensor.empty(c.dtype, [c.batch, heads, c.headDim]);
  const selT = DeviceTensor.empty('i32', [c.batch, c.kvHeads, k]);
  const selection = { kvHeads: c.kvHeads, k, indices: selT };
  const push = (r: Row) => {
    rows.push(r);
    const tag = r.pass ? 'ok  ' : 'FAIL';
    console.log(
      `${tag} ${r.op.padEnd(12)} ${c.dtype} g${c.g} G${c.kvHeads} d${c.headDim} n${c.n} b${c.batch}` +
        `${r.k ? ` k${r.k}` : ''} err ${r.relErr?.toExponential(2) ?? '-'} naive ${r.naiveRelErr?.toExponential(2) ?? '-'}` +
        `${r.minMassShare !== undefined ? ` mass ${r.minMassShare.toFixed(6)}` : ''}${r.why ? `  ${r.why}` : ''}`,
    );
  };
  const guard = (op: string, f: () => void) => {
    try {
      f();
    } catch (e) {
      push({ op, ...base, pass: false, why: `threw: ${(e as Error).message}` });
    }
  };

  guard('dense', () => {
    out.fill(0xff);
    denseDecode(batch, out);
    synchronize();
    const e = outErrors(
      c,
      seqs,
      decode(c.dtype, out.download()),
      (s) => denseDecodeAttention(s),
      (s) => naiveAttention(s, c.dtype, () => all(c.n)),
    );
    push({ op: 'dense', ...base, relErr: e.relErr, naiveRelErr: e.naiveRelErr, ...judgeOut(e) });
  });

  guard('pooled', () => {
    const pooled = pooledScores(batch);
    synchronize();
    const got = pooled.download();
    pooled.free();
    let worst = 0;
    seqs.forEach((s, b) => {
      const per = c.kvHeads * c.n;
      worst = Math.max(worst, relErr(got.subarray(b * per, (b + 1) * per), pooledDecodeScores(s)));
    });
    push({
      op: 'pooled',
      ...base,
      pooledRelErr: worst,
      relErr: worst,
      pass: worst < 1e-4,
      ...(worst < 1e-4 ? {} : { why: `pooled relErr ${worst}` }),
    });
  });

  guard('denseAnchor', () => {
    out.fill(0xff);
    selT.fill(0xff);
    denseAnchorDecode(batch, k, { out, selection });
    synchronize();
    const e = outErrors(
      c,
      seqs,
      decode(c.dtype, out.download()),
      (s) => denseDecodeAttention(s),
      (s) => naiveAttention(s, c.dtype, () => all(c.n)),
    );
    const sel = checkSelection(seqs, k, selT.download());
    const o = judgeOut(e);
    push({
      op: 'denseAnchor',
      ...base,
      k,
      relErr: e.relErr,
      naiveRelErr: e.naiveRelErr,
      rowsChecked: sel.rowsChecked,
      minMassShare: sel.minMassShare,
      worstScoreGap: sel.worstScoreGap,
      pass: o.pass && sel.pass,
      ...(o.why || sel.why ? { why: [o.why, sel.why].filter(Boolean).join('; ') } : {}),
    });
  });

  guard('anchor', () => {
    out.fill(0xff);
    selT.fill(0xff);
    anchorDecode(batch, k, { out, selection });
    synchronize();
    const idx = selT.download();
    const sel = checkSelection(seqs, k, idx);
    const rowOf = (b: number, j: number) =>
      Array.from(idx.subarray((b * c.kvHeads + j) * k, (b * c.kvHeads + j + 1) * k));
    const gpuSel = (b: number): DecodeSelection => ({
      kvHeads: c.kvHeads,
      k,
      indices: idx.slice(b * c.kvHeads * k, (b + 1) * c.kvHeads * k),
    });
    const e = sel.pass
      ? outErrors(
          c,
          seqs,
          decode(c.dtype, out.download()),
          (s, b) => sparseDecodeAttention(s, gpuSel(b)),
          (s, b) => naiveAttention(s, c.dtype, (j) => rowOf(b, j)),
        )
      : { relErr: Number.NaN, naiveRelErr: Number.NaN, nan: false };
    const o = sel.pass ? judgeOut(e) : { pass: false };
    push({
      op: 'anchor',
      ...base,
      k,
      relErr: e.relErr,
      naiveRelErr: e.naiveRelErr,
      rowsChecked: sel.rowsChecked,
      minMassShare: sel.minMassShare,
      worstScoreGap: sel.worstScoreGap,
      pass: o.pass && sel.pass,
      ...(o.pass && sel.pass
        ? {}
        : { why: ['why' in o ? o.why : undefined, sel.why].filter(Boolean).join('; ') }),
    });
  });

  guard('reuse', () => {
    // k = n at n = 1023: more splits over the list than over the keys (workspace sizing).
    const kr = c.n === 1023 ? c.n : k;
    // A random selection (distinct indices per row) read through a random head map.
    const idx = new Int32Array(c.batch * c.kvHeads * kr);
    for (let r = 0; r < c.batch * c.kvHeads; r++) {
      const perm = Int32Array.from({ length: c.n }, (_, i) => i);
      for (let i = 0; i < kr; i++) {
        const jx = i + Math.floor(rand() * (c.n - i));
        const t = perm[i] as number;
        perm[i] = perm[jx] as number;
        perm[jx] = t;
      }
      idx.set(perm.subarray(0, kr), r * kr);
    }
    const headMap = Array.from({ length: c.kvHeads }, () => Math.floor(rand() * c.kvHeads));
    const sel = uploadSelection(idx, { batch: c.batch, kvHeads: c.kvHeads, k: kr, n: c.n });
    out.fill(0xff);
    reuseDecode(batch, sel, headMap, out);
    synchronize();
    const hostSel = (b: number): DecodeSelection => ({
      kvHeads: c.kvHeads,
      k: kr,
      indices: idx.slice(b * c.kvHeads * kr, (b + 1) * c.kvHeads * kr),
    });
    const e = outErrors(
      c,
      seqs,
      decode(c.dtype, out.download()),
      (s, b) => sparseDecodeAttention(s, hostSel(b), headMap),
      (s, b) =>
        naiveAttention(s, c.dtype, (j) =>
          Array.from(
            idx.subarray(
              (b * c.kvHeads + (headMap[j] as number)) * kr,
              (b * c.kvHeads + (headMap[j] as number) + 1) * kr,
            ),
          ),
        ),
    );
    sel.indices.free();
    push({ op: 'reuse', ...base, k: kr, relErr: e.relErr, naiveRelErr: e.naiveRelErr, ...judgeOut(e) });
  });

  out.free();
  selT.free();
  batch.q.free();
  batch.k.free();
  batch.v.free();
}

function main(): void {
  const outPath = process.argv[2] ?? 'cuda-parity.json';
  if (!isAvailable()) {
    console.error(`CUDA unavailable: ${unavailableReason()}`);
    process.exit(2);
  }
  const info = deviceInfo();
  console.log(
    `device: ${info.name} (sm ${info.computeCapability}, ${info.multiprocessors} SMs), seed ${seed0}`,
  );
  const rows: Row[] = [];
  const cases: Case[] = [];
  const quick = process.argv.includes('--quick');
  for (const dtype of ['bf16', 'f16'] as const) {
    for (const g of [1, 2, 4, 8]) {
      for (const n of quick ? [113, 4097] : [1, 113, 1023, 20000]) {
        cases.push({ dtype, g, kvHeads: 2, headDim: 128, n, batch: 2, capacity: n + 7, qSpread: 1 });
      }
    }
  }
  // Head dim 64, a skewed (peaky) query, a long context crossing many splits, batch 3, GQA 8 x 4.
  cases.push({ dtype: 'bf16', g: 4, kvHeads: 2, headDim: 64, n: 5000, batch: 3, capacity: 5000, qSpread: 1 });
  cases.push({ dtype: 'f16', g: 8, kvHeads: 2, headDim: 64, n: 1023, batch: 1, capacity: 1100, qSpread: 1 });
  cases.push({
    dtype: 'bf16',
    g: 4,
    kvHeads: 2,
    headDim: 128,
    n: 65537,
    batch: 1,
    capacity: 65537,
    qSpread: 3,
  });
  cases.push({
    dtype: 'bf16',
    g: 4,
    kvHeads: 4,
    headDim: 128,
    n: 30011,
    batch: 2,
    capacity: 30011,
    qSpread: 0.3,
  });
  const t0 = Date.now();
  const prefillOnly = process.argv.includes('--prefill-only');
  if (!prefillOnly) for (const c of cases) runCase(c, rows);
  const prefillRows: PrefillRow[] = [];
  if (!process.argv.includes('--no-prefill')) {
    for (const c of prefillCases(quick)) runPrefillCase(c, prefillRows, rand, gauss);
  }
  const failed = [...rows, ...prefillRows].filter((r) => !r.pass);
  const summary = {
    device: info,
    seed: seed0,
    command: `node ${process.argv.slice(1).join(' ')}`,
    date: new Date().toISOString(),
    gitCommit: process.env.KASCADE_GIT_COMMIT ?? 'unknown',
    checks: rows.length + prefillRows.length,
    failed: failed.length,
    seconds: (Date.now() - t0) / 1000,
    tolerances: {
      output: 'relErr < 1e-2 and <= 2 x naive same-precision relErr + 1e-4',
      pooled: 'relErr < 1e-4',
      topk: 'in range, no duplicates, selected >= ref k-th - (1e-4 k-th + 1e-7 max), mass share >= 1 - 1e-3',
    },
    rows,
    prefillRows,
  };
  writeFileSync(outPath, `${JSON.stringify(summary, null, 1)}\n`);
  console.log(
    `${rows.length + prefillRows.length} checks, ${failed.length} failed, ${summary.seconds.toFixed(1)} s -> ${outPath}`,
  );
  if (failed.length > 0) process.exitCode = 1;
}

main();
