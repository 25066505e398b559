import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const training = join(dirname(fileURLToPath(import.meta.url)), '..', 'training');
const hasPython = spawnSync('python3', ['--version']).status === 0;
if (!hasPython) console.warn('skipping the training-script tests: no python3 on this machine');

function py(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('python3', args, { cwd: training, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(!hasPython)('training scripts (python3, no PyTorch needed)', () => {
  it('tasks.py: every family answers as an independent solver reads the prompt', () => {
    const r = py(['tasks.py', '--self-test', '40', '--max-files', '150']);
    expect(r.stderr).not.toContain('FAILED');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as {
      selfTest: string;
      instances: Record<string, number>;
    };
    expect(out.selfTest).toBe('ok');
    expect(Object.keys(out.instances).sort()).toEqual(
      ['kv', 'niah_multikey', 'niah_multiquery', 'niah_multivalue', 'niah_single', 'vt'].sort(),
    );
    for (const n of Object.values(out.instances)) expect(n).toBe(40);
  });

  it('tasks.py --dump: dev and test splits are distinct and hold their answers', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kascade-dump-'));
    try {
      const r = py(['tasks.py', '--dump', dir, '--max-files', '300']);
      expect(r.status).toBe(0);
      const read = (f: string) =>
        readFileSync(join(dir, f), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { id: string; family: string; prompt: string; answer: string });
      const dev = read('dev.jsonl');
      const test = read('test.jsonl');
      expect(dev).toHaveLength(180);
      expect(test).toHaveLength(420);
      const devPrompts = new Set(dev.map((x) => x.prompt));
      expect(test.filter((x) => devPrompts.has(x.prompt))).toHaveLength(0);
      for (const x of [...dev, ...test].filter((x) => x.family === 'niah_single')) {
        expect(x.prompt).toContain(`is: ${x.answer}.`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('train.py compiles (its run needs PyTorch and a GPU: see the README)', () => {
    const r = py(['-m', 'py_compile', 'train.py', 'tasks.py']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
