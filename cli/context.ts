// What a CLI command needs, built on demand from the one configuration (runtime/config.ts): logs go
// to stderr (stdout is the command's output), and each resource is closed by `close()`.
import { pino } from 'pino';
import { loadConfig, kafkaBrokers, schemaRegistryUrl, type Config } from '../runtime/config.ts';
import { createLogger, type Logger } from '../runtime/logger.ts';
import { createKafka, type KafkaPort } from '../runtime/kafka.ts';
import { createDb, type DatabasePool } from '../runtime/db.ts';
import { createTopicCodec, type TopicCodec } from '../schemas/topic-codec.ts';
import { UNIT_SCHEMAS } from '../stack/services.ts';

export interface CliContext {
  cfg: Config;
  logger: Logger;
  kafka(): KafkaPort;
  db(): Promise<DatabasePool>;
  codec(prefix?: string): Promise<TopicCodec>;
  close(): Promise<void>;
}

/** Exit codes of every command (docs/operations.md lists them). */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function createContext(env: NodeJS.ProcessEnv = process.env): CliContext {
  // Commands are quiet unless asked: warnings and errors only, on stderr.
  const cfg = loadConfig({ ...env, LOG_LEVEL: env.LOG_LEVEL ?? 'warn' }, UNIT_SCHEMAS);
  const logger = createLogger(cfg, 'cli', pino.destination(2));
  let kafka: KafkaPort | null = null;
  let db: DatabasePool | null = null;
  return {
    cfg,
    logger,
    kafka: () => (kafka ??= createKafka({ brokers: kafkaBrokers(cfg), clientId: `${cfg.KAFKA_CLIENT_ID}-cli`, logger, connectionTimeoutMs: 3000 })),
    db: async () => (db ??= await createDb(cfg.DATABASE_URL, { maximumPoolSize: 2, applicationName: 'bybit-pipeline-cli' })),
    codec: (prefix = cfg.TOPIC_PREFIX) => createTopicCodec({ registryUrl: schemaRegistryUrl(cfg), prefix }),
    close: async () => {
      await db?.end().catch(() => undefined);
    },
  };
}

/** Resolve after `ms` with `fallback`, or with the promise's value if it settles first. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
