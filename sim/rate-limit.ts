// Per-UID, per-endpoint (and per-category) rolling one-second rate limits, as Bybit documents them
// (https://bybit-exchange.github.io/docs/v5/rate-limit): order create/amend/cancel/cancel-all
// 20/s for spot and 10/s for linear by default. Endpoints Bybit leaves unlimited get a generous
// limit here so the X-Bapi-Limit-* headers are present on every answer.
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
  '/v5/position/set-leverage:linear': 10,
  '/v5/position/trading-stop:linear': 10,
  '/v5/position/switch-mode:linear': 10,
  '/v5/account/transaction-log': 25,
  '/v5/account/set-margin-mode': 5,
  '/v5/account/fee-rate': 10,
});

export interface LimitDecision {
  allowed: boolean;
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

  /** Count a request of `who` (uid or ip) and decide. Refused requests are not counted. */
  check(who: string, path: string, category: string | undefined, isPrivate: boolean): LimitDecision {
    const limit = this.limitFor(path, category, isPrivate);
    const key = `${who}|${path}|${category ?? ''}`;
    const now = this.clock.now();
    const w = (this.windows.get(key) ?? []).filter((t) => t > now - 1000);
    this.windows.set(key, w);
    if (this.opts.enabled !== false && w.length >= limit) {
      return { allowed: false, limit, remaining: 0, resetAt: w[0]! + 1000 };
    }
    w.push(now);
    return { allowed: true, limit, remaining: Math.max(0, limit - w.length), resetAt: now };
  }
}
