// Private infrastructure of a chaos run, so it can restart brokers and servers without touching the
// shared ones other people's tests use:
//   - a second single-node KRaft Apache Kafka (same jars as `stack:up`, own ports, own data dir under
//     STACK_DIR/chaos-<id>/), restarted with SIGTERM or SIGKILL and started again on the same data;
//   - a private RabbitMQ node (own node name, AMQP and distribution ports, Mnesia and log dirs, Erlang
//     cookie, no plugins), whose connections are closed and which is stopped and started again.
// Every process is a child of the chaos run (same process group) and its pid is written into the
// run's directory, so `cleanStaleChaosDirs` can kill what a crashed earlier run left behind.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import amqplib from 'amqplib';
import type { Config } from '../runtime/config.ts';
import type { Logger } from '../runtime/logger.ts';
import { fetchKafkaJars, kafkaReady, paths, spawnKafka, type KafkaNode } from './stack.ts';
import { pidAlive, tcpOpen } from './net.ts';
import { ROOT } from '../runtime/paths.ts';

const run = promisify(execFile);

/** How long a private server may take to (re)start: generous, the machine may be busy with others' work. */
const START_TIMEOUT_MS = 300_000;

/** Ports this process has handed out: two servers of one run never get the same one. */
const handedOut = new Set<number>();

/** Whether a listener can bind 127.0.0.1:port right now. */
function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * A TCP port nobody listens on right now, for a private server that binds it a moment later. Taken
 * below Linux's ephemeral range (32768 and up by default): a port the OS hands out for port 0 is
 * also what it hands to outgoing connections, and on a busy machine one of them could take it
 * before the server binds (a private RabbitMQ node once exited at start that way, it seems).
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 500; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (handedOut.has(port) || !(await canBind(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error('no free TCP port found in 20000-31999');
}

async function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([new Promise<boolean>((res) => child.once('exit', () => res(true))), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), timeoutMs)))]);
  clearTimeout(timer); // a pending timer would keep the caller's event loop alive
  return r;
}

/** Send `signal`; a child still running after `graceMs` gets SIGKILL and up to `killMs` more. */
async function stopChild(c: ChildProcess, signal: 'SIGTERM' | 'SIGKILL', graceMs: number, killMs: number): Promise<void> {
  c.kill(signal);
  if (!(await exited(c, graceMs))) {
    c.kill('SIGKILL');
    await exited(c, killMs);
  }
}

function pidFile(dir: string, name: string, pid: number | undefined): void {
  if (pid) writeFileSync(join(dir, `${name}.pid`), String(pid));
}

/**
 * Kill what an earlier chaos run left running (it was killed itself, so its `finally` never ran) and
 * delete its directory. Only pids recorded in STACK_DIR/chaos-* whose command line names that very
 * directory are killed, so a recycled pid is never hit.
 */
