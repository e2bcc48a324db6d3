// Keeps the exchange facts the risk stage sizes against fresh in PostgreSQL: instrument filters,
// tickers, wallet balances and linear positions, read from Bybit REST at start (before the service
// reports ready) and then on node-cron schedules inside the service. Orders are not touched here:
// their state has one writer, the tracking stage (the reconciler feeds it through exchange topics).
// Each upsert is guarded by the fact's exchange time so an older answer never overwrites a newer
// websocket update.
import cron, { type ScheduledTask } from 'node-cron';
import { z } from 'zod';
import { emptyToUndefined } from '../runtime/setting-types.ts';
import { sql, type DatabasePool } from '../runtime/db.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Clock } from '../runtime/clock.ts';
import { retry } from '../runtime/retry.ts';
import { createBybitCaller, parseConfig as restConfig, type BybitAnswer } from './bybit-rest.ts';

export const name = 'exchange-sync';


export const configSchema = z.object({
  SYNC_INSTRUMENTS_CRON: z.preprocess(emptyToUndefined, z.string().default('*/10 * * * *')).describe('node-cron schedule of the instrument-filter refresh from Bybit REST.'),
  SYNC_MARKET_CRON: z.preprocess(emptyToUndefined, z.string().default('*/5 * * * * *')).describe('node-cron schedule (with seconds) of the ticker, wallet and position refresh from Bybit REST.'),
  SYNC_CATEGORIES: z
    .preprocess((v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v ?? ['spot', 'linear']), z.array(z.enum(['spot', 'linear'])).min(1))
    .describe('Bybit categories whose instruments and tickers are kept in PostgreSQL.'),
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

export function createExchangeSync(deps: { db: DatabasePool; logger: Logger; clock: Clock; config: ExchangeSyncConfig; env: Record<string, unknown>; assets: readonly string[] }): ExchangeSync {
  // Through the one REST core: the rate limiter (its own share of the limits), errors mapped as
  // everywhere (bad credentials are fatal, not retried forever), Bybit's clock.
  const core = createBybitCaller({ config: restConfig(deps.env), clock: deps.clock, logger: deps.logger });
  const rest = core.client;
  const log = deps.logger;
  const call = async <T>(path: string, category: string | undefined, fn: () => Promise<BybitAnswer<T>>): Promise<T> => (await core.call('query', path, category, fn)).result;
  const wanted = (symbol: string) => deps.assets.length === 0 || deps.assets.includes(symbol);
  const tasks: ScheduledTask[] = [];
  let loaded = false;

  const syncInstruments = async (): Promise<number> => {
    let n = 0;
    for (const category of deps.config.SYNC_CATEGORIES) {
      const res = await call('/v5/market/instruments-info', category, () => rest.getInstrumentsInfo({ category }) as unknown as Promise<BybitAnswer<{ list: Array<Record<string, unknown>> }>>);
      for (const i of res.list.filter((x) => wanted(String(x.symbol)))) {
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
    }
    return n;
  };

  const syncMarket = async () => {
    let tickers = 0;
    for (const category of deps.config.SYNC_CATEGORIES) {
      const res = await call('/v5/market/tickers', category, () => rest.getTickers({ category } as never) as unknown as Promise<BybitAnswer<{ list: Array<Record<string, unknown>> }>>);
      const ts = deps.clock.now();
      for (const t of res.list.filter((x) => wanted(String(x.symbol)))) {
        await deps.db.query(sql.typeAlias('void')`
          INSERT INTO tickers (category, symbol, bid, ask, last, mark_price, volume_24h, turnover_24h, ts)
          VALUES (${category}, ${String(t.symbol)}, ${dec(t.bid1Price)}, ${dec(t.ask1Price)}, ${dec(t.lastPrice)}, ${dec(t.markPrice)},
                  ${dec(t.volume24h)}, ${dec(t.turnover24h)}, ${sql.timestamp(new Date(ts))})
          ON CONFLICT (category, symbol) DO UPDATE SET
            bid = EXCLUDED.bid, ask = EXCLUDED.ask, last = EXCLUDED.last, mark_price = EXCLUDED.mark_price,
            volume_24h = EXCLUDED.volume_24h, turnover_24h = EXCLUDED.turnover_24h, ts = EXCLUDED.ts, updated_at = now()
          WHERE tickers.ts <= EXCLUDED.ts`);
        tickers++;
      }
    }
    const wallet = await call('/v5/account/wallet-balance', undefined, () => rest.getWalletBalance({ accountType: 'UNIFIED' }) as unknown as Promise<BybitAnswer<{ list: Array<{ coin: Array<Record<string, unknown>> }> }>>);
    const now = deps.clock.now();
    let coins = 0;
    for (const c of wallet.list[0]?.coin ?? []) {
      const walletBalance = dec(c.walletBalance) ?? '0';
      const locked = dec(c.locked) ?? '0';
      // Unified accounts report no per-coin "available"; what is free to trade is balance - locked.
      const available = (Number(walletBalance) - Number(locked)).toString();
      await deps.db.query(sql.typeAlias('void')`
        INSERT INTO balances (coin, wallet_balance, available, locked, equity, usd_value, updated_ms)
        VALUES (${String(c.coin)}, ${walletBalance}, ${available}, ${locked}, ${dec(c.equity)}, ${dec(c.usdValue)}, ${now})
        ON CONFLICT (coin) DO UPDATE SET
          wallet_balance = EXCLUDED.wallet_balance, available = EXCLUDED.available, locked = EXCLUDED.locked,
          equity = EXCLUDED.equity, usd_value = EXCLUDED.usd_value, updated_ms = EXCLUDED.updated_ms, updated_at = now()
        WHERE balances.updated_ms <= EXCLUDED.updated_ms`);
      coins++;
    }
    let positions = 0;
    if (deps.config.SYNC_CATEGORIES.includes('linear')) {
      const res = await call('/v5/position/list', 'linear', () => rest.getPositionInfo({ category: 'linear', settleCoin: 'USDT' }) as unknown as Promise<BybitAnswer<{ list: Array<Record<string, unknown>> }>>);
      for (const p of res.list) {
        const updated = Number(p.updatedTime ?? now) || now;
        await deps.db.query(sql.typeAlias('void')`
          INSERT INTO positions (category, symbol, side, size, avg_price, mark_price, position_value, leverage, liq_price, unrealised_pnl, cum_realised_pnl, updated_ms)
          VALUES ('linear', ${String(p.symbol)}, ${String(p.side ?? '')}, ${dec(p.size) ?? '0'}, ${dec(p.avgPrice)}, ${dec(p.markPrice)}, ${dec(p.positionValue)},
                  ${dec(p.leverage)}, ${dec(p.liqPrice)}, ${dec(p.unrealisedPnl) ?? '0'}, ${dec(p.cumRealisedPnl) ?? '0'}, ${updated})
          ON CONFLICT (category, symbol) DO UPDATE SET
            side = EXCLUDED.side, size = EXCLUDED.size, avg_price = EXCLUDED.avg_price, mark_price = EXCLUDED.mark_price,
            position_value = EXCLUDED.position_value, leverage = EXCLUDED.leverage, liq_price = EXCLUDED.liq_price,
            unrealised_pnl = EXCLUDED.unrealised_pnl, cum_realised_pnl = EXCLUDED.cum_realised_pnl, updated_ms = EXCLUDED.updated_ms, updated_at = now()
          WHERE positions.updated_ms <= EXCLUDED.updated_ms`);
        positions++;
      }
    }
    return { tickers, coins, positions };
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
      // At start the state must be loaded before the risk stage decides anything: retry until it is.
      const n = await retry(syncInstruments, { retries: Infinity, minMs: 500, maxMs: 10_000, onRetry: (err, attempt) => log.warn({ err: (err as Error).message, attempt }, 'instrument sync failed; retrying') });
      const m = await retry(syncMarket, { retries: Infinity, minMs: 500, maxMs: 10_000, onRetry: (err, attempt) => log.warn({ err: (err as Error).message, attempt }, 'market sync failed; retrying') });
      loaded = true;
      log.info({ instruments: n, ...m }, 'exchange state loaded');
      tasks.push(cron.schedule(deps.config.SYNC_INSTRUMENTS_CRON, guarded('instruments', syncInstruments), { noOverlap: true }));
      tasks.push(cron.schedule(deps.config.SYNC_MARKET_CRON, guarded('market', syncMarket), { noOverlap: true }));
    },
    stop: async () => {
      for (const t of tasks) await t.stop();
    },
    ready: () => loaded,
  };
}
