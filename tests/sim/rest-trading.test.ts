// Placing, amending, cancelling and querying spot and linear orders through bybit-api's
// RestClientV5, and Bybit's retCodes for the ways an order or a request can be refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RestClientV5 } from 'bybit-api';
import { ManualClock } from '../../runtime/clock.ts';
import { manualSim, restClient } from './helpers.ts';

test('linear limit order: place, query by orderLinkId, amend, cancel', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    const mid = sim.exchange.mid('BTCUSDT');
    const price = (Math.floor(mid * 0.95 * 10) / 10).toFixed(1);
    const created = await c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.010', price, orderLinkId: 'lin-1' });
    assert.equal(created.retCode, 0, created.retMsg);
    assert.equal(created.result.orderLinkId, 'lin-1');
    assert.match(created.result.orderId, /^[0-9a-f-]{36}$/);

    const open = await c.getActiveOrders({ category: 'linear', orderLinkId: 'lin-1' });
    assert.equal(open.retCode, 0);
    const o = open.result.list[0]!;
    assert.equal(o.orderId, created.result.orderId);
    assert.equal(o.orderStatus, 'New');
    assert.equal(o.price, Number(price).toFixed(2));
    assert.equal(o.qty, '0.010');
    assert.equal(o.leavesQty, '0.010');
    assert.equal(o.cumExecQty, '0.000');
    assert.equal(o.timeInForce, 'GTC');

    const newPrice = (Number(price) - 100).toFixed(1);
    const amended = await c.amendOrder({ category: 'linear', symbol: 'BTCUSDT', orderLinkId: 'lin-1', qty: '0.020', price: newPrice });
    assert.equal(amended.retCode, 0, amended.retMsg);
    const after = (await c.getActiveOrders({ category: 'linear', orderId: created.result.orderId })).result.list[0]!;
    assert.equal(after.qty, '0.020');
    assert.equal(after.price, Number(newPrice).toFixed(2));

    const unchanged = await c.amendOrder({ category: 'linear', symbol: 'BTCUSDT', orderLinkId: 'lin-1', qty: '0.020', price: newPrice });
    assert.equal(unchanged.retCode, 10001);

    const cancelled = await c.cancelOrder({ category: 'linear', symbol: 'BTCUSDT', orderId: created.result.orderId });
    assert.equal(cancelled.retCode, 0);
    assert.equal(cancelled.result.orderLinkId, 'lin-1');
    const openNow = await c.getActiveOrders({ category: 'linear', symbol: 'BTCUSDT' });
    assert.equal(openNow.result.list.length, 0);
    const hist = await c.getHistoricOrders({ category: 'linear', orderLinkId: 'lin-1' });
    assert.equal(hist.result.list[0]!.orderStatus, 'Cancelled');
    assert.equal(hist.result.list[0]!.cancelType, 'CancelByUser');

    const again = await c.cancelOrder({ category: 'linear', symbol: 'BTCUSDT', orderId: created.result.orderId });
    assert.equal(again.retCode, 110001);
  } finally {
    await sim.close();
  }
});

test('linear market order fills and opens a position; reduce-only closes it with realised PnL', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    const r = await c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Market', qty: '1.50', orderLinkId: 'short-1' });
    assert.equal(r.retCode, 0, r.retMsg);
    const o = (await c.getActiveOrders({ category: 'linear', orderLinkId: 'short-1' })).result.list[0]!;
    assert.equal(o.orderStatus, 'Filled');
    assert.equal(o.cumExecQty, '1.50');
    assert.equal(o.leavesQty, '0.00');
    const pos = (await c.getPositionInfo({ category: 'linear', symbol: 'ETHUSDT' })).result.list[0]!;
    assert.equal(pos.side, 'Sell');
    assert.equal(pos.size, '1.50');
    assert.equal(Number(pos.avgPrice).toFixed(6), (Number(o.cumExecValue) / 1.5).toFixed(6));

    const wrongSide = await c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Market', qty: '0.10', reduceOnly: true });
    assert.equal(wrongSide.retCode, 110017);

    sim.setPrice('ETHUSDT', sim.exchange.mid('ETHUSDT') * 0.98); // the short gains
    const close = await c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Market', qty: '5.00', reduceOnly: true, orderLinkId: 'close-1' });
    assert.equal(close.retCode, 0, close.retMsg);
    const closed = (await c.getActiveOrders({ category: 'linear', orderLinkId: 'close-1' })).result.list[0]!;
    assert.equal(closed.cumExecQty, '1.50', 'reduce-only is clamped to the position');
    const flat = (await c.getPositionInfo({ category: 'linear', symbol: 'ETHUSDT' })).result.list[0]!;
    assert.equal(flat.size, '0.00');
    assert.equal(flat.side, '');
    assert.ok(Number(flat.cumRealisedPnl) > 0, `a 2% move on a short is a profit (${flat.cumRealisedPnl})`);
    const listed = await c.getPositionInfo({ category: 'linear', settleCoin: 'USDT' });
    assert.equal(listed.result.list.length, 0, 'settleCoin lists open positions only');
  } finally {
    await sim.close();
  }
});

