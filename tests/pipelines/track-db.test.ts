// The tracking stage's load / persist on the real PostgreSQL: a freshly migrated database of this
// file's own (dropped after). The runner's load → process → persist is done by hand, so "crash
// between persist and the Kafka commit" is simply running the same chunk again.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { ManualClock } from '../../runtime/clock.ts';
import { sql, type DatabasePool } from '../../runtime/db.ts';
import { migratedDatabase } from '../helpers.ts';
import type { StageRecord, StageResult } from '../../pipelines/runner.ts';
import { createTrackStage, parseConfig } from '../../pipelines/track.ts';
import { type TrackInput } from '../../pipelines/track-state.ts';
import type { ExchangeOrderUpdate, Execution, OrderEvent, OrderSubmission } from '../../schemas/types.ts';

const P = 'dbt.';
const T0 = 1_760_000_000_000;
const LINK = 'om-0000000000000000000000xyz';
let pool: DatabasePool;
const clock = new ManualClock(T0 + 60_000);
let signalId = '';

let dropDb: () => Promise<void> = async () => {};
before(async () => {
  ({ pool, drop: dropDb } = await migratedDatabase('track'));
});

after(() => dropDb());

beforeEach(async () => {
  await pool.query(sql.typeAlias('void')`TRUNCATE orders, order_state_history, order_events, invalid_transitions, executions, signals, positions, balances, tickers`);
  signalId = randomUUID();
  // What the risk stage writes at decision time: the signal and the order row in status Intent.
  await pool.query(sql.typeAlias('void')`
    INSERT INTO signals (signal_id, status, strategy_id, model_version, is_warmup, confidence, asset, side, amount, snapshot_price, signal_ts, trace_id, payload)
    VALUES (${signalId}, 'decided', 'strat-db', 'v3', false, 0.7, 'ETHUSDT', 'buy', 3000, 2990, ${sql.timestamp(new Date(T0 - 500))}, 'trace-db', '{}'::jsonb)`);
  const ctx = { signal_id: signalId, strategy_id: 'strat-db', model_version: 'v3', is_warmup: false, confidence: 0.7, trace_id: 'trace-db', snapshot_price: 2990, signal_timestamp: T0 - 500, intent_id: 'intent-1' };
  await pool.query(sql.typeAlias('void')`
    INSERT INTO orders (order_link_id, signal_id, strategy_id, category, symbol, side, order_type, time_in_force, qty, price, status, context)
    VALUES (${LINK}, ${signalId}, 'strat-db', 'linear', 'ETHUSDT', 'Buy', 'Limit', 'GTC', 1, 3000, 'Intent', ${sql.jsonb(ctx)})`);
});

let offset = 0;
const rec = (topic: string, value: TrackInput, off = offset++): StageRecord<TrackInput> => ({ value, key: 'ETHUSDT', headers: {}, topic: P + topic, partition: 0, offset: String(off), timestamp: T0, traceId: null });

const submission = (over: Partial<OrderSubmission> = {}): OrderSubmission => ({
  intent_id: 'intent-1', order_link_id: LINK, action: 'create', outcome: 'accepted', order_id: 'oid-db', ret_code: 0, ret_msg: 'OK', reason_code: null, attempts: 1,
  sent_at: T0, acked_at: T0 + 40, category: 'linear', symbol: 'ETHUSDT', side: 'Buy', order_type: 'Limit', qty: '1', price: '3000', market_unit: null, signal: null, ...over,
});
const upd = (status: string, over: Partial<ExchangeOrderUpdate> = {}): ExchangeOrderUpdate => ({
  orderId: 'oid-db', orderLinkId: LINK, symbol: 'ETHUSDT', category: 'linear', side: 'Buy', orderType: 'Limit', price: '3000', qty: '1', marketUnit: null, timeInForce: 'GTC',
  orderStatus: status, cumExecQty: '0', cumExecValue: '0', cumExecFee: '0', avgPrice: '', leavesQty: '1', rejectReason: 'EC_NoError', cancelType: null, reduceOnly: false,
  createdTime: T0 + 50, updatedTime: T0 + 50, source: 'ws', streamMessageId: null, creationTime: null, observedAt: T0 + 60, ...over,
});
const exec = (id: string, qty: string, price: string, fee: string, at: number): Execution => ({
  execId: id, orderId: 'oid-db', orderLinkId: LINK, symbol: 'ETHUSDT', category: 'linear', side: 'Buy', orderType: 'Limit', execType: 'Trade', execPrice: price, execQty: qty,
  execValue: null, execFee: fee, feeCurrency: 'USDT', feeRate: null, isMaker: true, leavesQty: null, execTime: at, source: 'ws', observedAt: at + 5, stopOrderType: null,
});

