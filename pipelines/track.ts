// Tracking and enrichment stage: orders.submissions + exchange.orders + exchange.executions +
// exchange.positions + exchange.wallet → orders.events (Avro OrderEvent), with the order state,
// executions, positions and balances kept in PostgreSQL (their one writer). Positions and balances
// are projections only: newest exchange time wins, no event. Tickers (market.tickers) are not an
// input: they produce no event either, and their projection runs outside the exactly-once path
// (pipelines/ticker-projection.ts), which spares this stage a Kafka transaction per ticker chunk.
// docs/orders.md documents the state machine and the event format.
//
// Shape (house style 1): `load` reads what the chunk's records touch (order rows with their
// emitted events, execution sums, execIds already seen, events already emitted for these very
// records); `process` is pure: it applies each fact through the order state machine
// (pipelines/order-state.ts), updating the in-memory state so later records of the chunk see the
// earlier ones, and turns every state change into one enriched OrderEvent; `persist` writes the
// chunk's effects in one database transaction before the runner's Kafka commit. Both cost a fixed
// number of round trips per chunk, not per record: `load` reads with `= ANY(array)` in one statement
// (and the P&L books beside it); `persist` sends one multi-row statement per table (executions,
// order rows locked / updated / inserted, events, state history, invalid transitions, positions,
// balances). The state
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
//
// P&L. Every new execution is booked into its (category, symbol, strategy) P&L book (pnl.ts rules,
// pnl-sql.ts storage) in process, and persist writes the books with the executions: a fill is
// booked exactly when it is first stored (docs/pnl.md).
//
// The parts: the chunk's state (track-state.ts), the rows `load` reads (track-rows.ts), which records
// can be stored (track-guards.ts), the writes of `persist` and the position and balance
// projections (track-sql.ts); here the stage itself, its settings, metrics and events.
import { z } from 'zod';
import { bool, emptyToUndefined } from '../runtime/setting-types.ts';
import { Counter, type Registry } from 'prom-client';
import type { Output, Stage, StageRecord, StageResult } from './runner.ts';
import { ok, reject } from './runner.ts';
import type { Clock } from '../runtime/clock.ts';
import { epochMs, readParts, sql, type DatabasePool } from '../runtime/db.ts';
import type { Logger } from '../runtime/logger.ts';
import { topicName } from '../runtime/topics.ts';
import type { ExchangeOrderUpdate, Execution, OrderEvent, OrderSubmission, Position, WalletBalance } from '../schemas/types.ts';
import { Dec } from '../runtime/decimal.ts';
import { CATEGORIES, emptyState, findSlot, putOrder, sourceOf, type ExecSums, type TrackInput, type TrackState } from './track-state.ts';
import { eventRow, execIdRow, execSumRow, orderFromRow, orderRow, replayRow } from './track-rows.ts';
import { unstorable, type Kind } from './track-guards.ts';
import { bookExecution, booksOf, loadedBooks, saveBooks, strategyOf } from './pnl-sql.ts';
import { POSITION_STOP_TYPES } from './pnl.ts';
import { insertEvents, insertExecutions, insertInvalids, saveOrders, upsertBalances, upsertPositions } from './track-sql.ts';
import { applyFact, EMPTY_SIGNAL_CONTEXT, isTerminal, latenciesOf, orderFromSubmission, orderFromUpdate, slippageBps, ZERO_FILLS, type Applied, type Change, type Fact, type InvalidStateTransition, type TrackedOrder } from './order-state.ts';

