// The one adapter over bybit-api's RestClientV5. Which Bybit is chosen by configuration only:
//   sim      baseUrl http://127.0.0.1:BYBIT_SIM_PORT (the project's simulator)
//   testnet  testnet: true
//   demo     demoTrading: true
//   mainnet  bybit-api's default (api.bybit.com)
//
// Every call goes through the client-side rate limiter (connectors/rate-limiter.ts), feeds the
// answer's X-Bapi-Limit-* headers back into it, and turns anything but retCode 0 into an error of
// the one hierarchy via connectors/bybit-errors.ts. No retries here: the caller decides (a create
// must not be re-sent before its orderLinkId was queried; see pipelines/place.ts).
import { createHash } from 'node:crypto';
import { RestClientV5, type RestClientOptions, type AccountOrderV5 } from 'bybit-api';
import { z } from 'zod';
import { emptyToUndefined, int } from '../runtime/setting-types.ts';
import type { Clock } from '../runtime/clock.ts';
import { systemClock } from '../runtime/clock.ts';
import type { Logger } from '../runtime/logger.ts';
import { fromRetCode, fromThrown, RET } from './bybit-errors.ts';
import { BybitRetriableError, type Ack, type BatchItem, type BatchPlacement, type BybitOp, type FoundOrder, type OrderPlacement } from '../pipelines/exchange-port.ts';
import { RateLimiter, type RateLimitInfo } from './rate-limiter.ts';
import { signMessage } from './bybit-sign.ts';

export const name = 'bybit-rest';


/** Settings (BYBIT_ENV … BYBIT_RECV_WINDOW exist in runtime/config.ts; the rest are new there). */
export const configSchema = z.object({
  BYBIT_ENV: z.preprocess(emptyToUndefined, z.enum(['sim', 'testnet', 'demo', 'mainnet']).default('sim')),
  BYBIT_API_KEY: z.preprocess(emptyToUndefined, z.string().default('sim-key')),
  BYBIT_API_SECRET: z.preprocess(emptyToUndefined, z.string().default('sim-secret')),
  BYBIT_SIM_PORT: z.preprocess(emptyToUndefined, int.min(1).max(65535).default(9380)),
  BYBIT_RECV_WINDOW: z.preprocess(emptyToUndefined, int.positive().default(5000)),
  BYBIT_REST_TIMEOUT_MS: z
    .preprocess(emptyToUndefined, int.min(100).default(10000))
    .describe('Timeout of one Bybit REST request, ms; a create that times out is resolved by querying its orderLinkId.'),
  BYBIT_RATE_LIMIT_FRACTION: z
    .preprocess(emptyToUndefined, z.coerce.number().gt(0).max(1).default(0.8))
    .describe("Share of Bybit's per-UID rate limits the client uses (headroom for other clients of the account)."),
  BYBIT_RATE_LIMIT_MULTIPLIER: z
    .preprocess(emptyToUndefined, z.coerce.number().min(1).max(100_000).default(1))
    .describe('Multiplies the client-side per-UID rate limits; above 1 only with BYBIT_ENV=sim (benchmarks and simulations against a simulator with relaxed limits). The exchange\'s X-Bapi-Limit headers still win when lower.'),
}).superRefine((c, ctx) => {
  if (c.BYBIT_RATE_LIMIT_MULTIPLIER !== 1 && c.BYBIT_ENV !== 'sim') {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['BYBIT_RATE_LIMIT_MULTIPLIER'], message: `only 1 is allowed unless BYBIT_ENV=sim (BYBIT_ENV=${c.BYBIT_ENV}): Bybit's real limits are not raised by a client setting` });
  }
});
export type BybitRestConfig = z.output<typeof configSchema>;

export function parseConfig(env: Record<string, unknown> = process.env): BybitRestConfig {
  return configSchema.parse(env);
}

