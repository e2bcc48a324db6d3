// Replay backtests (`npm run cli -- replay`): recorded signals (a range of a raw signal topic, or a
// JSON-lines file) fed one by one through the real order-manager units against a fresh, seeded
// exchange simulator, in a fresh namespace (topics, consumer groups, RabbitMQ queues, database) that
// is deleted afterwards. The report (JSON) and an equity-curve chart (self-contained HTML, inline
// SVG) go to reports/backtest-<name>.{json,html}. Same seed + same input → same report: see
// docs/backtest.md for what is deterministic and why.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { connect } from 'amqplib';
import { z } from 'zod';
import { loadConfig, kafkaBrokers } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { failTool, createKafka, type KafkaPort, type InMessage } from '../runtime/kafka.ts';
import { createRuntime, runUnits, type Runtime } from '../runtime/service.ts';
import { ensureDatabase, dropDatabase, withDatabase, createDb, sql } from '../runtime/db.ts';
import { migrate } from '../runtime/migrate.ts';
import { ManualClock } from '../runtime/clock.ts';
import { topicSpecs } from '../runtime/topics.ts';
import { startSimulator } from '../sim/server.ts';
import { SERVICES, SIM_BALANCES } from '../stack/services.ts';
import { OPEN_STATUSES } from '../pipelines/risk-rules.ts';
import { parseIsoTimestamp } from '../pipelines/signal-format.ts';
import { UUID_RE } from '../pipelines/record-guards.ts';
import { EXIT, UsageError } from './context.ts';
import { RUNTIME_PARTS, UNIT_SCHEMAS } from '../stack/services.ts';

type Sim = Awaited<ReturnType<typeof startSimulator>>;

/** One recorded signal: the raw bytes as received, with what the replay needs to know of them. */
export interface SourceRecord {
  value: Buffer;
  key: string | null;
  traceId: string | null;
  /** Kafka record timestamp (topic source) or null (file). */
  recordTime: number | null;
}

/** Per-partition offsets: one number for every partition, or partition → offset. */
export type OffsetSpec = number | Record<number, number>;

export interface ReplayOptions {
  /** Report name: reports/backtest-<name>.{json,html}. */
  name: string;
  /** Simulator seed (default 1). */
  seed?: number;
  /** JSON-lines file of signals (one signal JSON per line). */
  file?: string;
  /** Source namespace (TOPIC_PREFIX) whose `signals.raw` topic is replayed. */
  topicPrefix?: string;
  /** First offset per partition (inclusive); default the partition's start. */
  fromOffset?: OffsetSpec;
  /** Last offset per partition (exclusive); default the high watermark when the replay starts. */
  toOffset?: OffsetSpec;
  /** Record timestamps (epoch ms) from (inclusive) / to (exclusive). */
  fromTime?: number;
  toTime?: number;
  /** Where reports go (default `reports`). */
  reportsDir?: string;
  /** Progress bar on stderr (default true). */
  progress?: boolean;
  /** How long one signal may take through the pipeline before the replay moves on (default 30 s). */
  signalTimeoutMs?: number;
  /** Longest simulated market time between two signals (default 60 s); see docs/backtest.md. */
  maxGapMs?: number;
  /** pino level of the replayed services (default silent). */
  logLevel?: string;
  /** Extra settings for the replayed services (e.g. RISK_MAX_ORDER_NOTIONAL). */
  settings?: Record<string, string>;
  /** Stops the replay between signals; the namespace is still cleaned up. */
  signal?: AbortSignal;
}

export interface StrategyRow {
  strategy_id: string;
  signals: number;
  placed: number;
  rejected: number;
  orders: number;
  fills: number;
  volume: number;
  fees: number;
  realised_pnl: number;
  unrealised_pnl: number;
  pnl: number;
}

export interface SignalRow {
  index: number;
  signal_id: string | null;
  strategy_id: string | null;
  asset: string | null;
  side: string | null;
  /** placed | rejected | invalid (refused before any decision) | timeout */
  outcome: string;
  reason: string | null;
  orders: number;
  fills: number;
}

export interface BacktestReport {
  name: string;
  seed: number;
  input: { source: 'file' | 'topic'; what: string; records: number };
  settings: Record<string, string>;
  signals: { total: number; placed: number; rejected: number; invalid: number; timeouts: number; reasons: Record<string, number> };
  orders: number;
  fills: number;
  volume: number;
  fees: number;
  slippage_bps: { avg_weighted: number; avg: number; worst: number };
  pnl: { realised: number; unrealised: number; total: number };
  max_drawdown: { amount: number; peak_index: number; trough_index: number };
  final_prices: Record<string, number>;
  per_strategy: StrategyRow[];
  per_signal: SignalRow[];
  /** Equity (PnL of the replayed trades, USDT) after each signal; index 0 = before the first. */
  equity_curve: Array<{ index: number; equity: number }>;
}

export interface ReplayResult {
  report: BacktestReport;
  jsonPath: string;
  htmlPath: string;
}

// ---------------------------------------------------------------------------------------------
// Numbers

