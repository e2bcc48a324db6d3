// Linear position settings: position mode (one-way / hedge), the positionIdx rules of orders and
// position endpoints, leverage, and the rows of /v5/position/list.
//  - Position mode (POST /v5/position/switch-mode): 0 "merged single" (one-way), 3 "both sides"
//    (hedge), per symbol or per settle coin; a symbol's own setting wins over its coin's, the coin's
//    over the default (one-way). A symbol switches only without a position (110024) and without
//    open orders (110028); by coin, the symbols that have either keep their mode. The symbol's
//    positions in the new mode are pushed (empty).
//  - positionIdx: 0 in one-way mode, 1 (Buy side) or 2 (Sell side) in hedge mode; anything else is
//    10001 "position idx not match position mode". In hedge mode an order against its side (Sell
//    on 1, Buy on 2) can only close that side's position, as a reduce-only order does.
//  - Leverage (POST /v5/position/set-leverage): buyLeverage and sellLeverage in the instrument's
//    leverageFilter (minLeverage..maxLeverage in leverageStep); equal in one-way mode and in cross
//    or portfolio margin; the two sides of a hedge-mode symbol may differ in isolated margin.
//    Unchanged: 110043; more initial margin than is available: 110044.
// https://bybit-exchange.github.io/docs/v5/position/position-mode, .../position/leverage
import type { Account, Position, PositionIdx, PositionMode } from './accounts.ts';
import { emptyPosition, positionKey } from './accounts.ts';
import { paramsError, RetCode, SimError } from './errors.ts';
import type { Exchange } from './exchange.ts';
import type { LinearInstrument } from './instruments.ts';
import { isMultiple, parseNum } from './num.ts';
import type { Side } from './orders.ts';
import type { PositionFigures } from './views.ts';

export const LEVERAGE_STEP = 0.01;
export const MIN_LEVERAGE = 1;

const idxMismatch = () => paramsError('position idx not match position mode');

/** The positionIdx of an order or a position request, checked against the symbol's mode. */
export function positionIdxFor(acc: Account, inst: LinearInstrument, raw: unknown): PositionIdx {
  const mode = acc.modeOf(inst.symbol, inst.settleCoin);
  if (raw === undefined || raw === null || raw === '') {
    if (mode === 0) return 0;
    throw idxMismatch();
  }
  const n = Number(raw);
  if (mode === 0) {
    if (n !== 0) throw idxMismatch();
    return 0;
  }
  if (n !== 1 && n !== 2) throw idxMismatch();
  return n;
}

/** In hedge mode an order against its position's side can only close that position. */
export const closesOnly = (idx: PositionIdx, side: Side): boolean => (idx === 1 && side === 'Sell') || (idx === 2 && side === 'Buy');

/** The position indexes a symbol has in its current mode. */
export function indexesOf(acc: Account, inst: LinearInstrument): PositionIdx[] {
  return acc.modeOf(inst.symbol, inst.settleCoin) === 3 ? [1, 2] : [0];
}

export interface PositionRow {
  position: Position;
  instrument: LinearInstrument;
  figures: PositionFigures;
}

/** Rows of /v5/position/list for one symbol: one per index of its mode, empty ones included (as Bybit lists them). */
export function symbolPositions(ex: Exchange, uid: string, inst: LinearInstrument): PositionRow[] {
  const acc = ex.account(uid);
  return indexesOf(acc, inst).map((idx) => {
    const position = acc.findPosition(inst.symbol, idx) ?? emptyPosition(inst.symbol, idx, acc.leverageOf(inst.symbol, idx), ex.now());
    return { position, instrument: inst, figures: ex.positionFigures(position, inst, uid) };
  });
}

function linearInstrument(ex: Exchange, category: unknown, symbol: unknown): LinearInstrument {
  if (category !== 'linear') throw paramsError('category only support linear');
  if (typeof symbol !== 'string' || !symbol) throw paramsError('symbol is required');
  const inst = ex.instruments.get('linear', symbol);
  if (!inst || inst.category !== 'linear') throw paramsError('symbol invalid');
  return inst;
}

function leverageParam(inst: LinearInstrument, name: string, v: unknown): number {
  const x = parseNum(v);
  const max = Number(inst.maxLeverage);
  if (!(x >= MIN_LEVERAGE && x <= max) || !isMultiple(x, LEVERAGE_STEP)) {
    throw paramsError(`${name} must be in [${MIN_LEVERAGE}, ${inst.maxLeverage}] in steps of ${LEVERAGE_STEP}`);
  }
  return x;
}

