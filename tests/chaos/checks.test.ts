// The chaos run's checks (stack/chaos-checks.ts) fed with crafted facts: each passes on facts of a
// clean run and fails on the fault it exists to catch, so no check of the chaos run is one that
// cannot fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  amendsCancelsAwaiting,
  amountsFor,
  checkActivity,
  checkAmendCancelVisible,
  checkCreatesPlaced,
  checkDecisions,
  checkOneRecordPerId,
  checkOrderEvents,
  checkOrdersAgree,
  checkOrdersPerSignal,
  checkOutcomes,
  floorOf,
  type ExchangeCall,
  type ExchangeOrder,
  type PgEventFacts,
  type PgOrder,
  type SentSignal,
  type SymbolRef,
} from '../../stack/chaos-checks.ts';
import type { OrderEvent } from '../../schemas/types.ts';

const REFS = new Map<string, SymbolRef>([
  ['BTCUSDT', { price: 60000, step: 0.000001 }],
  ['SOLUSDT', { price: 150, step: 0.001 }],
]);

function sentSignals(): SentSignal[] {
  const counters = new Map<string, number>();
  const out: SentSignal[] = [];
  for (let i = 0; i < 12; i++) {
    const asset = i % 2 ? 'BTCUSDT' : 'SOLUSDT';
    const side = i % 3 ? 'buy' : 'sell';
    out.push({ signalId: `s${i}`, asset, side, amount: amountsFor(`${asset}|${side}`, counters) });
  }
  return out;
}

let at = 1_000;
function call(op: ExchangeCall['op'], params: ExchangeCall['params'], ok = true, retCode: number | null = null): ExchangeCall {
  return { op, at: at++, params, ok, retCode, orderId: ok ? `oid-${params.orderLinkId ?? params.orderId}` : null, orderLinkId: ok ? (params.orderLinkId ?? null) : null };
}

/** The executed create a clean order manager sends for a signal: quote-sized market buys, base-sized sells, limits at a price. */
function createFor(s: SentSignal, link: string, limitPrice?: number): ExchangeCall {
  const ref = REFS.get(s.asset)!;
  if (limitPrice) return call('create', { symbol: s.asset, side: s.side === 'buy' ? 'Buy' : 'Sell', orderType: 'Limit', qty: String(Math.floor(s.amount / limitPrice / ref.step) * ref.step), price: String(limitPrice), orderLinkId: link });
  if (s.side === 'buy') return call('create', { symbol: s.asset, side: 'Buy', orderType: 'Market', qty: String(s.amount), marketUnit: 'quoteCoin', orderLinkId: link });
  // sized at the bid, 1 bp under the mid
  const qty = Math.floor(s.amount / (ref.price * 0.9999) / ref.step) * ref.step;
  return call('create', { symbol: s.asset, side: 'Sell', orderType: 'Market', qty: qty.toFixed(6), marketUnit: 'baseCoin', orderLinkId: link });
}

test('amounts are unique per asset and side, spaced wider than twice the tracing tolerance', () => {
  const s = sentSignals();
  for (const k of new Set(s.map((x) => `${x.asset}|${x.side}`))) {
    const a = s.filter((x) => `${x.asset}|${x.side}` === k).map((x) => x.amount);
    assert.equal(new Set(a).size, a.length, k);
  }
  // the widest tolerance: SOL's step at 150 plus 0.1 % of the largest amount of a long run
  const tol = 0.001 * 150 + 0.001 * (20 + 300);
  assert.ok(1 > 2 * tol, `spacing 1 > ${2 * tol}`);
});

test('orders per signal: one executed create per signal passes, whatever the links', () => {
  const s = sentSignals();
  const calls = s.map((x, i) => createFor(x, `om-${i}`));
  const v = checkOrdersPerSignal(s, calls, REFS, new Set());
  assert.equal(v.duplicates + v.losses + v.shortfalls, 0, v.problems.join('\n'));
  assert.equal(v.traced, s.length);
});

test('orders per signal: a second create for one signal under another orderLinkId is a duplicate', () => {
  const s = sentSignals();
  const calls = [...s.map((x, i) => createFor(x, `om-${i}`)), createFor(s[4]!, 'om-other')];
  const v = checkOrdersPerSignal(s, calls, REFS, new Set());
  assert.equal(v.duplicates, 1, v.problems.join('\n'));
  assert.match(v.problems[0]!, /signal s4 executed 2 times/);
});

