// What the Kafka port adds to kafkajs (runtime/kafka.ts), on the real broker:
// - the coordinator lookup cache: kafkajs asks for the coordinator before every transactional
//   request; with the cache, once per id and TTL. Counted on the wire through kafkajs's own request
//   instrumentation, with the cache's clock held still (no timing in the test), then past the TTL;
// - the request observer behind the kafka_request_duration_seconds metric;
// - the required onFatal of a consumer: called once when kafkajs will not restart it;
// - the co-partitioned assignor: partition n of every topic to one member, and a group that still
//   holds a member without it (an upgrade in progress) falls back to RoundRobin instead of failing;
// - the adaptive long poll (patches/kafkajs+*.patch): the idle wait after empty fetches in a row,
//   the short one again from the fetch that brings a record.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import kafkajs, { Kafka, logLevel } from 'kafkajs';
import { kafkaBrokers } from '../../runtime/config.ts';
import { coordinatorLookups, createKafka, failTool, IDLE_AFTER_EMPTY_FETCHES, sequenceBroken } from '../../runtime/kafka.ts';
import { setTimeout as sleepMs } from 'node:timers/promises';
import { createMetrics } from '../../runtime/metrics.ts';
import { consumeToEnd, consumeUntil, createNamespace, namespace, testCfg, testKafka, testLogger, waitFor } from '../helpers.ts';

test('transactions ask for their coordinators once per TTL, and still commit exactly what they sent', async () => {
  const kafka = testKafka();
  const prefix = namespace('coord');
  const drop = await createNamespace(kafka, prefix, 1);
  const topic = `${prefix}signals.raw`;
  const group = `${prefix}group`;
  let clock = 1_000_000;
  coordinatorLookups.now = () => clock;
  const raw = new Kafka({ brokers: kafkaBrokers(testCfg), clientId: 'coord-test', logLevel: logLevel.NOTHING });
  const producer = raw.producer({ transactionalId: `${prefix}tx`, idempotent: true, maxInFlightRequests: 1 });
  const asked: string[] = [];
  producer.on(producer.events.REQUEST, (e) => {
    if (e.payload.apiName === 'GroupCoordinator') asked.push(e.payload.apiName);
  });
  const transaction = async (n: number) => {
    const tx = await producer.transaction();
    await tx.send({ topic, acks: -1, messages: [{ key: 'k', value: `v${n}` }] });
    await tx.sendOffsets({ consumerGroupId: group, topics: [{ topic, partitions: [{ partition: 0, offset: String(n + 1) }] }] });
    await tx.commit();
  };
  try {
    await producer.connect();
    for (let n = 0; n < 5; n++) await transaction(n);
    // Uncached, each transaction asks four times (AddPartitionsToTxn, AddOffsetsToTxn,
    // TxnOffsetCommit, EndTxn): 20. Cached: once for the transactional id, once for the group.
    assert.equal(asked.length, 2, `lookups in 5 transactions: ${asked.length}`);
    clock += coordinatorLookups.ttlMs;
    await transaction(5);
    assert.equal(asked.length, 4, 'after the TTL both are asked again');
    const got = await consumeUntil(kafka, topic, (all) => all.length >= 6);
    assert.deepEqual(got.map((m) => m.value?.toString()), ['v0', 'v1', 'v2', 'v3', 'v4', 'v5']);
  } finally {
    coordinatorLookups.now = Date.now;
    await producer.disconnect();
    await drop();
  }
});

