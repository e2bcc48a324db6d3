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
