// The Kafka port: the only interface the rest of the code sees. The kafkajs adapter below is the
// single place that imports kafkajs, so the client can be swapped (e.g. for a librdkafka binding)
// by writing another adapter with the same shape.
import { AssignerProtocol, Kafka, PartitionAssigners, Partitioners, logLevel as KafkaLogLevel, type PartitionAssigner, type Consumer, type Producer, type Admin, type Transaction, type IHeaders, type LogEntry } from 'kafkajs';
import { createRequire } from 'node:module';
import type { Logger } from './logger.ts';
import { RetriableError } from './errors.ts';
import { retry } from './retry.ts';

export type Headers = Record<string, string>;

export interface OutMessage {
  key: string | null;
  value: Buffer;
  headers?: Headers;
  partition?: number;
}

export interface InMessage {
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  value: Buffer | null;
  headers: Headers;
  timestamp: number;
}

export interface Batch {
  topic: string;
  partition: number;
  messages: InMessage[];
  /** High watermark minus the last offset of the batch: how far behind the consumer is. */
  lag: number;
}

export interface BatchControl {
  /** Mark everything up to and including `offset` as processed (positions the consumer). */
  resolveOffset(offset: string): void;
  heartbeat(): Promise<void>;
  isRunning(): boolean;
  isStale(): boolean;
  /**
   * Commit these offsets through the group, as this member of its current generation (one
   * OffsetCommit request, not retried): the coordinator refuses it from a member that has left the
   * generation (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID), which is then thrown.
   */
  commitOffsets(offsets: OffsetCommit[]): Promise<void>;
}

export interface OffsetCommit {
  topic: string;
  partition: number;
  /** The next offset to read (last processed + 1), Kafka's convention. */
  offset: string;
}

