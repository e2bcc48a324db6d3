// Market history endpoints through bybit-api's RestClientV5: mark, index and premium index klines,
// funding rate history, recent trades, open interest and risk limits, each with its documented
// parameter errors (retCode 10001), and the definitions behind them (sim/mark-price.ts,
// sim/funding.ts) checked against what the simulator serves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FUNDING_INTERVAL_MS, fundingRateFromPremiums, intervalPremiums, INTEREST_RATE } from '../../sim/funding.ts';
import type { KlineRow } from '../../sim/price-process.ts';
import { manualSim, restClient, T0 } from './helpers.ts';

const HOUR = 3600_000;
type Answer = { retCode: number; retMsg: string };
const refused = (r: Answer, what: string) => assert.equal(r.retCode, 10001, `${what}: ${r.retMsg}`);
const ok = (r: Answer) => assert.equal(r.retCode, 0, r.retMsg);
const any = (x: unknown) => x as never;

test('the funding formula: I in a calm market, premium beyond the band moves it, capped', () => {
  assert.equal(fundingRateFromPremiums([], 0.00375), INTEREST_RATE, 'no premium: the interest rate');
  assert.equal(fundingRateFromPremiums([0.0003, -0.0003, 0.0002], 0.00375), 0.0001, 'inside the ±0.05 % band around I');
  assert.equal(fundingRateFromPremiums([-0.002, -0.002], 0.00375), -0.0015, 'P + clamp(I - P) = -0.002 + 0.0005');
  assert.equal(fundingRateFromPremiums([0.001], 0.00375), 0.0005, '0.001 + clamp(-0.0009) = 0.001 - 0.0005');
  assert.equal(fundingRateFromPremiums([0.02], 0.00375), 0.00375, 'capped at upperFundingRate');
  assert.equal(fundingRateFromPremiums([-0.02], 0.005), -0.005, 'floored at -cap');
});

test('mark, index and premium index klines: the documented shape, one definition behind them, errors 10001', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    sim.tick(600);
    const kline = (await c.getKline({ category: 'linear', symbol: 'BTCUSDT', interval: '1', limit: 30 })).result.list;
    const index = await c.getIndexPriceKline({ category: 'linear', symbol: 'BTCUSDT', interval: '1', limit: 30 });
    ok(index);
    assert.equal(index.result.symbol, 'BTCUSDT');
    assert.equal(index.result.category, 'linear');
    assert.deepEqual(index.result.list, kline.map((r) => r.slice(0, 5)), 'index = the mid: its candles are the kline\'s');

    const mark = (await c.getMarkPriceKline({ category: 'linear', symbol: 'BTCUSDT', interval: '1', limit: 30 })).result.list;
    const premium = (await c.getPremiumIndexPriceKline({ category: 'linear', symbol: 'BTCUSDT', interval: '1', limit: 30 })).result.list;
    assert.equal(mark.length, 30);
    const starts = mark.map((r) => Number(r[0]));
    assert.deepEqual(starts, [...starts].sort((a, b) => b - a), 'newest first');
    // mark = mean of the current mid and the closes of the four candles before: recompute the
    // closes of the older rows from the index closes.
    const closes = [...kline].reverse().map((r) => Number(r[4])); // oldest first
    for (let j = 4; j < closes.length; j++) {
      const want = closes.slice(j - 4, j + 1).reduce((a, x) => a + x, 0) / 5;
      const row = mark[closes.length - 1 - j]!;
      assert.ok(Math.abs(Number(row[4]) - want) < 0.006, `mark close ${row[4]} is the mean of five closes ${want}`);
      const p = premium[closes.length - 1 - j]!;
      assert.ok(Math.abs(Number(p[4]) - (want / closes[j]! - 1)) < 1e-6, `premium close ${p[4]} = mark / index - 1`);
      assert.ok(Number(p[2]) >= Number(p[4]) && Number(p[3]) <= Number(p[4]) && Number(row[2]) >= Number(row[3]), 'high >= close >= low');
    }
    const ticker = (await c.getTickers({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]!;
    assert.equal(Number(ticker.markPrice).toFixed(2), Number(mark[0]![4]).toFixed(2), 'the ticker\'s mark is the mark kline\'s close');
    assert.equal(Number(ticker.indexPrice), sim.exchange.mid('BTCUSDT'));

    const hourly = (await c.getMarkPriceKline({ category: 'linear', symbol: 'BTCUSDT', interval: '60', limit: 3 })).result.list;
    assert.ok(hourly.every((r) => Number(r[0]) % HOUR === 0));
    const noCategory = await c.getIndexPriceKline(any({ symbol: 'ETHUSDT', interval: '5', limit: 2 }));
    ok(noCategory);
    assert.equal(noCategory.result.category, 'linear', 'category defaults to linear');
    const ranged = (await c.getPremiumIndexPriceKline({ category: 'linear', symbol: 'SOLUSDT', interval: '1', start: starts[9]!, end: starts[5]! })).result.list;
    assert.deepEqual(ranged.map((r) => Number(r[0])), starts.slice(5, 10), 'start and end bound the candles');

    for (const call of [
      (p: object) => c.getMarkPriceKline(any(p)),
      (p: object) => c.getIndexPriceKline(any(p)),
      (p: object) => c.getPremiumIndexPriceKline(any(p)),
    ]) {
      refused(await call({ category: 'spot', symbol: 'BTCUSDT', interval: '1' }), 'spot has no mark price');
      refused(await call({ category: 'inverse', symbol: 'BTCUSD', interval: '1' }), 'no inverse contracts');
      refused(await call({ category: 'linear', interval: '1' }), 'missing symbol');
      refused(await call({ category: 'linear', symbol: 'PEPEUSDT', interval: '1' }), 'unknown symbol');
      refused(await call({ category: 'linear', symbol: 'BTCUSDT' }), 'missing interval');
      refused(await call({ category: 'linear', symbol: 'BTCUSDT', interval: '2' }), 'bad interval');
      refused(await call({ category: 'linear', symbol: 'BTCUSDT', interval: '1', limit: 0 }), 'limit 0');
      refused(await call({ category: 'linear', symbol: 'BTCUSDT', interval: '1', limit: 1001 }), 'limit 1001');
    }
  } finally {
    await sim.close();
  }
});

