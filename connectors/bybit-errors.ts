// The one place where Bybit's answers become the project's error classes (house style 2).
//
// Every REST call of connectors/bybit-rest.ts ends here when it is not a plain success:
//   - an answer with retCode != 0 (Bybit answers most refusals with HTTP 200)  → fromRetCode
//   - anything thrown by bybit-api / axios (HTTP status, timeout, socket error) → fromThrown
//
// Classes (runtime/errors.ts; the Bybit ones are placement's port, pipelines/exchange-port.ts):
//   retriable  10006 rate limit (retryAfterMs from X-Bapi-Limit-Reset-Timestamp), 10016 / 10000 /
//              10019 server errors, HTTP 5xx, HTTP 403/429 (IP rate limit), timeouts, ECONNRESET and
//              the other socket errors, 10002 timestamp outside recv_window (clock drift; fatal
//              when it keeps happening: see `escalate`).
//   rejected   a definite refusal of this request: 110007 / 170131 insufficient balance, 170136 /
//              170140 / 110094 minimums, 10001 parameters, 110001 / 170213 order does not exist,
//              any other non-zero retCode. Two refusals are outcomes rather than failures:
//              110072 duplicate orderLinkId (AlreadyPlacedError: the order exists) and an amend
//              that changes nothing (AlreadyAppliedError: the order already has those values; so
//              is 34040, a trading-stop whose prices the position already holds).
//   fatal      10003 bad API key, 10004 bad signature, 10005 permission denied, 10010 IP not
//              whitelisted, 10017 route not found, HTTP 401 and other 4xx (wrong URL or credentials: stop loudly).
//
// `uncertain` on a retriable error says whether the request may have been executed (the answer
// was lost: timeout, reset, 5xx, server error). A create is never sent again for the same
// orderLinkId before a query settles that (pipelines/place.ts).
import type { PipelineError } from '../runtime/errors.ts';
import { AlreadyAppliedError, AlreadyPlacedError, BybitFatalError, BybitRejectedError, BybitRetriableError, isBybitError, type BybitError, type BybitOp } from '../pipelines/exchange-port.ts';

export const RET = {
  OK: 0,
  SERVER_ERROR: 10000,
  PARAMS: 10001,
  TIMESTAMP: 10002,
  API_KEY: 10003,
  SIGN: 10004,
  PERMISSION: 10005,
  RATE_LIMIT: 10006,
  IP_NOT_ALLOWED: 10010,
  ROUTE_NOT_FOUND: 10017,
  SERVICE_ERROR: 10016,
  SERVICE_UPGRADING: 10019,
  ORDER_NOT_EXIST: 110001,
  PRICE_RANGE: 110003,
  INSUFFICIENT_BALANCE: 110007,
  ORDER_FINISHED: 110008,
  REDUCE_ONLY: 110017,
  QTY_LE_FILLED: 110063,
  DUPLICATE_LINK_ID: 110072,
  MIN_NOTIONAL: 110094,
  SPOT_BALANCE: 170131,
  SPOT_PRICE_DECIMALS: 170134,
  SPOT_QTY_TOO_LARGE: 170135,
  SPOT_QTY_TOO_LOW: 170136,
  SPOT_QTY_DECIMALS: 170137,
  SPOT_VALUE_TOO_LOW: 170140,
  SPOT_MARKET_AMOUNT_DECIMALS: 170148,
  SPOT_PRICE_HIGH: 170193,
  SPOT_PRICE_LOW: 170194,
  SPOT_ORDER_NOT_EXIST: 170213,
  TPSL_NOT_MODIFIED: 34040,
} as const;

/** retCode → machine-readable reason code of a rejected submission. */
export const REJECT_REASONS: Readonly<Record<number, string>> = Object.freeze({
  [RET.PARAMS]: 'params_invalid',
  [RET.ORDER_NOT_EXIST]: 'order_not_exists',
  [RET.SPOT_ORDER_NOT_EXIST]: 'order_not_exists',
  [RET.PRICE_RANGE]: 'price_out_of_range',
  [RET.INSUFFICIENT_BALANCE]: 'insufficient_balance',
  [RET.SPOT_BALANCE]: 'insufficient_balance',
  [RET.ORDER_FINISHED]: 'order_finished',
  [RET.REDUCE_ONLY]: 'reduce_only_violated',
  [RET.QTY_LE_FILLED]: 'qty_le_filled',
  [RET.MIN_NOTIONAL]: 'below_min_notional',
  [RET.SPOT_QTY_TOO_LOW]: 'below_min_qty',
  [RET.SPOT_VALUE_TOO_LOW]: 'below_min_amount',
  [RET.SPOT_QTY_TOO_LARGE]: 'qty_too_large',
  [RET.SPOT_PRICE_DECIMALS]: 'precision_invalid',
  [RET.SPOT_QTY_DECIMALS]: 'precision_invalid',
  [RET.SPOT_MARKET_AMOUNT_DECIMALS]: 'precision_invalid',
  [RET.SPOT_PRICE_HIGH]: 'price_out_of_band',
  [RET.SPOT_PRICE_LOW]: 'price_out_of_band',
});

