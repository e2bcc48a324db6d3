// REST routes of issue #18 (appended to ROUTES in routes.ts): market history, risk limits and
// disconnection protection. Request parameters, defaults, limits and result fields follow the v5
// pages named on each route; parameter errors answer 10001, as Bybit's do.
import type { DcpGuard } from './dcp.ts';
import { paramsError } from './errors.ts';
import type { Exchange } from './exchange.ts';
import { isTrading, type Instrument, type LinearInstrument } from './instruments.ts';
import { openInterestAt, type MarketHistory } from './market-history.ts';
import { aggregateOhlc, indexOhlc, markOhlc, premiumOhlc, type Ohlc } from './mark-price.ts';
import { fix, trim } from './num.ts';
import { intervalStart, KLINE_INTERVALS, type KlineRow } from './price-process.ts';
import type { Route } from './routes.ts';
import { priceDecimals, qtyDecimals } from './views.ts';

/** Parts of the simulator beside the exchange core that routes use. */
export interface SimExt {
  market: MarketHistory;
  dcp: DcpGuard;
}

type P = Record<string, unknown>;

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : undefined);

function category(p: P, allowed: readonly string[], def?: string): string {
  const c = str(p.category) ?? def;
  if (!c) throw paramsError('category is required');
  if (!allowed.includes(c)) throw paramsError(`category ${c} is not supported (${allowed.join(', ')})`);
  return c;
}

function intIn(p: P, name: string, def: number, min: number, max: number): number {
  const raw = str(p[name]);
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw paramsError(`${name} must be an integer in [${min}, ${max}]`);
  return n;
}

function time(p: P, name: string): number | undefined {
  const raw = str(p[name]);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw paramsError(`${name} must be a timestamp in ms`);
  return n;
}

function instrument(ex: Exchange, cat: string, symbol: unknown): Instrument {
  const s = str(symbol);
  if (!s) throw paramsError('symbol is required');
  const i = ex.instruments.get(cat, s);
  if (!i) throw paramsError('symbol invalid');
  return i;
}

/** Opaque cursor: base64url of an offset. */
function offsetOf(p: P): number {
  const c = str(p.cursor);
  if (!c) return 0;
  const n = Number(Buffer.from(c, 'base64url').toString('utf8').replace(/^o/, ''));
  if (!Number.isInteger(n) || n < 0) throw paramsError('cursor invalid');
  return n;
}
const cursorAt = (offset: number) => Buffer.from(`o${offset}`).toString('base64url');

/** mark-price-kline, index-price-kline, premium-index-price-kline: linear only, category defaulting to linear. */
function derivedKline(kind: 'mark' | 'index' | 'premium'): Route['handler'] {
  const transform: (rows: readonly KlineRow[]) => Ohlc[] = kind === 'mark' ? markOhlc : kind === 'index' ? indexOhlc : premiumOhlc;
  return ({ ex, params }) => {
    const cat = category(params, ['linear'], 'linear');
    const inst = instrument(ex, cat, params.symbol);
    const interval = str(params.interval);
    if (!interval) throw paramsError('interval is required');
    if (!(KLINE_INTERVALS as readonly string[]).includes(interval)) throw paramsError('interval invalid');
    const limit = intIn(params, 'limit', 200, 1, 1000);
    const end = time(params, 'end') ?? ex.now();
    const start = time(params, 'start') ?? 0;
    if (start > end) throw paramsError('start must not be after end');
    const rows = aggregateOhlc(transform(ex.prices.candles(inst.symbol, -Infinity, end)), (t) => intervalStart(t, interval)).filter((r) => r.start >= start && r.start <= end);
    const d = kind === 'premium' ? 6 : priceDecimals(inst);
    const list = rows.slice(-limit).reverse().map((r) => [String(r.start), fix(r.open, d), fix(r.high, d), fix(r.low, d), fix(r.close, d)]);
    return { symbol: inst.symbol, category: cat, list };
  };
}

const OI_INTERVALS: Readonly<Record<string, number>> = { '5min': 300_000, '15min': 900_000, '30min': 1_800_000, '1h': 3_600_000, '4h': 14_400_000, '1d': 86_400_000 };

/** Risk-limit tiers of a perpetual: tier 1 at the instrument's maximum leverage and the 0.5 % maintenance margin positions use. */
export function riskTiers(inst: LinearInstrument): Array<Record<string, unknown>> {
  const maxLev = Number(inst.maxLeverage);
  const base = Number(inst.riskLimitValue ?? (maxLev >= 100 ? 2_000_000 : maxLev >= 75 ? 200_000 : 100_000));
  const tiers: Array<Record<string, unknown>> = [];
  let deduction = 0;
  for (let k = 1; k <= 10; k++) {
    const mm = 0.005 + 0.005 * (k - 1);
    const im = 1 / maxLev + 0.005 * (k - 1);
    if (k > 1) deduction += base * (k - 1) * 0.005;
    tiers.push({
      id: k,
      symbol: inst.symbol,
      riskLimitValue: String(base * k),
      maintenanceMargin: trim(mm, 4),
      initialMargin: trim(im, 4),
      isLowestRisk: k === 1 ? 1 : 0,
      maxLeverage: fix(k === 1 ? maxLev : 1 / im, 2),
      mmDeduction: k === 1 ? '' : trim(deduction, 8),
    });
  }
  return tiers;
}

const RISK_LIMIT_SYMBOLS_PER_PAGE = 15;

const ext = (ctx: { ext?: SimExt }): SimExt => {
  if (!ctx.ext) throw new Error('route needs the simulator extensions (market history, dcp)');
  return ctx.ext;
};