test('spot orders: market buy sized in quote, limit sell rests and is cancelled, balances lock and release', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    const usdt0 = sim.exchange.account('1000001').coin('USDT').wallet;
    const btc0 = sim.exchange.account('1000001').coin('BTC').wallet;
    const buy = await c.submitOrder({ category: 'spot', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '500', marketUnit: 'quoteCoin', orderLinkId: 'spot-buy' });
    assert.equal(buy.retCode, 0, buy.retMsg);
    const o = (await c.getActiveOrders({ category: 'spot', orderLinkId: 'spot-buy' })).result.list[0]!;
    assert.equal(o.orderStatus, 'Filled');
    assert.equal(o.qty, '500');
    assert.equal(o.marketUnit, 'quoteCoin');
    assert.ok(Number(o.cumExecValue) <= 500 && Number(o.cumExecValue) > 499, o.cumExecValue);
    const fee = Number(o.cumExecFee);
    assert.ok(Math.abs(fee - Number(o.cumExecQty) * 0.001) < 1e-8, 'spot taker fee 0.1%, paid in the base coin on buys');
    const acc = sim.exchange.account('1000001');
    assert.ok(Math.abs(acc.coin('USDT').wallet - (usdt0 - Number(o.cumExecValue))) < 1e-6);
    assert.ok(Math.abs(acc.coin('BTC').wallet - (btc0 + Number(o.cumExecQty) - fee)) < 1e-8);

    const ask = Number(sim.exchange.mid('BTCUSDT')) * 1.05;
    const sell = await c.submitOrder({ category: 'spot', symbol: 'BTCUSDT', side: 'Sell', orderType: 'Limit', qty: '0.500000', price: ask.toFixed(2), orderLinkId: 'spot-sell' });
    assert.equal(sell.retCode, 0, sell.retMsg);
    const w = await c.getWalletBalance({ accountType: 'UNIFIED', coin: 'BTC' });
    const btc = w.result.list[0]!.coin.find((x) => x.coin === 'BTC')! as unknown as Record<string, string>;
    assert.equal(btc.locked, '0.5');
    assert.ok(Math.abs(Number(btc.availableToWithdraw) - (Number(btc.walletBalance) - 0.5)) < 1e-9);
    const all = await c.cancelAllOrders({ category: 'spot', symbol: 'BTCUSDT' });
    assert.equal(all.retCode, 0);
    assert.deepEqual(all.result.list.map((x) => x.orderLinkId), ['spot-sell']);
    assert.equal(acc.coin('BTC').locked, 0);
  } finally {
    await sim.close();
  }
});

