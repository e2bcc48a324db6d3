// Dead-letter routing on the real broker: undecodable records and records a stage rejects go to the
// stage's dead-letter topic with the reason in headers and the original bytes kept, and the valid
// records behind them still flow.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { namespace, testKafka, createNamespace, consumeToEnd, waitCaughtUp, registryUrl, testLogger } from '../helpers.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { runStage, ok, reject, DLQ_HEADERS, type Stage } from '../../pipelines/runner.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { systemClock } from '../../runtime/clock.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import type { Signal, DeadLetter } from '../../schemas/types.ts';

test('undecodable and rejected records are dead-lettered with reasons; valid ones behind them flow', async () => {
  const prefix = namespace('dlq');
  const kafka = testKafka();
  const cleanup = await createNamespace(kafka, prefix, 1);
  const codec = await createTopicCodec({ registryUrl, prefix });
  const metrics = createMetrics();
  // A stage over Avro Signals that refuses confidence below 0.5.
  const stage: Stage<Signal> = {
    name: 'gate',
    input: prefix + 'signals.valid',
    inputFormat: 'avro',
    dlq: prefix + 'orders.dlq',
    process: (rec) =>
      rec.value.confidence < 0.5
        ? reject('low_confidence', `confidence ${rec.value.confidence} < 0.5`, [], rec.value.signal_id)
        : ok({ topic: prefix + 'model.signals', key: rec.value.asset, value: { ...SAMPLES.ModelSignal, signal_id: rec.value.signal_id } }),
  };
  const good1 = randomUUID();
  const low = randomUUID();
  const good2 = randomUUID();
  const garbage = Buffer.from('definitely not avro');
  const wrongMagic = Buffer.from([1, 0, 0, 0, 1, 2, 3]);
  const producer = kafka.producer();
  await producer.connect();
  await producer.send(prefix + 'signals.valid', [
    { key: 'ETHUSDT', value: await codec.encode(prefix + 'signals.valid', { ...SAMPLES.Signal, signal_id: good1 }), headers: { trace_id: 'tr-1' } },
    { key: 'ETHUSDT', value: garbage, headers: { trace_id: 'tr-garbage' } },
    { key: 'ETHUSDT', value: await codec.encode(prefix + 'signals.valid', { ...SAMPLES.Signal, signal_id: low, confidence: 0.1 }) },
    { key: 'ETHUSDT', value: wrongMagic },
    { key: 'ETHUSDT', value: await codec.encode(prefix + 'signals.valid', { ...SAMPLES.Signal, signal_id: good2 }) },
  ]);
  await producer.disconnect();
  const fatal: Error[] = [];
  const running = await runStage(stage, { kafka, codec, logger: testLogger, metrics, clock: systemClock, groupId: prefix + 'gate', batchMax: 100, retryMaxMs: 1000, onFatal: (e) => fatal.push(e) });
  try {
    await waitCaughtUp(kafka, prefix + 'gate', prefix + 'signals.valid');
    const out = await consumeToEnd(kafka, prefix + 'model.signals', 1);
    const passed = await Promise.all(out.map(async (m) => ((await codec.decode(m.topic, m.value!)) as { signal_id: string }).signal_id));
    assert.deepEqual(passed.sort(), [good1, good2].sort());
    assert.equal(out[0]!.headers['trace_id'], 'tr-1', 'trace id carried across the hop');

    const dead = await consumeToEnd(kafka, prefix + 'orders.dlq', 1);
    assert.equal(dead.length, 3);
    const reasons = dead.map((m) => m.headers[DLQ_HEADERS.reason]);
    assert.deepEqual(reasons, ['undecodable', 'low_confidence', 'undecodable']);
    const envelopes = await Promise.all(dead.map(async (m) => (await codec.decode(m.topic, m.value!)) as DeadLetter));
    assert.deepEqual(Buffer.from(envelopes[0]!.original_value!), garbage, 'original bytes kept');
    assert.deepEqual(Buffer.from(envelopes[2]!.original_value!), wrongMagic);
    assert.equal(envelopes[0]!.trace_id, 'tr-garbage');
    assert.equal(envelopes[1]!.signal_id, low);
    assert.equal(envelopes[1]!.reason_code, 'low_confidence');
    assert.equal(envelopes[1]!.original_offset, 2);
    assert.equal(dead[1]!.headers[DLQ_HEADERS.source], `${prefix}signals.valid/0/2`);
    assert.equal(dead[1]!.headers[DLQ_HEADERS.stage], 'gate');
    const counted = await metrics.registry.getSingleMetricAsString('pipeline_stage_records_rejected_total');
    assert.match(counted, /reason="undecodable"} 2/);
    assert.match(counted, /reason="low_confidence"} 1/);
    assert.deepEqual(fatal, []);
  } finally {
    await running.stop();
    await cleanup();
  }
});
