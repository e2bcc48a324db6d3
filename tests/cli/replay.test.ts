// Replay backtests on the real local stack: the same recorded signals replayed twice with the same
// seed give identical reports, with fills, and a self-contained HTML equity chart.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runReplay } from '../../cli/replay.ts';
import { parseReplayArgs } from '../../cli/replay-args.ts';
import { mulberry32 } from '../../stack/seeded.ts';

const dir = await mkdtemp(join(tmpdir(), 'replay-test-'));
after(() => rm(dir, { recursive: true, force: true }));

// Snapshot prices the simulator's market is set to before each signal.
const PRICE: Record<string, number> = { BTCUSDT: 60000, ETHUSDT: 3000, SOLUSDT: 150 };

function signal(n: number, side: 'buy' | 'sell', asset: string, amount: number, strategy: string, priceMove = 0): Record<string, unknown> {
  return {
    signal_id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    signal_type: side,
    asset,
    amount,
    confidence: 0.8,
    // Recorded an hour ago, 10 s apart: the replay re-stamps them, so validation does not find them stale.
    timestamp: new Date(Date.UTC(2025, 5, 1, 12, 0, n * 10)).toISOString(),
    strategy_id: strategy,
    model_version: null,
    is_warmup: false,
    market_data_snapshot: { price: PRICE[asset]! * (1 + priceMove), spread: 0.5, volume_24h: 1e6, volatility: 0.02, orderbook_depth: null, technical_indicators: null },
    metadata: null,
    trace_id: `trace-${n}`,
  };
}

// The first signal carries the model service's feature vector (mkt-v1, technical_indicators):
// the warm-up row decides on it (ret_3 < 0: momentum sells) rather than on the replayed market.
const FEATURES = { ret_1_bps: -1, ret_3_bps: -2.5, ret_10_bps: -4, volatility_bps: 1, autocorr_1: 0.2, trend: -0.2, spread_bps: 0.3, depth_imbalance: 0, exposure: 0 };

const SIGNALS = [
  { ...signal(1, 'buy', 'BTCUSDT', 300, 'strat-a'), market_data_snapshot: { ...(signal(1, 'buy', 'BTCUSDT', 300, 'strat-a').market_data_snapshot as object), technical_indicators: FEATURES } },
  signal(2, 'buy', 'ETHUSDT', 200, 'strat-b'),
  signal(3, 'buy', 'SOLUSDT', 150, 'strat-a'),
  signal(4, 'sell', 'BTCUSDT', 150, 'strat-a', 0.004),
  signal(5, 'buy', 'ETHUSDT', 100, 'strat-b', -0.003),
  signal(6, 'sell', 'SOLUSDT', 100, 'strat-a', 0.006),
  signal(7, 'sell', 'ETHUSDT', 250, 'strat-b', 0.005),
  signal(8, 'buy', 'BTCUSDT', 200, 'strat-b', -0.002),
  signal(9, 'sell', 'SOLUSDT', 50, 'strat-b', 0.001),
  // Refused by the risk stage: confidence below RISK_MIN_CONFIDENCE.
  { ...signal(10, 'buy', 'BTCUSDT', 100, 'strat-a'), confidence: 0.1 },
];

