// Table-driven tests of the order state machine (pipelines/order-state.ts): the transition table
// against an independent list of the allowed moves, a sample of forbidden ones, and applyFact
// agreeing with the table for every (from, exchange status) pair.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyFact, BYBIT_STATUSES, ORDER_STATUSES, orderFromUpdate, ruleOf, slippageBps, TERMINAL_STATUSES, TRANSITIONS, type OrderStatus, type TrackedOrder } from '../../pipelines/order-state.ts';
import type { ExchangeOrderUpdate } from '../../schemas/types.ts';

// The lifecycle written out move by move (not derived from the grid in the code).
const ALLOWED: Array<[OrderStatus, OrderStatus[]]> = [
  ['Intent', ['Submitted', 'Unknown', 'New', 'PartiallyFilled', 'Untriggered', 'Triggered', 'Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Rejected', 'Deactivated']],
  ['Submitted', ['New', 'PartiallyFilled', 'Untriggered', 'Triggered', 'PendingAmend', 'PendingCancel', 'Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Rejected', 'Deactivated']],
  ['Unknown', ['Submitted', 'New', 'PartiallyFilled', 'Untriggered', 'Triggered', 'PendingAmend', 'PendingCancel', 'Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Rejected', 'Deactivated']],
  ['New', ['New', 'PartiallyFilled', 'PendingAmend', 'PendingCancel', 'Filled', 'Cancelled', 'PartiallyFilledCanceled']],
  ['PartiallyFilled', ['PartiallyFilled', 'PendingAmend', 'PendingCancel', 'Filled', 'Cancelled', 'PartiallyFilledCanceled']],
  ['Untriggered', ['New', 'PartiallyFilled', 'Untriggered', 'Triggered', 'PendingAmend', 'PendingCancel', 'Filled', 'Cancelled', 'Rejected', 'Deactivated']],
  ['Triggered', ['New', 'PartiallyFilled', 'PendingAmend', 'PendingCancel', 'Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Rejected', 'Deactivated']],
  ['PendingAmend', ['New', 'PartiallyFilled', 'Untriggered', 'Triggered', 'PendingCancel', 'Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Deactivated']],
  ['PendingCancel', ['New', 'PartiallyFilled', 'Untriggered', 'Triggered', 'Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Deactivated']],
  ['Filled', []],
  ['Cancelled', []],
  ['PartiallyFilledCanceled', []],
  ['Rejected', []],
  ['Deactivated', []],
];

test('the table has a rule for every (from, to) pair of the 14 statuses', () => {
  assert.equal(ORDER_STATUSES.length, 14);
  for (const from of ORDER_STATUSES) {
    assert.deepEqual(Object.keys(TRANSITIONS[from]).sort(), [...ORDER_STATUSES].sort(), `row ${from}`);
    for (const to of ORDER_STATUSES) assert.ok(['apply', 'ignore', 'invalid'].includes(ruleOf(from, to)), `${from} → ${to}`);
  }
});

for (const [from, tos] of ALLOWED) {
  test(`allowed moves from ${from}`, () => {
    const applied = ORDER_STATUSES.filter((to) => ruleOf(from, to) === 'apply');
    assert.deepEqual(applied, ORDER_STATUSES.filter((s) => tos.includes(s)));
  });
}

const FORBIDDEN: Array<[OrderStatus, OrderStatus]> = [
  ['Filled', 'New'],
  ['Filled', 'PartiallyFilled'],
  ['Filled', 'Cancelled'],
  ['Cancelled', 'New'],
  ['Cancelled', 'Filled'],
  ['Rejected', 'New'],
  ['Rejected', 'Filled'],
  ['Deactivated', 'Triggered'],
  ['PartiallyFilledCanceled', 'PartiallyFilled'],
  ['PartiallyFilled', 'New'],
  ['New', 'Untriggered'],
  ['New', 'Rejected'],
  ['Intent', 'PendingCancel'],
  ['Intent', 'PendingAmend'],
  ['PendingCancel', 'PendingAmend'],
  ['New', 'Intent'],
];
for (const [from, to] of FORBIDDEN) {
  test(`forbidden: ${from} → ${to}`, () => assert.equal(ruleOf(from, to), 'invalid'));
}

