// The model service's core, without Kafka: samples in (stored, judged, learned from), retraining
// and promotion, the mode controller, signal generation. The units in service.ts feed it from the
// topics and publish what it emits; tests drive it directly on PostgreSQL.
//
// Quality bookkeeping:
//   - every new labelled sample is first judged by the active model (prequential: predict, then
//     learn): a "hit" when the side it would have emitted (|P - 0.5| >= MODEL_MIN_EDGE) matches the
//     market direction. In warm-up these are shadow judgements (the switch rule's quality, counted
//     on top of the held-out record at promotion); in model mode, samples of signals the active
//     version emitted are its live record (the rollback rule's quality);
//   - online learning: every MODEL_ONLINE_BATCH judged samples the active model is fine-tuned on
//     them for one epoch (in memory; the next periodic retraining starts from all stored samples).
import { Counter, Gauge, type Registry } from 'prom-client';
import type { DatabasePool } from '../runtime/db.ts';
import type { Logger } from '../runtime/logger.ts';
import type { ModelSignal, Ticker } from '../schemas/types.ts';
import type { ModelConfig } from './config.ts';
import { FEATURE_SPEC_ID } from './features.ts';
import { fineTune, fromArtifacts, toArtifacts, type LabelledRow, type TrainedModel } from './learner.ts';
import { applyTransition, decideMode, RollingQuality, type ModeState, type Transition } from './policy.ts';
import * as reg from './registry.ts';
import { SignalEmitter } from './signals.ts';
import { learnerConfig, metricsTable, trainingRound, versionName, type RoundResult } from './trainer.ts';
import type { Tf } from './tf.ts';
import type { TrainingSample } from './windows.ts';

export const MODEL_METRICS = {
  mode: 'model_service_mode',
  transitions: 'model_service_mode_transitions_total',
  signals: 'model_service_signals_total',
  samples: 'model_service_training_samples_total',
  retrains: 'model_service_retrains_total',
  heldOutHitRate: 'model_service_heldout_hit_rate',
  liveHitRate: 'model_service_live_hit_rate',
  windowDrops: 'model_service_window_dropped_total',
} as const;

export function createModelMetrics(registry: Registry) {
  return {
    mode: new Gauge({ name: MODEL_METRICS.mode, help: 'Current mode: 0 warm-up, 1 model', registers: [registry] }),
    transitions: new Counter({ name: MODEL_METRICS.transitions, help: 'Mode transitions, by from, to and reason', labelNames: ['from', 'to', 'reason'], registers: [registry] }),
    signals: new Counter({ name: MODEL_METRICS.signals, help: 'Signals emitted, by mode and asset', labelNames: ['mode', 'asset'], registers: [registry] }),
    samples: new Counter({ name: MODEL_METRICS.samples, help: 'Training samples built, by outcome', labelNames: ['outcome'], registers: [registry] }),
    retrains: new Counter({ name: MODEL_METRICS.retrains, help: 'Retraining rounds, by result (promoted, kept, skipped, failed)', labelNames: ['result'], registers: [registry] }),
    heldOutHitRate: new Gauge({ name: MODEL_METRICS.heldOutHitRate, help: 'Held-out hit rate of the last candidate and of the active model', labelNames: ['which'], registers: [registry] }),
    liveHitRate: new Gauge({ name: MODEL_METRICS.liveHitRate, help: 'Live (model mode) or shadow (warm-up) hit rate of the active model over the live window', labelNames: ['kind'], registers: [registry] }),
    windowDrops: new Counter({ name: MODEL_METRICS.windowDrops, help: 'Records the window builder dropped, by reason (late ticker/event/signal, unjoined event, insufficient history)', labelNames: ['reason'], registers: [registry] }),
  };
}
export type ModelMetrics = ReturnType<typeof createModelMetrics>;

export interface EngineDeps {
  cfg: ModelConfig;
  db: DatabasePool;
  tf: Tf;
  logger: Logger;
  metrics: ModelMetrics;
  /** Called after every transition is stored (the service publishes it). */
  onTransition?: (t: Transition, at: number) => void | Promise<void>;
}

interface Active {
  version: string;
  model: TrainedModel;
  /** Held-out record at promotion, plus shadow judgements since. */
  hits: number;
  n: number;
}

export class ModelEngine {
  state: ModeState;
  active: Active | null = null;
  readonly live: RollingQuality;
  readonly shadow: RollingQuality;
  readonly emitter: SignalEmitter;
  private pendingOnline: LabelledRow[] = [];
  private exposure = new Map<string, number>();
  private busy: Promise<unknown> = Promise.resolve();

  constructor(private readonly d: EngineDeps, now: number) {
    this.state = { mode: 'warmup', version: null, warmupStartedAt: now };
    this.live = new RollingQuality(d.cfg.MODEL_LIVE_WINDOW);
    this.shadow = new RollingQuality(d.cfg.MODEL_LIVE_WINDOW);
    this.emitter = new SignalEmitter(d.cfg);
  }

