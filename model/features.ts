// Features of one asset at one instant, from the ticker history up to that instant (event time) and
// the account's exposure. Pure and deterministic: the same tickers give the same vector, so the
// window builder can recompute features exactly on a replay, and the emitter uses the same code.
//
// Returns are log returns between consecutive tickers, in basis points. The spec (names, order,
// lookback) is stored with every model version and every training sample.
import type { MarketDataSnapshot, Ticker } from '../schemas/types.ts';

export interface Tick {
  ts: number;
  mid: number;
  bid: number | null;
  ask: number | null;
  bidSize: number | null;
  askSize: number | null;
  volume24h: number;
}

export const FEATURE_NAMES = [
  'ret_1_bps', // last return
  'ret_3_bps', // sum of the last 3 returns
  'ret_10_bps', // sum of the last 10 returns
  'volatility_bps', // standard deviation of the last `lookback` returns
  'autocorr_1', // lag-1 autocorrelation of the last `lookback` returns (trending vs noisy market)
  'trend', // autocorr_1 * ret_1 / volatility: the momentum the recent structure predicts
  'spread_bps', // (ask - bid) / mid
  'depth_imbalance', // (bid size - ask size) / (bid size + ask size) at the best level
  'exposure', // signed position notional of the asset / MODEL_EXPOSURE_SCALE, clipped to [-3, 3]
] as const;

export const FEATURE_SPEC_ID = 'mkt-v1';

export interface FeatureSpec {
  id: string;
  names: readonly string[];
  lookback: number;
  horizonMs: number;
  /** z-score normalisation fitted on the training set. */
  mean: number[];
  std: number[];
  /**
   * Features in the vector that the network does not see: their normalised value is 0, so their
   * weights get no gradient. Absent in specs stored before it existed (those versions see all).
   */
  ignored?: readonly string[];
}

/**
 * Features a newly trained network does not see: the ones that tell which asset or which account
 * state a window is in rather than where its market is going, through which the network can
 * memorise the drift an asset happened to have in the training data.
 * - `exposure`, the account's position in the asset: an effect of whatever strategy traded before.
 *   On warm-up's data it is a proxy of the drift (momentum piles up inventory in the drift's
 *   direction); once the model trades, that inventory no longer follows the market.
 * - `spread_bps`: near constant per asset (2.03 bps for ETHUSDT, 2.75 for SOLUSDT in the proof's
 *   simulator), so it names the asset. The decision still charges it as a cost (SPREAD_FEATURE).
 * Measured: `npm run proof -- --seed=7` switched a version that predicted P(up) 0.000-0.024 for
 * ETHUSDT at every window (exposure clipped at -3, its spread) through a 150-s stretch in which
 * ETHUSDT only drifted down, and it then sold into the next up block at -31.7 bps per window with
 * its 10-tick return at +3 to +13 bps; with exposure alone hidden it did the same.
 * The values stay in the vector (samples, snapshots and older versions keep their layout).
 */
export const IGNORED_FEATURES: readonly string[] = ['exposure', 'spread_bps'];

/** Fewest tickers before features exist (ret_10 needs 11 prices). */
export const MIN_HISTORY = 12;

const num = (s: string | null | undefined): number | null => {
  if (s === null || s === undefined || s === '') return null;
  const n = Number(s);
  return Number.isFinite(n) ? n : null;
};

/** A ticker reduced to what features need; null when it has no usable price. */
export function tickFromTicker(t: Ticker): Tick | null {
  const bid = num(t.bid1Price);
  const ask = num(t.ask1Price);
  const last = num(t.lastPrice);
  const mid = bid !== null && ask !== null && bid > 0 && ask >= bid ? (bid + ask) / 2 : last;
  if (mid === null || !(mid > 0)) return null;
  return { ts: t.ts, mid, bid, ask, bidSize: num(t.bid1Size), askSize: num(t.ask1Size), volume24h: num(t.volume24h) ?? 0 };
}

