// Tracking and enrichment stage: orders.submissions + exchange.orders + exchange.executions +
// exchange.positions + exchange.wallet → orders.events (Avro OrderEvent), with the order state,
// executions, positions and balances kept in PostgreSQL. docs/orders.md documents the state
// machine and the event format.
//
// Shape (house style 1): `load` reads what the chunk's records touch (order rows with their
// emitted events, execution sums, execIds already seen, events already emitted for these very
// records); `process` is pure: it applies each fact through the order state machine
// (pipelines/order-state.ts), updating the in-memory state so later records of the chunk see the
// earlier ones, and turns every state change into one enriched OrderEvent; `persist` writes the
// chunk's effects in one database transaction before the runner's Kafka commit. Both cost a fixed
// number of round trips per chunk, not per record: `load` reads with `= ANY(array)` (five queries in
// two rounds); `persist` sends one multi-row statement per table (executions, order rows locked /
// updated / inserted, events, state history, invalid transitions, positions, balances). The state
// holds one slot per order with its final state after the chunk's facts, so no statement touches a
// row twice, and the result is the same as applying the records one chunk each.
//
// Replays. A chunk can come back after a crash between persist and the Kafka commit; `orders` then
// already holds its effects. Every emitted event is recorded in order_events with its source record
// (topic/partition/offset), so a replayed record re-emits exactly its recorded events and is not
// applied again; a record that emitted nothing is applied again harmlessly (executions are unique by
// execId, updates are guarded by updatedTime / cumExecQty, positions and balances by their time).
// Event ids are deterministic (order + state change), so consumers can drop repeats too.
//
// Concurrency. Other writers of `orders`: the risk stage inserts the row (status Intent) and the
// placement stage records submission facts (local statuses only). The tracker's own view of an
// order's status is the status of the last event it emitted (order_events), so a row the placement
// stage already marked Submitted still yields one order_submitted event when its submission arrives
// here. Two trackers working on the same order (scaling out) are caught by an optimistic check in
// persist (event sequence, cumulative qty, update time as loaded): a mismatch is a RetriableError
// and the runner retries the chunk with fresh state.
import { z } from 'zod';
import { Counter, type Registry } from 'prom-client';
import type { Output, Stage, StageRecord, StageResult } from './runner.ts';
import { ok, reject } from './runner.ts';
import type { Clock } from '../runtime/clock.ts';
import { sql, type CommonQueryMethods, type DatabasePool } from '../runtime/db.ts';
import { InvalidInputError } from 'slonik';
import { RetriableError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/logger.ts';
import { topicName } from '../runtime/topics.ts';
import type { ExchangeOrderUpdate, Execution, OrderEvent, OrderSubmission, Position, WalletBalance } from '../schemas/types.ts';
import { Dec } from '../runtime/decimal.ts';
import { BOUNDED_DECIMAL_RE, MAX_TIME_MS, ORDER_LINK_ID_RE, unstorableText, UUID_RE } from './record-guards.ts';
import {
  applyFact,
  EMPTY_CTX,
  isOrderStatus,
  isTerminal,
  latenciesOf,
  orderFromSubmission,
  orderFromUpdate,
  orderKey,
  slippageBps,
  ZERO_FILLS,
  type Applied,
  type Change,
  type Fact,
  type Fills,
  type InvalidStateTransition,
  type OrderStatus,
  type SignalCtx,
  type TrackedOrder,
} from './order-state.ts';

export const name = 'track';

const emptyToUndefined = (v: unknown) => (v === '' ? undefined : v);
const bool = z.union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes')]);

/** The stage's settings (to be merged into runtime/config.ts, except TOPIC_PREFIX which is there). */
export const configSchema = z.object({
  TOPIC_PREFIX: z.preprocess(emptyToUndefined, z.string().regex(/^[a-zA-Z0-9._-]*$/).default('')),
  TRACK_OWN_LINK_ID_PATTERN: z
    .preprocess(emptyToUndefined, z.string().default('^om-[0-9a-z]{25}$'))
    .refine((v) => {
      try {
        new RegExp(v);
        return true;
      } catch {
        return false;
      }
    }, 'not a valid regular expression')
    .describe('Regular expression of the orderLinkIds this system creates (RISK_ORDER_LINK_PREFIX + "-" + 25 base-36 chars). An exchange order with such an id but no local row is ours, recorded late (external = false); any other unknown order is adopted as external.'),
  TRACK_ADOPT_EXTERNAL: z.preprocess(emptyToUndefined, bool.default(true)).describe('Adopt orders found at the exchange that this system did not place (external = true, event order_adopted). When false they are kept in invalid_transitions instead.'),
});
export type TrackConfig = z.output<typeof configSchema>;

export function parseConfig(env: Record<string, unknown> = process.env): TrackConfig {
  return configSchema.parse(env);
}

/** Input and output record kinds (house style 8). */
export const inputSchemas = [
  { topic: 'orders.submissions', record: 'OrderSubmission' },
  { topic: 'exchange.orders', record: 'ExchangeOrderUpdate' },
  { topic: 'exchange.executions', record: 'Execution' },
  { topic: 'exchange.positions', record: 'Position' },
  { topic: 'exchange.wallet', record: 'WalletBalance' },
] as const;
export const outputSchemas = [
  { topic: 'orders.events', record: 'OrderEvent' },
  { topic: 'orders.dlq', record: 'DeadLetter' },
] as const;

// ---------------------------------------------------------------------------------------------
// Metrics

export const TRACK_METRICS = {
  invalidTransitions: 'order_invalid_transitions_total',
  ignoredFacts: 'order_facts_ignored_total',
  events: 'order_events_emitted_total',
} as const;

export interface TrackMetrics {
  invalid: Counter<'from' | 'to' | 'cause'>;
  ignored: Counter<'reason'>;
  events: Counter<'event_type'>;
}

function counter<L extends string>(registry: Registry, metricName: string, help: string, labelNames: L[]): Counter<L> {
  return (registry.getSingleMetric(metricName) as Counter<L> | undefined) ?? new Counter<L>({ name: metricName, help, labelNames, registers: [registry] });
}

/** The stage's counters, registered once per registry. */
export function trackMetrics(registry: Registry): TrackMetrics {
  return {
    invalid: counter(registry, TRACK_METRICS.invalidTransitions, 'Order facts refused by the order state machine (InvalidStateTransition), by from/to status and cause', ['from', 'to', 'cause']),
    ignored: counter(registry, TRACK_METRICS.ignoredFacts, 'Order facts ignored as duplicate, stale or late (expected under disorder)', ['reason']),
    events: counter(registry, TRACK_METRICS.events, 'Order events emitted by the tracking stage, by event type', ['event_type']),
  };
}

// ---------------------------------------------------------------------------------------------
// State

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

function findSlot(state: TrackState, link: string | null | undefined, id: string | null | undefined): number | undefined {
  return (link ? state.byLink.get(link) : undefined) ?? (id ? state.byId.get(id) : undefined);
}

export const sourceOf = (rec: Pick<StageRecord<unknown>, 'topic' | 'partition' | 'offset'>): string => `${rec.topic}/${rec.partition}/${rec.offset}`;

const CATEGORIES = new Set(['spot', 'linear']);

// ---------------------------------------------------------------------------------------------
// Events

function remainingOf(o: TrackedOrder): string | null {
  if (isTerminal(o.status)) return '0';
  if (o.leavesQty !== null) return o.leavesQty;
  if (o.marketUnit === 'quoteCoin') return null;
  const q = Dec.maybe(o.qty);
  const c = Dec.maybe(o.cum.qty) ?? Dec.ZERO;
  return q && q.gte(c) ? q.sub(c).toString() : null;
}

/** The enriched event of one state change. */
export function eventOf(ch: Change): OrderEvent {
  const o = ch.snapshot;
  const filled = Dec.maybe(o.cum.qty)?.isPos() ?? false;
  return {
    event_id: ch.eventId,
    event_type: ch.eventType,
    occurred_at: ch.occurredAt,
    observed_at: ch.observedAt,
    order_link_id: o.orderLinkId,
    order_id: o.orderId,
    status: ch.to,
    previous_status: ch.from,
    category: o.category,
    symbol: o.symbol,
    side: o.side,
    order_type: o.orderType,
    qty: o.qty,
    price: o.price,
    filled_qty: o.cum.qty,
    avg_fill_price: filled ? o.avgPrice : null,
    fees: o.cum.fee,
    fee_currency: o.feeCurrency,
    remaining_qty: remainingOf(o),
    last_exec_id: ch.exec?.id ?? null,
    last_exec_qty: ch.exec?.qty ?? null,
    last_exec_price: ch.exec?.price ?? null,
    slippage_bps: filled ? slippageBps(o.side, o.avgPrice, o.context.snapshot_price) : null,
    latencies: latenciesOf(o),
    reason_code: ch.reasonCode,
    reason_detail: ch.reasonDetail,
    signal_id: o.context.signal_id,
    strategy_id: o.context.strategy_id,
    model_version: o.context.model_version,
    is_warmup: o.context.is_warmup,
    confidence: o.context.confidence,
    trace_id: o.context.trace_id,
    source: ch.source,
    external: o.external,
    sequence: ch.sequence,
  };
}

// ---------------------------------------------------------------------------------------------
// Rows

const ctxSchema = z
  .object({
    signal_id: z.string().nullish(),
    strategy_id: z.string().nullish(),
    model_version: z.string().nullish(),
    is_warmup: z.boolean().nullish(),
    confidence: z.coerce.number().nullish(),
    trace_id: z.string().nullish(),
    snapshot_price: z.coerce.number().nullish(),
    signal_timestamp: z.coerce.number().nullish(),
  })
  .passthrough();

const orderRow = z.object({
  id: z.number(),
  order_link_id: z.string().nullable(),
  order_id: z.string().nullable(),
  external: z.boolean(),
  category: z.string(),
  symbol: z.string(),
  side: z.string(),
  order_type: z.string(),
  qty: z.string(),
  price: z.string().nullable(),
  market_unit: z.string().nullable(),
  time_in_force: z.string().nullable(),
  reduce_only: z.boolean(),
  status: z.string(),
  cum_exec_qty: z.string(),
  cum_exec_value: z.string(),
  cum_exec_fee: z.string(),
  avg_price: z.string().nullable(),
  leaves_qty: z.string().nullable(),
  last_exchange_update_ms: z.number().nullable(),
  submitted_at: z.number().nullable(),
  acknowledged_at: z.number().nullable(),
  first_fill_at: z.number().nullable(),
  final_at: z.number().nullable(),
  reject_ret_code: z.number().nullable(),
  reject_reason: z.string().nullable(),
  context: z.unknown(),
  signal_snapshot_price: z.string().nullable(),
  signal_ts: z.number().nullable(),
  signal_confidence: z.string().nullable(),
  signal_trace_id: z.string().nullable(),
  signal_model_version: z.string().nullable(),
  signal_is_warmup: z.boolean().nullable(),
  signal_strategy_id: z.string().nullable(),
  signal_signal_id: z.string().nullable(),
});
type OrderRow = z.infer<typeof orderRow>;

const eventRow = z.object({ order_row_id: z.number(), event_id: z.string(), sequence: z.number(), status: z.string(), cause_id: z.string().nullable(), occurred_at: z.number() });
const execSumRow = z.object({ order_id: z.string(), qty: z.string(), value: z.string(), fee: z.string(), fee_currency: z.string().nullable(), first_at: z.number().nullable() });
const replayRow = z.object({ source_record: z.string(), payload: z.unknown() });
const execIdRow = z.object({ exec_id: z.string() });

const num = (v: string | null): number | null => (v === null ? null : Number(v));

function contextOf(r: OrderRow): SignalCtx {
  const parsed = ctxSchema.safeParse(r.context ?? {});
  const c = parsed.success ? parsed.data : {};
  return {
    signal_id: c.signal_id ?? r.signal_signal_id ?? null,
    strategy_id: c.strategy_id ?? r.signal_strategy_id ?? null,
    model_version: c.model_version ?? r.signal_model_version ?? null,
    is_warmup: c.is_warmup ?? r.signal_is_warmup ?? null,
    confidence: c.confidence ?? num(r.signal_confidence),
    trace_id: c.trace_id ?? r.signal_trace_id ?? null,
    snapshot_price: c.snapshot_price ?? num(r.signal_snapshot_price),
    signal_timestamp: c.signal_timestamp ?? r.signal_ts ?? null,
  };
}

/** Status the tracker starts from for a row it has emitted nothing for. */
function initialStatus(r: OrderRow): OrderStatus {
  // Local statuses (and a Rejected the placement stage wrote) are the placement stage's facts:
  // the tracker reports them when their submission arrives here.
  if (r.status === 'Intent' || r.status === 'Submitted' || r.status === 'Unknown') return 'Intent';
  if (r.status === 'Rejected' && r.last_exchange_update_ms === null) return 'Intent';
  return isOrderStatus(r.status) ? r.status : 'Intent';
}

export function orderFromRow(r: OrderRow, events: z.infer<typeof eventRow>[], execs: ExecSums | undefined): TrackedOrder {
  const last = events.length ? events.reduce((a, b) => (b.sequence > a.sequence ? b : a)) : null;
  const status: OrderStatus = last && isOrderStatus(last.status) ? last.status : initialStatus(r);
  const cum: Fills = { qty: r.cum_exec_qty, value: r.cum_exec_value, fee: r.cum_exec_fee };
  return {
    rowId: r.id,
    orderLinkId: r.order_link_id,
    orderId: r.order_id,
    external: r.external,
    category: r.category,
    symbol: r.symbol,
    side: r.side,
    orderType: r.order_type,
    qty: r.qty,
    price: r.price,
    marketUnit: r.market_unit,
    timeInForce: r.time_in_force,
    reduceOnly: r.reduce_only,
    status,
    cum,
    execs: execs ? { qty: execs.qty, value: execs.value, fee: execs.fee } : { ...ZERO_FILLS },
    avgPrice: r.avg_price,
    leavesQty: r.leaves_qty,
    feeCurrency: execs?.feeCurrency ?? null,
    lastUpdateMs: r.last_exchange_update_ms,
    submittedAt: r.submitted_at,
    acknowledgedAt: r.acknowledged_at,
    firstFillAt: r.first_fill_at,
    finalAt: r.final_at,
    rejectRetCode: r.reject_ret_code,
    rejectReason: r.reject_reason,
    context: contextOf(r),
    sequence: last?.sequence ?? 0,
    eventIds: new Set(events.map((e) => e.event_id)),
    pending:
      last && (status === 'PendingAmend' || status === 'PendingCancel') && last.cause_id
        ? { action: status === 'PendingAmend' ? 'amend' : 'cancel', intentId: last.cause_id, since: last.occurred_at }
        : null,
  };
}

// ---------------------------------------------------------------------------------------------
// The stage

export interface TrackDeps {
  config: TrackConfig;
  /** Needed by load/persist; without it `process` still runs on a hand-built state (unit tests). */
  db?: DatabasePool;
  clock?: Clock;
  logger?: Logger;
  /** The process's metrics registry (runtime/metrics.ts `registry`); counters are added to it. */
  registry?: Registry;
}

type Kind = 'submission' | 'order' | 'execution' | 'position' | 'wallet';

// Records that fit their Avro schema but could never be stored (fuzzing found each of these): a NUL
// (PostgreSQL text refuses it), a lone UTF-16 surrogate (jsonb refuses its \u escape), a decimal
// that is not a bounded plain decimal ("abc" fails the numeric columns; "1e100000000" costs minutes
// of BigInt arithmetic in Dec), a time outside what Date and timestamptz hold. Each of them used to
// fail load or persist, which is not per record: the runner retried or stopped the whole partition.
// Such a record is now refused in `process` (dead-lettered with reason invalid_record) and left out
// of `load`'s queries.
const DECIMAL_FIELDS: Record<Kind, readonly string[]> = {
  submission: ['qty', 'price'],
  order: ['price', 'qty', 'cumExecQty', 'cumExecValue', 'cumExecFee', 'avgPrice', 'leavesQty'],
  execution: ['execPrice', 'execQty', 'execValue', 'execFee', 'feeRate', 'leavesQty'],
  position: ['size', 'avgPrice', 'positionValue', 'markPrice', 'liqPrice', 'leverage', 'positionIM', 'unrealisedPnl', 'cumRealisedPnl'],
  wallet: ['totalEquity', 'totalWalletBalance', 'totalAvailableBalance', 'totalMarginBalance'],
};
const COIN_DECIMAL_FIELDS = ['equity', 'walletBalance', 'free', 'locked', 'availableToWithdraw', 'usdValue', 'unrealisedPnl', 'cumRealisedPnl', 'totalOrderIM', 'totalPositionIM'];
const TIME_FIELDS: Record<Kind, readonly string[]> = {
  submission: ['sent_at', 'acked_at'],
  order: ['createdTime', 'updatedTime', 'creationTime', 'observedAt'],
  execution: ['execTime', 'observedAt'],
  position: ['updatedTime', 'observedAt'],
  wallet: ['updatedTime', 'observedAt'],
};
/** Decimals the tables require (NOT NULL numeric): an empty string there is not a number. */
const REQUIRED_DECIMALS: Record<Kind, readonly string[]> = {
  submission: [],
  order: ['qty', 'cumExecQty', 'cumExecValue', 'cumExecFee'],
  execution: ['execPrice', 'execQty'],
  position: [],
  wallet: [],
};
/** Quantities and prices the tables require to be >= 0 (fees and PnL may be negative). */
const NON_NEGATIVE: Record<Kind, readonly string[]> = {
  submission: ['qty', 'price'],
  order: ['price', 'qty', 'cumExecQty', 'cumExecValue', 'avgPrice', 'leavesQty'],
  execution: ['execPrice', 'execQty', 'execValue', 'leavesQty'],
  position: ['size'],
  wallet: [],
};

function badDecimals(o: Record<string, unknown>, fields: readonly string[], path: string): string | null {
  for (const f of fields) {
    const v = o[f];
    if (v === null || v === undefined || v === '') continue;
    if (typeof v !== 'string' || !BOUNDED_DECIMAL_RE.test(v)) return `${path}${f} ${JSON.stringify(v).slice(0, 60)} is not a bounded decimal`;
  }
  return null;
}

/** Why a record of a kind cannot be tracked and stored, or null when it can. */
export function unstorable(kind: Kind, value: unknown): string | null {
  const v = value as Record<string, unknown>;
  const text = unstorableText(v);
  if (text) return text;
  const d = badDecimals(v, DECIMAL_FIELDS[kind], '');
  if (d) return d;
  if (kind === 'wallet' && Array.isArray(v.coin)) {
    for (const [i, c] of (v.coin as Record<string, unknown>[]).entries()) {
      const cd = badDecimals(c, COIN_DECIMAL_FIELDS, `coin[${i}].`);
      if (cd) return cd;
    }
  }
  for (const f of REQUIRED_DECIMALS[kind]) if (typeof v[f] !== 'string' || v[f] === '') return `${f} is empty`;
  for (const f of NON_NEGATIVE[kind]) {
    const x = v[f];
    if (typeof x === 'string' && x.startsWith('-') && !/^-[0.]*(e-?\d+)?$/i.test(x)) return `${f} ${x} is negative`;
  }
  if ('source' in v && !['ws', 'rest', 'reconciler'].includes(v.source as string)) return `source ${JSON.stringify(v.source).slice(0, 40)} is not ws, rest or reconciler`;
  // Bybit's own rule for orderLinkId (and the orders table's check): an external order must fit it too.
  const link = kind === 'submission' ? v.order_link_id : kind === 'order' || kind === 'execution' ? v.orderLinkId : '';
  if (typeof link === 'string' && link !== '' && !ORDER_LINK_ID_RE.test(link)) return `order link id ${JSON.stringify(link).slice(0, 60)} is not a Bybit orderLinkId`;
  for (const f of TIME_FIELDS[kind]) {
    const t = v[f];
    if (t === null || t === undefined) continue;
    // A Date's range (the columns are bigint ms, and timestamptz through to_timestamp).
    if (typeof t !== 'number' || !Number.isSafeInteger(t) || Math.abs(t) > MAX_TIME_MS) return `${f} ${String(t)} is not a time`;
  }
  return null;
}

export function createTrackStage(deps: TrackDeps): Stage<TrackInput, TrackState> {
  const cfg = deps.config;
  const log = deps.logger?.child({ stage: name });
  const metrics = deps.registry ? trackMetrics(deps.registry) : null;
  const ownLink = new RegExp(cfg.TRACK_OWN_LINK_ID_PATTERN);
  const p = cfg.TOPIC_PREFIX;
  const topics = {
    submissions: topicName('orders.submissions', p),
    orders: topicName('exchange.orders', p),
    executions: topicName('exchange.executions', p),
    positions: topicName('exchange.positions', p),
    wallet: topicName('exchange.wallet', p),
    events: topicName('orders.events', p),
    dlq: topicName('orders.dlq', p),
  };
  const kindOf = new Map<string, Kind>([
    [topics.submissions, 'submission'],
    [topics.orders, 'order'],
    [topics.executions, 'execution'],
    [topics.positions, 'position'],
    [topics.wallet, 'wallet'],
  ]);
  const output = (e: OrderEvent): Output => ({ topic: topics.events, key: e.symbol, value: e, headers: { event_type: e.event_type, ...(e.order_link_id ? { order_link_id: e.order_link_id } : {}), ...(e.signal_id ? { signal_id: e.signal_id } : {}) } });

  const ignored = (reason: string) => metrics?.ignored.inc({ reason });

  /** Apply a fact to the order in `slot` and record everything that came out of it. */
  const applyTo = (state: TrackState, slot: number, fact: Fact, source: string, payload: unknown): OrderEvent[] => {
    const before = state.orders[slot]!;
    const r: Applied = applyFact(before, fact);
    if (r.invalid) {
      state.invalids.push({ slot, orderLinkId: before.orderLinkId, orderId: before.orderId ?? null, invalid: r.invalid, source, payload });
      metrics?.invalid.inc({ from: r.invalid.from ?? 'none', to: r.invalid.to, cause: r.invalid.cause });
      log?.warn({ order_link_id: before.orderLinkId, order_id: before.orderId, from: r.invalid.from, to: r.invalid.to, cause: r.invalid.cause, cause_id: r.invalid.causeId, reason: r.invalid.reason, source }, 'invalid order state transition');
      return [];
    }
    if (r.ignored) {
      ignored(r.ignored.reason);
      log?.debug({ order_link_id: before.orderLinkId, order_id: before.orderId, reason: r.ignored.reason, detail: r.ignored.detail, source }, 'order fact ignored');
    }
    if (r.order !== before) putOrder(state, r.order, slot);
    if (r.dirty) state.dirty.add(slot);
    const events = r.changes.map(eventOf);
    r.changes.forEach((change, i) => {
      state.events.push({ slot, change, event: events[i]!, source });
      metrics?.events.inc({ event_type: change.eventType });
    });
    return events;
  };

  const unknownOrder = (state: TrackState, fact: Fact, link: string | null, id: string | null, to: string, reason: string, source: string, payload: unknown) => {
    const invalid: InvalidStateTransition = { kind: 'invalid', from: null, to, cause: fact.kind === 'submission' ? 'submission' : fact.kind === 'execution' ? 'execution' : 'ws_order', causeId: null, reason };
    state.invalids.push({ slot: null, orderLinkId: link, orderId: id, invalid, source, payload });
    metrics?.invalid.inc({ from: 'none', to, cause: invalid.cause });
    log?.warn({ order_link_id: link, order_id: id, to, reason, source }, 'order fact refused');
  };

  const processRecord = (rec: StageRecord<TrackInput>, { state }: { state: TrackState }): StageResult => {
    const source = sourceOf(rec);
    const stored = state.replays.get(source);
    if (stored) return ok(...stored.map(output));
    const kind = kindOf.get(rec.topic);
    const bad = kind ? unstorable(kind, rec.value) : null;
    if (bad) {
      ignored('invalid_record');
      return reject('invalid_record', bad);
    }
    switch (kind) {
      case 'position': {
        const pos = rec.value as Position;
        if (!CATEGORIES.has(pos.category)) {
          ignored('unsupported_category');
          return ok();
        }
        const k = `${pos.category}:${pos.symbol}`;
        const cur = state.positions.get(k);
        if (!cur || pos.updatedTime >= cur.updatedTime) state.positions.set(k, pos);
        return ok();
      }
      case 'wallet': {
        const w = rec.value as WalletBalance;
        for (const coin of w.coin) {
          const cur = state.balances.get(coin.coin);
          if (!cur || w.updatedTime >= cur.updatedTime) state.balances.set(coin.coin, { coin, updatedTime: w.updatedTime });
        }
        return ok();
      }
      case 'execution': {
        const e = rec.value as Execution;
        if (state.seenExecIds.has(e.execId)) {
          ignored('duplicate_exec');
          return ok();
        }
        if (!CATEGORIES.has(e.category) || (e.side !== 'Buy' && e.side !== 'Sell')) {
          ignored('unsupported_category');
          return ok();
        }
        state.seenExecIds.add(e.execId);
        state.newExecs.push(e);
        const slot = findSlot(state, e.orderLinkId, e.orderId);
        if (slot === undefined) {
          // The order is not known yet: keep the fill; the order picks it up when it appears.
          const cur = state.orphanExecs.get(e.orderId) ?? { ...ZERO_FILLS, feeCurrency: null, firstAt: null };
          const q = Dec.of(e.execQty);
          state.orphanExecs.set(e.orderId, {
            qty: Dec.of(cur.qty).add(q).toString(),
            value: Dec.of(cur.value).add(Dec.maybe(e.execValue) ?? q.mul(e.execPrice)).toString(),
            fee: Dec.of(cur.fee).add(Dec.maybe(e.execFee) ?? Dec.ZERO).toString(),
            feeCurrency: e.feeCurrency ?? cur.feeCurrency,
            firstAt: cur.firstAt === null ? e.execTime : Math.min(cur.firstAt, e.execTime),
          });
          return ok();
        }
        return ok(...applyTo(state, slot, { kind: 'execution', e }, source, e).map(output));
      }
      case 'order': {
        const u = rec.value as ExchangeOrderUpdate;
        let slot = findSlot(state, u.orderLinkId, u.orderId);
        if (slot === undefined) {
          const link = u.orderLinkId || null;
          if (!CATEGORIES.has(u.category) || (u.side !== 'Buy' && u.side !== 'Sell') || (u.orderType !== 'Market' && u.orderType !== 'Limit') || !(Dec.maybe(u.qty)?.isPos() ?? false)) {
            unknownOrder(state, { kind: 'order', u }, link, u.orderId, u.orderStatus, `unknown order with unsupported terms (${u.category} ${u.side} ${u.orderType} qty ${u.qty})`, source, u);
            return ok();
          }
          const ours = link !== null && ownLink.test(link);
          if (!ours && !cfg.TRACK_ADOPT_EXTERNAL) {
            unknownOrder(state, { kind: 'order', u }, link, u.orderId, u.orderStatus, 'order placed outside this system (adoption disabled)', source, u);
            return ok();
          }
          const o = orderFromUpdate(u, !ours);
          const orphan = state.orphanExecs.get(u.orderId);
          if (orphan) {
            o.execs = { qty: orphan.qty, value: orphan.value, fee: orphan.fee };
            o.feeCurrency = orphan.feeCurrency;
            o.firstFillAt = orphan.firstAt;
            state.orphanExecs.delete(u.orderId);
          }
          slot = putOrder(state, o);
        }
        return ok(...applyTo(state, slot, { kind: 'order', u }, source, u).map(output));
      }
      case 'submission': {
        const s = rec.value as OrderSubmission;
        let slot = findSlot(state, s.order_link_id, s.order_id);
        if (slot === undefined) {
          const o = orderFromSubmission(s);
          if (s.action !== 'create' || !(Dec.maybe(o.qty)?.isPos() ?? false)) {
            unknownOrder(state, { kind: 'submission', s }, s.order_link_id, s.order_id, s.action, `${s.action} submission (${s.outcome}) for an order with no row`, source, s);
            return ok();
          }
          const orphan = s.order_id ? state.orphanExecs.get(s.order_id) : undefined;
          if (orphan && s.order_id) {
            o.execs = { qty: orphan.qty, value: orphan.value, fee: orphan.fee };
            o.feeCurrency = orphan.feeCurrency;
            o.firstFillAt = orphan.firstAt;
            state.orphanExecs.delete(s.order_id);
          }
          slot = putOrder(state, o);
        }
        return ok(...applyTo(state, slot, { kind: 'submission', s }, source, s).map(output));
      }
      default:
        return ok();
    }
  };

  const requireDb = (): DatabasePool => {
    if (!deps.db) throw new Error('track stage: load/persist need deps.db');
    return deps.db;
  };

  const load = async (records: StageRecord<TrackInput>[]): Promise<TrackState> => {
    const db = requireDb();
    const state = emptyState();
    const links = new Set<string>();
    const ids = new Set<string>();
    const execIds = new Set<string>();
    for (const rec of records) {
      const kind = kindOf.get(rec.topic);
      if (kind && unstorable(kind, rec.value)) continue; // refused in process; its ids must not reach a query
      if (kind === 'submission') {
        const s = rec.value as OrderSubmission;
        links.add(s.order_link_id);
        if (s.order_id) ids.add(s.order_id);
      } else if (kind === 'order' || kind === 'execution') {
        const v = rec.value as ExchangeOrderUpdate | Execution;
        if (v.orderLinkId) links.add(v.orderLinkId);
        if (v.orderId) ids.add(v.orderId);
        if (kind === 'execution') execIds.add((v as Execution).execId);
      }
    }
    const sources = records.map(sourceOf);
    const [rows, seen, replays] = await Promise.all([
      links.size + ids.size === 0
        ? Promise.resolve([])
        : db.any(sql.type(orderRow)`
            SELECT o.id, o.order_link_id, o.order_id, o.external, o.category, o.symbol, o.side, o.order_type, o.qty, o.price, o.market_unit,
                   o.time_in_force, o.reduce_only, o.status, o.cum_exec_qty, o.cum_exec_value, o.cum_exec_fee, o.avg_price, o.leaves_qty,
                   o.last_exchange_update_ms, o.submitted_at, o.acknowledged_at, o.first_fill_at, o.final_at, o.reject_ret_code, o.reject_reason,
                   o.context, s.snapshot_price AS signal_snapshot_price, s.signal_ts, s.confidence AS signal_confidence, s.trace_id AS signal_trace_id,
                   s.model_version AS signal_model_version, s.is_warmup AS signal_is_warmup, s.strategy_id AS signal_strategy_id,
                   s.signal_id::text AS signal_signal_id
            FROM orders o LEFT JOIN signals s ON s.signal_id = o.signal_id
            WHERE o.order_link_id = ANY(${sql.array([...links], 'text')}) OR o.order_id = ANY(${sql.array([...ids], 'text')})
            ORDER BY o.id`),
      execIds.size === 0 ? Promise.resolve([]) : db.any(sql.type(execIdRow)`SELECT exec_id FROM executions WHERE exec_id = ANY(${sql.array([...execIds], 'text')})`),
      db.any(sql.type(replayRow)`SELECT source_record, payload FROM order_events WHERE source_record = ANY(${sql.array(sources, 'text')}) ORDER BY id`),
    ]);
    const rowIds = rows.map((r) => r.id);
    const allIds = new Set([...ids, ...rows.map((r) => r.order_id).filter((x): x is string => x !== null)]);
    const [events, sums] = await Promise.all([
      rowIds.length === 0
        ? Promise.resolve([])
        : db.any(sql.type(eventRow)`SELECT order_row_id, event_id, sequence, status, cause_id, occurred_at FROM order_events WHERE order_row_id = ANY(${sql.array(rowIds, 'int8')})`),
      allIds.size === 0
        ? Promise.resolve([])
        : db.any(sql.type(execSumRow)`
            SELECT order_id, sum(exec_qty)::text AS qty, sum(COALESCE(exec_value, exec_qty * exec_price))::text AS value, sum(exec_fee)::text AS fee,
                   max(fee_currency) AS fee_currency, min(exec_time) AS first_at
            FROM executions WHERE order_id = ANY(${sql.array([...allIds], 'text')}) GROUP BY order_id`),
    ]);
    const sumsById = new Map(sums.map((s): [string, ExecSums] => [s.order_id, { qty: Dec.of(s.qty).toString(), value: Dec.of(s.value).toString(), fee: Dec.of(s.fee).toString(), feeCurrency: s.fee_currency, firstAt: s.first_at }]));
    const eventsByRow = new Map<number, z.infer<typeof eventRow>[]>();
    for (const e of events) eventsByRow.set(e.order_row_id, [...(eventsByRow.get(e.order_row_id) ?? []), e]);
    for (const r of rows) {
      const o = orderFromRow(r, eventsByRow.get(r.id) ?? [], r.order_id ? sumsById.get(r.order_id) : undefined);
      if (r.order_id) sumsById.delete(r.order_id);
      const slot = putOrder(state, o);
      state.versions.set(slot, { sequence: o.sequence, cumQty: o.cum.qty, lastUpdateMs: o.lastUpdateMs });
    }
    for (const [id, s] of sumsById) state.orphanExecs.set(id, s);
    for (const s of seen) state.seenExecIds.add(s.exec_id);
    for (const r of replays) {
      const list = state.replays.get(r.source_record) ?? [];
      list.push(r.payload as OrderEvent);
      state.replays.set(r.source_record, list);
    }
    return state;
  };

  const persist = async (_items: Array<{ rec: StageRecord<TrackInput>; result: StageResult }>, state: TrackState): Promise<void> => {
    const db = requireDb();
    if (state.dirty.size + state.events.length + state.newExecs.length + state.invalids.length + state.positions.size + state.balances.size === 0) return;
    await db.transaction(async (tx) => {
      // A constant number of statements per chunk, whatever its size. The state already holds one
      // slot per order with its final state after all the chunk's facts (process applies them in
      // order), so every multi-row statement below touches each row at most once.
      await insertExecutions(tx, state.newExecs);
      const rowIds = await saveOrders(tx, state);
      await insertEvents(tx, state.events, rowIds);
      await insertInvalids(
        tx,
        state.invalids.map((inv) => ({ inv, rowId: inv.slot === null ? null : (rowIds.get(inv.slot) ?? state.orders[inv.slot]?.rowId ?? null) })),
      );
      await upsertPositions(tx, [...state.positions.values()]);
      await upsertBalances(tx, [...state.balances.values()]);
    });
    if (log && (state.events.length || state.invalids.length)) log.info({ events: state.events.length, invalid: state.invalids.length, executions: state.newExecs.length }, 'orders tracked');
  };

  // An exchange fact that cannot be applied leaves orders, fills or balances different from the
  // exchange's, which every risk decision reads: halt until an operator has looked.
  return { name, input: [topics.submissions, topics.orders, topics.executions, topics.positions, topics.wallet], inputFormat: 'avro', dlq: topics.dlq, load, process: processRecord, persist, conflict: 'halt' };
}

// ---------------------------------------------------------------------------------------------
// persist helpers
//
// Every statement takes the chunk's rows as one jsonb array (`rowsOf`: one bind parameter whatever
// the number of rows, typed by jsonb_to_recordset's column list) and keeps the rows' order where it
// shows (identity ids of events, history and invalid transitions follow the emission order: a replay
// re-emits a record's events ORDER BY id).

/** Epoch ms → timestamptz exactly as `sql.timestamp(new Date(ms))` (to_timestamp(ms / 1000)). */
const TS = (col: ReturnType<typeof sql.identifier>) => sql.fragment`to_timestamp(${col}::float8 / 1000)`;
/** The rows of a multi-row statement as one jsonb parameter (undefined fields become NULL columns). */
const rowsOf = (rows: readonly object[]) => sql.fragment`${JSON.stringify(rows)}::jsonb`;
const pos = (v: string | null): string | null => (Dec.maybe(v)?.isPos() ? Dec.of(v!).toString() : null);

async function insertExecutions(tx: CommonQueryMethods, execs: readonly Execution[]): Promise<void> {
  if (execs.length === 0) return;
  const rows = execs.map((e, i) => ({
    i,
    exec_id: e.execId,
    order_link_id: e.orderLinkId || null,
    order_id: e.orderId,
    category: e.category,
    symbol: e.symbol,
    side: e.side,
    exec_type: e.execType ?? 'Trade',
    exec_qty: e.execQty,
    exec_price: e.execPrice,
    exec_value: e.execValue || null /* '' (as Bybit writes "none") is not a numeric: fuzzing found it */,
    exec_fee: e.execFee || '0',
    fee_currency: e.feeCurrency,
    is_maker: e.isMaker,
    exec_time: e.execTime,
    source: e.source === 'reconciler' ? 'reconcile' : e.source,
    raw: JSON.parse(JSON.stringify(e ?? {})) as unknown,
  }));
  await tx.query(sql.typeAlias('void')`
    INSERT INTO executions (exec_id, order_link_id, order_id, category, symbol, side, exec_type, exec_qty, exec_price, exec_value, exec_fee,
                            fee_currency, is_maker, exec_time, source, raw)
    SELECT v.exec_id, v.order_link_id, v.order_id, v.category, v.symbol, v.side, v.exec_type, v.exec_qty, v.exec_price, v.exec_value, v.exec_fee,
           v.fee_currency, v.is_maker, ${TS(sql.identifier(['v', 'exec_time']))}, v.source, v.raw
    FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(i int, exec_id text, order_link_id text, order_id text, category text, symbol text, side text, exec_type text,
                                                  exec_qty numeric, exec_price numeric, exec_value numeric, exec_fee numeric, fee_currency text, is_maker boolean,
                                                  exec_time bigint, source text, raw jsonb)
    ORDER BY v.i
    ON CONFLICT (exec_id) DO NOTHING`);
}

const versionRow = z.object({ id: z.number(), cum_exec_qty: z.string(), last_exchange_update_ms: z.number().nullable(), seq: z.number() });
const insertedRow = z.object({ id: z.number(), order_link_id: z.string().nullable(), order_id: z.string().nullable() });

const timeInForceOf = (o: TrackedOrder) => (o.timeInForce && ['GTC', 'IOC', 'FOK', 'PostOnly'].includes(o.timeInForce) ? o.timeInForce : null);
const marketUnitOf = (o: TrackedOrder) => (o.marketUnit === 'baseCoin' || o.marketUnit === 'quoteCoin' ? o.marketUnit : null);
const signalIdOf = (ctx: SignalCtx) => (ctx.signal_id && /^[0-9a-f-]{36}$/i.test(ctx.signal_id) ? ctx.signal_id : null);

/** An order's state as stored in `orders` (jsonb_to_recordset rows of the update and the insert). */
function stateColumns(o: TrackedOrder) {
  return {
    order_id: o.orderId,
    status: o.status,
    qty: o.qty,
    price: pos(o.price),
    cum_exec_qty: o.cum.qty,
    cum_exec_value: o.cum.value,
    cum_exec_fee: o.cum.fee,
    avg_price: pos(o.avgPrice),
    leaves_qty: o.leavesQty,
    last_exchange_update_ms: o.lastUpdateMs,
    submitted_at: o.submittedAt,
    acknowledged_at: o.acknowledgedAt,
    first_fill_at: o.firstFillAt,
    final_at: o.finalAt,
    reject_ret_code: o.rejectRetCode,
    reject_reason: o.rejectReason,
    context: o.context,
  };
}
/**
 * Write the order rows of every slot the chunk changed (dirty or with an event); returns slot → row
 * id. Rows already stored: locked in one `SELECT … FOR UPDATE` ordered by id (the order concurrent
 * writers lock them in), checked against the version `load` read (RetriableError on a concurrent
 * change or a vanished row), then one `UPDATE … FROM`. New orders: one multi-row insert (a row some
 * other writer inserted meanwhile is a RetriableError too).
 */
async function saveOrders(tx: CommonQueryMethods, state: TrackState): Promise<Map<number, number>> {
  const rowIds = new Map<number, number>();
  const slots = [...new Set([...state.dirty, ...state.events.map((e) => e.slot)])].sort((a, b) => a - b);
  const existing: Array<{ slot: number; o: TrackedOrder & { rowId: number } }> = [];
  const fresh: Array<{ slot: number; o: TrackedOrder }> = [];
  for (const slot of slots) {
    const o = state.orders[slot]!;
    if (o.rowId === null) fresh.push({ slot, o });
    else existing.push({ slot, o: o as TrackedOrder & { rowId: number } });
  }

  if (existing.length > 0) {
    const ids = existing.map((x) => x.o.rowId);
    const cur = new Map(
      (
        await tx.any(sql.type(versionRow)`
          SELECT o.id, o.cum_exec_qty, o.last_exchange_update_ms, COALESCE((SELECT max(sequence) FROM order_events e WHERE e.order_row_id = o.id), 0)::int AS seq
          FROM orders o WHERE o.id = ANY(${sql.array(ids, 'int8')}) ORDER BY o.id FOR UPDATE`)
      ).map((r) => [r.id, r]),
    );
    for (const { slot, o } of existing) {
      const c = cur.get(o.rowId);
      if (!c) throw new RetriableError('order_row_gone', `order row ${o.rowId} (${orderKey(o)}) disappeared; reloading`);
      const v = state.versions.get(slot);
      if (v && (c.seq !== v.sequence || Dec.of(c.cum_exec_qty).cmp(v.cumQty) !== 0 || c.last_exchange_update_ms !== v.lastUpdateMs)) {
        throw new RetriableError('order_changed_concurrently', `order ${orderKey(o)} changed since it was loaded; reloading`);
      }
    }
    const rows = existing.map(({ o }) => ({ id: o.rowId, ...stateColumns(o) }));
    const col = (c: string) => TS(sql.identifier(['v', c]));
    await tx.query(sql.typeAlias('void')`
      UPDATE orders SET
        order_id = COALESCE(orders.order_id, v.order_id),
        status = v.status,
        qty = v.qty,
        price = COALESCE(v.price, orders.price),
        cum_exec_qty = v.cum_exec_qty, cum_exec_value = v.cum_exec_value, cum_exec_fee = v.cum_exec_fee,
        avg_price = v.avg_price,
        leaves_qty = v.leaves_qty,
        last_exchange_update_ms = v.last_exchange_update_ms,
        submitted_at = COALESCE(orders.submitted_at, ${col('submitted_at')}),
        acknowledged_at = COALESCE(orders.acknowledged_at, ${col('acknowledged_at')}),
        first_fill_at = ${col('first_fill_at')},
        final_at = COALESCE(orders.final_at, ${col('final_at')}),
        reject_ret_code = COALESCE(orders.reject_ret_code, v.reject_ret_code),
        reject_reason = COALESCE(orders.reject_reason, v.reject_reason),
        context = CASE WHEN orders.context ? 'signal_id' THEN orders.context ELSE orders.context || v.context END,
        updated_at = now()
      FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(id bigint, order_id text, status text, qty numeric, price numeric, cum_exec_qty numeric, cum_exec_value numeric,
                                                    cum_exec_fee numeric, avg_price numeric, leaves_qty numeric, last_exchange_update_ms bigint, submitted_at bigint,
                                                    acknowledged_at bigint, first_fill_at bigint, final_at bigint, reject_ret_code integer, reject_reason text, context jsonb)
      WHERE orders.id = v.id`);
    for (const { slot, o } of existing) rowIds.set(slot, o.rowId);
  }

  if (fresh.length > 0) {
    const rows = fresh.map(({ o }, i) => {
      const signalId = signalIdOf(o.context);
      if (signalId !== null && !UUID_RE.test(signalId)) throw new InvalidInputError('UUID parameter value must be a valid UUID.'); // what sql.uuid did
      return {
        i,
        order_link_id: o.orderLinkId,
        signal_id: signalId,
        strategy_id: o.context.strategy_id,
        category: o.category,
        symbol: o.symbol,
        side: o.side,
        order_type: o.orderType,
        time_in_force: timeInForceOf(o),
        market_unit: marketUnitOf(o),
        reduce_only: o.reduceOnly,
        external: o.external,
        ...stateColumns(o),
      };
    });
    const col = (c: string) => TS(sql.identifier(['v', c]));
    const inserted = await tx.any(sql.type(insertedRow)`
      INSERT INTO orders (order_link_id, order_id, signal_id, strategy_id, category, symbol, side, order_type, time_in_force, market_unit, reduce_only,
                          qty, price, status, cum_exec_qty, cum_exec_value, cum_exec_fee, avg_price, leaves_qty, external, last_exchange_update_ms,
                          submitted_at, acknowledged_at, first_fill_at, final_at, reject_ret_code, reject_reason, context)
      SELECT v.order_link_id, v.order_id, v.signal_id, v.strategy_id, v.category, v.symbol, v.side, v.order_type, v.time_in_force, v.market_unit, v.reduce_only,
             v.qty, v.price, v.status, v.cum_exec_qty, v.cum_exec_value, v.cum_exec_fee, v.avg_price, v.leaves_qty, v.external, v.last_exchange_update_ms,
             ${col('submitted_at')}, ${col('acknowledged_at')}, ${col('first_fill_at')}, ${col('final_at')}, v.reject_ret_code, v.reject_reason, v.context
      FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(i int, order_link_id text, order_id text, signal_id uuid, strategy_id text, category text, symbol text, side text,
                                                    order_type text, time_in_force text, market_unit text, reduce_only boolean, qty numeric, price numeric, status text,
                                                    cum_exec_qty numeric, cum_exec_value numeric, cum_exec_fee numeric, avg_price numeric, leaves_qty numeric,
                                                    external boolean, last_exchange_update_ms bigint, submitted_at bigint, acknowledged_at bigint, first_fill_at bigint,
                                                    final_at bigint, reject_ret_code integer, reject_reason text, context jsonb)
      ORDER BY v.i
      ON CONFLICT DO NOTHING
      RETURNING id, order_link_id, order_id`);
    // A new order has an orderLinkId, or else an orderId (the table's check): either identifies the row.
    const byLink = new Map(inserted.filter((r) => r.order_link_id !== null).map((r) => [r.order_link_id!, r.id]));
    const byId = new Map(inserted.filter((r) => r.order_link_id === null && r.order_id !== null).map((r) => [r.order_id!, r.id]));
    for (const { slot, o } of fresh) {
      const id = o.orderLinkId !== null ? byLink.get(o.orderLinkId) : o.orderId !== null ? byId.get(o.orderId) : undefined;
      if (id === undefined) throw new RetriableError('order_inserted_concurrently', `order ${orderKey(o)} was inserted by someone else meanwhile; reloading`);
      rowIds.set(slot, id);
    }
  }
  return rowIds;
}

/** The chunk's events in emission order, and the state history of those that changed the status. */
async function insertEvents(tx: CommonQueryMethods, events: readonly EmittedEvent[], rowIds: ReadonlyMap<number, number>): Promise<void> {
  if (events.length === 0) return;
  const rows = events.map((ev, i) => {
    const e = ev.event;
    const c = ev.change;
    return {
      i,
      event_id: e.event_id,
      order_row_id: rowIds.get(ev.slot)!,
      order_link_id: e.order_link_id,
      order_id: e.order_id,
      sequence: c.sequence,
      event_type: e.event_type,
      from_status: c.from,
      status: c.to,
      cause: c.cause,
      cause_id: c.causeId,
      source_record: ev.source,
      occurred_at: c.occurredAt,
      payload: e,
    };
  });
  await tx.query(sql.typeAlias('void')`
    INSERT INTO order_events (event_id, order_row_id, order_link_id, order_id, sequence, event_type, status, cause, cause_id, source_record, occurred_at, payload)
    SELECT v.event_id, v.order_row_id, v.order_link_id, v.order_id, v.sequence, v.event_type, v.status, v.cause, v.cause_id, v.source_record, v.occurred_at, v.payload
    FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(i int, event_id text, order_row_id bigint, order_link_id text, order_id text, sequence integer, event_type text,
                                                  status text, cause text, cause_id text, source_record text, occurred_at bigint, payload jsonb)
    ORDER BY v.i
    ON CONFLICT DO NOTHING`);
  // A report without a status change (amend/cancel refused) has no history row.
  const history = rows
    .filter((r) => r.from_status !== r.status)
    .map((r) => ({
      i: r.i,
      order_row_id: r.order_row_id,
      order_link_id: r.order_link_id,
      order_id: r.order_id,
      from_status: r.from_status,
      to_status: r.status,
      cause: r.cause,
      event_id: r.event_id,
      exchange_update_ms: r.cause === 'submission' ? null : r.occurred_at,
      details: { event_type: r.event_type, filled_qty: r.payload.filled_qty, fees: r.payload.fees, source: r.payload.source, cause_id: r.cause_id, source_record: r.source_record },
    }));
  if (history.length === 0) return;
  await tx.query(sql.typeAlias('void')`
    INSERT INTO order_state_history (order_row_id, order_link_id, order_id, from_status, to_status, cause, event_id, exchange_update_ms, details)
    SELECT v.order_row_id, v.order_link_id, v.order_id, v.from_status, v.to_status, v.cause, v.event_id, v.exchange_update_ms, v.details
    FROM jsonb_to_recordset(${rowsOf(history)}) AS v(i int, order_row_id bigint, order_link_id text, order_id text, from_status text, to_status text, cause text,
                                                     event_id text, exchange_update_ms bigint, details jsonb)
    ORDER BY v.i
    ON CONFLICT DO NOTHING`);
}

/** Refused facts, once per source record and cause (a replayed chunk adds none again). */
async function insertInvalids(tx: CommonQueryMethods, invalids: ReadonlyArray<{ inv: InvalidRecord; rowId: number | null }>): Promise<void> {
  if (invalids.length === 0) return;
  // The NOT EXISTS below does not see rows of the same statement: keep the first of a (source, cause).
  const seen = new Set<string>();
  const rows: object[] = [];
  for (const { inv, rowId } of invalids) {
    const k = JSON.stringify([inv.source, inv.invalid.cause]);
    if (seen.has(k)) continue;
    seen.add(k);
    const i = inv.invalid;
    rows.push({ i: rows.length, order_row_id: rowId, order_link_id: inv.orderLinkId, order_id: inv.orderId, from_status: i.from, to_status: i.to, cause: i.cause, event_id: inv.source, reason: i.reason, payload: JSON.parse(JSON.stringify(inv.payload ?? {})) as unknown });
  }
  await tx.query(sql.typeAlias('void')`
    INSERT INTO invalid_transitions (order_row_id, order_link_id, order_id, from_status, to_status, cause, event_id, reason, payload)
    SELECT v.order_row_id, v.order_link_id, v.order_id, v.from_status, v.to_status, v.cause, v.event_id, v.reason, v.payload
    FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(i int, order_row_id bigint, order_link_id text, order_id text, from_status text, to_status text, cause text,
                                                  event_id text, reason text, payload jsonb)
    WHERE NOT EXISTS (SELECT 1 FROM invalid_transitions t WHERE t.event_id = v.event_id AND t.cause = v.cause)
    ORDER BY v.i`);
}

const dec = (v: string | null | undefined): string | null => (v === null || v === undefined || v === '' ? null : (Dec.maybe(v)?.toString() ?? null));

/** Latest position per (category, symbol) of the chunk (one row per key), applied only when newer. */
async function upsertPositions(tx: CommonQueryMethods, positions: readonly Position[]): Promise<void> {
  if (positions.length === 0) return;
  const rows = positions.map((p) => ({
    category: p.category,
    symbol: p.symbol,
    side: p.side === 'Buy' || p.side === 'Sell' ? p.side : '',
    size: dec(p.size) ?? '0',
    avg_price: dec(p.avgPrice),
    mark_price: dec(p.markPrice),
    position_value: dec(p.positionValue),
    leverage: dec(p.leverage),
    liq_price: dec(p.liqPrice),
    unrealised_pnl: dec(p.unrealisedPnl) ?? '0',
    cum_realised_pnl: dec(p.cumRealisedPnl) ?? '0',
    updated_ms: p.updatedTime,
  }));
  await tx.query(sql.typeAlias('void')`
    INSERT INTO positions (category, symbol, side, size, avg_price, mark_price, position_value, leverage, liq_price, unrealised_pnl, cum_realised_pnl, updated_ms)
    SELECT v.category, v.symbol, v.side, v.size, v.avg_price, v.mark_price, v.position_value, v.leverage, v.liq_price, v.unrealised_pnl, v.cum_realised_pnl, v.updated_ms
    FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(category text, symbol text, side text, size numeric, avg_price numeric, mark_price numeric, position_value numeric,
                                                  leverage numeric, liq_price numeric, unrealised_pnl numeric, cum_realised_pnl numeric, updated_ms bigint)
    ON CONFLICT (category, symbol) DO UPDATE SET
      side = EXCLUDED.side, size = EXCLUDED.size, avg_price = EXCLUDED.avg_price, mark_price = EXCLUDED.mark_price,
      position_value = EXCLUDED.position_value, leverage = EXCLUDED.leverage, liq_price = EXCLUDED.liq_price,
      unrealised_pnl = EXCLUDED.unrealised_pnl, cum_realised_pnl = EXCLUDED.cum_realised_pnl, updated_ms = EXCLUDED.updated_ms, updated_at = now()
    WHERE positions.updated_ms <= EXCLUDED.updated_ms`);
}

/** Latest balance per coin of the chunk (one row per coin), applied only when newer. */
async function upsertBalances(tx: CommonQueryMethods, balances: ReadonlyArray<{ coin: WalletBalance['coin'][number]; updatedTime: number }>): Promise<void> {
  if (balances.length === 0) return;
  const rows = balances.map(({ coin: c, updatedTime }) => {
    const wallet = dec(c.walletBalance) ?? '0';
    const locked = dec(c.locked) ?? '0';
    // Same rule as connectors/exchange-sync.ts: what is free to trade is balance - locked (or `free`).
    const available = dec(c.free) ?? Dec.of(wallet).sub(locked).toString();
    return { coin: c.coin, wallet_balance: wallet, available, locked, equity: dec(c.equity), usd_value: dec(c.usdValue), updated_ms: updatedTime };
  });
  await tx.query(sql.typeAlias('void')`
    INSERT INTO balances (coin, wallet_balance, available, locked, equity, usd_value, updated_ms)
    SELECT v.coin, v.wallet_balance, v.available, v.locked, v.equity, v.usd_value, v.updated_ms
    FROM jsonb_to_recordset(${rowsOf(rows)}) AS v(coin text, wallet_balance numeric, available numeric, locked numeric, equity numeric, usd_value numeric, updated_ms bigint)
    ON CONFLICT (coin) DO UPDATE SET
      wallet_balance = EXCLUDED.wallet_balance, available = EXCLUDED.available, locked = EXCLUDED.locked,
      equity = EXCLUDED.equity, usd_value = EXCLUDED.usd_value, updated_ms = EXCLUDED.updated_ms, updated_at = now()
    WHERE balances.updated_ms <= EXCLUDED.updated_ms`);
}

/** Re-exported for tests and docs. */
export { EMPTY_CTX };
