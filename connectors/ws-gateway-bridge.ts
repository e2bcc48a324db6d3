// ws-gateway bridge: RabbitMQ queues where the ws-gateway service relays Bybit's v5 streams →
// exchange.orders / exchange.executions / exchange.positions / exchange.wallet / market.tickers
// (Avro, parsed by connectors/bybit-stream-format.ts), and anything unusable → exchange.dlq.
// This file is the bridge's mapping (delivery → records / dead letters) and settings; consuming,
// batching, acks, requeue and reconnect are the inbound skeleton's (connectors/amqp-inbound.ts).
//
// - Queues are configuration (defaults ws-gateway.order, .execution, .position, .wallet, .ticker),
//   declared durable with a length limit (WS_GATEWAY_QUEUE_MAX_LENGTH / _MAX_BYTES, x-overflow
//   reject-publish; connectors/amqp.ts queueDeclarer) and consumed with manual acknowledgement on ONE
//   channel with a bounded prefetch (per consumer). The message's own `topic` decides the
//   destination, not the queue it came on. A body over WS_GATEWAY_MAX_MESSAGE_BYTES is cut to its
//   dead-letter bytes on arrival, so what the bridge holds stays bounded by prefetch × that.
// - Each delivery becomes its records (one per item; one per coin for wallets) keyed by symbol /
//   coin, with headers amqp.message_id, amqp.queue, amqp.redelivered, received_at, trace_id (when the
//   message, its envelope or the AMQP properties carry one), bybit.topic, bybit.message_id.
// - Acknowledge only after Kafka has it (house style 4): deliveries are handled in delivery order, in
//   batches of at most WS_GATEWAY_BATCH_MAX, one batch at a time; consecutive deliveries whose
//   records (and dead letters) fit WS_GATEWAY_BATCH_MAX_BYTES are sent together (idempotent producer,
//   acks=all), and only when the send resolved is their last delivery acked with `multiple`
//   (delivery tags are per channel, and everything before is already acked, so this acks exactly
//   them). One delivery with more records than that is written in several sends, one after the
//   other, before its ack: no request reaches the broker's message.max.bytes (1 MiB). Per-symbol
//   order on each topic is the queue's order.
// - Refused messages go to exchange.dlq as DeadLetter (original bytes, reason malformed_json,
//   not_a_message, unknown_topic, empty_data, invalid_item or oversize) and are acked with their
//   batch: never lost, never blocking the queue. A message with some bad items dead-letters the
//   whole original (reason invalid_item, detail per item) while its good items still flow.
// - Kafka or schema-registry failure: every outstanding delivery is nacked with requeue and the
//   channel closed; after a backoff consuming resumes (RabbitMQ redelivers in order). Records of a
//   batch partly written before the failure are written again: at-least-once, and the consumers are
//   idempotent (executions by execId, orders/positions/wallet are snapshots ordered by exchange time).
// - RabbitMQ connection loss: connectors/amqp.ts reconnects with backoff; unacked deliveries come
//   back redelivered (the same at-least-once rule).
import { z } from 'zod';
import { int, opt } from '../runtime/setting-types.ts';
import type { ConsumeMessage } from 'amqplib';
import type { Headers, KafkaPort, OutMessage } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { Codec } from '../runtime/codec.ts';
import { systemClock, type Clock } from '../runtime/clock.ts';
import { chunkByBytes, recordBytes } from '../runtime/coalesce.ts';
import { RejectedError } from '../runtime/errors.ts';
import { topicName, type TopicName } from '../runtime/topics.ts';
import type { AmqpConnect } from './amqp.ts';
import { createInboundBridge, type InboundBatch, type InboundBridge } from './amqp-inbound.ts';
import { describeProblems, parseStreamMessage, streamDeadLetter, TickerBook, unwrapBytes, type StreamRejectReason } from './bybit-stream-format.ts';

export const name = 'ws-gateway-bridge';

