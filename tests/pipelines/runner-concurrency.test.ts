// The stage runner with input partitions processed concurrently, on the real local broker:
//  - an `exclusive` stage never has two chunks between load and the end of persist at once, so a
//    budget read in load and written back in persist (as the risk stage does with open orders and
//    exposure in PostgreSQL) is spent exactly, never twice;
//  - every output is still written exactly once, on every partition;
//  - chunks of one stage over several co-partitioned topics never overlap for the same partition
//    number (tracking gets facts about one symbol from several topics); those that wait together
//    commit in one transaction through the partition number's producer, and that producer's first
//    use fences a transaction the per-topic ids of the earlier runner left open;
//  - two instances of such a stage split the partition numbers, not the topic-partitions: each
//    number's transactional id is used by one instance only, and no commit is fenced.
// Nothing here depends on timing: the checks count, they do not measure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setImmediate as yieldOnce } from 'node:timers/promises';
import type { KafkaPort, TransactionPort } from '../../runtime/kafka.ts';
import { namespace, testKafka, createNamespace, consumeToEnd, waitCaughtUp, waitFor, registryUrl, testLogger } from '../helpers.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { createMutex, runStage, ok, type Stage } from '../../pipelines/runner.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { systemClock } from '../../runtime/clock.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import type { Signal } from '../../schemas/types.ts';

const ASSETS = ['BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'XRPUSDT', 'DOGEUSDT', 'ADAUSDT'];

async function produceRaw(prefix: string, topic: string, n: number): Promise<string[]> {
  const kafka = testKafka();
  const p = kafka.producer();
  await p.connect();
  const ids = Array.from({ length: n }, () => randomUUID());
  for (let i = 0; i < n; i += 250) {
    await p.send(
      prefix + topic,
      ids.slice(i, i + 250).map((id, j) => {
        const asset = ASSETS[(i + j) % ASSETS.length]!;
        return { key: asset, value: Buffer.from(JSON.stringify({ id, asset })) };
      }),
    );
  }
  await p.disconnect();
  return ids;
}

test('createMutex runs sections one after another, in call order, and survives a failing section', async () => {
  const lock = createMutex();
  const log: string[] = [];
  let inside = 0;
  const section = (name: string, fail = false) =>
    lock(async () => {
      inside++;
      assert.equal(inside, 1, 'one section at a time');
      log.push(`${name}:in`);
      await yieldOnce();
      await yieldOnce();
      log.push(`${name}:out`);
      inside--;
      if (fail) throw new Error(name);
      return name;
    });
  const results = await Promise.allSettled([section('a'), section('b', true), section('c')]);
  assert.deepEqual(log, ['a:in', 'a:out', 'b:in', 'b:out', 'c:in', 'c:out']);
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
});

test('partitions processed concurrently: an exclusive stage spends a shared budget exactly, and every output exists once', async () => {
  const prefix = namespace('conc');
  const kafka = testKafka();
  const cleanup = await createNamespace(kafka, prefix, 3);
  const metrics = createMetrics();
  const codec = await createTopicCodec({ registryUrl, prefix });
  const N = 1200;
  const BUDGET = 700;
  try {
    const ids = await produceRaw(prefix, 'signals.raw', N);
    // The "database": a budget read in load and written back in persist, like open orders and
    // exposure in the risk stage. Without the exclusive section two partitions' chunks would both
    // read the same budget and spend it twice.
    let budget = BUDGET;
    // Decisions recorded by persist: a chunk retried after its persist (a failed Kafka commit) emits
    // the recorded decision again instead of deciding twice, as the risk stage does.
    const recorded = new Map<string, boolean>();
    let inside = 0;
    let maxInside = 0;
    let chunks = 0;
    const stage: Stage<Buffer, { budget: number; decided: Map<string, boolean> }> = {
      name: 'budget',
      input: prefix + 'signals.raw',
      inputFormat: 'raw',
      dlq: prefix + 'signals.dlq',
      exclusive: true,
      load: async () => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        const read = budget;
        await yieldOnce(); // give any concurrent chunk the chance to interleave
        return { budget: read, decided: new Map() };
      },
      process: (rec, { state }) => {
        const { id, asset } = JSON.parse(rec.value.toString('utf8')) as { id: string; asset: string };
        let spend = recorded.get(id);
        if (spend === undefined) {
          spend = state.budget > 0;
          if (spend) state.budget -= 1;
          state.decided.set(id, spend);
        }
        const value: Signal = { ...SAMPLES.Signal, signal_id: id, asset, strategy_id: spend ? 'accepted' : 'refused' };
        return ok({ topic: prefix + 'signals.valid', key: asset, value });
      },
      persist: async (items, state) => {
        await yieldOnce();
        assert.ok(items.length > 0);
        for (const [id, spend] of state.decided) recorded.set(id, spend);
        budget = state.budget;
        chunks++;
        inside--;
      },
    };
    const fatal: Error[] = [];
    const running = await runStage(stage, { kafka, codec, logger: testLogger, metrics, clock: systemClock, groupId: prefix + 'budget', batchMax: 50, retryMaxMs: 1000, partitionsConcurrently: 3, onFatal: (e) => fatal.push(e) });
    try {
      await waitCaughtUp(kafka, prefix + 'budget', prefix + 'signals.raw', 180_000);
    } finally {
      await running.stop();
    }
    assert.deepEqual(fatal, []);
    assert.equal(maxInside, 1, 'never two chunks inside load → persist at once');
    assert.ok(chunks >= N / 50, `processed in chunks (${chunks})`);
    assert.equal(budget, 0, 'budget spent to the last unit');
    assert.equal([...recorded.values()].filter(Boolean).length, BUDGET, 'exactly the budget accepted, never more');
    assert.equal(recorded.size, N);

    const out = await consumeToEnd(kafka, prefix + 'signals.valid', 3);
    const seen = await Promise.all(out.map(async (m) => (await codec.decode(m.topic, m.value!)) as Signal));
    const counts = new Map<string, number>();
    for (const s of seen) counts.set(s.signal_id, (counts.get(s.signal_id) ?? 0) + 1);
    assert.deepEqual([...counts].filter(([, c]) => c > 1), [], 'no output twice');
    assert.deepEqual(ids.filter((id) => !counts.has(id)), [], 'no output lost');
    assert.equal(seen.filter((s) => s.strategy_id === 'accepted').length, BUDGET, 'the committed outputs agree with the budget');
  } finally {
    await cleanup();
  }
});

