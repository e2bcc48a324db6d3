// Shared arbitraries of the fuzz suites (not a test file: no .test.ts suffix).
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';

/** Run count scaled by FUZZ_RUNS (default 1): `FUZZ_RUNS=20 npm test` is the long form. */
export function runs(base: number): number {
  const k = Number(process.env.FUZZ_RUNS ?? '1');
  return Math.max(1, Math.round(base * (Number.isFinite(k) && k > 0 ? k : 1)));
}

/** Injection strings: SQL, log forging (newlines), prototype keys, format strings, lone surrogates, NUL. */
export const INJECTIONS = [
  "'; DROP TABLE signals; --",
  "' OR '1'='1",
  'a\nlevel=fatal msg="forged line"',
  'a\r\n{"level":60,"msg":"forged"}',
  '__proto__',
  'constructor',
  'prototype',
  '<script>alert(1)</script>',
  '${jndi:ldap://x}',
  '%s%s%s%n',
  '\u0000',
  '\ud800',
  '../../etc/passwd',
  'A'.repeat(5000),
] as const;

/** Values of every JSON type, plus the ones JSON cannot carry but a sloppy producer might send as text. */
export const nasty = fc.oneof(
  fc.constantFrom<unknown>(null, true, false, 0, -0, -1, 1e308, -1e308, 5e-324, Number.MAX_SAFE_INTEGER + 2, '', ' ', 'NaN', 'Infinity', '-Infinity', '1e999', '0x10', '∞'),
  fc.constantFrom<unknown>(...INJECTIONS),
  fc.string(),
  fc.double(),
  fc.integer(),
  fc.array(fc.anything(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.anything(), { maxKeys: 3 }),
  fc.constant<unknown>(JSON.parse('{"__proto__":{"polluted":true}}')),
);

/** Bytes that are not valid UTF-8 (lone continuation bytes, overlong forms, truncated sequences). */
export const nonUtf8 = fc.oneof(
  fc.constantFrom(Buffer.from([0xff, 0xfe, 0xfd]), Buffer.from([0xc0, 0xaf]), Buffer.from([0xe2, 0x82]), Buffer.from([0x80]), Buffer.from('{"asset":"ETH\xff"}', 'latin1')),
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((a) => Buffer.from([0xff, ...a])),
);

/** A trading signal validation accepts (fresh id, timestamp `at`), with fields overridden by `over`. */
export function validSignal(at: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    signal_id: randomUUID(),
    signal_type: 'buy',
    asset: 'ETHUSDT',
    amount: 100,
    confidence: 0.7,
    timestamp: new Date(at).toISOString(),
    strategy_id: 'fuzz',
    model_version: null,
    is_warmup: false,
    market_data_snapshot: { price: 3000, spread: 1, volume_24h: 1e6, volatility: 0.02, orderbook_depth: null, technical_indicators: null },
    metadata: null,
    trace_id: null,
    ...over,
  };
}
