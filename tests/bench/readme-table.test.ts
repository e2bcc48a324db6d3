// The README's performance table is the one stack/bench/readme-table.ts makes from the committed
// bench report (docs/bench-latest.json), and its verdicts follow the figures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchTable, readmeBenchTable, LATEST, type BenchReport } from '../../stack/bench/readme-table.ts';
import { ROOT } from '../../runtime/paths.ts';

const latest = (): BenchReport => JSON.parse(readFileSync(LATEST, 'utf8')) as BenchReport;

test('the README holds the table of docs/bench-latest.json, between its markers', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const inReadme = readmeBenchTable(readme);
  assert.notEqual(inReadme, null, 'README.md must hold <!-- bench:start --> … <!-- bench:end --> once');
  assert.equal(inReadme, benchTable(latest()), 'run `npx tsx stack/bench/readme-table.ts --write` after `npm run bench`');
});

test('the committed report is a whole bench run: every rate, the floors, the ramp and the model part', () => {
  const r = latest();
  assert.deepEqual(r.e2e.map((e) => e.rate), [50, 200, 1000]);
  for (const e of r.e2e) assert.ok(e.n > 0 && e.offered >= e.n, `rate ${e.rate}: samples`);
  assert.ok(r.floor.kafka_tx_hop_ms.n > 0);
  assert.ok(r.knobs?.ramp, 'the README figures come from a run with the throughput ramp');
  assert.ok(r.knobs?.model, 'and with the model part');
  assert.equal(r.knobs?.topic_partitions ?? 3, 3, 'and with the partitions a deployment gets by default (TOPIC_PARTITIONS 3)');
  assert.match(r.commit, /^[0-9a-f]{7,}/);
});

test('each verdict follows its figure: a report that meets a target says met, one that misses says missed', () => {
  const r = latest();
  const meeting: BenchReport = structuredClone(r);
  meeting.goals.cpu_ms_per_signal_order_manager_at_50.value = 1.5;
  meeting.goals.idle_cpu_pct_of_one_core.by_service = Object.fromEntries(Object.keys(r.goals.idle_cpu_pct_of_one_core.by_service).map((k) => [k, 0.5]));
  meeting.throughput_saturated_signals_per_s = 1200;
  const missing: BenchReport = structuredClone(r);
  missing.goals.cpu_ms_per_signal_order_manager_at_50.value = 2.5;
  missing.goals.idle_cpu_pct_of_one_core.by_service = { ...meeting.goals.idle_cpu_pct_of_one_core.by_service, 'order-manager': 2.01 };
  missing.throughput_saturated_signals_per_s = 999;
  const line = (table: string, start: string) => table.split('\n').find((l) => l.startsWith(start)) ?? '';
  assert.match(line(benchTable(meeting), '| CPU per signal, order manager'), /— met \|$/);
  assert.match(line(benchTable(missing), '| CPU per signal, order manager'), /\*\*missed\*\* \|$/);
  assert.match(line(benchTable(meeting), '| Idle CPU'), /— met \|$/);
  assert.match(line(benchTable(missing), '| Idle CPU'), /\*\*missed\*\* \(order-manager\) \|$/);
  assert.match(line(benchTable(meeting), '| Saturated drain'), /— met \|$/);
  assert.match(line(benchTable(missing), '| Saturated drain'), /\*\*missed\*\* \|$/);
});

test('a report of another partition count says so in the first line of the table', () => {
  const r = latest();
  const one: BenchReport = structuredClone(r);
  one.knobs = { ...r.knobs!, topic_partitions: 1 };
  const three: BenchReport = structuredClone(r);
  three.knobs = { ...r.knobs!, topic_partitions: 3 };
  assert.match(benchTable(one).split('\n')[0]!, /, 1 partition\(s\) per keyed topic/);
  assert.doesNotMatch(benchTable(three).split('\n')[0]!, /partition/);
});
