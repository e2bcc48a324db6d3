// The model service's core, without Kafka: samples in (stored, judged, learned from), retraining
// and promotion, the mode controller, signal generation. The units in service.ts feed it from the
// topics and publish what it emits; tests drive it directly on PostgreSQL.
//
// Quality bookkeeping:
//   - every new labelled sample is judged by the active model out of sample (in warm-up on the
//     prediction it made when the signal was decided: model/signals.ts): a "hit" when the side it would have emitted (|P - 0.5| >= MODEL_MIN_EDGE and the
//     expected return after the costs measured so far >= MODEL_MIN_EXPECTED_BPS, as in model mode)
//     matches the market direction. In warm-up these are shadow hits, in model mode samples of
//     signals the active version emitted are its live hit record (both reported, not decisive);
//   - shadow money (the warm-up -> model switch): in warm-up, every new window the active version
//     would have traded after costs adds its P&L after costs (counterfactual at the measured costs,
//     as the live record counts warm-up's shadow) and warm-up's shadow P&L on the same window to the
//     shadow money record, from its promotion on (policy.ts decideSwitch: the held-out record at
//     promotion does not count); the version's P(up) is the one taken at the signal, carried in
//     the signal (a prediction at the window's close would come from a model fine-tuned online on
//     windows whose labels overlap this one's horizon: it would count a future it saw). Judged with the costs measured before the window itself closed;
//     kept in memory like the live record, so a restart starts it afresh (the switch waits, it is
//     never taken on less);
//   - money (model/money.ts): every closed window feeds the cost book (fee and slippage of the
//     fills, the asset's move over the horizon) the decisions and evaluations charge; in model mode
//     each signal of the active version adds its P&L after costs (its stored reward less the exit
//     side's measured cost when filled, 0 when nothing filled) and warm-up's shadow P&L on the same
//     window to the live money record that the rollback rule bootstraps;
//   - online learning: every MODEL_ONLINE_BATCH judged samples the active model is fine-tuned on
//     them for one epoch (in memory; the next periodic retraining starts from all stored samples).
import { Counter, Gauge, type Registry } from 'prom-client';
import type { DatabasePool } from '../runtime/db.ts';
import type { Logger } from '../runtime/logger.ts';
import type { ModelSignal, OrderEvent, Ticker } from '../schemas/types.ts';
import type { ModelConfig } from './config.ts';
import { FEATURE_SPEC_ID } from './features.ts';
import { fineTune, fromArtifacts, toArtifacts, type LabelledRow, type TrainedModel } from './learner.ts';
import { applyTransition, decideMode, decideSwitch, RollingMoney, RollingQuality, type ModeState, type Transition } from './policy.ts';
import { heuristicProbability } from './evaluate.ts';
import { CostBook, costObservationOf, execOf, expectedNetBps, labelledRowOf, sideCostBps, SPREAD_FEATURE, windowPnlBps } from './money.ts';
import * as reg from './registry.ts';
import { SignalEmitter } from './signals.ts';
import { ExitBook, extraOf, type QtyFilter } from './exits.ts';
import { bootstrapOptions, learnerConfig, metricsTable, trainingRound, versionMetrics, versionName, type RoundResult } from './trainer.ts';
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
  heldOutPnl: 'model_service_heldout_pnl_bps',
  heldOutDiffLower: 'model_service_heldout_pnl_diff_lower_bps',
  heldOutDrawdown: 'model_service_heldout_max_drawdown_bps',
  heldOutEce: 'model_service_heldout_ece',
  livePnl: 'model_service_live_pnl_bps',
  liveDiffUpper: 'model_service_live_pnl_diff_upper_bps',
  shadowPnl: 'model_service_shadow_pnl_bps',
  shadowDiffLower: 'model_service_shadow_pnl_diff_lower_bps',
  shadowOneSideLower: 'model_service_shadow_pnl_one_side_lower_bps',
  costs: 'model_service_cost_bps',
  exits: 'model_service_exits_total',
  openLegs: 'model_service_open_legs',
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
    heldOutPnl: new Gauge({ name: MODEL_METRICS.heldOutPnl, help: 'Mean P&L after costs per held-out window (bps of notional) of the last candidate, its baseline and the active model at its promotion', labelNames: ['which'], registers: [registry] }),
    heldOutDiffLower: new Gauge({ name: MODEL_METRICS.heldOutDiffLower, help: 'Lower bound of the paired bootstrap of candidate minus baseline P&L per held-out window, bps (last candidate, active model at its promotion)', labelNames: ['which'], registers: [registry] }),
    heldOutDrawdown: new Gauge({ name: MODEL_METRICS.heldOutDrawdown, help: 'Max drawdown of the cumulative P&L after costs over the held-out windows, bps', labelNames: ['which'], registers: [registry] }),
    heldOutEce: new Gauge({ name: MODEL_METRICS.heldOutEce, help: 'Expected calibration error on the held-out windows', labelNames: ['which'], registers: [registry] }),
    livePnl: new Gauge({ name: MODEL_METRICS.livePnl, help: 'Live window: mean P&L after costs per signal of the active model, and of warm-up shadow on the same windows, bps', labelNames: ['kind'], registers: [registry] }),
    liveDiffUpper: new Gauge({ name: MODEL_METRICS.liveDiffUpper, help: 'Live window: upper bound of the paired bootstrap of model minus warm-up shadow P&L per signal, bps (rollback below 0)', registers: [registry] }),
    shadowPnl: new Gauge({ name: MODEL_METRICS.shadowPnl, help: 'Warm-up: mean P&L after costs per window the active version would have traded since its promotion (model), and warm-up\'s shadow on the same windows (warmup), bps', labelNames: ['kind'], registers: [registry] }),
    shadowDiffLower: new Gauge({ name: MODEL_METRICS.shadowDiffLower, help: 'Warm-up: lower bound of the paired bootstrap of the active version\'s shadow P&L minus warm-up\'s on the same windows, bps (the switch needs it above MODEL_PROMOTION_MARGIN_BPS)', registers: [registry] }),
    shadowOneSideLower: new Gauge({ name: MODEL_METRICS.shadowOneSideLower, help: 'Warm-up: lower bound of the paired bootstrap of the active version\'s shadow P&L minus holding one side per asset (the better side of each over the record) on the same windows, bps (the switch needs it above MODEL_PROMOTION_MARGIN_BPS)', registers: [registry] }),
    costs: new Gauge({ name: MODEL_METRICS.costs, help: 'Measured costs per side (fee, slippage beyond the half spread) and mean absolute move over the horizon, bps, per asset', labelNames: ['asset', 'part'], registers: [registry] }),
    exits: new Counter({ name: MODEL_METRICS.exits, help: 'Horizon exits of model-mode entries, by result: emitted (an exit signal), closed (an entry fully exited, or left with dust below the instrument minimum), given_up (still open after MODEL_EXIT_MAX_ATTEMPTS exits), unsettled (an exit without a final order event for MODEL_EXIT_MAX_ATTEMPTS + 2 horizons: dropped rather than risk closing twice)', labelNames: ['result'], registers: [registry] }),
    openLegs: new Gauge({ name: MODEL_METRICS.openLegs, help: 'Model-mode entries not yet closed by their horizon exit', registers: [registry] }),
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
}

