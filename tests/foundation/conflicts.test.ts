// Records whose effects cannot be stored never stop a stage and are never retried forever: a unique
// key another row holds, and an output larger than the broker accepts, are each dead-lettered with a
// machine-readable reason, recorded in stage_conflicts, counted, shown in the runner's detail, and
// the records around them flow (each exactly once). A stage that asks for it halts trading. A second
// start on the same group and database does not meet them again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { namespace, testKafka, createNamespace, consumeToEnd, waitCaughtUp, waitFor, registryUrl, testLogger, migratedDatabase } from '../helpers.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { runStage, ok, DLQ_HEADERS, recordFailure, isKafkaTransient, type Stage, type RunningStage } from '../../pipelines/runner.ts';
import { conflictSink } from '../../pipelines/stage-conflicts.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { systemClock } from '../../runtime/clock.ts';
import { sql, type DatabasePool } from '../../runtime/db.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import type { DeadLetter } from '../../schemas/types.ts';

/** A stage over raw `{id, big?}` records: stores each id once (primary key), copies it to signals.valid. */
function probeStage(prefix: string, db: DatabasePool, conflict?: 'halt'): Stage<Buffer> {
  return {
    name: 'probe',
    input: prefix + 'signals.raw',
    inputFormat: 'raw',
    dlq: prefix + 'signals.dlq',
    process: (rec) => {
      const { id, big } = JSON.parse(rec.value.toString('utf8')) as { id: string; big?: number };
      // `big` makes an output larger than the broker's message.max.bytes (1 MiB by default).
      return ok({ topic: prefix + 'signals.valid', key: 'k', value: { ...SAMPLES.Signal, signal_id: id, trace_id: big ? 'x'.repeat(big) : null } });
    },
    persist: async (items) => {
      const ids = items.map(({ rec }) => (JSON.parse(rec.value.toString('utf8')) as { id: string }).id);
      // A bug of the stage met on some records only.
      if (ids.some((id) => id.startsWith('bug'))) (null as unknown as { boom(): void }).boom();
      // Idempotent for a replay of the same record (same id, same source), a conflict for another record holding the id.
      await db.query(sql.typeAlias('void')`
        INSERT INTO conflict_probe (id, source) SELECT * FROM unnest(${sql.array(ids, 'text')}::text[], ${sql.array(items.map(({ rec }) => `${rec.partition}/${rec.offset}`), 'text')}::text[])
        ON CONFLICT (id) DO UPDATE SET source = EXCLUDED.source WHERE conflict_probe.source = EXCLUDED.source`);
      const clash = await db.maybeOne(sql.type(z.object({ id: z.string() }))`
        SELECT id FROM conflict_probe WHERE id = ANY(${sql.array(ids, 'text')}) AND source <> ALL(${sql.array(items.map(({ rec }) => `${rec.partition}/${rec.offset}`), 'text')}) LIMIT 1`);
      // The upsert's WHERE skipped a row someone else holds: make PostgreSQL say so, as a unique violation.
      if (clash) await db.query(sql.typeAlias('void')`INSERT INTO conflict_probe (id, source) VALUES (${clash.id}, 'again')`);
    },
    ...(conflict ? { conflict } : {}),
  };
}

async function setup(tag: string) {
  const prefix = namespace(tag);
  const kafka = testKafka();
  const cleanup = await createNamespace(kafka, prefix, 1);
  const codec = await createTopicCodec({ registryUrl, prefix });
  const dbx = await migratedDatabase(tag);
  await dbx.pool.query(sql.typeAlias('void')`CREATE TABLE conflict_probe (id text PRIMARY KEY, source text NOT NULL)`);
  // Yesterday's row: an id that a new record will claim again.
  await dbx.pool.query(sql.typeAlias('void')`INSERT INTO conflict_probe (id, source) VALUES ('taken', 'yesterday')`);
  const send = async (records: object[]) => {
    const p = kafka.producer();
    await p.connect();
    await p.send(prefix + 'signals.raw', records.map((r) => ({ key: 'k', value: Buffer.from(JSON.stringify(r)) })));
    await p.disconnect();
  };
  return { prefix, kafka, codec, db: dbx.pool, send, cleanup: async () => (await cleanup(), await dbx.drop()) };
}

