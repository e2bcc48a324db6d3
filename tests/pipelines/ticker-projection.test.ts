// The ticker projection (pipelines/ticker-projection.ts): market.tickers → `tickers`, its one writer,
// outside the exactly-once path. The ticker cases the tracking stage's tests held when tracking
// projected the tickers (track.test.ts, track-db.test.ts, track-batch-db.test.ts) are here, with the
// same records and the same expected rows: the triage and conflation alone (pure), a batch on the
// real PostgreSQL (conflate + the one upsert, as the unit does per Kafka batch), a batch against one
// record at a time whatever the order and duplication (property), and the running unit on the real
// Kafka and PostgreSQL: a new group starts at the earliest offset, dead letters as the runner sends
// them, a redelivery after a member died between its upsert and its commit, and the second start
// resuming from the committed offsets.
import { test, before, after, beforeEach } from 'node:test';
import { performance } from 'node:perf_hooks';
import assert from 'node:assert/strict';
import { z } from 'zod';
import fc from 'fast-check';
import { sql, type DatabasePool } from '../../runtime/db.ts';
import { systemClock } from '../../runtime/clock.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import type { DeadLetter, Ticker } from '../../schemas/types.ts';
import { conflate, name, runTickerProjection, triage, upsertTickers, TICKER_METRICS, type RunningTickerProjection, type TickerProjectionConfig } from '../../pipelines/ticker-projection.ts';
import { DLQ_HEADERS } from '../../pipelines/runner.ts';
import { consumeUntil, createNamespace, migratedDatabase, namespace, registryUrl, testKafka, testLogger, waitCaughtUp, waitFor } from '../helpers.ts';

const T0 = 1_760_000_000_000;
const tick = (category: string, bid: string | null, ask: string | null, last: string, at: number, source: 'ws' | 'rest' = 'ws', symbol = 'ETHUSDT'): Ticker => ({
  symbol, category, lastPrice: last, bid1Price: bid, bid1Size: bid && '2', ask1Price: ask, ask1Size: ask && '3', volume24h: '10', turnover24h: '30000', price24hPcnt: '0.01', markPrice: category === 'linear' ? last : null, ts: at, source, observedAt: at,
});

/** What the unit does with one batch's decoded tickers: the kept ones, conflated. */
const project = (ts: readonly Ticker[]) => conflate(ts.filter((t) => triage(t).kind === 'keep'));

// ---------------------------------------------------------------------------------------------
// Pure

test('triage and conflation: the newest per (category, symbol); a spot tick without bid / ask keeps the earlier one\'s book; other categories ignored; a crossed book refused', () => {
  const recs = [
    tick('spot', '2999', '3001', '3000', T0 + 10, 'rest'),
    tick('spot', null, null, '3002', T0 + 20), // Bybit's spot stream: no bid / ask
    tick('spot', '2900', '2901', '2900', T0 + 15, 'rest'), // older than the batch's newest: ignored, book included
    tick('linear', '2998', '3000', '2999', T0 + 30),
    tick('linear', '2997', '2999', '2998', T0 + 40),
    tick('inverse', '1', '2', '1', T0 + 50), // not a table category
  ];
  assert.deepEqual(triage(recs[5]!), { kind: 'ignore', reason: 'unsupported_category' });
  const st = project(recs);
  assert.deepEqual([...st.keys()].sort(), ['linear:ETHUSDT', 'spot:ETHUSDT']);
  const spot = st.get('spot:ETHUSDT')!;
  assert.deepEqual({ last: spot.ticker.lastPrice, ts: spot.ticker.ts, bid: spot.bid, ask: spot.ask, bookTs: spot.bookTs }, { last: '3002', ts: T0 + 20, bid: '2999', ask: '3001', bookTs: T0 + 10 });
  const linear = st.get('linear:ETHUSDT')!;
  assert.deepEqual({ last: linear.ticker.lastPrice, bid: linear.bid, ask: linear.ask, bookTs: linear.bookTs }, { last: '2998', bid: '2997', ask: '2999', bookTs: T0 + 40 });

  const crossed = tick('spot', '3002', '3001', '3001', T0 + 60);
  const verdict = triage(crossed);
  assert.equal(verdict.kind, 'refuse');
  assert.equal(verdict.kind === 'refuse' && verdict.code, 'invalid_record');
  assert.equal(project([...recs, crossed]).get('spot:ETHUSDT')!.ticker.ts, T0 + 20, 'the refused record changed nothing');
});