const stage = () => createTrackStage({ config: parseConfig({ TOPIC_PREFIX: P }), db: pool });

/** What the runner does for one chunk, minus Kafka: returns the events produced. */
async function chunk(recs: StageRecord<TrackInput>[]): Promise<OrderEvent[]> {
  const st = stage();
  const state = await st.load!(recs);
  const items: Array<{ rec: StageRecord<TrackInput>; result: StageResult }> = [];
  for (const r of recs) items.push({ rec: r, result: st.process(r, { state, clock }) });
  await st.persist!(items, state);
  return items.flatMap((i) => (i.result.outputs ?? []).map((o) => o.value as OrderEvent));
}

const orderRow = z.object({ status: z.string(), order_id: z.string().nullable(), cum_exec_qty: z.string(), cum_exec_fee: z.string(), avg_price: z.string().nullable(), submitted_at: z.number().nullable(), final_at: z.number().nullable(), external: z.boolean() });
const count = async (table: 'order_events' | 'order_state_history' | 'executions' | 'invalid_transitions' | 'orders') => {
  const q = {
    order_events: sql.typeAlias('count')`SELECT count(*)::int AS count FROM order_events`,
    order_state_history: sql.typeAlias('count')`SELECT count(*)::int AS count FROM order_state_history`,
    executions: sql.typeAlias('count')`SELECT count(*)::int AS count FROM executions`,
    invalid_transitions: sql.typeAlias('count')`SELECT count(*)::int AS count FROM invalid_transitions`,
    orders: sql.typeAlias('count')`SELECT count(*)::int AS count FROM orders`,
  }[table];
  return (await pool.one(q)).count;
};
const snapshot = async () => ({
  order: await pool.one(sql.type(orderRow)`SELECT status, order_id, cum_exec_qty, cum_exec_fee, avg_price, submitted_at, final_at, external FROM orders WHERE order_link_id = ${LINK}`),
  events: await count('order_events'),
  history: await count('order_state_history'),
  executions: await count('executions'),
  invalid: await count('invalid_transitions'),
  orders: await count('orders'),
});

test('a chunk applied twice (crash before the Kafka commit) re-emits the same events and changes nothing', async () => {
  const recs = [
    rec('orders.submissions', submission()),
    rec('exchange.orders', upd('New')),
    rec('exchange.executions', exec('e1', '0.4', '3000', '0.72', T0 + 100)),
    rec('exchange.executions', exec('e2', '0.6', '3005', '1.0818', T0 + 200)),
    rec('exchange.orders', upd('Filled', { updatedTime: T0 + 200, cumExecQty: '1', cumExecValue: '3003', cumExecFee: '1.8018', avgPrice: '3003', leavesQty: '0' })),
    rec('exchange.orders', upd('New', { updatedTime: T0 + 5000, cumExecQty: '1' })), // invalid: Filled → New, newer and not behind in fills
  ];
  const first = await chunk(recs);
  assert.deepEqual(first.map((e) => e.event_type), ['order_submitted', 'order_acknowledged', 'order_partially_filled', 'order_filled']);
  assert.equal(first[3]!.signal_id, signalId);
  assert.equal(first[3]!.trace_id, 'trace-db');
  assert.ok(first[3]!.slippage_bps! > 0);
  const s1 = await snapshot();
  assert.deepEqual(s1.order, { status: 'Filled', order_id: 'oid-db', cum_exec_qty: '1', cum_exec_fee: '1.8018', avg_price: '3003', submitted_at: T0, final_at: T0 + 200, external: false });
  assert.deepEqual([s1.events, s1.history, s1.executions, s1.invalid, s1.orders], [4, 4, 2, 1, 1]);

  const replay = await chunk(recs);
  assert.deepEqual(replay, first, 'same events, same ids, same order');
  assert.deepEqual(await snapshot(), s1);

  // The replayed chunk comes back longer (new records after the old ones): only the new ones apply.
  const longer = await chunk([...recs, rec('exchange.orders', upd('Filled', { source: 'rest', updatedTime: T0 + 9000, cumExecQty: '1', cumExecValue: '3003', cumExecFee: '1.8018', avgPrice: '3003', leavesQty: '0' }))]);
  assert.deepEqual(longer, first, 'a second Filled adds nothing');
  assert.deepEqual((await snapshot()).events, 4);
});

