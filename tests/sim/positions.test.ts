// Position settings through bybit-api's RestClientV5: leverage (the instrument's leverageFilter,
// buy/sell rules, 110043, 110044), position mode (one-way / hedge by symbol and by coin, 110024,
// 110025, 110028) and the positionIdx rules of orders and positions in each mode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { manualSim, PRIVATE_TOPICS, restClient, waitFor, WsRecorder } from './helpers.ts';

test('set-leverage: limits from leverageFilter, buy = sell in one-way mode, 110043 unchanged, 110044 without the margin', async () => {
  const sim = await manualSim({ balances: { USDT: 2000 }, rateLimits: { multiplier: 100 } });
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(PRIVATE_TOPICS, 'linear');
    const c = restClient(sim);
    const filter = (await c.getInstrumentsInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!.leverageFilter;
    assert.deepEqual(filter, { minLeverage: '1', maxLeverage: '100.00', leverageStep: '0.01' });

    const ok = await c.setLeverage({ category: 'linear', symbol: 'BTCUSDT', buyLeverage: '5', sellLeverage: '5' });
    assert.equal(ok.retCode, 0, ok.retMsg);
    assert.deepEqual(ok.result, {});
    const pos = (await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!;
    assert.equal(pos.leverage, '5');
    const pushed = await waitFor(() => ws.items('position').find((p) => p.symbol === 'BTCUSDT'), 'position push after set-leverage');
    assert.equal(pushed.leverage, '5');
    assert.equal((await c.setLeverage({ category: 'linear', symbol: 'BTCUSDT', buyLeverage: '100', sellLeverage: '100' })).retCode, 0, 'maxLeverage itself is allowed');
    assert.equal((await c.setLeverage({ category: 'linear', symbol: 'BTCUSDT', buyLeverage: '12.5', sellLeverage: '12.5' })).retCode, 0, 'a multiple of leverageStep');

    const cases: Array<[string, Record<string, string>, number, RegExp?]> = [
      ['unchanged', { symbol: 'BTCUSDT', buyLeverage: '12.5', sellLeverage: '12.5' }, 110043, /leverage not modified/],
      ['buy != sell in one-way mode', { symbol: 'BTCUSDT', buyLeverage: '5', sellLeverage: '6' }, 10001, /same as sellLeverage/],
      ['above maxLeverage', { symbol: 'BTCUSDT', buyLeverage: '100.01', sellLeverage: '100.01' }, 10001],
      ['below minLeverage', { symbol: 'BTCUSDT', buyLeverage: '0.5', sellLeverage: '0.5' }, 10001],
      ['off leverageStep', { symbol: 'BTCUSDT', buyLeverage: '5.005', sellLeverage: '5.005' }, 10001],
      ['unknown symbol', { symbol: 'NOPEUSDT', buyLeverage: '5', sellLeverage: '5' }, 10001],
    ];
    for (const [what, p, code, msg] of cases) {
      const r = await c.setLeverage({ category: 'linear', ...p } as never);
      assert.equal(r.retCode, code, `${what}: ${r.retCode} ${r.retMsg}`);
      if (msg) assert.match(r.retMsg, msg, what);
    }
    assert.equal((await c.setLeverage({ category: 'spot', symbol: 'BTCUSDT', buyLeverage: '5', sellLeverage: '5' } as never)).retCode, 10001, 'spot has no leverage here');

    // 0.2 BTC at 12.5x holds ~960 USDT of margin; at 1x it would need ~12 000: refused.
    const open = await c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.200' });
    assert.equal(open.retCode, 0, open.retMsg);
    const tooLow = await c.setLeverage({ category: 'linear', symbol: 'BTCUSDT', buyLeverage: '1', sellLeverage: '1' });
    assert.equal(tooLow.retCode, 110044, tooLow.retMsg);
    assert.equal((await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!.leverage, '12.5', 'a refused change changes nothing');
    assert.equal((await c.setLeverage({ category: 'linear', symbol: 'BTCUSDT', buyLeverage: '20', sellLeverage: '20' })).retCode, 0, 'more leverage frees margin: allowed');
    const wallet = (await c.getWalletBalance({ accountType: 'UNIFIED', coin: 'USDT' })).result.list[0]!;
    const figures = (await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!;
    assert.ok(Math.abs(Number(figures.positionIM) - (0.2 * Number(figures.markPrice)) / 20) < 1e-6, `positionIM follows the leverage (${figures.positionIM})`);
    assert.equal(wallet.totalInitialMargin, figures.positionIM);
  } finally {
    ws.close();
    await sim.close();
  }
});

test('switch-mode: hedge mode per symbol, positionIdx rules, two positions, and when a switch is refused', async () => {
  const sim = await manualSim({ rateLimits: { multiplier: 100 } });
  try {
    const c = restClient(sim);
    const order = (p: Record<string, unknown>) => c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', orderType: 'Market', qty: '1.00', ...p } as never);

    // One-way: positionIdx 0 or none; 1 or 2 do not match the mode.
    for (const idx of [1, 2]) {
      const r = await order({ side: 'Buy', positionIdx: idx });
      assert.equal(r.retCode, 10001);
      assert.match(r.retMsg, /position idx not match position mode/);
    }
    assert.equal((await c.switchPositionMode({ category: 'linear', symbol: 'ETHUSDT', mode: 0 })).retCode, 110025, 'one-way already');
    const sw = await c.switchPositionMode({ category: 'linear', symbol: 'ETHUSDT', mode: 3 });
    assert.equal(sw.retCode, 0, sw.retMsg);
    assert.deepEqual(sw.result, {});
    assert.equal((await c.switchPositionMode({ category: 'linear', symbol: 'ETHUSDT', mode: 3 })).retCode, 110025, 'hedge already');
    assert.equal((await c.switchPositionMode({ category: 'linear', symbol: 'ETHUSDT', mode: 1 as never })).retCode, 10001, 'mode is 0 or 3');
    assert.equal((await c.switchPositionMode({ category: 'linear', mode: 3 })).retCode, 10001, 'symbol or coin is required');
    assert.equal((await c.switchPositionMode({ category: 'inverse', symbol: 'ETHUSDT', mode: 3 })).retCode, 10001);

    // Hedge: positionIdx 1 or 2 is required.
    for (const idx of [undefined, 0]) assert.equal((await order({ side: 'Buy', positionIdx: idx })).retCode, 10001, `positionIdx ${idx} in hedge mode`);
    assert.equal((await order({ side: 'Sell', positionIdx: 1 })).retCode, 110017, 'a Sell on the Buy side can only close it');
    assert.equal((await order({ side: 'Buy', positionIdx: 1, orderLinkId: 'long' })).retCode, 0);
    assert.equal((await order({ side: 'Sell', positionIdx: 2, qty: '0.50', orderLinkId: 'short' })).retCode, 0);
    const list = (await c.getPositionInfo({ category: 'linear', symbol: 'ETHUSDT' })).result.list;
    assert.deepEqual(list.map((p) => [p.positionIdx, p.side, p.size]), [[1, 'Buy', '1.00'], [2, 'Sell', '0.50']]);
    const open = (await c.getActiveOrders({ category: 'linear', orderLinkId: 'short' })).result.list[0]!;
    assert.equal(open.positionIdx, 2);
    // BTCUSDT is still one-way: a one-way symbol lists one position.
    assert.deepEqual((await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list.map((p) => p.positionIdx), [0]);

    assert.equal((await c.switchPositionMode({ category: 'linear', symbol: 'ETHUSDT', mode: 0 })).retCode, 110024, 'positions open');
    // Closing the long with a Sell on its side: clamped to the position, no short opens.
    assert.equal((await order({ side: 'Sell', positionIdx: 1, qty: '5.00', orderLinkId: 'close-long' })).retCode, 0);
    assert.equal((await c.getActiveOrders({ category: 'linear', orderLinkId: 'close-long' })).result.list[0]!.cumExecQty, '1.00');
    assert.equal((await order({ side: 'Buy', positionIdx: 2, orderLinkId: 'close-short' })).retCode, 0);
    const flat = (await c.getPositionInfo({ category: 'linear', symbol: 'ETHUSDT' })).result.list;
    assert.deepEqual(flat.map((p) => [p.positionIdx, p.size]), [[1, '0.00'], [2, '0.00']]);

    const resting = await c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Limit', qty: '0.10', price: (Math.floor(sim.exchange.mid('ETHUSDT') * 0.95 * 100) / 100).toFixed(2), positionIdx: 1, orderLinkId: 'rest' });
    assert.equal(resting.retCode, 0, resting.retMsg);
    assert.equal((await c.switchPositionMode({ category: 'linear', symbol: 'ETHUSDT', mode: 0 })).retCode, 110028, 'open orders');
    await c.cancelOrder({ category: 'linear', symbol: 'ETHUSDT', orderLinkId: 'rest' });
    assert.equal((await c.switchPositionMode({ category: 'linear', symbol: 'ETHUSDT', mode: 0 })).retCode, 0);
    assert.equal((await order({ side: 'Buy', positionIdx: 0 })).retCode, 0, 'one-way again');
    assert.deepEqual((await c.getPositionInfo({ category: 'linear', symbol: 'ETHUSDT' })).result.list.map((p) => [p.positionIdx, p.size]), [[0, '1.00']]);
  } finally {
    await sim.close();
  }
});

test('switch-mode by coin: symbols without positions or orders switch, the others keep their mode', async () => {
  const sim = await manualSim({ rateLimits: { multiplier: 100 } });
  try {
    const c = restClient(sim);
    assert.equal((await c.submitOrder({ category: 'linear', symbol: 'SOLUSDT', side: 'Buy', orderType: 'Market', qty: '1.0' })).retCode, 0);
    const r = await c.switchPositionMode({ category: 'linear', coin: 'USDT', mode: 3 });
    assert.equal(r.retCode, 0, r.retMsg);
    const idx = async (symbol: string) => (await c.getPositionInfo({ category: 'linear', symbol })).result.list.map((p) => p.positionIdx);
    assert.deepEqual(await idx('BTCUSDT'), [1, 2]);
    assert.deepEqual(await idx('ETHUSDT'), [1, 2]);
    assert.deepEqual(await idx('SOLUSDT'), [0], 'SOLUSDT has a position: it stays one-way');
    assert.equal((await c.switchPositionMode({ category: 'linear', coin: 'NOPE', mode: 3 })).retCode, 10001);
    // A symbol's own setting wins over its coin's.
    assert.equal((await c.switchPositionMode({ category: 'linear', symbol: 'BTCUSDT', mode: 0 })).retCode, 0);
    assert.deepEqual(await idx('BTCUSDT'), [0]);
    assert.deepEqual(await idx('ETHUSDT'), [1, 2]);
  } finally {
    await sim.close();
  }
});
