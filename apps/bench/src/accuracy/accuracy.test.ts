import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCliArgs } from '../args.js';
import bench, { accuracyRows } from '../benches/accuracy.js';
import { runBench } from '../run.js';
import { toAccuracySvg } from './chart.js';
import { findDemoModelPackage } from './data.js';
import { exactMatch, klDivergence, wilsonInterval } from './metrics.js';
import { AccuracyOptionError, gridCells, parseAccuracyArgs } from './options.js';

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
  if (!hasModel) it.skip('needs packages/demo-model/model/kascade-plan.json (calibrate first)', () => {});
});
