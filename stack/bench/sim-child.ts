// The exchange simulator for the benchmark, in its own process (so its CPU and memory are not the
// order manager's): a free port, rate limits ×1000, an account far from any balance limit. Talks to
// the bench driver over IPC: sends {ready, port, key, secret}; answers {orders} with the acceptance
// time (createdTime, ms) of every order by orderLinkId, and {prices} with the current mids.
import { startSimulator } from '../../sim/server.ts';

const KEY = 'bench-key';
const SECRET = process.env.BENCH_SIM_SECRET ?? 'bench-secret';

const sim = await startSimulator({
  port: 0,
  seed: 11,
  credentials: [{ key: KEY, secret: SECRET }],
  // Sells are half of the bench's signals (20-80 USDT each, unfilled limit sells keep their coins
  // reserved): every coin worth about 600,000 USDT, far beyond what a run's imbalance can use up.
  balances: { USDT: 1e10, BTC: 10, ETH: 200, SOL: 4000 },
  // ×1000 rather than off: the simulator still answers with X-Bapi-Limit headers, and the client's
  // limiter takes the lower of its own limit and the header's.
  rateLimits: { multiplier: 1000 },
});

const send = (m: unknown) => process.send?.(m);
let since = 0;

process.on('message', (m: { type: string; assets?: string[] }) => {
  if (m.type === 'orders') {
    // Only what is new since the last ask: the full history grows with every run.
    const all = sim.orders();
    const fresh = all.slice(since);
    since = all.length;
    send({ type: 'orders', orders: fresh.map((o) => [String(o.orderLinkId ?? ''), Number(o.createdTime)]) });
  } else if (m.type === 'prices') {
    const state = sim.state() as { prices?: Record<string, number> };
    send({ type: 'prices', prices: state.prices ?? {} });
  } else if (m.type === 'stop') {
    void sim.close().then(() => process.exit(0));
  }
});
process.on('disconnect', () => void sim.close().then(() => process.exit(0)));

send({ type: 'ready', port: sim.port, key: KEY, secret: SECRET });
