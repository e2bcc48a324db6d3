// Take-profit / stop-loss per strategy on linear positions (issue #18): the setting and the pure
// rule that says what a position's TP/SL should be. The protect unit (connectors/protect.ts) reads
// the exchange, the P&L books and the instruments, asks `planProtection` and sends Bybit's
// trading-stop only for what differs. docs/risk.md ("Take profit and stop loss") has the rules.
//
// RISK_TPSL = `strategyA:tp=2,sl=1;strategyB:sl=0.5`: distances in percent of the strategy's
// average entry (its pnl_books row). Empty: off, nothing is ever sent.
//
// Who the stop belongs to. Bybit keeps one Full-mode TP/SL per position, and a position is the
// sum of every strategy's book of the symbol. The stop is set only when ONE configured strategy
// holds the whole position: exactly one open book for the symbol, and its signed qty equals the
// exchange's position. A position shared by several books (or differing from the only book, e.g.
// while a fill is in flight) gets nothing new and is reported as skipped: a Full-mode stop would
// close the other strategies' shares too, and Partial-mode stops carry no strategy, so their fills
// could not be booked to the right strategy. A stop set earlier is never removed by this unit (a
// stop that reduces risk is not a risk); closing the position deactivates it at the exchange.
import { z } from 'zod';
import { Dec } from '../runtime/decimal.ts';

/** One strategy's distances, percent of its average entry, as exact decimals (null: not set). */
export interface TpslRule {
  tp: string | null;
  sl: string | null;
}

export type TpslSpec = Readonly<Record<string, TpslRule>>;

const STRATEGY_RE = /^[^\s:;,=]{1,100}$/;
const PERCENT_RE = /^\d+(\.\d+)?$/;

/** Parse RISK_TPSL. Returns the spec, or every problem found (a bad setting lists them all). */
export function parseTpsl(text: string): { spec: TpslSpec; problems: string[] } {
  const spec: Record<string, TpslRule> = {};
  const problems: string[] = [];
  const entries = text.split(';').map((e) => e.trim()).filter(Boolean);
  for (const entry of entries) {
    const colon = entry.indexOf(':');
    if (colon < 0) {
      problems.push(`"${entry}": expected strategy:tp=P,sl=P`);
      continue;
    }
    const strategy = entry.slice(0, colon).trim();
    if (!STRATEGY_RE.test(strategy)) {
      problems.push(`"${entry}": strategy "${strategy}" must be 1-100 characters without spaces, ':', ';', ',' or '='`);
      continue;
    }
    if (spec[strategy]) {
      problems.push(`strategy "${strategy}" is given twice`);
      continue;
    }
    const rule: TpslRule = { tp: null, sl: null };
    let bad = false;
    for (const part of entry.slice(colon + 1).split(',').map((p) => p.trim()).filter(Boolean)) {
      const m = /^(tp|sl)\s*=\s*(.*)$/.exec(part);
      if (!m) {
        problems.push(`${strategy}: "${part}" is not tp=<percent> or sl=<percent>`);
        bad = true;
        continue;
      }
      const key = m[1] as 'tp' | 'sl';
      const value = m[2]!.trim();
      if (rule[key] !== null) {
        problems.push(`${strategy}: ${key} is given twice`);
        bad = true;
      } else if (!PERCENT_RE.test(value) || Dec.of(value).isZero()) {
        problems.push(`${strategy}: ${key}=${value} must be a positive number of percent`);
        bad = true;
      } else if (key === 'sl' && Dec.of(value).gte(100)) {
        // A long's stop 100 % below its entry is at price 0: it can never be set.
        problems.push(`${strategy}: sl=${value} must be below 100 (percent of the entry)`);
        bad = true;
      } else if (key === 'tp' && Dec.of(value).gt(1000)) {
        problems.push(`${strategy}: tp=${value} must be at most 1000 (percent of the entry)`);
        bad = true;
      } else rule[key] = Dec.of(value).toString();
    }
    if (bad) continue;
    if (rule.tp === null && rule.sl === null) {
      problems.push(`${strategy}: give tp=<percent>, sl=<percent> or both`);
      continue;
    }
    spec[strategy] = rule;
  }
  return { spec: Object.freeze(spec), problems };
}

/** A spec written back as RISK_TPSL text (parseTpsl(formatTpsl(s)) gives s). */
export function formatTpsl(spec: TpslSpec): string {
  return Object.entries(spec)
    .map(([strategy, r]) => `${strategy}:${[r.tp !== null ? `tp=${r.tp}` : '', r.sl !== null ? `sl=${r.sl}` : ''].filter(Boolean).join(',')}`)
    .join(';');
}

/**
 * The zod type of RISK_TPSL: a string parsed into a frozen spec, every problem an issue. A unit
 * parses its settings again from the service's parsed configuration (rt.cfg), where the value is
 * already a spec: it is written back and parsed the same way, so it is checked again, not trusted.
 */