// ---------------------------------------------------------------------------------------------
// PostgreSQL

let pool: DatabasePool;
let dropDb: () => Promise<void> = async () => {};
before(async () => {
  ({ pool, drop: dropDb } = await migratedDatabase('tickproj'));
});
after(() => dropDb());
beforeEach(async () => {
  await pool.query(sql.typeAlias('void')`TRUNCATE tickers`);
});

/** One batch as the unit stores it. */
const batch = (ts: readonly Ticker[]) => upsertTickers(pool, [...project(ts).values()]);
const tickerRow = z.object({ category: z.string(), symbol: z.string(), bid: z.string().nullable(), ask: z.string().nullable(), book_ts: z.number().nullable(), last: z.string().nullable(), mark_price: z.string().nullable(), volume_24h: z.string().nullable(), turnover_24h: z.string().nullable(), ts: z.number() });
const allRows = async () => [...(await pool.any(sql.type(tickerRow)`
  SELECT category, symbol, bid::text, ask::text, book_ts, last::text, mark_price::text, volume_24h::text, turnover_24h::text, ts FROM tickers ORDER BY category, symbol`))];
const row = async (category: string, symbol = 'ETHUSDT') => {
  const r = (await allRows()).find((x) => x.category === category && x.symbol === symbol);
  return r && { bid: r.bid, ask: r.ask, last: r.last, ts: r.ts, book_ts: r.book_ts };
};

test('tickers: newest exchange time wins; a spot tick without bid / ask keeps the book an earlier record brought, with that record\'s time', async () => {
  // Exchange sync's REST snapshot brings bid / ask.
  await batch([tick('spot', '2999.5', '3000.5', '3000', T0 + 100, 'rest')]);
  assert.deepEqual(await row('spot'), { bid: '2999.5', ask: '3000.5', last: '3000', ts: T0 + 100, book_ts: T0 + 100 });
  // A newer spot tick of the websocket has none: last and ts move on, the book stays with its own time.
  await batch([tick('spot', null, null, '3001', T0 + 200)]);
  assert.deepEqual(await row('spot'), { bid: '2999.5', ask: '3000.5', last: '3001', ts: T0 + 200, book_ts: T0 + 100 });
  // An older ticker changes nothing, its book included.
  await batch([tick('spot', '2990', '2991', '2990', T0 + 150, 'rest')]);
  assert.deepEqual(await row('spot'), { bid: '2999.5', ask: '3000.5', last: '3001', ts: T0 + 200, book_ts: T0 + 100 });
  // A batch whose book comes from a record older than the row, then a newer tick without one: one
  // record at a time the older record is refused, so its book must not arrive through the newer one.
  await batch([tick('spot', '2980', '2981', '2980', T0 + 180, 'rest'), tick('spot', null, null, '3002', T0 + 300)]);
  assert.deepEqual(await row('spot'), { bid: '2999.5', ask: '3000.5', last: '3002', ts: T0 + 300, book_ts: T0 + 100 });
  // The same batch shape with the book's record newer than the row: its book lands, with its time.
  await batch([tick('spot', '3003', '3004', '3003', T0 + 350, 'rest'), tick('spot', null, null, '3005', T0 + 400)]);
  assert.deepEqual(await row('spot'), { bid: '3003', ask: '3004', last: '3005', ts: T0 + 400, book_ts: T0 + 350 });
  // A newer tick with a book replaces it; the linear row is its own.
  await batch([tick('spot', '3009', '3010', '3010', T0 + 500), tick('linear', '3008', '3011', '3009', T0 + 500)]);
  assert.deepEqual(await row('spot'), { bid: '3009', ask: '3010', last: '3010', ts: T0 + 500, book_ts: T0 + 500 });
  assert.deepEqual(await row('linear'), { bid: '3008', ask: '3011', last: '3009', ts: T0 + 500, book_ts: T0 + 500 });
  assert.equal((await allRows()).length, 2);
});

/** The ticker records of the tracking stage's batch script (track-batch-db.test.ts) when it projected them. */
const SCRIPT = [
  tick('spot', '2999', '3001', '3000', T0 + 100, 'rest'),
  tick('linear', '2998', '3000', '2999', T0 + 100),
  tick('spot', null, null, '3002', T0 + 200), // spot stream: keeps the REST book
  tick('linear', '2990', '2992', '2991', T0 + 90), // older: ignored
  tick('spot', '3003', '3002', '3002', T0 + 250), // crossed book: refused
  tick('inverse', '1', '2', '1', T0 + 100), // no such table category: ignored
];

