// Protect: optional take-profit / stop-loss per strategy on linear positions, through Bybit's
// POST /v5/position/trading-stop (issue #18). Off unless RISK_TPSL names a strategy.
//
// One run: read the linear positions from Bybit (GET /v5/position/list: size, side, the
// takeProfit / stopLoss the exchange holds now), the open linear books (pnl_books: each
// strategy's signed qty and average entry) and the tick sizes (instruments); ask the pure rule
// (pipelines/tpsl.ts planProtection) what each position needs; send trading-stop, tpslMode Full,
// with only the legs whose price differs. Idempotent: a second run, a second instance or a restart
// finds the exchange already holding the prices and sends nothing; two instances racing get
// 34040 "not modified" for the second request, which counts as done.
//
// When: at start, whenever the positions projection or the books change (a cheap PostgreSQL
// fingerprint polled every PROTECT_POLL_MS: a new fill or position record of any linear symbol),
// and every PROTECT_INTERVAL_MS whatever happened (a TP/SL removed at the exchange by someone else
// is put back). Runs never overlap. A failed request is logged (once per symbol and answer while
// it keeps failing) and counted with its retCode; the run goes on with the next symbol and the
// next run tries again, so no answer of Bybit can make the unit crash or loop hot.
//
// It writes no table and no topic: the TP/SL orders the exchange creates, their fills and the
// position changes come back through the private stream like any other order (the tracking stage
// books a TP/SL fill to the strategies that held the position: pipelines/pnl-sql.ts).
import { z } from 'zod';
import { Counter, Gauge, type Registry } from 'prom-client';
import { emptyToUndefined, int } from '../runtime/setting-types.ts';
import { sql, type DatabasePool } from '../runtime/db.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Runtime } from '../runtime/service.ts';
import { defineUnit, type Unit } from '../runtime/unit.ts';
import { planProtection, SKIP_REASONS, tpslSetting, type ExchangePosition, type Holding, type SkipReason } from '../pipelines/tpsl.ts';
import { createBybitCaller, parseConfig as restConfig, configSchema as bybitRestSettings, type BybitCaller } from './bybit-rest.ts';
import { createExchangeReader, type ExchangeReader } from './exchange-reader.ts';
import { isBybitError } from '../pipelines/exchange-port.ts';
import { RET } from './bybit-errors.ts';

export const name = 'protect';

export const configSchema = z.object({
  RISK_TPSL: tpslSetting.describe(
    'Take profit / stop loss per strategy on linear positions, percent of the strategy\'s average entry: `strategyA:tp=2,sl=1;strategyB:sl=0.5`. Set through Bybit trading-stop (Full mode) only while one configured strategy holds the whole position. Empty = off: nothing is ever sent.',
  ),
  PROTECT_INTERVAL_MS: z.preprocess(emptyToUndefined, int.min(1000).default(60_000)).describe('Full TP/SL check of every linear position this often, ms, besides the checks on position and book changes.'),
  PROTECT_POLL_MS: z.preprocess(emptyToUndefined, int.min(50).default(1000)).describe('How often the TP/SL unit looks for a changed linear position or P&L book in PostgreSQL (a change starts a check), ms.'),
  PROTECT_RATE_LIMIT_FRACTION: z
    .preprocess(emptyToUndefined, z.coerce.number().gt(0).max(1).default(0.1))
    .describe("Share of Bybit's per-UID rate limits the TP/SL unit's position reads and trading-stop requests may use."),
});
export type ProtectConfig = z.output<typeof configSchema>;

export function parseConfig(env: Record<string, unknown> = process.env): ProtectConfig {
  return configSchema.parse(env);
}

export const PROTECT_METRICS = {
  runs: 'protect_runs_total',
  sent: 'protect_trading_stops_total',
  errors: 'protect_trading_stop_errors_total',
  skipped: 'protect_positions_skipped',
  protectedPositions: 'protect_positions_protected',
} as const;

export interface ProtectMetrics {
  runs: Counter<'trigger' | 'outcome'>;
  sent: Counter<'strategy'>;
  errors: Counter<'ret_code'>;
  skipped: Gauge<'reason'>;
  protectedPositions: Gauge<string>;
}

