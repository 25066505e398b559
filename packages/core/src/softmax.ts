import { ShapeError } from './errors.js';

/**
 * Numerically stable softmax in float64: `exp(x - max) / sum`.
 *
 * - An empty input gives an empty output.
 * - `-Infinity` logits (masked keys) get probability 0; if every logit is `-Infinity` the row
 *   has no visible key and every output is `NaN`.
 * - If some logits are `+Infinity`, they share the mass equally (the limit) and the rest get 0.
 * - A `NaN` logit makes the whole row `NaN`.
 *
 * `out` may be the same array as `logits` (in place) when `logits` is a `Float64Array`.
 */
export function softmax(logits: ArrayLike<number>, out?: Float64Array): Float64Array {
  const n = logits.length;
  const result = out ?? new Float64Array(n);
  if (result.length !== n) {
    throw new ShapeError(`softmax: out has length ${result.length}, expected logits.length = ${n}`);
  }
  if (n === 0) return result;
  let max = Number.NEGATIVE_INFINITY;
  let sawNaN = false;
  for (let i = 0; i < n; i++) {
    const x = logits[i];
    if (x > max) max = x;
    else if (Number.isNaN(x)) sawNaN = true;
  }
  if (sawNaN || max === Number.NEGATIVE_INFINITY) {
    result.fill(Number.NaN);
    return result;
  }
  if (max === Number.POSITIVE_INFINITY) {
    let count = 0;
    for (let i = 0; i < n; i++) if (logits[i] === max) count++;
    for (let i = 0; i < n; i++) result[i] = logits[i] === max ? 1 / count : 0;
    return result;
  }
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp(logits[i] - max);
    result[i] = e;
    sum += e;
  }
  const inv = 1 / sum;
  for (let i = 0; i < n; i++) result[i] *= inv;
  return result;
}
