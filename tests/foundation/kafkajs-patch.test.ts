// kafkajs 2.2.4 re-arms a timer of about 1 ms on every connection's request queue whenever nothing
// is pending (tulios/kafkajs#1556): an idle service with dozens of connections spends a share of a
// core on it. patches/kafkajs+2.2.4.patch takes the fix of tulios/kafkajs#1667, applied by
// `npm ci` (postinstall: patch-package). These check the installed queue behaves as patched, that
// OffsetFetch v7 (require_stable, also from the patch) encodes as the protocol says, and that every
// install path (npm ci here and in both Docker stages) applies the patch.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync, readdirSync } from 'node:fs';

const require = createRequire(import.meta.url);
interface Queue {
  pending: unknown[];
  inflight: Map<number, unknown>;
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  push(r: { entry: ReturnType<typeof entry>; expectResponse: boolean; sendRequest: () => void }): void;
  fulfillRequest(r: { correlationId: number; payload: Buffer; size: number }): void;
  destroy(): void;
}
const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as new (o: Record<string, unknown>) => Queue;
const logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
const queues: Queue[] = [];
const queue = (maxInFlightRequests: number | null = null) => {
  const q = new RequestQueue({ maxInFlightRequests, requestTimeout: 30_000, enforceRequestTimeout: false, clientId: 't', broker: 'b:9092', logger });
  queues.push(q);
  return q;
};
// A failed check must not leave a queue's timer running (unpatched, it never stops by itself).
after(() => {
  for (const q of queues) q.destroy();
});
const entry = (correlationId: number) => ({ correlationId, apiKey: 3, apiName: 'Metadata', apiVersion: 1, resolve: () => {}, reject: () => {} });

test('an idle request queue arms no timer: nothing pending after a request completes', () => {
  const q = queue();
  let sent = 0;
  q.push({ entry: entry(1), expectResponse: true, sendRequest: () => sent++ });
  assert.equal(sent, 1, 'sent at once');
  q.fulfillRequest({ correlationId: 1, payload: Buffer.alloc(0), size: 0 });
  assert.equal(q.pending.length, 0);
  assert.equal(q.throttleCheckTimeoutId, null, 'no timer re-armed while nothing waits');
});

test('a request held back by a throttle is still sent once the throttle has passed', async () => {
  const q = queue();
  let sent = 0;
  q.throttledUntil = Date.now() + 20;
  q.push({ entry: entry(1), expectResponse: true, sendRequest: () => sent++ });
  assert.equal(sent, 0, 'throttled: queued');
  assert.notEqual(q.throttleCheckTimeoutId, null, 'a check is scheduled for the end of the throttle');
  // Wait for the outcome, not for a time: the scheduled check sends it.
  while (sent === 0) await new Promise((r) => setTimeout(r, 5));
  assert.equal(q.pending.length, 0);
});

