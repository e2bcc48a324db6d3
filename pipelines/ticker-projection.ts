// Ticker projection: market.tickers (Avro Ticker) → the `tickers` table in PostgreSQL, its one
// writer. Not a transactional stage: tickers are superseded facts that produce no event, so nothing
// needs to commit atomically with them, and the tracking stage's one Kafka transaction per chunk and
// input partition (AddOffsetsToTxn, TxnOffsetCommit, EndTxn and coordinator lookups) was most of the
// order manager's idle work with a live ticker stream (docs/performance.md, "Tickers off the
// exactly-once path").
//
// - Its own consumer group (TOPIC_PREFIX + 'ticker-projection'), read_committed, offsets committed by
//   hand only. A new group starts at the earliest offset: replaying the topic is harmless (below)
//   and keeps no gap after an upgrade from the release where the tracking group consumed the topic
//   (its offsets there are not taken over).
// - Each Kafka batch (one partition): decode, refuse what the table cannot hold, conflate to the
//   newest per (category, symbol) (`conflate`: the rule the tracking stage applied to its chunks),
//   ONE guarded upsert (`upsertTickers`), dead letters sent; only then does the offset after the
//   batch become due for commit (house style 4: acknowledge after the next hop has it).
// - Cheap at idle, where Bybit's tickers keep flowing (docs/performance.md, "Idle CPU: the ticker
//   projection's polls and commits"): the broker holds each fetch until TICKER_FETCH_MAX_WAIT_MS
//   has passed or FETCH_MIN_BYTES have arrived (one response per wait instead of one per trickle of
//   ticks; a backlog still answers at once), and the offsets due are committed together at most
//   once per TICKER_COMMIT_INTERVAL_MS (and when the unit stops) instead of once per batch. What
//   that costs: rows up to the wait behind the stream (RISK_TICKER_MAX_AGE_MS is a minute), and a
//   crash or a rebalance redelivers up to an interval of tickers, which the next point makes harmless.
// - At-least-once. A crash or a lost partition between the upsert and the commit delivers the batch
//   again, and the upsert is applied again: harmless, because it is idempotent and guarded by the
//   exchange time (a row only moves to a newer or equal `ts`, the book only with a newer or equal
//   `book_ts`), so a redelivered or an older record can never move a row back; replaying the whole
//   topic leaves the same rows as consuming it once. Dead letters of a redelivered batch can repeat;
//   they carry their source (topic/partition/offset) to tell.
// - A record that can never be stored: undecodable (reason as the codec says), or refused by the
//   tracking guards (a crossed book, a bad decimal or time: invalid_record) goes to orders.dlq as
//   the stage runner sends it (DeadLetter envelope, original bytes, the dlq.* headers), is counted
//   (pipeline_stage_records_rejected_total{stage="ticker-projection"}) and logged, and is committed
//   past: it never stops the partition. Should the batch's statement still fail for its data
//   (PostgreSQL class 22/23), the records are stored one at a time and the failing one is
//   dead-lettered the same way. A category the table does not keep (inverse, option) is counted as
//   ignored. A registry or database that cannot be reached is retried with backoff (nothing is
//   committed meanwhile, so nothing is skipped).
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ConsumerPort, InMessage, KafkaPort, OutMessage, ProducerPort, Batch, BatchControl } from '../runtime/kafka.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { Codec } from '../runtime/codec.ts';
import type { Clock } from '../runtime/clock.ts';
import { sql, type CommonQueryMethods, type DatabasePool } from '../runtime/db.ts';
import { FatalError, RejectedError } from '../runtime/errors.ts';
import { backoffMs, connectWithBackoff } from '../runtime/retry.ts';
import { Dec } from '../runtime/decimal.ts';
import { emptyToUndefined, int } from '../runtime/setting-types.ts';
import { z } from 'zod';
import type { Ticker } from '../schemas/types.ts';
import { deadLetterMessage, recordFailure } from './runner.ts';
import { unstorable } from './track-guards.ts';