export class ModelEngine {
  state: ModeState;
  active: Active | null = null;
  readonly live: RollingQuality;
  readonly shadow: RollingQuality;
  readonly emitter: SignalEmitter;
  /** Costs and moves measured on the service's own windows and fills. */
  readonly costs: CostBook;
  /** Live money record of the active version in model mode. */
  readonly liveMoney: RollingMoney;
  /**
   * Shadow money record of the active version in warm-up since its promotion, the switch rule's
   * measure: its last max(MODEL_SWITCH_MIN_SAMPLES, MODEL_LIVE_WINDOW) traded windows, so the
   * switch judges as many windows as the rollback will (a version switched to on this record is
   * not one the rollback would drop on the same record), and a bootstrap every check stays bounded.
   */
  readonly shadowMoney: RollingMoney;
  /** Model-mode entries to close at their horizon (model/exits.ts). */
  readonly exits: ExitBook;
  private pendingOnline: LabelledRow[] = [];
  private exposure = new Map<string, number>();
  /** Instrument quantity filters by `${category}:${symbol}` (exits are rounded as the order manager rounds). */
  private qtyFilters = new Map<string, QtyFilter>();
  private exitStats = { givenUp: 0, closed: 0, unsettled: 0 };
  private busy: Promise<unknown> = Promise.resolve();