test('a taken unique key and a too-large output are dead-lettered and recorded; the records around them flow once; a second start meets neither again', async () => {
  const { prefix, kafka, codec, db, send, cleanup } = await setup('conflict');
  const metrics = createMetrics();
  const fatal: Error[] = [];
  const run = () =>
    runStage(probeStage(prefix, db), { kafka, codec, logger: testLogger, metrics, clock: systemClock, groupId: prefix + 'probe', batchMax: 100, retryMaxMs: 500, onFatal: (e) => fatal.push(e), conflicts: conflictSink(db) });
  let running: RunningStage | null = null;
  try {
    await send([{ id: 'a' }, { id: 'taken' }, { id: 'b' }, { id: 'huge', big: 1_200_000 }, { id: 'c' }]);
    running = await run();
    await waitCaughtUp(kafka, prefix + 'probe', prefix + 'signals.raw');
    assert.deepEqual(fatal, [], 'the stage never stopped');

    const out = await consumeToEnd(kafka, prefix + 'signals.valid', 1);
    const passed = await Promise.all(out.map(async (m) => ((await codec.decode(m.topic, m.value!)) as { signal_id: string }).signal_id));
    assert.deepEqual(passed, ['a', 'b', 'c'], 'every other record exactly once, in order');
    const dead = await consumeToEnd(kafka, prefix + 'signals.dlq', 1);
    assert.deepEqual(dead.map((m) => m.headers[DLQ_HEADERS.reason]), ['state_conflict', 'record_too_large']);
    const env = await Promise.all(dead.map(async (m) => (await codec.decode(m.topic, m.value!)) as DeadLetter));
    assert.deepEqual(JSON.parse(Buffer.from(env[0]!.original_value!).toString()), { id: 'taken' }, 'original bytes kept');
    assert.match(env[0]!.reason_detail, /conflict_probe_pkey|duplicate key/);
    assert.equal(env[1]!.original_offset, 3);

    const rows = await db.any(sql.type(z.object({ source: z.string(), reason: z.string(), action: z.string(), pg_code: z.string().nullable(), constraint_name: z.string().nullable() }))`
      SELECT source, reason, action, pg_code, constraint_name FROM stage_conflicts ORDER BY id`);
    assert.deepEqual(rows, [
      { source: `${prefix}signals.raw/0/1`, reason: 'state_conflict', action: 'dead_letter', pg_code: '23505', constraint_name: 'conflict_probe_pkey' },
      { source: `${prefix}signals.raw/0/3`, reason: 'record_too_large', action: 'dead_letter', pg_code: null, constraint_name: null },
    ]);
    const counted = await metrics.registry.getSingleMetricAsString('pipeline_stage_conflicts_total');
    assert.match(counted, /reason="state_conflict",action="dead_letter"} 1/);
    assert.match(counted, /reason="record_too_large",action="dead_letter"} 1/);
    const seen = running.conflicts();
    assert.equal(seen.total, 2);
    assert.deepEqual(seen.byReason, { state_conflict: 1, record_too_large: 1 });
    const state = await db.oneFirst(sql.type(z.object({ state: z.string() }))`SELECT state FROM trading_state WHERE id`);
    assert.equal(state, 'ACTIVE', 'a dead_letter stage does not halt');

    // Second start on the same group, database and topics: nothing is met again, new records flow.
    await running.stop();
    running = null;
    await send([{ id: 'd' }]);
    running = await run();
    await waitCaughtUp(kafka, prefix + 'probe', prefix + 'signals.raw');
    const again = await consumeToEnd(kafka, prefix + 'signals.valid', 1);
    assert.deepEqual(await Promise.all(again.map(async (m) => ((await codec.decode(m.topic, m.value!)) as { signal_id: string }).signal_id)), ['a', 'b', 'c', 'd']);
    assert.equal((await consumeToEnd(kafka, prefix + 'signals.dlq', 1)).length, 2);
    assert.equal(running.conflicts().total, 0);
    assert.deepEqual(fatal, []);
  } finally {
    await running?.stop();
    await cleanup();
  }
});

test('a stage that asks for it halts trading on a conflict, once, with the reason; a replay does not record it twice', async () => {
  const { prefix, kafka, codec, db, send, cleanup } = await setup('halt');
  const fatal: Error[] = [];
  const running = await runStage(probeStage(prefix, db, 'halt'), {
    kafka, codec, logger: testLogger, metrics: createMetrics(), clock: systemClock, groupId: prefix + 'probe', batchMax: 100, retryMaxMs: 500, onFatal: (e) => fatal.push(e), conflicts: conflictSink(db),
  });
  try {
    await send([{ id: 'x' }, { id: 'taken' }, { id: 'y' }]);
    await waitCaughtUp(kafka, prefix + 'probe', prefix + 'signals.raw');
    assert.deepEqual(fatal, []);
    const st = await db.one(sql.type(z.object({ state: z.string(), reason: z.string().nullable() }))`SELECT state, reason FROM trading_state WHERE id`);
    assert.equal(st.state, 'HALTED');
    assert.match(st.reason ?? '', /^state_conflict: probe could not record .*signals\.raw\/0\/1 \(state_conflict on conflict_probe_pkey\)/);
    const moves = await db.any(sql.type(z.object({ from_state: z.string(), to_state: z.string(), actor: z.string().nullable() }))`SELECT from_state, to_state, actor FROM trading_state_transitions`);
    assert.deepEqual(moves, [{ from_state: 'ACTIVE', to_state: 'HALTED', actor: 'stage:probe' }]);
    // The same conflict recorded again (a replay after a crash before the Kafka commit): one row, no second move.
    await conflictSink(db).record({ stage: 'probe', groupId: prefix + 'probe', source: `${prefix}signals.raw/0/1`, key: 'k', reason: 'state_conflict', action: 'halt', pgCode: '23505', constraint: 'conflict_probe_pkey', detail: 'replayed', at: Date.now() });
    assert.equal(await db.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM stage_conflicts`), 1);
    assert.equal(await db.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM trading_state_transitions`), 1);
    const out = await consumeToEnd(kafka, prefix + 'signals.valid', 1);
    assert.equal(out.length, 2, 'x and y flowed');
  } finally {
    await running.stop();
    await cleanup();
  }
});

