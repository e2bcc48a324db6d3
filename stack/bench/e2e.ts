// End to end: signal published to RabbitMQ → order accepted at the simulator → first order event
// of that signal on RabbitMQ, at fixed offered loads, through the order manager in its own process
// (om-child.ts) against the simulator in its own process (sim-child.ts). Everything lives in a
// namespace of its own (topics, consumer groups, database, queues) and is removed afterwards.
//
// Timing: publish times are the *scheduled* send times (open loop, so a publisher that falls
// behind shows as latency rather than hiding it); the simulator stamps acceptance (createdTime);
// the driver stamps the order event's arrival. All three are Date.now() on one machine (ms).
// Per-hop shares come from the Kafka record timestamps (producer create time, carried per signal
// by the trace_id header across every hop) and from the runner's per-stage histograms.
//
// Delivery: a signal is delivered by its first *order* event: one whose signal_id is the signal's
// (an order it created), or whose Kafka record carries the signal's trace (an amend or a cancel it
// caused on an older order, whose events name that order's own signal). A signal_rejected event
// never delivers: rejections are counted apart, and a run with any is a failed run.
//
// Workload: buys and sells on every symbol the simulator serves, several strategies, sizes drawn
// from a range, with a per-symbol trading policy that takes all three order paths (spot market,
// spot limit resting in the book so that later signals amend or cancel it, linear market); see
// WORKLOAD.
import { queueArguments } from '../../connectors/amqp.ts';
import { parseConfig as signalBridgeConfig } from '../../connectors/signal-bridge.ts';
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'amqplib';
import { failTool, type KafkaPort } from '../../runtime/kafka.ts';
import { topicSpecs } from '../../runtime/topics.ts';
import { createDb, dropDatabase, ensureDatabase, sql, withDatabase, databaseName } from '../../runtime/db.ts';
import { migrate } from '../../runtime/migrate.ts';
import { orderLinkId } from '../../pipelines/risk-rules.ts';
import { DEFAULT_INSTRUMENTS } from '../../sim/instruments.ts';
import { z } from 'zod';
import { dist, type Dist } from './stats.ts';
import { cpuDeltaMs, orderManagerPart, resolveGroups, startCpuSampler, type CpuSnapshot } from './cpu.ts';
import { paths } from '../stack.ts';
import { loadConfig } from '../../runtime/config.ts';
import { UNIT_SCHEMAS } from '../services.ts';
import { mulberry32 } from '../seeded.ts';

/** With signals that only amended or cancelled still open, a run has drained once no event came for this long. */
const QUIET_MS = Number(process.env.BENCH_QUIET_MS ?? 1500);

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The children (order manager, simulator, model) run in the deployment form by default: compiled
 * (dist/, `npm run build:dist`) with plain node, without the tsx loader thread (~30 MB RSS on Node
 * 20) that the Dockerfile's image does not have either. BENCH_TSX=1: through tsx from the sources.
 */
export const BENCH_TSX = process.env.BENCH_TSX === '1';

/** Path of a bench child (`om-child`, `sim-child`, `model-child`) and the node flags it needs. */
export function benchChild(name: string): { file: string; execArgv: string[] } {
  return BENCH_TSX
    ? { file: join(ROOT, 'stack/bench', `${name}.ts`), execArgv: ['--import', 'tsx'] }
    : { file: join(ROOT, 'dist/stack/bench', `${name}.js`), execArgv: [] };
}

let built = false;
/** Compile dist/ once per bench process, so the children run the code of this checkout (no-op with BENCH_TSX=1). */
export function buildDistOnce(log: (line: string) => void): void {
  if (BENCH_TSX || built) return;
  log('compiling dist/ for the children (npm run build:dist; BENCH_TSX=1 runs them through tsx instead)');
  // tsc reports on stdout: to stderr here, where the bench logs (stdout carries its table).
  execFileSync(process.execPath, [join(ROOT, 'stack/build-dist.mjs')], { stdio: ['ignore', 2, 'inherit'], cwd: ROOT });
  built = true;
}

/** The Dockerfile ENTRYPOINT's node flags (the heap flags): the order manager runs as deployed. */
export function dockerfileNodeFlags(): string[] {
  const m = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
  if (!m) throw new Error('Dockerfile: no ENTRYPOINT in exec form');
  return (JSON.parse(m[1]!) as string[]).filter((a) => a.startsWith('--max-'));
}

/** A service child's node flags: the Dockerfile's heap flags, unless `envName` is set (even empty) to replace them. */
export function childNodeFlags(envName: 'BENCH_OM_NODE_FLAGS' | 'BENCH_MODEL_NODE_FLAGS'): string[] {
  const env = process.env[envName];
  return env !== undefined ? env.split(/\s+/).filter(Boolean) : dockerfileNodeFlags();
}

/**
 * BENCH_OM_PROCESSES: the order manager as one process (the `order-manager` service: what the
 * targets are about), or its units spread over 2 or 3 processes of UNIT_SERVICES (a deployment the
 * design allows: every stage is its own consumer group and transactional producer), to see how
 * much of the latency is the one event loop, and (5) what each part costs: a split run reports each
 * process's CPU beside their sum (`orderManagerPart` in cpu.ts).
 */
