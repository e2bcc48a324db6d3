// The pattern mode's regimes (sim/regimes.ts): a market where skill can pay and one where it cannot.
// Over a seeded path of the real price process, three traders make a round trip at every step,
// held for the model's default horizon (60 one-second steps), paying the simulator's costs (the
// synthetic book's ask / bid around the mid, two taker fees): a look-ahead oracle, an informed
// trader (the planted drift as far as the past reveals it) and a seeded coin flip. Their measured
// P&L per trade must match sim/regimes.ts's analytic figures (the ones sim/README.md states).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PriceProcess } from '../../sim/price-process.ts';
import { buildBook, DEFAULT_DEPTH } from '../../sim/book.ts';
import { Rng } from '../../sim/rng.ts';
import { BLOCK_REGIMES, expectedPnlBps, knownDirection, ROUND_TRIP_COST_BPS, type PatternRegime } from '../../sim/regimes.ts';
import { manualSim } from './helpers.ts';

const H = 60;
const STEPS = 48_000; // 160 blocks of 300 steps: 13 h of one-second steps
const TOLERANCE_BPS = 3; // measured vs analytic, per trade: about 2.5 standard errors (overlapping trades: ~800 independent horizons)
const FEE = { spot: 0.001, linear: 0.00055 } as const;
const BEST_ONLY = { ...DEFAULT_DEPTH, levels: 1 }; // the trades are small: they fill at the best level

function path(regime: PatternRegime, seed: number): { mids: number[]; pp: PriceProcess } {
  const pp = new PriceProcess({ mode: 'pattern', patternRegime: regime, historyMinutes: 0 }, seed, [{ symbol: 'BTCUSDT', initialPrice: 60_000, tickSize: 0.1 }], 0);
  const mids = [pp.mid('BTCUSDT')];
  pp.advanceTo(STEPS * pp.stepMs, (evs) => mids.push(evs[0]!.price));
  return { mids, pp };
}

/** Round trip entered at mid `a` and left at mid `b` through the synthetic book, net of two taker fees, bps of notional. */
function roundTripBps(side: 1 | -1, a: number, b: number, fee: number): number {
  const open = buildBook(a, 0.1, 0.001, BEST_ONLY);
  const close = buildBook(b, 0.1, 0.001, BEST_ONLY);
  const entry = side > 0 ? open.asks[0]!.price : open.bids[0]!.price;
  const exit = side > 0 ? close.bids[0]!.price : close.asks[0]!.price;
  return 1e4 * ((side * (exit - entry)) / entry - fee - (fee * exit) / entry);
}

const paths = new Map<string, ReturnType<typeof path>>();

function measure(regime: Exclude<PatternRegime, 'momentum-noise'>, seed: number, category: 'spot' | 'linear') {
  const key = `${regime}/${seed}`;
  if (!paths.has(key)) paths.set(key, path(regime, seed));
  const { mids, pp } = paths.get(key)!;
  const signs = pp.blockSigns('BTCUSDT');
  const B = BLOCK_REGIMES[regime].blockSteps;
  const coin = new Rng(seed, 77);
  const sum = { perfect: 0, informed: 0, random: 0 };
  let n = 0;
  for (let t = 0; t + H < mids.length; t++) {
    const a = mids[t]!, b = mids[t + H]!;
    const oracle: 1 | -1 = b >= a ? 1 : -1;
    // The planted drift of the next H steps, as far as the blocks begun by step t reveal it.
    const first = Math.floor((t + 1) / B);
    const n1 = Math.min(H, (first + 1) * B - (t + 1));
    const known = Math.floor(t / B);
    const mhat = knownDirection(regime, first, known, signs) * n1 + knownDirection(regime, first + 1, known, signs) * (H - n1);
    const random: 1 | -1 = coin.next() < 0.5 ? 1 : -1;
    // Nothing revealed (pure noise, or a block just begun): a coin flip of its own.
    const tie: 1 | -1 = coin.next() < 0.5 ? 1 : -1;
    const informed: 1 | -1 = mhat > 0 ? 1 : mhat < 0 ? -1 : tie;
    sum.perfect += roundTripBps(oracle, a, b, FEE[category]);
    sum.informed += roundTripBps(informed, a, b, FEE[category]);
    sum.random += roundTripBps(random, a, b, FEE[category]);
    n++;
  }
  return { perfect: sum.perfect / n, informed: sum.informed / n, random: sum.random / n, n };
}

