import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CliError, parseCliArgs } from './args.js';
import type { Bench } from './harness.js';
import { ResultsShapeError, toMarkdown, toSvg, validateResults } from './results.js';
import { resolveOptions, runBench, writeResults } from './run.js';
import { median, quantile, StatsError, summarize } from './stats.js';

const names = ['core-topk', 'core-attention'];

function naiveQuantile(xs: number[], q: number): number {
  // Type-7 quantile written out differently: h = (n - 1) q, x[floor h] + (h - floor h)(x[floor h + 1] - x[floor h]).
  const s = [...xs].sort((a, b) => a - b);
  const h = (s.length - 1) * q;
  const f = Math.floor(h);
  return f + 1 < s.length ? s[f] + (h - f) * (s[f + 1] - s[f]) : s[f];
}

describe('stats', () => {
  it('median of odd and even samples, independent of order', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
  });

  it('p10/p90 interpolate between closest ranks', () => {
    const xs = Array.from({ length: 11 }, (_, i) => 10 - i); // 0..10 reversed
    expect(quantile(xs, 0.1)).toBeCloseTo(1, 12);
    expect(quantile(xs, 0.9)).toBeCloseTo(9, 12);
    expect(quantile([1, 2], 0.1)).toBeCloseTo(1.1, 12);
  });

  it('matches a naive quantile on random samples', () => {
    for (let t = 0; t < 50; t++) {
      const n = 1 + Math.floor(Math.random() * 40);
      const xs = Array.from({ length: n }, () => Math.random() * 1000 - 100);
      const s = summarize(xs);
      expect(s.median).toBeCloseTo(naiveQuantile(xs, 0.5), 9);
      expect(s.p10).toBeCloseTo(naiveQuantile(xs, 0.1), 9);
      expect(s.p90).toBeCloseTo(naiveQuantile(xs, 0.9), 9);
      expect(s.min).toBe(Math.min(...xs));
      expect(s.max).toBe(Math.max(...xs));
      expect(s.p10).toBeLessThanOrEqual(s.median);
      expect(s.median).toBeLessThanOrEqual(s.p90);
    }
  });

  it('rejects empty samples, NaN and q outside [0, 1]', () => {
    expect(() => median([])).toThrow(StatsError);
    expect(() => median([1, Number.NaN])).toThrow(/non-finite/);
    expect(() => quantile([1], 1.5)).toThrow(/\[0, 1\]/);
  });
});

function sample(): Record<string, unknown> {
  return {
    bench: 'x',
    command: 'node dist/cli.js x',
    date: '2026-11-29T10:00:00.000Z',
    gitCommit: 'abc1234',
    machine: { cpu: 'some cpu', cores: 2, node: 'v20.20.2', gpu: 'NVIDIA H200' },
    config: { dtype: 'f32', repeats: 5 },
    rows: [{ kernel: 'dense', context: 1024, medianUs: 12.5, p10Us: 12, p90Us: 13 }],
    summary: { topkMElemPerS: 60.1 },
  };
}

describe('results shape', () => {
  it('accepts the RESULTS shape', () => {
    expect(validateResults(sample()).bench).toBe('x');
  });

  it.each([
    ['bench', (r: Record<string, unknown>) => delete r.bench, /results\.bench: must be a non-empty string/],
    ['date', (r: Record<string, unknown>) => (r.date = 'yesterday'), /results\.date/],
    [
      'machine.cores',
      (r: Record<string, unknown>) => ((r.machine as Record<string, unknown>).cores = 0),
      /cores/,
    ],
    [
      'rows[0].medianUs',
      (r: Record<string, unknown>) => ((r.rows as Record<string, unknown>[])[0].medianUs = Number.NaN),
      /rows\[0\]\.medianUs/,
    ],
    ['summary', (r: Record<string, unknown>) => (r.summary = { speedup: null }), /summary\.speedup/],
    ['extra field', (r: Record<string, unknown>) => (r.extra = 1), /results\.extra: is not a field/],
    ['rows', (r: Record<string, unknown>) => (r.rows = {}), /results\.rows: must be an array/],
  ])('rejects a bad %s with an error naming it', (_, mutate, message) => {
    const r = sample();
    mutate(r);
    expect(() => validateResults(r)).toThrow(ResultsShapeError);
    expect(() => validateResults(r)).toThrow(message);
  });

  it('renders a Markdown table and an SVG bar per timed row', () => {
    const r = validateResults(sample());
    const md = toMarkdown(r);
    expect(md).toContain('| kernel | context | medianUs | p10Us | p90Us |');
    expect(md).toContain('| dense | 1024 | 12.50 | 12 | 13 |');
    expect(md).toContain('| topkMElemPerS | 60.10 |');
    const svg = toSvg(r);
    expect(svg).toMatch(/^<svg/);
    expect(svg?.match(/<rect /g)?.length).toBe(1);
    expect(toSvg(validateResults({ ...sample(), rows: [{ a: 'b' }] }))).toBeUndefined();
  });
});

