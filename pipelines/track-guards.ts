// Which tracking records can be stored (the kinds of record, their decimal and time fields), on top
// of the shared guards of pipelines/record-guards.ts. Tickers are checked here too, for the ticker
// projection (pipelines/ticker-projection.ts), which took them over from the tracking stage.
import { Dec } from '../runtime/decimal.ts';
import { BOUNDED_DECIMAL_RE, MAX_TIME_MS, ORDER_LINK_ID_RE, unstorableText } from './record-guards.ts';

export type Kind = 'submission' | 'order' | 'execution' | 'position' | 'wallet' | 'ticker';

// Records that fit their Avro schema but could never be stored (fuzzing found each of these): a NUL
// (PostgreSQL text refuses it), a lone UTF-16 surrogate (jsonb refuses its \u escape), a decimal
// that is not a bounded plain decimal ("abc" fails the numeric columns; "1e100000000" costs minutes
// of BigInt arithmetic in Dec), a time outside what Date and timestamptz hold. Each of them used to
// fail load or persist, which is not per record: the runner retried or stopped the whole partition.
// Such a record is now refused in `process` (dead-lettered with reason invalid_record) and left out
// of `load`'s queries.
const DECIMAL_FIELDS: Record<Kind, readonly string[]> = {
  submission: ['qty', 'price'],
  order: ['price', 'qty', 'cumExecQty', 'cumExecValue', 'cumExecFee', 'avgPrice', 'leavesQty'],
  execution: ['execPrice', 'execQty', 'execValue', 'execFee', 'feeRate', 'leavesQty'],
  position: ['size', 'avgPrice', 'positionValue', 'markPrice', 'liqPrice', 'leverage', 'positionIM', 'unrealisedPnl', 'cumRealisedPnl'],
  wallet: ['totalEquity', 'totalWalletBalance', 'totalAvailableBalance', 'totalMarginBalance'],
  ticker: ['lastPrice', 'bid1Price', 'bid1Size', 'ask1Price', 'ask1Size', 'volume24h', 'turnover24h', 'price24hPcnt', 'markPrice'],
};
const COIN_DECIMAL_FIELDS = ['equity', 'walletBalance', 'free', 'locked', 'availableToWithdraw', 'usdValue', 'unrealisedPnl', 'cumRealisedPnl', 'totalOrderIM', 'totalPositionIM'];
const TIME_FIELDS: Record<Kind, readonly string[]> = {
  submission: ['sent_at', 'acked_at'],
  order: ['createdTime', 'updatedTime', 'creationTime', 'observedAt'],
  execution: ['execTime', 'observedAt'],
  position: ['updatedTime', 'observedAt'],
  wallet: ['updatedTime', 'observedAt'],
  ticker: ['ts', 'observedAt'],
};
/** Decimals the tables require (NOT NULL numeric): an empty string there is not a number. */
const REQUIRED_DECIMALS: Record<Kind, readonly string[]> = {
  submission: [],
  order: ['qty', 'cumExecQty', 'cumExecValue', 'cumExecFee'],
  execution: ['execPrice', 'execQty'],
  position: [],
  wallet: [],
  ticker: [],
};
/** Quantities and prices the tables require to be >= 0 (fees and PnL may be negative). */
const NON_NEGATIVE: Record<Kind, readonly string[]> = {
  submission: ['qty', 'price'],
  order: ['price', 'qty', 'cumExecQty', 'cumExecValue', 'avgPrice', 'leavesQty'],
  execution: ['execPrice', 'execQty', 'execValue', 'leavesQty'],
  position: ['size'],
  wallet: [],
  ticker: ['lastPrice', 'bid1Price', 'bid1Size', 'ask1Price', 'ask1Size', 'volume24h', 'turnover24h', 'markPrice'],
};

function badDecimals(o: Record<string, unknown>, fields: readonly string[], path: string): string | null {
  for (const f of fields) {
    const v = o[f];
    if (v === null || v === undefined || v === '') continue;
    if (typeof v !== 'string' || !BOUNDED_DECIMAL_RE.test(v)) return `${path}${f} ${JSON.stringify(v).slice(0, 60)} is not a bounded decimal`;
  }
  return null;
}

/** Why a record of a kind cannot be tracked and stored, or null when it can. */
export function unstorable(kind: Kind, value: unknown): string | null {
  const v = value as Record<string, unknown>;
  const text = unstorableText(v);
  if (text) return text;
  const d = badDecimals(v, DECIMAL_FIELDS[kind], '');
  if (d) return d;
  if (kind === 'wallet' && Array.isArray(v.coin)) {
    for (const [i, c] of (v.coin as Record<string, unknown>[]).entries()) {
      const cd = badDecimals(c, COIN_DECIMAL_FIELDS, `coin[${i}].`);
      if (cd) return cd;
    }
  }
  for (const f of REQUIRED_DECIMALS[kind]) if (typeof v[f] !== 'string' || v[f] === '') return `${f} is empty`;
  for (const f of NON_NEGATIVE[kind]) {
    const x = v[f];
    if (typeof x === 'string' && x.startsWith('-') && !/^-[0.]*(e-?\d+)?$/i.test(x)) return `${f} ${x} is negative`;
  }
  // The tickers table checks bid <= ask: a crossed book would fail the batch's statement; refused
  // here, it is only dead-lettered.
  if (kind === 'ticker') {
    const bid = typeof v.bid1Price === 'string' ? Dec.maybe(v.bid1Price) : null;
    const ask = typeof v.ask1Price === 'string' ? Dec.maybe(v.ask1Price) : null;
    if (bid && ask && bid.gt(ask)) return `bid1Price ${String(v.bid1Price)} is above ask1Price ${String(v.ask1Price)}`;
  }
  if ('source' in v && !['ws', 'rest', 'reconciler'].includes(v.source as string)) return `source ${JSON.stringify(v.source).slice(0, 40)} is not ws, rest or reconciler`;
  // Bybit's own rule for orderLinkId (and the orders table's check): an external order must fit it too.
  const link = kind === 'submission' ? v.order_link_id : kind === 'order' || kind === 'execution' ? v.orderLinkId : '';
  if (typeof link === 'string' && link !== '' && !ORDER_LINK_ID_RE.test(link)) return `order link id ${JSON.stringify(link).slice(0, 60)} is not a Bybit orderLinkId`;
  for (const f of TIME_FIELDS[kind]) {
    const t = v[f];
    if (t === null || t === undefined) continue;
    // A Date's range (the columns are bigint ms, and timestamptz through to_timestamp).
    if (typeof t !== 'number' || !Number.isSafeInteger(t) || Math.abs(t) > MAX_TIME_MS) return `${f} ${String(t)} is not a time`;
  }
  return null;
}
