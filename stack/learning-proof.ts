// The model's proof in the running loop: the simulator in a pattern regime (sim/regimes.ts), the
// order manager and the model service as `npm start` runs them (their units in one process, on the
// real Kafka, PostgreSQL and RabbitMQ), with time compressed so that it takes minutes: 100 ms price
// steps, so the regimes' 60-step horizon is 6 s, and the model service's intervals, horizon,
// retraining and sample thresholds scaled to match (PROOF_SETTINGS). Nothing else differs from a
// deployment: the signals go through RabbitMQ, the orders to the simulator through bybit-api, the
// fills come back over its websocket, and the P&L is the order manager's own books.
//
// What it reads, every few seconds: the model service's mode (model_mode_transitions), its
// versions (model_versions), its samples, and the order manager's books per strategy (pnl_books at
// the latest tickers, pipelines/pnl-sql.ts readBooks). With MODEL_CONTROL_STRATEGY_ID set, warm-up
// keeps trading under its own strategy once the model trades, so both are booked over the same
// period by the same accounting.
//
// `npm run proof -- --regime=learnable|noise [--minutes=N] [--after-switch-s=N] [--seed=N]` prints
// JSON lines and a verdict; tests/e2e/learning-loop.test.ts runs a shortened form.
import { randomBytes } from 'node:crypto';
import { connect } from 'amqplib';
import { z } from 'zod';
import { createRuntime, runUnits } from '../runtime/service.ts';
import { createDb, dropDatabase, ensureDatabase, sql, withDatabase, type CommonQueryMethods } from '../runtime/db.ts';
import { migrate } from '../runtime/migrate.ts';
import { createKafka } from '../runtime/kafka.ts';
import { kafkaBrokers, loadConfig } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { topicSpecs } from '../runtime/topics.ts';
import { Dec } from '../runtime/decimal.ts';
import { readBooks } from '../pipelines/pnl-sql.ts';
import { SPREAD_FEATURE } from '../model/money.ts';
import { startSimulator } from '../sim/server.ts';
import { DEFAULT_INSTRUMENTS } from '../sim/instruments.ts';
import type { PatternRegime } from '../sim/regimes.ts';
import { RUNTIME_PARTS, SERVICES, SIM_BALANCES, UNIT_SCHEMAS } from './services.ts';

export const PROOF_STRATEGY = 'model-service';
export const CONTROL_STRATEGY = 'warmup-control';
export const PROOF_ASSETS = ['ETHUSDT', 'SOLUSDT'];
/** 100 ms price steps: the regimes' blocks (300 steps) last 30 s, their 60-step horizon 6 s. */
export const PROOF_STEP_MS = 100;

