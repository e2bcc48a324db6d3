// The tracking stage books P&L with the executions it stores, on the real PostgreSQL: the docs'
// linear table through the stage (two orders of one strategy, a funding execution), a replayed
// chunk books nothing twice, an upgraded database's books are rebuilt from the stored executions to
// the same figures, and a tracker whose loaded book moved meanwhile retries instead of overwriting.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { ManualClock } from '../../runtime/clock.ts';
import { sql, type DatabasePool } from '../../runtime/db.ts';
import { RetriableError } from '../../runtime/errors.ts';
import { migratedDatabase } from '../helpers.ts';
import type { StageRecord, StageResult } from '../../pipelines/runner.ts';
import { createTrackStage, parseConfig } from '../../pipelines/track.ts';
import type { TrackInput } from '../../pipelines/track-state.ts';
import { readBooks, readDayPnl, rebuildBooks } from '../../pipelines/pnl-sql.ts';
import type { Execution } from '../../schemas/types.ts';

const P = 'pnl.';
const T0 = Date.parse('2026-03-02T10:00:00Z');
const BUY = 'om-00000000000000000000000b1';
const SELL = 'om-00000000000000000000000s1';
let pool: DatabasePool;
const clock = new ManualClock(T0 + 3_600_000);
let dropDb: () => Promise<void> = async () => {};

before(async () => {
  ({ pool, drop: dropDb } = await migratedDatabase('track_pnl'));
});
after(() => dropDb());

beforeEach(async () => {
  await pool.query(sql.typeAlias('void')`TRUNCATE orders, order_state_history, order_events, invalid_transitions, executions, pnl_books, pnl_days, tickers`);
  // The Intent rows the risk stage stores, with the context the signal carried.
  for (const [link, side, qty] of [[BUY, 'Buy', '0.03'], [SELL, 'Sell', '0.05']] as const) {
    await pool.query(sql.typeAlias('void')`
      INSERT INTO orders (order_link_id, strategy_id, category, symbol, side, order_type, time_in_force, qty, status, context)
      VALUES (${link}, 'strat-pnl', 'linear', 'BTCUSDT', ${side}, 'Market', 'IOC', ${qty}, 'Intent', ${sql.jsonb({ strategy_id: 'strat-pnl', signal_id: null })})`);
  }
});

let offset = 0;
const rec = (value: Execution): StageRecord<TrackInput> => ({ value, key: 'BTCUSDT', headers: {}, topic: `${P}exchange.executions`, partition: 0, offset: String(offset++), timestamp: T0, traceId: null });
const exec = (id: string, link: string, side: 'Buy' | 'Sell', qty: string, price: string, fee: string, at: number, execType = 'Trade'): Execution => ({
  execId: id, orderId: `oid-${link}`, orderLinkId: link, symbol: 'BTCUSDT', category: 'linear', side, orderType: 'Market', execType, execPrice: price, execQty: qty,
  execValue: null, execFee: fee, feeCurrency: 'USDT', feeRate: null, isMaker: false, leavesQty: null, execTime: at, source: 'ws', observedAt: at + 5, stopOrderType: null,
});

/** docs/pnl.md's linear table: the order of the fills as the exchange reported them. */
const FILLS = [
  exec('x1', BUY, 'Buy', '0.02', '60000', '0.66', T0 + 1000),
  exec('x2', BUY, 'Buy', '0.01', '63000', '0.3465', T0 + 2000),
  exec('f1', '', 'Sell', '0.03', '61500', '0.9', T0 + 3000, 'Funding'),
  exec('x3', SELL, 'Sell', '0.04', '62000', '1.364', T0 + 4000),
  exec('x4', SELL, 'Sell', '0.01', '62000', '0.341', T0 + 5000),
];

const stage = () => createTrackStage({ config: parseConfig({ TOPIC_PREFIX: P }), db: pool });

async function chunk(recs: StageRecord<TrackInput>[]): Promise<StageResult[]> {
  const st = stage();
  const state = await st.load!(recs);
  const items = recs.map((r) => ({ rec: r, result: st.process(r, { state, clock }) }));
  await st.persist!(items, state);
  return items.map((i) => i.result);
}

const booksNow = async () => (await readBooks(pool)).map((b) => ({ strategy: b.strategy, qty: b.qty, avgEntry: b.avgEntry, realised: b.realised, fees: b.fees, funding: b.funding, net: b.net }));
const days = () => pool.any(sql.type(z.object({ day: z.string(), strategy_id: z.string(), realised: z.string(), fees: z.string(), funding: z.string(), fills: z.number() }))`
  SELECT day::text AS day, strategy_id, realised::text AS realised, fees::text AS fees, funding::text AS funding, fills FROM pnl_days ORDER BY day, strategy_id`);

