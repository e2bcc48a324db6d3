// Shared plumbing of the fuzz suites that run the real path (not a test file): a freshly migrated
// PostgreSQL database with the simulator's instruments, a fresh topic namespace and the codec, and
// a stage under the production runner with its fatal errors collected.
import { sql, type DatabasePool } from '../../runtime/db.ts';
import { createMetrics, type Metrics } from '../../runtime/metrics.ts';
import { systemClock } from '../../runtime/clock.ts';
import type { KafkaPort } from '../../runtime/kafka.ts';
import { createTopicCodec, type TopicCodec } from '../../schemas/topic-codec.ts';
import { runStage, type RunningStage, type Stage } from '../../pipelines/runner.ts';
import { DEFAULT_INSTRUMENTS } from '../../sim/instruments.ts';
import { createNamespace, migratedDatabase, namespace, registryUrl, testKafka, testLogger } from '../helpers.ts';

export interface FuzzStack {
  prefix: string;
  kafka: KafkaPort;
  codec: TopicCodec;
  db: DatabasePool;
  dbUrl: string;
  metrics: Metrics;
  /** Errors a runner reported as fatal (the process would have exited): must stay empty. */
  fatal: Error[];
  stages: RunningStage[];
  run<I, S>(stage: Stage<I, S>): Promise<RunningStage>;
  close(): Promise<void>;
}

export async function fuzzStack(tag: string): Promise<FuzzStack> {
  const prefix = namespace(tag);
  const kafka = testKafka();
  const dropTopics = await createNamespace(kafka, prefix);
  const codec = await createTopicCodec({ registryUrl, prefix });
  const { url: dbUrl, pool: db, drop: dropDb } = await migratedDatabase(`fuzz_${tag}`);
  await seed(db);
  const fatal: Error[] = [];
  const metrics = createMetrics();
  const stages: RunningStage[] = [];
  return {
    prefix,
    kafka,
    codec,
    db,
    dbUrl,
    metrics,
    fatal,
    stages,
    async run(stage) {
      const s = await runStage(stage, { kafka, codec, logger: testLogger, metrics, clock: systemClock, groupId: `${prefix}${stage.name}`, batchMax: 100, retryMaxMs: 1000, onFatal: (e) => fatal.push(e) });
      stages.push(s);
      return s;
    },
    async close() {
      for (const s of stages) await s.stop().catch(() => {});
      await dropDb();
      await dropTopics();
    },
  };
}

/** The simulator's instruments, a fresh ticker for ETHUSDT/BTCUSDT, a USDT balance, trading ACTIVE. */
async function seed(db: DatabasePool): Promise<void> {
  const now = Date.now();
  for (const i of DEFAULT_INSTRUMENTS) {
    if (i.category === 'spot') {
      await db.query(sql.typeAlias('void')`
        INSERT INTO instruments (category, symbol, base_coin, quote_coin, tick_size, base_precision, quote_precision, min_order_qty, max_order_qty,
                                 max_market_order_qty, min_order_amt, max_order_amt)
        VALUES ('spot', ${i.symbol}, ${i.baseCoin}, ${i.quoteCoin}, ${i.tickSize}, ${i.basePrecision}, ${i.quotePrecision}, ${i.minOrderQty},
                ${i.maxLimitOrderQty}, ${i.maxMarketOrderQty}, ${i.minOrderAmt}, ${i.maxOrderAmt})`);
    } else {
      await db.query(sql.typeAlias('void')`
        INSERT INTO instruments (category, symbol, base_coin, quote_coin, tick_size, qty_step, min_order_qty, max_order_qty, max_market_order_qty, min_notional_value)
        VALUES ('linear', ${i.symbol}, ${i.baseCoin}, ${i.quoteCoin}, ${i.tickSize}, ${i.qtyStep}, ${i.minOrderQty}, ${i.maxOrderQty}, ${i.maxMktOrderQty}, ${i.minNotionalValue})`);
    }
  }
  await db.query(sql.typeAlias('void')`
    UPDATE trading_state SET state = 'ACTIVE', kill_switch = false, reason = NULL, updated_at = ${sql.timestamp(new Date(now))} WHERE id`);
  await db.query(sql.typeAlias('void')`INSERT INTO balances (coin, wallet_balance, available, updated_ms) VALUES ('USDT', 1000000, 1000000, ${now})`);
}

/** Keep the tickers fresh (the risk stage refuses to size against a stale one). */
export async function freshTickers(db: DatabasePool): Promise<void> {
  const ts = sql.timestamp(new Date());
  await db.query(sql.typeAlias('void')`
    INSERT INTO tickers (category, symbol, bid, ask, last, ts) VALUES ('spot', 'ETHUSDT', 2999.5, 3000.5, 3000, ${ts}), ('spot', 'BTCUSDT', 89999, 90001, 90000, ${ts})
    ON CONFLICT (category, symbol) DO UPDATE SET bid = EXCLUDED.bid, ask = EXCLUDED.ask, last = EXCLUDED.last, ts = EXCLUDED.ts`);
}
