// Fills reach the private stream through bybit-api's WebsocketClient with consistent cumulative
// quantities, fees, positions and wallet changes; public topics tick with the price process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { manualSim, PRIVATE_TOPICS, restClient, waitFor, WsRecorder } from './helpers.ts';
import { markPrice } from '../../sim/mark-price.ts';
import { fix } from '../../sim/num.ts';

const num = (s: unknown) => Number(s);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

test('linear market order: executions, order, position and wallet agree', async () => {
  const sim = await manualSim();
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(PRIVATE_TOPICS, 'linear');
    const c = restClient(sim);
    const before = (await c.getWalletBalance({ accountType: 'UNIFIED', coin: 'USDT' })).result.list[0]!.coin[0]!;
    // 10 BTC is deeper than the best level: the order walks the book.
    const r = await c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '10.000', orderLinkId: 'walk-1' });
    assert.equal(r.retCode, 0, r.retMsg);
    const final = await waitFor(() => ws.items('order').find((o) => o.orderLinkId === 'walk-1' && o.orderStatus === 'Filled'), 'Filled order event');
    await waitFor(() => ws.items('wallet').length > 0 && ws.items('position').length > 0, 'position and wallet events');
    const execs = ws.items('execution').filter((e) => e.orderId === r.result.orderId);
    assert.ok(execs.length > 1, `a 10 BTC market order fills across levels (${execs.length} fills)`);
    const prices = execs.map((e) => num(e.execPrice));
    assert.deepEqual([...prices].sort((a, b) => a - b), prices, 'a buy walks up the asks');
    assert.equal(sum(execs.map((e) => num(e.execQty))).toFixed(3), final.cumExecQty);
    assert.ok(Math.abs(sum(execs.map((e) => num(e.execValue))) - num(final.cumExecValue)) < 1e-6);
    assert.ok(Math.abs(sum(execs.map((e) => num(e.execFee))) - num(final.cumExecFee)) < 1e-6);
    assert.ok(execs.every((e) => e.isMaker === false && e.feeRate === '0.00055' && e.execType === 'Trade'));
    assert.ok(Math.abs(num(final.avgPrice) - num(final.cumExecValue) / 10) < 1e-6);
    assert.ok(num(final.avgPrice) > prices[0]!, 'average is worse than the best level');

    const pos = ws.items('position').at(-1)!;
    assert.equal(pos.size, '10.000');
    assert.equal(pos.side, 'Buy');
    const usdt = ws.items('wallet').at(-1)!.coin.find((x: { coin: string }) => x.coin === 'USDT');
    assert.ok(Math.abs(num(usdt.walletBalance) - (num(before.walletBalance) - num(final.cumExecFee))) < 1e-6, 'opening a position costs only the fee');
    const rest = (await c.getWalletBalance({ accountType: 'UNIFIED', coin: 'USDT' })).result.list[0]!.coin[0]!;
    assert.equal(rest.walletBalance, usdt.walletBalance, 'REST and websocket wallets agree');
    const listed = await c.getExecutionList({ category: 'linear', orderLinkId: 'walk-1' });
    assert.deepEqual(listed.result.list.map((e) => e.execId).sort(), execs.map((e) => e.execId).sort());
  } finally {
    ws.close();
    await sim.close();
  }
});

test('market orders larger than the book: linear Cancelled and spot PartiallyFilledCanceled with partial fills', async () => {
  const sim = await manualSim({ depth: { levels: 5 }, balances: { USDT: 1_000_000, ETH: 100 } });
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(PRIVATE_TOPICS, 'linear');
    const c = restClient(sim);
    const lin = await c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '10.000' });
    const spot = await c.submitOrder({ category: 'spot', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Market', qty: '90.00000', marketUnit: 'baseCoin' });
    assert.equal(lin.retCode, 0);
    assert.equal(spot.retCode, 0);
    const lo = await waitFor(() => ws.items('order').find((o) => o.orderId === lin.result.orderId), 'linear order event');
    const so = await waitFor(() => ws.items('order').find((o) => o.orderId === spot.result.orderId), 'spot order event');
    assert.equal(lo.orderStatus, 'Cancelled');
    assert.ok(num(lo.cumExecQty) > 0 && num(lo.cumExecQty) < 10, lo.cumExecQty);
    assert.equal(so.orderStatus, 'PartiallyFilledCanceled');
    assert.ok(num(so.cumExecQty) > 0 && num(so.cumExecQty) < 90, so.cumExecQty);
    const eth = sim.exchange.account('1000001').coin('ETH');
    assert.ok(Math.abs(eth.wallet - (100 - num(so.cumExecQty))) < 1e-9, 'only the filled part left the wallet');
  } finally {
    ws.close();
    await sim.close();
  }
});