export const OM_SPLITS: Record<number, string[][]> = {
  1: [[]],
  2: [
    ['signal-bridge', 'signal-decide'],
    ['events-out', 'exchange-streams', 'place', 'track', 'ops'],
  ],
  3: [['signal-bridge', 'signal-decide'], ['place'], ['events-out', 'exchange-streams', 'track', 'ops']],
  5: [['signal-bridge', 'signal-decide'], ['place'], ['exchange-streams'], ['track'], ['events-out', 'ops']],
};
function omProcesses(): number {
  const n = Number(process.env.BENCH_OM_PROCESSES ?? 1);
  if (!OM_SPLITS[n]) throw new Error(`BENCH_OM_PROCESSES must be one of ${Object.keys(OM_SPLITS).join(', ')}`);
  return n;
}

/**
 * The hops a signal crosses, in order; each is "this topic's record time − the previous one".
 * `signal-decide` writes `signals.valid` (audit) and `orders.intents` in one transaction, so its hop
 * ends at the intent: a `signals.valid` hop would split one stage's time in two at an arbitrary point.
 */
export const HOPS = [
  ['signal-bridge', 'signals.raw'],
  ['signal-decide', 'orders.intents'],
  ['place', 'orders.submissions'],
  ['track', 'orders.events'],
] as const;
/** Every symbol the simulator serves (it lists each in spot and linear; a deployment trades a symbol in one category). */
export const ASSETS = [...new Set(DEFAULT_INSTRUMENTS.map((i) => i.symbol))].sort();

/**
 * What the bench offers (seeded per run: a run number always offers the same signals). Symbols in
 * turn, a strategy at random; each symbol and strategy keeps its side and turns to the other with
 * probability `flip` per signal (a model's signals come in runs; half buys, half sells overall);
 * sizes in whole USDT at random. The per-symbol policy sends each symbol down another path of the
 * order manager: BTCUSDT spot market orders (the default policy), ETHUSDT spot limit orders resting
 * `limitOffsetBps` behind the touch (a later signal of the same strategy and side amends the open
 * order, one of the other side cancels it first), SOLUSDT linear market orders (a position, margin,
 * reduce-only orders against it). A signal of the other side also cancels the strategy's market
 * orders still in flight on that symbol (risk cannot know they will fill first; the exchange then
 * answers order_not_exists). Sizes stay inside every instrument's minimums; the simulator's account
 * holds enough of each coin for the sells (sim-child.ts).
 */
export const WORKLOAD = {
  strategies: 8,
  flip: 0.3,
  amountUsdt: [20, 80] as const,
  limitOffsetBps: 50,
  env: {
    RISK_CATEGORY: JSON.stringify({ '*': 'spot', SOLUSDT: 'linear' }),
    RISK_ORDER_TYPE: JSON.stringify({ '*': 'market', ETHUSDT: 'limit' }),
    RISK_LIMIT_OFFSET_BPS: JSON.stringify({ '*': 0, ETHUSDT: 50 }),
  },
};


/**
 * BENCH_OM_LEAN=1: the order manager as the bench ran it before (logs at warn, discarded in the
 * process; no default process metrics). By default it runs as deployed: logs at info written to
 * its stdout (a file here), prom-client's default metrics collected.
 */
export const OM_LEAN = process.env.BENCH_OM_LEAN === '1';

export interface RunResult {
  rate: number;
  offered: number;
  /** Signals with an order event of their own (see the header). */
  delivered: number;
  /** Signals refused with a signal_rejected event (by validation or risk), and why. */
  rejected: number;
  rejectReasons: Record<string, number>;
  /** Delivered, nothing rejected. */
  ok: boolean;
  /** Undelivered signals by what risk decided for them (`create+cancel`, `amend`, … or `none`). */
  undelivered: Record<string, number>;
  /** Order events in which the exchange refused a create, an amend or a cancel, by kind (not failures: see docs/performance.md). */
  exchangeRefusals: Record<string, number>;
  achievedRate: number;
  e2e: Dist;
  /** The e2e samples themselves, for pooling over runs. */
  e2eSamples: number[];
  /** What was offered and what risk made of it: sides, symbols, decisions by action (decisions table). */
  mix: { buy: number; sell: number; bySymbol: Record<string, number>; decisions: Record<string, number>; withoutOwnOrder: number };
  /** Order event kinds seen during the run (`type` or `type:reason_code`). */
  eventTypes: Record<string, number>;
  /** CPU ms per service over the window (first publish → the sample after the last event), and its length. */
  cpuMs: Record<string, number>;
  windowMs: number;
  toAccepted: Dist;
  toAcceptedSamples: number[];
  acceptedToEvent: Dist;
  /** Median ms per hop (record time of the hop's output − the previous hop's). */
  hops: Record<string, number>;
  /** The slowest signals (2 %, at least 3) with their own order event, each with its ms per hop: where a tail comes from. */
  hopTail: Array<{ e2e: number; hops: Record<string, number> }>;
  /** Runner histograms over the run: mean ms per batch and per record, by stage. */
  stageBatchMs: Record<string, { batches: number; meanMs: number; perRecordMeanMs: number }>;
  /** Timed in the order-manager process: Kafka transaction steps by stage, database calls by method (count, total ms, mean ms). */
  profile: Record<string, { n: number; totalMs: number; meanMs: number }>;
  /** Kafka requests the order manager made during the run (first publish to drain), by API. */
  kafkaRequests: Record<string, number>;
  /** process.memoryUsage() of the order-manager process at the end of the run, MB. */
  omMemoryMb?: Record<string, number>;
}

