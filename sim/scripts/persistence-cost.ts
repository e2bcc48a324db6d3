// What the state file costs: `npx tsx sim/scripts/persistence-cost.ts [rate] [seconds]`.
// For accounts of several sizes (orders already on the file), places `rate` orders per second for
// `seconds` (market orders, each with a fill) on a simulator with and without a state file and
// prints the process CPU per order of both, the writes, the writer's main-thread time (snapshot,
// JSON, history append) per write and per order, and the size of both files.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSimulator, type Simulator } from '../server.ts';

const rate = Number(process.argv[2] ?? 50);
const seconds = Number(process.argv[3] ?? 10);
const balances = { USDT: 1e12, BTC: 1e6, ETH: 1e6 };
let n = 0;
const order = (sim: Simulator) => sim.placeOrder({ category: n++ % 2 ? 'linear' : 'spot', symbol: 'ETHUSDT', side: n % 4 < 2 ? 'Buy' : 'Sell', orderType: 'Market', qty: '0.01', marketUnit: 'baseCoin' });

async function measure(history: number, stateFile?: string): Promise<{ cpuPerOrderMs: number; writes: number; serializeMsPerWrite: number; snapshotBytes: number; historyBytes: number }> {
  const sim = await startSimulator({ seed: 1, balances, stateFile });
  try {
    for (let i = 0; i < history; i++) order(sim);
    sim.save();
    await sleep(300);
    const w0 = sim.accountInfo().writer;
    const c0 = process.cpuUsage();
    const count = rate * seconds;
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      order(sim);
      const due = t0 + ((i + 1) * 1000) / rate;
      await sleep(Math.max(0, due - performance.now()));
    }
    await sleep(500); // let the last coalesced write land
    const c = process.cpuUsage(c0);
    const w = sim.accountInfo().writer;
    const writes = (w?.writes ?? 0) - (w0?.writes ?? 0);
    return {
      cpuPerOrderMs: (c.user + c.system) / 1000 / count,
      writes,
      serializeMsPerWrite: writes ? ((w?.totalSerializeMs ?? 0) - (w0?.totalSerializeMs ?? 0)) / writes : 0,
      snapshotBytes: w?.snapshotBytes ?? 0,
      historyBytes: w?.historyBytes ?? 0,
    };
  } finally {
    await sim.close();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'sim-cost-'));
try {
  console.log(`${rate} orders/s for ${seconds} s (market orders, one fill each)`);
  console.log('orders on file | CPU/order in memory | CPU/order with file | writes | writer main thread/write | per order | snapshot | history');
  for (const history of [0, 10_000, 50_000]) {
    const mem = await measure(history);
    const file = await measure(history, join(dir, `state-${history}.json`));
    console.log(`${String(history).padStart(14)} | ${mem.cpuPerOrderMs.toFixed(3).padStart(16)} ms | ${file.cpuPerOrderMs.toFixed(3).padStart(16)} ms | ${String(file.writes).padStart(6)} | ${file.serializeMsPerWrite.toFixed(1).padStart(21)} ms | ${((file.serializeMsPerWrite * file.writes) / (rate * seconds)).toFixed(2).padStart(6)} ms | ${(file.snapshotBytes / 1e3).toFixed(0)} kB | ${(file.historyBytes / 1e6).toFixed(1)} MB`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
