/**
 * Where the batch-1 decode time goes (issue 4, session 4): per op and variant, the same call timed
 * four ways on the H200, so the host's launch path and the GPU's own time can be told apart.
 *
 * - `event`: CUDA events around each call, medians (the `cuda-decode` bench's method);
 * - `b2b`: events around 27 back-to-back calls, per call (the host queues ahead if it is faster
 *   than the GPU, so this is the GPU time when the host keeps up);
 * - `graph`: the 27 calls captured as one CUDA graph and replayed, per call (no host launch path);
 * - `host`: wall-clock microseconds the host spends issuing one call (27 calls, no sync inside);
 * - `rot`: like `b2b` but the 27 calls cycle over 4 different layers' K/V caches (a real model
 *   never re-reads the same cache at once; the bench's repeated calls may hit L2).
 * Plus the event pair alone (`empty`) and the JS-side argument checks alone (`decodeShape`).
 *
 * Usage: node dist-device/b1-probe.mjs out.json. Env: B1_SHAPES (default 1x8192,1x32768,1x131072),
 * B1_REUSE_VARIANTS, B1_DENSE_VARIANTS, B1_ANCHOR_VARIANTS (anchor and layer 0; comma lists), B1_SWEEP (forced
 * splits), B1_NCU=1 (only a few reuse calls, for ncu; with
 * B1_NCU_ANCHOR=1 the anchor's calls too, with B1_NCU_LAYER0=1 layer 0's), B1_ANCHOR_KNOBS (NAME=VALUE tuning knobs the anchors are timed
 * with as well; default KASCADE_B1_SELECT_L2=1,KASCADE_SPARSE_LOGITS=0; session 10: B1_KNOB_VARIANTS limits them to these
 * anchor variants, B1_KNOB_OPS to these ops, default anchor,layer0; session 11: an entry may join several knobs by '+'),
 * B1_REUSE_KNOBS (session 10: NAME=VALUE tuning knobs
 * the reuse variants are timed with as well, rows `reuse-<knob>-<value>`, each cross-checked against 124 first).
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { bf16BitsToF32, topkBudget } from '@kascade/core';
import {
  anchorDecode,
  captureGraph,
  DeviceTensor,
  decodeShape,
  denseAnchorDecode,
  denseDecode,
  deviceInfo,
  fillNormal,
  reuseDecode,
  synchronize,
  timeDevice,
  uploadSelection,
} from '../src/index.js';
import { requireNative } from '../src/tensor.js';

const H = 32;
const G = 8;
const D = 128;
const CALLS = 27;
const list = (s: string) =>
  s
    .split(',')
    .filter((x) => x !== '')
    .map(Number);
const shapes = (process.env.B1_SHAPES ?? '1x8192,1x32768,1x131072')
  .split(',')
  .map((s) => list(s.replace('x', ',')));
const reuseVariants = list(process.env.B1_REUSE_VARIANTS ?? '60,124,252');
const denseVariants = list(process.env.B1_DENSE_VARIANTS ?? '764');
const anchorVariants = (process.env.B1_ANCHOR_VARIANTS ?? '188,32956,131260,164028')
  .split(',')
  .filter((v) => v !== '')
  .map(Number);
const ncuOnly = process.env.B1_NCU === '1';
const out = process.argv[2] ?? 'b1-probe.json';

function median(xs: ArrayLike<number>): number {
  const a = Array.from(xs).sort((x, y) => x - y);
  return a.length ? (a[a.length >> 1] as number) : Number.NaN;
}
const r2 = (x: number) => Math.round(x * 100) / 100;

interface ProbeRow {
  op: string;
  n: number;
  batch: number;
  variant: number;
  eventUs: number;
  b2bUs: number;
  graphUs: number;
  hostUs: number;
  rotUs?: number;
}
const rows: ProbeRow[] = [];
const extra: Record<string, number> = {};
const errors: string[] = [];
/** Writes what is measured so far (a job cut by its time limit still leaves its rows). */
function save(): void {
  if (ncuOnly) return;
  writeFileSync(out, `${JSON.stringify(toResults(), null, 1)}\n`);
}

