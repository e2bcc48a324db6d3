// A market session for the model service, offline: the exchange simulator's own price process
// (manual clock, fixed seed) in any of its modes and pattern regimes, the warm-up emitter trading
// each asset at its interval, and the order manager's answers synthesised from the simulator's
// book (fills at the touch with the linear taker fee, some signals rejected on request), as the
// records the window builder reads from the three topics.
//
// Used by the model tests' fixtures (tests/model/fixtures.ts) and by the regime study
// (stack/regime-study.ts): production code may not import from tests/, so the session lives here.
import { randomUUID } from 'node:crypto';
import { ManualClock } from '../runtime/clock.ts';
import { startSimulator } from '../sim/server.ts';
import { ticker as tickerView } from '../sim/market-data.ts';
import type { Instrument } from '../sim/instruments.ts';
import type { PriceProcessOptions } from '../sim/price-process.ts';
import type { ModelSignal, OrderEvent, Ticker } from '../schemas/types.ts';
import type { ModelConfig } from '../model/config.ts';
import { SignalEmitter, uuidFrom } from '../model/signals.ts';
import type { WindowInput } from '../model/windows.ts';
import { SeededRng } from '../model/rng.ts';

export const SESSION_T0 = Date.UTC(2025, 0, 6, 12, 0, 0);
export const SESSION_TOPICS = { signals: 'model.signals', events: 'orders.events', tickers: 'market.tickers' } as const;
/** The linear taker fee the synthesised fills pay (the simulator's linear instruments: 5.5 bps). */
export const SESSION_TAKER_FEE = 0.00055;

export function tickerRecord(raw: Record<string, unknown>, ts: number): Ticker {
  const s = (k: string) => (raw[k] === undefined || raw[k] === '' ? null : String(raw[k]));
  return {
    symbol: String(raw.symbol),
    category: 'linear',
    lastPrice: String(raw.lastPrice),
    bid1Price: s('bid1Price'),
    bid1Size: s('bid1Size'),
    ask1Price: s('ask1Price'),
    ask1Size: s('ask1Size'),
    volume24h: String(raw.volume24h ?? '0'),
    turnover24h: s('turnover24h'),
    price24hPcnt: s('price24hPcnt'),
    markPrice: s('markPrice'),
    ts,
    source: 'ws',
    observedAt: ts,
  };
}

export function orderEvent(over: Partial<OrderEvent> & Pick<OrderEvent, 'event_type' | 'occurred_at'>): OrderEvent {
  return {
    event_id: randomUUID(),
    observed_at: over.occurred_at,
    order_link_id: null,
    order_id: null,
    status: null,
    previous_status: null,
    category: 'linear',
    symbol: null,
    side: null,
    order_type: 'Market',
    qty: null,
    price: null,
    filled_qty: null,
    avg_fill_price: null,
    fees: null,
    fee_currency: 'USDT',
    remaining_qty: null,
    last_exec_id: null,
    last_exec_qty: null,
    last_exec_price: null,
    slippage_bps: null,
    latencies: { signal_to_submitted_ms: null, submitted_to_ack_ms: null, submitted_to_first_fill_ms: null, to_final_ms: null },
    reason_code: null,
    reason_detail: null,
    signal_id: null,
    strategy_id: null,
    model_version: null,
    is_warmup: null,
    confidence: null,
    trace_id: null,
    source: 'ws',
    external: false,
    sequence: null,
    ...over,
  };
}

