// Horizon exits: a model-mode signal is a bet on the market's move over MODEL_HORIZON_MS, and the
// model decides, evaluates and is judged on it as a round trip (enter at the signal, exit at the
// horizon: model/money.ts charges both sides). A signal is an order that opens a position, so
// without an exit the books hold every entry until some later opposite signal: the live P&L is
// then the move from each fill to whenever that happens, mostly past the horizon the model knows
// nothing about, and the drift of a one-sided run of entries decides it. This book closes each
// entry at its horizon with an opposite signal of the quantity that entry filled, so the order
// manager's books count what the model is judged on.
//
// A leg is one model-mode entry (metadata.mode 'model') of MODEL_STRATEGY_ID; an exit is a signal
// with metadata.mode 'exit' and `exit_of` = the entry's signal_id in metadata.extra. What a leg
// holds comes from the order events of its entry (filled_qty, fees in the base coin); what has
// left it, from the order events of its exits: an exit still working counts what it asked for, a
// final one what it filled, so a refused or unfilled exit reopens the leg and it is retried (after
// MODEL_SIGNAL_INTERVAL_MS, doubling, at most a horizon; at most MODEL_EXIT_MAX_ATTEMPTS exits,
// then given up, logged and counted).
//
// Exactly once: the n-th exit of an entry has a signal_id derived from the entry's and n (a
// name-based UUID), so an exit decided again (a send that failed after the broker took it, or a
// restart that emits before it has read its own earlier exit back) is the same signal, and the
// order manager refuses a signal_id it has seen (validation: duplicate_signal, no second order).
//
// Restart: the book is rebuilt from what the model core reads again (its own model.signals and
// orders.events from the committed offsets, which stay behind every window still open), so an
// entry whose horizon passed while the service was down is exited at the first emission after it.
import { createHash } from 'node:crypto';
import type { ModelSignal, OrderEvent } from '../schemas/types.ts';

/** Order events after which an order no longer changes (the window builder's final events). */
const FINAL = new Set(['signal_rejected', 'order_filled', 'order_cancelled', 'order_partially_filled_cancelled', 'order_rejected', 'order_expired', 'order_submit_failed', 'order_deactivated']);

/** An instrument's quantity filters, as the order manager rounds orders (table instruments). */
export interface QtyFilter {
  qtyStep: number;
  minQty: number;
  /** Smallest order value in the quote coin (linear min_notional_value, spot min_order_amt). */
  minValue: number;
}

/** What the order events of one signal say. */
interface OrderFill {
  filled: number;
  /** Fees paid in the base coin (spot buys): not held, so not sold at the exit. */
  baseFees: number;
  final: boolean;
  category: string | null;
  at: number;
}

interface Leg {
  signalId: string;
  asset: string;
  /** +1 the entry bought, -1 it sold. */
  side: 1 | -1;
  dueAt: number;
  confidence: number;
  version: string | null;
  /** Exit signal_id -> the quantity it asked for, and when (event time) it was decided or read back. */
  exits: Map<string, { qty: number; at: number }>;
  nextTryAt: number;
}

/** An exit to emit: close `qty` of `asset` (side is the exit's, opposite the entry's). */
export interface ExitOrder {
  /** The exit's signal_id: the same for the same entry and attempt (exitSignalId). */
  signalId: string;
  entry: string;
  asset: string;
  side: 'buy' | 'sell';
  qty: number;
  /** Quote amount of the signal: sized so that the order manager's floor to the step gives `qty`. */
  amount: number;
  confidence: number;
  version: string | null;
  /** Horizon passed by this much (event time) when the exit was decided. */
  lateMs: number;
}

export interface ExitBookConfig {
  strategyId: string;
  horizonMs: number;
  maxAttempts: number;
  /** First retry delay after an exit that did not close its leg; doubles per attempt, at most a horizon. */
  retryMs: number;
}

export interface ExitStats {
  /** Legs given up after maxAttempts exits that did not close them. */
  givenUp: number;
  /** Legs closed (entry final, what it filled exited, or dust below the instrument's minimum left). */
  closed: number;
  /** Legs dropped with an exit that never settled (no final order event for a while). */
  unsettled: number;
}