const round = (x: number, d = 8): number => {
  if (!Number.isFinite(x)) return 0;
  const f = 10 ** d;
  const r = Math.round(x * f) / f;
  return Object.is(r, -0) ? 0 : r;
};

// ---------------------------------------------------------------------------------------------
// Inputs

/** Signals of a JSON-lines file: every non-empty line is one signal, sent as its exact bytes. */
export async function readSignalFile(path: string): Promise<SourceRecord[]> {
  const text = await readFile(path, 'utf8');
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('//'))
    .map((l) => ({ value: Buffer.from(l), key: null, traceId: null, recordTime: null }));
}

function offsetFor(spec: OffsetSpec | undefined, partition: number): number | undefined {
  if (spec === undefined) return undefined;
  return typeof spec === 'number' ? spec : spec[partition];
}

/**
 * Records of `<prefix>signals.raw` within the offset and time ranges, read-committed, ordered by
 * (record timestamp, partition, offset) so the replay order is the same every time.
 */
export async function readSignalTopic(kafka: KafkaPort, opts: Pick<ReplayOptions, 'topicPrefix' | 'fromOffset' | 'toOffset' | 'fromTime' | 'toTime'>): Promise<SourceRecord[]> {
  const topic = `${opts.topicPrefix ?? ''}signals.raw`;
  const admin = kafka.admin();
  await admin.connect();
  let ranges: Array<{ partition: number; from: number; to: number }>;
  try {
    const topics = await admin.listTopics();
    if (!topics.includes(topic)) throw new UsageError(`topic ${topic} does not exist`);
    const offsets = await admin.topicOffsets(topic);
    ranges = offsets.map((o) => {
      const low = Number(o.low), high = Number(o.high);
      return { partition: o.partition, from: Math.max(low, offsetFor(opts.fromOffset, o.partition) ?? low), to: Math.min(high, offsetFor(opts.toOffset, o.partition) ?? high) };
    });
  } finally {
    await admin.disconnect();
  }
  const wanted = ranges.filter((r) => r.to > r.from);
  if (wanted.length === 0) return [];
  const consumer = kafka.consumer({ groupId: `replay-reader-${randomBytes(4).toString('hex')}`, readCommitted: true, onFatal: failTool('replay') });
  const got: InMessage[] = [];
  const seen = new Map<number, number>();
  let joinedAt = 0;
  let lastActivity = 0;
  consumer.onGroupJoin(() => {
    joinedAt = Date.now();
    lastActivity = joinedAt;
  });
  await consumer.connect();
  try {
    await consumer.subscribe([topic], true);
    await consumer.run(async (batch, ctl) => {
      for (const m of batch.messages) {
        const r = wanted.find((w) => w.partition === m.partition);
        const off = Number(m.offset);
        if (r && off >= r.from && off < r.to) got.push(m);
        seen.set(m.partition, Math.max(seen.get(m.partition) ?? -1, off));
        ctl.resolveOffset(m.offset);
      }
      lastActivity = Date.now();
    });
    const deadline = Date.now() + 120_000;
    for (;;) {
      const complete = wanted.every((w) => (seen.get(w.partition) ?? -1) >= w.to - 1);
      // Transaction markers take offsets too: the last data record may sit before `to - 1`.
      const idle = joinedAt > 0 && Date.now() - lastActivity > 5_000;
      if (complete || idle) break;
      if (Date.now() > deadline) throw new Error(`reading ${topic} took longer than 120 s`);
      await sleep(100);
    }
  } finally {
    await consumer.disconnect();
  }
  return got
    .filter((m) => m.value !== null)
    .filter((m) => (opts.fromTime === undefined || m.timestamp >= opts.fromTime) && (opts.toTime === undefined || m.timestamp < opts.toTime))
    .sort((a, b) => a.timestamp - b.timestamp || a.partition - b.partition || Number(a.offset) - Number(b.offset))
    .map((m) => ({ value: m.value!, key: m.key, traceId: m.headers.trace_id ?? null, recordTime: m.timestamp }));
}

interface Parsed {
  obj: Record<string, unknown> | null;
  signalId: string | null;
  strategyId: string | null;
  asset: string | null;
  side: string | null;
  price: number | null;
  time: number | null;
}

function parseRecord(r: SourceRecord): Parsed {
  let obj: Record<string, unknown> | null = null;
  try {
    const v: unknown = JSON.parse(r.value.toString('utf8'));
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) obj = v as Record<string, unknown>;
  } catch {
    obj = null;
  }
  const str = (x: unknown): string | null => (typeof x === 'string' && x.length > 0 ? x : null);
  const snap = obj?.market_data_snapshot as Record<string, unknown> | undefined;
  const price = typeof snap?.price === 'number' && Number.isFinite(snap.price) && snap.price > 0 ? snap.price : null;
  const ts = str(obj?.timestamp);
  const signalId = str(obj?.signal_id);
  return {
    obj,
    signalId: signalId && UUID_RE.test(signalId) ? signalId.toLowerCase() : null,
    strategyId: str(obj?.strategy_id),
    asset: str(obj?.asset),
    side: str(obj?.signal_type) ?? str(obj?.signal),
    price,
    time: (ts ? parseIsoTimestamp(ts) : null) ?? r.recordTime,
  };
}

