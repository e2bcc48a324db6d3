// The engine on a real, freshly migrated PostgreSQL database of its own: samples stored once per
// signal, a retraining round on the planted pattern (moves above costs) stores and promotes a
// version on money, a restart reloads it (same predictions) and the costs measured before it,
// the warm-up -> model switch on the shadow money record since promotion (not on a record too
// short, not on a losing one, not before the warm-up duration) and the money rollback / fall-back
// rules, each transition recorded in model_mode_transitions with its figures.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { Registry } from 'prom-client';
import { loadConfig } from '../../runtime/config.ts';
import { createDb, dropDatabase, ensureDatabase, sql, withDatabase, type DatabasePool } from '../../runtime/db.ts';
import { migrate, defaultMigrationsDir } from '../../runtime/migrate.ts';
import { createLogger } from '../../runtime/logger.ts';
import { ModelEngine, createModelMetrics } from '../../model/engine.ts';
import { WindowBuilder, type TrainingSample } from '../../model/windows.ts';
import { loadTf } from '../../model/tf.ts';
import * as reg from '../../model/registry.ts';
import { simulateSession, testModelConfig, T0 } from './fixtures.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';
import { renderView } from '../../stack/live-view.ts';

const dbUrl = withDatabase(loadConfig(process.env, UNIT_SCHEMAS).DATABASE_URL, `test_model_${randomBytes(6).toString('hex')}`);
let pool: DatabasePool;
const logger = createLogger({ LOG_LEVEL: 'silent', BYBIT_API_SECRET: 'x', ADMIN_TOKEN: undefined });
const cfg = testModelConfig({ MODEL_MIN_TRAIN_SAMPLES: '1000', MODEL_SWITCH_MIN_SAMPLES: '200', MODEL_LIVE_WINDOW: '50', WARMUP_DURATION_MS: '60000' });
let samples: TrainingSample[] = [];
/** Windows after the promotion: another session of the same market (seed 12), never trained on. */
let later: TrainingSample[] = [];

before(async () => {
  await ensureDatabase(dbUrl);
  pool = await createDb(dbUrl, { maximumPoolSize: 4 });
  await migrate(pool, { dir: defaultMigrationsDir });
  // 60 bps per step: the planted pattern pays after costs (tests/model/learner.test.ts).
  const s = await simulateSession({ mode: 'pattern', seed: 11, steps: 2400, cfg, volatility: 0.006 });
  const b = new WindowBuilder({ horizonMs: cfg.MODEL_HORIZON_MS, allowedLatenessMs: cfg.MODEL_ALLOWED_LATENESS_MS, orderEventsMaxWaitMs: cfg.MODEL_ORDER_EVENTS_MAX_WAIT_MS, lookback: cfg.MODEL_FEATURE_LOOKBACK, labelMinMoveBps: 0, strategyId: cfg.MODEL_STRATEGY_ID });
  samples = s.inputs.flatMap((i) => b.add(i));
  const s2 = await simulateSession({ mode: 'pattern', seed: 12, steps: 2400, cfg, volatility: 0.006 });
  const b2 = new WindowBuilder({ horizonMs: cfg.MODEL_HORIZON_MS, allowedLatenessMs: cfg.MODEL_ALLOWED_LATENESS_MS, orderEventsMaxWaitMs: cfg.MODEL_ORDER_EVENTS_MAX_WAIT_MS, lookback: cfg.MODEL_FEATURE_LOOKBACK, labelMinMoveBps: 0, strategyId: cfg.MODEL_STRATEGY_ID });
  later = s2.inputs.flatMap((i) => b2.add(i));
});

after(async () => {
  await pool?.end();
  await dropDatabase(dbUrl).catch(() => {});
});

const transitions = () => pool.any(sql.type(z.object({ from_mode: z.string(), to_mode: z.string(), model_version: z.string().nullable(), reason: z.string() }))`
  SELECT from_mode, to_mode, model_version, reason FROM model_mode_transitions ORDER BY id`);

