// Signal-out bridge: Kafka model.signals (Avro ModelSignal) → RabbitMQ `model-service.trading_signals`
// as the order-manager seed's JSON, closing the loop. The model service runs it (model/service.ts);
// it lives here, with the other bridges, and is its mapping (ModelSignal → AMQP message) and
// settings; consuming, publishing with confirms, committing, retries and dead letters are the
// outbound skeleton's (connectors/amqp-outbound.ts).
//
// - Durable queue, persistent messages (deliveryMode 2), contentType application/json, messageId =
//   signal_id, headers trace_id / signal_id / kafka source; a confirm channel: a batch is published,
//   then `waitForConfirms`; only then are its offsets committed (house style 4). A crash between
//   publish and commit republishes the batch: the order manager drops the duplicates by signal_id.
// - The queue is declared with the signal bridge's length limits (SIGNALS_QUEUE_MAX_*, passed in as
//   queueLimits): a bare declaration of a queue created with limits fails (PRECONDITION_FAILED).
// - RabbitMQ down or a publish nacked (the queue is full: it refuses new messages, see the signal
//   bridge's SIGNALS_QUEUE_MAX_*): the batch is retried with backoff (the partition waits; the
//   consumer keeps its heartbeats), never skipped.
// - A record that cannot be decoded (it can never become a valid signal) goes to signals.dlq
//   (DeadLetter, reason undecodable, stage model-signal-out-bridge, original bytes), is logged and
//   counted, and is committed past: the dead-letter topic of signals, where an operator looks for a
//   signal that never reached the order manager.
import type { KafkaPort, InMessage } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { Codec } from '../runtime/codec.ts';
import type { Clock } from '../runtime/clock.ts';
import { topicName } from '../runtime/topics.ts';
import type { ModelSignal } from '../schemas/types.ts';
import type { AmqpConnect, QueueLimits } from './amqp.ts';
import { createOutboundBridge, type OutboundBridge, type OutboundMessage } from './amqp-outbound.ts';

export const name = 'model-signal-out-bridge';

export interface SignalOutBridgeDeps {
  kafka: KafkaPort;
  codec: Codec;
  logger: Logger;
  metrics: Metrics;
  clock?: Clock;
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

/** start / stop / ready (joined the consumer group with a confirm channel open): connectors/amqp-outbound.ts. */
export type SignalOutBridge = OutboundBridge;

/** The order-manager seed's signal JSON for a ModelSignal (what goes to RabbitMQ). */
export function toSignalJson(s: ModelSignal): Record<string, unknown> {
  let extra: Record<string, unknown> = {};
  if (s.metadata?.extra) {
    try {
      const v = JSON.parse(s.metadata.extra) as unknown;
      if (v && typeof v === 'object' && !Array.isArray(v)) extra = v as Record<string, unknown>;
    } catch {
      extra = {};
    }
  }
  return {
    signal_id: s.signal_id,
    signal_type: s.signal_type,
    asset: s.asset,
    amount: s.amount,
    confidence: s.confidence,
    timestamp: new Date(s.timestamp).toISOString(),
    strategy_id: s.strategy_id,
    model_version: s.model_version,
    is_warmup: s.is_warmup,
    market_data_snapshot: s.market_data_snapshot,
    metadata: s.metadata ? { ...extra, reasoning: s.metadata.reasoning, risk_score: s.metadata.risk_score, randomness_level: s.metadata.randomness_level, mode: s.metadata.mode } : null,
    trace_id: s.trace_id,
  };
}

/** A model signal as the AMQP message published to the signals queue (body and properties). */
export function toMessage(s: ModelSignal, m: Pick<InMessage, 'topic' | 'partition' | 'offset'>): OutboundMessage {
  return {
    content: Buffer.from(JSON.stringify(toSignalJson(s))),
    options: {
      persistent: true,
      contentType: 'application/json',
      messageId: s.signal_id,
      timestamp: Math.floor(s.timestamp / 1000),
      headers: { trace_id: s.trace_id ?? undefined, signal_id: s.signal_id, 'kafka.source': `${m.topic}/${m.partition}/${m.offset}` },
    },
  };
}

export function createSignalOutBridge(d: SignalOutBridgeDeps): SignalOutBridge {
  return createOutboundBridge<ModelSignal>({
    name,
    title: 'signal-out bridge',
    what: 'model signal',
    kafka: d.kafka,
    codec: d.codec,
    logger: d.logger,
    metrics: d.metrics,
    clock: d.clock,
    topic: topicName('model.signals', d.topicPrefix),
    dlqTopic: topicName('signals.dlq', d.topicPrefix),
    groupId: d.groupId,
    amqpUrl: d.amqpUrl,
    amqpConnect: d.amqpConnect,
    queue: d.queue,
    queueLimits: d.queueLimits,
    batchMax: d.batchMax,
    retryMaxMs: d.retryMaxMs,
    toMessage,
    onFatal: d.onFatal,
  });
}
