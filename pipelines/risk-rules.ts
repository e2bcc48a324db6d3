// Risk and sizing rules, pure: a validated signal + the account state → create / amend / cancel
// intents, or a rejection with a reason code. No I/O and no clock of its own; pipelines/size-risk.ts
// loads the state from PostgreSQL and records the outcome. docs/risk.md explains every rule and
// setting; the order of the checks below is the order documented there.
//
// Money and quantities are exact decimals (Dec, bigint-scaled) from the database strings to the
// intent's qty/price strings: no float ever touches a quantity or a price that reaches Bybit.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { emptyToUndefined, int, num } from '../runtime/setting-types.ts';
import type { Category, MarketUnit, OrderIntent, OrderSide, OrderType, Signal, SignalContext, TimeInForce } from '../schemas/types.ts';
import { ASSET_RE } from './signal-format.ts';
import { permits, type Evaluated, type TradingStateName } from './trading-state.ts';
import { Dec } from '../runtime/decimal.ts';

// ---------------------------------------------------------------------------------------------
// Settings


/** A setting with a default and optional per-asset overrides: {default, by: {ETHUSDT: ...}}. */
export interface PerAsset<T> {
  default: T;
  by: Readonly<Record<string, T>>;
}

export const forAsset = <T>(p: PerAsset<T>, asset: string): T => (Object.hasOwn(p.by, asset) ? p.by[asset]! : p.default);

/**
 * A per-asset setting accepts a plain value ("500") for every asset, or a JSON object of asset →
 * value where "*" is the default for assets not listed: '{"*": 500, "BTCUSDT": 2000}'.
 */
function perAsset<T extends z.ZodTypeAny>(inner: T, def: z.input<T>) {
  return z.preprocess(
    (v) => {
      if (v === undefined || v === '') return { default: def, by: {} };
      if (v !== null && typeof v === 'object' && !Array.isArray(v) && 'default' in v && 'by' in v) return v;
      let raw: unknown = v;
      if (typeof v === 'string' && v.trim().startsWith('{')) {
        try {
          raw = JSON.parse(v);
        } catch {
          return { default: Symbol('invalid JSON'), by: {} };
        }
      }
      if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
        const { '*': star, ...by } = raw as Record<string, unknown>;
        return { default: star === undefined ? def : star, by };
      }
      return { default: raw, by: {} };
    },
    z.object({ default: inner, by: z.record(z.string().regex(ASSET_RE, 'asset symbol like ETHUSDT'), inner) }),
  );
}

const policy = z.enum(['shrink', 'reject']);

/** Every setting of the risk and sizing stage: name → schema with default and description. */
export const riskConfigSchema = z.object({
  TOPIC_PREFIX: z.preprocess(emptyToUndefined, z.string().regex(/^[a-zA-Z0-9._-]*$/).default('')).describe('Prefix for every topic (as in runtime/config.ts).'),
  RISK_CATEGORY: perAsset(z.enum(['spot', 'linear']), 'spot').describe('Bybit category traded per asset: spot or linear (USDT perpetual). Per-asset map allowed.'),
  RISK_ORDER_TYPE: perAsset(z.enum(['market', 'limit']), 'market').describe('Order-type policy per asset: market (spot buys sized in quote coin, marketUnit=quoteCoin) or limit (price from the book, with a time-to-live). Per-asset map allowed.'),
  RISK_LIMIT_OFFSET_BPS: perAsset(num.min(-1000).max(1000), 0).describe('Limit price offset from the best bid (buys) / best ask (sells), in basis points; positive is more passive (buy below the bid, sell above the ask), negative crosses the spread. Per-asset map allowed.'),
  RISK_LIMIT_TTL_MS: z.preprocess(emptyToUndefined, int.min(0).default(60000)).describe('Time-to-live of limit orders (expires_at = decision time + this); 0 = no expiry.'),
  RISK_LIMIT_TIME_IN_FORCE: z.preprocess(emptyToUndefined, z.enum(['GTC', 'PostOnly']).default('GTC')).describe('Time in force of limit orders: GTC or PostOnly.'),
  RISK_PRICE_BAND_BPS: perAsset(num.min(0), 100).describe('Reject price_divergence when the latest ticker and the signal snapshot price differ by more than this, in basis points of the snapshot price. Per-asset map allowed.'),
  RISK_TICKER_MAX_AGE_MS: z.preprocess(emptyToUndefined, int.min(0).default(60000)).describe('A ticker older than this (by its exchange time) is not used for sizing; the snapshot price is used instead. Nor are bid / ask older than this (a spot tick keeps an earlier record\'s): last price is.'),
  RISK_FEE_RATE: z.preprocess(emptyToUndefined, num.min(0).max(0.1).default(0.001)).describe('Fee headroom as a fraction of notional, kept free when checking quote balance (spot buys) and margin (linear).'),
  RISK_LEVERAGE: perAsset(num.min(1).max(100), 1).describe('Leverage assumed for linear margin: margin needed = notional / leverage (+ fee headroom). Must match the account\'s leverage setting. Per-asset map allowed.'),
  RISK_BALANCE_POLICY: z.preprocess(emptyToUndefined, policy.default('reject')).describe('When the balance (quote coin, base holdings or margin) does not cover the order: shrink it to what is available (minimums re-checked) or reject insufficient_balance.'),
  RISK_LIMIT_POLICY: z.preprocess(emptyToUndefined, policy.default('shrink')).describe('When an order exceeds a notional cap, an exposure headroom or the instrument\'s maximum quantity: shrink it to the limit (minimums re-checked) or reject with the limit\'s reason code.'),
  RISK_MIN_CONFIDENCE: perAsset(num.min(0).max(1), 0.3).describe('Signals with a lower confidence are rejected (low_confidence). Per-asset map allowed.'),
  RISK_MAX_ORDER_NOTIONAL: perAsset(num.positive(), 1000).describe('Largest order value in quote coin (USDT). Per-asset map allowed.'),
  RISK_WARMUP_MAX_ORDER_NOTIONAL: perAsset(num.positive(), 50).describe('Largest order value for warm-up signals (is_warmup = true), in quote coin. Per-asset map allowed.'),
  RISK_MAX_POSITION_NOTIONAL: perAsset(num.positive(), 5000).describe('Largest exposure per asset in quote coin: holdings or position plus open orders in the order\'s direction. Per-asset map allowed.'),
  RISK_MAX_TOTAL_EXPOSURE: z.preprocess(emptyToUndefined, num.positive().default(20000)).describe('Largest exposure summed over all assets, in quote coin.'),
  RISK_MAX_OPEN_ORDERS: z.preprocess(emptyToUndefined, int.min(1).default(20)).describe('Most open orders (ours and adopted, including decided but not yet placed) in total; a create beyond it is rejected.'),
  RISK_MAX_OPEN_ORDERS_PER_ASSET: z.preprocess(emptyToUndefined, int.min(1).default(4)).describe('Most open orders per asset.'),
  RISK_DAILY_LOSS_REDUCE: z.preprocess(emptyToUndefined, num.min(0).default(200)).describe('Day\'s realised loss (quote coin, net of fees, UTC day) at which trading moves to REDUCING; 0 disables.'),
  RISK_DAILY_LOSS_HALT: z.preprocess(emptyToUndefined, num.min(0).default(500)).describe('Day\'s realised loss at which trading moves to HALTED; 0 disables.'),
  RISK_ORDER_LINK_PREFIX: z.preprocess(emptyToUndefined, z.string().regex(/^[A-Za-z0-9]{1,8}$/).default('om')).describe('Prefix of the orderLinkIds this stage creates (1-8 letters/digits), so our orders are recognisable at the exchange.'),
});
export type RiskConfig = z.output<typeof riskConfigSchema>;

