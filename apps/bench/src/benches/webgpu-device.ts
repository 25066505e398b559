/**
 * Entry for a bundled run away from the repository (the H200 machine has no git and no
 * node_modules): `node webgpu-device.mjs <outDir> [--quick] webgpu-decode webgpu-prefill`.
 * Runs each named WebGPU bench and writes `<outDir>/<bench>.json` (+ .md/.svg) in the results
 * shape. The commit is taken from `$KASCADE_COMMIT`.
 */
import type { Bench } from '../harness.js';
import { machineInfo } from '../machine.js';
import { resolveOptions, runBench, writeResults } from '../run.js';
import decode from './webgpu-decode.js';
import prefill from './webgpu-prefill.js';

const benches: Record<string, Bench> = { 'webgpu-decode': decode, 'webgpu-prefill': prefill };
const [outDir, ...rest] = process.argv.slice(2);
const quick = rest.includes('--quick');
for (const name of rest.filter((a) => !a.startsWith('--'))) {
  const bench = benches[name];
  if (!bench) throw new Error(`unknown bench ${name}`);
  const command = `node apps/bench/dist/cli.js ${name}${quick ? ' --quick' : ''}`;
  const results = await runBench(
    bench,
    resolveOptions(bench, quick ? { quick } : {}),
    { command, gitCommit: process.env.KASCADE_COMMIT ?? 'unknown', machine: machineInfo() },
    (line) => process.stderr.write(`[${name}] ${line}\n`),
  );
  const written = writeResults(results, `${outDir}/${name}.json`);
  process.stderr.write(`[${name}] wrote ${written.join(', ')}\n`);
}
