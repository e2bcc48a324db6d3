// The coalescing writer (runtime/coalesce.ts): writes that arrive while a flush is in flight go out
// together in the next flush, in order; each caller learns its own flush's outcome.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chunkByBytes, createCoalescer, mergeByTopic, recordBytes } from '../../runtime/coalesce.ts';

test('an idle writer flushes at once; writes during a flush go together in the next, in order', async () => {
  const flushes: number[][] = [];
  let release: () => void = () => {};
  const c = createCoalescer<number>(async (items) => {
    flushes.push(items);
    await new Promise<void>((r) => (release = r));
  });
  const w1 = c.write(1);
  assert.deepEqual(flushes, [[1]], 'the first write is flushed at once');
  const rest = [2, 3, 4].map((n) => c.write(n));
  assert.equal(c.pending(), 4);
  release();
  await w1;
  await Promise.resolve();
  assert.deepEqual(flushes, [[1], [2, 3, 4]]);
  release();
  await Promise.all(rest);
  await c.idle();
  assert.equal(c.pending(), 0);
});

test('a failed flush rejects exactly its own writes; the next flush goes on', async () => {
  let n = 0;
  const c = createCoalescer<string>(async () => {
    n++;
    if (n === 1) throw new Error('broker down');
  });
  const first = c.write('a');
  const second = c.write('b');
  await assert.rejects(first, /broker down/);
  await second;
  await c.idle();
  assert.equal(n, 2);
});

test('mergeByTopic keeps the order of the maps and within each list', () => {
  const m = mergeByTopic([new Map([['x', [1, 2]], ['y', [3]]]), new Map([['y', [4]], ['x', [5]]])]);
  assert.deepEqual([...m], [['x', [1, 2, 5]], ['y', [3, 4]]]);
});

test('chunkByBytes: consecutive sends of at most maxBytes, a larger message alone, per-topic order kept', () => {
  const size = (n: number) => n;
  const chunks = chunkByBytes(new Map([['x', [4, 4, 3]], ['y', [9, 1, 2]], ['z', [5]]]), size, 8);
  assert.deepEqual(chunks.map((c) => [...c]), [[['x', [4, 4]]], [['x', [3]]], [['y', [9]]], [['y', [1, 2]], ['z', [5]]]]);
  for (const c of chunks) {
    const total = [...c.values()].flat().reduce((a, n) => a + n, 0);
    assert.ok(total <= 8 || [...c.values()].flat().length === 1);
  }
  assert.deepEqual(chunkByBytes(new Map(), size, 8), []);
});

test('recordBytes counts value, key and headers', () => {
  const bare = recordBytes({ key: null, value: Buffer.alloc(100) });
  assert.ok(bare > 100);
  assert.equal(recordBytes({ key: 'BTCUSDT', value: Buffer.alloc(100), headers: { a: 'bc' } }), bare + 7 + 1 + 2 + 4);
});
