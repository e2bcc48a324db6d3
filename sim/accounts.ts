// Unified trading accounts: coin balances (with the part locked by open spot orders) and linear
// positions (one-way mode). Margin and PnL figures are derived on demand from positions, open
// orders and mark prices, so they never drift from the state they summarise.

export interface CoinBalance {
  wallet: number;
  /** Held by open spot orders. */
  locked: number;
  cumRealisedPnl: number;
}

export interface Position {
  symbol: string;
  /** Signed: > 0 long, < 0 short. */
  size: number;
  avgPrice: number;
  leverage: number;
  cumRealisedPnl: number;
  curRealisedPnl: number;
  createdTime: number;
  updatedTime: number;
  seq: number;
}

/** An account as persisted: see Account.snapshot(). */
export interface AccountState {
  uid: string;
  coins: Record<string, CoinBalance>;
  positions: Position[];
  leverage: Record<string, number>;
}

export class Account {
  readonly coins = new Map<string, CoinBalance>();
  readonly positions = new Map<string, Position>();
  readonly leverage = new Map<string, number>();

  constructor(readonly uid: string, balances: Record<string, number>) {
    for (const [coin, amount] of Object.entries(balances)) this.coin(coin).wallet = amount;
  }

  static fromState(s: AccountState): Account {
    const a = new Account(s.uid, {});
    for (const [coin, b] of Object.entries(s.coins)) a.coins.set(coin, { ...b });
    for (const p of s.positions) a.positions.set(p.symbol, { ...p });
    for (const [symbol, lev] of Object.entries(s.leverage)) a.leverage.set(symbol, lev);
    return a;
  }

  snapshot(): AccountState {
    return {
      uid: this.uid,
      coins: Object.fromEntries([...this.coins].map(([c, b]) => [c, { ...b }])),
      positions: [...this.positions.values()].map((p) => ({ ...p })),
      leverage: Object.fromEntries(this.leverage),
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

  leverageOf(symbol: string): number {
    return this.leverage.get(symbol) ?? 10;
  }

  position(symbol: string, now: number): Position {
    let p = this.positions.get(symbol);
    if (!p) {
      p = { symbol, size: 0, avgPrice: 0, leverage: this.leverageOf(symbol), cumRealisedPnl: 0, curRealisedPnl: 0, createdTime: now, updatedTime: now, seq: -1 };
      this.positions.set(symbol, p);
    }
    return p;
  }
}

/**
 * Apply a linear fill to a one-way position. Returns the closed size and the realised PnL of the
 * closed part (before fees).
 */
export function applyLinearFill(p: Position, side: 'Buy' | 'Sell', qty: number, price: number): { closedSize: number; pnl: number } {
  const signed = side === 'Buy' ? qty : -qty;
  if (p.size === 0 || Math.sign(p.size) === Math.sign(signed)) {
    const newSize = p.size + signed;
    if (p.size === 0) p.curRealisedPnl = 0;
    p.avgPrice = (Math.abs(p.size) * p.avgPrice + qty * price) / Math.abs(newSize);
    p.size = roundQty(newSize);
    return { closedSize: 0, pnl: 0 };
  }
  const closing = Math.min(qty, Math.abs(p.size));
  const pnl = (price - p.avgPrice) * closing * Math.sign(p.size);
  const rest = qty - closing;
  p.size = roundQty(p.size + signed);
  if (p.size === 0) p.avgPrice = 0;
  else if (rest > 1e-12) {
    p.avgPrice = price; // flipped
    p.curRealisedPnl = 0;
  }
  return { closedSize: closing, pnl };
}

const roundQty = (x: number) => Math.round(x * 1e9) / 1e9;

export function unrealisedPnl(p: Position, mark: number): number {
  return p.size === 0 ? 0 : (mark - p.avgPrice) * p.size;
}
