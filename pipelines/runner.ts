// The stage runner: the one place where a pure stage meets Kafka (house style 1).
//
//   consume (read_committed) → decode → [load state] → process (pure) → [persist effects] →
//   encode → produce outputs + dead letters + the consumed offsets in ONE transaction → commit
//
// Exactly-once for Kafka→Kafka: outputs and input offsets commit atomically (a stage may have the
// transaction opened before its load, so that its requests overlap the load and persist and only
// the commit follows them: `eagerTransaction`). A chunk with nothing to
// produce commits its offsets alone through the consumer group (one OffsetCommit, checked by the
// coordinator against the member's generation) rather than in a transaction. kafkajs does not
// implement KIP-447 (fencing by consumer-group generation), so fencing uses the classic pattern:
// one transactional producer per input partition, transactionalId = <group>-<topic>-<partition>.
// Whoever owns a partition after a crash or rebalance initialises that id, which aborts the dead
// owner's open transaction and fences it. It does so before the first chunk it takes after a join
// or a failed commit, and then reads the group's committed offsets again: a former owner frozen
// between its last ownership check and its commit (a zombie), or this producer's own commit whose
// answer was lost (a broker restart), may have committed the chunk after this member fetched it.
// Records below those offsets are skipped (pipeline_stage_records_already_committed_total), not
// processed and produced twice.
//
// A stage over several co-partitioned topics (tracking) fences per partition *number* instead:
// transactionalId = <group>-p<partition>, for partition p of every input topic. Every offset of an
// input partition still commits through one id only, so whoever takes it over fences the previous
// owner as before; and the chunks that arrive together for one partition number (a fill's submission,
// order update, execution, position and wallet facts) are gathered into one chunk, one database
// transaction and one Kafka transaction, not one per topic. On its first use of such an id the
// runner also initialises the per-topic ids the earlier code used for those partitions (<group>-
// <topic>-<p>), which aborts a transaction a process of that version left open and fences it.
//
// Failure handling: a record that cannot be decoded, or that the stage rejects, goes to the stage's
// dead-letter topic (DeadLetter envelope with the original bytes; reason in headers too) and the
// stage goes on. A retriable error (broker, registry or database unavailable) aborts the transaction
// and retries the same chunk with backoff. A fatal error stops the runner loudly through onFatal.
//
// A record whose effects cannot be stored (a unique key another row holds, a value PostgreSQL
// refuses, an output larger than the broker takes) fails the same way on every retry and after
// every restart: retrying it would stall the partition for good, stopping would crash-loop the
// process. So the runner runs the chunk again one record at a time, and the record that still fails
// is dead-lettered (state_conflict, invalid_record, record_too_large), recorded in stage_conflicts
// through `conflicts`, logged and counted; the partition goes on. A stage whose conflicts leave
// PostgreSQL and the exchange disagreeing sets `conflict: 'halt'`, and trading goes to HALTED with
// the reason until an operator resumes. Fatal stays for what a restart can fix (a fenced producer,
// lost connections the client will not recover, a broken schema, bad credentials).
import { performance } from 'node:perf_hooks';
import type { KafkaPort, ConsumerPort, ProducerPort, TransactionPort, InMessage, Headers, OutMessage, BatchControl, AdminPort } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { Clock } from '../runtime/clock.ts';
import type { Codec } from '../runtime/codec.ts';
import { classify, FatalError, PipelineError, RejectedError } from '../runtime/errors.ts';
import { backoffMs, connectWithBackoff } from '../runtime/retry.ts';
import { pgErrorCode, violatedConstraint } from '../runtime/db.ts';
import type { ConflictAction, ConflictSink } from './stage-conflicts.ts';
import { setTimeout as sleep } from 'node:timers/promises';


export interface StageRecord<I> {
  value: I;
  key: string | null;
  headers: Headers;
  topic: string;
  partition: number;
  offset: string;
  timestamp: number;
  traceId: string | null;
}

export interface Output {
  /** Physical topic name. */
  topic: string;
  key: string | null;
  value: unknown;
  headers?: Headers;
}

export type StageResult =
  | { kind: 'ok'; outputs: Output[] }
  | { kind: 'reject'; code: string; detail: string; outputs?: Output[]; signalId?: string | null; dlq?: string };

export const ok = (...outputs: Output[]): StageResult => ({ kind: 'ok', outputs });
export const reject = (code: string, detail: string, outputs: Output[] = [], signalId: string | null = null): StageResult => ({ kind: 'reject', code, detail, outputs, signalId });

export interface StageContext<S> {
  state: S;
  clock: Clock;
}