/** The order manager's answer to a signal: a fill at the touch (taker fee 5.5 bps), or a rejection. */
export function answer(sig: ModelSignal, t: Ticker, rejected: boolean, eventId: string): OrderEvent[] {
  const common = { signal_id: sig.signal_id, strategy_id: sig.strategy_id, model_version: sig.model_version, is_warmup: sig.is_warmup, confidence: sig.confidence, trace_id: sig.trace_id, symbol: sig.asset };
  if (rejected) return [orderEvent({ ...common, event_id: eventId, event_type: 'signal_rejected', occurred_at: sig.timestamp + 20, reason_code: 'risk_max_notional' })];
  const px = Number(sig.signal_type === 'buy' ? t.ask1Price : t.bid1Price);
  const qty = sig.amount / px;
  const slip = (sig.signal_type === 'buy' ? 1 : -1) * 1e4 * (px / sig.market_data_snapshot.price - 1);
  return [
    orderEvent({ ...common, event_id: `${eventId}-a`, event_type: 'order_acknowledged', occurred_at: sig.timestamp + 30, sequence: 1, status: 'New', side: sig.signal_type === 'buy' ? 'Buy' : 'Sell', qty: qty.toFixed(6) }),
    orderEvent({
      ...common,
      event_id: `${eventId}-f`,
      event_type: 'order_filled',
      occurred_at: sig.timestamp + 60,
      sequence: 2,
      status: 'Filled',
      side: sig.signal_type === 'buy' ? 'Buy' : 'Sell',
      qty: qty.toFixed(6),
      filled_qty: qty.toFixed(6),
      avg_fill_price: String(px),
      fees: (qty * px * SESSION_TAKER_FEE).toFixed(8),
      slippage_bps: slip,
    }),
  ];
}

export interface Session {
  inputs: WindowInput[];
  signals: ModelSignal[];
  /** The simulator's regime label of each step (`regimeAt`). */
  regimes: string[];
}

export interface SessionOptions {
  seed: number;
  /** Price steps to run (each `priceProcess.stepMs`, 1 s by default). */
  steps: number;
  /** The model service's settings: assets, warm-up interval and heuristic, seed of its decisions. */
  cfg: ModelConfig;
  /** The simulator's price process, as `npm start` passes it (mode, pattern regime, step). */
  priceProcess: PriceProcessOptions;
  /** The simulator's listing (its default when absent). */
  instruments?: readonly Instrument[];
  /** Every n-th signal (by emission order, from the first) is rejected instead of filled. */
  rejectEvery?: number;
}

/**
 * Run the simulator `steps` price steps; the warm-up emitter is asked for signals after each step
 * (it emits per asset every WARMUP_INTERVAL_MS). Inputs are in arrival order: each step's tickers,
 * then its signals, then their order events. Offsets and partitions per topic: one partition per
 * asset, in MODEL_ASSETS order.
 */
export async function simulateSession(o: SessionOptions): Promise<Session> {
  const clock = new ManualClock(SESSION_T0);
  const sim = await startSimulator({ port: 0, seed: o.seed, clock, priceProcess: o.priceProcess, ...(o.instruments ? { instruments: o.instruments } : {}) });
  const cfg = o.cfg;
  // Ids from the same seeded sequence as the decisions: a session is reproducible to the byte.
  const rng = new SeededRng(o.seed);
  const emitter = new SignalEmitter(cfg, rng, () => uuidFrom(rng));
  const inputs: WindowInput[] = [];
  const signals: ModelSignal[] = [];
  const regimes: string[] = [];
  const off = { signals: 0, events: 0, tickers: 0 };
  const src = (k: keyof typeof SESSION_TOPICS, asset: string) => ({ topic: SESSION_TOPICS[k], partition: cfg.MODEL_ASSETS.indexOf(asset), offset: String(off[k]++) });
  try {
    for (let step = 0; step < o.steps; step++) {
      sim.tick(1);
      const now = clock.now();
      regimes.push(sim.exchange.prices.regimeAt());
      const tickers = new Map<string, Ticker>();
      for (const asset of cfg.MODEL_ASSETS) {
        const t = tickerRecord(tickerView(sim.exchange, sim.exchange.instruments.get('linear', asset)!), now);
        tickers.set(asset, t);
        emitter.onTicker(t);
        inputs.push({ kind: 'ticker', value: t, src: src('tickers', asset) });
      }
      const out = emitter.emit(now, { mode: { mode: 'warmup', version: null, warmupStartedAt: SESSION_T0 }, model: null, exposure: () => 0 });
      for (const s of out) {
        signals.push(s);
        inputs.push({ kind: 'signal', value: s, src: src('signals', s.asset) });
      }
      for (const s of out) {
        const rejected = o.rejectEvery !== undefined && signals.indexOf(s) % o.rejectEvery === 0;
        for (const e of answer(s, tickers.get(s.asset)!, rejected, `ev-${s.signal_id}`)) inputs.push({ kind: 'event', value: e, src: src('events', s.asset) });
      }
    }
  } finally {
    await sim.close();
  }
  return { inputs, signals, regimes };
}
