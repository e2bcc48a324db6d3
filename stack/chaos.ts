// Chaos run: a steady flow of signals into the order manager (a separate process, on the real local
// stack, trading on the simulator) while the process is killed with SIGKILL at random moments and
// restarted; the simulator also loses answers after accepting orders and sends 5xx. After the flow,
// once the system has settled, the invariants are checked:
//   - every signal has exactly one recorded outcome (an order decision or a refusal);
//   - no orderLinkId was placed twice, and every create decision has exactly one order at the exchange;
//   - PostgreSQL's view of our orders equals the simulator's.
// `npm run chaos` runs the long form and ends with the figures line; the test suite runs a short one.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { connect } from 'amqplib';
import { z } from 'zod';
import { loadConfig, kafkaBrokers } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { createKafka } from '../runtime/kafka.ts';
import { topicSpecs } from '../runtime/topics.ts';
import { ensureDatabase, dropDatabase, withDatabase, createDb, sql } from '../runtime/db.ts';
import { migrate } from '../runtime/migrate.ts';
import { startSimulator } from '../sim/server.ts';
import { SIM_BALANCES } from './services.ts';
import { ROOT } from './paths.ts';

export interface ChaosOptions {
  signals: number;
  ratePerSec: number;
  kills: number;
  /** Fraction of order/create answers lost after the order was accepted, and of 5xx answers. */
  answerLoss: number;
  seed: number;
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
}

const ASSETS: Array<[string, number]> = [
  ['BTCUSDT', 60000],
  ['ETHUSDT', 3000],
  ['SOLUSDT', 150],
];

