import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePlan } from '@kascade/anchors';
import { describe, expect, it } from 'vitest';
import { main, parseDevSet, progressBar } from './cli.js';

function capture() {
  let out = '';
  let err = '';
  return {
    io: {
      stdout: { write: (s: string) => (out += s) },
      stderr: { write: (s: string) => (err += s), isTTY: false },
    },
    out: () => out,
    err: () => err,
  };
}

describe('kascade CLI', () => {
  it('calibrate writes a valid plan, shows progress and a summary table', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kascade-cli-'));
    const data = join(dir, 'dev.jsonl');
    const out = join(dir, 'plan.json');
    await writeFile(
      data,
      [
        JSON.stringify({ prompt: 'Calibration prompt one. '.repeat(8) }),
        '',
        JSON.stringify({ text: 'A second prompt, longer. '.repeat(9) }),
        JSON.stringify('a third, as a bare string '.repeat(7)),
      ].join('\n'),
    );
    const c = capture();
    const code = await main(
      [
        'calibrate',
        '--model',
        'random',
        '--data',
        data,
        '--anchors',
        '2',
        '--out',
        out,
        '--kmin',
        '16',
        '--tile',
        '16',
      ],
      c.io,
    );
    expect(c.err()).not.toMatch(/kascade: /);
    expect(code).toBe(0);
    const plan = parsePlan(await readFile(out, 'utf8'), { layers: 4, heads: 4, kvHeads: 2, headDim: 32 });
    expect(plan.anchors).toHaveLength(2);
    expect(plan.calibration!.prompts).toBe(3);
    expect(c.err()).toContain('3/3 prompts');
    expect(c.out()).toMatch(/anchors: 0 \d/);
    expect(
      c
        .out()
        .split('\n')
        .filter((l) => /^\d+ +(dense|anchor|reuse)/.test(l)),
    ).toHaveLength(4);
  });

  it('calibrate with completions: several K from one pass, {k} in --out, a JSON report', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kascade-cli-'));
    const data = join(dir, 'dev.jsonl');
    await writeFile(
      data,
      [
        JSON.stringify({ prompt: 'Find the value of X. '.repeat(8), completion: ' X is 7' }),
        JSON.stringify({ prompt: 'A second prompt, longer. '.repeat(9) }),
      ].join('\n'),
    );
    const c = capture();
    const code = await main(
      [
        'calibrate',
        '--model',
        'random',
        '--data',
        data,
        '--anchors',
        '2,3,auto',
        '--out',
        join(dir, 'plan-{k}.json'),
        '--report',
        join(dir, 'report.json'),
        '--kmin',
        '16',
        '--tile',
        '16',
      ],
      c.io,
    );
    expect(c.err()).not.toMatch(/kascade: /);
    expect(code).toBe(0);
    expect(c.err()).toContain('1 with a completion');
    const shape = { layers: 4, heads: 4, kvHeads: 2, headDim: 32 };
    expect(parsePlan(await readFile(join(dir, 'plan-2.json'), 'utf8'), shape).anchors).toHaveLength(2);
    expect(parsePlan(await readFile(join(dir, 'plan-3.json'), 'utf8'), shape).anchors).toHaveLength(3);
    parsePlan(await readFile(join(dir, 'plan-auto.json'), 'utf8'), shape);
    const report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8'));
    expect(report.decodeSteps).toBeGreaterThan(0);
    expect(report.decodeSimilarity).toHaveLength(4);
    expect(report.prefillSimilarity[0][0]).toBe(1);
    expect(report.layerSimilarity[1][0]).toBeNull();
    expect(report.headSimilarity[0][2]).toHaveLength(2);
    expect(report.headSimilarity[2][2][1][1]).toBe(1);
    const d = capture();
    expect(await main(['calibrate', '--data', data, '--anchors', '2,3', '--out', 'x.json'], d.io)).toBe(2);
    expect(d.err()).toMatch(/\{k\}/);
    const e = capture();
    expect(
      await main(
        ['calibrate', '--data', data, '--anchors', '2', '--out', 'x.json', '--attend-from', 'x'],
        e.io,
      ),
    ).toBe(2);
    expect(e.err()).toMatch(/--attend-from/);
  });

  it('bad arguments exit non-zero with a message naming the problem', async () => {
    const c = capture();
    expect(await main(['calibrate', '--anchors', '2', '--out', 'x.json'], c.io)).toBe(2);
    expect(c.err()).toMatch(/--data/);
    const d = capture();
    expect(await main(['frobnicate'], d.io)).toBe(2);
    expect(d.err()).toMatch(/unknown command/);
    expect(() => parseDevSet('{"prompt": 1}\n', 'f.jsonl')).toThrow(/f.jsonl:1/);
    expect(() => parseDevSet('not json', 'f.jsonl')).toThrow(/not valid JSON/);
  });

  it('generate streams text and prints usage', async () => {
    const c = capture();
    expect(
      await main(
        [
          'generate',
          '--model',
          'random',
          '--prompt',
          'hi there',
          '--max-tokens',
          '5',
          '--policy',
          'streaming',
        ],
        c.io,
      ),
    ).toBe(0);
    expect(c.err()).toMatch(/\[streaming\] 9 prompt \+ 5 generated tokens/);
  });

  it('progress bar', () => {
    expect(progressBar({ done: 1, total: 4, tokens: 100, elapsedMs: 1500 }, 8)).toBe(
      '[##......] 1/4 prompts  100 tokens  1.5 s',
    );
  });
});
