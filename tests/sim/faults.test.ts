// Fault injection, switched at run time through the admin endpoint and the embedding API:
// latency, HTTP 5xx, answers lost after the order was created, 10006 storms, accepted-then-
// rejected orders, websocket disconnects and dropped / duplicated / reordered pushes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { manualSim, PRIVATE_TOPICS, restClient, waitFor, WsRecorder } from './helpers.ts';

const market = (orderLinkId: string) => ({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.001', orderLinkId }) as const;

async function admin(sim: { restUrl: string }, method: string, path: string, body?: unknown) {
  const res = await fetch(`${sim.restUrl}${path}`, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as { retCode: number; retMsg: string; result: any } }; // eslint-disable-line @typescript-eslint/no-explicit-any
}

test('admin endpoint switches faults on and off; latency is added', async () => {
  const sim = await manualSim();
  try {
    const on = await admin(sim, 'POST', '/sim/faults', { latencyMs: 150, latencyPaths: ['/v5/market/time'] });
    assert.equal(on.status, 200);
    assert.equal(on.json.result.config.latencyMs, 150);
    const c = restClient(sim);
    let t = performance.now();
    assert.equal((await c.getServerTime()).retCode, 0);
    assert.ok(performance.now() - t >= 140, 'answer delayed');
    const bad = await admin(sim, 'POST', '/sim/faults', { latencyMs: -1 });
    assert.equal(bad.status, 400, 'invalid fault configuration is refused');
    await admin(sim, 'DELETE', '/sim/faults');
    assert.deepEqual((await admin(sim, 'GET', '/sim/faults')).json.result.config, {});
    t = performance.now();
    await c.getServerTime();
    assert.ok(sim.faults.stats.latency === 1);
    const state = await admin(sim, 'GET', '/sim/state');
    assert.equal(state.json.result.accounts[0].uid, '1000001');
  } finally {
    await sim.close();
  }
});

test('HTTP 5xx before processing: nothing is created; after processing: the order exists', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    sim.faults.set({ http5xx: { count: 1, status: 503, paths: ['/v5/order/create'] } });
    await assert.rejects(c.submitOrder(market('e5-1')), (e: { code?: number }) => e.code === 503);
    assert.equal(sim.exchange.allOrders().length, 0);
    assert.equal((await c.submitOrder(market('e5-1'))).retCode, 0, 'the next request goes through');

    sim.faults.set({ http5xx: { count: 1, status: 502, afterProcessing: true } });
    await assert.rejects(c.submitOrder(market('e5-2')), (e: { code?: number }) => e.code === 502);
    assert.ok(sim.orders().some((o) => o.orderLinkId === 'e5-2'), 'executed although the client saw a 502');
  } finally {
    await sim.close();
  }
});

test('answer lost: the order IS created, the client sees a reset or a timeout, the retry is a duplicate', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    await admin(sim, 'POST', '/sim/faults', { loseResponse: { count: 1, mode: 'reset', paths: ['/v5/order/create'] } });
    await assert.rejects(c.submitOrder(market('lost-1')), (e: { code?: string }) => e.code === 'ECONNRESET' || /socket hang up/.test(String(e)));
    const found = await c.getActiveOrders({ category: 'linear', orderLinkId: 'lost-1' });
    assert.equal(found.result.list[0]?.orderStatus, 'Filled', 'the lost order was executed');
    assert.equal((await c.submitOrder(market('lost-1'))).retCode, 110072);

    sim.faults.set({ loseResponse: { count: 1, mode: 'hang', hangMs: 10_000 } });
    const impatient = restClient(sim, {}, { timeout: 300 });
    await assert.rejects(impatient.submitOrder(market('lost-2')), (e: { code?: string }) => e.code === 'ECONNABORTED' || e.code === 'ETIMEDOUT');
    assert.ok(sim.orders().some((o) => o.orderLinkId === 'lost-2'));
    assert.equal(sim.faults.stats.loseResponse, 2);
  } finally {
    await sim.close();
  }
});

