// Conformance table: Bybit's documented response examples (tests/sim/fixtures, copied from the
// official v5 pages) against what the simulator answers, driven through bybit-api. Every field of
// a documented example must exist in the simulator's answer with the same JSON type (string,
// number, boolean, object, array, null), recursively; the simulator may send more fields.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { manualSim, PRIVATE_TOPICS, restClient, waitFor, WsRecorder } from './helpers.ts';

interface Example {
  name: string;
  kind: 'rest' | 'ws';
  source: { url: string; repo: string; path: string; commit: string };
  example: unknown;
}

const fixture = JSON.parse(readFileSync(new URL('./fixtures/bybit-v5-doc-examples.json', import.meta.url), 'utf8')) as { examples: Example[] };

const typeOf = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

/** Objects keyed by data, not by field name (cumFeeDetail: {"<fee coin>": "<amount>"}): only value types are compared. */
const MAP_FIELDS = new Set(['cumFeeDetail']);

/** Problems found comparing the documented shape with the actual one. */
export function compareShape(doc: unknown, actual: unknown, path = '$'): string[] {
  const td = typeOf(doc);
  const ta = typeOf(actual);
  if (td !== ta) return [`${path}: documented ${td}, simulator ${ta}${ta === 'undefined' ? ' (missing)' : ''}`];
  if (td === 'array') {
    const d = doc as unknown[];
    const a = actual as unknown[];
    if (d.length === 0) return [];
    if (a.length === 0) return [`${path}: documented a non-empty array, simulator sent an empty one`];
    return compareShape(d[0], a[0], `${path}[0]`);
  }
  if (td === 'object') {
    const out: string[] = [];
    if (MAP_FIELDS.has(path.slice(path.lastIndexOf('.') + 1))) {
      const want = typeOf(Object.values(doc as Record<string, unknown>)[0]);
      for (const [k, v] of Object.entries(actual as Record<string, unknown>)) if (typeOf(v) !== want) out.push(`${path}.${k}: documented map of ${want}, simulator ${typeOf(v)}`);
      return out;
    }
    for (const [k, v] of Object.entries(doc as Record<string, unknown>)) out.push(...compareShape(v, (actual as Record<string, unknown>)[k], `${path}.${k}`));
    return out;
  }
  return [];
}

test('compareShape finds missing fields and type changes (the checker itself can fail)', () => {
  assert.deepEqual(compareShape({ a: '1', b: [{ c: 1 }] }, { a: '1', b: [{ c: 2 }], extra: true }), []);
  assert.deepEqual(compareShape({ a: '1', b: [{ c: 1 }] }, { a: 1, b: [{}] }), ['$.a: documented string, simulator number', '$.b[0].c: documented number, simulator undefined (missing)']);
  assert.deepEqual(compareShape({ cumFeeDetail: { MNT: '0.1' } }, { cumFeeDetail: { USDT: '0.2' } }), []);
  assert.deepEqual(compareShape({ cumFeeDetail: { MNT: '0.1' } }, { cumFeeDetail: { USDT: 0.2 } }), ['$.cumFeeDetail.USDT: documented map of string, simulator number']);
});

/** A delta of a price step: both sides of the book moved (a fill changes one side only). */
const isStepDelta = (m: { type?: string; data: { b: unknown[]; a: unknown[] } }) => m.type === 'delta' && m.data.b.length > 0 && m.data.a.length > 0;

