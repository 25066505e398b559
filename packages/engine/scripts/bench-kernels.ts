/**
 * GFLOP/s of the model's matrix kernels on this machine: matrix-vector (decode) and
 * matrix-matrix over a 32-token tile (prefill), JS and WebAssembly SIMD, f32.
 *
 *   cd packages/engine && npx tsup scripts/bench-kernels.ts --format esm --out-dir node_modules/.cache/kascade-bench --no-config \
 *     && node node_modules/.cache/kascade-bench/bench-kernels.js
 *
 * Prints one JSON line per case: shape, warm-up, repeats, median wall seconds and GFLOP/s, and
 * GFLOP/s per second of this process's CPU time (the machine is shared; that figure is what
 * one uncontended core gives, at the resolution of process.cpuUsage).
 */
import { cpus, loadavg } from 'node:os';
import { matmul } from '../src/model/kernels.js';
import { mulberry32 } from '../src/model/random.js';
import { WasmArena } from '../src/model/wasm.js';

const rand = mulberry32(1);
const fill = (n: number) => Float32Array.from({ length: n }, () => rand() * 2 - 1);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const cpuS = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Median wall seconds and median CPU seconds of this process per call. */
function time(fn: () => void, warmup: number, repeats: number): { wall: number; cpu: number } {
  for (let i = 0; i < warmup; i++) fn();
  const ts: number[] = [];
  const cs: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const c0 = cpuS();
    const t0 = performance.now();
    fn();
    ts.push((performance.now() - t0) / 1000);
    cs.push(cpuS() - c0);
  }
  return { wall: median(ts), cpu: median(cs) };
}

const arena = WasmArena.create();
console.log(
  JSON.stringify({
    machine: { cpu: cpus()[0]?.model, cores: cpus().length, node: process.version, loadavg: loadavg() },
    note: 'single thread; other engineers share these cores, see loadavg',
  }),
);
// [rows, cols]: a 4096x1024 projection, a 2816x1024 MLP matrix, a 1024x2816 down projection.
const shapes: [number, number][] = [
  [1024, 1024],
  [2816, 1024],
  [1024, 2816],
  [4096, 4096],
];
for (const [rows, cols] of shapes) {
  const wJs = fill(rows * cols);
  const wWasm = arena?.adopt(wJs);
  for (const tokens of [1, 32]) {
    const x = fill(tokens * cols);
    const y = new Float32Array(tokens * rows);
    const flops = 2 * rows * cols * tokens;
    const repeats = tokens === 1 ? 200 : 9;
    const js = time(() => matmul(wJs, x, y, tokens, rows, cols), 3, repeats);
    const wasm = wWasm
      ? time(() => arena!.matmul(wWasm, x, y, tokens, rows, cols), 3, repeats)
      : { wall: Number.NaN, cpu: Number.NaN };
    console.log(
      JSON.stringify({
        op: tokens === 1 ? 'matvec' : 'matmul',
        rows,
        cols,
        tokens,
        dtype: 'f32',
        warmup: 3,
        repeats,
        jsMedianS: js.wall,
        jsGflops: flops / js.wall / 1e9,
        jsGflopsPerCpuS: flops / js.cpu / 1e9,
        wasmMedianS: wasm.wall,
        wasmGflops: flops / wasm.wall / 1e9,
        wasmGflopsPerCpuS: flops / wasm.cpu / 1e9,
      }),
    );
  }
}