export const ROUTES_EXT: Route[] = [
  // https://bybit-exchange.github.io/docs/v5/market/mark-kline
  { method: 'GET', path: '/v5/market/mark-price-kline', private: false, handler: derivedKline('mark') },
  // https://bybit-exchange.github.io/docs/v5/market/index-kline
  { method: 'GET', path: '/v5/market/index-price-kline', private: false, handler: derivedKline('index') },
  // https://bybit-exchange.github.io/docs/v5/market/premium-index-kline
  { method: 'GET', path: '/v5/market/premium-index-price-kline', private: false, handler: derivedKline('premium') },
  {
    // https://bybit-exchange.github.io/docs/v5/market/history-fund-rate
    method: 'GET',
    path: '/v5/market/funding/history',
    private: false,
    handler: (ctx) => {
      const { ex, params } = ctx;
      const cat = category(params, ['linear']);
      const inst = instrument(ex, cat, params.symbol);
      const from = time(params, 'startTime');
      const to = time(params, 'endTime');
      if (from !== undefined && to === undefined) throw paramsError('startTime cannot be passed without endTime');
      if (from !== undefined && to !== undefined && from > to) throw paramsError('startTime must not be after endTime');
      const limit = intIn(params, 'limit', 200, 1, 200);
      const list = ext(ctx).market.fundingHistory(inst.symbol, from ?? -Infinity, to ?? ex.now()).slice(0, limit)
        .map(([t, rate]) => ({ symbol: inst.symbol, fundingRate: trim(rate, 8), fundingRateTimestamp: String(t) }));
      return { category: cat, list };
    },
  },
  {
    // https://bybit-exchange.github.io/docs/v5/market/recent-trade
    method: 'GET',
    path: '/v5/market/recent-trade',
    private: false,
    handler: (ctx) => {
      const { ex, params } = ctx;
      const cat = category(params, ['spot', 'linear']);
      const inst = instrument(ex, cat, params.symbol);
      const limit = cat === 'spot' ? intIn(params, 'limit', 60, 1, 60) : intIn(params, 'limit', 500, 1, 1000);
      return { category: cat, list: ext(ctx).market.recentTrades(inst.category, inst.symbol, limit) };
    },
  },
  {
    // https://bybit-exchange.github.io/docs/v5/market/open-interest
    method: 'GET',
    path: '/v5/market/open-interest',
    private: false,
    handler: ({ ex, params, startedAt }) => {
      const cat = category(params, ['linear']);
      const inst = instrument(ex, cat, params.symbol);
      const it = str(params.intervalTime);
      if (!it) throw paramsError('intervalTime is required');
      const step = OI_INTERVALS[it];
      if (!step) throw paramsError(`intervalTime must be one of ${Object.keys(OI_INTERVALS).join(', ')}`);
      const limit = intIn(params, 'limit', 50, 1, 200);
      const from = Math.max(time(params, 'startTime') ?? 0, inst.launchTime ?? startedAt);
      const to = Math.min(time(params, 'endTime') ?? Infinity, ex.now());
      if (time(params, 'startTime') !== undefined && time(params, 'endTime') !== undefined && time(params, 'startTime')! > time(params, 'endTime')!) throw paramsError('startTime must not be after endTime');
      // Points at every interval boundary in [from, to], newest first; only the page is computed.
      const newest = Math.floor(to / step) * step;
      const oldest = Math.ceil(from / step) * step;
      const total = newest >= oldest ? (newest - oldest) / step + 1 : 0;
      const offset = offsetOf(params);
      const times = Array.from({ length: Math.max(0, Math.min(limit, total - offset)) }, (_, k) => newest - (offset + k) * step);
      const single = openInterestAt(ex.allExecutions(), inst.symbol, [...times].reverse()).reverse();
      const qd = qtyDecimals(inst);
      const list = times.map((t, k) => ({ openInterest: fix(2 * single[k]!, Math.max(qd, 8)), singleOpenInterest: trim(single[k]!, qd), timestamp: String(t) }));
      return { category: cat, symbol: inst.symbol, list, nextPageCursor: offset + limit < total ? cursorAt(offset + limit) : '' };
    },
  },
  {
    // https://bybit-exchange.github.io/docs/v5/market/risk-limit
    method: 'GET',
    path: '/v5/market/risk-limit',
    private: false,
    handler: ({ ex, params }) => {
      const cat = category(params, ['linear']);
      const symbol = str(params.symbol);
      const insts = (symbol ? [instrument(ex, cat, symbol)] : ex.instruments.ofCategory('linear').filter(isTrading)) as LinearInstrument[];
      const offset = offsetOf(params);
      const page = insts.slice(offset, offset + RISK_LIMIT_SYMBOLS_PER_PAGE);
      const next = offset + RISK_LIMIT_SYMBOLS_PER_PAGE < insts.length ? cursorAt(offset + RISK_LIMIT_SYMBOLS_PER_PAGE) : '';
      return { category: cat, list: page.flatMap(riskTiers), nextPageCursor: next };
    },
  },
  {
    // https://bybit-exchange.github.io/docs/v5/order/dcp (the page's answer: retMsg "success")
    method: 'POST',
    path: '/v5/order/disconnected-cancel-all',
    private: true,
    okMsg: 'success',
    handler: (ctx) => {
      ext(ctx).dcp.set(ctx.uid, ctx.params);
      return {};
    },
  },
  {
    // https://bybit-exchange.github.io/docs/v5/account/dcp-info
    method: 'GET',
    path: '/v5/account/query-dcp-info',
    private: true,
    okMsg: 'success',
    handler: (ctx) => ({ dcpInfos: ext(ctx).dcp.info(ctx.uid) }),
  },
];
