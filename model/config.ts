// The model service's settings: one zod schema, parsed once from an env-like object, frozen
// (house style 7). Every setting has its default and meaning here; docs/model.md lists them all
// (generated from `modelSettingsTable()`).
import { z } from 'zod';
import { flag, int, num, opt } from '../runtime/setting-types.ts';

const list = z.string().transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean));

export const configSchema = z
  .object({
    TOPIC_PREFIX: opt(z.string().regex(/^[a-zA-Z0-9._-]*$/).default('')).describe('Prefix for every topic and consumer group (as in runtime/config.ts).'),
    AMQP_URL: opt(z.string().default('amqp://guest:guest@127.0.0.1:5672')).describe('RabbitMQ connection string (as in runtime/config.ts).'),
    MODEL_ASSETS: opt(list.pipe(z.array(z.string().regex(/^[A-Z0-9]{2,32}$/)).min(1)).default('BTCUSDT,ETHUSDT')).describe('Comma-separated symbols the model service trades (warm-up and model mode).'),
    MODEL_STRATEGY_ID: opt(z.string().min(1).max(256).default('model-service')).describe('strategy_id of every emitted signal; order events of other strategies are ignored for training.'),
    MODEL_CONTROL_STRATEGY_ID: opt(z.string().max(256).default('')).describe('Control arm: when set, in model mode the service also emits the warm-up heuristic\'s signals (WARMUP_INTERVAL_MS, warm-up sizes) under this strategy_id, so the order manager\'s books give the model\'s and warm-up\'s P&L after costs over the same period. Its order events are not trained on. Empty: off.'),
    MODEL_HORIZON_MS: opt(int.min(1).default(60_000)).describe('Label horizon: the outcome of a signal is judged on the market price this long after the signal time.'),
    MODEL_ALLOWED_LATENESS_MS: opt(int.min(0).default(5_000)).describe('How late (event time behind the newest ticker of the asset) a ticker or order event may arrive and still count; a window closes at signal time + horizon + lateness.'),
    MODEL_ORDER_EVENTS_MAX_WAIT_MS: opt(int.min(0).default(120_000)).describe('After a window closes, how much longer (ticker event time) to wait for order events of a signal with no final order event before building the sample without them.'),
    MODEL_FEATURE_LOOKBACK: opt(int.min(5).max(1000).default(60)).describe('Tickers of history behind each feature vector (returns, volatility, autocorrelation).'),
    MODEL_LABEL_MIN_MOVE_BPS: opt(num.min(0).default(0)).describe('Market moves over the horizon smaller than this (bps) are "flat": no direction label (the reward is still recorded).'),
    MODEL_FEE_BPS: opt(num.min(0).default(10)).describe('Fee per side (entry or exit), bps of notional, charged by the expected-P&L decision and the money evaluation until the service has measured the fee rate of its own fills of an asset (spot taker 0.1 %; the linear taker fee is 5.5).'),
    MODEL_COST_WINDOW: opt(int.min(10).default(500)).describe('Costs and moves are measured per asset over this many recent windows of its own signals: fee and slippage beyond the half spread of the filled ones, and the mean absolute market move over the horizon.'),
    MODEL_MIN_EXPECTED_BPS: opt(num.min(0).default(2)).describe('Model mode trades only when the expected return of the side after round-trip costs, |2P - 1| x E|move| - 2 x (fee + half spread + slippage), is at least this many bps (the margin); otherwise it holds.'),
    MODEL_FULL_SIZE_BPS: opt(num.positive().default(20)).describe('Expected net return (bps above MODEL_MIN_EXPECTED_BPS) at which a model signal reaches MODEL_MAX_AMOUNT; sizes grow linearly from MODEL_MIN_AMOUNT at the margin.'),
    MODEL_EXPOSURE_SCALE: opt(num.positive().default(10_000)).describe('Quote notional that maps to exposure feature 1.0 (signed position notional / scale, clipped to [-3, 3]).'),
    MODEL_HIDDEN_UNITS: opt(int.min(2).max(512).default(16)).describe('Units of each of the two hidden layers of the MLP.'),
    MODEL_EPOCHS: opt(int.min(1).max(500).default(8)).describe('Epochs of a full (re)training.'),
    MODEL_L2: opt(num.min(0).max(1).default(0.003)).describe('L2 penalty on every kernel: keeps the small model from fitting noise (on a random walk it then stays near 0.5 and emits nothing).'),
    MODEL_BATCH_SIZE: opt(int.min(1).max(10_000).default(64)).describe('Mini-batch size of training and online updates.'),
    MODEL_LEARNING_RATE: opt(num.positive().max(1).default(0.005)).describe('Adam learning rate.'),
    MODEL_SEED: opt(int.default(7)).describe('Seed of weight initialisation, shuffling and warm-up randomness (deterministic training and replays).'),
    MODEL_HOLDOUT_FRACTION: opt(num.min(0.05).max(0.5).default(0.25)).describe('Most recent fraction of the samples (by signal time) held out for evaluation; never trained on by the candidate.'),
    MODEL_MIN_TRAIN_SAMPLES: opt(int.min(10).default(500)).describe('Fewest labelled samples before a (re)training runs.'),
    MODEL_MAX_TRAIN_SAMPLES: opt(int.min(100).default(50_000)).describe('Most recent labelled samples a retraining reads from PostgreSQL.'),
    MODEL_RETRAIN_CRON: opt(z.string().default('*/15 * * * *')).describe('node-cron schedule of the periodic retraining (inside the service process).'),
    MODEL_ONLINE_BATCH: opt(int.min(1).default(64)).describe('Online learning: after this many new labelled samples the active model is evaluated on them (prequential), then fine-tuned on them for one epoch.'),
    MODEL_MIN_EDGE: opt(num.min(0).max(0.5).default(0.03)).describe('The model emits a signal only when |P(up) - 0.5| >= this (and the expected return after costs clears MODEL_MIN_EXPECTED_BPS); otherwise it holds (no signal).'),
    MODEL_PROMOTION_MARGIN_BPS: opt(num.min(0).default(0.5)).describe('A candidate is promoted only when the lower bound of the bootstrap interval of its per-window P&L after costs minus the current model\'s (or, with none, warm-up\'s) on the same held-out windows exceeds this many bps (and its own P&L lower bound exceeds 0).'),
    MODEL_PROMOTION_CONFIDENCE: opt(num.min(0.5).max(0.999).default(0.95)).describe('One-sided confidence of the bootstrap bounds of promotion and live rollback.'),
    MODEL_BOOTSTRAP_RESAMPLES: opt(int.min(100).max(100_000).default(2000)).describe('Resamples of the paired bootstrap (seeded with MODEL_SEED: the same windows give the same bounds).'),
    MODEL_BOOTSTRAP_BLOCK: opt(int.min(1).default(20)).describe('Moving-block length of the bootstrap, in windows: neighbouring windows share a market regime, so they are resampled together.'),
    MODEL_MAX_DRAWDOWN_BPS: opt(num.positive().default(1000)).describe('A candidate is promoted only when the max drawdown of its cumulative P&L after costs over the held-out windows (bps of one unit of notional per trade) is at most this.'),
    MODEL_MAX_ECE: opt(num.min(0).max(1).default(0.08)).describe('...and its expected calibration error on the held-out windows is at most this.'),
    MODEL_MIN_EVAL_SAMPLES: opt(int.min(10).default(200)).describe('Fewest held-out samples a candidate must have traded on to be judged at all.'),
    MODEL_SWITCH_MIN_SAMPLES: opt(int.min(1).default(200)).describe('Warm-up -> model: fewest windows the active version would have traded after costs since its promotion (judged in shadow, out of sample) before it may switch; then the bootstrap lower bound of its P&L per window must be above 0, and those of its differences over warm-up\'s shadow and over holding one side per asset on the same windows above MODEL_PROMOTION_MARGIN_BPS.'),
    MODEL_LIVE_WINDOW: opt(int.min(10).default(200)).describe('Live record of the model: its last this-many signals. Once full, it rolls back (to the previous version, or warm-up without one) when the upper bound of the bootstrap interval of its P&L after costs minus warm-up\'s shadow on the same windows is below 0, or that of its own P&L is.'),
    MODEL_SIGNAL_INTERVAL_MS: opt(int.min(100).default(60_000)).describe('Model mode: how often each asset is considered for a signal.'),
    MODEL_MIN_AMOUNT: opt(num.positive().default(10)).describe('Model mode: smallest signal amount (quote currency), at the expected-return margin.'),
    MODEL_MAX_AMOUNT: opt(num.positive().default(200)).describe('Model mode: largest signal amount (quote currency), at MODEL_FULL_SIZE_BPS of expected net return above the margin.'),
    MODEL_EXIT_AT_HORIZON: opt(flag.default('true')).describe('Model mode: close each entry at its horizon (MODEL_HORIZON_MS after the signal) with an opposite signal of the quantity it filled (metadata.mode "exit"), so the books hold what the model bets on and is judged on (a round trip over the horizon) and not every entry until a later opposite signal. Warm-up and the control arm are not exited. false: entries are held.'),
    MODEL_EXIT_MAX_ATTEMPTS: opt(int.min(1).default(5)).describe('Horizon exits: how many exit signals one entry gets (a refused, dropped or unfilled exit is retried after MODEL_SIGNAL_INTERVAL_MS, doubling, at most a horizon) before it is given up (logged, counted in model_service_exits_total{result="given_up"}).'),
    WARMUP_DURATION_MS: opt(int.min(0).default(3_600_000)).describe('Warm-up lasts at least this long (from the first start) before the service may switch to a model.'),
    WARMUP_INTERVAL_MS: opt(int.min(100).default(60_000)).describe('Warm-up: one signal per asset every this many ms (the frequency).'),
    WARMUP_MIN_AMOUNT: opt(num.positive().default(10)).describe('Warm-up: smallest signal amount (quote currency).'),
    WARMUP_MAX_AMOUNT: opt(num.positive().default(50)).describe('Warm-up: largest signal amount (quote currency).'),
    WARMUP_RANDOMNESS: opt(num.min(0).max(1).default(0.3)).describe('Warm-up: probability that a signal\'s side is a coin flip instead of the heuristic\'s; 1 = fully random, 0 = pure heuristic. Also reported as metadata.randomness_level.'),
    WARMUP_HEURISTIC: opt(z.enum(['momentum', 'mean_reversion']).default('momentum')).describe('Warm-up heuristic on recent returns: follow them (momentum) or fade them (mean_reversion).'),
    MODEL_SIGNALS_QUEUE: opt(z.string().min(1).default('model-service.trading_signals')).describe('RabbitMQ queue the signal-out bridge publishes to (durable, persistent messages, publisher confirms).'),
    MODEL_BRIDGE_BATCH_MAX: opt(int.min(1).max(10_000).default(200)).describe('Most signals the signal-out bridge publishes before waiting for confirms and committing offsets.'),
    MODEL_BRIDGE_RETRY_MAX_MS: opt(int.min(100).default(10_000)).describe('Longest backoff of the signal-out bridge between RabbitMQ reconnects / publish retries.'),
    MODEL_MODE_CHECK_MS: opt(int.min(100).default(10_000)).describe('How often the mode controller re-checks the switch / rollback rules.'),
    MODEL_TFJS_NODE: opt(flag.default('true')).describe('Use @tensorflow/tfjs-node when it is installed (production image); the pure JS CPU backend otherwise.'),
  })
  .refine((c) => c.WARMUP_MIN_AMOUNT <= c.WARMUP_MAX_AMOUNT, { message: 'WARMUP_MIN_AMOUNT must not exceed WARMUP_MAX_AMOUNT', path: ['WARMUP_MIN_AMOUNT'] })
  .refine((c) => c.MODEL_MIN_AMOUNT <= c.MODEL_MAX_AMOUNT, { message: 'MODEL_MIN_AMOUNT must not exceed MODEL_MAX_AMOUNT', path: ['MODEL_MIN_AMOUNT'] });

