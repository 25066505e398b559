/**
 * Calibration measures of the Kascade method (see the anchor selection in `@kascade/anchors`):
 * how much of an oracle's attention mass a borrowed index set captures, and how much a layer's
 * attention block moves the residual stream.
 */
import { KascadeRangeError } from './budget.js';

function sumAt(scores: ArrayLike<number>, indices: ArrayLike<number>, what: string): number {
  const n = scores.length;
  let sum = 0;
  for (let i = 0; i < indices.length; i++) {
    const x = indices[i];
    if (!(Number.isInteger(x) && x >= 0 && x < n)) {
      throw new KascadeRangeError(
        `capturedMassShare: ${what}[${i}] = ${x} is not a key index in [0, ${n}) (scores has ${n} entries)`,
      );
    }
    sum += scores[x];
  }
  return sum;
}

/**
 * The share of the oracle's captured attention mass that a borrowed index set captures, one
 * head and one tile (or one decode step):
 *
 * `(sum over x in borrowed of S(x) + D) / (sum over x in own of S(x) + D)`
 *
 * where `S` is the pooled post-softmax attention over the candidate keys, `own` the layer's own
 * Top-k set (the oracle), `borrowed` the set taken from an anchor layer, and `D` the mass on the
 * diagonal tile that is attended anyway (0 in decode). 1 means the borrowed set is as good as
 * the oracle's; with `own` the true Top-k of the same size the result lies in `[0, 1]`.
 *
 * Conventions: `0 / 0` (nothing to capture, e.g. the first prefill tile with `D = 0`) is defined as
 * `1` (nothing was lost). Sums are taken in float64 in the order the indices are given; the ratio
 * is not clamped, so a borrowed set that beats `own` (when `own` is not the true Top-k) gives
 * more than 1, and a positive numerator over a zero denominator gives `Infinity`.
 *
 * @throws KascadeRangeError when an index is not an integer in `[0, scores.length)`, or
 *   `diagonalMass` is negative or not finite.
 */
export function capturedMassShare(
  scores: ArrayLike<number>,
  borrowed: ArrayLike<number>,
  own: ArrayLike<number>,
  diagonalMass = 0,
): number {
  if (!(Number.isFinite(diagonalMass) && diagonalMass >= 0)) {
    throw new KascadeRangeError(
      `capturedMassShare: diagonalMass must be a finite non-negative number, got ${diagonalMass}`,
    );
  }
  const captured = sumAt(scores, borrowed, 'borrowed') + diagonalMass;
  const oracle = sumAt(scores, own, 'own') + diagonalMass;
  if (oracle === 0 && captured === 0) return 1;
  return captured / oracle;
}

/**
 * The importance of a layer: the mean over tokens of `1 - cos(x, x + attnOut)`, where `x` is the
 * residual stream entering the layer's attention block and `attnOut` the block's output after the
 * output projection. Both are `[tokens, hidden]`, row-major. The result lies in `[0, 2]`.
 *
 * `1 - cos` is computed as `|x/|x| - y/|y||^2 / 2` (with `y = x + attnOut`), in float64, which
 * keeps its precision when the angle is tiny. Conventions for a token whose `x` or `y` is the zero
 * vector (the cosine is undefined): it contributes `0` when `attnOut` is zero there (the residual
 * did not move) and `1` otherwise (as if orthogonal).
 *
 * @throws KascadeRangeError on a non-positive `tokens` or `hidden`, or arrays whose length is not
 *   `tokens * hidden`.
 */
export function layerImportance(
  residual: ArrayLike<number>,
  attnOut: ArrayLike<number>,
  tokens: number,
  hidden: number,
): number {
  if (!(Number.isInteger(tokens) && tokens > 0)) {
    throw new KascadeRangeError(`layerImportance: tokens must be a positive integer, got ${tokens}`);
  }
  if (!(Number.isInteger(hidden) && hidden > 0)) {
    throw new KascadeRangeError(`layerImportance: hidden must be a positive integer, got ${hidden}`);
  }
  const size = tokens * hidden;
  if (residual.length !== size) {
    throw new KascadeRangeError(
      `layerImportance: residual has ${residual.length} values, expected tokens * hidden = ${size}`,
    );
  }
  if (attnOut.length !== size) {
    throw new KascadeRangeError(
      `layerImportance: attnOut has ${attnOut.length} values, expected tokens * hidden = ${size}`,
    );
  }
  let total = 0;
  for (let t = 0; t < tokens; t++) {
    const base = t * hidden;
    let xx = 0;
    let yy = 0;
    let aa = 0;
    for (let i = base; i < base + hidden; i++) {
      const x = residual[i];
      const a = attnOut[i];
      const y = x + a;
      xx += x * x;
      yy += y * y;
      aa += a * a;
    }
    if (xx === 0 || yy === 0) {
      total += aa === 0 ? 0 : 1;
      continue;
    }
    const rx = 1 / Math.sqrt(xx);
    const ry = 1 / Math.sqrt(yy);
    let dd = 0;
    for (let i = base; i < base + hidden; i++) {
      const x = residual[i];
      const d = x * rx - (x + attnOut[i]) * ry;
      dd += d * d;
    }
    total += dd / 2;
  }
  return total / tokens;
}
