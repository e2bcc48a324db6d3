// Table-driven unit tests of the pure validation stage (pipelines/validate.ts): every rule, with its
// edge cases, on a ManualClock. No Kafka, no PostgreSQL: `process` gets a hand-built state.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ManualClock } from '../../runtime/clock.ts';
import { loadConfig } from '../../runtime/config.ts';
import { createDb, dropDatabase, ensureDatabase, sql, withDatabase, type DatabasePool } from '../../runtime/db.ts';
import { migrate, defaultMigrationsDir } from '../../runtime/migrate.ts';
import { RetriableError } from '../../runtime/errors.ts';
import type { StageRecord, StageResult } from '../../pipelines/runner.ts';
import { assetMap, createValidateStage, firstOccurrences, parseConfig, rejectionEventId, type ValidateState, type KnownSignal } from '../../pipelines/validate.ts';
import { pgSafe } from '../../pipelines/record-guards.ts';
import { parseIsoTimestamp, parseSignalJson } from '../../pipelines/signal-format.ts';
import type { OrderEvent, Signal } from '../../schemas/types.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';

const NOW = Date.parse('2025-11-25T21:35:10Z');
const PREFIX = 'unit.';
const config = parseConfig({ TOPIC_PREFIX: PREFIX, SIGNAL_MAX_AGE_MS: '30000', SIGNAL_MAX_SKEW_MS: '5000', SIGNAL_MAX_BYTES: '65536' });
const stage = createValidateStage({ config });
const RAW = `${PREFIX}signals.raw`;

/** The seed's example signal, with a fresh id and a timestamp 10 s before NOW. */
function seedSignal(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    signal_id: randomUUID(),
    signal_type: 'sell',
    asset: 'ETHUSDT',
    amount: 500.0,
    confidence: 0.9,
    timestamp: new Date(NOW - 10_000).toISOString(),
    strategy_id: 'strat-002',
    model_version: null,
    is_warmup: true,
    market_data_snapshot: {
      price: 3000.0,
      spread: 1.5,
      volume_24h: 1000000.0,
      volatility: 0.02,
      orderbook_depth: { bid_depth: 100.0, ask_depth: 120.0 },
      technical_indicators: null,
    },
    metadata: { reasoning: 'Warm-up signal: sell based on heuristics', risk_score: 0.3, randomness_level: 0.5 },
    trace_id: 'trace-12345',
    ...over,
  };
}

let nextOffset = 100;
function rec(value: Buffer | string | object, opts: { offset?: string; headers?: Record<string, string> } = {}): StageRecord<Buffer> {
  const buf = Buffer.isBuffer(value) ? value : Buffer.from(typeof value === 'string' ? value : JSON.stringify(value), 'utf8');
  return {
    value: buf,
    key: 'ETHUSDT',
    headers: { received_at: String(NOW - 50), trace_id: 'hdr-trace', ...opts.headers },
    topic: RAW,
    partition: 0,
    offset: opts.offset ?? String(nextOffset++),
    timestamp: NOW - 40,
    traceId: 'hdr-trace',
  };
}

const ASSETS = new Map([
  ['ETHUSDT', true],
  ['BTCUSDT', true],
  ['DOGEUSDT', false],
]);

function state(over: Partial<ValidateState> = {}): ValidateState {
  return { assets: ASSETS, known: new Map(), firstInChunk: new Map(), ...over };
}

function run(r: StageRecord<Buffer>, st: ValidateState = state(), now = NOW): StageResult {
  return stage.process(r, { state: st, clock: new ManualClock(now) });
}

function without(key: string, obj: Record<string, unknown> = seedSignal()): Record<string, unknown> {
  const { [key]: _omit, ...rest } = obj;
  return rest;
}
const snap = (over: Record<string, unknown>) => ({ ...(seedSignal().market_data_snapshot as object), ...over });

test('the seed example (fresh id and time) is accepted as a Signal on signals.valid keyed by asset', () => {
  const s = seedSignal();
  const r = run(rec(s));
  assert.equal(r.kind, 'ok');
  assert.equal(r.outputs.length, 1);
  const out = r.outputs[0]!;
  assert.equal(out.topic, `${PREFIX}signals.valid`);
  assert.equal(out.key, 'ETHUSDT');
  const v = out.value as Signal;
  assert.deepEqual(v, {
    signal_id: s.signal_id,
    signal_type: 'sell',
    asset: 'ETHUSDT',
    amount: 500,
    confidence: 0.9,
    timestamp: NOW - 10_000,
    strategy_id: 'strat-002',
    model_version: null,
    is_warmup: true,
    market_data_snapshot: { price: 3000, spread: 1.5, volume_24h: 1000000, volatility: 0.02, orderbook_depth: { bid_depth: 100, ask_depth: 120 }, technical_indicators: null },
    metadata: JSON.stringify(s.metadata),
    trace_id: 'trace-12345',
    received_at: NOW - 50,
    validated_at: NOW,
  });
});

