// Index, mark and premium index of the simulator: the one definition every answer uses (tickers,
// mark-price-kline, index-price-kline, premium-index-price-kline, funding rates).
//
//   index(t)   = mid(t), the price process' mid: spot and the perpetual trade around the same
//                price here, so the "basket of spot prices" an index stands for is that mid.
//   mark(t)    = (c[m-4] + c[m-3] + c[m-2] + c[m-1] + mid(t)) / 5: the mean of the current mid and
//                the closes of the four one-minute candles before the current one (fewer at the
//                start of the history). A smoothed mid: it lags a move by about two minutes.
//   premium(t) = mark(t) / index(t) - 1: negative while the price rises, positive while it falls.
//
// Over one minute only mid(t) moves, so the candle of the mid gives the mark's and the premium's
// exact open, high, low and close (the premium falls as the mid rises, so its high comes from the
// mid's low). Everything is a pure function of the one-minute candles: the same candles give the
// same marks, whenever they are asked for.
import type { KlineRow, PriceProcess } from './price-process.ts';

/** Candles averaged into the mark: the current one and the four before it. */
export const MARK_WINDOW = 5;

export interface Ohlc {
  start: number;
  open: number;
  high: number;
  low: number;
  close: number;
}

/** Sum and count of the closes of the MARK_WINDOW - 1 candles before rows[j]. */
function lead(rows: readonly KlineRow[], j: number): { sum: number; n: number } {
  let sum = 0;
  let n = 0;
  for (let k = Math.max(0, j - (MARK_WINDOW - 1)); k < j; k++) {
    sum += rows[k]!.close;
    n++;
  }
  return { sum, n };
}

/** The mark over each one-minute candle of `rows` (oldest first; earlier rows serve as lead-in). */
export function markOhlc(rows: readonly KlineRow[]): Ohlc[] {
  return rows.map((r, j) => {
    const { sum, n } = lead(rows, j);
    const m = (x: number) => (sum + x) / (n + 1);
    return { start: r.start, open: m(r.open), high: m(r.high), low: m(r.low), close: m(r.close) };
  });
}

/** The premium index over each one-minute candle of `rows`. */
export function premiumOhlc(rows: readonly KlineRow[]): Ohlc[] {
  return rows.map((r, j) => {
    const { sum, n } = lead(rows, j);
    const p = (x: number) => (sum + x) / ((n + 1) * x) - 1;
    return { start: r.start, open: p(r.open), high: p(r.low), low: p(r.high), close: p(r.close) };
  });
}

/** The index over each one-minute candle: the mid's own candle. */
export function indexOhlc(rows: readonly KlineRow[]): Ohlc[] {
  return rows.map((r) => ({ start: r.start, open: r.open, high: r.high, low: r.low, close: r.close }));
}

/**
 * One-minute candles of `symbol` with start in [from, to], preceded by the lead-in candles the
 * mark of the first one needs. Returns the rows and how many of them are lead-in.
 */
export function rowsWithLeadIn(prices: PriceProcess, symbol: string, from: number, to: number): { rows: KlineRow[]; leadIn: number } {
  const lead = prices.candlesBefore(symbol, from, MARK_WINDOW - 1);
  return { rows: [...lead, ...prices.candles(symbol, from, to)], leadIn: lead.length };
}

export function indexPrice(prices: PriceProcess, symbol: string): number {
  return prices.mid(symbol);
}

/** The mark now: the mean of the mid and the closes of the candles before the current (last) one. */
export function markPrice(prices: PriceProcess, symbol: string): number {
  const before = prices.recentCandles(symbol, MARK_WINDOW).slice(0, -1);
  return (before.reduce((a, r) => a + r.close, 0) + prices.mid(symbol)) / (before.length + 1);
}

export function premiumIndex(prices: PriceProcess, symbol: string): number {
  return markPrice(prices, symbol) / indexPrice(prices, symbol) - 1;
}

/** Aggregate one-minute OHLC rows into a Bybit kline interval (rows oldest first, `start` = interval start). */
export function aggregateOhlc(rows: readonly Ohlc[], startOf: (t: number) => number): Ohlc[] {
  const out: Ohlc[] = [];
  for (const r of rows) {
    const start = startOf(r.start);
    const last = out[out.length - 1];
    if (last && last.start === start) {
      last.high = Math.max(last.high, r.high);
      last.low = Math.min(last.low, r.low);
      last.close = r.close;
    } else {
      out.push({ ...r, start });
    }
  }
  return out;
}
