// One (re)training round, shared by the service's periodic retraining, `npm run retrain` and the
// tests: chronological split, train a candidate on the older part, evaluate it, the current model
// and the warm-up heuristic on the same held-out recent windows, and apply the promotion rule.
import type { ModelConfig } from './config.ts';
import { evaluate, heuristicProbability, type EvalMetrics } from './evaluate.ts';
import { timeSplit, train, type LabelledRow, type LearnerConfig, type TrainedModel } from './learner.ts';
import { decidePromotion, type PromotionDecision } from './policy.ts';
import { costBookOf, type BootstrapOptions, type CostEstimate } from './money.ts';
import type { Tf } from './tf.ts';

export type TrainerConfig = Pick<
  ModelConfig,
  | 'MODEL_HIDDEN_UNITS' | 'MODEL_L2' | 'MODEL_EPOCHS' | 'MODEL_BATCH_SIZE' | 'MODEL_LEARNING_RATE' | 'MODEL_SEED' | 'MODEL_FEATURE_LOOKBACK' | 'MODEL_HORIZON_MS'
  | 'MODEL_HOLDOUT_FRACTION' | 'MODEL_MIN_EDGE' | 'MODEL_FEE_BPS' | 'MODEL_MIN_EVAL_SAMPLES' | 'WARMUP_HEURISTIC'
  | 'MODEL_COST_WINDOW' | 'MODEL_MIN_EXPECTED_BPS' | 'MODEL_PROMOTION_MARGIN_BPS' | 'MODEL_PROMOTION_CONFIDENCE' | 'MODEL_BOOTSTRAP_RESAMPLES' | 'MODEL_BOOTSTRAP_BLOCK'
  | 'MODEL_MAX_DRAWDOWN_BPS' | 'MODEL_MAX_ECE'
>;

/** The bootstrap of promotion and live rollback, seeded with MODEL_SEED. */
export function bootstrapOptions(c: Pick<ModelConfig, 'MODEL_BOOTSTRAP_RESAMPLES' | 'MODEL_SEED' | 'MODEL_PROMOTION_CONFIDENCE' | 'MODEL_BOOTSTRAP_BLOCK'>): BootstrapOptions {
  return { resamples: c.MODEL_BOOTSTRAP_RESAMPLES, seed: c.MODEL_SEED, confidence: c.MODEL_PROMOTION_CONFIDENCE, block: c.MODEL_BOOTSTRAP_BLOCK };
}

export function learnerConfig(c: TrainerConfig): LearnerConfig {
  return { hiddenUnits: c.MODEL_HIDDEN_UNITS, l2: c.MODEL_L2, epochs: c.MODEL_EPOCHS, batchSize: c.MODEL_BATCH_SIZE, learningRate: c.MODEL_LEARNING_RATE, seed: c.MODEL_SEED, lookback: c.MODEL_FEATURE_LOOKBACK, horizonMs: c.MODEL_HORIZON_MS };
}

export interface RoundResult {
  candidate: TrainedModel;
  trainRange: { fromTs: number; toTs: number; n: number };
  holdoutRange: { fromTs: number; toTs: number; n: number };
  metrics: EvalMetrics;
  current: EvalMetrics | null;
  warmup: EvalMetrics;
  decision: PromotionDecision;
  /** Costs measured on the training part and charged on the held-out windows, per asset. */
  costs: Record<string, CostEstimate>;
}

