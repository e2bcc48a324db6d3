// `npm run bench` (stack up, then tsx stack/bench/main.ts): the benchmark suite of issue 8 on the
// local stack (this file alone never starts or stops Kafka). Measures the floors, the
// end-to-end latency at fixed offered loads, the sustainable throughput, the model numbers and
// peak memory; prints a table and writes reports/bench.json. Several runs of everything, medians
// and tails. Bounded: about two minutes on a 2-core machine. BENCH_RUNS (3) sets the run count.
// The children (order manager, simulator, model) run as deployed: dist/ compiled at the start
// (`npm run build:dist`) with plain node, the order manager with the Dockerfile's heap flags
// (BENCH_OM_NODE_FLAGS replaces them); BENCH_TSX=1 runs them from the sources through tsx instead.
import { execSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig, kafkaBrokers } from '../../runtime/config.ts';
import { createLogger } from '../../runtime/logger.ts';
import { createKafka } from '../../runtime/kafka.ts';
import { kafkaHop, kafkaTxHop, rabbitHop, summarize, type Summary } from './floor.ts';
import { startE2e, HOPS, BENCH_TSX, benchChild, buildDistOnce, childNodeFlags, type RunResult } from './e2e.ts';
import { UNIT_SCHEMAS } from '../services.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);
const cfg = loadConfig({ ...process.env, LOG_LEVEL: 'silent' }, UNIT_SCHEMAS);
const kafka = createKafka({ brokers: kafkaBrokers(cfg), clientId: 'bench', logger: createLogger(cfg, 'bench'), connectionTimeoutMs: 3000 });
const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};
const r1 = (x: number) => Math.round(x * 10) / 10;

// 0. The stack must be up: say how to get it there rather than starting it.
try {
  const a = kafka.admin();
  await Promise.race([a.connect(), sleep(15_000).then(() => Promise.reject(new Error('timeout')))]);
  await a.disconnect();
} catch (err) {
  log(`Kafka is not reachable (${(err as Error).message}): run \`npx tsx stack/stack.ts up\` first`);
  process.exit(2);
}
// The children run compiled (dist/) with plain node, as deployed; BENCH_TSX=1: through tsx.
buildDistOnce(log);
const started = Date.now();

// 1. Floors.
log('floors: raw kafkajs hop, transactional hop, RabbitMQ hop');
const kRuns = [];
const ktRuns = [];
const rRuns = [];
for (let i = 0; i < RUNS; i++) {
  kRuns.push(await kafkaHop(kafka, 200, 5));
  ktRuns.push(await kafkaTxHop(kafka, 200, 5));
  rRuns.push(await rabbitHop(cfg.AMQP_URL, 200, 5));
}
const floor = { kafka: summarize(kRuns), kafkaTx: summarize(ktRuns), rabbit: summarize(rRuns) };

