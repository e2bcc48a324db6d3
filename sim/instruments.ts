// Instruments the simulator lists, with the filter fields of /v5/market/instruments-info.
// Values are close to Bybit's live ones for these symbols (tick sizes, steps, minimums).
//
// DEFAULT_INSTRUMENTS are the three pairs the order manager's tests and risk fixtures are written
// against (their prices and filters must not move); the simulator lists them and MORE_INSTRUMENTS
// (LISTED_INSTRUMENTS) unless told otherwise. The listing can change while the simulator runs
// (sim/listing.ts): instruments are added, their filters changed, their status set.

export type Category = 'spot' | 'linear';

/** Bybit's instrument status (enum `status`): orders are accepted in `Trading` only. */
export type InstrumentStatus = 'PreLaunch' | 'Trading' | 'Delivering' | 'Closed';

interface Common {
  symbol: string;
  baseCoin: string;
  quoteCoin: string;
  tickSize: string;
  makerFee: number;
  takerFee: number;
  /** Mid price the price process starts from. */
  initialPrice: number;
  /** Default Trading. */
  status?: InstrumentStatus;
  /** Listed while the simulator ran (launchTime); default: when the account was opened. */
  launchTime?: number;
}

export interface SpotInstrument extends Common {
  category: 'spot';
  basePrecision: string;
  quotePrecision: string;
  minOrderQty: string;
  maxLimitOrderQty: string;
  maxMarketOrderQty: string;
  minOrderAmt: string;
  maxOrderAmt: string;
}

export interface LinearInstrument extends Common {
  category: 'linear';
  settleCoin: string;
  minPrice: string;
  maxPrice: string;
  qtyStep: string;
  minOrderQty: string;
  maxOrderQty: string;
  maxMktOrderQty: string;
  minNotionalValue: string;
  maxLeverage: string;
  /** Funding rate cap (and, negated, floor) per interval; default 0.00375. */
  upperFundingRate?: string;
  /** Position value of the first risk-limit tier, USDT; default by maxLeverage (sim/market-routes.ts). */
  riskLimitValue?: string;
}

export type Instrument = SpotInstrument | LinearInstrument;

const spot = (symbol: string, baseCoin: string, initialPrice: number, tickSize: string, basePrecision: string, minOrderQty: string, maxLimitOrderQty: string, maxMarketOrderQty: string): SpotInstrument => ({
  category: 'spot', symbol, baseCoin, quoteCoin: 'USDT', tickSize, basePrecision, quotePrecision: '0.00000001',
  minOrderQty, maxLimitOrderQty, maxMarketOrderQty, minOrderAmt: '5', maxOrderAmt: '8000000',
  makerFee: 0.001, takerFee: 0.001, initialPrice,
});

const linear = (symbol: string, baseCoin: string, initialPrice: number, tickSize: string, qtyStep: string, minOrderQty: string, maxOrderQty: string, maxMktOrderQty: string, maxPrice: string): LinearInstrument => ({
  category: 'linear', symbol, baseCoin, quoteCoin: 'USDT', settleCoin: 'USDT', tickSize, minPrice: tickSize, maxPrice,
  qtyStep, minOrderQty, maxOrderQty, maxMktOrderQty, minNotionalValue: '5', maxLeverage: '100.00',
  makerFee: 0.0002, takerFee: 0.00055, initialPrice,
});

export const DEFAULT_INSTRUMENTS: readonly Instrument[] = Object.freeze([
  spot('BTCUSDT', 'BTC', 60000, '0.01', '0.000001', '0.000048', '71.73956243', '5.6', ),
  spot('ETHUSDT', 'ETH', 3000, '0.01', '0.00001', '0.00062', '1229.2336343', '300'),
  spot('SOLUSDT', 'SOL', 150, '0.01', '0.001', '0.021', '10000', '2000'),
  linear('BTCUSDT', 'BTC', 60000, '0.10', '0.001', '0.001', '1190.000', '500.000', '1999999.80'),
  linear('ETHUSDT', 'ETH', 3000, '0.01', '0.01', '0.01', '7240.00', '3620.00', '199999.98'),
  linear('SOLUSDT', 'SOL', 150, '0.010', '0.1', '0.1', '79770.0', '39885.0', '19999.980'),
]);

