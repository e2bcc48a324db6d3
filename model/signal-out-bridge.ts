// Signal-out bridge: Kafka model.signals (Avro ModelSignal) → RabbitMQ `model-service.trading_signals`
// as the order-manager seed's JSON, closing the loop.
//
// - Durable queue, persistent messages (deliveryMode 2), contentType application/json, messageId =
//   signal_id, headers trace_id / signal_id / kafka source; a confirm channel: a batch is published,
//   then `waitForConfirms`; only then are its offsets committed (house style 4). A crash between
//   publish and commit republishes the batch: the order manager drops the duplicates by signal_id.
// - RabbitMQ down or a publish nacked (the queue is full: it refuses new messages, see the signal
//   bridge's SIGNALS_QUEUE_MAX_*): the batch is retried with backoff (the partition waits; the
//   consumer keeps its heartbeats), never skipped. A record that cannot be decoded is logged,
//   counted and skipped (it can never become a valid signal).
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConfirmChannel } from 'amqplib';
import type { KafkaPort, InMessage } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { Codec } from '../runtime/codec.ts';
import { connectWithBackoff } from '../runtime/retry.ts';
import { RejectedError } from '../runtime/errors.ts';
import { backoffMs } from '../runtime/retry.ts';
import { topicName } from '../runtime/topics.ts';
import { createAmqpConnection, queueDeclarer, type AmqpConnect, type ChannelModel, type QueueLimits } from '../connectors/amqp.ts';
import type { ModelSignal } from '../schemas/types.ts';
import { toSignalJson } from './signals.ts';

export const name = 'model-signal-out-bridge';

export interface SignalOutBridgeDeps {
  kafka: KafkaPort;
  codec: Codec;
  logger: Logger;
  metrics: Metrics;
  amqpUrl: string;
  queue: string;
  /** The signals queue's length limits, as the signal bridge declares them (SIGNALS_QUEUE_MAX_*). */
  queueLimits: QueueLimits;
  topicPrefix: string;
  groupId: string;
  batchMax: number;
  retryMaxMs: number;
  amqpConnect?: AmqpConnect;
  /** A consumer kafkajs will not restart: the process must stop (its supervisor restarts it). */
  onFatal: (err: Error) => void;
}

export interface SignalOutBridge {
  start(): Promise<void>;
  ready(): boolean;
  stop(): Promise<void>;
}

export function createSignalOutBridge(d: SignalOutBridgeDeps): SignalOutBridge {
  const log = d.logger.child({ bridge: name });
  const topic = topicName('model.signals', d.topicPrefix);
  let channel: ConfirmChannel | null = null;
  let joined = false;
  let stopping = false;
  // Declared as the consuming signal bridge declares it: a bare declaration of a queue created with
  // length limits fails (PRECONDITION_FAILED).
  const declare = queueDeclarer(d.queueLimits, log);
  const amqp = createAmqpConnection({
    url: d.amqpUrl,
    name,
    logger: d.logger,
    metrics: d.metrics,
    retryMaxMs: d.retryMaxMs,
    connect: d.amqpConnect,
    onConnect: async (conn: ChannelModel) => {
      await declare(conn, d.queue);
      const ch = await conn.createConfirmChannel();
      ch.on('close', () => {
        if (channel === ch) channel = null;
      });
      ch.on('error', (err: Error) => log.warn({ err: err.message }, 'confirm channel error'));
      channel = ch;
    },
    onDisconnect: () => {
      channel = null;
    },
  });
  // As in the events-out bridge: a consumer kafkajs gave up on publishes nothing more, so stop the
  // process (the supervisor restarts it) rather than stay up silently stalled.
  const consumer = d.kafka.consumer({ groupId: d.groupId, readCommitted: true, onFatal: (err) => !stopping && d.onFatal(err) });

  const publishAll = async (messages: InMessage[]): Promise<void> => {
    const items: Array<{ msg: InMessage; body: Buffer; signal: ModelSignal }> = [];
    for (const msg of messages) {
      if (!msg.value) continue;
      for (let attempt = 0; ; attempt++) {
        try {
          const signal = (await d.codec.decode(msg.topic, msg.value)) as ModelSignal;
          items.push({ msg, signal, body: Buffer.from(JSON.stringify(toSignalJson(signal))) });
          break;
        } catch (err) {
          // Only bytes that can never be decoded are skipped. A registry that cannot be reached
          // (RetriableError) used to land here too, and the valid signal was skipped and its offset
          // committed: lost. It is now retried with backoff, like a RabbitMQ failure.
          if (err instanceof RejectedError) {
            d.metrics.bridge.rejected.inc({ bridge: name, reason: 'undecodable' });
            log.error({ err: (err as Error).message, partition: msg.partition, offset: msg.offset }, 'model signal could not be decoded; skipped');
            break;
          }
          if (stopping) throw err;
          const delay = backoffMs(attempt, 100, d.retryMaxMs);
          log.warn({ err: (err as Error).message, attempt: attempt + 1, delayMs: delay }, 'decoding failed; retrying');
          await sleep(delay);
        }
      }
    }
    for (let attempt = 0; ; attempt++) {
      if (stopping) throw new Error('stopping');
      const ch = channel;
      try {
        if (!ch) throw new Error('RabbitMQ channel not available');
        for (const it of items) {
          ch.sendToQueue(d.queue, it.body, {
            persistent: true,
            contentType: 'application/json',
            messageId: it.signal.signal_id,
            timestamp: Math.floor(it.signal.timestamp / 1000),
            headers: { trace_id: it.signal.trace_id ?? undefined, signal_id: it.signal.signal_id, 'kafka.source': `${it.msg.topic}/${it.msg.partition}/${it.msg.offset}` },
          });
        }
        await ch.waitForConfirms();
        d.metrics.bridge.out.inc({ bridge: name, destination: d.queue }, items.length);
        return;
      } catch (err) {
        const delay = backoffMs(attempt, 100, d.retryMaxMs);
        log.warn({ err: (err as Error).message, attempt: attempt + 1, delayMs: delay }, 'publish not confirmed; retrying the batch');
        await sleep(delay);
      }
    }
  };

  return {
    start: async () => {
      await amqp.start();
      consumer.onGroupJoin(() => (joined = true));
      consumer.onCrash((err, restart) => {
        joined = false;
        log.error({ err, restart }, 'consumer crashed');
      });
      await connectWithBackoff(() => consumer.connect(), log, d.retryMaxMs);
      await consumer.subscribe([topic], true);
      await consumer.run(async (batch, ctl) => {
        for (let i = 0; i < batch.messages.length; i += d.batchMax) {
          if (stopping || !ctl.isRunning() || ctl.isStale()) return;
          const chunk = batch.messages.slice(i, i + d.batchMax);
          d.metrics.bridge.in.inc({ bridge: name, source: topic }, chunk.length);
          await publishAll(chunk);
          const last = chunk[chunk.length - 1]!;
          // Only after RabbitMQ confirmed every message of the chunk.
          await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: String(BigInt(last.offset) + 1n) }]);
          ctl.resolveOffset(last.offset);
          await ctl.heartbeat().catch(() => {});
        }
      });
      log.info({ topic, queue: d.queue }, 'signal-out bridge running');
    },
    ready: () => joined && channel !== null,
    stop: async () => {
      stopping = true;
      await consumer.disconnect().catch(() => {});
      await amqp.stop();
    },
  };
}
