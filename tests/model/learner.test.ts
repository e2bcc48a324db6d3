// Proof that it learns, judged on money: price paths from the exchange simulator (fixed seed,
// manual clock), the warm-up emitter trading every step, the window builder labelling every
// signal (fills at the touch with the linear taker fee), one training round.
//   - planted momentum pattern with the simulator's default 1-bp moves: the candidate learns the
//     direction, but one-second moves of ~0.9 bp do not pay a ~13-bp round trip (5.5-bp taker fee
//     per side + the 2-bp spread): after costs it holds everywhere and is not promoted; traded on
//     its direction regardless of costs it would lose;
//   - the same pattern at 60 bps per step (PriceProcess volatility 0.006): moves exceed costs, the
//     candidate trades where it expects to earn, and is promoted with the bootstrap lower bound of
//     its P&L difference to warm-up above the margin;
//   - pure random walks (both volatilities): nothing to learn, never promoted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { simulateSession, testModelConfig } from './fixtures.ts';
import { WindowBuilder } from '../../model/windows.ts';
import { loadTf } from '../../model/tf.ts';
import { trainingRound, metricsTable, learnerConfig } from '../../model/trainer.ts';
import { fromArtifacts, toArtifacts, timeSplit, train } from '../../model/learner.ts';
import { FEATURE_NAMES, normalise } from '../../model/features.ts';
import { SeededRng } from '../../model/rng.ts';
import { evaluate } from '../../model/evaluate.ts';
import { costBookOf, labelledRowOf } from '../../model/money.ts';

const cfg = testModelConfig();
/** PriceProcess volatility (per 1-s step) at which one-step moves exceed the round-trip costs. */
const PAYING_VOL = 0.006;

async function round(mode: 'pattern' | 'random-walk', volatility?: number) {
  const s = await simulateSession({ mode, seed: 11, steps: 2400, cfg, volatility });
  const b = new WindowBuilder({ horizonMs: cfg.MODEL_HORIZON_MS, allowedLatenessMs: cfg.MODEL_ALLOWED_LATENESS_MS, orderEventsMaxWaitMs: cfg.MODEL_ORDER_EVENTS_MAX_WAIT_MS, lookback: cfg.MODEL_FEATURE_LOOKBACK, labelMinMoveBps: 0, strategyId: cfg.MODEL_STRATEGY_ID });
  const samples = s.inputs.flatMap((i) => b.add(i));
  const rows = samples.map(labelledRowOf).filter((r) => r !== null);
  const { tf } = await loadTf(false);
  const r = await trainingRound(tf, rows, cfg, null);
  const d = r.decision;
  console.log(`${mode} (volatility ${volatility ?? 'default'}):\n${metricsTable(r)}\ndecision: ${d.reason}\ndiff vs ${d.baseline}: mean ${d.diff.mean.toFixed(3)} [${d.diff.lower.toFixed(3)}, ${d.diff.upper.toFixed(3)}]; own: mean ${d.own.mean.toFixed(3)} [${d.own.lower.toFixed(3)}, ${d.own.upper.toFixed(3)}]; costs ${JSON.stringify(r.costs)}`);
  return { r, rows, tf };
}

test('planted pattern, 1-bp moves: the direction is learned, but it does not pay after costs and is not promoted', async () => {
  const { r, rows } = await round('pattern');
  assert.ok(rows.length > 4000, `enough labelled samples (${rows.length})`);
  // It learned the direction: better than a coin flip and than warm-up over every held-out window.
  assert.ok(r.metrics.brier < 0.235, `Brier ${r.metrics.brier} clearly better than a coin flip's 0.25`);
  assert.ok(r.metrics.hit_rate_all >= r.warmup.hit_rate + 0.02, `hit rate ${r.metrics.hit_rate_all} above warm-up ${r.warmup.hit_rate}`);
  // The costs it measured on its fills: 5.5-bp fee per side, moves of about one basis point.
  for (const c of Object.values(r.costs)) {
    assert.ok(Math.abs(c.feeBps - 5.5) < 0.01 && c.fills > 100, JSON.stringify(c));
    assert.ok(c.absMoveBps! < 1.5, JSON.stringify(c));
  }
  // After costs it expects to earn nowhere, so it would hold everywhere: not promoted.
  assert.equal(r.metrics.traded, 0);
  assert.equal(r.decision.promote, false, r.decision.reason);
  assert.match(r.decision.reason, /^too_few_traded/);
  // Traded on its direction regardless of costs (the old rule), it loses money; so does warm-up.
  const { train: tr, holdout } = timeSplit(rows, cfg.MODEL_HOLDOUT_FRACTION, cfg.MODEL_HORIZON_MS);
  const ungated = evaluate(r.candidate.predict(holdout.map((x) => x.features)), holdout, { minEdge: cfg.MODEL_MIN_EDGE, costs: costBookOf(tr, cfg.MODEL_COST_WINDOW, cfg.MODEL_FEE_BPS), minExpectedBps: null });
  console.log(`ungated candidate: traded ${ungated.traded}, hit rate ${ungated.hit_rate.toFixed(4)}, P&L after costs ${ungated.pnl_bps.toFixed(1)} bps (${ungated.pnl_bps_per_trade.toFixed(2)} per trade)`);
  assert.ok(ungated.traded > 200 && ungated.hit_rate > 0.58, `ungated it trades its skill: ${ungated.traded} at ${ungated.hit_rate}`);
  assert.ok(ungated.pnl_bps_per_trade < -5, `and loses ${ungated.pnl_bps_per_trade} bps per trade`);
  assert.ok(r.warmup.pnl_bps < 0, `warm-up loses too: ${r.warmup.pnl_bps}`);
});

