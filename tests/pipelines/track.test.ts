// The tracking stage's pure `process` on scripted sequences (no Kafka, no PostgreSQL): the state is
// built by hand as `load` would build it. Partial fills, duplicates, every permutation of a fill
// sequence (fast-check), a REST snapshot older than a websocket fill, fills before the submission,
// a second Filled, external orders.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { ManualClock } from '../../runtime/clock.ts';
import type { StageRecord } from '../../pipelines/runner.ts';
import { orderFromUpdate, type TrackedOrder } from '../../pipelines/order-state.ts';
import { createTrackStage, parseConfig, TRACK_METRICS } from '../../pipelines/track.ts';
import { emptyState, putOrder, type TrackInput, type TrackState } from '../../pipelines/track-state.ts';
import type { ExchangeOrderUpdate, Execution, OrderEvent, OrderSubmission } from '../../schemas/types.ts';

const P = 't.';
const T0 = 1_760_000_000_000;
const LINK = 'om-0000000000000000000000abc';
const SIGNAL_ID = '7d0b8b9e-4a8e-4a51-9a55-1f0c3f4f2d11';

const registry = new Registry();
const stage = createTrackStage({ config: parseConfig({ TOPIC_PREFIX: P }), registry });
const clock = new ManualClock(T0 + 60_000);

let offset = 0;
function rec(topic: string, value: TrackInput): StageRecord<TrackInput> {
  return { value, key: 'ETHUSDT', headers: {}, topic: P + topic, partition: 0, offset: String(offset++), timestamp: T0, traceId: null };
}

/** The Intent row the risk stage inserted, as load reads it. */
function intentOrder(over: Partial<TrackedOrder> = {}): TrackedOrder {
  const base = orderFromUpdate(upd('New'), false);
  return {
    ...base,
    rowId: 1,
    orderId: null,
    status: 'Intent',
    qty: '1',
    price: '3000',
    context: { signal_id: SIGNAL_ID, strategy_id: 'strat-1', model_version: 'v7', is_warmup: false, confidence: 0.8, trace_id: 'trace-1', snapshot_price: 2990, signal_timestamp: T0 - 500 },
    ...over,
  };
}

function stateWith(...orders: TrackedOrder[]): TrackState {
  const st = emptyState();
  for (const o of orders) putOrder(st, o);
  return st;
}

function submission(over: Partial<OrderSubmission> = {}): OrderSubmission {
  return {
    intent_id: 'intent-1', order_link_id: LINK, action: 'create', outcome: 'accepted', order_id: 'oid-1', ret_code: 0, ret_msg: 'OK', reason_code: null, attempts: 1,
    sent_at: T0, acked_at: T0 + 40, category: 'linear', symbol: 'ETHUSDT', side: 'Buy', order_type: 'Limit', qty: '1', price: '3000', market_unit: null,
    signal: { signal_id: SIGNAL_ID, signal_type: 'buy', asset: 'ETHUSDT', amount: 3000, confidence: 0.8, strategy_id: 'strat-1', model_version: 'v7', is_warmup: false, trace_id: 'trace-1', signal_timestamp: T0 - 500, snapshot_price: 2990 },
    ...over,
  };
}

function upd(status: string, over: Partial<ExchangeOrderUpdate> = {}): ExchangeOrderUpdate {
  return {
    orderId: 'oid-1', orderLinkId: LINK, symbol: 'ETHUSDT', category: 'linear', side: 'Buy', orderType: 'Limit', price: '3000', qty: '1', marketUnit: null, timeInForce: 'GTC',
    orderStatus: status, cumExecQty: '0', cumExecValue: '0', cumExecFee: '0', avgPrice: '', leavesQty: '1', rejectReason: 'EC_NoError', cancelType: null, reduceOnly: false,
    createdTime: T0 + 50, updatedTime: T0 + 50, source: 'ws', streamMessageId: null, creationTime: null, observedAt: T0 + 60,
    ...over,
  };
}

function exec(id: string, qty: string, price: string, fee: string, at: number, over: Partial<Execution> = {}): Execution {
  return {
    execId: id, orderId: 'oid-1', orderLinkId: LINK, symbol: 'ETHUSDT', category: 'linear', side: 'Buy', orderType: 'Limit', execType: 'Trade', execPrice: price, execQty: qty,
    execValue: null, execFee: fee, feeCurrency: 'USDT', feeRate: '0.0006', isMaker: true, leavesQty: null, execTime: at, source: 'ws', observedAt: at + 5, stopOrderType: null,
    ...over,
  };
}