test('funding history: a rate every 8 h from the premium of mark over index, newest first, with its errors', async () => {
  // A steady rise of 0.05 % a minute keeps the mark about two minutes behind the index: the
  // premium is near -0.1 %, beyond the band, so the rate differs from I.
  const sim = await manualSim({ priceProcess: { stepMs: 60_000, drift: 0.0005, volatility: 0 } });
  try {
    const c = restClient(sim);
    sim.advance(28 * HOUR);
    const r = await c.getFundingRateHistory({ category: 'linear', symbol: 'BTCUSDT' });
    ok(r);
    const list = r.result.list;
    const times = list.map((x) => Number(x.fundingRateTimestamp));
    // T0 is 12:00 UTC with two hours of history: settlements at 16:00, 00:00, 08:00 and 16:00.
    assert.deepEqual(times, [T0 + 28 * HOUR, T0 + 20 * HOUR, T0 + 12 * HOUR, T0 + 4 * HOUR]);
    assert.ok(times.every((t) => t % FUNDING_INTERVAL_MS === 0), 'at 00:00, 08:00, 16:00 UTC');
    for (const item of list) {
      assert.equal(item.symbol, 'BTCUSDT');
      const t = Number(item.fundingRateTimestamp);
      // The rate from the index candles the simulator serves, through the documented model.
      const idx = (await c.getIndexPriceKline({ category: 'linear', symbol: 'BTCUSDT', interval: '1', start: t - FUNDING_INTERVAL_MS - 4 * 60_000, end: t - 1, limit: 1000 })).result.list;
      const rows: KlineRow[] = [...idx].reverse().map(([s, o, h, l, cl]) => ({ start: Number(s), open: Number(o), high: Number(h), low: Number(l), close: Number(cl), volume: 0, turnover: 0 }));
      const want = fundingRateFromPremiums(intervalPremiums(rows, t), 0.00375);
      assert.equal(Number(item.fundingRate), want, `rate at ${new Date(t).toISOString()}`);
    }
    assert.ok(Number(list[0]!.fundingRate) < 0 && Number(list[0]!.fundingRate) > -0.00375, `a rising market pays shorts: ${list[0]!.fundingRate}`);

    const upTo = await c.getFundingRateHistory({ category: 'linear', symbol: 'BTCUSDT', endTime: T0 + 13 * HOUR });
    assert.deepEqual(upTo.result.list.map((x) => Number(x.fundingRateTimestamp)), [T0 + 12 * HOUR, T0 + 4 * HOUR], 'endTime alone: up to it');
    const window = await c.getFundingRateHistory({ category: 'linear', symbol: 'BTCUSDT', startTime: T0 + 5 * HOUR, endTime: T0 + 28 * HOUR, limit: 2 });
    assert.deepEqual(window.result.list.map((x) => Number(x.fundingRateTimestamp)), [T0 + 28 * HOUR, T0 + 20 * HOUR], 'limit keeps the newest');
    const calm = await c.getFundingRateHistory({ category: 'linear', symbol: 'ETHUSDT', limit: 1 });
    assert.equal(calm.result.list.length, 1);

    refused(await c.getFundingRateHistory(any({ symbol: 'BTCUSDT' })), 'missing category');
    refused(await c.getFundingRateHistory(any({ category: 'spot', symbol: 'BTCUSDT' })), 'spot has no funding');
    refused(await c.getFundingRateHistory(any({ category: 'linear' })), 'missing symbol');
    refused(await c.getFundingRateHistory({ category: 'linear', symbol: 'BTCUSDT', startTime: T0 }), 'startTime alone is an error, as documented');
    refused(await c.getFundingRateHistory({ category: 'linear', symbol: 'BTCUSDT', limit: 201 }), 'limit 201');
  } finally {
    await sim.close();
  }
});

