// Funding settlement of linear (USDT perpetual) positions, as Bybit settles it: every 8 hours, at
// 00:00, 08:00 and 16:00 UTC, each open position pays or receives
//   funding = position value at the mark price x funding rate
// longs pay shorts when the rate is positive, shorts pay longs when it is negative. The amount goes
// to the USDT wallet, to the position's realised P&L (cumRealisedPnl and curRealisedPnl, as Bybit
// counts funding in realised P&L) and, through fundingCost, into the closed P&L of the part that
// closes later; each settlement is a SETTLEMENT entry of the transaction log, with position and
// wallet pushes, and an execution with execType 'Funding' (below). Settlements happen when a price step reaches the settlement time, so they follow
// the exchange clock (a manual clock in tests) and never happen during downtime (a market halt).
// https://www.bybit.com/en/help-center/article/Introduction-to-Funding-Rate
//
// The funding execution, as Bybit reports funding in the execution stream and in
// GET /v5/execution/list (execType Funding, one of the list's execType filter values:
// https://bybit-exchange.github.io/docs/api-explorer/v5/position/execution):
//   execFee   = the funding fee, > 0 when the position PAID, < 0 when it received (the sign of a
//               trading fee: what left the wallet); so execFee = -(transaction log `funding`)
//   execPrice = the mark price at settlement, markPrice the same
//   execQty   = the position size (unsigned), execValue = size x mark
//   side      = the position's side (Buy: long, Sell: short), as the SETTLEMENT entry's side
//   feeRate   = the funding rate (unsigned by side: the rate of the settlement, not negated for a
//               short as the SETTLEMENT entry's feeRate is)
//   execTime  = the settlement time
//   orderId   = Bybit's settlement id "<settle time s>-8-<uid>-<positionIdx>" (the SETTLEMENT
//               entry's orderId, as in the transaction-log example of Bybit's docs), orderLinkId ''
//   orderType 'UNKNOWN', orderPrice/orderQty/leavesQty 0, isMaker false, closedSize 0: it belongs
//               to no order and closes nothing (the simulator's choice; the docs give no example)
// The SETTLEMENT entry's tradeId is the funding execution's execId, as a TRADE entry's is its fill's.
//
// The funding RATE is not decided here: settleFunding takes a FundingRateSource (startSimulator's
// `fundingRate` option, Exchange's `fundingRate`). Without one, defaultFundingRate applies.
import type { Account } from './accounts.ts';
import type { Touch } from './exchange.ts';
import type { LinearInstrument } from './instruments.ts';

/** Funding rate of a symbol at a settlement time (a fraction: 0.0001 is 0.01 %). */
export type FundingRateSource = (symbol: string, settleTime: number) => number;

export const FUNDING_INTERVAL_MS = 8 * 3600_000;

/**
 * The simulator's default rate: SIMPLE DEFAULT, a constant 0.01 % per 8 hours, the rate Bybit's
 * formula gives when the premium index is zero (interest rate 0.03 % a day). A market model of the
 * rate replaces it through the `fundingRate` option.
 */
export const DEFAULT_FUNDING_RATE = 0.0001;
export const defaultFundingRate: FundingRateSource = () => DEFAULT_FUNDING_RATE;

/** Settlement times t with from < t <= to (multiples of 8 h since the epoch: 00:00, 08:00, 16:00 UTC). */
export function fundingTimesBetween(from: number, to: number): number[] {
  const out: number[] = [];
  for (let t = (Math.floor(from / FUNDING_INTERVAL_MS) + 1) * FUNDING_INTERVAL_MS; t <= to; t += FUNDING_INTERVAL_MS) out.push(t);
  return out;
}

export interface SettlementDeps {
  accounts: Iterable<Account>;
  instrument(symbol: string): LinearInstrument | undefined;
  /** Mark price of a symbol now. */
  mark(symbol: string): number;
  rateAt: FundingRateSource;
}

/** Settle every open linear position of every account at `time`. */
export function settleFunding(d: SettlementDeps, time: number, t: Touch): void {
  const rates = new Map<string, number>();
  for (const acc of d.accounts) {
    for (const [key, p] of acc.positions) {
      if (p.size === 0) continue;
      const inst = d.instrument(p.symbol);
      if (!inst) continue;
      let rate = rates.get(p.symbol);
      if (rate === undefined) rates.set(p.symbol, (rate = d.rateAt(p.symbol, time)));
      const mark = d.mark(p.symbol);
      // > 0 received: a long pays a positive rate, a short receives it.
      const funding = -p.size * mark * rate;
      const wallet = acc.coin(inst.settleCoin);
      wallet.wallet += funding;
      wallet.cumRealisedPnl += funding;
      p.cumRealisedPnl += funding;
      p.curRealisedPnl += funding;
      p.fundingCost -= funding;
      p.updatedTime = time;
      const side = p.size > 0 ? 'Buy' : 'Sell';
      const orderId = `${time / 1000}-8-${acc.uid}-${p.positionIdx}`;
      const qty = Math.abs(p.size);
      const execId = t.execution({
        execType: 'Funding', uid: acc.uid, category: 'linear', symbol: p.symbol, orderId, orderLinkId: '', side,
        orderPrice: 0, orderQty: 0, leavesQty: 0, orderType: 'UNKNOWN', execPrice: mark, execQty: qty, execValue: qty * mark,
        execFee: -funding, feeRate: rate, feeCurrency: inst.settleCoin, isMaker: false, execTime: time, markPrice: mark, closedSize: 0, stopOrderType: '',
      });
      t.tx({
        uid: acc.uid, category: 'linear', symbol: p.symbol, side, transactionTime: time, type: 'SETTLEMENT',
        qty: Math.abs(p.size), size: p.size, currency: inst.settleCoin, tradePrice: mark, funding, fee: 0, cashFlow: 0, change: funding,
        cashBalance: wallet.wallet, feeRate: side === 'Buy' ? rate : -rate, tradeId: execId, orderId, orderLinkId: '',
      });
      t.position(acc.uid, key);
      t.wallet(acc.uid);
    }
  }
}