test('normalisation: alias `signal`, upper-case UUID, optional fields absent, nested indicators, header trace id', () => {
  const id = randomUUID();
  const s = without('trace_id', without('model_version', without('metadata', without('signal_type', seedSignal({ signal: 'buy', signal_id: id.toUpperCase(), market_data_snapshot: snap({ technical_indicators: { rsi_14: 61.2, macd: { signal: -0.35, hist: null }, label: 'bullish' }, orderbook_depth: null }) })))));
  const r = run(rec(s));
  assert.equal(r.kind, 'ok', JSON.stringify(r));
  const v = r.outputs[0]!.value as Signal;
  assert.equal(v.signal_type, 'buy');
  assert.equal(v.signal_id, id.toLowerCase());
  assert.equal(v.model_version, null);
  assert.equal(v.metadata, null);
  assert.equal(v.trace_id, 'hdr-trace');
  assert.deepEqual(v.market_data_snapshot.technical_indicators, { rsi_14: 61.2, 'macd.signal': -0.35 });
  assert.equal(v.market_data_snapshot.orderbook_depth, null);
  // both spellings present and equal: fine; different: refused
  assert.equal(run(rec(seedSignal({ signal: 'sell' }))).kind, 'ok');
  const conflict = run(rec(seedSignal({ signal: 'buy' })));
  assert.equal(conflict.kind, 'reject');
  assert.equal(conflict.kind === 'reject' && conflict.code, 'invalid_field');
});

test('received_at falls back to the Kafka record timestamp when the header is missing or garbage', () => {
  for (const headers of [{ received_at: 'yesterday' }, { received_at: '' }]) {
    const r = run(rec(seedSignal(), { headers }));
    assert.equal(r.kind, 'ok');
    assert.equal((r.outputs[0]!.value as Signal).received_at, NOW - 40);
  }
});

// Each case: a record (or a way to build one), the expected reason code, and a fragment of the detail.
interface Case {
  name: string;
  value: () => Buffer | string | object;
  code: string;
  detail?: RegExp;
  headers?: Record<string, string>;
  /** Whether a signal_rejected event is expected (signal_id readable). Default true. */
  event?: boolean;
}