function once<T>(registry: Registry, metricName: string, make: () => T): T {
  return (registry.getSingleMetric(metricName) as T | undefined) ?? make();
}

export function protectMetrics(registry: Registry): ProtectMetrics {
  const r = [registry];
  const M = PROTECT_METRICS;
  return {
    runs: once(registry, M.runs, () => new Counter({ name: M.runs, help: 'TP/SL checks, by trigger (start, change, timer, manual) and outcome (ok, failed)', labelNames: ['trigger', 'outcome'], registers: r })),
    sent: once(registry, M.sent, () => new Counter({ name: M.sent, help: 'trading-stop requests Bybit accepted, by strategy', labelNames: ['strategy'], registers: r })),
    errors: once(registry, M.errors, () => new Counter({ name: M.errors, help: 'trading-stop requests Bybit refused or that failed, by retCode (-1: no answer)', labelNames: ['ret_code'], registers: r })),
    skipped: once(registry, M.skipped, () => new Gauge({ name: M.skipped, help: 'Positions of configured strategies the last check left alone, by reason (shared_position, book_differs, hedge_mode, no_instrument, bad_entry)', labelNames: ['reason'], registers: r })),
    protectedPositions: once(registry, M.protectedPositions, () => new Gauge({ name: M.protectedPositions, help: 'Linear positions whose TP/SL matched the setting at the end of the last check', registers: r })),
  };
}

export type ProtectTrigger = 'start' | 'change' | 'timer' | 'manual';

export interface ProtectReport {
  trigger: ProtectTrigger;
  ok: boolean;
  error: string | null;
  /** Positions checked (size > 0). */
  positions: number;
  /** trading-stop requests accepted (34040 "not modified" included: the exchange holds the prices). */
  sent: Array<{ symbol: string; strategy: string; takeProfit: string | null; stopLoss: string | null }>;
  inPlace: number;
  skipped: Array<{ symbol: string; reason: SkipReason; detail: string }>;
  failed: Array<{ symbol: string; retCode: number; error: string }>;
}

export interface ProtectDeps {
  config: ProtectConfig;
  db: DatabasePool;
  reader: Pick<ExchangeReader, 'positions'>;
  caller: BybitCaller;
  logger?: Logger;
  registry?: Registry;
}

export interface Protect {
  /** One check now (a check in progress is joined, not run twice at once). */
  runNow(trigger?: ProtectTrigger): Promise<ProtectReport>;
  /** Check at once, then on changes and on the timer. Does nothing when RISK_TPSL is empty. */
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly enabled: boolean;
  lastReport(): ProtectReport | null;
}

const holdingRow = z.object({ symbol: z.string(), strategy_id: z.string(), qty: z.string(), avg_entry: z.string() });
const tickRow = z.object({ symbol: z.string(), tick_size: z.string() });
const fingerprintRow = z.object({ positions: z.string(), books: z.string() });

const text = (v: unknown): string => (v === undefined || v === null ? '' : String(v));