test('a request held back by the in-flight limit goes when the one in flight completes; then the timer stops', async () => {
  const q = queue(1);
  const sent: number[] = [];
  q.push({ entry: entry(1), expectResponse: true, sendRequest: () => sent.push(1) });
  q.push({ entry: entry(2), expectResponse: true, sendRequest: () => sent.push(2) });
  assert.deepEqual(sent, [1]);
  q.fulfillRequest({ correlationId: 1, payload: Buffer.alloc(0), size: 0 });
  assert.deepEqual(sent, [1, 2]);
  q.fulfillRequest({ correlationId: 2, payload: Buffer.alloc(0), size: 0 });
  // The check armed while request 2 waited fires once more, finds nothing and arms no other
  // (unpatched it re-arms for ever, and this loop gives up).
  for (let i = 0; i < 200 && q.throttleCheckTimeoutId !== null; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(q.throttleCheckTimeoutId, null);
});

test('OffsetFetch v7 with require_stable is there: the request carries the flag, the versions list offers it', async () => {
  const offsetFetch = require('kafkajs/src/protocol/requests/offsetFetch/index.js') as { versions: string[]; protocol: (o: { version: string }) => (a: Record<string, unknown>) => { request: { apiVersion: number; encode: () => Promise<{ buffer: Buffer }> } } };
  assert.ok(offsetFetch.versions.includes('7'), `versions ${offsetFetch.versions.join(', ')}`);
  const encoded = async (requireStable: boolean) => {
    const { request } = offsetFetch.protocol({ version: '7' })({ groupId: 'g', topics: [{ topic: 't', partitions: [{ partition: 0 }] }], requireStable });
    assert.equal(request.apiVersion, 7);
    return (await request.encode()).buffer;
  };
  // header tags, group_id "g", one topic "t" with partition 0 and its tags, require_stable, tags
  const body = (flag: number) => Buffer.from([0, 2, 0x67, 2, 2, 0x74, 2, 0, 0, 0, 0, 0, flag, 0]);
  assert.deepEqual(await encoded(true), body(1));
  assert.deepEqual(await encoded(false), body(0));
});

test('a transaction whose offsets go first: AddOffsetsToTxn answered CONCURRENT_TRANSACTIONS is asked again, other errors are not', async () => {
  // The runner sends a chunk's offsets before its records (eagerTransaction), so AddOffsetsToTxn is
  // the transaction's first request and meets the coordinator still writing the previous one's
  // markers. Unpatched kafkajs sends it once and fails the transaction.
  const createEosManager = require('kafkajs/src/producer/eosManager/index.js') as (o: Record<string, unknown>) => {
    initProducerId(): Promise<void>;
    beginTransaction(): void;
    sendOffsets(o: { consumerGroupId: string; topics: Array<{ topic: string; partitions: Array<{ partition: number; offset: string }> }> }): Promise<void>;
  };
  const { createErrorFromCode } = require('kafkajs/src/protocol/error.js') as { createErrorFromCode: (code: number) => Error };
  const run = async (answers: number[]) => {
    const calls = { addOffsets: 0, commitOffsets: 0 };
    const broker = {
      initProducerId: async () => ({ producerId: 7, producerEpoch: 0 }),
      addOffsetsToTxn: async () => {
        const code = answers[calls.addOffsets++] ?? 0;
        if (code !== 0) throw createErrorFromCode(code);
      },
      txnOffsetCommit: async () => {
        calls.commitOffsets++;
      },
    };
    const cluster = { retry: { initialRetryTime: 1, maxRetryTime: 5, retries: 5 }, refreshMetadataIfNecessary: async () => {}, findGroupCoordinator: async () => broker };
    const eos = createEosManager({ logger, cluster, transactional: true, transactionalId: 'tx-1' });
    await eos.initProducerId();
    eos.beginTransaction();
    const outcome = await eos.sendOffsets({ consumerGroupId: 'g', topics: [{ topic: 't', partitions: [{ partition: 0, offset: '5' }] }] }).then(
      () => 'sent',
      (e: Error & { type?: string }) => e.type ?? e.message,
    );
    return { outcome, ...calls };
  };
  // 51: CONCURRENT_TRANSACTIONS, twice, then the coordinator takes it.
  assert.deepEqual(await run([51, 51]), { outcome: 'sent', addOffsets: 3, commitOffsets: 1 });
  // 47: INVALID_PRODUCER_EPOCH (fenced): not asked again, the offsets are not committed.
  const fenced = await run([47]);
  assert.equal(fenced.addOffsets, 1, 'a fenced producer is not retried');
  assert.equal(fenced.commitOffsets, 0);
  assert.notEqual(fenced.outcome, 'sent');
});

test('every install applies the patches: postinstall runs patch-package, both Docker stages copy patches/ before npm ci', () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string>; dependencies: Record<string, string> };
  assert.equal(pkg.scripts.postinstall, 'patch-package');
  // A production install (npm ci --omit=dev) runs the postinstall too, so patch-package is a dependency.
  assert.ok(pkg.dependencies['patch-package'], 'patch-package in dependencies');
  const patches = readdirSync('patches').filter((f) => f.endsWith('.patch'));
  assert.ok(patches.includes('kafkajs+2.2.4.patch'));
  // The patch is for one version: kafkajs is pinned to it.
  assert.equal(pkg.dependencies.kafkajs, '2.2.4');
  const df = readFileSync('Dockerfile', 'utf8');
  const stages = df.split(/^FROM /m).slice(1).filter((st) => /npm ci/.test(st));
  assert.ok(stages.length >= 2);
  for (const st of stages) {
    const copy = st.search(/^COPY patches /m);
    assert.ok(copy >= 0 && copy < st.search(/^RUN npm ci/m), `stage ${st.split('\n')[0]} copies patches/ before npm ci`);
  }
});
