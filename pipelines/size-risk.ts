// Risk and sizing stage: signals.valid (Avro Signal) → orders.intents (create / amend / cancel) or a
// signal_rejected OrderEvent on orders.events. docs/risk.md explains the rules and every setting.
//
// Shape (house style 1 and 8): `load` reads the chunk's state from PostgreSQL in a handful of
// queries; `process` is pure (pipelines/risk-rules.ts `decide`) and updates the in-memory state as it
// goes, so a later signal of the chunk sees the orders an earlier one decided; `persist` records every
// decision before the Kafka commit, in one database transaction:
//   - decisions: one row per intent (idempotency_key `<signal_id>:<sequence>`) or per rejection
//     (`<signal_id>:reject`), with every input the decision was taken from and its output record;
//   - orders: a row in status 'Intent' for every create (order_link_id unique), so the next chunk, and
//     the next signal, count its exposure and funds before the exchange has confirmed anything;
//   - signals: status 'decided' with the outcome (create / amend / rejected) and its reason, on the
//     row validation inserted (this stage owns only those columns; see recordDecisions);
//   - trading_state (+ trading_state_transitions) when the daily-loss evaluation moved the state.
//
// Replays. The runner persists before it commits to Kafka, so after a crash in between a signal comes
// back already decided. Such a signal is NOT decided again (the state now contains its own order and
// would change the answer): `load` reads its decisions and `process` emits the recorded outputs
// verbatim, so the replay produces identical intents and events; persist skips it. A signal whose row
// is 'decided' without decisions here (decided elsewhere) produces nothing. The same signal twice in
// one chunk is decided once: the repeat emits nothing, and persist records the signal once (for it,
// as for a replay, the decision is already recorded).
//
// Unstorable records. A schema-valid signal that PostgreSQL could not store (see `unstorableSignal`)
// is refused in `process` with reason invalid_record (a dead letter on orders.dlq), kept out of
// load's queries and out of persist, so it can neither stop the stage nor reach the risk rules.
//
// Refusals are business outcomes, not bad data: a rejected signal gets a decisions row, outcome
// 'rejected' on its signals row and a signal_rejected OrderEvent (reason_code), and `process`
// returns ok(event) rather than reject(...), so orders.dlq stays for records that could not be
// processed at all.
import { z } from 'zod';
import { Counter, type Registry } from 'prom-client';
import type { Output, Stage, StageRecord, StageResult } from './runner.ts';
import { ok, reject } from './runner.ts';
import type { Clock } from '../runtime/clock.ts';
import { systemClock } from '../runtime/clock.ts';
import { epochMs, readParts, sql, type CommonQueryMethods, type DatabasePool, type PartRows } from '../runtime/db.ts';
import type { Logger } from '../runtime/logger.ts';
import { topicName } from '../runtime/topics.ts';
import type { Category, MarketUnit, OrderEvent, OrderIntent, OrderSide, OrderType, Signal, TimeInForce } from '../schemas/types.ts';
import { rejectionEventId } from './validate.ts';
import { isStorableTime, unstorableText, UUID_RE } from './record-guards.ts';
import { applyDecision, decide, instKey, OPEN_STATUSES, riskConfigSchema, type Balance, type Decision, type Instrument, type OpenOrder, type PositionSnap, type RiskConfig, type RiskState, type TickerSnap } from './risk-rules.ts';
import { evaluate, utcDay, type Evaluated, type TradingStateName } from './trading-state.ts';
import { dayPnlFrom, dayPnlReads } from './pnl-sql.ts';

export const name = 'size-risk';

/** Advisory lock key of risk decisions in the database ('sizerisk' as 8 bytes, so nothing else picks it by chance). */
export const RISK_DECISION_LOCK = '8316312763046130539';

export { RISK_REASONS, INTENT_REASONS } from './risk-rules.ts';

/** The stage's settings (see docs/risk.md; to be merged into runtime/config.ts). */
export const configSchema = riskConfigSchema;
export type SizeRiskConfig = RiskConfig;

/** Parse the stage's settings from an environment-like object (strings or already-typed values). */
export function parseConfig(env: Record<string, unknown> = process.env): SizeRiskConfig {
  return configSchema.parse(env);
}

/** Input and output record kinds (house style 8). */
export const inputSchema = { topic: 'signals.valid', record: 'Signal' } as const;
export const outputSchemas = [
  { topic: 'orders.intents', record: 'OrderIntent' },
  { topic: 'orders.events', record: 'OrderEvent' },
  { topic: 'orders.dlq', record: 'DeadLetter' },
] as const;

// ---------------------------------------------------------------------------------------------
// Unstorable signals

