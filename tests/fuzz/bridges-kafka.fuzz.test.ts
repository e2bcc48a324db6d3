// Bad input through the real path (RabbitMQ → bridge → Kafka → stage), fewer runs than the pure
// suites: fast-check draws a mixed batch of bad messages (seeded), they are published to a real
// RabbitMQ queue with valid messages behind them, and the bridges and the validation stage run as
// in production (the runner on the real broker, PostgreSQL for validation's state). Properties:
// nothing reports a fatal error and the units keep consuming; every bad message has exactly one
// dead-letter record (original bytes, machine-readable reason) and, where its signal_id is readable,
// a signal_rejected event; every valid message behind the bad ones comes out on the output topics.
//
// FUZZ_RUNS scales the number of bad messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import amqplib from 'amqplib';
import fc from 'fast-check';
import { consumeToEnd, testLogger, waitCaughtUp, waitFor } from '../helpers.ts';
import { createSignalBridge, parseConfig as signalBridgeConfig } from '../../connectors/signal-bridge.ts';
import { createWsGatewayBridge, parseConfig as wsConfig } from '../../connectors/ws-gateway-bridge.ts';
import { parseStreamMessage, TickerBook, unwrapBytes } from '../../connectors/bybit-stream-format.ts';
import { createValidateStage, parseConfig as validateConfig, VALIDATION_REASONS } from '../../pipelines/validate.ts';
import { DLQ_HEADERS } from '../../pipelines/runner.ts';
import type { DeadLetter, Execution, OrderEvent, Signal } from '../../schemas/types.ts';
import { fuzzStack } from './stack.ts';
import { createSignalOutBridge } from '../../connectors/signal-out-bridge.ts';
import { createEventsOutBridge, parseConfig as eventsOutConfig } from '../../connectors/events-out-bridge.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import { systemClock } from '../../runtime/clock.ts';
import { DEFAULT_INSTRUMENTS } from '../../sim/instruments.ts';
import { INJECTIONS, nasty, nonUtf8, runs, validSignal as fuzzSignal } from './arbitraries.ts';
import { failTool } from '../../runtime/kafka.ts';

const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const SIGNAL_MAX_BYTES = 4096;

const validSignal = (over: Record<string, unknown> = {}) => fuzzSignal(Date.now(), over);
const FIELDS = ['signal_id', 'signal_type', 'asset', 'amount', 'confidence', 'timestamp', 'strategy_id', 'is_warmup', 'market_data_snapshot', 'metadata', 'trace_id'];
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

/** Bad signal messages of every kind the issue lists (each is refused by validation). */
const badSignal: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.concat([Buffer.from('{"broken'), Buffer.from(a)])),
  nonUtf8,
  fc.constant(null).map(() => json(validSignal({ strategy_id: 'x'.repeat(SIGNAL_MAX_BYTES) }))), // oversize
  fc.tuple(fc.constantFrom(...FIELDS), nasty).map(([f, v]) => json(validSignal({ [f]: v }))),
  fc.constantFrom('NaN', 'Infinity', '-1', '0', '1e400', '"100"', '1e13').map((a) => Buffer.from(JSON.stringify(validSignal()).replace('"amount":100', `"amount":${a}`))),
  fc.constantFrom('NOPEUSDT', 'ethusdt', 'ETH USDT', '__proto__').map((asset) => json(validSignal({ asset }))),
  fc.constantFrom(-86_400_000, -3_600_000, 3_600_000, 86_400_000 * 365).map((d) => json(validSignal({ timestamp: new Date(Date.now() + d).toISOString() }))),
  fc.constantFrom(...INJECTIONS).map((s) => json(validSignal({ asset: s }))),
  fc.constant(null).map(() => Buffer.from(`{"__proto__":{"polluted":true},${JSON.stringify(validSignal()).slice(1).replace('"amount":100', '"amount":-5')}`)),
);

