// Bybit JSON shapes of simulator state: REST list items and websocket data items. Field names and
// types follow the response examples of the v5 API pages (see tests/sim/fixtures/bybit-docs.json).
// Every number is a decimal string, as Bybit sends it; integers and booleans stay as Bybit types.
import { decimalsOf, fix, trim } from './num.ts';
import type { Instrument } from './instruments.ts';
import { isOpen, leavesQty, type SimOrder, type StopOrderType } from './orders.ts';
import type { Position } from './accounts.ts';

/**
 * 'Trade': a fill of an order. 'Funding': a funding settlement of a linear position, which Bybit
 * also reports as an execution (sim/funding-settlement.ts says what its fields carry).
 */
export type ExecType = 'Trade' | 'Funding';

export interface Execution {
  execId: string;
  execType: ExecType;
  uid: string;
  category: 'spot' | 'linear';
  symbol: string;
  orderId: string;
  orderLinkId: string;
  side: 'Buy' | 'Sell';
  orderPrice: number;
  orderQty: number;
  leavesQty: number;
  /** 'UNKNOWN' for a funding execution: it belongs to no order. */
  orderType: 'Market' | 'Limit' | 'UNKNOWN';
  execPrice: number;
  execQty: number;
  execValue: number;
  execFee: number;
  feeRate: number;
  feeCurrency: string;
  isMaker: boolean;
  execTime: number;
  markPrice: number;
  closedSize: number;
  seq: number;
  /** The order's stopOrderType ('' for an ordinary order). */
  stopOrderType: StopOrderType;
}

/** Bybit's createType of an order: by the user, or by the position's TP/SL or trailing stop. */
export const createTypeOf = (stop: StopOrderType): string => (stop === '' ? 'CreateByUser' : `CreateBy${stop}`);

export const qtyDecimals = (i: Instrument): number => decimalsOf(i.category === 'spot' ? i.basePrecision : i.qtyStep);
export const priceDecimals = (i: Instrument): number => decimalsOf(i.tickSize);

function orderQtyString(o: SimOrder, i: Instrument): string {
  if (o.marketUnit === 'quoteCoin') return trim(o.qty, 8);
  return fix(o.qty, qtyDecimals(i));
}

/** Item of /v5/order/realtime and /v5/order/history. */
export function orderRest(o: SimOrder, i: Instrument): Record<string, unknown> {
  const pd = priceDecimals(i);
  const qd = qtyDecimals(i);
  const leaves = leavesQty(o);
  const quoteSized = o.marketUnit === 'quoteCoin';
  const base: Record<string, unknown> = {
    orderId: o.orderId,
    orderLinkId: o.orderLinkId,
    blockTradeId: '',
    symbol: o.symbol,
    price: o.price === 0 ? '0' : fix(o.price, pd),
    qty: orderQtyString(o, i),
    side: o.side,
    isLeverage: o.category === 'spot' ? '0' : '',
    positionIdx: o.positionIdx,
    orderStatus: o.orderStatus,
    cancelType: o.cancelType,
    rejectReason: o.rejectReason,
    avgPrice: o.cumExecQty > 0 ? trim(o.cumExecValue / o.cumExecQty, 8) : '',
    leavesQty: quoteSized ? '0' : fix(leaves, qd),
    leavesValue: quoteSized ? (isOpen(o) ? trim(o.qty - o.cumExecValue, 8) : '0') : trim(leaves * o.price, 8),
    cumExecQty: fix(o.cumExecQty, qd),
    cumExecValue: trim(o.cumExecValue, 8),
    cumExecFee: trim(o.cumExecFee, 8),
    timeInForce: o.timeInForce,
    orderType: o.orderType,
    stopOrderType: o.stopOrderType,
    orderIv: '',
    marketUnit: o.marketUnit,
    triggerPrice: o.triggerPrice > 0 ? fix(o.triggerPrice, pd) : '0',
    takeProfit: '0',
    stopLoss: '0',
    tpslMode: o.tpslMode || (o.category === 'linear' ? 'UNKNOWN' : ''),
    ocoTriggerBy: '',
    tpLimitPrice: '0',
    slLimitPrice: '0',
    tpTriggerBy: '',
    slTriggerBy: '',
    triggerDirection: o.triggerDirection,
    triggerBy: o.triggerBy,
    lastPriceOnCreated: fix(o.lastPriceOnCreated, pd),
    reduceOnly: o.reduceOnly,
    closeOnTrigger: o.closeOnTrigger,
    placeType: '',
    smpType: 'None',
    smpGroup: 0,
    smpOrderId: '',
    createdTime: String(o.createdTime),
    updatedTime: String(o.updatedTime),
  };
  if (o.category === 'linear') base.createType = createTypeOf(o.stopOrderType);
  return base;
}