/** The compressed clock of the proof, on top of the defaults (README, docs/model.md). */
export const PROOF_SETTINGS: Record<string, string> = {
  MODEL_ASSETS: PROOF_ASSETS.join(','),
  ASSETS: PROOF_ASSETS.join(','),
  RISK_CATEGORY: 'linear', // shorts booked like longs (a spot sell of coins not bought realises nothing)
  MODEL_STRATEGY_ID: PROOF_STRATEGY,
  MODEL_CONTROL_STRATEGY_ID: CONTROL_STRATEGY,
  MODEL_HORIZON_MS: String(60 * PROOF_STEP_MS),
  MODEL_ALLOWED_LATENESS_MS: '1000',
  MODEL_ORDER_EVENTS_MAX_WAIT_MS: '4000',
  MODEL_FEATURE_LOOKBACK: '60',
  WARMUP_INTERVAL_MS: '400',
  MODEL_SIGNAL_INTERVAL_MS: '400',
  WARMUP_DURATION_MS: '60000',
  WARMUP_MIN_AMOUNT: '40',
  WARMUP_MAX_AMOUNT: '80',
  MODEL_MIN_AMOUNT: '40',
  MODEL_MAX_AMOUNT: '160',
  RISK_WARMUP_MAX_ORDER_NOTIONAL: '100',
  MODEL_RETRAIN_CRON: '*/20 * * * * *',
  MODEL_MIN_TRAIN_SAMPLES: '400',
  MODEL_MIN_EVAL_SAMPLES: '40',
  // The switch judges the windows since the promotion (shadow). At 40 it judged about 7 s of them,
  // all inside one 30-s block of the regime: seed 7 switched on 40 windows at +13.7 bps/window
  // (lower bound 11.2) and its next 200 live signals made +1.8 against warm-up's +6.4 (rolled
  // back). 200, as many as the live rule judges, spans more than one block.
  MODEL_SWITCH_MIN_SAMPLES: '200',
  MODEL_MODE_CHECK_MS: '2000',
  MODEL_EXPOSURE_SCALE: '2000',
  // The clock runs ten times faster, so do the exchange's per-second limits (the simulator's are
  // raised alike): otherwise a second of the proof holds a tenth of a second's orders, placement
  // falls behind and coalesces its queue away ("superseded"), which measures the limits, not the model.
  BYBIT_RATE_LIMIT_MULTIPLIER: '10',
  // The account's limits are shared by warm-up's inventory (momentum piles up a position in a drift
  // block: 6,000+ USDT of ETH in the runs measured), the control arm's and the model's entries. At
  // the defaults (5,000 per asset, 4 open orders) the model's entries in the direction of the drift,
  // its best ones, were refused (max_position_exposure: warm-up already held that direction) and
  // about half its signals never filled, while its shadow record counted them all. The proof
  // measures the model, not the limits: they are raised so that they do not bind.
  RISK_MAX_POSITION_NOTIONAL: '25000',
  RISK_MAX_TOTAL_EXPOSURE: '60000',
  RISK_MAX_OPEN_ORDERS_PER_ASSET: '16',
  // The day's loss ladder reads the account's realised and open unrealised loss, warm-up's inventory
  // included; with the limits above it passed the default 200 USDT within 49 s of seed 3 (REDUCING:
  // every model entry refused as increasing risk, a live record of zeros, a fall back to warm-up).
  // Like the limits above, it guards the account, not the model under test.
  RISK_DAILY_LOSS_REDUCE: '5000',
  RISK_DAILY_LOSS_HALT: '10000',
};

export interface StrategyPnl {
  /** Net realised (realised − fees + funding) plus unrealised at the latest tickers, quote coin. */
  total: string;
  /** Position per symbol and the price it is valued at (for the carry of an inherited position). */
  positions: Array<{ symbol: string; qty: string; price: string | null }>;
  net: string;
  unrealised: string;
  fees: string;
}

export interface ProofSnapshot {
  atS: number;
  mode: string;
  versions: number;
  promoted: number;
  samples: number;
  /** Warm-up: the active version's shadow money record since its promotion (the switch rule's measure), bps per window. */
  shadow: { model: number | null; warmup: number | null; diffLower: number | null };
  model: StrategyPnl;
  control: StrategyPnl;
}

export interface ProofResult {
  regime: PatternRegime;
  seed: number;
  /** Seconds from the start to the switch to model mode; null when it never left warm-up. */
  switchedAtS: number | null;
  /** Every mode transition: reason, version, seconds from the start, and the figures it was decided on. */
  transitions: Array<{ from: string; to: string; reason: string; version: string | null; atS: number; metrics: Record<string, unknown> }>;
  /** The account's trading-state changes (daily loss ladder, kill switch): out of ACTIVE, entries are refused whatever the model decides. */
  tradingStates: Array<{ from: string; to: string; reason: string | null; atS: number }>;
  versions: Array<{ version: string; status: string; reason: string | null }>;
  samples: number;
  /**
   * The model's trades' P&L over the period after the switch: its books at the end minus at the
   * switch, less the carry of the position it inherited from warm-up (`modelCarry`).
   */
  modelPeriod: string | null;
  /** What the position held at the switch made by itself over the period (in the books, not in modelPeriod). */
  modelCarry: string | null;
  /** The control arm's P&L over the same period (its books start at the switch). */
  controlPeriod: string | null;
  /** Fees the model strategy and the control arm paid over that period (so a comparison of two idle books shows). */
  modelPeriodFees: string | null;
  controlPeriodFees: string | null;
  /** The model strategy's P&L over the whole run (warm-up included). */
  modelTotal: string;
  /** Horizon exits, from the order manager's tables (exitAudit); null when it never left warm-up. */
  exits: ExitAudit | null;
  /** The windows of the run (training_samples), warm-up's and the model's apart: where a live record parts from a shadow one. */
  windows: WindowBreakdown[];
  snapshots: ProofSnapshot[];
  elapsedS: number;
}

