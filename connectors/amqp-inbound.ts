// The skeleton of a RabbitMQ → Kafka bridge, shared by the signal bridge and the ws-gateway bridge.
// A bridge is its mapping (what to keep of a delivery, how a batch becomes Kafka records and dead
// letters) plus its settings; everything about RabbitMQ and the order of acks lives here:
//
// - The connection (connectors/amqp.ts: reconnect with backoff). At every (re)connection the queues
//   are declared with their length limits (queueDeclarer), then ONE channel is opened with the
//   prefetch and consumes every queue with manual acknowledgement. Each channel is a generation: a
//   delivery of a dead channel is never acked on a later one (delivery tags are per channel).
// - On arrival the bridge's `hold` says what to keep of the delivery (a record, or the first bytes
//   of an oversize body) and how many bytes that is; the delivery's own body is released then, so
//   what the bridge holds is bounded by the prefetch × what `hold` keeps
//   (pipeline_bridge_buffered_bytes), whatever the size of the messages on the queues.
// - One batch at a time, in delivery order (at most `batchMax` deliveries and, past the first,
//   `batchMaxBytes` of what they hold, all of one channel), is handed to the bridge's `write` with
//   `ack(upTo)`: the bridge acks, with `multiple`, up to a delivery of the batch once Kafka has
//   everything before it, and learns whether the channel is still the one the batch came on (when
//   not, RabbitMQ redelivers the rest: nothing more of the batch may be written).
// - `write` failing (Kafka, schema registry): every outstanding delivery of the channel is nacked
//   with requeue and the channel closed (RabbitMQ puts them back in their original order); after a
//   backoff a new channel consumes again. Nothing buffered is written after a failure, so nothing
//   overtakes a requeued message.
// - The channel closed by RabbitMQ (or the consumer cancelled): what it delivered is dropped (it is
//   redelivered) and a new channel opens after a backoff while the connection lives.
// - stop(): the consumers are cancelled, the batch in flight finishes (written, then acked), the
//   connection is closed (which requeues whatever was held but not written), the producer leaves.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { KafkaPort, ProducerPort } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';
import { backoffMs, connectWithBackoff } from '../runtime/retry.ts';
import { createAmqpConnection, queueDeclarer, type AmqpConnect, type AmqpConnection, type ChannelModel, type QueueLimits } from './amqp.ts';

/** What a bridge keeps of one delivery: its item, and the bytes it holds (for the bounds). */
export interface Held<T> {
  item: T;
  bytes: number;
}

/** A batch handed to the bridge's write. */
export interface InboundBatch<T> {
  /** The kept items, in delivery order, all from one channel. */
  items: T[];
  producer: ProducerPort;
  /**
   * Ack the deliveries up to items[upTo] (with `multiple`), once Kafka has them. False when the
   * channel they came on is gone meanwhile: RabbitMQ redelivers them and the rest, so the write
   * must stop there (a warning is logged here).
   */
  ack(upTo: number): boolean;
}

export interface InboundBridgeOptions<T> {
  /** The bridge's name: logs, metrics (`bridge` label), the RabbitMQ connection name. */
  name: string;
  /** Its name in prose, for the last log line ("signal bridge stopped"). */
  title: string;
  kafka: KafkaPort;
  logger: Logger;
  metrics: Metrics;
  amqpUrl: string;
  amqpConnect?: AmqpConnect;
  queues: string[];
  queueLimits: QueueLimits;
  /** AMQP prefetch of the channel (per consumer). */
  prefetch: number;
  /** Most deliveries in one batch (default: no limit but the prefetch). */
  batchMax?: number;
  /** Most bytes (as `hold` counts them) in one batch; a first delivery larger than this goes alone. */
  batchMaxBytes?: number;
  /** Longest backoff between RabbitMQ reconnects, channel reopenings and retries after a failed write. */
  retryMaxMs: number;
  /** What to keep of a delivery on arrival; the delivery's body is not kept beyond this call. */
  hold: (msg: ConsumeMessage, queue: string) => Held<T>;
  /** Write a batch to Kafka, acking as it goes (see InboundBatch); throws on Kafka / registry trouble. */
  write: (batch: InboundBatch<T>) => Promise<void>;
  /** What failed when `write` throws, in the log line ("Kafka send"). */
  failureWhat: string;
  /** Said after "RabbitMQ will redeliver it" when a batch was written but its channel is gone. */
  repeatsNote?: string;
}

