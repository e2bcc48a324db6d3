// The ws-gateway bridge on the real RabbitMQ, the real local Kafka and the registry: every test has
// its own topic namespace (TOPIC_PREFIX) and its own queues, removed afterwards. Messages are the
// Bybit v5 documentation's own examples (tests/sim/fixtures/bybit-v5-doc-examples.json). No sleeps
// for synchronisation: bounded polling on observable state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import amqplib, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { createNamespace, externalBytes, namespace, registryUrl, testKafka, testLogger, waitFor } from '../helpers.ts';
import { createMetrics, type Metrics } from '../../runtime/metrics.ts';
import { failTool, type InMessage, type KafkaPort, type OutMessage } from '../../runtime/kafka.ts';
import { createTopicCodec, type TopicCodec } from '../../schemas/topic-codec.ts';
import { createWsGatewayBridge, parseConfig, WS_BRIDGE_HEADERS, type WsGatewayBridge } from '../../connectors/ws-gateway-bridge.ts';
import type { DeadLetter, ExchangeOrderUpdate, Execution, Position, Ticker, WalletBalance } from '../../schemas/types.ts';

const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

type Json = Record<string, unknown>;
const DOC = JSON.parse(readFileSync(new URL('../sim/fixtures/bybit-v5-doc-examples.json', import.meta.url), 'utf8')) as { examples: Array<{ name: string; example: Json }> };
const doc = (name: string): Json => structuredClone(DOC.examples.find((e) => e.name === name)!.example);

const KINDS = ['order', 'execution', 'position', 'wallet', 'ticker'] as const;
type Kind = (typeof KINDS)[number];

interface Env {
  kafka: KafkaPort;
  codec: TopicCodec;
  prefix: string;
  queues: Record<Kind, string>;
  pub: ChannelModel;
  ch: ConfirmChannel;
  metrics: Metrics;
  cleanup: () => Promise<void>;
}

/** `bare`: the queues are declared as ws-gateway or the earlier bridge did, without arguments. */
async function setup(tag: string, opts: { bare?: boolean } = { bare: true }): Promise<Env> {
  const prefix = namespace(tag);
  const kafka = testKafka();
  const dropTopics = await createNamespace(kafka, prefix);
  const codec = await createTopicCodec({ registryUrl, prefix });
  const id = randomBytes(4).toString('hex');
  const queues = Object.fromEntries(KINDS.map((k) => [k, `test.ws-gateway.${k}.${id}`])) as Record<Kind, string>;
  const pub = await amqplib.connect(AMQP_URL);
  const ch = await pub.createConfirmChannel();
  if (opts.bare) for (const q of Object.values(queues)) await ch.assertQueue(q, { durable: true });
  return {
    kafka,
    codec,
    prefix,
    queues,
    pub,
    ch,
    metrics: createMetrics(),
    cleanup: async () => {
      for (const q of Object.values(queues)) await ch.deleteQueue(q).catch(() => {});
      await pub.close().catch(() => {});
      await dropTopics();
    },
  };
}

function makeBridge(env: Env, opts: { kafka?: KafkaPort; conns?: ChannelModel[]; batch?: number; metrics?: Metrics } = {}): WsGatewayBridge {
  const config = parseConfig({
    AMQP_URL,
    TOPIC_PREFIX: env.prefix,
    WS_GATEWAY_ORDER_QUEUE: env.queues.order,
    WS_GATEWAY_EXECUTION_QUEUE: env.queues.execution,
    WS_GATEWAY_POSITION_QUEUE: env.queues.position,
    WS_GATEWAY_WALLET_QUEUE: env.queues.wallet,
    WS_GATEWAY_TICKER_QUEUE: env.queues.ticker,
    WS_GATEWAY_BATCH_MAX: String(opts.batch ?? 64),
    WS_GATEWAY_RETRY_MAX_MS: '400',
  });
  return createWsGatewayBridge({
    kafka: opts.kafka ?? env.kafka,
    codec: env.codec,
    logger: testLogger,
    metrics: opts.metrics ?? env.metrics,
    config,
    amqpConnect: async (url) => {
      const c = await amqplib.connect(url);
      opts.conns?.push(c);
      return c;
    },
  });
}

