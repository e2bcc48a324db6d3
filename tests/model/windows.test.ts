// Window building: joins of signal + order events + price after the horizon, rejections, late and
// out-of-order records, replay determinism, and the offsets safe to commit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WindowBuilder, mergeByEventTime, type WindowInput, type TrainingSample } from '../../model/windows.ts';
import { SeededRng } from '../../model/rng.ts';
import { simulateSession, testModelConfig, tickerRecord, answer, orderEvent, T0 } from './fixtures.ts';
import type { ModelSignal, Ticker } from '../../schemas/types.ts';

const cfg = testModelConfig({ MODEL_FEATURE_LOOKBACK: '20' });
const wcfg = { horizonMs: 1000, allowedLatenessMs: 500, orderEventsMaxWaitMs: 2000, lookback: 20, labelMinMoveBps: 0, strategyId: cfg.MODEL_STRATEGY_ID };
const builder = () => new WindowBuilder(wcfg);
const run = (inputs: WindowInput[]) => {
  const b = builder();
  return { samples: inputs.flatMap((i) => b.add(i)), b };
};

let session: Awaited<ReturnType<typeof simulateSession>>;
const get = async () => (session ??= await simulateSession({ mode: 'pattern', seed: 5, steps: 150, cfg, rejectEvery: 7 }));

test('each signal joins its order events and the price after the horizon', async () => {
  const s = await get();
  const { samples, b } = run(s.inputs);
  assert.ok(samples.length > 200, `samples ${samples.length}`);
  assert.equal(b.stats.insufficientHistory + samples.length + b.pendingCount(), s.signals.length);
  const tickers = s.inputs.filter((i): i is Extract<WindowInput, { kind: 'ticker' }> => i.kind === 'ticker').map((i) => i.value);
  const mid = (t: Ticker) => (Number(t.bid1Price) + Number(t.ask1Price)) / 2;
  for (const x of samples.slice(0, 50)) {
    const sig = s.signals.find((q) => q.signal_id === x.signal_id)!;
    const ref = tickers.filter((t) => t.symbol === x.asset && t.ts <= sig.timestamp).at(-1)!;
    const after = tickers.filter((t) => t.symbol === x.asset && t.ts <= sig.timestamp + 1000).at(-1)!;
    assert.equal(after.ts, sig.timestamp + 1000);
    const mret = 1e4 * Math.log(mid(after) / mid(ref));
    assert.ok(Math.abs(x.market_return_bps - mret) < 1e-9);
    assert.equal(x.label, mret > 0 ? 1 : mret < 0 ? 0 : null);
    assert.equal(x.side, sig.signal_type);
    assert.equal(x.is_warmup, true);
    assert.equal(x.model_version, null);
    if (x.outcome === 'rejected') {
      assert.equal(x.reward, 0);
      assert.equal(x.details.reason_code, 'risk_max_notional');
      assert.equal(x.source_offsets.length, 1);
    } else {
      assert.equal(x.outcome, 'filled');
      assert.equal(x.source_offsets.length, 2);
      // Net of fees (5.5 bps) and of the spread paid at the touch: the side's move minus costs.
      const fill = Number(x.details.avg_fill_price);
      const sign = x.side === 'buy' ? 1 : -1;
      const expected = 1e4 * (sign * (mid(after) - fill) / fill) - 5.5;
      assert.ok(Math.abs(x.reward - expected) < 0.05, `${x.reward} vs ${expected}`);
    }
  }
  assert.ok(samples.some((x) => x.outcome === 'rejected'));
  // Features equal the ones the emitter decided on (same code, same tickers).
  for (const x of samples.slice(0, 20)) {
    const sig = s.signals.find((q) => q.signal_id === x.signal_id)!;
    assert.equal(x.features[0], sig.market_data_snapshot.technical_indicators!['ret_1_bps']);
    assert.equal(x.features[4], sig.market_data_snapshot.technical_indicators!['autocorr_1']);
  }
});

