// Every RabbitMQ bridge through the same faults, on the real RabbitMQ, Kafka and registry: the two
// inbound ones (signal, ws-gateway: RabbitMQ → Kafka) and the two outbound ones (events-out,
// signal-out: Kafka → RabbitMQ). The faults are the skeletons' (connectors/amqp-inbound.ts,
// connectors/amqp-outbound.ts), so each bridge must pass each of them:
//
// - the RabbitMQ connection closed while the other side has not yet confirmed a batch;
// - Kafka failing (inbound: sends; outbound: offset commits), then recovering;
// - stop() while the other side has not yet confirmed a batch, then a new instance.
//
// Checked every time: nothing lost (every input arrives on the other side at least once), nothing
// acknowledged (inbound) or committed (outbound) before the other side has it. Each bridge has its
// own namespace and queues; bounded polling, no sleeps for synchronisation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { randomBytes, randomUUID } from 'node:crypto';
import amqplib, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { createNamespace, namespace, registryUrl, testKafka, testLogger, waitFor } from '../helpers.ts';
import { createMetrics, type Metrics } from '../../runtime/metrics.ts';
import { failTool, type ConsumerPort, type InMessage, type KafkaPort, type ProducerPort } from '../../runtime/kafka.ts';
import { createTopicCodec, type TopicCodec } from '../../schemas/topic-codec.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import type { Execution } from '../../schemas/types.ts';
import { queueArguments, type AmqpConnect } from '../../connectors/amqp.ts';
import { createSignalBridge, parseConfig as signalConfig } from '../../connectors/signal-bridge.ts';
import { createWsGatewayBridge, parseConfig as wsConfig, queuesOf } from '../../connectors/ws-gateway-bridge.ts';
import { createEventsOutBridge, parseConfig as eventsOutConfig } from '../../connectors/events-out-bridge.ts';
import { createSignalOutBridge } from '../../connectors/signal-out-bridge.ts';

const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const DOC = JSON.parse(readFileSync(new URL('../sim/fixtures/bybit-v5-doc-examples.json', import.meta.url), 'utf8')) as { examples: Array<{ name: string; example: Record<string, unknown> }> };
const wsExecution = (execId: string) => {
  const m = structuredClone(DOC.examples.find((e) => e.name === 'ws execution')!.example);
  (m.data as Array<Record<string, unknown>>)[0]!.execId = execId;
  return m;
};

/** The faults a test injects: a gate on "the other side has it", failing Kafka sends and commits. */
class Faults {
  private gateOpen: Promise<void> | null = null;
  private open: () => void = () => {};
  /** Calls that waited at the gate. */
  held = 0;
  failSends = 0;
  failCommits = 0;
  sends = 0;
  commits = 0;
  close(): void {
    this.gateOpen = new Promise<void>((r) => (this.open = r));
  }
  release(): void {
    this.gateOpen = null;
    this.open();
  }
  async gate(): Promise<void> {
    const g = this.gateOpen;
    if (g) {
      this.held++;
      await g;
    }
  }
}

const kafkaDown = () => Object.assign(new Error('broker not available (test)'), { name: 'KafkaJSConnectionError', retriable: true });

/** The real Kafka, with sends gated (inbound: Kafka is the other side) and sends / commits failing on demand. */
function faultyKafka(real: KafkaPort, f: Faults): KafkaPort {
  const sending = async () => {
    f.sends++;
    if (f.failSends > 0) {
      f.failSends--;
      throw kafkaDown();
    }
    await f.gate();
  };
  return {
    admin: () => real.admin(),
    producer: (o) => {
      const p = real.producer(o);
      const port: ProducerPort = {
        ...p,
        send: async (topic, messages) => (await sending(), p.send(topic, messages)),
        sendBatch: async (batches) => (await sending(), p.sendBatch(batches)),
      };
      return port;
    },
    consumer: (o) => {
      const c = real.consumer(o);
      const port: ConsumerPort = {
        ...c,
        commitOffsets: async (offsets) => {
          f.commits++;
          if (f.failCommits > 0) {
            f.failCommits--;
            throw kafkaDown();
          }
          return c.commitOffsets(offsets);
        },
      };
      return port;
    },
  };
}