async function send(env: Env, kind: Kind, body: unknown, props: amqplib.Options.Publish = {}): Promise<Buffer> {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  env.ch.sendToQueue(env.queues[kind], bytes, { persistent: true, contentType: 'application/json', ...props });
  await env.ch.waitForConfirms();
  return bytes;
}

/** Everything written to a topic of the namespace while the test runs. */
async function collector(env: Env, logical: string) {
  const consumer = env.kafka.consumer({ groupId: `reader-${randomBytes(4).toString('hex')}`, onFatal: failTool('test reader') });
  const all: InMessage[] = [];
  await consumer.connect();
  await consumer.subscribe([env.prefix + logical], true);
  await consumer.run(async (batch, ctl) => {
    for (const m of batch.messages) {
      all.push(m);
      ctl.resolveOffset(m.offset);
    }
  });
  return { all, stop: () => consumer.disconnect() };
}

type Collector = Awaited<ReturnType<typeof collector>>;

async function collectors(env: Env): Promise<Record<string, Collector>> {
  const out: Record<string, Collector> = {};
  for (const t of ['exchange.orders', 'exchange.executions', 'exchange.positions', 'exchange.wallet', 'market.tickers', 'exchange.dlq']) out[t] = await collector(env, t);
  return out;
}

const decode = async <T>(env: Env, logical: string, m: InMessage): Promise<T> => (await env.codec.decode(env.prefix + logical, m.value!)) as T;

async function queueDepth(env: Env): Promise<number> {
  let n = 0;
  for (const q of Object.values(env.queues)) n += (await env.ch.checkQueue(q)).messageCount;
  return n;
}

