// The trading-signal JSON of the order-manager seed, as a zod schema: what arrives on RabbitMQ
// `model-service.trading_signals`. The validation stage parses every raw signal with it, and the
// model service can check what it emits with the same schema (`parseSignalJson`), so both sides of
// the contract agree on one definition.
//
// Strict where a wrong value could become a wrong order (side, asset, amount, confidence, time),
// lenient where the data is informational (unknown extra fields are allowed and ignored, non-numeric
// technical indicators are dropped). Numbers must be JSON numbers: "500" or "Infinity" as strings are
// refused rather than coerced, and JSON's 1e400 (parsed as Infinity) is refused as not finite.
import { z } from 'zod';
import type { MarketDataSnapshot, SignalType } from '../schemas/types.ts';
import { UUID_RE } from './record-guards.ts';

/** A Bybit symbol: upper-case letters and digits (BTCUSDT, 1000PEPEUSDT). */
export const ASSET_RE = /^[A-Z0-9]{2,32}$/;
/**
 * ISO 8601 date-time with an explicit offset (Z or ±hh:mm / ±hhmm / ±hh). A local time without an
 * offset is ambiguous and refused. Seconds and fractions are optional.
 */
const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|z|[+-]\d{2}(?::?\d{2})?)$/;
/**
 * Sanity bound on the quote amount, far above any real order: it keeps absurd floats (1e300) out of
 * the numeric columns. Real limits (max notional per order, per asset, ...) belong to the risk stage.
 */
export const MAX_SIGNAL_AMOUNT = 1e12;
const MAX_TEXT = 256;

/** Parse an ISO 8601 timestamp to epoch ms; null when it is not a real instant. */
export function parseIsoTimestamp(s: string): number | null {
  const m = ISO_RE.exec(s);
  if (!m) return null;
  const [, y, mo, d, h, mi, sec = '0', frac = '', off] = m;
  const year = Number(y), month = Number(mo), day = Number(d), hour = Number(h), minute = Number(mi), second = Number(sec);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return null;
  // Day must exist in that month (Date.UTC would roll 2025-02-30 over to March 2).
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day > daysInMonth) return null;
  const ms = Number((frac + '000').slice(0, 3));
  let t = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  if (off !== 'Z' && off !== 'z') {
    const om = /^([+-])(\d{2}):?(\d{2})?$/.exec(off!);
    if (!om) return null;
    const oh = Number(om[2]), omin = Number(om[3] ?? '0');
    if (oh > 23 || omin > 59) return null;
    t -= (om[1] === '-' ? -1 : 1) * (oh * 60 + omin) * 60_000;
  }
  return Number.isFinite(t) ? t : null;
}

/** True when `s` holds a C0 control character or DEL (PostgreSQL text refuses NUL; none belong in ids). */
export function hasControlChars(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** Strings that reach text columns: non-empty, bounded, no control characters. */
const text = (max = MAX_TEXT) =>
  z.string().min(1, 'must not be empty').max(max, `must be at most ${max} characters`).refine((s) => !hasControlChars(s), 'must not contain control characters');

const finite = (what: string) => z.number({ invalid_type_error: `${what} must be a JSON number` }).finite(`${what} must be finite`);
const nonNegative = (what: string) => finite(what).nonnegative(`${what} must be >= 0`);

/** Flatten nested indicator objects to dotted keys; keep finite numbers only (informational data). */
export function flattenIndicators(v: unknown, prefix = '', out: Record<string, number> = {}): Record<string, number> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return out;
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (typeof x === 'number' && Number.isFinite(x)) out[key] = x;
    else if (x !== null && typeof x === 'object' && !Array.isArray(x)) flattenIndicators(x, key, out);
  }
  return out;
}

export const orderbookDepthSchema = z.object({
  bid_depth: nonNegative('bid_depth'),
  ask_depth: nonNegative('ask_depth'),
});

export const marketDataSnapshotSchema = z
  .object({
    price: finite('price').positive('price must be > 0'),
    spread: nonNegative('spread'),
    volume_24h: nonNegative('volume_24h'),
    volatility: nonNegative('volatility'),
    orderbook_depth: orderbookDepthSchema.nullable().optional(),
    technical_indicators: z.record(z.unknown()).nullable().optional(),
  })
  .passthrough();

/**
 * The signal JSON as sent. `signal` is accepted as an alias of `signal_type` (the model-service
 * seed's spelling); when both are present they must agree. `model_version`, `metadata` and
 * `trace_id` may be absent (read as null).
 */
