// The regime study (docs/model.md, "P&L by regime"): what the model, warm-up, buy-and-hold, a coin
// flip and a look-ahead trader make after costs in each of the simulator's pattern regimes.
//
// Per regime and seed: the simulator's own price process (startSimulator with the pattern regime,
// as `npm start` and `npm run proof` pass it; manual clock) at the proof's compressed clock
// (PROOF_SETTINGS: 100 ms steps, horizon 60 steps = 6 s, a warm-up signal per asset every 4 steps,
// ETHUSDT and SOLUSDT); warm-up trades every signal and the order manager's answers are fills at
// the touch with the linear taker fee (stack/model-session.ts); the service's window builder
// labels them; the service's trainer (trainingRound) trains a candidate on the older 75 % and
// evaluates it, and warm-up's heuristic, on the newest 25 %. On those held-out windows every
// strategy is charged by the same cost book and window P&L (model/study.ts). Deterministic: the
// same regime, seed and steps give the same figures.
import { WindowBuilder, type TrainingSample } from '../model/windows.ts';
import { parseModelConfig, type ModelConfig } from '../model/config.ts';
import { loadTf } from '../model/tf.ts';
import { bootstrapOptions, trainingRound } from '../model/trainer.ts';
import { timeSplit } from '../model/learner.ts';
import { costBookOf, labelledRowOf, type BootstrapOptions, type CostEstimate } from '../model/money.ts';
import { decisionSides, heuristicProbability } from '../model/evaluate.ts';
import { buyAndHold, coinFlipSides, evaluatedSeries, oracleEveryWindowSides, perfectSides, sideSeries, summariseRegime, type RegimeSummary, type SeedSeries, type StudyRow } from '../model/study.ts';
import { DEFAULT_INSTRUMENTS } from '../sim/instruments.ts';
import { BLOCK_REGIMES, type PatternRegime } from '../sim/regimes.ts';
import { PROOF_SETTINGS, PROOF_STEP_MS } from './learning-proof.ts';
import { simulateSession } from './model-session.ts';

export const STUDY_REGIMES: readonly PatternRegime[] = ['learnable', 'noise', 'trend-revert', 'momentum-noise'];

/** The model service's settings of the study: its defaults with the proof's compressed clock. */
export function studyConfig(): ModelConfig {
  return parseModelConfig({ ...PROOF_SETTINGS });
}

/**
 * Bootstrap of the study: the service's resamples and seed, a two-sided 95 % percentile interval
 * (one-sided 97.5 % bounds), and blocks of one price block's windows (300 steps: every regime's
 * block; a signal per asset every interval), since a regime's drift holds over its whole block and
 * the model's P&L with it: the service's 20-window blocks would claim too narrow an interval here.
 */
export function studyBootstrap(cfg: ModelConfig): BootstrapOptions {
  const stepsPerSignal = cfg.WARMUP_INTERVAL_MS / PROOF_STEP_MS;
  const block = Math.round((BLOCK_REGIMES.learnable.blockSteps / stepsPerSignal) * cfg.MODEL_ASSETS.length);
  return { ...bootstrapOptions(cfg), confidence: 0.975, block };
}

export interface SeedRun extends SeedSeries {
  regime: PatternRegime;
  steps: number;
  signals: number;
  labelled: number;
  train: number;
  /** The round's promotion decision on these windows (with the proof's MODEL_MIN_EVAL_SAMPLES). */
  promoted: boolean;
  reason: string;
  costs: Record<string, CostEstimate>;
  /** Held-out span, ms of the session's clock. */
  holdoutMs: number;
  seconds: { simulate: number; train: number };
}