// 2 + 3. End to end, then the throughput ramp.
log('end to end: order manager + simulator in their own processes');
const bench = await startE2e({ kafka, amqpUrl: cfg.AMQP_URL, databaseUrl: cfg.DATABASE_URL, log });
const e2eRuns: RunResult[] = [];
const ramp: RunResult[] = [];
try {
  log(`units: ${bench.units.join(', ')}`);
  await bench.run(20, 2); // warm-up: connections, producers, caches
  // Short bursts at the higher rates: the run is at the offered rate, but bounded in count so a
  // saturated pipeline drains (≤ 90 s) before the next run instead of carrying its backlog over.
  const plan: Array<[number, number]> = [
    [50, 4],
    [200, 2],
    [1000, 0.5],
  ];
  for (const [rate, secs] of plan) {
    for (let i = 0; i < RUNS; i++) {
      const r = await bench.run(rate, secs);
      log(`e2e ${rate}/s run ${i + 1}: delivered ${r.delivered}/${r.offered}, p50 ${r.e2e.p50} p99 ${r.e2e.p99} ms, drained at ${r.achievedRate}/s; order manager memory MB ${JSON.stringify(r.omMemoryMb ?? {})}`);
      e2eRuns.push(r);
    }
  }
  // Throughput: step the offered load up; the highest step whose p99 stays within 100 ms with
  // everything delivered (two runs each, both must pass).
  for (const rate of [5, 10, 25, 50, 100, 200, 500, 1000, 2000, 3000]) {
    const rs = [await bench.run(rate, 4, 30_000), await bench.run(rate, 4, 30_000)];
    ramp.push(...rs);
    const pass = rs.every((r) => r.delivered === r.offered && r.e2e.p99 <= 100);
    log(`ramp ${rate}/s: p99 ${rs.map((r) => r.e2e.p99).join(' / ')} ms, delivered ${rs.map((r) => `${r.delivered}/${r.offered}`).join(' / ')} → ${pass ? 'pass' : 'fail'}`);
    if (!pass) break;
  }
  await bench.fillHops([...e2eRuns, ...ramp]);
} finally {
  await bench.close().catch((err) => log(`cleanup: ${(err as Error).message}`));
}
const rss: Record<string, number> = bench.rss();