export interface TransactionPort {
  send(topic: string, messages: OutMessage[]): Promise<void>;
  /**
   * The same for several topics in one produce request per broker (and one AddPartitionsToTxn for
   * their partitions), where `send` per topic costs both per topic, one round trip after another.
   */
  sendBatch(batches: Array<{ topic: string; messages: OutMessage[] }>): Promise<void>;
  sendOffsets(groupId: string, offsets: OffsetCommit[]): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export interface ProducerPort {
  connect(): Promise<void>;
  /** Idempotent, acks=all. Resolves once every replica in the ISR has the records. */
  send(topic: string, messages: OutMessage[]): Promise<void>;
  /** As `send`, and where the records landed: the offset of the first one per partition. */
  sendAt(topic: string, messages: OutMessage[]): Promise<Array<{ partition: number; offset: string }>>;
  /** The same for several topics in one produce request (per topic, in the given order). */
  sendBatch(batches: Array<{ topic: string; messages: OutMessage[] }>): Promise<void>;
  /** Only for producers made with a transactionalId. */
  transaction(): Promise<TransactionPort>;
  disconnect(): Promise<void>;
}

export interface ConsumerPort {
  connect(): Promise<void>;
  subscribe(topics: string[], fromBeginning: boolean): Promise<void>;
  /** Process batches; offsets are never auto-committed. One partition at a time per call. */
  run(handler: (batch: Batch, ctl: BatchControl) => Promise<void>, opts?: { partitionsConcurrently?: number }): Promise<void>;
  commitOffsets(offsets: OffsetCommit[]): Promise<void>;
  seek(topic: string, partition: number, offset: string): void;
  /** Every join of the group: this member, what it was given, and by which assignor (the group's protocol). */
  onGroupJoin(cb: (info: { memberId: string; assigned: Record<string, number[]>; protocol: string }) => void): void;
  /** Every crash kafkajs reports, restarted or not (for logs and readiness; the fatal ones also reach onFatal). */
  onCrash(cb: (err: Error, restart: boolean) => void): void;
  disconnect(): Promise<void>;
}

export interface TopicSpec {
  topic: string;
  partitions: number;
  config: Record<string, string>;
}

export interface AdminPort {
  connect(): Promise<void>;
  /** Idempotent: existing topics are left alone. Returns the names it created. */
  ensureTopics(specs: TopicSpec[]): Promise<string[]>;
  listTopics(): Promise<string[]>;
  deleteTopics(topics: string[]): Promise<void>;
  describeCluster(): Promise<{ brokers: Array<{ nodeId: number; host: string; port: number }>; controller: number | null; clusterId: string }>;
  topicOffsets(topic: string): Promise<Array<{ partition: number; high: string; low: string }>>;
  groupOffsets(groupId: string, topic: string): Promise<Array<{ partition: number; offset: string }>>;
  /**
   * The group's committed offset of partition `partition` of each topic (null: none committed), as
   * it stands once no transaction that commits one of them is pending: OffsetFetch v7 with
   * `require_stable` (KIP-447; added by this project's kafkajs patch), to which the coordinator
   * answers UNSTABLE_OFFSET_COMMIT until a completed transaction's offsets are applied, asked again
   * here for up to `timeoutMs`. Without it a reader can get the offset from before a commit whose
   * transaction already reported complete. One request for all the topics.
   */
  stableOffsets(groupId: string, topics: string[], partition: number, timeoutMs?: number): Promise<Map<string, bigint | null>>;
  /** Consumer groups the cluster knows (tools: capturing a namespace). */
  listGroups(): Promise<string[]>;
  /** Delete a consumer group and its committed offsets; the broker refuses while it has members. */
  deleteGroup(groupId: string): Promise<void>;
  disconnect(): Promise<void>;
}

export interface KafkaPort {
  admin(): AdminPort;
  producer(opts?: { transactionalId?: string; transactionTimeoutMs?: number }): ProducerPort;
  /**
   * `onFatal` is required: kafkajs gives up on a consumer after a non-retriable error (seen in the
   * chaos run: "coordinator is not aware of this member" after a broker SIGKILL) and then consumes
   * nothing more, silently. The port calls onFatal once for that, unless the consumer is being
   * disconnected; a service stops (its supervisor restarts it), a tool fails.
   *
   * `minBytes` (default 1: answer as soon as anything is there): the broker holds a fetch until that
   * much has arrived or `maxWaitMs` has passed, so a consumer that tolerates delay gets one
   * response per wait instead of one per record trickle; a backlog larger than it still answers at
   * once.
   *
   * The client's `fetchIdleMaxWaitMs` (never below `maxWaitMs`; without it, none) is the wait once
   * IDLE_AFTER_EMPTY_FETCHES fetches in a row brought nothing; the first fetch that brings a record
   * goes back to `maxWaitMs`. The broker answers a fetch as soon as records arrive (a read_committed
   * one at the commit), so the wait sets what an idle consumer costs, not how late a record is; a
   * busy consumer keeps the short wait and polls exactly as without it.
   *
   * `coPartitioned`: partition n of every subscribed topic goes to one member of the group (see
   * coPartitionedAssigner), for a consumer that handles the topics' partition n together.
   */
  consumer(opts: { groupId: string; readCommitted?: boolean; sessionTimeoutMs?: number; maxBytesPerPartition?: number; maxWaitMs?: number; minBytes?: number; coPartitioned?: boolean; onFatal: (err: Error) => void }): ConsumerPort;
}

// ---------------------------------------------------------------------------------------------
// kafkajs adapter

const toHeaders = (h?: Headers): IHeaders | undefined => h;

function fromHeaders(h: IHeaders | undefined): Headers {
  const out: Headers = {};
  if (!h) return out;
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    const one = Array.isArray(v) ? v[v.length - 1] : v;
    if (one !== undefined) out[k] = Buffer.isBuffer(one) ? one.toString('utf8') : String(one);
  }
  return out;
}

const toKafkaMessages = (messages: OutMessage[]) =>
  messages.map((m) => ({ key: m.key, value: m.value, headers: toHeaders(m.headers), partition: m.partition }));

function pinoLogCreator(logger: Logger) {
  return () => ({ namespace, level, log }: LogEntry) => {
    const { message, ...rest } = log;
    const fields = { kafkajs: namespace, ...rest };
    // kafkajs logs every error response it then retries (e.g. CONCURRENT_TRANSACTIONS after each
    // commit, coordinator loading) at ERROR: those are debug noise; what it gives up on is thrown.
    const retried = /^(Response |Failed to send messages|Failed to connect to seed broker)/.test(message) || 'retryCount' in rest;
    if (level === KafkaLogLevel.ERROR || level === KafkaLogLevel.WARN) {
      if (retried || /Limiting retries for the idempotent producer/.test(message)) logger.debug(fields, message);
      else logger.warn(fields, message);
    }
    else if (level === KafkaLogLevel.INFO) logger.debug(fields, message);
    else logger.trace(fields, message);
  };
}

