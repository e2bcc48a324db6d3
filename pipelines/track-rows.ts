// The tracking stage's rows: what `load` reads from PostgreSQL (order rows with their signal context,
// events, execution sums, replayed records) and how an order row becomes a TrackedOrder again.
import { z } from 'zod';
import type { ExecSums } from './track-state.ts';
import { isOrderStatus, ZERO_FILLS, type Fills, type OrderStatus, type PartialSignalContext, type TrackedOrder } from './order-state.ts';

export const ctxSchema = z
  .object({
    signal_id: z.string().nullish(),
    strategy_id: z.string().nullish(),
    model_version: z.string().nullish(),
    is_warmup: z.boolean().nullish(),
    confidence: z.coerce.number().nullish(),
    trace_id: z.string().nullish(),
    snapshot_price: z.coerce.number().nullish(),
    signal_timestamp: z.coerce.number().nullish(),
  })
  .passthrough();

export const orderRow = z.object({
  id: z.number(),
  order_link_id: z.string().nullable(),
  order_id: z.string().nullable(),
  external: z.boolean(),
  category: z.string(),
  symbol: z.string(),
  side: z.string(),
  order_type: z.string(),
  qty: z.string(),
  price: z.string().nullable(),
  market_unit: z.string().nullable(),
  time_in_force: z.string().nullable(),
  reduce_only: z.boolean(),
  status: z.string(),
  cum_exec_qty: z.string(),
  cum_exec_value: z.string(),
  cum_exec_fee: z.string(),
  avg_price: z.string().nullable(),
  leaves_qty: z.string().nullable(),
  last_exchange_update_ms: z.number().nullable(),
  terms_update_ms: z.number().nullable(),
  submitted_at: z.number().nullable(),
  acknowledged_at: z.number().nullable(),
  first_fill_at: z.number().nullable(),
  final_at: z.number().nullable(),
  reject_ret_code: z.number().nullable(),
  reject_reason: z.string().nullable(),
  context: z.unknown(),
});
type OrderRow = z.infer<typeof orderRow>;

export const eventRow = z.object({ order_row_id: z.number(), event_id: z.string(), sequence: z.number(), status: z.string(), cause_id: z.string().nullable(), occurred_at: z.number() });
export const execSumRow = z.object({ order_id: z.string(), qty: z.string(), value: z.string(), fee: z.string(), fee_currency: z.string().nullable(), first_at: z.number().nullable() });
export const replayRow = z.object({ source_record: z.string(), payload: z.unknown() });
export const execIdRow = z.object({ exec_id: z.string() });

/**
 * The signal context the orders row holds: the intent's, stored by size/risk as it travelled (and
 * by every release since the first: the upgrade fixture's rows carry it whole). External orders
 * have none. Not rebuilt from the signals table: that would be a second source of the same fact.
 */
export function contextOf(r: OrderRow): PartialSignalContext {
  const parsed = ctxSchema.safeParse(r.context ?? {});
  const c = parsed.success ? parsed.data : {};
  return {
    signal_id: c.signal_id ?? null,
    strategy_id: c.strategy_id ?? null,
    model_version: c.model_version ?? null,
    is_warmup: c.is_warmup ?? null,
    confidence: c.confidence ?? null,
    trace_id: c.trace_id ?? null,
    snapshot_price: c.snapshot_price ?? null,
    signal_timestamp: c.signal_timestamp ?? null,
  };
}

/** Status the tracker starts from for a row it has emitted nothing for. */
export function initialStatus(r: OrderRow): OrderStatus {
  // Local statuses (and a Rejected the placement stage wrote) are the placement stage's facts:
  // the tracker reports them when their submission arrives here.
  if (r.status === 'Intent' || r.status === 'Submitted' || r.status === 'Unknown') return 'Intent';
  if (r.status === 'Rejected' && r.last_exchange_update_ms === null) return 'Intent';
  return isOrderStatus(r.status) ? r.status : 'Intent';
}

export function orderFromRow(r: OrderRow, events: z.infer<typeof eventRow>[], execs: ExecSums | undefined): TrackedOrder {
  const last = events.length ? events.reduce((a, b) => (b.sequence > a.sequence ? b : a)) : null;
  const status: OrderStatus = last && isOrderStatus(last.status) ? last.status : initialStatus(r);
  const cum: Fills = { qty: r.cum_exec_qty, value: r.cum_exec_value, fee: r.cum_exec_fee };
  return {
    rowId: r.id,
    orderLinkId: r.order_link_id,
    orderId: r.order_id,
    external: r.external,
    category: r.category,
    symbol: r.symbol,
    side: r.side,
    orderType: r.order_type,
    qty: r.qty,
    price: r.price,
    marketUnit: r.market_unit,
    timeInForce: r.time_in_force,
    reduceOnly: r.reduce_only,
    status,
    cum,
    execs: execs ? { qty: execs.qty, value: execs.value, fee: execs.fee } : { ...ZERO_FILLS },
    avgPrice: r.avg_price,
    leavesQty: r.leaves_qty,
    feeCurrency: execs?.feeCurrency ?? null,
    lastUpdateMs: r.last_exchange_update_ms,
    termsUpdateMs: r.terms_update_ms,
    submittedAt: r.submitted_at,
    acknowledgedAt: r.acknowledged_at,
    firstFillAt: r.first_fill_at,
    finalAt: r.final_at,
    rejectRetCode: r.reject_ret_code,
    rejectReason: r.reject_reason,
    context: contextOf(r),
    sequence: last?.sequence ?? 0,
    eventIds: new Set(events.map((e) => e.event_id)),
    pending:
      last && (status === 'PendingAmend' || status === 'PendingCancel') && last.cause_id
        ? { action: status === 'PendingAmend' ? 'amend' : 'cancel', intentId: last.cause_id, since: last.occurred_at }
        : null,
  };
}
