// Evolution guard: the current schemas must read data written with every released version, so an
// incompatible edit of a .avsc fails here before any registry refuses it in a deployment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { checkCompatibility } from '../../schemas/registry-server.ts';
import { RECORD_KINDS, SCHEMA_FILES, loadSchema } from '../../schemas/codecs.ts';

const released = new URL('../../schemas/released/', import.meta.url);

test('every current schema is BACKWARD_TRANSITIVE-compatible with its released versions', () => {
  const versions = readdirSync(released).filter((d) => /^v\d+$/.test(d)).sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)));
  assert.ok(versions.length >= 1, 'at least the first release is kept');
  for (const kind of RECORD_KINDS) {
    const history = versions
      .map((v) => new URL(`${v}/${SCHEMA_FILES[kind]}`, released))
      .filter((u) => existsSync(u))
      .map((u) => JSON.stringify(JSON.parse(readFileSync(u, 'utf8'))));
    assert.ok(history.length >= 1, `${kind} has a released version`);
    const result = checkCompatibility(loadSchema(kind).text, history, 'BACKWARD_TRANSITIVE');
    assert.deepEqual(result.messages, [], kind);
  }
});

test('the guard itself refuses an incompatible edit', () => {
  const current = JSON.parse(loadSchema('OrderEvent').text) as { fields: Array<Record<string, unknown>> };
  const broken = { ...current, fields: current.fields.map((f) => (f.name === 'event_id' ? { ...f, type: 'long' } : f)) };
  assert.equal(checkCompatibility(JSON.stringify(broken), [loadSchema('OrderEvent').text], 'BACKWARD_TRANSITIVE').compatible, false);
});
