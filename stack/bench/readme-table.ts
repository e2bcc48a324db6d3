// The README's performance table, generated from a bench report so the two cannot drift:
//   npx tsx stack/bench/readme-table.ts          print the table of reports/bench.json
//   npx tsx stack/bench/readme-table.ts --write  copy reports/bench.json to docs/bench-latest.json
//                                                and rewrite the README between its bench markers
// reports/ is git-ignored (every run writes it); docs/bench-latest.json is the committed copy the
// README's figures come from, so a test can hold the README to it.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../../runtime/paths.ts';

/** The figures of a report the table reads (stack/bench/main.ts writes them). */
interface Dist {
  p50: number;
  p99: number;
  n: number;
}
interface E2e {
  rate: number;
  n: number;
  p50_ms: number;
  p99_ms: number;
  offered: number;
  delivered: number;
  rejected: number;
  ok: boolean;
  drained_signals_per_s: number;
  cpu_ms_per_signal: Record<string, number>;
  kafka_requests_per_signal: Record<string, number>;
}
export interface BenchReport {
  goals: {
    cpu_ms_per_signal_all_services_at_saturation: { value: number; with_bench_driver: number; offered_rate: number; signals: number };
    cpu_ms_per_signal_order_manager_at_50: { value: number; signals: number };
    idle_cpu_pct_of_one_core: { target_max: number; seconds: number; by_service: Record<string, number>; met: Record<string, boolean> };
    highest_rate_p99_le_100ms: { rate: number; min_samples_per_step: number };
    peak_rss_mb: Record<string, number | null>;
  };
  floor: { kafka_hop_ms: Dist; kafka_tx_hop_ms: Dist; rabbitmq_hop_ms: Dist; runs: number };
  floor_path_ms?: { raw: number; exactly_once: number };
  e2e: E2e[];
  throughput_ramp: Array<{ rate: number; n: number; p99_ms: number; pass: boolean }>;
  throughput_saturated_signals_per_s: number;
  replay_events_per_s: number | null;
  retrain_100k_s: number | null;
  inference_p99_ms: number | null;
  knobs?: { runs: number; idle_s: number; ramp: boolean; ramp_min_samples: number; model: boolean; topic_partitions?: number };
  commit: string;
  at: string;
  duration_s: number;
}

// The issue's targets (#17), stated once here.
const TARGET = { cpuAll: 2, cpuOm: 2, idlePct: 2, e2eFloors: 2, e2eP99: 100, rate: 300, drain: 1000, rssMb: 200 };

const fmt = (x: number | null | undefined, digits = 1) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toLocaleString('en-US', { maximumFractionDigits: digits }));
const verdict = (met: boolean) => (met ? 'met' : '**missed**');

