// Account settings through bybit-api: GET /v5/account/info and POST /v5/account/set-margin-mode
// (its documented reasons and retCode), and what the margin mode changes in the simulator (hedge
// mode's two leverages in isolated margin).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { manualSim, restClient, T0 } from './helpers.ts';

test('account/info reports the account; set-margin-mode switches it, refuses portfolio margin below 1000 USD of equity with its reasons', async () => {
  const sim = await manualSim({ balances: { USDT: 600 } });
  try {
    const c = restClient(sim);
    const info = await c.getAccountInfo();
    assert.equal(info.retCode, 0, info.retMsg);
    assert.deepEqual(info.result, {
      unifiedMarginStatus: 5, marginMode: 'REGULAR_MARGIN', isMasterTrader: false, spotHedgingStatus: 'OFF',
      updatedTime: String(T0), dcpStatus: 'OFF', timeWindow: 0, smpGroup: 0,
    });

    sim.advance(60_000);
    const iso = await c.setMarginMode('ISOLATED_MARGIN');
    assert.equal(iso.retCode, 0, iso.retMsg);
    assert.deepEqual(iso.result, { reasons: [] });
    const after = (await c.getAccountInfo()).result;
    assert.equal(after.marginMode, 'ISOLATED_MARGIN');
    assert.equal(after.updatedTime, String(T0 + 60_000), 'updatedTime: when the setting changed');

    const pm = await c.setMarginMode('PORTFOLIO_MARGIN');
    assert.equal(pm.retCode, 3400045);
    assert.equal(pm.retMsg, 'Set margin mode failed');
    assert.deepEqual(pm.result, { reasons: [{ reasonCode: '3400000', reasonMsg: 'Equity needs to be equal to or greater than 1000 USDC' }] });
    assert.equal((await c.getAccountInfo()).result.marginMode, 'ISOLATED_MARGIN', 'a refused switch changes nothing');

    assert.equal((await c.setMarginMode('CROSS_MARGIN' as never)).retCode, 10001);
    sim.exchange.setBalance('1000001', 'USDT', 1500);
    const transfer = (await c.getTransactionLog({ currency: 'USDT' })).result.list[0]!;
    assert.deepEqual([transfer.type, transfer.change, transfer.cashBalance, transfer.category], ['TRANSFER_IN', '900', '1500', ''], 'a balance set from outside is a transfer in the log');
    sim.advance(1000); // set-margin-mode allows 5 requests a second
    assert.equal((await c.setMarginMode('PORTFOLIO_MARGIN')).retCode, 0);
    assert.equal((await c.getAccountInfo()).result.marginMode, 'PORTFOLIO_MARGIN');
    assert.deepEqual((await c.setMarginMode('PORTFOLIO_MARGIN')).result, { reasons: [] }, 'the same mode again is accepted');
    assert.equal((await c.setMarginMode('REGULAR_MARGIN')).retCode, 0);
    assert.equal((await c.getAccountInfo()).result.marginMode, 'REGULAR_MARGIN');
  } finally {
    await sim.close();
  }
});

test('hedge mode: the two sides take different leverage in isolated margin only', async () => {
  const sim = await manualSim({ rateLimits: { multiplier: 100 } });
  try {
    const c = restClient(sim);
    const lev = (buy: string, sell: string) => c.setLeverage({ category: 'linear', symbol: 'ETHUSDT', buyLeverage: buy, sellLeverage: sell });
    assert.equal((await c.switchPositionMode({ category: 'linear', symbol: 'ETHUSDT', mode: 3 })).retCode, 0);
    const cross = await lev('5', '8');
    assert.equal(cross.retCode, 10001, 'cross margin: the same on both sides');
    assert.match(cross.retMsg, /cross margin/);
    assert.equal((await c.setMarginMode('ISOLATED_MARGIN')).retCode, 0);
    assert.equal((await lev('5', '8')).retCode, 0);
    assert.equal((await lev('5', '8')).retCode, 110043);
    await c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Market', qty: '1.00', positionIdx: 1 });
    await c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Market', qty: '1.00', positionIdx: 2 });
    const list = (await c.getPositionInfo({ category: 'linear', symbol: 'ETHUSDT' })).result.list;
    assert.deepEqual(list.map((p) => [p.positionIdx, p.leverage]), [[1, '5'], [2, '8']]);
    for (const p of list) assert.ok(Math.abs(Number(p.positionIM) - Number(p.markPrice) / Number(p.leverage)) < 1e-6, `side ${p.positionIdx}: IM at its own leverage`);
  } finally {
    await sim.close();
  }
});
