// Property test: the incremental WindowBuilder (heaps, binary search, moving head index) yields
// exactly what a straightforward builder yields — the same samples from every add, the same
// stats, pending count and committable offsets — on random streams of tickers, signals and order
// events: out of order within and beyond the lateness bound, duplicates (redeliveries), events
// before their signal, unjoinable events, other strategies' records, late signals after pruning,
// offsets past 2^53. The reference below is the builder as it was before it became incremental:
// every add scans every pending signal (flush) and every ticker and orphan list (prune).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WindowBuilder, exposureOf, sampleOf, type Src, type WindowInput, type WindowConfig, type WindowStats, type TrainingSample } from '../../model/windows.ts';
import { computeFeatures, tickFromTicker, type Tick } from '../../model/features.ts';
import { SeededRng } from '../../model/rng.ts';
import type { ModelSignal, OrderEvent, OrderEventType, Ticker } from '../../schemas/types.ts';
import { orderEvent, tickerRecord, T0 } from './fixtures.ts';

// ---- the reference: straightforward scans on every record -----------------------------------------

const FINAL_EVENTS = new Set(['signal_rejected', 'order_filled', 'order_cancelled', 'order_partially_filled_cancelled', 'order_rejected', 'order_expired', 'order_submit_failed', 'order_deactivated']);

interface HeldTick extends Tick {
  src: Src;
}
interface HeldEvent {
  ev: OrderEvent;
  src: Src;
}
interface Pending {
  signal: ModelSignal;
  src: Src;
  events: HeldEvent[];
  final: boolean;
}

const key = (s: Src) => `${s.topic}\u0000${s.partition}`;
const cmpOffset = (a: string, b: string) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0);

class ReferenceWindowBuilder {
  private readonly ticks = new Map<string, HeldTick[]>();
  private readonly watermark = new Map<string, number>();
  private readonly pruned = new Map<string, number>();
  private readonly pending = new Map<string, Pending>();
  private readonly orphans = new Map<string, HeldEvent[]>();
  private readonly done = new Set<string>();
  private readonly doneOrder: string[] = [];
  private readonly lastSeen = new Map<string, { topic: string; partition: number; offset: string }>();
  private orderWm = -Infinity;
  readonly stats: WindowStats = { lateTickers: 0, lateEvents: 0, lateSignals: 0, unjoinedEvents: 0, insufficientHistory: 0, duplicateSignals: 0, samples: 0 };

  constructor(private readonly cfg: WindowConfig) {}

  private get retention(): number {
    return Math.max(this.cfg.tickerRetentionMs ?? 30 * 60_000, this.cfg.horizonMs + this.cfg.allowedLatenessMs + this.cfg.orderEventsMaxWaitMs);
  }

  /** Feed one record; returns the samples it completed, ordered by (ts, signal_id). */
  add(input: WindowInput): TrainingSample[] {
    const k = key(input.src);
    const prev = this.lastSeen.get(k);
    if (!prev || cmpOffset(input.src.offset, prev.offset) > 0) this.lastSeen.set(k, { ...input.src });
    if (input.kind === 'ticker') this.addTicker(input.value, input.src);
    else if (input.kind === 'signal') this.addSignal(input.value, input.src);
    else this.addEvent(input.value, input.src);
    return this.flush();
  }

  private addTicker(t: Ticker, src: Src): void {
    const tick = tickFromTicker(t);
    if (!tick) return;
    const wm = this.watermark.get(t.symbol) ?? -Infinity;
    if (tick.ts < wm - this.cfg.allowedLatenessMs) {
      this.stats.lateTickers++;
      return;
    }
    const list = this.ticks.get(t.symbol) ?? [];
    // A redelivered record (same topic, partition, offset) is already held.
    if (list.some((x) => x.ts === tick.ts && x.src.offset === src.offset && x.src.partition === src.partition && x.src.topic === src.topic)) return;
    // Insert in ts order (stable for equal ts: arrival order, then offset).
    let i = list.length;
    while (i > 0 && list[i - 1]!.ts > tick.ts) i--;
    list.splice(i, 0, { ...tick, src });
    this.ticks.set(t.symbol, list);
    if (tick.ts > wm) this.watermark.set(t.symbol, tick.ts);
  }

  private addSignal(s: ModelSignal, src: Src): void {
    if (s.strategy_id !== this.cfg.strategyId) return;
    if (this.pending.has(s.signal_id) || this.done.has(s.signal_id)) {
      this.stats.duplicateSignals++;
      return;
    }
    const prunedTs = this.pruned.get(s.asset);
    if (prunedTs !== undefined) {
      const before = (this.ticks.get(s.asset) ?? []).filter((t) => t.ts <= s.timestamp).length;
      if (before < this.cfg.lookback + 1 || s.timestamp <= prunedTs) {
        this.stats.lateSignals++;
        return;
      }
    }
    const events = this.orphans.get(s.signal_id) ?? [];
    this.orphans.delete(s.signal_id);
    const p: Pending = { signal: s, src, events: [], final: false };
    for (const e of events) this.attach(p, e);
    this.pending.set(s.signal_id, p);
  }

