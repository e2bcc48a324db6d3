// The order manager on the real stack with the exchange simulator: RabbitMQ → bridge → validate →
// size/risk → place → Bybit (simulator, through bybit-api). Its own database, topics and queue.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { connect } from 'amqplib';
import { namespace, testKafka, createNamespace, consumeToEnd, waitFor, testCfg } from '../helpers.ts';
import { createRuntime, runUnits, type Runtime } from '../../runtime/service.ts';
import { ensureDatabase, dropDatabase, withDatabase, createDb, sql } from '../../runtime/db.ts';
import { migrate } from '../../runtime/migrate.ts';
import { startSimulator } from '../../sim/server.ts';
import { SERVICES, SIM_BALANCES } from '../../stack/services.ts';
import { DLQ_HEADERS } from '../../pipelines/runner.ts';
import { orderLinkId } from '../../pipelines/risk-rules.ts';
import { z } from 'zod';
import { RUNTIME_PARTS } from '../../stack/services.ts';

type Sim = Awaited<ReturnType<typeof startSimulator>>;

const prefix = namespace('om');
const queue = `test.${prefix}trading_signals`;
const dbUrl = withDatabase(testCfg.DATABASE_URL, `om_e2e_${randomBytes(4).toString('hex')}`);
const kafka = testKafka();
// A secret that must never appear in any log line of the whole order manager, at debug level.
const SECRET = `e2e-secret-${randomBytes(12).toString('hex')}`;
const logLines: string[] = [];
let sim: Sim;
let rt: Runtime;
let stop: () => Promise<void>;
let dropTopics: () => Promise<void>;

function seedSignal(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  // The order-manager seed's example, with a fresh id and time.
  return {
    signal_id: randomUUID(),
    signal_type: 'sell',
    asset: 'ETHUSDT',
    amount: 500.0,
    confidence: 0.9,
    timestamp: new Date().toISOString(),
    strategy_id: 'strat-002',
    model_version: null,
    is_warmup: true,
    market_data_snapshot: {
      price: 3000.0,
      spread: 1.5,
      volume_24h: 1000000.0,
      volatility: 0.02,
      orderbook_depth: { bid_depth: 100.0, ask_depth: 120.0 },
      technical_indicators: null,
    },
    metadata: { reasoning: 'Warm-up signal: sell based on heuristics', risk_score: 0.3, randomness_level: 0.5 },
    trace_id: `trace-${randomBytes(3).toString('hex')}`,
    ...overrides,
  };
}

async function publish(bodies: Array<Buffer | Record<string, unknown>>): Promise<void> {
  const conn = await connect(testCfg.AMQP_URL);
  const ch = await conn.createConfirmChannel();
  await ch.checkQueue(queue); // declared by the signal bridge, with its length limits
  for (const b of bodies) ch.sendToQueue(queue, Buffer.isBuffer(b) ? b : Buffer.from(JSON.stringify(b)), { persistent: true, messageId: randomUUID() });
  await ch.waitForConfirms();
  await conn.close();
}

const simOrders = (linkId: string) => sim.orders().filter((o) => o.orderLinkId === linkId);

/** Wait for the order of a signal; on timeout say what the pipeline decided instead. */
async function orderFor(signalId: string): Promise<Record<string, unknown>> {
  const linkId = orderLinkId('om', signalId);
  try {
    const [o] = await waitFor(`the order of signal ${signalId} at the simulator`, () => (simOrders(linkId).length ? simOrders(linkId) : null), 60_000);
    return o!;
  } catch (err) {
    const why = await rt.db.any(sql.type(z.object({ action: z.string(), reason: z.string().nullable() }))`SELECT action, reason FROM decisions WHERE signal_id = ${signalId}`);
    const sig = await rt.db.maybeOne(sql.type(z.object({ status: z.string(), outcome: z.string().nullable(), outcome_reason: z.string().nullable() }))`SELECT status, outcome, outcome_reason FROM signals WHERE signal_id = ${signalId}`);
    throw new Error(`${(err as Error).message}; signal: ${JSON.stringify(sig)}; decisions: ${JSON.stringify(why)}`, { cause: err });
  }
}

before(async () => {
  // An account whose holdings sit inside the default risk limits (total exposure 20k USDT).
  sim = await startSimulator({ port: 0, seed: 7, balances: SIM_BALANCES, credentials: [{ key: 'e2e-key', secret: SECRET }] });
  // The seed's snapshot says 3000: make the market agree so the price band check passes.
  sim.setPrice('ETHUSDT', 3000);
  sim.setPrice('SOLUSDT', 150);
  await ensureDatabase(dbUrl);
  const pool = await createDb(dbUrl);
  await migrate(pool);
  await pool.end();
  dropTopics = await createNamespace(kafka, prefix, 3);
  rt = await createRuntime('om-e2e', RUNTIME_PARTS, {
    TOPIC_PREFIX: prefix,
    ADMIN_PORT: '0',
    DATABASE_URL: dbUrl,
    BYBIT_SIM_PORT: String(sim.port),
    SIGNALS_QUEUE: queue,
    BYBIT_API_KEY: 'e2e-key',
    BYBIT_API_SECRET: SECRET,
    LOG_LEVEL: 'debug',
  }, undefined, { logDestination: { write: (l) => void logLines.push(l) } });
  ({ stop } = await runUnits(rt, SERVICES['order-manager']!.units));
  await waitFor('the order manager to be ready', async () => (await rt.admin.readiness()).ready, 120_000);
});

