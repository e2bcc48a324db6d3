// Warm-up settings honoured (frequency, amounts, randomness, assets), model-mode signals, and every
// emitted signal passes the order manager's own validation (parseSignalJson) and the Avro schema.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import avro from 'avsc';
import { SignalEmitter, type EmitContext } from '../../model/signals.ts';
import { toSignalJson } from '../../connectors/signal-out-bridge.ts';
import { parseSignalJson } from '../../pipelines/signal-format.ts';
import { SeededRng } from '../../model/rng.ts';
import { tickerRecord, testModelConfig, T0 } from './fixtures.ts';
import type { ModelSignal } from '../../schemas/types.ts';
import type { TrainedModel } from '../../model/learner.ts';
import { FEATURE_NAMES } from '../../model/features.ts';
import { sampleOf } from '../../model/windows.ts';

const modelSignalType = avro.Type.forSchema(JSON.parse(readFileSync(new URL('../../schemas/model-signal.avsc', import.meta.url), 'utf8')));

function feed(e: SignalEmitter, assets: string[], seconds: number, emitEvery = 100, ctx: EmitContext = warm): ModelSignal[] {
  const rng = new SeededRng(3);
  const px = new Map(assets.map((a) => [a, 100]));
  const out: ModelSignal[] = [];
  for (let t = 0; t <= seconds * 1000; t += emitEvery) {
    if (t % 1000 === 0) {
      for (const a of assets) {
        const p = px.get(a)! * Math.exp((rng.next() - 0.5) * 0.002);
        px.set(a, p);
        e.onTicker(tickerRecord({ symbol: a, lastPrice: p, bid1Price: p - 0.01, ask1Price: p + 0.01, bid1Size: 3, ask1Size: 1, volume24h: 1000 }, T0 + t));
      }
    }
    out.push(...e.emit(T0 + t, ctx));
  }
  return out;
}
const warm: EmitContext = { mode: { mode: 'warmup', version: null, warmupStartedAt: T0 }, model: null, exposure: () => 0.2 };

function assertValid(s: ModelSignal) {
  const json = JSON.parse(JSON.stringify(toSignalJson(s)));
  const r = parseSignalJson(json);
  assert.ok(r.ok, r.ok ? '' : `${r.code}: ${r.detail}`);
  if (r.ok) {
    assert.equal(r.signal.signal_id, s.signal_id);
    assert.equal(r.signal.signal_type, s.signal_type);
    assert.equal(r.signal.timestamp, s.timestamp);
    assert.equal(r.signal.is_warmup, s.is_warmup);
    assert.equal(r.signal.model_version, s.model_version);
  }
  assert.ok(modelSignalType.isValid(s), 'Avro ModelSignal');
  for (const k of ['signal_id', 'signal_type', 'asset', 'amount', 'confidence', 'timestamp', 'strategy_id', 'model_version', 'is_warmup', 'market_data_snapshot', 'metadata', 'trace_id']) assert.ok(k in json, k);
  for (const k of ['price', 'spread', 'volume_24h', 'volatility', 'orderbook_depth', 'technical_indicators']) assert.ok(k in json.market_data_snapshot, k);
  for (const k of ['reasoning', 'risk_score', 'randomness_level']) assert.ok(k in json.metadata, k);
}