/** Item of the private `order` websocket topic. */
export function orderWs(o: SimOrder, i: Instrument): Record<string, unknown> {
  return {
    ...orderRest(o, i),
    category: o.category,
    closedPnl: trim(o.closedPnl, 8),
    feeCurrency: o.feeCurrency,
    cumFeeDetail: o.cumExecFee > 0 ? { [o.feeCurrency]: trim(o.cumExecFee, 8) } : {},
  };
}

function execCommon(e: Execution, i: Instrument): Record<string, unknown> {
  const pd = priceDecimals(i);
  const qd = qtyDecimals(i);
  return {
    symbol: e.symbol,
    orderId: e.orderId,
    orderLinkId: e.orderLinkId,
    side: e.side,
    orderPrice: e.orderPrice === 0 ? '0' : fix(e.orderPrice, pd),
    orderQty: e.orderType === 'Market' && i.category === 'spot' ? trim(e.orderQty, 8) : fix(e.orderQty, qd),
    leavesQty: fix(e.leavesQty, qd),
    orderType: e.orderType,
    stopOrderType: e.stopOrderType || 'UNKNOWN',
    execFee: trim(e.execFee, 8),
    execId: e.execId,
    execPrice: fix(e.execPrice, pd),
    execQty: fix(e.execQty, qd),
    execType: e.execType,
    execValue: trim(e.execValue, 8),
    execTime: String(e.execTime),
    isMaker: e.isMaker,
    feeRate: trim(e.feeRate, 8),
    tradeIv: '',
    markIv: '',
    markPrice: fix(e.markPrice, pd),
    indexPrice: '',
    underlyingPrice: '',
    blockTradeId: '',
    closedSize: i.category === 'linear' ? fix(e.closedSize, qd) : '',
    seq: e.seq,
  };
}

/** Item of /v5/execution/list. */
export function executionRest(e: Execution, i: Instrument): Record<string, unknown> {
  const x = { ...execCommon(e, i), feeCurrency: e.feeCurrency, extraFees: '' } as Record<string, unknown>;
  // A funding execution was created by no order, so it has no createType.
  if (i.category === 'linear' && e.execType === 'Trade') x.createType = createTypeOf(e.stopOrderType);
  return x;
}

/** Item of the private `execution` websocket topic. */
export function executionWs(e: Execution, i: Instrument): Record<string, unknown> {
  return { category: e.category, ...execCommon(e, i), feeCurrency: e.feeCurrency, isLeverage: '0' };
}

export interface PositionFigures {
  mark: number;
  upl: number;
  im: number;
  mm: number;
  liqPrice: number;
  /** The position's full TP/SL and trailing stop (distance), 0 when unset. */
  takeProfit: number;
  stopLoss: number;
  trailingStop: number;
}

