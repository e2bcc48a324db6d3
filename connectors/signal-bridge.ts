// Signal bridge: RabbitMQ `model-service.trading_signals` → Kafka signals.raw, bytes unchanged.
// This file is the bridge's mapping (delivery → record) and settings; consuming, batching, acks,
// requeue and reconnect are the inbound skeleton's (connectors/amqp-inbound.ts).
//
// - Durable queue with a length limit (SIGNALS_QUEUE_MAX_LENGTH / _MAX_BYTES, x-overflow
//   reject-publish: a full queue refuses new signals, so the publisher sees back-pressure as nacks
//   instead of RabbitMQ's memory alarm blocking every publisher of the node; connectors/amqp.ts
//   queueDeclarer), manual acknowledgement, bounded prefetch (SIGNAL_BRIDGE_PREFETCH).
// - Each message is produced as is, keyed by its `asset` (read leniently; null when unreadable:
//   validation dead-letters it), with headers amqp.message_id, amqp.redelivered, received_at (epoch
//   ms) and trace_id (from the JSON, else the AMQP headers or correlationId, else a new one).
// - Acknowledge only after Kafka has it (house style 4): deliveries are sent in delivery order, in
//   batches, one batch at a time (ProducerPort.send is idempotent, acks=all); when a batch's send
//   resolves, its last delivery is acked with `multiple`, which acks exactly that batch. So per-asset
//   order on the topic is the queue's order, and nothing is acked that Kafka does not hold.
// - Kafka failure: every outstanding delivery of the channel is nacked with requeue and the channel
//   closed (RabbitMQ puts them back in their original order), then, after a backoff, consuming
//   resumes. Nothing buffered is sent after a failure, so nothing overtakes a requeued message.
// - RabbitMQ connection loss: connectors/amqp.ts reconnects with backoff; unacked deliveries come back
//   redelivered. A batch already in flight to Kafka when the channel died is still written but cannot
//   be acked, so those messages reach signals.raw twice: validation keeps the first (signal_id).
// - Messages larger than SIGNAL_BRIDGE_MAX_RECORD_BYTES (far above SIGNAL_MAX_BYTES) are forwarded
//   truncated, with amqp.body_size and amqp.truncated headers, so validation refuses them as
//   `oversize` and the dead-letter topic keeps their beginning, instead of a record Kafka refuses
//   forever (a poison message blocking the queue). The truncation happens on arrival and the
//   delivery's own body is released then: the bridge holds at most SIGNAL_BRIDGE_PREFETCH records
//   of at most SIGNAL_BRIDGE_MAX_RECORD_BYTES (pipeline_bridge_buffered_bytes), whatever the size of
//   the messages on the queue.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { int, opt } from '../runtime/setting-types.ts';
import type { ConsumeMessage } from 'amqplib';
import type { Headers, KafkaPort, OutMessage } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';
import { systemClock, type Clock } from '../runtime/clock.ts';
import { topicName } from '../runtime/topics.ts';
import { recordBytes } from '../runtime/coalesce.ts';
import type { AmqpConnect } from './amqp.ts';
import { createInboundBridge, type InboundBridge } from './amqp-inbound.ts';

export const name = 'signal-bridge';

/** Headers written on every signals.raw record. */
export const BRIDGE_HEADERS = {
  messageId: 'amqp.message_id',
  redelivered: 'amqp.redelivered',
  receivedAt: 'received_at',
  traceId: 'trace_id',
  bodySize: 'amqp.body_size',
  truncated: 'amqp.truncated',
} as const;


/** The bridge's settings (AMQP_URL and TOPIC_PREFIX as in runtime/config.ts; the rest are new). */
export const configSchema = z
  .object({
    AMQP_URL: opt(z.string().default('amqp://guest:guest@127.0.0.1:5672')).describe('RabbitMQ connection string.'),
    TOPIC_PREFIX: opt(z.string().regex(/^[a-zA-Z0-9._-]*$/).default('')).describe('Prefix for every topic.'),
    SIGNALS_QUEUE: opt(z.string().min(1).default('model-service.trading_signals')).describe('RabbitMQ queue the model service publishes signals to (asserted durable).'),
    SIGNAL_BRIDGE_PREFETCH: opt(int.min(1).max(10000).default(64)).describe('Most unacknowledged signals the bridge holds at once (AMQP prefetch); also the largest batch.'),
    SIGNAL_BRIDGE_BATCH_MAX_BYTES: opt(int.min(1024).default(524288)).describe('Largest Kafka send of the bridge, bytes (stays under the broker message.max.bytes of 1 MiB).'),
    SIGNAL_BRIDGE_MAX_RECORD_BYTES: opt(int.min(1024).default(262144)).describe('Messages larger than this are forwarded truncated, flagged for validation to refuse as oversize.'),
    SIGNAL_BRIDGE_RETRY_MAX_MS: opt(int.min(100).default(10000)).describe('Longest backoff between RabbitMQ reconnects and Kafka send retries, ms.'),
    SIGNALS_QUEUE_MAX_LENGTH: opt(int.min(0).default(100000)).describe('Most ready messages the signals queue holds (x-max-length, set when the bridge creates the queue; 0: none). A full queue refuses new signals (x-overflow reject-publish): a publisher using confirms gets a nack.'),
    SIGNALS_QUEUE_MAX_BYTES: opt(int.min(0).default(67108864)).describe('Most bytes of ready message bodies the signals queue holds (x-max-length-bytes, as SIGNALS_QUEUE_MAX_LENGTH; 0: none).'),
  })
  .refine((c) => c.SIGNAL_BRIDGE_MAX_RECORD_BYTES <= c.SIGNAL_BRIDGE_BATCH_MAX_BYTES, { message: 'SIGNAL_BRIDGE_MAX_RECORD_BYTES must not exceed SIGNAL_BRIDGE_BATCH_MAX_BYTES', path: ['SIGNAL_BRIDGE_MAX_RECORD_BYTES'] });
