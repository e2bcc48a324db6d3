// Writes sim/data/btcusdt-1m.csv: one synthetic day of BTCUSDT 1-minute klines for the replay
// price mode. Deterministic (fixed seed), so re-running it reproduces the shipped file byte for byte.
//   npx tsx sim/scripts/gen-klines.ts
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Rng } from '../rng.ts';

const SEED = 20240601;
const START = Date.UTC(2024, 5, 1); // 2024-06-01T00:00:00Z
const ROWS = 1440;
const rng = new Rng(SEED, 9);
// Calm, trending, volatile and mean-reverting hours, so a replay shows more than one regime.
const regimes = [
  { drift: 0, vol: 0.0006 },
  { drift: 0.0002, vol: 0.0009 },
  { drift: -0.00015, vol: 0.0018 },
  { drift: 0, vol: 0.0004 },
];
const lines = ['# symbol=BTCUSDT interval=1 source=synthetic seed=' + SEED, 'startTime,open,high,low,close,volume,turnover'];
let price = 67250;
for (let i = 0; i < ROWS; i++) {
  const reg = regimes[Math.floor(i / 60) % regimes.length]!;
  const open = price;
  let high = open, low = open, p = open, volume = 0, turnover = 0;
  for (let k = 0; k < 6; k++) {
    p = p * Math.exp(reg.drift / 6 + (reg.vol / Math.sqrt(6)) * rng.normal());
    high = Math.max(high, p);
    low = Math.min(low, p);
    const q = 0.05 + 2 * rng.next();
    volume += q;
    turnover += q * p;
  }
  price = p;
  const f = (x: number) => x.toFixed(2);
  lines.push([START + i * 60_000, f(open), f(high), f(low), f(p), volume.toFixed(6), turnover.toFixed(4)].join(','));
}
const out = fileURLToPath(new URL('../data/btcusdt-1m.csv', import.meta.url));
writeFileSync(out, lines.join('\n') + '\n');
console.log(`wrote ${ROWS} rows to ${out}`);