/** Connections the bridge opens (to close them), confirm channels gated (outbound: RabbitMQ is the other side). */
function faultyAmqp(conns: ChannelModel[], f: Faults): AmqpConnect {
  return async (url) => {
    const c = await amqplib.connect(url);
    conns.push(c);
    const create = c.createConfirmChannel.bind(c);
    c.createConfirmChannel = async (): Promise<ConfirmChannel> => {
      const ch = await create();
      const wait = ch.waitForConfirms.bind(ch);
      ch.waitForConfirms = async () => {
        await f.gate();
        return wait();
      };
      return ch;
    };
    return c;
  };
}

interface Bridge {
  start(): Promise<void>;
  stop(): Promise<void>;
  ready(): boolean;
}

/** One bridge under test, in its own namespace. */
interface Subject {
  /** Inputs on the source side; returns their ids, in order (one Kafka partition / one queue). */
  feed(n: number): Promise<string[]>;
  /** Ids arrived on the other side, with repeats, each with whether it came as a RabbitMQ redelivery. */
  arrived(): Promise<Array<{ id: string; redelivered: boolean }>>;
  /** A new bridge instance on the faulty Kafka and RabbitMQ. */
  make(kafka: KafkaPort, amqpConnect: AmqpConnect, metrics: Metrics): Bridge;
  /** How much is left on the source side, not acknowledged (inbound: ready messages) or not committed (outbound: records). */
  left(): Promise<number>;
  /** Outbound: ids of the records below the committed offset. */
  committedIds?(): Promise<string[]>;
  cleanup(): Promise<void>;
}

interface Kind {
  name: string;
  direction: 'inbound' | 'outbound';
  setup(kafka: KafkaPort): Promise<Subject>;
}

