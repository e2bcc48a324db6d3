// Quantiles for the bench. Nearest rank (the smallest sample with at least p of the samples at or
// below it): every quantile is a value that was measured, and with n samples the p99 is the
// ceil(0.99 n)-th smallest, so below 100 samples it is the maximum. Interpolating or flooring the
// rank instead makes a small sample's tail look shorter than it was (20 samples, floor rank: the
// "p99" was the second-largest value), which is why every distribution carries its sample count.

/** Nearest-rank quantile of ascending `sorted` (p in [0, 1]); NaN when empty. */
export function nearestRank(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  if (!(p >= 0 && p <= 1)) throw new RangeError(`quantile ${p} is not in [0, 1]`);
  // p × n is a float: 0.07 × 100 is 7.000000000000001, whose ceiling would skip a rank.
  const rank = Math.max(1, Math.ceil(p * sorted.length - 1e-9));
  return sorted[rank - 1]!;
}

export interface Dist {
  /** Number of samples the quantiles are taken over. */
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

const r3 = (v: number) => Math.round(v * 1000) / 1000;

/** Nearest-rank p50 / p90 / p99 and the maximum of `xs` (any order), with the sample count. */
export function dist(xs: readonly number[]): Dist {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, p50: r3(nearestRank(s, 0.5)), p90: r3(nearestRank(s, 0.9)), p99: r3(nearestRank(s, 0.99)), max: r3(s.length ? s[s.length - 1]! : NaN) };
}

/**
 * Several runs of one measurement: the quantiles of all their samples pooled (n = the total), each
 * run's own distribution beside them. Pooling rather than a median of per-run quantiles keeps the
 * tail a real sample and the count honest.
 */
export interface Summary extends Dist {
  runs: Dist[];
}

export function summarize(runs: ReadonlyArray<readonly number[]>): Summary {
  return { ...dist(runs.flat()), runs: runs.map((r) => dist(r)) };
}

/** Median of the finite values (lower middle for an even count); NaN when none. */
export function median(xs: readonly number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
}
