// Order model and the exhaustive order-status transition table (house style 5). A transition not
// in the table is a bug in the simulator and throws InvalidStateTransition.
import type { Category } from './instruments.ts';

export type Side = 'Buy' | 'Sell';
export type OrderType = 'Market' | 'Limit';
export type TimeInForce = 'GTC' | 'IOC' | 'FOK' | 'PostOnly';
export type OrderStatus = 'New' | 'PartiallyFilled' | 'Filled' | 'Cancelled' | 'PartiallyFilledCanceled' | 'Rejected' | 'Untriggered' | 'Triggered' | 'Deactivated';
/** Conditional orders the exchange creates for a position's TP/SL and trailing stop (trading-stop). */
export type StopOrderType = '' | 'TakeProfit' | 'StopLoss' | 'TrailingStop' | 'PartialTakeProfit' | 'PartialStopLoss';
export type TriggerBy = '' | 'LastPrice' | 'MarkPrice' | 'IndexPrice';
/** Internal state of an order being accepted, before its first published status. */
export type OrderState = OrderStatus | 'Created';

export interface SimOrder {
  orderId: string;
  orderLinkId: string;
  uid: string;
  category: Category;
  symbol: string;
  side: Side;
  orderType: OrderType;
  /** Limit price; for linear market orders the protection price; 0 for spot market orders. */
  price: number;
  /** As submitted: base units, or quote units for spot market orders with marketUnit=quoteCoin. */
  qty: number;
  marketUnit: '' | 'baseCoin' | 'quoteCoin';
  timeInForce: TimeInForce;
  reduceOnly: boolean;
  closeOnTrigger: boolean;
  orderStatus: OrderState;
  cancelType: string;
  rejectReason: string;
  cumExecQty: number;
  cumExecValue: number;
  cumExecFee: number;
  closedPnl: number;
  feeCurrency: string;
  createdTime: number;
  updatedTime: number;
  lastPriceOnCreated: number;
  /** Who sent it: the REST API, or a direct placement through the embedding API / admin endpoint. */
  source: 'rest' | 'direct';
  /** Spot: coin and amount still held for this order. */
  lockCoin: string;
  lockAmount: number;
  /** Linear: 0 in one-way mode, 1 / 2 for the Buy / Sell side of a hedge-mode position. */
  positionIdx: 0 | 1 | 2;
  /** Conditional (TP/SL) orders: what they are, their trigger, and for trailing stops the trail. */
  stopOrderType: StopOrderType;
  triggerPrice: number;
  triggerBy: TriggerBy;
  /** 1: triggers when the price rises to triggerPrice, 2: when it falls to it; 0: not conditional. */
  triggerDirection: 0 | 1 | 2;
  tpslMode: '' | 'Full' | 'Partial';
  /** Trailing stop: distance from the best price since activation, activation price (0: at once), best price so far (0: not active yet). */
  trailingStop: number;
  activePrice: number;
  trailExtreme: number;
  /** Full-mode TP/SL orders close the whole position when they trigger: their qty is 0 until then. */
  closeWholePosition: boolean;
}

/** Defaults of the conditional-order fields, for ordinary orders. */
export const PLAIN_ORDER = {
  positionIdx: 0,
  stopOrderType: '',
  triggerPrice: 0,
  triggerBy: '',
  triggerDirection: 0,
  tpslMode: '',
  trailingStop: 0,
  activePrice: 0,
  trailExtreme: 0,
  closeWholePosition: false,
} as const satisfies Partial<SimOrder>;

export const OPEN_STATES: ReadonlySet<OrderState> = new Set(['New', 'PartiallyFilled', 'Untriggered']);

// Conditional orders wait Untriggered, pass through Triggered (Bybit: "instantaneous state from
// Untriggered to New") and then live as the order they carry; Deactivated: cancelled untriggered.
const TRANSITIONS: Record<OrderState, readonly OrderStatus[]> = {
  Created: ['New', 'PartiallyFilled', 'Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Rejected', 'Untriggered'],
  New: ['New', 'PartiallyFilled', 'Filled', 'Cancelled', 'PartiallyFilledCanceled'],
  PartiallyFilled: ['PartiallyFilled', 'Filled', 'Cancelled', 'PartiallyFilledCanceled'],
  Untriggered: ['Untriggered', 'Triggered', 'Deactivated'],
  Triggered: ['New', 'PartiallyFilled', 'Filled', 'Cancelled'],
  Filled: [],
  Cancelled: [],
  PartiallyFilledCanceled: [],
  Rejected: [],
  Deactivated: [],
};

export class InvalidStateTransition extends Error {
  constructor(readonly orderId: string, readonly from: OrderState, readonly to: OrderStatus) {
    super(`order ${orderId}: invalid transition ${from} -> ${to}`);
    this.name = 'InvalidStateTransition';
  }
}

export function transition(o: SimOrder, to: OrderStatus, now: number): void {
  if (!TRANSITIONS[o.orderStatus].includes(to)) throw new InvalidStateTransition(o.orderId, o.orderStatus, to);
  o.orderStatus = to;
  o.updatedTime = now;
}

export const isOpen = (o: SimOrder): boolean => OPEN_STATES.has(o.orderStatus);

/** Quantity still to fill, in base units (0 for closed orders and for quote-sized market orders). */
export function leavesQty(o: SimOrder): number {
  if (!isOpen(o)) return 0;
  return Math.max(0, o.qty - o.cumExecQty);
}
