// The risk and sizing stage's load / persist on the real PostgreSQL: a freshly migrated database of
// this file's own (dropped after). What the runner does for a chunk (load → process → persist) is
// done by hand, so a crash between persist and the Kafka commit is simply "run the chunk again".
// Every signal first gets the `signals` row validation records before the signal reaches
// signals.valid (`fromValidation`): size/risk only writes its outcome on it.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { Registry } from 'prom-client';
import { ManualClock } from '../../runtime/clock.ts';
import { loadConfig } from '../../runtime/config.ts';
import { createLogger } from '../../runtime/logger.ts';
import { createDb, dropDatabase, ensureDatabase, sql, withDatabase, type DatabasePool } from '../../runtime/db.ts';
import { migrate, defaultMigrationsDir } from '../../runtime/migrate.ts';
import type { StageRecord, StageResult } from '../../pipelines/runner.ts';
import { instKey, orderLinkId, RISK_REASONS } from '../../pipelines/risk-rules.ts';
import { createSizeRiskStage, parseConfig, SIZE_RISK_METRICS } from '../../pipelines/size-risk.ts';
import { utcDay } from '../../pipelines/trading-state.ts';
import { DEFAULT_INSTRUMENTS } from '../../sim/instruments.ts';
import type { OrderEvent, OrderIntent, Signal } from '../../schemas/types.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';

const NOW = Date.now();
const PREFIX = 'dbt.';
const dbUrl = withDatabase(loadConfig(process.env, UNIT_SCHEMAS).DATABASE_URL, `test_size_risk_${randomBytes(6).toString('hex')}`);
let pool: DatabasePool;

before(async () => {
  await ensureDatabase(dbUrl);
  pool = await createDb(dbUrl, { maximumPoolSize: 4 });
  await migrate(pool, { dir: defaultMigrationsDir });
  for (const i of DEFAULT_INSTRUMENTS) {
    if (i.category === 'spot') {
      await pool.query(sql.typeAlias('void')`
        INSERT INTO instruments (category, symbol, base_coin, quote_coin, tick_size, base_precision, quote_precision, min_order_qty, max_order_qty,
                                 max_market_order_qty, min_order_amt, max_order_amt)
        VALUES ('spot', ${i.symbol}, ${i.baseCoin}, ${i.quoteCoin}, ${i.tickSize}, ${i.basePrecision}, ${i.quotePrecision}, ${i.minOrderQty},
                ${i.maxLimitOrderQty}, ${i.maxMarketOrderQty}, ${i.minOrderAmt}, ${i.maxOrderAmt})`);
    } else {
      await pool.query(sql.typeAlias('void')`
        INSERT INTO instruments (category, symbol, base_coin, quote_coin, tick_size, qty_step, min_order_qty, max_order_qty, max_market_order_qty, min_notional_value)
        VALUES ('linear', ${i.symbol}, ${i.baseCoin}, ${i.quoteCoin}, ${i.tickSize}, ${i.qtyStep}, ${i.minOrderQty}, ${i.maxOrderQty}, ${i.maxMktOrderQty}, ${i.minNotionalValue})`);
    }
  }
});

after(async () => {
  await pool?.end();
  await dropDatabase(dbUrl).catch(() => {});
});

beforeEach(async () => {
  await pool.query(sql.typeAlias('void')`TRUNCATE orders, order_state_history, order_events, decisions, signals, trading_state_transitions, balances, tickers, positions, pnl_books, pnl_days`);
  await pool.query(sql.typeAlias('void')`
    UPDATE trading_state SET state = 'ACTIVE', kill_switch = false, reason = NULL, updated_at = ${sql.timestamp(new Date(NOW))} WHERE id`);
  await pool.query(sql.typeAlias('void')`
    INSERT INTO tickers (category, symbol, bid, ask, last, ts) VALUES ('spot', 'ETHUSDT', 2999.5, 3000.5, 3000, ${sql.timestamp(new Date(NOW - 1000))})`);
  await pool.query(sql.typeAlias('void')`
    INSERT INTO balances (coin, wallet_balance, available, updated_ms) VALUES ('USDT', 10000, 10000, ${NOW})`);
});

