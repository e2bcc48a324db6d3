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
import { queueArguments } from '../../connectors/amqp.ts';
import { parseConfig as signalBridgeConfig } from '../../connectors/signal-bridge.ts';
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'amqplib';
import { failTool, type KafkaPort } from '../../runtime/kafka.ts';
import { topicSpecs } from '../../runtime/topics.ts';
import { createDb, dropDatabase, ensureDatabase, withDatabase } from '../../runtime/db.ts';
import { migrate } from '../../runtime/migrate.ts';
import { orderLinkId } from '../../pipelines/risk-rules.ts';
import { dist, type Dist } from './floor.ts';

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
 * much of the latency is the one event loop.
 */
const OM_SPLITS: Record<number, string[][]> = {
  1: [[]],
  2: [
    ['signal-bridge', 'validate', 'size-risk'],
    ['events-out', 'exchange-streams', 'place', 'track', 'ops'],
  ],
  3: [['signal-bridge', 'validate', 'size-risk'], ['place'], ['events-out', 'exchange-streams', 'track', 'ops']],
};
function omProcesses(): number {
  const n = Number(process.env.BENCH_OM_PROCESSES ?? 1);
  if (!OM_SPLITS[n]) throw new Error(`BENCH_OM_PROCESSES must be one of ${Object.keys(OM_SPLITS).join(', ')}`);
  return n;
}

/** The hops a signal crosses, in order; each is "this topic's record time − the previous one". */
export const HOPS = [
  ['signal-bridge', 'signals.raw'],
  ['validate', 'signals.valid'],
  ['size-risk', 'orders.intents'],
  ['place', 'orders.submissions'],
  ['track', 'orders.events'],
] as const;
const ASSETS = ['BTCUSDT', 'ETHUSDT', 'SOLUSDT'];

