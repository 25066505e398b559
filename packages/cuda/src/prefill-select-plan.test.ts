import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDevCheck, nvccPath } from './dev-check.test-support.js';

// The sampled select's host-visible plan (kernels/cuda/prefill_v9_plan.h: the sample of a row, the band of sample
// ranks around the k-th, the tiles whose rows take it), printed by kernels/cuda/dev/prefill_select_plan_check.cu
// and checked against what it must be: the sample counted position by position, the band against the binomial
// spread it claims, random rows whose k-th largest must fall inside it, the split of tiles against every row.

interface Band {
  ns: number;
  rTop: number;
  rBot: number;
}

/** Seeded uniform numbers in [0, 1) (a 32-bit LCG's high bits), so the random rows are the same on every run. */
function uniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return (a >>> 8) / 16777216;
  };
}

/** The sampled positions of a row of st scores: the first 128 of every 1024. */
const sampled = (x: number) => x % 1024 < 128;

describe.skipIf(!nvccPath)('prefill sampled select plan: the C++ functions (nvcc found)', () => {
  let dir = '';
  let exe = '';
  const run = (args: (string | number)[]): string[] => {
    const r = spawnSync(exe, args.map(String), { encoding: 'utf8', maxBuffer: 64 << 20 });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout.trim().split('\n');
  };
  const bands = (pairs: [number, number][]): Band[] =>
    run(['band', ...pairs.flat()]).map((l) => JSON.parse(l) as Band);

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'pf-select-plan-'));
    const built = buildDevCheck('prefill_select_plan_check', dir);
    expect(built.error, built.error).toBeUndefined();
    exe = built.exe;
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('counts the sample of a row position by position', () => {
    const sts = [1024, 1056, 1120, 1152, 2048, 2080, 16384, 16416, 17408, 17440, 131040, 131072];
    const got = bands(sts.map((st) => [1, st]));
    for (const [i, st] of sts.entries()) {
      let ns = 0;
      for (let x = 0; x < st; x++) if (sampled(x)) ns++;
      expect(got[i]?.ns, `st ${st}`).toBe(ns);
    }
  });

  it('bounds a band of 3.5 binomial standard deviations + 8 around the k-th expected sample rank', () => {
    const pairs: [number, number][] = [];
    for (const st of [1024, 4096, 16384, 16416, 65536, 131040])
      for (const k of [1, 32, Math.round(st / 10), Math.round(st / 2), st - 32, st - 1]) pairs.push([k, st]);
    const got = bands(pairs);
    for (const [i, [k, st]] of pairs.entries()) {
      const b = got[i] as Band;
      const ks = (k * b.ns) / st;
      const d = 3.5 * Math.sqrt(ks * (1 - k / st)) + 8;
      const why = `k ${k}, st ${st}: ${JSON.stringify(b)}, ks ${ks}`;
      expect(b.rTop, why).toBeLessThanOrEqual(ks - d + 1e-3);
      expect(b.rTop, why).toBeGreaterThan(ks - d - 1 - 1e-3);
      expect(b.rBot, why).toBeLessThanOrEqual(b.ns);
      expect(b.rBot, why).toBeGreaterThanOrEqual(Math.min(b.ns, ks + d - 1e-3));
      expect(b.rBot, why).toBeLessThan(ks + d + 1 + 1e-3);
    }
  });

  it('holds the k-th largest score of random rows inside the band', () => {
    const next = uniform(20260930);
    const cases: [number, number][] = [
      [102, 1024],
      [410, 4096],
      [1638, 16384],
      [1311, 16416],
    ];
    const got = bands(cases);
    const trials = 60;
    for (const [i, [k, st]] of cases.entries()) {
      const b = got[i] as Band;
      let missed = 0;
      for (let trial = 0; trial < trials; trial++) {
        const row = Float64Array.from({ length: st }, next);
        const kth = Float64Array.from(row).sort()[st - k] as number;
        const sample = Float64Array.from(row.filter((_, x) => sampled(x)))
          .sort()
          .reverse();
        expect(sample.length).toBe(b.ns);
        // The band: from the sample's rTop-th largest (the row's top when rTop < 1) down to its rBot-th largest.
        const top = b.rTop >= 1 ? (sample[b.rTop - 1] as number) : Number.POSITIVE_INFINITY;
        const bottom = sample[b.rBot - 1] as number;
        if (!(kth <= top && kth >= bottom)) missed++;
      }
      // 3.5 standard deviations + 8 on each side: a miss (the kernel's exact fallback) is rare.
      expect(missed, `k ${k}, st ${st}`).toBeLessThanOrEqual(1);
    }
  });

  it('sends every row of at least rowsFrom scores, and only those, to the sampled select', () => {
    const cases: [number, number, number][] = [];
    for (const queryStart of [0, 96, 1024, 16384, 20480])
      for (const tiles of [1, 11, 49, 600])
        for (const rowsFrom of [1024, 16384, 16400]) cases.push([queryStart, tiles, rowsFrom]);
    const got = run(['tiles', ...cases.flat()]).map((l) => (JSON.parse(l) as { t0: number }).t0);
    for (const [i, [queryStart, tiles, rowsFrom]] of cases.entries()) {
      const t0 = got[i] as number;
      expect(t0).toBeGreaterThanOrEqual(0);
      expect(t0).toBeLessThanOrEqual(tiles);
      for (let t = 0; t < tiles; t++)
        expect(t >= t0, `queryStart ${queryStart}, tile ${t}, rowsFrom ${rowsFrom}`).toBe(
          queryStart + 32 * t >= rowsFrom,
        );
    }
  });
});