  /** Serialise the async operations (retrain, sample handling, mode checks) of one engine. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.busy.then(fn, fn);
    this.busy = next.catch(() => {});
    return next;
  }

  /** Restore mode and active model from PostgreSQL (a restart continues where it stopped). */
  async restore(now: number): Promise<void> {
    const last = await reg.lastMode(this.d.db);
    const active = await reg.loadActive(this.d.db);
    if (active) await this.loadActive(active);
    if (last) this.state = { mode: last.mode === 'model' && this.active ? 'model' : 'warmup', version: last.mode === 'model' && this.active ? this.active.version : null, warmupStartedAt: last.firstAt ?? now };
    else {
      // First start ever: record the warm-up start so WARMUP_DURATION_MS counts across restarts.
      await this.transition({ from: 'warmup', to: 'warmup', fromVersion: null, version: null, reason: 'first_start', metrics: {} }, now);
    }
    this.d.metrics.mode.set(this.state.mode === 'model' ? 1 : 0);
    this.d.logger.info({ mode: this.state.mode, version: this.state.version, active: this.active?.version ?? null }, 'model service state restored');
  }

  private async loadActive(rec: reg.VersionRecord): Promise<void> {
    const model = await fromArtifacts(this.d.tf, rec.artifacts, this.d.cfg.MODEL_LEARNING_RATE);
    const m = rec.metrics as { hits?: number; traded?: number };
    this.active = { version: rec.version, model, hits: m.hits ?? 0, n: m.traded ?? 0 };
    this.shadow.reset();
    this.live.reset();
  }

  onTicker(t: Ticker): void {
    this.emitter.onTicker(t);
  }

  setExposures(e: Map<string, number>): void {
    this.exposure = e;
  }

  /** Signals due now (warm-up or model mode). */
  emit(now: number): ModelSignal[] {
    const out = this.emitter.emit(now, {
      mode: this.state,
      model: this.state.mode === 'model' && this.active ? { version: this.active.version, model: this.active.model } : null,
      exposure: (a) => Math.max(-3, Math.min(3, (this.exposure.get(a) ?? 0) / this.d.cfg.MODEL_EXPOSURE_SCALE)),
    });
    for (const s of out) this.d.metrics.signals.inc({ mode: s.is_warmup ? 'warmup' : 'model', asset: s.asset });
    return out;
  }

  /** New samples from the window builder: store, judge (live / shadow), learn online. */
  onSamples(samples: readonly TrainingSample[]): Promise<number> {
    return this.serial(async () => {
      if (samples.length === 0) return 0;
      const inserted = await reg.saveSamples(this.d.db, samples);
      for (const s of samples) this.d.metrics.samples.inc({ outcome: s.outcome });
      const a = this.active;
      if (!a) return inserted;
      const labelled = samples.filter((s) => s.label !== null);
      const probs = a.model.predict(labelled.map((s) => s.features));
      labelled.forEach((s, i) => {
        const p = probs[i]!;
        if (this.state.mode === 'model' && s.model_version === a.version) {
          // Live record: the signal this version emitted, judged on the market direction.
          this.live.add((s.side === 'buy') === (s.label === 1));
        } else if (this.state.mode === 'warmup' && Math.abs(p - 0.5) >= this.d.cfg.MODEL_MIN_EDGE) {
          const hit = (p > 0.5) === (s.label === 1);
          this.shadow.add(hit);
          a.n++;
          if (hit) a.hits++;
        }
        this.pendingOnline.push({ features: s.features, label: s.label as 0 | 1, market_return_bps: s.market_return_bps, ts: s.ts });
      });
      this.d.metrics.liveHitRate.set({ kind: 'live' }, this.live.hitRate);
      this.d.metrics.liveHitRate.set({ kind: 'shadow' }, this.shadow.hitRate);
      if (this.pendingOnline.length >= this.d.cfg.MODEL_ONLINE_BATCH) {
        const batch = this.pendingOnline;
        this.pendingOnline = [];
        await fineTune(this.d.tf, a.model, batch, learnerConfig(this.d.cfg));
        this.d.logger.debug({ version: a.version, rows: batch.length }, 'online update');
      }
      return inserted;
    });
  }

