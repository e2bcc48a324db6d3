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
import { closedPnlItem } from './closed-pnl.ts';
import { accountInfo, setMarginMode } from './margin-mode.ts';
import { setLeverage, switchPositionMode, symbolPositions, type PositionRow } from './positions.ts';
import { setTradingStop } from './trading-stop.ts';
import { txLogItem } from './transaction-log.ts';
import { ROUTES_EXT, type SimExt } from './routes-ext.ts';
import { BATCH_ROUTES } from './batch-routes.ts';
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
  /** Batch routes: how many of the request's orders the rate limit admitted (the rest fail with 10006). */
  admitted?: number;
  /** Batch create: asks the fault controller, order by order, whether to turn it into an accepted-then-rejected one. */
  rejectOrder?: () => boolean;
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

/** startTime / endTime as Bybit reads them: one alone spans `window` from it, neither the last `window`, both at most 7 days. */
function timeRange(p: Record<string, unknown>, now: number, window = 7 * DAY): { from: number; to: number } {
  const s = str(p.startTime) ?? str(p.start);
  const e = str(p.endTime) ?? str(p.end);
  let from: number, to: number;
  if (s && e) [from, to] = [Number(s), Number(e)];
  else if (s) [from, to] = [Number(s), Number(s) + window];
  else if (e) [from, to] = [Number(e) - window, Number(e)];
  else [from, to] = [now - window, now];
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

/** orderFilter: Order (ordinary orders), StopOrder (conditional ones: TP/SL, trailing stops); unset: all. */
const kindMatches = (o: SimOrder, filter: string | undefined): boolean => !filter || (filter === 'StopOrder' ? o.stopOrderType !== '' : filter === 'Order' ? o.stopOrderType === '' : true);

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
      const filter = str(params.orderFilter);
      let orders = ex.allOrders(uid).filter((o) => o.category === category && o.orderStatus !== 'Created' && orderMatches(ex, o, params) && kindMatches(o, filter));
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
        .filter((o) => (!status || o.orderStatus === status) && kindMatches(o, str(params.orderFilter)));
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
      const { from, to } = timeRange(params, ex.now());
      const execs = ex
        .allExecutions(uid)
        .filter((e) => e.category === category && (!execType || e.execType === execType))
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
      let rows: PositionRow[];
      if (symbol) {
        rows = symbolPositions(ex, uid, instrumentFor(ex, 'linear', symbol) as LinearInstrument);
      } else {
        rows = ex.positions(uid).filter((r) => r.position.size !== 0 && r.instrument.settleCoin === settleCoin);
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
      setLeverage(ex, uid, params);
      return {};
    },
  },
  // ---- position and account settings, TP/SL, closed P&L, transaction log ----
  {
    method: 'POST',
    path: '/v5/position/switch-mode',
    private: true,
    handler: ({ ex, uid, params }) => {
      switchPositionMode(ex, uid, params);
      return {};
    },
  },
  {
    method: 'POST',
    path: '/v5/position/trading-stop',
    private: true,
    handler: ({ ex, uid, params }) => {
      setTradingStop(ex, uid, params);
      return {};
    },
  },
  {
    method: 'POST',
    path: '/v5/account/set-margin-mode',
    private: true,
    handler: ({ ex, uid, params }) => setMarginMode(ex, uid, params),
  },
  {
    method: 'GET',
    path: '/v5/position/closed-pnl',
    private: true,
    handler: ({ ex, uid, params }) => {
      const category = requireCategory(params, ['linear']);
      const symbol = str(params.symbol);
      if (symbol) instrumentFor(ex, 'linear', symbol);
      const { from, to } = timeRange(params, ex.now());
      const records = ex.closedPnl(uid).filter((r) => (!symbol || r.symbol === symbol) && r.createdTime >= from && r.createdTime <= to);
      const { slice, next } = page(newestFirst(records), params, 50, 100);
      return { category, list: slice.map((r) => closedPnlItem(r, ex.instruments.get('linear', r.symbol) as LinearInstrument)), nextPageCursor: next };
    },
  },
  {
    method: 'GET',
    path: '/v5/account/transaction-log',
    private: true,
    handler: ({ ex, uid, params }) => {
      const accountType = str(params.accountType);
      if (accountType && accountType !== 'UNIFIED') throw paramsError('accountType only support UNIFIED');
      const category = str(params.category);
      if (category && !['spot', 'linear'].includes(category)) throw paramsError(`category ${category} is not supported (spot, linear)`);
      const currency = str(params.currency);
      const baseCoin = str(params.baseCoin);
      const type = str(params.type);
      const subType = str(params.transSubType);
      const { from, to } = timeRange(params, ex.now(), DAY);
      const entries = ex.transactionLog(uid).filter((e) =>
        (!category || e.category === category)
        && (!currency || e.currency === currency)
        && (!baseCoin || (e.category !== '' && ex.instruments.get(e.category, e.symbol)?.baseCoin === baseCoin))
        && (!type || e.type === type)
        && !subType // no entry here comes from a move position (transSubType '')
        && e.transactionTime >= from && e.transactionTime <= to);
      const { slice, next } = page([...entries].reverse(), params, 20, 50);
      return { list: slice.map(txLogItem), nextPageCursor: next };
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
    handler: ({ ex, uid, startedAt }) => accountInfo(ex, uid, startedAt),
  },
  ...ROUTES_EXT,
  ...BATCH_ROUTES,
];


export function findRoute(method: string, path: string): Route | undefined | 'method' {
  const r = ROUTES.find((x) => x.path === path);
  if (!r) return undefined;
  return r.method === method ? r : 'method';
}
