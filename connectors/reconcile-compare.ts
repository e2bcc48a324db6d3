// The reconciler's comparison (pure): an order as PostgreSQL holds it against the exchange's, the
// kinds of discrepancy, and the report of one run.
import { Dec } from '../runtime/decimal.ts';
import type { ExchangeOrderUpdate } from '../schemas/types.ts';

export const DISCREPANCY_KINDS = [
  'missing_order', // at Bybit, not in PostgreSQL: emitted for adoption
  'status_mismatch', // different status (the exchange is ahead)
  'fill_mismatch', // different filled quantity
  'terms_mismatch', // a limit order's quantity or price differs (an amend the stream did not deliver)
  'stuck_in_flight', // local in-flight state beyond the threshold, resolved by query
  'not_at_exchange', // a local order Bybit does not know (reported Rejected when it is a lost create)
  'missing_execution', // a fill at Bybit with no executions row
  'position_mismatch',
  'balance_mismatch',
  'pnl_mismatch', // a linear symbol's net P&L of the day: the books against the exchange's transaction log (reported, not repaired)
] as const;
export type DiscrepancyKind = (typeof DISCREPANCY_KINDS)[number];

export const IN_FLIGHT = ['Intent', 'Submitted', 'PendingAmend', 'PendingCancel', 'Unknown'] as const;
/** Statuses of an order that still rests at the exchange (not risk-rules' OPEN_STATUSES, which adds our in-flight ones). */
export const EXCHANGE_OPEN_STATUSES = ['New', 'PartiallyFilled', 'Untriggered', 'Triggered'] as const;
export const EXCHANGE_OPEN_SET: ReadonlySet<string> = new Set(EXCHANGE_OPEN_STATUSES);

export interface LocalOrder {
  id: number;
  order_link_id: string | null;
  order_id: string | null;
  category: string;
  symbol: string;
  side: string;
  order_type: string;
  qty: string;
  price: string | null;
  market_unit: string | null;
  status: string;
  cum_exec_qty: string;
  last_exchange_update_ms: number | null;
  updated_at: number;
  submitted_at: number | null;
}

export const decEq = (a: string | null | undefined, b: string | null | undefined): boolean => {
  const x = Dec.maybe(a === '' ? '0' : (a ?? '0'));
  const y = Dec.maybe(b === '' ? '0' : (b ?? '0'));
  return x !== null && y !== null && x.cmp(y) === 0;
};

/**
 * What is wrong with the local row given the exchange's order, or null when they agree (or the
 * local state is legitimately ahead: a pending amend/cancel, a newer update already applied).
 */
export function compareOrder(local: LocalOrder | undefined, ex: ExchangeOrderUpdate): DiscrepancyKind | null {
  if (!local) return 'missing_order';
  if (local.last_exchange_update_ms !== null && ex.updatedTime < local.last_exchange_update_ms) return null;
  const fillsDiffer = !decEq(local.cum_exec_qty, ex.cumExecQty);
  // Market orders carry Bybit's protection price, and a quote-sized qty: only limit terms compare.
  const termsDiffer = ex.orderType === 'Limit' && (!decEq(local.qty, ex.qty) || !decEq(local.price, ex.price));
  if (local.status === ex.orderStatus) return fillsDiffer ? 'fill_mismatch' : termsDiffer ? 'terms_mismatch' : null;
  // A pending amend/cancel of an order still open at the exchange is the request in flight (the
  // stuck check covers the case where it never completes).
  if ((local.status === 'PendingAmend' || local.status === 'PendingCancel') && EXCHANGE_OPEN_SET.has(ex.orderStatus) && !fillsDiffer) return null;
  return 'status_mismatch';
}

export interface Discrepancy {
  kind: DiscrepancyKind;
  category: string;
  symbol: string;
  orderLinkId: string | null;
  orderId: string | null;
  local: string | null;
  exchange: string | null;
  corrected: boolean;
}

/**
 * One linear symbol's P&L of the UTC day (the report shows every symbol compared or skipped):
 * `exchange` is the sum of the transaction log's `change` over its TRADE and SETTLEMENT entries,
 * `booked` the books' realised - fees + funding (pnl_days, every strategy), `closedPnl` the sum of
 * the exchange's closed-P&L records (for information only: see reconciler.ts), `skipped` why the
 * symbol was not compared (null when it was).
 */
export interface PnlCheck {
  symbol: string;
  exchange: string;
  booked: string;
  closedPnl: string | null;
  skipped: string | null;
}

