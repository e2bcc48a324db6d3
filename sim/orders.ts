// Order model and the exhaustive order-status transition table (house style 5). A transition not
// in the table is a bug in the simulator and throws InvalidStateTransition.
import type { Category } from './instruments.ts';

export type Side = 'Buy' | 'Sell';
export type OrderType = 'Market' | 'Limit';
export type TimeInForce = 'GTC' | 'IOC' | 'FOK' | 'PostOnly';
export type OrderStatus = 'New' | 'PartiallyFilled' | 'Filled' | 'Cancelled' | 'PartiallyFilledCanceled' | 'Rejected';
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
}

export const OPEN_STATES: ReadonlySet<OrderState> = new Set(['New', 'PartiallyFilled']);

const TRANSITIONS: Record<OrderState, readonly OrderStatus[]> = {
  Created: ['New', 'PartiallyFilled', 'Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Rejected'],
  New: ['New', 'PartiallyFilled', 'Filled', 'Cancelled', 'PartiallyFilledCanceled'],
  PartiallyFilled: ['PartiallyFilled', 'Filled', 'Cancelled', 'PartiallyFilledCanceled'],
  Filled: [],
  Cancelled: [],
  PartiallyFilledCanceled: [],
  Rejected: [],
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
