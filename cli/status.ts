// `status`: is the stack up, what is the trading state, how many orders are open, how far behind
// each stage's consumer group is, and how the last reconciliation went.
import { connect as amqpConnect } from 'amqplib';
import { RestClientV5 } from 'bybit-api';
import { z } from 'zod';
import { kafkaBrokers, schemaRegistryUrl } from '../runtime/config.ts';
import { sql } from '../runtime/db.ts';
import { clientOptions, parseConfig as restConfig } from '../connectors/bybit-rest.ts';
import { inputSchema as validateInput } from '../pipelines/validate.ts';
import { GROUP as signalDecideGroup } from '../pipelines/signal-decide.ts';
import { name as placeName } from '../pipelines/place.ts';
import { name as trackName, inputSchemas as trackInputs } from '../pipelines/track.ts';
import { recentConflicts, type ConflictSummary } from '../pipelines/stage-conflicts.ts';
import { readDayPnl, type BookPnl } from '../pipelines/pnl-sql.ts';
import { utcDay } from '../pipelines/trading-state.ts';
import { EXIT, within, type CliContext } from './context.ts';

/** Each stage's consumer group (TOPIC_PREFIX + stage name, as runtime/service.ts names them) and inputs. */
export const STAGE_INPUTS: ReadonlyArray<{ stage: string; topics: readonly string[] }> = [
  // The fused stage (validation with risk & sizing) consumes in validation's group; signals.valid has no consumer.
  { stage: signalDecideGroup, topics: [validateInput.topic] },
  { stage: placeName, topics: ['orders.intents'] },
  { stage: trackName, topics: trackInputs.map((i) => i.topic) },
];

export interface Check {
  name: string;
  up: boolean;
  where: string;
  detail: string;
}

export interface LagRow {
  stage: string;
  topic: string;
  lag: number | null;
  detail: string;
}

export interface Status {
  stack: Check[];
  trading: { state: string; killSwitch: boolean; reason: string | null; updatedAt: number } | null;
  /** P&L from the tracking stage's books (pipelines/pnl-sql.ts), quote coin. */
  pnl: { day: string; dayNet: string; unrealised: string; books: BookPnl[] } | null;
  orders: { open: number; inFlight: number; byStatus: Record<string, number> } | null;
  lag: LagRow[];
  lastReconcile: { at: number; trigger: string; ok: boolean; error: string | null; ms: number; discrepancies: number; corrections: number } | null;
  /** Records the stages dead-lettered as conflicts with stored state in the last 24 h (stage_conflicts). */
  conflicts: readonly ConflictSummary[] | null;
}

const mask = (url: string) => url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');

async function check(name: string, where: string, fn: () => Promise<string>): Promise<Check> {
  try {
    return { name, up: true, where, detail: await within(fn(), 5000, name) };
  } catch (err) {
    return { name, up: false, where, detail: (err as Error).message.split('\n')[0]!.slice(0, 160) };
  }
}

