// The bounded form of `npm run soak`: the order manager (a process per part) and the model service
// for two minutes under a steady flow, one graceful restart (SIGTERM, drain, start) after another,
// then the chaos run's invariants, memory and growth figures, and no error line left unexplained.
// And the figures' arithmetic: a leak shows as growth per hour, a restart is not mistaken for one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { memoryOf, reportLines, runSoak, slope } from '../../stack/soak.ts';
import type { Sample } from '../../stack/chaos.ts';

const MB = 1024 * 1024;

test('memory figures: a leak is growth per hour; a restart (new pid) starts a new fit; warm-up left out', () => {
  assert.equal(slope([[0, 1], [1, 3], [2, 5]]), 2);
  assert.equal(slope([[0, 1], [1, 1]]), null, 'too few points');
  const samples: Sample[] = [];
  for (let t = 0; t <= 600_000; t += 10_000) {
    // "leaky": +10 MB a minute in both incarnations; "steady": warm-up to 80 MB, then flat, and a
    // restart at 300 s that drops it back to 40 MB (which must not read as negative growth).
    const restarted = t >= 300_000;
    const since = restarted ? t - 300_000 : t;
    samples.push({
      t,
      rss: { leaky: (50 + (since / 60_000) * 10) * MB, steady: (since < 60_000 ? 40 + (since / 60_000) * 40 : 80) * MB },
      pids: { leaky: restarted ? 2 : 1, steady: restarted ? 4 : 3 },
      dbBytes: 0,
      topicBytes: 0,
    });
  }
  const leaky = memoryOf('leaky', samples, 60_000)!;
  const steady = memoryOf('steady', samples, 60_000)!;
  assert.equal(leaky.incarnations, 2);
  assert.ok(Math.abs(leaky.growthMbPerHour! - 600) < 1, `leak of 10 MB/min is 600 MB/h: ${leaky.growthMbPerHour}`);
  assert.equal(steady.growthMbPerHour, 0, 'flat after warm-up, restart not counted as a drop');
  assert.equal(steady.peakMb, 80);
  assert.equal(memoryOf('absent', samples, 60_000), null);
});

test('soak, bounded: two minutes, rolling restarts, the invariants hold, memory and growth measured, no unexplained error', async () => {
  const lines: string[] = [];
  const r = await runSoak({ minutes: 2, ratePerSec: 1, restartEveryMin: 0.5, stream: 'direct', seed: 21, sampleEveryMs: 3000, log: (l) => lines.push(l) });
  const log = [...lines, ...reportLines(r)].join('\n');
  assert.equal(r.figures.restarts, 4, log);
  assert.equal(lines.filter((l) => /^restart \S+ \(SIGTERM, exit 0\); ready again/.test(l)).length, 4, `every graceful restart drained and exited 0: ${log}`);
  assert.equal(r.figures.duplicates, 0, log);
  assert.equal(r.figures.losses, 0, log);
  assert.equal(r.figures.shortfalls, 0, log);
  assert.ok(r.figures.orders >= r.figures.order_floor, log);
  assert.ok(r.figures.samples.length >= 20, `samples: ${r.figures.samples.length}`);
  for (const p of ['ops', 'track', 'place', 'signal-decide', 'signal-bridge', 'events-out', 'exchange-streams', 'model', 'runner']) {
    const m = r.memory.find((x) => x.process === p);
    assert.ok(m && m.peakMb > 10, `${p}: memory sampled (${JSON.stringify(m)})`);
  }
  assert.ok(r.memory.filter((m) => m.growthMbPerHour !== null).length >= 6, `growth fitted for most processes: ${log}`);
  assert.ok(r.dbGrowthMbPerHour !== null && r.topicGrowthMbPerHour !== null, log);
  assert.deepEqual(r.unexplained, [], `every error line explained: ${log}`);
  assert.equal(r.ok, true, log);
});
