// Profit and loss as the exchange counts it, from executions: one book per (category, symbol,
// strategy), average-cost, exact decimals (Dec). Pure: the tracking stage applies each new
// execution to its book in the order the exchange reported them (one symbol is one partition) and
// stores the books and the per-day sums in the same transaction as the executions, so a replayed
// chunk (its executions already stored) books nothing twice.
//
// The rules (docs/pnl.md has the worked tables the tests check):
// - Linear (USDT perpetual): the position is signed (long > 0). A fill that adds to it moves the
//   average entry; a fill that reduces it realises (price − entry) × closed qty × direction; a fill
//   that crosses zero closes all, then opens the rest at its price. Fees are in USDT (a maker rebate
//   is a negative fee). A funding execution (execType Funding, execFee > 0 when paid) books its
//   fee as funding, not as a fee, as Bybit's transaction log does (SETTLEMENT).
// - Spot: the book is the holding bought through this system (never below zero). A buy's fee is in
//   the base coin (the coin received): the holding grows by qty − fee, and the fee coins count as a
//   fee valued at the fill price (they leave the book at that price); a sell's fee is in the quote coin. A sell of more than the book
//   holds sells coins the system did not buy (the account's starting balance): they have no cost
//   basis here, so that part realises nothing.
// - Unrealised: (mark − entry) × qty, at the mark price for linear, the last price for spot.
// - Net P&L = realised − fees + funding (funding positive when received).
import { Dec } from '../runtime/decimal.ts';

export type PnlCategory = 'spot' | 'linear';

/** One (category, symbol, strategy) book; decimals as exact strings. */
export interface PnlBook {
  category: PnlCategory;
  symbol: string;
  strategy: string;
  /** Linear: signed position; spot: holding (≥ 0). */
  qty: string;
  /** Average entry price of `qty` (0 when flat). */
  avgEntry: string;
  /** Realised before fees and funding, quote coin. */
  realised: string;
  /** Fees paid, quote coin (negative: rebates). */
  fees: string;
  /** Funding received (negative: paid), quote coin. */
  funding: string;
}

export interface PnlFill {
  category: PnlCategory;
  symbol: string;
  side: 'Buy' | 'Sell';
  /** execType as Bybit reports it ('Trade', 'Funding', …); null is a trade. */
  execType: string | null;
  qty: string;
  price: string;
  fee: string;
  feeCurrency: string | null;
}

/** What one fill changed, quote coin. */
export interface PnlDelta {
  realised: Dec;
  fees: Dec;
  funding: Dec;
}

export const emptyBook = (category: PnlCategory, symbol: string, strategy: string): PnlBook => ({ category, symbol, strategy, qty: '0', avgEntry: '0', realised: '0', fees: '0', funding: '0' });

/** The quote coin of a symbol this system trades (USDT or USDC pairs). */
export function quoteCoinOf(symbol: string): string {
  return symbol.endsWith('USDC') ? 'USDC' : 'USDT';
}

/** Division scale of average prices: far below any tick size, so rounding never shows in a quote amount. */
const SCALE = 18;

/** Apply one execution to its book. Returns the next book (a new object) and what changed. */
export function applyFill(book: PnlBook, f: PnlFill): { book: PnlBook; delta: PnlDelta } {
  const qty = Dec.of(f.qty);
  const price = Dec.of(f.price);
  const fee = Dec.of(f.fee);
  const delta: PnlDelta = { realised: Dec.ZERO, fees: Dec.ZERO, funding: Dec.ZERO };
  let pos = Dec.of(book.qty);
  let entry = Dec.of(book.avgEntry);

  if (f.execType === 'Funding') {
    delta.funding = fee.neg();
  } else if (f.category === 'linear') {
    const signed = f.side === 'Buy' ? qty : qty.neg();
    delta.fees = fee;
    if (pos.isZero() || sameSign(pos, signed)) {
      // Adding: the new entry is the size-weighted average.
      const next = pos.add(signed);
      entry = pos.abs().mul(entry).add(qty.mul(price)).div(next.abs(), SCALE);
      pos = next;
    } else {
      const closed = Dec.min(qty, pos.abs());
      delta.realised = price.sub(entry).mul(closed).mul(pos.isPos() ? 1 : -1);
      const next = pos.add(signed);
      if (next.isZero()) entry = Dec.ZERO;
      else if (!sameSign(next, pos)) entry = price; // crossed zero: the rest opens at this price
      pos = next;
    }
  } else {
    const feeInBase = f.feeCurrency !== null && f.feeCurrency !== quoteCoinOf(f.symbol);
    if (f.side === 'Buy') {
      entry = pos.mul(entry).add(qty.mul(price)).div(pos.add(qty), SCALE);
      pos = pos.add(qty);
      if (feeInBase) {
        // The fee coins never reach the holding: they leave the book at the fill price (realising
        // the difference to the new average entry) and count as a fee of that value, so the book
        // holds what the wallet holds and cash + holdings agree with it to the last digit.
        const gone = Dec.min(fee, pos);
        delta.realised = price.sub(entry).mul(gone);
        pos = pos.sub(gone);
        delta.fees = fee.mul(price);
      } else delta.fees = fee;
    } else {
      const matched = Dec.min(qty, pos);
      delta.realised = price.sub(entry).mul(matched);
      pos = pos.sub(matched);
      delta.fees = feeInBase ? fee.mul(price) : fee;
    }
    if (pos.isZero()) entry = Dec.ZERO;
  }
  return {
    book: {
      ...book,
      qty: pos.toString(),
      avgEntry: entry.toString(),
      realised: Dec.of(book.realised).add(delta.realised).toString(),
      fees: Dec.of(book.fees).add(delta.fees).toString(),
      funding: Dec.of(book.funding).add(delta.funding).toString(),
    },
    delta,
  };
}