export const name = 'ticker-projection';

/** Input and output record kinds (house style 8). */
export const inputSchema = { topic: 'market.tickers', record: 'Ticker' } as const;
export const outputSchemas = [{ topic: 'orders.dlq', record: 'DeadLetter' }] as const;

/** The categories the `tickers` table keeps (its check constraint). */
const CATEGORIES = new Set(['spot', 'linear']);

export const configSchema = z.object({
  TICKER_FETCH_MAX_WAIT_MS: z
    .preprocess(emptyToUndefined, int.min(10).max(10000).default(1000))
    .describe("How long the broker holds the ticker projection's fetch to gather tickers (it answers earlier once a backlog of 1 MiB is there): the `tickers` rows lag the stream by at most this, and it costs about 1000 / this fetches a second whether tickers flow or not. Stopping the unit or joining a rebalance may wait for the fetch in flight."),
  TICKER_COMMIT_INTERVAL_MS: z
    .preprocess(emptyToUndefined, int.min(0).max(600000).default(5000))
    .describe("The ticker projection commits the offsets of the batches it has stored at most once per this many ms (and when it stops); 0: after every batch. A crash redelivers up to this much of market.tickers, which the ts-guarded upsert makes harmless."),
});
export type TickerProjectionConfig = z.output<typeof configSchema>;

export function parseConfig(env: Record<string, unknown> = process.env): TickerProjectionConfig {
  return configSchema.parse(env);
}

/**
 * The fetch answers once this much has arrived (or at the wait): far above what the live stream
 * brings in one wait (Bybit pushes a few hundred bytes per ticker every 50–100 ms per symbol), so a
 * live fetch gathers a whole wait; a replay backlog fills it at once and reads at full speed.
 */
const FETCH_MIN_BYTES = 1_048_576;

// ---------------------------------------------------------------------------------------------
// Triage and conflation (pure)

/** What becomes of a decoded ticker: stored, left alone (a category the table does not keep), or refused (dead-lettered). */
export type Triage = { kind: 'keep' } | { kind: 'ignore'; reason: 'unsupported_category' } | { kind: 'refuse'; code: 'invalid_record'; detail: string };

export function triage(t: Ticker): Triage {
  const bad = unstorable('ticker', t);
  if (bad) return { kind: 'refuse', code: 'invalid_record', detail: bad };
  if (!CATEGORIES.has(t.category)) return { kind: 'ignore', reason: 'unsupported_category' };
  return { kind: 'keep' };
}

/**
 * The newest ticker of a (category, symbol) in a batch, with the best bid / ask as the batch's
 * records applied one after the other leave them: the newest ticker's own, or, when it brought none
 * (Bybit's spot stream), those of the newest earlier one that did. `bookTs` is the exchange time of
 * the record that brought them (null: none in the batch).
 */
export interface TickerProjection {
  ticker: Ticker;
  bid: string | null;
  ask: string | null;
  bookTs: number | null;
}

/**
 * Conflate tickers (in offset order) to one projection per (category, symbol), into `into`. A
 * ticker older than the one kept changes nothing, its book included (the row would refuse it too);
 * an equal time replaces it (a later record of the same instant is the newer word).
 */
export function conflate(tickers: readonly Ticker[], into: Map<string, TickerProjection> = new Map()): Map<string, TickerProjection> {
  for (const t of tickers) {
    const k = `${t.category}:${t.symbol}`;
    const cur = into.get(k);
    if (cur && t.ts < cur.ticker.ts) continue;
    // No bid / ask (Bybit's spot stream): the batch's earlier ones stay (why: upsertTickers).
    if (t.bid1Price || t.ask1Price) into.set(k, { ticker: t, bid: t.bid1Price || null, ask: t.ask1Price || null, bookTs: t.ts });
    else into.set(k, { ticker: t, bid: cur?.bid ?? null, ask: cur?.ask ?? null, bookTs: cur?.bookTs ?? null });
  }
  return into;
}

