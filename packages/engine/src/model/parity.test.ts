import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { denseAttention } from './dense.js';
import { loadModel } from './load.js';
import type { CpuTransformer } from './model.js';

/**
 * Logit parity with Hugging Face transformers: the fixtures and their reference logits
 * come from `scripts/make_reference.py` (transformers 5, float32, eager attention).
 */
const FIXTURES = join(import.meta.dirname, '../../fixtures/hf');

interface Reference {
  name: string;
  transformers: string;
  chatMessages: { role: string; content: string }[];
  chatRendered: string;
  prompts: { text: string | null; ids: number[]; firstRow: number; logits: number[][] }[];
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

const names = readdirSync(FIXTURES).filter((n) => !n.startsWith('.'));

describe('parity with transformers', () => {
  it('has the fixtures of every architecture', () => {
    expect(names).toEqual(
      expect.arrayContaining([
        'llama-llama3rope',
        'llama-tied',
        'mistral',
        'qwen2-bias-tied',
        'qwen3-qknorm-sharded',
        'llama-bf16-bias',
      ]),
    );
  });

  for (const name of names) {
    it(`${name}: prefill and decode logits match within 1e-4, tokenizer and chat template agree`, async () => {
      const dir = join(FIXTURES, name);
      const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as Reference;
      const model = await loadModel(dir);
      // BF16 checkpoints keep their matrices in bf16 on the wasm kernels.
      expect(model.matrixDtype).toBe(name.includes('bf16') && model.kernels === 'wasm' ? 'bf16' : 'f32');
      // The matrices were read into the WebAssembly memory (shared), not left in ordinary arrays.
      if (model.kernels === 'wasm') {
        const q = (model as CpuTransformer).weights.layers[0].q;
        expect(q.buffer).toBeInstanceOf(SharedArrayBuffer);
      }
      let worst = 0;
      let rows = 0;
      for (const p of ref.prompts) {
        if (p.text !== null) expect(model.tokenizer.encode(p.text)).toEqual(p.ids);
        // Prefill up to the first reference row (in tiles of 8), then decode the rest one token at a time.
        const seq = model.createSequence(p.ids.length + 8);
        const first = model.prefill(seq, p.ids.slice(0, p.firstRow + 1), denseAttention(), { tileSize: 8 });
        worst = Math.max(worst, maxAbsDiff(first, p.logits[0]));
        rows++;
        for (let r = 1; r < p.logits.length; r++) {
          const logits = model.decode(seq, p.ids[p.firstRow + r], denseAttention());
          worst = Math.max(worst, maxAbsDiff(logits, p.logits[r]));
          rows++;
        }
        // The whole prompt in one prefill, other tile size.
        const whole = model.prefill(model.createSequence(p.ids.length), p.ids, denseAttention(), {
          tileSize: 16,
        });
        worst = Math.max(worst, maxAbsDiff(whole, p.logits[p.logits.length - 1]));
      }
      expect(rows).toBeGreaterThanOrEqual(20);
      expect(worst).toBeLessThan(1e-4);
      expect(model.tokenizer.applyChatTemplate(ref.chatMessages, { addGenerationPrompt: true })).toBe(
        ref.chatRendered,
      );
      expect(model.config.eosTokenIds).toContain(1);
      await model.dispose();
    });
  }
});
