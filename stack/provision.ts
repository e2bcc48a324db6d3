// What every deployment needs before a service starts, in one place: the database with its
// migrations, and the topic catalogue. Used by `npm run stack:up` and by the `setup` service.
import type { Config } from '../runtime/config.ts';
import { kafkaBrokers } from '../runtime/config.ts';
import type { Logger } from '../runtime/logger.ts';
import { createKafka } from '../runtime/kafka.ts';
import { topicSpecs } from '../runtime/topics.ts';
import { ensureDatabase, createDb } from '../runtime/db.ts';
import { migrate } from '../runtime/migrate.ts';
import { connectWithBackoff } from '../runtime/retry.ts';

export async function migrateDatabase(cfg: Config, log: Logger): Promise<void> {
  await ensureDatabase(cfg.DATABASE_URL);
  const db = await createDb(cfg.DATABASE_URL);
  try {
    // migrate()'s default folder: the sql/ next to runtime/ (the copy in dist/ for the compiled form).
    await migrate(db, { logger: log });
  } finally {
    await db.end();
  }
}

/** Create missing topics; then wait for the group coordinator so the first consumer does not. */
export async function ensureAllTopics(cfg: Config, log: Logger): Promise<string[]> {
  const admin = createKafka({ brokers: kafkaBrokers(cfg), clientId: 'provision', logger: log }).admin();
  await admin.connect();
  try {
    const specs = topicSpecs(cfg.TOPIC_PREFIX, cfg.TOPIC_PARTITIONS);
    const created = await admin.ensureTopics(specs);
    if (created.length) log.info({ created }, 'topics created');
    // The group coordinator answers only once __consumer_offsets is loaded; on a cold broker that
    // can outlast kafkajs's own retries ("The coordinator is loading"), so wait here, bounded.
    await connectWithBackoff(
      async () => void (await admin.groupOffsets('stack-readiness', specs[0]!.topic)),
      log,
      2_000,
      { deadlineMs: 120_000, what: 'Kafka group coordinator' },
    );
    return created;
  } finally {
    await admin.disconnect();
  }
}
