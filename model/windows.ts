// Training windows: join each signal the model service emitted (model.signals) with its order
// events (orders.events, by signal_id) and with the market price `horizon` after the signal
// (market.tickers), and build one labelled sample. Pure and deterministic: time is event time only
// (signal timestamp, event occurred_at, ticker ts), never the wall clock.
//
// Event-time rules (docs/model.md, "Windows"):
//   - per asset, the ticker watermark is the newest ticker ts seen; a ticker older than
//     watermark - ALLOWED_LATENESS is late: dropped and counted;
//   - a signal's window closes at close = ts + horizon + lateness; it is built once the asset's
//     watermark has passed close AND either a final order event of the signal was seen or the
//     order-event watermark (newest occurred_at of our strategy's events) passed close + max wait;
//   - only order events with occurred_at <= close + max wait count; later ones are ignored, and
//     events for a signal already built are counted as late;
//   - order events that arrive before their signal wait for it (out-of-order across topics);
//     unjoined ones are dropped once the order-event watermark is `retention` past them;
//   - horizon exits (metadata.mode 'exit', model/exits.ts) close an entry and are not windows:
//     they and their order events are skipped.
// Given the same records (in any interleaving that respects the lateness bound) the builder emits
// the same samples; features are recomputed from the tickers, so a replay gives identical vectors.
import type { ModelSignal, OrderEvent, Ticker } from '../schemas/types.ts';
import { computeFeatures, FEATURE_SPEC_ID, MIN_HISTORY, tickFromTicker, type Tick } from './features.ts';
import { extraOf, isExitSignal } from './exits.ts';

/**
 * The tickers the model learns and decides from: the exchange's stream (websocket, through the
 * direct connector or ws-gateway). Exchange sync's REST snapshots (source rest, every few seconds,
 * stamped with our read time) share the topic since tickers became a projection of it; they would
 * add a second, coarser and differently timed price series to the features.
 */
export const isModelTicker = (t: Pick<Ticker, 'source'>): boolean => t.source !== 'rest';

export interface Src {
  topic: string;
  partition: number;
  offset: string;
}

export type WindowInput =
  | { kind: 'signal'; value: ModelSignal; src: Src }
  | { kind: 'event'; value: OrderEvent; src: Src }
  | { kind: 'ticker'; value: Ticker; src: Src };

export interface TrainingSample {
  signal_id: string;
  asset: string;
  side: 'buy' | 'sell';
  /** Signal time, epoch ms. */
  ts: number;
  features: number[];
  feature_spec: string;
  /** Market direction over the horizon: 1 up, 0 down, null flat (below MIN_MOVE). */
  label: 0 | 1 | null;
  /** Realised outcome of the side taken, net of fees and slippage, bps of notional (0 when nothing filled). */
  reward: number;
  /** Market log return over the horizon from the reference price, bps. */
  market_return_bps: number;
  outcome: string;
  is_warmup: boolean;
  model_version: string | null;
  strategy_id: string;
  confidence: number;
  source: Src;
  source_offsets: Src[];
  details: Record<string, number | string | null>;
}

export interface WindowConfig {
  horizonMs: number;
  allowedLatenessMs: number;
  orderEventsMaxWaitMs: number;
  lookback: number;
  labelMinMoveBps: number;
  strategyId: string;
  /** Tickers kept behind the watermark for signals that arrive after their tickers. Default 30 min. */
  tickerRetentionMs?: number;
}

export interface WindowStats {
  lateTickers: number;
  lateEvents: number;
  lateSignals: number;
  unjoinedEvents: number;
  insufficientHistory: number;
  duplicateSignals: number;
  samples: number;
}

const FINAL_EVENTS = new Set(['signal_rejected', 'order_filled', 'order_cancelled', 'order_partially_filled_cancelled', 'order_rejected', 'order_expired', 'order_submit_failed', 'order_deactivated']);

interface HeldTick extends Tick {
  src: Src;
}
export interface HeldEvent {
  ev: OrderEvent;
  src: Src;
}
interface Pending {
  signal: ModelSignal;
  src: Src;
  events: HeldEvent[];
  final: boolean;
  /** ts + horizon + lateness. */
  close: number;
  /** The asset's watermark has passed close. */
  armed: boolean;
  /** Built (or being built in this add): no longer pending; heap entries of it are skipped. */
  done: boolean;
}

