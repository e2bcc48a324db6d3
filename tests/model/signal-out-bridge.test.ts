// The signal-out bridge on the real local Kafka and RabbitMQ: Avro ModelSignals on model.signals
// (a namespace of this test) arrive on a RabbitMQ queue of this test as the seed's JSON, persistent,
// in order per asset, each passing the order manager's own validation; offsets are committed (a
// restarted bridge republishes nothing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import amqplib from 'amqplib';
import { consumeToEnd, createNamespace, namespace, registryUrl, testKafka, testLogger, waitCaughtUp, waitFor } from '../helpers.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { createSignalOutBridge } from '../../connectors/signal-out-bridge.ts';
import { SignalEmitter } from '../../model/signals.ts';
import { parseSignalJson } from '../../pipelines/signal-format.ts';
import { SeededRng } from '../../model/rng.ts';
import { tickerRecord, testModelConfig, T0 } from './fixtures.ts';
import type { DeadLetter, ModelSignal } from '../../schemas/types.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import { failTool } from '../../runtime/kafka.ts';
import { parseConfig as signalBridgeConfig } from '../../connectors/signal-bridge.ts';

const signalsDefaults = signalBridgeConfig({});
/** The limits the signal bridge declares the queue with by default. */
const queueLimits = { maxLength: signalsDefaults.SIGNALS_QUEUE_MAX_LENGTH, maxBytes: signalsDefaults.SIGNALS_QUEUE_MAX_BYTES };

const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

test('model.signals -> RabbitMQ as validated JSON, persistent, ordered, committed', async () => {
  const kafka = testKafka();
  const prefix = namespace('mso');
  const cleanup = await createNamespace(kafka, prefix, 2);
  const queue = `test.model-signals.${randomBytes(4).toString('hex')}`;
  const codec = await createTopicCodec({ registryUrl, prefix });
  const conn = await amqplib.connect(AMQP_URL);
  const ch = await conn.createChannel();
  const mk = () =>
    createSignalOutBridge({ kafka, codec, logger: testLogger, metrics: createMetrics(), amqpUrl: AMQP_URL, queue, queueLimits, topicPrefix: prefix, groupId: `${prefix}bridge`, batchMax: 7, retryMaxMs: 500, onFatal: failTool('signal-out bridge under test') });
  let bridge = mk();
  try {
    // Signals from the warm-up emitter.
    const cfg = testModelConfig({ MODEL_FEATURE_LOOKBACK: '20' });
    const e = new SignalEmitter(cfg, new SeededRng(8));
    const signals: ModelSignal[] = [];
    for (let t = 0; t < 60; t++) {
      for (const a of cfg.MODEL_ASSETS) e.onTicker(tickerRecord({ symbol: a, lastPrice: 100 + Math.sin(t) , bid1Price: 99.99 + Math.sin(t), ask1Price: 100.01 + Math.sin(t), bid1Size: 1, ask1Size: 1, volume24h: 5 }, T0 + t * 1000));
      signals.push(...e.emit(T0 + t * 1000, { mode: { mode: 'warmup', version: null, warmupStartedAt: T0 }, model: null, exposure: () => 0 }));
    }
    assert.ok(signals.length > 50);
    const producer = kafka.producer();
    await producer.connect();
    const topic = `${prefix}model.signals`;
    await producer.send(topic, await Promise.all(signals.map(async (s) => ({ key: s.asset, value: await codec.encode(topic, s) }))));
    await producer.disconnect();

    await bridge.start();
    await ch.checkQueue(queue); // declared by the bridge, with its length limits
    const got: Array<{ json: Record<string, unknown>; persistent: boolean; messageId: string }> = [];
    await ch.consume(queue, (m) => {
      if (!m) return;
      got.push({ json: JSON.parse(m.content.toString('utf8')), persistent: m.properties.deliveryMode === 2, messageId: m.properties.messageId });
      ch.ack(m);
    });
    await waitFor('every signal on RabbitMQ', () => got.length >= signals.length, 60_000);
    assert.equal(got.length, signals.length);
    for (const g of got) {
      const r = parseSignalJson(g.json);
      assert.ok(r.ok, r.ok ? '' : r.detail);
      assert.equal(g.persistent, true);
      assert.equal(g.messageId, g.json.signal_id);
      assert.equal(g.json.is_warmup, true);
      assert.equal(g.json.model_version, null);
    }
    for (const a of cfg.MODEL_ASSETS) {
      assert.deepEqual(
        got.filter((g) => g.json.asset === a).map((g) => g.json.signal_id),
        signals.filter((s) => s.asset === a).map((s) => s.signal_id),
        `order of ${a}`,
      );
    }
    // Offsets committed after the confirms: the group is at the end of the topic, and a new bridge
    // instance of the group publishes nothing again.
    const admin = kafka.admin();
    await admin.connect();
    const high = await admin.topicOffsets(topic);
    await waitFor('offsets committed', async () => {
      const done = await admin.groupOffsets(`${prefix}bridge`, topic);
      return high.every((h) => h.high === '0' || done.find((d) => d.partition === h.partition)?.offset === h.high);
    }, 30_000);
    await admin.disconnect();
    await bridge.stop();
    bridge = mk();
    await bridge.start();
    await waitFor('bridge ready', () => bridge.ready(), 30_000);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(got.length, signals.length);
  } finally {
    await bridge.stop().catch(() => {});
    await ch.deleteQueue(queue).catch(() => {});
    await conn.close().catch(() => {});
    await cleanup();
  }
});

