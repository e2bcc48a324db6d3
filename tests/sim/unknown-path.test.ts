// A request the simulator has no endpoint for gets Bybit's answer for an unknown path: HTTP 404,
// an empty body, Content-Type application/json (Bybit's error page: "404 Cannot find path"; the
// headers of such an answer as ccxt/ccxt#19322 recorded them). So does a known path asked with
// another method. Nothing of it crashes the simulator, which goes on answering.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { manualSim, restClient } from './helpers.ts';

/** What bybit-api rejects with for an HTTP error status. */
function is404(e: unknown): boolean {
  const x = e as { code?: unknown; body?: unknown; headers?: Record<string, string> };
  assert.equal(x.code, 404);
  assert.equal(x.body, '');
  assert.equal(x.headers?.['content-length'], '0');
  assert.match(String(x.headers?.['content-type']), /^application\/json/);
  return true;
}

test('unknown endpoints and wrong methods through bybit-api: HTTP 404 with an empty body, before any key check', async () => {
  const sim = await manualSim();
  try {
    const c = restClient(sim);
    const stranger = restClient(sim, { key: 'not-a-key', secret: 'x' });
    await assert.rejects(c.getInsurance(), is404, 'public endpoint the simulator does not implement');
    await assert.rejects(c.getLongShortRatio({ category: 'linear', symbol: 'BTCUSDT', period: '1h' }), is404);
    await assert.rejects(c.getBorrowHistory(), is404, 'private endpoint the simulator does not implement');
    await assert.rejects(stranger.getBorrowHistory(), is404, 'the path is checked before the key (no 10003)');
    await assert.rejects(c.getSpotBorrowCheck('BTCUSDT', 'Buy'), is404, 'spot borrow check is not implemented');
    await assert.rejects(c.postPrivate('/v5/order/pre-check', { category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Market', qty: '0.001' }), is404, 'order pre-check is not implemented');
    await assert.rejects(c.postPrivate('/v5/order/realtime', { category: 'linear' }), is404, 'a GET endpoint asked with POST');
    await assert.rejects(c.get('/v5/order/create', { category: 'linear' }), is404, 'a POST endpoint asked with GET');
    assert.equal((await c.getServerTime()).retCode, 0, 'still serving');
    assert.equal(sim.orders().length, 0, 'nothing was executed');
  } finally {
    await sim.close();
  }
});

test('unknown paths and methods over raw HTTP: 404, empty JSON body, any method, odd paths and bodies', async () => {
  const sim = await manualSim();
  try {
    const cases: Array<[string, string, string?]> = [
      ['GET', '/'],
      ['GET', '/v5'],
      ['GET', '/v5/market/no-such-thing?category=linear'],
      ['GET', '/v5/order/create'],
      ['POST', '/v5/market/time', '{}'],
      ['PUT', '/v5/order/create', '{"category":"linear"}'],
      ['DELETE', '/v5/order/cancel'],
      ['PATCH', '/v5/position/list'],
      ['OPTIONS', '/v5/market/tickers'],
      ['HEAD', '/v5/nothing'],
      ['GET', '/v5/%ZZ/%00'],
      ['POST', '/v5/nothing', 'not json at all {{{'],
      ['POST', '/v5/nothing', 'x'.repeat(2 << 20)],
      ['GET', `/v5/${'a'.repeat(4000)}`],
    ];
    for (const [method, path, body] of cases) {
      const r = await fetch(`${sim.restUrl}${path}`, { method, body });
      assert.equal(r.status, 404, `${method} ${path.slice(0, 40)}`);
      assert.equal(r.headers.get('content-length'), '0');
      assert.match(String(r.headers.get('content-type')), /^application\/json/);
      assert.equal(await r.text(), '');
    }
    const time = await fetch(`${sim.restUrl}/v5/market/time`);
    assert.equal(time.status, 200);
    assert.equal(((await time.json()) as { retCode: number }).retCode, 0, 'the simulator goes on answering');
  } finally {
    await sim.close();
  }
});
