// One error hierarchy (house style 2). Whether to retry, dead-letter or stop is decided from the
// class alone; exchange retCodes and HTTP statuses are mapped onto it in connectors/bybit-errors.ts.

export type ErrorKind = 'retriable' | 'rejected' | 'fatal';

export abstract class PipelineError extends Error {
  abstract readonly kind: ErrorKind;
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
  get retriable(): boolean {
    return this.kind === 'retriable';
  }
}

/** Transient: network, broker unavailable, 5xx, rate limited. Retry with backoff. */
export class RetriableError extends PipelineError {
  readonly kind = 'retriable' as const;
  constructor(code: string, message: string, readonly retryAfterMs?: number, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Permanent for this input: bad data, insufficient balance. Route to dead letter / rejection. */
export class RejectedError extends PipelineError {
  readonly kind = 'rejected' as const;
}

/** Broken invariant or bad credentials: stop the process loudly. */
export class FatalError extends PipelineError {
  readonly kind = 'fatal' as const;
}

/** Giving up after retries keeps the attempts and the last cause. */
export class RetriesExhaustedError extends FatalError {
  constructor(readonly attempts: number, cause: unknown) {
    super('retries_exhausted', `gave up after ${attempts} attempts: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

/** Transport failures, and PostgreSQL going away (admin/crash shutdown, starting up, connection lost). */
const TRANSIENT_CODES = /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EAI_AGAIN|ENOTFOUND|57P01|57P02|57P03|08006|08001|08003)$/;
/** Names (or class names: slonik leaves `name` as "Error") of wrappers of a lost or refused connection. */
const TRANSIENT_NAMES = /^(Kafka(JS)?(Connection|Request|NumberOfRetriesExceeded|Broker)|BackendTerminatedError|BackendTerminatedUnexpectedlyError|ConnectionError)/;

/**
 * Errors not of our hierarchy are treated as retriable when they look like transport failures,
 * looking through wrappers (`cause`): a PostgreSQL restart reaches a stage as slonik's
 * BackendTerminatedError around the driver's 57P01 (the chaos run found stages stopping on it).
 */
export function classify(err: unknown): ErrorKind {
  if (err instanceof PipelineError) return err.kind;
  for (let e = err as { retriable?: boolean; code?: unknown; name?: string; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (e.retriable === true) return 'retriable';
    if (typeof e.code === 'string' && TRANSIENT_CODES.test(e.code)) return 'retriable';
    if ((e.name && TRANSIENT_NAMES.test(e.name)) || TRANSIENT_NAMES.test((e as object).constructor?.name ?? '')) return 'retriable';
  }
  return 'fatal';
}
