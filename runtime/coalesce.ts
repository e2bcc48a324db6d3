// Natural batching for a writer that must keep order: a write that arrives while one is in flight
// waits, together with every other such write, for the next flush, which takes them all at once.
// Nothing waits for a timer: an idle writer flushes at once (no added latency), a busy one sends
// bigger batches (fewer round trips, each a syscall on both ends and a request for the broker).
//
// Bounded: what waits for the next flush is at most `maxItems` writes and `maxBytes` (the flush in
// flight holds at most as much again). A write that would exceed it makes room by giving up waiting
// writes, or itself, as the owner's `shed` decides; a write given up rejects with
// RejectedError('buffer_full') and is not flushed. A writer whose flush cannot succeed for a long
// time (its peer is down) therefore holds a bounded amount, not everything that arrived meanwhile.
import { RejectedError } from './errors.ts';

export interface Coalescer<T> {
  /** Resolves when the flush that took `item` succeeded; rejects with that flush's error, or RejectedError('buffer_full') when the item was given up. */
  write(item: T): Promise<void>;
  /** Resolves once nothing is pending or in flight. */
  idle(): Promise<void>;
  /** Writes accepted and not yet flushed, failed or given up. */
  pending(): number;
  /** Bytes of those writes (by the bounds' size; 0 without bounds). */
  bytes(): number;
}

export interface CoalescerBounds<T> {
  /** Most writes waiting for the next flush. */
  maxItems: number;
  /** Most bytes waiting for the next flush (a single larger write is accepted alone). */
  maxBytes: number;
  size(item: T): number;
  /**
   * The new write does not fit: the index of a waiting write to give up for it (`waiting` is oldest
   * first), or -1 to give up the new write. Asked again until it fits.
   */
  shed(waiting: readonly T[], incoming: T): number;
}

export function createCoalescer<T>(flush: (items: T[]) => Promise<void>, bounds?: CoalescerBounds<T>): Coalescer<T> {
  type Entry = { item: T; bytes: number; resolve: () => void; reject: (e: unknown) => void };
  let queue: Entry[] = [];
  let queuedBytes = 0;
  let running: Promise<void> | null = null;
  let inFlight = 0;
  let inFlightBytes = 0;
  const giveUp = (e: Entry) => e.reject(new RejectedError('buffer_full', `writer buffer full (${bounds!.maxItems} writes / ${bounds!.maxBytes} bytes waiting): write given up`));
  const drain = async (): Promise<void> => {
    while (queue.length > 0) {
      const batch = queue;
      queue = [];
      inFlight = batch.length;
      inFlightBytes = queuedBytes;
      queuedBytes = 0;
      try {
        await flush(batch.map((b) => b.item));
        for (const b of batch) b.resolve();
      } catch (err) {
        for (const b of batch) b.reject(err);
      }
      inFlight = 0;
      inFlightBytes = 0;
    }
    running = null;
  };
  /** Make room for `e`; false when `e` itself is given up. */
  const room = (e: Entry): boolean => {
    if (!bounds) return true;
    while (queue.length > 0 && (queue.length + 1 > bounds.maxItems || queuedBytes + e.bytes > bounds.maxBytes)) {
      const i = bounds.shed(queue.map((q) => q.item), e.item);
      if (i < 0 || i >= queue.length) return false;
      const [out] = queue.splice(i, 1);
      queuedBytes -= out!.bytes;
      giveUp(out!);
    }
    return true;
  };
  return {
    write: (item) =>
      new Promise<void>((resolve, reject) => {
        const e: Entry = { item, bytes: bounds ? bounds.size(item) : 0, resolve, reject };
        if (!room(e)) return giveUp(e);
        queue.push(e);
        queuedBytes += e.bytes;
        running ??= drain();
      }),
    idle: async () => {
      while (running) await running;
    },
    pending: () => queue.length + inFlight,
    bytes: () => queuedBytes + inFlightBytes,
  };
}

/**
 * Bytes one record takes in a produce request, near enough to keep a request under the broker's
 * message.max.bytes (1 MiB by default, checked per partition batch): value, key and headers, plus
 * the record's own framing (length, attributes, timestamp and offset deltas, header counts: well
 * under 64 bytes in the v2 record format).
 */
export function recordBytes(m: { key: string | null; value: Buffer; headers?: Record<string, string> }): number {
  let n = 64 + m.value.length + (m.key === null ? 0 : Buffer.byteLength(m.key));
  for (const [k, v] of Object.entries(m.headers ?? {})) n += Buffer.byteLength(k) + Buffer.byteLength(v) + 4;
  return n;
}

/**
 * Cuts per-topic message lists into consecutive sends of at most `maxBytes` each (a single larger
 * message goes alone), keeping the order within every topic: sent one after another, they write
 * what one send of everything would have written.
 */
export function chunkByBytes<M>(byTopic: Map<string, M[]>, size: (m: M) => number, maxBytes: number): Array<Map<string, M[]>> {
  const out: Array<Map<string, M[]>> = [];
  let chunk = new Map<string, M[]>();
  let bytes = 0;
  for (const [topic, list] of byTopic) {
    for (const m of list) {
      const b = size(m);
      if (bytes > 0 && bytes + b > maxBytes) {
        out.push(chunk);
        chunk = new Map();
        bytes = 0;
      }
      const into = chunk.get(topic);
      if (into) into.push(m);
      else chunk.set(topic, [m]);
      bytes += b;
    }
  }
  if (bytes > 0) out.push(chunk);
  return out;
}