export interface Stage<I, S = undefined> {
  name: string;
  /** Physical input topic(s). A stage over several topics gets their records in per-partition order. */
  input: string | string[];
  /** 'raw' hands the stage the bytes as received; 'avro' decodes through the registry first. */
  inputFormat: 'raw' | 'avro';
  /** Physical dead-letter topic (a rejection may name another one of the stage's: `dlq` of the result). */
  dlq: string;
  /**
   * Records the stage leaves alone, decided from the headers before decoding: no output, no dead
   * letter; their offsets commit with the chunk. (The risk drain of pipelines/signal-decide.ts skips
   * the copies the fused stage already decided and its own end markers.)
   */
  skip?: (msg: InMessage) => boolean;
  /**
   * Edge: read what the pure stage needs for this chunk (e.g. state from PostgreSQL). A load with
   * side effects outside Kafka and PostgreSQL (placement's REST calls) awaits `stillOwner()` before
   * each one: it throws once this member has lost the chunk's partition (see PartitionLostError).
   */
  load?: (records: StageRecord<I>[], stillOwner?: () => Promise<void>) => Promise<S>;
  /** Pure: one record in, outputs or a rejection out. Never throws for bad data. */
  process: (rec: StageRecord<I>, ctx: StageContext<S>) => StageResult;
  /** Edge: persist the chunk's effects before the Kafka commit. Must be idempotent (replays happen). */
  persist?: (items: Array<{ rec: StageRecord<I>; result: StageResult }>, state: S) => Promise<void>;
  /**
   * The runner processes input partitions concurrently. A stage whose decisions read state that
   * chunks of other partitions change (the risk stage: open orders, exposure, balance reservations)
   * sets `exclusive`: then load → process → persist of one chunk runs to its end before the next
   * chunk's load starts (a FIFO mutex per stage), so every decision sees every earlier one exactly
   * as with one partition at a time. The Kafka transactions (send, offsets, commit) still overlap.
   */
  exclusive?: boolean;
  /**
   * For an `exclusive` stage that may run as several processes (instances in one consumer group): held
   * around each chunk's load → process → persist, after the process's own mutex, so that the chunks of
   * every instance are decided one at a time (the risk stage takes a PostgreSQL advisory lock: every
   * cap stays exact whatever the number of instances).
   */
  lockAcross?: <T>(decide: () => Promise<T>) => Promise<T>;
  /**
   * Open the chunk's Kafka transaction before its load: its offsets go into it while the stage loads
   * (placement: while it calls the exchange), and its outputs while `persist` writes, so that after
   * persist only the commit (EndTxn) is left to wait for, not the four requests before it. For a
   * stage whose every chunk has outputs (signal-decide, placement): a chunk
   * without any then commits its offsets in that transaction instead of through the group (one
   * request more). Nothing commits earlier than without it: the transaction still commits after
   * persist and after the ownership check, and any failure before that aborts it. A load that
   * outlasts the transaction timeout (60 s) has its transaction aborted by the broker: the commit
   * then fails as a fenced one does, and the chunk is fetched and run again by a new producer
   * (its effects are idempotent, as for any failed commit).
   */
  eagerTransaction?: boolean;
  /**
   * What a record whose effects cannot be stored does besides its dead letter (see the header):
   * 'dead_letter' (default) or 'halt' (trading HALTED with the reason; for stages whose records are
   * facts about money at the exchange: a placed order, a fill).
   */
  conflict?: ConflictAction;
}

export interface RunnerDeps {
  kafka: KafkaPort;
  codec: Codec;
  logger: Logger;
  metrics: Metrics;
  clock: Clock;
  /** Consumer group and transactional-id prefix (TOPIC_PREFIX applied by the caller). */
  groupId: string;
  batchMax: number;
  retryMaxMs: number;
  onFatal: (err: Error) => void;
  fromBeginning?: boolean;
  sessionTimeoutMs?: number;
  /**
   * How many input partitions are processed at once (kafkajs partitionsConsumedConcurrently).
   * Exactly-once holds: each partition has its own transactional producer and its own offsets.
   * Default DEFAULT_PARTITIONS_CONCURRENTLY; 1 = one partition after another.
   */
  partitionsConcurrently?: number;
  /** Where conflicts are recorded (stage_conflicts) and halts applied; without it they are only dead-lettered, logged and counted. */
  conflicts?: ConflictSink;
}

/** Upper bound of input partitions one runner processes at once (each has its own producer). */
export const DEFAULT_PARTITIONS_CONCURRENTLY = 8;

/** A FIFO mutex: `run(f)` starts f once every f passed earlier has settled. */
export function createMutex(): <T>(f: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(f: () => Promise<T>): Promise<T> => {
    const result = tail.then(f);
    tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  };
}

export interface RunningStage {
  name: string;
  joined(): boolean;
  /** Records dead-lettered as conflicts since start, by reason, and the last one (for /readyz detail). */
  conflicts(): { total: number; byReason: Record<string, number>; last: { source: string; reason: string; action: ConflictAction; detail: string; at: number } | null };
  stop(): Promise<void>;
}

export const DLQ_HEADERS = {
  reason: 'dlq.reason',
  detail: 'dlq.detail',
  stage: 'dlq.stage',
  source: 'dlq.source',
} as const;

/** One input topic's part of a chunk. */
interface ChunkPart {
  topic: string;
  messages: InMessage[];
  ctl: BatchControl;
}

/** A part waiting to be gathered, with the batch handler that waits for its outcome. */
interface Gathered extends ChunkPart {
  resolve: (done: boolean) => void;
  reject: (err: unknown) => void;
}

/** A chunk's transaction opened before its outputs were known (`eagerTransaction`). */
interface OpenTransaction {
  /** Its producer's transactional id. */
  id: string;
  tx: TransactionPort;
  /** Settles once everything sent into it so far has been sent (rejects with the first failure). */
  sent: Promise<void>;
}

/** Where a chunk ends: its input parts' last offsets, and its transaction once opened eagerly. */
interface ChunkEnd {
  lastOffsets: Array<{ topic: string; offset: string }>;
  open: OpenTransaction | null;
}

interface Decoded<I> {
  msg: InMessage;
  rec?: StageRecord<I>;
  reject?: { code: string; detail: string };
}

/** Throws PartitionLostError when this member has left the group's current generation (see processChunk). */
function ownership(ctl: BatchControl): () => Promise<void> {
  return () =>
    ctl.heartbeat().catch((err: unknown) => {
      throw isMembershipLost(err) ? new PartitionLostError(err) : err;
    });
}

/**
 * The dead-letter record of `msg` on `topic` (DeadLetter envelope, original bytes, reason headers):
 * the one shape every unit sends, whether a stage under this runner or a unit outside it.
 */