export const signalJsonSchema = z
  .object({
    signal_id: z.string().regex(UUID_RE, 'must be a UUID'),
    signal_type: z.enum(['buy', 'sell']).optional(),
    signal: z.enum(['buy', 'sell']).optional(),
    asset: z.string().regex(ASSET_RE, 'must be an upper-case Bybit symbol such as ETHUSDT'),
    amount: finite('amount').positive('amount must be > 0').max(MAX_SIGNAL_AMOUNT, `amount must be <= ${MAX_SIGNAL_AMOUNT}`),
    confidence: finite('confidence').min(0, 'confidence must be in [0, 1]').max(1, 'confidence must be in [0, 1]'),
    timestamp: z.string().refine((s) => parseIsoTimestamp(s) !== null, 'must be an ISO 8601 date-time with an offset, e.g. 2025-11-25T21:35:00Z'),
    strategy_id: text(),
    model_version: text().nullable().optional(),
    is_warmup: z.boolean(),
    market_data_snapshot: marketDataSnapshotSchema,
    metadata: z.record(z.unknown()).nullable().optional(),
    trace_id: text().nullable().optional(),
  })
  .passthrough()
  .superRefine((v, ctx) => {
    if (v.signal_type === undefined && v.signal === undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.invalid_type, expected: 'string', received: 'undefined', path: ['signal_type'], message: 'Required' });
    } else if (v.signal_type !== undefined && v.signal !== undefined && v.signal_type !== v.signal) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['signal'], message: `conflicts with signal_type (${v.signal_type} vs ${v.signal})` });
    }
  });

export type SignalJson = z.infer<typeof signalJsonSchema>;

/** A parsed, normalised signal (the fields of the Avro Signal that come from the JSON). */
export interface NormalisedSignal {
  signal_id: string;
  signal_type: SignalType;
  asset: string;
  amount: number;
  confidence: number;
  timestamp: number;
  strategy_id: string;
  model_version: string | null;
  is_warmup: boolean;
  market_data_snapshot: MarketDataSnapshot;
  metadata: string | null;
  trace_id: string | null;
}

export type FormatIssueCode = 'missing_field' | 'invalid_amount' | 'invalid_confidence' | 'invalid_timestamp' | 'invalid_signal_id' | 'invalid_field';

export type ParseResult = { ok: true; signal: NormalisedSignal } | { ok: false; code: FormatIssueCode; detail: string; paths: string[] };

/** Which reason code a set of issues gets: the first matching rule, in this order. */
function codeFor(issues: z.ZodIssue[]): FormatIssueCode {
  const isMissing = (i: z.ZodIssue) => i.code === 'invalid_type' && i.received === 'undefined';
  const top = (i: z.ZodIssue) => String(i.path[0] ?? '');
  if (issues.some(isMissing)) return 'missing_field';
  if (issues.some((i) => top(i) === 'signal_id')) return 'invalid_signal_id';
  if (issues.some((i) => top(i) === 'amount')) return 'invalid_amount';
  if (issues.some((i) => top(i) === 'confidence')) return 'invalid_confidence';
  if (issues.some((i) => top(i) === 'timestamp')) return 'invalid_timestamp';
  return 'invalid_field';
}

/**
 * Validate an already JSON-parsed value against the signal format and normalise it: side from
 * `signal_type` or `signal`, signal_id lower-cased, timestamp to epoch ms, indicators flattened,
 * metadata to JSON text. Every problem is listed in `detail` with its field path.
 */
export function parseSignalJson(value: unknown): ParseResult {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, code: 'invalid_field', detail: 'signal must be a JSON object', paths: [''] };
  }
  const r = signalJsonSchema.safeParse(value);
  if (!r.success) {
    const issues = r.error.issues;
    const paths = [...new Set(issues.map((i) => i.path.join('.')))];
    const detail = issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    return { ok: false, code: codeFor(issues), detail, paths };
  }
  const v = r.data;
  const snap = v.market_data_snapshot;
  const indicators = snap.technical_indicators == null ? null : flattenIndicators(snap.technical_indicators);
  return {
    ok: true,
    signal: {
      signal_id: v.signal_id.toLowerCase(),
      signal_type: (v.signal_type ?? v.signal)!,
      asset: v.asset,
      amount: v.amount,
      confidence: v.confidence,
      timestamp: parseIsoTimestamp(v.timestamp)!,
      strategy_id: v.strategy_id,
      model_version: v.model_version ?? null,
      is_warmup: v.is_warmup,
      market_data_snapshot: {
        price: snap.price,
        spread: snap.spread,
        volume_24h: snap.volume_24h,
        volatility: snap.volatility,
        orderbook_depth: snap.orderbook_depth ? { bid_depth: snap.orderbook_depth.bid_depth, ask_depth: snap.orderbook_depth.ask_depth } : null,
        technical_indicators: indicators,
      },
      metadata: v.metadata == null ? null : JSON.stringify(v.metadata),
      trace_id: v.trace_id ?? null,
    },
  };
}

/** The signal_id of a parsed JSON value when it is a UUID (lower-cased), else null. */
export function signalIdOf(value: unknown): string | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  const id = (value as Record<string, unknown>).signal_id;
  return typeof id === 'string' && UUID_RE.test(id) ? id.toLowerCase() : null;
}