test('a replay run twice gives identical reports', { timeout: 180_000 }, async () => {
  const file = join(dir, 'signals.jsonl');
  await writeFile(file, SIGNALS.map((s) => JSON.stringify(s)).join('\n') + '\n');
  const reportsDir = join(dir, 'reports');
  const opts = { name: 'test', seed: 5, file, reportsDir, progress: false, signalTimeoutMs: 20_000 };

  // The first run compares the four strategies (four worlds side by side); the second replays the
  // recorded signals alone, which must give the same report (each world is deterministic alike).
  const first = await runReplay(opts);
  const firstHtml = await readFile(first.htmlPath, 'utf8');
  const second = await runReplay({ ...opts, strategies: ['recorded'] });

  assert.equal(first.report.signals.timeouts, 0, `no signal timed out: ${JSON.stringify(first.report.per_signal)}`);
  assert.ok(first.report.fills > 0, `fills: ${JSON.stringify(first.report.per_signal)}`);
  assert.equal(first.report.signals.total, SIGNALS.length);
  assert.ok(first.report.signals.placed >= 8, `placed: ${JSON.stringify(first.report.per_signal)}`);
  assert.equal(first.report.per_signal[9]!.outcome, 'rejected');
  assert.ok(first.report.fees > 0);
  assert.equal(first.report.equity_curve.length, SIGNALS.length + 1);
  assert.deepEqual(first.report.per_strategy.map((s) => s.strategy_id), ['strat-a', 'strat-b']);

  // Same seed, same input: the same report, and the file on disk is that report.
  const recordedOnly = {
    ...first.report,
    strategies: first.report.strategies.filter((r) => r.strategy === 'recorded'),
    comparison: { ...first.report.comparison, warmup_features: { recorded: 0, replay_market: 0, none: 0 } },
  };
  assert.deepEqual(second.report, recordedOnly);
  assert.deepEqual(JSON.parse(await readFile(second.jsonPath, 'utf8')), recordedOnly);

  // The strategy comparison: four rows, each from its own world over the same market.
  const rows = first.report.strategies;
  assert.deepEqual(rows.map((r) => r.strategy), ['recorded', 'warm-up', 'buy-and-hold', 'coin-flip']);
  const byName = Object.fromEntries(rows.map((r) => [r.strategy, r]));
  assert.equal(byName.recorded!.pnl, first.report.pnl.total, 'the recorded row is the replay of the recorded signals');
  assert.deepEqual(byName.recorded!.equity_curve, first.report.equity_curve.map((p) => p.equity));
  assert.equal(first.report.comparison.capital, SIGNALS.reduce((s, x) => s + (x.amount as number), 0));
  for (const r of rows) {
    assert.equal(r.equity_curve.length, SIGNALS.length + 1, r.strategy);
    assert.ok(r.fills > 0 && r.fees > 0, `${r.strategy} traded: ${JSON.stringify(r)}`);
    assert.ok(r.max_drawdown >= 0 && r.turnover > 0, r.strategy);
    assert.ok(r.hit_rate !== null && r.hit_rate >= 0 && r.hit_rate <= 1, r.strategy);
  }
  assert.equal(byName.recorded!.sides, 'BBBSBSSBSB');

  // Buy-and-hold by hand: one spot market buy per asset at its first signal, of the asset's total
  // amount, at the simulator's best ask (mid + 1 bp, up to the tick), quantity down to the base
  // precision, fee 0.1 % of it in the base coin (8 decimals, as the simulator reports it) valued at
  // the fill price; marked to the final mid.
  const hold: Record<string, { amount: number; mid: number; tick: number; step: number }> = {
    BTCUSDT: { amount: 300 + 150 + 200 + 100, mid: 60000, tick: 0.01, step: 0.000001 },
    ETHUSDT: { amount: 200 + 100 + 250, mid: 3000, tick: 0.01, step: 0.00001 },
    SOLUSDT: { amount: 150 + 100 + 50, mid: 150, tick: 0.01, step: 0.001 },
  };
  let expected = 0;
  for (const [sym, h] of Object.entries(hold)) {
    const ask = Math.ceil((h.mid * 1.0001) / h.tick - 1e-9) * h.tick;
    const qty = Math.floor(h.amount / ask / h.step + 1e-9) * h.step;
    const final = first.report.final_prices[sym]!;
    expected += qty * (final - ask) - (Math.round(0.001 * qty * 1e8) / 1e8) * ask;
  }
  assert.equal(byName['buy-and-hold']!.sides, 'BBB.......');
  assert.ok(Math.abs(byName['buy-and-hold']!.pnl - expected) < 1e-6, `buy-and-hold pnl ${byName['buy-and-hold']!.pnl} vs hand-computed ${expected}`);
  assert.equal(byName['buy-and-hold']!.turnover, Math.round((byName['buy-and-hold']!.volume / first.report.comparison.capital) * 1e4) / 1e4);

  // The coin flip follows its seed (the simulator seed unless --coin-seed): the same sides every run.
  const coin = mulberry32(5);
  assert.equal(byName['coin-flip']!.sides, SIGNALS.map(() => (coin() < 0.5 ? 'B' : 'S')).join(''));
  assert.equal(first.report.comparison.coin_seed, 5);
  // The first signal's recorded features decide its warm-up side; the others carry none, so the
  // heuristic reads the replayed market's one-second mids.
  const wf = first.report.comparison.warmup_features;
  assert.equal(wf.recorded, 1);
  assert.equal(wf.replay_market + wf.none, SIGNALS.length - 1);
  assert.ok(wf.replay_market >= SIGNALS.length - 2, JSON.stringify(wf));
  assert.equal(byName['warm-up']!.sides[0], 'S', 'momentum on a recorded ret_3 of -2.5 bps sells');

  const html = firstHtml;
  assert.ok((await stat(second.htmlPath)).size > 0);
  assert.match(html, /<svg/);
  assert.equal(html.match(/<polyline/g)?.length, 4, 'the four equity curves on one chart');
  assert.match(html, /Strategies compared/);
  assert.doesNotMatch(html, /<script|<link|src=/, 'self-contained: no external assets');
});

test('replay arguments: offsets, times and usage errors', () => {
  const o = parseReplayArgs(['--topic-prefix', 'p.', '--from-offset', '0:5,2:7', '--to-offset', '100', '--from-time', '2025-01-01T00:00:00Z', '--seed', '3', '--set', 'RISK_MAX_ORDER_NOTIONAL=500']);
  assert.deepEqual(o.fromOffset, { 0: 5, 2: 7 });
  assert.equal(o.toOffset, 100);
  assert.equal(o.fromTime, Date.UTC(2025, 0, 1));
  assert.equal(o.seed, 3);
  assert.deepEqual(o.settings, { RISK_MAX_ORDER_NOTIONAL: '500' });
  assert.equal(o.strategies, undefined, 'all four by default');
  const s = parseReplayArgs(['--file', 'x', '--strategies', 'coin-flip,warm-up', '--coin-seed', '9', '--parallel', '2']);
  assert.deepEqual(s.strategies, ['coin-flip', 'warm-up']);
  assert.equal(s.coinSeed, 9);
  assert.equal(s.parallel, 2);
  assert.throws(() => parseReplayArgs(['--file', 'x', '--strategies', 'martingale']), /unknown strategy/);
  assert.throws(() => parseReplayArgs([]), /--file or --topic-prefix/);
  assert.throws(() => parseReplayArgs(['--file', 'x', '--topic-prefix', 'p']), /not both/);
  assert.throws(() => parseReplayArgs(['--topic-prefix', 'p', '--from-offset', 'x:y']), /partition:offset/);
});
