// The skeleton of a Kafka → RabbitMQ bridge, shared by the events-out bridge and the model service's
// signal-out bridge. A bridge is its mapping (record → AMQP message) plus its settings; the rest is
// here:
//
// - A consumer group (read_committed, a new group starts at the earliest offset), offsets committed
//   by hand only.
// - A confirm channel on a connection that stays up (connectors/amqp.ts: reconnect with backoff); a
//   channel closed while the connection lives is opened again after a backoff. The queue is declared
//   durable (with the bridge's length limits when it gives them: queueDeclarer).
// - Each Kafka batch in chunks of at most `batchMax` records: decoded, published, then
//   waitForConfirms; only after RabbitMQ confirmed every message of the chunk is the offset after it
//   committed (house style 4). A crash or a lost connection between publish and commit publishes the
//   chunk again: at-least-once, consumers drop repeats by messageId.
// - RabbitMQ down, the channel closed or a publish nacked (a full queue refuses it): the chunk waits
//   for a channel and is published again, with backoff; nothing is committed meanwhile, so nothing
//   is skipped. A registry that cannot be reached is retried the same way.
// - A record that can never be decoded (a bug upstream) goes to the bridge's dead-letter topic
//   (DeadLetter, reason undecodable, original bytes), is counted and logged, and is committed past,
//   so it cannot block the partition: bad input is never lost.
// - stop(): the consumer leaves the group (a chunk being confirmed finishes and is committed; one not
//   yet published is not, and the next member publishes it), then the connection and the producer close.
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConfirmChannel, Options } from 'amqplib';
import type { ConsumerPort, InMessage, KafkaPort, ProducerPort } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { Codec } from '../runtime/codec.ts';
import type { DeadLetter } from '../schemas/types.ts';
import { systemClock, type Clock } from '../runtime/clock.ts';
import { RejectedError } from '../runtime/errors.ts';
import { backoffMs, connectWithBackoff } from '../runtime/retry.ts';
import { createAmqpConnection, queueDeclarer, type AmqpConnect, type AmqpConnection, type ChannelModel, type QueueLimits } from './amqp.ts';

/** One AMQP message of a record. */
export interface OutboundMessage {
  content: Buffer;
  options: Options.Publish;
}

export interface OutboundBridgeOptions<R> {
  /** The bridge's name: logs, metrics (`bridge` label), dead letters' `stage`, the RabbitMQ connection name. */
  name: string;
  /** Its name in prose, for the first and last log lines ("events-out bridge started"). */
  title: string;
  /** What a record is, in the dead-letter log line ("order event"). */
  what: string;
  kafka: KafkaPort;
  codec: Codec;
  logger: Logger;
  metrics: Metrics;
  clock?: Clock;
  /** Physical topic consumed, its dead-letter topic, and the consumer group. */
  topic: string;
  dlqTopic: string;
  groupId: string;
  amqpUrl: string;
  amqpConnect?: AmqpConnect;
  queue: string;
  /** The queue's length limits, when the bridge declares it as its consumer does (queueDeclarer); else a plain durable declaration. */
  queueLimits?: QueueLimits;
  /** Most records published before waiting for the confirms and committing. */
  batchMax: number;
  /** Longest backoff between RabbitMQ reconnects, republishes and decode retries, ms. */
  retryMaxMs: number;
  /** The record (decoded value of `m`) as the message published to the queue. */
  toMessage: (record: R, m: InMessage) => OutboundMessage;
  /** A consumer kafkajs will not restart: the process must stop (its supervisor restarts it). */
  onFatal: (err: Error) => void;
}

export interface OutboundBridge {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Joined the consumer group with a RabbitMQ confirm channel open. */
  ready(): boolean;
}

class ChannelLost extends Error {}

