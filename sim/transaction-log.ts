// The unified account's transaction log (GET /v5/account/transaction-log): one entry per wallet
// change, as Bybit writes them. A linear fill is one TRADE entry in the settle coin (cashFlow: the
// gross P&L of the part it closed, 0 when it opens; fee; change = cashFlow + funding - fee). A spot
// fill moves two coins, so it is two TRADE entries, one per currency: qty is the signed change of
// that currency and the fee sits on the coin it was charged in (the base coin for a buy, the quote
// coin for a sell). A funding settlement is a SETTLEMENT entry (funding > 0 received, < 0 paid;
// feeRate is the funding rate, negated for a short). A balance set through the admin API is a
// TRANSFER_IN / TRANSFER_OUT. cashBalance is the currency's wallet balance after the change.
// Field meanings: https://bybit-exchange.github.io/docs/v5/account/transaction-log
import { fix, trim } from './num.ts';

export type TxType = 'TRADE' | 'SETTLEMENT' | 'TRANSFER_IN' | 'TRANSFER_OUT';

export interface TxLogEntry {
  id: string;
  uid: string;
  /** '' for transfers. */
  category: '' | 'spot' | 'linear';
  symbol: string;
  side: 'Buy' | 'Sell' | 'None';
  transactionTime: number;
  type: TxType;
  /** Spot: signed change of this currency; linear: the fill's (or position's) quantity, unsigned. */
  qty: number;
  /** Linear: signed position size after the change; 0 otherwise. */
  size: number;
  currency: string;
  tradePrice: number;
  /** SETTLEMENT only (null prints ""): > 0 received, < 0 paid. */
  funding: number | null;
  /** > 0 paid. */
  fee: number;
  cashFlow: number;
  change: number;
  cashBalance: number;
  feeRate: number;
  tradeId: string;
  orderId: string;
  orderLinkId: string;
}

/** Item of /v5/account/transaction-log. */
export function txLogItem(e: TxLogEntry): Record<string, unknown> {
  return {
    id: e.id,
    symbol: e.symbol,
    category: e.category,
    side: e.side,
    transactionTime: String(e.transactionTime),
    type: e.type,
    transSubType: '',
    qty: trim(e.qty, 8),
    size: trim(e.size, 8),
    currency: e.currency,
    tradePrice: e.tradePrice === 0 ? '' : trim(e.tradePrice, 8),
    funding: e.funding === null ? '' : trim(e.funding, 8),
    fee: fix(e.fee, 8),
    cashFlow: trim(e.cashFlow, 8),
    change: trim(e.change, 8),
    cashBalance: trim(e.cashBalance, 8),
    feeRate: trim(e.feeRate, 8),
    bonusChange: '',
    tradeId: e.tradeId,
    orderId: e.orderId,
    orderLinkId: e.orderLinkId,
    extraFees: '',
  };
}
