// REST routes of the simulator: Bybit v5 paths, request parameters and `result` shapes.
// A handler returns the `result` object or throws a SimError; the server wraps both in Bybit's
// {retCode, retMsg, result, retExtInfo, time} envelope.
import { paramsError } from './errors.ts';
import type { Exchange } from './exchange.ts';
import { isTrading, type Instrument, type LinearInstrument } from './instruments.ts';
import { instrumentItem, orderbook, ticker } from './market-data.ts';
import { fix, trim } from './num.ts';
import { isOpen, type SimOrder } from './orders.ts';
import { aggregate, KLINE_INTERVALS } from './price-process.ts';
import { ROUTES_EXT, type SimExt } from './routes-ext.ts';
import { executionRest, orderRest, positionRest, walletItem } from './views.ts';

export interface RouteCtx {
  ex: Exchange;
  /** Caller's account (private routes). */
  uid: string;
  params: Record<string, unknown>;
  /** Set by the server when a fault turns this order into an accepted-then-rejected one. */
  forceReject: boolean;
  /** Exchange start time, for launchTime. */
  startedAt: number;
  /** Market history and disconnection protection (routes-ext.ts). */
  ext?: SimExt;
}

export interface Route {
  method: 'GET' | 'POST';
  path: string;
  private: boolean;
  handler: (ctx: RouteCtx) => unknown;
  /** retMsg of a success when the page shows another than "OK". */
  okMsg?: string;
}

const DAY = 86_400_000;

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : undefined);

function requireCategory(p: Record<string, unknown>, allowed: readonly string[]): string {
  const c = str(p.category);
  if (!c) throw paramsError('category is required');
  if (!allowed.includes(c)) throw paramsError(`category ${c} is not supported (${allowed.join(', ')})`);
  return c;
}

function intParam(p: Record<string, unknown>, name: string, def: number, min: number, max: number): number {
  const raw = str(p[name]);
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw paramsError(`${name} must be an integer in [${min}, ${max}]`);
  return n;
}

/** Opaque cursor: base64url of the offset of the next page. */
function page<T>(items: T[], p: Record<string, unknown>, def: number, max: number): { slice: T[]; next: string } {
  const limit = intParam(p, 'limit', def, 1, max);
  let offset = 0;
  const c = str(p.cursor);
  if (c) {
    const n = Number(Buffer.from(c, 'base64url').toString('utf8').replace(/^o/, ''));
    if (!Number.isInteger(n) || n < 0) throw paramsError('cursor invalid');
    offset = n;
  }
  const slice = items.slice(offset, offset + limit);
  const next = offset + limit < items.length ? Buffer.from(`o${offset + limit}`).toString('base64url') : '';
  return { slice, next };
}

function timeRange(p: Record<string, unknown>, now: number): { from: number; to: number } {
  const s = str(p.startTime) ?? str(p.start);
  const e = str(p.endTime) ?? str(p.end);
  let from: number, to: number;
  if (s && e) [from, to] = [Number(s), Number(e)];
  else if (s) [from, to] = [Number(s), Number(s) + 7 * DAY];
  else if (e) [from, to] = [Number(e) - 7 * DAY, Number(e)];
  else [from, to] = [now - 7 * DAY, now];
  if (!Number.isFinite(from) || !Number.isFinite(to) || to < from) throw paramsError('startTime/endTime invalid');
  if (to - from > 7 * DAY) throw paramsError('The time range between startTime and endTime cannot exceed 7 days');
  return { from, to };
}

function instrumentFor(ex: Exchange, category: string, symbol: unknown): Instrument {
  const s = str(symbol);
  if (!s) throw paramsError('symbol is required');
  const i = ex.instruments.get(category, s);
  if (!i) throw paramsError('symbol invalid');
  return i;
}

const newestFirst = <T extends { createdTime?: number; execTime?: number }>(xs: T[]) => [...xs].reverse();