export async function trainingRound(tf: Tf, rows: readonly LabelledRow[], cfg: TrainerConfig, current: TrainedModel | null, onEpoch?: (epoch: number, loss: number) => void): Promise<RoundResult> {
  // Purged by the horizon: no training label overlaps a held-out window's.
  const { train: tr, holdout } = timeSplit(rows, cfg.MODEL_HOLDOUT_FRACTION, cfg.MODEL_HORIZON_MS);
  if (tr.length === 0 || holdout.length === 0) throw new Error(`not enough samples to train and hold out (${rows.length})`);
  const candidate = await train(tf, tr, learnerConfig(cfg), onEpoch);
  // Costs from the training part only: the held-out windows are charged what was known before them.
  const book = costBookOf(tr, cfg.MODEL_COST_WINDOW, cfg.MODEL_FEE_BPS);
  const opts = { minEdge: cfg.MODEL_MIN_EDGE, costs: book, minExpectedBps: cfg.MODEL_MIN_EXPECTED_BPS };
  const feats = holdout.map((r) => r.features);
  const metrics = evaluate(candidate.predict(feats), holdout, opts);
  const cur = current ? evaluate(current.predict(feats), holdout, opts) : null;
  // Warm-up as it trades: every window it has a side for, whatever the costs.
  const warmup = evaluate(feats.map((f) => heuristicProbability(f, cfg.WARMUP_HEURISTIC)), holdout, { ...opts, minExpectedBps: null });
  const decision = decidePromotion(metrics, cur, warmup, {
    marginBps: cfg.MODEL_PROMOTION_MARGIN_BPS,
    minEvalSamples: cfg.MODEL_MIN_EVAL_SAMPLES,
    maxDrawdownBps: cfg.MODEL_MAX_DRAWDOWN_BPS,
    maxEce: cfg.MODEL_MAX_ECE,
    bootstrap: bootstrapOptions(cfg),
  });
  const costs: Record<string, CostEstimate> = {};
  for (const a of [...new Set(rows.map((r) => r.asset ?? ''))].sort()) costs[a] = book.estimate(a);
  return {
    candidate,
    trainRange: { fromTs: tr[0]!.ts, toTs: tr[tr.length - 1]!.ts, n: tr.length },
    holdoutRange: { fromTs: holdout[0]!.ts, toTs: holdout[holdout.length - 1]!.ts, n: holdout.length },
    metrics,
    current: cur,
    warmup,
    decision,
    costs,
  };
}

/** A short, stable version name: time of the newest training sample plus a data hash. */
export function versionName(trainToTs: number, seed: number, n: number): string {
  const d = new Date(trainToTs).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `m${d}-${n}-${(seed >>> 0).toString(16)}`;
}

/** Metrics table for logs and the retrain CLI. */
export function metricsTable(r: Pick<RoundResult, 'metrics' | 'current' | 'warmup'>): string {
  const cols: Array<[string, EvalMetrics | null]> = [['candidate', r.metrics], ['current', r.current], ['warm-up', r.warmup]];
  const rows: Array<[string, (m: EvalMetrics) => string]> = [
    ['held-out samples', (m) => String(m.n)],
    ['traded (|p-0.5| >= edge)', (m) => String(m.traded)],
    ['hit rate (traded)', (m) => m.hit_rate.toFixed(4)],
    ['hit rate (all)', (m) => m.hit_rate_all.toFixed(4)],
    ['log-loss', (m) => m.log_loss.toFixed(4)],
    ['Brier', (m) => m.brier.toFixed(4)],
    ['calibration error (ECE)', (m) => m.ece.toFixed(4)],
    ['P&L after costs, bps', (m) => m.pnl_bps.toFixed(1)],
    ['P&L per trade, bps', (m) => m.pnl_bps_per_trade.toFixed(2)],
    ['P&L per window, bps', (m) => m.pnl_bps_per_window.toFixed(3)],
    ['max drawdown, bps', (m) => m.max_drawdown_bps.toFixed(1)],
  ];
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const line = (a: string, cells: string[]) => `${a.padEnd(w0)} | ${cells.map((c) => c.padStart(10)).join(' | ')}`;
  const out = [line('', cols.map((c) => c[0])), '-'.repeat(w0 + 3 + cols.length * 13)];
  for (const [name, f] of rows) out.push(line(name, cols.map(([, m]) => (m ? f(m) : '-'))));
  return out.join('\n');
}

const summary = (m: EvalMetrics) => ({
  hit_rate: m.hit_rate,
  traded: m.traded,
  brier: m.brier,
  ece: m.ece,
  pnl_bps: m.pnl_bps,
  pnl_bps_per_window: m.pnl_bps_per_window,
  max_drawdown_bps: m.max_drawdown_bps,
});

/**
 * What model_versions.metrics keeps of a round: the candidate's held-out metrics (without the
 * per-window P&L series), the decision with both bootstraps, the baselines' figures on the same
 * windows and the costs charged.
 */
export function versionMetrics(r: RoundResult, currentVersion: string | null): Record<string, unknown> {
  const { window_pnl: _omit, ...m } = r.metrics;
  return {
    ...m,
    decision: r.decision,
    current: r.current && { version: currentVersion, ...summary(r.current) },
    warmup: summary(r.warmup),
    costs: r.costs,
    holdout_from_ts: r.holdoutRange.fromTs,
    holdout_to_ts: r.holdoutRange.toTs,
  };
}
