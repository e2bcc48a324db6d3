// The order state machine (house style 5), pure: no I/O, no clock. pipelines/track.ts loads the
// orders a chunk touches, applies every fact through `applyFact`, and persists what came out.
//
// Statuses: Bybit's v5 orderStatus values plus the local in-flight ones (sql/001_orders.sql has the
// same list in its check constraint). TRANSITIONS is exhaustive: every (from, to) pair has a rule,
//   apply    the move is allowed (on the diagonal: only when a fill or the terms really changed);
//   ignore   expected under disorder and harmless: a duplicate, a submission the exchange already
//            overtook, an amend/cancel accepted after the order finished. Counted, not applied;
//   invalid  not in the lifecycle: an InvalidStateTransition result, logged, counted, kept in
//            invalid_transitions, never applied.
// Before the table, an exchange order update is checked for staleness (older updatedTime than the
// applied state, a lower cumExecQty than already known, an open status older than a pending
// amend/cancel unless it changes the terms): stale facts are ignored, so a REST snapshot older
// than a websocket fill never undoes the fill and reordered messages end in the same state.
// Likewise an accepted amend whose terms an update newer than its sending already shows, or whose
// terms an update newer than its sending changed again, is late, not a new PendingAmend.
//
// Fill facts merge monotonically whatever the source: the order's cumulative figures come from the
// source with the larger cumulative quantity (Bybit's order update, or the sum of the distinct
// executions seen; on a tie the order update wins, being Bybit's own cumulative figures), so a fill
// is never counted twice and cumExecQty never decreases.
import { Dec } from '../runtime/decimal.ts';
import { PLACEMENT_REASONS } from './placement-reasons.ts';
import type { ExchangeOrderUpdate, Execution, OrderEventType, OrderSubmission, SignalContext } from '../schemas/types.ts';

export const ORDER_STATUSES = [
  'Intent',
  'Submitted',
  'Unknown',
  'New',
  'PartiallyFilled',
  'Untriggered',
  'Triggered',
  'PendingAmend',
  'PendingCancel',
  'Filled',
  'Cancelled',
  'PartiallyFilledCanceled',
  'Rejected',
  'Deactivated',
] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

export const BYBIT_STATUSES = ['New', 'PartiallyFilled', 'Untriggered', 'Triggered', 'Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Rejected', 'Deactivated'] as const satisfies readonly OrderStatus[];
export const TERMINAL_STATUSES: ReadonlySet<OrderStatus> = new Set<OrderStatus>(['Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Rejected', 'Deactivated']);
const PENDING: ReadonlySet<OrderStatus> = new Set<OrderStatus>(['PendingAmend', 'PendingCancel']);
/** Terminal states a fill can coexist with (late executions only update the fill facts). */
const FILLED_TERMINAL: ReadonlySet<OrderStatus> = new Set<OrderStatus>(['Filled', 'Cancelled', 'PartiallyFilledCanceled']);

export const isOrderStatus = (s: string): s is OrderStatus => (ORDER_STATUSES as readonly string[]).includes(s);
export const isTerminal = (s: OrderStatus): boolean => TERMINAL_STATUSES.has(s);

export type Rule = 'apply' | 'ignore' | 'invalid';

// Rows: from; columns: to, in ORDER_STATUSES order. A = apply, i = ignore, . = invalid.
//                    Int Sub Unk New PF  Unt Trg PAm PCa Fil Can PFC Rej Dea
const GRID: Record<OrderStatus, string> = {
  Intent:                  '.   A   A   A   A   A   A   .   .   A   A   A   A   A',
  Submitted:               '.   i   i   A   A   A   A   A   A   A   A   A   A   A',
  Unknown:                 '.   A   i   A   A   A   A   A   A   A   A   A   A   A',
  New:                     '.   i   i   A   A   .   .   A   A   A   A   A   .   .',
  PartiallyFilled:         '.   i   i   .   A   .   .   A   A   A   A   A   .   .',
  Untriggered:             '.   i   i   A   A   A   A   A   A   A   A   .   A   A',
  Triggered:               '.   i   i   A   A   .   i   A   A   A   A   A   A   A',
  PendingAmend:            '.   i   i   A   A   A   A   i   A   A   A   A   .   A',
  PendingCancel:           '.   i   i   A   A   A   A   .   i   A   A   A   .   A',
  Filled:                  '.   i   i   .   .   .   .   i   i   i   .   .   .   .',
  Cancelled:               '.   i   i   .   .   .   .   i   i   .   i   .   .   .',
  PartiallyFilledCanceled: '.   i   i   .   .   .   .   i   i   .   .   i   .   .',
  Rejected:                '.   i   i   .   .   .   .   i   i   .   .   .   i   .',
  Deactivated:             '.   i   i   .   .   .   .   i   i   .   .   .   .   i',
};

