// `npm start`: the whole system on this machine. Brings the local stack up, starts the exchange
// simulator when BYBIT_ENV=sim (unless one already answers on BYBIT_SIM_PORT), then the services.
//   npm start                    every service
//   npm start -- order-manager   one service only
import { loadConfig } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { stackUp } from './stack.ts';
import { startService } from './service-main.ts';
import { SERVICES, SIM_BALANCES } from './services.ts';
import { tcpOpen } from './net.ts';
import { startSimulator } from '../sim/server.ts';

const cfg = loadConfig();
const log = createLogger(cfg, 'start');
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
for (const name of wanted) await startService(name);