// 4. Model.
log('model: replay into windows, retrain on 100k samples, inference');
// BENCH_SKIP_MODEL=1: order-manager iterations only (the model numbers come out NaN/empty).
const skipModel = process.env.BENCH_SKIP_MODEL === '1';
const model = skipModel
  ? { replay: { runs: [] as Array<Record<string, number>> }, train: { retrain_s: NaN, inference_ms: { p99: NaN } }, peak_rss_mb: NaN }
  : await new Promise<{ replay: { runs: Array<Record<string, number>> }; train: Record<string, unknown> & { retrain_s: number; inference_ms: { p99: number } }; peak_rss_mb: number }>((resolve, reject) => {
  const mc = benchChild('model-child');
  // The model service's deployment form: the Dockerfile's heap flags, as for the order manager
  // (BENCH_MODEL_NODE_FLAGS replaces them, empty for none).
  const child = spawn(process.execPath, [...childNodeFlags('BENCH_MODEL_NODE_FLAGS'), ...mc.execArgv, mc.file], { env: { ...process.env, BENCH_RUNS: String(RUNS) }, stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.on('exit', (code) => {
    const line = out.trim().split('\n').pop() ?? '';
    try {
      resolve(JSON.parse(line));
    } catch {
      reject(new Error(`model bench exited ${code}: ${out.slice(-500)}`));
    }
  });
});
rss['model (bench process)'] = model.peak_rss_mb;
rss['bench driver'] = Math.round(process.resourceUsage().maxRSS / 1024);

// Summaries.
const rates = [50, 200, 1000];
const e2e = rates.map((rate) => {
  const rs = e2eRuns.filter((r) => r.rate === rate);
  const s: Summary = summarize(rs.map((r) => r.e2e));
  const acc = summarize(rs.map((r) => r.toAccepted));
  const hops = Object.fromEntries([...HOPS.map(([h]) => h), 'events-out-bridge'].map((h) => [h, median(rs.map((r) => r.hops[h] ?? NaN))]));
  const hopSum = Object.values(hops).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  const stages = [...new Set(rs.flatMap((r) => Object.keys(r.stageBatchMs)))];
  return {
    rate,
    runs: rs.length,
    seconds_per_run: rs[0] ? r1(rs[0].offered / rate) : null,
    p50_ms: s.p50,
    p90_ms: s.p90,
    p99_ms: s.p99,
    max_ms: s.max,
    delivered: `${rs.reduce((a, r) => a + r.delivered, 0)}/${rs.reduce((a, r) => a + r.offered, 0)}`,
    drained_signals_per_s: median(rs.map((r) => r.achievedRate)),
    to_accepted_ms: { p50: acc.p50, p99: acc.p99 },
    hop_p50_ms: hops,
    stage_share: Object.fromEntries(Object.entries(hops).map(([h, v]) => [h, hopSum > 0 && Number.isFinite(v) ? Math.round((v / hopSum) * 1000) / 1000 : null])),
    stage_batch_mean_ms: Object.fromEntries(stages.map((st) => [st, median(rs.map((r) => r.stageBatchMs[st]?.meanMs ?? NaN))])),
    stage_record_mean_ms: Object.fromEntries(stages.map((st) => [st, median(rs.map((r) => r.stageBatchMs[st]?.perRecordMeanMs ?? NaN))])),
    // Requests per offered signal, over the run's window (first publish to drain, idle polls included).
    kafka_requests_per_signal: (() => {
      const apis = [...new Set(rs.flatMap((r) => Object.keys(r.kafkaRequests)))].sort();
      const per = Object.fromEntries(apis.map((api) => [api, Math.round(median(rs.map((r) => (r.kafkaRequests[api] ?? 0) / r.offered)) * 100) / 100]));
      return { ...per, all: Math.round(median(rs.map((r) => Object.values(r.kafkaRequests).reduce((a, n) => a + n, 0) / r.offered)) * 100) / 100 };
    })(),
    profile: Object.fromEntries([...new Set(rs.flatMap((r) => Object.keys(r.profile)))].map((k) => [k, { mean_ms: median(rs.map((r) => r.profile[k]?.meanMs ?? NaN)), calls_per_run: median(rs.map((r) => r.profile[k]?.n ?? NaN)) }])),
    per_run: rs.map((r) => ({ ...r.e2e, delivered: r.delivered, offered: r.offered })),
  };
});
// Hops a signal crosses to its first order event: RabbitMQ in, five Kafka hops (raw, valid,
// intents, submissions, events), RabbitMQ out. Raw and transactional floors both reported.
const floorSum = 2 * floor.rabbit.p50 + 5 * floor.kafka.p50;
const floorSumTx = 2 * floor.rabbit.p50 + floor.kafka.p50 + 4 * floor.kafkaTx.p50;
const at200 = e2e.find((e) => e.rate === 200)!;
const passing = [...new Set(ramp.map((r) => r.rate))].filter((rate) => ramp.filter((r) => r.rate === rate).every((r) => r.delivered === r.offered && r.e2e.p99 <= 100));
const commit = (() => {
  try {
    const h = execSync('git rev-parse --short HEAD', { cwd: ROOT }).toString().trim();
    const dirty = execSync('git status --porcelain --untracked-files=no', { cwd: ROOT }).toString().trim() ? '+dirty' : '';
    return h + dirty;
  } catch {
    return 'unknown';
  }
})();
const replayMed = (k: string) => median(model.replay.runs.map((r) => r[k]!));
const report = {
  floor: {
    kafka_hop_ms: { p50: floor.kafka.p50, p99: floor.kafka.p99 },
    kafka_tx_hop_ms: { p50: floor.kafkaTx.p50, p99: floor.kafkaTx.p99 },
    rabbitmq_hop_ms: { p50: floor.rabbit.p50, p99: floor.rabbit.p99 },
    runs: RUNS,
    per_run: { kafka: floor.kafka.runs, kafka_tx: floor.kafkaTx.runs, rabbitmq: floor.rabbit.runs },
  },
  e2e,
  e2e_to_floor_ratio: Math.round((at200.p50_ms / floorSum) * 10) / 10,
  e2e_to_floor_ratio_note: `e2e p50 at 200/s over (2 RabbitMQ hops + 5 raw Kafka hops) = ${r1(floorSum)} ms; over the exactly-once floor (2 RabbitMQ + 1 raw + 4 transactional Kafka hops = ${r1(floorSumTx)} ms): ${Math.round((at200.p50_ms / floorSumTx) * 10) / 10}`,
  e2e_to_tx_floor_ratio: Math.round((at200.p50_ms / floorSumTx) * 10) / 10,
  throughput_signals_per_s: passing.length ? Math.max(...passing) : 0,
  throughput_ramp: [...new Set(ramp.map((r) => r.rate))].map((rate) => ({ rate, p99_ms: ramp.filter((r) => r.rate === rate).map((r) => r.e2e.p99), delivered: ramp.filter((r) => r.rate === rate).map((r) => `${r.delivered}/${r.offered}`) })),
  throughput_saturated_signals_per_s: median(e2eRuns.filter((r) => r.rate === 1000).map((r) => r.achievedRate)),
  replay_events_per_s: replayMed('records_per_s'),
  replay: { order_events_per_s: replayMed('order_events_per_s'), windows_per_s: replayMed('windows_per_s'), builder_only_records_per_s: replayMed('builder_only_records_per_s'), synthetic: true, runs: model.replay.runs },
  retrain_100k_s: model.train.retrain_s,
  retrain: { ...model.train, synthetic_samples: true },
  inference_p99_ms: model.train.inference_ms.p99,
  rss_mb: rss,
  children: { form: BENCH_TSX ? 'sources through tsx (BENCH_TSX=1)' : 'dist/ with plain node', order_manager_node_flags: childNodeFlags('BENCH_OM_NODE_FLAGS'), model_node_flags: childNodeFlags('BENCH_MODEL_NODE_FLAGS') },
  machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, mem_gb: Math.round(totalmem() / 2 ** 30), node: process.version, kernel: release() },
  commit,
  at: new Date().toISOString(),
  duration_s: Math.round((Date.now() - started) / 1000),
};
mkdirSync(join(ROOT, 'reports'), { recursive: true });
writeFileSync(join(ROOT, 'reports/bench.json'), JSON.stringify(report, null, 2) + '\n');

// The table.
const row = (cells: Array<string | number>) => `| ${cells.join(' | ')} |`;
const lines = [
  row(['Measure', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'note']),
  row(['---', '---', '---', '---', '---', '---']),
  row(['floor: kafkajs hop', floor.kafka.p50, floor.kafka.p90, floor.kafka.p99, floor.kafka.max, 'acks=all, idempotent']),
  row(['floor: transactional Kafka hop', floor.kafkaTx.p50, floor.kafkaTx.p90, floor.kafkaTx.p99, floor.kafkaTx.max, 'send+sendOffsets+commit → read_committed']),
  row(['floor: RabbitMQ hop', floor.rabbit.p50, floor.rabbit.p90, floor.rabbit.p99, floor.rabbit.max, 'persistent, confirms']),
  ...e2e.map((e) => row([`e2e at ${e.rate}/s`, e.p50_ms, e.p90_ms, e.p99_ms, e.max_ms, `${e.delivered} delivered, drained at ${e.drained_signals_per_s}/s`])),
];
process.stdout.write(`\n${lines.join('\n')}\n\n`);
process.stdout.write(`stage p50 ms at 200/s: ${Object.entries(at200.hop_p50_ms).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
process.stdout.write(`Kafka requests per signal at 200/s (order manager): ${Object.entries(at200.kafka_requests_per_signal).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
process.stdout.write(
  `e2e/floor ${report.e2e_to_floor_ratio}× (exactly-once floor ${report.e2e_to_tx_floor_ratio}×) · throughput ${report.throughput_signals_per_s}/s within p99 100 ms (saturated drain ${report.throughput_saturated_signals_per_s}/s) · replay ${report.replay_events_per_s} records/s · retrain 100k ${report.retrain_100k_s} s · inference p99 ${report.inference_p99_ms} ms\n`,
);
process.stdout.write(`peak RSS MB: ${Object.entries(rss).map(([k, v]) => `${k} ${v}`).join(', ')} · ${report.duration_s} s · reports/bench.json\n`);
process.exit(0);
