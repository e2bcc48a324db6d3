// The order-events invariant of the chaos run: every order state change PostgreSQL recorded reached
// orders.events (and, through the events-out bridge, the RabbitMQ order events queue), and a repeat
// only ever carries the same event_id.
//   - Each order_events row (the tracker's record of an emitted event) and each order_state_history
//     row must be on the topic: by event_id, or, for the placement stage's own Intent → Submitted
//     row (event_id "submission:<intent>"), as an event of that order with that status.
//   - The last event of each order on the topic (highest sequence) has the order's status in `orders`.
//   - No (order, sequence) appears with two different event_ids; no signal has two different
//     signal_rejected event_ids; every rejected signal has its signal_rejected event.
//   - The RabbitMQ queue holds every event_id of the topic (repeats allowed, same event_id).
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import amqplib from 'amqplib';
import { z } from 'zod';
import { failTool, type KafkaPort } from '../runtime/kafka.ts';
import { sql, type DatabasePool } from '../runtime/db.ts';
import type { Codec } from '../pipelines/runner.ts';
import type { OrderEvent } from '../schemas/types.ts';

/**
 * Every committed record of a topic (read_committed), decoded. The writers have settled, so the end
 * is "nothing new for quietMs after the group join" (transaction markers make offset arithmetic
 * against the high watermark unreliable).
 */
export async function readTopic(kafka: KafkaPort, topic: string, codec: Codec, quietMs = 4000, timeoutMs = 120_000): Promise<OrderEvent[]> {
  const consumer = kafka.consumer({ groupId: `chaos-reader-${randomBytes(4).toString('hex')}`, readCommitted: true, onFatal: failTool('chaos reader') });
  const raw: Buffer[] = [];
  let joinedAt = 0;
  let lastAt = 0;
  consumer.onGroupJoin(() => (joinedAt = Date.now()));
  await consumer.connect();
  await consumer.subscribe([topic], true);
  try {
    await consumer.run(async (batch, ctl) => {
      for (const m of batch.messages) {
        if (m.value) raw.push(m.value);
        ctl.resolveOffset(m.offset);
      }
      lastAt = Date.now();
    });
    const until = Date.now() + timeoutMs;
    while (!joinedAt || Date.now() - Math.max(joinedAt, lastAt) < quietMs) {
      if (Date.now() > until) throw new Error(`reading ${topic} did not settle in ${timeoutMs} ms`);
      await sleep(100);
    }
  } finally {
    await consumer.disconnect();
  }
  const out: OrderEvent[] = [];
  for (const b of raw) out.push((await codec.decode(topic, b)) as OrderEvent);
  return out;
}

/** Consume a RabbitMQ queue until `enough` says so or nothing new came for quietMs; returns the parsed bodies. */
export async function drainQueue(url: string, queue: string, enough: (msgs: Array<Record<string, unknown>>) => boolean, quietMs = 30_000, timeoutMs = 180_000): Promise<Array<Record<string, unknown>>> {
  const conn = await amqplib.connect(url);
  conn.on('error', () => {});
  const out: Array<Record<string, unknown>> = [];
  let lastAt = Date.now();
  try {
    const ch = await conn.createChannel();
    await ch.prefetch(500);
    await ch.consume(queue, (m) => {
      if (!m) return;
      try {
        out.push(JSON.parse(m.content.toString('utf8')) as Record<string, unknown>);
      } catch {
        out.push({ unparseable: m.content.toString('utf8').slice(0, 200) });
      }
      lastAt = Date.now();
      ch.ack(m);
    });
    const until = Date.now() + timeoutMs;
    while (!enough(out) && Date.now() - lastAt < quietMs && Date.now() < until) await sleep(100);
  } finally {
    await conn.close().catch(() => {});
  }
  return out;
}

export interface EventsVerdict {
  topicEvents: number;
  queueEvents: number;
  /** Records of the same event_id seen more than once (allowed: at-least-once with stable ids). */
  repeats: number;
  losses: number;
  duplicates: number;
  problems: string[];
}

