// Market history the price process alone does not keep: recent public trades, the funding rates
// settled so far, the cross sequence of public data, and open interest over time.
//
//  - Recent trades: the last 1000 prints per category and symbol, as the exchange publishes them
//    (step prints and fills). In memory only, like the book: a restarted simulator starts empty.
//  - Funding: at every step the settlements that came due (sim/funding.ts) are recorded, so the
//    history stays the same after the candles it was computed from are gone; the last 270 per
//    symbol (90 days) are kept in the state file.
//  - Open interest: derived from the executions (kept forever in the state file): a perpetual's
//    positions change only by fills, so the accounts' sizes at any time follow from them. The
//    accounts trade against the synthetic market, which holds the other side of their net: one
//    side of the open interest is max(sum of longs, sum of shorts), both sides twice that.
import type { Exchange, PublicTrade } from './exchange.ts';
import { fundingRateAt, FUNDING_INTERVAL_MS, settlementAtOrBefore } from './funding.ts';
import type { Category, LinearInstrument } from './instruments.ts';
import type { Execution } from './views.ts';

const RECENT_TRADES = 1000;
const FUNDING_KEPT = 270;

export interface RecentTrade {
  execId: string;
  symbol: string;
  price: string;
  size: string;
  side: 'Buy' | 'Sell';
  time: string;
  isBlockTrade: boolean;
  isRPITrade: boolean;
  seq: string;
}

/** What the state file keeps: the funding rates settled, per symbol, oldest first. */
export interface MarketHistoryState {
  funding: Array<{ symbol: string; list: Array<[number, number]> }>;
}

/** One and both sides of the open interest, from signed position sizes. */
export function openInterestOf(sizes: Iterable<number>): { single: number; both: number } {
  let long = 0;
  let short = 0;
  for (const s of sizes) {
    if (s > 0) long += s;
    else short -= s;
  }
  const single = Math.max(long, short);
  return { single, both: 2 * single };
}

/**
 * One side of the open interest of `symbol` at each of `times` (ascending), from the executions
 * (oldest first): the sizes the accounts held after every fill up to that time.
 */
export function openInterestAt(executions: readonly Execution[], symbol: string, times: readonly number[]): number[] {
  const sizes = new Map<string, number>();
  const out: number[] = [];
  let k = 0;
  const mine = executions.filter((e) => e.category === 'linear' && e.symbol === symbol);
  for (const t of times) {
    for (; k < mine.length && mine[k]!.execTime <= t; k++) {
      const e = mine[k]!;
      sizes.set(e.uid, (sizes.get(e.uid) ?? 0) + (e.side === 'Buy' ? e.execQty : -e.execQty));
    }
    out.push(openInterestOf(sizes.values()).single);
  }
  return out;
}

export class MarketHistory {
  private readonly trades = new Map<string, RecentTrade[]>();
  private readonly funding = new Map<string, Array<[number, number]>>();
  /** Last settlement time examined, per symbol. */
  private readonly settledUpTo = new Map<string, number>();
  private lastSeq = 0;
  private readonly unsubscribe: () => void;

  constructor(private readonly ex: Exchange, restore?: MarketHistoryState) {
    for (const f of restore?.funding ?? []) {
      this.funding.set(f.symbol, f.list.map(([t, r]) => [t, r]));
      const last = f.list[f.list.length - 1];
      if (last) this.settledUpTo.set(f.symbol, last[0]);
    }
    this.unsubscribe = ex.on((e) => {
      if (e.type === 'trades') this.onTrades(e.category, e.trades);
      else if (e.type === 'step') this.settleDue();
    });
    this.settleDue();
  }

  close(): void {
    this.unsubscribe();
  }

  snapshot(): MarketHistoryState {
    return { funding: [...this.funding].map(([symbol, list]) => ({ symbol, list })) };
  }

  /**
   * Cross sequence of public data (recent trades, order book): strictly increasing, and from one
   * start to the next too (it begins no lower than the clock in microseconds, as the exchange's seq).
   */
  nextSeq(): number {
    this.lastSeq = Math.max(this.lastSeq + 1, this.ex.now() * 1000);
    return this.lastSeq;
  }

  private onTrades(category: Category, trades: PublicTrade[]): void {
    for (const t of trades) {
      const key = `${category}:${t.s}`;
      let list = this.trades.get(key);
      if (!list) this.trades.set(key, (list = []));
      list.push({ execId: t.i, symbol: t.s, price: t.p, size: t.v, side: t.S, time: String(t.T), isBlockTrade: t.BT, isRPITrade: false, seq: String(this.nextSeq()) });
      // Trimmed in batches: one splice per RECENT_TRADES prints instead of one per print.
      if (list.length >= 2 * RECENT_TRADES) list.splice(0, list.length - RECENT_TRADES);
    }
  }

  /** The latest `limit` public trades, newest first. */
  recentTrades(category: Category, symbol: string, limit: number): RecentTrade[] {
    return (this.trades.get(`${category}:${symbol}`) ?? []).slice(-limit).reverse();
  }

  /** Record the funding rates of every settlement that came due since the last one recorded. */
  settleDue(): void {
    const { prices } = this.ex;
    const upTo = settlementAtOrBefore(prices.time);
    for (const inst of this.ex.instruments.ofCategory('linear') as LinearInstrument[]) {
      if ((inst.status ?? 'Trading') !== 'Trading') {
        // No funding while delisted: a relisted perpetual starts again from its next settlement.
        this.settledUpTo.set(inst.symbol, Math.max(this.settledUpTo.get(inst.symbol) ?? -Infinity, upTo));
        continue;
      }
      const first = prices.firstCandleStart(inst.symbol);
      if (first === undefined) continue;
      let t = Math.max(this.settledUpTo.get(inst.symbol) ?? -Infinity, settlementAtOrBefore(first)) + FUNDING_INTERVAL_MS;
      for (; t <= upTo; t += FUNDING_INTERVAL_MS) {
        const rate = fundingRateAt(prices, inst, t);
        if (rate === undefined) continue;
        let list = this.funding.get(inst.symbol);
        if (!list) this.funding.set(inst.symbol, (list = []));
        list.push([t, rate]);
        if (list.length > FUNDING_KEPT) list.splice(0, list.length - FUNDING_KEPT);
      }
      this.settledUpTo.set(inst.symbol, Math.max(this.settledUpTo.get(inst.symbol) ?? -Infinity, upTo));
    }
  }

  /** Settled funding rates of `symbol` with time in [from, to], newest first. */
  fundingHistory(symbol: string, from: number, to: number): Array<[number, number]> {
    return (this.funding.get(symbol) ?? []).filter(([t]) => t >= from && t <= to).reverse();
  }

  /** The settled rate at `time`, if one was recorded. */
  fundingRate(symbol: string, time: number): number | undefined {
    return this.funding.get(symbol)?.find(([t]) => t === time)?.[1];
  }
}

/** Open interest now, from the accounts' positions (one side, both sides). */
export function openInterestNow(ex: Exchange, symbol: string): { single: number; both: number } {
  return openInterestOf(ex.accountIds().map((uid) => ex.account(uid).positions.get(symbol)?.size ?? 0));
}