test('signal bridge + validation on the real path: every bad message is dead-lettered with a reason, valid ones behind flow', async () => {
  const st = await fuzzStack('fz-sig');
  const queue = `test.fuzz.signals.${randomBytes(4).toString('hex')}`;
  const pub = await amqplib.connect(AMQP_URL);
  const ch = await pub.createConfirmChannel();
  await ch.assertQueue(queue, { durable: true });
  const bridge = createSignalBridge({ kafka: st.kafka, logger: testLogger, metrics: st.metrics, config: signalBridgeConfig({ AMQP_URL, TOPIC_PREFIX: st.prefix, SIGNALS_QUEUE: queue, SIGNAL_BRIDGE_RETRY_MAX_MS: '500' }) });
  const t0 = Date.now();
  try {
    await bridge.start();
    const cfg = validateConfig({ TOPIC_PREFIX: st.prefix, SIGNAL_MAX_BYTES: String(SIGNAL_MAX_BYTES), SIGNAL_MAX_AGE_MS: '600000', ASSETS: '' });
    await st.run(createValidateStage({ config: cfg, db: st.db, logger: testLogger }));
    // The pure stage is the oracle of which draws are bad (replacing strategy_id by "abc" leaves a valid signal).
    const oracle = createValidateStage({ config: cfg });
    const assets = new Map(DEFAULT_INSTRUMENTS.map((i) => [i.symbol, true]));
    let off = 0;
    const refused = (b: Buffer) => oracle.process({ value: b, key: null, headers: { received_at: String(Date.now()) }, topic: 'x', partition: 0, offset: String(off++), timestamp: Date.now(), traceId: null }, { state: { assets, known: new Map(), firstInChunk: new Map() }, clock: systemClock }).kind === 'reject';
    const bad = fc.sample(badSignal, { numRuns: runs(80), seed: 201 }).filter(refused);
    assert.ok(bad.length >= runs(40), `enough bad messages (${bad.length})`);
    // a duplicate: the same valid signal twice (the second copy is refused)
    const dup = json(validSignal());
    const valid = Array.from({ length: 5 }, () => validSignal());
    const sent = [dup, ...bad, dup, ...valid.map(json)];
    for (const b of sent) ch.sendToQueue(queue, b, { persistent: true, messageId: randomUUID() });
    await ch.waitForConfirms();
    await waitFor('the bridge to drain the queue', async () => (await ch.checkQueue(queue)).messageCount === 0, 60_000);
    await waitCaughtUp(st.kafka, `${st.prefix}validate`, `${st.prefix}signals.raw`);

    const out = await consumeToEnd(st.kafka, `${st.prefix}signals.valid`, 3);
    const passed = await Promise.all(out.map(async (m) => (await st.codec.decode(m.topic, m.value!)) as Signal));
    const passedIds = new Set(passed.map((s) => s.signal_id));
    for (const v of valid) assert.ok(passedIds.has(v.signal_id as string), `valid signal ${v.signal_id} behind the bad ones flowed`);
    assert.equal(passed.length, valid.length + 1, 'only the valid ones (and the first copy of the duplicate) pass');

    const dead = await consumeToEnd(st.kafka, `${st.prefix}signals.dlq`, 1);
    const envelopes = await Promise.all(dead.map(async (m) => (await st.codec.decode(m.topic, m.value!)) as DeadLetter));
    assert.equal(dead.length, bad.length + 1, 'one dead letter per bad message (and the duplicate)');
    const codes = new Set<string>(Object.values(VALIDATION_REASONS));
    for (const [i, e] of envelopes.entries()) {
      assert.ok(codes.has(e.reason_code), `known reason ${e.reason_code}`);
      assert.equal(dead[i]!.headers[DLQ_HEADERS.reason], e.reason_code);
      assert.ok(e.reason_detail.length > 0);
    }
    // the original bytes are kept (oversize ones are kept whole: they are under the bridge's record cap)
    const kept = new Set(envelopes.map((e) => Buffer.from(e.original_value!).toString('base64')));
    for (const b of bad) assert.ok(kept.has(b.toString('base64')), `dead letter of ${b.toString('utf8').slice(0, 80)}`);
    assert.ok(envelopes.some((e) => e.reason_code === VALIDATION_REASONS.duplicate));
    // a signal_rejected event for every refusal whose signal_id was readable, except the repeat of
    // the duplicate: its first copy passed, and a repeated delivery is no second outcome
    const events = await consumeToEnd(st.kafka, `${st.prefix}orders.events`, 3);
    const rejectedIds = new Set((await Promise.all(events.map(async (m) => (await st.codec.decode(m.topic, m.value!)) as OrderEvent))).map((e) => e.signal_id));
    const dupId = (JSON.parse(dup.toString('utf8')) as { signal_id: string }).signal_id;
    for (const e of envelopes) {
      if (!e.signal_id) continue;
      if (e.signal_id === dupId) assert.ok(!rejectedIds.has(e.signal_id), `no signal_rejected event for the repeat of ${e.signal_id}, which passed`);
      else assert.ok(rejectedIds.has(e.signal_id), `signal_rejected event for ${e.signal_id}`);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution');
    assert.deepEqual(st.fatal, []);
    assert.equal(bridge.ready(), true, 'the bridge is still consuming');
    testLogger.info({ bad: bad.length, ms: Date.now() - t0 }, 'signal path fuzz done');
  } finally {
    await bridge.stop();
    await ch.deleteQueue(queue).catch(() => {});
    await pub.close().catch(() => {});
    await st.close();
  }
});

type Json = Record<string, unknown>;
const DOC = JSON.parse(readFileSync(new URL('../sim/fixtures/bybit-v5-doc-examples.json', import.meta.url), 'utf8')) as { examples: Array<{ name: string; example: Json }> };
const doc = (name: string): Json => structuredClone(DOC.examples.find((e) => e.name === name)!.example);
const WS_FIELDS = ['symbol', 'orderId', 'orderLinkId', 'side', 'qty', 'price', 'orderStatus', 'cumExecQty', 'createdTime', 'updatedTime', 'category', 'execId', 'execQty', 'execPrice', 'execTime', 'size', 'positionIdx', 'coin', 'walletBalance', 'lastPrice'];

const badWs: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
  nonUtf8,
  fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
  fc.tuple(fc.constantFrom('ws order', 'ws execution', 'ws position', 'ws wallet'), fc.constantFrom(...WS_FIELDS), fc.oneof(nasty, fc.constantFrom('1e100000000', '-1', '\u0000', 'Filled\u0000', '9'.repeat(60)))).map(([n, f, v]) => {
    const m = doc(n);
    const item = (m.data as Json[])[0]!;
    if (f === 'walletBalance' && Array.isArray(item.coin)) (item.coin as Json[])[0]![f] = v;
    else item[f] = v;
    return json(m);
  }),
  fc.constantFrom('orderbook.50.BTCUSDT', 'execution.fast', '__proto__', "'; DROP TABLE orders; --").map((topic) => json({ ...doc('ws order'), topic })),
  fc.constant(null).map(() => json({ payload: { payload: { payload: { payload: doc('ws order') } } } })),
);

