// Shared test plumbing: every test gets its own namespace of topics and consumer groups (a random
// TOPIC_PREFIX) on the real local broker, and bounded polling instead of sleeps.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { loadConfig, kafkaBrokers, schemaRegistryUrl } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { failTool, createKafka, type KafkaPort, type InMessage } from '../runtime/kafka.ts';
import { topicSpecs } from '../runtime/topics.ts';
import { createDb, dropDatabase, ensureDatabase, withDatabase, type DatabasePool } from '../runtime/db.ts';
import { migrate, defaultMigrationsDir } from '../runtime/migrate.ts';
import { UNIT_SCHEMAS } from '../stack/services.ts';

export const testCfg = loadConfig({ ...process.env, LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent' }, UNIT_SCHEMAS);
export const testLogger = createLogger(testCfg, 'test');
export const registryUrl = schemaRegistryUrl(testCfg);

export function namespace(tag: string): string {
  return `t-${tag}-${randomBytes(4).toString('hex')}.`;
}

export function testKafka(): KafkaPort {
  return createKafka({ brokers: kafkaBrokers(testCfg), clientId: 'test', logger: testLogger });
}

/** Create the whole topic catalogue under a prefix; returns a cleanup that deletes it. */
export async function createNamespace(kafka: KafkaPort, prefix: string, partitions = 3): Promise<() => Promise<void>> {
  const admin = kafka.admin();
  await admin.connect();
  const specs = topicSpecs(prefix, partitions);
  await admin.ensureTopics(specs);
  return async () => {
    await admin.deleteTopics(specs.map((s) => s.topic)).catch(() => {});
    await admin.disconnect();
  };
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * Read a topic from the beginning until `done(messages)` says so. read_committed by default, so
 * aborted transactional writes are never seen.
 */
export async function consumeUntil(kafka: KafkaPort, topic: string, done: (all: InMessage[]) => boolean, opts: { readCommitted?: boolean; timeoutMs?: number } = {}): Promise<InMessage[]> {
  const consumer = kafka.consumer({ groupId: `reader-${randomBytes(4).toString('hex')}`, readCommitted: opts.readCommitted ?? true, onFatal: failTool(`reader of ${topic}`) });
  const all: InMessage[] = [];
  await consumer.connect();
  await consumer.subscribe([topic], true);
  try {
    await consumer.run(async (batch, ctl) => {
      for (const m of batch.messages) {
        all.push(m);
        ctl.resolveOffset(m.offset);
      }
    });
    await waitFor(`records on ${topic} (have ${all.length})`, () => done(all), opts.timeoutMs ?? 60_000);
    return all;
  } finally {
    await consumer.disconnect();
  }
}

/** Mark the end of each partition with a plain (non-transactional) record; see consumeToEnd. */
export async function markEnd(kafka: KafkaPort, topic: string, partitions: number, marker: string): Promise<void> {
  const p = kafka.producer();
  await p.connect();
  await p.send(topic, Array.from({ length: partitions }, (_, partition) => ({ key: null, value: Buffer.from(marker), headers: { 'test.marker': marker }, partition })));
  await p.disconnect();
}

/** Everything committed before the end markers, without the markers. */
export async function consumeToEnd(kafka: KafkaPort, topic: string, partitions: number, opts: { readCommitted?: boolean } = {}): Promise<InMessage[]> {
  const marker = `end-${randomBytes(4).toString('hex')}`;
  await markEnd(kafka, topic, partitions, marker);
  const all = await consumeUntil(kafka, topic, (msgs) => msgs.filter((m) => m.headers['test.marker'] === marker).length === partitions, opts);
  return all.filter((m) => m.headers['test.marker'] === undefined);
}

/** Wait until a consumer group has committed the whole of a topic (every partition at its end). */
export async function waitCaughtUp(kafka: KafkaPort, groupId: string, topic: string, timeoutMs = 120_000): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await waitFor(
      `${groupId} to commit all of ${topic}`,
      async () => {
        const high = await admin.topicOffsets(topic);
        const done = await admin.groupOffsets(groupId, topic);
        // A partition that never had data has no committed offset (-1).
        return high.every((h) => h.high === '0' || done.find((d) => d.partition === h.partition)?.offset === h.high);
      },
      timeoutMs,
      200,
    );
  } finally {
    await admin.disconnect();
  }
}

/**
 * A throw-away database of its own, migrated: `test_<tag>_<random>` on the local PostgreSQL.
 * `drop` ends the pool and drops the database (errors ignored: cleanup must not mask a failure).
 */
export async function migratedDatabase(tag: string, opts: Parameters<typeof createDb>[1] = {}): Promise<{ url: string; pool: DatabasePool; drop: () => Promise<void> }> {
  const url = withDatabase(testCfg.DATABASE_URL, `test_${tag.replace(/[^a-z0-9]/g, '_')}_${randomBytes(5).toString('hex')}`);
  await ensureDatabase(url);
  const pool = await createDb(url, { maximumPoolSize: 4, ...opts });
  await migrate(pool, { dir: defaultMigrationsDir });
  return {
    url,
    pool,
    drop: async () => {
      await pool.end().catch(() => {});
      await dropDatabase(url).catch(() => {});
    },
  };
}

const gc = (() => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

/**
 * The process's memory outside the V8 heap (Buffers) after a full garbage collection: the least of
 * several samples, so the clients' in-flight buffers (a Kafka fetch response, a socket read) that
 * come and go in any one sample do not count, while what a bridge holds for its deliveries is in
 * every sample.
 */
export async function externalBytes(samples = 8): Promise<number> {
  let least = Infinity;
  for (let i = 0; i < samples; i++) {
    if (i > 0) await sleep(150);
    gc();
    least = Math.min(least, process.memoryUsage().external);
  }
  return least;
}
