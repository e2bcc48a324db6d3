// Command-line entry of the LOCAL STAND-IN schema registry (see registry-server.ts). The local stack
// spawns it detached: `tsx schemas/registry-main.ts --port 8081 --file .stack/schema-registry.json`.
// Deployments use Redpanda's schema registry instead.
import { parseArgs } from 'node:util';
import { loadConfig } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { startRegistry } from './registry-server.ts';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8081' },
    host: { type: 'string', default: '127.0.0.1' },
    file: { type: 'string' },
  },
});

const log = createLogger(loadConfig(process.env, []), 'schema-registry'); // the registry runs no unit
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  log.fatal({ port: values.port }, 'invalid --port');
  process.exit(2);
}

try {
  const registry = await startRegistry({ host: values.host, port, file: values.file, logger: log });
  // The stack script waits for this line (and then polls GET /).
  log.info({ url: registry.url, port: registry.port, file: values.file ?? null }, 'schema registry listening');
  const stop = (signal: string) => {
    log.info({ signal }, 'schema registry stopping');
    registry.close().finally(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
} catch (err) {
  log.fatal({ err }, 'schema registry failed to start');
  process.exit(1);
}