export function benchTable(r: BenchReport): string {
  const g = r.goals;
  const at = (rate: number) => r.e2e.find((e) => e.rate === rate);
  const e50 = at(50);
  const floorEo = r.floor_path_ms?.exactly_once ?? null;
  const idle = Object.entries(g.idle_cpu_pct_of_one_core.by_service).filter(([k]) => k !== 'bench driver');
  const idleMissed = idle.filter(([, v]) => v > TARGET.idlePct).map(([k]) => k);
  const rss = Object.entries(g.peak_rss_mb).filter(([k, v]) => k !== 'bench driver' && v !== null) as Array<[string, number]>;
  const e2eCell = (e: E2e | undefined) =>
    e ? `${fmt(e.p50_ms, 0)} / ${fmt(e.p99_ms, 0)} ms (n ${e.n}; ${e.delivered}/${e.offered} delivered, ${e.rejected} rejected; drained at ${e.drained_signals_per_s}/s)` : '–';
  const ramp = r.knobs && !r.knobs.ramp ? null : r.throughput_ramp;
  const lines = [
    `Commit \`${r.commit}\`, ${r.at.slice(0, 16)}Z, ${r.duration_s} s` +
      (r.knobs ? `; ${r.knobs.runs} run(s) of the floors and of each fixed load, ${r.knobs.idle_s} s idle${r.knobs.ramp ? `, ramp steps of ≥ ${r.knobs.ramp_min_samples} samples` : ', no ramp'}${r.knobs.model ? '' : ', no model part'}${r.knobs.topic_partitions && r.knobs.topic_partitions !== 3 ? `, ${r.knobs.topic_partitions} partition(s) per keyed topic` : ''}` : '') +
      ' (`docs/bench-latest.json`).',
    '',
    '| Measure | Value | Target (issue #17) |',
    '|---|---|---|',
    `| CPU per signal, all services, at saturation (${g.cpu_ms_per_signal_all_services_at_saturation.offered_rate}/s bursts, ${g.cpu_ms_per_signal_all_services_at_saturation.signals} signals) | ${fmt(g.cpu_ms_per_signal_all_services_at_saturation.value, 2)} ms (${fmt(g.cpu_ms_per_signal_all_services_at_saturation.with_bench_driver, 2)} with the bench driver) | ≤ ${TARGET.cpuAll} ms — ${verdict(g.cpu_ms_per_signal_all_services_at_saturation.value <= TARGET.cpuAll)} |`,
    `| CPU per signal, order manager, at 50 signals/s (${g.cpu_ms_per_signal_order_manager_at_50.signals} signals) | ${fmt(g.cpu_ms_per_signal_order_manager_at_50.value, 2)} ms | ≤ ${TARGET.cpuOm} ms — ${verdict(g.cpu_ms_per_signal_order_manager_at_50.value <= TARGET.cpuOm)} |`,
    `| Idle CPU, % of one core (${g.idle_cpu_pct_of_one_core.seconds} s, market data flowing, no signals) | ${idle.map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ')} | ≤ ${TARGET.idlePct} each — ${idleMissed.length ? `**missed** (${idleMissed.join(', ')})` : 'met'} |`,
    `| End to end at 50 signals/s, p50 / p99 | ${e2eCell(e50)} | ≤ 2 × floor${floorEo !== null ? ` (${fmt(2 * floorEo)} ms)` : ''} / ≤ ${TARGET.e2eP99} ms — ${verdict(!!e50 && e50.ok && floorEo !== null && e50.p50_ms <= TARGET.e2eFloors * floorEo && e50.p99_ms <= TARGET.e2eP99)} |`,
    `| End to end at 200 / 1,000 signals/s, p50 / p99 | ${e2eCell(at(200))} · ${e2eCell(at(1000))} | |`,
    `| Highest steady rate with p99 ≤ 100 ms (≥ ${g.highest_rate_p99_le_100ms.min_samples_per_step} samples per step) | ${ramp === null ? 'not measured (BENCH_SKIP_RAMP=1)' : `${g.highest_rate_p99_le_100ms.rate} signals/s${ramp.length ? ` (steps: ${ramp.map((s) => `${s.rate}/s p99 ${fmt(s.p99_ms, 0)}`).join(', ')})` : ''}`} | ≥ ${TARGET.rate} — ${ramp === null ? 'not measured' : verdict(g.highest_rate_p99_le_100ms.rate >= TARGET.rate)} |`,
    `| Saturated drain (signals/s to their first order event, 1,000/s bursts) | ${fmt(r.throughput_saturated_signals_per_s, 0)} signals/s | ≥ ${fmt(TARGET.drain, 0)} — ${verdict(r.throughput_saturated_signals_per_s >= TARGET.drain)} |`,
    `| Kafka requests / transactions per signal, order manager, at 50 / 1,000 signals/s | ${[e50, at(1000)].map((e) => (e ? `${fmt(e.kafka_requests_per_signal.all, 2)} / ${fmt(e.kafka_requests_per_signal.transactions, 2)}` : '–')).join(' · ')} | |`,
    `| Floors: kafkajs hop / transactional hop / RabbitMQ hop, p50 / p99 (n ${r.floor.kafka_hop_ms.n}) | ${fmt(r.floor.kafka_hop_ms.p50)} / ${fmt(r.floor.kafka_tx_hop_ms.p50)} / ${fmt(r.floor.rabbitmq_hop_ms.p50)} ms · ${fmt(r.floor.kafka_hop_ms.p99)} / ${fmt(r.floor.kafka_tx_hop_ms.p99)} / ${fmt(r.floor.rabbitmq_hop_ms.p99)} ms${floorEo !== null ? `; the path's exactly-once floor ${fmt(floorEo)} ms` : ''} | |`,
    `| Replay (records → training windows) / retrain on 100k samples / inference p99 | ${r.replay_events_per_s === null ? 'not measured (BENCH_SKIP_MODEL=1)' : `${fmt(r.replay_events_per_s, 0)} records/s / ${fmt(r.retrain_100k_s, 2)} s / ${fmt(r.inference_p99_ms, 3)} ms`} | |`,
    `| Peak RSS, MB | ${rss.map(([k, v]) => `${k} ${v}`).join(', ')} | ≤ ${TARGET.rssMb} each — ${verdict(rss.every(([, v]) => v <= TARGET.rssMb))} |`,
  ];
  return lines.join('\n');
}

const MARKERS = /<!-- bench:start -->\n([\s\S]*?)<!-- bench:end -->/g;

/** The text between the README's bench markers (null when they are not there exactly once). */
export function readmeBenchTable(readme: string): string | null {
  const m = [...readme.matchAll(MARKERS)];
  return m.length === 1 ? m[0]![1]!.replace(/\n$/, '') : null;
}

export const LATEST = join(ROOT, 'docs/bench-latest.json');

if (import.meta.url === `file://${process.argv[1]}`) {
  const source = join(ROOT, 'reports/bench.json');
  if (process.argv.includes('--write')) {
    copyFileSync(source, LATEST);
    const table = benchTable(JSON.parse(readFileSync(LATEST, 'utf8')) as BenchReport);
    const file = join(ROOT, 'README.md');
    const text = readFileSync(file, 'utf8');
    if (readmeBenchTable(text) === null) throw new Error('README.md must hold the bench markers exactly once');
    writeFileSync(file, text.replace(/<!-- bench:start -->[\s\S]*?<!-- bench:end -->/, () => `<!-- bench:start -->\n${table}\n<!-- bench:end -->`));
  } else {
    console.log(benchTable(JSON.parse(readFileSync(source, 'utf8')) as BenchReport));
  }
}
