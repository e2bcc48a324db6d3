// Placement stage: orders.intents (Avro OrderIntent) → orders.submissions (Avro OrderSubmission).
//
// The REST call is the edge, so it happens in `load` (house style 1): load sends the chunk's
// intents to Bybit, in order, and returns each one's outcome as the state; `process` is pure and
// maps an outcome to the submission record; `persist` records the submission facts of creates in
// `orders` (idempotent). The runner commits the submissions and the input offsets in one Kafka
// transaction after all that, so a crash before the commit re-reads the chunk and load runs again.
//
// No order twice. The orderLinkId of an intent is deterministic, so every attempt of every run
// sends the same one, and:
//   - Bybit's 110072 (duplicate orderLinkId) means "already placed": the order is looked up by its
//     orderLinkId and the outcome is `already_placed` with its orderId;
//   - a create is never sent a second time before a query of its orderLinkId (order/realtime, then
//     order/history) came back empty: an uncertain failure (timeout, reset, 5xx, server error) is
//     resolved by that query (found → `accepted`), and so is every other failure before a resend;
//   - an intent that is not sent (expired, superseded) is queried too when it is a create, since an
//     earlier run may have sent it before crashing: found → `already_placed`.
// Amend and cancel are safe to repeat: an amend that changes nothing (already applied) is
// `accepted`, and a cancel answered "order does not exist" is `accepted` when the order turns out
// to be cancelled, `rejected` otherwise (it filled first, or never existed).
//
// Outcomes: accepted (retCode 0, or resolved by query), already_placed (duplicate orderLinkId),
// rejected (Bybit's definite refusal with its retCode and message, or a local reason: expired,
// superseded, target_superseded, invalid_intent; retCode -1 for local ones). `unknown` is never
// written here: when retries run out the chunk is handed back to the runner as a RetriableError,
// nothing is committed, and the same intents are tried again later with the same orderLinkIds.
//
// Batches (PLACE_BATCH, default on). Intents that may go at once (see the placement order in
// load) and share a category and an action go in Bybit's batch requests (create-batch,
// amend-batch, cancel-batch; at most 10 spot / 20 linear orders, and no more than the rate budget
// of the batch endpoint, which counts orders). Each order's answer in the batch maps to the outcome
// the single request would have had: 0 → accepted, 110072 → query → already_placed, a refusal →
// rejected with its retCode. A batch request without a usable answer (timeout, reset, 5xx, refused
// as a whole) is uncertain for every order in it: each goes on along its single path, a create
// starting with the query of its orderLinkId, so none is sent again before it was looked for.
//
// Pressure. The client-side rate limiter (connectors/rate-limiter.ts) paces requests under Bybit's
// per-UID limits. Intents that queued up in Kafka arrive in one chunk; there, a newer create/amend
// for the same asset, strategy and side supersedes an older one not sent yet (rather than sending
// stale orders one after another). Cancels are never superseded. See `coalesce`.
import { z } from 'zod';
import { bool, emptyToUndefined, int } from '../runtime/setting-types.ts';
import type { Stage, StageRecord, StageResult } from './runner.ts';
import { ok } from './runner.ts';
import type { Clock } from '../runtime/clock.ts';
import { systemClock } from '../runtime/clock.ts';
import { sql, type DatabasePool, type CommonQueryMethods } from '../runtime/db.ts';
import { FatalError, RetriesExhaustedError } from '../runtime/errors.ts';
import type { Logger } from '../runtime/logger.ts';
import { retry } from '../runtime/retry.ts';
import { topicName } from '../runtime/topics.ts';
import { isPositiveDecimal, isStorableTime, ORDER_LINK_ID_RE, unstorableText, UUID_RE } from './record-guards.ts';
import type { OrderIntent, OrderSubmission, SubmissionOutcome } from '../schemas/types.ts';
import { AlreadyAppliedError, AlreadyPlacedError, BybitRejectedError, BybitRetriableError, escalate } from './exchange-port.ts';
import type { AmendParams, BatchItem, BatchPlacement, CreateOrderParams, FoundOrder, OrderPlacement, OrderRef } from './exchange-port.ts';
import { PLACEMENT_REASONS } from './placement-reasons.ts';

export const name = 'place';


/** The stage's settings (new in runtime/config.ts, except TOPIC_PREFIX). */
export const configSchema = z.object({
  TOPIC_PREFIX: z.preprocess(emptyToUndefined, z.string().regex(/^[a-zA-Z0-9._-]*$/).default('')),
  PLACE_RETRIES: z.preprocess(emptyToUndefined, int.min(0).max(100).default(5)).describe('Retries of one intent after a retriable Bybit error before the chunk is handed back to the runner (uncommitted) to be tried again later.'),
  PLACE_RETRY_MIN_MS: z.preprocess(emptyToUndefined, int.min(1).default(200)).describe('Smallest backoff between retries of one intent, ms (a rate-limit answer waits until its reset instead).'),
  PLACE_RETRY_MAX_MS: z.preprocess(emptyToUndefined, int.min(1).default(5000)).describe('Largest backoff between retries of one intent, ms.'),
  PLACE_COALESCE: z.preprocess(emptyToUndefined, bool.default(true)).describe('Coalesce intents queued in one chunk: a newer create/amend for the same asset, strategy and side supersedes an older unsent one (cancels are never dropped; the other side is another decision).'),
  PLACE_CONCURRENCY: z
    .preprocess(emptyToUndefined, int.min(1).max(64).default(8))
    .describe('Most symbols whose intents of one chunk are sent to Bybit at once.'),
  PLACE_BATCH: z
    .preprocess(emptyToUndefined, bool.default(true))
    .describe("Send a chunk's intents that may go at once as Bybit batch requests (create-batch, amend-batch, cancel-batch; per category, at most 10 spot / 20 linear orders and the rate budget per request) instead of one request each; false: one request per intent."),
  PLACE_SYMBOL_CONCURRENCY: z
    .preprocess(emptyToUndefined, int.min(1).max(64).default(4))
    .describe('Most creates of one symbol in flight at once, for consecutive creates of the same side that are not reduce-only; any other intent (amend, cancel, reduce-only, a side change) waits for every earlier one of its symbol and holds back the later ones. 1 = one after another.'),
});
export type PlaceConfig = z.output<typeof configSchema>;

