// The bench's quantiles (stack/bench/stats.ts): nearest rank, so every quantile is a measured sample
// and a small sample's p99 is its maximum, not the value below it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dist, median, nearestRank, summarize } from '../../stack/bench/stats.ts';

const upTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

test('one sample: every quantile is that sample', () => {
  for (const p of [0, 0.5, 0.9, 0.99, 1]) assert.equal(nearestRank([7], p), 7);
  assert.deepEqual(dist([7]), { n: 1, p50: 7, p90: 7, p99: 7, max: 7 });
});

test('20 samples: the p99 is the maximum (a floored rank gave the second-largest)', () => {
  const d = dist(upTo(20).reverse());
  assert.equal(d.n, 20);
  assert.equal(d.p99, 20);
  assert.equal(d.p99, d.max);
  assert.equal(d.p90, 18, 'ceil(0.9 × 20) = the 18th smallest');
  assert.equal(d.p50, 10, 'ceil(0.5 × 20) = the 10th smallest');
});

test('200 samples: the p99 is the 198th smallest, the third-largest', () => {
  const d = dist(upTo(200));
  assert.equal(d.n, 200);
  assert.equal(d.p99, 198);
  assert.equal(d.p90, 180);
  assert.equal(d.p50, 100);
  assert.equal(d.max, 200);
});

test('below 100 samples the p99 is always the maximum; from 100 on it is not', () => {
  for (const n of [1, 2, 50, 99]) assert.equal(dist(upTo(n)).p99, n, `n ${n}`);
  assert.equal(dist(upTo(100)).p99, 99);
  assert.equal(dist(upTo(101)).p99, 100);
});

test('the rank is not pushed up by floating point (0.07 × 100 is 7.000000000000001)', () => {
  assert.equal(nearestRank(upTo(100), 0.07), 7);
  assert.equal(nearestRank(upTo(100), 0.29), 29);
});

test('p = 0 is the minimum, p = 1 the maximum; a p outside [0, 1] is refused', () => {
  assert.equal(nearestRank([1, 2, 3], 0), 1);
  assert.equal(nearestRank([1, 2, 3], 1), 3);
  assert.throws(() => nearestRank([1, 2, 3], 1.5), RangeError);
  assert.throws(() => nearestRank([1, 2, 3], Number.NaN), RangeError);
});

test('no samples: NaN quantiles and a count of 0', () => {
  const d = dist([]);
  assert.equal(d.n, 0);
  assert.ok(Number.isNaN(d.p50) && Number.isNaN(d.p99) && Number.isNaN(d.max));
});

test('several runs are pooled: quantiles of all their samples, with each run beside them', () => {
  const s = summarize([upTo(100), upTo(100).map((x) => x + 100)]);
  assert.equal(s.n, 200);
  assert.equal(s.p99, 198);
  assert.equal(s.max, 200);
  assert.deepEqual(s.runs.map((r) => r.n), [100, 100]);
  assert.deepEqual(s.runs.map((r) => r.p99), [99, 199]);
});

test('median of finite values, the lower middle for an even count', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2);
  assert.equal(median([Number.NaN, 5]), 5);
  assert.ok(Number.isNaN(median([])));
});