const sameSign = (a: Dec, b: Dec): boolean => a.isPos() === b.isPos();

/**
 * Who a funding payment belongs to: funding settles a position, which several strategies' books of
 * one symbol may share, so it is split by each book's share of the open size (the last share takes
 * the rounding rest, so the shares add up to the fee exactly). No open book: 'unattributed'.
 */
export function splitFunding(books: readonly PnlBook[], fee: string): Array<{ strategy: string; fee: string }> {
  const open = books.filter((b) => !Dec.of(b.qty).isZero());
  if (open.length === 0) return [{ strategy: 'unattributed', fee }];
  const total = open.reduce((a, b) => a.add(Dec.of(b.qty).abs()), Dec.ZERO);
  let rest = Dec.of(fee);
  return open.map((b, i) => {
    const share = i === open.length - 1 ? rest : Dec.of(fee).mul(Dec.of(b.qty).abs()).div(total, SCALE);
    rest = rest.sub(share);
    return { strategy: b.strategy, fee: share.toString() };
  });
}

/**
 * Bybit's stopOrderType of the orders the exchange itself creates for a position's take profit,
 * stop loss and trailing stop (POST /v5/position/trading-stop). Their fills close the position,
 * so they belong to the books that hold it, not to an order's strategy (they have none).
 */
export const POSITION_STOP_TYPES: ReadonlySet<string> = new Set(['TakeProfit', 'StopLoss', 'TrailingStop', 'PartialTakeProfit', 'PartialStopLoss']);

/**
 * Who a fill of a position's TP/SL order belongs to: the linear books that hold the position it
 * reduces (long books for a Sell, short books for a Buy), each for its share of the open size.
 * A fill as large as their sum closes each book exactly; a smaller one is split in proportion
 * (the last share takes the rounding rest); what exceeds their sum was not held by any book and
 * stays 'external'. The fee follows the quantity. No book holds it: everything is 'external'.
 */
export function splitPositionClose(books: readonly PnlBook[], fill: Pick<PnlFill, 'side' | 'qty' | 'fee'>): Array<{ strategy: string; qty: string; fee: string }> {
  const closesLong = fill.side === 'Sell';
  const holders = books.filter((b) => !Dec.of(b.qty).isZero() && Dec.of(b.qty).isPos() === closesLong);
  const qty = Dec.of(fill.qty);
  const fee = Dec.of(fill.fee);
  if (holders.length === 0 || qty.isZero()) return [{ strategy: 'external', qty: fill.qty, fee: fill.fee }];
  const held = holders.reduce((a, b) => a.add(Dec.of(b.qty).abs()), Dec.ZERO);
  const ours = Dec.min(qty, held);
  const out: Array<{ strategy: string; qty: string; fee: string }> = [];
  let restQty = ours;
  let restFee = fee.mul(ours).div(qty, SCALE);
  const oursFee = restFee;
  holders.forEach((b, i) => {
    const last = i === holders.length - 1;
    const q = last ? restQty : ours.mul(Dec.of(b.qty).abs()).div(held, SCALE);
    const f = last ? restFee : oursFee.mul(q).div(ours, SCALE);
    restQty = restQty.sub(q);
    restFee = restFee.sub(f);
    out.push({ strategy: b.strategy, qty: q.toString(), fee: f.toString() });
  });
  if (qty.gt(held)) out.push({ strategy: 'external', qty: qty.sub(held).toString(), fee: fee.sub(oursFee).toString() });
  return out;
}

/** Unrealised P&L of a book at a price (mark for linear, last for spot), quote coin. */
export function unrealised(book: PnlBook, price: string | null): Dec {
  const q = Dec.of(book.qty);
  if (q.isZero() || price === null) return Dec.ZERO;
  return Dec.of(price).sub(book.avgEntry).mul(q);
}

/** Realised − fees + funding. */
export function netRealised(b: Pick<PnlBook, 'realised' | 'fees' | 'funding'>): Dec {
  return Dec.of(b.realised).sub(b.fees).add(b.funding);
}

/**
 * The day's P&L the daily-loss ladder reads: the UTC day's net realised P&L plus the unrealised
 * P&L of the open books when it is a loss. An unrealised gain is not banked, so it never offsets a
 * realised loss; an unrealised loss counts at once, whichever day the position was opened.
 */
export function dayPnl(dayNetRealised: Dec, openUnrealised: Dec): Dec {
  return dayNetRealised.add(Dec.min(Dec.ZERO, openUnrealised));
}
