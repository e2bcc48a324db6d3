// The instrument listing: twelve spot and linear pairs by default (the first three as they always
// were), a JSON file instead, and changes while running through the admin API (add, change
// filters, delist, relist), kept in the state file with the DCP windows and the funding history;
// a state file of version 1 still loads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../runtime/clock.ts';
import { DEFAULT_INSTRUMENTS, LISTED_INSTRUMENTS, MORE_INSTRUMENTS, type Instrument } from '../../sim/instruments.ts';
import { decimalsOf, isMultiple } from '../../sim/num.ts';
import { startSimulator, type Simulator } from '../../sim/server.ts';
import { historyFileOf } from '../../sim/persistence.ts';
import { manualSim, restClient, T0 } from './helpers.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'sim-listing-'));
const HOUR = 3600_000;

async function admin(sim: Simulator, body: unknown): Promise<{ retCode: number; retMsg: string; result: Record<string, unknown> }> {
  const r = await fetch(`${sim.restUrl}/sim/instruments`, { method: 'POST', body: JSON.stringify(body) });
  return (await r.json()) as never;
}

/** A market order just above the instrument's minimums. */
function minimumOrder(i: Instrument, mid: number): Record<string, unknown> {
  if (i.category === 'spot') return { category: 'spot', symbol: i.symbol, side: 'Buy', orderType: 'Market', qty: String(Number(i.minOrderAmt) * 2), marketUnit: 'quoteCoin' };
  const step = Number(i.qtyStep);
  const qty = Math.max(Number(i.minOrderQty), Math.ceil((Number(i.minNotionalValue) * 1.5) / mid / step) * step);
  return { category: 'linear', symbol: i.symbol, side: 'Buy', orderType: 'Market', qty: qty.toFixed(decimalsOf(i.qtyStep)) };
}

test('the default listing: the three pairs as they were and nine more, tradable at their minimums, at sensible prices', async () => {
  const sim = await manualSim({ balances: { USDT: 1_000_000 } });
  try {
    const c = restClient(sim);
    for (const category of ['spot', 'linear'] as const) {
      const listed = (await c.getInstrumentsInfo({ category })).result.list.map((i) => i.symbol);
      assert.deepEqual(listed, LISTED_INSTRUMENTS.filter((i) => i.category === category).map((i) => i.symbol));
      assert.equal(listed.length, 12);
    }
    assert.deepEqual(LISTED_INSTRUMENTS.slice(0, DEFAULT_INSTRUMENTS.length), [...DEFAULT_INSTRUMENTS], 'the three come first, unchanged');
    for (const i of MORE_INSTRUMENTS) {
      const mid = sim.exchange.mid(i.symbol);
      assert.ok(Math.abs(mid / i.initialPrice - 1) < 0.05, `${i.symbol}: mid ${mid} near its starting price ${i.initialPrice} after the warm-up`);
      const ticks = LISTED_INSTRUMENTS.filter((x) => x.symbol === i.symbol).map((x) => Number(x.tickSize));
      assert.ok(isMultiple(mid, Math.min(...ticks)), `${i.symbol}: mid on the tick grid`);
      assert.ok((await c.getKline({ category: i.category, symbol: i.symbol, interval: '1', limit: 120 })).result.list.length === 120, `${i.symbol}: two hours of klines`);
      const r = await c.submitOrder(minimumOrder(i, mid) as never);
      assert.equal(r.retCode, 0, `${i.category} ${i.symbol}: ${r.retMsg}`);
      const o = (await c.getActiveOrders({ category: i.category, orderId: r.result.orderId })).result.list[0]!;
      assert.equal(o.orderStatus, 'Filled', `${i.category} ${i.symbol}`);
    }
  } finally {
    await sim.close();
  }
});

