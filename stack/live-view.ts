// The live terminal view of `npm start`: one screen redrawn in place (not a scrolling log) with the
// figures an operator watches. Reads the process's own metrics registry and PostgreSQL; when stdout
// is not a terminal it prints nothing (the JSON logs are the record then).
import { z } from 'zod';
import type { Registry } from 'prom-client';
import { sql, type DatabasePool } from '../runtime/db.ts';
import { M } from '../runtime/metrics.ts';
import { readDayPnl } from '../pipelines/pnl-sql.ts';

interface Sample {
  labels: Record<string, string | number>;
  value: number;
}

async function samples(registry: Registry, name: string): Promise<Sample[]> {
  const m = registry.getSingleMetric(name);
  if (!m) return [];
  const json = (await m.get()) as { values: Array<{ labels: Record<string, string | number>; value: number }> };
  return json.values.map((v) => ({ labels: v.labels, value: v.value }));
}

const sum = (xs: Sample[], pred: (l: Record<string, string | number>) => boolean = () => true) => xs.filter((x) => pred(x.labels)).reduce((a, x) => a + x.value, 0);

const OrderCounts = z.object({ status: z.string(), n: z.number() });
const PositionRow = z.object({ symbol: z.string(), category: z.string(), size: z.string(), side: z.string(), unrealised_pnl: z.string(), cum_realised_pnl: z.string() });
const BalanceRow = z.object({ coin: z.string(), wallet_balance: z.string(), usd_value: z.string().nullable() });
const StateRow = z.object({ state: z.string(), kill_switch: z.boolean() });
const RefusedRow = z.object({ n: z.number() });
const ModeRow = z.object({ to_mode: z.string(), model_version: z.string().nullable(), metrics: z.unknown() });
const ActiveRow = z.object({ version: z.string(), metrics: z.record(z.unknown()) });
const ActiveMoney = z.object({
  pnl_bps_per_window: z.number(),
  max_drawdown_bps: z.number(),
  ece: z.number(),
  hit_rate: z.number(),
  decision: z.object({ baseline: z.string(), diff: z.object({ lower: z.number(), mean: z.number() }) }),
}).partial();
const f2 = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(2));

/** The model's money line: the active version's held-out figures (model_versions) and the live window's gauges. */
async function moneyLine(db: DatabasePool, registry: Registry): Promise<string> {
  const active = await db.maybeOne(sql.type(ActiveRow)`SELECT version, metrics FROM model_versions WHERE status = 'active'`);
  const live = await samples(registry, 'model_service_live_pnl_bps');
  const of = (kind: string) => live.find((x) => x.labels.kind === kind)?.value;
  const liveText = live.length ? `   live ${f2(of('model'))} vs warm-up ${f2(of('warmup_shadow'))} bps/signal` : '';
  // The switch's record while warm-up trades: the active version's shadow since its promotion.
  const shadow = await samples(registry, 'model_service_shadow_pnl_bps');
  const sh = (kind: string) => shadow.find((x) => x.labels.kind === kind)?.value;
  const low = async (name: string) => (await samples(registry, name))[0]?.value;
  const shadowText = shadow.length
    ? `   shadow ${f2(sh('model'))} vs warm-up ${f2(sh('warmup'))} bps/window (low over warm-up ${f2(await low('model_service_shadow_pnl_diff_lower_bps'))}, over one side ${f2(await low('model_service_shadow_pnl_one_side_lower_bps'))})`
    : '';
  if (!active) return `Model $   no active version (warm-up trades)${liveText}`;
  const m = ActiveMoney.safeParse(active.metrics);
  const h = m.success ? m.data : {};
  return `Model $   held-out ${f2(h.pnl_bps_per_window)} bps/window after costs, vs ${h.decision?.baseline ?? '?'} +${f2(h.decision?.diff.mean)} (95 % low ${f2(h.decision?.diff.lower)}), drawdown ${f2(h.max_drawdown_bps)}, ECE ${h.ece?.toFixed(3) ?? '-'}, hit ${h.hit_rate?.toFixed(3) ?? '-'}${shadowText}${liveText}`;
}