export function returnsBps(ticks: readonly Tick[]): number[] {
  const out: number[] = [];
  for (let i = 1; i < ticks.length; i++) out.push(1e4 * Math.log(ticks[i]!.mid / ticks[i - 1]!.mid));
  return out;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const clip = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

/**
 * Feature vector in FEATURE_NAMES order from `history` (ascending by ts, all at or before the
 * instant), or null with too little history. Only the last `lookback + 1` ticks are used.
 */
export function computeFeatures(history: readonly Tick[], exposure: number, lookback: number): number[] | null {
  if (history.length < MIN_HISTORY) return null;
  const ticks = history.slice(-(lookback + 1));
  const r = returnsBps(ticks);
  const last = ticks[ticks.length - 1]!;
  const mean = sum(r) / r.length;
  const vol = Math.sqrt(sum(r.map((x) => (x - mean) ** 2)) / r.length);
  let num1 = 0;
  let den = 0;
  for (let i = 0; i < r.length; i++) {
    den += r[i]! ** 2;
    if (i > 0) num1 += r[i]! * r[i - 1]!;
  }
  const ac = den > 0 ? clip(num1 / den, -1, 1) : 0;
  const r1 = r[r.length - 1]!;
  const spread = last.bid !== null && last.ask !== null ? (1e4 * (last.ask - last.bid)) / last.mid : 0;
  const bs = last.bidSize ?? 0;
  const as = last.askSize ?? 0;
  const imb = bs + as > 0 ? (bs - as) / (bs + as) : 0;
  return [r1, sum(r.slice(-3)), sum(r.slice(-10)), vol, ac, vol > 0 ? clip((ac * r1) / vol, -5, 5) : 0, spread, imb, clip(exposure, -3, 3)];
}

/** The market_data_snapshot a signal carries, from the same history. */
export function snapshotOf(history: readonly Tick[], features: number[] | null): MarketDataSnapshot {
  const last = history[history.length - 1]!;
  const spread = last.bid !== null && last.ask !== null ? Math.max(0, last.ask - last.bid) : 0;
  const indicators: Record<string, number> = {};
  if (features) FEATURE_NAMES.forEach((n, i) => (indicators[n] = features[i]!));
  return {
    price: last.mid,
    spread,
    volume_24h: Math.max(0, last.volume24h),
    volatility: features ? Math.max(0, features[3]! / 1e4) : 0,
    orderbook_depth: last.bidSize !== null && last.askSize !== null ? { bid_depth: Math.max(0, last.bidSize), ask_depth: Math.max(0, last.askSize) } : null,
    technical_indicators: features ? indicators : null,
  };
}

/** Fit z-score normalisation on rows (std floor 1e-6). */
export function fitNormaliser(rows: readonly number[][]): { mean: number[]; std: number[] } {
  const d = FEATURE_NAMES.length;
  const mean = new Array<number>(d).fill(0);
  const std = new Array<number>(d).fill(0);
  if (rows.length === 0) return { mean, std: std.map(() => 1) };
  for (const r of rows) for (let j = 0; j < d; j++) mean[j]! += r[j]! / rows.length;
  for (const r of rows) for (let j = 0; j < d; j++) std[j]! += (r[j]! - mean[j]!) ** 2 / rows.length;
  return { mean, std: std.map((v) => Math.max(Math.sqrt(v), 1e-6)) };
}

type NormSpec = Pick<FeatureSpec, 'mean' | 'std'> & Partial<Pick<FeatureSpec, 'names' | 'ignored'>>;

export function normalise(row: readonly number[], spec: NormSpec): number[] {
  const h = hidden(spec);
  return row.map((x, j) => (h[j] ? 0 : zScore(x, j, spec)));
}

const hiddenBySpec = new WeakMap<object, boolean[]>();
/** Per position of the vector: does the network not see it (spec.ignored, by name)? */
function hidden(spec: NormSpec): boolean[] {
  let h = hiddenBySpec.get(spec);
  if (!h) {
    const names = spec.names ?? FEATURE_NAMES;
    h = names.map((n) => spec.ignored?.includes(n) ?? false);
    hiddenBySpec.set(spec, h);
  }
  return h;
}

/** Feature j of a row, z-scored and clipped to ±8 (what normalise does to each value the spec does not ignore). */
const zScore = (x: number, j: number, spec: NormSpec): number => clip((x - spec.mean[j]!) / spec.std[j]!, -8, 8);
