// Take profit / stop loss per strategy (connectors/protect.ts) on the real stack: the Bybit
// simulator through the unmodified bybit-api client (behind a counting HTTP relay, so the test sees
// every request the unit sends), the direct websocket connector writing the exchange's pushes to
// Kafka, the tracking stage under the real runner projecting them into PostgreSQL and booking P&L.
//
// A strategy's order opens a linear position (the Intent row the risk stage writes, the create
// placement sends); with RISK_TPSL on, the position change makes the unit set TP/SL at the
// strategy's entry ± the configured percent, rounded to the tick; a second run and a second
// instance send nothing; a TP/SL removed at the exchange is put back by the next check. The price
// process then falls through the stop: the exchange closes the position (order, execution and
// position pushes) and the tracking stage books the close to the strategy. With RISK_TPSL empty,
// or a position shared with another book, nothing is sent.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { RestClientV5 } from 'bybit-api';
import { consumeToEnd, createNamespace, migratedDatabase, namespace, registryUrl, testCfg, testKafka, testLogger, waitFor } from '../helpers.ts';
import { sql, withDatabase, type DatabasePool } from '../../runtime/db.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { ManualClock, systemClock } from '../../runtime/clock.ts';
import { Dec } from '../../runtime/decimal.ts';
import { createTopicCodec, type TopicCodec } from '../../schemas/topic-codec.ts';
import type { ExchangeOrderUpdate, Execution } from '../../schemas/types.ts';
import { runStage } from '../../pipelines/runner.ts';
import { createTrackStage, parseConfig as trackConfig } from '../../pipelines/track.ts';
import { readBooks } from '../../pipelines/pnl-sql.ts';
import { startSimulator, type Simulator } from '../../sim/server.ts';
import { createBybitWs, parseConfig as wsConfig } from '../../connectors/bybit-ws.ts';
import { parseConfig as restConfig, createBybitCaller } from '../../connectors/bybit-rest.ts';
import { createExchangeReader } from '../../connectors/exchange-reader.ts';
import { createProtect, parseConfig, PROTECT_METRICS, protectUnit, type Protect } from '../../connectors/protect.ts';
import { createRuntime } from '../../runtime/service.ts';
import { RUNTIME_PARTS } from '../../stack/services.ts';

const kafka = testKafka();
const TRADING_STOP = 'POST /v5/position/trading-stop';

interface World {
  prefix: string;
  db: DatabasePool;
  sim: Simulator;
  codec: TopicCodec;
  client: RestClientV5;
  /** Requests that reached the simulator through the relay, by "METHOD path". */
  requests: Map<string, number>;
  protect(env: Record<string, string>): Protect & { metrics: ReturnType<typeof createMetrics> };
  records<T>(topic: string): Promise<T[]>;
}