function buildTable(): Readonly<Record<OrderStatus, Readonly<Record<OrderStatus, Rule>>>> {
  const code: Record<string, Rule> = { A: 'apply', i: 'ignore', '.': 'invalid' };
  const out = {} as Record<OrderStatus, Record<OrderStatus, Rule>>;
  for (const from of ORDER_STATUSES) {
    const cells = GRID[from].trim().split(/\s+/);
    if (cells.length !== ORDER_STATUSES.length) throw new Error(`transition table row ${from} has ${cells.length} cells`);
    const row = {} as Record<OrderStatus, Rule>;
    ORDER_STATUSES.forEach((to, i) => {
      const r = code[cells[i]!];
      if (!r) throw new Error(`transition table row ${from}: bad cell ${cells[i]}`);
      row[to] = r;
    });
    out[from] = Object.freeze(row);
  }
  return Object.freeze(out);
}

/** The exhaustive transition table: TRANSITIONS[from][to]. */
export const TRANSITIONS = buildTable();

export const ruleOf = (from: OrderStatus, to: OrderStatus): Rule => TRANSITIONS[from][to];

// ---------------------------------------------------------------------------------------------
// The tracked order

export interface PartialSignalContext {
  signal_id: string | null;
  strategy_id: string | null;
  model_version: string | null;
  is_warmup: boolean | null;
  confidence: number | null;
  trace_id: string | null;
  snapshot_price: number | null;
  signal_timestamp: number | null;
}

export const EMPTY_SIGNAL_CONTEXT: PartialSignalContext = Object.freeze({ signal_id: null, strategy_id: null, model_version: null, is_warmup: null, confidence: null, trace_id: null, snapshot_price: null, signal_timestamp: null });

/**
 * The order's part of the signal context that intents and submissions carry (risk-rules'
 * signalContext builds it once, from the validated signal). The orders row stores the record's
 * context as it came (size/risk), so what the tracker reads back is this same object.
 */
export function orderContext(sig: SignalContext | null | undefined): PartialSignalContext {
  if (!sig) return EMPTY_SIGNAL_CONTEXT;
  return { signal_id: sig.signal_id, strategy_id: sig.strategy_id, model_version: sig.model_version, is_warmup: sig.is_warmup, confidence: sig.confidence, trace_id: sig.trace_id, snapshot_price: sig.snapshot_price, signal_timestamp: sig.signal_timestamp };
}

/** Cumulative fill figures (exact decimal strings). */
export interface Fills {
  qty: string;
  value: string;
  fee: string;
}

export interface Pending {
  action: 'amend' | 'cancel';
  intentId: string;
  /** When the amend/cancel was sent (epoch ms): open-status updates older than this are stale. */
  since: number;
}

export interface TrackedOrder {
  /** orders.id; null for an order first seen in this chunk. */
  rowId: number | null;
  orderLinkId: string | null;
  orderId: string | null;
  external: boolean;
  category: string;
  symbol: string;
  side: string;
  orderType: string;
  qty: string;
  price: string | null;
  marketUnit: string | null;
  timeInForce: string | null;
  reduceOnly: boolean;
  /** The status as of the last event the tracker emitted ('Intent' before any). */
  status: OrderStatus;
  /** The order's fill figures (the larger of the order updates' and the executions'). */
  cum: Fills;
  /** Sum of the distinct executions seen. */
  execs: Fills;
  avgPrice: string | null;
  leavesQty: string | null;
  feeCurrency: string | null;
  /** Bybit updatedTime of the newest order update applied. */
  lastUpdateMs: number | null;
  /** Bybit updatedTime of the newest order update that changed the terms (price, qty): an amend shown. */
  termsUpdateMs: number | null;
  submittedAt: number | null;
  acknowledgedAt: number | null;
  firstFillAt: number | null;
  finalAt: number | null;
  rejectRetCode: number | null;
  rejectReason: string | null;
  context: PartialSignalContext;
  /** Events emitted for this order so far (the next event's sequence is this + 1). */
  sequence: number;
  /** Ids of the events emitted for this order (a state change is never reported twice). */
  eventIds: ReadonlySet<string>;
  pending: Pending | null;
}

export const ZERO_FILLS: Fills = Object.freeze({ qty: '0', value: '0', fee: '0' });

// ---------------------------------------------------------------------------------------------
// Facts and results

export type Fact =
  | { kind: 'submission'; s: OrderSubmission }
  | { kind: 'order'; u: ExchangeOrderUpdate }
  | { kind: 'execution'; e: Execution };

export type Cause = 'submission' | 'ws_order' | 'rest_order' | 'reconcile' | 'execution';