function run(state: TrackState, recs: StageRecord<TrackInput>[]): OrderEvent[] {
  const out: OrderEvent[] = [];
  for (const r of recs) {
    const res = stage.process(r, { state, clock });
    assert.equal(res.kind, 'ok', JSON.stringify(res));
    for (const o of res.outputs ?? []) {
      assert.equal(o.topic, `${P}orders.events`);
      assert.equal(o.key, 'ETHUSDT');
      out.push(o.value as OrderEvent);
    }
  }
  return out;
}

const orderOf = (st: TrackState, link = LINK) => st.orders[st.byLink.get(link)!]!;

// The canonical fill script: 0.4 @ 3000 then 0.6 @ 3005.
const script = () => [
  rec('orders.submissions', submission()),
  rec('exchange.orders', upd('New', { updatedTime: T0 + 50 })),
  rec('exchange.executions', exec('e1', '0.4', '3000', '0.72', T0 + 100)),
  rec('exchange.orders', upd('PartiallyFilled', { updatedTime: T0 + 100, cumExecQty: '0.4', cumExecValue: '1200', cumExecFee: '0.72', avgPrice: '3000', leavesQty: '0.6' })),
  rec('exchange.executions', exec('e2', '0.6', '3005', '1.0818', T0 + 200)),
  rec('exchange.orders', upd('Filled', { updatedTime: T0 + 200, cumExecQty: '1', cumExecValue: '3003', cumExecFee: '1.8018', avgPrice: '3003', leavesQty: '0' })),
];

test('partial fills: events in order with cumulative quantities, fees, slippage, latencies and the signal context', () => {
  const st = stateWith(intentOrder());
  const ev = run(st, script());
  assert.deepEqual(ev.map((e) => e.event_type), ['order_submitted', 'order_acknowledged', 'order_partially_filled', 'order_filled']);
  assert.deepEqual(ev.map((e) => e.sequence), [1, 2, 3, 4]);
  assert.deepEqual(ev.map((e) => e.previous_status), ['Intent', 'Submitted', 'New', 'PartiallyFilled']);
  assert.deepEqual(ev.map((e) => e.filled_qty), ['0', '0', '0.4', '1']);
  assert.deepEqual(ev.map((e) => e.fees), ['0', '0', '0.72', '1.8018']);
  const [sub, , pf, filled] = ev;
  assert.equal(pf!.last_exec_id, 'e1');
  assert.equal(pf!.remaining_qty, '0.6');
  assert.equal(pf!.avg_fill_price, '3000');
  assert.equal(filled!.avg_fill_price, '3003');
  assert.equal(filled!.remaining_qty, '0');
  // avg 3003 vs snapshot 2990 on a buy: paid more = positive (worse).
  assert.ok(Math.abs(filled!.slippage_bps! - ((3003 - 2990) / 2990) * 10_000) < 1e-6);
  assert.equal(sub!.slippage_bps, null);
  assert.deepEqual(filled!.latencies, { signal_to_submitted_ms: 500, submitted_to_ack_ms: 40, submitted_to_first_fill_ms: 100, to_final_ms: 200 });
  for (const e of ev) {
    assert.equal(e.signal_id, SIGNAL_ID);
    assert.equal(e.strategy_id, 'strat-1');
    assert.equal(e.model_version, 'v7');
    assert.equal(e.is_warmup, false);
    assert.equal(e.confidence, 0.8);
    assert.equal(e.trace_id, 'trace-1');
    assert.equal(e.order_link_id, LINK);
    assert.equal(e.external, false);
  }
  assert.equal(new Set(ev.map((e) => e.event_id)).size, 4);
  const o = orderOf(st);
  assert.equal(o.status, 'Filled');
  assert.deepEqual(o.cum, { qty: '1', value: '3003', fee: '1.8018' });
  assert.equal(st.newExecs.length, 2);
});

test('duplicates: the same execution and the same update twice change nothing and emit nothing', () => {
  const st = stateWith(intentOrder());
  const s = script();
  const ev = run(st, [s[0]!, s[1]!, s[2]!, s[2]!, s[3]!, s[3]!, s[1]!, s[4]!, s[4]!, s[5]!, s[5]!]);
  assert.deepEqual(ev.map((e) => e.event_type), ['order_submitted', 'order_acknowledged', 'order_partially_filled', 'order_filled']);
  assert.equal(orderOf(st).cum.qty, '1');
  assert.equal(orderOf(st).execs.qty, '1', 'each execId counted once');
  assert.equal(st.newExecs.length, 2);
  assert.equal(st.invalids.length, 0);
});

