// The signal bridge on the real RabbitMQ and the real local Kafka: every test has its own queue and
// its own raw topic (random names), and removes them afterwards. No sleeps for synchronisation:
// bounded polling (waitFor) on observable state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import amqplib, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { externalBytes, namespace, testCfg, testKafka, testLogger, waitFor } from '../helpers.ts';
import { createMetrics, type Metrics } from '../../runtime/metrics.ts';
import { createLogger, type Logger } from '../../runtime/logger.ts';
import { failTool, type InMessage, type KafkaPort, type OutMessage } from '../../runtime/kafka.ts';
import { createSignalBridge, parseConfig, BRIDGE_HEADERS, type SignalBridge } from '../../connectors/signal-bridge.ts';

const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const ASSETS = ['BTCUSDT', 'ETHUSDT', 'SOLUSDT'];

interface Env {
  kafka: KafkaPort;
  topic: string;
  queue: string;
  pub: ChannelModel;
  ch: ConfirmChannel;
  cleanup: () => Promise<void>;
}

/** `bare`: the queue is declared as the earlier bridges (and plain publishers) did, without arguments. */
async function setup(tag: string, opts: { bare?: boolean } = { bare: true }): Promise<Env> {
  const prefix = namespace(tag);
  const topic = `${prefix}signals.raw`;
  const queue = `test.signals.${randomBytes(4).toString('hex')}`;
  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  await admin.ensureTopics([{ topic, partitions: 3, config: {} }]);
  const pub = await amqplib.connect(AMQP_URL);
  const ch = await pub.createConfirmChannel();
  if (opts.bare) await ch.assertQueue(queue, { durable: true });
  return {
    kafka,
    topic,
    queue,
    pub,
    ch,
    cleanup: async () => {
      await ch.deleteQueue(queue).catch(() => {});
      await pub.close().catch(() => {});
      await admin.deleteTopics([topic]).catch(() => {});
      await admin.disconnect();
    },
  };
}

function signal(asset: string, seq: number, over: Record<string, unknown> = {}) {
  return {
    signal_id: randomUUID(),
    signal_type: seq % 2 ? 'buy' : 'sell',
    asset,
    amount: 100 + seq,
    confidence: 0.9,
    timestamp: new Date().toISOString(),
    strategy_id: 'strat-002',
    model_version: null,
    is_warmup: true,
    market_data_snapshot: { price: 3000, spread: 1.5, volume_24h: 1e6, volatility: 0.02, orderbook_depth: null, technical_indicators: null },
    metadata: { seq },
    trace_id: `trace-${seq}`,
    ...over,
  };
}

interface Published {
  id: string;
  asset: string;
  seq: number;
  body: Buffer;
  messageId: string;
}

/** Publish persistent messages and wait for RabbitMQ's confirms. */
async function publish(ch: ConfirmChannel, queue: string, n: number, start = 0): Promise<Published[]> {
  const out: Published[] = [];
  for (let i = start; i < start + n; i++) {
    const asset = ASSETS[i % ASSETS.length]!;
    const s = signal(asset, i);
    const body = Buffer.from(JSON.stringify(s));
    const messageId = `msg-${i}`;
    ch.sendToQueue(queue, body, { persistent: true, messageId, contentType: 'application/json' });
    out.push({ id: s.signal_id, asset, seq: i, body, messageId });
  }
  await ch.waitForConfirms();
  return out;
}

/** Collect everything written to the topic while the test runs. */
async function collector(kafka: KafkaPort, topic: string): Promise<{ all: InMessage[]; stop: () => Promise<void> }> {
  const consumer = kafka.consumer({ groupId: `reader-${randomBytes(4).toString('hex')}`, onFatal: failTool('test reader') });
  const all: InMessage[] = [];
  await consumer.connect();
  await consumer.subscribe([topic], true);
  await consumer.run(async (batch, ctl) => {
    for (const m of batch.messages) {
      all.push(m);
      ctl.resolveOffset(m.offset);
    }
  });
  return { all, stop: () => consumer.disconnect() };
}

const idOf = (m: InMessage): string | null => {
  try {
    return (JSON.parse(m.value!.toString('utf8')) as { signal_id?: string }).signal_id ?? null;
  } catch {
    return null;
  }
};
const seqOf = (m: InMessage): number => (JSON.parse(m.value!.toString('utf8')) as { metadata: { seq: number } }).metadata.seq;

