// The topic catalogue: every topic of the pipeline with its partitions and retention/compaction.
// The README's topic table mirrors this list (a test checks they agree). Names take TOPIC_PREFIX so
// tests and replay backtests get a fresh namespace of topics and consumer groups.
import type { TopicSpec } from './kafka.ts';

const DAY = 24 * 3600 * 1000;

export type Keyed = 'asset' | 'symbol' | 'order_link_id' | 'coin' | 'none';

export interface TopicDef {
  /** Logical name used in code. */
  name: string;
  /** What flows on it and who writes it. */
  doc: string;
  /** Avro record kind of the value ('raw' = the original bytes as received). */
  record: string;
  key: Keyed;
  partitions: 'pipeline' | number;
  retentionMs?: number;
  compact?: boolean;
}

export const TOPICS = [
  { name: 'signals.raw', doc: 'Signals exactly as received from RabbitMQ (bytes + AMQP headers), written by the signal bridge.', record: 'raw', key: 'asset', partitions: 'pipeline', retentionMs: 30 * DAY },
  { name: 'signals.valid', doc: 'Validated, de-duplicated signals: the audit copy signal-decide writes in the transaction that decides them; no consumer in the default deployment.', record: 'Signal', key: 'asset', partitions: 'pipeline', retentionMs: 30 * DAY },
  { name: 'signals.dlq', doc: 'Signals refused by validation, and model signals the signal-out bridge could not decode: DeadLetter envelope with the original bytes and a reason code.', record: 'DeadLetter', key: 'none', partitions: 1, retentionMs: 90 * DAY },
  { name: 'orders.intents', doc: 'Create / amend / cancel decisions of the risk & sizing stage.', record: 'OrderIntent', key: 'asset', partitions: 'pipeline', retentionMs: 30 * DAY },
  { name: 'orders.submissions', doc: 'Outcome of each REST call of the placement stage (accepted, rejected, already placed, unknown).', record: 'OrderSubmission', key: 'asset', partitions: 'pipeline', retentionMs: 30 * DAY },
  { name: 'orders.dlq', doc: 'Records the order stages could not decode or process, with a reason.', record: 'DeadLetter', key: 'none', partitions: 1, retentionMs: 90 * DAY },
  { name: 'exchange.orders', doc: 'Bybit order updates (ws-gateway bridge, direct websocket, reconciler).', record: 'ExchangeOrderUpdate', key: 'symbol', partitions: 'pipeline', retentionMs: 30 * DAY },
  { name: 'exchange.executions', doc: 'Bybit executions (fills), keyed by symbol, deduplicated downstream by execId.', record: 'Execution', key: 'symbol', partitions: 'pipeline', retentionMs: 90 * DAY },
  { name: 'exchange.positions', doc: 'Bybit position snapshots; compacted to the latest per symbol.', record: 'Position', key: 'symbol', partitions: 'pipeline', compact: true },
  { name: 'exchange.wallet', doc: 'Bybit wallet balances; compacted to the latest per coin.', record: 'WalletBalance', key: 'coin', partitions: 'pipeline', compact: true },
  { name: 'exchange.dlq', doc: 'ws-gateway messages that could not be parsed, with a reason.', record: 'DeadLetter', key: 'none', partitions: 1, retentionMs: 90 * DAY },
  { name: 'market.tickers', doc: 'Best bid/ask and last price per symbol, from the websocket bridges and exchange sync\'s REST snapshots; the ticker projection keeps `tickers` from it, the model service reads it.', record: 'Ticker', key: 'symbol', partitions: 'pipeline', retentionMs: 3 * DAY },
  { name: 'orders.events', doc: 'Enriched order events (one per state change, plus signal_rejected); the model trains from it.', record: 'OrderEvent', key: 'asset', partitions: 'pipeline', retentionMs: 365 * DAY },
  { name: 'model.signals', doc: 'Signals emitted by the model service, mirrored to RabbitMQ model-service.trading_signals.', record: 'ModelSignal', key: 'asset', partitions: 'pipeline', retentionMs: 30 * DAY },
] as const satisfies readonly TopicDef[];

export type TopicName = (typeof TOPICS)[number]['name'];

export function topicName(name: TopicName, prefix = ''): string {
  return prefix + name;
}

export function topicDef(name: TopicName): TopicDef {
  const d = TOPICS.find((t) => t.name === name);
  if (!d) throw new Error(`unknown topic ${name}`);
  return d;
}

/** Topic specs to create, with the physical (prefixed) names. */
export function topicSpecs(prefix: string, pipelinePartitions: number): TopicSpec[] {
  return (TOPICS as readonly TopicDef[]).map((t) => {
    const config: Record<string, string> = {};
    if (t.compact) config['cleanup.policy'] = 'compact';
    if (t.retentionMs !== undefined) config['retention.ms'] = String(t.retentionMs);
    return { topic: prefix + t.name, partitions: t.partitions === 'pipeline' ? pipelinePartitions : t.partitions, config };
  });
}