const big = 'x'.repeat(70_000);
const cases: Case[] = [
  // size and encoding
  { name: 'oversize body', value: () => seedSignal({ metadata: { pad: big } }), code: 'oversize', detail: /limit 65536/, event: false },
  { name: 'oversize declared by the bridge (truncated body)', value: () => seedSignal(), headers: { 'amqp.body_size': '900000' }, code: 'oversize', detail: /900000/, event: false },
  { name: 'not UTF-8', value: () => Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), code: 'malformed_json', detail: /UTF-8/, event: false },
  { name: 'latin-1 bytes inside an otherwise valid JSON', value: () => Buffer.concat([Buffer.from('{"strategy_id":"caf'), Buffer.from([0xe9]), Buffer.from('"}')]), code: 'malformed_json', event: false },
  { name: 'truncated JSON', value: () => JSON.stringify(seedSignal()).slice(0, 40), code: 'malformed_json', detail: /not JSON/, event: false },
  { name: 'empty body', value: () => Buffer.alloc(0), code: 'malformed_json', event: false },
  { name: 'JSON array', value: () => '[1,2]', code: 'malformed_json', detail: /array/, event: false },
  { name: 'JSON string', value: () => '"buy"', code: 'malformed_json', event: false },
  { name: 'JSON null', value: () => 'null', code: 'malformed_json', event: false },
  // missing fields
  ...['signal_id', 'asset', 'amount', 'confidence', 'timestamp', 'strategy_id', 'is_warmup', 'market_data_snapshot'].map((f): Case => ({
    name: `missing ${f}`,
    value: () => without(f),
    code: 'missing_field',
    detail: new RegExp(`^${f}: Required|; ${f}: Required|^${f}:`),
    event: f !== 'signal_id',
  })),
  { name: 'missing side (neither signal_type nor signal)', value: () => without('signal_type'), code: 'missing_field', detail: /signal_type: Required/ },
  { name: 'missing snapshot price', value: () => seedSignal({ market_data_snapshot: without('price', snap({})) }), code: 'missing_field', detail: /market_data_snapshot\.price/ },
  // signal_id
  { name: 'signal_id not a UUID', value: () => seedSignal({ signal_id: 'sig-1' }), code: 'invalid_signal_id', detail: /signal_id: must be a UUID/, event: false },
  { name: 'signal_id UUID with braces', value: () => seedSignal({ signal_id: `{${randomUUID()}}` }), code: 'invalid_signal_id', event: false },
  { name: 'signal_id a number', value: () => seedSignal({ signal_id: 12345 }), code: 'invalid_signal_id', event: false },
  // amount
  { name: 'amount 0', value: () => seedSignal({ amount: 0 }), code: 'invalid_amount', detail: /amount must be > 0/ },
  { name: 'amount negative', value: () => seedSignal({ amount: -500 }), code: 'invalid_amount' },
  { name: 'amount "NaN" string', value: () => seedSignal({ amount: 'NaN' }), code: 'invalid_amount', detail: /JSON number/ },
  { name: 'amount "Infinity" string', value: () => seedSignal({ amount: 'Infinity' }), code: 'invalid_amount' },
  { name: 'amount numeric string', value: () => seedSignal({ amount: '500' }), code: 'invalid_amount' },
  { name: 'amount 1e400 (JSON overflow to Infinity)', value: () => JSON.stringify(seedSignal()).replace('"amount":500', '"amount":1e400'), code: 'invalid_amount', detail: /finite/ },
  { name: 'amount huge but finite', value: () => seedSignal({ amount: 1e300 }), code: 'invalid_amount', detail: /<= 1000000000000/ },
  { name: 'amount null', value: () => seedSignal({ amount: null }), code: 'invalid_amount' },
  // confidence
  { name: 'confidence above 1', value: () => seedSignal({ confidence: 1.0000001 }), code: 'invalid_confidence', detail: /\[0, 1\]/ },
  { name: 'confidence negative', value: () => seedSignal({ confidence: -0.1 }), code: 'invalid_confidence' },
  { name: 'confidence as string', value: () => seedSignal({ confidence: '0.9' }), code: 'invalid_confidence' },
  // timestamp
  { name: 'timestamp epoch number', value: () => seedSignal({ timestamp: NOW }), code: 'invalid_timestamp' },
  { name: 'timestamp without offset', value: () => seedSignal({ timestamp: '2025-11-25T21:35:00' }), code: 'invalid_timestamp', detail: /ISO 8601/ },
  { name: 'timestamp 30 February', value: () => seedSignal({ timestamp: '2025-02-30T21:35:00Z' }), code: 'invalid_timestamp' },
  { name: 'timestamp hour 24', value: () => seedSignal({ timestamp: '2025-11-25T24:00:00Z' }), code: 'invalid_timestamp' },
  { name: 'timestamp garbage', value: () => seedSignal({ timestamp: 'yesterday' }), code: 'invalid_timestamp' },
  // other fields and types
  { name: 'signal_type upper case', value: () => seedSignal({ signal_type: 'BUY' }), code: 'invalid_field', detail: /signal_type/ },
  { name: 'signal_type hold', value: () => seedSignal({ signal_type: 'hold' }), code: 'invalid_field' },
  { name: 'asset lower case', value: () => seedSignal({ asset: 'ethusdt' }), code: 'invalid_field', detail: /asset/ },
  { name: 'asset a number', value: () => seedSignal({ asset: 42 }), code: 'invalid_field' },
  { name: 'is_warmup as string', value: () => seedSignal({ is_warmup: 'true' }), code: 'invalid_field', detail: /is_warmup/ },
  { name: 'strategy_id empty', value: () => seedSignal({ strategy_id: '' }), code: 'invalid_field', detail: /strategy_id/ },
  { name: 'strategy_id with NUL', value: () => seedSignal({ strategy_id: 'a\u0000b' }), code: 'invalid_field', detail: /control/ },
  { name: 'model_version a number', value: () => seedSignal({ model_version: 3 }), code: 'invalid_field', detail: /model_version/ },
  { name: 'metadata an array', value: () => seedSignal({ metadata: [1] }), code: 'invalid_field', detail: /metadata/ },
  { name: 'snapshot price 0', value: () => seedSignal({ market_data_snapshot: snap({ price: 0 }) }), code: 'invalid_field', detail: /market_data_snapshot\.price/ },
  { name: 'snapshot negative spread', value: () => seedSignal({ market_data_snapshot: snap({ spread: -1 }) }), code: 'invalid_field' },
  { name: 'snapshot not an object', value: () => seedSignal({ market_data_snapshot: 'n/a' }), code: 'invalid_field' },
  { name: 'several bad fields are all listed', value: () => seedSignal({ asset: 'eth', strategy_id: 7 }), code: 'invalid_field', detail: /asset: .*; strategy_id:/ },
  // asset list
  { name: 'unknown asset', value: () => seedSignal({ asset: 'XRPUSDT' }), code: 'unknown_asset', detail: /XRPUSDT/ },
  { name: 'disabled asset', value: () => seedSignal({ asset: 'DOGEUSDT' }), code: 'asset_disabled' },
  // time
  { name: 'stale by 1 ms', value: () => seedSignal({ timestamp: new Date(NOW - 30_001).toISOString() }), code: 'stale_signal', detail: /30001 ms old/ },
  { name: 'stale by an hour', value: () => seedSignal({ timestamp: '2025-11-25T20:35:10Z' }), code: 'stale_signal' },
  { name: 'future beyond skew by 1 ms', value: () => seedSignal({ timestamp: new Date(NOW + 5_001).toISOString() }), code: 'future_signal', detail: /5001 ms in the future/ },
  { name: 'future with an offset notation', value: () => seedSignal({ timestamp: '2025-11-26T00:40:10+03:00' }), code: 'future_signal' },
];

