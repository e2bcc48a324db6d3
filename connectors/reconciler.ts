// Reconciler: repairs the order manager's view of the account from Bybit REST. It runs at start,
// on a node-cron schedule inside the service (RECONCILE_CRON) and on demand (POST /admin/reconcile,
// `npm run cli -- reconcile`).
//
// One run:
//   1. stuck orders: local rows in an in-flight state (Intent with a submission, Submitted,
//      PendingAmend, PendingCancel, Unknown) untouched for RECONCILE_STUCK_AFTER_MS are queried one
//      by one by orderLinkId (realtime, then history), paced;
//   2. orders: open orders (realtime) and the order history of the lookback window, per category,
//      are compared with `orders`: an order unknown locally (adoption: the tracking stage records it
//      as external, or as ours when its orderLinkId has our prefix), a different status or a
//      different filled quantity is a discrepancy; local open orders that are neither open nor in
//      the history are queried one by one;
//   3. executions of the lookback window whose execId is not in `executions`;
//   4. linear positions and the wallet against `positions` / `balances`;
//   5. P&L of linear symbols (issue #18), reported, never repaired: for the UTC day up to the run
//      (by the exchange's clock), the sum of the transaction log's `change` over each symbol's
//      TRADE and SETTLEMENT entries against the books' realised - fees + funding of that day
//      (pnl_days, every strategy); a difference above RECONCILE_PNL_TOLERANCE is a pnl_mismatch.
//      The exchange's closed P&L of the day is fetched and shown per symbol for information only.
// Every correction is the exchange's own record written into the SAME topics the websocket bridges
// write (exchange.orders, exchange.executions, exchange.positions, exchange.wallet) with
// `source: 'reconciler'`, so the one order state machine (pipelines/track.ts) applies it: the
// reconciler never writes `orders`, and never places, amends, cancels or resubmits an order. The
// one record it derives rather than copies: a Submitted / Unknown / Intent-with-submission order
// that Bybit does not know at all after RECONCILE_ABSENT_AFTER_MS is reported Rejected
// (rejectReason EC_NotFoundByReconciler, RECONCILE_REJECT_ABSENT), so a create that never reached
// the exchange stops counting as exposure.
//
// Facts newer than RECONCILE_GRACE_MS are not called discrepancies: the private stream is
// expected to deliver them. "Newer" and the list windows are by Bybit's clock (the `time` of its
// answers), so a skew between its clock and ours hides nothing. Queries go through the one REST
// core (connectors/exchange-reader.ts over bybit-rest.ts: the client-side rate limiter, own share of the
// budget, RECONCILE_RATE_LIMIT_FRACTION, fed by Bybit's X-Bapi-Limit headers), and per-order
// queries are spaced by RECONCILE_QUERY_INTERVAL_MS. Each run is recorded in reconcile_runs.
//
// The parts: the reader (connectors/exchange-reader.ts), Bybit's items as the exchange topics'
// records (connectors/exchange-records.ts), the pure comparison and report
// (connectors/reconcile-compare.ts); here the run itself and its unit.
import { setTimeout as sleep } from 'node:timers/promises';
import cron, { type ScheduledTask } from 'node-cron';
import { z } from 'zod';
import { bool, emptyToUndefined, int } from '../runtime/setting-types.ts';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { sql, type DatabasePool } from '../runtime/db.ts';
import type { Logger } from '../runtime/logger.ts';
import { systemClock, type Clock } from '../runtime/clock.ts';
import type { KafkaPort, ProducerPort, OutMessage } from '../runtime/kafka.ts';
import type { Codec } from '../runtime/codec.ts';
import type { Runtime } from '../runtime/service.ts';
import { defineUnit, type Unit } from '../runtime/unit.ts';
import { topicName } from '../runtime/topics.ts';
import type { ExchangeOrderUpdate, Execution, Position } from '../schemas/types.ts';
import { parseConfig as restConfig, configSchema as bybitRestSettings } from './bybit-rest.ts';
import { createExchangeReader, type ExchangeReader } from './exchange-reader.ts';
import { executionOf, orderUpdateOf, positionOf, rawText, walletOf } from './exchange-records.ts';
import { Dec } from '../runtime/decimal.ts';
import { utcDay } from '../pipelines/trading-state.ts';
import { compareOrder, decEq, DISCREPANCY_KINDS, exchangeDayNet, pnlDiffers, emptyReport, EXCHANGE_OPEN_SET, EXCHANGE_OPEN_STATUSES, MAX_DETAILS, type Discrepancy, type DiscrepancyKind, type LocalOrder, type ReconcileReport, type ReconcileTrigger, totalCorrections, totalDiscrepancies } from './reconcile-compare.ts';

export const name = 'reconciler';

const list = (v: unknown) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v);