async function world(t: TestContext): Promise<World> {
  const prefix = namespace('prot');
  const dropTopics = await createNamespace(kafka, prefix, 3);
  // A manual exchange clock: the price moves only when the test steps the process (falling 0.1 %
  // a step, no noise), so the stop is reached by the price process at a step the test controls.
  const sim = await startSimulator({ port: 0, seed: 18, clock: new ManualClock(Date.now()), autoTick: false, priceProcess: { drift: -0.001, volatility: 0 }, depth: { levelNotional: 10_000_000 }, balances: { USDT: 100_000 } });
  sim.setPrice('ETHUSDT', 3000);
  const db = await migratedDatabase('prot');
  const codec = await createTopicCodec({ registryUrl, prefix });
  const requests = new Map<string, number>();
  const relay = http.createServer((req, res) => {
    const key = `${req.method} ${(req.url ?? '').split('?')[0]}`;
    requests.set(key, (requests.get(key) ?? 0) + 1);
    const up = http.request({ host: '127.0.0.1', port: sim.port, path: req.url, method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  const relayPort = (relay.address() as AddressInfo).port;
  const metrics = createMetrics();
  const connector = createBybitWs({
    kafka,
    codec,
    logger: testLogger,
    metrics,
    config: wsConfig({ TOPIC_PREFIX: prefix, BYBIT_ENV: 'sim', BYBIT_WS_URL: sim.wsUrl, BYBIT_WS_TICKER_SYMBOLS: 'ETHUSDT', BYBIT_WS_RETRY_MAX_MS: '500' }),
  });
  const stage = createTrackStage({ config: trackConfig({ TOPIC_PREFIX: prefix }), db: db.pool, clock: systemClock, logger: testLogger, registry: metrics.registry });
  const running = await runStage(stage, { kafka, codec, logger: testLogger, metrics, clock: systemClock, groupId: `${prefix}track`, batchMax: 100, retryMaxMs: 1000, fromBeginning: true, onFatal: (e) => assert.fail(`tracking stage fatal: ${e.message}`) });
  const units: Protect[] = [];
  t.after(async () => {
    for (const u of units) await u.stop();
    await running.stop().catch(() => {});
    await connector.stop().catch(() => {});
    relay.closeAllConnections();
    await new Promise((r) => relay.close(r));
    await sim.close();
    await db.drop();
    await dropTopics();
  });
  await connector.start();
  await waitFor('the private subscriptions', () => sim.wsConnections().some((c) => c.uid && c.subscriptions.includes('execution') && c.subscriptions.includes('position')), 30_000, 20);
  // The instrument filters exchange sync keeps (only what the unit reads matters here: the tick).
  const inst = sim.instruments().find((i) => i.category === 'linear' && i.symbol === 'ETHUSDT') as { priceFilter: { tickSize: string }; lotSizeFilter: { qtyStep: string } };
  await db.pool.query(sql.typeAlias('void')`
    INSERT INTO instruments (category, symbol, base_coin, quote_coin, tick_size, qty_step)
    VALUES ('linear', 'ETHUSDT', 'ETH', 'USDT', ${inst.priceFilter.tickSize}, ${inst.lotSizeFilter.qtyStep})`);
  return {
    prefix,
    db: db.pool,
    sim,
    codec,
    client: new RestClientV5({ key: 'sim-key', secret: 'sim-secret', baseUrl: sim.restUrl }),
    requests,
    protect(env) {
      const m = createMetrics();
      const config = parseConfig({ PROTECT_POLL_MS: '100', ...env });
      const rest = restConfig({ BYBIT_SIM_PORT: String(relayPort) });
      const caller = createBybitCaller({ config: rest, fraction: config.PROTECT_RATE_LIMIT_FRACTION });
      const p = createProtect({ config, db: db.pool, reader: createExchangeReader({ config: rest, limiter: caller.limiter }), caller, logger: testLogger, registry: m.registry });
      units.push(p);
      return Object.assign(p, { metrics: m });
    },
    async records<T>(topic: string) {
      const msgs = await consumeToEnd(kafka, prefix + topic, 3);
      return Promise.all(msgs.map(async (m) => (await codec.decode(m.topic, m.value!)) as T));
    },
  };
}

let linkSeq = 0;
/** An order of `strategy` as the order manager makes it: the risk stage's Intent row, then placement's create. */
async function strategyOrder(w: World, strategy: string, side: 'Buy' | 'Sell', qty: string): Promise<string> {
  const link = `om-${String(++linkSeq).padStart(4, '0')}${'x'.repeat(21)}`;
  await w.db.query(sql.typeAlias('void')`
    INSERT INTO orders (order_link_id, strategy_id, category, symbol, side, order_type, time_in_force, qty, status, context)
    VALUES (${link}, ${strategy}, 'linear', 'ETHUSDT', ${side}, 'Market', 'IOC', ${qty}, 'Intent', ${sql.jsonb({ strategy_id: strategy, signal_id: null })})`);
  const r = await w.client.submitOrder({ category: 'linear', symbol: 'ETHUSDT', side, orderType: 'Market', qty, orderLinkId: link });
  assert.equal(r.retCode, 0, r.retMsg);
  return link;
}

const bookOf = async (w: World, strategy: string) => (await readBooks(w.db)).find((b) => b.symbol === 'ETHUSDT' && b.strategy === strategy);
const position = async (w: World) => (await w.client.getPositionInfo({ category: 'linear', symbol: 'ETHUSDT' })).result.list[0]!;
const metricValue = async (p: { metrics: ReturnType<typeof createMetrics> }, name: string, labels: Record<string, string> = {}) => {
  const m = (await p.metrics.registry.getSingleMetric(name)!.get()).values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x));
  return m?.value ?? 0;
};

test('RISK_TPSL on: a strategy\'s linear position gets its TP/SL at the exchange, once; the price process hits the stop and the close is booked to the strategy', async (t) => {
  const w = await world(t);
  const protect = w.protect({ RISK_TPSL: 'trend:tp=2,sl=1' });
  await protect.start();
  await waitFor('the start check', () => protect.lastReport());
  assert.equal(w.requests.get(TRADING_STOP) ?? 0, 0, 'no position yet: nothing sent');

  await strategyOrder(w, 'trend', 'Buy', '1.00');
  const book = await waitFor('the strategy\'s book', async () => {
    const b = await bookOf(w, 'trend');
    return b && Dec.of(b.qty).cmp(1) === 0 ? b : null;
  });
  // The position change (its record projected, the book written) starts a check that sets both legs.
  const pos = await waitFor('TP/SL on the exchange position', async () => {
    const p = await position(w);
    return Number(p.takeProfit) > 0 && Number(p.stopLoss) > 0 ? p : null;
  }, 30_000);
  const entry = Dec.of(book.avgEntry);
  const wantTp = entry.mul('1.02').floorTo('0.01');
  const wantSl = entry.mul('0.99').ceilTo('0.01');
  assert.ok(entry.gt(3000) && entry.lt(3001), `entry ${entry}: bought at the ask`);
  assert.equal(Dec.of(pos.takeProfit ?? '0').cmp(wantTp), 0, `takeProfit ${pos.takeProfit}, want ${wantTp} (entry ${entry} + 2 %, rounded down to the tick)`);
  assert.equal(Dec.of(pos.stopLoss ?? '0').cmp(wantSl), 0, `stopLoss ${pos.stopLoss}, want ${wantSl} (entry ${entry} - 1 %, rounded up to the tick)`);
  assert.equal(w.requests.get(TRADING_STOP), 1, 'one trading-stop request with both legs');
  assert.equal(await metricValue(protect, PROTECT_METRICS.sent, { strategy: 'trend' }), 1);
  const stops = (await w.client.getActiveOrders({ category: 'linear', symbol: 'ETHUSDT', orderFilter: 'StopOrder' } as never)).result.list;
  assert.deepEqual(stops.map((o) => [o.stopOrderType, o.tpslMode, o.triggerPrice]).sort(), [['StopLoss', 'Full', pos.stopLoss], ['TakeProfit', 'Full', pos.takeProfit]]);

  // Idempotent: the same unit again, and a second instance, find the prices in place.
  const again = await protect.runNow('manual');
  const second = w.protect({ RISK_TPSL: 'trend:tp=2,sl=1' });
  const other = await second.runNow('manual');
  for (const r of [again, other]) {
    assert.ok(r.ok, r.error ?? '');
    assert.deepEqual([r.sent.length, r.inPlace, r.failed.length, r.skipped.length], [0, 1, 0, 0]);
  }
  assert.equal(w.requests.get(TRADING_STOP), 1, 'nothing new sent');

  // Someone removes the take profit at the exchange: the next check (here a restart's) puts it back, alone.
  assert.equal((await w.client.setTradingStop({ category: 'linear', symbol: 'ETHUSDT', tpslMode: 'Full', positionIdx: 0, takeProfit: '0' })).retCode, 0);
  const restarted = w.protect({ RISK_TPSL: 'trend:tp=2,sl=1' });
  const put = await restarted.runNow('start');
  assert.deepEqual(put.sent, [{ symbol: 'ETHUSDT', strategy: 'trend', takeProfit: wantTp.toString(), stopLoss: null }]);
  assert.equal(Dec.of((await position(w)).takeProfit ?? '0').cmp(wantTp), 0);
  assert.equal(w.requests.get(TRADING_STOP), 2);

  // The price process falls through the stop loss: the exchange closes the position.
  const before = w.sim.executions().length;
  for (let i = 0; i < 100 && Number((await position(w)).size) > 0; i++) w.sim.tick(1);
  assert.equal(Number((await position(w)).size), 0, 'the stop closed the position');
  const fill = w.sim.executions().slice(before).find((e) => e.stopOrderType === 'StopLoss') as { execId: string; orderId: string; execPrice: string; execQty: string; execFee: string } | undefined;
  assert.ok(fill, 'a StopLoss execution at the exchange');

  // The pushes the exchange sent reached the order manager's topics: the order, its execution, the flat position.
  await waitFor('the stop\'s pushes on the exchange topics', async () => {
    const [orders, execs] = await Promise.all([w.records<ExchangeOrderUpdate>('exchange.orders'), w.records<Execution>('exchange.executions')]);
    const order = orders.filter((o) => o.orderId === fill.orderId).map((o) => o.orderStatus);
    const exec = execs.find((e) => e.execId === fill.execId);
    // exchange.positions is compacted (no end marker can be written to it): its projection is read.
    const flat = await w.db.maybeOne(sql.type(z.object({ size: z.string() }))`SELECT size::text AS size FROM positions WHERE category = 'linear' AND symbol = 'ETHUSDT' AND size = 0`);
    return order.includes('Filled') && exec?.stopOrderType === 'StopLoss' && flat !== null;
  }, 30_000);

  // Booked to the strategy: its book is flat, realised = (stop fill price - entry) × 1, fee added.
  const closed = await waitFor('the close booked', async () => {
    const b = await bookOf(w, 'trend');
    return b && Dec.of(b.qty).isZero() ? b : null;
  });
  const wantRealised = Dec.of(fill.execPrice).sub(entry).mul(fill.execQty);
  assert.equal(Dec.of(closed.realised).cmp(wantRealised), 0, `realised ${closed.realised}, want ${wantRealised}`);
  assert.ok(wantRealised.lt(0) && wantRealised.gt(-35), `a 1 % stop on 3,000: ${wantRealised}`);
  assert.equal(Dec.of(closed.fees).sub(book.fees).cmp(Dec.of(fill.execFee)), 0, 'the stop\'s fee is the strategy\'s');
  const external = await bookOf(w, 'external');
  assert.ok(!external || Dec.of(external.qty).isZero(), `nothing booked as external: ${JSON.stringify(external)}`);
  assert.equal(await metricValue(protect, PROTECT_METRICS.errors), 0, 'no trading-stop error');
});

test('RISK_TPSL empty: nothing is ever sent; a position shared with another book is left alone, counted', async (t) => {
  const w = await world(t);
  const off = w.protect({ RISK_TPSL: '' });
  assert.equal(off.enabled, false);
  await off.start();
  await strategyOrder(w, 'trend', 'Buy', '1.00');
  await waitFor('the strategy\'s book', async () => Dec.of((await bookOf(w, 'trend'))?.qty ?? '0').cmp(1) === 0);
  const r = await off.runNow('manual');
  assert.ok(r.ok, r.error ?? '');
  assert.deepEqual([r.positions, r.sent.length, r.inPlace, r.skipped.length], [1, 0, 0, 0]);
  const p = await position(w);
  assert.deepEqual([p.takeProfit, p.stopLoss], ['0', '0'], 'the position carries no TP/SL');
  assert.equal(w.requests.get(TRADING_STOP) ?? 0, 0, 'no trading-stop request');

  // On, but another client of the account added to the position: one configured strategy no longer
  // holds all of it, so a Full-mode stop would close what is not its own.
  w.sim.placeOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Market', qty: '0.50', orderLinkId: 'desk-1' });
  await waitFor('the external book', async () => Dec.of((await bookOf(w, 'external'))?.qty ?? '0').cmp('0.5') === 0);
  const on = w.protect({ RISK_TPSL: 'trend:sl=1' });
  const shared = await on.runNow('manual');
  assert.deepEqual(shared.skipped.map((s) => [s.symbol, s.reason]), [['ETHUSDT', 'shared_position']]);
  assert.equal(shared.sent.length, 0);
  assert.equal(await metricValue(on, PROTECT_METRICS.skipped, { reason: 'shared_position' }), 1);
  assert.equal(w.requests.get(TRADING_STOP) ?? 0, 0, 'still no trading-stop request');
  assert.equal((await position(w)).stopLoss, '0');
});

test('the unit as the order manager starts it: off by default, on with RISK_TPSL, POST /admin/protect runs a check', async (t) => {
  const w = await world(t);
  await strategyOrder(w, 'trend', 'Buy', '1.00');
  await waitFor('the strategy\'s book', async () => Dec.of((await bookOf(w, 'trend'))?.qty ?? '0').cmp(1) === 0);
  const dbName = await w.db.oneFirst(sql.type(z.object({ d: z.string() }))`SELECT current_database() AS d`);
  const base = { ADMIN_PORT: '0', ADMIN_TOKEN: 'protect-token', TOPIC_PREFIX: w.prefix, BYBIT_SIM_PORT: String(w.sim.port), LOG_LEVEL: 'silent', DATABASE_URL: withDatabase(testCfg.DATABASE_URL, dbName) };
  const post = (url: string) => fetch(`${url}/admin/protect`, { method: 'POST', headers: { authorization: 'Bearer protect-token' } });
  const started = async (service: string, env: Record<string, string>) => {
    const rt = await createRuntime(service, RUNTIME_PARTS, env);
    const unit = await protectUnit.create(rt);
    t.after(async () => {
      await unit.stop();
      await rt.db.end();
      await rt.admin.close();
    });
    return rt;
  };

  // RISK_TPSL unset: the service starts the unit, which sends nothing.
  const offRt = await started('protect-off', base);
  assert.equal((await post(offRt.admin.url)).status, 409, 'disabled');
  assert.equal((await position(w)).stopLoss, '0');

  const onRt = await started('protect-on', { ...base, RISK_TPSL: 'trend:sl=1', PROTECT_INTERVAL_MS: '600000' });
  await waitFor('the start check set the stop loss', async () => Number((await position(w)).stopLoss) > 0, 30_000);
  const res = await post(onRt.admin.url);
  assert.equal(res.status, 200);
  const report = (await res.json()) as { sent: unknown[]; inPlace: number };
  assert.deepEqual([report.sent.length, report.inPlace], [0, 1], 'already in place');
});