/** Every published id arrived at least once, and per asset the first arrivals are in publish order. */
function assertCompleteAndOrdered(all: InMessage[], published: Published[]): void {
  const seen = new Set(all.map(idOf));
  const missing = published.filter((p) => !seen.has(p.id));
  assert.equal(missing.length, 0, `missing ${missing.length} of ${published.length}: ${missing.slice(0, 5).map((p) => p.seq).join(',')}`);
  for (const asset of ASSETS) {
    const mine = all.filter((m) => m.key === asset);
    assert.ok(new Set(mine.map((m) => m.partition)).size === 1, `${asset} lives on one partition`);
    const first: number[] = [];
    const had = new Set<number>();
    for (const m of mine) {
      const seq = seqOf(m);
      if (!had.has(seq)) first.push(seq);
      had.add(seq);
    }
    const expected = published.filter((p) => p.asset === asset).map((p) => p.seq);
    assert.deepEqual(first, expected, `${asset}: first arrivals in publish order`);
  }
}

/** A Kafka port whose producer sends can be held or failed by the test. */
function controlledKafka(real: KafkaPort, before: (messages: OutMessage[]) => Promise<void>): KafkaPort {
  return {
    admin: () => real.admin(),
    consumer: (o) => real.consumer(o),
    producer: (o) => {
      const p = real.producer(o);
      return {
        connect: () => p.connect(),
        send: async (topic, messages) => {
          await before(messages);
          await p.send(topic, messages);
        },
        sendAt: async (topic, messages) => {
          await before(messages);
          return p.sendAt(topic, messages);
        },
        sendBatch: async (batches) => {
          for (const b of batches) await before(b.messages);
          await p.sendBatch(batches);
        },
        transaction: () => p.transaction(),
        disconnect: () => p.disconnect(),
      };
    },
  };
}

function makeBridge(env: Env, opts: { kafka?: KafkaPort; prefetch?: number; conns?: ChannelModel[]; metrics?: Metrics; logger?: Logger; env?: Record<string, string> } = {}): SignalBridge {
  const config = parseConfig({
    AMQP_URL,
    TOPIC_PREFIX: env.topic.slice(0, -'signals.raw'.length),
    SIGNALS_QUEUE: env.queue,
    SIGNAL_BRIDGE_PREFETCH: String(opts.prefetch ?? 16),
    SIGNAL_BRIDGE_RETRY_MAX_MS: '400',
    ...opts.env,
  });
  return createSignalBridge({
    kafka: opts.kafka ?? env.kafka,
    logger: opts.logger ?? testLogger,
    metrics: opts.metrics ?? createMetrics(),
    config,
    amqpConnect: async (url) => {
      const c = await amqplib.connect(url);
      opts.conns?.push(c);
      return c;
    },
  });
}

async function queueDepth(env: Env): Promise<{ messageCount: number; consumerCount: number }> {
  const q = await env.ch.checkQueue(env.queue);
  return { messageCount: q.messageCount, consumerCount: q.consumerCount };
}

