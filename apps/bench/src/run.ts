import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { toAccuracySvg } from './accuracy/chart.js';
import { type Bench, createContext, type ProgressSink, type RunOptions } from './harness.js';
import { type BenchResults, type MachineInfo, toMarkdown, toSvg, validateResults } from './results.js';

export interface Provenance {
  readonly command: string;
  readonly gitCommit: string;
  readonly machine: MachineInfo;
  readonly date?: Date;
}

/** Resolves run options from the bench's defaults and what the command line gave. */
export function resolveOptions(bench: Bench, given: Partial<RunOptions>): RunOptions {
  const quick = given.quick ?? false;
  return {
    quick,
    warmup: given.warmup ?? bench.defaults?.warmup ?? (quick ? 1 : 3),
    repeats: given.repeats ?? bench.defaults?.repeats ?? (quick ? 3 : 20),
    ...(given.benchArgs !== undefined ? { benchArgs: given.benchArgs } : {}),
  };
}

/** Runs one bench and returns its results in the RESULTS shape (validated). */
export async function runBench(
  bench: Bench,
  options: RunOptions,
  provenance: Provenance,
  sink: ProgressSink,
): Promise<BenchResults> {
  const out = await bench.run(createContext(options, sink));
  const machine = { ...provenance.machine };
  for (const [k, v] of Object.entries(out.machine ?? {})) if (v !== undefined) machine[k] = v;
  return validateResults({
    bench: bench.name,
    command: provenance.command,
    date: (provenance.date ?? new Date()).toISOString(),
    gitCommit: provenance.gitCommit,
    machine,
    config: { ...out.config, warmup: options.warmup, repeats: options.repeats, quick: options.quick },
    rows: out.rows,
    summary: out.summary ?? {},
  });
}

/** Writes `<file>.json`, `<file>.md` and (when there is a time column) `<file>.svg`; returns the paths. */
export function writeResults(results: BenchResults, jsonPath: string): string[] {
  mkdirSync(path.dirname(jsonPath), { recursive: true });
  writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
  return [jsonPath, ...renderResults(results, jsonPath)];
}

/** Writes the `.md` (and `.svg` when there is a time column) beside a results file; returns the paths. */
export function renderResults(results: BenchResults, jsonPath: string): string[] {
  const base = jsonPath.replace(/\.json$/, '');
  writeFileSync(`${base}.md`, toMarkdown(results));
  const svg = toSvg(results) ?? toAccuracySvg(results);
  if (svg === undefined) return [`${base}.md`];
  writeFileSync(`${base}.svg`, svg);
  return [`${base}.md`, `${base}.svg`];
}