// ---------------------------------------------------------------------------------------------
// State

export interface Instrument {
  category: Category;
  symbol: string;
  baseCoin: string;
  quoteCoin: string;
  /** enabled and status Trading. */
  tradable: boolean;
  tickSize: string;
  qtyStep: string | null;
  basePrecision: string | null;
  quotePrecision: string | null;
  minOrderQty: string;
  maxOrderQty: string | null;
  maxMarketOrderQty: string | null;
  minOrderAmt: string | null;
  maxOrderAmt: string | null;
  minNotionalValue: string | null;
}

export interface TickerSnap {
  category: Category;
  symbol: string;
  bid: string | null;
  ask: string | null;
  last: string | null;
  markPrice: string | null;
  /** Exchange time of the tick, epoch ms. */
  ts: number;
  /**
   * Exchange time of bid / ask, epoch ms, when older than `ts`: a tick without them (Bybit's spot
   * stream) keeps an earlier record's. Absent: they are as old as the tick.
   */
  bookTs?: number;
}

export interface Balance {
  coin: string;
  walletBalance: string;
  available: string;
  usdValue: string | null;
}

export interface PositionSnap {
  category: Category;
  symbol: string;
  side: 'Buy' | 'Sell' | '';
  size: string;
  markPrice: string | null;
}

/** Open statuses (as in the orders_open_idx of sql/001_orders.sql). */
export const OPEN_STATUSES = ['Intent', 'Submitted', 'New', 'PartiallyFilled', 'Untriggered', 'Triggered', 'PendingAmend', 'PendingCancel', 'Unknown'] as const;
/** Decided or sent but not (yet) confirmed: the wallet does not show their funds as locked. */
const LOCAL_STATUSES = new Set(['Intent', 'Submitted', 'Unknown']);
const AMENDABLE_STATUSES = new Set(['Intent', 'Submitted', 'New', 'PartiallyFilled']);

export type PendingAction = { readonly action: 'cancel' } | { readonly action: 'amend'; readonly qty: string | null; readonly price: string | null };

/**
 * An open order as a chunk's decisions see it. Read-only but for `pending`, which applyDecision
 * replaces (never changes in place): the per-symbol sums below are kept while a symbol's orders and
 * their pending actions are the same objects.
 */
export interface OpenOrder {
  readonly orderLinkId: string | null;
  readonly orderId: string | null;
  readonly signalId: string | null;
  readonly strategyId: string | null;
  readonly category: Category;
  readonly symbol: string;
  readonly side: OrderSide;
  readonly orderType: OrderType;
  readonly timeInForce: TimeInForce | null;
  readonly marketUnit: MarketUnit | null;
  readonly reduceOnly: boolean;
  /** Base qty, or quote amount when marketUnit = quoteCoin. */
  readonly qty: string;
  readonly price: string | null;
  readonly cumExecQty: string;
  readonly cumExecValue: string;
  readonly leavesQty: string | null;
  readonly status: string;
  /** An amend or cancel this stage decided that the exchange has not confirmed yet. */
  pending: PendingAction | null;
}

export interface TradingView {
  state: TradingStateName;
  killSwitch: boolean;
  reason: string | null;
}

/** Everything `decide` reads. Maps keyed `${category}:${symbol}`; balances by coin. */
export interface RiskState {
  instruments: Map<string, Instrument>;
  tickers: Map<string, TickerSnap>;
  balances: Map<string, Balance>;
  positions: Map<string, PositionSnap>;
  /** Oldest first. Updated in memory by applyDecision so later signals of a chunk see earlier ones. */
  openOrders: OpenOrder[];
  trading: TradingView | Evaluated;
}

export const instKey = (category: Category, symbol: string): string => `${category}:${symbol}`;

// ---------------------------------------------------------------------------------------------
// Decisions

export const RISK_REASONS = {
  killSwitch: 'kill_switch',
  halted: 'trading_halted',
  reducingOnly: 'reducing_only',
  lowConfidence: 'low_confidence',
  instrumentUnavailable: 'instrument_unavailable',
  noPrice: 'no_price',
  priceDivergence: 'price_divergence',
  maxOrderNotional: 'max_order_notional',
  warmupCap: 'warmup_cap',
  maxPositionExposure: 'max_position_exposure',
  maxTotalExposure: 'max_total_exposure',
  maxOpenOrders: 'max_open_orders',
  insufficientBalance: 'insufficient_balance',
  belowMinQty: 'below_min_qty',
  belowMinNotional: 'below_min_notional',
  aboveMaxQty: 'above_max_qty',
} as const;
export type RejectCode = (typeof RISK_REASONS)[keyof typeof RISK_REASONS];

/** Reasons carried by intents (OrderIntent.reason). */
export const INTENT_REASONS = {
  newSignal: 'new_signal',
  oppositeCancel: 'opposite_order_cancel',
  sameSideAmend: 'same_side_amend',
  shrunkToBalance: 'shrunk_to_balance',
  shrunkToLimit: 'shrunk_to_limit',
} as const;

