// Upgrade over existing data: the database, topics and consumer groups the previous release (v1)
// left behind (tests/fixtures/released-v1/, captured from a run of v1 itself) are put back on the
// local stack; the current code's setup step migrates them and registers its schemas (the registry
// refuses one that cannot read v1's records), then the current order manager and model service
// start on them. They must read v1's rows and the v1 records nobody had read yet, dead-letter
// nothing, and trade on without reusing any of v1's ids.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { connect, type ConsumeMessage } from 'amqplib';
import { z } from 'zod';
import { namespace, testKafka, waitFor, testCfg, testLogger, registryUrl } from '../helpers.ts';
import { restoreRelease, type RestoredRelease, type FixtureRecord } from '../fixtures/release-fixture.ts';
import { createRuntime, runUnits, type Runtime } from '../../runtime/service.ts';
import { loadConfig } from '../../runtime/config.ts';
import { createDb, dropDatabase, withDatabase, sql, type DatabasePool } from '../../runtime/db.ts';
import { defaultMigrationsDir, loadMigrations } from '../../runtime/migrate.ts';
import { migrateDatabase, ensureAllTopics } from '../../stack/provision.ts';
import { startSimulator } from '../../sim/server.ts';
import { SERVICES, SIM_BALANCES } from '../../stack/services.ts';
import { orderLinkId } from '../../pipelines/risk-rules.ts';
import { RISK_GROUP } from '../../pipelines/signal-decide.ts';
import { collectStatus } from '../../cli/status.ts';
import { createContext } from '../../cli/context.ts';
import * as registry from '../../model/registry.ts';
import { fromArtifacts } from '../../model/learner.ts';
import { loadTf } from '../../model/tf.ts';
import { FEATURE_SPEC_ID } from '../../model/features.ts';
import { RUNTIME_PARTS, UNIT_SCHEMAS } from '../../stack/services.ts';

const fixtureDir = fileURLToPath(new URL('../fixtures/released-v1/', import.meta.url));
const releaseDir = fileURLToPath(new URL('../../schemas/released/v1/', import.meta.url));
const RELEASE = JSON.parse(readFileSync(`${releaseDir}RELEASE.json`, 'utf8')) as { commit: string; migrations: Array<{ name: string; sha256: string }> };

const prefix = namespace('upgrade');
const signalsQueue = `test.${prefix}trading_signals`;
const eventsQueue = `test.${prefix}order_events`;
const dbUrl = withDatabase(testCfg.DATABASE_URL, `upgrade_e2e_${randomBytes(4).toString('hex')}`);
const kafka = testKafka();
const count = z.object({ n: z.number() });

let sim: Awaited<ReturnType<typeof startSimulator>>;
let rt: Runtime;
let db: DatabasePool;
let stop: () => Promise<void>;
let v1: RestoredRelease;
/** Rows per table as v1 left them. */
const rowsBefore = new Map<string, number>();
/** Every signal id v1 knew: its signals table and its model's signals. */
const v1SignalIds = new Set<string>();
const startedAt = Date.now();
const events: Array<Record<string, unknown>> = [];
let closeAmqp: () => Promise<void>;

/** v1's records of a topic that a group had not read when v1 stopped (beyond its committed offset). */
function unread(group: string, topic: string): FixtureRecord[] {
  const committed = v1.manifest.groups[group] ?? [];
  return v1.records[topic]!.filter((r) => {
    const c = committed.find((o) => o.topic === topic && o.partition === r.partition);
    return c === undefined || BigInt(r.offset) >= BigInt(c.offset);
  });
}

const rawSignal = (r: FixtureRecord) => JSON.parse(r.raw!) as { signal_id: string; strategy_id: string; timestamp: string };

