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
 *   [--quick] [--prefill-only] [--no-prefill] [--prefill-long] [--prefill-variants=v1,v2]
 * --prefill-long keeps the long prefill chunk under --quick; --prefill-variants checks every prefill op
 * under each named kernel preset (PREFILL_KERNEL_PRESETS), rows tagged with `kernels` ('v4: dense v3 ...').
 * --smoke: four small decode cases only (screens a kernel variant in a process of its own).
 * --variants 0,1,4: the decode kernel variants to check (KascadeDecodeVariant bits; default 0); every
 * decode op runs under each against the same float64 references, rows tagged with `variant`, and
 * `passingVariants` lists the variants none of whose checks failed.
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
  DECODE_VARIANT_MAX,
  type DeviceDecodeBatch,
  DeviceTensor,
  denseAnchorDecode,
  denseDecode,
  deviceInfo,
  isAvailable,
  pooledScores,
  prefillKernelPreset,
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
  /** KascadeDecodeVariant bits the op ran with. */
  variant: number;
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

/** The reference pooled scores of one case: per sequence [kvHeads, n], and per row its Top-k facts. */
interface PooledRef {
  pooled: Float64Array[];
  rows: { kth: number; refMass: number; tol: number }[];
}

function pooledReference(seqs: DecodeInputs[], k: number): PooledRef {
  const pooled = seqs.map((s) => pooledDecodeScores(s));
  const rows: PooledRef['rows'] = [];
  seqs.forEach((s, b) => {
    const n = s.n;
    for (let j = 0; j < s.kvHeads; j++) {
      const row = (pooled[b] as Float64Array).subarray(j * n, (j + 1) * n);
      let kth = Number.POSITIVE_INFINITY;
      let refMass = 0;
      for (const x of topkIndices(row, k)) {
        kth = Math.min(kth, row[x] as number);
        refMass += row[x] as number;
      }
      let rowMax = 0;
      for (const x of row) rowMax = Math.max(rowMax, x);
      rows.push({ kth, refMass, tol: 1e-4 * kth + 1e-7 * rowMax });
    }
  });
  return { pooled, rows };
}

/** FlashInfer-style Top-k properties against the reference pooled scores. */
function checkSelection(
  seqs: DecodeInputs[],
  ref: PooledRef,
  k: number,
  idx: Int32Array,
): { pass: boolean; why?: string; rowsChecked: number; minMassShare: number; worstScoreGap: number } {
  let rowsChecked = 0;
  let minMassShare = 1;
  let worstScoreGap = 0;
  const fail = (why: string) => ({ pass: false, why, rowsChecked, minMassShare, worstScoreGap });
  for (let b = 0; b < seqs.length; b++) {
    const s = seqs[b] as DecodeInputs;
    const n = s.n;
    for (let j = 0; j < s.kvHeads; j++) {
      const row = (ref.pooled[b] as Float64Array).subarray(j * n, (j + 1) * n);
      const { kth, refMass, tol } = ref.rows[b * s.kvHeads + j] as PooledRef['rows'][number];
      const sel = idx.subarray((b * s.kvHeads + j) * k, (b * s.kvHeads + j + 1) * k);
      const seen = new Set<number>();
      for (const x of sel) {
        if (!(x >= 0 && x < n)) return fail(`index ${x} out of range (b ${b}, j ${j})`);
        if (seen.has(x)) return fail(`duplicate index ${x} (b ${b}, j ${j})`);
        seen.add(x);
      }
      let mass = 0;
      for (const x of sel) {
        const sc = row[x] as number;
        mass += sc;
        worstScoreGap = Math.max(worstScoreGap, (kth - sc) / Math.max(kth, 1e-300));
        if (sc < kth - tol)
          return fail(`selected score ${sc} below k-th ${kth} - tol (b ${b}, j ${j}, x ${x})`);
      }
      const share = mass / refMass;
      minMassShare = Math.min(minMassShare, share);
      if (share < 1 - 1e-3) return fail(`captured mass share ${share} < 1 - 1e-3`);
      rowsChecked++;
    }
  }
  if (rowsChecked !== seqs.length * (seqs[0]?.kvHeads ?? 0) || rowsChecked === 0)
    return fail('no rows checked');
  return { pass: true, rowsChecked, minMassShare, worstScoreGap };
}

/** Memoises a reference so every kernel variant is compared with the same float64 result. */
function once<T>(f: () => T): () => T {
  let v: { x: T } | undefined;
  return () => {
    if (!v) v = { x: f() };
    return v.x;
  };
}