export function parseConfig(env: Record<string, unknown> = process.env): PlaceConfig {
  return configSchema.parse(env);
}

/** Input and output record kinds (house style 8). */
export const inputSchema = { topic: 'orders.intents', record: 'OrderIntent' } as const;
export const outputSchemas = [
  { topic: 'orders.submissions', record: 'OrderSubmission' },
  { topic: 'orders.dlq', record: 'DeadLetter' },
] as const;


/** What happened to one intent at the exchange; `process` turns it into the submission. */
export interface Outcome {
  outcome: SubmissionOutcome;
  orderId: string | null;
  retCode: number;
  retMsg: string;
  reasonCode: string | null;
  /** REST requests sent for the intent, queries included. */
  attempts: number;
  sentAt: number;
  ackedAt: number | null;
}

export interface PlaceState {
  /** topic/partition/offset of the intent record → its outcome. */
  outcomes: ReadonlyMap<string, Outcome>;
}

export const sourceOf = (rec: Pick<StageRecord<unknown>, 'topic' | 'partition' | 'offset'>): string => `${rec.topic}/${rec.partition}/${rec.offset}`;

// ---------------------------------------------------------------------------------------------
// Pure parts

/** The submission record of an intent and its outcome. */
export function submissionOf(intent: OrderIntent, o: Outcome): OrderSubmission {
  return {
    intent_id: intent.intent_id,
    order_link_id: intent.order_link_id,
    action: intent.action,
    outcome: o.outcome,
    order_id: o.orderId,
    ret_code: o.retCode,
    ret_msg: o.retMsg,
    reason_code: o.reasonCode,
    attempts: o.attempts,
    sent_at: o.sentAt,
    acked_at: o.ackedAt,
    category: intent.category,
    symbol: intent.symbol,
    side: intent.side,
    order_type: intent.order_type,
    qty: intent.qty,
    price: intent.price,
    market_unit: intent.market_unit,
    signal: intent.signal,
  };
}

const assetKey = (i: OrderIntent): string => `${i.category}|${i.symbol}|${i.signal?.strategy_id ?? ''}|${i.side}`;

/**
 * Which intents of a chunk are superseded, and by what. Rules, for intents of one asset, strategy
 * and side (category + symbol + strategy_id + side) in chunk order:
 *   - a create or amend is superseded by any newer create or amend, except that an amend of the
 *     order a create places does not supersede that create (it is sent after it);
 *   - an amend of an order whose create is superseded is superseded too (target_superseded);
 *   - a cancel is never superseded.
 * The side is in the key: an order on the other side is another decision, not a newer version of
 * this one (a model's exit of an earlier entry, emitted with its next entry in the same moment,
 * used to drop that entry).
 */
export function coalesce(items: ReadonlyArray<{ source: string; intent: OrderIntent }>): Map<string, { reason: string; by: string }> {
  const out = new Map<string, { reason: string; by: string }>();
  const newest = new Map<string, OrderIntent>();
  for (let i = items.length - 1; i >= 0; i--) {
    const { source, intent } = items[i]!;
    if (intent.action === 'cancel') continue;
    const k = assetKey(intent);
    const n = newest.get(k);
    if (!n) {
      newest.set(k, intent);
      continue;
    }
    const amendsThisCreate = intent.action === 'create' && n.action === 'amend' && n.order_link_id === intent.order_link_id;
    if (!amendsThisCreate) out.set(source, { reason: PLACEMENT_REASONS.superseded, by: n.intent_id });
  }
  const supersededCreates = new Map<string, string>();
  for (const { source, intent } of items) {
    if (intent.action === 'create' && out.has(source)) supersededCreates.set(intent.order_link_id, intent.intent_id);
    else if (intent.action === 'amend' && !out.has(source) && supersededCreates.has(intent.order_link_id)) {
      out.set(source, { reason: PLACEMENT_REASONS.targetSuperseded, by: supersededCreates.get(intent.order_link_id)! });
    }
  }
  return out;
}

/** A positive number that is finite as a double ("1e400" is not: the exchange would only refuse it). */
const finitePositive = (v: string | null): boolean => v !== null && Number.isFinite(Number(v)) && Number(v) > 0;

/** A local refusal of an intent that cannot be sent as it is; null when it can. */
export function invalidReason(i: OrderIntent): string | null {
  if (!/^[A-Za-z0-9_-]{1,36}$/.test(i.order_link_id)) return `order_link_id ${JSON.stringify(i.order_link_id)} is not a Bybit orderLinkId`;
  if (i.action === 'create' && !finitePositive(i.qty)) return 'create without a positive finite qty';
  if (i.action === 'create' && i.order_type === 'Limit' && !finitePositive(i.price)) return 'limit create without a positive finite price';
  if (i.action === 'amend' && i.qty === null && i.price === null) return 'amend changes neither qty nor price';
  if (i.action === 'amend' && ((i.qty !== null && !finitePositive(i.qty)) || (i.price !== null && !finitePositive(i.price)))) return 'amend to a qty or price that is not a positive finite number';
  return null;
}

/**
 * Why the orders row of a create could not be stored, or null when it can: the orders table's
 * checks (orderLinkId, qty > 0, price > 0, a limit order's price), NUL or a lone surrogate in any
 * text (PostgreSQL refuses them), a signal id that is not a UUID, an expiry outside timestamptz.
 * Such a create is not sent (refused as invalid_intent, after a query in case an earlier run sent
 * it); its submission is the record of the refusal, and persist leaves it out rather than fail the
 * whole chunk.
 */