/**
 * kafkajs asks the cluster who the coordinator is (a FindCoordinator round trip) before every
 * transactional request: AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn each wait
 * for one first. Measured in the bench, that was 2,559 of 11,000 requests and about a third of the
 * round trips of every transaction. The Java client remembers its coordinators until a request
 * says they moved; kafkajs (2.2.4, no longer maintained) has no such cache and no hook for one, so
 * the port adds it to kafkajs's Cluster here, the one place that knows kafkajs: answers are kept
 * per cluster id, coordinator type and group/transactional id for `ttlMs`. kafkajs cannot tell the
 * cache that a coordinator moved, so an answer is never trusted for longer than that: a request to
 * a former coordinator fails with a retriable error, which kafkajs retries with backoff (its retry
 * budget is seconds, the TTL is shorter), and the retry after expiry asks the cluster again.
 */
interface ClusterInternals {
  brokerPool?: { metadata?: { clusterId?: string } | null };
  findGroupCoordinatorMetadata(args: { groupId: string; coordinatorType?: number }): Promise<unknown>;
}

/** The lookup cache's settings (tests set the clock) and its entries. */
export const coordinatorLookups = {
  ttlMs: 1_000,
  now: Date.now as () => number,
  entries: new Map<string, { at: number; answer: Promise<unknown> }>(),
};

(function cacheCoordinatorLookups(): void {
  const Cluster = createRequire(import.meta.url)('kafkajs/src/cluster/index.js') as { prototype: ClusterInternals };
  const ask = Cluster.prototype.findGroupCoordinatorMetadata;
  Cluster.prototype.findGroupCoordinatorMetadata = function (this: ClusterInternals, args) {
    const clusterId = this.brokerPool?.metadata?.clusterId;
    if (!clusterId) return ask.call(this, args);
    const { entries, ttlMs, now } = coordinatorLookups;
    const key = `${clusterId}|${args.coordinatorType ?? 0}|${args.groupId}`;
    const hit = entries.get(key);
    if (hit && now() - hit.at < ttlMs) return hit.answer;
    const entry = { at: now(), answer: ask.call(this, args) };
    entries.set(key, entry);
    // A failed lookup is never served from the cache.
    entry.answer.catch(() => entries.get(key) === entry && entries.delete(key));
    return entry.answer;
  };
})();

/**
 * A group assignor that gives partition n of every topic to one member: members sorted by id, the
 * topic's partition n to the (n mod count)-th of those subscribed to it. For a stage over
 * co-partitioned topics (keyed alike, the same partition count), which handles partition n of all
 * of them together and commits it through one transactional id per partition number: kafkajs's
 * RoundRobin deals topic-partitions out one by one across topics, so with two members partition 0
 * of one topic and of another land on different members, which then fence each other on that id.
 * The consumer lists RoundRobin after it: the group takes the first protocol every member supports,
 * so a group that still holds a member of an earlier version keeps RoundRobin until it leaves.
 */
export const coPartitionedAssigner: PartitionAssigner = ({ cluster }) => ({
  name: 'CoPartitionedAssigner',
  version: 0,
  async assign({ members, topics }) {
    const subscribed = new Map(members.map((m) => [m.memberId, new Set(AssignerProtocol.MemberMetadata.decode(m.memberMetadata)?.topics ?? [])]));
    const assignment = new Map<string, Record<string, number[]>>();
    for (const topic of topics) {
      const takers = members.map((m) => m.memberId).filter((id) => subscribed.get(id)!.has(topic)).sort();
      if (takers.length === 0) continue;
      const partitions = cluster.findTopicPartitionMetadata(topic).map((m) => m.partitionId).sort((a, b) => a - b);
      for (const partition of partitions) {
        const member = takers[partition % takers.length]!;
        const mine = assignment.get(member) ?? {};
        (mine[topic] ??= []).push(partition);
        assignment.set(member, mine);
      }
    }
    return [...assignment].map(([memberId, a]) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment: a, userData: Buffer.alloc(0) }),
    }));
  },
  protocol({ topics }) {
    return { name: 'CoPartitionedAssigner', metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }) };
  },
});

/**
 * onFatal for tools (CLI commands, the bench, chaos readers, tests' readers): a consumer kafkajs will
 * not restart ends the process with the reason and exit code 70, rather than leave the tool waiting.
 */
export function failTool(what: string): (err: Error) => void {
  return (err) => {
    process.stderr.write(`${what}: the Kafka consumer stopped for good: ${err.message}\n`);
    process.exit(70);
  };
}

/** Called for every request a client of the port answered: kafkajs's API name, and the round trip. */
export type KafkaRequestObserver = (api: string, seconds: number) => void;

