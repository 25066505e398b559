import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCliArgs } from '../args.js';
import bench, { accuracyRows, planGaps, roundRobin } from '../benches/accuracy.js';
import { runBench } from '../run.js';
import { toAccuracySvg } from './chart.js';
import { findDemoModelPackage } from './data.js';
import { exactMatch, klDivergence, wilsonInterval } from './metrics.js';
import { AccuracyOptionError, cellId, gridCells, parseAccuracyArgs } from './options.js';
import { planHash } from './policies.js';
import type { Job } from './runner.js';

describe('accuracy metrics', () => {
  it('Wilson interval matches the closed form at known points', () => {
    const a = wilsonInterval(0, 10);
    expect(a.low).toBe(0);
    expect(a.high).toBeCloseTo(0.2775, 4);
    const b = wilsonInterval(5, 10);
    expect(b.low).toBeCloseTo(0.2366, 4);
    expect(b.high).toBeCloseTo(0.7634, 4);
    const c = wilsonInterval(40, 40);
    expect(c.high).toBe(1);
    expect(c.low).toBeCloseTo(0.9124, 4);
    expect(() => wilsonInterval(3, 2)).toThrow(RangeError);
  });

  it('KL is 0 for equal logits, shift-invariant, and matches a hand computation', () => {
    const p = [Math.log(0.5), Math.log(0.25), Math.log(0.25)];
    const q = [Math.log(0.25), Math.log(0.5), Math.log(0.25)];
    expect(
      klDivergence(
        p,
        p.map((x) => x + 3),
      ),
    ).toBeCloseTo(0, 12);
    expect(klDivergence(p, q)).toBeCloseTo(0.5 * Math.log(2) + 0.25 * Math.log(0.5), 12);
    expect(() => klDivergence([1, 2], [1])).toThrow(RangeError);
  });

  it('exact match needs EOS and the whole answer', () => {
    expect(exactMatch(' 4821337', '4821337', true)).toBe(true);
    expect(exactMatch(' 4821337', '4821337', false)).toBe(false);
    expect(exactMatch(' 482133', '4821337', true)).toBe(false);
  });
});