  constructor(private readonly d: EngineDeps, now: number) {
    this.state = { mode: 'warmup', version: null, warmupStartedAt: now };
    this.live = new RollingQuality(d.cfg.MODEL_LIVE_WINDOW);
    this.shadow = new RollingQuality(d.cfg.MODEL_LIVE_WINDOW);
    this.emitter = new SignalEmitter(d.cfg);
    this.costs = new CostBook(d.cfg.MODEL_COST_WINDOW, d.cfg.MODEL_FEE_BPS);
    this.liveMoney = new RollingMoney(d.cfg.MODEL_LIVE_WINDOW);
    this.shadowMoney = new RollingMoney(Math.max(d.cfg.MODEL_SWITCH_MIN_SAMPLES, d.cfg.MODEL_LIVE_WINDOW));
    this.exits = new ExitBook({ strategyId: d.cfg.MODEL_STRATEGY_ID, horizonMs: d.cfg.MODEL_HORIZON_MS, maxAttempts: d.cfg.MODEL_EXIT_MAX_ATTEMPTS, retryMs: d.cfg.MODEL_SIGNAL_INTERVAL_MS });
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
    // Yesterday's windows: the costs and moves a decision charges do not start from nothing.
    for (const o of await reg.loadCostObservations(this.d.db, this.d.cfg.MODEL_COST_WINDOW)) this.costs.observe(o);
    this.publishCosts();
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
    this.active = { version: rec.version, model };
    this.shadow.reset();
    this.live.reset();
    this.liveMoney.reset();
    this.shadowMoney.reset();
  }

  private publishCosts(): void {
    for (const asset of this.d.cfg.MODEL_ASSETS) {
      const c = this.costs.estimate(asset);
      this.d.metrics.costs.set({ asset, part: 'fee' }, c.feeBps);
      this.d.metrics.costs.set({ asset, part: 'slippage' }, c.slippageBps);
      if (c.absMoveBps !== null) this.d.metrics.costs.set({ asset, part: 'abs_move' }, c.absMoveBps);
    }
  }

  onTicker(t: Ticker): void {
    this.emitter.onTicker(t);
  }

  setExposures(e: Map<string, number>): void {
    this.exposure = e;
  }

  setQtyFilters(f: Map<string, QtyFilter>): void {
    this.qtyFilters = f;
  }

  /** One of the service's own signals read back from model.signals (a restart rebuilds the exit book from them). */
  onOwnSignal(s: ModelSignal): void {
    if (this.d.cfg.MODEL_EXIT_AT_HORIZON) this.exits.onSignal(s); // off: nothing would ever prune the book
  }

  /** An order event (the exit book follows what its entries and exits filled). */
  onOrderEvent(ev: OrderEvent): void {
    if (this.d.cfg.MODEL_EXIT_AT_HORIZON) this.exits.onEvent(ev);
  }

  /** Signals `emit` returned that could not be published: their exits are open again. */
  onUnsent(signals: readonly ModelSignal[]): void {
    for (const s of signals) {
      if (s.metadata?.mode !== 'exit') continue;
      const of = extraOf(s).exit_of;
      if (typeof of === 'string') this.exits.forgetExit(of, s.signal_id);
    }
  }

  /** Signals due now (warm-up or model mode), and the horizon exits of model-mode entries. */
  emit(now: number): ModelSignal[] {
    const out = this.emitter.emit(now, {
      mode: this.state,
      model: this.state.mode === 'model' && this.active ? { version: this.active.version, model: this.active.model } : null,
      shadow: this.state.mode === 'warmup' && this.active ? { version: this.active.version, model: this.active.model } : null,
      exposure: (a) => Math.max(-3, Math.min(3, (this.exposure.get(a) ?? 0) / this.d.cfg.MODEL_EXPOSURE_SCALE)),
      costs: (a) => this.costs.estimate(a),
    });
    if (this.d.cfg.MODEL_EXIT_AT_HORIZON) {
      for (const s of out) this.exits.onSignal(s);
      // Exits are decided after entries are registered, on the same event time, whatever the mode:
      // a version rolled back still has its entries closed.
      for (const o of this.exits.due(now, (a, side) => this.emitter.touch(a, side), (c, sym) => this.qtyFilters.get(`${c}:${sym}`) ?? null)) {
        const s = this.emitter.exitSignal(o, now);
        if (!s) continue;
        this.exits.recordExit(o, now);
        out.push(s);
        this.d.metrics.exits.inc({ result: 'emitted' });
      }
      const st = this.exits.stats;
      if (st.givenUp > this.exitStats.givenUp) {
        this.d.metrics.exits.inc({ result: 'given_up' }, st.givenUp - this.exitStats.givenUp);
        this.d.logger.warn({ given_up: st.givenUp - this.exitStats.givenUp }, 'horizon exits given up: entries still open after MODEL_EXIT_MAX_ATTEMPTS exits or without order events');
      }
      if (st.closed > this.exitStats.closed) this.d.metrics.exits.inc({ result: 'closed' }, st.closed - this.exitStats.closed);
      if (st.unsettled > this.exitStats.unsettled) {
        this.d.metrics.exits.inc({ result: 'unsettled' }, st.unsettled - this.exitStats.unsettled);
        this.d.logger.warn({ unsettled: st.unsettled - this.exitStats.unsettled }, 'horizon exits dropped unsettled: an exit had no final order event for (MODEL_EXIT_MAX_ATTEMPTS + 2) horizons');
      }
      this.exitStats = { ...st };
      this.d.metrics.openLegs.set(this.exits.open);
    }
    for (const s of out) this.d.metrics.signals.inc({ mode: s.metadata?.mode === 'control' ? 'control' : s.metadata?.mode === 'exit' ? 'exit' : s.is_warmup ? 'warmup' : 'model', asset: s.asset });
    return out;
  }