const cfg = (over: Record<string, string> = {}) =>
  parseConfig({ TOPIC_PREFIX: PREFIX, RISK_MAX_POSITION_NOTIONAL: '1000', RISK_MAX_ORDER_NOTIONAL: '1000', RISK_LIMIT_POLICY: 'shrink', ...over });

function signal(over: Partial<Signal> = {}): Signal {
  return {
    signal_id: randomUUID(),
    signal_type: 'buy',
    asset: 'ETHUSDT',
    amount: 700,
    confidence: 0.9,
    timestamp: NOW - 2000,
    strategy_id: 'strat-db',
    model_version: null,
    is_warmup: false,
    market_data_snapshot: { price: 3000, spread: 1, volume_24h: 1e6, volatility: 0.02, orderbook_depth: { bid_depth: 1, ask_depth: 2 }, technical_indicators: { rsi: 51.5 } },
    metadata: '{"reasoning":"test"}',
    trace_id: 'trace-db',
    received_at: NOW - 1500,
    validated_at: NOW - 1400,
    ...over,
  };
}

let offset = 0;
const rec = (value: Signal): StageRecord<Signal> => ({ value, key: value.asset, headers: {}, topic: `${PREFIX}signals.valid`, partition: 0, offset: String(offset++), timestamp: NOW, traceId: value.trace_id });

/**
 * The signals rows validation records (pipelines/validate.ts upsertOutcomes: status 'valid', the
 * identity and payload columns) before their signals can be read on signals.valid; then the records
 * size/risk reads. A signal already recorded keeps its row (a repeat in a chunk).
 */
async function fromValidation(...sigs: Signal[]): Promise<StageRecord<Signal>[]> {
  for (const [i, s] of sigs.entries()) {
    await pool.query(sql.typeAlias('void')`
      INSERT INTO signals (signal_id, status, strategy_id, model_version, is_warmup, confidence, asset, side, amount, snapshot_price, signal_ts, trace_id,
                           payload, received_at, source_record)
      VALUES (${s.signal_id}, 'valid', ${s.strategy_id}, ${s.model_version}, ${s.is_warmup}, ${s.confidence}, ${s.asset}, ${s.signal_type}, ${s.amount},
              ${s.market_data_snapshot?.price ?? null}, ${sql.timestamp(new Date(s.timestamp))}, ${s.trace_id}, ${sql.jsonb(JSON.parse(JSON.stringify(s)) as never)},
              ${sql.timestamp(new Date(s.received_at))}, ${`${PREFIX}signals.raw/0/${offset + i}`})
      ON CONFLICT (signal_id) DO NOTHING`);
  }
  return sigs.map(rec);
}

/** What the runner does for one chunk: load, process each record, persist. */
async function runChunk(stage: ReturnType<typeof createSizeRiskStage>, records: StageRecord<Signal>[], clock: ManualClock): Promise<StageResult[]> {
  const state = await stage.load!(records);
  const results = records.map((r) => stage.process(r, { state, clock }));
  await stage.persist!(records.map((r, i) => ({ rec: r, result: results[i]! })), state);
  return results;
}

