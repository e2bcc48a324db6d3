// Money after costs: what a trade is expected to earn and what a window did earn, in bps of
// notional, and the paired bootstrap that promotion and rollback decide on. Pure functions and a
// small rolling cost book; no I/O.
//
// Costs of one side of a trade (entry or exit), measured on the service's own fills:
//   fee        the fee the fills paid (fee in quote / filled notional), else MODEL_FEE_BPS;
//   half spread at the signal (the spread_bps feature: known when deciding);
//   slippage   beyond the half spread: the order events' slippage_bps is measured against the
//              signal's mid, so a fill at the touch already shows the half spread in it; what is
//              left (latency, depth) is the excess, averaged over the recent fills.
// A position round-trips, so a trade pays both sides: cost_rt = 2 x (fee + spread/2 + slippage).
// Expected net return of the side P points to: E[r] = |2P - 1| x E|move over the horizon| - cost_rt,
// E|move| the mean absolute market return of the asset's recent windows (the horizon's own moves).
import type { TrainingSample } from './windows.ts';
import type { LabelledRow } from './learner.ts';
import { SeededRng } from './rng.ts';

/** Index of spread_bps in the feature vector (features.ts FEATURE_NAMES). */
export const SPREAD_FEATURE = 6;

export interface CostEstimate {
  /** Fee per side, bps of notional. */
  feeBps: number;
  /** Slippage per side beyond the half spread, bps (mean over recent fills; 0 without fills). */
  slippageBps: number;
  /** Mean |market return over the horizon|, bps; null before any window of the asset closed. */
  absMoveBps: number | null;
  /** Own fills the fee and slippage were measured on (0: fee is the MODEL_FEE_BPS fallback). */
  fills: number;
  /** Windows E|move| was measured on. */
  moves: number;
}

/** What the cost book learns from one closed window. */
export interface CostObservation {
  asset: string;
  market_return_bps: number;
  spread_bps: number;
  /** Set when the signal was (partly) filled. */
  fill?: { fee_bps: number | null; slippage_bps: number | null };
}

class Rolling {
  private readonly xs: number[] = [];
  private total = 0;
  constructor(private readonly size: number) {}
  add(x: number): void {
    this.xs.push(x);
    this.total += x;
    if (this.xs.length > this.size) this.total -= this.xs.shift()!;
  }
  get n(): number {
    return this.xs.length;
  }
  get mean(): number {
    return this.xs.length ? this.total / this.xs.length : 0;
  }
}

/** Per asset: fee and excess slippage over the last `window` own fills, E|move| over the last `window` windows. */
export class CostBook {
  private readonly assets = new Map<string, { fee: Rolling; slip: Rolling; move: Rolling }>();
  constructor(private readonly window: number, private readonly fallbackFeeBps: number) {}

  private of(asset: string) {
    let a = this.assets.get(asset);
    if (!a) this.assets.set(asset, (a = { fee: new Rolling(this.window), slip: new Rolling(this.window), move: new Rolling(this.window) }));
    return a;
  }

  observe(o: CostObservation): void {
    if (!Number.isFinite(o.market_return_bps)) return;
    const a = this.of(o.asset);
    a.move.add(Math.abs(o.market_return_bps));
    if (o.fill) {
      if (o.fill.fee_bps !== null && Number.isFinite(o.fill.fee_bps)) a.fee.add(o.fill.fee_bps);
      if (o.fill.slippage_bps !== null && Number.isFinite(o.fill.slippage_bps)) a.slip.add(o.fill.slippage_bps - Math.max(0, o.spread_bps) / 2);
    }
  }

  estimate(asset: string): CostEstimate {
    const a = this.assets.get(asset);
    if (!a) return { feeBps: this.fallbackFeeBps, slippageBps: 0, absMoveBps: null, fills: 0, moves: 0 };
    return {
      feeBps: a.fee.n ? a.fee.mean : this.fallbackFeeBps,
      // A favourable average (fills better than the touch) is not counted on: costs never below fee + half spread.
      slippageBps: Math.max(0, a.slip.mean),
      absMoveBps: a.move.n ? a.move.mean : null,
      fills: a.fee.n,
      moves: a.move.n,
    };
  }
}

/** One side's cost, bps: fee + half spread + slippage. */
export const sideCostBps = (c: CostEstimate, spreadBps: number): number => c.feeBps + Math.max(0, spreadBps) / 2 + c.slippageBps;

/** Expected net return of trading the side P points to, bps of notional (null: E|move| unknown). */
export function expectedNetBps(p: number, spreadBps: number, c: CostEstimate): number | null {
  if (c.absMoveBps === null) return null;
  return Math.abs(2 * p - 1) * c.absMoveBps - 2 * sideCostBps(c, spreadBps);
}

/** What a held-out / live window knows about money: the market move and, when filled, what the fill earned. */
export interface MoneyRow {
  asset?: string;
  features: readonly number[];
  market_return_bps: number;
  /** The signal's own execution, when something filled: its side and stored reward (entry fee and slippage paid, marked at the horizon). */
  exec?: { side: 1 | -1; reward_bps: number } | null;
}

