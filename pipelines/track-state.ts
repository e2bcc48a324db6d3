// The tracking stage's state of one chunk: the orders it touches (by link id and order id), the
// events it emits, the records it refuses, and the position and balance projections.
import type { StageRecord } from './runner.ts';
import type { ExchangeOrderUpdate, Execution, OrderEvent, OrderSubmission, Position, WalletBalance } from '../schemas/types.ts';
import { type Change, type Fills, type InvalidStateTransition, type TrackedOrder } from './order-state.ts';
import type { DaySums, LoadedBook } from './pnl-sql.ts';

export type TrackInput = OrderSubmission | ExchangeOrderUpdate | Execution | Position | WalletBalance;

/** What `load` read for an order row, to detect a concurrent writer in persist. */
interface Version {
  sequence: number;
  cumQty: string;
  lastUpdateMs: number | null;
}

export interface InvalidRecord {
  slot: number | null;
  orderLinkId: string | null;
  orderId: string | null;
  invalid: InvalidStateTransition;
  source: string;
  payload: unknown;
}

export interface EmittedEvent {
  slot: number;
  change: Change;
  event: OrderEvent;
  source: string;
}

export interface ExecSums extends Fills {
  feeCurrency: string | null;
  firstAt: number | null;
}

export interface TrackState {
  /** Orders touched by the chunk (index = slot). */
  orders: TrackedOrder[];
  byLink: Map<string, number>;
  byId: Map<string, number>;
  /** Loaded version of each slot with a database row. */
  versions: Map<number, Version>;
  /** Sums of executions whose order is not (yet) known, by orderId. */
  orphanExecs: Map<string, ExecSums>;
  seenExecIds: Set<string>;
  /** Source record → the events already emitted for it (a replay emits exactly these). */
  replays: Map<string, OrderEvent[]>;
  // effects, for persist
  dirty: Set<number>;
  events: EmittedEvent[];
  newExecs: Execution[];
  invalids: InvalidRecord[];
  positions: Map<string, Position>;
  balances: Map<string, { coin: WalletBalance['coin'][number]; updatedTime: number }>;
  /** By `${category}:${symbol}`. */
  /** P&L books of the chunk's symbols (pnl-sql.ts bookKey), as loaded and then as booked. */
  books: Map<string, LoadedBook>;
  booksTouched: Set<string>;
  pnlDays: Map<string, DaySums>;
}

export function emptyState(): TrackState {
  return {
    orders: [],
    byLink: new Map(),
    byId: new Map(),
    versions: new Map(),
    orphanExecs: new Map(),
    seenExecIds: new Set(),
    replays: new Map(),
    dirty: new Set(),
    events: [],
    newExecs: [],
    invalids: [],
    positions: new Map(),
    balances: new Map(),
    books: new Map(),
    booksTouched: new Set(),
    pnlDays: new Map(),
  };
}

/** Put an order in the state (a new slot, or replacing the slot's order) and index it. */
export function putOrder(state: TrackState, o: TrackedOrder, slot?: number): number {
  const i = slot ?? state.orders.length;
  state.orders[i] = o;
  if (o.orderLinkId) state.byLink.set(o.orderLinkId, i);
  if (o.orderId) state.byId.set(o.orderId, i);
  return i;
}

export function findSlot(state: TrackState, link: string | null | undefined, id: string | null | undefined): number | undefined {
  return (link ? state.byLink.get(link) : undefined) ?? (id ? state.byId.get(id) : undefined);
}

export const sourceOf = (rec: Pick<StageRecord<unknown>, 'topic' | 'partition' | 'offset'>): string => `${rec.topic}/${rec.partition}/${rec.offset}`;

export const CATEGORIES = new Set(['spot', 'linear']);