test('a terminal status is never left: its row allows nothing; late submissions and amend/cancel requests are ignored', () => {
  for (const from of TERMINAL_STATUSES) {
    for (const to of ORDER_STATUSES) {
      const r = ruleOf(from, to);
      assert.notEqual(r, 'apply', `${from} → ${to}`);
      if (to === 'Submitted' || to === 'Unknown' || to === 'PendingAmend' || to === 'PendingCancel' || to === from) assert.equal(r, 'ignore', `${from} → ${to}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// applyFact agrees with the table for every order update

const T0 = 1_760_000_000_000;

function update(status: string, over: Partial<ExchangeOrderUpdate> = {}): ExchangeOrderUpdate {
  const filled = status === 'Filled' ? '1' : status === 'PartiallyFilled' || status === 'PartiallyFilledCanceled' ? '0.4' : '0';
  return {
    orderId: 'oid-1', orderLinkId: 'om-test', symbol: 'ETHUSDT', category: 'linear', side: 'Buy', orderType: 'Limit', price: '3000', qty: '1',
    marketUnit: null, timeInForce: 'GTC', orderStatus: status, cumExecQty: filled, cumExecValue: String(Number(filled) * 3000), cumExecFee: String(Number(filled) * 1.8),
    avgPrice: filled === '0' ? '' : '3000', leavesQty: status === 'Filled' ? '0' : String(1 - Number(filled)), rejectReason: 'EC_NoError', cancelType: null, reduceOnly: false,
    createdTime: T0, updatedTime: T0 + 1000, source: 'ws', streamMessageId: null, creationTime: null, observedAt: T0 + 1010,
    ...over,
  };
}

function orderIn(status: OrderStatus): TrackedOrder {
  const o = orderFromUpdate(update('New', { updatedTime: T0 }), false);
  return { ...o, rowId: 1, status, lastUpdateMs: T0, pending: status === 'PendingAmend' || status === 'PendingCancel' ? { action: status === 'PendingAmend' ? 'amend' : 'cancel', intentId: 'i-1', since: T0 } : null };
}

for (const from of ORDER_STATUSES) {
  test(`applyFact from ${from}: every Bybit status follows the table`, () => {
    for (const to of BYBIT_STATUSES) {
      const r = applyFact(orderIn(from), { kind: 'order', u: update(to) });
      const rule = ruleOf(from, to);
      if (rule === 'invalid') {
        assert.ok(r.invalid, `${from} → ${to} must be an InvalidStateTransition`);
        assert.equal(r.changes.length, 0);
        assert.equal(r.order.status, from, 'never applied');
      } else if (rule === 'apply' && from !== to) {
        assert.equal(r.invalid, null, `${from} → ${to}`);
        assert.equal(r.order.status, to, `${from} → ${to}`);
        assert.equal(r.changes.length, 1, `${from} → ${to} emits one change`);
        assert.equal(r.changes[0]!.from, from);
        assert.equal(r.changes[0]!.to, to);
      } else {
        assert.equal(r.invalid, null);
        assert.equal(r.order.status, from);
      }
    }
  });
}

test('a final update carries the final terms: an amend whose push was lost is taken with the cancel, without an amend event', () => {
  // Found by the chaos run (ws-gateway path): a resting limit order amended from 1 to 1.2 whose
  // amended push was lost, then cancelled, kept qty 1 in PostgreSQL for good.
  const o = orderIn('New');
  const r = applyFact(o, { kind: 'order', u: update('Cancelled', { qty: '1.2', price: '2990', cancelType: 'CancelByUser' }) });
  assert.equal(r.invalid, null);
  assert.deepEqual([r.order.status, r.order.qty, r.order.price], ['Cancelled', '1.2', '2990']);
  assert.deepEqual(r.changes.map((c) => c.eventType), ['order_cancelled']);
  // The same final update again (the reconciler's correction of the stored terms): no event, facts merged.
  const again = applyFact({ ...orderIn('Cancelled'), qty: '1' }, { kind: 'order', u: update('Cancelled', { qty: '1.2', price: '2990' }) });
  assert.deepEqual([again.order.qty, again.changes.length, again.dirty], ['1.2', 0, true]);
});

test('an invalid transition is a result, not an exception, and leaves the order untouched', () => {
  const o = orderIn('Filled');
  const r = applyFact(o, { kind: 'order', u: update('New', { updatedTime: T0 + 5000 }) });
  assert.equal(r.invalid?.from, 'Filled');
  assert.equal(r.invalid?.to, 'New');
  assert.equal(r.order, o);
});

test('an unknown Bybit status is an InvalidStateTransition', () => {
  const r = applyFact(orderIn('New'), { kind: 'order', u: update('Exploded') });
  assert.equal(r.invalid?.to, 'Exploded');
  assert.match(r.invalid!.reason, /unknown Bybit orderStatus/);
});

test('slippage sign: positive = worse for us', () => {
  assert.equal(slippageBps('Buy', '3003', 3000), 10);
  assert.equal(slippageBps('Buy', '2997', 3000), -10);
  assert.equal(slippageBps('Sell', '2997', 3000), 10);
  assert.equal(slippageBps('Sell', '3003', 3000), -10);
  assert.equal(slippageBps('Buy', null, 3000), null);
  assert.equal(slippageBps('Buy', '3000', null), null);
});

test('docs/orders.md shows the same transition table', async () => {
  const { readFile } = await import('node:fs/promises');
  const md = await readFile(new URL('../../docs/orders.md', import.meta.url), 'utf8');
  const code: Record<string, string> = { A: 'apply', i: 'ignore', '·': 'invalid' };
  let rows = 0;
  for (const line of md.split('\n')) {
    const m = /^\| \*\*(\w+)\*\* \|(.*)\|$/.exec(line);
    if (!m) continue;
    const from = m[1] as OrderStatus;
    const cells = m[2]!.split('|').map((c) => c.trim().replace(/[¹²]/g, ''));
    assert.deepEqual(cells.map((c) => code[c]), ORDER_STATUSES.map((to) => ruleOf(from, to)), `docs row ${from}`);
    rows++;
  }
  assert.equal(rows, ORDER_STATUSES.length);
});
