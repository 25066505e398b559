import { parsePlan } from '@kascade/anchors';
import {
  denseCausalPrefillAttention,
  denseDecodeAttention,
  type PrefillInputs,
  pooledDecodeScores,
  topkBudget,
} from '@kascade/core';
import { describe, expect, it } from 'vitest';
import { type CalibrationModel, calibrateModel, planFromStatistics } from './calibrate.js';
import { createEngine } from './engine.js';
import type { LayerAttention } from './model/hooks.js';
import { mulberry32 } from './model/random.js';

/**
 * A model whose attention has planted cross-layer structure: layers fall into blocks, and
 * within a block every layer's KV head j prefers the same heavy keys as pattern
 * `pattern[l][j]` of that block. Across blocks the heavy keys differ. Calibration should
 * find the block starts as anchors and the pattern permutation as head maps.
 */
function plantedModel(opts: {
  blocks: number[][];
  /** `pattern[l][j]`: which of the block's key patterns KV head j of layer l follows. */
  pattern: number[][];
  importance?: number[];
}): CalibrationModel<{ n: number }> {
  const layers = opts.pattern.length;
  const heads = 4;
  const kvHeads = 2;
  const headDim = 8;
  const hidden = 16;
  const blockOf = new Array<number>(layers);
  opts.blocks.forEach((b, i) => {
    for (const l of b) blockOf[l] = i;
  });
  let promptSeed = 0;
  return {
    id: 'planted',
    config: { layers, heads, kvHeads, headDim, hiddenSize: hidden, maxContext: 4096 },
    tokenizer: { encode: (text: string) => Array.from({ length: text.length }, (_, i) => i) },
    createSequence: () => ({ n: 0 }),
    prefill(seq, ids, attention: LayerAttention, options = {}) {
      const N = ids.length;
      const T = options.tileSize ?? 32;
      const rand = mulberry32(1000 + promptSeed++);
      // Per block and pattern: a direction and a heavy key set (about 8% of positions).
      const patterns = opts.blocks.map(() =>
        [0, 1].map(() => {
          const dir = Float64Array.from({ length: headDim }, () => rand() * 2 - 1);
          const norm = Math.hypot(...dir);
          for (let i = 0; i < headDim; i++) dir[i]! /= norm;
          const heavy = Array.from({ length: N }, () => rand() < 0.08);
          return { dir, heavy };
        }),
      );
      const keys = opts.pattern.map((row, l) => {
        const k = new Float32Array(kvHeads * N * headDim);
        for (let j = 0; j < kvHeads; j++) {
          const p = patterns[blockOf[l]!]![row[j]!]!;
          for (let x = 0; x < N; x++) {
            for (let i = 0; i < headDim; i++) {
              k[(j * N + x) * headDim + i] = (p.heavy[x] ? 6 * p.dir[i]! : 0) + 0.3 * (rand() * 2 - 1);
            }
          }
        }
        return k;
      });
      const chunk = T * (options.chunkTiles ?? 1);
      for (let start = 0; start < N; start += chunk) {
        const queries = Math.min(chunk, N - start);
        for (let l = 0; l < layers; l++) {
          const q = new Float32Array(heads * queries * headDim);
          for (let h = 0; h < heads; h++) {
            const p = patterns[blockOf[l]!]![opts.pattern[l]![Math.floor(h / 2)]!]!;
            for (let i = 0; i < queries; i++) {
              for (let c = 0; c < headDim; c++)
                q[(h * queries + i) * headDim + c] = 3 * p.dir[c]! + 0.3 * (rand() * 2 - 1);
            }
          }
          const inputs: PrefillInputs = {
            heads,
            kvHeads,
            headDim,
            q,
            k: keys[l]!,
            v: keys[l]!,
            n: start + queries,
            capacity: N,
            queries,
            queryStart: start,
            tileSize: T,
          };
          attention.prefill(l, inputs);
          const residual = Float32Array.from({ length: queries * hidden }, () => rand() * 2 - 1);
          const w = opts.importance?.[l] ?? 0.5;
          const attnOut = Float32Array.from({ length: queries * hidden }, () => w * (rand() * 2 - 1));
          attention.observe?.(l, residual, attnOut, queries);
        }
      }
      seq.n += N;
      return new Float32Array(1);
    },
  };
}

const prompts = Array.from({ length: 3 }, (_, i) => 'p'.repeat(320 + 32 * i));

