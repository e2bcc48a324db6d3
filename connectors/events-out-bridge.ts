// Events out: Kafka orders.events (Avro OrderEvent) → RabbitMQ `order-manager.order_events` (JSON).
//
// - Consumer group (TOPIC_PREFIX + EVENTS_OUT_GROUP), read_committed (only events of committed
//   tracking transactions), starting from the earliest offset for a new group, offsets committed by
//   hand only.
// - Each event is published to the durable queue (default exchange, routing key = queue) as JSON:
//   the Avro record's snake_case fields unchanged, except that occurred_at / observed_at become ISO
//   8601 UTC strings with the epoch ms beside them as occurred_at_ms / observed_at_ms (see toJson).
//   Properties: persistent (deliveryMode 2), messageId = event_id, type = event_type, contentType
//   application/json, contentEncoding utf-8, timestamp = occurred_at (seconds), appId order-manager,
//   headers trace_id (when known), kafka_topic, kafka_partition, kafka_offset.
// - Publisher confirms (ConfirmChannel): a chunk of at most EVENTS_OUT_BATCH_MAX events is published,
//   then waitForConfirms; only after RabbitMQ confirmed every one are the Kafka offsets committed
//   (house style 4). A crash or a lost connection between publish and commit publishes those events
//   again: delivery is at-least-once, and consumers drop repeats by event_id (the same state change
//   always has the same event_id; the JSON of a repeat is byte-identical).
// - RabbitMQ down or a nack: the chunk waits for the reconnect (connectors/amqp.ts, backoff) and is
//   published again; nothing is committed meanwhile, so nothing is skipped.
// - A record that is not a decodable OrderEvent (a bug upstream) goes to orders.dlq (DeadLetter,
//   reason undecodable) and is committed past, so it cannot block the partition.
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { int, opt } from '../runtime/setting-types.ts';
import type { ConfirmChannel } from 'amqplib';
import type { ConsumerPort, InMessage, KafkaPort, ProducerPort } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { Codec } from '../runtime/codec.ts';
import type { DeadLetter, OrderEvent } from '../schemas/types.ts';
import { systemClock, type Clock } from '../runtime/clock.ts';
import { RejectedError } from '../runtime/errors.ts';
import { backoffMs } from '../runtime/retry.ts';
import { topicName } from '../runtime/topics.ts';
import { createAmqpConnection, type AmqpConnect, type AmqpConnection, type ChannelModel } from './amqp.ts';

export const name = 'events-out-bridge';


/** The bridge's settings (AMQP_URL and TOPIC_PREFIX as in runtime/config.ts; the rest are new). */
export const configSchema = z.object({
  AMQP_URL: opt(z.string().default('amqp://guest:guest@127.0.0.1:5672')).describe('RabbitMQ connection string.'),
  TOPIC_PREFIX: opt(z.string().regex(/^[a-zA-Z0-9._-]*$/).default('')).describe('Prefix for every topic.'),
  ORDER_EVENTS_QUEUE: opt(z.string().min(1).max(255).default('order-manager.order_events')).describe('RabbitMQ queue the order events are published to as JSON (asserted durable).'),
  EVENTS_OUT_GROUP: opt(z.string().min(1).default('events-out-bridge')).describe('Kafka consumer group of the events-out bridge (TOPIC_PREFIX is put in front).'),
  EVENTS_OUT_BATCH_MAX: opt(int.min(1).max(10000).default(256)).describe('Most order events published before waiting for RabbitMQ\'s confirms and committing their offsets.'),
  EVENTS_OUT_RETRY_MAX_MS: opt(int.min(100).default(10000)).describe('Longest backoff of the events-out bridge between RabbitMQ reconnects and republish attempts, ms.'),
});
export type EventsOutBridgeConfig = z.output<typeof configSchema>;

export function parseConfig(env: Record<string, unknown> = process.env): EventsOutBridgeConfig {
  return configSchema.parse(env);
}

/** Input and output (house style 8). */
export const inputSchema = { topic: 'orders.events', record: 'OrderEvent' } as const;
export const outputSchema = { queue: 'order-manager.order_events', format: 'json' } as const;

/** The published JSON: the OrderEvent's fields, times as ISO strings plus *_ms epoch milliseconds. */
export type OrderEventJson = Omit<OrderEvent, 'occurred_at' | 'observed_at'> & {
  occurred_at: string;
  occurred_at_ms: number;
  observed_at: string;
  observed_at_ms: number;
};

/** An OrderEvent as the JSON object published to RabbitMQ (field order as in the Avro record). */
export function toJson(e: OrderEvent): OrderEventJson {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) {
    if (k === 'occurred_at' || k === 'observed_at') {
      out[k] = new Date(v as number).toISOString();
      out[`${k}_ms`] = v;
    } else {
      out[k] = v;
    }
  }
  return out as OrderEventJson;
}

