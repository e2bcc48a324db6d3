// `npm run retrain` end to end: a simulated session written to the three topics of a fresh
// namespace, the CLI replays them into a fresh database, prints the metrics table, stores the
// samples and the candidate version; a second run from the same offsets stores no new samples.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { fileURLToPath } from 'node:url';
import { createNamespace, namespace, registryUrl, testKafka } from '../helpers.ts';
import { createTopicCodec } from '../../pipelines/codec.ts';
import { loadConfig } from '../../runtime/config.ts';
import { createDb, dropDatabase, ensureDatabase, sql, withDatabase } from '../../runtime/db.ts';
import { migrate, defaultMigrationsDir } from '../../runtime/migrate.ts';
import { simulateSession, testModelConfig } from './fixtures.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

test('retrain CLI rebuilds windows from the topics and trains a candidate', async () => {
  const kafka = testKafka();
  const prefix = namespace('retrain');
  const cleanup = await createNamespace(kafka, prefix, 2);
  const dbUrl = withDatabase(loadConfig().DATABASE_URL, `test_retrain_${randomBytes(6).toString('hex')}`);
  await ensureDatabase(dbUrl);
  const pool = await createDb(dbUrl, { maximumPoolSize: 2 });
  try {
    await migrate(pool, { dir: defaultMigrationsDir });
    const env = { MODEL_HORIZON_MS: '1000', MODEL_ALLOWED_LATENESS_MS: '500', MODEL_ORDER_EVENTS_MAX_WAIT_MS: '2000', MODEL_MIN_TRAIN_SAMPLES: '500', MODEL_MIN_EVAL_SAMPLES: '100' };
    const s = await simulateSession({ mode: 'pattern', seed: 3, steps: 900, cfg: testModelConfig(env), rejectEvery: 9 });
    const codec = await createTopicCodec({ registryUrl, prefix });
    const producer = kafka.producer();
    await producer.connect();
    const names = { signal: 'model.signals', event: 'orders.events', ticker: 'market.tickers' } as const;
    for (const kind of ['ticker', 'signal', 'event'] as const) {
      const topic = prefix + names[kind];
      const items = s.inputs.filter((i) => i.kind === kind);
      for (let i = 0; i < items.length; i += 1000) {
        const chunk = items.slice(i, i + 1000);
        await producer.send(topic, await Promise.all(chunk.map(async (x) => ({ key: kind === 'ticker' ? (x.value as { symbol: string }).symbol : (x.value as { asset?: string; symbol?: string | null }).asset ?? (x.value as { symbol: string }).symbol, value: await codec.encode(topic, x.value) }))));
      }
    }
    await producer.disconnect();
    const run = () => spawnSync(process.execPath, ['--import', 'tsx', 'model/retrain-cli.ts'], { cwd: root, env: { ...process.env, ...env, TOPIC_PREFIX: prefix, DATABASE_URL: dbUrl, LOG_LEVEL: 'warn' }, encoding: 'utf8', timeout: 120_000 });
    const r1 = run();
    assert.equal(r1.status, 0, r1.stderr + r1.stdout);
    assert.match(r1.stdout, /hit rate \(traded\)/);
    assert.match(r1.stdout, /promotion rule: (PASS|FAIL)/);
    assert.match(r1.stderr, /training .*100%/);
    const stored = Number(/stored (\d+) new samples/.exec(r1.stdout)![1]);
    assert.ok(stored > 1500, r1.stdout);
    const versions = await pool.any(sql.type(z.object({ version: z.string(), status: z.string(), train_from_offsets: z.record(z.string()).nullable() }))`SELECT version, status, train_from_offsets FROM model_versions`);
    assert.equal(versions.length, 1);
    assert.equal(versions[0]!.status, 'candidate');
    assert.deepEqual(versions[0]!.train_from_offsets, { '0': '0', '1': '0' });
    const r2 = run();
    assert.equal(r2.status, 0, r2.stderr);
    assert.match(r2.stdout, /stored 0 new samples/);
  } finally {
    await pool.end();
    await dropDatabase(dbUrl).catch(() => {});
    await cleanup();
  }
});