const FATAL_CODES: Readonly<Record<number, string>> = Object.freeze({
  [RET.API_KEY]: 'bad_api_key',
  [RET.SIGN]: 'bad_signature',
  [RET.PERMISSION]: 'permission_denied',
  [RET.IP_NOT_ALLOWED]: 'ip_not_allowed',
  [RET.ROUTE_NOT_FOUND]: 'route_not_found',
});
const SERVER_CODES: ReadonlySet<number> = new Set([RET.SERVER_ERROR, RET.SERVICE_ERROR, RET.SERVICE_UPGRADING]);
const SOCKET_CODES = /^(ECONNRESET|ECONNABORTED|ETIMEDOUT|ESOCKETTIMEDOUT|EPIPE|EAI_AGAIN|ENOTFOUND|ECONNREFUSED|ENETUNREACH|EHOSTUNREACH|ERR_SOCKET_CONNECTION_TIMEOUT|UND_ERR_SOCKET)$/;
/** Socket errors that happen before a request leaves the machine: it cannot have executed. */
const NOT_SENT_CODES = /^(ECONNREFUSED|EAI_AGAIN|ENOTFOUND|ENETUNREACH|EHOSTUNREACH)$/;
/** Longest wait a rate-limit header may impose (guards against a skewed exchange clock). */
export const MAX_RATE_LIMIT_WAIT_MS = 5_000;


/** ms to wait from a reset timestamp (epoch ms, Bybit's X-Bapi-Limit-Reset-Timestamp). */
export function waitUntil(resetAtMs: number | undefined, now: number): number | undefined {
  if (resetAtMs === undefined || !Number.isFinite(resetAtMs)) return undefined;
  return Math.min(MAX_RATE_LIMIT_WAIT_MS, Math.max(0, Math.ceil(resetAtMs - now)));
}

/**
 * An answer with a non-zero retCode. `resetAtMs` is the X-Bapi-Limit-Reset-Timestamp of the answer
 * (bybit-api exposes it as `rateLimitApi.resetAtTimestamp` with `parseAPIRateLimits`).
 */
export function fromRetCode(retCode: number, retMsg: string, op: BybitOp, opts: { resetAtMs?: number; now?: number } = {}): BybitError {
  const msg = String(retMsg ?? '');
  if (retCode === RET.RATE_LIMIT) {
    return new BybitRetriableError('rate_limited', retCode, msg, 200, false, waitUntil(opts.resetAtMs, opts.now ?? Date.now()) ?? 1000);
  }
  if (SERVER_CODES.has(retCode)) return new BybitRetriableError('server_error', retCode, msg, 200, op !== 'query');
  if (retCode === RET.TIMESTAMP) return new BybitRetriableError('timestamp_out_of_window', retCode, msg, 200, false);
  const fatal = FATAL_CODES[retCode];
  if (fatal) return new BybitFatalError(fatal, retCode, msg);
  if (retCode === RET.DUPLICATE_LINK_ID && op === 'create') return new AlreadyPlacedError(retCode, msg);
  if (retCode === RET.PARAMS && op === 'amend' && /remains unchanged|not modified/i.test(msg)) return new AlreadyAppliedError(retCode, msg);
  if (retCode === RET.TPSL_NOT_MODIFIED) return new AlreadyAppliedError(retCode, msg);
  return new BybitRejectedError(REJECT_REASONS[retCode] ?? 'exchange_rejected', retCode, msg);
}

interface ThrownShape {
  code?: unknown;
  message?: unknown;
  body?: unknown;
  response?: { status?: number; data?: unknown };
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v);
}

/**
 * Anything bybit-api threw. Its shapes: `{code: httpStatus, message: statusText, body, headers,
 * requestOptions}` for an HTTP error status (requestOptions holds the secret: never keep or log
 * it), the axios error itself for transport failures (code ECONNRESET / ECONNABORTED / ...), or a
 * bare message string.
 */
export function fromThrown(err: unknown, op: BybitOp): PipelineError {
  if (isBybitError(err)) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as ThrownShape;
  const status = typeof e.code === 'number' ? e.code : typeof e.response?.status === 'number' ? e.response.status : null;
  const message = typeof err === 'string' ? err : str(e.message);
  if (status !== null) {
    const body = (e.body ?? e.response?.data) as { retCode?: unknown; retMsg?: unknown } | undefined;
    if (body && typeof body === 'object' && typeof body.retCode === 'number' && body.retCode !== 0 && status < 500) return fromRetCode(body.retCode, str(body.retMsg), op);
    const text = `HTTP ${status} ${message}`.trim();
    if (status >= 500) return new BybitRetriableError('http_5xx', -1, text, status, op !== 'query');
    if (status === 403 || status === 429) return new BybitRetriableError('ip_rate_limited', -1, text, status, false, 1000);
    if (status === 401) return new BybitFatalError('unauthorized', -1, text, status);
    return new BybitFatalError('http_error', -1, text, status);
  }
  const sockCode = str(e.code);
  if (SOCKET_CODES.test(sockCode)) {
    const timeout = sockCode === 'ECONNABORTED' || sockCode === 'ETIMEDOUT' || sockCode === 'ESOCKETTIMEDOUT' || /timeout/i.test(message);
    const notSent = NOT_SENT_CODES.test(sockCode);
    return new BybitRetriableError(timeout ? 'timeout' : 'network_error', -1, `${sockCode} ${message}`.trim(), null, op !== 'query' && !notSent, undefined, err);
  }
  if (/timeout|socket hang up|network error|ECONNRESET/i.test(message)) {
    return new BybitRetriableError(/timeout/i.test(message) ? 'timeout' : 'network_error', -1, message, null, op !== 'query', undefined, err);
  }
  // Anything else (a bug in request building, an unexpected shape) is not worth retrying blindly.
  return new BybitFatalError('unexpected_error', -1, message || 'unexpected error from bybit-api', null);
}