export interface InboundBridge {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Consuming every queue with a connected Kafka producer. */
  ready(): boolean;
}

interface Pending<T> {
  /** The delivery without its body (ack/nack need its tag only). */
  msg: ConsumeMessage;
  gen: number;
  item: T;
  bytes: number;
}

interface Session {
  ch: Channel;
  conn: ChannelModel;
  gen: number;
  consumerTags: string[];
  /** Closed on purpose (failed write, stop): the close handler leaves it to its closer. */
  closing: boolean;
}

const NO_BODY = Buffer.alloc(0);

export function createInboundBridge<T>(o: InboundBridgeOptions<T>): InboundBridge {
  const { name, queues } = o;
  const log = o.logger;
  const mb = o.metrics.bridge;
  const abort = new AbortController();
  const batchMax = o.batchMax ?? Infinity;
  const batchMaxBytes = o.batchMaxBytes ?? Infinity;

  let producer: ProducerPort | null = null;
  let producerUp = false;
  let session: Session | null = null;
  let generation = 0;
  let buffer: Array<Pending<T>> = [];
  /** The batch being written to Kafka. */
  let inFlight: Array<Pending<T>> = [];
  let stopping = false;
  let stopped: Promise<void> | null = null;
  let failures = 0;
  let wake: (() => void) | null = null;
  let pumpDone: Promise<void> | null = null;
  let amqp: AmqpConnection | null = null;
  const declare = queueDeclarer(o.queueLimits, log);

  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };

  /** What the bridge holds: at most the prefetch of what `hold` keeps. */
  const held = () => {
    let n = 0;
    for (const p of buffer) n += p.bytes;
    for (const p of inFlight) n += p.bytes;
    mb.buffered.set({ bridge: name }, n);
  };

  const onDelivery = (gen: number, queue: string) => (msg: ConsumeMessage | null) => {
    if (msg === null) {
      // The broker cancelled the consumer (queue deleted, node down): drop the channel and resume.
      log.warn({ queue }, 'consumer cancelled by RabbitMQ; reopening');
      const s = session;
      if (s && s.gen === gen) void s.ch.close().catch(() => {});
      return;
    }
    if (session?.gen !== gen) return; // a late delivery of a dead channel: it will be redelivered
    mb.in.inc({ bridge: name, source: queue });
    // What the bridge keeps is the bridge's; the delivery's own body is released here, not at its
    // ack: a prefetch of 10 MB messages would otherwise stay in memory.
    const { item, bytes } = o.hold(msg, queue);
    buffer.push({ msg: { ...msg, content: NO_BODY }, gen, item, bytes });
    held();
    notify();
  };

  const openChannel = async (conn: ChannelModel): Promise<void> => {
    for (const q of queues) await declare(conn, q);
    const ch = await conn.createChannel();
    const gen = ++generation;
    const s: Session = { ch, conn, gen, consumerTags: [], closing: false };
    ch.on('error', (err: Error) => log.warn({ err: err.message }, 'RabbitMQ channel error'));
    ch.on('close', () => {
      buffer = buffer.filter((p) => p.gen !== gen); // unacked: RabbitMQ requeues them
      held();
      if (session === s) session = null;
      notify();
      if (!s.closing && !stopping) void reopenLater(conn);
    });
    await ch.prefetch(o.prefetch);
    session = s;
    for (const q of queues) {
      const { consumerTag } = await ch.consume(q, onDelivery(gen, q), { noAck: false });
      s.consumerTags.push(consumerTag);
    }
    log.info({ prefetch: o.prefetch, gen }, 'consuming');
  };

  /** The channel died while the connection lives (or a write failed): open a new one after a backoff. */
  const reopenLater = async (conn: ChannelModel, attempt = 0): Promise<void> => {
    try {
      await sleep(backoffMs(attempt, 100, o.retryMaxMs), undefined, { signal: abort.signal });
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

  /** The next batch: consecutive deliveries of one channel, within the count and byte limits. */
  const takeBatch = (): Array<Pending<T>> => {
    const gen = buffer[0]!.gen;
    let bytes = 0;
    let n = 0;
    while (n < buffer.length && n < batchMax && buffer[n]!.gen === gen && (n === 0 || bytes + buffer[n]!.bytes <= batchMaxBytes)) {
      bytes += buffer[n]!.bytes;
      n++;
    }
    return buffer.splice(0, n);
  };

  /** Nack every outstanding delivery of the session with requeue and close its channel. */
  const requeueAll = async (s: Session, batch: Array<Pending<T>>): Promise<void> => {
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

  const pump = async (): Promise<void> => {
    while (!stopping) {
      if (buffer.length === 0) {
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      const batch = takeBatch();
      const s = session;
      if (!s || s.gen !== batch[0]!.gen) {
        held();
        continue; // channel gone: RabbitMQ redelivers these
      }
      inFlight = batch;
      const ack = (upTo: number): boolean => {
        failures = 0; // Kafka has what is acked
        if (session !== s) {
          log.warn({ messages: upTo + 1 }, `channel lost while Kafka was writing the batch; RabbitMQ will redeliver it${o.repeatsNote ? ` ${o.repeatsNote}` : ''}`);
          return false;
        }
        try {
          s.ch.ack(batch[upTo]!.msg, true);
        } catch (err) {
          log.warn({ err: (err as Error).message }, 'ack failed after Kafka had the batch; RabbitMQ will redeliver it');
        }
        return true;
      };
      try {
        await o.write({ items: batch.map((p) => p.item), producer: producer!, ack });
      } catch (err) {
        inFlight = [];
        failures++;
        log.warn({ err: (err as Error).message, failures, messages: batch.length + buffer.length }, `${o.failureWhat} failed; requeueing and backing off`);
        await requeueAll(s, batch);
        try {
          await sleep(backoffMs(failures - 1, 200, o.retryMaxMs), undefined, { signal: abort.signal });
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
      inFlight = [];
      held();
    }
  };

  const stop = async (): Promise<void> => {
    stopping = true;
    const s = session;
    // No new deliveries; the batch in flight finishes (written, then acked) before the pump returns.
    if (s) for (const tag of s.consumerTags) await s.ch.cancel(tag).catch(() => {});
    notify();
    await pumpDone;
    abort.abort();
    // Close the channel before the connection: its close follows the last ack on the channel's own
    // stream, and RabbitMQ answers it only once it has processed that ack. amqplib interleaves
    // channels' frames, so a connection close sent right after an ack can overtake it: the batch
    // just written would be requeued, and written again by the next instance.
    for (const c of new Set([s, session])) {
      if (!c) continue;
      c.closing = true;
      await c.ch.close().catch(() => {});
    }
    await amqp?.stop(); // closing the connection requeues whatever was held but not written
    buffer = [];
    held();
    if (producerUp) await producer?.disconnect().catch(() => {});
    producerUp = false;
    log.info(`${o.title} stopped`);
  };

  return {
    start: async () => {
      producer = o.kafka.producer();
      // No deadline: a bridge waits for Kafka as long as it runs; stop() aborts the wait.
      await connectWithBackoff(() => producer!.connect(), log, o.retryMaxMs, { deadlineMs: Infinity, signal: abort.signal });
      producerUp = true;
      pumpDone = pump();
      amqp = createAmqpConnection({
        url: o.amqpUrl,
        name,
        logger: log,
        metrics: o.metrics,
        retryMaxMs: o.retryMaxMs,
        connect: o.amqpConnect,
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
    stop: () => (stopped ??= stop()),
    ready: () => producerUp && session !== null && !stopping,
  };
}
