// Synthetic order book around the mid price, and the pure matching functions that take liquidity
// from it. Depth is finite (levels x notional per level), so a large order walks the book and can
// run out: that is how partial fills and slippage arise. Liquidity a taker consumed stays consumed
// until the next price step, when the book is rebuilt around the new mid.
import { toStep } from './num.ts';

export interface DepthModel {
  /** Full bid-ask spread, basis points of mid. Default 2. */
  spreadBps: number;
  /** Levels per side. Default 50. */
  levels: number;
  /** Distance between levels, bps of mid (at least one tick). Default 1. */
  levelGapBps: number;
  /** Quote notional resting at the best level. Default 25000. */
  levelNotional: number;
  /** Each level deeper holds (1 + growth * i) times the first. Default 0.1. */
  growth: number;
  /** Market orders do not fill further than this from mid, bps. Default 300. */
  protectionBps: number;
}

export const DEFAULT_DEPTH: DepthModel = Object.freeze({
  spreadBps: 2,
  levels: 50,
  levelGapBps: 1,
  levelNotional: 25000,
  growth: 0.1,
  protectionBps: 300,
});

export interface Level {
  price: number;
  qty: number;
}

export interface Book {
  bids: Level[]; // best (highest) first
  asks: Level[]; // best (lowest) first
}

export interface Fill {
  price: number;
  qty: number;
}

export function buildBook(mid: number, tick: number, qtyStep: number, m: DepthModel): Book {
  const half = (mid * m.spreadBps) / 2 / 1e4;
  const gap = Math.max(tick, toStep((mid * m.levelGapBps) / 1e4, tick));
  let ask0 = toStep(mid + half, tick, 'ceil');
  let bid0 = toStep(mid - half, tick, 'floor');
  if (ask0 <= bid0) ask0 = toStep(bid0 + tick, tick);
  if (bid0 <= 0) bid0 = tick;
  const bids: Level[] = [];
  const asks: Level[] = [];
  for (let i = 0; i < m.levels; i++) {
    const qty = Math.max(qtyStep, toStep(((m.levelNotional / mid) * (1 + m.growth * i)), qtyStep, 'floor'));
    asks.push({ price: toStep(ask0 + i * gap, tick), qty });
    const bp = toStep(bid0 - i * gap, tick);
    if (bp > 0) bids.push({ price: bp, qty });
  }
  return { bids, asks };
}

/** Liquidity consumed at a price on one side since the last step. */
export type Consumed = Map<number, number>;

export function remaining(level: Level, consumed: Consumed): number {
  return Math.max(0, level.qty - (consumed.get(level.price) ?? 0));
}

/** The side a taker of `side` trades against, after consumption. */
export function oppositeLevels(book: Book, side: 'Buy' | 'Sell'): Level[] {
  return side === 'Buy' ? book.asks : book.bids;
}

const crosses = (side: 'Buy' | 'Sell', levelPrice: number, limit: number) => (side === 'Buy' ? levelPrice <= limit + 1e-12 : levelPrice >= limit - 1e-12);

/** Quantity available at prices no worse than `limit`. */
export function availableUpTo(book: Book, consumed: Consumed, side: 'Buy' | 'Sell', limit: number): number {
  let q = 0;
  for (const l of oppositeLevels(book, side)) {
    if (!crosses(side, l.price, limit)) break;
    q += remaining(l, consumed);
  }
  return q;
}

/** Best opposite price with liquidity left, or undefined. */
export function bestOpposite(book: Book, consumed: Consumed, side: 'Buy' | 'Sell'): number | undefined {
  return oppositeLevels(book, side).find((l) => remaining(l, consumed) > 0)?.price;
}

/**
 * Take liquidity as a taker. Stops at `limit`, after `maxQty` base units, or when `maxQuote`
 * (quote budget) is spent. Consumption is recorded in `consumed`. Pure apart from `consumed`.
 */
export function take(
  book: Book,
  consumed: Consumed,
  side: 'Buy' | 'Sell',
  qtyStep: number,
  bound: { limit: number; maxQty?: number; maxQuote?: number },
): Fill[] {
  const fills: Fill[] = [];
  let qtyLeft = bound.maxQty ?? Infinity;
  let quoteLeft = bound.maxQuote ?? Infinity;
  for (const l of oppositeLevels(book, side)) {
    if (qtyLeft <= 1e-12 || quoteLeft <= 1e-12) break;
    if (!crosses(side, l.price, bound.limit)) break;
    const avail = remaining(l, consumed);
    if (avail <= 0) continue;
    let q = Math.min(avail, qtyLeft, quoteLeft / l.price);
    q = toStep(q, qtyStep, 'floor');
    if (q <= 0) break;
    fills.push({ price: l.price, qty: q });
    consumed.set(l.price, (consumed.get(l.price) ?? 0) + q);
    qtyLeft -= q;
    quoteLeft -= q * l.price;
  }
  return fills;
}

/**
 * A resting (maker) order at `price` meets the book after a step: it trades against opposite
 * liquidity that has moved through its price, at its own price, up to `maxQty`.
 */
export function makerFill(book: Book, consumed: Consumed, side: 'Buy' | 'Sell', price: number, qtyStep: number, maxQty: number): Fill | undefined {
  const fills = take(book, consumed, side, qtyStep, { limit: price, maxQty });
  const qty = toStep(fills.reduce((a, f) => a + f.qty, 0), qtyStep, 'round');
  return qty > 0 ? { price, qty } : undefined;
}