test('Bybit v5 messages and enveloped ones are mirrored to the exchange topics with the right fields, keys and headers', async () => {
  const env = await setup('wsg-basic');
  const bridge = makeBridge(env);
  const c = await collectors(env);
  try {
    const t0 = Date.now();
    await bridge.start();
    assert.equal(bridge.ready(), true);

    // plain Bybit v5 shape
    const order = doc('ws order');
    await send(env, 'order', order, { messageId: 'o-1', headers: { trace_id: 'trace-order' } });
    const exec = doc('ws execution');
    await send(env, 'execution', exec, { messageId: 'e-1' });
    // enveloped: {payload}, {message} with JSON text inside, {data: {topic, data}} nested twice
    const pos = doc('ws position');
    await send(env, 'position', { payload: pos, trace_id: 'trace-pos', relayed_at: 1 }, { messageId: 'p-1' });
    const wallet = doc('ws wallet');
    (wallet.data as Json[])[0]!.coin = [...((wallet.data as Json[])[0]!.coin as Json[]), { coin: 'BTC', equity: '1.5', walletBalance: '1.5', locked: '0.1', free: '1.4', usdValue: '90000' }];
    await send(env, 'wallet', { message: JSON.stringify(wallet) }, { messageId: 'w-1' });
    const tick = doc('ws tickers (linear)');
    await send(env, 'ticker', { data: { payload: tick }, category: 'linear' }, { messageId: 't-1', correlationId: 'corr-t' });
    const spotTick = doc('ws tickers (spot)');
    await send(env, 'ticker', { payload: spotTick, category: 'spot' }, { messageId: 't-2' });

    await waitFor('records on every topic', () =>
      c['exchange.orders']!.all.length >= 1 && c['exchange.executions']!.all.length >= 1 && c['exchange.positions']!.all.length >= 1 && c['exchange.wallet']!.all.length >= 2 && c['market.tickers']!.all.length >= 2,
    );

    const [om] = c['exchange.orders']!.all;
    const o = await decode<ExchangeOrderUpdate>(env, 'exchange.orders', om!);
    const oi = (order.data as Json[])[0]!;
    assert.equal(om!.key, oi.symbol);
    assert.deepEqual(
      { orderId: o.orderId, orderLinkId: o.orderLinkId, symbol: o.symbol, category: o.category, side: o.side, orderType: o.orderType, price: o.price, qty: o.qty, orderStatus: o.orderStatus, cumExecQty: o.cumExecQty, cumExecValue: o.cumExecValue, cumExecFee: o.cumExecFee, avgPrice: o.avgPrice, leavesQty: o.leavesQty, rejectReason: o.rejectReason, timeInForce: o.timeInForce, reduceOnly: o.reduceOnly },
      { orderId: oi.orderId, orderLinkId: '', symbol: oi.symbol, category: 'option', side: 'Sell', orderType: 'Market', price: '72.5', qty: '1', orderStatus: 'Filled', cumExecQty: '1', cumExecValue: '75', cumExecFee: '0.358635', avgPrice: '75', leavesQty: '', rejectReason: 'EC_NoError', timeInForce: 'IOC', reduceOnly: false },
    );
    assert.equal(o.createdTime, 1672364262444);
    assert.equal(o.updatedTime, 1672364262457);
    assert.equal(o.source, 'ws');
    assert.equal(o.streamMessageId, order.id);
    assert.equal(o.creationTime, order.creationTime);
    assert.ok(o.observedAt >= t0 && o.observedAt <= Date.now());
    assert.equal(om!.headers[WS_BRIDGE_HEADERS.messageId], 'o-1');
    assert.equal(om!.headers[WS_BRIDGE_HEADERS.queue], env.queues.order);
    assert.equal(om!.headers[WS_BRIDGE_HEADERS.redelivered], 'false');
    assert.equal(om!.headers[WS_BRIDGE_HEADERS.traceId], 'trace-order');
    assert.equal(om!.headers[WS_BRIDGE_HEADERS.bybitTopic], 'order');
    assert.equal(om!.headers[WS_BRIDGE_HEADERS.bybitMessageId], order.id);
    assert.equal(Number(om!.headers[WS_BRIDGE_HEADERS.receivedAt]), o.observedAt);

    const [em] = c['exchange.executions']!.all;
    const e = await decode<Execution>(env, 'exchange.executions', em!);
    assert.equal(em!.key, 'XRPUSDT');
    assert.deepEqual(
      { execId: e.execId, orderId: e.orderId, category: e.category, side: e.side, execPrice: e.execPrice, execQty: e.execQty, execValue: e.execValue, execFee: e.execFee, feeRate: e.feeRate, isMaker: e.isMaker, leavesQty: e.leavesQty, execTime: e.execTime, execType: e.execType, source: e.source },
      { execId: '7e2ae69c-4edf-5800-a352-893d52b446aa', orderId: 'f6e324ff-99c2-4e89-9739-3086e47f9381', category: 'linear', side: 'Sell', execPrice: '0.3374', execQty: '25', execValue: '8.435', execFee: '0.005061', feeRate: '0.0006', isMaker: false, leavesQty: '0', execTime: 1672364174443, execType: 'Trade', source: 'ws' },
    );
    assert.equal(em!.headers[WS_BRIDGE_HEADERS.traceId], undefined, 'no trace id anywhere: no header');

    const [pm] = c['exchange.positions']!.all;
    const p = await decode<Position>(env, 'exchange.positions', pm!);
    assert.equal(pm!.key, 'BTCUSDT');
    assert.deepEqual(
      { category: p.category, symbol: p.symbol, side: p.side, size: p.size, positionIdx: p.positionIdx, avgPrice: p.avgPrice, leverage: p.leverage, markPrice: p.markPrice, cumRealisedPnl: p.cumRealisedPnl, positionStatus: p.positionStatus, updatedTime: p.updatedTime },
      { category: 'linear', symbol: 'BTCUSDT', side: '', size: '0', positionIdx: 2, avgPrice: '0', leverage: '10', markPrice: '28184.5', cumRealisedPnl: '-25.06579337', positionStatus: 'Normal', updatedTime: 1697682317038 },
    );
    assert.equal(pm!.headers[WS_BRIDGE_HEADERS.traceId], 'trace-pos', 'trace id from the envelope');

    // wallet: one record per coin, keyed by coin, each with a one-element coin list
    const wallets = await Promise.all(c['exchange.wallet']!.all.map(async (m) => ({ key: m.key, v: await decode<WalletBalance>(env, 'exchange.wallet', m) })));
    assert.deepEqual(wallets.map((w) => w.key).sort(), ['BTC', 'USDT']);
    for (const w of wallets) {
      assert.equal(w.v.coin.length, 1);
      assert.equal(w.v.coin[0]!.coin, w.key);
      assert.equal(w.v.accountType, 'UNIFIED');
      assert.equal(w.v.totalEquity, '12837.78330098');
      assert.equal(w.v.updatedTime, 1672364262482, 'creationTime of the message');
    }
    const usdt = wallets.find((w) => w.key === 'USDT')!.v.coin[0]!;
    assert.deepEqual({ equity: usdt.equity, walletBalance: usdt.walletBalance, availableToWithdraw: usdt.availableToWithdraw, totalPositionIM: usdt.totalPositionIM, locked: usdt.locked }, { equity: '11726.64664904', walletBalance: '11728.54414904', availableToWithdraw: '11723.92075829', totalPositionIM: '2.72589075', locked: '0' });

    const ticks = await Promise.all(c['market.tickers']!.all.map(async (m) => ({ m, v: await decode<Ticker>(env, 'market.tickers', m) })));
    const lin = ticks.find((t) => t.v.category === 'linear')!;
    const spot = ticks.find((t) => t.v.category === 'spot')!;
    assert.equal(lin.m.key, 'BTCUSDT');
    assert.deepEqual(
      { lastPrice: lin.v.lastPrice, bid1Price: lin.v.bid1Price, ask1Price: lin.v.ask1Price, volume24h: lin.v.volume24h, markPrice: lin.v.markPrice, ts: lin.v.ts },
      { lastPrice: '17216.00', bid1Price: '17215.50', ask1Price: '17216.00', volume24h: '91705.276', markPrice: '17217.33', ts: 1673272861686 },
    );
    assert.equal(lin.m.headers[WS_BRIDGE_HEADERS.traceId], 'corr-t', 'trace id from the AMQP correlationId');
    assert.deepEqual({ lastPrice: spot.v.lastPrice, bid1Price: spot.v.bid1Price, volume24h: spot.v.volume24h, ts: spot.v.ts }, { lastPrice: '16363.78', bid1Price: null, volume24h: '5865.470182', ts: 1672305380595 });

    assert.equal(c['exchange.dlq']!.all.length, 0, 'nothing dead-lettered');
    // all acked: nothing comes back once the bridge is gone
    await bridge.stop();
    assert.equal(bridge.ready(), false);
    assert.equal(await queueDepth(env), 0);
    const metrics = await env.metrics.registry.getMetricsAsJSON();
    const out = metrics.find((m) => m.name === 'pipeline_bridge_messages_out_total')!.values.filter((v) => v.labels.bridge === 'ws-gateway-bridge');
    assert.equal(out.reduce((a, v) => a + v.value, 0), 7, '7 records written');
  } finally {
    await bridge.stop().catch(() => {});
    for (const x of Object.values(c)) await x.stop();
    await env.cleanup();
  }
});

