import { describe, expect, it } from 'vitest';
import type { BenchResults } from '../results.js';
import { mergeResults } from './webgpu-common.js';
import { benchArgs, selectionErrors } from './webgpu-decode.js';

describe('webgpu-decode bench arguments', () => {
  it('parses contexts, batches, kernels and the switches', () => {
    expect(benchArgs([])).toEqual({ parity: true, sweep: true, onePass: true });
    expect(
      benchArgs([
        '--contexts=131072,8192',
        '--batches=1,8',
        '--kernels=chunked',
        '--no-parity',
        '--no-sweep',
      ]),
    ).toEqual({
      contexts: [131072, 8192],
      batches: [1, 8],
      kernels: ['chunked'],
      parity: false,
      sweep: false,
      onePass: true,
    });
    expect(benchArgs(['--no-one-pass']).onePass).toBe(false);
    expect(benchArgs(['--sweep-only']).sweepOnly).toBe(true);
    expect(benchArgs(['--deadline-s=30']).deadlineS).toBe(30);
    expect(benchArgs(['--probe']).probe).toBe(true);
    expect(benchArgs(['--probe-only']).probeOnly).toBe(true);
    expect(benchArgs([]).probe).toBeUndefined();
    expect(benchArgs(['--tuning={"loadsAhead":true}']).tuning).toEqual({ loadsAhead: true });
    expect(benchArgs(['--flush=read']).flush).toBe('read');
  });

  it('names what it rejects', () => {
    expect(() => benchArgs(['--contexts=8k'])).toThrow(/--contexts takes positive integers.*'8k'/);
    expect(() => benchArgs(['--kernels=teams,fast'])).toThrow(/unknown kernel 'fast'/);
    expect(() => benchArgs(['--repeat=3'])).toThrow(/unknown argument '--repeat=3'/);
    expect(() => benchArgs(['--tuning=[1]'])).toThrow(/--tuning takes a JSON object/);
    expect(() => benchArgs(['--tuning={x'])).toThrow(/--tuning takes a JSON object/);
    expect(() => benchArgs(['--flush=none'])).toThrow(/--flush takes copy or read, got 'none'/);
  });
});

describe('mergeResults', () => {
  const part = (rows: number[], summary: Record<string, number>, bench = 'webgpu-decode'): BenchResults => ({
    bench,
    command: `run ${rows.join(',')}`,
    date: '2026-11-29T12:00:00.000Z',
    gitCommit: 'abc1234',
    machine: { cpu: 'x', cores: 16, node: 'v20' },
    config: { heads: 32 },
    rows: rows.map((context) => ({ kernel: 'dense', context, medianUs: context / 1000 })),
    summary,
  });

  it('joins rows in order and merges the summaries', () => {
    const m = mergeResults([part([131072], { a: 1, b: 2 }), part([32768, 8192], { b: 3, c: 4 })]);
    expect(m.rows.map((r) => r.context)).toEqual([131072, 32768, 8192]);
    expect(m.summary).toEqual({ a: 1, b: 3, c: 4 });
    expect(m.command).toBe('run 131072 && run 32768,8192');
    expect(m.gitCommit).toBe('abc1234');
  });

  it('refuses nothing to merge and different benches', () => {
    expect(() => mergeResults([])).toThrow(/no results/);
    expect(() => mergeResults([part([1], {}), part([2], {}, 'webgpu-prefill')])).toThrow(
      /webgpu-prefill is not/,
    );
  });
});

describe('selectionErrors', () => {
  // Two rows of 6 pooled scores, k = 2: row 0's top two are keys 4 and 1, row 1's keys 0 and 5.
  const pooled = Float64Array.from([0.1, 0.3, 0.05, 0.2, 0.9, 0.0, 0.5, 0.1, 0.1, 0.0, 0.2, 0.4]);
  const sel = (indices: number[]) => ({ kvHeads: 2, k: 2, indices: Int32Array.from(indices) });

  it('passes an exact Top-k in any order', () => {
    expect(selectionErrors(sel([1, 4, 5, 0]), pooled, 6)).toBe(0);
  });

  it('counts rows with a pick below the k-th score, a duplicate or an index out of range', () => {
    expect(selectionErrors(sel([4, 3, 0, 5]), pooled, 6)).toBe(1);
    expect(selectionErrors(sel([4, 4, 0, 0]), pooled, 6)).toBe(2);
    expect(selectionErrors(sel([4, 1, 0, 6]), pooled, 6)).toBe(1);
    expect(selectionErrors(sel([4, 1, -1, 5]), pooled, 6)).toBe(1);
  });
});
