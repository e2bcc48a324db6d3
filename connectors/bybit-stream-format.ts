// Bybit v5 stream messages → our Avro record values, shared by the ws-gateway bridge (RabbitMQ) and
// the direct websocket connector (bybit-api). Pure: no I/O, time comes in through `observedAt`.
//
// Accepted message shape (Bybit v5): `{topic, id, creationTime, data: [...]}` for the private topics
// and `{topic, type, ts, data: {...}}` for public tickers (data may be an array or one object).
// ws-gateway may wrap it in an envelope: an object whose one of ENVELOPE_KEYS holds the message
// (as an object or as JSON text), nested at most MAX_ENVELOPE_DEPTH levels; the envelope may carry
// `trace_id` / `traceId` and `category`.
//
// Topics (Bybit's private topics with their category variants, public tickers):
//   order, order.spot, order.linear, order.inverse, order.option   → exchange.orders     (ExchangeOrderUpdate, key symbol)
//   execution, execution.spot, execution.linear, …                 → exchange.executions (Execution, key symbol)
//   position, position.linear, position.inverse, position.option   → exchange.positions  (Position, key symbol)
//   wallet                                                         → exchange.wallet     (WalletBalance, key coin)
//   tickers.{SYMBOL}                                               → market.tickers      (Ticker, key symbol)
// Anything else (execution.fast, orderbook.*, publicTrade.*, greeks …) is `unknown_topic`.
//
// Wallet keying: the catalogue keys exchange.wallet by coin and compacts it, so one Bybit wallet item
// (one account, a list of coins) becomes ONE RECORD PER COIN, each with a one-element `coin` list and
// the account totals repeated, keyed by the coin: compaction keeps the latest balance of every coin
// (a record per account would let a snapshot lacking a coin erase it). Assumes one account type per
// API key (a unified account: UNIFIED), as the tracking stage's per-coin balances do.
//
// Strictness: a field the state machine depends on (ids, symbol, side, status, quantities, prices,
// fees, times) must be present and well-formed, or the item is `invalid_item`; nothing is guessed.
// Bybit's empty strings are kept where the record's field is a plain string (avgPrice, leavesQty,
// rejectReason before a fill) and become null where the field is optional.
import type { ExchangeOrderUpdate, Execution, Position, Ticker, WalletBalance, CoinBalance, DeadLetter, ExchangeSource, RecordKind } from '../schemas/types.ts';
import type { TopicName } from '../runtime/topics.ts';

export type StreamKind = 'order' | 'execution' | 'position' | 'wallet' | 'ticker';

/** Exchange topic and record kind of each stream. */
export const STREAM_OUTPUT: Readonly<Record<StreamKind, { topic: TopicName; record: RecordKind }>> = Object.freeze({
  order: { topic: 'exchange.orders', record: 'ExchangeOrderUpdate' },
  execution: { topic: 'exchange.executions', record: 'Execution' },
  position: { topic: 'exchange.positions', record: 'Position' },
  wallet: { topic: 'exchange.wallet', record: 'WalletBalance' },
  ticker: { topic: 'market.tickers', record: 'Ticker' },
});

/** Envelope keys tried, in this order, when the message itself has no `topic`. */
export const ENVELOPE_KEYS = ['payload', 'message', 'msg', 'body', 'data', 'record', 'value'] as const;
export const MAX_ENVELOPE_DEPTH = 3;

/** Reason codes of refused messages (dead-letter `reason_code`). */
export type StreamRejectReason = 'malformed_json' | 'not_a_message' | 'unknown_topic' | 'invalid_item' | 'empty_data' | 'oversize';

export interface StreamMessage {
  topic: string;
  /** Bybit's message id (private topics). */
  id: string | null;
  /** Bybit's creationTime (private topics), epoch ms. */
  creationTime: number | null;
  /** Bybit's ts (public topics), epoch ms. */
  ts: number | null;
  /** snapshot | delta (public topics). */
  type: string | null;
  data: unknown;
  /** From the envelope or the message, when present. */
  traceId: string | null;
  category: string | null;
}