function runCase(c: Case, rows: Row[], variants: readonly number[]): void {
  const { batch: batch0, seqs } = makeCase(c);
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
      `${tag} ${r.op.padEnd(12)} v${r.variant} ${c.dtype} g${c.g} G${c.kvHeads} d${c.headDim} n${c.n} b${c.batch}` +
        `${r.k ? ` k${r.k}` : ''} err ${r.relErr?.toExponential(2) ?? '-'} naive ${r.naiveRelErr?.toExponential(2) ?? '-'}` +
        `${r.minMassShare !== undefined ? ` mass ${r.minMassShare.toFixed(6)}` : ''}${r.why ? `  ${r.why}` : ''}`,
    );
  };
  // Float64 references, computed once per case and shared by every variant.
  const denseRef = once(() => seqs.map((s) => denseDecodeAttention(s)));
  const denseNaive = once(() => seqs.map((s) => naiveAttention(s, c.dtype, () => all(c.n))));
  const pooledRef = once(() => pooledReference(seqs, k));
  const denseErrors = (got: Float32Array) =>
    outErrors(
      c,
      seqs,
      got,
      (_s, b) => denseRef()[b] as Float64Array,
      (_s, b) => denseNaive()[b] as Float64Array,
    );

  // A random selection (distinct indices per row) read through a random head map, for reuse.
  // k = n at n = 1023: more splits over the list than over the keys (workspace sizing).
  const kr = c.n === 1023 ? c.n : k;
  const reuseIdx = new Int32Array(c.batch * c.kvHeads * kr);
  for (let r = 0; r < c.batch * c.kvHeads; r++) {
    const perm = Int32Array.from({ length: c.n }, (_, i) => i);
    for (let i = 0; i < kr; i++) {
      const jx = i + Math.floor(rand() * (c.n - i));
      const t = perm[i] as number;
      perm[i] = perm[jx] as number;
      perm[jx] = t;
    }
    reuseIdx.set(perm.subarray(0, kr), r * kr);
  }
  const headMap = Array.from({ length: c.kvHeads }, () => Math.floor(rand() * c.kvHeads));
  const reuseKeys = (b: number, j: number) =>
    Array.from(
      reuseIdx.subarray(
        (b * c.kvHeads + (headMap[j] as number)) * kr,
        (b * c.kvHeads + (headMap[j] as number) + 1) * kr,
      ),
    );
  const hostSel = (b: number): DecodeSelection => ({
    kvHeads: c.kvHeads,
    k: kr,
    indices: reuseIdx.slice(b * c.kvHeads * kr, (b + 1) * c.kvHeads * kr),
  });
  const reuseRef = once(() => seqs.map((s, b) => sparseDecodeAttention(s, hostSel(b), headMap)));
  const reuseNaive = once(() => seqs.map((s, b) => naiveAttention(s, c.dtype, (j) => reuseKeys(b, j))));
  const reuseSel = uploadSelection(reuseIdx, { batch: c.batch, kvHeads: c.kvHeads, k: kr, n: c.n });

  // The cluster select (variant bits 256/512) keeps the spec's tie rule (lower index first): with every
  // pooled score tied (a query of zeros), each row must hold exactly the k lowest indices.
  const tieRule = (variant: number, idx: Int32Array): string | undefined => {
    if ((variant & (256 | 512)) === 0 || c.qSpread !== 0) return undefined;
    for (let r = 0; r < c.batch * c.kvHeads; r++)
      for (const x of idx.subarray(r * k, (r + 1) * k))
        if (x >= k) return `tie rule: row ${r} holds index ${x} >= k ${k} with every score tied`;
    return undefined;
  };

  for (const variant of variants) {
    const batch: DeviceDecodeBatch = { ...batch0, variant };
    const vbase = { ...base, variant };
    const guard = (op: string, f: () => void) => {
      try {
        f();
      } catch (e) {
        push({ op, ...vbase, pass: false, why: `threw: ${(e as Error).message}` });
      }
    };

    guard('dense', () => {
      out.fill(0xff);
      denseDecode(batch, out);
      synchronize();
      const e = denseErrors(decode(c.dtype, out.download()));
      push({ op: 'dense', ...vbase, relErr: e.relErr, naiveRelErr: e.naiveRelErr, ...judgeOut(e) });
    });

    guard('pooled', () => {
      const pooled = pooledScores(batch);
      synchronize();
      const got = pooled.download();
      pooled.free();
      let worst = 0;
      const per = c.kvHeads * c.n;
      pooledRef().pooled.forEach((r, b) => {
        worst = Math.max(worst, relErr(got.subarray(b * per, (b + 1) * per), r));
      });
      // Variant bit 1024 pools the f16 intermediate u = exp2(l - m16)
      // (rounding <= 2^-11 per term): its pooled pass is held to 1e-3; the selection below keeps the
      // strict check (the stream select recomputes the keys near the k-th score exactly).
      const tol = variant & 1024 ? 1e-3 : 1e-4;
      push({
        op: 'pooled',
        ...vbase,
        pooledRelErr: worst,
        relErr: worst,
        pass: worst < tol,
        ...(worst < tol ? {} : { why: `pooled relErr ${worst} >= ${tol}` }),
      });
    });

    guard('denseAnchor', () => {
      out.fill(0xff);
      selT.fill(0xff);
      denseAnchorDecode(batch, k, { out, selection });
      synchronize();
      const e = denseErrors(decode(c.dtype, out.download()));
      const idx = selT.download();
      const sel = checkSelection(seqs, pooledRef(), k, idx);
      const tie = sel.pass ? tieRule(variant, idx) : undefined;
      const o = judgeOut(e);
      push({
        op: 'denseAnchor',
        ...vbase,
        k,
        relErr: e.relErr,
        naiveRelErr: e.naiveRelErr,
        rowsChecked: sel.rowsChecked,
        minMassShare: sel.minMassShare,
        worstScoreGap: sel.worstScoreGap,
        pass: o.pass && sel.pass && !tie,
        ...(o.why || sel.why || tie ? { why: [o.why, sel.why, tie].filter(Boolean).join('; ') } : {}),
      });
    });

    const checkAnchor = (op: string) => {
      out.fill(0xff);
      selT.fill(0xff);
      anchorDecode(batch, k, { out, selection });
      synchronize();
      const idx = selT.download();
      const sel = checkSelection(seqs, pooledRef(), k, idx);
      const tie = sel.pass ? tieRule(variant, idx) : undefined;
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
        op,
        ...vbase,
        k,
        relErr: e.relErr,
        naiveRelErr: e.naiveRelErr,
        rowsChecked: sel.rowsChecked,
        minMassShare: sel.minMassShare,
        worstScoreGap: sel.worstScoreGap,
        pass: o.pass && sel.pass && !tie,
        ...(o.pass && sel.pass && !tie
          ? {}
          : { why: ['why' in o ? o.why : undefined, sel.why, tie].filter(Boolean).join('; ') }),
      });
    };
    guard('anchor', () => checkAnchor('anchor'));

    guard('reuse', () => {
      out.fill(0xff);
      reuseDecode(batch, reuseSel, headMap, out);
      synchronize();
      const e = outErrors(
        c,
        seqs,
        decode(c.dtype, out.download()),
        (_s, b) => reuseRef()[b] as Float64Array,
        (_s, b) => reuseNaive()[b] as Float64Array,
      );
      push({ op: 'reuse', ...vbase, k: kr, relErr: e.relErr, naiveRelErr: e.naiveRelErr, ...judgeOut(e) });
    });
  }

  reuseSel.indices.free();
  out.free();
  selT.free();
  batch0.q.free();
  batch0.k.free();
  batch0.v.free();
}

