// Closed P&L, the transaction log, fees and funding as the exchange counts them, through bybit-api:
// a scripted sequence of fills whose records must equal a table computed by hand, funding settled
// on linear positions at 00:00 / 08:00 / 16:00 UTC under the manual clock, and the documented
// errors of both endpoints. Prices are set exactly (volatility 0) and fills are resting orders
// filled as makers at their own price, or one taker against the best bid of the documented book
// model (2 bps spread, 0.1 tick), so every number below follows from the inputs alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RestClientV5 } from 'bybit-api';
import { manualSim, PRIVATE_TOPICS, restClient, T0, waitFor, WsRecorder } from './helpers.ts';

const HOUR = 3600_000;
const near = (actual: unknown, expected: number, what: string, eps = 1e-6) => assert.ok(Math.abs(Number(actual) - expected) < eps, `${what}: ${String(actual)}, expected ${expected}`);
const quiet = { depth: { levelNotional: 10_000_000 }, priceProcess: { volatility: 0, stepMs: 60_000 }, rateLimits: { multiplier: 100 } } as const;

async function ok(r: Promise<{ retCode: number; retMsg: string }>) {
  const x = await r;
  assert.equal(x.retCode, 0, x.retMsg);
}

type Row = Record<string, string>;
async function txLog(c: RestClientV5, q: Record<string, unknown> = {}): Promise<Row[]> {
  const r = await c.getTransactionLog({ startTime: T0 - HOUR, endTime: T0 + 23 * HOUR, limit: 50, ...q } as never);
  assert.equal(r.retCode, 0, r.retMsg);
  return (r.result.list as unknown as Row[]).slice().reverse(); // oldest first
}

