/**
 * GFLOP/s of the model's matrix kernels on this machine: matrix-vector (decode) and
 * matrix-matrix over a 32-token tile (prefill), JS and WebAssembly SIMD, f32.
 *
 *   cd packages/engine && npx tsup scripts/bench-kernels.ts --format esm --out-dir /tmp/kascade-bench-kernels \
 *     && node /tmp/kascade-bench-kernels/bench-kernels.js
 *
 * Prints one JSON line per case: shape, warm-up, repeats, median seconds and GFLOP/s.
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

function time(fn: () => void, warmup: number, repeats: number): number {
  for (let i = 0; i < warmup; i++) fn();
  const ts: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    fn();
    ts.push((performance.now() - t0) / 1000);
  }
  return median(ts);
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
    const repeats = tokens === 1 ? 30 : 7;
    const js = time(() => matmul(wJs, x, y, tokens, rows, cols), 3, repeats);
    const wasm = wWasm ? time(() => arena!.matmul(wWasm, x, y, tokens, rows, cols), 3, repeats) : Number.NaN;
    console.log(
      JSON.stringify({
        op: tokens === 1 ? 'matvec' : 'matmul',
        rows,
        cols,
        tokens,
        dtype: 'f32',
        warmup: 3,
        repeats,
        jsMedianS: js,
        jsGflops: flops / js / 1e9,
        wasmMedianS: wasm,
        wasmGflops: flops / wasm / 1e9,
      }),
    );
  }
}
