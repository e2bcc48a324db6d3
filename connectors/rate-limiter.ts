// Client-side rate limiter for Bybit REST: per UID (one limiter per API key, and one key is one
// UID), per endpoint and category, a rolling one-second window kept under Bybit's limits
// (https://bybit-exchange.github.io/docs/v5/rate-limit: create / amend / cancel 20/s spot and
// 10/s linear; other private endpoints 50/s by default), times a safety fraction.
//
// It also honours what the exchange says in every answer:
//   X-Bapi-Limit               the UID's real limit for that endpoint (the lower of it and ours wins)
//   X-Bapi-Limit-Status        requests left in the window: 0 blocks the key until the reset
//   X-Bapi-Limit-Reset-Timestamp when the window resets (epoch ms)
// and a 10006 answer blocks the key until its reset timestamp. The batch endpoints (create-batch,
// amend-batch, cancel-batch) have budgets of their own, counted in orders: a batch takes as many
// slots as it holds orders (Bybit's "Instructions for batch endpoints"). The budget is shared with any other
// client of the same UID, which is why the headers matter more than the local count.
//
// Time and sleeping are injected, so tests run it on a manual clock without waiting.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../runtime/clock.ts';
import { systemClock } from '../runtime/clock.ts';
import { MAX_RATE_LIMIT_WAIT_MS } from './bybit-errors.ts';

export const DEFAULT_LIMITS: Readonly<Record<string, number>> = Object.freeze({
  '/v5/order/create:spot': 20,
  '/v5/order/create:linear': 10,
  '/v5/order/amend:spot': 20,
  '/v5/order/amend:linear': 10,
  '/v5/order/cancel:spot': 20,
  '/v5/order/cancel:linear': 10,
  '/v5/order/cancel-all:spot': 20,
  '/v5/order/cancel-all:linear': 10,
  '/v5/order/create-batch:spot': 20,
  '/v5/order/create-batch:linear': 10,
  '/v5/order/amend-batch:spot': 20,
  '/v5/order/amend-batch:linear': 10,
  '/v5/order/cancel-batch:spot': 20,
  '/v5/order/cancel-batch:linear': 10,
});
/** Private endpoints without a specific limit (queries such as /v5/order/realtime). */
export const DEFAULT_OTHER_LIMIT = 50;

export interface RateLimitInfo {
  /** X-Bapi-Limit */
  limit?: number;
  /** X-Bapi-Limit-Status */
  remaining?: number;
  /** X-Bapi-Limit-Reset-Timestamp, epoch ms */
  resetAtMs?: number;
}

export interface RateLimiterOptions {
  /** Share of the limit to use (0 < f <= 1); keeps headroom for other clients of the UID. */
  fraction?: number;
  /** Multiplies every configured limit (simulator only: BYBIT_RATE_LIMIT_MULTIPLIER). Default 1. */
  multiplier?: number;
  limits?: Record<string, number>;
  otherLimit?: number;
  clock?: Clock;
  sleep?: (ms: number) => Promise<void>;
}

interface Slot {
  /** When the request was let go, then (on release) when its answer arrived. */
  t: number;
  inFlight: boolean;
}

interface KeyState {
  slots: Slot[];
  blockedUntil: number;
  headerLimit?: number;
}

/** How often a full window of requests that are all still in flight is looked at again. */
const IN_FLIGHT_POLL_MS = 20;

export class RateLimiter {
  private readonly keys = new Map<string, KeyState>();
  private readonly fraction: number;
  private readonly multiplier: number;
  private readonly limits: Record<string, number>;
  private readonly otherLimit: number;
  private readonly clock: Clock;
  private readonly sleep: (ms: number) => Promise<void>;
  /** Serialises acquisitions per key so concurrent callers queue in order. */
  private readonly queues = new Map<string, Promise<void>>();
  /** Total time spent waiting, ms (for metrics and tests). */
  waitedMs = 0;