/**
 * P&L after costs of taking `side` (+1 buy, -1 sell) in a window, bps of notional. Where the window's
 * own signal was filled on that side, its stored reward (the entry as it really executed) less the
 * exit side's measured cost; otherwise the counterfactual: side x market move less the round trip.
 */
export function windowPnlBps(side: 1 | -1, row: MoneyRow, c: CostEstimate): number {
  const spread = row.features[SPREAD_FEATURE] ?? 0;
  if (row.exec && row.exec.side === side) return row.exec.reward_bps - sideCostBps(c, spread);
  return side * row.market_return_bps - 2 * sideCostBps(c, spread);
}

/** Max peak-to-trough fall of the cumulative P&L of a sequence, bps (>= 0). */
export function maxDrawdown(pnl: readonly number[]): number {
  let cum = 0, peak = 0, dd = 0;
  for (const x of pnl) {
    cum += x;
    if (cum > peak) peak = cum;
    if (peak - cum > dd) dd = peak - cum;
  }
  return dd;
}

export interface BootstrapOptions {
  resamples: number;
  seed: number;
  /** One-sided confidence of the bounds, e.g. 0.95. */
  confidence: number;
  /** Moving-block length (1: the plain bootstrap); neighbouring windows share a market regime. */
  block: number;
}

export interface BootstrapResult {
  n: number;
  mean: number;
  /** Lower bound of the one-sided `confidence` interval of the mean. */
  lower: number;
  /** Upper bound of the one-sided `confidence` interval of the mean. */
  upper: number;
  resamples: number;
  confidence: number;
  block: number;
}

/**
 * Bootstrap of the mean of `xs` (for a paired comparison: the per-window differences), moving
 * blocks of `block` consecutive windows drawn with a seeded generator: the same input and options
 * always give the same bounds. Percentile bounds of the resampled means.
 */
export function bootstrapMean(xs: readonly number[], o: BootstrapOptions): BootstrapResult {
  const n = xs.length;
  const mean = n ? xs.reduce((a, b) => a + b, 0) / n : 0;
  if (n === 0) return { n, mean: 0, lower: 0, upper: 0, resamples: o.resamples, confidence: o.confidence, block: o.block };
  const block = Math.max(1, Math.min(n, Math.floor(o.block)));
  const starts = n - block + 1;
  const rng = new SeededRng(o.seed);
  const means = new Float64Array(o.resamples);
  for (let r = 0; r < o.resamples; r++) {
    let s = 0, k = 0;
    while (k < n) {
      const from = rng.int(starts);
      for (let j = 0; j < block && k < n; j++, k++) s += xs[from + j]!;
    }
    means[r] = s / n;
  }
  means.sort();
  const q = (p: number) => means[Math.min(o.resamples - 1, Math.max(0, Math.floor(p * o.resamples)))]!;
  return { n, mean, lower: q(1 - o.confidence), upper: q(o.confidence), resamples: o.resamples, confidence: o.confidence, block };
}

/** A bootstrap of the per-window differences a - b (paired: the same windows, in the same order). */
export function pairedBootstrap(a: readonly number[], b: readonly number[], o: BootstrapOptions): BootstrapResult {
  if (a.length !== b.length) throw new Error(`paired bootstrap: ${a.length} vs ${b.length} windows`);
  return bootstrapMean(a.map((x, i) => x - b[i]!), o);
}

/** A cost book fitted on rows (oldest first): what evaluation charges, measured on the training part only. */
export function costBookOf(rows: readonly LabelledRow[], window: number, fallbackFeeBps: number): CostBook {
  const book = new CostBook(window, fallbackFeeBps);
  for (const r of rows) book.observe({ asset: r.asset ?? '', market_return_bps: r.market_return_bps, spread_bps: r.features[SPREAD_FEATURE] ?? 0, fill: r.exec ? { fee_bps: r.exec.fee_bps, slippage_bps: r.exec.slippage_bps } : undefined });
  return book;
}

const numOrNull = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);

/** A sample's execution facts, when something filled. */
export function execOf(s: Pick<TrainingSample, 'side' | 'reward' | 'details'>): LabelledRow['exec'] {
  if (!(Number(s.details.filled_qty ?? 0) > 0)) return null;
  return { side: s.side === 'buy' ? 1 : -1, reward_bps: s.reward, fee_bps: numOrNull(s.details.fee_bps), slippage_bps: numOrNull(s.details.slippage_bps) };
}

/** What the cost book learns from a sample. */
export function costObservationOf(s: Pick<TrainingSample, 'asset' | 'side' | 'reward' | 'details' | 'market_return_bps' | 'features'>): CostObservation {
  const e = execOf(s);
  return { asset: s.asset, market_return_bps: s.market_return_bps, spread_bps: s.features[SPREAD_FEATURE] ?? 0, fill: e ? { fee_bps: e.fee_bps, slippage_bps: e.slippage_bps } : undefined };
}

/** A labelled sample as a training / evaluation row (null when it has no direction label). */
export function labelledRowOf(s: TrainingSample): LabelledRow | null {
  if (s.label === null) return null;
  return { features: s.features, label: s.label, market_return_bps: s.market_return_bps, ts: s.ts, asset: s.asset, exec: execOf(s) };
}