/** The port, with every transaction's offsets (topic → partitions) and transactional id recorded. */
/** A stage over `input` that writes one Signal to signals.valid per raw record `produceRaw` wrote. */
function passThrough(name: string, prefix: string, input: string[]): Stage<Buffer> {
  return {
    name,
    input,
    inputFormat: 'raw',
    dlq: prefix + 'signals.dlq',
    process: (rec) => {
      const { id, asset } = JSON.parse(rec.value.toString('utf8')) as { id: string; asset: string };
      return ok({ topic: prefix + 'signals.valid', key: asset, value: { ...SAMPLES.Signal, signal_id: id, asset } });
    },
  };
}

/** The port with every transaction passed through `wrap`, given its producer's transactional id. */
function wrappingTransactions(kafka: KafkaPort, wrap: (id: string, tx: TransactionPort) => TransactionPort): KafkaPort {
  return {
    ...kafka,
    producer: (o) => {
      const p = kafka.producer(o);
      return { ...p, transaction: async () => wrap(o?.transactionalId ?? '', await p.transaction()) };
    },
  };
}

function recordingTransactions(kafka: KafkaPort): { kafka: KafkaPort; txs: Array<{ id: string; offsets: Array<{ topic: string; partition: number }> }> } {
  const txs: Array<{ id: string; offsets: Array<{ topic: string; partition: number }> }> = [];
  const recording = wrappingTransactions(kafka, (id, tx) => ({
    ...tx,
    sendOffsets: async (g, offsets) => {
      await tx.sendOffsets(g, offsets);
      txs.push({ id, offsets: offsets.map(({ topic, partition }) => ({ topic, partition })) });
    },
  }));
  return { txs, kafka: recording };
}

