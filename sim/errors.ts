// Bybit retCodes the simulator answers with, and the error a handler throws to produce one.
// Messages follow https://bybit-exchange.github.io/docs/v5/error where the page gives one.

export const RetCode = {
  OK: 0,
  PARAMS: 10001,
  TIMESTAMP: 10002,
  API_KEY: 10003,
  SIGN: 10004,
  RATE_LIMIT: 10006,
  ROUTE: 10017,
  ORDER_NOT_EXIST: 110001,
  PRICE_RANGE: 110003,
  INSUFFICIENT_AB: 110007,
  ORDER_FINISHED: 110008,
  REDUCE_ONLY: 110017,
  LEVERAGE_NOT_MODIFIED: 110043,
  QTY_LE_FILLED: 110063,
  DUPLICATE_LINK_ID: 110072,
  NOT_LIVE: 110074,
  MIN_NOTIONAL: 110094,
  SPOT_INVALID_SIDE: 170117,
  SPOT_INVALID_SYMBOL: 170121,
  SPOT_BALANCE: 170131,
  SPOT_PRICE_HIGH: 170193,
  SPOT_PRICE_LOW: 170194,
  SPOT_PRICE_DECIMALS: 170134,
  SPOT_QTY_TOO_LARGE: 170135,
  SPOT_QTY_TOO_LOW: 170136,
  SPOT_QTY_DECIMALS: 170137,
  SPOT_VALUE_TOO_LOW: 170140,
  SPOT_MARKET_AMOUNT_DECIMALS: 170148,
  SPOT_ORDER_NOT_EXIST: 170213,
} as const;

export class SimError extends Error {
  constructor(readonly retCode: number, readonly retMsg: string) {
    super(`${retCode}: ${retMsg}`);
    this.name = 'SimError';
  }
}

export const paramsError = (what: string): SimError => new SimError(RetCode.PARAMS, `params error: ${what}`);
