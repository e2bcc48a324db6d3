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
import { findSlot, type TrackInput } from '../../pipelines/track-state.ts';
import { bookKey } from '../../pipelines/pnl-sql.ts';
import { Dec } from '../../runtime/decimal.ts';
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
  await pool.query(sql.typeAlias('void')`TRUNCATE orders, order_state_history, order_events, invalid_transitions, executions, signals, positions, balances, tickers, pnl_books, pnl_days RESTART IDENTITY`);
  await pool.query(sql.typeAlias('void')`
    INSERT INTO signals (signal_id, status, strategy_id, model_version, is_warmup, confidence, asset, side, amount, snapshot_price, signal_ts, trace_id, payload)
    VALUES (${SIGNAL}, 'decided', 'strat-b', 'v3', false, 0.7, 'ETHUSDT', 'buy', 3000, 2990, ${sql.timestamp(new Date(T0 - 500))}, 'trace-b', '{}'::jsonb)`);
  for (const [i, l] of links.entries()) {
    // Each order a strategy of its own past the first two (the default pair shares one): its fills go
    // to a P&L book of their own, so a chunk of more orders also writes more books.
    const strategy = i < 2 ? 'strat-b' : `strat-${i}`;
    const ctx = { signal_id: SIGNAL, strategy_id: strategy, model_version: 'v3', is_warmup: false, confidence: 0.7, trace_id: 'trace-b', snapshot_price: 2990, signal_timestamp: T0 - 500, intent_id: `intent-${l}` };
    await pool.query(sql.typeAlias('void')`
      INSERT INTO orders (order_link_id, signal_id, strategy_id, category, symbol, side, order_type, time_in_force, qty, price, status, context)
      VALUES (${l}, ${SIGNAL}, ${strategy}, 'linear', 'ETHUSDT', 'Buy', 'Limit', 'GTC', 1, 3000, 'Intent', ${sql.jsonb(ctx)})`);
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

test('load reads in one statement exactly what the row parsers give: numerics to the last digit, timestamps cut to the millisecond', async () => {
  await reset();
  // The stored values a float or a rounding would change: long decimals, microseconds.
  await pool.query(sql.typeAlias('void')`
    UPDATE orders SET order_id = 'oid-1', status = 'PartiallyFilled', qty = 0.123456789012345678901, cum_exec_qty = 0.000000000000000001,
           cum_exec_value = 123456789012.123456789, cum_exec_fee = -0.00000001, avg_price = 2999.999999999999, leaves_qty = 0.1234567890123456789,
           last_exchange_update_ms = ${T0 + 77}, submitted_at = '2026-12-06 15:59:01.950999+00', acknowledged_at = '2026-12-06 15:59:01.000001+00',
           first_fill_at = '2026-12-06 15:59:02.999999+00', final_at = NULL, reject_ret_code = 110007, reject_reason = 'because'
    WHERE order_link_id = ${LINK}`);
  const rowId = await pool.oneFirst(sql.type(z.object({ id: z.number() }))`SELECT id FROM orders WHERE order_link_id = ${LINK}`);
  await pool.query(sql.typeAlias('void')`
    INSERT INTO executions (exec_id, order_link_id, order_id, category, symbol, side, exec_qty, exec_price, exec_value, exec_fee, fee_currency, is_maker, exec_time)
    VALUES ('xa', ${LINK}, 'oid-1', 'linear', 'ETHUSDT', 'Buy', 0.000000000000000001, 3000.123456789, NULL, 0.00000001, 'USDT', true, '2026-12-06 15:59:02.123999+00'),
           ('xb', ${LINK}, 'oid-1', 'linear', 'ETHUSDT', 'Buy', 0.1, 2999.5, 299.95, 0.1, 'USDT', false, '2026-12-06 15:59:03.5+00'),
           ('xc', NULL, 'ext-9', 'linear', 'ETHUSDT', 'Sell', 2, 10.000000000000000001, NULL, 0, NULL, false, '2026-12-06 15:59:04.000999+00')`);
  const source = `${P}exchange.orders/0/${offset}`;
  await pool.query(sql.typeAlias('void')`
    INSERT INTO order_events (event_id, order_row_id, order_link_id, order_id, sequence, event_type, status, cause, cause_id, source_record, occurred_at, payload)
    VALUES ('ev-1', ${rowId}, ${LINK}, 'oid-1', 1, 'order_acknowledged', 'New', 'exchange', NULL, 'elsewhere/0/1', ${T0 + 1}, '{"n":1}'::jsonb),
           ('ev-2', ${rowId}, ${LINK}, 'oid-1', 2, 'order_amend_pending', 'PendingAmend', 'intent', 'intent-amend', ${source}, ${T0 + 2}, '{"n":2}'::jsonb)`);

  // A P&L book of the executions' symbol (read in the same statement) and of another symbol (not read).
  await pool.query(sql.typeAlias('void')`
    INSERT INTO pnl_books (category, symbol, strategy_id, qty, avg_entry, realised, fees, funding, version)
    VALUES ('linear', 'ETHUSDT', 's-long', -0.000000000000000000123, 2999.123456789012345678, -1.000000000000000001, 0.1, 0.000000000000000007, 7),
           ('linear', 'SOLUSDT', 's-long', 1, 150, 0, 0, 0, 1)
    ON CONFLICT (category, symbol, strategy_id) DO NOTHING`);

  const recs = [rec('exchange.orders', upd(LINK, 'oid-1', 'New')), rec('exchange.executions', exec('', 'ext-9', 'xc', '2', '10', '0', T0)), rec('exchange.executions', exec(LINK, 'oid-1', 'xnew', '1', '1', '0', T0))];
  const state = await stage().load!(recs);
  await pool.query(sql.typeAlias('void')`DELETE FROM pnl_books WHERE strategy_id = 's-long'`);
  assert.deepEqual(
    [...state.books].filter(([, b]) => b.book.strategy === 's-long'),
    [[bookKey('linear', 'ETHUSDT', 's-long'), { book: { category: 'linear', symbol: 'ETHUSDT', strategy: 's-long', qty: '-0.000000000000000000123', avgEntry: '2999.123456789012345678', realised: '-1.000000000000000001', fees: '0.1', funding: '0.000000000000000007' }, version: 7 }]],
    "the executions' symbol's book, exact, with its version; no other symbol's",
  );

  // The oracle: the same columns read plainly, through the pool's own type parsers.
  const o = await pool.one(sql.type(z.object({ qty: z.string(), cum_exec_qty: z.string(), cum_exec_value: z.string(), cum_exec_fee: z.string(), avg_price: z.string(), leaves_qty: z.string(), submitted_at: z.number(), acknowledged_at: z.number(), first_fill_at: z.number() }))`
    SELECT qty, cum_exec_qty, cum_exec_value, cum_exec_fee, avg_price, leaves_qty, submitted_at, acknowledged_at, first_fill_at FROM orders WHERE order_link_id = ${LINK}`);
  const sums = await pool.any(sql.type(z.object({ order_id: z.string(), qty: z.string(), value: z.string(), fee: z.string(), first_at: z.number() }))`
    SELECT order_id, sum(exec_qty) AS qty, sum(COALESCE(exec_value, exec_qty * exec_price)) AS value, sum(exec_fee) AS fee, min(exec_time) AS first_at FROM executions GROUP BY order_id ORDER BY order_id`);
  assert.equal(o.submitted_at % 1000, 950, 'the oracle itself truncates (…01.950999 → 950)');
  const slot = findSlot(state, LINK, 'oid-1');
  assert.ok(slot !== undefined, 'the order row is loaded');
  const t = state.orders[slot]!;
  assert.deepEqual(
    { qty: t.qty, cum: t.cum, avg: t.avgPrice, leaves: t.leavesQty, submitted: t.submittedAt, acked: t.acknowledgedAt, firstFill: t.firstFillAt, final: t.finalAt, lastUpdate: t.lastUpdateMs, ret: t.rejectRetCode, reason: t.rejectReason },
    { qty: o.qty, cum: { qty: o.cum_exec_qty, value: o.cum_exec_value, fee: o.cum_exec_fee }, avg: o.avg_price, leaves: o.leaves_qty, submitted: o.submitted_at, acked: o.acknowledged_at, firstFill: o.first_fill_at, final: null, lastUpdate: T0 + 77, ret: 110007, reason: 'because' },
  );
  assert.equal(t.qty, '0.123456789012345678901');
  const mine = sums.find((x) => x.order_id === 'oid-1')!;
  assert.deepEqual(t.execs, { qty: Dec.of(mine.qty).toString(), value: Dec.of(mine.value).toString(), fee: Dec.of(mine.fee).toString() });
  assert.equal(t.feeCurrency, 'USDT');
  const ext = sums.find((x) => x.order_id === 'ext-9')!;
  assert.deepEqual(state.orphanExecs.get('ext-9'), { qty: Dec.of(ext.qty).toString(), value: Dec.of(ext.value).toString(), fee: Dec.of(ext.fee).toString(), feeCurrency: null, firstAt: ext.first_at }, 'an execution of an order without a row: its sums, exact');
  assert.equal(t.sequence, 2);
  assert.deepEqual([...t.eventIds].sort(), ['ev-1', 'ev-2']);
  assert.deepEqual(t.pending, { action: 'amend', intentId: 'intent-amend', since: T0 + 2 });
  assert.deepEqual([...state.seenExecIds], ['xc'], 'execIds already stored (xnew is new)');
  assert.deepEqual(state.replays.get(source), [{ n: 2 }], 'the events recorded for this very record');
  assert.equal(state.replays.size, 1);
});

test('persist sends the same number of statements for 2 orders as for 40 (and 1 P&L book as for 39, new or stored)', async () => {
  const perOrder = (link: string, oid: string, at: number) => [
    rec('orders.submissions', submission(link, oid, { sent_at: at })),
    rec('exchange.orders', upd(link, oid, 'New', { updatedTime: at + 50 })),
    rec('exchange.executions', exec(link, oid, `e-${oid}`, '1', '3000', '0.1', at + 60)),
    rec('exchange.orders', upd(link, oid, 'Filled', { updatedTime: at + 60, cumExecQty: '1', cumExecValue: '3000', cumExecFee: '0.1', avgPrice: '3000', leavesQty: '0' })),
    rec('exchange.orders', upd('', `ext-${oid}`, 'New', { updatedTime: at + 70 })), // adopted: a new row
  ];
  const persistStatements = async (n: number, again = false): Promise<{ statements: number; events: number }> => {
    const links = Array.from({ length: n }, (_, i) => `om-${String(n).padStart(5, '0')}${String(i).padStart(20, '0')}`);
    // again: the same orders' books, stored by a first chunk, written again by a second one's fills.
    if (!again) await reset(links);
    const recs = again
      ? links.map((l, i) => rec('exchange.executions', exec(l, `oid-${i}`, `e2-oid-${i}`, '0.5', '3010', '0.05', T0 + 1000 + i)))
      : links.flatMap((l, i) => perOrder(l, `oid-${i}`, T0 + i));
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
  const smallAgain = await persistStatements(2, true);
  const large = await persistStatements(40);
  const largeAgain = await persistStatements(40, true);
  assert.equal(large.events, 20 * small.events);
  const books = await pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM pnl_books`);
  assert.equal(books, 39, 'strat-b (the first two orders) and 38 strategies of their own (the adopted orders have no fills)');
  assert.ok(small.statements > 0 && small.statements <= 9, `statements: ${small.statements}`); // one per table at most
  assert.equal(large.statements, small.statements, `statements: ${small.statements} for 2 orders, ${large.statements} for 40`);
  assert.equal(largeAgain.statements, smallAgain.statements, `books written again: ${smallAgain.statements} statements for 1, ${largeAgain.statements} for 39`);
});
