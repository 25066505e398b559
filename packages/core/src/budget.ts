import type { BudgetOptions } from './types.js';

/** Defaults of the budget, as the method states them. */
export const DEFAULT_BUDGET = Object.freeze({ percent: 10, kMin: 128, roundTo: 1 });

/** Typed error for arguments outside an op's domain. */
export class KascadeRangeError extends RangeError {
  override readonly name: string = 'KascadeRangeError';
}

function resolve(options: BudgetOptions = {}): { percent: number; kMin: number; roundTo: number } {
  const percent = options.percent ?? DEFAULT_BUDGET.percent;
  const kMin = options.kMin ?? DEFAULT_BUDGET.kMin;
  const roundTo = options.roundTo ?? DEFAULT_BUDGET.roundTo;
  if (!(Number.isFinite(percent) && percent > 0 && percent <= 100)) {
    throw new KascadeRangeError(`budget.percent must be in (0, 100], got ${percent}`);
  }
  if (!(Number.isInteger(kMin) && kMin >= 0)) {
    throw new KascadeRangeError(`budget.kMin must be a non-negative integer, got ${kMin}`);
  }
  if (!(Number.isInteger(roundTo) && roundTo >= 1)) {
    throw new KascadeRangeError(`budget.roundTo must be a positive integer, got ${roundTo}`);
  }
  return { percent, kMin, roundTo };
}

/**
 * The one budget rule: `k(m) = min(m, roundUp(max(kMin, floor(p * m / 100)), roundTo))`
 * for `m` candidate keys. Decode passes `m = n` (the new key counted); prefill passes the
 * tile's start position `s` (see {@link prefillTileBudget}).
 */
export function topkBudget(m: number, options: BudgetOptions = {}): number {
  if (!(Number.isInteger(m) && m >= 0)) {
    throw new KascadeRangeError(`topkBudget: m must be a non-negative integer, got ${m}`);
  }
  const { percent, kMin, roundTo } = resolve(options);
  const wanted = Math.max(kMin, Math.floor((percent * m) / 100));
  const rounded = Math.ceil(wanted / roundTo) * roundTo;
  return Math.min(m, rounded);
}

/**
 * Rolling prefill budget: the tile whose first query sits at position `s` selects `k(s)`
 * of its `s` earlier keys (all of them while `s <= kMin`; none for the first tile), and
 * attends its own diagonal tile on top.
 */
export function prefillTileBudget(tileStart: number, options: BudgetOptions = {}): number {
  return topkBudget(tileStart, options);
}
