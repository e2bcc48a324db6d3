import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadConfig, ConfigError, settingsTable, settings, RETIRED_SETTINGS } from '../../runtime/config.ts';
import { createRuntime } from '../../runtime/service.ts';
import { configTable, readmeTable } from '../../stack/config-table.ts';
import { startAdmin } from '../../runtime/admin.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { createLogger } from '../../runtime/logger.ts';
import { testLogger } from '../helpers.ts';
import { UNIT_SCHEMAS, RUNTIME_PARTS } from '../../stack/services.ts';

test('config: defaults, frozen, every problem listed at once', () => {
  const cfg = loadConfig({}, UNIT_SCHEMAS);
  assert.equal(cfg.ADMIN_PORT, 9300);
  assert.equal(cfg.BYBIT_ENV, 'sim');
  assert.ok(Object.isFrozen(cfg));
  assert.throws(() => ((cfg as { ADMIN_PORT: number }).ADMIN_PORT = 1), TypeError);
  try {
    loadConfig({ ADMIN_PORT: 'abc', BYBIT_ENV: 'moon', LOG_LEVEL: 'loud', SCHEMA_REGISTRY_URL: 'not a url' }, UNIT_SCHEMAS);
    assert.fail('should throw');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    const fields = e.problems.map((p) => p.split(':')[0]).sort();
    assert.deepEqual(fields, ['ADMIN_PORT', 'BYBIT_ENV', 'LOG_LEVEL', 'SCHEMA_REGISTRY_URL']);
  }
  // Unit settings are validated at start too, in the same list.
  try {
    loadConfig({ ADMIN_PORT: 'abc', RISK_BALANCE_POLICY: 'pray', SIGNAL_BRIDGE_PREFETCH: '0' }, UNIT_SCHEMAS);
    assert.fail('should throw');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(e.problems.map((p) => p.split(':')[0]).sort(), ['ADMIN_PORT', 'RISK_BALANCE_POLICY', 'SIGNAL_BRIDGE_PREFETCH']);
  }
});

test('config: the README table lists every setting', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const names = settingsTable(UNIT_SCHEMAS).map((r) => r.name);
  assert.ok(names.length > Object.keys(settings).length, 'unit settings are part of the table');
  const missing = names.filter((k) => !readme.includes(`| \`${k}\``));
  assert.deepEqual(missing, [], 'run `npx tsx stack/config-table.ts --write`');
  // The whole table, exactly as generated, once: a stale or mangled copy is a failure too.
  assert.equal(readmeTable(readme), configTable(), 'run `npx tsx stack/config-table.ts --write`');
  const headings = readme.split('\n').filter((l) => l.startsWith('## '));
  assert.deepEqual(headings.filter((h, i) => headings.indexOf(h) !== i), [], 'README sections appear once');
});

test('logs never carry the API secret', () => {
  const lines: string[] = [];
  const secret = 'sup3r-s3cret-value';
  const log = createLogger({ LOG_LEVEL: 'info', BYBIT_API_SECRET: secret, ADMIN_TOKEN: undefined }, 'test', { write: (l: string) => void lines.push(l) });
  log.info({ apiSecret: secret, nested: { secret } }, 'keys');
  log.error({ err: new Error(`request failed with secret ${secret}`) }, `message with ${secret}`);
  assert.equal(lines.length, 2);
  for (const l of lines) assert.ok(!l.includes(secret), l);
  assert.match(lines[1]!, /\[redacted\]/);
});

test('admin: healthz, readyz follows checks, metrics, mutating routes need the token', async () => {
  const metrics = createMetrics();
  const admin = await startAdmin({ host: '127.0.0.1', port: 0, token: 'tok-123456', registry: metrics.registry, logger: testLogger });
  try {
    assert.equal((await fetch(admin.url + '/healthz')).status, 200);
    assert.equal((await fetch(admin.url + '/readyz')).status, 503, 'not ready with no checks');
    let joined = false;
    admin.addCheck('consumer', () => joined);
    assert.equal((await fetch(admin.url + '/readyz')).status, 503);
    joined = true;
    const r = await fetch(admin.url + '/readyz');
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { ready: true, checks: { consumer: true } });
    // A unit's detail (e.g. conflicts it dead-lettered) is shown beside the checks, without changing readiness.
    admin.addCheck('stage', () => true, () => ({ conflicts: { total: 1 } }));
    const d = await fetch(admin.url + '/readyz');
    assert.equal(d.status, 200);
    assert.deepEqual(await d.json(), { ready: true, checks: { consumer: true, stage: true }, details: { stage: { conflicts: { total: 1 } } } });
    metrics.stage.recordsIn.inc({ stage: 's', topic: 't' }, 3);
    assert.match(await (await fetch(admin.url + '/metrics')).text(), /pipeline_stage_records_in_total\{stage="s",topic="t"\} 3/);
    let called = 0;
    admin.addRoute({ method: 'POST', path: '/admin/thing', mutating: true, handler: async () => ({ status: 200, body: { called: ++called } }) });
    assert.equal((await fetch(admin.url + '/admin/thing', { method: 'POST' })).status, 401);
    assert.equal((await fetch(admin.url + '/admin/thing', { method: 'POST', headers: { authorization: 'Bearer wrong-12345' } })).status, 401);
    const ok = await fetch(admin.url + '/admin/thing', { method: 'POST', headers: { authorization: 'Bearer tok-123456' } });
    assert.equal(ok.status, 200);
    assert.equal(called, 1);
  } finally {
    await admin.close();
  }
  const open = await startAdmin({ host: '127.0.0.1', port: 0, registry: createMetrics().registry, logger: testLogger });
  try {
    open.addRoute({ method: 'POST', path: '/admin/thing', mutating: true, handler: async () => ({ status: 200, body: {} }) });
    assert.equal((await fetch(open.url + '/admin/thing', { method: 'POST' })).status, 403, 'no token configured: mutating routes refused');
  } finally {
    await open.close();
  }
});

test('a retired setting still set (an environment an upgrade left behind) is ignored with a warning at start, not silently', async () => {
  for (const k of ['MODEL_PROMOTION_MARGIN', 'MODEL_SWITCH_HIT_RATE']) assert.ok(!(k in loadConfig({}, UNIT_SCHEMAS)), `${k}: no longer a setting`);
  const lines: string[] = [];
  const rt = await createRuntime('retired-check', RUNTIME_PARTS, { ADMIN_PORT: '0', LOG_LEVEL: 'info', MODEL_PROMOTION_MARGIN: '0.03', MODEL_DEGRADED_HIT_RATE: '', MODEL_SWITCH_HIT_RATE: '0.55' } as never, undefined, { logDestination: { write: (l) => void lines.push(l) } });
  try {
    const warned = lines.map((l) => JSON.parse(l) as { level: number; msg: string; setting?: string; instead?: string }).filter((l) => l.msg === 'a retired setting is set and ignored');
    assert.deepEqual(warned.map((w) => [w.level, w.setting, w.instead]), [[40, 'MODEL_PROMOTION_MARGIN', RETIRED_SETTINGS.MODEL_PROMOTION_MARGIN], [40, 'MODEL_SWITCH_HIT_RATE', RETIRED_SETTINGS.MODEL_SWITCH_HIT_RATE]], 'a warning for each one set (an empty value is unset)');
    assert.match(RETIRED_SETTINGS.MODEL_SWITCH_HIT_RATE!, /MODEL_SWITCH_MIN_SAMPLES.*MODEL_PROMOTION_MARGIN_BPS/, 'names what replaced it');
  } finally {
    await rt.admin.close();
    await rt.db.end();
  }
});
