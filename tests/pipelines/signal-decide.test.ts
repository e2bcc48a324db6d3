// The fused stage (pipelines/signal-decide.ts) on the real broker and PostgreSQL:
//   - a chunk of raw signals commits its signals.valid copies and its intents in ONE transaction
//     (counted at the Kafka port), also when that transaction's commit fails once after both were
//     sent and persist had already recorded the decisions (the replay emits them again, once);
//   - a chunk's database writes (validation's signals rows, risk's decisions and orders) are one
//     transaction with the cross-instance lock: a failure after persist leaves none of them;
//   - the upgrade drain: what a two-stage deployment (validate, then size-risk) left on signals.valid
//     is decided exactly once before the fused stage reads signals.raw, also while an old size-risk
//     process still runs; no signal gets a second order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { namespace, testKafka, createNamespace, consumeToEnd, waitCaughtUp, waitFor, registryUrl, testLogger, migratedDatabase } from '../helpers.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { runStage, type RunnerDeps, type RunningStage } from '../../pipelines/runner.ts';
import { createValidateStage, parseConfig as validateConfig } from '../../pipelines/validate.ts';
import { createSizeRiskStage, parseConfig as riskConfig } from '../../pipelines/size-risk.ts';
import { createSignalDecideStage, drainRisk, DECIDED_HEADER } from '../../pipelines/signal-decide.ts';
import { conflictSink } from '../../pipelines/stage-conflicts.ts';
import { createMetrics } from '../../runtime/metrics.ts';
import { systemClock } from '../../runtime/clock.ts';
import { sql, type DatabasePool } from '../../runtime/db.ts';
import type { KafkaPort, OutMessage, ProducerPort, TransactionPort } from '../../runtime/kafka.ts';
import type { Codec } from '../../runtime/codec.ts';
import { DEFAULT_INSTRUMENTS } from '../../sim/instruments.ts';
import type { OrderIntent, Signal } from '../../schemas/types.ts';

const PARTITIONS = 3;
const ASSETS = ['BTCUSDT', 'ETHUSDT', 'SOLUSDT'];
const PRICES: Record<string, number> = { BTCUSDT: 60000, ETHUSDT: 3000, SOLUSDT: 150 };

async function seed(db: DatabasePool): Promise<void> {
  const now = Date.now();
  for (const i of DEFAULT_INSTRUMENTS.filter((x) => x.category === 'spot')) {
    if (!ASSETS.includes(i.symbol)) continue;
    await db.query(sql.typeAlias('void')`
      INSERT INTO instruments (category, symbol, base_coin, quote_coin, tick_size, base_precision, quote_precision, min_order_qty, max_order_qty,
                               max_market_order_qty, min_order_amt, max_order_amt)
      VALUES ('spot', ${i.symbol}, ${i.baseCoin}, ${i.quoteCoin}, ${i.tickSize}, ${i.basePrecision}, ${i.quotePrecision}, ${i.minOrderQty},
              ${i.maxLimitOrderQty}, ${i.maxMarketOrderQty}, ${i.minOrderAmt}, ${i.maxOrderAmt})`);
    const p = PRICES[i.symbol]!;
    await db.query(sql.typeAlias('void')`
      INSERT INTO tickers (category, symbol, bid, ask, last, ts) VALUES ('spot', ${i.symbol}, ${p - 0.01}, ${p}, ${p}, ${sql.timestamp(new Date(now))})`);
  }
  await db.query(sql.typeAlias('void')`INSERT INTO balances (coin, wallet_balance, available, updated_ms) VALUES ('USDT', 100000, 100000, ${now})`);
}

function rawSignal(asset: string): Record<string, unknown> {
  return {
    signal_id: randomUUID(), signal_type: 'buy', asset, amount: 20, confidence: 0.9, timestamp: new Date().toISOString(), strategy_id: 'fuse', model_version: null, is_warmup: false,
    market_data_snapshot: { price: PRICES[asset]!, spread: 0.01, volume_24h: 1e6, volatility: 0.01, orderbook_depth: null, technical_indicators: null }, metadata: {}, trace_id: null,
  };
}

