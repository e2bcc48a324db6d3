// Batch order endpoints (create-batch, amend-batch, cancel-batch) through bybit-api's unmodified
// batchSubmitOrders / batchAmendOrders / batchCancelOrders: per-order results in request order,
// one refused order leaving the others alone, 110072 for a duplicate orderLinkId (inside the batch
// and against an existing order), the per-category size limits (10 spot, 20 linear) and the rate
// limit counted in orders, with the part of a batch over the limit failing order by order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Simulator } from '../../sim/server.ts';
import { manualSim, restClient } from './helpers.ts';

function priceBelow(sim: Simulator, category: 'spot' | 'linear', symbol: string, f: number): string {
  const tick = Number(sim.exchange.instruments.get(category, symbol)!.tickSize);
  const d = Math.max(0, -Math.floor(Math.log10(tick)));
  return (Math.floor((sim.exchange.mid(symbol) * f) / tick) * tick).toFixed(d);
}

const linearBuy = (sim: Simulator, symbol: string, qty: string, orderLinkId: string, f = 0.9) =>
  ({ symbol, side: 'Buy' as const, orderType: 'Limit' as const, qty, price: priceBelow(sim, 'linear', symbol, f), timeInForce: 'GTC' as const, orderLinkId });

test('batch create, amend and cancel (linear): one request each, per-order results in request order', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    const orders = [linearBuy(sim, 'BTCUSDT', '0.001', 'b-1'), linearBuy(sim, 'ETHUSDT', '0.01', 'b-2'), linearBuy(sim, 'SOLUSDT', '1', 'b-3')];
    const created = await c.batchSubmitOrders('linear', orders);
    assert.equal(created.retCode, 0, created.retMsg);
    assert.deepEqual(created.retExtInfo.list, orders.map(() => ({ code: 0, msg: 'OK' })));
    assert.deepEqual(created.result.list.map((x) => [x.category, x.symbol, x.orderLinkId]), orders.map((o) => ['linear', o.symbol, o.orderLinkId]));
    for (const x of created.result.list) {
      const o = sim.orders().find((y) => y.orderId === x.orderId)!;
      assert.equal(o.orderLinkId, x.orderLinkId);
      assert.equal(o.orderStatus, 'New');
      assert.equal(x.createAt, String(sim.clock.now()), 'createAt: the creation time, ms, as a string');
    }
    assert.equal(sim.requests.snapshot()['/v5/order/create-batch'], 1);
    assert.equal(sim.requests.snapshot()['/v5/order/create'], undefined, 'no single create was used');

    const amended = await c.batchAmendOrders('linear', [
      { symbol: 'BTCUSDT', orderLinkId: 'b-1', price: priceBelow(sim, 'linear', 'BTCUSDT', 0.8) },
      { symbol: 'ETHUSDT', orderId: created.result.list[1]!.orderId, qty: '0.02' },
      { symbol: 'SOLUSDT', orderLinkId: 'no-such-order', qty: '2' },
    ]);
    assert.equal(amended.retCode, 0, amended.retMsg);
    assert.deepEqual(amended.retExtInfo.list.map((x) => x.code), [0, 0, 110001]);
    assert.deepEqual(amended.result.list.map((x) => x.orderId), [created.result.list[0]!.orderId, created.result.list[1]!.orderId, '']);
    assert.equal(Number(sim.orders().find((o) => o.orderLinkId === 'b-1')!.price), Number(priceBelow(sim, 'linear', 'BTCUSDT', 0.8)));
    assert.equal(sim.orders().find((o) => o.orderLinkId === 'b-2')!.qty, '0.02');

    const cancelled = await c.batchCancelOrders('linear', orders.map((o) => ({ symbol: o.symbol, orderLinkId: o.orderLinkId })));
    assert.deepEqual(cancelled.retExtInfo.list.map((x) => x.code), [0, 0, 0]);
    assert.ok(sim.orders().every((o) => o.orderStatus === 'Cancelled'));
    const again = await c.batchCancelOrders('linear', [{ symbol: 'BTCUSDT', orderLinkId: 'b-1' }]);
    assert.deepEqual(again.retExtInfo.list, [{ code: 110001, msg: 'order not exists or too late to cancel' }], 'the single cancel\'s answer, per order');
    assert.deepEqual(sim.requests.snapshot(), { '/v5/order/amend-batch': 1, '/v5/order/cancel-batch': 2, '/v5/order/create-batch': 1 });
  } finally {
    await sim.close();
  }
});

test('batch create: a refused order leaves the others placed; duplicates inside the batch and against an existing order get 110072', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    assert.equal((await c.submitOrder({ category: 'linear', ...linearBuy(sim, 'BTCUSDT', '0.001', 'exists') })).retCode, 0);
    const r = await c.batchSubmitOrders('linear', [
      linearBuy(sim, 'BTCUSDT', '0.001', 'm-1'),
      { ...linearBuy(sim, 'ETHUSDT', '0.01', 'm-2'), symbol: 'NOPEUSDT' },
      linearBuy(sim, 'ETHUSDT', '0.01', 'm-1'),
      linearBuy(sim, 'SOLUSDT', '1', 'exists'),
      linearBuy(sim, 'SOLUSDT', '1', 'm-5'),
    ]);
    assert.equal(r.retCode, 0, r.retMsg);
    assert.deepEqual(r.retExtInfo.list.map((x) => x.code), [0, 10001, 110072, 110072, 0]);
    assert.equal(r.retExtInfo.list[2]!.msg, 'OrderLinkedID is duplicate');
    assert.deepEqual(r.result.list.map((x) => [x.symbol, x.orderLinkId, x.orderId === '', x.createAt === '']), [
      ['BTCUSDT', 'm-1', false, false],
      ['NOPEUSDT', 'm-2', true, true],
      ['ETHUSDT', 'm-1', true, true],
      ['SOLUSDT', 'exists', true, true],
      ['SOLUSDT', 'm-5', false, false],
    ]);
    assert.deepEqual(sim.orders().map((o) => `${o.symbol}/${o.orderLinkId}`).sort(), ['BTCUSDT/exists', 'BTCUSDT/m-1', 'SOLUSDT/m-5']);
  } finally {
    await sim.close();
  }
});