test('ws-gateway bridge on the real path: every refused message is dead-lettered once with a reason, valid ones behind flow', async () => {
  const st = await fuzzStack('fz-wsg');
  const id = randomBytes(4).toString('hex');
  const queues = Object.fromEntries(['order', 'execution', 'position', 'wallet', 'ticker'].map((k) => [k, `test.fuzz.wsg.${k}.${id}`]));
  const pub = await amqplib.connect(AMQP_URL);
  const ch = await pub.createConfirmChannel();
  for (const q of Object.values(queues)) await ch.assertQueue(q, { durable: true });
  const bridge = createWsGatewayBridge({
    kafka: st.kafka,
    codec: st.codec,
    logger: testLogger,
    metrics: st.metrics,
    config: wsConfig({ AMQP_URL, TOPIC_PREFIX: st.prefix, WS_GATEWAY_ORDER_QUEUE: queues.order, WS_GATEWAY_EXECUTION_QUEUE: queues.execution, WS_GATEWAY_POSITION_QUEUE: queues.position, WS_GATEWAY_WALLET_QUEUE: queues.wallet, WS_GATEWAY_TICKER_QUEUE: queues.ticker, WS_GATEWAY_RETRY_MAX_MS: '400', WS_GATEWAY_MAX_MESSAGE_BYTES: '8192' }),
  });
  try {
    await bridge.start();
    const bad = fc.sample(badWs, { numRuns: runs(40), seed: 202 });
    bad.push(Buffer.concat([Buffer.from('{"topic":"order","data":['), Buffer.alloc(9000, 0x20), Buffer.from(']}')])); // oversize
    // The pure parser is the oracle of which of them must be refused (a mutation can leave a message valid).
    const book = new TickerBook();
    const refused = bad.filter((b) => {
      if (b.length > 8192) return true;
      const u = unwrapBytes(b);
      if (!u.ok) return true;
      const p = parseStreamMessage(u.message, { source: 'ws', observedAt: Date.now(), tickerCategory: 'linear', tickers: book });
      return !p.ok || p.problems.length > 0;
    });
    assert.ok(refused.length >= bad.length / 2, 'most of the sample is bad');
    for (const b of bad) ch.sendToQueue(queues.order!, b, { persistent: true });
    const execIds = Array.from({ length: 3 }, () => randomUUID());
    for (const execId of execIds) {
      const m = doc('ws execution');
      (m.data as Json[])[0]!.execId = execId;
      ch.sendToQueue(queues.execution!, json(m), { persistent: true });
    }
    await ch.waitForConfirms();
    await waitFor('the bridge to drain the queues', async () => {
      for (const q of Object.values(queues)) if ((await ch.checkQueue(q)).messageCount > 0) return false;
      return true;
    }, 60_000);
    const dead = await consumeToEnd(st.kafka, `${st.prefix}exchange.dlq`, 1);
    const envelopes = await Promise.all(dead.map(async (m) => (await st.codec.decode(m.topic, m.value!)) as DeadLetter));
    assert.equal(dead.length, refused.length, 'one dead letter per refused message');
    const known = new Set(['malformed_json', 'not_a_message', 'unknown_topic', 'invalid_item', 'empty_data', 'oversize']);
    for (const e of envelopes) assert.ok(known.has(e.reason_code), `known reason ${e.reason_code}`);
    const execs = await consumeToEnd(st.kafka, `${st.prefix}exchange.executions`, 3);
    const got = new Set((await Promise.all(execs.map(async (m) => (await st.codec.decode(m.topic, m.value!)) as Execution))).map((e) => e.execId));
    for (const e of execIds) assert.ok(got.has(e), `valid execution ${e} behind the bad messages flowed`);
    assert.equal(bridge.ready(), true, 'the bridge is still consuming');
  } finally {
    await bridge.stop();
    for (const q of Object.values(queues)) await ch.deleteQueue(q).catch(() => {});
    await pub.close().catch(() => {});
    await st.close();
  }
});

