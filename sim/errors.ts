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
  // position and account settings (sim/positions.ts, sim/trading-stop.ts, sim/margin-mode.ts)
  POSITION_EXISTS_MODE: 110024,
  POSITION_MODE_NOT_MODIFIED: 110025,
  OPEN_ORDERS_MODE: 110028,
  MARGIN_INSUFFICIENT: 110044,
  TPSL_SIZE_INSUFFICIENT: 110058,
  PARTIAL_TPSL_LIMIT: 110061,
  TPSL_NOT_MODIFIED: 34040,
  SET_MARGIN_MODE_FAILED: 3400045,
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
  /** `result` of the error answer: `{}` unless the endpoint documents one (set-margin-mode's reasons). */
  constructor(readonly retCode: number, readonly retMsg: string, readonly result: Record<string, unknown> = {}) {
    super(`${retCode}: ${retMsg}`);
    this.name = 'SimError';
  }
}

export const paramsError = (what: string): SimError => new SimError(RetCode.PARAMS, `params error: ${what}`);