test('more symbols change no path of the others: the three keep their seeded paths, the rest have their own', async () => {
  const paths = async (instruments: readonly Instrument[], symbols: string[]) => {
    const sim = await manualSim({ instruments, instanceNonce: 'same' });
    try {
      const out: number[][] = symbols.map(() => []);
      for (let k = 0; k < 200; k++) {
        sim.tick();
        symbols.forEach((s, j) => out[j]!.push(sim.exchange.mid(s)));
      }
      return out;
    } finally {
      await sim.close();
    }
  };
  const three = ['BTCUSDT', 'ETHUSDT', 'SOLUSDT'];
  assert.deepEqual(await paths(LISTED_INSTRUMENTS, three), await paths(DEFAULT_INSTRUMENTS, three));
  const noXrp = LISTED_INSTRUMENTS.filter((i) => i.symbol !== 'XRPUSDT');
  assert.deepEqual(await paths(noXrp, ['DOGEUSDT', 'BNBUSDT']), await paths(LISTED_INSTRUMENTS, ['DOGEUSDT', 'BNBUSDT']));
  const [doge, bnb] = await paths(LISTED_INSTRUMENTS, ['DOGEUSDT', 'BNBUSDT']);
  const ret = (xs: number[]) => xs.slice(1).map((x, k) => Math.log(x / xs[k]!));
  assert.notDeepEqual(ret(doge!).slice(0, 20).map((x) => x.toFixed(6)), ret(bnb!).slice(0, 20).map((x) => x.toFixed(6)), 'each symbol has its own stream');
});