/** One regime, one seed: simulate, build windows, train, and every strategy's held-out series. */
export async function runSeed(regime: PatternRegime, seed: number, steps: number, cfg: ModelConfig = studyConfig()): Promise<SeedRun> {
  const t0 = performance.now();
  const session = await simulateSession({
    seed,
    steps,
    cfg,
    // historyMinutes: 1 instead of the default 120 (72,000 steps at 100 ms) of candles before the
    // start: the same generator, but the path starts after 600 history steps instead of 72,000.
    priceProcess: { mode: 'pattern', patternRegime: regime, stepMs: PROOF_STEP_MS, historyMinutes: 1 },
    instruments: DEFAULT_INSTRUMENTS,
  });
  const b = new WindowBuilder({ horizonMs: cfg.MODEL_HORIZON_MS, allowedLatenessMs: cfg.MODEL_ALLOWED_LATENESS_MS, orderEventsMaxWaitMs: cfg.MODEL_ORDER_EVENTS_MAX_WAIT_MS, lookback: cfg.MODEL_FEATURE_LOOKBACK, labelMinMoveBps: cfg.MODEL_LABEL_MIN_MOVE_BPS, strategyId: cfg.MODEL_STRATEGY_ID });
  const samples: TrainingSample[] = session.inputs.flatMap((i) => b.add(i));
  const rows: StudyRow[] = [];
  for (const s of samples) {
    const r = labelledRowOf(s);
    if (r) rows.push({ ...r, asset: s.asset, price_ref: Number(s.details.price_ref), price_horizon: Number(s.details.price_horizon) });
  }
  const t1 = performance.now();
  const { tf } = await loadTf(false);
  const r = await trainingRound(tf, rows, cfg, null);
  const t2 = performance.now();
  // The same split and cost book the round evaluated on (timeSplit is a stable sort by time).
  const { train, holdout } = timeSplit(rows, cfg.MODEL_HOLDOUT_FRACTION, cfg.MODEL_HORIZON_MS);
  const costs = costBookOf(train, cfg.MODEL_COST_WINDOW, cfg.MODEL_FEE_BPS);
  const feats = holdout.map((x) => x.features);
  const gate = { minEdge: cfg.MODEL_MIN_EDGE, costs, minExpectedBps: cfg.MODEL_MIN_EXPECTED_BPS };
  const units = cfg.MODEL_HORIZON_MS / cfg.WARMUP_INTERVAL_MS;
  return {
    regime,
    seed,
    steps,
    signals: session.signals.length,
    labelled: rows.length,
    train: train.length,
    windows: holdout.length,
    series: {
      perfect: sideSeries(holdout, perfectSides(holdout, costs), costs),
      // Checked against the round's own evaluation window by window (evaluatedSeries throws otherwise).
      model: evaluatedSeries(r.metrics, holdout, decisionSides(r.candidate.predict(feats), holdout, gate), costs),
      'warm-up': evaluatedSeries(r.warmup, holdout, decisionSides(feats.map((f) => heuristicProbability(f, cfg.WARMUP_HEURISTIC)), holdout, { ...gate, minExpectedBps: null }), costs),
      'buy-and-hold': buyAndHold(holdout, costs, units),
      'coin-flip': sideSeries(holdout, coinFlipSides(holdout.length, seed), costs),
    },
    oracleEveryWindow: sideSeries(holdout, oracleEveryWindowSides(holdout), costs),
    promoted: r.decision.promote,
    reason: r.decision.reason,
    costs: r.costs,
    holdoutMs: r.holdoutRange.toTs - r.holdoutRange.fromTs,
    seconds: { simulate: (t1 - t0) / 1000, train: (t2 - t1) / 1000 },
  };
}

export interface RegimeResult {
  regime: PatternRegime;
  seeds: Array<Omit<SeedRun, 'series' | 'oracleEveryWindow'>>;
  summary: RegimeSummary;
}

export interface StudyResult {
  conditions: {
    seeds: number[];
    steps: number;
    step_ms: number;
    horizon_steps: number;
    signal_every_steps: number;
    assets: string[];
    holdout_fraction: number;
    exposure_units_buy_and_hold: number;
    bootstrap: BootstrapOptions;
    taker_fee_bps_per_side: number;
  };
  regimes: RegimeResult[];
  seconds: number;
}

