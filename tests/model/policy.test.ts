// The promotion rule and the mode controller (warm-up <-> model, rollback), table-driven.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decidePromotion, decideMode, applyTransition, RollingMoney, RollingQuality, zScore, type ModeState, type ModeRule } from '../../model/policy.ts';
import type { EvalMetrics } from '../../model/evaluate.ts';
import { maxDrawdown } from '../../model/money.ts';
import { SeededRng } from '../../model/rng.ts';

/** Held-out metrics from a per-window P&L series (0 = held). */
const m = (pnl: number[], ece = 0.02): EvalMetrics => {
  const traded = pnl.filter((x) => x !== 0).length;
  const total = pnl.reduce((a, b) => a + b, 0);
  return { n: pnl.length, traded, coverage: traded / pnl.length, hit_rate: 0.6, hits: Math.round(0.6 * traded), hit_rate_all: 0.6, log_loss: 0.68, brier: 0.24, ece, calibration: [], pnl_bps: total, pnl_bps_per_trade: traded ? total / traded : 0, pnl_bps_per_window: total / pnl.length, max_drawdown_bps: maxDrawdown(pnl), window_pnl: pnl };
};
const rule = { marginBps: 0.5, minEvalSamples: 200, maxDrawdownBps: 1000, maxEce: 0.08, bootstrap: { resamples: 2000, seed: 7, confidence: 0.95, block: 20 } };
/** n windows of noise around `mean` bps (sd `sd`), every one traded. */
const series = (n: number, mean: number, sd: number, seed: number) => {
  const r = new SeededRng(seed);
  return Array.from({ length: n }, () => mean + sd * (r.next() + r.next() + r.next() - 1.5) * 2 || 1e-9);
};

test('promotion on money: own P&L and the paired difference by a margin with confidence, drawdown, calibration', () => {
  const good = series(1000, 6, 20, 1);
  const warm = series(1000, -8, 20, 2);
  const cases: Array<[string, EvalMetrics, EvalMetrics | null, EvalMetrics, boolean, string, RegExp]> = [
    ['pays and beats warm-up clearly', m(good), null, m(warm), true, 'warmup', /^beats warmup on money/],
    ['beats a losing warm-up but does not pay itself', m(series(1000, -2, 20, 3)), null, m(warm), false, 'warmup', /^does_not_pay/],
    ['holds everywhere: nothing to promote', m(new Array(1000).fill(0)), null, m(warm), false, 'warmup', /^too_few_traded/],
    ['too few traded', m([...series(150, 30, 5, 4), ...new Array(850).fill(0)]), null, m(warm), false, 'warmup', /^too_few_traded/],
    ['pays, but not by the margin over the current model', m(good), m(good.map((x) => x - 0.1)), m(warm), false, 'current', /^not_better_than_current/],
    ['pays and beats the current model', m(good), m(good.map((x) => x - 4)), m(warm), true, 'current', /^beats current/],
    ['drawdown beyond the bound', m([...series(500, -5, 5, 5), ...series(500, 20, 5, 6)]), null, m(warm), false, 'warmup', /^drawdown/],
    ['calibration beyond the bound', m(good, 0.12), null, m(warm), false, 'warmup', /^calibration/],
  ];
  for (const [name, cand, cur, wu, promote, baseline, reason] of cases) {
    const d = decidePromotion(cand, cur, wu, rule);
    assert.equal(d.promote, promote, `${name}: ${d.reason}`);
    assert.equal(d.baseline, baseline, name);
    assert.match(d.reason, reason, name);
  }
  // The bounds are reported with the decision.
  const d = decidePromotion(m(good), null, m(warm), rule);
  assert.ok(d.diff.lower > 0.5 && d.diff.lower < d.diff.mean && d.diff.mean < d.diff.upper, JSON.stringify(d.diff));
  assert.ok(Math.abs(d.diff.mean - (m(good).pnl_bps_per_window - m(warm).pnl_bps_per_window)) < 1e-9);
  assert.ok(Math.abs(zScore(600, 1000, 0.5) - 6.3245) < 1e-3);
});

const mr: ModeRule = { warmupDurationMs: 60_000, switchHitRate: 0.55, switchMinSamples: 200, liveWindow: 100 };
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

test('model mode: losing money against warm-up (or outright) rolls back to the previous version, or falls back to warm-up', () => {
  const s: ModeState = { mode: 'model', version: 'v2', warmupStartedAt: 0 };
  const active = { version: 'v2', hits: 300, n: 500 };
  const live = (n: number, ownUpper: number, diffUpper: number) => ({ n, own: { mean: ownUpper - 1, upper: ownUpper }, diff: { mean: diffUpper - 1, upper: diffUpper } });
  assert.equal(decideMode(s, { now: 1, active, live: live(99, -3, -3), previous: 'v1' }, mr), null, 'window not full');
  assert.equal(decideMode(s, { now: 1, active, live: live(100, 0, 0), previous: 'v1' }, mr), null, 'upper bounds at 0: not confidently worse');
  const rb = decideMode(s, { now: 1, active, live: live(100, 2, -0.1), previous: 'v1' }, mr)!;
  assert.deepEqual([rb.reason, rb.from, rb.to, rb.fromVersion, rb.version], ['degraded_rollback', 'model', 'model', 'v2', 'v1']);
  assert.equal(rb.metrics.live_diff_upper_bps, -0.1);
  const loses = decideMode(s, { now: 1, active, live: live(100, -0.1, 2), previous: 'v1' }, mr)!;
  assert.equal(loses.reason, 'degraded_rollback', 'confidently losing after costs, even when warm-up would lose more');
  const fb = decideMode(s, { now: 1, active, live: live(100, 2, -0.1), previous: null }, mr)!;
  assert.deepEqual([fb.reason, fb.to, fb.version], ['degraded_fallback_warmup', 'warmup', null]);
  const pr = decideMode(s, { now: 1, active: { version: 'v3', hits: 1, n: 1 }, live: live(10, 5, 5), previous: 'v2' }, mr)!;
  assert.deepEqual([pr.reason, pr.version], ['promoted', 'v3']);
});

test('live money record: the last window of pairs, bootstrapped', () => {
  const q = new RollingMoney(4);
  [[1, 0], [2, 0], [-5, 0], [-5, 0], [-5, 0]].forEach(([a, b]) => q.add(a!, b!));
  assert.equal(q.n, 4);
  const j = q.judge({ resamples: 500, seed: 1, confidence: 0.95, block: 1 });
  assert.equal(j.own.mean, (2 - 15) / 4);
  assert.equal(j.diff.mean, j.own.mean);
  assert.ok(j.own.upper <= 2 && j.own.lower >= -5);
});

test('rolling quality keeps the last window', () => {
  const q = new RollingQuality(4);
  [true, true, false, false, false].forEach((h) => q.add(h));
  assert.equal(q.n, 4);
  assert.equal(q.hitRate, 0.25);
});
