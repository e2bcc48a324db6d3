// The replay's strategy comparison: for the same recorded market and signals, what the recorded
// strategy earned next to three alternatives traded at the same times, on the same assets and for
// the same amounts (docs/backtest.md, "Strategies compared"):
//  - warm-up:      the model service's warm-up heuristic (model/evaluate.ts heuristicProbability,
//                  WARMUP_HEURISTIC) on the features the recorded signal carries (the tickers the
//                  model service saw) or, without them, on the replayed market's one-second mids;
//                  a seeded coin when the heuristic has no opinion (as the service does);
//  - buy-and-hold: one buy per asset, at its first signal, of the total amount of that asset's
//                  signals, held to the end;
//  - coin-flip:    a seeded coin picks each side.
// Each runs through the real order-manager units in a world of its own (fresh simulator with the
// same seed, namespace, database), so no strategy's orders, exposure or losses change another's.
import { createHash } from 'node:crypto';
import { mulberry32 } from '../stack/seeded.ts';
import { computeFeatures, FEATURE_NAMES, type Tick } from '../model/features.ts';
import { heuristicProbability } from '../model/evaluate.ts';
import type { Parsed } from './replay-sources.ts';
import type { SourceRecord, StrategyComparisonRow } from './replay-types.ts';
import { round, unrealised, type Book } from './replay-pnl.ts';

export const STRATEGIES = ['recorded', 'warm-up', 'buy-and-hold', 'coin-flip'] as const;
export type StrategyName = (typeof STRATEGIES)[number];

/** strategy_id of the signals an alternative sends (the recorded ones keep theirs). */
export const ALT_STRATEGY_ID: Record<Exclude<StrategyName, 'recorded'>, string> = {
  'warm-up': 'replay-warm-up',
  'buy-and-hold': 'replay-buy-and-hold',
  'coin-flip': 'replay-coin-flip',
};

/** The replayed market as a strategy sees it at a signal: one-second mids per asset up to now. */
export interface MarketView {
  ticks(asset: string): readonly Tick[];
}

/** What a strategy sends at recorded signal `i` (null: nothing). */
export type Decide = (i: number, market: MarketView) => { record: SourceRecord; parsed: Parsed } | null;

/** A recorded signal an alternative can be generated from: valid JSON with an asset, a price and an amount. */
function usable(p: Parsed): p is Parsed & { obj: Record<string, unknown>; asset: string } {
  return p.obj !== null && p.asset !== null && p.price !== null && typeof p.obj.amount === 'number' && p.obj.amount > 0;
}

