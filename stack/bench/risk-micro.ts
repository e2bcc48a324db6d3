// Micro-benchmark of the risk stage's pure part: `decide` + `applyDecision` per signal as the number
// of open (decided but unconfirmed) orders grows. `npx tsx stack/bench/risk-micro.ts`.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { applyDecision, decide, instKey, type RiskState } from '../../pipelines/risk-rules.ts';
import { parseConfig } from '../../pipelines/size-risk.ts';
import { riskInstruments } from '../sim-instruments.ts';
import type { Signal } from '../../schemas/types.ts';

const NOW = Date.now();
const big = '1000000000000';
const cfg = parseConfig({ RISK_MAX_ORDER_NOTIONAL: big, RISK_MAX_POSITION_NOTIONAL: big, RISK_MAX_TOTAL_EXPOSURE: big, RISK_MAX_OPEN_ORDERS: '1000000', RISK_MAX_OPEN_ORDERS_PER_ASSET: '1000000', RISK_MIN_CONFIDENCE: '0', RISK_PRICE_BAND_BPS: '5000' });
const ASSETS = ['BTCUSDT', 'ETHUSDT', 'SOLUSDT'];

function state(): RiskState {
  const instruments = riskInstruments('spot');
  const px: Record<string, string> = { BTCUSDT: '60000', ETHUSDT: '3000', SOLUSDT: '150' };
  return {
    instruments,
    tickers: new Map(ASSETS.map((s) => [instKey('spot', s), { category: 'spot' as const, symbol: s, bid: px[s]!, ask: px[s]!, last: px[s]!, markPrice: null, ts: NOW }])),
    balances: new Map([['USDT', { coin: 'USDT', walletBalance: '10000000000', available: '10000000000', usdValue: null }]]),
    positions: new Map(),
    openOrders: [],
    trading: { state: 'ACTIVE', killSwitch: false, reason: null },
  };
}
const sig = (i: number): Signal => {
  const asset = ASSETS[i % 3]!;
  return { signal_id: randomUUID(), signal_type: 'buy', asset, amount: 20, confidence: 0.9, timestamp: NOW, strategy_id: 'bench', model_version: 'v1', is_warmup: false, market_data_snapshot: { price: asset === 'BTCUSDT' ? 60000 : asset === 'ETHUSDT' ? 3000 : 150, spread: 1, volume_24h: 1, volatility: 0.01, orderbook_depth: null, technical_indicators: null }, metadata: null, trace_id: 't', received_at: NOW, validated_at: NOW };
};
const st = state();
for (const upTo of [100, 500, 1000, 2000]) {
  const t = performance.now();
  let n = 0;
  while (st.openOrders.length < upTo) {
    const d = decide(sig(n), st, cfg, NOW);
    if (d.kind !== 'intents') throw new Error(`rejected: ${d.detail}`);
    applyDecision(st, d);
    n++;
  }
  console.log(`open orders → ${upTo}: ${((performance.now() - t) / n).toFixed(3)} ms per signal (${n} signals)`);
}