test('reordering: every permutation of the fill script (with duplicates) ends in the same state, with one Filled event and no invalid transition', () => {
  const s = script();
  const msgs = [...s, s[2]!, s[5]!];
  fc.assert(
    fc.property(fc.shuffledSubarray(msgs, { minLength: msgs.length, maxLength: msgs.length }), (perm) => {
      const st = stateWith(intentOrder());
      const ev = run(st, perm);
      const o = orderOf(st);
      assert.equal(o.status, 'Filled');
      assert.deepEqual(o.cum, { qty: '1', value: '3003', fee: '1.8018' });
      assert.equal(o.execs.qty, '1');
      assert.equal(o.submittedAt, T0);
      assert.equal(o.firstFillAt, T0 + 100);
      assert.equal(ev.filter((e) => e.event_type === 'order_filled').length, 1);
      assert.equal(st.invalids.length, 0);
      // cumulative quantities never go down along the emitted events
      const q = ev.map((e) => Number(e.filled_qty));
      assert.deepEqual(q, [...q].sort((a, b) => a - b));
      assert.deepEqual(ev.map((e) => e.sequence), ev.map((_, i) => i + 1));
    }),
    { numRuns: 300 },
  );
});

async function staleCount(): Promise<number> {
  const m = registry.getSingleMetric(TRACK_METRICS.ignoredFacts);
  const v = (await m!.get()).values.find((x) => x.labels.reason === 'stale');
  return v?.value ?? 0;
}

test('a REST snapshot older than a websocket fill never undoes the fill', async () => {
  const st = stateWith(intentOrder());
  run(st, script());
  const before = await staleCount();
  const ev = run(st, [
    rec('exchange.orders', upd('New', { source: 'rest', updatedTime: T0 + 50 })),
    rec('exchange.orders', upd('PartiallyFilled', { source: 'reconciler', updatedTime: T0 + 100, cumExecQty: '0.4', cumExecValue: '1200', cumExecFee: '0.72' })),
  ]);
  assert.deepEqual(ev, []);
  assert.equal(orderOf(st).status, 'Filled');
  assert.equal(orderOf(st).cum.qty, '1');
  assert.equal(st.invalids.length, 0);
  assert.equal((await staleCount()) - before, 2, 'both counted as stale');
});

test('a partial fill on the websocket beats an older REST snapshot that arrives later (cumExecQty never decreases)', () => {
  const st = stateWith(intentOrder());
  run(st, [rec('exchange.executions', exec('e1', '0.4', '3000', '0.72', T0 + 100))]);
  // The REST answer says New (older, no fills) but carries no updatedTime ordering help: cum decides.
  const ev = run(st, [rec('exchange.orders', upd('New', { source: 'rest', updatedTime: T0 + 150 }))]);
  assert.deepEqual(ev, []);
  assert.equal(orderOf(st).status, 'PartiallyFilled');
  assert.equal(orderOf(st).cum.qty, '0.4');
});

test('fills before the submission: the exchange facts move the order, the late submission adds only its facts', () => {
  const st = stateWith(intentOrder());
  const s = script();
  const ev = run(st, [s[2]!, s[4]!, s[5]!, s[0]!]);
  assert.deepEqual(ev.map((e) => e.event_type), ['order_partially_filled', 'order_filled']);
  assert.equal(ev[0]!.previous_status, 'Intent');
  const o = orderOf(st);
  assert.equal(o.status, 'Filled');
  assert.equal(o.submittedAt, T0, 'submission facts recorded although late');
  assert.equal(o.acknowledgedAt, T0 + 40);
  assert.equal(o.orderId, 'oid-1');
  assert.ok(st.dirty.size > 0);
});