export function setLeverage(ex: Exchange, uid: string, p: Record<string, unknown>): void {
  const inst = linearInstrument(ex, p.category, p.symbol);
  if (p.buyLeverage === undefined || p.sellLeverage === undefined) throw paramsError('buyLeverage and sellLeverage are required');
  const buy = leverageParam(inst, 'buyLeverage', p.buyLeverage);
  const sell = leverageParam(inst, 'sellLeverage', p.sellLeverage);
  const acc = ex.account(uid);
  const hedge = acc.modeOf(inst.symbol, inst.settleCoin) === 3;
  if (buy !== sell) {
    if (!hedge) throw paramsError('buyLeverage must be the same as sellLeverage in one-way mode');
    if (acc.marginMode !== 'ISOLATED_MARGIN') throw paramsError('buyLeverage must be the same as sellLeverage in cross margin mode');
  }
  if (acc.leverageOf(inst.symbol, 1) === buy && acc.leverageOf(inst.symbol, 2) === sell) throw new SimError(RetCode.LEVERAGE_NOT_MODIFIED, 'leverage not modified');
  // Lower leverage holds more margin: refused when the account cannot cover it.
  let moreIM = 0;
  for (const idx of [0, 1, 2] as const) {
    const pos = acc.findPosition(inst.symbol, idx);
    if (!pos || pos.size === 0) continue;
    const lev = idx === 2 ? sell : buy;
    moreIM += (Math.abs(pos.size) * ex.mid(inst.symbol)) * (1 / lev - 1 / pos.leverage);
  }
  if (moreIM > 0 && ex.available(uid, inst.settleCoin) + 1e-9 < moreIM) throw new SimError(RetCode.MARGIN_INSUFFICIENT, 'Available margin is insufficient.');
  const now = ex.now();
  ex.apply((t) => {
    acc.leverage.set(inst.symbol, buy);
    if (sell !== buy) acc.leverage.set(`${inst.symbol}/2`, sell);
    else acc.leverage.delete(`${inst.symbol}/2`);
    for (const idx of indexesOf(acc, inst)) {
      const pos = acc.position(inst.symbol, now, idx);
      pos.leverage = acc.leverageOf(inst.symbol, idx);
      pos.updatedTime = now;
      t.position(uid, positionKey(inst.symbol, idx));
    }
    t.wallet(uid);
  });
}

function modeParam(v: unknown): PositionMode {
  const n = typeof v === 'string' && v !== '' ? Number(v) : v;
  if (n !== 0 && n !== 3) throw paramsError('mode must be 0 (one-way) or 3 (hedge)');
  return n;
}

/** Why a symbol cannot switch mode now, if it cannot. */
function switchBlocker(ex: Exchange, acc: Account, symbol: string): SimError | undefined {
  for (const idx of [0, 1, 2] as const) {
    if ((acc.findPosition(symbol, idx)?.size ?? 0) !== 0) return new SimError(RetCode.POSITION_EXISTS_MODE, 'You have an existing position, so the position mode cannot be switched.');
  }
  if (ex.openOrders(acc.uid, symbol).length) return new SimError(RetCode.OPEN_ORDERS_MODE, 'You have existing open orders, so the position mode cannot be switched.');
  return undefined;
}

export function switchPositionMode(ex: Exchange, uid: string, p: Record<string, unknown>): void {
  if (p.category !== 'linear') throw paramsError('category only support linear');
  const mode = modeParam(p.mode);
  const acc = ex.account(uid);
  const symbol = typeof p.symbol === 'string' && p.symbol ? p.symbol : undefined;
  const coin = typeof p.coin === 'string' && p.coin ? p.coin : undefined;
  if (symbol) {
    const inst = linearInstrument(ex, 'linear', symbol);
    if (acc.modeOf(symbol, inst.settleCoin) === mode) throw new SimError(RetCode.POSITION_MODE_NOT_MODIFIED, 'Position mode is not modified');
    const blocked = switchBlocker(ex, acc, symbol);
    if (blocked) throw blocked;
    acc.positionMode.set(symbol, mode);
    pushModePositions(ex, uid, [inst]);
    return;
  }
  if (!coin) throw paramsError('symbol or coin is required');
  const symbols = ex.instruments.ofCategory('linear').filter((i): i is LinearInstrument => i.category === 'linear' && i.settleCoin === coin);
  if (symbols.length === 0) throw paramsError('coin invalid');
  if (acc.coinPositionMode.get(coin) === mode && symbols.every((i) => acc.modeOf(i.symbol, coin) === mode)) {
    throw new SimError(RetCode.POSITION_MODE_NOT_MODIFIED, 'Position mode is not modified');
  }
  // Symbols with a position or open orders keep the mode they have; the others switch, and symbols
  // listed later follow the coin.
  for (const i of symbols) {
    if (switchBlocker(ex, acc, i.symbol)) acc.positionMode.set(i.symbol, acc.modeOf(i.symbol, coin));
    else acc.positionMode.set(i.symbol, mode);
  }
  acc.coinPositionMode.set(coin, mode);
  pushModePositions(ex, uid, symbols);
}

/** The (empty) positions a symbol has in its new mode, pushed as its position update. */
function pushModePositions(ex: Exchange, uid: string, insts: LinearInstrument[]): void {
  const acc = ex.account(uid);
  const now = ex.now();
  ex.apply((t) => {
    for (const inst of insts) {
      for (const idx of indexesOf(acc, inst)) {
        acc.position(inst.symbol, now, idx);
        t.position(uid, positionKey(inst.symbol, idx));
      }
    }
  });
}
