// The order manager for the benchmark, in its own process, configured entirely by the environment
// the driver gives it (own TOPIC_PREFIX, database, queues, simulator port, relaxed RISK_* limits).
// Runs SERVICES['order-manager'] and, when that service does not (yet) include them, the two legs
// the end-to-end measurement needs: the direct Bybit websocket connector (exchange streams →
// exchange.* topics, so tracking sees acceptances and fills) and the events-out bridge
// (orders.events → RabbitMQ). IPC: sends {ready, units}; answers {metrics} with the runtime
// registry as JSON (the runner's per-stage histograms).
import { createRuntime, runUnits, type UnitFactory } from '../../runtime/service.ts';
import { SERVICES, UNIT_SERVICES } from '../services.ts';
import { createEventsOutBridge, parseConfig as eventsOutConfig } from '../../connectors/events-out-bridge.ts';
import { createBybitWs, parseConfig as wsConfig } from '../../connectors/bybit-ws.ts';
import { RUNTIME_PARTS } from '../services.ts';

const eventsOut: UnitFactory = async (rt) => {
  const b = createEventsOutBridge({ kafka: rt.kafka, codec: rt.codec, logger: rt.logger, metrics: rt.metrics, config: eventsOutConfig(rt.env), clock: rt.clock, onFatal: rt.fatal });
  await b.start();
  return { name: 'events-out-bridge', ready: () => b.ready(), stop: () => b.stop() };
};

const bybitWs: UnitFactory = async (rt) => {
  const c = createBybitWs({ kafka: rt.kafka, codec: rt.codec, logger: rt.logger, metrics: rt.metrics, config: wsConfig({ ...rt.env, EXCHANGE_STREAM_SOURCE: 'direct' }), assets: rt.cfg.ASSETS as string[], clock: rt.clock });
  await c.start();
  return { name: 'bybit-ws', ready: () => c.ready(), stop: () => c.stop() };
};

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
// Downstream first: the extra legs start before the service's own units produce anything.
const extras: Array<[string, UnitFactory]> = [
  ['events-out-bridge', eventsOut],
  ['bybit-ws', bybitWs],
];
// BENCH_OM_UNITS (comma-separated UNIT_SERVICES names): this process runs only those (the bench's
// BENCH_OM_PROCESSES split); otherwise the whole order-manager service plus the legs above.
const only = (process.env.BENCH_OM_UNITS ?? '').split(',').filter(Boolean);
const factories = only.length ? only.flatMap((n) => UNIT_SERVICES[n]?.units ?? []) : [...extras.map(([, f]) => f), ...SERVICES['order-manager']!.units];
if (only.some((n) => !UNIT_SERVICES[n])) throw new Error(`BENCH_OM_UNITS: unknown unit in ${only.join(',')}`);
const running = await runUnits(rt, factories);
const names = running.units.map((u) => u.name);
// If the service already wires a leg, ours is a duplicate consumer/producer: stop it again.
for (const [n] of extras) {
  if (names.filter((x) => x === n).length > 1) await running.units.find((u) => u.name === n)!.stop();
}

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
