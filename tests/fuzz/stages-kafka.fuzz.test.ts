// Bad input for the stages that consume Avro topics (size/risk, placement, tracking), through the
// production runner on the real broker, PostgreSQL and (for placement) the exchange simulator.
// Their bad input is of two kinds: raw garbage bytes on the input topic (not Avro, wrong magic byte,
// unknown schema id, a truncated body: each must be dead-lettered on orders.dlq as `undecodable`),
// and records that fit the schema but are semantically bad (NaN/Infinity/zero/negative/huge
// amounts and quantities, unknown assets, stale and future times, injection strings and NUL in
// text, duplicate ids). Properties: no fatal error, the stage keeps consuming to the end of its
// input, each semantically bad record ends as a refusal with a machine-readable reason (a
// signal_rejected event, a `rejected` submission, or a dead letter), and a valid record behind all
// of them still produces its output.
//
// FUZZ_RUNS scales the amount of garbage.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { consumeToEnd, testLogger, waitCaughtUp as waitCaughtUpPlain } from '../helpers.ts';
import { DLQ_HEADERS } from '../../pipelines/runner.ts';
import { createSizeRiskStage, parseConfig as riskConfig } from '../../pipelines/size-risk.ts';
import { createPlaceStage, parseConfig as placeConfig } from '../../pipelines/place.ts';
import { createTrackStage, parseConfig as trackConfig } from '../../pipelines/track.ts';
import { createBybitRest, parseConfig as restConfig } from '../../connectors/bybit-rest.ts';
import { startSimulator } from '../../sim/server.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import type { DeadLetter, Execution, ExchangeOrderUpdate, OrderEvent, OrderIntent, OrderSubmission, Signal } from '../../schemas/types.ts';
import type { InMessage } from '../../runtime/kafka.ts';
import { fuzzStack, freshTickers, type FuzzStack } from './stack.ts';
import { runs } from './arbitraries.ts';
import { z } from 'zod';
import { sql } from '../../runtime/db.ts';

