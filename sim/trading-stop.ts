// Take profit, stop loss and trailing stop of a linear position (POST /v5/position/trading-stop).
// As on Bybit, setting them creates conditional orders: reduce-only, close-on-trigger Market orders
// in status Untriggered (stopOrderType TakeProfit / StopLoss / TrailingStop, or PartialTakeProfit /
// PartialStopLoss in Partial mode), listed by order/realtime, pushed on the order topic, and shown
// on the position (takeProfit / stopLoss / trailingStop, Full mode). When the trigger price is
// reached the order passes through Triggered and closes the position (Full: all of it, Partial:
// its size) as a market order, or a limit order for Partial with tpOrderType/slOrderType=Limit;
// closing the position deactivates the ones left.
//
// Trigger prices: a long's take profit fires when the price rises to it and its stop loss when the
// price falls to it (a short the other way round); a trailing stop follows the best price since it
// became active (at activePrice, or at once) at `trailingStop` distance and fires when the price
// comes back that far. The trigger source is tpTriggerBy / slTriggerBy: LastPrice is the last
// traded price; MarkPrice and IndexPrice read the simulator's mark and index, which are both its
// mid price (the price process has no separate index or premium); trailing stops follow LastPrice.
// Prices are checked at every price step and after an admin price move.
// https://bybit-exchange.github.io/docs/v5/position/trading-stop
import { positionKey, type Position, type PositionIdx } from './accounts.ts';
import { paramsError, RetCode, SimError } from './errors.ts';
import type { Exchange } from './exchange.ts';
import type { LinearInstrument } from './instruments.ts';
import { isMultiple, parseNum, toStep, trim } from './num.ts';
import type { SimOrder, StopOrderType, TriggerBy } from './orders.ts';
import { positionIdxFor } from './positions.ts';

export const TRIGGER_SOURCES: readonly TriggerBy[] = ['LastPrice', 'MarkPrice', 'IndexPrice'];
/** Bybit's limit of Partial-mode TP/SL orders per position (110061). */
export const MAX_PARTIAL = 20;

/** The price a trigger watches. */
export function sourcePrice(ex: Exchange, symbol: string, by: TriggerBy): number {
  if (by === 'MarkPrice' || by === 'IndexPrice') return ex.mid(symbol);
  return ex.lastPrice(symbol);
}

/** Side of the order that closes a position. */
const closingSide = (p: Position) => (p.size > 0 ? 'Sell' : 'Buy');

/** Whether a conditional order's trigger condition holds at `price`. */
export function fires(o: SimOrder, price: number): boolean {
  if (o.stopOrderType === 'TrailingStop' && o.trailExtreme === 0) return false; // not active yet
  if (o.triggerDirection === 1) return price >= o.triggerPrice;
  if (o.triggerDirection === 2) return price <= o.triggerPrice;
  return false;
}

/**
 * Move a trailing stop with the price: activate it at its activePrice, then keep its trigger
 * `trailingStop` behind the best price seen. Returns true when its trigger price changed.
 */
export function trail(o: SimOrder, price: number, tick: number): boolean {
  const long = o.side === 'Sell'; // the order closes a long
  if (o.trailExtreme === 0) {
    if (o.activePrice > 0 && (long ? price < o.activePrice : price > o.activePrice)) return false;
    o.trailExtreme = price;
  } else {
    o.trailExtreme = long ? Math.max(o.trailExtreme, price) : Math.min(o.trailExtreme, price);
  }
  const trigger = roundTick(long ? o.trailExtreme - o.trailingStop : o.trailExtreme + o.trailingStop, tick);
  if (trigger === o.triggerPrice) return false;
  o.triggerPrice = trigger;
  return true;
}

const roundTick = (x: number, tick: number) => toStep(x, tick);

function priceParam(inst: LinearInstrument, name: string, v: unknown): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const x = parseNum(v);
  if (!(x >= 0)) throw paramsError(`${name} cannot be less than 0`);
  if (x > 0 && !isMultiple(x, Number(inst.tickSize))) throw paramsError(`${name} must be a multiple of tickSize ${inst.tickSize}`);
  return x;
}

function triggerByParam(name: string, v: unknown): TriggerBy | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (!TRIGGER_SOURCES.includes(v as TriggerBy)) throw paramsError(`${name} must be one of ${TRIGGER_SOURCES.join(', ')}`);
  return v as TriggerBy;
}

function orderTypeParam(name: string, v: unknown): 'Market' | 'Limit' {
  if (v === undefined || v === null || v === '' || v === 'Market') return 'Market';
  if (v === 'Limit') return 'Limit';
  throw paramsError(`${name} must be Market or Limit`);
}