export async function deadLetterMessage(
  d: { codec: Codec; clock: Clock; stage: string; topic: string },
  msg: InMessage,
  code: string,
  detail: string,
  signalId?: string | null,
  keepBytes?: number,
): Promise<OutMessage> {
  const failedAt = d.clock.now();
  const source = `${msg.topic}/${msg.partition}/${msg.offset}`;
  // An envelope around a record close to the broker's limit may itself be too large: then it keeps
  // the record's first bytes only, and says so.
  const cut = keepBytes !== undefined && msg.value !== null && msg.value.length > keepBytes;
  if (cut) detail = `${detail} [original value truncated to ${keepBytes} of ${msg.value!.length} bytes]`;
  const value = await d.codec.encode(d.topic, {
    original_topic: msg.topic,
    original_partition: msg.partition,
    original_offset: Number(msg.offset),
    original_timestamp: Number.isFinite(msg.timestamp) ? msg.timestamp : null,
    original_key: msg.key === null ? null : Buffer.from(msg.key, 'utf8'),
    original_value: cut ? msg.value!.subarray(0, keepBytes) : msg.value,
    headers: msg.headers,
    stage: d.stage,
    reason_code: code,
    reason_detail: detail.slice(0, 2000),
    error_kind: 'rejected',
    attempts: 1,
    signal_id: signalId ?? null,
    trace_id: traceOf(msg.headers),
    failed_at: failedAt,
  });
  return {
    key: msg.key,
    value,
    headers: { ...msg.headers, [DLQ_HEADERS.reason]: code, [DLQ_HEADERS.detail]: detail.slice(0, 500), [DLQ_HEADERS.stage]: d.stage, [DLQ_HEADERS.source]: source },
  };
}

function traceOf(h: Headers): string | null {
  return h['trace_id'] ?? null;
}

