// Take profit, stop loss and trailing stop on linear positions (POST /v5/position/trading-stop)
// through bybit-api: the conditional orders they create, their trigger by the price process, the
// private pushes of a triggered close, Partial mode, cancelling them, and the documented errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RestClientV5 } from 'bybit-api';
import { manualSim, PRIVATE_TOPICS, restClient, waitFor, WsRecorder } from './helpers.ts';

const stop = (c: RestClientV5, p: Record<string, unknown>) => c.setTradingStop({ category: 'linear', symbol: 'BTCUSDT', tpslMode: 'Full', positionIdx: 0, ...p } as never);
async function ok(r: Promise<{ retCode: number; retMsg: string }>) {
  const x = await r;
  assert.equal(x.retCode, 0, x.retMsg);
}
const conditional = async (c: RestClientV5, symbol = 'BTCUSDT') => (await c.getActiveOrders({ category: 'linear', symbol, orderFilter: 'StopOrder' } as never)).result.list;

test('TP/SL triggered by the price process: the long takes profit, the short stops out, with the exchange\'s pushes', async () => {
  // A steady rise of 0.1 % per price step, nothing else: every trigger below is reached by the process.
  const sim = await manualSim({ depth: { levelNotional: 10_000_000 }, priceProcess: { drift: 0.001, volatility: 0 }, rateLimits: { multiplier: 100 } });
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(PRIVATE_TOPICS, 'linear');
    const c = restClient(sim);
    sim.setPrice('BTCUSDT', 60000);
    sim.setPrice('ETHUSDT', 3000);
    await ok(c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.100', orderLinkId: 'btc-long' }));
    await ok(c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Market', qty: '1.00', orderLinkId: 'eth-short' }));
    const r = await stop(c, { takeProfit: '60500.0', stopLoss: '59000.0' });
    assert.equal(r.retCode, 0, r.retMsg);
    assert.deepEqual(r.result, {});
    await ok(c.setTradingStop({ category: 'linear', symbol: 'ETHUSDT', tpslMode: 'Full', positionIdx: 0, stopLoss: '3040.00', slTriggerBy: 'MarkPrice', takeProfit: '2900.00' }));

    const orders = await conditional(c);
    assert.deepEqual(orders.map((o) => [o.stopOrderType, o.orderStatus, o.triggerPrice, o.triggerDirection, o.triggerBy, o.side, o.orderType, o.qty, o.reduceOnly, o.closeOnTrigger, o.tpslMode]).sort(), [
      ['StopLoss', 'Untriggered', '59000.00', 2, 'LastPrice', 'Sell', 'Market', '0.000', true, true, 'Full'],
      ['TakeProfit', 'Untriggered', '60500.00', 1, 'LastPrice', 'Sell', 'Market', '0.000', true, true, 'Full'],
    ]);
    const pos = (await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!;
    assert.deepEqual([pos.takeProfit, pos.stopLoss, pos.trailingStop], ['60500.00', '59000.00', '0']);
    await waitFor(() => ws.items('position').some((p) => p.symbol === 'BTCUSDT' && p.takeProfit === '60500.00' && p.stopLoss === '59000.00'), 'position push with TP/SL');
    await waitFor(() => ws.items('order').filter((o) => o.orderStatus === 'Untriggered').length >= 4, 'Untriggered order pushes');
    const tp = orders.find((o) => o.stopOrderType === 'TakeProfit')!;
    const sl = orders.find((o) => o.stopOrderType === 'StopLoss')!;

    // ln(60500/60000) / 0.001 = 8.3: the 9th step reaches the take profit; the ETH stop (mark
    // 3040 from 3000: 13.2 steps) comes later.
    sim.tick(8);
    assert.equal((await conditional(c)).length, 2, 'not yet');
    sim.tick(1);
    const filled = await waitFor(() => ws.items('order').find((o) => o.orderId === tp.orderId && o.orderStatus === 'Filled'), 'TP order filled');
    const statuses = ws.items('order').filter((o) => o.orderId === tp.orderId).map((o) => o.orderStatus);
    assert.deepEqual(statuses, ['Untriggered', 'Triggered', 'Filled'], 'Untriggered, Triggered, then the order it carries');
    assert.deepEqual([filled.stopOrderType, filled.createType, filled.side, filled.orderType, filled.qty, filled.cumExecQty, filled.reduceOnly, filled.triggerPrice], ['TakeProfit', 'CreateByTakeProfit', 'Sell', 'Market', '0.100', '0.100', true, '60500.00']);
    const exec = await waitFor(() => ws.items('execution').find((e) => e.orderId === tp.orderId), 'TP execution');
    assert.deepEqual([exec.stopOrderType, exec.execQty, exec.closedSize, exec.side], ['TakeProfit', '0.100', '0.100', 'Sell']);
    const deactivated = await waitFor(() => ws.items('order').find((o) => o.orderId === sl.orderId && o.orderStatus === 'Deactivated'), 'SL deactivated with the position');
    assert.equal(deactivated.cancelType, 'CancelByTpSlTsClear');
    await waitFor(() => ws.items('position').some((p) => p.symbol === 'BTCUSDT' && p.size === '0.000' && p.takeProfit === '0' && p.stopLoss === '0'), 'flat position push');
    await waitFor(() => ws.items('wallet').length >= 2, 'wallet push');
    const rec = (await c.getClosedPnL({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!;
    assert.deepEqual([rec.orderId, rec.orderType, rec.closedSize], [tp.orderId, 'Market', '0.100']);
    assert.ok(Number(rec.avgExitPrice) > 60400, `closed near the trigger (${rec.avgExitPrice})`);
    assert.equal((await conditional(c)).length, 0);

    // The short's stop loss on the mark price: ln(3040/3000) / 0.001 = 13.2 steps from the start.
    const ethStops = await conditional(c, 'ETHUSDT');
    const ethSl = ethStops.find((o) => o.stopOrderType === 'StopLoss')!;
    assert.deepEqual([ethSl.side, ethSl.triggerDirection, ethSl.triggerBy], ['Buy', 1, 'MarkPrice']);
    sim.tick(3);
    assert.equal((await conditional(c, 'ETHUSDT')).length, 2, 'still below 3040');
    sim.tick(2);
    const ethFilled = await waitFor(() => ws.items('order').find((o) => o.orderId === ethSl.orderId && o.orderStatus === 'Filled'), 'ETH stop loss filled');
    assert.deepEqual([ethFilled.stopOrderType, ethFilled.side, ethFilled.qty], ['StopLoss', 'Buy', '1.00']);
    assert.equal((await c.getPositionInfo({ category: 'linear', symbol: 'ETHUSDT' })).result.list[0]!.size, '0.00');
    assert.equal((await c.getHistoricOrders({ category: 'linear', orderId: ethStops.find((o) => o.stopOrderType === 'TakeProfit')!.orderId })).result.list[0]!.orderStatus, 'Deactivated');
  } finally {
    ws.close();
    await sim.close();
  }
});

test('trailing stop: activates at activePrice, follows the best price at its distance, fires when the price comes back', async () => {
  const sim = await manualSim({ depth: { levelNotional: 10_000_000 }, priceProcess: { volatility: 0 }, rateLimits: { multiplier: 100 } });
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(PRIVATE_TOPICS, 'linear');
    const c = restClient(sim);
    const move = (price: number) => {
      sim.setPrice('BTCUSDT', price);
      sim.tick(1); // a print at the new price: the last price trailing stops follow
    };
    move(60000);
    await ok(c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.100' }));
    move(60000);
    assert.equal((await stop(c, { trailingStop: '200', activePrice: '59000' })).retCode, 10001, 'a long activates above the price');
    await ok(stop(c, { trailingStop: '200', activePrice: '60300' }));
    const trigger = async () => (await conditional(c))[0]!.triggerPrice;
    const [ts] = await conditional(c);
    assert.deepEqual([ts!.stopOrderType, ts!.triggerDirection, ts!.triggerPrice], ['TrailingStop', 2, '60100.00'], 'not active: where it will start');
    assert.equal((await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!.trailingStop, '200.00');
    move(60200);
    assert.equal(await trigger(), '60100.00', 'below activePrice: not active');
    move(60500);
    assert.equal(await trigger(), '60300.00');
    move(60800);
    assert.equal(await trigger(), '60600.00');
    move(60650);
    assert.equal(await trigger(), '60600.00', 'the stop never moves back');
    assert.equal((await conditional(c)).length, 1);
    move(60550);
    const filled = await waitFor(() => ws.items('order').find((o) => o.orderId === ts!.orderId && o.orderStatus === 'Filled'), 'trailing stop filled');
    assert.deepEqual([filled.stopOrderType, filled.createType, filled.qty], ['TrailingStop', 'CreateByTrailingStop', '0.100']);
    assert.equal((await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!.size, '0.000');
  } finally {
    ws.close();
    await sim.close();
  }
});

test('Partial mode: TP/SL orders for part of the position, limit take profit, and its limits', async () => {
  const sim = await manualSim({ depth: { levelNotional: 10_000_000 }, priceProcess: { volatility: 0 }, rateLimits: { multiplier: 100 } });
  try {
    const c = restClient(sim);
    sim.setPrice('BTCUSDT', 60000);
    sim.tick(1);
    await ok(c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.300' }));
    sim.tick(1);
    const partial = (p: Record<string, unknown>) => stop(c, { tpslMode: 'Partial', ...p });
    await ok(partial({ takeProfit: '61000', tpSize: '0.100', tpOrderType: 'Limit', tpLimitPrice: '60990', stopLoss: '59000', slSize: '0.100' }));
    const list = await conditional(c);
    assert.deepEqual(list.map((o) => [o.stopOrderType, o.qty, o.orderType, o.price, o.tpslMode]).sort(), [
      ['PartialStopLoss', '0.100', 'Market', '0', 'Partial'],
      ['PartialTakeProfit', '0.100', 'Limit', '60990.00', 'Partial'],
    ]);
    const pos = (await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!;
    assert.deepEqual([pos.takeProfit, pos.stopLoss], ['0', '0'], 'the position shows Full-mode TP/SL only');
    assert.equal((await partial({ takeProfit: '61000', tpSize: '0.100', stopLoss: '59000', slSize: '0.200' })).retCode, 10001, 'tpSize and slSize must be equal');
    assert.equal((await partial({ takeProfit: '61000' })).retCode, 10001, 'a size is required');
    assert.equal((await partial({ takeProfit: '61000', tpSize: '0.400' })).retCode, 110058, 'more than the position');
    assert.equal((await partial({ takeProfit: '61000', tpSize: '0.100', tpOrderType: 'Limit' })).retCode, 10001, 'Limit needs tpLimitPrice');
    for (let i = 0; i < 9; i++) await ok(partial({ takeProfit: String(61100 + i * 100), tpSize: '0.010', stopLoss: String(58900 - i * 100), slSize: '0.010' }));
    const over = await partial({ takeProfit: '63000', tpSize: '0.010' });
    assert.equal(over.retCode, 110061, over.retMsg);

    // The limit take profit triggers and places its limit order for 0.1; the rest of the position stays.
    sim.setPrice('BTCUSDT', 61050);
    sim.tick(1);
    const tp = list.find((o) => o.stopOrderType === 'PartialTakeProfit')!;
    const after = (await c.getHistoricOrders({ category: 'linear', orderId: tp.orderId })).result.list[0]!;
    assert.deepEqual([after.orderStatus, after.orderType, after.price, after.cumExecQty], ['Filled', 'Limit', '60990.00', '0.100']);
    assert.equal((await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!.size, '0.200');
    assert.equal((await conditional(c)).length, 19, 'the other partial orders stay');
  } finally {
    await sim.close();
  }
});

test('trading-stop errors, cancelling TP/SL (0, cancel, cancel-all, closing the position) and hedge-mode sides', async () => {
  const sim = await manualSim({ depth: { levelNotional: 10_000_000 }, priceProcess: { volatility: 0 }, rateLimits: { multiplier: 100 } });
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(PRIVATE_TOPICS, 'linear');
    const c = restClient(sim);
    sim.setPrice('BTCUSDT', 60000);
    sim.tick(1);
    const none = await stop(c, { takeProfit: '61000' });
    assert.equal(none.retCode, 10001);
    assert.match(none.retMsg, /zero position/);
    await ok(c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.100' }));
    sim.tick(1); // last price back at 60000
    const cases: Array<[string, Record<string, unknown>, number, RegExp?]> = [
      ['TP below the base price of a long', { takeProfit: '59900' }, 10001, /TakeProfit:59900 set for Buy position should be higher than base_price:60000\?\?LastPrice/],
      ['SL above the base price of a long', { stopLoss: '60100' }, 10001, /StopLoss:60100 set for Buy position should be lower than base_price/],
      ['nothing to set', {}, 34040],
      ['tpslMode missing', { tpslMode: undefined, takeProfit: '61000' }, 10001],
      ['Limit in Full mode', { takeProfit: '61000', tpOrderType: 'Limit', tpLimitPrice: '61000' }, 10001],
      ['negative', { stopLoss: '-1' }, 10001],
      ['off the tick', { takeProfit: '61000.05' }, 10001],
      ['unknown trigger source', { takeProfit: '61000', tpTriggerBy: 'Moon' }, 10001],
      ['positionIdx of hedge mode', { takeProfit: '61000', positionIdx: 1 }, 10001, /position idx not match position mode/],
      ['spot', { category: 'spot', takeProfit: '61000' }, 10001],
    ];
    for (const [what, p, code, msg] of cases) {
      const r = await stop(c, p);
      assert.equal(r.retCode, code, `${what}: ${r.retCode} ${r.retMsg}`);
      if (msg) assert.match(r.retMsg, msg, what);
    }
    await ok(stop(c, { takeProfit: '61000', stopLoss: '59000', trailingStop: '300' }));
    assert.equal((await stop(c, { takeProfit: '61000' })).retCode, 34040, 'the same value again');
    await ok(stop(c, { takeProfit: '61500' }));
    const [tp] = (await conditional(c)).filter((o) => o.stopOrderType === 'TakeProfit');
    assert.equal(tp!.triggerPrice, '61500.00', 'Full mode modifies its order');
    assert.equal((await conditional(c)).length, 3);

    await ok(stop(c, { takeProfit: '0' }));
    await waitFor(() => ws.items('order').find((o) => o.orderId === tp!.orderId && o.orderStatus === 'Deactivated'), 'TP 0: deactivated');
    assert.equal((await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!.takeProfit, '0');
    const sl = (await conditional(c)).find((o) => o.stopOrderType === 'StopLoss')!;
    await ok(c.cancelOrder({ category: 'linear', symbol: 'BTCUSDT', orderId: sl.orderId }));
    assert.equal((await c.getHistoricOrders({ category: 'linear', orderId: sl.orderId })).result.list[0]!.orderStatus, 'Deactivated');
    assert.equal((await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!.stopLoss, '0');
    const kept = await c.cancelAllOrders({ category: 'linear', symbol: 'BTCUSDT', orderFilter: 'Order' });
    assert.equal(kept.result.list.length, 0, 'orderFilter=Order leaves conditional orders');
    const all = await c.cancelAllOrders({ category: 'linear', symbol: 'BTCUSDT' });
    assert.equal(all.result.list.length, 1, 'linear cancel-all takes the trailing stop too');
    assert.equal((await conditional(c)).length, 0);

    // Closing the position by hand clears what is left.
    await ok(stop(c, { stopLoss: '59000' }));
    await ok(c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Sell', orderType: 'Market', qty: '0.100', reduceOnly: true }));
    const cleared = (await c.getHistoricOrders({ category: 'linear', symbol: 'BTCUSDT', orderFilter: 'StopOrder' } as never)).result.list[0]!;
    assert.deepEqual([cleared.orderStatus, cleared.cancelType], ['Deactivated', 'CancelByTpSlTsClear']);

    // Hedge mode: each side has its own; a short's take profit is below the price and closes with a Buy.
    await ok(c.switchPositionMode({ category: 'linear', symbol: 'BTCUSDT', mode: 3 }));
    await ok(c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Sell', orderType: 'Market', qty: '0.050', positionIdx: 2 }));
    sim.tick(1);
    assert.equal((await stop(c, { positionIdx: 1, takeProfit: '61000' })).retCode, 10001, 'no long on side 1');
    assert.equal((await stop(c, { positionIdx: 2, takeProfit: '61000' })).retCode, 10001, "a short's TP above the price");
    await ok(stop(c, { positionIdx: 2, takeProfit: '59000' }));
    const [short] = await conditional(c);
    assert.deepEqual([short!.side, short!.positionIdx, short!.triggerDirection], ['Buy', 2, 2]);
    const listed = (await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list;
    assert.deepEqual(listed.map((p) => [p.positionIdx, p.takeProfit]), [[1, '0'], [2, '59000.00']]);
  } finally {
    ws.close();
    await sim.close();
  }
});
