// The local stack: real parts on this machine, started and stopped by the project itself.
//   npm run stack:up      Kafka (KRaft, from Maven Central jars), schema registry stand-in,
//                         PostgreSQL + RabbitMQ (the machine's servers, started if down),
//                         the project's database, migrations, topics. Idempotent.
//   npm run stack:status  what runs where, and which paper account the simulator keeps.
//   npm run stack:down    stops what this script started (Kafka, registry); leaves the shared
//                         PostgreSQL and RabbitMQ servers alone.
// With KAFKA_BROKERS set, no local broker is started and that cluster is used; with
// SCHEMA_REGISTRY_URL set, no stand-in registry is started.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, writeFileSync, rmSync, readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, kafkaBrokers, schemaRegistryUrl, type Config } from '../runtime/config.ts';
import { createLogger, type Logger } from '../runtime/logger.ts';
import { createKafka } from '../runtime/kafka.ts';
import { retry } from '../runtime/retry.ts';
import { RetriableError } from '../runtime/errors.ts';
import { migrateDatabase, ensureAllTopics } from './provision.ts';
import { tcpOpen, pidAlive } from './net.ts';
import { ROOT } from '../runtime/paths.ts';
import { defaultStateFile, readStateSummary, type StateSummary } from '../sim/persistence.ts';
import { UNIT_SCHEMAS } from './services.ts';
import { brokerClasspath, patchKafkaBroker } from './kafka-broker-fix.ts';

export { ROOT };

export function kafkaVersion(): string {
  const pom = readFileSync(join(ROOT, 'stack/kafka/pom.xml'), 'utf8');
  const m = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(pom);
  if (!m?.[1]) throw new Error('stack/kafka/pom.xml declares no kafka.version');
  return m[1];
}

export interface Paths {
  dir: string;
  libs: string;
  data: string;
  logs: string;
  props: string;
  log4j: string;
  kafkaPid: string;
  registryPid: string;
  registryFile: string;
}

export function paths(cfg: Config): Paths {
  const dir = resolve(ROOT, cfg.STACK_DIR);
  return {
    dir,
    libs: join(dir, `kafka-libs-${kafkaVersion()}`),
    data: join(dir, 'kafka-data'),
    logs: join(dir, 'logs'),
    props: join(dir, 'kafka-server.properties'),
    log4j: join(dir, 'kafka-log4j2.properties'),
    kafkaPid: join(dir, 'kafka.pid'),
    registryPid: join(dir, 'registry.pid'),
    registryFile: join(dir, 'registry.json'),
  };
}

