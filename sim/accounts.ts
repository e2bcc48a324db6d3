// Unified trading accounts: coin balances (with the part locked by open spot orders) and linear
// positions (one-way or hedge mode per symbol). Margin and PnL figures are derived on demand from
// positions, open orders and mark prices, so they never drift from the state they summarise.

export interface CoinBalance {
  wallet: number;
  /** Held by open spot orders. */
  locked: number;
  cumRealisedPnl: number;
}

/** 0: one-way mode; 1 / 2: the Buy / Sell side of a hedge-mode symbol. */
export type PositionIdx = 0 | 1 | 2;

export interface Position {
  symbol: string;
  positionIdx: PositionIdx;
  /** Signed: > 0 long, < 0 short. */
  size: number;
  avgPrice: number;
  leverage: number;
  cumRealisedPnl: number;
  curRealisedPnl: number;
  createdTime: number;
  updatedTime: number;
  seq: number;
  /** Trading fees paid to open the part still open: each close takes its share into closed P&L. */
  openFee: number;
  /** Funding paid (> 0) or received (< 0) while the part still open was held, shared the same way. */
  fundingCost: number;
}

export type MarginMode = 'REGULAR_MARGIN' | 'ISOLATED_MARGIN' | 'PORTFOLIO_MARGIN';
/** Bybit's position modes: 0 merged single (one-way), 3 both sides (hedge). */
export type PositionMode = 0 | 3;

/** An account as persisted: see Account.snapshot(). */
export interface AccountState {
  uid: string;
  coins: Record<string, CoinBalance>;
  positions: Position[];
  /** By symbol (one-way, or the Buy side in hedge mode) and `symbol/2` (the Sell side, when set apart). */
  leverage: Record<string, number>;
  /** Position mode set per symbol, and per settle coin (what symbols without their own setting follow). */
  positionMode: Record<string, PositionMode>;
  coinPositionMode: Record<string, PositionMode>;
  marginMode: MarginMode;
  /** When the account's settings last changed (account/info updatedTime); 0: never. */
  updatedTime: number;
}

/** Key of a position in Account.positions: the symbol (one-way) or `symbol/1`, `symbol/2` (hedge). */
export const positionKey = (symbol: string, idx: PositionIdx): string => (idx === 0 ? symbol : `${symbol}/${idx}`);

export class Account {
  readonly coins = new Map<string, CoinBalance>();
  readonly positions = new Map<string, Position>();
  readonly leverage = new Map<string, number>();
  readonly positionMode = new Map<string, PositionMode>();
  readonly coinPositionMode = new Map<string, PositionMode>();
  marginMode: MarginMode = 'REGULAR_MARGIN';
  updatedTime = 0;

  constructor(readonly uid: string, balances: Record<string, number>) {
    for (const [coin, amount] of Object.entries(balances)) this.coin(coin).wallet = amount;
  }

  static fromState(s: AccountState): Account {
    const a = new Account(s.uid, {});
    for (const [coin, b] of Object.entries(s.coins)) a.coins.set(coin, { ...b });
    for (const p of s.positions) a.positions.set(positionKey(p.symbol, p.positionIdx), { ...p });
    for (const [symbol, lev] of Object.entries(s.leverage)) a.leverage.set(symbol, lev);
    for (const [symbol, m] of Object.entries(s.positionMode)) a.positionMode.set(symbol, m);
    for (const [coin, m] of Object.entries(s.coinPositionMode)) a.coinPositionMode.set(coin, m);
    a.marginMode = s.marginMode;
    a.updatedTime = s.updatedTime;
    return a;
  }

  snapshot(): AccountState {
    return {
      uid: this.uid,
      coins: Object.fromEntries([...this.coins].map(([c, b]) => [c, { ...b }])),
      positions: [...this.positions.values()].map((p) => ({ ...p })),
      leverage: Object.fromEntries(this.leverage),
      positionMode: Object.fromEntries(this.positionMode),
      coinPositionMode: Object.fromEntries(this.coinPositionMode),
      marginMode: this.marginMode,
      updatedTime: this.updatedTime,
    };
  }

  coin(c: string): CoinBalance {
    let b = this.coins.get(c);
    if (!b) {
      b = { wallet: 0, locked: 0, cumRealisedPnl: 0 };
      this.coins.set(c, b);
    }
    return b;
  }

  /** Leverage of a position: the Sell side of a hedge-mode symbol may have its own. */
  leverageOf(symbol: string, idx: PositionIdx = 0): number {
    const buy = this.leverage.get(symbol) ?? 10;
    return idx === 2 ? (this.leverage.get(`${symbol}/2`) ?? buy) : buy;
  }

