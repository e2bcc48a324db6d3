// Security properties that had no test of their own (issue #7.3; the rest is covered elsewhere, see
// docs/security.md): the admin server binds loopback by default and is not reachable on the
// machine's other addresses; mutating admin routes are refused without ADMIN_TOKEN; the lint rules
// that keep SQL inside slonik's `sql` tag really fire on raw pg and on sql.unsafe (called or as a tag).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { ESLint } from 'eslint';
import { loadConfig } from '../../runtime/config.ts';
import { startAdmin } from '../../runtime/admin.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { testLogger } from '../helpers.ts';

const root = new URL('../../', import.meta.url).pathname;

test('admin: loopback by default, unreachable on the other interfaces, mutating routes need ADMIN_TOKEN', async () => {
  const cfg = loadConfig({ ADMIN_PORT: '0' });
  assert.equal(cfg.ADMIN_HOST, '127.0.0.1', 'default bind address is loopback');
  assert.equal(cfg.ADMIN_TOKEN, undefined, 'no token by default');
  const admin = await startAdmin({ host: cfg.ADMIN_HOST, port: cfg.ADMIN_PORT, token: cfg.ADMIN_TOKEN, registry: createMetrics().registry, logger: testLogger });
  try {
    assert.equal((await fetch(`http://127.0.0.1:${admin.port}/healthz`)).status, 200);
    const external = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
    if (external) {
      await assert.rejects(fetch(`http://${external.address}:${admin.port}/healthz`, { signal: AbortSignal.timeout(3000) }), `not reachable on ${external.address}`);
    }
    admin.addRoute({ method: 'POST', path: '/admin/kill-switch', mutating: true, handler: async () => ({ status: 200, body: { done: true } }) });
    const r = await fetch(`http://127.0.0.1:${admin.port}/admin/kill-switch`, { method: 'POST', headers: { authorization: 'Bearer anything' } });
    assert.equal(r.status, 403, 'without ADMIN_TOKEN configured, mutating routes are refused outright');
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