/** What one leg (take profit or stop loss) of a request asks for. */
interface Leg {
  kind: 'TakeProfit' | 'StopLoss';
  price: number;
  by: TriggerBy;
  orderType: 'Market' | 'Limit';
  limitPrice: number;
  size: number;
}

/** A take profit must be on the profit side of the base price, a stop loss on the other (10001 otherwise). */
function checkSide(leg: Leg, p: Position, base: number): void {
  const long = p.size > 0;
  const higher = (leg.kind === 'TakeProfit') === long;
  if (higher ? leg.price > base : leg.price < base) return;
  const sideName = long ? 'Buy' : 'Sell';
  throw paramsError(`${leg.kind}:${trim(leg.price)} set for ${sideName} position should be ${higher ? 'higher' : 'lower'} than base_price:${trim(base)}??${leg.by}`);
}

export function setTradingStop(ex: Exchange, uid: string, p: Record<string, unknown>): void {
  if (p.category !== 'linear') throw paramsError('category only support linear');
  if (typeof p.symbol !== 'string' || !p.symbol) throw paramsError('symbol is required');
  const inst = ex.instruments.get('linear', p.symbol);
  if (!inst || inst.category !== 'linear') throw paramsError('symbol invalid');
  const mode = p.tpslMode;
  if (mode !== 'Full' && mode !== 'Partial') throw paramsError('tpslMode must be Full or Partial');
  const acc = ex.account(uid);
  const idx = positionIdxFor(acc, inst, p.positionIdx);
  const pos = acc.findPosition(inst.symbol, idx);
  if (!pos || pos.size === 0) throw paramsError('can not set tp/sl/ts for zero position');

  const takeProfit = priceParam(inst, 'takeProfit', p.takeProfit);
  const stopLoss = priceParam(inst, 'stopLoss', p.stopLoss);
  const trailingStop = priceParam(inst, 'trailingStop', p.trailingStop);
  const activePrice = priceParam(inst, 'activePrice', p.activePrice) ?? 0;
  const tpBy = triggerByParam('tpTriggerBy', p.tpTriggerBy);
  const slBy = triggerByParam('slTriggerBy', p.slTriggerBy);
  const tpType = orderTypeParam('tpOrderType', p.tpOrderType);
  const slType = orderTypeParam('slOrderType', p.slOrderType);
  if (mode === 'Full' && (tpType === 'Limit' || slType === 'Limit')) throw paramsError('tpOrderType and slOrderType only support Market in tpslMode Full');
  if (takeProfit === undefined && stopLoss === undefined && trailingStop === undefined) throw new SimError(RetCode.TPSL_NOT_MODIFIED, 'not modified');

  const step = Number(inst.qtyStep);
  const sizeOf = (name: string, v: unknown): number => {
    if (mode === 'Full') return 0;
    const x = parseNum(v);
    if (!(x > 0) || !isMultiple(x, step)) throw paramsError(`${name} is required in tpslMode Partial, a positive multiple of qtyStep ${inst.qtyStep}`);
    if (x > Math.abs(pos.size) + 1e-12) throw new SimError(RetCode.TPSL_SIZE_INSUFFICIENT, "You can't set take profit and stop loss due to insufficient size of remaining position size.");
    return x;
  };
  if (mode === 'Partial' && p.tpSize !== undefined && p.slSize !== undefined && parseNum(p.tpSize) !== parseNum(p.slSize)) throw paramsError('tpSize and slSize must be equal');
  const limitOf = (name: string, type: 'Market' | 'Limit', v: unknown): number => {
    if (type === 'Market') return 0;
    const x = priceParam(inst, name, v);
    if (!x) throw paramsError(`${name} is required when the order type is Limit`);
    return x;
  };

  const existing = ex.conditionalOrders(uid, inst.symbol, idx);
  const fullOf = (kind: StopOrderType) => existing.find((o) => o.tpslMode === 'Full' && o.stopOrderType === kind);
  const legs: Leg[] = [];
  const cancels: SimOrder[] = [];
  for (const [kind, price, by, type, limitName, limitRaw, sizeName, sizeRaw] of [
    ['TakeProfit', takeProfit, tpBy, tpType, 'tpLimitPrice', p.tpLimitPrice, 'tpSize', p.tpSize],
    ['StopLoss', stopLoss, slBy, slType, 'slLimitPrice', p.slLimitPrice, 'slSize', p.slSize],
  ] as const) {
    if (price === undefined) continue;
    const current = fullOf(kind);
    if (price === 0) {
      if (mode === 'Partial') throw paramsError(`${kind} 0 cancels a Full-mode ${kind}; Partial ones are cancelled by their orderId`);
      if (current) cancels.push(current);
      continue;
    }
    const trigger = by ?? current?.triggerBy ?? 'LastPrice';
    const leg: Leg = { kind, price, by: trigger, orderType: type, limitPrice: limitOf(limitName, type, limitRaw), size: sizeOf(sizeName, sizeRaw) };
    if (mode === 'Full' && current && current.triggerPrice === price && current.triggerBy === trigger) continue;
    checkSide(leg, pos, sourcePrice(ex, inst.symbol, trigger));
    legs.push(leg);
  }
  if (mode === 'Partial' && legs.length && existing.filter((o) => o.tpslMode === 'Partial').length + legs.length > MAX_PARTIAL) {
    throw new SimError(RetCode.PARTIAL_TPSL_LIMIT, `Not allowed to have more than ${MAX_PARTIAL} TP/SLs under Partial tpSlMode`);
  }
  const trailing = fullOf('TrailingStop');
  let newTrail: { distance: number; active: number } | undefined;
  if (trailingStop !== undefined) {
    if (trailingStop === 0) {
      if (trailing) cancels.push(trailing);
    } else if (!trailing || trailing.trailingStop !== trailingStop || trailing.activePrice !== activePrice) {
      const last = ex.lastPrice(inst.symbol);
      if (trailingStop >= last) throw paramsError('trailingStop must be less than the last price');
      if (activePrice > 0 && (pos.size > 0 ? activePrice <= last : activePrice >= last)) {
        throw paramsError(`activePrice:${trim(activePrice)} set for ${pos.size > 0 ? 'Buy' : 'Sell'} position should be ${pos.size > 0 ? 'higher' : 'lower'} than base_price:${trim(last)}??LastPrice`);
      }
      newTrail = { distance: trailingStop, active: activePrice };
    }
  }
  if (legs.length === 0 && cancels.length === 0 && !newTrail) throw new SimError(RetCode.TPSL_NOT_MODIFIED, 'not modified');

  const side = closingSide(pos);
  const tick = Number(inst.tickSize);
  ex.apply((t) => {
    for (const o of cancels) ex.deactivate(o);
    for (const leg of legs) {
      const current = mode === 'Full' ? fullOf(leg.kind) : undefined;
      const direction = (leg.kind === 'TakeProfit') === (pos.size > 0) ? 1 : 2;
      if (current) {
        ex.modifyConditional(current, t, { triggerPrice: leg.price, triggerBy: leg.by, triggerDirection: direction });
        continue;
      }
      ex.addConditional(uid, t, {
        symbol: inst.symbol, side, positionIdx: idx, stopOrderType: mode === 'Full' ? leg.kind : `Partial${leg.kind}`, tpslMode: mode,
        orderType: leg.orderType, price: leg.limitPrice, qty: leg.size, closeWholePosition: mode === 'Full',
        triggerPrice: leg.price, triggerBy: leg.by, triggerDirection: direction, trailingStop: 0, activePrice: 0,
      });
    }
    if (newTrail) {
      const { distance, active } = newTrail;
      const o = trailing
        ? (ex.modifyConditional(trailing, t, { trailingStop: distance, activePrice: active, trailExtreme: 0, triggerPrice: 0 }), trailing)
        : ex.addConditional(uid, t, {
          symbol: inst.symbol, side, positionIdx: idx, stopOrderType: 'TrailingStop', tpslMode: 'Full', orderType: 'Market', price: 0, qty: 0, closeWholePosition: true,
          triggerPrice: 0, triggerBy: 'LastPrice', triggerDirection: pos.size > 0 ? 2 : 1, trailingStop: distance, activePrice: active,
        });
      // Not active yet: the trigger shows where it will start.
      if (!trail(o, ex.lastPrice(inst.symbol), tick) && o.triggerPrice === 0) o.triggerPrice = roundTick(pos.size > 0 ? active - distance : active + distance, tick);
    }
    t.position(uid, positionKey(inst.symbol, idx));
  });
}

/** The fields of a new conditional order that the request decides. */
export interface ConditionalSpec {
  symbol: string;
  side: 'Buy' | 'Sell';
  positionIdx: PositionIdx;
  stopOrderType: StopOrderType;
  tpslMode: 'Full' | 'Partial';
  orderType: 'Market' | 'Limit';
  price: number;
  qty: number;
  closeWholePosition: boolean;
  triggerPrice: number;
  triggerBy: TriggerBy;
  triggerDirection: 1 | 2;
  trailingStop: number;
  activePrice: number;
}