for (const c of cases) {
  test(`rejects: ${c.name} → ${c.code}`, () => {
    const value = c.value();
    const r = run(rec(value, { headers: c.headers }));
    assert.equal(r.kind, 'reject', `expected a rejection, got ${JSON.stringify(r).slice(0, 300)}`);
    if (r.kind !== 'reject') return;
    assert.equal(r.code, c.code, r.detail);
    if (c.detail) assert.match(r.detail, c.detail);
    const outputs = r.outputs ?? [];
    if (c.event === false) {
      assert.equal(outputs.length, 0, 'no signal_rejected event without a readable signal_id');
      return;
    }
    assert.equal(outputs.length, 1, 'a signal_rejected event when the signal_id is readable');
    const o = outputs[0]!;
    assert.equal(o.topic, `${PREFIX}orders.events`);
    const e = o.value as OrderEvent;
    const sent = (typeof value === 'object' && !Buffer.isBuffer(value) ? value : JSON.parse(String(value))) as Record<string, unknown>;
    assert.equal(e.event_type, 'signal_rejected');
    assert.equal(e.signal_id, String(sent.signal_id).toLowerCase());
    assert.equal(e.event_id, rejectionEventId(e.signal_id!, c.code));
    assert.equal(e.reason_code, c.code);
    assert.equal(e.reason_detail, r.detail);
    assert.equal(e.occurred_at, NOW);
    assert.equal(e.source, 'signal');
    assert.equal(e.external, false);
    // context carried when the field itself is valid
    assert.equal(e.strategy_id, typeof sent.strategy_id === 'string' && sent.strategy_id.length > 0 && !sent.strategy_id.includes('\u0000') ? sent.strategy_id : null);
    assert.equal(e.symbol, typeof sent.asset === 'string' && /^[A-Z0-9]+$/.test(sent.asset) ? sent.asset : null);
    assert.equal(o.key, e.symbol);
    assert.equal(e.confidence, typeof sent.confidence === 'number' && sent.confidence >= 0 && sent.confidence <= 1 ? sent.confidence : null);
    assert.equal(e.trace_id, 'trace-12345');
  });
}

test('boundaries are inclusive: exactly max age, exactly max skew, amount tiny, confidence 0 and 1', () => {
  for (const s of [
    seedSignal({ timestamp: new Date(NOW - 30_000).toISOString() }),
    seedSignal({ timestamp: new Date(NOW + 5_000).toISOString() }),
    seedSignal({ amount: 1e-9 }),
    seedSignal({ confidence: 0 }),
    seedSignal({ confidence: 1 }),
    seedSignal({ amount: 1e12 }),
  ]) {
    const r = run(rec(s));
    assert.equal(r.kind, 'ok', `${JSON.stringify(s).slice(0, 200)} → ${JSON.stringify(r).slice(0, 300)}`);
  }
});

test('the clock decides staleness: the same record is fresh now and stale 21 s later', () => {
  const r = rec(seedSignal());
  assert.equal(run(r, state(), NOW).kind, 'ok');
  const later = run(r, state(), NOW + 20_001);
  assert.equal(later.kind === 'reject' && later.code, 'stale_signal');
});