export const name = 'track';


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
        // Booked once, here, with the execution it comes from (persist stores both in one
        // transaction). A fill of an order not known yet books under 'unattributed' when its link
        // id is ours, 'external' otherwise.
        const fill = { category: e.category as 'spot' | 'linear', symbol: e.symbol, side: e.side as 'Buy' | 'Sell', execType: e.execType, qty: e.execQty, price: e.execPrice, fee: e.execFee || '0', feeCurrency: e.feeCurrency };
        const order = slot === undefined ? null : state.orders[slot]!;
        const strategy = order ? strategyOf(order.context, order.external) : strategyOf(null, !(e.orderLinkId && ownLink.test(e.orderLinkId)));
        // The exchange's own TP/SL order of a position (no orderLinkId, adopted as external) closes
        // what the strategies' books hold: it is booked to them (connectors/protect.ts sets them).
        const positionStop = strategy === 'external' && POSITION_STOP_TYPES.has(e.stopOrderType ?? '');
        for (const k of bookExecution(state.books, state.pnlDays, strategy, fill, e.execTime, { positionStop })) state.booksTouched.add(k);
        // Funding settles the position (booked to the books that hold it), it fills no order.
        if (e.execType === 'Funding') return ok();
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
    const orderIds = new Set<string>();
    const execIds = new Set<string>();
    for (const rec of records) {
      const kind = kindOf.get(rec.topic);
      if (kind && unstorable(kind, rec.value)) continue; // refused in process; its ids must not reach a query
      if (kind === 'submission') {
        const s = rec.value as OrderSubmission;
        links.add(s.order_link_id);
        if (s.order_id) orderIds.add(s.order_id);
      } else if (kind === 'order' || kind === 'execution') {
        const v = rec.value as ExchangeOrderUpdate | Execution;
        if (v.orderLinkId) links.add(v.orderLinkId);
        if (v.orderId) orderIds.add(v.orderId);
        if (kind === 'execution') execIds.add((v as Execution).execId);
      }
    }
    const sources = records.map(sourceOf);
    const bookSymbols = [...new Set(records.filter((r) => kindOf.get(r.topic) === 'execution' && !unstorable('execution', r.value)).map((r) => (r.value as Execution).symbol))];
    // One statement, one round trip (the P&L books of the chunk's executions' symbols included): on this
    // machine a round trip costs the order manager more CPU than the rows it brings (docs/performance.md,
    // "Round trips"). Each part comes back as a JSON array in the shape its row schema has always had:
    // numerics as their exact text, timestamps as epoch ms truncated as slonik's parser truncates them.
    const ids = [...orderIds];
    const loaded = await readParts(
      db,
      {
        rows: { rows: orderRow, query: sql.fragment`SELECT * FROM o`, orderBy: ['id'] },
        seen: { rows: execIdRow, query: sql.fragment`SELECT exec_id FROM executions WHERE exec_id = ANY(${sql.array([...execIds], 'text')})` },
        replays: {
          rows: replayRow,
          query: sql.fragment`SELECT id, source_record, payload FROM order_events WHERE source_record = ANY(${sql.array(sources, 'text')})`,
          orderBy: ['id'],
        },
        events: {
          rows: eventRow,
          query: sql.fragment`SELECT order_row_id, event_id, sequence, status, cause_id, occurred_at FROM order_events WHERE order_row_id = ANY(ARRAY(SELECT id FROM o))`,
        },
        sums: {
          rows: execSumRow,
          query: sql.fragment`
            SELECT order_id, sum(exec_qty)::text AS qty, sum(COALESCE(exec_value, exec_qty * exec_price))::text AS value, sum(exec_fee)::text AS fee,
                   max(fee_currency) AS fee_currency, ${epochMs(sql.fragment`min(exec_time)`)} AS first_at
            FROM executions
            WHERE order_id = ANY(${sql.array(ids, 'text')}::text[] || ARRAY(SELECT order_id FROM o WHERE order_id IS NOT NULL))
            GROUP BY order_id`,
        },
        books: booksOf(bookSymbols),
      },
      {
        // The chunk's orders, read once for the three parts that need them.
        with: sql.fragment`o AS (
          SELECT o.id, o.order_link_id, o.order_id, o.external, o.category, o.symbol, o.side, o.order_type, o.qty::text AS qty, o.price::text AS price,
                 o.market_unit, o.time_in_force, o.reduce_only, o.status, o.cum_exec_qty::text AS cum_exec_qty, o.cum_exec_value::text AS cum_exec_value,
                 o.cum_exec_fee::text AS cum_exec_fee, o.avg_price::text AS avg_price, o.leaves_qty::text AS leaves_qty, o.last_exchange_update_ms, o.terms_update_ms,
                 ${epochMs(sql.fragment`o.submitted_at`)} AS submitted_at, ${epochMs(sql.fragment`o.acknowledged_at`)} AS acknowledged_at,
                 ${epochMs(sql.fragment`o.first_fill_at`)} AS first_fill_at, ${epochMs(sql.fragment`o.final_at`)} AS final_at,
                 o.reject_ret_code, o.reject_reason, o.context
          FROM orders o
          WHERE o.order_link_id = ANY(${sql.array([...links], 'text')}) OR o.order_id = ANY(${sql.array(ids, 'text')})
        )`,
      },
    );
    const { rows, seen, replays, events, sums } = loaded;
    state.books = loadedBooks(loaded.books);
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
      await saveBooks(tx, state.books, state.booksTouched, state.pnlDays);
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

  // An exchange fact that cannot be applied leaves orders, fills, balances or prices different from
  // the exchange's, which every risk decision reads: halt until an operator has looked. The inputs
  // all have the pipeline's partition count (runtime/topics.ts), keyed by symbol: a symbol's facts
  // meet on one partition number.
  return { name, input: [topics.submissions, topics.orders, topics.executions, topics.positions, topics.wallet], inputFormat: 'avro', dlq: topics.dlq, load, process: processRecord, persist, conflict: 'halt' };
}

/** Re-exported for tests and docs. */
export { EMPTY_SIGNAL_CONTEXT };
