// Bybit REST items → the exchange topics' records (pure): the reconciler writes the exchange's own
// answers into the same topics the websocket bridges write, in the same Avro records, so tracking
// applies a repair exactly as it applies a push (source: 'reconciler'); exchange sync writes its
// regular snapshots the same way (source: 'rest').
import type { Category, CoinBalance, ExchangeOrderUpdate, Execution, Position, Ticker, WalletBalance } from '../schemas/types.ts';
import type { Raw } from './exchange-reader.ts';

/** A raw field as text ('' when absent). */
export const rawText = (v: unknown): string => (v === undefined || v === null ? '' : String(v));
const s = rawText;
const sn = (v: unknown): string | null => (v === undefined || v === null || v === '' ? null : String(v));
const ms = (v: unknown, dflt: number): number => {
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? n : dflt;
};

export function orderUpdateOf(o: Raw, category: Category, observedAt: number): ExchangeOrderUpdate {
  const created = ms(o.createdTime, observedAt);
  return {
    orderId: s(o.orderId),
    orderLinkId: s(o.orderLinkId),
    symbol: s(o.symbol),
    category,
    side: s(o.side),
    orderType: s(o.orderType),
    price: s(o.price),
    qty: s(o.qty),
    marketUnit: sn(o.marketUnit),
    timeInForce: sn(o.timeInForce),
    orderStatus: s(o.orderStatus),
    cumExecQty: s(o.cumExecQty) || '0',
    cumExecValue: s(o.cumExecValue) || '0',
    cumExecFee: s(o.cumExecFee) || '0',
    avgPrice: s(o.avgPrice),
    leavesQty: s(o.leavesQty),
    rejectReason: s(o.rejectReason) || 'EC_NoError',
    cancelType: sn(o.cancelType),
    reduceOnly: typeof o.reduceOnly === 'boolean' ? o.reduceOnly : null,
    createdTime: created,
    updatedTime: ms(o.updatedTime, created),
    source: 'reconciler',
    streamMessageId: null,
    creationTime: null,
    observedAt,
  };
}

export function executionOf(e: Raw, category: Category, observedAt: number): Execution {
  return {
    execId: s(e.execId),
    orderId: s(e.orderId),
    orderLinkId: s(e.orderLinkId),
    symbol: s(e.symbol),
    category,
    side: s(e.side),
    orderType: sn(e.orderType),
    execType: sn(e.execType),
    execPrice: s(e.execPrice),
    execQty: s(e.execQty),
    execValue: sn(e.execValue),
    execFee: s(e.execFee) || '0',
    feeCurrency: sn(e.feeCurrency),
    feeRate: sn(e.feeRate),
    isMaker: e.isMaker === true || e.isMaker === 'true',
    leavesQty: sn(e.leavesQty),
    execTime: ms(e.execTime, observedAt),
    source: 'reconciler',
    observedAt,
    stopOrderType: sn(e.stopOrderType),
  };
}

/** `source`: 'reconciler' for a repair, 'rest' for exchange sync's regular snapshot. */
export function positionOf(p: Raw, observedAt: number, source: Position['source'] = 'reconciler'): Position {
  return {
    category: 'linear',
    symbol: s(p.symbol),
    side: s(p.side),
    size: s(p.size) || '0',
    positionIdx: Number(p.positionIdx ?? 0) || 0,
    avgPrice: s(p.avgPrice) || '0',
    positionValue: s(p.positionValue) || '0',
    markPrice: sn(p.markPrice),
    liqPrice: sn(p.liqPrice),
    leverage: sn(p.leverage),
    positionIM: sn(p.positionIM),
    unrealisedPnl: s(p.unrealisedPnl) || '0',
    cumRealisedPnl: s(p.cumRealisedPnl) || '0',
    positionStatus: sn(p.positionStatus),
    updatedTime: ms(p.updatedTime, observedAt),
    source,
    observedAt,
  };
}

/** `source`: 'reconciler' for a repair, 'rest' for exchange sync's regular snapshot. */
export function walletOf(w: Raw, observedAt: number, source: WalletBalance['source'] = 'reconciler'): WalletBalance {
  const coins = Array.isArray(w.coin) ? (w.coin as Raw[]) : [];
  return {
    accountType: s(w.accountType) || 'UNIFIED',
    totalEquity: sn(w.totalEquity),
    totalWalletBalance: sn(w.totalWalletBalance),
    totalAvailableBalance: sn(w.totalAvailableBalance),
    totalMarginBalance: sn(w.totalMarginBalance),
    coin: coins.map(
      (c): CoinBalance => ({
        coin: s(c.coin),
        equity: s(c.equity) || '0',
        walletBalance: s(c.walletBalance) || '0',
        free: sn(c.free),
        locked: s(c.locked) || '0',
        availableToWithdraw: sn(c.availableToWithdraw),
        usdValue: sn(c.usdValue),
        unrealisedPnl: sn(c.unrealisedPnl),
        cumRealisedPnl: sn(c.cumRealisedPnl),
        totalOrderIM: sn(c.totalOrderIM),
        totalPositionIM: sn(c.totalPositionIM),
      }),
    ),
    updatedTime: observedAt,
    source,
    observedAt,
  };
}

/** A REST ticker (exchange sync's snapshot): `ts` is when it was read; REST spot tickers carry bid1/ask1, the spot stream does not. */
export function tickerOf(t: Raw, category: Category, ts: number, source: Ticker['source'] = 'rest'): Ticker {
  return {
    symbol: s(t.symbol),
    category,
    lastPrice: s(t.lastPrice),
    bid1Price: sn(t.bid1Price),
    bid1Size: sn(t.bid1Size),
    ask1Price: sn(t.ask1Price),
    ask1Size: sn(t.ask1Size),
    volume24h: s(t.volume24h),
    turnover24h: sn(t.turnover24h),
    price24hPcnt: sn(t.price24hPcnt),
    markPrice: sn(t.markPrice),
    ts,
    source,
    observedAt: ts,
  };
}
