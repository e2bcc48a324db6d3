// Funding from the exchange to the P&L books: the simulator (manual clock) settles funding on an
// open linear position and reports it as a Funding execution on the private stream; the direct
// websocket connector writes it to exchange.executions unchanged (execType, execFee > 0 when paid,
// empty orderLinkId); the tracking stage under the real runner books it as funding, fills no order
// with it, and the book's funding equals what the exchange's transaction log settled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { createNamespace, migratedDatabase, namespace, registryUrl, testKafka, testLogger, waitFor } from '../helpers.ts';
import { sql } from '../../runtime/db.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { ManualClock, systemClock } from '../../runtime/clock.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { runStage } from '../../pipelines/runner.ts';
import { createTrackStage, parseConfig as trackConfig } from '../../pipelines/track.ts';
import { readBooks } from '../../pipelines/pnl-sql.ts';
import { startSimulator } from '../../sim/server.ts';
import { createBybitWs, parseConfig } from '../../connectors/bybit-ws.ts';
import { Dec } from '../../runtime/decimal.ts';

test('a funding settlement at the exchange reaches the P&L book through the direct websocket connector and the tracking stage: the book\'s funding equals the exchange\'s', async (t) => {
  const kafka = testKafka();
  const prefix = namespace('fpnl');
  const dropTopics = await createNamespace(kafka, prefix, 3);
  const start = Date.UTC(2026, 2, 10, 7, 0, 0);
  // A rate that makes the amount differ from any fee: 0.0137 % of the position value.
  const sim = await startSimulator({ port: 0, seed: 9, clock: new ManualClock(start), autoTick: false, fundingRate: () => 0.000137 });
  const db = await migratedDatabase('fpnl');
  const codec = await createTopicCodec({ registryUrl, prefix });
  const metrics = createMetrics();
  const connector = createBybitWs({
    kafka,
    codec,
    logger: testLogger,
    metrics,
    config: parseConfig({ TOPIC_PREFIX: prefix, BYBIT_ENV: 'sim', BYBIT_WS_URL: sim.wsUrl, BYBIT_WS_TICKER_SYMBOLS: 'ETHUSDT', BYBIT_WS_RETRY_MAX_MS: '500' }),
  });
  const stage = createTrackStage({ config: trackConfig({ TOPIC_PREFIX: prefix }), db: db.pool, clock: systemClock, logger: testLogger, registry: metrics.registry });
  const running = await runStage(stage, { kafka, codec, logger: testLogger, metrics, clock: systemClock, groupId: `${prefix}track`, batchMax: 100, retryMaxMs: 1000, fromBeginning: true, onFatal: (e) => assert.fail(`tracking stage fatal: ${e.message}`) });
  t.after(async () => {
    await running.stop().catch(() => {});
    await connector.stop().catch(() => {});
    await sim.close();
    await db.drop();
    await dropTopics();
  });
  await connector.start();
  // The exchange pushes only to subscribers: wait until the connector's private subscription is in.
  await waitFor('the private execution subscription', () => sim.wsConnections().some((c) => c.uid && c.subscriptions.includes('execution')), 30_000, 20);

  // A short placed at the exchange by another client (adopted as external), booked from its fill.
  sim.setPrice('ETHUSDT', 3000);
  const placed = sim.placeOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Sell', orderType: 'Market', qty: '1.5', orderLinkId: 'desk-short-1' });
  const qtyRow = z.object({ qty: z.string(), funding: z.string() });
  await waitFor('the short booked', () => db.pool.maybeOne(sql.type(qtyRow)`SELECT qty::text AS qty, funding::text AS funding FROM pnl_books WHERE symbol = 'ETHUSDT' AND qty = -1.5`));

  sim.setPrice('ETHUSDT', 3050);
  sim.advance(3600_000); // 08:00 UTC: the short receives a positive rate
  const uid = sim.exchange.accountIds()[0]!;
  const settlement = sim.exchange.transactionLog(uid).find((e) => e.type === 'SETTLEMENT' && e.symbol === 'ETHUSDT');
  assert.ok(settlement && settlement.funding !== null && settlement.funding > 0, 'the short received funding');
  const fundingExec = sim.exchange.allExecutions(uid).find((e) => e.execType === 'Funding')!;

  const execRow = z.object({ exec_type: z.string(), order_link_id: z.string().nullable(), exec_fee: z.string(), order_id: z.string() });
  const stored = await waitFor('the funding execution stored', () =>
    db.pool.maybeOne(sql.type(execRow)`SELECT exec_type, order_link_id, exec_fee::text AS exec_fee, order_id FROM executions WHERE exec_id = ${fundingExec.execId}`),
  );
  // Through the connector unchanged: its type, its fee with Bybit's sign (received: < 0), no link id.
  assert.equal(stored.exec_type, 'Funding');
  assert.equal(stored.order_link_id, null, 'Bybit\'s empty orderLinkId');
  assert.ok(Dec.of(stored.exec_fee).lt(0), `execFee ${stored.exec_fee} < 0 when received`);
  assert.equal(Dec.of(stored.exec_fee).neg().cmp(Dec.of(settlement.funding.toFixed(8))), 0, `execFee ${stored.exec_fee} = -funding ${settlement.funding}`);

  const book = await waitFor('the funding booked', async () => (await readBooks(db.pool)).find((b) => b.symbol === 'ETHUSDT' && b.funding !== '0'));
  assert.equal(book.strategy, 'external');
  // The book's funding (> 0 received) is the exchange's: the SETTLEMENT entry's funding, to its 8 decimals.
  assert.equal(Dec.of(book.funding).cmp(Dec.of(settlement.funding.toFixed(8))), 0, `book ${book.funding} vs exchange ${settlement.funding}`);
  const tradeFee = sim.exchange.allExecutions(uid).filter((e) => e.orderId === placed.orderId).reduce((a, e) => a.add(e.execFee.toFixed(8)), Dec.ZERO);
  assert.ok(Dec.of(book.fees).sub(tradeFee).abs().lte('0.00000001'), `fees ${book.fees}: the trade's fee only, funding is not a fee`);
  // The settlement filled no order: the short's order still has its one fill.
  const order = await db.pool.one(sql.type(z.object({ cum_exec_qty: z.string() }))`SELECT cum_exec_qty::text AS cum_exec_qty FROM orders WHERE order_id = ${placed.orderId}`);
  assert.equal(Number(order.cum_exec_qty), 1.5);
  assert.equal(await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM orders WHERE order_id = ${stored.order_id}`), 0, 'no order made of the settlement');
});