test('store, retrain, promote, reload, switch, degrade, roll back, fall back', async (t) => {
  const { tf } = await loadTf(false);
  const registry = new Registry();
  const engine = new ModelEngine({ cfg, db: pool, tf, logger, metrics: createModelMetrics(registry) }, T0);
  await engine.restore(T0);
  assert.equal(engine.state.mode, 'warmup');
  assert.deepEqual((await transitions()).map((t) => t.reason), ['first_start']);

  // Samples: stored once per signal, a replay changes nothing.
  assert.equal(await engine.onSamples(samples), samples.length);
  assert.equal(await engine.onSamples(samples.slice(0, 100)), 0);
  const count = await pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM training_samples`);
  assert.equal(count, samples.length);

  // Retraining on the stored samples: the candidate is stored, promoted and becomes active.
  const r = (await engine.retrain(T0 + 1000))!;
  assert.equal(r.decision.promote, true, r.decision.reason);
  const active = (await reg.loadActive(pool))!;
  assert.equal(active.status, 'active');
  assert.equal(active.sample_count, r.trainRange.n);
  assert.equal(active.train_to_ts, r.trainRange.toTs);
  assert.equal(active.artifacts.featureSpec.id, 'mkt-v1');
  assert.equal((active.metrics as { hit_rate: number }).hit_rate, r.metrics.hit_rate);
  // The money figures are stored with the version: both bootstraps, drawdown, ECE, costs, baseline.
  const stored = active.metrics as { pnl_bps_per_window: number; max_drawdown_bps: number; ece: number; window_pnl?: unknown; decision: { diff: { lower: number }; own: { lower: number } }; warmup: { pnl_bps_per_window: number }; costs: Record<string, { feeBps: number }> };
  assert.equal(stored.decision.diff.lower, r.decision.diff.lower);
  assert.ok(stored.decision.diff.lower > cfg.MODEL_PROMOTION_MARGIN_BPS && stored.decision.own.lower > 0);
  assert.equal(stored.pnl_bps_per_window, r.metrics.pnl_bps_per_window);
  assert.equal(stored.max_drawdown_bps, r.metrics.max_drawdown_bps);
  assert.equal(stored.warmup.pnl_bps_per_window, r.warmup.pnl_bps_per_window);
  assert.ok(Math.abs(stored.costs.BTCUSDT!.feeBps - 5.5) < 0.01);
  assert.equal(stored.window_pnl, undefined, 'the per-window series is not stored');
  // Exported, and shown in the live view of npm start.
  const gauge = async (name: string, labels: Record<string, string>) => ((await registry.getSingleMetric(name)!.get()).values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)))?.value;
  assert.equal(await gauge('model_service_heldout_pnl_bps', { which: 'active' }), r.metrics.pnl_bps_per_window);
  assert.equal(await gauge('model_service_heldout_pnl_diff_lower_bps', { which: 'candidate' }), r.decision.diff.lower);
  assert.ok(Math.abs((await gauge('model_service_cost_bps', { asset: 'BTCUSDT', part: 'fee' }))! - 5.5) < 0.01);
  const view = (await renderView(pool, registry, T0, T0 + 1000)).find((l) => l.startsWith('Model $'));
  assert.ok(view?.includes(`held-out ${r.metrics.pnl_bps_per_window.toFixed(2)} bps/window after costs, vs warmup +${r.decision.diff.mean.toFixed(2)} (95 % low ${r.decision.diff.lower.toFixed(2)})`), view);
  assert.equal(engine.active?.version, active.version);

  // A restart reloads it from PostgreSQL: same predictions.
  const again = new ModelEngine({ cfg, db: pool, tf, logger, metrics: createModelMetrics(new Registry()) }, T0 + 2000);
  await again.restore(T0 + 2000);
  const feats = samples.slice(-30).map((s) => s.features);
  assert.deepEqual(again.active!.model.predict(feats), engine.active!.model.predict(feats));
  assert.equal(again.state.mode, 'warmup', 'still warm-up: nothing switched yet');
  // ...and measures costs from yesterday's windows, as the first engine did from the live ones.
  for (const a of cfg.MODEL_ASSETS) {
    const [x, y] = [again.costs.estimate(a), engine.costs.estimate(a)];
    assert.deepEqual([x.fills, x.moves], [y.fills, y.moves]);
    assert.ok(Math.abs(x.feeBps - y.feeBps) < 1e-9 && Math.abs(x.absMoveBps! - y.absMoveBps!) < 1e-9, `${a}: ${JSON.stringify(x)} vs ${JSON.stringify(y)}`);
  }

  // Warm-up -> model on the shadow money record since the promotion only: the held-out record
  // that promoted it does not count, so with no window since, the duration over, it stays.
  assert.equal(engine.shadowMoney.n, 0);
  assert.equal(await engine.checkMode(T0 + 60_000), null, 'no shadow windows yet');
  // The shadow judges a window on the prediction the active version made when its signal was
  // decided (carried in the signal: model/signals.ts). Windows without one (decided before the
  // promotion), or with another version's, are not its record.
  const decided = engine.active!;
  const shadowed = (xs: TrainingSample[]) => {
    const p = decided.model.predict(xs.map((x) => x.features));
    return xs.map((x, i) => ({ ...x, details: { ...x.details, shadow_p: p[i]!, shadow_version: decided.version } }));
  };
  const renamed = (xs: TrainingSample[], prefix: string) => xs.map((x, i) => ({ ...x, signal_id: `${prefix}-0000-4000-8000-${String(i).padStart(12, '0')}` }));
  await engine.onSamples(renamed(later.slice(0, 40), '40000000'));
  await engine.onSamples(renamed(shadowed(later.slice(0, 40)), '50000000').map((x) => ({ ...x, details: { ...x.details, shadow_version: 'another' } })));
  assert.equal(engine.shadowMoney.n, 0, 'no decision-time prediction of the active version: not judged');
  // A record too short: a few new windows, however they went.
  await engine.onSamples(shadowed(later.slice(0, 150)));
  assert.ok(engine.shadowMoney.n > 0 && engine.shadowMoney.n < cfg.MODEL_SWITCH_MIN_SAMPLES, `shadow windows ${engine.shadowMoney.n}`);
  assert.equal(await engine.checkMode(T0 + 60_000), null, 'too few shadow windows');
  // A losing record: the restarted engine (its shadow record starts afresh) sees the same market
  // turned against the side the model takes (move reversed, nothing filled): enough windows, it loses.
  const turned = shadowed(later.slice(0, 3000)).map((s, i) => ({ ...s, signal_id: `30000000-0000-4000-8000-${String(i).padStart(12, '0')}`, market_return_bps: -s.market_return_bps, label: s.label === null ? null : ((1 - s.label) as 0 | 1), details: { ...s.details, filled_qty: 0 } }));
  await again.onSamples(turned);
  assert.ok(again.shadowMoney.n >= cfg.MODEL_SWITCH_MIN_SAMPLES, `shadow windows ${again.shadowMoney.n}`);
  const lost = again.shadowJudgement();
  assert.ok(lost.own.upper < 0, `the turned market loses: ${JSON.stringify(lost.own)}`);
  assert.equal(await again.checkMode(T0 + 60_000), null, 'never on a losing record');
  assert.equal(again.state.mode, 'warmup');
  // The windows that follow, as they came: once enough of them pay, it switches, not before the duration is over.
  await engine.onSamples(shadowed(later.slice(150)));
  const shadow = engine.shadowJudgement();
  assert.ok(shadow.n >= cfg.MODEL_SWITCH_MIN_SAMPLES && shadow.own.lower > 0 && shadow.diff.lower > cfg.MODEL_PROMOTION_MARGIN_BPS, JSON.stringify(shadow));
  assert.equal(await engine.checkMode(T0 + 30_000), null, 'warm-up duration not over');
  const sw = (await engine.checkMode(T0 + 60_000))!;
  assert.equal(sw.reason, 'pays_in_shadow');
  assert.equal(engine.state.mode, 'model');
  assert.equal(engine.state.version, active.version);
  // The figures it switched on are stored with the transition.
  const stm = await pool.oneFirst(sql.type(z.object({ metrics: z.record(z.union([z.number(), z.string(), z.null()])) }))`SELECT metrics FROM model_mode_transitions WHERE reason = 'pays_in_shadow'`);
  assert.equal(stm.shadow_windows, shadow.n);
  assert.equal(stm.shadow_pnl_lower_bps, shadow.own.lower);
  assert.equal(stm.shadow_diff_lower_bps, shadow.diff.lower);
  assert.equal(stm.shadow_diff_vs_warmup_bps, shadow.diff.mean);
  assert.equal(stm.margin_bps, cfg.MODEL_PROMOTION_MARGIN_BPS);
  assert.ok(shadow.oneSide && shadow.oneSide.lower > cfg.MODEL_PROMOTION_MARGIN_BPS, `beats holding one side: ${JSON.stringify(shadow.oneSide)}`);
  assert.equal(stm.shadow_diff_vs_one_side_lower_bps, shadow.oneSide.lower);
  const shadowView = (await renderView(pool, registry, T0, T0 + 1000)).find((l) => l.startsWith('Model $'))!;
  assert.ok(shadowView.includes(`shadow ${shadow.own.mean.toFixed(2)} vs warm-up ${(shadow.own.mean - shadow.diff.mean).toFixed(2)} bps/window (low over warm-up ${shadow.diff.lower.toFixed(2)}, over one side ${shadow.oneSide.lower.toFixed(2)})`), shadowView);
  t.diagnostic(`shadow since promotion: ${shadow.n} windows, ${shadow.own.mean.toFixed(2)} bps/window (95 % low ${shadow.own.lower.toFixed(2)}), over warm-up ${shadow.diff.mean.toFixed(2)} (low ${shadow.diff.lower.toFixed(2)}); turned market: ${lost.n} windows, ${lost.own.mean.toFixed(2)} (high ${lost.own.upper.toFixed(2)})`);

  // A model-mode signal is tagged with the version and is not warm-up.
  const sig = engine.emit(T0 + 61_000);
  for (const s of sig) assert.equal(s.model_version, active.version);

  // Degradation of the live record with no earlier version: fall back to warm-up. Every signal took
  // the wrong side and was filled: it lost the move and the fee.
  const bad = samples
    .slice(0, 60)
    .filter((s) => s.label !== null && s.details.filled_qty !== 0)
    .map((s, i) => ({ ...s, signal_id: `10000000-0000-4000-8000-${String(i).padStart(12, '0')}`, model_version: active.version, side: (s.label === 1 ? 'sell' : 'buy') as 'buy' | 'sell', reward: -Math.abs(s.market_return_bps) - 5.5 }));
  await engine.onSamples(bad);
  assert.ok(engine.live.n >= 50 && engine.live.hitRate === 0);
  assert.ok(engine.liveMoney.n >= 50);
  const j = engine.liveJudgement();
  assert.ok(j.own.upper < 0 && j.diff.upper < 0, JSON.stringify(j));
  const liveView = (await renderView(pool, registry, T0, T0 + 1000)).find((l) => l.startsWith('Model $'))!;
  assert.ok(liveView.includes(`live ${j.own.mean.toFixed(2)} vs warm-up ${(j.own.mean - j.diff.mean).toFixed(2)} bps/signal`), liveView);
  const fb = (await engine.checkMode(T0 + 70_000))!;
  assert.equal(fb.reason, 'degraded_fallback_warmup');
  const live = (await reg.loadVersion(pool, active.version))!;
  assert.ok(live.promoted_at !== null);
  const lm = (await pool.oneFirst(sql.type(z.object({ live_metrics: z.record(z.number()) }))`SELECT live_metrics FROM model_versions WHERE version = ${active.version}`));
  assert.equal(lm.pnl_bps_per_signal, j.own.mean);
  assert.equal(lm.diff_upper_bps, j.diff.upper);
  assert.equal(engine.state.mode, 'warmup');
  assert.equal(await reg.loadActive(pool), null);
  assert.equal((await reg.loadVersion(pool, active.version))!.status, 'rolled_back');

  // Two versions: v1 retired, v2 active and degrading -> roll back to v1.
  await pool.query(sql.typeAlias('void')`UPDATE model_versions SET status = 'retired', retired_at = now() WHERE version = ${active.version}`);
  const rec = (await reg.loadVersion(pool, active.version))!;
  await reg.saveVersion(pool, { ...rec, version: 'v2-test', parent_version: active.version });
  await reg.activate(pool, 'v2-test', T0 + 80_000);
  const e2 = new ModelEngine({ cfg, db: pool, tf, logger, metrics: createModelMetrics(new Registry()) }, T0);
  await e2.restore(T0 + 80_000);
  e2.state = { ...e2.state, mode: 'model', version: 'v2-test' };
  await e2.onSamples(bad.map((s, i) => ({ ...s, signal_id: `20000000-0000-4000-8000-${String(i).padStart(12, '0')}`, model_version: 'v2-test' })));
  const rb = (await e2.checkMode(T0 + 90_000))!;
  assert.equal(rb.reason, 'degraded_rollback');
  assert.equal(rb.version, active.version);
  assert.equal((await reg.loadActive(pool))!.version, active.version);
  assert.equal((await reg.loadVersion(pool, 'v2-test'))!.status, 'rolled_back');

  assert.deepEqual((await transitions()).map((t) => [t.from_mode, t.to_mode, t.reason]), [
    ['warmup', 'warmup', 'first_start'],
    ['warmup', 'model', 'pays_in_shadow'],
    ['model', 'warmup', 'degraded_fallback_warmup'],
    ['model', 'model', 'degraded_rollback'],
  ]);
});