// ---------------------------------------------------------------------------------------------
// The one statement

/** Epoch ms → timestamptz exactly as `sql.timestamp(new Date(ms))` (to_timestamp(ms / 1000)). */
const TS = (col: ReturnType<typeof sql.identifier>) => sql.fragment`to_timestamp(${col}::float8 / 1000)`;
/** Canonical decimal text, or null for an empty or missing value. */
const dec = (v: string | null | undefined): string | null => (v === null || v === undefined || v === '' ? null : (Dec.maybe(v)?.toString() ?? null));

/**
 * Newest ticker per (category, symbol) of a batch (one row per key: `conflate`), applied only when not older
 * than the row (`ts`, the exchange time).
 *
 * bid / ask. Bybit's spot ticker stream carries no bid1/ask1; REST snapshots (exchange sync) and the
 * linear stream do. A newer tick without them keeps the bid / ask the row has instead of wiping
 * them: the risk stage prices limit orders from the bid / ask and sizes market orders at the side
 * they would take, and falls back to last price (a worse estimate) without them. They keep their own
 * exchange time, `book_ts`, and the risk stage uses them only while book_ts is within its
 * RISK_TICKER_MAX_AGE_MS, as it does the row by ts: a stream of fresh spot ticks cannot pass off a
 * stale book as fresh, which a plain COALESCE would. A book the batch carried from an earlier record
 * replaces the row's only if that record is not older than the row (`EXCLUDED.book_ts >= tickers.ts`),
 * which is what applying the batch's records one at a time would leave. A row without book_ts
 * (written before migration 011) had its bid / ask from its own record, at its ts. Idempotent: the
 * same projections again change nothing but `updated_at`.
 */
export async function upsertTickers(tx: CommonQueryMethods, tickers: readonly TickerProjection[]): Promise<void> {
  if (tickers.length === 0) return;
  const rows = tickers.map(({ ticker: t, bid, ask, bookTs }) => ({
    category: t.category,
    symbol: t.symbol,
    bid: dec(bid),
    ask: dec(ask),
    book_ts: bookTs,
    last: dec(t.lastPrice),
    mark_price: dec(t.markPrice),
    volume_24h: dec(t.volume24h),
    turnover_24h: dec(t.turnover24h),
    ts: t.ts,
  }));
  const col = (c: string) => TS(sql.identifier(['v', c]));
  await tx.query(sql.typeAlias('void')`
    INSERT INTO tickers (category, symbol, bid, ask, book_ts, last, mark_price, volume_24h, turnover_24h, ts)
    SELECT v.category, v.symbol, v.bid, v.ask, ${col('book_ts')}, v.last, v.mark_price, v.volume_24h, v.turnover_24h, ${col('ts')}
    FROM jsonb_to_recordset(${sql.fragment`${JSON.stringify(rows)}::jsonb`}) AS v(category text, symbol text, bid numeric, ask numeric, book_ts bigint, last numeric, mark_price numeric,
                                                  volume_24h numeric, turnover_24h numeric, ts bigint)
    ON CONFLICT (category, symbol) DO UPDATE SET
      bid = CASE WHEN EXCLUDED.book_ts >= tickers.ts THEN EXCLUDED.bid ELSE tickers.bid END,
      ask = CASE WHEN EXCLUDED.book_ts >= tickers.ts THEN EXCLUDED.ask ELSE tickers.ask END,
      book_ts = CASE WHEN EXCLUDED.book_ts >= tickers.ts THEN EXCLUDED.book_ts
                     ELSE COALESCE(tickers.book_ts, CASE WHEN tickers.bid IS NOT NULL OR tickers.ask IS NOT NULL THEN tickers.ts END) END,
      last = EXCLUDED.last, mark_price = EXCLUDED.mark_price, volume_24h = EXCLUDED.volume_24h, turnover_24h = EXCLUDED.turnover_24h,
      ts = EXCLUDED.ts, updated_at = now()
    WHERE tickers.ts <= EXCLUDED.ts`);
}

