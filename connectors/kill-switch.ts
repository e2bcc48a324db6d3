// Kill switch: stop trading and take every order the system owns off the exchange.
//
// engage(reason):
//   1. trading_state: kill_switch on, state HALTED (pipelines/trading-state.ts `setKillSwitch`, the
//      one transition table), with a trading_state_transitions row when anything changed. From
//      this moment the risk stage decides nothing but rejections (it reads trading_state first).
//   2. cancels every open order the system owns at Bybit, per category: by default one by one, by
//      orderId, for orders whose orderLinkId has our prefix (RISK_ORDER_LINK_PREFIX + '-'); orders
//      placed by anyone else are left alone unless KILL_SWITCH_CANCEL_EXTERNAL is on, which uses
//      Bybit's cancel-all per category instead.
//   3. verifies with realtime queries that no such order remains, cancelling again what is still
//      open (an intent already on its way through placement may land after step 1), until
//      KILL_SWITCH_VERIFY_TIMEOUT_MS; the report says whether it verified.
// release(): kill switch off and, as the table allows, back to ACTIVE (manual_resume).
// Both are idempotent: engaging twice cancels what is open and records no second transition.
// The cancellations reach the order state through the private stream and the reconciler like any
// other cancel; this module never writes `orders`.
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { bool, emptyToUndefined, int } from '../runtime/setting-types.ts';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { DatabasePool } from '../runtime/db.ts';
import type { Logger } from '../runtime/logger.ts';
import { systemClock, type Clock } from '../runtime/clock.ts';
import type { Runtime } from '../runtime/service.ts';
import { defineUnit, type Unit } from '../runtime/unit.ts';
import { resume, setKillSwitch } from '../pipelines/trading-state.ts';
import { moveTradingState, type TradingStateChange } from '../pipelines/trading-state-store.ts';
import type { Category } from '../schemas/types.ts';
import { RET } from './bybit-errors.ts';
import { readerFor } from './reconciler.ts';
import { configSchema as bybitRestSettings } from './bybit-rest.ts';
import { type ExchangeReader, type Raw } from './exchange-reader.ts';

export const name = 'kill-switch';


export const configSchema = z.object({
  RISK_ORDER_LINK_PREFIX: z.preprocess(emptyToUndefined, z.string().regex(/^[A-Za-z0-9]{1,8}$/).default('om')),
  KILL_SWITCH_CATEGORIES: z
    .preprocess((v) => (typeof v === 'string' && v !== '' ? v.split(',').map((x) => x.trim()).filter(Boolean) : (emptyToUndefined(v) ?? ['spot', 'linear'])), z.array(z.enum(['spot', 'linear'])).min(1))
    .describe('Bybit categories the kill switch cancels orders in.'),
  KILL_SWITCH_CANCEL_EXTERNAL: z
    .preprocess(emptyToUndefined, bool.default(false))
    .describe('Also cancel orders this system did not place (Bybit cancel-all per category). Off: only orders whose orderLinkId has our prefix.'),
  KILL_SWITCH_VERIFY_TIMEOUT_MS: z.preprocess(emptyToUndefined, int.min(0).default(15_000)).describe('How long the kill switch keeps checking (and re-cancelling) until no order of ours is open.'),
  KILL_SWITCH_VERIFY_INTERVAL_MS: z.preprocess(emptyToUndefined, int.min(10).default(250)).describe('Pause between two verification queries of the kill switch.'),
  KILL_SWITCH_RATE_LIMIT_FRACTION: z
    .preprocess(emptyToUndefined, z.coerce.number().gt(0).max(1).default(0.5))
    .describe("Share of Bybit's per-UID rate limits the kill switch's cancels and queries may use."),
});
export type KillSwitchConfig = z.output<typeof configSchema>;

export function parseConfig(env: Record<string, unknown> = process.env): KillSwitchConfig {
  return configSchema.parse(env);
}

export const KILL_SWITCH_METRICS = {
  engaged: 'kill_switch_engaged',
  activations: 'kill_switch_activations_total',
  cancelled: 'kill_switch_orders_cancelled_total',
  remaining: 'kill_switch_orders_remaining',
} as const;

export interface KillSwitchMetrics {
  engaged: Gauge<string>;
  activations: Counter<'action'>;
  cancelled: Counter<string>;
  remaining: Gauge<string>;
}

function once<T>(registry: Registry, metricName: string, make: () => T): T {
  return (registry.getSingleMetric(metricName) as T | undefined) ?? make();
}

export function killSwitchMetrics(registry: Registry): KillSwitchMetrics {
  const r = [registry];
  const M = KILL_SWITCH_METRICS;
  return {
    engaged: once(registry, M.engaged, () => new Gauge({ name: M.engaged, help: '1 while the kill switch is on (as last set by this process)', registers: r })),
    activations: once(registry, M.activations, () => new Counter({ name: M.activations, help: 'Kill switch commands handled, by action (engage, release)', labelNames: ['action'], registers: r })),
    cancelled: once(registry, M.cancelled, () => new Counter({ name: M.cancelled, help: 'Orders the kill switch cancelled at the exchange', registers: r })),
    remaining: once(registry, M.remaining, () => new Gauge({ name: M.remaining, help: 'Orders of ours still open at the exchange after the last kill switch verification', registers: r })),
  };
}

