// The exchange port of the placement stage: the calls it makes and the errors they may end in. The
// Bybit REST adapter (connectors/bybit-rest.ts, errors mapped in connectors/bybit-errors.ts)
// implements it; placement depends on this file only, so the stage can be read, tested and
// replaced without the adapter.
import { FatalError, RejectedError, RetriableError, RetriesExhaustedError, type PipelineError } from '../runtime/errors.ts';
import type { Category } from '../schemas/types.ts';

export interface CreateOrderParams {
  category: Category;
  symbol: string;
  side: 'Buy' | 'Sell';
  orderType: 'Market' | 'Limit';
  qty: string;
  price?: string;
  marketUnit?: 'baseCoin' | 'quoteCoin';
  timeInForce?: 'GTC' | 'IOC' | 'FOK' | 'PostOnly';
  reduceOnly?: boolean;
  orderLinkId: string;
}

export interface OrderRef {
  category: Category;
  symbol: string;
  orderId?: string;
  orderLinkId?: string;
}

export interface AmendParams extends OrderRef {
  qty?: string;
  price?: string;
}

/** A successful answer: what the exchange said and when. */
export interface Ack<T> {
  result: T;
  retCode: number;
  retMsg: string;
  /** epoch ms, by the injected clock, when the answer arrived */
  ackedAt: number;
}

export interface FoundOrder {
  orderId: string;
  orderLinkId: string;
  orderStatus: string;
  qty: string;
  price: string;
  createdTime: number;
  source: 'realtime' | 'history';
}

export type OrderAck = Ack<{ orderId: string; orderLinkId: string }>;

/**
 * One order's answer inside a batch request: its acknowledgement, or the error the single call
 * would have thrown for the same retCode (AlreadyPlacedError for 110072, a BybitRejectedError, a
 * BybitRetriableError for a per-order 10006 or server error).
 */
export type BatchItem = { ok: true; ack: OrderAck } | { ok: false; error: BybitError };

/**
 * Batch requests (Bybit's create-batch, amend-batch, cancel-batch): several orders of one
 * category in one request, answered order by order in request order. A request that fails as a
 * whole throws like a single call (a BybitRetriableError with `uncertain` when some or all of its
 * orders may have been executed).
 */
export interface BatchPlacement {
  /** Most orders one batch request of this category and operation may carry (exchange limit and rate budget). */
  limit(category: Category, op: 'create' | 'amend' | 'cancel'): number;
  createOrders(category: Category, ps: CreateOrderParams[]): Promise<BatchItem[]>;
  amendOrders(category: Category, ps: AmendParams[]): Promise<BatchItem[]>;
  cancelOrders(category: Category, ps: OrderRef[]): Promise<BatchItem[]>;
}

/** What placement asks of the exchange (the Bybit REST adapter, or a test double). */
export interface OrderPlacement {
  createOrder(p: CreateOrderParams): Promise<OrderAck>;
  amendOrder(p: AmendParams): Promise<OrderAck>;
  cancelOrder(p: OrderRef): Promise<OrderAck>;
  /** The order with this orderLinkId (or orderId): open or recent in realtime, else history; null if none. */
  findOrder(ref: OrderRef): Promise<FoundOrder | null>;
  /** Batch requests, where the adapter has them (a double without them gets single requests only). */
  batch?: BatchPlacement;
}

/** What the caller was doing; some answers mean different things for different operations. */
export type BybitOp = 'create' | 'amend' | 'cancel' | 'query';

/** Fields every mapped error carries, for submissions and logs (never the request or secrets). */
export interface BybitErrorInfo {
  retCode: number; // -1 when no Bybit answer arrived
  retMsg: string;
  httpStatus: number | null;
  /** Only for retriable errors: the request may have been executed although no answer said so. */
  uncertain: boolean;
}

export class BybitRetriableError extends RetriableError implements BybitErrorInfo {
  constructor(code: string, readonly retCode: number, readonly retMsg: string, readonly httpStatus: number | null, readonly uncertain: boolean, retryAfterMs?: number, cause?: unknown) {
    super(code, `bybit ${code}: ${retCode} ${retMsg}`, retryAfterMs, { cause });
  }
}

export class BybitRejectedError extends RejectedError implements BybitErrorInfo {
  readonly uncertain = false;
  constructor(code: string, readonly retCode: number, readonly retMsg: string, readonly httpStatus: number | null = 200) {
    super(code, `bybit rejected (${code}): ${retCode} ${retMsg}`);
  }
}

/** 110072: an order with this orderLinkId exists already. For placement: "already placed". */
export class AlreadyPlacedError extends BybitRejectedError {
  constructor(retCode: number, retMsg: string) {
    super('already_placed', retCode, retMsg);
  }
}

/** Amend refused because the order already has exactly these values: the amend is in effect. */
export class AlreadyAppliedError extends BybitRejectedError {
  constructor(retCode: number, retMsg: string) {
    super('already_applied', retCode, retMsg);
  }
}

export class BybitFatalError extends FatalError implements BybitErrorInfo {
  readonly uncertain = false;
  constructor(code: string, readonly retCode: number, readonly retMsg: string, readonly httpStatus: number | null = 200) {
    super(code, `bybit fatal (${code}): ${retCode} ${retMsg}`);
  }
}

export type BybitError = BybitRetriableError | BybitRejectedError | BybitFatalError;

export function isBybitError(e: unknown): e is BybitError {
  return e instanceof BybitRetriableError || e instanceof BybitRejectedError || e instanceof BybitFatalError;
}

/**
 * Retries of one call ran out. Clock drift that keeps failing every request (10002) cannot heal by
 * waiting: fatal. Anything else stays retriable, so the stage runner retries the whole chunk
 * later without committing it.
 */
export function escalate(err: RetriesExhaustedError): PipelineError {
  const cause = err.cause;
  if (cause instanceof BybitRetriableError && cause.code === 'timestamp_out_of_window') {
    return new BybitFatalError('timestamp_repeatedly_rejected', cause.retCode, `${cause.retMsg} (after ${err.attempts} attempts: check the clock and BYBIT_RECV_WINDOW)`, cause.httpStatus);
  }
  const retryAfter = cause instanceof RetriableError ? cause.retryAfterMs : undefined;
  return new RetriableError('bybit_retries_exhausted', err.message, retryAfter, { cause });
}