test('bad messages are dead-lettered with a reason and acked, while the valid ones behind them flow', async () => {
  const env = await setup('wsg-dlq');
  const bridge = makeBridge(env);
  const c = await collectors(env);
  try {
    await bridge.start();
    const valid = (id: string) => {
      const m = doc('ws execution');
      (m.data as Json[])[0]!.execId = id;
      return m;
    };
    const bad: Array<{ kind: Kind; body: unknown; reason: string; id: string }> = [
      { kind: 'execution', body: 'not json {', reason: 'malformed_json', id: 'bad-json' },
      { kind: 'execution', body: [1, 2], reason: 'not_a_message', id: 'bad-array' },
      { kind: 'ticker', body: doc('ws orderbook (the page\'s \'...\' placeholders removed)'), reason: 'unknown_topic', id: 'bad-topic' },
      { kind: 'order', body: { ...doc('ws order'), data: [{ ...(doc('ws order').data as Json[])[0]!, orderId: undefined }] }, reason: 'invalid_item', id: 'bad-item' },
      { kind: 'execution', body: { topic: 'execution', id: 'x', creationTime: 1, data: [] }, reason: 'empty_data', id: 'bad-empty' },
      { kind: 'execution', body: { envelope: { topic: 'execution' } }, reason: 'not_a_message', id: 'bad-envelope' },
    ];
    const sent = new Map<string, Buffer>();
    let n = 0;
    for (const b of bad) {
      sent.set(b.id, await send(env, b.kind, b.body, { messageId: b.id, headers: { trace_id: `trace-${b.id}` } }));
      await send(env, 'execution', valid(`ok-${n++}`), { messageId: `ok-${n}` });
    }
    // one message with a good and a bad item: the good one flows, the original is dead-lettered
    const mixed = valid('ok-mixed');
    (mixed.data as Json[]).push({ ...(mixed.data as Json[])[0]!, execId: 'bad-qty', execQty: 'lots' });
    sent.set('mixed', await send(env, 'execution', mixed, { messageId: 'mixed' }));

    await waitFor('valid executions and dead letters', () => c['exchange.executions']!.all.length >= n + 1 && c['exchange.dlq']!.all.length >= bad.length + 1);
    const execIds = await Promise.all(c['exchange.executions']!.all.map(async (m) => (await decode<Execution>(env, 'exchange.executions', m)).execId));
    assert.deepEqual(execIds, [...Array.from({ length: n }, (_, i) => `ok-${i}`), 'ok-mixed'], 'every valid execution, in queue order');
    const dls = await Promise.all(c['exchange.dlq']!.all.map((m) => decode<DeadLetter>(env, 'exchange.dlq', m)));
    const byId = new Map(dls.map((d) => [d.headers['amqp.message_id'], d]));
    for (const b of bad) {
      const d = byId.get(b.id);
      assert.ok(d, `${b.id} dead-lettered`);
      assert.equal(d.reason_code, b.reason, `${b.id}: ${d.reason_detail}`);
      assert.ok(Buffer.from(d.original_value!).equals(sent.get(b.id)!), 'original bytes kept');
      assert.equal(d.original_topic, `amqp:${env.queues[b.kind]}`);
      assert.equal(d.stage, 'ws-gateway-bridge');
      assert.equal(d.original_offset, -1);
      assert.equal(d.trace_id, `trace-${b.id}`);
    }
    assert.match(byId.get('bad-item')!.reason_detail, /orderId/);
    const m = byId.get('mixed')!;
    assert.equal(m.reason_code, 'invalid_item');
    assert.match(m.reason_detail, /1 of 2 items refused: item 1: execQty/);
    assert.equal(c['exchange.orders']!.all.length, 0);

    await bridge.stop();
    assert.equal(await queueDepth(env), 0, 'bad messages acked too: nothing blocks the queue');
    const rejected = (await env.metrics.registry.getMetricsAsJSON()).find((x) => x.name === 'pipeline_bridge_messages_rejected_total')!.values;
    const count = (reason: string) => rejected.filter((v) => v.labels.reason === reason).reduce((a, v) => a + v.value, 0);
    assert.equal(count('malformed_json'), 1);
    assert.equal(count('not_a_message'), 2);
    assert.equal(count('unknown_topic'), 1);
    assert.equal(count('invalid_item'), 2);
    assert.equal(count('empty_data'), 1);
  } finally {
    await bridge.stop().catch(() => {});
    for (const x of Object.values(c)) await x.stop();
    await env.cleanup();
  }
});

