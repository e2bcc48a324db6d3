// Validation stage: signals.raw (bytes as received from RabbitMQ) → signals.valid (Avro Signal).
//
// Pure `process` (house style 1); PostgreSQL only in `load` (enabled assets, which signal_ids are
// already recorded) and `persist` (one recorded outcome per signal_id). A refused record goes to
// signals.dlq with its original bytes and a reason code (the runner writes the envelope); when its
// signal_id is known, a `signal_rejected` OrderEvent goes to orders.events too, so the model learns
// from refusals (except for a repeated signal_id: see `repeated`).
//
// Checks, in this order (the first failing one is the reason):
//   oversize          value (or the bridge's amqp.body_size header) larger than SIGNAL_MAX_BYTES
//   malformed_json    not UTF-8, not JSON, or not a JSON object
//   duplicate_signal  signal_id already recorded from another record (PostgreSQL), or seen earlier in
//                     the same chunk. Checked as soon as the id is readable, before anything else, so
//                     a repeated id never gets a second outcome whatever else is wrong with it.
//   missing_field / invalid_signal_id / invalid_amount / invalid_confidence / invalid_timestamp /
//   invalid_field     the signal format (pipelines/signal-format.ts), every bad path in the detail
//   unknown_asset     not an instrument in PostgreSQL and not in ASSETS
//   asset_disabled    instrument disabled (enabled = false or not Trading), or not in ASSETS when set
//   stale_signal      timestamp older than SIGNAL_MAX_AGE_MS by the stage's clock
//   future_signal     timestamp later than the clock + SIGNAL_MAX_SKEW_MS
//
// Duplicates and replays. Every outcome row in `signals` records the Kafka record it was decided
// from (`source_record` = topic/partition/offset of signals.raw). The runner persists BEFORE it
// commits the Kafka transaction, so a crash in between makes the same record come back with its
// signal_id already in PostgreSQL. Such a record (same source_record) is a *replay*: it is validated
// again and its output emitted again (the first attempt's transaction was aborted, so nothing
// downstream saw it), and persist overwrites the row with the new outcome. A signal_id recorded from
// any *other* record is a duplicate: no second Signal, no signal_rejected event, a dead letter and a
// duplicate_count increment on the original row. Two validators racing on the same signal_id (different assets, different partitions) are
// settled by the primary key: persist inserts only if no row from another record exists, and
// otherwise throws a RetriableError, so the runner redoes the chunk and sees the winner's row.
// A same-source row already 'decided' (only possible after a consumer-group reset) is not emitted
// again: the signal went through once.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { emptyToUndefined, int } from '../runtime/setting-types.ts';
import type { Stage, StageRecord, StageResult, Output } from './runner.ts';
import { ok, reject } from './runner.ts';
import type { Clock } from '../runtime/clock.ts';
import { systemClock } from '../runtime/clock.ts';
import { readParts, sql, type DatabasePool, type CommonQueryMethods, type PartRows } from '../runtime/db.ts';
import { RetriableError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/logger.ts';
import { topicName } from '../runtime/topics.ts';
import type { OrderEvent, Signal } from '../schemas/types.ts';
import { ASSET_RE, hasControlChars, parseIsoTimestamp, parseSignalJson, signalIdOf, type NormalisedSignal } from './signal-format.ts';
import { pgSafe } from './record-guards.ts';

export const name = 'validate';

/** Kafka headers the stage reads (set by connectors/signal-bridge.ts). */
export const RAW_HEADERS = {
  receivedAt: 'received_at',
  traceId: 'trace_id',
  bodySize: 'amqp.body_size',
} as const;

export const VALIDATION_REASONS = {
  oversize: 'oversize',
  malformedJson: 'malformed_json',
  duplicate: 'duplicate_signal',
  missingField: 'missing_field',
  invalidSignalId: 'invalid_signal_id',
  invalidAmount: 'invalid_amount',
  invalidConfidence: 'invalid_confidence',
  invalidTimestamp: 'invalid_timestamp',
  invalidField: 'invalid_field',
  unknownAsset: 'unknown_asset',
  assetDisabled: 'asset_disabled',
  stale: 'stale_signal',
  future: 'future_signal',
} as const;
export type ReasonCode = (typeof VALIDATION_REASONS)[keyof typeof VALIDATION_REASONS];


/** The stage's settings (names as in runtime/config.ts; ASSETS is new there). */
export const configSchema = z.object({
  TOPIC_PREFIX: z.preprocess(emptyToUndefined, z.string().regex(/^[a-zA-Z0-9._-]*$/).default('')),
  SIGNAL_MAX_AGE_MS: z.preprocess(emptyToUndefined, int.min(0).default(30000)).describe('Signals older than this are rejected as stale.'),
  SIGNAL_MAX_SKEW_MS: z.preprocess(emptyToUndefined, int.min(0).default(5000)).describe('Signals dated further in the future than this are rejected.'),
  SIGNAL_MAX_BYTES: z.preprocess(emptyToUndefined, int.min(256).default(65536)).describe('Largest accepted signal message, bytes.'),
  ASSETS: z
    .preprocess(
      (v) => (Array.isArray(v) ? v : typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v === undefined ? [] : v),
      z.array(z.string().regex(ASSET_RE)),
    )
    .describe('Comma-separated symbols allowed to trade. Empty: every instrument enabled in PostgreSQL. A listed symbol without an instruments row is accepted by validation (the risk stage needs its filters).'),
});
export type ValidateConfig = z.output<typeof configSchema>;

/** Parse the stage's settings from an environment-like object (strings or already-typed values). */
export function parseConfig(env: Record<string, unknown> = process.env): ValidateConfig {
  return configSchema.parse(env);
}

/** Input and output record kinds (house style 8). */
export const inputSchema = { topic: 'signals.raw', record: 'raw' } as const;
export const outputSchemas = [
  { topic: 'signals.valid', record: 'Signal' },
  { topic: 'orders.events', record: 'OrderEvent' },
  { topic: 'signals.dlq', record: 'DeadLetter' },
] as const;

// ---------------------------------------------------------------------------------------------
// State

export interface KnownSignal {
  status: 'received' | 'valid' | 'rejected' | 'decided';
  /** topic/partition/offset of the raw record the row was recorded from; null if written elsewhere. */
  sourceRecord: string | null;
}

export interface ValidateState {
  /** symbol → may trade. Absent = unknown asset. */
  assets: ReadonlyMap<string, boolean>;
  /** signal_id → its row in `signals`, for the chunk's ids. */
  known: ReadonlyMap<string, KnownSignal>;
  /** signal_id → source of the first record of the chunk that carries it. */
  firstInChunk: ReadonlyMap<string, string>;
}

export const sourceOf = (rec: Pick<StageRecord<unknown>, 'topic' | 'partition' | 'offset'>): string => `${rec.topic}/${rec.partition}/${rec.offset}`;

// ---------------------------------------------------------------------------------------------
// Reading the bytes (shared by load, process and persist so they agree on which ids are "known")

export type Inspected =
  | { kind: 'oversize'; size: number }
  | { kind: 'malformed'; detail: string }
  | { kind: 'parsed'; json: Record<string, unknown>; signalId: string | null };

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function inspect(rec: Pick<StageRecord<Buffer>, 'value' | 'headers'>, maxBytes: number): Inspected {
  const declared = Number(rec.headers[RAW_HEADERS.bodySize]);
  const size = Number.isSafeInteger(declared) && declared > rec.value.length ? declared : rec.value.length;
  if (size > maxBytes) return { kind: 'oversize', size };
  let textValue: string;
  try {
    textValue = utf8.decode(rec.value);
  } catch {
    return { kind: 'malformed', detail: 'message is not valid UTF-8' };
  }
  let json: unknown;
  try {
    json = JSON.parse(textValue);
  } catch (err) {
    return { kind: 'malformed', detail: `not JSON: ${(err as Error).message}` };
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    return { kind: 'malformed', detail: `not a JSON object (got ${json === null ? 'null' : Array.isArray(json) ? 'array' : typeof json})` };
  }
  return { kind: 'parsed', json: json as Record<string, unknown>, signalId: signalIdOf(json) };
}

/** signal_id → source of the first record carrying it, in chunk order. */
export function firstOccurrences(records: ReadonlyArray<StageRecord<Buffer>>, maxBytes: number): Map<string, string> {
  const first = new Map<string, string>();
  for (const rec of records) {
    const p = inspect(rec, maxBytes);
    if (p.kind === 'parsed' && p.signalId && !first.has(p.signalId)) first.set(p.signalId, sourceOf(rec));
  }
  return first;
}

/** What validation reads for a chunk (the signal ids of its readable records), as parts of one statement (runtime/db.ts readParts). */
export function validationReads(ids: readonly string[]) {
  return {
    assets: {
      rows: z.object({ symbol: z.string(), enabled: z.boolean() }),
      query: sql.fragment`SELECT symbol, bool_or(enabled AND status = 'Trading') AS enabled FROM instruments GROUP BY symbol`,
    },
    known: {
      rows: z.object({ signal_id: z.string(), status: z.enum(['received', 'valid', 'rejected', 'decided']), source_record: z.string().nullable() }),
      query: sql.fragment`SELECT signal_id::text AS signal_id, status, source_record FROM signals WHERE signal_id = ANY(${sql.array([...ids], 'uuid')})`,
    },
  };
}

export type ValidationRows = PartRows<ReturnType<typeof validationReads>>;

/** Combine the instruments table with the ASSETS allow-list (see configSchema). */
export function assetMap(instruments: ReadonlyArray<{ symbol: string; enabled: boolean }>, allow: readonly string[]): Map<string, boolean> {
  const allowed = new Set(allow);
  const out = new Map<string, boolean>();
  for (const i of instruments) out.set(i.symbol, (out.get(i.symbol) ?? false) || (i.enabled && (allowed.size === 0 || allowed.has(i.symbol))));
  for (const a of allowed) if (!out.has(a)) out.set(a, true);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Outputs

/** Deterministic id of the signal_rejected event: the same signal and reason give the same id. */
export function rejectionEventId(signalId: string, code: string): string {
  const h = createHash('sha256').update(`signal_rejected\0${signalId}\0${code}`).digest('hex');
  // UUID-shaped (version 8, RFC 9562 "custom") so it fits wherever ids are UUIDs.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const str = (v: unknown, max = 256): string | null => (typeof v === 'string' && v.length > 0 && v.length <= max && !hasControlChars(v) ? v : null);
const num01 = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1 ? v : null);
const sideOf = (json: Record<string, unknown>): 'buy' | 'sell' | null => {
  const s = json.signal_type ?? json.signal;
  return s === 'buy' || s === 'sell' ? s : null;
};

/** The signal's context as far as each field is individually valid (for refusals). */
interface RefusalContext {
  signal_id: string;
  asset: string | null;
  side: 'buy' | 'sell' | null;
  strategy_id: string | null;
  model_version: string | null;
  is_warmup: boolean | null;
  confidence: number | null;
  trace_id: string | null;
}

function contextOf(signalId: string, json: Record<string, unknown>, headerTrace: string | null): RefusalContext {
  return {
    signal_id: signalId,
    asset: typeof json.asset === 'string' && ASSET_RE.test(json.asset) ? json.asset : null,
    side: sideOf(json),
    strategy_id: str(json.strategy_id),
    model_version: str(json.model_version),
    is_warmup: typeof json.is_warmup === 'boolean' ? json.is_warmup : null,
    confidence: num01(json.confidence),
    trace_id: str(json.trace_id) ?? headerTrace,
  };
}

function rejectionEvent(ctx: RefusalContext, code: string, detail: string, now: number): OrderEvent {
  return {
    event_id: rejectionEventId(ctx.signal_id, code),
    event_type: 'signal_rejected',
    occurred_at: now,
    observed_at: now,
    order_link_id: null,
    order_id: null,
    status: null,
    previous_status: null,
    category: null,
    symbol: ctx.asset,
    side: ctx.side === 'buy' ? 'Buy' : ctx.side === 'sell' ? 'Sell' : null,
    order_type: null,
    qty: null,
    price: null,
    filled_qty: null,
    avg_fill_price: null,
    fees: null,
    fee_currency: null,
    remaining_qty: null,
    last_exec_id: null,
    last_exec_qty: null,
    last_exec_price: null,
    slippage_bps: null,
    latencies: { signal_to_submitted_ms: null, submitted_to_ack_ms: null, submitted_to_first_fill_ms: null, to_final_ms: null },
    reason_code: code,
    reason_detail: detail.slice(0, 1000),
    signal_id: ctx.signal_id,
    strategy_id: ctx.strategy_id,
    model_version: ctx.model_version,
    is_warmup: ctx.is_warmup,
    confidence: ctx.confidence,
    trace_id: ctx.trace_id,
    source: 'signal',
    external: false,
    sequence: null,
  };
}

function receivedAt(rec: StageRecord<Buffer>): number {
  const v = Number(rec.headers[RAW_HEADERS.receivedAt]);
  return Number.isSafeInteger(v) && v > 0 ? v : rec.timestamp;
}

// ---------------------------------------------------------------------------------------------
// The stage

export interface ValidateDeps {
  config: ValidateConfig;
  /** Needed by load/persist; a stage without a db can still run `process` (unit tests). */
  db?: DatabasePool;
  clock?: Clock;
  logger?: Logger;
  /** Where persist writes: a transaction of its own unless given (signal-decide gives risk's lock transaction). */
  write?: <T>(fn: (tx: CommonQueryMethods) => Promise<T>) => Promise<T>;
}

export type ValidateStage = Stage<Buffer, ValidateState> & { stateFrom(rows: ValidationRows, firstInChunk: ReadonlyMap<string, string>): ValidateState };

export function createValidateStage(deps: ValidateDeps): ValidateStage {
  const cfg = deps.config;
  const clock = deps.clock ?? systemClock;
  const topics = {
    raw: topicName('signals.raw', cfg.TOPIC_PREFIX),
    valid: topicName('signals.valid', cfg.TOPIC_PREFIX),
    dlq: topicName('signals.dlq', cfg.TOPIC_PREFIX),
    events: topicName('orders.events', cfg.TOPIC_PREFIX),
  };

  const refuse = (code: ReasonCode, detail: string, ctx: RefusalContext | null, now: number): StageResult => {
    const outputs: Output[] = ctx ? [{ topic: topics.events, key: ctx.asset, value: rejectionEvent(ctx, code, detail, now), headers: { signal_id: ctx.signal_id, reason_code: code } }] : [];
    return reject(code, detail, outputs, ctx?.signal_id ?? null);
  };

  // A repeated delivery (a republish, a redelivery) is not a new outcome of the signal: the first
  // copy's outcome stands. The repeat is dead-lettered (duplicate_signal) and counted in
  // signals.duplicate_count, but gets no signal_rejected event: that event would tell consumers a
  // signal that became an order was rejected, or give a refused one a second refusal under another
  // event_id (the chaos run found the latter).
  const repeated = (id: string, detail: string): StageResult => reject(VALIDATION_REASONS.duplicate, detail, [], id);

  const processRecord = (rec: StageRecord<Buffer>, { state, clock: stageClock }: { state: ValidateState; clock: Clock }): StageResult => {
    const now = stageClock.now();
    const p = inspect(rec, cfg.SIGNAL_MAX_BYTES);
    if (p.kind === 'oversize') return refuse(VALIDATION_REASONS.oversize, `message is ${p.size} bytes, limit ${cfg.SIGNAL_MAX_BYTES}`, null, now);
    if (p.kind === 'malformed') return refuse(VALIDATION_REASONS.malformedJson, p.detail, null, now);
    const headerTrace = str(rec.headers[RAW_HEADERS.traceId]);
    const id = p.signalId;
    const ctx = id ? contextOf(id, p.json, headerTrace) : null;
    if (id && ctx) {
      const src = sourceOf(rec);
      const row = state.known.get(id);
      if (row && row.sourceRecord !== src) {
        return repeated(id, `signal_id ${id} already recorded (status ${row.status}) from ${row.sourceRecord ?? 'elsewhere'}`);
      }
      if (row && row.status === 'decided') return ok(); // same record read again after a group reset: already went through
      const first = state.firstInChunk.get(id);
      if (first !== undefined && first !== src) return repeated(id, `signal_id ${id} repeated; first seen at ${first}`);
    }

    const parsed = parseSignalJson(p.json);
    if (!parsed.ok) return refuse(parsed.code, parsed.detail, ctx, now);
    const s: NormalisedSignal = parsed.signal;
    const fullCtx: RefusalContext = { ...ctx!, trace_id: s.trace_id ?? headerTrace };

    const enabled = state.assets.get(s.asset);
    if (enabled === undefined) return refuse(VALIDATION_REASONS.unknownAsset, `asset ${s.asset} is not a known instrument`, fullCtx, now);
    if (!enabled) return refuse(VALIDATION_REASONS.assetDisabled, `asset ${s.asset} is disabled for trading`, fullCtx, now);

    const age = now - s.timestamp;
    if (age > cfg.SIGNAL_MAX_AGE_MS) return refuse(VALIDATION_REASONS.stale, `signal is ${age} ms old, limit ${cfg.SIGNAL_MAX_AGE_MS} ms`, fullCtx, now);
    if (-age > cfg.SIGNAL_MAX_SKEW_MS) return refuse(VALIDATION_REASONS.future, `signal is dated ${-age} ms in the future, allowance ${cfg.SIGNAL_MAX_SKEW_MS} ms`, fullCtx, now);

    const signal: Signal = { ...s, trace_id: fullCtx.trace_id, received_at: receivedAt(rec), validated_at: now };
    return ok({ topic: topics.valid, key: s.asset, value: signal, headers: { signal_id: s.signal_id } });
  };

  const requireDb = (): DatabasePool => {
    if (!deps.db) throw new Error('validate stage: load/persist need deps.db');
    return deps.db;
  };

  const load = async (records: StageRecord<Buffer>[]): Promise<ValidateState> => {
    const firstInChunk = firstOccurrences(records, cfg.SIGNAL_MAX_BYTES);
    return stateFrom(await readParts(requireDb(), validationReads([...firstInChunk.keys()])), firstInChunk);
  };

  /** The state of a chunk from what validationReads read (signal-decide reads it with risk's reads). */
  const stateFrom = (rows: ValidationRows, firstInChunk: ReadonlyMap<string, string>): ValidateState => ({
    assets: assetMap(rows.assets, cfg.ASSETS),
    known: new Map(rows.known.map((r) => [r.signal_id, { status: r.status, sourceRecord: r.source_record }])),
    firstInChunk,
  });

  const persist = async (items: Array<{ rec: StageRecord<Buffer>; result: StageResult }>): Promise<void> => {
    const db = requireDb();
    const rows: Array<{ rec: StageRecord<Buffer>; json: Record<string, unknown>; signalId: string; result: StageResult }> = [];
    for (const { rec, result } of items) {
      const p = inspect(rec, cfg.SIGNAL_MAX_BYTES);
      if (p.kind !== 'parsed' || !p.signalId) continue; // no signal_id: the dead letter is the record
      rows.push({ rec, json: p.json, signalId: p.signalId, result });
    }
    if (rows.length === 0) return;
    const write = deps.write ?? ((fn) => db.transaction(fn));
    await write(async (tx) => {
      await recordOutcomes(tx, rows, clock.now());
    });
  };

  return { name, input: topics.raw, inputFormat: 'raw', dlq: topics.dlq, load, process: processRecord, persist, stateFrom };
}

// ---------------------------------------------------------------------------------------------
// persist helpers

const signalRow = z.object({ signal_id: z.string() });

/** Rows per multi-row upsert (far below PostgreSQL's 65,535 bind parameters). */
const ROWS_PER_UPSERT = 500;

type OutcomeRow = { rec: StageRecord<Buffer>; json: Record<string, unknown>; signalId: string; result: StageResult };

/**
 * Records a chunk's outcomes: one multi-row upsert per ≤ ROWS_PER_UPSERT signals, then the
 * duplicates' counters in chunk order. A chunk whose recordable signal ids are not all distinct is
 * upserted one row at a time (one upsert cannot touch a row twice).
 */
async function recordOutcomes(tx: CommonQueryMethods, rows: OutcomeRow[], now: number): Promise<void> {
  const isDuplicate = (r: StageResult) => r.kind === 'reject' && r.code === VALIDATION_REASONS.duplicate;
  // ok without outputs: already decided, nothing to record.
  const toRecord = rows.filter((r) => !isDuplicate(r.result) && !(r.result.kind === 'ok' && r.result.outputs.length === 0));
  const step = new Set(toRecord.map((r) => r.signalId)).size === toRecord.length ? ROWS_PER_UPSERT : 1;
  for (let k = 0; k < toRecord.length; k += step) await upsertOutcomes(tx, toRecord.slice(k, k + step), now);
  for (const r of rows) {
    if (!isDuplicate(r.result)) continue;
    await tx.query(sql.typeAlias('void')`
      UPDATE signals SET duplicate_count = duplicate_count + 1, last_duplicate_at = ${sql.timestamp(new Date(now))}
      WHERE signal_id = ${r.signalId}`);
  }
}

/** One upsert of distinct signals; a row recorded from another raw record meanwhile redoes the chunk. */
async function upsertOutcomes(tx: CommonQueryMethods, part: OutcomeRow[], now: number): Promise<void> {
  const values = part.map(({ rec, json, signalId, result }) => {
    const v = outcomeValues(rec, json, signalId, result, now);
    return sql.fragment`(${signalId}, ${v.status}, ${v.outcome}, ${v.reason}, ${v.outcomeAt}, ${v.ctx.strategy_id}, ${v.ctx.model_version}, ${v.ctx.is_warmup},
          ${v.ctx.confidence}, ${v.ctx.asset}, ${v.ctx.side}, ${v.amount}, ${v.snapPrice},
          ${v.ts === null ? null : sql.timestamp(new Date(v.ts))}, ${v.valid?.trace_id ?? v.ctx.trace_id},
          ${sql.jsonb(pgSafe(json) as never)}, ${sql.timestamp(new Date(v.recvd))}, ${sourceOf(rec)})`;
  });
  const done = await tx.any(sql.type(signalRow)`
    INSERT INTO signals (signal_id, status, outcome, outcome_reason, outcome_at, strategy_id, model_version, is_warmup,
                         confidence, asset, side, amount, snapshot_price, signal_ts, trace_id, payload, received_at, source_record)
    VALUES ${sql.join(values, sql.fragment`, `)}
    ON CONFLICT (signal_id) DO UPDATE SET
      status = EXCLUDED.status, outcome = EXCLUDED.outcome, outcome_reason = EXCLUDED.outcome_reason, outcome_at = EXCLUDED.outcome_at,
      strategy_id = EXCLUDED.strategy_id, model_version = EXCLUDED.model_version, is_warmup = EXCLUDED.is_warmup,
      confidence = EXCLUDED.confidence, asset = EXCLUDED.asset, side = EXCLUDED.side, amount = EXCLUDED.amount,
      snapshot_price = EXCLUDED.snapshot_price, signal_ts = EXCLUDED.signal_ts, trace_id = EXCLUDED.trace_id,
      payload = EXCLUDED.payload, received_at = EXCLUDED.received_at
    WHERE signals.source_record = EXCLUDED.source_record AND signals.status <> 'decided'
    RETURNING signal_id::text AS signal_id`);
  const recorded = new Set(done.map((r) => r.signal_id));
  const raced = part.find((r) => !recorded.has(r.signalId));
  if (raced) {
    // Recorded from another raw record between load and persist (a concurrent validator): redo the
    // chunk so this record is judged against that row (it becomes a duplicate).
    throw new RetriableError('signal_id_race', `signal ${raced.signalId} was recorded from another record meanwhile; re-validating the chunk`);
  }
}

function outcomeValues(rec: StageRecord<Buffer>, json: Record<string, unknown>, signalId: string, result: StageResult, now: number) {
  const accepted = result.kind === 'ok';
  const valid = accepted ? (result.outputs[0]!.value as Signal) : null;
  const ctx = contextOf(signalId, json, null);
  const amount = typeof json.amount === 'number' && Number.isFinite(json.amount) && json.amount > 0 ? json.amount : null;
  const snap = json.market_data_snapshot as Record<string, unknown> | undefined;
  const snapPrice = snap && typeof snap === 'object' && typeof snap.price === 'number' && Number.isFinite(snap.price) && snap.price > 0 ? snap.price : null;
  const ts = typeof json.timestamp === 'string' ? parseIsoTimestamp(json.timestamp) : null;
  return {
    valid,
    ctx,
    amount,
    snapPrice,
    ts,
    status: accepted ? 'valid' : 'rejected',
    outcome: accepted ? null : 'rejected',
    reason: accepted ? null : (result as { code: string }).code,
    outcomeAt: accepted ? null : sql.timestamp(new Date(now)),
    recvd: receivedAt(rec),
  };
}