  /** Position mode of a symbol: its own setting, else its settle coin's, else one-way (Bybit's order of priority). */
  modeOf(symbol: string, settleCoin: string): PositionMode {
    return this.positionMode.get(symbol) ?? this.coinPositionMode.get(settleCoin) ?? 0;
  }

  position(symbol: string, now: number, idx: PositionIdx = 0): Position {
    const key = positionKey(symbol, idx);
    let p = this.positions.get(key);
    if (!p) {
      p = emptyPosition(symbol, idx, this.leverageOf(symbol, idx), now);
      this.positions.set(key, p);
    }
    return p;
  }

  /** The position if it exists (never creates one). */
  findPosition(symbol: string, idx: PositionIdx = 0): Position | undefined {
    return this.positions.get(positionKey(symbol, idx));
  }
}

export function emptyPosition(symbol: string, idx: PositionIdx, leverage: number, now: number): Position {
  return { symbol, positionIdx: idx, size: 0, avgPrice: 0, leverage, cumRealisedPnl: 0, curRealisedPnl: 0, createdTime: now, updatedTime: now, seq: -1, openFee: 0, fundingCost: 0 };
}

/** What a linear fill did to a position (fees in the settle coin). */
export interface LinearFillResult {
  /** Part of the fill that closed the position. */
  closedSize: number;
  /** Gross P&L of the closed part: (exit - entry) x closed size, signed by the position's side. */
  pnl: number;
  /** Average entry price of the closed part. */
  entryPrice: number;
  /** The fill's fee split between the closed part and the part that opened or added. */
  closeFee: number;
  /** Shares of the position's opening fees and funding that leave with the closed part. */
  openFeeShare: number;
  fundingShare: number;
  /** Wallet change of the fill: gross P&L of the closed part minus the whole fee. */
  realised: number;
}

/**
 * Apply a linear fill of `qty` at `price` paying `fee` to a position. A fill against the position
 * closes first; what is left of it opens the other side (one-way mode only: hedge-mode closing
 * orders are clamped to the position before they get here). Realised P&L, as Bybit counts it,
 * includes every fee (and, elsewhere, funding): cumRealisedPnl takes the whole fee at once, the
 * opening fee also waits on the position (openFee) for closed P&L, which charges each close its
 * share.
 */
export function applyLinearFill(p: Position, side: 'Buy' | 'Sell', qty: number, price: number, fee: number): LinearFillResult {
  const signed = side === 'Buy' ? qty : -qty;
  const out: LinearFillResult = { closedSize: 0, pnl: 0, entryPrice: p.avgPrice, closeFee: 0, openFeeShare: 0, fundingShare: 0, realised: -fee };
  if (p.size === 0 || Math.sign(p.size) === Math.sign(signed)) {
    const newSize = p.size + signed;
    if (p.size === 0) p.curRealisedPnl = 0;
    p.avgPrice = (Math.abs(p.size) * p.avgPrice + qty * price) / Math.abs(newSize);
    p.size = roundQty(newSize);
    p.openFee += fee;
    p.curRealisedPnl -= fee;
    p.cumRealisedPnl -= fee;
    return out;
  }
  const closing = Math.min(qty, Math.abs(p.size));
  const frac = closing / Math.abs(p.size);
  out.closedSize = closing;
  out.pnl = (price - p.avgPrice) * closing * Math.sign(p.size);
  out.closeFee = (fee * closing) / qty;
  out.openFeeShare = p.openFee * frac;
  out.fundingShare = p.fundingCost * frac;
  out.realised = out.pnl - fee;
  p.openFee -= out.openFeeShare;
  p.fundingCost -= out.fundingShare;
  const rest = qty - closing;
  p.size = roundQty(p.size + signed);
  p.cumRealisedPnl += out.realised;
  p.curRealisedPnl += out.pnl - out.closeFee;
  if (p.size === 0) {
    p.avgPrice = 0;
    p.openFee = 0;
    p.fundingCost = 0;
  } else if (rest > 1e-12) {
    // Flipped: a new position opens at the fill price with the rest of the fee as its opening fee.
    const restFee = fee - out.closeFee;
    p.avgPrice = price;
    p.openFee = restFee;
    p.fundingCost = 0;
    p.curRealisedPnl = -restFee;
  }
  return out;
}

const roundQty = (x: number) => Math.round(x * 1e9) / 1e9;

export function unrealisedPnl(p: Position, mark: number): number {
  return p.size === 0 ? 0 : (mark - p.avgPrice) * p.size;
}