/** Headers written on every record the bridge produces. */
export const WS_BRIDGE_HEADERS = {
  messageId: 'amqp.message_id',
  queue: 'amqp.queue',
  redelivered: 'amqp.redelivered',
  receivedAt: 'received_at',
  traceId: 'trace_id',
  bybitTopic: 'bybit.topic',
  bybitMessageId: 'bybit.message_id',
} as const;

const queueName = z.string().min(1).max(255);

/** The bridge's settings (AMQP_URL and TOPIC_PREFIX as in runtime/config.ts; the rest are new). */
export const configSchema = z.object({
  AMQP_URL: opt(z.string().default('amqp://guest:guest@127.0.0.1:5672')).describe('RabbitMQ connection string.'),
  TOPIC_PREFIX: opt(z.string().regex(/^[a-zA-Z0-9._-]*$/).default('')).describe('Prefix for every topic.'),
  EXCHANGE_STREAM_SOURCE: opt(z.enum(['ws-gateway', 'direct']).default('ws-gateway')).describe('Where the order manager reads Bybit\'s streams: the ws-gateway service\'s RabbitMQ queues, or its own websocket connection (bybit-api).'),
  WS_GATEWAY_ORDER_QUEUE: opt(queueName.default('ws-gateway.order')).describe('RabbitMQ queue of Bybit order stream messages relayed by ws-gateway (asserted durable).'),
  WS_GATEWAY_EXECUTION_QUEUE: opt(queueName.default('ws-gateway.execution')).describe('RabbitMQ queue of Bybit execution stream messages relayed by ws-gateway.'),
  WS_GATEWAY_POSITION_QUEUE: opt(queueName.default('ws-gateway.position')).describe('RabbitMQ queue of Bybit position stream messages relayed by ws-gateway.'),
  WS_GATEWAY_WALLET_QUEUE: opt(queueName.default('ws-gateway.wallet')).describe('RabbitMQ queue of Bybit wallet stream messages relayed by ws-gateway.'),
  WS_GATEWAY_TICKER_QUEUE: opt(queueName.default('ws-gateway.ticker')).describe('RabbitMQ queue of Bybit public ticker messages relayed by ws-gateway.'),
  WS_GATEWAY_TICKER_CATEGORY: opt(z.enum(['spot', 'linear', 'inverse', 'option']).default('linear')).describe('Category of ticker messages that name none (Bybit\'s ticker topic has no category; an envelope `category` wins).'),
  WS_GATEWAY_PREFETCH: opt(int.min(1).max(10000).default(128)).describe('Most unacknowledged messages per ws-gateway queue the bridge holds (AMQP prefetch per consumer).'),
  WS_GATEWAY_BATCH_MAX: opt(int.min(1).max(10000).default(256)).describe('Most RabbitMQ messages the ws-gateway bridge writes to Kafka in one batch.'),
  WS_GATEWAY_MAX_MESSAGE_BYTES: opt(int.min(1024).max(900000).default(262144)).describe('Larger ws-gateway messages are dead-lettered (oversize) with their first bytes.'),
  WS_GATEWAY_BATCH_MAX_BYTES: opt(int.min(1024).max(1000000).default(524288)).describe('Largest Kafka send of the ws-gateway bridge, bytes (records, keys, headers): a batch with more is written in several sends, so a request stays under the broker message.max.bytes of 1 MiB.'),
  WS_GATEWAY_RETRY_MAX_MS: opt(int.min(100).default(10000)).describe('Longest backoff between RabbitMQ reconnects and Kafka retries of the ws-gateway bridge, ms.'),
  WS_GATEWAY_QUEUE_MAX_LENGTH: opt(int.min(0).default(500000)).describe('Most ready messages each ws-gateway queue holds (x-max-length, set when the bridge creates the queue; 0: none). A full queue refuses new messages (x-overflow reject-publish): a publisher using confirms gets a nack.'),
  WS_GATEWAY_QUEUE_MAX_BYTES: opt(int.min(0).default(134217728)).describe('Most bytes of ready message bodies each ws-gateway queue holds (x-max-length-bytes, as WS_GATEWAY_QUEUE_MAX_LENGTH; 0: none).'),
});
export type WsGatewayBridgeConfig = z.output<typeof configSchema>;

