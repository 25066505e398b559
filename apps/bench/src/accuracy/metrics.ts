/** Exact match with a Wilson interval, and KL divergence between next-token distributions. */

/**
 * The Wilson score interval of a binomial proportion (`z = 1.96`: 95%). With `n = 0` it
 * is `[0, 1]`.
 */
export function wilsonInterval(correct: number, n: number, z = 1.96): { low: number; high: number } {
  if (!(Number.isInteger(n) && n >= 0 && Number.isInteger(correct) && correct >= 0 && correct <= n)) {
    throw new RangeError(`wilsonInterval: need integers 0 <= correct <= n, got ${correct}/${n}`);
  }
  if (n === 0) return { low: 0, high: 1 };
  const p = correct / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

/** `log softmax(logits)` in float64. */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i]! - lse;
  return out;
}

/** `KL(P || Q) = sum_i p_i (log p_i - log q_i)` in nats, from logits; `P` is the reference (dense). */
export function klDivergence(referenceLogits: ArrayLike<number>, logits: ArrayLike<number>): number {
  if (referenceLogits.length !== logits.length || logits.length === 0) {
    throw new RangeError(`klDivergence: lengths ${referenceLogits.length} and ${logits.length}`);
  }
  const lp = logSoftmax(referenceLogits);
  const lq = logSoftmax(logits);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) {
    const p = Math.exp(lp[i]!);
    if (p > 0) kl += p * (lp[i]! - lq[i]!);
  }
  return Math.max(0, kl);
}

/** Exact match: the greedy completion, up to EOS, is `" " + answer` (whitespace at the ends ignored). */
export function exactMatch(completion: string, answer: string, stoppedOnEos: boolean): boolean {
  return stoppedOnEos && completion.trim() === answer.trim();
}
