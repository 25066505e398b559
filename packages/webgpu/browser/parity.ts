/**
 * The browser parity page: runs the WebGPU ops on `navigator.gpu` against the core float64
 * reference (random inputs, NaN-poisoned outputs, f32 and f16 K/V), then a short decode benchmark
 * (dense vs reuse), and publishes everything on `window.kascadeParity` for the headless test.
 * Built by `src/browser.test.ts` (esbuild) next to `index.html`.
 */
import {
  anchorDecodeTopk,
  anchorPrefillTopk,
  denseCausalPrefillAttention,
  denseDecodeAttention,
  fromF16,
  pooledDecodeScores,
  sparseDecodeAttention,
  sparsePrefillAttention,
  toF16,
  topkBudget,
} from '@kascade/core';
import {
  createDecodeSlot,
  createDeviceKV,
  encodeDecode,
  encodeFillRandom,
  KascadeGPU,
  type KVDType,
  timeGPU,
  WebGPUBackend,
} from '../src/index.js';

interface Check {
  name: string;
  value: number;
  limit: number;
  pass: boolean;
}
interface BenchRow {
  op: string;
  keys: number;
  medianUs: number;
  timing: string;
}
export interface ParityReport {
  adapter: string;
  subgroups: boolean;
  checks: Check[];
  bench: BenchRow[];
  error?: string;
  done: boolean;
}

function rand(n: number, seed: number, amp = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * amp;
  }
  return out;
}

function rel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    if (!Number.isFinite(a[i])) return Number.POSITIVE_INFINITY;
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** Share of the best possible pooled mass the selection captures (1 = as good as the exact Top-k). */
function capturedShare(pooled: Float64Array, n: number, rows: number, k: number, idx: Int32Array): number {
  let worst = 1;
  for (let r = 0; r < rows; r++) {
    const row = pooled.subarray(r * n, (r + 1) * n);
    const best = Array.from(row)
      .sort((x, y) => y - x)
      .slice(0, k)
      .reduce((s, x) => s + x, 0);
    const ids = idx.subarray(r * k, (r + 1) * k);
    if (new Set(ids).size !== k) return 0;
    let got = 0;
    for (const x of ids) {
      if (!(x >= 0 && x < n)) return 0;
      got += row[x];
    }
    worst = Math.min(worst, got / best);
  }
  return worst;
}

const report: ParityReport = { adapter: '', subgroups: false, checks: [], bench: [], done: false };
(window as unknown as { kascadeParity: ParityReport }).kascadeParity = report;

function show(): void {
  const body = document.querySelector('#results tbody')!;
  body.innerHTML = report.checks
    .map(
      (c) =>
        `<tr><td>${c.name}</td><td>${c.value.toExponential(2)}</td><td>${c.limit}</td>` +
        `<td class="${c.pass ? 'ok' : 'bad'}">${c.pass ? 'pass' : 'FAIL'}</td></tr>`,
    )
    .join('');
  document.querySelector('#bench tbody')!.innerHTML = report.bench
    .map(
      (b) =>
        `<tr><td>${b.op}</td><td>${b.keys}</td><td>${b.medianUs.toFixed(1)}</td><td>${b.timing}</td></tr>`,
    )
    .join('');
}

function check(name: string, value: number, limit: number, atLeast = false): void {
  report.checks.push({ name, value, limit, pass: atLeast ? value >= limit : value < limit });
  show();
}