// ---------------------------------------------------------------------------------------------
// Metrics (the records in, dead letters, batch time and lag are the runner's stage metrics with
// stage="ticker-projection", so the pipeline dashboard shows this unit with the stages)

export const TICKER_METRICS = {
  upserts: 'ticker_projection_upserts_total',
  rows: 'ticker_projection_rows_total',
  ignored: 'ticker_projection_ignored_total',
  commits: 'ticker_projection_commits_total',
  newestTs: 'ticker_projection_newest_ts_seconds',
} as const;

function counter<L extends string>(registry: Registry, metricName: string, help: string, labelNames: L[]): Counter<L> {
  return (registry.getSingleMetric(metricName) as Counter<L> | undefined) ?? new Counter<L>({ name: metricName, help, labelNames, registers: [registry] });
}

export function tickerMetrics(registry: Registry) {
  return {
    upserts: counter(registry, TICKER_METRICS.upserts, 'Upsert statements of the ticker projection (one per Kafka batch with tickers to store)', []),
    rows: counter(registry, TICKER_METRICS.rows, 'Ticker rows sent to PostgreSQL by the ticker projection, after conflating each batch to the newest per (category, symbol)', []),
    ignored: counter(registry, TICKER_METRICS.ignored, 'Tickers the projection leaves alone, by reason (unsupported_category)', ['reason']),
    commits: counter(registry, TICKER_METRICS.commits, 'Offset commits of the ticker projection (each covers every batch stored since the one before)', []),
    newestTs: (registry.getSingleMetric(TICKER_METRICS.newestTs) as Gauge<'partition'> | undefined) ??
      new Gauge({ name: TICKER_METRICS.newestTs, help: 'Exchange time of the newest ticker the projection stored, per input partition (epoch seconds)', labelNames: ['partition'], registers: [registry] }),
  };
}

// ---------------------------------------------------------------------------------------------
// The unit

export interface TickerProjectionDeps {
  kafka: KafkaPort;
  codec: Codec;
  db: DatabasePool;
  logger: Logger;
  metrics: Metrics;
  clock: Clock;
  /** Physical topics: market.tickers and its dead-letter topic. */
  topic: string;
  dlqTopic: string;
  /** Consumer group (TOPIC_PREFIX applied). */
  groupId: string;
  /** Longest backoff between retries of the registry and the database, ms. */
  retryMaxMs: number;
  sessionTimeoutMs?: number;
  /** TICKER_FETCH_MAX_WAIT_MS and TICKER_COMMIT_INTERVAL_MS; their defaults when not given. */
  config?: Partial<TickerProjectionConfig>;
  /** A consumer kafkajs will not restart: the process must stop (its supervisor restarts it). */
  onFatal: (err: Error) => void;
}

export interface RunningTickerProjection {
  ready(): boolean;
  stop(): Promise<void>;
}