/** One applied state change: becomes exactly one OrderEvent. */
export interface Change {
  eventId: string;
  eventType: OrderEventType;
  from: OrderStatus | null;
  to: OrderStatus;
  cause: Cause;
  /** intent_id, execId or Bybit message id of the fact. */
  causeId: string | null;
  occurredAt: number;
  observedAt: number;
  reasonCode: string | null;
  reasonDetail: string | null;
  source: string;
  exec: { id: string; qty: string; price: string } | null;
  /** Ordinal of this change for the order, from 1. */
  sequence: number;
  /** The order right after this change (what the event reports). */
  snapshot: TrackedOrder;
}

export interface InvalidStateTransition {
  kind: 'invalid';
  from: OrderStatus | null;
  to: string;
  cause: Cause;
  causeId: string | null;
  reason: string;
}

export interface Ignored {
  reason: 'duplicate' | 'stale' | 'late' | 'duplicate_exec' | 'no_change';
  detail: string;
}

export interface Applied {
  /** The order after the fact (the input object when nothing changed). */
  order: TrackedOrder;
  changes: Change[];
  invalid: InvalidStateTransition | null;
  ignored: Ignored | null;
  /** True when any persisted field changed (facts may change without an event). */
  dirty: boolean;
}

// ---------------------------------------------------------------------------------------------
// Helpers

const d = (v: string | null | undefined): Dec | null => Dec.maybe(v ?? null);
const dz = (v: string | null | undefined): Dec => d(v) ?? Dec.ZERO;
const minTime = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.min(a, b));

/** orderLinkId when present, else `id:<orderId>`: the identity events and logs use. */
export const orderKey = (o: Pick<TrackedOrder, 'orderLinkId' | 'orderId'>): string => o.orderLinkId ?? `id:${o.orderId ?? '?'}`;

const causeOfUpdate = (u: ExchangeOrderUpdate): Cause => (u.source === 'ws' ? 'ws_order' : u.source === 'rest' ? 'rest_order' : 'reconcile');

function avgOf(f: Fills): string | null {
  const q = dz(f.qty);
  const v = dz(f.value);
  if (!q.isPos() || !v.isPos()) return null;
  return v.div(q, 12).toString();
}

/** Whether the order is completely filled by `f` (quote-sized orders compare the value). */
function fullyFilled(o: TrackedOrder, f: Fills): boolean {
  const qty = d(o.qty);
  if (!qty || !qty.isPos()) return false;
  return o.marketUnit === 'quoteCoin' ? dz(f.value).gte(qty) : dz(f.qty).gte(qty);
}

/** Deterministic event id: the same state change gives the same id, whichever message reported it. */
export function eventIdOf(o: TrackedOrder, to: OrderStatus, tag: string | null): string {
  return `${orderKey(o)}:${to}:${tag ?? o.cum.qty}`;
}

function eventTypeOf(from: OrderStatus | null, to: OrderStatus, cause: Cause, amended: boolean): OrderEventType {
  switch (to) {
    case 'Submitted':
      return 'order_submitted';
    case 'Unknown':
      return 'order_submission_unknown';
    case 'Rejected':
      return cause === 'submission' ? 'order_submit_failed' : 'order_rejected';
    case 'New':
      if (amended || from === 'PendingAmend') return 'order_amended';
      if (from === 'PendingCancel') return 'order_cancel_rejected';
      return 'order_acknowledged';
    case 'PartiallyFilled':
      return amended ? 'order_amended' : 'order_partially_filled';
    case 'Filled':
      return 'order_filled';
    case 'Cancelled':
      return 'order_cancelled';
    case 'PartiallyFilledCanceled':
      return 'order_partially_filled_cancelled';
    case 'Untriggered':
      return amended || from === 'PendingAmend' ? 'order_amended' : from === 'PendingCancel' ? 'order_cancel_rejected' : 'order_untriggered';
    case 'Triggered':
      return 'order_triggered';
    case 'Deactivated':
      return 'order_deactivated';
    case 'PendingAmend':
    case 'PendingCancel':
    case 'Intent':
      // No dedicated event type (yet) for an accepted amend/cancel request; reason_code says which.
      return 'other';
  }
}

// ---------------------------------------------------------------------------------------------
// Apply

interface Step {
  to: OrderStatus;
  cause: Cause;
  causeId: string | null;
  occurredAt: number;
  observedAt: number;
  source: string;
  reasonCode?: string | null;
  reasonDetail?: string | null;
  exec?: Change['exec'];
  amended?: boolean;
  /** Overrides the default event-id tag (cumulative qty). */
  tag?: string;
}

const noChange = (order: TrackedOrder, reason: Ignored['reason'], detail: string): Applied => ({ order, changes: [], invalid: null, ignored: { reason, detail }, dirty: false });

/**
 * Record a status change on `next` (mutated: it is always a fresh copy) and return the Change, or
 * null when the table ignores it or an event with the same id was already emitted.
 */