/** The signal_id of the `attempt`-th exit (1-based) of an entry: a name-based (version 5 form) UUID. */
export function exitSignalId(entry: string, attempt: number): string {
  const h = createHash('sha1').update(`model-service/horizon-exit/${entry.toLowerCase()}/${attempt}`).digest('hex').slice(0, 32).split('');
  h[12] = '5';
  h[16] = (8 + (parseInt(h[16]!, 16) & 3)).toString(16);
  const x = h.join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

const num = (s: string | null | undefined): number => {
  const x = Number(s ?? 0);
  return Number.isFinite(x) ? x : 0;
};

export function extraOf(s: Pick<ModelSignal, 'metadata'>): Record<string, unknown> {
  const e = s.metadata?.extra;
  if (!e) return {};
  try {
    const v = JSON.parse(e) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** True for an exit signal (the window builder does not make a training window of it). */
export const isExitSignal = (s: Pick<ModelSignal, 'metadata'>): boolean => s.metadata?.mode === 'exit';

export class ExitBook {
  private readonly legs = new Map<string, Leg>();
  private readonly fills = new Map<string, OrderFill>();
  /** Exits read before their entry (a restart reads topics in no fixed order across them). */
  private readonly early = new Map<string, Map<string, { qty: number; at: number }>>();
  readonly stats: ExitStats = { givenUp: 0, closed: 0, unsettled: 0 };

  constructor(private readonly cfg: ExitBookConfig) {}

  get open(): number {
    return this.legs.size;
  }

  /** One of the service's own signals (emitted now, or read back from model.signals): idempotent. */
  onSignal(s: ModelSignal): void {
    if (s.strategy_id !== this.cfg.strategyId) return;
    if (isExitSignal(s)) {
      const of = extraOf(s).exit_of;
      const qty = Number(extraOf(s).qty);
      if (typeof of !== 'string' || !(qty > 0)) return;
      const entry = of.toLowerCase();
      const exit = s.signal_id.toLowerCase();
      const leg = this.legs.get(entry);
      const x = { qty, at: s.timestamp };
      if (leg) {
        if (!leg.exits.has(exit)) leg.exits.set(exit, x);
      } else this.early.set(entry, (this.early.get(entry) ?? new Map<string, { qty: number; at: number }>()).set(exit, x));
      return;
    }
    const id = s.signal_id.toLowerCase();
    if (s.is_warmup || s.metadata?.mode !== 'model' || this.legs.has(id)) return;
    const exits = this.early.get(id) ?? new Map<string, { qty: number; at: number }>();
    this.early.delete(id);
    const dueAt = s.timestamp + this.cfg.horizonMs;
    this.legs.set(id, { signalId: id, asset: s.asset, side: s.signal_type === 'buy' ? 1 : -1, dueAt, confidence: s.confidence, version: s.model_version, exits, nextTryAt: dueAt });
  }

  /** An order event of the strategy's model-mode or exit signals (warm-up's are not kept). */
  onEvent(ev: OrderEvent): void {
    if (!ev.signal_id || ev.strategy_id !== this.cfg.strategyId || ev.is_warmup !== false || ev.external) return;
    const id = ev.signal_id.toLowerCase();
    const f = this.fills.get(id) ?? { filled: 0, baseFees: 0, final: false, category: null, at: ev.occurred_at };
    // filled_qty is cumulative; events may be redelivered or arrive out of order: the largest wins.
    f.filled = Math.max(f.filled, num(ev.filled_qty));
    if (ev.fees && ev.fee_currency && ev.symbol && !ev.symbol.endsWith(ev.fee_currency) && ev.symbol.startsWith(ev.fee_currency)) f.baseFees = Math.max(f.baseFees, num(ev.fees));
    if (FINAL.has(ev.event_type)) f.final = true;
    f.category = ev.category ?? f.category;
    f.at = Math.max(f.at, ev.occurred_at);
    this.fills.set(id, f);
  }

  /** What has left a leg: exits still working count what they asked for, final ones what they filled. */
  private exited(leg: Leg): { qty: number; working: boolean; lastAt: number } {
    let qty = 0;
    let working = false;
    let lastAt = -Infinity;
    for (const [id, x] of leg.exits) {
      const f = this.fills.get(id);
      lastAt = Math.max(lastAt, x.at, f?.at ?? -Infinity);
      if (f?.final) qty += f.filled;
      else {
        qty += x.qty;
        working = true;
      }
    }
    return { qty, working, lastAt };
  }

  /**
   * Exits due at `now` (event time): every leg past its horizon with a quantity filled and not yet
   * exited, rounded down to the instrument's step, at least its minimum. `price` is the touch the
   * exit will take (bid for a sell, ask for a buy); `filter` the instrument's filters by category
   * and symbol (null: not known yet, so the leg waits). Each exit returned is counted on its leg
   * as asked; `record` the signal it became (its signal_id) with `recordExit`.
   */
  due(now: number, price: (asset: string, side: 'buy' | 'sell') => number | null, filter: (category: string, symbol: string) => QtyFilter | null): ExitOrder[] {
    const out: ExitOrder[] = [];
    const keepMs = this.keepMs();
    for (const leg of this.legs.values()) {
      if (now < leg.nextTryAt) continue;
      const entry = this.fills.get(leg.signalId);
      const { qty: gone, working, lastAt } = this.exited(leg);
      const held = entry ? entry.filled - entry.baseFees : 0;
      if (entry?.final && !working && held - gone <= 0) {
        this.legs.delete(leg.signalId);
        this.stats.closed++;
        continue;
      }
      if (working && now > lastAt + keepMs) {
        // An exit with no final order event for that long (its events were read before a restart
        // and not again, or the order manager never answered): what it did is unknown, and
        // deciding it again could close twice; the leg is dropped and counted.
        this.legs.delete(leg.signalId);
        this.stats.unsettled++;
        continue;
      }
      // Nothing filled yet (the order manager may not have taken the entry yet: the leg waits), or
      // an exit still working.
      if (!entry || working) continue;
      const f = entry.category ? filter(entry.category, leg.asset) : null;
      const side = leg.side === 1 ? 'sell' : 'buy';
      const px = price(leg.asset, side);
      if (!f || !(px! > 0)) continue;
      const qty = Math.floor((held - gone) / f.qtyStep + 1e-9) * f.qtyStep;
      if (!(qty >= f.minQty) || !(qty * px! >= f.minValue) || !(qty > 0)) {
        // Dust below the instrument's minimum: nothing can close it; done once the entry is final.
        if (entry.final) {
          this.legs.delete(leg.signalId);
          this.stats.closed++;
        }
        continue;
      }
      const attempt = leg.exits.size + 1;
      if (attempt > this.cfg.maxAttempts) {
        this.legs.delete(leg.signalId);
        this.stats.givenUp++;
        continue;
      }
      // If this exit is refused or dropped (placement supersedes an unsent order by a newer one of
      // the same side, e.g. the next entry), the next one waits: retryMs, doubling, at most a horizon.
      leg.nextTryAt = now + Math.min(this.cfg.horizonMs, this.cfg.retryMs * 2 ** (attempt - 1));
      // Half a step above the quantity: the order manager floors amount / its price to the step, so
      // a price that moved by less than half a step's share between here and there gives `qty`.
      const amount = Math.round((qty + f.qtyStep / 2) * px! * 1e8) / 1e8;
      out.push({ signalId: exitSignalId(leg.signalId, attempt), entry: leg.signalId, asset: leg.asset, side, qty: roundQty(qty, f.qtyStep), amount, confidence: leg.confidence, version: leg.version, lateMs: now - leg.dueAt });
    }
    this.prune(now);
    return out;
  }

  /** An ExitOrder emitted at `now`: counted on its leg as asked until its order events say otherwise. */
  recordExit(o: ExitOrder, now: number): void {
    this.legs.get(o.entry)?.exits.set(o.signalId, { qty: o.qty, at: now });
  }

  /** An exit signal that was never published (the send failed): the leg is open again at once. */
  forgetExit(entry: string, exitSignalId: string): void {
    const leg = this.legs.get(entry.toLowerCase());
    if (leg?.exits.delete(exitSignalId.toLowerCase())) leg.nextTryAt = leg.dueAt;
  }

  /** Fills of signals no leg refers to any more, kept a while for redeliveries, then dropped. */
  private keepMs(): number {
    return this.cfg.horizonMs * (this.cfg.maxAttempts + 2);
  }

  private prune(now: number): void {
    const keepMs = this.keepMs();
    const live = new Set<string>();
    for (const leg of this.legs.values()) {
      live.add(leg.signalId);
      for (const id of leg.exits.keys()) live.add(id);
    }
    for (const [id, f] of this.fills) if (!live.has(id) && f.at < now - keepMs) this.fills.delete(id);
    if (this.early.size > 10_000) this.early.clear();
    // Entries the order manager never answered stay (it may take them late); a bound on memory all the same.
    if (this.legs.size > 100_000) for (const id of [...this.legs.keys()].slice(0, this.legs.size - 100_000)) {
      this.legs.delete(id);
      this.stats.givenUp++;
    }
  }
}

/** `qty` on the step's decimals (floating point would otherwise print 0.30000000000000004). */
function roundQty(qty: number, step: number): number {
  const d = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
  return Number(qty.toFixed(Math.min(12, d)));
}