test('recent trades: the exchange\'s prints newest first, fills included, per category limits', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    sim.tick(80);
    const spot = await c.getPublicTradingHistory({ category: 'spot', symbol: 'ETHUSDT' });
    ok(spot);
    assert.equal(spot.result.category, 'spot');
    assert.equal(spot.result.list.length, 60, 'spot: 60 by default');
    const t = spot.result.list.map((x) => Number(x.time));
    assert.deepEqual(t, [...t].sort((a, b) => b - a), 'newest first');
    assert.equal(t[0], sim.exchange.prices.time);
    assert.ok(spot.result.list.every((x) => x.symbol === 'ETHUSDT' && (x.side === 'Buy' || x.side === 'Sell') && /^\d+\.\d{5}$/.test(x.size) && x.isBlockTrade === false));
    const seqs = spot.result.list.map((x) => Number((x as unknown as { seq: string }).seq));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => b - a), 'the cross sequence follows time');

    const o = await c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Market', qty: '0.30' });
    ok(o);
    const exec = (await c.getExecutionList({ category: 'linear', orderId: o.result.orderId })).result.list[0]!;
    const lin = (await c.getPublicTradingHistory({ category: 'linear', symbol: 'ETHUSDT', limit: 3 })).result.list;
    assert.equal(lin.length, 3);
    assert.deepEqual([lin[0]!.price, lin[0]!.size, lin[0]!.side, lin[0]!.time], [exec.execPrice, exec.execQty, 'Sell', exec.execTime], 'the fill is the newest print');
    assert.equal((await c.getPublicTradingHistory({ category: 'linear', symbol: 'ETHUSDT' })).result.list.length, 81, 'linear: up to 500 by default (80 steps and the fill)');

    refused(await c.getPublicTradingHistory(any({ symbol: 'ETHUSDT' })), 'missing category');
    refused(await c.getPublicTradingHistory(any({ category: 'option', symbol: 'ETHUSDT' })), 'no options');
    refused(await c.getPublicTradingHistory(any({ category: 'spot' })), 'symbol is required for spot');
    refused(await c.getPublicTradingHistory({ category: 'spot', symbol: 'ETHUSDT', limit: 61 }), 'spot limit 61');
    refused(await c.getPublicTradingHistory({ category: 'linear', symbol: 'ETHUSDT', limit: 1001 }), 'linear limit 1001');
    ok(await c.getPublicTradingHistory({ category: 'linear', symbol: 'ETHUSDT', limit: 1000 }));
  } finally {
    await sim.close();
  }
});