test('planted pattern, moves above costs: promoted on money, with the bootstrap lower bound reported', async () => {
  const { r, tf, rows } = await round('pattern', PAYING_VOL);
  const d = r.decision;
  assert.equal(d.promote, true, d.reason);
  assert.equal(d.baseline, 'warmup');
  assert.ok(r.metrics.traded >= cfg.MODEL_MIN_EVAL_SAMPLES, `traded ${r.metrics.traded}`);
  assert.ok(d.own.lower > 0, `its own P&L after costs is positive with 95 % confidence: ${d.own.lower}`);
  assert.ok(d.diff.lower > cfg.MODEL_PROMOTION_MARGIN_BPS, `beats warm-up by the margin with 95 % confidence: ${d.diff.lower}`);
  assert.ok(d.diff.lower < d.diff.mean && d.diff.mean < d.diff.upper);
  assert.match(d.reason, /lower bound/);
  assert.ok(r.metrics.max_drawdown_bps <= cfg.MODEL_MAX_DRAWDOWN_BPS && r.metrics.ece <= cfg.MODEL_MAX_ECE);
  // Deterministic: the same data and seed give the same decision and bounds.
  const again = await trainingRound(tf, rows, cfg, null);
  assert.deepEqual(again.decision, d);

  // The stored form gives the same predictions (what a reload from model_versions gives).
  const back = await fromArtifacts(tf, await toArtifacts(tf, r.candidate), cfg.MODEL_LEARNING_RATE);
  const some = rows.slice(-50).map((x) => x.features);
  assert.deepEqual(back.predict(some), r.candidate.predict(some));
});

for (const vol of [undefined, PAYING_VOL]) {
  test(`pure random walk (volatility ${vol ?? 'default'}): no false skill, the candidate is not promoted`, async () => {
    const { r } = await round('random-walk', vol);
    assert.equal(r.decision.promote, false, r.decision.reason);
    // Whatever it trades on, it is not meaningfully better than chance, and it does not pay.
    assert.ok(r.metrics.traded === 0 || r.metrics.hit_rate < 0.56, `hit rate ${r.metrics.hit_rate} on ${r.metrics.traded}`);
    assert.ok(!(r.decision.own.lower > 0), `own P&L lower bound ${r.decision.own.lower}`);
  });
}

test('the chronological split purges training rows whose label horizon reaches the held-out windows', () => {
  const rows = Array.from({ length: 100 }, (_, i) => ({ ts: 1000 * (99 - i) })); // out of order on purpose
  const plain = timeSplit(rows, 0.25);
  assert.deepEqual([plain.train.length, plain.holdout.length, plain.holdout[0]!.ts], [75, 25, 75_000]);
  const purged = timeSplit(rows, 0.25, 5000);
  assert.equal(purged.holdout.length, 25, 'the held-out part is unchanged');
  assert.equal(purged.train[purged.train.length - 1]!.ts, 69_000, 'labels of 70 s .. 74 s would see 75 s and later');
  assert.ok(purged.train.every((r) => r.ts + 5000 < purged.holdout[0]!.ts));
  assert.equal(purged.train.length, 70);
});

test('the network does not see the account exposure: inventory that tracked the past drift is not learned as a direction', async () => {
  // Rows where the exposure (last feature) gives the label away and the returns say nothing: what
  // warm-up's momentum inventory looks like to a learner in a drift that lasts the whole sample.
  const { tf } = await loadTf(false);
  const rng = new SeededRng(5);
  const rows = Array.from({ length: 2000 }, (_, i) => {
    const up = rng.next() < 0.5;
    const f = FEATURE_NAMES.map(() => rng.next() * 2 - 1);
    f[FEATURE_NAMES.indexOf('exposure')] = up ? 2 : -2;
    return { features: f, label: (up ? 1 : 0) as 0 | 1, market_return_bps: up ? 20 : -20, ts: i * 1000 };
  });
  const m = await train(tf, rows, { ...learnerConfig(cfg), epochs: 20 });
  assert.deepEqual(m.spec.ignored, ['exposure', 'spread_bps'], 'stored with the version');
  const probe = rows.slice(0, 50).map((r) => r.features);
  const flip = (sign: number) => probe.map((f) => f.map((x, j) => (FEATURE_NAMES[j] === 'exposure' ? 2 * sign : x)));
  const [long, short] = [m.predict(flip(1)), m.predict(flip(-1))];
  assert.deepEqual(long, short, 'P(up) is the same whatever the exposure');
  const back = await fromArtifacts(tf, await toArtifacts(tf, m), cfg.MODEL_LEARNING_RATE);
  assert.deepEqual(back.predict(flip(1)), long, 'the loaded version ignores it too');
  // A version stored before `ignored` existed keeps seeing every feature of its vector.
  const old = { mean: [0, 0], std: [1, 1], names: ['a', 'exposure'] };
  assert.deepEqual(normalise([1, 2], old), [1, 2]);
  assert.deepEqual(normalise([1, 2], { ...old, ignored: ['exposure'] }), [1, 0]);
});
