// Exchange sync over the one REST core: it loads instruments, tickers, balances and positions into
// PostgreSQL, and a permanent refusal (bad credentials) fails its start loudly instead of being
// retried forever as "exchange sync failed; retrying" (which it was while it mapped every Bybit
// answer to a retriable error of its own).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { sql } from '../../runtime/db.ts';
import { systemClock } from '../../runtime/clock.ts';
import { FatalError } from '../../runtime/errors.ts';
import { startSimulator } from '../../sim/server.ts';
import { createExchangeSync, parseConfig } from '../../connectors/exchange-sync.ts';
import { migratedDatabase, testLogger } from '../helpers.ts';

const syncConfig = parseConfig({ SYNC_CATEGORIES: 'spot,linear' });

test('exchange sync loads the exchange state through the REST core', async () => {
  const sim = await startSimulator({ port: 0, seed: 5, balances: { USDT: 1234, BTC: 0.5 } });
  const db = await migratedDatabase('xsync');
  const sync = createExchangeSync({ db: db.pool, logger: testLogger, clock: systemClock, config: syncConfig, env: { BYBIT_SIM_PORT: String(sim.port) }, assets: ['BTCUSDT'] });
  try {
    await sync.start();
    assert.equal(sync.ready(), true);
    const instruments = await db.pool.any(sql.type(z.object({ category: z.string(), symbol: z.string() }))`SELECT category, symbol FROM instruments ORDER BY category`);
    assert.deepEqual(instruments.map((r) => `${r.category}:${r.symbol}`), ['linear:BTCUSDT', 'spot:BTCUSDT']);
    const usdt = await db.pool.one(sql.type(z.object({ b: z.string() }))`SELECT wallet_balance::text AS b FROM balances WHERE coin = 'USDT'`);
    assert.equal(Number(usdt.b), 1234);
    const tickers = await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM tickers WHERE symbol = 'BTCUSDT'`);
    assert.equal(tickers, 2);
  } finally {
    await sync.stop();
    await db.drop();
    await sim.close();
  }
});

test('exchange sync: bad credentials fail the start with a fatal error, not an endless retry', async () => {
  const sim = await startSimulator({ port: 0, seed: 5 });
  const db = await migratedDatabase('xsync_bad');
  const sync = createExchangeSync({ db: db.pool, logger: testLogger, clock: systemClock, config: syncConfig, env: { BYBIT_SIM_PORT: String(sim.port), BYBIT_API_KEY: 'no-such-key' }, assets: [] });
  try {
    // instruments-info is public: the first private call (the wallet) is the one refused with 10003.
    const err = await sync.start().then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof FatalError, `start failed with ${String(err)}`);
    assert.match((err as FatalError).message, /10003/);
    assert.equal(sync.ready(), false);
  } finally {
    await sync.stop();
    await db.drop();
    await sim.close();
  }
});
