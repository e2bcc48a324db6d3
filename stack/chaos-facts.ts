// The facts the chaos run's checks (stack/chaos-checks.ts) are fed with, gathered once the flow has
// settled: the simulator's journal of the order requests its matching engine received (recorded by
// wrapping the in-process exchange, so it sees every create, amend and cancel whoever sent it, and
// whether it was executed or refused), its order list and executions, PostgreSQL's rows, and the
// pipeline topics read back.
import { z } from 'zod';
import { sql, type DatabasePool } from '../runtime/db.ts';
import type { Codec } from '../runtime/codec.ts';
import type { Exchange } from '../sim/exchange.ts';
import type { OrderEvent, OrderIntent, OrderSubmission, Signal } from '../schemas/types.ts';
import type { ExchangeCall, ExchangeOrder, IdRecord, PgEventFacts, PgOrder } from './chaos-checks.ts';
import { decodeAll, type ReadRecord } from './chaos-events.ts';

const str = (v: unknown): string | undefined => (v === undefined || v === null || v === '' ? undefined : String(v));

/**
 * Record every order request the exchange's matching engine gets (REST and direct), executed or
 * refused, in `calls`. Returns the function that undoes it.
 */
export function journalOrders(ex: Exchange, calls: ExchangeCall[]): () => void {
  const ops = { placeOrder: 'create', amendOrder: 'amend', cancelOrder: 'cancel' } as const;
  const originals: Array<() => void> = [];
  for (const [method, op] of Object.entries(ops) as Array<[keyof typeof ops, ExchangeCall['op']]>) {
    const original = ex[method].bind(ex) as (uid: string, p: Record<string, unknown>, ...rest: unknown[]) => { orderId: string; orderLinkId: string };
    const wrapped = (uid: string, p: Record<string, unknown>, ...rest: unknown[]) => {
      // An amend or cancel names only the order: the order's side, type and unchanged price come
      // from the exchange's own record of it, as it stood when the request arrived.
      const o = op === 'create' ? undefined : ex.findOrder(uid, { orderId: str(p.orderId), orderLinkId: str(p.orderLinkId) });
      const params = {
        symbol: String(p.symbol),
        side: str(p.side) ?? o?.side,
        orderType: str(p.orderType) ?? o?.orderType,
        qty: str(p.qty),
        price: str(p.price) ?? (o && o.price > 0 ? String(o.price) : undefined),
        marketUnit: str(p.marketUnit) ?? (o?.marketUnit || undefined),
        orderLinkId: str(p.orderLinkId) ?? (o?.orderLinkId || undefined),
        orderId: str(p.orderId) ?? o?.orderId,
      };
      const at = ex.now();
      try {
        const r = original(uid, p, ...rest);
        calls.push({ op, at, params, ok: true, retCode: null, orderId: r.orderId, orderLinkId: r.orderLinkId || null });
        return r;
      } catch (err) {
        const retCode = typeof (err as { retCode?: unknown }).retCode === 'number' ? (err as { retCode: number }).retCode : null;
        calls.push({ op, at, params, ok: false, retCode, orderId: null, orderLinkId: null });
        throw err;
      }
    };
    (ex as unknown as Record<string, unknown>)[method] = wrapped;
    originals.push(() => delete (ex as unknown as Record<string, unknown>)[method]);
  }
  return () => originals.forEach((f) => f());
}

/** The exchange's orders in the shape the checks take. */
export function exchangeOrders(orders: ReadonlyArray<Record<string, unknown>>): ExchangeOrder[] {
  return orders.map((o) => ({
    orderId: String(o.orderId),
    orderLinkId: String(o.orderLinkId ?? ''),
    symbol: String(o.symbol),
    side: String(o.side),
    orderType: String(o.orderType),
    orderStatus: String(o.orderStatus),
    qty: String(o.qty),
    price: String(o.price),
    cumExecQty: String(o.cumExecQty),
    cumExecFee: String(o.cumExecFee),
    avgPrice: String(o.avgPrice ?? ''),
  }));
}

/** execIds per orderId. */
export function execsByOrder(execs: ReadonlyArray<{ order_id: string; exec_id: string }>): Map<string, Set<string>> {
  const m = new Map<string, Set<string>>();
  for (const e of execs) m.set(e.order_id, (m.get(e.order_id) ?? new Set<string>()).add(e.exec_id));
  return m;
}

const decisionRow = z.object({ signal_id: z.string(), action: z.string(), order_link_id: z.string().nullable(), idempotency_key: z.string().nullable(), intent: z.unknown() });
const pgOrderRow = z.object({ order_link_id: z.string().nullable(), order_id: z.string().nullable(), status: z.string(), qty: z.string(), cum_exec_qty: z.string(), cum_exec_fee: z.string(), avg_price: z.string().nullable() });

export interface PgFacts {
  outcomes: Map<string, string | null>;
  /** Refused signals by their recorded reason (outcome_reason). */
  refusedBy: Record<string, number>;
  decisions: Array<z.infer<typeof decisionRow>>;
  /** Intents of the decisions (create / amend / cancel). */
  intents: OrderIntent[];
  orders: PgOrder[];
  executions: Array<{ order_id: string; exec_id: string }>;
  /** intent_ids that an order event from a submission names (cause_id): placement answered them. */
  answered: Set<string>;
}