const key = (s: Src) => `${s.topic}\u0000${s.partition}`;
const PLAIN_OFFSET = /^(0|[1-9][0-9]*)$/;
/** Compares two decimal offsets (plain non-negative ones without BigInt: by length, then text). */
function cmpOffset(a: string, b: string): number {
  if (a === b) return 0;
  if (PLAIN_OFFSET.test(a) && PLAIN_OFFSET.test(b)) return a.length !== b.length ? a.length - b.length : a < b ? -1 : 1;
  return BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0;
}

export function exposureOf(signal: ModelSignal): number {
  const v = extraOf(signal).exposure;
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/** A binary min-heap (by `less`), for the builder's time-ordered queues. */
class MinHeap<T> {
  private readonly a: T[] = [];
  constructor(private readonly less: (x: T, y: T) => boolean) {}
  get size(): number {
    return this.a.length;
  }
  peek(): T | undefined {
    return this.a[0];
  }
  push(x: T): void {
    const a = this.a;
    let i = a.length;
    a.push(x);
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (!this.less(x, a[up]!)) break;
      a[i] = a[up]!;
      i = up;
    }
    a[i] = x;
  }
  pop(): T | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    let i = 0;
    const n = a.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.less(a[r]!, a[l]!) ? r : l;
      if (!this.less(a[c]!, last)) break;
      a[i] = a[c]!;
      i = c;
    }
    a[i] = last;
    return top;
  }
  /** Every element, in no particular order. */
  items(): readonly T[] {
    return this.a;
  }
}

/**
 * An asset's tickers, ascending by ts (equal ts: arrival order). `arr[head..]` is the live list:
 * pruning moves `head` instead of splicing the front; the array is compacted now and then.
 */
interface TickList {
  arr: HeldTick[];
  head: number;
}