const count = async (table: 'decisions' | 'orders' | 'trading_state_transitions'): Promise<number> => {
  const t = sql.identifier([table]);
  return (await pool.one(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM ${t}`)).n;
};
const ordersOf = () => pool.any(sql.type(z.object({ order_link_id: z.string().nullable(), status: z.string(), qty: z.string(), side: z.string(), decision_id: z.number().nullable(), market_unit: z.string().nullable() }))`
  SELECT order_link_id, status, qty, side, decision_id, market_unit FROM orders ORDER BY id`);
const signalRow = (id: string) => pool.one(sql.type(z.object({ status: z.string(), outcome: z.string().nullable(), outcome_reason: z.string().nullable() }))`
  SELECT status, outcome, outcome_reason FROM signals WHERE signal_id = ${id}`);
const intentsOf = (r: StageResult) => (r.outputs ?? []).map((o) => o.value as OrderIntent);

test('two buys in one chunk respect max exposure; replaying the chunk changes nothing', async () => {
  const clock = new ManualClock(NOW);
  const stage = createSizeRiskStage({ config: cfg(), db: pool, clock });
  const a = signal();
  const b = signal();
  const first = await runChunk(stage, await fromValidation(a, b), clock);
  assert.deepEqual(first.map((r) => intentsOf(r).map((i) => [i.action, i.qty])), [[['create', '700']], [['create', '300']]]);

  const orders = await ordersOf();
  assert.deepEqual(orders.map((o) => [o.order_link_id, o.status, o.qty, o.side, o.market_unit]), [
    [orderLinkId('om', a.signal_id), 'Intent', '700', 'Buy', 'quoteCoin'],
    [orderLinkId('om', b.signal_id), 'Intent', '300', 'Buy', 'quoteCoin'],
  ]);
  assert.ok(orders.every((o) => o.decision_id !== null));
  assert.equal(await count('decisions'), 2);
  assert.deepEqual(await signalRow(a.signal_id), { status: 'decided', outcome: 'create', outcome_reason: 'new_signal' });
  assert.deepEqual(await signalRow(b.signal_id), { status: 'decided', outcome: 'create', outcome_reason: 'shrunk_to_limit' });

  // Crash after persist, before the Kafka commit: the same chunk again, later, gives the same outputs.
  clock.advance(30_000);
  const replay = await runChunk(stage, [rec(a), rec(b)], clock);
  assert.deepEqual(replay.map((r) => r.outputs), first.map((r) => r.outputs));
  assert.equal(await count('decisions'), 2);
  assert.equal((await ordersOf()).length, 2);

  // A new chunk sees the Intent orders in PostgreSQL: no headroom left.
  const c = signal({ amount: 100 });
  const [rc] = await runChunk(stage, await fromValidation(c), clock);
  assert.equal(rc!.kind, 'ok');
  const ev = rc!.outputs![0]!.value as OrderEvent;
  assert.equal(rc!.outputs![0]!.topic, `${PREFIX}orders.events`);
  assert.equal(ev.event_type, 'signal_rejected');
  assert.equal(ev.reason_code, RISK_REASONS.maxPositionExposure);
  assert.deepEqual(await signalRow(c.signal_id), { status: 'decided', outcome: 'rejected', outcome_reason: RISK_REASONS.maxPositionExposure });
  const dec = await pool.one(sql.type(z.object({ action: z.string(), reason: z.string(), trading_state: z.string(), inputs: z.any(), output: z.any() }))`
    SELECT action, reason, trading_state, inputs, output FROM decisions WHERE idempotency_key = ${`${c.signal_id}:reject`}`);
  assert.equal(dec.action, 'reject');
  assert.equal(dec.reason, RISK_REASONS.maxPositionExposure);
  assert.equal(dec.trading_state, 'ACTIVE');
  assert.equal(dec.inputs.exposure.asset_long, '1000', 'the audit keeps the inputs the decision was taken from');
  assert.equal(dec.output.value.event_id, ev.event_id);
  assert.equal((await ordersOf()).length, 2);

  // Replayed outputs (read back from jsonb) are still valid Avro records.
  const { invalidPaths } = await import('../../schemas/codecs.ts');
  for (const r of [...replay, rc!]) for (const o of r.outputs ?? []) assert.deepEqual(invalidPaths(o.topic.endsWith('orders.intents') ? 'OrderIntent' : 'OrderEvent', o.value), []);
});

test('reject policy: the second buy of the chunk is refused, not shrunk', async () => {
  const clock = new ManualClock(NOW);
  const stage = createSizeRiskStage({ config: cfg({ RISK_LIMIT_POLICY: 'reject' }), db: pool, clock });
  const [ra, rb] = await runChunk(stage, await fromValidation(signal(), signal()), clock);
  assert.equal(intentsOf(ra!)[0]!.qty, '700');
  assert.equal((rb!.outputs![0]!.value as OrderEvent).reason_code, RISK_REASONS.maxPositionExposure);
  assert.equal(await count('orders'), 1);
  assert.equal(await count('decisions'), 2);
});

test('an opposite order is cancelled once: the pending cancel is seen by the next chunk', async () => {
  const clock = new ManualClock(NOW);
  const stage = createSizeRiskStage({ config: cfg(), db: pool, clock });
  await pool.query(sql.typeAlias('void')`
    INSERT INTO orders (order_link_id, order_id, strategy_id, category, symbol, side, order_type, time_in_force, qty, price, status, created_at, updated_at)
    VALUES ('old-sell-1', 'ex-1', 'strat-db', 'spot', 'ETHUSDT', 'Sell', 'Limit', 'GTC', 0.05, 3050, 'New',
            ${sql.timestamp(new Date(NOW - 60_000))}, ${sql.timestamp(new Date(NOW - 60_000))})`);
  const [r1] = await runChunk(stage, await fromValidation(signal({ amount: 200 })), clock);
  assert.deepEqual(intentsOf(r1!).map((i) => [i.action, i.order_link_id, i.target_order_id]), [['cancel', 'old-sell-1', 'ex-1'], ['create', intentsOf(r1!)[1]!.order_link_id, null]]);
  clock.advance(1000);
  const [r2] = await runChunk(stage, await fromValidation(signal({ amount: 200 })), clock);
  assert.deepEqual(intentsOf(r2!).map((i) => i.action), ['create']);
  const cancels = await pool.one(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM decisions WHERE action = 'cancel' AND order_link_id = 'old-sell-1'`);
  assert.equal(cancels.n, 1);
});

