// Property-based bad-input suite for the Bybit stream parser the ws-gateway bridge runs on every
// RabbitMQ message (connectors/bybit-stream-format.ts; fast-check). Whatever arrives: parsing never
// throws (a throw would look like a Kafka failure to the bridge and requeue the message forever);
// a refusal always carries one of the known reason codes; and every record that comes out is one
// the downstream tracker can store: it fits its Avro schema (or the bridge's encode refuses it and
// dead-letters the message), its decimals are plain bounded decimals (no 1e100000000 that takes the
// tracker minutes of BigInt arithmetic or overflows PostgreSQL's numeric) and its text carries no
// NUL (which PostgreSQL text refuses). Valid items next to bad ones in one message still come out.
//
// FUZZ_RUNS scales the run counts (default 1; e.g. FUZZ_RUNS=20 for a long run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { parseStreamMessage, TickerBook, unwrap, unwrapBytes, type ParseContext, type ParsedRecord, type StreamRejectReason } from '../../connectors/bybit-stream-format.ts';
import { invalidPaths } from '../../schemas/codecs.ts';
import { Dec } from '../../runtime/decimal.ts';
import { nasty, runs } from './arbitraries.ts';

type Json = Record<string, unknown>;
const DOC = JSON.parse(readFileSync(new URL('../sim/fixtures/bybit-v5-doc-examples.json', import.meta.url), 'utf8')) as { examples: Array<{ name: string; example: Json }> };
const doc = (name: string): Json => structuredClone(DOC.examples.find((e) => e.name === name)!.example);
const EXAMPLES = ['ws order', 'ws execution', 'ws position', 'ws wallet', 'ws tickers (linear)', 'ws tickers (spot)'];
const REASON_CODES = new Set<StreamRejectReason>(['malformed_json', 'not_a_message', 'unknown_topic', 'invalid_item', 'empty_data', 'oversize']);
const NOW = 1_760_000_000_000;

const ctx = (): ParseContext => ({ source: 'ws', observedAt: NOW, tickerCategory: 'linear', tickers: new TickerBook() });

/** Decimal-string fields of each record kind (what the tracker feeds to Dec and PostgreSQL numeric). */
const DECIMALS: Record<string, string[]> = {
  ExchangeOrderUpdate: ['price', 'qty', 'cumExecQty', 'cumExecValue', 'cumExecFee', 'avgPrice', 'leavesQty'],
  Execution: ['execPrice', 'execQty', 'execValue', 'execFee', 'feeRate', 'leavesQty'],
  Position: ['size', 'avgPrice', 'positionValue', 'markPrice', 'liqPrice', 'leverage', 'positionIM', 'unrealisedPnl', 'cumRealisedPnl'],
  Ticker: ['lastPrice', 'bid1Price', 'bid1Size', 'ask1Price', 'ask1Size', 'volume24h', 'turnover24h', 'price24hPcnt', 'markPrice'],
  WalletBalance: ['totalEquity', 'totalWalletBalance', 'totalAvailableBalance', 'totalMarginBalance'],
};
const COIN_DECIMALS = ['equity', 'walletBalance', 'free', 'locked', 'availableToWithdraw', 'usdValue', 'unrealisedPnl', 'cumRealisedPnl', 'totalOrderIM', 'totalPositionIM'];

function assertStorableDecimal(where: string, v: unknown): void {
  if (v === null || v === '') return;
  assert.equal(typeof v, 'string', `${where} is a string`);
  const s = v as string;
  assert.ok(s.length <= 100, `${where} is a bounded decimal (${s.length} chars)`);
  const t = performance.now();
  const d = Dec.of(s);
  assert.ok(d.toString().length <= 200, `${where}=${s} expands to at most 200 digits`);
  assert.ok(performance.now() - t < 50, `${where}=${s} is cheap to parse`);
}

function assertNoNul(where: string, v: unknown): void {
  if (typeof v === 'string') assert.ok(!v.includes('\u0000'), `${where} holds no NUL`);
  else if (Array.isArray(v)) v.forEach((x, i) => assertNoNul(`${where}[${i}]`, x));
  else if (v !== null && typeof v === 'object' && !Buffer.isBuffer(v)) for (const [k, x] of Object.entries(v)) assertNoNul(`${where}.${k}`, x);
}

/** What the bridge requires of a record it writes (schema) and what the tracker requires (storable). */
function checkRecord(r: ParsedRecord): void {
  const v = r.value as unknown as Json;
  const paths = invalidPaths(r.record, v);
  // A record outside its schema is refused by the bridge's encode (RejectedError) and the message is
  // dead-lettered as invalid_item: acceptable, but then nothing else about it matters.
  if (paths.length > 0) return;
  assert.ok(typeof r.key === 'string' && r.key.length > 0, 'records are keyed');
  for (const f of DECIMALS[r.record] ?? []) assertStorableDecimal(`${r.record}.${f}`, v[f]);
  if (r.record === 'WalletBalance') for (const c of v.coin as Json[]) for (const f of COIN_DECIMALS) assertStorableDecimal(`coin.${f}`, c[f]);
  assertNoNul(r.record, v);
}

function checkBytes(bytes: Buffer, c = ctx()): void {
  const u = unwrapBytes(bytes);
  if (!u.ok) {
    assert.ok(REASON_CODES.has(u.reason), `unknown reason ${u.reason}`);
    assert.ok(u.detail.length > 0);
    return;
  }
  const p = parseStreamMessage(u.message, c);
  if (!p.ok) {
    assert.ok(REASON_CODES.has(p.reason), `unknown reason ${p.reason}`);
    assert.ok(p.detail.length > 0);
    return;
  }
  for (const r of p.records) checkRecord(r);
  for (const pr of p.problems) assert.ok(pr.detail.length > 0, 'every refused item says why');
  assert.ok(p.records.length + p.problems.length + p.skipped >= 1, 'every item is accounted for');
}

