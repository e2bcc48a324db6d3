// The simulator's instrument listing: read from a JSON file (`--instruments=PATH`,
// `startSimulator({ instrumentsFile })`), changed while running through the admin API (add an
// instrument, change its filters or fees, set its status), and kept in the state file.
//
// A JSON file holds an array of instruments (or {"instruments": [...]}) in the simulator's own
// shape (sim/instruments.ts): category, symbol, baseCoin, the filters, `initialPrice` (where the
// price process starts), optionally fees and status. Omitted fields take Bybit-like defaults.
//
// Instruments are never removed: one with orders or executions must stay known. Delisting is a
// status: `Closed` or `Delivering` (Bybit's statuses) refuse new orders (110074 "This contract is
// not live" for linear, 170121 "Invalid symbol." for spot) and cancel the open ones (cancelType
// CancelBySettle for linear, as for a delisted contract; CancelByAdmin for spot); `Trading`
// lists it again. Positions of a delisted perpetual stay as they are (no delivery settlement).
// On a restart the state file's listing wins; the configured list only adds what it lacks.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { FatalError } from '../runtime/errors.ts';
import { paramsError } from './errors.ts';
import type { Exchange } from './exchange.ts';
import { isTrading, type Instrument, type LinearInstrument, type SpotInstrument } from './instruments.ts';
import { decimalsOf, isMultiple } from './num.ts';

const decimal = z.string().regex(/^\d+(\.\d+)?$/, 'a decimal string such as "0.01"').refine((s) => Number(s) > 0, 'must be above zero');
const status = z.enum(['PreLaunch', 'Trading', 'Delivering', 'Closed']);
const symbol = z.string().regex(/^[A-Z0-9]{2,25}$/, 'uppercase letters and digits');
const coin = z.string().regex(/^[A-Z0-9]{1,12}$/);
const fee = z.number().min(-0.01).max(0.01);

const spotSchema = z.object({
  category: z.literal('spot'),
  symbol,
  baseCoin: coin,
  quoteCoin: coin.default('USDT'),
  tickSize: decimal,
  basePrecision: decimal,
  quotePrecision: decimal.default('0.00000001'),
  minOrderQty: decimal,
  maxLimitOrderQty: decimal,
  maxMarketOrderQty: decimal,
  minOrderAmt: decimal.default('5'),
  maxOrderAmt: decimal.default('8000000'),
  makerFee: fee.default(0.001),
  takerFee: fee.default(0.001),
  initialPrice: z.number().positive(),
  status: status.optional(),
  launchTime: z.number().int().optional(),
}).strict();

const linearSchema = z.object({
  category: z.literal('linear'),
  symbol,
  baseCoin: coin,
  quoteCoin: coin.default('USDT'),
  settleCoin: coin.optional(),
  tickSize: decimal,
  minPrice: decimal.optional(),
  maxPrice: decimal.optional(),
  qtyStep: decimal,
  minOrderQty: decimal,
  maxOrderQty: decimal,
  maxMktOrderQty: decimal,
  minNotionalValue: decimal.default('5'),
  maxLeverage: decimal.default('50.00'),
  makerFee: fee.default(0.0002),
  takerFee: fee.default(0.00055),
  initialPrice: z.number().positive(),
  upperFundingRate: decimal.optional(),
  riskLimitValue: decimal.optional(),
  status: status.optional(),
  launchTime: z.number().int().optional(),
}).strict();

const instrumentSchema = z.discriminatedUnion('category', [spotSchema, linearSchema]);

/** Fields an admin change may touch on a listed instrument (not its identity or coins). */
const CHANGEABLE = new Set([
  'tickSize', 'basePrecision', 'quotePrecision', 'minOrderQty', 'maxLimitOrderQty', 'maxMarketOrderQty', 'minOrderAmt', 'maxOrderAmt',
  'minPrice', 'maxPrice', 'qtyStep', 'maxOrderQty', 'maxMktOrderQty', 'minNotionalValue', 'maxLeverage', 'makerFee', 'takerFee',
  'upperFundingRate', 'riskLimitValue', 'status',
]);

