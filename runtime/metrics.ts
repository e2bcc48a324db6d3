// Metric names are constants (house style 11); the README's metrics table lists them all.
import { Registry, Counter, Histogram, Gauge, collectDefaultMetrics } from 'prom-client';

export const M = {
  stageRecordsIn: 'pipeline_stage_records_in_total',
  stageRecordsOut: 'pipeline_stage_records_out_total',
  stageRejected: 'pipeline_stage_records_rejected_total',
  stageLatency: 'pipeline_stage_processing_seconds',
  stageBatch: 'pipeline_stage_batch_seconds',
  stageLag: 'pipeline_stage_consumer_lag',
  stageRetries: 'pipeline_stage_retries_total',
  stageConflicts: 'pipeline_stage_conflicts_total',
  stageGathered: 'pipeline_stage_gathered_parts_total',
  stageCommits: 'pipeline_stage_commits_total',
  stageAlreadyCommitted: 'pipeline_stage_records_already_committed_total',
  bridgeIn: 'pipeline_bridge_messages_in_total',
  bridgeOut: 'pipeline_bridge_messages_out_total',
  bridgeRejected: 'pipeline_bridge_messages_rejected_total',
  bridgeReconnects: 'pipeline_bridge_reconnects_total',
  bridgeBufferedBytes: 'pipeline_bridge_buffered_bytes',
  bridgeDropped: 'pipeline_bridge_messages_dropped_total',
  kafkaRequests: 'kafka_request_duration_seconds',
  kafkaFetches: 'kafka_consumer_fetches_total',
} as const;

export type Metrics = ReturnType<typeof createMetrics>;

/** One registry per process (tests make their own so parallel runners do not collide). */
export function createMetrics(opts: { defaults?: boolean; prefix?: string } = {}) {
  const registry = new Registry();
  if (opts.defaults) collectDefaultMetrics({ register: registry });
  const stage = {
    recordsIn: new Counter({ name: M.stageRecordsIn, help: 'Records consumed by a stage', labelNames: ['stage', 'topic'], registers: [registry] }),
    recordsOut: new Counter({ name: M.stageRecordsOut, help: 'Records produced by a stage', labelNames: ['stage', 'topic'], registers: [registry] }),
    rejected: new Counter({ name: M.stageRejected, help: 'Records a stage routed to its dead-letter topic, by reason', labelNames: ['stage', 'reason'], registers: [registry] }),
    latency: new Histogram({ name: M.stageLatency, help: 'Per-record processing time of a stage (decode, process, encode)', labelNames: ['stage'], buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1], registers: [registry] }),
    batch: new Histogram({ name: M.stageBatch, help: 'Time to process and commit one batch transaction', labelNames: ['stage'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5], registers: [registry] }),
    lag: new Gauge({ name: M.stageLag, help: 'Consumer lag of a stage per partition (records behind the high watermark)', labelNames: ['stage', 'topic', 'partition'], registers: [registry] }),
    retries: new Counter({ name: M.stageRetries, help: 'Retriable errors retried by a stage', labelNames: ['stage', 'code'], registers: [registry] }),
    gathered: new Counter({ name: M.stageGathered, help: 'Input chunks of co-partitioned topics committed together with others of their partition number (one transaction for several)', labelNames: ['stage'], registers: [registry] }),
    commits: new Counter({ name: M.stageCommits, help: 'Chunks a stage committed, by how: in a Kafka transaction with their outputs, or (nothing to produce) through the consumer group', labelNames: ['stage', 'via'], registers: [registry] }),
    alreadyCommitted: new Counter({ name: M.stageAlreadyCommitted, help: 'Fetched records skipped because the group had already committed them (a former owner frozen before its commit, or a commit whose answer was lost)', labelNames: ['stage', 'topic'], registers: [registry] }),
    conflicts: new Counter({ name: M.stageConflicts, help: 'Records dead-lettered because their effects could not be stored (unique key taken, value refused, too large), by reason and action (dead_letter or halt)', labelNames: ['stage', 'reason', 'action'], registers: [registry] }),
  };
  const bridge = {
    in: new Counter({ name: M.bridgeIn, help: 'Messages a bridge received', labelNames: ['bridge', 'source'], registers: [registry] }),
    out: new Counter({ name: M.bridgeOut, help: 'Messages a bridge delivered durably to its destination', labelNames: ['bridge', 'destination'], registers: [registry] }),
    rejected: new Counter({ name: M.bridgeRejected, help: 'Messages a bridge dead-lettered, by reason', labelNames: ['bridge', 'reason'], registers: [registry] }),
    reconnects: new Counter({ name: M.bridgeReconnects, help: 'Reconnections of a bridge to RabbitMQ or Kafka', labelNames: ['bridge', 'peer'], registers: [registry] }),
    buffered: new Gauge({ name: M.bridgeBufferedBytes, help: 'Bytes of messages a bridge holds in memory: received, not yet written to their destination', labelNames: ['bridge'], registers: [registry] }),
    dropped: new Counter({ name: M.bridgeDropped, help: 'Messages a bridge dropped because its bounded buffer was full, by reason (the reconciler repairs exchange facts)', labelNames: ['bridge', 'reason'], registers: [registry] }),
  };
  // Every Kafka request of the process by API (its _count is the request count): transactions and
  // coordinator lookups show here, which is where the broker's CPU goes (docs/performance.md).
  const kafkaRequests = new Histogram({ name: M.kafkaRequests, help: 'Round trip of Kafka requests answered, by API (kafkajs name)', labelNames: ['api'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5], registers: [registry] });
  // Which of a consumer's fetches waited as idle (KAFKA_FETCH_IDLE_MAX_WAIT_MS): a group that never
  // leaves `busy` at rest pays the short wait's ten fetches a second.
  const kafkaFetches = new Counter({ name: M.kafkaFetches, help: 'Fetches of the process\'s consumers, by group and by the wait they asked for: busy (KAFKA_FETCH_MAX_WAIT_MS) or idle (KAFKA_FETCH_IDLE_MAX_WAIT_MS, after fetches in a row that brought nothing)', labelNames: ['group', 'wait'], registers: [registry] });
  return {
    registry,
    stage,
    bridge,
    kafka: {
      request: (api: string, seconds: number) => kafkaRequests.observe({ api }, seconds),
      fetch: (group: string, wait: 'busy' | 'idle') => kafkaFetches.inc({ group, wait }),
    },
  };
}