test('batch size: 10 spot and 20 linear orders per request; one more is refused whole with 10001', async () => {
  const sim = await manualSim({ rateLimits: { multiplier: 10 } });
  try {
    const c = restClient(sim);
    const spot = (n: number, tag: string) =>
      Array.from({ length: n }, (_, k) => ({ symbol: 'BTCUSDT', side: 'Buy' as const, orderType: 'Limit' as const, qty: '0.001', price: priceBelow(sim, 'spot', 'BTCUSDT', 0.9 - k * 0.001), orderLinkId: `${tag}-${k}` }));
    const lin = (n: number, tag: string) => Array.from({ length: n }, (_, k) => linearBuy(sim, 'BTCUSDT', '0.001', `${tag}-${k}`, 0.9 - k * 0.001));

    const tooManySpot = await c.batchSubmitOrders('spot', spot(11, 's11'));
    assert.equal(tooManySpot.retCode, 10001, tooManySpot.retMsg);
    assert.match(tooManySpot.retMsg, /at most 10 orders/);
    const tooManyLinear = await c.batchSubmitOrders('linear', lin(21, 'l21'));
    assert.equal(tooManyLinear.retCode, 10001, tooManyLinear.retMsg);
    assert.match(tooManyLinear.retMsg, /at most 20 orders/);
    assert.equal((await c.batchCancelOrders('spot', Array.from({ length: 11 }, (_, k) => ({ symbol: 'BTCUSDT', orderLinkId: `x-${k}` })))).retCode, 10001);
    assert.equal((await c.batchAmendOrders('linear', Array.from({ length: 21 }, (_, k) => ({ symbol: 'BTCUSDT', orderLinkId: `x-${k}`, qty: '1' })))).retCode, 10001);
    assert.equal((await c.batchSubmitOrders('linear', [])).retCode, 10001, 'an empty batch');
    assert.equal(sim.orders().length, 0, 'nothing of a refused batch is placed');

    const tenSpot = await c.batchSubmitOrders('spot', spot(10, 's10'));
    assert.deepEqual(tenSpot.retExtInfo.list.map((x) => x.code), Array(10).fill(0));
    const twentyLinear = await c.batchSubmitOrders('linear', lin(20, 'l20'));
    assert.deepEqual(twentyLinear.retExtInfo.list.map((x) => x.code), Array(20).fill(0));
    assert.equal(sim.orders().length, 30);
  } finally {
    await sim.close();
  }
});

test('rate limit of batches counts orders: the part of a batch over the limit fails order by order with 10006', async () => {
  // Default limits: create-batch linear 10 orders/s (its own budget, not the single create's).
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    const lin = (n: number, tag: string) => Array.from({ length: n }, (_, k) => linearBuy(sim, 'BTCUSDT', '0.001', `${tag}-${k}`, 0.9 - k * 0.001));
    const first = await c.batchSubmitOrders('linear', lin(8, 'a'));
    assert.deepEqual(first.retExtInfo.list.map((x) => x.code), Array(8).fill(0));
    assert.equal(first.rateLimitApi?.remainingRequests, 2, 'X-Bapi-Limit-Status: orders left in the second');
    assert.equal(first.rateLimitApi?.maxRequests, 10);
    const second = await c.batchSubmitOrders('linear', lin(5, 'b'));
    assert.equal(second.retCode, 0);
    assert.deepEqual(second.retExtInfo.list.map((x) => x.code), [0, 0, 10006, 10006, 10006], 'the page: remaining 5, a batch of 8 → the first 5 succeed, 6-8 fail');
    assert.equal(second.retExtInfo.list[2]!.msg, 'Too many visits!');
    const third = await c.batchSubmitOrders('linear', lin(1, 'c'));
    assert.equal(third.retCode, 10006, 'nothing left: the request is refused whole');
    const single = await c.submitOrder({ category: 'linear', ...linearBuy(sim, 'BTCUSDT', '0.001', 'single') });
    assert.equal(single.retCode, 0, 'the single create has a budget of its own');
    sim.clock.advance(1000);
    const later = await c.batchSubmitOrders('linear', lin(3, 'd'));
    assert.deepEqual(later.retExtInfo.list.map((x) => x.code), [0, 0, 0], 'a second later the budget is back');
    assert.equal(sim.orders().length, 8 + 2 + 1 + 3);
  } finally {
    await sim.close();
  }
});

test('batch create under the rejectOrders fault: accepted, then published as Rejected, order by order', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    sim.faults.set({ rejectOrders: { count: 1, paths: ['/v5/order/create-batch'] } });
    const r = await c.batchSubmitOrders('linear', [linearBuy(sim, 'BTCUSDT', '0.001', 'f-1'), linearBuy(sim, 'ETHUSDT', '0.01', 'f-2')]);
    assert.deepEqual(r.retExtInfo.list.map((x) => x.code), [0, 0]);
    assert.deepEqual(sim.orders().map((o) => [o.orderLinkId, o.orderStatus]), [['f-1', 'Rejected'], ['f-2', 'New']]);
  } finally {
    await sim.close();
  }
});
