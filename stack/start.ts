// `npm start`: the whole system on this machine. Brings the local stack up, starts the exchange
// simulator when BYBIT_ENV=sim (unless one already answers on BYBIT_SIM_PORT), then the services.
//   npm start                    every service
//   npm start -- order-manager   one service only
import { loadConfig } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { stackUp } from './stack.ts';
import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { failStartup, startServices } from './service-main.ts';
import { startLiveView } from './live-view.ts';
import { ROOT } from './paths.ts';
import { SERVICES, SIM_BALANCES } from './services.ts';
import { tcpOpen } from './net.ts';
import { startSimulator } from '../sim/server.ts';

// The paper-trading demo on the simulator should show trading within a minute: unless the operator
// chose otherwise, warm-up signals come every 5 s instead of every minute.
// On the simulator there is no ws-gateway service: the order manager reads the exchange's streams
// over its own websocket.
if ((process.env.BYBIT_ENV ?? 'sim') === 'sim') {
  process.env.WARMUP_INTERVAL_MS ??= '5000';
  process.env.EXCHANGE_STREAM_SOURCE ??= 'direct';
}
const cfg = loadConfig();
const log = createLogger(cfg, 'start');
// Until the services run, a failure (a top-level await rejecting) goes through failStartup: printed
// by Node, an error of the Bybit client would show its request (signature header, the secret).
const onStartFailure = (err: Error) => failStartup(err, 'start');
process.once('uncaughtException', onStartFailure);
const wanted = process.argv[2] ? [process.argv[2]] : Object.keys(SERVICES);
for (const w of wanted) if (!SERVICES[w]) throw new Error(`unknown service ${w}; one of: ${Object.keys(SERVICES).join(', ')}`);

await stackUp(cfg, log);
if (cfg.BYBIT_ENV === 'sim') {
  if (await tcpOpen('127.0.0.1', cfg.BYBIT_SIM_PORT)) {
    log.info({ port: cfg.BYBIT_SIM_PORT }, 'using the exchange simulator already answering on BYBIT_SIM_PORT');
  } else {
    const sim = await startSimulator({ port: cfg.BYBIT_SIM_PORT, seed: cfg.SIM_SEED, balances: SIM_BALANCES, credentials: [{ key: cfg.BYBIT_API_KEY, secret: cfg.BYBIT_API_SECRET }] });
    log.info({ rest: sim.restUrl, ws: sim.wsUrl }, 'exchange simulator started');
    process.once('exit', () => void sim.close());
  }
}
// On a terminal the screen belongs to the live view and the JSON logs go to a file.
const logFile = join(ROOT, cfg.STACK_DIR, 'logs', 'pipeline.log');
let logDestination: { write(line: string): void } | undefined;
if (process.stdout.isTTY) {
  mkdirSync(join(ROOT, cfg.STACK_DIR, 'logs'), { recursive: true });
  logDestination = createWriteStream(logFile, { flags: 'a' });
}
const { rt } = await startServices(wanted, { logDestination });
process.off('uncaughtException', onStartFailure);
const view = startLiveView(rt.db, rt.metrics.registry, `admin ${rt.admin.url}   logs ${logDestination ? logFile : 'stdout'}`);
process.once('SIGINT', () => view.stop());
process.once('SIGTERM', () => view.stop());
