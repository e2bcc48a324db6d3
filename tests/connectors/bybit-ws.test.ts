// The direct websocket connector against the exchange simulator (driven by the unmodified bybit-api
// WebsocketClient) and the real local Kafka + registry: an order placed at the simulator shows up
// as order, execution, position and wallet records, tickers flow, a dropped connection is
// reconnected (and counted) and what follows still flows. Bounded polling, no sleeps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createNamespace, namespace, registryUrl, testKafka, testLogger, waitFor } from '../helpers.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { failTool, type InMessage } from '../../runtime/kafka.ts';
import { createTopicCodec } from '../../pipelines/codec.ts';
import { ManualClock } from '../../runtime/clock.ts';
import { startSimulator } from '../../sim/server.ts';
import { createBybitWs, parseConfig, wsOptions, categoryOfWsKey, WS_DIRECT_HEADERS } from '../../connectors/bybit-ws.ts';
import type { ExchangeOrderUpdate, Execution, Position, Ticker, WalletBalance } from '../../schemas/types.ts';

const T0 = Date.UTC(2025, 0, 6, 12, 0, 0);

test('configuration alone chooses the Bybit websocket', () => {
  assert.deepEqual(wsOptions(parseConfig({ BYBIT_ENV: 'sim', BYBIT_SIM_PORT: '9400' })), { key: 'sim-key', secret: 'sim-secret', market: 'v5', wsUrl: 'ws://127.0.0.1:9400/v5/private' });
  assert.equal(wsOptions(parseConfig({ BYBIT_ENV: 'testnet', BYBIT_API_KEY: 'k', BYBIT_API_SECRET: 's' })).testnet, true);
  assert.equal(wsOptions(parseConfig({ BYBIT_ENV: 'demo' })).demoTrading, true);
  const main = wsOptions(parseConfig({ BYBIT_ENV: 'mainnet' }));
  assert.equal(main.wsUrl, undefined);
  assert.equal(main.testnet, undefined);
  assert.equal(wsOptions(parseConfig({ BYBIT_ENV: 'mainnet', BYBIT_WS_URL: 'ws://x:1/v5' })).wsUrl, 'ws://x:1/v5');
  assert.deepEqual(parseConfig({}).BYBIT_WS_TICKER_CATEGORIES, ['linear']);
  assert.deepEqual(parseConfig({ BYBIT_WS_TICKER_CATEGORIES: 'spot, linear', BYBIT_WS_TICKER_SYMBOLS: 'BTCUSDT,ETHUSDT' }).BYBIT_WS_TICKER_CATEGORIES, ['spot', 'linear']);
  assert.throws(() => parseConfig({ EXCHANGE_STREAM_SOURCE: 'carrier-pigeon' }));
  assert.equal(categoryOfWsKey('v5SpotPublic'), 'spot');
  assert.equal(categoryOfWsKey('v5LinearPublic'), 'linear');
  assert.equal(categoryOfWsKey('v5Private'), null);
});