export function unstorableCreate(i: OrderIntent): string | null {
  if (!ORDER_LINK_ID_RE.test(i.order_link_id)) return `order_link_id ${JSON.stringify(i.order_link_id).slice(0, 60)} is not a Bybit orderLinkId`;
  if (!isPositiveDecimal(i.qty)) return `qty ${JSON.stringify(i.qty).slice(0, 60)} is not a positive decimal`;
  if (i.price !== null && !isPositiveDecimal(i.price)) return `price ${JSON.stringify(i.price).slice(0, 60)} is not a positive decimal`;
  if (i.order_type === 'Limit' && i.price === null) return 'limit order without a price';
  if (i.signal && !UUID_RE.test(i.signal.signal_id)) return `signal_id ${JSON.stringify(i.signal.signal_id).slice(0, 60)} is not a UUID`;
  if (i.expires_at !== null && !isStorableTime(i.expires_at)) return `expires_at ${i.expires_at} is not a storable time`;
  if (unstorableText(i)) return 'text with NUL or a lone surrogate';
  return null;
}

/** Intents past their expires_at are not sent. Cancels are never dropped, whatever they carry. */
export const isExpired = (i: OrderIntent, now: number): boolean => i.action !== 'cancel' && i.expires_at !== null && i.expires_at <= now;

const CANCELLED = new Set(['Cancelled', 'PartiallyFilledCanceled', 'Deactivated']);

// ---------------------------------------------------------------------------------------------
// The stage

export interface PlaceDeps {
  config: PlaceConfig;
  rest: OrderPlacement;
  /** For persist (submission facts in `orders`); without it persist does nothing. */
  db?: DatabasePool;
  clock?: Clock;
  logger?: Logger;
}

const MEMO_MAX = 10_000;

/**
 * One symbol's intents (in chunk order) cut into the groups that may be sent at once: maximal runs
 * of consecutive creates on one side that are not reduce-only; every other intent is a group of its
 * own. Groups go one after another (see the placement order in createPlaceStage). Returns indexes.
 */
export function commutingRuns(lane: ReadonlyArray<Pick<OrderIntent, 'action' | 'side' | 'reduce_only'>>): number[][] {
  const runs: number[][] = [];
  let open: { side: string; idx: number[] } | null = null;
  lane.forEach((i, k) => {
    if (i.action !== 'create' || i.reduce_only) {
      open = null;
      runs.push([k]);
    } else if (open && open.side === i.side) {
      open.idx.push(k);
    } else {
      open = { side: i.side, idx: [k] };
      runs.push(open.idx);
    }
  });
  return runs;
}