test('replay determinism: any interleaving within the lateness bound gives the same samples', async () => {
  const s = await get();
  const a = run(s.inputs).samples;
  // Reorder: each topic's records stay in their own order (as in Kafka partitions) but topics
  // interleave differently; events may overtake their signal; tickers jitter inside the lateness.
  const rng = new SeededRng(99);
  const shuffled: WindowInput[] = [];
  const queues = ['ticker', 'signal', 'event'].map((k) => s.inputs.filter((i) => i.kind === k));
  const pos = [0, 0, 0];
  while (pos.some((p, i) => p < queues[i]!.length)) {
    // keep each queue within ~400 ms event time of the tickers (the lateness bound is 500 ms)
    const tNow = queues[0]![Math.min(pos[0]!, queues[0]!.length - 1)]!.value as Ticker;
    const choices = [0, 1, 2].filter((i) => pos[i]! < queues[i]!.length);
    const behind = choices.filter((i) => i !== 0 && eventTime(queues[i]![pos[i]!]!) < tNow.ts - 400);
    const q = behind.length ? behind[0]! : choices[rng.int(choices.length)]!;
    shuffled.push(queues[q]![pos[q]!++]!);
  }
  const b = run(shuffled).samples;
  assert.deepEqual(sortById(b), sortById(a));
  // And the merge used by replays (event-time order) gives them too.
  assert.deepEqual(sortById(run(mergeByEventTime(shuffled)).samples), sortById(a));
  // Duplicates (a redelivered record) change nothing.
  const dup = s.inputs.flatMap((i, k) => (k % 5 === 0 ? [i, i] : [i]));
  assert.deepEqual(sortById(run(dup).samples), sortById(a));
});

function eventTime(i: WindowInput): number {
  return i.kind === 'signal' ? i.value.timestamp : i.kind === 'event' ? i.value.occurred_at : i.value.ts;
}
function sortById(xs: TrainingSample[]) {
  return [...xs].sort((p, q) => (p.signal_id < q.signal_id ? -1 : 1)).map((x) => ({ ...x, source: null, source_offsets: x.source_offsets.length }));
}

function ticks(asset: string, from: number, n: number, price = (k: number) => 100 + k * 0.01): WindowInput[] {
  return Array.from({ length: n }, (_, k) => ({
    kind: 'ticker' as const,
    value: tickerRecord({ symbol: asset, lastPrice: price(k), bid1Price: price(k) - 0.005, ask1Price: price(k) + 0.005, bid1Size: 1, ask1Size: 2, volume24h: 10 }, from + k * 1000),
    src: { topic: 'market.tickers', partition: 0, offset: String(from / 1000 + k) },
  }));
}
function signal(ts: number, over: Partial<ModelSignal> = {}): ModelSignal {
  return {
    signal_id: `00000000-0000-4000-8000-${String(ts).padStart(12, '0').slice(-12)}`,
    signal_type: 'buy',
    asset: 'ETHUSDT',
    amount: 20,
    confidence: 0.6,
    timestamp: ts,
    strategy_id: cfg.MODEL_STRATEGY_ID,
    model_version: null,
    is_warmup: true,
    market_data_snapshot: { price: 100, spread: 0.01, volume_24h: 10, volatility: 0, orderbook_depth: null, technical_indicators: null },
    metadata: { reasoning: 'x', risk_score: 0, randomness_level: 0.3, mode: 'warmup', extra: JSON.stringify({ exposure: 0.5 }) },
    trace_id: null,
    ...over,
  };
}

test('late tickers are dropped and counted; order events before their signal wait for it', () => {
  const b = builder();
  const base = T0;
  ticks('ETHUSDT', base, 30).forEach((i) => b.add(i));
  const sig = signal(base + 29_000);
  const t = ticks('ETHUSDT', base, 30)[29]!.value as Ticker;
  const events = answer(sig, t, false, 'e1');
  // Events first (out of order across topics), then the signal.
  for (const e of events) assert.deepEqual(b.add({ kind: 'event', value: e, src: { topic: 'orders.events', partition: 0, offset: '0' } }), []);
  assert.deepEqual(b.add({ kind: 'signal', value: sig, src: { topic: 'model.signals', partition: 0, offset: '0' } }), []);
  // A ticker older than watermark - lateness is late.
  b.add({ kind: 'ticker', value: tickerRecord({ symbol: 'ETHUSDT', lastPrice: 1, bid1Price: 1, ask1Price: 1 }, base + 28_000), src: { topic: 'market.tickers', partition: 0, offset: '100' } });
  assert.equal(b.stats.lateTickers, 1);
  // The window closes at ts + 1000 + 500: the ticker at +1000 is not enough, +2000 is.
  const later = ticks('ETHUSDT', base + 30_000, 2, (k) => 100.5 + k);
  assert.deepEqual(b.add(later[0]!), []);
  const out = b.add(later[1]!);
  assert.equal(out.length, 1);
  assert.equal(out[0]!.outcome, 'filled');
  assert.equal(out[0]!.label, 1);
  assert.equal(out[0]!.features[8], 0.5, 'exposure from the signal metadata');
  // An event for a built signal is late.
  b.add({ kind: 'event', value: { ...events[1]!, event_id: 'again' }, src: { topic: 'orders.events', partition: 0, offset: '5' } });
  assert.equal(b.stats.lateEvents, 1);
});