test('forwards bytes unchanged with headers, keyed by asset, in per-asset order, and acks them', async () => {
  const env = await setup('sb-basic');
  const bridge = makeBridge(env);
  const reader = await collector(env.kafka, env.topic);
  try {
    const t0 = Date.now();
    await bridge.start();
    assert.equal(bridge.ready(), true);
    const published = await publish(env.ch, env.queue, 60);
    // a malformed one, and one whose trace id comes from the AMQP correlationId
    env.ch.sendToQueue(env.queue, Buffer.from('not json {'), { persistent: true, messageId: 'bad-1' });
    const noTrace = { ...signal('ETHUSDT', 999), trace_id: null };
    env.ch.sendToQueue(env.queue, Buffer.from(JSON.stringify(noTrace)), { persistent: true, messageId: 'corr-1', correlationId: 'corr-trace-1' });
    const noIds = signal('SOLUSDT', 998, { trace_id: undefined });
    env.ch.sendToQueue(env.queue, Buffer.from(JSON.stringify(noIds)), { persistent: true });
    await env.ch.waitForConfirms();

    await waitFor('all 63 records on the raw topic', () => reader.all.length >= 63, 60_000);
    const all = reader.all;
    assert.equal(all.length, 63, 'each message once (no failure, no redelivery)');
    assertCompleteAndOrdered(all.filter((m) => m.headers[BRIDGE_HEADERS.messageId]?.startsWith('msg-')), published);
    const byMsgId = new Map(all.map((m) => [m.headers[BRIDGE_HEADERS.messageId], m]));
    for (const p of published) {
      const m = byMsgId.get(p.messageId)!;
      assert.ok(m.value!.equals(p.body), 'bytes unchanged');
      assert.equal(m.key, p.asset);
      assert.equal(m.headers[BRIDGE_HEADERS.redelivered], 'false');
      assert.equal(m.headers[BRIDGE_HEADERS.traceId], `trace-${p.seq}`);
      const at = Number(m.headers[BRIDGE_HEADERS.receivedAt]);
      assert.ok(at >= t0 && at <= Date.now(), `received_at ${at} is the receive time`);
    }
    const bad = byMsgId.get('bad-1')!;
    assert.equal(bad.key, null, 'unparsable body: no key');
    assert.equal(bad.value!.toString(), 'not json {');
    assert.match(bad.headers[BRIDGE_HEADERS.traceId]!, /^[0-9a-f-]{36}$/, 'a new trace id');
    assert.equal(byMsgId.get('corr-1')!.headers[BRIDGE_HEADERS.traceId], 'corr-trace-1');
    const anon = byMsgId.get('')!;
    assert.equal(anon.key, 'SOLUSDT');
    assert.match(anon.headers[BRIDGE_HEADERS.traceId]!, /^[0-9a-f-]{36}$/);

    // acked: the queue is empty once the bridge is gone (unacked messages would come back)
    await bridge.stop();
    assert.equal(bridge.ready(), false);
    assert.deepEqual(await queueDepth(env), { messageCount: 0, consumerCount: 0 });
  } finally {
    await bridge.stop().catch(() => {});
    await reader.stop();
    await env.cleanup();
  }
});

test('acks only after Kafka has the batch: a connection lost while the send is pending loses nothing', async () => {
  const env = await setup('sb-ack');
  let release!: () => void;
  let hold: Promise<void> | null = new Promise<void>((r) => (release = r));
  let held = 0;
  const kafka = controlledKafka(env.kafka, async (msgs) => {
    if (hold) {
      held += msgs.length;
      await hold;
    }
  });
  const conns: ChannelModel[] = [];
  const bridge = makeBridge(env, { kafka, conns });
  const reader = await collector(env.kafka, env.topic);
  try {
    await bridge.start();
    const published = await publish(env.ch, env.queue, 6);
    await waitFor('a Kafka send to be pending', () => held > 0);
    assert.equal(reader.all.length, 0, 'Kafka has nothing yet');
    // The bridge's connection dies while Kafka has not confirmed: none of these may have been acked.
    await conns[0]!.close();
    await waitFor('the bridge to reconnect', () => conns.length >= 2 && bridge.ready());
    const h = hold;
    hold = null;
    release();
    await h;
    await waitFor("every message redelivered to Kafka", () => {
      const redelivered = new Set(reader.all.filter((m) => m.headers[BRIDGE_HEADERS.redelivered] === 'true').map(idOf));
      return published.every((p) => redelivered.has(p.id));
    });
    assertCompleteAndOrdered(reader.all, published);
    await bridge.stop();
    assert.deepEqual(await queueDepth(env), { messageCount: 0, consumerCount: 0 }, 'everything acked in the end');
  } finally {
    release();
    await bridge.stop().catch(() => {});
    await reader.stop();
    await env.cleanup();
  }
});

test('Kafka send failures: nacked with requeue, retried after backoff, nothing lost or reordered', async () => {
  const env = await setup('sb-kfail');
  let failures = 3;
  let attempts = 0;
  const kafka = controlledKafka(env.kafka, async () => {
    attempts++;
    if (failures > 0) {
      failures--;
      throw Object.assign(new Error('broker not available (test)'), { name: 'KafkaJSConnectionError', retriable: true });
    }
  });
  const bridge = makeBridge(env, { kafka, prefetch: 8 });
  const reader = await collector(env.kafka, env.topic);
  try {
    await bridge.start();
    const published = await publish(env.ch, env.queue, 30);
    await waitFor('all 30 on the raw topic', () => new Set(reader.all.map(idOf)).size === 30);
    assert.ok(attempts >= 4, `sends retried (${attempts})`);
    assert.equal(reader.all.length, 30, 'failed sends wrote nothing, so no repeats');
    assertCompleteAndOrdered(reader.all, published);
    assert.ok(reader.all.some((m) => m.headers[BRIDGE_HEADERS.redelivered] === 'true'), 'the failed batch came back redelivered');
    await bridge.stop();
    assert.deepEqual(await queueDepth(env), { messageCount: 0, consumerCount: 0 });
  } finally {
    await bridge.stop().catch(() => {});
    await reader.stop();
    await env.cleanup();
  }
});