test('conformance: simulator answers have the documented field names and types', async (t) => {
  const sim = await manualSim();
  const priv = new WsRecorder(sim);
  const lin = new WsRecorder(sim);
  const spot = new WsRecorder(sim, { wsUrl: `ws://${sim.host}:${sim.port}/v5/public/spot` });
  try {
    await priv.subscribe(PRIVATE_TOPICS, 'linear');
    await lin.subscribe(['tickers.BTCUSDT', 'publicTrade.BTCUSDT', 'orderbook.50.BTCUSDT', 'kline.5.BTCUSDT'], 'linear');
    await spot.subscribe(['tickers.BTCUSDT'], 'spot');
    const c = restClient(sim);
    const created = await c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.010', orderLinkId: 'conf-1' });
    const resting = await c.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Limit', qty: '0.10', price: (Math.round(sim.exchange.mid('ETHUSDT') * 0.95)).toFixed(2), orderLinkId: 'conf-2' });
    assert.equal(resting.retCode, 0, resting.retMsg);
    sim.tick(2);
    await waitFor(() => priv.of('order').length && priv.of('execution').length && priv.of('position').length && priv.of('wallet').length, 'private pushes');
    await waitFor(() => lin.of('publicTrade.BTCUSDT').length && lin.of('tickers.BTCUSDT').length && lin.of('orderbook.50.BTCUSDT').some(isStepDelta) && lin.of('kline.5.BTCUSDT').length && spot.of('tickers.BTCUSDT').length, 'public pushes');

    // Raw pings: bybit-api consumes pong frames internally, so these two replies are read with `ws`.
    const pong = async (auth: boolean) => {
      const raw = new WebSocket(`ws://${sim.host}:${sim.port}/v5/private`);
      await new Promise((r, j) => raw.once('open', r).once('error', j));
      const next = () => new Promise<Record<string, unknown>>((r) => raw.once('message', (m) => r(JSON.parse(String(m)))));
      if (auth) {
        const { hmacHex } = await import('../../sim/auth.ts');
        const expires = Date.now() + 5000;
        const ack = next();
        raw.send(JSON.stringify({ op: 'auth', args: ['sim-key', expires, hmacHex('sim-secret', `GET/realtime${expires}`)] }));
        await ack;
      }
      const reply = next();
      raw.send(JSON.stringify({ req_id: 'test', op: 'ping' }));
      const out = await reply;
      raw.close();
      return out;
    };
    const strip = (m: Record<string, unknown>) => {
      const { wsKey: _k, isWSAPIResponse: _w, ...rest } = m;
      return rest;
    };
    const succeeded = async <T extends { retCode: number; retMsg: string }>(r: Promise<T>): Promise<T> => {
      const x = await r;
      assert.equal(x.retCode, 0, x.retMsg);
      return x;
    };
    const actual: Record<string, () => Promise<unknown> | unknown> = {
      'POST /v5/order/create': () => created,
      'GET /v5/order/realtime': () => c.getActiveOrders({ category: 'linear', symbol: 'ETHUSDT' }),
      'GET /v5/execution/list': () => c.getExecutionList({ category: 'linear', limit: 1 }),
      'GET /v5/position/list': () => c.getPositionInfo({ category: 'linear', symbol: 'BTCUSDT' }),
      'GET /v5/account/wallet-balance': () => c.getWalletBalance({ accountType: 'UNIFIED', coin: 'BTC' }),
      // An error answer has the shape of these empty results too: they must also succeed.
      'POST /v5/position/set-leverage': () => succeeded(c.setLeverage({ category: 'linear', symbol: 'BTCUSDT', buyLeverage: '20', sellLeverage: '20' })),
      'POST /v5/position/switch-mode': () => succeeded(c.switchPositionMode({ category: 'linear', symbol: 'SOLUSDT', mode: 3 })),
      'POST /v5/position/trading-stop': () => succeeded(c.setTradingStop({ category: 'linear', symbol: 'BTCUSDT', tpslMode: 'Full', positionIdx: 0, takeProfit: (Math.round(sim.exchange.mid('BTCUSDT') * 1.1 * 10) / 10).toFixed(1) })),
      'GET /v5/position/closed-pnl': async () => {
        await succeeded(c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Sell', orderType: 'Market', qty: '0.005', reduceOnly: true }));
        return c.getClosedPnL({ category: 'linear', limit: 1 });
      },
      'GET /v5/account/info': () => c.getAccountInfo(),
      // The documented example is a refusal: an account below portfolio margin's 1000 USD of equity.
      "POST /v5/account/set-margin-mode (the page's example: refused, with reasons)": async () => {
        const small = await manualSim({ balances: { USDT: 100 } });
        try {
          const r = await restClient(small).setMarginMode('PORTFOLIO_MARGIN');
          assert.equal(r.retCode, 3400045, r.retMsg);
          return r;
        } finally {
          await small.close();
        }
      },
      'GET /v5/account/transaction-log': () => c.getTransactionLog({ limit: 2 }),
      'GET /v5/market/instruments-info (linear)': () => c.getInstrumentsInfo({ category: 'linear', symbol: 'BTCUSDT' }),
      'GET /v5/market/instruments-info (spot)': () => c.getInstrumentsInfo({ category: 'spot', symbol: 'BTCUSDT' }),
      'GET /v5/market/tickers (spot)': () => c.getTickers({ category: 'spot', symbol: 'BTCUSDT' }),
      'GET /v5/market/tickers (linear; the page\'s Linear/Inverse example)': () => c.getTickers({ category: 'linear', symbol: 'BTCUSDT' }),
      'GET /v5/market/kline': () => c.getKline({ category: 'linear', symbol: 'BTCUSDT', interval: '60', limit: 2 }),
      'GET /v5/market/orderbook': () => c.getOrderbook({ category: 'spot', symbol: 'BTCUSDT' }),
      'ws order': () => strip(priv.of('order')[0]! as never),
      'ws execution': () => strip(priv.of('execution')[0]! as never),
      'ws position': () => strip(priv.of('position')[0]! as never),
      'ws wallet': () => strip(priv.of('wallet')[0]! as never),
      'ws tickers (linear)': () => strip(lin.of('tickers.BTCUSDT').at(-1)! as never),
      'ws tickers (spot)': () => strip(spot.of('tickers.BTCUSDT').at(-1)! as never),
      'ws publicTrade': () => strip(lin.of('publicTrade.BTCUSDT').at(-1)! as never),
      "ws orderbook (the page's '...' placeholders removed)": () => strip(lin.of('orderbook.50.BTCUSDT').find((m) => m.type === 'snapshot')! as never),
      'ws auth response': () => strip(priv.authEvents[0]!),
      'ws subscribe response (private)': () => strip(priv.responses.find((r) => r.op === 'subscribe' && r.wsKey === 'v5Private')!),
      'ws pong (public, linear)': () => pong(false),
      'ws pong (private)': () => pong(true),
      'GET /v5/market/mark-price-kline': () => c.getMarkPriceKline({ category: 'linear', symbol: 'BTCUSDT', interval: '15', limit: 1 }),
      "GET /v5/market/index-price-kline (the page's example is inverse; linear has the same fields)": () => c.getIndexPriceKline({ category: 'linear', symbol: 'BTCUSDT', interval: '1', limit: 2 }),
      'GET /v5/market/premium-index-price-kline': () => c.getPremiumIndexPriceKline({ category: 'linear', symbol: 'BTCUSDT', interval: 'D' }),
      'GET /v5/market/funding/history': async () => {
        // A settlement needs the clock past 16:00 UTC: another simulator, with minute steps to get there fast.
        const other = await manualSim({ priceProcess: { stepMs: 60_000 } });
        try {
          other.advance(5 * 3_600_000);
          return await restClient(other).getFundingRateHistory({ category: 'linear', symbol: 'ETHUSDT' });
        } finally {
          await other.close();
        }
      },
      'GET /v5/market/recent-trade': () => c.getPublicTradingHistory({ category: 'spot', symbol: 'BTCUSDT', limit: 1 }),
      "GET /v5/market/open-interest (the page's example is inverse; linear has the same fields)": () => c.getOpenInterest({ category: 'linear', symbol: 'BTCUSDT', intervalTime: '5min', limit: 5 }),
      "GET /v5/market/risk-limit (the page's example is inverse; its '....' placeholder removed)": () => c.getRiskLimit({ category: 'linear', symbol: 'BTCUSDT' }),
      'POST /v5/order/disconnected-cancel-all': () => c.setDisconnectCancelAllWindowV2({ product: 'DERIVATIVES', timeWindow: 10 } as never),
      "GET /v5/account/query-dcp-info (the page's comment lines removed)": () => c.getDCPInfo(),
      // Batch endpoints: resting spot buys well below the mid, amended, then one cancelled and one
      // unknown orderLinkId (the cancel page's example refuses its second order with 170213).
      'POST /v5/order/create-batch (spot)': () => succeeded(c.batchSubmitOrders('spot', batchSpot())),
      "POST /v5/order/amend-batch (the page's example is option; spot and linear have the same fields)": () =>
        succeeded(c.batchAmendOrders('spot', [{ symbol: 'BTCUSDT', orderLinkId: 'conf-b1', price: spotPrice('BTCUSDT', 0.8) }, { symbol: 'ETHUSDT', orderLinkId: 'conf-b2', price: spotPrice('ETHUSDT', 0.8) }])),
      'POST /v5/order/cancel-batch (spot, one order refused with 170213)': async () => {
        const r = await succeeded(c.batchCancelOrders('spot', [{ symbol: 'BTCUSDT', orderLinkId: 'conf-b1' }, { symbol: 'ETHUSDT', orderLinkId: 'conf-no-such-order' }]));
        assert.deepEqual(r.retExtInfo.list.map((x) => x.code), [0, 170213]);
        return r;
      },
      'ws kline': () => strip(lin.of('kline.5.BTCUSDT').at(-1)! as never),
      'ws orderbook delta': () => strip(lin.of('orderbook.50.BTCUSDT').find(isStepDelta)! as never),
    };
    function spotPrice(symbol: string, f: number): string {
      const tick = Number(sim.exchange.instruments.get('spot', symbol)!.tickSize);
      const d = Math.max(0, -Math.floor(Math.log10(tick)));
      return (Math.floor((sim.exchange.mid(symbol) * f) / tick) * tick).toFixed(d);
    }
    function batchSpot() {
      return [
        { symbol: 'BTCUSDT', side: 'Buy' as const, orderType: 'Limit' as const, qty: '0.001', price: spotPrice('BTCUSDT', 0.9), timeInForce: 'GTC' as const, orderLinkId: 'conf-b1' },
        { symbol: 'ETHUSDT', side: 'Buy' as const, orderType: 'Limit' as const, qty: '0.01', price: spotPrice('ETHUSDT', 0.9), timeInForce: 'GTC' as const, orderLinkId: 'conf-b2' },
      ];
    }
    const rows: string[] = [];
    const failures: string[] = [];
    for (const ex of fixture.examples) {
      const get = actual[ex.name];
      assert.ok(get, `no simulator call mapped for documented example "${ex.name}"`);
      const got = await get();
      const problems = compareShape(ex.example, got);
      rows.push(`| ${ex.name} | ${problems.length === 0 ? 'ok' : problems.join('; ')} | ${ex.source.url} |`);
      failures.push(...problems.map((p) => `${ex.name}: ${p}`));
    }
    for (const line of ['| documented example | result | source |', '|---|---|---|', ...rows]) t.diagnostic(line);
    assert.deepEqual(failures, []);
    assert.equal(rows.length, fixture.examples.length);
  } finally {
    priv.close();
    lin.close();
    spot.close();
    await sim.close();
  }
});
