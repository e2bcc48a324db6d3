// The local stand-in schema registry over its REST API (plain fetch), each test on its own ephemeral port.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, checkCompatibility, REGISTRY_CONTENT_TYPE, type RegistryOptions } from '../../schemas/registry-server.ts';
import { loadSchema } from '../../schemas/codecs.ts';

async function registry(t: TestContext, opts: RegistryOptions = {}) {
  const reg = await startRegistry({ host: '127.0.0.1', port: 0, ...opts });
  t.after(() => reg.close());
  return reg;
}

async function call(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; type: string | null }> {
  const res = await fetch(base + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': REGISTRY_CONTENT_TYPE },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    /* raw schema text endpoints */
  }
  return { status: res.status, json, type: res.headers.get('content-type') };
}

const v1 = {
  type: 'record',
  name: 'Thing',
  namespace: 'test.v1',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'qty', type: 'string' },
  ],
};
const v2Optional = { ...v1, fields: [...v1.fields, { name: 'note', type: ['null', 'string'], default: null }] };
const v2Required = { ...v1, fields: [...v1.fields, { name: 'note', type: 'string' }] };
const v2TypeChange = { ...v1, fields: [v1.fields[0], { name: 'qty', type: 'double' }] };
const s = (x: unknown) => JSON.stringify(x);

test('register returns an id; the same schema again returns the same id; reads by id, version and latest', async (t) => {
  const { url } = await registry(t);
  const r1 = await call(url, 'POST', '/subjects/things-value/versions', { schema: s(v1) });
  assert.equal(r1.status, 200);
  assert.equal(r1.type, REGISTRY_CONTENT_TYPE);
  const id = (r1.json as { id: number }).id;
  assert.ok(Number.isInteger(id) && id > 0);
  // Same schema, different whitespace: same id, no new version.
  const r2 = await call(url, 'POST', '/subjects/things-value/versions', { schema: JSON.stringify(v1, null, 2) });
  assert.deepEqual(r2.json, { id });
  assert.deepEqual((await call(url, 'GET', '/subjects/things-value/versions')).json, [1]);
  // The same schema under another subject shares the id (as in Confluent).
  const r3 = await call(url, 'POST', '/subjects/other-value/versions', { schema: s(v1) });
  assert.deepEqual(r3.json, { id });

  assert.deepEqual((await call(url, 'GET', `/schemas/ids/${id}`)).json, { schema: s(v1) });
  const latest = await call(url, 'GET', '/subjects/things-value/versions/latest');
  assert.deepEqual(latest.json, { subject: 'things-value', version: 1, id, schema: s(v1) });
  assert.deepEqual((await call(url, 'GET', '/subjects/things-value/versions/1')).json, latest.json);
  assert.deepEqual((await call(url, 'GET', '/subjects/things-value/versions/1/schema')).json, v1);
  assert.deepEqual((await call(url, 'GET', '/subjects')).json, ['other-value', 'things-value']);
  assert.deepEqual((await call(url, 'GET', '/schemas/types')).json, ['AVRO']);
  assert.deepEqual((await call(url, 'GET', '/')).json, {});

  // Lookup (POST /subjects/{subject}).
  assert.deepEqual((await call(url, 'POST', '/subjects/things-value', { schema: s(v1) })).json, latest.json);
  const miss = await call(url, 'POST', '/subjects/things-value', { schema: s(v2Optional) });
  assert.equal(miss.status, 404);
  assert.equal((miss.json as { error_code: number }).error_code, 40403);
});

test('not found and invalid answers carry Confluent error codes', async (t) => {
  const { url } = await registry(t);
  const cases: Array<[string, string, unknown, number, number]> = [
    ['GET', '/schemas/ids/999', undefined, 404, 40403],
    ['GET', '/subjects/nope-value/versions', undefined, 404, 40401],
    ['GET', '/subjects/nope-value/versions/latest', undefined, 404, 40401],
    ['POST', '/subjects/x-value/versions', { schema: '{"type":"record","name":"X","fields":[{"name":"a","type":"nosuchtype"}]}' }, 422, 42201],
    ['POST', '/subjects/x-value/versions', { schema: 'not json' }, 422, 42201],
    ['POST', '/subjects/x-value/versions', { schema: s(v1), schemaType: 'PROTOBUF' }, 422, 42201],
    ['PUT', '/config', { compatibility: 'SIDEWAYS' }, 422, 42203],
    ['GET', '/config/x-value', undefined, 404, 40408],
    ['GET', '/no/such/route', undefined, 404, 404],
  ];
  for (const [method, path, body, status, code] of cases) {
    const r = await call(url, method, path, body);
    assert.equal(r.status, status, `${method} ${path}`);
    assert.equal((r.json as { error_code: number }).error_code, code, `${method} ${path}`);
  }
  await call(url, 'POST', '/subjects/things-value/versions', { schema: s(v1) });
  const badVersion = await call(url, 'GET', '/subjects/things-value/versions/7');
  assert.equal(badVersion.status, 404);
  assert.equal((badVersion.json as { error_code: number }).error_code, 40402);
  assert.equal((await call(url, 'GET', '/subjects/things-value/versions/zero')).status, 422);
});