test('resting limit order fills as maker in parts as the price moves through it', async () => {
  const sim = await manualSim();
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(PRIVATE_TOPICS, 'linear');
    const c = restClient(sim);
    sim.setPrice('BTCUSDT', 60000);
    const r = await c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '1.000', price: '59000.0', timeInForce: 'PostOnly', orderLinkId: 'maker-1' });
    assert.equal(r.retCode, 0, r.retMsg);
    await waitFor(() => ws.items('order').find((o) => o.orderLinkId === 'maker-1' && o.orderStatus === 'New'), 'New');
    // Best ask just below 59000: only the first level trades through the order.
    sim.setPrice('BTCUSDT', 58990);
    const partial = await waitFor(() => ws.items('order').find((o) => o.orderLinkId === 'maker-1' && o.orderStatus === 'PartiallyFilled'), 'PartiallyFilled');
    assert.ok(num(partial.cumExecQty) > 0 && num(partial.cumExecQty) < 1);
    assert.equal(num(partial.leavesQty).toFixed(3), (1 - num(partial.cumExecQty)).toFixed(3));
    sim.setPrice('BTCUSDT', 58000);
    const filled = await waitFor(() => ws.items('order').find((o) => o.orderLinkId === 'maker-1' && o.orderStatus === 'Filled'), 'Filled');
    const updates = ws.items('order').filter((o) => o.orderLinkId === 'maker-1');
    const cums = updates.map((o) => num(o.cumExecQty));
    assert.deepEqual([...cums].sort((a, b) => a - b), cums, 'cumulative quantity never decreases');
    const execs = ws.items('execution').filter((e) => e.orderLinkId === 'maker-1');
    assert.ok(execs.every((e) => e.isMaker === true && e.execPrice === '59000.00' && e.feeRate === '0.0002'));
    assert.equal(sum(execs.map((e) => num(e.execQty))).toFixed(3), filled.cumExecQty);
    assert.equal(filled.cumExecQty, '1.000');
    assert.equal(filled.avgPrice, '59000');

    const postOnly = await c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.010', price: '58100.0', timeInForce: 'PostOnly', orderLinkId: 'would-take' });
    assert.equal(postOnly.retCode, 0);
    const cancelled = await waitFor(() => ws.items('order').find((o) => o.orderLinkId === 'would-take'), 'PostOnly cancel');
    assert.equal(cancelled.orderStatus, 'Cancelled');
    assert.equal(cancelled.rejectReason, 'EC_PostOnlyWillTakeLiquidity');
  } finally {
    ws.close();
    await sim.close();
  }
});

test('spot limit buy: funds lock on placement, fills move both coins, fee in base', async () => {
  const sim = await manualSim();
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(PRIVATE_TOPICS, 'spot');
    const c = restClient(sim);
    sim.setPrice('ETHUSDT', 3000);
    const r = await c.submitOrder({ category: 'spot', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Limit', qty: '2.00000', price: '2950.00', orderLinkId: 'eth-bid' });
    assert.equal(r.retCode, 0, r.retMsg);
    const locked = await waitFor(() => ws.items('wallet').map((w) => w.coin.find((x: { coin: string }) => x.coin === 'USDT')).find((u) => u && u.locked === '5900'), 'USDT locked');
    assert.equal(locked.locked, '5900');
    const ioc = await c.submitOrder({ category: 'spot', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Limit', qty: '1.00000', price: '2900.00', timeInForce: 'IOC', orderLinkId: 'eth-ioc' });
    assert.equal(ioc.retCode, 0);
    const iocEv = await waitFor(() => ws.items('order').find((o) => o.orderLinkId === 'eth-ioc'), 'IOC result');
    assert.equal(iocEv.orderStatus, 'Cancelled');
    assert.equal(iocEv.cumExecQty, '0.00000');
    sim.setPrice('ETHUSDT', 2900);
    const filled = await waitFor(() => ws.items('order').find((o) => o.orderLinkId === 'eth-bid' && o.orderStatus === 'Filled'), 'Filled');
    assert.equal(filled.cumExecValue, '5900');
    assert.equal(filled.feeCurrency, 'ETH');
    assert.equal(filled.cumExecFee, '0.002');
    await waitFor(() => ws.items('wallet').some((w) => w.coin.find((x: { coin: string }) => x.coin === 'ETH')?.walletBalance === '11.998'), 'ETH credited net of fee');
    const acc = sim.exchange.account('1000001');
    assert.equal(acc.coin('USDT').locked, 0);
    assert.ok(Math.abs(acc.coin('USDT').wallet - (100000 - 5900)) < 1e-6);
  } finally {
    ws.close();
    await sim.close();
  }
});

test('public topics: tickers, publicTrade and orderbook.1 arrive as the price steps', async () => {
  const sim = await manualSim();
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(['tickers.BTCUSDT', 'publicTrade.BTCUSDT', 'orderbook.1.BTCUSDT'], 'linear');
    await waitFor(() => ws.of('tickers.BTCUSDT').length && ws.of('orderbook.1.BTCUSDT').length, 'initial snapshots');
    sim.tick(3);
    await waitFor(() => ws.of('publicTrade.BTCUSDT').length >= 3 && ws.of('tickers.BTCUSDT').length >= 2, 'stepped updates');
    const t = ws.of('tickers.BTCUSDT').at(-1)!;
    assert.equal(t.type, 'snapshot');
    assert.equal(t.data.symbol, 'BTCUSDT');
    assert.ok(num(t.data.ask1Price) > num(t.data.bid1Price));
    assert.equal(num(t.data.indexPrice), sim.exchange.mid('BTCUSDT'), 'index = mid');
    assert.equal(t.data.markPrice, fix(markPrice(sim.exchange.prices, 'BTCUSDT'), 2), 'mark = the smoothed mid of sim/mark-price.ts');
    const ob = ws.of('orderbook.1.BTCUSDT').at(-1)!;
    assert.equal(ob.data.b.length, 1);
    assert.equal(ob.data.a.length, 1);
    assert.equal(ob.data.a[0][0], t.data.ask1Price);
    const tr = ws.items('publicTrade.BTCUSDT').at(-1);
    assert.ok(tr.p && tr.v && (tr.S === 'Buy' || tr.S === 'Sell') && typeof tr.T === 'number');
  } finally {
    ws.close();
    await sim.close();
  }
});