test('fills before the order row exists: executions are kept and the order picks them up when it appears', () => {
  const st = stateWith();
  const ev1 = run(st, [rec('exchange.executions', exec('e1', '0.4', '3000', '0.72', T0 + 100))]);
  assert.deepEqual(ev1, []);
  assert.equal(st.newExecs.length, 1);
  assert.equal(st.orphanExecs.get('oid-1')?.qty, '0.4');
  // Then the order's New update (older than the fill) arrives: the order is ours (link pattern).
  const ev2 = run(st, [rec('exchange.orders', upd('New', { updatedTime: T0 + 50 }))]);
  assert.deepEqual(ev2.map((e) => [e.event_type, e.filled_qty]), [['order_acknowledged', '0'], ['order_partially_filled', '0.4']]);
  const o = orderOf(st);
  assert.equal(o.external, false);
  assert.equal(o.status, 'PartiallyFilled');
  assert.equal(o.rowId, null, 'to be inserted by persist');
});

test('two Filled messages: the second is a no-op without a second event', () => {
  const st = stateWith(intentOrder());
  const filled = upd('Filled', { updatedTime: T0 + 200, cumExecQty: '1', cumExecValue: '3003', cumExecFee: '1.8018', avgPrice: '3003', leavesQty: '0' });
  const ev = run(st, [rec('orders.submissions', submission()), rec('exchange.orders', filled), rec('exchange.orders', { ...filled, source: 'rest', observedAt: T0 + 900 }), rec('exchange.orders', { ...filled, updatedTime: T0 + 300 })]);
  assert.deepEqual(ev.map((e) => e.event_type), ['order_submitted', 'order_filled']);
  assert.equal(orderOf(st).status, 'Filled');
});

test('an order update for an unknown orderLinkId without a local intent is adopted as external', () => {
  const st = stateWith();
  const ev = run(st, [
    rec('exchange.orders', upd('New', { orderId: 'ext-9', orderLinkId: 'manual-order-1', updatedTime: T0 + 10 })),
    rec('exchange.orders', upd('Cancelled', { orderId: 'ext-9', orderLinkId: 'manual-order-1', updatedTime: T0 + 20, cancelType: 'CancelByUser' })),
    rec('exchange.orders', upd('New', { orderId: 'ext-10', orderLinkId: '', updatedTime: T0 + 30 })),
  ]);
  assert.deepEqual(ev.map((e) => [e.event_type, e.status, e.previous_status, e.external]), [
    ['order_adopted', 'New', null, true],
    ['order_cancelled', 'Cancelled', 'New', true],
    ['order_adopted', 'New', null, true],
  ]);
  assert.equal(ev[1]!.reason_code, 'CancelByUser');
  assert.equal(ev[2]!.order_link_id, null);
  assert.equal(ev[2]!.signal_id, null);
  assert.equal(st.orders.length, 2);
});

test('invalid transitions are kept, counted and not applied; processing goes on', () => {
  const st = stateWith(intentOrder());
  run(st, script());
  const ev = run(st, [rec('exchange.orders', upd('New', { updatedTime: T0 + 10_000, cumExecQty: '1' }))]);
  assert.deepEqual(ev, []);
  assert.equal(st.invalids.length, 1);
  assert.equal(st.invalids[0]!.invalid.from, 'Filled');
  assert.equal(st.invalids[0]!.invalid.to, 'New');
  assert.equal(orderOf(st).status, 'Filled');
});

test('cancel: accepted request → PendingCancel, then Cancelled; a refused amend is reported without a status change', () => {
  const st = stateWith(intentOrder());
  const s = script();
  const ev = run(st, [
    s[0]!,
    s[1]!,
    rec('orders.submissions', submission({ intent_id: 'intent-2', action: 'amend', outcome: 'rejected', ret_code: 10001, ret_msg: 'params error', reason_code: 'invalid_request', sent_at: T0 + 70, acked_at: T0 + 80 })),
    rec('orders.submissions', submission({ intent_id: 'intent-3', action: 'cancel', sent_at: T0 + 90, acked_at: T0 + 95 })),
    // an update from before the cancel was sent, delivered late: stale
    rec('exchange.orders', upd('New', { updatedTime: T0 + 85 })),
    rec('exchange.orders', upd('Cancelled', { updatedTime: T0 + 120, cancelType: 'CancelByUser', leavesQty: '0' })),
  ]);
  assert.deepEqual(ev.map((e) => [e.event_type, e.status]), [
    ['order_submitted', 'Submitted'],
    ['order_acknowledged', 'New'],
    ['order_amend_rejected', 'New'],
    ['other', 'PendingCancel'],
    ['order_cancelled', 'Cancelled'],
  ]);
  assert.equal(ev[2]!.reason_code, 'invalid_request');
  assert.equal(ev[3]!.reason_code, 'cancel_pending');
  assert.equal(ev[4]!.latencies.to_final_ms, 120);
});