export const configSchema = z.object({
  TOPIC_PREFIX: z.preprocess(emptyToUndefined, z.string().regex(/^[a-zA-Z0-9._-]*$/).default('')),
  RECONCILE_CRON: z.preprocess(emptyToUndefined, z.string().default('*/1 * * * *')).describe('node-cron schedule of the reconciler.'),
  RECONCILE_ON_START: z.preprocess(emptyToUndefined, bool.default(true)).describe('Run one reconciliation when the service starts.'),
  RECONCILE_CATEGORIES: z
    .preprocess((v) => list(emptyToUndefined(v)) ?? ['spot', 'linear'], z.array(z.enum(['spot', 'linear'])).min(1))
    .describe('Bybit categories whose orders and executions the reconciler compares.'),
  RECONCILE_SYMBOLS: z
    .preprocess((v) => list(emptyToUndefined(v)) ?? [], z.array(z.string().regex(/^[A-Z0-9]+$/)))
    .describe('Symbols to reconcile (comma-separated); empty = every symbol Bybit reports.'),
  RECONCILE_LOOKBACK_MS: z
    .preprocess(emptyToUndefined, int.min(60_000).max(7 * 24 * 3600 * 1000).default(24 * 3600 * 1000))
    .describe('Window of order history and executions fetched from Bybit, ms (at most 7 days, Bybit\'s limit per query).'),
  RECONCILE_STUCK_AFTER_MS: z
    .preprocess(emptyToUndefined, int.min(0).default(30_000))
    .describe('A local order in an in-flight state (Submitted, PendingAmend, PendingCancel, Unknown, Intent with a submission) untouched this long is queried by orderLinkId.'),
  RECONCILE_ABSENT_AFTER_MS: z
    .preprocess(emptyToUndefined, int.min(0).default(120_000))
    .describe('A Submitted / Unknown order Bybit does not know at all after this long is reported Rejected (EC_NotFoundByReconciler) when RECONCILE_REJECT_ABSENT is on.'),
  RECONCILE_REJECT_ABSENT: z.preprocess(emptyToUndefined, bool.default(true)).describe('Report creates Bybit never received as Rejected (see RECONCILE_ABSENT_AFTER_MS).'),
  RECONCILE_GRACE_MS: z
    .preprocess(emptyToUndefined, int.min(0).default(3_000))
    .describe('Exchange facts newer than this are left to the private stream (not counted as discrepancies).'),
  RECONCILE_QUERY_INTERVAL_MS: z.preprocess(emptyToUndefined, int.min(0).default(50)).describe('Pause between two per-order queries, ms (on top of the rate limiter).'),
  RECONCILE_MAX_QUERIES: z.preprocess(emptyToUndefined, int.min(1).default(200)).describe('Most per-order queries in one run (the rest wait for the next run).'),
  RECONCILE_MAX_PAGES: z.preprocess(emptyToUndefined, int.min(1).default(20)).describe('Most pages fetched per list query (orders, history, executions) in one run.'),
  RECONCILE_PNL_TOLERANCE: z
    .preprocess(emptyToUndefined, z.coerce.number().min(0).default(0.01))
    .describe("Largest difference, in the quote coin, between a linear symbol's net P&L of the UTC day in the books and in Bybit's transaction log before it is a pnl_mismatch."),
  RECONCILE_RATE_LIMIT_FRACTION: z
    .preprocess(emptyToUndefined, z.coerce.number().gt(0).max(1).default(0.25))
    .describe("Share of Bybit's per-UID rate limits the reconciler's queries may use (placement keeps the rest)."),
});
export type ReconcilerConfig = z.output<typeof configSchema>;

export function parseConfig(env: Record<string, unknown> = process.env): ReconcilerConfig {
  return configSchema.parse(env);
}

// ---------------------------------------------------------------------------------------------
// Metrics (names are constants; README/docs list them)

export const RECONCILE_METRICS = {
  runs: 'reconcile_runs_total',
  checked: 'reconcile_orders_checked_total',
  discrepancies: 'reconcile_discrepancies_total',
  corrections: 'reconcile_corrections_total',
  lastRun: 'reconcile_last_run_timestamp_seconds',
  lastDiscrepancies: 'reconcile_last_run_discrepancies',
  duration: 'reconcile_duration_seconds',
} as const;

export interface ReconcileMetrics {
  runs: Counter<'trigger' | 'outcome'>;
  checked: Counter<'source'>;
  discrepancies: Counter<'kind'>;
  corrections: Counter<'topic'>;
  lastRun: Gauge<'outcome'>;
  lastDiscrepancies: Gauge<'kind'>;
  duration: Histogram<string>;
}

function once<T>(registry: Registry, metricName: string, make: () => T): T {
  return (registry.getSingleMetric(metricName) as T | undefined) ?? make();
}

