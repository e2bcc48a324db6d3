// Closed P&L records (GET /v5/position/closed-pnl): one record each time an order closes (part of)
// a linear position, covering every fill of that order in the same matching pass (a market order
// walking the book is one record with fillCount = its fills; a resting order filled in parts over
// several price steps makes one record per step). As Bybit counts it, closedPnl is the gross P&L of
// the closed part minus its share of the opening fees, the closing fee, and its share of the
// funding paid while the position was held:
//   closedPnl = sum((exit - entry) x qty x side) - openFee - closeFee - funding share
// Field meanings: https://bybit-exchange.github.io/docs/v5/position/close-pnl
import { decimalsOf, fix, trim } from './num.ts';
import type { LinearInstrument } from './instruments.ts';
import type { Side } from './orders.ts';

export interface ClosedPnlRecord {
  uid: string;
  symbol: string;
  orderId: string;
  /** The closing order's side. */
  side: Side;
  qty: number;
  orderPrice: number;
  orderType: 'Market' | 'Limit';
  closedSize: number;
  cumEntryValue: number;
  cumExitValue: number;
  closedPnl: number;
  openFee: number;
  closeFee: number;
  fillCount: number;
  leverage: number;
  createdTime: number;
  updatedTime: number;
}

/** Closing fills of one order in one matching pass, summed until the pass ends. */
export interface CloseAcc {
  closedSize: number;
  cumEntryValue: number;
  cumExitValue: number;
  pnl: number;
  openFee: number;
  closeFee: number;
  funding: number;
  fills: number;
  leverage: number;
  firstTime: number;
  lastTime: number;
}

export const emptyCloseAcc = (leverage: number, now: number): CloseAcc => ({
  closedSize: 0, cumEntryValue: 0, cumExitValue: 0, pnl: 0, openFee: 0, closeFee: 0, funding: 0, fills: 0, leverage, firstTime: now, lastTime: now,
});

export const accClosedPnl = (a: CloseAcc): number => a.pnl - a.openFee - a.closeFee - a.funding;

/** Item of /v5/position/closed-pnl. */
export function closedPnlItem(r: ClosedPnlRecord, i: LinearInstrument): Record<string, unknown> {
  const pd = decimalsOf(i.tickSize);
  const qd = decimalsOf(i.qtyStep);
  return {
    symbol: r.symbol,
    orderType: r.orderType,
    leverage: trim(r.leverage, 2),
    updatedTime: String(r.updatedTime),
    side: r.side,
    orderId: r.orderId,
    closedPnl: trim(r.closedPnl, 8),
    openFee: trim(r.openFee, 8),
    closeFee: trim(r.closeFee, 8),
    avgEntryPrice: trim(r.cumEntryValue / r.closedSize, 8),
    qty: fix(r.qty, qd),
    cumEntryValue: trim(r.cumEntryValue, 8),
    createdTime: String(r.createdTime),
    orderPrice: fix(r.orderPrice, pd),
    closedSize: fix(r.closedSize, qd),
    avgExitPrice: trim(r.cumExitValue / r.closedSize, 8),
    execType: 'Trade',
    fillCount: String(r.fillCount),
    cumExitValue: trim(r.cumExitValue, 8),
  };
}
