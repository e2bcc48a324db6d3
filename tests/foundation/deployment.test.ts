// No Docker engine runs here, so the compose file and Dockerfile are checked statically.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { settings, loadConfig } from '../../runtime/config.ts';

const root = new URL('../../', import.meta.url);
const compose = parse(readFileSync(new URL('redpanda-compose.yml', root), 'utf8')) as {
  services: Record<string, { image?: string; build?: unknown; healthcheck?: { test: unknown }; environment?: Record<string, string>; env_file?: string[]; ports?: string[]; command?: unknown; restart?: string }>;
};

test('compose: the services, images, healthchecks and registry wiring', () => {
  const s = compose.services;
  for (const name of ['redpanda', 'console', 'postgres', 'rabbitmq', 'setup', 'order-manager']) assert.ok(s[name], `service ${name}`);
  assert.match(s.redpanda!.image!, /redpanda/);
  assert.match(s.console!.image!, /console/);
  assert.equal(s.console!.environment!.KAFKA_SCHEMAREGISTRY_URLS, 'http://redpanda:8081');
  for (const [name, svc] of Object.entries(s)) {
    if (name === 'setup') continue;
    assert.ok(svc.healthcheck?.test, `${name} has a healthcheck`);
    assert.ok(svc.restart, `${name} has a restart policy`);
  }
  // Published ports only on loopback.
  for (const svc of Object.values(s)) for (const p of svc.ports ?? []) assert.match(p, /^127\.0\.0\.1:/);
});

test('compose: every service of ours gets a complete, valid configuration', () => {
  for (const name of ['setup', 'order-manager']) {
    const svc = compose.services[name]!;
    const env = { ...svc.environment } as Record<string, string>;
    for (const k of Object.keys(env)) env[k] = String(env[k]).replace(/\$\{[A-Z_]+:-([^}]*)\}/, '$1');
    assert.ok(env.KAFKA_BROKERS && env.SCHEMA_REGISTRY_URL && env.DATABASE_URL && env.AMQP_URL && env.BYBIT_ENV, `${name}: external endpoints set`);
    assert.deepEqual(svc.env_file, ['deploy/secrets.env'], 'secrets from an env file');
    const secrets = readFileSync(new URL('deploy/secrets.env.example', root), 'utf8');
    for (const k of ['BYBIT_API_KEY', 'BYBIT_API_SECRET', 'ADMIN_TOKEN']) assert.match(secrets, new RegExp(`^${k}=`, 'm'));
    for (const k of Object.keys(env)) assert.ok(k in settings, `${name}: ${k} is a known setting`);
    assert.doesNotThrow(() => loadConfig({ ...env, BYBIT_API_KEY: 'k', BYBIT_API_SECRET: 's' }));
  }
});

test('Dockerfile: multi-stage and non-root', () => {
  const df = readFileSync(new URL('Dockerfile', root), 'utf8');
  assert.ok((df.match(/^FROM /gm) ?? []).length >= 2, 'multi-stage');
  const users = df.match(/^USER (\S+)/gm) ?? [];
  assert.ok(users.length > 0 && !/root/.test(users[users.length - 1]!), 'last USER is not root');
  assert.match(df, /HEALTHCHECK/);
});