/** RestClientV5 options for an environment (exported for tests: the choice is config only). */
export function clientOptions(cfg: BybitRestConfig): RestClientOptions {
  const base: RestClientOptions = { key: cfg.BYBIT_API_KEY, secret: cfg.BYBIT_API_SECRET, recv_window: cfg.BYBIT_RECV_WINDOW, parseAPIRateLimits: true, customSignMessageFn: signMessage };
  switch (cfg.BYBIT_ENV) {
    case 'sim':
      return { ...base, baseUrl: `http://127.0.0.1:${cfg.BYBIT_SIM_PORT}` };
    case 'testnet':
      return { ...base, testnet: true };
    case 'demo':
      return { ...base, demoTrading: true };
    case 'mainnet':
      return base;
  }
}


/** The Bybit REST adapter: placement's port (pipelines/exchange-port.ts) plus its settings and limiter. */
export interface BybitRest extends OrderPlacement {
  readonly env: BybitRestConfig['BYBIT_ENV'];
  readonly limiter: RateLimiter;
}

/** A plain Bybit v5 answer, as bybit-api returns it with parseAPIRateLimits. */
export interface BybitAnswer<T> {
  retCode: number;
  retMsg: string;
  result: T;
  /** Bybit's server time of the answer, epoch ms. */
  time?: number;
  rateLimitApi?: { remainingRequests: number; maxRequests: number; resetAtTimestamp: number };
}

export interface BybitCallerDeps {
  config: BybitRestConfig;
  clock?: Clock;
  logger?: Logger;
  /** Share one limiter per API key in a process; default: a new one at `fraction` of the limits. */
  limiter?: RateLimiter;
  /** Share of Bybit's limits this caller's own limiter uses (default BYBIT_RATE_LIMIT_FRACTION). */
  fraction?: number;
  /** Extra RestClientV5 options (e.g. a baseUrl for a simulator on another host). */
  clientOverrides?: RestClientOptions;
}

/**
 * The one way this project calls Bybit's REST API (placement, the reconciler and kill switch's
 * reader, exchange sync): each request waits for the client-side rate limiter, the answer's
 * X-Bapi-Limit-* headers go back into it (a 10006 blocks the path until Bybit's reset), anything
 * but retCode 0 becomes an error of the one hierarchy (connectors/bybit-errors.ts), and Bybit's
 * clock is read from every answer. No retries: the caller decides.
 */
export interface BybitCaller {
  readonly client: RestClientV5;
  readonly limiter: RateLimiter;
  /** How far Bybit's clock is ahead of ours (negative: behind), from its latest answer (0 before any). */
  clockSkewMs(): number;
  /** `cost`: rate-limit slots the request takes (a batch: its number of orders). */
  call<T>(op: BybitOp, path: string, category: string | undefined, fn: () => Promise<BybitAnswer<T>>, cost?: number): Promise<Ack<T>>;
}

