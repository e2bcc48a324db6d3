// The tracking stage's batched persist on the real PostgreSQL (a freshly migrated database of this
// file's own, dropped after): a chunk where the same orders change several times, replayed, must
// leave exactly the rows and emit exactly the events that feeding its records one per chunk does;
// and persist costs the same number of statements whatever the chunk's size.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Interceptor } from 'slonik';
import { ManualClock } from '../../runtime/clock.ts';
import { sql, type DatabasePool } from '../../runtime/db.ts';
import { migratedDatabase } from '../helpers.ts';
import type { StageRecord, StageResult } from '../../pipelines/runner.ts';
import { createTrackStage, parseConfig } from '../../pipelines/track.ts';
import { type TrackInput } from '../../pipelines/track-state.ts';
import type { ExchangeOrderUpdate, Execution, OrderSubmission, Position, WalletBalance } from '../../schemas/types.ts';

const P = 'dbb.';
const T0 = 1_760_000_000_000;
const LINK = 'om-0000000000000000000000abc';
const LINK2 = 'om-0000000000000000000000def';
const SIGNAL = randomUUID();
let pool: DatabasePool;
const clock = new ManualClock(T0 + 60_000);
/** Statements sent while `counting` is on (the interceptor sees every query of the pool). */
let counting = false;
let statements = 0;
const counter: Interceptor = {
  name: 'count-statements',
  beforeQueryExecution: () => {
    if (counting) statements++;
    return null;
  },
};

let dropDb: () => Promise<void> = async () => {};
before(async () => {
  ({ pool, drop: dropDb } = await migratedDatabase('track_batch', { interceptors: [counter] }));
});

after(() => dropDb());

/** Empty tables (ids restart), then what the risk stage writes at decision time: signal and order rows in status Intent. */
async function reset(links: string[] = [LINK, LINK2]): Promise<void> {
  await pool.query(sql.typeAlias('void')`TRUNCATE orders, order_state_history, order_events, invalid_transitions, executions, signals, positions, balances, tickers RESTART IDENTITY`);
  await pool.query(sql.typeAlias('void')`
    INSERT INTO signals (signal_id, status, strategy_id, model_version, is_warmup, confidence, asset, side, amount, snapshot_price, signal_ts, trace_id, payload)
    VALUES (${SIGNAL}, 'decided', 'strat-b', 'v3', false, 0.7, 'ETHUSDT', 'buy', 3000, 2990, ${sql.timestamp(new Date(T0 - 500))}, 'trace-b', '{}'::jsonb)`);
  for (const l of links) {
    const ctx = { signal_id: SIGNAL, strategy_id: 'strat-b', model_version: 'v3', is_warmup: false, confidence: 0.7, trace_id: 'trace-b', snapshot_price: 2990, signal_timestamp: T0 - 500, intent_id: `intent-${l}` };
    await pool.query(sql.typeAlias('void')`
      INSERT INTO orders (order_link_id, signal_id, strategy_id, category, symbol, side, order_type, time_in_force, qty, price, status, context)
      VALUES (${l}, ${SIGNAL}, 'strat-b', 'linear', 'ETHUSDT', 'Buy', 'Limit', 'GTC', 1, 3000, 'Intent', ${sql.jsonb(ctx)})`);
  }
}

let offset = 0;
const rec = (topic: string, value: TrackInput): StageRecord<TrackInput> => ({ value, key: 'ETHUSDT', headers: {}, topic: P + topic, partition: 0, offset: String(offset++), timestamp: T0, traceId: null });