test('warm-up: frequency, assets, amounts and flags as configured; every signal is valid', () => {
  const cfg = testModelConfig({ MODEL_ASSETS: 'BTCUSDT,ETHUSDT,SOLUSDT', WARMUP_INTERVAL_MS: '5000', WARMUP_MIN_AMOUNT: '12', WARMUP_MAX_AMOUNT: '30', WARMUP_RANDOMNESS: '0.3', MODEL_FEATURE_LOOKBACK: '20' });
  const e = new SignalEmitter(cfg, new SeededRng(1));
  const out = feed(e, ['BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'XRPUSDT'], 600);
  assert.deepEqual([...new Set(out.map((s) => s.asset))].sort(), ['BTCUSDT', 'ETHUSDT', 'SOLUSDT']);
  for (const a of ['BTCUSDT', 'ETHUSDT', 'SOLUSDT']) {
    const ts = out.filter((s) => s.asset === a).map((s) => s.timestamp);
    for (let i = 1; i < ts.length; i++) assert.equal(ts[i]! - ts[i - 1]!, 5000, 'one signal per asset per interval');
    assert.ok(ts.length >= 115 && ts.length <= 121, `${a}: ${ts.length} signals in 600 s`);
  }
  for (const s of out) {
    assert.ok(s.amount >= 12 && s.amount <= 30, `amount ${s.amount}`);
    assert.equal(s.is_warmup, true);
    assert.equal(s.model_version, null);
    assert.equal(s.metadata?.randomness_level, 0.3);
    assert.equal(s.metadata?.mode, 'warmup');
    assertValid(s);
  }
  const amounts = out.map((s) => s.amount);
  assert.ok(Math.max(...amounts) > 28 && Math.min(...amounts) < 14, 'amounts spread over the range');
});

test('warm-up randomness: 0 follows the heuristic, 1 is a coin flip, 0.3 in between', () => {
  const share = (randomness: string, heuristic = 'momentum') => {
    const cfg = testModelConfig({ WARMUP_INTERVAL_MS: '1000', WARMUP_RANDOMNESS: randomness, WARMUP_HEURISTIC: heuristic, MODEL_FEATURE_LOOKBACK: '20' });
    const out = feed(new SignalEmitter(cfg, new SeededRng(2)), ['BTCUSDT', 'ETHUSDT'], 1500, 1000);
    const follows = out.filter((s) => {
      const r3 = s.market_data_snapshot.technical_indicators!['ret_3_bps']!;
      return r3 !== 0 && (r3 > 0) === (s.signal_type === 'buy');
    }).length;
    const random = out.filter((s) => JSON.parse(s.metadata!.extra!).random).length;
    return { follows: follows / out.length, random: random / out.length };
  };
  const r0 = share('0');
  assert.ok(r0.follows > 0.99 && r0.random < 0.01, JSON.stringify(r0));
  const mr = share('0', 'mean_reversion');
  assert.ok(mr.follows < 0.01, JSON.stringify(mr));
  const r1 = share('1');
  assert.equal(r1.random, 1);
  assert.ok(Math.abs(r1.follows - 0.5) < 0.05, JSON.stringify(r1));
  const r3 = share('0.3');
  assert.ok(Math.abs(r3.random - 0.3) < 0.05, JSON.stringify(r3));
  assert.ok(Math.abs(r3.follows - 0.85) < 0.05, JSON.stringify(r3));
});

test('model mode: side and confidence from P(up), no signal inside the edge or without measured costs, amounts scale with the expected return, signals valid', () => {
  const cfg = testModelConfig({ MODEL_SIGNAL_INTERVAL_MS: '1000', MODEL_MIN_EDGE: '0.05', MODEL_MIN_AMOUNT: '10', MODEL_MAX_AMOUNT: '100', MODEL_FEATURE_LOOKBACK: '20' });
  const ps = [0.9, 0.52, 0.3, 0.56, 0.1];
  let k = 0;
  const fake: TrainedModel = { spec: { id: 'mkt-v1', names: FEATURE_NAMES, lookback: 20, horizonMs: 1000, mean: [], std: [] }, model: null as never, predict: (rows) => rows.map(() => ps[k++ % ps.length]!) };
  // Moves of 50 bps, free fills: E[r] = |2P - 1| x 50 - 2 bps (the 2-bp spread of the feed), from 4 bps at P = 0.56 to 38 at 0.9.
  const costs = () => ({ feeBps: 0, slippageBps: 0, absMoveBps: 50, fills: 1, moves: 1 });
  const ctx = { mode: { mode: 'model' as const, version: 'm1', warmupStartedAt: T0 }, model: { version: 'm1', model: fake }, exposure: () => 0, costs };
  assert.deepEqual(feed(new SignalEmitter(cfg, new SeededRng(4)), ['BTCUSDT'], 40, 1000, { ...ctx, costs: undefined }), [], 'no measured costs: the model does not trade');
  k = 0;
  const out = feed(new SignalEmitter(cfg, new SeededRng(4)), ['BTCUSDT'], 40, 1000, ctx);
  assert.ok(out.length > 10);
  for (const s of out) {
    assertValid(s);
    assert.equal(s.is_warmup, false);
    assert.equal(s.model_version, 'm1');
    assert.ok([0.9, 0.7, 0.56].includes(s.confidence), String(s.confidence));
    assert.equal(s.signal_type, s.confidence === 0.7 || s.confidence === 0.9 && JSON.parse(s.metadata!.extra!).p_up < 0.5 ? 'sell' : 'buy');
    assert.ok(s.amount >= 10 && s.amount <= 100);
  }
  const by = (c: number) => out.find((s) => s.confidence === c)!.amount;
  assert.equal(by(0.9), 100);
  assert.ok(by(0.56) < by(0.7) && by(0.7) <= 100);
});

test('warm-up with an active version: each signal carries the version\'s P(up) on its features when decided (the shadow judges that, not a later prediction); the window keeps it', () => {
  const cfg = testModelConfig({ WARMUP_INTERVAL_MS: '1000', MODEL_FEATURE_LOOKBACK: '20' });
  const seen: number[][] = [];
  const fake: TrainedModel = { spec: { id: 'mkt-v1', names: FEATURE_NAMES, lookback: 20, horizonMs: 1000, mean: [], std: [] }, model: null as never, predict: (rows) => rows.map((r) => (seen.push(r), 0.5 + Math.tanh(r[1]!) / 4)) };
  const plain = feed(new SignalEmitter(cfg, new SeededRng(4)), ['BTCUSDT'], 30, 1000);
  const out = feed(new SignalEmitter(cfg, new SeededRng(4)), ['BTCUSDT'], 30, 1000, { ...warm, shadow: { version: 'm7', model: fake } });
  assert.ok(out.length > 10);
  assert.equal(seen.length, out.length, 'one prediction per signal, at the signal');
  out.forEach((s, i) => {
    assertValid(s);
    assert.equal(s.is_warmup, true);
    assert.equal(s.model_version, null, 'still a warm-up signal');
    assert.equal(s.signal_type, plain[i]!.signal_type, 'the shadow does not change warm-up\'s decisions');
    const x = JSON.parse(s.metadata!.extra!);
    const features = s.market_data_snapshot!.technical_indicators as Record<string, number>;
    assert.equal(x.shadow_version, 'm7');
    assert.equal(x.shadow_p, 0.5 + Math.tanh(features[FEATURE_NAMES[1]!]!) / 4);
  });
  for (const s of plain) assert.equal(JSON.parse(s.metadata!.extra!).shadow_p, undefined, 'no active version: nothing carried');
  // The window built from such a signal keeps it for the engine (details.shadow_p / shadow_version).
  const w = sampleOf({ signal: out[3]!, src: { topic: 't', partition: 0, offset: '1' }, events: [] }, [0], 100, 101, 0);
  assert.equal(w.details.shadow_p, JSON.parse(out[3]!.metadata!.extra!).shadow_p);
  assert.equal(w.details.shadow_version, 'm7');
  assert.equal(sampleOf({ signal: plain[3]!, src: { topic: 't', partition: 0, offset: '1' }, events: [] }, [0], 100, 101, 0).details.shadow_p, undefined);
});

test('control arm: in model mode warm-up also trades under its own strategy_id, on the warm-up cadence, without changing the model\'s signals; off by default and in warm-up', () => {
  const base = { MODEL_SIGNAL_INTERVAL_MS: '1000', WARMUP_INTERVAL_MS: '2000', MODEL_MIN_EDGE: '0.05', MODEL_FEATURE_LOOKBACK: '20' };
  const ps = [0.9, 0.52, 0.3];
  let k = 0;
  const fake: TrainedModel = { spec: { id: 'mkt-v1', names: FEATURE_NAMES, lookback: 20, horizonMs: 1000, mean: [], std: [] }, model: null as never, predict: (rows) => rows.map(() => ps[k++ % ps.length]!) };
  const costs = () => ({ feeBps: 0, slippageBps: 0, absMoveBps: 50, fills: 1, moves: 1 });
  const ctx = { mode: { mode: 'model' as const, version: 'm1', warmupStartedAt: T0 }, model: { version: 'm1', model: fake }, exposure: () => 0, costs };
  const strip = (list: ModelSignal[]) => list.map((s) => ({ ...s, signal_id: '', trace_id: '' }));

  k = 0;
  const without = feed(new SignalEmitter(testModelConfig(base), new SeededRng(4)), ['BTCUSDT'], 40, 1000, ctx);
  assert.ok(without.length > 10 && without.every((s) => s.strategy_id === 'model-service' && !s.is_warmup), 'off by default: model signals only');
  k = 0;
  const withArm = feed(new SignalEmitter(testModelConfig({ ...base, MODEL_CONTROL_STRATEGY_ID: 'warmup-control' }), new SeededRng(4)), ['BTCUSDT'], 40, 1000, ctx);
  const control = withArm.filter((s) => s.strategy_id === 'warmup-control');
  assert.deepEqual(strip(withArm.filter((s) => s.strategy_id === 'model-service')), strip(without), 'the model\'s signals are the same with the arm on');
  assert.ok(control.length >= 10, `control signals: ${control.length}`);
  for (const s of control) {
    assertValid(s);
    assert.equal(s.is_warmup, true);
    assert.equal(s.model_version, null);
    assert.equal(s.metadata!.mode, 'control');
    assert.ok(s.amount >= 10 && s.amount <= 50, 'warm-up sizes');
  }
  const ts = control.map((s) => s.timestamp);
  for (let i = 1; i < ts.length; i++) assert.equal(ts[i]! - ts[i - 1]!, 2000, 'the warm-up cadence');
  const warmOnly = feed(new SignalEmitter(testModelConfig({ ...base, MODEL_CONTROL_STRATEGY_ID: 'warmup-control' }), new SeededRng(4)), ['BTCUSDT'], 40, 1000);
  assert.ok(warmOnly.length > 0 && warmOnly.every((s) => s.strategy_id === 'model-service'), 'in warm-up there is no second arm');
});

test('a restarted service (same MODEL_SEED, same market) names its signals anew: no signal_id repeats', () => {
  // The service restarts on yesterday's database: a signal_id drawn again from the seeded sequence
  // would be refused there as a duplicate of yesterday's signal (duplicate_signal), and nothing would trade.
  const cfg = testModelConfig({ MODEL_ASSETS: 'BTCUSDT,ETHUSDT', WARMUP_INTERVAL_MS: '5000' });
  const first = feed(new SignalEmitter(cfg), ['BTCUSDT', 'ETHUSDT'], 120);
  const second = feed(new SignalEmitter(cfg), ['BTCUSDT', 'ETHUSDT'], 120);
  assert.ok(first.length >= 40 && second.length === first.length, `${first.length} / ${second.length} signals`);
  // The decisions follow the seed (same sides and amounts on the same market)...
  assert.deepEqual(second.map((s) => [s.signal_type, s.amount]), first.map((s) => [s.signal_type, s.amount]));
  // ...the names never do.
  const ids = new Set([...first, ...second].flatMap((s) => [s.signal_id, s.trace_id]));
  assert.equal(ids.size, 4 * first.length, 'every signal_id and trace_id unique across the two starts');
});
