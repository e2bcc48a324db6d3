// Batch order endpoints (appended to ROUTES in routes.ts): create-batch, amend-batch and
// cancel-batch, as the v5 pages document them:
//   https://bybit-exchange.github.io/docs/v5/order/batch-place
//   https://bybit-exchange.github.io/docs/v5/order/batch-amend
//   https://bybit-exchange.github.io/docs/v5/order/batch-cancel
// Request {category, request: [...]}; at most 10 orders (spot) or 20 (linear) per request. Each
// order goes through exactly what a single create / amend / cancel does (Exchange.placeOrder,
// amendOrder, cancelOrder), one after another in request order; one refused order does not stop
// the others. The answer is retCode 0 with two lists of the same length and order:
// result.list[] (the order's category, symbol, orderId, orderLinkId; create also createAt) and
// retExtInfo.list[] ({code, msg}: 0 "OK", or the retCode and retMsg the single endpoint would
// have answered). A refused order's result item keeps the symbol and ids sent, orderId "" when
// none was (the batch-cancel page's example of a 170213); a refused create has createAt "". Orders beyond what the rate limit
// leaves in this second fail one by one with 10006 (sim/rate-limit.ts; `admitted` below).
import { paramsError, RetCode, SimError } from './errors.ts';
import type { Exchange } from './exchange.ts';
import type { Route, RouteCtx } from './routes.ts';

/** An answer whose envelope carries a retExtInfo besides the result (the server sends both). */
export class WithExtInfo {
  constructor(readonly result: unknown, readonly retExtInfo: Record<string, unknown>) {}
}

/** Most orders per batch request, by category (the pages: 10 spot, 20 linear / inverse / option). */
export const BATCH_MAX: Readonly<Record<string, number>> = Object.freeze({ spot: 10, linear: 20 });

export const BATCH_PATHS = ['/v5/order/create-batch', '/v5/order/amend-batch', '/v5/order/cancel-batch'] as const;

/**
 * Orders in a batch request, for rate-limit accounting; 1 for a request that will be refused as a
 * whole (no list, an empty or too long one, an unknown category), which then counts as one request.
 */
export function batchCost(params: Record<string, unknown>): number {
  const max = typeof params.category === 'string' ? BATCH_MAX[params.category] : undefined;
  const list = params.request;
  return max !== undefined && Array.isArray(list) && list.length >= 1 && list.length <= max ? list.length : 1;
}

type Item = Record<string, unknown>;
type Outcome = { code: number; msg: string; item: Record<string, unknown> };

const text = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');

function batch(ctx: RouteCtx, run: (ex: Exchange, uid: string, p: Item) => Record<string, unknown>, refused: (category: string, p: Item) => Record<string, unknown>): WithExtInfo {
  const { ex, uid, params } = ctx;
  const category = text(params.category);
  if (!category) throw paramsError('category is required');
  const max = BATCH_MAX[category];
  if (max === undefined) throw paramsError(`category ${category} is not supported (spot, linear)`);
  const list = params.request;
  if (!Array.isArray(list) || list.length === 0) throw paramsError('request is required: a non-empty array of orders');
  if (list.length > max) throw paramsError(`request: at most ${max} orders per batch for ${category}, got ${list.length}`);
  const admitted = ctx.admitted ?? list.length;
  const out: Outcome[] = list.map((raw: unknown, k) => {
    const isObject = raw !== null && typeof raw === 'object' && !Array.isArray(raw);
    // The outer category applies to every order (an order's own category field is not read).
    const p: Item = isObject ? { ...(raw as Item), category } : { category };
    if (k >= admitted) return { code: RetCode.RATE_LIMIT, msg: 'Too many visits!', item: refused(category, p) };
    if (!isObject) return { code: RetCode.PARAMS, msg: 'params error: an order of request is not an object', item: refused(category, p) };
    try {
      return { code: RetCode.OK, msg: 'OK', item: run(ex, uid, p) };
    } catch (e) {
      if (!(e instanceof SimError)) throw e;
      return { code: e.retCode, msg: e.retMsg, item: refused(category, p) };
    }
  });
  return new WithExtInfo({ list: out.map((o) => o.item) }, { list: out.map((o) => ({ code: o.code, msg: o.msg })) });
}

const ref = (category: string, p: Item, orderId: string, orderLinkId: string) => ({ category, symbol: text(p.symbol), orderId, orderLinkId });

export const BATCH_ROUTES: Route[] = [
  {
    method: 'POST',
    path: '/v5/order/create-batch',
    private: true,
    handler: (ctx) =>
      batch(
        ctx,
        (ex, uid, p) => {
          const r = ex.placeOrder(uid, p, { source: 'rest', forceReject: ctx.rejectOrder?.() ?? false });
          const createdTime = ex.findOrder(uid, { orderId: r.orderId })?.createdTime ?? ex.now();
          return { ...ref(text(p.category), p, r.orderId, r.orderLinkId), createAt: String(createdTime) };
        },
        (category, p) => ({ ...ref(category, p, '', text(p.orderLinkId)), createAt: '' }),
      ),
  },
  {
    method: 'POST',
    path: '/v5/order/amend-batch',
    private: true,
    handler: (ctx) =>
      batch(
        ctx,
        (ex, uid, p) => {
          const r = ex.amendOrder(uid, p);
          return ref(text(p.category), p, r.orderId, r.orderLinkId);
        },
        (category, p) => ref(category, p, text(p.orderId), text(p.orderLinkId)),
      ),
  },
  {
    method: 'POST',
    path: '/v5/order/cancel-batch',
    private: true,
    handler: (ctx) =>
      batch(
        ctx,
        (ex, uid, p) => {
          const r = ex.cancelOrder(uid, p);
          return ref(text(p.category), p, r.orderId, r.orderLinkId);
        },
        // The page's example of a refused cancel: the ids as sent ("" for the one not sent).
        (category, p) => ref(category, p, text(p.orderId), text(p.orderLinkId)),
      ),
  },
];
