// Public websocket feeds with state: `orderbook.{depth}.{symbol}` as Bybit sends it (a snapshot,
// then deltas) and `kline.{interval}.{symbol}`. One feed per category, topic: every subscriber of a
// feed gets the same messages, so a client that applies the deltas to its snapshot holds the book
// the simulator shows (ws-server.ts decides who listens and delivers).
//
// Order book (https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook):
//  - depths 1, 50, 200, 1000 (the synthetic book has `depth.levels` levels, 50 by default, so the
//    deeper topics show those);
//  - a subscriber gets a snapshot of the feed's last state; every change of the book afterwards
//    (a price step, a fill taking liquidity) is one `delta` with the changed levels, size "0" for a
//    level gone, and `u` one higher than the message before;
//  - level 1 sends snapshots only; unchanged for 3 s of exchange time, the same snapshot (same `u`)
//    is sent again;
//  - `u` starts at 1 when a feed starts (Bybit's "u=1: snapshot after a service restart"), `seq` is
//    the cross sequence shared with recent trades, `ts` and `cts` the exchange time;
//  - spot messages and linear level 1 carry `ts` before `type`, as the page notes.
// Kline (…/websocket/public/kline): at every price step the current candle (confirm false); when
// an interval has closed since the last push, its final candle first (confirm true), each closed
// one if the clock jumped over several (at most 200).
import type { Exchange } from './exchange.ts';
import type { Category, Instrument } from './instruments.ts';
import { orderbook } from './market-data.ts';
import type { MarketHistory } from './market-history.ts';
import { fix, trim } from './num.ts';
import { aggregate, intervalStart, KLINE_INTERVALS } from './price-process.ts';
import { priceDecimals } from './views.ts';

export const ORDERBOOK_DEPTHS = [1, 50, 200, 1000] as const;
const LEVEL1_RESEND_MS = 3000;
const MAX_CLOSED_PUSH = 200;

export type PublicTopic =
  | { kind: 'tickers' | 'publicTrade'; symbol: string }
  | { kind: 'orderbook'; depth: number; symbol: string }
  | { kind: 'kline'; interval: string; symbol: string };

const TOPIC_RE = /^(tickers|publicTrade)\.([A-Z0-9]+)$|^orderbook\.(\d+)\.([A-Z0-9]+)$|^kline\.([0-9A-Z]+)\.([A-Z0-9]+)$/;

export function parsePublicTopic(topic: string): PublicTopic | undefined {
  const m = TOPIC_RE.exec(topic);
  if (!m) return undefined;
  if (m[1]) return { kind: m[1] as 'tickers' | 'publicTrade', symbol: m[2]! };
  if (m[3]) {
    const depth = Number(m[3]);
    return (ORDERBOOK_DEPTHS as readonly number[]).includes(depth) ? { kind: 'orderbook', depth, symbol: m[4]! } : undefined;
  }
  return (KLINE_INTERVALS as readonly string[]).includes(m[5]!) ? { kind: 'kline', interval: m[5]!, symbol: m[6]! } : undefined;
}

/** Last millisecond of the kline interval starting at `start`. */
export function intervalEnd(start: number, interval: string): number {
  if (interval === 'M') {
    const d = new Date(start);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) - 1;
  }
  const minutes = interval === 'W' ? 7 * 1440 : interval === 'D' ? 1440 : Number(interval);
  return start + minutes * 60_000 - 1;
}

type Levels = Map<string, string>;

interface BookFeed {
  u: number;
  bids: Levels;
  asks: Levels;
  sentAt: number;
}

export class PublicFeeds {
  private readonly books = new Map<string, BookFeed>();
  private readonly klines = new Map<string, number>();

  constructor(private readonly ex: Exchange, private readonly market: MarketHistory) {}

  private current(inst: Instrument, depth: number): { bids: Levels; asks: Levels } {
    const ob = orderbook(this.ex, inst, depth);
    return { bids: new Map(ob.b.map(([p, q]) => [p!, q!])), asks: new Map(ob.a.map(([p, q]) => [p!, q!])) };
  }

  private message(topic: string, type: 'snapshot' | 'delta', inst: Instrument, depth: number, data: { b: string[][]; a: string[][] }, u: number): Record<string, unknown> {
    const now = this.ex.now();
    const body = { s: inst.symbol, b: data.b, a: data.a, u, seq: this.market.nextSeq() };
    return inst.category === 'spot' || depth === 1 ? { topic, ts: now, type, data: body, cts: now } : { topic, type, ts: now, data: body, cts: now };
  }

  private static levels(m: Levels, desc: boolean): string[][] {
    return [...m].sort((x, y) => (desc ? Number(y[0]) - Number(x[0]) : Number(x[0]) - Number(y[0]))).map(([p, q]) => [p, q]);
  }