test('every request a port client makes is observed by API, and lands in kafka_request_duration_seconds', async () => {
  const metrics = createMetrics();
  const seen: string[] = [];
  const kafka = createKafka({ brokers: kafkaBrokers(testCfg), clientId: 'observed', logger: testLogger, onRequest: (api, s) => (seen.push(api), metrics.kafka.request(api, s)) });
  const prefix = namespace('observed');
  const drop = await createNamespace(kafka, prefix, 1);
  const producer = kafka.producer({ transactionalId: `${prefix}tx` });
  const batched = kafka.producer({ transactionalId: `${prefix}tx-batched` });
  try {
    await producer.connect();
    const tx = await producer.transaction();
    await tx.send(`${prefix}signals.raw`, [{ key: 'k', value: Buffer.from('v') }]);
    await tx.commit();
    for (const api of ['CreateTopics', 'InitProducerId', 'AddPartitionsToTxn', 'Produce', 'EndTxn']) assert.ok(seen.includes(api), `${api} observed (seen: ${[...new Set(seen)].join(', ')})`);
    const text = await metrics.registry.metrics();
    const count = (api: string) => Number(new RegExp(`kafka_request_duration_seconds_count\\{api="${api}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
    assert.equal(count('EndTxn'), seen.filter((a) => a === 'EndTxn').length);
    assert.equal(count('Produce'), seen.filter((a) => a === 'Produce').length);
    assert.ok(count('Produce') >= 1);
    // Several topics in one transaction's sendBatch: one produce request and one AddPartitionsToTxn
    // (the broker is a single node), where a send per topic costs one of each per topic. On a
    // producer of its own: right after a commit the coordinator answers the same id's next
    // AddPartitionsToTxn with CONCURRENT_TRANSACTIONS until its markers are written, and kafkajs
    // retries the whole send, which would count twice (a CI run saw exactly that).
    await batched.connect();
    const before = seen.length;
    const tx2 = await batched.transaction();
    await tx2.sendBatch([`${prefix}signals.raw`, `${prefix}signals.valid`, `${prefix}orders.intents`].map((topic) => ({ topic, messages: [{ key: 'k', value: Buffer.from(topic) }] })));
    await tx2.commit();
    const apis = seen.slice(before);
    assert.equal(apis.filter((a) => a === 'Produce').length, 1, `one produce request for three topics (${apis.join(', ')})`);
    assert.equal(apis.filter((a) => a === 'AddPartitionsToTxn').length, 1, `one AddPartitionsToTxn (${apis.join(', ')})`);
    const read = await consumeToEnd(kafka, `${prefix}orders.intents`, 1, { readCommitted: true });
    assert.deepEqual(read.map((m) => m.value?.toString()), [`${prefix}orders.intents`], 'the committed records are read');
  } finally {
    await batched.disconnect();
    await producer.disconnect();
    await drop();
  }
});

test('an idle consumer long-polls with the idle wait after ten empty fetches; the fetch that brings a record is its last, and the record is read', async () => {
  const metrics = createMetrics();
  const waits: Array<'busy' | 'idle'> = [];
  const kafka = createKafka({
    brokers: kafkaBrokers(testCfg),
    clientId: 'idle-wait',
    logger: testLogger,
    fetchMaxWaitMs: 20,
    fetchIdleMaxWaitMs: 300,
    onFetch: (group, wait) => (waits.push(wait), metrics.kafka.fetch(group, wait)),
  });
  const prefix = namespace('idlewait');
  const drop = await createNamespace(kafka, prefix, 1);
  const topic = `${prefix}signals.raw`;
  const group = `${prefix}g`;
  const producer = kafka.producer({ transactionalId: `${prefix}tx` });
  const consumer = kafka.consumer({ groupId: group, readCommitted: true, onFatal: failTool('idle-wait consumer') });
  const read: Array<{ value: string; fetchesBefore: number }> = [];
  try {
    await producer.connect();
    await consumer.connect();
    await consumer.subscribe([topic], true);
    await consumer.run(async (batch, ctl) => {
      for (const m of batch.messages) read.push({ value: m.value?.toString() ?? '', fetchesBefore: waits.length });
      const last = batch.messages.at(-1);
      if (last) ctl.resolveOffset(last.offset);
    });
    // Nothing to read: the first ten fetches wait the short time, every later one the idle time.
    await waitFor('three fetches with the idle wait', () => waits.filter((w) => w === 'idle').length >= 3);
    const firstIdle = waits.indexOf('idle');
    assert.ok(firstIdle >= IDLE_AFTER_EMPTY_FETCHES, `idle only after ${IDLE_AFTER_EMPTY_FETCHES} empty fetches (first idle: #${firstIdle}; ${waits.join(' ')})`);
    assert.ok(waits.slice(firstIdle).every((w) => w === 'idle'), `idle until a record comes (${waits.join(' ')})`);

    const tx = await producer.transaction();
    await tx.send(topic, [{ key: 'k', value: Buffer.from('after-idle') }]);
    await tx.commit();
    await waitFor('the record', () => read.length > 0);
    assert.equal(read.length, 1, 'read once');
    const { value, fetchesBefore } = read[0]!;
    assert.equal(value, 'after-idle');
    assert.equal(waits[fetchesBefore - 1], 'idle', 'the record came in a fetch that waited as idle');
    await waitFor('a fetch after the record', () => waits.length > fetchesBefore);
    assert.equal(waits[fetchesBefore], 'busy', `the fetch after a record waits the short time again (${waits.slice(fetchesBefore - 2).join(' ')})`);

    const text = await metrics.registry.metrics();
    const counted = (wait: string) => Number(new RegExp(`kafka_consumer_fetches_total\\{group="${group}",wait="${wait}"\\} (\\d+)`).exec(text)?.[1] ?? -1);
    const seen = waits.slice();
    assert.ok(counted('idle') >= 3 && counted('idle') <= seen.filter((w) => w === 'idle').length, `kafka_consumer_fetches_total{wait="idle"} ${counted('idle')}`);
    assert.ok(counted('busy') >= IDLE_AFTER_EMPTY_FETCHES + 1, `kafka_consumer_fetches_total{wait="busy"} ${counted('busy')}`);
  } finally {
    await consumer.disconnect();
    await producer.disconnect();
    await drop();
  }
});

test('a consumer kafkajs will not restart reaches onFatal once (with onCrash saying restart=false)', async () => {
  const kafka = testKafka();
  const prefix = namespace('fatal');
  const drop = await createNamespace(kafka, prefix, 1);
  const topic = `${prefix}signals.raw`;
  const fatal: Error[] = [];
  const crashes: boolean[] = [];
  const producer = kafka.producer();
  const consumer = kafka.consumer({ groupId: `${prefix}g`, onFatal: (err) => fatal.push(err) });
  consumer.onCrash((_err, restart) => crashes.push(restart));
  try {
    await producer.connect();
    await producer.send(topic, [{ key: 'k', value: Buffer.from('v') }]);
    await consumer.connect();
    await consumer.subscribe([topic], true);
    // What kafkajs treats as not worth a restart (as after "coordinator is not aware of this member").
    await consumer.run(async () => {
      throw new kafkajs.KafkaJSNonRetriableError('handler gave up');
    });
    await waitFor('the fatal report', () => fatal.length > 0, 30_000);
    assert.equal(fatal.length, 1);
    assert.match(fatal[0]!.message, /handler gave up/);
    assert.deepEqual(crashes, [false]);
  } finally {
    await consumer.disconnect();
    await producer.disconnect();
    await drop();
  }
  assert.equal(fatal.length, 1, 'disconnecting reports nothing more');
});

test('a broken idempotent sequence is recognised in the errors kafkajs really throws, bare or wrapped', async () => {
  // The port replaces a non-transactional producer whose sequence state no longer matches the
  // broker's (found by the chaos run: after a broker SIGKILL the signal bridge failed "out of order
  // sequence number" for good). These are kafkajs's own error objects, as its producer throws them.
  // @ts-expect-error kafkajs ships no types for its protocol module
  const { createErrorFromCode } = (await import('kafkajs/src/protocol/error.js')) as { createErrorFromCode: (code: number) => Error };
  const outOfOrder = createErrorFromCode(45);
  const unknownProducer = createErrorFromCode(59);
  assert.equal(sequenceBroken(outOfOrder), true);
  assert.equal(sequenceBroken(unknownProducer), true);
  // kafkajs's retrier wraps what it gives up on as (e, { cause: e.cause || e })
  assert.equal(sequenceBroken(new (kafkajs.KafkaJSNonRetriableError as unknown as new (e: Error, o: { cause: Error }) => Error)(outOfOrder, { cause: outOfOrder })), true);
  assert.equal(sequenceBroken(new kafkajs.KafkaJSNumberOfRetriesExceeded(unknownProducer, { retryCount: 5, retryTime: 100, cause: unknownProducer } as never)), true);
  for (const code of [6, 7, 47, 90]) assert.equal(sequenceBroken(createErrorFromCode(code)), false, `code ${code}`);
  assert.equal(sequenceBroken(new Error('connection reset')), false);
});

test('co-partitioned consumers: RoundRobin while a member without the assignor is in the group, partition n of both topics to one member once all have it', async () => {
  const kafka = testKafka();
  const prefix = namespace('assign');
  const drop = await createNamespace(kafka, prefix, 3);
  const topics = [`${prefix}signals.raw`, `${prefix}orders.intents`];
  const group = `${prefix}g`;
  type Joined = { assigned: Record<string, number[]>; protocol: string };
  const member = async (coPartitioned: boolean) => {
    const seen: { last: Joined | null } = { last: null };
    const c = kafka.consumer({ groupId: group, coPartitioned, onFatal: (e) => assert.fail(e) });
    c.onGroupJoin(({ assigned, protocol }) => (seen.last = { assigned, protocol }));
    await c.connect();
    await c.subscribe(topics, true);
    await c.run(async () => {});
    return { c, seen };
  };
  const held = (j: Joined | null) => topics.flatMap((t) => (j?.assigned[t] ?? []).map((p) => `${t}/${p}`));
  // Both members' latest joins are of one generation: disjoint, and together every partition.
  const settled = (a: { seen: { last: Joined | null } }, b: { seen: { last: Joined | null } }) => {
    const x = held(a.seen.last);
    const y = held(b.seen.last);
    return a.seen.last && b.seen.last && x.length + y.length === 6 && new Set([...x, ...y]).size === 6 && a.seen.last.protocol === b.seen.last.protocol;
  };
  const members: Array<{ c: { disconnect(): Promise<void> } }> = [];
  try {
    const older = await member(false);
    members.push(older);
    const newer = await member(true);
    members.push(newer);
    await waitFor('the mixed group settled', () => settled(older, newer), 120_000);
    assert.equal(newer.seen.last!.protocol, 'RoundRobinAssigner', 'the protocol every member supports');
    // The older member leaves; a second new one joins: the group moves to the co-partitioned assignor.
    await older.c.disconnect();
    members.shift();
    const second = await member(true);
    members.push(second);
    await waitFor('the new group settled', () => settled(newer, second) && newer.seen.last!.protocol === 'CoPartitionedAssigner', 120_000);
    for (const m of [newer, second]) {
      const [a, b] = topics.map((t) => [...(m.seen.last!.assigned[t] ?? [])].sort().join(','));
      assert.equal(a, b, `partition n of both topics with one member: ${JSON.stringify(m.seen.last!.assigned)}`);
      assert.ok(a!.length > 0, 'each member has partitions');
    }
  } finally {
    for (const m of members) await m.c.disconnect().catch(() => {});
    await drop();
  }
});

test('offsets of one partition committed by a transaction, then through the group, then by a transaction: the latest commit is the group\'s offset each time', async () => {
  // The runner commits a chunk with outputs in a transaction and a chunk without any through the
  // group (pipelines/runner.ts, commit): this is the broker's side of that. A transaction's offsets
  // reach the group when its markers are written, after its commit returned; a group commit made
  // meanwhile is newer and must not be undone by them.
  const kafka = testKafka();
  const prefix = namespace('mixed');
  const drop = await createNamespace(kafka, prefix, 1);
  const topic = `${prefix}signals.raw`;
  const group = `${prefix}mixed`;
  const producer = kafka.producer();
  const txp = kafka.producer({ transactionalId: `${prefix}tx` });
  const admin = kafka.admin();
  const consumer = kafka.consumer({ groupId: group, readCommitted: true, onFatal: failTool('mixed-commits consumer') });
  const seen: Array<{ step: string; offset: string | undefined }> = [];
  let failed: unknown = null;
  let done = false;
  // Committing the transactional id's next transaction waits until the previous one's markers are
  // written (the coordinator answers CONCURRENT_TRANSACTIONS until then): after it, the group's
  // offset is the final outcome, not a moment before the markers.
  // A transaction of offsets alone, again while the coordinator answers CONCURRENT_TRANSACTIONS.
  const txOffsets = async (groupId: string, offset: string) => {
    for (let attempt = 0; ; attempt++) {
      const t = await txp.transaction();
      try {
        await t.sendOffsets(groupId, [{ topic, partition: 0, offset }]);
        await t.commit();
        return;
      } catch (err) {
        await t.abort().catch(() => {});
        if ((err as { type?: string }).type !== 'CONCURRENT_TRANSACTIONS' || attempt >= 100) throw err;
        await sleepMs(10);
      }
    }
  };
  const settle = () => txOffsets(`${prefix}other`, '1');
  const offsetNow = async () => (await admin.groupOffsets(group, topic)).find((p) => p.partition === 0)?.offset;
  try {
    await Promise.all([producer.connect(), txp.connect(), admin.connect()]);
    await producer.send(topic, Array.from({ length: 30 }, (_, i) => ({ key: 'k', value: Buffer.from(`v${i}`) })));
    await consumer.connect();
    await consumer.subscribe([topic], true);
    await consumer.run(async (_batch, ctl) => {
      if (done) return;
      done = true;
      try {
        await txOffsets(group, '10');
        await ctl.commitOffsets([{ topic, partition: 0, offset: '20' }]);
        await settle();
        seen.push({ step: 'transaction 10, then the group 20', offset: await offsetNow() });
        await txOffsets(group, '25');
        await settle();
        seen.push({ step: 'then a transaction 25', offset: await offsetNow() });
      } catch (err) {
        failed = err;
      }
    });
    await waitFor('the three commits', () => seen.length === 2 || failed, 60_000);
    assert.equal(failed, null);
    assert.deepEqual(seen, [
      { step: 'transaction 10, then the group 20', offset: '20' },
      { step: 'then a transaction 25', offset: '25' },
    ]);
  } finally {
    await consumer.disconnect();
    await Promise.all([producer.disconnect(), txp.disconnect(), admin.disconnect()]);
    await drop();
  }
});

test('a member whose group is rebalancing cannot commit through the group: the refusal is thrown, nothing is committed', async () => {
  const kafka = testKafka();
  const prefix = namespace('stalecommit');
  const drop = await createNamespace(kafka, prefix, 1);
  const topic = `${prefix}signals.raw`;
  const group = `${prefix}stale`;
  const producer = kafka.producer();
  const admin = kafka.admin();
  const first = kafka.consumer({ groupId: group, readCommitted: true, onFatal: failTool('first member') });
  const second = kafka.consumer({ groupId: group, readCommitted: true, onFatal: failTool('second member') });
  let refusal: unknown = 'not tried';
  let second_joined = false;
  let held = false;
  try {
    await Promise.all([producer.connect(), admin.connect()]);
    await producer.send(topic, [{ key: 'k', value: Buffer.from('v') }]);
    await first.connect();
    await first.subscribe([topic], true);
    await first.run(async (_batch, ctl) => {
      if (held) return;
      held = true;
      // A second member asks to join while this one is inside its batch: the group rebalances, and
      // this member's generation ends.
      await second.connect();
      await second.subscribe([topic], true);
      second.onGroupJoin(() => (second_joined = true));
      await second.run(async () => {});
      // Until the coordinator has begun the rebalance: it then refuses this member's heartbeat
      // (kafkajs sends one when the interval is due, so most of these calls send nothing).
      await waitFor('the coordinator to begin the rebalance', () => ctl.heartbeat().then(() => false, (err: { type?: string }) => /REBALANCE_IN_PROGRESS|ILLEGAL_GENERATION|UNKNOWN_MEMBER_ID/.test(err.type ?? '')), 60_000, 200);
      refusal = await ctl.commitOffsets([{ topic, partition: 0, offset: '1' }]).then(() => null, (err: unknown) => err);
    });
    await waitFor('the commit attempt', () => refusal !== 'not tried', 60_000);
    assert.ok(refusal, 'the commit was refused');
    assert.match(String((refusal as { type?: string }).type), /REBALANCE_IN_PROGRESS|ILLEGAL_GENERATION|UNKNOWN_MEMBER_ID/);
    await waitFor('the second member joined', () => second_joined, 60_000);
    const offset = (await admin.groupOffsets(group, topic)).find((p) => p.partition === 0)?.offset;
    assert.equal(offset, '-1', 'nothing committed');
  } finally {
    await Promise.all([first.disconnect(), second.disconnect()]);
    await Promise.all([producer.disconnect(), admin.disconnect()]);
    await drop();
  }
});

test('stableOffsets: while a transaction that commits offsets is open, the plain read gives the older offset and the stable one waits for its end (OffsetFetch v7 require_stable, from the kafkajs patch)', async () => {
  const base = testKafka();
  const prefix = namespace('stable');
  const drop = await createNamespace(base, prefix, 1);
  const [topic, other] = [`${prefix}signals.raw`, `${prefix}signals.valid`];
  const group = `${prefix}group`;
  // The transaction ends once the stable read has been answered at least once: a read that does not
  // wait returns what it sees first, the offset from before the transaction.
  const end: { now: (() => Promise<void>) | null; done: Promise<void> | null } = { now: null, done: null };
  let fetches = 0;
  const kafka = createKafka({
    brokers: kafkaBrokers(testCfg),
    clientId: 'stable-test',
    logger: testLogger,
    onRequest: (api) => {
      if (api !== 'OffsetFetch') return;
      fetches++;
      if (end.now && !end.done) end.done = end.now();
    },
  });
  const admin = kafka.admin();
  const producer = base.producer({ transactionalId: `${prefix}tx` });
  const open = async (offsets: Array<[string, string]>) => {
    const tx = await producer.transaction();
    await tx.sendOffsets(group, offsets.map(([t, offset]) => ({ topic: t, partition: 0, offset })));
    return tx;
  };
  const stableRead = async (finish: () => Promise<void>) => {
    end.now = finish;
    end.done = null;
    const before = fetches;
    const read = await admin.stableOffsets(group, [topic, other], 0);
    await end.done;
    end.now = null;
    return { read, asked: fetches - before };
  };
  try {
    await Promise.all([admin.connect(), producer.connect()]);
    assert.deepEqual(await admin.stableOffsets(group, [topic, other], 0), new Map([[topic, null], [other, null]]), 'nothing committed');
    const first = await open([[topic, '5']]);
    await first.commit();
    assert.deepEqual(await admin.stableOffsets(group, [topic, other], 0), new Map([[topic, 5n], [other, null]]));

    const committing = await open([[topic, '9'], [other, '3']]);
    assert.equal((await admin.groupOffsets(group, topic)).find((p) => p.partition === 0)?.offset, '5', 'the plain read, while the transaction is open');
    const afterCommit = await stableRead(() => committing.commit());
    assert.deepEqual(afterCommit.read, new Map([[topic, 9n], [other, 3n]]), 'the committed transaction\'s offsets, not the ones before it');
    assert.ok(afterCommit.asked >= 2, `asked again after UNSTABLE_OFFSET_COMMIT (${afterCommit.asked} OffsetFetch answers)`);

    const aborting = await open([[topic, '20']]);
    const afterAbort = await stableRead(() => aborting.abort());
    assert.deepEqual(afterAbort.read, new Map([[topic, 9n], [other, 3n]]), 'an aborted transaction\'s offsets are never read');
    assert.ok(afterAbort.asked >= 2, `asked again after UNSTABLE_OFFSET_COMMIT (${afterAbort.asked} OffsetFetch answers)`);
  } finally {
    await Promise.all([producer.disconnect(), admin.disconnect()]);
    await drop();
  }
});
