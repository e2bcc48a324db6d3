// Security properties that had no test of their own (issue #7.3; the rest is covered elsewhere, see
// docs/security.md): the admin server binds loopback by default and is not reachable on the
// machine's other addresses (a visible skip on a machine without any); mutating admin routes are
// refused without ADMIN_TOKEN; the lint rules that keep SQL inside slonik's `sql` tag really fire on
// raw pg and on sql.unsafe (called or as a tag); no secret or signature is ever printed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, request } from 'node:http';
import { ESLint } from 'eslint';
import { loadConfig } from '../../runtime/config.ts';
import { startAdmin } from '../../runtime/admin.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { createNamespace, migratedDatabase, namespace, testKafka, testLogger, waitFor } from '../helpers.ts';
import { startSimulator } from '../../sim/server.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';

const root = new URL('../../', import.meta.url).pathname;

test('admin: loopback by default, mutating routes need ADMIN_TOKEN', async () => {
  const cfg = loadConfig({ ADMIN_PORT: '0' }, UNIT_SCHEMAS);
  assert.equal(cfg.ADMIN_HOST, '127.0.0.1', 'default bind address is loopback');
  assert.equal(cfg.ADMIN_TOKEN, undefined, 'no token by default');
  const admin = await startAdmin({ host: cfg.ADMIN_HOST, port: cfg.ADMIN_PORT, token: cfg.ADMIN_TOKEN, registry: createMetrics().registry, logger: testLogger });
  try {
    assert.equal((await fetch(`http://127.0.0.1:${admin.port}/healthz`)).status, 200);
    admin.addRoute({ method: 'POST', path: '/admin/kill-switch', mutating: true, handler: async () => ({ status: 200, body: { done: true } }) });
    const r = await fetch(`http://127.0.0.1:${admin.port}/admin/kill-switch`, { method: 'POST', headers: { authorization: 'Bearer anything' } });
    assert.equal(r.status, 403, 'without ADMIN_TOKEN configured, mutating routes are refused outright');
  } finally {
    await admin.close();
  }
});

// A machine with only a loopback interface has no other address to try: a visible skip, not a pass.
test('admin: not reachable on the machine\'s other addresses', async (t) => {
  const external = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
  if (!external) return t.skip('no non-loopback IPv4 interface on this machine');
  const cfg = loadConfig({ ADMIN_PORT: '0' }, UNIT_SCHEMAS);
  const admin = await startAdmin({ host: cfg.ADMIN_HOST, port: cfg.ADMIN_PORT, token: cfg.ADMIN_TOKEN, registry: createMetrics().registry, logger: testLogger });
  try {
    assert.equal((await fetch(`http://127.0.0.1:${admin.port}/healthz`)).status, 200);
    await assert.rejects(fetch(`http://${external.address}:${admin.port}/healthz`, { signal: AbortSignal.timeout(3000) }), `not reachable on ${external.address}`);
  } finally {
    await admin.close();
  }
});

test('lint: raw pg, sql.unsafe(...) and sql.unsafe`...` are errors; the sql tag is fine', async () => {
  const eslint = new ESLint({ cwd: root });
  const lint = async (code: string) => (await eslint.lintText(code, { filePath: `${root}pipelines/lint-probe.ts` }))[0]!.messages;
  const raw = await lint("import pg from 'pg';\nexport const c = new pg.Client();\n");
  assert.ok(raw.some((m) => m.ruleId === 'no-restricted-imports' && m.severity === 2), 'importing pg is an error');
  const unsafe = await lint("import { sql } from '../runtime/db.ts';\nexport const q = (t: string) => sql.unsafe(t);\n");
  assert.ok(unsafe.some((m) => m.ruleId === 'no-restricted-syntax' && m.severity === 2), 'calling sql.unsafe is an error');
  // The tagged-template form sql.unsafe`...`, which is how slonik's sql.unsafe is actually used.
  const unsafeTag = await lint("import { sql } from '../runtime/db.ts';\nexport const q = sql.unsafe`SELECT 1`;\n");
  assert.ok(unsafeTag.some((m) => m.ruleId === 'no-restricted-syntax' && m.severity === 2), 'sql.unsafe as a tag is an error');
  const unsafeTagArg = await lint("import { sql } from '../runtime/db.ts';\nexport const q = (id: string) => sql.unsafe`DELETE FROM orders WHERE order_link_id = ${id}`;\n");
  assert.ok(unsafeTagArg.some((m) => m.ruleId === 'no-restricted-syntax' && m.severity === 2), 'sql.unsafe as a tag with interpolations is an error');
  const tagged = await lint("import { sql } from '../runtime/db.ts';\nexport const q = (id: string) => sql.typeAlias('void')`DELETE FROM orders WHERE order_link_id = ${id}`;\n");
  assert.deepEqual(tagged.filter((m) => m.severity === 2).map((m) => m.ruleId), [], 'the typed sql tag passes');
});

/** A Bybit stand-in that records every signature it is sent and answers 500, or closes the connection (`reset` paths). */
async function failingBybit(reset: string[]): Promise<{ port: number; signatures: string[]; close: () => Promise<void> }> {
  const signatures: string[] = [];
  const server = createServer((req, res) => {
    const sign = req.headers['x-bapi-sign'];
    if (typeof sign === 'string') signatures.push(sign);
    if (reset.some((p) => req.url?.startsWith(p))) return void req.socket.destroy();
    res.writeHead(500, { 'content-type': 'text/plain' }).end('upstream unavailable');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, signatures, close: () => new Promise((r) => server.close(() => r())) };
}

function run(args: string[], env: Record<string, string>): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: root, env: { ...process.env, ...env } });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, output });
    });
  });
}