test('chunk after chunk: the next chunk continues from the stored state (sequence, status, duplicate execIds)', async () => {
  const a = await chunk([rec('orders.submissions', submission()), rec('exchange.orders', upd('New')), rec('exchange.executions', exec('e1', '0.4', '3000', '0.72', T0 + 100))]);
  assert.deepEqual(a.map((e) => e.sequence), [1, 2, 3]);
  const b = await chunk([
    rec('exchange.executions', exec('e1', '0.4', '3000', '0.72', T0 + 100)), // duplicate of a stored execution
    rec('exchange.orders', upd('New', { source: 'rest', updatedTime: T0 + 60 })), // REST snapshot older than the fill
    rec('exchange.executions', exec('e2', '0.6', '3005', '1.0818', T0 + 200)),
  ]);
  assert.deepEqual(b.map((e) => [e.event_type, e.sequence, e.filled_qty, e.fees]), [['order_filled', 4, '1', '1.8018']]);
  const s = await snapshot();
  assert.equal(s.order.status, 'Filled');
  assert.equal(s.executions, 2);
});

test('an amend shown and then overtaken by a later one, its submission in a later chunk: late after the reload too (the time of the terms change is stored)', async () => {
  const amend = (intent: string, price: string, sentAt: number) => submission({ intent_id: intent, action: 'amend', qty: null, price, sent_at: sentAt, acked_at: sentAt + 10 });
  const a = await chunk([
    rec('orders.submissions', submission()),
    rec('exchange.orders', upd('New')),
    rec('exchange.orders', upd('New', { updatedTime: T0 + 75, price: '2990' })),
    rec('exchange.orders', upd('New', { updatedTime: T0 + 95, price: '2980' })),
    rec('exchange.orders', upd('PartiallyFilled', { updatedTime: T0 + 120, price: '2980', cumExecQty: '0.4', cumExecValue: '1192', cumExecFee: '0.7', avgPrice: '2980', leavesQty: '0.6' })),
  ]);
  assert.deepEqual(a.map((e) => [e.event_type, e.price]), [['order_submitted', '3000'], ['order_acknowledged', '3000'], ['order_amended', '2990'], ['order_amended', '2980'], ['order_partially_filled', '2980']]);
  const stored = await pool.one(sql.type(z.object({ terms_update_ms: z.number().nullable(), last_exchange_update_ms: z.number().nullable() }))`SELECT terms_update_ms, last_exchange_update_ms FROM orders WHERE order_link_id = ${LINK}`);
  assert.deepEqual(stored, { terms_update_ms: T0 + 95, last_exchange_update_ms: T0 + 120 }, 'the fill moved the last update, not the terms');
  // The first amend's submission, in a chunk of its own (a new load): overtaken, no event.
  assert.deepEqual(await chunk([rec('orders.submissions', amend('intent-2', '2990', T0 + 70))]), []);
  assert.equal((await snapshot()).order.status, 'PartiallyFilled');
  // An amend sent after the last terms change whose terms are not shown: pending, as before.
  const later = await chunk([rec('orders.submissions', amend('intent-4', '2970', T0 + 130))]);
  assert.deepEqual(later.map((e) => [e.event_type, e.status, e.reason_code]), [['other', 'PendingAmend', 'amend_pending']]);
});

test('the placement stage marked the row Submitted first: its submission still yields one order_submitted', async () => {
  await pool.query(sql.typeAlias('void')`UPDATE orders SET status = 'Submitted', order_id = 'oid-db', submitted_at = ${sql.timestamp(new Date(T0))} WHERE order_link_id = ${LINK}`);
  const ev = await chunk([rec('orders.submissions', submission())]);
  assert.deepEqual(ev.map((e) => [e.event_type, e.previous_status, e.status]), [['order_submitted', 'Intent', 'Submitted']]);
  assert.deepEqual(await chunk([rec('orders.submissions', submission())]), [], 'a second copy of the submission (another record) is a duplicate');
});

