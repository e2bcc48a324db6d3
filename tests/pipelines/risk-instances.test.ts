// Two instances of the risk stage in one consumer group (each with its own runner, hence its own
// in-process mutex, as two processes would have) decide many signals from different partitions at
// once; together the signals exceed the total exposure cap by a small margin. The cap holds exactly:
// the creates sum to at most the cap, and to no less than the cap minus one order (nothing refused
// that fitted). Without a lock shared by the instances, both would read the same headroom and both
// spend it. Real broker, real PostgreSQL (a database of this file's own).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { namespace, testKafka, createNamespace, consumeToEnd, waitCaughtUp, waitFor, registryUrl, testLogger, migratedDatabase } from '../helpers.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { runStage, type RunningStage } from '../../pipelines/runner.ts';
import { createSizeRiskStage, parseConfig } from '../../pipelines/size-risk.ts';
import { conflictSink } from '../../pipelines/stage-conflicts.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { systemClock } from '../../runtime/clock.ts';
import { sql } from '../../runtime/db.ts';
import { DEFAULT_INSTRUMENTS } from '../../sim/instruments.ts';
import type { OrderEvent, OrderIntent, Signal } from '../../schemas/types.ts';

const CAP = 1000;
const AMOUNT = 20;
const ASSETS = ['BTCUSDT', 'ETHUSDT', 'SOLUSDT'];
const PER_ASSET = 21; // 63 signals of 20 USDT: 1,260 USDT asked for, against a cap of 1,000
const PARTITIONS = 6;

test('two risk instances deciding at once keep the total exposure cap exact', async () => {
  const prefix = namespace('risk2');
  const kafka = testKafka();
  const dropTopics = await createNamespace(kafka, prefix, PARTITIONS);
  const { pool: db, drop } = await migratedDatabase('risk_instances', { maximumPoolSize: 6 });
  const now = Date.now();
  const prices: Record<string, number> = {};
  for (const i of DEFAULT_INSTRUMENTS.filter((x) => x.category === 'spot')) {
    await db.query(sql.typeAlias('void')`
      INSERT INTO instruments (category, symbol, base_coin, quote_coin, tick_size, base_precision, quote_precision, min_order_qty, max_order_qty,
                               max_market_order_qty, min_order_amt, max_order_amt)
      VALUES ('spot', ${i.symbol}, ${i.baseCoin}, ${i.quoteCoin}, ${i.tickSize}, ${i.basePrecision}, ${i.quotePrecision}, ${i.minOrderQty},
              ${i.maxLimitOrderQty}, ${i.maxMarketOrderQty}, ${i.minOrderAmt}, ${i.maxOrderAmt})`);
    prices[i.symbol] = i.symbol === 'BTCUSDT' ? 60000 : i.symbol === 'ETHUSDT' ? 3000 : 150;
    const p = prices[i.symbol]!;
    await db.query(sql.typeAlias('void')`
      INSERT INTO tickers (category, symbol, bid, ask, last, ts) VALUES ('spot', ${i.symbol}, ${p - 0.01}, ${p}, ${p}, ${sql.timestamp(new Date(now))})`);
  }
  await db.query(sql.typeAlias('void')`INSERT INTO balances (coin, wallet_balance, available, updated_ms) VALUES ('USDT', 100000, 100000, ${now})`);

  const codec = await createTopicCodec({ registryUrl, prefix });
  const config = parseConfig({
    TOPIC_PREFIX: prefix,
    RISK_MAX_TOTAL_EXPOSURE: String(CAP),
    RISK_MAX_POSITION_NOTIONAL: '100000',
    RISK_MAX_ORDER_NOTIONAL: '1000',
    RISK_MAX_OPEN_ORDERS: '10000',
    RISK_MAX_OPEN_ORDERS_PER_ASSET: '10000',
    RISK_LIMIT_POLICY: 'reject',
    RISK_ORDER_TYPE: 'market',
  });
  const instances: RunningStage[] = [];
  const metrics = [createMetrics(), createMetrics()];
  const fatal: Error[] = [];
  try {
    for (const m of metrics) {
      instances.push(
        await runStage(createSizeRiskStage({ config, db, clock: systemClock }), {
          kafka, codec, logger: testLogger, metrics: m, clock: systemClock, groupId: prefix + 'size-risk', batchMax: 3, retryMaxMs: 500, onFatal: (e) => fatal.push(e), conflicts: conflictSink(db),
        }),
      );
    }
    await waitFor('both instances in the group', () => instances.every((i) => i.joined()), 60_000);

    const signals: Signal[] = [];
    for (let k = 0; k < PER_ASSET; k++) {
      for (const asset of ASSETS) {
        signals.push({
          signal_id: randomUUID(), signal_type: 'buy', asset, amount: AMOUNT, confidence: 0.9, timestamp: now, strategy_id: `s-${asset}`, model_version: null, is_warmup: false,
          market_data_snapshot: { price: prices[asset]!, spread: 0.01, volume_24h: 1e6, volatility: 0.01, orderbook_depth: null, technical_indicators: {} },
          metadata: '{}', trace_id: null, received_at: now, validated_at: now,
        });
      }
    }
    // Every partition gets signals, so both instances have work at the same time.
    const p = kafka.producer();
    await p.connect();
    const topic = prefix + 'signals.valid';
    await p.send(topic, await Promise.all(signals.map(async (s, i) => ({ key: s.asset, value: await codec.encode(topic, s), partition: i % PARTITIONS }))));
    await p.disconnect();
    await waitCaughtUp(kafka, prefix + 'size-risk', topic);
    assert.deepEqual(fatal, []);

    const intents = await Promise.all((await consumeToEnd(kafka, prefix + 'orders.intents', PARTITIONS)).map(async (m) => (await codec.decode(m.topic, m.value!)) as OrderIntent));
    const events = await Promise.all((await consumeToEnd(kafka, prefix + 'orders.events', PARTITIONS)).map(async (m) => (await codec.decode(m.topic, m.value!)) as OrderEvent));
    const creates = intents.filter((i) => i.action === 'create');
    // Spot market buys are sized in the quote coin: qty is the order's value in USDT.
    assert.ok(creates.every((c) => c.market_unit === 'quoteCoin' && c.side === 'Buy'));
    const spent = creates.reduce((a, c) => a + Number(c.qty), 0);
    const refused = events.filter((e) => e.event_type === 'signal_rejected');
    assert.equal(creates.length + refused.length, signals.length, 'one outcome per signal');
    assert.ok(refused.every((e) => e.reason_code === 'max_total_exposure'), JSON.stringify([...new Set(refused.map((e) => e.reason_code))]));
    assert.ok(spent <= CAP + 1e-9, `creates sum to ${spent} > cap ${CAP}: the instances spent the same headroom twice`);
    assert.ok(spent > CAP - AMOUNT, `creates sum to ${spent}: headroom left unused`);
    // Both instances really decided signals (the group split the partitions between them).
    for (const [k, m] of metrics.entries()) {
      const seen = await m.registry.getSingleMetricAsString('pipeline_stage_records_in_total');
      assert.match(seen, /pipeline_stage_records_in_total\{[^}]*\} [1-9]/, `instance ${k} consumed records`);
    }
  } finally {
    for (const i of instances) await i.stop();
    await dropTopics();
    await drop();
  }
});
