// Price process determinism and modes (random walk, planted momentum pattern, kline replay), and
// the public market endpoints (time, instruments, kline, orderbook) through RestClientV5.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { RestClientV5 } from 'bybit-api';
import { DEFAULT_KLINE_CSV, parseKlineCsv } from '../../sim/price-process.ts';
import { manualSim, restClient, T0 } from './helpers.ts';

async function scenario(seed: number, instanceNonce = 'nonce-a') {
  const sim = await manualSim({ seed, instanceNonce });
  try {
    const c = restClient(sim);
    const path: number[] = [];
    for (let i = 0; i < 50; i++) {
      sim.tick();
      path.push(sim.exchange.mid('BTCUSDT'));
    }
    const price = (Math.floor(sim.exchange.mid('BTCUSDT') * 0.999 * 10) / 10).toFixed(1);
    await c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '2.000', price, orderLinkId: 'det-1' });
    await c.submitOrder({ category: 'spot', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Market', qty: '1234.5' });
    for (let i = 0; i < 600; i++) sim.tick();
    return { path, orders: sim.orders(), executions: sim.executions(), state: sim.state() };
  } finally {
    await sim.close();
  }
}

test('same seed, nonce and inputs give the same prices, orders and executions; another seed does not', async () => {
  const a = await scenario(11);
  const b = await scenario(11);
  const c = await scenario(12);
  assert.deepEqual(a.path, b.path);
  assert.deepEqual(a.orders, b.orders);
  assert.deepEqual(a.executions, b.executions);
  assert.deepEqual(a.state.accounts, b.state.accounts);
  assert.notDeepEqual(a.path, c.path);
  assert.ok(a.executions.length >= 1);
});

test('another instance nonce: the same market and fills under ids never seen before', async () => {
  const a = await scenario(11, 'nonce-a');
  const b = await scenario(11, 'nonce-b');
  const strip = (xs: Array<Record<string, unknown>>) => xs.map(({ orderId: _o, execId: _e, ...rest }) => rest);
  assert.deepEqual(a.path, b.path);
  assert.deepEqual(strip(a.orders), strip(b.orders));
  assert.deepEqual(strip(a.executions), strip(b.executions));
  const ids = (s: typeof a) => [...s.orders.map((o) => String(o.orderId)), ...s.executions.map((e) => String(e.execId))];
  const seen = new Set(ids(a));
  assert.ok(ids(b).length >= 3);
  assert.deepEqual(ids(b).filter((id) => seen.has(id)), [], 'no id of the first instance comes back');
});

test('pattern mode plants momentum: returns are autocorrelated in momentum regimes only', async () => {
  const sim = await manualSim({ priceProcess: { mode: 'pattern', momentum: 0.6, patternRegimeSteps: 400, volatility: 0.0005, historyMinutes: 0 } });
  try {
    const byRegime: Record<string, Array<[number, number]>> = { momentum: [], noise: [] };
    let prev = sim.exchange.mid('ETHUSDT');
    let lastR = 0;
    for (let i = 0; i < 3200; i++) {
      const regime = sim.exchange.prices.regimeAt(sim.exchange.prices.steps + 1);
      sim.tick();
      const p = sim.exchange.mid('ETHUSDT');
      const r = Math.log(p / prev);
      if (i > 0) byRegime[regime]!.push([lastR, r]);
      prev = p;
      lastR = r;
    }
    const corr = (xs: Array<[number, number]>) => {
      const n = xs.length;
      const mx = xs.reduce((s, [x]) => s + x, 0) / n;
      const my = xs.reduce((s, [, y]) => s + y, 0) / n;
      let sxy = 0, sxx = 0, syy = 0;
      for (const [x, y] of xs) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) ** 2;
        syy += (y - my) ** 2;
      }
      return sxy / Math.sqrt(sxx * syy);
    };
    const m = corr(byRegime.momentum!);
    const n = corr(byRegime.noise!);
    assert.ok(m > 0.4, `momentum autocorrelation ${m}`);
    assert.ok(Math.abs(n) < 0.15, `noise autocorrelation ${n}`);
  } finally {
    await sim.close();
  }
});

