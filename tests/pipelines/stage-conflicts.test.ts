// The conflict table of docs/reliability.md, the rows where a stage's record meets stored state it
// cannot be reconciled with: placement and tracking halt trading (their records are facts about money
// at the exchange), dead-letter the record with its reason, and go on with the next record; the
// process never stops. Real broker, real PostgreSQL (a database of this file's own), real simulator.
// The placement case is the crash of a second `npm start` on yesterday's database: the exchange
// hands out an orderId that a row of PostgreSQL already holds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { namespace, testKafka, createNamespace, consumeToEnd, waitCaughtUp, registryUrl, testLogger, migratedDatabase } from '../helpers.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { runStage, DLQ_HEADERS, type Stage } from '../../pipelines/runner.ts';
import { conflictSink } from '../../pipelines/stage-conflicts.ts';
import { createPlaceStage, parseConfig as placeConfig } from '../../pipelines/place.ts';
import { createTrackStage, parseConfig as trackConfig } from '../../pipelines/track.ts';
import { createBybitRest, parseConfig as restConfig } from '../../connectors/bybit-rest.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { systemClock } from '../../runtime/clock.ts';
import { sql, type DatabasePool } from '../../runtime/db.ts';
import { startSimulator, type Simulator } from '../../sim/server.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import type { DeadLetter, OrderIntent, OrderSubmission } from '../../schemas/types.ts';

let db: DatabasePool;
let dropDb: () => Promise<void>;
let sim: Simulator;
before(async () => {
  ({ pool: db, drop: dropDb } = await migratedDatabase('conflicts'));
  sim = await startSimulator({ port: 0, seed: 5 });
});
after(async () => {
  await sim.close();
  await dropDb();
});

const link = () => `om-${randomBytes(12).toString('hex').slice(0, 25)}`;
const stateRow = z.object({ state: z.string(), reason: z.string().nullable() });
const resumeTrading = () => db.query(sql.typeAlias('void')`UPDATE trading_state SET state = 'ACTIVE', reason = NULL WHERE id`);

/** Run a stage under the runner over records on its input topics until it has committed them all. */
async function runOver<I>(prefix: string, make: () => Stage<I, unknown>, records: Array<{ topic: string; value: unknown; key: string }>): Promise<{ fatal: Error[]; dead: DeadLetter[]; deadReasons: string[]; out: Map<string, unknown[]> }> {
  const kafka = testKafka();
  const cleanup = await createNamespace(kafka, prefix, 1);
  const codec = await createTopicCodec({ registryUrl, prefix });
  const stage = make();
  const p = kafka.producer();
  await p.connect();
  for (const r of records) await p.send(prefix + r.topic, [{ key: r.key, value: await codec.encode(prefix + r.topic, r.value) }]);
  await p.disconnect();
  const fatal: Error[] = [];
  const running = await runStage(stage, { kafka, codec, logger: testLogger, metrics: createMetrics(), clock: systemClock, groupId: prefix + stage.name, batchMax: 100, retryMaxMs: 500, onFatal: (e) => fatal.push(e), conflicts: conflictSink(db) });
  try {
    for (const t of new Set(records.map((r) => r.topic))) await waitCaughtUp(kafka, prefix + stage.name, prefix + t);
    const dlq = await consumeToEnd(kafka, stage.dlq, 1);
    const out = new Map<string, unknown[]>();
    for (const t of ['orders.submissions', 'orders.events']) {
      out.set(t, await Promise.all((await consumeToEnd(kafka, prefix + t, 1)).map((m) => codec.decode(m.topic, m.value!))));
    }
    return {
      fatal,
      dead: await Promise.all(dlq.map(async (m) => (await codec.decode(m.topic, m.value!)) as DeadLetter)),
      deadReasons: dlq.map((m) => m.headers[DLQ_HEADERS.reason]!),
      out,
    };
  } finally {
    await running.stop();
    await cleanup();
  }
}

