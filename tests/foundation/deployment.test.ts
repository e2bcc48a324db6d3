// No Docker engine runs here, so the deployment (redpanda-compose.yml, deploy/, Dockerfile) is checked
// statically: each check is a function returning the problems it finds, run on the real files (no
// problem allowed) and on broken copies (each must be caught), so the checks are known to be able to fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { parse } from 'yaml';
import { loadConfig, settingsTable } from '../../runtime/config.ts';
import { migratedDatabase } from '../helpers.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';

const root = new URL('../../', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8');
const exists = (path: string): boolean => existsSync(new URL(path.replace(/^\.\//, ''), root));
// Compose supports YAML merge keys (`<<: *anchor`); parse them the same way.
const yaml = (path: string): unknown => parse(read(path), { merge: true });

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  healthcheck?: { test?: unknown; disable?: boolean };
  environment?: Record<string, string>;
  env_file?: string[];
  ports?: string[];
  volumes?: string[];
  restart?: string;
  depends_on?: Record<string, { condition: string }>;
}
interface Compose { services: Record<string, Service> }

const OURS = ['setup', 'order-manager', 'model'] as const;
const ONE_SHOT = new Set(['setup']);
const EXPECTED = ['redpanda', 'console', 'postgres', 'rabbitmq', ...OURS, 'prometheus', 'grafana'];
const PROMETHEUS_DS_UID = 'bybit-prometheus';
/** Prometheus' own series the dashboard may use besides the README's metrics. */
const PROMETHEUS_BUILTINS = new Set(['up']);

const clone = <T>(v: T): T => structuredClone(v);

/** Parse `KEY=value` lines of an env file (comments and blanks skipped). */
function envFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** Compose interpolation: `${NAME:-default}` becomes the default; `${NAME}` without one is a problem. */
function interpolate(value: string): { value: string; unresolved: boolean } {
  const v = String(value).replace(/\$\{[A-Z_][A-Z0-9_]*:-([^}]*)\}/g, '$1');
  return { value: v, unresolved: /\$\{|\$[A-Z_]/.test(v) };
}

/** Bind mounts (`./path:/target[:ro]`) of a service: host path and container target. */
function bindMounts(svc: Service): Array<{ host: string; target: string }> {
  return (svc.volumes ?? []).filter((v) => v.startsWith('./') || v.startsWith('/')).map((v) => {
    const [host, target] = v.split(':');
    return { host: host!, target: target! };
  });
}

// ---------------------------------------------------------------------------------------------
// The checks.

function checkCompose(c: Compose): string[] {
  const p: string[] = [];
  const s = c.services ?? {};
  for (const name of EXPECTED) if (!s[name]) p.push(`service ${name} missing`);
  for (const [name, svc] of Object.entries(s)) {
    if (!svc.restart) p.push(`${name}: no restart policy`);
    if (!ONE_SHOT.has(name) && !(svc.healthcheck?.test && !svc.healthcheck.disable)) p.push(`${name}: no healthcheck`);
    for (const port of svc.ports ?? []) if (!/^127\.0\.0\.1:\d+:\d+$/.test(String(port))) p.push(`${name}: port ${port} not published on 127.0.0.1 only`);
    for (const m of bindMounts(svc)) if (!exists(m.host)) p.push(`${name}: mounted ${m.host} does not exist in the repo`);
    for (const f of svc.env_file ?? []) if (!exists(`${f}.example`)) p.push(`${name}: env file ${f} has no ${f}.example template`);
  }
  if (s.redpanda && !/redpanda/.test(s.redpanda.image ?? '')) p.push('redpanda: not the Redpanda image');
  if (s.console) {
    if (!/console/.test(s.console.image ?? '')) p.push('console: not the Redpanda Console image');
    const env = s.console.environment ?? {};
    if (env.KAFKA_SCHEMAREGISTRY_ENABLED !== 'true' || env.KAFKA_SCHEMAREGISTRY_URLS !== 'http://redpanda:8081') p.push('console: schema registry not wired to redpanda:8081');
  }
  if (s.prometheus && !/^prom\/prometheus:/.test(s.prometheus.image ?? '')) p.push('prometheus: not the prom/prometheus image');
  if (s.grafana && !/^grafana\/grafana:/.test(s.grafana.image ?? '')) p.push('grafana: not the grafana/grafana image');
  for (const name of OURS) {
    const svc = s[name];
    if (!svc) continue;
    if (svc.command?.[0] !== name) p.push(`${name}: command is not ["${name}"]`);
    if (!svc.build && !svc.image) p.push(`${name}: neither build nor image`);
    if (!svc.env_file?.includes('deploy/secrets.env')) p.push(`${name}: secrets not from deploy/secrets.env`);
    if (name !== 'setup') {
      if (svc.depends_on?.setup?.condition !== 'service_completed_successfully') p.push(`${name}: does not wait for setup`);
      const hc = JSON.stringify(svc.healthcheck?.test ?? '');
      if (!hc.includes('/readyz') || !hc.includes(`:${svc.environment?.ADMIN_PORT}`)) p.push(`${name}: healthcheck does not probe /readyz on ADMIN_PORT`);
    }
  }
  return p;
}

/** Every variable set for our services is a setting of runtime/config.ts and the result loads. */
function checkServiceEnv(c: Compose, secretsExample: Record<string, string>): string[] {
  const p: string[] = [];
  const known = new Set(settingsTable(UNIT_SCHEMAS).map((r) => r.name));
  for (const name of OURS) {
    const svc = c.services[name];
    if (!svc) continue;
    const env: Record<string, string> = {};
    for (const [k, raw] of Object.entries(svc.environment ?? {})) {
      const { value, unresolved } = interpolate(raw);
      if (unresolved) p.push(`${name}: ${k} needs a variable without default (${raw})`);
      if (!known.has(k)) p.push(`${name}: ${k} is not a known setting`);
      env[k] = value;
    }
    for (const k of Object.keys(secretsExample)) if (!known.has(k)) p.push(`deploy/secrets.env.example: ${k} is not a known setting`);
    if (env.ADMIN_HOST !== '0.0.0.0') p.push(`${name}: ADMIN_HOST must be 0.0.0.0 inside a container`);
    const full: Record<string, string> = { ...env, ...secretsExample, BYBIT_API_KEY: 'k', BYBIT_API_SECRET: 's', ADMIN_TOKEN: 't' };
    for (const k of ['KAFKA_BROKERS', 'SCHEMA_REGISTRY_URL', 'DATABASE_URL', 'AMQP_URL', 'BYBIT_ENV'] as const) if (!full[k]) p.push(`${name}: ${k} not set`);
    if (full.KAFKA_BROKERS && full.KAFKA_BROKERS !== 'redpanda:9092') p.push(`${name}: KAFKA_BROKERS is not redpanda:9092`);
    if (full.SCHEMA_REGISTRY_URL && full.SCHEMA_REGISTRY_URL !== c.services.console?.environment?.KAFKA_SCHEMAREGISTRY_URLS) p.push(`${name}: not the registry the Console decodes with`);
    if (full.BYBIT_ENV === 'sim') p.push(`${name}: BYBIT_ENV=sim has no simulator in the compose deployment`);
    try {
      loadConfig(full, UNIT_SCHEMAS);
    } catch (e) {
      p.push(`${name}: configuration does not load: ${(e as Error).message}`);
    }
  }
  return p;
}

/** The env file templates list the secrets, and the passwords agree between them. */
function checkSecrets(files: Record<string, Record<string, string>>): string[] {
  const p: string[] = [];
  const need: Record<string, string[]> = {
    'deploy/secrets.env.example': ['BYBIT_API_KEY', 'BYBIT_API_SECRET', 'ADMIN_TOKEN', 'DATABASE_URL', 'AMQP_URL'],
    'deploy/postgres.env.example': ['POSTGRES_PASSWORD', 'GRAFANA_PG_PASSWORD'],
    'deploy/rabbitmq.env.example': ['RABBITMQ_DEFAULT_USER', 'RABBITMQ_DEFAULT_PASS'],
    'deploy/grafana.env.example': ['GF_SECURITY_ADMIN_PASSWORD', 'GRAFANA_PG_PASSWORD'],
  };
  for (const [file, keys] of Object.entries(need)) for (const k of keys) if (!(k in (files[file] ?? {}))) p.push(`${file}: ${k} missing`);
  const sec = files['deploy/secrets.env.example'] ?? {};
  const pg = files['deploy/postgres.env.example'] ?? {};
  const mq = files['deploy/rabbitmq.env.example'] ?? {};
  const gf = files['deploy/grafana.env.example'] ?? {};
  for (const k of ['BYBIT_API_KEY', 'BYBIT_API_SECRET']) if (sec[k]) p.push(`deploy/secrets.env.example: ${k} must be empty in the template`);
  try {
    const db = new URL(sec.DATABASE_URL ?? '');
    if (db.host !== 'postgres:5432' || decodeURIComponent(db.password) !== pg.POSTGRES_PASSWORD) p.push('DATABASE_URL does not match the postgres service and POSTGRES_PASSWORD');
  } catch {
    p.push('DATABASE_URL is not a URL');
  }
  try {
    const mqUrl = new URL(sec.AMQP_URL ?? '');
    if (mqUrl.host !== 'rabbitmq:5672' || decodeURIComponent(mqUrl.username) !== mq.RABBITMQ_DEFAULT_USER || decodeURIComponent(mqUrl.password) !== mq.RABBITMQ_DEFAULT_PASS) p.push('AMQP_URL does not match the rabbitmq service and its user');
    if (mqUrl.username === 'guest') p.push('AMQP_URL uses guest, which RabbitMQ only accepts from localhost');
  } catch {
    p.push('AMQP_URL is not a URL');
  }
  if (pg.GRAFANA_PG_PASSWORD !== gf.GRAFANA_PG_PASSWORD) p.push('GRAFANA_PG_PASSWORD differs between postgres.env and grafana.env templates');
  return p;
}

interface ScrapeConfig { job_name: string; metrics_path?: string; static_configs?: Array<{ targets: string[] }> }

function checkPrometheus(c: Compose, prom: { scrape_configs?: ScrapeConfig[] }): string[] {
  const p: string[] = [];
  const mount = bindMounts(c.services.prometheus ?? {}).find((m) => m.target === '/etc/prometheus/prometheus.yml');
  if (mount?.host !== './deploy/prometheus/prometheus.yml') p.push('prometheus: deploy/prometheus/prometheus.yml not mounted at /etc/prometheus/prometheus.yml');
  const targets = (prom.scrape_configs ?? []).flatMap((sc) => (sc.static_configs ?? []).flatMap((s) => s.targets.map((t) => `${t}${sc.metrics_path ?? '/metrics'}`)));
  for (const name of ['order-manager', 'model']) {
    const port = c.services[name]?.environment?.ADMIN_PORT;
    if (!targets.includes(`${name}:${port}/metrics`)) p.push(`prometheus: does not scrape ${name}:${port}/metrics`);
  }
  if (!targets.includes('redpanda:9644/public_metrics')) p.push('prometheus: does not scrape redpanda:9644/public_metrics');
  for (const t of targets) {
    const host = t.split(':')[0]!;
    if (host !== '127.0.0.1' && !c.services[host]) p.push(`prometheus: target ${t} is not a compose service`);
  }
  return p;
}

interface Datasource { name: string; uid: string; type: string; url?: string }
interface Panel { id?: number; type?: string; title?: string; datasource?: { uid?: string }; targets?: Array<{ expr?: string; rawSql?: string; datasource?: { uid?: string } }>; panels?: Panel[] }
interface Dashboard { uid?: string; title?: string; description?: string; panels?: Panel[] }

function checkGrafanaProvisioning(c: Compose, ds: { datasources?: Datasource[] }, providers: { providers?: Array<{ type: string; options?: { path?: string } }> }): string[] {
  const p: string[] = [];
  const mounts = bindMounts(c.services.grafana ?? {});
  const target = (host: string) => mounts.find((m) => m.host === host)?.target;
  if (target('./deploy/grafana/provisioning/datasources') !== '/etc/grafana/provisioning/datasources') p.push('grafana: datasources provisioning not mounted');
  if (target('./deploy/grafana/provisioning/dashboards') !== '/etc/grafana/provisioning/dashboards') p.push('grafana: dashboards provisioning not mounted');
  const dashDir = target('./deploy/grafana/dashboards');
  if (!dashDir) p.push('grafana: deploy/grafana/dashboards not mounted');
  if (!(providers.providers ?? []).some((pr) => pr.type === 'file' && pr.options?.path === dashDir)) p.push(`grafana: no file provider for the mounted dashboards (${dashDir})`);
  const promDs = (ds.datasources ?? []).find((d) => d.uid === PROMETHEUS_DS_UID);
  if (!promDs || promDs.type !== 'prometheus') p.push(`grafana: no prometheus datasource with uid ${PROMETHEUS_DS_UID}`);
  else if (promDs.url !== 'http://prometheus:9090') p.push('grafana: prometheus datasource does not point at the prometheus service');
  return p;
}

/** Metric names of the README's metrics table (`| \`name\` | type | ...`), with their types. */
function readmeMetrics(readme: string): Map<string, string> {
  const start = readme.indexOf('| Metric | Type |');
  assert.ok(start >= 0, 'README has a metrics table');
  const out = new Map<string, string>();
  for (const line of readme.slice(start).split('\n').slice(2)) {
    if (!line.startsWith('|')) break;
    const m = /^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*(\w+)\s*\|/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'and', 'or', 'unless', 'inf', 'nan']);

/** Metric names a PromQL expression selects (functions, labels, strings, ranges and numbers removed). */
export function promqlMetrics(expr: string): string[] {
  const e = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names: string[] = [];
  for (const m of e.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const after = e.slice(m.index! + m[0].length);
    if (/^\s*\(/.test(after)) continue; // a function or aggregation
    if (PROMQL_WORDS.has(m[0].toLowerCase())) continue;
    if (/[0-9.]$/.test(e.slice(0, m.index!)) && /^e\d*$/i.test(m[0])) continue; // 1e3
    names.push(m[0]);
  }
  return names;
}

function allPanels(panels: Panel[] = []): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels)]);
}