export function reconcileMetrics(registry: Registry): ReconcileMetrics {
  const r = [registry];
  const M = RECONCILE_METRICS;
  return {
    runs: once(registry, M.runs, () => new Counter({ name: M.runs, help: 'Reconciliation runs, by trigger and outcome (ok, failed)', labelNames: ['trigger', 'outcome'], registers: r })),
    checked: once(registry, M.checked, () => new Counter({ name: M.checked, help: 'Orders compared with Bybit, by where they were read (open, history, query, local)', labelNames: ['source'], registers: r })),
    discrepancies: once(registry, M.discrepancies, () => new Counter({ name: M.discrepancies, help: 'Discrepancies between PostgreSQL and Bybit found by the reconciler, by kind', labelNames: ['kind'], registers: r })),
    corrections: once(registry, M.corrections, () => new Counter({ name: M.corrections, help: 'Correction records the reconciler wrote, by logical topic', labelNames: ['topic'], registers: r })),
    lastRun: once(registry, M.lastRun, () => new Gauge({ name: M.lastRun, help: 'Unix time of the end of the last reconciliation, by outcome', labelNames: ['outcome'], registers: r })),
    lastDiscrepancies: once(registry, M.lastDiscrepancies, () => new Gauge({ name: M.lastDiscrepancies, help: 'Discrepancies found by the last reconciliation, by kind', labelNames: ['kind'], registers: r })),
    duration: once(registry, M.duration, () => new Histogram({ name: M.duration, help: 'Duration of a reconciliation run', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers: r })),
  };
}

// ---------------------------------------------------------------------------------------------
// The reconciler

const localRow = z.object({
  id: z.number(),
  order_link_id: z.string().nullable(),
  order_id: z.string().nullable(),
  category: z.string(),
  symbol: z.string(),
  side: z.string(),
  order_type: z.string(),
  qty: z.string(),
  price: z.string().nullable(),
  market_unit: z.string().nullable(),
  status: z.string(),
  cum_exec_qty: z.string(),
  last_exchange_update_ms: z.number().nullable(),
  updated_at: z.number(),
  submitted_at: z.number().nullable(),
});
const LOCAL_COLUMNS = sql.fragment`id, order_link_id, order_id, category, symbol, side, order_type, qty, price, market_unit, status, cum_exec_qty,
  last_exchange_update_ms, updated_at, submitted_at`;

export interface ReconcilerDeps {
  config: ReconcilerConfig;
  db: DatabasePool;
  /** Where corrections go: a producer is made from it at start(). */
  kafka: KafkaPort;
  codec: Codec;
  reader: ExchangeReader;
  clock?: Clock;
  logger?: Logger;
  registry?: Registry;
}

export interface Reconciler {
  /** One run now (a run already in progress is joined, not started twice). */
  reconcileNow(trigger?: ReconcileTrigger): Promise<ReconcileReport>;
  /** Connect the producer, run at start (RECONCILE_ON_START), schedule RECONCILE_CRON. */
  start(opts?: { schedule?: boolean }): Promise<void>;
  stop(): Promise<void>;
  /** True once started and the startup run (if any) finished, whatever its outcome. */
  ready(): boolean;
  lastReport(): ReconcileReport | null;
}

