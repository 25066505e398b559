import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { appendJournal, JournalError, jobKey, readJournal } from './journal.js';
import type { GridCell } from './options.js';
import type { Job, JobResult } from './runner.js';

const cell = (policy: GridCell['policy'], context = 4096, percent = 10): GridCell => ({
  grid: 'main',
  policy,
  context,
  percent,
  perFamily: 1,
});
const instance = (id: string) => ({
  id,
  split: 'test',
  family: 'kv' as const,
  length: 4096,
  promptTokens: 10,
  prompt: `prompt ${id}`,
  answer: 'a',
  meta: {},
});
const spec = { policy: 'dense' } as unknown as Extract<Job, { kind: 'task' }>['spec'];

describe('accuracy journal', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const file = () => {
    const d = mkdtempSync(path.join(tmpdir(), 'journal-'));
    dirs.push(d);
    return path.join(d, 'j.jsonl');
  };

  it('keeps finished jobs by what they compute and maps cells to a reordered grid', () => {
    const f = file();
    const cells = [cell('dense'), cell('kascade')];
    const job: Job = { kind: 'task', cell: 1, spec, instance: instance('i1') };
    const result: JobResult = {
      kind: 'task',
      cell: 1,
      id: 'i1',
      family: 'kv',
      correct: true,
      completion: ' a',
      promptTokens: 10,
      ms: 5,
    };
    appendJournal(f, job, result, cells);
    const text: Job = {
      kind: 'text',
      run: { id: 't1', text: 'x' },
      policies: [{ cell: 1, spec }],
      maxTokens: 64,
      positions: 4,
    };
    appendJournal(
      f,
      text,
      { kind: 'text', id: 't1', tokens: 64, kl: [{ cell: 1, values: [0.5] }], ms: 3 },
      cells,
    );

    const reordered = [cell('streaming'), cell('kascade'), cell('dense')];
    const back = readJournal(f, reordered);
    const movedJob: Job = { ...job, cell: 1 };
    expect(jobKey(movedJob, reordered)).toBe(jobKey(job, cells));
    expect(back.get(jobKey(movedJob, reordered))).toMatchObject({ kind: 'task', cell: 1, correct: true });
    const movedText: Job = { ...text, policies: [{ cell: 1, spec }] };
    expect(back.get(jobKey(movedText, reordered))).toMatchObject({ kl: [{ cell: 1, values: [0.5] }] });

    // a grid without the kascade cell cannot use either line
    expect(readJournal(f, [cell('dense')]).size).toBe(0);
  });

  it('never reuses a plan-dependent row of another plan; plan-free rows are shared', () => {
    const f = file();
    const withPlan = (policy: GridCell['policy'], hash: string): GridCell => ({
      ...cell(policy),
      plan: { label: 'plan', hash },
    });
    const old = [cell('dense'), withPlan('kascade', 'old')];
    const done = (c: number, id: string): JobResult => ({
      kind: 'task',
      cell: c,
      id,
      family: 'kv',
      correct: true,
      completion: ' a',
      promptTokens: 10,
      ms: 5,
    });
    appendJournal(f, { kind: 'task', cell: 0, spec, instance: instance('i1') }, done(0, 'i1'), old);
    appendJournal(f, { kind: 'task', cell: 1, spec, instance: instance('i1') }, done(1, 'i1'), old);
    expect(readJournal(f, old).size).toBe(2);
    const fresh = [cell('dense'), withPlan('kascade', 'new')];
    const back = readJournal(f, fresh);
    expect([...back.keys()]).toEqual([
      jobKey({ kind: 'task', cell: 0, spec, instance: instance('i1') }, fresh),
    ]);
    expect(jobKey({ kind: 'task', cell: 1, spec, instance: instance('i1') }, fresh)).toContain('#new');
  });

  it('ignores a torn last line, rejects a malformed one elsewhere, and reads a missing file as empty', () => {
    const f = file();
    expect(readJournal(f, [cell('dense')]).size).toBe(0);
    const cells = [cell('dense')];
    const job: Job = { kind: 'task', cell: 0, spec, instance: instance('i2') };
    appendJournal(
      f,
      job,
      {
        kind: 'task',
        cell: 0,
        id: 'i2',
        family: 'kv',
        correct: false,
        completion: 'b',
        promptTokens: 10,
        ms: 1,
      },
      cells,
    );
    appendFileSync(f, '{"key": "task dense@40');
    expect(readJournal(f, cells).size).toBe(1);
    const lines = readFileSync(f, 'utf8');
    appendFileSync(f, `\n${lines}`);
    expect(() => readJournal(f, cells)).toThrow(JournalError);
  });
});