async function parity(gpu: KascadeGPU, dtype: KVDType): Promise<void> {
  const b = await WebGPUBackend.create({ kvDType: dtype, context: gpu });
  const stored = (x: Float32Array) => (dtype === 'f32' ? x : fromF16(toF16(x)));
  const budget = { percent: 10, kMin: 16 };
  // Decode: 8 query heads over 2 KV heads, d 64, 500 keys.
  const shape = { heads: 8, kvHeads: 2, headDim: 64, n: 500 };
  const q = rand(8 * 64, 1, 2.5);
  const k = rand(2 * 500 * 64, 2);
  const v = rand(2 * 500 * 64, 3);
  const gpuIn = { ...shape, q, k, v };
  const ref = { ...shape, q, k: stored(k), v: stored(v) };
  check(`${dtype} dense decode`, rel(await b.denseDecode(gpuIn), denseDecodeAttention(ref)), 1e-5);
  const an = await b.anchorDecode(gpuIn, budget);
  const kk = topkBudget(500, budget);
  check(
    `${dtype} anchor decode Top-k mass share`,
    capturedShare(pooledDecodeScores(ref), 500, 2, kk, an.selection.indices),
    0.999,
    true,
  );
  check(`${dtype} anchor decode`, rel(an.out, sparseDecodeAttention(ref, an.selection)), 1e-5);
  const sel = anchorDecodeTopk(ref, budget);
  check(
    `${dtype} reuse decode`,
    rel(await b.reuseDecode(gpuIn, sel, [1, 0]), sparseDecodeAttention(ref, sel, [1, 0])),
    1e-5,
  );
  // Prefill: 40 queries from position 32, tiles of 8.
  const ps = { heads: 4, kvHeads: 2, headDim: 128, queries: 40, queryStart: 32, tileSize: 8, n: 72 };
  const pq = rand(4 * 40 * 128, 4, 2.5);
  const pk = rand(2 * 72 * 128, 5);
  const pv = rand(2 * 72 * 128, 6);
  const pGpu = { ...ps, q: pq, k: pk, v: pv };
  const pRef = { ...ps, q: pq, k: stored(pk), v: stored(pv) };
  const pb = { percent: 25, kMin: 8 };
  check(`${dtype} dense prefill`, rel(await b.densePrefill(pGpu), denseCausalPrefillAttention(pRef)), 1e-5);
  const pa = await b.anchorPrefill(pGpu, pb);
  check(`${dtype} anchor prefill`, rel(pa.out, sparsePrefillAttention(pRef, pa.selection)), 1e-5);
  const psel = anchorPrefillTopk(pRef, pb);
  check(
    `${dtype} reuse prefill`,
    rel(await b.reusePrefill(pGpu, psel, [1, 0]), sparsePrefillAttention(pRef, psel, [1, 0])),
    1e-5,
  );
}

async function bench(gpu: KascadeGPU): Promise<void> {
  const n = 8192;
  const heads = 8;
  const kvHeads = 2;
  const headDim = 128;
  const kv = createDeviceKV(gpu, { batch: 1, kvHeads, capacity: n, headDim, dtype: 'f16' });
  const usage = GPUBufferUsage.STORAGE;
  const q = gpu.device.createBuffer({ size: heads * headDim * 4, usage });
  const out = gpu.device.createBuffer({ size: heads * headDim * 4, usage });
  const enc = gpu.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  encodeFillRandom(gpu, pass, kv.k, kv.k.size / 4, { seed: 1, f16: true }); // one part: 8k tokens fit
  encodeFillRandom(gpu, pass, kv.v, kv.v.size / 4, { seed: 2, f16: true });
  encodeFillRandom(gpu, pass, q, q.size / 4, { seed: 3 });
  pass.end();
  gpu.flushParams();
  gpu.device.queue.submit([enc.finish()]);
  const budget = { percent: 10, kMin: 128 };
  const slot = createDecodeSlot(gpu, 1, kvHeads, topkBudget(n, budget));
  for (const role of ['dense', 'anchor', 'reuse'] as const) {
    const { samplesUs, source } = await timeGPU(
      gpu,
      `browser ${role}`,
      (p) => encodeDecode(gpu, p, { role, heads, q, kv, n, out, slot, budget }),
      { warmup: 2, repeats: 7 },
    );
    const sorted = Array.from(samplesUs).sort((x, y) => x - y);
    report.bench.push({ op: role, keys: role === 'dense' ? n : slot.k, medianUs: sorted[3], timing: source });
    show();
  }
}

async function main(): Promise<void> {
  try {
    const gpu = await KascadeGPU.create();
    const i = gpu.info.adapterInfo;
    report.adapter = [i.vendor, i.architecture, i.description].filter(Boolean).join(' ');
    report.subgroups = gpu.info.hasSubgroups;
    await parity(gpu, 'f32');
    await parity(gpu, 'f16');
    await bench(gpu);
    document.querySelector('#status')!.textContent =
      `${report.checks.every((c) => c.pass) ? 'all checks pass' : 'SOME CHECKS FAIL'} on ${report.adapter}`;
  } catch (e) {
    report.error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    document.querySelector('#status')!.textContent = report.error;
  }
  report.done = true;
}

void main();
