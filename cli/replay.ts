// Replay backtests (`npm run cli -- replay`): recorded signals (a range of a raw signal topic, or a
// JSON-lines file) fed one by one through the real order-manager units against a fresh, seeded
// exchange simulator, in a fresh namespace (topics, consumer groups, RabbitMQ queues, database) that
// is deleted afterwards. The report (JSON) and an equity-curve chart (self-contained HTML, inline
// SVG) go to reports/backtest-<name>.{json,html}. Same seed + same input → same report: see
// docs/backtest.md for what is deterministic and why.
//
// The parts: options and report (replay-types.ts), where the signals come from (replay-sources.ts),
// the accounting (replay-pnl.ts), the chart (replay-html.ts), the command line (replay-args.ts); here
// the run itself.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'amqplib';
import { z } from 'zod';
import { loadConfig, kafkaBrokers } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { createKafka } from '../runtime/kafka.ts';
import { createRuntime, runUnits, type Runtime } from '../runtime/service.ts';
import { ensureDatabase, dropDatabase, withDatabase, createDb, sql } from '../runtime/db.ts';
import { migrate } from '../runtime/migrate.ts';
import { ManualClock } from '../runtime/clock.ts';
import { topicSpecs } from '../runtime/topics.ts';
import { startSimulator } from '../sim/server.ts';
import { RUNTIME_PARTS, SERVICES, SIM_BALANCES, UNIT_SCHEMAS } from '../stack/services.ts';
import { OPEN_STATUSES } from '../pipelines/risk-rules.ts';
import { EXIT, UsageError } from './context.ts';
import type { BacktestReport, OffsetSpec, ReplayOptions, ReplayResult, SignalRow, SourceRecord, StrategyRow } from './replay-types.ts';
import { parseRecord, readSignalFile, readSignalTopic, type Parsed } from './replay-sources.ts';
import { capitalOf, comparisonRow, planStrategy, STRATEGIES, type Decide, type DecideStats, type StrategyName, type WorldOutcome } from './replay-strategies.ts';
import type { Tick } from '../model/features.ts';
import { applyFill, round, unrealised, type Book } from './replay-pnl.ts';
import { renderHtml } from './replay-html.ts';
import { parseReplayArgs, REPLAY_HELP } from './replay-args.ts';
type Sim = Awaited<ReturnType<typeof startSimulator>>;

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
  // Tickers reach the database from a 5 s REST poll (wall-clock timing): a replay sizes from each
  // signal's snapshot price instead, which the simulator's market is set to (docs/backtest.md).
  // The wallet the next signal is sized against is refreshed every second rather than every 5 s.
  const settings: Record<string, string> = { RISK_TICKER_MAX_AGE_MS: '0', SYNC_MARKET_CRON: '* * * * * *', ...(opts.settings ?? {}) };

  // 2. One world per strategy (the recorded one always), run side by side: each has its own
  // simulator (same seed, same market moves), namespace and database, so no strategy's orders,
  // exposure or losses touch another's.
  const names: StrategyName[] = ['recorded', ...STRATEGIES.filter((s) => s !== 'recorded' && (opts.strategies ?? STRATEGIES).includes(s))];
  const coinSeed = opts.coinSeed ?? seed;
  const heuristic = (settings.WARMUP_HEURISTIC ?? process.env.WARMUP_HEURISTIC ?? 'momentum') === 'mean_reversion' ? 'mean_reversion' : 'momentum';
  const lookback = Number(settings.MODEL_FEATURE_LOOKBACK ?? process.env.MODEL_FEATURE_LOOKBACK ?? 60) || 60;
  const stats: DecideStats = { features: { recorded: 0, replay_market: 0, none: 0 } };
  const bar = progressBar(opts.progress ?? true, records.length * names.length);
  let done = 0;
  bar.update(0);
  // At most `parallel` worlds at once: on a loaded machine four order managers side by side can
  // exceed --signal-timeout-ms, and fewer at a time only takes longer (each world is deterministic alone).
  const parallel = Math.max(1, opts.parallel ?? names.length);
  const worlds: Array<PromiseSettledResult<WorldResult>> = new Array(names.length);
  let nextWorld = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, names.length) }, async () => {
      for (let k = nextWorld++; k < names.length; k = nextWorld++) {
        const decide = planStrategy(names[k]!, records, parsed, { coinSeed, heuristic, lookback }, stats);
        worlds[k] = await runWorld({ cfg, logger, seed, settings, opts, records, parsed, decide, onSignal: () => bar.update(++done) }).then(
          (value) => ({ status: 'fulfilled', value }) as const,
          (reason: unknown) => ({ status: 'rejected', reason }) as const,
        );
      }
    }),
  );
  bar.done();
  const failed = worlds.find((w): w is PromiseRejectedResult => w.status === 'rejected');
  if (failed) throw failed.reason;
  const results = worlds.map((w) => (w as PromiseFulfilledResult<WorldResult>).value);
  const rec = results[0]!;

  // 3. The report.
  const capital = capitalOf(parsed);
  const report = buildReport({ name: opts.name, seed, source: opts.file ? 'file' : 'topic', what, records: records.length, settings, rows: rec.rows, fills: rec.fills, books: rec.books, curve: rec.curve, finalMids: rec.finalMids, orderLinks: rec.orderLinks, linkToSignal: rec.linkToSignal });
  report.strategies = names.map((n, k) => comparisonRow(n, results[k]!, capital, records.length));
  report.comparison = { capital, coin_seed: coinSeed, heuristic, warmup_features: stats.features };
  const dir = opts.reportsDir ?? 'reports';
  await mkdir(dir, { recursive: true });
  const jsonPath = join(dir, `backtest-${opts.name}.json`);
  const htmlPath = join(dir, `backtest-${opts.name}.html`);
  await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(htmlPath, renderHtml(report));
  return { report, jsonPath, htmlPath };
}