/** Kernel variants to check: `--variants 0,1,4` (KascadeDecodeVariant bits); default 0 only. */
function parseVariants(argv: readonly string[]): number[] {
  const i = argv.indexOf('--variants');
  if (i < 0) return [0];
  const list = (argv[i + 1] ?? '').split(',').map((x) => (x.trim() === '' ? Number.NaN : Number(x)));
  if (list.length === 0 || list.some((v) => !(Number.isInteger(v) && v >= 0 && v <= DECODE_VARIANT_MAX))) {
    throw new Error(
      `--variants takes a comma list of integers in 0..${DECODE_VARIANT_MAX}, got '${argv[i + 1]}'`,
    );
  }
  return list;
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
  // The cluster select (variant bits 256/512): a row longer than its cluster's shared memory holds
  // (slices kept in the workspace), and a query of zeros (every pooled score tied: the tie path).
  // (n > 8 x 40960: the plain plan's slices do not fit; head dim 64 keeps the host reference cheap.)
  const longRow: Case = {
    dtype: 'bf16',
    g: 4,
    kvHeads: 1,
    headDim: 64,
    n: 340000,
    batch: 1,
    capacity: 340000,
    qSpread: 1,
  };
  cases.push(longRow);
  cases.push({ dtype: 'f16', g: 2, kvHeads: 2, headDim: 128, n: 5000, batch: 2, capacity: 5000, qSpread: 0 });
  // Batch 1 with 8 KV heads (the bench's row count at batch 1): variant bit 8192 sizes its clusters by
  // how many rows must fit at once, so this is the cluster size the bench's batch-1 rows run.
  cases.push({
    dtype: 'bf16',
    g: 4,
    kvHeads: 8,
    headDim: 128,
    n: 12000,
    batch: 1,
    capacity: 12000,
    qSpread: 1,
  });
  // The lean schedule (variant bit 128) with more rows than CTAs: a CTA takes whole rows and parts
  // of others (640 rows of 2 tiles for at most 4 x SMs CTAs).
  cases.push({ dtype: 'bf16', g: 1, kvHeads: 8, headDim: 64, n: 65, batch: 80, capacity: 70, qSpread: 1 });
  // --smoke: six small cases only (d 128 g 4, d 64 g 8, n = 1, n = 113, n = 8192 with float4 rows,
  // the long row above under bits 256/512), to screen a variant for hangs or faults in a process of its own before the full check.
  if (process.argv.includes('--smoke')) {
    cases.splice(0, cases.length);
    cases.push({
      dtype: 'bf16',
      g: 4,
      kvHeads: 2,
      headDim: 128,
      n: 4097,
      batch: 2,
      capacity: 4100,
      qSpread: 1,
    });
    cases.push({
      dtype: 'f16',
      g: 8,
      kvHeads: 2,
      headDim: 64,
      n: 1023,
      batch: 1,
      capacity: 1100,
      qSpread: 1,
    });
    cases.push({ dtype: 'bf16', g: 1, kvHeads: 2, headDim: 128, n: 1, batch: 2, capacity: 8, qSpread: 1 });
    cases.push({ dtype: 'f16', g: 2, kvHeads: 2, headDim: 128, n: 113, batch: 2, capacity: 120, qSpread: 1 });
    cases.push({
      dtype: 'bf16',
      g: 4,
      kvHeads: 2,
      headDim: 128,
      n: 8192,
      batch: 2,
      capacity: 8192,
      qSpread: 1,
    });
    // The long row (~5 s of host reference per process) only where the cluster select runs: the
    // screen starts one process per variant at once, beside other jobs' CPU work.
    if (parseVariants(process.argv).some((v) => (v & (256 | 512)) !== 0)) cases.push(longRow);
  }
  const t0 = Date.now();
  const prefillOnly = process.argv.includes('--prefill-only');
  const decodeVariants = parseVariants(process.argv);
  if (!prefillOnly) for (const c of cases) runCase(c, rows, decodeVariants);
  const prefillRows: PrefillRow[] = [];
  if (!process.argv.includes('--no-prefill')) {
    // --prefill-variants=v1,v2: every prefill op under each named kernel preset (PREFILL_KERNEL_PRESETS).
    const va = process.argv.find((a) => a.startsWith('--prefill-variants='));
    const variants = va
      ? va
          .slice('--prefill-variants='.length)
          .split(',')
          .map((name) => ({ name, kernels: prefillKernelPreset(name) }))
      : undefined;
    for (const c of prefillCases(quick, process.argv.includes('--prefill-long')))
      runPrefillCase(c, prefillRows, rand, gauss, variants);
  }
  const failed = [...rows, ...prefillRows].filter((r) => !r.pass);
  // Per variant: its checks and failures; a variant passes only when every decode op passed.
  const byVariant = decodeVariants.map((v) => {
    const mine = rows.filter((r) => r.variant === v);
    return { variant: v, checks: mine.length, failed: mine.filter((r) => !r.pass).length };
  });
  const passingVariants = prefillOnly
    ? []
    : byVariant.filter((x) => x.checks > 0 && x.failed === 0).map((x) => x.variant);
  const summary = {
    device: info,
    seed: seed0,
    command: `node ${process.argv.slice(1).join(' ')}`,
    date: new Date().toISOString(),
    gitCommit: process.env.KASCADE_GIT_COMMIT ?? 'unknown',
    checks: rows.length + prefillRows.length,
    failed: failed.length,
    seconds: (Date.now() - t0) / 1000,
    variants: byVariant,
    passingVariants,
    tolerances: {
      output: 'relErr < 1e-2 and <= 2 x naive same-precision relErr + 1e-4',
      pooled: 'relErr < 1e-4 (variant bit 1024, the f16 intermediate: < 1e-3)',
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
