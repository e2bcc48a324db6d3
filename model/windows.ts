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
//     unjoined ones are dropped once the order-event watermark is `retention` past them.
// Given the same records (in any interleaving that respects the lateness bound) the builder emits
// the same samples; features are recomputed from the tickers, so a replay gives identical vectors.
import type { ModelSignal, OrderEvent, Ticker } from '../schemas/types.ts';
import { computeFeatures, FEATURE_SPEC_ID, tickFromTicker, type Tick } from './features.ts';

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

export function exposureOf(signal: ModelSignal): number {
  const extra = signal.metadata?.extra;
  if (!extra) return 0;
  try {
    const v = (JSON.parse(extra) as { exposure?: unknown }).exposure;
    return typeof v === 'number' && Number.isFinite(v) ? v : 0;
  } catch {
    return 0;
  }
}

export class WindowBuilder {
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
    const pRef = hist[hist.length - 1]!.mid;
    const pH = atH[atH.length - 1]!.mid;
    const mret = 1e4 * Math.log(pH / pRef);
    const label: 0 | 1 | null = mret > this.cfg.labelMinMoveBps ? 1 : mret < -this.cfg.labelMinMoveBps ? 0 : null;
    const events = [...p.events].sort((a, b) => a.ev.occurred_at - b.ev.occurred_at || (a.ev.sequence ?? 0) - (b.ev.sequence ?? 0) || (a.ev.event_id < b.ev.event_id ? -1 : 1));
    const sign = s.signal_type === 'buy' ? 1 : -1;
    let outcome = 'no_order_events';
    let reward = 0;
    let reason: string | null = null;
    let slippage: number | null = null;
    let filledQty = 0;
    let avgFill: number | null = null;
    const rejected = events.find((e) => e.ev.event_type === 'signal_rejected');
    if (rejected) {
      outcome = 'rejected';
      reason = rejected.ev.reason_code;
    } else if (events.length) {
      const last = events[events.length - 1]!.ev;
      outcome = outcomeOf(last);
      reason = last.reason_code;
      const filled = [...events].reverse().find((e) => Number(e.ev.filled_qty ?? 0) > 0)?.ev;
      if (filled) {
        filledQty = Number(filled.filled_qty);
        avgFill = Number(filled.avg_fill_price ?? NaN);
        slippage = filled.slippage_bps;
        if (Number.isFinite(avgFill) && avgFill! > 0) {
          const fees = Number(filled.fees ?? 0);
          // Spot buys pay the fee in the base coin (Bybit): convert to quote at the fill price.
          const feeInQuote = filled.fee_currency && !s.asset.endsWith(filled.fee_currency) ? fees * avgFill! : fees;
          reward = 1e4 * (sign * (pH - avgFill!) / avgFill! - feeInQuote / (filledQty * avgFill!));
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
      details: { price_ref: pRef, price_horizon: pH, reason_code: reason, slippage_bps: slippage, filled_qty: filledQty, avg_fill_price: avgFill, amount: s.amount },
    };
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
