// Where a replay's signals come from: a JSON-lines file or a range of a raw signal topic, and what
// the replay reads of each (lenient: the pipeline, not this, decides what is valid).
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { failTool, type KafkaPort, type InMessage } from '../runtime/kafka.ts';
import { parseIsoTimestamp } from '../pipelines/signal-format.ts';
import { UUID_RE } from '../pipelines/record-guards.ts';
import { UsageError } from './context.ts';
import type { OffsetSpec, ReplayOptions, SourceRecord } from './replay-types.ts';

/** Signals of a JSON-lines file: every non-empty line is one signal, sent as its exact bytes. */
export async function readSignalFile(path: string): Promise<SourceRecord[]> {
  const text = await readFile(path, 'utf8');
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('//'))
    .map((l) => ({ value: Buffer.from(l), key: null, traceId: null, recordTime: null }));
}

export function offsetFor(spec: OffsetSpec | undefined, partition: number): number | undefined {
  if (spec === undefined) return undefined;
  return typeof spec === 'number' ? spec : spec[partition];
}

/**
 * Records of `<prefix>signals.raw` within the offset and time ranges, read-committed, ordered by
 * (record timestamp, partition, offset) so the replay order is the same every time.
 */
export async function readSignalTopic(kafka: KafkaPort, opts: Pick<ReplayOptions, 'topicPrefix' | 'fromOffset' | 'toOffset' | 'fromTime' | 'toTime'>): Promise<SourceRecord[]> {
  const topic = `${opts.topicPrefix ?? ''}signals.raw`;
  const admin = kafka.admin();
  await admin.connect();
  let ranges: Array<{ partition: number; from: number; to: number }>;
  try {
    const topics = await admin.listTopics();
    if (!topics.includes(topic)) throw new UsageError(`topic ${topic} does not exist`);
    const offsets = await admin.topicOffsets(topic);
    ranges = offsets.map((o) => {
      const low = Number(o.low), high = Number(o.high);
      return { partition: o.partition, from: Math.max(low, offsetFor(opts.fromOffset, o.partition) ?? low), to: Math.min(high, offsetFor(opts.toOffset, o.partition) ?? high) };
    });
  } finally {
    await admin.disconnect();
  }
  const wanted = ranges.filter((r) => r.to > r.from);
  if (wanted.length === 0) return [];
  const consumer = kafka.consumer({ groupId: `replay-reader-${randomBytes(4).toString('hex')}`, readCommitted: true, onFatal: failTool('replay') });
  const got: InMessage[] = [];
  const seen = new Map<number, number>();
  let joinedAt = 0;
  let lastActivity = 0;
  consumer.onGroupJoin(() => {
    joinedAt = Date.now();
    lastActivity = joinedAt;
  });
  await consumer.connect();
  try {
    await consumer.subscribe([topic], true);
    await consumer.run(async (batch, ctl) => {
      for (const m of batch.messages) {
        const r = wanted.find((w) => w.partition === m.partition);
        const off = Number(m.offset);
        if (r && off >= r.from && off < r.to) got.push(m);
        seen.set(m.partition, Math.max(seen.get(m.partition) ?? -1, off));
        ctl.resolveOffset(m.offset);
      }
      lastActivity = Date.now();
    });
    const deadline = Date.now() + 120_000;
    for (;;) {
      const complete = wanted.every((w) => (seen.get(w.partition) ?? -1) >= w.to - 1);
      // Transaction markers take offsets too: the last data record may sit before `to - 1`.
      const idle = joinedAt > 0 && Date.now() - lastActivity > 5_000;
      if (complete || idle) break;
      if (Date.now() > deadline) throw new Error(`reading ${topic} took longer than 120 s`);
      await sleep(100);
    }
  } finally {
    await consumer.disconnect();
  }
  return got
    .filter((m) => m.value !== null)
    .filter((m) => (opts.fromTime === undefined || m.timestamp >= opts.fromTime) && (opts.toTime === undefined || m.timestamp < opts.toTime))
    .sort((a, b) => a.timestamp - b.timestamp || a.partition - b.partition || Number(a.offset) - Number(b.offset))
    .map((m) => ({ value: m.value!, key: m.key, traceId: m.headers.trace_id ?? null, recordTime: m.timestamp }));
}

export interface Parsed {
  obj: Record<string, unknown> | null;
  signalId: string | null;
  strategyId: string | null;
  asset: string | null;
  side: string | null;
  price: number | null;
  time: number | null;
}

export function parseRecord(r: SourceRecord): Parsed {
  let obj: Record<string, unknown> | null = null;
  try {
    const v: unknown = JSON.parse(r.value.toString('utf8'));
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) obj = v as Record<string, unknown>;
  } catch {
    obj = null;
  }
  const str = (x: unknown): string | null => (typeof x === 'string' && x.length > 0 ? x : null);
  const snap = obj?.market_data_snapshot as Record<string, unknown> | undefined;
  const price = typeof snap?.price === 'number' && Number.isFinite(snap.price) && snap.price > 0 ? snap.price : null;
  const ts = str(obj?.timestamp);
  const signalId = str(obj?.signal_id);
  return {
    obj,
    signalId: signalId && UUID_RE.test(signalId) ? signalId.toLowerCase() : null,
    strategyId: str(obj?.strategy_id),
    asset: str(obj?.asset),
    side: str(obj?.signal_type) ?? str(obj?.signal),
    price,
    time: (ts ? parseIsoTimestamp(ts) : null) ?? r.recordTime,
  };
}