export async function runStage<I, S>(stage: Stage<I, S>, deps: RunnerDeps): Promise<RunningStage> {
  const log = deps.logger.child({ stage: stage.name, group: deps.groupId });
  const m = deps.metrics.stage;
  let stopping = false;
  const inputs = Array.isArray(stage.input) ? stage.input : [stage.input];
  const coPartitioned = inputs.length > 1;
  const consumer: ConsumerPort = deps.kafka.consumer({
    groupId: deps.groupId,
    readCommitted: true,
    // Partition n of every input to one member: with several instances, each partition number's
    // transactional id stays with one of them (runtime/kafka.ts, coPartitionedAssigner).
    coPartitioned,
    sessionTimeoutMs: deps.sessionTimeoutMs,
    // kafkajs will not restart the consumer: stop loudly rather than stay up consuming nothing.
    onFatal: (err) => {
      if (stopping) return;
      stopping = true;
      log.fatal({ err }, 'consumer stopped for good; stopping');
      deps.onFatal(err);
    },
  });
  /** Each transactional producer, with the join of the group it was made after. */
  const producers = new Map<string, { p: ProducerPort; join: number }>();
  let joined = false;
  /** Joins of the group so far: a producer made before the last one is made again (see `unseen`). */
  let joins = 0;
  /** The group's committed offset of each input `topic/partition`, read right after its producer was made. */
  const committedFrom = new Map<string, bigint>();
  let admin: Promise<AdminPort> | null = null;
  const adminPort = (): Promise<AdminPort> =>
    (admin ??= (async () => {
      const a = deps.kafka.admin();
      await a.connect();
      return a;
    })().catch((err: unknown) => {
      admin = null;
      throw err;
    }));

  // One transactional producer per input partition, or per partition number of co-partitioned
  // inputs (see the header): the id is stable across restarts and rebalances so a new owner fences
  // the old one.
  const txIdOf = (topic: string, partition: number) => (coPartitioned ? `${deps.groupId}-p${partition}` : `${deps.groupId}-${topic}-${partition}`);
  const legacyFenced = new Set<number>();
  const producerFor = async (topic: string, partition: number): Promise<ProducerPort> => {
    const id = txIdOf(topic, partition);
    let p = producers.get(id)?.p;
    if (!p) {
      if (coPartitioned && !legacyFenced.has(partition)) {
        await fenceLegacy(partition);
        legacyFenced.add(partition);
      }
      p = deps.kafka.producer({ transactionalId: id });
      await p.connect();
      producers.set(id, { p, join: joins });
    }
    return p;
  };

  /**
   * The chunk without the records the group's committed offsets already cover. On the first chunk
   * of a partition since this member's last join (or since its producer was dropped after a failed
   * commit) the producer is made again first: initialising its id fences every earlier producer of
   * it and completes or aborts the transaction one left open, so the committed offsets read next
   * can no longer move behind this member's back. kafkajs fetched from the offsets committed when
   * the partition was assigned; a zombie's commit, or a commit of ours whose answer was lost, may
   * have landed since. (KIP-447 would have the broker refuse the zombie's commit instead.) The
   * read asks for stable offsets (`stableOffsets`): the group coordinator applies a completed
   * transaction's offsets a moment after the transaction coordinator reports it complete, and a
   * plain read in between would still give the offset from before it.
   */
  const unseen = async (partition: number, parts: ChunkPart[]): Promise<ChunkPart[]> => {
    const id = txIdOf(parts[0]!.topic, partition);
    if (producers.get(id)?.join !== joins) {
      await dropProducer(id);
      // kafkajs initialises the transactional id on a producer's first transaction, not on connect;
      // an empty one then aborts without a request.
      await (await (await producerFor(parts[0]!.topic, partition)).transaction()).abort();
      const committed = await (await adminPort()).stableOffsets(deps.groupId, coPartitioned ? inputs : [parts[0]!.topic], partition);
      for (const [topic, at] of committed) if (at !== null) committedFrom.set(`${topic}/${partition}`, at);
    }
    const out: ChunkPart[] = [];
    for (const p of parts) {
      const from = committedFrom.get(`${p.topic}/${partition}`);
      const messages = from === undefined || BigInt(p.messages[0]!.offset) >= from ? p.messages : p.messages.filter((msg) => BigInt(msg.offset) >= from);
      if (messages.length < p.messages.length) {
        m.alreadyCommitted.inc({ stage: stage.name, topic: p.topic }, p.messages.length - messages.length);
        log.warn({ topic: p.topic, partition, from: p.messages[0]!.offset, committed: String(from), skipped: p.messages.length - messages.length }, 'records already committed (by a former owner, or by a commit whose answer was lost): skipped');
      }
      if (messages.length) out.push(messages === p.messages ? p : { ...p, messages });
    }
    return out;
  };
  // Initialising a transactional id aborts what its previous producer left open and fences it; an
  // empty transaction then ends without a request.
  const fenceLegacy = async (partition: number): Promise<void> => {
    for (const topic of inputs) {
      const old = deps.kafka.producer({ transactionalId: `${deps.groupId}-${topic}-${partition}` });
      try {
        await old.connect();
        await (await old.transaction()).abort();
      } finally {
        await old.disconnect().catch(() => {});
      }
    }
  };
  const dropProducer = async (id: string) => {
    const p = producers.get(id)?.p;
    producers.delete(id);
    await p?.disconnect().catch(() => {});
  };

  const decodeAll = async (messages: InMessage[]): Promise<Decoded<I>[]> => {
    const out: Decoded<I>[] = [];
    for (const msg of messages) {
      if (stage.skip?.(msg)) continue;
      const base = { key: msg.key, headers: msg.headers, topic: msg.topic, partition: msg.partition, offset: msg.offset, timestamp: msg.timestamp, traceId: traceOf(msg.headers) };
      if (msg.value === null) {
        out.push({ msg, reject: { code: 'empty_record', detail: 'record has no value (tombstone)' } });
        continue;
      }
      if (stage.inputFormat === 'raw') {
        out.push({ msg, rec: { ...base, value: msg.value as unknown as I } });
        continue;
      }
      try {
        const value = (await deps.codec.decode(msg.topic, msg.value)) as I;
        out.push({ msg, rec: { ...base, value } });
      } catch (err) {
        if (err instanceof RejectedError) out.push({ msg, reject: { code: err.code, detail: err.message } });
        else throw err; // registry unreachable etc.: retriable or fatal, decided by the caller
      }
    }
    return out;
  };

  const deadLetter = (msg: InMessage, code: string, detail: string, signalId?: string | null, keepBytes?: number, topic: string = stage.dlq): Promise<OutMessage> =>
    deadLetterMessage({ codec: deps.codec, clock: deps.clock, stage: stage.name, topic }, msg, code, detail, signalId, keepBytes);

  /**
   * Commit records of a chunk to their topics with the chunk's offsets (the last offset of each input
   * topic's part, all on partition number `partition`), in one transaction; a chunk with nothing to
   * produce commits its offsets through the group instead (see below).
   */
  const commit = async (partition: number, byTopic: Map<string, OutMessage[]>, lastOffsets: Array<{ topic: string; offset: string }>, stillOwner: () => Promise<void>, ctl: BatchControl, open: OpenTransaction | null = null): Promise<void> => {
    if (!open && byTopic.size === 0) {
      // Nothing to produce (most of tracking's chunks at a low rate: a position, a wallet, an order
      // update that changes no event): a transaction would carry the offsets alone, at the price of
      // three requests and the coordinator's log and marker writes. A group commit is one request,
      // and as atomic. The chunk's database effects committed before it, as before a transaction's
      // commit, so a crash between the two replays the chunk, which the stages' loads recognise.
      // The coordinator refuses the commit from a member that left the group's generation (a
      // zombie): the chunk is then left to the owner. It orders this commit after the offsets of
      // the partition's earlier transactions even when their markers come later
      // (tests/foundation/kafka-port.test.ts).
      await stillOwner();
      try {
        await ctl.commitOffsets(offsetsAfter(partition, lastOffsets));
      } catch (err) {
        throw isMembershipLost(err) ? new PartitionLostError(err) : err;
      }
      m.commits.inc({ stage: stage.name, via: 'group' });
      return;
    }
    // Opened before the load (`eagerTransaction`): its offsets, and its outputs when there are any,
    // were sent into it meanwhile. Otherwise begun here: every output topic in one produce request
    // (signal-decide writes two or three topics), then the offsets.
    const tx = open ?? (await transactionOf(partition, lastOffsets, (t) => sendOutputs(t, byTopic).then(() => sendOffsets(t, partition, lastOffsets))));
    try {
      await tx.sent;
      await stillOwner();
      await tx.tx.commit();
      m.commits.inc({ stage: stage.name, via: 'transaction' });
    } catch (err) {
      await tx.tx.abort().catch(() => {});
      // A fenced or broken transactional producer cannot be reused.
      await dropProducer(tx.id);
      throw err;
    }
  };

  const offsetsAfter = (partition: number, lastOffsets: ChunkEnd['lastOffsets']) => lastOffsets.map(({ topic, offset }) => ({ topic, partition, offset: String(BigInt(offset) + 1n) }));
  const sendOffsets = (tx: TransactionPort, partition: number, lastOffsets: ChunkEnd['lastOffsets']) => tx.sendOffsets(deps.groupId, offsetsAfter(partition, lastOffsets));
  const sendOutputs = (tx: TransactionPort, byTopic: Map<string, OutMessage[]>) => tx.sendBatch([...byTopic].map(([topic, messages]) => ({ topic, messages })));

  /** A transaction of the chunk's producer (made, and its id initialised, by `unseen`), with `send` on the way. */
  const transactionOf = async (partition: number, lastOffsets: ChunkEnd['lastOffsets'], send: (tx: TransactionPort) => Promise<void>): Promise<OpenTransaction> => {
    const tx = await (await producerFor(lastOffsets[0]!.topic, partition)).transaction();
    const open: OpenTransaction = { id: txIdOf(lastOffsets[0]!.topic, partition), tx, sent: send(tx) };
    open.sent.catch(() => {}); // seen by commit or abandon
    return open;
  };
  /** Outputs after the offsets (kafkajs runs one request of a transaction at a time). */
  const sendInto = (open: OpenTransaction, byTopic: Map<string, OutMessage[]>): void => {
    if (byTopic.size === 0) return;
    open.sent = open.sent.then(() => sendOutputs(open.tx, byTopic));
    open.sent.catch(() => {});
  };
  /** The chunk failed before its commit: nothing of its transaction may land. A producer that cannot abort is dropped. */
  const abandon = async (open: OpenTransaction): Promise<void> => {
    const sent = await open.sent.then(
      () => true,
      () => false,
    );
    const aborted = await open.tx.abort().then(
      () => true,
      () => false,
    );
    if (!sent || !aborted) await dropProducer(open.id);
  };

  const exclusive = createMutex();

  /** load → process → encode → persist for one chunk; returns the records to produce, by topic. */
  const decideChunk = async (partition: number, decoded: Decoded<I>[], stillOwner: () => Promise<void>, end: ChunkEnd): Promise<Map<string, OutMessage[]>> => {
    const recs = decoded.filter((d) => d.rec).map((d) => d.rec!);
    if (stage.eagerTransaction) end.open = await transactionOf(partition, end.lastOffsets, (tx) => sendOffsets(tx, partition, end.lastOffsets));
    const state = (stage.load ? await stage.load(recs, stillOwner) : undefined) as S;
    const items: Array<{ rec: StageRecord<I>; result: StageResult }> = [];
    const byTopic = new Map<string, OutMessage[]>();
    const push = (topic: string, om: OutMessage) => {
      const list = byTopic.get(topic) ?? [];
      list.push(om);
      byTopic.set(topic, list);
    };
    for (const d of decoded) {
      if (!d.rec) {
        push(stage.dlq, await deadLetter(d.msg, d.reject!.code, d.reject!.detail));
        m.rejected.inc({ stage: stage.name, reason: d.reject!.code });
        log.warn({ topic: d.msg.topic, partition, offset: d.msg.offset, reason: d.reject!.code, detail: d.reject!.detail }, 'record dead-lettered');
        continue;
      }
      const r0 = performance.now();
      let result: StageResult;
      try {
        result = stage.process(d.rec, { state, clock: deps.clock });
      } catch (err) {
        // A pure stage must not throw for data; if it does it is a bug for this record, and the
        // record is dead-lettered rather than blocking the partition forever.
        if (err instanceof PipelineError && err.kind !== 'rejected') throw err;
        result = reject(err instanceof PipelineError ? err.code : 'stage_exception', (err as Error).message ?? String(err));
      }
      items.push({ rec: d.rec, result });
      for (const o of result.outputs ?? []) {
        const headers: Headers = { ...(d.rec.traceId ? { trace_id: d.rec.traceId } : {}), ...o.headers };
        push(o.topic, { key: o.key, value: await deps.codec.encode(o.topic, o.value), headers });
      }
      if (result.kind === 'reject') {
        const dlq = result.dlq ?? stage.dlq;
        push(dlq, await deadLetter(d.msg, result.code, result.detail, result.signalId, undefined, dlq));
        m.rejected.inc({ stage: stage.name, reason: result.code });
        log.info({ partition, offset: d.msg.offset, reason: result.code, detail: result.detail, trace_id: d.rec.traceId }, 'record rejected');
      }
      m.latency.observe({ stage: stage.name }, (performance.now() - r0) / 1000);
    }
    if (end.open) sendInto(end.open, byTopic);
    if (stage.persist) {
      // A member frozen past its session timeout must not write the chunk's effects over those of
      // the partition's new owner either.
      await stillOwner();
      await stage.persist(items, state);
    }
    return byTopic;
  };

  /**
   * Process one chunk and commit it with its offsets. Throws on retriable/fatal errors. A chunk is
   * the records of one input partition, or, for co-partitioned inputs, those gathered from several
   * topics' partitions of one number (`parts`, each in offset order).
   */
  const processChunk = async (partition: number, whole: ChunkPart[]): Promise<void> => {
    const t0 = performance.now();
    const parts = await unseen(partition, whole);
    if (parts.length === 0) return;
    const decoded = await decodeAll(parts.length === 1 ? parts[0]!.messages : parts.flatMap((p) => p.messages));
    // kafkajs has no KIP-447: the broker does not check a transaction's offsets against the group
    // generation, and the next owner fences this producer only once it takes its first chunk
    // (`unseen`). A member frozen past its session timeout (a zombie) must neither persist nor
    // commit a chunk of a partition given away meanwhile, nor (placement) call the exchange for it:
    // ask the group (a heartbeat, sent when one is due, which it is after any long stall).
    const stillOwner = ownership(parts[0]!.ctl);
    const end: ChunkEnd = { lastOffsets: parts.map((p) => ({ topic: p.topic, offset: p.messages[p.messages.length - 1]!.offset })), open: null };
    const decideIt = () => decideChunk(partition, decoded, stillOwner, end);
    const across = stage.lockAcross;
    let byTopic: Map<string, OutMessage[]>;
    try {
      // (Chunks of one partition number of co-partitioned inputs never run at once: see `gather`.)
      byTopic = stage.exclusive ? await exclusive(across ? () => across(decideIt) : decideIt) : await decideIt();
    } catch (err) {
      if (end.open) await abandon(end.open);
      throw err;
    }

    await commit(partition, byTopic, end.lastOffsets, stillOwner, parts[0]!.ctl, end.open);
    for (const p of parts) m.recordsIn.inc({ stage: stage.name, topic: p.topic }, p.messages.length);
    for (const [topic, list] of byTopic) m.recordsOut.inc({ stage: stage.name, topic }, list.length);
    m.batch.observe({ stage: stage.name }, (performance.now() - t0) / 1000);
  };

  let unexpectedStreak = 0;
  const seen = { total: 0, byReason: {} as Record<string, number>, last: null as ReturnType<RunningStage['conflicts']>['last'] };

  /** The one record left of a chunk that fails for good: its dead letter (and its halt) instead of its outputs. */
  const conflictOne = async (topic: string, partition: number, msg: InMessage, f: RecordFailure, ctl: BatchControl): Promise<void> => {
    const stillOwner = ownership(ctl);
    await stillOwner();
    const source = `${msg.topic}/${msg.partition}/${msg.offset}`;
    const action: ConflictAction = stage.conflict ?? 'dead_letter';
    const at = deps.clock.now();
    await deps.conflicts?.record({ stage: stage.name, groupId: deps.groupId, source, key: msg.key, reason: f.reason, action, pgCode: f.pgCode, constraint: f.constraint, detail: f.detail, at });
    const letter = async (keep?: number) => new Map([[stage.dlq, [await deadLetter(msg, f.reason, f.detail, null, keep)]]]);
    try {
      await commit(partition, await letter(), [{ topic, offset: msg.offset }], stillOwner, ctl);
    } catch (err) {
      if (recordFailure(err)?.reason !== 'record_too_large') throw err;
      await commit(partition, await letter(DLQ_KEEP_BYTES), [{ topic, offset: msg.offset }], stillOwner, ctl);
    }
    m.rejected.inc({ stage: stage.name, reason: f.reason });
    m.conflicts.inc({ stage: stage.name, reason: f.reason, action });
    seen.total += 1;
    seen.byReason[f.reason] = (seen.byReason[f.reason] ?? 0) + 1;
    seen.last = { source, reason: f.reason, action, detail: f.detail.slice(0, 500), at };
    log.error({ topic, partition, offset: msg.offset, key: msg.key, reason: f.reason, pg_code: f.pgCode, constraint: f.constraint, detail: f.detail, action }, action === 'halt' ? 'record conflicts with stored state: dead-lettered, trading HALTED' : 'record conflicts with stored state: dead-lettered');
  };

  const handleChunk = async (topic: string, partition: number, chunk: InMessage[], ctl: BatchControl): Promise<boolean> => {
    for (let attempt = 0; ; attempt++) {
      if (stopping || !ctl.isRunning() || ctl.isStale()) return false;
      try {
        await processChunk(partition, [{ topic, messages: chunk, ctl }]);
        unexpectedStreak = 0;
        ctl.resolveOffset(chunk[chunk.length - 1]!.offset);
        await ctl.heartbeat().catch(() => {});
        return true;
      } catch (caught) {
        let err = caught;
        // Not the owner any more (the group moved on, or the next owner fenced this producer): stop
        // here without retrying, which would initialise the producer again and fence the rightful
        // owner in turn; the consumer rejoins and the owner processes the chunk.
        if (err instanceof PartitionLostError || isFenced(err)) {
          log.warn({ err: (err as Error).message, partition, offset: chunk[0]?.offset }, 'partition no longer owned; chunk left to its owner');
          return false;
        }
        // A bug of the stage met on one record (a TypeError, ...) is handled like a record that cannot
        // be stored, unless it keeps happening record after record: then it is the stage, not the data.
        const failure = recordFailure(err) ?? (unexpectedStreak < UNEXPECTED_STREAK_MAX ? unexpectedFailure(err) : null);
        if (failure && chunk.length > 1) {
          // Which record? Each one again as a chunk of its own; the others commit as usual.
          log.warn({ partition, offset: chunk[0]!.offset, records: chunk.length, reason: failure.reason, detail: failure.detail }, 'a record of the chunk cannot be stored; isolating it');
          for (const one of chunk) if (!(await handleChunk(topic, partition, [one], ctl))) return false;
          return true;
        }
        if (failure) {
          try {
            if (failure.reason === 'stage_error') unexpectedStreak++;
            await conflictOne(topic, partition, chunk[0]!, failure, ctl);
            ctl.resolveOffset(chunk[0]!.offset);
            await ctl.heartbeat().catch(() => {});
            return true;
          } catch (e) {
            if (e instanceof PartitionLostError || isFenced(e)) return false;
            err = e; // recording it failed (database or broker away): retried below like any chunk
          }
        }
        const kind = classify(err);
        if (kind === 'fatal' && !isKafkaTransient(err) && !isPgTransient(err)) {
          log.fatal({ err, partition, offset: chunk[0]?.offset }, 'fatal error in stage; stopping');
          stopping = true;
          deps.onFatal(err instanceof Error ? err : new FatalError('fatal', String(err)));
          return false;
        }
        const code = (err as PipelineError).code ?? (err as Error).name ?? 'error';
        m.retries.inc({ stage: stage.name, code: String(code) });
        const delay = backoffMs(attempt, 100, deps.retryMaxMs);
        log.warn({ err: (err as Error).message, code, attempt: attempt + 1, delayMs: delay, partition }, 'retriable error; retrying chunk');
        await sleep(delay);
        await ctl.heartbeat().catch(() => {});
      }
    }
  };

  // Co-partitioned inputs: the chunks that wait for one partition number are gathered and run as one
  // (one load, one persist, one Kafka transaction carrying every part's offsets). A batch handler
  // queues its next chunk only once the last one is done, so a gathered chunk holds at most one
  // chunk (≤ batchMax records) per input topic. One gathering runs per partition number at a time,
  // so chunks of one number never overlap; different numbers do. A gathered chunk that fails for
  // any reason but a lost partition runs again part by part through handleChunk (its retries and
  // record isolation).
  const waiting = new Map<number, Gathered[]>();
  const gathering = new Set<number>();
  const gather = (topic: string, partition: number, messages: InMessage[], ctl: BatchControl): Promise<boolean> =>
    new Promise<boolean>((resolve, reject) => {
      const queue = waiting.get(partition) ?? [];
      queue.push({ topic, messages, ctl, resolve, reject });
      waiting.set(partition, queue);
      if (gathering.has(partition)) return;
      gathering.add(partition);
      void drain(partition);
    });
  const drain = async (partition: number): Promise<void> => {
    try {
      // Each round first lets the batch handlers run that are about to queue (a part that just
      // committed queues its batch's next chunk; the other partitions of a fetch arrive one by one).
      for (let queue = await turn(partition); queue?.length; queue = await turn(partition)) {
        waiting.delete(partition);
        const taken = queue;
        try {
          await runGathered(partition, taken);
        } catch (err) {
          for (const g of taken) g.reject(err); // (no effect on a part already settled)
        }
      }
    } finally {
      gathering.delete(partition);
    }
  };
  const turn = async (partition: number): Promise<Gathered[] | undefined> => {
    await new Promise((r) => setImmediate(r));
    return waiting.get(partition);
  };
  const runGathered = async (partition: number, taken: Gathered[]): Promise<void> => {
    const live = taken.filter((g) => {
      const running = !stopping && g.ctl.isRunning() && !g.ctl.isStale();
      if (!running) g.resolve(false);
      return running;
    });
    if (live.length > 1) {
      try {
        await processChunk(partition, live);
        unexpectedStreak = 0;
        for (const g of live) g.ctl.resolveOffset(g.messages[g.messages.length - 1]!.offset);
        await live[0]!.ctl.heartbeat().catch(() => {});
        m.gathered.inc({ stage: stage.name }, live.length);
        for (const g of live) g.resolve(true);
        return;
      } catch (err) {
        if (err instanceof PartitionLostError || isFenced(err)) {
          log.warn({ err: (err as Error).message, partition }, 'partition no longer owned; chunk left to its owner');
          for (const g of live) g.resolve(false);
          return;
        }
        log.warn({ err: (err as Error).message, partition, parts: live.length }, 'gathered chunk failed; running its parts one by one');
      }
    }
    for (const g of live) {
      try {
        g.resolve(await handleChunk(g.topic, partition, g.messages, g.ctl));
      } catch (err) {
        g.reject(err);
      }
    }
  };

  consumer.onGroupJoin((info) => {
    joined = true;
    joins += 1;
    log.info({ memberId: info.memberId, assigned: info.assigned, protocol: info.protocol }, 'joined consumer group');
  });
  consumer.onCrash((err, restart) => {
    joined = false;
    log.error({ err, restart }, 'consumer crashed');
  });

  await connectWithBackoff(() => consumer.connect(), log, deps.retryMaxMs);
  await consumer.subscribe(inputs, deps.fromBeginning ?? true);
  await consumer.run(
    async (batch, ctl) => {
      m.lag.set({ stage: stage.name, topic: batch.topic, partition: String(batch.partition) }, batch.lag);
      for (let i = 0; i < batch.messages.length; i += deps.batchMax) {
        const chunk = batch.messages.slice(i, i + deps.batchMax);
        const done = coPartitioned ? await gather(batch.topic, batch.partition, chunk, ctl) : await handleChunk(batch.topic, batch.partition, chunk, ctl);
        if (!done) return;
      }
    },
    { partitionsConcurrently: Math.max(1, deps.partitionsConcurrently ?? DEFAULT_PARTITIONS_CONCURRENTLY) },
  );
  log.info({ input: stage.input, dlq: stage.dlq }, 'stage running');

  return {
    name: stage.name,
    joined: () => joined,
    conflicts: () => ({ total: seen.total, byReason: { ...seen.byReason }, last: seen.last }),
    stop: async () => {
      stopping = true;
      // kafkajs waits for the batch in flight, then leaves the group.
      await consumer.disconnect().catch((err) => log.warn({ err }, 'consumer disconnect failed'));
      await Promise.all([...producers.keys()].map(dropProducer));
      await (await admin?.catch(() => null))?.disconnect().catch(() => {});
      log.info('stage stopped');
    },
  };
}