test('amend: a submission that reaches tracking after the stream showed its terms is late; one whose terms are not shown yet is pending', () => {
  // Found by the two-instance chaos run: placement killed mid-chunk, the chunk replayed, its accepted
  // amend reached tracking after the order stream's amended update; the order went back from New to
  // PendingAmend (an amend_pending after its order_amended) until the reconciler's next pass.
  const late = stateWith(intentOrder());
  const s = script();
  const lateEv = run(late, [
    s[0]!,
    s[1]!,
    rec('exchange.orders', upd('New', { updatedTime: T0 + 75, price: '2990' })),
    rec('orders.submissions', submission({ intent_id: 'intent-2', action: 'amend', qty: null, price: '2990', sent_at: T0 + 70, acked_at: T0 + 80 })),
  ]);
  assert.deepEqual(lateEv.map((e) => [e.event_type, e.status]), [
    ['order_submitted', 'Submitted'],
    ['order_acknowledged', 'New'],
    ['order_amended', 'New'],
  ]);
  assert.deepEqual([orderOf(late).status, orderOf(late).price, orderOf(late).pending], ['New', '2990', null]);
  // The same amend while the stream shows only an update from before it was sent, or one after it
  // with the old terms (a fill racing the amend): the amend is pending until the stream shows it.
  for (const before of [upd('New', { updatedTime: T0 + 65, price: '2990' }), upd('PartiallyFilled', { updatedTime: T0 + 75, cumExecQty: '0.4', cumExecValue: '1200', cumExecFee: '0.72', avgPrice: '3000', leavesQty: '0.6' })]) {
    const st = stateWith(intentOrder());
    const ev = run(st, [s[0]!, rec('exchange.orders', before), rec('orders.submissions', submission({ intent_id: 'intent-2', action: 'amend', qty: null, price: '2990', sent_at: T0 + 70, acked_at: T0 + 80 }))]);
    assert.deepEqual(ev.at(-1) && [ev.at(-1)!.event_type, ev.at(-1)!.status, ev.at(-1)!.reason_code], ['other', 'PendingAmend', 'amend_pending'], `after ${before.orderStatus} at ${before.updatedTime}`);
  }
});

test('amend: a submission that reaches tracking after the stream showed it and then a later amend is late, not a PendingAmend until the next update', () => {
  // Seen in the bench as an amend signal without an order event of its own: an order amended many
  // times a second; amend 2's accepted submission reached tracking after the stream had shown it
  // (2990) and then amend 3 (2980). By the current terms alone it did not look shown, and the order
  // went back to PendingAmend (an amend_pending after both order_amended) until a cancel 2 s later.
  const s = script();
  const amend2 = rec('orders.submissions', submission({ intent_id: 'intent-2', action: 'amend', qty: null, price: '2990', sent_at: T0 + 70, acked_at: T0 + 80 }));
  const amend3 = rec('orders.submissions', submission({ intent_id: 'intent-3', action: 'amend', qty: null, price: '2980', sent_at: T0 + 90, acked_at: T0 + 100 }));
  const shown2 = rec('exchange.orders', upd('New', { updatedTime: T0 + 75, price: '2990' }));
  const shown3 = rec('exchange.orders', upd('New', { updatedTime: T0 + 95, price: '2980' }));
  const st = stateWith(intentOrder());
  const ev = run(st, [s[0]!, s[1]!, shown2, shown3, amend2, amend3]);
  assert.deepEqual(ev.map((e) => [e.event_type, e.status, e.price]), [
    ['order_submitted', 'Submitted', '3000'],
    ['order_acknowledged', 'New', '3000'],
    ['order_amended', 'New', '2990'],
    ['order_amended', 'New', '2980'],
  ]);
  assert.deepEqual([orderOf(st).status, orderOf(st).price, orderOf(st).pending, orderOf(st).termsUpdateMs], ['New', '2980', null, T0 + 95]);
  // The same after a second start: the time of the terms' change is the order's, read back with it.
  const restarted = stateWith({ ...orderOf(st), eventIds: new Set(orderOf(st).eventIds) });
  assert.deepEqual(run(restarted, [amend2]), []);
  assert.equal(orderOf(restarted).status, 'New');
  // An update after amend 2 was sent that changes no term (a fill racing it) does not end it: pending.
  const racing = stateWith(intentOrder());
  const fill = rec('exchange.orders', upd('PartiallyFilled', { updatedTime: T0 + 75, cumExecQty: '0.4', cumExecValue: '1200', cumExecFee: '0.72', avgPrice: '3000', leavesQty: '0.6' }));
  const ev2 = run(racing, [s[0]!, s[1]!, fill, amend2]);
  assert.deepEqual(ev2.at(-1) && [ev2.at(-1)!.event_type, ev2.at(-1)!.status, ev2.at(-1)!.reason_code], ['other', 'PendingAmend', 'amend_pending']);
  // A terms change shown before amend 2 was sent (an earlier amend's) does not end it either.
  const earlier = stateWith(intentOrder());
  const ev3 = run(earlier, [s[0]!, s[1]!, rec('exchange.orders', upd('New', { updatedTime: T0 + 65, price: '2995' })), amend2]);
  assert.deepEqual(ev3.at(-1) && [ev3.at(-1)!.event_type, ev3.at(-1)!.status, ev3.at(-1)!.reason_code], ['other', 'PendingAmend', 'amend_pending']);
});