test('duplicate within one chunk: first accepted, the repeat refused with no second Signal', () => {
  const s = seedSignal();
  const chunk = [rec(s), rec(seedSignal()), rec({ ...s, amount: 999 })];
  const st = state({ firstInChunk: firstOccurrences(chunk, config.SIGNAL_MAX_BYTES) });
  const results = chunk.map((r) => run(r, st));
  assert.deepEqual(results.map((r) => r.kind), ['ok', 'ok', 'reject']);
  const dup = results[2]!;
  assert.equal(dup.kind === 'reject' && dup.code, 'duplicate_signal');
  assert.match(dup.kind === 'reject' ? dup.detail : '', /first seen at unit\.signals\.raw\/0\//);
  const valid = results.flatMap((r) => r.outputs ?? []).filter((o) => o.topic === `${PREFIX}signals.valid`);
  assert.equal(valid.length, 2);
  // the repeat is dead-lettered with the signal's id, but is no new outcome: no signal_rejected event
  assert.equal(dup.kind === 'reject' && dup.signalId, s.signal_id);
  assert.deepEqual(dup.outputs ?? [], []);
});

test('a repeated delivery never reports a second outcome: one signal_rejected event per signal, none for a signal that went through', () => {
  // Found by the chaos run: a signal refused (here: stale) and delivered again (a publisher's republish
  // after a lost confirm, a redelivery after the signal bridge was killed) got a second
  // signal_rejected event, duplicate_signal, under another event_id; a signal that became an order
  // got one too, and the model service takes any signal_rejected event as the signal's outcome.
  const rejectedEvents = (results: StageResult[]) =>
    results.flatMap((r) => r.outputs ?? []).filter((o) => o.topic === `${PREFIX}orders.events` && (o.value as OrderEvent).event_type === 'signal_rejected');
  for (const first of [{ status: 'rejected' as const, over: { timestamp: new Date(NOW - 60_000).toISOString() }, events: 1 }, { status: 'valid' as const, over: {}, events: 0 }]) {
    const s = seedSignal(first.over);
    const copy1 = rec(s);
    const r1 = run(copy1);
    // what persist records for the first copy, as the next chunk's load reads it back
    const known = new Map<string, KnownSignal>([[String(s.signal_id), { status: first.status, sourceRecord: `${RAW}/0/${copy1.offset}` }]]);
    const later = run(rec(s), state({ known }));
    const sameChunk = [rec(s), rec(s)];
    const inChunk = sameChunk.map((r) => run(r, state({ firstInChunk: firstOccurrences(sameChunk, config.SIGNAL_MAX_BYTES) })));
    assert.equal(later.kind === 'reject' && later.code, 'duplicate_signal');
    assert.equal(inChunk[1]!.kind === 'reject' && inChunk[1]!.code, 'duplicate_signal');
    assert.equal(rejectedEvents([r1, later]).length, first.events, `${first.status} first copy, repeat in a later chunk`);
    assert.equal(rejectedEvents(inChunk).length, first.events, `${first.status} first copy, repeat in the same chunk`);
  }
});

test('duplicate within a chunk even when the first copy is invalid (one recorded outcome per id)', () => {
  const s = seedSignal();
  const chunk = [rec({ ...s, amount: -1 }), rec(s)];
  const st = state({ firstInChunk: firstOccurrences(chunk, config.SIGNAL_MAX_BYTES) });
  const [a, b] = chunk.map((r) => run(r, st));
  assert.equal(a!.kind === 'reject' && a!.code, 'invalid_amount');
  assert.equal(b!.kind === 'reject' && b!.code, 'duplicate_signal');
});

test('a first copy without a readable id (oversize, malformed) does not own the id', () => {
  const s = seedSignal();
  const chunk = [rec({ ...s, metadata: { pad: big } }), rec(s)];
  const st = state({ firstInChunk: firstOccurrences(chunk, config.SIGNAL_MAX_BYTES) });
  const [a, b] = chunk.map((r) => run(r, st));
  assert.equal(a!.kind === 'reject' && a!.code, 'oversize');
  assert.equal(b!.kind, 'ok');
});

test('signal_id already recorded from another record → duplicate_signal, whatever else is wrong', () => {
  const s = seedSignal();
  const known = new Map<string, KnownSignal>([[String(s.signal_id), { status: 'decided', sourceRecord: `${RAW}/1/7` }]]);
  for (const v of [s, { ...s, timestamp: '2020-01-01T00:00:00Z' }, { ...s, amount: 0 }]) {
    const r = run(rec(v), state({ known }));
    assert.equal(r.kind === 'reject' && r.code, 'duplicate_signal');
    assert.match(r.kind === 'reject' ? r.detail : '', /status decided\) from unit\.signals\.raw\/1\/7/);
  }
  // ids compare case-insensitively (stored lower-case)
  const r = run(rec({ ...s, signal_id: String(s.signal_id).toUpperCase() }), state({ known }));
  assert.equal(r.kind === 'reject' && r.code, 'duplicate_signal');
  // a row written without a source record is someone else's: duplicate too
  const r2 = run(rec(s), state({ known: new Map([[String(s.signal_id), { status: 'valid', sourceRecord: null }]]) }));
  assert.equal(r2.kind === 'reject' && r2.code, 'duplicate_signal');
});

test('replay: the same raw record whose outcome is in PostgreSQL but whose Kafka commit was lost is emitted again', () => {
  const s = seedSignal();
  const r = rec(s, { offset: '4242' });
  for (const status of ['valid', 'rejected', 'received'] as const) {
    const known = new Map<string, KnownSignal>([[String(s.signal_id), { status, sourceRecord: `${RAW}/0/4242` }]]);
    const res = run(r, state({ known, firstInChunk: firstOccurrences([r], config.SIGNAL_MAX_BYTES) }));
    assert.equal(res.kind, 'ok', status);
    assert.equal(res.outputs.length, 1);
    assert.equal((res.outputs[0]!.value as Signal).signal_id, s.signal_id);
  }
  // re-decided on replay: if it has gone stale meanwhile, the replay refuses it (and persist overwrites the row)
  const known = new Map<string, KnownSignal>([[String(s.signal_id), { status: 'valid', sourceRecord: `${RAW}/0/4242` }]]);
  const late = run(r, state({ known }), NOW + 60_000);
  assert.equal(late.kind === 'reject' && late.code, 'stale_signal');
  // already decided by the risk stage (only after a consumer-group reset): not emitted again, not an error
  const decided = run(r, state({ known: new Map([[String(s.signal_id), { status: 'decided', sourceRecord: `${RAW}/0/4242` }]]) }));
  assert.deepEqual(decided, { kind: 'ok', outputs: [] });
  // same offset, other partition or other topic: a different record, so a duplicate
  const other = run({ ...r, partition: 1 }, state({ known }));
  assert.equal(other.kind === 'reject' && other.code, 'duplicate_signal');
});

