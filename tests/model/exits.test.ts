// Horizon exits (model/exits.ts): each model-mode entry is closed at its horizon by an opposite
// signal of what it filled, exactly once, whatever the order of the records, redeliveries and
// restarts; refused exits are retried, then given up; nothing is exited for warm-up, the control
// arm, other strategies, unfilled entries or dust. The exit signal is a valid signal for the order
// manager, its amount floors to the quantity at the order manager's rounding, and the window
// builder makes no training window of it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import avro from 'avsc';
import fc from 'fast-check';
import { ExitBook, exitSignalId, isExitSignal, type ExitOrder, type QtyFilter } from '../../model/exits.ts';
import { SignalEmitter } from '../../model/signals.ts';
import { WindowBuilder } from '../../model/windows.ts';
import { windowConfig } from '../../model/service.ts';
import { toSignalJson } from '../../connectors/signal-out-bridge.ts';
import { parseSignalJson } from '../../pipelines/signal-format.ts';
import { Dec } from '../../runtime/decimal.ts';
import { SeededRng } from '../../model/rng.ts';
import { orderEvent, tickerRecord, testModelConfig, T0 } from './fixtures.ts';
import type { ModelSignal, OrderEvent } from '../../schemas/types.ts';

const H = 6000;
const STRATEGY = 'model-service';
const cfg = { strategyId: STRATEGY, horizonMs: H, maxAttempts: 3, retryMs: 400 };
const ETH: QtyFilter = { qtyStep: 0.01, minQty: 0.01, minValue: 5 };
const filter = (c: string, s: string): QtyFilter | null => (c === 'linear' && s === 'ETHUSDT' ? ETH : null);
const touch = (px: number) => (_a: string, side: 'buy' | 'sell') => (side === 'buy' ? px + 0.05 : px - 0.05);

let n = 0;
const id = () => `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`;

function entry(over: Partial<ModelSignal> = {}): ModelSignal {
  return {
    signal_id: id(), asset: 'ETHUSDT', timestamp: T0, strategy_id: STRATEGY, signal_type: 'buy', amount: 100, confidence: 0.62, model_version: 'v1', is_warmup: false,
    market_data_snapshot: null, trace_id: null, metadata: { reasoning: 'model', risk_score: 0, randomness_level: 0, mode: 'model', extra: '{}' }, ...over,
  } as ModelSignal;
}

function exitOf(o: ExitOrder, over: Partial<ModelSignal> = {}): ModelSignal {
  return entry({ signal_type: o.side, amount: o.amount, metadata: { reasoning: 'exit', risk_score: 0, randomness_level: 0, mode: 'exit', extra: JSON.stringify({ exit_of: o.entry, qty: o.qty }) }, ...over });
}

function ev(signal: string, type: OrderEvent['event_type'], filled: string, over: Partial<OrderEvent> = {}): OrderEvent {
  return orderEvent({ event_type: type, occurred_at: T0 + 100, symbol: 'ETHUSDT', filled_qty: filled, avg_fill_price: '3000', fee_currency: null, signal_id: signal, strategy_id: STRATEGY, model_version: 'v1', is_warmup: false, confidence: 0.62, ...over });
}

/** The order manager's sizing of a market order: amount / the touch it takes, floored to the step (pipelines/risk-rules.ts). */
const omQty = (amount: number, px: number, step: number) => Dec.of(amount).div(Dec.of(px), 18).floorTo(Dec.of(step)).toNumber();

