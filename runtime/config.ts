// The one place the environment is read. Parsed once, validated, frozen; a bad setting fails at
// start with every problem listed (house style 7). Defaults and descriptions live in the schema,
// and the README's configuration table is checked against `settingsTable()` by a test.
//
// The settings every process shares are declared here; each unit declares its own (house style 8)
// and the composition root (stack/services.ts) hands their schemas in, so this bottom layer knows
// no unit. An entry point that runs no unit (the simulator, migrations) passes none.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { flag, int } from './setting-types.ts';


// Each entry: [zod schema with default, description]. Ordered as the README table.
export const settings = {
  KAFKA_BROKERS: [z.string().min(1).optional(), 'Comma-separated Kafka bootstrap servers. Unset: the local stack starts a single-node Apache Kafka on 127.0.0.1:9092 and uses it.'],
  KAFKA_CLIENT_ID: [z.string().default('bybit-pipeline'), 'Kafka client id prefix.'],
  SCHEMA_REGISTRY_URL: [z.string().url().optional(), 'Confluent-compatible schema registry (Redpanda in deployment). Unset: the local stand-in on 127.0.0.1:8081.'],
  DATABASE_URL: [z.string().default('postgres://postgres@127.0.0.1:5432/bybit_pipeline'), 'PostgreSQL connection string. The database is created by `npm run stack:up` when missing.'],
  AMQP_URL: [z.string().default('amqp://guest:guest@127.0.0.1:5672'), 'RabbitMQ connection string.'],
  BYBIT_ENV: [z.enum(['sim', 'testnet', 'demo', 'mainnet']).default('sim'), 'Which Bybit to trade on: the project simulator, testnet, demo trading or mainnet.'],
  BYBIT_API_KEY: [z.string().default('sim-key'), 'Bybit API key (sim default: sim-key).'],
  BYBIT_API_SECRET: [z.string().default('sim-secret'), 'Bybit API secret (sim default: sim-secret). Never logged.'],
  BYBIT_API_SECRET_FILE: [z.string().optional(), 'Path of a file holding the API secret; wins over BYBIT_API_SECRET.'],
  BYBIT_SIM_PORT: [int.min(1).max(65535).default(9380), 'Port of the exchange simulator (REST and websocket) on 127.0.0.1.'],
  BYBIT_RECV_WINDOW: [int.positive().default(5000), 'recv_window sent with signed Bybit requests, ms.'],
  ADMIN_PORT: [int.min(0).max(65535).default(9300), 'Admin HTTP port (/healthz, /readyz, /metrics); 0 picks a free port.'],
  ADMIN_HOST: [z.string().default('127.0.0.1'), 'Admin HTTP bind address (loopback by default).'],
  ADMIN_TOKEN: [z.string().optional(), 'Bearer token required by mutating admin endpoints; unset disables them.'],
  LOG_LEVEL: [z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'), 'pino log level.'],
  TOPIC_PREFIX: [z.string().regex(/^[a-zA-Z0-9._-]*$/).default(''), 'Prefix for every topic and consumer group (namespaces for tests and replays).'],
  TOPIC_PARTITIONS: [int.min(1).max(64).default(3), 'Partitions of keyed pipeline topics.'],
  KAFKA_SESSION_TIMEOUT_MS: [int.min(6000).max(300000).default(10000), 'Consumer group session timeout: how soon a dead stage instance loses its partitions.'],
  KAFKA_FETCH_MAX_WAIT_MS: [int.min(10).max(10000).default(100), "How long the broker holds a consumer's fetch while it has nothing new (a long poll): records are returned as soon as they arrive, so this sets what an idle consumer costs (about 1000 / this fetches a second each), and how long stopping a consumer or joining a rebalance may wait for the fetch in flight."],
  KAFKA_FETCH_IDLE_MAX_WAIT_MS: [int.min(10).max(3000).default(1000), "The long poll of a consumer whose last ten fetches brought nothing (KAFKA_FETCH_MAX_WAIT_MS if lower): an idle consumer then asks about once a second instead of ten times, and the first fetch that brings a record goes back to the short wait. A record still returns at once (a read_committed fetch at its transaction's commit); stopping an idle consumer or joining a rebalance may wait this long. At most 3000 (the heartbeat interval: heartbeats go between fetches)."],
  STAGE_BATCH_MAX: [int.min(1).max(10000).default(500), 'Most records a stage runner handles in one transaction.'],
  STAGE_RETRY_MAX_MS: [int.min(100).default(30000), 'Longest backoff between retries of a retriable stage error.'],
  KAFKA_CONNECT_TIMEOUT_MS: [int.min(100).default(120000), 'How long to keep retrying to reach the broker at start before giving up.'],
  STACK_DIR: [z.string().default('.stack'), 'Where the local stack keeps Kafka jars, data and logs (git-ignored).'],
  KAFKA_HEAP: [z.string().default('384m'), 'Max heap of the local Kafka broker.'],
  SIGNAL_MAX_AGE_MS: [int.min(0).default(30000), 'Signals older than this are rejected as stale.'],
  SIGNAL_MAX_SKEW_MS: [int.min(0).default(5000), 'Signals dated further in the future than this are rejected.'],
  SIGNAL_MAX_BYTES: [int.min(256).default(65536), 'Largest accepted signal message, bytes.'],
  METRICS_DEFAULTS: [flag.default('true'), 'Collect prom-client default process metrics.'],
  RECONCILE_CRON: [z.string().default('*/1 * * * *'), 'node-cron schedule of the reconciler.'],
  SIM_SEED: [int.default(42), 'Seed of the simulator price process.'],
  SIM_PRICE_MODE: [z.enum(['random-walk', 'pattern', 'replay']).default('random-walk'), 'Price process of a simulator started by npm start or npm run sim (--mode overrides it): random-walk, pattern (planted structure, see SIM_PATTERN_REGIME) or replay (kline CSV).'],
  SIM_PATTERN_REGIME: [z.enum(['momentum-noise', 'learnable', 'noise', 'trend-revert']).default('momentum-noise'), 'Planted structure of the pattern price mode (--regime overrides it; sim/README.md "Pattern regimes"): momentum-noise, learnable (drift blocks that pay after costs), noise (nothing to learn) or trend-revert.'],
} as const;

/**
 * Settings declared by the units themselves (house style 8: a unit exports its config schema). They
 * are parsed with the shared ones, so a bad value fails the start with every problem listed, and
 * they appear in the README table; the unit re-parses its own slice from the frozen config.
 */
export type UnitSchemas = readonly z.ZodTypeAny[];

function shapeOf(s: z.ZodTypeAny): z.ZodRawShape {
  let t: z.ZodTypeAny = s;
  while (t instanceof z.ZodEffects) t = t.innerType();
  return t instanceof z.ZodObject ? (t.shape as z.ZodRawShape) : {};
}

/** Unit settings not already declared centrally: name → [schema, description]. */
export function unitSettings(unitSchemas: UnitSchemas): Record<string, [z.ZodTypeAny, string]> {
  const out: Record<string, [z.ZodTypeAny, string]> = {};
  for (const u of unitSchemas) {
    for (const [k, v] of Object.entries(shapeOf(u))) {
      if (k in settings || k in out) continue;
      out[k] = [v as z.ZodTypeAny, (v as z.ZodTypeAny).description ?? ''];
    }
  }
  return out;
}

type Settings = typeof settings;
type SchemaOf<K extends keyof Settings> = Settings[K][0];
export type Config = Readonly<{ [K in keyof Settings]: z.output<SchemaOf<K>> } & Record<string, unknown>>;

const schema = z.object(
  Object.fromEntries(Object.entries(settings).map(([k, [s]]) => [k, s])) as { [K in keyof Settings]: SchemaOf<K> },
);

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Parse an environment with the shared settings and the given units' settings. Throws ConfigError
 * listing every problem. The units are not optional: a caller that forgot them would silently get
 * the units' defaults instead of the operator's values.
 */
/**
 * Settings a released version read and this one does not, with what replaced them. Set, they are
 * ignored, so every service start warns about each one still set (runtime/service.ts) rather than
 * refusing to start over an environment an upgrade left behind.
 */
export const RETIRED_SETTINGS: Readonly<Record<string, string>> = Object.freeze({
  MODEL_PROMOTION_MARGIN: 'promotion is decided on P&L after costs: MODEL_PROMOTION_MARGIN_BPS (docs/model.md)',
  MODEL_PROMOTION_MIN_Z: 'the confidence of the P&L bootstrap: MODEL_PROMOTION_CONFIDENCE (docs/model.md)',
  MODEL_DEGRADED_HIT_RATE: 'rollback is decided on P&L after costs against warm-up (docs/model.md)',
  MODEL_SWITCH_HIT_RATE: 'warm-up -> model is decided on the shadow P&L after costs since promotion: MODEL_SWITCH_MIN_SAMPLES windows, lower bounds above 0 and above MODEL_PROMOTION_MARGIN_BPS over warm-up (docs/model.md)',
});

/** The retired settings an environment still sets, with what replaced each. */
export function retiredSettingsSet(env: Readonly<Record<string, string | undefined>>): Array<{ setting: string; instead: string }> {
  return Object.entries(RETIRED_SETTINGS).filter(([k]) => env[k] !== undefined && env[k] !== '').map(([setting, instead]) => ({ setting, instead }));
}

export function loadConfig(env: NodeJS.ProcessEnv, unitSchemas: UnitSchemas): Config {
  const raw: Record<string, string | undefined> = {};
  const units = unitSettings(unitSchemas);
  for (const key of [...Object.keys(settings), ...Object.keys(units)]) {
    const v = env[key];
    raw[key] = v === undefined || v === '' ? undefined : v;
  }
  const parsed = schema.safeParse(raw);
  const problems = parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message} (got ${JSON.stringify(raw[String(i.path[0])])})`);
  const cfg: Record<string, unknown> = parsed.success ? { ...parsed.data } : {};
  for (const u of unitSchemas) {
    const r = u.safeParse(raw);
    if (!r.success) {
      for (const i of r.error.issues) {
        const line = `${i.path.join('.')}: ${i.message} (got ${JSON.stringify(raw[String(i.path[0])])})`;
        if (!problems.includes(line)) problems.push(line);
      }
      continue;
    }
    for (const k of Object.keys(shapeOf(u))) if (!(k in settings)) cfg[k] = (r.data as Record<string, unknown>)[k];
  }
  if (problems.length) throw new ConfigError(problems);
  if (cfg.BYBIT_API_SECRET_FILE) {
    try {
      cfg.BYBIT_API_SECRET = readFileSync(String(cfg.BYBIT_API_SECRET_FILE), 'utf8').trim();
    } catch (e) {
      throw new ConfigError([`BYBIT_API_SECRET_FILE: cannot read (${(e as Error).message})`]);
    }
  }
  return Object.freeze(cfg) as Config;
}

/** Kafka brokers to use: the configured cluster, or the local stack's broker. */
export function kafkaBrokers(cfg: Config): string[] {
  return (cfg.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',').map((s) => s.trim()).filter(Boolean);
}

export function schemaRegistryUrl(cfg: Config): string {
  return cfg.SCHEMA_REGISTRY_URL ?? 'http://127.0.0.1:8081';
}

/** Rows for the README configuration table: name, default, meaning. */
export function settingsTable(unitSchemas: UnitSchemas): Array<{ name: string; default: string; meaning: string }> {
  const all: Array<[string, readonly [z.ZodTypeAny, string]]> = [...Object.entries(settings), ...Object.entries(unitSettings(unitSchemas))];
  return all.map(([name, [s, meaning]]) => {
    const r = s.safeParse(undefined);
    const v = r.success ? r.data : undefined;
    // An empty object (a parsed setting such as RISK_TPSL with nothing in it) reads as unset.
    const empty = typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0;
    const d = v === undefined || empty ? '(unset)' : Array.isArray(v) ? v.join(',') : typeof v === 'object' && v !== null && 'default' in v ? String((v as { default: unknown }).default) : String(v);
    return { name, default: d, meaning };
  });
}