test('rejection event ids are deterministic per (signal_id, reason) and UUID-shaped', () => {
  const id = randomUUID();
  assert.equal(rejectionEventId(id, 'stale_signal'), rejectionEventId(id, 'stale_signal'));
  assert.notEqual(rejectionEventId(id, 'stale_signal'), rejectionEventId(id, 'unknown_asset'));
  assert.notEqual(rejectionEventId(id, 'stale_signal'), rejectionEventId(randomUUID(), 'stale_signal'));
  assert.match(rejectionEventId(id, 'x'), /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  // a replay of a stale record repeats the same event id
  const r = rec(seedSignal({ timestamp: '2025-11-25T20:00:00Z' }));
  const a = run(r), b = run(r, state(), NOW + 1000);
  assert.equal(((a.outputs ?? [])[0]!.value as OrderEvent).event_id, ((b.outputs ?? [])[0]!.value as OrderEvent).event_id);
});

test('process never throws, whatever the bytes', () => {
  const samples: Array<Buffer | string> = ['{', '{}', '{"signal_id":null}', '{"__proto__":{"x":1}}', '{"signal_id":"' + randomUUID() + '","market_data_snapshot":{"technical_indicators":{"a":{"b":{"c":1}}}}}', Buffer.from([0xef, 0xbb, 0xbf, 0x7b, 0x7d]), '1e999', '"\\ud800"'];
  for (const s of samples) {
    const r = run(rec(s));
    assert.equal(r.kind, 'reject', String(s));
  }
});

test('asset map: instruments enabled flag, ASSETS allow-list, symbols only in ASSETS', () => {
  const rows = [
    { symbol: 'ETHUSDT', enabled: true },
    { symbol: 'ETHUSDT', enabled: false }, // spot enabled, linear disabled: tradable
    { symbol: 'DOGEUSDT', enabled: false },
    { symbol: 'SOLUSDT', enabled: true },
  ];
  assert.deepEqual([...assetMap(rows, [])], [['ETHUSDT', true], ['DOGEUSDT', false], ['SOLUSDT', true]]);
  assert.deepEqual([...assetMap(rows, ['ETHUSDT', 'BTCUSDT'])], [['ETHUSDT', true], ['DOGEUSDT', false], ['SOLUSDT', false], ['BTCUSDT', true]]);
});

test('config: defaults, env strings, ASSETS list, bad values refused', () => {
  const d = parseConfig({});
  assert.deepEqual(d, { TOPIC_PREFIX: '', SIGNAL_MAX_AGE_MS: 30000, SIGNAL_MAX_SKEW_MS: 5000, SIGNAL_MAX_BYTES: 65536, ASSETS: [] });
  assert.deepEqual(parseConfig({ ASSETS: ' BTCUSDT, ETHUSDT ,', SIGNAL_MAX_AGE_MS: '' }).ASSETS, ['BTCUSDT', 'ETHUSDT']);
  assert.throws(() => parseConfig({ ASSETS: 'btc' }));
  assert.throws(() => parseConfig({ SIGNAL_MAX_BYTES: '10' }));
});

test('ISO timestamps: offsets, fractions, invalid calendar dates', () => {
  assert.equal(parseIsoTimestamp('2025-11-25T21:35:00Z'), Date.parse('2025-11-25T21:35:00Z'));
  assert.equal(parseIsoTimestamp('2025-11-25T21:35:00.123456Z'), Date.parse('2025-11-25T21:35:00.123Z'));
  assert.equal(parseIsoTimestamp('2025-11-26T00:35:00+03:00'), Date.parse('2025-11-25T21:35:00Z'));
  assert.equal(parseIsoTimestamp('2025-11-25T16:05:00-0530'), Date.parse('2025-11-25T21:35:00Z'));
  assert.equal(parseIsoTimestamp('2024-02-29T00:00:00Z'), Date.parse('2024-02-29T00:00:00Z'));
  for (const bad of ['2025-02-29T00:00:00Z', '2025-13-01T00:00:00Z', '2025-11-25', '2025-11-25T21:35:60Z', '2025-11-25T21:35:00+25:00', '']) {
    assert.equal(parseIsoTimestamp(bad), null, bad);
  }
});

test('the format schema is reusable on its own (what the model service emits)', () => {
  const ok = parseSignalJson(seedSignal());
  assert.equal(ok.ok, true);
  const bad = parseSignalJson({ ...seedSignal(), amount: -1, confidence: 2 });
  assert.equal(bad.ok, false);
  if (!bad.ok) assert.deepEqual(bad.paths, ['amount', 'confidence']);
});

test('pgSafe: NUL and lone surrogates replaced, non-finite numbers nulled', () => {
  assert.deepEqual(pgSafe({ a: 'x\u0000y', b: ['\ud800'], 'k\u0000': 1, n: Infinity }), { a: 'x\uFFFDy', b: ['\uFFFD'], 'k\uFFFD': 1, n: null });
  assert.equal(pgSafe('\ud83d\ude00'), '\ud83d\ude00');
});

// ---------------------------------------------------------------------------------------------
// load / persist on the real PostgreSQL: a migrated database of this file's own (dropped after).
// Until the `signals.source_record` column is in sql/ (requested from the schema owner), the test
// applies the proposed migration itself, from a copy of sql/ in a temporary folder.

const PROPOSED_SOURCE_RECORD_MIGRATION = `-- signals.source_record: which signals.raw record the validation stage decided a signal from.
ALTER TABLE signals ADD COLUMN source_record text;
COMMENT ON COLUMN signals.source_record IS 'Kafka record (topic/partition/offset of signals.raw) the validation stage recorded this outcome from. The same record read again after a crash before the Kafka commit is a replay (emitted again); another record with this signal_id is a duplicate.';
`;

const dbUrl = withDatabase(loadConfig(process.env, UNIT_SCHEMAS).DATABASE_URL, `test_validate_${randomBytes(6).toString('hex')}`);
let pool: DatabasePool;
let migDir: string;

before(async () => {
  migDir = await mkdtemp(join(tmpdir(), 'validate-mig-'));
  const files = (await readdir(defaultMigrationsDir)).filter((f) => /^\d{3,}_[a-z0-9_]+\.sql$/.test(f)).sort();
  let has = false;
  for (const f of files) {
    const text = await readFile(join(defaultMigrationsDir, f), 'utf8');
    has ||= text.includes('source_record');
    await writeFile(join(migDir, f), text);
  }
  if (!has) {
    const next = String(Math.max(...files.map((f) => Number(f.split('_')[0]))) + 1).padStart(3, '0');
    await writeFile(join(migDir, `${next}_signal_source_record.sql`), PROPOSED_SOURCE_RECORD_MIGRATION);
  }
  await ensureDatabase(dbUrl);
  pool = await createDb(dbUrl, { maximumPoolSize: 3 });
  await migrate(pool, { dir: migDir });
  await pool.query(sql.typeAlias('void')`
    INSERT INTO instruments (category, symbol, base_coin, quote_coin, tick_size, qty_step, enabled)
    VALUES ('spot', 'ETHUSDT', 'ETH', 'USDT', 0.01, 0.0001, true), ('spot', 'DOGEUSDT', 'DOGE', 'USDT', 0.00001, 1, false)`);
});

after(async () => {
  await pool?.end();
  await dropDatabase(dbUrl).catch(() => {});
  if (migDir) await rm(migDir, { recursive: true, force: true });
});

const rowSchema = z.object({
  signal_id: z.string(),
  status: z.string(),
  outcome: z.string().nullable(),
  outcome_reason: z.string().nullable(),
  duplicate_count: z.number(),
  source_record: z.string().nullable(),
  amount: z.string().nullable(),
  side: z.string().nullable(),
});
const rowOf = (id: string) => pool.maybeOne(sql.type(rowSchema)`
  SELECT signal_id::text AS signal_id, status, outcome, outcome_reason, duplicate_count, source_record, amount, side FROM signals WHERE signal_id = ${id}`);

/** What the runner does for one chunk: load, process each record, persist. */
async function runChunk(st: ReturnType<typeof createValidateStage>, records: StageRecord<Buffer>[], now = NOW): Promise<StageResult[]> {
  const s = await st.load!(records);
  const results = records.map((r) => st.process(r, { state: s, clock: new ManualClock(now) }));
  await st.persist!(records.map((rec, i) => ({ rec, result: results[i]! })), s);
  return results;
}

test('db: one recorded outcome per signal_id; a replay of the same records re-emits; a new record with a known id is a duplicate', async () => {
  const dbStage = createValidateStage({ config, db: pool, clock: new ManualClock(NOW) });
  const x = seedSignal({ metadata: { note: 'nul \u0000 inside' } });
  const y = seedSignal({ timestamp: '2025-11-25T20:00:00Z' });
  const chunk = [rec(x, { offset: '1' }), rec(y, { offset: '2' }), rec({ ...x, amount: 1 }, { offset: '3' }), rec('garbage', { offset: '4' }), rec(seedSignal({ asset: 'DOGEUSDT' }), { offset: '5' })];
  const first = await runChunk(dbStage, chunk);
  assert.deepEqual(first.map((r) => (r.kind === 'ok' ? 'ok' : r.code)), ['ok', 'stale_signal', 'duplicate_signal', 'malformed_json', 'asset_disabled']);
  const rx = await rowOf(String(x.signal_id));
  assert.deepEqual(rx, { signal_id: x.signal_id, status: 'valid', outcome: null, outcome_reason: null, duplicate_count: 1, source_record: `${RAW}/0/1`, amount: '500', side: 'sell' });
  const ry = await rowOf(String(y.signal_id));
  assert.equal(ry?.status, 'rejected');
  assert.equal(ry?.outcome, 'rejected');
  assert.equal(ry?.outcome_reason, 'stale_signal');

  // Crash after persist, before the Kafka commit: the same records come again.
  const replay = await runChunk(dbStage, chunk);
  assert.deepEqual(replay.map((r) => (r.kind === 'ok' ? 'ok' : r.code)), ['ok', 'stale_signal', 'duplicate_signal', 'malformed_json', 'asset_disabled']);
  assert.equal((replay[0]!.outputs ?? []).length, 1, 'the accepted signal is emitted again on replay');
  assert.equal((await rowOf(String(x.signal_id)))?.status, 'valid');

  // The same signal sent again by the model (a new raw record): duplicate, nothing emitted to signals.valid.
  const again = await runChunk(dbStage, [rec(x, { offset: '77' })]);
  assert.equal(again[0]!.kind === 'reject' && again[0]!.code, 'duplicate_signal');
  assert.equal((again[0]!.outputs ?? []).filter((o) => o.topic.endsWith('signals.valid')).length, 0);
  assert.ok((await rowOf(String(x.signal_id)))!.duplicate_count >= 2);

  // Replay whose decision changed (stale by now): the row follows what is emitted.
  const late = await runChunk(dbStage, [chunk[0]!], NOW + 120_000);
  assert.equal(late[0]!.kind === 'reject' && late[0]!.code, 'stale_signal');
  const rl = await rowOf(String(x.signal_id));
  assert.equal(rl?.status, 'rejected');
  assert.equal(rl?.outcome_reason, 'stale_signal');

  // Once the risk stage has decided it, the same record is not emitted again (group reset).
  await pool.query(sql.typeAlias('void')`UPDATE signals SET status = 'decided', outcome = 'create', outcome_reason = NULL, outcome_at = now() WHERE signal_id = ${String(x.signal_id)}`);
  const reset = await runChunk(dbStage, [chunk[0]!]);
  assert.deepEqual(reset[0], { kind: 'ok', outputs: [] });
  assert.equal((await rowOf(String(x.signal_id)))?.outcome, 'create');
});

test('db: two validators racing on one signal_id: the loser retries and sees a duplicate', async () => {
  const dbStage = createValidateStage({ config, db: pool, clock: new ManualClock(NOW) });
  const z1 = seedSignal();
  const a = [rec(z1, { offset: '900' })];
  const b = [{ ...rec({ ...z1, asset: 'BTCUSDT' }, { offset: '900' }), partition: 2 }];
  const sa = await dbStage.load!(a);
  const sb = await dbStage.load!(b);
  const clock = new ManualClock(NOW);
  const ra = dbStage.process(a[0]!, { state: sa, clock });
  assert.equal(ra.kind, 'ok');
  await dbStage.persist!([{ rec: a[0]!, result: ra }], sa);
  const sb2 = { ...sb, assets: new Map([...sb.assets, ['BTCUSDT', true]]) };
  const rb2 = dbStage.process(b[0]!, { state: sb2, clock });
  assert.equal(rb2.kind, 'ok', 'B judged on stale state accepts too');
  await assert.rejects(dbStage.persist!([{ rec: b[0]!, result: rb2 }], sb2), (e: unknown) => e instanceof RetriableError && e.code === 'signal_id_race');
  // the runner redoes B's chunk: fresh state, now a duplicate
  const sb3 = await dbStage.load!(b);
  const rb3 = dbStage.process(b[0]!, { state: sb3, clock });
  assert.equal(rb3.kind === 'reject' && rb3.code, 'duplicate_signal');
  await dbStage.persist!([{ rec: b[0]!, result: rb3 }], sb3);
  const row = await rowOf(String(z1.signal_id));
  assert.equal(row?.source_record, `${RAW}/0/900`);
  assert.equal(row?.duplicate_count, 1);
});

test('rejections carry the signal_id for the dead-letter envelope when it is readable', () => {
  const s = seedSignal({ amount: 0 });
  const r = run(rec(s));
  assert.equal(r.kind === 'reject' && r.signalId, s.signal_id);
  const g = run(rec('garbage'));
  assert.equal(g.kind === 'reject' && g.signalId, null);
});

test('every output is a valid Avro record of its topic (Signal, OrderEvent)', async () => {
  const { invalidPaths } = await import('../../schemas/codecs.ts'); // dynamic: codecs load the .avsc files
  const outs = [
    run(rec(seedSignal())),
    run(rec(seedSignal({ market_data_snapshot: snap({ technical_indicators: { rsi: 50, macd: { hist: 1 } } }) }))),
    run(rec(seedSignal({ amount: 'x', strategy_id: null, confidence: 7 }))),
    run(rec(seedSignal({ asset: 'XRPUSDT', trace_id: null }))),
  ].flatMap((r) => r.outputs ?? []);
  assert.equal(outs.length, 4);
  for (const o of outs) {
    const kind = o.topic.endsWith('signals.valid') ? 'Signal' : 'OrderEvent';
    assert.deepEqual(invalidPaths(kind, o.value), [], `${kind} ${JSON.stringify(o.value).slice(0, 200)}`);
  }
});
