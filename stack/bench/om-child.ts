// The order manager for the benchmark, in its own process, configured entirely by the environment
// the driver gives it (own TOPIC_PREFIX, database, queues, simulator port, relaxed RISK_* limits).
// Runs SERVICES['order-manager'] as deployed (the driver sets EXCHANGE_STREAM_SOURCE=direct, so its
// exchange streams are the direct Bybit websocket against the simulator), or, with BENCH_OM_UNITS,
// some of UNIT_SERVICES. IPC: sends {ready, units}; answers {metrics} with the runtime registry as
// JSON (the runner's per-stage histograms).
import { createRuntime, runUnits } from '../../runtime/service.ts';
import { SERVICES, UNIT_SERVICES } from '../services.ts';
import { RUNTIME_PARTS } from '../services.ts';

const send = (m: unknown) => process.send?.(m);

// BENCH_OM_LOGS=discard (the bench's BENCH_OM_LEAN=1): log lines are formatted but never written.
// Otherwise they go to stdout as in the deployed service (the driver points it at a file).
const rt = await createRuntime('bench-order-manager', RUNTIME_PARTS, {}, undefined, process.env.BENCH_OM_LOGS === 'discard' ? { logDestination: { write: () => {} } } : {});

// Profiling without touching the runner: time every Kafka transaction step (by transactional-id
// prefix = stage group) and every database call (by pool method). Reported with the metrics.
type Acc = Record<string, { n: number; ms: number }>;
const txTime: Acc = {};
const dbTime: Acc = {};
const add = (acc: Acc, k: string, ms: number) => {
  const e = (acc[k] ??= { n: 0, ms: 0 });
  e.n++;
  e.ms += ms;
};
const timed = async <T>(acc: Acc, k: string, f: () => Promise<T>): Promise<T> => {
  const t = performance.now();
  try {
    return await f();
  } finally {
    add(acc, k, performance.now() - t);
  }
};
const kafka = rt.kafka;
rt.kafka = {
  ...kafka,
  admin: () => kafka.admin(),
  consumer: (o) => kafka.consumer(o),
  producer: (o) => {
    const p = kafka.producer(o);
    const stage = (o?.transactionalId ?? '').replace(rt.cfg.TOPIC_PREFIX, '').split('-').slice(0, 2).join('-');
    return {
      ...p,
      transaction: async () => {
        const tx = await timed(txTime, `${stage} begin`, () => p.transaction());
        return {
          send: (t, m) => timed(txTime, `${stage} send`, () => tx.send(t, m)),
          sendBatch: (b) => timed(txTime, `${stage} send`, () => tx.sendBatch(b)),
          sendOffsets: (g, off) => timed(txTime, `${stage} sendOffsets`, () => tx.sendOffsets(g, off)),
          commit: () => timed(txTime, `${stage} commit`, () => tx.commit()),
          abort: () => tx.abort(),
        };
      },
    };
  },
};
const db = rt.db;
rt.db = new Proxy(db, {
  get(target, prop, recv) {
    const v = Reflect.get(target, prop, recv) as unknown;
    if (typeof v !== 'function' || !['query', 'any', 'one', 'maybeOne', 'many', 'oneFirst', 'maybeOneFirst', 'anyFirst', 'exists', 'transaction', 'connect'].includes(String(prop))) return v;
    return (...args: unknown[]) => timed(dbTime, String(prop), () => (v as (...a: unknown[]) => Promise<unknown>).apply(target, args));
  },
});
// BENCH_OM_UNITS (comma-separated UNIT_SERVICES names): this process runs only those (the bench's
// BENCH_OM_PROCESSES split); otherwise the whole order-manager service.
const only = (process.env.BENCH_OM_UNITS ?? '').split(',').filter(Boolean);
if (only.some((n) => !UNIT_SERVICES[n])) throw new Error(`BENCH_OM_UNITS: unknown unit in ${only.join(',')}`);
const running = await runUnits(rt, only.length ? only.flatMap((n) => UNIT_SERVICES[n]!.units) : SERVICES['order-manager']!.units);
const names = running.units.map((u) => u.name);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await running.stop();
  process.exit(0);
};
process.on('message', (m: { type: string }) => {
  if (m.type === 'metrics') void rt.metrics.registry.getMetricsAsJSON().then((metrics) => send({ type: 'metrics', metrics, txTime, dbTime, memory: process.memoryUsage() }));
  else if (m.type === 'readiness') void rt.admin.readiness().then((r) => send({ type: 'readiness', ready: r.ready, checks: r }));
  else if (m.type === 'stop') void stop();
});
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());

send({ type: 'started', units: names, admin: rt.admin.url });
