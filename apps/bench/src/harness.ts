import type { Cell, MachineInfo, Row } from './results.js';
import { type Stats, summarize } from './stats.js';

/** How a run is configured from the command line. */
export interface RunOptions {
  /** Untimed calls before the timed ones. */
  readonly warmup: number;
  /** Timed calls; medians and p10/p90 are over these. */
  readonly repeats: number;
  /** Smaller sizes and fewer repeats, for a smoke run (CI, development). */
  readonly quick: boolean;
  /** Bench-specific arguments (what followed `--` on the command line). */
  readonly benchArgs?: readonly string[];
}

/** What a benchmark gets: its options, a timer and a progress line. */
export interface BenchContext extends RunOptions {
  /**
   * Calls `fn` `warmup` times untimed, then `repeats` times each timed on its own (wall
   * clock, `process.hrtime`); returns the statistics in microseconds. An async `fn` is
   * awaited inside its timing, so GPU benches synchronise there.
   */
  time(label: string, fn: () => unknown): Promise<Stats>;
  /** A progress note on stderr (not part of the results). */
  progress(message: string): void;
}

/** What a benchmark returns; the harness adds bench name, command, date, commit and machine. */
export interface BenchOutput {
  /** Shapes, dtype and settings common to the rows. `warmup` and `repeats` are added by the harness. */
  readonly config: Readonly<Record<string, Cell>>;
  readonly rows: readonly Row[];
  /** Target figures under the keys the issues name; leave out what was not measured. */
  readonly summary?: Readonly<Record<string, number>>;
  /** GPU model, driver, CUDA version and the like, merged into `machine`. */
  readonly machine?: Partial<MachineInfo>;
}

/** A benchmark module: `export default { name, description, run } satisfies Bench`. */
export interface Bench {
  readonly name: string;
  readonly description: string;
  /** Defaults for `--warmup`/`--repeats` when not given (the harness's are 3 and 20). */
  readonly defaults?: Partial<Pick<RunOptions, 'warmup' | 'repeats'>>;
  run(ctx: BenchContext): Promise<BenchOutput>;
}

/** A sink for progress lines; the CLI passes one that writes to stderr. */
export type ProgressSink = (line: string) => void;

/** Stats in microseconds as row cells: `medianUs`, `p10Us`, `p90Us`. */
export function timingCells(s: Stats): { medianUs: number; p10Us: number; p90Us: number } {
  const round = (x: number) => Math.round(x * 100) / 100;
  return { medianUs: round(s.median), p10Us: round(s.p10), p90Us: round(s.p90) };
}

/** Builds the context a bench runs in. Progress on a timed loop is reported at most every 2 s. */
export function createContext(
  options: RunOptions,
  sink: ProgressSink,
  now = () => performance.now(),
): BenchContext {
  return {
    ...options,
    progress: (message) => sink(message),
    async time(label, fn) {
      const total = options.warmup + options.repeats;
      const samples = new Float64Array(options.repeats);
      let lastNote = now();
      for (let i = 0; i < total; i++) {
        const t0 = process.hrtime.bigint();
        const r = fn();
        if (r instanceof Promise) await r;
        const us = Number(process.hrtime.bigint() - t0) / 1000;
        if (i >= options.warmup) samples[i - options.warmup] = us;
        if (now() - lastNote > 2000) {
          lastNote = now();
          sink(`  ${label}: ${i + 1}/${total} calls`);
        }
      }
      return summarize(samples);
    },
  };
}
