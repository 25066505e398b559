/**
 * Forward-pass speed of the CPU model (random weights, dense attention, short context so the
 * matrix kernels dominate): prefill tokens/s over a 256-token prompt in tiles of 32 and
 * decode tokens/s after it, for the WebAssembly SIMD and the JS kernels, with the model's
 * float64 reference attention and with attention left out (also on 2 threads) (the hook returns q) to time the
 * matrix work alone.
 *
 *   cd packages/engine && npx tsup scripts/bench-model.ts --format esm --out-dir node_modules/.cache/kascade-bench --no-config \
 *     && node node_modules/.cache/kascade-bench/bench-model.js
 *
 * Wall-clock rates, and rates per second of this process's CPU time (the machine is shared:
 * the CPU-time rates are what one uncontended core gives; both are printed with the load).
 * With 2 threads the CPU-time rate counts both threads, so compare wall-clock rates there.
 *
 * Shape: 12 layers, hidden 512, 8 query heads / 2 KV heads of dim 64, MLP 1536, vocab 2048.
 */
import { cpus, loadavg } from 'node:os';
import { denseAttention } from '../src/model/dense.js';
import type { LayerAttention } from '../src/model/hooks.js';
import { createRandomModel } from '../src/model/random.js';

const shape = {
  layers: 12,
  hiddenSize: 512,
  heads: 8,
  kvHeads: 2,
  headDim: 64,
  intermediateSize: 1536,
  vocabSize: 2048,
};
const promptLen = 256;
const decodeSteps = 32;
const repeats = 5;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

console.log(
  JSON.stringify({
    machine: { cpu: cpus()[0]?.model, cores: cpus().length, node: process.version, loadavg: loadavg() },
    shape,
  }),
);
/** Returns q as the attention output: times the matrix work alone (projections, MLP, LM head). */
const noAttention: LayerAttention = {
  decode: (_l, a) => a.q,
  prefill: (_l, a) => a.q,
};
const cases = [
  { kernels: 'wasm', matrixDtype: 'f32', attention: 'dense', threads: 1 },
  { kernels: 'wasm', matrixDtype: 'f32', attention: 'none', threads: 1 },
  { kernels: 'wasm', matrixDtype: 'f32', attention: 'none', threads: 2 },
  { kernels: 'wasm', matrixDtype: 'bf16', attention: 'none', threads: 1 },
  { kernels: 'js', matrixDtype: 'f32', attention: 'none', threads: 1 },
  ...(cpus().length >= 4
    ? ([{ kernels: 'wasm', matrixDtype: 'f32', attention: 'none', threads: 4 }] as const)
    : []),
];
for (const { kernels, matrixDtype, attention, threads } of cases) {
  const model = createRandomModel(shape, 1, { kernels, matrixDtype, threads });
  const hook = () => (attention === 'dense' ? denseAttention() : noAttention);
  const ids = Array.from({ length: promptLen }, (_, i) => (i * 31 + 7) % shape.vocabSize);
  const prefill: number[] = [];
  const decode: number[] = [];
  const prefillCpu: number[] = [];
  const decodeCpu: number[] = [];
  const cpuS = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  for (let r = 0; r < repeats + 1; r++) {
    const seq = model.createSequence(promptLen + decodeSteps);
    const c0 = cpuS();
    const t0 = performance.now();
    model.prefill(seq, ids, hook(), { tileSize: 32 });
    const t1 = performance.now();
    const c1 = cpuS();
    for (let s = 0; s < decodeSteps; s++) model.decode(seq, (s * 17) % shape.vocabSize, hook());
    const t2 = performance.now();
    const c2 = cpuS();
    if (r === 0) continue; // warm-up
    prefill.push((promptLen * 1000) / (t1 - t0));
    decode.push((decodeSteps * 1000) / (t2 - t1));
    prefillCpu.push(promptLen / (c1 - c0));
    decodeCpu.push(decodeSteps / (c2 - c1));
  }
  console.log(
    JSON.stringify({
      kernels,
      matrixDtype,
      threads,
      attention: attention === 'dense' ? 'dense (float64 JS reference)' : 'none (matrix work only)',
      promptLen,
      tileSize: 32,
      decodeSteps,
      warmup: 1,
      repeats,
      prefillTokensPerS: median(prefill),
      decodeTokensPerS: median(decode),
      // Per second of this process's CPU time: what one uncontended core would give.
      prefillTokensPerCpuS: median(prefillCpu),
      decodeTokensPerCpuS: median(decodeCpu),
      loadavg: loadavg(),
    }),
  );
  await model.dispose();
}
