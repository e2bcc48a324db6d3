// The direct websocket connector against the exchange simulator (driven by the unmodified bybit-api
// WebsocketClient) and the real local Kafka + registry: an order placed at the simulator shows up
// as order, execution, position and wallet records, tickers flow, a dropped connection is
// reconnected (and counted) and what follows still flows. Bounded polling, no sleeps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNamespace, namespace, registryUrl, testCfg, testKafka, testLogger, waitFor } from '../helpers.ts';
import { startPrivateKafka } from '../../stack/chaos-infra.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { createKafka, failTool, type InMessage } from '../../runtime/kafka.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { ManualClock } from '../../runtime/clock.ts';
import { startSimulator } from '../../sim/server.ts';
import { createBybitWs, parseConfig, wsOptions, categoryOfWsKey, WS_DIRECT_HEADERS } from '../../connectors/bybit-ws.ts';
import { signMessage } from '../../connectors/bybit-sign.ts';
import type { ExchangeOrderUpdate, Execution, Position, Ticker, WalletBalance } from '../../schemas/types.ts';

const T0 = Date.UTC(2025, 0, 6, 12, 0, 0);

test('configuration alone chooses the Bybit websocket', () => {
  assert.deepEqual(wsOptions(parseConfig({ BYBIT_ENV: 'sim', BYBIT_SIM_PORT: '9400' })), { key: 'sim-key', secret: 'sim-secret', market: 'v5', customSignMessageFn: signMessage, wsUrl: 'ws://127.0.0.1:9400/v5/private' });
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

test('Kafka unreachable while the simulator pushes: the buffer stays bounded, tickers go first (oldest first), dropped private messages are a reported gap; the rest is written once Kafka is back', async (t) => {
  // A private broker, paused (SIGSTOP: connections stay open, nothing answers) while the simulator pushes.
  const dir = mkdtempSync(join(tmpdir(), 'bws-kafka-'));
  const pk = await startPrivateKafka(testCfg, dir, testLogger);
  const paused = () => pk.pids().forEach((pid) => process.kill(pid, 'SIGSTOP'));
  const resumed = () => pk.pids().forEach((pid) => process.kill(pid, 'SIGCONT'));
  const kafka = createKafka({ brokers: pk.brokers, clientId: 'test-bws-outage', logger: testLogger });
  const prefix = namespace('bwsout');
  const drop = await createNamespace(kafka, prefix, 1);
  const codec = await createTopicCodec({ registryUrl, prefix });
  const sim = await startSimulator({ port: 0, seed: 11, clock: new ManualClock(T0) });
  const metrics = createMetrics();
  const gaps: string[] = [];
  const MAX = 40;
  const MAX_BYTES = 1_048_576;
  const connector = createBybitWs({
    kafka,
    codec,
    logger: testLogger,
    metrics,
    config: parseConfig({ TOPIC_PREFIX: prefix, BYBIT_ENV: 'sim', BYBIT_WS_URL: sim.wsUrl, BYBIT_WS_TICKER_SYMBOLS: 'BTCUSDT,ETHUSDT', BYBIT_WS_RETRY_MAX_MS: '500', BYBIT_WS_BUFFER_MAX_MESSAGES: String(MAX), BYBIT_WS_BUFFER_MAX_BYTES: String(MAX_BYTES) }),
    onGap: (why) => gaps.push(why),
  });
  const seen: Record<string, InMessage[]> = {};
  const consumer = kafka.consumer({ groupId: `reader-${randomBytes(4).toString('hex')}`, onFatal: failTool('test reader') });
  const value = async (name: string, labels: Record<string, string> = {}) =>
    ((await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name)?.values ?? []).filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((a, v) => a + v.value, 0);
  const received = () => value('pipeline_bridge_messages_in_total', { bridge: 'bybit-ws' });
  const orders = async () => Promise.all((seen['exchange.orders'] ?? []).map(async (m) => (await codec.decode(prefix + 'exchange.orders', m.value!)) as ExchangeOrderUpdate));
  let isPaused = false;
  try {
    await consumer.connect();
    await consumer.subscribe(['exchange.orders', 'exchange.executions', 'exchange.positions', 'exchange.wallet', 'market.tickers'].map((x) => prefix + x), true);
    await consumer.run(async (batch, ctl) => {
      for (const m of batch.messages) {
        (seen[m.topic.slice(prefix.length)] ??= []).push(m);
        ctl.resolveOffset(m.offset);
      }
    });
    await connector.start();
    sim.tick(1);
    await waitFor('tickers flowing', () => (seen['market.tickers']?.length ?? 0) >= 2, 60_000);
    const flowing = (seen['market.tickers'] ?? []).length;

    paused();
    isPaused = true;
    // tickers only: the buffer fills, then the oldest tickers give way to new ones
    for (let i = 0; i < 2 * MAX; i++) {
      const before = await received();
      sim.tick(1);
      await waitFor('the tick pushes to arrive', async () => (await received()) >= before + 2);
    }
    assert.ok((await value('pipeline_bridge_messages_dropped_total', { reason: 'buffer_full_ticker' })) >= MAX - 2, 'tickers dropped while Kafka is away');
    assert.deepEqual(gaps, [], 'dropping tickers is no gap');
    // private messages: they push the waiting tickers out, then, with only private ones waiting, are dropped themselves
    const links: string[] = [];
    for (let i = 0; i < 14; i++) {
      const before = await received();
      const link = `outage-${i}`;
      links.push(link);
      sim.placeOrder({ category: 'linear', symbol: 'BTCUSDT', side: i % 2 ? 'Sell' : 'Buy', orderType: 'Market', qty: '0.010', orderLinkId: link });
      await waitFor(`the pushes of ${link}`, async () => (await received()) >= before + 4);
    }
    const droppedPrivate = await value('pipeline_bridge_messages_dropped_total', { reason: 'buffer_full_private' });
    t.diagnostic(`while paused: ${await received()} received, ${await value('pipeline_bridge_messages_dropped_total', { reason: 'buffer_full_ticker' })} tickers and ${droppedPrivate} private messages dropped, ${await value('pipeline_bridge_buffered_bytes')} bytes held`);
    assert.ok(droppedPrivate > 0, 'private messages dropped once only private ones wait');
    assert.deepEqual(gaps, ['buffer_full'], 'one gap reported for the episode');
    const held = await value('pipeline_bridge_buffered_bytes', { bridge: 'bybit-ws' });
    assert.ok(held > 0 && held <= 2 * MAX_BYTES, `held ${held} bytes: what waits (≤ ${MAX} messages) plus the send in flight`);

    resumed();
    isPaused = false;
    // What was kept is written, in order: the first orders' fills arrive, the last ones were dropped (the reconciler's).
    await waitFor('the first order filled on exchange.orders', async () => (await orders()).some((o) => o.orderLinkId === links[0] && o.orderStatus === 'Filled'), 180_000);
    await waitFor('the buffer drained', async () => (await value('pipeline_bridge_buffered_bytes', { bridge: 'bybit-ws' })) === 0, 120_000);
    const got = new Set((await orders()).filter((o) => o.orderStatus === 'Filled').map((o) => o.orderLinkId));
    assert.ok(got.has(links[0]!), 'kept: the first order');
    assert.ok(!got.has(links[links.length - 1]!), 'dropped: the last order (a gap for the reconciler)');
    // and the stream flows again
    const tickersBefore = (seen['market.tickers'] ?? []).length;
    sim.tick(1);
    await waitFor('tickers after the outage', () => (seen['market.tickers'] ?? []).length >= tickersBefore + 2, 60_000);
    assert.ok(tickersBefore > flowing, 'the kept tickers were written too');
  } finally {
    if (isPaused) resumed();
    await connector.stop();
    await consumer.disconnect().catch(() => {});
    await sim.close();
    await drop().catch(() => {});
    await pk.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
