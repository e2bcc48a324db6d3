// Replay backtests on the real local stack: the same recorded signals replayed twice with the same
// seed give identical reports, with fills, and a self-contained HTML equity chart.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runReplay } from '../../cli/replay.ts';
import { parseReplayArgs } from '../../cli/replay-args.ts';

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

const SIGNALS = [
  signal(1, 'buy', 'BTCUSDT', 300, 'strat-a'),
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

  const first = await runReplay(opts);
  const second = await runReplay(opts);

  assert.equal(first.report.signals.timeouts, 0, `no signal timed out: ${JSON.stringify(first.report.per_signal)}`);
  assert.ok(first.report.fills > 0, `fills: ${JSON.stringify(first.report.per_signal)}`);
  assert.equal(first.report.signals.total, SIGNALS.length);
  assert.ok(first.report.signals.placed >= 8, `placed: ${JSON.stringify(first.report.per_signal)}`);
  assert.equal(first.report.per_signal[9]!.outcome, 'rejected');
  assert.ok(first.report.fees > 0);
  assert.equal(first.report.equity_curve.length, SIGNALS.length + 1);
  assert.deepEqual(first.report.per_strategy.map((s) => s.strategy_id), ['strat-a', 'strat-b']);

  // Same seed, same input: the same report, and the file on disk is that report.
  assert.deepEqual(second.report, first.report);
  assert.deepEqual(JSON.parse(await readFile(second.jsonPath, 'utf8')), first.report);

  const html = await readFile(second.htmlPath, 'utf8');
  assert.ok((await stat(second.htmlPath)).size > 0);
  assert.match(html, /<svg/);
  assert.match(html, /<polyline/);
  assert.doesNotMatch(html, /<script|<link|src=/, 'self-contained: no external assets');
});

test('replay arguments: offsets, times and usage errors', () => {
  const o = parseReplayArgs(['--topic-prefix', 'p.', '--from-offset', '0:5,2:7', '--to-offset', '100', '--from-time', '2025-01-01T00:00:00Z', '--seed', '3', '--set', 'RISK_MAX_ORDER_NOTIONAL=500']);
  assert.deepEqual(o.fromOffset, { 0: 5, 2: 7 });
  assert.equal(o.toOffset, 100);
  assert.equal(o.fromTime, Date.UTC(2025, 0, 1));
  assert.equal(o.seed, 3);
  assert.deepEqual(o.settings, { RISK_MAX_ORDER_NOTIONAL: '500' });
  assert.throws(() => parseReplayArgs([]), /--file or --topic-prefix/);
  assert.throws(() => parseReplayArgs(['--file', 'x', '--topic-prefix', 'p']), /not both/);
  assert.throws(() => parseReplayArgs(['--topic-prefix', 'p', '--from-offset', 'x:y']), /partition:offset/);
});
