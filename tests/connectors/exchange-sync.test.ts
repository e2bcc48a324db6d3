// Exchange sync over the one REST core and through the topics. It writes `instruments` and `tickers`
// itself; the wallet and the linear positions it reads go out as exchange.wallet / exchange.positions
// records (source rest) that the tracking stage, the one writer of `balances` and `positions`,
// projects; its start waits for that projection, so the risk stage never sizes against an account
// not yet loaded. A permanent refusal (bad credentials) fails its start loudly instead of being
// retried forever as "exchange sync failed; retrying" (which it was while it mapped every Bybit
// answer to a retriable error of its own).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { sql } from '../../runtime/db.ts';
import { systemClock } from '../../runtime/clock.ts';
import { FatalError } from '../../runtime/errors.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import type { Position, WalletBalance } from '../../schemas/types.ts';
import { runStage } from '../../pipelines/runner.ts';
import { createTrackStage, parseConfig as trackConfig } from '../../pipelines/track.ts';
import { startSimulator } from '../../sim/server.ts';
import { createExchangeSync, parseConfig } from '../../connectors/exchange-sync.ts';
import { consumeUntil, createNamespace, migratedDatabase, namespace, registryUrl, testKafka, testLogger } from '../helpers.ts';

const syncConfig = parseConfig({ SYNC_CATEGORIES: 'spot,linear' });
const kafka = testKafka();

async function world(t: TestContext, simOpts: Partial<Parameters<typeof startSimulator>[0]>, env: Record<string, string> = {}) {
  const prefix = namespace('xsync');
  const dropTopics = await createNamespace(kafka, prefix, 3);
  const sim = await startSimulator({ port: 0, seed: 5, ...simOpts });
  const db = await migratedDatabase('xsync');
  const codec = await createTopicCodec({ registryUrl, prefix });
  const sync = createExchangeSync({ db: db.pool, kafka, codec, topicPrefix: prefix, logger: testLogger, clock: systemClock, config: syncConfig, env: { BYBIT_SIM_PORT: String(sim.port), ...env }, assets: ['BTCUSDT'] });
  const stops: Array<() => Promise<void>> = [];
  t.after(async () => {
    await sync.stop();
    for (const s of stops.reverse()) await s().catch(() => {});
    await db.drop();
    await sim.close();
    await dropTopics();
  });
  return {
    prefix,
    sim,
    db,
    codec,
    sync,
    async track() {
      const metrics = createMetrics();
      const stage = createTrackStage({ config: trackConfig({ TOPIC_PREFIX: prefix }), db: db.pool, clock: systemClock, logger: testLogger, registry: metrics.registry });
      const running = await runStage(stage, { kafka, codec, logger: testLogger, metrics, clock: systemClock, groupId: `${prefix}track`, batchMax: 100, retryMaxMs: 1000, fromBeginning: true, onFatal: (e) => assert.fail(`tracking stage fatal: ${e.message}`) });
      stops.push(() => running.stop());
    },
    /** The records of a topic once there are at least `min` (the exchange topics are compacted: no end markers there). */
    async records<T>(topic: string, min = 1): Promise<T[]> {
      const msgs = await consumeUntil(kafka, prefix + topic, (all) => all.length >= min, { timeoutMs: 60_000 });
      return Promise.all(msgs.map(async (m) => (await codec.decode(m.topic, m.value!)) as T));
    },
  };
}

test('exchange sync writes instruments and tickers, publishes the wallet and positions, and is ready once tracking has projected them', async (t) => {
  const w = await world(t, { balances: { USDT: 1234, BTC: 0.5 } });
  // A linear position of the account, opened before the order manager starts.
  w.sim.placeOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.01', orderLinkId: 'desk-pos-1' });
  const started = w.sync.start();
  // Without the projection the sync does not call itself loaded: the risk stage would size against
  // balances the order manager has not read yet.
  const balancesRow = z.object({ b: z.string() });
  await w.records<WalletBalance>('exchange.wallet');
  assert.equal(w.sync.ready(), false, 'not ready before the tracking stage projected the wallet');
  assert.equal(await w.db.pool.maybeOne(sql.type(balancesRow)`SELECT wallet_balance::text AS b FROM balances WHERE coin = 'USDT'`), null, 'exchange sync does not write balances itself');
  await w.track();
  await started;
  assert.equal(w.sync.ready(), true);

  const instruments = await w.db.pool.any(sql.type(z.object({ category: z.string(), symbol: z.string() }))`SELECT category, symbol FROM instruments ORDER BY category`);
  assert.deepEqual(instruments.map((r) => `${r.category}:${r.symbol}`), ['linear:BTCUSDT', 'spot:BTCUSDT']);
  const tickers = await w.db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM tickers WHERE symbol = 'BTCUSDT'`);
  assert.equal(tickers, 2);
  const wallets = await w.records<WalletBalance>('exchange.wallet');
  assert.ok(wallets.every((x) => x.source === 'rest'));
  const usdtAtExchange = wallets[0]!.coin.find((c) => c.coin === 'USDT')!.walletBalance;
  const usdt = await w.db.pool.one(sql.type(balancesRow)`SELECT wallet_balance::text AS b FROM balances WHERE coin = 'USDT'`);
  assert.equal(Number(usdt.b), Number(usdtAtExchange), 'balances hold what the exchange said, through the projection');
  assert.ok(Number(usdt.b) < 1234, 'the fee and margin of the position came off the starting 1234 USDT');
  const positions = await w.records<Position>('exchange.positions');
  const btc = positions.find((p) => p.symbol === 'BTCUSDT');
  assert.ok(btc && btc.source === 'rest' && Number(btc.size) === 0.01, JSON.stringify(btc));
  const row = await w.db.pool.one(sql.type(z.object({ side: z.string(), size: z.string() }))`SELECT side, size::text AS size FROM positions WHERE category = 'linear' AND symbol = 'BTCUSDT'`);
  assert.deepEqual({ side: row.side, size: Number(row.size) }, { side: 'Buy', size: 0.01 });
});

test('exchange sync: bad credentials fail the start with a fatal error, not an endless retry', async (t) => {
  const w = await world(t, {}, { BYBIT_API_KEY: 'no-such-key' });
  // instruments-info and tickers are public: the first private call (the wallet) is refused with 10003.
  const err = await w.sync.start().then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(err instanceof FatalError, `start failed with ${String(err)}`);
  assert.match((err as FatalError).message, /10003/);
  assert.equal(w.sync.ready(), false);
});