test('orders per signal: a refused create (110072) is no second execution; an order no signal explains, or for a refused signal, is', () => {
  const s = sentSignals();
  const repeat = { ...createFor(s[1]!, 'om-1'), ok: false, retCode: 110072, orderId: null, orderLinkId: null };
  assert.equal(checkOrdersPerSignal(s, [...s.map((x, i) => createFor(x, `om-${i}`)), repeat], REFS, new Set()).duplicates, 0);
  const stray = call('create', { symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '777', marketUnit: 'quoteCoin', orderLinkId: 'om-stray' });
  const v = checkOrdersPerSignal(s, [...s.map((x, i) => createFor(x, `om-${i}`)), stray], REFS, new Set());
  assert.equal(v.duplicates, 1);
  assert.match(v.problems[0]!, /no signal sent explains it/);
  const w = checkOrdersPerSignal(s, s.map((x, i) => createFor(x, `om-${i}`)), REFS, new Set(['s3']));
  assert.equal(w.duplicates, 1);
  assert.match(w.problems[0]!, /which the order manager refused/);
});

test('orders per signal: an amend executed again after a newer one (a woken zombie) traces to its signal twice', () => {
  const s = sentSignals().filter((x) => x.asset === 'SOLUSDT' && x.side === 'buy');
  const [a, b] = [s[0]!, s[1]!];
  const create = createFor(a, 'om-a', 149);
  const amendOf = (x: SentSignal) => call('amend', { symbol: 'SOLUSDT', qty: String(Math.floor(x.amount / 149 / 0.001) * 0.001), price: '149', orderLinkId: 'om-a' });
  // an amend names only the order: the journal (chaos-facts.ts) fills in its side and type
  const withSide = (c: ExchangeCall) => ({ ...c, params: { ...c.params, side: 'Buy', orderType: 'Limit' } });
  assert.equal(checkOrdersPerSignal(s, [create, withSide(amendOf(b))], REFS, new Set()).duplicates, 0);
  const v = checkOrdersPerSignal(s, [create, withSide(amendOf(b)), withSide(amendOf(a))], REFS, new Set());
  assert.equal(v.duplicates, 1, v.problems.join('\n'));
});

test('amend and cancel decisions must be requested at the exchange (cancels always; amends unless superseded)', () => {
  const intents = [
    { intent_id: 'i1', action: 'cancel', order_link_id: 'om-1', target_order_id: 'oid-1' },
    { intent_id: 'i2', action: 'amend', order_link_id: 'om-2', target_order_id: null },
    { intent_id: 'i3', action: 'amend', order_link_id: 'om-3', target_order_id: null },
    { intent_id: 'i4', action: 'create', order_link_id: 'om-4', target_order_id: null },
  ];
  const calls = [call('cancel', { symbol: 'X', orderId: 'oid-1' }, false, 110001), call('amend', { symbol: 'X', orderLinkId: 'om-2' })];
  const ok = checkAmendCancelVisible(intents, calls, new Set(['i3']), new Map());
  assert.equal(ok.losses, 0, ok.problems.join('\n'));
  assert.deepEqual([ok.amends, ok.cancels, ok.amendsSuperseded], [2, 1, 1]);
  const lost = checkAmendCancelVisible(intents, calls.slice(1), new Set(), new Map());
  assert.equal(lost.losses, 2, lost.problems.join('\n'));
});

test('settle point: an amend or cancel decision neither requested at the exchange nor answered by an order event is still awaited', () => {
  const intents = [
    { intent_id: 'i1', action: 'cancel', order_link_id: 'om-1', target_order_id: 'oid-1' },
    { intent_id: 'i2', action: 'amend', order_link_id: 'om-2', target_order_id: null },
    { intent_id: 'i3', action: 'amend', order_link_id: 'om-3', target_order_id: null },
    { intent_id: 'i4', action: 'create', order_link_id: 'om-4', target_order_id: null },
    { intent_id: 'i5', action: 'cancel', order_link_id: 'om-5', target_order_id: null },
  ];
  // i1 by its orderId (refused there), i2 by its link id, i5 by the orderId the exchange gives its link
  const calls = [call('cancel', { symbol: 'X', orderId: 'oid-1' }, false, 110001), call('amend', { symbol: 'X', orderLinkId: 'om-2' }), call('cancel', { symbol: 'X', orderId: 'oid-5' })];
  const orderIdOf = new Map([['om-5', 'oid-5']]);
  assert.deepEqual(amendsCancelsAwaiting(intents, calls, new Set(), orderIdOf), ['i3']);
  assert.deepEqual(amendsCancelsAwaiting(intents, calls, new Set(['i3']), orderIdOf), [], 'i3 answered (superseded)');
  assert.deepEqual(amendsCancelsAwaiting(intents, calls.slice(1), new Set(['i3']), new Map()), ['i1', 'i5'], 'not yet requested, not answered');
});

