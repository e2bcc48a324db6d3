// Public market data shapes (instruments-info, tickers, orderbook, kline), shared by the REST
// routes and the public websocket topics.
import type { Exchange } from './exchange.ts';
import { DEFAULT_FUNDING_CAP, fundingRateAt, nextSettlement } from './funding.ts';
import type { Instrument } from './instruments.ts';
import { openInterestNow } from './market-history.ts';
import { indexPrice, markPrice } from './mark-price.ts';
import { fix, trim } from './num.ts';
import { priceDecimals, qtyDecimals } from './views.ts';

export function instrumentItem(i: Instrument, launchTime: number, symbolId: number): Record<string, unknown> {
  if (i.category === 'spot') {
    return {
      symbolId,
      symbol: i.symbol,
      baseCoin: i.baseCoin,
      quoteCoin: i.quoteCoin,
      innovation: '0',
      status: i.status ?? 'Trading',
      marginTrading: 'utaOnly',
      stTag: '0',
      lotSizeFilter: {
        basePrecision: i.basePrecision,
        quotePrecision: i.quotePrecision,
        minOrderQty: i.minOrderQty,
        maxOrderQty: i.maxLimitOrderQty,
        minOrderAmt: i.minOrderAmt,
        maxOrderAmt: i.maxOrderAmt,
        maxLimitOrderQty: i.maxLimitOrderQty,
        maxMarketOrderQty: i.maxMarketOrderQty,
        postOnlyMaxLimitOrderSize: String(Number(i.maxLimitOrderQty) * 5),
      },
      priceFilter: { tickSize: i.tickSize },
      riskParameters: { priceLimitRatioX: '0.1', priceLimitRatioY: '0.1' },
      symbolType: '',
    };
  }
  return {
    symbol: i.symbol,
    symbolId,
    contractType: 'LinearPerpetual',
    status: i.status ?? 'Trading',
    baseCoin: i.baseCoin,
    quoteCoin: i.quoteCoin,
    launchTime: String(i.launchTime ?? launchTime),
    deliveryTime: '0',
    deliveryFeeRate: '',
    priceScale: String(priceDecimals(i)),
    leverageFilter: { minLeverage: '1', maxLeverage: i.maxLeverage, leverageStep: '0.01' },
    priceFilter: { minPrice: i.minPrice, maxPrice: i.maxPrice, tickSize: i.tickSize },
    lotSizeFilter: {
      maxOrderQty: i.maxOrderQty,
      minOrderQty: i.minOrderQty,
      qtyStep: i.qtyStep,
      postOnlyMaxOrderQty: i.maxOrderQty,
      maxMktOrderQty: i.maxMktOrderQty,
      minNotionalValue: i.minNotionalValue,
    },
    unifiedMarginTrade: true,
    fundingInterval: 480,
    settleCoin: i.settleCoin,
    copyTrading: 'both',
    upperFundingRate: i.upperFundingRate ?? String(DEFAULT_FUNDING_CAP),
    lowerFundingRate: `-${i.upperFundingRate ?? String(DEFAULT_FUNDING_CAP)}`,
    isPreListing: false,
    preListingInfo: null,
    riskParameters: { priceLimitRatioX: '0.1', priceLimitRatioY: '0.1' },
    symbolType: '',
  };
}

export function ticker(ex: Exchange, i: Instrument): Record<string, unknown> {
  const now = ex.now();
  const pd = priceDecimals(i);
  const qd = qtyDecimals(i);
  const s = ex.prices.stats24h(i.symbol, now);
  const last = ex.lastPrice(i.symbol);
  const book = ex.visibleBook(i, 1);
  const bid = book.bids[0];
  const ask = book.asks[0];
  const common = {
    symbol: i.symbol,
    bid1Price: bid ? fix(bid.price, pd) : '',
    bid1Size: bid ? fix(bid.qty, qd) : '',
    ask1Price: ask ? fix(ask.price, pd) : '',
    ask1Size: ask ? fix(ask.qty, qd) : '',
    lastPrice: fix(last, pd),
    prevPrice24h: fix(s.prev24h, pd),
    price24hPcnt: trim(s.prev24h ? last / s.prev24h - 1 : 0, 6),
    highPrice24h: fix(s.high, pd),
    lowPrice24h: fix(s.low, pd),
    turnover24h: trim(s.turnover, 4),
    volume24h: trim(s.volume, qd),
  };
  if (i.category === 'spot') return { ...common, usdIndexPrice: trim(ex.mid(i.symbol), 8) };
  const mark = markPrice(ex.prices, i.symbol);
  const oi = openInterestNow(ex, i.symbol);
  const next = nextSettlement(now);
  return {
    ...common,
    indexPrice: fix(indexPrice(ex.prices, i.symbol), pd),
    markPrice: fix(mark, pd),
    prevPrice1h: fix(s.prev1h, pd),
    openInterest: fix(oi.both, qd),
    openInterestValue: trim(oi.both * mark, 2),
    singleOpenInterest: fix(oi.single, qd),
    singleOpenInterestValue: trim(oi.single * mark, 2),
    // The predicted rate: the interval's rate if it ended now.
    fundingRate: trim(fundingRateAt(ex.prices, i, next) ?? 0.0001, 8),
    nextFundingTime: String(next),
    predictedDeliveryPrice: '',
    basisRate: '',
    deliveryFeeRate: '',
    deliveryTime: '0',
  };
}

export function orderbook(ex: Exchange, i: Instrument, depth: number): { s: string; b: string[][]; a: string[][] } {
  const pd = priceDecimals(i);
  const qd = qtyDecimals(i);
  const book = ex.visibleBook(i, depth);
  return {
    s: i.symbol,
    b: book.bids.map((l) => [fix(l.price, pd), fix(l.qty, qd)]),
    a: book.asks.map((l) => [fix(l.price, pd), fix(l.qty, qd)]),
  };
}