export function createPlaceStage(deps: PlaceDeps): Stage<OrderIntent, PlaceState> {
  const cfg = deps.config;
  const rest = deps.rest;
  const clock = deps.clock ?? systemClock;
  const log = deps.logger?.child({ stage: name });
  const topics = {
    intents: topicName('orders.intents', cfg.TOPIC_PREFIX),
    submissions: topicName('orders.submissions', cfg.TOPIC_PREFIX),
    dlq: topicName('orders.dlq', cfg.TOPIC_PREFIX),
  };
  // Definite outcomes of this process, so a chunk retried after a later intent's failure (or a
  // failed commit) does not ask the exchange again. Correctness never depends on it: a restarted
  // process has it empty and relies on orderLinkId queries and 110072 instead.
  const memo = new Map<string, Outcome>();
  const memoKey = (i: OrderIntent) => `${i.intent_id}|${i.action}|${i.order_link_id}`;
  const remember = (i: OrderIntent, o: Outcome) => {
    memo.set(memoKey(i), o);
    if (memo.size > MEMO_MAX) memo.delete(memo.keys().next().value!);
  };

  const refOf = (i: OrderIntent): OrderRef =>
    i.action !== 'create' && i.target_order_id ? { category: i.category, symbol: i.symbol, orderId: i.target_order_id } : { category: i.category, symbol: i.symbol, orderLinkId: i.order_link_id };

  /**
   * Run `attempt` with the one retry helper; exhausted retries become the runner's problem. Each
   * attempt first makes sure this instance still owns the intent's partition (`stillOwner` from the
   * runner): one frozen past its session timeout, whose partition another instance took over, must
   * not call the exchange when it wakes up (it throws PartitionLostError, which is not retried).
   */
  type Owner = (() => Promise<void>) | undefined;
  const withRetry = async <T>(i: OrderIntent, owner: Owner, attempt: (n: number) => Promise<T>): Promise<T> => {
    try {
      return await retry(async (n) => {
        await owner?.();
        return attempt(n);
      }, {
        retries: cfg.PLACE_RETRIES,
        minMs: cfg.PLACE_RETRY_MIN_MS,
        maxMs: cfg.PLACE_RETRY_MAX_MS,
        onRetry: (err, n, delayMs) =>
          log?.warn({ intent_id: i.intent_id, order_link_id: i.order_link_id, action: i.action, attempt: n, delayMs, code: (err as BybitRetriableError).code, uncertain: (err as BybitRetriableError).uncertain }, 'bybit request failed; retrying'),
      });
    } catch (err) {
      if (err instanceof RetriesExhaustedError) throw escalate(err);
      throw err;
    }
  };

  const rejectedBy = (e: BybitRejectedError, base: { attempts: number; sentAt: number }, orderId: string | null = null): Outcome => ({
    outcome: 'rejected',
    orderId,
    retCode: e.retCode,
    retMsg: e.retMsg,
    reasonCode: e.code,
    attempts: base.attempts,
    sentAt: base.sentAt,
    ackedAt: clock.now(),
  });

  const localReject = (reasonCode: string, retMsg: string, attempts = 0): Outcome => {
    const now = clock.now();
    return { outcome: 'rejected', orderId: null, retCode: -1, retMsg, reasonCode, attempts, sentAt: now, ackedAt: now };
  };

  /**
   * After a batch request carried the intent (`prior`): what it cost, and whether its answer said
   * 110072. Any other prior send is uncertain for this path: the first attempt queries first.
   */
  type Prior = { attempts: number; sentAt: number; duplicate?: boolean };

  const create = async (i: OrderIntent, owner: Owner, prior?: Prior): Promise<Outcome> => {
    const st = { attempts: prior?.attempts ?? 0, sentAt: prior?.sentAt ?? 0 };
    let duplicate = prior?.duplicate ?? false;
    const resolved = (f: FoundOrder): Outcome => ({
      outcome: duplicate ? 'already_placed' : 'accepted',
      orderId: f.orderId,
      retCode: duplicate ? 110072 : 0,
      retMsg: duplicate ? 'OrderLinkedID is duplicate' : `found by orderLinkId in order/${f.source} (${f.orderStatus})`,
      reasonCode: duplicate ? null : PLACEMENT_REASONS.resolvedByQuery,
      attempts: st.attempts,
      sentAt: st.sentAt,
      ackedAt: clock.now(),
    });
    const query = async (): Promise<FoundOrder | null> => {
      st.attempts += 1;
      return rest.findOrder({ category: i.category, symbol: i.symbol, orderLinkId: i.order_link_id });
    };
    return withRetry(i, owner, async (n) => {
      // Never a second create for this orderLinkId without a query in between (a batch that
      // carried it counts as a first create).
      if (n > 0 || duplicate || prior) {
        const f = await query();
        if (f) return resolved(f);
        if (duplicate) {
          // Bybit says it exists but neither list shows it (e.g. another category): still placed.
          return { outcome: 'already_placed', orderId: null, retCode: 110072, retMsg: 'OrderLinkedID is duplicate (order not found by query)', reasonCode: null, attempts: st.attempts, sentAt: st.sentAt, ackedAt: clock.now() };
        }
      }
      if (st.sentAt === 0) st.sentAt = clock.now();
      st.attempts += 1;
      try {
        const ack = await rest.createOrder(createParams(i));
        return { outcome: 'accepted', orderId: ack.result.orderId, retCode: ack.retCode, retMsg: ack.retMsg, reasonCode: null, attempts: st.attempts, sentAt: st.sentAt, ackedAt: ack.ackedAt };
      } catch (e) {
        if (e instanceof AlreadyPlacedError) {
          duplicate = true;
          const f = await query();
          if (f) return resolved(f);
          return { outcome: 'already_placed', orderId: null, retCode: e.retCode, retMsg: e.retMsg, reasonCode: null, attempts: st.attempts, sentAt: st.sentAt, ackedAt: clock.now() };
        }
        if (e instanceof BybitRejectedError) return rejectedBy(e, st);
        throw e;
      }
    });
  };

  const amend = async (i: OrderIntent, owner: Owner, prior?: Prior): Promise<Outcome> => {
    const st = { attempts: prior?.attempts ?? 0, sentAt: prior?.sentAt ?? 0 };
    return withRetry(i, owner, async () => {
      if (st.sentAt === 0) st.sentAt = clock.now();
      st.attempts += 1;
      try {
        const ack = await rest.amendOrder(amendParams(i));
        return { outcome: 'accepted', orderId: ack.result.orderId, retCode: ack.retCode, retMsg: ack.retMsg, reasonCode: null, attempts: st.attempts, sentAt: st.sentAt, ackedAt: ack.ackedAt };
      } catch (e) {
        // Sent before (an answer lost, or a run that crashed before its commit): already in effect.
        if (e instanceof AlreadyAppliedError) return { outcome: 'accepted', orderId: i.target_order_id, retCode: e.retCode, retMsg: e.retMsg, reasonCode: PLACEMENT_REASONS.alreadyApplied, attempts: st.attempts, sentAt: st.sentAt, ackedAt: clock.now() };
        if (e instanceof BybitRejectedError) return rejectedBy(e, st, i.target_order_id);
        throw e;
      }
    });
  };

  /** A cancel Bybit refused: "order does not exist" is looked into (cancelled already → accepted). */
  const cancelRefused = async (i: OrderIntent, e: BybitRejectedError, st: { attempts: number; sentAt: number }): Promise<Outcome> => {
    if (e.code === 'order_not_exists') {
      // Not open any more: cancelled already (an earlier attempt, or someone else), or filled.
      st.attempts += 1;
      const f = await rest.findOrder(refOf(i));
      if (f && CANCELLED.has(f.orderStatus)) return { outcome: 'accepted', orderId: f.orderId, retCode: e.retCode, retMsg: e.retMsg, reasonCode: PLACEMENT_REASONS.alreadyCancelled, attempts: st.attempts, sentAt: st.sentAt, ackedAt: clock.now() };
      return rejectedBy(e, st, f?.orderId ?? i.target_order_id);
    }
    return rejectedBy(e, st, i.target_order_id);
  };

  const cancel = async (i: OrderIntent, owner: Owner, prior?: Prior): Promise<Outcome> => {
    const st = { attempts: prior?.attempts ?? 0, sentAt: prior?.sentAt ?? 0 };
    return withRetry(i, owner, async () => {
      if (st.sentAt === 0) st.sentAt = clock.now();
      st.attempts += 1;
      try {
        const ack = await rest.cancelOrder(refOf(i));
        return { outcome: 'accepted', orderId: ack.result.orderId, retCode: ack.retCode, retMsg: ack.retMsg, reasonCode: null, attempts: st.attempts, sentAt: st.sentAt, ackedAt: ack.ackedAt };
      } catch (e) {
        if (e instanceof BybitRejectedError) return cancelRefused(i, e, st);
        throw e;
      }
    });
  };

  const createParams = (i: OrderIntent): CreateOrderParams => ({
    category: i.category,
    symbol: i.symbol,
    side: i.side,
    orderType: i.order_type,
    qty: i.qty!,
    ...(i.order_type === 'Limit' && i.price !== null ? { price: i.price } : {}),
    ...(i.market_unit !== null ? { marketUnit: i.market_unit } : {}),
    timeInForce: i.time_in_force,
    reduceOnly: i.reduce_only,
    orderLinkId: i.order_link_id,
  });
  const amendParams = (i: OrderIntent): AmendParams => ({ ...refOf(i), ...(i.qty !== null ? { qty: i.qty } : {}), ...(i.price !== null ? { price: i.price } : {}) });

  /**
   * One intent's answer inside a batch, mapped to the outcome the single request would have had.
   * Whatever the single path would have retried (a per-order 10006 or server error) goes on along
   * that path, whose first step for a create is the query of its orderLinkId.
   */
  const settleBatchItem = async (i: OrderIntent, owner: Owner, item: BatchItem, sentAt: number): Promise<Outcome> => {
    const st = { attempts: 1, sentAt };
    if (item.ok) return { outcome: 'accepted', orderId: item.ack.result.orderId, retCode: item.ack.retCode, retMsg: item.ack.retMsg, reasonCode: null, attempts: 1, sentAt, ackedAt: item.ack.ackedAt };
    const e = item.error;
    if (i.action === 'create') {
      if (e instanceof AlreadyPlacedError) return create(i, owner, { ...st, duplicate: true });
      if (e instanceof BybitRejectedError) return rejectedBy(e, st);
      if (e instanceof BybitRetriableError) return create(i, owner, st);
      throw e;
    }
    if (i.action === 'amend') {
      if (e instanceof AlreadyAppliedError) return { outcome: 'accepted', orderId: i.target_order_id, retCode: e.retCode, retMsg: e.retMsg, reasonCode: PLACEMENT_REASONS.alreadyApplied, attempts: 1, sentAt, ackedAt: clock.now() };
      if (e instanceof BybitRejectedError) return rejectedBy(e, st, i.target_order_id);
      if (e instanceof BybitRetriableError) return amend(i, owner, st);
      throw e;
    }
    if (e instanceof BybitRejectedError) return cancelRefused(i, e, st);
    if (e instanceof BybitRetriableError) return cancel(i, owner, st);
    throw e;
  };

  /**
   * Intents of one category and action in batch requests of at most the adapter's limit. A batch
   * request that fails as a whole (timeout, reset, 5xx, refused) leaves every intent in it
   * uncertain: each goes on along its single path, a create with the query of its orderLinkId
   * before anything is sent again. The partition-ownership check runs before every request.
   */
  const sendBatches = async (batch: BatchPlacement, action: 'create' | 'amend' | 'cancel', category: OrderIntent['category'], recs: StageRecord<OrderIntent>[], owner: Owner, out: Map<string, Outcome>): Promise<void> => {
    const size = Math.max(1, batch.limit(category, action));
    const parts: StageRecord<OrderIntent>[][] = [];
    for (let k = 0; k < recs.length; k += size) parts.push(recs.slice(k, k + size));
    // Every part runs to its end before a failure goes up, so nothing is still in flight when the
    // runner retries the chunk.
    const settled = await Promise.allSettled(
      parts.map(async (part) => {
        const intents = part.map((r) => r.value);
        const sentAt = clock.now();
        let items: BatchItem[] | null = null;
        try {
          // A batch that certainly did not run (a 10006, a timestamp refusal, not sent at all) is
          // sent again as it is, after the wait the answer asks for; anything uncertain is not.
          items = await retry(
            async () => {
              await owner?.();
              return action === 'create' ? batch.createOrders(category, intents.map(createParams)) : action === 'amend' ? batch.amendOrders(category, intents.map(amendParams)) : batch.cancelOrders(category, intents.map(refOf));
            },
            {
              retries: cfg.PLACE_RETRIES,
              minMs: cfg.PLACE_RETRY_MIN_MS,
              maxMs: cfg.PLACE_RETRY_MAX_MS,
              isRetriable: (e) => e instanceof BybitRetriableError && !e.uncertain,
              onRetry: (err, n, delayMs) => log?.warn({ action, category, orders: part.length, attempt: n, delayMs, code: (err as BybitRetriableError).code }, 'batch request not executed; sending it again'),
            },
          );
        } catch (caught) {
          const err = caught instanceof RetriesExhaustedError ? caught.cause : caught;
          if (!(err instanceof BybitRetriableError || err instanceof BybitRejectedError)) throw err;
          log?.warn({ action, category, orders: part.length, code: err.code, uncertain: err.uncertain }, 'batch request failed; each order goes on alone (creates are queried first)');
        }
        for (const [k, rec] of part.entries()) {
          const i = rec.value;
          const prior = { attempts: 1, sentAt };
          const o = items ? await settleBatchItem(i, owner, items[k]!, sentAt) : i.action === 'create' ? await create(i, owner, prior) : i.action === 'amend' ? await amend(i, owner, prior) : await cancel(i, owner, prior);
          out.set(sourceOf(rec), o);
        }
      }),
    );
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  };

  /** An intent that is not sent. A create may have been sent by an earlier run: ask first. */
  const notSent = async (i: OrderIntent, owner: Owner, reasonCode: string, detail: string): Promise<Outcome> => {
    if (i.action !== 'create') return localReject(reasonCode, detail);
    let attempts = 0;
    const f = await withRetry(i, owner, async () => {
      attempts += 1;
      return rest.findOrder({ category: i.category, symbol: i.symbol, orderLinkId: i.order_link_id });
    });
    if (!f) return localReject(reasonCode, detail, attempts);
    const now = clock.now();
    return { outcome: 'already_placed', orderId: f.orderId, retCode: 0, retMsg: `placed by an earlier attempt (${f.orderStatus}); not sent again`, reasonCode: null, attempts, sentAt: now, ackedAt: now };
  };

  // Different symbols go to the exchange in parallel, at most PLACE_CONCURRENCY at once. Within a
  // symbol, chunk order holds wherever it can matter: an amend or cancel goes after every earlier
  // intent of its symbol (the create it targets among them) and before every later one; so do a
  // reduce-only create (it needs the position the earlier ones open) and a create whose side
  // differs from the one before it (a spot sell of what a buy bought). What is left are runs of
  // consecutive creates on one side, which commute: risk has already reserved every one of them,
  // so none can make another unaffordable; those go PLACE_SYMBOL_CONCURRENCY at a time (the
  // placement hop was the slowest of the pipeline when they went one by one). Idempotency does not
  // depend on any of this: each intent still has its deterministic orderLinkId, query-before-resend
  // and the memo, exactly as when sent one by one. With batches, the same groups go in waves across
  // symbols (below).
  const load = async (records: StageRecord<OrderIntent>[], owner?: () => Promise<void>): Promise<PlaceState> => {
    const now = clock.now();
    // Each intent checked once: why it cannot be sent at all, or why no orders row could hold it.
    const refused = new Map(
      records.map((r) => {
        const invalid = invalidReason(r.value);
        return [r, { invalid, unrecordable: invalid || r.value.action !== 'create' ? null : unstorableCreate(r.value) }] as const;
      }),
    );
    // Only intents that could be sent take part: a newer create that is refused anyway must not
    // supersede an older valid one, which would then never go.
    const sendable = records.filter((r) => !refused.get(r)!.invalid && !refused.get(r)!.unrecordable);
    const superseded = cfg.PLACE_COALESCE ? coalesce(sendable.map((r) => ({ source: sourceOf(r), intent: r.value }))) : new Map<string, { reason: string; by: string }>();
    const outcomes = new Map<string, Outcome>();
    // Outcomes of intents a batch request carried (by source record), taken up by `one` below.
    const batched = new Map<string, Outcome>();
    const one = async (rec: StageRecord<OrderIntent>): Promise<void> => {
      const i = rec.value;
      const src = sourceOf(rec);
      let o = memo.get(memoKey(i));
      if (!o) {
        const sup = superseded.get(src);
        const { invalid, unrecordable } = refused.get(rec)!;
        const viaBatch = batched.get(src);
        if (viaBatch) o = viaBatch;
        else if (invalid) o = localReject(PLACEMENT_REASONS.invalidIntent, invalid);
        // An order that could not be recorded in `orders` is not sent (risk would not see it); an
        // earlier run may have sent it, so ask first, like any create that is not sent.
        else if (unrecordable) o = await notSent(i, owner, PLACEMENT_REASONS.invalidIntent, `${unrecordable}: the order could not be recorded, not sent`);
        else if (sup) o = await notSent(i, owner, sup.reason, `superseded by intent ${sup.by}`);
        else if (isExpired(i, now)) o = await notSent(i, owner, PLACEMENT_REASONS.expired, `intent expired at ${new Date(i.expires_at!).toISOString()} before it was sent`);
        else o = i.action === 'create' ? await create(i, owner) : i.action === 'amend' ? await amend(i, owner) : await cancel(i, owner);
        remember(i, o);
        log?.info({ intent_id: i.intent_id, order_link_id: i.order_link_id, action: i.action, symbol: i.symbol, outcome: o.outcome, order_id: o.orderId, ret_code: o.retCode, reason_code: o.reasonCode, attempts: o.attempts, source: src, batch: viaBatch !== undefined }, 'intent placed');
      }
      outcomes.set(src, o);
    };
    const lanes = new Map<string, StageRecord<OrderIntent>[]>();
    for (const rec of records) {
      const lane = lanes.get(rec.value.symbol) ?? [];
      lane.push(rec);
      lanes.set(rec.value.symbol, lane);
    }
    // A failure (retries exhausted, fatal) stops every lane before its next intent; the lanes in
    // flight finish their current intent (its outcome is remembered), then the first error goes to
    // the runner, which retries the chunk: nothing is sent twice without a query in between.
    let failure: { err: unknown } | null = null;
    const queue = [...lanes.values()];
    const attempt = async (rec: StageRecord<OrderIntent>): Promise<void> => {
      if (failure) return;
      try {
        await one(rec);
      } catch (err) {
        failure ??= { err };
      }
    };
    const runGroup = async (group: StageRecord<OrderIntent>[]): Promise<void> => {
      const recs = [...group];
      const next = () => recs.shift();
      await Promise.all(
        Array.from({ length: Math.min(cfg.PLACE_SYMBOL_CONCURRENCY, recs.length) }, async () => {
          for (let rec = next(); rec && !failure; rec = next()) await attempt(rec);
        }),
      );
    };
    const batch = cfg.PLACE_BATCH ? rest.batch : undefined;
    if (!batch) {
      const worker = async (): Promise<void> => {
        for (let lane = queue.shift(); lane; lane = queue.shift()) {
          for (const group of commutingRuns(lane.map((r) => r.value))) {
            await runGroup(group.map((k) => lane[k]!));
            if (failure) return;
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(cfg.PLACE_CONCURRENCY, queue.length) }, worker));
    } else {
      // Batches. The groups of every symbol go in waves: wave k holds the k-th group of each
      // symbol, and starts when wave k-1 has ended, so an intent still waits for every earlier one
      // of its symbol (an amend or cancel never overtakes the create it targets) while the intents
      // of one wave, which commute, share batch requests across symbols. In a wave, the intents
      // that go to the exchange as they are (not remembered, refused, superseded or expired) are
      // sent per category and action in batches; a lone one goes as a single request, and the
      // rest of the wave takes the path above (those already batched just pick up their outcome).
      const waves: StageRecord<OrderIntent>[][][] = [];
      for (const lane of queue) {
        commutingRuns(lane.map((r) => r.value)).forEach((group, w) => (waves[w] ??= []).push(group.map((k) => lane[k]!)));
      }
      for (const wave of waves) {
        const sendable = new Map<string, StageRecord<OrderIntent>[]>();
        for (const rec of wave.flat()) {
          const i = rec.value;
          const { invalid, unrecordable } = refused.get(rec)!;
          if (memo.has(memoKey(i)) || invalid || unrecordable || superseded.has(sourceOf(rec)) || isExpired(i, now)) continue;
          const k = `${i.category}|${i.action}`;
          sendable.set(k, [...(sendable.get(k) ?? []), rec]);
        }
        const sent = await Promise.allSettled(
          [...sendable.values()].filter((xs) => xs.length > 1).map((xs) => sendBatches(batch, xs[0]!.value.action, xs[0]!.value.category, xs, owner, batched)),
        );
        const failed = sent.find((r) => r.status === 'rejected');
        if (failed) failure ??= { err: (failed as PromiseRejectedResult).reason };
        if (failure) break;
        const groups = [...wave];
        const worker = async (): Promise<void> => {
          for (let g = groups.shift(); g && !failure; g = groups.shift()) await runGroup(g);
        };
        await Promise.all(Array.from({ length: Math.min(cfg.PLACE_CONCURRENCY, groups.length) }, worker));
        if (failure) break;
      }
      // Outcomes of intents a batch settled before a failure stopped the chunk: remembered, so the
      // retry of the chunk does not ask the exchange about them again.
      if (failure) for (const rec of records) if (batched.has(sourceOf(rec)) && !memo.has(memoKey(rec.value))) remember(rec.value, batched.get(sourceOf(rec))!);
    }
    if (failure) throw (failure as { err: unknown }).err;
    return { outcomes };
  };

  const processRecord = (rec: StageRecord<OrderIntent>, { state }: { state: PlaceState }): StageResult => {
    const o = state.outcomes.get(sourceOf(rec));
    // load gives every decoded record an outcome; a missing one is a bug, not bad data.
    if (!o) throw new FatalError('placement_invariant', `no outcome loaded for ${sourceOf(rec)}`);
    const i = rec.value;
    return ok({ topic: topics.submissions, key: rec.key ?? i.symbol, value: submissionOf(i, o), headers: { intent_id: i.intent_id, order_link_id: i.order_link_id, outcome: o.outcome } });
  };

  const persist = async (items: Array<{ rec: StageRecord<OrderIntent>; result: StageResult }>, state: PlaceState): Promise<void> => {
    if (!deps.db) return;
    const creates = items
      .map(({ rec }) => ({ i: rec.value, o: state.outcomes.get(sourceOf(rec)), src: sourceOf(rec) }))
      .filter((x) => {
        if (x.i.action !== 'create' || !x.o) return false;
        const bad = unstorableCreate(x.i);
        if (!bad) return true;
        // Refused (its submission says why) and nothing an orders row could hold: not recorded.
        if (x.o.outcome === 'accepted' || x.o.outcome === 'already_placed') log?.error({ intent_id: x.i.intent_id, source: x.src, outcome: x.o.outcome, order_id: x.o.orderId, why: bad }, 'placed create cannot be recorded in orders');
        return false;
      });
    if (creates.length === 0) return;
    await recordSubmissions(
      deps.db,
      creates.map(({ i, o }) => ({ i, o: o! })),
    );
  };

  // A submission that cannot be recorded is an order at the exchange that PostgreSQL does not hold
  // as sent (e.g. an orderId another row already has): risk would decide on a wrong book, so halt.
  // eagerTransaction: every intent has an output (its submission), see the runner.
  return { name, input: topics.intents, inputFormat: 'avro', dlq: topics.dlq, load, process: processRecord, persist, conflict: 'halt', eagerTransaction: true };
}

