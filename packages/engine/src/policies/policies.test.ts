import { PlanError } from '@kascade/anchors';
import {
  type DecodeInputs,
  type DecodeSelection,
  denseCausalPrefillAttention,
  denseDecodeAttention,
  type PrefillInputs,
  type PrefillSelection,
  pooledDecodeScores,
  pooledPrefillScores,
  prefillTileBudget,
  topkBudget,
  topkIndices,
} from '@kascade/core';
import { describe, expect, it } from 'vitest';
import { createRandomModel, mulberry32 } from '../model/random.js';
import {
  createKascadePolicy,
  createOracleTopkPolicy,
  createPolicy,
  createStreamingPolicy,
  PolicyError,
  type SelectionEvent,
} from './index.js';

const shape = { layers: 4, heads: 4, kvHeads: 2, headDim: 16 };

/** Every op-level test runs on both implementations; float32 ops agree with float64 to ~1e-7. */
const IMPLS = ['reference', 'fast'] as const;
const TOL = { reference: 1e-13, fast: 1e-5 } as const;

function plan(
  anchors: number[],
  budget: { percent?: number; kMin?: number; tileSize?: number } = {},
  headMaps?: number[][],
  s = shape,
) {
  return {
    format: 'kascade-plan',
    version: 1,
    model: { id: 'test', ...s },
    budget: {
      percent: budget.percent ?? 10,
      kMin: budget.kMin ?? 128,
      roundTo: 1,
      tileSize: budget.tileSize ?? 8,
    },
    anchors,
    headMaps:
      headMaps ?? Array.from({ length: s.layers }, () => Array.from({ length: s.kvHeads }, (_, j) => j)),
  };
}

function randomArray(n: number, rand: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (2 * rand() - 1) * scale;
  return a;
}

function decodeInputs(n: number, seed: number): DecodeInputs {
  const rand = mulberry32(seed);
  const { heads, kvHeads, headDim } = shape;
  return {
    heads,
    kvHeads,
    headDim,
    n,
    q: randomArray(heads * headDim, rand, 2),
    k: randomArray(kvHeads * n * headDim, rand, 2),
    v: randomArray(kvHeads * n * headDim, rand),
  };
}

function prefillInputs(n: number, queries: number, tileSize: number, seed: number): PrefillInputs {
  const rand = mulberry32(seed);
  const { heads, kvHeads, headDim } = shape;
  return {
    heads,
    kvHeads,
    headDim,
    n,
    queries,
    queryStart: n - queries,
    tileSize,
    q: randomArray(heads * queries * headDim, rand, 2),
    k: randomArray(kvHeads * n * headDim, rand, 2),
    v: randomArray(kvHeads * n * headDim, rand),
  };
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    expect(Number.isFinite(a[i]!)).toBe(true);
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  expect(den).toBeGreaterThan(0);
  return Math.sqrt(num / den);
}

/** The exact head-aware Top-k set of KV head `j`, computed independently of the policies. */
function oracleDecodeSet(inputs: DecodeInputs, k: number, j: number): number[] {
  const pooled = pooledDecodeScores(inputs);
  return Array.from(topkIndices(pooled.subarray(j * inputs.n, (j + 1) * inputs.n), k)).sort((a, b) => a - b);
}

/** The decode selection of an event. */
const dsel = (e: SelectionEvent | undefined) => e!.selection as DecodeSelection;
const psel = (e: SelectionEvent | undefined) => e!.selection as PrefillSelection;

function row(indices: Int32Array, from: number, count: number): number[] {
  return Array.from(indices.subarray(from, from + count)).sort((a, b) => a - b);
}

