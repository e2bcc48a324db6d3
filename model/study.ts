// The regime study's money, as pure functions (stack/regime-study.ts runs the sessions): on the
// held-out windows of a training round, the P&L after costs per window of the model, warm-up, a
// coin flip, buy-and-hold and a look-ahead "perfect" trader, all charged by the same cost book
// (model/money.ts, measured on the training part) and the same window P&L (windowPnlBps), then
// summaries pooled over seeds with the moving-block bootstrap of promotion.
//
// Units: a window is one signal of one asset; a strategy that trades it takes one unit of notional
// for the horizon, so its P&L is bps of that unit, as in the service's evaluation. Windows overlap
// (a signal every interval, each held a horizon), so a strategy trading every window has
// horizon / interval units of each asset open at once: buy-and-hold holds that many ("exposure
// units"), so that its P&L per window is at the same capital at work.
import { maxDrawdown, pairedBootstrap, bootstrapMean, sideCostBps, windowPnlBps, SPREAD_FEATURE, type BootstrapOptions, type BootstrapResult, type CostBook } from './money.ts';
import type { EvalMetrics, EvalRow } from './evaluate.ts';
import type { LabelledRow } from './learner.ts';
import { SeededRng } from './rng.ts';

export const STUDY_STRATEGIES = ['perfect', 'model', 'warm-up', 'buy-and-hold', 'coin-flip'] as const;
export type StudyStrategy = (typeof STUDY_STRATEGIES)[number];

/** A held-out window (a training round's row) with the prices buy-and-hold is marked at (the sample's details). */
export interface StudyRow extends LabelledRow {
  asset: string;
  /** Mid at the signal. */
  price_ref: number;
  /** Mid at the horizon. */
  price_horizon: number;
}

/** One strategy over one seed's held-out windows. */
export interface StrategySeries {
  /** P&L after costs of each held-out window, bps of one window's notional, in held-out order (0 where it held). */
  pnl: number[];
  /** Round trips. */
  trades: number;
  /** Round trips whose side was the market's direction (over the horizon; buy-and-hold: over its holding). */
  hits: number;
  /** Notional traded, both sides, in units of one window's notional. */
  turnover: number;
  /** Costs charged (fees + half spreads + slippage, both sides), bps of one window's notional. */
  costs: number;
}

/** Which side each window is traded on: +1 buy, -1 sell, 0 hold. */
export type Sides = ReadonlyArray<1 | -1 | 0>;

/** P&L of trading the given side in each window, charged by `costs` (windowPnlBps: the service's own window P&L). */
export function sideSeries(rows: readonly EvalRow[], sides: Sides, costs: CostBook): StrategySeries {
  if (sides.length !== rows.length) throw new Error(`sides for ${sides.length} of ${rows.length} windows`);
  const s: StrategySeries = { pnl: new Array<number>(rows.length).fill(0), trades: 0, hits: 0, turnover: 0, costs: 0 };
  rows.forEach((r, i) => {
    const side = sides[i]!;
    if (side === 0) return;
    const c = costs.estimate(r.asset ?? '');
    s.pnl[i] = windowPnlBps(side, r, c);
    s.trades++;
    if ((side === 1 ? 1 : 0) === r.label) s.hits++;
    s.turnover += 2;
    s.costs += 2 * sideCostBps(c, r.features[SPREAD_FEATURE] ?? 0);
  });
  return s;
}

/** A seeded coin for every window. */
export function coinFlipSides(n: number, seed: number): Sides {
  const rng = new SeededRng(seed);
  return Array.from({ length: n }, () => (rng.next() < 0.5 ? 1 : -1));
}

/**
 * The look-ahead trader: in each window the best of buy, sell and hold, by the same window P&L the
 * others are charged. It bounds every strategy that trades one unit per window, window by window.
 */
export function perfectSides(rows: readonly EvalRow[], costs: CostBook): Sides {
  return rows.map((r) => {
    const c = costs.estimate(r.asset ?? '');
    const buy = windowPnlBps(1, r, c), sell = windowPnlBps(-1, r, c);
    if (buy <= 0 && sell <= 0) return 0;
    return buy >= sell ? 1 : -1;
  });
}

/** The look-ahead trader as sim/README.md's table has it: the side of the move in every window, whatever the costs. */
export function oracleEveryWindowSides(rows: readonly EvalRow[]): Sides {
  return rows.map((r) => (r.label === 1 ? 1 : -1));
}

/**
 * Buy-and-hold: per asset, long `units` of notional from its first held-out window's signal to its
 * last window's horizon, one round trip (entry side charged on the first window, exit side on the
 * last, at the cost book's fee + half spread + slippage). Its P&L is marked to market per window:
 * the price change from this window's signal to the asset's next one (the last: to its horizon),
 * over the entry price, so the windows sum to the position's simple return.
 */
export function buyAndHold(rows: readonly StudyRow[], costs: CostBook, units: number): StrategySeries {
  const s: StrategySeries = { pnl: new Array<number>(rows.length).fill(0), trades: 0, hits: 0, turnover: 0, costs: 0 };
  const byAsset = new Map<string, number[]>();
  rows.forEach((r, i) => {
    const list = byAsset.get(r.asset) ?? [];
    list.push(i);
    byAsset.set(r.asset, list);
  });
  for (const [asset, idx] of byAsset) {
    const c = costs.estimate(asset);
    const first = rows[idx[0]!]!, last = rows[idx[idx.length - 1]!]!;
    const entry = first.price_ref;
    idx.forEach((i, k) => {
      const from = rows[i]!.price_ref;
      const to = k + 1 < idx.length ? rows[idx[k + 1]!]!.price_ref : last.price_horizon;
      s.pnl[i] = (units * 1e4 * (to - from)) / entry;
    });
    const entryCost = units * sideCostBps(c, first.features[SPREAD_FEATURE] ?? 0);
    const exitCost = units * sideCostBps(c, last.features[SPREAD_FEATURE] ?? 0);
    s.pnl[idx[0]!]! -= entryCost;
    s.pnl[idx[idx.length - 1]!]! -= exitCost;
    s.trades++;
    if (last.price_horizon > entry) s.hits++;
    s.turnover += 2 * units;
    s.costs += entryCost + exitCost;
  }
  return s;
}