const submission = (link: string, oid: string, over: Partial<OrderSubmission> = {}): OrderSubmission => ({
  intent_id: `intent-${link}`, order_link_id: link, action: 'create', outcome: 'accepted', order_id: oid, ret_code: 0, ret_msg: 'OK', reason_code: null, attempts: 1,
  sent_at: T0, acked_at: T0 + 40, category: 'linear', symbol: 'ETHUSDT', side: 'Buy', order_type: 'Limit', qty: '1', price: '3000', market_unit: null, signal: null, ...over,
});
const upd = (link: string, oid: string, status: string, over: Partial<ExchangeOrderUpdate> = {}): ExchangeOrderUpdate => ({
  orderId: oid, orderLinkId: link, symbol: 'ETHUSDT', category: 'linear', side: 'Buy', orderType: 'Limit', price: '3000', qty: '1', marketUnit: null, timeInForce: 'GTC',
  orderStatus: status, cumExecQty: '0', cumExecValue: '0', cumExecFee: '0', avgPrice: '', leavesQty: '1', rejectReason: 'EC_NoError', cancelType: null, reduceOnly: false,
  createdTime: T0 + 50, updatedTime: T0 + 50, source: 'ws', streamMessageId: null, creationTime: null, observedAt: T0 + 60, ...over,
});
const exec = (link: string, oid: string, id: string, qty: string, price: string, fee: string, at: number): Execution => ({
  execId: id, orderId: oid, orderLinkId: link, symbol: 'ETHUSDT', category: 'linear', side: 'Buy', orderType: 'Limit', execType: 'Trade', execPrice: price, execQty: qty,
  execValue: null, execFee: fee, feeCurrency: 'USDT', feeRate: null, isMaker: true, leavesQty: null, execTime: at, source: 'ws', observedAt: at + 5, stopOrderType: null,
});
const posn = (size: string, at: number): Position => ({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', size, positionIdx: 0, avgPrice: '3000', positionValue: '3000', markPrice: '3001', liqPrice: null, leverage: '1', positionIM: null, unrealisedPnl: '1', cumRealisedPnl: '0', positionStatus: 'Normal', updatedTime: at, source: 'ws', observedAt: at });
const wallet = (bal: string, at: number): WalletBalance => ({ accountType: 'UNIFIED', totalEquity: null, totalWalletBalance: null, totalAvailableBalance: null, totalMarginBalance: null, coin: [{ coin: 'USDT', equity: bal, walletBalance: bal, free: null, locked: '100', availableToWithdraw: null, usdValue: bal, unrealisedPnl: null, cumRealisedPnl: null, totalOrderIM: null, totalPositionIM: null }], updatedTime: at, source: 'ws', observedAt: at });

const stage = () => createTrackStage({ config: parseConfig({ TOPIC_PREFIX: P }), db: pool });

/** What the runner does for one chunk, minus Kafka: the results (outputs or dead letters) in order. */
async function chunk(recs: StageRecord<TrackInput>[]): Promise<StageResult[]> {
  const st = stage();
  const state = await st.load!(recs);
  const items = recs.map((r) => ({ rec: r, result: st.process(r, { state, clock }) }));
  await st.persist!(items, state);
  return items.map((i) => i.result);
}

/** Every row the stage writes, ids aside (order rows are named by their link / exchange id). */
async function rows(): Promise<Record<string, unknown>> {
  const any = z.record(z.unknown());
  const q = async (query: Parameters<typeof pool.any>[0]) => [...(await pool.any(query))];
  return {
    orders: await q(sql.type(any)`
      SELECT order_link_id, order_id, signal_id::text, strategy_id, category, symbol, side, order_type, time_in_force, market_unit, reduce_only, qty::text, price::text,
             status, cum_exec_qty::text, cum_exec_value::text, cum_exec_fee::text, avg_price::text, leaves_qty::text, external, last_exchange_update_ms,
             submitted_at, acknowledged_at, first_fill_at, final_at, reject_ret_code, reject_reason, context
      FROM orders ORDER BY order_link_id NULLS LAST, order_id`),
    events: await q(sql.type(any)`
      SELECT e.event_id, o.order_link_id AS row_link, o.order_id AS row_order_id, e.order_link_id, e.order_id, e.sequence, e.event_type, e.status, e.cause, e.cause_id,
             e.source_record, e.occurred_at, e.payload
      FROM order_events e JOIN orders o ON o.id = e.order_row_id ORDER BY e.id`),
    history: await q(sql.type(any)`
      SELECT o.order_link_id AS row_link, o.order_id AS row_order_id, h.order_link_id, h.order_id, h.from_status, h.to_status, h.cause, h.event_id, h.exchange_update_ms, h.details
      FROM order_state_history h JOIN orders o ON o.id = h.order_row_id ORDER BY h.id`),
    executions: await q(sql.type(any)`
      SELECT exec_id, order_link_id, order_id, category, symbol, side, exec_type, exec_qty::text, exec_price::text, exec_value::text, exec_fee::text, fee_currency, is_maker,
             exec_time, source, raw
      FROM executions ORDER BY exec_id`),
    invalid: await q(sql.type(any)`
      SELECT o.order_link_id AS row_link, o.order_id AS row_order_id, i.order_link_id, i.order_id, i.from_status, i.to_status, i.cause, i.event_id, i.reason, i.payload
      FROM invalid_transitions i LEFT JOIN orders o ON o.id = i.order_row_id ORDER BY i.id`),
    positions: await q(sql.type(any)`
      SELECT category, symbol, side, size::text, avg_price::text, mark_price::text, position_value::text, leverage::text, liq_price::text, unrealised_pnl::text,
             cum_realised_pnl::text, updated_ms
      FROM positions ORDER BY category, symbol`),
    balances: await q(sql.type(any)`SELECT coin, wallet_balance::text, available::text, locked::text, equity::text, usd_value::text, updated_ms FROM balances ORDER BY coin`),
    tickers: await q(sql.type(any)`
      SELECT category, symbol, bid::text, ask::text, book_ts, last::text, mark_price::text, volume_24h::text, turnover_24h::text, ts FROM tickers ORDER BY category, symbol`),
  };
}

/** Two of our orders changing several times, an external order, an order whose fill comes first, disorder, duplicates, an invalid transition, unstorable records, positions and balances. */
function script(): StageRecord<TrackInput>[] {
  const X = (id: string, q: string, p: string, f: string, at: number) => exec(LINK, 'oid-1', id, q, p, f, at);
  return [
    rec('orders.submissions', submission(LINK, 'oid-1')),
    rec('exchange.executions', exec('', 'ext-3', 'x3', '0.5', '100', '0.05', T0 + 5)), // fill of an order not seen yet
    rec('exchange.orders', upd(LINK, 'oid-1', 'New')),
    rec('orders.submissions', submission(LINK2, 'oid-2', { sent_at: T0 + 1, acked_at: T0 + 30 })),
    rec('exchange.executions', X('e1', '0.4', '3000', '0.72', T0 + 100)),
    rec('exchange.orders', upd(LINK, 'oid-1', 'PartiallyFilled', { updatedTime: T0 + 100, cumExecQty: '0.4', cumExecValue: '1200', cumExecFee: '0.72', avgPrice: '3000', leavesQty: '0.6' })),
    rec('exchange.positions', posn('0.4', T0 + 100)),
    rec('exchange.orders', upd('', 'ext-2', 'New', { symbol: 'ETHUSDT', price: '2900', qty: '2', leavesQty: '2', updatedTime: T0 + 70 })),
    rec('exchange.executions', X('e1', '0.4', '3000', '0.72', T0 + 100)), // duplicate execId
    rec('exchange.orders', upd(LINK, 'oid-1', 'New', { source: 'rest', updatedTime: T0 + 60 })), // REST snapshot older than the fill
    rec('exchange.orders', upd(LINK2, 'oid-2', 'New', { updatedTime: T0 + 35 })),
    rec('exchange.wallet', wallet('900', T0 + 100)),
    rec('exchange.orders', { ...upd(LINK2, 'oid-2', 'New'), price: 'abc' }), // unstorable: dead-lettered
    rec('exchange.executions', X('e2', '0.6', '3005', '1.0818', T0 + 200)),
    rec('exchange.orders', upd('', 'ext-3', 'PartiallyFilled', { symbol: 'SOLUSDT', price: '100', qty: '2', cumExecQty: '0.5', cumExecValue: '50', cumExecFee: '0.05', avgPrice: '100', leavesQty: '1.5', updatedTime: T0 + 10 })),
    rec('exchange.orders', upd(LINK, 'oid-1', 'Filled', { updatedTime: T0 + 200, cumExecQty: '1', cumExecValue: '3003', cumExecFee: '1.8018', avgPrice: '3003', leavesQty: '0' })),
    rec('exchange.orders', upd('', 'ext-2', 'Cancelled', { symbol: 'ETHUSDT', price: '2900', qty: '2', leavesQty: '0', updatedTime: T0 + 300 })),
    rec('exchange.positions', posn('1', T0 + 200)),
    rec('exchange.positions', posn('0.7', T0 + 150)), // older than the one before: ignored
    rec('exchange.orders', upd(LINK, 'oid-1', 'New', { updatedTime: T0 + 5000, cumExecQty: '1' })), // invalid: Filled → New
    rec('exchange.orders', upd(LINK2, 'oid-2', 'Cancelled', { updatedTime: T0 + 400, leavesQty: '0' })),
    rec('exchange.wallet', wallet('800', T0 + 300)),
  ];
}

const outcome = (rs: StageResult[]) => rs.map((r) => (r.kind === 'ok' ? { ok: r.outputs.map((o) => o.value) } : { reject: r.code }));

test('one chunk with several updates of the same orders, and its replay, give the rows and events of one record per chunk', async () => {
  const recs = script();

  await reset();
  const one: StageResult[] = [];
  for (const r of recs) one.push(...(await chunk([r])));
  const perRecord = await rows();

  await reset();
  const batched = await chunk(recs);
  const afterBatch = await rows();
  const replayed = await chunk(recs);
  const afterReplay = await rows();

  // The script is not trivial: every kind of effect is there.
  const events = outcome(one).flatMap((o) => ('ok' in o ? o.ok : []));
  assert.ok(events.length >= 9, `events: ${events.length}`);
  assert.deepEqual(
    outcome(one).filter((o) => 'reject' in o),
    [{ reject: 'invalid_record' }],
  );
  assert.equal((perRecord.invalid as unknown[]).length, 1);
  assert.equal((perRecord.orders as unknown[]).length, 4);
  assert.equal((perRecord.executions as unknown[]).length, 3);
  // Tickers are the ticker projection's (tests/pipelines/ticker-projection.test.ts holds this
  // script's ticker records, batch against one at a time): tracking writes none.
  assert.deepEqual(perRecord.tickers, []);

  assert.deepEqual(outcome(batched), outcome(one), 'same events (ids, sequences, payloads) and the same dead letter, record by record');
  assert.deepEqual(afterBatch, perRecord, 'same rows');
  assert.deepEqual(outcome(replayed), outcome(batched), 'the replay re-emits the same events');
  assert.deepEqual(afterReplay, afterBatch, 'the replay changes nothing');
});

test('persist sends the same number of statements for 2 orders as for 40', async () => {
  const perOrder = (link: string, oid: string, at: number) => [
    rec('orders.submissions', submission(link, oid, { sent_at: at })),
    rec('exchange.orders', upd(link, oid, 'New', { updatedTime: at + 50 })),
    rec('exchange.executions', exec(link, oid, `e-${oid}`, '1', '3000', '0.1', at + 60)),
    rec('exchange.orders', upd(link, oid, 'Filled', { updatedTime: at + 60, cumExecQty: '1', cumExecValue: '3000', cumExecFee: '0.1', avgPrice: '3000', leavesQty: '0' })),
    rec('exchange.orders', upd('', `ext-${oid}`, 'New', { updatedTime: at + 70 })), // adopted: a new row
  ];
  const persistStatements = async (n: number): Promise<{ statements: number; events: number }> => {
    const links = Array.from({ length: n }, (_, i) => `om-${String(n).padStart(5, '0')}${String(i).padStart(20, '0')}`);
    await reset(links);
    const recs = links.flatMap((l, i) => perOrder(l, `oid-${i}`, T0 + i));
    const st = stage();
    const state = await st.load!(recs);
    const items = recs.map((r) => ({ rec: r, result: st.process(r, { state, clock }) }));
    statements = 0;
    counting = true;
    try {
      await st.persist!(items, state);
    } finally {
      counting = false;
    }
    return { statements, events: items.reduce((k, i) => k + (i.result.outputs?.length ?? 0), 0) };
  };
  const small = await persistStatements(2);
  const large = await persistStatements(40);
  assert.equal(large.events, 20 * small.events);
  assert.ok(small.statements > 0 && small.statements <= 9, `statements: ${small.statements}`); // one per table at most
  assert.equal(large.statements, small.statements, `statements: ${small.statements} for 2 orders, ${large.statements} for 40`);
});