export type ModelConfig = Readonly<z.output<typeof configSchema>>;

export class ModelConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid model-service configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ModelConfigError';
  }
}

/** Parse an env-like object (process.env by default); throws listing every problem. */
export function parseModelConfig(env: Record<string, string | undefined> = process.env): ModelConfig {
  const keys = Object.keys(configSchema.innerType().innerType().shape);
  const raw: Record<string, string | undefined> = {};
  for (const k of keys) raw[k] = env[k];
  const r = configSchema.safeParse(raw);
  if (!r.success) throw new ModelConfigError(r.error.issues.map((i) => `${i.path.join('.')}: ${i.message} (got ${JSON.stringify(raw[String(i.path[0])])})`));
  return Object.freeze({ ...r.data, MODEL_ASSETS: Object.freeze([...r.data.MODEL_ASSETS]) as string[] });
}

/** Rows for docs/model.md: name, default, meaning. */
export function modelSettingsTable(): Array<{ name: string; default: string; meaning: string }> {
  const shape = configSchema.innerType().innerType().shape as Record<string, z.ZodTypeAny>;
  return Object.entries(shape).map(([name, s]) => {
    const r = s.safeParse(undefined);
    const d = r.success ? (Array.isArray(r.data) ? r.data.join(',') : String(r.data)) : '(unset)';
    return { name, default: d, meaning: s.description ?? '' };
  });
}