/** Called for every fetch a consumer of the port made: its group, and whether it waited as idle. */
export type KafkaFetchObserver = (groupId: string, wait: 'busy' | 'idle') => void;

/**
 * Empty fetches in a row before a consumer waits `idleMaxWaitMs`: about a second of nothing at the
 * default 100 ms, so a stage between two signals a few hundred ms apart keeps the short wait.
 */
export const IDLE_AFTER_EMPTY_FETCHES = 10;

/**
 * `fetchMaxWaitMs`: the default long-poll wait of this client's consumers (a consumer's own
 * `maxWaitMs` wins); 100 ms when not given. `fetchIdleMaxWaitMs`: their default idle wait (see
 * `consumer`); when not given, the same as the wait (no idle wait).
 */
export function createKafka(opts: { brokers: string[]; clientId: string; logger: Logger; connectionTimeoutMs?: number; fetchMaxWaitMs?: number; fetchIdleMaxWaitMs?: number; onRequest?: KafkaRequestObserver; onFetch?: KafkaFetchObserver }): KafkaPort {
  const kafka = new Kafka({
    clientId: opts.clientId,
    brokers: opts.brokers,
    logLevel: KafkaLogLevel.WARN,
    logCreator: pinoLogCreator(opts.logger.child({ component: 'kafkajs' })),
    connectionTimeout: opts.connectionTimeoutMs ?? 3000,
    retry: { initialRetryTime: 100, retries: 8, maxRetryTime: 5000 },
  });

  // Request counts by API are what the broker's CPU goes to (one transaction is four or more
  // requests, whatever its size): kafkajs reports each answered request as an instrumentation event.
  const observed = <C extends Producer | Consumer | Admin>(c: C): C => {
    const onRequest = opts.onRequest;
    if (onRequest) {
      const on = c.on as (event: string, cb: (e: { payload: { apiName: string; duration: number } }) => void) => void;
      on.call(c, c.events.REQUEST, (e) => onRequest(e.payload.apiName, e.payload.duration / 1000));
    }
    return c;
  };

  return {
    admin: () => wrapAdmin(observed(kafka.admin())),
    producer: (p = {}) =>
      wrapProducer(
        () => observed(kafka.producer({
          idempotent: true,
          // Exactly-once transactions in kafkajs require a single in-flight request.
          maxInFlightRequests: p.transactionalId ? 1 : 5,
          transactionalId: p.transactionalId,
          transactionTimeout: p.transactionTimeoutMs ?? 60_000,
          // After a commit the coordinator writes the markers asynchronously and answers the next
          // transaction's first request with CONCURRENT_TRANSACTIONS for a few ms: retry quickly
          // (the Java client does the same) instead of kafkajs' default 100+ ms backoff.
          retry: p.transactionalId ? { initialRetryTime: 5, maxRetryTime: 1000, retries: 30 } : undefined,
          // Java-compatible murmur2 partitioner, set explicitly (kafkajs v2 default, but say so).
          createPartitioner: Partitioners.DefaultPartitioner,
        })),
        Boolean(p.transactionalId),
      ),
    consumer: (c) => {
      const maxWaitMs = c.maxWaitMs ?? opts.fetchMaxWaitMs ?? 100;
      const consumer = observed(kafka.consumer({
        groupId: c.groupId,
        readUncommitted: c.readCommitted === false,
        sessionTimeout: c.sessionTimeoutMs ?? 10_000,
        heartbeatInterval: 3000,
        maxBytesPerPartition: c.maxBytesPerPartition ?? 1_048_576,
        maxWaitTimeInMs: maxWaitMs,
        // patches/kafkajs+*.patch: kafkajs reads one wait per consumer; the patch adds the idle one.
        idleMaxWaitTimeInMs: Math.max(opts.fetchIdleMaxWaitMs ?? maxWaitMs, maxWaitMs),
        idleAfterEmptyFetches: IDLE_AFTER_EMPTY_FETCHES,
        minBytes: c.minBytes ?? 1,
        allowAutoTopicCreation: false,
        ...(c.coPartitioned ? { partitionAssigners: [coPartitionedAssigner, PartitionAssigners.roundRobin] } : {}),
      }));
      const onFetch = opts.onFetch;
      if (onFetch) consumer.on(consumer.events.FETCH, (e) => onFetch(c.groupId, e.payload.maxWaitTime > maxWaitMs ? 'idle' : 'busy'));
      return wrapConsumer(c.onFatal, consumer);
    },
  };
}

