// Property-based bad-input suite for the signal bridge's pure part (connectors/signal-bridge.ts
// `toRecord`/`peek`, run on every RabbitMQ delivery before the Kafka send). Whatever the body and
// the AMQP properties: it never throws (a throw in the delivery callback would kill the consumer),
// the record's bytes are the body unchanged (or its first SIGNAL_BRIDGE_MAX_RECORD_BYTES, flagged
// truncated with the original size), the key is null or a short string, and every header is a
// string (Kafka headers). The real RabbitMQ → Kafka path with validation behind it is in
// tests/fuzz/bridges-kafka.fuzz.test.ts.
//
// FUZZ_RUNS scales the run counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ConsumeMessage } from 'amqplib';
import { BRIDGE_HEADERS, peek, toRecord } from '../../connectors/signal-bridge.ts';
import { INJECTIONS, nasty, nonUtf8, runs } from './arbitraries.ts';

const MAX = 2048;

function delivery(content: Buffer, props: Record<string, unknown>, headers: unknown): ConsumeMessage {
  return {
    content,
    fields: { deliveryTag: 1, redelivered: false, exchange: '', routingKey: 'q', consumerTag: 'c' } as ConsumeMessage['fields'],
    properties: { headers, ...props } as unknown as ConsumeMessage['properties'],
  };
}

const body = fc.oneof(
  fc.uint8Array({ maxLength: 3 * MAX }).map((a) => Buffer.from(a)),
  nonUtf8,
  fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
  fc.record({ asset: nasty, trace_id: nasty, signal_id: nasty }, { requiredKeys: [] }).map((o) => Buffer.from(JSON.stringify(o))),
  fc.constantFrom(...INJECTIONS).map((s) => Buffer.from(JSON.stringify({ asset: s, trace_id: s }))),
  fc.constant(Buffer.from('{"__proto__":{"asset":"POLLUTED"},"trace_id":"t"}')),
);
const props = fc.record({ messageId: nasty, correlationId: nasty, timestamp: nasty }, { requiredKeys: [] });
const headers = fc.oneof(fc.constant(undefined), fc.constant(null), fc.dictionary(fc.constantFrom('trace_id', 'x-trace-id', '__proto__', 'other'), fc.oneof(nasty, fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a)))));

test('signal bridge: any body and AMQP properties become a well-formed raw record', () => {
  fc.assert(
    fc.property(body, props, headers, (content, p, h) => {
      const out = toRecord(delivery(content, p, h), 1_760_000_000_000, MAX);
      const truncated = content.length > MAX;
      assert.ok(Buffer.isBuffer(out.value));
      assert.ok(out.value.equals(truncated ? content.subarray(0, MAX) : content), 'bytes unchanged (or their beginning)');
      assert.ok(out.key === null || (typeof out.key === 'string' && out.key.length > 0 && out.key.length <= 64), `key ${JSON.stringify(out.key)}`);
      for (const [k, v] of Object.entries(out.headers ?? {})) assert.equal(typeof v, 'string', `header ${k} is a string`);
      assert.equal(out.headers![BRIDGE_HEADERS.truncated], truncated ? 'true' : undefined);
      if (truncated) assert.equal(out.headers![BRIDGE_HEADERS.bodySize], String(content.length));
      assert.ok((out.headers![BRIDGE_HEADERS.traceId] ?? '').length > 0, 'always a trace id');
      assert.equal(({} as Record<string, unknown>).asset, undefined, 'no prototype pollution');
    }),
    { numRuns: runs(3000), seed: 501 },
  );
});

test('signal bridge: the partition key is the asset only when it is a short JSON string', () => {
  fc.assert(
    fc.property(nasty, (asset) => {
      const { asset: key } = peek(Buffer.from(JSON.stringify({ asset })));
      const expected = typeof asset === 'string' && asset.length > 0 && asset.length <= 64 ? asset : null;
      assert.equal(key, expected);
    }),
    { numRuns: runs(2000), seed: 502 },
  );
});