/** Caught up with the input, or fail at once when the stage reported a fatal error (it stopped). */
async function caughtUp(st: FuzzStack, group: string, topic: string): Promise<void> {
  let done = false;
  const wait = waitCaughtUpPlain(st.kafka, st.prefix + group, st.prefix + topic).finally(() => (done = true));
  while (!done) {
    if (st.fatal.length > 0) assert.fail(`stage ${group} stopped with a fatal error: ${st.fatal[0]!.message}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await wait;
}

/** Bytes that are not a record of the topic's schema. */
const garbage: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((a) => Buffer.from(a)),
  fc.uint8Array({ maxLength: 50 }).map((a) => Buffer.from([1, 0, 0, 0, 1, ...a])), // wrong magic byte
  fc.uint8Array({ maxLength: 50 }).map((a) => Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0, ...a])), // unknown schema id
  fc.constant(Buffer.from([0, 0, 0])), // shorter than the header
  fc.constant(Buffer.from('{"signal_id":"x","amount":1e999}')),
);

async function produce(st: FuzzStack, topic: string, values: Array<{ key: string | null; value: Buffer; headers?: Record<string, string> }>): Promise<void> {
  const p = st.kafka.producer();
  await p.connect();
  await p.send(st.prefix + topic, values.map((v) => ({ key: v.key, value: v.value, headers: v.headers ?? {} })));
  await p.disconnect();
}
const encode = (st: FuzzStack, topic: string, v: unknown) => st.codec.encode(st.prefix + topic, v);
const decodeAll = async <T>(st: FuzzStack, msgs: InMessage[]): Promise<T[]> => Promise.all(msgs.map(async (m) => (await st.codec.decode(m.topic, m.value!)) as T));

/** Dead letters of one input topic; every garbage record is among them as `undecodable`. */
async function checkGarbageDeadLettered(st: FuzzStack, input: string, junk: Buffer[]): Promise<DeadLetter[]> {
  const dead = await consumeToEnd(st.kafka, `${st.prefix}orders.dlq`, 1);
  const env = await decodeAll<DeadLetter>(st, dead);
  const mine = env.filter((e) => e.original_topic === st.prefix + input);
  const undecodable = mine.filter((e) => e.reason_code === 'undecodable').map((e) => Buffer.from(e.original_value!).toString('base64'));
  for (const j of junk) assert.ok(undecodable.includes(j.toString('base64')), `garbage ${j.toString('hex').slice(0, 40)} dead-lettered as undecodable`);
  for (const [i, m] of dead.entries()) assert.equal(m.headers[DLQ_HEADERS.reason], env[i]!.reason_code);
  return mine;
}

function signal(over: Partial<Signal> = {}): Signal {
  const now = Date.now();
  return { ...SAMPLES.Signal, signal_id: randomUUID(), signal_type: 'buy', asset: 'ETHUSDT', amount: 200, confidence: 0.9, timestamp: now - 1000, received_at: now - 900, validated_at: now - 800, strategy_id: `fz-${randomBytes(3).toString('hex')}`, is_warmup: false, market_data_snapshot: { ...SAMPLES.Signal.market_data_snapshot, price: 3000 }, ...over };
}

test('size/risk under the runner: garbage is dead-lettered, semantically bad signals are refused with a reason, a valid signal behind them is sized', async () => {
  const st = await fuzzStack('fz-risk');
  try {
    await freshTickers(st.db);
    const junk = fc.sample(garbage, { numRuns: runs(20), seed: 401 });
    // Signals that fit the Avro schema (a producer other than validation could write them). Those
    // the database could not store (amount <= 0, confidence outside [0, 1] or NaN, NUL in text, a
    // signal_id that is not a UUID, times outside the Date range) used to stop the stage with a
    // fatal error in load/persist; size-risk now dead-letters them as invalid_record.
    const bad: Signal[] = [
      ...[NaN, Infinity, -Infinity, 5e-324, -5, 0, -0].map((amount) => signal({ amount })),
      ...[NaN, -1, 2, Infinity].map((confidence) => signal({ confidence })),
      signal({ asset: 'NOPEUSDT' }),
      signal({ asset: "ETHUSDT'; DROP TABLE orders; --" }),
      signal({ asset: '__proto__' }),
      signal({ asset: 'ETH\u0000' }),
      signal({ signal_id: 'not-a-uuid' }),
      signal({ strategy_id: 'a\u0000' }),
      signal({ model_version: '\u0000' }),
      signal({ timestamp: 9e15 }),
      signal({ received_at: 9e15 }),
      signal({ strategy_id: 'a\nlevel=fatal msg="forged"', amount: 1e-9 }),
      signal({ metadata: 'not json {' , amount: 1e-9 }),
      // A lone surrogate becomes U+FFFD in the Avro round trip (storable): refused here for its amount.
      signal({ strategy_id: '\ud800', amount: 1e-9 }),
    ];
    // (A signal_type other than buy/sell cannot be written: the Avro enum refuses it at encode; the
    // stage's own guard for it is in tests/pipelines/size-risk-db.test.ts.)
    // A nonsense snapshot price is informational while a fresh ticker exists: sized from the ticker,
    // so these only must not stop the stage.
    const odd = [NaN, -3000, 0].map((price) => signal({ market_data_snapshot: { ...SAMPLES.Signal.market_data_snapshot, price } }));
    // The same signal twice in a row (one chunk): decided once, recorded once, no second order.
    const twice = signal({ amount: 120 });
    const valid = signal({ amount: 150 });
    const rows = [...junk.map((value) => ({ key: 'ETHUSDT', value }))];
    for (const s of [...bad, ...odd, twice, twice, valid]) rows.push({ key: s.asset, value: await encode(st, 'signals.valid', s) });
    // everything on one partition, so the valid signal really is behind the rest
    await produce(st, 'signals.valid', rows);
    await st.run(createSizeRiskStage({ config: riskConfig({ TOPIC_PREFIX: st.prefix, RISK_MAX_ORDER_NOTIONAL: '100000', RISK_MAX_POSITION_NOTIONAL: '1000000', RISK_MAX_OPEN_ORDERS_PER_ASSET: '10' }), db: st.db, logger: testLogger }));
    await caughtUp(st, 'size-risk', 'signals.valid');

    const dead = await checkGarbageDeadLettered(st, 'signals.valid', junk);
    const intents = await decodeAll<OrderIntent>(st, await consumeToEnd(st.kafka, `${st.prefix}orders.intents`, 3));
    const events = await decodeAll<OrderEvent>(st, await consumeToEnd(st.kafka, `${st.prefix}orders.events`, 3));
    assert.ok(intents.some((i) => i.signal?.signal_id === valid.signal_id && i.action === 'create'), 'the valid signal behind the bad ones is sized');
    for (const s of bad) {
      const ev = events.find((e) => e.signal_id === s.signal_id);
      const dl = dead.find((d) => d.signal_id === s.signal_id || (d.reason_code !== 'undecodable' && Buffer.from(d.original_value!).equals(Buffer.from(rows[junk.length + bad.indexOf(s)]!.value))));
      assert.ok(ev?.event_type === 'signal_rejected' || dl, `bad signal (amount ${s.amount}, confidence ${s.confidence}, asset ${s.asset}) is refused with a reason`);
      if (ev) assert.match(ev.reason_code!, /^[a-z_]+$/);
      if (dl) assert.match(dl.reason_code, /^[a-z_]+$/);
      assert.ok(!intents.some((i) => i.signal?.signal_id === s.signal_id && i.action === 'create'), `no order for bad signal amount=${s.amount} confidence=${s.confidence} asset=${s.asset}`);
    }
    const twiceCreates = intents.filter((i) => i.signal?.signal_id === twice.signal_id && i.action === 'create');
    assert.ok(twiceCreates.length > 0, 'the repeated signal is sized');
    assert.equal(new Set(twiceCreates.map((i) => `${i.intent_id}|${i.order_link_id}|${i.qty}`)).size, 1, 'the repeated signal is decided once: one create (a replay repeats it verbatim at most)');
    const recorded = await st.db.any(sql.type(z.object({ action: z.string() }))`SELECT action FROM decisions WHERE signal_id = ${twice.signal_id}`);
    assert.deepEqual(recorded.map((r) => r.action), ['create'], 'one decision recorded for the repeated signal');
    assert.deepEqual(st.fatal, []);
  } finally {
    await st.close();
  }
});

test('placement under the runner: garbage is dead-lettered, bad intents get a rejected submission with a reason, a valid intent behind them is placed', async () => {
  const st = await fuzzStack('fz-place');
  const sim = await startSimulator({ port: 0, seed: 7 });
  try {
    const rest = createBybitRest({ config: restConfig({ BYBIT_SIM_PORT: String(sim.port), BYBIT_REST_TIMEOUT_MS: '2000' }), logger: testLogger });
    const junk = fc.sample(garbage, { numRuns: runs(20), seed: 402 });
    const intent = (over: Partial<OrderIntent> = {}): OrderIntent => {
      const sid = randomUUID();
      return { ...SAMPLES.OrderIntent, intent_id: `${sid}:1`, order_link_id: `om-${randomBytes(10).toString('hex')}`, signal: { ...SAMPLES.OrderIntent.signal!, signal_id: sid, strategy_id: `fz-${randomBytes(4).toString('hex')}` }, side: 'Buy', qty: '0.01', price: '2800', expires_at: null, decided_at: Date.now(), ...over };
    };
    // A create with price 0 or negative, or an order_link_id that is not a Bybit orderLinkId
    // (injection text, > 36 chars, NUL), is refused as invalid_intent; persist used to record it
    // anyway and violate the orders table's checks (a fatal error). Now it is left out of `orders`.
    const bad: OrderIntent[] = [
      ...['NaN', '-1', '0', '', 'abc', '1e400', 'Infinity'].map((qty) => intent({ qty })),
      ...['NaN', '0', '-5'].map((price) => intent({ price })),
      intent({ order_link_id: "om-'; DROP TABLE orders; --" }),
      intent({ order_link_id: 'x'.repeat(100) }),
      intent({ order_link_id: 'om-\u0000' }),
      intent({ symbol: 'NOPEUSDT' }),
      intent({ expires_at: 1 }), // long expired
      intent({ action: 'amend', target_order_id: 'no-such-order', qty: null, price: null }),
    ];
    const valid = intent();
    const rows = junk.map((value) => ({ key: 'ETHUSDT', value }));
    for (const i of [...bad, valid]) rows.push({ key: i.symbol, value: await encode(st, 'orders.intents', i) });
    await produce(st, 'orders.intents', rows);
    await st.run(createPlaceStage({ config: placeConfig({ TOPIC_PREFIX: st.prefix, PLACE_RETRIES: '2', PLACE_RETRY_MIN_MS: '20', PLACE_RETRY_MAX_MS: '200', PLACE_COALESCE: 'false' }), rest, db: st.db, logger: testLogger }));
    await caughtUp(st, 'place', 'orders.intents');

    const dead = await checkGarbageDeadLettered(st, 'orders.intents', junk);
    const subs = await decodeAll<OrderSubmission>(st, await consumeToEnd(st.kafka, `${st.prefix}orders.submissions`, 3));
    const v = subs.find((s) => s.intent_id === valid.intent_id);
    assert.ok(v && (v.outcome === 'accepted' || v.outcome === 'already_placed'), `the valid intent behind the bad ones is placed (${v?.outcome})`);
    for (const b of bad) {
      const s = subs.find((x) => x.intent_id === b.intent_id);
      const d = dead.find((x) => x.reason_code !== 'undecodable' && Buffer.from(x.original_value!).equals(rows[junk.length + bad.indexOf(b)]!.value));
      assert.ok((s && s.outcome === 'rejected') || d, `bad intent (qty ${b.qty}, price ${b.price}, link ${JSON.stringify(b.order_link_id)}, symbol ${b.symbol}) refused: ${s?.outcome ?? 'no submission'}`);
      if (s) assert.ok(s.reason_code !== null || s.ret_code !== 0, 'a rejected submission says why');
    }
    assert.ok(!sim.orders().some((o) => bad.some((b) => b.order_link_id === o.orderLinkId)), 'no bad intent reached the exchange as an order');
    // Quantities that overflow a double are refused here, never sent for the exchange to refuse.
    for (const qty of ['1e400', 'Infinity']) {
      const s = subs.find((x) => x.intent_id === bad.find((b) => b.qty === qty)!.intent_id);
      assert.deepEqual([s?.outcome, s?.reason_code, s?.attempts], ['rejected', 'invalid_intent', 0], `qty ${qty}`);
    }
    assert.deepEqual(st.fatal, []);
  } finally {
    await st.close();
    await sim.close();
  }
});

test('tracking under the runner: garbage is dead-lettered, unstorable records are refused, a valid order behind them is tracked', async () => {
  const st = await fuzzStack('fz-track');
  try {
    const junk = fc.sample(garbage, { numRuns: runs(10), seed: 403 });
    const link = `om-${randomBytes(10).toString('hex')}`;
    const oid = `oid-${randomBytes(6).toString('hex')}`;
    const now = Date.now();
    const sub: OrderSubmission = { ...SAMPLES.OrderSubmission, intent_id: randomUUID(), order_link_id: link, order_id: oid, category: 'linear', side: 'Buy', qty: '1', price: '3000', signal: null };
    const upd: ExchangeOrderUpdate = { ...SAMPLES.ExchangeOrderUpdate, orderId: oid, orderLinkId: link, category: 'linear', side: 'Buy', qty: '1', price: '3000', cumExecQty: '0', cumExecValue: '0', cumExecFee: '0', avgPrice: '', leavesQty: '1', orderStatus: 'New', createdTime: now, updatedTime: now };
    const ex = (over: Partial<Execution>): Execution => ({ ...SAMPLES.Execution, execId: randomUUID(), orderId: oid, orderLinkId: link, category: 'linear', side: 'Buy', execTime: now + 10, ...over });
    const badExecs = [ex({ execQty: '1e100000000' }), ex({ execQty: 'abc' }), ex({ execQty: '' }), ex({ execPrice: '-1' }), ex({ orderLinkId: 'om-\u0000' })];
    // These two do not survive the Avro round trip as written (a lone surrogate becomes U+FFFD; avsc
    // takes "constructor" as a valid enum symbol and writes index 0, "ws"): they arrive storable and
    // only must not stop the stage.
    const oddExecs = [ex({ execId: '\ud800' }), ex({ source: 'constructor' as never })];
    const badUpdates = [{ ...upd, orderStatus: 'Filled\u0000' }, { ...upd, orderLinkId: "x'; DROP TABLE orders; --" }, { ...upd, cumExecQty: '1e400' }];
    const good = ex({ execQty: '1', execPrice: '3000', execValue: '3000', execFee: '1.8', leavesQty: '0' });
    const filled = { ...upd, orderStatus: 'Filled', cumExecQty: '1', cumExecValue: '3000', cumExecFee: '1.8', avgPrice: '3000', leavesQty: '0', updatedTime: now + 10 };
    // one partition per topic is enough: the valid records come after the bad ones on theirs
    await produce(st, 'orders.submissions', [...junk.map((value) => ({ key: 'ETHUSDT', value })), { key: 'ETHUSDT', value: await encode(st, 'orders.submissions', sub) }]);
    await produce(st, 'exchange.executions', [...(await Promise.all([...badExecs, ...oddExecs].map(async (e) => ({ key: 'ETHUSDT', value: await encode(st, 'exchange.executions', e) })))), { key: 'ETHUSDT', value: await encode(st, 'exchange.executions', good) }]);
    await produce(st, 'exchange.orders', [...(await Promise.all([upd, ...badUpdates].map(async (u) => ({ key: 'ETHUSDT', value: await encode(st, 'exchange.orders', u) })))), { key: 'ETHUSDT', value: await encode(st, 'exchange.orders', filled) }]);
    await st.run(createTrackStage({ config: trackConfig({ TOPIC_PREFIX: st.prefix }), db: st.db, logger: testLogger }));
    for (const t of ['orders.submissions', 'exchange.orders', 'exchange.executions']) await caughtUp(st, 'track', t);

    await checkGarbageDeadLettered(st, 'orders.submissions', junk);
    const dead = await decodeAll<DeadLetter>(st, await consumeToEnd(st.kafka, `${st.prefix}orders.dlq`, 1));
    const refused = dead.filter((d) => d.reason_code === 'invalid_record');
    assert.equal(refused.length, badExecs.length + badUpdates.length, `every unstorable record is dead-lettered as invalid_record (${refused.map((d) => d.reason_detail).join(" | ")})`);
    const events = await decodeAll<OrderEvent>(st, await consumeToEnd(st.kafka, `${st.prefix}orders.events`, 3));
    assert.ok(events.some((e) => e.order_link_id === link && e.event_type === 'order_filled'), `the valid order is tracked to Filled (${events.map((e) => e.event_type).join(',')})`);
    assert.deepEqual(st.fatal, []);
  } finally {
    await st.close();
  }
});
