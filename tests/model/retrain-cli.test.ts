// `npm run retrain` end to end: a simulated session written to the three topics of a fresh
// namespace, the CLI replays them into a fresh database, prints the metrics table, stores the
// samples and the candidate version; a second run from the same offsets stores no new samples.
// And it trains on all of the data or not at all: a schema registry that answers 500 for one writer
// schema, or that is not there, PostgreSQL or Kafka unreachable: exit code 1 with the reason, and
// nothing stored.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { z } from 'zod';
import { fileURLToPath } from 'node:url';
import { createNamespace, namespace, registryUrl, testKafka } from '../helpers.ts';
import { freePort } from '../../stack/chaos-infra.ts';
import { readFileSync } from 'node:fs';
import type avro from 'avsc';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { createCodecs } from '../../schemas/codecs.ts';
import { TOPICS } from '../../runtime/topics.ts';
import type { Ticker } from '../../schemas/types.ts';
import { loadConfig } from '../../runtime/config.ts';
import { createDb, dropDatabase, ensureDatabase, sql, withDatabase, type DatabasePool } from '../../runtime/db.ts';
import { migrate, defaultMigrationsDir } from '../../runtime/migrate.ts';
import { simulateSession, testModelConfig } from './fixtures.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const MODEL_ENV = { MODEL_HORIZON_MS: '1000', MODEL_ALLOWED_LATENESS_MS: '500', MODEL_ORDER_EVENTS_MAX_WAIT_MS: '2000', MODEL_MIN_TRAIN_SAMPLES: '500', MODEL_MIN_EVAL_SAMPLES: '100' };

/** One simulated session on the topics of a namespace, written once for every test of the file. */
const session = (async () => {
  const kafka = testKafka();
  const prefix = namespace('retrain');
  const cleanup = await createNamespace(kafka, prefix, 2);
  const s = await simulateSession({ mode: 'pattern', seed: 3, steps: 900, cfg: testModelConfig(MODEL_ENV), rejectEvery: 9 });
  const codec = await createTopicCodec({ registryUrl, prefix });
  // The first quarter of the tickers was written before a (compatible) change of the Ticker schema:
  // reading them needs that older writer schema from the registry.
  const current = JSON.parse(readFileSync(new URL('../../schemas/ticker.avsc', import.meta.url), 'utf8')) as { doc: string };
  const before = await createCodecs({ registryUrl, topicPrefix: prefix, topics: TOPICS, schemaOverrides: { Ticker: { ...current, doc: `${current.doc} (before a documentation change)` } as avro.Schema } });
  const producer = kafka.producer();
  await producer.connect();
  const names = { signal: 'model.signals', event: 'orders.events', ticker: 'market.tickers' } as const;
  /** Of the older Ticker schema. */
  let tickerSchemaId = 0;
  for (const kind of ['ticker', 'signal', 'event'] as const) {
    const topic = prefix + names[kind];
    const items = s.inputs.filter((i) => i.kind === kind);
    const older = kind === 'ticker' ? Math.floor(items.length / 4) : 0;
    for (let i = 0; i < items.length; i += 1000) {
      const chunk = items.slice(i, i + 1000);
      const messages = await Promise.all(
        chunk.map(async (x, j) => ({
          key: kind === 'ticker' ? (x.value as { symbol: string }).symbol : (x.value as { asset?: string; symbol?: string | null }).asset ?? (x.value as { symbol: string }).symbol,
          value: i + j < older ? await before.encode(topic, x.value as Ticker) : await codec.encode(topic, x.value),
        })),
      );
      if (i === 0 && kind === 'ticker') tickerSchemaId = messages[0]!.value.readInt32BE(1); // Confluent wire format: magic byte, schema id
      await producer.send(topic, messages);
    }
  }
  await producer.disconnect();
  return { prefix, tickerSchemaId, cleanup };
})();
after(async () => (await session).cleanup());

/** A fresh migrated database for one run of the CLI. */
async function database(): Promise<{ url: string; pool: DatabasePool; drop: () => Promise<void> }> {
  const url = withDatabase(loadConfig(process.env, UNIT_SCHEMAS).DATABASE_URL, `test_retrain_${randomBytes(6).toString('hex')}`);
  await ensureDatabase(url);
  const pool = await createDb(url, { maximumPoolSize: 2 });
  await migrate(pool, { dir: defaultMigrationsDir });
  return {
    url,
    pool,
    drop: async () => {
      await pool.end();
      await dropDatabase(url).catch(() => {});
    },
  };
}