export function createProtect(deps: ProtectDeps): Protect {
  const cfg = deps.config;
  const spec = cfg.RISK_TPSL;
  const enabled = Object.keys(spec).length > 0;
  const log = deps.logger?.child({ unit: name });
  const metrics = deps.registry ? protectMetrics(deps.registry) : null;
  let running: Promise<ProtectReport> | null = null;
  let last: ProtectReport | null = null;
  let timer: NodeJS.Timeout | null = null;
  let poller: NodeJS.Timeout | null = null;
  let fingerprint: string | null = null;
  let stopped = false;
  /** symbol → the failure last logged, so a request that keeps failing logs once, not every run. */
  const logged = new Map<string, string>();

  async function send(symbol: string, takeProfit: string | null, stopLoss: string | null): Promise<void> {
    const params = { category: 'linear' as const, symbol, tpslMode: 'Full' as const, positionIdx: 0 as const, ...(takeProfit !== null ? { takeProfit } : {}), ...(stopLoss !== null ? { stopLoss } : {}) };
    try {
      await deps.caller.call('amend', '/v5/position/trading-stop', 'linear', () => deps.caller.client.setTradingStop(params) as never);
    } catch (err) {
      // 34040: the position already holds these prices (another instance was first).
      if (isBybitError(err) && err.retCode === RET.TPSL_NOT_MODIFIED) return;
      throw err;
    }
  }

  async function run(trigger: ProtectTrigger): Promise<ProtectReport> {
    const r: ProtectReport = { trigger, ok: false, error: null, positions: 0, sent: [], inPlace: 0, skipped: [], failed: [] };
    try {
      const positions = (await deps.reader.positions()).filter((p) => Number(text(p.size)) > 0);
      r.positions = positions.length;
      const symbols = [...new Set(positions.map((p) => text(p.symbol)))];
      const holdings = new Map<string, Holding[]>();
      const ticks = new Map<string, string>();
      if (symbols.length) {
        for (const h of await deps.db.any(sql.type(holdingRow)`
          SELECT symbol, strategy_id, qty::text AS qty, avg_entry::text AS avg_entry FROM pnl_books
          WHERE category = 'linear' AND qty <> 0 AND symbol = ANY(${sql.array(symbols, 'text')})`)) {
          const list = holdings.get(h.symbol) ?? [];
          list.push({ strategy: h.strategy_id, qty: h.qty, avgEntry: h.avg_entry });
          holdings.set(h.symbol, list);
        }
        for (const t of await deps.db.any(sql.type(tickRow)`
          SELECT symbol, tick_size::text AS tick_size FROM instruments WHERE category = 'linear' AND symbol = ANY(${sql.array(symbols, 'text')})`)) ticks.set(t.symbol, t.tick_size);
      }
      for (const raw of positions) {
        const pos: ExchangePosition = {
          symbol: text(raw.symbol),
          side: text(raw.side),
          size: text(raw.size),
          positionIdx: Number(raw.positionIdx ?? 0),
          takeProfit: text(raw.takeProfit),
          stopLoss: text(raw.stopLoss),
        };
        const plan = planProtection(spec, pos, holdings.get(pos.symbol) ?? [], ticks.get(pos.symbol) ?? null);
        if (plan.kind === 'none') continue;
        if (plan.kind === 'in_place') {
          r.inPlace += 1;
          logged.delete(pos.symbol);
          continue;
        }
        if (plan.kind === 'skip') {
          r.skipped.push({ symbol: pos.symbol, reason: plan.reason, detail: plan.detail });
          const key = `skip:${plan.reason}`;
          if (logged.get(pos.symbol) !== key) log?.info({ symbol: pos.symbol, reason: plan.reason, detail: plan.detail }, 'TP/SL not set on this position');
          logged.set(pos.symbol, key);
          continue;
        }
        try {
          await send(pos.symbol, plan.takeProfit, plan.stopLoss);
          r.sent.push({ symbol: pos.symbol, strategy: plan.strategy, takeProfit: plan.takeProfit, stopLoss: plan.stopLoss });
          r.inPlace += 1;
          metrics?.sent.inc({ strategy: plan.strategy });
          logged.delete(pos.symbol);
          log?.info({ symbol: pos.symbol, strategy: plan.strategy, side: plan.side, entry: plan.entry, take_profit: plan.takeProfit, stop_loss: plan.stopLoss }, 'TP/SL set on the position');
        } catch (err) {
          const retCode = isBybitError(err) ? err.retCode : -1;
          const message = (err as Error).message ?? String(err);
          r.failed.push({ symbol: pos.symbol, retCode, error: message });
          metrics?.errors.inc({ ret_code: String(retCode) });
          const key = `fail:${retCode}:${plan.takeProfit}:${plan.stopLoss}`;
          if (logged.get(pos.symbol) !== key) log?.warn({ symbol: pos.symbol, strategy: plan.strategy, ret_code: retCode, err: message, take_profit: plan.takeProfit, stop_loss: plan.stopLoss }, 'trading-stop failed; the next check tries again');
          logged.set(pos.symbol, key);
        }
      }
      r.ok = true;
    } catch (err) {
      r.error = (err as Error).message ?? String(err);
      log?.warn({ err: r.error, trigger }, 'TP/SL check failed; the next check tries again');
    }
    if (r.ok) {
      for (const reason of SKIP_REASONS) metrics?.skipped.set({ reason }, r.skipped.filter((s) => s.reason === reason).length);
      metrics?.protectedPositions.set(r.inPlace);
    }
    metrics?.runs.inc({ trigger, outcome: r.ok ? 'ok' : 'failed' });
    return r;
  }

  const runNow = (trigger: ProtectTrigger = 'manual'): Promise<ProtectReport> =>
    (running ??= run(trigger)
      .then((r) => (last = r))
      .finally(() => {
        running = null;
      }));

  /** A change of any linear position record or book: max exchange time of positions, sum of book versions. */
  async function changed(): Promise<boolean> {
    const f = await deps.db.one(sql.type(fingerprintRow)`
      SELECT (SELECT coalesce(max(updated_ms), 0)::text FROM positions WHERE category = 'linear') AS positions,
             (SELECT coalesce(sum(version), 0)::text FROM pnl_books WHERE category = 'linear') AS books`);
    const next = `${f.positions}/${f.books}`;
    const moved = fingerprint !== null && next !== fingerprint;
    fingerprint = next;
    return moved;
  }

  return {
    enabled,
    runNow,
    async start() {
      if (!enabled) {
        log?.info('RISK_TPSL is empty: no take profit / stop loss is set');
        return;
      }
      stopped = false;
      log?.info({ strategies: Object.keys(spec) }, 'take profit / stop loss on linear positions');
      await changed().catch(() => false);
      void runNow('start');
      timer = setInterval(() => void runNow('timer'), cfg.PROTECT_INTERVAL_MS);
      const poll = async () => {
        if (stopped) return;
        try {
          if ((await changed()) && !stopped) await runNow('change');
        } catch (err) {
          log?.debug({ err: (err as Error).message }, 'TP/SL change poll failed');
        }
        if (!stopped) poller = setTimeout(() => void poll(), cfg.PROTECT_POLL_MS);
      };
      poller = setTimeout(() => void poll(), cfg.PROTECT_POLL_MS);
    },
    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      if (poller) clearTimeout(poller);
      timer = poller = null;
      await running?.catch(() => undefined);
    },
    lastReport: () => last,
  };
}

