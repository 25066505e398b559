/**
 * Device parity cases for the CUDA prefill ops (called by scripts/device-check.ts; `--prefill-only` runs just
 * these). Every op against the core CPU reference (float64): bf16 and f16, group sizes 1, 2, 4, 8,
 * head dims 128 and 64, query counts that are not multiples of the tile (T = 32), a chunk that starts
 * after earlier tokens (queryStart > 0), batch > 1, capacity > n, budgets that make the radix select
 * work (kMin below the tile starts) and the default one. Fresh random inputs each run, outputs poisoned
 * with NaN before every launch.
 *
 * Checks
 * - dense and layer-0 outputs against denseCausalPrefillAttention;
 * - pooled scores (the anchor's S[j,t](x)) against pooledPrefillScores, relErr < 1e-4;
 * - Top-k per (sequence, KV head, tile), FlashInfer style: exactly counts[t] distinct indices in
 *   0..s_t-1, -1 after them, every selected reference score >= the reference k-th minus a tolerance,
 *   captured mass >= (1 - 1e-3) x the reference set's, and a guard that rows were checked;
 * - a case of tied pooled scores (`keys: 'ties'`): its selections must be exactly the reference's, ties at the
 *   k-th score lowest index first, and some row must cut ties (the select's in-shared-memory tie ranking and,
 *   past 2048 tied candidates, its third pass and compaction);
 * - the anchor's output against sparsePrefillAttention over the indices the GPU selected;
 * - reuse against sparsePrefillAttention over a random selection (some entries inside the diagonal
 *   tile, which must not count twice) through a random head map.
 * Output tolerance: relErr < 1e-2 and <= 2 x a naive same-precision attention's + 1e-4.
 */