test('a filled entry is exited once at its horizon: opposite side, the quantity it filled, an amount the order manager floors to it', () => {
  const b = new ExitBook(cfg);
  const e = entry();
  b.onSignal(e);
  b.onEvent(ev(e.signal_id, 'order_filled', '0.03'));
  assert.deepEqual(b.due(T0 + H - 1, touch(3000), filter), [], 'nothing before the horizon');
  const [o, ...rest] = b.due(T0 + H, touch(3000), filter);
  assert.equal(rest.length, 0);
  assert.equal(o!.entry, e.signal_id);
  assert.equal(o!.side, 'sell');
  assert.equal(o!.qty, 0.03);
  assert.equal(o!.confidence, 0.62);
  assert.equal(o!.version, 'v1');
  assert.equal(omQty(o!.amount, 2999.95, 0.01), 0.03, 'at the price it was sized on');
  // The order manager sizes on its own newest ticker: within half a step's share either way it is still 0.03.
  assert.equal(omQty(o!.amount, 2999.95 * 1.15, 0.01), 0.03);
  assert.equal(omQty(o!.amount, 2999.95 * 0.88, 0.01), 0.03);
  assert.equal(o!.signalId, exitSignalId(e.signal_id, 1));
  b.recordExit(o!, T0 + H);
  assert.deepEqual(b.due(T0 + H + 100, touch(3000), filter), [], 'an exit working: no second one');
  b.onEvent(ev(o!.signalId, 'order_filled', '0.03'));
  assert.deepEqual(b.due(T0 + 2 * H + 1, touch(3000), filter), [], 'closed');
  assert.equal(b.open, 0);
  assert.equal(b.stats.closed, 1);
  // A sell entry is exited by a buy.
  const s = entry({ signal_type: 'sell' });
  b.onSignal(s);
  b.onEvent(ev(s.signal_id, 'order_filled', '0.05'));
  const [o2] = b.due(T0 + H, touch(3000), filter);
  assert.equal(o2!.side, 'buy');
  assert.equal(o2!.qty, 0.05);
  assert.equal(omQty(o2!.amount, 3000.05, 0.01), 0.05);
});

test('nothing is exited for warm-up, the control arm, other strategies, external orders, unfilled or refused entries, or dust', () => {
  const b = new ExitBook(cfg);
  const warm = entry({ is_warmup: true, model_version: null, metadata: { reasoning: 'w', risk_score: 0, randomness_level: 0.3, mode: 'warmup', extra: '{}' } });
  const control = entry({ strategy_id: 'control', metadata: { reasoning: 'c', risk_score: 0, randomness_level: 0.3, mode: 'control', extra: '{}' } });
  const refused = entry();
  const unfilled = entry();
  const dust = entry();
  for (const s of [warm, control, refused, unfilled, dust]) b.onSignal(s);
  b.onEvent(ev(warm.signal_id, 'order_filled', '0.03', { is_warmup: true }));
  b.onEvent(ev(control.signal_id, 'order_filled', '0.03', { strategy_id: 'control' }));
  b.onEvent(ev(refused.signal_id, 'signal_rejected', '0'));
  b.onEvent(ev(unfilled.signal_id, 'order_cancelled', '0'));
  b.onEvent(ev(dust.signal_id, 'order_filled', '0.001')); // below the step: nothing can close it
  assert.equal(b.open, 3, 'warm-up and the control arm are no legs');
  assert.deepEqual(b.due(T0 + H, touch(3000), filter), []);
  assert.equal(b.open, 0, 'refused, unfilled and dust legs are done');
  assert.equal(b.stats.closed, 3);
  assert.equal(b.stats.givenUp, 0);
});

test('partial fills: what has filled is exited at the horizon, what fills later after that exit settles', () => {
  const b = new ExitBook(cfg);
  const e = entry();
  b.onSignal(e);
  b.onEvent(ev(e.signal_id, 'order_partially_filled', '0.02'));
  const [o1] = b.due(T0 + H, touch(3000), filter);
  assert.equal(o1!.qty, 0.02);
  b.recordExit(o1!, T0 + H);
  b.onEvent(ev(e.signal_id, 'order_filled', '0.05'));
  assert.deepEqual(b.due(T0 + H + 10, touch(3000), filter), [], 'the first exit is still working');
  b.onEvent(ev(o1!.signalId, 'order_filled', '0.02'));
  // The next attempt waits the retry delay (from the first exit), then takes the rest.
  assert.deepEqual(b.due(T0 + H + cfg.retryMs - 1, touch(3000), filter), []);
  const [o2] = b.due(T0 + H + cfg.retryMs, touch(3000), filter);
  assert.equal(o2!.qty, 0.03);
  assert.equal(o2!.signalId, exitSignalId(e.signal_id, 2), 'the second exit of the entry');
});

