// Property-based bad-input suite for the tracking stage (pipelines/track.ts) and the ticker
// projection (pipelines/ticker-projection.ts, which took market.tickers over from tracking) on the
// real PostgreSQL (a fresh database of this file's own, dropped after). Their input topics are Avro,
// so the bad input is records (of every input kind, tickers included) that fit their schema but are
// semantically bad:
// decimals that are not numbers or are absurd, NUL and injection strings in ids, unknown statuses and
// categories, negative, zero, stale and far-future times, duplicate execIds. Each run does what the runner does with one chunk —
// load → process every record (a throw becomes a dead letter, as in runner.ts) → persist — and the
// properties are: load and persist never fail (a failure there is not per record: the runner would
// retry or stop the whole partition, a poison chunk), every record ends ok or with a reason code,
// and a valid order's submission, acknowledgement and fill behind the bad records still produce
// their events. Garbage bytes on the real topics are covered by tests/fuzz/stages-kafka.fuzz.test.ts.
//
// FUZZ_RUNS scales the run counts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { ManualClock } from '../../runtime/clock.ts';
import { sql, type DatabasePool } from '../../runtime/db.ts';
import { z } from 'zod';
import { migratedDatabase } from '../helpers.ts';
import { PipelineError } from '../../runtime/errors.ts';
import { reject, type StageRecord, type StageResult } from '../../pipelines/runner.ts';
import { createTrackStage, parseConfig } from '../../pipelines/track.ts';
import { type TrackInput } from '../../pipelines/track-state.ts';
import { invalidPaths, type RecordKind } from '../../schemas/codecs.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import type { ExchangeOrderUpdate, Execution, OrderEvent, OrderSubmission, Ticker } from '../../schemas/types.ts';
import { conflate, triage, upsertTickers } from '../../pipelines/ticker-projection.ts';
import { INJECTIONS, runs } from './arbitraries.ts';

const P = 'fzt.';
const T0 = 1_760_000_000_000;
let pool: DatabasePool;
const clock = new ManualClock(T0 + 60_000);

let dropDb: () => Promise<void> = async () => {};
before(async () => {
  ({ pool, drop: dropDb } = await migratedDatabase('fuzz_track'));
});

after(() => dropDb());

const stage = () => createTrackStage({ config: parseConfig({ TOPIC_PREFIX: P }), db: pool });
let offset = 0;
const TOPIC: Record<string, string> = { OrderSubmission: 'orders.submissions', ExchangeOrderUpdate: 'exchange.orders', Execution: 'exchange.executions', Position: 'exchange.positions', WalletBalance: 'exchange.wallet', Ticker: 'market.tickers' };
const rec = (kind: string, value: unknown): StageRecord<TrackInput> => ({ value: value as TrackInput, key: 'ETHUSDT', headers: {}, topic: P + TOPIC[kind]!, partition: 0, offset: String(offset++), timestamp: T0, traceId: null });

/** One chunk as the runner handles it (minus Kafka): a throw in process becomes a rejection. */
async function chunk(recs: StageRecord<TrackInput>[]): Promise<StageResult[]> {
  const st = stage();
  const state = await st.load!(recs);
  const items: Array<{ rec: StageRecord<TrackInput>; result: StageResult }> = [];
  for (const r of recs) {
    let result: StageResult;
    try {
      result = st.process(r, { state, clock });
    } catch (err) {
      if (err instanceof PipelineError && err.kind !== 'rejected') throw err;
      result = reject(err instanceof PipelineError ? err.code : 'stage_exception', (err as Error).message);
    }
    items.push({ rec: r, result });
  }
  await st.persist!(items, state);
  return items.map((i) => i.result);
}

/** A valid order's whole life: submission, acknowledgement, one fill, filled. */
function validLife(): { recs: StageRecord<TrackInput>[]; link: string } {
  const link = `om-${randomBytes(10).toString('hex')}`;
  const oid = `oid-${randomBytes(6).toString('hex')}`;
  const sub: OrderSubmission = { ...SAMPLES.OrderSubmission, intent_id: randomUUID(), order_link_id: link, order_id: oid, category: 'linear', side: 'Buy', qty: '1', price: '3000', signal: null };
  const base: ExchangeOrderUpdate = { ...SAMPLES.ExchangeOrderUpdate, orderId: oid, orderLinkId: link, category: 'linear', side: 'Buy', qty: '1', price: '3000', cumExecQty: '0', cumExecValue: '0', cumExecFee: '0', avgPrice: '', leavesQty: '1', orderStatus: 'New', createdTime: T0 + 50, updatedTime: T0 + 50 };
  const ex: Execution = { ...SAMPLES.Execution, execId: randomUUID(), orderId: oid, orderLinkId: link, category: 'linear', side: 'Buy', execQty: '1', execPrice: '3000', execValue: '3000', execFee: '1.8', leavesQty: '0', execTime: T0 + 100 };
  const filled: ExchangeOrderUpdate = { ...base, orderStatus: 'Filled', cumExecQty: '1', cumExecValue: '3000', cumExecFee: '1.8', avgPrice: '3000', leavesQty: '0', updatedTime: T0 + 100 };
  return { link, recs: [rec('OrderSubmission', sub), rec('ExchangeOrderUpdate', base), rec('Execution', ex), rec('ExchangeOrderUpdate', filled)] };
}

