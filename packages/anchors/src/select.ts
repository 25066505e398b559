/**
 * Choosing the anchor layers: the dynamic program of the Kascade method and its automatic-K
 * variant.
 */
import { AnchorSelectionError } from './errors.js';

/** Layer similarity `layerSim[a][l]` for `a <= l` (entries with `a > l` are never read). */
export type LayerSimilarityMatrix = ArrayLike<ArrayLike<number>>;

export interface SelectAnchorsInput {
  /** `similarity[a][l]` = `sim(a, l)`, for `a < l`; the diagonal is taken as 1 whatever it holds. */
  readonly similarity: LayerSimilarityMatrix;
  /** Importance weight `w[l]` of every layer; its length is the layer count `L`. */
  readonly weights: ArrayLike<number>;
  /** How many anchors `K` to place, layer 0 included (`1 <= K <= L`). */
  readonly anchors: number;
}

export interface SelectAnchorsAutoInput {
  readonly similarity: LayerSimilarityMatrix;
  readonly weights: ArrayLike<number>;
  /** Every layer must reach `sim(anchor(l), l) >= tau`; default 0.9, in `[0, 1]`. */
  readonly tau?: number;
}

/** A choice of anchors and what it scores. */
export interface AnchorSelection {
  /** `0 = a1 < a2 < ... < aK`. */
  readonly anchors: number[];
  /** `sum over l of w[l] * sim(anchor(l), l)`, summed in layer order. */
  readonly objective: number;
  /** `sim(anchor(l), l)` for every layer (1 at anchors), unweighted. */
  readonly layerSimilarity: number[];
  /** The threshold, when chosen by {@link selectAnchorsAuto}. */
  readonly tau?: number;
}

/** `anchor(l)`: the largest anchor `<= l`, for every layer. `anchors` must start at 0 and be sorted. */
export function anchorOfLayers(anchors: ArrayLike<number>, layers: number): number[] {
  const out = new Array<number>(layers);
  let next = 0;
  let current = 0;
  for (let l = 0; l < layers; l++) {
    while (next < anchors.length && anchors[next] <= l) current = anchors[next++];
    out[l] = current;
  }
  return out;
}

function checkInputs(similarity: LayerSimilarityMatrix, weights: ArrayLike<number>): number {
  const L = weights.length;
  if (L < 1) throw new AnchorSelectionError('anchor selection: weights is empty (need one weight per layer)');
  for (let l = 0; l < L; l++) {
    if (!Number.isFinite(weights[l])) {
      throw new AnchorSelectionError(`anchor selection: weights[${l}] = ${weights[l]} is not finite`);
    }
  }
  if (similarity.length < L) {
    throw new AnchorSelectionError(
      `anchor selection: similarity has ${similarity.length} rows, expected ${L} (one per layer)`,
    );
  }
  for (let a = 0; a < L; a++) {
    const row = similarity[a];
    if (row === undefined || row.length < L) {
      throw new AnchorSelectionError(
        `anchor selection: similarity[${a}] has ${row?.length ?? 0} entries, expected ${L}`,
      );
    }
    for (let l = a + 1; l < L; l++) {
      if (!Number.isFinite(row[l])) {
        throw new AnchorSelectionError(`anchor selection: similarity[${a}][${l}] = ${row[l]} is not finite`);
      }
    }
  }
  return L;
}

/** The plan's score, in layer order: the objective and the per-layer similarity. */
export function scoreAnchors(
  similarity: LayerSimilarityMatrix,
  weights: ArrayLike<number>,
  anchors: ArrayLike<number>,
): { objective: number; layerSimilarity: number[] } {
  const L = weights.length;
  const of = anchorOfLayers(anchors, L);
  const layerSimilarity = new Array<number>(L);
  let objective = 0;
  for (let l = 0; l < L; l++) {
    const a = of[l];
    const s = a === l ? 1 : similarity[a][l];
    layerSimilarity[l] = s;
    objective += weights[l] * s;
  }
  return { objective, layerSimilarity };
}

/**
 * `segment[a * (L + 1) + b]` = value of anchor `a` serving layers `a .. b - 1`:
 * `sum over l in [a, b) of w[l] * sim(a, l)` (running sums from each anchor, `O(L^2)`), or
 * `-Infinity` where `feasible` rejects a layer of the segment.
 */