test('a refused exit reopens the leg: retried after the retry delay, doubling, given up after the attempts', () => {
  const b = new ExitBook(cfg);
  const e = entry();
  b.onSignal(e);
  b.onEvent(ev(e.signal_id, 'order_filled', '0.03'));
  let at = T0 + H;
  for (let k = 0; k < cfg.maxAttempts; k++) {
    if (k > 0) {
      const wait = Math.min(H, cfg.retryMs * 2 ** (k - 1));
      assert.deepEqual(b.due(at + wait - 1, touch(3000), filter), [], `attempt ${k + 1} not before ${wait} ms`);
      at += wait;
    }
    const out = b.due(at, touch(3000), filter);
    assert.equal(out.length, 1, `attempt ${k + 1}`);
    assert.equal(out[0]!.signalId, exitSignalId(e.signal_id, k + 1));
    b.recordExit(out[0]!, at);
    b.onEvent(ev(out[0]!.signalId, k === 1 ? 'order_rejected' : 'signal_rejected', '0')); // refused by risk, or dropped by placement
  }
  assert.deepEqual(b.due(at + H, touch(3000), filter), []);
  assert.equal(b.stats.givenUp, 1);
  assert.equal(b.open, 0);
});

test('an exit whose send failed is decided again at once; a leg without filters or a price waits', () => {
  const b = new ExitBook(cfg);
  const e = entry();
  b.onSignal(e);
  b.onEvent(ev(e.signal_id, 'order_filled', '0.03'));
  assert.deepEqual(b.due(T0 + H, touch(3000), () => null), [], 'instrument filters not read yet');
  assert.deepEqual(b.due(T0 + H, () => null, filter), [], 'no price yet');
  const [o] = b.due(T0 + H, touch(3000), filter);
  b.recordExit(o!, T0 + H);
  b.forgetExit(o!.entry, o!.signalId);
  const [again] = b.due(T0 + H + 100, touch(3000), filter);
  assert.equal(again!.qty, 0.03);
  assert.equal(again!.signalId, o!.signalId, 'the same signal: if the broker did take the first, the order manager refuses the repeat');
});

