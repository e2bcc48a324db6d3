// The one retry helper (house style 3): exponential backoff with full jitter, honours retryAfterMs,
// gives up with RetriesExhaustedError carrying the attempt count and the cause.
import { setTimeout as sleep } from 'node:timers/promises';
import { classify, RetriableError, RetriesExhaustedError } from './errors.ts';

export interface RetryOptions {
  retries?: number; // attempts after the first; Infinity to keep going (until signal aborts)
  minMs?: number;
  maxMs?: number;
  signal?: AbortSignal;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  isRetriable?: (err: unknown) => boolean;
}

export function backoffMs(attempt: number, minMs: number, maxMs: number, rnd: () => number = Math.random): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.max(minMs, Math.floor(rnd() * cap));
}

export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const { retries = 5, minMs = 100, maxMs = 10_000, signal, onRetry } = opts;
  const isRetriable = opts.isRetriable ?? ((e: unknown) => classify(e) === 'retriable');
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (!isRetriable(err)) throw err;
      if (attempt >= retries || signal?.aborted) throw new RetriesExhaustedError(attempt + 1, err);
      const hinted = err instanceof RetriableError && err.retryAfterMs !== undefined ? err.retryAfterMs : undefined;
      const delay = hinted ?? backoffMs(attempt, minMs, maxMs);
      onRetry?.(err, attempt + 1, delay);
      try {
        await sleep(delay, undefined, { signal });
      } catch {
        throw new RetriesExhaustedError(attempt + 1, err);
      }
    }
  }
}

/**
 * A peer (broker, registry) unavailable at start: keep trying with backoff and say so in the log,
 * until it answers, the deadline passes or `signal` aborts (the unit is stopping).
 */
export async function connectWithBackoff(
  connect: () => Promise<void>,
  log: { warn(obj: object, msg: string): void },
  maxMs: number,
  opts: { deadlineMs?: number; signal?: AbortSignal; what?: string } = {},
): Promise<void> {
  const until = Date.now() + (opts.deadlineMs ?? 10 * 60_000);
  for (let attempt = 0; ; attempt++) {
    try {
      await connect();
      return;
    } catch (err) {
      if (Date.now() > until || opts.signal?.aborted) throw err;
      const delay = backoffMs(attempt, 200, maxMs);
      log.warn({ err: (err as Error).message, attempt: attempt + 1, delayMs: delay }, `${opts.what ?? 'Kafka'} unavailable; waiting`);
      await sleep(delay, undefined, { signal: opts.signal });
    }
  }
}
