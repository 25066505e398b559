import type { DecodeInputs, PrefillInputs } from '@kascade/core';
import type { LayerAttention } from './hooks.js';

/** Dense causal attention of one query vector against keys `0 .. n-1` of one KV head, accumulated into `out`. */
function attendRow(
  q: ArrayLike<number>,
  qOff: number,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  kvOff: number,
  n: number,
  d: number,
  scale: number,
  scores: Float64Array,
  out: Float64Array,
  outOff: number,
): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let x = 0; x < n; x++) {
    const kb = kvOff + x * d;
    let s = 0;
    for (let i = 0; i < d; i++) s += q[qOff + i] * k[kb + i];
    s *= scale;
    scores[x] = s;
    if (s > max) max = s;
  }
  let sum = 0;
  for (let x = 0; x < n; x++) {
    const e = Math.exp(scores[x] - max);
    scores[x] = e;
    sum += e;
  }
  for (let i = 0; i < d; i++) out[outOff + i] = 0;
  for (let x = 0; x < n; x++) {
    const p = scores[x] / sum;
    const vb = kvOff + x * d;
    for (let i = 0; i < d; i++) out[outOff + i] += p * v[vb + i];
  }
}

/**
 * The plain dense policy, computed in float64: every query attends to every earlier key
 * (and itself). The model's tests use it; the engine's `dense` policy may use core's ops.
 */
export function denseAttention(): LayerAttention {
  let scores = new Float64Array(0);
  const need = (n: number) => {
    if (scores.length < n) scores = new Float64Array(Math.max(n, scores.length * 2));
    return scores;
  };
  return {
    decode(_layer: number, a: DecodeInputs): Float64Array {
      const { heads, kvHeads, headDim: d, n } = a;
      const cap = a.capacity ?? n;
      const g = heads / kvHeads;
      const scale = a.scale ?? 1 / Math.sqrt(d);
      const out = new Float64Array(heads * d);
      const s = need(n);
      for (let h = 0; h < heads; h++) {
        const j = Math.floor(h / g);
        attendRow(a.q, h * d, a.k, a.v, j * cap * d, n, d, scale, s, out, h * d);
      }
      return out;
    },
    prefill(_layer: number, a: PrefillInputs): Float64Array {
      const { heads, kvHeads, headDim: d, n, queries, queryStart } = a;
      const cap = a.capacity ?? n;
      const g = heads / kvHeads;
      const scale = a.scale ?? 1 / Math.sqrt(d);
      const out = new Float64Array(heads * queries * d);
      const s = need(n);
      for (let h = 0; h < heads; h++) {
        const j = Math.floor(h / g);
        for (let i = 0; i < queries; i++) {
          const row = (h * queries + i) * d;
          attendRow(a.q, row, a.k, a.v, j * cap * d, queryStart + i + 1, d, scale, s, out, row);
        }
      }
      return out;
    },
  };
}
