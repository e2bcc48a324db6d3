// Signal bridge: RabbitMQ `model-service.trading_signals` → Kafka signals.raw, bytes unchanged.
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
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { int, opt } from '../runtime/setting-types.ts';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Headers, KafkaPort, OutMessage, ProducerPort } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';
import { systemClock, type Clock } from '../runtime/clock.ts';
import { backoffMs, connectWithBackoff } from '../runtime/retry.ts';
import { topicName } from '../runtime/topics.ts';
import { recordBytes } from '../runtime/coalesce.ts';
import { createAmqpConnection, queueDeclarer, type AmqpConnect, type AmqpConnection, type ChannelModel } from './amqp.ts';

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

export interface SignalBridge {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Consuming from RabbitMQ with a connected Kafka producer. */
  ready(): boolean;
}

interface Pending {
  /** The delivery without its body (ack/nack need its tag only): the body lives on in `out`. */
  msg: ConsumeMessage;
  gen: number;
  out: OutMessage;
  bytes: number;
}

const NO_BODY = Buffer.alloc(0);

interface Session {
  ch: Channel;
  conn: ChannelModel;
  gen: number;
  consumerTag: string | null;
  /** Closed on purpose (Kafka failure, stop): the close handler leaves it to its closer. */
  closing: boolean;
}

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
  const log = deps.logger.child({ connector: name, queue, topic });
  const mb = deps.metrics.bridge;
  const abort = new AbortController();

  let producer: ProducerPort | null = null;
  let producerUp = false;
  let session: Session | null = null;
  let generation = 0;
  let buffer: Pending[] = [];
  /** The batch being written to Kafka. */
  let inFlight: Pending[] = [];
  let stopping = false;
  let kafkaFailures = 0;
  let wake: (() => void) | null = null;
  let pumpDone: Promise<void> | null = null;
  let amqp: AmqpConnection | null = null;
  const declare = queueDeclarer({ maxLength: cfg.SIGNALS_QUEUE_MAX_LENGTH, maxBytes: cfg.SIGNALS_QUEUE_MAX_BYTES }, log);

  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };

  /** What the bridge holds: at most SIGNAL_BRIDGE_PREFETCH records of at most SIGNAL_BRIDGE_MAX_RECORD_BYTES. */
  const held = () => {
    let n = 0;
    for (const p of buffer) n += p.bytes;
    for (const p of inFlight) n += p.bytes;
    mb.buffered.set({ bridge: name }, n);
  };

  const onDelivery = (gen: number) => (msg: ConsumeMessage | null) => {
    if (msg === null) {
      // The broker cancelled the consumer (queue deleted, node down): drop the channel and resume.
      log.warn('consumer cancelled by RabbitMQ; reopening');
      const s = session;
      if (s && s.gen === gen) void s.ch.close().catch(() => {});
      return;
    }
    if (session?.gen !== gen) return; // a late delivery of a dead channel: it will be redelivered
    mb.in.inc({ bridge: name, source: queue });
    // The record is a copy of at most SIGNAL_BRIDGE_MAX_RECORD_BYTES; the delivery's own body is
    // released here, not at its ack: a prefetch of 10 MB messages would otherwise stay in memory.
    const out = toRecord(msg, clock.now(), cfg.SIGNAL_BRIDGE_MAX_RECORD_BYTES);
    buffer.push({ msg: { ...msg, content: NO_BODY }, gen, out, bytes: recordBytes(out) });
    held();
    notify();
  };

  const openChannel = async (conn: ChannelModel): Promise<void> => {
    await declare(conn, queue);
    const ch = await conn.createChannel();
    const gen = ++generation;
    const s: Session = { ch, conn, gen, consumerTag: null, closing: false };
    ch.on('error', (err: Error) => log.warn({ err: err.message }, 'RabbitMQ channel error'));
    ch.on('close', () => {
      buffer = buffer.filter((p) => p.gen !== gen); // unacked: RabbitMQ requeues them
      held();
      if (session === s) session = null;
      notify();
      if (!s.closing && !stopping) void reopenLater(conn);
    });
    await ch.prefetch(cfg.SIGNAL_BRIDGE_PREFETCH);
    session = s;
    const { consumerTag } = await ch.consume(queue, onDelivery(gen), { noAck: false });
    s.consumerTag = consumerTag;
    log.info({ prefetch: cfg.SIGNAL_BRIDGE_PREFETCH, gen }, 'consuming');
  };

  /** The channel died while the connection lives (or Kafka failed): open a new one after a backoff. */
  const reopenLater = async (conn: ChannelModel, attempt = 0): Promise<void> => {
    try {
      await sleep(backoffMs(attempt, 100, cfg.SIGNAL_BRIDGE_RETRY_MAX_MS), undefined, { signal: abort.signal });
    } catch {
      return;
    }
    if (stopping || session !== null || amqp?.current() !== conn) return; // the reconnect path owns it
    try {
      await openChannel(conn);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'reopening the channel failed');
      if (amqp?.current() === conn) void reopenLater(conn, attempt + 1);
    }
  };

  const takeBatch = (): Pending[] => {
    const gen = buffer[0]!.gen;
    let bytes = 0;
    let n = 0;
    while (n < buffer.length && buffer[n]!.gen === gen && (n === 0 || bytes + buffer[n]!.bytes <= cfg.SIGNAL_BRIDGE_BATCH_MAX_BYTES)) {
      bytes += buffer[n]!.bytes;
      n++;
    }
    return buffer.splice(0, n);
  };

  const pump = async (): Promise<void> => {
    while (!stopping) {
      if (buffer.length === 0) {
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      const batch = takeBatch();
      const gen = batch[0]!.gen;
      const s = session;
      if (!s || s.gen !== gen) {
        held();
        continue; // channel gone: these will be redelivered
      }
      inFlight = batch;
      try {
        await producer!.send(topic, batch.map((p) => p.out));
      } catch (err) {
        inFlight = [];
        kafkaFailures++;
        log.warn({ err: (err as Error).message, failures: kafkaFailures, messages: batch.length + buffer.length }, 'Kafka send failed; requeueing and backing off');
        await requeueAll(s, batch);
        try {
          await sleep(backoffMs(kafkaFailures - 1, 200, cfg.SIGNAL_BRIDGE_RETRY_MAX_MS), undefined, { signal: abort.signal });
        } catch {
          return; // stopping
        }
        if (!stopping && session === null && amqp?.current() === s.conn) {
          await openChannel(s.conn).catch((e: Error) => {
            log.warn({ err: e.message }, 'reopening the channel failed');
            void reopenLater(s.conn, 1);
          });
        }
        continue;
      }
      kafkaFailures = 0;
      inFlight = [];
      held();
      mb.out.inc({ bridge: name, destination: topic }, batch.length);
      if (session === s && s.gen === gen) {
        try {
          s.ch.ack(batch[batch.length - 1]!.msg, true);
        } catch (err) {
          log.warn({ err: (err as Error).message }, 'ack failed after Kafka had the batch; RabbitMQ will redeliver it');
        }
      } else {
        log.warn({ messages: batch.length }, 'channel lost while Kafka was writing the batch; RabbitMQ will redeliver it (validation drops the repeats)');
      }
    }
  };

  /** Nack every outstanding delivery of the session with requeue and close its channel. */
  const requeueAll = async (s: Session, batch: Pending[]): Promise<void> => {
    const mine = buffer.filter((p) => p.gen === s.gen);
    const last = (mine.length > 0 ? mine[mine.length - 1]! : batch[batch.length - 1]!).msg;
    buffer = buffer.filter((p) => p.gen !== s.gen);
    held();
    s.closing = true;
    if (session === s) session = null;
    try {
      s.ch.nack(last, true, true);
    } catch {
      // channel already gone: RabbitMQ requeues unacked deliveries anyway
    }
    await s.ch.close().catch(() => {});
  };

  return {
    start: async () => {
      producer = deps.kafka.producer();
      // No deadline: a bridge waits for Kafka as long as it runs; stop() aborts the wait.
      await connectWithBackoff(() => producer!.connect(), log, cfg.SIGNAL_BRIDGE_RETRY_MAX_MS, { deadlineMs: Infinity, signal: abort.signal });
      producerUp = true;
      pumpDone = pump();
      amqp = createAmqpConnection({
        url: cfg.AMQP_URL,
        name,
        logger: log,
        metrics: deps.metrics,
        retryMaxMs: cfg.SIGNAL_BRIDGE_RETRY_MAX_MS,
        connect: deps.amqpConnect,
        onConnect: openChannel,
        onDisconnect: () => {
          session = null;
          buffer = [];
          held();
          notify();
        },
      });
      await amqp.start();
    },
    stop: async () => {
      stopping = true;
      const s = session;
      // No new deliveries; the batch in flight finishes (send, then ack) before the pump returns.
      if (s?.consumerTag) await s.ch.cancel(s.consumerTag).catch(() => {});
      notify();
      await pumpDone;
      abort.abort();
      if (s) s.closing = true;
      await amqp?.stop(); // closing the connection requeues whatever was buffered but not sent
      if (producerUp) await producer?.disconnect().catch(() => {});
      producerUp = false;
      log.info('signal bridge stopped');
    },
    ready: () => producerUp && session !== null && !stopping,
  };
}