async function produceRaw(kafka: KafkaPort, prefix: string, n: number, over: (i: number) => Record<string, unknown> = () => ({})): Promise<string[]> {
  const signals = Array.from({ length: n }, (_, i) => ({ ...rawSignal(ASSETS[i % ASSETS.length]!), ...over(i) }));
  const p = kafka.producer();
  await p.connect();
  await p.send(prefix + 'signals.raw', signals.map((s, i) => ({ key: s.asset as string, value: Buffer.from(JSON.stringify(s)), partition: i % PARTITIONS, headers: { received_at: String(Date.now()) } })));
  await p.disconnect();
  return signals.map((s) => s.signal_id as string);
}

const RISK = { RISK_MAX_TOTAL_EXPOSURE: '100000', RISK_MAX_POSITION_NOTIONAL: '100000', RISK_MAX_ORDER_NOTIONAL: '1000', RISK_MAX_OPEN_ORDERS: '10000', RISK_MAX_OPEN_ORDERS_PER_ASSET: '10000', RISK_ORDER_TYPE: 'market' };

interface Env {
  prefix: string;
  kafka: KafkaPort;
  codec: Codec;
  db: DatabasePool;
  fatal: Error[];
  deps: (group: string, kafka?: KafkaPort) => RunnerDeps;
  fused: () => ReturnType<typeof createSignalDecideStage>;
  cleanup: () => Promise<void>;
}

async function env(tag: string): Promise<Env> {
  const prefix = namespace(tag);
  const kafka = testKafka();
  const dropTopics = await createNamespace(kafka, prefix, PARTITIONS);
  const { pool: db, drop } = await migratedDatabase(tag.replace(/-/g, '_'), { maximumPoolSize: 8 });
  await seed(db);
  const codec = await createTopicCodec({ registryUrl, prefix });
  const fatal: Error[] = [];
  return {
    prefix, kafka, codec, db, fatal,
    deps: (group, k = kafka) => ({ kafka: k, codec, logger: testLogger, metrics: createMetrics(), clock: systemClock, groupId: prefix + group, batchMax: 50, retryMaxMs: 500, onFatal: (e) => fatal.push(e), conflicts: conflictSink(db) }),
    fused: () => createSignalDecideStage({ validate: validateConfig({ TOPIC_PREFIX: prefix }), risk: riskConfig({ TOPIC_PREFIX: prefix, ...RISK }), codec, db, clock: systemClock, logger: testLogger }),
    cleanup: async () => {
      await dropTopics();
      await drop();
    },
  };
}

/** Every committed transaction's records, by topic, seen at the Kafka port; the first commit holding `failOn` fails once. */
function countingKafka(real: KafkaPort, committed: Array<Map<string, OutMessage[]>>, failOn?: string, faults: { n: number } = { n: 0 }): KafkaPort {
  let failed = false;
  return {
    ...real,
    admin: () => real.admin(),
    consumer: (o) => real.consumer(o),
    producer: (o) => {
      const p = real.producer(o);
      const port: ProducerPort = {
        ...p,
        transaction: async () => {
          const t = await p.transaction();
          const sent = new Map<string, OutMessage[]>();
          const tx: TransactionPort = {
            ...t,
            send: async (topic, messages) => {
              sent.set(topic, [...(sent.get(topic) ?? []), ...messages]);
              await t.send(topic, messages);
            },
            sendBatch: async (batches) => {
              for (const { topic, messages } of batches) sent.set(topic, [...(sent.get(topic) ?? []), ...messages]);
              await t.sendBatch(batches);
            },
            sendOffsets: (g, offsets) => t.sendOffsets(g, offsets),
            abort: () => t.abort(),
            commit: async () => {
              if (failOn && !failed && sent.has(failOn)) {
                failed = true;
                faults.n++;
                // As if the broker went away after both topics were sent: the transaction is aborted.
                await t.abort();
                throw Object.assign(new Error('injected: commit lost'), { name: 'KafkaJSConnectionError', retriable: true });
              }
              await t.commit();
              committed.push(sent);
            },
          };
          return tx;
        },
      };
      return port;
    },
  };
}

const ids = (msgs: OutMessage[] | undefined) => (msgs ?? []).map((m) => m.headers?.signal_id ?? '').sort();

