// Micro-benchmark of the placement stage's `load` against the simulator, without Kafka: one chunk
// of PLACE_MICRO_CHUNK creates (default 50) over three spot symbols, sent with PLACE_BATCH=false
// (one request per intent) and =true (batch requests), alternating, PLACE_MICRO_RUNS times each
// (default 7). The simulator runs in a child process (its CPU apart), rate limits ×1000 on both
// sides as in the bench, so pacing does not hide the per-request cost. Two mixes: all buys (each
// symbol one run of creates, one wave) and buys and sells at random (several waves per symbol).
// Prints, per mode and mix: REST requests per chunk (counted at the simulator), medians of wall
// time of `load`, and CPU of this process and of the simulator per chunk.
// `npx tsx stack/bench/place-micro.ts`.
import { fork } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../../runtime/clock.ts';
import type { StageRecord } from '../../pipelines/runner.ts';
import { createPlaceStage, parseConfig } from '../../pipelines/place.ts';
import { createBybitRest, parseConfig as parseRestConfig } from '../../connectors/bybit-rest.ts';
import { SAMPLES } from '../../schemas/samples.ts';
import type { OrderIntent } from '../../schemas/types.ts';

const CHUNK = Number(process.env.PLACE_MICRO_CHUNK ?? 50);
const RUNS = Number(process.env.PLACE_MICRO_RUNS ?? 7);

if (process.argv[2] === 'sim') {
  const { startSimulator } = await import('../../sim/server.ts');
  const sim = await startSimulator({ port: 0, seed: 5, balances: { USDT: 1e10, BTC: 100, ETH: 1000, SOL: 10000 }, rateLimits: { multiplier: 1000 } });
  process.on('message', (m: { type: string }) => {
    if (m.type === 'requests') {
      process.send!({ type: 'requests', requests: sim.requests.snapshot() });
      sim.requests.reset();
    } else if (m.type === 'stop') void sim.close().then(() => process.exit(0));
  });
  process.send!({ type: 'ready', port: sim.port });
} else {
  const child = fork(fileURLToPath(import.meta.url), ['sim'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve) => child.once('message', (m: { port: number }) => resolve(m.port)));
  const ask = () =>
    new Promise<Record<string, number>>((resolve) => {
      child.once('message', (m: { requests: Record<string, number> }) => resolve(m.requests));
      child.send({ type: 'requests' });
    });
  const ticks = () => {
    const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) * 10; // utime + stime, clock ticks of 10 ms
  };
  const rest = createBybitRest({ config: parseRestConfig({ BYBIT_SIM_PORT: String(port), BYBIT_RATE_LIMIT_MULTIPLIER: '1000' }) });
  const PX: Array<[string, string, string]> = [['BTCUSDT', '40000', '0.001'], ['ETHUSDT', '2000', '0.01'], ['SOLUSDT', '80', '0.1']];
  let offset = 0;
  const chunk = (mix: 'buys' | 'mixed'): StageRecord<OrderIntent>[] =>
    Array.from({ length: CHUNK }, (_, k) => {
      const [symbol, price, qty] = PX[k % PX.length]!;
      const sell = mix === 'mixed' && Math.random() < 0.5;
      const sid = randomUUID();
      const value: OrderIntent = {
        ...SAMPLES.OrderIntent,
        intent_id: `${sid}:1`,
        order_link_id: `pm-${randomBytes(12).toString('hex')}`,
        signal: { ...SAMPLES.OrderIntent.signal!, signal_id: sid, strategy_id: `s-${sid.slice(0, 8)}` },
        category: 'spot',
        symbol,
        side: sell ? 'Sell' : 'Buy',
        qty,
        price: sell ? String(Number(price) * 3) : price,
        expires_at: null,
        decided_at: Date.now(),
      };
      return { value, key: symbol, headers: {}, topic: 'pm.orders.intents', partition: 0, offset: String(offset++), timestamp: Date.now(), traceId: null };
    });
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const mix of ['buys', 'mixed'] as const) {
    const out: Record<string, { wall: number[]; cpu: number[]; simCpu: number[]; requests: number[] }> = { off: { wall: [], cpu: [], simCpu: [], requests: [] }, on: { wall: [], cpu: [], simCpu: [], requests: [] } };
    for (let run = -1; run < RUNS; run++) {
      for (const mode of run % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
        const stage = createPlaceStage({ config: parseConfig({ PLACE_BATCH: mode === 'on' ? 'true' : 'false' }), rest, clock: systemClock });
        const recs = chunk(mix);
        await ask();
        const sim0 = ticks();
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        const state = await stage.load!(recs);
        const wall = performance.now() - t0;
        const cpu = process.cpuUsage(cpu0);
        const simCpu = ticks() - sim0;
        const requests = Object.values(await ask()).reduce((a, b) => a + b, 0);
        const accepted = [...state.outcomes.values()].filter((o) => o.outcome === 'accepted').length;
        if (accepted !== CHUNK) throw new Error(`${mode}: ${accepted} of ${CHUNK} accepted`);
        if (run < 0) continue; // warm-up
        out[mode]!.wall.push(wall);
        out[mode]!.cpu.push((cpu.user + cpu.system) / 1000);
        out[mode]!.simCpu.push(simCpu);
        out[mode]!.requests.push(requests);
      }
    }
    for (const mode of ['off', 'on'] as const) {
      const r = out[mode]!;
      console.log(`${mix} PLACE_BATCH=${mode === 'on'}: chunk ${CHUNK}, runs ${RUNS}: requests ${median(r.requests)} (${(median(r.requests) / CHUNK).toFixed(2)} per intent), load wall p50 ${median(r.wall).toFixed(1)} ms [${Math.min(...r.wall).toFixed(1)}..${Math.max(...r.wall).toFixed(1)}], client CPU p50 ${median(r.cpu).toFixed(1)} ms, simulator CPU p50 ${median(r.simCpu)} ms`);
    }
  }
  child.send({ type: 'stop' });
}