test('order rejections carry Bybit retCodes', async () => {
  const sim = await manualSim({ balances: { USDT: 1000 } });
  try {
    const c = restClient(sim);
    const mid = sim.exchange.mid('BTCUSDT');
    const p = (Math.floor(mid * 0.9 * 10) / 10 + 100).toFixed(1);
    const cases: Array<[string, Record<string, unknown>, number]> = [
      ['unknown symbol', { category: 'linear', symbol: 'NOPEUSDT', side: 'Buy', orderType: 'Market', qty: '1' }, 10001],
      ['orderLinkId over 36 chars', { category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.001', price: p, orderLinkId: 'x'.repeat(37) }, 10001],
      ['orderLinkId bad characters', { category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.001', price: p, orderLinkId: 'bad id!' }, 10001],
      ['linear qty below minimum', { category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.0001', price: p }, 10001],
      ['linear qty off step', { category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.0015', price: p }, 10001],
      ['linear price far through the market', { category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.001', price: (mid * 1.5).toFixed(1) }, 110003],
      ['linear insufficient margin', { category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '1.000' }, 110007],
      ['linear notional below 5 USDT', { category: 'linear', symbol: 'SOLUSDT', side: 'Buy', orderType: 'Limit', qty: '0.1', price: '30.000' }, 110094],
      ['spot insufficient balance', { category: 'spot', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.100000', price: p }, 170131],
      ['spot qty precision', { category: 'spot', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.0000011', price: p }, 170137],
      ['spot qty below minimum', { category: 'spot', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.000010', price: p }, 170136],
      ['spot order value below minOrderAmt', { category: 'spot', symbol: 'SOLUSDT', side: 'Buy', orderType: 'Limit', qty: '0.030', price: '100.00' }, 170140],
      ['spot price precision', { category: 'spot', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.001000', price: '50000.001' }, 170134],
    ];
    for (const [name, params, code] of cases) {
      const r = await c.submitOrder(params as never);
      assert.equal(r.retCode, code, `${name}: got ${r.retCode} ${r.retMsg}`);
      assert.deepEqual(r.result, {}, name);
    }
    assert.equal(sim.exchange.allOrders().length, 0, 'no refused order was recorded');
  } finally {
    await sim.close();
  }
});

test('spot market amounts in quote coin: any amount on the quotePrecision grid is taken, a longer one refused', async () => {
  const sim = await manualSim({ balances: { USDT: 1000 } });
  try {
    const c = restClient(sim);
    // 8.03 USDT is 803,000,000 steps of 1e-8, but 803,000,000.0000001 as a float quotient: the
    // simulator's check refused such amounts (about one two-decimal amount in ten) as too long.
    for (const qty of ['8.03', '56.59', '10.07', '12.34567891']) {
      const r = await c.submitOrder({ category: 'spot', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty, marketUnit: 'quoteCoin' });
      assert.equal(r.retCode, 0, `${qty} USDT: ${r.retMsg}`);
    }
    const long = await c.submitOrder({ category: 'spot', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '8.031234567', marketUnit: 'quoteCoin' });
    assert.equal(long.retCode, 170148, long.retMsg);
  } finally {
    await sim.close();
  }
});

test('duplicate orderLinkId is 110072, also when the first order came from another client', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    const params = { category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.001', orderLinkId: 'dup-1' } as const;
    assert.equal((await c.submitOrder(params)).retCode, 0);
    const dup = await c.submitOrder(params);
    assert.equal(dup.retCode, 110072);
    assert.equal(dup.retMsg, 'OrderLinkedID is duplicate');

    sim.placeOrder({ ...params, orderLinkId: 'from-elsewhere' });
    assert.equal((await c.submitOrder({ ...params, orderLinkId: 'from-elsewhere' })).retCode, 110072);
    const seen = await c.getActiveOrders({ category: 'linear', orderLinkId: 'from-elsewhere' });
    assert.equal(seen.result.list.length, 1, 'an order placed directly is visible through REST');
    assert.deepEqual(sim.orders().map((o) => [o.orderLinkId, o.source]), [['dup-1', 'rest'], ['from-elsewhere', 'direct']]);
  } finally {
    await sim.close();
  }
});

test('authentication: bad key 10003, bad signature 10004, stale timestamp 10002', async () => {
  const sim = await manualSim({ authClock: new ManualClock(Date.now() + 60_000) });
  const sim2 = await manualSim();
  try {
    const stale = await restClient(sim).getWalletBalance({ accountType: 'UNIFIED' });
    assert.equal(stale.retCode, 10002, stale.retMsg);
    const badKey = await new RestClientV5({ key: 'nobody', secret: 'x', baseUrl: sim2.restUrl }).getWalletBalance({ accountType: 'UNIFIED' });
    assert.equal(badKey.retCode, 10003);
    const badSign = await new RestClientV5({ key: 'sim-key', secret: 'wrong-secret', baseUrl: sim2.restUrl }).submitOrder({ category: 'spot', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '10' });
    assert.equal(badSign.retCode, 10004);
    assert.match(badSign.retMsg, /^error sign!/);
    assert.equal(sim2.exchange.allOrders().length, 0);
    const good = await restClient(sim2).getWalletBalance({ accountType: 'UNIFIED' });
    assert.equal(good.retCode, 0);
    const pub = await new RestClientV5({ baseUrl: sim2.restUrl }).getServerTime();
    assert.equal(pub.retCode, 0, 'public endpoints need no key');
  } finally {
    await sim.close();
    await sim2.close();
  }
});

test('rate limit: 10 linear creates per second per UID, then 10006, with X-Bapi-Limit headers', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    const price = (Math.floor(sim.exchange.mid('BTCUSDT') * 0.9 * 10) / 10 + 50).toFixed(1);
    const place = () => c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.001', price });
    const results = [];
    for (let i = 0; i < 11; i++) results.push(await place());
    assert.deepEqual(results.map((r) => r.retCode), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10006]);
    assert.equal(results[10]!.retMsg, 'Too many visits!');
    assert.deepEqual(results.map((r) => r.rateLimitApi?.remainingRequests), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]);
    assert.equal(results[0]!.rateLimitApi?.maxRequests, 10);
    assert.equal(results[10]!.rateLimitApi?.resetAtTimestamp, sim.clock.now() + 1000);
    // spot has its own, larger budget
    const spot = await c.submitOrder({ category: 'spot', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '10' });
    assert.equal(spot.retCode, 0);
    assert.equal(spot.rateLimitApi?.maxRequests, 20);
    sim.advance(1000);
    assert.equal((await place()).retCode, 0, 'the window rolls after a second');
    assert.equal(sim.exchange.allOrders().filter((o) => o.category === 'linear').length, 11);
  } finally {
    await sim.close();
  }
});

test('rate limits can be relaxed for benchmarks', async () => {
  const sim = await manualSim({ rateLimits: { multiplier: 100 } });
  try {
    const c = restClient(sim);
    for (let i = 0; i < 30; i++) {
      const r = await c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.001' });
      assert.equal(r.retCode, 0, r.retMsg);
    }
  } finally {
    await sim.close();
  }
});
