// Commits the runner could not see. kafkajs has no KIP-447, so the broker takes a transaction's
// offsets from whichever producer of the transactional id is current, whatever the group says.
// Two ways a chunk gets committed after this member fetched it, both found by the chaos run
// (orders.submissions held four submissions twice, with different contents):
//   - this member's own commit landed but its answer was lost (a broker restart): the retry ran the
//     same chunk again;
//   - a former owner frozen after its last ownership check (a zombie) committed once it woke, while
//     the new owner was deciding the chunk it had fetched before.
// The runner now initialises the partition's producer before the first chunk after a join or a
// failed commit (fencing every earlier producer of the id), reads the committed offsets, and skips
// what they cover. The faults are real: the commits go to the real broker; the wrapper only loses an
// answer, or holds a commit back as a stopped process would. No timing is measured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { namespace, testKafka, createNamespace, consumeToEnd, waitFor, registryUrl, testCfg } from '../helpers.ts';
import { createLogger } from '../../runtime/logger.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { runStage, ok, type Stage } from '../../pipelines/runner.ts';
import { createMetrics, M } from '../../runtime/metrics.ts';
import { systemClock } from '../../runtime/clock.ts';
import { RetriableError } from '../../runtime/errors.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { SAMPLES } from '../../schemas/samples.ts';
import type { KafkaPort, TransactionPort } from '../../runtime/kafka.ts';
import type { Signal } from '../../schemas/types.ts';

/** The real port, with every transaction as `wrap` makes it. */
function withTransaction(kafka: KafkaPort, wrap: (tx: TransactionPort) => TransactionPort): KafkaPort {
  return {
    ...kafka,
    producer: (opts) => {
      const p = kafka.producer(opts);
      return { ...p, transaction: async () => wrap(await p.transaction()) };
    },
  };
}

/** The real port, with `onCommit` around every transaction's commit. */
const withCommit = (kafka: KafkaPort, onCommit: (commit: () => Promise<void>) => Promise<void>): KafkaPort =>
  withTransaction(kafka, (tx) => ({ ...tx, commit: () => onCommit(() => tx.commit()) }));

async function setUp(label: string, count: number) {
  const prefix = namespace(label);
  const kafka = testKafka();
  const cleanup = await createNamespace(kafka, prefix, 1);
  const codec = await createTopicCodec({ registryUrl, prefix });
  const input = prefix + 'signals.raw';
  const group = prefix + label;
  const ids = Array.from({ length: count }, () => randomUUID());
  const p = kafka.producer();
  await p.connect();
  await p.send(input, ids.map((id) => ({ key: 'BTCUSDT', value: Buffer.from(id) })));
  await p.disconnect();
  /** The output topic's records; with `readCommitted` false, aborted transactions' too. */
  const outputs = async (readCommitted = true) => {
    const out = await consumeToEnd(kafka, prefix + 'signals.valid', 1, { readCommitted });
    return Promise.all(out.map(async (m) => (await codec.decode(m.topic, m.value!)) as Signal));
  };
  const stageOf = (name: string, load?: () => Promise<void>, more: Partial<Stage<Buffer, undefined>> = {}): Stage<Buffer, undefined> => ({
    name,
    input,
    inputFormat: 'raw',
    dlq: prefix + 'signals.dlq',
    load: async () => {
      await load?.();
      return undefined;
    },
    process: (rec) => ok({ topic: prefix + 'signals.valid', key: 'BTCUSDT', value: { ...SAMPLES.Signal, signal_id: rec.value.toString('utf8'), strategy_id: name } satisfies Signal }),
    ...more,
  });
  const deps = (port: KafkaPort, fatal: Error[], metrics = createMetrics()) => ({ kafka: port, codec, logger: createLogger({ ...testCfg, LOG_LEVEL: 'silent' }, label), metrics, clock: systemClock, groupId: group, batchMax: 5, retryMaxMs: 500, sessionTimeoutMs: 6000, onFatal: (e: Error) => fatal.push(e) });
  const once = (seen: Signal[]) => {
    const counts = new Map<string, number>();
    for (const s of seen) counts.set(s.signal_id, (counts.get(s.signal_id) ?? 0) + 1);
    assert.deepEqual([...counts].filter(([, c]) => c > 1), [], 'no output twice');
    assert.deepEqual(ids.filter((id) => !counts.has(id)), [], 'no output lost');
  };
  return { kafka, cleanup, ids, input, group, outputs, stageOf, deps, once };
}