// ---------------------------------------------------------------------------------------------
// persist: submission facts of creates in `orders`

/** Local states a submission may move an order out of; exchange states are the tracker's. */
const LOCAL_STATES = ['Intent', 'Submitted', 'Unknown'];

/** Rows per multi-row statement (far below PostgreSQL's 65,535 bind parameters). */
const ROWS_PER_STATEMENT = 400;

type Submission = { i: OrderIntent; o: Outcome; placed: boolean; qty: string };

/**
 * Upsert the order rows of a chunk's creates: order_id, submitted_at, acknowledged_at and status
 * Submitted (accepted / already placed: the exchange's New arrives on the order stream) or Rejected
 * (with Bybit's retCode and reason). Idempotent: replays write the same facts; a row already moved
 * to an exchange state by tracking keeps its status; each status change is in order_state_history
 * once. One statement per ≤ ROWS_PER_STATEMENT creates (lock the existing rows, upsert, history),
 * so a chunk's submissions cost one round trip, not a transaction's five; a chunk with a second
 * create of one orderLinkId goes one create at a time (one upsert cannot touch a row twice), those
 * statements in one transaction.
 */
async function recordSubmissions(db: DatabasePool, creates: Array<{ i: OrderIntent; o: Outcome }>): Promise<void> {
  const rows: Submission[] = [];
  for (const { i, o } of creates) {
    const placed = o.outcome === 'accepted' || o.outcome === 'already_placed';
    if (!placed && o.outcome !== 'rejected') continue;
    const qty = i.qty !== null && Number(i.qty) > 0 ? i.qty : null;
    if (qty === null) continue; // invalid intent: nothing an order row could hold
    rows.push({ i, o, placed, qty });
  }
  const step = new Set(rows.map((r) => r.i.order_link_id)).size === rows.length ? ROWS_PER_STATEMENT : 1;
  const parts: Submission[][] = [];
  for (let k = 0; k < rows.length; k += step) parts.push(rows.slice(k, k + step));
  if (parts.length === 0) return;
  if (parts.length === 1) return upsertSubmissions(db, parts[0]!);
  await db.transaction(async (tx) => {
    for (const part of parts) await upsertSubmissions(tx, part);
  });
}