function positionCommon(p: Position, i: Instrument, f: PositionFigures): Record<string, unknown> {
  const pd = priceDecimals(i);
  const qd = qtyDecimals(i);
  return {
    positionIdx: p.positionIdx,
    riskId: 1,
    riskLimitValue: '2000000',
    symbol: p.symbol,
    side: p.size > 0 ? 'Buy' : p.size < 0 ? 'Sell' : '',
    size: fix(Math.abs(p.size), qd),
    positionValue: trim(Math.abs(p.size) * p.avgPrice, 8),
    tradeMode: 0,
    positionStatus: 'Normal',
    autoAddMargin: 0,
    adlRankIndicator: p.size === 0 ? 0 : 2,
    leverage: String(p.leverage),
    positionBalance: trim(f.im, 8),
    markPrice: fix(f.mark, pd),
    liqPrice: p.size === 0 || f.liqPrice <= 0 ? '' : fix(f.liqPrice, pd),
    bustPrice: '',
    positionMM: trim(f.mm, 8),
    positionIM: trim(f.im, 8),
    tpslMode: 'Full',
    takeProfit: f.takeProfit > 0 ? fix(f.takeProfit, pd) : '0',
    stopLoss: f.stopLoss > 0 ? fix(f.stopLoss, pd) : '0',
    trailingStop: f.trailingStop > 0 ? fix(f.trailingStop, pd) : '0',
    unrealisedPnl: trim(f.upl, 8),
    curRealisedPnl: trim(p.curRealisedPnl, 8),
    cumRealisedPnl: trim(p.cumRealisedPnl, 8),
    seq: p.seq,
    isReduceOnly: false,
    mmrSysUpdatedTime: '',
    leverageSysUpdatedTime: '',
    createdTime: String(p.createdTime),
    updatedTime: String(p.updatedTime),
  };
}

/** Item of /v5/position/list. */
export function positionRest(p: Position, i: Instrument, f: PositionFigures): Record<string, unknown> {
  // The documentation's example spells it mmrSysUpdateTime, its table mmrSysUpdatedTime: send both.
  return { ...positionCommon(p, i, f), avgPrice: trim(p.avgPrice, 8), mmrSysUpdateTime: '' };
}

/** Item of the private `position` websocket topic. */
export function positionWs(p: Position, i: Instrument, f: PositionFigures): Record<string, unknown> {
  return { ...positionCommon(p, i, f), category: 'linear', entryPrice: trim(p.avgPrice, 8), sessionAvgPrice: '' };
}

export interface CoinFigures {
  coin: string;
  wallet: number;
  locked: number;
  upl: number;
  orderIM: number;
  positionIM: number;
  positionMM: number;
  available: number;
  usdPrice: number;
  cumRealisedPnl: number;
}

export interface WalletFigures {
  coins: CoinFigures[];
  totalWallet: number;
  totalUpl: number;
  totalIM: number;
  totalMM: number;
}

export function walletItem(w: WalletFigures): Record<string, unknown> {
  const equity = w.totalWallet + w.totalUpl;
  return {
    accountType: 'UNIFIED',
    accountLTV: '0',
    accountIMRate: equity > 0 ? trim(w.totalIM / equity, 4) : '0',
    accountMMRate: equity > 0 ? trim(w.totalMM / equity, 4) : '0',
    totalEquity: trim(equity, 8),
    totalWalletBalance: trim(w.totalWallet, 8),
    totalMarginBalance: trim(equity, 8),
    totalAvailableBalance: trim(Math.max(0, equity - w.totalIM), 8),
    totalPerpUPL: trim(w.totalUpl, 8),
    totalInitialMargin: trim(w.totalIM, 8),
    totalMaintenanceMargin: trim(w.totalMM, 8),
    coin: w.coins.map((c) => ({
      coin: c.coin,
      equity: trim(c.wallet + c.upl, 8),
      usdValue: trim((c.wallet + c.upl) * c.usdPrice, 8),
      walletBalance: trim(c.wallet, 8),
      free: trim(Math.max(0, c.wallet - c.locked), 8),
      locked: trim(c.locked, 8),
      spotHedgingQty: '0',
      borrowAmount: '0',
      availableToBorrow: '0',
      availableToWithdraw: trim(Math.max(0, c.available), 8),
      accruedInterest: '0',
      totalOrderIM: trim(c.orderIM, 8),
      totalPositionIM: trim(c.positionIM, 8),
      totalPositionMM: trim(c.positionMM, 8),
      unrealisedPnl: trim(c.upl, 8),
      cumRealisedPnl: trim(c.cumRealisedPnl, 8),
      bonus: '0',
      marginCollateral: true,
      collateralSwitch: true,
    })),
  };
}