function segmentValues(
  similarity: LayerSimilarityMatrix,
  weights: ArrayLike<number>,
  tau: number | undefined,
): Float64Array {
  const L = weights.length;
  const segment = new Float64Array(L * (L + 1)).fill(Number.NEGATIVE_INFINITY);
  for (let a = 0; a < L; a++) {
    const row = similarity[a];
    let sum = 0;
    for (let b = a + 1; b <= L; b++) {
      const l = b - 1;
      const s = l === a ? 1 : row[l];
      if (tau !== undefined && s < tau) break;
      sum += weights[l] * s;
      segment[a * (L + 1) + b] = sum;
    }
  }
  return segment;
}

/**
 * Extends `best[k-1]` to `best[k]`: `best[k][b]` is the best value of layers `0 .. b - 1` with `k`
 * anchors (the first at 0), the last anchor serving up to `b - 1`; `from[k][b]` is that last anchor.
 */
function extend(
  prev: Float64Array,
  k: number,
  segment: Float64Array,
  L: number,
): { best: Float64Array; from: Int32Array } {
  const best = new Float64Array(L + 1).fill(Number.NEGATIVE_INFINITY);
  const from = new Int32Array(L + 1).fill(-1);
  for (let b = k; b <= L; b++) {
    let top = Number.NEGATIVE_INFINITY;
    let arg = -1;
    for (let c = k - 1; c < b; c++) {
      const v = prev[c] + segment[c * (L + 1) + b];
      if (v > top) {
        top = v;
        arg = c;
      }
    }
    best[b] = top;
    from[b] = arg;
  }
  return { best, from };
}

function firstRow(segment: Float64Array, L: number): Float64Array {
  const best = new Float64Array(L + 1).fill(Number.NEGATIVE_INFINITY);
  for (let b = 1; b <= L; b++) best[b] = segment[b];
  return best;
}

function backtrack(froms: Int32Array[], K: number, L: number): number[] {
  const anchors = new Array<number>(K);
  anchors[0] = 0;
  let b = L;
  for (let k = K; k >= 2; k--) {
    const c = froms[k][b];
    anchors[k - 1] = c;
    b = c;
  }
  return anchors;
}

/**
 * The anchor dynamic program: choose `K` anchors `0 = a1 < ... < aK` maximising
 * `sum over l of w[l] * sim(anchor(l), l)` with `sim(a, a) = 1`, in `O(K L^2)` time (running
 * sums per anchor, then `best[k][b] = max over c of best[k-1][c] + segment(c, b)`). Among equal
 * optima it keeps the one found first (the earliest last anchor at each step).
 */
export function selectAnchors(input: SelectAnchorsInput): AnchorSelection {
  const { similarity, weights } = input;
  const L = checkInputs(similarity, weights);
  const K = input.anchors;
  if (!(Number.isInteger(K) && K >= 1 && K <= L)) {
    throw new AnchorSelectionError(
      `selectAnchors: anchors must be an integer in [1, ${L}] (layers), got ${K}`,
    );
  }
  const segment = segmentValues(similarity, weights, undefined);
  const froms: Int32Array[] = [new Int32Array(0), new Int32Array(0)];
  let best = firstRow(segment, L);
  for (let k = 2; k <= K; k++) {
    const step = extend(best, k, segment, L);
    best = step.best;
    froms[k] = step.from;
  }
  const anchors = backtrack(froms, K, L);
  return { anchors, ...scoreAnchors(similarity, weights, anchors) };
}

/**
 * Automatic `K`: the fewest anchors for which some plan gives every layer an unweighted
 * `sim(anchor(l), l) >= tau`; among the plans with that many anchors, the one with the best
 * weighted objective (the same DP, over the segments that keep every layer at `tau` or above).
 * Every layer an anchor always qualifies, so the answer has at most `L` anchors.
 */
export function selectAnchorsAuto(input: SelectAnchorsAutoInput): AnchorSelection {
  const { similarity, weights } = input;
  const tau = input.tau ?? 0.9;
  if (!(Number.isFinite(tau) && tau >= 0 && tau <= 1)) {
    throw new AnchorSelectionError(`selectAnchorsAuto: tau must be in [0, 1], got ${tau}`);
  }
  const L = checkInputs(similarity, weights);
  const segment = segmentValues(similarity, weights, tau);
  const froms: Int32Array[] = [new Int32Array(0), new Int32Array(0)];
  let best = firstRow(segment, L);
  let K = 1;
  while (best[L] === Number.NEGATIVE_INFINITY && K < L) {
    K++;
    const step = extend(best, K, segment, L);
    best = step.best;
    froms[K] = step.from;
  }
  const anchors = backtrack(froms, K, L);
  return { anchors, ...scoreAnchors(similarity, weights, anchors), tau };
}