  private attach(p: Pending, e: HeldEvent): void {
    if (e.ev.occurred_at > this.closeOf(p.signal) + this.cfg.orderEventsMaxWaitMs) return; // outside the window
    if (p.events.some((x) => x.ev.event_id === e.ev.event_id)) return; // duplicate delivery
    p.events.push(e);
    if (FINAL_EVENTS.has(e.ev.event_type)) p.final = true;
  }

  private addEvent(ev: OrderEvent, src: Src): void {
    if (!ev.signal_id || ev.strategy_id !== this.cfg.strategyId) return;
    if (ev.occurred_at > this.orderWm) this.orderWm = ev.occurred_at;
    if (this.done.has(ev.signal_id)) {
      this.stats.lateEvents++;
      return;
    }
    const p = this.pending.get(ev.signal_id);
    if (p) this.attach(p, { ev, src });
    else {
      const list = this.orphans.get(ev.signal_id) ?? [];
      list.push({ ev, src });
      this.orphans.set(ev.signal_id, list);
    }
  }

  private closeOf(s: ModelSignal): number {
    return s.timestamp + this.cfg.horizonMs + this.cfg.allowedLatenessMs;
  }

  private flush(): TrainingSample[] {
    const ready: Pending[] = [];
    for (const p of this.pending.values()) {
      const wm = this.watermark.get(p.signal.asset) ?? -Infinity;
      const close = this.closeOf(p.signal);
      if (wm >= close && (p.final || this.orderWm >= close + this.cfg.orderEventsMaxWaitMs)) ready.push(p);
    }
    ready.sort((a, b) => a.signal.timestamp - b.signal.timestamp || (a.signal.signal_id < b.signal.signal_id ? -1 : 1));
    const out: TrainingSample[] = [];
    for (const p of ready) {
      this.pending.delete(p.signal.signal_id);
      this.markDone(p.signal.signal_id);
      const s = this.build(p);
      if (s) out.push(s);
    }
    this.stats.samples += out.length;
    this.prune();
    return out;
  }

  private markDone(id: string): void {
    this.done.add(id);
    this.doneOrder.push(id);
    if (this.doneOrder.length > 100_000) this.done.delete(this.doneOrder.shift()!);
  }

  private prune(): void {
    for (const [asset, list] of this.ticks) {
      const wm = this.watermark.get(asset) ?? -Infinity;
      let needFrom = wm - this.retention;
      for (const p of this.pending.values()) if (p.signal.asset === asset) needFrom = Math.min(needFrom, p.signal.timestamp);
      const firstNeeded = list.findIndex((t) => t.ts > needFrom);
      const keepFrom = Math.max(0, (firstNeeded === -1 ? list.length : firstNeeded) - (this.cfg.lookback + 1));
      if (keepFrom > 0) {
        this.pruned.set(asset, list[keepFrom - 1]!.ts);
        list.splice(0, keepFrom);
      }
    }
    for (const [id, list] of this.orphans) {
      const kept = list.filter((e) => e.ev.occurred_at >= this.orderWm - this.retention);
      this.stats.unjoinedEvents += list.length - kept.length;
      if (kept.length) this.orphans.set(id, kept);
      else this.orphans.delete(id);
    }
  }

  private build(p: Pending): TrainingSample | null {
    const s = p.signal;
    const list = this.ticks.get(s.asset) ?? [];
    const hist = list.filter((t) => t.ts <= s.timestamp);
    const features = computeFeatures(hist, exposureOf(s), this.cfg.lookback);
    const atH = list.filter((t) => t.ts <= s.timestamp + this.cfg.horizonMs);
    if (!features || atH.length === 0) {
      this.stats.insufficientHistory++;
      return null;
    }
    return sampleOf(p, features, hist[hist.length - 1]!.mid, atH[atH.length - 1]!.mid, this.cfg.labelMinMoveBps);
  }

  /** Signals waiting for their window to close. */
  pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Offsets safe to commit, per topic-partition: the lowest offset the builder still holds a record
   * of (tickers of the feature history, pending signals, waiting order events), else one past the
   * last record seen. Restarting from them rebuilds this state; samples already stored are
   * "already done" (unique signal_id).
   */
  committable(): Array<{ topic: string; partition: number; offset: string }> {
    const min = new Map<string, string>();
    const hold = (s: Src) => {
      const k = key(s);
      const m = min.get(k);
      if (m === undefined || cmpOffset(s.offset, m) < 0) min.set(k, s.offset);
    };
    for (const list of this.ticks.values()) for (const t of list) hold(t.src);
    for (const p of this.pending.values()) {
      hold(p.src);
      p.events.forEach((e) => hold(e.src));
    }
    for (const list of this.orphans.values()) list.forEach((e) => hold(e.src));
    return [...this.lastSeen.entries()].map(([k, last]) => ({ topic: last.topic, partition: last.partition, offset: min.get(k) ?? String(BigInt(last.offset) + 1n) }));
  }
}