/**
 * The idempotent producer's sequence state no longer matches the broker's. kafkajs never recovers
 * from it (every later send to the partition fails the same way; the Java client bumps its epoch,
 * KIP-360): a new producer, with a new producer id, does. Found by the chaos run: after a broker
 * SIGKILL the signal bridge failed "out of order sequence number" 262 times in a row, for good.
 */
export function sequenceBroken(err: unknown): boolean {
  for (let e = err as { type?: string; cause?: unknown; originalError?: unknown } | undefined, depth = 0; e && depth < 4; e = (e.cause ?? e.originalError) as typeof e, depth++) {
    if (/^(OUT_OF_ORDER_SEQUENCE_NUMBER|UNKNOWN_PRODUCER_ID)$/.test(e.type ?? '')) return true;
  }
  return false;
}

function wrapProducer(make: () => Producer, transactional: boolean): ProducerPort {
  let p = make();
  let connected = false;
  let renewed = false;
  // Not for transactional producers: whoever owns one decides (the stage runner drops it and makes
  // a new one on any failed transaction).
  const guarded = async <T>(f: () => Promise<T>): Promise<T> => {
    if (renewed && connected) {
      await p.connect();
      renewed = false;
    }
    try {
      return await f();
    } catch (err) {
      if (!transactional && sequenceBroken(err)) {
        const old = p;
        p = make();
        renewed = true;
        await old.disconnect().catch(() => {});
      }
      throw err; // the caller retries, with the new producer
    }
  };
  return {
    connect: async () => {
      await p.connect();
      connected = true;
      renewed = false;
    },
    send: async (topic, messages) => void (await guarded(() => p.send({ topic, acks: -1, messages: toKafkaMessages(messages) }))),
    sendAt: async (topic, messages) =>
      (await guarded(() => p.send({ topic, acks: -1, messages: toKafkaMessages(messages) }))).map((m) => ({ partition: m.partition, offset: String(m.baseOffset ?? m.offset ?? '-1') })),
    sendBatch: async (batches) => void (await guarded(() => p.sendBatch({ acks: -1, topicMessages: batches.map((b) => ({ topic: b.topic, messages: toKafkaMessages(b.messages) })) }))),
    transaction: async () => wrapTransaction(await p.transaction()),
    disconnect: async () => {
      connected = false;
      await p.disconnect();
    },
  };
}

function wrapTransaction(t: Transaction): TransactionPort {
  return {
    send: async (topic, messages) => {
      await t.send({ topic, acks: -1, messages: toKafkaMessages(messages) });
    },
    sendBatch: async (batches) => {
      await t.sendBatch({ acks: -1, topicMessages: batches.map((b) => ({ topic: b.topic, messages: toKafkaMessages(b.messages) })) });
    },
    sendOffsets: (groupId, offsets) => {
      const byTopic = new Map<string, Array<{ partition: number; offset: string }>>();
      for (const o of offsets) {
        const list = byTopic.get(o.topic) ?? [];
        list.push({ partition: o.partition, offset: o.offset });
        byTopic.set(o.topic, list);
      }
      return t.sendOffsets({ consumerGroupId: groupId, topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })) });
    },
    commit: () => t.commit(),
    abort: () => t.abort(),
  };
}

function wrapConsumer(onFatal: (err: Error) => void, c: Consumer): ConsumerPort {
  let leaving = false;
  let fatal = false;
  c.on(c.events.CRASH, (e) => {
    if (e.payload.restart || leaving || fatal) return;
    fatal = true;
    onFatal(e.payload.error);
  });
  return {
    connect: () => c.connect(),
    subscribe: (topics, fromBeginning) => c.subscribe({ topics, fromBeginning }),
    run: (handler, opts) =>
      c.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: opts?.partitionsConcurrently ?? 1,
        eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale, commitOffsetsIfNecessary }) => {
          const messages: InMessage[] = batch.messages.map((m) => ({
            topic: batch.topic,
            partition: batch.partition,
            offset: m.offset,
            key: m.key ? m.key.toString('utf8') : null,
            value: m.value,
            headers: fromHeaders(m.headers),
            timestamp: Number(m.timestamp),
          }));
          const lag = Number(batch.offsetLag());
          // Given offsets, kafkajs's commitOffsetsIfNecessary commits them at once through the
          // consumer group (member id and generation), with no retry; consumer.commitOffsets would
          // retry for seconds, and do nothing at all once the consumer stops running.
          const commitOffsets = async (offsets: OffsetCommit[]) => {
            const topics = new Map<string, Array<{ partition: number; offset: string }>>();
            for (const o of offsets) topics.set(o.topic, [...(topics.get(o.topic) ?? []), { partition: o.partition, offset: o.offset }]);
            await commitOffsetsIfNecessary({ topics: [...topics].map(([topic, partitions]) => ({ topic, partitions })) });
          };
          await handler({ topic: batch.topic, partition: batch.partition, messages, lag: Number.isFinite(lag) ? lag : 0 }, { resolveOffset, heartbeat, isRunning, isStale, commitOffsets });
        },
      }),
    commitOffsets: (offsets) => c.commitOffsets(offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset }))),
    seek: (topic, partition, offset) => c.seek({ topic, partition, offset }),
    onGroupJoin: (cb) => {
      c.on(c.events.GROUP_JOIN, (e) => cb({ memberId: e.payload.memberId, assigned: e.payload.memberAssignment as Record<string, number[]>, protocol: e.payload.groupProtocol }));
    },
    onCrash: (cb) => {
      c.on(c.events.CRASH, (e) => cb(e.payload.error, e.payload.restart));
    },
    disconnect: () => {
      leaving = true;
      return c.disconnect();
    },
  };
}

