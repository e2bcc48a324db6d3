// One (re)training round, shared by the service's periodic retraining, `npm run retrain` and the
// tests: chronological split, train a candidate on the older part, evaluate it, the current model
// and the warm-up heuristic on the same held-out recent windows, and apply the promotion rule.
import type { ModelConfig } from './config.ts';
import { evaluate, heuristicProbability, type EvalMetrics } from './evaluate.ts';
import { timeSplit, train, type LabelledRow, type LearnerConfig, type TrainedModel } from './learner.ts';
import { decidePromotion, type PromotionDecision } from './policy.ts';
import type { Tf } from './tf.ts';

export type TrainerConfig = Pick<
  ModelConfig,
  | 'MODEL_HIDDEN_UNITS' | 'MODEL_L2' | 'MODEL_EPOCHS' | 'MODEL_BATCH_SIZE' | 'MODEL_LEARNING_RATE' | 'MODEL_SEED' | 'MODEL_FEATURE_LOOKBACK' | 'MODEL_HORIZON_MS'
  | 'MODEL_HOLDOUT_FRACTION' | 'MODEL_MIN_EDGE' | 'MODEL_FEE_BPS' | 'MODEL_PROMOTION_MARGIN' | 'MODEL_PROMOTION_MIN_Z' | 'MODEL_MIN_EVAL_SAMPLES' | 'WARMUP_HEURISTIC'
>;

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
}

export async function trainingRound(tf: Tf, rows: readonly LabelledRow[], cfg: TrainerConfig, current: TrainedModel | null, onEpoch?: (epoch: number, loss: number) => void): Promise<RoundResult> {
  const { train: tr, holdout } = timeSplit(rows, cfg.MODEL_HOLDOUT_FRACTION);
  if (tr.length === 0 || holdout.length === 0) throw new Error(`not enough samples to train and hold out (${rows.length})`);
  const candidate = await train(tf, tr, learnerConfig(cfg), onEpoch);
  const opts = { minEdge: cfg.MODEL_MIN_EDGE, feeBps: cfg.MODEL_FEE_BPS };
  const feats = holdout.map((r) => r.features);
  const metrics = evaluate(candidate.predict(feats), holdout, opts);
  const cur = current ? evaluate(current.predict(feats), holdout, opts) : null;
  const warmup = evaluate(feats.map((f) => heuristicProbability(f, cfg.WARMUP_HEURISTIC)), holdout, opts);
  const decision = decidePromotion(metrics, cur, warmup, { margin: cfg.MODEL_PROMOTION_MARGIN, minZ: cfg.MODEL_PROMOTION_MIN_Z, minEvalSamples: cfg.MODEL_MIN_EVAL_SAMPLES });
  return {
    candidate,
    trainRange: { fromTs: tr[0]!.ts, toTs: tr[tr.length - 1]!.ts, n: tr.length },
    holdoutRange: { fromTs: holdout[0]!.ts, toTs: holdout[holdout.length - 1]!.ts, n: holdout.length },
    metrics,
    current: cur,
    warmup,
    decision,
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
    ['sim. PnL after fees, bps', (m) => m.pnl_bps.toFixed(1)],
    ['sim. PnL per trade, bps', (m) => m.pnl_bps_per_trade.toFixed(2)],
  ];
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const line = (a: string, cells: string[]) => `${a.padEnd(w0)} | ${cells.map((c) => c.padStart(10)).join(' | ')}`;
  const out = [line('', cols.map((c) => c[0])), '-'.repeat(w0 + 3 + cols.length * 13)];
  for (const [name, f] of rows) out.push(line(name, cols.map(([, m]) => (m ? f(m) : '-'))));
  return out.join('\n');
}