test('without order events a window waits for the order-event stream to pass close + max wait', () => {
  const b = builder();
  ticks('ETHUSDT', T0, 40).forEach((i) => b.add(i));
  const sig = signal(T0 + 20_000);
  b.add({ kind: 'signal', value: sig, src: { topic: 'model.signals', partition: 0, offset: '0' } });
  assert.equal(b.pendingCount(), 1, 'tickers alone do not close it');
  const other = signal(T0 + 30_000, { signal_id: '00000000-0000-4000-8000-000000000999' });
  const evs = answer(other, ticks('ETHUSDT', T0, 31)[30]!.value as Ticker, true, 'x');
  const out = b.add({ kind: 'event', value: { ...evs[0]!, occurred_at: T0 + 20_000 + 1500 + 2000 }, src: { topic: 'orders.events', partition: 0, offset: '1' } });
  assert.equal(out.length, 1);
  assert.equal(out[0]!.outcome, 'no_order_events');
  assert.equal(out[0]!.reward, 0);
});

test('committable offsets never pass a record the builder still holds', () => {
  const b = builder();
  const tk = ticks('ETHUSDT', T0, 100);
  tk.forEach((i) => b.add(i));
  const c1 = b.committable().find((c) => c.topic === 'market.tickers')!;
  // Keeps lookback + 1 tickers of history behind the retention horizon: here all 100 are within 30 min.
  assert.equal(c1.offset, String(T0 / 1000));
  const b2 = new WindowBuilder({ ...wcfg, tickerRetentionMs: 10_000 });
  tk.forEach((i) => b2.add(i));
  // Retention 10 s behind the newest (ts +99 s): keep ticks after +89 s plus 21 before them.
  assert.equal(b2.committable().find((c) => c.topic === 'market.tickers')!.offset, String(T0 / 1000 + 90 - 21));
  b2.add({ kind: 'signal', value: signal(T0 + 95_000), src: { topic: 'model.signals', partition: 0, offset: '7' } });
  assert.equal(b2.committable().find((c) => c.topic === 'model.signals')!.offset, '7', 'pending signal held');
});

test('the outcome is the order\'s final state by its sequence, not the event latest in time', () => {
  const b = builder();
  ticks('ETHUSDT', T0, 30).forEach((i) => b.add(i));
  const sig = signal(T0 + 29_000);
  const t = ticks('ETHUSDT', T0, 30)[29]!.value as Ticker;
  const [ack, fill] = answer(sig, t, false, 'o');
  // The exchange's fill is earlier in event time than the submission's record, and a cancel of the
  // next signal, refused because the order had filled, comes last.
  const events = [
    { ...fill!, occurred_at: sig.timestamp + 25 },
    { ...ack!, event_type: 'order_submitted' as const, status: 'Submitted', occurred_at: sig.timestamp + 40 },
    orderEvent({ ...fill!, event_id: 'o-c', event_type: 'order_cancel_rejected', occurred_at: sig.timestamp + 70, sequence: 3, status: 'Filled', reason_code: 'order_not_exists' }),
  ];
  b.add({ kind: 'signal', value: sig, src: { topic: 'model.signals', partition: 0, offset: '0' } });
  events.forEach((e, i) => b.add({ kind: 'event', value: e, src: { topic: 'orders.events', partition: 0, offset: String(i) } }));
  const out = ticks('ETHUSDT', T0 + 30_000, 2, (k) => 100.5 + k).flatMap((i) => b.add(i));
  assert.equal(out.length, 1);
  assert.equal(out[0]!.outcome, 'filled');
  assert.equal(out[0]!.details.reason_code, null, 'not the refused cancel\'s reason');
  assert.equal(out[0]!.details.filled_qty, Number(fill!.filled_qty));
  assert.ok(out[0]!.reward !== 0);
});
