// The kill switch on the simulator (through bybit-api) and a fresh PostgreSQL database per test:
// resting orders of ours in both categories are all cancelled and verified gone, the trading state
// is HALTED with one transition row, an order placed by someone else stays unless configured, the
// command is idempotent, release resumes; the admin endpoint needs the token.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { testCfg, testLogger, waitFor } from '../helpers.ts';
import { ensureDatabase, dropDatabase, withDatabase, createDb, sql, type DatabasePool } from '../../runtime/db.ts';
import { migrate } from '../../runtime/migrate.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { createRuntime } from '../../runtime/service.ts';
import { startSimulator } from '../../sim/server.ts';
import { parseConfig as restConfig } from '../../connectors/bybit-rest.ts';
import { createExchangeReader } from '../../connectors/exchange-reader.ts';
import { createKillSwitch, killSwitchUnit, parseConfig, formatKillSwitchReport, KILL_SWITCH_METRICS } from '../../connectors/kill-switch.ts';
import { RUNTIME_PARTS } from '../../stack/services.ts';

type Sim = Awaited<ReturnType<typeof startSimulator>>;

async function setup(t: TestContext): Promise<{ db: DatabasePool; dbUrl: string; sim: Sim }> {
  const dbUrl = withDatabase(testCfg.DATABASE_URL, `ks_${randomBytes(4).toString('hex')}`);
  await ensureDatabase(dbUrl);
  const db = await createDb(dbUrl, { maximumPoolSize: 4 });
  await migrate(db);
  const sim = await startSimulator({ port: 0, seed: 5, balances: { USDT: 100_000, ETH: 5, BTC: 0.5 } });
  sim.setPrice('ETHUSDT', 3000);
  sim.setPrice('BTCUSDT', 60000);
  t.after(async () => {
    await sim.close();
    await db.end();
    await dropDatabase(dbUrl).catch(() => {});
  });
  return { db, dbUrl, sim };
}

const link = (p: string) => `${p}-${randomBytes(8).toString('hex')}`;
const openAt = (sim: Sim) => sim.orders().filter((o) => o.orderStatus === 'New' || o.orderStatus === 'PartiallyFilled');