export type Decision =
  | { kind: 'intents'; signalId: string; outcome: 'create' | 'amend'; reason: string; detail: string; intents: OrderIntent[]; tradingState: TradingStateName; inputs: Record<string, unknown> }
  | { kind: 'reject'; signalId: string; outcome: 'rejected'; code: RejectCode; detail: string; tradingState: TradingStateName; inputs: Record<string, unknown> };

// ---------------------------------------------------------------------------------------------
// Ids

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** UUID-shaped (version 8, RFC 9562 "custom") id of intent `sequence` of a signal. */
export function intentId(signalId: string, sequence: number, action: string): string {
  const h = sha256(`intent\0${signalId}\0${sequence}\0${action}`).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * orderLinkId of the order a signal creates: `<prefix>-<25 base-36 chars>` (prefix ≤ 8, so ≤ 34
 * chars, only [A-Za-z0-9-]) from the first 128 bits of sha256("create", signal_id). Deterministic,
 * so a replayed decision names the same order and Bybit refuses a second one.
 */
export function orderLinkId(prefix: string, signalId: string): string {
  const h = sha256(`create\0${signalId}`).subarray(0, 16).toString('hex');
  return `${prefix}-${BigInt(`0x${h}`).toString(36).padStart(25, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// Prices, exposure, reservations

export interface PriceView {
  source: 'ticker' | 'snapshot';
  /** Reference price: ticker mid (or last / mark) or the snapshot price. */
  ref: Dec;
  bid: Dec | null;
  ask: Dec | null;
  snapshot: Dec | null;
  divergenceBps: number | null;
}

/** `withBook` false: bid / ask are left out (too old), last / mark remain. */
function tickerRef(t: TickerSnap, withBook = true): { ref: Dec | null; bid: Dec | null; ask: Dec | null } {
  const bid = withBook ? Dec.maybe(t.bid) : null;
  const ask = withBook ? Dec.maybe(t.ask) : null;
  const okBid = bid && bid.isPos() ? bid : null;
  const okAsk = ask && ask.isPos() ? ask : null;
  const mid = okBid && okAsk ? okBid.add(okAsk).div(2, 18) : null;
  const last = Dec.maybe(t.last);
  const mark = Dec.maybe(t.markPrice);
  const ref = mid ?? (last && last.isPos() ? last : null) ?? (mark && mark.isPos() ? mark : null);
  return { ref, bid: okBid, ask: okAsk };
}

export function priceView(sig: Signal, st: RiskState, category: Category, cfg: RiskConfig, now: number): { ok: true; view: PriceView } | { ok: false; code: RejectCode; detail: string } {
  const snapNum = sig.market_data_snapshot?.price;
  const snapshot = typeof snapNum === 'number' && Number.isFinite(snapNum) && snapNum > 0 ? Dec.of(snapNum) : null;
  // The bid / ask are judged by their own time: a fresh tick may carry an older book (see bookTs).
  const freshRef = (x: TickerSnap) => tickerRef(x, now - (x.bookTs ?? x.ts) <= cfg.RISK_TICKER_MAX_AGE_MS);
  const isFresh = (x: TickerSnap | undefined): x is TickerSnap => !!x && now - x.ts <= cfg.RISK_TICKER_MAX_AGE_MS && freshRef(x).ref !== null;
  const sameCat = st.tickers.get(instKey(category, sig.asset));
  const otherCat = st.tickers.get(instKey(category === 'spot' ? 'linear' : 'spot', sig.asset));
  const t = isFresh(sameCat) ? sameCat : isFresh(otherCat) ? otherCat : sameCat ?? otherCat ?? null;
  const fresh = isFresh(t ?? undefined) ? freshRef(t!) : null;
  if (fresh?.ref) {
    let divergenceBps: number | null = null;
    if (snapshot) {
      divergenceBps = fresh.ref.sub(snapshot).abs().mul(10000).div(snapshot, 6).toNumber();
      const band = forAsset(cfg.RISK_PRICE_BAND_BPS, sig.asset);
      if (divergenceBps > band) {
        return { ok: false, code: RISK_REASONS.priceDivergence, detail: `ticker price ${fresh.ref} and snapshot price ${snapshot} differ by ${divergenceBps.toFixed(1)} bps, band ${band} bps` };
      }
    }
    return { ok: true, view: { source: 'ticker', ref: fresh.ref, bid: fresh.bid, ask: fresh.ask, snapshot, divergenceBps } };
  }
  if (snapshot) return { ok: true, view: { source: 'snapshot', ref: snapshot, bid: null, ask: null, snapshot, divergenceBps: null } };
  return { ok: false, code: RISK_REASONS.noPrice, detail: t ? `ticker of ${sig.asset} is older than ${cfg.RISK_TICKER_MAX_AGE_MS} ms and the signal has no snapshot price` : `no ticker for ${sig.asset} and no snapshot price` };
}

/** Any price of a symbol for valuing exposure (stale tickers accepted: better than nothing). */
function valuationPrice(st: RiskState, symbol: string): Dec | null {
  for (const c of ['linear', 'spot'] as const) {
    const t = st.tickers.get(instKey(c, symbol));
    const r = t ? tickerRef(t).ref : null;
    if (r) return r;
  }
  for (const c of ['linear', 'spot'] as const) {
    const p = Dec.maybe(st.positions.get(instKey(c, symbol))?.markPrice);
    if (p?.isPos()) return p;
  }
  return null;
}

const dec = (v: string | null | undefined, fallback: Dec = Dec.ZERO): Dec => Dec.maybe(v) ?? fallback;

/** Base quantity still to fill, counting a pending amend at its larger size (conservative). */
export function remainingBase(o: OpenOrder, price: Dec | null): Dec {
  const px = Dec.maybe(o.price) ?? price;
  if (o.marketUnit === 'quoteCoin') {
    const q = Dec.max(Dec.ZERO, dec(o.qty).sub(dec(o.cumExecValue)));
    return px && px.isPos() ? q.div(px, 12) : Dec.ZERO;
  }
  const cur = o.leavesQty !== null ? dec(o.leavesQty) : Dec.max(Dec.ZERO, dec(o.qty).sub(dec(o.cumExecQty)));
  if (o.pending?.action === 'amend' && o.pending.qty !== null) return Dec.max(cur, Dec.max(Dec.ZERO, dec(o.pending.qty).sub(dec(o.cumExecQty))));
  return cur;
}

/** Quote value still to fill. */
export function remainingValue(o: OpenOrder, price: Dec | null): Dec {
  if (o.marketUnit === 'quoteCoin') return Dec.max(Dec.ZERO, dec(o.qty).sub(dec(o.cumExecValue)));
  const pendingPx = o.pending?.action === 'amend' ? Dec.maybe(o.pending.price) : null;
  const px = pendingPx && Dec.maybe(o.price) ? Dec.max(pendingPx, Dec.of(o.price!)) : pendingPx ?? Dec.maybe(o.price) ?? price;
  return px ? remainingBase(o, price).mul(px) : Dec.ZERO;
}

export interface AssetExposure {
  /** Holdings + long position + open buys, quote value. */
  long: Dec;
  /** Short position + open linear sells, quote value. */
  short: Dec;
}

export interface Exposure {
  byAsset: Map<string, AssetExposure>;
  total: Dec;
}

/**
 * Directional exposure per asset (spot and linear of one symbol together) and the total, in quote
 * value. Conservative: open orders count at full remaining size, even when a cancel is pending.
 */
export function exposure(st: RiskState, prices: ReadonlyMap<string, Dec> = new Map()): Exposure {
  const valued = new Map<string, Dec | null>(); // one valuation per symbol per call, not per order
  const priceOf = (symbol: string): Dec | null => {
    const given = prices.get(symbol);
    if (given) return given;
    let px = valued.get(symbol);
    if (px === undefined) valued.set(symbol, (px = valuationPrice(st, symbol)));
    return px;
  };
  const byAsset = new Map<string, AssetExposure>();
  const at = (symbol: string): AssetExposure => {
    let e = byAsset.get(symbol);
    if (!e) byAsset.set(symbol, (e = { long: Dec.ZERO, short: Dec.ZERO }));
    return e;
  };
  const spotByBase = new Map<string, Instrument>();
  for (const i of st.instruments.values()) if (i.category === 'spot' && !spotByBase.has(i.baseCoin)) spotByBase.set(i.baseCoin, i);
  for (const b of st.balances.values()) {
    const inst = spotByBase.get(b.coin);
    const qty = dec(b.walletBalance);
    if (!qty.isPos()) continue;
    const px = inst ? priceOf(inst.symbol) : null;
    if (inst && px) at(inst.symbol).long = at(inst.symbol).long.add(qty.mul(px));
    else if (inst && Dec.maybe(b.usdValue)) at(inst.symbol).long = at(inst.symbol).long.add(Dec.of(b.usdValue!));
  }
  for (const p of st.positions.values()) {
    const size = dec(p.size);
    if (!size.isPos() || p.side === '') continue;
    const px = priceOf(p.symbol) ?? Dec.maybe(p.markPrice);
    if (!px) continue;
    const e = at(p.symbol);
    if (p.side === 'Buy') e.long = e.long.add(size.mul(px));
    else e.short = e.short.add(size.mul(px));
  }
  for (const [symbol, orders] of bySymbol(st.openOrders)) {
    const px = priceOf(symbol);
    const sums = symbolSums(exposureSums, st.openOrders, symbol, orders, `${px}`, null, (o) => openOrderValue(o, px));
    const e = at(symbol);
    e.long = e.long.add(sums.get('long') ?? Dec.ZERO);
    e.short = e.short.add(sums.get('short') ?? Dec.ZERO);
  }
  let total = Dec.ZERO;
  for (const e of byAsset.values()) total = total.add(Dec.max(e.long, e.short));
  return { byAsset, total };
}

/** Funds our not-yet-confirmed orders will take, which the wallet's `available` does not show yet. */
export interface Reservations {
  /** coin → amount (spot buys: quote incl. fee headroom; spot sells: base; linear: margin in settle coin). */
  byCoin: Map<string, Dec>;
}

function orderCost(o: OpenOrder, inst: Instrument | undefined, base: Dec, value: Dec, cfg: RiskConfig): { coin: string; amount: Dec } | null {
  if (!inst) return null;
  const fee = Dec.of(cfg.RISK_FEE_RATE);
  if (o.category === 'spot') return o.side === 'Buy' ? { coin: inst.quoteCoin, amount: value.mul(Dec.ONE.add(fee)) } : { coin: inst.baseCoin, amount: base };
  if (o.reduceOnly) return null;
  const lev = Dec.of(forAsset(cfg.RISK_LEVERAGE, o.symbol));
  return { coin: inst.quoteCoin, amount: value.div(lev, 12, 'ceil').add(value.mul(fee)) };
}

export function reservations(st: RiskState, cfg: RiskConfig): Reservations {
  const byCoin = new Map<string, Dec>();
  for (const [symbol, orders] of bySymbol(st.openOrders)) {
    const px = valuationPrice(st, symbol);
    const costs = symbolSums(reservationSums, st.openOrders, symbol, orders, `${px}`, cfg, (o) => reservedBy(o, st, px, cfg));
    for (const [coin, amount] of costs) byCoin.set(coin, (byCoin.get(coin) ?? Dec.ZERO).add(amount));
  }
  return { byCoin };
}

/** One order's part of an asset's exposure: a buy's remaining value long, a linear non-reduce-only sell's short. */
function openOrderValue(o: OpenOrder, px: Dec | null): Part {
  if (o.side === 'Buy') return { k: 'long', v: remainingValue(o, px) };
  if (o.category === 'linear' && !o.reduceOnly) return { k: 'short', v: remainingValue(o, px) };
  return null;
}

/** What one order reserves (see `reservations`): the coin and a positive amount, or nothing. */
function reservedBy(o: OpenOrder, st: RiskState, px: Dec | null, cfg: RiskConfig): Part {
  let base: Dec;
  let value: Dec;
  if (LOCAL_STATUSES.has(o.status)) {
    base = remainingBase(o, px);
    value = remainingValue(o, px);
  } else if (o.pending?.action === 'amend') {
    // The exchange holds the old size already; only growth is not yet locked.
    const before: OpenOrder = { ...o, pending: null };
    base = Dec.max(Dec.ZERO, remainingBase(o, px).sub(remainingBase(before, px)));
    value = Dec.max(Dec.ZERO, remainingValue(o, px).sub(remainingValue(before, px)));
  } else return null;
  const c = orderCost(o, st.instruments.get(instKey(o.category, o.symbol)), base, value, cfg);
  return c && c.amount.isPos() ? { k: c.coin, v: c.amount } : null;
}

// Per-symbol sums over a state's open orders, kept across the decisions of a chunk. Every decision
// needs the exposure and the reservations of all open orders, and a decision changes the orders of
// one symbol only (applyDecision): summing every order again for every signal made a chunk's cost
// grow with the square of the open orders (with a backlog and high open-order limits, most of
// risk's CPU). Each order's part is kept with the sums: an order added since (a create) adds its
// part, an order whose pending action was replaced (an amend or a cancel decided) takes its old
// part out and puts its new one in; the rest are the very same objects (OpenOrder is read-only but
// for `pending`) and are not looked at again. Each price a symbol is valued at has sums of its own;
// anything else (an order gone, another configuration) sums the symbol's orders anew. The sums are
// exact decimals, so adding and taking out in steps gives the very totals that adding order by
// order gives.
/** One order's part of a sum: a key (long / short, a coin) and an amount. */
type Part = { k: string; v: Dec } | null;
type SymbolEntry = { orders: OpenOrder[]; pendings: Array<PendingAction | null>; parts: Part[]; sums: Map<string, Dec>; cfg: RiskConfig | null };
const exposureSums = new WeakMap<readonly OpenOrder[], Map<string, SymbolEntry>>();
const reservationSums = new WeakMap<readonly OpenOrder[], Map<string, SymbolEntry>>();

function bySymbol(orders: readonly OpenOrder[]): Map<string, OpenOrder[]> {
  const out = new Map<string, OpenOrder[]>();
  for (const o of orders) {
    const g = out.get(o.symbol);
    if (g) g.push(o);
    else out.set(o.symbol, [o]);
  }
  return out;
}

function symbolSums(
  memo: WeakMap<readonly OpenOrder[], Map<string, SymbolEntry>>,
  all: readonly OpenOrder[],
  symbol: string,
  orders: readonly OpenOrder[],
  key: string,
  cfg: RiskConfig | null,
  partOf: (o: OpenOrder) => Part,
): ReadonlyMap<string, Dec> {
  let bySym = memo.get(all);
  if (!bySym) memo.set(all, (bySym = new Map()));
  // One entry per symbol and price: the signal's own asset is valued at its decision price, every
  // other decision values it at its ticker, and the two must not evict each other.
  const at = `${symbol}\0${key}`;
  let e = bySym.get(at);
  if (!e || e.cfg !== cfg || e.orders.length > orders.length || e.orders.some((o, i) => o !== orders[i])) {
    e = { orders: [], pendings: [], parts: [], sums: new Map(), cfg };
    bySym.set(at, e);
  }
  const put = (p: Part, sign: 1 | -1) => {
    if (!p) return;
    const now = (e.sums.get(p.k) ?? Dec.ZERO)[sign === 1 ? 'add' : 'sub'](p.v);
    // A key whose every part was taken out is absent, as it is from a sum made anew.
    if (now.isZero() && !e.parts.some((q) => q?.k === p.k)) e.sums.delete(p.k);
    else e.sums.set(p.k, now);
  };
  for (let i = 0; i < e.orders.length; i++) {
    const o = orders[i]!;
    if (o.pending === e.pendings[i]) continue;
    const old = e.parts[i]!;
    e.parts[i] = null;
    put(old, -1);
    e.parts[i] = partOf(o);
    e.pendings[i] = o.pending;
    put(e.parts[i]!, 1);
  }
  for (let i = e.orders.length; i < orders.length; i++) {
    const o = orders[i]!;
    const p = partOf(o);
    e.orders.push(o);
    e.pendings.push(o.pending);
    e.parts.push(p);
    put(p, 1);
  }
  return e.sums;
}

// ---------------------------------------------------------------------------------------------
// decide

const sideOf = (s: Signal): OrderSide => (s.signal_type === 'buy' ? 'Buy' : 'Sell');

export function signalContext(s: Signal): SignalContext {
  const p = s.market_data_snapshot?.price;
  return {
    signal_id: s.signal_id,
    signal_type: s.signal_type,
    asset: s.asset,
    amount: s.amount,
    confidence: s.confidence,
    strategy_id: s.strategy_id,
    model_version: s.model_version,
    is_warmup: s.is_warmup,
    trace_id: s.trace_id,
    signal_timestamp: s.timestamp,
    snapshot_price: typeof p === 'number' && Number.isFinite(p) && p > 0 ? p : null,
  };
}

const orderBrief = (o: OpenOrder) => ({ order_link_id: o.orderLinkId, order_id: o.orderId, strategy_id: o.strategyId, category: o.category, side: o.side, order_type: o.orderType, qty: o.qty, price: o.price, status: o.status, pending: o.pending?.action ?? null });

/**
 * Decide what one signal becomes. Pure: reads `st`, never changes it (applyDecision does).
 * Checks in this order; the first that fails is the rejection's reason:
 *  kill switch, HALTED, confidence, instrument, price (none / divergence), REDUCING (only
 *  risk-reducing orders), open orders plan (cancel opposite, amend same-side limit), max open orders,
 *  notional caps (order, warm-up), exposure (asset, total), balance, quantity rounding and the
 *  instrument's minimums and maximums.
 */
export function decide(sig: Signal, st: RiskState, cfg: RiskConfig, now: number): Decision {
  const asset = sig.asset;
  const side = sideOf(sig);
  const trading = st.trading.state;
  const inputs: Record<string, unknown> = {
    signal: { signal_id: sig.signal_id, side: sig.signal_type, asset, amount: sig.amount, confidence: sig.confidence, is_warmup: sig.is_warmup, strategy_id: sig.strategy_id, model_version: sig.model_version, snapshot_price: sig.market_data_snapshot?.price ?? null },
    trading_state: { state: trading, kill_switch: st.trading.killSwitch, reason: st.trading.reason },
  };
  const refuse = (code: RejectCode, detail: string): Decision => ({ kind: 'reject', signalId: sig.signal_id, outcome: 'rejected', code, detail, tradingState: trading, inputs });

  if (st.trading.killSwitch) return refuse(RISK_REASONS.killSwitch, 'kill switch is on: trading is HALTED');
  if (!permits(trading, 'reduce')) return refuse(RISK_REASONS.halted, `trading is ${trading}${st.trading.reason ? ` (${st.trading.reason})` : ''}: nothing but cancels`);

  const minConf = forAsset(cfg.RISK_MIN_CONFIDENCE, asset);
  if (!(sig.confidence >= minConf)) return refuse(RISK_REASONS.lowConfidence, `confidence ${sig.confidence} below minimum ${minConf}`);

  const category = forAsset(cfg.RISK_CATEGORY, asset);
  const inst = st.instruments.get(instKey(category, asset));
  inputs.instrument = inst ?? null;
  if (!inst) return refuse(RISK_REASONS.instrumentUnavailable, `no ${category} instrument ${asset} (filters unknown)`);
  if (!inst.tradable) return refuse(RISK_REASONS.instrumentUnavailable, `${category} instrument ${asset} is disabled or not Trading`);

  const pv = priceView(sig, st, category, cfg, now);
  if (!pv.ok) return refuse(pv.code, pv.detail);
  const px = pv.view;
  inputs.price = { source: px.source, ref: px.ref, bid: px.bid, ask: px.ask, snapshot: px.snapshot, divergence_bps: px.divergenceBps };

  // --- risk-reducing or increasing?
  const position = category === 'linear' ? st.positions.get(instKey('linear', asset)) : undefined;
  const posSize = position && position.side !== '' ? dec(position.size) : Dec.ZERO;
  const reducesPosition = category === 'linear' && posSize.isPos() && position!.side !== side;
  const reducing = category === 'spot' ? side === 'Sell' : reducesPosition;
  inputs.position = position ?? null;
  if (!permits(trading, reducing ? 'reduce' : 'increase')) {
    return refuse(RISK_REASONS.reducingOnly, `trading is REDUCING: only risk-reducing orders (spot sells, reduce-only linear orders against a position); ${category} ${side} of ${asset} would increase risk`);
  }
  const mustReduceOnly = trading === 'REDUCING' && category === 'linear';

  // --- open orders of this asset and strategy: cancel the opposite side, amend a same-side limit
  const orderType: OrderType = forAsset(cfg.RISK_ORDER_TYPE, asset) === 'limit' ? 'Limit' : 'Market';
  const mine = st.openOrders.filter((o) => o.category === category && o.symbol === asset && o.strategyId === sig.strategy_id && o.orderLinkId !== null && o.pending?.action !== 'cancel' && o.status !== 'PendingCancel');
  const cancels = mine.filter((o) => o.side !== side);
  const amendTarget = orderType === 'Limit' ? [...mine].reverse().find((o) => o.side === side && o.orderType === 'Limit' && AMENDABLE_STATUSES.has(o.status)) ?? null : null;
  inputs.open_orders = { total: st.openOrders.length, cancel: cancels.map(orderBrief), amend: amendTarget ? orderBrief(amendTarget) : null };

  if (!amendTarget) {
    const live = st.openOrders.filter((o) => o.pending?.action !== 'cancel' && o.status !== 'PendingCancel' && !cancels.includes(o));
    const liveAsset = live.filter((o) => o.symbol === asset);
    inputs.open_orders = { ...(inputs.open_orders as object), live: live.length, live_asset: liveAsset.length };
    if (live.length + 1 > cfg.RISK_MAX_OPEN_ORDERS) return refuse(RISK_REASONS.maxOpenOrders, `${live.length} open orders, limit ${cfg.RISK_MAX_OPEN_ORDERS}`);
    if (liveAsset.length + 1 > cfg.RISK_MAX_OPEN_ORDERS_PER_ASSET) return refuse(RISK_REASONS.maxOpenOrders, `${liveAsset.length} open orders on ${asset}, limit ${cfg.RISK_MAX_OPEN_ORDERS_PER_ASSET} per asset`);
  }

  // --- the order's price
  let limitPrice: Dec | null = null;
  if (orderType === 'Limit') {
    const offset = Dec.of(forAsset(cfg.RISK_LIMIT_OFFSET_BPS, asset)).div(10000, 8);
    limitPrice = side === 'Buy' ? (px.bid ?? px.ref).mul(Dec.ONE.sub(offset)).floorTo(inst.tickSize) : (px.ask ?? px.ref).mul(Dec.ONE.add(offset)).ceilTo(inst.tickSize);
    if (!limitPrice.isPos()) return refuse(RISK_REASONS.noPrice, `limit price ${limitPrice} from ${px.ref} is not positive`);
  }
  // Market orders are sized at the price they would take (ask for buys, bid for sells).
  const sizePrice = limitPrice ?? (side === 'Buy' ? px.ask ?? px.ref : px.bid ?? px.ref);
  inputs.order = { category, order_type: orderType, size_price: sizePrice, limit_price: limitPrice };

  // --- notional caps and exposure
  let notional = Dec.of(sig.amount);
  let shrunkBy: RejectCode | null = null;
  const caps: Array<{ code: RejectCode; limit: Dec; what: string }> = [
    { code: RISK_REASONS.maxOrderNotional, limit: Dec.of(forAsset(cfg.RISK_MAX_ORDER_NOTIONAL, asset)), what: 'max order notional' },
  ];
  if (sig.is_warmup) caps.push({ code: RISK_REASONS.warmupCap, limit: Dec.of(forAsset(cfg.RISK_WARMUP_MAX_ORDER_NOTIONAL, asset)), what: 'warm-up order notional cap' });
  const exp = exposure(st, new Map([[asset, px.ref]]));
  const cur = exp.byAsset.get(asset) ?? { long: Dec.ZERO, short: Dec.ZERO };
  // An amended order is replaced, not added to: take its remaining value out of the current exposure.
  const replaced = amendTarget ? remainingValue(amendTarget, px.ref) : Dec.ZERO;
  const curDir = Dec.max(Dec.ZERO, (side === 'Buy' ? cur.long : cur.short).sub(replaced));
  const others = exp.total.sub(Dec.max(cur.long, cur.short));
  inputs.exposure = { asset_long: cur.long, asset_short: cur.short, total: exp.total, replaced };
  // Linear orders that only reduce a position need no exposure headroom; a flip counts in full.
  const flips = category === 'linear' && reducing && !mustReduceOnly && Dec.of(sig.amount).div(sizePrice, 12).gt(posSize);
  if (!reducing || flips) {
    caps.push({ code: RISK_REASONS.maxPositionExposure, limit: Dec.of(forAsset(cfg.RISK_MAX_POSITION_NOTIONAL, asset)).sub(curDir), what: `${asset} exposure headroom` });
    caps.push({ code: RISK_REASONS.maxTotalExposure, limit: Dec.of(cfg.RISK_MAX_TOTAL_EXPOSURE).sub(others).sub(curDir), what: 'total exposure headroom' });
  }
  for (const cap of caps) {
    if (notional.lte(cap.limit)) continue;
    if (!cap.limit.isPos()) return refuse(cap.code, `${cap.what} is ${cap.limit} (order ${notional})`);
    if (cfg.RISK_LIMIT_POLICY === 'reject') return refuse(cap.code, `order ${notional} exceeds ${cap.what} ${cap.limit}`);
    notional = cap.limit;
    shrunkBy = cap.code;
  }

  // --- balance
  const fee = Dec.of(cfg.RISK_FEE_RATE);
  const res = reservations(st, cfg);
  const freeOf = (coin: string): Dec => dec(st.balances.get(coin)?.available).sub(res.byCoin.get(coin) ?? Dec.ZERO);
  const amendCredit = (c: { coin: string; amount: Dec } | null) => (c ? c.amount : Dec.ZERO);
  let baseCap: Dec | null = null; // spot sells / reduce-only: the most base qty allowed
  let balanceNote: Record<string, unknown>;
  if (category === 'spot' && side === 'Buy') {
    const credit = amendTarget ? amendCredit(orderCost(amendTarget, inst, remainingBase(amendTarget, px.ref), remainingValue(amendTarget, px.ref), cfg)) : Dec.ZERO;
    const free = freeOf(inst.quoteCoin).add(credit);
    const need = notional.mul(Dec.ONE.add(fee));
    balanceNote = { coin: inst.quoteCoin, available: st.balances.get(inst.quoteCoin)?.available ?? '0', reserved: res.byCoin.get(inst.quoteCoin) ?? Dec.ZERO, amend_credit: credit, need };
    if (need.gt(free)) {
      if (cfg.RISK_BALANCE_POLICY === 'reject' || !free.isPos()) return refuse(RISK_REASONS.insufficientBalance, `spot buy needs ${need} ${inst.quoteCoin} (incl. fee headroom), ${Dec.max(free, Dec.ZERO)} free`);
      notional = free.div(Dec.ONE.add(fee), 8);
      shrunkBy = RISK_REASONS.insufficientBalance;
    }
  } else if (category === 'spot') {
    const credit = amendTarget ? remainingBase(amendTarget, px.ref) : Dec.ZERO;
    baseCap = Dec.max(Dec.ZERO, freeOf(inst.baseCoin).add(credit));
    balanceNote = { coin: inst.baseCoin, available: st.balances.get(inst.baseCoin)?.available ?? '0', reserved: res.byCoin.get(inst.baseCoin) ?? Dec.ZERO, amend_credit: credit, max_base: baseCap };
  } else if (reducing && (mustReduceOnly || Dec.of(notional).div(sizePrice, 12).lte(posSize))) {
    baseCap = posSize; // reduce-only: no margin needed, never more than the position
    balanceNote = { reduce_only: true, position_size: posSize };
  } else {
    const lev = Dec.of(forAsset(cfg.RISK_LEVERAGE, asset));
    const credit = amendTarget ? amendCredit(orderCost(amendTarget, inst, remainingBase(amendTarget, px.ref), remainingValue(amendTarget, px.ref), cfg)) : Dec.ZERO;
    const free = freeOf(inst.quoteCoin).add(credit);
    const perUnit = Dec.ONE.div(lev, 12, 'ceil').add(fee);
    const need = notional.mul(perUnit);
    balanceNote = { coin: inst.quoteCoin, available: st.balances.get(inst.quoteCoin)?.available ?? '0', reserved: res.byCoin.get(inst.quoteCoin) ?? Dec.ZERO, amend_credit: credit, leverage: lev, margin_needed: need };
    if (need.gt(free)) {
      if (cfg.RISK_BALANCE_POLICY === 'reject' || !free.isPos()) return refuse(RISK_REASONS.insufficientBalance, `linear order needs margin ${need} ${inst.quoteCoin} (notional ${notional} / leverage ${lev} + fee headroom), ${Dec.max(free, Dec.ZERO)} free`);
      notional = free.div(perUnit, 8);
      shrunkBy = RISK_REASONS.insufficientBalance;
    }
  }
  inputs.balance = balanceNote;

  // --- quantity, rounding and the instrument's filters
  const quoteSized = category === 'spot' && orderType === 'Market' && side === 'Buy';
  const step = Dec.of(inst.qtyStep ?? inst.basePrecision ?? inst.minOrderQty);
  const rejectOrShrinkTo = (code: RejectCode, detail: string): Decision | null => {
    if (code === RISK_REASONS.insufficientBalance ? cfg.RISK_BALANCE_POLICY === 'reject' : cfg.RISK_LIMIT_POLICY === 'reject') return refuse(code, detail);
    shrunkBy = code;
    return null;
  };
  let qty: Dec; // base qty, or quote amount when quoteSized
  let baseQty: Dec;
  if (quoteSized) {
    qty = notional.floorTo(inst.quotePrecision ?? '0.01');
    baseQty = qty.div(sizePrice, 12);
  } else {
    qty = notional.div(sizePrice, 18).floorTo(step);
    if (baseCap && qty.gt(baseCap)) {
      const code = category === 'spot' ? RISK_REASONS.insufficientBalance : RISK_REASONS.reducingOnly;
      const r = rejectOrShrinkTo(code, category === 'spot' ? `spot sell of ${qty} ${inst.baseCoin} exceeds free holdings ${baseCap}` : `REDUCING: order ${qty} exceeds position ${baseCap}`);
      if (r) return r;
      qty = baseCap.floorTo(step);
    }
    baseQty = qty;
  }
  const maxQty = Dec.maybe(orderType === 'Market' ? inst.maxMarketOrderQty ?? inst.maxOrderQty : inst.maxOrderQty);
  if (maxQty && baseQty.gt(maxQty)) {
    const r = rejectOrShrinkTo(RISK_REASONS.aboveMaxQty, `qty ${baseQty} above the instrument's max ${orderType === 'Market' ? 'market ' : ''}order qty ${maxQty}`);
    if (r) return r;
    if (quoteSized) {
      qty = maxQty.mul(sizePrice).floorTo(inst.quotePrecision ?? '0.01');
      baseQty = qty.div(sizePrice, 12);
    } else baseQty = qty = maxQty.floorTo(step);
  }
  const value = quoteSized ? qty : qty.mul(sizePrice);
  const maxAmt = category === 'spot' ? Dec.maybe(inst.maxOrderAmt) : null;
  if (maxAmt && value.gt(maxAmt)) return refuse(RISK_REASONS.aboveMaxQty, `order value ${value} above the instrument's max order amount ${maxAmt}`);
  const minQty = dec(inst.minOrderQty);
  const minValue = Dec.maybe(category === 'spot' ? inst.minOrderAmt : inst.minNotionalValue);
  const shrinkNote = shrunkBy ? ` after shrinking for ${shrunkBy}` : '';
  if (!qty.isPos() || baseQty.lt(minQty)) return refuse(shrunkBy ?? RISK_REASONS.belowMinQty, `qty ${baseQty}${shrinkNote} below the instrument's min order qty ${minQty} (step ${quoteSized ? inst.quotePrecision : step})`);
  if (minValue && value.lt(minValue)) return refuse(shrunkBy ?? RISK_REASONS.belowMinNotional, `order value ${value}${shrinkNote} below the instrument's minimum ${minValue} ${inst.quoteCoin}`);

  // --- intents: cancels first, then the create or amend
  const ctx = signalContext(sig);
  const expiresAt = orderType === 'Limit' && cfg.RISK_LIMIT_TTL_MS > 0 ? now + cfg.RISK_LIMIT_TTL_MS : null;
  const mainReason = shrunkBy === RISK_REASONS.insufficientBalance ? INTENT_REASONS.shrunkToBalance : shrunkBy ? INTENT_REASONS.shrunkToLimit : amendTarget ? INTENT_REASONS.sameSideAmend : INTENT_REASONS.newSignal;
  const reduceOnly = category === 'linear' && reducing && baseQty.lte(posSize);
  const intents: OrderIntent[] = cancels.map((o, i) => ({
    intent_id: intentId(sig.signal_id, i, 'cancel'),
    action: 'cancel',
    order_link_id: o.orderLinkId!,
    target_order_id: o.orderId,
    sequence: i,
    signal: ctx,
    category,
    symbol: asset,
    side: o.side,
    order_type: o.orderType,
    qty: null,
    price: null,
    market_unit: null,
    time_in_force: o.timeInForce ?? 'GTC',
    reduce_only: o.reduceOnly,
    expires_at: null,
    decided_at: now,
    reason: INTENT_REASONS.oppositeCancel,
    reason_detail: `opposite ${o.side} ${o.orderType} ${o.qty}${o.price ? ` @ ${o.price}` : ''} (${o.status}) of strategy ${sig.strategy_id} cancelled before the new ${side}`,
  }));
  const seq = intents.length;
  const detail = `${amendTarget ? 'amend' : 'create'} ${category} ${orderType} ${side} ${qty}${quoteSized ? ` ${inst.quoteCoin}` : ''}${limitPrice ? ` @ ${limitPrice}` : ''} (value ~${value.toNumber().toFixed(2)} ${inst.quoteCoin}, requested ${sig.amount}${shrunkBy ? `, shrunk for ${shrunkBy}` : ''})`;
  if (amendTarget) {
    intents.push({
      intent_id: intentId(sig.signal_id, seq, 'amend'),
      action: 'amend',
      order_link_id: amendTarget.orderLinkId!,
      target_order_id: amendTarget.orderId,
      sequence: seq,
      signal: ctx,
      category,
      symbol: asset,
      side,
      order_type: 'Limit',
      // Bybit's amend qty is the order's new total quantity, filled part included.
      qty: qty.add(dec(amendTarget.cumExecQty)).toString(),
      price: limitPrice!.toString(),
      market_unit: null,
      time_in_force: amendTarget.timeInForce ?? cfg.RISK_LIMIT_TIME_IN_FORCE,
      reduce_only: amendTarget.reduceOnly,
      expires_at: expiresAt,
      decided_at: now,
      reason: mainReason,
      reason_detail: detail,
    });
  } else {
    intents.push({
      intent_id: intentId(sig.signal_id, seq, 'create'),
      action: 'create',
      order_link_id: orderLinkId(cfg.RISK_ORDER_LINK_PREFIX, sig.signal_id),
      target_order_id: null,
      sequence: seq,
      signal: ctx,
      category,
      symbol: asset,
      side,
      order_type: orderType,
      qty: qty.toString(),
      price: limitPrice ? limitPrice.toString() : null,
      market_unit: category === 'spot' && orderType === 'Market' ? (quoteSized ? 'quoteCoin' : 'baseCoin') : null,
      time_in_force: orderType === 'Limit' ? cfg.RISK_LIMIT_TIME_IN_FORCE : 'IOC',
      reduce_only: reduceOnly,
      expires_at: expiresAt,
      decided_at: now,
      reason: mainReason,
      reason_detail: detail,
    });
  }
  return { kind: 'intents', signalId: sig.signal_id, outcome: amendTarget ? 'amend' : 'create', reason: mainReason, detail, intents, tradingState: trading, inputs };
}