  /** New samples from the window builder: store, judge (live / shadow), learn online. */
  onSamples(samples: readonly TrainingSample[]): Promise<number> {
    return this.serial(async () => {
      if (samples.length === 0) return 0;
      const ids = await reg.insertSamples(this.d.db, samples);
      const inserted = ids.size;
      for (const s of samples) this.d.metrics.samples.inc({ outcome: s.outcome });
      const a = this.active;
      // Money is counted once per window: a redelivered sample (already stored) adds no cost, live or shadow P&L again.
      const fresh = samples.filter((s) => ids.has(s.signal_id.toLowerCase()));
      // In warm-up, what the active version would have done in each new window: its prediction when
      // the signal was decided (model/signals.ts), not now: since then it was fine-tuned on windows
      // whose labels overlap this window's horizon.
      const shadowP = (s: TrainingSample): number | null =>
        a && this.state.mode === 'warmup' && s.is_warmup && s.details.shadow_version === a.version && typeof s.details.shadow_p === 'number' ? s.details.shadow_p : null;
      fresh.forEach((s) => {
        // The costs as measured before this window closed: the window is not judged on its own move.
        const c = this.costs.estimate(s.asset);
        const exec = execOf(s);
        const row = { features: s.features, market_return_bps: s.market_return_bps, exec };
        const hp = heuristicProbability(s.features, this.d.cfg.WARMUP_HEURISTIC);
        // Warm-up's shadow on the same window: its heuristic's side, counterfactual at the measured costs.
        const theirs = hp === 0.5 ? 0 : windowPnlBps(hp > 0.5 ? 1 : -1, row, c);
        if (a && this.state.mode === 'model' && s.model_version === a.version) {
          // What the signal really made (nothing when nothing filled), against warm-up on the same window.
          const spread = s.features[SPREAD_FEATURE] ?? 0;
          this.liveMoney.add(exec ? exec.reward_bps - sideCostBps(c, spread) : 0, theirs);
        } else {
          const p = shadowP(s);
          if (p !== null && this.wouldTrade(p, s)) {
            // Each side priced once: the model's is one of them, holding one side per asset the other baseline.
            const sides = { asset: s.asset, buy: windowPnlBps(1, row, c), sell: windowPnlBps(-1, row, c) };
            this.shadowMoney.add(p > 0.5 ? sides.buy : sides.sell, theirs, sides);
          }
        }
        this.costs.observe(costObservationOf(s));
      });
      this.publishCosts();
      if (!a) return inserted;
      const labelled = samples.filter((s) => s.label !== null);
      labelled.forEach((s) => {
        const p = shadowP(s);
        if (this.state.mode === 'model' && s.model_version === a.version) {
          // Live record: the signal this version emitted, judged on the market direction.
          this.live.add((s.side === 'buy') === (s.label === 1));
        } else if (p !== null && this.wouldTrade(p, s)) {
          this.shadow.add((p > 0.5) === (s.label === 1));
        }
        this.pendingOnline.push(labelledRowOf(s)!);
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
        const metrics = versionMetrics(r, this.active?.version ?? null);
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
        this.setHeldOut('candidate', r);
        this.d.metrics.heldOutPnl.set({ which: 'baseline' }, r.decision.baseline_pnl_bps_per_window);
        this.d.logger.info({ version, promote: r.decision.promote, reason: r.decision.reason, hit_rate: r.metrics.hit_rate, traded: r.metrics.traded, brier: r.metrics.brier, pnl_bps_per_window: r.metrics.pnl_bps_per_window, diff_lower_bps: r.decision.diff.lower }, `retraining round\n${metricsTable(r)}`);
        if (r.decision.promote) {
          await reg.activate(this.d.db, version, now);
          const rec = (await reg.loadVersion(this.d.db, version))!;
          await this.loadActive(rec);
          this.d.metrics.heldOutHitRate.set({ which: 'active' }, r.metrics.hit_rate);
          this.setHeldOut('active', r);
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

  /** The model-mode decision for a closed window: the edge, and the expected return after the costs measured so far. */
  private wouldTrade(p: number, s: TrainingSample): boolean {
    if (!(Math.abs(p - 0.5) >= this.d.cfg.MODEL_MIN_EDGE)) return false;
    const e = expectedNetBps(p, s.features[SPREAD_FEATURE] ?? 0, this.costs.estimate(s.asset));
    return e !== null && e >= this.d.cfg.MODEL_MIN_EXPECTED_BPS;
  }

  private setHeldOut(which: 'candidate' | 'active', r: RoundResult): void {
    this.d.metrics.heldOutPnl.set({ which }, r.metrics.pnl_bps_per_window);
    this.d.metrics.heldOutDiffLower.set({ which }, r.decision.diff.lower);
    this.d.metrics.heldOutDrawdown.set({ which }, r.metrics.max_drawdown_bps);
    this.d.metrics.heldOutEce.set({ which }, r.metrics.ece);
  }

  /** Bootstraps of the live money record (the rollback rule's measure), published as gauges. */
  liveJudgement(): ReturnType<RollingMoney['judge']> {
    const j = this.judge(this.liveMoney, this.d.metrics.livePnl, 'warmup_shadow');
    this.d.metrics.liveDiffUpper.set(j.diff.upper);
    return j;
  }

  /** Bootstraps of the shadow money record (the switch rule's measure), published as gauges. */
  shadowJudgement(): ReturnType<RollingMoney['judge']> {
    const j = this.judge(this.shadowMoney, this.d.metrics.shadowPnl, 'warmup');
    this.d.metrics.shadowDiffLower.set(j.diff.lower);
    if (j.oneSide) this.d.metrics.shadowOneSideLower.set(j.oneSide.lower);
    return j;
  }

  /** A money record's bootstraps; its own mean and warm-up's on the same windows go to `pnl` {kind}. */
  private judge(record: RollingMoney, pnl: ModelMetrics['livePnl'], warmupKind: string): ReturnType<RollingMoney['judge']> {
    const j = record.judge(bootstrapOptions(this.d.cfg));
    pnl.set({ kind: 'model' }, j.own.mean);
    pnl.set({ kind: warmupKind }, j.own.mean - j.diff.mean);
    return j;
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
      const live = this.state.mode === 'model' ? this.liveJudgement() : null;
      const shadow = this.state.mode === 'warmup' && this.active ? this.shadowJudgement() : null;
      const rule = { warmupDurationMs: this.d.cfg.WARMUP_DURATION_MS, switchMinSamples: this.d.cfg.MODEL_SWITCH_MIN_SAMPLES, marginBps: this.d.cfg.MODEL_PROMOTION_MARGIN_BPS, liveWindow: this.d.cfg.MODEL_LIVE_WINDOW };
      const t = decideMode(this.state, { now, active: this.active ? { version: this.active.version } : null, shadow, live, previous }, rule);
      if (!t) {
        if (shadow && this.active) this.d.logger.debug({ version: this.active.version, verdict: decideSwitch(shadow, now - this.state.warmupStartedAt, rule).reason }, 'still warm-up');
        return null;
      }
      if (this.active && live && t.reason.startsWith('degraded')) {
        await reg.saveLiveMetrics(this.d.db, this.active.version, {
          hit_rate: this.live.hitRate,
          n: this.live.n,
          pnl_bps_per_signal: live.own.mean,
          pnl_upper_bps: live.own.upper,
          warmup_shadow_pnl_bps_per_signal: live.own.mean - live.diff.mean,
          diff_vs_warmup_bps: live.diff.mean,
          diff_upper_bps: live.diff.upper,
          at: now,
        });
      }
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