export async function checkOrderEvents(pool: DatabasePool, events: OrderEvent[], queued: Array<Record<string, unknown>> | null, signalIds: string[]): Promise<EventsVerdict> {
  const v: EventsVerdict = { topicEvents: events.length, queueEvents: queued?.length ?? 0, repeats: 0, losses: 0, duplicates: 0, problems: [] };
  const problem = (kind: 'loss' | 'duplicate', what: string) => {
    if (kind === 'loss') v.losses++;
    else v.duplicates++;
    if (v.problems.length < 20) v.problems.push(`${kind}: ${what}`);
  };
  const byId = new Map<string, OrderEvent>();
  const bySeq = new Map<string, Set<string>>();
  const rejectedBySignal = new Map<string, Set<string>>();
  const lastOfOrder = new Map<string, OrderEvent>();
  const statusesOfOrder = new Map<string, Set<string>>();
  for (const e of events) {
    if (byId.has(e.event_id)) v.repeats++;
    byId.set(e.event_id, e);
    if (e.event_type === 'signal_rejected') {
      if (e.signal_id) {
        const s = rejectedBySignal.get(e.signal_id) ?? new Set<string>();
        s.add(e.event_id);
        rejectedBySignal.set(e.signal_id, s);
      }
      continue;
    }
    if (!e.order_link_id) continue;
    const k = `${e.order_link_id}#${e.sequence}`;
    const s = bySeq.get(k) ?? new Set<string>();
    s.add(e.event_id);
    bySeq.set(k, s);
    const last = lastOfOrder.get(e.order_link_id);
    if (!last || (e.sequence ?? 0) > (last.sequence ?? 0)) lastOfOrder.set(e.order_link_id, e);
    if (e.status) {
      const st = statusesOfOrder.get(e.order_link_id) ?? new Set<string>();
      st.add(e.status);
      statusesOfOrder.set(e.order_link_id, st);
    }
  }
  for (const [k, ids] of bySeq) if (ids.size > 1) problem('duplicate', `order event ${k} on the topic with ${ids.size} different event_ids`);
  for (const [s, ids] of rejectedBySignal) if (ids.size > 1) problem('duplicate', `signal ${s} rejected by ${ids.size} different events`);

  // What PostgreSQL recorded.
  const emitted = await pool.any(sql.type(z.object({ event_id: z.string(), order_link_id: z.string().nullable(), sequence: z.number() }))`
    SELECT event_id, order_link_id, sequence FROM order_events`);
  for (const r of emitted) if (!byId.has(r.event_id)) problem('loss', `order event ${r.event_id} (${r.order_link_id} #${r.sequence}) recorded in PostgreSQL but not on the topic`);
  const history = await pool.any(sql.type(z.object({ order_link_id: z.string().nullable(), to_status: z.string(), cause: z.string(), event_id: z.string().nullable() }))`
    SELECT order_link_id, to_status, cause, event_id FROM order_state_history`);
  for (const h of history) {
    if (h.event_id && byId.has(h.event_id)) continue;
    if (h.order_link_id && statusesOfOrder.get(h.order_link_id)?.has(h.to_status)) continue;
    // The placement stage's own Intent → Submitted row: when the exchange's update overtook the
    // submission record, the tracker goes straight to New/Filled and never emits Submitted; the
    // change is then covered by the order's events (its final status is checked below).
    if (h.cause === 'submission' && h.to_status === 'Submitted' && h.order_link_id && lastOfOrder.has(h.order_link_id)) continue;
    problem('loss', `state change of ${h.order_link_id} to ${h.to_status} (${h.cause}, ${h.event_id}) never reached the topic`);
  }
  const orders = await pool.any(sql.type(z.object({ order_link_id: z.string(), status: z.string() }))`
    SELECT order_link_id, status FROM orders WHERE order_link_id IS NOT NULL AND status <> 'Intent'`);
  for (const o of orders) {
    const last = lastOfOrder.get(o.order_link_id);
    if (!last) problem('loss', `order ${o.order_link_id} (${o.status}) has no event on the topic`);
    else if (last.status !== o.status) problem('loss', `order ${o.order_link_id} is ${o.status} in PostgreSQL but its last event says ${last.status}`);
  }
  const rejected = await pool.any(sql.type(z.object({ signal_id: z.string() }))`
    SELECT signal_id::text FROM signals WHERE outcome = 'rejected' AND signal_id = ANY(${sql.array(signalIds, 'uuid')})`);
  for (const r of rejected) if (!rejectedBySignal.has(r.signal_id)) problem('loss', `rejected signal ${r.signal_id} has no signal_rejected event`);

  // The RabbitMQ side of the events-out bridge.
  if (queued) {
    const onQueue = new Map<string, number>();
    for (const q of queued) {
      const id = typeof q.event_id === 'string' ? q.event_id : null;
      if (!id) {
        problem('loss', `unparseable message on the order events queue: ${JSON.stringify(q).slice(0, 120)}`);
        continue;
      }
      onQueue.set(id, (onQueue.get(id) ?? 0) + 1);
      if (!byId.has(id)) problem('duplicate', `event ${id} on the order events queue but not on the topic`);
    }
    for (const id of byId.keys()) if (!onQueue.has(id)) problem('loss', `event ${id} never reached the RabbitMQ order events queue`);
    v.repeats += [...onQueue.values()].reduce((a, n) => a + n - 1, 0);
  }
  return v;
}