export type SignalBridgeConfig = z.output<typeof configSchema>;

export function parseConfig(env: Record<string, unknown> = process.env): SignalBridgeConfig {
  return configSchema.parse(env);
}

/** Input and output (house style 8). */
export const inputSchema = { queue: 'model-service.trading_signals', format: 'json-bytes' } as const;
export const outputSchema = { topic: 'signals.raw', record: 'raw' } as const;

export interface SignalBridgeDeps {
  kafka: KafkaPort;
  logger: Logger;
  metrics: Metrics;
  config: SignalBridgeConfig;
  clock?: Clock;
  /** How to open a RabbitMQ connection (amqplib's connect by default). */
  amqpConnect?: AmqpConnect;
}

/** start / stop / ready (consuming from RabbitMQ with a connected Kafka producer): connectors/amqp-inbound.ts. */
export type SignalBridge = InboundBridge;

const textOf = (v: unknown, max = 256): string | null => {
  const s = Buffer.isBuffer(v) ? v.toString('utf8') : typeof v === 'string' ? v : null;
  return s && s.length > 0 && s.length <= max ? s : null;
};

/** Lenient look into the body: asset (partition key) and trace_id, when it is a JSON object. */
export function peek(content: Buffer): { asset: string | null; traceId: string | null } {
  try {
    const v = JSON.parse(content.toString('utf8')) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return { asset: null, traceId: null };
    const o = v as Record<string, unknown>;
    return { asset: textOf(o.asset, 64), traceId: textOf(o.trace_id) };
  } catch {
    return { asset: null, traceId: null };
  }
}

export function toRecord(msg: ConsumeMessage, receivedAt: number, maxRecordBytes: number): OutMessage {
  const truncated = msg.content.length > maxRecordBytes;
  const value = truncated ? msg.content.subarray(0, maxRecordBytes) : msg.content;
  const { asset, traceId } = truncated ? { asset: null, traceId: null } : peek(msg.content);
  const h = (msg.properties.headers ?? {}) as Record<string, unknown>;
  const trace = traceId ?? textOf(h['trace_id']) ?? textOf(h['x-trace-id']) ?? textOf(msg.properties.correlationId) ?? randomUUID();
  const headers: Headers = {
    [BRIDGE_HEADERS.messageId]: textOf(msg.properties.messageId) ?? '',
    [BRIDGE_HEADERS.redelivered]: String(msg.fields.redelivered),
    [BRIDGE_HEADERS.receivedAt]: String(receivedAt),
    [BRIDGE_HEADERS.traceId]: trace,
  };
  if (truncated) {
    headers[BRIDGE_HEADERS.bodySize] = String(msg.content.length);
    headers[BRIDGE_HEADERS.truncated] = 'true';
  }
  return { key: asset, value: Buffer.from(value), headers };
}

export function createSignalBridge(deps: SignalBridgeDeps): SignalBridge {
  const cfg = deps.config;
  const clock = deps.clock ?? systemClock;
  const topic = topicName('signals.raw', cfg.TOPIC_PREFIX);
  const queue = cfg.SIGNALS_QUEUE;
  const mb = deps.metrics.bridge;
  return createInboundBridge<OutMessage>({
    name,
    title: 'signal bridge',
    kafka: deps.kafka,
    logger: deps.logger.child({ connector: name, queue, topic }),
    metrics: deps.metrics,
    amqpUrl: cfg.AMQP_URL,
    amqpConnect: deps.amqpConnect,
    queues: [queue],
    queueLimits: { maxLength: cfg.SIGNALS_QUEUE_MAX_LENGTH, maxBytes: cfg.SIGNALS_QUEUE_MAX_BYTES },
    prefetch: cfg.SIGNAL_BRIDGE_PREFETCH,
    batchMaxBytes: cfg.SIGNAL_BRIDGE_BATCH_MAX_BYTES,
    retryMaxMs: cfg.SIGNAL_BRIDGE_RETRY_MAX_MS,
    // The record is a copy of at most SIGNAL_BRIDGE_MAX_RECORD_BYTES: all the bridge keeps.
    hold: (msg) => {
      const out = toRecord(msg, clock.now(), cfg.SIGNAL_BRIDGE_MAX_RECORD_BYTES);
      return { item: out, bytes: recordBytes(out) };
    },
    // One send per batch, then its last delivery acked.
    write: async ({ items, producer, ack }) => {
      await producer.send(topic, items);
      mb.out.inc({ bridge: name, destination: topic }, items.length);
      ack(items.length - 1);
    },
    failureWhat: 'Kafka send',
    repeatsNote: '(validation drops the repeats)',
  });
}