const exOrder = (o: Partial<ExchangeOrder> = {}): ExchangeOrder => ({ orderId: 'oid-1', orderLinkId: 'om-1', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', orderStatus: 'Filled', qty: '50', price: '0', cumExecQty: '0.000833', cumExecFee: '0.00000083', avgPrice: '60006', ...o });
const pgOrder = (o: Partial<PgOrder> = {}): PgOrder => ({ order_link_id: 'om-1', order_id: 'oid-1', status: 'Filled', qty: '50.0', cum_exec_qty: '0.000833', cum_exec_fee: '0.00000083', avg_price: '60006.000000000001', ...o });

test('PostgreSQL against the exchange: equal figures and execIds pass; any difference is a loss', () => {
  const execs = new Map([['oid-1', new Set(['e1', 'e2'])]]);
  assert.equal(checkOrdersAgree([pgOrder()], [exOrder()], execs, execs).losses, 0);
  const cases: Array<[string, PgOrder[], ExchangeOrder[], Map<string, Set<string>>]> = [
    ['status', [pgOrder({ status: 'New' })], [exOrder()], execs],
    ['qty', [pgOrder({ qty: '49' })], [exOrder()], execs],
    ['cumExecQty', [pgOrder({ cum_exec_qty: '0.0008' })], [exOrder()], execs],
    ['fees', [pgOrder({ cum_exec_fee: '0.00000183' })], [exOrder()], execs],
    ['avgPrice', [pgOrder({ avg_price: '60007' })], [exOrder()], execs],
    ['executions missing', [pgOrder()], [exOrder()], new Map([['oid-1', new Set(['e1'])]])],
    ['not in PostgreSQL', [], [exOrder()], execs],
    ['which the exchange does not know', [pgOrder(), pgOrder({ order_link_id: 'om-9', order_id: 'oid-9' })], [exOrder()], execs],
  ];
  for (const [what, pg, ex, pgExecs] of cases) {
    const v = checkOrdersAgree(pg, ex, pgExecs, execs);
    assert.equal(v.losses, 1, `${what}: ${v.problems.join('\n')}`);
    assert.ok(v.problems[0]!.includes(what), `${what}: ${v.problems[0]}`);
  }
});

test('creates decided: at the exchange or refused, else lost', () => {
  assert.equal(checkCreatesPlaced(['a', 'b'], new Set(['a']), new Set(['b'])).losses, 0);
  assert.equal(checkCreatesPlaced(['a', 'b', 'c'], new Set(['a']), new Set()).losses, 2);
});

test('outcomes and decisions: every signal one outcome, decided once', () => {
  assert.equal(checkOutcomes(['a', 'b'], new Map([['a', 'create'], ['b', 'rejected']])).losses, 0);
  assert.equal(checkOutcomes(['a', 'b', 'c'], new Map([['a', 'create'], ['b', null]])).losses, 2);
  const d = (signal_id: string, action: string, key: string) => ({ signal_id, action, order_link_id: null, idempotency_key: key });
  assert.equal(checkDecisions([d('a', 'cancel', 'a:0'), d('a', 'create', 'a:1'), d('b', 'reject', 'b:reject')]).duplicates, 0);
  assert.equal(checkDecisions([d('a', 'create', 'a:0'), d('a', 'reject', 'a:reject')]).duplicates, 1);
  assert.equal(checkDecisions([d('a', 'create', 'a:0'), d('a', 'create', 'a:1')]).duplicates, 1);
});

test('one record per id on a topic: byte-identical repeats are counted, different contents are duplicates', () => {
  const r = (id: string, v: string, n: number) => ({ topic: 'signals.valid', id, value: Buffer.from(v), at: `0/${n}` });
  const same = checkOneRecordPerId([r('a', 'x', 1), r('a', 'x', 2), r('b', 'y', 3)]);
  assert.deepEqual([same.duplicates, same.repeats], [0, 1]);
  const diff = checkOneRecordPerId([r('a', 'x', 1), r('a', 'x2', 2)]);
  assert.equal(diff.duplicates, 1);
});

const ev = (o: Partial<OrderEvent>): OrderEvent => ({ event_id: 'e', event_type: 'order_acknowledged', order_link_id: 'om-1', sequence: 1, status: 'New', signal_id: null, ...o }) as OrderEvent;
const pgEvents = (o: Partial<PgEventFacts> = {}): PgEventFacts => ({ emitted: [], history: [], orders: [], rejectedSignals: [], decidedSignals: [], ...o });

test('order events: one id per state change and per refusal; none for a signal that went through; every one on RabbitMQ', () => {
  const a = ev({ event_id: 'om-1:New:0' });
  const b = ev({ event_id: 'om-1:Filled:1', event_type: 'order_filled', status: 'Filled', sequence: 2 });
  const r = ev({ event_id: 'rej-1', event_type: 'signal_rejected', order_link_id: null, sequence: null, status: null, signal_id: 's1', reason_code: 'insufficient_balance' });
  const facts = pgEvents({ emitted: [{ event_id: a.event_id, order_link_id: 'om-1', sequence: 1 }, { event_id: b.event_id, order_link_id: 'om-1', sequence: 2 }], orders: [{ order_link_id: 'om-1', status: 'Filled' }], rejectedSignals: ['s1'], decidedSignals: ['s0'] });
  const clean = checkOrderEvents([a, b, r, a], [a, b, r, b].map((e) => ({ event_id: e.event_id })), facts);
  assert.deepEqual([clean.losses, clean.duplicates, clean.repeats], [0, 0, 2], clean.problems.join('\n'));
  // the same sequence under two ids
  assert.equal(checkOrderEvents([a, b, r, ev({ event_id: 'om-1:New:x' })], null, facts).duplicates, 1);
  // a second refusal of one signal under another id (what the chaos run once found)
  const r2 = { ...r, event_id: 'rej-2', reason_code: 'duplicate_signal' };
  assert.equal(checkOrderEvents([a, b, r, r2], null, facts).duplicates, 1);
  // a refusal of a signal that became an order
  assert.equal(checkOrderEvents([a, b, r, { ...r, event_id: 'rej-3', signal_id: 's0' }], null, facts).duplicates, 1);
  // an event on the queue that is not on the topic; an event of the topic missing from the queue
  assert.equal(checkOrderEvents([a, b, r], [a, b, r, ev({ event_id: 'ghost' })].map((e) => ({ event_id: e.event_id })), facts).duplicates, 1);
  assert.equal(checkOrderEvents([a, b, r], [a, r].map((e) => ({ event_id: e.event_id })), facts).losses, 1);
  // recorded in PostgreSQL but not on the topic; last event not the row's status; refusal without its event
  assert.equal(checkOrderEvents([a, r], null, facts).losses, 2);
  assert.equal(checkOrderEvents([a, b], null, facts).losses, 1);
});

test('activity: a run that placed too few orders, refused too much or skipped a planned fault fails', () => {
  const bounds = { minOrderShare: 0.5, maxRefusedShare: 0.05 };
  const faults = new Map<string, readonly [number, number]>([['kill -9', [2, 2]]]);
  assert.equal(checkActivity({ signals: 100, orders: 60, refused: 3, faults }, bounds).shortfalls, 0);
  assert.equal(floorOf(0, bounds), 1, 'nothing to do is no pass');
  assert.equal(checkActivity({ signals: 0, orders: 0, refused: 0, faults }, bounds).shortfalls, 1);
  assert.equal(checkActivity({ signals: 100, orders: 49, refused: 3, faults }, bounds).shortfalls, 1);
  const refused = checkActivity({ signals: 100, orders: 60, refused: 100, faults }, bounds);
  assert.equal(refused.shortfalls, 1);
  assert.match(refused.problems[0]!, /100 of 100 signals refused/);
  assert.match(checkActivity({ signals: 10, orders: 6, refused: 4, refusedBy: { stale_signal: 3, trading_halted: 1 }, faults }, bounds).problems[0]!, /4 of 10 signals refused .*by reason \{"stale_signal":3,"trading_halted":1\}/);
  const skipped = checkActivity({ signals: 100, orders: 60, refused: 0, faults: new Map([['PostgreSQL restart', [2, 1]]]) }, bounds);
  assert.equal(skipped.shortfalls, 1);
  assert.match(skipped.problems[0]!, /PostgreSQL restart: 2 planned, 1 injected/);
});
