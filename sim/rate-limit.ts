// Per-UID, per-endpoint (and per-category) rolling one-second rate limits, as Bybit documents them
// (https://bybit-exchange.github.io/docs/v5/rate-limit): order create/amend/cancel/cancel-all
// 20/s for spot and 10/s for linear by default. Endpoints Bybit leaves unlimited get a generous
// limit here so the X-Bapi-Limit-* headers are present on every answer. The batch endpoints have
// limits of their own (not shared with the single ones) counted in orders, not requests: a batch
// of 5 consumes 5, and the orders of a batch beyond what is left in the second fail one by one
// (https://bybit-exchange.github.io/docs/v5/rate-limit, "Instructions for batch endpoints").
import type { Clock } from '../runtime/clock.ts';

export interface RateLimitOptions {
  /** false: never refuse (headers still sent, with the configured limits). Default true. */
  enabled?: boolean;
  /** Multiply every limit (e.g. 100 for benchmarks). Default 1. */
  multiplier?: number;
  /** Per-second limits by "path" or "path:category", e.g. {"/v5/order/create:linear": 10}. */
  limits?: Record<string, number>;
  /** Limit of endpoints without a specific one. Default 50 (private) / 120 (public, per IP). */
  defaultPrivate?: number;
  defaultPublic?: number;
}

export const DEFAULT_LIMITS: Readonly<Record<string, number>> = Object.freeze({
  '/v5/order/create:spot': 20,
  '/v5/order/create:linear': 10,
  '/v5/order/amend:spot': 20,
  '/v5/order/amend:linear': 10,
  '/v5/order/cancel:spot': 20,
  '/v5/order/cancel:linear': 10,
  '/v5/order/cancel-all:spot': 20,
  '/v5/order/cancel-all:linear': 10,
  // Batch endpoints, in orders per second (the page's table: 10/s linear, 20/s spot).
  '/v5/order/create-batch:spot': 20,
  '/v5/order/create-batch:linear': 10,
  '/v5/order/amend-batch:spot': 20,
  '/v5/order/amend-batch:linear': 10,
  '/v5/order/cancel-batch:spot': 20,
  '/v5/order/cancel-batch:linear': 10,
  '/v5/position/set-leverage:linear': 10,
  '/v5/position/trading-stop:linear': 10,
  '/v5/position/switch-mode:linear': 10,
  '/v5/account/transaction-log': 25,
  '/v5/account/set-margin-mode': 5,
  '/v5/account/fee-rate': 10,
});

export interface LimitDecision {
  allowed: boolean;
  /** How many of the request's `cost` units fit in the window (cost when allowed, for single requests 1). */
  admitted: number;
  limit: number;
  remaining: number;
  resetAt: number;
}

export class RateLimiter {
  private readonly windows = new Map<string, number[]>();
  private readonly limits: Record<string, number>;

  constructor(private readonly opts: RateLimitOptions, private readonly clock: Clock) {
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
  }

  limitFor(path: string, category: string | undefined, isPrivate: boolean): number {
    const specific = (category ? this.limits[`${path}:${category}`] : undefined) ?? this.limits[path];
    const base = specific ?? (isPrivate ? this.opts.defaultPrivate ?? 50 : this.opts.defaultPublic ?? 120);
    return Math.max(1, Math.floor(base * (this.opts.multiplier ?? 1)));
  }

  /**
   * Count a request of `who` (uid or ip) and decide. Refused requests are not counted. `cost` is
   * the number of orders of a batch request: as many as fit are admitted (and counted); the
   * request is refused only when none fits.
   */
  check(who: string, path: string, category: string | undefined, isPrivate: boolean, cost = 1): LimitDecision {
    const limit = this.limitFor(path, category, isPrivate);
    const key = `${who}|${path}|${category ?? ''}`;
    const now = this.clock.now();
    const w = (this.windows.get(key) ?? []).filter((t) => t > now - 1000);
    this.windows.set(key, w);
    const admitted = this.opts.enabled === false ? cost : Math.max(0, Math.min(cost, limit - w.length));
    if (admitted === 0) {
      return { allowed: false, admitted: 0, limit, remaining: 0, resetAt: w[0]! + 1000 };
    }
    for (let k = 0; k < admitted; k++) w.push(now);
    return { allowed: true, admitted, limit, remaining: Math.max(0, limit - w.length), resetAt: now };
  }
}