/** A UUID (version 4 layout) derived from its inputs, so a replay sends the same ids every run. */
function derivedUuid(...parts: string[]): string {
  const h = createHash('sha256').update(parts.join('|')).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function altSignal(strategy: Exclude<StrategyName, 'recorded'>, i: number, p: Parsed & { obj: Record<string, unknown> }, side: 'buy' | 'sell', extra: Record<string, unknown> = {}): { record: SourceRecord; parsed: Parsed } {
  const signalId = derivedUuid(strategy, String(i), p.signalId ?? '');
  const { signal: _alias, ...rest } = p.obj;
  const obj = { ...rest, signal_type: side, signal_id: signalId, strategy_id: ALT_STRATEGY_ID[strategy], trace_id: `replay-${strategy}-${i}`, ...extra };
  return {
    record: { value: Buffer.from(JSON.stringify(obj)), key: p.asset, traceId: `replay-${strategy}-${i}`, recordTime: null },
    parsed: { ...p, obj, signalId, strategyId: ALT_STRATEGY_ID[strategy], side },
  };
}

/**
 * The recorded signal's own feature vector, if it has one: the model service records it as
 * `technical_indicators` keyed by FEATURE_NAMES (mkt-v1, model/features.ts snapshotOf).
 */
function recordedFeatures(p: Parsed): number[] | null {
  const snap = p.obj?.market_data_snapshot as Record<string, unknown> | undefined;
  const ti = snap?.technical_indicators as Record<string, unknown> | null | undefined;
  if (ti === null || typeof ti !== 'object' || Array.isArray(ti)) return null;
  const v = FEATURE_NAMES.map((n) => ti[n]);
  return v.every((x) => typeof x === 'number' && Number.isFinite(x)) ? (v as number[]) : null;
}

export interface DecideStats {
  /** Where the warm-up heuristic's features came from. */
  features: { recorded: number; replay_market: number; none: number };
}

/**
 * The decision function of each strategy over the recorded signals. `coinSeed` seeds the coin
 * flip and the warm-up heuristic's ties; `heuristic` is WARMUP_HEURISTIC; `lookback` is
 * MODEL_FEATURE_LOOKBACK.
 */
export function planStrategy(name: StrategyName, records: readonly SourceRecord[], parsed: readonly Parsed[], o: { coinSeed: number; heuristic: 'momentum' | 'mean_reversion'; lookback: number }, stats: DecideStats): Decide {
  if (name === 'recorded') return (i) => ({ record: records[i]!, parsed: parsed[i]! });
  if (name === 'coin-flip') {
    // Drawn up front, one per usable signal in replay order: the sides depend on the seed only.
    const coin = mulberry32(o.coinSeed);
    const sides = parsed.map((p) => (usable(p) ? (coin() < 0.5 ? 'buy' : 'sell') : null));
    return (i) => {
      const p = parsed[i]!;
      return usable(p) ? altSignal('coin-flip', i, p, sides[i]!) : null;
    };
  }
  if (name === 'buy-and-hold') {
    const first = new Map<string, number>();
    const total = new Map<string, number>();
    parsed.forEach((p, i) => {
      if (!usable(p)) return;
      if (!first.has(p.asset)) first.set(p.asset, i);
      total.set(p.asset, (total.get(p.asset) ?? 0) + (p.obj.amount as number));
    });
    return (i) => {
      const p = parsed[i]!;
      if (!usable(p) || first.get(p.asset) !== i) return null;
      // Not a warm-up order: the whole amount at once (RISK_WARMUP_MAX_ORDER_NOTIONAL would cap it).
      return altSignal('buy-and-hold', i, p, 'buy', { amount: round(total.get(p.asset)!, 8), is_warmup: false, model_version: null });
    };
  }
  const tie = mulberry32(o.coinSeed ^ 0x5eed);
  return (i, market) => {
    const p = parsed[i]!;
    if (!usable(p)) return null;
    let features = recordedFeatures(p);
    if (features) stats.features.recorded++;
    else {
      features = computeFeatures(market.ticks(p.asset), 0, o.lookback);
      if (features) stats.features.replay_market++;
      else stats.features.none++;
    }
    const prob = features ? heuristicProbability(features, o.heuristic) : 0.5;
    const side = prob > 0.5 ? 'buy' : prob < 0.5 ? 'sell' : tie() < 0.5 ? 'buy' : 'sell';
    return altSignal('warm-up', i, p, side);
  };
}

// ---------------------------------------------------------------------------------------------
// The table

/** What one strategy's world produced, for its row. */
export interface WorldOutcome {
  /** Sent signals: replay index (1-based), asset, side, outcome, fills. */
  sent: Array<{ index: number; asset: string | null; side: string | null; outcome: string; fills: number }>;
  fills: Array<{ value: number; feeUsdt: number }>;
  books: Map<string, Book>;
  curve: Array<{ index: number; equity: number }>;
  finalMids: Map<string, number>;
  /** Mid of each asset right after the market moved for signal index (1-based) k. */
  midAt: Array<Map<string, number>>;
}

/**
 * One row of the `strategies` table. `capital` (the total amount of the usable recorded signals)
 * is the base of turnover and of the per-signal returns of the Sharpe-like ratio.
 */
export function comparisonRow(name: StrategyName, w: WorldOutcome, capital: number, signals: number): StrategyComparisonRow {
  let realised = 0, unreal = 0;
  for (const [k, b] of w.books) {
    realised += b.realised;
    unreal += unrealised(b, w.finalMids.get(k.split('|')[1]!) ?? b.avg);
  }
  const volume = w.fills.reduce((s, f) => s + f.value, 0);
  const fees = w.fills.reduce((s, f) => s + f.feeUsdt, 0);
  // Hit: the mid moved the trade's way between it and the strategy's next trade in the asset (the final mid after its last).
  const trades = w.sent.filter((s) => s.fills > 0 && s.asset !== null && (s.side === 'buy' || s.side === 'sell'));
  let hits = 0;
  trades.forEach((t, k) => {
    const next = trades.slice(k + 1).find((u) => u.asset === t.asset);
    const entry = w.midAt[t.index]?.get(t.asset!);
    const exit = next ? w.midAt[next.index]?.get(t.asset!) : w.finalMids.get(t.asset!);
    if (entry !== undefined && exit !== undefined && (t.side === 'buy' ? 1 : -1) * (exit - entry) > 0) hits++;
  });
  // Drawdown and the Sharpe-like ratio of the equity curve, one period per recorded signal.
  let peak = w.curve[0]?.equity ?? 0, dd = 0;
  const rets: number[] = [];
  for (let k = 0; k < w.curve.length; k++) {
    const e = w.curve[k]!.equity;
    peak = Math.max(peak, e);
    dd = Math.max(dd, peak - e);
    if (k > 0 && capital > 0) rets.push((e - w.curve[k - 1]!.equity) / capital);
  }
  const mean = rets.length ? rets.reduce((a, b) => a + b, 0) / rets.length : 0;
  const std = rets.length ? Math.sqrt(rets.reduce((a, b) => a + (b - mean) ** 2, 0) / rets.length) : 0;
  return {
    strategy: name,
    strategy_id: name === 'recorded' ? null : ALT_STRATEGY_ID[name],
    signals: w.sent.length,
    placed: w.sent.filter((s) => s.outcome === 'placed').length,
    fills: w.fills.length,
    volume: round(volume),
    fees: round(fees),
    realised_pnl: round(realised),
    unrealised_pnl: round(unreal),
    pnl: round(realised + unreal),
    sides: Array.from({ length: signals }, (_, k) => {
      const s = w.sent.find((x) => x.index === k + 1);
      return s?.side === 'buy' ? 'B' : s?.side === 'sell' ? 'S' : '.';
    }).join(''),
    trades: trades.length,
    hit_rate: trades.length ? round(hits / trades.length, 4) : null,
    turnover: capital > 0 ? round(volume / capital, 4) : 0,
    max_drawdown: round(dd),
    sharpe_per_signal: std > 0 ? round(mean / std, 4) : null,
    equity_curve: w.curve.map((p) => p.equity),
  };
}

/** Total amount of the usable recorded signals: the capital the comparison is measured against. */
export function capitalOf(parsed: readonly Parsed[]): number {
  return round(parsed.reduce((s, p) => s + (usable(p) ? (p.obj.amount as number) : 0), 0));
}