describe.each(IMPLS)('kascade policy at the op level (%s attention)', (impl) => {
  it('with budget >= n equals dense attention to float64 rounding (decode and prefill), through reuse head maps', () => {
    const maps = [
      [0, 1],
      [1, 0],
      [0, 1],
      [1, 1],
    ];
    const policy = createKascadePolicy(plan([0, 2], { kMin: 1_000_000 }, maps), shape, {
      attention: impl,
    });
    for (const n of [1, 7, 40, 131]) {
      const inputs = decodeInputs(n, n);
      const dense = denseDecodeAttention(inputs);
      for (let l = 0; l < shape.layers; l++)
        expect(maxRelDiff(policy.decode(l, inputs), dense)).toBeLessThan(TOL[impl]);
    }
    for (const [n, queries] of [
      [8, 8],
      [37, 13],
      [200, 40],
    ] as const) {
      const inputs = prefillInputs(n, queries, 8, n + 1000);
      const dense = denseCausalPrefillAttention(inputs);
      for (let l = 0; l < shape.layers; l++)
        expect(maxRelDiff(policy.prefill(l, inputs), dense)).toBeLessThan(TOL[impl]);
    }
  });

  it('with a small budget differs from dense (the comparison above can fail)', () => {
    const policy = createKascadePolicy(plan([0, 2], { kMin: 4, percent: 5 }), shape, {
      attention: impl,
    });
    const inputs = decodeInputs(300, 5);
    policy.decode(0, inputs);
    expect(maxRelDiff(policy.decode(1, inputs), denseDecodeAttention(inputs))).toBeGreaterThan(1e-6);
  });

  it('reuse layers read the anchor slot through their head map', () => {
    const events: SelectionEvent[] = [];
    const maps = [
      [0, 1],
      [1, 0],
      [0, 1],
      [1, 1],
    ];
    const policy = createKascadePolicy(plan([0, 2], { kMin: 4 }, maps), shape, {
      attention: impl,
      onSelection: (e) => events.push(e),
    });
    const inputs = decodeInputs(100, 9);
    for (let l = 0; l < 4; l++) policy.decode(l, inputs);
    expect(events.map((e) => e.role)).toEqual(['dense-anchor', 'reuse', 'anchor', 'reuse']);
    expect(events[1]!.headMap).toEqual([1, 0]);
    expect(events[3]!.headMap).toEqual([1, 1]);
    // Layer 2's anchor set is the exact Top-k of these inputs; layer 3 reads the same object.
    expect(events[3]!.selection).toBe(events[2]!.selection);
    const k = topkBudget(100, { kMin: 4 });
    expect(dsel(events[2]).k).toBe(k);
    for (let j = 0; j < 2; j++)
      expect(row(dsel(events[2]).indices, j * k, k)).toEqual(oracleDecodeSet(inputs, k, j));
    // Counters: layer 0 and layer 2 selected; sparse layers 1..3 attended k keys each.
    expect(policy.stats.anchorsHit).toBe(2);
    expect(policy.usage()).toMatchObject({
      policy: 'kascade',
      effectiveK: k,
      contextKeys: 100,
      anchorLayers: [0, 2],
    });
    expect(policy.stats.attentionMs).toBeGreaterThan(0);
  });

  it('a reuse layer without its anchor in the same step is an error', () => {
    const policy = createKascadePolicy(plan([0, 2]), shape, {
      attention: impl,
    });
    expect(() => policy.decode(1, decodeInputs(10, 1))).toThrow(PolicyError);
    policy.decode(0, decodeInputs(10, 1));
    expect(() => policy.decode(1, decodeInputs(11, 1))).toThrow(/no index slot/);
  });

  it('a plan for another model shape is rejected, naming the field', () => {
    const other = plan([0, 2], {}, undefined, { ...shape, layers: 6 });
    expect(() =>
      createKascadePolicy(other, shape, {
        attention: impl,
      }),
    ).toThrow(PlanError);
    try {
      createKascadePolicy(other, shape, {
        attention: impl,
      });
    } catch (e) {
      expect(String((e as Error).message)).toMatch(/layers/);
    }
    expect(() =>
      createPolicy(
        { kind: 'kascade', plan: plan([0, 1], {}, undefined, { ...shape, kvHeads: 1, heads: 4 }) },
        shape,
      ),
    ).toThrow(PlanError);
    expect(() =>
      createPolicy(
        { kind: 'all-heads-pooled', plan: plan([0, 1], {}, undefined, { ...shape, headDim: 32 }) },
        shape,
      ),
    ).toThrow(PlanError);
  });

  it('inputs of another shape are rejected', () => {
    const policy = createPolicy({ kind: 'dense' }, shape, { attention: impl });
    expect(() => policy.decode(0, { ...decodeInputs(5, 1), headDim: 8 })).toThrow(PolicyError);
    expect(() => policy.decode(4, decodeInputs(5, 1))).toThrow(/layer 4/);
  });

  it('decode-only keeps prefill dense', () => {
    const policy = createKascadePolicy(plan([0, 2], { kMin: 2 }), shape, {
      attention: impl,
      decodeOnly: true,
    });
    const inputs = prefillInputs(120, 40, 8, 3);
    const dense = denseCausalPrefillAttention(inputs);
    for (let l = 0; l < 4; l++) expect(maxRelDiff(policy.prefill(l, inputs), dense)).toBeLessThan(TOL[impl]);
    expect(policy.prefillRoles).toEqual(['dense', 'dense', 'dense', 'dense']);
    expect(policy.decodeRoles).toEqual(['dense-anchor', 'reuse', 'anchor', 'reuse']);
  });
});

