// Chaos run: a steady flow of signals into the order manager running as one OS process per part
// (signal bridge, validate, size-risk, place, track, exchange streams, events-out bridge, ops), on a
// private Kafka broker and a private RabbitMQ node (stack/chaos-infra.ts, so the shared ones other
// tests use are never touched), trading on the in-process simulator. Meanwhile, one after the other
// at random moments:
//   - kill -9 of a randomly chosen process (each stage and each bridge), restarted at once;
//   - a Kafka broker restart (SIGTERM or SIGKILL, then started again on the same data dir);
//   - RabbitMQ: every connection closed, or the node stopped and started again;
// and, for the whole flow, the simulator loses answers after accepting orders, answers 5xx after
// executing, refuses with 10006 storms, and drops, duplicates and reorders websocket pushes.
// After the flow, once the system has settled and reconciled, the invariants are checked:
//   - every signal has exactly one recorded outcome (an order decision or a refusal);
//   - no orderLinkId was placed twice, and every create decision has its order at the exchange;
//   - PostgreSQL's view of our orders equals the simulator's;
//   - every order state change reached orders.events and the RabbitMQ order events queue, repeats
//     only with the same event_id (stack/chaos-events.ts).
// `npm run chaos` runs the long form and ends with the figures line; tests/chaos runs a short one.
// docs/reliability.md describes the guarantees and the options.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { loadConfig, schemaRegistryUrl } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { createKafka } from '../runtime/kafka.ts';
import { topicSpecs } from '../runtime/topics.ts';
import { ensureDatabase, dropDatabase, withDatabase, createDb, sql, type DatabasePool } from '../runtime/db.ts';
import { migrate } from '../runtime/migrate.ts';
import { createTopicCodec } from '../pipelines/codec.ts';
import { startSimulator } from '../sim/server.ts';
import { SIM_BALANCES } from './services.ts';
import { paths } from './stack.ts';
import { cleanStaleChaosDirs, rabbitAvailable, startPrivateKafka, startPrivateRabbit, type PrivateKafka, type PrivateRabbit } from './chaos-infra.ts';
import { supervise, type SupervisedProcess } from './chaos-procs.ts';
import { createSignalPublisher } from './chaos-publisher.ts';
import { checkOrderEvents, drainQueue, readTopic } from './chaos-events.ts';

export interface ChaosOptions {
  signals: number;
  ratePerSec: number;
  /** kill -9 of service processes: every one at least once when kills >= processes; else at least one stage and one bridge (and the model service when >= 3 and it runs). */
  kills: number;
  /** Kafka broker restarts (alternately SIGTERM and SIGKILL). */
  kafkaRestarts?: number;
  /** RabbitMQ faults (alternately: close every connection, stop and start the node). */
  rabbitFaults?: number;
  /** Fraction of order/create answers lost after the order was accepted, of 5xx answers, of ws faults. */
  answerLoss: number;
  seed: number;
  /** Also run the model service (its own signals queue, not fed back) and include it among the kill targets. */
  model?: boolean;
  log?: (line: string) => void;
}

export interface ChaosFigures {
  signals: number;
  faults: number;
  duplicates: number;
  losses: number;
  max_recovery_ms: number;
  orders: number;
  refused: number;
  process_kills: number;
  kafka_restarts: number;
  rabbit_faults: number;
  exchange_faults: number;
  /** Processes that exited by themselves (e.g. fatal while the broker was away) and were restarted. */
  crashes: number;
  republished: number;
  order_events: number;
  event_repeats: number;
}

const ASSETS: Array<[string, number]> = [
  ['BTCUSDT', 60000],
  ['ETHUSDT', 3000],
  ['SOLUSDT', 150],
];

/** The order manager, one process per part; ops first (instruments and balances into PostgreSQL). */
const OM_PROCESSES = ['ops', 'track', 'events-out', 'exchange-streams', 'place', 'size-risk', 'validate', 'signal-bridge'];
const STAGES = ['validate', 'size-risk', 'place', 'track'];
const BRIDGES = ['signal-bridge', 'events-out', 'exchange-streams'];

type Fault = { kind: 'kill'; target: string } | { kind: 'kafka'; signal: 'SIGTERM' | 'SIGKILL' } | { kind: 'rabbit'; how: 'close' | 'restart' | 'kill' };