test('a stage over several co-partitioned topics never runs two chunks of one partition number at once, and commits those that wait together in one transaction', async () => {
  const prefix = namespace('copart');
  const recording = recordingTransactions(testKafka());
  const kafka = recording.kafka;
  const cleanup = await createNamespace(kafka, prefix, 3);
  const metrics = createMetrics();
  const codec = await createTopicCodec({ registryUrl, prefix });
  const N = 600;
  try {
    const a = await produceRaw(prefix, 'signals.raw', N);
    const b = await produceRaw(prefix, 'orders.dlq', N);
    const insideByPartition = new Map<number, number>();
    let overlaps = 0;
    let records = 0;
    const stage: Stage<Buffer, { partition: number }> = {
      name: 'copart',
      input: [prefix + 'signals.raw', prefix + 'orders.dlq'],
      inputFormat: 'raw',
      dlq: prefix + 'signals.dlq',
      load: async (recs) => {
        const partition = recs[0]?.partition ?? -1;
        const now = (insideByPartition.get(partition) ?? 0) + 1;
        insideByPartition.set(partition, now);
        if (now > 1) overlaps++;
        await yieldOnce();
        return { partition };
      },
      process: (rec) => {
        records++;
        const { id, asset } = JSON.parse(rec.value.toString('utf8')) as { id: string; asset: string };
        return ok({ topic: prefix + 'signals.valid', key: asset, value: { ...SAMPLES.Signal, signal_id: id, asset } });
      },
      persist: async (_items, state) => {
        await yieldOnce();
        insideByPartition.set(state.partition, insideByPartition.get(state.partition)! - 1);
      },
    };
    const fatal: Error[] = [];
    const running = await runStage(stage, { kafka, codec, logger: testLogger, metrics, clock: systemClock, groupId: prefix + 'copart', batchMax: 40, retryMaxMs: 1000, partitionsConcurrently: 6, onFatal: (e) => fatal.push(e) });
    try {
      await waitCaughtUp(kafka, prefix + 'copart', prefix + 'signals.raw', 180_000);
      await waitCaughtUp(kafka, prefix + 'copart', prefix + 'orders.dlq', 180_000);
    } finally {
      await running.stop();
    }
    assert.deepEqual(fatal, []);
    assert.equal(overlaps, 0, 'one partition number at a time across the input topics');
    assert.equal(records, 2 * N);
    // Offsets commit through one producer per partition number, whatever the topic, and the chunks
    // of both topics that were read together (both were full before the stage started) share one.
    const txs = recording.txs;
    assert.ok(txs.length > 0);
    for (const tx of txs) {
      const partitions = new Set(tx.offsets.map((o) => o.partition));
      assert.equal(partitions.size, 1, `one partition number per transaction: ${JSON.stringify(tx)}`);
      assert.equal(tx.id, `${prefix}copart-p${[...partitions][0]}`);
    }
    const both = txs.filter((tx) => new Set(tx.offsets.map((o) => o.topic)).size === 2);
    assert.ok(both.length > 0, `some transactions carry both topics' offsets (${both.length} of ${txs.length})`);
    assert.ok(txs.length < (2 * N) / 40, `fewer transactions (${txs.length}) than chunks of one topic (${(2 * N) / 40})`);
    const gathered = (await metrics.registry.getSingleMetric('pipeline_stage_gathered_parts_total')!.get()).values.find((v) => v.labels['stage'] === 'copart')?.value;
    assert.equal(gathered, both.reduce((n, tx) => n + tx.offsets.length, 0), 'the metric counts the parts committed together');
    const out = await consumeToEnd(kafka, prefix + 'signals.valid', 3);
    const seen = new Set(await Promise.all(out.map(async (m) => ((await codec.decode(m.topic, m.value!)) as Signal).signal_id)));
    assert.equal(out.length, 2 * N, 'every output once');
    assert.ok([...a, ...b].every((id) => seen.has(id)));
  } finally {
    await cleanup();
  }
});