export type StateChange = TradingStateChange;

export interface KillSwitchReport {
  action: 'engage' | 'release';
  ok: boolean;
  state: StateChange;
  /** engage: orders cancelled (category/symbol/orderLinkId/orderId). */
  cancelled: Array<{ category: string; symbol: string; orderLinkId: string; orderId: string }>;
  /** engage: cancels Bybit refused for another reason than "already gone". */
  failed: Array<{ orderLinkId: string; orderId: string; error: string }>;
  /** engage: orders of ours still open after verification (0 when ok). */
  remaining: number;
  /** engage: open orders left alone because they are not ours. */
  externalLeftOpen: number;
  verified: boolean;
  error: string | null;
  durationMs: number;
}

export interface KillSwitchDeps {
  config: KillSwitchConfig;
  db: DatabasePool;
  reader: ExchangeReader;
  clock?: Clock;
  logger?: Logger;
  registry?: Registry;
}

export interface KillSwitch {
  engage(reason: string, actor?: string): Promise<KillSwitchReport>;
  release(actor?: string, reason?: string): Promise<KillSwitchReport>;
}

/** Bybit's answers for "that order is not open any more": the cancel's goal is reached. */
const GONE = new Set<number>([RET.ORDER_NOT_EXIST, RET.ORDER_FINISHED, RET.SPOT_ORDER_NOT_EXIST, 170142, 170213]);

function bybitCode(err: unknown): number | null {
  const e = err as { retCode?: number; bybit?: { retCode?: number } };
  return e?.retCode ?? e?.bybit?.retCode ?? null;
}

export function createKillSwitch(deps: KillSwitchDeps): KillSwitch {
  const cfg = deps.config;
  const clock = deps.clock ?? systemClock;
  const log = deps.logger?.child({ unit: name });
  const metrics = deps.registry ? killSwitchMetrics(deps.registry) : null;
  const ours = (o: Raw) => String(o.orderLinkId ?? '').startsWith(`${cfg.RISK_ORDER_LINK_PREFIX}-`);

  /** Move trading_state in one transaction (row locked), recording the transition when it changed. */
  async function setState(on: boolean, reason: string, actor: string): Promise<StateChange> {
    return deps.db.transaction((tx) =>
      moveTradingState(
        tx,
        (cur) => {
          if (on) {
            const r = setKillSwitch(cur, true);
            return { to: r.state, killSwitch: r.killSwitch, cause: 'kill_switch' };
          }
          const off = setKillSwitch(cur, false);
          return { to: resume({ state: off.state, killSwitch: off.killSwitch }), killSwitch: false, cause: 'manual_resume' };
        },
        { reason, actor, at: clock.now() },
      ),
    );
  }

  async function openOrders(): Promise<Array<{ category: Category; o: Raw }>> {
    const out: Array<{ category: Category; o: Raw }> = [];
    for (const category of cfg.KILL_SWITCH_CATEGORIES) for (const o of await deps.reader.openOrders(category)) out.push({ category, o });
    return out;
  }

  async function cancelRound(rep: KillSwitchReport, already: Set<string>): Promise<void> {
    if (cfg.KILL_SWITCH_CANCEL_EXTERNAL) {
      for (const category of cfg.KILL_SWITCH_CATEGORIES) {
        // Linear cancel-all needs a symbol or settle coin; spot takes the whole category.
        const list = await deps.reader.cancelAll(category, category === 'linear' ? { settleCoin: 'USDT' } : {});
        for (const x of list) {
          const id = String(x.orderId ?? '');
          if (already.has(id)) continue;
          already.add(id);
          rep.cancelled.push({ category, symbol: String(x.symbol ?? ''), orderLinkId: String(x.orderLinkId ?? ''), orderId: id });
        }
      }
      return;
    }
    for (const { category, o } of await openOrders()) {
      if (!ours(o)) continue;
      const id = String(o.orderId);
      try {
        await deps.reader.cancelOrder(category, String(o.symbol), { orderId: id });
      } catch (err) {
        const code = bybitCode(err);
        if (code === null || !GONE.has(code)) {
          rep.failed.push({ orderLinkId: String(o.orderLinkId), orderId: id, error: (err as Error).message });
          continue;
        }
      }
      if (!already.has(id)) {
        already.add(id);
        rep.cancelled.push({ category, symbol: String(o.symbol), orderLinkId: String(o.orderLinkId), orderId: id });
      }
    }
  }

  return {
    async engage(reason, actor = 'operator') {
      const t0 = clock.now();
      const rep: KillSwitchReport = { action: 'engage', ok: false, state: await setState(true, reason, actor), cancelled: [], failed: [], remaining: 0, externalLeftOpen: 0, verified: false, error: null, durationMs: 0 };
      metrics?.activations.inc({ action: 'engage' });
      metrics?.engaged.set(1);
      log?.warn({ reason, actor, from: rep.state.from, changed: rep.state.changed }, 'kill switch engaged: trading HALTED, cancelling our open orders');
      const done = new Set<string>();
      const deadline = Date.now() + cfg.KILL_SWITCH_VERIFY_TIMEOUT_MS;
      try {
        for (;;) {
          rep.failed = [];
          await cancelRound(rep, done);
          const open = await openOrders();
          const mine = open.filter((x) => cfg.KILL_SWITCH_CANCEL_EXTERNAL || ours(x.o));
          rep.remaining = mine.length;
          rep.externalLeftOpen = open.length - mine.length;
          if (mine.length === 0) {
            rep.verified = true;
            break;
          }
          if (Date.now() >= deadline) break;
          await sleep(cfg.KILL_SWITCH_VERIFY_INTERVAL_MS);
        }
      } catch (err) {
        rep.error = (err as Error).message ?? String(err);
      }
      rep.ok = rep.verified && rep.error === null;
      rep.durationMs = clock.now() - t0;
      metrics?.cancelled.inc(rep.cancelled.length);
      metrics?.remaining.set(rep.remaining);
      if (rep.ok) log?.warn({ cancelled: rep.cancelled.length, external_left_open: rep.externalLeftOpen }, 'kill switch: no order of ours is open');
      else log?.error({ remaining: rep.remaining, failed: rep.failed.length, err: rep.error }, 'kill switch: could not verify that no order of ours is open');
      return rep;
    },
    async release(actor = 'operator', reason = 'released') {
      const t0 = clock.now();
      const state = await setState(false, reason, actor);
      metrics?.activations.inc({ action: 'release' });
      metrics?.engaged.set(0);
      log?.warn({ actor, from: state.from, to: state.to, changed: state.changed }, 'kill switch released');
      return { action: 'release', ok: true, state, cancelled: [], failed: [], remaining: 0, externalLeftOpen: 0, verified: true, error: null, durationMs: clock.now() - t0 };
    },
  };
}