/** What PostgreSQL holds about the run's signals and every order. */
export async function pgFacts(db: DatabasePool, signalIds: readonly string[]): Promise<PgFacts> {
  const ids = sql.array([...signalIds], 'uuid');
  const outcomes = await db.any(sql.type(z.object({ signal_id: z.string(), outcome: z.string().nullable(), outcome_reason: z.string().nullable() }))`SELECT signal_id::text, outcome, outcome_reason FROM signals WHERE signal_id = ANY(${ids})`);
  const refusedBy: Record<string, number> = {};
  for (const o of outcomes) if (o.outcome === 'rejected') refusedBy[o.outcome_reason ?? 'none'] = (refusedBy[o.outcome_reason ?? 'none'] ?? 0) + 1;
  const decisions = await db.any(sql.type(decisionRow)`
    SELECT signal_id::text, action, order_link_id, idempotency_key, output->'value' AS intent FROM decisions WHERE signal_id = ANY(${ids}) ORDER BY id`);
  const orders = await db.any(sql.type(pgOrderRow)`SELECT order_link_id, order_id, status, qty::text, cum_exec_qty::text, cum_exec_fee::text, avg_price::text FROM orders`);
  const executions = await db.any(sql.type(z.object({ order_id: z.string(), exec_id: z.string() }))`SELECT order_id, exec_id FROM executions`);
  const answered = await db.any(sql.type(z.object({ cause_id: z.string() }))`SELECT DISTINCT cause_id FROM order_events WHERE cause = 'submission' AND cause_id IS NOT NULL`);
  return {
    outcomes: new Map(outcomes.map((o) => [o.signal_id, o.outcome])),
    refusedBy,
    decisions: [...decisions],
    intents: decisions.filter((d) => d.action !== 'reject' && d.intent).map((d) => d.intent as OrderIntent),
    orders: [...orders],
    executions: [...executions],
    answered: new Set(answered.map((r) => r.cause_id)),
  };
}

/**
 * What PostgreSQL holds for the order-event checks: the events it recorded, the state history, the
 * orders' statuses and the signals' outcomes. Read once the writers have stopped, as the topics are.
 */
export async function pgEventFacts(db: DatabasePool, signalIds: readonly string[]): Promise<PgEventFacts> {
  const outcomes = await db.any(sql.type(z.object({ signal_id: z.string(), outcome: z.string().nullable() }))`SELECT signal_id::text, outcome FROM signals WHERE signal_id = ANY(${sql.array([...signalIds], 'uuid')})`);
  const emitted = await db.any(sql.type(z.object({ event_id: z.string(), order_link_id: z.string().nullable(), sequence: z.number() }))`SELECT event_id, order_link_id, sequence FROM order_events`);
  const history = await db.any(sql.type(z.object({ order_link_id: z.string().nullable(), to_status: z.string(), cause: z.string(), event_id: z.string().nullable() }))`
    SELECT order_link_id, to_status, cause, event_id FROM order_state_history`);
  const orders = await db.any(sql.type(z.object({ order_link_id: z.string(), status: z.string() }))`
    SELECT order_link_id, status FROM orders WHERE order_link_id IS NOT NULL AND status <> 'Intent'`);
  return {
    emitted,
    history,
    orders,
    rejectedSignals: outcomes.filter((o) => o.outcome === 'rejected').map((o) => o.signal_id),
    decidedSignals: outcomes.filter((o) => o.outcome !== null && o.outcome !== 'rejected').map((o) => o.signal_id),
  };
}

/** signals.valid, orders.intents and orders.submissions as (id, bytes) records for checkOneRecordPerId. */
export async function idRecords(codec: Codec, prefix: string, read: ReadonlyMap<string, ReadRecord[]>): Promise<{ records: IdRecord[]; submissions: OrderSubmission[] }> {
  const records: IdRecord[] = [];
  const t = { valid: `${prefix}signals.valid`, intents: `${prefix}orders.intents`, submissions: `${prefix}orders.submissions` };
  const rawOf = (topic: string) => read.get(topic) ?? [];
  // The value without its 5-byte wire header (magic byte + schema id): the same record written by
  // two schema registrations would still be the same record.
  const body = (b: Buffer) => b.subarray(5);
  const signals = await decodeAll<Signal>(codec, t.valid, rawOf(t.valid));
  signals.forEach((s, i) => records.push({ topic: 'signals.valid', id: s.signal_id, value: body(rawOf(t.valid)[i]!.value), at: rawOf(t.valid)[i]!.at }));
  const intents = await decodeAll<OrderIntent>(codec, t.intents, rawOf(t.intents));
  intents.forEach((x, i) => records.push({ topic: 'orders.intents', id: x.intent_id, value: body(rawOf(t.intents)[i]!.value), at: rawOf(t.intents)[i]!.at }));
  const submissions = await decodeAll<OrderSubmission>(codec, t.submissions, rawOf(t.submissions));
  submissions.forEach((x, i) => records.push({ topic: 'orders.submissions', id: x.intent_id, value: body(rawOf(t.submissions)[i]!.value), at: rawOf(t.submissions)[i]!.at }));
  return { records, submissions };
}

/** Decoded orders.events with where each was read. */
export async function orderEvents(codec: Codec, topic: string, records: readonly ReadRecord[]): Promise<{ events: OrderEvent[]; where: Map<OrderEvent, string> }> {
  const where = new Map<OrderEvent, string>();
  const events = await decodeAll<OrderEvent>(codec, topic, records, where);
  return { events, where };
}