test('open interest over time: from the accounts\' positions, one side and both, paged, with its errors', async () => {
  const sim = await manualSim({ credentials: [{ key: 'sim-key', secret: 'sim-secret', uid: '1000001' }, { key: 'k2', secret: 's2', uid: '1000002' }] });
  try {
    const a = restClient(sim);
    const b = restClient(sim, { key: 'k2', secret: 's2' });
    sim.advance(10 * 60_000);
    ok(await a.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.050' }));
    sim.advance(5 * 60_000);
    ok(await b.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Sell', orderType: 'Market', qty: '0.080' }));
    sim.advance(5 * 60_000);
    const r = await a.getOpenInterest({ category: 'linear', symbol: 'BTCUSDT', intervalTime: '5min', limit: 5 });
    ok(r);
    const rows = r.result.list as unknown as Array<{ openInterest: string; singleOpenInterest: string; timestamp: string }>;
    assert.deepEqual(rows.map((x) => Number(x.timestamp)), [20, 15, 10, 5, 0].map((m) => T0 + m * 60_000), 'every 5 minutes since the launch, newest first');
    // 10:00 long 0.05; 15:00 a short of 0.08 beside it: one side is the larger of longs and shorts.
    assert.deepEqual(rows.map((x) => Number(x.singleOpenInterest)), [0.08, 0.08, 0.05, 0, 0]);
    assert.deepEqual(rows.map((x) => Number(x.openInterest)), [0.16, 0.16, 0.1, 0, 0], 'both sides: twice one side');
    const ticker = (await a.getTickers({ category: 'linear', symbol: 'BTCUSDT' })).result.list[0]! as unknown as Record<string, string>;
    assert.equal(Number(ticker.openInterest), 0.16);
    assert.equal(Number(ticker.singleOpenInterest), 0.08);

    const p1 = await a.getOpenInterest({ category: 'linear', symbol: 'BTCUSDT', intervalTime: '5min', limit: 3 });
    assert.ok(p1.result.nextPageCursor);
    const p2 = await a.getOpenInterest({ category: 'linear', symbol: 'BTCUSDT', intervalTime: '5min', limit: 3, cursor: p1.result.nextPageCursor });
    assert.deepEqual(p2.result.list.map((x) => Number(x.timestamp)), [5, 0].map((m) => T0 + m * 60_000));
    assert.equal(p2.result.nextPageCursor, '');
    const hourly = await a.getOpenInterest({ category: 'linear', symbol: 'BTCUSDT', intervalTime: '1h' });
    assert.deepEqual(hourly.result.list.map((x) => Number(x.timestamp)), [T0]);
    const ranged = await a.getOpenInterest({ category: 'linear', symbol: 'BTCUSDT', intervalTime: '5min', startTime: T0 + 4 * 60_000, endTime: T0 + 16 * 60_000 });
    assert.deepEqual(ranged.result.list.map((x) => Number(x.timestamp)), [15, 10, 5].map((m) => T0 + m * 60_000));

    refused(await a.getOpenInterest(any({ symbol: 'BTCUSDT', intervalTime: '5min' })), 'missing category');
    refused(await a.getOpenInterest(any({ category: 'spot', symbol: 'BTCUSDT', intervalTime: '5min' })), 'spot has no open interest');
    refused(await a.getOpenInterest(any({ category: 'linear', intervalTime: '5min' })), 'missing symbol');
    refused(await a.getOpenInterest(any({ category: 'linear', symbol: 'BTCUSDT' })), 'missing intervalTime');
    refused(await a.getOpenInterest(any({ category: 'linear', symbol: 'BTCUSDT', intervalTime: '2h' })), 'bad intervalTime');
    refused(await a.getOpenInterest({ category: 'linear', symbol: 'BTCUSDT', intervalTime: '5min', limit: 201 }), 'limit 201');
  } finally {
    await sim.close();
  }
});

test('risk limits: tiers of every listed perpetual, tier 1 at the instrument\'s leverage and the positions\' 0.5 % maintenance margin', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    const all = await c.getRiskLimit({ category: 'linear' });
    ok(all);
    const linear = (await c.getInstrumentsInfo({ category: 'linear' })).result.list;
    assert.deepEqual([...new Set(all.result.list.map((t) => t.symbol))], linear.map((i) => i.symbol));
    assert.equal((all.result as unknown as { nextPageCursor: string }).nextPageCursor, '', 'fewer than 15 symbols: one page');
    for (const inst of linear) {
      const tiers = all.result.list.filter((t) => t.symbol === inst.symbol);
      assert.equal(tiers[0]!.maxLeverage, (inst as unknown as { leverageFilter: { maxLeverage: string } }).leverageFilter.maxLeverage);
      assert.equal(Number(tiers[0]!.maintenanceMargin), 0.005);
      assert.equal(tiers[0]!.isLowestRisk, 1);
      assert.ok(tiers.slice(1).every((t, k) => t.isLowestRisk === 0 && Number(t.riskLimitValue) > Number(tiers[k]!.riskLimitValue) && Number(t.maxLeverage) < Number(tiers[k]!.maxLeverage)));
    }
    const doge = (await c.getRiskLimit({ category: 'linear', symbol: 'DOGEUSDT' })).result.list;
    assert.ok(doge.length > 1 && doge.every((t) => t.symbol === 'DOGEUSDT'));
    refused(await c.getRiskLimit(any({ category: 'spot' })), 'spot has no risk limit');
    refused(await c.getRiskLimit({ category: 'linear', symbol: 'PEPEUSDT' }), 'unknown symbol');
    refused(await c.getRiskLimit(any({})), 'missing category');
  } finally {
    await sim.close();
  }
});