const METHODS = ['event', 'b2b', 'graph', 'host', 'rot'] as const;
/**
 * The probe in the results shape of every bench (shared/RESULTS.md): one row per op, variant,
 * context and timing method (`<op>-<method>`, e.g. `reuse-graph`), medians in microseconds.
 */
function toResults(): Record<string, unknown> {
  const info = deviceInfo();
  const resultRows: Record<string, unknown>[] = [];
  for (const r of rows)
    for (const m of METHODS) {
      const us = r[`${m}Us` as `${(typeof METHODS)[number]}Us`];
      if (us === undefined || !Number.isFinite(us)) continue;
      const [op, splits] = r.op.split('-splits-');
      resultRows.push({
        kernel: `${op}-${m}`,
        context: r.n,
        batch: r.batch,
        variant: r.variant,
        ...(splits === undefined ? {} : { splits: Number(splits) }),
        medianUs: us,
      });
    }
  return {
    bench: 'cuda-b1-probe',
    command: process.env.B1_COMMAND ?? `node packages/cuda/dist-device/b1-probe.mjs ${out}`,
    date: new Date().toISOString(),
    gitCommit: process.env.KASCADE_GIT_COMMIT ?? 'unknown',
    machine: {
      gpu: info.name,
      cuda: `${Math.floor(info.runtimeVersion / 1000)}.${(info.runtimeVersion % 1000) / 10}`,
      driver: `CUDA driver API ${Math.floor(info.driverVersion / 1000)}.${(info.driverVersion % 1000) / 10}`,
      node: process.version,
      cpu: os.cpus()[0]?.model.trim() || 'unknown',
      cores: Math.max(1, os.availableParallelism?.() ?? os.cpus().length),
    },
    config: {
      dtype: 'bf16',
      heads: H,
      kvHeads: G,
      headDim: D,
      topkPercent: 10,
      selection: 'random distinct keys per row, made on the host (uploadSelection)',
      methods:
        'event: CUDA events around each call, median of 50 after 10 warm-up (the cuda-decode bench method); b2b: events around 27 back-to-back calls / 27, median of 10; graph: the 27 calls as one CUDA graph / 27, median of 10; host: wall-clock microseconds the host spends issuing one call (27 calls, no sync inside), median of 10; rot: like b2b, the calls cycling over 4 layers of K/V (no L2 reuse between consecutive calls)',
      warmupGpuMs: 'about 2000 dense calls before the first shape',
    },
    rows: resultRows,
    summary: extra,
    errors,
  };
}

/** Events around `calls` back-to-back calls, per call, median of `reps`. */
function perCall(fn: () => void, calls: number, reps: number): number {
  const native = requireNative();
  fn();
  synchronize();
  const us: number[] = [];
  for (let r = 0; r < reps; r++) {
    const a = new native.Event();
    const b = new native.Event();
    a.record();
    for (let i = 0; i < calls; i++) fn();
    b.record();
    us.push((native.elapsedMs(a as never, b as never) * 1000) / calls);
  }
  synchronize();
  return median(us);
}
/** Host microseconds to issue one call (calls queued, one sync per batch), median of `reps`. */
function hostCost(fn: () => void, calls: number, reps: number): number {
  const us: number[] = [];
  for (let r = 0; r < reps; r++) {
    synchronize();
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) fn();
    us.push(((performance.now() - t0) * 1000) / calls);
  }
  synchronize();
  return median(us);
}

