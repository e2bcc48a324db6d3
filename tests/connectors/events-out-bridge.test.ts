// The events-out bridge on the real local Kafka + registry and the real RabbitMQ: each test has its
// own topic namespace and its own queue (removed afterwards). Bounded polling, no sleeps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import amqplib, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { createNamespace, namespace, registryUrl, testKafka, testLogger, waitCaughtUp, waitFor } from '../helpers.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { failTool, type KafkaPort } from '../../runtime/kafka.ts';
import { createTopicCodec, type TopicCodec } from '../../schemas/topic-codec.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import type { OrderEvent } from '../../schemas/types.ts';
import { createEventsOutBridge, parseConfig, toJson, type EventsOutBridge } from '../../connectors/events-out-bridge.ts';

const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const SYMBOLS = ['BTCUSDT', 'ETHUSDT', 'SOLUSDT'];

interface Env {
  kafka: KafkaPort;
  codec: TopicCodec;
  prefix: string;
  topic: string;
  queue: string;
  conn: ChannelModel;
  ch: Channel;
  received: ConsumeMessage[];
  cleanup: () => Promise<void>;
}

async function setup(tag: string): Promise<Env> {
  const prefix = namespace(tag);
  const kafka = testKafka();
  const drop = await createNamespace(kafka, prefix);
  const codec = await createTopicCodec({ registryUrl, prefix });
  const queue = `test.order_events.${randomBytes(4).toString('hex')}`;
  const conn = await amqplib.connect(AMQP_URL);
  const ch = await conn.createChannel();
  await ch.assertQueue(queue, { durable: true });
  const received: ConsumeMessage[] = [];
  await ch.consume(queue, (m) => m && received.push(m), { noAck: true });
  return {
    kafka,
    codec,
    prefix,
    topic: `${prefix}orders.events`,
    queue,
    conn,
    ch,
    received,
    cleanup: async () => {
      await ch.deleteQueue(queue).catch(() => {});
      await conn.close().catch(() => {});
      await drop();
    },
  };
}

function event(i: number, over: Partial<OrderEvent> = {}): OrderEvent {
  const symbol = SYMBOLS[i % SYMBOLS.length]!;
  return {
    ...structuredClone(SAMPLES.OrderEvent),
    latencies: { ...SAMPLES.OrderEvent.latencies },
    event_id: `om-test-${i}:1`,
    order_link_id: `om-test-${i}`,
    symbol,
    occurred_at: Date.UTC(2025, 0, 6, 12, 0, 0) + i * 1000,
    observed_at: Date.UTC(2025, 0, 6, 12, 0, 0) + i * 1000 + 15,
    trace_id: i % 4 === 0 ? null : `trace-${i}`,
    sequence: 1,
    ...over,
  };
}

async function produce(env: Env, events: OrderEvent[]): Promise<void> {
  const p = env.kafka.producer();
  await p.connect();
  await p.send(env.topic, await Promise.all(events.map(async (e) => ({ key: e.symbol, value: await env.codec.encode(env.topic, e) }))));
  await p.disconnect();
}

function makeBridge(env: Env, opts: { group?: string; conns?: ChannelModel[]; wrap?: (ch: ConfirmChannel) => ConfirmChannel; batch?: number } = {}): EventsOutBridge {
  return createEventsOutBridge({
    kafka: env.kafka,
    codec: env.codec,
    logger: testLogger,
    metrics: createMetrics(),
    config: parseConfig({ AMQP_URL, TOPIC_PREFIX: env.prefix, ORDER_EVENTS_QUEUE: env.queue, EVENTS_OUT_GROUP: opts.group ?? 'events-out', EVENTS_OUT_RETRY_MAX_MS: '300', EVENTS_OUT_BATCH_MAX: String(opts.batch ?? 256) }),
    onFatal: failTool('events-out bridge under test'),
    amqpConnect: async (url) => {
      const c = await amqplib.connect(url);
      opts.conns?.push(c);
      if (opts.wrap) {
        const create = c.createConfirmChannel.bind(c);
        c.createConfirmChannel = async () => opts.wrap!(await create());
      }
      return c;
    },
  });
}

