// Disconnection protection (DCP): the window set over REST (bybit-api), armed by a private
// websocket subscribing dcp.future / dcp.spot, triggered on the exchange clock once every such
// connection has been gone for the window, reset by one coming back, and silent without a window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RestClientV5 } from 'bybit-api';
import WebSocket from 'ws';
import { hmacHex } from '../../sim/auth.ts';
import type { Simulator } from '../../sim/server.ts';
import { KEY, manualSim, restClient, SECRET, waitFor, WsRecorder } from './helpers.ts';

type Answer = { retCode: number; retMsg: string };
const refused = (r: Answer, what: string) => assert.equal(r.retCode, 10001, `${what}: ${r.retMsg}`);
const setDcp = (c: RestClientV5, p: Record<string, unknown>) => c.setDisconnectCancelAllWindowV2(p as never);

/** A private connection under our control: authenticated, subscribed to `topics`, closed on demand. */
async function rawPrivate(sim: Simulator, topics: string[]): Promise<WebSocket> {
  const ws = new WebSocket(sim.wsUrl);
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  const next = () => new Promise<Record<string, unknown>>((r) => ws.once('message', (m) => r(JSON.parse(String(m)))));
  const expires = Date.now() + 10_000;
  let reply = next();
  ws.send(JSON.stringify({ op: 'auth', args: [KEY, expires, hmacHex(SECRET, `GET/realtime${expires}`)] }));
  assert.equal((await reply).success, true);
  reply = next();
  ws.send(JSON.stringify({ op: 'subscribe', args: topics }));
  assert.equal((await reply).success, true);
  return ws;
}

async function closeAndWait(sim: Simulator, ws: WebSocket): Promise<void> {
  const n = sim.wsConnections().length;
  ws.close();
  await waitFor(() => sim.wsConnections().length < n, 'the simulator to see the connection gone');
}