test('amend: two signals amending to the same terms, the second answered "remains unchanged", each have an event whatever the order the facts arrive in', () => {
  // Seen in the bench as an amend signal without an event: two signals of one chunk both amended an
  // order to 0.9. Bybit applied the first and answered the second "remains unchanged" (placement:
  // accepted, already_applied); the first's update, sent after both amends, reached tracking before
  // their submissions, so both were late against it and the second signal had no event at all.
  const first = rec('orders.submissions', submission({ intent_id: 'intent-2', action: 'amend', qty: '0.9', price: null, sent_at: T0 + 70, acked_at: T0 + 75 }));
  const second = rec('orders.submissions', submission({ intent_id: 'intent-3', action: 'amend', qty: '0.9', price: null, sent_at: T0 + 72, acked_at: T0 + 78, ret_code: 10001, ret_msg: 'The order remains unchanged as the parameters entered match the existing ones.', reason_code: 'already_applied' }));
  const shown = rec('exchange.orders', upd('New', { updatedTime: T0 + 80, qty: '0.9', leavesQty: '0.9' }));
  const s = script();
  for (const order of [[shown, first, second], [first, second, shown], [first, shown, second], [second, shown, first]]) {
    const st = stateWith(intentOrder());
    const ev = run(st, [s[0]!, s[1]!, ...order]).slice(2);
    const label = order.map((r) => (r === shown ? 'update' : r === first ? 'first' : 'second')).join(', ');
    // The second intent has an event of its own (its id names the intent: already applied, or
    // pending until the first's update shows the terms); the first's is the update's order_amended.
    assert.ok(ev.some((e) => e.event_id.endsWith(':intent-3')), `${label}: the second amend has an event of its own: ${JSON.stringify(ev.map((e) => [e.event_type, e.reason_code, e.event_id]))}`);
    assert.ok(ev.some((e) => e.event_type === 'order_amended' && e.reason_code === null), `${label}: the first amend's update is an order_amended`);
    assert.deepEqual([orderOf(st).status, orderOf(st).qty, orderOf(st).pending], ['New', '0.9', null], label);
  }
  // The second's answer reaching tracking after the first's update and a third amend's (0.8) one:
  // the terms it found are gone again, and it still has its already_applied event, not a pending.
  const third = rec('exchange.orders', upd('New', { updatedTime: T0 + 90, qty: '0.8', leavesQty: '0.8' }));
  const later = stateWith(intentOrder());
  const evLater = run(later, [s[0]!, s[1]!, shown, third, first, second]).slice(2);
  assert.deepEqual(evLater.map((e) => [e.event_type, e.qty, e.reason_code]), [['order_amended', '0.9', null], ['order_amended', '0.8', null], ['order_amended', '0.8', 'already_applied']]);
  assert.deepEqual([orderOf(later).status, orderOf(later).pending], ['New', null]);
  // A later attempt answered "remains unchanged" (the first attempt's answer was lost: it applied
  // the terms, and its update reported them) stays late: no second event for the one change.
  const st = stateWith(intentOrder());
  const resent = rec('orders.submissions', submission({ intent_id: 'intent-2', action: 'amend', qty: '0.9', price: null, sent_at: T0 + 70, acked_at: T0 + 95, attempts: 2, ret_code: 10001, ret_msg: 'unchanged', reason_code: 'already_applied' }));
  const ev = run(st, [s[0]!, s[1]!, shown, resent]).slice(2);
  assert.deepEqual(ev.map((e) => [e.event_type, e.reason_code]), [['order_amended', null]]);
});