function checkDashboard(d: Dashboard, datasources: Datasource[], metrics: Map<string, string>): string[] {
  const p: string[] = [];
  if (!d.uid || !d.title) p.push('dashboard: uid and title required');
  const panels = allPanels(d.panels);
  if (!panels.length) p.push('dashboard: no panels');
  const ids = panels.map((x) => x.id);
  if (ids.some((id) => typeof id !== 'number')) p.push('dashboard: a panel has no numeric id');
  if (new Set(ids).size !== ids.length) p.push('dashboard: panel ids are not unique');
  const uids = new Map(datasources.map((x) => [x.uid, x.type]));
  const used = new Set<string>();
  for (const panel of panels) {
    if (!panel.title) p.push(`dashboard: panel ${panel.id} has no title`);
    if (panel.type === 'row') continue;
    const dsUid = panel.datasource?.uid;
    if (!dsUid || !uids.has(dsUid)) p.push(`dashboard: panel "${panel.title}" datasource uid ${dsUid} is not provisioned`);
    if (!panel.targets?.length) p.push(`dashboard: panel "${panel.title}" has no query`);
    for (const t of panel.targets ?? []) {
      const uid = t.datasource?.uid ?? dsUid;
      if (!uid || !uids.has(uid)) p.push(`dashboard: a query of "${panel.title}" uses datasource ${uid}, not provisioned`);
      if (t.expr !== undefined) {
        if (uids.get(uid ?? '') !== 'prometheus') p.push(`dashboard: PromQL of "${panel.title}" not on a prometheus datasource`);
        const names = promqlMetrics(t.expr);
        if (!names.length) p.push(`dashboard: "${panel.title}" query selects no metric: ${t.expr}`);
        for (const n of names) {
          used.add(n);
          const base = n.replace(/_(bucket|sum|count)$/, '');
          const known = PROMETHEUS_BUILTINS.has(n) || metrics.has(n) || (base !== n && metrics.get(base) === 'histogram');
          if (!known) p.push(`dashboard: "${panel.title}" uses ${n}, not in the README metrics table`);
          if (n.endsWith('_bucket') && !/histogram_quantile/.test(t.expr)) p.push(`dashboard: "${panel.title}" uses ${n} outside histogram_quantile`);
        }
      } else if (t.rawSql === undefined) p.push(`dashboard: a query of "${panel.title}" has neither expr nor rawSql`);
    }
  }
  // The subjects the issue names: throughput, latency, lag, rejections by reason, fills, model quality.
  const wanted = ['pipeline_stage_records_in_total', 'pipeline_stage_records_out_total', 'pipeline_stage_records_rejected_total', 'pipeline_stage_processing_seconds_bucket', 'pipeline_stage_batch_seconds_bucket', 'pipeline_stage_consumer_lag', 'order_events_emitted_total', 'order_invalid_transitions_total', 'reconcile_discrepancies_total', 'kill_switch_engaged', 'model_service_mode', 'model_service_heldout_hit_rate', 'model_service_live_hit_rate', 'model_service_signals_total'];
  for (const w of wanted) if (!used.has(w)) p.push(`dashboard: no panel shows ${w}`);
  const sqlText = panels.flatMap((x) => x.targets ?? []).map((t) => t.rawSql ?? '').join('\n');
  const pnlMetric = [...metrics.keys()].find((m) => /pnl/i.test(m));
  if (pnlMetric) {
    if (!used.has(pnlMetric)) p.push(`dashboard: PnL metric ${pnlMetric} exists but is not shown`);
  } else {
    if (!/pnl/i.test(sqlText)) p.push('dashboard: no PnL panel');
    if (!/no PnL metric/i.test(d.description ?? '')) p.push('dashboard: description must say that no PnL metric exists');
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// The real files.

const compose = yaml('redpanda-compose.yml') as Compose;
const secretsFiles = Object.fromEntries(['secrets', 'postgres', 'rabbitmq', 'grafana'].map((n) => [`deploy/${n}.env.example`, envFile(read(`deploy/${n}.env.example`))]));
const secrets = secretsFiles['deploy/secrets.env.example']!;
const prometheus = yaml('deploy/prometheus/prometheus.yml') as { scrape_configs?: ScrapeConfig[] };
const datasources = yaml('deploy/grafana/provisioning/datasources/datasources.yml') as { datasources?: Datasource[] };
const providers = yaml('deploy/grafana/provisioning/dashboards/dashboards.yml') as { providers?: Array<{ type: string; options?: { path?: string } }> };
const dashboard = JSON.parse(read('deploy/grafana/dashboards/pipeline.json')) as Dashboard;
const metrics = readmeMetrics(read('README.md'));

test('compose: services, images, healthchecks, restart policies, loopback ports, mounted files', () => {
  assert.deepEqual(checkCompose(compose), []);
});

test('compose: every variable set for our services is a known setting, and the configuration loads', () => {
  assert.deepEqual(checkServiceEnv(compose, secrets), []);
});

test('env file templates list the secrets, and their passwords agree', () => {
  assert.deepEqual(checkSecrets(secretsFiles), []);
  const ignore = read('deploy/.gitignore');
  assert.match(ignore, /^\*\.env$/m, 'real env files are git-ignored');
  assert.match(ignore, /^!\*\.env\.example$/m, 'templates are not');
});

test('prometheus: scrape config targets the admin ports of order-manager and model, and redpanda', () => {
  assert.deepEqual(checkPrometheus(compose, prometheus), []);
});

test('grafana: datasource and dashboard provider provisioned from mounted paths', () => {
  assert.deepEqual(checkGrafanaProvisioning(compose, datasources, providers), []);
});

test('dashboard: parses, unique panel ids, provisioned datasources, only README metric names', () => {
  assert.ok(metrics.size >= 30, `README metrics table parsed (${metrics.size} rows)`);
  assert.deepEqual(checkDashboard(dashboard, datasources.datasources ?? [], metrics), []);
});

test('promqlMetrics: picks metric names, not functions, labels or keywords', () => {
  assert.deepEqual(promqlMetrics('histogram_quantile(0.99, sum by (le, stage) (rate(a_bucket{x="y(z)"}[$__rate_interval])))'), ['a_bucket']);
  assert.deepEqual(promqlMetrics('max by (mode) (model_service_mode) == 1 and on (job) up'), ['model_service_mode', 'up']);
  assert.deepEqual(promqlMetrics('sum(increase(b_total[1h])) / 1e3'), ['b_total']);
});

test('the checks catch broken deployments', () => {
  const miss = (problems: string[], re: RegExp) => assert.ok(problems.some((x) => re.test(x)), `expected a problem matching ${re}, got ${JSON.stringify(problems)}`);
  let c = clone(compose);
  delete c.services.model!.healthcheck;
  miss(checkCompose(c), /model: no healthcheck/);
  c = clone(compose);
  delete c.services.grafana!.restart;
  miss(checkCompose(c), /grafana: no restart policy/);
  c = clone(compose);
  c.services.prometheus!.ports = ['9090:9090'];
  miss(checkCompose(c), /port 9090:9090 not published on 127\.0\.0\.1/);
  c = clone(compose);
  c.services.grafana!.volumes = ['./deploy/grafana/nope:/etc/grafana/provisioning/datasources:ro'];
  miss(checkCompose(c), /nope does not exist/);
  c = clone(compose);
  c.services.console!.environment!.KAFKA_SCHEMAREGISTRY_URLS = 'http://localhost:8081';
  miss(checkCompose(c), /schema registry/);
  c = clone(compose);
  c.services['order-manager']!.environment!.NOT_A_SETTING = '1';
  miss(checkServiceEnv(c, secrets), /NOT_A_SETTING is not a known setting/);
  c = clone(compose);
  c.services.model!.environment!.ADMIN_HOST = '127.0.0.1';
  miss(checkServiceEnv(c, secrets), /ADMIN_HOST/);
  c = clone(compose);
  c.services.model!.environment!.BYBIT_ENV = 'nowhere';
  miss(checkServiceEnv(c, secrets), /does not load/);
  const s = clone(secretsFiles);
  delete s['deploy/secrets.env.example']!.BYBIT_API_SECRET;
  s['deploy/rabbitmq.env.example']!.RABBITMQ_DEFAULT_PASS = 'other';
  miss(checkSecrets(s), /BYBIT_API_SECRET missing/);
  miss(checkSecrets(s), /AMQP_URL does not match/);
  const prom = clone(prometheus);
  prom.scrape_configs = prom.scrape_configs!.filter((x) => x.job_name !== 'model');
  miss(checkPrometheus(compose, prom), /model:9300\/metrics/);
  const ds = clone(datasources);
  ds.datasources = ds.datasources!.filter((x) => x.type !== 'prometheus');
  miss(checkGrafanaProvisioning(compose, ds, providers), /no prometheus datasource/);
  let d = clone(dashboard);
  d.panels!.push({ ...clone(d.panels![1]!) });
  miss(checkDashboard(d, datasources.datasources!, metrics), /ids are not unique/);
  d = clone(dashboard);
  const promPanel = allPanels(d.panels).find((x) => x.targets?.some((t) => t.expr))!;
  promPanel.targets![0]!.expr = 'sum(rate(pipeline_stage_records_total[5m]))';
  miss(checkDashboard(d, datasources.datasources!, metrics), /pipeline_stage_records_total, not in the README/);
  d = clone(dashboard);
  allPanels(d.panels).find((x) => x.type !== 'row')!.datasource = { uid: 'elsewhere' };
  miss(checkDashboard(d, datasources.datasources!, metrics), /elsewhere is not provisioned/);
  const fewer = new Map(metrics);
  fewer.delete('model_service_live_hit_rate');
  miss(checkDashboard(dashboard, datasources.datasources!, fewer), /model_service_live_hit_rate, not in the README/);
});

// On a migrated database of its own (the shared one may not be migrated): PostgreSQL is part of the
// stack every test runs on, so its absence fails. Only the psql binary, which runs Grafana's raw SQL
// text as it is (the project's own client takes typed queries only), may be missing: a visible skip.
test('dashboard SQL runs on the migrated schema', async (t) => {
  try {
    execFileSync('psql', ['--version'], { stdio: 'ignore' });
  } catch {
    return t.skip('psql is not installed: the dashboard SQL was not checked');
  }
  const db = await migratedDatabase('dashboard');
  t.after(() => db.drop());
  const psql = (sqlText: string): string => execFileSync('psql', [db.url, '-v', 'ON_ERROR_STOP=1', '-qAtc', sqlText], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  assert.equal(psql("SELECT to_regclass('public.schema_migrations') IS NOT NULL").trim(), 't', 'migrated');
  const queries = allPanels(dashboard.panels).flatMap((x) => x.targets ?? []).flatMap((q) => (q.rawSql ? [q.rawSql] : []));
  assert.ok(queries.length > 0);
  for (const q of queries) {
    // Grafana's macros, expanded the way the PostgreSQL datasource does.
    const sqlText = q
      .replace(/\$__timeGroupAlias\(([^,]+),\s*'[^']*'\)/g, "date_trunc('minute', $1) AS time")
      .replace(/\$__timeFilter\(([^)]+)\)/g, "$1 BETWEEN now() - interval '6 hours' AND now()");
    assert.doesNotMatch(sqlText, /\$__/, 'every macro expanded');
    assert.doesNotThrow(() => psql(`EXPLAIN ${sqlText}`), q);
  }
});

test('docs/deployment.md walks through the deployment', () => {
  const doc = read('docs/deployment.md');
  assert.match(doc, /docker compose -f redpanda-compose\.yml up -d/);
  for (const f of Object.keys(secretsFiles)) assert.ok(doc.includes(f), `mentions ${f}`);
  for (const url of ['http://127.0.0.1:8080', 'http://127.0.0.1:3000', 'http://127.0.0.1:9090']) assert.ok(doc.includes(url), `mentions ${url}`);
  for (const env of ['testnet', 'demo', 'mainnet']) assert.ok(doc.includes(env), `BYBIT_ENV=${env}`);
});

test('Dockerfile: multi-stage, non-root, runs the compiled service entry point', () => {
  const df = read('Dockerfile');
  assert.ok((df.match(/^FROM /gm) ?? []).length >= 2, 'multi-stage');
  const users = df.match(/^USER (\S+)/gm) ?? [];
  assert.ok(users.length > 0 && !/root/.test(users[users.length - 1]!), 'last USER is not root');
  assert.match(df, /HEALTHCHECK/);
  // The entry point: plain node on the compiled service-main (npm run build:dist), with the heap flags.
  const entry = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(df);
  assert.ok(entry, 'ENTRYPOINT in exec form');
  const argv = JSON.parse(entry[1]!) as string[];
  assert.equal(argv[0], 'node');
  assert.equal(argv[argv.length - 1], 'dist/stack/service-main.js', 'runs the compiled service-main');
  assert.ok(!argv.includes('--import') && !argv.includes('tsx'), 'no tsx loader');
  for (const flag of ['--max-semi-space-size=', '--max-old-space-size=']) assert.ok(argv.some((a) => a.startsWith(flag)), `heap flag ${flag}`);
  assert.match(df, /^RUN .*npm run build:dist/m, 'dist/ is built in the image');
  assert.match(df, /^COPY --from=\S+ \/app\/dist \.\/dist$/m, 'the runtime stage gets dist/');
  assert.ok(exists('stack/service-main.ts'), 'the entry point has a source');
  const build = JSON.parse(read('tsconfig.build.json').replace(/^\s*\/\/.*$/gm, '')) as { compilerOptions?: { outDir?: string }; include?: string[] };
  assert.equal(build.compilerOptions?.outDir, 'dist');
  assert.ok(build.include?.includes('stack'), 'tsconfig.build.json compiles stack/');
});