const bodyOf = (m: ConsumeMessage) => JSON.parse(m.content.toString('utf8')) as Record<string, unknown>;
const ids = (env: Env) => env.received.map((m) => m.properties.messageId as string);

async function committed(env: Env, group: string): Promise<number> {
  const admin = env.kafka.admin();
  await admin.connect();
  try {
    const offs = await admin.groupOffsets(group, env.topic);
    return offs.reduce((a, o) => a + Math.max(0, Number(o.offset)), 0);
  } finally {
    await admin.disconnect();
  }
}

test('order events reach the durable queue as JSON with every documented field and property; offsets committed', async () => {
  const env = await setup('eo-basic');
  const bridge = makeBridge(env);
  try {
    const events = Array.from({ length: 30 }, (_, i) => event(i));
    events[5] = event(5, { event_type: 'signal_rejected', order_link_id: null, order_id: null, status: null, reason_code: 'stale_signal', reason_detail: 'signal is 40 s old', sequence: null, slippage_bps: null });
    await produce(env, events);
    await bridge.start();
    await waitFor('30 events on the queue', () => env.received.length >= 30);
    await waitCaughtUp(env.kafka, `${env.prefix}events-out`, env.topic);
    assert.equal(bridge.ready(), true);
    assert.deepEqual([...ids(env)].sort(), events.map((e) => e.event_id).sort(), 'each event once');
    for (const sym of SYMBOLS) {
      const mine = env.received.filter((m) => bodyOf(m).symbol === sym).map((m) => m.properties.messageId);
      assert.deepEqual(mine, events.filter((e) => e.symbol === sym).map((e) => e.event_id), `${sym}: in topic order`);
    }
    for (const m of env.received) {
      const e = events.find((x) => x.event_id === m.properties.messageId)!;
      const body = bodyOf(m);
      const expected: Record<string, unknown> = { ...e, occurred_at: new Date(e.occurred_at).toISOString(), occurred_at_ms: e.occurred_at, observed_at: new Date(e.observed_at).toISOString(), observed_at_ms: e.observed_at };
      assert.deepEqual(body, expected, 'the Avro record, snake_case, times as ISO + ms');
      assert.deepEqual(body, JSON.parse(JSON.stringify(toJson(e))));
      assert.equal(m.properties.type, e.event_type);
      assert.equal(m.properties.contentType, 'application/json');
      assert.equal(m.properties.deliveryMode, 2, 'persistent');
      assert.equal(m.properties.timestamp, Math.floor(e.occurred_at / 1000));
      assert.equal(m.properties.headers?.trace_id, e.trace_id ?? undefined);
      assert.equal(m.properties.headers?.kafka_topic, env.topic);
    }
    const rejected = bodyOf(env.received.find((m) => m.properties.messageId === 'om-test-5:1')!);
    assert.equal(rejected.event_type, 'signal_rejected');
    assert.equal(rejected.reason_code, 'stale_signal');
    assert.equal(rejected.occurred_at, '2025-01-06T12:00:05.000Z');
    // the queue is durable: redeclaring it as transient is refused by RabbitMQ
    const probe = await env.conn.createChannel();
    probe.on('error', () => {});
    await assert.rejects(probe.assertQueue(env.queue, { durable: false }), /PRECONDITION_FAILED/);
  } finally {
    await bridge.stop();
    await env.cleanup();
  }
});

