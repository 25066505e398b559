import {
  anchorDecodeTopk,
  anchorPrefillTopk,
  type DecodeInputs,
  denseCausalPrefillAttention,
  denseDecodeAttention,
  type PrefillInputs,
  sparseDecodeAttention,
  sparsePrefillAttention,
} from '@kascade/core';
import { type Bench, timingCells } from '../harness.js';
import type { Row } from '../results.js';

function randn(len: number): Float32Array {
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    out[i] = Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
  }
  return out;
}

const heads = 8;
const kvHeads = 2;
const headDim = 64;
const tileSize = 32;
const queries = 64;
const budget = { percent: 10, kMin: 128 };

const bench: Bench = {
  name: 'core-attention',
  description:
    'CPU reference attention in @kascade/core (float64 compute): dense/anchor/reuse, decode and prefill',
  defaults: { warmup: 2, repeats: 10 },
  async run(ctx) {
    const decodeContexts = ctx.quick ? [1024] : [1024, 4096, 16384];
    const prefillContexts = ctx.quick ? [512] : [1024, 4096];
    const rows: Row[] = [];
    const headMap = Int32Array.from({ length: kvHeads }, (_, j) => kvHeads - 1 - j);

    for (const n of decodeContexts) {
      const inputs: DecodeInputs = {
        heads,
        kvHeads,
        headDim,
        n,
        q: randn(heads * headDim),
        k: randn(kvHeads * n * headDim),
        v: randn(kvHeads * n * headDim),
      };
      const selection = anchorDecodeTopk(inputs, budget);
      const ops: [string, () => unknown][] = [
        ['denseDecode', () => denseDecodeAttention(inputs)],
        ['anchorDecode', () => sparseDecodeAttention(inputs, anchorDecodeTopk(inputs, budget))],
        ['reuseDecode', () => sparseDecodeAttention(inputs, selection, headMap)],
      ];
      for (const [kernel, fn] of ops) {
        const s = await ctx.time(`${kernel} n=${n}`, fn);
        rows.push({ kernel, phase: 'decode', context: n, queries: 1, topk: selection.k, ...timingCells(s) });
        ctx.progress(`${kernel} context ${n}: median ${s.median.toFixed(0)} µs`);
      }
    }

    for (const n of prefillContexts) {
      const queryStart = n - queries;
      const inputs: PrefillInputs = {
        heads,
        kvHeads,
        headDim,
        n,
        queries,
        queryStart,
        tileSize,
        q: randn(heads * queries * headDim),
        k: randn(kvHeads * n * headDim),
        v: randn(kvHeads * n * headDim),
      };
      const selection = anchorPrefillTopk(inputs, budget);
      const ops: [string, () => unknown][] = [
        ['densePrefill', () => denseCausalPrefillAttention(inputs)],
        ['anchorPrefill', () => sparsePrefillAttention(inputs, anchorPrefillTopk(inputs, budget))],
        ['reusePrefill', () => sparsePrefillAttention(inputs, selection, headMap)],
      ];
      for (const [kernel, fn] of ops) {
        const s = await ctx.time(`${kernel} n=${n}`, fn);
        rows.push({ kernel, phase: 'prefill', context: n, queries, topk: selection.kMax, ...timingCells(s) });
        ctx.progress(`${kernel} context ${n}: median ${s.median.toFixed(0)} µs`);
      }
    }
    return {
      config: {
        dtype: 'f32 in, f64 compute',
        heads,
        kvHeads,
        headDim,
        tileSize,
        topkPercent: 10,
        kMin: 128,
        batch: 1,
      },
      rows,
    };
  },
};

export default bench;
