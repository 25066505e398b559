import { prefillTileBudget, topkBudget } from './budget.js';
import { poolDecodeHeads, poolTile } from './kernel.js';
import { pooledDecodeScores } from './pooling.js';
import { topkIndices } from './topk.js';
import type {
  BudgetOptions,
  DecodeInputs,
  DecodeSelection,
  PrefillInputs,
  PrefillSelection,
} from './types.js';
import { type ResolvedPrefill, resolveDecode, resolvePrefill } from './validate.js';

export { validateSelection } from './validate.js';

function decodeSelectionFrom(
  pooled: Float64Array,
  rows: number,
  n: number,
  k: number,
  copies: number,
): DecodeSelection {
  const indices = new Int32Array(copies * k);
  for (let j = 0; j < copies; j++) {
    const row = rows === 1 ? 0 : j;
    indices.set(topkIndices(pooled.subarray(row * n, (row + 1) * n), k), j * k);
  }
  return { kvHeads: copies, k, indices };
}

/**
 * Anchor Top-k for decode: per KV head `j`, the `k = topkBudget(n)` keys with the largest
 * post-softmax group-pooled score (ties: lower index), each row sorted ascending by index.
 */
export function anchorDecodeTopk(inputs: DecodeInputs, budget: BudgetOptions = {}): DecodeSelection {
  const r = resolveDecode('anchorDecodeTopk', inputs);
  const k = topkBudget(r.n, budget);
  return decodeSelectionFrom(pooledDecodeScores(inputs), r.kvHeads, r.n, k, r.kvHeads);
}

/**
 * The all-heads-pooled ablation for decode: one set pooled over every query head, copied to
 * each KV head row.
 */
export function allHeadsPooledDecodeTopk(inputs: DecodeInputs, budget: BudgetOptions = {}): DecodeSelection {
  const r = resolveDecode('allHeadsPooledDecodeTopk', inputs);
  const k = topkBudget(r.n, budget);
  const pooled = new Float64Array(r.n);
  poolDecodeHeads(r, 0, r.heads, pooled);
  return decodeSelectionFrom(pooled, 1, r.n, k, r.kvHeads);
}

function prefillSelection(
  r: ResolvedPrefill,
  budget: BudgetOptions,
  pooledRows: number,
  headsOf: (row: number) => [number, number],
): PrefillSelection {
  const { kvHeads, n, queryStart, tileSize, tiles } = r;
  const counts = new Int32Array(tiles);
  let kMax = 0;
  for (let t = 0; t < tiles; t++) {
    counts[t] = prefillTileBudget(queryStart + t * tileSize, budget);
    if (counts[t] > kMax) kMax = counts[t];
  }
  const indices = new Int32Array(kvHeads * tiles * kMax).fill(-1);
  const scores = new Float64Array(n);
  for (let row = 0; row < pooledRows; row++) {
    const [hFrom, hTo] = headsOf(row);
    for (let t = 0; t < tiles; t++) {
      const start = queryStart + t * tileSize;
      if (counts[t] === 0) continue;
      poolTile(r, hFrom, hTo, t, scores);
      const chosen = topkIndices(scores, counts[t], start);
      const targets = pooledRows === 1 ? kvHeads : 1;
      for (let c = 0; c < targets; c++) {
        const j = pooledRows === 1 ? c : row;
        indices.set(chosen, (j * tiles + t) * kMax);
      }
    }
  }
  return { kvHeads, tiles, tileSize, kMax, counts, indices };
}

/**
 * Anchor Top-k for prefill, head-aware and tile-aware: for KV head `j` and tile `t` starting at
 * position `s`, the `k(s) = prefillTileBudget(s)` earlier keys with the largest
 * `S[j,t](x)` (see `pooledPrefillScores`; ties: lower index). Unused row entries are `-1`.
 */
export function anchorPrefillTopk(inputs: PrefillInputs, budget: BudgetOptions = {}): PrefillSelection {
  const r = resolvePrefill('anchorPrefillTopk', inputs);
  return prefillSelection(r, budget, r.kvHeads, (j) => [j * r.group, (j + 1) * r.group]);
}

/** The all-heads-pooled ablation for prefill: per tile, one set pooled over every query head, copied to each KV head row. */
export function allHeadsPooledPrefillTopk(
  inputs: PrefillInputs,
  budget: BudgetOptions = {},
): PrefillSelection {
  const r = resolvePrefill('allHeadsPooledPrefillTopk', inputs);
  return prefillSelection(r, budget, 1, () => [0, r.heads]);
}