test('the Signal risk decides in the fused stage is the one signals.valid carries (the Avro round trip changes nothing)', async () => {
  const prefix = namespace('fuse-avro');
  const codec = await createTopicCodec({ registryUrl, prefix });
  const stage = createValidateStage({ config: validateConfig({ TOPIC_PREFIX: prefix }) });
  const shapes = [rawSignal('ETHUSDT'), { ...rawSignal('BTCUSDT'), model_version: 'm-1', trace_id: 't-1', metadata: { reasoning: 'r', nested: { a: [1, 2] } }, market_data_snapshot: { price: 3000, spread: 1.5, volume_24h: 1, volatility: 0.02, orderbook_depth: { bid_depth: 1, ask_depth: 2 }, technical_indicators: { rsi_14: 61.2, macd: { signal: -0.35, hist: null }, label: 'x' } } }];
  for (const s of shapes) {
    const r = stage.process({ value: Buffer.from(JSON.stringify(s)), key: null, headers: { received_at: String(Date.now()) }, topic: prefix + 'signals.raw', partition: 0, offset: '1', timestamp: Date.now(), traceId: null }, { state: { assets: new Map([[s.asset as string, true]]), known: new Map(), firstInChunk: new Map() }, clock: systemClock });
    assert.equal(r.kind, 'ok', JSON.stringify(r));
    const sig = r.outputs[0]!.value as Signal;
    const topic = prefix + 'signals.valid';
    assert.deepEqual(await codec.decode(topic, await codec.encode(topic, sig)), sig);
  }
});