interface WorldResult extends WorldOutcome {
  rows: SignalRow[];
  fills: Array<Record<string, unknown> & { value: number; feeUsdt: number }>;
  linkToSignal: Map<string, number>;
  /** orderLinkId of every order the simulator accepted. */
  orderLinks: string[];
}

/**
 * One strategy's replay: a fresh world (simulator on a manual clock starting at the first
 * signal's time, namespace, database, the order manager's units), the recorded market moves, and at
 * each recorded signal what `decide` sends, each waited for until processed; then clean-up.
 */
async function runWorld(w: {
  cfg: ReturnType<typeof loadConfig>;
  logger: ReturnType<typeof createLogger>;
  seed: number;
  settings: Record<string, string>;
  opts: ReplayOptions;
  records: SourceRecord[];
  parsed: Parsed[];
  decide: Decide;
  onSignal: () => void;
}): Promise<WorldResult> {
  const { cfg, logger, seed, settings, opts, records, parsed } = w;
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
  let rt: Runtime | null = null;
  let stop: (() => Promise<void>) | null = null;
  const producer = kafka.producer();
  let producerUp = false;
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

    // 3. At each recorded signal the market moves as recorded, then the strategy's signal (if any) is sent.
    const rawTopic = `${prefix}signals.raw`;
    const maxGap = opts.maxGapMs ?? 60_000;
    const books = new Map<string, Book>(); // strategy|symbol
    const linkToSignal = new Map<string, number>();
    const sentParsed = new Map<number, Parsed>();
    const rows: SignalRow[] = [];
    const sent: WorldOutcome['sent'] = [];
    const curve: Array<{ index: number; equity: number }> = [{ index: 0, equity: 0 }];
    const midAt: Array<Map<string, number>> = [new Map()];
    const ticks = new Map<string, Tick[]>();
    const pushTick = (asset: string, ts: number, mid: number) => {
      const l = ticks.get(asset) ?? [];
      if (l.length && l[l.length - 1]!.ts === ts) l.pop();
      l.push({ ts, mid, bid: null, ask: null, bidSize: null, askSize: null, volume24h: 0 });
      if (l.length > 400) l.splice(0, l.length - 400);
      ticks.set(asset, l);
    };
    const market = { ticks: (asset: string) => ticks.get(asset) ?? [] };
    let seenExec = 0;
    let prevTime: number | null = null;
    const equityNow = (): number => {
      let e = 0;
      for (const [k, b] of books) e += b.realised + unrealised(b, sim.exchange.mid(k.split('|')[1]!));
      return e;
    };
    const fills: WorldResult['fills'] = [];
    for (let i = 0; i < records.length; i++) {
      if (opts.signal?.aborted) throw new Error('interrupted');
      const rp = parsed[i]!;
      // Market time moves by the recorded spacing (at least one price step, at most maxGap): the
      // same moves in every strategy's world, whatever it sends.
      const gap = rp.time !== null && prevTime !== null ? Math.min(Math.max(rp.time - prevTime, 1000), maxGap) : 1000;
      if (rp.time !== null) prevTime = rp.time;
      simClock.advance(gap);
      for (const ev of sim.exchange.advance()) pushTick(ev.symbol, ev.time, ev.price);
      sim.advance(0);
      const symbolKnown = rp.asset !== null && sim.exchange.prices.symbols().includes(rp.asset);
      if (symbolKnown && rp.price !== null) {
        sim.setPrice(rp.asset!, rp.price);
        pushTick(rp.asset!, simClock.now(), sim.exchange.mid(rp.asset!));
      }
      midAt.push(new Map(rp.asset !== null && symbolKnown ? [[rp.asset, sim.exchange.mid(rp.asset)]] : []));
      const out = w.decide(i, market);
      if (out) {
        const { record: r, parsed: p } = out;
        sentParsed.set(i, p);
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
          const ps = sentParsed.get(si)!;
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
        sent.push({ index: i + 1, asset: p.asset, side: p.side, outcome: outcome.outcome, fills: nFills });
      }
      curve.push({ index: i + 1, equity: round(equityNow()) });
      w.onSignal();
    }
    const finalMids = new Map(sim.exchange.prices.symbols().map((s) => [s, sim.exchange.mid(s)]));
    const orderLinks = sim.orders().map((o) => String(o.orderLinkId));
    return { rows, sent, fills, books, curve, midAt, finalMids, linkToSignal, orderLinks };
  } finally {
    // 4. Clean up the namespace: services, topics, queues, database, simulator.
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
  finalMids: Map<string, number>;
  orderLinks: string[];
  linkToSignal: Map<string, number>;
}): BacktestReport {
  const mid = (s: string) => a.finalMids.get(s)!;
  const reasons: Record<string, number> = {};
  for (const r of a.rows) if (r.reason) reasons[r.reason] = (reasons[r.reason] ?? 0) + 1;
  const count = (o: string) => a.rows.filter((r) => r.outcome === o).length;
  const num = (x: unknown) => Number(x);
  const totalValue = a.fills.reduce((s, f) => s + num(f.value), 0);
  const slips = a.fills.map((f) => num(f.slipBps));
  const finalPrices: Record<string, number> = {};
  const symbols = new Set<string>();
  for (const k of a.books.keys()) symbols.add(k.split('|')[1]!);
  for (const s of [...symbols].sort()) finalPrices[s] = round(mid(s), 8);

  // Per strategy.
  const strategies = new Set<string>(a.rows.map((r) => r.strategy_id ?? '-'));
  const ordersBySignal = new Map<number, number>();
  for (const link of a.orderLinks) {
    const si = a.linkToSignal.get(link);
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
      unreal += unrealised(b, mid(sym!));
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
    strategies: [],
    comparison: { capital: 0, coin_seed: 0, heuristic: '', warmup_features: { recorded: 0, replay_market: 0, none: 0 } },
  };
}

// ---------------------------------------------------------------------------------------------
// Command line

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
        report.strategies.map((r) => `${r.strategy.padEnd(13)} pnl ${r.pnl} hit_rate ${r.hit_rate ?? '-'} turnover ${r.turnover} max_drawdown ${r.max_drawdown} sharpe/signal ${r.sharpe_per_signal ?? '-'}\n`).join('') +
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