/** A Kafka port whose producer sends can be held or failed by the test. */
function controlledKafka(real: KafkaPort, before: (topic: string, messages: OutMessage[]) => Promise<void>): KafkaPort {
  return {
    admin: () => real.admin(),
    consumer: (o) => real.consumer(o),
    producer: (o) => {
      const p = real.producer(o);
      return {
        connect: () => p.connect(),
        send: async (topic, messages) => {
          await before(topic, messages);
          await p.send(topic, messages);
        },
        sendAt: async (topic, messages) => {
          await before(topic, messages);
          return p.sendAt(topic, messages);
        },
        sendBatch: async (batches) => {
          for (const b of batches) await before(b.topic, b.messages);
          await p.sendBatch(batches);
        },
        transaction: () => p.transaction(),
        disconnect: () => p.disconnect(),
      };
    },
  };
}

test('acks only after Kafka has the records: a connection lost while the send is pending loses nothing', async () => {
  const env = await setup('wsg-ack');
  let release!: () => void;
  let hold: Promise<void> | null = new Promise<void>((r) => (release = r));
  let held = 0;
  const kafka = controlledKafka(env.kafka, async (_t, msgs) => {
    if (hold) {
      held += msgs.length;
      await hold;
    }
  });
  const conns: ChannelModel[] = [];
  const bridge = makeBridge(env, { kafka, conns });
  const c = await collectors(env);
  try {
    await bridge.start();
    const ids = ['a-1', 'a-2', 'a-3', 'a-4'];
    for (const id of ids) {
      const m = doc('ws execution');
      (m.data as Json[])[0]!.execId = id;
      await send(env, 'execution', m, { messageId: id });
    }
    await waitFor('a Kafka send to be pending', () => held > 0);
    assert.equal(c['exchange.executions']!.all.length, 0, 'Kafka has nothing yet');
    // The connection dies before Kafka confirmed: nothing may have been acked, so all come back.
    await conns[0]!.close();
    await waitFor('the bridge to reconnect', () => conns.length >= 2 && bridge.ready());
    const h = hold;
    hold = null;
    release();
    await h;
    await waitFor('every execution redelivered to Kafka', async () => {
      const redelivered = c['exchange.executions']!.all.filter((m) => m.headers[WS_BRIDGE_HEADERS.redelivered] === 'true');
      const got = new Set(await Promise.all(redelivered.map(async (m) => (await decode<Execution>(env, 'exchange.executions', m)).execId)));
      return ids.every((id) => got.has(id));
    });
    await bridge.stop();
    assert.equal(await queueDepth(env), 0, 'everything acked in the end');
  } finally {
    release();
    await bridge.stop().catch(() => {});
    for (const x of Object.values(c)) await x.stop();
    await env.cleanup();
  }
});

