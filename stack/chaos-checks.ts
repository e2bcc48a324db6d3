// The invariants of the chaos run, as pure functions of facts gathered once the flow has settled
// (stack/chaos-facts.ts gathers them; tests/chaos/checks.test.ts feeds them crafted facts, so each
// check is shown to fail). Each problem is a loss, a duplicate or a shortfall:
//   - loss:      something that happened is missing where it must be (an outcome, an order row, an
//                event, a fill) or differs from the exchange;
//   - duplicate: something happened twice (an order for one signal, a decision, an event under two
//                ids, a record of one id with different contents);
//   - shortfall: the run did not exercise what it claims (too few orders, too many refusals, a
//                planned fault that was not injected): a run where nothing happens must not pass.
// Facts come from independent sources wherever possible: the publisher's own record of the signals
// it sent, the simulator's order list and its journal of the requests it executed or refused, the
// topics and the RabbitMQ queue as read back, and PostgreSQL.
import { Dec } from '../runtime/decimal.ts';
import type { OrderEvent } from '../schemas/types.ts';

export type ProblemKind = 'loss' | 'duplicate' | 'shortfall';

export interface Verdict {
  losses: number;
  duplicates: number;
  shortfalls: number;
  problems: string[];
}

export const emptyVerdict = (): Verdict => ({ losses: 0, duplicates: 0, shortfalls: 0, problems: [] });

const MAX_PROBLEM_LINES = 60;

export function note(v: Verdict, kind: ProblemKind, what: string): void {
  if (kind === 'loss') v.losses++;
  else if (kind === 'duplicate') v.duplicates++;
  else v.shortfalls++;
  if (v.problems.length < MAX_PROBLEM_LINES) v.problems.push(`${kind}: ${what}`);
}

export function merge(into: Verdict, ...from: Verdict[]): Verdict {
  for (const f of from) {
    into.losses += f.losses;
    into.duplicates += f.duplicates;
    into.shortfalls += f.shortfalls;
    for (const p of f.problems) if (into.problems.length < MAX_PROBLEM_LINES) into.problems.push(p);
  }
  return into;
}

// ---------------------------------------------------------------------------------------------
// Facts

/** A signal as the chaos publisher sent it (its own record, not the order manager's). */
export interface SentSignal {
  signalId: string;
  asset: string;
  side: 'buy' | 'sell';
  /** Quote amount (USDT); unique per asset and side within a run, see `amountsFor`. */
  amount: number;
}

/** A request the simulator's matching engine received (its journal), executed or refused. */
export interface ExchangeCall {
  op: 'create' | 'amend' | 'cancel';
  at: number;
  params: { symbol: string; side?: string; orderType?: string; qty?: string; price?: string; marketUnit?: string; orderLinkId?: string; orderId?: string };
  /** Executed (true) or refused with retCode. */
  ok: boolean;
  retCode: number | null;
  /** The order the request was about, as the exchange resolved it (executed requests). */
  orderId: string | null;
  orderLinkId: string | null;
}

/** An order as the exchange reports it (Bybit's REST shape, the fields the checks need). */
export interface ExchangeOrder {
  orderId: string;
  orderLinkId: string;
  symbol: string;
  side: string;
  orderType: string;
  orderStatus: string;
  qty: string;
  price: string;
  cumExecQty: string;
  cumExecFee: string;
  avgPrice: string;
}

export interface PgOrder {
  order_link_id: string | null;
  order_id: string | null;
  status: string;
  qty: string;
  cum_exec_qty: string;
  cum_exec_fee: string;
  avg_price: string | null;
}

/** Reference price and quantity step of a symbol, to turn a base quantity into its quote value. */
export interface SymbolRef {
  price: number;
  step: number;
}

// ---------------------------------------------------------------------------------------------
// Signals: one outcome each

export function checkOutcomes(signalIds: readonly string[], outcomes: ReadonlyMap<string, string | null>): Verdict {
  const v = emptyVerdict();
  const missing = signalIds.filter((id) => !outcomes.get(id));
  if (missing.length) note(v, 'loss', `${missing.length} signals without an outcome, e.g. ${missing.slice(0, 3).join(', ')}`);
  v.losses += Math.max(0, missing.length - 1); // one line, one loss per signal
  return v;
}