describe('accuracy options and grid', () => {
  it('rejects unknown policies, families and options by name', () => {
    expect(() => parseAccuracyArgs(['--policies', 'dense,sparse'], false)).toThrow(/sparse/);
    expect(() => parseAccuracyArgs(['--families', 'niah'], false)).toThrow(AccuracyOptionError);
    expect(() => parseAccuracyArgs(['--instances', '0'], false)).toThrow(/--instances/);
    expect(() => parseAccuracyArgs(['--bogus', '1'], false)).toThrow(AccuracyOptionError);
  });

  it('the CLI passes what follows -- to the bench', () => {
    const args = parseCliArgs(['accuracy', '--quick', '--', '--instances', '5', '--quick'], ['accuracy']);
    expect(args).toMatchObject({
      kind: 'run',
      bench: 'accuracy',
      options: { quick: true },
      benchArgs: ['--instances', '5', '--quick'],
    });
  });

  it('builds the main grid and the side grid without duplicates', () => {
    const cells = gridCells(parseAccuracyArgs([], false), 4096);
    const main = cells.filter((c) => c.grid === 'main');
    expect(main.map((c) => c.policy)).toEqual([
      'dense',
      'kascade',
      'kascade-decode-only',
      'all-heads-pooled',
      'oracle-topk',
      'streaming',
    ]);
    expect(main.every((c) => c.context === 4096 && c.percent === 10 && c.perFamily === 40)).toBe(true);
    const side = cells.filter((c) => c.grid === 'side').map((c) => `${c.policy}@${c.context}p${c.percent}`);
    expect(side).toEqual(['kascade@4096p5', 'kascade@4096p20', 'dense@2048p10', 'kascade@2048p10']);
  });

  it('--plans gives each plan-dependent policy one cell per plan, keyed by the plan hash', () => {
    const o = parseAccuracyArgs(
      [
        '--plans',
        'k4=a.json,k6=b.json',
        '--policies',
        'dense,kascade,oracle-topk',
        '--grids',
        'main',
        '--split',
        'dev',
      ],
      false,
    );
    expect(o.split).toBe('dev');
    expect(o.plans).toEqual([
      { label: 'k4', file: 'a.json' },
      { label: 'k6', file: 'b.json' },
    ]);
    const cells = gridCells(o, 4096, [
      { label: 'k4', hash: 'aaa' },
      { label: 'k6', hash: 'bbb' },
    ]);
    expect(cells.map(cellId)).toEqual([
      'dense@4096/p10',
      'kascade@4096/p10#aaa',
      'kascade@4096/p10#bbb',
      'oracle-topk@4096/p10',
    ]);
    expect(() => parseAccuracyArgs(['--plans', 'k4=a.json', '--plan', 'b.json'], false)).toThrow(
      /--plan or --plans/,
    );
    expect(() => parseAccuracyArgs(['--plans', 'k4=a.json,k4=b.json'], false)).toThrow(/distinct/);
    expect(() => parseAccuracyArgs(['--plans', 'a.json'], false)).toThrow(/label=file/);
    expect(() => parseAccuracyArgs(['--split', 'train'], false)).toThrow(/--split/);
  });

  it('the plan hash follows anchors, head maps and budget, not the percent or the calibration scores', () => {
    const plan = {
      budget: { percent: 10, kMin: 128, roundTo: 1, tileSize: 32 },
      anchors: [0, 1, 2, 7],
      headMaps: [
        [0, 1],
        [0, 1],
        [0, 1],
        [1, 1],
      ],
      calibration: { objective: 0.5 },
    };
    const h = planHash(plan);
    expect(h).toMatch(/^[0-9a-f]{12}$/);
    const rescored = { ...plan, budget: { ...plan.budget, percent: 20 }, calibration: { objective: 0.9 } };
    expect(planHash(rescored)).toBe(h);
    expect(planHash({ ...plan, anchors: [0, 1, 3, 7] })).not.toBe(h);
    expect(
      planHash({
        ...plan,
        headMaps: [
          [0, 1],
          [0, 1],
          [0, 1],
          [0, 1],
        ],
      }),
    ).not.toBe(h);
    expect(planHash({ ...plan, budget: { ...plan.budget, kMin: 64 } })).not.toBe(h);
  });

  it('planGaps gives each plan its pooled and worst-family gap to dense', () => {
    const o = parseAccuracyArgs(
      ['--plans', 'a=x,b=y', '--policies', 'dense,kascade', '--grids', 'main'],
      false,
    );
    const cells = gridCells(o, 4096, [
      { label: 'a', hash: '1' },
      { label: 'b', hash: '2' },
    ]);
    const r = (cell: number, id: string, family: 'vt' | 'kv', correct: boolean) =>
      ({ kind: 'task', cell, id, family, correct, completion: '', promptTokens: 1, ms: 1 }) as const;
    const results = [
      r(0, 'v1', 'vt', true),
      r(0, 'k1', 'kv', true),
      r(1, 'v1', 'vt', false),
      r(1, 'k1', 'kv', true),
      r(2, 'v1', 'vt', true),
      r(2, 'k1', 'kv', true),
    ];
    const rows = accuracyRows(cells, results, ['vt', 'kv']);
    expect(rows.filter((x) => x.policy === 'kascade' && x.family === 'all').map((x) => x.plan)).toEqual([
      'a',
      'b',
    ]);
    expect(planGaps(rows, [{ label: 'a' }, { label: 'b' }], ['vt', 'kv'])).toEqual({
      gapPts_a: 50,
      worstFamilyGapPts_a: 100,
      gapPts_b: 0,
      worstFamilyGapPts_b: 0,
    });
  });

  it('round-robin order takes one job per cell in turn, text jobs last', () => {
    const task = (cell: number) => ({ kind: 'task', cell }) as unknown as Job;
    const text = { kind: 'text' } as unknown as Job;
    const jobs = [task(0), task(0), task(0), task(1), task(1), text, task(2)];
    expect(roundRobin([0, 1, 2, 3, 4, 5, 6], jobs)).toEqual([0, 3, 6, 1, 4, 2, 5]);
    expect(roundRobin([1, 2, 4], jobs)).toEqual([1, 4, 2]);
    expect(parseAccuracyArgs(['--order', 'round-robin'], false).order).toBe('round-robin');
  });

  it('gap to dense is paired by instance', () => {
    const cells = gridCells(
      parseAccuracyArgs(['--policies', 'dense,kascade', '--grids', 'main'], false),
      4096,
    );
    const r = (cell: number, id: string, correct: boolean) =>
      ({ kind: 'task', cell, id, family: 'vt', correct, completion: '', promptTokens: 1, ms: 1 }) as const;
    const rows = accuracyRows(
      cells,
      [r(0, 'a', true), r(0, 'b', true), r(1, 'a', true), r(1, 'b', false)],
      ['vt'],
    );
    const k = rows.find((x) => x.policy === 'kascade' && x.family === 'all')!;
    expect(k.accuracy).toBe(0.5);
    expect(k.gapVsDensePts).toBe(50);
  });
});

const hasModel = (() => {
  try {
    return existsSync(path.join(findDemoModelPackage(), 'model', 'kascade-plan.json'));
  } catch {
    return false;
  }
})();