type Acc = Record<string, { n: number; ms: number }>;
interface MetricsAnswer {
  metrics: MetricJson;
  txTime: Acc;
  dbTime: Acc;
  memory?: NodeJS.MemoryUsage;
}

function accDelta(prefix: string, a: Acc, b: Acc, out: RunResult['profile']): void {
  for (const [k, v] of Object.entries(b)) {
    const n = v.n - (a[k]?.n ?? 0);
    const ms = v.ms - (a[k]?.ms ?? 0);
    if (n > 0) out[`${prefix}${k}`] = { n, totalMs: Math.round(ms), meanMs: Math.round((ms / n) * 1000) / 1000 };
  }
}

interface Child {
  proc: ChildProcess;
  ask<T>(type: string, extra?: Record<string, unknown>): Promise<T>;
  next<T>(type: string, timeoutMs: number): Promise<T>;
  peakRssMb(): number;
  stop(): Promise<void>;
}

function startChild(file: string, env: Record<string, string>, nodeFlags: string[] = [], stdoutFile?: string): Child {
  const child = benchChild(file);
  // A service's logs go to its stdout as deployed; here into a file (stdout carries the bench's table).
  const out = stdoutFile ? openSync(stdoutFile, 'w') : 'inherit';
  const proc = fork(child.file, [], { execArgv: [...nodeFlags, ...child.execArgv], env: { ...process.env, ...env }, stdio: ['ignore', out, 'inherit', 'ipc'] });
  if (typeof out === 'number') closeSync(out);
  const waiters: Array<{ type: string; resolve: (m: unknown) => void }> = [];
  proc.on('message', (m: { type: string }) => {
    const i = waiters.findIndex((w) => w.type === m.type);
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(m);
  });
  let peak = 0;
  const readRss = () => {
    try {
      const s = readFileSync(`/proc/${proc.pid}/status`, 'utf8');
      peak = Math.max(peak, Number(/VmHWM:\s+(\d+)/.exec(s)?.[1] ?? 0) / 1024);
    } catch {
      /* gone */
    }
  };
  const next = <T>(type: string, timeoutMs: number) =>
    new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${file}: no ${type} within ${timeoutMs} ms`)), timeoutMs);
      const onExit = (code: number | null) => reject(new Error(`${file} exited (${code}) waiting for ${type}`));
      proc.once('exit', onExit);
      waiters.push({
        type,
        resolve: (m) => {
          clearTimeout(t);
          proc.off('exit', onExit);
          resolve(m as T);
        },
      });
    });
  return {
    proc,
    next,
    ask: <T>(type: string, extra: Record<string, unknown> = {}) => {
      const p = next<T>(type, 60_000);
      proc.send({ type, ...extra });
      return p;
    },
    peakRssMb: () => (readRss(), Math.round(peak)),
    stop: async () => {
      readRss();
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.send({ type: 'stop' });
      await Promise.race([exited, sleep(20_000)]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
    },
  };
}

type MetricJson = Array<{ name: string; values: Array<{ labels: Record<string, string>; value: number; metricName?: string }> }>;

/** A histogram's sum and count by one label, summed over the processes' metrics. */
function histTotals(metrics: MetricJson, name: string, label = 'stage'): Map<string, { sum: number; count: number }> {
  const out = new Map<string, { sum: number; count: number }>();
  for (const v of metrics.filter((m) => m.name === name).flatMap((m) => m.values)) {
    const key = v.labels[label] ?? '';
    const e = out.get(key) ?? { sum: 0, count: 0 };
    if (v.metricName === `${name}_sum`) e.sum += v.value;
    else if (v.metricName === `${name}_count`) e.count += v.value;
    out.set(key, e);
  }
  return out;
}

export interface E2eOptions {
  kafka: KafkaPort;
  amqpUrl: string;
  databaseUrl: string;
  log: (line: string) => void;
  /** Swap placement's client-side Bybit limiter (16 creates/s) for a relaxed one. Default true. */
  relaxClientLimiter?: boolean;
}

/** An idle window measured by `E2eBench.idle`. */
export interface IdleWindow {
  seconds: number;
  cpuMs: Record<string, number>;
  kafkaRequests: Record<string, number>;
}

/** The idle window as reported (reports/bench.json's `idle`, the probe's line): % of one core, requests a second. */
export function idleFigures(idle: IdleWindow): { seconds: number; cpu_pct_of_one_core: Record<string, number>; kafka_requests_per_s: Record<string, number> } {
  return {
    seconds: Math.round(idle.seconds * 10) / 10,
    cpu_pct_of_one_core: Object.fromEntries(Object.entries(idle.cpuMs).map(([k, ms]) => [k, Math.round((ms / (idle.seconds * 1000)) * 10_000) / 100])),
    kafka_requests_per_s: Object.fromEntries(Object.entries(idle.kafkaRequests).map(([k, v]) => [k, Math.round((v / idle.seconds) * 10) / 10])),
  };
}

export interface E2eBench {
  /** Offer `rate` signals/s for `seconds`, then wait (at most drainMs) until each has its first order event. */
  run(rate: number, seconds: number, drainMs?: number): Promise<RunResult>;
  /** No signals for `seconds`: CPU ms per service and the order manager's Kafka requests by API over that window. */
  idle(seconds: number): Promise<IdleWindow>;
  /** Pids of the order-manager processes (for a profile from outside). */
  omPids: number[];
  /** Fill each run's per-hop medians from the Kafka record timestamps (after the runs: no load then). */
  fillHops(runs: RunResult[]): Promise<void>;
  rss(): Record<string, number>;
  units: string[];
  close(): Promise<void>;
}

export async function startE2e(o: E2eOptions): Promise<E2eBench> {
  buildDistOnce(o.log); // before anything is created that would need removing
  const ns = randomBytes(4).toString('hex');
  const prefix = `bench-${ns}.`;
  const signalsQueue = `bench.${ns}.trading_signals`;
  const eventsQueue = `bench.${ns}.order_events`;
  const dbUrl = withDatabase(o.databaseUrl, `bench_${ns}`);
  // The deployment's settings as the services parse them (the children inherit this environment);
  // TOPIC_PARTITIONS (default 3) sets the bench's keyed topics too. With 1, every chunk of a stage holds whatever arrived on the topic and
  // commits in one transaction: what one transaction across partitions (KIP-447, which kafkajs
  // lacks) would give one instance, measured without building it.
  const cfg = loadConfig(process.env, UNIT_SCHEMAS);
  const admin = o.kafka.admin();
  await admin.connect();
  const specs = topicSpecs(prefix, cfg.TOPIC_PARTITIONS);
  await admin.ensureTopics(specs);
  await ensureDatabase(dbUrl);
  const pool = await createDb(dbUrl);
  await migrate(pool);
  await pool.end();
  // The driver's own connection: what risk decided per signal, and which backends are the order
  // manager's (its own backend is left out by its application name).
  const driverDb = await createDb(dbUrl, { maximumPoolSize: 1, applicationName: 'bench-driver' });

  const conn = await connect(o.amqpUrl);
  const pub = await conn.createConfirmChannel();
  // As the model service declares it: with the signal bridge's length limits.
  const bridge = signalBridgeConfig(process.env);
  await pub.assertQueue(signalsQueue, { durable: true, arguments: queueArguments({ maxLength: bridge.SIGNALS_QUEUE_MAX_LENGTH, maxBytes: bridge.SIGNALS_QUEUE_MAX_BYTES }) });
  const sub = await conn.createChannel();
  await sub.assertQueue(eventsQueue, { durable: true });
  await sub.prefetch(2000);

  const omFlags = childNodeFlags('BENCH_OM_NODE_FLAGS');
  o.log(`order manager child: node ${[...omFlags, ...benchChild('om-child').execArgv].join(' ')} ${benchChild('om-child').file} (${OM_LEAN ? 'BENCH_OM_LEAN=1: logs at warn, discarded; default metrics off' : 'as deployed: logs at info to stdout, default metrics on'})`);
  const sim = startChild('sim-child', {});
  const simInfo = await sim.next<{ port: number; key: string; secret: string }>('ready', 60_000);
  const big = '1000000000000';
  const split = OM_SPLITS[omProcesses()]!;
  const omEnv = {
    TOPIC_PREFIX: prefix,
    DATABASE_URL: dbUrl,
    ADMIN_PORT: '0',
    LOG_LEVEL: OM_LEAN ? 'warn' : 'info',
    METRICS_DEFAULTS: OM_LEAN ? 'false' : 'true',
    BENCH_OM_LOGS: OM_LEAN ? 'discard' : 'stdout',
    BYBIT_ENV: 'sim',
    BYBIT_SIM_PORT: String(simInfo.port),
    BYBIT_API_KEY: simInfo.key,
    BYBIT_API_SECRET: simInfo.secret,
    SIGNALS_QUEUE: signalsQueue,
    ORDER_EVENTS_QUEUE: eventsQueue,
    EXCHANGE_STREAM_SOURCE: 'direct',
    ASSETS: ASSETS.join(','),
    ...WORKLOAD.env,
    // Risk limits far away: the bench measures the path, not the refusals (a refusal fails the run).
    RISK_MAX_ORDER_NOTIONAL: big,
    RISK_WARMUP_MAX_ORDER_NOTIONAL: big,
    RISK_MAX_POSITION_NOTIONAL: big,
    RISK_MAX_TOTAL_EXPOSURE: big,
    RISK_MAX_OPEN_ORDERS: '1000000',
    RISK_MAX_OPEN_ORDERS_PER_ASSET: '1000000',
    RISK_DAILY_LOSS_REDUCE: big,
    RISK_DAILY_LOSS_HALT: big,
    RISK_PRICE_BAND_BPS: '5000',
    RISK_MIN_CONFIDENCE: '0',
    // Every signal must become its own order for the per-signal latency to exist: coalescing of
    // intents queued in one chunk (a newer create for the same asset and strategy supersedes an
    // older unsent one) is switched off.
    PLACE_COALESCE: 'false',
    // The client-side Bybit limiter relaxed ×1000 through its setting (simulator only), matching the
    // simulator's ×1000 limits; the production limiter caps placement at 16 creates/s.
    BYBIT_RATE_LIMIT_MULTIPLIER: o.relaxClientLimiter === false ? '1' : '1000',
    RECONCILE_CRON: '0 0 1 1 *',
  };
  const logDir = join(ROOT, 'reports');
  mkdirSync(logDir, { recursive: true });
  const oms = split.map((units, k) =>
    startChild('om-child', { ...omEnv, BENCH_OM_UNITS: units.join(',') }, omFlags, OM_LEAN ? undefined : join(logDir, `bench-order-manager${split.length > 1 ? `-${k + 1}` : ''}.log`)),
  );
  const started = { units: (await Promise.all(oms.map((c) => c.next<{ units: string[] }>('started', 180_000)))).flatMap((s) => s.units) };
  for (const om of oms) {
    for (let i = 0; ; i++) {
      const r = await om.ask<{ ready: boolean; checks: unknown }>('readiness');
      if (r.ready) break;
      if (i > 600) throw new Error(`order manager not ready: ${JSON.stringify(r.checks)}`);
      await sleep(200);
    }
  }
  // The order manager's metrics, summed over its processes (stages are in one process each).
  const omMetrics = async (): Promise<MetricsAnswer> => {
    const all = await Promise.all(oms.map((c) => c.ask<MetricsAnswer>('metrics')));
    const sum = (accs: Acc[]): Acc => {
      const out: Acc = {};
      for (const a of accs) for (const [k, v] of Object.entries(a)) out[k] = { n: (out[k]?.n ?? 0) + v.n, ms: (out[k]?.ms ?? 0) + v.ms };
      return out;
    };
    return { metrics: all.flatMap((a) => a.metrics), txTime: sum(all.map((a) => a.txTime)), dbTime: sum(all.map((a) => a.dbTime)), memory: all.length === 1 ? all[0]!.memory : undefined };
  };
  const requestsBetween = (before: MetricsAnswer, after: MetricsAnswer): Record<string, number> => {
    const q0 = histTotals(before.metrics, 'kafka_request_duration_seconds', 'api');
    return Object.fromEntries([...histTotals(after.metrics, 'kafka_request_duration_seconds', 'api')].map(([api, q]) => [api, q.count - (q0.get(api)?.count ?? 0)]).filter(([, n]) => (n as number) > 0));
  };
  const stack = paths(cfg);
  const groups = () =>
    resolveGroups({
      children: {
        'order-manager': oms.map((c) => c.proc.pid!),
        ...(oms.length > 1 ? Object.fromEntries(oms.map((c, k) => [orderManagerPart(split[k]!), [c.proc.pid!]])) : {}),
        simulator: [sim.proc.pid!],
      },
      kafkaPidFile: stack.kafkaPid,
      registryPidFile: stack.registryPid,
      pg: driverDb,
      benchDatabase: databaseName(dbUrl),
    });

  // Order events as they arrive on RabbitMQ. Each arrival keeps where its Kafka record is
  // (the bridge's headers), so that an amend's or a cancel's event can be traced to its signal.
  interface Arrival { at: number; signalId: string | null; partition: number; offset: string; kind: string; orderLinkId: string | null; qty: number; price: number }
  const arrivals: Arrival[] = [];
  const firstOwnEvent = new Map<string, number>();
  /** Where on orders.events the first own event of a signal came from (`partition/offset`). */
  const firstOwnRecord = new Map<string, string>();
  const rejectedBy = new Map<string, string>();
  let lastArrival = 0;
  await sub.consume(
    eventsQueue,
    (m) => {
      if (!m) return;
      const at = Date.now();
      lastArrival = at;
      try {
        const e = JSON.parse(m.content.toString()) as { signal_id?: string | null; event_type?: string; reason_code?: string | null; order_link_id?: string | null; qty?: string | null; price?: string | null };
        const terms = { orderLinkId: e.order_link_id ?? null, qty: Number(e.qty ?? NaN), price: Number(e.price ?? NaN) };
        const kind = e.reason_code ? `${e.event_type}:${e.reason_code}` : (e.event_type ?? '?');
        const h = (m.properties.headers ?? {}) as Record<string, unknown>;
        if (e.event_type === 'signal_rejected') {
          if (e.signal_id && !rejectedBy.has(e.signal_id)) rejectedBy.set(e.signal_id, e.reason_code ?? '?');
          arrivals.push({ at, signalId: e.signal_id ?? null, partition: -1, offset: '', kind, ...terms });
          return;
        }
        arrivals.push({ at, signalId: e.signal_id ?? null, partition: Number(h.kafka_partition ?? -1), offset: String(h.kafka_offset ?? ''), kind, ...terms });
        if (e.signal_id && !firstOwnEvent.has(e.signal_id)) {
          firstOwnEvent.set(e.signal_id, at);
          firstOwnRecord.set(e.signal_id, `${String(h.kafka_partition)}/${String(h.kafka_offset)}`);
        }
      } catch {
        /* not ours */
      }
    },
    { noAck: true },
  );

  /** The trace_id header of the orders.events records at these offsets (read after a run, outside its window). */
  const tracesAt = async (want: Map<number, Set<string>>): Promise<Map<string, string>> => {
    const out = new Map<string, string>();
    if (want.size === 0) return out;
    const topic = `${prefix}orders.events`;
    const consumer = o.kafka.consumer({ groupId: `${prefix}bench-traces-${randomBytes(3).toString('hex')}`, readCommitted: true, onFatal: failTool('bench trace reader') });
    const missing = () => [...want].some(([p, offs]) => [...offs].some((off) => !out.has(`${p}/${off}`)));
    await consumer.connect();
    await consumer.subscribe([topic], false);
    await consumer.run(async (batch, ctl) => {
      for (const msg of batch.messages) {
        if (want.get(batch.partition)?.has(msg.offset)) out.set(`${batch.partition}/${msg.offset}`, msg.headers['trace_id'] ?? '');
        ctl.resolveOffset(msg.offset);
      }
    });
    for (const [p, offs] of want) consumer.seek(topic, p, [...offs].reduce((m, x) => (BigInt(x) < BigInt(m) ? x : m)));
    // Every wanted record was committed (the bridge reads committed records only), so it comes.
    const until = Date.now() + 30_000;
    while (missing() && Date.now() < until) await sleep(50);
    await consumer.disconnect();
    return out;
  };

  const decisionRows = z.object({ signal_id: z.string(), action: z.string(), order_link_id: z.string().nullable(), qty: z.string().nullable(), price: z.string().nullable() });
  let runNo = 0;
  const sentOf = new Map<RunResult, Array<{ id: string; trace: string; at: number }>>();
  const run = async (rate: number, seconds: number, drainMs = 90_000): Promise<RunResult> => {
    runNo++;
    const { prices } = await sim.ask<{ prices: Record<string, string> }>('prices');
    const n = Math.round(rate * seconds);
    const rnd = mulberry32(runNo); // the same run number offers the same signals
    const sideOf = new Map<string, 'buy' | 'sell'>();
    const sent: Array<{ id: string; trace: string; at: number }> = [];
    const mix: RunResult['mix'] = { buy: 0, sell: 0, bySymbol: {}, decisions: {}, withoutOwnOrder: 0 };
    const fromArrival = arrivals.length;
    const cpuGroups = await groups();
    const before = await omMetrics();
    const sampler = startCpuSampler(cpuGroups);
    const t0 = Date.now() + 50;
    let i = 0;
    while (i < n) {
      const now = Date.now();
      // Everything due by now goes out; the recorded time is when it was due (open loop).
      while (i < n && t0 + (i * 1000) / rate <= now) {
        const due = Math.round(t0 + (i * 1000) / rate);
        const asset = ASSETS[i % ASSETS.length]!;
        const strategy = `bench-${1 + Math.floor(rnd() * WORKLOAD.strategies)}`;
        const lane = `${asset}/${strategy}`;
        const prev = sideOf.get(lane);
        const side = prev === undefined ? (rnd() < 0.5 ? 'buy' : 'sell') : rnd() < WORKLOAD.flip ? (prev === 'buy' ? 'sell' : 'buy') : prev;
        sideOf.set(lane, side);
        const [lo, hi] = WORKLOAD.amountUsdt;
        // Whole USDT: the simulator checks a quote amount's decimals in floating point and refuses
        // some two-decimal amounts (37.45 / 1e-8 is not an integer in doubles): its flaw, not ours.
        const amount = lo + Math.floor(rnd() * (hi - lo + 1));
        const id = randomUUID();
        const trace = `b${runNo}-${i}`;
        const body = {
          signal_id: id,
          signal_type: side,
          asset,
          amount,
          confidence: 0.9,
          timestamp: new Date(due).toISOString(),
          strategy_id: strategy,
          model_version: null,
          is_warmup: false,
          market_data_snapshot: { price: Number(prices[asset] ?? 0) || 1, spread: 0.01, volume_24h: 1e6, volatility: 0.02, orderbook_depth: null, technical_indicators: null },
          metadata: { reasoning: 'bench', risk_score: 0.1, randomness_level: 0 },
          trace_id: trace,
        };
        pub.sendToQueue(signalsQueue, Buffer.from(JSON.stringify(body)), { persistent: true, messageId: id, contentType: 'application/json' });
        sent.push({ id, trace, at: due });
        mix[side]++;
        mix.bySymbol[asset] = (mix.bySymbol[asset] ?? 0) + 1;
        i++;
      }
      await sleep(1);
    }
    await pub.waitForConfirms();
    const publishedBy = Date.now();
    // Drained: every signal has an order event of its own or was rejected; a signal that only
    // amended or cancelled an older order is told apart only afterwards (from the Kafka record), so
    // with such signals outstanding the run ends once no event has come for QUIET_MS.
    const until = Date.now() + drainMs;
    const open = () => sent.some((s) => !firstOwnEvent.has(s.id) && !rejectedBy.has(s.id));
    while (open() && Date.now() < until && !(Date.now() - Math.max(lastArrival, publishedBy) > QUIET_MS)) await sleep(50);
    const after = await omMetrics();
    sampler.stop();
    const { orders } = await sim.ask<{ orders: Array<[string, number]> }>('orders');
    const accepted = new Map(orders);

    // Attribution, outside the window: an order event is a signal's when it names the signal or
    // its Kafka record carries the signal's trace.
    const runArrivals = arrivals.slice(fromArrival).filter((a) => a.partition >= 0);
    const want = new Map<number, Set<string>>();
    for (const a of runArrivals) (want.get(a.partition) ?? want.set(a.partition, new Set()).get(a.partition)!).add(a.offset);
    const traces = await tracesAt(want);
    const byTrace = new Map<string, number>();
    for (const a of runArrivals) {
      const t = traces.get(`${a.partition}/${a.offset}`);
      if (t && !byTrace.has(t)) byTrace.set(t, a.at);
    }
    const eventTypes: Record<string, number> = {};
    for (const a of arrivals.slice(fromArrival)) eventTypes[a.kind] = (eventTypes[a.kind] ?? 0) + 1;
    const amendOf = new Map<string, { orderLinkId: string; qty: number; price: number }>();
    const creates = new Set<string>();
    const actions = new Map<string, string[]>();
    for (const r of await driverDb.any(sql.type(decisionRows)`
      SELECT signal_id::text, action, order_link_id, output->'value'->>'qty' AS qty, output->'value'->>'price' AS price
      FROM decisions WHERE signal_id = ANY(${sql.array(sent.map((s) => s.id), 'uuid')})`)) {
      mix.decisions[r.action] = (mix.decisions[r.action] ?? 0) + 1;
      (actions.get(r.signal_id) ?? actions.set(r.signal_id, []).get(r.signal_id)!).push(r.action);
      if (r.action === 'create') creates.add(r.signal_id);
      if (r.action === 'amend' && r.order_link_id) amendOf.set(r.signal_id, { orderLinkId: r.order_link_id, qty: Number(r.qty), price: Number(r.price) });
    }
    // An amend whose REST answer reached tracking after the exchange's push (or while an earlier
    // amend of the order was still pending, or after a fill) has no event with its trace: the
    // stream's events carry none. Its event is then the first of the target order after the
    // signal that shows the amend's new terms (quantity and price): order_amended, or a fill.
    const used = new Set<Arrival>();
    for (const s of sent) {
      const a = amendOf.get(s.id);
      if (!a || creates.has(s.id) || firstOwnEvent.has(s.id) || byTrace.has(s.trace)) continue;
      const ev = runArrivals.find((x) => !used.has(x) && x.at >= s.at && x.orderLinkId === a.orderLinkId && x.qty === a.qty && x.price === a.price);
      if (ev) {
        used.add(ev);
        byTrace.set(s.trace, ev.at);
      }
    }

    const e2e: number[] = [];
    const toAcc: number[] = [];
    const accToEv: number[] = [];
    const rejectReasons: Record<string, number> = {};
    const undelivered: Record<string, number> = {};
    let lastEvent = 0;
    for (const s of sent) {
      const own = firstOwnEvent.get(s.id);
      const traced = byTrace.get(s.trace);
      const ev = own === undefined ? traced : traced === undefined ? own : Math.min(own, traced);
      const acc = accepted.get(orderLinkId('om', s.id));
      if (own === undefined && traced !== undefined) mix.withoutOwnOrder++;
      const why = rejectedBy.get(s.id);
      if (why) rejectReasons[why] = (rejectReasons[why] ?? 0) + 1;
      if (ev !== undefined) {
        e2e.push(ev - s.at);
        lastEvent = Math.max(lastEvent, ev);
      } else if (!why) {
        const k = [...new Set(actions.get(s.id) ?? ['none'])].sort().join('+');
        undelivered[k] = (undelivered[k] ?? 0) + 1;
      }
      if (acc !== undefined) toAcc.push(acc - s.at);
      if (ev !== undefined && acc !== undefined) accToEv.push(ev - acc);
    }
    const rejected = Object.values(rejectReasons).reduce((a, b) => a + b, 0);
    // The window ends at the first CPU sample after the run's last event (or at the drain).
    const end: CpuSnapshot = sampler.atOrAfter(lastEvent || publishedBy);
    const cpuMs = cpuDeltaMs(sampler.first, end);
    const stageBatchMs: RunResult['stageBatchMs'] = {};
    const b0 = histTotals(before.metrics, 'pipeline_stage_batch_seconds');
    const b1 = histTotals(after.metrics, 'pipeline_stage_batch_seconds');
    const r0 = histTotals(before.metrics, 'pipeline_stage_processing_seconds');
    const r1 = histTotals(after.metrics, 'pipeline_stage_processing_seconds');
    for (const [stage, v] of b1) {
      const p = b0.get(stage) ?? { sum: 0, count: 0 };
      const rr1 = r1.get(stage) ?? { sum: 0, count: 0 };
      const rr0 = r0.get(stage) ?? { sum: 0, count: 0 };
      const batches = v.count - p.count;
      if (batches <= 0) continue;
      stageBatchMs[stage] = {
        batches,
        meanMs: Math.round(((v.sum - p.sum) / batches) * 1e6) / 1e3,
        perRecordMeanMs: rr1.count > rr0.count ? Math.round(((rr1.sum - rr0.sum) / (rr1.count - rr0.count)) * 1e6) / 1e3 : 0,
      };
    }
    const profile: RunResult['profile'] = {};
    accDelta('kafka tx ', before.txTime, after.txTime, profile);
    accDelta('db ', before.dbTime, after.dbTime, profile);
    const span = Math.max(1, (lastEvent || publishedBy) - t0);
    const result: RunResult = {
      rate,
      offered: n,
      delivered: e2e.length,
      rejected,
      rejectReasons,
      ok: e2e.length === n && rejected === 0,
      undelivered,
      exchangeRefusals: Object.fromEntries(Object.entries(eventTypes).filter(([k]) => /^order_(submit_failed|rejected|amend_rejected|cancel_rejected)/.test(k))),
      achievedRate: Math.round((e2e.length / span) * 1000),
      e2e: dist(e2e),
      e2eSamples: e2e,
      mix,
      eventTypes,
      cpuMs,
      windowMs: end.at - sampler.first.at,
      toAccepted: dist(toAcc),
      toAcceptedSamples: toAcc,
      acceptedToEvent: dist(accToEv),
      hops: {},
      hopTail: [],
      stageBatchMs,
      kafkaRequests: requestsBetween(before, after),
      profile,
      omMemoryMb: after.memory ? Object.fromEntries(Object.entries(after.memory).map(([k, v]) => [k, Math.round(v / 1048576)])) : undefined,
    };
    sentOf.set(result, sent);
    return result;
  };

  const idle = async (seconds: number) => {
    const cpuGroups = await groups();
    const before = await omMetrics();
    const sampler = startCpuSampler(cpuGroups, 5_000);
    await sleep(seconds * 1000);
    const end = sampler.stop();
    const after = await omMetrics();
    return { seconds: (end.at - sampler.first.at) / 1000, cpuMs: cpuDeltaMs(sampler.first, end), kafkaRequests: requestsBetween(before, after) };
  };

  /** Per-hop medians from the record timestamps of every topic, filled into the runs afterwards. */
  const fillHops = async (runs: RunResult[]) => {
    const stamps = new Map<string, Map<string, number>>(HOPS.map(([, t]) => [t, new Map()]));
    // orders.events record times by partition/offset: the bridge's hop is measured on the very
    // record an event came from (a fill from the stream carries no trace).
    const eventRecordAt = new Map<string, number>();
    const topics = HOPS.map(([, t]) => prefix + t);
    const ends = new Map<string, bigint>();
    for (const t of topics) for (const e of await admin.topicOffsets(t)) ends.set(`${t}/${e.partition}`, BigInt(e.high));
    const consumer = o.kafka.consumer({ groupId: `${prefix}bench-hops`, readCommitted: false, onFatal: failTool('bench hops reader') });
    const seen = new Map<string, bigint>();
    await consumer.connect();
    await consumer.subscribe(topics, true);
    let last = Date.now();
    await consumer.run(async (batch, ctl) => {
      const logical = batch.topic.slice(prefix.length);
      const m = stamps.get(logical)!;
      for (const msg of batch.messages) {
        const trace = msg.headers['trace_id'];
        if (trace && !m.has(trace)) m.set(trace, msg.timestamp);
        if (logical === 'orders.events') eventRecordAt.set(`${batch.partition}/${msg.offset}`, msg.timestamp);
        seen.set(`${batch.topic}/${batch.partition}`, BigInt(msg.offset) + 1n);
        ctl.resolveOffset(msg.offset);
      }
      last = Date.now();
    });
    const done = () => [...ends].every(([k, high]) => high === 0n || (seen.get(k) ?? 0n) >= high);
    while (!done() && Date.now() - last < 5000) await sleep(100);
    await consumer.disconnect();
    for (const r of runs) {
      const sent = sentOf.get(r) ?? [];
      const per: Record<string, number[]> = {};
      const whole: Array<{ e2e: number; hops: Record<string, number> }> = [];
      for (const s of sent) {
        const mine: Record<string, number> = {};
        let prev = s.at;
        for (const [hop, t] of HOPS) {
          const ts = stamps.get(t)!.get(s.trace);
          if (ts === undefined) break;
          (per[hop] ??= []).push(ts - prev);
          mine[hop] = ts - prev;
          prev = ts;
        }
        const ev = firstOwnEvent.get(s.id);
        const evTs = eventRecordAt.get(firstOwnRecord.get(s.id) ?? '');
        if (ev !== undefined && evTs !== undefined) {
          (per['events-out-bridge'] ??= []).push(ev - evTs);
          mine['events-out-bridge'] = ev - evTs;
        }
        if (ev !== undefined) whole.push({ e2e: ev - s.at, hops: mine });
      }
      r.hops = Object.fromEntries(Object.entries(per).map(([k, xs]) => [k, dist(xs).p50]));
      r.hopTail = whole.sort((a, b) => b.e2e - a.e2e).slice(0, Math.max(3, Math.ceil(whole.length * 0.02)));
    }
  };

  return {
    units: started.units,
    omPids: oms.map((c) => c.proc.pid!),
    run,
    idle,
    rss: () => ({ ...(oms.length === 1 ? { 'order-manager': oms[0]!.peakRssMb() } : Object.fromEntries(oms.map((c, k) => [orderManagerPart(split[k]!), c.peakRssMb()]))), simulator: sim.peakRssMb() }),
    close: async () => {
      const kinds: Record<string, number> = {};
      for (const a of arrivals) kinds[a.kind] = (kinds[a.kind] ?? 0) + 1;
      o.log(`order event types seen: ${JSON.stringify(kinds)}`);
      for (const om of oms) await om.stop();
      await sim.stop();
      await sub.deleteQueue(eventsQueue).catch(() => {});
      await pub.deleteQueue(signalsQueue).catch(() => {});
      await conn.close().catch(() => {});
      await admin.deleteTopics(specs.map((s) => s.topic)).catch(() => {});
      await admin.disconnect();
      await driverDb.end().catch(() => {});
      await dropDatabase(dbUrl).catch(() => {});
    },
    fillHops,
  };
}
