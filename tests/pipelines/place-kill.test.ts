// On the real local Kafka and PostgreSQL with the simulator: the placement process killed (SIGKILL)
// right after its REST calls and before its Kafka commit, then restarted, leaves exactly one order
// per orderLinkId at the simulator, and each intent has exactly one committed submission carrying
// the simulator's orderId (the replayed creates come back as already_placed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { namespace, testKafka, createNamespace, waitFor, consumeToEnd, registryUrl, testCfg } from '../helpers.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { createDb, dropDatabase, ensureDatabase, sql, withDatabase } from '../../runtime/db.ts';
import { migrate, defaultMigrationsDir } from '../../runtime/migrate.ts';
import { startSimulator } from '../../sim/server.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import type { OrderIntent, OrderSubmission } from '../../schemas/types.ts';

const fixture = fileURLToPath(new URL('../fixtures/place-stage.ts', import.meta.url));

function startStage(env: Record<string, string>): { child: ChildProcess; persisted: () => number; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
    env: { ...process.env, LOG_LEVEL: process.env.STAGE_LOG_LEVEL ?? 'warn', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let persisted = 0;
  child.stdout!.on('data', (d: Buffer) => {
    if (process.env.STAGE_LOG_LEVEL) process.stderr.write(d); // the stage's own log, when asked for
    persisted += (d.toString().match(/^persisted /gm) ?? []).length;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, persisted: () => persisted, exited };
}

const ORDERS = [
  { symbol: 'ETHUSDT', qty: '0.01', price: '2800' },
  { symbol: 'BTCUSDT', qty: '0.001', price: '56000' },
  { symbol: 'SOLUSDT', qty: '0.1', price: '140' },
];

test('placement killed after the REST call and before its commit, then restarted: exactly one order per orderLinkId', async () => {
  const prefix = namespace('place');
  const kafka = testKafka();
  const cleanup = await createNamespace(kafka, prefix, 3);
  const sim = await startSimulator({ port: 0, seed: 3 });
  const dbUrl = withDatabase(testCfg.DATABASE_URL, `test_place_kill_${randomBytes(6).toString('hex')}`);
  await ensureDatabase(dbUrl);
  const pool = await createDb(dbUrl, { maximumPoolSize: 2 });
  const children: ChildProcess[] = [];
  try {
    await migrate(pool, { dir: defaultMigrationsDir });
    const codec = await createTopicCodec({ registryUrl, prefix });
    const intents: OrderIntent[] = Array.from({ length: 9 }, (_, n) => {
      const o = ORDERS[n % ORDERS.length]!;
      const sid = randomUUID();
      return {
        ...SAMPLES.OrderIntent,
        intent_id: `${sid}:1`,
        order_link_id: `k-${randomBytes(12).toString('hex')}`,
        signal: { ...SAMPLES.OrderIntent.signal!, signal_id: sid, asset: o.symbol, strategy_id: `strat-${n}` },
        symbol: o.symbol,
        side: 'Buy',
        qty: o.qty,
        price: o.price,
        expires_at: null,
        decided_at: Date.now(),
      };
    });
    const producer = kafka.producer();
    await producer.connect();
    await producer.send(prefix + 'orders.intents', await Promise.all(intents.map(async (i) => ({ key: i.symbol, value: await codec.encode(prefix + 'orders.intents', i), headers: { trace_id: `trace-${i.intent_id}` } }))));
    await producer.disconnect();

    const env = { TOPIC_PREFIX: prefix, DATABASE_URL: dbUrl, BYBIT_ENV: 'sim', BYBIT_SIM_PORT: String(sim.port) };
    const links = new Set(intents.map((i) => i.order_link_id));
    const ours = () => sim.orders().filter((o) => links.has(String(o.orderLinkId)));

    // Run 1: hold after the first chunk's persist (its REST calls done), and kill -9 there.
    const first = startStage({ ...env, PLACE_FIXTURE_HOLD: '1' });
    children.push(first.child);
    await waitFor('the first chunk persisted', () => first.persisted() >= 1, 120_000, 20);
    const placedBeforeKill = ours().map((o) => String(o.orderLinkId));
    assert.ok(placedBeforeKill.length >= 1, 'the killed run placed orders');
    first.child.kill('SIGKILL');
    assert.equal(await first.exited, null, 'killed by signal');

    // Run 2: restart and let it commit the whole input.
    const final = startStage(env);
    children.push(final.child);
    const admin = kafka.admin();
    await admin.connect();
    try {
      await waitFor(
        'the restarted stage to commit the whole input',
        async () => {
          const high = await admin.topicOffsets(prefix + 'orders.intents');
          const done = await admin.groupOffsets(prefix + 'place', prefix + 'orders.intents');
          return high.every((h) => h.high === '0' || done.find((d) => d.partition === h.partition)?.offset === h.high); // an empty partition has nothing to commit
        },
        90_000,
        200,
      );
    } finally {
      await admin.disconnect();
    }
    final.child.kill('SIGTERM');
    assert.equal(await final.exited, 0, 'graceful stop exits 0');

    // Exactly one order per orderLinkId at the simulator, every intent placed.
    const orders = ours();
    const perLink = new Map<string, number>();
    for (const o of orders) perLink.set(String(o.orderLinkId), (perLink.get(String(o.orderLinkId)) ?? 0) + 1);
    assert.deepEqual([...perLink].filter(([, c]) => c > 1), [], 'no orderLinkId twice');
    assert.equal(perLink.size, intents.length, 'every intent placed');

    // Exactly one committed submission per intent, with the simulator's orderId.
    const committed = await consumeToEnd(kafka, prefix + 'orders.submissions', 3);
    const subs = await Promise.all(committed.map(async (m) => (await codec.decode(m.topic, m.value!)) as OrderSubmission));
    assert.equal(subs.length, intents.length, 'one submission per intent');
    assert.deepEqual(new Set(subs.map((s) => s.intent_id)), new Set(intents.map((i) => i.intent_id)));
    const orderIdOf = new Map(orders.map((o) => [String(o.orderLinkId), String(o.orderId)]));
    for (const s of subs) {
      assert.equal(s.order_id, orderIdOf.get(s.order_link_id), `orderId of ${s.order_link_id}`);
      const replayed = placedBeforeKill.includes(s.order_link_id);
      assert.equal(s.outcome, replayed ? 'already_placed' : 'accepted', `${s.order_link_id} (placed before the kill: ${replayed})`);
    }
    assert.ok(committed.every((m) => m.headers['trace_id']?.startsWith('trace-')), 'trace ids travel');

    // PostgreSQL has each order once, Submitted with its orderId.
    const rows = await pool.any(sql.type(z.object({ order_link_id: z.string(), order_id: z.string().nullable(), status: z.string() }))`
      SELECT order_link_id, order_id, status FROM orders WHERE order_link_id = ANY(${sql.array([...links], 'text')})`);
    assert.equal(rows.length, intents.length);
    for (const r of rows) assert.deepEqual([r.status, r.order_id], ['Submitted', orderIdOf.get(r.order_link_id)]);
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await sim.close();
    await pool.end();
    await dropDatabase(dbUrl).catch(() => {});
    await cleanup();
  }
});
