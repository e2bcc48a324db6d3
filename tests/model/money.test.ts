// Money after costs (model/money.ts): the seeded paired bootstrap that promotion and rollback use,
// the cost book measured on the service's own fills, and the expected-P&L decision of model mode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bootstrapMean, CostBook, expectedNetBps, pairedBootstrap, sideCostBps, windowPnlBps, maxDrawdown, type CostEstimate } from '../../model/money.ts';
import { SeededRng } from '../../model/rng.ts';
import { SignalEmitter } from '../../model/signals.ts';
import type { TrainedModel } from '../../model/learner.ts';
import { FEATURE_NAMES } from '../../model/features.ts';
import { testModelConfig } from './fixtures.ts';

const opts = { resamples: 2000, seed: 7, confidence: 0.95, block: 1 };
const noise = (n: number, seed: number, sd = 10) => {
  const r = new SeededRng(seed);
  // Sum of 12 uniforms - 6: close to N(0, 1).
  return Array.from({ length: n }, () => sd * (Array.from({ length: 12 }, () => r.next()).reduce((a, b) => a + b, 0) - 6));
};

test('paired bootstrap: a known difference lies in its interval, zero difference is not above a margin, seeded', () => {
  const base = noise(1500, 1);
  const shift = 2;
  const cand = base.map((x, i) => x + shift + noise(1500, 2, 3)[i]!);
  const d = pairedBootstrap(cand, base, opts);
  assert.ok(d.lower < shift && shift < d.upper, `interval [${d.lower}, ${d.upper}] holds the planted difference ${shift}`);
  assert.ok(d.lower > 1.5 && d.upper < 2.5, `and is narrow for 1,500 paired windows: [${d.lower}, ${d.upper}]`);
  // Pairing matters: the same difference unpaired (independent noise of sd 10) is far less certain.
  const unpaired = pairedBootstrap(noise(1500, 3).map((x) => x + shift), base, opts);
  assert.ok(unpaired.upper - unpaired.lower > 3 * (d.upper - d.lower));

  // Zero difference: the interval straddles 0 and its lower bound never clears a non-negative margin.
  const same = pairedBootstrap(base, base, opts);
  assert.deepEqual([same.mean, same.lower, same.upper], [0, 0, 0]);
  const z = pairedBootstrap(noise(1500, 4), noise(1500, 5), opts);
  assert.ok(z.lower < 0 && z.upper > 0, `no real difference: [${z.lower}, ${z.upper}]`);

  // Seeded: the same input and options give the same bounds; another seed other ones.
  assert.deepEqual(pairedBootstrap(cand, base, opts), d);
  assert.deepEqual(pairedBootstrap(cand, base, { ...opts, block: 20 }), pairedBootstrap(cand, base, { ...opts, block: 20 }));
  assert.notEqual(pairedBootstrap(cand, base, { ...opts, seed: 8 }).lower, d.lower);
  assert.throws(() => pairedBootstrap([1, 2], [1], opts), /2 vs 1 windows/);
});

test('block bootstrap: autocorrelated windows get a wider interval than the plain bootstrap claims', () => {
  // Regimes of 50 windows at +3 or -3 bps: neighbours are not independent.
  const r = new SeededRng(9);
  const xs: number[] = [];
  for (let k = 0; k < 30; k++) {
    const level = r.next() < 0.5 ? 3 : -3;
    for (let j = 0; j < 50; j++) xs.push(level + (r.next() - 0.5));
  }
  const plain = bootstrapMean(xs, opts);
  const blocks = bootstrapMean(xs, { ...opts, block: 50 });
  assert.equal(plain.mean, blocks.mean);
  assert.ok(blocks.upper - blocks.lower > 3 * (plain.upper - plain.lower), `${blocks.upper - blocks.lower} vs ${plain.upper - plain.lower}`);
});

test('cost book: fee and slippage beyond the half spread from own fills, E|move| per asset, fallback fee', () => {
  const book = new CostBook(3, 10);
  assert.deepEqual(book.estimate('BTCUSDT'), { feeBps: 10, slippageBps: 0, absMoveBps: null, fills: 0, moves: 0 });
  // Fills at the touch with a 2-bps spread: slippage vs the mid is 1 bp = the half spread, nothing beyond.
  book.observe({ asset: 'BTCUSDT', market_return_bps: 4, spread_bps: 2, fill: { fee_bps: 5.5, slippage_bps: 1 } });
  book.observe({ asset: 'BTCUSDT', market_return_bps: -8, spread_bps: 2, fill: { fee_bps: 5.5, slippage_bps: 4 } });
  book.observe({ asset: 'BTCUSDT', market_return_bps: 6, spread_bps: 2 }); // rejected: a move, no fill
  const c = book.estimate('BTCUSDT');
  assert.equal(c.feeBps, 5.5);
  assert.equal(c.slippageBps, 1.5); // (0 + 3) / 2
  assert.equal(c.absMoveBps, 6);
  assert.deepEqual([c.fills, c.moves], [2, 3]);
  // Rolling: only the last 3 windows count.
  for (let i = 0; i < 3; i++) book.observe({ asset: 'BTCUSDT', market_return_bps: 1, spread_bps: 2, fill: { fee_bps: 2, slippage_bps: 1 } });
  assert.deepEqual(book.estimate('BTCUSDT'), { feeBps: 2, slippageBps: 0, absMoveBps: 1, fills: 3, moves: 3 });
  assert.equal(book.estimate('ETHUSDT').feeBps, 10, 'other assets keep the fallback');
});

