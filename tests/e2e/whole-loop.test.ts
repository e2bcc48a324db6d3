// The whole loop, started for a bounded time on the real stack: the model service in warm-up emits
// signals to RabbitMQ, the order manager turns them into orders at the simulator, fills come back
// over the simulator's websocket and leave as order events on RabbitMQ, and the model service turns
// them into training samples in PostgreSQL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, type ConsumeMessage } from 'amqplib';
import { z } from 'zod';
import { namespace, testKafka, createNamespace, waitFor, testCfg } from '../helpers.ts';
import { createRuntime, runUnits, type Runtime } from '../../runtime/service.ts';
import { ensureDatabase, dropDatabase, withDatabase, createDb, sql } from '../../runtime/db.ts';
import { migrate } from '../../runtime/migrate.ts';
import { startSimulator } from '../../sim/server.ts';
import { SERVICES, SIM_BALANCES } from '../../stack/services.ts';
import { parseSignalJson } from '../../pipelines/signal-format.ts';
import { RUNTIME_PARTS } from '../../stack/services.ts';

type Sim = Awaited<ReturnType<typeof startSimulator>>;

const prefix = namespace('loop');
const signalsQueue = `test.${prefix}trading_signals`;
const eventsQueue = `test.${prefix}order_events`;
const tap = `test.${prefix}signals_tap`;
const dbUrl = withDatabase(testCfg.DATABASE_URL, `loop_e2e_${randomBytes(4).toString('hex')}`);
const kafka = testKafka();
let sim: Sim;
let rt: Runtime;
let stop: () => Promise<void>;
let dropTopics: () => Promise<void>;

before(async () => {
  sim = await startSimulator({ port: 0, seed: 5, balances: SIM_BALANCES });
  await ensureDatabase(dbUrl);
  const pool = await createDb(dbUrl);
  await migrate(pool);
  await pool.end();
  dropTopics = await createNamespace(kafka, prefix, 3);
  rt = await createRuntime('loop-e2e', RUNTIME_PARTS, {
    TOPIC_PREFIX: prefix,
    ADMIN_PORT: '0',
    DATABASE_URL: dbUrl,
    BYBIT_SIM_PORT: String(sim.port),
    SIGNALS_QUEUE: signalsQueue,
    MODEL_SIGNALS_QUEUE: signalsQueue,
    ORDER_EVENTS_QUEUE: eventsQueue,
    EXCHANGE_STREAM_SOURCE: 'direct',
    WARMUP_INTERVAL_MS: '400',
    MODEL_HORIZON_MS: '1500',
    MODEL_ALLOWED_LATENESS_MS: '500',
    MODEL_ORDER_EVENTS_MAX_WAIT_MS: '3000',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
  });
  ({ stop } = await runUnits(rt, [...SERVICES['order-manager']!.units, ...SERVICES['model']!.units]));
  await waitFor('the whole loop to be ready', async () => (await rt.admin.readiness()).ready, 120_000);
});

after(async () => {
  await stop?.();
  await dropTopics?.();
  await sim?.close();
  await dropDatabase(dbUrl).catch(() => {});
  const conn = await connect(testCfg.AMQP_URL);
  const ch = await conn.createChannel();
  for (const q of [signalsQueue, eventsQueue, tap]) await ch.deleteQueue(q).catch(() => {});
  await conn.close();
});

test('warm-up signals become orders, fills come back as order events on RabbitMQ, training samples accumulate', async () => {
  // Read the order events as another service would.
  const conn = await connect(testCfg.AMQP_URL);
  const ch = await conn.createChannel();
  await ch.assertQueue(eventsQueue, { durable: true });
  const events: Array<Record<string, unknown>> = [];
  await ch.consume(eventsQueue, (m: ConsumeMessage | null) => {
    if (!m) return;
    events.push(JSON.parse(m.content.toString('utf8')) as Record<string, unknown>);
    ch.ack(m);
  });
  try {
    // Orders from the model's warm-up signals reach the simulator.
    const ours = () => sim.orders().filter((o) => String(o.orderLinkId).startsWith('om-'));
    await waitFor('orders from warm-up signals at the simulator', () => ours().length >= 3, 90_000);

    // Their fills come back as order events on RabbitMQ, with the signal's context.
    const filled = await waitFor('order_filled events on RabbitMQ', () => {
      const f = events.filter((e) => e.event_type === 'order_filled');
      return f.length >= 2 ? f : null;
    }, 90_000);
    for (const e of filled) {
      assert.equal(e.is_warmup, true);
      assert.equal(e.model_version, null);
      assert.match(String(e.signal_id), /^[0-9a-f-]{36}$/);
      assert.ok(Number(e.filled_qty) > 0);
      assert.ok(typeof e.event_id === 'string' && typeof e.occurred_at === 'string');
      const o = sim.orders().find((x) => x.orderLinkId === e.order_link_id);
      assert.ok(o, 'the event is about an order the simulator has');
      assert.equal(String(o!.orderStatus), 'Filled');
    }

    // The model service learns from them: samples accumulate in PostgreSQL.
    await waitFor(
      'training samples',
      async () => (await rt.db.one(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM training_samples`)).n >= 2,
      120_000,
      500,
    );
    const decided = await rt.db.one(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM signals WHERE strategy_id IS NOT NULL AND is_warmup`);
    assert.ok(decided.n >= 3, 'warm-up signals were recorded by the order manager');
  } finally {
    await conn.close();
  }
});

test('every signal the model service published is one the order manager accepts', async () => {
  const rows = await rt.db.any(sql.type(z.object({ payload: z.unknown() }))`SELECT payload FROM signals LIMIT 50`);
  assert.ok(rows.length >= 3);
  for (const r of rows) {
    const parsed = parseSignalJson(r.payload);
    assert.equal(parsed.ok, true, JSON.stringify(parsed).slice(0, 300));
  }
});