// ---- random streams ------------------------------------------------------------------------------

const STRATEGY = 'model-service';
const EVENT_TYPES: OrderEventType[] = ['order_submitted', 'order_acknowledged', 'order_partially_filled', 'order_filled', 'order_cancelled', 'order_rejected', 'order_expired', 'signal_rejected', 'order_partially_filled_cancelled'];

function randomConfig(rng: SeededRng): WindowConfig {
  return {
    horizonMs: 500 + rng.int(3000),
    allowedLatenessMs: 100 + rng.int(900),
    orderEventsMaxWaitMs: rng.int(3000),
    // Below and above MIN_HISTORY - 1, so both the lookback and the minimum history decide.
    lookback: 2 + rng.int(20),
    labelMinMoveBps: rng.int(3),
    strategyId: STRATEGY,
    // Short retention: pruning, late signals and dropped orphans happen often.
    tickerRetentionMs: rng.next() < 0.5 ? 1000 + rng.int(8000) : undefined,
  };
}

function randomStream(rng: SeededRng, n: number): WindowInput[] {
  const assets = ['BTCUSDT', 'ETHUSDT', 'SOLUSDT'];
  const mid = new Map(assets.map((a, i) => [a, 100 * (i + 1)]));
  const offsets = new Map<string, bigint>();
  // One partition starts past 2^53: offsets compare as integers, not as floats or text.
  const src = (topic: string, partition: number): Src => {
    const k = `${topic}/${partition}`;
    const next = (offsets.get(k) ?? (partition === 2 ? 9_007_199_254_740_990n : 0n)) + 1n + (rng.next() < 0.1 ? BigInt(rng.int(5)) : 0n);
    offsets.set(k, next);
    return { topic, partition, offset: String(next) };
  };
  const out: WindowInput[] = [];
  const signals: ModelSignal[] = [];
  const heldBack: WindowInput[] = [];
  let now = T0;
  let ids = 0;
  for (let i = 0; i < n; i++) {
    now += rng.int(400);
    const r = rng.next();
    if (r < 0.5) {
      const asset = assets[rng.int(assets.length)]!;
      const m = mid.get(asset)! * (1 + (rng.next() - 0.5) * 0.004);
      mid.set(asset, m);
      // Mostly in order; some jitter inside the lateness bound, a few far beyond it.
      const ts = now - (rng.next() < 0.2 ? rng.int(1500) : 0) - (rng.next() < 0.02 ? 20_000 : 0);
      const raw: Record<string, unknown> = rng.next() < 0.03 ? { symbol: asset, lastPrice: 'x' } : { symbol: asset, lastPrice: m, bid1Price: m - 0.01 * rng.int(5), ask1Price: m + 0.01 * rng.int(5), bid1Size: rng.int(4), ask1Size: rng.int(4), volume24h: 10 };
      out.push({ kind: 'ticker', value: tickerRecord(raw, ts), src: src('market.tickers', rng.int(3)) });
    } else if (r < 0.62) {
      const asset = assets[rng.int(2)]!; // SOLUSDT has tickers but no signals
      const ts = now - (rng.next() < 0.1 ? rng.int(12_000) : rng.int(300));
      const s: ModelSignal = {
        signal_id: `sig-${String(ids++).padStart(5, '0')}${rng.next() < 0.5 ? 'a' : ''}`,
        signal_type: rng.next() < 0.5 ? 'buy' : 'sell',
        asset,
        amount: 10 + rng.int(40),
        confidence: 0.6,
        timestamp: ts,
        strategy_id: rng.next() < 0.9 ? STRATEGY : 'someone-else',
        model_version: rng.next() < 0.5 ? null : 'm1',
        is_warmup: rng.next() < 0.5,
        market_data_snapshot: { price: mid.get(asset)!, spread: 0.01, volume_24h: 10, volatility: 0, orderbook_depth: null, technical_indicators: null },
        metadata: rng.next() < 0.5 ? null : { reasoning: 'x', risk_score: 0, randomness_level: 0.3, mode: 'warmup', extra: JSON.stringify({ exposure: rng.next() * 4 - 2 }) },
        trace_id: null,
      };
      signals.push(s);
      const input: WindowInput = { kind: 'signal', value: s, src: src('model.signals', rng.int(2)) };
      // Some signals arrive after (some of) their order events.
      if (rng.next() < 0.15) heldBack.push(input);
      else out.push(input);
    } else if (r < 0.92) {
      const s = rng.next() < 0.05 || signals.length === 0 ? null : signals[signals.length - 1 - rng.int(Math.min(signals.length, 20))]!;
      const type = EVENT_TYPES[rng.int(EVENT_TYPES.length)]!;
      const filled = type === 'order_filled' || type === 'order_partially_filled' || type === 'order_partially_filled_cancelled';
      const px = s ? s.market_data_snapshot.price * (1 + (rng.next() - 0.5) * 0.002) : 100;
      const ev = orderEvent({
        event_id: `ev-${rng.int(100_000)}`,
        event_type: type,
        occurred_at: (s?.timestamp ?? now) + rng.int(s ? 6000 : 100),
        sequence: rng.next() < 0.5 ? null : rng.int(5),
        signal_id: s ? s.signal_id : rng.next() < 0.5 ? null : `nobody-${rng.int(1000)}`,
        strategy_id: rng.next() < 0.95 ? STRATEGY : 'someone-else',
        symbol: s?.asset ?? 'ETHUSDT',
        filled_qty: filled ? String(0.1 + rng.int(3)) : rng.next() < 0.5 ? null : '0',
        avg_fill_price: filled ? (rng.next() < 0.1 ? null : String(px)) : null,
        fees: filled ? String(0.0001 * rng.int(5)) : null,
        fee_currency: rng.next() < 0.5 ? 'USDT' : (s?.asset ?? 'ETHUSDT').replace('USDT', ''),
        slippage_bps: filled ? rng.int(10) : null,
        reason_code: type === 'signal_rejected' || type === 'order_rejected' ? 'risk_max_notional' : null,
      });
      out.push({ kind: 'event', value: ev, src: src('orders.events', rng.int(3)) });
    } else if (r < 0.97 && out.length) {
      // Redelivery of a recent record (same topic, partition, offset).
      out.push(out[out.length - 1 - rng.int(Math.min(out.length, 50))]!);
    }
    if (heldBack.length && rng.next() < 0.3) out.push(heldBack.shift()!);
  }
  // Let every window close: tickers far ahead on every asset and an order event far ahead.
  out.push(...heldBack);
  for (const a of assets) out.push({ kind: 'ticker', value: tickerRecord({ symbol: a, lastPrice: 100, bid1Price: 99.99, ask1Price: 100.01 }, now + 60_000), src: src('market.tickers', 0) });
  out.push({ kind: 'event', value: orderEvent({ event_type: 'order_submitted', occurred_at: now + 60_000, signal_id: 'end', strategy_id: STRATEGY }), src: src('orders.events', 0) });
  return out;
}