export function createOutboundBridge<R>(o: OutboundBridgeOptions<R>): OutboundBridge {
  const { name, topic, queue, groupId } = o;
  const clock = o.clock ?? systemClock;
  const log = o.logger.child({ connector: name, topic, queue, groupId });
  const mb = o.metrics.bridge;
  const abort = new AbortController();
  const declare = o.queueLimits ? queueDeclarer(o.queueLimits, log) : null;

  let consumer: ConsumerPort | null = null;
  let producer: ProducerPort | null = null;
  let amqp: AmqpConnection | null = null;
  let channel: ConfirmChannel | null = null;
  let channelUp: (() => void) | null = null;
  let joined = false;
  let stopping = false;
  let stopped: Promise<void> | null = null;
  let failures = 0;

  const openChannel = async (conn: ChannelModel): Promise<void> => {
    // Declared as the consumer of the queue declares it: a bare declaration of a queue created with
    // length limits fails (PRECONDITION_FAILED).
    if (declare) await declare(conn, queue);
    const ch = await conn.createConfirmChannel();
    ch.on('error', (err: Error) => log.warn({ err: err.message }, 'RabbitMQ channel error'));
    ch.on('close', () => {
      if (channel === ch) channel = null;
      // A channel closed while the connection lives (e.g. a refused publish): open another.
      if (!stopping && amqp?.current() === conn) {
        void (async () => {
          for (let attempt = 0; !stopping && channel === null && amqp?.current() === conn; attempt++) {
            try {
              await sleep(backoffMs(attempt, 100, o.retryMaxMs), undefined, { signal: abort.signal });
              await openChannel(conn);
            } catch (err) {
              if (abort.signal.aborted) return;
              log.warn({ err: (err as Error).message }, 'reopening the confirm channel failed');
            }
          }
        })();
      }
    });
    if (!declare) await ch.assertQueue(queue, { durable: true });
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
  const publishChunk = async (ch: ConfirmChannel, items: OutboundMessage[]): Promise<void> => {
    let onClose: () => void = () => {};
    const closed = new Promise<never>((_, reject) => {
      onClose = () => reject(new ChannelLost('channel closed before the confirms'));
      ch.once('close', onClose);
    });
    closed.catch(() => {});
    try {
      for (const { content, options } of items) {
        if (!ch.sendToQueue(queue, content, options)) await Promise.race([new Promise<void>((resolve) => ch.once('drain', () => resolve())), closed]);
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
    await producer!.send(o.dlqTopic, [{ key: null, value: await o.codec.encode(o.dlqTopic, value), headers: { 'dlq.reason': 'undecodable' } }]);
    mb.rejected.inc({ bridge: name, reason: 'undecodable' });
    log.error({ partition: m.partition, offset: m.offset, err: err.message, dlq: o.dlqTopic }, `undecodable ${o.what} dead-lettered`);
  };

  /** Decode, publish with confirms, then commit; retried until it succeeds or the bridge stops. */
  const handleChunk = async (msgs: InMessage[]): Promise<boolean> => {
    const items: OutboundMessage[] = [];
    for (const m of msgs) {
      mb.in.inc({ bridge: name, source: m.topic });
      for (let attempt = 0; ; attempt++) {
        try {
          if (m.value === null) throw new RejectedError('undecodable', 'no value (a tombstone)');
          items.push(o.toMessage((await o.codec.decode(m.topic, m.value)) as R, m));
          break;
        } catch (err) {
          if (err instanceof RejectedError) {
            await deadLetter(m, err);
            break;
          }
          // registry unreachable: wait and retry (skipping would lose a valid record)
          if (stopping) return false;
          log.warn({ err: (err as Error).message, attempt: attempt + 1 }, 'decoding failed; retrying');
          await sleep(backoffMs(attempt, 200, o.retryMaxMs), undefined, { signal: abort.signal }).catch(() => {});
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
        log.warn({ err: (err as Error).message, messages: items.length, failures }, 'publish not confirmed; publishing the chunk again after the channel is back');
        if (channel === ch) await ch.close().catch(() => {});
        await sleep(backoffMs(failures - 1, 100, o.retryMaxMs), undefined, { signal: abort.signal }).catch(() => {});
      }
    }
    mb.out.inc({ bridge: name, destination: queue }, items.length);
    const last = msgs[msgs.length - 1]!;
    // Only after RabbitMQ confirmed every message of the chunk.
    await consumer!.commitOffsets([{ topic: last.topic, partition: last.partition, offset: String(BigInt(last.offset) + 1n) }]);
    return true;
  };

  const stop = async (): Promise<void> => {
    stopping = true;
    abort.abort();
    await consumer?.disconnect().catch(() => {});
    joined = false;
    await amqp?.stop();
    await producer?.disconnect().catch(() => {});
    log.info(`${o.title} stopped`);
  };

  return {
    start: async () => {
      producer = o.kafka.producer();
      await connectWithBackoff(() => producer!.connect(), log, o.retryMaxMs, { signal: abort.signal });
      amqp = createAmqpConnection({
        url: o.amqpUrl,
        name,
        logger: log,
        metrics: o.metrics,
        retryMaxMs: o.retryMaxMs,
        connect: o.amqpConnect,
        onConnect: openChannel,
        onDisconnect: () => {
          channel = null;
        },
      });
      await amqp.start();
      // kafkajs gave up on the consumer (e.g. a non-retriable group error after a broker restart):
      // without onFatal the process stayed up with a dead consumer and published nothing more (seen
      // in the chaos run). Stop like the stage runner does, so the supervisor restarts us.
      consumer = o.kafka.consumer({ groupId, readCommitted: true, onFatal: (err) => !stopping && o.onFatal(err) });
      consumer.onGroupJoin(() => {
        joined = true;
      });
      consumer.onCrash((err, restart) => {
        joined = false;
        log.warn({ err: err.message, restart }, 'Kafka consumer crashed');
      });
      await connectWithBackoff(() => consumer!.connect(), log, o.retryMaxMs, { signal: abort.signal });
      await consumer.subscribe([topic], true);
      await consumer.run(async (batch, ctl) => {
        for (let i = 0; i < batch.messages.length; i += o.batchMax) {
          if (stopping || !ctl.isRunning() || ctl.isStale()) return;
          const chunk = batch.messages.slice(i, i + o.batchMax);
          if (!(await handleChunk(chunk))) return;
          ctl.resolveOffset(chunk[chunk.length - 1]!.offset);
          await ctl.heartbeat();
        }
      });
      log.info(`${o.title} started`);
    },
    stop: () => (stopped ??= stop()),
    ready: () => joined && channel !== null && !stopping,
  };
}