export type Unwrapped = { ok: true; message: StreamMessage; enveloped: boolean } | { ok: false; reason: StreamRejectReason; detail: string };

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

const textOf = (v: unknown, max = 256): string | null => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : null);

/** Parse bytes (JSON) and find the Bybit message inside any accepted envelope. */
export function unwrapBytes(bytes: Buffer): Unwrapped {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    return { ok: false, reason: 'malformed_json', detail: `not JSON: ${(err as Error).message}` };
  }
  return unwrap(v);
}

/** Find the Bybit message in a parsed value (the value itself, or inside an envelope). */
export function unwrap(value: unknown): Unwrapped {
  let v = value;
  let traceId: string | null = null;
  let category: string | null = null;
  for (let depth = 0; depth <= MAX_ENVELOPE_DEPTH; depth++) {
    if (typeof v === 'string' && depth > 0) {
      try {
        v = JSON.parse(v);
      } catch {
        return { ok: false, reason: 'malformed_json', detail: 'envelope holds text that is not JSON' };
      }
    }
    if (!isObj(v)) return { ok: false, reason: 'not_a_message', detail: depth === 0 ? 'not a JSON object' : `envelope level ${depth} is not an object` };
    traceId ??= textOf(v.trace_id) ?? textOf(v.traceId);
    category ??= textOf(v.category, 16);
    if (typeof v.topic === 'string' && 'data' in v) {
      return {
        ok: true,
        enveloped: depth > 0,
        message: {
          topic: v.topic,
          id: textOf(v.id) ?? (typeof v.id === 'number' ? String(v.id) : null),
          creationTime: timeOf(v.creationTime),
          ts: timeOf(v.ts),
          type: textOf(v.type, 16),
          data: v.data,
          traceId,
          category,
        },
      };
    }
    const o = v;
    const key = ENVELOPE_KEYS.find((k) => isObj(o[k]) || (typeof o[k] === 'string' && /^\s*\{/.test(o[k] as string)));
    if (!key) return { ok: false, reason: 'not_a_message', detail: `no topic+data and none of the envelope keys ${ENVELOPE_KEYS.join(', ')}` };
    v = o[key];
  }
  return { ok: false, reason: 'not_a_message', detail: `nested deeper than ${MAX_ENVELOPE_DEPTH} envelopes` };
}

const PRIVATE_RE = /^(order|execution|position)(\.(spot|linear|inverse|option))?$/;

/** The stream of a Bybit topic and the category it names, or null for topics we do not mirror. */
export function streamOf(topic: string): { kind: StreamKind; category: string | null; symbol: string | null } | null {
  const p = PRIVATE_RE.exec(topic);
  if (p) return { kind: p[1] as StreamKind, category: p[3] ?? null, symbol: null };
  if (topic === 'wallet') return { kind: 'wallet', category: null, symbol: null };
  const t = /^tickers\.([A-Z0-9]{2,32})$/.exec(topic);
  if (t) return { kind: 'ticker', category: null, symbol: t[1]! };
  return null;
}

// ---- field readers -------------------------------------------------------------------------------

class ItemError extends Error {}

/** Epoch ms from a number or a numeric string; null when absent or not a time. */
export function timeOf(v: unknown): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d{1,16}$/.test(v) ? Number(v) : NaN;
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

// Bounded on purpose (fuzzing found it): an unbounded exponent or digit run such as "1e100000000"
// passed and then cost the tracker minutes of BigInt arithmetic (Dec) and failed PostgreSQL's numeric
// (a fatal error, so a poison record). Bybit's decimals are plain and far shorter than these bounds.
const DEC_RE = /^-?\d{1,40}(\.\d{1,40})?(e-?\d{1,2})?$/i;

function decimal(o: Record<string, unknown>, k: string): string {
  const v = o[k];
  const s = typeof v === 'number' && Number.isFinite(v) ? String(v) : v;
  if (typeof s !== 'string' || !DEC_RE.test(s)) throw new ItemError(`${k}: expected a decimal, got ${JSON.stringify(v)}`);
  return s;
}

/** A decimal or Bybit's empty string (kept as ''). */
function decimalOrEmpty(o: Record<string, unknown>, k: string): string {
  const v = o[k];
  if (v === undefined || v === null || v === '') return '';
  return decimal(o, k);
}

function optDecimal(o: Record<string, unknown>, k: string): string | null {
  const v = o[k];
  if (v === undefined || v === null || v === '') return null;
  return decimal(o, k);
}

function str(o: Record<string, unknown>, k: string, fallback?: string): string {
  const v = o[k];
  if (typeof v === 'string' && v.length > 0) return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (fallback !== undefined && (v === undefined || v === null || v === '')) return fallback;
  throw new ItemError(`${k}: expected a non-empty string, got ${JSON.stringify(v)}`);
}

function optStr(o: Record<string, unknown>, k: string): string | null {
  const v = o[k];
  return typeof v === 'string' && v.length > 0 ? v : typeof v === 'number' && Number.isFinite(v) ? String(v) : null;
}

function optBool(o: Record<string, unknown>, k: string): boolean | null {
  const v = o[k];
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  return null;
}

function time(o: Record<string, unknown>, k: string, fallback: number | null = null): number {
  const t = timeOf(o[k]) ?? fallback;
  if (t === null) throw new ItemError(`${k}: expected epoch ms, got ${JSON.stringify(o[k])}`);
  return t;
}

const SYMBOL_RE = /^[A-Z0-9_-]{2,40}$/;
function symbol(o: Record<string, unknown>, fallback: string | null = null): string {
  const s = typeof o.symbol === 'string' && o.symbol !== '' ? o.symbol : fallback;
  if (s === null || !SYMBOL_RE.test(s)) throw new ItemError(`symbol: expected a Bybit symbol, got ${JSON.stringify(o.symbol)}`);
  return s;
}

function category(o: Record<string, unknown>, fallback: string | null): string {
  const c = optStr(o, 'category') ?? fallback;
  if (c === null || !/^(spot|linear|inverse|option)$/.test(c)) throw new ItemError(`category: expected spot|linear|inverse|option, got ${JSON.stringify(o.category ?? fallback)}`);
  return c;
}

// ---- records ---------------------------------------------------------------------------------------

export interface ParseContext {
  source: ExchangeSource;
  /** When our connector received the message, epoch ms (injected clock). */
  observedAt: number;
  /**
   * Category of public ticker messages when neither the message nor its envelope names one (the
   * direct connector knows it from the connection; the bridge from its configuration).
   */
  tickerCategory: string;
  /** Last full ticker per category:symbol, so Bybit's delta pushes can be completed. */
  tickers: TickerBook;
}

export interface ParsedRecord {
  kind: StreamKind;
  topic: TopicName;
  record: RecordKind;
  key: string;
  value: ExchangeOrderUpdate | Execution | Position | WalletBalance | Ticker;
}

export interface ItemProblem {
  index: number;
  detail: string;
}

export type ParseResult =
  | { ok: true; kind: StreamKind; records: ParsedRecord[]; problems: ItemProblem[]; skipped: number; items: number }
  | { ok: false; reason: StreamRejectReason; detail: string };

export function orderUpdate(o: Record<string, unknown>, m: StreamMessage, cat: string | null, ctx: ParseContext): ExchangeOrderUpdate {
  return {
    orderId: str(o, 'orderId'),
    orderLinkId: typeof o.orderLinkId === 'string' ? o.orderLinkId : '',
    symbol: symbol(o),
    category: category(o, cat),
    side: str(o, 'side'),
    orderType: str(o, 'orderType'),
    price: decimalOrEmpty(o, 'price') || '0',
    qty: decimal(o, 'qty'),
    marketUnit: optStr(o, 'marketUnit'),
    timeInForce: optStr(o, 'timeInForce'),
    orderStatus: str(o, 'orderStatus'),
    cumExecQty: decimal(o, 'cumExecQty'),
    cumExecValue: decimal(o, 'cumExecValue'),
    cumExecFee: decimal(o, 'cumExecFee'),
    avgPrice: decimalOrEmpty(o, 'avgPrice'),
    leavesQty: decimalOrEmpty(o, 'leavesQty'),
    rejectReason: typeof o.rejectReason === 'string' ? o.rejectReason : '',
    cancelType: optStr(o, 'cancelType'),
    reduceOnly: optBool(o, 'reduceOnly'),
    createdTime: time(o, 'createdTime'),
    updatedTime: time(o, 'updatedTime'),
    source: ctx.source,
    streamMessageId: m.id,
    creationTime: m.creationTime,
    observedAt: ctx.observedAt,
  };
}

export function execution(o: Record<string, unknown>, _m: StreamMessage, cat: string | null, ctx: ParseContext): Execution {
  return {
    execId: str(o, 'execId'),
    orderId: str(o, 'orderId'),
    orderLinkId: typeof o.orderLinkId === 'string' ? o.orderLinkId : '',
    symbol: symbol(o),
    category: category(o, cat),
    side: str(o, 'side'),
    orderType: optStr(o, 'orderType'),
    execType: optStr(o, 'execType'),
    execPrice: decimal(o, 'execPrice'),
    execQty: decimal(o, 'execQty'),
    execValue: optDecimal(o, 'execValue'),
    execFee: decimal(o, 'execFee'),
    feeCurrency: optStr(o, 'feeCurrency'),
    feeRate: optDecimal(o, 'feeRate'),
    isMaker: optBool(o, 'isMaker') ?? false,
    leavesQty: optDecimal(o, 'leavesQty'),
    execTime: time(o, 'execTime'),
    source: ctx.source,
    observedAt: ctx.observedAt,
    stopOrderType: optStr(o, 'stopOrderType'),
  };
}

export function position(o: Record<string, unknown>, m: StreamMessage, cat: string | null, ctx: ParseContext): Position {
  const idx = o.positionIdx === undefined ? 0 : Number(o.positionIdx);
  if (!Number.isInteger(idx)) throw new ItemError(`positionIdx: expected an integer, got ${JSON.stringify(o.positionIdx)}`);
  return {
    category: category(o, cat),
    symbol: symbol(o),
    side: typeof o.side === 'string' ? o.side : '',
    size: decimal(o, 'size'),
    positionIdx: idx,
    avgPrice: o.avgPrice !== undefined && o.avgPrice !== '' ? decimal(o, 'avgPrice') : decimalOrEmpty(o, 'entryPrice') || '0',
    positionValue: decimalOrEmpty(o, 'positionValue') || '0',
    markPrice: optDecimal(o, 'markPrice'),
    liqPrice: optDecimal(o, 'liqPrice'),
    leverage: optDecimal(o, 'leverage'),
    positionIM: optDecimal(o, 'positionIM'),
    unrealisedPnl: decimalOrEmpty(o, 'unrealisedPnl') || '0',
    cumRealisedPnl: decimalOrEmpty(o, 'cumRealisedPnl') || '0',
    positionStatus: optStr(o, 'positionStatus'),
    updatedTime: time(o, 'updatedTime', m.creationTime ?? ctx.observedAt),
    source: ctx.source,
    observedAt: ctx.observedAt,
  };
}

function coinBalance(c: unknown, i: number): CoinBalance {
  if (!isObj(c)) throw new ItemError(`coin[${i}]: not an object`);
  try {
    return {
      coin: str(c, 'coin'),
      equity: decimalOrEmpty(c, 'equity') || decimal(c, 'walletBalance'),
      walletBalance: decimal(c, 'walletBalance'),
      free: optDecimal(c, 'free'),
      locked: decimalOrEmpty(c, 'locked') || '0',
      availableToWithdraw: optDecimal(c, 'availableToWithdraw'),
      usdValue: optDecimal(c, 'usdValue'),
      unrealisedPnl: optDecimal(c, 'unrealisedPnl'),
      cumRealisedPnl: optDecimal(c, 'cumRealisedPnl'),
      totalOrderIM: optDecimal(c, 'totalOrderIM'),
      totalPositionIM: optDecimal(c, 'totalPositionIM'),
    };
  } catch (err) {
    throw new ItemError(`coin[${i}].${(err as Error).message}`);
  }
}

/** One wallet item (an account) → one record per coin (see the header: wallet keying). */
export function walletBalances(o: Record<string, unknown>, m: StreamMessage, ctx: ParseContext): WalletBalance[] {
  if (!Array.isArray(o.coin)) throw new ItemError('coin: expected an array');
  const base = {
    accountType: str(o, 'accountType'),
    totalEquity: optDecimal(o, 'totalEquity'),
    totalWalletBalance: optDecimal(o, 'totalWalletBalance'),
    totalAvailableBalance: optDecimal(o, 'totalAvailableBalance'),
    totalMarginBalance: optDecimal(o, 'totalMarginBalance'),
    updatedTime: m.creationTime ?? timeOf(o.updatedTime) ?? ctx.observedAt,
    source: ctx.source,
    observedAt: ctx.observedAt,
  };
  return o.coin.map((c, i) => ({ ...base, coin: [coinBalance(c, i)] }));
}

/**
 * Bybit's linear/inverse ticker stream sends a snapshot on subscribe and then deltas holding only
 * the changed fields; spot always sends snapshots. The book keeps the last full ticker per
 * category:symbol so a delta becomes a full record. A delta with nothing to complete is skipped
 * (counted, not dead-lettered: it is not a bad message, and the next snapshot repairs it).
 */
export class TickerBook {
  private readonly last = new Map<string, Record<string, unknown>>();
  apply(cat: string, sym: string, type: string | null, data: Record<string, unknown>): Record<string, unknown> | null {
    const key = `${cat}:${sym}`;
    if (type === 'delta') {
      const prev = this.last.get(key);
      if (!prev) return null;
      const merged = { ...prev };
      for (const [k, v] of Object.entries(data)) if (v !== undefined && v !== '') merged[k] = v;
      this.last.set(key, merged);
      return merged;
    }
    this.last.set(key, data);
    return data;
  }
}

export function ticker(o: Record<string, unknown>, m: StreamMessage, topicSymbol: string | null, ctx: ParseContext): Ticker | null {
  const cat = category({ category: m.category ?? undefined }, ctx.tickerCategory);
  const sym = symbol(o, topicSymbol);
  if (topicSymbol !== null && sym !== topicSymbol) throw new ItemError(`symbol ${sym} does not match the topic's ${topicSymbol}`);
  const full = ctx.tickers.apply(cat, sym, m.type, o);
  if (full === null) return null;
  return {
    symbol: sym,
    category: cat,
    lastPrice: decimal(full, 'lastPrice'),
    bid1Price: optDecimal(full, 'bid1Price'),
    bid1Size: optDecimal(full, 'bid1Size'),
    ask1Price: optDecimal(full, 'ask1Price'),
    ask1Size: optDecimal(full, 'ask1Size'),
    volume24h: decimal(full, 'volume24h'),
    turnover24h: optDecimal(full, 'turnover24h'),
    price24hPcnt: optDecimal(full, 'price24hPcnt'),
    markPrice: optDecimal(full, 'markPrice'),
    ts: m.ts ?? m.creationTime ?? ctx.observedAt,
    source: ctx.source,
    observedAt: ctx.observedAt,
  };
}

/**
 * Turn one Bybit stream message into records. Items that fail are reported in `problems` (the caller
 * dead-letters the message with reason invalid_item); the good items of the same message still flow.
 */
export function parseStreamMessage(m: StreamMessage, ctx: ParseContext): ParseResult {
  const s = streamOf(m.topic);
  if (!s) return { ok: false, reason: 'unknown_topic', detail: `topic ${JSON.stringify(m.topic.slice(0, 100))} is not mirrored` };
  const items: unknown[] = Array.isArray(m.data) ? m.data : isObj(m.data) ? [m.data] : [];
  if (items.length === 0) return { ok: false, reason: Array.isArray(m.data) ? 'empty_data' : 'invalid_item', detail: Array.isArray(m.data) ? 'data is an empty list' : 'data is neither a list nor an object' };
  const out = STREAM_OUTPUT[s.kind];
  const records: ParsedRecord[] = [];
  const problems: ItemProblem[] = [];
  let skipped = 0;
  const cat = s.category ?? m.category;
  items.forEach((item, index) => {
    try {
      if (!isObj(item)) throw new ItemError('not an object');
      const push = (key: string, value: ParsedRecord['value']) => {
        // PostgreSQL text and jsonb refuse NUL, so a record carrying one would fail the tracker's
        // transaction for good (fuzzing found it, e.g. side "\u0000"): refuse the item here instead.
        const nul = nulPath(value);
        if (nul !== null) throw new ItemError(`${nul}: must not contain NUL`);
        records.push({ kind: s.kind, topic: out.topic, record: out.record, key, value });
      };
      switch (s.kind) {
        case 'order': {
          const v = orderUpdate(item, m, cat, ctx);
          push(v.symbol, v);
          break;
        }
        case 'execution': {
          const v = execution(item, m, cat, ctx);
          push(v.symbol, v);
          break;
        }
        case 'position': {
          const v = position(item, m, cat, ctx);
          push(v.symbol, v);
          break;
        }
        case 'wallet':
          for (const v of walletBalances(item, m, ctx)) push(v.coin[0]!.coin, v);
          break;
        case 'ticker': {
          const v = ticker(item, m, s.symbol, ctx);
          if (v === null) skipped++;
          else push(v.symbol, v);
          break;
        }
      }
    } catch (err) {
      if (!(err instanceof ItemError)) throw err;
      problems.push({ index, detail: err.message });
    }
  });
  return { ok: true, kind: s.kind, records, problems, skipped, items: items.length };
}

/** Path of the first string holding a NUL character in a record value, or null. */
function nulPath(v: unknown, path = ''): string | null {
  if (typeof v === 'string') return v.includes('\u0000') ? path || '(value)' : null;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const p = nulPath(v[i], `${path}[${i}]`);
      if (p !== null) return p;
    }
    return null;
  }
  if (isObj(v)) {
    for (const [k, x] of Object.entries(v)) {
      const p = nulPath(x, path ? `${path}.${k}` : k);
      if (p !== null) return p;
    }
  }
  return null;
}

/** One line for a dead-letter's reason_detail from the item problems. */
export function describeProblems(problems: ItemProblem[], total: number): string {
  const shown = problems.slice(0, 5).map((p) => `item ${p.index}: ${p.detail}`).join('; ');
  return `${problems.length} of ${total} items refused: ${shown}${problems.length > 5 ? '; …' : ''}`.slice(0, 2000);
}

/** The DeadLetter value for a refused stream message (exchange.dlq). */
export function streamDeadLetter(p: {
  origin: string;
  bytes: Buffer | null;
  headers: Record<string, string>;
  stage: string;
  reason: StreamRejectReason;
  detail: string;
  traceId: string | null;
  timestamp: number | null;
  failedAt: number;
}): DeadLetter {
  return {
    original_topic: p.origin,
    original_partition: -1,
    original_offset: -1,
    original_timestamp: p.timestamp,
    original_key: null,
    original_value: p.bytes,
    headers: p.headers,
    stage: p.stage,
    reason_code: p.reason,
    reason_detail: p.detail.slice(0, 2000),
    error_kind: 'rejected',
    attempts: 1,
    signal_id: null,
    trace_id: p.traceId,
    failed_at: p.failedAt,
  };
}