/** Several resting limit orders of ours (spot and linear) and one of somebody else. */
function placeResting(sim: Sim): { ours: string[]; external: string } {
  const ours = [
    sim.placeOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Limit', qty: '0.1', price: '2800', orderLinkId: link('om') }),
    sim.placeOrder({ category: 'linear', symbol: 'BTCUSDT', side: 'Buy', orderType: 'Limit', qty: '0.01', price: '58000', orderLinkId: link('om') }),
    sim.placeOrder({ category: 'spot', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Limit', qty: '0.1', price: '2850', orderLinkId: link('om') }),
    sim.placeOrder({ category: 'spot', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Limit', qty: '0.2', price: '3150', orderLinkId: link('om') }),
  ].map((o) => o.orderLinkId);
  const external = sim.placeOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Limit', qty: '0.1', price: '3200', orderLinkId: link('desk') }).orderLinkId;
  return { ours, external };
}

const stateRow = z.object({ state: z.string(), kill_switch: z.boolean() });
const state = (db: DatabasePool) => db.one(sql.type(stateRow)`SELECT state, kill_switch FROM trading_state WHERE id`);
const transitions = (db: DatabasePool) => db.any(sql.type(z.object({ from_state: z.string(), to_state: z.string(), kill_switch: z.boolean(), actor: z.string().nullable() }))`SELECT from_state, to_state, kill_switch, actor FROM trading_state_transitions ORDER BY id`);

test('the kill switch leaves no open order of ours at the exchange, sets HALTED, leaves external orders alone, is idempotent, and release resumes', async (t) => {
  const { db, sim } = await setup(t);
  const { ours, external } = placeResting(sim);
  assert.equal(openAt(sim).length, 5);
  const metrics = createMetrics();
  const config = parseConfig({ KILL_SWITCH_VERIFY_INTERVAL_MS: '50' });
  const ks = createKillSwitch({ config, db, reader: createExchangeReader({ config: restConfig({ BYBIT_SIM_PORT: String(sim.port) }), fraction: 0.5 }), logger: testLogger, registry: metrics.registry });

  const r = await ks.engage('test: runaway strategy', 'test');
  assert.ok(r.ok, formatKillSwitchReport(r));
  assert.ok(r.verified);
  assert.equal(r.remaining, 0);
  assert.deepEqual(r.cancelled.map((c) => c.orderLinkId).sort(), [...ours].sort());
  assert.equal(r.externalLeftOpen, 1);
  // At the exchange: nothing of ours is open, the desk's order is.
  assert.deepEqual(openAt(sim).map((o) => o.orderLinkId), [external]);
  assert.ok(sim.orders().filter((o) => ours.includes(String(o.orderLinkId))).every((o) => o.orderStatus === 'Cancelled'));
  assert.deepEqual(await state(db), { state: 'HALTED', kill_switch: true });
  assert.deepEqual(await transitions(db), [{ from_state: 'ACTIVE', to_state: 'HALTED', kill_switch: true, actor: 'test' }]);
  assert.match(await metrics.registry.getSingleMetricAsString(KILL_SWITCH_METRICS.cancelled), / 4$/m);

  // Again: nothing to cancel, no second transition.
  const again = await ks.engage('test: again', 'test');
  assert.ok(again.ok);
  assert.equal(again.cancelled.length, 0);
  assert.equal(again.state.changed, false);
  assert.equal((await transitions(db)).length, 1);

  const off = await ks.release('test');
  assert.ok(off.ok);
  assert.equal(off.state.to, 'ACTIVE');
  assert.deepEqual(await state(db), { state: 'ACTIVE', kill_switch: false });
  assert.equal((await transitions(db)).length, 2);
  assert.equal((await ks.release('test')).state.changed, false, 'releasing twice changes nothing');
});

test('with KILL_SWITCH_CANCEL_EXTERNAL every open order is cancelled (cancel-all per category)', async (t) => {
  const { db, sim } = await setup(t);
  placeResting(sim);
  const ks = createKillSwitch({ config: parseConfig({ KILL_SWITCH_CANCEL_EXTERNAL: 'true', KILL_SWITCH_VERIFY_INTERVAL_MS: '50' }), db, reader: createExchangeReader({ config: restConfig({ BYBIT_SIM_PORT: String(sim.port) }) }) });
  const r = await ks.engage('test: everything', 'test');
  assert.ok(r.ok, formatKillSwitchReport(r));
  assert.equal(r.cancelled.length, 5);
  assert.equal(openAt(sim).length, 0);
  assert.equal((await state(db)).state, 'HALTED');
});

test('POST /admin/kill-switch needs ADMIN_TOKEN, engages and releases', async (t) => {
  const { db, dbUrl, sim } = await setup(t);
  placeResting(sim);
  const token = randomBytes(12).toString('hex');
  const rt = await createRuntime('ks-test', RUNTIME_PARTS, { ADMIN_PORT: '0', ADMIN_TOKEN: token, DATABASE_URL: dbUrl, BYBIT_SIM_PORT: String(sim.port), LOG_LEVEL: 'silent' });
  const unit = await killSwitchUnit.create(rt);
  t.after(async () => {
    await unit.stop();
    await rt.db.end();
    await rt.admin.close();
  });
  const post = (body: unknown, auth?: string) =>
    fetch(`${rt.admin.url}/admin/kill-switch`, { method: 'POST', headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${auth}` } : {}) }, body: JSON.stringify(body) });

  assert.equal((await post({ on: true })).status, 401);
  assert.equal((await post({ on: true }, 'wrong')).status, 401);
  assert.equal((await post({ on: 'yes' }, token)).status, 400);
  assert.equal(openAt(sim).length, 5, 'nothing happened without the token');

  const on = await post({ on: true, reason: 'admin test' }, token);
  assert.equal(on.status, 200);
  const body = (await on.json()) as { ok: boolean; cancelled: unknown[] };
  assert.equal(body.ok, true);
  assert.equal(body.cancelled.length, 4);
  assert.equal(openAt(sim).filter((o) => String(o.orderLinkId).startsWith('om-')).length, 0);
  assert.deepEqual(await state(db), { state: 'HALTED', kill_switch: true });

  const off = await post({ on: false }, token);
  assert.equal(off.status, 200);
  await waitFor('ACTIVE again', async () => (await state(db)).state === 'ACTIVE');
});