test('an undecodable record on model.signals is dead-lettered to signals.dlq with its bytes and reason, counted, committed past; the signal behind it is published', async () => {
  const kafka = testKafka();
  const prefix = namespace('mso-dlq');
  const cleanup = await createNamespace(kafka, prefix, 1);
  const queue = `test.model-signals.${randomBytes(4).toString('hex')}`;
  const codec = await createTopicCodec({ registryUrl, prefix });
  const metrics = createMetrics();
  const conn = await amqplib.connect(AMQP_URL);
  const ch = await conn.createChannel();
  const group = `${prefix}bridge`;
  const bridge = createSignalOutBridge({ kafka, codec, logger: testLogger, metrics, amqpUrl: AMQP_URL, queue, queueLimits, topicPrefix: prefix, groupId: group, batchMax: 7, retryMaxMs: 500, onFatal: failTool('signal-out bridge under test') });
  try {
    const topic = `${prefix}model.signals`;
    // Not Avro at all, and the wire format's magic byte with a schema id the registry never gave.
    const junk = [Buffer.from('not a model signal'), Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0, 1, 2, 3])];
    const good = { ...SAMPLES.ModelSignal, signal_id: randomUUID() };
    const producer = kafka.producer();
    await producer.connect();
    await producer.send(topic, [...junk.map((value) => ({ key: good.asset, value, headers: { trace_id: 'trace-junk' } })), { key: good.asset, value: await codec.encode(topic, good) }]);
    await producer.disconnect();
    await bridge.start();
    const got: string[] = [];
    await ch.consume(queue, (m) => {
      if (!m) return;
      got.push(m.properties.messageId as string);
      ch.ack(m);
    });
    await waitFor('the valid signal behind the junk', () => got.includes(good.signal_id), 60_000);
    await waitCaughtUp(kafka, group, topic);
    const dead = await Promise.all((await consumeToEnd(kafka, `${prefix}signals.dlq`, 1)).map(async (m) => ({ m, d: (await codec.decode(m.topic, m.value!)) as DeadLetter })));
    assert.equal(dead.length, junk.length, 'one dead letter per undecodable record');
    for (const [i, j] of junk.entries()) {
      const { m, d } = dead[i]!;
      assert.ok(Buffer.from(d.original_value!).equals(j), 'the original bytes kept');
      assert.equal(d.original_topic, topic);
      assert.equal(d.original_offset, i);
      assert.equal(d.reason_code, 'undecodable');
      assert.equal(d.stage, 'model-signal-out-bridge');
      assert.equal(d.trace_id, 'trace-junk');
      assert.equal(m.headers['dlq.reason'], 'undecodable');
    }
    assert.deepEqual(got, [good.signal_id], 'only the valid signal was published');
    assert.match(await metrics.registry.getSingleMetricAsString('pipeline_bridge_messages_rejected_total'), /bridge="model-signal-out-bridge",reason="undecodable"} 2$/m);
  } finally {
    await bridge.stop().catch(() => {});
    await ch.deleteQueue(queue).catch(() => {});
    await conn.close().catch(() => {});
    await cleanup();
  }
});
