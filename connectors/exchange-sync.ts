// Keeps the exchange facts the risk stage sizes against fresh: instrument filters, tickers, wallet
// balances and linear positions, read from Bybit REST at start (before the service reports ready)
// and then on node-cron schedules inside the service.
//
// One writer per table: this unit writes only `instruments` (its one writer: instrument filters are
// reference data, not a stream of exchange facts). The tickers, the wallet and the positions it reads
// are exchange facts like the websocket's, so it publishes them as records on market.tickers /
// exchange.wallet / exchange.positions (source rest), and the tracking stage, the one writer of
// `balances` and `positions`, and the ticker projection, the one writer of `tickers`, project them
// with the websocket's (and, for the account, the reconciler's), newest exchange time first. At start it waits until the projection holds what it
// published, so the risk stage never sizes against prices or an account the order manager has not
// loaded yet (at most 30 s inside start(), so the units after it still start when tracking is down;
// it is not ready until then). Orders are not touched here: their state has one writer too, the
// tracking stage.
import { setTimeout as sleep } from 'node:timers/promises';
import cron, { type ScheduledTask } from 'node-cron';
import { z } from 'zod';
import { emptyToUndefined } from '../runtime/setting-types.ts';
import { sql, type DatabasePool } from '../runtime/db.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Clock } from '../runtime/clock.ts';
import { retry, connectWithBackoff } from '../runtime/retry.ts';
import type { KafkaPort, ProducerPort } from '../runtime/kafka.ts';
import type { Codec } from '../runtime/codec.ts';
import { topicName } from '../runtime/topics.ts';
import type { Position, Ticker, WalletBalance } from '../schemas/types.ts';
import { positionOf, tickerOf, walletOf } from './exchange-records.ts';
import type { Raw } from './exchange-reader.ts';
import { createBybitCaller, parseConfig as restConfig, type BybitAnswer } from './bybit-rest.ts';

export const name = 'exchange-sync';

/** Pages of instruments-info read per category at most (1,000 instruments a page). */
const MAX_INSTRUMENT_PAGES = 50;

/** Longest wait inside start() for the tracking stage to project what the first sync published. */
const PROJECTION_WAIT_MS = 30_000;


export const configSchema = z.object({
  SYNC_INSTRUMENTS_CRON: z.preprocess(emptyToUndefined, z.string().default('*/10 * * * *')).describe('node-cron schedule of the instrument-filter refresh from Bybit REST.'),
  SYNC_MARKET_CRON: z.preprocess(emptyToUndefined, z.string().default('*/5 * * * * *')).describe('node-cron schedule (with seconds) of the ticker, wallet and position snapshots read from Bybit REST and published to market.tickers, exchange.wallet and exchange.positions.'),
  SYNC_CATEGORIES: z
    .preprocess((v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v ?? ['spot', 'linear']), z.array(z.enum(['spot', 'linear'])).min(1))
    .describe('Bybit categories whose instruments exchange sync keeps in PostgreSQL and whose REST tickers it publishes to market.tickers.'),
});
export type ExchangeSyncConfig = z.output<typeof configSchema>;

export function parseConfig(env: Record<string, unknown> = process.env): ExchangeSyncConfig {
  return configSchema.parse(env);
}

const dec = (v: unknown): string | null => (v === undefined || v === null || v === '' ? null : String(v));
const pos = (v: unknown): string | null => {
  const d = dec(v);
  return d !== null && Number(d) > 0 ? d : null;
};

export interface ExchangeSync {
  syncInstruments(): Promise<number>;
  syncMarket(): Promise<{ tickers: number; coins: number; positions: number }>;
  start(): Promise<void>;
  stop(): Promise<void>;
  ready(): boolean;
}

export interface ExchangeSyncDeps {
  db: DatabasePool;
  /** Where the ticker, wallet and position facts go (market.tickers, exchange.wallet, exchange.positions). */
  kafka: KafkaPort;
  codec: Codec;
  topicPrefix: string;
  logger: Logger;
  clock: Clock;
  config: ExchangeSyncConfig;
  env: Record<string, unknown>;
  assets: readonly string[];
}

