// The promotion rule and the mode controller (warm-up <-> model, rollback), table-driven.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decidePromotion, decideMode, decideSwitch, applyTransition, RollingMoney, RollingQuality, zScore, type ModeState, type ModeRule } from '../../model/policy.ts';
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

const mr: ModeRule = { warmupDurationMs: 60_000, switchMinSamples: 200, marginBps: 0.5, liveWindow: 100 };
const warm: ModeState = { mode: 'warmup', version: null, warmupStartedAt: 0 };
const boot = { resamples: 2000, seed: 7, confidence: 0.95, block: 20 };
/** The shadow money record of `model` against warm-up's shadow `wu` on the same windows, bootstrapped as the engine does. */
const shadowOf = (model: number[], wu: number[]) => {
  const q = new RollingMoney(Math.max(model.length, 1));
  model.forEach((x, i) => q.add(x, wu[i]!));
  return q.judge(boot);
};

test('warm-up -> model on the shadow money record since promotion: enough windows, pays after costs, beats warm-up by the margin', () => {
  const pays = series(300, 6, 20, 11);
  const warmLoses = series(300, -6, 20, 12);
  const cases: Array<[string, number, ReturnType<typeof shadowOf> | null, boolean, RegExp]> = [
    ['pays and beats warm-up clearly', 60_000, shadowOf(pays, warmLoses), true, /^pays in shadow/],
    ['duration not over', 59_999, shadowOf(pays, warmLoses), false, /^warmup_duration/],
    ['no shadow record yet', 60_000, null, false, /^too_few_shadow_windows \(0 < 200\)/],
    ['too short a record, however good', 60_000, shadowOf(pays.slice(0, 199), warmLoses.slice(0, 199)), false, /^too_few_shadow_windows \(199 < 200\)/],
    ['loses after costs, though warm-up loses more', 60_000, shadowOf(series(300, -2, 20, 13), series(300, -12, 20, 14)), false, /^does_not_pay_in_shadow/],
    ['a losing record that a long lucky start does not save', 60_000, shadowOf([...series(100, 15, 5, 15), ...series(200, -12, 20, 16)], warmLoses), false, /^does_not_pay_in_shadow/],
    ['pays, but not by the margin over warm-up', 60_000, shadowOf(pays, pays.map((x) => x - 0.2)), false, /^not_better_than_warmup_in_shadow/],
    ['pays, warm-up pays as much', 60_000, shadowOf(pays, series(300, 6, 20, 17)), false, /^not_better_than_warmup_in_shadow/],
  ];
  for (const [name, now, shadow, switches, reason] of cases) {
    const v = decideSwitch(shadow, now, mr);
    assert.equal(v.switch, switches, `${name}: ${v.reason}`);
    assert.match(v.reason, reason, name);
    const t = decideMode(warm, { now, active: { version: 'v1' }, shadow, live: null, previous: null }, mr);
    assert.equal(t !== null, switches, name);
  }
  assert.equal(decideMode(warm, { now: 60_000, active: null, shadow: shadowOf(pays, warmLoses), live: null, previous: null }, mr), null, 'no model');
  // The transition carries the figures it was decided on.
  const sh = shadowOf(pays, warmLoses);
  const t = decideMode(warm, { now: 61_000, active: { version: 'v1' }, shadow: sh, live: null, previous: null }, mr)!;
  assert.equal(t.reason, 'pays_in_shadow');
  assert.deepEqual([t.from, t.to, t.version], ['warmup', 'model', 'v1']);
  assert.deepEqual(t.metrics, {
    shadow_windows: 300,
    shadow_pnl_bps_per_window: sh.own.mean,
    shadow_pnl_lower_bps: sh.own.lower,
    warmup_shadow_pnl_bps_per_window: sh.own.mean - sh.diff.mean,
    shadow_diff_vs_warmup_bps: sh.diff.mean,
    shadow_diff_lower_bps: sh.diff.lower,
    margin_bps: 0.5,
    warmup_elapsed_ms: 61_000,
  });
  assert.ok(sh.own.lower > 0 && sh.diff.lower > 0.5, JSON.stringify(sh));
  assert.ok(Math.abs(sh.diff.mean - (pays.reduce((a, b) => a + b, 0) - warmLoses.reduce((a, b) => a + b, 0)) / 300) < 1e-9);
  assert.deepEqual(applyTransition(warm, t), { mode: 'model', version: 'v1', warmupStartedAt: 0 });
});