for (const [batch, n] of shapes as [number, number][]) {
  const layers = ncuOnly ? 1 : 4;
  const kv = Array.from({ length: layers }, (_, l) => {
    const k = DeviceTensor.empty('bf16', [batch, G, n, D]);
    const v = DeviceTensor.empty('bf16', [batch, G, n, D]);
    fillNormal(k, 11 + l * 7 + n);
    fillNormal(v, 12 + l * 7 + n);
    return { k, v };
  });
  const q = DeviceTensor.empty('bf16', [batch, H, D]);
  fillNormal(q, 5 + n);
  const kk = topkBudget(n, { percent: 10 });
  const o = DeviceTensor.empty('bf16', [batch, H, D]);
  // A random selection (distinct keys per row, like a Top-k's), made on the host so that no other
  // attention kernel runs before the reuse calls (ncu counts kernels by name).
  const idx = new Int32Array(batch * G * kk);
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  let seed = 12345 + n;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  for (let r = 0; r < batch * G; r++) {
    for (let i = 0; i < kk; i++) {
      const j = i + Math.floor(rand() * (n - i));
      const t = perm[i] as number;
      perm[i] = perm[j] as number;
      perm[j] = t;
    }
    idx.set(perm.subarray(0, kk), r * kk);
  }
  const sel = uploadSelection(idx, { batch, kvHeads: G, k: kk, n });
  const selA = uploadSelection(idx, { batch, kvHeads: G, k: kk, n }); // the anchors' output slot
  const base = { q, k: kv[0]?.k as DeviceTensor<'bf16'>, v: kv[0]?.v as DeviceTensor<'bf16'>, n };
  const headMap = Array.from({ length: G }, (_, j) => (j * 3 + 1) % G);
  synchronize();
  if (ncuOnly) {
    for (const variant of reuseVariants) {
      for (let r = 0; r < 2; r++) reuseDecode({ ...base, variant }, sel, headMap, o);
      synchronize();
    }
    // B1_NCU_ANCHOR=1: the anchor's kernels too (scores pass, select, sparse pass), twice per variant.
    if (process.env.B1_NCU_ANCHOR === '1')
      for (const variant of anchorVariants) {
        for (let r = 0; r < 2; r++) anchorDecode({ ...base, variant }, kk, { out: o, selection: selA });
        synchronize();
      }
    // B1_NCU_LAYER0=1 (session 9): layer 0's kernels (the dense pass with the logits, the select), twice per variant.
    if (process.env.B1_NCU_LAYER0 === '1')
      for (const variant of anchorVariants) {
        for (let r = 0; r < 2; r++) denseAnchorDecode({ ...base, variant }, kk, { out: o, selection: selA });
        synchronize();
      }
  } else {
    // ~300 ms of GPU work first (clocks), as the bench does.
    for (let i = 0; i < 2000; i++) denseDecode({ ...base, variant: denseVariants[0] }, o);
    synchronize();
    const ops: [string, number, (l: number) => () => void][] = [
      ...denseVariants.map(
        (variant) =>
          ['dense', variant, (l: number) => () => denseDecode({ ...base, ...kv[l], variant }, o)] as [
            string,
            number,
            (l: number) => () => void,
          ],
      ),
      ...reuseVariants.map(
        (variant) =>
          [
            'reuse',
            variant,
            (l: number) => () => reuseDecode({ ...base, ...kv[l], variant }, sel, headMap, o),
          ] as [string, number, (l: number) => () => void],
      ),
      ...anchorVariants.flatMap((variant) => [
        [
          'anchor',
          variant,
          (l: number) => () => anchorDecode({ ...base, ...kv[l], variant }, kk, { out: o, selection: selA }),
        ] as [string, number, (l: number) => () => void],
        [
          'layer0',
          variant,
          (l: number) => () =>
            denseAnchorDecode({ ...base, ...kv[l], variant }, kk, { out: o, selection: selA }),
        ] as [string, number, (l: number) => () => void],
      ]),
    ];
    // Cross-check (an early alarm; the device check is the parity): each reuse variant's output,
    // NaN-poisoned before its call, against variant 124's, as ||out - ref|| / ||ref||.
    const reuseOut = (variant: number): Float64Array => {
      o.fill(0xff);
      reuseDecode({ ...base, variant }, sel, headMap, o);
      return Float64Array.from(o.download(), (b) => bf16BitsToF32(b));
    };
    const ref124 = reuseOut(124);
    for (const variant of reuseVariants) {
      try {
        const got = reuseOut(variant);
        let num = 0;
        let den = 0;
        for (let i = 0; i < got.length; i++) {
          const d = (got[i] as number) - (ref124[i] as number);
          num += d * d;
          den += (ref124[i] as number) ** 2;
        }
        const rel = Math.sqrt(num / den);
        extra[`crossRelErrVs124_v${variant}_${Math.round(n / 1024)}k_b${batch}`] = Number.isNaN(rel)
          ? -1
          : rel;
        if (!(rel < 1e-2)) errors.push(`cross-check v${variant} n ${n}: rel err ${rel} against v124`);
      } catch (e) {
        errors.push(`cross-check v${variant} n ${n}: ${String(e).slice(0, 300)}`);
      }
    }
    const timeOps = (list: [string, number, (l: number) => () => void][]): void => {
      for (const [op, variant, make] of list) {
        // One failure (a refused graph capture, a fault) is recorded and the next goes on.
        try {
          const fn = make(0);
          const eventUs = median(timeDevice(fn, 10, 50));
          const b2bUs = perCall(fn, CALLS, 10);
          const hostUs = hostCost(fn, CALLS, 10);
          let i = 0;
          const fns = kv.map((_, l) => make(l));
          const rotUs = perCall(() => (fns[i++ % fns.length] as () => void)(), CALLS, 10);
          let graphUs = Number.NaN;
          try {
            const g = captureGraph(() => {
              for (let c = 0; c < CALLS; c++) fn();
            });
            graphUs = perCall(() => g.launch(), 1, 10) / CALLS;
          } catch (e) {
            console.log(`graph ${op} v${variant} n ${n}: ${String(e).slice(0, 200)}`);
          }
          const row = {
            op,
            n,
            batch,
            variant,
            eventUs: r2(eventUs),
            b2bUs: r2(b2bUs),
            graphUs: r2(graphUs),
            hostUs: r2(hostUs),
            rotUs: r2(rotUs),
          };
          rows.push(row);
          console.log(JSON.stringify(row));
        } catch (e) {
          console.log(`FAILED ${op} v${variant} n ${n}: ${String(e).slice(0, 300)}`);
          errors.push(`${op} v${variant} n ${n}: ${String(e).slice(0, 300)}`);
        }
        save();
      }
    };
    // Dense and reuse first; the anchors (a hang there must not cost the rest) last, after their cross-check.
    timeOps(ops.filter(([op]) => op === 'dense' || op === 'reuse'));
    // Grid sweeps (forced `splits`).
    {
      const sweep = (process.env.B1_SWEEP ?? '').split(',').filter((x) => x !== '');
      for (const item of sweep) {
        const [variant, ...counts] = item.split(':').map(Number) as [number, ...number[]];
        for (const splits of counts) {
          try {
            const fn = () => reuseDecode({ ...base, variant, splits }, sel, headMap, o);
            const row = {
              op: `reuse-splits-${splits}`,
              n,
              batch,
              variant,
              eventUs: r2(median(timeDevice(fn, 10, 50))),
              b2bUs: r2(perCall(fn, CALLS, 10)),
              graphUs: Number.NaN,
              hostUs: Number.NaN,
            };
            rows.push(row);
            console.log(JSON.stringify(row));
          } catch (e) {
            errors.push(`sweep v${variant} splits ${splits}: ${String(e).slice(0, 300)}`);
          }
        }
      }
      save();
    }
    save();
    // Anchors' cross-check against variant 188 (an early alarm): the share of each row's selected keys
    // the two selections have in common (random data: ties are rare, so ~1), and the output's error.
    const run = (variant: number, layer0: boolean): [Int32Array, Float64Array] => {
      o.fill(0xff);
      selA.indices.fill(0xff);
      if (layer0) denseAnchorDecode({ ...base, variant }, kk, { out: o, selection: selA });
      else anchorDecode({ ...base, variant }, kk, { out: o, selection: selA });
      return [selA.indices.download(), Float64Array.from(o.download(), (b) => bf16BitsToF32(b))];
    };
    const crossCheck = (variants: number[], suffix: string): void => {
      for (const layer0 of [false, true]) {
        const op = layer0 ? 'layer0' : 'anchor';
        const [refIdx, refOut] = run(188, layer0);
        for (const variant of variants) {
          try {
            const [idx, out] = run(variant, layer0);
            let common = 0;
            for (let r = 0; r < batch * G; r++) {
              const want = new Set(refIdx.subarray(r * kk, (r + 1) * kk));
              for (const x of idx.subarray(r * kk, (r + 1) * kk)) if (want.has(x)) common++;
            }
            let num = 0;
            let den = 0;
            for (let i = 0; i < out.length; i++) {
              num += ((out[i] as number) - (refOut[i] as number)) ** 2;
              den += (refOut[i] as number) ** 2;
            }
            const tag = `v${variant}${suffix}_${Math.round(n / 1024)}k_b${batch}`;
            extra[`${op}SelectionOverlapVs188_${tag}`] = common / (batch * G * kk);
            const rel = Math.sqrt(num / den);
            extra[`${op}CrossRelErrVs188_${tag}`] = Number.isNaN(rel) ? -1 : rel;
            if (!(rel < 1e-2) || common < 0.99 * batch * G * kk)
              errors.push(
                `${op} cross-check v${variant}${suffix} n ${n}: overlap ${common / (batch * G * kk)}, rel err ${rel}`,
              );
          } catch (e) {
            errors.push(`${op} cross-check v${variant}${suffix} n ${n}: ${String(e).slice(0, 300)}`);
          }
        }
      }
    };
    if (anchorVariants.length > 0) crossCheck(anchorVariants, '');
    timeOps(ops.filter(([op]) => op === 'anchor' || op === 'layer0'));
    save();
    // The anchors' tuning knobs (read by the addon per call) on the anchor variants with bit 131072, e.g.
    // KASCADE_B1_SELECT_L2=1 (the b1 select's phases 2 and 3 read from L2, without its shared-memory caches),
    // KASCADE_SPARSE_LOGITS=0 (the sparse pass copies K rows instead of reading the logits). Cross-checked
    // against 188, then timed as
    // `anchor-<knob>-<value>` / `layer0-<knob>-<value>`.
    const knobs = (process.env.B1_ANCHOR_KNOBS ?? 'KASCADE_B1_SELECT_L2=1,KASCADE_SPARSE_LOGITS=0')
      .split(',')
      .filter((m) => m.includes('='));
    const knobVariants = list(process.env.B1_KNOB_VARIANTS ?? '');
    const knobOps = (process.env.B1_KNOB_OPS ?? 'anchor,layer0').split(',');
    for (const knob of knobs) {
      // Session 11: an entry may set several knobs at once, joined by '+' (as B1_REUSE_KNOBS).
      const pairs = knob.split('+').map((kv) => kv.split('=') as [string, string]);
      for (const [name, value] of pairs) process.env[name] = value;
      const tagName = pairs
        .map(([name, value]) => `${name.replace(/^KASCADE_/, '').toLowerCase()}-${value}`)
        .join('-');
      const b1Variants = anchorVariants.filter(
        (v) => (v & 131072) !== 0 && (knobVariants.length === 0 || knobVariants.includes(v)),
      );
      crossCheck(b1Variants, `_${tagName}`);
      timeOps(
        ops
          .filter(
            ([op, v]) =>
              (op === 'anchor' || op === 'layer0') && knobOps.includes(op) && b1Variants.includes(v),
          )
          .map(
            ([op, v, make]) => [`${op}-${tagName}`, v, make] as [string, number, (l: number) => () => void],
          ),
      );
      for (const [name] of pairs) delete process.env[name];
      save();
    }
    // Session 10: the reuse variants under each of B1_REUSE_KNOBS (read by the addon per call), after the anchors (a
    // knob's kernel is not screened: a hang there must not cost the rest).
    // An entry may set several knobs at once, joined by '+' (A=1+B=2: rows `reuse-a-1-b-2`).
    for (const knob of (process.env.B1_REUSE_KNOBS ?? '').split(',').filter((m) => m.includes('='))) {
      const pairs = knob.split('+').map((kv) => kv.split('=') as [string, string]);
      for (const [name, value] of pairs) process.env[name] = value;
      const tagName = pairs
        .map(([name, value]) => `${name.replace(/^KASCADE_/, '').toLowerCase()}-${value}`)
        .join('-');
      for (const variant of reuseVariants) {
        try {
          // Two calls first: a knob's state carried from call to call (e.g. a claim counter) shows on the third.
          for (let r = 0; r < 2; r++) reuseDecode({ ...base, variant }, sel, headMap, o);
          const got = reuseOut(variant);
          let num = 0;
          let den = 0;
          for (let i = 0; i < got.length; i++) {
            num += ((got[i] as number) - (ref124[i] as number)) ** 2;
            den += (ref124[i] as number) ** 2;
          }
          const rel = Math.sqrt(num / den);
          extra[`crossRelErrVs124_v${variant}_${tagName}_${Math.round(n / 1024)}k_b${batch}`] = Number.isNaN(
            rel,
          )
            ? -1
            : rel;
          if (!(rel < 1e-2))
            errors.push(`cross-check v${variant} ${tagName} n ${n}: rel err ${rel} against v124`);
        } catch (e) {
          errors.push(`cross-check v${variant} ${tagName} n ${n}: ${String(e).slice(0, 300)}`);
        }
      }
      timeOps(
        ops
          .filter(([op]) => op === 'reuse')
          .map(
            ([op, v, make]) => [`${op}-${tagName}`, v, make] as [string, number, (l: number) => () => void],
          ),
      );
      for (const [name] of pairs) delete process.env[name];
      save();
    }
    const tag = `${Math.round(n / 1024)}k_b${batch}`;
    extra[`emptyEventPairUs_${tag}`] = r2(median(timeDevice(() => {}, 10, 50)));
    // The host path in pieces: the native reuse call alone (arguments made once, no JS checks), and
    // one event record.
    try {
      const native = requireNative();
      const rv = reuseVariants[0] as number;
      const shape = decodeShape({ ...base, variant: rv }, 'reuse');
      const map = Int32Array.from(headMap);
      const direct = () =>
        native.reuseDecode(
          shape,
          q.buffer,
          base.k.buffer,
          base.v.buffer,
          o.buffer,
          kk,
          sel.indices.buffer,
          G,
          map,
        );
      extra[`nativeReuseHostUs_v${rv}_${tag}`] = r2(hostCost(direct, CALLS, 10));
      const ev = new native.Event();
      extra[`eventRecordHostUs_${tag}`] = r2(hostCost(() => ev.record(), CALLS, 10));
    } catch (e) {
      errors.push(`host pieces: ${String(e).slice(0, 300)}`);
    }
    const t0 = performance.now();
    for (let r = 0; r < 2000; r++) decodeShape({ ...base, variant: 60 }, 'reuse');
    extra[`decodeShapeUs_${tag}`] = r2(((performance.now() - t0) * 1000) / 2000);
  }
  for (const x of [q, o, sel.indices, selA.indices, ...kv.flatMap((t) => [t.k, t.v])]) x.free();
}
save();
console.log(JSON.stringify(extra));