test('one batch, one record at a time, and the batch again (a redelivery) give the same rows', async () => {
  assert.deepEqual(SCRIPT.map((t) => triage(t).kind), ['keep', 'keep', 'keep', 'keep', 'refuse', 'ignore']);
  for (const t of SCRIPT) await batch([t]);
  const perRecord = await allRows();
  assert.deepEqual(
    perRecord.map((t) => [t.category, t.bid, t.ask, t.book_ts, t.last, t.ts]),
    [
      ['linear', '2998', '3000', T0 + 100, '2999', T0 + 100],
      ['spot', '2999', '3001', T0 + 100, '3002', T0 + 200],
    ],
  );
  await pool.query(sql.typeAlias('void')`TRUNCATE tickers`);
  await batch(SCRIPT);
  assert.deepEqual(await allRows(), perRecord, 'same rows');
  await batch(SCRIPT);
  assert.deepEqual(await allRows(), perRecord, 'the redelivered batch changes nothing');
});

test('property: whatever the order, duplication and split into batches, a row holds the newest record\'s price and time, and batches leave what one record at a time leaves', async () => {
  // Distinct exchange times per (category, symbol), so "the newest" is one record. The book is the
  // one part that depends on the arrival order, by the rule above: a record older than the row is
  // refused whole, its book included, so a book that arrives after a newer tick without one is not
  // taken. In exchange-time order it is the newest book's.
  const keys = [['spot', 'ETHUSDT'], ['linear', 'ETHUSDT'], ['spot', 'BTCUSDT']] as const;
  const arbTick = fc.record({ k: fc.integer({ min: 0, max: keys.length - 1 }), dt: fc.integer({ min: 0, max: 40 }), book: fc.boolean(), px: fc.integer({ min: 1000, max: 1100 }) });
  await fc.assert(
    fc.asyncProperty(fc.uniqueArray(arbTick, { minLength: 1, maxLength: 25, selector: (x) => `${x.k}:${x.dt}` }), fc.array(fc.integer({ min: 0, max: 24 }), { maxLength: 10 }), fc.integer({ min: 1, max: 6 }), fc.integer(), async (draws, dups, size, seed) => {
      const ts = draws.map(({ k, dt, book, px }) => tick(keys[k]![0], book ? String(px - 1) : null, book ? String(px + 1) : null, String(px), T0 + dt * 10, book ? 'rest' : 'ws', keys[k]![1]));
      const newest = new Map<string, Ticker>();
      const newestBook = new Map<string, Ticker>();
      for (const t of [...ts].sort((a, b) => a.ts - b.ts)) {
        newest.set(`${t.category}:${t.symbol}`, t);
        if (t.bid1Price) newestBook.set(`${t.category}:${t.symbol}`, t);
      }
      // In exchange-time order, one record at a time: the newest price and time, the newest book.
      await pool.query(sql.typeAlias('void')`TRUNCATE tickers`);
      for (const t of [...ts].sort((a, b) => a.ts - b.ts)) await batch([t]);
      for (const r of await allRows()) {
        const k = `${r.category}:${r.symbol}`;
        const b = newestBook.get(k);
        assert.deepEqual([r.last, r.ts, r.bid, r.book_ts], [newest.get(k)!.lastPrice, newest.get(k)!.ts, b?.bid1Price ?? null, b?.ts ?? null]);
      }
      // The stream: shuffled (seeded), some records twice, cut into batches.
      let r = seed >>> 0;
      const rnd = () => ((r = (r * 1103515245 + 12345) >>> 0) / 2 ** 32);
      const stream = [...ts, ...dups.filter((i) => i < ts.length).map((i) => ts[i]!)].map((t) => ({ t, o: rnd() })).sort((a, b) => a.o - b.o).map((x) => x.t);
      await pool.query(sql.typeAlias('void')`TRUNCATE tickers`);
      for (const t of stream) await batch([t]);
      const oneByOne = await allRows();
      assert.deepEqual(new Map(oneByOne.map((x) => [`${x.category}:${x.symbol}`, [x.last, x.ts]])), new Map([...newest].map(([k, t]) => [k, [t.lastPrice, t.ts]])), 'the newest price and time whatever the order');
      await pool.query(sql.typeAlias('void')`TRUNCATE tickers`);
      for (let i = 0; i < stream.length; i += size) await batch(stream.slice(i, i + size));
      assert.deepEqual(await allRows(), oneByOne, 'batches (and their duplicates) leave what one record at a time leaves');
    }),
    { numRuns: 60 },
  );
});