test('an instrument file replaces the default listing; a wrong one stops the start with the path and the reason', async () => {
  const dir = tmp();
  try {
    const file = join(dir, 'instruments.json');
    const pepe = { category: 'spot', symbol: 'PEPEUSDT', baseCoin: 'PEPE', tickSize: '0.00000001', basePrecision: '1', minOrderQty: '100000', maxLimitOrderQty: '10000000000', maxMarketOrderQty: '2000000000', initialPrice: 0.00001 };
    const near = { category: 'linear', symbol: 'NEARUSDT', baseCoin: 'NEAR', tickSize: '0.001', qtyStep: '0.1', minOrderQty: '0.1', maxOrderQty: '200000.0', maxMktOrderQty: '40000.0', initialPrice: 5, maxLeverage: '50.00' };
    writeFileSync(file, JSON.stringify({ instruments: [pepe, near] }));
    const sim = await manualSim({ instrumentsFile: file });
    try {
      const c = restClient(sim);
      assert.deepEqual((await c.getInstrumentsInfo({ category: 'spot' })).result.list.map((i) => i.symbol), ['PEPEUSDT']);
      const lin = (await c.getInstrumentsInfo({ category: 'linear', symbol: 'NEARUSDT' })).result.list[0]! as unknown as Record<string, Record<string, string>>;
      assert.equal(lin.priceFilter!.maxPrice, '19999.998', 'Bybit\'s maxPrice: 19 999 998 ticks');
      assert.equal(lin.lotSizeFilter!.minNotionalValue, '5', 'defaults filled in');
      const r = await c.submitOrder({ category: 'linear', symbol: 'NEARUSDT', side: 'Sell', orderType: 'Market', qty: '2.0' });
      assert.equal(r.retCode, 0, r.retMsg);
      assert.equal((await c.getTickers({ category: 'linear', symbol: 'BTCUSDT' })).retCode, 10001, 'only what the file lists');
    } finally {
      await sim.close();
    }
    const bad: Array<[string, unknown, RegExp]> = [
      ['not JSON', '{', /cannot be read/],
      ['empty', [], /non-empty array/],
      ['missing filter', [{ ...near, qtyStep: undefined }], /entry 0: qtyStep: Required/],
      ['minimum off the step', [{ ...near, minOrderQty: '0.15' }], /entry 0: minOrderQty 0.15 is not a multiple of qtyStep 0.1/],
      ['not a decimal', [{ ...pepe, tickSize: '1e-8' }], /entry 0: tickSize: a decimal string/],
      ['twice', [pepe, pepe], /spot:PEPEUSDT is listed twice/],
      ['unknown field', [{ ...pepe, colour: 'red' }], /Unrecognized key/],
    ];
    for (const [what, content, reason] of bad) {
      writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
      await assert.rejects(manualSim({ instrumentsFile: file }), (e: Error) => {
        assert.match(e.message, reason, what);
        assert.ok(e.message.includes(file), `${what}: names the file`);
        return true;
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('admin: add an instrument, change its filters, delist and relist, while running; kept across a restart with DCP and funding', async () => {
  const dir = tmp();
  const file = join(dir, 'state.json');
  const clock = new ManualClock(T0);
  try {
    // 10 s steps: the hours up to a funding settlement pass quickly.
    const priceProcess = { stepMs: 10_000 };
    const a = await startSimulator({ seed: 7, clock, stateFile: file, priceProcess });
    let funding: unknown;
    try {
      const c = restClient(a);
      a.tick(3);
      const added = await admin(a, { category: 'linear', symbol: 'NEARUSDT', baseCoin: 'NEAR', tickSize: '0.001', qtyStep: '0.1', minOrderQty: '0.1', maxOrderQty: '200000.0', maxMktOrderQty: '40000.0', initialPrice: 5 });
      assert.equal(added.retCode, 0, added.retMsg);
      const near = (await c.getInstrumentsInfo({ category: 'linear', symbol: 'NEARUSDT' })).result.list[0]!;
      assert.equal(near.launchTime, String(a.exchange.now()), 'listed now');
      const warm = (await c.getKline({ category: 'linear', symbol: 'NEARUSDT', interval: '1', limit: 200 })).result.list;
      assert.ok(warm.length >= 120 && warm.length <= 121, `with two hours of warm-up history (${warm.length} candles)`);
      assert.equal(Number(warm[0]![0]), Math.floor(a.exchange.prices.time / 60_000) * 60_000, 'up to now');
      assert.equal((await c.submitOrder({ category: 'linear', symbol: 'NEARUSDT', side: 'Buy', orderType: 'Market', qty: '1.5' })).retCode, 0);

      const changed = await admin(a, { category: 'linear', symbol: 'NEARUSDT', qtyStep: '1', minOrderQty: '10', maxMktOrderQty: '500' });
      assert.equal(changed.retCode, 0, changed.retMsg);
      assert.equal((changed.result.lotSizeFilter as Record<string, string>).minOrderQty, '10');
      assert.equal((await c.submitOrder({ category: 'linear', symbol: 'NEARUSDT', side: 'Buy', orderType: 'Market', qty: '5' })).retCode, 10001, 'below the new minimum');
      assert.equal((await c.submitOrder({ category: 'linear', symbol: 'NEARUSDT', side: 'Buy', orderType: 'Market', qty: '600' })).retCode, 10001, 'above the new market maximum');
      assert.equal((await admin(a, { category: 'linear', symbol: 'NEARUSDT', baseCoin: 'XYZ' })).retCode, 10001, 'coins are not a filter');
      assert.equal((await admin(a, { category: 'linear', symbol: 'NEARUSDT', tickSize: 'abc' })).retCode, 10001);
      assert.equal((await admin(a, { category: 'spot', symbol: 'NEWUSDT', baseCoin: 'NEW' })).retCode, 10001, 'a new instrument needs its filters');

      // Delist: open orders are cancelled as the exchange does, new ones refused, the list hides it.
      const px = (Math.floor(a.exchange.mid('ETHUSDT') * 0.95 * 100) / 100).toFixed(2);
      assert.equal((await c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Limit', qty: '0.10', price: px, orderLinkId: 'before-delist' })).retCode, 0);
      assert.equal((await c.submitOrder({ category: 'spot', symbol: 'XRPUSDT', side: 'Buy', orderType: 'Limit', qty: '20.00', price: '0.5000', orderLinkId: 'spot-before-delist' })).retCode, 0);
      assert.equal((await admin(a, { category: 'linear', symbol: 'ETHUSDT', status: 'Delivering' })).retCode, 0);
      assert.equal((await admin(a, { category: 'spot', symbol: 'XRPUSDT', status: 'Closed' })).retCode, 0);
      const gone = (await c.getActiveOrders({ category: 'linear', orderLinkId: 'before-delist' })).result.list[0]!;
      assert.deepEqual([gone.orderStatus, gone.cancelType], ['Cancelled', 'CancelBySettle']);
      const spotGone = (await c.getActiveOrders({ category: 'spot', orderLinkId: 'spot-before-delist' })).result.list[0]!;
      assert.deepEqual([spotGone.orderStatus, spotGone.cancelType], ['Cancelled', 'CancelByAdmin']);
      const refused = await c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Market', qty: '0.10' });
      assert.deepEqual([refused.retCode, refused.retMsg], [110074, 'This contract is not live']);
      assert.equal((await c.submitOrder({ category: 'spot', symbol: 'XRPUSDT', side: 'Buy', orderType: 'Market', qty: '10' })).retCode, 170121);
      assert.equal((await c.submitOrder({ category: 'spot', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Market', qty: '10' })).retCode, 0, 'ETH spot still trades');
      const trading = (await c.getInstrumentsInfo({ category: 'linear' })).result.list.map((i) => i.symbol);
      assert.ok(!trading.includes('ETHUSDT') && trading.includes('NEARUSDT'), 'by default only Trading symbols are listed');
      const tickers = (await c.getTickers({ category: 'linear' })).result.list.map((t) => t.symbol);
      assert.ok(!tickers.includes('ETHUSDT') && tickers.includes('NEARUSDT'), 'tickers leave it out too');
      assert.equal((await c.getTickers({ category: 'linear', symbol: 'ETHUSDT' })).retCode, 0, 'its market data is still there when asked by name');
      const delivering = (await c.getInstrumentsInfo({ category: 'linear', status: 'Delivering' } as never)).result.list;
      assert.deepEqual(delivering.map((i) => [i.symbol, i.status]), [['ETHUSDT', 'Delivering']]);
      assert.equal((await admin(a, { category: 'spot', symbol: 'XRPUSDT', status: 'Trading' })).retCode, 0, 'relisted');
      assert.equal((await c.submitOrder({ category: 'spot', symbol: 'XRPUSDT', side: 'Buy', orderType: 'Market', qty: '10' })).retCode, 0);

      assert.equal((await c.setDisconnectCancelAllWindowV2({ product: 'SPOT', timeWindow: 42 } as never)).retCode, 0);
      a.advance(5 * HOUR);
      funding = (await c.getFundingRateHistory({ category: 'linear', symbol: 'BTCUSDT' })).result.list;
      assert.equal((funding as unknown[]).length, 1);
      const listing = (await (await fetch(`${a.restUrl}/sim/instruments`)).json()) as { result: { list: Array<{ category: string; symbol: string; status: string }> } };
      assert.equal(listing.result.list.find((i) => i.category === 'linear' && i.symbol === 'ETHUSDT')!.status, 'Delivering');
    } finally {
      await a.close();
    }
    const saved = JSON.parse(readFileSync(file, 'utf8')) as { version: number };
    assert.equal(saved.version, 2);

    const b = await startSimulator({ seed: 7, clock, stateFile: file, priceProcess });
    try {
      const c = restClient(b);
      const near = (await c.getInstrumentsInfo({ category: 'linear', symbol: 'NEARUSDT' })).result.list[0]! as unknown as Record<string, Record<string, string>>;
      assert.equal(near.lotSizeFilter!.minOrderQty, '10', 'the added instrument and its changed filters came back');
      assert.equal((await c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Market', qty: '0.10' })).retCode, 110074, 'still delisted');
      assert.deepEqual((await c.getDCPInfo()).result.dcpInfos, [{ product: 'SPOT', dcpStatus: 'ON', timeWindow: '42' }]);
      assert.deepEqual((await c.getFundingRateHistory({ category: 'linear', symbol: 'BTCUSDT' })).result.list, funding, 'the funding history came back');
      assert.ok(b.exchange.mid('NEARUSDT') > 0);
    } finally {
      await b.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a state file of version 1 still loads (the configured listing, no DCP window yet) and is written back as version 2', async () => {
  // tests/sim/fixtures/state-v1: what the simulator of commit afc0a07 (state version 1, three
  // symbols, no listing, no per-series streams) wrote; tests/sim/persistence-position.test.ts reads
  // its account in detail.
  const dir = tmp();
  const file = join(dir, 'state.json');
  const fixture = new URL('./fixtures/state-v1/', import.meta.url);
  copyFileSync(new URL('state.json', fixture), file);
  copyFileSync(new URL('state.history.jsonl', fixture), historyFileOf(file));
  const v1 = JSON.parse(readFileSync(file, 'utf8')) as { version: number; savedAt: number; ext?: unknown };
  assert.equal(v1.version, 1);
  assert.equal(v1.ext, undefined);
  const clock = new ManualClock(v1.savedAt + 1000);
  try {
    const b = await startSimulator({ seed: 7, clock, stateFile: file });
    try {
      const c = restClient(b);
      assert.equal((await c.getActiveOrders({ category: 'linear', orderLinkId: 'v1-rest' })).result.list.length, 1, 'the account came back: its resting bid');
      assert.equal((await c.getInstrumentsInfo({ category: 'linear' })).result.list.length, 12, 'the configured listing (the default twelve)');
      assert.ok(Math.abs(b.exchange.mid('DOGEUSDT') / 0.15 - 1) < 0.05, 'a symbol the old file lacks gets its series');
      assert.deepEqual((await c.getDCPInfo()).result.dcpInfos, []);
      b.tick(2);
    } finally {
      await b.close();
    }
    const again = JSON.parse(readFileSync(file, 'utf8')) as { version: number; ext?: { instruments: unknown[] } };
    assert.equal(again.version, 2);
    assert.equal(again.ext?.instruments.length, 24);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