/** The report as text (the CLI prints it). */
export function formatKillSwitchReport(r: KillSwitchReport): string {
  const lines = [
    `kill switch ${r.action === 'engage' ? 'ON' : 'OFF'}: trading state ${r.state.from} -> ${r.state.to}, kill switch ${r.state.killSwitchBefore} -> ${r.state.killSwitch}${r.state.changed ? '' : ' (unchanged)'}`,
  ];
  if (r.action === 'engage') {
    lines.push(`  orders cancelled          ${r.cancelled.length}`);
    for (const c of r.cancelled) lines.push(`    ${c.category}/${c.symbol} ${c.orderLinkId || '-'} ${c.orderId}`);
    lines.push(`  cancels failed            ${r.failed.length}`);
    for (const f of r.failed) lines.push(`    ${f.orderLinkId || '-'} ${f.orderId}: ${f.error}`);
    lines.push(`  ours still open           ${r.remaining}`);
    lines.push(`  external orders left open ${r.externalLeftOpen}`);
    lines.push(`  verified                  ${r.verified ? 'yes: no order of ours is open' : 'NO'}${r.error ? ` (${r.error})` : ''}`);
  }
  return lines.join('\n');
}

/**
 * The kill switch inside a service: POST /admin/kill-switch {on: boolean, reason?: string}
 * (ADMIN_TOKEN). Answers the report: 200 when done (engage: verified no order of ours is open),
 * 502 when the exchange could not be cleared, 400 for a bad body.
 */
export const killSwitchUnit = defineUnit({
  name,
  doc: 'POST /admin/kill-switch: cancel every open order of ours at Bybit and halt trading, or release',
  settings: [configSchema, bybitRestSettings],
  inputs: ['bybit:rest'],
  outputs: ['bybit:rest'],
  writes: [],
  create: startKillSwitch,
});

async function startKillSwitch(rt: Runtime): Promise<Unit> {
  const config = parseConfig(rt.cfg);
  const ks = createKillSwitch({ config, db: rt.db, reader: readerFor(rt, config.KILL_SWITCH_RATE_LIMIT_FRACTION), clock: rt.clock, logger: rt.logger, registry: rt.metrics.registry });
  const body = z.object({ on: z.boolean(), reason: z.string().max(500).optional() });
  rt.admin.addRoute({
    method: 'POST',
    path: '/admin/kill-switch',
    mutating: true,
    handler: async (raw) => {
      const b = body.safeParse(raw);
      if (!b.success) return { status: 400, body: { error: 'bad_request', detail: 'expected {"on": true|false, "reason"?: string}' } };
      const r = b.data.on ? await ks.engage(b.data.reason ?? 'admin endpoint', 'admin') : await ks.release('admin', b.data.reason);
      return { status: r.ok ? 200 : 502, body: r };
    },
  });
  return { name, ready: () => true, stop: async () => undefined };
}