test('direct connector: simulator order, execution, position, wallet and ticker pushes reach the exchange topics; reconnects counted', async () => {
  const prefix = namespace('bws');
  const kafka = testKafka();
  const drop = await createNamespace(kafka, prefix);
  const codec = await createTopicCodec({ registryUrl, prefix });
  const sim = await startSimulator({ port: 0, seed: 7, clock: new ManualClock(T0) });
  const metrics = createMetrics();
  const connector = createBybitWs({
    kafka,
    codec,
    logger: testLogger,
    metrics,
    config: parseConfig({ TOPIC_PREFIX: prefix, BYBIT_ENV: 'sim', BYBIT_WS_URL: sim.wsUrl, BYBIT_WS_TICKER_SYMBOLS: 'BTCUSDT,ETHUSDT', BYBIT_WS_RETRY_MAX_MS: '500' }),
  });
  const seen: Record<string, InMessage[]> = {};
  const consumer = kafka.consumer({ groupId: `reader-${randomBytes(4).toString('hex')}`, onFatal: failTool('test reader') });
  await consumer.connect();
  await consumer.subscribe(['exchange.orders', 'exchange.executions', 'exchange.positions', 'exchange.wallet', 'market.tickers', 'exchange.dlq'].map((t) => prefix + t), true);
  await consumer.run(async (batch, ctl) => {
    for (const m of batch.messages) {
      (seen[m.topic.slice(prefix.length)] ??= []).push(m);
      ctl.resolveOffset(m.offset);
    }
  });
  const decoded = async <T>(t: string): Promise<Array<{ m: InMessage; v: T }>> => Promise.all((seen[t] ?? []).map(async (m) => ({ m, v: (await codec.decode(prefix + t, m.value!)) as T })));
  try {
    await connector.start();
    assert.equal(connector.ready(), true);

    // tickers: the subscription snapshot, then each price step
    sim.tick(1);
    await waitFor('tickers of both symbols', async () => {
      const t = await decoded<Ticker>('market.tickers');
      return t.some((x) => x.v.symbol === 'BTCUSDT') && t.some((x) => x.v.symbol === 'ETHUSDT');
    });
    const ticks = await decoded<Ticker>('market.tickers');
    for (const { m, v } of ticks) {
      assert.equal(m.key, v.symbol);
      assert.equal(v.category, 'linear');
      assert.equal(v.source, 'ws');
      assert.ok(Number(v.lastPrice) > 0 && Number(v.bid1Price) < Number(v.ask1Price), `${v.symbol} ${v.bid1Price}/${v.ask1Price}`);
      assert.equal(m.headers[WS_DIRECT_HEADERS.bybitTopic], `tickers.${v.symbol}`);
    }
    const mid = sim.exchange.mid('BTCUSDT');
    assert.ok(ticks.filter((t) => t.v.symbol === 'BTCUSDT').some((t) => Math.abs(Number(t.v.lastPrice) - mid) / mid < 0.01), 'ticker near the simulator mid');

    const placed = sim.placeOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.050', orderLinkId: 'direct-1' });
    await waitFor('Filled order, its executions, position and wallet', async () => {
      const o = await decoded<ExchangeOrderUpdate>('exchange.orders');
      return o.some((x) => x.v.orderLinkId === 'direct-1' && x.v.orderStatus === 'Filled') && (seen['exchange.positions']?.length ?? 0) > 0 && (seen['exchange.wallet']?.length ?? 0) > 0;
    });
    const orders = (await decoded<ExchangeOrderUpdate>('exchange.orders')).filter((x) => x.v.orderLinkId === 'direct-1');
    const filled = orders.find((x) => x.v.orderStatus === 'Filled')!;
    assert.equal(filled.m.key, 'BTCUSDT');
    assert.equal(filled.v.orderId, placed.orderId);
    assert.equal(filled.v.category, 'linear');
    assert.equal(filled.v.cumExecQty, '0.050');
    assert.equal(filled.v.source, 'ws');
    assert.ok(filled.v.streamMessageId && filled.v.creationTime, 'Bybit message id and creation time kept');
    assert.equal(filled.m.headers[WS_DIRECT_HEADERS.wsKey], 'v5Private');

    const simExecs = sim.executions().filter((e) => e.orderId === placed.orderId);
    await waitFor('every execution', () => (seen['exchange.executions'] ?? []).length >= simExecs.length);
    const execs = (await decoded<Execution>('exchange.executions')).filter((x) => x.v.orderId === placed.orderId);
    assert.deepEqual(execs.map((x) => x.v.execId).sort(), simExecs.map((e) => String(e.execId)).sort());
    const sumFee = execs.reduce((a, x) => a + Number(x.v.execFee), 0);
    assert.ok(Math.abs(sumFee - Number(filled.v.cumExecFee)) < 1e-9, 'fees of the executions add up to the order');
    assert.equal(execs.reduce((a, x) => a + Number(x.v.execQty), 0).toFixed(3), '0.050');

    const positions = (await decoded<Position>('exchange.positions')).filter((x) => x.v.symbol === 'BTCUSDT');
    assert.equal(positions.at(-1)!.v.size, '0.050');
    assert.equal(positions.at(-1)!.v.side, 'Buy');
    const wallets = await decoded<WalletBalance>('exchange.wallet');
    const usdt = wallets.filter((w) => w.m.key === 'USDT').at(-1)!;
    assert.equal(usdt.v.coin.length, 1);
    const acct = sim.exchange.account('1000001').coin('USDT');
    assert.ok(Math.abs(Number(usdt.v.coin[0]!.walletBalance) - acct.wallet) < 1e-6, 'wallet matches the simulator');
    assert.ok(wallets.every((w) => w.v.coin.length === 1 && w.m.key === w.v.coin[0]!.coin), 'one record per coin, keyed by coin');

    // a dropped private connection: bybit-api reconnects and resubscribes; the next order flows
    sim.faults.disconnectWs('private');
    await waitFor('reconnect counted', async () => {
      const r = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === 'pipeline_bridge_reconnects_total')!.values;
      return r.some((v) => v.labels.bridge === 'bybit-ws' && v.value >= 1) && connector.ready();
    }, 30_000);
    await waitFor('private subscription restored', () => sim.wsConnections().some((c) => c.subscriptions.includes('order')));
    sim.placeOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Sell', orderType: 'Market', qty: '0.050', orderLinkId: 'direct-2' });
    await waitFor('the order after the reconnect', async () => (await decoded<ExchangeOrderUpdate>('exchange.orders')).some((x) => x.v.orderLinkId === 'direct-2' && x.v.orderStatus === 'Filled'), 30_000);
    assert.equal(seen['exchange.dlq']?.length ?? 0, 0, 'nothing dead-lettered');
  } finally {
    await connector.stop();
    assert.equal(connector.ready(), false);
    await consumer.disconnect();
    await sim.close();
    await drop();
  }
});