/** Everything written to a topic while the test runs. */
async function topicReader(kafka: KafkaPort, topic: string): Promise<{ all: InMessage[]; stop: () => Promise<void> }> {
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

/** An inbound bridge's source: queues declared as the bridge declares them, a confirm channel to publish. */
async function inboundSource(queues: string[], limits: { maxLength: number; maxBytes: number }) {
  const pub = await amqplib.connect(AMQP_URL);
  const ch = await pub.createConfirmChannel();
  for (const q of queues) await ch.assertQueue(q, { durable: true, arguments: queueArguments(limits) });
  return {
    ch,
    left: async () => {
      let n = 0;
      for (const q of queues) n += (await ch.checkQueue(q)).messageCount;
      return n;
    },
    close: async () => {
      for (const q of queues) await ch.deleteQueue(q).catch(() => {});
      await pub.close().catch(() => {});
    },
  };
}

/** An outbound bridge's destination queue (declared as the bridge declares it) and what arrived on it. */
async function outboundSink(queue: string, args: Record<string, unknown>) {
  const conn = await amqplib.connect(AMQP_URL);
  const ch = await conn.createChannel();
  await ch.assertQueue(queue, { durable: true, arguments: args });
  const got: string[] = [];
  await ch.consume(queue, (m) => m && got.push(m.properties.messageId as string), { noAck: true });
  return {
    got,
    close: async () => {
      await ch.deleteQueue(queue).catch(() => {});
      await conn.close().catch(() => {});
    },
  };
}

/** An outbound bridge's source topic (one partition): what is left past the group's commit. */
async function outboundSource(kafka: KafkaPort, codec: TopicCodec, topic: string, group: string) {
  const fed: string[] = [];
  const committed = async () => {
    const admin = kafka.admin();
    await admin.connect();
    try {
      return Math.max(0, Number((await admin.groupOffsets(group, topic)).find((o) => o.partition === 0)?.offset ?? 0));
    } finally {
      await admin.disconnect();
    }
  };
  return {
    fed,
    produce: async (records: Array<{ id: string; key: string; value: unknown }>) => {
      const p = kafka.producer();
      await p.connect();
      await p.send(topic, await Promise.all(records.map(async (r) => ({ key: r.key, value: await codec.encode(topic, r.value), partition: 0 }))));
      await p.disconnect();
      fed.push(...records.map((r) => r.id));
    },
    left: async () => fed.length - (await committed()),
    committedIds: async () => fed.slice(0, await committed()),
  };
}

const KINDS: Kind[] = [
  {
    name: 'signal bridge',
    direction: 'inbound',
    setup: async (kafka) => {
      const prefix = namespace('cf-sb');
      const drop = await createNamespace(kafka, prefix, 1);
      const queue = `test.cf.signals.${randomBytes(4).toString('hex')}`;
      const config = signalConfig({ AMQP_URL, TOPIC_PREFIX: prefix, SIGNALS_QUEUE: queue, SIGNAL_BRIDGE_PREFETCH: '8', SIGNAL_BRIDGE_RETRY_MAX_MS: '400' });
      const src = await inboundSource([queue], { maxLength: config.SIGNALS_QUEUE_MAX_LENGTH, maxBytes: config.SIGNALS_QUEUE_MAX_BYTES });
      const reader = await topicReader(kafka, `${prefix}signals.raw`);
      return {
        feed: async (n) => {
          const ids = Array.from({ length: n }, () => randomUUID());
          for (const id of ids) src.ch.sendToQueue(queue, Buffer.from(JSON.stringify({ signal_id: id, asset: 'ETHUSDT', signal_type: 'buy', amount: 100 })), { persistent: true, messageId: id });
          await src.ch.waitForConfirms();
          return ids;
        },
        arrived: async () => reader.all.map((m) => ({ id: m.headers['amqp.message_id']!, redelivered: m.headers['amqp.redelivered'] === 'true' })),
        make: (k, amqpConnect, metrics) => createSignalBridge({ kafka: k, logger: testLogger, metrics, config, amqpConnect }),
        left: src.left,
        cleanup: async () => {
          await reader.stop();
          await src.close();
          await drop();
        },
      };
    },
  },
  {
    name: 'ws-gateway bridge',
    direction: 'inbound',
    setup: async (kafka) => {
      const prefix = namespace('cf-wsg');
      const drop = await createNamespace(kafka, prefix, 1);
      const codec = await createTopicCodec({ registryUrl, prefix });
      const id = randomBytes(4).toString('hex');
      const config = wsConfig({
        AMQP_URL,
        TOPIC_PREFIX: prefix,
        ...Object.fromEntries(['ORDER', 'EXECUTION', 'POSITION', 'WALLET', 'TICKER'].map((k) => [`WS_GATEWAY_${k}_QUEUE`, `test.cf.ws-gateway.${k.toLowerCase()}.${id}`])),
        WS_GATEWAY_PREFETCH: '8',
        WS_GATEWAY_BATCH_MAX: '4',
        WS_GATEWAY_RETRY_MAX_MS: '400',
      });
      const src = await inboundSource(queuesOf(config), { maxLength: config.WS_GATEWAY_QUEUE_MAX_LENGTH, maxBytes: config.WS_GATEWAY_QUEUE_MAX_BYTES });
      const reader = await topicReader(kafka, `${prefix}exchange.executions`);
      return {
        feed: async (n) => {
          const ids = Array.from({ length: n }, () => `cf-${randomUUID()}`);
          for (const x of ids) src.ch.sendToQueue(config.WS_GATEWAY_EXECUTION_QUEUE, Buffer.from(JSON.stringify(wsExecution(x))), { persistent: true, messageId: x });
          await src.ch.waitForConfirms();
          return ids;
        },
        arrived: async () => Promise.all(reader.all.map(async (m) => ({ id: ((await codec.decode(m.topic, m.value!)) as Execution).execId, redelivered: m.headers['amqp.redelivered'] === 'true' }))),
        make: (k, amqpConnect, metrics) => createWsGatewayBridge({ kafka: k, codec, logger: testLogger, metrics, config, amqpConnect }),
        left: src.left,
        cleanup: async () => {
          await reader.stop();
          await src.close();
          await drop();
        },
      };
    },
  },
  {
    name: 'events-out bridge',
    direction: 'outbound',
    setup: async (kafka) => {
      const prefix = namespace('cf-eo');
      const drop = await createNamespace(kafka, prefix, 1);
      const codec = await createTopicCodec({ registryUrl, prefix });
      const queue = `test.cf.order_events.${randomBytes(4).toString('hex')}`;
      const config = eventsOutConfig({ AMQP_URL, TOPIC_PREFIX: prefix, ORDER_EVENTS_QUEUE: queue, EVENTS_OUT_GROUP: 'events-out', EVENTS_OUT_BATCH_MAX: '5', EVENTS_OUT_RETRY_MAX_MS: '300' });
      const sink = await outboundSink(queue, {});
      const src = await outboundSource(kafka, codec, `${prefix}orders.events`, `${prefix}events-out`);
      return {
        feed: async (n) => {
          const ids = Array.from({ length: n }, () => `om-cf-${randomUUID()}:1`);
          await src.produce(ids.map((event_id) => ({ id: event_id, key: 'ETHUSDT', value: { ...structuredClone(SAMPLES.OrderEvent), event_id } })));
          return ids;
        },
        arrived: async () => sink.got.map((id) => ({ id, redelivered: false })),
        make: (k, amqpConnect, metrics) => createEventsOutBridge({ kafka: k, codec, logger: testLogger, metrics, config, amqpConnect, onFatal: failTool('events-out bridge under test') }),
        left: src.left,
        committedIds: src.committedIds,
        cleanup: async () => {
          await sink.close();
          await drop();
        },
      };
    },
  },
  {
    name: 'signal-out bridge',
    direction: 'outbound',
    setup: async (kafka) => {
      const prefix = namespace('cf-so');
      const drop = await createNamespace(kafka, prefix, 1);
      const codec = await createTopicCodec({ registryUrl, prefix });
      const queue = `test.cf.model-signals.${randomBytes(4).toString('hex')}`;
      const defaults = signalConfig({});
      const queueLimits = { maxLength: defaults.SIGNALS_QUEUE_MAX_LENGTH, maxBytes: defaults.SIGNALS_QUEUE_MAX_BYTES };
      const sink = await outboundSink(queue, queueArguments(queueLimits));
      const group = `${prefix}signal-out`;
      const src = await outboundSource(kafka, codec, `${prefix}model.signals`, group);
      return {
        feed: async (n) => {
          const ids = Array.from({ length: n }, () => randomUUID());
          await src.produce(ids.map((signal_id) => ({ id: signal_id, key: 'ETHUSDT', value: { ...structuredClone(SAMPLES.ModelSignal), signal_id } })));
          return ids;
        },
        arrived: async () => sink.got.map((id) => ({ id, redelivered: false })),
        make: (k, amqpConnect, metrics) =>
          createSignalOutBridge({ kafka: k, codec, logger: testLogger, metrics, amqpUrl: AMQP_URL, queue, queueLimits, topicPrefix: prefix, groupId: group, batchMax: 5, retryMaxMs: 300, amqpConnect, onFatal: failTool('signal-out bridge under test') }),
        left: src.left,
        committedIds: src.committedIds,
        cleanup: async () => {
          await sink.close();
          await drop();
        },
      };
    },
  },
];

/** A bridge of the kind on faulty Kafka and RabbitMQ, with the handles a test needs. */
async function harness(kind: Kind) {
  const real = testKafka();
  const subject = await kind.setup(real);
  const faults = new Faults();
  const conns: ChannelModel[] = [];
  const bridges: Bridge[] = [];
  const metrics = createMetrics();
  const make = () => {
    const b = subject.make(faultyKafka(real, faults), faultyAmqp(conns, faults), metrics);
    bridges.push(b);
    return b;
  };
  /** Messages (inbound) or records (outbound) the bridges received. */
  const received = async () => (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'pipeline_bridge_messages_in_total')?.values.reduce((a, v) => a + v.value, 0) ?? 0;
  const ids = async () => new Set((await subject.arrived()).map((a) => a.id));
  const allArrived = (fed: string[]) => waitFor('every input on the other side', async () => {
    const got = await ids();
    return fed.every((id) => got.has(id));
  }, 90_000);
  return {
    subject,
    faults,
    conns,
    make,
    received,
    ids,
    allArrived,
    /** Everything taken off the source side: inbound, every message acked; outbound, every offset committed. */
    drained: () => waitFor('nothing left on the source side', async () => (await subject.left()) === 0, 90_000),
    cleanup: async () => {
      faults.release();
      for (const b of bridges) await b.stop().catch(() => {});
      await subject.cleanup();
    },
  };
}

for (const kind of KINDS) {
  test(`${kind.name}: RabbitMQ connection closed before the other side confirmed: nothing ${kind.direction === 'inbound' ? 'acked' : 'committed'} early, nothing lost`, async () => {
    const h = await harness(kind);
    try {
      h.faults.close();
      const bridge = h.make();
      await bridge.start();
      // Fewer than the prefetch: every input is delivered to the bridge on the first channel.
      const fed = await h.subject.feed(6);
      await waitFor('a batch waiting for the other side, every input received', async () => h.faults.held > 0 && (kind.direction === 'outbound' || (await h.received()) >= fed.length));
      if (kind.direction === 'inbound') assert.equal((await h.subject.arrived()).length, 0, 'Kafka has nothing yet');
      else assert.equal(await h.subject.left(), fed.length, 'nothing committed before the confirms');
      await h.conns[h.conns.length - 1]!.close();
      await waitFor('the bridge to reconnect', () => h.conns.length >= 2 && bridge.ready());
      h.faults.release();
      await h.allArrived(fed);
      if (kind.direction === 'inbound') {
        // Nothing was acked while Kafka had not confirmed: every delivery of the dead channel came back.
        await waitFor('every input redelivered', async () => {
          const again = new Set((await h.subject.arrived()).filter((a) => a.redelivered).map((a) => a.id));
          return fed.every((id) => again.has(id));
        });
      }
      await h.drained();
      await bridge.stop();
      assert.equal(await h.subject.left(), 0);
    } finally {
      await h.cleanup();
    }
  });

  test(`${kind.name}: Kafka ${kind.direction === 'inbound' ? 'sends' : 'commits'} failing then back: retried, nothing lost`, async () => {
    const h = await harness(kind);
    try {
      if (kind.direction === 'inbound') h.faults.failSends = 3;
      else h.faults.failCommits = 3;
      const bridge = h.make();
      await bridge.start();
      const fed = await h.subject.feed(20);
      await h.allArrived(fed);
      await h.drained();
      if (kind.direction === 'inbound') assert.ok(h.faults.sends >= 4, `sends retried (${h.faults.sends})`);
      else assert.ok(h.faults.commits >= 4, `commits retried (${h.faults.commits})`);
      const first: string[] = [];
      for (const a of await h.subject.arrived()) if (!first.includes(a.id)) first.push(a.id);
      assert.deepEqual(first, fed, 'first arrivals in source order');
      await bridge.stop();
      assert.equal(await h.subject.left(), 0);
    } finally {
      await h.cleanup();
    }
  });

  test(`${kind.name}: stopped while the other side has not confirmed: the batch in flight finishes, the rest waits on the source side for the next instance`, async () => {
    const h = await harness(kind);
    try {
      h.faults.close();
      const first = h.make();
      await first.start();
      const fed = await h.subject.feed(12);
      await waitFor('a batch waiting for the other side', () => h.faults.held > 0);
      const stopping = first.stop();
      await waitFor('the bridge no longer ready', () => !first.ready());
      h.faults.release();
      await stopping;
      if (kind.direction === 'inbound') {
        // Acked ones are off the queue; each of them must be on Kafka (poll: the reader may lag, and
        // RabbitMQ requeues the unacked ones a moment after the connection closed).
        let got = new Set<string>();
        let left = -1;
        await waitFor('what Kafka has and what is left on the queue to add up to every input', async () => {
          got = await h.ids();
          left = await h.subject.left();
          return got.size + left === fed.length;
        }, 30_000).catch(() => {});
        assert.equal(got.size + left, fed.length, `every input either on Kafka (${got.size}) or still on the queue (${left}), not both`);
        assert.ok(got.size > 0, 'the batch in flight was written');
      } else {
        const got = await h.ids();
        const left = await h.subject.left();
        // Committed ones must be on the queue.
        const committed = await h.subject.committedIds!();
        assert.deepEqual(committed.filter((id) => !got.has(id)), [], 'nothing committed that RabbitMQ does not have');
        assert.equal(left, fed.length - committed.length);
      }
      const second = h.make();
      await second.start();
      await h.allArrived(fed);
      await h.drained();
      await second.stop();
    } finally {
      await h.cleanup();
    }
  });
}