// ---------------------------------------------------------------------------------------------
// The unit on Kafka and PostgreSQL

const kafka = testKafka();

async function world() {
  const prefix = namespace('tickproj');
  const dropTopics = await createNamespace(kafka, prefix, 3);
  const codec = await createTopicCodec({ registryUrl, prefix });
  const topic = `${prefix}market.tickers`;
  const dlqTopic = `${prefix}orders.dlq`;
  const groupId = `${prefix}${name}`;
  const running: RunningTickerProjection[] = [];
  const producer = kafka.producer();
  await producer.connect();
  return {
    topic,
    dlqTopic,
    groupId,
    codec,
    /** Publish as the websocket bridges and exchange sync do: keyed by symbol, Avro. */
    async publish(ts: readonly Ticker[]): Promise<void> {
      await producer.send(topic, await Promise.all(ts.map(async (t) => ({ key: t.symbol, value: await codec.encode(topic, t), headers: {} }))));
    },
    async publishRaw(key: string, value: Buffer): Promise<void> {
      await producer.send(topic, [{ key, value, headers: {} }]);
    },
    /** The unit with its default settings unless `config` says otherwise. */
    async start(config?: Partial<TickerProjectionConfig>) {
      const metrics = createMetrics();
      const p = await runTickerProjection({ kafka, codec, db: pool, logger: testLogger, metrics, clock: systemClock, topic, dlqTopic, groupId, retryMaxMs: 1000, config, onFatal: (e) => assert.fail(`ticker projection fatal: ${e.message}`) });
      running.push(p);
      await waitFor('the projection to join its group', () => p.ready(), 60_000);
      const value = async (metric: string, labels: Record<string, string> = {}) => {
        const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === metric);
        return (m?.values ?? []).filter((v) => Object.entries(labels).every(([k, l]) => (v.labels as Record<string, unknown>)[k] === l)).reduce((a, v) => a + Number(v.value), 0);
      };
      return { p, value };
    },
    async committed(): Promise<number> {
      const admin = kafka.admin();
      await admin.connect();
      try {
        return (await admin.groupOffsets(groupId, topic)).reduce((a, o) => a + Math.max(0, Number(o.offset)), 0);
      } finally {
        await admin.disconnect();
      }
    },
    async published(): Promise<number> {
      const admin = kafka.admin();
      await admin.connect();
      try {
        return (await admin.topicOffsets(topic)).reduce((a, o) => a + Number(o.high), 0);
      } finally {
        await admin.disconnect();
      }
    },
    async close() {
      for (const p of running) await p.stop();
      await producer.disconnect();
      await dropTopics();
    },
  };
}

