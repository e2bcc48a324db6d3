// Signals of an informed trader on a pattern regime's price path, for replay backtests
// (docs/backtest.md, "Example: a learnable and a noise market"):
//   npx tsx stack/regime-signals.ts learnable 60 > learnable.jsonl
//   npm run cli -- replay --file learnable.jsonl --name learnable --set RISK_CATEGORY=linear
// One BTCUSDT signal a minute (the model's default horizon) of `amount` USDT, whose side is the
// planted drift of the block under way (sim/regimes.ts; alternating in the noise regime, which has
// none), with the snapshot price of the path and the feature vector the model service would
// record (technical_indicators, mkt-v1) from the path's one-second mids. Same arguments, same file.
import { PriceProcess } from '../sim/price-process.ts';
import { PATTERN_REGIMES, type PatternRegime } from '../sim/regimes.ts';
import { computeFeatures, FEATURE_NAMES, type Tick } from '../model/features.ts';

const [regimeArg = 'learnable', countArg = '60', seedArg = '21', amountArg = '100'] = process.argv.slice(2);
const regime = regimeArg as PatternRegime;
if (!PATTERN_REGIMES.includes(regime) || regime === 'momentum-noise') {
  process.stderr.write(`usage: npx tsx stack/regime-signals.ts learnable|noise|trend-revert [count=60] [seed=21] [amount=100]\n`);
  process.exit(2);
}
const T0 = Date.UTC(2025, 5, 1, 12, 0, 0);
const pp = new PriceProcess({ mode: 'pattern', patternRegime: regime, historyMinutes: 0 }, Number(seedArg), [{ symbol: 'BTCUSDT', initialPrice: 60_000, tickSize: 0.1 }], T0);
const ticks: Tick[] = [];
for (let k = 1; k <= Number(countArg); k++) {
  pp.advanceTo(T0 + k * 60_000, (evs) => ticks.push({ ts: evs[0]!.time, mid: evs[0]!.price, bid: null, ask: null, bidSize: null, askSize: null, volume24h: 0 }));
  const f = computeFeatures(ticks, 0, 60)!;
  const drift = pp.plantedDrift('BTCUSDT', pp.steps);
  const side = drift > 0 ? 'buy' : drift < 0 ? 'sell' : k % 2 ? 'buy' : 'sell';
  const signal = {
    signal_id: `00000000-0000-4000-8000-${String(k).padStart(12, '0')}`,
    signal_type: side,
    asset: 'BTCUSDT',
    amount: Number(amountArg),
    confidence: 0.8,
    timestamp: new Date(T0 + k * 60_000).toISOString(),
    strategy_id: `informed-${regime}`,
    model_version: null,
    is_warmup: false,
    market_data_snapshot: { price: pp.mid('BTCUSDT'), spread: 1.2, volume_24h: 1e6, volatility: 0.001, orderbook_depth: null, technical_indicators: Object.fromEntries(FEATURE_NAMES.map((n, j) => [n, Math.round(f[j]! * 1e6) / 1e6])) },
    metadata: null,
    trace_id: `${regime}-${k}`,
  };
  process.stdout.write(`${JSON.stringify(signal)}\n`);
}