/** Make later signals of the chunk see a decision: cancels and amends pending, creates open. */
export function applyDecision(st: RiskState, d: Decision): void {
  if (d.kind !== 'intents') return;
  for (const it of d.intents) {
    if (it.action === 'create') {
      st.openOrders.push({
        orderLinkId: it.order_link_id,
        orderId: null,
        signalId: it.signal?.signal_id ?? null,
        strategyId: it.signal?.strategy_id ?? null,
        category: it.category,
        symbol: it.symbol,
        side: it.side,
        orderType: it.order_type,
        timeInForce: it.time_in_force,
        marketUnit: it.market_unit,
        reduceOnly: it.reduce_only,
        qty: it.qty!,
        price: it.price ?? (it.order_type === 'Market' && it.market_unit !== 'quoteCoin' ? sizePriceOf(d) : null),
        cumExecQty: '0',
        cumExecValue: '0',
        leavesQty: null,
        status: 'Intent',
        pending: null,
      });
      continue;
    }
    const o = st.openOrders.find((x) => x.orderLinkId === it.order_link_id);
    if (o) o.pending = it.action === 'cancel' ? { action: 'cancel' } : { action: 'amend', qty: it.qty, price: it.price };
  }
}

const sizePriceOf = (d: Decision): string | null => {
  const p = (d.inputs.order as { size_price?: Dec } | undefined)?.size_price;
  return p ? p.toString() : null;
};
