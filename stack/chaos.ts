// Chaos run: a steady flow of signals into the order manager running as one OS process per part
// (signal bridge, signal-decide, place, track, exchange streams, events-out bridge, ops), on a
// private Kafka broker, RabbitMQ node, PostgreSQL cluster and schema registry (stack/chaos-infra.ts,
// so the shared ones other tests use are never touched), trading on the in-process simulator; the
// exchange streams come either from the direct websocket or, as in production, through ws-gateway's
// RabbitMQ queues (a stand-in relays the simulator's websocket: stack/ws-gateway-standin.ts).
// Meanwhile, one after the other at random moments (the fault plan):
//   - kill -9 of a process (each stage, each bridge, the stand-in), restarted at once;
//   - a Kafka broker restart (SIGTERM or SIGKILL, then started again on the same data dir);
//   - RabbitMQ: every connection closed, the node stopped, or its VM killed;
//   - PostgreSQL stopped (fast or immediate shutdown) and started again;
//   - the schema registry stopped (SIGTERM or SIGKILL) and started again;
//   - a stage frozen (SIGSTOP) past the consumer-group session timeout while a standby instance
//     takes its partitions, then woken (SIGCONT): a fenced zombie;
//   - the exchange's clock jumping forward;
// and, for the whole flow, the simulator loses answers after accepting orders, answers 5xx after
// executing, refuses with 10006 storms, and drops, duplicates and reorders websocket pushes.
// After the flow, once the system has settled and reconciled, the invariants of
// stack/chaos-checks.ts are checked on facts from independent sources (stack/chaos-facts.ts).
// `npm run chaos` runs the long form and ends with the figures line; tests/chaos runs short ones.
// docs/reliability.md describes the guarantees, the faults, the checks and the options.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { loadConfig } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { createKafka } from '../runtime/kafka.ts';
import { topicSpecs } from '../runtime/topics.ts';
import { ensureDatabase, createDb, sql, type DatabasePool } from '../runtime/db.ts';
import { migrate } from '../runtime/migrate.ts';
import type { Clock } from '../runtime/clock.ts';
import { createTopicCodec } from '../schemas/topic-codec.ts';
import { startSimulator } from '../sim/server.ts';
import type { SpotInstrument } from '../sim/instruments.ts';
import { paths } from './stack.ts';
import {
  cleanStaleChaosDirs,
  postgresBin,
  rabbitAvailable,
  startPrivateKafka,
  startPrivatePostgres,
  startPrivateRabbit,
  startPrivateRegistry,
  type PrivateKafka,
  type PrivatePostgres,
  type PrivateRabbit,
  type PrivateRegistry,
} from './chaos-infra.ts';
import { supervise, type SupervisedProcess } from './chaos-procs.ts';
import { createSignalPublisher } from './chaos-publisher.ts';
import { drainQueue, readToEnd } from './chaos-events.ts';
import { exchangeOrders, execsByOrder, idRecords, journalOrders, orderEvents, pgEventFacts, pgFacts, type PgFacts } from './chaos-facts.ts';
import {
  amendsCancelsAwaiting,
  amountsFor,
  checkActivity,
  checkAmendCancelVisible,
  checkCreatesPlaced,
  checkDecisions,
  checkOneRecordPerId,
  checkOrderEvents,
  checkOrdersAgree,
  checkOrdersPerSignal,
  checkOutcomes,
  emptyVerdict,
  floorOf,
  merge,
  type ExchangeCall,
  type ExchangeOrder,
  type SentSignal,
  type SymbolRef,
} from './chaos-checks.ts';
import { READY_LINE } from './ws-gateway-standin.ts';
import { dirBytes, errorLines, rssBytes } from './process-sampler.ts';
import { UNIT_SCHEMAS } from './services.ts';
import { mulberry32 } from './seeded.ts';

export type StreamPath = 'direct' | 'ws-gateway';

export interface ChaosOptions {
  signals: number;
  ratePerSec: number;
  /** kill -9 of processes: every one at least once when kills >= processes; else a stage, a bridge, the ws-gateway stand-in, the model service (those that run, as far as kills go), then random ones. */
  kills: number;
  /** Kafka broker restarts (alternately SIGTERM and SIGKILL). */
  kafkaRestarts?: number;
  /** RabbitMQ faults (in turn: node stop, close every connection, SIGKILL of the node). */
  rabbitFaults?: number;
  /** PostgreSQL restarts (alternately fast and immediate shutdown). */
  pgRestarts?: number;
  /** Schema registry restarts (alternately SIGTERM and SIGKILL). */
  registryRestarts?: number;
  /** Stage processes frozen past the session timeout while a standby takes over, then woken (place first). */
  pauses?: number;
  /** Forward jumps of the exchange's clock (in turn: a minute, an hour). */
  clockJumps?: number;
  /** Graceful restarts (SIGTERM, drain, start again) of the processes in turn, as a rolling deployment does (the soak's fault). */
  restarts?: number;
  /** Sample every process's RSS, the database's size and the topics' bytes on disk every this many ms (the soak's figures). */
  sampleEveryMs?: number;
  /** Probability of each exchange fault (answer lost, 5xx after executing, websocket drop / duplicate / reorder; 10006 at half of it). */
  answerLoss: number;
  seed: number;
  /** Also run the model service (its own signals queue, not fed back) and include it among the kill targets. */
  model?: boolean;
  /** Where the order manager reads the exchange streams (default direct). */
  stream?: StreamPath;
  /**
   * Instances of every order-manager part, each its own process in the same consumer group (default
   * 1): `place`, `place-2`, ... With more than one, the kill plan takes one instance of each part
   * first (the others keep the group going), as scaling out is meant to survive.
   */
  instances?: number;
  /** Partitions of the pipeline topics (default 3). */
  partitions?: number;
  /** Fewer creates executed at the exchange than max(1, ceil(share × signals)) fails the run. Default 0.25 (creates superseded by newer ones while a backlog drains, SOL amends instead of creates: 295 to 352 of 900 seen). */
  minOrderShare?: number;
  /** A larger share of refused signals fails the run. Default 0.05. */
  maxRefusedShare?: number;
  log?: (line: string) => void;
}