test('stream parser: arbitrary bytes never throw and always get a known reason', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 4000 }), (b) => checkBytes(Buffer.from(b))),
    { numRuns: runs(2000), seed: 101 },
  );
});

test('stream parser: arbitrary JSON values and Bybit-shaped objects never throw', () => {
  const topic = fc.oneof(fc.constantFrom('order', 'order.linear', 'execution', 'execution.spot', 'position', 'wallet', 'tickers.BTCUSDT', 'tickers.ETH', 'orderbook.50.BTCUSDT', '__proto__', 'constructor'), fc.string());
  const shaped = fc.record({ topic, id: fc.anything(), creationTime: fc.anything(), ts: fc.anything(), type: fc.oneof(fc.constantFrom('snapshot', 'delta'), fc.anything()), data: fc.oneof(fc.array(fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue()), { maxLength: 4 }), fc.jsonValue()) }, { requiredKeys: ['topic', 'data'] });
  fc.assert(
    fc.property(fc.oneof(fc.jsonValue(), shaped, shaped.map((m) => ({ payload: JSON.stringify(m), trace_id: 'tr' }))), (v) => {
      checkBytes(Buffer.from(JSON.stringify(v) ?? 'null'));
      // the direct connector hands parsed values to unwrap; same rules
      const u = unwrap(v);
      if (u.ok) parseStreamMessage(u.message, ctx());
    }),
    { numRuns: runs(2000), seed: 102 },
  );
});

// The fields the parser reads, per example: the ones a mutation should hit most of the time.
const FIELDS = ['symbol', 'orderId', 'orderLinkId', 'side', 'orderType', 'price', 'qty', 'orderStatus', 'cumExecQty', 'cumExecValue', 'cumExecFee', 'avgPrice', 'leavesQty', 'createdTime', 'updatedTime', 'category', 'execId', 'execPrice', 'execQty', 'execValue', 'execFee', 'execTime', 'feeRate', 'isMaker', 'size', 'positionIdx', 'markPrice', 'leverage', 'coin', 'walletBalance', 'equity', 'accountType', 'lastPrice', 'volume24h', 'bid1Price', '__proto__', 'constructor'];
// Numbers as Bybit's decimal strings, including the ones a plain decimal regex lets through.
const decimalText = fc.oneof(
  fc.constantFrom('0', '-0', '-1', '1e400', '1e100000000', '1E-99999', '9'.repeat(200), '0.' + '0'.repeat(300) + '1', '1.', '.5', '+1', '0x1f', 'NaN', 'Infinity', '1e+5', ' 1', '1\u0000'),
  fc.tuple(fc.integer({ min: -1e6, max: 1e6 }), fc.nat(99999)).map(([a, b]) => `${a}.${b}`),
);
const idText = fc.constantFrom('\u0000', 'om-\u0000x', 'a\r\nlevel=fatal msg=forged', "x'; DROP TABLE orders; --", '__proto__', '\ud800', 'A'.repeat(5000));

test('stream parser: Bybit examples with one field of one item replaced or removed never throw; the other items still come out', () => {
  fc.assert(
    fc.property(fc.constantFrom(...EXAMPLES), fc.constantFrom(...FIELDS), fc.oneof(nasty, decimalText, idText), fc.boolean(), fc.boolean(), (name, field, value, remove, inCoin) => {
      const m = doc(name);
      const data = m.data as Json | Json[];
      const items = Array.isArray(data) ? data : [data];
      const good = structuredClone(items[0]!);
      let target = items[0]!;
      if (inCoin && Array.isArray(target.coin) && target.coin.length > 0) target = target.coin[0] as Json;
      if (remove) delete target[field];
      else Object.defineProperty(target, field, { value, enumerable: true, writable: true, configurable: true });
      // a second, untouched copy of the item in the same message (private topics carry lists)
      if (Array.isArray(data)) data.push(good);
      const c = ctx();
      checkBytes(Buffer.from(JSON.stringify(m)), c);
      if (Array.isArray(data)) {
        const u = unwrapBytes(Buffer.from(JSON.stringify(m)));
        assert.ok(u.ok);
        const p = parseStreamMessage(u.message, ctx());
        assert.ok(p.ok);
        assert.ok(p.records.length >= 1, `the untouched item of ${name} still flows (problems: ${JSON.stringify(p.problems)})`);
      }
    }),
    { numRuns: runs(3000), seed: 103 },
  );
});

test('stream parser: decimal fields only ever come out as bounded plain decimals', () => {
  fc.assert(
    fc.property(fc.constantFrom('ws order', 'ws execution', 'ws position', 'ws tickers (spot)'), decimalText, (name, value) => {
      const m = doc(name);
      const data = m.data as Json | Json[];
      const item = (Array.isArray(data) ? data[0] : data)!;
      for (const f of ['qty', 'price', 'cumExecQty', 'execQty', 'execPrice', 'execFee', 'size', 'lastPrice', 'volume24h']) if (f in item) item[f] = value;
      checkBytes(Buffer.from(JSON.stringify(m)));
    }),
    { numRuns: runs(1000), seed: 104 },
  );
});

test('stream parser: deeply nested envelopes and JSON are refused, not a stack overflow', () => {
  for (const depth of [4, 50, 5000]) {
    const text = '{"payload":'.repeat(depth) + JSON.stringify(doc('ws order')) + '}'.repeat(depth);
    checkBytes(Buffer.from(text));
    const u = unwrapBytes(Buffer.from(text));
    assert.equal(u.ok, false, `${depth} envelopes are refused`);
  }
  checkBytes(Buffer.from('['.repeat(100_000) + ']'.repeat(100_000)));
});