test('Kafka send failures: requeued and retried after backoff, nothing lost, per-symbol order kept', async () => {
  const env = await setup('wsg-kfail');
  let failures = 2;
  let attempts = 0;
  const kafka = controlledKafka(env.kafka, async () => {
    attempts++;
    if (failures > 0) {
      failures--;
      throw Object.assign(new Error('broker not available (test)'), { name: 'KafkaJSConnectionError', retriable: true });
    }
  });
  const bridge = makeBridge(env, { kafka, batch: 4 });
  const c = await collectors(env);
  try {
    await bridge.start();
    const ids = Array.from({ length: 20 }, (_, i) => `k-${i}`);
    for (const id of ids) {
      const m = doc('ws execution');
      (m.data as Json[])[0]!.execId = id;
      env.ch.sendToQueue(env.queues.execution, Buffer.from(JSON.stringify(m)), { persistent: true, messageId: id });
    }
    await env.ch.waitForConfirms();
    const got = async () => Promise.all(c['exchange.executions']!.all.map(async (m) => (await decode<Execution>(env, 'exchange.executions', m)).execId));
    await waitFor('all 20 executions', async () => new Set(await got()).size === 20);
    assert.ok(attempts >= 3, `sends retried (${attempts})`);
    const first: string[] = [];
    for (const id of await got()) if (!first.includes(id)) first.push(id);
    assert.deepEqual(first, ids, 'first arrivals in queue order');
    await bridge.stop();
    assert.equal(await queueDepth(env), 0);
  } finally {
    await bridge.stop().catch(() => {});
    for (const x of Object.values(c)) await x.stop();
    await env.cleanup();
  }
});

