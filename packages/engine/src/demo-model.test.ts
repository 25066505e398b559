import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { createEngine } from './engine.js';

// The shipped @kascade/demo-model package, beside this one in the workspace (its files, not its entry:
// these checks read the held-out sets that stay in the repository).
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'demo-model');
const modelDir = join(root, 'model');

interface HeldOut {
  readonly id: string;
  readonly family: string;
  readonly length: number;
  readonly prompt: string;
  readonly answer: string;
}

function readHeldOut(split: 'dev' | 'test'): HeldOut[] {
  const text = gunzipSync(readFileSync(join(root, 'training', 'heldout', `${split}.jsonl.gz`))).toString(
    'utf8',
  );
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as HeldOut);
}

describe('the shipped demo model, loaded by the engine', () => {
  it('loads as a 12-layer GQA Llama with head dim 64', async () => {
    const engine = await createEngine({ model: modelDir, backend: 'cpu', policy: 'dense' });
    try {
      expect(engine.model).toMatchObject({ layers: 12, heads: 8, kvHeads: 2, headDim: 64, vocabSize: 4096 });
      expect(engine.model.randomWeights).toBe(false);
    } finally {
      await engine.dispose();
    }
  });

  it('tokenizes as the Python tokenizer did in training (ids recorded on the GPU machine)', async () => {
    const engine = await createEngine({ model: modelDir, backend: 'cpu', policy: 'dense' });
    try {
      const check = JSON.parse(
        readFileSync(join(root, 'training', 'logs', 'tokenizer-check.json'), 'utf8'),
      ) as Record<string, { text: string; ids: number[] }>;
      const entries = Object.entries(check);
      expect(entries.length).toBeGreaterThanOrEqual(7);
      for (const [, { text, ids }] of entries) expect(engine.tokenize(text)).toEqual(ids);
    } finally {
      await engine.dispose();
    }
  });

  it('answers a held-out single-needle instance at 1k tokens (dense, greedy)', async () => {
    const engine = await createEngine({ model: modelDir, backend: 'cpu', policy: 'dense' });
    try {
      const cases = readHeldOut('dev')
        .filter((r) => r.family === 'niah_single' && r.length === 1024)
        .slice(0, 1);
      expect(cases).toHaveLength(1);
      for (const c of cases) {
        let text = '';
        for await (const chunk of engine.generate(c.prompt, { maxTokens: 12 })) text += chunk.text;
        expect(text.trim()).toBe(c.answer);
      }
    } finally {
      await engine.dispose();
    }
  });
  it("runs the README's example", async () => {
    const engine = await createEngine({ model: modelDir, backend: 'cpu', policy: 'dense' });
    try {
      const prompt =
        'Some special magic numbers are hidden in the following text. Memorize them. I will ask about them afterwards.\n' +
        'One of the special magic numbers for bakumi is: 4821337.\n' +
        'Return the number of items in the queue.\n' +
        '\nWhat is the special magic number for bakumi mentioned in the text above?\nAnswer:';
      let text = '';
      for await (const chunk of engine.generate(prompt, { maxTokens: 12 })) text += chunk.text;
      expect(text.trim()).toBe('4821337');
    } finally {
      await engine.dispose();
    }
  });
});