test('recordFailure: what the same record meets on every attempt, and nothing else', () => {
  const pg = (code: string, constraint?: string) => Object.assign(new Error(`pg ${code}`), { cause: { code, constraint } });
  assert.equal(recordFailure(pg('23505', 'orders_order_id_key'))?.reason, 'state_conflict');
  assert.equal(recordFailure(pg('23505', 'orders_order_id_key'))?.constraint, 'orders_order_id_key');
  assert.equal(recordFailure(pg('23514'))?.reason, 'invalid_record');
  assert.equal(recordFailure(pg('22P02'))?.reason, 'invalid_record');
  assert.equal(recordFailure(Object.assign(new Error('too large'), { name: 'KafkaJSProtocolError', type: 'MESSAGE_TOO_LARGE', retriable: false }))?.reason, 'record_too_large');
  for (const transient of ['40P01', '40001', '57P01', '08006', '53300', '42703', '28P01']) assert.equal(recordFailure(pg(transient)), null, transient);
  assert.equal(recordFailure(Object.assign(new Error('x'), { name: 'KafkaJSConnectionError' })), null);
  assert.equal(recordFailure(new TypeError('bug')), null);
});

test('kafka errors: a broker hiccup is retried, a refusal about the setup stops the stage, one about the records is theirs', () => {
  const kafka = (type: string, retriable: boolean) => Object.assign(new Error(type), { name: 'KafkaJSProtocolError', type, retriable });
  assert.equal(isKafkaTransient(kafka('NOT_LEADER_FOR_PARTITION', true)), true);
  assert.equal(isKafkaTransient(kafka('COORDINATOR_LOAD_IN_PROGRESS', true)), true);
  assert.equal(isKafkaTransient(Object.assign(new Error('x'), { name: 'KafkaJSConnectionError' })), true);
  // kafkajs names these KafkaJS* too: before, every one of them was retried forever, silently.
  assert.equal(isKafkaTransient(kafka('TOPIC_AUTHORIZATION_FAILED', false)), false);
  assert.equal(isKafkaTransient(kafka('UNSUPPORTED_VERSION', false)), false);
  assert.equal(isKafkaTransient(kafka('MESSAGE_TOO_LARGE', false)), false);
  assert.equal(recordFailure(kafka('TOPIC_AUTHORIZATION_FAILED', false)), null, 'not the records: stop loudly');
});

test('an exception of the stage on one record dead-letters it (stage_error) and the rest flows; a streak of them stops the stage', async () => {
  const { prefix, kafka, codec, db, send, cleanup } = await setup('bug');
  const fatal: Error[] = [];
  const running = await runStage(probeStage(prefix, db), {
    kafka, codec, logger: testLogger, metrics: createMetrics(), clock: systemClock, groupId: prefix + 'probe', batchMax: 100, retryMaxMs: 500, onFatal: (e) => fatal.push(e), conflicts: conflictSink(db),
  });
  try {
    await send([{ id: 'a' }, { id: 'bug-1' }, { id: 'b' }]);
    await waitCaughtUp(kafka, prefix + 'probe', prefix + 'signals.raw');
    assert.deepEqual(fatal, []);
    const dead = await consumeToEnd(kafka, prefix + 'signals.dlq', 1);
    assert.deepEqual(dead.map((m) => m.headers[DLQ_HEADERS.reason]), ['stage_error']);
    assert.match(dead[0]!.headers[DLQ_HEADERS.detail] ?? '', /TypeError/);
    // Record after record failing the same way: the stage, not the data. Three are dead-lettered, then it stops.
    await send([{ id: 'bug-2' }, { id: 'bug-3' }, { id: 'bug-4' }, { id: 'bug-5' }]);
    await waitFor('the stage to stop', () => fatal.length > 0, 60_000);
    assert.equal(fatal.length, 1);
    const after = await consumeToEnd(kafka, prefix + 'signals.dlq', 1);
    assert.deepEqual(
      after.map((m) => [m.headers[DLQ_HEADERS.reason], m.headers[DLQ_HEADERS.source]]),
      [1, 3, 4, 5].map((o) => ['stage_error', `${prefix}signals.raw/0/${o}`]),
      'bug-1, then bug-2 to bug-4 dead-lettered; bug-5 (offset 6) left uncommitted for whoever fixes the stage',
    );
  } finally {
    await running.stop();
    await cleanup();
  }
});