test('the unit: a new group starts at the earliest offset; disorder, duplicates, dead letters; a redelivery after a member died before its commit; the second start resumes from the committed offsets', async (t) => {
  const w = await world();
  t.after(() => w.close());
  const symbols = ['ETHUSDT', 'BTCUSDT', 'SOLUSDT', 'XRPUSDT'];

  // What the topic holds before the unit's first start (an upgrade: the tracking group consumed it
  // in the release before; this group has no offsets). Per symbol: REST snapshots with a book, spot
  // ticks without one, linear ticks, in a shuffled order, some twice; then an undecodable record, a
  // tombstone and a crossed book, which must not stop the partition: good records follow them.
  const first: Ticker[] = [];
  symbols.forEach((s, i) => {
    for (let k = 0; k < 30; k++) {
      const at = T0 + k * 100 + i;
      first.push(k % 3 === 0 ? tick('spot', String(1000 + k - 1), String(1000 + k + 1), String(1000 + k), at, 'rest', s) : tick('spot', null, null, String(1000 + k), at, 'ws', s));
      first.push(tick('linear', String(2000 + k - 1), String(2000 + k + 1), String(2000 + k), at, 'ws', s));
    }
  });
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const shuffled = [...first, ...first.filter(() => rnd() < 0.2)].map((x) => ({ x, o: rnd() })).sort((a, b) => a.o - b.o).map((y) => y.x);
  for (let i = 0; i < shuffled.length; i += 17) await w.publish(shuffled.slice(i, i + 17));
  await w.publishRaw('ETHUSDT', Buffer.from('not avro at all'));
  await w.publish([tick('spot', '5', '4', '4', T0 + 10_000, 'rest', 'ETHUSDT')]); // crossed book
  const late = symbols.map((s, i) => tick('spot', null, null, String(3000 + i), T0 + 20_000 + i, 'ws', s)); // after the bad ones, on their partitions
  await w.publish(late);

  // The reference: one record at a time, in exchange-time order, straight into the table.
  for (const x of [...first, ...late].sort((a, b) => a.ts - b.ts)) await batch([x]);
  const expected = await allRows();
  assert.equal(expected.length, symbols.length * 2);
  assert.ok(expected.filter((r) => r.category === 'spot').every((r) => r.book_ts !== null && r.book_ts < r.ts), 'the spot rows keep an earlier book');

  // A member that applied everything published so far and died before committing: its rows are in
  // the table, its group has no offsets (the state a kill between the upsert and the commit leaves,
  // for the whole topic at once). The next member reads it all again from the earliest offset.
  const admin = kafka.admin();
  await admin.connect();
  t.after(() => admin.disconnect());
  const published = (await admin.topicOffsets(w.topic)).reduce((a, o) => a + Number(o.high), 0);
  assert.deepEqual((await admin.groupOffsets(w.groupId, w.topic)).filter((o) => Number(o.offset) >= 0), [], 'no committed offsets: everything is redelivered');

  const one = await w.start();
  await waitCaughtUp(kafka, w.groupId, w.topic);
  assert.equal(await one.value('pipeline_stage_records_in_total', { stage: name }), published, 'read from the earliest offset: every record');
  assert.deepEqual(await allRows(), expected, 'the redelivery changed nothing: newest per key, spot books kept');
  assert.ok((await one.value(TICKER_METRICS.upserts)) >= 1);
  assert.ok((await one.value(TICKER_METRICS.rows)) >= symbols.length * 2);
  assert.equal(await one.value('pipeline_stage_records_rejected_total', { stage: name, reason: 'undecodable' }), 1);
  assert.equal(await one.value('pipeline_stage_records_rejected_total', { stage: name, reason: 'invalid_record' }), 1);
  assert.ok((await one.value(TICKER_METRICS.newestTs)) > 0);

  // Dead letters as the runner sends them: DeadLetter envelopes with the reason and the source.
  const letters = await consumeUntil(kafka, w.dlqTopic, (all) => all.length >= 2);
  const decoded = await Promise.all(letters.map(async (m) => ({ h: m.headers, v: (await w.codec.decode(m.topic, m.value!)) as DeadLetter })));
  assert.deepEqual(decoded.map((d) => d.v.reason_code).sort(), ['invalid_record', 'undecodable']);
  for (const d of decoded) {
    assert.equal(d.v.stage, name);
    assert.equal(d.v.original_topic, w.topic);
    assert.equal(d.h[DLQ_HEADERS.stage], name);
    assert.equal(d.h[DLQ_HEADERS.source], `${w.topic}/${d.v.original_partition}/${d.v.original_offset}`);
  }
  assert.equal(decoded.find((d) => d.v.reason_code === 'undecodable')!.v.original_value!.toString(), 'not avro at all');

  // The second start: stopped, more records published, a new member of the same group reads only
  // those (its committed offsets), and the rows move on.
  await one.p.stop();
  const more = symbols.map((s, i) => tick('linear', '2500', '2502', '2501', T0 + 30_000 + i, 'ws', s));
  await w.publish([...more, ...more]);
  const two = await w.start();
  await waitFor('the new linear tickers', async () => (await allRows()).filter((r) => r.category === 'linear').every((r) => r.last === '2501'));
  await waitCaughtUp(kafka, w.groupId, w.topic);
  assert.equal(await two.value('pipeline_stage_records_in_total', { stage: name }), more.length * 2, 'resumed from the committed offsets, not from the earliest');
  assert.deepEqual((await allRows()).filter((r) => r.category === 'spot'), expected.filter((r) => r.category === 'spot'), 'the spot rows are untouched');
});