/**
 * Decisions per signal: either one refusal or one set of intents, never both, and never a second
 * create (a signal decided twice, e.g. by a fenced instance that woke up).
 */
export function checkDecisions(decisions: ReadonlyArray<{ signal_id: string; action: string; order_link_id: string | null; idempotency_key: string | null }>): Verdict {
  const v = emptyVerdict();
  const bySignal = new Map<string, typeof decisions[number][]>();
  for (const d of decisions) bySignal.set(d.signal_id, [...(bySignal.get(d.signal_id) ?? []), d]);
  for (const [s, ds] of bySignal) {
    const rejects = ds.filter((d) => d.action === 'reject').length;
    const creates = ds.filter((d) => d.action === 'create').length;
    if ((rejects > 0 && rejects < ds.length) || rejects > 1 || creates > 1) {
      note(v, 'duplicate', `signal ${s} decided more than once: ${ds.map((d) => `${d.action}${d.order_link_id ? ` ${d.order_link_id}` : ''} (${d.idempotency_key})`).join(', ')}`);
    }
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Orders at the exchange against the signals sent

/**
 * Quote amounts for a run's signals such that every executed create or amend can be traced back to
 * its signal from the exchange's own facts (symbol, side, quantity, price), whatever orderLinkId it
 * carries: within one asset and side no two amounts are closer than `spacing`, which is more than
 * twice the tolerance `tracedSignal` allows (a quantity step at the reference price plus 0.1 %).
 */
export function amountsFor(assetSide: string, counters: Map<string, number>, base = 20, spacing = 1): number {
  const k = counters.get(assetSide) ?? 0;
  counters.set(assetSide, k + 1);
  return base + k * spacing;
}

/** Quote value of an executed create or amend, from the exchange's view of it. */
export function quoteValueOf(c: Pick<ExchangeCall, 'params'>, ref: SymbolRef): number | null {
  const qty = Number(c.params.qty);
  if (!(qty > 0)) return null;
  if (c.params.marketUnit === 'quoteCoin') return qty;
  const price = c.params.orderType === 'Limit' && Number(c.params.price) > 0 ? Number(c.params.price) : ref.price;
  return qty * price;
}

/** The signals an executed create/amend can stand for: same asset and side, amount within tolerance. */
export function tracedSignals(c: ExchangeCall, bySymbolSide: ReadonlyMap<string, SentSignal[]>, ref: SymbolRef | undefined): SentSignal[] {
  if (!ref) return [];
  const value = quoteValueOf(c, ref);
  if (value === null) return [];
  const side = c.params.side === 'Buy' ? 'buy' : c.params.side === 'Sell' ? 'sell' : null;
  const candidates = bySymbolSide.get(`${c.params.symbol}|${side}`) ?? [];
  return candidates.filter((s) => Math.abs(s.amount - value) <= ref.step * ref.price + s.amount * 0.001);
}

/**
 * At most one executed create per signal at the exchange, whatever its orderLinkId, and none for a
 * signal the order manager refused; every executed create and amend is explained by a signal sent.
 * Creates and amends are told apart by the exchange's journal; an amend stands for the signal that
 * replaced the order's size (so it is traced like a create, but one signal may have both: a create
 * and, later, nothing else; or an amend only).
 */
export function checkOrdersPerSignal(sent: readonly SentSignal[], calls: readonly ExchangeCall[], refs: ReadonlyMap<string, SymbolRef>, refused: ReadonlySet<string>): Verdict & { traced: number } {
  const v = { ...emptyVerdict(), traced: 0 };
  const bySymbolSide = new Map<string, SentSignal[]>();
  for (const s of sent) bySymbolSide.set(`${s.asset}|${s.side}`, [...(bySymbolSide.get(`${s.asset}|${s.side}`) ?? []), s]);
  const used = new Map<string, ExchangeCall[]>();
  for (const c of calls) {
    if (!c.ok || (c.op !== 'create' && c.op !== 'amend')) continue;
    // An amend that leaves the size as it was (price only) stands for no new signal.
    if (c.op === 'amend' && !c.params.qty) continue;
    const ts = tracedSignals(c, bySymbolSide, refs.get(c.params.symbol));
    const what = `${c.op} ${c.params.symbol} ${c.params.side} ${c.params.orderType} qty ${c.params.qty}${c.params.price ? ` @ ${c.params.price}` : ''} (${c.orderLinkId ?? c.params.orderLinkId ?? c.orderId})`;
    if (ts.length === 0) {
      note(v, 'duplicate', `${what} executed at the exchange, but no signal sent explains it`);
      continue;
    }
    if (ts.length > 1) {
      note(v, 'shortfall', `${what} fits ${ts.length} signals (${ts.map((s) => s.amount).join(', ')}): amounts too close to tell`);
      continue;
    }
    const s = ts[0]!;
    v.traced++;
    used.set(s.signalId, [...(used.get(s.signalId) ?? []), c]);
    if (refused.has(s.signalId)) note(v, 'duplicate', `${what} executed for signal ${s.signalId} (${s.amount}), which the order manager refused`);
  }
  for (const [sid, cs] of used) {
    if (cs.length > 1) note(v, 'duplicate', `signal ${sid} executed ${cs.length} times at the exchange: ${cs.map((c) => `${c.op} ${c.orderLinkId ?? c.params.orderLinkId} qty ${c.params.qty} at ${c.at}`).join('; ')}`);
  }
  return v;
}

type AmendCancelIntent = { intent_id: string; action: string; order_link_id: string; target_order_id: string | null };

/** Whether an amend or cancel intent reached the exchange as a request (executed or refused there). */
function requestedAtExchange(calls: readonly ExchangeCall[], orderIdOf: ReadonlyMap<string, string>): (i: AmendCancelIntent) => boolean {
  const seen = new Set<string>();
  for (const c of calls) {
    if (c.op === 'create') continue;
    if (c.params.orderLinkId) seen.add(`${c.op}|link:${c.params.orderLinkId}`);
    if (c.params.orderId) seen.add(`${c.op}|id:${c.params.orderId}`);
    if (c.orderLinkId) seen.add(`${c.op}|link:${c.orderLinkId}`);
  }
  return (i) => {
    const id = i.target_order_id ?? orderIdOf.get(i.order_link_id);
    return seen.has(`${i.action}|link:${i.order_link_id}`) || (id !== undefined && id !== null && seen.has(`${i.action}|id:${id}`));
  };
}

/**
 * Every amend and cancel the order manager decided reached the exchange as a request (executed or
 * refused there), except amends that placement dropped because a newer intent superseded them.
 * `intents`: the decisions' intents; `orderIdOf`: the exchange's orderLinkId → orderId.
 */
export function checkAmendCancelVisible(
  intents: ReadonlyArray<AmendCancelIntent>,
  calls: readonly ExchangeCall[],
  superseded: ReadonlySet<string>,
  orderIdOf: ReadonlyMap<string, string>,
): Verdict & { amends: number; cancels: number; amendsSuperseded: number } {
  const v = { ...emptyVerdict(), amends: 0, cancels: 0, amendsSuperseded: 0 };
  const requested = requestedAtExchange(calls, orderIdOf);
  for (const i of intents) {
    if (i.action !== 'amend' && i.action !== 'cancel') continue;
    if (i.action === 'amend') v.amends++;
    else v.cancels++;
    if (requested(i)) continue;
    if (i.action === 'amend' && superseded.has(i.intent_id)) {
      v.amendsSuperseded++;
      continue;
    }
    note(v, 'loss', `${i.action} ${i.intent_id} of ${i.order_link_id} decided but never requested at the exchange`);
  }
  return v;
}

/**
 * The amend and cancel decisions placement has not dealt with yet: neither requested at the
 * exchange nor answered by an order event that names the intent (`answered`: the cause_id of
 * tracking's events from submissions, e.g. an amend refused as superseded). The settle point
 * waits for none: a decision is in PostgreSQL before its intent is committed to orders.intents,
 * so "every signal decided" alone can be true while placement has not yet read the last intents
 * (after a broker restart, say), and stopping the writers there would cut them off.
 */
export function amendsCancelsAwaiting(
  intents: ReadonlyArray<AmendCancelIntent>,
  calls: readonly ExchangeCall[],
  answered: ReadonlySet<string>,
  orderIdOf: ReadonlyMap<string, string>,
): string[] {
  const requested = requestedAtExchange(calls, orderIdOf);
  return intents.filter((i) => (i.action === 'amend' || i.action === 'cancel') && !requested(i) && !answered.has(i.intent_id)).map((i) => i.intent_id);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL against the exchange, order by order

const decEq = (a: string | null | undefined, b: string | null | undefined): boolean => {
  const x = Dec.maybe(a ?? null) ?? Dec.ZERO;
  const y = Dec.maybe(b ?? null) ?? Dec.ZERO;
  return x.cmp(y) === 0;
};
/** The simulator keeps money in doubles and prints 8 decimals: equal within its own rounding. */
const closeTo = (a: string | null | undefined, b: string | null | undefined, abs: number): boolean => Math.abs(Number(a || 0) - Number(b || 0)) <= abs;

/**
 * Every order at the exchange has its row in PostgreSQL with the same status, quantity, cumulative
 * filled quantity, average price and fees, and the same set of execIds; every row that says it is at
 * the exchange (an orderId, an exchange status) is there.
 */
export function checkOrdersAgree(
  pg: readonly PgOrder[],
  exchange: readonly ExchangeOrder[],
  pgExecs: ReadonlyMap<string, ReadonlySet<string>>,
  exExecs: ReadonlyMap<string, ReadonlySet<string>>,
): Verdict {
  const v = emptyVerdict();
  const byLink = new Map(pg.filter((r) => r.order_link_id).map((r) => [r.order_link_id!, r]));
  const byId = new Map(pg.filter((r) => r.order_id).map((r) => [r.order_id!, r]));
  const atExchange = new Set<string>();
  for (const o of exchange) {
    atExchange.add(o.orderId);
    const r = (o.orderLinkId ? byLink.get(o.orderLinkId) : undefined) ?? byId.get(o.orderId);
    const name = `order ${o.orderLinkId || o.orderId}`;
    if (!r) {
      note(v, 'loss', `${name} (${o.orderStatus}) is at the exchange but not in PostgreSQL`);
      continue;
    }
    const diffs: string[] = [];
    if (r.status !== o.orderStatus) diffs.push(`status ${r.status} ≠ ${o.orderStatus}`);
    if (!decEq(r.qty, o.qty)) diffs.push(`qty ${r.qty} ≠ ${o.qty}`);
    if (!decEq(r.cum_exec_qty, o.cumExecQty)) diffs.push(`cumExecQty ${r.cum_exec_qty} ≠ ${o.cumExecQty}`);
    const ex = exExecs.get(o.orderId) ?? new Set<string>();
    if (!closeTo(r.cum_exec_fee, o.cumExecFee, 1e-8 * (ex.size + 1))) diffs.push(`fees ${r.cum_exec_fee} ≠ ${o.cumExecFee}`);
    if (Number(o.cumExecQty) > 0 && !closeTo(r.avg_price, o.avgPrice, Math.max(1e-8, Number(o.avgPrice) * 1e-9))) diffs.push(`avgPrice ${r.avg_price} ≠ ${o.avgPrice}`);
    const mine = pgExecs.get(o.orderId) ?? new Set<string>();
    const missing = [...ex].filter((x) => !mine.has(x));
    const extra = [...mine].filter((x) => !ex.has(x));
    if (missing.length) diffs.push(`executions missing in PostgreSQL: ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` (+${missing.length - 3})` : ''}`);
    if (extra.length) diffs.push(`executions the exchange does not have: ${extra.slice(0, 3).join(', ')}`);
    if (diffs.length) note(v, 'loss', `${name}: PostgreSQL and the exchange disagree: ${diffs.join('; ')}`);
  }
  for (const r of pg) {
    if (r.order_id && !atExchange.has(r.order_id)) note(v, 'loss', `order ${r.order_link_id ?? r.order_id} (${r.status}) has orderId ${r.order_id} in PostgreSQL, which the exchange does not know`);
  }
  return v;
}

/** Every create the order manager decided reached the exchange, or the exchange (or placement) refused it. */
export function checkCreatesPlaced(createLinks: readonly string[], atExchange: ReadonlySet<string>, rejected: ReadonlySet<string>): Verdict {
  const v = emptyVerdict();
  const missing = createLinks.filter((l) => !atExchange.has(l) && !rejected.has(l));
  for (const l of missing.slice(0, 5)) note(v, 'loss', `create decision ${l} has no order at the exchange and was not refused`);
  v.losses += Math.max(0, missing.length - 5);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Topics: one record per id

/** A record of a pipeline topic: its id (signal_id, intent_id) and its value bytes. */
export interface IdRecord {
  topic: string;
  id: string;
  value: Buffer;
  at: string;
}

/** Each id once per topic; a repeat (replay, redelivery) must be byte-identical. */
export function checkOneRecordPerId(records: readonly IdRecord[]): Verdict & { repeats: number } {
  const v = { ...emptyVerdict(), repeats: 0 };
  const first = new Map<string, IdRecord>();
  for (const r of records) {
    const k = `${r.topic}|${r.id}`;
    const f = first.get(k);
    if (!f) {
      first.set(k, r);
      continue;
    }
    if (f.value.equals(r.value)) v.repeats++;
    else note(v, 'duplicate', `${r.topic} holds ${r.id} twice with different contents (at ${f.at} and ${r.at})`);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Order events: every state change on orders.events and on RabbitMQ, repeats only under one id

export interface PgEventFacts {
  /** order_events rows (what the tracker recorded as emitted). */
  emitted: ReadonlyArray<{ event_id: string; order_link_id: string | null; sequence: number }>;
  /** order_state_history rows. */
  history: ReadonlyArray<{ order_link_id: string | null; to_status: string; cause: string; event_id: string | null }>;
  /** Orders past Intent with their status. */
  orders: ReadonlyArray<{ order_link_id: string; status: string }>;
  /** Signals of the run refused by the order manager. */
  rejectedSignals: readonly string[];
  /** Signals of the run that became order decisions (create / amend / cancel). */
  decidedSignals: readonly string[];
}

/** Where an event was read, for problem lines. */
export type Where = ReadonlyMap<OrderEvent, string>;

export function checkOrderEvents(events: readonly OrderEvent[], queued: ReadonlyArray<Record<string, unknown>> | null, pg: PgEventFacts, where: Where = new Map()): Verdict & { repeats: number } {
  const v = { ...emptyVerdict(), repeats: 0 };
  const brief = (e: OrderEvent) => JSON.stringify({ at: where.get(e), id: e.event_id, type: e.event_type, from: e.previous_status, to: e.status, seq: e.sequence, source: e.source, filled: e.filled_qty, reason: e.reason_code, occurred: e.occurred_at });
  const byId = new Map<string, OrderEvent>();
  const bySeq = new Map<string, Set<string>>();
  const rejectedBySignal = new Map<string, Map<string, OrderEvent>>();
  const lastOfOrder = new Map<string, OrderEvent>();
  const statusesOfOrder = new Map<string, Set<string>>();
  for (const e of events) {
    if (byId.has(e.event_id)) v.repeats++;
    byId.set(e.event_id, e);
    if (e.event_type === 'signal_rejected') {
      if (e.signal_id) {
        const m = rejectedBySignal.get(e.signal_id) ?? new Map<string, OrderEvent>();
        m.set(e.event_id, e);
        rejectedBySignal.set(e.signal_id, m);
      }
      continue;
    }
    if (!e.order_link_id) continue;
    const k = `${e.order_link_id}#${e.sequence}`;
    bySeq.set(k, (bySeq.get(k) ?? new Set<string>()).add(e.event_id));
    const last = lastOfOrder.get(e.order_link_id);
    if (!last || (e.sequence ?? 0) > (last.sequence ?? 0)) lastOfOrder.set(e.order_link_id, e);
    if (e.status) statusesOfOrder.set(e.order_link_id, (statusesOfOrder.get(e.order_link_id) ?? new Set<string>()).add(e.status));
  }
  for (const [k, ids] of bySeq) {
    if (ids.size <= 1) continue;
    const link = k.split('#')[0]!;
    note(v, 'duplicate', `order event ${k} on the topic under ${ids.size} event_ids:\n    ${events.filter((e) => e.order_link_id === link).map(brief).join('\n    ')}`);
  }
  const decided = new Set(pg.decidedSignals);
  for (const [s, m] of rejectedBySignal) {
    if (m.size > 1) note(v, 'duplicate', `signal ${s} rejected under ${m.size} event_ids:\n    ${[...m.values()].map(brief).join('\n    ')}`);
    // A refusal of a signal that also became an order (e.g. a repeated delivery refused as a
    // duplicate after the first copy was decided) tells consumers the opposite of what happened.
    else if (decided.has(s)) note(v, 'duplicate', `signal ${s} became an order and was also reported rejected: ${[...m.values()].map(brief).join('; ')}`);
  }

  for (const r of pg.emitted) if (!byId.has(r.event_id)) note(v, 'loss', `order event ${r.event_id} (${r.order_link_id} #${r.sequence}) recorded in PostgreSQL but not on the topic`);
  for (const h of pg.history) {
    if (h.event_id && byId.has(h.event_id)) continue;
    if (h.order_link_id && statusesOfOrder.get(h.order_link_id)?.has(h.to_status)) continue;
    // The placement stage's own Intent → Submitted row: when the exchange's update overtook the
    // submission record, the tracker goes straight to New/Filled and never emits Submitted; the
    // change is then covered by the order's events (its final status is checked below).
    if (h.cause === 'submission' && h.to_status === 'Submitted' && h.order_link_id && lastOfOrder.has(h.order_link_id)) continue;
    note(v, 'loss', `state change of ${h.order_link_id} to ${h.to_status} (${h.cause}, ${h.event_id}) never reached the topic`);
  }
  for (const o of pg.orders) {
    const last = lastOfOrder.get(o.order_link_id);
    if (!last) note(v, 'loss', `order ${o.order_link_id} (${o.status}) has no event on the topic`);
    else if (last.status !== o.status) note(v, 'loss', `order ${o.order_link_id} is ${o.status} in PostgreSQL but its last event says ${last.status}`);
  }
  for (const s of pg.rejectedSignals) if (!rejectedBySignal.has(s)) note(v, 'loss', `rejected signal ${s} has no signal_rejected event`);

  if (queued) {
    const onQueue = new Map<string, number>();
    for (const q of queued) {
      const id = typeof q.event_id === 'string' ? q.event_id : null;
      if (!id) {
        note(v, 'loss', `unparseable message on the order events queue: ${JSON.stringify(q).slice(0, 120)}`);
        continue;
      }
      onQueue.set(id, (onQueue.get(id) ?? 0) + 1);
      if (!byId.has(id)) note(v, 'duplicate', `event ${id} on the order events queue but not on the topic: ${JSON.stringify(q).slice(0, 600)}`);
    }
    for (const id of byId.keys()) if (!onQueue.has(id)) note(v, 'loss', `event ${id} never reached the RabbitMQ order events queue`);
    v.repeats += [...onQueue.values()].reduce((a, n) => a + n - 1, 0);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// The run did something

export interface ActivityFacts {
  signals: number;
  /** Orders executed at the exchange (creates). */
  orders: number;
  refused: number;
  /** Refused signals by the reason PostgreSQL recorded (signals.outcome_reason), for the message. */
  refusedBy?: Readonly<Record<string, number>>;
  /** Fault kind → [planned, injected]. */
  faults: ReadonlyMap<string, readonly [number, number]>;
}

export interface ActivityBounds {
  /** Orders at the exchange must be at least max(1, ceil(share × signals)). */
  minOrderShare: number;
  /** Refused signals must be at most this share of the signals. */
  maxRefusedShare: number;
}

export const floorOf = (signals: number, b: ActivityBounds): number => Math.max(1, Math.ceil(b.minOrderShare * signals));

export function checkActivity(f: ActivityFacts, b: ActivityBounds): Verdict {
  const v = emptyVerdict();
  const floor = floorOf(f.signals, b);
  if (f.orders < floor) note(v, 'shortfall', `${f.orders} orders executed at the exchange, floor ${floor} (${b.minOrderShare} of ${f.signals} signals, at least 1)`);
  const share = f.signals > 0 ? f.refused / f.signals : 0;
  if (share > b.maxRefusedShare) note(v, 'shortfall', `${f.refused} of ${f.signals} signals refused (${(share * 100).toFixed(1)} %), bound ${(b.maxRefusedShare * 100).toFixed(1)} %${f.refusedBy ? `; by reason ${JSON.stringify(f.refusedBy)}` : ''}`);
  for (const [kind, [planned, injected]] of f.faults) {
    if (injected < planned) note(v, 'shortfall', `fault ${kind}: ${planned} planned, ${injected} injected`);
  }
  return v;
}