  /** One periodic retraining: candidate from stored samples, promotion rule, store the version. */
  retrain(now: number, onEpoch?: (epoch: number, loss: number) => void): Promise<RoundResult | null> {
    return this.serial(async () => {
      const cfg = this.d.cfg;
      const rows: LabelledRow[] = await reg.loadTrainingRows(this.d.db, { featureSpec: FEATURE_SPEC_ID, limit: cfg.MODEL_MAX_TRAIN_SAMPLES });
      if (rows.length < cfg.MODEL_MIN_TRAIN_SAMPLES) {
        this.d.metrics.retrains.inc({ result: 'skipped' });
        this.d.logger.info({ samples: rows.length, needed: cfg.MODEL_MIN_TRAIN_SAMPLES }, 'retraining skipped: too few labelled samples');
        return null;
      }
      try {
        const r = await trainingRound(this.d.tf, rows, cfg, this.active?.model ?? null, onEpoch);
        const version = versionName(r.trainRange.toTs, cfg.MODEL_SEED, r.trainRange.n);
        const metrics = { ...r.metrics, decision: r.decision, current: r.current && { version: this.active?.version, hit_rate: r.current.hit_rate, traded: r.current.traded, brier: r.current.brier }, warmup: { hit_rate: r.warmup.hit_rate, traded: r.warmup.traded, brier: r.warmup.brier }, holdout_from_ts: r.holdoutRange.fromTs, holdout_to_ts: r.holdoutRange.toTs };
        await reg.saveVersion(this.d.db, {
          version,
          parent_version: this.active?.version ?? null,
          artifacts: await toArtifacts(this.d.tf, r.candidate),
          sample_count: r.trainRange.n,
          train_from_ts: r.trainRange.fromTs,
          train_to_ts: r.trainRange.toTs,
          train_from_offsets: null,
          train_to_offsets: null,
          metrics,
          notes: r.decision.reason,
        });
        this.d.metrics.heldOutHitRate.set({ which: 'candidate' }, r.metrics.hit_rate);
        this.d.logger.info({ version, promote: r.decision.promote, reason: r.decision.reason, hit_rate: r.metrics.hit_rate, traded: r.metrics.traded, brier: r.metrics.brier }, `retraining round\n${metricsTable(r)}`);
        if (r.decision.promote) {
          await reg.activate(this.d.db, version, now);
          const rec = (await reg.loadVersion(this.d.db, version))!;
          await this.loadActive(rec);
          this.d.metrics.heldOutHitRate.set({ which: 'active' }, r.metrics.hit_rate);
          this.d.metrics.retrains.inc({ result: 'promoted' });
        } else this.d.metrics.retrains.inc({ result: 'kept' });
        return r;
      } catch (err) {
        this.d.metrics.retrains.inc({ result: 'failed' });
        this.d.logger.error({ err }, 'retraining failed');
        throw err;
      }
    });
  }

  /** Apply the mode rules once; returns the transition taken, if any. */
  checkMode(now: number): Promise<Transition | null> {
    return this.serial(async () => {
      // A version promoted elsewhere (npm run retrain -- --promote) is picked up here.
      const dbActive = await reg.activeVersionName(this.d.db);
      if (dbActive !== (this.active?.version ?? null)) {
        if (dbActive) await this.loadActive((await reg.loadVersion(this.d.db, dbActive))!);
        else this.active = null;
        this.d.logger.info({ version: dbActive }, 'active version changed in PostgreSQL; reloaded');
      }
      const previous = await reg.previousVersion(this.d.db);
      const t = decideMode(
        this.state,
        { now, active: this.active ? { version: this.active.version, hits: this.active.hits, n: this.active.n } : null, live: this.state.mode === 'model' ? { n: this.live.n, hitRate: this.live.hitRate } : null, previous },
        { warmupDurationMs: this.d.cfg.WARMUP_DURATION_MS, switchHitRate: this.d.cfg.MODEL_SWITCH_HIT_RATE, switchMinSamples: this.d.cfg.MODEL_SWITCH_MIN_SAMPLES, liveWindow: this.d.cfg.MODEL_LIVE_WINDOW, degradedHitRate: this.d.cfg.MODEL_DEGRADED_HIT_RATE },
      );
      if (!t) return null;
      if (this.active && t.reason.startsWith('degraded')) await reg.saveLiveMetrics(this.d.db, this.active.version, { hit_rate: this.live.hitRate, n: this.live.n, at: now });
      if (t.reason === 'degraded_rollback') {
        await reg.activate(this.d.db, t.version!, now, 'rolled_back');
        await this.loadActive((await reg.loadVersion(this.d.db, t.version!))!);
      } else if (t.reason === 'degraded_fallback_warmup') {
        await reg.deactivate(this.d.db, now, 'rolled_back');
        this.active = null;
      }
      await this.transition(t, now);
      return t;
    });
  }

  private async transition(t: Transition, now: number): Promise<void> {
    await reg.recordTransition(this.d.db, t, now);
    this.state = applyTransition(this.state, t);
    this.d.metrics.transitions.inc({ from: t.from, to: t.to, reason: t.reason });
    this.d.metrics.mode.set(this.state.mode === 'model' ? 1 : 0);
    this.d.logger.info({ from: t.from, to: t.to, from_version: t.fromVersion, version: t.version, reason: t.reason, metrics: t.metrics }, 'model service mode transition');
    await this.d.onTransition?.(t, now);
  }
}
