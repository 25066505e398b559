import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CliError, parseCliArgs, usage } from './args.js';
import { gitCommit, machineInfo } from './machine.js';
import { benchNames, registry } from './registry.js';
import { formatCell, textTable, validateResults } from './results.js';
import { renderResults, resolveOptions, runBench, writeResults } from './run.js';

/** apps/bench: the first folder above this module whose package.json is @kascade/bench (dist, bundle or src). */
function benchRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (manifest.name === '@kascade/bench') return dir;
    } catch {
      // no package.json here
    }
    const up = path.dirname(dir);
    if (up === dir) return path.dirname(fileURLToPath(import.meta.url));
    dir = up;
  }
}

const resultsDir = path.join(benchRoot(), 'results');

/** Where the CLI writes: stdout for tables, stderr for progress and errors. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** The script path as invoked (`process.argv[1]`), for the recorded command. */
  readonly script?: string;
}

const processIo: CliIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  script: process.argv[1],
};

/** The CLI: returns the exit code (0 ok, 1 a bench failed, 2 bad arguments). */
export async function main(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  try {
    return await run(argv, io);
  } catch (err) {
    if (err instanceof CliError) {
      io.stderr(`kascade-bench: ${err.message}\n\n${usage(benchNames())}`);
      return 2;
    }
    io.stderr(`kascade-bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const args = parseCliArgs(argv, benchNames());
  if (args.kind === 'help') {
    io.stdout(usage(benchNames()));
    return 0;
  }
  if (args.kind === 'render') {
    for (const file of args.files) {
      const results = validateResults(JSON.parse(readFileSync(file, 'utf8')));
      io.stderr(`[kascade-bench] rendered ${renderResults(results, path.resolve(file)).join(', ')}\n`);
    }
    return 0;
  }
  if (args.kind === 'list') {
    for (const name of benchNames()) {
      // A bench whose module cannot load here (no GPU addon, say) is listed with the reason.
      const description = await registry[name]().then(
        (bench) => bench.description,
        (err: unknown) =>
          `(cannot load here: ${err instanceof Error ? err.message.split('\n')[0] : String(err)})`,
      );
      io.stdout(`${name.padEnd(24)} ${description}\n`);
    }
    return 0;
  }
  const bench = await registry[args.bench]();
  const options = resolveOptions(bench, {
    ...args.options,
    ...(args.benchArgs ? { benchArgs: args.benchArgs } : {}),
  });
  // The command as run from the repository root (where results resolve the same way).
  const repoRoot = path.resolve(resultsDir, '..', '..', '..'); // apps/bench/results -> the repository
  const script = io.script ? path.relative(repoRoot, io.script) : 'apps/bench/dist/cli.js';
  const command = ['node', script, ...argv].join(' ');
  io.stderr(
    `[kascade-bench] ${bench.name}: warmup ${options.warmup}, repeats ${options.repeats}${options.quick ? ', quick' : ''}\n`,
  );
  const started = performance.now();
  const results = await runBench(
    bench,
    options,
    { command, gitCommit: gitCommit(path.dirname(resultsDir)), machine: machineInfo() },
    (line) => io.stderr(`[kascade-bench] ${line}\n`),
  );
  io.stdout(`${textTable(results.rows)}\n`);
  for (const [k, v] of Object.entries(results.summary)) io.stdout(`${k}: ${formatCell(v)}\n`);
  const out =
    args.out ??
    path.join(options.quick ? path.join(os.tmpdir(), 'kascade-bench') : resultsDir, `${bench.name}.json`);
  const written = writeResults(results, path.resolve(out));
  io.stderr(
    `[kascade-bench] done in ${((performance.now() - started) / 1000).toFixed(1)} s; wrote ${written.join(', ')}\n`,
  );
  return 0;
}