export async function runChaos(opts: ChaosOptions): Promise<ChaosFigures> {
  const say = opts.log ?? (() => {});
  const cfg = loadConfig();
  const logger = createLogger({ ...cfg, LOG_LEVEL: 'silent' }, 'chaos');
  const rnd = mulberry(opts.seed);
  const id = randomBytes(4).toString('hex');
  const dir = join(paths(cfg).dir, `chaos-${id}`);
  cleanStaleChaosDirs(cfg, logger);
  mkdirSync(join(dir, 'logs'), { recursive: true });
  writeFileSync(join(dir, 'owner.pid'), String(process.pid));
  const prefix = `chaos-${id}.`;
  const queue = `chaos.${prefix}signals`;
  const eventsQueue = `chaos.${prefix}events`;
  const dbUrl = withDatabase(cfg.DATABASE_URL, `chaos_${id}`);
  const figures: ChaosFigures = {
    signals: 0, faults: 0, duplicates: 0, losses: 0, max_recovery_ms: 0, orders: 0, refused: 0,
    process_kills: 0, kafka_restarts: 0, rabbit_faults: 0, exchange_faults: 0, crashes: 0, republished: 0, order_events: 0, event_repeats: 0,
  };
  if (!rabbitAvailable()) throw new Error('RabbitMQ scripts not found under /usr/lib/rabbitmq/bin: a private node is needed so the shared one is never restarted');

  let kafka: PrivateKafka | null = null;
  let rabbit: PrivateRabbit | null = null;
  let pool: DatabasePool | null = null;
  const procs = new Map<string, SupervisedProcess>();
  const sim = await startSimulator({ port: 0, seed: opts.seed, balances: { ...SIM_BALANCES, USDT: 1_000_000 }, rateLimits: { multiplier: 10 } });
  // Last resort when this process is torn down abruptly: no private broker or service may outlive it.
  const killAll = () => {
    for (const pid of [...[...procs.values()].map((p) => p.pid()), ...((kafka as PrivateKafka | null)?.pids() ?? []), ...((rabbit as PrivateRabbit | null)?.pids() ?? [])]) {
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
    const code = sig === 'SIGINT' ? 130 : 143;
    void Promise.race([dropDatabase(dbUrl), sleep(5000)]).finally(() => process.exit(code));
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.once(s, onSignal);
  try {
    for (const [s, p] of ASSETS) sim.setPrice(s, p);
    const t0 = Date.now();
    // The database first: formatting Kafka's storage blocks the event loop for a few seconds
    // (execFileSync), long enough for a PostgreSQL connect in flight to time out.
    await ensureDatabase(dbUrl);
    pool = await createDb(dbUrl);
    await migrate(pool);
    const [kfk, rmq] = await Promise.all([startPrivateKafka(cfg, dir, logger).then((x) => (kafka = x)), startPrivateRabbit(dir, logger).then((x) => (rabbit = x))]);
    say(`private Kafka on ${kfk.brokers.join(',')}, private RabbitMQ ${rmq.nodename} on ${rmq.url.replace(/\/\/.*@/, '//')} (${Date.now() - t0} ms)`);
    const db = pool as unknown as DatabasePool;
    const k = createKafka({ brokers: kfk.brokers, clientId: 'chaos', logger });
    const admin = k.admin();
    await admin.connect();
    await admin.ensureTopics(topicSpecs(prefix, 3));
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
      SCHEMA_REGISTRY_URL: schemaRegistryUrl(cfg),
      TOPIC_PREFIX: prefix,
      ADMIN_PORT: '0',
      DATABASE_URL: dbUrl,
      BYBIT_SIM_PORT: String(sim.port),
      SIGNALS_QUEUE: queue,
      ORDER_EVENTS_QUEUE: eventsQueue,
      MODEL_SIGNALS_QUEUE: `chaos.${prefix}model-signals`,
      EXCHANGE_STREAM_SOURCE: 'direct',
      LOG_LEVEL: 'info',
      METRICS_DEFAULTS: 'false',
      // A killed stage's partitions go to its successor after the session timeout.
      KAFKA_SESSION_TIMEOUT_MS: '6000',
      STAGE_RETRY_MAX_MS: '3000',
      SIGNAL_BRIDGE_RETRY_MAX_MS: '2000',
      EVENTS_OUT_RETRY_MAX_MS: '2000',
      MODEL_BRIDGE_RETRY_MAX_MS: '2000',
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
      RECONCILE_CRON: '*/5 * * * * *',
      RECONCILE_GRACE_MS: '1000',
      RECONCILE_STUCK_AFTER_MS: '3000',
      WARMUP_INTERVAL_MS: '5000',
    };
    const names = [...OM_PROCESSES, ...(opts.model ? ['model'] : [])];
    for (const n of names) procs.set(n, supervise(n, { env, dir, say }));
    const t1 = Date.now();
    procs.get('ops')!.start();
    await procs.get('ops')!.waitReady();
    for (const n of names.slice(1)) procs.get(n)!.start();
    for (const n of names.slice(1)) await procs.get(n)!.waitReady();
    say(`${names.length} service processes ready (${Date.now() - t1} ms)`);

    // Faults at the exchange for the whole flow.
    sim.faults.set({
      loseResponse: { probability: opts.answerLoss, paths: ['/v5/order/create'], mode: 'reset' },
      http5xx: { probability: opts.answerLoss, paths: ['/v5/order/create'], afterProcessing: true },
      rateLimitStorm: { probability: opts.answerLoss / 2, paths: ['/v5/order/create'] },
      ws: { drop: { probability: opts.answerLoss }, duplicate: { probability: opts.answerLoss }, reorder: { probability: opts.answerLoss } },
    });

    // The fault plan. Kills: with at least as many kills as processes, every process is killed at
    // least once; with fewer, at least one stage, one bridge (and the model service), then random ones.
    const plan: Fault[] = [];
    for (let i = 0; i < opts.kills; i++) {
      let target: string;
      if (opts.kills >= names.length && i < names.length) target = names[i]!;
      else {
        const from = i === 0 ? STAGES : i === 1 ? BRIDGES : i === 2 && opts.model ? ['model'] : names;
        target = from[Math.floor(rnd() * from.length)]!;
      }
      plan.push({ kind: 'kill', target });
    }
    for (let i = 0; i < (opts.kafkaRestarts ?? 0); i++) plan.push({ kind: 'kafka', signal: i % 2 === 0 ? 'SIGTERM' : 'SIGKILL' });
    // A graceful restart, dropped connections, a SIGKILL of the node (its VM), in turn.
    for (let i = 0; i < (opts.rabbitFaults ?? 0); i++) plan.push({ kind: 'rabbit', how: (['restart', 'close', 'kill'] as const)[i % 3]! });
    for (let i = plan.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [plan[i], plan[j]] = [plan[j]!, plan[i]!];
    }

    // The flow: one signal every 1/rate s, published with confirms, republished after a lost connection.
    const ids: string[] = [];
    const sentAt: number[] = [];
    const publisher = createSignalPublisher(rmq.url, queue);
    const flowMs = (opts.signals / opts.ratePerSec) * 1000;
    let flowDone = false;
    const flow = (async () => {
      const start = Date.now();
      for (let i = 0; i < opts.signals; i++) {
        const due = start + (i * 1000) / opts.ratePerSec;
        if (due > Date.now()) await sleep(due - Date.now());
        const [asset, price] = ASSETS[i % ASSETS.length]!;
        const sid = randomUUID();
        ids.push(sid);
        sentAt.push(Date.now());
        const signal = {
          signal_id: sid,
          signal_type: rnd() < 0.5 ? 'buy' : 'sell',
          asset,
          amount: 20 + Math.floor(rnd() * 30),
          confidence: 0.8,
          timestamp: new Date().toISOString(),
          strategy_id: `chaos-${i % 4}`,
          model_version: null,
          is_warmup: false,
          market_data_snapshot: { price, spread: 0.1, volume_24h: 1e6, volatility: 0.01, orderbook_depth: null, technical_indicators: null },
          metadata: null,
          trace_id: `chaos-${i}`,
        };
        await publisher.publish(Buffer.from(JSON.stringify(signal)), sid);
        figures.signals++;
      }
      flowDone = true;
    })();

    // "The flow moves again": the first signal sent after the fault began has its outcome.
    const Outcome = z.object({ signal_id: z.string(), outcome: z.string().nullable() });
    const flowRecovered = async (since: number): Promise<number | null> => {
      const until = Date.now() + 180_000;
      for (;;) {
        const i = sentAt.findIndex((t) => t >= since);
        if (i < 0 && flowDone) return null;
        if (i >= 0) {
          const r = await db.maybeOne(sql.type(Outcome)`SELECT signal_id::text, outcome FROM signals WHERE signal_id = ${ids[i]!}::uuid`);
          if (r?.outcome) return Date.now() - since;
        }
        if (Date.now() > until) {
          say(`flow did not move within 180 s of a fault`);
          return Date.now() - since;
        }
        await sleep(100);
      }
    };

    const monkey = (async () => {
      const gap = flowMs / (plan.length + 1);
      const start = Date.now();
      for (let f = 0; f < plan.length; f++) {
        const due = start + gap * (f + 0.5 + rnd());
        if (due > Date.now()) await sleep(due - Date.now());
        const fault = plan[f]!;
        const at = Date.now();
        let infraMs = 0;
        let what: string;
        if (fault.kind === 'kill') {
          infraMs = await procs.get(fault.target)!.kill9();
          figures.process_kills++;
          what = `kill -9 ${fault.target}; back (services started) after ${infraMs} ms`;
        } else if (fault.kind === 'kafka') {
          infraMs = await kfk.restart(fault.signal, 1000);
          figures.kafka_restarts++;
          what = `Kafka broker restarted (${fault.signal}); ready again after ${infraMs} ms`;
        } else if (fault.how === 'close') {
          const n = await rmq.closeConnections();
          figures.rabbit_faults++;
          what = `RabbitMQ: closed ${n} connections`;
        } else {
          infraMs = await rmq.restart(1000, fault.how === 'kill' ? 'kill' : 'stop');
          figures.rabbit_faults++;
          what = `RabbitMQ node restarted (${fault.how === 'kill' ? 'SIGKILL of its VM' : 'rabbitmqctl stop'}); accepting connections after ${infraMs} ms`;
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
    const st = sim.faults.stats;
    figures.exchange_faults = st.http5xx + st.loseResponse + st.rateLimitStorm + st.wsDrop + st.wsDuplicate + st.wsReorder;
    figures.faults += figures.exchange_faults;
    sim.faults.reset();

    // Settle: every signal has an outcome, and PostgreSQL agrees with the exchange about every order of ours.
    const OrderRow = z.object({ order_link_id: z.string(), status: z.string() });
    const settledBy = Date.now() + 240_000;
    for (;;) {
      const outcomes = await db.any(sql.type(Outcome)`SELECT signal_id::text, outcome FROM signals WHERE signal_id = ANY(${sql.array(ids, 'uuid')})`);
      const decided = outcomes.filter((o) => o.outcome !== null).length;
      const ours = sim.orders().filter((o) => String(o.orderLinkId).startsWith('om-'));
      const rows = await db.any(sql.type(OrderRow)`SELECT order_link_id, status FROM orders WHERE order_link_id LIKE 'om-%'`);
      const byLink = new Map(rows.map((r) => [r.order_link_id, r.status]));
      const agree = ours.every((o) => byLink.get(String(o.orderLinkId)) === String(o.orderStatus));
      // Create decisions still on their way to the exchange (e.g. placement retrying after a broker
      // restart at the very end of the flow): wait for them too.
      const placed = new Set(ours.map((o) => String(o.orderLinkId)));
      const decidedCreates = await db.any(sql.type(z.object({ order_link_id: z.string() }))`
        SELECT DISTINCT d.order_link_id FROM decisions d
        WHERE d.action = 'create' AND d.signal_id = ANY(${sql.array(ids, 'uuid')}) AND d.order_link_id IS NOT NULL`);
      const inFlight = decidedCreates.filter((c) => !placed.has(c.order_link_id) && byLink.get(c.order_link_id) !== 'Rejected').length;
      if (decided === ids.length && agree && inFlight === 0) break;
      if (Date.now() > settledBy) {
        say(`not settled: ${decided}/${ids.length} signals decided; ${ours.filter((o) => byLink.get(String(o.orderLinkId)) !== String(o.orderStatus)).length} orders disagree; ${inFlight} creates not at the exchange`);
        break;
      }
      await sleep(500);
    }

    // Invariants: outcomes, placements, PostgreSQL == exchange.
    const outcomes = await db.any(sql.type(Outcome)`SELECT signal_id::text, outcome FROM signals WHERE signal_id = ANY(${sql.array(ids, 'uuid')})`);
    const withOutcome = new Set(outcomes.filter((o) => o.outcome !== null).map((o) => o.signal_id));
    const noOutcome = ids.filter((x) => !withOutcome.has(x));
    if (noOutcome.length) say(`loss: ${noOutcome.length} signals without an outcome, e.g. ${noOutcome.slice(0, 3).join(', ')}`);
    figures.losses += noOutcome.length;
    figures.refused = outcomes.filter((o) => o.outcome === 'rejected').length;
    const creates = await db.any(sql.type(z.object({ order_link_id: z.string() }))`
      SELECT DISTINCT order_link_id FROM decisions
      WHERE action = 'create' AND signal_id = ANY(${sql.array(ids, 'uuid')}) AND order_link_id IS NOT NULL`);
    const atExchange = new Map<string, number>();
    for (const o of sim.orders()) atExchange.set(String(o.orderLinkId), (atExchange.get(String(o.orderLinkId)) ?? 0) + 1);
    const twice = [...atExchange.entries()].filter(([x, n]) => x.startsWith('om-') && n > 1);
    if (twice.length) say(`duplicate: ${twice.length} orderLinkIds placed more than once, e.g. ${twice[0]![0]}`);
    figures.duplicates += twice.length;
    // A create that never reached the exchange is a loss unless Bybit refused it (recorded Rejected).
    const rejected = new Set((await db.any(sql.type(z.object({ order_link_id: z.string() }))`SELECT order_link_id FROM orders WHERE status = 'Rejected' AND order_link_id IS NOT NULL`)).map((r) => r.order_link_id));
    const missing = creates.filter((c) => !atExchange.has(c.order_link_id) && !rejected.has(c.order_link_id));
    if (missing.length) say(`loss: ${missing.length} create decisions without an order at the exchange, e.g. ${missing[0]!.order_link_id}`);
    figures.losses += missing.length;
    figures.orders = creates.length;
    const rows = await db.any(sql.type(OrderRow)`SELECT order_link_id, status FROM orders WHERE order_link_id LIKE 'om-%'`);
    const byLink = new Map(rows.map((r) => [r.order_link_id, r.status]));
    const disagree = sim.orders().filter((o) => String(o.orderLinkId).startsWith('om-') && byLink.get(String(o.orderLinkId)) !== String(o.orderStatus));
    if (disagree.length) say(`loss: ${disagree.length} orders where PostgreSQL and the exchange disagree, e.g. ${String(disagree[0]!.orderLinkId)}`);
    figures.losses += disagree.length;

    // Invariant: every order state change reached orders.events and the RabbitMQ order events queue.
    const codec = await createTopicCodec({ registryUrl: schemaRegistryUrl(cfg), prefix });
    const events = await readTopic(createKafka({ brokers: kfk.brokers, clientId: 'chaos-reader', logger }), `${prefix}orders.events`, codec);
    const topicIds = new Set(events.map((e) => e.event_id));
    const queued = await drainQueue(rmq.url, eventsQueue, (msgs) => {
      const seen = new Set(msgs.map((m) => m.event_id));
      for (const x of topicIds) if (!seen.has(x)) return false;
      return true;
    });
    const verdict = await checkOrderEvents(db, events, queued, ids);
    for (const p of verdict.problems) say(p);
    figures.order_events = topicIds.size;
    figures.event_repeats = verdict.repeats;
    figures.losses += verdict.losses;
    figures.duplicates += verdict.duplicates;
    figures.crashes = [...procs.values()].reduce((a, p) => a + p.crashes, 0);
    say(`order events: ${topicIds.size} distinct on the topic, ${queued.length} messages on the RabbitMQ queue, ${verdict.repeats} repeats (same event_id)`);
    return figures;
  } finally {
    await Promise.all([...procs.values()].map((p) => p.stop(10_000).catch(() => {})));
    process.removeListener('exit', killAll);
    for (const s of signals) process.removeListener(s, onSignal);
    await sim.close().catch(() => {});
    await (pool as DatabasePool | null)?.end().catch(() => {});
    await dropDatabase(dbUrl).catch(() => {});
    await Promise.all([(kafka as PrivateKafka | null)?.stop(), (rabbit as PrivateRabbit | null)?.stop()].map((p) => p?.catch(() => {})));
    if (process.env.CHAOS_KEEP_DIR) say(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

function mulberry(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function figuresLine(f: ChaosFigures): string {
  return `signals=${f.signals} faults=${f.faults} duplicates=${f.duplicates} losses=${f.losses} max_recovery_ms=${f.max_recovery_ms}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  const n = (name: string, d: number) => Number(arg(name) ?? process.env[`CHAOS_${name.toUpperCase().replace(/-/g, '_')}`] ?? d);
  const started = Date.now();
  const f = await runChaos({
    signals: n('signals', 900),
    ratePerSec: n('rate', 4),
    kills: n('kills', 10),
    kafkaRestarts: n('kafka-restarts', 2),
    rabbitFaults: n('rabbit-faults', 4),
    answerLoss: n('answer-loss', 0.05),
    seed: n('seed', 1),
    model: (arg('model') ?? process.env.CHAOS_MODEL ?? 'true') !== 'false',
    log: (l) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${l}`),
  });
  console.log(
    `orders=${f.orders} refused=${f.refused} process_kills=${f.process_kills} kafka_restarts=${f.kafka_restarts} rabbit_faults=${f.rabbit_faults} exchange_faults=${f.exchange_faults} crashes=${f.crashes} republished=${f.republished} order_events=${f.order_events} event_repeats=${f.event_repeats} elapsed_s=${Math.round((Date.now() - started) / 1000)}`,
  );
  console.log(figuresLine(f));
  process.exit(f.duplicates === 0 && f.losses === 0 ? 0 : 1);
}