function orderMatches(ex: Exchange, o: SimOrder, p: Record<string, unknown>): boolean {
  const orderId = str(p.orderId);
  const orderLinkId = str(p.orderLinkId);
  if (orderId) return o.orderId === orderId;
  if (orderLinkId) return o.orderLinkId === orderLinkId;
  const symbol = str(p.symbol);
  if (symbol) return o.symbol === symbol;
  const inst = ex.instruments.get(o.category, o.symbol)!;
  const baseCoin = str(p.baseCoin);
  if (baseCoin) return inst.baseCoin === baseCoin;
  const settleCoin = str(p.settleCoin);
  if (settleCoin) return inst.quoteCoin === settleCoin;
  return true;
}

function ordersResult(ex: Exchange, category: string, orders: SimOrder[], p: Record<string, unknown>) {
  const { slice, next } = page(orders, p, 20, 50);
  return { category, list: slice.map((o) => orderRest(o, ex.instruments.get(o.category, o.symbol)!)), nextPageCursor: next };
}

export const ROUTES: Route[] = [
  // ---- market ----
  {
    method: 'GET',
    path: '/v5/market/time',
    private: false,
    handler: ({ ex }) => {
      const now = ex.now();
      return { timeSecond: String(Math.floor(now / 1000)), timeNano: `${now}000000` };
    },
  },
  {
    method: 'GET',
    path: '/v5/market/instruments-info',
    private: false,
    handler: ({ ex, params, startedAt }) => {
      const category = requireCategory(params, ['spot', 'linear']);
      const symbol = str(params.symbol);
      const baseCoin = str(params.baseCoin);
      const status = str(params.status) ?? 'Trading'; // by default Bybit lists Trading symbols only
      const list = ex.instruments
        .ofCategory(category as 'spot' | 'linear')
        .filter((i) => (!symbol || i.symbol === symbol) && (!baseCoin || i.baseCoin === baseCoin) && (i.status ?? 'Trading') === status)
        .map((i) => instrumentItem(i, startedAt, ex.instruments.list.indexOf(i) + 1));
      return category === 'spot' ? { category, list } : { category, list, nextPageCursor: '' };
    },
  },
  {
    method: 'GET',
    path: '/v5/market/tickers',
    private: false,
    handler: ({ ex, params }) => {
      const category = requireCategory(params, ['spot', 'linear']);
      const symbol = str(params.symbol);
      if (symbol && !ex.instruments.get(category, symbol)) throw paramsError('symbol invalid');
      // Without a symbol, delisted instruments are left out, as instruments-info leaves them out.
      const list = ex.instruments.ofCategory(category as 'spot' | 'linear').filter((i) => (symbol ? i.symbol === symbol : isTrading(i))).map((i) => ticker(ex, i));
      return { category, list };
    },
  },
  {
    method: 'GET',
    path: '/v5/market/orderbook',
    private: false,
    handler: ({ ex, params }) => {
      const category = requireCategory(params, ['spot', 'linear']);
      const inst = instrumentFor(ex, category, params.symbol);
      const limit = intParam(params, 'limit', category === 'spot' ? 1 : 25, 1, category === 'spot' ? 200 : 500);
      const now = ex.now();
      return { ...orderbook(ex, inst, limit), ts: now, u: ex.prices.steps, seq: ex.prices.steps, cts: now };
    },
  },
  {
    method: 'GET',
    path: '/v5/market/kline',
    private: false,
    handler: ({ ex, params }) => {
      const category = requireCategory(params, ['spot', 'linear']);
      const inst = instrumentFor(ex, category, params.symbol);
      const interval = str(params.interval);
      if (!interval || !(KLINE_INTERVALS as readonly string[]).includes(interval)) throw paramsError('interval invalid');
      const limit = intParam(params, 'limit', 200, 1, 1000);
      const now = ex.now();
      const end = str(params.end) ? Number(params.end) : now;
      const start = str(params.start) ? Number(params.start) : 0;
      if (!Number.isFinite(end) || !Number.isFinite(start)) throw paramsError('start/end invalid');
      const rows = aggregate(ex.prices.candles(inst.symbol, 0, end), interval).filter((r) => r.start >= start && r.start <= end);
      const pd = (x: number) => fix(x, Number(inst.tickSize.split('.')[1]?.length ?? 0));
      const list = rows
        .slice(-limit)
        .reverse()
        .map((r) => [String(r.start), pd(r.open), pd(r.high), pd(r.low), pd(r.close), trim(r.volume, 8), trim(r.turnover, 8)]);
      return { category, symbol: inst.symbol, list };
    },
  },
  // ---- trade ----
  {
    method: 'POST',
    path: '/v5/order/create',
    private: true,
    handler: ({ ex, uid, params, forceReject }) => ex.placeOrder(uid, params, { source: 'rest', forceReject }),
  },
  {
    method: 'POST',
    path: '/v5/order/amend',
    private: true,
    handler: ({ ex, uid, params }) => ex.amendOrder(uid, params),
  },
  {
    method: 'POST',
    path: '/v5/order/cancel',
    private: true,
    handler: ({ ex, uid, params }) => ex.cancelOrder(uid, params),
  },
  {
    method: 'POST',
    path: '/v5/order/cancel-all',
    private: true,
    handler: ({ ex, uid, params }) => ({ list: ex.cancelAll(uid, params), success: '1' }),
  },
  {
    method: 'GET',
    path: '/v5/order/realtime',
    private: true,
    handler: ({ ex, uid, params }) => {
      const category = requireCategory(params, ['spot', 'linear']);
      const byId = str(params.orderId) ?? str(params.orderLinkId);
      if (category === 'linear' && !byId && !str(params.symbol) && !str(params.baseCoin) && !str(params.settleCoin)) {
        throw paramsError('symbol, baseCoin, settleCoin: one of them is required for linear');
      }
      const openOnly = intParam(params, 'openOnly', 0, 0, 2);
      let orders = ex.allOrders(uid).filter((o) => o.category === category && o.orderStatus !== 'Created' && orderMatches(ex, o, params));
      if (!byId) orders = openOnly === 0 ? orders.filter(isOpen) : orders.filter((o) => !isOpen(o)).slice(-500);
      return ordersResult(ex, category, newestFirst(orders), params);
    },
  },
  {
    method: 'GET',
    path: '/v5/order/history',
    private: true,
    handler: ({ ex, uid, params }) => {
      const category = requireCategory(params, ['spot', 'linear']);
      const byId = str(params.orderId) ?? str(params.orderLinkId);
      const { from, to } = timeRange(params, ex.now());
      const status = str(params.orderStatus);
      const orders = ex
        .allOrders(uid)
        .filter((o) => o.category === category && o.orderStatus !== 'Created' && orderMatches(ex, o, params))
        .filter((o) => byId || (o.createdTime >= from && o.createdTime <= to))
        .filter((o) => !status || o.orderStatus === status);
      return ordersResult(ex, category, newestFirst(orders), params);
    },
  },
  {
    method: 'GET',
    path: '/v5/execution/list',
    private: true,
    handler: ({ ex, uid, params }) => {
      const category = requireCategory(params, ['spot', 'linear']);
      const orderId = str(params.orderId);
      const orderLinkId = str(params.orderLinkId);
      const symbol = str(params.symbol);
      const baseCoin = str(params.baseCoin);
      const execType = str(params.execType);
      if (execType && execType !== 'Trade') return { category, list: [], nextPageCursor: '' };
      const { from, to } = timeRange(params, ex.now());
      const execs = ex
        .allExecutions(uid)
        .filter((e) => e.category === category)
        .filter((e) => {
          if (orderId) return e.orderId === orderId;
          if (orderLinkId) return e.orderLinkId === orderLinkId;
          if (symbol && e.symbol !== symbol) return false;
          if (baseCoin && ex.instruments.get(e.category, e.symbol)!.baseCoin !== baseCoin) return false;
          return e.execTime >= from && e.execTime <= to;
        });
      const { slice, next } = page(newestFirst(execs), params, 50, 100);
      return { category, list: slice.map((e) => executionRest(e, ex.instruments.get(e.category, e.symbol)!)), nextPageCursor: next };
    },
  },
  // ---- position ----
  {
    method: 'GET',
    path: '/v5/position/list',
    private: true,
    handler: ({ ex, uid, params }) => {
      const category = requireCategory(params, ['linear']);
      const symbol = str(params.symbol);
      const settleCoin = str(params.settleCoin);
      if (!symbol && !settleCoin) throw paramsError('symbol or settleCoin is required');
      const now = ex.now();
      let rows = ex.positions(uid);
      if (symbol) {
        const inst = instrumentFor(ex, 'linear', symbol) as LinearInstrument;
        rows = rows.filter((r) => r.position.symbol === symbol);
        if (rows.length === 0) {
          const acc = ex.account(uid);
          const zero = { symbol, size: 0, avgPrice: 0, leverage: acc.leverageOf(symbol), cumRealisedPnl: 0, curRealisedPnl: 0, createdTime: now, updatedTime: now, seq: -1 };
          rows = [{ position: zero, instrument: inst, figures: ex.positionFigures(zero, inst) }];
        }
      } else {
        rows = rows.filter((r) => r.position.size !== 0 && r.instrument.settleCoin === settleCoin);
      }
      const { slice, next } = page(rows, params, 20, 200);
      return { category, list: slice.map((r) => positionRest(r.position, r.instrument, r.figures)), nextPageCursor: next };
    },
  },
  {
    method: 'POST',
    path: '/v5/position/set-leverage',
    private: true,
    handler: ({ ex, uid, params }) => {
      ex.setLeverage(uid, String(params.category), String(params.symbol), params.buyLeverage, params.sellLeverage);
      return {};
    },
  },
  // ---- account ----
  {
    method: 'GET',
    path: '/v5/account/wallet-balance',
    private: true,
    handler: ({ ex, uid, params }) => {
      const accountType = str(params.accountType);
      if (!accountType) throw paramsError('accountType is required');
      if (accountType !== 'UNIFIED') throw paramsError('accountType only support UNIFIED');
      const coins = str(params.coin)?.split(',').map((c) => c.trim()).filter(Boolean);
      const w = ex.wallet(uid);
      const filtered = {
        ...w,
        coins: w.coins.filter((c) => (coins ? coins.includes(c.coin) : c.wallet !== 0 || c.upl !== 0)),
      };
      return { list: [walletItem(filtered)] };
    },
  },
  {
    method: 'GET',
    path: '/v5/account/fee-rate',
    private: true,
    handler: ({ ex, params }) => {
      const category = requireCategory(params, ['spot', 'linear']);
      const symbol = str(params.symbol);
      const list = ex.instruments
        .ofCategory(category as 'spot' | 'linear')
        .filter((i) => !symbol || i.symbol === symbol)
        .map((i) => ({ symbol: i.symbol, baseCoin: category === 'spot' ? '' : i.baseCoin, takerFeeRate: trim(i.takerFee, 8), makerFeeRate: trim(i.makerFee, 8) }));
      return { list };
    },
  },
  {
    method: 'GET',
    path: '/v5/account/info',
    private: true,
    handler: ({ ex }) => ({
      unifiedMarginStatus: 5,
      marginMode: 'REGULAR_MARGIN',
      isMasterTrader: false,
      spotHedgingStatus: 'OFF',
      updatedTime: String(ex.now()),
      dcpStatus: 'OFF',
      timeWindow: 0,
      smpGroup: 0,
    }),
  },
  ...ROUTES_EXT,
];


export function findRoute(method: string, path: string): Route | undefined | 'method' {
  const r = ROUTES.find((x) => x.path === path);
  if (!r) return undefined;
  return r.method === method ? r : 'method';
}