export function createBybitCaller(deps: BybitCallerDeps): BybitCaller {
  const cfg = deps.config;
  const clock = deps.clock ?? systemClock;
  const limiter = deps.limiter ?? new RateLimiter({ fraction: deps.fraction ?? cfg.BYBIT_RATE_LIMIT_FRACTION, multiplier: cfg.BYBIT_ENV === 'sim' ? cfg.BYBIT_RATE_LIMIT_MULTIPLIER : 1, clock });
  // maxRedirects 0: Bybit's API never redirects (and a redirected order request should fail, not be
  // followed); it also makes axios use node's http(s) directly instead of wrapping every request in
  // follow-redirects (2 % of the order manager's CPU in the bench profile).
  const client = new RestClientV5({ ...clientOptions(cfg), ...deps.clientOverrides }, { timeout: cfg.BYBIT_REST_TIMEOUT_MS, maxRedirects: 0 });
  // The API key is not a secret, but a short fingerprint is all a log line needs.
  const keyId = createHash('sha256').update(cfg.BYBIT_API_KEY).digest('hex').slice(0, 8);
  const log = deps.logger?.child({ connector: name, env: cfg.BYBIT_ENV, key: keyId });
  let skewMs = 0;

  async function call<T>(op: BybitOp, path: string, category: string | undefined, fn: () => Promise<BybitAnswer<T>>, cost = 1): Promise<Ack<T>> {
    const key = RateLimiter.key(path, category);
    const release = await limiter.acquire(key, cost);
    let ans: BybitAnswer<T>;
    try {
      ans = await fn();
    } catch (err) {
      const mapped = fromThrown(err, op);
      log?.debug({ path, category, code: mapped.code, err: mapped.message }, 'bybit request failed');
      throw mapped;
    } finally {
      release();
    }
    if (typeof ans.time === 'number' && Number.isFinite(ans.time)) skewMs = ans.time - clock.now();
    const info: RateLimitInfo | undefined = ans.rateLimitApi
      ? { limit: ans.rateLimitApi.maxRequests, remaining: ans.rateLimitApi.remainingRequests, resetAtMs: ans.rateLimitApi.resetAtTimestamp }
      : undefined;
    limiter.observe(key, info);
    if (ans.retCode === RET.OK) return { result: ans.result, retCode: ans.retCode, retMsg: ans.retMsg, ackedAt: clock.now() };
    if (ans.retCode === RET.RATE_LIMIT && info?.resetAtMs !== undefined) limiter.blockUntil(key, info.resetAtMs);
    const mapped = fromRetCode(ans.retCode, ans.retMsg, op, { resetAtMs: info?.resetAtMs, now: Date.now() });
    log?.debug({ path, category, retCode: ans.retCode, retMsg: ans.retMsg, code: mapped.code }, 'bybit refused request');
    throw mapped;
  }

  return { client, limiter, clockSkewMs: () => skewMs, call };
}

/** A create's request fields, the same for a single create and for each order of a batch. */
const createFields = (p: Parameters<OrderPlacement['createOrder']>[0]) => ({
  symbol: p.symbol,
  side: p.side,
  orderType: p.orderType,
  qty: p.qty,
  ...(p.price !== undefined ? { price: p.price } : {}),
  ...(p.marketUnit !== undefined ? { marketUnit: p.marketUnit } : {}),
  ...(p.timeInForce !== undefined ? { timeInForce: p.timeInForce } : {}),
  ...(p.reduceOnly ? { reduceOnly: true as const } : {}),
  orderLinkId: p.orderLinkId,
});

const CREATE = '/v5/order/create';
const AMEND = '/v5/order/amend';
const CANCEL = '/v5/order/cancel';
const REALTIME = '/v5/order/realtime';
const HISTORY = '/v5/order/history';
const CREATE_BATCH = '/v5/order/create-batch';
const AMEND_BATCH = '/v5/order/amend-batch';
const CANCEL_BATCH = '/v5/order/cancel-batch';
const BATCH_PATH = { create: CREATE_BATCH, amend: AMEND_BATCH, cancel: CANCEL_BATCH } as const;

/** Most orders per batch request (the batch-place / batch-amend / batch-cancel pages). */
export const BATCH_MAX: Readonly<Record<string, number>> = Object.freeze({ spot: 10, linear: 20 });

type BatchResult = { list: Array<{ orderId?: string; orderLinkId?: string }>; codes: Array<{ code?: number; msg?: string }> };

