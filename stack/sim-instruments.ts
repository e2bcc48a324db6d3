// The simulator's instruments as the risk stage holds them, for tests and micro-benchmarks of the
// pure risk rules. Here, above both, so that the simulator does not depend on the rules it is used
// to test.
import { instKey, type Instrument as RiskInstrument } from '../pipelines/risk-rules.ts';
import { DEFAULT_INSTRUMENTS, type Category } from '../sim/instruments.ts';

/**
 * The simulator's instruments as the risk stage holds them (what exchange-sync stores from
 * instruments-info), keyed by instKey: for tests and micro-benchmarks of the pure risk rules.
 */
export function riskInstruments(only?: Category): Map<string, RiskInstrument> {
  const out = new Map<string, RiskInstrument>();
  for (const i of DEFAULT_INSTRUMENTS) {
    if (only && i.category !== only) continue;
    const common = { category: i.category, symbol: i.symbol, baseCoin: i.baseCoin, quoteCoin: i.quoteCoin, tradable: true, tickSize: i.tickSize };
    out.set(instKey(i.category, i.symbol), i.category === 'spot'
      ? { ...common, qtyStep: null, basePrecision: i.basePrecision, quotePrecision: i.quotePrecision, minOrderQty: i.minOrderQty, maxOrderQty: i.maxLimitOrderQty, maxMarketOrderQty: i.maxMarketOrderQty, minOrderAmt: i.minOrderAmt, maxOrderAmt: i.maxOrderAmt, minNotionalValue: null }
      : { ...common, qtyStep: i.qtyStep, basePrecision: null, quotePrecision: null, minOrderQty: i.minOrderQty, maxOrderQty: i.maxOrderQty, maxMarketOrderQty: i.maxMktOrderQty, minOrderAmt: null, maxOrderAmt: null, minNotionalValue: i.minNotionalValue });
  }
  return out;
}