describe.each(IMPLS)('oracle-topk (%s attention)', (impl) => {
  it('has recall 1 in every sparse layer, decode and prefill (checked against an independent Top-k)', () => {
    const budget = { kMin: 5, percent: 10 };
    let checkedDecode = 0;
    let checkedPrefill = 0;
    const policy = createOracleTopkPolicy(shape, {
      attention: impl,
      budget,
      tileSize: 8,
      onSelection: (e) => {
        if (e.role !== 'select') return;
        if (e.phase === 'decode') {
          const k = topkBudget(e.inputs.n, budget);
          for (let j = 0; j < 2; j++) {
            const oracle = oracleDecodeSet(e.inputs, k, j);
            const used = row(e.selection!.indices, j * e.selection!.k, e.selection!.k);
            expect(oracle.filter((x) => used.includes(x)).length / oracle.length).toBe(1);
            checkedDecode++;
          }
        } else {
          const { scores, tiles } = pooledPrefillScores(e.inputs);
          const s = e.selection!;
          for (let j = 0; j < 2; j++) {
            for (let t = 0; t < tiles; t++) {
              const start = e.inputs.queryStart + t * 8;
              const k = prefillTileBudget(start, budget);
              const n = e.inputs.n;
              const rowScores = scores.subarray((j * tiles + t) * n, (j * tiles + t + 1) * n);
              const oracle = Array.from(topkIndices(rowScores, k, start)).sort((a, b) => a - b);
              expect(s.counts[t]).toBe(k);
              expect(row(s.indices, (j * s.tiles + t) * s.kMax, k)).toEqual(oracle);
              if (k > 0) checkedPrefill++;
            }
          }
        }
      },
    });
    for (const n of [30, 64, 257]) for (let l = 0; l < 4; l++) policy.decode(l, decodeInputs(n, n * 7));
    const inputs = prefillInputs(96, 64, 8, 11);
    for (let l = 0; l < 4; l++) policy.prefill(l, inputs);
    expect(checkedDecode).toBe(3 * 3 * 2);
    expect(checkedPrefill).toBeGreaterThan(20);
    expect(policy.decodeRoles[0]).toBe('dense');
    expect(policy.stats.anchorsHit).toBe(3 * 3 + 3);
  });
});

