// The engine on a real, freshly migrated PostgreSQL database of its own: samples stored once per
// signal, a retraining round on the planted pattern stores and promotes a version, a restart
// reloads it (same predictions), warm-up -> model switch and the rollback / fall-back rules, each
// transition recorded in model_mode_transitions.
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

const dbUrl = withDatabase(loadConfig(process.env, UNIT_SCHEMAS).DATABASE_URL, `test_model_${randomBytes(6).toString('hex')}`);
let pool: DatabasePool;
const logger = createLogger({ LOG_LEVEL: 'silent', BYBIT_API_SECRET: 'x', ADMIN_TOKEN: undefined });
const cfg = testModelConfig({ MODEL_MIN_TRAIN_SAMPLES: '1000', MODEL_SWITCH_MIN_SAMPLES: '200', MODEL_LIVE_WINDOW: '50', WARMUP_DURATION_MS: '60000' });
let samples: TrainingSample[] = [];

before(async () => {
  await ensureDatabase(dbUrl);
  pool = await createDb(dbUrl, { maximumPoolSize: 4 });
  await migrate(pool, { dir: defaultMigrationsDir });
  const s = await simulateSession({ mode: 'pattern', seed: 11, steps: 2400, cfg });
  const b = new WindowBuilder({ horizonMs: cfg.MODEL_HORIZON_MS, allowedLatenessMs: cfg.MODEL_ALLOWED_LATENESS_MS, orderEventsMaxWaitMs: cfg.MODEL_ORDER_EVENTS_MAX_WAIT_MS, lookback: cfg.MODEL_FEATURE_LOOKBACK, labelMinMoveBps: 0, strategyId: cfg.MODEL_STRATEGY_ID });
  samples = s.inputs.flatMap((i) => b.add(i));
});

after(async () => {
  await pool?.end();
  await dropDatabase(dbUrl).catch(() => {});
});

const transitions = () => pool.any(sql.type(z.object({ from_mode: z.string(), to_mode: z.string(), model_version: z.string().nullable(), reason: z.string() }))`
  SELECT from_mode, to_mode, model_version, reason FROM model_mode_transitions ORDER BY id`);

test('store, retrain, promote, reload, switch, degrade, roll back, fall back', async () => {
  const { tf } = await loadTf(false);
  const engine = new ModelEngine({ cfg, db: pool, tf, logger, metrics: createModelMetrics(new Registry()) }, T0);
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
  assert.equal(engine.active?.version, active.version);

  // A restart reloads it from PostgreSQL: same predictions.
  const again = new ModelEngine({ cfg, db: pool, tf, logger, metrics: createModelMetrics(new Registry()) }, T0 + 2000);
  await again.restore(T0 + 2000);
  const feats = samples.slice(-30).map((s) => s.features);
  assert.deepEqual(again.active!.model.predict(feats), engine.active!.model.predict(feats));
  assert.equal(again.state.mode, 'warmup', 'still warm-up: nothing switched yet');

  // Warm-up -> model only once the warm-up duration is over.
  assert.equal(await engine.checkMode(T0 + 30_000), null);
  const sw = (await engine.checkMode(T0 + 60_000))!;
  assert.equal(sw.reason, 'quality_threshold_reached');
  assert.equal(engine.state.mode, 'model');
  assert.equal(engine.state.version, active.version);

  // A model-mode signal is tagged with the version and is not warm-up.
  const sig = engine.emit(T0 + 61_000);
  for (const s of sig) assert.equal(s.model_version, active.version);

  // Degradation of the live record with no earlier version: fall back to warm-up.
  const bad = samples.slice(0, 60).map((s, i) => ({ ...s, signal_id: `10000000-0000-4000-8000-${String(i).padStart(12, '0')}`, model_version: active.version, side: (s.label === 1 ? 'sell' : 'buy') as 'buy' | 'sell' })).filter((s) => s.label !== null);
  await engine.onSamples(bad);
  assert.ok(engine.live.n >= 50 && engine.live.hitRate === 0);
  const fb = (await engine.checkMode(T0 + 70_000))!;
  assert.equal(fb.reason, 'degraded_fallback_warmup');
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
    ['warmup', 'model', 'quality_threshold_reached'],
    ['model', 'warmup', 'degraded_fallback_warmup'],
    ['model', 'model', 'degraded_rollback'],
  ]);
});