test('co-partitioned inputs: the first use of a partition number fences what a per-topic producer of the earlier runner left open', async () => {
  const prefix = namespace('fence');
  const kafka = testKafka();
  const cleanup = await createNamespace(kafka, prefix, 3);
  const metrics = createMetrics();
  const codec = await createTopicCodec({ registryUrl, prefix });
  const group = prefix + 'fence';
  const input = [prefix + 'signals.raw', prefix + 'orders.dlq'];
  const N = 60;
  try {
    const ids = [...(await produceRaw(prefix, 'signals.raw', N)), ...(await produceRaw(prefix, 'orders.dlq', N))];
    // A process of the earlier version (transactional id per input topic and partition) stopped
    // mid-transaction: it wrote an output and committed every record of signals.raw/0 as consumed,
    // but had not ended the transaction when the upgraded stage started.
    const zombie = kafka.producer({ transactionalId: `${group}-${input[0]}-0` });
    await zombie.connect();
    const ztx = await zombie.transaction();
    await ztx.send(prefix + 'signals.valid', [{ key: 'zombie', value: await codec.encode(prefix + 'signals.valid', { ...SAMPLES.Signal, signal_id: randomUUID(), strategy_id: 'zombie' }) }]);
    await ztx.sendOffsets(group, [{ topic: input[0]!, partition: 0, offset: String(N) }]);

    const stage = passThrough('fence', prefix, input);
    const fatal: Error[] = [];
    const running = await runStage(stage, { kafka, codec, logger: testLogger, metrics, clock: systemClock, groupId: group, batchMax: 40, retryMaxMs: 1000, onFatal: (e) => fatal.push(e) });
    try {
      for (const t of input) await waitCaughtUp(kafka, group, t, 180_000);
    } finally {
      await running.stop();
    }
    assert.deepEqual(fatal, []);
    // The zombie was fenced: its transaction was aborted, so its commit fails, its output is never
    // read and its offsets did not count (every record of signals.raw/0 was processed by the stage).
    await assert.rejects(ztx.commit(), (e: unknown) => /PRODUCER_FENCED|INVALID_PRODUCER_EPOCH|fenced|epoch/i.test(`${(e as { type?: string }).type} ${(e as Error).message}`));
    await zombie.disconnect().catch(() => {});
    const out = await Promise.all((await consumeToEnd(kafka, prefix + 'signals.valid', 3)).map(async (m) => (await codec.decode(m.topic, m.value!)) as Signal));
    assert.deepEqual(out.filter((s) => s.strategy_id === 'zombie'), [], "the fenced transaction's output is not read");
    assert.deepEqual(out.map((s) => s.signal_id).sort(), [...ids].sort(), 'every input once');
  } finally {
    await cleanup();
  }
});

