// `npm run sim`: the simulator for a person (paper trading, demos, manual testing) on
// 127.0.0.1:BYBIT_SIM_PORT with the BYBIT_API_KEY / BYBIT_API_SECRET credentials. The paper account
// lives in STACK_DIR/sim/state-<port>.json and continues across restarts (the same file `npm start`
// uses for its simulator).
// Extra switches (not environment settings, see sim/README.md):
//   --fresh-account                     open a fresh paper account (the old file is kept as .bak)
//   --mode=random-walk|pattern|replay   price process (default SIM_PRICE_MODE, random-walk)
//   --regime=learnable|noise|...        pattern mode's regime (default SIM_PATTERN_REGIME, momentum-noise)
//   --csv=PATH                          kline CSV for replay
//   --step-ms=N                         price step length (default 1000)
//   --relax-rate-limits                 multiply every rate limit by 1000 (benchmarks)
//   --host=ADDR                         bind address (default 127.0.0.1)
//   --instruments=PATH                  JSON file of the instruments to list (sim/listing.ts)
import { resolve } from 'node:path';
import { loadConfig } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { ROOT } from '../runtime/paths.ts';
import { defaultStateFile } from './persistence.ts';
import { startSimulator, type Simulator } from './server.ts';
import type { PriceProcessOptions } from './price-process.ts';
import { PATTERN_REGIMES, type PatternRegime } from './regimes.ts';

function arg(name: string): string | undefined {
  const hit = process.argv.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (!hit) return undefined;
  return hit.includes('=') ? hit.slice(hit.indexOf('=') + 1) : 'true';
}

const cfg = loadConfig(process.env, []); // the simulator runs no unit
const logger = createLogger(cfg, 'bybit-sim');
const mode = (arg('mode') ?? cfg.SIM_PRICE_MODE) as NonNullable<PriceProcessOptions['mode']>;
if (!['random-walk', 'pattern', 'replay'].includes(mode)) {
  logger.fatal({ mode }, 'unknown --mode (random-walk, pattern, replay)');
  process.exit(2);
}
const regime = (arg('regime') ?? cfg.SIM_PATTERN_REGIME) as PatternRegime;
if (!PATTERN_REGIMES.includes(regime)) {
  logger.fatal({ regime }, `unknown --regime (${PATTERN_REGIMES.join(', ')})`);
  process.exit(2);
}
let sim: Simulator;
try {
  sim = await startSimulator({
    port: cfg.BYBIT_SIM_PORT,
    host: arg('host') ?? '127.0.0.1',
    seed: cfg.SIM_SEED,
    credentials: [{ key: cfg.BYBIT_API_KEY, secret: cfg.BYBIT_API_SECRET, uid: '1000001' }],
    priceProcess: { mode, patternRegime: regime, replayCsv: arg('csv'), stepMs: arg('step-ms') ? Number(arg('step-ms')) : undefined },
    instrumentsFile: arg('instruments'),
    rateLimits: arg('relax-rate-limits') ? { multiplier: 1000 } : undefined,
    stateFile: defaultStateFile(resolve(ROOT, cfg.STACK_DIR), cfg.BYBIT_SIM_PORT),
    fresh: arg('fresh-account') !== undefined,
    logger,
  });
} catch (err) {
  logger.fatal((err as Error).message);
  process.exit(1);
}
const account = sim.accountInfo();
logger.info({ restUrl: sim.restUrl, wsUrl: sim.wsUrl, apiKey: cfg.BYBIT_API_KEY, seed: cfg.SIM_SEED, mode, regime: mode === 'pattern' ? regime : undefined, stateFile: account.stateFile, accountCreatedAt: new Date(account.createdAt).toISOString(), starts: account.starts }, 'Bybit v5 simulator listening');

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