export const isTrading = (i: Instrument): boolean => (i.status ?? 'Trading') === 'Trading';

const spotPair = (symbol: string, baseCoin: string, initialPrice: number, f: { tick: string; base: string; quote: string; min: string; maxLimit: string; maxMarket: string; maxAmt: string }): SpotInstrument => ({
  category: 'spot', symbol, baseCoin, quoteCoin: 'USDT', tickSize: f.tick, basePrecision: f.base, quotePrecision: f.quote,
  minOrderQty: f.min, maxLimitOrderQty: f.maxLimit, maxMarketOrderQty: f.maxMarket, minOrderAmt: '5', maxOrderAmt: f.maxAmt,
  makerFee: 0.001, takerFee: 0.001, initialPrice,
});

const perp = (symbol: string, baseCoin: string, initialPrice: number, f: { tick: string; step: string; max: string; maxMkt: string; maxPrice: string; lev: string; cap: string; risk: string }): LinearInstrument => ({
  ...linear(symbol, baseCoin, initialPrice, f.tick, f.step, f.step, f.max, f.maxMkt, f.maxPrice),
  maxLeverage: f.lev, upperFundingRate: f.cap, riskLimitValue: f.risk,
});

/**
 * Nine more pairs, spot and USDT perpetual. Filters follow Bybit's instruments-info (ccxt's recorded
 * copy of it, 2025, for XRP, DOGE, ADA, LTC, TRX; the others are of the same kind); starting prices
 * are of the same period as the three above (BTC 60 000), so relative sizes stay plausible.
 */
export const MORE_INSTRUMENTS: readonly Instrument[] = Object.freeze([
  spotPair('XRPUSDT', 'XRP', 0.6, { tick: '0.0001', base: '0.01', quote: '0.000001', min: '0.44', maxLimit: '2390343.01', maxMarket: '478068.6', maxAmt: '4000000' }),
  spotPair('DOGEUSDT', 'DOGE', 0.15, { tick: '0.00001', base: '0.1', quote: '0.000001', min: '3', maxLimit: '22340128.4', maxMarket: '4468025.6', maxAmt: '4000000' }),
  spotPair('ADAUSDT', 'ADA', 0.45, { tick: '0.0001', base: '0.01', quote: '0.000001', min: '1.07', maxLimit: '7591573.35', maxMarket: '1518314.67', maxAmt: '4000000' }),
  spotPair('LTCUSDT', 'LTC', 80, { tick: '0.01', base: '0.00001', quote: '0.0000001', min: '0.00923', maxLimit: '22975.30155', maxMarket: '4595.06031', maxAmt: '600000' }),
  spotPair('LINKUSDT', 'LINK', 15, { tick: '0.001', base: '0.001', quote: '0.0000001', min: '0.111', maxLimit: '125934.01', maxMarket: '25186.802', maxAmt: '2000000' }),
  spotPair('AVAXUSDT', 'AVAX', 30, { tick: '0.01', base: '0.001', quote: '0.00001', min: '0.03', maxLimit: '50000', maxMarket: '10000', maxAmt: '2000000' }),
  spotPair('DOTUSDT', 'DOT', 6, { tick: '0.001', base: '0.001', quote: '0.000001', min: '0.107', maxLimit: '486618.004', maxMarket: '97323.6', maxAmt: '2000000' }),
  spotPair('BNBUSDT', 'BNB', 600, { tick: '0.1', base: '0.001', quote: '0.00001', min: '0.006', maxLimit: '5000', maxMarket: '1000', maxAmt: '4000000' }),
  spotPair('TRXUSDT', 'TRX', 0.12, { tick: '0.0001', base: '0.01', quote: '0.000001', min: '3.91', maxLimit: '11125945.7', maxMarket: '2225189.14', maxAmt: '3000000' }),
  perp('XRPUSDT', 'XRP', 0.6, { tick: '0.0001', step: '1', max: '10965300', maxMkt: '2467800', maxPrice: '1999.9998', lev: '75.00', cap: '0.0058', risk: '200000' }),
  perp('DOGEUSDT', 'DOGE', 0.15, { tick: '0.00001', step: '1', max: '43678900', maxMkt: '5991100', maxPrice: '199.99998', lev: '75.00', cap: '0.0058', risk: '200000' }),
  perp('ADAUSDT', 'ADA', 0.45, { tick: '0.0001', step: '1', max: '6315500', maxMkt: '1109600', maxPrice: '1999.9998', lev: '75.00', cap: '0.0058', risk: '200000' }),
  perp('LTCUSDT', 'LTC', 80, { tick: '0.01', step: '0.1', max: '28740.0', maxMkt: '6160.0', maxPrice: '199999.98', lev: '50.00', cap: '0.01', risk: '100000' }),
  perp('LINKUSDT', 'LINK', 15, { tick: '0.001', step: '0.1', max: '200000.0', maxMkt: '40000.0', maxPrice: '19999.998', lev: '50.00', cap: '0.005', risk: '100000' }),
  perp('AVAXUSDT', 'AVAX', 30, { tick: '0.001', step: '0.1', max: '100000.0', maxMkt: '20000.0', maxPrice: '19999.998', lev: '50.00', cap: '0.005', risk: '100000' }),
  perp('DOTUSDT', 'DOT', 6, { tick: '0.001', step: '0.1', max: '300000.0', maxMkt: '60000.0', maxPrice: '19999.998', lev: '50.00', cap: '0.005', risk: '100000' }),
  perp('BNBUSDT', 'BNB', 600, { tick: '0.01', step: '0.01', max: '2000.00', maxMkt: '400.00', maxPrice: '199999.98', lev: '50.00', cap: '0.005', risk: '200000' }),
  perp('TRXUSDT', 'TRX', 0.12, { tick: '0.00001', step: '1', max: '5417800', maxMkt: '1356000', maxPrice: '199.99998', lev: '75.00', cap: '0.0058', risk: '200000' }),
]);