/** The reader and the trading-stop caller over one rate limiter (one share of the account's budget). */
export function protectRest(rt: Pick<Runtime, 'cfg' | 'clock' | 'logger'>, fraction: number): { reader: ExchangeReader; caller: BybitCaller } {
  const config = restConfig(rt.cfg);
  const caller = createBybitCaller({ config, fraction, clock: rt.clock, logger: rt.logger.child({ unit: name }) });
  return { caller, reader: createExchangeReader({ config, limiter: caller.limiter, clock: rt.clock }) };
}

/**
 * The TP/SL unit inside a service: checks at start, on position and book changes and on its timer;
 * POST /admin/protect (ADMIN_TOKEN) runs one check and answers its report.
 */
export const protectUnit = defineUnit({
  name,
  doc: 'RISK_TPSL take profit / stop loss of linear positions → Bybit trading-stop (off when empty)',
  settings: [configSchema, bybitRestSettings],
  inputs: ['bybit:rest'],
  outputs: ['bybit:rest'],
  writes: [],
  create: startProtect,
});

async function startProtect(rt: Runtime): Promise<Unit> {
  const config = parseConfig(rt.cfg);
  const p = createProtect({ config, db: rt.db, ...protectRest(rt, config.PROTECT_RATE_LIMIT_FRACTION), logger: rt.logger, registry: rt.metrics.registry });
  rt.admin.addRoute({
    method: 'POST',
    path: '/admin/protect',
    mutating: true,
    handler: async () => {
      if (!p.enabled) return { status: 409, body: { error: 'disabled', detail: 'RISK_TPSL is empty' } };
      const r = await p.runNow('manual');
      return { status: r.ok && r.failed.length === 0 ? 200 : 502, body: r };
    },
  });
  await p.start();
  return { name, ready: () => true, detail: () => ({ enabled: p.enabled, last: p.lastReport() && { ok: p.lastReport()!.ok, sent: p.lastReport()!.sent.length, skipped: p.lastReport()!.skipped.length, failed: p.lastReport()!.failed.length } }), stop: () => p.stop() };
}