test('signal-out bridge on the real path: garbage on model.signals is dead-lettered as undecodable and counted, the valid signals behind it are published', async () => {
  const st = await fuzzStack('fz-mso');
  const queue = `test.fuzz.model-signals.${randomBytes(4).toString('hex')}`;
  const conn = await amqplib.connect(AMQP_URL);
  const ch = await conn.createChannel();
  const bridge = createSignalOutBridge({ kafka: st.kafka, codec: st.codec, logger: testLogger, metrics: st.metrics, amqpUrl: AMQP_URL, queue, queueLimits: { maxLength: signalBridgeConfig({}).SIGNALS_QUEUE_MAX_LENGTH, maxBytes: signalBridgeConfig({}).SIGNALS_QUEUE_MAX_BYTES }, topicPrefix: st.prefix, groupId: `${st.prefix}mso`, batchMax: 10, retryMaxMs: 500, onFatal: failTool('signal-out bridge under test') });
  try {
    const topic = `${st.prefix}model.signals`;
    const junk = fc.sample(fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 200 }).map((a) => Buffer.from(a)), fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0, ...a]))), { numRuns: runs(15), seed: 203 });
    const good = [randomUUID(), randomUUID()].map((signal_id) => ({ ...SAMPLES.ModelSignal, signal_id }));
    const p = st.kafka.producer();
    await p.connect();
    await p.send(topic, [...junk.map((value) => ({ key: 'ETHUSDT', value, partition: 0 })), ...(await Promise.all(good.map(async (s) => ({ key: 'ETHUSDT', value: await st.codec.encode(topic, s), partition: 0 }))))]);
    await p.disconnect();
    await bridge.start();
    await ch.checkQueue(queue); // declared by the bridge, with its length limits
    const got: string[] = [];
    await ch.consume(queue, (m) => {
      if (!m) return;
      got.push(m.properties.messageId as string);
      ch.ack(m);
    });
    await waitFor('the valid model signals behind the garbage', () => good.every((s) => got.includes(s.signal_id)), 60_000);
    assert.match(await st.metrics.registry.getSingleMetricAsString('pipeline_bridge_messages_rejected_total'), new RegExp(`bridge="model-signal-out-bridge",reason="undecodable"} ${junk.length}$`, 'm'));
    const dead = await consumeToEnd(st.kafka, `${st.prefix}signals.dlq`, 1);
    const envelopes = await Promise.all(dead.map(async (m) => (await st.codec.decode(m.topic, m.value!)) as DeadLetter));
    assert.equal(envelopes.filter((e) => e.reason_code === 'undecodable' && e.stage === 'model-signal-out-bridge').length, junk.length, 'one undecodable dead letter per garbage record');
    for (const j of junk) assert.ok(envelopes.some((e) => Buffer.from(e.original_value!).equals(j)), 'original bytes kept');
  } finally {
    await bridge.stop();
    await ch.deleteQueue(queue).catch(() => {});
    await conn.close().catch(() => {});
    await st.close();
  }
});