describe('CLI arguments', () => {
  it('parses a run', () => {
    expect(
      parseCliArgs(['core-topk', '--repeats', '7', '--warmup=0', '--quick', '--out', 'a.json'], names),
    ).toEqual({
      kind: 'run',
      bench: 'core-topk',
      options: { repeats: 7, warmup: 0, quick: true },
      out: 'a.json',
    });
    expect(parseCliArgs(['core-topk', '--quick', '--', '--instances', '5'], names)).toEqual({
      kind: 'run',
      bench: 'core-topk',
      options: { quick: true },
      benchArgs: ['--instances', '5'],
    });
    expect(parseCliArgs(['list'], names)).toEqual({ kind: 'list' });
    expect(parseCliArgs(['--help'], names)).toEqual({ kind: 'help' });
  });

  it.each([
    [[], /no benchmark named/],
    [['nope'], /unknown benchmark "nope"; known: core-topk, core-attention/],
    [['core-topk', '--repeats', '0'], /--repeats must be an integer >= 1, got "0"/],
    [['core-topk', '--repeats', '2.5'], /--repeats must be an integer/],
    [['core-topk', '--warmup'], /--warmup needs a value/],
    [['core-topk', '--warmup', '-1'], /--warmup needs a value|--warmup must be/],
    [['core-topk', '--out', 'x.txt'], /--out must name a \.json file/],
    [['core-topk', '--fast'], /unknown option "--fast"/],
    [['core-topk', 'core-attention'], /one benchmark per run/],
    [['--quick'], /no benchmark named/],
  ])('rejects %j', (argv, message) => {
    expect(() => parseCliArgs(argv, names)).toThrow(CliError);
    expect(() => parseCliArgs(argv, names)).toThrow(message);
  });
});

describe('runBench', () => {
  const bench: Bench = {
    name: 'fake',
    description: 'sleeps a little',
    defaults: { repeats: 4 },
    async run(ctx) {
      let calls = 0;
      const s = await ctx.time('spin', () => {
        calls++;
        const t = performance.now();
        while (performance.now() - t < 0.2) {}
      });
      return {
        config: { calls },
        rows: [{ kernel: 'spin', medianUs: s.median, p10Us: s.p10, p90Us: s.p90 }],
        summary: { spinMedianUs: s.median },
        machine: { gpu: 'none' },
      };
    },
  };

  it('times warmup + repeats calls and writes JSON, Markdown and SVG in the RESULTS shape', async () => {
    const options = resolveOptions(bench, { warmup: 2 });
    expect(options).toEqual({ warmup: 2, repeats: 4, quick: false });
    const r = await runBench(
      bench,
      options,
      { command: 'node cli.js fake', gitCommit: 'abc', machine: { cpu: 'c', cores: 1, node: 'v20' } },
      () => {},
    );
    expect(r.config).toMatchObject({ calls: 6, warmup: 2, repeats: 4 });
    expect(r.machine.gpu).toBe('none');
    expect(r.summary.spinMedianUs).toBeGreaterThanOrEqual(200);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kascade-bench-test-'));
    try {
      const files = writeResults(r, path.join(dir, 'fake.json'));
      expect(files.map((f) => path.basename(f))).toEqual(['fake.json', 'fake.md', 'fake.svg']);
      expect(validateResults(JSON.parse(readFileSync(files[0], 'utf8')))).toEqual(r);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SVG axis', () => {
  const widths = (svg: string | undefined) =>
    [...(svg ?? '').matchAll(/<rect [^>]*width="([\d.]+)"/g)].map((m) => Number(m[1]));
  const results = (values: number[]) =>
    validateResults({ ...sample(), rows: values.map((v, i) => ({ kernel: `k${i}`, medianUs: v })) });

  it('is linear within a 100x spread and logarithmic past it, bars ordered like the values', () => {
    const lin = toSvg(results([10, 20, 40]));
    expect(lin).not.toMatch(/log scale/);
    const w = widths(lin);
    expect(w[1] / w[0]).toBeCloseTo(2, 1);
    const logSvg = toSvg(results([1, 100, 10000]));
    expect(logSvg).toMatch(/log scale/);
    const l = widths(logSvg);
    expect(l[0]).toBeLessThan(l[1]);
    expect(l[1]).toBeLessThan(l[2]);
    expect(l[1] - l[0]).toBeCloseTo(l[2] - l[1], 0); // equal steps for equal ratios
  });
});
