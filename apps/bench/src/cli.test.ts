import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from './main.js';
import { validateResults } from './results.js';

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    io: {
      stdout: (t: string) => void out.push(t),
      stderr: (t: string) => void err.push(t),
      script: 'x/cli.js',
    },
  };
}

describe('kascade-bench CLI', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kascade-cli-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    [['--repeats', '3'], /no benchmark named/],
    [['core-topk', '--repeats', 'many'], /--repeats must be an integer >= 1, got "many"/],
    [['no-such-bench'], /unknown benchmark "no-such-bench"; known: .*core-topk/],
  ])('exits 2 on %j with the problem and the usage on stderr', async (argv, message) => {
    const t = io();
    expect(await main(argv, t.io)).toBe(2);
    expect(t.err.join('')).toMatch(message);
    expect(t.err.join('')).toMatch(/usage: kascade-bench <bench>/);
    expect(t.out).toEqual([]);
  });

  it('lists the registered benches', async () => {
    const t = io();
    expect(await main(['list'], t.io)).toBe(0);
    expect(t.out.join('')).toMatch(/core-topk .*\n.*core-attention|core-attention .*\n.*core-topk/s);
  });

  it('runs core-topk end to end and writes results in the RESULTS shape', async () => {
    const t = io();
    const out = path.join(dir, 'topk.json');
    expect(await main(['core-topk', '--warmup', '1', '--repeats', '3', '--out', out], t.io)).toBe(0);
    const r = validateResults(JSON.parse(readFileSync(out, 'utf8')));
    expect(r.bench).toBe('core-topk');
    expect(r.command).toBe(
      `node ${path.relative(path.resolve(__dirname, '..', '..', '..'), 'x/cli.js')} core-topk --warmup 1 --repeats 3 --out ${out}`,
    );
    expect(r.config).toMatchObject({ n: 131072, k: 13107, warmup: 1, repeats: 3 });
    expect(r.rows.map((row) => row.distribution)).toEqual(['uniform', 'softmax', 'ties', 'ascending']);
    expect(r.summary.topkMElemPerS).toBeGreaterThan(0);
    expect(t.out.join('')).toMatch(/topkMElemPerS: /);
    expect(readFileSync(path.join(dir, 'topk.md'), 'utf8')).toMatch(/^# core-topk/);
    expect(readFileSync(path.join(dir, 'topk.svg'), 'utf8')).toMatch(/^<svg/);

    rmSync(path.join(dir, 'topk.md'));
    rmSync(path.join(dir, 'topk.svg'));
    expect(await main(['render', out], t.io)).toBe(0);
    expect(readFileSync(path.join(dir, 'topk.md'), 'utf8')).toMatch(/^# core-topk/);
    expect(readFileSync(path.join(dir, 'topk.svg'), 'utf8')).toMatch(/^<svg/);
  });

  it('render rejects a file that is not in the results shape, naming the field', async () => {
    const bad = path.join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ bench: 'x' }));
    const t = io();
    expect(await main(['render', bad], t.io)).toBe(1);
    expect(t.err.join('')).toMatch(/results\.command: must be a non-empty string/);
    expect(await main(['render'], io().io)).toBe(2);
  });
});
