import { describe, expect, it } from 'vitest';
import type { GenerationChunk, GenerationUsage } from './api.js';
import { createEngine } from './engine.js';
import { type GenerationModel, IncrementalDetokenizer, runGeneration, StopStringFilter } from './generate.js';
import { createDensePolicy } from './policies/index.js';
import { createRng, createSampler } from './sampling.js';

const bytes = (s: string) => Array.from(new TextEncoder().encode(s));
const EOS = 300;
const decodeBytes = (ids: readonly number[]) =>
  new TextDecoder().decode(Uint8Array.from(ids.filter((id) => id >= 0 && id < 256)));

/** A model that "generates" a fixed script of token ids (one-hot logits), for exact text tests. */
function scriptedModel(script: number[]): GenerationModel<{ pos: number }> & { prefillCalls: number } {
  const vocab = 301;
  const logitsFor = (i: number) => {
    const l = new Float32Array(vocab).fill(-10);
    l[i < script.length ? script[i]! : EOS] = 10;
    return l;
  };
  const m = {
    prefillCalls: 0,
    config: { maxContext: 10_000 },
    tokenizer: { decode: decodeBytes, eosTokenIds: [EOS] },
    createSequence: () => ({ pos: 0 }),
    prefill(seq: { pos: number }) {
      m.prefillCalls++;
      seq.pos = 0;
      return logitsFor(0);
    },
    decode(seq: { pos: number }) {
      seq.pos++;
      return logitsFor(seq.pos);
    },
  };
  return m;
}

const shape = { layers: 1, heads: 1, kvHeads: 1, headDim: 2 };

async function collect(gen: AsyncIterable<GenerationChunk> & { usage: Promise<GenerationUsage> }) {
  const chunks: GenerationChunk[] = [];
  for await (const c of gen) chunks.push(c);
  return { chunks, text: chunks.map((c) => c.text).join(''), usage: await gen.usage };
}

function scripted(script: number[], options: Parameters<typeof runGeneration>[0]['options'] = {}) {
  return runGeneration({
    model: scriptedModel(script),
    promptIds: [1, 2, 3],
    policy: createDensePolicy(shape),
    options,
    tileSize: 32,
  });
}

describe('text streaming', () => {
  it('never splits a multi-byte character', async () => {
    const text = 'a€b😀c';
    const { chunks, text: out } = await collect(scripted([...bytes(text)], { maxTokens: 50 }));
    expect(out).toBe(text);
    // '€' is 3 bytes: the first two tokens of it carry no text, the third carries the whole character.
    expect(chunks.map((c) => c.text)).toEqual(['a', '', '', '€', 'b', '', '', '', '😀', 'c']);
  });

  it('IncrementalDetokenizer flushes an incomplete character at the end', () => {
    const d = new IncrementalDetokenizer(decodeBytes);
    expect(d.push(0xe2)).toBe('');
    expect(d.flush()).toBe('\uFFFD');
  });
});

describe('stop strings', () => {
  it('stop before the stop string and never emit it, also when it spans tokens', async () => {
    const { text, usage } = await collect(
      scripted(bytes('Hello END world'), { stop: ['END'], maxTokens: 50 }),
    );
    expect(text).toBe('Hello ');
    expect(usage.finishReason).toBe('stop');
  });

  it('held-back text that turns out not to be a stop string is emitted', async () => {
    const { text, usage } = await collect(scripted(bytes('an ENd, an EN'), { stop: ['END'], maxTokens: 13 }));
    expect(text).toBe('an ENd, an EN');
    expect(usage.finishReason).toBe('length');
  });

  it('the earliest of several stop strings wins', () => {
    const f = new StopStringFilter(['xyz', 'b']);
    expect(f.push('a')).toEqual({ text: 'a', stopped: false });
    expect(f.push('xy')).toEqual({ text: '', stopped: false });
    expect(f.push('zb')).toEqual({ text: '', stopped: true });
    expect(() => new StopStringFilter([''])).toThrow(/non-empty/);
  });

  it('EOS ends generation with finish reason stop', async () => {
    const { text, usage } = await collect(scripted(bytes('ok'), { maxTokens: 50 }));
    expect(text).toBe('ok');
    expect(usage).toMatchObject({ finishReason: 'stop', completionTokens: 2, promptTokens: 3 });
  });
});