function move(next: TrackedOrder, step: Step, eventTypeOverride?: OrderEventType): Change | null {
  const from = next.status;
  const to = step.to;
  const statusChanged = from !== to;
  const eventId = eventIdOf(next, to, step.tag ?? null);
  if (next.eventIds.has(eventId)) return null;
  if (!statusChanged && !step.amended && step.tag === undefined && to !== 'PartiallyFilled') return null;
  const eventType = eventTypeOverride ?? eventTypeOf(from, to, step.cause, step.amended ?? false);
  next.status = to;
  next.sequence += 1;
  next.eventIds = new Set([...next.eventIds, eventId]);
  if (isTerminal(to) && next.finalAt === null) next.finalAt = step.occurredAt;
  if (!PENDING.has(to)) next.pending = null;
  return {
    eventId,
    eventType,
    from: next.rowId === null && next.sequence === 1 && next.external ? null : from,
    to,
    cause: step.cause,
    causeId: step.causeId,
    occurredAt: step.occurredAt,
    observedAt: step.observedAt,
    reasonCode: step.reasonCode ?? null,
    reasonDetail: step.reasonDetail ?? null,
    source: step.source,
    exec: step.exec ?? null,
    sequence: next.sequence,
    snapshot: copy(next),
  };
}

const copy = (o: TrackedOrder): TrackedOrder => ({ ...o, cum: { ...o.cum }, execs: { ...o.execs }, context: { ...o.context } });

/** Take `f` as the order's fill figures when it is ahead (or equal and preferred). */
function mergeFills(next: TrackedOrder, f: Fills, preferOnTie: boolean): boolean {
  const c = dz(f.qty).cmp(dz(next.cum.qty));
  if (c < 0 || (c === 0 && !preferOnTie)) return false;
  if (c === 0 && next.cum.value === f.value && next.cum.fee === f.fee) return false;
  next.cum = { ...f };
  return true;
}

/** Executions seen beyond the order's figures (e.g. stored before the order row existed). */
function catchUpExecs(next: TrackedOrder, occurredAt: number, observedAt: number, source: string): Change[] {
  if (!dz(next.execs.qty).gt(dz(next.cum.qty))) return [];
  mergeFills(next, next.execs, false);
  next.leavesQty = null;
  next.avgPrice = avgOf(next.cum) ?? next.avgPrice;
  if (isTerminal(next.status)) return [];
  const to: OrderStatus = fullyFilled(next, next.cum) ? 'Filled' : 'PartiallyFilled';
  if (ruleOf(next.status, to) !== 'apply') return [];
  const ch = move(next, { to, cause: 'execution', causeId: null, occurredAt, observedAt, source });
  return ch ? [ch] : [];
}

/** A new order from an exchange fact: ours (not yet recorded) or adopted as external. */
export function orderFromUpdate(u: ExchangeOrderUpdate, external: boolean, ctx: PartialSignalContext = EMPTY_SIGNAL_CONTEXT): TrackedOrder {
  const price = d(u.price);
  return {
    rowId: null,
    orderLinkId: u.orderLinkId === '' ? null : u.orderLinkId,
    orderId: u.orderId || null,
    external,
    category: u.category,
    symbol: u.symbol,
    side: u.side,
    orderType: u.orderType,
    qty: u.qty,
    price: u.orderType === 'Limit' && price?.isPos() ? price.toString() : null,
    marketUnit: u.marketUnit,
    timeInForce: u.timeInForce,
    reduceOnly: u.reduceOnly ?? false,
    status: 'Intent',
    cum: { ...ZERO_FILLS },
    execs: { ...ZERO_FILLS },
    avgPrice: null,
    leavesQty: null,
    feeCurrency: null,
    lastUpdateMs: null,
    termsUpdateMs: null,
    submittedAt: null,
    acknowledgedAt: null,
    firstFillAt: null,
    finalAt: null,
    rejectRetCode: null,
    rejectReason: null,
    context: ctx,
    sequence: 0,
    eventIds: new Set(),
    pending: null,
  };
}

/** A new order from a submission whose order row is not in the database (placement ran without one). */
export function orderFromSubmission(s: OrderSubmission): TrackedOrder {
  return {
    ...orderFromUpdate(
      { orderId: s.order_id ?? '', orderLinkId: s.order_link_id, symbol: s.symbol, category: s.category, side: s.side, orderType: s.order_type, price: s.price ?? '', qty: s.qty ?? '0', marketUnit: s.market_unit, timeInForce: null, orderStatus: 'New', cumExecQty: '0', cumExecValue: '0', cumExecFee: '0', avgPrice: '', leavesQty: '', rejectReason: '', cancelType: null, reduceOnly: null, createdTime: s.sent_at, updatedTime: s.sent_at, source: 'rest', streamMessageId: null, creationTime: null, observedAt: s.sent_at },
      false,
    ),
    context: orderContext(s.signal),
  };
}

/**
 * Apply one fact to an order. Pure: `order` is not modified; the result holds the next order (the
 * same object when nothing changed), the state changes to report (each one event), and either an
 * InvalidStateTransition or the reason the fact was ignored.
 */
