// The synchronous decode path (replays): before the writer schema is fetched it declines (undefined);
// afterwards it gives exactly what decode gives — plain objects, with and without a reader topic,
// including an old writer schema resolved into the current one — and throws the same errors.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startRegistry } from '../../schemas/registry-server.ts';
import { createCodecs, DEFAULT_TOPIC_RECORDS, RECORD_KINDS, loadSchema, plainifier, writeWireFormat, type RecordKind } from '../../schemas/codecs.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import { RejectedError } from '../../runtime/errors.ts';

async function registry(t: TestContext) {
  const reg = await startRegistry({ host: '127.0.0.1', port: 0 });
  t.after(() => reg.close());
  return reg;
}

const topicFor = (kind: RecordKind) => Object.entries(DEFAULT_TOPIC_RECORDS).find(([, k]) => k === kind)![0];

/** The generic conversion the codec used before (own enumerable fields, recursively). */
function toPlainReference(v: unknown): unknown {
  if (v === null || typeof v !== 'object' || Buffer.isBuffer(v)) return v;
  if (Array.isArray(v)) return v.map(toPlainReference);
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toPlainReference(x)]));
}

test('decodeSync: undefined until the writer schema is cached, then the same value as decode', async (t) => {
  const { url } = await registry(t);
  const writer = await createCodecs({ registryUrl: url, topicPrefix: 'ds.' });
  const reader = await createCodecs({ registryUrl: url, topicPrefix: 'ds.', eager: false });
  for (const kind of RECORD_KINDS) {
    const topic = topicFor(kind);
    const bytes = await writer.encode(topic, SAMPLES[kind]);
    // A fresh instance has not fetched this id yet (ids are per subject; eager is off).
    if (kind === RECORD_KINDS[0]) assert.equal(reader.decodeSync(bytes, topic), undefined);
    const viaAsync = await reader.decode(bytes, topic);
    const viaSync = reader.decodeSync(bytes, topic);
    assert.ok(viaSync, `${kind}: cached after decode`);
    assert.deepEqual(viaSync.value, viaAsync.value, `${kind}: same value`);
    assert.equal(viaSync.schemaId, viaAsync.schemaId);
    assert.deepEqual(reader.decodeSync(bytes)!.value, (await reader.decode(bytes)).value, `${kind}: writer-shaped`);
    // Plain objects all the way down, equal to the generic conversion of avsc's record instances.
    const type = loadSchema(kind).type;
    const inst = type.fromBuffer(bytes.subarray(5));
    assert.deepEqual(viaSync.value, toPlainReference(inst));
    const conv = plainifier(type);
    assert.deepEqual(conv ? conv(inst) : inst, toPlainReference(inst));
    // A body the schema cannot parse: the same classified error, thrown instead of rejected.
    const bad = writeWireFormat(viaSync.schemaId, Buffer.from([0xff, 0xff, 0xff]));
    assert.throws(() => reader.decodeSync(bad, topic), (e: unknown) => e instanceof RejectedError && e.code === 'undecodable');
    await assert.rejects(reader.decode(bad, topic), (e: unknown) => e instanceof RejectedError && e.code === 'undecodable');
  }
});

test('decodeSync resolves an older writer schema into the current reader schema', async (t) => {
  const { url } = await registry(t);
  // v1 = the current Signal schema; v2 adds an optional field; records written by v1 read with v2.
  const v1 = await createCodecs({ registryUrl: url, topicPrefix: 'ev.' });
  const json = JSON.parse(JSON.stringify(loadSchema('Signal').json)) as { fields: unknown[] };
  json.fields.push({ name: 'venue', type: ['null', 'string'], default: null });
  const v2 = await createCodecs({ registryUrl: url, topicPrefix: 'ev.', schemaOverrides: { Signal: json as never } });
  const oldBytes = await v1.encode('signals.valid', SAMPLES.Signal);
  const viaAsync = await v2.decode(oldBytes, 'signals.valid');
  const viaSync = v2.decodeSync(oldBytes, 'signals.valid')!;
  assert.deepEqual(viaSync.value, viaAsync.value);
  assert.equal((viaSync.value as { venue: unknown }).venue, null);
});