function wrapAdmin(a: Admin): AdminPort {
  return {
    connect: () => a.connect(),
    ensureTopics: async (specs) => {
      const existing = new Set(await a.listTopics());
      const missing = specs.filter((s) => !existing.has(s.topic));
      if (missing.length === 0) return [];
      try {
        await a.createTopics({
          waitForLeaders: true,
          topics: missing.map((s) => ({
            topic: s.topic,
            numPartitions: s.partitions,
            replicationFactor: -1, // broker default: 1 locally, 3 on a real cluster
            configEntries: Object.entries(s.config).map(([name, value]) => ({ name, value })),
          })),
        });
      } catch (err) {
        // Another process created them between listTopics and createTopics: that is success. And a
        // KRaft broker under load may answer kafkajs's wait for the new topics' leaders before its
        // metadata has them (UNKNOWN_TOPIC_OR_PARTITION; kafkajs only waits on LEADER_NOT_AVAILABLE):
        // created, so wait for them below.
        const e = err as { type?: string; errors?: Array<{ type?: string }> };
        const all = e.errors ?? [e];
        if (!all.every((x) => x?.type === 'TOPIC_ALREADY_EXISTS' || x?.type === 'UNKNOWN_TOPIC_OR_PARTITION')) throw err;
        const topics = missing.map((s) => s.topic);
        await retry(
          async () => {
            const md = await a.fetchTopicMetadata({ topics });
            if (md.topics.some((t) => t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0))) throw new RetriableError('topics_not_ready', 'new topics have no leaders yet');
          },
          { retries: 30, minMs: 100, maxMs: 1000, isRetriable: (x) => x instanceof RetriableError || (x as { type?: string })?.type === 'UNKNOWN_TOPIC_OR_PARTITION' || (x as { type?: string })?.type === 'LEADER_NOT_AVAILABLE' },
        );
      }
      return missing.map((s) => s.topic);
    },
    listTopics: () => a.listTopics(),
    deleteTopics: (topics) => a.deleteTopics({ topics }),
    describeCluster: () => a.describeCluster(),
    topicOffsets: async (topic) => (await a.fetchTopicOffsets(topic)).map((p) => ({ partition: p.partition, high: p.high, low: p.low })),
    groupOffsets: async (groupId, topic) => {
      const res = await a.fetchOffsets({ groupId, topics: [topic] });
      return (res[0]?.partitions ?? []).map((p) => ({ partition: p.partition, offset: p.offset }));
    },
    stableOffsets: async (groupId, topics, partition, timeoutMs = 30_000) => {
      const until = Date.now() + timeoutMs;
      const res = await retry(() => a.fetchOffsets({ groupId, topics, partitions: [partition], requireStable: true }), {
        retries: Infinity,
        minMs: 10,
        maxMs: 500,
        isRetriable: (x) => (x as { type?: string })?.type === 'UNSTABLE_OFFSET_COMMIT' && Date.now() < until,
      });
      const out = new Map<string, bigint | null>(topics.map((t) => [t, null]));
      for (const t of res) for (const p of t.partitions) if (p.partition === partition && BigInt(p.offset) >= 0n) out.set(t.topic, BigInt(p.offset));
      return out;
    },
    listGroups: async () => (await a.listGroups()).groups.map((g) => g.groupId),
    deleteGroup: async (groupId) => void (await a.deleteGroups([groupId])),
    disconnect: () => a.disconnect(),
  };
}