test('BACKWARD (the default) refuses a field added without default and a type change with 409', async (t) => {
  const { url } = await registry(t);
  assert.deepEqual((await call(url, 'GET', '/config')).json, { compatibilityLevel: 'BACKWARD' });
  await call(url, 'POST', '/subjects/things-value/versions', { schema: s(v1) });
  for (const bad of [v2Required, v2TypeChange]) {
    const r = await call(url, 'POST', '/subjects/things-value/versions', { schema: s(bad) });
    assert.equal(r.status, 409);
    assert.equal((r.json as { error_code: number }).error_code, 409);
    assert.match((r.json as { message: string }).message, /incompatible/);
  }
  assert.deepEqual((await call(url, 'GET', '/subjects/things-value/versions')).json, [1], 'no version was added');
});

test('a compatible change (optional field with default null) becomes version 2 with a new id', async (t) => {
  const { url } = await registry(t);
  const { id: id1 } = (await call(url, 'POST', '/subjects/things-value/versions', { schema: s(v1) })).json as { id: number };
  const r = await call(url, 'POST', '/subjects/things-value/versions', { schema: s(v2Optional) });
  assert.equal(r.status, 200);
  const id2 = (r.json as { id: number }).id;
  assert.notEqual(id2, id1);
  assert.deepEqual((await call(url, 'GET', '/subjects/things-value/versions')).json, [1, 2]);
  assert.equal(((await call(url, 'GET', '/subjects/things-value/versions/latest')).json as { id: number }).id, id2);
  assert.equal(((await call(url, 'GET', '/subjects/things-value/versions/1')).json as { id: number }).id, id1);
});

test('the compatibility endpoint answers is_compatible (and messages when verbose)', async (t) => {
  const { url } = await registry(t);
  // No subject yet: anything is compatible with nothing.
  assert.deepEqual((await call(url, 'POST', '/compatibility/subjects/things-value/versions/latest', { schema: s(v1) })).json, { is_compatible: true });
  await call(url, 'POST', '/subjects/things-value/versions', { schema: s(v1) });
  assert.deepEqual((await call(url, 'POST', '/compatibility/subjects/things-value/versions/latest', { schema: s(v2Optional) })).json, { is_compatible: true });
  assert.deepEqual((await call(url, 'POST', '/compatibility/subjects/things-value/versions/latest', { schema: s(v2Required) })).json, { is_compatible: false });
  assert.deepEqual((await call(url, 'POST', '/compatibility/subjects/things-value/versions/1', { schema: s(v2TypeChange) })).json, { is_compatible: false });
  const verbose = (await call(url, 'POST', '/compatibility/subjects/things-value/versions/latest?verbose=true', { schema: s(v2Required) })).json as { is_compatible: boolean; messages: string[] };
  assert.equal(verbose.is_compatible, false);
  assert.match(verbose.messages[0] ?? '', /note/);
  assert.equal((await call(url, 'POST', '/compatibility/subjects/things-value/versions/9', { schema: s(v1) })).status, 404);
});

test('compatibility levels: global and per subject; NONE accepts anything; FORWARD checks the other way', async (t) => {
  const { url } = await registry(t);
  assert.deepEqual((await call(url, 'PUT', '/config/things-value', { compatibility: 'NONE' })).json, { compatibility: 'NONE' });
  assert.deepEqual((await call(url, 'GET', '/config/things-value')).json, { compatibilityLevel: 'NONE' });
  await call(url, 'POST', '/subjects/things-value/versions', { schema: s(v1) });
  assert.equal((await call(url, 'POST', '/subjects/things-value/versions', { schema: s(v2TypeChange) })).status, 200);
  assert.deepEqual((await call(url, 'DELETE', '/config/things-value')).json, { compatibilityLevel: 'NONE' });
  assert.deepEqual((await call(url, 'GET', '/config/things-value?defaultToGlobal=true')).json, { compatibilityLevel: 'BACKWARD' });

  assert.deepEqual((await call(url, 'PUT', '/config', { compatibility: 'forward' })).json, { compatibility: 'FORWARD' });
  await call(url, 'POST', '/subjects/f-value/versions', { schema: s(v1) });
  // FORWARD: the old schema must read new data; adding a required field is fine, removing one is not.
  assert.equal((await call(url, 'POST', '/subjects/f-value/versions', { schema: s(v2Required) })).status, 200);
  const fewer = { ...v1, fields: [v1.fields[0]] };
  assert.equal((await call(url, 'POST', '/subjects/f-value/versions', { schema: s(fewer) })).status, 409);
});

