// Micro-benchmark of the tracking stage's edges on the real PostgreSQL: `load` and `persist` of one
// chunk, as the runner calls them (load → process per record → persist), on a database of its own
// (migrated, dropped after). Each chunk is TRACK_MICRO_CHUNK records (default 500) over a fifth as
// many orders the risk stage already wrote (status Intent): per order its submission, the exchange's
// New, two executions and the Filled update — the bench's usual traffic. Then the same chunk again
// (a replay after a crash before the Kafka commit). `npx tsx stack/bench/track-micro.ts`.
// Knobs: TRACK_MICRO_CHUNK, TRACK_MICRO_RUNS (default 7).
import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ManualClock } from '../../runtime/clock.ts';
import { loadConfig } from '../../runtime/config.ts';
import { createDb, dropDatabase, ensureDatabase, sql, withDatabase } from '../../runtime/db.ts';
import { defaultMigrationsDir, migrate } from '../../runtime/migrate.ts';
import type { StageRecord, StageResult } from '../../pipelines/runner.ts';
import { createTrackStage, parseConfig } from '../../pipelines/track.ts';
import { type TrackInput } from '../../pipelines/track-state.ts';
import type { ExchangeOrderUpdate, Execution, OrderSubmission } from '../../schemas/types.ts';
import { UNIT_SCHEMAS } from '../services.ts';

const CHUNK = Number(process.env.TRACK_MICRO_CHUNK ?? 500);
const RUNS = Number(process.env.TRACK_MICRO_RUNS ?? 7);
const PER_ORDER = 5;
const P = 'tm.';
const T0 = 1_760_000_000_000;
const clock = new ManualClock(T0 + 60_000);
const dbUrl = withDatabase(loadConfig(process.env, UNIT_SCHEMAS).DATABASE_URL, `bench_track_${randomBytes(6).toString('hex')}`);

const link = (run: number, i: number) => `om-${String(run).padStart(5, '0')}${String(i).padStart(20, '0')}`;
let offset = 0;
const rec = (topic: string, value: TrackInput, key: string): StageRecord<TrackInput> => ({ value, key, headers: {}, topic: P + topic, partition: 0, offset: String(offset++), timestamp: T0, traceId: null });

function chunkOf(run: number): StageRecord<TrackInput>[] {
  const out: StageRecord<TrackInput>[] = [];
  const orders = Math.ceil(CHUNK / PER_ORDER);
  for (let i = 0; i < orders; i++) {
    const l = link(run, i);
    const oid = `oid-${run}-${i}`;
    const t = T0 + i;
    const s: OrderSubmission = { intent_id: `intent-${run}-${i}`, order_link_id: l, action: 'create', outcome: 'accepted', order_id: oid, ret_code: 0, ret_msg: 'OK', reason_code: null, attempts: 1, sent_at: t, acked_at: t + 40, category: 'spot', symbol: 'ETHUSDT', side: 'Buy', order_type: 'Limit', qty: '1', price: '3000', market_unit: null, signal: null };
    const u = (status: string, over: Partial<ExchangeOrderUpdate> = {}): ExchangeOrderUpdate => ({ orderId: oid, orderLinkId: l, symbol: 'ETHUSDT', category: 'spot', side: 'Buy', orderType: 'Limit', price: '3000', qty: '1', marketUnit: null, timeInForce: 'GTC', orderStatus: status, cumExecQty: '0', cumExecValue: '0', cumExecFee: '0', avgPrice: '', leavesQty: '1', rejectReason: 'EC_NoError', cancelType: null, reduceOnly: false, createdTime: t + 50, updatedTime: t + 50, source: 'ws', streamMessageId: null, creationTime: null, observedAt: t + 60, ...over });
    const e = (n: number, qty: string, at: number): Execution => ({ execId: `e-${run}-${i}-${n}`, orderId: oid, orderLinkId: l, symbol: 'ETHUSDT', category: 'spot', side: 'Buy', orderType: 'Limit', execType: 'Trade', execPrice: '3000', execQty: qty, execValue: null, execFee: '0.01', feeCurrency: 'USDT', feeRate: null, isMaker: true, leavesQty: null, execTime: at, source: 'ws', observedAt: at + 5, stopOrderType: null });
    out.push(
      rec('orders.submissions', s, 'ETHUSDT'),
      rec('exchange.orders', u('New'), 'ETHUSDT'),
      rec('exchange.executions', e(1, '0.4', t + 100), 'ETHUSDT'),
      rec('exchange.executions', e(2, '0.6', t + 200), 'ETHUSDT'),
      rec('exchange.orders', u('Filled', { updatedTime: t + 200, cumExecQty: '1', cumExecValue: '3000', cumExecFee: '0.02', avgPrice: '3000', leavesQty: '0' }), 'ETHUSDT'),
    );
  }
  return out.slice(0, CHUNK);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  await ensureDatabase(dbUrl);
  const pool = await createDb(dbUrl, { maximumPoolSize: 4 });
  try {
    await migrate(pool, { dir: defaultMigrationsDir });
    const stage = createTrackStage({ config: parseConfig({ TOPIC_PREFIX: P }), db: pool });
    const t = { load: [] as number[], persist: [] as number[], replayLoad: [] as number[], replayPersist: [] as number[] };
    let events = 0;
    for (let run = 0; run < RUNS; run++) {
      const orders = Math.ceil(CHUNK / PER_ORDER);
      const values = Array.from({ length: orders }, (_, i) => sql.fragment`(${link(run, i)}, ${randomUUID()}, 'bench', 'spot', 'ETHUSDT', 'Buy', 'Limit', 'GTC', 1, 3000, 'Intent', ${sql.jsonb({ strategy_id: 'bench', trace_id: `t-${run}-${i}`, snapshot_price: 2999 })})`);
      await pool.query(sql.typeAlias('void')`
        INSERT INTO orders (order_link_id, signal_id, strategy_id, category, symbol, side, order_type, time_in_force, qty, price, status, context)
        VALUES ${sql.join(values, sql.fragment`, `)}`);
      const recs = chunkOf(run);
      for (const replay of [false, true]) {
        const a = performance.now();
        const state = await stage.load!(recs);
        const b = performance.now();
        const items: Array<{ rec: StageRecord<TrackInput>; result: StageResult }> = recs.map((r) => ({ rec: r, result: stage.process(r, { state, clock }) }));
        const c = performance.now();
        await stage.persist!(items, state);
        const d = performance.now();
        if (!replay) events = items.reduce((n, i) => n + i.result.outputs!.length, 0);
        (replay ? t.replayLoad : t.load).push(b - a);
        (replay ? t.replayPersist : t.persist).push(d - c);
      }
    }
    const f = (xs: number[]) => `${median(xs).toFixed(1)} ms (min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)})`;
    console.log(`chunk of ${CHUNK} records (${Math.ceil(CHUNK / PER_ORDER)} orders, ${events} events), median of ${RUNS} runs:`);
    console.log(`  load     ${f(t.load)}`);
    console.log(`  persist  ${f(t.persist)}`);
    console.log(`  replay: load ${f(t.replayLoad)}; persist ${f(t.replayPersist)}`);
  } finally {
    await pool.end();
    await dropDatabase(dbUrl).catch(() => {});
  }
}

await main();
