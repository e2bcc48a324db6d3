// Reading back what the chaos run produced: committed records of pipeline topics (read_committed,
// as every consumer of them reads), and the RabbitMQ order events queue drained to the end. The
// checks on them are in stack/chaos-checks.ts.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import amqplib from 'amqplib';
import { failTool, type KafkaPort } from '../runtime/kafka.ts';
import type { Codec } from '../runtime/codec.ts';

/** A committed record as read back: its value bytes and where it was (partition/offset). */
export interface ReadRecord {
  value: Buffer;
  at: string;
}

/**
 * Every committed record of some topics (read_committed, as their consumers read them), raw. The
 * writers must have stopped: each partition's end is marked with a plain record first (transaction
 * markers make offset arithmetic against the high watermark unreliable), and reading stops when
 * every marker came back; the markers are left out.
 */
export async function readToEnd(
  kafka: KafkaPort,
  topics: string[],
  partitions: number,
  opts: { timeoutMs?: number; explain?: (partitions: string[]) => Promise<string> } = {},
): Promise<Map<string, ReadRecord[]>> {
  const timeoutMs = opts.timeoutMs ?? 180_000;
  const marker = `chaos-end-${randomBytes(4).toString('hex')}`;
  const producer = kafka.producer();
  await producer.connect();
  /** Where each partition's marker landed, until it is read back. */
  const awaited = new Map<string, string>();
  for (const t of topics) {
    for (const at of await producer.sendAt(t, Array.from({ length: partitions }, (_, partition) => ({ key: null, value: Buffer.from(marker), headers: { 'chaos.marker': marker }, partition })))) awaited.set(`${t}/${at.partition}`, at.offset);
  }
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `chaos-reader-${randomBytes(4).toString('hex')}`, readCommitted: true, onFatal: failTool('chaos reader') });
  const out = new Map<string, ReadRecord[]>(topics.map((t) => [t, []]));
  /** The last offset read of each partition (for the report of a partition whose marker never came). */
  const last = new Map<string, string>();
  await consumer.connect();
  await consumer.subscribe(topics, true);
  try {
    await consumer.run(async (batch, ctl) => {
      for (const m of batch.messages) {
        last.set(`${batch.topic}/${m.partition}`, m.offset);
        if (m.headers['chaos.marker'] === marker) awaited.delete(`${batch.topic}/${m.partition}`);
        else if (m.value) out.get(batch.topic)!.push({ value: m.value, at: `${m.partition}/${m.offset}` });
        ctl.resolveOffset(m.offset);
      }
    });
    const until = Date.now() + timeoutMs;
    while (awaited.size > 0) {
      if (Date.now() > until) {
        // Which partitions, and how far reading got: a read stopped well before the marker with
        // nothing arriving is a transaction still open there (read_committed stops at it).
        const missing = [...awaited].map(([tp, at]) => `${tp} (marker at ${at}, last read ${last.get(tp) ?? 'none'})`);
        const broker = opts.explain ? `; the broker on them: ${await opts.explain([...awaited.keys()])}` : '';
        throw new Error(`reading ${topics.join(', ')} to the end: ${topics.length * partitions - awaited.size} of ${topics.length * partitions} end markers in ${timeoutMs} ms; missing ${missing.join(', ')}${broker}`);
      }
      await sleep(100);
    }
  } finally {
    await consumer.disconnect();
  }
  return out;
}

/** Decode records of one topic; `where` gets each decoded value's position. */
export async function decodeAll<T extends object>(codec: Codec, topic: string, records: readonly ReadRecord[], where?: Map<T, string>): Promise<T[]> {
  const out: T[] = [];
  for (const r of records) {
    const v = (await codec.decode(topic, r.value)) as T;
    where?.set(v, r.at);
    out.push(v);
  }
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
        out.push({ ...(JSON.parse(m.content.toString('utf8')) as Record<string, unknown>), _amqp: { headers: m.properties.headers, redelivered: m.fields.redelivered } });
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