test('checkCompatibility: BACKWARD checks the latest only, BACKWARD_TRANSITIVE every version', () => {
  const a = s({ type: 'record', name: 'R', fields: [{ name: 'x', type: 'int' }] });
  const b = s({ type: 'record', name: 'R', fields: [{ name: 'x', type: 'int', default: 0 }, { name: 'y', type: 'int', default: 1 }] });
  const d = s({ type: 'record', name: 'R', fields: [{ name: 'y', type: 'int' }] });
  assert.equal(checkCompatibility(d, [a, b], 'BACKWARD').compatible, true, 'reads b: y present');
  assert.equal(checkCompatibility(d, [a, b], 'BACKWARD_TRANSITIVE').compatible, false, 'cannot read a: no y, no default');
  assert.equal(checkCompatibility(d, [a], 'NONE').compatible, true);
});

test('restart with the same file keeps subjects, versions, ids and config', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'registry-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'nested', 'registry.json');
  const first = await startRegistry({ port: 0, file });
  const signal = loadSchema('Signal').text;
  const { id: idA } = (await call(first.url, 'POST', '/subjects/signals.valid-value/versions', { schema: signal })).json as { id: number };
  const { id: idB } = (await call(first.url, 'POST', '/subjects/things-value/versions', { schema: s(v1) })).json as { id: number };
  const { id: idC } = (await call(first.url, 'POST', '/subjects/things-value/versions', { schema: s(v2Optional) })).json as { id: number };
  await call(first.url, 'PUT', '/config/things-value', { compatibility: 'FULL' });
  await first.close();
  assert.equal(JSON.parse(readFileSync(file, 'utf8')).format, 'local-schema-registry/1');

  const second = await registry(t, { file });
  assert.deepEqual((await call(second.url, 'GET', '/subjects')).json, ['signals.valid-value', 'things-value']);
  assert.deepEqual((await call(second.url, 'GET', `/schemas/ids/${idA}`)).json, { schema: signal });
  assert.deepEqual((await call(second.url, 'POST', '/subjects/things-value/versions', { schema: s(v1) })).json, { id: idB });
  assert.deepEqual((await call(second.url, 'GET', '/subjects/things-value/versions')).json, [1, 2]);
  assert.equal(((await call(second.url, 'GET', '/subjects/things-value/versions/latest')).json as { id: number }).id, idC);
  assert.deepEqual((await call(second.url, 'GET', '/config/things-value')).json, { compatibilityLevel: 'FULL' });
  // New ids continue after the old ones.
  const { id: idD } = (await call(second.url, 'POST', '/subjects/new-value/versions', { schema: s(v2Required) })).json as { id: number };
  assert.ok(idD > Math.max(idA, idB, idC));
});

test('a corrupt state file stops the start instead of silently reissuing ids', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'registry-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'registry.json');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(file, '{"format":"something-else"}');
  await assert.rejects(startRegistry({ port: 0, file }), /not a schema registry state file/);
});

test('registry-main starts the stand-in from the command line, logs when listening, stops on SIGTERM', async (t) => {
  const { spawn } = await import('node:child_process');
  const dir = mkdtempSync(join(tmpdir(), 'registry-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'registry.json');
  const main = new URL('../../schemas/registry-main.ts', import.meta.url).pathname;
  const child = spawn(process.execPath, ['--import', 'tsx', main, '--port', '0', '--file', file], {
    env: { ...process.env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const line = await new Promise<{ url: string; msg: string }>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`no listening line; output: ${buf}`)), 20000);
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      for (const l of buf.split('\n')) {
        if (l.includes('schema registry listening')) {
          clearTimeout(timer);
          resolve(JSON.parse(l) as { url: string; msg: string });
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${buf}`)));
  });
  assert.match(line.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const r = await call(line.url, 'POST', '/subjects/things-value/versions', { schema: s(v1) });
  assert.equal(r.status, 200);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.equal(Object.keys(JSON.parse(readFileSync(file, 'utf8')).subjects).length, 1, 'state persisted to --file');
});