export async function runChaos(opts: ChaosOptions): Promise<ChaosFigures> {
  const say = opts.log ?? (() => {});
  const cfg = loadConfig();
  const logger = createLogger({ ...cfg, LOG_LEVEL: 'silent' }, 'chaos');
  const prefix = `chaos-${randomBytes(4).toString('hex')}.`;
  const queue = `chaos.${prefix}signals`;
  const dbUrl = withDatabase(cfg.DATABASE_URL, `chaos_${randomBytes(4).toString('hex')}`);
  const sim = await startSimulator({ port: 0, seed: opts.seed, balances: { ...SIM_BALANCES, USDT: 1_000_000 }, rateLimits: { multiplier: 10 } });
  for (const [s, p] of ASSETS) sim.setPrice(s, p);
  await ensureDatabase(dbUrl);
  const pool = await createDb(dbUrl);
  await migrate(pool);
  const kafka = createKafka({ brokers: kafkaBrokers(cfg), clientId: 'chaos', logger });
  const admin = kafka.admin();
  await admin.connect();
  const specs = topicSpecs(prefix, 3);
  await admin.ensureTopics(specs);

  const env = {
    ...process.env,
    TOPIC_PREFIX: prefix,
    ADMIN_PORT: '0',
    DATABASE_URL: dbUrl,
    BYBIT_SIM_PORT: String(sim.port),
    SIGNALS_QUEUE: queue,
    ORDER_EVENTS_QUEUE: `chaos.${prefix}events`,
    EXCHANGE_STREAM_SOURCE: 'direct',
    LOG_LEVEL: 'info',
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
  };
  let child: ChildProcess | null = null;
  let startedAt = 0;
  let readyAt = 0;
  const start = () => {
    startedAt = Date.now();
    readyAt = 0;
    const c = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'stack/service-main.ts'), 'order-manager'], { env, stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT });
    c.stdout!.on('data', (d: Buffer) => {
      if (!readyAt && d.toString().includes('"services started"')) readyAt = Date.now();
    });
    child = c;
    return c;
  };
  const waitReady = async () => {
    const until = Date.now() + 180_000;
    while (!readyAt && Date.now() < until) await sleep(50);
    if (!readyAt) throw new Error('order manager did not become ready');
    return readyAt - startedAt;
  };

  const conn = await connect(cfg.AMQP_URL);
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue(queue, { durable: true });
  const figures: ChaosFigures = { signals: 0, faults: 0, duplicates: 0, losses: 0, max_recovery_ms: 0, orders: 0, refused: 0 };
  const ids: string[] = [];
  try {
    start();
    await waitReady();
    // Faults at the exchange for the whole flow: answers lost after the order was accepted, 5xx.
    // Plus dropped, duplicated and reordered websocket pushes, which the reconciler must repair.
    sim.faults.set({
      loseResponse: { probability: opts.answerLoss, paths: ['/v5/order/create'], mode: 'reset' },
      http5xx: { probability: opts.answerLoss, paths: ['/v5/order/create'], afterProcessing: true },
      ws: { drop: { probability: opts.answerLoss }, duplicate: { probability: opts.answerLoss }, reorder: { probability: opts.answerLoss } },
    });
    const killAt = new Set(Array.from({ length: opts.kills }, (_, i) => Math.floor(((i + 1) * opts.signals) / (opts.kills + 1))));
    const rnd = mulberry(opts.seed);
    for (let i = 0; i < opts.signals; i++) {
      const [asset, price] = ASSETS[i % ASSETS.length]!;
      const id = randomUUID();
      ids.push(id);
      const signal = {
        signal_id: id,
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
      ch.sendToQueue(queue, Buffer.from(JSON.stringify(signal)), { persistent: true, messageId: id });
      await ch.waitForConfirms();
      figures.signals++;
      if (killAt.has(i)) {
        // kill -9 after a random part of a second, so it lands anywhere in the pipeline's work.
        await sleep(Math.floor(rnd() * 800));
        const dying = child as ChildProcess | null;
        dying?.kill('SIGKILL');
        await new Promise((r) => dying?.once('exit', r));
        figures.faults++;
        say(`killed the order manager after signal ${i + 1}`);
        start();
        const ms = await waitReady();
        figures.max_recovery_ms = Math.max(figures.max_recovery_ms, ms);
      }
      await sleep(1000 / opts.ratePerSec);
    }
    const st = sim.faults.stats;
    figures.faults += st.http5xx + st.loseResponse + st.wsDrop + st.wsDuplicate + st.wsReorder;
    sim.faults.reset();

    // Settle: every signal has an outcome, and PostgreSQL agrees with the exchange about every order of ours.
    const Outcome = z.object({ signal_id: z.string(), outcome: z.string().nullable() });
    const OrderRow = z.object({ order_link_id: z.string(), status: z.string() });
    const settledBy = Date.now() + 240_000;
    for (;;) {
      const outcomes = await pool.any(sql.type(Outcome)`SELECT signal_id::text, outcome FROM signals WHERE signal_id = ANY(${sql.array(ids, 'uuid')})`);
      const decided = outcomes.filter((o) => o.outcome !== null).length;
      const ours = sim.orders().filter((o) => String(o.orderLinkId).startsWith('om-'));
      const rows = await pool.any(sql.type(OrderRow)`SELECT order_link_id, status FROM orders WHERE order_link_id LIKE 'om-%'`);
      const byLink = new Map(rows.map((r) => [r.order_link_id, r.status]));
      const agree = ours.every((o) => byLink.get(String(o.orderLinkId)) === String(o.orderStatus));
      if (decided === ids.length && agree) break;
      if (Date.now() > settledBy) {
        say(`not settled: ${decided}/${ids.length} signals decided; ${ours.filter((o) => byLink.get(String(o.orderLinkId)) !== String(o.orderStatus)).length} orders disagree`);
        break;
      }
      await sleep(500);
    }

    // Invariants.
    const outcomes = await pool.any(sql.type(Outcome)`SELECT signal_id::text, outcome FROM signals WHERE signal_id = ANY(${sql.array(ids, 'uuid')})`);
    const withOutcome = new Set(outcomes.filter((o) => o.outcome !== null).map((o) => o.signal_id));
    figures.losses += ids.filter((id) => !withOutcome.has(id)).length;
    figures.refused = outcomes.filter((o) => o.outcome === 'rejected').length;
    const creates = await pool.any(sql.type(z.object({ order_link_id: z.string() }))`
      SELECT DISTINCT order_link_id FROM decisions
      WHERE action = 'create' AND signal_id = ANY(${sql.array(ids, 'uuid')}) AND order_link_id IS NOT NULL`);
    const atExchange = new Map<string, number>();
    for (const o of sim.orders()) atExchange.set(String(o.orderLinkId), (atExchange.get(String(o.orderLinkId)) ?? 0) + 1);
    figures.duplicates += [...atExchange.entries()].filter(([k, n]) => k.startsWith('om-') && n > 1).length;
    // A create that never reached the exchange is a loss unless Bybit refused it (recorded Rejected).
    const rejected = new Set((await pool.any(sql.type(z.object({ order_link_id: z.string() }))`SELECT order_link_id FROM orders WHERE status = 'Rejected' AND order_link_id IS NOT NULL`)).map((r) => r.order_link_id));
    figures.losses += creates.filter((c) => !atExchange.has(c.order_link_id) && !rejected.has(c.order_link_id)).length;
    figures.orders = creates.length;
    const rows = await pool.any(sql.type(OrderRow)`SELECT order_link_id, status FROM orders WHERE order_link_id LIKE 'om-%'`);
    const byLink = new Map(rows.map((r) => [r.order_link_id, r.status]));
    figures.losses += sim.orders().filter((o) => String(o.orderLinkId).startsWith('om-') && byLink.get(String(o.orderLinkId)) !== String(o.orderStatus)).length;
    return figures;
  } finally {
    (child as ChildProcess | null)?.kill('SIGTERM');
    await ch.deleteQueue(queue).catch(() => {});
    await ch.deleteQueue(`chaos.${prefix}events`).catch(() => {});
    await conn.close().catch(() => {});
    await admin.deleteTopics(specs.map((s) => s.topic)).catch(() => {});
    await admin.disconnect();
    await pool.end();
    await dropDatabase(dbUrl).catch(() => {});
    await sim.close();
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

if (import.meta.url === `file://${process.argv[1]}`) {
  const n = (name: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? d);
  const f = await runChaos({ signals: n('signals', 300), ratePerSec: n('rate', 10), kills: n('kills', 6), answerLoss: n('answer-loss', 0.05), seed: n('seed', 1), log: (l) => console.log(l) });
  console.log(`orders=${f.orders} refused=${f.refused}`);
  console.log(`signals=${f.signals} faults=${f.faults} duplicates=${f.duplicates} losses=${f.losses} max_recovery_ms=${f.max_recovery_ms}`);
  process.exit(f.duplicates === 0 && f.losses === 0 ? 0 : 1);
}
