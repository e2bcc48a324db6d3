// Instruments the simulator lists, with the filter fields of /v5/market/instruments-info.
// Values are close to Bybit's live ones for these symbols (tick sizes, steps, minimums).

export type Category = 'spot' | 'linear';

interface Common {
  symbol: string;
  baseCoin: string;
  quoteCoin: string;
  tickSize: string;
  makerFee: number;
  takerFee: number;
  /** Mid price the price process starts from. */
  initialPrice: number;
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

export class InstrumentRegistry {
  private readonly byKey = new Map<string, Instrument>();
  constructor(readonly list: readonly Instrument[]) {
    for (const i of list) this.byKey.set(`${i.category}:${i.symbol}`, i);
  }
  get(category: string, symbol: string): Instrument | undefined {
    return this.byKey.get(`${category}:${symbol}`);
  }
  ofCategory(category: Category): Instrument[] {
    return this.list.filter((i) => i.category === category);
  }
  /** Distinct price series: one per symbol name, shared by spot and linear (linear = spot here). */
  priceSymbols(): Array<{ symbol: string; initialPrice: number; tickSize: number }> {
    const seen = new Map<string, { symbol: string; initialPrice: number; tickSize: number }>();
    for (const i of this.list) {
      const t = Number(i.tickSize);
      const cur = seen.get(i.symbol);
      if (!cur) seen.set(i.symbol, { symbol: i.symbol, initialPrice: i.initialPrice, tickSize: t });
      else cur.tickSize = Math.min(cur.tickSize, t);
    }
    return [...seen.values()].sort((a, b) => (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : 0));
  }
  /** Coins that have a USDT spot market, for usdValue. */
  coinSymbol(coin: string): string | undefined {
    return this.list.find((i) => i.baseCoin === coin && i.quoteCoin === 'USDT')?.symbol;
  }
}
