// Held-out evaluation of a predictor of P(up over the horizon), and the warm-up heuristic as a
// baseline predictor. Pure functions over arrays.
import { FEATURE_NAMES } from './features.ts';
import { expectedNetBps, maxDrawdown, SPREAD_FEATURE, windowPnlBps, type CostBook, type MoneyRow } from './money.ts';

export interface EvalRow extends MoneyRow {
  label: 0 | 1;
  market_return_bps: number;
}

export interface EvalOptions {
  minEdge: number;
  /** Costs measured on the training part (model/money.ts). */
  costs: CostBook;
  /** Trade only when the expected return after costs is at least this (the model's rule); null: no such gate (warm-up trades regardless). */
  minExpectedBps: number | null;
}

export interface CalibrationBin {
  lo: number;
  hi: number;
  n: number;
  mean_p: number;
  freq_up: number;
}

export interface EvalMetrics {
  /** Labelled held-out samples. */
  n: number;
  /** Samples where |p - 0.5| >= minEdge: the ones a signal would be emitted for. */
  traded: number;
  coverage: number;
  /** Hit rate of the direction on the traded samples (what the emitted signals would achieve). */
  hit_rate: number;
  hits: number;
  /** Hit rate of the direction over every sample (p >= 0.5 means up). */
  hit_rate_all: number;
  log_loss: number;
  brier: number;
  /** Expected calibration error over 10 bins of p. */
  ece: number;
  calibration: CalibrationBin[];
  /** P&L after costs of the traded windows, bps of one unit of notional per trade (model/money.ts windowPnlBps). */
  pnl_bps: number;
  pnl_bps_per_trade: number;
  /** Mean P&L per held-out window (0 where it held). */
  pnl_bps_per_window: number;
  /** Max drawdown of the cumulative P&L over the held-out windows in time order, bps. */
  max_drawdown_bps: number;
  /** P&L after costs of each held-out window, in order (0 where it held): what the paired bootstrap resamples. Not stored. */
  window_pnl: number[];
}

/** A predictor's P as evaluate() reads it: clipped away from 0 and 1 (log-loss). */
const clipP = (p: number): number => Math.min(1 - 1e-7, Math.max(1e-7, p));

/**
 * The side a window is traded on by a predictor saying `p` (already clipped): +1 buy, -1 sell, 0
 * hold. It trades when |p - 0.5| reaches the edge and, with the model's gate, when the expected
 * return after the costs known before the window clears `minExpectedBps`.
 */
export function decisionSide(p: number, row: EvalRow, opts: EvalOptions): 1 | -1 | 0 {
  if (!(Math.abs(p - 0.5) >= opts.minEdge && opts.minEdge >= 0 && !(opts.minEdge === 0 && p === 0.5))) return 0;
  if (opts.minExpectedBps !== null) {
    const e = expectedNetBps(p, row.features[SPREAD_FEATURE] ?? 0, opts.costs.estimate(row.asset ?? ''));
    if (e === null || e < opts.minExpectedBps) return 0;
  }
  return p > 0.5 ? 1 : -1;
}

/** decisionSide of every window: the sides evaluate() charges (the regime study trades them). */
export function decisionSides(probs: readonly number[], rows: readonly EvalRow[], opts: EvalOptions): Array<1 | -1 | 0> {
  return rows.map((r, i) => decisionSide(clipP(probs[i]!), r, opts));
}

export function evaluate(probs: readonly number[], rows: readonly EvalRow[], opts: EvalOptions): EvalMetrics {
  const n = rows.length;
  let traded = 0, hits = 0, hitsAll = 0, ll = 0, brier = 0, pnl = 0;
  const windowPnl = new Array<number>(n).fill(0);
  const bins = Array.from({ length: 10 }, (_, i) => ({ lo: i / 10, hi: (i + 1) / 10, n: 0, sp: 0, sy: 0 }));
  for (let i = 0; i < n; i++) {
    const p = clipP(probs[i]!);
    const y = rows[i]!.label;
    ll -= y * Math.log(p) + (1 - y) * Math.log(1 - p);
    brier += (p - y) ** 2;
    if ((p >= 0.5 ? 1 : 0) === y) hitsAll++;
    const b = bins[Math.min(9, Math.floor(p * 10))]!;
    b.n++;
    b.sp += p;
    b.sy += y;
    const row = rows[i]!;
    const side = decisionSide(p, row, opts);
    if (side !== 0) {
      traded++;
      if ((side === 1 ? 1 : 0) === y) hits++;
      windowPnl[i] = windowPnlBps(side, row, opts.costs.estimate(row.asset ?? ''));
      pnl += windowPnl[i]!;
    }
  }
  const calibration = bins.filter((b) => b.n > 0).map((b) => ({ lo: b.lo, hi: b.hi, n: b.n, mean_p: b.sp / b.n, freq_up: b.sy / b.n }));
  const ece = n ? calibration.reduce((a, b) => a + (b.n / n) * Math.abs(b.mean_p - b.freq_up), 0) : 0;
  return {
    n,
    traded,
    coverage: n ? traded / n : 0,
    hit_rate: traded ? hits / traded : 0,
    hits,
    hit_rate_all: n ? hitsAll / n : 0,
    log_loss: n ? ll / n : 0,
    brier: n ? brier / n : 0,
    ece,
    calibration,
    pnl_bps: pnl,
    pnl_bps_per_trade: traded ? pnl / traded : 0,
    pnl_bps_per_window: n ? pnl / n : 0,
    max_drawdown_bps: maxDrawdown(windowPnl),
    window_pnl: windowPnl,
  };
}

export type Heuristic = 'momentum' | 'mean_reversion';

const RET_3 = FEATURE_NAMES.indexOf('ret_3_bps');

/**
 * The warm-up heuristic as a probability: 0.6 (or 0.4) in the direction of the last 3 returns
 * (momentum), or against them (mean_reversion); 0.5 when they sum to zero.
 */
export function heuristicProbability(features: readonly number[], heuristic: Heuristic): number {
  const r3 = features[RET_3] ?? 0;
  if (r3 === 0) return 0.5;
  const dir = (r3 > 0 ? 1 : -1) * (heuristic === 'momentum' ? 1 : -1);
  return 0.5 + 0.1 * dir;
}
