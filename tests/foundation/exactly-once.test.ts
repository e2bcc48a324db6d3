// On the real local broker: a Kafka→Kafka stage killed (SIGKILL) mid-batch, twice, and restarted
// produces every output exactly once (count and compare ids), with chunks that produce nothing
// (committed through the group) between those that do (committed in transactions); and the same
// with the chunk's transaction opened before its load (`eagerTransaction`, as signal-decide and
// placement run), where the quiet chunks commit in transactions too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { namespace, testKafka, createNamespace, waitFor, waitCaughtUp, consumeToEnd, testLogger } from '../helpers.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { registryUrl } from '../helpers.ts';

const fixture = fileURLToPath(new URL('../fixtures/copy-stage.ts', import.meta.url));

/** Every stage process started, so that a failed test leaves none running. */
const started: ChildProcess[] = [];

function startStage(prefix: string, eager: boolean): { child: ChildProcess; chunks: () => number; quietChunks: () => number; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
    env: { ...process.env, TOPIC_PREFIX: prefix, STAGE_BATCH_MAX: '40', STAGE_EAGER: eager ? '1' : '0', LOG_LEVEL: process.env.STAGE_LOG_LEVEL ?? "warn" },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  started.push(child);
  let chunks = 0;
  let quiet = 0;
  child.stdout!.on('data', (d: Buffer) => {
    chunks += (d.toString().match(/^chunk /gm) ?? []).length;
    quiet += (d.toString().match(/^chunk \d+ outputs 0$/gm) ?? []).length;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, chunks: () => chunks, quietChunks: () => quiet, exited };
}

for (const eager of [false, true]) {
  test(`a Kafka→Kafka stage killed mid-batch and restarted writes every output exactly once${eager ? ' (transaction opened before the load)' : ''}`, async () => {
    const prefix = namespace(eager ? 'eose' : 'eos');
    const kafka = testKafka();
    const cleanup = await createNamespace(kafka, prefix, 3);
    const N = 3000;
    const ids = Array.from({ length: N }, () => randomUUID());
    // Runs of quiet records (no output) between runs of copied ones, about a chunk's worth per
    // partition each: chunks with nothing to produce commit through the group, the others in
    // transactions, one after another on each partition. The input ends with a quiet run, so the
    // offsets reach its end only through group commits (and stay there: an earlier transaction's
    // offsets applied over them would leave the group behind).
    const quiet = (i: number) => Math.floor(i / 120) % 2 === 0;
    try {
      const producer = kafka.producer();
      await producer.connect();
      const assets = ['BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'XRPUSDT', 'DOGEUSDT'];
      for (let i = 0; i < N; i += 500) {
        await producer.send(
          prefix + 'signals.raw',
          ids.slice(i, i + 500).map((id, j) => {
            const asset = assets[(i + j) % assets.length]!;
            return { key: asset, value: Buffer.from(JSON.stringify({ id, asset, quiet: quiet(i + j) })), headers: { trace_id: `trace-${id}` } };
          }),
        );
      }
      await producer.disconnect();

      // Two kills at different depths into the input, each as soon as chunks are being committed.
      let quietChunks = 0;
      for (const killAfter of [3, 25]) {
        const run = startStage(prefix, eager);
        await waitFor(`${killAfter} chunks processed`, () => run.chunks() >= killAfter, 120_000, 5);
        run.child.kill('SIGKILL');
        assert.equal(await run.exited, null, 'killed by signal');
        quietChunks += run.quietChunks();
      }

      // Restart and let it finish: the committed offsets reach the end of the input.
      const final = startStage(prefix, eager);
      await waitCaughtUp(kafka, prefix + 'copy', prefix + 'signals.raw', 180_000);
      final.child.kill('SIGTERM');
      assert.equal(await final.exited, 0, 'graceful stop exits 0');
      quietChunks += final.quietChunks();
      assert.ok(quietChunks > 0, `some chunks had nothing to produce (committed ${eager ? 'in transactions of their offsets alone' : 'through the group'})`);

      const codec = await createTopicCodec({ registryUrl, prefix });
      const committed = await consumeToEnd(kafka, prefix + 'signals.valid', 3);
      const seen = await Promise.all(committed.map(async (m) => ((await codec.decode(m.topic, m.value!)) as { signal_id: string }).signal_id));
      const counts = new Map<string, number>();
      for (const id of seen) counts.set(id, (counts.get(id) ?? 0) + 1);
      const dupes = [...counts].filter(([, c]) => c > 1);
      const copied = ids.filter((_, i) => !quiet(i));
      const missing = copied.filter((id) => !counts.has(id));
      assert.deepEqual(dupes, [], 'no output twice');
      assert.deepEqual(missing, [], 'no output lost');
      assert.equal(seen.length, copied.length, 'nothing for the quiet records');
      // Trace ids travel in headers across the hop.
      assert.ok(committed.every((m) => m.headers['trace_id']?.startsWith('trace-')));

      const everything = await consumeToEnd(kafka, prefix + 'signals.valid', 3, { readCommitted: false });
      testLogger.info({ committed: committed.length, includingAborted: everything.length }, 'exactly-once figures');
    } finally {
      for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await cleanup();
    }
  });
}