export function cleanStaleChaosDirs(cfg: Config, log: Logger, keep: string | null = null): void {
  const base = paths(cfg).dir;
  if (!existsSync(base)) return;
  const cmdOf = (pidPath: string): { pid: number; cmd: string } | null => {
    const pid = Number(readFileSync(pidPath, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0 || !pidAlive(pid)) return null;
    try {
      return { pid, cmd: readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ') };
    } catch {
      return null;
    }
  };
  for (const d of readdirSync(base)) {
    if (!d.startsWith('chaos-')) continue;
    const dir = join(base, d);
    if (dir === keep) continue;
    // A chaos run still in progress (its owner lives): leave its directory and processes alone.
    // (Checked first: two runs in one STACK_DIR once killed each other's brokers.)
    const owner = existsSync(join(dir, 'owner.pid')) ? cmdOf(join(dir, 'owner.pid')) : null;
    if (owner?.cmd.includes('chaos')) continue;
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.pid') && x !== 'owner.pid')) {
      const p = cmdOf(join(dir, f));
      if (!p || !p.cmd.includes(dir)) continue;
      log.warn({ pid: p.pid, dir }, 'killing a process left by an earlier chaos run');
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    // A directory kept on purpose (CHAOS_KEEP_DIR) stays for inspection; its processes are gone.
    if (!existsSync(join(dir, 'kept'))) rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Kafka

export interface PrivateKafka {
  brokers: string[];
  node: KafkaNode;
  /** Stop the broker (SIGTERM: controlled shutdown; SIGKILL: crash) and start it again on the same data dir; ms until ready. */
  restart(signal: 'SIGTERM' | 'SIGKILL', downMs?: number): Promise<number>;
  stop(): Promise<void>;
  /** OS processes of the broker right now (for a last-resort kill). */
  pids(): number[];
  /**
   * What the broker says about the transactions on some partitions ('topic/partition'): offsets,
   * producers with an open transaction, the coordinator's side of each (stack/kafka/TxnProbe.java).
   * For a report; a failure to ask is returned as text too.
   */
  transactions(partitions: readonly string[]): Promise<string>;
}

/**
 * What a broker says about the transactions on some partitions ('topic/partition'):
 * stack/kafka/TxnProbe.java on the broker's own kafka-clients jar, one JSON object per line.
 */
export async function probeTransactions(libs: string, brokers: readonly string[], partitions: readonly string[]): Promise<string> {
  const { stdout } = await run('java', ['-cp', `${libs}/*`, join(ROOT, 'stack/kafka/TxnProbe.java'), brokers.join(','), ...partitions], { timeout: 90_000 });
  return stdout.trim();
}

export async function startPrivateKafka(cfg: Config, dir: string, log: Logger): Promise<PrivateKafka> {
  const p = paths(cfg);
  fetchKafkaJars(p, log);
  const node: KafkaNode = {
    libs: p.libs,
    data: join(dir, 'kafka-data'),
    logs: join(dir, 'logs'),
    props: join(dir, 'kafka-server.properties'),
    log4j: join(dir, 'kafka-log4j2.properties'),
    logName: 'kafka.log',
    port: await freePort(),
    controllerPort: await freePort(),
    heap: process.env.CHAOS_KAFKA_HEAP ?? '256m',
  };
  const brokers = [`127.0.0.1:${node.port}`];
  let child: ChildProcess | null = null;
  const start = async (): Promise<number> => {
    const t0 = Date.now();
    child = spawnKafka(node, log, { detached: false, out: 'kafka.out' });
    pidFile(dir, 'kafka', child.pid);
    await kafkaReady(brokers, log, START_TIMEOUT_MS);
    return Date.now() - t0;
  };
  const halt = async (signal: 'SIGTERM' | 'SIGKILL') => {
    const c = child;
    child = null;
    if (c) await stopChild(c, signal, 30_000, 10_000);
  };
  await start();
  return {
    brokers,
    node,
    restart: async (signal, downMs = 0) => {
      const t0 = Date.now();
      await halt(signal);
      if (downMs) await sleep(downMs);
      await start();
      return Date.now() - t0;
    },
    stop: () => halt('SIGTERM'),
    pids: () => ((child as ChildProcess | null)?.pid ? [(child as ChildProcess | null)!.pid!] : []),
    transactions: (partitions) => probeTransactions(node.libs, brokers, partitions).catch((e: Error) => `TxnProbe failed: ${e.message.slice(0, 2000)}`),
  };
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ

const RABBIT_BIN = '/usr/lib/rabbitmq/bin';

export interface PrivateRabbit {
  url: string;
  nodename: string;
  /** Close every client connection (rabbitmqctl close_all_connections); how many there were. */
  closeConnections(): Promise<number>;
  /**
   * Stop the node and start it again on the same Mnesia dir; ms until it accepts AMQP. 'stop' is
   * `rabbitmqctl stop`; 'kill' is SIGKILL of the Erlang VM (a crash or an OOM kill: nothing is
   * flushed, queues recover from disk; confirmed persistent messages must survive).
   */
  restart(downMs?: number, how?: 'stop' | 'kill'): Promise<number>;
  stop(): Promise<void>;
  /** OS processes of the node right now (start script and Erlang VM, for a last-resort kill). */
  pids(): number[];
}

/** True when the machine has RabbitMQ's own scripts, so a private node can be started. */
export function rabbitAvailable(): boolean {
  return existsSync(join(RABBIT_BIN, 'rabbitmq-server')) && existsSync(join(RABBIT_BIN, 'rabbitmqctl'));
}

export async function startPrivateRabbit(dir: string, log: Logger): Promise<PrivateRabbit> {
  const home = join(dir, 'rabbitmq');
  mkdirSync(home, { recursive: true });
  const port = await freePort();
  let distPort = await freePort();
  while (distPort === port) distPort = await freePort();
  const nodename = `${dir.split('/').pop()}@localhost`;
  const url = `amqp://guest:guest@127.0.0.1:${port}`;
  // Own files for everything the scripts would otherwise take from /etc/rabbitmq and /var/lib/rabbitmq.
  writeFileSync(join(home, 'rabbitmq-env.conf'), 'ERL_EPMD_ADDRESS=127.0.0.1\n');
  writeFileSync(join(home, 'rabbitmq.conf'), `listeners.tcp.local = 127.0.0.1:${port}\nloopback_users.guest = true\n`);
  writeFileSync(join(home, 'enabled_plugins'), '[].\n');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: home, // Erlang cookie of this node and of its rabbitmqctl calls
    RABBITMQ_CONF_ENV_FILE: join(home, 'rabbitmq-env.conf'),
    RABBITMQ_CONFIG_FILE: join(home, 'rabbitmq.conf'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(home, 'advanced.config'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(home, 'enabled_plugins'),
    RABBITMQ_NODENAME: nodename,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(home, 'mnesia'),
    RABBITMQ_LOG_BASE: join(home, 'log'),
    RABBITMQ_PID_FILE: join(home, 'beam.pid'),
    ERL_FLAGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    ERL_CRASH_DUMP: join(home, 'erl_crash.dump'),
  };
  const ctl = async (...args: string[]): Promise<string> => (await run(join(RABBIT_BIN, 'rabbitmqctl'), ['-n', nodename, ...args], { env, cwd: home, timeout: 60_000 })).stdout;
  const beamPid = (): number | null => {
    try {
      const n = Number(readFileSync(env.RABBITMQ_PID_FILE!, 'utf8').trim());
      return Number.isInteger(n) && n > 0 ? n : null;
    } catch {
      return null;
    }
  };
  let child: ChildProcess | null = null;
  const start = async (): Promise<number> => {
    const t0 = Date.now();
    const out = join(home, 'server.out');
    child = spawn('/bin/sh', ['-c', `exec "${RABBIT_BIN}/rabbitmq-server" >> "${out}" 2>&1`], { env, cwd: home, stdio: 'ignore' });
    pidFile(dir, 'rabbitmq', child.pid);
    const c = child;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`private RabbitMQ node exited during start (see ${out})`);
      if (Date.now() - t0 > START_TIMEOUT_MS) throw new Error(`private RabbitMQ node not up after ${START_TIMEOUT_MS / 1000} s (see ${out})`);
      if (await tcpOpen('127.0.0.1', port)) {
        const conn = await amqplib.connect(url).catch(() => null);
        if (conn) {
          await conn.close().catch(() => {});
          break;
        }
      }
      await sleep(200);
    }
    const b = beamPid();
    if (b) pidFile(dir, 'rabbitmq-beam', b);
    return Date.now() - t0;
  };
  const halt = async () => {
    const c = child;
    child = null;
    if (!c) return;
    await ctl('stop').catch((err: Error) => log.warn({ err: err.message }, 'rabbitmqctl stop failed; killing the node'));
    if (!(await exited(c, 30_000))) {
      const b = beamPid();
      if (b && pidAlive(b)) process.kill(b, 'SIGKILL');
      c.kill('SIGKILL');
      await exited(c, 10_000);
    }
    // The beam may outlive the script by a moment.
    const b = beamPid();
    for (let i = 0; i < 100 && b && pidAlive(b); i++) await sleep(100);
    if (b && pidAlive(b)) process.kill(b, 'SIGKILL');
    rmSync(env.RABBITMQ_PID_FILE!, { force: true });
  };
  await start();
  return {
    url,
    nodename,
    closeConnections: async () => {
      const list = await ctl('list_connections', '-q', '--no-table-headers', 'pid').catch(() => '');
      const n = list.split('\n').filter((l) => l.trim()).length;
      await ctl('close_all_connections', 'chaos: connection closed on purpose');
      return n;
    },
    restart: async (downMs = 0, how = 'stop') => {
      const t0 = Date.now();
      if (how === 'kill') {
        const b = beamPid();
        if (b && pidAlive(b)) process.kill(b, 'SIGKILL');
        const c = child;
        if (c && !(await exited(c, 30_000))) c.kill('SIGKILL');
        child = null;
        for (let i = 0; i < 100 && b && pidAlive(b); i++) await sleep(100);
        rmSync(env.RABBITMQ_PID_FILE!, { force: true });
      } else await halt();
      if (downMs) await sleep(downMs);
      await start();
      return Date.now() - t0;
    },
    stop: halt,
    pids: () => [(child as ChildProcess | null)?.pid, beamPid()].filter((x): x is number => typeof x === 'number'),
  };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a private cluster, because the machine's server is shared and must never be restarted

export interface PrivatePostgres {
  /** postgres://postgres@127.0.0.1:<port>/<database> of the run's database. */
  url: string;
  port: number;
  /**
   * Stop the server and start it again on the same data directory; ms until it accepts queries.
   * 'fast': sessions are terminated, a clean shutdown checkpoint; 'immediate': every process quits at
   * once, no checkpoint, crash recovery from the WAL at the next start.
   */
  restart(mode: 'fast' | 'immediate', downMs?: number): Promise<number>;
  stop(): Promise<void>;
  pids(): number[];
}

/** The newest PostgreSQL server binaries the distribution installed, or null. */
export function postgresBin(): string | null {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const versions = readdirSync(base).filter((v) => /^\d+$/.test(v) && existsSync(join(base, v, 'bin', 'pg_ctl'))).sort((a, b) => Number(b) - Number(a));
  return versions.length ? join(base, versions[0]!, 'bin') : null;
}

/**
 * initdb a cluster under the run's directory (owned by the `postgres` OS user: the server refuses to
 * run as root), start it with pg_ctl on a free port (TCP on 127.0.0.1 only, its socket in its own
 * directory), trust authentication, and create `database`.
 */
export async function startPrivatePostgres(dir: string, database: string, log: Logger): Promise<PrivatePostgres> {
  const bin = postgresBin();
  if (!bin) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql (a private cluster is needed so the shared server is never restarted)');
  const home = join(dir, 'postgres');
  const data = join(home, 'data');
  mkdirSync(home, { recursive: true });
  const { stdout: uid } = await run('id', ['-u', 'postgres']);
  const { stdout: gid } = await run('id', ['-g', 'postgres']);
  chownSync(home, Number(uid), Number(gid));
  const asPostgres = (cmd: string, args: string[], timeout = START_TIMEOUT_MS) => run('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args], { cwd: home, timeout });
  await asPostgres('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
  const port = await freePort();
  const opts = `-p ${port} -k ${home} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off`;
  const pidOf = (): number | null => {
    try {
      const n = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return Number.isInteger(n) && n > 0 ? n : null;
    } catch {
      return null;
    }
  };
  const start = async (): Promise<number> => {
    const t0 = Date.now();
    await asPostgres('pg_ctl', ['-D', data, '-l', join(home, 'server.log'), '-o', opts, '-w', '-t', String(START_TIMEOUT_MS / 1000), 'start']);
    const p = pidOf();
    if (p) pidFile(dir, 'postgres', p);
    return Date.now() - t0;
  };
  const halt = async (mode: 'fast' | 'immediate') => {
    if (!pidOf()) return;
    await asPostgres('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop']).catch((err: Error) => {
      log.warn({ err: err.message }, 'pg_ctl stop failed; killing the postmaster');
      const p = pidOf();
      if (p && pidAlive(p)) process.kill(p, 'SIGKILL');
    });
  };
  await start();
  const url = `postgres://postgres@127.0.0.1:${port}/${database}`;
  return {
    url,
    port,
    restart: async (mode, downMs = 0) => {
      const t0 = Date.now();
      await halt(mode);
      if (downMs) await sleep(downMs);
      await start();
      return Date.now() - t0;
    },
    stop: () => halt('immediate'),
    pids: () => {
      const p = pidOf();
      return p ? [p] : [];
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Schema registry: a private stand-in (schemas/registry-main.ts) with its own file, restartable

export interface PrivateRegistry {
  url: string;
  /** Stop the registry (SIGTERM or SIGKILL) and start it again on the same file; ms until it answers. */
  restart(signal: 'SIGTERM' | 'SIGKILL', downMs?: number): Promise<number>;
  stop(): Promise<void>;
  pids(): number[];
}

export async function startPrivateRegistry(dir: string, log: Logger): Promise<PrivateRegistry> {
  const port = await freePort();
  const file = join(dir, 'registry.json');
  const url = `http://127.0.0.1:${port}`;
  let child: ChildProcess | null = null;
  const start = async (): Promise<number> => {
    const t0 = Date.now();
    const out = join(dir, 'logs', 'registry.log');
    child = spawn('/bin/sh', ['-c', `exec "${process.execPath}" --import tsx schemas/registry-main.ts --port ${port} --file "${file}" >> "${out}" 2>&1`], { cwd: ROOT, stdio: 'ignore', env: { ...process.env, LOG_LEVEL: 'info' } });
    pidFile(dir, 'registry', child.pid);
    const c = child;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`private schema registry exited during start (see ${out})`);
      if (Date.now() - t0 > START_TIMEOUT_MS) throw new Error(`private schema registry not up after ${START_TIMEOUT_MS / 1000} s (see ${out})`);
      const ok = await fetch(`${url}/subjects`).then((r) => r.ok).catch(() => false);
      if (ok) break;
      await sleep(100);
    }
    return Date.now() - t0;
  };
  const halt = async (signal: 'SIGTERM' | 'SIGKILL') => {
    const c = child;
    child = null;
    if (c) await stopChild(c, signal, 15_000, 5000);
  };
  await start();
  log.debug({ url }, 'private schema registry up');
  return {
    url,
    restart: async (signal, downMs = 0) => {
      const t0 = Date.now();
      await halt(signal);
      if (downMs) await sleep(downMs);
      await start();
      return Date.now() - t0;
    },
    stop: () => halt('SIGTERM'),
    pids: () => ((child as ChildProcess | null)?.pid ? [(child as ChildProcess | null)!.pid!] : []),
  };
}
