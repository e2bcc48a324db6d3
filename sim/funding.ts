// The funding rate model of the simulator's USDT perpetuals: one definition for the funding history
// (/v5/market/funding/history), the tickers' predicted rate, and whoever settles funding on
// positions. Pure functions of the one-minute candles of the price process.
//
// Funding settles every 8 hours, at 00:00, 08:00 and 16:00 UTC (fundingInterval 480 in
// instruments-info). The rate settled at T is Bybit's formula applied to the simulator's premium
// index (sim/mark-price.ts: premium = mark / index - 1):
//
//   P = mean of the premium index at the close of every one-minute candle that starts in [T - 8h, T)
//   F = P + clamp(I - P, -0.05 %, +0.05 %),   I = 0.01 % (interest per 8 hours)
//   rate(T) = clamp(F, -cap, +cap), rounded to 8 decimals; cap = the instrument's upperFundingRate
//
// So a calm market pays I = 0.0001; a falling one (mark above index) pushes the rate up, a rising
// one down, by as much as the average premium exceeds the 0.05 % band around I. An interval
// without a candle (before the market existed) has no rate.
import type { LinearInstrument } from './instruments.ts';
import { premiumOhlc, rowsWithLeadIn } from './mark-price.ts';
import { roundTo } from './num.ts';
import type { KlineRow, PriceProcess } from './price-process.ts';

export const FUNDING_INTERVAL_MS = 8 * 3600_000;
/** I: interest rate per funding interval. */
export const INTEREST_RATE = 0.0001;
/** The band around I inside which the premium does not move the rate. */
export const PREMIUM_CLAMP = 0.0005;
export const DEFAULT_FUNDING_CAP = 0.00375;

const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

/** The rate from the premium samples of one interval (Bybit's formula), capped at ±cap. */
export function fundingRateFromPremiums(premiums: readonly number[], cap: number): number {
  const p = premiums.length ? premiums.reduce((a, x) => a + x, 0) / premiums.length : 0;
  const f = p + clamp(INTEREST_RATE - p, -PREMIUM_CLAMP, PREMIUM_CLAMP);
  const r = roundTo(clamp(f, -cap, cap), 8);
  return Object.is(r, -0) ? 0 : r;
}

/** Premium samples of the interval that settles at T, from one-minute candles with their lead-in. */
export function intervalPremiums(rows: readonly KlineRow[], settleAt: number): number[] {
  const from = settleAt - FUNDING_INTERVAL_MS;
  return premiumOhlc(rows).filter((r) => r.start >= from && r.start < settleAt).map((r) => r.close);
}

export const fundingCap = (inst: LinearInstrument): number => Number(inst.upperFundingRate ?? DEFAULT_FUNDING_CAP);

/** The last settlement time at or before t. */
export const settlementAtOrBefore = (t: number): number => Math.floor(t / FUNDING_INTERVAL_MS) * FUNDING_INTERVAL_MS;

/** The next settlement time after t. */
export const nextSettlement = (t: number): number => settlementAtOrBefore(t) + FUNDING_INTERVAL_MS;

/**
 * The rate that settles at `settleAt` for a perpetual, from the candles the price process holds
 * (for a settlement still to come: the rate if the interval ended now, Bybit's predicted rate).
 * Undefined when no candle of the interval exists.
 */
export function fundingRateAt(prices: PriceProcess, inst: LinearInstrument, settleAt: number): number | undefined {
  const { rows } = rowsWithLeadIn(prices, inst.symbol, settleAt - FUNDING_INTERVAL_MS, settleAt - 1);
  const premiums = intervalPremiums(rows, settleAt);
  return premiums.length ? fundingRateFromPremiums(premiums, fundingCap(inst)) : undefined;
}