test('fills and funding through the tracking stage book the docs\' figures under the order\'s strategy; a replay books nothing twice', async () => {
  const recs = FILLS.map(rec);
  await chunk(recs.slice(0, 2));
  await chunk(recs.slice(2));
  const want = [
    // Funding goes to the book holding the position (0.03 long when it settles). Sell 0.04 closes
    // the long (+30) and opens 0.01 short at 62,000; the last sell adds to it.
    { strategy: 'strat-pnl', qty: '-0.02', avgEntry: '62000', realised: '30', fees: '2.7115', funding: '-0.9', net: '26.3885' },
  ];
  assert.deepEqual(await booksNow(), want);
  assert.deepEqual(await days(), [{ day: '2026-03-02', strategy_id: 'strat-pnl', realised: '30', fees: '2.7115', funding: '-0.9', fills: 5 }]);
  const orderFills = await pool.oneFirst(sql.type(z.object({ q: z.string() }))`SELECT cum_exec_qty::text AS q FROM orders WHERE order_link_id = ${BUY}`);
  assert.equal(orderFills, '0.03', 'the funding execution is no fill of an order');

  // A crash before the Kafka commit: both chunks again, then the whole sequence as one chunk.
  await chunk(recs.slice(0, 2));
  await chunk(recs.slice(2));
  await chunk(recs);
  assert.deepEqual(await booksNow(), want, 'replays book nothing');
  assert.equal((await days()).reduce((a, d) => a + d.fills, 0), 5);

  // Unrealised at the mark, and the day's figure the loss limit reads.
  await pool.query(sql.typeAlias('void')`
    INSERT INTO tickers (category, symbol, bid, ask, last, mark_price, ts) VALUES ('linear', 'BTCUSDT', 62999, 63001, 63000, 63100, ${sql.timestamp(new Date(T0))})`);
  const short = (await readBooks(pool)).find((b) => b.strategy === 'strat-pnl')!;
  assert.equal(short.unrealised, '-22', '(63,100 − 62,000) × −0.02');
  const day = await readDayPnl(pool, T0 + 3_600_000);
  assert.equal(day.dayNet.toString(), '26.3885', '27.2885 − 0.9');
  assert.equal(day.dayPnl.toString(), '4.3885', 'the open loss counts at once');
});

test('an upgraded database: the books are rebuilt from the stored executions to the same figures, once', async () => {
  await chunk(FILLS.map(rec));
  const booked = await booksNow();
  const bookedDays = await days();
  assert.deepEqual(await rebuildBooks(pool), { rebuilt: false, executions: 0, books: 0 }, 'books present: nothing to rebuild');
  await pool.query(sql.typeAlias('void')`TRUNCATE pnl_books, pnl_days`);
  assert.deepEqual(await rebuildBooks(pool), { rebuilt: true, executions: 5, books: 1 });
  assert.deepEqual(await booksNow(), booked);
  assert.deepEqual(await days(), bookedDays);
  assert.equal((await rebuildBooks(pool)).rebuilt, false);
});

/**
 * Two trackers (a rebalance) each load their chunk before either persists; `a` persists first.
 * Returns `b`'s persist of what it loaded (it should fail retriably) and `b`'s retry on fresh state.
 */
async function twoTrackers(ra: StageRecord<TrackInput>[], rb: StageRecord<TrackInput>[]): Promise<{ second: () => Promise<void>; retry: () => Promise<unknown> }> {
  const [a, b] = [stage(), stage()];
  const [sa, sb] = [await a.load!(ra), await b.load!(rb)];
  const items = (st: ReturnType<typeof stage>, recs: StageRecord<TrackInput>[], s: typeof sa) => recs.map((r) => ({ rec: r, result: st.process(r, { state: s, clock }) }));
  await a.persist!(items(a, ra, sa), sa);
  return { second: () => b.persist!(items(b, rb, sb), sb), retry: () => chunk(rb) };
}

test('two trackers on one book (a rebalance): the second one\'s persist retries instead of overwriting', async () => {
  await chunk([rec(FILLS[0]!)]);
  const { second, retry } = await twoTrackers([rec(FILLS[1]!)], [rec(FILLS[3]!)]);
  await assert.rejects(second(), (e: unknown) => e instanceof RetriableError && /moved since it was loaded/.test(e.message));
  const [book] = await booksNow();
  assert.equal(book!.qty, '0.03', 'the first tracker\'s fill is kept; the second one\'s waits for its retry');
  await retry();
  assert.equal((await booksNow())[0]!.qty, '-0.01');
});

test('two trackers creating one book: the second one\'s persist retries instead of a second book or a lost fill', async () => {
  const { second, retry } = await twoTrackers([rec(FILLS[0]!)], [rec(FILLS[1]!)]);
  await assert.rejects(second(), (e: unknown) => e instanceof RetriableError && /created by another writer meanwhile/.test(e.message));
  assert.deepEqual((await booksNow()).map((x) => x.qty), ['0.02'], 'one book, with the first tracker\'s fill');
  await retry();
  assert.deepEqual((await booksNow()).map((x) => x.qty), ['0.03']);
});
