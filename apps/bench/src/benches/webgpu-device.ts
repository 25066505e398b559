/**
 * Entry for a bundled run away from the repository (the H200 machine has no git and no
 * node_modules): `node webgpu-device.mjs <outDir> [--quick] webgpu-decode webgpu-prefill [-- bench args]`.
 * Runs each named WebGPU bench and writes `<outDir>/<bench>.json` (+ .md/.svg) in the results
 * shape. The commit is taken from `$KASCADE_COMMIT`. Arguments after `--` go to the benches (e.g.
 * `-- --contexts=131072 --kernels=teams,chunked`).
 *
 * `node webgpu-device.mjs --merge <out.json> <a.json> <b.json> ...` joins results of one bench run in
 * pieces (rows concatenated, summaries merged, the first file's provenance, the commands joined).
 */
import { readFileSync } from 'node:fs';
import type { Bench } from '../harness.js';
import { machineInfo } from '../machine.js';
import { validateResults } from '../results.js';
import { resolveOptions, runBench, writeResults } from '../run.js';
import { mergeResults } from './webgpu-common.js';
import decode from './webgpu-decode.js';
import prefill from './webgpu-prefill.js';

const benches: Record<string, Bench> = { 'webgpu-decode': decode, 'webgpu-prefill': prefill };

async function main(argv: readonly string[]): Promise<void> {
  if (argv[0] === '--merge') {
    const [out, ...inputs] = argv.slice(1);
    if (!out || inputs.length === 0) throw new RangeError('usage: --merge <out.json> <a.json> [b.json ...]');
    const merged = mergeResults(inputs.map((f) => validateResults(JSON.parse(readFileSync(f, 'utf8')))));
    process.stderr.write(`merged ${inputs.length} files: ${writeResults(merged, out).join(', ')}\n`);
    return;
  }
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const benchArgs = dash < 0 ? [] : argv.slice(dash + 1);
  const [outDir, ...rest] = own;
  const quick = rest.includes('--quick');
  for (const name of rest.filter((a) => !a.startsWith('--'))) {
    const bench = benches[name];
    if (!bench) throw new Error(`unknown bench ${name}`);
    const extra = benchArgs.length > 0 ? ` -- ${benchArgs.join(' ')}` : '';
    const command = `node apps/bench/dist/cli.js ${name}${quick ? ' --quick' : ''}${extra}`;
    const results = await runBench(
      bench,
      resolveOptions(bench, { ...(quick ? { quick } : {}), benchArgs }),
      { command, gitCommit: process.env.KASCADE_COMMIT ?? 'unknown', machine: machineInfo() },
      (line) => process.stderr.write(`[${name}] ${line}\n`),
    );
    const written = writeResults(results, `${outDir}/${name}.json`);
    process.stderr.write(`[${name}] wrote ${written.join(', ')}\n`);
  }
}

await main(process.argv.slice(2));