/** Run the CLI (not blocking this process: a stand-in registry may live in it). */
function retrain(env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'model/retrain-cli.ts'], { cwd: root, env: { ...process.env, ...MODEL_ENV, LOG_LEVEL: 'warn', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

const stored = async (pool: DatabasePool) => ({
  versions: await pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM model_versions`),
  samples: await pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM training_samples`),
});

test('retrain CLI rebuilds windows from the topics and trains a candidate', async () => {
  const { prefix } = await session;
  const db = await database();
  try {
    const run = () => retrain({ TOPIC_PREFIX: prefix, DATABASE_URL: db.url });
    const r1 = await run();
    assert.equal(r1.status, 0, r1.stderr + r1.stdout);
    assert.match(r1.stdout, /hit rate \(traded\)/);
    assert.match(r1.stdout, /promotion rule: (PASS|FAIL)/);
    assert.match(r1.stderr, /training .*100%/);
    const n = Number(/stored (\d+) new samples/.exec(r1.stdout)![1]);
    assert.ok(n > 1500, r1.stdout);
    const versions = await db.pool.any(sql.type(z.object({ version: z.string(), status: z.string(), train_from_offsets: z.record(z.string()).nullable() }))`SELECT version, status, train_from_offsets FROM model_versions`);
    assert.equal(versions.length, 1);
    assert.equal(versions[0]!.status, 'candidate');
    assert.deepEqual(versions[0]!.train_from_offsets, { '0': '0', '1': '0' });
    const r2 = await run();
    assert.equal(r2.status, 0, r2.stderr);
    assert.match(r2.stdout, /stored 0 new samples/);
  } finally {
    await db.drop();
  }
});

/** The real registry behind a proxy that answers 500 for one writer schema (as a registry node that fails for some requests). */
async function failingRegistry(failId: number): Promise<{ url: string; failed: () => number; close: () => Promise<void> }> {
  let failed = 0;
  const server: Server = createServer(async (req, res) => {
    if (req.method === 'GET' && req.url === `/schemas/ids/${failId}`) {
      failed++;
      res.writeHead(500, { 'content-type': 'application/vnd.schemaregistry.v1+json' }).end(JSON.stringify({ error_code: 50001, message: 'Error in the backend data store' }));
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const up = await fetch(`${registryUrl}${req.url}`, { method: req.method, headers: { 'content-type': req.headers['content-type'] ?? 'application/json' }, body: chunks.length ? Buffer.concat(chunks) : undefined });
    res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? 'application/json' }).end(Buffer.from(await up.arrayBuffer()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}`, failed: () => failed, close: () => new Promise((r) => server.close(() => r())) };
}

test('a registry that answers 500 for an older writer schema: exit 1 with the reason, nothing trained or stored (not a model without those tickers)', async () => {
  const { prefix, tickerSchemaId } = await session;
  const db = await database();
  const registry = await failingRegistry(tickerSchemaId);
  try {
    const r = await retrain({ TOPIC_PREFIX: prefix, DATABASE_URL: db.url, SCHEMA_REGISTRY_URL: registry.url });
    assert.ok(registry.failed() > 0, 'the ticker schema was asked for and refused');
    assert.equal(r.status, 1, `exit code (stdout: ${r.stdout.slice(-500)})`);
    assert.match(r.stderr, new RegExp(`retrain failed: cannot decode ${prefix.replace(/\./g, '\\.')}market\\.tickers .*schema registry unavailable while fetching schema ${tickerSchemaId}.*nothing trained or stored`));
    assert.doesNotMatch(r.stdout, /candidate|stored/);
    assert.deepEqual(await stored(db.pool), { versions: 0, samples: 0 });
  } finally {
    await registry.close();
    await db.drop();
  }
});

test('no schema registry, no PostgreSQL, no Kafka: exit 1 with the reason, nothing stored', async () => {
  const { prefix } = await session;
  const db = await database();
  const closed = `127.0.0.1:${await freePort()}`;
  try {
    const noRegistry = await retrain({ TOPIC_PREFIX: prefix, DATABASE_URL: db.url, SCHEMA_REGISTRY_URL: `http://${closed}` });
    assert.equal(noRegistry.status, 1, noRegistry.stdout);
    assert.match(noRegistry.stderr, /retrain failed: schema registry unavailable .*ECONNREFUSED/);
    assert.deepEqual(await stored(db.pool), { versions: 0, samples: 0 });

    const noDb = await retrain({ TOPIC_PREFIX: prefix, DATABASE_URL: `postgres://postgres@${closed}/nowhere` });
    assert.equal(noDb.status, 1, noDb.stdout);
    assert.match(noDb.stderr, /retrain failed: PostgreSQL \(postgres(ql)?:\/\/postgres@127\.0\.0\.1:\d+\/nowhere\): .*ECONNREFUSED/);
    assert.doesNotMatch(noDb.stderr, /orders\.events/, 'it failed before reading the topics');

    const noKafka = await retrain({ TOPIC_PREFIX: prefix, DATABASE_URL: db.url, KAFKA_BROKERS: closed });
    assert.equal(noKafka.status, 1, noKafka.stdout);
    assert.match(noKafka.stderr, /retrain failed: .*(Connection error|ECONNREFUSED|connect)/i);
    assert.deepEqual(await stored(db.pool), { versions: 0, samples: 0 });
  } finally {
    await db.drop();
  }
});