test('fills before the order exists, an external order, positions and balances', async () => {
  const orphan = await chunk([rec('exchange.executions', { ...exec('x1', '0.5', '100', '0.05', T0 + 10), orderId: 'ext-1', orderLinkId: '', symbol: 'SOLUSDT' })]);
  assert.deepEqual(orphan, []);
  const ev = await chunk([rec('exchange.orders', upd('PartiallyFilled', { orderId: 'ext-1', orderLinkId: '', symbol: 'SOLUSDT', price: '100', qty: '2', cumExecQty: '0.5', cumExecValue: '50', cumExecFee: '0.05', avgPrice: '100', leavesQty: '1.5', updatedTime: T0 + 10 }))]);
  assert.deepEqual(ev.map((e) => [e.event_type, e.status, e.external, e.filled_qty]), [['order_adopted', 'PartiallyFilled', true, '0.5']]);
  const ext = await pool.one(sql.type(z.object({ external: z.boolean(), order_link_id: z.string().nullable(), cum_exec_qty: z.string() }))`SELECT external, order_link_id, cum_exec_qty FROM orders WHERE order_id = 'ext-1'`);
  assert.deepEqual(ext, { external: true, order_link_id: null, cum_exec_qty: '0.5' });

  const posn = (size: string, at: number) => ({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', size, positionIdx: 0, avgPrice: '3000', positionValue: '3000', markPrice: '3001', liqPrice: null, leverage: '1', positionIM: null, unrealisedPnl: '1', cumRealisedPnl: '0', positionStatus: 'Normal', updatedTime: at, source: 'ws' as const, observedAt: at });
  const wallet = (bal: string, at: number) => ({ accountType: 'UNIFIED', totalEquity: null, totalWalletBalance: null, totalAvailableBalance: null, totalMarginBalance: null, coin: [{ coin: 'USDT', equity: bal, walletBalance: bal, free: null, locked: '100', availableToWithdraw: null, usdValue: bal, unrealisedPnl: null, cumRealisedPnl: null, totalOrderIM: null, totalPositionIM: null }], updatedTime: at, source: 'ws' as const, observedAt: at });
  await chunk([rec('exchange.positions', posn('2', T0 + 20)), rec('exchange.wallet', wallet('900', T0 + 20))]);
  await chunk([rec('exchange.positions', posn('1', T0 + 10)), rec('exchange.wallet', wallet('1000', T0 + 10))]); // older: ignored
  const p = await pool.one(sql.type(z.object({ size: z.string(), updated_ms: z.number() }))`SELECT size, updated_ms FROM positions WHERE category = 'linear' AND symbol = 'ETHUSDT'`);
  assert.deepEqual(p, { size: '2', updated_ms: T0 + 20 });
  const b = await pool.one(sql.type(z.object({ wallet_balance: z.string(), available: z.string() }))`SELECT wallet_balance, available FROM balances WHERE coin = 'USDT'`);
  assert.deepEqual(b, { wallet_balance: '900', available: '800' });
});

test('a concurrent tracker that changed the order meanwhile makes persist retriable', async () => {
  const st = stage();
  const recs = [rec('orders.submissions', submission())];
  const state = await st.load!(recs);
  const items = recs.map((r) => ({ rec: r, result: st.process(r, { state, clock }) }));
  // Someone else applies a fill between this chunk's load and persist.
  await chunk([rec('exchange.orders', upd('PartiallyFilled', { cumExecQty: '0.2', cumExecValue: '600', cumExecFee: '0.1', avgPrice: '3000', leavesQty: '0.8', updatedTime: T0 + 70 }))]);
  await assert.rejects(st.persist!(items, state), (err: Error & { kind?: string }) => err.name === 'RetriableError' && err.kind === 'retriable');
  // The retried chunk (fresh load) applies cleanly.
  const ev = await chunk(recs);
  assert.deepEqual(ev, [], 'the submission is late now: the exchange state is ahead');
  assert.equal((await snapshot()).order.submitted_at, T0);
});