test('two instances of a stage over co-partitioned topics: each partition number (of every input) with one of them, its transactional id used by that one only, no commit fenced', async () => {
  const prefix = namespace('copair');
  const base = testKafka();
  const cleanup = await createNamespace(base, prefix, 3);
  const codec = await createTopicCodec({ registryUrl, prefix });
  const group = prefix + 'copair';
  const input = [prefix + 'signals.raw', prefix + 'orders.intents'];
  const N = 120;
  // What each instance's Kafka client saw: its consumer's latest assignment, the transactional ids
  // it made transactions with, and its failed commits.
  const instance = () => {
    const seen = { assigned: null as Record<string, number[]> | null, ids: new Set<string>(), failed: [] as string[] };
    const withTxs = wrappingTransactions(base, (id, tx) => {
      seen.ids.add(id);
      return {
        ...tx,
        commit: async () => {
          try {
            await tx.commit();
          } catch (e) {
            seen.failed.push((e as Error).message);
            throw e;
          }
        },
      };
    });
    const kafka: KafkaPort = {
      ...withTxs,
      consumer: (o) => {
        const c = base.consumer(o);
        c.onGroupJoin((info) => (seen.assigned = info.assigned));
        return c;
      },
    };
    return { seen, kafka };
  };
  const stage = passThrough('copair', prefix, input);
  const fatal: Error[] = [];
  const start = (kafka: KafkaPort) => runStage(stage, { kafka, codec, logger: testLogger, metrics: createMetrics(), clock: systemClock, groupId: group, batchMax: 20, retryMaxMs: 1000, partitionsConcurrently: 3, onFatal: (e) => fatal.push(e) });
  const a = instance();
  const b = instance();
  const running = [await start(a.kafka)];
  try {
    await waitFor('the first instance joined', () => running[0]!.joined(), 60_000);
    running.push(await start(b.kafka));
    const count = (x: Record<string, number[]> | null) => Object.values(x ?? {}).reduce((n, ps) => n + ps.length, 0);
    // Both in one generation: their assignments are disjoint and cover all six topic-partitions.
    await waitFor('the group settled on two members', () => {
      const [x, y] = [a.seen.assigned, b.seen.assigned];
      if (!x || !y || count(x) + count(y) !== 6) return false;
      return input.every((t) => (x[t] ?? []).every((n) => !(y[t] ?? []).includes(n)));
    }, 120_000);
    const numbers = (x: Record<string, number[]> | null) => input.map((t) => [...(x?.[t] ?? [])].sort().join(','));
    for (const [name, x] of [['first', a.seen.assigned], ['second', b.seen.assigned]] as const) {
      const [one, other] = numbers(x);
      assert.equal(one, other, `the ${name} instance holds the same partition numbers of both inputs: ${JSON.stringify(x)}`);
      assert.ok(count(x) > 0, `the ${name} instance has work: ${JSON.stringify(x)}`);
    }
    // Into every partition of both inputs (the keys alone may leave one empty), both inputs in each
    // of several rounds, each round handled before the next: every instance makes transactions after
    // the other has made its own, so two instances sharing a transactional id fence each other's
    // commits (what the "no commit failed" check below would see without the assignor).
    const ids: string[] = [];
    const producer = base.producer();
    await producer.connect();
    const ROUNDS = 4;
    for (let round = 0; round < ROUNDS; round++) {
      const topicMessages = input.map((topic) => {
        const batch = Array.from({ length: N / ROUNDS }, (_, i) => ({ id: randomUUID(), asset: ASSETS[i % ASSETS.length]!, partition: i % 3 }));
        ids.push(...batch.map((r) => r.id));
        return { topic, messages: batch.map(({ id, asset, partition }) => ({ key: asset, partition, value: Buffer.from(JSON.stringify({ id, asset })) })) };
      });
      await producer.sendBatch(topicMessages);
      for (const t of input) await waitCaughtUp(base, group, t, 180_000);
    }
    await producer.disconnect();
    await Promise.all(running.splice(0).map((r) => r.stop()));
    assert.deepEqual(fatal, []);
    const byNumber = (s: typeof a.seen) => [...s.ids].filter((id) => /-p\d+$/.test(id)).sort();
    const expected = (x: Record<string, number[]> | null) => (x?.[input[0]!] ?? []).map((n) => `${group}-p${n}`).sort();
    assert.deepEqual(byNumber(a.seen), expected(a.seen.assigned), "the first instance's transactional ids are its partition numbers'");
    assert.deepEqual(byNumber(b.seen), expected(b.seen.assigned), "the second instance's transactional ids are its partition numbers'");
    assert.deepEqual([...a.seen.failed, ...b.seen.failed], [], 'no commit failed (none fenced by the other instance)');
    const out = await Promise.all((await consumeToEnd(base, prefix + 'signals.valid', 3)).map(async (m) => ((await codec.decode(m.topic, m.value!)) as Signal).signal_id));
    assert.deepEqual(out.sort(), [...ids].sort(), 'every input once');
  } finally {
    await Promise.all(running.map((r) => r.stop()));
    await cleanup();
  }
});