test('connection closed twice mid-flow: every published signal arrives at least once, in per-asset order', async () => {
  const env = await setup('sb-reconn');
  const conns: ChannelModel[] = [];
  const bridge = makeBridge(env, { prefetch: 32, conns });
  const reader = await collector(env.kafka, env.topic);
  try {
    await bridge.start();
    const published: Published[] = [];
    const N = 600;
    const publishing = (async () => {
      for (let i = 0; i < N; i += 50) published.push(...(await publish(env.ch, env.queue, 50, i)));
    })();
    for (const [after, n] of [[100, 2], [350, 3]] as const) {
      await waitFor(`${after} records forwarded`, () => reader.all.length >= after);
      await conns[conns.length - 1]!.close();
      await waitFor(`reconnect #${n - 1}`, () => conns.length >= n && bridge.ready());
    }
    await publishing;
    await waitFor(`all ${N} signals on the raw topic`, () => new Set(reader.all.map(idOf)).size === N, 120_000);
    assertCompleteAndOrdered(reader.all, published);
    await bridge.stop();
    assert.deepEqual(await queueDepth(env), { messageCount: 0, consumerCount: 0 });
  } finally {
    await bridge.stop().catch(() => {});
    await reader.stop();
    await env.cleanup();
  }
});

const metricValue = async (metrics: Metrics, name: string) => (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name)?.values[0]?.value;

test('memory is bounded by bytes: a prefetch of 8 MB messages is held as truncated records, the bodies released on arrival', async (t) => {
  const env = await setup('sb-mem');
  const N = 12;
  const SIZE = 8 * 1024 * 1024;
  let release!: () => void;
  const hold = new Promise<void>((r) => (release = r));
  const kafka = controlledKafka(env.kafka, () => hold);
  const metrics = createMetrics();
  const bridge = makeBridge(env, { kafka, prefetch: 16, metrics });
  const reader = await collector(env.kafka, env.topic);
  try {
    for (let i = 0; i < N; i++) {
      // A valid signal padded far past any limit: what a broken publisher could send.
      const body = Buffer.alloc(SIZE, 0x20);
      Buffer.from(JSON.stringify(signal(ASSETS[i % 3]!, i))).copy(body);
      env.ch.sendToQueue(env.queue, body, { persistent: true, messageId: `big-${i}` });
      await env.ch.waitForConfirms();
    }
    const before = await externalBytes();
    await bridge.start();
    // Kafka holds the first send: every delivery of the prefetch stays unacknowledged in the bridge.
    await waitFor(`all ${N} delivered to the bridge`, async () => (await metricValue(metrics, 'pipeline_bridge_messages_in_total')) === N, 120_000);
    const grown = (await externalBytes()) - before;
    const maxRecord = parseConfig({}).SIGNAL_BRIDGE_MAX_RECORD_BYTES;
    t.diagnostic(`external memory grew by ${(grown / 1048576).toFixed(1)} MiB holding ${N} deliveries of ${SIZE / 1048576} MiB`);
    // Holding the bodies would take N × SIZE; the records take N × maxRecord (3 MiB), plus the
    // clients' own buffers (a few MiB, varying): a quarter of the bodies separates the two.
    assert.ok(grown < (N * SIZE) / 4, `memory outside the heap grew by ${(grown / 1048576).toFixed(1)} MiB holding ${N} messages of ${SIZE / 1048576} MiB (held records: ${N} × ${maxRecord / 1024} KiB)`);
    const buffered = await metricValue(metrics, 'pipeline_bridge_buffered_bytes');
    assert.ok(buffered !== undefined && buffered >= N * maxRecord && buffered <= N * (maxRecord + 512), `pipeline_bridge_buffered_bytes ${buffered}`);
    release();
    await waitFor(`the ${N} truncated records on the raw topic`, () => reader.all.length >= N, 60_000);
    for (const m of reader.all) {
      assert.equal(m.headers[BRIDGE_HEADERS.truncated], 'true');
      assert.equal(m.headers[BRIDGE_HEADERS.bodySize], String(SIZE));
      assert.equal(m.value!.length, maxRecord);
    }
    await bridge.stop();
    assert.equal(await metricValue(metrics, 'pipeline_bridge_buffered_bytes'), 0, 'nothing held once written');
    assert.deepEqual(await queueDepth(env), { messageCount: 0, consumerCount: 0 });
  } finally {
    release();
    await bridge.stop().catch(() => {});
    await reader.stop();
    await env.cleanup();
  }
});