async function restingOrders(c: RestClientV5, sim: Simulator, tag: string): Promise<{ linear: string; spot: string }> {
  const lin = (Math.floor(sim.exchange.mid('BTCUSDT') * 0.95 * 10) / 10).toFixed(1);
  const spot = (Math.floor(sim.exchange.mid('ETHUSDT') * 0.95 * 100) / 100).toFixed(2);
  assert.equal((await c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.010', price: lin, orderLinkId: `${tag}-lin` })).retCode, 0);
  assert.equal((await c.submitOrder({ category: 'spot', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Limit', qty: '0.1000', price: spot, orderLinkId: `${tag}-spot` })).retCode, 0);
  return { linear: `${tag}-lin`, spot: `${tag}-spot` };
}

async function order(c: RestClientV5, category: 'spot' | 'linear', link: string) {
  return (await c.getActiveOrders({ category, orderLinkId: link })).result.list[0]!;
}

test('set and query the DCP window: OPTIONS by default, 3..300 s, documented products only', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    assert.deepEqual((await c.getDCPInfo()).result.dcpInfos, [], 'nothing set: empty');
    const r = await setDcp(c, { timeWindow: 10 });
    assert.equal(r.retCode, 0, r.retMsg);
    assert.equal(r.retMsg, 'success');
    assert.equal((await setDcp(c, { product: 'DERIVATIVES', timeWindow: 3 })).retCode, 0);
    assert.equal((await setDcp(c, { product: 'SPOT', timeWindow: '300' })).retCode, 0);
    const info = await c.getDCPInfo();
    assert.equal(info.retCode, 0);
    assert.deepEqual(info.result.dcpInfos, [
      { product: 'OPTIONS', dcpStatus: 'ON', timeWindow: '10' },
      { product: 'DERIVATIVES', dcpStatus: 'ON', timeWindow: '3' },
      { product: 'SPOT', dcpStatus: 'ON', timeWindow: '300' },
    ]);
    refused(await setDcp(c, {}), 'timeWindow missing');
    refused(await setDcp(c, { timeWindow: 2 }), 'below 3');
    refused(await setDcp(c, { timeWindow: 301 }), 'above 300');
    refused(await setDcp(c, { timeWindow: 3.5 }), 'not an integer');
    refused(await setDcp(c, { product: 'FUTURES', timeWindow: 10 }), 'unknown product');
    refused(await setDcp(c, { product: 'OPTION', timeWindow: 10 }), 'the doc spells it OPTIONS');
    assert.equal((await restClient(sim, { key: 'nope' }).getDCPInfo()).retCode, 10003, 'private endpoints check the key');
  } finally {
    await sim.close();
  }
});

test('DCP cancels the covered product\'s open orders once every dcp connection has been gone for the window, not before', async () => {
  const sim = await manualSim();
  const watcher = new WsRecorder(sim); // alive throughout, but never subscribes dcp: it does not count
  try {
    const c = restClient(sim);
    assert.equal((await setDcp(c, { product: 'DERIVATIVES', timeWindow: 10 })).retCode, 0);
    await watcher.subscribe(['order'], 'linear', true);
    const a = await rawPrivate(sim, ['dcp.future']);
    const links = await restingOrders(c, sim, 'd1');
    await closeAndWait(sim, a);
    sim.advance(9_999);
    assert.equal((await order(c, 'linear', links.linear)).orderStatus, 'New', 'not before the window');
    sim.advance(1);
    const lin = await order(c, 'linear', links.linear);
    assert.equal(lin.orderStatus, 'Cancelled');
    assert.equal(lin.cancelType, 'CancelByDCP');
    const hist = (await c.getHistoricOrders({ category: 'linear', orderLinkId: links.linear })).result.list[0]!;
    assert.equal(hist.orderStatus, 'Cancelled', 'order/history agrees');
    assert.equal((await order(c, 'spot', links.spot)).orderStatus, 'New', 'DERIVATIVES does not cover spot');
    await waitFor(() => watcher.items('order').some((o) => o.orderLinkId === links.linear && o.cancelType === 'CancelByDCP'), 'the cancellation on a live connection');
    assert.equal((sim.state().dcp as unknown[]).length, 1);
  } finally {
    watcher.close();
    await sim.close();
  }
});

test('a connection subscribing again resets the timing; the protection re-arms with it (bybit-api too)', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    assert.equal((await setDcp(c, { product: 'SPOT', timeWindow: 5 })).retCode, 0);
    const links = await restingOrders(c, sim, 'r1');
    const a1 = await rawPrivate(sim, ['dcp.spot']);
    await closeAndWait(sim, a1);
    sim.advance(4_000);
    const a2 = await rawPrivate(sim, ['dcp.spot']); // back within the window: the timing resets
    sim.advance(4_000);
    assert.equal((await order(c, 'spot', links.spot)).orderStatus, 'New', '8 s after the first loss, but a connection came back');
    await closeAndWait(sim, a2);
    sim.advance(4_999);
    assert.equal((await order(c, 'spot', links.spot)).orderStatus, 'New');
    sim.advance(1);
    assert.equal((await order(c, 'spot', links.spot)).cancelType, 'CancelByDCP', 'the window counts from the last loss');
    assert.equal((await order(c, 'linear', links.linear)).orderStatus, 'New', 'SPOT does not cover linear');

    // After a trigger nothing is armed until a connection subscribes again.
    const more = await restingOrders(c, sim, 'r2');
    sim.advance(60_000);
    assert.equal((await order(c, 'spot', more.spot)).orderStatus, 'New');
    const ws = new WsRecorder(sim);
    await ws.subscribe(['dcp.spot'], 'spot', true);
    ws.close();
    await waitFor(() => sim.wsConnections().length === 0, 'bybit-api closed');
    sim.advance(5_000);
    assert.equal((await order(c, 'spot', more.spot)).cancelType, 'CancelByDCP');
  } finally {
    await sim.close();
  }
});

test('no DCP window set, or no connection that subscribed dcp: nothing is cancelled', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    const links = await restingOrders(c, sim, 'n1');
    const a = await rawPrivate(sim, ['dcp.future', 'dcp.spot', 'order']);
    await closeAndWait(sim, a);
    sim.advance(301_000);
    assert.equal((await order(c, 'linear', links.linear)).orderStatus, 'New', 'no window: no protection');
    assert.equal((await order(c, 'spot', links.spot)).orderStatus, 'New');

    assert.equal((await setDcp(c, { product: 'DERIVATIVES', timeWindow: 3 })).retCode, 0);
    const b = await rawPrivate(sim, ['order']);
    await closeAndWait(sim, b);
    sim.advance(10_000);
    assert.equal((await order(c, 'linear', links.linear)).orderStatus, 'New', 'a connection without the dcp topic does not arm it');
    const d = await rawPrivate(sim, ['dcp.future']);
    const reply = new Promise<Record<string, unknown>>((r) => d.once('message', (m) => r(JSON.parse(String(m)))));
    d.send(JSON.stringify({ op: 'unsubscribe', args: ['dcp.future'] }));
    assert.equal((await reply).success, true);
    await closeAndWait(sim, d);
    sim.advance(10_000);
    assert.equal((await order(c, 'linear', links.linear)).orderStatus, 'New', 'unsubscribed first: a closed connection is not a lost one');
    assert.deepEqual(sim.state().dcp, []);
  } finally {
    await sim.close();
  }
});