// ---------------------------------------------------------------------------------------------
// Progress

function progressBar(enabled: boolean, total: number): { update(n: number): void; done(): void } {
  const width = 30;
  const draw = (n: number) => {
    if (!enabled) return;
    const filled = total === 0 ? width : Math.round((n / total) * width);
    process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${n}/${total}`);
  };
  return { update: draw, done: () => enabled && process.stderr.write('\n') };
}

// ---------------------------------------------------------------------------------------------
// Waiting for the pipeline

const signalRow = z.object({ status: z.string(), outcome: z.string().nullable(), outcome_reason: z.string().nullable() });
const linkRow = z.object({ order_link_id: z.string() });
const orderRow = z.object({ order_link_id: z.string(), status: z.string() });
const balanceRow = z.object({ coin: z.string(), wallet_balance: z.string() });

async function until<T>(fn: () => Promise<T | null>, deadline: number): Promise<T | null> {
  for (;;) {
    const v = await fn();
    if (v !== null) return v;
    if (Date.now() > deadline) return null;
    await sleep(50);
  }
}

/** The simulator's wallet of the (single) account, coin → wallet balance. */
function simWallet(sim: Sim): Map<string, number> {
  const acc = (sim.state().accounts as Array<{ wallet: { coin: Array<{ coin: string; walletBalance: string }> } }>)[0];
  return new Map((acc?.wallet.coin ?? []).map((c) => [c.coin, Number(c.walletBalance)]));
}

/**
 * Wait until a signal is fully processed: decided or rejected; every order it created in a final
 * state; and the database's balances equal to the simulator's (so the next signal is sized against
 * the same account every run).
 */
async function settle(rt: Runtime, sim: Sim, signalId: string, timeoutMs: number): Promise<{ outcome: string; reason: string | null } | null> {
  const deadline = Date.now() + timeoutMs;
  const sig = await until(async () => {
    const r = await rt.db.maybeOne(sql.type(signalRow)`SELECT status, outcome, outcome_reason FROM signals WHERE signal_id = ${signalId}`);
    return r && (r.status === 'decided' || r.status === 'rejected') ? r : null;
  }, deadline);
  if (!sig) return null;
  const links = (await rt.db.any(sql.type(linkRow)`SELECT DISTINCT order_link_id FROM decisions WHERE signal_id = ${signalId} AND action = 'create' AND order_link_id IS NOT NULL`)).map((r) => r.order_link_id);
  if (links.length > 0) {
    const open = new Set<string>(OPEN_STATUSES);
    const final = await until(async () => {
      const rows = await rt.db.any(sql.type(orderRow)`SELECT order_link_id, status FROM orders WHERE order_link_id = ANY(${sql.array(links, 'text')})`);
      return rows.length >= links.length && rows.every((r) => !open.has(r.status)) ? rows : null;
    }, deadline);
    if (!final) return null;
    const synced = await until(async () => {
      const want = simWallet(sim);
      const rows = await rt.db.any(sql.type(balanceRow)`SELECT coin, wallet_balance::text AS wallet_balance FROM balances`);
      const have = new Map(rows.map((r) => [r.coin, Number(r.wallet_balance)]));
      for (const [coin, v] of want) if (Math.abs((have.get(coin) ?? 0) - v) > 1e-9) return null;
      return true;
    }, deadline);
    if (!synced) return null;
  }
  const rejected = sig.status === 'rejected' || sig.outcome === 'rejected';
  return { outcome: rejected ? 'rejected' : 'placed', reason: rejected ? (sig.outcome_reason ?? 'rejected') : null };
}

// ---------------------------------------------------------------------------------------------
// Accounting (average cost per strategy and symbol, fees in USDT at the execution price)

interface Book {
  qty: number;
  avg: number;
  realised: number;
}

function applyFill(b: Book, signedQty: number, price: number, feeUsdt: number): void {
  b.realised -= feeUsdt;
  if (b.qty === 0 || Math.sign(b.qty) === Math.sign(signedQty)) {
    const q = b.qty + signedQty;
    b.avg = (b.avg * Math.abs(b.qty) + price * Math.abs(signedQty)) / Math.abs(q);
    b.qty = q;
    return;
  }
  const closed = Math.min(Math.abs(signedQty), Math.abs(b.qty));
  b.realised += closed * (price - b.avg) * Math.sign(b.qty);
  const q = b.qty + signedQty;
  if (Math.abs(q) < 1e-12) {
    b.qty = 0;
    b.avg = 0;
  } else if (Math.sign(q) !== Math.sign(b.qty)) {
    b.qty = q;
    b.avg = price;
  } else b.qty = q;
}

const unrealised = (b: Book, mark: number): number => (b.qty === 0 ? 0 : b.qty * (mark - b.avg));

// ---------------------------------------------------------------------------------------------
// The run

const SIM_KEY = 'sim-key';
const SIM_SECRET = 'sim-secret';
const DEFAULT_T0 = Date.UTC(2025, 0, 1);

export async function runReplay(opts: ReplayOptions): Promise<ReplayResult> {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(opts.name)) throw new UsageError('--name must be 1-64 letters, digits, dots, dashes or underscores');
  if (!opts.file && opts.topicPrefix === undefined) throw new UsageError('replay needs --file or --topic-prefix');
  const seed = opts.seed ?? 1;
  const cfg = loadConfig({ ...process.env, LOG_LEVEL: 'silent' }, UNIT_SCHEMAS);
  const logger = createLogger(cfg, 'replay');

  // 1. The input, in replay order.
  let records: SourceRecord[];
  let what: string;
  if (opts.file) {
    records = await readSignalFile(opts.file);
    what = basename(opts.file);
  } else {
    const kafka = createKafka({ brokers: kafkaBrokers(cfg), clientId: `${cfg.KAFKA_CLIENT_ID}-replay`, logger });
    records = await readSignalTopic(kafka, opts);
    const fmt = (s: OffsetSpec | undefined) => (s === undefined ? '' : typeof s === 'number' ? String(s) : Object.entries(s).map(([p, o]) => `${p}:${o}`).join(','));
    what = `${opts.topicPrefix ?? ''}signals.raw offsets [${fmt(opts.fromOffset) || 'start'}, ${fmt(opts.toOffset) || 'end'}) times [${opts.fromTime ?? '-'}, ${opts.toTime ?? '-'})`;
  }
  const parsed = records.map(parseRecord);

  // 2. A fresh world: simulator on a manual clock starting at the first signal's time, namespace, database.
  const t0 = Math.floor((parsed.find((p) => p.time !== null)?.time ?? DEFAULT_T0) / 1000) * 1000;
  const simClock = new ManualClock(t0);
  const sim = await startSimulator({ port: 0, seed, balances: SIM_BALANCES, clock: simClock, credentials: [{ key: SIM_KEY, secret: SIM_SECRET }] });
  const tag = randomBytes(4).toString('hex');
  const prefix = `replay-${tag}.`;
  const dbUrl = withDatabase(cfg.DATABASE_URL, `replay_${tag}`);
  const signalsQueue = `replay.${prefix}trading_signals`;
  const eventsQueue = `replay.${prefix}order_events`;
  const kafka = createKafka({ brokers: kafkaBrokers(cfg), clientId: `${cfg.KAFKA_CLIENT_ID}-replay`, logger });
  const admin = kafka.admin();
  const specs = topicSpecs(prefix, cfg.TOPIC_PARTITIONS);
  // Tickers reach the database from a 5 s REST poll (wall-clock timing): a replay sizes from each
  // signal's snapshot price instead, which the simulator's market is set to (docs/backtest.md).
  // The wallet the next signal is sized against is refreshed every second rather than every 5 s.
  const settings: Record<string, string> = { RISK_TICKER_MAX_AGE_MS: '0', SYNC_MARKET_CRON: '* * * * * *', ...(opts.settings ?? {}) };
  let rt: Runtime | null = null;
  let stop: (() => Promise<void>) | null = null;
  const producer = kafka.producer();
  let producerUp = false;
  const bar = progressBar(opts.progress ?? true, records.length);
  try {
    await ensureDatabase(dbUrl);
    const pool = await createDb(dbUrl);
    await migrate(pool);
    await pool.end();
    await admin.connect();
    await admin.ensureTopics(specs);
    rt = await createRuntime(
      'replay', RUNTIME_PARTS,
      {
        ...settings,
        TOPIC_PREFIX: prefix,
        DATABASE_URL: dbUrl,
        ADMIN_PORT: '0',
        LOG_LEVEL: opts.logLevel ?? 'silent',
        BYBIT_ENV: 'sim',
        BYBIT_SIM_PORT: String(sim.port),
        BYBIT_API_KEY: SIM_KEY,
        BYBIT_API_SECRET: SIM_SECRET,
        BYBIT_API_SECRET_FILE: '',
        EXCHANGE_STREAM_SOURCE: 'direct',
        SIGNALS_QUEUE: signalsQueue,
        ORDER_EVENTS_QUEUE: eventsQueue,
      } as Record<string, string>,
      undefined,
      { logDestination: { write: (l) => void process.stderr.write(l) } });
    ({ stop } = await runUnits(rt, SERVICES['order-manager']!.units));
    const runtime = rt;
    const ready = await until(async () => ((await runtime.admin.readiness()).ready ? true : null), Date.now() + 120_000);
    if (!ready) throw new Error('the order manager did not become ready within 120 s');
    await producer.connect();
    producerUp = true;

    // 3. Feed the signals one at a time; the market is set to each signal's snapshot price.
    const rawTopic = `${prefix}signals.raw`;
    const maxGap = opts.maxGapMs ?? 60_000;
    const books = new Map<string, Book>(); // strategy|symbol
    const linkToSignal = new Map<string, number>();
    const rows: SignalRow[] = [];
    const curve: Array<{ index: number; equity: number }> = [{ index: 0, equity: 0 }];
    let seenExec = 0;
    let prevTime: number | null = null;
    const equityNow = (): number => {
      let e = 0;
      for (const [k, b] of books) e += b.realised + unrealised(b, sim.exchange.mid(k.split('|')[1]!));
      return e;
    };
    const fills: Array<Record<string, unknown>> = [];
    bar.update(0);
    for (let i = 0; i < records.length; i++) {
      if (opts.signal?.aborted) throw new Error('interrupted');
      const r = records[i]!;
      const p = parsed[i]!;
      // Market time moves by the recorded spacing (at least one price step, at most maxGap).
      const gap = p.time !== null && prevTime !== null ? Math.min(Math.max(p.time - prevTime, 1000), maxGap) : 1000;
      if (p.time !== null) prevTime = p.time;
      sim.advance(gap);
      const symbolKnown = p.asset !== null && sim.exchange.prices.symbols().includes(p.asset);
      if (symbolKnown && p.price !== null) sim.setPrice(p.asset!, p.price);
      // Re-stamped to replay time so validation's age check judges it as just received.
      let value = r.value;
      if (p.obj && typeof p.obj.timestamp === 'string') value = Buffer.from(JSON.stringify({ ...p.obj, timestamp: new Date().toISOString() }));
      const headers: Record<string, string> = { received_at: String(Date.now()), trace_id: r.traceId ?? (typeof p.obj?.trace_id === 'string' ? p.obj.trace_id : `replay-${i}`) };
      await producer.send(rawTopic, [{ key: p.asset ?? r.key, value, headers }]);
      let outcome: { outcome: string; reason: string | null } | null;
      if (p.signalId === null || p.obj === null) outcome = { outcome: 'invalid', reason: p.obj === null ? 'malformed_json' : 'invalid_signal_id' };
      else {
        outcome = await settle(runtime, sim, p.signalId, opts.signalTimeoutMs ?? 30_000);
        if (outcome === null) outcome = { outcome: 'timeout', reason: null };
        else if (outcome.outcome === 'rejected') {
          const st = await runtime.db.maybeOne(sql.type(z.object({ status: z.string() }))`SELECT status FROM signals WHERE signal_id = ${p.signalId}`);
          if (st?.status === 'rejected') outcome = { outcome: 'invalid', reason: outcome.reason };
        }
      }
      // New executions at the simulator belong to this signal's orders.
      const links = new Set<string>();
      if (p.signalId) {
        const ls = await runtime.db.any(sql.type(linkRow)`SELECT DISTINCT order_link_id FROM decisions WHERE signal_id = ${p.signalId} AND action = 'create' AND order_link_id IS NOT NULL`);
        for (const l of ls) {
          links.add(l.order_link_id);
          if (!linkToSignal.has(l.order_link_id)) linkToSignal.set(l.order_link_id, i);
        }
      }
      const execs = sim.executions().slice(seenExec);
      seenExec += execs.length;
      let nFills = 0;
      for (const e of execs) {
        const si = linkToSignal.get(String(e.orderLinkId));
        if (si === undefined) continue;
        const ps = parsed[si]!;
        const price = Number(e.execPrice), qty = Number(e.execQty), fee = Number(e.execFee);
        const feeUsdt = e.feeCurrency && e.feeCurrency !== 'USDT' ? fee * price : fee;
        const side = e.side === 'Buy' ? 1 : -1;
        const key = `${ps.strategyId ?? '-'}|${String(e.symbol)}`;
        const b = books.get(key) ?? { qty: 0, avg: 0, realised: 0 };
        applyFill(b, side * qty, price, feeUsdt);
        books.set(key, b);
        const ref = ps.price ?? price;
        fills.push({ signal: si, strategy: ps.strategyId ?? '-', symbol: e.symbol, price, qty, value: price * qty, feeUsdt, slipBps: (side * (price - ref) / ref) * 10_000 });
        if (si === i) nFills++;
      }
      const ordersOfSignal = sim.orders().filter((o) => links.has(String(o.orderLinkId))).length;
      rows.push({ index: i + 1, signal_id: p.signalId, strategy_id: p.strategyId, asset: p.asset, side: p.side, outcome: outcome.outcome, reason: outcome.reason, orders: ordersOfSignal, fills: nFills });
      curve.push({ index: i + 1, equity: round(equityNow()) });
      bar.update(i + 1);
    }
    bar.done();

    // 4. The report.
    const report = buildReport({ name: opts.name, seed, source: opts.file ? 'file' : 'topic', what, records: records.length, settings, rows, fills, books, curve, sim, linkToSignal, parsed });
    const dir = opts.reportsDir ?? 'reports';
    await mkdir(dir, { recursive: true });
    const jsonPath = join(dir, `backtest-${opts.name}.json`);
    const htmlPath = join(dir, `backtest-${opts.name}.html`);
    await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
    await writeFile(htmlPath, renderHtml(report));
    return { report, jsonPath, htmlPath };
  } finally {
    // 5. Clean up the namespace: services, topics, queues, database, simulator.
    if (producerUp) await producer.disconnect().catch(() => {});
    await stop?.().catch(() => {});
    if (!stop) await rt?.db.end().catch(() => {});
    if (!stop) await rt?.admin.close().catch(() => {});
    await admin.deleteTopics(specs.map((s) => s.topic)).catch(() => {});
    await admin.disconnect().catch(() => {});
    await sim.close().catch(() => {});
    await dropDatabase(dbUrl).catch(() => {});
    await deleteQueues(cfg.AMQP_URL, [signalsQueue, eventsQueue]).catch(() => {});
  }
}

async function deleteQueues(url: string, queues: string[]): Promise<void> {
  const conn = await connect(url);
  try {
    const ch = await conn.createChannel();
    for (const q of queues) await ch.deleteQueue(q);
    await ch.close();
  } finally {
    await conn.close();
  }
}

function buildReport(a: {
  name: string;
  seed: number;
  source: 'file' | 'topic';
  what: string;
  records: number;
  settings: Record<string, string>;
  rows: SignalRow[];
  fills: Array<Record<string, unknown>>;
  books: Map<string, Book>;
  curve: Array<{ index: number; equity: number }>;
  sim: Sim;
  linkToSignal: Map<string, number>;
  parsed: Parsed[];
}): BacktestReport {
  const reasons: Record<string, number> = {};
  for (const r of a.rows) if (r.reason) reasons[r.reason] = (reasons[r.reason] ?? 0) + 1;
  const count = (o: string) => a.rows.filter((r) => r.outcome === o).length;
  const num = (x: unknown) => Number(x);
  const totalValue = a.fills.reduce((s, f) => s + num(f.value), 0);
  const slips = a.fills.map((f) => num(f.slipBps));
  const finalPrices: Record<string, number> = {};
  const symbols = new Set<string>();
  for (const k of a.books.keys()) symbols.add(k.split('|')[1]!);
  for (const s of [...symbols].sort()) finalPrices[s] = round(a.sim.exchange.mid(s), 8);

  // Per strategy.
  const strategies = new Set<string>(a.rows.map((r) => r.strategy_id ?? '-'));
  const ordersBySignal = new Map<number, number>();
  for (const o of a.sim.orders()) {
    const si = a.linkToSignal.get(String(o.orderLinkId));
    if (si !== undefined) ordersBySignal.set(si, (ordersBySignal.get(si) ?? 0) + 1);
  }
  const perStrategy: StrategyRow[] = [...strategies].sort().map((s) => {
    const rows = a.rows.filter((r) => (r.strategy_id ?? '-') === s);
    const fl = a.fills.filter((f) => f.strategy === s);
    let realised = 0, unreal = 0;
    for (const [k, b] of a.books) {
      const [st, sym] = k.split('|');
      if (st !== s) continue;
      realised += b.realised;
      unreal += unrealised(b, a.sim.exchange.mid(sym!));
    }
    return {
      strategy_id: s,
      signals: rows.length,
      placed: rows.filter((r) => r.outcome === 'placed').length,
      rejected: rows.filter((r) => r.outcome !== 'placed').length,
      orders: rows.reduce((n, r) => n + (ordersBySignal.get(r.index - 1) ?? 0), 0),
      fills: fl.length,
      volume: round(fl.reduce((x, f) => x + num(f.value), 0)),
      fees: round(fl.reduce((x, f) => x + num(f.feeUsdt), 0)),
      realised_pnl: round(realised),
      unrealised_pnl: round(unreal),
      pnl: round(realised + unreal),
    };
  });

  // Max drawdown of the equity curve.
  let peak = a.curve[0]!.equity, peakIdx = 0, dd = 0, ddPeak = 0, ddTrough = 0;
  for (const p of a.curve) {
    if (p.equity > peak) {
      peak = p.equity;
      peakIdx = p.index;
    }
    if (peak - p.equity > dd) {
      dd = peak - p.equity;
      ddPeak = peakIdx;
      ddTrough = p.index;
    }
  }
  const realised = perStrategy.reduce((x, r) => x + r.realised_pnl, 0);
  const unreal = perStrategy.reduce((x, r) => x + r.unrealised_pnl, 0);
  return {
    name: a.name,
    seed: a.seed,
    input: { source: a.source, what: a.what, records: a.records },
    settings: Object.fromEntries(Object.entries(a.settings).sort(([x], [y]) => x.localeCompare(y))),
    signals: {
      total: a.rows.length,
      placed: count('placed'),
      rejected: count('rejected'),
      invalid: count('invalid'),
      timeouts: count('timeout'),
      reasons: Object.fromEntries(Object.entries(reasons).sort(([x], [y]) => x.localeCompare(y))),
    },
    orders: [...ordersBySignal.values()].reduce((x, y) => x + y, 0),
    fills: a.fills.length,
    volume: round(totalValue),
    fees: round(a.fills.reduce((s, f) => s + num(f.feeUsdt), 0)),
    slippage_bps: {
      avg_weighted: round(totalValue > 0 ? a.fills.reduce((s, f) => s + num(f.slipBps) * num(f.value), 0) / totalValue : 0, 4),
      avg: round(slips.length ? slips.reduce((x, y) => x + y, 0) / slips.length : 0, 4),
      worst: round(slips.length ? Math.max(...slips) : 0, 4),
    },
    pnl: { realised: round(realised), unrealised: round(unreal), total: round(realised + unreal) },
    max_drawdown: { amount: round(dd), peak_index: ddPeak, trough_index: ddTrough },
    final_prices: finalPrices,
    per_strategy: perStrategy,
    per_signal: a.rows,
    equity_curve: a.curve,
  };
}

// ---------------------------------------------------------------------------------------------
// HTML chart (self-contained: inline SVG and CSS, no external assets)

const esc = (s: unknown): string => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function renderHtml(r: BacktestReport): string {
  const W = 800, H = 320, L = 70, R = 20, T = 20, B = 40;
  const xs = r.equity_curve.map((p) => p.index), ys = r.equity_curve.map((p) => p.equity);
  const xMax = Math.max(1, ...xs);
  let yMin = Math.min(0, ...ys), yMax = Math.max(0, ...ys);
  if (yMax - yMin < 1e-9) {
    yMin -= 1;
    yMax += 1;
  }
  const x = (v: number) => L + (v / xMax) * (W - L - R);
  const y = (v: number) => T + (1 - (v - yMin) / (yMax - yMin)) * (H - T - B);
  const pts = r.equity_curve.map((p) => `${x(p.index).toFixed(2)},${y(p.equity).toFixed(2)}`).join(' ');
  const ticks = [yMin, (yMin + yMax) / 2, yMax]
    .map((v) => `<line x1="${L}" x2="${W - R}" y1="${y(v).toFixed(2)}" y2="${y(v).toFixed(2)}" stroke="#ddd"/><text x="${L - 6}" y="${(y(v) + 4).toFixed(2)}" text-anchor="end" font-size="11">${esc(round(v, 2))}</text>`)
    .join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="equity curve">
<rect width="${W}" height="${H}" fill="#fff"/>${ticks}
<line x1="${L}" x2="${W - R}" y1="${y(0).toFixed(2)}" y2="${y(0).toFixed(2)}" stroke="#888" stroke-dasharray="4 3"/>
<polyline fill="none" stroke="#1565c0" stroke-width="2" points="${pts}"/>
<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle" font-size="12">signal #</text>
<text x="${L}" y="${H - 24}" font-size="11">0</text><text x="${W - R}" y="${H - 24}" text-anchor="end" font-size="11">${xMax}</text>
</svg>`;
  const strat = r.per_strategy
    .map((s) => `<tr><td>${esc(s.strategy_id)}</td><td>${s.signals}</td><td>${s.orders}</td><td>${s.fills}</td><td>${s.fees}</td><td>${s.pnl}</td></tr>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Backtest ${esc(r.name)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}</style>
</head><body>
<h1>Backtest ${esc(r.name)}</h1>
<p>Input: ${esc(r.input.source)} ${esc(r.input.what)} (${r.input.records} records), seed ${r.seed}.</p>
<h2>Equity curve (PnL of the replayed trades, USDT)</h2>
${svg}
<h2>Summary</h2>
<table>
<tr><th>Signals</th><td>${r.signals.total} (placed ${r.signals.placed}, rejected ${r.signals.rejected}, invalid ${r.signals.invalid}, timeouts ${r.signals.timeouts})</td></tr>
<tr><th>Orders / fills</th><td>${r.orders} / ${r.fills}</td></tr>
<tr><th>Volume (USDT)</th><td>${r.volume}</td></tr>
<tr><th>Fees (USDT)</th><td>${r.fees}</td></tr>
<tr><th>Slippage (bps, value-weighted / mean / worst)</th><td>${r.slippage_bps.avg_weighted} / ${r.slippage_bps.avg} / ${r.slippage_bps.worst}</td></tr>
<tr><th>PnL (realised + unrealised = total)</th><td>${r.pnl.realised} + ${r.pnl.unrealised} = ${r.pnl.total}</td></tr>
<tr><th>Max drawdown (USDT)</th><td>${r.max_drawdown.amount} (signal ${r.max_drawdown.peak_index} → ${r.max_drawdown.trough_index})</td></tr>
</table>
<h2>Per strategy</h2>
<table><tr><th>Strategy</th><th>Signals</th><th>Orders</th><th>Fills</th><th>Fees</th><th>PnL</th></tr>
${strat}
</table>
</body></html>
`;
}

// ---------------------------------------------------------------------------------------------
// Command line

export const REPLAY_HELP = `Usage: npm run cli -- replay (--file signals.jsonl | --topic-prefix P [range]) [options]

Replays recorded signals through the order manager against a fresh seeded simulator, in a fresh
namespace (topics, consumer groups, queues, database) deleted afterwards, and writes
reports/backtest-<name>.json and reports/backtest-<name>.html (equity-curve chart).

Input (one of):
  --file PATH              JSON-lines file, one signal JSON per line.
  --topic-prefix P         Replay P's signals.raw topic ('' for the unprefixed one), with
    --from-offset N|p:N,..   first offset per partition (inclusive; default: the start),
    --to-offset N|p:N,..     last offset per partition (exclusive; default: the end now),
    --from-time T            records from this time (ISO 8601 or epoch ms, inclusive),
    --to-time T              until this time (exclusive).
Options:
  --name NAME              Report name (default: replay).
  --seed N                 Simulator seed (default 1).
  --set KEY=VALUE          A setting for the replayed services (repeatable), e.g. RISK_MAX_ORDER_NOTIONAL=500.
  --reports-dir DIR        Where reports go (default: reports).
  --signal-timeout-ms N    How long one signal may take (default 30000).
  --max-gap-ms N           Most simulated market time between two signals (default 60000).
  --log-level L            Log level of the replayed services, to stderr (default silent).
  --no-progress            No progress bar.
Exit codes: 0 done, 1 failed, 2 usage error.
`;

function parseOffsets(s: string | undefined, what: string): OffsetSpec | undefined {
  if (s === undefined) return undefined;
  if (/^\d+$/.test(s)) return Number(s);
  const out: Record<number, number> = {};
  for (const part of s.split(',')) {
    const m = /^(\d+):(\d+)$/.exec(part.trim());
    if (!m) throw new UsageError(`${what} must be N or partition:offset,... (got ${JSON.stringify(s)})`);
    out[Number(m[1])] = Number(m[2]);
  }
  return out;
}

function parseTime(s: string | undefined, what: string): number | undefined {
  if (s === undefined) return undefined;
  const t = /^\d+$/.test(s) ? Number(s) : parseIsoTimestamp(s);
  if (t === null || !Number.isFinite(t)) throw new UsageError(`${what} must be an ISO 8601 time with an offset or epoch ms`);
  return t;
}

function parseIntOpt(s: string | undefined, what: string): number | undefined {
  if (s === undefined) return undefined;
  if (!/^\d+$/.test(s)) throw new UsageError(`${what} must be a whole number >= 0`);
  return Number(s);
}

export function parseReplayArgs(argv: string[]): ReplayOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        file: { type: 'string' },
        'topic-prefix': { type: 'string' },
        'from-offset': { type: 'string' },
        'to-offset': { type: 'string' },
        'from-time': { type: 'string' },
        'to-time': { type: 'string' },
        name: { type: 'string' },
        seed: { type: 'string' },
        set: { type: 'string', multiple: true },
        'reports-dir': { type: 'string' },
        'signal-timeout-ms': { type: 'string' },
        'max-gap-ms': { type: 'string' },
        'log-level': { type: 'string' },
        'no-progress': { type: 'boolean' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.file !== undefined && v['topic-prefix'] !== undefined) throw new UsageError('give either --file or --topic-prefix, not both');
  if (v.file === undefined && v['topic-prefix'] === undefined) throw new UsageError('replay needs --file or --topic-prefix');
  if (v.file !== undefined && (v['from-offset'] ?? v['to-offset'] ?? v['from-time'] ?? v['to-time']) !== undefined) throw new UsageError('offset and time ranges apply to --topic-prefix only');
  const settings: Record<string, string> = {};
  for (const kv of v.set ?? []) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(kv);
    if (!m) throw new UsageError(`--set needs KEY=VALUE (got ${JSON.stringify(kv)})`);
    settings[m[1]!] = m[2]!;
  }
  return {
    name: v.name ?? 'replay',
    seed: parseIntOpt(v.seed, '--seed') ?? 1,
    file: v.file,
    topicPrefix: v['topic-prefix'],
    fromOffset: parseOffsets(v['from-offset'], '--from-offset'),
    toOffset: parseOffsets(v['to-offset'], '--to-offset'),
    fromTime: parseTime(v['from-time'], '--from-time'),
    toTime: parseTime(v['to-time'], '--to-time'),
    reportsDir: v['reports-dir'],
    signalTimeoutMs: parseIntOpt(v['signal-timeout-ms'], '--signal-timeout-ms'),
    maxGapMs: parseIntOpt(v['max-gap-ms'], '--max-gap-ms'),
    logLevel: v['log-level'],
    progress: !v['no-progress'],
    settings,
  };
}