  /**
   * The snapshot a new subscriber starts from. With others listening it is the feed's last state
   * (the deltas they get next apply to it too); otherwise the book as it is now.
   */
  bookSnapshot(category: Category, inst: Instrument, depth: number, othersListening: boolean): Record<string, unknown> {
    const topic = `orderbook.${depth}.${inst.symbol}`;
    const key = `${category}:${topic}`;
    let feed = this.books.get(key);
    if (!feed || !othersListening) {
      const cur = this.current(inst, depth);
      if (!feed) this.books.set(key, (feed = { u: 1, ...cur, sentAt: this.ex.now() }));
      else if (!sameLevels(feed.bids, cur.bids) || !sameLevels(feed.asks, cur.asks)) Object.assign(feed, { u: feed.u + 1, ...cur });
    }
    feed.sentAt = this.ex.now();
    return this.message(topic, 'snapshot', inst, depth, { b: PublicFeeds.levels(feed.bids, true), a: PublicFeeds.levels(feed.asks, false) }, feed.u);
  }

  /**
   * The message a change of the book produces for a feed that has subscribers: a delta (a
   * snapshot at level 1), nothing if the book it shows did not change (at level 1, the same
   * snapshot again when `resend` and 3 s passed since the last one).
   */
  bookUpdate(category: Category, inst: Instrument, depth: number, resend: boolean): Record<string, unknown> | undefined {
    const topic = `orderbook.${depth}.${inst.symbol}`;
    const key = `${category}:${topic}`;
    const feed = this.books.get(key);
    if (!feed) return undefined;
    const now = this.ex.now();
    const cur = this.current(inst, depth);
    const b = diff(feed.bids, cur.bids, true);
    const a = diff(feed.asks, cur.asks, false);
    if (b.length === 0 && a.length === 0) {
      if (depth !== 1 || !resend || now - feed.sentAt < LEVEL1_RESEND_MS) return undefined;
      feed.sentAt = now;
      return this.message(topic, 'snapshot', inst, depth, { b: PublicFeeds.levels(feed.bids, true), a: PublicFeeds.levels(feed.asks, false) }, feed.u);
    }
    Object.assign(feed, { u: feed.u + 1, ...cur, sentAt: now });
    if (depth === 1) return this.message(topic, 'snapshot', inst, depth, { b: PublicFeeds.levels(cur.bids, true), a: PublicFeeds.levels(cur.asks, false) }, feed.u);
    return this.message(topic, 'delta', inst, depth, { b, a }, feed.u);
  }

  private klineItem(inst: Instrument, interval: string, r: { start: number; open: number; high: number; low: number; close: number; volume: number; turnover: number }, confirm: boolean) {
    const pd = priceDecimals(inst);
    return {
      start: r.start,
      end: intervalEnd(r.start, interval),
      interval,
      open: fix(r.open, pd),
      close: fix(r.close, pd),
      high: fix(r.high, pd),
      low: fix(r.low, pd),
      volume: trim(r.volume, 8),
      turnover: trim(r.turnover, 8),
      confirm,
      timestamp: this.ex.now(),
    };
  }

  private klineMessage(inst: Instrument, interval: string, items: unknown[]): Record<string, unknown> {
    return { topic: `kline.${interval}.${inst.symbol}`, data: items, ts: this.ex.now(), type: 'snapshot' };
  }

  /** The current candle, for a new subscriber. */
  klineSnapshot(category: Category, inst: Instrument, interval: string, othersListening: boolean): Record<string, unknown> | undefined {
    const now = this.ex.prices.time;
    const start = intervalStart(now, interval);
    const key = `${category}:${interval}:${inst.symbol}`;
    if (!othersListening || !this.klines.has(key)) this.klines.set(key, start);
    const cur = aggregate(this.ex.prices.candles(inst.symbol, start, now), interval).at(-1);
    return cur && this.klineMessage(inst, interval, [this.klineItem(inst, interval, cur, false)]);
  }

  /** After a price step: the candles closed since the last push (confirm true), then the current one. */
  klineUpdate(category: Category, inst: Instrument, interval: string): Array<Record<string, unknown>> {
    const now = this.ex.prices.time;
    const start = intervalStart(now, interval);
    const key = `${category}:${interval}:${inst.symbol}`;
    const last = this.klines.get(key) ?? start;
    this.klines.set(key, start);
    const rows = aggregate(this.ex.prices.candles(inst.symbol, Math.min(last, start), now), interval);
    const closed = rows.filter((r) => r.start < start).slice(-MAX_CLOSED_PUSH);
    const cur = rows.find((r) => r.start === start);
    const out = closed.map((r) => this.klineMessage(inst, interval, [this.klineItem(inst, interval, r, true)]));
    if (cur) out.push(this.klineMessage(inst, interval, [this.klineItem(inst, interval, cur, false)]));
    return out;
  }
}

function sameLevels(x: Levels, y: Levels): boolean {
  if (x.size !== y.size) return false;
  for (const [p, q] of x) if (y.get(p) !== q) return false;
  return true;
}

/** Levels of `cur` that are new or changed, and levels of `last` gone from it (size "0"), sorted. */
function diff(last: Levels, cur: Levels, desc: boolean): string[][] {
  const out: string[][] = [];
  for (const [p, q] of cur) if (last.get(p) !== q) out.push([p, q]);
  for (const p of last.keys()) if (!cur.has(p)) out.push([p, '0']);
  return out.sort((x, y) => (desc ? Number(y[0]) - Number(x[0]) : Number(x[0]) - Number(y[0])));
}
