// The rules that decide which model trades: the promotion rule (a candidate against the current
// model, or against warm-up and a coin flip when there is none, on the same held-out windows) and
// the mode controller (warm-up <-> model, rollback on live degradation). Pure: inputs in, a
// decision with its reason and numbers out; the service logs, counts, stores and publishes it.
import type { EvalMetrics } from './evaluate.ts';

export interface PromotionRule {
  margin: number;
  minZ: number;
  minEvalSamples: number;
}

export interface PromotionDecision {
  promote: boolean;
  reason: string;
  baseline: 'current' | 'warmup' | 'coin_flip';
  baseline_hit_rate: number;
  z: number;
}

/** Binomial z-score of `hits` out of `n` against success probability `p0`. */
export function zScore(hits: number, n: number, p0: number): number {
  if (n === 0) return 0;
  const sd = Math.sqrt(n * p0 * (1 - p0));
  return sd > 0 ? (hits - n * p0) / sd : 0;
}

/**
 * Promote when, on the same held-out windows: the candidate traded on at least minEvalSamples, its
 * hit rate beats the baseline's by at least `margin`, its hits beat the baseline rate with z >= minZ,
 * and its Brier score is no worse than the baseline's (a coin flip's 0.25 without a current model).
 * Baseline: the current model when there is one; else the better of the warm-up heuristic and 0.5.
 */
export function decidePromotion(candidate: EvalMetrics, current: EvalMetrics | null, warmup: EvalMetrics, rule: PromotionRule): PromotionDecision {
  let baseline: PromotionDecision['baseline'];
  let rate: number;
  let brier: number;
  if (current && current.traded >= rule.minEvalSamples) {
    baseline = 'current';
    rate = Math.max(0.5, current.hit_rate);
    brier = current.brier;
  } else if (warmup.traded >= rule.minEvalSamples && warmup.hit_rate > 0.5) {
    baseline = 'warmup';
    rate = warmup.hit_rate;
    brier = 0.25;
  } else {
    baseline = 'coin_flip';
    rate = 0.5;
    brier = 0.25;
  }
  const z = zScore(candidate.hits, candidate.traded, rate);
  const out = (promote: boolean, reason: string): PromotionDecision => ({ promote, reason, baseline, baseline_hit_rate: rate, z });
  if (candidate.traded < rule.minEvalSamples) return out(false, `too_few_traded (${candidate.traded} < ${rule.minEvalSamples})`);
  if (candidate.hit_rate < rate + rule.margin) return out(false, `hit_rate ${candidate.hit_rate.toFixed(4)} < ${baseline} ${rate.toFixed(4)} + margin ${rule.margin}`);
  if (z < rule.minZ) return out(false, `z ${z.toFixed(2)} < ${rule.minZ}`);
  if (candidate.brier > brier) return out(false, `brier ${candidate.brier.toFixed(4)} > ${baseline} ${brier.toFixed(4)}`);
  return out(true, `beats ${baseline}: hit_rate ${candidate.hit_rate.toFixed(4)} vs ${rate.toFixed(4)} (z ${z.toFixed(2)}), brier ${candidate.brier.toFixed(4)}`);
}

/** Rolling hit record of one model version's judged signals (live or shadow). */
export class RollingQuality {
  private readonly hits: boolean[] = [];
  constructor(readonly window: number) {}
  add(hit: boolean): void {
    this.hits.push(hit);
    if (this.hits.length > this.window) this.hits.shift();
  }
  get n(): number {
    return this.hits.length;
  }
  get hitRate(): number {
    return this.hits.length ? this.hits.filter(Boolean).length / this.hits.length : 0;
  }
  get hitCount(): number {
    return this.hits.filter(Boolean).length;
  }
  reset(): void {
    this.hits.length = 0;
  }
}

export type Mode = 'warmup' | 'model';

export interface ModeState {
  mode: Mode;
  /** Version trading in model mode (null in warm-up). */
  version: string | null;
  /** When warm-up first started (the duration counts from here). */
  warmupStartedAt: number;
}

export interface ModeRule {
  warmupDurationMs: number;
  switchHitRate: number;
  switchMinSamples: number;
  liveWindow: number;
  degradedHitRate: number;
}

export interface ModeInputs {
  now: number;
  /** The promoted (active) version and its quality so far: held-out at promotion plus shadow/live since. */
  active: { version: string; hits: number; n: number } | null;
  /** Live record of the version trading in model mode. */
  live: { n: number; hitRate: number } | null;
  /** Version to roll back to (the previously active one), when there is one. */
  previous: string | null;
}

export interface Transition {
  from: Mode;
  to: Mode;
  fromVersion: string | null;
  version: string | null;
  reason: 'first_start' | 'quality_threshold_reached' | 'promoted' | 'degraded_rollback' | 'degraded_fallback_warmup' | 'no_active_model';
  metrics: Record<string, number | string | null>;
}

export function decideMode(s: ModeState, i: ModeInputs, r: ModeRule): Transition | null {
  if (s.mode === 'warmup') {
    if (!i.active) return null;
    const elapsed = i.now - s.warmupStartedAt;
    const rate = i.active.n ? i.active.hits / i.active.n : 0;
    if (elapsed >= r.warmupDurationMs && i.active.n >= r.switchMinSamples && rate >= r.switchHitRate) {
      return { from: 'warmup', to: 'model', fromVersion: null, version: i.active.version, reason: 'quality_threshold_reached', metrics: { hit_rate: rate, samples: i.active.n, warmup_elapsed_ms: elapsed } };
    }
    return null;
  }
  // model mode
  if (i.live && i.live.n >= r.liveWindow && i.live.hitRate < r.degradedHitRate) {
    const m = { live_hit_rate: i.live.hitRate, live_samples: i.live.n, threshold: r.degradedHitRate };
    if (i.previous && i.previous !== s.version) return { from: 'model', to: 'model', fromVersion: s.version, version: i.previous, reason: 'degraded_rollback', metrics: m };
    return { from: 'model', to: 'warmup', fromVersion: s.version, version: null, reason: 'degraded_fallback_warmup', metrics: m };
  }
  if (!i.active) return { from: 'model', to: 'warmup', fromVersion: s.version, version: null, reason: 'no_active_model', metrics: {} };
  if (i.active.version !== s.version) return { from: 'model', to: 'model', fromVersion: s.version, version: i.active.version, reason: 'promoted', metrics: { hit_rate: i.active.n ? i.active.hits / i.active.n : 0, samples: i.active.n } };
  return null;
}

export function applyTransition(s: ModeState, t: Transition): ModeState {
  return { ...s, mode: t.to, version: t.version };
}