describe.each(IMPLS)('streaming and all-heads-pooled (%s attention)', (impl) => {
  it('streaming attends the sinks plus the most recent keys, with the budget rule', () => {
    const events: SelectionEvent[] = [];
    const budget = { kMin: 10, percent: 10 };
    const policy = createStreamingPolicy(shape, {
      attention: impl,
      sinkTokens: 3,
      budget,
      onSelection: (e) => events.push(e),
    });
    policy.decode(0, decodeInputs(200, 1));
    const s = dsel(events[0]);
    expect(s.k).toBe(topkBudget(200, budget));
    expect(s.k).toBe(20);
    const expected = [0, 1, 2, ...Array.from({ length: 17 }, (_, i) => 183 + i)];
    for (let j = 0; j < 2; j++) expect(row(s.indices, j * 20, 20)).toEqual(expected);
    policy.prefill(1, { ...prefillInputs(64, 32, 8, 2), tileSize: 32 });
    const p = psel(events[1]);
    // The one tile starts at 32: k(32) = min(32, 10) = 10 earlier keys: 0,1,2 and 25..31.
    expect(p.counts[0]).toBe(10);
    expect(row(p.indices, 0, 10)).toEqual([0, 1, 2, 25, 26, 27, 28, 29, 30, 31]);
    expect(policy.stats.anchorsHit).toBe(0);
  });

  it('all-heads-pooled gives every KV head the same set', () => {
    const events: SelectionEvent[] = [];
    const policy = createPolicy({ kind: 'all-heads-pooled', plan: plan([0, 2], { kMin: 6 }) }, shape, {
      attention: impl,
      onSelection: (e) => events.push(e),
    });
    const inputs = decodeInputs(150, 4);
    for (let l = 0; l < 4; l++) policy.decode(l, inputs);
    const s = dsel(events[2]);
    expect(row(s.indices, 0, s.k)).toEqual(row(s.indices, s.k, s.k));
    expect(policy.kind).toBe('all-heads-pooled');
  });

  it('an unknown policy kind is a typed error', () => {
    expect(() => createPolicy({ kind: 'quest' } as never, shape)).toThrow(PolicyError);
  });
});

describe.each(IMPLS)('policies on a whole model (%s attention)', (impl) => {
  const model = createRandomModel({ hiddenSize: 64, intermediateSize: 128, ...shape, vocabSize: 259 }, 42);
  const prompt = Array.from({ length: 150 }, (_, i) => (i * 37 + 11) % 256);

  function run(spec: Parameters<typeof createPolicy>[0], steps: number) {
    const policy = createPolicy(spec, shape, {
      attention: impl,
      tileSize: 8,
    });
    const seq = model.createSequence(prompt.length + steps);
    const logits: Float32Array[] = [
      model.prefill(seq, prompt, policy, { tileSize: policy.tileSize, chunkTiles: 3 }),
    ];
    for (let s = 0; s < steps; s++) logits.push(model.decode(seq, (s * 13) % 256, policy));
    return { logits, policy };
  }

  it('kascade with budget >= n gives dense logits, prefill and decode', () => {
    const dense = run({ kind: 'dense' }, 6);
    const maps = [
      [0, 1],
      [1, 0],
      [0, 1],
      [0, 0],
    ];
    const kascade = run({ kind: 'kascade', plan: plan([0, 2], { kMin: 100_000 }, maps) }, 6);
    for (let i = 0; i < dense.logits.length; i++) {
      // f32 logits: equal up to the rounding of float64 attention sums taken in another order.
      expect(maxRelDiff(kascade.logits[i]!, dense.logits[i]!)).toBeLessThan(1e-6);
    }
    expect(kascade.policy.usage().effectiveK).toBe(kascade.policy.usage().contextKeys);
  });

  it('every policy runs a model end to end with finite logits', () => {
    const p = plan([0, 2], { kMin: 16 });
    for (const spec of [
      { kind: 'kascade', plan: p },
      { kind: 'kascade', plan: p, decodeOnly: true },
      { kind: 'all-heads-pooled', plan: p },
      { kind: 'oracle-topk', budget: { kMin: 16 }, tileSize: 8 },
      { kind: 'streaming', budget: { kMin: 16 }, tileSize: 8 },
    ] as const) {
      const { logits, policy } = run(spec, 3);
      for (const l of logits) expect(l.every(Number.isFinite)).toBe(true);
      const u = policy.usage();
      expect(u.policy).toBe(spec.kind === 'kascade' ? 'kascade' : spec.kind);
      // Budget: k(n) = max(16, 10% of n) = 16 keys for n around 150.
      expect(u.effectiveK).toBe(16);
      expect(u.contextKeys).toBeCloseTo(152, 6);
    }
  });
});
