import { describe, expect, it } from 'vitest';
import { denseAttention } from './dense.js';
import { ModelUsageError } from './errors.js';
import type { LayerAttention } from './hooks.js';
import { createRandomModel } from './random.js';

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

const shape = { hiddenSize: 64, heads: 4, kvHeads: 2, layers: 3, intermediateSize: 96, vocabSize: 300 };

describe('CpuModel forward pass', () => {
  for (const architecture of ['llama', 'qwen2', 'qwen3'] as const) {
    it(`${architecture}: prefill in tiles gives the logits of token-by-token decode`, () => {
      const model = createRandomModel({ ...shape, architecture }, 7);
      const ids = Array.from({ length: 23 }, (_, i) => (i * 37 + 5) % 300);
      const a = model.createSequence(32);
      const viaPrefill = model.prefill(a, ids, denseAttention(), { tileSize: 4 });
      expect(a.length).toBe(23);
      const b = model.createSequence(32);
      let viaDecode: Float32Array = new Float32Array(0);
      for (const id of ids) viaDecode = model.decode(b, id, denseAttention());
      expect(viaPrefill.every(Number.isFinite)).toBe(true);
      expect(maxAbsDiff(viaPrefill, viaDecode)).toBeLessThan(1e-4);
      // The caches agree too.
      expect(maxAbsDiff(a.k[2], b.k[2])).toBeLessThan(1e-5);
      // Logits are not flat (the model does something).
      expect(Math.max(...viaPrefill) - Math.min(...viaPrefill)).toBeGreaterThan(0.1);
    });
  }

  it('the WebAssembly SIMD and JS kernels give the same logits', () => {
    const wasm = createRandomModel({ ...shape, architecture: 'qwen2' }, 9);
    const js = createRandomModel({ ...shape, architecture: 'qwen2' }, 9, { kernels: 'js' });
    expect([wasm.kernels, js.kernels]).toEqual(['wasm', 'js']);
    const ids = Array.from({ length: 19 }, (_, i) => (i * 13) % 300);
    const a = wasm.prefill(wasm.createSequence(19), ids, denseAttention(), { tileSize: 8 });
    const b = js.prefill(js.createSequence(19), ids, denseAttention(), { tileSize: 8 });
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-4);
    expect(maxAbsDiff(a, b)).toBeGreaterThan(0); // really two different kernels
  });

  it('bf16 matrices on the wasm kernels equal the same values in f32 on the JS kernels', () => {
    for (const tieWordEmbeddings of [false, true]) {
      const cfg = { ...shape, tieWordEmbeddings };
      const bf16 = createRandomModel(cfg, 4, { matrixDtype: 'bf16' });
      const js = createRandomModel(cfg, 4, { matrixDtype: 'bf16', kernels: 'js' });
      const f32 = createRandomModel(cfg, 4);
      expect([bf16.matrixDtype, js.matrixDtype, f32.matrixDtype]).toEqual(['bf16', 'f32', 'f32']);
      const ids = [5, 9, 200, 7, 7, 13];
      const run = (m: typeof bf16) => m.prefill(m.createSequence(8), ids, denseAttention(), { tileSize: 4 });
      const a = run(bf16);
      expect(maxAbsDiff(a, run(js))).toBeLessThan(1e-4);
      expect(maxAbsDiff(a, run(f32))).toBeGreaterThan(1e-4); // the rounding to bf16 did happen
    }
  });

  it('two threads give the logits of one', async () => {
    const big = { ...shape, hiddenSize: 256, intermediateSize: 1024, heads: 4, kvHeads: 1 };
    const one = createRandomModel(big, 12);
    const two = createRandomModel(big, 12, { threads: 2 });
    expect([one.threads, two.threads]).toEqual([1, 2]);
    const ids = Array.from({ length: 12 }, (_, i) => (i * 7) % 300);
    const a = one.prefill(one.createSequence(12), ids, denseAttention(), { tileSize: 8 });
    const b = two.prefill(two.createSequence(12), ids, denseAttention(), { tileSize: 8 });
    expect(b).toEqual(a);
    await two.dispose();
    expect(two.threads).toBe(1);
  });

  it('decodeBatch matches decoding each sequence alone', () => {
    const model = createRandomModel(shape, 3);
    const prompts = [
      [1, 2, 3, 4, 5],
      [9, 8],
      [100, 200, 250, 7, 7, 7, 7],
    ];
    const seqs = prompts.map((p) => {
      const s = model.createSequence(16);
      model.prefill(s, p, denseAttention(), { tileSize: 2 });
      return s;
    });
    const alone = prompts.map((p) => {
      const s = model.createSequence(16);
      model.prefill(s, p, denseAttention(), { tileSize: 2 });
      return model.decode(s, 42, denseAttention());
    });
    // One hook per sequence: each sees only its own sequence's n.
    const seen: number[][] = [[], [], []];
    const hooks = seqs.map((_, i): LayerAttention => {
      const dense = denseAttention();
      return {
        decode: (l, a) => {
          seen[i].push(a.n);
          return dense.decode(l, a);
        },
        prefill: (l, a) => dense.prefill(l, a),
      };
    });
    const batch = model.decodeBatch(seqs, [42, 42, 42], hooks);
    for (let i = 0; i < 3; i++) expect(maxAbsDiff(batch[i], alone[i])).toBeLessThan(1e-5);
    expect(seqs.map((s) => s.length)).toEqual([6, 3, 8]);
    expect(seen).toEqual([new Array(3).fill(6), new Array(3).fill(3), new Array(3).fill(8)]);
    expect(() => model.decodeBatch(seqs, [1, 2, 3], hooks.slice(1))).toThrow(ModelUsageError);
    expect(() => model.decodeBatch([seqs[0], seqs[0]], [1, 2], denseAttention())).toThrow(/appears twice/);
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const run = (seed: number) => {
      const m = createRandomModel(shape, seed);
      return m.prefill(m.createSequence(8), [1, 2, 3], denseAttention());
    };
    expect(maxAbsDiff(run(5), run(5))).toBe(0);
    expect(maxAbsDiff(run(5), run(6))).toBeGreaterThan(1e-3);
  });

  it('hands the hook core-layout inputs: q [heads, queries, headDim], tile-aligned chunks, n counting the new keys', () => {
    const model = createRandomModel(shape, 1);
    const dense = denseAttention();
    const seen: string[] = [];
    const spy: LayerAttention = {
      decode: (l, a) => {
        if (l === 0) seen.push(`d n=${a.n} q=${a.q.length}`);
        return dense.decode(l, a);
      },
      prefill: (l, a) => {
        if (l === 0)
          seen.push(
            `p start=${a.queryStart} queries=${a.queries} n=${a.n} T=${a.tileSize} cap=${a.capacity}`,
          );
        return dense.prefill(l, a);
      },
      observe: (l, residual, attnOut, tokens) => {
        if (l === 1) seen.push(`o ${tokens} ${residual.length} ${attnOut.length}`);
      },
    };
    const seq = model.createSequence(20);
    model.prefill(seq, [1, 2, 3, 4, 5, 6, 7], spy, { tileSize: 4 });
    model.decode(seq, 8, spy);
    expect(seen).toEqual([
      'p start=0 queries=4 n=4 T=4 cap=20',
      'o 4 256 256',
      'p start=4 queries=3 n=7 T=4 cap=20',
      'o 3 192 192',
      'd n=8 q=64',
      'o 1 64 64',
    ]);
  });

  it('checks the abort signal between tiles', () => {
    const model = createRandomModel(shape, 2);
    const controller = new AbortController();
    const seq = model.createSequence(64);
    let tiles = 0;
    const run = () =>
      model.prefill(seq, new Array(40).fill(3), denseAttention(), {
        tileSize: 8,
        signal: controller.signal,
        onTile: () => {
          tiles++;
          if (tiles === 2) controller.abort();
        },
      });
    expect(run).toThrow(expect.objectContaining({ name: 'AbortError' }));
    expect(tiles).toBe(2);
    expect(seq.length).toBe(16);
  });

  it('rejects a full cache, bad token ids and unaligned prefill with typed errors', () => {
    const model = createRandomModel(shape, 2);
    const seq = model.createSequence(4);
    expect(() => model.prefill(seq, [1, 2, 3, 4, 5], denseAttention())).toThrow(ModelUsageError);
    expect(() => model.prefill(seq, [1, 300], denseAttention())).toThrow(/outside the vocabulary/);
    model.prefill(seq, [1, 2, 3], denseAttention(), { tileSize: 4 });
    expect(() => model.prefill(seq, [1], denseAttention(), { tileSize: 4 })).toThrow(/tile boundaries/);
    model.decode(seq, 5, denseAttention());
    expect(() => model.decode(seq, 5, denseAttention())).toThrow(/holds 4 tokens/);
  });

  it('random models carry a byte tokenizer that round-trips text', () => {
    const model = createRandomModel(shape, 2);
    const ids = model.tokenizer.encode('héllo');
    expect(ids[0]).toBe(256);
    expect(model.tokenizer.decode(ids)).toBe('héllo');
    expect(model.randomWeights).toBe(true);
    expect(model.tokenizer.applyChatTemplate([{ role: 'user', content: 'hi' }])).toBe(
      '<|user|>\nhi\n<|assistant|>\n',
    );
  });
});