export function createReconciler(deps: ReconcilerDeps): Reconciler {
  const cfg = deps.config;
  const clock = deps.clock ?? systemClock;
  const log = deps.logger?.child({ unit: name });
  const metrics = deps.registry ? reconcileMetrics(deps.registry) : null;
  const rest = deps.reader;
  const topic = {
    orders: topicName('exchange.orders', cfg.TOPIC_PREFIX),
    executions: topicName('exchange.executions', cfg.TOPIC_PREFIX),
    positions: topicName('exchange.positions', cfg.TOPIC_PREFIX),
    wallet: topicName('exchange.wallet', cfg.TOPIC_PREFIX),
  };
  const wanted = (symbol: string) => cfg.RECONCILE_SYMBOLS.length === 0 || cfg.RECONCILE_SYMBOLS.includes(symbol);
  let producer: ProducerPort | null = null;
  let task: ScheduledTask | null = null;
  let running: Promise<ReconcileReport> | null = null;
  let last: ReconcileReport | null = null;
  let started = false;
  let firstDone = false;

  async function ensureProducer(): Promise<ProducerPort> {
    if (!producer) {
      const p = deps.kafka.producer();
      await p.connect();
      producer = p;
    }
    return producer;
  }

  async function emit(physical: string, items: Array<{ key: string; value: unknown }>): Promise<void> {
    if (items.length === 0) return;
    const messages: OutMessage[] = [];
    for (const it of items) messages.push({ key: it.key, value: await deps.codec.encode(physical, it.value), headers: { source: 'reconciler' } });
    await (await ensureProducer()).send(physical, messages);
  }

  const note = (r: ReconcileReport, d: Omit<Discrepancy, 'corrected'>, corrected: boolean) => {
    r.discrepancies[d.kind] += 1;
    if (r.details.length < MAX_DETAILS) r.details.push({ ...d, corrected });
  };

  async function loadByIds(links: string[], ids: string[]): Promise<LocalOrder[]> {
    if (links.length === 0 && ids.length === 0) return [];
    return [
      ...(await deps.db.any(sql.type(localRow)`
        SELECT ${LOCAL_COLUMNS} FROM orders
        WHERE order_link_id = ANY(${sql.array(links, 'text')}) OR order_id = ANY(${sql.array(ids, 'text')})`)),
    ];
  }

  async function run(trigger: ReconcileTrigger): Promise<ReconcileReport> {
    const now = clock.now();
    const r = emptyReport(trigger, now);
    const graceEdge = now - cfg.RECONCILE_GRACE_MS;
    // Exchange times are judged by the exchange's clock (as of its latest answer): with a skew, our
    // own clock would call every fact ahead of it fresh, and list windows ending at our "now" would
    // leave them out (as after a jump of the exchange's clock, a fault of the chaos run).
    const exchangeNow = () => clock.now() + rest.clockSkewMs();
    const fresh = (t: number) => cfg.RECONCILE_GRACE_MS > 0 && t > exchangeNow() - cfg.RECONCILE_GRACE_MS;
    const window = (): [number, number] => {
      const end = exchangeNow();
      return [end - cfg.RECONCILE_LOOKBACK_MS, end];
    };
    const handled = new Set<number>(); // local row ids already settled this run
    const orderOut: Array<{ key: string; value: ExchangeOrderUpdate }> = [];
    let queries = 0;
    const pace = async () => {
      if (queries++ > 0 && cfg.RECONCILE_QUERY_INTERVAL_MS > 0) await sleep(cfg.RECONCILE_QUERY_INTERVAL_MS);
    };

    /** Query one local order by orderLinkId (or orderId); emit what Bybit says. */
    const queryOne = async (l: LocalOrder, kind: DiscrepancyKind): Promise<void> => {
      if (!(l.category === 'spot' || l.category === 'linear')) return;
      await pace();
      r.checked.queried += 1;
      metrics?.checked.inc({ source: 'query' });
      const found = await rest.queryOrder(l.category, { ...(l.order_link_id ? { orderLinkId: l.order_link_id } : { orderId: l.order_id ?? '' }), symbol: l.symbol });
      const observedAt = clock.now();
      handled.add(l.id);
      const base = { category: l.category, symbol: l.symbol, orderLinkId: l.order_link_id, orderId: l.order_id, local: l.status };
      if (found) {
        const u = orderUpdateOf(found, l.category, observedAt);
        const diff = compareOrder(l, u);
        if (kind === 'stuck_in_flight' || diff) {
          orderOut.push({ key: u.symbol, value: u });
          note(r, { ...base, kind: kind === 'stuck_in_flight' ? kind : (diff ?? kind), exchange: u.orderStatus }, true);
        }
        return;
      }
      // Bybit does not know the order. A create that never reached it is over: report it Rejected.
      const lostCreate = (l.status === 'Submitted' || l.status === 'Unknown' || l.status === 'Intent') && l.updated_at <= now - cfg.RECONCILE_ABSENT_AFTER_MS;
      const rejectIt = lostCreate && cfg.RECONCILE_REJECT_ABSENT && l.order_link_id !== null;
      if (rejectIt) {
        const at = clock.now();
        orderOut.push({
          key: l.symbol,
          value: {
            orderId: l.order_id ?? '',
            orderLinkId: l.order_link_id!,
            symbol: l.symbol,
            category: l.category,
            side: l.side,
            orderType: l.order_type,
            price: l.price ?? '',
            qty: l.qty,
            marketUnit: l.market_unit,
            timeInForce: null,
            orderStatus: 'Rejected',
            cumExecQty: '0',
            cumExecValue: '0',
            cumExecFee: '0',
            avgPrice: '',
            leavesQty: '0',
            rejectReason: 'EC_NotFoundByReconciler',
            cancelType: null,
            reduceOnly: null,
            createdTime: l.submitted_at ?? l.updated_at,
            updatedTime: at,
            source: 'reconciler',
            streamMessageId: null,
            creationTime: null,
            observedAt: at,
          },
        });
      }
      note(r, { ...base, kind: 'not_at_exchange', exchange: null }, rejectIt);
    };

    try {
      // 1. Stuck in-flight orders, one by one.
      const stuck = await deps.db.any(sql.type(localRow)`
        SELECT ${LOCAL_COLUMNS} FROM orders
        WHERE (status IN ('Submitted', 'PendingAmend', 'PendingCancel', 'Unknown') OR (status = 'Intent' AND submitted_at IS NOT NULL))
          AND updated_at <= ${sql.timestamp(new Date(now - cfg.RECONCILE_STUCK_AFTER_MS))}
          AND category = ANY(${sql.array(cfg.RECONCILE_CATEGORIES, 'text')})
        ORDER BY updated_at LIMIT ${cfg.RECONCILE_MAX_QUERIES}`);
      for (const l of stuck) {
        if (!wanted(l.symbol)) continue;
        await queryOne(l, 'stuck_in_flight');
      }

      // 2. Open orders and recent history against the local rows.
      for (const category of cfg.RECONCILE_CATEGORIES) {
        const open = (await rest.openOrders(category)).filter((o) => wanted(rawText(o.symbol)));
        const hist = (await rest.orderHistory(category, ...window())).filter((o) => wanted(rawText(o.symbol)));
        const observedAt = clock.now();
        r.checked.openOrders += open.length;
        r.checked.historyOrders += hist.length;
        metrics?.checked.inc({ source: 'open' }, open.length);
        metrics?.checked.inc({ source: 'history' }, hist.length);
        // One entry per order: the realtime view wins over the history's.
        const byKey = new Map<string, ExchangeOrderUpdate>();
        for (const o of [...hist, ...open]) {
          const u = orderUpdateOf(o, category, observedAt);
          if (u.orderStatus === 'Created') continue; // not yet accepted by the matching engine
          byKey.set(u.orderId || `link:${u.orderLinkId}`, u);
        }
        const exchange = [...byKey.values()];
        const locals = await loadByIds(
          exchange.map((u) => u.orderLinkId).filter(Boolean),
          exchange.map((u) => u.orderId).filter(Boolean),
        );
        const byLink = new Map(locals.filter((l) => l.order_link_id).map((l) => [l.order_link_id!, l]));
        const byId = new Map(locals.filter((l) => l.order_id).map((l) => [l.order_id!, l]));
        r.checked.localOrders += locals.length;
        const seen = new Set<number>();
        for (const u of exchange) {
          const l = (u.orderLinkId ? byLink.get(u.orderLinkId) : undefined) ?? (u.orderId ? byId.get(u.orderId) : undefined);
          if (l) seen.add(l.id);
          if (l && handled.has(l.id)) continue;
          const kind = compareOrder(l, u);
          if (!kind) continue;
          if (fresh(u.updatedTime)) continue; // the stream is still delivering it
          orderOut.push({ key: u.symbol, value: u });
          note(r, { kind, category, symbol: u.symbol, orderLinkId: u.orderLinkId || null, orderId: u.orderId || null, local: l?.status ?? null, exchange: u.orderStatus }, true);
          if (l) handled.add(l.id);
        }

        // Local open orders Bybit lists neither as open nor in the history: ask for each.
        const openIds = new Set(exchange.filter((u) => EXCHANGE_OPEN_SET.has(u.orderStatus)).map((u) => u.orderId));
        const localOpen = await deps.db.any(sql.type(localRow)`
          SELECT ${LOCAL_COLUMNS} FROM orders
          WHERE category = ${category} AND status = ANY(${sql.array([...EXCHANGE_OPEN_STATUSES], 'text')})
            AND updated_at <= ${sql.timestamp(new Date(graceEdge))}
          ORDER BY updated_at LIMIT ${cfg.RECONCILE_MAX_QUERIES}`);
        r.checked.localOrders += localOpen.filter((l) => !seen.has(l.id)).length;
        metrics?.checked.inc({ source: 'local' }, localOpen.length);
        for (const l of localOpen) {
          if (!wanted(l.symbol) || handled.has(l.id) || seen.has(l.id) || (l.order_id && openIds.has(l.order_id))) continue;
          if (queries >= cfg.RECONCILE_MAX_QUERIES) break;
          await queryOne(l, 'status_mismatch');
        }
      }
      await emit(topic.orders, orderOut);
      r.corrections.orders = orderOut.length;
      metrics?.corrections.inc({ topic: 'exchange.orders' }, orderOut.length);

      // 3. Executions.
      const execOut: Array<{ key: string; value: Execution }> = [];
      for (const category of cfg.RECONCILE_CATEGORIES) {
        // Oldest first (Bybit lists newest first): the tracking stage books executions in the order
        // they arrive, and an average-cost book, or a funding payment split over the books holding
        // the position, is only right in the order the exchange made them.
        const execs = (await rest.executions(category, ...window()))
          .filter((e) => wanted(rawText(e.symbol)))
          .sort((a, b) => Number(a.execTime) - Number(b.execTime) || Number(a.seq ?? 0) - Number(b.seq ?? 0));
        const observedAt = clock.now();
        r.checked.executions += execs.length;
        const ids = execs.map((e) => rawText(e.execId)).filter(Boolean);
        const known = new Set(
          ids.length ? (await deps.db.any(sql.type(z.object({ exec_id: z.string() }))`SELECT exec_id FROM executions WHERE exec_id = ANY(${sql.array(ids, 'text')})`)).map((x) => x.exec_id) : [],
        );
        for (const raw of execs) {
          const e = executionOf(raw, category, observedAt);
          if (!e.execId || known.has(e.execId) || fresh(e.execTime)) continue;
          execOut.push({ key: e.symbol, value: e });
          note(r, { kind: 'missing_execution', category, symbol: e.symbol, orderLinkId: e.orderLinkId || null, orderId: e.orderId || null, local: null, exchange: `${e.execQty}@${e.execPrice}` }, true);
        }
      }
      // Executions go after the order updates: the tracker then knows the order when they arrive
      // (it copes with the other order too, keeping orphan fills until the order is known).
      await emit(topic.executions, execOut);
      r.corrections.executions = execOut.length;
      metrics?.corrections.inc({ topic: 'exchange.executions' }, execOut.length);

      // 4. Positions and wallet.
      if (cfg.RECONCILE_CATEGORIES.includes('linear')) {
        const positions = (await rest.positions()).filter((p) => wanted(rawText(p.symbol)));
        const observedAt = clock.now();
        r.checked.positions = positions.length;
        const local = new Map(
          (await deps.db.any(sql.type(z.object({ symbol: z.string(), side: z.string(), size: z.string(), updated_ms: z.number() }))`SELECT symbol, side, size, updated_ms FROM positions WHERE category = 'linear'`)).map((p) => [p.symbol, p]),
        );
        const out: Array<{ key: string; value: Position }> = [];
        for (const raw of positions) {
          const p = positionOf(raw, observedAt);
          const l = local.get(p.symbol);
          const same = l ? decEq(l.size, p.size) && (l.side === p.side || decEq(p.size, '0')) : decEq(p.size, '0');
          if (same || (l && p.updatedTime < l.updated_ms) || fresh(p.updatedTime)) continue;
          out.push({ key: p.symbol, value: p });
          note(r, { kind: 'position_mismatch', category: 'linear', symbol: p.symbol, orderLinkId: null, orderId: null, local: l ? `${l.side} ${l.size}` : null, exchange: `${p.side} ${p.size}` }, true);
        }
        await emit(topic.positions, out);
        r.corrections.positions = out.length;
        metrics?.corrections.inc({ topic: 'exchange.positions' }, out.length);
      }
      const w = await rest.wallet();
      if (w) {
        const wb = walletOf(w, clock.now());
        r.checked.coins = wb.coin.length;
        const local = new Map(
          (await deps.db.any(sql.type(z.object({ coin: z.string(), wallet_balance: z.string() }))`SELECT coin, wallet_balance FROM balances`)).map((b) => [b.coin, b.wallet_balance]),
        );
        const off = wb.coin.filter((c) => !decEq(local.get(c.coin) ?? '0', c.walletBalance));
        for (const c of off) note(r, { kind: 'balance_mismatch', category: 'wallet', symbol: c.coin, orderLinkId: null, orderId: null, local: local.get(c.coin) ?? null, exchange: c.walletBalance }, true);
        if (off.length) {
          await emit(topic.wallet, [{ key: wb.accountType, value: wb }]);
          r.corrections.wallet = 1;
          metrics?.corrections.inc({ topic: 'exchange.wallet' });
        }
      }
      // 5. P&L of the day, linear symbols (reported only).
      if (cfg.RECONCILE_CATEGORIES.includes('linear')) await checkPnl(r);
      r.ok = true;
    } catch (err) {
      r.ok = false;
      r.error = (err as Error).message ?? String(err);
      // What was found before the failure is still written: each record is a fact in itself.
      if (r.corrections.orders === 0 && orderOut.length) {
        await emit(topic.orders, orderOut).then(
          () => void (r.corrections.orders = orderOut.length),
          () => undefined,
        );
      }
      log?.warn({ err: r.error, trigger }, 'reconciliation failed; the next run retries');
    }
    r.finishedAt = clock.now();
    return r;

    async function checkPnl(rep: ReconcileReport): Promise<void> {
      const end = exchangeNow();
      const day = utcDay(end);
      const dayStart = Date.parse(`${day}T00:00:00.000Z`);
      rep.pnlDay = day;
      // One query of at most a day: within Bybit's 7-day window of both endpoints.
      const entries = await rest.transactionLog('linear', dayStart, end);
      // More entries than RECONCILE_MAX_PAGES pages: the sums would miss the oldest (newest come
      // first), so every symbol would look off. Compare nothing rather than report false mismatches.
      const truncated = entries.truncated === true;
      const exchange = exchangeDayNet(entries);
      // Closed P&L is shown, never compared: Bybit books a position's opening fees (and its funding)
      // into the record of the order that CLOSES it, so a day's closed P&L holds fees of earlier
      // days and lacks those of positions still open; the books count each fee when it is paid.
      const closed = new Map<string, Dec>();
      for (const c of await rest.closedPnl(dayStart, end)) {
        const v = Dec.maybe(rawText(c.closedPnl));
        if (v !== null) closed.set(rawText(c.symbol), (closed.get(rawText(c.symbol)) ?? Dec.ZERO).add(v));
      }
      const booked = new Map(
        (await deps.db.any(sql.type(z.object({ symbol: z.string(), net: z.string() }))`
          SELECT symbol, sum(realised - fees + funding)::text AS net FROM pnl_days
          WHERE day = ${day}::date AND category = 'linear' GROUP BY symbol`)).map((b) => [b.symbol, Dec.of(b.net)]),
      );
      // Strategies that held or traded each symbol's position today. The exchange realises against
      // its one position per symbol (one average entry); the books, one per strategy, realise
      // against each strategy's own entry, so with two strategies on a symbol the day's realised
      // part splits differently (a strategy's sell can close another's long at the exchange while
      // both books stay open) though fees, funding and the total with unrealised agree. Such a
      // symbol is reported, not compared.
      const sharedBy = new Map<string, string[]>();
      for (const r of await deps.db.any(sql.type(z.object({ symbol: z.string(), strategies: z.array(z.string()) }))`
        SELECT symbol, array_agg(DISTINCT strategy_id ORDER BY strategy_id) AS strategies FROM (
          SELECT symbol, strategy_id FROM pnl_days WHERE day = ${day}::date AND category = 'linear'
          UNION SELECT symbol, strategy_id FROM pnl_books WHERE category = 'linear' AND qty <> 0) s
        GROUP BY symbol HAVING count(DISTINCT strategy_id) > 1`)) sharedBy.set(r.symbol, r.strategies);
      const symbols = [...new Set([...exchange.keys(), ...booked.keys()])].filter(wanted).sort();
      const latestStored = new Map(
        symbols.length
          ? (await deps.db.any(sql.type(z.object({ symbol: z.string(), t: z.number() }))`
              SELECT symbol, floor(extract(epoch FROM max(exec_time)) * 1000)::float8 AS t FROM executions
              WHERE category = 'linear' AND symbol = ANY(${sql.array(symbols, 'text')}) GROUP BY symbol`)).map((x) => [x.symbol, x.t])
          : [],
      );
      const tolerance = Dec.of(String(cfg.RECONCILE_PNL_TOLERANCE));
      for (const symbol of symbols) {
        const ex = exchange.get(symbol);
        const bk = booked.get(symbol) ?? Dec.ZERO;
        const exNet = ex?.net ?? Dec.ZERO;
        // Executions in flight make a passing difference: the exchange has booked a fill or a
        // funding settlement whose execution the order manager has not stored (and so not booked)
        // yet. A symbol whose latest entry is newer than its latest stored execution, or younger
        // than the grace period, is skipped this run (the next one compares it); a lost execution
        // is missing_execution's to repair, after which the books catch up.
        const latest = ex?.latest ?? 0;
        const shared = sharedBy.get(symbol);
        const skipped = truncated
          ? `the transaction log of the day is longer than RECONCILE_MAX_PAGES (${cfg.RECONCILE_MAX_PAGES}) pages`
          : shared ? `shared by ${shared.length} strategies (${shared.join(', ')}): the exchange realises against one position, the books per strategy`
          : latest > (latestStored.get(symbol) ?? 0) ? 'executions in flight (the exchange has a newer entry than the stored executions)' : fresh(latest) ? 'within the grace period' : null;
        rep.pnl.push({ symbol, exchange: exNet.toString(), booked: bk.toString(), closedPnl: closed.get(symbol)?.toString() ?? null, skipped });
        if (skipped || !pnlDiffers(exNet, bk, tolerance)) continue;
        note(rep, { kind: 'pnl_mismatch', category: 'linear', symbol, orderLinkId: null, orderId: null, local: bk.toString(), exchange: exNet.toString() }, false);
        log?.warn({ symbol, day, booked: bk.toString(), exchange: exNet.toString(), tolerance: cfg.RECONCILE_PNL_TOLERANCE }, 'P&L of the day differs from the exchange\'s transaction log');
      }
    }
  }

  async function record(r: ReconcileReport): Promise<void> {
    try {
      await deps.db.query(sql.typeAlias('void')`
        INSERT INTO reconcile_runs (trigger, started_at, finished_at, ok, error, checked, discrepancies, corrections, details)
        VALUES (${r.trigger}, ${sql.timestamp(new Date(r.startedAt))}, ${sql.timestamp(new Date(r.finishedAt))}, ${r.ok}, ${r.error},
                ${sql.jsonb(r.checked)}, ${sql.jsonb(r.discrepancies)}, ${sql.jsonb(r.corrections)}, ${sql.jsonb(r.details as never)})`);
    } catch (err) {
      log?.warn({ err: (err as Error).message }, 'could not record the reconciliation run');
    }
  }

  const reconcileNow = (trigger: ReconcileTrigger = 'manual'): Promise<ReconcileReport> =>
    (running ??= (async () => {
      try {
        const r = await run(trigger);
        last = r;
        await record(r);
        const outcome = r.ok ? 'ok' : 'failed';
        metrics?.runs.inc({ trigger, outcome });
        metrics?.lastRun.set({ outcome }, r.finishedAt / 1000);
        metrics?.duration.observe((r.finishedAt - r.startedAt) / 1000);
        for (const k of DISCREPANCY_KINDS) {
          metrics?.discrepancies.inc({ kind: k }, r.discrepancies[k]);
          metrics?.lastDiscrepancies.set({ kind: k }, r.discrepancies[k]);
        }
        const fields = { trigger, ok: r.ok, discrepancies: totalDiscrepancies(r), corrections: totalCorrections(r), ms: r.finishedAt - r.startedAt };
        if (totalDiscrepancies(r) > 0) log?.info({ ...fields, kinds: r.discrepancies }, 'reconciliation found discrepancies');
        else log?.debug(fields, 'reconciliation clean');
        return r;
      } finally {
        running = null;
      }
    })());

  return {
    reconcileNow,
    async start(opts = {}) {
      await ensureProducer();
      started = true;
      if (cfg.RECONCILE_ON_START) {
        void reconcileNow('startup').finally(() => {
          firstDone = true;
        });
      } else firstDone = true;
      if (opts.schedule !== false) {
        task = cron.schedule(cfg.RECONCILE_CRON, async () => void (await reconcileNow('schedule')), { noOverlap: true });
      }
    },
    async stop() {
      await task?.stop();
      task = null;
      await running?.catch(() => undefined);
      await producer?.disconnect().catch(() => undefined);
      producer = null;
      started = false;
    },
    ready: () => started && firstDone,
    lastReport: () => last,
  };
}

