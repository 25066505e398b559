import type { RunOptions } from './harness.js';

/** A command line the CLI cannot run; the message says what is wrong. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

export type CliArgs =
  | { readonly kind: 'help' }
  | { readonly kind: 'list' }
  | { readonly kind: 'render'; readonly files: readonly string[] }
  | {
      readonly kind: 'run';
      readonly bench: string;
      readonly options: Partial<RunOptions>;
      readonly out?: string;
      /** Arguments after `--`, passed to the bench as `ctx.benchArgs` (bench-specific options). */
      readonly benchArgs?: readonly string[];
    };

export function usage(names: readonly string[]): string {
  return [
    'usage: kascade-bench <bench> [--repeats N] [--warmup N] [--out FILE] [--quick]',
    '       kascade-bench list',
    '       kascade-bench render FILE.json...   (re-make the .md/.svg beside each results file)',
    '',
    '  --repeats N  timed calls per measurement (N >= 1)',
    '  --warmup N   untimed calls before them (N >= 0)',
    '  --out FILE   write FILE (.json) and the .md/.svg beside it; default apps/bench/results/<bench>.json',
    '               (with --quick: <tmpdir>/kascade-bench/<bench>.json, so smoke runs never replace results)',
    '  --quick      small sizes and few repeats (a smoke run)',
    '  -- ARGS      everything after -- goes to the bench (e.g. accuracy: -- --instances 5 --context 1024)',
    '',
    `benches: ${names.join(', ')}`,
    '',
  ].join('\n');
}

function integerFlag(flag: string, value: string | undefined, min: number): number {
  if (value === undefined || value.startsWith('--')) throw new CliError(`${flag} needs a value`);
  if (!/^\d+$/.test(value) || Number(value) < min || !Number.isSafeInteger(Number(value))) {
    throw new CliError(`${flag} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** Parses the CLI's arguments (without `node` and the script); throws {@link CliError}. */
export function parseCliArgs(argv: readonly string[], names: readonly string[]): CliArgs {
  if (argv.length === 0) throw new CliError('no benchmark named');
  if (argv.includes('--help') || argv.includes('-h')) return { kind: 'help' };
  if (argv[0] === 'render') {
    const files = argv.slice(1);
    if (files.length === 0) throw new CliError('render needs one or more results .json files');
    const bad = files.find((f) => !f.endsWith('.json'));
    if (bad !== undefined) throw new CliError(`render takes .json results files, got ${JSON.stringify(bad)}`);
    return { kind: 'render', files };
  }
  let bench: string | undefined;
  let out: string | undefined;
  let benchArgs: string[] | undefined;
  const options: { warmup?: number; repeats?: number; quick?: boolean } = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      benchArgs = argv.slice(i + 1);
      break;
    }
    const eq = a.indexOf('=');
    const [flag, inline] = a.startsWith('--') && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const value = () => (inline !== undefined ? inline : argv[++i]);
    switch (flag) {
      case '--repeats':
        options.repeats = integerFlag(flag, value(), 1);
        break;
      case '--warmup':
        options.warmup = integerFlag(flag, value(), 0);
        break;
      case '--out': {
        const v = value();
        if (v === undefined || v.startsWith('--')) throw new CliError('--out needs a file name');
        if (!v.endsWith('.json'))
          throw new CliError(`--out must name a .json file, got ${JSON.stringify(v)}`);
        out = v;
        break;
      }
      case '--quick':
        if (inline !== undefined) throw new CliError('--quick takes no value');
        options.quick = true;
        break;
      default:
        if (flag.startsWith('-')) throw new CliError(`unknown option ${JSON.stringify(a)}`);
        if (bench !== undefined) throw new CliError(`one benchmark per run; got ${bench} and ${a}`);
        bench = a;
    }
  }
  if (bench === 'list') return { kind: 'list' };
  if (bench === undefined) throw new CliError('no benchmark named');
  if (!names.includes(bench)) {
    throw new CliError(`unknown benchmark ${JSON.stringify(bench)}; known: ${names.join(', ')}`);
  }
  return {
    kind: 'run',
    bench,
    options,
    ...(out !== undefined ? { out } : {}),
    ...(benchArgs !== undefined ? { benchArgs } : {}),
  };
}
