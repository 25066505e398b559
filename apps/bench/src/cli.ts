#!/usr/bin/env node
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CliError, parseCliArgs, usage } from './args.js';
import { gitCommit, machineInfo } from './machine.js';
import { benchNames, registry } from './registry.js';
import { formatCell, textTable } from './results.js';
import { resolveOptions, runBench, writeResults } from './run.js';

const resultsDir = fileURLToPath(new URL('../results/', import.meta.url));

async function main(argv: readonly string[]): Promise<number> {
  const args = parseCliArgs(argv, benchNames());
  if (args.kind === 'help') {
    process.stdout.write(usage(benchNames()));
    return 0;
  }
  if (args.kind === 'list') {
    for (const name of benchNames()) {
      const bench = await registry[name]();
      process.stdout.write(`${name.padEnd(24)} ${bench.description}\n`);
    }
    return 0;
  }
  const bench = await registry[args.bench]();
  const options = resolveOptions(bench, args.options);
  // The command as run from the repository root (where results resolve the same way).
  const repoRoot = path.resolve(resultsDir, '..', '..', '..');
  const script = process.argv[1] ? path.relative(repoRoot, process.argv[1]) : 'apps/bench/dist/cli.js';
  const command = ['node', script, ...argv].join(' ');
  process.stderr.write(
    `[kascade-bench] ${bench.name}: warmup ${options.warmup}, repeats ${options.repeats}${options.quick ? ', quick' : ''}\n`,
  );
  const started = performance.now();
  const results = await runBench(
    bench,
    options,
    { command, gitCommit: gitCommit(path.dirname(resultsDir)), machine: machineInfo() },
    (line) => process.stderr.write(`[kascade-bench] ${line}\n`),
  );
  process.stdout.write(`${textTable(results.rows)}\n`);
  for (const [k, v] of Object.entries(results.summary)) process.stdout.write(`${k}: ${formatCell(v)}\n`);
  const out =
    args.out ??
    path.join(options.quick ? path.join(os.tmpdir(), 'kascade-bench') : resultsDir, `${bench.name}.json`);
  const written = writeResults(results, path.resolve(out));
  process.stderr.write(
    `[kascade-bench] done in ${((performance.now() - started) / 1000).toFixed(1)} s; wrote ${written.join(', ')}\n`,
  );
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof CliError) {
      process.stderr.write(`kascade-bench: ${err.message}\n\n${usage(benchNames())}`);
      process.exitCode = 2;
    } else {
      process.stderr.write(
        `kascade-bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exitCode = 1;
    }
  },
);