for (const eager of [false, true]) {
  const how = eager ? ' (transaction opened before the load)' : '';

  test(`a commit whose answer was lost is not made again: its records are skipped on the retry, every output once${how}`, async () => {
    const t = await setUp('lostack', 20);
    try {
      // The first commit reaches the broker and commits; its answer never comes back.
      let lost = 0;
      const port = withCommit(t.kafka, async (commit) => {
        await commit();
        if (lost++ === 0) throw new RetriableError('commit_answer_lost', 'connection closed before the EndTxn answer');
      });
      const metrics = createMetrics();
      const fatal: Error[] = [];
      const s = await runStage(t.stageOf('a', undefined, { eagerTransaction: eager }), t.deps(port, fatal, metrics));
      try {
        await waitFor('every output', async () => new Set((await t.outputs()).map((x) => x.signal_id)).size >= t.ids.length, 60_000, 250);
      } finally {
        await s.stop();
      }
      t.once(await t.outputs());
      assert.ok(lost >= 2, 'the lost commit was retried');
      const skipped = (await metrics.registry.getSingleMetric(M.stageAlreadyCommitted)!.get()).values.reduce((a, v) => a + v.value, 0);
      assert.equal(skipped, 5, 'the retried chunk (5 records) was skipped as committed');
      assert.deepEqual(fatal, []);
    } finally {
      await t.cleanup();
    }
  });

  test(`a former owner that commits after the new owner fetched the chunk is fenced first: every output once${how}`, async () => {
    const t = await setUp('latezombie', 10);
    try {
      // Instance a holds its first commit back (after its last ownership check, as a process stopped
      // right there); it never heartbeats meanwhile, so the group gives the partition to b.
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      let held = false;
      let settle!: (outcome: 'committed' | 'refused') => void;
      const aCommit = new Promise<'committed' | 'refused'>((r) => (settle = r));
      const portA = withCommit(t.kafka, async (commit) => {
        if (held) return commit();
        held = true;
        await released;
        try {
          await commit();
          settle('committed');
        } catch (err) {
          settle('refused');
          throw err;
        }
      });
      // Instance b wakes a up when it starts deciding its first chunk, and waits for a's commit: the
      // moment the chaos run caught, a's commit landing between b's fetch and b's own commit.
      let woke = false;
      const wakeA = async () => {
        if (woke) return;
        woke = true;
        release();
        await aCommit;
      };
      const fatalA: Error[] = [];
      const fatalB: Error[] = [];
      const a = await runStage(t.stageOf('a', undefined, { eagerTransaction: eager }), t.deps(portA, fatalA));
      let b: Awaited<ReturnType<typeof runStage>> | null = null;
      try {
        await waitFor('instance a to hold its first commit', () => held, 60_000);
        b = await runStage(t.stageOf('b', wakeA, { eagerTransaction: eager }), t.deps(t.kafka, fatalB));
        await waitFor('every output', async () => new Set((await t.outputs()).map((x) => x.signal_id)).size >= t.ids.length, 120_000, 250);
        assert.equal(await aCommit, 'refused', "a's late commit was refused: b fenced it before deciding");
      } finally {
        release();
        await b?.stop().catch(() => {});
        await a.stop().catch(() => {});
      }
      t.once(await t.outputs());
      assert.deepEqual(fatalB, []);
    } finally {
      await t.cleanup();
    }
  });
}