test('messages near the size cap: each Kafka send stays under the broker limit, everything flows and the queues keep flowing', async () => {
  const env = await setup('wsg-bytes');
  const c = await collectors(env);
  /** An execution message of about `bytes` bytes: many items of one symbol (one partition), distinct execIds. */
  const big = (tag: string, bytes: number): Json => {
    const m = doc('ws execution');
    const item = (m.data as Json[])[0]!;
    const items: Json[] = [];
    for (let size = JSON.stringify(m).length; ; ) {
      const next = { ...item, execId: `${tag}-${items.length}-${'0'.repeat(24)}` };
      size += JSON.stringify(next).length + 1;
      if (size > bytes) break;
      items.push(next);
    }
    m.data = items;
    return m;
  };
  const small = (id: string): Json => {
    const m = doc('ws execution');
    (m.data as Json[])[0]!.execId = id;
    return m;
  };
  const expected: string[] = [];
  const publishAll = async (round: string, n: number) => {
    for (let i = 0; i < n; i++) {
      const b = big(`${round}-big${i}`, 250 * 1024);
      const body = Buffer.from(JSON.stringify(b));
      assert.ok(body.length > 240 * 1024 && body.length <= 262144, `a ~250 KiB valid message (${body.length} bytes)`);
      env.ch.sendToQueue(env.queues.execution, body, { persistent: true, messageId: `${round}-big${i}` });
      expected.push(...(b.data as Json[]).map((x) => String(x.execId)));
      env.ch.sendToQueue(env.queues.execution, Buffer.from(JSON.stringify(small(`${round}-small${i}`))), { persistent: true, messageId: `${round}-small${i}` });
      expected.push(`${round}-small${i}`);
      await send(env, 'order', doc('ws order'), { messageId: `${round}-order${i}` });
    }
    await env.ch.waitForConfirms();
  };
  const bridge = makeBridge(env);
  try {
    // Published before the bridge starts: the first batches hold as many of them as the prefetch allows.
    await publishAll('r1', 8);
    await bridge.start();
    const execIds = async () => new Set(await Promise.all(c['exchange.executions']!.all.map(async (m) => (await decode<Execution>(env, 'exchange.executions', m)).execId)));
    await waitFor('every execution of the large messages and the small ones', async () => (await execIds()).size === expected.length, 90_000);
    // the queues keep flowing: a second round behind the first
    await publishAll('r2', 3);
    await waitFor('the second round', async () => (await execIds()).size === expected.length, 90_000);
    await waitFor('every order update', () => c['exchange.orders']!.all.length >= 11);
    const got = await execIds();
    assert.deepEqual(expected.filter((id) => !got.has(id)), [], 'nothing missing');
    // What the old one-request-per-batch bridge had to send at once for the first round alone.
    const size = (m: InMessage) => m.value!.length + (m.key?.length ?? 0) + Object.entries(m.headers).reduce((a, [k, v]) => a + k.length + v.length, 0);
    const firstRound = c['exchange.executions']!.all.filter((m) => m.headers[WS_BRIDGE_HEADERS.messageId]?.startsWith('r1-')).reduce((a, m) => a + size(m), 0);
    assert.ok(firstRound > 1_048_588, `the first round's records (${firstRound} bytes, one partition) exceed the broker's message.max.bytes`);
    assert.equal(c['exchange.dlq']!.all.length, 0, 'nothing dead-lettered');
    await bridge.stop();
    assert.equal(await queueDepth(env), 0, 'everything acked');
  } finally {
    await bridge.stop().catch(() => {});
    for (const x of Object.values(c)) await x.stop();
    await env.cleanup();
  }
});