export interface ProofOptions {
  regime: PatternRegime;
  seed?: number;
  /** Give up waiting for the switch after this long. */
  maxWaitS: number;
  /** How long to trade after the switch before reading the books. */
  afterSwitchS: number;
  /** When the model never switches: stop after this long (defaults to maxWaitS). */
  log?: (line: Record<string, unknown>) => void;
  /** More settings (override PROOF_SETTINGS). */
  settings?: Record<string, string>;
  /** Keep the run's database afterwards (its name is in the result) to study its windows and orders. */
  keepDatabase?: boolean;
}

/**
 * The model's entries against their horizon exits, as the order manager recorded them (signals and
 * orders, not the model service's own bookkeeping): every model-mode entry that filled and whose
 * horizon passed at least `graceMs` ago (an exit in flight, or delayed while a retraining holds the
 * process, is not counted as missing), with the quantity its exits filled.
 */
export interface ExitAudit {
  entries: number;
  /** Exits filled exactly what the entry filled. */
  closed: number;
  /** No exit filled anything. */
  none: number;
  /** Exits filled more than the entry (never expected: exit signal ids are per entry and attempt). */
  over: number;
  /**
   * Not closed, and none of its exits was refused or dropped (by risk, or by placement for a newer
   * order of the same side, then retried later): an exit the model service never sent. Never expected.
   */
  open: number;
  exitSignals: number;
  /** Exit signals the order manager refused or decided nothing on, by reason (placement's drops are in `open`'s complement). */
  refused: Record<string, number>;
  /** The same for the model-mode entries (their windows count 0 in the live record). */
  entriesRefused: Record<string, number>;
}

/**
 * Per kind of signal (warm-up, model), over the run's windows: how many, how many filled, and per
 * window in bps: the market's move over the horizon on the side taken, from the signal's mid (what
 * a counterfactual counts); the reward, from the real fill (what the live record counts); the
 * entry's slippage against the signal's mid and its fee. move − reward = slippage + fee, the part a
 * live record pays that a shadow record at average costs may not.
 */
export interface WindowBreakdown {
  kind: 'warmup' | 'model';
  n: number;
  filled: number;
  move_bps: number | null;
  reward_bps: number | null;
  slippage_bps: number | null;
  fee_bps: number | null;
  spread_bps: number | null;
  /**
   * How stale the decision's market data was: |ln(snapshot price / p_ref)| in bps, the mid the
   * signal was decided on (its market_data_snapshot, the emitter's newest ticker) against the mid
   * of the last ticker at or before its timestamp (what the window, and training, see).
   */
  stale_bps: number | null;
  /** Windows whose snapshot price differs from p_ref at all. */
  stale_share: number | null;
  /** How the windows' signals ended (training_samples.outcome). */
  outcomes: Record<string, number>;
}

async function windowBreakdown(db: CommonQueryMethods): Promise<WindowBreakdown[]> {
  const rows = await db.any(sql.type(z.object({ kind: z.enum(['warmup', 'model']), n: z.number(), filled: z.number(), move_bps: z.number().nullable(), reward_bps: z.number().nullable(), slippage_bps: z.number().nullable(), fee_bps: z.number().nullable(), spread_bps: z.number().nullable(), stale_bps: z.number().nullable(), stale_share: z.number().nullable() }))`
    SELECT CASE WHEN t.is_warmup THEN 'warmup' ELSE 'model' END AS kind, count(*)::int AS n,
           count(*) FILTER (WHERE (details->>'filled_qty')::float8 > 0)::int AS filled,
           avg(CASE WHEN t.side = 'buy' THEN 1 ELSE -1 END * 1e4 * ln((details->>'price_horizon')::float8 / (details->>'price_ref')::float8)) FILTER (WHERE (details->>'filled_qty')::float8 > 0) AS move_bps,
           avg(reward) FILTER (WHERE (details->>'filled_qty')::float8 > 0) AS reward_bps,
           avg((details->>'slippage_bps')::float8) AS slippage_bps,
           avg((details->>'fee_bps')::float8) AS fee_bps,
           avg(features[${SPREAD_FEATURE + 1}]) AS spread_bps,
           avg(abs(1e4 * ln((s.payload->'market_data_snapshot'->>'price')::float8 / (details->>'price_ref')::float8))) AS stale_bps,
           avg(CASE WHEN (s.payload->'market_data_snapshot'->>'price')::float8 = (details->>'price_ref')::float8 THEN 0 ELSE 1 END)::float8 AS stale_share
      FROM training_samples t LEFT JOIN signals s USING (signal_id) GROUP BY 1 ORDER BY 1`);
  const outcomes = await db.any(sql.type(z.object({ kind: z.string(), outcome: z.string(), n: z.number() }))`
    SELECT CASE WHEN is_warmup THEN 'warmup' ELSE 'model' END AS kind, COALESCE(outcome, 'none') AS outcome, count(*)::int AS n FROM training_samples GROUP BY 1, 2 ORDER BY 1, 2`);
  return rows.map((r) => ({ ...r, outcomes: Object.fromEntries(outcomes.filter((o) => o.kind === r.kind).map((o) => [o.outcome, o.n])) }));
}

