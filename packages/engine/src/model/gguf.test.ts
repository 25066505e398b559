import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { denseAttention } from './dense.js';
import { convertHfToGguf } from './gguf-convert.js';
import { permuteQK, unpermuteQK } from './gguf-format.js';
import { loadModel } from './load.js';
import type { CpuModel } from './model.js';

const FIXTURES = join(import.meta.dirname, '../../fixtures/hf');
const tmp = mkdtempSync(join(tmpdir(), 'kascade-gguf-'));

/** Logits of every position of a prompt (prefill in tiles of 4, then decode). */
function logitsOf(model: CpuModel, ids: number[]): Float32Array[] {
  const seq = model.createSequence(ids.length);
  const out = [model.prefill(seq, ids.slice(0, 8), denseAttention(), { tileSize: 4 })];
  for (const id of ids.slice(8)) out.push(model.decode(seq, id, denseAttention()));
  return out;
}

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  a.forEach((row, r) => {
    for (let i = 0; i < row.length; i++) m = Math.max(m, Math.abs(row[i] - b[r][i]));
  });
  return m;
}

describe('GGUF', () => {
  it('permuteQK and unpermuteQK are inverse and interleave each head', () => {
    const w = Float32Array.from({ length: 2 * 8 * 3 }, (_, i) => i);
    const p = permuteQK(w, 2, 3);
    expect(Array.from(p.subarray(0, 6))).toEqual([0, 1, 2, 12, 13, 14]); // row 0, then row d/2 = 4
    expect(unpermuteQK(p, 2, 3)).toEqual(w);
  });

  const text = 'The lazy dog reads the key value cache, and anchor layers select keys.';
  for (const name of ['llama-tied', 'llama-llama3rope'] as const) {
    it(`${name}: the same weights as F32 GGUF give the safetensors logits; Q8_0 within 0.05`, async () => {
      const dir = join(FIXTURES, name);
      const hf = await loadModel(dir);
      const ids = hf.tokenizer.encode(text);
      expect(ids.length).toBeGreaterThan(20);
      const ref = logitsOf(hf, ids);
      const spread = Math.max(...ref[0]) - Math.min(...ref[0]);

      const f32File = join(tmp, `${name}-f32.gguf`);
      writeFileSync(f32File, await convertHfToGguf(dir, 'F32'));
      const f32 = await loadModel(f32File);
      expect(f32.config.tieWordEmbeddings).toBe(hf.config.tieWordEmbeddings);
      expect(f32.tokenizer.encode(text)).toEqual(ids);
      expect(f32.tokenizer.decode(ids)).toBe(hf.tokenizer.decode(ids));
      // An empty completion (EOS first) decodes to '' instead of the tokenizer library's throw.
      expect(hf.tokenizer.decode([])).toBe('');
      expect(f32.tokenizer.decode([])).toBe('');
      const f32Diff = maxDiff(logitsOf(f32, ids), ref);
      // Default RoPE: bit-identical. Llama 3.1 scaling goes through rope_freqs divisors: f32 rounding only.
      if (name === 'llama-tied') expect(f32Diff).toBe(0);
      else expect(f32Diff).toBeLessThan(1e-4);

      const q8File = join(tmp, `${name}-q8_0.gguf`);
      writeFileSync(q8File, await convertHfToGguf(dir, 'Q8_0'));
      const q8Diff = maxDiff(logitsOf(await loadModel(q8File), ids), ref);
      expect(q8Diff).toBeGreaterThan(0); // it really was quantised
      expect(q8Diff / spread).toBeLessThan(0.05);
    });
  }

  it('reads a SentencePiece (llama) vocabulary: scores become merges, bytes fall back, BOS added', async () => {
    const tokens = ['<unk>', '<s>', '</s>'];
    const types = [2, 3, 3];
    const scores = [0, 0, 0];
    for (let b = 0; b < 256; b++) {
      tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      types.push(6);
      scores.push(0);
    }
    const pieces: [string, number][] = [
      ['\u2581', -10],
      ['a', -11],
      ['b', -12],
      ['\u2581a', -1],
      ['ab', -2],
      ['\u2581ab', -3],
    ];
    for (const [p, sc] of pieces) {
      tokens.push(p);
      types.push(1);
      scores.push(sc);
    }
    while (tokens.length < 300) {
      tokens.push(`[unused${tokens.length}]`);
      types.push(5);
      scores.push(-1000);
    }
    const id = (p: string) => tokens.indexOf(p);
    const file = join(tmp, 'spm.gguf');
    writeFileSync(
      file,
      await convertHfToGguf(join(FIXTURES, 'llama-tied'), 'F32', {
        tokenizer: {
          'tokenizer.ggml.model': { type: 'string', value: 'llama' },
          'tokenizer.ggml.tokens': { type: 'string[]', value: tokens },
          'tokenizer.ggml.scores': { type: 'f32[]', value: scores },
          'tokenizer.ggml.token_type': { type: 'i32[]', value: types },
          'tokenizer.ggml.bos_token_id': { type: 'u32', value: 1 },
          'tokenizer.ggml.eos_token_id': { type: 'u32', value: 2 },
          'tokenizer.ggml.unknown_token_id': { type: 'u32', value: 0 },
        },
      }),
    );
    const model = await loadModel(file);
    // "ab a" -> "▁ab▁a": merge ▁a first (best score), then ▁a+b; 'é' falls back to its UTF-8 bytes.
    expect(model.tokenizer.encode('ab a')).toEqual([1, id('\u2581ab'), id('\u2581a')]);
    expect(model.tokenizer.encode('aé', { addSpecialTokens: false })).toEqual([
      id('\u2581a'),
      id('<0xC3>'),
      id('<0xA9>'),
    ]);
    expect(model.tokenizer.decode([1, id('\u2581ab'), id('\u2581a'), id('<0xC3>'), id('<0xA9>')])).toBe(
      'ab aé',
    );
    expect(model.config.eosTokenIds).toContain(2);
  });
});