describe('calibration recovers planted structure', () => {
  const model = plantedModel({
    blocks: [
      [0, 1, 2],
      [3, 4, 5, 6],
      [7, 8],
    ],
    pattern: [
      [0, 1],
      [0, 1],
      [1, 0],
      [0, 1],
      [1, 0],
      [0, 1],
      [1, 1],
      [0, 1],
      [0, 1],
    ],
  });
  const budget = { percent: 10, kMin: 8 };

  it('K = 3 picks the block starts, with head maps following the planted patterns', async () => {
    const progress: number[] = [];
    const { plan, layerSimilarity } = await calibrateModel(model, prompts, {
      anchors: 3,
      budget,
      tileSize: 16,
      chunkTiles: 4,
      onProgress: (p) => progress.push(p.done),
    });
    expect(plan.anchors).toEqual([0, 3, 7]);
    expect(progress).toEqual([1, 2, 3]);
    expect(plan.headMaps[2]).toEqual([1, 0]);
    expect(plan.headMaps[4]).toEqual([1, 0]);
    expect(plan.headMaps[6]).toEqual([1, 1]);
    expect(plan.headMaps[8]).toEqual([0, 1]);
    // Within a block the borrowed sets capture nearly the oracle's mass; across blocks they do not.
    expect(layerSimilarity[0]![2]).toBeGreaterThan(0.9);
    expect(layerSimilarity[3]![6]).toBeGreaterThan(0.9);
    expect(layerSimilarity[0]![3]).toBeLessThan(0.6);
    expect(layerSimilarity[3]![7]).toBeLessThan(0.6);
    expect(plan.calibration!.prompts).toBe(3);
    expect(plan.budget).toEqual({ percent: 10, kMin: 8, roundTo: 1, tileSize: 16 });
    expect(parsePlan(JSON.stringify(plan), { layers: 9, heads: 4, kvHeads: 2, headDim: 8 })).toEqual(plan);
  });

  it("anchors 'auto' finds the same three blocks", async () => {
    const { plan } = await calibrateModel(model, prompts, {
      anchors: 'auto',
      tau: 0.9,
      budget,
      tileSize: 16,
    });
    expect(plan.anchors).toEqual([0, 3, 7]);
    expect(plan.calibration!.tau).toBe(0.9);
    for (const s of plan.calibration!.layerSimilarity) expect(s).toBeGreaterThanOrEqual(0.9);
  });

  it('too few anchors must leave one block borrowing across a boundary', async () => {
    const { plan } = await calibrateModel(model, prompts, { anchors: 2, budget, tileSize: 16 });
    expect(plan.anchors.length).toBe(2);
    expect([3, 7]).toContain(plan.anchors[1]);
    expect(Math.min(...plan.calibration!.layerSimilarity)).toBeLessThan(0.9);
  });

  it('bad arguments are typed errors', async () => {
    await expect(calibrateModel(model, [], { anchors: 2 })).rejects.toThrow(/non-empty/);
    await expect(calibrateModel(model, prompts, { anchors: 0 })).rejects.toThrow(/anchors/);
    await expect(calibrateModel(model, [{ text: 'x' } as never], { anchors: 2 })).rejects.toThrow(
      /devSet\[0\]/,
    );
  });
});

describe('calibration on a real (random-weight) model', () => {
  it('returns a plan that loads and drives kascade generation', async () => {
    const engine = await createEngine({ model: 'random' });
    const dev = [
      'The quick brown fox jumps over the lazy dog. '.repeat(6),
      { prompt: 'Kascade reuses Top-k. '.repeat(10) },
    ];
    const plan = await engine.calibrate(dev, { anchors: 2, budget: { kMin: 16 }, tileSize: 16 });
    expect(plan.anchors[0]).toBe(0);
    expect(plan.anchors).toHaveLength(2);
    expect(plan.model).toMatchObject({ layers: 4, heads: 4, kvHeads: 2, headDim: 32 });
    const gen = engine.generate('hello '.repeat(30), { maxTokens: 4, policy: { kind: 'kascade', plan } });
    for await (const _ of gen) {
    }
    const usage = await gen.usage;
    expect(usage.kascade.anchorLayers).toEqual(plan.anchors);
    // Decode steps at n = 182, 183, 184 keys: k(n) = max(16, floor(10% of n)) = 18.
    expect(usage.promptTokens).toBe(181);
    expect(usage.kascade.effectiveK).toBe(18);
    expect(usage.kascade.anchorsHit).toBeGreaterThan(0);
  });
});