test('window P&L: the stored reward where the fill took that side, the counterfactual with measured costs otherwise', () => {
  const c: CostEstimate = { feeBps: 5.5, slippageBps: 0.5, absMoveBps: 10, fills: 10, moves: 10 };
  const f = FEATURE_NAMES.map(() => 0);
  f[6] = 2; // spread bps
  assert.equal(sideCostBps(c, 2), 7);
  assert.equal(windowPnlBps(1, { features: f, market_return_bps: 20, exec: { side: 1, reward_bps: 12 } }, c), 12 - 7, 'filled: reward less the exit side');
  assert.equal(windowPnlBps(-1, { features: f, market_return_bps: 20, exec: { side: 1, reward_bps: 12 } }, c), -20 - 14, 'other side: counterfactual round trip');
  assert.equal(windowPnlBps(1, { features: f, market_return_bps: 20, exec: null }, c), 20 - 14, 'unfilled / rejected: counterfactual');
  assert.equal(maxDrawdown([5, -3, -4, 10, -2]), 7);
});

/** A model whose P(up) is fixed: the decision under test is the emitter's, not the learner's. */
const fixedModel = (p: number): TrainedModel => ({ spec: { id: 'mkt-v1', names: [...FEATURE_NAMES], lookback: 60, horizonMs: 1000, mean: [], std: [] }, model: null as never, predict: (rows) => rows.map(() => p) });

test('expected-P&L decision: no signal when costs exceed the edge, sized by the expected return above the margin', () => {
  const cfg = testModelConfig({ MODEL_MIN_EXPECTED_BPS: '2', MODEL_FULL_SIZE_BPS: '20', MODEL_MIN_AMOUNT: '10', MODEL_MAX_AMOUNT: '210' });
  const e = new SignalEmitter(cfg, new SeededRng(1), () => '00000000-0000-4000-8000-000000000000');
  const hist = Array.from({ length: 70 }, (_, i) => ({ ts: i * 1000, mid: 100 + (i % 3) * 0.01, bid: 99.99, ask: 100.01, bidSize: 1, askSize: 1, volume24h: 0 }));
  const f = FEATURE_NAMES.map(() => 0);
  f[6] = 2;
  const sig = (p: number, c: CostEstimate) => e.modelSignal('BTCUSDT', 70_000, hist, f, 0, { version: 'v1', model: fixedModel(p) }, c);
  const cheap: CostEstimate = { feeBps: 0.5, slippageBps: 0, absMoveBps: 20, fills: 50, moves: 50 };
  const taker: CostEstimate = { ...cheap, feeBps: 5.5 };
  // P = 0.7: edge |2P - 1| x 20 = 8 bps gross. Round trip with a 5.5-bps fee and a 2-bps spread: 13 bps.
  assert.ok(Math.abs(expectedNetBps(0.7, 2, taker)! - (8 - 13)) < 1e-9);
  assert.equal(sig(0.7, taker), null, 'costs above the edge: no signal');
  assert.equal(sig(0.3, taker), null, 'same on the sell side');
  assert.equal(sig(0.7, { ...cheap, absMoveBps: null }), null, 'no measured move yet: no signal');
  // Cheap fills: 8 - 2 x (0.5 + 1) = 5 bps expected, above the 2-bps margin: a buy, sized 3/20 of the way.
  const s = sig(0.7, cheap)!;
  assert.equal(s.signal_type, 'buy');
  assert.ok(Math.abs(s.amount - (10 + 200 * (3 / 20))) < 0.01, `amount ${s.amount}`);
  assert.ok(Math.abs(JSON.parse(s.metadata!.extra!).expected_bps - 5) < 1e-9);
  assert.equal(sig(0.3, cheap)!.signal_type, 'sell');
  // Just under the margin: nothing; far above it: the full amount.
  assert.equal(sig(0.5 + (2 * 1.5 + 1.99) / 40, cheap), null);
  assert.equal(sig(0.99, { ...cheap, absMoveBps: 100 })!.amount, 210);
});
