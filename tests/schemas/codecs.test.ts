// Typed codecs through a real registry (the local stand-in on an ephemeral port, one per test) and
// @kafkajs/confluent-schema-registry: round trips, evolution rules, and classified decode failures.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import avro from 'avsc';
import { startRegistry } from '../../schemas/registry-server.ts';
import {
  createCodecs,
  DEFAULT_TOPIC_RECORDS,
  RECORD_KINDS,
  SchemaCodecs,
  loadSchema,
  readWireHeader,
  subjectForTopic,
  writeWireFormat,
  type RecordKind,
  type Signal,
} from '../../schemas/codecs.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import { FatalError, RejectedError, RetriableError } from '../../runtime/errors.ts';

async function registry(t: TestContext) {
  const reg = await startRegistry({ host: '127.0.0.1', port: 0 });
  t.after(() => reg.close());
  return reg;
}

function topicFor(kind: RecordKind): string {
  const topic = Object.entries(DEFAULT_TOPIC_RECORDS).find(([, k]) => k === kind)?.[0];
  assert.ok(topic, `a topic carries ${kind}`);
  return topic;
}

/** Plain-data view for comparisons (Buffers as hex). */
function plain(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v, (_k, x: unknown) => (x && typeof x === 'object' && (x as { type?: string }).type === 'Buffer' ? `hex:${Buffer.from((x as { data: number[] }).data).toString('hex')}` : x)));
}

test('round trip of every record kind through the registry, in Confluent wire format', async (t) => {
  const { url } = await registry(t);
  const codecs = await createCodecs({ registryUrl: url, topicPrefix: 'rt.' });
  const ids = await codecs.registerAll();
  assert.equal(Object.keys(ids).length, Object.keys(DEFAULT_TOPIC_RECORDS).length);
  assert.ok(Object.keys(ids).every((s) => s.startsWith('rt.') && s.endsWith('-value')), 'TopicNameStrategy subjects with the prefix');

  for (const kind of RECORD_KINDS) {
    const topic = topicFor(kind);
    const sample = SAMPLES[kind];
    const bytes = await codecs.encode(topic, sample);
    const id = ids[subjectForTopic(`rt.${topic}`)];
    assert.equal(bytes[0], 0, `${kind}: magic byte`);
    assert.equal(bytes.readInt32BE(1), id, `${kind}: schema id after the magic byte`);
    assert.deepEqual(readWireHeader(bytes).schemaId, id);
    // The body is plain Avro of the schema.
    assert.deepEqual(plain(loadSchema(kind).type.fromBuffer(bytes.subarray(5))), plain(sample));

    // Decoded with the writer schema, and into the topic's reader schema (typed codec).
    const raw = await codecs.decode(bytes);
    assert.equal(raw.schemaId, id);
    assert.equal(raw.writerSchema.name, `trading.v1.${kind}`);
    assert.deepEqual(raw.value, structuredCloneWithBuffers(sample), `${kind}: decode equals input`);
    const typed = await codecs.forTopic(`rt.${topic}`, kind).decode(bytes);
    assert.deepEqual(typed.value, structuredCloneWithBuffers(sample));
  }
});

// Samples are frozen plain objects; decoded values are plain objects too, Buffers stay Buffers.
function structuredCloneWithBuffers<T>(v: T): T {
  if (v === null || typeof v !== 'object' || Buffer.isBuffer(v)) return v;
  if (Array.isArray(v)) return v.map(structuredCloneWithBuffers) as T;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, structuredCloneWithBuffers(x)])) as T;
}

test('a typed topic codec: ids are cached, the kind is checked, a wrong value is a RejectedError with paths', async (t) => {
  const { url } = await registry(t);
  const codecs = await createCodecs({ registryUrl: url, eager: false });
  const signals = codecs.forTopic('signals.valid', 'Signal');
  assert.equal(signals.subject, 'signals.valid-value');
  const [a, b] = await Promise.all([signals.schemaId(), signals.schemaId()]);
  assert.equal(a, b);
  const decoded = await signals.decode(await signals.encode(SAMPLES.Signal));
  const s: Signal = decoded.value;
  assert.equal(s.market_data_snapshot.orderbook_depth?.ask_depth, 120);

  assert.throws(() => codecs.forTopic('signals.valid', 'OrderEvent'), (e: unknown) => e instanceof FatalError && e.code === 'unknown_topic');
  assert.throws(() => codecs.kindOf('no.such.topic'), FatalError);
  assert.equal(codecs.kindOf('anything.dlq'), 'DeadLetter');

  const bad = { ...SAMPLES.Signal, amount: 'five hundred', market_data_snapshot: { ...SAMPLES.Signal.market_data_snapshot, price: null } };
  await assert.rejects(signals.encode(bad as unknown as Signal), (e: unknown) => {
    assert.ok(e instanceof RejectedError);
    assert.equal(e.code, 'schema_mismatch');
    assert.match(e.message, /amount/);
    assert.match(e.message, /market_data_snapshot\.price/);
    return true;
  });
});