export function applyFact(order: TrackedOrder, fact: Fact): Applied {
  switch (fact.kind) {
    case 'submission':
      return applySubmission(order, fact.s);
    case 'order':
      return applyUpdate(order, fact.u);
    case 'execution':
      return applyExecution(order, fact.e);
  }
}

function invalid(order: TrackedOrder, to: string, cause: Cause, causeId: string | null, reason: string): Applied {
  return { order, changes: [], invalid: { kind: 'invalid', from: order.status, to, cause, causeId, reason }, ignored: null, dirty: false };
}

function applySubmission(order: TrackedOrder, s: OrderSubmission): Applied {
  const next = copy(order);
  const at = s.acked_at ?? s.sent_at;
  const base = { cause: 'submission' as const, causeId: s.intent_id, occurredAt: at, observedAt: at, source: 'placement' };
  // Submission facts of the create (latencies, ids) are kept whatever the status: a submission
  // that arrives after the exchange's own updates is late, not wrong.
  let facts = false;
  if (s.order_id && !next.orderId) {
    next.orderId = s.order_id;
    facts = true;
  }
  if (s.action === 'create') {
    if (next.submittedAt === null) {
      next.submittedAt = s.sent_at;
      facts = true;
    }
    if (next.acknowledgedAt === null && s.acked_at !== null && s.outcome !== 'unknown') {
      next.acknowledgedAt = s.acked_at;
      facts = true;
    }
    if (next.context.signal_id === null && s.signal) {
      next.context = orderContext(s.signal);
      facts = true;
    }
    const to: OrderStatus = s.outcome === 'rejected' ? 'Rejected' : s.outcome === 'unknown' ? 'Unknown' : 'Submitted';
    const rule = ruleOf(order.status, to);
    if (rule === 'invalid') return invalid(order, to, 'submission', s.intent_id, `create submission (${s.outcome}) for an order in ${order.status}`);
    if (rule === 'ignore') return { order: facts ? next : order, changes: [], invalid: null, ignored: { reason: 'late', detail: `create submission (${s.outcome}) after ${order.status}` }, dirty: facts };
    if (to === 'Rejected') {
      next.rejectRetCode = s.ret_code;
      next.rejectReason = s.reason_code ?? s.ret_msg;
    }
    const ch = move(next, { ...base, to, tag: `submission:${s.intent_id}`, reasonCode: to === 'Submitted' ? (s.outcome === 'already_placed' ? 'already_placed' : null) : s.reason_code ?? (to === 'Rejected' ? 'exchange_rejected' : 'unknown'), reasonDetail: to === 'Submitted' ? null : `${s.ret_code}: ${s.ret_msg}` });
    const changes = ch ? [ch] : [];
    changes.push(...catchUpExecs(next, at, at, 'placement'));
    return { order: next, changes, invalid: null, ignored: changes.length ? null : { reason: 'duplicate', detail: 'submission already applied' }, dirty: true };
  }
  // amend / cancel
  const action = s.action;
  if (s.outcome === 'rejected') {
    // A refused amend/cancel leaves the status as it is; it is still worth one event.
    const ch = move(next, { ...base, to: next.status, tag: `${action}_rejected:${s.intent_id}`, reasonCode: s.reason_code ?? `${action}_rejected`, reasonDetail: `${s.ret_code}: ${s.ret_msg}` }, action === 'amend' ? 'order_amend_rejected' : 'order_cancel_rejected');
    if (!ch) return facts ? { order: next, changes: [], invalid: null, ignored: null, dirty: true } : noChange(order, 'duplicate', `${action} rejection already reported`);
    return { order: next, changes: [ch], invalid: null, ignored: null, dirty: true };
  }
  if (s.outcome === 'unknown') return facts ? { order: next, changes: [], invalid: null, ignored: null, dirty: true } : noChange(order, 'no_change', `${action} with unknown outcome: the exchange stream decides`);
  const to: OrderStatus = action === 'amend' ? 'PendingAmend' : 'PendingCancel';
  const rule = ruleOf(order.status, to);
  if (rule === 'invalid') return invalid(order, to, 'submission', s.intent_id, `${action} accepted for an order in ${order.status}`);
  // Bybit answered "remains unchanged" to the amend's first attempt: the exchange's order had its
  // terms before it came. When another amend had set them (of an earlier signal: the order pending
  // behind it, or the terms shown, or shown and changed again since this one was sent), no update
  // of the stream is this amend's own: it is not late against one, nor a PendingAmend behind the
  // other (PendingAmend → PendingAmend is no change), but an event of its own at once. With the
  // terms not shown and nothing pending it may as well be its own effect (a placement run that
  // crashed after sending it, replayed): pending as any accepted amend, until the stream shows them.
  // A later attempt's "unchanged" is its first attempt's effect (an answer lost): the rules below.
  const unchangedFirstTry = action === 'amend' && s.reason_code === PLACEMENT_REASONS.alreadyApplied && s.attempts === 1;
  const behindOther = unchangedFirstTry && order.status === 'PendingAmend' && order.pending !== null && order.pending.intentId !== s.intent_id;
  if (rule === 'ignore' && !behindOther) return { order: facts ? next : order, changes: [], invalid: null, ignored: { reason: 'late', detail: `${action} accepted after ${order.status}` }, dirty: facts };
  if (action === 'amend' && !unchangedFirstTry && amendShown(order, s)) return { order: facts ? next : order, changes: [], invalid: null, ignored: { reason: 'late', detail: `amend accepted after an update at ${order.lastUpdateMs} already showed its terms` }, dirty: facts };
  if (action === 'amend' && !unchangedFirstTry && amendSuperseded(order, s)) return { order: facts ? next : order, changes: [], invalid: null, ignored: { reason: 'late', detail: `amend accepted after an update at ${order.termsUpdateMs} changed the terms after it was sent` }, dirty: facts };
  if (action === 'amend' && s.reason_code === PLACEMENT_REASONS.alreadyApplied && (behindOther || hasTerms(order, s) || (unchangedFirstTry && amendSuperseded(order, s)))) {
    // Bybit refused the amend as changing nothing ("remains unchanged"; placement records it
    // accepted, already applied): its terms are in effect, and no update will say so (the stream
    // sends nothing for an amend that changed nothing, and the reconciler's snapshot, older than
    // the amend, would be stale against a pending one). So no PendingAmend: one order_amended for
    // the intent, the status unchanged (pending behind another amend, its terms are those tracking
    // has seen: the other's update is still on its way).
    const ch = move(next, { ...base, to: next.status, tag: `amend_applied:${s.intent_id}`, reasonCode: PLACEMENT_REASONS.alreadyApplied, reasonDetail: `${s.ret_code}: ${s.ret_msg}` }, 'order_amended');
    if (!ch) return facts ? { order: next, changes: [], invalid: null, ignored: null, dirty: true } : noChange(order, 'duplicate', 'amend already reported as applied');
    return { order: next, changes: [ch], invalid: null, ignored: null, dirty: true };
  }
  next.pending = { action, intentId: s.intent_id, since: s.sent_at };
  const ch = move(next, { ...base, occurredAt: s.sent_at, to, tag: `${action}:${s.intent_id}`, reasonCode: action === 'amend' ? 'amend_pending' : 'cancel_pending', reasonDetail: s.reason_code });
  if (!ch) return noChange(order, 'duplicate', `${action} already pending`);
  return { order: next, changes: [ch], invalid: null, ignored: null, dirty: true };
}