describe('max tokens and usage', () => {
  it('generates exactly maxTokens tokens', async () => {
    const { chunks, usage } = await collect(scripted(bytes('abcdefghij'), { maxTokens: 4 }));
    expect(chunks.map((c) => c.text).join('')).toBe('abcd');
    expect(usage.completionTokens).toBe(4);
    expect(usage.finishReason).toBe('length');
  });

  it('maxTokens 0 generates nothing; a too-long request is refused', async () => {
    const { chunks, usage } = await collect(scripted(bytes('abc'), { maxTokens: 0 }));
    expect(chunks).toEqual([]);
    expect(usage.completionTokens).toBe(0);
    expect(() => scripted([], { maxTokens: 20_000 })).toThrow(/exceeds the model's context/);
    expect(() => scripted([], { maxTokens: -1 })).toThrow(/maxTokens/);
    expect(() => scripted([], { temperature: -1 })).toThrow(/temperature/);
    expect(() => scripted([], { topP: 0 })).toThrow(/topP/);
  });

  it('breaking out of the loop settles usage as an abort', async () => {
    const gen = scripted(bytes('abcdefgh'), { maxTokens: 8 });
    for await (const c of gen) if (c.text === 'b') break;
    const usage = await gen.usage;
    expect(usage.finishReason).toBe('abort');
    expect(usage.completionTokens).toBe(2);
  });
});

describe('sampling', () => {
  it('the PRNG is reproducible and uniform-ish', () => {
    const a = createRng(7);
    const b = createRng(7);
    let sum = 0;
    for (let i = 0; i < 1000; i++) {
      const x = a();
      expect(x).toBe(b());
      sum += x;
    }
    expect(sum / 1000).toBeGreaterThan(0.45);
    expect(sum / 1000).toBeLessThan(0.55);
  });

  it('top-k 1 and tiny top-p are greedy; temperature spreads choices', () => {
    const logits = [1, 3, 2, 3.5, -1];
    const k1 = createSampler({ temperature: 1, topK: 1, seed: 1 });
    const p0 = createSampler({ temperature: 1, topP: 1e-9, seed: 1 });
    const hot = createSampler({ temperature: 5, seed: 3 });
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      expect(k1(logits)).toBe(3);
      expect(p0(logits)).toBe(3);
      seen.add(hot(logits));
    }
    expect(seen.size).toBeGreaterThanOrEqual(4);
    // Top-k 2 only ever picks the two largest.
    const k2 = createSampler({ temperature: 5, topK: 2, seed: 4 });
    for (let i = 0; i < 100; i++) expect([1, 3]).toContain(k2(logits));
  });

  it('seeded sampling on a model is reproducible; another seed differs', async () => {
    const engine = await createEngine({ model: 'random' });
    const run = async (seed: number) =>
      (
        await collect(
          engine.generate('The seed decides', { maxTokens: 24, temperature: 1, topP: 0.95, seed }),
        )
      ).chunks.map((c) => c.tokenId);
    const a = await run(11);
    expect(a).toHaveLength(24);
    expect(await run(11)).toEqual(a);
    expect(await run(12)).not.toEqual(a);
    const greedy = async () =>
      (await collect(engine.generate('Greedy', { maxTokens: 8 }))).chunks.map((c) => c.tokenId);
    expect(await greedy()).toEqual(await greedy());
  });
});

describe('abort', () => {
  it('abort during prefill returns within one tile', async () => {
    const engine = await createEngine({ model: 'random' });
    let tiles = 0;
    let tilesAtAbort = -1;
    const controller = new AbortController();
    const policy = engine.createPolicy(
      { kind: 'dense' },
      {
        onSelection: (e) => {
          if (e.phase === 'prefill' && e.layer === 0) tiles++;
        },
      },
    );
    const prompt = engine.tokenize('x'.repeat(32 * 40));
    const gen = runGeneration({
      model: engine.cpuModel,
      promptIds: prompt,
      policy,
      options: { signal: controller.signal, maxTokens: 5 },
      tileSize: 32,
    });
    // Abort from a timer, as a server's disconnect handler would, once a few tiles are done.
    const timer = setInterval(() => {
      if (tiles >= 3 && tilesAtAbort < 0) {
        tilesAtAbort = tiles;
        controller.abort();
      }
    }, 0);
    const { chunks, usage } = await collect(gen);
    clearInterval(timer);
    expect(tilesAtAbort).toBeGreaterThanOrEqual(3);
    expect(tiles - tilesAtAbort).toBeLessThanOrEqual(1);
    expect(tiles).toBeLessThan(Math.ceil(prompt.length / 32));
    expect(chunks).toEqual([]);
    expect(usage.finishReason).toBe('abort');
  });

  it('an already-aborted signal generates nothing', async () => {
    const { chunks, usage } = await collect(scripted(bytes('abc'), { signal: AbortSignal.abort() }));
    expect(chunks).toEqual([]);
    expect(usage.finishReason).toBe('abort');
  });

  it('abort between tokens stops decode and the event loop runs between tokens', async () => {
    const controller = new AbortController();
    const gen = scripted(bytes('abcdefghijklmnop'), { signal: controller.signal, maxTokens: 16 });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const seen: string[] = [];
    for await (const c of gen) {
      seen.push(c.text);
      if (seen.length === 5) setTimeout(() => controller.abort(), 0);
      await new Promise((r) => setTimeout(r, 1));
    }
    clearInterval(timer);
    expect(seen.length).toBeGreaterThanOrEqual(5);
    expect(seen.length).toBeLessThan(16);
    expect(ticks).toBeGreaterThan(0);
    expect((await gen.usage).finishReason).toBe('abort');
  });
});
