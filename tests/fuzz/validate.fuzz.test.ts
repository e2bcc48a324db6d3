// Property-based bad-input suite for the signal path (fast-check): whatever bytes arrive, the
// validation stage never throws, every refusal carries a known machine-readable reason (and a
// signal_rejected event when the id is readable), every accepted record is a schema-valid Signal,
// and a valid signal behind any amount of garbage is still accepted. FUZZ_RUNS scales the run counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock } from '../../runtime/clock.ts';
import { createValidateStage, parseConfig, VALIDATION_REASONS, type ValidateState } from '../../pipelines/validate.ts';
import { invalidPaths } from '../../schemas/codecs.ts';
import type { StageRecord, StageResult } from '../../pipelines/runner.ts';
import { runs, validSignal } from './arbitraries.ts';

const NOW = Date.parse('2026-01-10T12:00:00Z');
const stage = createValidateStage({ config: parseConfig({ TOPIC_PREFIX: 'fz.', SIGNAL_MAX_BYTES: '4096' }) });
const REASON_CODES = new Set<string>(Object.values(VALIDATION_REASONS));
const state = (): ValidateState => ({ assets: new Map([['ETHUSDT', true], ['BTCUSDT', true], ['DOGEUSDT', false]]), known: new Map(), firstInChunk: new Map() });

let offset = 0;
const rec = (value: Buffer): StageRecord<Buffer> => ({ value, key: null, headers: { received_at: String(NOW) }, topic: 'fz.signals.raw', partition: 0, offset: String(offset++), timestamp: NOW, traceId: null });
const run = (value: Buffer, st = state()): StageResult => stage.process(rec(value), { state: st, clock: new ManualClock(NOW) });

const valid = () => validSignal(NOW - 1000, { strategy_id: 's-1' });

/** The invariants every outcome must satisfy. */
function checkOutcome(r: StageResult): void {
  if (r.kind === 'reject') {
    assert.ok(REASON_CODES.has(r.code), `unknown reason ${r.code}`);
    assert.ok(r.detail.length > 0);
    for (const o of r.outputs ?? []) {
      const ev = o.value as { event_type: string; reason_code: string };
      assert.equal(ev.event_type, 'signal_rejected');
      assert.equal(ev.reason_code, r.code);
      assert.deepEqual(invalidPaths('OrderEvent', o.value), []);
    }
  } else {
    assert.equal(r.outputs.length, 1);
    assert.deepEqual(invalidPaths('Signal', r.outputs[0]!.value), [], 'accepted records fit the Avro schema');
  }
}

// Values of every JSON type, plus the ones JSON cannot carry but a sloppy producer might send as text.
const nasty = fc.oneof(
  fc.constantFrom(null, true, false, 0, -0, -1, 1e308, -1e308, 5e-324, Number.MAX_SAFE_INTEGER + 2, '', ' ', 'NaN', 'Infinity', '-Infinity', '1e999', '0x10', '∞'),
  fc.constantFrom("'; DROP TABLE signals; --", '<script>alert(1)</script>', '${jndi:ldap://x}', '\u0000', '\ud800', '../../etc/passwd', '%s%s%s', 'A'.repeat(5000)),
  fc.string(),
  fc.double(),
  fc.integer(),
  fc.array(fc.anything(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.anything(), { maxKeys: 3 }),
);
const FIELDS = ['signal_id', 'signal_type', 'signal', 'asset', 'amount', 'confidence', 'timestamp', 'strategy_id', 'model_version', 'is_warmup', 'market_data_snapshot', 'metadata', 'trace_id'];

test('arbitrary bytes: never throws, always a known reason', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 6000 }), (bytes) => {
      checkOutcome(run(Buffer.from(bytes)));
    }),
    { numRuns: runs(400), seed: 42 },
  );
});

test('arbitrary JSON values: never throws, always a known reason or a schema-valid Signal', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      checkOutcome(run(Buffer.from(JSON.stringify(v) ?? 'null')));
    }),
    { numRuns: runs(400), seed: 43 },
  );
});

test('a valid signal with one field replaced or removed: rejected with a field reason, or still valid', () => {
  fc.assert(
    fc.property(fc.constantFrom(...FIELDS), nasty, fc.boolean(), (field, value, remove) => {
      const s = valid();
      if (remove) delete s[field];
      else s[field] = value;
      const r = run(Buffer.from(JSON.stringify(s)));
      checkOutcome(r);
      if (r.kind === 'ok') {
        const out = r.outputs[0]!.value as { amount: number; confidence: number };
        assert.ok(Number.isFinite(out.amount) && out.amount > 0, 'no accepted amount is zero, negative or not finite');
        assert.ok(out.confidence >= 0 && out.confidence <= 1);
      }
    }),
    { numRuns: runs(800), seed: 44 },
  );
});

test('amounts: only finite positive numbers within the cap are accepted', () => {
  fc.assert(
    fc.property(fc.oneof(fc.double(), fc.constantFrom(0, -0, -1, Number.MAX_VALUE, Number.MIN_VALUE)), (amount) => {
      const s = valid();
      s.amount = amount;
      const r = run(Buffer.from(JSON.stringify(s)));
      const ok = Number.isFinite(amount) && amount > 0 && amount <= 1e12;
      assert.equal(r.kind === 'ok', ok, `amount ${amount} → ${r.kind === 'reject' ? r.code : 'ok'}`);
      if (!ok) assert.equal((r as { code: string }).code, VALIDATION_REASONS.invalidAmount);
    }),
    { numRuns: runs(500), seed: 45 },
  );
});

test('timestamps: stale and future signals are refused by the clock, the rest accepted', () => {
  fc.assert(
    fc.property(fc.integer({ min: -3_600_000, max: 3_600_000 }), (delta) => {
      const s = valid();
      s.timestamp = new Date(NOW + delta).toISOString();
      const r = run(Buffer.from(JSON.stringify(s)));
      const expected = delta < -30_000 ? VALIDATION_REASONS.stale : delta > 5_000 ? VALIDATION_REASONS.future : 'ok';
      assert.equal(r.kind === 'ok' ? 'ok' : r.code, expected, `delta ${delta}`);
    }),
    { numRuns: runs(300), seed: 46 },
  );
});

test('a valid signal behind any garbage in the same chunk is still accepted; duplicates in a chunk are caught', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 20 }), (garbage) => {
      const st = state();
      for (const g of garbage) checkOutcome(stage.process(rec(Buffer.from(g)), { state: st, clock: new ManualClock(NOW) }));
      const r = stage.process(rec(Buffer.from(JSON.stringify(valid()))), { state: st, clock: new ManualClock(NOW) });
      assert.equal(r.kind, 'ok');
    }),
    { numRuns: runs(100), seed: 47 },
  );
});