/** `npm run cli -- replay ...`: returns the exit code. */
export async function replayCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(REPLAY_HELP);
    return EXIT.ok;
  }
  try {
    const opts = parseReplayArgs(argv);
    // Ctrl-C / SIGTERM: stop after the current signal and clean the namespace up.
    const ac = new AbortController();
    process.once('SIGINT', () => ac.abort());
    process.once('SIGTERM', () => ac.abort());
    const { report, jsonPath, htmlPath } = await runReplay({ ...opts, signal: ac.signal });
    process.stdout.write(
      `signals ${report.signals.total} (placed ${report.signals.placed}, rejected ${report.signals.rejected}, invalid ${report.signals.invalid}, timeouts ${report.signals.timeouts})\n` +
        `orders ${report.orders} fills ${report.fills} fees ${report.fees} slippage ${report.slippage_bps.avg_weighted} bps pnl ${report.pnl.total} max_drawdown ${report.max_drawdown.amount}\n` +
        `report ${jsonPath}\nchart  ${htmlPath}\n`,
    );
    return report.signals.timeouts > 0 ? EXIT.failed : EXIT.ok;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n\n${REPLAY_HELP}`);
      return EXIT.usage;
    }
    process.stderr.write(`replay failed: ${(err as Error).message}\n`);
    return EXIT.failed;
  }
}