test('events-out bridge on the real path: garbage on orders.events is dead-lettered as undecodable, the events behind it reach RabbitMQ', async () => {
  const st = await fuzzStack('fz-evo');
  const queue = `test.fuzz.order-events.${randomBytes(4).toString('hex')}`;
  const conn = await amqplib.connect(AMQP_URL);
  const ch = await conn.createChannel();
  await ch.assertQueue(queue, { durable: true });
  const bridge = createEventsOutBridge({ kafka: st.kafka, codec: st.codec, logger: testLogger, metrics: st.metrics, config: eventsOutConfig({ AMQP_URL, TOPIC_PREFIX: st.prefix, ORDER_EVENTS_QUEUE: queue, EVENTS_OUT_GROUP: 'events-out', EVENTS_OUT_RETRY_MAX_MS: '300' }), onFatal: failTool('events-out bridge under test') });
  try {
    const topic = `${st.prefix}orders.events`;
    const junk = fc.sample(fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 200 }).map((a) => Buffer.from(a)), fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0, ...a]))), { numRuns: runs(15), seed: 204 });
    const good = [randomUUID(), randomUUID()].map((event_id) => ({ ...SAMPLES.OrderEvent, event_id }));
    const p = st.kafka.producer();
    await p.connect();
    await p.send(topic, [...junk.map((value) => ({ key: 'ETHUSDT', value, partition: 0 })), ...(await Promise.all(good.map(async (e) => ({ key: 'ETHUSDT', value: await st.codec.encode(topic, e), partition: 0 }))))]);
    await p.disconnect();
    await bridge.start();
    const got: string[] = [];
    await ch.consume(queue, (m) => {
      if (!m) return;
      got.push(m.properties.messageId as string);
      ch.ack(m);
    });
    await waitFor('the valid order events behind the garbage', () => good.every((e) => got.includes(e.event_id)), 60_000);
    const dead = await consumeToEnd(st.kafka, `${st.prefix}orders.dlq`, 1);
    const envelopes = await Promise.all(dead.map(async (m) => (await st.codec.decode(m.topic, m.value!)) as DeadLetter));
    assert.equal(envelopes.filter((e) => e.reason_code === 'undecodable').length, junk.length, 'one undecodable dead letter per garbage record');
    for (const j of junk) assert.ok(envelopes.some((e) => Buffer.from(e.original_value!).equals(j)), 'original bytes kept');
    assert.equal(got.length, good.length, 'nothing but the valid events was published');
  } finally {
    await bridge.stop();
    await ch.deleteQueue(queue).catch(() => {});
    await conn.close().catch(() => {});
    await st.close();
  }
});