before(async () => {
  v1 = await restoreRelease(fixtureDir, { prefix, dbUrl, kafka, registryUrl, schemasDir: releaseDir });
  const env = { ...process.env, TOPIC_PREFIX: prefix, DATABASE_URL: dbUrl, LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent' };
  db = await createDb(dbUrl);
  const tables = await db.anyFirst(sql.type(z.object({ t: z.string() }))`SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`);
  for (const t of tables) rowsBefore.set(t, await db.oneFirst(sql.type(count)`SELECT count(*)::int AS n FROM ${sql.identifier([t])}`));
  for (const id of await db.anyFirst(sql.type(z.object({ id: z.string() }))`SELECT signal_id::text AS id FROM signals`)) v1SignalIds.add(id);
  for (const r of v1.records['model.signals']!) v1SignalIds.add((r.value as { signal_id: string }).signal_id);

  // The upgrade, as the `setup` service does it: migrations, then any topic the release lacked.
  const cfg = loadConfig(env, UNIT_SCHEMAS);
  await migrateDatabase(cfg, testLogger);
  await ensureAllTopics(cfg, testLogger);

  // Read the order events as another service would, from the first one the new code publishes.
  const conn = await connect(testCfg.AMQP_URL);
  const ch = await conn.createChannel();
  await ch.assertQueue(eventsQueue, { durable: true });
  await ch.consume(eventsQueue, (m: ConsumeMessage | null) => {
    if (!m) return;
    events.push(JSON.parse(m.content.toString('utf8')) as Record<string, unknown>);
    ch.ack(m);
  });
  closeAmqp = () => conn.close();

  // A simulator of its own: the release's account does not come along, and its ids are seeded, so
  // another seed keeps order and execution ids apart from v1's.
  sim = await startSimulator({ port: 0, seed: v1.manifest.simSeed + 1, balances: SIM_BALANCES });
  const oldest = Math.min(...unread('validate', 'signals.raw').map((r) => Date.parse(rawSignal(r).timestamp)));
  rt = await createRuntime('upgrade-e2e', RUNTIME_PARTS, {
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
    // The signal v1's bridge took in just before the upgrade was seconds old then; the fixture is
    // older now. Accept it as of then, so that it is judged on its content and not its age.
    SIGNAL_MAX_AGE_MS: String(Date.now() - oldest + 600_000),
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
  });
  ({ stop } = await runUnits(rt, [...SERVICES['order-manager']!.units, ...SERVICES['model']!.units]));
  await waitFor('the upgraded services to be ready', async () => (await rt.admin.readiness()).ready, 120_000);
});

after(async () => {
  await stop?.();
  await closeAmqp?.();
  await sim?.close();
  await db?.end().catch(() => {});
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics((await admin.listTopics()).filter((t) => t.startsWith(prefix))).catch(() => {});
  await admin.disconnect();
  await dropDatabase(dbUrl).catch(() => {});
  const conn = await connect(testCfg.AMQP_URL);
  const ch = await conn.createChannel();
  for (const q of [signalsQueue, eventsQueue]) await ch.deleteQueue(q).catch(() => {});
  await conn.close();
});

test('the fixture is what v1 wrote: its migrations, schemas and every table with rows', () => {
  assert.equal(v1.manifest.commit, RELEASE.commit, 'the fixture was written by the release');
  for (const [table, n] of rowsBefore) assert.ok(n > 0, `v1 table ${table} has rows`);
  assert.ok(unread('validate', 'signals.raw').length >= 1, 'a signal v1 took in but had not validated');
  assert.ok(unread('track', 'exchange.orders').length >= 1, 'an exchange order update v1 had not tracked');
});

test('the current migrations apply over the v1 database, which keeps every row', async () => {
  const applied = await db.any(sql.type(z.object({ name: z.string(), checksum: z.string() }))`SELECT name, checksum FROM schema_migrations ORDER BY name`);
  const current = await loadMigrations(defaultMigrationsDir);
  assert.deepEqual(applied.map((m) => m.name), current.map((m) => m.name), 'every current migration is applied');
  for (const m of RELEASE.migrations) {
    assert.equal(applied.find((a) => a.name === m.name)?.checksum, m.sha256, `${m.name} is recorded as v1 applied it`);
  }
  assert.ok(current.length > RELEASE.migrations.length, 'migrations after v1 exist and were applied');
  for (const [table, n] of rowsBefore) {
    const now = await db.oneFirst(sql.type(count)`SELECT count(*)::int AS n FROM ${sql.identifier([table])}`);
    assert.ok(now >= n, `${table}: ${now} rows after the upgrade, ${n} before`);
  }
  const conflicts = await db.oneFirst(sql.type(count)`SELECT count(*)::int AS n FROM stage_conflicts`);
  assert.equal(conflicts, 0, 'no stage conflicts');
});

test("the current code reads v1's rows: status, model versions, training samples, mode", async () => {
  const ctx = createContext({ ...process.env, TOPIC_PREFIX: prefix, DATABASE_URL: dbUrl, BYBIT_SIM_PORT: String(sim.port), ADMIN_PORT: new URL(rt.admin.url).port });
  try {
    const s = await collectStatus(ctx);
    assert.equal(s.trading?.state, 'ACTIVE', JSON.stringify(s.trading));
    assert.ok(s.orders, "v1's orders are counted");
    assert.ok(s.lastReconcile, 'the reconciliations v1 recorded are read');
    assert.deepEqual(s.conflicts, []);
  } finally {
    await ctx.close();
  }
  const versions = await db.anyFirst(sql.type(z.object({ v: z.string() }))`SELECT version AS v FROM model_versions`);
  assert.ok(versions.length >= 1);
  const { tf } = await loadTf(false);
  for (const v of versions) {
    const rec = await registry.loadVersion(db, v);
    assert.ok(rec, `v1 model version ${v} loads`);
    const model = await fromArtifacts(tf, rec!.artifacts, 0.001);
    const p = model.predict([new Array(rec!.artifacts.featureSpec.names.length).fill(0)]);
    assert.ok(p.length === 1 && p[0]! >= 0 && p[0]! <= 1, `v1 model ${v} predicts with the current learner`);
  }
  const samples = await registry.loadSamples(db, { featureSpec: FEATURE_SPEC_ID, limit: 10_000 });
  assert.ok(samples.length >= (rowsBefore.get('training_samples') ?? 0), 'v1 training samples load');
  const mode = await registry.lastMode(db);
  assert.equal(mode?.mode, 'warmup', "v1's model mode is read");
  const transitions = await db.anyFirst(sql.type(z.object({ r: z.string() }))`SELECT reason AS r FROM trading_state_transitions`);
  assert.ok(transitions.some((r) => r.includes('upgrade fixture')), "v1's kill switch transitions are there");
});

test('v1 records that were not read yet are read and applied by the current stages', async () => {
  // Every record v1 wrote is consumed by the group that reads it now. The model's window consumer
  // commits only up to the oldest record an open window still needs (a restart rebuilds them from
  // there), so its progress shows as training samples instead: the windows of v1's last signals,
  // still open when v1 stopped, are rebuilt from v1's records and closed by the new code.
  const windows = 'model-service-windows';
  const openAtStop = unread(windows, 'model.signals').map((r) => (r.value as { signal_id: string }).signal_id);
  assert.ok(openAtStop.length >= 1, 'v1 stopped with open training windows');
  await waitFor('samples of the windows v1 left open', async () =>
    (await db.oneFirst(sql.type(count)`SELECT count(*)::int AS n FROM training_samples WHERE signal_id = ANY(${sql.array(openAtStop, 'uuid')})`)) === openAtStop.length, 60_000, 250);
  const admin = kafka.admin();
  await admin.connect();
  try {
    for (const [group, offsets] of Object.entries(v1.manifest.groups)) {
      if (group === windows) continue;
      if (group === RISK_GROUP) {
        // v1's size-risk group on signals.valid: the fused stage's drain decides what it left, then
        // deletes the group (pipelines/signal-decide.ts drainRisk; it deletes only once the group
        // has committed past its end markers). Every signal v1 put on signals.valid is decided.
        await waitFor('the drain to finish v1\'s size-risk group and delete it', async () =>
          (await admin.groupOffsets(prefix + group, prefix + 'signals.valid')).every((d) => BigInt(d.offset) < 0n), 90_000, 250);
        const ids = [...new Set(v1.records['signals.valid']!.map((r) => (r.value as { signal_id: string }).signal_id))];
        assert.ok(ids.length >= 1);
        const decided = await db.oneFirst(sql.type(count)`SELECT count(*)::int AS n FROM signals WHERE signal_id = ANY(${sql.array(ids, 'uuid')}) AND status = 'decided'`);
        assert.equal(decided, ids.length, 'every signal v1 validated is decided');
        continue;
      }
      for (const topic of new Set(offsets.map((o) => o.topic))) {
        const ends = v1.manifest.topics[topic]!.partitions;
        await waitFor(`${group} to read all v1 records of ${topic}`, async () => {
          const done = await admin.groupOffsets(prefix + group, prefix + topic);
          return ends.every((e) => e.high === '0' || BigInt(done.find((d) => d.partition === e.partition)?.offset ?? -1) >= BigInt(e.high));
        }, 90_000, 250);
      }
    }
    // The ticker projection's group is new in this release (tracking consumed market.tickers
    // before): with no offsets it starts at the earliest, so it reads every v1 ticker.
    const tickerEnds = v1.manifest.topics['market.tickers']!.partitions;
    assert.ok(tickerEnds.some((e) => e.high !== '0'), 'v1 left tickers on market.tickers');
    assert.equal(v1.manifest.groups['ticker-projection'], undefined, 'v1 had no ticker-projection group');
    await waitFor('ticker-projection to read all v1 records of market.tickers', async () => {
      const done = await admin.groupOffsets(prefix + 'ticker-projection', prefix + 'market.tickers');
      return tickerEnds.every((e) => e.high === '0' || BigInt(done.find((d) => d.partition === e.partition)?.offset ?? -1) >= BigInt(e.high));
    }, 90_000, 250);
  } finally {
    await admin.disconnect();
  }

  // The signals v1's bridge took in just before the upgrade are decided, and orders placed.
  for (const r of unread('validate', 'signals.raw')) {
    const { signal_id, strategy_id } = rawSignal(r);
    const row = await waitFor(`signal ${signal_id} decided`, async () => db.maybeOne(sql.type(z.object({ status: z.string(), outcome: z.string().nullable() }))`
      SELECT status, outcome FROM signals WHERE signal_id = ${signal_id}::uuid AND status = 'decided'`), 60_000, 250);
    if (strategy_id === 'upgrade-probe') {
      assert.equal(row.outcome, 'create', `the probe signal becomes an order: ${JSON.stringify(row)}`);
      const link = orderLinkId('om', signal_id);
      const o = await waitFor(`order ${link} at the simulator`, () => sim.orders().find((x) => x.orderLinkId === link && x.orderStatus === 'Filled'), 60_000, 250);
      assert.equal(o.symbol, 'ETHUSDT');
    }
  }
  assert.ok(unread('validate', 'signals.raw').some((r) => rawSignal(r).strategy_id === 'upgrade-probe'));

  // The order updates v1's streams relayed but v1 had not tracked are applied; the trade made on the
  // account while the order manager was down is adopted as external.
  const updates = unread('track', 'exchange.orders').map((r) => r.value as { orderLinkId: string; orderStatus: string });
  assert.ok(updates.some((u) => u.orderLinkId.startsWith('desk-manual-')));
  for (const u of updates.filter((x) => x.orderStatus === 'Filled')) {
    const row = await waitFor(`order ${u.orderLinkId} recorded as filled`, () =>
      db.maybeOne(sql.type(z.object({ external: z.boolean() }))`SELECT external FROM orders WHERE order_link_id = ${u.orderLinkId} AND status = 'Filled'`), 60_000, 250);
    assert.equal(row.external, !u.orderLinkId.startsWith('om-'), u.orderLinkId);
  }
});

test("new signals of the model trade on, with ids none of v1's", async () => {
  // An order of a signal the model emitted after the upgrade, filled at the exchange, its fill on RabbitMQ.
  const filled = await waitFor('an order_filled event of a new model signal on RabbitMQ', () =>
    events.find((e) => e.event_type === 'order_filled' && e.strategy_id === 'model-service' && !v1SignalIds.has(String(e.signal_id))), 90_000, 250);
  assert.equal(filled.is_warmup, true);
  const order = sim.orders().find((o) => o.orderLinkId === filled.order_link_id);
  assert.equal(order?.orderStatus, 'Filled', `the simulator filled ${String(filled.order_link_id)}`);
  assert.equal(filled.order_link_id, orderLinkId('om', String(filled.signal_id)));

  // Every signal the model emitted since the upgrade has an id v1 never used; none was refused as a duplicate.
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.topicOffsets(prefix + 'model.signals');
  await admin.disconnect();
  const v1Ends = v1.manifest.topics['model.signals']!.partitions;
  const newSignals = ends.reduce((a, e) => a + Number(e.high) - Number(v1Ends.find((p) => p.partition === e.partition)!.high), 0);
  assert.ok(newSignals >= 1, 'the model emitted signals after the upgrade');
  const fresh = await db.anyFirst(sql.type(z.object({ id: z.string() }))`
    SELECT signal_id::text AS id FROM signals WHERE strategy_id = 'model-service' AND received_at >= ${sql.timestamp(new Date(startedAt))}`);
  assert.ok(fresh.length >= 1);
  for (const id of fresh) assert.ok(!v1SignalIds.has(id), `signal id ${id} was v1's`);
  const dups = await db.oneFirst(sql.type(count)`SELECT count(*)::int AS n FROM signals WHERE duplicate_count > 0`);
  assert.equal(dups, 0, 'no signal was refused as a duplicate');
});

test('nothing is dead-lettered and no stage conflict is recorded', async () => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    for (const dlq of ['signals.dlq', 'orders.dlq', 'exchange.dlq']) {
      const ends = await admin.topicOffsets(prefix + dlq);
      const before = v1.manifest.topics[dlq]?.partitions ?? [];
      for (const e of ends) assert.equal(e.high, before.find((p) => p.partition === e.partition)?.high ?? '0', `${dlq}/${e.partition} got no new dead letter`);
    }
  } finally {
    await admin.disconnect();
  }
  assert.equal(await db.oneFirst(sql.type(count)`SELECT count(*)::int AS n FROM stage_conflicts`), 0);
  const rejectedAsDuplicate = events.filter((e) => e.event_type === 'signal_rejected' && e.reason_code === 'duplicate_signal');
  assert.deepEqual(rejectedAsDuplicate, []);
});