describe('accuracy suite on the demo model (CPU, 1k)', () => {
  it.skipIf(!hasModel)(
    'runs dense and kascade on single-needle instances; dense gets them right',
    async () => {
      const results = await runBench(
        bench,
        {
          warmup: 0,
          repeats: 1,
          quick: true,
          benchArgs: [
            '--families',
            'niah_single',
            '--instances',
            '2',
            '--policies',
            'dense,kascade',
            '--context',
            '1024',
            '--kl-texts',
            '1',
            '--kl-positions',
            '4',
            '--kl-tokens',
            '192',
          ],
        },
        { command: 'test', gitCommit: 'test', machine: { cpu: 'test', cores: 1, node: process.version } },
        () => {},
      );
      expect(results.bench).toBe('accuracy');
      expect(results.summary).toEqual({}); // not the full main grid: no target figures
      const dense = results.rows.find((r) => r.policy === 'dense' && r.family === 'niah_single')!;
      expect(dense).toMatchObject({ grid: 'main', context: 1024, n: 2, correct: 2, accuracy: 1 });
      const kascade = results.rows.find((r) => r.policy === 'kascade' && r.family === 'all')!;
      expect(kascade.n).toBe(2);
      expect(kascade.ciLow as number).toBeLessThanOrEqual(kascade.accuracy as number);
      expect(typeof kascade.gapVsDensePts).toBe('number');
      const kl = results.rows.find((r) => r.grid === 'kl' && r.policy === 'kascade')!;
      expect(kl.n).toBe(4);
      expect(Number.isFinite(kl.klMeanNats) && (kl.klMeanNats as number) >= 0).toBe(true);
      expect(toAccuracySvg(results)).toContain('<svg');
    },
    120_000,
  );
  it.skipIf(!hasModel)(
    'compares two plans on the dev split: one dense cell, one kascade cell per plan',
    async () => {
      const pkg = findDemoModelPackage();
      const shipped = path.join(pkg, 'model', 'kascade-plan.json');
      const plan = JSON.parse(readFileSync(shipped, 'utf8')) as { anchors: number[]; headMaps: number[][] };
      // Every layer its own anchor: kascade then selects exactly like oracle-topk.
      const dir = mkdtempSync(path.join(tmpdir(), 'acc-plans-'));
      const allAnchors = path.join(dir, 'all.json');
      const layers = plan.headMaps.length;
      writeFileSync(
        allAnchors,
        JSON.stringify({
          ...plan,
          anchors: Array.from({ length: layers }, (_, l) => l),
          headMaps: plan.headMaps.map((m) => m.map((_, j) => j)),
          calibration: undefined,
        }),
      );
      try {
        const results = await runBench(
          bench,
          {
            warmup: 0,
            repeats: 1,
            quick: true,
            benchArgs: [
              '--split',
              'dev',
              '--families',
              'niah_single',
              '--instances',
              '1',
              '--policies',
              'dense,kascade',
              '--context',
              '1024',
              '--kl-texts',
              '0',
              '--plans',
              `shipped=${shipped},all=${allAnchors}`,
              '--journal',
              path.join(dir, 'journal.jsonl'),
            ],
          },
          { command: 'test', gitCommit: 'test', machine: { cpu: 'test', cores: 1, node: process.version } },
          () => {},
        );
        expect(results.config.split).toBe('dev');
        expect(toAccuracySvg(results)).toContain('main kascade [all] 1024 p10');
        const all = results.rows.filter((r) => r.family === 'all');
        expect(all.map((r) => `${r.policy}:${r.plan ?? '-'}`)).toEqual([
          'dense:-',
          'kascade:shipped',
          'kascade:all',
        ]);
        expect(all.every((r) => r.n === 1)).toBe(true);
        expect(results.rows.find((r) => r.policy === 'dense')).toMatchObject({ correct: 1 });
        expect(Object.keys(results.summary).sort()).toEqual([
          'gapPts_all',
          'gapPts_shipped',
          'worstFamilyGapPts_all',
          'worstFamilyGapPts_shipped',
        ]);
        // --time-limit 0 runs nothing: the same rows again, all from the journal.
        const again = await runBench(
          bench,
          {
            warmup: 0,
            repeats: 1,
            quick: true,
            benchArgs: [
              ...['--split', 'dev', '--families', 'niah_single', '--instances', '1', '--policies'],
              ...['dense,kascade', '--context', '1024', '--kl-texts', '0', '--time-limit', '0'],
              ...[
                '--plans',
                `shipped=${shipped},all=${allAnchors}`,
                '--journal',
                path.join(dir, 'journal.jsonl'),
              ],
            ],
          },
          { command: 'test', gitCommit: 'test', machine: { cpu: 'test', cores: 1, node: process.version } },
          () => {},
        );
        expect(again.config.jobsFromJournal).toBe(3);
        expect(again.rows).toEqual(results.rows);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );
  if (!hasModel) it.skip('needs packages/demo-model/model/kascade-plan.json (calibrate first)', () => {});
});
