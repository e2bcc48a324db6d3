// Natural batching for a writer that must keep order: a write that arrives while one is in flight
// waits, together with every other such write, for the next flush, which takes them all at once.
// Nothing waits for a timer: an idle writer flushes at once (no added latency), a busy one sends
// bigger batches (fewer round trips, each a syscall on both ends and a request for the broker).
export interface Coalescer<T> {
  /** Resolves when the flush that took `item` succeeded; rejects with that flush's error. */
  write(item: T): Promise<void>;
  /** Resolves once nothing is pending or in flight. */
  idle(): Promise<void>;
  /** Writes accepted and not yet flushed or failed. */
  pending(): number;
}

export function createCoalescer<T>(flush: (items: T[]) => Promise<void>): Coalescer<T> {
  let queue: Array<{ item: T; resolve: () => void; reject: (e: unknown) => void }> = [];
  let running: Promise<void> | null = null;
  let inFlight = 0;
  const drain = async (): Promise<void> => {
    while (queue.length > 0) {
      const batch = queue;
      queue = [];
      inFlight = batch.length;
      try {
        await flush(batch.map((b) => b.item));
        for (const b of batch) b.resolve();
      } catch (err) {
        for (const b of batch) b.reject(err);
      }
      inFlight = 0;
    }
    running = null;
  };
  return {
    write: (item) =>
      new Promise<void>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        running ??= drain();
      }),
    idle: async () => {
      while (running) await running;
    },
    pending: () => queue.length + inFlight,
  };
}

/** Concatenates per-topic message lists, keeping the order of the lists and within each. */
export function mergeByTopic<M>(maps: Iterable<Map<string, M[]>>): Map<string, M[]> {
  const out = new Map<string, M[]>();
  for (const m of maps) {
    for (const [t, list] of m) {
      const into = out.get(t);
      if (into) into.push(...list);
      else out.set(t, [...list]);
    }
  }
  return out;
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