export interface ChaosFigures {
  stream: StreamPath;
  signals: number;
  faults: number;
  duplicates: number;
  losses: number;
  /** Ways the run did not do what it planned (too few orders, too many refusals, a fault not injected). */
  shortfalls: number;
  max_recovery_ms: number;
  /** Creates executed at the exchange. */
  orders: number;
  order_floor: number;
  refused: number;
  max_refused_share: number;
  /** Executed creates and amends traced back to their signal by the exchange's own facts. */
  traced: number;
  amends: number;
  cancels: number;
  amends_superseded: number;
  process_kills: number;
  kafka_restarts: number;
  rabbit_faults: number;
  pg_restarts: number;
  registry_restarts: number;
  pauses: number;
  clock_jumps: number;
  restarts: number;
  exchange_faults: number;
  /** Processes that exited by themselves (e.g. fatal while the broker was away) and were restarted. */
  crashes: number;
  republished: number;
  order_events: number;
  event_repeats: number;
  /** Byte-identical repeats of one id on signals.valid / orders.intents / orders.submissions. */
  record_repeats: number;
  /** Creates the exchange refused as a duplicate orderLinkId (110072): sent again, never executed twice. */
  create_repeats: number;
  problems: string[];
  /** With sampleEveryMs: resident memory per process, the database's size and the topics' bytes on disk over time. */
  samples: Sample[];
  /** Error and fatal log lines of every process of the run. */
  error_lines: Array<{ process: string; line: string }>;
}

export interface Sample {
  /** ms since the processes were ready. */
  t: number;
  /** Resident bytes per process name ('runner' is this process: the simulator and the checks). */
  rss: Record<string, number>;
  /** Process ids, to tell restarts apart. */
  pids: Record<string, number>;
  dbBytes: number;
  topicBytes: number;
}

const ASSETS: Array<[string, number]> = [
  ['BTCUSDT', 60000],
  ['ETHUSDT', 3000],
  ['SOLUSDT', 150],
];

/** The order manager, one process per part; ops first (instruments and balances into PostgreSQL). */
const OM_PROCESSES = ['ops', 'track', 'events-out', 'exchange-streams', 'place', 'signal-decide', 'signal-bridge'];
const STAGES = ['signal-decide', 'place', 'track'];
const BRIDGES = ['signal-bridge', 'events-out', 'exchange-streams'];
/** Paused in this order: placement's REST calls are what a zombie must never repeat. */
const PAUSE_ORDER = ['place', 'track', 'signal-decide'];
const STANDIN = 'ws-gateway';
const CLOCK_JUMPS_MS = [60_000, 3_600_000];

type Fault =
  | { kind: 'kill'; target: string }
  | { kind: 'kafka'; signal: 'SIGTERM' | 'SIGKILL' }
  | { kind: 'rabbit'; how: 'close' | 'restart' | 'kill' }
  | { kind: 'pg'; mode: 'fast' | 'immediate' }
  | { kind: 'registry'; signal: 'SIGTERM' | 'SIGKILL' }
  | { kind: 'pause'; target: string }
  | { kind: 'clock'; jumpMs: number }
  | { kind: 'restart'; target: string };

/** The exchange faults injected for the whole flow: each kind once for sure, then at random. */
const EXCHANGE_FAULTS = ['http5xx', 'loseResponse', 'rateLimitStorm', 'wsDrop', 'wsDuplicate', 'wsReorder'] as const;

