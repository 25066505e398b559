/**
 * Speed of the engine's attention ops at the demo model's shape (8 query heads, 2 KV heads,
 * head dim 64): one 32-query prefill tile ending at `n` keys, and one decode token over `n`
 * keys, for the `fast` ops (float32 WebAssembly SIMD) and the core float64 reference.
 *
 *   cd packages/engine && npx tsup scripts/bench-attention.ts --format esm --out-dir node_modules/.cache/kascade-bench --no-config \
 *     && node node_modules/.cache/kascade-bench/bench-attention.js [n ...]
 *
 * Wall-clock medians over repeats after a warm-up, with the process's CPU time beside them
 * (the development machine is shared) and the load average.
 */
import { loadavg } from 'node:os';
import { cpuUsage } from 'node:process';
import type { PrefillInputs } from '@kascade/core';
import { fastAttentionOps } from '../src/policies/fast.js';
import { type AttentionOps, referenceOps } from '../src/policies/ops.js';

const heads = 8;
const kvHeads = 2;
const d = 64;
const T = 32;
const budget = { percent: 10, kMin: 128 };
const sizes = process.argv.slice(2).map(Number);
const ns = sizes.length ? sizes : [1024, 4096];

function rand(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}

function time(f: () => void, repeats: number): { wall: number; cpu: number } {
  f();
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const c0 = cpuUsage();
    const t0 = performance.now();
    f();
    walls.push(performance.now() - t0);
    const c = cpuUsage(c0);
    cpus.push((c.user + c.system) / 1000);
  }
  const med = (a: number[]) => a.sort((x, y) => x - y)[a.length >> 1]!;
  return { wall: med(walls), cpu: med(cpus) };
}

const fast = fastAttentionOps(d);
if (!fast) throw new Error('fast attention ops unavailable here');
console.log(
  `load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
for (const n of ns) {
  const k = rand(kvHeads * n * d);
  const v = rand(kvHeads * n * d);
  const pre: PrefillInputs = {
    heads,
    kvHeads,
    headDim: d,
    n,
    k,
    v,
    q: rand(heads * T * d),
    queries: T,
    queryStart: n - T,
    tileSize: T,
  };
  const dec = { heads, kvHeads, headDim: d, n, k, v, q: rand(heads * d) };
  const flops = 2 * 2 * heads * T * (n - T / 2) * d;
  const decFlops = 2 * 2 * heads * n * d;
  const anchorSet = fast.anchorPrefillTopk(pre, budget);
  const rows: [string, (ops: AttentionOps) => void, number][] = [
    ['prefill dense', (o) => o.denseCausalPrefill(pre), flops],
    ['prefill dense-anchor', (o) => o.denseAnchorPrefill(pre, budget), flops],
    ['prefill anchor select', (o) => o.anchorPrefillTopk(pre, budget), flops / 2],
    ['prefill sparse (anchor set)', (o) => o.sparsePrefill(pre, anchorSet), 0],
    ['decode dense', (o) => o.denseDecode(dec), decFlops],
    ['decode dense-anchor', (o) => o.denseAnchorDecode(dec, budget), decFlops],
  ];
  for (const [label, f, fl] of rows) {
    const repeats = n > 8192 ? 3 : 7;
    const a = time(() => f(fast), repeats);
    const r = time(() => f(referenceOps), n > 8192 ? 1 : 3);
    const gf = fl ? ` ${(fl / a.cpu / 1e6).toFixed(1)} GFLOP/s per CPU s` : '';
    console.log(
      `n=${n} ${label.padEnd(28)} fast ${a.wall.toFixed(2)} ms (cpu ${a.cpu.toFixed(2)})${gf}; ` +
        `reference ${r.wall.toFixed(2)} ms (cpu ${r.cpu.toFixed(2)}); ${(r.cpu / a.cpu).toFixed(1)}x`,
    );
  }
}