test('codecs accept the topic catalogue shape ({name, record}) and skip raw topics', async (t) => {
  const { url } = await registry(t);
  const codecs = await createCodecs({
    registryUrl: url,
    topics: [
      { name: 'signals.raw', record: 'raw' },
      { name: 'signals.valid', record: 'Signal' },
    ],
  });
  assert.deepEqual(codecs.knownTopics(), ['signals.valid']);
  assert.throws(() => codecs.kindOf('signals.raw'), FatalError);
});

function evolved(kind: RecordKind, change: (fields: Array<Record<string, unknown>>) => Array<Record<string, unknown>>): avro.Schema {
  const json = structuredClone(loadSchema(kind).json) as unknown as { fields: Array<Record<string, unknown>> };
  json.fields = change(json.fields);
  return json as unknown as avro.Schema;
}

test('a BACKWARD-incompatible schema change is refused through the client (409 -> FatalError schema_incompatible)', async (t) => {
  const { url } = await registry(t);
  await createCodecs({ registryUrl: url, eager: false }).then((c) => c.schemaId('signals.valid'));

  const required = evolved('Signal', (f) => [...f, { name: 'venue', type: 'string', doc: 'Trading venue.' }]);
  const retyped = evolved('Signal', (f) => f.map((x) => (x.name === 'amount' ? { ...x, type: 'string' } : x)));
  for (const schema of [required, retyped]) {
    await assert.rejects(
      createCodecs({ registryUrl: url, topics: { 'signals.valid': 'Signal' }, schemaOverrides: { Signal: schema } }),
      (e: unknown) => {
        assert.ok(e instanceof FatalError, String(e));
        assert.equal(e.code, 'schema_incompatible');
        assert.match(e.message, /incompatible/);
        return true;
      },
    );
  }
  const versions = await fetch(`${url}/subjects/signals.valid-value/versions`).then((r) => r.json());
  assert.deepEqual(versions, [1]);
});

test('a compatible change (optional field, default null) is accepted, and old records decode with the new schema', async (t) => {
  const { url } = await registry(t);
  const v1 = await createCodecs({ registryUrl: url, topics: { 'signals.valid': 'Signal' } });
  const oldBytes = await v1.encode('signals.valid', SAMPLES.Signal);

  const withVenue = evolved('Signal', (f) => [...f, { name: 'venue', type: ['null', 'string'], default: null, doc: 'Trading venue.' }]);
  const v2 = await createCodecs({ registryUrl: url, topics: { 'signals.valid': 'Signal' }, schemaOverrides: { Signal: withVenue } });
  const id1 = await v1.schemaId('signals.valid');
  const id2 = await v2.schemaId('signals.valid');
  assert.notEqual(id1, id2);
  assert.deepEqual(await fetch(`${url}/subjects/signals.valid-value/versions`).then((r) => r.json()), [1, 2]);

  // Old data, new reader: the new field takes its default.
  const old = await v2.decode(oldBytes, 'signals.valid');
  assert.equal(old.schemaId, id1);
  assert.deepEqual(old.value, { ...structuredCloneWithBuffers(SAMPLES.Signal), venue: null });
  // New data, read by its writer schema.
  const newBytes = await v2.encode('signals.valid', { ...SAMPLES.Signal, venue: 'bybit' } as Signal);
  assert.equal(newBytes.readInt32BE(1), id2);
  assert.equal(((await v1.decode(newBytes)).value as { venue: string }).venue, 'bybit');
  // The old reader, after a BACKWARD change, still reads new data when the new field is optional
  // (forward direction, not guaranteed by BACKWARD in general, but true here).
  assert.deepEqual((await v1.decode(newBytes, 'signals.valid')).value, structuredCloneWithBuffers(SAMPLES.Signal));

  // The compatibility endpoint agrees.
  const check = await fetch(`${url}/compatibility/subjects/signals.valid-value/versions/latest`, {
    method: 'POST',
    headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
    body: JSON.stringify({ schema: JSON.stringify(evolved('Signal', (f) => f.filter((x) => x.name !== 'received_at'))) }),
  }).then((r) => r.json());
  assert.deepEqual(check, { is_compatible: true }, 'dropping a field is BACKWARD-compatible');
});