/**
 * Whether the exchange stream already showed this accepted amend: an order update sent after the
 * amend (updatedTime at or after its sent_at) carries every term it set. The submission is then
 * late (placement slow, or its chunk replayed after a kill): moving the order to PendingAmend would
 * put an `amend_pending` after its `order_amended` and keep the order pending until the
 * reconciler's next pass. An update with the old terms, or one older than the send, leaves the
 * amend pending as before (Bybit accepts no amend that changes nothing, so matching terms after the
 * send are the amend's own).
 */
function amendShown(order: TrackedOrder, s: OrderSubmission): boolean {
  if (order.lastUpdateMs === null || order.lastUpdateMs < s.sent_at) return false;
  return hasTerms(order, s);
}

/**
 * Whether an update sent after this accepted amend changed the order's terms, to the amend's own or
 * to a later amend's: the amend is in effect or overtaken, not pending (were it an earlier amend's
 * update, sent before this one was handled, this one's own update is still to come and reports it,
 * an order_amended as for any amend whose submission is late). Seen in the bench: an order
 * amended many times a second, one amend's submission reaching tracking after the stream had shown
 * it and then a later amend; by the current terms alone (amendShown) it went back to PendingAmend
 * until the next update. An update after the send that changes nothing (a fill racing the amend)
 * leaves termsUpdateMs where it was, and the amend pending.
 */
function amendSuperseded(order: TrackedOrder, s: OrderSubmission): boolean {
  return order.termsUpdateMs !== null && order.termsUpdateMs >= s.sent_at;
}

/**
 * The terms an update gives a limit order that differ from the order's (null: unchanged). Only limit
 * orders are amended: a market order's price is Bybit's protection price.
 */
function changedTerms(order: TrackedOrder, u: ExchangeOrderUpdate): { price: string | null; qty: string | null } {
  if (order.orderType !== 'Limit') return { price: null, qty: null };
  const changed = (x: Dec | null, y: Dec | null): string | null => (x?.isPos() && (y === null || x.cmp(y) !== 0) ? x.toString() : null);
  return { price: changed(d(u.price), d(order.price)), qty: changed(d(u.qty), d(order.qty)) };
}

