// Exchange sync over the one REST core and through the topics. It writes `instruments` itself; the
// tickers, the wallet and the linear positions it reads go out as market.tickers / exchange.wallet /
// exchange.positions records (source rest) that the ticker projection (the one writer of `tickers`)
// and the tracking stage (of `balances` and `positions`) project, as in production; its start waits
// for that projection, so the risk stage never
// sizes against prices or an account not yet loaded. Tickers published as the websocket bridges do
// land through the same projection, newest exchange time first, and a spot tick without bid / ask
// keeps REST's. A permanent refusal (bad credentials) fails its start loudly instead of being
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
import type { Position, Ticker, WalletBalance } from '../../schemas/types.ts';
import { runStage } from '../../pipelines/runner.ts';
import { runTickerProjection } from '../../pipelines/ticker-projection.ts';
import { createTrackStage, parseConfig as trackConfig } from '../../pipelines/track.ts';
import { startSimulator } from '../../sim/server.ts';
import { createExchangeSync, parseConfig } from '../../connectors/exchange-sync.ts';
import { consumeUntil, createNamespace, migratedDatabase, namespace, registryUrl, testKafka, testLogger, waitFor } from '../helpers.ts';

// The schedule stays out of the way (once a year): what is published is the start's snapshot only.
const syncConfig = parseConfig({ SYNC_CATEGORIES: 'spot,linear', SYNC_MARKET_CRON: '0 0 0 1 1 *' });
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
      // market.tickers → tickers is the ticker projection's, next to tracking in the order manager.
      const tickers = await runTickerProjection({ kafka, codec, db: db.pool, logger: testLogger, metrics, clock: systemClock, topic: `${prefix}market.tickers`, dlqTopic: `${prefix}orders.dlq`, groupId: `${prefix}ticker-projection`, retryMaxMs: 1000, onFatal: (e) => assert.fail(`ticker projection fatal: ${e.message}`) });
      stops.push(() => tickers.stop());
    },
    /** Publish records on a topic as a bridge does (keyed, Avro). */
    async publish(topic: string, items: Array<{ key: string; value: unknown }>): Promise<void> {
      const producer = kafka.producer();
      await producer.connect();
      try {
        await producer.send(prefix + topic, await Promise.all(items.map(async (i) => ({ key: i.key, value: await codec.encode(prefix + topic, i.value), headers: {} }))));
      } finally {
        await producer.disconnect();
      }
    },
    /** The records of a topic once there are at least `min` (the exchange topics are compacted: no end markers there). */
    async records<T>(topic: string, min = 1): Promise<T[]> {
      const msgs = await consumeUntil(kafka, prefix + topic, (all) => all.length >= min, { timeoutMs: 60_000 });
      return Promise.all(msgs.map(async (m) => (await codec.decode(m.topic, m.value!)) as T));
    },
  };
}

const tickerRow = z.object({ category: z.string(), bid: z.string().nullable(), ask: z.string().nullable(), last: z.string().nullable(), ts: z.number(), book_ts: z.number().nullable() });