/** Placement's adapter: the order calls over the one REST core. */
export function createBybitRest(deps: BybitCallerDeps): BybitRest {
  const { client, limiter, call } = createBybitCaller(deps);

  const found = (o: AccountOrderV5, source: FoundOrder['source']): FoundOrder => ({
    orderId: o.orderId,
    orderLinkId: o.orderLinkId,
    orderStatus: o.orderStatus,
    qty: o.qty,
    price: o.price,
    createdTime: Number(o.createdTime),
    source,
  });

  /**
   * One batch request, its two answer lists turned into one item per order: code 0 is the order's
   * ack, any other code the error the single endpoint's answer would have become. An answer whose
   * lists do not match the request is uncertain for every order in it.
   */
  async function batchCall(op: 'create' | 'amend' | 'cancel', category: string, n: number, send: () => Promise<BybitAnswer<unknown> & { retExtInfo?: unknown }>): Promise<BatchItem[]> {
    const ack = await call<BatchResult>(
      op,
      BATCH_PATH[op],
      category,
      async () => {
        const r = await send();
        const result = (r.result ?? {}) as { list?: BatchResult['list'] };
        const ext = (r.retExtInfo ?? {}) as { list?: BatchResult['codes'] };
        return { ...r, result: { list: result.list ?? [], codes: ext.list ?? [] } };
      },
      n,
    );
    const { list, codes } = ack.result;
    if (list.length !== n || codes.length !== n) {
      throw new BybitRetriableError('batch_answer_malformed', 0, `batch answer with ${list.length} results and ${codes.length} codes for ${n} orders`, 200, true);
    }
    return list.map((item, k): BatchItem => {
      const code = Number(codes[k]!.code);
      const msg = String(codes[k]!.msg ?? '');
      if (code === RET.OK) return { ok: true, ack: { result: { orderId: String(item.orderId ?? ''), orderLinkId: String(item.orderLinkId ?? '') }, retCode: 0, retMsg: msg || 'OK', ackedAt: ack.ackedAt } };
      return { ok: false, error: fromRetCode(code, msg, op, { now: Date.now() }) };
    });
  }

  const batch: BatchPlacement = {
    limit: (category, op) => Math.min(BATCH_MAX[category] ?? 1, limiter.limitOf(RateLimiter.key(BATCH_PATH[op], category))),
    createOrders: (category, ps) =>
      batchCall('create', category, ps.length, () =>
        client.batchSubmitOrders(category, ps.map(createFields)),
      ),
    amendOrders: (category, ps) =>
      batchCall('amend', category, ps.length, () =>
        client.batchAmendOrders(
          category,
          ps.map((p) => ({
            symbol: p.symbol,
            ...(p.orderId ? { orderId: p.orderId } : { orderLinkId: p.orderLinkId }),
            ...(p.qty !== undefined ? { qty: p.qty } : {}),
            ...(p.price !== undefined ? { price: p.price } : {}),
          })),
        ),
      ),
    cancelOrders: (category, ps) =>
      batchCall('cancel', category, ps.length, () => client.batchCancelOrders(category, ps.map((p) => ({ symbol: p.symbol, ...(p.orderId ? { orderId: p.orderId } : { orderLinkId: p.orderLinkId }) })))),
  };

  return {
    env: deps.config.BYBIT_ENV,
    limiter,
    batch,
    createOrder: (p) =>
      call('create', CREATE, p.category, () =>
        client.submitOrder({ category: p.category, ...createFields(p) }),
      ),
    amendOrder: (p) =>
      call('amend', AMEND, p.category, () =>
        client.amendOrder({
          category: p.category,
          symbol: p.symbol,
          ...(p.orderId ? { orderId: p.orderId } : { orderLinkId: p.orderLinkId }),
          ...(p.qty !== undefined ? { qty: p.qty } : {}),
          ...(p.price !== undefined ? { price: p.price } : {}),
        }),
      ),
    cancelOrder: (p) =>
      call('cancel', CANCEL, p.category, () =>
        client.cancelOrder({ category: p.category, symbol: p.symbol, ...(p.orderId ? { orderId: p.orderId } : { orderLinkId: p.orderLinkId }) }),
      ),
    async findOrder(ref) {
      const q = { category: ref.category, symbol: ref.symbol, ...(ref.orderId ? { orderId: ref.orderId } : { orderLinkId: ref.orderLinkId }) };
      const match = (o: AccountOrderV5) => (ref.orderId ? o.orderId === ref.orderId : o.orderLinkId === ref.orderLinkId);
      const rt = await call('query', REALTIME, ref.category, () => client.getActiveOrders(q));
      const a = rt.result.list?.find(match);
      if (a) return found(a, 'realtime');
      const hist = await call('query', HISTORY, ref.category, () => client.getHistoricOrders(q));
      const h = hist.result.list?.find(match);
      return h ? found(h, 'history') : null;
    },
  };
}