export async function collectStatus(ctx: CliContext): Promise<Status> {
  const cfg = ctx.cfg;
  const admin = ctx.kafka().admin();
  const stack: Check[] = [];
  stack.push(
    await check('kafka', kafkaBrokers(cfg).join(','), async () => {
      await admin.connect();
      const c = await admin.describeCluster();
      return `${c.brokers.length} broker(s), controller ${c.controller ?? '-'}`;
    }),
  );
  stack.push(
    await check('schema registry', schemaRegistryUrl(cfg), async () => {
      const res = await fetch(`${schemaRegistryUrl(cfg)}/subjects`, { signal: AbortSignal.timeout(3000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return `${((await res.json()) as unknown[]).length} subjects`;
    }),
  );
  stack.push(
    await check('postgresql', mask(cfg.DATABASE_URL), async () => {
      const db = await ctx.db();
      return (await db.one(sql.type(z.object({ v: z.string() }))`SELECT split_part(version(), ' ', 2) AS v`)).v;
    }),
  );
  stack.push(
    await check('rabbitmq', mask(cfg.AMQP_URL), async () => {
      const conn = await amqpConnect(cfg.AMQP_URL, { timeout: 3000 });
      await conn.close();
      return 'AMQP 0-9-1';
    }),
  );
  const adminUrl = `http://${cfg.ADMIN_HOST}:${cfg.ADMIN_PORT}`;
  stack.push(
    await check('order manager', `${adminUrl}/readyz`, async () => {
      const res = await fetch(`${adminUrl}/readyz`, { signal: AbortSignal.timeout(2000) });
      const body = (await res.json()) as { checks?: Record<string, boolean> };
      const notReady = Object.entries(body.checks ?? {}).filter(([, v]) => !v).map(([k]) => k);
      if (res.status !== 200) throw new Error(`not ready: ${notReady.join(', ') || `HTTP ${res.status}`}`);
      return `ready (${Object.keys(body.checks ?? {}).length} units)`;
    }),
  );
  const rest = restConfig(cfg);
  stack.push(
    await check(`bybit (${rest.BYBIT_ENV})`, clientOptions(rest).baseUrl ?? rest.BYBIT_ENV, async () => {
      const client = new RestClientV5(clientOptions(rest), { timeout: 3000 });
      const t = (await client.getServerTime()) as { retCode: number; retMsg: string; time?: number };
      if (t.retCode !== 0) throw new Error(`${t.retCode} ${t.retMsg}`);
      return `server time ${new Date(Number(t.time)).toISOString()}`;
    }),
  );

  const dbUp = stack.find((c) => c.name === 'postgresql')!.up;
  let trading: Status['trading'] = null;
  let pnl: Status['pnl'] = null;
  let orders: Status['orders'] = null;
  let lastReconcile: Status['lastReconcile'] = null;
  let conflicts: Status['conflicts'] = null;
  if (dbUp) {
    const db = await ctx.db();
    const t = await db.maybeOne(
      sql.type(z.object({ state: z.string(), kill_switch: z.boolean(), reason: z.string().nullable(), updated_at: z.number() }))`
        SELECT state, kill_switch, reason, updated_at FROM trading_state WHERE id`,
    );
    if (t) trading = { state: t.state, killSwitch: t.kill_switch, reason: t.reason, updatedAt: t.updated_at };
    const hasBooks = await db.oneFirst(sql.type(z.object({ ok: z.boolean() }))`SELECT to_regclass('pnl_books') IS NOT NULL AS ok`);
    if (hasBooks) {
      const now = Date.now();
      const day = await readDayPnl(db, now);
      pnl = { day: utcDay(now), dayNet: day.dayNet.toString(), unrealised: day.unrealised.toString(), books: day.books };
    }
    const rows = await db.any(sql.type(z.object({ status: z.string(), n: z.number() }))`
      SELECT status, count(*)::int AS n FROM orders
      WHERE status IN ('New', 'PartiallyFilled', 'Untriggered', 'Triggered', 'Submitted', 'PendingAmend', 'PendingCancel', 'Unknown')
         OR (status = 'Intent' AND submitted_at IS NOT NULL)
      GROUP BY status ORDER BY status`);
    const byStatus = Object.fromEntries(rows.map((r) => [r.status, r.n]));
    const open = ['New', 'PartiallyFilled', 'Untriggered', 'Triggered'].reduce((a, k) => a + (byStatus[k] ?? 0), 0);
    const inFlight = rows.reduce((a, r) => a + r.n, 0) - open;
    orders = { open, inFlight, byStatus };
    const hasRuns = await db.one(sql.type(z.object({ ok: z.boolean() }))`SELECT to_regclass('reconcile_runs') IS NOT NULL AS ok`);
    if (hasRuns.ok) {
      const r = await db.maybeOne(
        sql.type(z.object({ started_at: z.number(), finished_at: z.number(), trigger: z.string(), ok: z.boolean(), error: z.string().nullable(), discrepancies: z.record(z.number()), corrections: z.record(z.number()) }))`
          SELECT started_at, finished_at, trigger, ok, error, discrepancies, corrections FROM reconcile_runs ORDER BY id DESC LIMIT 1`,
      );
      const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
      if (r) lastReconcile = { at: r.finished_at, trigger: r.trigger, ok: r.ok, error: r.error, ms: r.finished_at - r.started_at, discrepancies: sum(r.discrepancies), corrections: sum(r.corrections) };
    }
    const hasConflicts = await db.one(sql.type(z.object({ ok: z.boolean() }))`SELECT to_regclass('stage_conflicts') IS NOT NULL AS ok`);
    if (hasConflicts.ok) conflicts = await recentConflicts(db, Date.now());
  }

  const lag: LagRow[] = [];
  if (stack.find((c) => c.name === 'kafka')!.up) {
    const existing = new Set(await admin.listTopics());
    for (const s of STAGE_INPUTS) {
      for (const logical of s.topics) {
        const topic = cfg.TOPIC_PREFIX + logical;
        if (!existing.has(topic)) {
          lag.push({ stage: s.stage, topic: logical, lag: null, detail: 'topic missing' });
          continue;
        }
        const high = await admin.topicOffsets(topic);
        const done = await admin.groupOffsets(cfg.TOPIC_PREFIX + s.stage, topic);
        let total = 0;
        let committed = false;
        for (const p of high) {
          const c = Number(done.find((d) => d.partition === p.partition)?.offset ?? -1);
          if (c >= 0) committed = true;
          total += Number(p.high) - (c >= 0 ? c : Number(p.low));
        }
        lag.push({ stage: s.stage, topic: logical, lag: total, detail: committed ? '' : 'no commits yet' });
      }
    }
  }
  await admin.disconnect().catch(() => undefined);
  return { stack, trading, pnl, orders, lag, lastReconcile, conflicts };
}

/** Two decimals for the screen; the JSON form keeps every digit. */
const fixed = (v: string): string => Number(v).toFixed(2);

export function formatStatus(s: Status, prefix: string): string {
  const out: string[] = ['stack'];
  for (const c of s.stack) out.push(`  ${c.name.padEnd(16)} ${(c.up ? 'up' : 'DOWN').padEnd(5)} ${c.where.padEnd(42)} ${c.detail}`);
  out.push('trading state');
  if (s.trading) {
    out.push(`  ${s.trading.state}${s.trading.killSwitch ? '  KILL SWITCH ON' : ''}  since ${new Date(s.trading.updatedAt).toISOString()}${s.trading.reason ? `  (${s.trading.reason})` : ''}`);
  } else out.push('  unknown (PostgreSQL unreachable or not migrated)');
  out.push('p&l (quote coin; net = realised − fees + funding; unrealised at mark for linear, last for spot)');
  if (s.pnl) {
    out.push(`  today (${s.pnl.day} UTC) net realised ${fixed(s.pnl.dayNet)}, open unrealised ${fixed(s.pnl.unrealised)}`);
    const total = (k: 'net' | 'unrealised' | 'fees' | 'funding') => fixed(String(s.pnl!.books.reduce((a, b) => a + Number(b[k]), 0)));
    out.push(`  all time net ${total('net')}, fees ${total('fees')}, funding ${total('funding')}, unrealised ${total('unrealised')}`);
    for (const b of s.pnl.books) {
      out.push(`  ${b.strategy.padEnd(16)} ${b.category.padEnd(6)} ${b.symbol.padEnd(10)} qty ${b.qty.padStart(12)}  net ${fixed(b.net).padStart(10)}  fees ${fixed(b.fees).padStart(8)}  funding ${fixed(b.funding).padStart(8)}  unrealised ${fixed(b.unrealised).padStart(10)}`);
    }
  } else out.push('  unknown (PostgreSQL unreachable or not migrated)');
  out.push('orders');
  if (s.orders) {
    const detail = Object.entries(s.orders.byStatus).map(([k, v]) => `${k} ${v}`).join(', ');
    out.push(`  open ${s.orders.open}, in flight ${s.orders.inFlight}${detail ? `  (${detail})` : ''}`);
  } else out.push('  unknown');
  out.push(`consumer lag${prefix ? ` (TOPIC_PREFIX ${prefix})` : ''}`);
  if (s.lag.length === 0) out.push('  unknown (Kafka unreachable)');
  for (const l of s.lag) out.push(`  ${l.stage.padEnd(10)} ${l.topic.padEnd(20)} ${(l.lag === null ? '-' : String(l.lag)).padStart(8)}  ${l.detail}`);
  out.push('last reconciliation');
  const r = s.lastReconcile;
  if (r) out.push(`  ${new Date(r.at).toISOString()} ${r.trigger} ${r.ok ? 'ok' : `FAILED (${r.error})`}, ${r.ms} ms, ${r.discrepancies} discrepancies, ${r.corrections} corrections`);
  else out.push('  none recorded');
  out.push('conflicts (records dead-lettered because their effects could not be stored, last 24 h)');
  if (s.conflicts === null) out.push('  unknown');
  else if (s.conflicts.length === 0) out.push('  none');
  for (const c of s.conflicts ?? []) {
    out.push(`  ${c.stage.padEnd(10)} ${c.reason.padEnd(16)} ${c.action === 'halt' ? 'HALTED trading' : 'dead-lettered '} ${String(c.n).padStart(5)}  last ${new Date(c.last_at).toISOString()} ${c.last_source}: ${c.last_detail.slice(0, 120)}`);
  }
  return out.join('\n');
}

/** Exit 0 when Kafka and PostgreSQL answer (what every other command needs), 1 otherwise. */
export async function statusCommand(ctx: CliContext, opts: { json: boolean }): Promise<number> {
  const s = await collectStatus(ctx);
  process.stdout.write(opts.json ? `${JSON.stringify(s)}\n` : `${formatStatus(s, ctx.cfg.TOPIC_PREFIX)}\n`);
  const essential = s.stack.filter((c) => c.name === 'kafka' || c.name === 'postgresql');
  return essential.every((c) => c.up) ? EXIT.ok : EXIT.failed;
}