function compare(seed: number, n: number): { samples: number; stats: WindowStats } {
  const rng = new SeededRng(seed);
  const cfg = randomConfig(rng);
  const stream = randomStream(rng, n);
  const ref = new ReferenceWindowBuilder(cfg);
  const inc = new WindowBuilder(cfg);
  let samples = 0;
  for (const [i, input] of stream.entries()) {
    const expected: TrainingSample[] = ref.add(input);
    const got = inc.add(input);
    assert.deepEqual(got, expected, `seed ${seed}, record ${i} (${input.kind})`);
    samples += got.length;
    if (i % 97 === 0) assert.deepEqual(inc.committable(), ref.committable(), `seed ${seed}, committable after record ${i}`);
  }
  assert.deepEqual(inc.stats, ref.stats, `seed ${seed}: stats`);
  assert.equal(inc.pendingCount(), ref.pendingCount(), `seed ${seed}: pending`);
  assert.deepEqual(inc.committable(), ref.committable(), `seed ${seed}: committable`);
  return { samples, stats: inc.stats };
}

test('the incremental builder yields exactly the reference builder’s windows on random streams', () => {
  const total: WindowStats = { lateTickers: 0, lateEvents: 0, lateSignals: 0, unjoinedEvents: 0, insufficientHistory: 0, duplicateSignals: 0, samples: 0 };
  for (let seed = 1; seed <= 60; seed++) {
    const { stats } = compare(seed, 1500);
    for (const k of Object.keys(total) as Array<keyof WindowStats>) total[k] += stats[k];
  }
  // The streams exercise every rule (otherwise the equality above proves little).
  for (const k of Object.keys(total) as Array<keyof WindowStats>) assert.ok(total[k] > 0, `no ${k} in any stream: ${JSON.stringify(total)}`);
});

test('long random stream: equality holds across ticker-list compaction and many pruned windows', () => {
  const { samples } = compare(1234, 12_000);
  assert.ok(samples > 500, `samples ${samples}`);
});
