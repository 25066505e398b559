import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { PolicySpec } from '@kascade/engine';
import { describe, expect, it } from 'vitest';
import { findDemoModelPackage, type TaskInstance } from './data.js';
import {
  completionText,
  type Job,
  jobUnits,
  openEngine,
  PREFILL_CHUNK_TILES,
  prefillIsDense,
  prefillOptions,
  runTask,
  runTasks,
} from './runner.js';

const instance = (id: string, prompt = `prompt ${id}`): TaskInstance => ({
  id,
  split: 'test',
  family: 'niah_single',
  length: 1024,
  promptTokens: 10,
  prompt,
  answer: '42',
});

const plan = { budget: { percent: 10, kMin: 16, roundTo: 1, tileSize: 32 }, anchors: [0] };
const dense: PolicySpec = { kind: 'dense' };
const kascade: PolicySpec = { kind: 'kascade', plan };
const decodeOnly: PolicySpec = { kind: 'kascade', plan, decodeOnly: true };

describe('accuracy runner: shared dense prefills', () => {
  it('groups a dense task with the decode-only tasks of the same instance, nothing else', () => {
    expect(prefillIsDense(dense)).toBe(true);
    expect(prefillIsDense(decodeOnly)).toBe(true);
    expect(prefillIsDense(kascade)).toBe(false);
    const a = instance('a');
    const b = instance('b');
    const jobs: Job[] = [
      { kind: 'task', cell: 0, spec: dense, instance: a },
      { kind: 'task', cell: 0, spec: dense, instance: b },
      { kind: 'task', cell: 1, spec: kascade, instance: a },
      { kind: 'task', cell: 2, spec: decodeOnly, instance: b },
      { kind: 'task', cell: 2, spec: decodeOnly, instance: a },
      { kind: 'task', cell: 3, spec: decodeOnly, instance: instance('a', 'another prompt') },
    ];
    expect(jobUnits(jobs)).toEqual([[0, 4], [1, 3], [2], [5]]);
  });

  const modelDir = (() => {
    try {
      const dir = path.join(findDemoModelPackage(), 'model');
      return existsSync(path.join(dir, 'kascade-plan.json')) ? dir : undefined;
    } catch {
      return undefined;
    }
  })();

  it.skipIf(!modelDir)(
    'a shared prefill gives the same completions as separate runs (demo model)',
    async () => {
      const planJson = readFileSync(path.join(modelDir!, 'kascade-plan.json'), 'utf8');
      const engine = await openEngine({ modelDir: modelDir!, planJson });
      try {
        const realPlan = JSON.parse(planJson) as object;
        const specs: PolicySpec[] = [
          { kind: 'dense' },
          { kind: 'kascade', plan: realPlan, decodeOnly: true },
          { kind: 'kascade', plan: realPlan },
        ];
        const text = 'The special magic number is 7351. Remember it. '.repeat(12);
        const task = { ...instance('x', `${text}What is the special magic number?`), answer: '7351' };
        // The premise: a decode-only policy's prefill is the dense one, number for number.
        const model = engine.cpuModel;
        const ids = engine.tokenize(task.prompt);
        const prefill = (spec: PolicySpec) => {
          const policy = engine.createPolicy(spec);
          return model.prefill(model.createSequence(ids.length), ids, policy, { tileSize: policy.tileSize });
        };
        expect(Array.from(prefill(specs[1]!))).toEqual(Array.from(prefill(specs[0]!)));
        expect(Array.from(prefill(specs[2]!))).not.toEqual(Array.from(prefill(specs[0]!)));
        // Chunks of several tiles give the same numbers as one tile at a time.
        for (const spec of [specs[0]!, specs[2]!]) {
          const policy = engine.createPolicy(spec);
          const chunked = model.prefill(
            model.createSequence(ids.length),
            ids,
            policy,
            prefillOptions(policy),
          );
          expect(prefillOptions(policy).chunkTiles).toBe(PREFILL_CHUNK_TILES);
          expect(Array.from(chunked)).toEqual(Array.from(prefill(spec)));
        }
        const together = runTasks(engine, specs, task);
        const apart = specs.map((s) => runTask(engine, s, task));
        expect(together.map((r) => r.kind === 'task' && r.completion)).toEqual(
          apart.map((r) => r.kind === 'task' && r.completion),
        );
        expect(together.map((r) => r.kind === 'task' && r.correct)).toEqual(
          apart.map((r) => r.kind === 'task' && r.correct),
        );
      } finally {
        await engine.dispose();
      }
    },
    60_000,
  );
});

describe('completion text', () => {
  it('no generated token (EOS first) is the empty string, without asking the tokenizer', () => {
    const strict = {
      decode(ids: readonly number[]) {
        if (ids.length === 0) throw new Error('token_ids must be a non-empty array of integers.');
        return ids.join(',');
      },
    };
    expect(completionText(strict, [])).toBe('');
    expect(completionText(strict, [5, 7])).toBe('5,7');
  });
});