test('a chunk of raw signals commits signals.valid and orders.intents in one transaction, also when that commit fails once after persist', async () => {
  const e = await env('fuse-tx');
  const committed: Array<Map<string, OutMessage[]>> = [];
  let running: RunningStage | null = null;
  try {
    const topicValid = e.prefix + 'signals.valid';
    const topicIntents = e.prefix + 'orders.intents';
    const faults = { n: 0 };
    running = await runStage(e.fused(), e.deps('validate', countingKafka(e.kafka, committed, topicIntents, faults)));
    // One with a lone surrogate in its strategy: validation lets it through, signals.valid carries it
    // as U+FFFD, and risk decides that form (as the two stages did), not the unstorable raw one.
    const sent = await produceRaw(e.kafka, e.prefix, 12, (i) => (i === 5 ? { strategy_id: '\ud800x' } : {}));
    await waitCaughtUp(e.kafka, e.prefix + 'validate', e.prefix + 'signals.raw');
    assert.deepEqual(e.fatal, []);

    // Each committed transaction that holds signals.valid copies holds the intents of exactly those signals.
    const reasons = await e.db.anyFirst(sql.type(z.object({ r: z.string() }))`SELECT action || ':' || reason AS r FROM decisions`);
    assert.ok(reasons.every((r) => r.startsWith('create:')), reasons.join(', '));
    const withValid = committed.filter((t) => t.has(topicValid));
    assert.ok(withValid.length >= 1);
    for (const t of withValid) assert.deepEqual(ids(t.get(topicIntents)), ids(t.get(topicValid)), 'copies and intents of one chunk in one transaction');
    assert.ok(committed.every((t) => t.has(topicValid) === t.has(topicIntents)), 'no transaction with one topic and not the other');
    assert.deepEqual(committed.flatMap((t) => ids(t.get(topicValid))).sort(), [...sent].sort(), 'each signal in exactly one committed transaction');

    // What read_committed consumers see: every signal once on each topic, the aborted attempt nowhere.
    const valid = await consumeToEnd(e.kafka, topicValid, PARTITIONS);
    const intents = await Promise.all((await consumeToEnd(e.kafka, topicIntents, PARTITIONS)).map(async (m) => (await e.codec.decode(m.topic, m.value!)) as OrderIntent));
    assert.deepEqual(valid.map((m) => m.headers.signal_id).sort(), [...sent].sort());
    assert.ok(valid.every((m) => m.headers[DECIDED_HEADER] === 'signal-decide'), 'the copies say they are decided');
    assert.deepEqual(intents.map((i) => i.signal!.signal_id).sort(), [...sent].sort(), 'one intent per signal, the replayed chunk\'s the same as recorded');
    const decisions = await e.db.anyFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM decisions GROUP BY signal_id`);
    assert.deepEqual(decisions, sent.map(() => 1), 'one decision per signal');
    const rows = await e.db.anyFirst(sql.type(z.object({ status: z.string() }))`SELECT status FROM signals`);
    assert.deepEqual(rows, sent.map(() => 'decided'));
  } finally {
    await running?.stop();
    await e.cleanup();
  }
});

/**
 * The released topology (validate, then size-risk, each its own group) leaves: signals decided (A),
 * signals validated but not decided (B, on signals.valid beyond the size-risk group's offsets), raw
 * signals not validated (C). The upgrade drains, then runs the fused stage in validate's group.
 */
async function upgrade(e: Env, oldRiskStillRuns: boolean) {
  const stop: RunningStage[] = [];
  const q = z.object({ signal_id: z.string(), n: z.number() });
  const statusOf = async (ids: string[]) => e.db.anyFirst(sql.type(z.object({ status: z.string() }))`SELECT status FROM signals WHERE signal_id = ANY(${sql.array(ids, 'uuid')})`);
  const oldRisk = () => createSizeRiskStage({ config: riskConfig({ TOPIC_PREFIX: e.prefix, ...RISK }), db: e.db, clock: systemClock });
  try {
    const validate = await runStage(createValidateStage({ config: validateConfig({ TOPIC_PREFIX: e.prefix }), db: e.db, clock: systemClock }), e.deps('validate'));
    let risk = await runStage(oldRisk(), e.deps('size-risk'));
    const a = await produceRaw(e.kafka, e.prefix, 6);
    await waitFor('A decided by the old stages', async () => (await statusOf(a)).filter((s) => s === 'decided').length === a.length, 90_000);
    await risk.stop();
    const b = await produceRaw(e.kafka, e.prefix, 6);
    await waitFor('B validated, not decided', async () => (await statusOf(b)).filter((s) => s === 'valid').length === b.length, 90_000);
    await validate.stop();
    const c = await produceRaw(e.kafka, e.prefix, 6);

    if (oldRiskStillRuns) stop.push((risk = await runStage(oldRisk(), e.deps('size-risk'))));
    const drained = await drainRisk({ ...e.deps('size-risk'), risk: oldRisk(), topic: e.prefix + 'signals.valid', pollMs: 100 });
    assert.equal(drained.drained, true);
    assert.equal(drained.deleted, !oldRiskStillRuns, 'the group is deleted once nobody else is in it');
    // Everything B left is decided before the first raw record is read.
    assert.deepEqual(await statusOf(b), b.map(() => 'decided'));
    stop.push(await runStage(e.fused(), e.deps('validate')));
    const d = await produceRaw(e.kafka, e.prefix, 6);
    const all = [...a, ...b, ...c, ...d];
    await waitFor('every signal decided', async () => (await statusOf(all)).filter((s) => s === 'decided').length === all.length, 90_000);
    await waitCaughtUp(e.kafka, e.prefix + 'validate', e.prefix + 'signals.raw');
    assert.deepEqual(e.fatal, []);

    // Exactly once: one decision and one order per signal, whoever decided it.
    const decisions = await e.db.any(sql.type(q)`SELECT signal_id::text AS signal_id, count(*)::int AS n FROM decisions GROUP BY signal_id`);
    assert.deepEqual(decisions.map((r) => r.signal_id).sort(), [...all].sort());
    assert.ok(decisions.every((r) => r.n === 1), JSON.stringify(decisions.filter((r) => r.n !== 1)));
    const orders = await e.db.any(sql.type(q)`SELECT signal_id::text AS signal_id, count(*)::int AS n FROM orders GROUP BY signal_id`);
    // (A buy may amend the open order of an earlier one instead of creating its own.)
    assert.ok(orders.every((r) => r.n === 1), 'no signal with two order rows');
    const intents = await Promise.all((await consumeToEnd(e.kafka, e.prefix + 'orders.intents', PARTITIONS)).map(async (m) => (await e.codec.decode(m.topic, m.value!)) as OrderIntent));
    const bySignal = new Map<string, OrderIntent[]>();
    for (const i of intents) bySignal.set(i.signal!.signal_id, [...(bySignal.get(i.signal!.signal_id) ?? []), i]);
    assert.deepEqual([...bySignal.keys()].sort(), [...all].sort(), 'an intent for every signal');
    for (const [id, list] of bySignal) {
      // A repeat (an old size-risk meeting the fused stage's copies) is the recorded intent verbatim:
      // placement sends one order per orderLinkId.
      assert.equal(new Set(list.map((i) => `${i.intent_id}/${i.order_link_id}`)).size, 1, `signal ${id}: ${list.length} intents, not all the same`);
      if (!oldRiskStillRuns) assert.equal(list.length, 1, `signal ${id}: ${list.length} intents`);
    }
    if (!oldRiskStillRuns) {
      // A later start has nothing to drain.
      assert.deepEqual(await drainRisk({ ...e.deps('size-risk'), risk: oldRisk(), topic: e.prefix + 'signals.valid', pollMs: 100 }), { drained: false, deleted: false });
    }
  } finally {
    for (const s of stop) await s.stop();
  }
}

test('upgrade: what the two-stage risk group left on signals.valid is decided exactly once before signals.raw is read', async () => {
  const e = await env('fuse-drain');
  try {
    await upgrade(e, false);
  } finally {
    await e.cleanup();
  }
});

test('rolling upgrade: an old size-risk process still running decides nothing twice and places nothing twice', async () => {
  const e = await env('fuse-roll');
  try {
    await upgrade(e, true);
  } finally {
    await e.cleanup();
  }
});

test("a chunk's writes (validation's and risk's) commit with the risk lock's release: a failure after persist leaves none of them", async () => {
  const e = await env('fuse-lock');
  try {
    const stage = e.fused();
    const raw = ASSETS.map((a) => rawSignal(a));
    const records = raw.map((json, i) => ({
      value: Buffer.from(JSON.stringify(json)), key: json.asset as string, headers: { received_at: String(Date.now()) },
      topic: e.prefix + 'signals.raw', partition: 0, offset: String(i), timestamp: Date.now(), traceId: null,
    }));
    const ids = raw.map((j) => j.signal_id as string);
    const chunk = async (after: () => void) =>
      stage.lockAcross!(async () => {
        const state = await stage.load!(records);
        const results = records.map((rec) => stage.process(rec, { state, clock: systemClock }));
        await stage.persist!(records.map((rec, i) => ({ rec, result: results[i]! })), state);
        after();
        return results;
      });
    const rows = async () => ({
      signals: (await e.db.anyFirst(sql.type(z.object({ s: z.string() }))`SELECT status AS s FROM signals WHERE signal_id = ANY(${sql.array(ids, 'uuid')})`)).length,
      decisions: (await e.db.anyFirst(sql.type(z.object({ n: z.number() }))`SELECT id AS n FROM decisions WHERE signal_id = ANY(${sql.array(ids, 'uuid')})`)).length,
      orders: (await e.db.anyFirst(sql.type(z.object({ n: z.number() }))`SELECT id AS n FROM orders WHERE signal_id = ANY(${sql.array(ids, 'uuid')})`)).length,
    });
    // Persist ran (both stages wrote), then the chunk failed before its end: nothing of it stays.
    await assert.rejects(chunk(() => {
      throw new Error('after persist');
    }), /after persist/);
    assert.deepEqual(await rows(), { signals: 0, decisions: 0, orders: 0 }, 'rolled back with the lock transaction');
    // The lock was released (this would wait for it forever otherwise), and the chunk run again
    // records everything once.
    const results = await chunk(() => {});
    assert.ok(results.every((r) => r.kind === 'ok' && r.outputs.some((o) => o.topic === e.prefix + 'orders.intents')), 'every signal decided into an intent');
    assert.deepEqual(await rows(), { signals: 3, decisions: 3, orders: 3 });
    const statuses = await e.db.anyFirst(sql.type(z.object({ s: z.string() }))`SELECT status AS s FROM signals WHERE signal_id = ANY(${sql.array(ids, 'uuid')})`);
    assert.deepEqual(statuses, ['decided', 'decided', 'decided']);
  } finally {
    await e.cleanup();
  }
});