export async function runTickerProjection(deps: TickerProjectionDeps): Promise<RunningTickerProjection> {
  const log = deps.logger.child({ unit: name, topic: deps.topic, group: deps.groupId });
  const sm = deps.metrics.stage;
  const tm = tickerMetrics(deps.metrics.registry);
  const abort = new AbortController();
  let stopping = false;
  let joined = false;
  const cfg = { ...parseConfig({}), ...deps.config };
  // Offsets due: the offset after the last batch stored, per partition. Committed together by
  // `commitDue`, at most once per interval; a newer batch of a partition replaces its entry.
  const due = new Map<string, { topic: string; partition: number; offset: string }>();

  const producer: ProducerPort = deps.kafka.producer();
  await connectWithBackoff(() => producer.connect(), log, deps.retryMaxMs, { signal: abort.signal });
  const consumer: ConsumerPort = deps.kafka.consumer({
    groupId: deps.groupId,
    readCommitted: true,
    sessionTimeoutMs: deps.sessionTimeoutMs,
    maxWaitMs: cfg.TICKER_FETCH_MAX_WAIT_MS,
    minBytes: FETCH_MIN_BYTES,
    onFatal: (err) => {
      if (stopping) return;
      log.fatal({ err }, 'consumer stopped for good; stopping');
      deps.onFatal(err);
    },
  });
  consumer.onGroupJoin(({ assigned }) => {
    joined = true;
    // Partitions this member lost wait for no commit of ours: their new owner reads them from the
    // group's last commit (a redelivery, harmless), and an older offset of ours landing after its
    // commits would only move the group back.
    for (const [k, o] of due) if (!(assigned[o.topic] ?? []).includes(o.partition)) due.delete(k);
  });
  consumer.onCrash((err, restart) => {
    joined = false;
    log.warn({ err: err.message, restart }, 'Kafka consumer crashed');
  });

  /** Run `f` until it succeeds; false when the unit stops first. Only for errors that are not the record's. */
  const untilDone = async (what: string, f: () => Promise<void>): Promise<boolean> => {
    for (let attempt = 0; ; attempt++) {
      try {
        await f();
        return true;
      } catch (err) {
        if (stopping) return false;
        if (err instanceof RejectedError || recordFailure(err)) throw err;
        // What a restart can fix (a broken schema, lost credentials): stop loudly, as the runner does.
        if (err instanceof FatalError) {
          log.fatal({ err }, `${what} failed for good; stopping`);
          deps.onFatal(err);
          return false;
        }
        sm.retries.inc({ stage: name, code: (err as { code?: string }).code ?? 'error' });
        log.warn({ err: (err as Error).message, attempt: attempt + 1 }, `${what} failed; retrying`);
        await sleep(backoffMs(attempt, 100, deps.retryMaxMs), undefined, { signal: abort.signal }).catch(() => {});
      }
    }
  };

  /** The DeadLetter the stage runner sends for a record (the same envelope), counted and logged. */
  const deadLetter = async (msg: InMessage, code: string, detail: string): Promise<OutMessage> => {
    const letter = await deadLetterMessage({ codec: deps.codec, clock: deps.clock, stage: name, topic: deps.dlqTopic }, msg, code, detail);
    sm.rejected.inc({ stage: name, reason: code });
    log.warn({ partition: msg.partition, offset: msg.offset, reason: code, detail }, 'record dead-lettered');
    return letter;
  };

  let commitTimer: NodeJS.Timeout | null = null;
  let committing: Promise<void> = Promise.resolve();
  const commitDue = (): Promise<void> => {
    if (commitTimer) clearTimeout(commitTimer);
    commitTimer = null;
    // One commit at a time, so an older one cannot land after a newer one.
    committing = committing.then(async () => {
      if (due.size === 0) return;
      const offsets = [...due.values()];
      due.clear();
      try {
        await consumer.commitOffsets(offsets);
        tm.commits.inc();
      } catch (err) {
        // Not committed: those batches are delivered again after a restart or a rebalance (harmless,
        // see the header). Kept for the next commit unless a newer batch of the partition is due.
        for (const o of offsets) if (!due.has(`${o.topic}/${o.partition}`)) due.set(`${o.topic}/${o.partition}`, o);
        log.warn({ err: (err as Error).message, partitions: offsets.map((o) => o.partition) }, 'offset commit failed; retried with the next one');
      }
    });
    return committing;
  };
  const markDone = (topic: string, partition: number, offset: string): Promise<void> | void => {
    due.set(`${topic}/${partition}`, { topic, partition, offset });
    if (stopping) return; // no longer a member to commit it: delivered again (harmless)
    if (cfg.TICKER_COMMIT_INTERVAL_MS === 0) return commitDue();
    // Armed by the first batch after a commit, so a stream that pauses is still committed in time.
    commitTimer ??= setTimeout(() => void commitDue(), cfg.TICKER_COMMIT_INTERVAL_MS);
  };

  /** Decode, refuse, conflate, upsert, dead-letter, then the offset due: one Kafka batch. False when stopped before. */
  const handleBatch = async (batch: Batch): Promise<boolean> => {
    const t0 = performance.now();
    const kept: Array<{ msg: InMessage; t: Ticker }> = [];
    const letters: OutMessage[] = [];
    for (const msg of batch.messages) {
      sm.recordsIn.inc({ stage: name, topic: msg.topic });
      if (msg.value === null) {
        letters.push(await deadLetter(msg, 'empty_record', 'record has no value (tombstone)'));
        continue;
      }
      let t: Ticker | null = null;
      try {
        if (!(await untilDone('decoding', async () => void (t = (await deps.codec.decode(msg.topic, msg.value!)) as Ticker)))) return false;
      } catch (err) {
        letters.push(await deadLetter(msg, (err as RejectedError).code ?? 'undecodable', (err as Error).message));
        continue;
      }
      const what = triage(t!);
      if (what.kind === 'refuse') letters.push(await deadLetter(msg, what.code, what.detail));
      else if (what.kind === 'ignore') tm.ignored.inc({ reason: what.reason });
      else kept.push({ msg, t: t! });
    }
    const rows = [...conflate(kept.map((k) => k.t)).values()];
    if (rows.length) {
      try {
        if (!(await untilDone('storing tickers', () => upsertTickers(deps.db, rows)))) return false;
        tm.upserts.inc();
        tm.rows.inc(rows.length);
      } catch (err) {
        // The batch's statement fails for its data: store the records one at a time (the ts guard
        // makes that the same result) and dead-letter the one that still fails.
        log.warn({ err: (err as Error).message, partition: batch.partition }, 'batch upsert refused; storing the records one at a time');
        for (const { msg, t } of kept) {
          try {
            if (!(await untilDone('storing a ticker', () => upsertTickers(deps.db, [...conflate([t]).values()])))) return false;
            tm.upserts.inc();
            tm.rows.inc();
          } catch (e) {
            const f = recordFailure(e);
            letters.push(await deadLetter(msg, f?.reason ?? 'invalid_record', f?.detail ?? (e as Error).message));
          }
        }
      }
      const newest = Math.max(...rows.map((r) => r.ticker.ts));
      tm.newestTs.set({ partition: String(batch.partition) }, newest / 1000);
    }
    if (letters.length && !(await untilDone('sending dead letters', () => producer.send(deps.dlqTopic, letters)))) return false;
    const last = batch.messages[batch.messages.length - 1]!;
    // Only after PostgreSQL has the batch's rows and the dead-letter topic its letters.
    await markDone(batch.topic, batch.partition, String(BigInt(last.offset) + 1n));
    sm.lag.set({ stage: name, topic: batch.topic, partition: String(batch.partition) }, batch.lag);
    sm.batch.observe({ stage: name }, (performance.now() - t0) / 1000);
    return true;
  };

  await connectWithBackoff(() => consumer.connect(), log, deps.retryMaxMs, { signal: abort.signal });
  // A new group starts at the earliest offset (see the header: a replay is harmless).
  await consumer.subscribe([deps.topic], true);
  await consumer.run(async (batch: Batch, ctl: BatchControl) => {
    if (stopping || !ctl.isRunning() || ctl.isStale() || batch.messages.length === 0) return;
    if (!(await handleBatch(batch))) return;
    ctl.resolveOffset(batch.messages[batch.messages.length - 1]!.offset);
    await ctl.heartbeat();
  });
  log.info('ticker projection started');

  return {
    ready: () => joined && !stopping,
    stop: async () => {
      if (stopping) return;
      stopping = true;
      abort.abort();
      // What is stored and due, committed while still a member (a batch in flight that finishes
      // later is delivered again to the next member: harmless).
      await commitDue();
      await consumer.disconnect().catch(() => {});
      joined = false;
      await producer.disconnect().catch(() => {});
      log.info('ticker projection stopped');
    },
  };
}