/** Whether the order has every term the amend sets (qty, price), compared as decimals. */
function hasTerms(order: TrackedOrder, s: OrderSubmission): boolean {
  if (s.qty === null && s.price === null) return false;
  const same = (a: string | null, b: string | null): boolean => {
    const x = d(a);
    const y = d(b);
    return x !== null && y !== null && x.cmp(y) === 0;
  };
  return (s.qty === null || same(s.qty, order.qty)) && (s.price === null || same(s.price, order.price));
}

function applyUpdate(order: TrackedOrder, u: ExchangeOrderUpdate): Applied {
  const cause = causeOfUpdate(u);
  const causeId = u.streamMessageId;
  if (!isOrderStatus(u.orderStatus) || !(BYBIT_STATUSES as readonly string[]).includes(u.orderStatus)) return invalid(order, u.orderStatus, cause, causeId, `unknown Bybit orderStatus ${JSON.stringify(u.orderStatus)}`);
  const to = u.orderStatus as OrderStatus;
  const uFills: Fills = { qty: dz(u.cumExecQty).toString(), value: dz(u.cumExecValue).toString(), fee: dz(u.cumExecFee).toString() };
  const uCum = dz(uFills.qty);
  const cum = dz(order.cum.qty);
  // Staleness first: an older state never undoes a newer one.
  if (order.lastUpdateMs !== null && u.updatedTime < order.lastUpdateMs) return noChange(order, 'stale', `updatedTime ${u.updatedTime} < applied ${order.lastUpdateMs}`);
  if (uCum.lt(cum) && !isTerminal(to)) return noChange(order, 'stale', `cumExecQty ${uFills.qty} < known ${order.cum.qty}`);
  // updatedTime is the exchange's clock and `since` ours: with the exchange's behind, the pending
  // amend's own update can look older than the amend. An update that changes a limit order's terms
  // is past every update applied (checked above) and is an amend, not a snapshot from before it.
  const terms = changedTerms(order, u);
  if (order.pending && u.updatedTime < order.pending.since && !isTerminal(to) && terms.price === null && terms.qty === null) return noChange(order, 'stale', `${to} at ${u.updatedTime} is older than the pending ${order.pending.action} sent at ${order.pending.since}`);
  const rule = ruleOf(order.status, to);
  if (rule === 'invalid') return invalid(order, to, cause, causeId, `${order.status} → ${to} is not in the transition table`);

  const next = copy(order);
  let dirty = false;
  if (!next.orderId && u.orderId) {
    next.orderId = u.orderId;
    dirty = true;
  }
  if (next.lastUpdateMs === null || u.updatedTime > next.lastUpdateMs) {
    next.lastUpdateMs = u.updatedTime;
    dirty = true;
  }
  if (mergeFills(next, uFills, true)) {
    next.avgPrice = (d(u.avgPrice)?.isPos() ? d(u.avgPrice)!.toString() : null) ?? avgOf(next.cum);
    dirty = true;
  }
  const leaves = d(u.leavesQty)?.toString() ?? null;
  if (leaves !== null && leaves !== next.leavesQty && !uCum.lt(cum)) {
    next.leavesQty = leaves;
    dirty = true;
  }
  if (uCum.isPos()) {
    const t = minTime(next.firstFillAt, u.updatedTime);
    if (t !== next.firstFillAt) {
      next.firstFillAt = t;
      dirty = true;
    }
  }
  if (to === 'Rejected' && next.rejectReason === null && u.rejectReason && u.rejectReason !== 'EC_NoError') {
    next.rejectReason = u.rejectReason;
    dirty = true;
  }
  // Terms (changedTerms). A final update still carries the order's final terms (e.g. an amend whose
  // own push was lost before the order was cancelled): they are taken, without an amend event.
  const amendable = !isTerminal(to) && next.status !== 'Intent' && next.status !== 'Submitted' && next.status !== 'Unknown';
  const amended = amendable && (terms.price !== null || terms.qty !== null);
  if (terms.price !== null) next.price = terms.price;
  if (terms.qty !== null) next.qty = terms.qty;
  if (terms.price !== null || terms.qty !== null) {
    if (next.termsUpdateMs === null || u.updatedTime > next.termsUpdateMs) next.termsUpdateMs = u.updatedTime;
    dirty = true;
  }
  const progressed = dz(next.cum.qty).gt(cum);
  if (rule === 'ignore' || (to === order.status && !progressed && !amended)) {
    if (!dirty) return noChange(order, 'duplicate', `already ${order.status}`);
    return { order: next, changes: [], invalid: null, ignored: { reason: 'duplicate', detail: `already ${order.status}; facts merged` }, dirty };
  }
  const step: Step = { to, cause, causeId, occurredAt: u.updatedTime, observedAt: u.observedAt, source: u.source, amended, reasonCode: to === 'Cancelled' || to === 'PartiallyFilledCanceled' || to === 'Deactivated' ? u.cancelType : to === 'Rejected' ? u.rejectReason : null };
  // The exchange time is part of an amend's id: terms can come back (amended to 0.019, then back to
  // 0.017), and the return is a change of its own. The same amend reported twice (the stream, then a
  // snapshot of the same state) carries the same updatedTime, and the second changes no terms.
  if (amended) step.tag = `amended:${next.qty}:${next.price ?? ''}:${next.cum.qty}:${u.updatedTime}`;
  else if (order.pending) step.tag = `${next.cum.qty}:after:${order.pending.intentId}`;
  const ch = move(next, step, next.external && order.sequence === 0 && order.rowId === null ? 'order_adopted' : undefined);
  const changes = ch ? [ch] : [];
  changes.push(...catchUpExecs(next, u.updatedTime, u.observedAt, u.source));
  return { order: next, changes, invalid: null, ignored: changes.length ? null : { reason: 'duplicate', detail: `state ${to} ${next.cum.qty} already reported` }, dirty: true };
}