test('10006 storm refuses without executing, then clears', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    sim.faults.set({ rateLimitStorm: { count: 3, paths: ['/v5/order/create'] } });
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await c.submitOrder(market(`storm-${i}`))).retCode);
    assert.deepEqual(codes, [10006, 10006, 10006, 0]);
    assert.deepEqual(sim.orders().map((o) => o.orderLinkId), ['storm-3']);
    sim.faults.set({ rateLimitStorm: { untilMs: sim.clock.now() + 500 } });
    assert.equal((await c.getServerTime()).retCode, 10006, 'open-ended storm hits every path');
    sim.advance(500);
    assert.equal((await c.getServerTime()).retCode, 0);
  } finally {
    await sim.close();
  }
});

test('accepted then rejected: retCode 0, then a Rejected order on the stream', async () => {
  const sim = await manualSim();
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(PRIVATE_TOPICS, 'linear');
    const c = restClient(sim);
    sim.faults.set({ rejectOrders: { count: 1 } });
    const r = await c.submitOrder(market('rej-1'));
    assert.equal(r.retCode, 0);
    const ev = await waitFor(() => ws.items('order').find((o) => o.orderLinkId === 'rej-1'), 'rejected order');
    assert.equal(ev.orderStatus, 'Rejected');
    assert.equal(ev.cumExecQty, '0.000');
    assert.equal(ws.items('execution').length, 0);
  } finally {
    ws.close();
    await sim.close();
  }
});

test('websocket disconnect: bybit-api reconnects, re-authenticates, resubscribes and receives again', async () => {
  const sim = await manualSim();
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(PRIVATE_TOPICS, 'linear');
    const closed = await admin(sim, 'POST', '/sim/ws/disconnect', { which: 'private' });
    assert.equal(closed.json.result.closed, 1);
    await waitFor(() => ws.reconnected >= 1, 'reconnected event', 10_000);
    await waitFor(() => sim.wsConnections().some((x) => x.uid && x.subscriptions.includes('order')), 'resubscribed', 10_000);
    assert.ok(ws.authenticated >= 2, 'authenticated again');
    await restClient(sim).submitOrder(market('after-reconnect'));
    await waitFor(() => ws.items('order').find((o) => o.orderLinkId === 'after-reconnect'), 'order event after reconnect');
  } finally {
    ws.close();
    await sim.close();
  }
});

test('websocket pushes dropped, duplicated and reordered on demand', async () => {
  const sim = await manualSim();
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(PRIVATE_TOPICS, 'linear');
    const c = restClient(sim);

    sim.faults.set({ ws: { topics: ['order'], drop: { count: 1 } } });
    const a = await c.submitOrder(market('drop-a'));
    const b = await c.submitOrder(market('drop-b'));
    await waitFor(() => ws.items('execution').find((e) => e.orderId === b.result.orderId), 'execution of b');
    const orderIds = ws.items('order').map((o) => o.orderId);
    assert.ok(!orderIds.includes(a.result.orderId), 'order push of a was dropped');
    assert.ok(orderIds.includes(b.result.orderId));
    assert.ok(ws.items('execution').some((e) => e.orderId === a.result.orderId), 'other topics unaffected');

    sim.faults.set({ ws: { topics: ['execution'], duplicate: { count: 1 } } });
    const d = await c.submitOrder(market('dup-push'));
    await waitFor(() => ws.of('execution').filter((m) => m.data.some((e: { orderId: string }) => e.orderId === d.result.orderId)).length === 2, 'duplicated execution push');
    const [m1, m2] = ws.of('execution').filter((m) => m.data.some((e: { orderId: string }) => e.orderId === d.result.orderId));
    assert.equal(m1!.id, m2!.id, 'same message id twice');

    sim.faults.set({ ws: { topics: ['order'], reorder: { count: 1, holdMs: 10_000 } } });
    const x = await c.submitOrder(market('first'));
    const y = await c.submitOrder(market('second'));
    await waitFor(() => ws.items('order').some((o) => o.orderId === x.result.orderId), 'held message delivered');
    const seq = ws.items('order').map((o) => o.orderId).filter((id) => id === x.result.orderId || id === y.result.orderId);
    assert.deepEqual(seq, [y.result.orderId, x.result.orderId], 'second overtook first');
    assert.deepEqual({ drop: sim.faults.stats.wsDrop, dup: sim.faults.stats.wsDuplicate, reorder: sim.faults.stats.wsReorder }, { drop: 1, dup: 1, reorder: 1 });
  } finally {
    ws.close();
    await sim.close();
  }
});