export interface RunResult {
  rate: number;
  offered: number;
  delivered: number;
  achievedRate: number;
  e2e: Dist;
  toAccepted: Dist;
  acceptedToEvent: Dist;
  /** Median ms per hop (record time of the hop's output − the previous hop's). */
  hops: Record<string, number>;
  /** Runner histograms over the run: mean ms per batch and per record, by stage. */
  stageBatchMs: Record<string, { batches: number; meanMs: number; perRecordMeanMs: number }>;
  /** Timed in the order-manager process: Kafka transaction steps by stage, database calls by method (count, total ms, mean ms). */
  profile: Record<string, { n: number; totalMs: number; meanMs: number }>;
  /** Kafka requests the order manager made during the run (warm-up and drain included), by API. */
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

function startChild(file: string, env: Record<string, string>, nodeFlags: string[] = []): Child {
  const child = benchChild(file);
  const proc = fork(child.file, [], { execArgv: [...nodeFlags, ...child.execArgv], env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
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

export interface E2eBench {
  /** Offer `rate` signals/s for `seconds`, then wait (at most drainMs) until each has its first order event. */
  run(rate: number, seconds: number, drainMs?: number): Promise<RunResult>;
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
  const admin = o.kafka.admin();
  await admin.connect();
  const specs = topicSpecs(prefix, 3);
  await admin.ensureTopics(specs);
  await ensureDatabase(dbUrl);
  const pool = await createDb(dbUrl);
  await migrate(pool);
  await pool.end();

  const conn = await connect(o.amqpUrl);
  const pub = await conn.createConfirmChannel();
  // As the model service declares it: with the signal bridge's length limits.
  const bridge = signalBridgeConfig(process.env);
  await pub.assertQueue(signalsQueue, { durable: true, arguments: queueArguments({ maxLength: bridge.SIGNALS_QUEUE_MAX_LENGTH, maxBytes: bridge.SIGNALS_QUEUE_MAX_BYTES }) });
  const sub = await conn.createChannel();
  await sub.assertQueue(eventsQueue, { durable: true });
  await sub.prefetch(2000);

  const omFlags = childNodeFlags('BENCH_OM_NODE_FLAGS');
  o.log(`order manager child: node ${[...omFlags, ...benchChild('om-child').execArgv].join(' ')} ${benchChild('om-child').file}`);
  const sim = startChild('sim-child', {});
  const simInfo = await sim.next<{ port: number; key: string; secret: string }>('ready', 60_000);
  const big = '1000000000000';
  const split = OM_SPLITS[omProcesses()]!;
  const omEnv = {
    TOPIC_PREFIX: prefix,
    DATABASE_URL: dbUrl,
    ADMIN_PORT: '0',
    LOG_LEVEL: 'warn',
    BYBIT_ENV: 'sim',
    BYBIT_SIM_PORT: String(simInfo.port),
    BYBIT_API_KEY: simInfo.key,
    BYBIT_API_SECRET: simInfo.secret,
    SIGNALS_QUEUE: signalsQueue,
    ORDER_EVENTS_QUEUE: eventsQueue,
    EXCHANGE_STREAM_SOURCE: 'direct',
    ASSETS: ASSETS.join(','),
    // Risk limits far away: the bench measures the path, not the refusals.
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
    METRICS_DEFAULTS: 'false',
  };
  const oms = split.map((units) => startChild('om-child', { ...omEnv, BENCH_OM_UNITS: units.join(',') }, omFlags));
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

  // Order events as they arrive on RabbitMQ: first arrival per signal.
  const firstEvent = new Map<string, { at: number; type: string }>();
  const eventTypes = new Map<string, number>();
  await sub.consume(
    eventsQueue,
    (m) => {
      if (!m) return;
      const at = Date.now();
      try {
        const e = JSON.parse(m.content.toString()) as { signal_id?: string; event_type?: string; reason_code?: string | null };
        const kind = e.reason_code ? `${e.event_type}:${e.reason_code}` : (e.event_type ?? '?');
        eventTypes.set(kind, (eventTypes.get(kind) ?? 0) + 1);
        if (e.signal_id && !firstEvent.has(e.signal_id)) firstEvent.set(e.signal_id, { at, type: e.event_type ?? '?' });
      } catch {
        /* not ours */
      }
    },
    { noAck: true },
  );

  let runNo = 0;
  const sentOf = new Map<RunResult, Array<{ id: string; trace: string; at: number }>>();
  const run = async (rate: number, seconds: number, drainMs = 90_000): Promise<RunResult> => {
    runNo++;
    const { prices } = await sim.ask<{ prices: Record<string, string> }>('prices');
    const n = Math.round(rate * seconds);
    const sent: Array<{ id: string; trace: string; at: number }> = [];
    const before = await omMetrics();
    const t0 = Date.now() + 50;
    let i = 0;
    while (i < n) {
      const now = Date.now();
      // Everything due by now goes out; the recorded time is when it was due (open loop).
      while (i < n && t0 + (i * 1000) / rate <= now) {
        const due = Math.round(t0 + (i * 1000) / rate);
        const asset = ASSETS[i % ASSETS.length]!;
        const id = randomUUID();
        const trace = `b${runNo}-${i}`;
        const body = {
          signal_id: id,
          signal_type: 'buy',
          asset,
          amount: 20,
          confidence: 0.9,
          timestamp: new Date(due).toISOString(),
          strategy_id: 'bench',
          model_version: null,
          is_warmup: false,
          market_data_snapshot: { price: Number(prices[asset] ?? 0) || 1, spread: 0.01, volume_24h: 1e6, volatility: 0.02, orderbook_depth: null, technical_indicators: null },
          metadata: { reasoning: 'bench', risk_score: 0.1, randomness_level: 0 },
          trace_id: trace,
        };
        pub.sendToQueue(signalsQueue, Buffer.from(JSON.stringify(body)), { persistent: true, messageId: id, contentType: 'application/json' });
        sent.push({ id, trace, at: due });
        i++;
      }
      await sleep(1);
    }
    await pub.waitForConfirms();
    const publishedBy = Date.now();
    const until = Date.now() + drainMs;
    while (sent.some((s) => !firstEvent.has(s.id)) && Date.now() < until) await sleep(50);
    const after = await omMetrics();
    const { orders } = await sim.ask<{ orders: Array<[string, number]> }>('orders');
    const accepted = new Map(orders);

    const e2e: number[] = [];
    const toAcc: number[] = [];
    const accToEv: number[] = [];
    let lastEvent = 0;
    for (const s of sent) {
      const ev = firstEvent.get(s.id);
      const acc = accepted.get(orderLinkId('om', s.id));
      if (ev) {
        e2e.push(ev.at - s.at);
        lastEvent = Math.max(lastEvent, ev.at);
      }
      if (acc !== undefined) toAcc.push(acc - s.at);
      if (ev && acc !== undefined) accToEv.push(ev.at - acc);
    }
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
    const q0 = histTotals(before.metrics, 'kafka_request_duration_seconds', 'api');
    const kafkaRequests = Object.fromEntries([...histTotals(after.metrics, 'kafka_request_duration_seconds', 'api')].map(([api, q]) => [api, q.count - (q0.get(api)?.count ?? 0)]).filter(([, n]) => (n as number) > 0));
    const profile: RunResult['profile'] = {};
    accDelta('kafka tx ', before.txTime, after.txTime, profile);
    accDelta('db ', before.dbTime, after.dbTime, profile);
    const span = Math.max(1, (lastEvent || publishedBy) - t0);
    const result: RunResult = {
      rate,
      offered: n,
      delivered: e2e.length,
      achievedRate: Math.round((e2e.length / span) * 1000),
      e2e: dist(e2e),
      toAccepted: dist(toAcc),
      acceptedToEvent: dist(accToEv),
      hops: {},
      stageBatchMs,
      kafkaRequests,
      profile,
      omMemoryMb: after.memory ? Object.fromEntries(Object.entries(after.memory).map(([k, v]) => [k, Math.round(v / 1048576)])) : undefined,
    };
    sentOf.set(result, sent);
    return result;
  };

  /** Per-hop medians from the record timestamps of every topic, filled into the runs afterwards. */
  const fillHops = async (runs: RunResult[]) => {
    const stamps = new Map<string, Map<string, number>>(HOPS.map(([, t]) => [t, new Map()]));
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
      for (const s of sent) {
        let prev = s.at;
        for (const [hop, t] of HOPS) {
          const ts = stamps.get(t)!.get(s.trace);
          if (ts === undefined) break;
          (per[hop] ??= []).push(ts - prev);
          prev = ts;
        }
        const ev = firstEvent.get(s.id);
        const evTs = stamps.get('orders.events')!.get(s.trace);
        if (ev && evTs !== undefined) (per['events-out-bridge'] ??= []).push(ev.at - evTs);
      }
      r.hops = Object.fromEntries(Object.entries(per).map(([k, xs]) => [k, dist(xs).p50]));
    }
  };

  return {
    units: started.units,
    run,
    rss: () => ({ ...(oms.length === 1 ? { 'order-manager': oms[0]!.peakRssMb() } : Object.fromEntries(oms.map((c, k) => [`order-manager[${split[k]!.join('+')}]`, c.peakRssMb()]))), simulator: sim.peakRssMb() }),
    close: async () => {
      o.log(`order event types seen: ${JSON.stringify(Object.fromEntries(eventTypes))}`);
      for (const om of oms) await om.stop();
      await sim.stop();
      await sub.deleteQueue(eventsQueue).catch(() => {});
      await pub.deleteQueue(signalsQueue).catch(() => {});
      await conn.close().catch(() => {});
      await admin.deleteTopics(specs.map((s) => s.topic)).catch(() => {});
      await admin.disconnect();
      await dropDatabase(dbUrl).catch(() => {});
    },
    fillHops,
  };
}