export function createExchangeSync(deps: ExchangeSyncDeps): ExchangeSync {
  // Through the one REST core: the rate limiter (its own share of the limits), errors mapped as
  // everywhere (bad credentials are fatal, not retried forever), Bybit's clock.
  const core = createBybitCaller({ config: restConfig(deps.env), clock: deps.clock, logger: deps.logger });
  const rest = core.client;
  const log = deps.logger;
  const call = async <T>(path: string, category: string | undefined, fn: () => Promise<BybitAnswer<T>>): Promise<T> => (await core.call('query', path, category, fn)).result;
  const wanted = (symbol: string) => deps.assets.length === 0 || deps.assets.includes(symbol);
  const tasks: ScheduledTask[] = [];
  const abort = new AbortController();
  let loaded = false;
  let producer: ProducerPort | null = null;
  const walletTopic = topicName('exchange.wallet', deps.topicPrefix);
  const positionsTopic = topicName('exchange.positions', deps.topicPrefix);
  const tickersTopic = topicName('market.tickers', deps.topicPrefix);
  /** What the latest snapshot published, for the start's wait on the projection. */
  let published: { wallet: WalletBalance | null; positions: Position[]; tickers: Ticker[] } = { wallet: null, positions: [], tickers: [] };

  const publish = async (topic: string, items: Array<{ key: string; value: unknown }>): Promise<void> => {
    if (items.length === 0) return;
    const messages = await Promise.all(items.map(async (i) => ({ key: i.key, value: await deps.codec.encode(topic, i.value), headers: {} })));
    await producer!.send(topic, messages);
  };

  const syncInstruments = async (): Promise<number> => {
    let n = 0;
    for (const category of deps.config.SYNC_CATEGORIES) {
      // Every page: Bybit pages linear instruments (500 by default, at most 1,000 a page; spot has
      // one page), and a symbol missing from a partial list would be taken for delisted below.
      const list: Array<Record<string, unknown>> = [];
      let cursor = '';
      for (let page = 0; page < MAX_INSTRUMENT_PAGES; page++) {
        const params = { category, ...(category === 'spot' ? {} : { limit: 1000 }), ...(cursor ? { cursor } : {}) };
        const res = await call('/v5/market/instruments-info', category, () => rest.getInstrumentsInfo(params as never) as unknown as Promise<BybitAnswer<{ list: Array<Record<string, unknown>>; nextPageCursor?: string }>>);
        list.push(...res.list);
        cursor = res.nextPageCursor ?? '';
        if (!cursor) break;
      }
      if (cursor) throw new Error(`instruments-info ${category}: more than ${MAX_INSTRUMENT_PAGES} pages; not marking anything delisted`);
      const seen = list.filter((x) => wanted(String(x.symbol)));
      for (const i of seen) {
        const lot = (i.lotSizeFilter ?? {}) as Record<string, unknown>;
        const price = (i.priceFilter ?? {}) as Record<string, unknown>;
        await deps.db.query(sql.typeAlias('void')`
          INSERT INTO instruments (category, symbol, base_coin, quote_coin, status, tick_size, qty_step, base_precision, quote_precision,
                                   min_order_qty, max_order_qty, max_market_order_qty, min_order_amt, max_order_amt, min_notional_value, raw, updated_at)
          VALUES (${category}, ${String(i.symbol)}, ${String(i.baseCoin)}, ${String(i.quoteCoin)}, ${String(i.status ?? 'Trading')}, ${String(price.tickSize)},
                  ${pos(lot.qtyStep)}, ${pos(lot.basePrecision)}, ${pos(lot.quotePrecision)}, ${dec(lot.minOrderQty) ?? '0'}, ${pos(lot.maxOrderQty)},
                  ${pos(lot.maxMktOrderQty ?? lot.maxMarketOrderQty)}, ${dec(lot.minOrderAmt)}, ${pos(lot.maxOrderAmt)}, ${dec(lot.minNotionalValue)},
                  ${sql.jsonb(i as never)}, now())
          ON CONFLICT (category, symbol) DO UPDATE SET
            base_coin = EXCLUDED.base_coin, quote_coin = EXCLUDED.quote_coin, status = EXCLUDED.status, tick_size = EXCLUDED.tick_size,
            qty_step = EXCLUDED.qty_step, base_precision = EXCLUDED.base_precision, quote_precision = EXCLUDED.quote_precision,
            min_order_qty = EXCLUDED.min_order_qty, max_order_qty = EXCLUDED.max_order_qty, max_market_order_qty = EXCLUDED.max_market_order_qty,
            min_order_amt = EXCLUDED.min_order_amt, max_order_amt = EXCLUDED.max_order_amt, min_notional_value = EXCLUDED.min_notional_value,
            raw = EXCLUDED.raw, updated_at = now()`);
        n++;
      }
      // Bybit lists Trading (and PendingOpen) instruments by default: one it no longer lists was
      // delisted (or suspended). Its row stays (orders and fills refer to it) but stops being
      // tradable, so the risk stage refuses new orders in it as it refuses any unknown instrument.
      // An empty answer is taken for a fault of the moment, not for every instrument gone.
      if (list.length > 0) {
        const closed = await deps.db.anyFirst(sql.type(z.object({ symbol: z.string() }))`
          UPDATE instruments SET status = 'Closed', updated_at = now()
          WHERE category = ${category} AND status <> 'Closed' AND NOT (symbol = ANY(${sql.array(list.map((x) => String(x.symbol)), 'text')}))
          RETURNING symbol`);
        if (closed.length) log.warn({ category, symbols: closed }, 'instruments no longer listed by the exchange: marked Closed (not tradable)');
      }
    }
    return n;
  };

  const syncMarket = async () => {
    const tickers: Ticker[] = [];
    for (const category of deps.config.SYNC_CATEGORIES) {
      const res = await call('/v5/market/tickers', category, () => rest.getTickers({ category } as never) as unknown as Promise<BybitAnswer<{ list: Raw[] }>>);
      // Bybit's REST ticker has no time of its own: the time it was read stands for the exchange's.
      const ts = deps.clock.now();
      for (const t of res.list.filter((x) => wanted(String(x.symbol)))) tickers.push(tickerOf(t, category, ts, 'rest'));
    }
    const wallet = await call('/v5/account/wallet-balance', undefined, () => rest.getWalletBalance({ accountType: 'UNIFIED' }) as unknown as Promise<BybitAnswer<{ list: Raw[] }>>);
    const now = deps.clock.now();
    const w = wallet.list[0];
    const wb = w ? walletOf(w, now, 'rest') : null;
    const positions: Position[] = [];
    if (deps.config.SYNC_CATEGORIES.includes('linear')) {
      const res = await call('/v5/position/list', 'linear', () => rest.getPositionInfo({ category: 'linear', settleCoin: 'USDT' }) as unknown as Promise<BybitAnswer<{ list: Raw[] }>>);
      for (const p of res.list) positions.push(positionOf(p, now, 'rest'));
    }
    await publish(tickersTopic, tickers.map((t) => ({ key: t.symbol, value: t })));
    if (wb) await publish(walletTopic, [{ key: wb.accountType, value: wb }]);
    await publish(positionsTopic, positions.map((p) => ({ key: p.symbol, value: p })));
    published = { wallet: wb, positions, tickers };
    return { tickers: tickers.length, coins: wb?.coin.length ?? 0, positions: positions.length };
  };

  /** Whether the projections (the tracking stage, the ticker projection) hold at least what the latest snapshot published. */
  const projected = async (): Promise<boolean> => {
    const { wallet, positions, tickers } = published;
    if (wallet && wallet.coin.length > 0) {
      const coins = [...new Set(wallet.coin.map((c) => c.coin))];
      const n = await deps.db.oneFirst(sql.type(z.object({ n: z.number() }))`
        SELECT count(*)::int AS n FROM balances WHERE coin = ANY(${sql.array(coins, 'text')}) AND updated_ms >= ${wallet.updatedTime}`);
      if (n < coins.length) return false;
    }
    if (positions.length > 0) {
      const n = await deps.db.oneFirst(sql.type(z.object({ n: z.number() }))`
        SELECT count(*)::int AS n FROM positions p
        JOIN unnest(${sql.array(positions.map((x) => x.symbol), 'text')}, ${sql.array(positions.map((x) => x.updatedTime), 'int8')}) AS v(symbol, t)
          ON p.category = 'linear' AND p.symbol = v.symbol AND p.updated_ms >= v.t`);
      if (n < positions.length) return false;
    }
    if (tickers.length > 0) {
      // The same conversion of epoch ms as the projection's (ticker-projection.ts), so equal times compare equal.
      const n = await deps.db.oneFirst(sql.type(z.object({ n: z.number() }))`
        SELECT count(*)::int AS n FROM tickers k
        JOIN unnest(${sql.array(tickers.map((x) => x.category), 'text')}, ${sql.array(tickers.map((x) => x.symbol), 'text')}, ${sql.array(tickers.map((x) => x.ts), 'int8')}) AS v(category, symbol, t)
          ON k.category = v.category AND k.symbol = v.symbol AND k.ts >= to_timestamp(v.t::float8 / 1000)`);
      if (n < tickers.length) return false;
    }
    return true;
  };

  const untilProjected = async (): Promise<void> => {
    const since = deps.clock.now();
    let warned = since;
    while (!(await projected())) {
      if (deps.clock.now() - warned >= 10_000) {
        warned = deps.clock.now();
        log.warn({ waitingMs: warned - since }, 'waiting for the tracking stage and the ticker projection to project the tickers, wallet and positions published at start (are the track and ticker-projection units running?)');
      }
      await sleep(200, undefined, { signal: abort.signal });
    }
  };

  const guarded = (what: string, fn: () => Promise<unknown>) => async () => {
    try {
      await fn();
    } catch (err) {
      log.warn({ err: (err as Error).message, what }, 'exchange sync failed; next run retries');
    }
  };

  return {
    syncInstruments,
    syncMarket,
    start: async () => {
      producer = deps.kafka.producer();
      await connectWithBackoff(() => producer!.connect(), log, 10_000, { deadlineMs: Infinity, signal: abort.signal });
      // At start the state must be loaded before the risk stage decides anything: retry until it is.
      const n = await retry(syncInstruments, { retries: Infinity, minMs: 500, maxMs: 10_000, onRetry: (err, attempt) => log.warn({ err: (err as Error).message, attempt }, 'instrument sync failed; retrying') });
      const m = await retry(syncMarket, { retries: Infinity, minMs: 500, maxMs: 10_000, onRetry: (err, attempt) => log.warn({ err: (err as Error).message, attempt }, 'market sync failed; retrying') });
      // Wait for the projection, but not forever inside start(): the units started after this one
      // (the reconciler, the kill switch) must not be held back by a tracking stage that is down.
      // Past PROJECTION_WAIT_MS the start returns and this unit stays not ready until it lands.
      const projection = untilProjected().then(
        () => {
          loaded = true;
          log.info({ instruments: n, ...m }, 'exchange state loaded');
        },
        (err: unknown) => {
          if (!abort.signal.aborted) log.error({ err }, 'waiting for the projection of the exchange state failed');
        },
      );
      const waited = await Promise.race([projection.then(() => true), sleep(PROJECTION_WAIT_MS, false, { signal: abort.signal }).catch(() => false)]);
      if (!waited && !loaded && !abort.signal.aborted) {
        log.warn({ waitedMs: PROJECTION_WAIT_MS }, 'the tracking stage has not projected the exchange state yet: starting the other units; exchange-sync stays not ready until it has');
      }
      tasks.push(cron.schedule(deps.config.SYNC_INSTRUMENTS_CRON, guarded('instruments', syncInstruments), { noOverlap: true }));
      tasks.push(cron.schedule(deps.config.SYNC_MARKET_CRON, guarded('market', syncMarket), { noOverlap: true }));
    },
    stop: async () => {
      abort.abort();
      for (const t of tasks) await t.stop();
      await producer?.disconnect().catch(() => {});
      producer = null;
    },
    ready: () => loaded,
  };
}
