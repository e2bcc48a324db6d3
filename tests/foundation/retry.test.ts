// The one retry helper and the start-up wait for an unavailable peer (issue 2: "broker unavailable
// at start: wait with backoff and say so in the log").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { retry, connectWithBackoff } from '../../runtime/retry.ts';
import { RetriableError, RejectedError, RetriesExhaustedError } from '../../runtime/errors.ts';

test('connectWithBackoff keeps trying, logs each wait, and returns once the peer answers', async () => {
  const warnings: Array<{ obj: Record<string, unknown>; msg: string }> = [];
  let calls = 0;
  await connectWithBackoff(
    async () => {
      if (++calls < 3) throw new Error('ECONNREFUSED 127.0.0.1:9092');
    },
    { warn: (obj, msg) => void warnings.push({ obj: obj as Record<string, unknown>, msg }) },
    250,
  );
  assert.equal(calls, 3);
  assert.equal(warnings.length, 2);
  assert.equal(warnings[0]!.msg, 'Kafka unavailable; waiting');
  assert.deepEqual(warnings.map((w) => w.obj.attempt), [1, 2]);
});

test('connectWithBackoff stops waiting when the unit is stopped, and at its deadline', async () => {
  const ac = new AbortController();
  const waiting = connectWithBackoff(async () => Promise.reject(new Error('down')), { warn: () => ac.abort() }, 60_000, { deadlineMs: Infinity, signal: ac.signal });
  await assert.rejects(waiting);
  await assert.rejects(connectWithBackoff(async () => Promise.reject(new Error('down')), { warn: () => {} }, 50, { deadlineMs: 0 }), /down/);
});

test('retry: retriable errors are retried, others are not, and giving up keeps the attempts', async () => {
  let n = 0;
  assert.equal(await retry(async () => (++n < 3 ? Promise.reject(new RetriableError('x', 'busy', 1)) : 'ok'), { minMs: 1, maxMs: 2 }), 'ok');
  let m = 0;
  await assert.rejects(retry(async () => (m++, Promise.reject(new RejectedError('bad', 'no'))), { minMs: 1 }), RejectedError);
  assert.equal(m, 1, 'a rejection is not retried');
  const err = await retry(async () => Promise.reject(new RetriableError('x', 'busy', 1)), { retries: 2, minMs: 1 }).catch((e) => e);
  assert.ok(err instanceof RetriesExhaustedError);
  assert.equal(err.attempts, 3);
});