test('replay rate: a new group catches up on a backlog (what an upgrade reads from the earliest offset)', async (t) => {
  const w = await world();
  t.after(() => w.close());
  // 4 symbols × 2 categories, 5,000 ticks each (40,000 records), spot without a book as Bybit's.
  const symbols = ['ETHUSDT', 'BTCUSDT', 'SOLUSDT', 'XRPUSDT'];
  const n = 5000;
  const all: Ticker[] = [];
  for (let k = 0; k < n; k++) for (const [i, s] of symbols.entries()) all.push(tick('spot', null, null, String(1000 + k), T0 + k * 100 + i, 'ws', s), tick('linear', String(2000 + k - 1), String(2000 + k + 1), String(2000 + k), T0 + k * 100 + i, 'ws', s));
  for (let i = 0; i < all.length; i += 2000) await w.publish(all.slice(i, i + 2000));
  const t0 = performance.now();
  const one = await w.start();
  // Stored (the rows) and committed are apart by up to TICKER_COMMIT_INTERVAL_MS: both timed.
  await waitFor('the newest linear tickers stored', async () => (await allRows()).filter((r) => r.category === 'linear' && r.last === String(2000 + n - 1)).length === symbols.length, 300_000, 50);
  const storedSeconds = (performance.now() - t0) / 1000;
  await waitCaughtUp(kafka, w.groupId, w.topic, 300_000);
  const seconds = (performance.now() - t0) / 1000;
  assert.equal(await one.value('pipeline_stage_records_in_total', { stage: name }), all.length);
  assert.deepEqual((await allRows()).filter((r) => r.category === 'linear').map((r) => r.last), symbols.map(() => String(2000 + n - 1)));
  const batches = await one.value(TICKER_METRICS.upserts);
  t.diagnostic(`${all.length} records stored in ${storedSeconds.toFixed(1)} s (${Math.round(all.length / storedSeconds)} records/s, start and group join included), committed in ${seconds.toFixed(1)} s, ${batches} upserts`);
});

test('idle cost: a live trickle is gathered per fetch wait and committed once per interval; a paused stream is committed by the interval; a stop commits what is due', async (t) => {
  const w = await world();
  t.after(() => w.close());
  // A live stream: one ETHUSDT linear tick every 125 ms for 3 s (one partition). Each record
  // answered its own fetch before (≈ 24 batches, 24 upserts, 24 commits); the fetch now gathers
  // what a wait brings (1 s: about 3 or 4 batches) and the commits wait for the interval.
  const one = await w.start({ TICKER_FETCH_MAX_WAIT_MS: 1000, TICKER_COMMIT_INTERVAL_MS: 3000 });
  const n = 24;
  for (let k = 0; k < n; k++) {
    await w.publish([tick('linear', String(2000 + k - 1), String(2000 + k + 1), String(2000 + k), T0 + k * 125)]);
    await new Promise((r) => setTimeout(r, 125));
  }
  await waitFor('the newest tick stored', async () => (await allRows()).some((r) => r.last === String(2000 + n - 1)), 10_000);
  const upserts = await one.value(TICKER_METRICS.upserts);
  const commitsWhileLive = await one.value(TICKER_METRICS.commits);
  t.diagnostic(`${n} ticks over ${(n * 125) / 1000} s: ${upserts} upserts, ${commitsWhileLive} commits while the stream flowed`);
  assert.ok(upserts >= 1 && upserts <= 8, `gathered per fetch wait: ${upserts} upserts for ${n} ticks`);
  assert.ok(commitsWhileLive <= 2, `committed at most once per interval: ${commitsWhileLive}`);
  // The stream pauses: the interval's timer commits what is due without a further batch.
  await waitCaughtUp(kafka, w.groupId, w.topic, 10_000);
  assert.equal(await one.value('pipeline_stage_records_in_total', { stage: name }), n);
  await one.p.stop();

  // A member whose interval never comes: its stop commits what it stored, and the next member
  // resumes after it (reads only the new records).
  const more = [0, 1, 2].map((k) => tick('linear', '2999', '3001', String(3000 + k), T0 + 10_000 + k));
  await w.publish(more);
  const two = await w.start({ TICKER_COMMIT_INTERVAL_MS: 600_000 });
  await waitFor('the new ticks stored', async () => (await allRows()).some((r) => r.last === '3002'), 10_000);
  assert.equal(await w.committed(), n, 'nothing committed before the interval');
  await two.p.stop();
  assert.equal(await w.committed(), await w.published(), 'the stop committed what was stored');
  const three = await w.start();
  await w.publish([tick('linear', '3099', '3101', '3100', T0 + 20_000)]);
  await waitFor('the last tick stored', async () => (await allRows()).some((r) => r.last === '3100'), 10_000);
  assert.equal(await three.value('pipeline_stage_records_in_total', { stage: name }), 1, 'resumed after what the stopped member committed');
});
