// The promotion rule and the mode controller (warm-up <-> model, rollback), table-driven.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decidePromotion, decideMode, applyTransition, RollingQuality, zScore, type ModeState, type ModeRule } from '../../model/policy.ts';
import type { EvalMetrics } from '../../model/evaluate.ts';

const m = (traded: number, hit: number, brier = 0.24): EvalMetrics => ({ n: 1000, traded, coverage: traded / 1000, hit_rate: hit, hits: Math.round(hit * traded), hit_rate_all: hit, log_loss: 0.68, brier, ece: 0.02, calibration: [], pnl_bps: 0, pnl_bps_per_trade: 0 });
const rule = { margin: 0.03, minZ: 2.5, minEvalSamples: 200 };

test('promotion rule', () => {
  const cases: Array<[string, EvalMetrics, EvalMetrics | null, EvalMetrics, boolean, string]> = [
    ['beats coin flip clearly', m(800, 0.6), null, m(1000, 0.49), true, 'coin_flip'],
    ['beats warm-up clearly', m(800, 0.62), null, m(1000, 0.56), true, 'warmup'],
    ['not by the margin over warm-up', m(800, 0.58), null, m(1000, 0.56), false, 'warmup'],
    ['too few traded', m(150, 0.7), null, m(1000, 0.5), false, 'coin_flip'],
    ['margin met but not significant', m(210, 0.54), null, m(1000, 0.5), false, 'coin_flip'],
    ['worse Brier than a coin flip', m(800, 0.6, 0.26), null, m(1000, 0.5), false, 'coin_flip'],
    ['beats the current model', m(800, 0.66, 0.23), m(800, 0.6, 0.235), m(1000, 0.55), true, 'current'],
    ['does not beat the current model by the margin', m(800, 0.62, 0.23), m(800, 0.6, 0.235), m(1000, 0.55), false, 'current'],
    ['current too thin to judge: warm-up is the baseline', m(800, 0.62), m(100, 0.9), m(1000, 0.55), true, 'warmup'],
  ];
  for (const [name, cand, cur, wu, promote, baseline] of cases) {
    const d = decidePromotion(cand, cur, wu, rule);
    assert.equal(d.promote, promote, `${name}: ${d.reason}`);
    assert.equal(d.baseline, baseline, name);
  }
  assert.ok(Math.abs(zScore(600, 1000, 0.5) - 6.3245) < 1e-3);
});

const mr: ModeRule = { warmupDurationMs: 60_000, switchHitRate: 0.55, switchMinSamples: 200, liveWindow: 100, degradedHitRate: 0.5 };
const warm: ModeState = { mode: 'warmup', version: null, warmupStartedAt: 0 };

test('warm-up -> model only after the duration, with enough samples at the quality threshold', () => {
  const active = { version: 'v1', hits: 130, n: 220 }; // 0.59
  assert.equal(decideMode(warm, { now: 59_999, active, live: null, previous: null }, mr), null, 'duration not over');
  assert.equal(decideMode(warm, { now: 60_000, active: { version: 'v1', hits: 120, n: 190 }, live: null, previous: null }, mr), null, 'too few samples');
  assert.equal(decideMode(warm, { now: 60_000, active: { version: 'v1', hits: 110, n: 220 }, live: null, previous: null }, mr), null, 'quality 0.5 below 0.55');
  assert.equal(decideMode(warm, { now: 60_000, active: null, live: null, previous: null }, mr), null, 'no model');
  const t = decideMode(warm, { now: 60_000, active, live: null, previous: null }, mr)!;
  assert.equal(t.reason, 'quality_threshold_reached');
  assert.deepEqual([t.from, t.to, t.version], ['warmup', 'model', 'v1']);
  assert.deepEqual(applyTransition(warm, t), { mode: 'model', version: 'v1', warmupStartedAt: 0 });
});

test('model mode: degradation rolls back to the previous version, or falls back to warm-up', () => {
  const s: ModeState = { mode: 'model', version: 'v2', warmupStartedAt: 0 };
  const active = { version: 'v2', hits: 300, n: 500 };
  assert.equal(decideMode(s, { now: 1, active, live: { n: 99, hitRate: 0.3 }, previous: 'v1' }, mr), null, 'window not full');
  assert.equal(decideMode(s, { now: 1, active, live: { n: 100, hitRate: 0.5 }, previous: 'v1' }, mr), null, 'at the threshold is fine');
  const rb = decideMode(s, { now: 1, active, live: { n: 100, hitRate: 0.45 }, previous: 'v1' }, mr)!;
  assert.deepEqual([rb.reason, rb.from, rb.to, rb.fromVersion, rb.version], ['degraded_rollback', 'model', 'model', 'v2', 'v1']);
  const fb = decideMode(s, { now: 1, active, live: { n: 100, hitRate: 0.45 }, previous: null }, mr)!;
  assert.deepEqual([fb.reason, fb.to, fb.version], ['degraded_fallback_warmup', 'warmup', null]);
  const pr = decideMode(s, { now: 1, active: { version: 'v3', hits: 1, n: 1 }, live: { n: 10, hitRate: 0.6 }, previous: 'v2' }, mr)!;
  assert.deepEqual([pr.reason, pr.version], ['promoted', 'v3']);
});

test('rolling quality keeps the last window', () => {
  const q = new RollingQuality(4);
  [true, true, false, false, false].forEach((h) => q.add(h));
  assert.equal(q.n, 4);
  assert.equal(q.hitRate, 0.25);
});