test('a resting limit order is amended; the next chunk counts the amended size', async () => {
  const clock = new ManualClock(NOW);
  const stage = createSizeRiskStage({ config: cfg({ RISK_ORDER_TYPE: 'limit', RISK_MAX_POSITION_NOTIONAL: '1200' }), db: pool, clock });
  await pool.query(sql.typeAlias('void')`
    INSERT INTO orders (order_link_id, order_id, strategy_id, category, symbol, side, order_type, time_in_force, qty, price, status, created_at, updated_at)
    VALUES ('rest-buy-1', 'ex-2', 'strat-db', 'spot', 'ETHUSDT', 'Buy', 'Limit', 'GTC', 0.01, 2900, 'New',
            ${sql.timestamp(new Date(NOW - 60_000))}, ${sql.timestamp(new Date(NOW - 60_000))})`);
  const [r1] = await runChunk(stage, await fromValidation(signal({ amount: 900 })), clock);
  const amend = intentsOf(r1!)[0]!;
  assert.deepEqual([amend.action, amend.order_link_id, amend.price, amend.qty], ['amend', 'rest-buy-1', '2999.5', '0.30005']);
  assert.deepEqual(await signalRow(amend.signal!.signal_id), { status: 'decided', outcome: 'amend', outcome_reason: 'same_side_amend' });
  // Another strategy's buy: the amended order (~900) counts, not its confirmed 29 USDT.
  clock.advance(1000);
  const [r2] = await runChunk(stage, await fromValidation(signal({ amount: 900, strategy_id: 'other' })), clock);
  const created = intentsOf(r2!)[0]!;
  assert.equal(created.action, 'create');
  assert.ok(Number(created.qty) * 2999.5 <= 300.1, `only the remaining headroom: ${created.qty}`);
});

/** A day's booked P&L, as the tracking stage writes it (pipelines/pnl-sql.ts). */
const dayBooked = (day: string, realised: string) =>
  pool.query(sql.typeAlias('void')`
    INSERT INTO pnl_days (day, category, symbol, strategy_id, realised, fees, funding, fills) VALUES (${day}::date, 'spot', 'ETHUSDT', 's', ${realised}, 0, 0, 1)
    ON CONFLICT (day, category, symbol, strategy_id) DO UPDATE SET realised = EXCLUDED.realised`);