/** Neither the secret, nor a signature that was sent, nor a `sign=` / X-BAPI-SIGN value anywhere in the output. */
function assertNothingSecret(output: string, secret: string, signatures: string[]): void {
  assert.ok(!output.includes(secret), `the API secret is printed:\n${output.split('\n').filter((l) => l.includes(secret)).join('\n').slice(0, 2000)}`);
  for (const s of signatures) assert.ok(!output.includes(s), `a signature is printed:\n${output.split('\n').filter((l) => l.includes(s)).join('\n').slice(0, 2000)}`);
  assert.doesNotMatch(output, /\bsign=(?!\[redacted\])[^&\s"'\\]/i, 'a sign= value');
  assert.doesNotMatch(output, /x-bapi-sign\\?["']?\s*[:=]\s*\\?["']?(?!\[redacted\])[^\s"'\\]/i, 'an X-BAPI-SIGN value');
}

test('secrets: real failing Bybit calls at debug level, their errors logged raw, mapped and as causes: no secret, no signature', async () => {
  const bybit = await failingBybit(['/v5/order/realtime', '/v5/order/history']);
  const secret = `leak-secret-${randomBytes(12).toString('hex')}`;
  try {
    const r = await run(['tests/security/leak-probe.ts'], { BYBIT_ENV: 'sim', BYBIT_SIM_PORT: String(bybit.port), BYBIT_API_KEY: 'leak-key', BYBIT_API_SECRET: secret, LOG_LEVEL: 'debug' });
    assert.equal(r.status, 0, r.output.slice(-2000));
    assert.ok(bybit.signatures.length >= 4, `signed requests were sent (${bybit.signatures.length})`);
    // the probe did what it says: the failures are logged, with the client's errors in them
    assert.match(r.output, /probe: calls done/);
    assert.match(r.output, /"msg":"the client error as it is"/);
    assert.match(r.output, /"code":500/, 'the HTTP 500 error object (with the request options) is logged');
    assert.match(r.output, /ECONNRESET|socket hang up/, 'the closed connection (the axios error, with its request) is logged');
    assert.match(r.output, /"secret":"\[redacted\]"/);
    assertNothingSecret(r.output, secret, bybit.signatures);
  } finally {
    await bybit.close();
  }
});

test('secrets: a service that fails to start with a Bybit error as the cause prints it scrubbed, and exits 1', async () => {
  const bybit = await failingBybit(['/v5/order/realtime']);
  const secret = `leak-secret-${randomBytes(12).toString('hex')}`;
  try {
    const r = await run(['tests/security/leak-probe.ts', 'startup'], { BYBIT_ENV: 'sim', BYBIT_SIM_PORT: String(bybit.port), BYBIT_API_KEY: 'leak-key', BYBIT_API_SECRET: secret, LOG_LEVEL: 'info' });
    assert.equal(r.status, 1, 'a startup failure exits 1');
    const last = JSON.parse(r.output.trim().split('\n').at(-1)!) as { level: number; msg: string; err: { message: string; cause: { message: string; cause: { code: string; config: { headers: Record<string, string> } } } } };
    assert.equal(last.msg, 'failed to start');
    assert.equal(last.level, 60);
    assert.equal(last.err.message, 'exchange state could not be loaded');
    assert.equal(last.err.cause.message, 'wallet-balance', 'the causes are kept, scrubbed');
    assert.equal(last.err.cause.cause.config.headers['X-BAPI-SIGN'], '[redacted]');
    assertNothingSecret(r.output, secret, bybit.signatures);
  } finally {
    await bybit.close();
  }
});

test('secrets: the ops service at debug level against a simulator whose private REST calls fail (5xx, closed connections): no secret, no signature', async () => {
  const secret = `leak-secret-${randomBytes(12).toString('hex')}`;
  const sim = await startSimulator({ port: 0, seed: 5, credentials: [{ key: 'leak-key', secret }] });
  sim.faults.set({ http5xx: { probability: 1, paths: ['/v5/order/history'] }, loseResponse: { probability: 1, mode: 'reset', paths: ['/v5/order/realtime', '/v5/execution/list'] } });
  // In front of the simulator, recording the signatures sent.
  const signatures: string[] = [];
  const simPort = Number(new URL(sim.restUrl).port);
  const proxy = createServer((req, res) => {
    const sign = req.headers['x-bapi-sign'];
    if (typeof sign === 'string') signatures.push(sign);
    const up = request({ host: '127.0.0.1', port: simPort, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const db = await migratedDatabase('leak');
  const prefix = namespace('leak');
  const kafka = testKafka();
  const dropTopics = await createNamespace(kafka, prefix);
  const child = spawn(process.execPath, ['--import', 'tsx', 'stack/service-main.ts', 'ops'], {
    cwd: root,
    env: { ...process.env, BYBIT_ENV: 'sim', BYBIT_SIM_PORT: String((proxy.address() as { port: number }).port), BYBIT_API_KEY: 'leak-key', BYBIT_API_SECRET: secret, LOG_LEVEL: 'debug', TOPIC_PREFIX: prefix, DATABASE_URL: db.url, ADMIN_PORT: '0' },
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const closed = new Promise<void>((r) => child.on('close', () => r()));
  try {
    await waitFor('the startup reconciliation to fail', () => /reconciliation failed/.test(output), 120_000);
    assert.ok(signatures.length > 0, 'signed requests were sent');
    child.kill('SIGTERM');
    await closed;
    assert.match(output, /ECONNRESET|socket hang up|http_5xx/);
    assertNothingSecret(output, secret, signatures);
  } finally {
    child.kill('SIGKILL');
    await closed;
    await dropTopics();
    await db.drop();
    await new Promise<void>((r) => proxy.close(() => r()));
    await sim.close();
  }
});