export async function runStudy(o: { regimes: readonly PatternRegime[]; seeds: readonly number[]; steps: number; log?: (line: string) => void }): Promise<StudyResult> {
  const cfg = studyConfig();
  const boot = studyBootstrap(cfg);
  const t0 = performance.now();
  const regimes: RegimeResult[] = [];
  for (const regime of o.regimes) {
    const runs: SeedRun[] = [];
    for (const seed of o.seeds) {
      const run = await runSeed(regime, seed, o.steps, cfg);
      runs.push(run);
      o.log?.(`${regime} seed ${seed}: ${run.windows} held-out windows, model ${run.series.model.trades} trades, simulate ${run.seconds.simulate.toFixed(1)} s, train ${run.seconds.train.toFixed(1)} s, ${run.promoted ? 'promoted' : 'not promoted'} (${run.reason})`);
    }
    regimes.push({ regime, seeds: runs.map(({ series: _s, oracleEveryWindow: _o, ...rest }) => rest), summary: summariseRegime(runs, boot) });
  }
  return {
    conditions: {
      seeds: [...o.seeds],
      steps: o.steps,
      step_ms: PROOF_STEP_MS,
      horizon_steps: cfg.MODEL_HORIZON_MS / PROOF_STEP_MS,
      signal_every_steps: cfg.WARMUP_INTERVAL_MS / PROOF_STEP_MS,
      assets: [...cfg.MODEL_ASSETS],
      holdout_fraction: cfg.MODEL_HOLDOUT_FRACTION,
      exposure_units_buy_and_hold: cfg.MODEL_HORIZON_MS / cfg.WARMUP_INTERVAL_MS,
      bootstrap: boot,
      taker_fee_bps_per_side: 5.5,
    },
    regimes,
    seconds: (performance.now() - t0) / 1000,
  };
}

const f = (x: number | null, d = 2) => (x === null ? '–' : x.toFixed(d));

/** The study as markdown: one table of every regime and strategy, then model − warm-up per regime. */
export function studyMarkdown(s: StudyResult): string {
  const out = [
    '| Regime | Strategy | Windows | Trades | Hit rate | Turnover / window | P&L total, bps | P&L / window, bps [95 % CI] | P&L / trade | Per seed: mean (sd) [min, max] | Max drawdown (worst seed) | Mean / sd per window |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of s.regimes) {
    for (const [name, m] of Object.entries(r.summary.strategies)) {
      const p = m.pnl_per_window;
      out.push(`| ${r.regime} | ${name} | ${m.windows} | ${m.trades} | ${f(m.hit_rate, 3)} | ${f(m.turnover_per_window, 2)} | ${f(m.pnl_total_bps, 0)} | ${f(p.mean)} [${f(p.lower)}, ${f(p.upper)}] | ${f(m.pnl_per_trade)} | ${f(m.per_seed.mean)} (${f(m.per_seed.sd)}) [${f(m.per_seed.min)}, ${f(m.per_seed.max)}] | ${f(m.max_drawdown_bps, 0)} | ${f(m.sharpe_per_window, 3)} |`);
    }
  }
  out.push('', '| Regime | Model − warm-up, bps / window [95 % CI] | Per seed | Promoted (seeds) | Oracle every window, bps / trade | Coin flip: cost / trade |', '|---|---|---|---|---|---|');
  for (const r of s.regimes) {
    const d = r.summary.model_minus_warmup;
    const coin = r.summary.strategies['coin-flip'];
    out.push(`| ${r.regime} | ${f(d.pooled.mean)} [${f(d.pooled.lower)}, ${f(d.pooled.upper)}] | ${d.per_seed.values.map((v) => f(v)).join(', ')} | ${r.seeds.filter((x) => x.promoted).length} of ${r.seeds.length} | ${f(r.summary.oracle_every_window.pnl_per_trade)} | ${f(coin.cost_per_trade)} |`);
  }
  return out.join('\n');
}
