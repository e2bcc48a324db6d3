// Reading Bybit for the reconciler, the kill switch and the CLI: list queries (paged), per-order
// queries, cancel and cancel-all, as Bybit's raw items. Every call goes through the one REST core
// (connectors/bybit-rest.ts createBybitCaller: rate limiter, error mapping, Bybit's clock).
import type { Category } from '../schemas/types.ts';
import type { BybitOp } from '../pipelines/exchange-port.ts';
import { createBybitCaller, type BybitAnswer, type BybitCallerDeps } from './bybit-rest.ts';
import type { RateLimiter } from './rate-limiter.ts';


export type Raw = Record<string, unknown>;

export interface ExchangeReader {
  readonly limiter: RateLimiter;
  /**
   * How far Bybit's clock is ahead of ours (negative: behind), from the `time` of its latest answer
   * (0 before any). Exchange times (updatedTime, execTime, list windows) are compared with
   * Bybit's clock, not ours: a skew would otherwise hide every fact newer than our clock.
   */
  clockSkewMs(): number;
  openOrders(category: Category, symbol?: string): Promise<Raw[]>;
  orderHistory(category: Category, startTime: number, endTime: number): Promise<Raw[]>;
  /** The order by orderLinkId (or orderId): realtime first, then history; null when Bybit has none. */
  queryOrder(category: Category, ref: { orderLinkId?: string; orderId?: string; symbol?: string }): Promise<Raw | null>;
  executions(category: Category, startTime: number, endTime: number): Promise<Raw[]>;
  /**
   * The unified account's transaction log of a category (GET /v5/account/transaction-log), every
   * entry with startTime <= transactionTime <= endTime. Bybit allows at most 7 days between the two.
   */
  transactionLog(category: Category, startTime: number, endTime: number): Promise<Raw[] & { truncated?: boolean }>;
  /** Closed P&L records of linear positions (GET /v5/position/closed-pnl), at most 7 days apart. */
  closedPnl(startTime: number, endTime: number): Promise<Raw[]>;
  positions(): Promise<Raw[]>;
  wallet(): Promise<Raw | null>;
  cancelOrder(category: Category, symbol: string, ref: { orderId?: string; orderLinkId?: string }): Promise<void>;
  cancelAll(category: Category, scope: { symbol?: string; settleCoin?: string }): Promise<Raw[]>;
}

type Paged = { list?: Raw[]; nextPageCursor?: string };

export interface ReaderDeps extends BybitCallerDeps {
  /** Most pages of one list query (a bound on one run's work, not on the facts). */
  maxPages?: number;
}

export function createExchangeReader(deps: ReaderDeps): ExchangeReader {
  const core = createBybitCaller(deps);
  const { client, limiter } = core;
  const maxPages = deps.maxPages ?? 20;
  const call = async <T>(op: BybitOp, path: string, category: string | undefined, fn: () => Promise<BybitAnswer<T>>): Promise<T> => (await core.call(op, path, category, fn)).result;

  /** Every page, up to maxPages; `truncated` when Bybit had more (a sum over the list would be short). */
  async function paged(path: string, category: string, fetch: (cursor: string | undefined) => Promise<BybitAnswer<Paged>>): Promise<Raw[] & { truncated?: boolean }> {
    const out: Raw[] & { truncated?: boolean } = [];
    let cursor: string | undefined;
    for (let page = 0; page < maxPages; page++) {
      const res = await call('query', path, category, () => fetch(cursor));
      out.push(...(res.list ?? []));
      cursor = res.nextPageCursor || undefined;
      if (!cursor) break;
    }
    if (cursor) out.truncated = true;
    return out;
  }

  // bybit-api's typed answers are narrower than what we read (Raw): the casts stay here.
  const c = client as unknown as Record<string, (p: Raw) => Promise<BybitAnswer<never>>>;
  const q = (m: string, p: Raw) => c[m]!.call(client, p) as Promise<BybitAnswer<never>>;

  return {
    limiter,
    clockSkewMs: core.clockSkewMs,
    openOrders: (category, symbol) =>
      paged('/v5/order/realtime', category, (cursor) =>
        q('getActiveOrders', { category, openOnly: 0, limit: 50, ...(symbol ? { symbol } : category === 'linear' ? { settleCoin: 'USDT' } : {}), ...(cursor ? { cursor } : {}) }),
      ),
    orderHistory: (category, startTime, endTime) =>
      paged('/v5/order/history', category, (cursor) => q('getHistoricOrders', { category, startTime, endTime, limit: 50, ...(cursor ? { cursor } : {}) })),
    async queryOrder(category, ref) {
      const by = ref.orderLinkId ? { orderLinkId: ref.orderLinkId } : { orderId: ref.orderId };
      const match = (o: Raw) => (ref.orderLinkId ? o.orderLinkId === ref.orderLinkId : o.orderId === ref.orderId);
      const params = { category, ...by, ...(ref.symbol ? { symbol: ref.symbol } : {}) };
      const rt = await call<Paged>('query', '/v5/order/realtime', category, () => q('getActiveOrders', params));
      const a = rt.list?.find(match);
      if (a) return a;
      const hist = await call<Paged>('query', '/v5/order/history', category, () => q('getHistoricOrders', params));
      return hist.list?.find(match) ?? null;
    },
    executions: (category, startTime, endTime) =>
      paged('/v5/execution/list', category, (cursor) => q('getExecutionList', { category, startTime, endTime, limit: 100, ...(cursor ? { cursor } : {}) })),
    transactionLog: (category, startTime, endTime) =>
      paged('/v5/account/transaction-log', category, (cursor) =>
        q('getTransactionLog', { accountType: 'UNIFIED', category, startTime, endTime, limit: 50, ...(cursor ? { cursor } : {}) }),
      ),
    closedPnl: (startTime, endTime) =>
      paged('/v5/position/closed-pnl', 'linear', (cursor) => q('getClosedPnL', { category: 'linear', startTime, endTime, limit: 100, ...(cursor ? { cursor } : {}) })),
    positions: () => paged('/v5/position/list', 'linear', (cursor) => q('getPositionInfo', { category: 'linear', settleCoin: 'USDT', limit: 200, ...(cursor ? { cursor } : {}) })),
    async wallet() {
      const res = await call<{ list?: Raw[] }>('query', '/v5/account/wallet-balance', undefined, () => q('getWalletBalance', { accountType: 'UNIFIED' }));
      return res.list?.[0] ?? null;
    },
    async cancelOrder(category, symbol, ref) {
      await call('cancel', '/v5/order/cancel', category, () => q('cancelOrder', { category, symbol, ...(ref.orderId ? { orderId: ref.orderId } : { orderLinkId: ref.orderLinkId }) }));
    },
    async cancelAll(category, scope) {
      const res = await call<{ list?: Raw[] }>('cancel', '/v5/order/cancel-all', category, () => q('cancelAllOrders', { category, ...scope }));
      return res.list ?? [];
    },
  };
}
