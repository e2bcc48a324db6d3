// Process wiring shared by every service: config, logger, metrics, admin server, Kafka port,
// codecs, PostgreSQL; units (stages, bridges) started in order, readiness aggregated, graceful
// shutdown on SIGINT/SIGTERM (finish in-flight work, commit, leave groups), fatal errors stop the
// process loudly with a non-zero exit code.
import { loadConfig, kafkaBrokers, retiredSettingsSet, type Config, type UnitSchemas } from './config.ts';
import { createLogger, type Logger } from './logger.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { startAdmin, type AdminServer } from './admin.ts';
import { createKafka, type KafkaPort } from './kafka.ts';
import { createDb, type DatabasePool } from './db.ts';
import { systemClock, type Clock } from './clock.ts';
import type { Codec } from './codec.ts';
import { retry } from './retry.ts';
import type { Unit, UnitDefinition } from './unit.ts';

export interface Runtime {
  cfg: Config;
  /** The raw settings the config was parsed from (environment + overrides), for units that parse their own. */
  env: Readonly<Record<string, string | undefined>>;
  logger: Logger;
  metrics: Metrics;
  kafka: KafkaPort;
  codec: Codec;
  db: DatabasePool;
  clock: Clock;
  admin: AdminServer;
  /** Physical topic name for a logical one (TOPIC_PREFIX applied). */
  topic(name: string): string;
  /** Consumer group for a unit (TOPIC_PREFIX applied). */
  group(unit: string): string;
  /** Stop the process after a fatal error. */
  fatal(err: Error): void;
}

/**
 * What a runtime is built from that lives above this layer: the units' settings schemas (parsed
 * with the shared settings) and the topic codec. The composition root (stack/services.ts,
 * RUNTIME_PARTS) supplies them.
 */
export interface RuntimeParts {
  unitSchemas: UnitSchemas;
  codec(cfg: Config): Promise<Codec>;
}

export async function createRuntime(
  service: string,
  parts: RuntimeParts,
  overrides: Partial<Record<keyof Config, string>> = {},
  clock: Clock = systemClock,
  opts: { logDestination?: { write(line: string): void } } = {},
): Promise<Runtime> {
  const env = Object.freeze({ ...process.env, ...overrides });
  const cfg = loadConfig(env, parts.unitSchemas);
  const logger = createLogger(cfg, service, opts.logDestination);
  for (const r of retiredSettingsSet(env)) logger.warn(r, 'a retired setting is set and ignored');
  const metrics = createMetrics({ defaults: cfg.METRICS_DEFAULTS });
  const admin = await startAdmin({ host: cfg.ADMIN_HOST, port: cfg.ADMIN_PORT, token: cfg.ADMIN_TOKEN, registry: metrics.registry, logger });
  const kafka = createKafka({ brokers: kafkaBrokers(cfg), clientId: `${cfg.KAFKA_CLIENT_ID}-${service}`, logger, fetchMaxWaitMs: cfg.KAFKA_FETCH_MAX_WAIT_MS, fetchIdleMaxWaitMs: cfg.KAFKA_FETCH_IDLE_MAX_WAIT_MS, onRequest: metrics.kafka.request, onFetch: metrics.kafka.fetch });
  const codec = await retry(() => parts.codec(cfg), {
    retries: Infinity,
    minMs: 200,
    maxMs: cfg.STAGE_RETRY_MAX_MS,
    onRetry: (err, attempt, delayMs) => logger.warn({ err: (err as Error).message, attempt, delayMs }, 'schema registry unavailable; waiting'),
  });
  const db = await createDb(cfg.DATABASE_URL);
  let fatalSeen = false;
  return {
    cfg,
    env,
    logger,
    metrics,
    kafka,
    codec,
    db,
    clock,
    admin,
    topic: (name) => cfg.TOPIC_PREFIX + name,
    group: (unit) => `${cfg.TOPIC_PREFIX}${unit}`,
    fatal: (err) => {
      if (fatalSeen) return;
      fatalSeen = true;
      logger.fatal({ err }, 'fatal error: stopping the process');
      // Give pino a tick to flush, then exit non-zero so the supervisor restarts us.
      setTimeout(() => process.exit(70), 100).unref();
    },
  };
}

/** Start units in order; wire readiness; stop them in reverse order on signal. */
export async function runUnits(rt: Runtime, definitions: readonly UnitDefinition[]): Promise<{ units: Unit[]; stop: () => Promise<void> }> {
  const units: Unit[] = [];
  for (const d of definitions) {
    const u = await d.create(rt);
    units.push(u);
    rt.admin.addCheck(u.name, () => u.ready(), u.detail && (() => u.detail!()));
  }
  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      rt.logger.info('draining and stopping');
      for (const u of [...units].reverse()) {
        await u.stop().catch((err) => rt.logger.error({ err, unit: u.name }, 'unit failed to stop cleanly'));
      }
      await rt.db.end().catch(() => {});
      await rt.admin.close();
      rt.logger.info('stopped');
    })());
  return { units, stop };
}

/** For entry points: stop cleanly on SIGINT/SIGTERM. */
export function stopOnSignals(stop: () => Promise<void>, logger: Logger): void {
  const handler = (sig: string) => {
    logger.info({ signal: sig }, 'signal received');
    stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
}