test('daily loss limit moves the trading state once and refuses new orders', async () => {
  const clock = new ManualClock(NOW);
  const stage = createSizeRiskStage({ config: cfg({ RISK_DAILY_LOSS_REDUCE: '200', RISK_DAILY_LOSS_HALT: '500' }), db: pool, clock });
  // What the tracking stage booked: yesterday's loss does not count, today's does.
  await dayBooked(utcDay(NOW - 86_400_000), '-900');
  const [r0] = await runChunk(stage, await fromValidation(signal()), clock);
  assert.equal(intentsOf(r0!)[0]?.action, 'create', 'yesterday\'s loss of 900 does not stop today');
  await dayBooked(utcDay(NOW), '-250');
  const [r1] = await runChunk(stage, await fromValidation(signal()), clock);
  assert.equal((r1!.outputs![0]!.value as OrderEvent).reason_code, RISK_REASONS.reducingOnly);
  const st = () => pool.one(sql.type(z.object({ state: z.string(), reason: z.string().nullable() }))`SELECT state, reason FROM trading_state WHERE id`);
  assert.equal((await st()).state, 'REDUCING');
  assert.equal(await count('trading_state_transitions'), 1);

  // 250 realised today, and an open linear long of 0.1 at 5,700 marked at 3,000 (−270): 520 in all.
  await pool.query(sql.typeAlias('void')`
    INSERT INTO pnl_books (category, symbol, strategy_id, qty, avg_entry, realised, fees, funding, version) VALUES ('linear', 'ETHUSDT', 's', 0.1, 5700, 0, 0, 0, 1)`);
  await pool.query(sql.typeAlias('void')`
    INSERT INTO tickers (category, symbol, bid, ask, last, mark_price, ts) VALUES ('linear', 'ETHUSDT', 2999, 3001, 3000, 3000, ${sql.timestamp(new Date(NOW - 1000))})`);
  const [r2] = await runChunk(stage, await fromValidation(signal({ signal_type: 'sell' })), clock);
  assert.equal((r2!.outputs![0]!.value as OrderEvent).reason_code, RISK_REASONS.halted);
  assert.equal((await st()).state, 'HALTED');
  const [r3] = await runChunk(stage, await fromValidation(signal()), clock);
  assert.equal((r3!.outputs![0]!.value as OrderEvent).reason_code, RISK_REASONS.halted);
  const transitions = await pool.any(sql.type(z.object({ from_state: z.string(), to_state: z.string(), actor: z.string().nullable() }))`
    SELECT from_state, to_state, actor FROM trading_state_transitions ORDER BY id`);
  assert.deepEqual(transitions.map((t) => [t.from_state, t.to_state, t.actor]), [['ACTIVE', 'REDUCING', 'size-risk'], ['REDUCING', 'HALTED', 'size-risk']]);
});

test('kill switch: every signal refused with kill_switch', async () => {
  const clock = new ManualClock(NOW);
  const stage = createSizeRiskStage({ config: cfg(), db: pool, clock });
  await pool.query(sql.typeAlias('void')`UPDATE trading_state SET kill_switch = true, state = 'HALTED', reason = 'kill_switch' WHERE id`);
  const [r] = await runChunk(stage, await fromValidation(signal()), clock);
  assert.equal((r!.outputs![0]!.value as OrderEvent).reason_code, RISK_REASONS.killSwitch);
  assert.equal(await count('orders'), 0);
  assert.equal(await count('trading_state_transitions'), 0);
});