/** What the simulator lists by default: the three pairs above and nine more. */
export const LISTED_INSTRUMENTS: readonly Instrument[] = Object.freeze([...DEFAULT_INSTRUMENTS, ...MORE_INSTRUMENTS]);

export class InstrumentRegistry {
  private readonly items: Instrument[];
  private readonly byKey = new Map<string, Instrument>();
  constructor(list: readonly Instrument[]) {
    this.items = [...list];
    for (const i of this.items) this.byKey.set(`${i.category}:${i.symbol}`, i);
  }
  /** Every instrument ever listed, in listing order (delisted ones keep their status). */
  get list(): readonly Instrument[] {
    return this.items;
  }
  get(category: string, symbol: string): Instrument | undefined {
    return this.byKey.get(`${category}:${symbol}`);
  }
  ofCategory(category: Category): Instrument[] {
    return this.items.filter((i) => i.category === category);
  }
  /** Add an instrument, or replace the one of the same category and symbol (keeping its place). */
  put(i: Instrument): void {
    const key = `${i.category}:${i.symbol}`;
    const old = this.byKey.get(key);
    if (old) this.items[this.items.indexOf(old)] = i;
    else this.items.push(i);
    this.byKey.set(key, i);
  }
  /** Distinct price series: one per symbol name, shared by spot and linear (linear = spot here). */
  priceSymbols(): Array<{ symbol: string; initialPrice: number; tickSize: number }> {
    const seen = new Map<string, { symbol: string; initialPrice: number; tickSize: number }>();
    for (const i of this.items) {
      const t = Number(i.tickSize);
      const cur = seen.get(i.symbol);
      if (!cur) seen.set(i.symbol, { symbol: i.symbol, initialPrice: i.initialPrice, tickSize: t });
      else cur.tickSize = Math.min(cur.tickSize, t);
    }
    return [...seen.values()].sort((a, b) => (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : 0));
  }
  /** Coins that have a USDT spot market, for usdValue. */
  coinSymbol(coin: string): string | undefined {
    return this.items.find((i) => i.baseCoin === coin && i.quoteCoin === 'USDT')?.symbol;
  }
}