/** Build the screen (exported for tests). */
export async function renderView(db: DatabasePool, registry: Registry, startedAt: number, now: number): Promise<string[]> {
  const inV = await samples(registry, M.stageRecordsIn);
  const rej = await samples(registry, M.stageRejected);
  const lag = await samples(registry, M.stageLag);
  const orders = await db.any(sql.type(OrderCounts)`SELECT status, count(*)::int AS n FROM orders GROUP BY status ORDER BY status`);
  const positions = await db.any(sql.type(PositionRow)`SELECT symbol, category, size::text, side, unrealised_pnl::text, cum_realised_pnl::text FROM positions WHERE size > 0 ORDER BY symbol`);
  const balances = await db.any(sql.type(BalanceRow)`SELECT coin, wallet_balance::text, usd_value::text FROM balances WHERE wallet_balance <> 0 ORDER BY coin`);
  const st = await db.maybeOne(sql.type(StateRow)`SELECT state, kill_switch FROM trading_state`);
  const pnl = await readDayPnl(db, now);
  const books = pnl.books;
  const total = (k: 'net' | 'fees' | 'funding' | 'unrealised') => books.reduce((a, b) => a + Number(b[k]), 0).toFixed(2);
  const mode = await db.maybeOne(sql.type(ModeRow)`SELECT to_mode, model_version, metrics FROM model_mode_transitions ORDER BY at DESC, id DESC LIMIT 1`);
  const refused = await db.one(sql.type(RefusedRow)`SELECT count(*)::int AS n FROM decisions WHERE action = 'reject'`);
  const count = (s: string[]) => orders.filter((o) => s.includes(o.status)).reduce((a, o) => a + o.n, 0);
  const up = Math.round((now - startedAt) / 1000);
  const lines = [
    `Bybit pipeline — up ${up}s — ${new Date(now).toISOString()}   (Ctrl-C drains and stops)`,
    '',
    `Signals   in ${sum(inV, (l) => l.stage === 'signal-decide')}   refused (dlq) ${sum(rej, (l) => l.stage === 'signal-decide')}   refused by risk ${refused.n}`,
    `Orders    placed ${count(['Submitted', 'New', 'PartiallyFilled', 'Filled', 'Cancelled', 'PartiallyFilledCanceled'])}   filled ${count(['Filled'])}   open ${count(['Intent', 'Submitted', 'New', 'PartiallyFilled', 'PendingAmend', 'PendingCancel'])}   rejected ${count(['Rejected'])}`,
    `Trading   ${st ? `${st.state}${st.kill_switch ? ' (kill switch)' : ''}` : 'no trading state row'}   today net ${pnl.dayNet.toNumber().toFixed(2)}, open unrealised ${pnl.unrealised.toNumber().toFixed(2)} USDT`,
    `P&L       net ${total('net')} (fees ${total('fees')}, funding ${total('funding')}), unrealised ${total('unrealised')} USDT, after fees and funding`,
    `Model     ${mode ? (mode.to_mode === 'model' ? `model ${mode.model_version}` : 'warm-up') : 'warm-up (no transition yet)'}${mode?.metrics ? `   ${JSON.stringify(mode.metrics).slice(0, 80)}` : ''}`,
    await moneyLine(db, registry),
    '',
    'Positions / balances',
    ...(positions.length ? positions.map((p) => `  ${p.symbol.padEnd(10)} ${p.category.padEnd(6)} ${p.side.padEnd(4)} ${p.size.padStart(12)}  uPnL ${Number(p.unrealised_pnl).toFixed(2).padStart(10)}  rPnL ${Number(p.cum_realised_pnl).toFixed(2).padStart(10)}`) : ['  (no open positions)']),
    ...balances.map((b) => `  ${b.coin.padEnd(10)} ${Number(b.wallet_balance).toFixed(6).padStart(18)}${b.usd_value ? `  ≈ ${Number(b.usd_value).toFixed(2)} USD` : ''}`),
    '',
    'Consumer lag',
    ...(lag.length ? [...new Set(lag.map((l) => String(l.labels.stage)))].map((s) => `  ${s.padEnd(14)} ${sum(lag, (l) => l.stage === s)}`) : ['  (no batches yet)']),
  ];
  return lines;
}

export function startLiveView(db: DatabasePool, registry: Registry, footer: string, everyMs = 1000): { stop(): void } {
  if (!process.stdout.isTTY) return { stop: () => {} };
  const startedAt = Date.now();
  let busy = false;
  const draw = async () => {
    if (busy) return;
    busy = true;
    try {
      const lines = await renderView(db, registry, startedAt, Date.now());
      // Home the cursor and clear to the end: redraw in place.
      process.stdout.write(`\x1b[H\x1b[2J${[...lines, '', footer].join('\n')}\n`);
    } catch {
      // The view is best effort; the services log their own errors.
    } finally {
      busy = false;
    }
  };
  const t = setInterval(draw, everyMs);
  return { stop: () => clearInterval(t) };
}