function applyExecution(order: TrackedOrder, e: Execution): Applied {
  const causeId = e.execId;
  const qty = dz(e.execQty);
  const price = dz(e.execPrice);
  const value = d(e.execValue) ?? qty.mul(price);
  const execs: Fills = { qty: dz(order.execs.qty).add(qty).toString(), value: dz(order.execs.value).add(value).toString(), fee: dz(order.execs.fee).add(dz(e.execFee)).toString() };
  if (order.status === 'Rejected' || order.status === 'Deactivated') return invalid(order, 'PartiallyFilled', 'execution', causeId, `execution ${e.execId} for an order in ${order.status}`);
  const next = copy(order);
  next.execs = execs;
  if (!next.orderId && e.orderId) next.orderId = e.orderId;
  if (e.feeCurrency) next.feeCurrency = e.feeCurrency;
  next.firstFillAt = minTime(next.firstFillAt, e.execTime);
  const before = dz(order.cum.qty);
  if (mergeFills(next, execs, false)) next.avgPrice = avgOf(next.cum) ?? next.avgPrice;
  const progressed = dz(next.cum.qty).gt(before);
  if (progressed) next.leavesQty = null; // the update's leavesQty is behind this fill (derived from qty - cum)
  if (FILLED_TERMINAL.has(order.status) || !progressed) {
    return { order: next, changes: [], invalid: null, ignored: { reason: 'no_change', detail: progressed ? `fill facts of a ${order.status} order` : 'fill already counted by the order updates' }, dirty: true };
  }
  const to: OrderStatus = fullyFilled(next, next.cum) ? 'Filled' : 'PartiallyFilled';
  const rule = ruleOf(order.status, to);
  if (rule === 'invalid') return invalid(order, to, 'execution', causeId, `${order.status} → ${to} (execution ${e.execId}) is not in the transition table`);
  if (rule === 'ignore') return { order: next, changes: [], invalid: null, ignored: { reason: 'late', detail: `execution after ${order.status}` }, dirty: true };
  const step: Step = { to, cause: 'execution', causeId, occurredAt: e.execTime, observedAt: e.observedAt, source: e.source, exec: { id: e.execId, qty: qty.toString(), price: price.toString() } };
  if (order.pending) step.tag = `${next.cum.qty}:after:${order.pending.intentId}`;
  const ch = move(next, step);
  return { order: next, changes: ch ? [ch] : [], invalid: null, ignored: ch ? null : { reason: 'duplicate', detail: `${to} ${next.cum.qty} already reported` }, dirty: true };
}

// ---------------------------------------------------------------------------------------------
// Enrichment figures

/**
 * Slippage of the average fill price against the signal's snapshot price, in basis points,
 * positive = worse for us: a buy filled above the snapshot, a sell filled below it.
 */
export function slippageBps(side: string, avgPrice: string | null, snapshot: number | null): number | null {
  const avg = d(avgPrice);
  if (!avg || !avg.isPos() || snapshot === null || !(snapshot > 0)) return null;
  const diff = (avg.toNumber() - snapshot) / snapshot;
  const bps = (side === 'Sell' ? -diff : diff) * 10_000;
  return Math.round(bps * 1e6) / 1e6;
}

export interface Latencies {
  signal_to_submitted_ms: number | null;
  submitted_to_ack_ms: number | null;
  submitted_to_first_fill_ms: number | null;
  to_final_ms: number | null;
}

const span = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : Math.max(0, b - a));

export function latenciesOf(o: TrackedOrder): Latencies {
  return {
    signal_to_submitted_ms: span(o.context.signal_timestamp, o.submittedAt),
    submitted_to_ack_ms: span(o.submittedAt, o.acknowledgedAt),
    submitted_to_first_fill_ms: span(o.submittedAt, o.firstFillAt),
    to_final_ms: span(o.submittedAt, o.finalAt),
  };
}