after(async () => {
  await stop?.();
  await dropTopics?.();
  await sim?.close();
  await dropDatabase(dbUrl).catch(() => {});
  const conn = await connect(testCfg.AMQP_URL);
  const ch = await conn.createChannel();
  await ch.deleteQueue(queue);
  await conn.close();
});

test("the seed's example signal published to RabbitMQ becomes an order at the simulator; the same signal twice gives one order", async () => {
  const signal = seedSignal();
  const linkId = orderLinkId('om', String(signal.signal_id));
  await publish([signal]);
  const order = await orderFor(String(signal.signal_id));
  assert.equal(order!.symbol, 'ETHUSDT');
  assert.equal(order!.side, 'Sell');
  assert.equal(order!.orderType, 'Market');
  // The decision and the signal outcome are recorded.
  const db = rt.db;
  // A warm-up signal is capped (RISK_WARMUP_MAX_ORDER_NOTIONAL, 50 USDT by default): 50 USDT at the
  // price it was sized at (the best bid for a market sell: the simulator's market moves, so not the
  // snapshot's 3000), rounded down to the instrument's base precision.
  const sizedAt = Number(await db.oneFirst(sql.type(z.object({ p: z.string() }))`SELECT inputs->'order'->>'size_price' AS p FROM decisions WHERE signal_id = ${String(signal.signal_id)} AND action = 'create'`));
  assert.ok(sizedAt > 0 && Math.abs(sizedAt / 3000 - 1) < 0.05, `sized at ${sizedAt}`);
  assert.ok(Number(order!.qty) > 0 && Number(order!.qty) * sizedAt <= 50.0001 && Number(order!.qty) * sizedAt > 49.9, `qty ${order!.qty} at ${sizedAt}`);

  const row = await db.one(sql.type(z.object({ status: z.string(), duplicate_count: z.number() }))`SELECT status, duplicate_count FROM signals WHERE signal_id = ${String(signal.signal_id)}`);
  assert.equal(row.status, 'decided');

  // The same signal again: recorded as a duplicate, no second order.
  await publish([signal]);
  await waitFor('the duplicate to be recorded', async () => {
    const r = await db.one(sql.type(z.object({ duplicate_count: z.number() }))`SELECT duplicate_count FROM signals WHERE signal_id = ${String(signal.signal_id)}`);
    return r.duplicate_count >= 1;
  });
  assert.equal(simOrders(linkId).length, 1, 'exactly one order for one signal');
  assert.equal(sim.orders().filter((o) => String(o.orderLinkId).startsWith('om-')).filter((o) => o.orderLinkId === linkId).length, 1);
});

test('malformed inputs land in the dead-letter topic with reasons while a valid signal behind them still goes through', async () => {
  // A buy of SOL (the simulated account holds none, so no exposure cap is near), spelled with the
  // model-service seed's `signal` alias.
  const valid = seedSignal({ signal_type: undefined, signal: 'buy', asset: 'SOLUSDT', amount: 40, is_warmup: false, market_data_snapshot: { price: 150, spread: 0.01, volume_24h: 5e6, volatility: 0.03, orderbook_depth: null, technical_indicators: null } });
  delete valid.signal_type;
  const bad = [
    Buffer.from('{"signal_id": "not even json'),
    seedSignal({ amount: -5 }),
    seedSignal({ confidence: 7 }),
    seedSignal({ asset: 'NOPEUSDT' }),
    seedSignal({ timestamp: new Date(Date.now() - 3_600_000).toISOString() }),
    (() => {
      const s = seedSignal();
      delete s.strategy_id;
      return s;
    })(),
  ];
  await publish([...bad, valid]);
  const order = await orderFor(String(valid.signal_id));
  assert.equal(order!.side, 'Buy');

  const dead = await consumeToEnd(kafka, prefix + 'signals.dlq', 1);
  const reasons = dead.map((m) => m.headers[DLQ_HEADERS.reason]);
  for (const r of ['malformed_json', 'invalid_amount', 'invalid_confidence', 'unknown_asset', 'stale_signal', 'missing_field']) assert.ok(reasons.includes(r), `${r} in ${reasons.join(',')}`);
  // The original bytes are kept: the malformed one is still there byte for byte in the envelope.
  const malformed = dead.find((m) => m.headers[DLQ_HEADERS.reason] === 'malformed_json')!;
  const envelope = (await rt.codec.decode(malformed.topic, malformed.value!)) as { original_value: Buffer };
  assert.equal(Buffer.from(envelope.original_value).toString(), '{"signal_id": "not even json');
});

test('no log line of the whole run carries the API secret', () => {
  assert.ok(logLines.length > 20, `the run logged (${logLines.length} lines)`);
  const leaks = logLines.filter((l) => l.includes(SECRET));
  assert.deepEqual(leaks, []);
  // The key itself may be logged; the signature header never is.
  assert.ok(!logLines.some((l) => /x-bapi-sign"\s*:\s*"[0-9a-f]{16,}/i.test(l)));
});