/**
 * PostgreSQL rolled the transaction back because of a deadlock or a serialization failure: the
 * documented remedy is to run it again (stages write rows other stages also lock).
 */
function isPgTransient(err: unknown): boolean {
  const code = pgErrorCode(err);
  return code === '40P01' || code === '40001';
}

/** This member is no longer in the group's current generation (it was frozen, or the group rebalanced). */
function isMembershipLost(err: unknown): boolean {
  return /REBALANCE_IN_PROGRESS|UNKNOWN_MEMBER_ID|ILLEGAL_GENERATION|FENCED_INSTANCE_ID/.test((err as { type?: string })?.type ?? '');
}

/** The transactional producer was fenced: another instance initialised the same transactional id. */
function isFenced(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if (/PRODUCER_FENCED|INVALID_PRODUCER_EPOCH/.test((e as { type?: string }).type ?? '')) return true;
  }
  return false;
}

/** This member no longer owns the chunk's partition: the chunk is left to the owner, not retried. */
export class PartitionLostError extends Error {
  constructor(cause: unknown) {
    super(`this member left the group's current generation: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'PartitionLostError';
  }
}

/** Broker hiccups surface as plain kafkajs errors; they are worth retrying rather than dying. */
export function isKafkaTransient(err: unknown): boolean {
  const e = err as { name?: string; retriable?: boolean; type?: string };
  if (kafkaPermanentType(err) || kafkaFatalType(err)) return false;
  return e?.retriable === true || /^KafkaJS/.test(e?.name ?? '') || /CONCURRENT_TRANSACTIONS|COORDINATOR|NOT_LEADER|PRODUCER_FENCED|INVALID_PRODUCER_EPOCH/.test(e?.type ?? '');
}

/** First bytes of the original value a dead letter keeps when the whole record would not fit. */
const DLQ_KEEP_BYTES = 64 * 1024;

/** Broker answers that the same records will get again however often they are sent. */
const KAFKA_PERMANENT = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'INVALID_TIMESTAMP']);

/**
 * Broker answers about the setup, not about a record: no retry helps and no record is to blame
 * (permissions, a client or topic the broker does not support). The stage stops loudly: exit 70,
 * and whoever fixes the setup restarts it.
 */
const KAFKA_FATAL = new Set([
  'TOPIC_AUTHORIZATION_FAILED', 'GROUP_AUTHORIZATION_FAILED', 'CLUSTER_AUTHORIZATION_FAILED', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'SASL_AUTHENTICATION_FAILED', 'UNSUPPORTED_VERSION', 'UNSUPPORTED_FOR_MESSAGE_FORMAT', 'INVALID_REQUIRED_ACKS', 'INVALID_CONFIG', 'TRANSACTIONAL_ID_NOT_FOUND',
]);

function kafkaType(err: unknown, set: ReadonlySet<string>): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown; originalError?: unknown }).cause ?? (e as { originalError?: unknown }).originalError, depth++) {
    const t = (e as { type?: unknown }).type;
    if (typeof t === 'string' && set.has(t)) return t;
  }
  return undefined;
}
const kafkaPermanentType = (err: unknown) => kafkaType(err, KAFKA_PERMANENT);
const kafkaFatalType = (err: unknown) => kafkaType(err, KAFKA_FATAL);

/** PostgreSQL's own words (message and detail: which key, which value), not the client's summary. */
function pgMessage(err: unknown): string {
  let best = (err as Error)?.message ?? String(err);
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const x = e as { code?: unknown; message?: unknown; detail?: unknown };
    if (typeof x.code === 'string' && /^[0-9A-Z]{5}$/.test(x.code) && typeof x.message === 'string') {
      best = typeof x.detail === 'string' && x.detail ? `${x.message} (${x.detail})` : x.message;
    }
  }
  return best;
}

/** Records in a row, each alone, on which the stage failed unexpectedly before the runner stops it (exit 70). */
const UNEXPECTED_STREAK_MAX = 3;

/**
 * A plain exception of the stage's own code (not a PipelineError, not from PostgreSQL, the broker or
 * the network): a bug met on this record. Dead-lettered as stage_error, once it is the only record
 * left of its chunk; a streak of them stops the stage (see UNEXPECTED_STREAK_MAX).
 */
function unexpectedFailure(err: unknown): RecordFailure | null {
  if (!(err instanceof Error) || err instanceof PipelineError || /^KafkaJS/.test(err.name)) return null;
  // Anything that carries a system or server code, or names a connection, is about the infrastructure.
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const x = e as { code?: unknown; name?: unknown };
    if (typeof x.code === 'string' || typeof x.code === 'number' || /Connection|Terminated|Timeout|Abort|Socket|Network|Unavailable/i.test(String(x.name ?? ''))) return null;
  }
  return { reason: 'stage_error', detail: `${err.name}: ${err.message}`, pgCode: null, constraint: null };
}

export interface RecordFailure {
  reason: 'state_conflict' | 'invalid_record' | 'record_too_large' | 'stage_error';
  detail: string;
  pgCode: string | null;
  constraint: string | null;
}

/**
 * Errors that the same records meet on every attempt: PostgreSQL's integrity violations (class 23:
 * a unique key or a reference another row holds, a check) and data exceptions (class 22: a value it
 * cannot store), and the broker's size and validity refusals. Anything else (connections, locks,
 * schema errors of class 42, bugs) is not about the record and keeps its usual handling.
 */
export function recordFailure(err: unknown): RecordFailure | null {
  const code = pgErrorCode(err);
  const constraint = violatedConstraint(err) ?? null;
  const message = code ? pgMessage(err) : ((err as Error)?.message ?? String(err));
  if (code === '23505' || code === '23503' || code === '23P01') return { reason: 'state_conflict', detail: message, pgCode: code, constraint };
  if (code && (code.startsWith('22') || code.startsWith('23'))) return { reason: 'invalid_record', detail: message, pgCode: code, constraint };
  const kafka = kafkaPermanentType(err);
  if (kafka) return { reason: kafka === 'INVALID_RECORD' || kafka === 'INVALID_TIMESTAMP' ? 'invalid_record' : 'record_too_large', detail: `${kafka}: ${message}`, pgCode: null, constraint: null };
  return null;
}