test('a transaction opened before the load: a chunk that fails after its offsets and outputs were sent lands nothing; its retry lands every output once', async () => {
  const t = await setUp('eagerabort', 20);
  try {
    // The second chunk's persist fails once, after the runner sent the chunk's outputs into its
    // transaction (it sends them before persist): the transaction must be aborted, not committed
    // by a later chunk's commit, and the retry must produce the chunk again.
    let chunks = 0;
    let failed = 0;
    // The second transaction's produce request completed: the broker has the failing chunk's records.
    let sent = 0;
    let secondSent!: () => void;
    const second = new Promise<void>((r) => (secondSent = r));
    const port = withTransaction(t.kafka, (tx) => ({
      ...tx,
      sendBatch: async (batches) => {
        await tx.sendBatch(batches);
        if (++sent === 2) secondSent();
      },
    }));
    const metrics = createMetrics();
    const fatal: Error[] = [];
    const stage = t.stageOf('a', undefined, {
      eagerTransaction: true,
      persist: async () => {
        if (++chunks === 2) {
          failed++;
          // The runner sends the outputs before persist: wait until the broker has them, so the
          // abort is of records really written.
          // (Bounded, so that outputs never sent fail the test instead of hanging it.)
          await Promise.race([second, sleep(30_000).then(() => assert.fail('the chunk\'s outputs were never sent before its persist'))]);
          throw new RetriableError('db_unavailable', 'persist failed after the outputs were sent');
        }
      },
    });
    const s = await runStage(stage, t.deps(port, fatal, metrics));
    try {
      await waitFor('every output', async () => new Set((await t.outputs()).map((x) => x.signal_id)).size >= t.ids.length, 60_000, 250);
    } finally {
      await s.stop();
    }
    t.once(await t.outputs());
    assert.equal(failed, 1, 'the failing persist ran once');
    const all = await t.outputs(false);
    assert.ok(all.length >= t.ids.length + 5, `the aborted chunk's outputs are in the log, uncommitted (${all.length} records for ${t.ids.length} ids)`);
    const retried = (await metrics.registry.getSingleMetric(M.stageRetries)!.get()).values;
    assert.deepEqual(retried.map((v) => [v.labels['code'], v.value]), [['db_unavailable', 1]], 'the chunk was retried once, for its failed persist');
    assert.deepEqual(fatal, []);
  } finally {
    await t.cleanup();
  }
});

test('a transaction opened before a load that outlasts the transaction timeout: the broker aborts it, the chunk is run again, every output once', async () => {
  const t = await setUp('eagertimeout', 10);
  try {
    // Producers with a 1 s transaction timeout (the runner's is 60 s); the broker looks for expired
    // transactions every 10 s (transaction.abort.timed.out.transaction.cleanup.interval.ms), so the
    // first chunk's load waits until the broker has aborted its transaction: the producer is fenced
    // by its own coordinator, as after a load past 60 s.
    let aborted = false;
    const port: KafkaPort = { ...t.kafka, producer: (opts) => t.kafka.producer({ ...opts, transactionTimeoutMs: 1000 }) };
    let loads = 0;
    const fatal: Error[] = [];
    const metrics = createMetrics();
    const stage = t.stageOf(
      'a',
      async () => {
        if (++loads > 1) return;
        // The transaction's offsets are pending at the group coordinator until it ends: the group's
        // offsets read stably answer UNSTABLE_OFFSET_COMMIT. Wait for that, then for its end.
        const admin = t.kafka.admin();
        await admin.connect();
        try {
          const stable = () => admin.stableOffsets(t.group, [t.input], 0, 300).then(() => true, () => false);
          await waitFor('the offsets pending in the open transaction', async () => !(await stable()), 30_000, 100);
          await waitFor('the broker to abort the timed-out transaction', stable, 60_000, 1000);
        } finally {
          await admin.disconnect();
        }
        aborted = true;
      },
      { eagerTransaction: true },
    );
    const s = await runStage(stage, { ...t.deps(port, fatal, metrics), sessionTimeoutMs: 60_000 });
    try {
      await waitFor('every output', async () => new Set((await t.outputs()).map((x) => x.signal_id)).size >= t.ids.length, 120_000, 250);
    } finally {
      await s.stop();
    }
    assert.ok(aborted, 'the first load outlasted the transaction');
    assert.ok(loads >= 2, 'the chunk was loaded again');
    t.once(await t.outputs());
    assert.deepEqual(fatal, []);
  } finally {
    await t.cleanup();
  }
});
