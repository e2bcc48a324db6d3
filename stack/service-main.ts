// Entry point of a service process (the container's command): `tsx stack/service-main.ts <service>`.
//   setup          migrations + topics (idempotent), then exit
//   order-manager  the order manager's bridges and stages
//   model          the model service
//   signal-bridge | signal-decide | place | track | exchange-streams | events-out | ops
//                  one part of the order manager per process (UNIT_SERVICES in services.ts)
import { createRuntime, runUnits, stopOnSignals, type Runtime } from '../runtime/service.ts';
import { ConfigError, loadConfig } from '../runtime/config.ts';
import { migrateDatabase, ensureAllTopics } from './provision.ts';
import { createLogger, scrubText, secretsOf, syncStderr } from '../runtime/logger.ts';
import { SERVICES, UNIT_SERVICES } from './services.ts';
import { RUNTIME_PARTS, UNIT_SCHEMAS } from './services.ts';

const ALL = { ...SERVICES, ...UNIT_SERVICES };

export async function setup(): Promise<void> {
  const cfg = loadConfig(process.env, UNIT_SCHEMAS);
  const log = createLogger(cfg, 'setup');
  await migrateDatabase(cfg, log);
  await ensureAllTopics(cfg, log);
  log.info('setup done');
}

/**
 * Start services in this process. Several services share one runtime (one admin server, one
 * metrics registry, one database pool): that is how `npm start` runs the whole loop.
 */
export async function startServices(names: string[], opts: { logDestination?: { write(line: string): void } } = {}): Promise<{ rt: Runtime; stop: () => Promise<void> }> {
  for (const n of names) if (!ALL[n]) throw new Error(`unknown service ${n}; one of: setup, ${Object.keys(ALL).join(', ')}`);
  const rt = await createRuntime(names.join('+'), RUNTIME_PARTS, {}, undefined, opts);
  const { stop } = await runUnits(rt, names.flatMap((n) => ALL[n]!.units));
  rt.logger.info({ services: names, admin: rt.admin.url }, 'services started');
  stopOnSignals(stop, rt.logger);
  return { rt, stop };
}

/**
 * A process that could not start: the error (with its causes) through the logger, which scrubs the
 * API secret, signatures and request options out of it, to stderr; then exit 1. Printed as it was
 * (console.error, an unhandled rejection), an error of the Bybit client shows its whole request.
 */
export function failStartup(err: unknown, name: string): never {
  let cfg: Parameters<typeof createLogger>[0];
  try {
    cfg = loadConfig(process.env, UNIT_SCHEMAS);
  } catch {
    cfg = { LOG_LEVEL: 'info', BYBIT_API_SECRET: process.env.BYBIT_API_SECRET ?? '', ADMIN_TOKEN: process.env.ADMIN_TOKEN };
  }
  // A bad configuration: its problems, one per line (no stack to read through).
  if (err instanceof ConfigError) process.stderr.write(`${scrubText(err.message, secretsOf(cfg))}\n`);
  else createLogger({ ...cfg, LOG_LEVEL: cfg.LOG_LEVEL === 'silent' ? 'fatal' : cfg.LOG_LEVEL }, name, syncStderr()).fatal({ err }, 'failed to start');
  process.exit(1);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const name = process.argv[2] ?? 'order-manager';
  (name === 'setup' ? setup() : startServices([name]).then(() => undefined)).catch((err: unknown) => failStartup(err, name));
}
