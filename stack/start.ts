// `npm start`: the whole system on this machine. Brings the local stack up, starts the exchange
// simulator when BYBIT_ENV=sim (unless one already answers on BYBIT_SIM_PORT), then the services.
// The simulator's paper account lives in STACK_DIR/sim/state-<port>.json and continues across
// restarts, as the orders in PostgreSQL do.
//   npm start                          every service
//   npm start -- order-manager         one service only
//   npm start -- --fresh-account       the simulator opens a fresh paper account (old file kept as .bak)
import { loadConfig } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { paths, stackUp } from './stack.ts';
import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { failStartup, startServices } from './service-main.ts';
import { startLiveView } from './live-view.ts';
import { ROOT } from '../runtime/paths.ts';
import { SERVICES, SIM_BALANCES } from './services.ts';
import { tcpOpen } from './net.ts';
import { startSimulator } from '../sim/server.ts';
import { defaultStateFile } from '../sim/persistence.ts';
import { UNIT_SCHEMAS } from './services.ts';

// The paper-trading demo on the simulator should show trading within a minute: unless the operator
// chose otherwise, warm-up signals come every 5 s instead of every minute.
// On the simulator there is no ws-gateway service: the order manager reads the exchange's streams
// over its own websocket.
if ((process.env.BYBIT_ENV ?? 'sim') === 'sim') {
  process.env.WARMUP_INTERVAL_MS ??= '5000';
  process.env.EXCHANGE_STREAM_SOURCE ??= 'direct';
}
const cfg = loadConfig(process.env, UNIT_SCHEMAS);
const log = createLogger(cfg, 'start');
// Until the services run, a failure (a top-level await rejecting) goes through failStartup: printed
// by Node, an error of the Bybit client would show its request (signature header, the secret).
const onStartFailure = (err: Error) => failStartup(err, 'start');
process.once('uncaughtException', onStartFailure);
const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('--'));
for (const f of flags) if (f !== '--fresh-account') throw new Error(`unknown option ${f}; known: --fresh-account`);
const freshAccount = flags.includes('--fresh-account');
const names = args.filter((a) => !a.startsWith('--'));
if (freshAccount && cfg.BYBIT_ENV !== 'sim') throw new Error(`--fresh-account is for the simulator's paper account (BYBIT_ENV=sim), not ${cfg.BYBIT_ENV}`);
const wanted = names[0] ? [names[0]] : Object.keys(SERVICES);
for (const w of wanted) if (!SERVICES[w]) throw new Error(`unknown service ${w}; one of: ${Object.keys(SERVICES).join(', ')}`);

await stackUp(cfg, log);
if (cfg.BYBIT_ENV === 'sim') {
  if (await tcpOpen('127.0.0.1', cfg.BYBIT_SIM_PORT)) {
    // Its account belongs to the process that runs it: a fresh one cannot be opened from here.
    if (freshAccount) throw new Error(`--fresh-account: a simulator already answers on port ${cfg.BYBIT_SIM_PORT}; stop it first`);
    log.info({ port: cfg.BYBIT_SIM_PORT }, 'using the exchange simulator already answering on BYBIT_SIM_PORT');
  } else {
    // The simulator saves its account at process exit by itself (and as it changes).
    const sim = await startSimulator({
      port: cfg.BYBIT_SIM_PORT,
      seed: cfg.SIM_SEED,
      // A market where a model can earn its costs, or one where it cannot (sim/README.md).
      priceProcess: { mode: cfg.SIM_PRICE_MODE, patternRegime: cfg.SIM_PATTERN_REGIME },
      balances: SIM_BALANCES,
      credentials: [{ key: cfg.BYBIT_API_KEY, secret: cfg.BYBIT_API_SECRET }],
      stateFile: defaultStateFile(paths(cfg).dir, cfg.BYBIT_SIM_PORT),
      fresh: freshAccount,
    });
    const account = sim.accountInfo();
    log.info({ rest: sim.restUrl, ws: sim.wsUrl, priceMode: cfg.SIM_PRICE_MODE, patternRegime: cfg.SIM_PRICE_MODE === 'pattern' ? cfg.SIM_PATTERN_REGIME : undefined, stateFile: account.stateFile, accountCreatedAt: new Date(account.createdAt).toISOString(), starts: account.starts }, 'exchange simulator started');
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