test('offsets are committed only after the confirms; a connection closed before them republishes with the same event_id, nothing lost', async () => {
  const env = await setup('eo-confirm');
  let release!: () => void;
  let hold: Promise<void> | null = new Promise<void>((r) => (release = r));
  let waiting = 0;
  const conns: ChannelModel[] = [];
  const wrap = (ch: ConfirmChannel): ConfirmChannel => {
    const real = ch.waitForConfirms.bind(ch);
    ch.waitForConfirms = async () => {
      if (hold) {
        waiting++;
        await hold;
      }
      return real();
    };
    return ch;
  };
  const group = 'events-out-confirm';
  const bridge = makeBridge(env, { group, conns, wrap, batch: 8 });
  try {
    const events = Array.from({ length: 20 }, (_, i) => event(i));
    await produce(env, events);
    await bridge.start();
    await waitFor('a chunk published and waiting for its confirms', () => waiting > 0 && env.received.length > 0);
    assert.equal(await committed(env, `${env.prefix}${group}`), 0, 'nothing committed before the confirms');
    const before = [...ids(env)];
    // the connection dies before the bridge saw the confirms
    await conns[0]!.close();
    await waitFor('the bridge to reconnect', () => conns.length >= 2 && bridge.ready());
    const h = hold;
    hold = null;
    release();
    await h;
    await waitCaughtUp(env.kafka, `${env.prefix}${group}`, env.topic);
    await waitFor('every event on the queue', () => events.every((e) => ids(env).includes(e.event_id)));
    const counts = new Map<string, number>();
    for (const id of ids(env)) counts.set(id, (counts.get(id) ?? 0) + 1);
    assert.ok(before.every((id) => counts.get(id)! >= 2), 'the unconfirmed chunk was published again, with the same event_id (messageId)');
    const repeats = env.received.filter((m) => m.properties.messageId === before[0]);
    assert.ok(repeats.every((m) => m.content.equals(repeats[0]!.content)), 'a repeat is byte-identical');
  } finally {
    release();
    await bridge.stop();
    await env.cleanup();
  }
});

test('restart: a new instance of the group continues where the confirmed commits ended; nothing lost, nothing repeated', async () => {
  const env = await setup('eo-restart');
  const group = 'events-out-restart';
  const first = makeBridge(env, { group });
  let second: EventsOutBridge | null = null;
  try {
    await produce(env, Array.from({ length: 15 }, (_, i) => event(i)));
    await first.start();
    await waitCaughtUp(env.kafka, `${env.prefix}${group}`, env.topic);
    await first.stop();
    assert.equal(env.received.length, 15);
    await produce(env, Array.from({ length: 15 }, (_, i) => event(15 + i)));
    second = makeBridge(env, { group });
    await second.start();
    await waitCaughtUp(env.kafka, `${env.prefix}${group}`, env.topic);
    await waitFor('30 events', () => env.received.length >= 30);
    assert.deepEqual([...ids(env)].sort(), Array.from({ length: 30 }, (_, i) => `om-test-${i}:1`).sort(), 'each of the 30 exactly once');
  } finally {
    await first.stop();
    await second?.stop();
    await env.cleanup();
  }
});

test('RabbitMQ connection closed repeatedly mid-flow: every event arrives at least once and offsets reach the end', async () => {
  const env = await setup('eo-flaky');
  const conns: ChannelModel[] = [];
  const group = 'events-out-flaky';
  const bridge = makeBridge(env, { group, conns, batch: 5 });
  try {
    await bridge.start();
    const events = Array.from({ length: 120 }, (_, i) => event(i));
    const producing = (async () => {
      for (let i = 0; i < events.length; i += 10) await produce(env, events.slice(i, i + 10));
    })();
    for (let k = 1; k <= 2; k++) {
      await waitFor(`some events before close ${k}`, () => env.received.length >= k * 20, 60_000, 5);
      await conns[conns.length - 1]!.close().catch(() => {});
      await waitFor('reconnect', () => conns.length > k && bridge.ready());
    }
    await producing;
    await waitCaughtUp(env.kafka, `${env.prefix}${group}`, env.topic);
    await waitFor('all 120 event ids', () => new Set(ids(env)).size === 120);
    for (const sym of SYMBOLS) {
      const first: string[] = [];
      for (const m of env.received) if (bodyOf(m).symbol === sym && !first.includes(m.properties.messageId)) first.push(m.properties.messageId);
      assert.deepEqual(first, events.filter((e) => e.symbol === sym).map((e) => e.event_id), `${sym}: first arrivals in order`);
    }
  } finally {
    await bridge.stop();
    await env.cleanup();
  }
});