async function exitAudit(db: CommonQueryMethods, strategy: string, horizonMs: number, graceMs: number): Promise<ExitAudit> {
  const r = await db.one(sql.type(z.object({ entries: z.number(), closed: z.number(), none: z.number(), over: z.number(), open: z.number(), exit_signals: z.number() }))`
    WITH s AS (
      SELECT s.signal_id, s.signal_ts, s.payload->'metadata'->>'mode' AS mode, s.payload->'metadata'->>'exit_of' AS exit_of,
             COALESCE((SELECT sum(o.cum_exec_qty) FROM orders o WHERE o.signal_id = s.signal_id), 0) AS filled,
             s.outcome IS DISTINCT FROM 'create' OR EXISTS (SELECT 1 FROM orders o WHERE o.signal_id = s.signal_id AND o.status IN ('Rejected', 'Cancelled', 'PartiallyFilledCanceled', 'Deactivated')) AS dropped
        FROM signals s WHERE s.strategy_id = ${strategy}
    ), entries AS (
      SELECT e.filled, COALESCE((SELECT sum(x.filled) FROM s x WHERE x.mode = 'exit' AND x.exit_of = e.signal_id::text), 0) AS exited,
             COALESCE((SELECT bool_or(x.dropped) FROM s x WHERE x.mode = 'exit' AND x.exit_of = e.signal_id::text), false) AS had_dropped
        FROM s e
       WHERE e.mode = 'model' AND e.filled > 0 AND e.signal_ts < now() - make_interval(secs => ${(horizonMs + graceMs) / 1000})
    )
    SELECT count(*)::int AS entries, count(*) FILTER (WHERE exited = filled)::int AS closed, count(*) FILTER (WHERE exited = 0)::int AS none,
           count(*) FILTER (WHERE exited > filled)::int AS over, count(*) FILTER (WHERE exited < filled AND NOT had_dropped)::int AS open,
           (SELECT count(*)::int FROM s WHERE mode = 'exit') AS exit_signals
      FROM entries`);
  const refusedOf = async (mode: string) =>
    Object.fromEntries(
      (await db.any(sql.type(z.object({ reason: z.string(), n: z.number() }))`
        SELECT COALESCE(outcome_reason, status) AS reason, count(*)::int AS n FROM signals
         WHERE strategy_id = ${strategy} AND payload->'metadata'->>'mode' = ${mode} AND outcome IS DISTINCT FROM 'create'
         GROUP BY 1 ORDER BY 1`)).map((x) => [x.reason, x.n]),
    );
  return { entries: r.entries, closed: r.closed, none: r.none, over: r.over, open: r.open, exitSignals: r.exit_signals, refused: await refusedOf('exit'), entriesRefused: await refusedOf('model') };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pnlOf(books: Awaited<ReturnType<typeof readBooks>>, strategy: string): StrategyPnl {
  let net = Dec.ZERO;
  let unrealised = Dec.ZERO;
  let fees = Dec.ZERO;
  for (const b of books.filter((x) => x.strategy === strategy)) {
    net = net.add(Dec.of(b.net));
    unrealised = unrealised.add(Dec.of(b.unrealised));
    fees = fees.add(Dec.of(b.fees));
  }
  const positions = books.filter((x) => x.strategy === strategy).map((b) => ({ symbol: b.symbol, qty: b.qty, price: b.price }));
  return { total: net.add(unrealised).toString(), net: net.toString(), unrealised: unrealised.toString(), fees: fees.toString(), positions };
}

/**
 * What the position a strategy held at the switch made by itself, held unchanged to the end:
 * Σ qty × (price at the end − price at the switch). The model inherits warm-up's position, so its
 * books over the period hold that carry besides what its own trades made.
 */
function carryOf(from: StrategyPnl, to: StrategyPnl): Dec {
  let carry = Dec.ZERO;
  for (const p of from.positions) {
    const end = to.positions.find((x) => x.symbol === p.symbol)?.price;
    if (p.price === null || end === null || end === undefined) continue;
    carry = carry.add(Dec.of(p.qty).mul(Dec.of(end).sub(Dec.of(p.price))));
  }
  return carry;
}

export async function runLearningProof(o: ProofOptions): Promise<ProofResult> {
  const seed = o.seed ?? 5;
  const log = o.log ?? (() => {});
  const base = loadConfig(process.env, UNIT_SCHEMAS);
  const ns = randomBytes(4).toString('hex');
  const prefix = `proof-${ns}.`;
  const signalsQueue = `proof.${ns}.trading_signals`;
  const eventsQueue = `proof.${ns}.order_events`;
  const dbUrl = withDatabase(base.DATABASE_URL, `proof_${ns}`);
  const kafka = createKafka({ brokers: kafkaBrokers(base), clientId: 'proof', logger: createLogger({ ...base, LOG_LEVEL: 'warn' }, 'proof') });
  const admin = kafka.admin();
  await admin.connect();
  const specs = topicSpecs(prefix, 3);
  await admin.ensureTopics(specs);
  await ensureDatabase(dbUrl);
  const pool = await createDb(dbUrl);
  await migrate(pool);
  await pool.end();
  const sim = await startSimulator({ port: 0, seed, balances: SIM_BALANCES, instruments: DEFAULT_INSTRUMENTS, priceProcess: { mode: 'pattern', patternRegime: o.regime, stepMs: PROOF_STEP_MS }, rateLimits: { multiplier: 10 } });
  let stop: (() => Promise<void>) | undefined;
  const t0 = Date.now();
  const atS = () => Math.round((Date.now() - t0) / 100) / 10;
  try {
    const rt = await createRuntime('learning-proof', RUNTIME_PARTS, {
      ...PROOF_SETTINGS,
      TOPIC_PREFIX: prefix,
      ADMIN_PORT: '0',
      DATABASE_URL: dbUrl,
      BYBIT_ENV: 'sim',
      BYBIT_SIM_PORT: String(sim.port),
      SIGNALS_QUEUE: signalsQueue,
      MODEL_SIGNALS_QUEUE: signalsQueue,
      ORDER_EVENTS_QUEUE: eventsQueue,
      EXCHANGE_STREAM_SOURCE: 'direct',
      MODEL_SEED: String(seed),
      LOG_LEVEL: process.env.PROOF_LOG_LEVEL ?? 'warn',
      ...o.settings,
    });
    ({ stop } = await runUnits(rt, [...SERVICES['order-manager']!.units, ...SERVICES['model']!.units]));
    const ready = Date.now() + 120_000;
    while (!(await rt.admin.readiness()).ready) {
      if (Date.now() > ready) throw new Error('the loop did not become ready in 120 s');
      await sleep(200);
    }
    const db = rt.db;
    const snapshots: ProofSnapshot[] = [];
    let switchedAtS: number | null = null;
    let atSwitch: StrategyPnl | null = null;
    const snapshot = async (): Promise<ProofSnapshot> => {
      const mode = await db.maybeOne(sql.type(z.object({ to_mode: z.string() }))`SELECT to_mode FROM model_mode_transitions ORDER BY id DESC LIMIT 1`);
      const v = await db.one(sql.type(z.object({ n: z.number(), promoted: z.number() }))`
        SELECT count(*)::int AS n, count(*) FILTER (WHERE promoted_at IS NOT NULL)::int AS promoted FROM model_versions`);
      const samples = (await db.one(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM training_samples`)).n;
      const books = await readBooks(db);
      const gauge = async (name: string, kind?: string) => (await rt.metrics.registry.getSingleMetric(name)?.get())?.values.find((x) => kind === undefined || x.labels.kind === kind)?.value ?? null;
      const shadow = { model: await gauge('model_service_shadow_pnl_bps', 'model'), warmup: await gauge('model_service_shadow_pnl_bps', 'warmup'), diffLower: await gauge('model_service_shadow_pnl_diff_lower_bps') };
      return { atS: atS(), mode: mode?.to_mode ?? 'warmup', versions: v.n, promoted: v.promoted, samples, shadow, model: pnlOf(books, PROOF_STRATEGY), control: pnlOf(books, CONTROL_STRATEGY) };
    };
    for (;;) {
      await sleep(3000);
      const s = await snapshot();
      snapshots.push(s);
      log({ ...s });
      if (switchedAtS === null && s.mode === 'model') {
        switchedAtS = s.atS;
        atSwitch = s.model;
        log({ event: 'switched to model mode', atS: s.atS });
      }
      if (switchedAtS !== null && s.atS - switchedAtS >= o.afterSwitchS) break;
      if (switchedAtS === null && s.atS >= o.maxWaitS) break;
    }
    const last = snapshots[snapshots.length - 1]!;
    const transitions = (await db.any(sql.type(z.object({ from_mode: z.string(), to_mode: z.string(), reason: z.string(), version: z.string().nullable(), at: z.number(), metrics: z.record(z.unknown()) }))`
      SELECT from_mode, to_mode, reason, model_version AS version, floor(extract(epoch FROM at) * 1000)::float8 AS at, metrics FROM model_mode_transitions ORDER BY id`)).map((t) => ({ from: t.from_mode, to: t.to_mode, reason: t.reason, version: t.version, atS: Math.round((t.at - t0) / 100) / 10, metrics: t.metrics }));
    const exits = switchedAtS === null ? null : await exitAudit(db, PROOF_STRATEGY, Number(PROOF_SETTINGS.MODEL_HORIZON_MS), 10_000);
    const windows = await windowBreakdown(db);
    // The account's trading state (the loss ladder, the kill switch): anything but ACTIVE refuses entries, whatever the model.
    const tradingStates = (await db.any(sql.type(z.object({ from_state: z.string(), to_state: z.string(), reason: z.string().nullable(), at: z.number() }))`
      SELECT from_state, to_state, reason, floor(extract(epoch FROM at) * 1000)::float8 AS at FROM trading_state_transitions ORDER BY id`)).map((t) => ({ from: t.from_state, to: t.to_state, reason: t.reason, atS: Math.round((t.at - t0) / 100) / 10 }));
    const versions = (await db.any(sql.type(z.object({ version: z.string(), status: z.string(), notes: z.string().nullable() }))`SELECT version, status, notes FROM model_versions ORDER BY created_at`)).map((v) => ({ version: v.version, status: v.status, reason: v.notes }));
    return {
      regime: o.regime,
      seed,
      switchedAtS,
      transitions,
      tradingStates,
      versions,
      samples: last.samples,
      modelPeriod: atSwitch ? Dec.of(last.model.total).sub(Dec.of(atSwitch.total)).sub(carryOf(atSwitch, last.model)).toString() : null,
      modelCarry: atSwitch ? carryOf(atSwitch, last.model).toString() : null,
      controlPeriod: atSwitch ? last.control.total : null,
      modelPeriodFees: atSwitch ? Dec.of(last.model.fees).sub(Dec.of(atSwitch.fees)).toString() : null,
      controlPeriodFees: atSwitch ? last.control.fees : null,
      modelTotal: last.model.total,
      exits,
      windows,
      snapshots,
      elapsedS: atS(),
    };
  } finally {
    await stop?.().catch(() => {});
    await sim.close().catch(() => {});
    await admin.deleteTopics(specs.map((s) => s.topic)).catch(() => {});
    await admin.disconnect().catch(() => {});
    if (!o.keepDatabase) await dropDatabase(dbUrl).catch(() => {});
    else log({ event: 'database kept', database: `proof_${ns}` });
    const conn = await connect(base.AMQP_URL).catch(() => null);
    if (conn) {
      const ch = await conn.createChannel();
      for (const q of [signalsQueue, eventsQueue]) await ch.deleteQueue(q).catch(() => {});
      await conn.close().catch(() => {});
    }
  }
}