const readPid = (file: string): number | null => {
  if (!existsSync(file)) return null;
  const pid = Number(readFileSync(file, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 ? pid : null;
};

// ---------------------------------------------------------------------------------------------
// Kafka

export function fetchKafkaJars(p: Paths, log: Logger): void {
  const pom = join(ROOT, 'stack/kafka/pom.xml');
  if (!existsSync(join(p.libs, '.complete'))) {
    log.info({ version: kafkaVersion(), into: p.libs }, 'fetching Kafka jars from Maven Central (once, cached)');
    mkdirSync(p.libs, { recursive: true });
    execFileSync('mvn', ['-q', '-B', '-f', pom, 'dependency:copy-dependencies', `-DoutputDirectory=${p.libs}`], { stdio: ['ignore', 'inherit', 'inherit'] });
    writeFileSync(join(p.libs, '.complete'), new Date().toISOString());
  }
  // Also on a machine whose jars came before the fix did.
  patchKafkaBroker(p.libs, kafkaVersion(), pom, log);
}

/**
 * One single-node KRaft broker: where its files live and which ports it listens on. `stack:up`
 * runs one on 9092/9093 under STACK_DIR; the chaos run starts a private one on free ports
 * (stack/chaos-kafka.ts) with the same jars, so it can restart it without touching the shared one.
 */
export interface KafkaNode {
  libs: string;
  data: string;
  logs: string;
  props: string;
  log4j: string;
  /** Name of the broker's log file in `logs` (kafka.log for the stack's broker). */
  logName: string;
  port: number;
  controllerPort: number;
  heap: string;
}

function stackNode(p: Paths, cfg: Config): KafkaNode {
  return { libs: p.libs, data: p.data, logs: p.logs, props: p.props, log4j: p.log4j, logName: 'kafka.log', port: 9092, controllerPort: 9093, heap: cfg.KAFKA_HEAP };
}

export function writeKafkaConfig(n: KafkaNode): void {
  mkdirSync(n.logs, { recursive: true });
  // A single combined KRaft node with replication factors of 1 and few internal partitions, so the
  // first consumer-group join and the first transaction are fast on a small machine.
  writeFileSync(
    n.props,
    [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${n.controllerPort}`,
      `listeners=PLAINTEXT://127.0.0.1:${n.port},CONTROLLER://127.0.0.1:${n.controllerPort}`,
      `advertised.listeners=PLAINTEXT://127.0.0.1:${n.port}`,
      'controller.listener.names=CONTROLLER',
      'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
      'inter.broker.listener.name=PLAINTEXT',
      `log.dirs=${n.data}`,
      'num.partitions=3',
      'auto.create.topics.enable=false',
      'offsets.topic.replication.factor=1',
      'offsets.topic.num.partitions=5',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'transaction.state.log.num.partitions=5',
      'share.coordinator.state.topic.replication.factor=1',
      'share.coordinator.state.topic.min.isr=1',
      'group.initial.rebalance.delay.ms=0',
      'log.segment.bytes=67108864',
      '',
    ].join('\n'),
  );
  writeFileSync(
    n.log4j,
    [
      'status = error',
      'appender.file.type = File',
      'appender.file.name = FILE',
      `appender.file.fileName = ${join(n.logs, n.logName)}`,
      'appender.file.layout.type = PatternLayout',
      'appender.file.layout.pattern = [%d] %p %m (%c)%n',
      'rootLogger.level = INFO',
      'rootLogger.appenderRef.file.ref = FILE',
      'logger.kafka.name = kafka',
      'logger.kafka.level = WARN',
      'logger.apache.name = org.apache.kafka',
      'logger.apache.level = WARN',
      '',
    ].join('\n'),
  );
}

export function kafkaJavaArgs(n: KafkaNode, mainClass: string, args: string[]): string[] {
  // The storage tool runs for a second: the C1 compiler alone starts fastest. The broker runs for
  // the whole session and gets both JIT tiers: with C1 alone it took ~1.4× the CPU per signal
  // relative to the order manager in the bench (docs/performance.md), on cores they share.
  const jit = mainClass === 'kafka.Kafka' ? [] : ['-XX:TieredStopAtLevel=1'];
  return [`-Xmx${n.heap}`, '-Xms64m', '-XX:+UseSerialGC', ...jit, '-Xss512k', `-Dlog4j2.configurationFile=${n.log4j}`, '-cp', brokerClasspath(n.libs), mainClass, ...args];
}

export function formatStorage(n: KafkaNode, log: Logger): void {
  if (existsSync(join(n.data, 'meta.properties'))) return;
  mkdirSync(n.data, { recursive: true });
  const clusterId = execFileSync('java', kafkaJavaArgs(n, 'kafka.tools.StorageTool', ['random-uuid']), { encoding: 'utf8' }).trim().split('\n').pop()!.trim();
  execFileSync('java', kafkaJavaArgs(n, 'kafka.tools.StorageTool', ['format', '-t', clusterId, '-c', n.props]), { stdio: ['ignore', 'ignore', 'inherit'] });
  log.info({ clusterId, data: n.data }, 'formatted Kafka storage');
}

/** Start the broker's JVM (config written and storage formatted first); output appended to logs/<out>. */
export function spawnKafka(n: KafkaNode, log: Logger, opts: { detached: boolean; out: string }): ChildProcess {
  writeKafkaConfig(n);
  formatStorage(n, log);
  const out = openSync(join(n.logs, opts.out), 'a');
  const child = spawn('java', kafkaJavaArgs(n, 'kafka.Kafka', [n.props]), { detached: opts.detached, stdio: ['ignore', out, out] });
  closeSync(out);
  return child;
}

export async function kafkaReady(brokers: string[], log: Logger, timeoutMs: number): Promise<void> {
  // Readiness through the admin API: the cluster answers metadata with a controller.
  const kafka = createKafka({ brokers, clientId: 'stack-readiness', logger: log.child({}, { level: 'fatal' }) });
  const deadline = Date.now() + timeoutMs;
  await retry(
    async () => {
      const admin = kafka.admin();
      try {
        await admin.connect();
        const c = await admin.describeCluster();
        if (c.brokers.length === 0 || c.controller === null) throw new RetriableError('kafka_not_ready', 'no controller yet');
      } catch (err) {
        throw new RetriableError('kafka_not_ready', (err as Error).message, undefined, { cause: err });
      } finally {
        await admin.disconnect().catch(() => {});
      }
    },
    { retries: Infinity, minMs: 200, maxMs: 2000, isRetriable: () => Date.now() < deadline },
  );
}

async function startKafka(cfg: Config, p: Paths, log: Logger): Promise<void> {
  const pid = readPid(p.kafkaPid);
  if (pid && pidAlive(pid)) {
    log.info({ pid }, 'Kafka already running');
    const cmd = existsSync(`/proc/${pid}/cmdline`) ? readFileSync(`/proc/${pid}/cmdline`, 'utf8') : '';
    if (!cmd.includes(brokerClasspath(p.libs))) {
      log.warn({ pid }, 'the running Kafka broker was started without the fix of KAFKA-20734 (stack/kafka-broker-fix.ts): a controlled shutdown may leave transactions open or commit aborted records; restart the stack (stack.ts down, then up) to load it');
    }
    await kafkaReady(['127.0.0.1:9092'], log, 60_000);
    return;
  }
  if (await tcpOpen('127.0.0.1', 9092)) {
    log.warn('something already listens on 127.0.0.1:9092 (not started by this stack); using it');
    await kafkaReady(['127.0.0.1:9092'], log, 60_000);
    return;
  }
  fetchKafkaJars(p, log);
  const started = Date.now();
  const child = spawnKafka(stackNode(p, cfg), log, { detached: true, out: 'kafka.out' });
  child.unref();
  writeFileSync(p.kafkaPid, String(child.pid));
  await kafkaReady(['127.0.0.1:9092'], log, cfg.KAFKA_CONNECT_TIMEOUT_MS);
  log.info({ pid: child.pid, ms: Date.now() - started, version: kafkaVersion() }, 'Kafka ready on 127.0.0.1:9092');
}

// ---------------------------------------------------------------------------------------------
// Schema registry stand-in

async function startRegistry(p: Paths, log: Logger): Promise<void> {
  const pid = readPid(p.registryPid);
  if ((pid && pidAlive(pid)) || (await tcpOpen('127.0.0.1', 8081))) {
    log.info({ pid }, 'schema registry stand-in already running');
    return;
  }
  mkdirSync(p.logs, { recursive: true });
  const out = openSync(join(p.logs, 'registry.log'), 'a');
  const tsx = join(ROOT, 'node_modules/.bin/tsx');
  const child = spawn(tsx, [join(ROOT, 'schemas/registry-main.ts'), '--port', '8081', '--file', p.registryFile], { detached: true, stdio: ['ignore', out, out], cwd: ROOT });
  child.unref();
  writeFileSync(p.registryPid, String(child.pid));
  await retry(
    async () => {
      const r = await fetch('http://127.0.0.1:8081/subjects').catch((e) => {
        throw new RetriableError('registry_not_ready', String(e));
      });
      if (!r.ok) throw new RetriableError('registry_not_ready', `HTTP ${r.status}`);
    },
    { retries: 60, minMs: 100, maxMs: 500 },
  );
  log.info({ pid: child.pid, url: 'http://127.0.0.1:8081' }, 'schema registry stand-in ready (local stand-in for Redpanda schema registry)');
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL and RabbitMQ: the machine's own servers

function hostPort(url: string, defPort: number): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname || '127.0.0.1', port: Number(u.port || defPort) };
}

async function ensureService(name: string, host: string, port: number, startCmd: string[] | null, log: Logger): Promise<void> {
  if (await tcpOpen(host, port)) return;
  const local = host === '127.0.0.1' || host === 'localhost';
  if (!local || !startCmd) throw new Error(`${name} is not reachable on ${host}:${port}`);
  log.info({ name, cmd: startCmd.join(' ') }, `${name} is down; starting it`);
  try {
    execFileSync(startCmd[0]!, startCmd.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (err) {
    throw new Error(`${name} is down and could not be started: ${(err as Error).message}`, { cause: err });
  }
  await retry(
    async () => {
      if (!(await tcpOpen(host, port))) throw new RetriableError('not_ready', `${name} not yet listening`);
    },
    { retries: 120, minMs: 250, maxMs: 1000 },
  );
}

function postgresStartCmd(): string[] | null {
  if (!existsSync('/etc/postgresql')) return null;
  const versions = readdirSync('/etc/postgresql');
  return versions[0] ? ['pg_ctlcluster', '--skip-systemctl-redirect', versions[0], 'main', 'start'] : null;
}

function rabbitStartCmd(): string[] | null {
  return existsSync('/usr/sbin/rabbitmq-server') || existsSync('/usr/lib/rabbitmq/bin/rabbitmq-server') ? ['rabbitmq-server', '-detached'] : null;
}

// ---------------------------------------------------------------------------------------------

export async function stackUp(cfg: Config, log: Logger): Promise<void> {
  const p = paths(cfg);
  mkdirSync(p.dir, { recursive: true });
  const pg = hostPort(cfg.DATABASE_URL, 5432);
  const amqp = hostPort(cfg.AMQP_URL, 5672);
  // The JVM start dominates; PostgreSQL / RabbitMQ / registry come up meanwhile.
  await Promise.all([
    cfg.KAFKA_BROKERS ? kafkaReady(kafkaBrokers(cfg), log, cfg.KAFKA_CONNECT_TIMEOUT_MS) : startKafka(cfg, p, log),
    cfg.SCHEMA_REGISTRY_URL ? Promise.resolve() : startRegistry(p, log),
    (async () => {
      await ensureService('PostgreSQL', pg.host, pg.port, postgresStartCmd(), log);
      await migrateDatabase(cfg, log);
    })(),
    ensureService('RabbitMQ', amqp.host, amqp.port, rabbitStartCmd(), log),
  ]);
  await ensureAllTopics(cfg, log);
}

async function stopPid(file: string, name: string, log: Logger): Promise<void> {
  const pid = readPid(file);
  if (!pid || !pidAlive(pid)) {
    rmSync(file, { force: true });
    log.info(`${name} not running`);
    return;
  }
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 120 && pidAlive(pid); i++) await sleep(250);
  if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(file, { force: true });
  log.info({ pid }, `${name} stopped`);
}

export async function stackDown(cfg: Config, log: Logger): Promise<void> {
  const p = paths(cfg);
  await stopPid(p.registryPid, 'schema registry stand-in', log);
  await stopPid(p.kafkaPid, 'Kafka', log);
}

export async function stackStatus(cfg: Config): Promise<Array<{ component: string; where: string; state: string; detail: string }>> {
  const p = paths(cfg);
  const pg = hostPort(cfg.DATABASE_URL, 5432);
  const amqp = hostPort(cfg.AMQP_URL, 5672);
  const kPid = readPid(p.kafkaPid);
  const rPid = readPid(p.registryPid);
  const brokers = kafkaBrokers(cfg);
  const [bh, bp] = (brokers[0] ?? '127.0.0.1:9092').split(':');
  const reg = new URL(schemaRegistryUrl(cfg));
  const rows = [
    {
      component: 'kafka',
      where: brokers.join(','),
      state: (await tcpOpen(bh!, Number(bp))) ? 'up' : 'down',
      detail: cfg.KAFKA_BROKERS ? 'external cluster (KAFKA_BROKERS)' : `local Apache Kafka ${kafkaVersion()} KRaft${kPid && pidAlive(kPid) ? ` pid ${kPid}` : ''}, data ${p.data}`,
    },
    {
      component: 'schema-registry',
      where: reg.origin,
      state: (await tcpOpen(reg.hostname, Number(reg.port || 80))) ? 'up' : 'down',
      detail: cfg.SCHEMA_REGISTRY_URL ? 'external (SCHEMA_REGISTRY_URL)' : `local stand-in for Redpanda's registry${rPid && pidAlive(rPid) ? ` pid ${rPid}` : ''}`,
    },
    { component: 'postgresql', where: `${pg.host}:${pg.port}`, state: (await tcpOpen(pg.host, pg.port)) ? 'up' : 'down', detail: `database ${new URL(cfg.DATABASE_URL).pathname.slice(1)}` },
    { component: 'rabbitmq', where: `${amqp.host}:${amqp.port}`, state: (await tcpOpen(amqp.host, amqp.port)) ? 'up' : 'down', detail: 'AMQP 0-9-1' },
    await simulatorStatus(cfg, p.dir),
  ];
  return rows;
}

/** Components whose state decides the exit code of `stack:status` (the simulator runs with `npm start` or `npm run sim`, not with the stack). */
export const STACK_COMPONENTS = ['kafka', 'schema-registry', 'postgresql', 'rabbitmq'];

function accountDetail(s: Omit<StateSummary, 'savedAt'> & { savedAt?: number }): string {
  const saved = s.savedAt === undefined ? '' : `, saved ${new Date(s.savedAt).toISOString()}`;
  return `account ${s.accountId} uid ${s.uids.join(',')} created ${new Date(s.createdAt).toISOString()}, ${s.orders} orders (${s.openOrders} open), ${s.executions} executions, ${s.starts} starts${saved}, state ${s.file}`;
}

/**
 * The simulator on BYBIT_SIM_PORT and its paper account: asked over its admin API when it answers
 * (live figures), read from the state file `npm start` / `npm run sim` use when it does not.
 */
async function simulatorStatus(cfg: Config, stackDir: string): Promise<{ component: string; where: string; state: string; detail: string }> {
  const where = `127.0.0.1:${cfg.BYBIT_SIM_PORT}`;
  const file = defaultStateFile(stackDir, cfg.BYBIT_SIM_PORT);
  const up = await tcpOpen('127.0.0.1', cfg.BYBIT_SIM_PORT);
  if (up) {
    try {
      const r = await fetch(`http://${where}/sim/state`, { signal: AbortSignal.timeout(3000) });
      const st = ((await r.json()) as { result: { orders: { total: number; open: number }; executions: number; accounts: Array<{ uid: string }>; account?: { stateFile?: string; accountId: string; createdAt: number; starts: number } } }).result;
      const a = st.account;
      const detail = accountDetail({ file: a?.stateFile ?? 'none (in memory only)', accountId: a?.accountId ?? '?', createdAt: a?.createdAt ?? 0, uids: st.accounts.map((x) => x.uid), orders: st.orders.total, openOrders: st.orders.open, executions: st.executions, starts: a?.starts ?? 1 });
      return { component: 'simulator', where, state: 'up', detail };
    } catch (e) {
      return { component: 'simulator', where, state: 'up', detail: `something answers but not as the simulator (${(e as Error).message}); state file ${file}` };
    }
  }
  try {
    const saved = readStateSummary(file);
    return { component: 'simulator', where, state: 'down', detail: saved ? accountDetail(saved) : `no paper account yet (npm start / npm run sim opens one in ${file})` };
  } catch (e) {
    return { component: 'simulator', where, state: 'down', detail: (e as Error).message };
  }
}

async function main(): Promise<void> {
  const cmd = process.argv[2];
  const cfg = loadConfig(process.env, UNIT_SCHEMAS);
  const log = createLogger(cfg, 'stack');
  if (cmd === 'up') {
    const t0 = Date.now();
    await stackUp(cfg, log);
    log.info({ ms: Date.now() - t0 }, 'stack up');
  } else if (cmd === 'down') {
    await stackDown(cfg, log);
  } else if (cmd === 'status') {
    const rows = await stackStatus(cfg);
    for (const r of rows) console.log(`${r.component.padEnd(16)} ${r.state.padEnd(5)} ${r.where.padEnd(24)} ${r.detail}`);
    process.exitCode = rows.every((r) => r.state === 'up' || !STACK_COMPONENTS.includes(r.component)) ? 0 : 3;
  } else {
    console.error('usage: tsx stack/stack.ts up|down|status');
    process.exitCode = 2;
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