/** The exchange's net of the day per linear symbol, and the time of its latest entry. */
export function exchangeDayNet(entries: ReadonlyArray<Record<string, unknown>>): Map<string, { net: Dec; latest: number }> {
  const out = new Map<string, { net: Dec; latest: number }>();
  for (const e of entries) {
    // TRADE (cashFlow - fee) and SETTLEMENT (funding): what the books count. Transfers are not P&L.
    if (e.category !== 'linear' || (e.type !== 'TRADE' && e.type !== 'SETTLEMENT')) continue;
    const symbol = String(e.symbol ?? '');
    const change = Dec.maybe(String(e.change ?? ''));
    if (!symbol || change === null) continue;
    const cur = out.get(symbol) ?? { net: Dec.ZERO, latest: 0 };
    out.set(symbol, { net: cur.net.add(change), latest: Math.max(cur.latest, Number(e.transactionTime) || 0) });
  }
  return out;
}

/** A pnl_mismatch when the two figures differ by more than the tolerance. */
export const pnlDiffers = (exchange: Dec, booked: Dec, tolerance: Dec): boolean => exchange.sub(booked).abs().gt(tolerance);

export type ReconcileTrigger = 'startup' | 'schedule' | 'admin' | 'cli' | 'manual';

export interface ReconcileReport {
  trigger: ReconcileTrigger;
  startedAt: number;
  finishedAt: number;
  ok: boolean;
  error: string | null;
  checked: { openOrders: number; historyOrders: number; queried: number; localOrders: number; executions: number; positions: number; coins: number };
  discrepancies: Record<DiscrepancyKind, number>;
  corrections: { orders: number; executions: number; positions: number; wallet: number };
  /** The first discrepancies (MAX_DETAILS). */
  details: Discrepancy[];
  /** The P&L check of the UTC day `pnlDay` (linear symbols), empty when it did not run. */
  pnlDay: string | null;
  pnl: PnlCheck[];
}

export const MAX_DETAILS = 50;

export function emptyReport(trigger: ReconcileTrigger, startedAt: number): ReconcileReport {
  return {
    trigger,
    startedAt,
    finishedAt: startedAt,
    ok: false,
    error: null,
    checked: { openOrders: 0, historyOrders: 0, queried: 0, localOrders: 0, executions: 0, positions: 0, coins: 0 },
    discrepancies: Object.fromEntries(DISCREPANCY_KINDS.map((k) => [k, 0])) as Record<DiscrepancyKind, number>,
    corrections: { orders: 0, executions: 0, positions: 0, wallet: 0 },
    details: [],
    pnlDay: null,
    pnl: [],
  };
}

export const totalDiscrepancies = (r: ReconcileReport): number => Object.values(r.discrepancies).reduce((a, b) => a + b, 0);
export const totalCorrections = (r: ReconcileReport): number => Object.values(r.corrections).reduce((a, b) => a + b, 0);

/** The report as an aligned text table (the CLI prints it). */
export function formatReport(r: ReconcileReport): string {
  const lines: string[] = [];
  const row = (a: string, b: string | number) => lines.push(`  ${a.padEnd(28)} ${String(b).padStart(8)}`);
  lines.push(`reconciliation (${r.trigger}) ${new Date(r.startedAt).toISOString()}  ${r.finishedAt - r.startedAt} ms  ${r.ok ? 'OK' : `FAILED: ${r.error}`}`);
  lines.push('checked');
  row('open orders (realtime)', r.checked.openOrders);
  row('orders in history', r.checked.historyOrders);
  row('orders queried one by one', r.checked.queried);
  row('local orders compared', r.checked.localOrders);
  row('executions', r.checked.executions);
  row('positions', r.checked.positions);
  row('wallet coins', r.checked.coins);
  lines.push('discrepancies');
  for (const k of DISCREPANCY_KINDS) row(k, r.discrepancies[k]);
  row('total', totalDiscrepancies(r));
  lines.push('corrections emitted');
  row('exchange.orders', r.corrections.orders);
  row('exchange.executions', r.corrections.executions);
  row('exchange.positions', r.corrections.positions);
  row('exchange.wallet', r.corrections.wallet);
  if (r.pnl.length) {
    lines.push(`P&L of ${r.pnlDay ?? '?'} (linear; exchange: transaction log TRADE + SETTLEMENT; booked: realised - fees + funding; closed-pnl for information)`);
    for (const p of r.pnl) lines.push(`  ${p.symbol.padEnd(14)} exchange=${p.exchange} booked=${p.booked} closedPnl=${p.closedPnl ?? '-'}${p.skipped ? ` (skipped: ${p.skipped})` : ''}`);
  }
  if (r.details.length) {
    lines.push('details');
    for (const d of r.details) lines.push(`  ${d.kind.padEnd(18)} ${d.category}/${d.symbol} link=${d.orderLinkId ?? '-'} id=${d.orderId ?? '-'} local=${d.local ?? '-'} exchange=${d.exchange ?? '-'}${d.corrected ? ' (corrected)' : ''}`);
  }
  return lines.join('\n');
}
