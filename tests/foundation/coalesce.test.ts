// The coalescing writer (runtime/coalesce.ts): writes that arrive while a flush is in flight go out
// together in the next flush, in order; each caller learns its own flush's outcome.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chunkByBytes, createCoalescer, recordBytes } from '../../runtime/coalesce.ts';
import { RejectedError } from '../../runtime/errors.ts';

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

test('bounded: while a flush hangs, waiting writes stay within the bounds; shed picks what is given up, which rejects with buffer_full', async () => {
  type Item = { id: number; ticker: boolean; size: number };
  const flushed: number[][] = [];
  let release: () => void = () => {};
  const c = createCoalescer<Item>(
    async (items) => {
      flushed.push(items.map((i) => i.id));
      await new Promise<void>((r) => (release = r));
    },
    { maxItems: 3, maxBytes: 100, size: (i) => i.size, shed: (waiting) => waiting.findIndex((i) => i.ticker) },
  );
  const outcome = new Map<number, string>();
  const write = (id: number, ticker: boolean, size = 10) => {
    c.write({ id, ticker, size }).then(
      () => outcome.set(id, 'written'),
      (e: Error) => outcome.set(id, e instanceof RejectedError && e.code === 'buffer_full' ? 'given up' : `failed: ${e.message}`),
    );
  };
  write(1, false); // in flight at once: the flush hangs (the peer is down)
  write(2, true);
  write(3, false);
  write(4, true);
  write(5, false); // full (3 waiting): the oldest waiting ticker (2) makes room
  write(6, true); // the next oldest ticker (4)
  write(7, false); // the waiting ticker 6
  write(8, true, 95); // no ticker waits any more: 8 itself
  write(9, false, 75); // three waiting, none a ticker: 9 itself
  await new Promise((r) => setImmediate(r));
  assert.deepEqual([...outcome].sort((a, b) => a[0] - b[0]), [[2, 'given up'], [4, 'given up'], [6, 'given up'], [8, 'given up'], [9, 'given up']]);
  assert.equal(c.pending(), 4, 'one in flight, three waiting');
  assert.equal(c.bytes(), 40, '10 in flight, 30 waiting');
  release();
  await new Promise((r) => setImmediate(r));
  release();
  await c.idle();
  assert.deepEqual(flushed, [[1], [3, 5, 7]]);
  assert.deepEqual([1, 3, 5, 7].map((id) => outcome.get(id)), ['written', 'written', 'written', 'written']);
  assert.equal(c.bytes(), 0);
  // by bytes alone: 60 waiting, a 50-byte write gives up the oldest ticker, then fits
  const d = createCoalescer<Item>(() => new Promise(() => {}), { maxItems: 100, maxBytes: 100, size: (i) => i.size, shed: (w) => w.findIndex((i) => i.ticker) });
  const got: string[] = [];
  for (const [id, ticker, size] of [[1, false, 10], [2, true, 30], [3, false, 30], [4, false, 50]] as const) d.write({ id, ticker, size }).catch(() => got.push(`given up ${id}`));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(got, ['given up 2']);
  assert.equal(d.bytes(), 90, '10 in flight, 30 + 50 waiting');
});