describe('calibration from decode steps', () => {
  it('measures each decode step like an independent recomputation from the pooled scores', async () => {
    const engine = await createEngine({ model: 'random' });
    const model = engine.cpuModel;
    const budget = { percent: 10, kMin: 16 };
    const prompt = 'Kascade reuses Top-k sets across layers. '.repeat(8);
    const completion = ' and heads';
    const { layerSimilarity, bySource, decodeSteps, plan } = await calibrateModel(
      model,
      [{ prompt, completion }],
      { anchors: 2, budget, tileSize: 16, attendFrom: 'decode' },
    );
    const ids = model.tokenizer.encode(prompt);
    const tail = model.tokenizer.encode(completion, { addSpecialTokens: false });
    expect(decodeSteps).toBe(tail.length);
    expect(tail.length).toBeGreaterThan(1);

    // Independently: the same dense passes, keeping each decode step's pooled scores per layer.
    const { layers: L, kvHeads: G } = model.config;
    const steps: Float64Array[][] = [];
    const seq = model.createSequence(ids.length + tail.length);
    const plain: LayerAttention = {
      prefill: (_l, inputs) => denseCausalPrefillAttention(inputs),
      decode(l, inputs) {
        if (l === 0) steps.push([]);
        steps.at(-1)!.push(pooledDecodeScores(inputs));
        return denseDecodeAttention(inputs);
      },
    };
    model.prefill(seq, ids, plain, { tileSize: 16 });
    for (const t of tail) model.decode(seq, t, plain);
    const want = Array.from({ length: L }, () => new Array<number>(L).fill(Number.NaN));
    for (let a = 0; a < L; a++) {
      for (let l = a; l < L; l++) {
        let sum = 0;
        for (let j = 0; j < G; j++) {
          let best = -1;
          for (let u = 0; u < G; u++) {
            let worst = Number.POSITIVE_INFINITY;
            for (const layersOfStep of steps) {
              const n = layersOfStep[0]!.length / G;
              const k = topkBudget(n, budget);
              const row = (s: Float64Array, h: number) => Array.from(s.subarray(h * n, (h + 1) * n));
              const sl = row(layersOfStep[l]!, j);
              const top = (r: number[]) =>
                r
                  .map((v, x) => [v, x] as const)
                  .sort((p, q) => q[0] - p[0] || p[1] - q[1])
                  .slice(0, k)
                  .map(([, x]) => x);
              const mass = (xs: number[]) => xs.reduce((s, x) => s + sl[x]!, 0);
              const share = mass(top(row(layersOfStep[a]!, u))) / mass(top(sl));
              worst = Math.min(worst, share);
            }
            best = Math.max(best, worst);
          }
          sum += best;
        }
        want[a]![l] = sum / G;
      }
    }
    for (let a = 0; a < L; a++) {
      for (let l = a; l < L; l++) {
        expect(layerSimilarity[a]![l]).toBeCloseTo(want[a]![l]!, 4);
        expect(bySource.decode![a]![l]).toBeCloseTo(want[a]![l]!, 4);
      }
    }
    expect(bySource.prefill).toBeUndefined();
    expect(plan.anchors).toHaveLength(2);
    await engine.dispose();
  });

  it("'both' takes each prompt's worst of tiles and steps; several K come from one pass", async () => {
    const engine = await createEngine({ model: 'random' });
    const model = engine.cpuModel;
    const dev = [
      { prompt: 'The quick brown fox jumps over the lazy dog. '.repeat(5), completion: ' a fox' },
      'Kascade reuses Top-k. '.repeat(10),
    ];
    const options = { anchors: 2, budget: { kMin: 16 }, tileSize: 16 } as const;
    const both = await calibrateModel(model, dev, options);
    const prefill = await calibrateModel(model, dev, { ...options, attendFrom: 'prefill' });
    expect(both.decodeSteps).toBeGreaterThan(0);
    expect(prefill.decodeSteps).toBe(0);
    expect(prefill.bySource.decode).toBeUndefined();
    const L = model.config.layers;
    for (let a = 0; a < L; a++) {
      for (let l = a; l < L; l++) {
        // Per prompt min(prefill, decode) <= prefill, so the mean is too.
        expect(both.layerSimilarity[a]![l]!).toBeLessThanOrEqual(prefill.layerSimilarity[a]![l]! + 1e-12);
        expect(both.bySource.prefill![a]![l]).toBeCloseTo(prefill.layerSimilarity[a]![l]!, 6);
      }
    }
    const k3 = planFromStatistics(model, both.statistics, both.layerSimilarity, 3);
    const again = await calibrateModel(model, dev, { ...options, anchors: 3 });
    expect(k3.anchors).toEqual(again.plan.anchors);
    expect(k3.headMaps).toEqual(again.plan.headMaps);
    await expect(calibrateModel(model, dev, { ...options, attendFrom: 'decode' })).rejects.toThrow(
      /devSet\[1\]/,
    );
    await expect(calibrateModel(model, dev, { ...options, attendFrom: 'sideways' as never })).rejects.toThrow(
      /attendFrom/,
    );
    await engine.dispose();
  });
});