test('replay mode walks the shipped kline CSV', async () => {
  const { symbol, rows } = parseKlineCsv(readFileSync(DEFAULT_KLINE_CSV, 'utf8'));
  assert.equal(symbol, 'BTCUSDT');
  assert.ok(rows.length >= 1000);
  const sim = await manualSim({ priceProcess: { mode: 'replay', historyMinutes: 0 } });
  try {
    assert.equal(sim.exchange.mid('BTCUSDT'), rows[0]!.close);
    for (let k = 1; k <= 5; k++) {
      sim.tick();
      assert.equal(sim.exchange.mid('BTCUSDT'), rows[k]!.close);
    }
    const eth = sim.exchange.mid('ETHUSDT');
    assert.ok(Math.abs(eth / 3000 - rows[5]!.close / rows[0]!.close) < 1e-4, 'other symbols follow the same relative moves');
  } finally {
    await sim.close();
  }
});

test('market endpoints: time, instruments filters, kline intervals, orderbook depth', async () => {
  const sim = await manualSim();
  try {
    const c = new RestClientV5({ baseUrl: sim.restUrl });
    const time = await c.getServerTime();
    assert.equal(time.result.timeSecond, String(Math.floor(T0 / 1000)));

    const spot = (await c.getInstrumentsInfo({ category: 'spot', symbol: 'BTCUSDT' })).result.list[0]! as unknown as Record<string, Record<string, string>>;
    assert.deepEqual(Object.keys(spot.lotSizeFilter!).filter((k) => ['basePrecision', 'quotePrecision', 'minOrderAmt', 'minOrderQty', 'maxMarketOrderQty'].includes(k)).length, 5);
    const lin = (await c.getInstrumentsInfo({ category: 'linear' })).result.list;
    assert.deepEqual(lin.map((i) => i.symbol), ['BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'XRPUSDT', 'DOGEUSDT', 'ADAUSDT', 'LTCUSDT', 'LINKUSDT', 'AVAXUSDT', 'DOTUSDT', 'BNBUSDT', 'TRXUSDT']);
    const btc = lin[0]! as unknown as Record<string, Record<string, string>>;
    assert.equal(btc.lotSizeFilter!.qtyStep, '0.001');
    assert.equal(btc.lotSizeFilter!.minNotionalValue, '5');
    assert.equal(btc.priceFilter!.tickSize, '0.10');

    const k1 = (await c.getKline({ category: 'linear', symbol: 'BTCUSDT', interval: '1', limit: 5 })).result.list;
    assert.equal(k1.length, 5);
    const starts = k1.map((r) => Number(r[0]));
    assert.deepEqual(starts, [...starts].sort((a, b) => b - a), 'newest first');
    assert.ok(starts.every((s, i) => i === 0 || starts[i - 1]! - s === 60_000));
    for (const [, o, h, l, cl] of k1) assert.ok(Number(h) >= Math.max(Number(o), Number(cl)) && Number(l) <= Math.min(Number(o), Number(cl)));
    const k5 = (await c.getKline({ category: 'linear', symbol: 'BTCUSDT', interval: '5', limit: 3 })).result.list;
    assert.ok(k5.every((r) => Number(r[0]) % 300_000 === 0));
    const bad = await c.getKline({ category: 'linear', symbol: 'BTCUSDT', interval: '7' as never });
    assert.equal(bad.retCode, 10001);

    const ob = (await c.getOrderbook({ category: 'linear', symbol: 'BTCUSDT', limit: 10 })).result;
    assert.equal(ob.b.length, 10);
    assert.equal(ob.a.length, 10);
    assert.ok(Number(ob.a[0]![0]) > Number(ob.b[0]![0]));
    assert.ok(ob.a.every((l, i) => i === 0 || Number(l[0]) > Number(ob.a[i - 1]![0])));
    const unknown = await c.getTickers({ category: 'linear', symbol: 'PEPEUSDT' });
    assert.equal(unknown.retCode, 10001);
    assert.equal(unknown.retMsg, 'params error: symbol invalid');
  } finally {
    await sim.close();
  }
});
