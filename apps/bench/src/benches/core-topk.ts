import { topkIndices } from '@kascade/core';
import { type Bench, timingCells } from '../harness.js';
import type { Row } from '../results.js';

/** Score distributions to select from; `uniform` is the headline row. */
const inputs: Record<string, (n: number) => Float32Array> = {
  // i.i.d. uniform scores.
  uniform: (n) => Float32Array.from({ length: n }, () => Math.random()),
  // Attention-like: softmax of Gaussian logits (a long tail of tiny, near-equal values).
  softmax: (n) => {
    const logits = Float64Array.from({ length: n }, () => gaussian() * 3);
    const max = logits.reduce((a, b) => Math.max(a, b), -Infinity);
    let sum = 0;
    for (let i = 0; i < n; i++) sum += logits[i] = Math.exp(logits[i] - max);
    return Float32Array.from(logits, (x) => x / sum);
  },
  // Many ties: 64 distinct values.
  ties: (n) => Float32Array.from({ length: n }, () => Math.floor(Math.random() * 64)),
  // Ascending (adversarial for naive quickselect pivots).
  ascending: (n) => Float32Array.from({ length: n }, (_, i) => i + Math.random() * 0.5),
};

function gaussian(): number {
  return Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
}

/** The result is the exact Top-k: k distinct in-range indices whose smallest score beats every other. */
function checkTopk(scores: Float32Array, k: number, idx: Int32Array): void {
  if (idx.length !== k) throw new Error(`topkIndices returned ${idx.length} indices, wanted ${k}`);
  const chosen = new Uint8Array(scores.length);
  let minIn = Infinity;
  for (const i of idx) {
    if (i < 0 || i >= scores.length || chosen[i]) throw new Error(`bad or duplicate index ${i}`);
    chosen[i] = 1;
    minIn = Math.min(minIn, scores[i]);
  }
  for (let i = 0; i < scores.length; i++) {
    if (!chosen[i] && scores[i] > minIn)
      throw new Error(`index ${i} (score ${scores[i]}) beats a selected one`);
  }
}

const bench: Bench = {
  name: 'core-topk',
  description: 'exact Top-k by selection in @kascade/core (n = 131072, k = 13107, one core, f32 scores)',
  defaults: { warmup: 10, repeats: 50 },
  async run(ctx) {
    const n = 131072;
    const k = 13107;
    const variants = 4; // distinct random inputs, cycled, so no call sees the previous call's data
    const rows: Row[] = [];
    const summary: Record<string, number> = {};
    for (const [dist, make] of Object.entries(inputs)) {
      const data = Array.from({ length: variants }, () => make(n));
      for (const d of data) checkTopk(d, k, topkIndices(d, k));
      let call = 0;
      let sink = 0;
      const s = await ctx.time(`topk ${dist}`, () => {
        sink += topkIndices(data[call++ % variants], k)[0];
      });
      if (sink < 0) throw new Error('unreachable');
      const mElemPerS = Math.round((n / s.median) * 10) / 10; // elements per µs = M elements/s
      rows.push({ distribution: dist, n, k, ...timingCells(s), mElemPerS });
      ctx.progress(`${dist}: median ${s.median.toFixed(1)} µs, ${mElemPerS} M elements/s`);
      if (dist === 'uniform') summary.topkMElemPerS = mElemPerS;
    }
    return { config: { n, k, dtype: 'f32', threads: 1, inputsCycled: variants }, rows, summary };
  },
};

export default bench;