/** The model's and warm-up's series from their held-out evaluation (model/evaluate.ts: the decision rule after costs, the heuristic every window). */
export function evaluatedSeries(m: EvalMetrics, rows: readonly EvalRow[], sides: Sides, costs: CostBook): StrategySeries {
  // evaluate() gives the P&L and trade counts; the costs charged are recomputed from the same
  // sides (those it traded: the windows with a side), checked against its P&L below.
  const s = sideSeries(rows, sides, costs);
  if (s.trades !== m.traded || s.hits !== m.hits) throw new Error(`evaluated ${m.traded} trades / ${m.hits} hits, sides give ${s.trades} / ${s.hits}`);
  for (let i = 0; i < rows.length; i++) {
    if (Math.abs(s.pnl[i]! - m.window_pnl[i]!) > 1e-9) throw new Error(`window ${i}: evaluated P&L ${m.window_pnl[i]} vs ${s.pnl[i]}`);
  }
  return s;
}

/** The held-out series of every strategy for one seed. */
export interface SeedSeries {
  seed: number;
  windows: number;
  series: Record<StudyStrategy, StrategySeries>;
  /** The README oracle (every window, side of the move), for sim/README.md's expected P&L. */
  oracleEveryWindow: StrategySeries;
}

const mean = (xs: readonly number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
const std = (xs: readonly number[]) => {
  const m = mean(xs);
  return xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0;
};

export interface AcrossSeeds {
  /** Per seed, in seed order. */
  values: number[];
  mean: number;
  /** Sample standard deviation across seeds (0 for one seed). */
  sd: number;
  min: number;
  max: number;
}

function across(values: number[]): AcrossSeeds {
  return { values, mean: mean(values), sd: std(values), min: Math.min(...values), max: Math.max(...values) };
}

export interface StrategySummary {
  windows: number;
  trades: number;
  hit_rate: number | null;
  /** Notional traded (both sides) per window, in units of one window's notional. */
  turnover_per_window: number;
  pnl_total_bps: number;
  /** Pooled over seeds: mean per window with the bootstrap's interval. */
  pnl_per_window: BootstrapResult;
  pnl_per_trade: number | null;
  /** Costs charged per trade (bps of one window's notional; buy-and-hold: of its `units`). */
  cost_per_trade: number | null;
  /** Mean P&L per window of each seed. */
  per_seed: AcrossSeeds;
  /** Max drawdown of the cumulative P&L over each seed's held-out windows, the worst seed. */
  max_drawdown_bps: number;
  /** Mean / standard deviation of the per-window P&L, pooled (per window, not annualised). */
  sharpe_per_window: number | null;
}

export function summarise(runs: readonly StrategySeries[], bootstrap: BootstrapOptions): StrategySummary {
  const pooled = runs.flatMap((r) => r.pnl);
  const trades = runs.reduce((a, r) => a + r.trades, 0);
  const hits = runs.reduce((a, r) => a + r.hits, 0);
  const total = pooled.reduce((a, b) => a + b, 0);
  const sd = std(pooled);
  return {
    windows: pooled.length,
    trades,
    hit_rate: trades ? hits / trades : null,
    turnover_per_window: pooled.length ? runs.reduce((a, r) => a + r.turnover, 0) / pooled.length : 0,
    pnl_total_bps: total,
    pnl_per_window: bootstrapMean(pooled, bootstrap),
    pnl_per_trade: trades ? total / trades : null,
    cost_per_trade: trades ? runs.reduce((a, r) => a + r.costs, 0) / trades : null,
    per_seed: across(runs.map((r) => mean(r.pnl))),
    max_drawdown_bps: Math.max(...runs.map((r) => maxDrawdown(r.pnl))),
    sharpe_per_window: sd > 0 ? mean(pooled) / sd : null,
  };
}

export interface PairedSummary {
  /** Pooled paired bootstrap of a − b per window. */
  pooled: BootstrapResult;
  per_seed: AcrossSeeds;
}

export function pairedSummary(a: readonly StrategySeries[], b: readonly StrategySeries[], bootstrap: BootstrapOptions): PairedSummary {
  return {
    pooled: pairedBootstrap(a.flatMap((r) => r.pnl), b.flatMap((r) => r.pnl), bootstrap),
    per_seed: across(a.map((r, i) => mean(r.pnl.map((x, j) => x - b[i]!.pnl[j]!)))),
  };
}

export interface RegimeSummary {
  strategies: Record<StudyStrategy, StrategySummary>;
  oracle_every_window: StrategySummary;
  model_minus_warmup: PairedSummary;
}

export function summariseRegime(seeds: readonly SeedSeries[], bootstrap: BootstrapOptions): RegimeSummary {
  const of = (k: StudyStrategy) => seeds.map((s) => s.series[k]);
  const strategies = Object.fromEntries(STUDY_STRATEGIES.map((k) => [k, summarise(of(k), bootstrap)])) as Record<StudyStrategy, StrategySummary>;
  return { strategies, oracle_every_window: summarise(seeds.map((s) => s.oracleEveryWindow), bootstrap), model_minus_warmup: pairedSummary(of('model'), of('warm-up'), bootstrap) };
}