export interface EventsOutBridgeDeps {
  kafka: KafkaPort;
  codec: Codec;
  logger: Logger;
  metrics: Metrics;
  config: EventsOutBridgeConfig;
  clock?: Clock;
  amqpConnect?: AmqpConnect;
  /** A consumer kafkajs will not restart: the process must stop (its supervisor restarts it). */
  onFatal: (err: Error) => void;
}

export interface EventsOutBridge {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Joined the consumer group with a RabbitMQ confirm channel open. */
  ready(): boolean;
}

class ChannelLost extends Error {}

export function createEventsOutBridge(deps: EventsOutBridgeDeps): EventsOutBridge {
  const cfg = deps.config;
  const clock = deps.clock ?? systemClock;
  const topic = topicName('orders.events', cfg.TOPIC_PREFIX);
  const dlq = topicName('orders.dlq', cfg.TOPIC_PREFIX);
  const groupId = cfg.TOPIC_PREFIX + cfg.EVENTS_OUT_GROUP;
  const queue = cfg.ORDER_EVENTS_QUEUE;
  const log = deps.logger.child({ connector: name, topic, queue, groupId });
  const mb = deps.metrics.bridge;
  const abort = new AbortController();

  let consumer: ConsumerPort | null = null;
  let producer: ProducerPort | null = null;
  let amqp: AmqpConnection | null = null;
  let channel: ConfirmChannel | null = null;
  let channelUp: (() => void) | null = null;
  let joined = false;
  let stopping = false;
  let failures = 0;

  const openChannel = async (conn: ChannelModel): Promise<void> => {
    const ch = await conn.createConfirmChannel();
    ch.on('error', (err: Error) => log.warn({ err: err.message }, 'RabbitMQ channel error'));
    ch.on('close', () => {
      if (channel === ch) channel = null;
      // A channel closed while the connection lives (e.g. a refused publish): open another.
      if (!stopping && amqp?.current() === conn) {
        void (async () => {
          for (let attempt = 0; !stopping && channel === null && amqp?.current() === conn; attempt++) {
            try {
              await sleep(backoffMs(attempt, 100, cfg.EVENTS_OUT_RETRY_MAX_MS), undefined, { signal: abort.signal });
              await openChannel(conn);
            } catch (err) {
              if (abort.signal.aborted) return;
              log.warn({ err: (err as Error).message }, 'reopening the confirm channel failed');
            }
          }
        })();
      }
    });
    await ch.assertQueue(queue, { durable: true });
    channel = ch;
    channelUp?.();
    channelUp = null;
    log.info('confirm channel open');
  };

  /** The confirm channel, once there is one (waits across reconnects); null when stopping. */
  const awaitChannel = async (): Promise<ConfirmChannel | null> => {
    while (!stopping) {
      if (channel) return channel;
      await new Promise<void>((resolve) => {
        channelUp = resolve;
        abort.signal.addEventListener('abort', () => resolve(), { once: true });
      });
    }
    return null;
  };

  /** Publish the chunk and wait for every confirm. Throws ChannelLost (or the nack) on failure. */
  const publishChunk = async (ch: ConfirmChannel, items: Array<{ m: InMessage; e: OrderEvent }>): Promise<void> => {
    let onClose: () => void = () => {};
    const closed = new Promise<never>((_, reject) => {
      onClose = () => reject(new ChannelLost('channel closed before the confirms'));
      ch.once('close', onClose);
    });
    closed.catch(() => {});
    try {
      for (const { m, e } of items) {
        const headers: Record<string, string> = { kafka_topic: m.topic, kafka_partition: String(m.partition), kafka_offset: m.offset };
        if (e.trace_id) headers.trace_id = e.trace_id;
        const ok = ch.sendToQueue(queue, Buffer.from(JSON.stringify(toJson(e))), {
          persistent: true,
          messageId: e.event_id,
          type: e.event_type,
          contentType: 'application/json',
          contentEncoding: 'utf-8',
          timestamp: Math.floor(e.occurred_at / 1000),
          appId: 'order-manager',
          headers,
        });
        if (!ok) await Promise.race([new Promise<void>((resolve) => ch.once('drain', () => resolve())), closed]);
      }
      await Promise.race([ch.waitForConfirms(), closed]);
    } finally {
      ch.removeListener('close', onClose);
    }
  };

  const deadLetter = async (m: InMessage, err: Error): Promise<void> => {
    const value: DeadLetter = {
      original_topic: m.topic,
      original_partition: m.partition,
      original_offset: Number(m.offset),
      original_timestamp: m.timestamp,
      original_key: m.key === null ? null : Buffer.from(m.key),
      original_value: m.value,
      headers: m.headers,
      stage: name,
      reason_code: 'undecodable',
      reason_detail: err.message.slice(0, 2000),
      error_kind: 'rejected',
      attempts: 1,
      signal_id: null,
      trace_id: m.headers.trace_id ?? null,
      failed_at: clock.now(),
    };
    await producer!.send(dlq, [{ key: null, value: await deps.codec.encode(dlq, value), headers: { 'dlq.reason': 'undecodable' } }]);
    mb.rejected.inc({ bridge: name, reason: 'undecodable' });
    log.error({ partition: m.partition, offset: m.offset, err: err.message }, 'undecodable order event dead-lettered');
  };

  /** Decode, publish with confirms, then commit; retried until it succeeds or the bridge stops. */
  const handleChunk = async (msgs: InMessage[]): Promise<boolean> => {
    const items: Array<{ m: InMessage; e: OrderEvent }> = [];
    for (const m of msgs) {
      mb.in.inc({ bridge: name, source: m.topic });
      for (let attempt = 0; ; attempt++) {
        try {
          items.push({ m, e: (await deps.codec.decode(m.topic, m.value!)) as OrderEvent });
          break;
        } catch (err) {
          if (err instanceof RejectedError || m.value === null) {
            await deadLetter(m, err as Error);
            break;
          }
          // registry unreachable: wait and retry
          if (stopping) return false;
          log.warn({ err: (err as Error).message, attempt: attempt + 1 }, 'decoding failed; retrying');
          await sleep(backoffMs(attempt, 200, cfg.EVENTS_OUT_RETRY_MAX_MS), undefined, { signal: abort.signal }).catch(() => {});
        }
      }
    }
    while (items.length > 0) {
      const ch = await awaitChannel();
      if (!ch) return false;
      try {
        await publishChunk(ch, items);
        failures = 0;
        break;
      } catch (err) {
        failures++;
        log.warn({ err: (err as Error).message, events: items.length, failures }, 'publish not confirmed; publishing the chunk again after the channel is back');
        if (channel === ch) await ch.close().catch(() => {});
        await sleep(backoffMs(failures - 1, 100, cfg.EVENTS_OUT_RETRY_MAX_MS), undefined, { signal: abort.signal }).catch(() => {});
      }
    }
    mb.out.inc({ bridge: name, destination: queue }, items.length);
    const last = msgs[msgs.length - 1]!;
    await consumer!.commitOffsets([{ topic: last.topic, partition: last.partition, offset: String(BigInt(last.offset) + 1n) }]);
    return true;
  };

  return {
    start: async () => {
      producer = deps.kafka.producer();
      await producer.connect();
      amqp = createAmqpConnection({
        url: cfg.AMQP_URL,
        name,
        logger: log,
        metrics: deps.metrics,
        retryMaxMs: cfg.EVENTS_OUT_RETRY_MAX_MS,
        connect: deps.amqpConnect,
        onConnect: openChannel,
        onDisconnect: () => {
          channel = null;
        },
      });
      await amqp.start();
      // kafkajs gave up on the consumer (e.g. a non-retriable group error after a broker restart):
      // without onFatal the process stayed up with a dead consumer and published nothing more (seen
      // in the chaos run). Stop like the stage runner does, so the supervisor restarts us.
      consumer = deps.kafka.consumer({ groupId, readCommitted: true, onFatal: (err) => !stopping && deps.onFatal(err) });
      consumer.onGroupJoin(() => {
        joined = true;
      });
      consumer.onCrash((err, restart) => {
        joined = false;
        log.warn({ err: err.message, restart }, 'Kafka consumer crashed');
      });
      await consumer.connect();
      await consumer.subscribe([topic], true);
      await consumer.run(async (batch, ctl) => {
        for (let i = 0; i < batch.messages.length; i += cfg.EVENTS_OUT_BATCH_MAX) {
          if (stopping || !ctl.isRunning() || ctl.isStale()) return;
          const chunk = batch.messages.slice(i, i + cfg.EVENTS_OUT_BATCH_MAX);
          if (!(await handleChunk(chunk))) return;
          ctl.resolveOffset(chunk[chunk.length - 1]!.offset);
          await ctl.heartbeat();
        }
      });
      log.info('events-out bridge started');
    },
    stop: async () => {
      if (stopping) return;
      stopping = true;
      abort.abort();
      await consumer?.disconnect().catch(() => {});
      joined = false;
      await amqp?.stop();
      await producer?.disconnect().catch(() => {});
      log.info('events-out bridge stopped');
    },
    ready: () => joined && channel !== null && !stopping,
  };
}