// The VALUES rows of the upsert are read through a subquery (below), where PostgreSQL types an
// untyped parameter as text: every column that is not text is cast, a NULL included.
async function upsertSubmissions(db: CommonQueryMethods, part: Submission[]): Promise<void> {
  // Existing rows are locked by `locked` below, in the database's order. New rows are inserted in
  // this order: two placement instances inserting the same new orderLinkIds (a replayed chunk) wait
  // on each other's inserts in one order, never in a cycle.
  const sorted = [...part].sort((a, b) => (a.i.order_link_id < b.i.order_link_id ? -1 : a.i.order_link_id > b.i.order_link_id ? 1 : 0));
  const links = sorted.map((x) => x.i.order_link_id);
  const values = sorted.map(({ i, o, placed, qty }) => {
    const ctx = i.signal ? sql.jsonb({ ...i.signal, intent_id: i.intent_id, decision_reason: i.reason } as unknown as Parameters<typeof sql.jsonb>[0]) : sql.jsonb({ intent_id: i.intent_id, decision_reason: i.reason });
    return sql.fragment`(${i.order_link_id}::text, ${o.orderId}::text, ${i.signal ? i.signal.signal_id : null}::uuid, ${i.signal?.strategy_id ?? null}::text,
          ${i.category}::text, ${i.symbol}::text, ${i.side}::text, ${i.order_type}::text, ${i.time_in_force}::text, ${i.market_unit}::text, ${i.reduce_only}::boolean,
          ${qty}::numeric, ${i.price}::numeric, ${placed ? 'Submitted' : 'Rejected'}::text, ${i.expires_at === null ? null : sql.timestamp(new Date(i.expires_at))}::timestamptz,
          ${sql.timestamp(new Date(o.sentAt))}::timestamptz, ${o.ackedAt === null ? null : sql.timestamp(new Date(o.ackedAt))}::timestamptz,
          ${placed ? null : o.retCode}::integer, ${placed ? null : o.reasonCode}::text, ${ctx})`;
  });
  const facts = sorted.map(
    ({ i, o }) =>
      sql.fragment`(${i.order_link_id}::text, ${o.orderId}::text, ${`submission:${i.intent_id}`}::text,
          ${sql.jsonb({ outcome: o.outcome, ret_code: o.retCode, ret_msg: o.retMsg, reason_code: o.reasonCode, attempts: o.attempts })})`,
  );
  // One statement, in this order: `locked` takes the row locks and reads the statuses before the
  // upsert (its count is the upsert's one-time filter, an InitPlan run before the first row is
  // inserted; as a CTE read twice it is materialised once); the upsert; a history row for each
  // status it changed (from the locked status, NULL for a new row).
  await db.query(sql.typeAlias('void')`
    WITH locked AS MATERIALIZED (
      SELECT id, status, order_link_id FROM orders WHERE order_link_id = ANY(${sql.array(links, 'text')}) ORDER BY order_link_id FOR UPDATE
    ), up AS (
      INSERT INTO orders (order_link_id, order_id, signal_id, strategy_id, category, symbol, side, order_type, time_in_force,
                          market_unit, reduce_only, qty, price, status, expires_at, submitted_at, acknowledged_at,
                          reject_ret_code, reject_reason, context)
      SELECT * FROM (VALUES ${sql.join(values, sql.fragment`, `)}) AS v
      WHERE (SELECT count(*) FROM locked) >= 0
      ON CONFLICT (order_link_id) DO UPDATE SET
        order_id        = COALESCE(orders.order_id, EXCLUDED.order_id),
        submitted_at    = COALESCE(orders.submitted_at, EXCLUDED.submitted_at),
        acknowledged_at = COALESCE(orders.acknowledged_at, EXCLUDED.acknowledged_at),
        status          = CASE WHEN orders.status = ANY(${sql.array(LOCAL_STATES, 'text')}) THEN EXCLUDED.status ELSE orders.status END,
        reject_ret_code = CASE WHEN orders.status = ANY(${sql.array(LOCAL_STATES, 'text')}) THEN EXCLUDED.reject_ret_code ELSE orders.reject_ret_code END,
        reject_reason   = CASE WHEN orders.status = ANY(${sql.array(LOCAL_STATES, 'text')}) THEN EXCLUDED.reject_reason ELSE orders.reject_reason END,
        final_at        = CASE WHEN orders.status = ANY(${sql.array(LOCAL_STATES, 'text')}) AND EXCLUDED.status = 'Rejected' THEN now() ELSE orders.final_at END,
        updated_at      = now()
      RETURNING id, status, order_link_id
    ), history AS (
      INSERT INTO order_state_history (order_row_id, order_link_id, order_id, from_status, to_status, cause, event_id, details)
      SELECT up.id, up.order_link_id, f.order_id, locked.status, up.status, 'submission', f.event_id, f.details
      FROM up
      JOIN (VALUES ${sql.join(facts, sql.fragment`, `)}) AS f(order_link_id, order_id, event_id, details) ON f.order_link_id = up.order_link_id
      LEFT JOIN locked ON locked.order_link_id = up.order_link_id
      WHERE locked.status IS DISTINCT FROM up.status
      ON CONFLICT DO NOTHING
    )
    SELECT`);
}
