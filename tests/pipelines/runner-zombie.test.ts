// A stage instance frozen past its consumer-group session timeout (a long GC pause, a stalled VM: the
// chaos run does it with SIGSTOP) loses its partition to another instance, which processes and
// commits the chunk. When the frozen one wakes up it must not commit that chunk too: kafkajs has no
// KIP-447, so the broker would take its offsets, and retrying after being fenced would initialise
// the producer again and fence the rightful owner. Found by the chaos run (a paused placement
// process committed submissions its standby had committed already, and wrote its outcome over the
// standby's in PostgreSQL). Here the "freeze" is a load()
// that waits for the test to let it go: the event loop runs, but nothing heartbeats, exactly as a
// stopped process. No timing is measured: the test waits for conditions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { namespace, testKafka, createNamespace, consumeToEnd, waitFor, registryUrl, testCfg } from '../helpers.ts';
import { createLogger } from '../../runtime/logger.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { runStage, ok, type Stage } from '../../pipelines/runner.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { systemClock } from '../../runtime/clock.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import type { Signal } from '../../schemas/types.ts';

test('a stage instance that wakes up after its partition was given away persists and commits nothing: every output exactly once', async () => {
  const prefix = namespace('zombie');
  const kafka = testKafka();
  const cleanup = await createNamespace(kafka, prefix, 1);
  const codec = await createTopicCodec({ registryUrl, prefix });
  const input = prefix + 'signals.raw';
  const groupId = prefix + 'zombie';
  try {
    const ids = Array.from({ length: 20 }, () => randomUUID());
    const p = kafka.producer();
    await p.connect();
    await p.send(input, ids.map((id) => ({ key: 'BTCUSDT', value: Buffer.from(id) })));
    await p.disconnect();

    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let frozen = false;
    let zombieChunks = 0;
    let zombiePersists = 0;
    const stageOf = (name: string, freeze: boolean): Stage<Buffer, undefined> => ({
      name,
      input,
      inputFormat: 'raw',
      dlq: prefix + 'signals.dlq',
      load: async () => {
        if (freeze && !frozen) {
          frozen = true;
          await released; // no heartbeat while here: the group removes this member
        }
        if (freeze) zombieChunks++;
        return undefined;
      },
      process: (rec) => ok({ topic: prefix + 'signals.valid', key: 'BTCUSDT', value: { ...SAMPLES.Signal, signal_id: rec.value.toString('utf8'), strategy_id: name } satisfies Signal }),
      // The chunk's database effects: a zombie must not write them over the new owner's.
      persist: async () => {
        if (freeze) zombiePersists++;
      },
    });
    // Instance a's log, to see it give the chunk up (the fixed runner says so).
    const aLines: string[] = [];
    const aLogger = createLogger({ ...testCfg, LOG_LEVEL: 'warn' }, 'zombie-a', { write: (line: string) => void aLines.push(line) });
    const deps = (fatal: Error[], logger = createLogger({ ...testCfg, LOG_LEVEL: 'silent' }, 'zombie-b')) => ({ kafka, codec, logger, metrics: createMetrics(), clock: systemClock, groupId, batchMax: 100, retryMaxMs: 500, sessionTimeoutMs: 6000, onFatal: (e: Error) => fatal.push(e) });
    const fatalA: Error[] = [];
    const fatalB: Error[] = [];
    const a = await runStage(stageOf('a', true), deps(fatalA, aLogger));
    let b: Awaited<ReturnType<typeof runStage>> | null = null;
    try {
      await waitFor('instance a to hold the chunk, frozen', () => frozen, 60_000);
      // The second instance joins; the group gives it the partition once a's session timed out.
      b = await runStage(stageOf('b', false), deps(fatalB));
      const bOutputs = async () => {
        const out = await consumeToEnd(kafka, prefix + 'signals.valid', 1);
        const seen = await Promise.all(out.map(async (m) => (await codec.decode(m.topic, m.value!)) as Signal));
        return seen;
      };
      await waitFor('instance b to commit every output', async () => (await bOutputs()).filter((s) => s.strategy_id === 'b').length >= ids.length, 120_000, 500);
      // Wake a up: it finishes its chunk, and either gives it up (it no longer owns the partition)
      // or commits it once more (what the runner did before: retry after being fenced, initialising
      // the producer again). Wait for whichever happens.
      release();
      await waitFor(
        'instance a to give its chunk up, or to commit it',
        async () => aLines.some((l) => l.includes('partition no longer owned')) || (await bOutputs()).some((s) => s.strategy_id === 'a'),
        120_000,
        500,
      );
      assert.ok(zombieChunks > 0);
      await a.stop();
      await b.stop();
      b = null;
      const seen = await bOutputs();
      const counts = new Map<string, number>();
      for (const s of seen) counts.set(s.signal_id, (counts.get(s.signal_id) ?? 0) + 1);
      assert.equal(zombiePersists, 0, 'the woken instance persisted nothing');
      assert.deepEqual([...counts].filter(([, c]) => c > 1), [], 'no output twice');
      assert.deepEqual(ids.filter((id) => !counts.has(id)), [], 'no output lost');
      assert.deepEqual(fatalA, []);
      assert.deepEqual(fatalB, []);
    } finally {
      release();
      await b?.stop().catch(() => {});
      await a.stop().catch(() => {});
    }
  } finally {
    await cleanup();
  }
});