test('unstorable signals are dead-lettered as invalid_record before load, without an error; a valid one in the same chunk is decided', async () => {
  const clock = new ManualClock(NOW);
  const stage = createSizeRiskStage({ config: cfg(), db: pool, clock });
  // Schema-valid, yet each used to fail load or persist with a fatal database error.
  const bad: Array<[string, Signal]> = [
    ['amount -5', signal({ amount: -5 })],
    ['amount 0', signal({ amount: 0 })],
    ['amount NaN', signal({ amount: NaN })],
    ['confidence NaN', signal({ confidence: NaN })],
    ['confidence -1', signal({ confidence: -1 })],
    ['confidence 2', signal({ confidence: 2 })],
    ['confidence Infinity', signal({ confidence: Infinity })],
    ['asset NUL', signal({ asset: 'ETH\u0000' })],
    ['strategy NUL', signal({ strategy_id: 'a\u0000' })],
    ['strategy lone surrogate', signal({ strategy_id: '\ud800' })],
    ['model_version NUL', signal({ model_version: '\u0000' })],
    ['indicator key NUL', signal({ market_data_snapshot: { ...signal().market_data_snapshot, technical_indicators: { 'r\u0000si': 1 } } })],
    ['signal_id not a uuid', signal({ signal_id: 'not-a-uuid' })],
    ['timestamp 9e15', signal({ timestamp: 9e15 })],
    ['received_at 9e15', signal({ received_at: 9e15 })],
    ['signal_type hold', signal({ signal_type: 'hold' as never })],
    ['signal_id upper case', signal({ signal_id: randomUUID().toUpperCase() })],
  ];
  const valid = signal({ amount: 100 });
  // Only the valid one has a row: validation could not have stored the others.
  const results = await runChunk(stage, [...bad.map(([, s]) => rec(s)), ...(await fromValidation(valid))], clock);
  for (const [i, [name]] of bad.entries()) {
    const r = results[i]!;
    assert.equal(r.kind, 'reject', `${name}: refused`);
    assert.equal(r.kind === 'reject' && r.code, 'invalid_record', `${name}: reason code`);
    assert.equal(r.outputs?.length ?? 0, 0, `${name}: no intent, no event`);
  }
  assert.equal(results[3]!.kind === 'reject' && results[3]!.signalId, bad[3]![1].signal_id, 'the dead letter names a signal_id that is a UUID');
  assert.equal(results[12]!.kind === 'reject' && results[12]!.signalId, null, 'not one that is not');
  assert.deepEqual(intentsOf(results.at(-1)!).map((i) => [i.action, i.qty]), [['create', '100']], 'the valid signal behind them is sized');
  assert.equal(await count('decisions'), 1, 'nothing recorded for the refused ones');
  assert.equal((await ordersOf()).length, 1);
  assert.equal((await pool.one(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM signals`)).n, 1, 'no row inserted for the refused ones');
  assert.deepEqual(await signalRow(valid.signal_id), { status: 'decided', outcome: 'create', outcome_reason: 'new_signal' });
});

test('the same signal twice in one chunk: decided once, recorded once (persist used to fail), the repeat emits nothing', async () => {
  const clock = new ManualClock(NOW);
  const stage = createSizeRiskStage({ config: cfg(), db: pool, clock });
  const a = signal({ amount: 300 });
  const refused = signal({ amount: 300, confidence: 0.01 });
  const results = await runChunk(stage, await fromValidation(a, refused, a, refused, { ...a, amount: 900 }), clock);
  assert.ok(results.every((r) => r.kind === 'ok'));
  assert.deepEqual(intentsOf(results[0]!).map((i) => [i.action, i.qty]), [['create', '300']]);
  assert.deepEqual(results[2]!.outputs, [], 'the repeat is not decided again');
  assert.deepEqual(results[4]!.outputs, [], 'nor a later copy with another amount');
  assert.deepEqual(results[3]!.outputs, [], 'nor a repeated refusal');
  assert.equal((results[1]!.outputs![0]!.value as OrderEvent).reason_code, RISK_REASONS.lowConfidence);
  assert.equal(await count('decisions'), 2);
  const orders = await ordersOf();
  assert.deepEqual(orders.map((o) => [o.order_link_id, o.qty]), [[orderLinkId('om', a.signal_id), '300']], 'one order');
  assert.deepEqual(await signalRow(a.signal_id), { status: 'decided', outcome: 'create', outcome_reason: 'new_signal' });
  assert.deepEqual(await signalRow(refused.signal_id), { status: 'decided', outcome: 'rejected', outcome_reason: RISK_REASONS.lowConfidence });

  // The same chunk again (a crash before the Kafka commit): a replay, identical outputs, nothing new.
  clock.advance(10_000);
  const replay = await runChunk(stage, [rec(a), rec(refused), rec(a), rec(refused), rec({ ...a, amount: 900 })], clock);
  assert.deepEqual(replay.map((r) => r.outputs), results.map((r) => r.outputs));
  assert.equal(await count('decisions'), 2);
  assert.equal((await ordersOf()).length, 1);
});

test('size/risk writes only the outcome of the row validation recorded; a signal without a row is decided, warned about and counted, never inserted', async () => {
  const clock = new ManualClock(NOW);
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ LOG_LEVEL: 'warn', BYBIT_API_SECRET: 'sim-secret', ADMIN_TOKEN: undefined }, 'test', { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  const registry = new Registry();
  const stage = createSizeRiskStage({ config: cfg(), db: pool, clock, logger, registry });
  const a = signal({ amount: 200 });
  const stray = signal({ amount: 100 }); // on signals.valid without validation (any producer can write there)
  const columns = z.object({ strategy_id: z.string().nullable(), asset: z.string().nullable(), amount: z.string().nullable(), payload: z.unknown(), received_at: z.number(), source_record: z.string().nullable(), duplicate_count: z.number() });
  const identity = (id: string) => pool.one(sql.type(columns)`
    SELECT strategy_id, asset, amount::text AS amount, payload, received_at, source_record, duplicate_count FROM signals WHERE signal_id = ${id}`);
  const [recA] = await fromValidation(a);
  const before = await identity(a.signal_id);

  const results = await runChunk(stage, [recA!, rec(stray)], clock);
  assert.deepEqual(results.map((r) => intentsOf(r).map((i) => i.action)), [['create'], ['create']], 'both decided: the row is the record of the outcome, not a condition of it');
  assert.deepEqual(await signalRow(a.signal_id), { status: 'decided', outcome: 'create', outcome_reason: 'new_signal' });
  assert.deepEqual(await identity(a.signal_id), before, 'identity and payload stay as validation wrote them');
  assert.equal(await pool.maybeOne(sql.type(z.object({ status: z.string() }))`SELECT status FROM signals WHERE signal_id = ${stray.signal_id}`), null, 'no row invented for the stray signal');
  assert.equal(await count('decisions'), 2, 'its decision is still audited');
  const warned = lines.filter((l) => l.level === 40 && l.signal_id === stray.signal_id);
  assert.equal(warned.length, 1, JSON.stringify(lines));
  assert.match(String(warned[0]!.msg), /no signals row/);
  assert.ok(!lines.some((l) => l.signal_id === a.signal_id), 'nothing to say about the recorded one');
  const counted = (await registry.getSingleMetric(SIZE_RISK_METRICS.signalsWithoutRow)!.get()).values.reduce((n, v) => n + v.value, 0);
  assert.equal(counted, 1);
});

test('load reads in one statement exactly what is stored: long decimals, microsecond times, open orders in creation order, the pending amend', async () => {
  // The oracle is the same columns read plainly through the pool (its numeric parser keeps the exact
  // text, its timestamptz parser gives epoch ms): load's JSON parts must give the very same values,
  // not a float's rounding, not a rounded millisecond.
  const at = `${new Date(NOW - 5000).toISOString().slice(0, 23)}987+00`; // microseconds .xxx987
  await pool.query(sql.typeAlias('void')`
    INSERT INTO tickers (category, symbol, bid, ask, last, mark_price, ts) VALUES ('linear', 'BTCUSDT', 12345678901234.123456789012345678, 12345678901234.123456789012345679, 0.000000000000000001, 98765.4321098765432109, ${at}::timestamptz)`);
  await pool.query(sql.typeAlias('void')`
    INSERT INTO balances (coin, wallet_balance, available, usd_value, updated_ms) VALUES ('BTC', 1.123456789012345678901, 0.000000000000000000001, 123456789012345678.9, ${NOW})`);
  await pool.query(sql.typeAlias('void')`
    INSERT INTO positions (category, symbol, side, size, mark_price, updated_ms) VALUES ('linear', 'BTCUSDT', 'Buy', 0.100000000000000000007, 98765.4321098765432109, ${NOW})`);
  await pool.query(sql.typeAlias('void')`UPDATE trading_state SET updated_at = ${at}::timestamptz WHERE id`);
  // Three open orders: ids in one order, creation times in another (the third created first).
  for (const [link, created] of [['open-a', NOW - 3000], ['open-b', NOW - 2000], ['open-c', NOW - 4000]] as const) {
    await pool.query(sql.typeAlias('void')`
      INSERT INTO orders (order_link_id, order_id, strategy_id, category, symbol, side, order_type, time_in_force, qty, price, status, created_at, updated_at)
      VALUES (${link}, ${`ex-${link}`}, 'strat-db', 'spot', 'ETHUSDT', 'Buy', 'Limit', 'GTC', 0.000123456789012345678, 2900.123456789012345678, 'New',
              ${sql.timestamp(new Date(created))}, ${sql.timestamp(new Date(created))})`);
  }
  // An amend of open-b decided after its last change, not yet confirmed.
  const pendingSig = randomUUID();
  await pool.query(sql.typeAlias('void')`
    INSERT INTO decisions (idempotency_key, signal_id, order_link_id, action, reason, trading_state, inputs, output, at)
    VALUES ('pending-amend', ${pendingSig}, 'open-b', 'amend', 'same_side_amend', 'ACTIVE', '{}',
            ${sql.jsonb({ topic: 'orders.intents', key: 'ETHUSDT', value: { qty: '0.000234567890123456789', price: '2901.5' } })}, ${sql.timestamp(new Date(NOW - 1000))})`);
  const stage = createSizeRiskStage({ config: cfg(), db: pool, clock: new ManualClock(NOW) });
  const state = await stage.load!(await fromValidation(signal()));

  const tickers = await pool.any(sql.type(z.object({ category: z.string(), symbol: z.string(), bid: z.string().nullable(), ask: z.string().nullable(), last: z.string().nullable(), mark_price: z.string().nullable(), ts: z.number() }))`
    SELECT category, symbol, bid, ask, last, mark_price, ts FROM tickers`);
  assert.equal(tickers.length, 2);
  for (const t of tickers) {
    const got = state.risk.tickers.get(instKey(t.category as 'spot' | 'linear', t.symbol));
    assert.deepEqual(got && [got.bid, got.ask, got.last, got.markPrice, got.ts, got.bookTs], [t.bid, t.ask, t.last, t.mark_price, t.ts, t.ts], `ticker ${t.category} ${t.symbol}`);
  }
  const btc = state.risk.tickers.get(instKey('linear', 'BTCUSDT'))!;
  assert.equal(btc.bid, '12345678901234.123456789012345678', 'the exact decimal, not a float');
  assert.equal(btc.ts % 1000, (NOW - 5000) % 1000, 'microseconds cut to the millisecond, not rounded');

  const balances = await pool.any(sql.type(z.object({ coin: z.string(), wallet_balance: z.string(), available: z.string(), usd_value: z.string().nullable() }))`
    SELECT coin, wallet_balance, available, usd_value FROM balances ORDER BY coin`);
  assert.deepEqual(
    [...state.risk.balances.values()].sort((a, b) => a.coin.localeCompare(b.coin)).map((b) => [b.coin, b.walletBalance, b.available, b.usdValue]),
    balances.map((b) => [b.coin, b.wallet_balance, b.available, b.usd_value]),
  );
  assert.equal(state.risk.balances.get('BTC')?.available, '0.000000000000000000001');

  const position = [...state.risk.positions.values()];
  assert.deepEqual(position.map((p) => [p.symbol, p.side, p.size, p.markPrice]), [['BTCUSDT', 'Buy', '0.100000000000000000007', '98765.4321098765432109']]);

  assert.deepEqual(state.risk.openOrders.map((o) => o.orderLinkId), ['open-c', 'open-a', 'open-b'], 'open orders in creation order');
  assert.deepEqual(state.risk.openOrders.map((o) => [o.qty, o.price]), Array(3).fill(['0.000123456789012345678', '2900.123456789012345678']));
  assert.deepEqual(state.risk.openOrders.map((o) => o.pending), [null, null, { action: 'amend', qty: '0.000234567890123456789', price: '2901.5' }]);

  const stored = await pool.one(sql.type(z.object({ updated_at: z.number() }))`SELECT updated_at FROM trading_state WHERE id`);
  assert.equal(utcDay(stored.updated_at), utcDay(NOW - 5000));
  assert.equal(state.trading.state, 'ACTIVE');
});