export function parseConfig(env: Record<string, unknown> = process.env): WsGatewayBridgeConfig {
  return configSchema.parse(env);
}

/** The queues of a configuration, in a fixed order. */
export function queuesOf(cfg: WsGatewayBridgeConfig): string[] {
  return [...new Set([cfg.WS_GATEWAY_ORDER_QUEUE, cfg.WS_GATEWAY_EXECUTION_QUEUE, cfg.WS_GATEWAY_POSITION_QUEUE, cfg.WS_GATEWAY_WALLET_QUEUE, cfg.WS_GATEWAY_TICKER_QUEUE])];
}

/** Input and output (house style 8). */
export const inputSchema = { queues: ['ws-gateway.order', 'ws-gateway.execution', 'ws-gateway.position', 'ws-gateway.wallet', 'ws-gateway.ticker'], format: 'bybit-v5-stream-json' } as const;
export const outputSchemas = [
  { topic: 'exchange.orders', record: 'ExchangeOrderUpdate' },
  { topic: 'exchange.executions', record: 'Execution' },
  { topic: 'exchange.positions', record: 'Position' },
  { topic: 'exchange.wallet', record: 'WalletBalance' },
  { topic: 'market.tickers', record: 'Ticker' },
  { topic: 'exchange.dlq', record: 'DeadLetter' },
] as const;

export interface WsGatewayBridgeDeps {
  kafka: KafkaPort;
  /** Avro codecs of the topics (schemas/topic-codec.ts). */
  codec: Codec;
  logger: Logger;
  metrics: Metrics;
  config: WsGatewayBridgeConfig;
  clock?: Clock;
  amqpConnect?: AmqpConnect;
}

/** start / stop / ready (consuming every queue with a connected Kafka producer): connectors/amqp-inbound.ts. */
export type WsGatewayBridge = InboundBridge;

/** What the bridge keeps of a delivery until its ack. */
interface Pending {
  /** The delivery; a body over WS_GATEWAY_MAX_MESSAGE_BYTES is cut to that on arrival (see `size`). */
  msg: ConsumeMessage;
  /** The body's size as delivered. */
  size: number;
  queue: string;
  receivedAt: number;
}

const textOf = (v: unknown, max = 256): string | null => {
  const s = Buffer.isBuffer(v) ? v.toString('utf8') : typeof v === 'string' ? v : null;
  return s && s.length > 0 && s.length <= max ? s : null;
};

/** AMQP headers as strings (for the dead letter's `headers`). */
function amqpHeaders(msg: ConsumeMessage, queue: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries((msg.properties.headers ?? {}) as Record<string, unknown>)) {
    if (v === undefined || v === null) continue;
    out[k] = Buffer.isBuffer(v) ? v.toString('utf8') : typeof v === 'object' ? JSON.stringify(v) : String(v);
  }
  out[WS_BRIDGE_HEADERS.queue] = queue;
  out[WS_BRIDGE_HEADERS.messageId] = textOf(msg.properties.messageId) ?? '';
  out[WS_BRIDGE_HEADERS.redelivered] = String(msg.fields.redelivered);
  return out;
}

function traceOf(msg: ConsumeMessage, fromBody: string | null): string | null {
  const h = (msg.properties.headers ?? {}) as Record<string, unknown>;
  return fromBody ?? textOf(h['trace_id']) ?? textOf(h['x-trace-id']) ?? textOf(msg.properties.correlationId);
}

/** What one delivery turns into: records per physical topic (already encoded). */
interface Converted {
  byTopic: Map<string, OutMessage[]>;
  rejected: StreamRejectReason | null;
  records: number;
  skipped: number;
  /** What its records take in a produce request (recordBytes). */
  bytes: number;
}