export const tpslSetting = z
  .preprocess((v) => (v === undefined || v === null ? '' : typeof v === 'object' && !Array.isArray(v) ? formatTpsl(v as TpslSpec) : v), z.string())
  .transform((text, ctx): TpslSpec => {
    const { spec, problems } = parseTpsl(text);
    for (const p of problems) ctx.addIssue({ code: z.ZodIssueCode.custom, message: p });
    return spec;
  });

/** The exchange's view of one linear position (GET /v5/position/list), as far as TP/SL go. */
export interface ExchangePosition {
  symbol: string;
  side: string;
  size: string;
  positionIdx: number;
  /** '0' or '' when none. */
  takeProfit: string;
  stopLoss: string;
}

/** An open strategy book of the symbol (pnl_books, qty ≠ 0). */
export interface Holding {
  strategy: string;
  /** Signed: long > 0. */
  qty: string;
  avgEntry: string;
}

export const SKIP_REASONS = ['shared_position', 'book_differs', 'hedge_mode', 'no_instrument', 'bad_entry'] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

export type Plan =
  | { kind: 'none' } // flat, or no configured strategy holds it
  | { kind: 'in_place'; strategy: string }
  | { kind: 'set'; strategy: string; takeProfit: string | null; stopLoss: string | null; entry: string; side: 'Buy' | 'Sell' }
  | { kind: 'skip'; reason: SkipReason; detail: string };

/**
 * The TP/SL prices of a position held by one strategy: entry × (1 ± percent/100), rounded to the
 * tick TOWARD the entry, so that a stop is never wider than configured (a long's take profit and
 * a short's stop loss round down, the others up).
 */
export function targets(rule: TpslRule, long: boolean, entry: string, tick: string): { takeProfit: string | null; stopLoss: string | null } {
  const e = Dec.of(entry);
  const at = (pct: string, up: boolean) => {
    const raw = e.mul(Dec.of(100).add(up ? pct : Dec.of(pct).neg())).div(100, 18);
    return (up ? raw.floorTo(tick) : raw.ceilTo(tick)).toString();
  };
  return {
    takeProfit: rule.tp === null ? null : at(rule.tp, long),
    stopLoss: rule.sl === null ? null : at(rule.sl, !long),
  };
}

/** The exchange's price field as a decimal; 0 when none. */
const priceOf = (v: string): Dec => Dec.maybe(v) ?? Dec.ZERO;

/**
 * What a position needs. `holdings` are the open books of its symbol; `tick` its tick size (null:
 * no instrument row). Only the legs a strategy configures are compared and sent; a leg already at
 * the exchange's value is not sent again (a second run, or a second instance, sends nothing).
 */
export function planProtection(spec: TpslSpec, pos: ExchangePosition, holdings: readonly Holding[], tick: string | null): Plan {
  const size = Dec.maybe(pos.size) ?? Dec.ZERO;
  const configured = holdings.filter((h) => spec[h.strategy]);
  if (size.isZero() || configured.length === 0) return { kind: 'none' };
  if (pos.positionIdx !== 0) return { kind: 'skip', reason: 'hedge_mode', detail: `positionIdx ${pos.positionIdx}: TP/SL are set on one-way positions only` };
  if (holdings.length > 1) return { kind: 'skip', reason: 'shared_position', detail: `held by ${holdings.map((h) => `${h.strategy} ${h.qty}`).join(', ')}` };
  const h = configured[0]!;
  const signed = pos.side === 'Sell' ? size.neg() : size;
  if (Dec.of(h.qty).cmp(signed) !== 0) return { kind: 'skip', reason: 'book_differs', detail: `${h.strategy}'s book holds ${h.qty}, the exchange position is ${signed}` };
  if (tick === null) return { kind: 'skip', reason: 'no_instrument', detail: 'no tick size in instruments' };
  if (!Dec.of(h.avgEntry).isPos()) return { kind: 'skip', reason: 'bad_entry', detail: `average entry ${h.avgEntry}` };
  const long = signed.isPos();
  const want = targets(spec[h.strategy]!, long, h.avgEntry, tick);
  const takeProfit = want.takeProfit !== null && priceOf(pos.takeProfit).cmp(want.takeProfit) !== 0 ? want.takeProfit : null;
  const stopLoss = want.stopLoss !== null && priceOf(pos.stopLoss).cmp(want.stopLoss) !== 0 ? want.stopLoss : null;
  if (takeProfit === null && stopLoss === null) return { kind: 'in_place', strategy: h.strategy };
  return { kind: 'set', strategy: h.strategy, takeProfit, stopLoss, entry: h.avgEntry, side: long ? 'Buy' : 'Sell' };
}