test('amend: terms that come back to earlier values (0.9, then 1.1, then 0.9 again) are a change of their own: three order_amended events', () => {
  // Seen in the bench as an amend signal without an event: a resting order amended to a quantity,
  // then to another, then back to the first. The event id of an amend was its terms and fill, so
  // the return had the id of the first amend's event and was taken for a repeat: the order row had
  // the terms, the event stream did not (its last order_amended said 1.1 until the next amend).
  const s = script();
  const st = stateWith(intentOrder());
  const to = (qty: string, at: number) => rec('exchange.orders', upd('New', { updatedTime: at, qty, leavesQty: qty }));
  const ev = run(st, [s[0]!, s[1]!, to('0.9', T0 + 70), to('1.1', T0 + 90), to('0.9', T0 + 110)]);
  assert.deepEqual(ev.map((e) => [e.event_type, e.qty, e.occurred_at]), [
    ['order_submitted', '1', T0 + 40],
    ['order_acknowledged', '1', T0 + 50],
    ['order_amended', '0.9', T0 + 70],
    ['order_amended', '1.1', T0 + 90],
    ['order_amended', '0.9', T0 + 110],
  ]);
  assert.equal(new Set(ev.map((e) => e.event_id)).size, ev.length, 'every event its own id');
  // The same amend reported again (the reconciler's snapshot of the same state, same updatedTime,
  // from REST): nothing new.
  assert.deepEqual(run(st, [rec('exchange.orders', upd('New', { updatedTime: T0 + 110, qty: '0.9', leavesQty: '0.9', source: 'rest' }))]), []);
  assert.equal(orderOf(st).qty, '0.9');
});

test('amend: one Bybit answered "remains unchanged" (already applied) for an order that already had its terms is an order_amended at once, not a PendingAmend no update will ever end', () => {
  // Seen in the bench as amend signals without an order event: a second amend with the terms an
  // earlier one had set. Bybit refuses it (10001 "remains unchanged"), placement records it accepted
  // as already applied, and tracking moved the order to PendingAmend: the stream sends nothing for
  // an amend that changed nothing, and the reconciler's snapshot, older than the amend, is stale
  // against it, so the order stayed PendingAmend and the signal had only its amend_pending.
  const unchanged = (sentAt: number) => submission({ intent_id: 'intent-3', action: 'amend', qty: null, price: '2990', sent_at: sentAt, acked_at: sentAt + 5, ret_code: 10001, ret_msg: 'The order remains unchanged as the parameters entered match the existing ones.', reason_code: 'already_applied' });
  const st = stateWith(intentOrder());
  const s = script();
  const ev = run(st, [s[0]!, s[1]!, rec('exchange.orders', upd('New', { updatedTime: T0 + 65, price: '2990' })), rec('orders.submissions', unchanged(T0 + 70))]);
  assert.deepEqual(ev.map((e) => [e.event_type, e.status, e.previous_status, e.reason_code]), [
    ['order_submitted', 'Submitted', 'Intent', null],
    ['order_acknowledged', 'New', 'Submitted', null],
    ['order_amended', 'New', 'New', null],
    ['order_amended', 'New', 'New', 'already_applied'],
  ]);
  assert.deepEqual([orderOf(st).status, orderOf(st).price, orderOf(st).pending], ['New', '2990', null]);
  // The reconciler's snapshot afterwards changes nothing; the same submission again (a replayed
  // chunk) adds no second event.
  assert.deepEqual(run(st, [rec('exchange.orders', upd('New', { updatedTime: T0 + 65, price: '2990' })), rec('orders.submissions', unchanged(T0 + 70))]), []);
  assert.equal(orderOf(st).status, 'New');
  // "Already applied" for terms the order does not show yet (the first attempt's answer was lost and
  // its push has not come): pending, as any accepted amend, until the stream shows the terms.
  const early = stateWith(intentOrder());
  const ev2 = run(early, [s[0]!, s[1]!, rec('orders.submissions', unchanged(T0 + 70))]);
  assert.deepEqual(ev2.at(-1) && [ev2.at(-1)!.event_type, ev2.at(-1)!.status, ev2.at(-1)!.reason_code], ['other', 'PendingAmend', 'amend_pending']);
});