/** First index in [head, arr.length) whose ts > x (arr.length when none). */
function upperBound(l: TickList, x: number): number {
  let lo = l.head;
  let hi = l.arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (l.arr[mid]!.ts > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** First index in [head, arr.length) whose ts >= x. */
function lowerBound(l: TickList, x: number): number {
  let lo = l.head;
  let hi = l.arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (l.arr[mid]!.ts >= x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

const byTs = (a: Pending, b: Pending) => a.signal.timestamp < b.signal.timestamp;

interface AssetPending {
  /** Every pending signal of the asset (lazy deletion), by ts: the oldest one bounds pruning. */
  all: MinHeap<Pending>;
  /** Pending signals whose close the asset's watermark has not passed yet, by ts (= by close). */
  unarmed: MinHeap<Pending>;
}

interface OrphanRef {
  id: string;
  e: HeldEvent;
}

// Incremental state (same rules as before, without scanning everything per record):
//   - a pending signal is "armed" once its asset's watermark has passed its close (watermarks only
//     grow, so it stays armed); armed + final is ready, armed and not final waits in a heap by
//     close for the order-event watermark to pass close + max wait (which only grows too);
//   - pruning per asset is a binary search from the oldest pending signal (heap) and the retention
//     horizon; orphans wait in a heap by occurred_at and are dropped when the order-event
//     watermark leaves them `retention` behind.
export class WindowBuilder {
  private readonly ticks = new Map<string, TickList>();
  private readonly watermark = new Map<string, number>();
  private readonly pruned = new Map<string, number>();
  private readonly pending = new Map<string, Pending>();
  private readonly byAsset = new Map<string, AssetPending>();
  /** Armed, not final: waiting for the order-event watermark, by close. */
  private readonly waiting = new MinHeap<Pending>(byTs);
  /** Became ready inside the current add (armed and a final event arrived). */
  private readyNow: Pending[] = [];
  private readonly orphans = new Map<string, HeldEvent[]>();
  private readonly orphanQueue = new MinHeap<OrphanRef>((a, b) => a.e.ev.occurred_at < b.e.ev.occurred_at);
  private readonly done = new Set<string>();
  private doneOrder: string[] = [];
  /** Exit signals: their order events belong to no window (insertion order: the oldest is dropped first). */
  private readonly exitIds = new Set<string>();
  private doneHead = 0;
  /** Newest offset seen per topic-partition, in first-seen order; `seenIdx` finds an entry without building a key. */
  private readonly lastSeen = new Map<string, Src>();
  private readonly seenIdx = new Map<string, Map<number, Src>>();
  private orderWm = -Infinity;
  /** Assets whose watermark, ticker list or pending signals changed since the last flush: only they can arm or prune. */
  private readonly touched = new Set<string>();
  private readonly retentionMs: number;
  readonly stats: WindowStats = { lateTickers: 0, lateEvents: 0, lateSignals: 0, unjoinedEvents: 0, insufficientHistory: 0, duplicateSignals: 0, samples: 0 };

  constructor(private readonly cfg: WindowConfig) {
    this.retentionMs = Math.max(cfg.tickerRetentionMs ?? 30 * 60_000, cfg.horizonMs + cfg.allowedLatenessMs + cfg.orderEventsMaxWaitMs);
  }

  private get retention(): number {
    return this.retentionMs;
  }

  /** Feed one record; returns the samples it completed, ordered by (ts, signal_id). */
  add(input: WindowInput): TrainingSample[] {
    this.see(input.src);
    if (input.kind === 'ticker') this.addTicker(input.value, input.src);
    else if (input.kind === 'signal') this.addSignal(input.value, input.src);
    else this.addEvent(input.value, input.src);
    return this.flush();
  }

  private see(src: Src): void {
    let parts = this.seenIdx.get(src.topic);
    if (!parts) this.seenIdx.set(src.topic, (parts = new Map()));
    const prev = parts.get(src.partition);
    if (!prev) {
      const entry = { topic: src.topic, partition: src.partition, offset: src.offset };
      parts.set(src.partition, entry);
      this.lastSeen.set(key(src), entry);
    } else if (cmpOffset(src.offset, prev.offset) > 0) prev.offset = src.offset;
  }

  private addTicker(t: Ticker, src: Src): void {
    const tick = tickFromTicker(t);
    if (!tick) return;
    const wm = this.watermark.get(t.symbol) ?? -Infinity;
    if (tick.ts < wm - this.cfg.allowedLatenessMs) {
      this.stats.lateTickers++;
      return;
    }
    let list = this.ticks.get(t.symbol);
    if (!list) this.ticks.set(t.symbol, (list = { arr: [], head: 0 }));
    const n = list.arr.length;
    let at = n;
    // In order (the common case): appended, and nothing held has this ts, so it is no redelivery.
    if (n > list.head && list.arr[n - 1]!.ts >= tick.ts) {
      at = upperBound(list, tick.ts);
      // A redelivered record (same topic, partition, offset) is already held.
      for (let i = lowerBound(list, tick.ts); i < at; i++) {
        const x = list.arr[i]!;
        if (x.src.offset === src.offset && x.src.partition === src.partition && x.src.topic === src.topic) return;
      }
    }
    // Insert in ts order (stable for equal ts: arrival order).
    const held: HeldTick = { ts: tick.ts, mid: tick.mid, bid: tick.bid, ask: tick.ask, bidSize: tick.bidSize, askSize: tick.askSize, volume24h: tick.volume24h, src };
    if (at === list.arr.length) list.arr.push(held);
    else list.arr.splice(at, 0, held);
    if (tick.ts > wm) this.watermark.set(t.symbol, tick.ts);
    this.touched.add(t.symbol);
  }

  private addSignal(s: ModelSignal, src: Src): void {
    if (s.strategy_id !== this.cfg.strategyId) return;
    if (isExitSignal(s)) {
      // A horizon exit (model/exits.ts) closes an entry's window; it is no bet of its own.
      this.exitIds.add(s.signal_id);
      if (this.exitIds.size > 100_000) this.exitIds.delete(this.exitIds.values().next().value!);
      this.orphans.delete(s.signal_id);
      return;
    }
    if (this.pending.has(s.signal_id) || this.done.has(s.signal_id)) {
      this.stats.duplicateSignals++;
      return;
    }
    const prunedTs = this.pruned.get(s.asset);
    if (prunedTs !== undefined) {
      const list = this.ticks.get(s.asset);
      const before = list ? upperBound(list, s.timestamp) - list.head : 0;
      if (before < this.cfg.lookback + 1 || s.timestamp <= prunedTs) {
        this.stats.lateSignals++;
        return;
      }
    }
    const events = this.orphans.get(s.signal_id) ?? [];
    this.orphans.delete(s.signal_id);
    const p: Pending = { signal: s, src, events: [], final: false, close: this.closeOf(s), armed: false, done: false };
    for (const e of events) this.attach(p, e);
    this.pending.set(s.signal_id, p);
    let ap = this.byAsset.get(s.asset);
    if (!ap) this.byAsset.set(s.asset, (ap = { all: new MinHeap(byTs), unarmed: new MinHeap(byTs) }));
    ap.all.push(p);
    ap.unarmed.push(p);
    this.touched.add(s.asset);
  }

  private attach(p: Pending, e: HeldEvent): void {
    if (e.ev.occurred_at > p.close + this.cfg.orderEventsMaxWaitMs) return; // outside the window
    if (p.events.some((x) => x.ev.event_id === e.ev.event_id)) return; // duplicate delivery
    p.events.push(e);
    if (!p.final && FINAL_EVENTS.has(e.ev.event_type)) {
      p.final = true;
      if (p.armed && !p.done) {
        p.done = true;
        this.readyNow.push(p);
      }
    }
  }

  private addEvent(ev: OrderEvent, src: Src): void {
    if (!ev.signal_id || ev.strategy_id !== this.cfg.strategyId || this.exitIds.has(ev.signal_id)) return;
    if (ev.occurred_at > this.orderWm) this.orderWm = ev.occurred_at;
    if (this.done.has(ev.signal_id)) {
      this.stats.lateEvents++;
      return;
    }
    const p = this.pending.get(ev.signal_id);
    if (p) this.attach(p, { ev, src });
    else {
      const e = { ev, src };
      const list = this.orphans.get(ev.signal_id);
      if (list) list.push(e);
      else this.orphans.set(ev.signal_id, [e]);
      this.orphanQueue.push({ id: ev.signal_id, e });
    }
  }

  private closeOf(s: ModelSignal): number {
    return s.timestamp + this.cfg.horizonMs + this.cfg.allowedLatenessMs;
  }

  private flush(): TrainingSample[] {
    const ready = this.readyNow;
    this.readyNow = [];
    const maxWait = this.cfg.orderEventsMaxWaitMs;
    // Arm the signals whose asset watermark passed their close.
    for (const asset of this.touched) {
      const h = this.byAsset.get(asset)?.unarmed;
      if (h === undefined || h.size === 0) continue;
      const wm = this.watermark.get(asset) ?? -Infinity;
      for (let p = h.peek(); p !== undefined; p = h.peek()) {
        if (p.done) {
          h.pop();
          continue;
        }
        if (!(wm >= p.close)) break;
        h.pop();
        p.armed = true;
        if (p.final || this.orderWm >= p.close + maxWait) {
          p.done = true;
          ready.push(p);
        } else this.waiting.push(p);
      }
    }
    // Armed signals without a final event, once the order-event watermark passed close + max wait.
    for (let p = this.waiting.peek(); p !== undefined; p = this.waiting.peek()) {
      if (p.done) {
        this.waiting.pop();
        continue;
      }
      if (!(this.orderWm >= p.close + maxWait)) break;
      this.waiting.pop();
      p.done = true;
      ready.push(p);
    }
    const out: TrainingSample[] = [];
    if (ready.length) {
      ready.sort((a, b) => a.signal.timestamp - b.signal.timestamp || (a.signal.signal_id < b.signal.signal_id ? -1 : 1));
      for (const p of ready) {
        this.touched.add(p.signal.asset);
        this.pending.delete(p.signal.signal_id);
        this.markDone(p.signal.signal_id);
        const s = this.build(p);
        if (s) out.push(s);
      }
      this.stats.samples += out.length;
    }
    this.prune();
    return out;
  }

  private markDone(id: string): void {
    this.done.add(id);
    this.doneOrder.push(id);
    if (this.doneOrder.length - this.doneHead > 100_000) {
      this.done.delete(this.doneOrder[this.doneHead]!);
      this.doneOrder[this.doneHead++] = '';
      if (this.doneHead >= 100_000) {
        this.doneOrder = this.doneOrder.slice(this.doneHead);
        this.doneHead = 0;
      }
    }
  }

  /** The oldest pending signal of an asset (drops built ones from the heap). */
  private oldestPending(asset: string): Pending | undefined {
    const h = this.byAsset.get(asset)?.all;
    if (!h) return undefined;
    let p = h.peek();
    while (p !== undefined && p.done) {
      h.pop();
      p = h.peek();
    }
    return p;
  }

  private prune(): void {
    const keep = this.cfg.lookback + 1;
    // Pruning an asset again without a change to its list, watermark or pending signals removes nothing.
    for (const asset of this.touched) {
      const list = this.ticks.get(asset);
      if (list === undefined) continue;
      const wm = this.watermark.get(asset) ?? -Infinity;
      let needFrom = wm - this.retention;
      const oldest = this.oldestPending(asset);
      if (oldest !== undefined) needFrom = Math.min(needFrom, oldest.signal.timestamp);
      const keepFrom = upperBound(list, needFrom) - keep;
      if (keepFrom > list.head) {
        this.pruned.set(asset, list.arr[keepFrom - 1]!.ts);
        list.head = keepFrom;
        if (list.head >= 1024 && list.head * 2 >= list.arr.length) {
          list.arr = list.arr.slice(list.head);
          list.head = 0;
        }
      }
    }
    const horizon = this.orderWm - this.retention;
    for (let o = this.orphanQueue.peek(); o !== undefined && o.e.ev.occurred_at < horizon; o = this.orphanQueue.peek()) {
      this.orphanQueue.pop();
      const list = this.orphans.get(o.id);
      const i = list ? list.indexOf(o.e) : -1;
      if (i < 0) continue; // joined its signal meanwhile
      list!.splice(i, 1);
      this.stats.unjoinedEvents++;
      if (list!.length === 0) this.orphans.delete(o.id);
    }
    this.touched.clear();
  }

  private build(p: Pending): TrainingSample | null {
    const s = p.signal;
    const list = this.ticks.get(s.asset) ?? { arr: [], head: 0 };
    // Only the last max(lookback + 1, MIN_HISTORY) tickers at or before the signal matter to the features.
    const end = upperBound(list, s.timestamp);
    const hist = list.arr.slice(Math.max(list.head, end - Math.max(this.cfg.lookback + 1, MIN_HISTORY)), end);
    const features = computeFeatures(hist, exposureOf(s), this.cfg.lookback);
    const endH = upperBound(list, s.timestamp + this.cfg.horizonMs);
    if (!features || endH === list.head) {
      this.stats.insufficientHistory++;
      return null;
    }
    return sampleOf(p, features, hist[hist.length - 1]!.mid, list.arr[endH - 1]!.mid, this.cfg.labelMinMoveBps);
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
    for (const list of this.ticks.values()) for (let i = list.head; i < list.arr.length; i++) hold(list.arr[i]!.src);
    for (const p of this.pending.values()) {
      hold(p.src);
      p.events.forEach((e) => hold(e.src));
    }
    for (const list of this.orphans.values()) list.forEach((e) => hold(e.src));
    return [...this.lastSeen.entries()].map(([k, last]) => ({ topic: last.topic, partition: last.partition, offset: min.get(k) ?? String(BigInt(last.offset) + 1n) }));
  }
}

/**
 * The training sample of a closed window, from the signal's feature vector, the reference price (last
 * ticker at the signal) and the price at the horizon: label, reward and outcome from its order events.
 * Shared by the builder and the straightforward reference of the property test, which differ only in
 * how they find the tickers.
 */
export function sampleOf(p: { signal: ModelSignal; src: Src; events: HeldEvent[] }, features: number[], pRef: number, pH: number, labelMinMoveBps: number): TrainingSample {
  const s = p.signal;
  const mret = 1e4 * Math.log(pH / pRef);
  const label: 0 | 1 | null = mret > labelMinMoveBps ? 1 : mret < -labelMinMoveBps ? 0 : null;
  const events = [...p.events].sort((a, b) => a.ev.occurred_at - b.ev.occurred_at || (a.ev.sequence ?? 0) - (b.ev.sequence ?? 0) || (a.ev.event_id < b.ev.event_id ? -1 : 1));
  const sign = s.signal_type === 'buy' ? 1 : -1;
  let outcome = 'no_order_events';
  let reward = 0;
  let reason: string | null = null;
  let slippage: number | null = null;
  let filledQty = 0;
  let avgFill: number | null = null;
  let feeBps: number | null = null;
  const rejected = events.find((e) => e.ev.event_type === 'signal_rejected');
  if (rejected) {
    outcome = 'rejected';
    reason = rejected.ev.reason_code;
  } else if (events.length) {
    // The order's state is that of its event with the highest sequence (the order manager's own
    // order), not of the one latest in event time: a submission recorded a few ms after the
    // exchange's fill, or a cancel refused because the order had already filled
    // (order_cancel_rejected, status Filled), come later in time and told nothing of how it ended.
    // In the running loop 373 of 607 model windows were reported `pending` so, though filled.
    const bySeq = [...events].sort((a, b) => (a.ev.sequence ?? -1) - (b.ev.sequence ?? -1));
    const last = bySeq[bySeq.length - 1]!.ev;
    outcome = outcomeOfStatus(last.status) ?? outcomeOf(last);
    reason = ([...bySeq].reverse().find((e) => outcomeOf(e.ev) !== 'pending')?.ev ?? last).reason_code;
    const filled = [...bySeq].reverse().find((e) => Number(e.ev.filled_qty ?? 0) > 0)?.ev;
    if (filled) {
      filledQty = Number(filled.filled_qty);
      avgFill = Number(filled.avg_fill_price ?? NaN);
      slippage = filled.slippage_bps;
      if (Number.isFinite(avgFill) && avgFill! > 0) {
        const fees = Number(filled.fees ?? 0);
        // Spot buys pay the fee in the base coin (Bybit): convert to quote at the fill price.
        const feeInQuote = filled.fee_currency && !s.asset.endsWith(filled.fee_currency) ? fees * avgFill! : fees;
        feeBps = (1e4 * feeInQuote) / (filledQty * avgFill!);
        reward = 1e4 * (sign * (pH - avgFill!) / avgFill!) - feeBps;
      }
    }
  }
  return {
    signal_id: s.signal_id,
    asset: s.asset,
    side: s.signal_type,
    ts: s.timestamp,
    features,
    feature_spec: FEATURE_SPEC_ID,
    label,
    reward,
    market_return_bps: mret,
    outcome,
    is_warmup: s.is_warmup,
    model_version: s.model_version,
    strategy_id: s.strategy_id,
    confidence: s.confidence,
    source: p.src,
    source_offsets: events.map((e) => e.src),
    details: { price_ref: pRef, price_horizon: pH, reason_code: reason, slippage_bps: slippage, fee_bps: feeBps, filled_qty: filledQty, avg_fill_price: avgFill, amount: s.amount, ...shadowOf(s) },
  };
}

/**
 * A warm-up signal's shadow: the active version's P(up) on the same features when the signal was
 * decided (metadata.extra `shadow_p`, `shadow_version`; model/signals.ts), or nothing.
 */
function shadowOf(s: ModelSignal): { shadow_p: number; shadow_version: string } | Record<string, never> {
  if (!s.is_warmup) return {};
  const x = extraOf(s);
  return typeof x.shadow_p === 'number' && Number.isFinite(x.shadow_p) && typeof x.shadow_version === 'string' ? { shadow_p: x.shadow_p, shadow_version: x.shadow_version } : {};
}

/** Outcome of an order's final status (pipelines/order-state.ts), or null while it is not final. */
function outcomeOfStatus(status: string | null): string | null {
  switch (status) {
    case 'Filled':
      return 'filled';
    case 'PartiallyFilledCanceled':
      return 'partially_filled';
    case 'Cancelled':
    case 'Deactivated':
      return 'cancelled';
    case 'Rejected':
      return 'rejected';
    default:
      return null;
  }
}

function outcomeOf(e: OrderEvent): string {
  switch (e.event_type) {
    case 'order_filled':
      return 'filled';
    case 'order_partially_filled':
    case 'order_partially_filled_cancelled':
      return 'partially_filled';
    case 'order_cancelled':
      return 'cancelled';
    case 'order_rejected':
    case 'order_submit_failed':
      return 'rejected';
    case 'order_expired':
      return 'expired';
    default:
      return 'pending';
  }
}

/** Event time of an input, for merging replayed topics into one event-time order. */
export function eventTimeOf(i: WindowInput): number {
  return i.kind === 'signal' ? i.value.timestamp : i.kind === 'event' ? i.value.occurred_at : i.value.ts;
}

/** Deterministic merge of replayed records: by event time, then topic, partition, offset. */
export function mergeByEventTime(inputs: WindowInput[]): WindowInput[] {
  return [...inputs].sort(
    (a, b) => eventTimeOf(a) - eventTimeOf(b) || (a.src.topic < b.src.topic ? -1 : a.src.topic > b.src.topic ? 1 : 0) || a.src.partition - b.src.partition || cmpOffset(a.src.offset, b.src.offset),
  );
}