/** Steps must divide the minimums they constrain, or no order could ever pass. */
function consistency(i: Instrument): string | undefined {
  const step = i.category === 'spot' ? i.basePrecision : i.qtyStep;
  if (!isMultiple(Number(i.minOrderQty), Number(step))) return `minOrderQty ${i.minOrderQty} is not a multiple of ${i.category === 'spot' ? 'basePrecision' : 'qtyStep'} ${step}`;
  if (i.category === 'linear' && !isMultiple(Number(i.maxPrice), Number(i.tickSize))) return `maxPrice ${i.maxPrice} is not a multiple of tickSize ${i.tickSize}`;
  return undefined;
}

/** An instrument from its JSON form (defaults filled in); throws a message naming what is wrong. */
export function parseInstrument(json: unknown): Instrument {
  const r = instrumentSchema.safeParse(json);
  if (!r.success) throw new Error(r.error.issues.slice(0, 5).map((x) => `${x.path.join('.') || '(instrument)'}: ${x.message}`).join('; '));
  const d = r.data;
  let inst: Instrument;
  if (d.category === 'spot') {
    inst = d satisfies SpotInstrument;
  } else {
    // Bybit's maxPrice is 19 999 998 ticks (1999999.80 for a 0.10 tick, 199.99998 for 0.00001).
    const tick = Number(d.tickSize);
    const maxPrice = d.maxPrice ?? (tick * 19_999_998).toFixed(decimalsOf(d.tickSize));
    inst = { ...d, settleCoin: d.settleCoin ?? d.quoteCoin, minPrice: d.minPrice ?? d.tickSize, maxPrice } satisfies LinearInstrument;
  }
  const problem = consistency(inst);
  if (problem) throw new Error(problem);
  return inst;
}

/** The instruments of a JSON file; refuses the start with the path and the reason when unusable. */
export function loadInstrumentsFile(path: string): Instrument[] {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new FatalError('sim_instruments_unreadable', `instrument file ${path} cannot be read: ${(e as Error).message}`);
  }
  const list = Array.isArray(json) ? json : (json as { instruments?: unknown } | null)?.instruments;
  if (!Array.isArray(list) || list.length === 0) throw new FatalError('sim_instruments_unreadable', `instrument file ${path}: expected a non-empty array of instruments (or {"instruments": [...]})`);
  const seen = new Set<string>();
  return list.map((x, n) => {
    let i: Instrument;
    try {
      i = parseInstrument(x);
    } catch (e) {
      throw new FatalError('sim_instruments_unreadable', `instrument file ${path}, entry ${n}: ${(e as Error).message}`);
    }
    const k = `${i.category}:${i.symbol}`;
    if (seen.has(k)) throw new FatalError('sim_instruments_unreadable', `instrument file ${path}: ${k} is listed twice`);
    seen.add(k);
    return i;
  });
}

/** The listing of a (re)start: the state file's, plus what the configured list adds. */
export function mergeListing(saved: readonly Instrument[] | undefined, configured: readonly Instrument[]): Instrument[] {
  if (!saved) return [...configured];
  const have = new Set(saved.map((i) => `${i.category}:${i.symbol}`));
  return [...saved, ...configured.filter((i) => !have.has(`${i.category}:${i.symbol}`))];
}

/**
 * Add an instrument, or change a listed one (its filters, fees or status), while the simulator
 * runs. `change` is a full instrument for a new one, or {category, symbol, ...fields to change}.
 * Delisting cancels the instrument's open orders. Returns the instrument as now listed.
 */
export function changeListing(ex: Exchange, change: Record<string, unknown>): Instrument {
  const cur = typeof change.category === 'string' && typeof change.symbol === 'string' ? ex.instruments.get(change.category, change.symbol) : undefined;
  let next: Instrument;
  try {
    if (cur) {
      const bad = Object.keys(change).filter((k) => k !== 'category' && k !== 'symbol' && !CHANGEABLE.has(k));
      if (bad.length) throw new Error(`cannot change ${bad.join(', ')} of a listed instrument`);
      next = parseInstrument({ ...cur, ...change });
    } else {
      next = parseInstrument({ launchTime: ex.now(), ...change });
    }
  } catch (e) {
    throw paramsError((e as Error).message);
  }
  ex.instruments.put(next);
  ex.prices.ensureSeries(next.symbol, next.initialPrice, Number(next.tickSize));
  if (cur && isTrading(cur) && !isTrading(next)) {
    ex.cancelOpenOrders((o) => o.category === next.category && o.symbol === next.symbol, next.category === 'linear' ? 'CancelBySettle' : 'CancelByAdmin');
  }
  return next;
}