  constructor(opts: RateLimiterOptions = {}) {
    this.fraction = opts.fraction ?? 0.8;
    if (!(this.fraction > 0 && this.fraction <= 1)) throw new RangeError(`rate limit fraction must be in (0, 1], got ${this.fraction}`);
    this.multiplier = opts.multiplier ?? 1;
    if (!(this.multiplier >= 1 && Number.isFinite(this.multiplier))) throw new RangeError(`rate limit multiplier must be a finite number >= 1, got ${this.multiplier}`);
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.otherLimit = opts.otherLimit ?? DEFAULT_OTHER_LIMIT;
    this.clock = opts.clock ?? systemClock;
    this.sleep = opts.sleep ?? ((ms) => sleep(ms));
  }

  static key(path: string, category?: string): string {
    return category ? `${path}:${category}` : path;
  }

  /** Requests allowed per rolling second for a key, after the fraction and the exchange's header. */
  limitOf(key: string): number {
    const path = key.split(':')[0]!;
    const configured = (this.limits[key] ?? this.limits[path] ?? this.otherLimit) * this.multiplier;
    const st = this.keys.get(key);
    const base = st?.headerLimit !== undefined ? Math.min(configured, st.headerLimit) : configured;
    return Math.max(1, Math.floor(base * this.fraction));
  }

  private state(key: string): KeyState {
    let st = this.keys.get(key);
    if (!st) {
      st = { slots: [], blockedUntil: 0 };
      this.keys.set(key, st);
    }
    return st;
  }

  /** How long a request on `key` taking `cost` slots (a batch: its orders) would have to wait now (0 = may go). */
  delayFor(key: string, cost = 1): number {
    const st = this.state(key);
    const now = this.clock.now();
    st.slots = st.slots.filter((s) => s.inFlight || s.t > now - 1000);
    let wait = Math.max(0, st.blockedUntil - now);
    const limit = this.limitOf(key);
    // A batch larger than the whole budget could never go: it waits for an empty window instead.
    const need = Math.min(cost, limit);
    if (st.slots.length + need > limit) {
      // The exchange counts a request when it arrives, somewhere between our send and its answer:
      // a slot frees a second after the answer, and not at all while the request is in flight.
      const done = st.slots.filter((s) => !s.inFlight).map((s) => s.t).sort((a, b) => a - b);
      const needed = st.slots.length + need - limit;
      wait = Math.max(wait, done.length >= needed ? done[needed - 1]! + 1000 - now + 1 : IN_FLIGHT_POLL_MS);
    }
    return wait;
  }

  /**
   * Wait for `cost` slots on `key` (1 for a single request, the number of orders for a batch)
   * and take them. Call the returned release when the answer (or the
   * failure) arrived: the slot then counts from that moment, which is never earlier than when the
   * exchange counted the request.
   */
  acquire(key: string, cost = 1): Promise<() => void> {
    const prev = this.queues.get(key) ?? Promise.resolve();
    const next = prev.then(async () => {
      for (;;) {
        const wait = this.delayFor(key, cost);
        if (wait <= 0) break;
        this.waitedMs += wait;
        await this.sleep(wait);
      }
      const now = this.clock.now();
      const slots: Slot[] = Array.from({ length: Math.max(1, cost) }, () => ({ t: now, inFlight: true }));
      this.state(key).slots.push(...slots);
      return () => {
        const done = this.clock.now();
        for (const slot of slots) {
          if (!slot.inFlight) continue;
          slot.inFlight = false;
          slot.t = done;
        }
      };
    });
    const tail = next.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(key, tail);
    tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return next;
  }

  /** Learn from an answer's X-Bapi-Limit-* headers. */
  observe(key: string, info: RateLimitInfo | undefined): void {
    if (!info) return;
    const st = this.state(key);
    if (info.limit !== undefined && Number.isFinite(info.limit) && info.limit > 0) st.headerLimit = info.limit;
    if (info.remaining !== undefined && info.remaining <= 0 && info.resetAtMs !== undefined) this.blockUntil(key, info.resetAtMs);
  }

  /** A 10006 answer (or a remaining budget of 0): no request on `key` before `resetAtMs`. */
  blockUntil(key: string, resetAtMs: number): void {
    const now = this.clock.now();
    const until = Math.min(resetAtMs, now + MAX_RATE_LIMIT_WAIT_MS);
    const st = this.state(key);
    if (until > st.blockedUntil) st.blockedUntil = until;
  }
}