// Values that fit a field's Avro type but not its meaning.
const badString = fc.oneof(
  fc.constantFrom('', ' ', 'NaN', 'Infinity', '-Infinity', '-1', '0', '-0', '1e400', '1e100000000', '9'.repeat(400), '0x10', '1,5', 'abc', 'Filled\u0000', 'Unknown', 'spot ', 'option', 'inverse'),
  fc.constantFrom(...INJECTIONS),
  fc.string({ maxLength: 40 }),
);
const badNumber = fc.oneof(fc.constantFrom(0, -1, -T0, 1, T0 - 365 * 86_400_000, T0 + 10 * 365 * 86_400_000, 2 ** 31 - 1, -(2 ** 31), Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER), fc.integer());

/** A sample record of a kind with one field (top level, or in the first coin) replaced by a bad value of the same Avro type. */
function mutated(kind: RecordKind & keyof typeof TOPIC) {
  const sample = SAMPLES[kind] as unknown as Record<string, unknown>;
  const fields = Object.keys(sample).filter((k) => typeof sample[k] === 'string' || typeof sample[k] === 'number');
  return fc.tuple(fc.constantFrom(...fields), badString, badNumber).map(([f, s, n]) => {
    const v = structuredClone(sample);
    if (kind === 'Execution') v.execId = randomUUID(); // a fresh fill each run, unless execId is the field hit
    v[f] = typeof sample[f] === 'number' ? n : s;
    return v;
  }).filter((v) => invalidPaths(kind, v).length === 0);
}
const anyBad = fc.oneof(mutated('OrderSubmission'), mutated('ExchangeOrderUpdate'), mutated('Execution'), mutated('Position'), mutated('WalletBalance')).map((v) => {
  const kind = 'execId' in v ? 'Execution' : 'orderStatus' in v ? 'ExchangeOrderUpdate' : 'intent_id' in v ? 'OrderSubmission' : 'positionIdx' in v ? 'Position' : 'WalletBalance';
  return { kind, v };
});

function checkResults(results: StageResult[]): void {
  for (const r of results) {
    if (r.kind === 'reject') assert.match(r.code, /^[a-z_]+$/, 'machine-readable reason');
    for (const o of r.outputs ?? []) assert.deepEqual(invalidPaths('OrderEvent', o.value), [], 'every event fits the schema');
  }
}

test('track: chunks of schema-valid bad records never fail load/persist; a valid order behind them is tracked', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(anyBad, { minLength: 1, maxLength: 6 }), fc.boolean(), async (bad, dupExec) => {
      const recs = bad.map((b) => rec(b.kind, b.v));
      if (dupExec) recs.push(rec('Execution', SAMPLES.Execution), rec('Execution', SAMPLES.Execution));
      const life = validLife();
      // bad records, then the valid ones in the same chunk; then the same again in a later chunk
      const results = await chunk([...recs, ...life.recs]);
      checkResults(results);
      const events = results.slice(recs.length).flatMap((r) => (r.outputs ?? []).map((o) => o.value as OrderEvent));
      assert.ok(events.some((e) => e.event_type === 'order_filled' && e.order_link_id === life.link), `valid order filled (got ${events.map((e) => e.event_type).join(',')})`);
      const later = validLife();
      const results2 = await chunk([...bad.map((b) => rec(b.kind, b.v)), ...later.recs]);
      checkResults(results2);
      assert.ok(results2.flatMap((r) => (r.outputs ?? []).map((o) => o.value as OrderEvent)).some((e) => e.event_type === 'order_filled' && e.order_link_id === later.link), 'a later chunk still tracks');
    }),
    { numRuns: runs(40), seed: 301 },
  );
});

test('ticker projection: batches of schema-valid bad tickers never fail the upsert; a valid ticker behind them is stored', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(mutated('Ticker'), { minLength: 1, maxLength: 6 }), async (bad) => {
      // As the unit handles a batch: triage (refused ones are dead-lettered, other categories
      // ignored), conflate, one upsert, which must not fail: a failure there is the whole batch's.
      const good: Ticker = { ...SAMPLES.Ticker, category: 'linear', symbol: `FZ${randomBytes(4).toString('hex').toUpperCase()}USDT`, bid1Price: '10', ask1Price: '11', lastPrice: '10.5', ts: T0 + 1000 };
      const batch = [...(bad as unknown as Ticker[]), good];
      const verdicts = batch.map(triage);
      for (const v of verdicts) if (v.kind === 'refuse') assert.match(v.code, /^[a-z_]+$/, 'machine-readable reason');
      await upsertTickers(pool, [...conflate(batch.filter((_, i) => verdicts[i]!.kind === 'keep')).values()]);
      const last = await pool.maybeOneFirst(sql.type(z.object({ last: z.string().nullable() }))`SELECT last::text FROM tickers WHERE category = 'linear' AND symbol = ${good.symbol}`);
      assert.equal(last, '10.5', 'the valid ticker is stored');
    }),
    { numRuns: runs(40), seed: 302 },
  );
});