export function createWsGatewayBridge(deps: WsGatewayBridgeDeps): WsGatewayBridge {
  const cfg = deps.config;
  const clock = deps.clock ?? systemClock;
  const queues = queuesOf(cfg);
  const topic = (t: TopicName) => topicName(t, cfg.TOPIC_PREFIX);
  const dlqTopic = topic('exchange.dlq');
  const log = deps.logger.child({ connector: name, queues });
  const mb = deps.metrics.bridge;
  const tickers = new TickerBook();

  /** An oversize body is only dead-lettered by its first bytes: keep a copy of those, release the rest. */
  const hold = (msg: ConsumeMessage, queue: string) => {
    const size = msg.content.length;
    const max = cfg.WS_GATEWAY_MAX_MESSAGE_BYTES;
    const kept = size > max ? { ...msg, content: Buffer.from(msg.content.subarray(0, max)) } : msg;
    return { item: { msg: kept, size, queue, receivedAt: clock.now() }, bytes: kept.content.length };
  };

  /** Parse and encode one delivery. Throws only on retriable/fatal encoding trouble (registry). */
  const convert = async (p: Pending): Promise<Converted> => {
    const { msg, queue, receivedAt } = p;
    const out: Converted = { byTopic: new Map(), rejected: null, records: 0, skipped: 0, bytes: 0 };
    const add = (t: string, m: OutMessage) => {
      const list = out.byTopic.get(t) ?? [];
      list.push(m);
      out.byTopic.set(t, list);
      out.bytes += recordBytes(m);
    };
    const deadLetter = async (reason: StreamRejectReason, detail: string, traceId: string | null, bytes: Buffer) => {
      out.rejected = reason;
      const ts = typeof msg.properties.timestamp === 'number' ? msg.properties.timestamp * 1000 : null;
      const value = streamDeadLetter({ origin: `amqp:${queue}`, bytes, headers: amqpHeaders(msg, queue), stage: name, reason, detail, traceId, timestamp: ts, failedAt: clock.now() });
      const headers: Headers = { [WS_BRIDGE_HEADERS.queue]: queue, [WS_BRIDGE_HEADERS.messageId]: textOf(msg.properties.messageId) ?? '', [WS_BRIDGE_HEADERS.receivedAt]: String(receivedAt), 'dlq.reason': reason };
      if (traceId) headers[WS_BRIDGE_HEADERS.traceId] = traceId;
      add(dlqTopic, { key: null, value: await deps.codec.encode(dlqTopic, value), headers });
      log.warn({ queue, reason, detail: detail.slice(0, 300), messageId: msg.properties.messageId }, 'ws-gateway message dead-lettered');
    };

    if (p.size > cfg.WS_GATEWAY_MAX_MESSAGE_BYTES) {
      await deadLetter('oversize', `${p.size} bytes, limit ${cfg.WS_GATEWAY_MAX_MESSAGE_BYTES} (first bytes kept)`, traceOf(msg, null), msg.content);
      return out;
    }
    const u = unwrapBytes(msg.content);
    if (!u.ok) {
      await deadLetter(u.reason, u.detail, traceOf(msg, null), msg.content);
      return out;
    }
    const m = u.message;
    const traceId = traceOf(msg, m.traceId);
    const parsed = parseStreamMessage(m, { source: 'ws', observedAt: receivedAt, tickerCategory: cfg.WS_GATEWAY_TICKER_CATEGORY, tickers });
    if (!parsed.ok) {
      await deadLetter(parsed.reason, parsed.detail, traceId, msg.content);
      return out;
    }
    const headers: Headers = {
      [WS_BRIDGE_HEADERS.messageId]: textOf(msg.properties.messageId) ?? '',
      [WS_BRIDGE_HEADERS.queue]: queue,
      [WS_BRIDGE_HEADERS.redelivered]: String(msg.fields.redelivered),
      [WS_BRIDGE_HEADERS.receivedAt]: String(receivedAt),
      [WS_BRIDGE_HEADERS.bybitTopic]: m.topic,
    };
    if (m.id) headers[WS_BRIDGE_HEADERS.bybitMessageId] = m.id;
    if (traceId) headers[WS_BRIDGE_HEADERS.traceId] = traceId;
    const problems = [...parsed.problems];
    for (const r of parsed.records) {
      const t = topic(r.topic);
      try {
        add(t, { key: r.key, value: await deps.codec.encode(t, r.value), headers });
        out.records++;
      } catch (err) {
        if (!(err instanceof RejectedError)) throw err;
        problems.push({ index: -1, detail: `${r.key}: ${err.message}` });
      }
    }
    out.skipped = parsed.skipped;
    if (parsed.skipped > 0) {
      mb.rejected.inc({ bridge: name, reason: 'ticker_delta_without_snapshot' }, parsed.skipped);
      log.debug({ topic: m.topic }, 'ticker delta before any snapshot skipped');
    }
    if (problems.length > 0) await deadLetter('invalid_item', describeProblems(problems, parsed.items), traceId, msg.content);
    return out;
  };

  /** Records of consecutive deliveries, sent together and acked by their last delivery. */
  interface Group {
    byTopic: Map<string, OutMessage[]>;
    rejected: StreamRejectReason[];
    records: number;
    bytes: number;
    /** Index in the batch of the group's last delivery. */
    last: number;
  }
  const emptyGroup = (): Group => ({ byTopic: new Map(), rejected: [], records: 0, bytes: 0, last: -1 });

  /**
   * Write a group (several produce requests when its records exceed WS_GATEWAY_BATCH_MAX_BYTES, one
   * after another, so per-partition order holds) and ack its last delivery. False when the channel
   * died meanwhile: what follows in the batch is redelivered, so it is not sent.
   */
  const flush = async ({ producer, ack }: InboundBatch<Pending>, g: Group): Promise<boolean> => {
    for (const chunk of chunkByBytes(g.byTopic, recordBytes, cfg.WS_GATEWAY_BATCH_MAX_BYTES)) {
      await producer.sendBatch([...chunk].map(([topic, messages]) => ({ topic, messages })));
    }
    for (const [t, list] of g.byTopic) if (t !== dlqTopic) mb.out.inc({ bridge: name, destination: t }, list.length);
    for (const r of g.rejected) mb.rejected.inc({ bridge: name, reason: r });
    return ack(g.last);
  };

  /**
   * Deliveries are converted in order and gathered while their records fit one send; a few messages
   * near WS_GATEWAY_MAX_MESSAGE_BYTES would otherwise make a request the broker refuses
   * (message.max.bytes) on every redelivery, stopping every queue for good.
   */
  const write = async (batch: InboundBatch<Pending>): Promise<void> => {
    let group = emptyGroup();
    for (const [i, p] of batch.items.entries()) {
      const c = await convert(p);
      if (group.last >= 0 && group.bytes + c.bytes > cfg.WS_GATEWAY_BATCH_MAX_BYTES) {
        if (!(await flush(batch, group))) return;
        group = emptyGroup();
      }
      for (const [t, list] of c.byTopic) {
        const into = group.byTopic.get(t);
        if (into) into.push(...list);
        else group.byTopic.set(t, list);
      }
      if (c.rejected) group.rejected.push(c.rejected);
      group.records += c.records;
      group.bytes += c.bytes;
      group.last = i;
    }
    if (group.last >= 0) await flush(batch, group);
  };

  return createInboundBridge<Pending>({
    name,
    title: 'ws-gateway bridge',
    kafka: deps.kafka,
    logger: log,
    metrics: deps.metrics,
    amqpUrl: cfg.AMQP_URL,
    amqpConnect: deps.amqpConnect,
    queues,
    queueLimits: { maxLength: cfg.WS_GATEWAY_QUEUE_MAX_LENGTH, maxBytes: cfg.WS_GATEWAY_QUEUE_MAX_BYTES },
    prefetch: cfg.WS_GATEWAY_PREFETCH,
    batchMax: cfg.WS_GATEWAY_BATCH_MAX,
    retryMaxMs: cfg.WS_GATEWAY_RETRY_MAX_MS,
    hold,
    write,
    failureWhat: 'Kafka or registry',
  });
}