test('an exit decided again before a restarted service has read its first one back is the same signal_id', () => {
  const e = entry();
  const first = new ExitBook(cfg);
  first.onSignal(e);
  first.onEvent(ev(e.signal_id, 'order_filled', '0.03'));
  const [o] = first.due(T0 + H, touch(3000), filter);
  const restarted = new ExitBook(cfg);
  restarted.onSignal(e);
  restarted.onEvent(ev(e.signal_id, 'order_filled', '0.03'));
  const [again] = restarted.due(T0 + H + 2000, touch(3010), filter);
  assert.equal(again!.signalId, o!.signalId);
  assert.notEqual(exitSignalId(e.signal_id, 1), exitSignalId(e.signal_id, 2));
  assert.notEqual(exitSignalId(e.signal_id, 1), exitSignalId(entry().signal_id, 1));
  assert.match(o!.signalId, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('an exit that never settles is dropped after (attempts + 2) horizons, not decided again', () => {
  const b = new ExitBook(cfg);
  const e = entry();
  b.onSignal(e);
  b.onEvent(ev(e.signal_id, 'order_filled', '0.03'));
  const [o] = b.due(T0 + H, touch(3000), filter);
  b.recordExit(o!, T0 + H);
  for (let t = T0 + H; t <= T0 + H + (cfg.maxAttempts + 2) * H; t += 1000) assert.deepEqual(b.due(t, touch(3000), filter), []);
  assert.deepEqual(b.due(T0 + H + (cfg.maxAttempts + 2) * H + 1, touch(3000), filter), []);
  assert.equal(b.open, 0);
  assert.equal(b.stats.unsettled, 1);
});

test('spot buys: the fee taken in the base coin is not sold back', () => {
  const b = new ExitBook(cfg);
  const e = entry();
  b.onSignal(e);
  b.onEvent(ev(e.signal_id, 'order_filled', '0.05', { category: 'spot', fees: '0.00005', fee_currency: 'ETH' }));
  const [o] = b.due(T0 + H, touch(3000), (c) => (c === 'spot' ? { qtyStep: 0.00001, minQty: 0.00001, minValue: 5 } : null));
  assert.equal(o!.qty, 0.04995);
});

test('any order of records, redeliveries and a restart: each filled entry is exited exactly once (property)', () => {
  // A run: entries with fills; the book emits exits, which "fill"; the records are then replayed
  // to a second book (a restart) shuffled and duplicated, with the exits among them: it emits nothing more.
  fc.assert(
    fc.property(fc.array(fc.record({ qty: fc.integer({ min: 0, max: 9 }), side: fc.boolean(), dt: fc.integer({ min: 0, max: 3 * H }) }), { minLength: 1, maxLength: 12 }), fc.integer(), (legs, seed) => {
      const b = new ExitBook(cfg);
      const records: Array<{ kind: 's'; v: ModelSignal } | { kind: 'e'; v: OrderEvent }> = [];
      for (const l of legs) {
        const s = entry({ timestamp: T0 + l.dt, signal_type: l.side ? 'buy' : 'sell' });
        const f = ev(s.signal_id, l.qty > 0 ? 'order_filled' : 'signal_rejected', (l.qty / 100).toFixed(2), { occurred_at: T0 + l.dt + 50 });
        b.onSignal(s);
        b.onEvent(f);
        records.push({ kind: 's', v: s }, { kind: 'e', v: f });
      }
      const exits: ExitOrder[] = [];
      for (let t = T0; t <= T0 + 5 * H; t += 500) {
        for (const o of b.due(t, touch(3000), filter)) {
          const x = exitOf(o, { timestamp: t, signal_id: o.signalId });
          b.recordExit(o, t);
          b.onSignal(x);
          const f = ev(x.signal_id, 'order_filled', o.qty.toFixed(2), { occurred_at: t + 50 });
          b.onEvent(f);
          exits.push(o);
          records.push({ kind: 's', v: x }, { kind: 'e', v: f });
        }
      }
      // Each filled entry exited once, by its own quantity, on the opposite side; nothing else.
      const filled = legs.map((l, i) => ({ l, s: records[2 * i]!.v as ModelSignal })).filter((x) => x.l.qty > 0);
      assert.equal(exits.length, filled.length);
      for (const x of filled) {
        const o = exits.filter((e) => e.entry === x.s.signal_id);
        assert.equal(o.length, 1);
        assert.equal(o[0]!.qty, x.l.qty / 100);
        assert.equal(o[0]!.side, x.l.side ? 'sell' : 'buy');
      }
      // The restart: every record again, shuffled, some twice.
      const rng = new SeededRng(seed);
      const replay = [...records, ...records.filter(() => rng.next() < 0.3)];
      for (let i = replay.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [replay[i], replay[j]] = [replay[j]!, replay[i]!];
      }
      const b2 = new ExitBook(cfg);
      for (const r of replay) {
        if (r.kind === 's') b2.onSignal(r.v);
        else b2.onEvent(r.v);
      }
      for (let t = T0; t <= T0 + 12 * H; t += 500) assert.deepEqual(b2.due(t, touch(3000), filter), [], 'a restart exits nothing twice');
      assert.equal(b2.open, 0);
    }),
    { numRuns: 200 },
  );
});

test('a restart that finds an entry past its horizon with no exit closes it at the first emission', () => {
  const e = entry();
  const b = new ExitBook(cfg);
  // Records read again after a restart: the fill first (topics are read in no fixed order), then the entry.
  b.onEvent(ev(e.signal_id, 'order_filled', '0.04'));
  b.onSignal(e);
  const [o] = b.due(T0 + 10 * H, touch(3000), filter);
  assert.equal(o!.qty, 0.04);
  assert.equal(o!.lateMs, 9 * H);
});

test('the exit signal is valid for the order manager and the Avro schema; the window builder makes no window of it or its events', () => {
  const mc = testModelConfig({ MODEL_ASSETS: 'ETHUSDT', MODEL_FEATURE_LOOKBACK: '20', MODEL_HORIZON_MS: String(H) });
  const em = new SignalEmitter(mc, new SeededRng(1));
  const wb = new WindowBuilder(windowConfig(mc));
  const tick = (t: number, px: number) => tickerRecord({ symbol: 'ETHUSDT', lastPrice: px, bid1Price: px - 0.05, ask1Price: px + 0.05, bid1Size: 3, ask1Size: 1, volume24h: 1000 }, t);
  let px = 3000;
  const src = (topic: string, offset: number) => ({ topic, partition: 0, offset: String(offset) });
  let off = 0;
  for (let t = 0; t < 30_000; t += 500) {
    px *= 1 + Math.sin(t) * 0.0005;
    em.onTicker(tick(T0 + t, px));
    wb.add({ kind: 'ticker', value: tick(T0 + t, px), src: src('market.tickers', off++) });
  }
  const o: ExitOrder = { signalId: exitSignalId(id(), 1), entry: id(), asset: 'ETHUSDT', side: 'sell', qty: 0.03, amount: 0.035 * px, confidence: 0.62, version: 'v1', lateMs: 0 };
  const x = em.exitSignal(o, T0 + 30_000)!;
  assert.ok(isExitSignal(x));
  assert.equal(x.signal_id, o.signalId);
  assert.equal(em.touch('ETHUSDT', 'sell'), px - 0.05);
  const type = avro.Type.forSchema(JSON.parse(readFileSync(new URL('../../schemas/model-signal.avsc', import.meta.url), 'utf8')));
  assert.ok(type.isValid(x), 'Avro ModelSignal');
  const r = parseSignalJson(JSON.parse(JSON.stringify(toSignalJson(x))));
  assert.ok(r.ok, r.ok ? '' : `${r.code}: ${r.detail}`);
  if (r.ok) {
    assert.equal(r.signal.signal_type, 'sell');
    assert.equal(r.signal.amount, o.amount);
    assert.equal(r.signal.model_version, 'v1');
    assert.equal(r.signal.is_warmup, false);
  }
  // The builder: the exit and its fill are skipped; an entry beside it still becomes a window.
  const model = { ...x, signal_id: id(), metadata: { ...x.metadata!, mode: 'model', extra: '{}' } } as ModelSignal;
  wb.add({ kind: 'signal', value: x, src: src('model.signals', 0) });
  wb.add({ kind: 'signal', value: model, src: src('model.signals', 1) });
  wb.add({ kind: 'event', value: ev(x.signal_id, 'order_filled', '0.03', { occurred_at: T0 + 30_050, strategy_id: mc.MODEL_STRATEGY_ID }), src: src('orders.events', 0) });
  wb.add({ kind: 'event', value: ev(model.signal_id, 'order_filled', '0.03', { occurred_at: T0 + 30_050, strategy_id: mc.MODEL_STRATEGY_ID }), src: src('orders.events', 1) });
  const samples = [];
  for (let t = 30_500; t < 30_000 + H + 20_000; t += 500) samples.push(...wb.add({ kind: 'ticker', value: tick(T0 + t, px), src: src('market.tickers', off++) }));
  assert.deepEqual(samples.map((s) => s.signal_id), [model.signal_id], 'one window: the entry');
  assert.equal(wb.stats.unjoinedEvents, 0);
  assert.equal(wb.stats.lateEvents, 0);
});
