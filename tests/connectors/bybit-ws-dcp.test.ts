// The exchange-side safety net: the order manager's exchange-streams unit with the direct connector
// and BYBIT_DCP_WINDOW_S set arms Bybit's disconnection protection (the window over REST, the dcp
// subscriptions on its private connection). When the order manager vanishes, the simulator cancels
// our resting orders once the window has passed, and not before; without the setting nothing is
// cancelled. The unit is started as the service starts it (stack/services.ts), against the simulator.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RestClientV5 } from 'bybit-api';
import { ManualClock } from '../../runtime/clock.ts';
import { createRuntime } from '../../runtime/service.ts';
import { startSimulator, type Simulator } from '../../sim/server.ts';
import { RUNTIME_PARTS, UNIT_SERVICES } from '../../stack/services.ts';
import { createNamespace, namespace, testKafka } from '../helpers.ts';

const T0 = Date.parse('2026-03-02T10:00:00Z');

async function restingLinear(sim: Simulator, link: string): Promise<RestClientV5> {
  const c = new RestClientV5({ key: 'sim-key', secret: 'sim-secret', baseUrl: sim.restUrl });
  const price = (Math.floor(sim.exchange.mid('BTCUSDT') * 0.95 * 10) / 10).toFixed(1);
  const r = await c.submitOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.010', price, orderLinkId: link });
  assert.equal(r.retCode, 0, r.retMsg);
  return c;
}

const status = async (c: RestClientV5, link: string) => (await c.getActiveOrders({ category: 'linear', orderLinkId: link })).result.list[0]!;

async function run(window: string, link: string): Promise<{ sim: Simulator; c: RestClientV5; stopUnit: () => Promise<void>; close: () => Promise<void> }> {
  const prefix = namespace('dcp');
  const kafka = testKafka();
  const drop = await createNamespace(kafka, prefix);
  const sim = await startSimulator({ port: 0, seed: 7, clock: new ManualClock(T0) });
  const rt = await createRuntime('dcp-test', RUNTIME_PARTS, {
    TOPIC_PREFIX: prefix, ADMIN_PORT: '0', LOG_LEVEL: 'silent', EXCHANGE_STREAM_SOURCE: 'direct', BYBIT_ENV: 'sim', BYBIT_SIM_PORT: String(sim.port),
    BYBIT_DCP_WINDOW_S: window, BYBIT_DCP_PRODUCTS: 'DERIVATIVES', ASSETS: 'BTCUSDT',
  });
  const unit = await UNIT_SERVICES['exchange-streams']!.units[0]!.create(rt);
  const c = await restingLinear(sim, link);
  let stopped = false;
  const stopUnit = async () => {
    stopped = true;
    await unit.stop();
    // The simulator must have seen our private connection go before its clock moves on.
    for (let i = 0; i < 200 && sim.wsConnections().some((w) => w.uid); i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(sim.wsConnections().filter((w) => w.uid).length, 0, 'our private connection is gone');
  };
  const close = async () => {
    if (!stopped) await unit.stop();
    await rt.db.end();
    await rt.admin.close();
    await sim.close();
    await drop();
  };
  return { sim, c, stopUnit, close };
}

test('with BYBIT_DCP_WINDOW_S the exchange cancels our resting orders when the order manager has been gone for the window, not before', async () => {
  const { sim, c, stopUnit, close } = await run('5', 'dcp-armed');
  try {
    const info = await c.getDCPInfo();
    assert.deepEqual(info.result.dcpInfos, [{ product: 'DERIVATIVES', dcpStatus: 'ON', timeWindow: '5' }], 'the window was set at start');
    assert.ok(sim.wsConnections().some((w) => w.subscriptions.includes('dcp.future')), 'our private connection arms it');
    await stopUnit();
    sim.advance(4_999);
    assert.equal((await status(c, 'dcp-armed')).orderStatus, 'New', 'not before the window');
    sim.advance(1);
    const o = await status(c, 'dcp-armed');
    assert.equal(o.orderStatus, 'Cancelled');
    assert.equal(o.cancelType, 'CancelByDCP');
  } finally {
    await close();
  }
});

test('without BYBIT_DCP_WINDOW_S nothing is armed: a vanished order manager leaves its orders resting', async () => {
  const { sim, c, stopUnit, close } = await run('0', 'dcp-off');
  try {
    assert.deepEqual((await c.getDCPInfo()).result.dcpInfos, []);
    await stopUnit();
    sim.advance(60_000);
    assert.equal((await status(c, 'dcp-off')).orderStatus, 'New');
  } finally {
    await close();
  }
});
