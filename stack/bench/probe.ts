// A quick look between full benches (`npx tsx stack/bench/probe.ts`, stack up first): the same
// end-to-end setup as `npm run bench`, a warm-up, then one run per rate in PROBE_RATES (default
// 5,50,200) for PROBE_SECS seconds each (default 4); prints each run's latency, drain rate, per-hop
// medians, runner batch times and the Kafka/database call profile as JSON lines, and the peak RSS of
// the order manager and the simulator. One run per rate:
// for comparing a change with its parent back to back, not for the README (npm run bench is).
// BENCH_OM_NODE_FLAGS and BENCH_OM_PROCESSES apply as in the bench. PROBE_IDLE_S (default 0) first
// measures that many seconds with no signals (CPU by service, Kafka requests), as the bench's idle
// window; PROBE_RATES empty runs no rate (with BENCH_OM_NODE_FLAGS=--cpu-prof: a profile of idle).
import { loadConfig, kafkaBrokers } from '../../runtime/config.ts';
import { createLogger } from '../../runtime/logger.ts';
import { createKafka } from '../../runtime/kafka.ts';
import { idleFigures, startE2e } from './e2e.ts';
import { UNIT_SCHEMAS } from '../services.ts';
const cfg = loadConfig({ ...process.env, LOG_LEVEL: 'silent' }, UNIT_SCHEMAS);
const kafka = createKafka({ brokers: kafkaBrokers(cfg), clientId: 'probe', logger: createLogger(cfg, 'probe'), connectionTimeoutMs: 3000 });
const log = (s: string) => process.stderr.write(`[probe] ${s}\n`);
const bench = await startE2e({ kafka, amqpUrl: cfg.AMQP_URL, databaseUrl: cfg.DATABASE_URL, log });
await bench.run(20, 2);
const idleS = Number(process.env.PROBE_IDLE_S ?? 0);
if (idleS > 0) {
  await new Promise((r) => setTimeout(r, 2000)); // the warm-up's stragglers out of the window, as the bench
  console.log(JSON.stringify({ idle: idleFigures(await bench.idle(idleS)) }));
}
const rates = (process.env.PROBE_RATES ?? '5,50,200').split(',').filter(Boolean).map(Number);
const rs = [];
for (const rate of rates) rs.push(await bench.run(rate, Number(process.env.PROBE_SECS ?? 4), 30_000));
await bench.fillHops(rs);
console.log(JSON.stringify({ peak_rss_mb: bench.rss() }));
for (const r of rs) console.log(JSON.stringify({ rate: r.rate, e2e: r.e2e, drained: r.achievedRate, offered: r.offered, cpuMs: r.cpuMs, hops: r.hops, hopTail: r.hopTail, batch: r.stageBatchMs, kafka: r.kafkaRequests, prof: r.profile }));
await bench.close();
process.exit(0);