import {
  type BudgetOptions,
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
import {
  type AttentionDType,
  anchorPrefill,
  type DevicePrefillChunk,
  DeviceTensor,
  denseAnchorPrefill,
  densePrefill,
  type PrefillKernelSelection,
  prefillCounts,
  prefillKernels,
  prefillPooledScores,
  prefillSelectionSlot,
  prefillShape,
  reusePrefill,
  setPrefillKernels,
  synchronize,
  uploadPrefillSelection,
} from './index.js';

export interface PrefillCase {
  dtype: AttentionDType;
  g: number;
  kvHeads: number;
  headDim: number;
  queries: number;
  queryStart: number;
  batch: number;
  capacity: number;
  qSpread: number;
  budget: BudgetOptions;
  /**
   * K rows: random (default), or `ties`: every 16th key random and the others one shared row per KV head (0.05 x
   * a random one), so those keys' pooled scores are equal, below most random keys', and the k-th score of most
   * rows is tied.
   */
  keys?: 'ties';
}

export interface PrefillRow {
  op: string;
  /** The kernels that ran, e.g. 'v67: dense v22 sparse v61 pool v67' (see setPrefillKernels). */
  kernels: string;
  dtype: string;
  g: number;
  kvHeads: number;
  headDim: number;
  queries: number;
  queryStart: number;
  batch: number;
  keys?: 'ties';
  kMax?: number;
  relErr?: number;
  naiveRelErr?: number;
  rowsChecked?: number;
  minMassShare?: number;
  worstScoreGap?: number;
  /** `keys: 'ties'`: rows whose k-th score is shared by more keys than were taken. */
  tieRowsCut?: number;
  pass: boolean;
  why?: string;
}

const T = 32;

/**
 * The parity cases. `quick`: 141-query chunks and no long ones, unless `long` adds the long
 * default-budget chunk back (what the device job runs to fit its time limit).
 */
export function prefillCases(quick: boolean, long = false): PrefillCase[] {
  const cases: PrefillCase[] = [];
  for (const dtype of ['bf16', 'f16'] as const) {
    for (const g of [1, 2, 4, 8]) {
      // 333 queries: 11 tiles, the last one partial; kMin 32 makes tiles from s = 64 on select.
      cases.push({
        dtype,
        g,
        kvHeads: 2,
        headDim: 128,
        queries: quick ? 141 : 333,
        queryStart: 0,
        batch: 1,
        capacity: (quick ? 141 : 333) + 5,
        qSpread: 1,
        budget: { kMin: 32 },
      });
    }
  }
  // A later chunk (queryStart 96), batch 2, capacity > n.
  cases.push({
    dtype: 'bf16',
    g: 4,
    kvHeads: 2,
    headDim: 128,
    queries: 201,
    queryStart: 96,
    batch: 2,
    capacity: 310,
    qSpread: 1,
    budget: { kMin: 16, percent: 20 },
  });
  // Head dim 64, f16, g 8.
  cases.push({
    dtype: 'f16',
    g: 8,
    kvHeads: 1,
    headDim: 64,
    queries: 250,
    queryStart: 0,
    batch: 1,
    capacity: 250,
    qSpread: 1,
    budget: { kMin: 24 },
  });
  if (!quick || long) {
    // Default budget (kMin 128) over a longer chunk.
    cases.push({
      dtype: 'bf16',
      g: 4,
      kvHeads: 2,
      headDim: 128,
      queries: 1553,
      queryStart: 0,
      batch: 1,
      capacity: 1553,
      qSpread: 1,
      budget: {},
    });
  }
  if (!quick || long) {
    // Tied pooled scores (default budget): from s = 2208 on more than 2048 keys share the k-th score.
    cases.push({
      dtype: 'bf16',
      g: 4,
      kvHeads: 1,
      headDim: 128,
      queries: 2400,
      queryStart: 0,
      batch: 1,
      capacity: 2400,
      qSpread: 1,
      budget: {},
      keys: 'ties',
    });
  }
  if (!quick) {
    // A peaky query (skewed pooled scores) in a later chunk.
    cases.push({
      dtype: 'bf16',
      g: 2,
      kvHeads: 2,
      headDim: 128,
      queries: 700,
      queryStart: 320,
      batch: 1,
      capacity: 1020,
      qSpread: 3,
      budget: { kMin: 64 },
    });
  }
  return cases;
}

/** A kernel selection to check, and its name (a preset's, or 'current'). */
export interface NamedPrefillKernels {
  readonly name: string;
  readonly kernels: PrefillKernelSelection;
}

/** The kernels label rows carry: `name: dense X sparse Y pool Z`. */
export function kernelsLabel(v: NamedPrefillKernels): string {
  return `${v.name}: dense ${v.kernels.dense} sparse ${v.kernels.sparse} pool ${v.kernels.pool}`;
}

/**
 * One case: inputs and references built once, then every op run and checked under each kernel
 * selection in `variants` (default: the current one); the selection in force before is restored.
 */
export function runPrefillCase(
  c: PrefillCase,
  rows: PrefillRow[],
  rand: () => number,
  gauss: () => number,
  variants: readonly NamedPrefillKernels[] = [{ name: 'current', kernels: prefillKernels() }],
): void {
  const encode = (x: ArrayLike<number>) => (c.dtype === 'bf16' ? toBf16(x) : toF16(x));
  const decode = (b: Uint16Array) => (c.dtype === 'bf16' ? fromBf16(b) : fromF16(b));
  const heads = c.g * c.kvHeads;
  const d = c.headDim;
  const n = c.queryStart + c.queries;
  const qn = c.batch * heads * c.queries * d;
  const kvn = c.batch * c.kvHeads * c.capacity * d;
  const q = new Float32Array(qn);
  for (let i = 0; i < qn; i++) q[i] = gauss() * c.qSpread;
  const k = new Float32Array(kvn);
  const v = new Float32Array(kvn);
  for (let i = 0; i < kvn; i++) {
    k[i] = gauss();
    v[i] = gauss();
  }
  if (c.keys === 'ties')
    for (let r = 0; r < c.batch * c.kvHeads; r++) {
      const shared = k.slice(r * c.capacity * d, (r * c.capacity + 1) * d).map((x) => 0.05 * x);
      for (let x = 0; x < c.capacity; x++) if (x % 16 !== 0) k.set(shared, (r * c.capacity + x) * d);
    }
  const qb = encode(q);
  const kb = encode(k);
  const vb = encode(v);
  const qr = decode(qb);
  const kr = decode(kb);
  const vr = decode(vb);
  const perQ = heads * c.queries * d;
  const perKv = c.kvHeads * c.capacity * d;
  const seqs: PrefillInputs[] = [];
  for (let b = 0; b < c.batch; b++) {
    seqs.push({
      heads,
      kvHeads: c.kvHeads,
      headDim: d,
      n,
      capacity: c.capacity,
      queries: c.queries,
      queryStart: c.queryStart,
      tileSize: T,
      q: qr.subarray(b * perQ, (b + 1) * perQ),
      k: kr.subarray(b * perKv, (b + 1) * perKv),
      v: vr.subarray(b * perKv, (b + 1) * perKv),
    });
  }
  const chunk: DevicePrefillChunk = {
    q: DeviceTensor.fromHost(c.dtype, [c.batch, heads, c.queries, d], qb),
    k: DeviceTensor.fromHost(c.dtype, [c.batch, c.kvHeads, c.capacity, d], kb),
    v: DeviceTensor.fromHost(c.dtype, [c.batch, c.kvHeads, c.capacity, d], vb),
    queryStart: c.queryStart,
  };
  const shape = prefillShape(chunk);
  const { counts, kMax } = prefillCounts(shape, c.budget);
  const tiles = counts.length;
  let base = {
    kernels: kernelsLabel({ name: 'current', kernels: prefillKernels() }),
    dtype: c.dtype,
    g: c.g,
    kvHeads: c.kvHeads,
    headDim: d,
    queries: c.queries,
    queryStart: c.queryStart,
    batch: c.batch,
    ...(c.keys ? { keys: c.keys } : {}),
  };
  const push = (r: PrefillRow) => {
    rows.push(r);
    console.log(
      `${r.pass ? 'ok  ' : 'FAIL'} prefill ${r.op.padEnd(12)} [${r.kernels}] ${c.dtype} g${c.g} G${c.kvHeads} d${d} q${c.queries}` +
        `@${c.queryStart} b${c.batch}${c.keys ? ` ${c.keys}` : ''}${r.kMax ? ` kMax${r.kMax}` : ''} err ${r.relErr?.toExponential(2) ?? '-'}` +
        ` naive ${r.naiveRelErr?.toExponential(2) ?? '-'}` +
        `${r.minMassShare !== undefined ? ` mass ${r.minMassShare.toFixed(6)}` : ''}` +
        `${r.tieRowsCut !== undefined ? ` tie-cut rows ${r.tieRowsCut}` : ''}${r.why ? `  ${r.why}` : ''}`,
    );
  };
  const guard = (op: string, f: () => void) => {
    try {
      f();
    } catch (e) {
      push({ op, ...base, pass: false, why: `threw: ${(e as Error).message}` });
    }
  };
  const round = (x: number) => decode(encode([x]))[0] as number;
  /** Naive same-precision attention: float64 logits, probabilities and output rounded to the dtype. */
  const naive = (s: PrefillInputs, keys: (h: number, i: number) => number[]): Float64Array => {
    const out = new Float64Array(heads * c.queries * d);
    const scale = 1 / Math.sqrt(d);
    for (let h = 0; h < heads; h++) {
      const j = Math.floor(h / c.g);
      for (let i = 0; i < c.queries; i++) {
        const ks = keys(h, i);
        const sc = new Float64Array(ks.length);
        let m = Number.NEGATIVE_INFINITY;
        const qo = (h * c.queries + i) * d;
        for (let a = 0; a < ks.length; a++) {
          const ko = (j * c.capacity + (ks[a] as number)) * d;
          let dot = 0;
          for (let e = 0; e < d; e++) dot += (s.q[qo + e] as number) * (s.k[ko + e] as number);
          sc[a] = dot * scale;
          m = Math.max(m, sc[a] as number);
        }
        let l = 0;
        for (let a = 0; a < ks.length; a++) {
          sc[a] = Math.exp((sc[a] as number) - m);
          l += sc[a] as number;
        }
        for (let a = 0; a < ks.length; a++) {
          const p = round((sc[a] as number) / l);
          const vo = (j * c.capacity + (ks[a] as number)) * d;
          for (let e = 0; e < d; e++) out[qo + e] = (out[qo + e] as number) + p * (s.v[vo + e] as number);
        }
        for (let e = 0; e < d; e++) out[qo + e] = round(out[qo + e] as number);
      }
    }
    return out;
  };
  const causalKeys = (_h: number, i: number) => Array.from({ length: c.queryStart + i + 1 }, (_, x) => x);
  /** Keys a (h, i) row attends under a selection: its tile's entries before s_t, then the causal diagonal. */
  const sparseKeys = (sel: PrefillSelection, map: ArrayLike<number>) => (h: number, i: number) => {
    const t = Math.floor(i / T);
    const s = c.queryStart + t * T;
    const row = ((map[Math.floor(h / c.g)] as number) * tiles + t) * sel.kMax;
    const ks: number[] = [];
    for (let a = 0; a < (sel.counts[t] as number); a++) {
      const x = sel.indices[row + a] as number;
      if (x < s) ks.push(x);
    }
    for (let x = s; x <= c.queryStart + i; x++) ks.push(x);
    return ks;
  };
  const relErr = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let num = 0;
    let den = 0;
    for (let i = 0; i < b.length; i++) {
      const e = (a[i] as number) - (b[i] as number);
      num += e * e;
      den += (b[i] as number) ** 2;
    }
    return Number.isNaN(num) ? Number.POSITIVE_INFINITY : Math.sqrt(num / Math.max(den, 1e-300));
  };
  const judge = (
    got: Float32Array,
    ref: (s: PrefillInputs, b: number) => Float64Array,
    nv: (s: PrefillInputs, b: number) => Float64Array,
  ) => {
    let worst = 0;
    let worstNaive = 0;
    let nan = false;
    seqs.forEach((s, b) => {
      const o = got.subarray(b * perQ, (b + 1) * perQ);
      if (o.some((x) => Number.isNaN(x))) nan = true;
      const r = ref(s, b);
      worst = Math.max(worst, relErr(o, r));
      worstNaive = Math.max(worstNaive, relErr(nv(s, b), r));
    });
    let why: string | undefined;
    if (nan) why = 'NaN in output (unwritten or bad)';
    else if (!(worst < 1e-2)) why = `relErr ${worst} >= 1e-2`;
    else if (!(worst <= 2 * worstNaive + 1e-4)) why = `relErr ${worst} > 2 x naive ${worstNaive} + 1e-4`;
    return { relErr: worst, naiveRelErr: worstNaive, pass: why === undefined, ...(why ? { why } : {}) };
  };
  const refPooled = seqs.map((s) => pooledPrefillScores(s).scores);
  /** The GPU's selection of sequence b as a core PrefillSelection. */
  const hostSel = (idx: Int32Array, b: number, rowsPer: number): PrefillSelection => ({
    kvHeads: rowsPer,
    tiles,
    tileSize: T,
    kMax,
    counts,
    indices: idx.slice(b * rowsPer * tiles * kMax, (b + 1) * rowsPer * tiles * kMax),
  });
  interface TopkResult {
    pass: boolean;
    why?: string;
    rowsChecked: number;
    minMassShare: number;
    worstScoreGap: number;
    tieRowsCut?: number;
  }
  const checkTopk = (idx: Int32Array): TopkResult => {
    let rowsChecked = 0;
    let minMassShare = 1;
    let worstScoreGap = 0;
    let tieRowsCut = 0;
    const fail = (why: string): TopkResult => ({
      pass: false,
      why,
      rowsChecked,
      minMassShare,
      worstScoreGap,
    });
    for (let b = 0; b < c.batch; b++) {
      for (let j = 0; j < c.kvHeads; j++) {
        for (let t = 0; t < tiles; t++) {
          const s = c.queryStart + t * T;
          const kt = counts[t] as number;
          const off = ((b * c.kvHeads + j) * tiles + t) * kMax;
          const sel = idx.subarray(off, off + kMax);
          for (let a = kt; a < kMax; a++)
            if (sel[a] !== -1) return fail(`entry ${a} after counts[${t}] = ${kt} is ${sel[a]}, not -1`);
          const scores = (refPooled[b] as Float64Array).subarray(
            (j * tiles + t) * n,
            (j * tiles + t + 1) * n,
          );
          const seen = new Set<number>();
          for (let a = 0; a < kt; a++) {
            const x = sel[a] as number;
            if (!(x >= 0 && x < s)) return fail(`index ${x} outside 0..${s - 1} (b ${b}, j ${j}, t ${t})`);
            if (seen.has(x)) return fail(`duplicate index ${x} (b ${b}, j ${j}, t ${t})`);
            seen.add(x);
          }
          if (kt === 0) {
            rowsChecked++;
            continue;
          }
          const refSet = topkIndices(scores, kt, s);
          let kth = Number.POSITIVE_INFINITY;
          let refMass = 0;
          for (const x of refSet) {
            kth = Math.min(kth, scores[x] as number);
            refMass += scores[x] as number;
          }
          let rowMax = 0;
          for (let x = 0; x < s; x++) rowMax = Math.max(rowMax, scores[x] as number);
          const tol = 1e-4 * kth + 1e-7 * rowMax;
          let mass = 0;
          for (let a = 0; a < kt; a++) {
            const sc = scores[sel[a] as number] as number;
            mass += sc;
            worstScoreGap = Math.max(worstScoreGap, (kth - sc) / Math.max(kth, 1e-300));
            if (sc < kth - tol)
              return fail(
                `selected score ${sc} below k-th ${kth} - tol (b ${b}, j ${j}, t ${t}, x ${sel[a]})`,
              );
          }
          const share = refMass > 0 ? mass / refMass : 1;
          minMassShare = Math.min(minMassShare, share);
          if (share < 1 - 1e-3)
            return fail(`captured mass share ${share} < 1 - 1e-3 (b ${b}, j ${j}, t ${t})`);
          if (c.keys === 'ties') {
            let tied = 0;
            for (let x = 0; x < s; x++) if (scores[x] === kth) tied++;
            let takenAtKth = 0;
            for (const x of refSet) if (scores[x] === kth) takenAtKth++;
            if (tied > takenAtKth) tieRowsCut++;
            const want = new Set(refSet);
            for (let a = 0; a < kt; a++)
              if (!want.has(sel[a] as number))
                return fail(
                  `key ${sel[a]} (score ${scores[sel[a] as number]}) is not in the reference's set, ties at the ` +
                    `k-th ${kth} lowest index first (${tied} tied, ${takenAtKth} taken; b ${b}, j ${j}, t ${t})`,
                );
          }
          rowsChecked++;
        }
      }
    }
    if (rowsChecked !== c.batch * c.kvHeads * tiles || rowsChecked === 0)
      return fail(`checked ${rowsChecked} rows`);
    if (c.keys === 'ties' && tieRowsCut === 0) return fail('no row cut ties at its k-th score');
    return {
      pass: true,
      rowsChecked,
      minMassShare,
      worstScoreGap,
      ...(c.keys === 'ties' ? { tieRowsCut } : {}),
    };
  };
  /** Per-sequence results computed once for every variant. */
  const memo = (f: (s: PrefillInputs, b: number) => Float64Array) => {
    const cache = new Map<number, Float64Array>();
    return (s: PrefillInputs, b: number): Float64Array => {
      let r = cache.get(b);
      if (!r) {
        r = f(s, b);
        cache.set(b, r);
      }
      return r;
    };
  };
  const denseRef = memo((s) => denseCausalPrefillAttention(s));
  const denseNaive = memo((s) => naive(s, causalKeys));
  const identity = Array.from({ length: c.kvHeads }, (_, j) => j);
  const out = DeviceTensor.empty(c.dtype, [c.batch, heads, c.queries, d]);
  const slot = prefillSelectionSlot(shape, c.budget);

  // The reuse op's random selection and head map, the same for every variant.
  const reuseIdx = new Int32Array(c.batch * c.kvHeads * tiles * kMax).fill(-1);
  for (let r = 0; r < c.batch * c.kvHeads; r++) {
    for (let t = 0; t < tiles; t++) {
      // Random distinct keys per (row, tile) from 0 .. min(n, s_t + T) - 1: some fall in the diagonal
      // tile (covered there, never twice) or after it (masked).
      const s = c.queryStart + t * T;
      const pool = Math.min(n, s + T);
      const kt = counts[t] as number;
      const perm = Int32Array.from({ length: pool }, (_, i) => i);
      for (let i = 0; i < kt; i++) {
        const jx = i + Math.floor(rand() * (pool - i));
        const tmp = perm[i] as number;
        perm[i] = perm[jx] as number;
        perm[jx] = tmp;
      }
      reuseIdx.set(perm.subarray(0, kt), (r * tiles + t) * kMax);
    }
  }
  const reuseMap = Array.from({ length: c.kvHeads }, () => Math.floor(rand() * c.kvHeads));
  const reuseRef = memo((s, b) => sparsePrefillAttention(s, hostSel(reuseIdx, b, c.kvHeads), reuseMap));
  const reuseNaive = memo((s, b) => naive(s, sparseKeys(hostSel(reuseIdx, b, c.kvHeads), reuseMap)));

  const before = prefillKernels();
  for (const variant of variants) {
    setPrefillKernels(variant.kernels);
    base = { ...base, kernels: kernelsLabel(variant) };
    guard('dense', () => {
      out.fill(0xff);
      densePrefill(chunk, out);
      synchronize();
      push({
        op: 'dense',
        ...base,
        ...judge(decode(out.download()), denseRef, denseNaive),
      });
    });

    guard('pooled', () => {
      const pooled = prefillPooledScores(chunk);
      synchronize();
      const got = pooled.download();
      pooled.free();
      const per = c.kvHeads * tiles * n;
      let worst = 0;
      seqs.forEach((_s, b) => {
        worst = Math.max(worst, relErr(got.subarray(b * per, (b + 1) * per), refPooled[b] as Float64Array));
      });
      push({
        op: 'pooled',
        ...base,
        relErr: worst,
        pass: worst < 1e-4,
        ...(worst < 1e-4 ? {} : { why: `pooled relErr ${worst}` }),
      });
    });

    guard('denseAnchor', () => {
      out.fill(0xff);
      slot.indices.fill(0x7f);
      denseAnchorPrefill(chunk, c.budget, { out, selection: slot });
      synchronize();
      const o = judge(decode(out.download()), denseRef, denseNaive);
      const sel = checkTopk(slot.indices.download());
      push({
        op: 'denseAnchor',
        ...base,
        kMax,
        relErr: o.relErr,
        naiveRelErr: o.naiveRelErr,
        rowsChecked: sel.rowsChecked,
        minMassShare: sel.minMassShare,
        worstScoreGap: sel.worstScoreGap,
        ...(sel.tieRowsCut !== undefined ? { tieRowsCut: sel.tieRowsCut } : {}),
        pass: o.pass && sel.pass,
        ...(o.why || sel.why ? { why: [o.why, sel.why].filter(Boolean).join('; ') } : {}),
      });
    });

    guard('anchor', () => {
      out.fill(0xff);
      slot.indices.fill(0x7f);
      anchorPrefill(chunk, c.budget, { out, selection: slot });
      synchronize();
      const idx = slot.indices.download();
      const sel = checkTopk(idx);
      const o = sel.pass
        ? judge(
            decode(out.download()),
            (s, b) => sparsePrefillAttention(s, hostSel(idx, b, c.kvHeads)),
            (s, b) => naive(s, sparseKeys(hostSel(idx, b, c.kvHeads), identity)),
          )
        : { relErr: Number.NaN, naiveRelErr: Number.NaN, pass: false, why: undefined };
      push({
        op: 'anchor',
        ...base,
        kMax,
        relErr: o.relErr,
        naiveRelErr: o.naiveRelErr,
        rowsChecked: sel.rowsChecked,
        minMassShare: sel.minMassShare,
        worstScoreGap: sel.worstScoreGap,
        ...(sel.tieRowsCut !== undefined ? { tieRowsCut: sel.tieRowsCut } : {}),
        pass: o.pass && sel.pass,
        ...(o.why || sel.why ? { why: [o.why, sel.why].filter(Boolean).join('; ') } : {}),
      });
    });

    guard('reuse', () => {
      const sel = uploadPrefillSelection(
        { kvHeads: c.kvHeads, tiles, tileSize: T, kMax, counts, indices: reuseIdx },
        { batch: c.batch, queryStart: c.queryStart, n },
      );
      out.fill(0xff);
      reusePrefill(chunk, sel, reuseMap, out);
      synchronize();
      const o = judge(decode(out.download()), reuseRef, reuseNaive);
      sel.indices.free();
      sel.countsDevice.free();
      push({ op: 'reuse', ...base, kMax, ...o });
    });
  }
  setPrefillKernels(before);

  out.free();
  slot.indices.free();
  slot.countsDevice.free();
  chunk.q.free();
  chunk.k.free();
  chunk.v.free();
}
