/** Summary statistics of a sample of timings. */
export interface Stats {
  readonly n: number;
  readonly median: number;
  readonly p10: number;
  readonly p90: number;
  readonly min: number;
  readonly max: number;
  readonly mean: number;
}

/** Thrown for an empty or non-finite sample. */
export class StatsError extends RangeError {
  override readonly name = 'StatsError';
}

function sortedCopy(values: ArrayLike<number>): Float64Array {
  if (values.length === 0) throw new StatsError('statistics of an empty sample are undefined');
  const sorted = Float64Array.from(values);
  for (const v of sorted) {
    if (!Number.isFinite(v)) throw new StatsError(`sample holds a non-finite value: ${v}`);
  }
  return sorted.sort();
}

function quantileSorted(sorted: Float64Array, q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/**
 * The `q`-quantile (0 <= q <= 1) with linear interpolation between closest ranks
 * (numpy's default, R's type 7): the median of an even sample is the mean of the middle two.
 */
export function quantile(values: ArrayLike<number>, q: number): number {
  if (!(q >= 0 && q <= 1)) throw new StatsError(`quantile q must be in [0, 1], got ${q}`);
  return quantileSorted(sortedCopy(values), q);
}

export function median(values: ArrayLike<number>): number {
  return quantile(values, 0.5);
}

export function summarize(values: ArrayLike<number>): Stats {
  const sorted = sortedCopy(values);
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    n: sorted.length,
    median: quantileSorted(sorted, 0.5),
    p10: quantileSorted(sorted, 0.1),
    p90: quantileSorted(sorted, 0.9),
    min: sorted[0],
    max: sorted[sorted.length - 1],
    mean: sum / sorted.length,
  };
}