const fmt = (o: Record<string, number>) => Object.entries(o).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ');

for (const category of ['spot', 'linear'] as const) {
  test(`regimes, ${category} costs: measured P&L per trade ≈ analytic; skill pays only where the market is learnable`, () => {
    const got: Record<string, { perfect: number; informed: number; random: number }> = {};
    for (const regime of ['learnable', 'noise', 'trend-revert'] as const) {
      const want = expectedPnlBps(regime, H, ROUND_TRIP_COST_BPS[category]);
      const m = measure(regime, 11, category);
      got[regime] = m;
      console.log(`${category} ${regime}: measured ${fmt(m)} | analytic ${fmt({ perfect: want.perfect, informed: want.informed, random: want.random })}`);
      for (const k of ['perfect', 'informed', 'random'] as const) {
        assert.ok(Math.abs(m[k] - want[k]) <= TOLERANCE_BPS, `${regime} ${k}: measured ${m[k].toFixed(2)} vs analytic ${want[k].toFixed(2)} bps`);
      }
    }
    // Learnable: skill (the past reveals the drift) pays after costs, guessing does not.
    assert.ok(got.learnable!.perfect > 0 && got.learnable!.informed > 0, fmt(got.learnable!));
    assert.ok(got.learnable!.random < 0, fmt(got.learnable!));
    assert.ok(got['trend-revert']!.informed > 0 && got['trend-revert']!.random < 0, fmt(got['trend-revert']!));
    // Noise: only the look-ahead oracle makes money.
    assert.ok(got.noise!.perfect > 0, fmt(got.noise!));
    assert.ok(got.noise!.informed < 0 && got.noise!.random < 0, fmt(got.noise!));
  });
}

test('regimes are deterministic per seed, per symbol, and the default pattern is unchanged', () => {
  const a = path('learnable', 5).mids, b = path('learnable', 5).mids, c = path('learnable', 6).mids;
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  // Unknown regimes are not silently the default.
  const def = new PriceProcess({ mode: 'pattern', historyMinutes: 0 }, 5, [{ symbol: 'BTCUSDT', initialPrice: 60_000, tickSize: 0.1 }], 0);
  const named = new PriceProcess({ mode: 'pattern', patternRegime: 'momentum-noise', historyMinutes: 0 }, 5, [{ symbol: 'BTCUSDT', initialPrice: 60_000, tickSize: 0.1 }], 0);
  def.advanceTo(5_000_000);
  named.advanceTo(5_000_000);
  assert.equal(def.mid('BTCUSDT'), named.mid('BTCUSDT'));
  assert.equal(def.regimeAt(10), 'momentum');
  // A restored process (second start over yesterday's state) continues the same blocks: the signs
  // need no state of their own.
  const sym = [{ symbol: 'BTCUSDT', initialPrice: 60_000, tickSize: 0.1 }];
  const whole = new PriceProcess({ mode: 'pattern', patternRegime: 'learnable', historyMinutes: 0 }, 9, sym, 0);
  whole.advanceTo(2_000_000);
  const first = new PriceProcess({ mode: 'pattern', patternRegime: 'learnable', historyMinutes: 0 }, 9, sym, 0);
  first.advanceTo(1_000_000);
  const again = new PriceProcess({ mode: 'pattern', patternRegime: 'learnable', historyMinutes: 0 }, 9, sym, first.time, JSON.parse(JSON.stringify(first.snapshot())));
  again.advanceTo(2_000_000);
  assert.equal(again.mid('BTCUSDT'), whole.mid('BTCUSDT'));
});

test('a simulator started with a regime plants it (GET /sim/state names the block)', async () => {
  const sim = await manualSim({ seed: 3, priceProcess: { mode: 'pattern', patternRegime: 'trend-revert', historyMinutes: 0 } });
  try {
    sim.tick(10);
    const step = sim.exchange.prices.steps;
    const st = sim.state() as { regime: string };
    assert.match(st.regime, /^(trend|revert)-(up|down)$/);
    assert.equal(st.regime, sim.exchange.prices.regimeAt(step));
    // 300 steps later the trend block has turned into its reversal.
    sim.tick(300);
    const later = (sim.state() as { regime: string }).regime;
    assert.equal(later.split('-')[0], st.regime.startsWith('trend') ? 'revert' : 'trend');
  } finally {
    await sim.close();
  }
});