export async function runChaos(opts: ChaosOptions): Promise<ChaosFigures> {
  const say = opts.log ?? (() => {});
  const stream = opts.stream ?? 'direct';
  const cfg = loadConfig(process.env, UNIT_SCHEMAS);
  const logger = createLogger({ ...cfg, LOG_LEVEL: 'silent' }, 'chaos');
  const rnd = mulberry32(opts.seed);
  const id = randomBytes(4).toString('hex');
  const dir = join(paths(cfg).dir, `chaos-${id}`);
  cleanStaleChaosDirs(cfg, logger);
  mkdirSync(join(dir, 'logs'), { recursive: true });
  writeFileSync(join(dir, 'owner.pid'), String(process.pid));
  const prefix = `chaos-${id}.`;
  const queue = `chaos.${prefix}signals`;
  const eventsQueue = `chaos.${prefix}events`;
  const bounds = { minOrderShare: opts.minOrderShare ?? 0.25, maxRefusedShare: opts.maxRefusedShare ?? 0.05 };
  const instances = Math.max(1, opts.instances ?? 1);
  const partitions = Math.max(1, opts.partitions ?? 3);
  const figures: ChaosFigures = {
    stream, signals: 0, faults: 0, duplicates: 0, losses: 0, shortfalls: 0, max_recovery_ms: 0, orders: 0, order_floor: floorOf(opts.signals, bounds), refused: 0,
    max_refused_share: bounds.maxRefusedShare, traced: 0, amends: 0, cancels: 0, amends_superseded: 0, process_kills: 0, kafka_restarts: 0, rabbit_faults: 0,
    pg_restarts: 0, registry_restarts: 0, pauses: 0, clock_jumps: 0, restarts: 0, exchange_faults: 0, crashes: 0, republished: 0, order_events: 0, event_repeats: 0,
    record_repeats: 0, create_repeats: 0, problems: [], samples: [], error_lines: [],
  };
  if (!rabbitAvailable()) throw new Error('RabbitMQ scripts not found under /usr/lib/rabbitmq/bin: a private node is needed so the shared one is never restarted');
  if (!postgresBin()) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql: a private cluster is needed so the shared server is never restarted');

  let kafka: PrivateKafka | null = null;
  let rabbit: PrivateRabbit | null = null;
  let pg: PrivatePostgres | null = null;
  let registry: PrivateRegistry | null = null;
  let pool: DatabasePool | null = null;
  const procs = new Map<string, SupervisedProcess>();
  const extra = new Set<SupervisedProcess>(); // standbys of paused stages
  const sampling = { on: false };
  // The exchange's clock: the wall clock plus the jumps the plan makes.
  const exchangeClock: Clock & { offsetMs: number } = { offsetMs: 0, now: () => Date.now() + exchangeClock.offsetMs };
  // Flat prices: an order's quote value then tells which signal it stands for (chaos-checks.ts,
  // checkOrdersPerSignal); movement is not what this run is about.
  const sim = await startSimulator({
    port: 0,
    seed: opts.seed,
    clock: exchangeClock,
    autoTick: true,
    priceProcess: { volatility: 0, drift: 0 },
    balances: { USDT: 1_000_000, BTC: 10, ETH: 200, SOL: 4000 },
  });
  const calls: ExchangeCall[] = [];
  const unjournal = journalOrders(sim.exchange, calls);
  const infra = () => [kafka as PrivateKafka | null, rabbit as PrivateRabbit | null, pg as PrivatePostgres | null, registry as PrivateRegistry | null];
  // Last resort when this process is torn down abruptly: no private server or service may outlive it.
  const killAll = () => {
    for (const pid of [...[...procs.values(), ...extra].map((p) => p.pid()), ...infra().flatMap((x) => x?.pids() ?? [])]) {
      if (pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  };
  process.once('exit', killAll);
  // Interrupted (Ctrl-C, a test runner's SIGTERM): nothing private may outlive the run.
  const onSignal = (sig: NodeJS.Signals) => {
    killAll();
    rmSync(dir, { recursive: true, force: true });
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.once(s, onSignal);
  try {
    for (const [s, p] of ASSETS) sim.setPrice(s, p);
    const t0 = Date.now();
    const [kfk, rmq, pgs, reg] = await Promise.all([
      startPrivateKafka(cfg, dir, logger).then((x) => (kafka = x)),
      startPrivateRabbit(dir, logger).then((x) => (rabbit = x)),
      startPrivatePostgres(dir, 'chaos', logger).then((x) => (pg = x)),
      startPrivateRegistry(dir, logger).then((x) => (registry = x)),
    ]);
    await ensureDatabase(pgs.url);
    pool = await createDb(pgs.url);
    await migrate(pool);
    say(`stream path ${stream}; private Kafka on ${kfk.brokers.join(',')}, RabbitMQ ${rmq.nodename} on ${rmq.url.replace(/\/\/.*@/, '//')}, PostgreSQL on 127.0.0.1:${pgs.port}, schema registry ${reg.url} (${Date.now() - t0} ms)`);
    const db = pool as unknown as DatabasePool;
    const k = createKafka({ brokers: kfk.brokers, clientId: 'chaos', logger });
    const admin = k.admin();
    await admin.connect();
    await admin.ensureTopics(topicSpecs(prefix, partitions));
    // The group coordinator answers only once __consumer_offsets is loaded on the fresh broker.
    for (let i = 0; ; i++) {
      try {
        await admin.groupOffsets('chaos-readiness', `${prefix}signals.raw`);
        break;
      } catch (err) {
        if (i > 120) throw err;
        await sleep(500);
      }
    }
    await admin.disconnect();

    const env: NodeJS.ProcessEnv = {
      ...process.env,
      KAFKA_BROKERS: kfk.brokers.join(','),
      AMQP_URL: rmq.url,
      SCHEMA_REGISTRY_URL: reg.url,
      TOPIC_PREFIX: prefix,
      ADMIN_PORT: '0',
      DATABASE_URL: pgs.url,
      BYBIT_SIM_PORT: String(sim.port),
      SIGNALS_QUEUE: queue,
      ORDER_EVENTS_QUEUE: eventsQueue,
      MODEL_SIGNALS_QUEUE: `chaos.${prefix}model-signals`,
      EXCHANGE_STREAM_SOURCE: stream,
      ASSETS: ASSETS.map(([s]) => s).join(','),
      LOG_LEVEL: 'info',
      METRICS_DEFAULTS: 'false',
      // A killed stage's partitions go to its successor after the session timeout.
      KAFKA_SESSION_TIMEOUT_MS: '6000',
      STAGE_RETRY_MAX_MS: '3000',
      SIGNAL_BRIDGE_RETRY_MAX_MS: '2000',
      EVENTS_OUT_RETRY_MAX_MS: '2000',
      MODEL_BRIDGE_RETRY_MAX_MS: '2000',
      WS_GATEWAY_RETRY_MAX_MS: '2000',
      // A signal held up by a broker restart is still fresh when it gets through.
      SIGNAL_MAX_AGE_MS: '120000',
      // Let the flow through: the point is faults, not risk limits.
      RISK_MAX_ORDER_NOTIONAL: '100000',
      RISK_MAX_POSITION_NOTIONAL: '10000000',
      RISK_MAX_TOTAL_EXPOSURE: '10000000',
      RISK_MAX_OPEN_ORDERS: '100000',
      RISK_MAX_OPEN_ORDERS_PER_ASSET: '100000',
      RISK_DAILY_LOSS_REDUCE: '0',
      RISK_DAILY_LOSS_HALT: '0',
      // SOL trades with resting limit orders (flat prices: they rest), so later signals amend and
      // cancel them; with no time-to-live, every decided create is sent.
      RISK_ORDER_TYPE: JSON.stringify({ '*': 'market', SOLUSDT: 'limit' }),
      RISK_LIMIT_OFFSET_BPS: '20',
      RISK_LIMIT_TTL_MS: '0',
      RECONCILE_CRON: '*/5 * * * * *',
      RECONCILE_GRACE_MS: '1000',
      RECONCILE_STUCK_AFTER_MS: '3000',
      WARMUP_INTERVAL_MS: '5000',
    };
    const copies = (unit: string) => Array.from({ length: instances }, (_, k) => (k === 0 ? unit : `${unit}-${k + 1}`));
    const serviceOf = new Map(OM_PROCESSES.flatMap((u) => copies(u).map((n) => [n, u] as const)));
    const omNames = [...OM_PROCESSES.flatMap(copies), ...(stream === 'ws-gateway' ? [STANDIN] : []), ...(opts.model ? ['model'] : [])];
    // Killed first, each once: every process; with several instances, one instance of each part.
    const killFirst = instances > 1 ? omNames.filter((n) => !serviceOf.has(n) || serviceOf.get(n) === n) : omNames;
    const joins = new Map<string, number>(); // process → its last "joined consumer group" with partitions
    const onLine = (name: string, line: string) => {
      if (!line.includes('"joined consumer group"')) return;
      try {
        const assigned = (JSON.parse(line) as { assigned?: Record<string, number[]> }).assigned ?? {};
        if (Object.values(assigned).some((p) => p.length > 0)) joins.set(name, Date.now());
      } catch {
        /* not JSON */
      }
    };
    for (const n of omNames) {
      procs.set(
        n,
        n === STANDIN
          ? supervise(n, { script: ['stack/ws-gateway-standin.ts', `--ws=${sim.wsUrl}`, `--amqp=${rmq.url}`, `--symbols=${ASSETS.map(([s]) => s).join(',')}`], ready: READY_LINE, env, dir, say, onLine })
          : supervise(n, { service: serviceOf.get(n) ?? n, env, dir, say, onLine }),
      );
    }
    const t1 = Date.now();
    // ops first, with the tracking stage: exchange sync (in ops) is ready once tracking has projected
    // the wallet and positions it published, and nothing may decide before the account is loaded.
    const first = omNames.filter((n) => serviceOf.get(n) === 'ops' || serviceOf.get(n) === 'track');
    for (const n of first) procs.get(n)!.start();
    await procs.get('ops')!.waitReady();
    const rest = omNames.filter((n) => !first.includes(n));
    for (const n of rest) procs.get(n)!.start();
    for (const n of [...first, ...rest]) await procs.get(n)!.waitReady();
    // The soak's figures: memory per process, database and topic bytes, every sampleEveryMs.
    sampling.on = Boolean(opts.sampleEveryMs);
    const readyAt = Date.now();
    const sampler = (async () => {
      while (sampling.on) {
        const rss: Record<string, number> = {};
        const pids: Record<string, number> = {};
        for (const [n, x] of procs) {
          const pid = x.pid();
          const b = rssBytes(pid);
          if (pid && b !== null) {
            rss[n] = b;
            pids[n] = pid;
          }
        }
        rss.runner = process.memoryUsage.rss();
        const dbBytes = await db.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT pg_database_size(current_database())::float8 AS n`).catch(() => -1);
        figures.samples.push({ t: Date.now() - readyAt, rss, pids, dbBytes, topicBytes: dirBytes(kfk.node.data, (d) => d.startsWith(prefix)) });
        await sleep(opts.sampleEveryMs!);
      }
    })();
    say(`${omNames.length} processes ready${instances > 1 ? ` (${instances} instances of each order-manager part, ${partitions} partitions)` : ''} (${Date.now() - t1} ms)`);

    // Faults at the exchange for the whole flow: each kind on the first chance (so every planned
    // kind is injected), then at random.
    const fired = () => {
      const st = sim.faults.stats;
      return { http5xx: st.http5xx, loseResponse: st.loseResponse, rateLimitStorm: st.rateLimitStorm, wsDrop: st.wsDrop, wsDuplicate: st.wsDuplicate, wsReorder: st.wsReorder };
    };
    const p = opts.answerLoss;
    const exchangeFaultConfig = () => {
      const f = fired();
      const rule = (kind: keyof ReturnType<typeof fired>, prob: number) => (f[kind] > 0 ? { probability: prob } : { count: 1 });
      return {
        loseResponse: { ...rule('loseResponse', p), paths: ['/v5/order/create'], mode: 'reset' as const },
        http5xx: { ...rule('http5xx', p), paths: ['/v5/order/create'], afterProcessing: true },
        rateLimitStorm: { ...rule('rateLimitStorm', p / 2), paths: ['/v5/order/create'] },
        ws: { drop: rule('wsDrop', p), duplicate: rule('wsDuplicate', p), reorder: rule('wsReorder', p) },
      };
    };
    let faultsArmed = p > 0;
    if (faultsArmed) sim.faults.set(exchangeFaultConfig());
    const armer = (async () => {
      let last = JSON.stringify(fired());
      while (faultsArmed) {
        await sleep(200);
        const now = JSON.stringify(fired());
        if (faultsArmed && now !== last && Object.values(fired()).some((n) => n === 1)) sim.faults.set(exchangeFaultConfig());
        last = now;
      }
    })();

    // The fault plan. Kills: with at least as many kills as processes, every process is killed at
    // least once; with fewer, at least one stage, one bridge, the ws-gateway stand-in and the model
    // service (as far as they run and kills go), then random ones.
    const plan: Fault[] = [];
    const firstKills = [STAGES, BRIDGES, ...(stream === 'ws-gateway' ? [[STANDIN]] : []), ...(opts.model ? [['model']] : [])];
    for (let i = 0; i < opts.kills; i++) {
      let target: string;
      if (opts.kills >= killFirst.length && i < killFirst.length) target = killFirst[i]!;
      else {
        const from = firstKills[i] ?? omNames;
        target = from[Math.floor(rnd() * from.length)]!;
      }
      plan.push({ kind: 'kill', target });
    }
    for (let i = 0; i < (opts.kafkaRestarts ?? 0); i++) plan.push({ kind: 'kafka', signal: i % 2 === 0 ? 'SIGTERM' : 'SIGKILL' });
    // A graceful restart, dropped connections, a SIGKILL of the node (its VM), in turn.
    for (let i = 0; i < (opts.rabbitFaults ?? 0); i++) plan.push({ kind: 'rabbit', how: (['restart', 'close', 'kill'] as const)[i % 3]! });
    for (let i = 0; i < (opts.pgRestarts ?? 0); i++) plan.push({ kind: 'pg', mode: i % 2 === 0 ? 'fast' : 'immediate' });
    for (let i = 0; i < (opts.registryRestarts ?? 0); i++) plan.push({ kind: 'registry', signal: i % 2 === 0 ? 'SIGTERM' : 'SIGKILL' });
    for (let i = 0; i < (opts.pauses ?? 0); i++) plan.push({ kind: 'pause', target: PAUSE_ORDER[i % PAUSE_ORDER.length]! });
    for (let i = 0; i < (opts.clockJumps ?? 0); i++) plan.push({ kind: 'clock', jumpMs: CLOCK_JUMPS_MS[i % CLOCK_JUMPS_MS.length]! });
    for (let i = 0; i < (opts.restarts ?? 0); i++) plan.push({ kind: 'restart', target: killFirst[i % killFirst.length]! });
    for (let i = plan.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [plan[i], plan[j]] = [plan[j]!, plan[i]!];
    }

    // The flow: one signal every 1/rate s, published with confirms, republished after a lost
    // connection. Amounts are unique per asset and side (chaos-checks.ts, amountsFor).
    const sent: SentSignal[] = [];
    const sentAt: number[] = [];
    const amountCounters = new Map<string, number>();
    const publisher = createSignalPublisher(rmq.url, queue);
    const flowMs = (opts.signals / opts.ratePerSec) * 1000;
    let flowDone = false;
    const flow = (async () => {
      const start = Date.now();
      for (let i = 0; i < opts.signals; i++) {
        const due = start + (i * 1000) / opts.ratePerSec;
        if (due > Date.now()) await sleep(due - Date.now());
        const [asset, price] = ASSETS[i % ASSETS.length]!;
        const side = rnd() < 0.5 ? 'buy' : 'sell';
        const s: SentSignal = { signalId: randomUUID(), asset, side, amount: amountsFor(`${asset}|${side}`, amountCounters) };
        sent.push(s);
        sentAt.push(Date.now());
        const signal = {
          signal_id: s.signalId,
          signal_type: side,
          asset,
          amount: s.amount,
          confidence: 0.8,
          timestamp: new Date().toISOString(),
          strategy_id: `chaos-${i % 4}`,
          model_version: null,
          is_warmup: false,
          market_data_snapshot: { price, spread: 0.1, volume_24h: 1e6, volatility: 0.01, orderbook_depth: null, technical_indicators: null },
          metadata: null,
          trace_id: `chaos-${i}`,
        };
        await publisher.publish(Buffer.from(JSON.stringify(signal)), s.signalId);
        figures.signals++;
      }
      flowDone = true;
    })();

    // Queries of the run's own database retry while PostgreSQL is being restarted.
    const query = async <T>(f: () => Promise<T>): Promise<T> => {
      for (let i = 0; ; i++) {
        try {
          return await f();
        } catch (err) {
          if (i >= 600) throw err;
          await sleep(200);
        }
      }
    };

    // "The flow moves again": the first signal sent after the fault began has its outcome.
    const Outcome = z.object({ signal_id: z.string(), outcome: z.string().nullable() });
    const flowRecovered = async (since: number): Promise<number | null> => {
      const until = Date.now() + 180_000;
      for (;;) {
        const i = sentAt.findIndex((t) => t >= since);
        if (i < 0 && flowDone) return null;
        if (i >= 0) {
          const r = await query(() => db.maybeOne(sql.type(Outcome)`SELECT signal_id::text, outcome FROM signals WHERE signal_id = ${sent[i]!.signalId}::uuid`));
          if (r?.outcome) return Date.now() - since;
        }
        if (Date.now() > until) {
          say(`flow did not move within 180 s of a fault`);
          return Date.now() - since;
        }
        await sleep(100);
      }
    };
    const waitUntil = async (what: string, cond: () => boolean, timeoutMs: number): Promise<boolean> => {
      const until = Date.now() + timeoutMs;
      while (!cond()) {
        if (Date.now() > until) {
          say(`${what}: not within ${timeoutMs} ms`);
          return false;
        }
        await sleep(50);
      }
      return true;
    };

    /** SIGSTOP a stage, let a standby instance take its partitions, then SIGCONT it. */
    const pauseStage = async (name: string, at: number): Promise<{ infraMs: number; what: string }> => {
      const target = procs.get(name)!;
      target.pause();
      const standby = supervise(`${name}-standby`, { service: name, env, dir, say, onLine });
      extra.add(standby);
      standby.start();
      await standby.waitReady();
      // The coordinator gives the frozen member's partitions away once its session timed out.
      await waitUntil(`${name} standby owning partitions`, () => (joins.get(standby.name) ?? 0) > at, 120_000);
      const tookOver = Date.now() - at;
      await flowRecovered(Date.now());
      const frozenMs = Date.now() - at;
      const resumedAt = Date.now();
      target.resume();
      const rejoined = await waitUntil(`${name} rejoining after SIGCONT`, () => (joins.get(name) ?? 0) > resumedAt, 120_000);
      await standby.stop(15_000);
      extra.delete(standby);
      return { infraMs: tookOver, what: `SIGSTOP ${name} for ${frozenMs} ms (session timeout 6000 ms): standby owned its partitions after ${tookOver} ms; SIGCONT, ${rejoined ? `rejoined after ${(joins.get(name) ?? resumedAt) - resumedAt} ms` : 'no rejoin seen'}, standby stopped` };
    };

    const restartProblems: string[] = [];
    const monkey = (async () => {
      const gap = flowMs / (plan.length + 1);
      const start = Date.now();
      for (let f = 0; f < plan.length; f++) {
        const due = start + gap * (f + 0.5 + rnd());
        if (due > Date.now()) await sleep(due - Date.now());
        const fault = plan[f]!;
        const at = Date.now();
        if (fault.kind === 'restart') {
          // Not a fault: planned work, as a deployment's rolling restart; it must drain and exit 0.
          const r = await procs.get(fault.target)!.restart(30_000);
          figures.restarts++;
          if (r.exitCode !== 0) restartProblems.push(`graceful restart of ${fault.target} exited with ${r.exitCode}, not 0`);
          const flowMsRec = await flowRecovered(at);
          say(`restart ${fault.target} (SIGTERM, exit ${r.exitCode}); ready again after ${r.ms} ms; flow moving again after ${flowMsRec ?? '-'} ms (after ${figures.signals} signals)`);
          continue;
        }
        let infraMs = 0;
        let what: string;
        switch (fault.kind) {
          case 'kill':
            infraMs = await procs.get(fault.target)!.kill9();
            figures.process_kills++;
            what = `kill -9 ${fault.target}; back (ready) after ${infraMs} ms`;
            break;
          case 'kafka':
            infraMs = await kfk.restart(fault.signal, 1000);
            figures.kafka_restarts++;
            what = `Kafka broker restarted (${fault.signal}); ready again after ${infraMs} ms`;
            break;
          case 'rabbit':
            if (fault.how === 'close') {
              const n = await rmq.closeConnections();
              what = `RabbitMQ: closed ${n} connections`;
            } else {
              infraMs = await rmq.restart(1000, fault.how === 'kill' ? 'kill' : 'stop');
              what = `RabbitMQ node restarted (${fault.how === 'kill' ? 'SIGKILL of its VM' : 'rabbitmqctl stop'}); accepting connections after ${infraMs} ms`;
            }
            figures.rabbit_faults++;
            break;
          case 'pg':
            infraMs = await pgs.restart(fault.mode, 1000);
            figures.pg_restarts++;
            what = `PostgreSQL restarted (pg_ctl stop -m ${fault.mode}); accepting queries after ${infraMs} ms`;
            break;
          case 'registry':
            infraMs = await reg.restart(fault.signal, 1000);
            figures.registry_restarts++;
            what = `schema registry restarted (${fault.signal}); answering after ${infraMs} ms`;
            break;
          case 'pause': {
            const r = await pauseStage(fault.target, at);
            infraMs = r.infraMs;
            figures.pauses++;
            what = r.what;
            break;
          }
          case 'clock':
            exchangeClock.offsetMs += fault.jumpMs;
            sim.advance();
            figures.clock_jumps++;
            what = `exchange clock jumped forward ${fault.jumpMs / 1000} s (now ${exchangeClock.offsetMs / 1000} s ahead)`;
            break;
        }
        figures.faults++;
        const flowMsRec = await flowRecovered(at);
        const rec = Math.max(infraMs, flowMsRec ?? 0);
        figures.max_recovery_ms = Math.max(figures.max_recovery_ms, rec);
        say(`${what}; flow moving again after ${flowMsRec ?? '-'} ms (after ${figures.signals} signals)`);
      }
    })();
    await Promise.all([flow, monkey]);
    figures.republished = publisher.republished;
    await publisher.close();
    faultsArmed = false;
    await armer;
    const injected = fired();
    figures.exchange_faults = Object.values(injected).reduce((a, n) => a + n, 0);
    figures.faults += figures.exchange_faults;
    sim.faults.reset();

    // Settle: every signal decided, every create decision at the exchange or refused, every amend
    // and cancel decision requested there or answered (amendsCancelsAwaiting), and PostgreSQL
    // agreeing with the exchange about every order.
    const signalIds = sent.map((s) => s.signalId);
    const refs = new Map<string, SymbolRef>(ASSETS.map(([s, price]) => [s, { price, step: Number((sim.exchange.instruments.get('spot', s) as SpotInstrument).basePrecision) }]));
    // The facts of the last poll are the settle point's: PostgreSQL and the exchange read together.
    const settledBy = Date.now() + 240_000;
    let f: PgFacts;
    let ex: ExchangeOrder[];
    let exExecs: Map<string, Set<string>>;
    for (;;) {
      f = await query(() => pgFacts(db, signalIds));
      ex = exchangeOrders(sim.orders());
      exExecs = execsByOrder(sim.executions().map((e) => ({ order_id: String(e.orderId), exec_id: String(e.execId) })));
      const decided = signalIds.filter((x) => f.outcomes.get(x)).length;
      const agree = checkOrdersAgree(f.orders, ex, execsByOrder(f.executions), exExecs);
      const placed = checkCreatesPlaced(createLinks(f.intents), new Set(ex.map((o) => o.orderLinkId)), new Set(f.orders.filter((o) => o.status === 'Rejected' && o.order_link_id).map((o) => o.order_link_id!)));
      const awaiting = amendsCancelsAwaiting(f.intents, calls, f.answered, orderIdsOf(ex));
      if (decided === signalIds.length && agree.losses === 0 && placed.losses === 0 && awaiting.length === 0) break;
      if (Date.now() > settledBy) {
        say(`not settled after 240 s: ${decided}/${signalIds.length} signals decided; ${agree.losses} orders disagree; ${placed.losses} creates not at the exchange; ${awaiting.length} amends / cancels neither requested nor answered`);
        break;
      }
      await sleep(1000);
    }

    sampling.on = false;
    await sampler;
    // The facts, from independent sources, and the checks (stack/chaos-checks.ts).
    const codec = await createTopicCodec({ registryUrl: reg.url, prefix });
    figures.crashes = [...procs.values()].reduce((a, x) => a + x.crashes, 0);
    // Every writer stops (gracefully: no transaction left open), then the topics are read to their
    // end; the events-out bridge goes on until RabbitMQ has every event of the topic.
    await Promise.all([...procs.entries()].filter(([n]) => serviceOf.get(n) !== 'events-out').map(([, x]) => x.stop(15_000)));
    const read = await readToEnd(createKafka({ brokers: kfk.brokers, clientId: 'chaos-reader', logger }), ['orders.events', 'signals.valid', 'orders.intents', 'orders.submissions'].map((t) => `${prefix}${t}`), partitions, {
      explain: (tps) => kfk.transactions(tps),
    });
    const { events, where } = await orderEvents(codec, `${prefix}orders.events`, read.get(`${prefix}orders.events`)!);
    const { records, submissions } = await idRecords(codec, prefix, read);
    // Order events are judged against PostgreSQL as the stopped writers left it, not as it was at
    // the settle point: the system is not quiet there (the reconciler, decisions after the flow, a
    // replayed placement chunk), so a state change made between the two reads would be on the topic
    // but not in the earlier read. Decisions and the exchange's agreement stay judged at the settle
    // point, where the exchange was read (the stop cuts placement of later decisions short).
    const stopped = await query(() => pgEventFacts(db, signalIds));
    const topicIds = new Set(events.map((e) => e.event_id));
    const queued = await drainQueue(rmq.url, eventsQueue, (msgs) => {
      const seen = new Set(msgs.map((m) => m.event_id));
      for (const x of topicIds) if (!seen.has(x)) return false;
      return true;
    });
    const refusedIds = new Set(signalIds.filter((x) => f.outcomes.get(x) === 'rejected'));
    const executedCreates = calls.filter((c) => c.op === 'create' && c.ok);
    const superseded = new Set(submissions.filter((s) => s.outcome === 'rejected' && (s.reason_code === 'superseded' || s.reason_code === 'target_superseded')).map((s) => s.intent_id));
    const perSignal = checkOrdersPerSignal(sent, calls, refs, refusedIds);
    const visible = checkAmendCancelVisible(f.intents, calls, superseded, orderIdsOf(ex));
    const oneRecord = checkOneRecordPerId(records);
    const orderEventsVerdict = checkOrderEvents(events, queued, stopped, where);
    figures.refused = refusedIds.size;
    figures.orders = executedCreates.length;
    const faultsPlanned = new Map<string, readonly [number, number]>([
      ['kill -9', [opts.kills, figures.process_kills]],
      ['Kafka restart', [opts.kafkaRestarts ?? 0, figures.kafka_restarts]],
      ['RabbitMQ fault', [opts.rabbitFaults ?? 0, figures.rabbit_faults]],
      ['PostgreSQL restart', [opts.pgRestarts ?? 0, figures.pg_restarts]],
      ['schema registry restart', [opts.registryRestarts ?? 0, figures.registry_restarts]],
      ['stage pause', [opts.pauses ?? 0, figures.pauses]],
      ['exchange clock jump', [opts.clockJumps ?? 0, figures.clock_jumps]],
      ...EXCHANGE_FAULTS.map((kind): [string, readonly [number, number]] => [`exchange ${kind}`, [p > 0 ? 1 : 0, injected[kind]]]),
    ]);
    const verdict = merge(
      emptyVerdict(),
      checkOutcomes(signalIds, f.outcomes),
      checkDecisions(f.decisions),
      perSignal,
      visible,
      checkCreatesPlaced(createLinks(f.intents), new Set(ex.map((o) => o.orderLinkId)), new Set(f.orders.filter((o) => o.status === 'Rejected' && o.order_link_id).map((o) => o.order_link_id!))),
      checkOrdersAgree(f.orders, ex, execsByOrder(f.executions), exExecs),
      oneRecord,
      orderEventsVerdict,
      checkActivity({ signals: figures.signals, orders: figures.orders, refused: figures.refused, refusedBy: f.refusedBy, faults: faultsPlanned }, bounds),
    );
    for (const line of verdict.problems) say(line);
    figures.losses = verdict.losses;
    figures.duplicates = verdict.duplicates;
    figures.shortfalls = verdict.shortfalls;
    figures.problems = [...verdict.problems, ...restartProblems];
    figures.shortfalls += restartProblems.length;
    for (const line of restartProblems) say(line);
    figures.traced = perSignal.traced;
    figures.amends = visible.amends;
    figures.cancels = visible.cancels;
    figures.amends_superseded = visible.amendsSuperseded;
    figures.order_events = topicIds.size;
    figures.event_repeats = orderEventsVerdict.repeats;
    figures.record_repeats = oneRecord.repeats;
    figures.create_repeats = calls.filter((c) => c.op === 'create' && !c.ok && c.retCode === 110072).length;
    say(`order events: ${topicIds.size} distinct on the topic, ${queued.length} messages on the RabbitMQ queue, ${orderEventsVerdict.repeats} repeats (same event_id)`);
    return figures;
  } finally {
    sampling.on = false;
    await Promise.all([...procs.values(), ...extra].map((x) => x.stop(10_000).catch(() => {})));
    process.removeListener('exit', killAll);
    for (const s of signals) process.removeListener(s, onSignal);
    unjournal();
    await sim.close().catch(() => {});
    await (pool as DatabasePool | null)?.end().catch(() => {});
    await Promise.all(infra().map((x) => x?.stop().catch(() => {})));
    figures.error_lines = errorLines(join(dir, 'logs'));
    if (process.env.CHAOS_KEEP_DIR) {
      writeFileSync(join(dir, 'kept'), '');
      say(`kept ${dir} (PostgreSQL data under postgres/data; start it with pg_ctl as the postgres user to inspect)`);
    } else rmSync(dir, { recursive: true, force: true });
  }
}

/** The exchange's orderLinkId → orderId. */
const orderIdsOf = (ex: readonly ExchangeOrder[]): Map<string, string> => new Map(ex.map((o) => [o.orderLinkId, o.orderId]));

/** orderLinkIds of the create intents the order manager decided. */
function createLinks(intents: ReadonlyArray<{ action: string; order_link_id: string }>): string[] {
  return [...new Set(intents.filter((i) => i.action === 'create').map((i) => i.order_link_id))];
}

export function detailsLine(f: ChaosFigures, elapsedS: number): string {
  return [
    `stream=${f.stream}`,
    `orders=${f.orders}`,
    `order_floor=${f.order_floor}`,
    `refused=${f.refused}`,
    `refused_share=${(f.signals ? f.refused / f.signals : 0).toFixed(3)}`,
    `max_refused_share=${f.max_refused_share}`,
    `traced=${f.traced}`,
    `amends=${f.amends}`,
    `cancels=${f.cancels}`,
    `process_kills=${f.process_kills}`,
    `kafka_restarts=${f.kafka_restarts}`,
    `rabbit_faults=${f.rabbit_faults}`,
    `pg_restarts=${f.pg_restarts}`,
    `registry_restarts=${f.registry_restarts}`,
    `pauses=${f.pauses}`,
    `clock_jumps=${f.clock_jumps}`,
    `exchange_faults=${f.exchange_faults}`,
    `crashes=${f.crashes}`,
    `republished=${f.republished}`,
    `create_repeats=${f.create_repeats}`,
    `order_events=${f.order_events}`,
    `event_repeats=${f.event_repeats}`,
    `record_repeats=${f.record_repeats}`,
    `shortfalls=${f.shortfalls}`,
    `elapsed_s=${elapsedS}`,
  ].join(' ');
}

export function figuresLine(f: ChaosFigures): string {
  return `signals=${f.signals} faults=${f.faults} duplicates=${f.duplicates} losses=${f.losses} max_recovery_ms=${f.max_recovery_ms}`;
}

/** The run passed: nothing lost, nothing twice, and it did what it planned. */
export const passed = (f: ChaosFigures): boolean => f.duplicates === 0 && f.losses === 0 && f.shortfalls === 0;

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  const env = (name: string) => process.env[`CHAOS_${name.toUpperCase().replace(/-/g, '_')}`];
  const n = (name: string, d: number) => Number(arg(name) ?? env(name) ?? d);
  const stream = arg('stream') ?? env('stream') ?? 'direct';
  if (stream !== 'direct' && stream !== 'ws-gateway') throw new Error(`--stream must be direct or ws-gateway, not ${stream}`);
  const started = Date.now();
  const f = await runChaos({
    signals: n('signals', 900),
    ratePerSec: n('rate', 4),
    kills: n('kills', 10),
    kafkaRestarts: n('kafka-restarts', 2),
    rabbitFaults: n('rabbit-faults', 4),
    pgRestarts: n('pg-restarts', 2),
    registryRestarts: n('registry-restarts', 2),
    pauses: n('pauses', 2),
    clockJumps: n('clock-jumps', 2),
    answerLoss: n('answer-loss', 0.05),
    seed: n('seed', 1),
    model: (arg('model') ?? env('model') ?? 'true') !== 'false',
    stream,
    instances: n('instances', 1),
    partitions: n('partitions', 3),
    minOrderShare: n('min-order-share', 0.25),
    maxRefusedShare: n('max-refused-share', 0.05),
    log: (l) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${l}`),
  });
  console.log(detailsLine(f, Math.round((Date.now() - started) / 1000)));
  console.log(`${figuresLine(f)}${f.shortfalls ? ` shortfalls=${f.shortfalls}` : ''}`);
  process.exit(passed(f) ? 0 : 1);
}