test('queues are declared with length limits (reject-publish); oversize bodies are cut on arrival, not held whole until their ack', async (t) => {
  const env = await setup('wsg-limits', { bare: false });
  let release!: () => void;
  const hold = new Promise<void>((r) => (release = r));
  const kafka = controlledKafka(env.kafka, () => hold);
  const c = await collectors(env);
  const declaring = makeBridge(env);
  const bridge = makeBridge(env, { kafka });
  try {
    await declaring.start(); // creates the queues
    await declaring.stop();
    const cfg = parseConfig({});
    const probe = await env.pub.createChannel();
    probe.on('error', () => {});
    for (const q of Object.values(env.queues)) {
      await probe.assertQueue(q, { durable: true, arguments: { 'x-max-length': cfg.WS_GATEWAY_QUEUE_MAX_LENGTH, 'x-max-length-bytes': cfg.WS_GATEWAY_QUEUE_MAX_BYTES, 'x-overflow': 'reject-publish' } });
    }
    await assert.rejects(probe.assertQueue(env.queues.order, { durable: true }), /PRECONDITION_FAILED/, 'declared with the limits');

    const N = 12;
    const SIZE = 8 * 1024 * 1024;
    for (let i = 0; i < N; i++) {
      const body = Buffer.alloc(SIZE, 0x20);
      Buffer.from(JSON.stringify(doc('ws execution'))).copy(body);
      env.ch.sendToQueue(env.queues.execution, body, { persistent: true, messageId: `huge-${i}` });
      await env.ch.waitForConfirms();
    }
    const before = await externalBytes();
    await bridge.start();
    // Kafka holds the first send, so every delivery stays unacknowledged in the bridge.
    const inTotal = async () => (await env.metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'pipeline_bridge_messages_in_total')?.values.reduce((a, v) => a + v.value, 0) ?? 0;
    await waitFor(`all ${N} delivered to the bridge`, async () => (await inTotal()) === N, 120_000);
    const grown = (await externalBytes()) - before;
    t.diagnostic(`external memory grew by ${(grown / 1048576).toFixed(1)} MiB holding ${N} deliveries of ${SIZE / 1048576} MiB`);
    // Holding the bodies would take N × SIZE (96 MiB); the cut ones take N × WS_GATEWAY_MAX_MESSAGE_BYTES
    // (3 MiB), plus the clients' own buffers (a few MiB, varying): a quarter of the bodies separates them.
    assert.ok(grown < (N * SIZE) / 4, `memory outside the heap grew by ${(grown / 1048576).toFixed(1)} MiB holding ${N} messages of ${SIZE / 1048576} MiB`);
    release();
    await waitFor('the oversize dead letters', () => c['exchange.dlq']!.all.length >= N, 60_000);
    for (const m of c['exchange.dlq']!.all) {
      const d = await decode<DeadLetter>(env, 'exchange.dlq', m);
      assert.equal(d.reason_code, 'oversize');
      assert.match(d.reason_detail, new RegExp(`^${SIZE} bytes, limit ${cfg.WS_GATEWAY_MAX_MESSAGE_BYTES}`));
      assert.equal(d.original_value!.length, cfg.WS_GATEWAY_MAX_MESSAGE_BYTES, 'the first bytes kept');
    }
    await bridge.stop();
    assert.equal(await queueDepth(env), 0);
  } finally {
    release();
    await declaring.stop().catch(() => {});
    await bridge.stop().catch(() => {});
    for (const x of Object.values(c)) await x.stop();
    await env.cleanup();
  }
});
