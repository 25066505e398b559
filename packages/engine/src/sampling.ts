/**
 * Token sampling: greedy, temperature, top-k, top-p, with a seeded PRNG so the same seed
 * gives the same tokens.
 */
import { KascadeRangeError } from '@kascade/core';
import { mulberry32 } from './model/random.js';

export interface SamplingOptions {
  /** 0 (default) is greedy. */
  readonly temperature?: number;
  /** Keep the smallest set of tokens whose probability reaches `topP` (default 1, off). */
  readonly topP?: number;
  /** Keep the `topK` most likely tokens (default 0, off). */
  readonly topK?: number;
  readonly seed?: number;
}

/** A small, fast, seedable PRNG (mulberry32): uniform floats in [0, 1). The random models use the same one. */
export const createRng: (seed: number) => () => number = mulberry32;

/** Index of the largest logit; ties go to the lower index; NaN never wins. */
export function argmax(logits: ArrayLike<number>): number {
  let best = -1;
  let bestValue = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (v > bestValue || (best < 0 && !Number.isNaN(v))) {
      best = i;
      bestValue = v;
    }
  }
  if (best < 0) throw new KascadeRangeError('argmax: every logit is NaN');
  return best;
}

export function validateSampling(options: SamplingOptions): void {
  const { temperature = 0, topP = 1, topK = 0, seed } = options;
  if (!(Number.isFinite(temperature) && temperature >= 0)) {
    throw new KascadeRangeError(`temperature must be a finite number >= 0, got ${temperature}`);
  }
  if (!(Number.isFinite(topP) && topP > 0 && topP <= 1)) {
    throw new KascadeRangeError(`topP must be in (0, 1], got ${topP}`);
  }
  if (!(Number.isInteger(topK) && topK >= 0)) {
    throw new KascadeRangeError(`topK must be a non-negative integer, got ${topK}`);
  }
  if (seed !== undefined && !Number.isFinite(seed)) {
    throw new KascadeRangeError(`seed must be a finite number, got ${seed}`);
  }
}

/** A sampler bound to its options and PRNG: call it once per step with the logits. */
export type Sampler = (logits: ArrayLike<number>) => number;

export function createSampler(options: SamplingOptions = {}): Sampler {
  validateSampling(options);
  const temperature = options.temperature ?? 0;
  if (temperature === 0) return argmax;
  const topP = options.topP ?? 1;
  const topK = options.topK ?? 0;
  const rng = createRng(options.seed ?? Math.floor(Math.random() * 2 ** 32));
  let order = new Int32Array(0);
  let probs = new Float64Array(0);
  return (logits) => {
    const vocab = logits.length;
    if (order.length !== vocab) {
      order = new Int32Array(vocab);
      probs = new Float64Array(vocab);
    }
    // Candidates sorted by logit, descending (ties: lower index first); NaN logits are dropped.
    let m = 0;
    for (let i = 0; i < vocab; i++) if (!Number.isNaN(logits[i]!)) order[m++] = i;
    if (m === 0) throw new KascadeRangeError('sampler: every logit is NaN');
    const candidates = order.subarray(0, m);
    candidates.sort((a, b) => logits[b]! - logits[a]! || a - b);
    const keep = topK > 0 ? Math.min(topK, m) : m;
    const maxLogit = logits[candidates[0]!]!;
    let total = 0;
    for (let r = 0; r < keep; r++) {
      const p = Math.exp((logits[candidates[r]!]! - maxLogit) / temperature);
      probs[r] = p;
      total += p;
    }
    // Nucleus: the shortest prefix whose mass reaches topP.
    let cut = keep;
    if (topP < 1) {
      let acc = 0;
      for (let r = 0; r < keep; r++) {
        acc += probs[r]! / total;
        if (acc >= topP) {
          cut = r + 1;
          break;
        }
      }
    }
    let mass = 0;
    for (let r = 0; r < cut; r++) mass += probs[r]!;
    let u = rng() * mass;
    for (let r = 0; r < cut; r++) {
      u -= probs[r]!;
      if (u < 0) return candidates[r]!;
    }
    return candidates[cut - 1]!;
  };
}