test("amend: with the exchange's clock behind ours, the amend's own update (its updatedTime before our sent_at) confirms it; a snapshot with the old terms from then is stale", () => {
  // The stale rule compares the exchange's updatedTime with our sent_at. With Bybit's clock 30 ms
  // behind ours the amend's own push looked older than the amend and was dropped, and so was every
  // later snapshot of the same moment (the reconciler's): PendingAmend for good.
  const amend = rec('orders.submissions', submission({ intent_id: 'intent-2', action: 'amend', qty: null, price: '2990', sent_at: T0 + 100, acked_at: T0 + 110 }));
  const st = stateWith(intentOrder());
  const s = script();
  const ev = run(st, [s[0]!, s[1]!, amend, rec('exchange.orders', upd('New', { updatedTime: T0 + 80 })), rec('exchange.orders', upd('New', { updatedTime: T0 + 90, price: '2990' }))]);
  assert.deepEqual(ev.map((e) => [e.event_type, e.status, e.price]), [
    ['order_submitted', 'Submitted', '3000'],
    ['order_acknowledged', 'New', '3000'],
    ['other', 'PendingAmend', '3000'],
    ['order_amended', 'New', '2990'],
  ]);
  assert.deepEqual([orderOf(st).status, orderOf(st).price, orderOf(st).pending], ['New', '2990', null]);
});

test('positions and wallet balances keep the newest snapshot of the chunk', () => {
  const st = stateWith();
  const posn = (size: string, at: number) => ({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', size, positionIdx: 0, avgPrice: '3000', positionValue: '3000', markPrice: null, liqPrice: null, leverage: '1', positionIM: null, unrealisedPnl: '0', cumRealisedPnl: '0', positionStatus: 'Normal', updatedTime: at, source: 'ws' as const, observedAt: at });
  const coin = (bal: string) => ({ coin: 'USDT', equity: bal, walletBalance: bal, free: null, locked: '0', availableToWithdraw: null, usdValue: bal, unrealisedPnl: null, cumRealisedPnl: null, totalOrderIM: null, totalPositionIM: null });
  const wallet = (bal: string, at: number) => ({ accountType: 'UNIFIED', totalEquity: null, totalWalletBalance: null, totalAvailableBalance: null, totalMarginBalance: null, coin: [coin(bal)], updatedTime: at, source: 'ws' as const, observedAt: at });
  const ev = run(st, [rec('exchange.positions', posn('2', T0 + 2)), rec('exchange.positions', posn('1', T0 + 1)), rec('exchange.wallet', wallet('900', T0 + 5)), rec('exchange.wallet', wallet('1000', T0 + 4))]);
  assert.deepEqual(ev, []);
  assert.equal(st.positions.get('linear:ETHUSDT')?.size, '2');
  assert.equal(st.balances.get('USDT')?.coin.walletBalance, '900');
});

test('every emitted event is a valid Avro OrderEvent (fills, cancels, rejections, adoption, pending)', async () => {
  const { invalidPaths } = await import('../../schemas/codecs.ts'); // dynamic: codecs load the .avsc files
  const st = stateWith(intentOrder());
  const events = [
    ...run(st, script()),
    ...run(stateWith(intentOrder()), [rec('orders.submissions', submission({ outcome: 'rejected', order_id: null, ret_code: 170131, ret_msg: 'Insufficient balance.', reason_code: 'insufficient_balance' }))]),
    ...run(stateWith(intentOrder()), [rec('orders.submissions', submission({ outcome: 'unknown', acked_at: null, ret_code: -1, ret_msg: 'timeout', reason_code: 'timeout' }))]),
    ...run(stateWith(intentOrder()), [rec('orders.submissions', submission()), rec('orders.submissions', submission({ intent_id: 'c', action: 'cancel' })), rec('exchange.orders', upd('Cancelled', { updatedTime: T0 + 10 }))]),
    ...run(stateWith(), [rec('exchange.orders', upd('Untriggered', { orderLinkId: '', orderId: 'ext-1' }))]),
  ];
  assert.ok(events.length >= 8);
  for (const e of events) assert.deepEqual(invalidPaths('OrderEvent', e), [], `${e.event_type}: ${JSON.stringify(e)}`);
});