test('length limit: the bridge declares its queue with x-max-length and reject-publish; a publisher of a full queue gets nacks, nothing is dropped silently', async () => {
  const env = await setup('sb-full', { bare: false });
  const limits = { SIGNALS_QUEUE_MAX_LENGTH: '5', SIGNALS_QUEUE_MAX_BYTES: '1048576' };
  const lines: string[] = [];
  const logger = createLogger({ ...testCfg, LOG_LEVEL: 'warn' }, 'test', { write: (l: string) => void lines.push(l) });
  let bridge = makeBridge(env, { env: limits, logger });
  const reader = await collector(env.kafka, env.topic);
  try {
    await bridge.start(); // creates the queue
    await bridge.stop();
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        new Promise<string>((resolve) => env.ch.sendToQueue(env.queue, Buffer.from(JSON.stringify(signal('BTCUSDT', i))), { persistent: true, messageId: `m-${i}` }, (err) => resolve(err ? 'nack' : 'ack'))),
      ),
    );
    assert.deepEqual(outcomes, ['ack', 'ack', 'ack', 'ack', 'ack', 'nack', 'nack', 'nack'], 'the queue took 5, refused the rest to the publisher');
    assert.equal((await env.ch.checkQueue(env.queue)).messageCount, 5);
    // Declared with these arguments: an equal declaration is accepted, a bare one refused.
    const probe = await env.pub.createChannel();
    probe.on('error', () => {});
    await probe.assertQueue(env.queue, { durable: true, arguments: { 'x-max-length': 5, 'x-max-length-bytes': 1048576, 'x-overflow': 'reject-publish' } });
    await assert.rejects(probe.assertQueue(env.queue, { durable: true }), /PRECONDITION_FAILED/);
    // A second start on the queue it created: no warning, the 5 flow.
    bridge = makeBridge(env, { env: limits, logger });
    await bridge.start();
    await waitFor('the 5 accepted signals on the raw topic', () => reader.all.length >= 5);
    await bridge.stop();
    assert.equal(reader.all.length, 5);
    assert.deepEqual(lines.filter((l) => /queue exists with other arguments/.test(l)), [], 'no warning on its own queue');
  } finally {
    await bridge.stop().catch(() => {});
    await reader.stop();
    await env.cleanup();
  }
});

test('a queue declared by an earlier version (no arguments) is used as it is, with one warning', async () => {
  const env = await setup('sb-oldq'); // bare, as the earlier bridge declared it
  const lines: string[] = [];
  const logger = createLogger({ ...testCfg, LOG_LEVEL: 'warn' }, 'test', { write: (l: string) => void lines.push(l) });
  const published = await publish(env.ch, env.queue, 9);
  const conns: ChannelModel[] = [];
  const bridge = makeBridge(env, { logger, conns });
  const reader = await collector(env.kafka, env.topic);
  try {
    await bridge.start();
    assert.equal(bridge.ready(), true);
    await waitFor('the 9 signals on the raw topic', () => reader.all.length >= 9);
    // a reconnect declares again: still no failure, and no second warning
    await conns[0]!.close();
    await waitFor('the bridge to reconnect', () => conns.length >= 2 && bridge.ready());
    await publish(env.ch, env.queue, 3, 9);
    await waitFor('the 3 after the reconnect', () => reader.all.length >= 12);
    assertCompleteAndOrdered(reader.all.slice(0, 9), published);
    const warnings = lines.map((l) => JSON.parse(l) as { msg: string; queue?: string; wanted?: Record<string, unknown> }).filter((l) => /queue exists with other arguments/.test(l.msg));
    assert.equal(warnings.length, 1, lines.join('\n'));
    assert.equal(warnings[0]!.queue, env.queue);
    assert.equal(warnings[0]!.wanted!['x-overflow'], 'reject-publish');
    await bridge.stop();
    assert.deepEqual(await queueDepth(env), { messageCount: 0, consumerCount: 0 });
  } finally {
    await bridge.stop().catch(() => {});
    await reader.stop();
    await env.cleanup();
  }
});