/** Dead-letter reason of a schema-valid signal that cannot be decided and recorded. */
export const INVALID_RECORD = 'invalid_record';

/**
 * Why a signal that fits the Avro schema still cannot be decided and recorded, or null when it can.
 * signals.valid normally carries only what validation accepted, but any producer can write to it,
 * and each of these used to fail load or persist (a fatal database error that stopped the stage):
 * a signal_id that is not a (lower-case) UUID (uuid columns), amount not finite and > 0, confidence not in
 * [0, 1] (the signals table's checks), a signal_type other than buy/sell, NUL or a lone UTF-16
 * surrogate in any text (PostgreSQL text and jsonb refuse them), times outside what Date and
 * timestamptz hold. Such a signal is refused with reason invalid_record (dead-lettered; it never
 * reaches the risk rules, so it never produces an intent) and is left out of load and persist.
 */
export function unstorableSignal(sig: Signal): string | null {
  if (typeof sig.signal_id !== 'string' || !UUID_RE.test(sig.signal_id)) return `signal_id ${JSON.stringify(String(sig.signal_id)).slice(0, 60)} is not a UUID`;
  // PostgreSQL gives uuids back in lower case: a replay of an upper-case id would not find its own
  // decisions and would be decided again. Validation always writes them in lower case.
  if (sig.signal_id !== sig.signal_id.toLowerCase()) return `signal_id ${sig.signal_id} is not in lower case`;
  const text = unstorableText(sig);
  if (text) return text;
  if (sig.signal_type !== 'buy' && sig.signal_type !== 'sell') return `signal_type ${JSON.stringify(sig.signal_type).slice(0, 40)} is not buy or sell`;
  if (typeof sig.amount !== 'number' || !Number.isFinite(sig.amount) || !(sig.amount > 0)) return `amount ${sig.amount} is not a finite number > 0`;
  if (typeof sig.confidence !== 'number' || !(sig.confidence >= 0 && sig.confidence <= 1)) return `confidence ${sig.confidence} is not in [0, 1]`;
  for (const f of ['timestamp', 'received_at'] as const) {
    const t = sig[f];
    if (!isStorableTime(t)) return `${f} ${t} is not a storable time`;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// State

/** An output as recorded in decisions.output: logical topic, key and value. */
export interface StoredOutput {
  topic: 'orders.intents' | 'orders.events';
  key: string | null;
  value: OrderIntent | OrderEvent;
}

export interface SizeRiskState {
  risk: RiskState;
  /** The trading state after evaluating the daily loss limit for this chunk. */
  trading: Evaluated;
  /** signal_id → outputs already recorded in PostgreSQL (a replay emits exactly these). */
  replays: Map<string, StoredOutput[]>;
  /** signal_id → decided in this chunk (persist records these). */
  decided: Map<string, { sig: Signal; decision: Decision; outputs: StoredOutput[] }>;
  /** signal_ids met in this chunk. */
  seen: Set<string>;
}

/** A fresh in-memory state for `process` (unit tests build their RiskState by hand). */
export function stateFrom(risk: RiskState, trading?: Evaluated): SizeRiskState {
  const t = trading ?? { state: risk.trading.state, killSwitch: risk.trading.killSwitch, reason: risk.trading.reason, dayLoss: 0, change: null };
  return { risk: { ...risk, trading: t }, trading: t, replays: new Map(), decided: new Map(), seen: new Set() };
}

// ---------------------------------------------------------------------------------------------
// Outputs

/** The signal_rejected event of a refused signal (same id scheme as the validation stage). */
export function rejectionEvent(sig: Signal, code: string, detail: string, now: number, category: Category | null): OrderEvent {
  return {
    event_id: rejectionEventId(sig.signal_id, code),
    event_type: 'signal_rejected',
    occurred_at: now,
    observed_at: now,
    order_link_id: null,
    order_id: null,
    status: null,
    previous_status: null,
    category,
    symbol: sig.asset,
    side: sig.signal_type === 'buy' ? 'Buy' : 'Sell',
    order_type: null,
    qty: null,
    price: null,
    filled_qty: null,
    avg_fill_price: null,
    fees: null,
    fee_currency: null,
    remaining_qty: null,
    last_exec_id: null,
    last_exec_qty: null,
    last_exec_price: null,
    slippage_bps: null,
    latencies: { signal_to_submitted_ms: null, submitted_to_ack_ms: null, submitted_to_first_fill_ms: null, to_final_ms: null },
    reason_code: code,
    reason_detail: detail.slice(0, 1000),
    signal_id: sig.signal_id,
    strategy_id: sig.strategy_id,
    model_version: sig.model_version,
    is_warmup: sig.is_warmup,
    confidence: sig.confidence,
    trace_id: sig.trace_id,
    source: 'risk',
    external: false,
    sequence: null,
  };
}

export function outputsOf(sig: Signal, d: Decision, now: number): StoredOutput[] {
  if (d.kind === 'intents') return d.intents.map((value) => ({ topic: 'orders.intents', key: sig.asset, value }));
  const category = (d.inputs.instrument as Instrument | null | undefined)?.category ?? null;
  return [{ topic: 'orders.events', key: sig.asset, value: rejectionEvent(sig, d.code, d.detail, now, category) }];
}

// ---------------------------------------------------------------------------------------------
// Rows

const instrumentRow = z.object({
  category: z.enum(['spot', 'linear']),
  symbol: z.string(),
  base_coin: z.string(),
  quote_coin: z.string(),
  tradable: z.boolean(),
  tick_size: z.string(),
  qty_step: z.string().nullable(),
  base_precision: z.string().nullable(),
  quote_precision: z.string().nullable(),
  min_order_qty: z.string(),
  max_order_qty: z.string().nullable(),
  max_market_order_qty: z.string().nullable(),
  min_order_amt: z.string().nullable(),
  max_order_amt: z.string().nullable(),
  min_notional_value: z.string().nullable(),
});
const tickerRow = z.object({ category: z.enum(['spot', 'linear']), symbol: z.string(), bid: z.string().nullable(), ask: z.string().nullable(), last: z.string().nullable(), mark_price: z.string().nullable(), ts: z.number(), book_ts: z.number() });
const balanceRow = z.object({ coin: z.string(), wallet_balance: z.string(), available: z.string(), usd_value: z.string().nullable() });
const positionRow = z.object({ category: z.enum(['spot', 'linear']), symbol: z.string(), side: z.enum(['Buy', 'Sell', '']), size: z.string(), mark_price: z.string().nullable() });
const orderRow = z.object({
  order_link_id: z.string().nullable(),
  order_id: z.string().nullable(),
  signal_id: z.string().nullable(),
  strategy_id: z.string().nullable(),
  category: z.enum(['spot', 'linear']),
  symbol: z.string(),
  side: z.enum(['Buy', 'Sell']),
  order_type: z.enum(['Market', 'Limit']),
  time_in_force: z.enum(['GTC', 'IOC', 'FOK', 'PostOnly']).nullable(),
  market_unit: z.enum(['baseCoin', 'quoteCoin']).nullable(),
  reduce_only: z.boolean(),
  qty: z.string(),
  price: z.string().nullable(),
  cum_exec_qty: z.string(),
  cum_exec_value: z.string(),
  leaves_qty: z.string().nullable(),
  status: z.string(),
  pending_action: z.enum(['amend', 'cancel']).nullable(),
  pending_qty: z.string().nullable(),
  pending_price: z.string().nullable(),
});
const tradingRow = z.object({ state: z.enum(['ACTIVE', 'REDUCING', 'HALTED']), kill_switch: z.boolean(), reason: z.string().nullable(), updated_at: z.number() });
const decisionRow = z.object({ signal_id: z.string(), idempotency_key: z.string().nullable(), output: z.any() });
const signalStatusRow = z.object({ signal_id: z.string() });

function toOpenOrder(r: z.infer<typeof orderRow>): OpenOrder {
  return {
    orderLinkId: r.order_link_id,
    orderId: r.order_id,
    signalId: r.signal_id,
    strategyId: r.strategy_id,
    category: r.category,
    symbol: r.symbol,
    side: r.side as OrderSide,
    orderType: r.order_type as OrderType,
    timeInForce: r.time_in_force as TimeInForce | null,
    marketUnit: r.market_unit as MarketUnit | null,
    reduceOnly: r.reduce_only,
    qty: r.qty,
    price: r.price,
    cumExecQty: r.cum_exec_qty,
    cumExecValue: r.cum_exec_value,
    leavesQty: r.leaves_qty,
    status: r.status,
    pending: r.pending_action === 'cancel' ? { action: 'cancel' } : r.pending_action === 'amend' ? { action: 'amend', qty: r.pending_qty, price: r.pending_price } : null,
  };
}

/**
 * What a chunk's decisions read, as parts of one statement (runtime/db.ts readParts): the
 * instruments, the latest tickers, balances, open positions and orders, the trading state, what is
 * already recorded for these signals, and the day's P&L (pnl-sql.ts). Numerics as exact text,
 * timestamps as epoch ms.
 */
export function riskReads(ids: readonly string[], now: number) {
  return {
    instruments: {
      rows: instrumentRow,
      query: sql.fragment`
        SELECT category, symbol, base_coin, quote_coin, (enabled AND status = 'Trading') AS tradable, tick_size::text AS tick_size, qty_step::text AS qty_step,
               base_precision::text AS base_precision, quote_precision::text AS quote_precision, min_order_qty::text AS min_order_qty,
               max_order_qty::text AS max_order_qty, max_market_order_qty::text AS max_market_order_qty, min_order_amt::text AS min_order_amt,
               max_order_amt::text AS max_order_amt, min_notional_value::text AS min_notional_value
        FROM instruments`,
    },
    // book_ts: the time of bid / ask, older than ts when a tick without them kept an earlier
    // record's (pipelines/ticker-projection.ts).
    tickers: {
      rows: tickerRow,
      query: sql.fragment`
        SELECT category, symbol, bid::text AS bid, ask::text AS ask, last::text AS last, mark_price::text AS mark_price,
               ${epochMs(sql.fragment`ts`)} AS ts, ${epochMs(sql.fragment`COALESCE(book_ts, ts)`)} AS book_ts
        FROM tickers`,
    },
    balances: {
      rows: balanceRow,
      query: sql.fragment`SELECT coin, wallet_balance::text AS wallet_balance, available::text AS available, usd_value::text AS usd_value FROM balances`,
    },
    positions: {
      rows: positionRow,
      query: sql.fragment`SELECT category, symbol, side, size::text AS size, mark_price::text AS mark_price FROM positions WHERE size > 0`,
    },
    // Open orders, each with the newest amend/cancel this stage decided after the row's last change
    // (not yet confirmed by the exchange): a later signal must neither cancel it twice nor undercount it.
    orders: {
      rows: orderRow,
      query: sql.fragment`
        SELECT o.order_link_id, o.order_id, o.signal_id::text AS signal_id, o.strategy_id, o.category, o.symbol, o.side, o.order_type,
               o.time_in_force, o.market_unit, o.reduce_only, o.qty::text AS qty, o.price::text AS price, o.cum_exec_qty::text AS cum_exec_qty,
               o.cum_exec_value::text AS cum_exec_value, o.leaves_qty::text AS leaves_qty, o.status,
               d.action AS pending_action, d.output->'value'->>'qty' AS pending_qty, d.output->'value'->>'price' AS pending_price,
               o.created_at AS created_order, o.id AS row_order
        FROM orders o
        LEFT JOIN LATERAL (
          SELECT action, output FROM decisions
          WHERE decisions.order_link_id = o.order_link_id AND decisions.action IN ('amend', 'cancel') AND decisions.at > o.updated_at
          ORDER BY decisions.at DESC, decisions.id DESC LIMIT 1
        ) d ON true
        WHERE o.status = ANY(${sql.array([...OPEN_STATUSES], 'text')})`,
      orderBy: ['created_order', 'row_order'],
    },
    trading: {
      rows: tradingRow,
      query: sql.fragment`SELECT state, kill_switch, reason, ${epochMs(sql.fragment`updated_at`)} AS updated_at FROM trading_state WHERE id`,
    },
    decisions: {
      rows: decisionRow,
      query: sql.fragment`SELECT signal_id::text AS signal_id, idempotency_key, output, id AS row_order FROM decisions WHERE signal_id = ANY(${sql.array([...ids], 'uuid')})`,
      orderBy: ['row_order'],
    },
    decided: {
      rows: signalStatusRow,
      query: sql.fragment`SELECT signal_id::text AS signal_id FROM signals WHERE signal_id = ANY(${sql.array([...ids], 'uuid')}) AND status = 'decided'`,
    },
    // The day's P&L from the tracking stage's books, at the latest tickers (the loss ladder's input).
    ...dayPnlReads(now),
  };
}

export type RiskRows = PartRows<ReturnType<typeof riskReads>>;

const sequenceOf = (o: StoredOutput): number => (o.topic === 'orders.intents' ? (o.value as OrderIntent).sequence : 0);

// ---------------------------------------------------------------------------------------------
// The stage

export interface SizeRiskDeps {
  config: SizeRiskConfig;
  /** Needed by load/persist; a stage without a db can still run `process` (unit tests). */
  db?: DatabasePool;
  clock?: Clock;
  logger?: Logger;
  /** The process's metrics registry (runtime/metrics.ts `registry`); the stage's counter is added to it. */
  registry?: Registry;
}

export const SIZE_RISK_METRICS = {
  signalsWithoutRow: 'risk_signals_without_row_total',
} as const;

/** Signals decided that had no `signals` row to record the outcome on (registered once per registry). */
export function signalsWithoutRowCounter(registry: Registry): Counter {
  return (
    (registry.getSingleMetric(SIZE_RISK_METRICS.signalsWithoutRow) as Counter | undefined) ??
    new Counter({ name: SIZE_RISK_METRICS.signalsWithoutRow, help: 'Signals the risk stage decided that had no signals row from validation: outcome not recorded there (the row is not inserted)', registers: [registry] })
  );
}

/** Writes in one transaction (see `write` in the stage). */
export type Writer = <T>(fn: (tx: CommonQueryMethods) => Promise<T>) => Promise<T>;

export type SizeRiskStage = Stage<Signal, SizeRiskState> & { stateFrom(rows: RiskRows): SizeRiskState; write: Writer };

export function createSizeRiskStage(deps: SizeRiskDeps): SizeRiskStage {
  const cfg = deps.config;
  const clock = deps.clock ?? systemClock;
  const log = deps.logger?.child({ stage: name });
  const withoutRow = deps.registry ? signalsWithoutRowCounter(deps.registry) : null;
  const topics = {
    input: topicName('signals.valid', cfg.TOPIC_PREFIX),
    intents: topicName('orders.intents', cfg.TOPIC_PREFIX),
    events: topicName('orders.events', cfg.TOPIC_PREFIX),
    dlq: topicName('orders.dlq', cfg.TOPIC_PREFIX),
  };
  const physical = (o: StoredOutput): Output => {
    const isIntent = o.topic === 'orders.intents';
    const v = o.value as OrderIntent & OrderEvent;
    const headers: Record<string, string> = { signal_id: v.signal_id ?? v.signal?.signal_id ?? '' };
    if (isIntent) headers.intent_id = v.intent_id;
    else if (v.reason_code) headers.reason_code = v.reason_code;
    return { topic: isIntent ? topics.intents : topics.events, key: o.key, value: o.value, headers };
  };

  const processRecord = (rec: StageRecord<Signal>, { state, clock: stageClock }: { state: SizeRiskState; clock: Clock }): StageResult => {
    const sig = rec.value;
    const bad = unstorableSignal(sig);
    // Schema-valid but unstorable (see unstorableSignal): dead-lettered, never decided, never persisted.
    if (bad) return reject(INVALID_RECORD, bad, [], typeof sig.signal_id === 'string' && UUID_RE.test(sig.signal_id) ? sig.signal_id : null);
    const id = sig.signal_id;
    if (state.seen.has(id)) return ok(); // the same signal twice in one chunk: decided once above (persist records it once)
    state.seen.add(id);
    const stored = state.replays.get(id);
    if (stored) return ok(...stored.map(physical));
    const now = stageClock.now();
    const decision = decide(sig, state.risk, cfg, now);
    applyDecision(state.risk, decision);
    const outputs = outputsOf(sig, decision, now);
    state.decided.set(id, { sig, decision, outputs });
    return ok(...outputs.map(physical));
  };

  const requireDb = (): DatabasePool => {
    if (!deps.db) throw new Error('size-risk stage: load/persist need deps.db');
    return deps.db;
  };

  /** The state of a chunk from what riskReads read (load's second half; signal-decide reads it with validation's reads). */
  const stateFrom = (rows: RiskRows): SizeRiskState => {
    const { instruments, tickers, balances, positions, orders, decisions, decided } = rows;
    const trading = rows.trading[0] ?? null;
    const pnl = dayPnlFrom(rows);
    const now = clock.now();
    // No row (a database the migrations did not seed): refuse everything rather than trade blind.
    const tr = trading
      ? evaluate({ state: trading.state, killSwitch: trading.kill_switch, reason: trading.reason, stateDay: utcDay(trading.updated_at), dayPnl: pnl.dayPnl.toString() }, { reduceAt: cfg.RISK_DAILY_LOSS_REDUCE, haltAt: cfg.RISK_DAILY_LOSS_HALT }, now)
      : { state: 'HALTED' as TradingStateName, killSwitch: false, reason: 'no trading_state row', dayLoss: 0, change: null };
    if (tr.change) log?.warn({ from: tr.change.from, to: tr.change.to, cause: tr.change.cause, dayLoss: tr.dayLoss }, 'trading state changes');

    const risk: RiskState = {
      instruments: new Map(instruments.map((r): [string, Instrument] => [instKey(r.category, r.symbol), {
        category: r.category, symbol: r.symbol, baseCoin: r.base_coin, quoteCoin: r.quote_coin, tradable: r.tradable, tickSize: r.tick_size,
        qtyStep: r.qty_step, basePrecision: r.base_precision, quotePrecision: r.quote_precision, minOrderQty: r.min_order_qty,
        maxOrderQty: r.max_order_qty, maxMarketOrderQty: r.max_market_order_qty, minOrderAmt: r.min_order_amt, maxOrderAmt: r.max_order_amt,
        minNotionalValue: r.min_notional_value,
      }])),
      tickers: new Map(tickers.map((r): [string, TickerSnap] => [instKey(r.category, r.symbol), { category: r.category, symbol: r.symbol, bid: r.bid, ask: r.ask, last: r.last, markPrice: r.mark_price, ts: r.ts, bookTs: r.book_ts }])),
      balances: new Map(balances.map((r): [string, Balance] => [r.coin, { coin: r.coin, walletBalance: r.wallet_balance, available: r.available, usdValue: r.usd_value }])),
      positions: new Map(positions.map((r): [string, PositionSnap] => [instKey(r.category, r.symbol), { category: r.category, symbol: r.symbol, side: r.side, size: r.size, markPrice: r.mark_price }])),
      openOrders: orders.map(toOpenOrder),
      trading: tr,
    };
    const replays = new Map<string, StoredOutput[]>();
    for (const r of decided) replays.set(r.signal_id, []);
    for (const d of decisions) {
      const out = d.output as StoredOutput | null;
      if (!out || (out.topic !== 'orders.intents' && out.topic !== 'orders.events')) continue;
      const list = replays.get(d.signal_id) ?? [];
      list.push(out);
      replays.set(d.signal_id, list);
    }
    for (const list of replays.values()) list.sort((a, b) => sequenceOf(a) - sequenceOf(b));
    return { risk, trading: tr, replays, decided: new Map(), seen: new Set() };
  };

  const load = async (records: StageRecord<Signal>[]): Promise<SizeRiskState> => {
    // Unstorable records are refused in process; their ids (maybe not UUIDs) must not reach a query.
    const ids = [...new Set(records.filter((r) => !unstorableSignal(r.value)).map((r) => r.value.signal_id))];
    return stateFrom(await readParts(requireDb(), riskReads(ids, clock.now())));
  };

  const persist = async (items: Array<{ rec: StageRecord<Signal>; result: StageResult }>, state: SizeRiskState): Promise<void> => {
    const now = clock.now();
    const chunk: Array<{ sig: Signal; decision: Decision; outputs: StoredOutput[] }> = [];
    const recorded = new Set<string>();
    for (const { rec, result } of items) {
      if (result.kind === 'reject') continue; // refused (invalid_record): dead-lettered, nothing to record
      const id = rec.value.signal_id;
      const entry = state.decided.get(id);
      if (!entry || recorded.has(id)) continue; // replayed, or repeated in the chunk: already recorded
      // The record it was decided from (the first occurrence in the chunk), not a later copy.
      recorded.add(id);
      chunk.push({ sig: entry.sig, decision: entry.decision, outputs: entry.outputs });
    }
    if (!state.trading.change && chunk.length === 0) return;
    const noRow = await write(async (tx) => {
      if (state.trading.change) await recordTransition(tx, state.trading, now);
      return recordDecisions(tx, chunk, now);
    });
    for (const id of noRow) {
      withoutRow?.inc();
      log?.warn({ signal_id: id }, 'decided signal has no signals row (validation records every signal before it reaches signals.valid): outcome not recorded in signals, row not inserted');
    }
    if (log) {
      const counts: Record<string, number> = {};
      for (const { decision: d } of state.decided.values()) {
        const k = d.kind === 'reject' ? `rejected:${d.code}` : d.outcome;
        counts[k] = (counts[k] ?? 0) + 1;
      }
      if (state.decided.size > 0) log.info({ decided: state.decided.size, outcomes: counts }, 'signals decided');
    }
  };

  // exclusive: the runner processes partitions concurrently, but a decision must see every decision
  // persisted before it (open orders, exposure, reservations): load → process → persist of one chunk
  // at a time, the Kafka commits overlapping. Across instances of the stage (processes in one
  // consumer group, each owning some partitions) the same holds through a PostgreSQL advisory lock,
  // held in a transaction of its own from before load until persist has committed: a cap shared by
  // signals of different partitions (total exposure, open-order counts, balance) is exact whatever
  // the number of instances. Persist writes in that very transaction (`write`), so the chunk's
  // writes and the lock's release commit together: one transaction per chunk, not one for the lock
  // and one per write.
  let lockTx: CommonQueryMethods | null = null;
  const rollback = new Error('size-risk: the chunk failed; its writes are rolled back with the lock');
  const lockAcross = async <T>(decideChunk: () => Promise<T>): Promise<T> => {
    let held!: (tx: CommonQueryMethods) => void;
    let release!: (commit: boolean) => void;
    const acquired = new Promise<CommonQueryMethods>((resolve) => (held = resolve));
    const released = new Promise<boolean>((resolve) => (release = resolve));
    // The chunk's reads run outside the lock's transaction (slonik refuses pool queries from inside
    // a transaction's async context); its writes go through the transaction's connection.
    const holder = requireDb().transaction(async (tx) => {
      await tx.query(sql.typeAlias('void')`SELECT pg_advisory_xact_lock(${RISK_DECISION_LOCK}::bigint)`);
      held(tx);
      if (!(await released)) throw rollback;
    });
    let done = false;
    try {
      // The holder settles first only when taking the lock failed.
      lockTx = (await Promise.race([acquired, holder])) ?? null;
      const out = await decideChunk();
      done = true;
      return out;
    } finally {
      lockTx = null;
      // A chunk that failed anywhere, after its writes too, leaves none of them: the runner runs it
      // again from load, as if it had never been decided.
      release(done);
      await holder.catch((err: unknown) => {
        if (err !== rollback) throw err;
      });
    }
  };
  /**
   * Persist's writes in one transaction: the lock's while lockAcross holds it (the stage is
   * exclusive, so that is the chunk being persisted), else one of their own. signal-decide gives it
   * to validation too, so both stages' rows of a chunk commit with the lock's release.
   */
  const write = <T>(fn: (tx: CommonQueryMethods) => Promise<T>): Promise<T> => (lockTx ? fn(lockTx) : requireDb().transaction(fn));
  return { name, input: topics.input, inputFormat: 'avro', dlq: topics.dlq, load, process: processRecord, persist, exclusive: true, ...(deps.db ? { lockAcross } : {}), stateFrom, write };
}

// ---------------------------------------------------------------------------------------------
// persist helpers

/** JSON for jsonb columns: Dec and friends become strings, undefined disappears. */
const plain = (v: unknown): never => JSON.parse(JSON.stringify(v ?? {})) as never;

/** Signals per statement (their decisions, orders and outcomes stay far below PostgreSQL's 65,535 bind parameters). */
const SIGNALS_PER_STATEMENT = 250;

function* slices<T>(xs: T[], n: number): Generator<T[]> {
  for (let i = 0; i < xs.length; i += n) yield xs.slice(i, i + n);
}

/**
 * Record a chunk's decisions in one statement per ≤ SIGNALS_PER_STATEMENT signals (decisions, the
 * orders of the creates, the signals' outcomes, as CTEs) instead of three round trips per signal, or
 * three per chunk. Same rows, same idempotency: decisions ON CONFLICT (idempotency_key) DO NOTHING
 * (an orders row points at the decision this statement inserted, or at the one an earlier attempt
 * of the chunk recorded: the statement's snapshot sees that one, not its own), orders ON CONFLICT
 * (order_link_id) DO NOTHING, signals updated to 'decided'. Returns the signal_ids that had no
 * signals row.
 */
async function recordDecisions(tx: CommonQueryMethods, chunk: Array<{ sig: Signal; decision: Decision; outputs: StoredOutput[] }>, now: number): Promise<string[]> {
  const recorded = new Set<string>();
  for (const part of slices(chunk, SIGNALS_PER_STATEMENT)) for (const id of await recordPart(tx, part, now)) recorded.add(id);
  return chunk.map((c) => c.sig.signal_id).filter((id) => !recorded.has(id));
}

async function recordPart(tx: CommonQueryMethods, chunk: Array<{ sig: Signal; decision: Decision; outputs: StoredOutput[] }>, now: number): Promise<string[]> {
  if (chunk.length === 0) return [];
  const decisions: ReturnType<typeof sql.fragment>[] = [];
  const creates: ReturnType<typeof sql.fragment>[] = [];
  const createKeys: string[] = [];
  const outcomes: ReturnType<typeof sql.fragment>[] = [];
  for (const { sig, decision: d, outputs } of chunk) {
    const at = (d.kind === 'intents' ? d.intents[0]?.decided_at : undefined) ?? (outputs[0]?.value as OrderEvent | undefined)?.occurred_at ?? now;
    const decision = (key: string, orderLinkId: string | null, action: string, reason: string, output: StoredOutput) =>
      sql.fragment`(${key}, ${sig.signal_id}::uuid, ${orderLinkId}, ${action}, ${reason}, ${d.tradingState}, ${sql.jsonb(plain(d.inputs))},
                    ${sql.jsonb(plain(output))}, ${sql.timestamp(new Date(at))})`;
    if (d.kind === 'reject') {
      decisions.push(decision(`${sig.signal_id}:reject`, null, 'reject', d.code, outputs[0]!));
    } else {
      for (const [i, it] of d.intents.entries()) {
        const key = `${sig.signal_id}:${it.sequence}`;
        decisions.push(decision(key, it.order_link_id, it.action, it.reason, outputs[i]!));
        if (it.action !== 'create') continue;
        createKeys.push(key);
        // The intent's context as it travels on the records (with the intent's id): the tracker reads it back as is.
        const context = { ...it.signal, intent_id: it.intent_id };
        creates.push(sql.fragment`(${key}::text, ${it.order_link_id}::text, ${sig.signal_id}::uuid, ${sig.strategy_id}::text, ${it.category}::text, ${it.symbol}::text,
                  ${it.side}::text, ${it.order_type}::text, ${it.time_in_force}::text, ${it.market_unit}::text, ${it.reduce_only}::boolean, ${it.qty}::numeric,
                  ${it.price}::numeric, ${it.expires_at === null ? null : sql.timestamp(new Date(it.expires_at))}::timestamptz,
                  ${sql.timestamp(new Date(it.decided_at))}::timestamptz, ${sql.jsonb(plain(context))})`);
      }
    }
    const reason = d.kind === 'reject' ? d.code : d.reason;
    outcomes.push(sql.fragment`(${sig.signal_id}::uuid, ${d.outcome}::text, ${reason}::text, ${sql.timestamp(new Date(at))}::timestamptz)`);
  }
  // One owner per column group of `signals`: validation inserts every row (identity, payload, its
  // verdict) and this stage writes only the outcome (status 'decided', outcome, outcome_reason,
  // outcome_at) of rows that are there. A signal on signals.valid always has its row: validation
  // persists its chunk (the row) before the Kafka transaction that makes the chunk's outputs
  // visible commits (pipelines/runner.ts, persist then commit), and this stage reads read_committed.
  // A signal without one was written to signals.valid by something other than validation; its row
  // is not invented here from the record, the caller reports it.
  const orders = creates.length
    ? sql.fragment`, ord AS (
        INSERT INTO orders (order_link_id, signal_id, decision_id, strategy_id, category, symbol, side, order_type, time_in_force, market_unit,
                            reduce_only, qty, price, status, expires_at, created_at, updated_at, context)
        SELECT v.order_link_id, v.signal_id, dec.id, v.strategy_id, v.category, v.symbol, v.side, v.order_type, v.time_in_force, v.market_unit,
               v.reduce_only, v.qty, v.price, 'Intent', v.expires_at, v.decided_at, v.decided_at, v.context
        FROM (VALUES ${sql.join(creates, sql.fragment`, `)}) AS v(key, order_link_id, signal_id, strategy_id, category, symbol, side, order_type, time_in_force,
                                                               market_unit, reduce_only, qty, price, expires_at, decided_at, context)
        LEFT JOIN (SELECT id, idempotency_key FROM ins
                   UNION ALL
                   SELECT id, idempotency_key FROM decisions WHERE idempotency_key = ANY(${sql.array(createKeys, 'text')})) AS dec ON dec.idempotency_key = v.key
        ON CONFLICT (order_link_id) DO NOTHING
      )`
    : sql.fragment``;
  const updated = await tx.any(sql.type(signalStatusRow)`
    WITH ins AS (
      INSERT INTO decisions (idempotency_key, signal_id, order_link_id, action, reason, trading_state, inputs, output, at)
      VALUES ${sql.join(decisions, sql.fragment`, `)}
      ON CONFLICT (idempotency_key) DO NOTHING
      RETURNING id, idempotency_key
    )${orders}
    UPDATE signals SET status = 'decided', outcome = v.outcome, outcome_reason = v.outcome_reason, outcome_at = v.outcome_at
    FROM (VALUES ${sql.join(outcomes, sql.fragment`, `)}) AS v(signal_id, outcome, outcome_reason, outcome_at)
    WHERE signals.signal_id = v.signal_id
    RETURNING signals.signal_id::text AS signal_id`);
  return updated.map((r) => r.signal_id);
}

async function recordTransition(tx: CommonQueryMethods, t: Evaluated, now: number): Promise<void> {
  const c = t.change!;
  const moved = await tx.maybeOne(sql.type(z.object({ state: z.string() }))`
    UPDATE trading_state SET state = ${c.to}, reason = ${t.reason}, updated_by = ${name}, updated_at = ${sql.timestamp(new Date(now))}
    WHERE id AND state = ${c.from} AND kill_switch = ${t.killSwitch}
    RETURNING state`);
  if (!moved) return; // already moved (a replay) or changed meanwhile: the next chunk re-evaluates
  await tx.query(sql.typeAlias('void')`
    INSERT INTO trading_state_transitions (from_state, to_state, kill_switch, reason, actor, details, at)
    VALUES (${c.from}, ${c.to}, ${t.killSwitch}, ${t.reason ?? c.cause}, ${name}, ${sql.jsonb(plain({ cause: c.cause, day_loss: t.dayLoss }))},
            ${sql.timestamp(new Date(now))})`);
}