test('model mode: losing money against warm-up (or outright) rolls back to the previous version, or falls back to warm-up', () => {
  const s: ModeState = { mode: 'model', version: 'v2', warmupStartedAt: 0 };
  const active = { version: 'v2' };
  const live = (n: number, ownUpper: number, diffUpper: number) => ({ n, own: { mean: ownUpper - 1, upper: ownUpper }, diff: { mean: diffUpper - 1, upper: diffUpper } });
  assert.equal(decideMode(s, { now: 1, active, shadow: null, live: live(99, -3, -3), previous: 'v1' }, mr), null, 'window not full');
  assert.equal(decideMode(s, { now: 1, active, shadow: null, live: live(100, 0, 0), previous: 'v1' }, mr), null, 'upper bounds at 0: not confidently worse');
  const rb = decideMode(s, { now: 1, active, shadow: null, live: live(100, 2, -0.1), previous: 'v1' }, mr)!;
  assert.deepEqual([rb.reason, rb.from, rb.to, rb.fromVersion, rb.version], ['degraded_rollback', 'model', 'model', 'v2', 'v1']);
  assert.equal(rb.metrics.live_diff_upper_bps, -0.1);
  const loses = decideMode(s, { now: 1, active, shadow: null, live: live(100, -0.1, 2), previous: 'v1' }, mr)!;
  assert.equal(loses.reason, 'degraded_rollback', 'confidently losing after costs, even when warm-up would lose more');
  const fb = decideMode(s, { now: 1, active, shadow: null, live: live(100, 2, -0.1), previous: null }, mr)!;
  assert.deepEqual([fb.reason, fb.to, fb.version], ['degraded_fallback_warmup', 'warmup', null]);
  const pr = decideMode(s, { now: 1, active: { version: 'v3' }, shadow: null, live: live(10, 5, 5), previous: 'v2' }, mr)!;
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

test('warm-up -> model: a shadow record whose pay is the market\'s own drift (holding one side per asset does as well) does not switch', () => {
  // Two assets, 300 windows; cost 13 bps per round trip. The market's move per window is drawn
  // around a drift per asset and stretch; the model's side is what it would have taken.
  const cost = 13;
  const record = (moves: Array<{ asset: string; move: number }>, sideOf: (i: number, move: number) => 1 | -1) => {
    const q = new RollingMoney(moves.length);
    moves.forEach(({ asset, move }, i) => {
      const s = sideOf(i, move);
      q.add(s * move - cost, -cost - 5, { asset, buy: move - cost, sell: -move - cost });
    });
    return q.judge(boot);
  };
  const noise = series(300, 0, 8, 21);
  // One long stretch: both assets drift down all the time (no turn in the record).
  const downOnly = noise.map((x, i) => ({ asset: i % 2 ? 'SOLUSDT' : 'ETHUSDT', move: x - 35 }));
  const alwaysSells = record(downOnly, () => -1);
  assert.ok(alwaysSells.own.lower > 0 && alwaysSells.diff.lower > mr.marginBps, 'it pays, and beats warm-up');
  const v = decideSwitch(alwaysSells, 60_000, mr);
  assert.equal(v.switch, false, v.reason);
  assert.match(v.reason, /^not_better_than_one_side_in_shadow/);
  assert.ok(Math.abs(alwaysSells.oneSide!.mean) < 1e-9, 'the same as holding the short side');
  // A record with turns (blocks of 50 windows per asset, signs alternating) and a model that follows
  // each drift after its first 5 windows: it beats holding one side.
  const turning = noise.map((x, i) => ({ asset: i % 2 ? 'SOLUSDT' : 'ETHUSDT', move: x + 35 * (Math.floor(i / 100) % 2 ? -1 : 1) * (i % 2 ? -1 : 1) }));
  const follows = record(turning, (i, move) => (i % 100 < 10 ? (move > 0 ? -1 : 1) : move > 0 ? 1 : -1));
  const w = decideSwitch(follows, 60_000, mr);
  assert.equal(w.switch, true, w.reason);
  assert.match(w.reason, /over one side/);
  // On the same turning record, a constant seller is refused at the first money test.
  assert.equal(decideSwitch(record(turning, () => -1), 60_000, mr).switch, false);
  // The transition records the one-side figures.
  const t = decideMode(warm, { now: 60_000, active: { version: 'v1' }, shadow: follows, live: null, previous: null }, mr)!;
  assert.equal(t.metrics.shadow_diff_vs_one_side_lower_bps, follows.oneSide!.lower);
});