test('a scripted sequence of linear and spot fills: closed P&L and transaction log equal the hand-computed table (fees and funding included)', async () => {
  const sim = await manualSim(quiet);
  try {
    const c = restClient(sim);
    const limit = (symbol: string, side: 'Buy' | 'Sell', qty: string, price: string, link: string, category: 'linear' | 'spot' = 'linear') =>
      ok(c.submitOrder({ category, symbol, side, orderType: 'Limit', qty, price, orderLinkId: link }));

    // Linear BTCUSDT (maker 0.02 %, taker 0.055 %), one-way, 10x.
    sim.setPrice('BTCUSDT', 60000);
    await limit('BTCUSDT', 'Buy', '0.200', '59900.0', 'l1');
    sim.setPrice('BTCUSDT', 59800); // fills 0.2 @ 59900 as maker: fee 2.396
    await limit('BTCUSDT', 'Buy', '0.100', '59700.0', 'l2');
    sim.setPrice('BTCUSDT', 59600); // fills 0.1 @ 59700: fee 1.194; long 0.3 @ 59833.3333..., opening fees 3.59
    sim.advance(4 * HOUR); // 16:00 UTC: funding at mark 59600, rate 0.01 %: the long pays 0.3 x 59600 x 0.0001 = 1.788
    await limit('BTCUSDT', 'Sell', '0.100', '60000.0', 'l3');
    sim.setPrice('BTCUSDT', 60100); // closes 0.1 @ 60000: fee 1.2
    const bids = (await c.getOrderbook({ category: 'linear', symbol: 'BTCUSDT', limit: 1 })).result.b;
    assert.equal(bids[0]![0], '60093.90', 'best bid: 60100 - 1 bp (6.01), floored to the tick');
    await ok(c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Sell', orderType: 'Market', qty: '0.200', orderLinkId: 'l4' })); // taker: 0.2 @ 60093.9, fee 6.610329

    // Spot ETHUSDT (0.1 % both): the buy pays its fee in ETH, the sell in USDT.
    sim.setPrice('ETHUSDT', 3000);
    await limit('ETHUSDT', 'Buy', '1.00000', '2990.00', 's1', 'spot');
    sim.setPrice('ETHUSDT', 2980); // +1 ETH - 0.001 ETH fee, -2990 USDT
    await limit('ETHUSDT', 'Sell', '0.50000', '3010.00', 's2', 'spot');
    sim.setPrice('ETHUSDT', 3020); // -0.5 ETH, +1505 USDT - 1.505 USDT fee

    const t16 = T0 + 4 * HOUR;
    // [category, type, side, currency, qty, size, tradePrice, fee, funding, cashFlow, change, cashBalance, feeRate, orderLinkId, time]
    const table: Array<[string, string, string, string, number, number, number, number, number | '', number, number, number, number, string, number]> = [
      ['linear', 'TRADE', 'Buy', 'USDT', 0.2, 0.2, 59900, 2.396, '', 0, -2.396, 99997.604, 0.0002, 'l1', T0],
      ['linear', 'TRADE', 'Buy', 'USDT', 0.1, 0.3, 59700, 1.194, '', 0, -1.194, 99996.41, 0.0002, 'l2', T0],
      ['linear', 'SETTLEMENT', 'Buy', 'USDT', 0.3, 0.3, 59600, 0, -1.788, 0, -1.788, 99994.622, 0.0001, '', t16],
      // (60000 - 59833.33333333) x 0.1 = 16.66666667
      ['linear', 'TRADE', 'Sell', 'USDT', 0.1, 0.2, 60000, 1.2, '', 16.66666667, 15.46666667, 100010.08866667, 0.0002, 'l3', t16],
      // (60093.9 - 59833.33333333) x 0.2 = 52.11333333
      ['linear', 'TRADE', 'Sell', 'USDT', 0.2, 0, 60093.9, 6.610329, '', 52.11333333, 45.50300433, 100055.591671, 0.00055, 'l4', t16],
      ['spot', 'TRADE', 'Buy', 'ETH', 1, 0, 2990, 0.001, '', 1, 0.999, 10.999, 0.001, 's1', t16],
      ['spot', 'TRADE', 'Buy', 'USDT', -2990, 0, 2990, 0, '', -2990, -2990, 97065.591671, 0.001, 's1', t16],
      ['spot', 'TRADE', 'Sell', 'ETH', -0.5, 0, 3010, 0, '', -0.5, -0.5, 10.499, 0.001, 's2', t16],
      ['spot', 'TRADE', 'Sell', 'USDT', 1505, 0, 3010, 1.505, '', 1505, 1503.495, 98569.086671, 0.001, 's2', t16],
    ];
    const log = await txLog(c);
    assert.equal(log.length, table.length);
    table.forEach(([category, type, side, currency, qty, size, price, fee, funding, cashFlow, change, balance, feeRate, link, time], i) => {
      const e = log[i]!;
      const w = `entry ${i + 1} (${link || type} ${currency})`;
      assert.deepEqual([e.category, e.type, e.side, e.currency, e.symbol, e.orderLinkId, e.transactionTime], [category, type, side, currency, category === 'spot' ? 'ETHUSDT' : 'BTCUSDT', link, String(time)], w);
      near(e.qty, qty, `${w} qty`);
      near(e.size, size, `${w} size`);
      near(e.tradePrice, price, `${w} tradePrice`);
      near(e.fee, fee, `${w} fee`);
      if (funding === '') assert.equal(e.funding, '', `${w} funding`);
      else near(e.funding, funding, `${w} funding`);
      near(e.cashFlow, cashFlow, `${w} cashFlow`);
      near(e.change, change, `${w} change`);
      near(e.cashBalance, balance, `${w} cashBalance`);
      near(e.feeRate, feeRate, `${w} feeRate`);
      assert.match(e.id!, /\S/, `${w} has an id`);
      if (type === 'TRADE') assert.ok(sim.exchange.allExecutions().some((x) => x.execId === e.tradeId), `${w}: tradeId is the execution's execId`);
    });

    // Closed P&L: gross P&L - share of opening fees - closing fee - share of funding.
    //   l3: 16.66666667 - 3.59/3 - 1.2 - 1.788/3 = 13.674
    //   l4: 52.11333333 - 3.59x2/3 - 6.610329 - 1.788x2/3 = 41.917671
    const cp = await c.getClosedPnL({ category: 'linear', startTime: T0 - HOUR, endTime: T0 + 23 * HOUR });
    assert.equal(cp.retCode, 0, cp.retMsg);
    const recs = cp.result.list.slice().reverse();
    const expected = [
      { link: 'l3', orderType: 'Limit', qty: '0.100', closedSize: '0.100', avgEntry: 59833.33333333, avgExit: 60000, entryValue: 5983.33333333, exitValue: 6000, openFee: 1.19666667, closeFee: 1.2, closedPnl: 13.674 },
      { link: 'l4', orderType: 'Market', qty: '0.200', closedSize: '0.200', avgEntry: 59833.33333333, avgExit: 60093.9, entryValue: 11966.66666667, exitValue: 12018.78, openFee: 2.39333333, closeFee: 6.610329, closedPnl: 41.917671 },
    ];
    assert.equal(recs.length, expected.length);
    expected.forEach((x, i) => {
      const r = recs[i]!;
      const order = sim.exchange.findOrder('1000001', { orderLinkId: x.link })!;
      assert.deepEqual([r.symbol, r.orderId, r.side, r.orderType, r.qty, r.closedSize, r.execType, r.fillCount, r.leverage, r.createdTime], ['BTCUSDT', order.orderId, 'Sell', x.orderType, x.qty, x.closedSize, 'Trade', '1', '10', String(t16)], x.link);
      near(r.avgEntryPrice, x.avgEntry, `${x.link} avgEntryPrice`);
      near(r.avgExitPrice, x.avgExit, `${x.link} avgExitPrice`);
      near(r.cumEntryValue, x.entryValue, `${x.link} cumEntryValue`);
      near(r.cumExitValue, x.exitValue, `${x.link} cumExitValue`);
      near(r.openFee, x.openFee, `${x.link} openFee`);
      near(r.closeFee, x.closeFee, `${x.link} closeFee`);
      near(r.closedPnl, x.closedPnl, `${x.link} closedPnl`);
    });
    // The order's closedPnl is its records' sum; the round trip's closed P&L is the position's
    // realised P&L: every fee and the funding, nothing twice.
    const l4 = (await c.getHistoricOrders({ category: 'linear', orderLinkId: 'l4' })).result.list[0]!;
    assert.equal(l4.orderStatus, 'Filled');
    const pos = (await c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!;
    near(pos.cumRealisedPnl, 13.674 + 41.917671, 'position cumRealisedPnl');
    near(pos.cumRealisedPnl, -2.396 - 1.194 - 1.788 + 15.46666667 + 45.50300433, 'cumRealisedPnl = sum of the linear changes');
    const usdt = (await c.getWalletBalance({ accountType: 'UNIFIED', coin: 'USDT' })).result.list[0]!.coin[0]!;
    near(usdt.walletBalance, 98569.086671, 'USDT wallet = last cashBalance');
    near(usdt.cumRealisedPnl, 55.591671, 'USDT cumRealisedPnl: linear realised P&L only');
    const eth = (await c.getWalletBalance({ accountType: 'UNIFIED', coin: 'ETH' })).result.list[0]!.coin[0]!;
    assert.equal(eth.walletBalance, '10.499');
    const s1 = (await c.getExecutionList({ category: 'spot', orderLinkId: 's1' })).result.list[0]!;
    assert.deepEqual([s1.execFee, s1.feeCurrency], ['0.001', 'ETH']);
    const s2 = (await c.getExecutionList({ category: 'spot', orderLinkId: 's2' })).result.list[0]!;
    assert.deepEqual([s2.execFee, s2.feeCurrency], ['1.505', 'USDT']);
    const l1 = (await c.getExecutionList({ category: 'linear', orderLinkId: 'l1' })).result.list[0]!;
    assert.deepEqual([l1.execFee, l1.feeCurrency], ['2.396', 'USDT']);
  } finally {
    await sim.close();
  }
});

test('funding: settled at 16:00 and 00:00 UTC on open linear positions, longs and shorts by the sign of the rate, with pushes and SETTLEMENT entries', async () => {
  // A rate per symbol and settlement, to see which rate each settlement used.
  const rates: Record<string, number> = { BTCUSDT: 0.0002, ETHUSDT: -0.0003 };
  const sim = await manualSim({ ...quiet, fundingRate: (symbol, at) => (rates[symbol] ?? 0) * (at === Date.UTC(2025, 0, 7) ? 2 : 1) });
  const ws = new WsRecorder(sim);
  try {
    await ws.subscribe(PRIVATE_TOPICS, 'linear');
    const c = restClient(sim);
    sim.setPrice('BTCUSDT', 60000);
    sim.setPrice('ETHUSDT', 3000);
    await ok(c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.100' }));
    await ok(c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Market', qty: '2.00' }));
    const before = sim.exchange.account('1000001').coin('USDT').wallet;
    const posBefore = (await c.getPositionInfo({ category: 'linear', symbol: 'ETHUSDT' })).result.list[0]!;

    sim.advance(4 * HOUR - 60_000); // 15:59: nothing yet
    assert.equal((await txLog(c, { type: 'SETTLEMENT' })).length, 0);
    const pushesBefore = ws.items('wallet').length;
    sim.advance(60_000); // 16:00
    // BTC long, rate +0.02 %: pays 0.1 x 60000 x 0.0002 = 1.2; ETH short, rate -0.03 %: pays 2 x 3000 x 0.0003 = 1.8.
    const settled = await txLog(c, { type: 'SETTLEMENT' });
    assert.deepEqual(settled.map((e) => [e.symbol, e.side, e.qty, e.size, e.tradePrice, e.funding, e.change, e.feeRate, e.transactionTime]), [
      ['BTCUSDT', 'Buy', '0.1', '0.1', '60000', '-1.2', '-1.2', '0.0002', String(T0 + 4 * HOUR)],
      ['ETHUSDT', 'Sell', '2', '-2', '3000', '-1.8', '-1.8', '0.0003', String(T0 + 4 * HOUR)],
    ]);
    near(settled[1]!.cashBalance, before - 3, 'cashBalance after both settlements');
    near(sim.exchange.account('1000001').coin('USDT').wallet, before - 3, 'wallet');
    // Funding is realised P&L: the position push carries it, and the wallet push the new balance.
    const eth = await waitFor(() => ws.items('position').find((p) => p.symbol === 'ETHUSDT' && Math.abs(Number(p.cumRealisedPnl) - (Number(posBefore.cumRealisedPnl) - 1.8)) < 1e-9), 'ETH position push with the funding');
    assert.equal(eth.updatedTime, String(T0 + 4 * HOUR));
    const usdtOf = (w: { coin: Array<{ coin: string; walletBalance: string }> }) => Number(w.coin.find((x) => x.coin === 'USDT')!.walletBalance);
    await waitFor(() => ws.items('wallet').slice(pushesBefore).some((w) => Math.abs(usdtOf(w) - (before - 3)) < 1e-9), 'wallet push after the settlement');

    // Close BTC; ETH alone settles at 00:00 (at twice the rate): the short receives nothing, it pays 2 x 3000 x 0.0006 = 3.6.
    await ok(c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Sell', orderType: 'Market', qty: '0.100', reduceOnly: true }));
    sim.advance(8 * HOUR);
    const all = await txLog(c, { type: 'SETTLEMENT', startTime: T0, endTime: T0 + 13 * HOUR });
    assert.deepEqual(all.map((e) => [e.symbol, e.funding, e.transactionTime]), [
      ['BTCUSDT', '-1.2', String(T0 + 4 * HOUR)],
      ['ETHUSDT', '-1.8', String(T0 + 4 * HOUR)],
      ['ETHUSDT', '-3.6', String(Date.UTC(2025, 0, 7))],
    ]);
    // A positive rate pays the short.
    rates.ETHUSDT = 0.0001;
    sim.advance(8 * HOUR); // 08:00: 2 x 3000 x 0.0001 = 0.6 received
    const last = (await txLog(c, { type: 'SETTLEMENT', startTime: T0 + 20 * HOUR, endTime: T0 + 21 * HOUR }))[0]!;
    assert.deepEqual([last.symbol, last.funding, last.feeRate, last.transactionTime], ['ETHUSDT', '0.6', '-0.0001', String(Date.UTC(2025, 0, 7, 8))]);
    // Closed P&L of the short carries its funding: 1.8 + 3.6 - 0.6 = 4.8 paid.
    await ok(c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Market', qty: '2.00', reduceOnly: true, orderLinkId: 'eth-close' }));
    const rec = (await c.getClosedPnL({ category: 'linear', symbol: 'ETHUSDT' })).result.list[0]!;
    const exec = (await c.getExecutionList({ category: 'linear', symbol: 'ETHUSDT', execType: 'Trade', limit: 10, startTime: T0, endTime: T0 + 21 * HOUR })).result.list;
    const open = exec.find((e) => e.side === 'Sell')!;
    const close = exec.find((e) => e.side === 'Buy')!;
    near(rec.closedPnl, (Number(open.execPrice) - Number(close.execPrice)) * 2 - Number(open.execFee) - Number(close.execFee) - 4.8, 'closed P&L with funding');
  } finally {
    ws.close();
    await sim.close();
  }
});

test('closed-pnl and transaction-log: filters, cursor pages, and the documented time-window and parameter errors', async () => {
  const sim = await manualSim(quiet);
  try {
    const c = restClient(sim);
    for (let i = 0; i < 3; i++) {
      await ok(c.submitOrder({ category: 'linear', symbol: 'SOLUSDT', side: 'Buy', orderType: 'Market', qty: '1.0' }));
      await ok(c.submitOrder({ category: 'linear', symbol: 'SOLUSDT', side: 'Sell', orderType: 'Market', qty: '1.0', orderLinkId: `close-${i}` }));
    }
    const p1 = await c.getClosedPnL({ category: 'linear', limit: 2 });
    assert.equal(p1.retCode, 0, p1.retMsg);
    assert.equal(p1.result.list.length, 2);
    assert.notEqual(p1.result.nextPageCursor, '');
    const p2 = await c.getClosedPnL({ category: 'linear', limit: 2, cursor: p1.result.nextPageCursor });
    assert.equal(p2.result.list.length, 1);
    assert.equal(p2.result.nextPageCursor, '');
    const ids = [...p1.result.list, ...p2.result.list].map((r) => r.orderId);
    assert.deepEqual(ids, ['close-2', 'close-1', 'close-0'].map((l) => sim.exchange.findOrder('1000001', { orderLinkId: l })!.orderId), 'newest first');
    assert.equal((await c.getClosedPnL({ category: 'linear', symbol: 'BTCUSDT' })).result.list.length, 0);

    const t1 = await c.getTransactionLog({ limit: 4 });
    assert.equal(t1.result.list.length, 4);
    const t2 = await c.getTransactionLog({ limit: 4, cursor: t1.result.nextPageCursor });
    assert.equal(t2.result.list.length, 2);
    assert.equal((await c.getTransactionLog({ accountType: 'UNIFIED', category: 'linear', currency: 'USDT', baseCoin: 'SOL', type: 'TRADE' })).result.list.length, 6);
    assert.equal((await c.getTransactionLog({ category: 'spot' })).result.list.length, 0);
    assert.equal((await c.getTransactionLog({ type: 'SETTLEMENT' })).result.list.length, 0);
    assert.equal((await c.getTransactionLog({ transSubType: 'movePosition' })).result.list.length, 0);

    // Windows: closed P&L defaults to 7 days, the transaction log to 24 hours; both at most 7 days.
    sim.advance(25 * HOUR);
    assert.equal((await c.getTransactionLog()).result.list.length, 0, 'older than the default 24 hours');
    assert.equal((await c.getTransactionLog({ startTime: T0 })).result.list.length, 6, 'startTime alone: 24 hours from it');
    assert.equal((await c.getClosedPnL({ category: 'linear' })).result.list.length, 3, 'within the default 7 days');
    const errors: Array<[string, Promise<{ retCode: number }>]> = [
      ['closed-pnl spot', c.getClosedPnL({ category: 'spot' })],
      ['closed-pnl window over 7 days', c.getClosedPnL({ category: 'linear', startTime: T0, endTime: T0 + 7 * 24 * HOUR + 1 })],
      ['closed-pnl unknown symbol', c.getClosedPnL({ category: 'linear', symbol: 'NOPEUSDT' })],
      ['closed-pnl limit over 100', c.getClosedPnL({ category: 'linear', limit: 101 })],
      ['transaction-log another account type', c.getTransactionLog({ accountType: 'CONTRACT' } as never)],
      ['transaction-log window over 7 days', c.getTransactionLog({ startTime: T0, endTime: T0 + 7 * 24 * HOUR + 1 })],
      ['transaction-log end before start', c.getTransactionLog({ startTime: T0, endTime: T0 - 1 })],
      ['transaction-log limit over 50', c.getTransactionLog({ limit: 51 })],
    ];
    for (const [what, r] of errors) assert.equal((await r).retCode, 10001, what);
  } finally {
    await sim.close();
  }
});