// ---------------------------------------------------------------------------------------------
// The unit (wired into the order-manager service by stack/services.ts)

export function readerFor(rt: Pick<Runtime, 'cfg' | 'clock'>, fraction: number): ExchangeReader {
  return createExchangeReader({ config: restConfig(rt.cfg), fraction, clock: rt.clock, maxPages: parseConfig(rt.cfg).RECONCILE_MAX_PAGES });
}

/**
 * The reconciler inside a service: startup run, RECONCILE_CRON schedule, metrics on the runtime's
 * registry, and the admin routes POST /admin/reconcile (ADMIN_TOKEN; runs one reconciliation and
 * answers its report: 200 when it completed, 502 when it failed) and GET /admin/reconcile (the
 * last report).
 */
export const reconcilerUnit = defineUnit({
  name,
  doc: 'PostgreSQL against Bybit REST on a schedule and on demand; repairs as records on exchange.*',
  settings: [configSchema, bybitRestSettings],
  inputs: ['bybit:rest'],
  outputs: ['exchange.orders', 'exchange.executions', 'exchange.positions', 'exchange.wallet'],
  writes: ['reconcile_runs'],
  create: startReconciler,
});

async function startReconciler(rt: Runtime): Promise<Unit> {
  const config = parseConfig(rt.cfg);
  const reconciler = createReconciler({
    config,
    db: rt.db,
    kafka: rt.kafka,
    codec: rt.codec,
    reader: readerFor(rt, config.RECONCILE_RATE_LIMIT_FRACTION),
    clock: rt.clock,
    logger: rt.logger,
    registry: rt.metrics.registry,
  });
  rt.admin.addRoute({
    method: 'POST',
    path: '/admin/reconcile',
    mutating: true,
    handler: async () => {
      const r = await reconciler.reconcileNow('admin');
      return { status: r.ok ? 200 : 502, body: r };
    },
  });
  rt.admin.addRoute({
    method: 'GET',
    path: '/admin/reconcile',
    mutating: false,
    handler: async () => {
      const r = reconciler.lastReport();
      return r ? { status: 200, body: r } : { status: 404, body: { error: 'no_run_yet' } };
    },
  });
  await reconciler.start();
  return { name, ready: () => reconciler.ready(), stop: () => reconciler.stop() };
}
