// Events out: Kafka orders.events (Avro OrderEvent) → RabbitMQ `order-manager.order_events` (JSON).
// This file is the bridge's mapping (OrderEvent → AMQP message) and settings; consuming, publishing
// with confirms, committing, retries and dead letters are the outbound skeleton's
// (connectors/amqp-outbound.ts).
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
import { z } from 'zod';
import { int, opt } from '../runtime/setting-types.ts';
import type { KafkaPort } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { Codec } from '../runtime/codec.ts';
import type { OrderEvent } from '../schemas/types.ts';
import type { Clock } from '../runtime/clock.ts';
import { topicName } from '../runtime/topics.ts';
import type { AmqpConnect } from './amqp.ts';
import { createOutboundBridge, type OutboundBridge, type OutboundMessage } from './amqp-outbound.ts';

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

/** start / stop / ready (joined the consumer group with a confirm channel open): connectors/amqp-outbound.ts. */
export type EventsOutBridge = OutboundBridge;

/** An order event as the AMQP message published to the queue (body and properties). */
export function toMessage(e: OrderEvent, m: { topic: string; partition: number; offset: string }): OutboundMessage {
  const headers: Record<string, string> = { kafka_topic: m.topic, kafka_partition: String(m.partition), kafka_offset: m.offset };
  if (e.trace_id) headers.trace_id = e.trace_id;
  return {
    content: Buffer.from(JSON.stringify(toJson(e))),
    options: {
      persistent: true,
      messageId: e.event_id,
      type: e.event_type,
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      timestamp: Math.floor(e.occurred_at / 1000),
      appId: 'order-manager',
      headers,
    },
  };
}

export function createEventsOutBridge(deps: EventsOutBridgeDeps): EventsOutBridge {
  const cfg = deps.config;
  return createOutboundBridge<OrderEvent>({
    name,
    title: 'events-out bridge',
    what: 'order event',
    kafka: deps.kafka,
    codec: deps.codec,
    logger: deps.logger,
    metrics: deps.metrics,
    clock: deps.clock,
    topic: topicName('orders.events', cfg.TOPIC_PREFIX),
    dlqTopic: topicName('orders.dlq', cfg.TOPIC_PREFIX),
    groupId: cfg.TOPIC_PREFIX + cfg.EVENTS_OUT_GROUP,
    amqpUrl: cfg.AMQP_URL,
    amqpConnect: deps.amqpConnect,
    queue: cfg.ORDER_EVENTS_QUEUE,
    batchMax: cfg.EVENTS_OUT_BATCH_MAX,
    retryMaxMs: cfg.EVENTS_OUT_RETRY_MAX_MS,
    toMessage,
    onFatal: deps.onFatal,
  });
}