test('exchange sync writes instruments, publishes tickers, the wallet and positions, and is ready once tracking has projected them', async (t) => {
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
  assert.equal(await w.db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM tickers`), 0, 'exchange sync does not write tickers itself');
  await w.track();
  await started;
  assert.equal(w.sync.ready(), true);

  const instruments = await w.db.pool.any(sql.type(z.object({ category: z.string(), symbol: z.string() }))`SELECT category, symbol FROM instruments ORDER BY category`);
  assert.deepEqual(instruments.map((r) => `${r.category}:${r.symbol}`), ['linear:BTCUSDT', 'spot:BTCUSDT']);
  // The REST tickers of the configured assets only, one per category, as Ticker records.
  const published = await w.records<Ticker>('market.tickers', 2);
  assert.deepEqual(published.map((x) => `${x.category}:${x.symbol}:${x.source}`).sort(), ['linear:BTCUSDT:rest', 'spot:BTCUSDT:rest']);
  assert.ok(published.every((x) => x.bid1Price !== null && x.ask1Price !== null && x.lastPrice !== ''), 'REST tickers carry bid, ask and last');
  const rows = await w.db.pool.any(sql.type(tickerRow)`SELECT category, bid::text, ask::text, last::text, ts, book_ts FROM tickers WHERE symbol = 'BTCUSDT' ORDER BY category`);
  assert.deepEqual(
    rows,
    published
      .sort((a, b) => a.category.localeCompare(b.category))
      .map((x) => ({ category: x.category, bid: String(Number(x.bid1Price)), ask: String(Number(x.ask1Price)), last: String(Number(x.lastPrice)), ts: x.ts, book_ts: x.ts })),
    'tickers hold what exchange sync read, through the projection',
  );
  assert.equal(await w.db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM tickers`), 2, 'no other asset');
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

test('tickers published as the websocket does land through the ticker projection: newest exchange time wins; a spot tick without bid / ask keeps REST\'s', async (t) => {
  const w = await world(t, {});
  await w.track();
  await w.sync.start();
  assert.equal(w.sync.ready(), true);
  const row = (category: string) => w.db.pool.one(sql.type(tickerRow)`SELECT category, bid::text, ask::text, last::text, ts, book_ts FROM tickers WHERE category = ${category} AND symbol = 'BTCUSDT'`);
  const rest = await row('spot');
  assert.ok(rest.bid !== null && rest.ask !== null, `the REST snapshot brought a book: ${JSON.stringify(rest)}`);

  // Ahead of any REST snapshot (their time is the read's), so the schedule could not interfere.
  const T = Date.now() + 3_600_000;
  const ws = (category: string, last: string, bid: string | null, ask: string | null, ts: number): Ticker => ({
    symbol: 'BTCUSDT', category, lastPrice: last, bid1Price: bid, bid1Size: bid && '1', ask1Price: ask, ask1Size: ask && '1', volume24h: '100', turnover24h: null, price24hPcnt: null, markPrice: null, ts, source: 'ws', observedAt: ts,
  });
  // Bybit's spot stream: no bid1 / ask1.
  await w.publish('market.tickers', [{ key: 'BTCUSDT', value: ws('spot', '12345.5', null, null, T) }]);
  const moved = await waitFor('the websocket spot tick in tickers', async () => {
    const r = await row('spot');
    return r.ts === T ? r : null;
  });
  assert.deepEqual(moved, { category: 'spot', bid: rest.bid, ask: rest.ask, last: '12345.5', ts: T, book_ts: rest.ts }, 'last moved on, the REST book stayed with its own time');

  // An older tick (with a book of its own) after it, then a newer linear one of the same symbol (same
  // partition): once the linear one is there, the older spot tick has been seen and refused.
  await w.publish('market.tickers', [
    { key: 'BTCUSDT', value: ws('spot', '11111', '11110', '11112', T - 60_000) },
    { key: 'BTCUSDT', value: ws('linear', '12346', '12345', '12347', T + 1000) },
  ]);
  await waitFor('the websocket linear tick in tickers', async () => (await row('linear')).ts === T + 1000);
  assert.deepEqual(await row('spot'), moved, 'the older tick did not overwrite the newer row');
  assert.deepEqual(await row('linear'), { category: 'linear', bid: '12345', ask: '12347', last: '12346', ts: T + 1000, book_ts: T + 1000 });
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

test('instruments the exchange lists, changes or stops listing while the order manager runs: the new one taken with its filters, new filters taken, the unlisted one no longer tradable', async (t) => {
  const w = await world(t, {});
  assert.equal(await w.sync.syncInstruments(), 2, 'BTCUSDT spot and linear (ASSETS)');
  const rows = () => w.db.pool.any(sql.type(z.object({ category: z.string(), status: z.string(), tick_size: z.string() }))`
    SELECT category, status, trim_scale(tick_size)::text AS tick_size FROM instruments WHERE symbol = 'BTCUSDT' ORDER BY category`);
  assert.deepEqual(await rows(), [{ category: 'linear', status: 'Trading', tick_size: '0.1' }, { category: 'spot', status: 'Trading', tick_size: '0.01' }]);

  // The exchange the next day: BTCUSDT perpetual delisted, the spot pair's tick size raised.
  const { DEFAULT_INSTRUMENTS } = await import('../../sim/instruments.ts');
  const next = DEFAULT_INSTRUMENTS.filter((i) => !(i.category === 'linear' && i.symbol === 'BTCUSDT')).map((i) => (i.category === 'spot' && i.symbol === 'BTCUSDT' ? { ...i, tickSize: '0.1' } : i));
  const later = await startSimulator({ port: 0, seed: 5, instruments: next });
  t.after(() => later.close());
  const sync = createExchangeSync({ db: w.db.pool, kafka, codec: w.codec, topicPrefix: w.prefix, logger: testLogger, clock: systemClock, config: syncConfig, env: { BYBIT_SIM_PORT: String(later.port) }, assets: ['BTCUSDT'] });
  assert.equal(await sync.syncInstruments(), 1);
  assert.deepEqual(await rows(), [{ category: 'linear', status: 'Closed', tick_size: '0.1' }, { category: 'spot', status: 'Trading', tick_size: '0.1' }]);
  const tradable = await w.db.pool.anyFirst(sql.type(z.object({ symbol: z.string() }))`SELECT category || ':' || symbol AS symbol FROM instruments WHERE enabled AND status = 'Trading' ORDER BY 1`);
  assert.deepEqual(tradable, ['spot:BTCUSDT'], 'what the risk stage may size (its tradable rule)');

  // A pair the exchange lists while the order manager runs (the desk allowed it in ASSETS ahead of
  // its listing): the next refresh of the same running sync takes it with its filters, tradable.
  const listed = await fetch(`${later.restUrl}/sim/instruments`, { method: 'POST', body: JSON.stringify({ category: 'linear', symbol: 'NEARUSDT', baseCoin: 'NEAR', tickSize: '0.001', qtyStep: '0.1', minOrderQty: '0.1', maxOrderQty: '200000.0', maxMktOrderQty: '40000.0', initialPrice: 5 }) });
  assert.equal(((await listed.json()) as { retCode: number }).retCode, 0);
  const wider = createExchangeSync({ db: w.db.pool, kafka, codec: w.codec, topicPrefix: w.prefix, logger: testLogger, clock: systemClock, config: syncConfig, env: { BYBIT_SIM_PORT: String(later.port) }, assets: ['BTCUSDT', 'NEARUSDT'] });
  assert.equal(await wider.syncInstruments(), 2, 'spot BTCUSDT and the newly listed NEARUSDT perpetual');
  assert.deepEqual(await w.db.pool.anyFirst(sql.type(z.object({ symbol: z.string() }))`SELECT category || ':' || symbol || ':' || trim_scale(tick_size)::text AS symbol FROM instruments WHERE enabled AND status = 'Trading' ORDER BY 1`), ['linear:NEARUSDT:0.001', 'spot:BTCUSDT:0.1']);
});