test('placement: the exchange answers with an orderId another row holds → dead-lettered (state_conflict), trading HALTED, the next intent placed and recorded', async () => {
  await resumeTrading();
  const prefix = namespace('conflict-place');
  const mid = sim.exchange.mid('ETHUSDT');
  const price = (Math.floor(mid * 0.9 * 100) / 100).toFixed(2);
  const intent = (l: string): OrderIntent => {
    const sid = randomUUID();
    return { ...SAMPLES.OrderIntent, intent_id: `${sid}:1`, order_link_id: l, side: 'Buy', qty: '0.01', price, expires_at: null, decided_at: Date.now(), signal: { ...SAMPLES.OrderIntent.signal!, signal_id: sid } };
  };
  // The order is already at the exchange (an earlier run sent it) ...
  const clashing = link();
  const { orderId } = sim.placeOrder({ category: 'spot', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Limit', qty: '0.01', price, orderLinkId: clashing });
  // ... and yesterday's database gives its orderId to another order.
  await db.query(sql.typeAlias('void')`
    INSERT INTO orders (order_link_id, order_id, category, symbol, side, order_type, time_in_force, qty, price, status, context)
    VALUES (${link()}, ${orderId}, 'spot', 'ETHUSDT', 'Buy', 'Limit', 'GTC', 0.01, ${price}, 'New', '{}'::jsonb)`);
  const next = link();
  const rest = createBybitRest({ config: restConfig({ BYBIT_SIM_PORT: String(sim.port) }) });
  const r = await runOver(prefix, () => createPlaceStage({ config: placeConfig({ TOPIC_PREFIX: prefix }), rest, db, logger: testLogger }) as Stage<unknown, unknown>, [
    { topic: 'orders.intents', key: 'ETHUSDT', value: intent(clashing) },
    { topic: 'orders.intents', key: 'ETHUSDT', value: intent(next) },
  ]);
  assert.deepEqual(r.fatal, [], 'the stage did not stop (before: exit 70 on orders_order_id_key, again at every start)');
  assert.deepEqual(r.deadReasons, ['state_conflict']);
  assert.match(r.dead[0]!.reason_detail, /orders_order_id_key/);
  assert.equal(r.dead[0]!.original_offset, 0);
  const subs = r.out.get('orders.submissions') as OrderSubmission[];
  assert.deepEqual(subs.map((s) => [s.order_link_id, s.outcome]), [[next, 'accepted']], 'the next intent went on');
  assert.equal(await db.oneFirst(sql.type(z.object({ status: z.string() }))`SELECT status FROM orders WHERE order_link_id = ${next}`), 'Submitted');
  assert.equal(sim.orders().filter((o) => o.orderLinkId === clashing).length, 1, 'never sent twice');
  const st = await db.one(sql.type(stateRow)`SELECT state, reason FROM trading_state WHERE id`);
  assert.equal(st.state, 'HALTED');
  assert.match(st.reason ?? '', /^state_conflict: place could not record .*orders\.intents\/0\/0 \(state_conflict on orders_order_id_key\)/);
  const c = await db.one(sql.type(z.object({ stage: z.string(), action: z.string(), constraint_name: z.string().nullable() }))`
    SELECT stage, action, constraint_name FROM stage_conflicts WHERE source = ${`${prefix}orders.intents/0/0`}`);
  assert.deepEqual(c, { stage: 'place', action: 'halt', constraint_name: 'orders_order_id_key' });
});

test('tracking: an exchange order update whose orderId another row holds → dead-lettered (state_conflict), trading HALTED, the next fact applied', async () => {
  await resumeTrading();
  const prefix = namespace('conflict-track');
  const ours = link();
  const taken = `oid-${randomBytes(6).toString('hex')}`;
  // Our order decided (Intent, no orderId yet) and another row holding the orderId the update carries.
  await db.query(sql.typeAlias('void')`
    INSERT INTO orders (order_link_id, category, symbol, side, order_type, time_in_force, qty, price, status, context)
    VALUES (${ours}, 'linear', 'SOLUSDT', 'Buy', 'Limit', 'GTC', 1, 100, 'Intent', '{}'::jsonb)`);
  await db.query(sql.typeAlias('void')`
    INSERT INTO orders (order_link_id, order_id, category, symbol, side, order_type, time_in_force, qty, price, status, context)
    VALUES (${link()}, ${taken}, 'linear', 'SOLUSDT', 'Buy', 'Limit', 'GTC', 1, 100, 'New', '{}'::jsonb)`);
  const now = Date.now();
  const coin = `C${randomBytes(3).toString('hex').toUpperCase()}`;
  const r = await runOver(prefix, () => createTrackStage({ config: trackConfig({ TOPIC_PREFIX: prefix }), db, logger: testLogger }) as Stage<unknown, unknown>, [
    {
      topic: 'exchange.orders',
      key: 'SOLUSDT',
      value: { ...SAMPLES.ExchangeOrderUpdate, orderId: taken, orderLinkId: ours, symbol: 'SOLUSDT', category: 'linear', side: 'Buy', price: '100', qty: '1', orderStatus: 'New', cumExecQty: '0', cumExecValue: '0', cumExecFee: '0', avgPrice: '', leavesQty: '1', createdTime: now, updatedTime: now, observedAt: now },
    },
    { topic: 'exchange.wallet', key: coin, value: { ...SAMPLES.WalletBalance, coin: [{ ...SAMPLES.WalletBalance.coin[0]!, coin }], updatedTime: now, observedAt: now } },
  ]);
  assert.deepEqual(r.fatal, []);
  assert.deepEqual(r.deadReasons, ['state_conflict']);
  assert.match(r.dead[0]!.reason_detail, /orders_order_id_key/);
  assert.equal(await db.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM balances WHERE coin = ${coin}`), 1, 'the next fact applied');
  const st = await db.one(sql.type(stateRow)`SELECT state, reason FROM trading_state WHERE id`);
  assert.equal(st.state, 'HALTED');
  assert.match(st.reason ?? '', /^state_conflict: track could not record /);
});