test('lookup-only mode finds registered schemas and refuses unregistered ones', async (t) => {
  const { url } = await registry(t);
  const registering = await createCodecs({ registryUrl: url, topics: { 'orders.events': 'OrderEvent' } });
  const lookup = await createCodecs({ registryUrl: url, topics: { 'orders.events': 'OrderEvent' }, autoRegister: false });
  assert.equal(await lookup.schemaId('orders.events'), await registering.schemaId('orders.events'));
  await assert.rejects(
    createCodecs({ registryUrl: url, topics: { 'orders.intents': 'OrderIntent' }, autoRegister: false }),
    (e: unknown) => e instanceof FatalError && e.code === 'schema_not_registered',
  );
});

test('undecodable bytes give RejectedError("undecodable") with a reason', async (t) => {
  const { url } = await registry(t);
  const codecs = await createCodecs({ registryUrl: url });
  const good = await codecs.encode('orders.events', SAMPLES.OrderEvent);
  const signalBytes = await codecs.encode('signals.valid', SAMPLES.Signal);
  const cases: Array<[string, Buffer | null, RegExp]> = [
    ['tombstone', null, /null/],
    ['too short', Buffer.from([0, 0, 1]), /shorter than the 5-byte/],
    ['raw JSON', Buffer.from('{"signal_id":"x"}'), /magic byte 0x7b/],
    ['unknown schema id', writeWireFormat(987654, good.subarray(5)), /schema id 987654 is unknown/],
    ['truncated body', good.subarray(0, good.length - 7), /does not parse/],
    ['trailing garbage', Buffer.concat([good, Buffer.from([1, 2, 3])]), /does not parse/],
    ['garbage body', writeWireFormat(good.readInt32BE(1), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])), /does not parse/],
  ];
  for (const [name, bytes, reason] of cases) {
    await assert.rejects(codecs.decode(bytes, 'orders.events'), (e: unknown) => {
      assert.ok(e instanceof RejectedError, `${name}: ${String(e)}`);
      assert.equal(e.code, 'undecodable', name);
      assert.equal(e.retriable, false);
      assert.match(e.message, reason, name);
      return true;
    });
  }
  // A record of another kind on the topic: the topic's reader cannot resolve the writer.
  await assert.rejects(codecs.decode(signalBytes, 'orders.events'), (e: unknown) => e instanceof RejectedError && e.code === 'undecodable' && /cannot read/.test(e.message));
});

test('an unreachable registry gives RetriableError("registry_unavailable"), and a later call recovers', async (t) => {
  // A port that was free a moment ago: nothing listens there.
  const port = await new Promise<number>((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as { port: number }).port;
      srv.close(() => resolve(p));
    });
  });
  const codecs = new SchemaCodecs({ registryUrl: `http://127.0.0.1:${port}`, retries: 0 });
  await assert.rejects(codecs.schemaId('signals.valid'), (e: unknown) => e instanceof RetriableError && e.code === 'registry_unavailable' && e.retriable);
  await assert.rejects(codecs.encode('signals.valid', SAMPLES.Signal), RetriableError);
  await assert.rejects(codecs.decode(writeWireFormat(1, Buffer.from([0])), 'signals.valid'), (e: unknown) => e instanceof RetriableError && e.code === 'registry_unavailable');

  // The registry comes up on that port: the failed id was not cached, so the codec recovers.
  const reg = await startRegistry({ host: '127.0.0.1', port });
  t.after(() => reg.close());
  const bytes = await codecs.encode('signals.valid', SAMPLES.Signal);
  assert.deepEqual((await codecs.decode(bytes, 'signals.valid')).value, structuredCloneWithBuffers(SAMPLES.Signal));
});
