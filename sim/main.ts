// `npm run sim`: the simulator for a person (paper trading, demos, manual testing) on
// 127.0.0.1:BYBIT_SIM_PORT with the BYBIT_API_KEY / BYBIT_API_SECRET credentials.
// Extra switches (not environment settings, see sim/README.md):
//   --mode=random-walk|pattern|replay   price process (default random-walk)
//   --csv=PATH                          kline CSV for replay
//   --step-ms=N                         price step length (default 1000)
//   --relax-rate-limits                 multiply every rate limit by 1000 (benchmarks)
//   --host=ADDR                         bind address (default 127.0.0.1)
import { loadConfig } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { startSimulator } from './server.ts';
import type { PriceProcessOptions } from './price-process.ts';

function arg(name: string): string | undefined {
  const hit = process.argv.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (!hit) return undefined;
  return hit.includes('=') ? hit.slice(hit.indexOf('=') + 1) : 'true';
}

const cfg = loadConfig();
const logger = createLogger(cfg, 'bybit-sim');
const mode = (arg('mode') ?? 'random-walk') as NonNullable<PriceProcessOptions['mode']>;
if (!['random-walk', 'pattern', 'replay'].includes(mode)) {
  logger.fatal({ mode }, 'unknown --mode (random-walk, pattern, replay)');
  process.exit(2);
}
const sim = await startSimulator({
  port: cfg.BYBIT_SIM_PORT,
  host: arg('host') ?? '127.0.0.1',
  seed: cfg.SIM_SEED,
  credentials: [{ key: cfg.BYBIT_API_KEY, secret: cfg.BYBIT_API_SECRET, uid: '1000001' }],
  priceProcess: { mode, replayCsv: arg('csv'), stepMs: arg('step-ms') ? Number(arg('step-ms')) : undefined },
  rateLimits: arg('relax-rate-limits') ? { multiplier: 1000 } : undefined,
  logger,
});
logger.info({ restUrl: sim.restUrl, wsUrl: sim.wsUrl, apiKey: cfg.BYBIT_API_KEY, seed: cfg.SIM_SEED, mode }, 'Bybit v5 simulator listening');

let closing = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (closing) return;
    closing = true;
    logger.info({ signal: sig }, 'simulator stopping');
    sim.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'simulator close failed');
        process.exit(1);
      },
    );
  });
}
