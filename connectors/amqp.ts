// A RabbitMQ connection that stays up: connect, run the owner's setup (channels, consumers), and on
// connection loss connect again with backoff (runtime/retry.ts's backoffMs, with jitter) and run the
// setup again. Shared by the bridges. What happens to unacknowledged messages on loss is RabbitMQ's
// rule: they go back to the queue and are redelivered with `redelivered = true`.
import amqplib, { type ChannelModel } from 'amqplib';
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffMs } from '../runtime/retry.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';

export type { ChannelModel };

/** How to open one connection; amqplib's `connect` by default (injectable, e.g. to wrap it). */
export type AmqpConnect = (url: string) => Promise<ChannelModel>;

export const defaultAmqpConnect: AmqpConnect = (url) => amqplib.connect(url);

export interface AmqpConnectionOptions {
  url: string;
  /** Who owns the connection (bridge name), for logs, metrics and the RabbitMQ connection name. */
  name: string;
  logger: Logger;
  metrics: Metrics;
  /** Longest backoff between connection attempts, ms. */
  retryMaxMs: number;
  connect?: AmqpConnect;
  /** Run after every successful connection (declare queues, open channels, consume). */
  onConnect: (conn: ChannelModel) => Promise<void>;
  /** Called when an established connection is lost (before reconnecting). */
  onDisconnect?: (err: Error | undefined) => void;
}

export interface AmqpConnection {
  /** Connect (retrying with backoff); resolves once the first connection is set up. */
  start(): Promise<void>;
  /** Close the connection and stop reconnecting. */
  stop(): Promise<void>;
  /** The connection currently up and set up, or null. */
  current(): ChannelModel | null;
}

/** Redact the password of an amqp URL for logs. */
export function redactAmqpUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = 'redacted';
    return u.toString();
  } catch {
    return '[unparseable url]';
  }
}

export function createAmqpConnection(opts: AmqpConnectionOptions): AmqpConnection {
  const log = opts.logger.child({ amqp: redactAmqpUrl(opts.url), owner: opts.name });
  const connect = opts.connect ?? defaultAmqpConnect;
  const abort = new AbortController();
  let conn: ChannelModel | null = null;
  let stopping = false;
  let loop: Promise<void> | null = null;
  let firstUp: { resolve: () => void; reject: (e: Error) => void } | null = null;

  const run = async (): Promise<void> => {
    let attempt = 0;
    let lost = false;
    while (!stopping) {
      if (attempt > 0 || lost) {
        const delay = backoffMs(attempt, 100, opts.retryMaxMs);
        try {
          await sleep(delay, undefined, { signal: abort.signal });
        } catch {
          return; // stopped
        }
      }
      let c: ChannelModel;
      try {
        c = await connect(opts.url);
      } catch (err) {
        attempt++;
        log.warn({ err: (err as Error).message, attempt }, 'RabbitMQ unreachable; retrying');
        continue;
      }
      if (stopping) {
        await c.close().catch(() => {});
        return;
      }
      c.on('error', (err: Error) => log.warn({ err: err.message }, 'RabbitMQ connection error'));
      const closed = new Promise<Error | undefined>((resolve) => c.once('close', (err?: Error) => resolve(err)));
      try {
        await opts.onConnect(c);
      } catch (err) {
        attempt++;
        log.warn({ err: (err as Error).message, attempt }, 'RabbitMQ setup failed; reconnecting');
        await c.close().catch(() => {});
        continue;
      }
      conn = c;
      attempt = 0;
      if (lost) opts.metrics.bridge.reconnects.inc({ bridge: opts.name, peer: 'rabbitmq' });
      log.info({ reconnect: lost }, 'RabbitMQ connected');
      firstUp?.resolve();
      firstUp = null;
      const err = await closed;
      conn = null;
      if (stopping) return;
      lost = true;
      log.warn({ err: err?.message }, 'RabbitMQ connection lost; reconnecting');
      opts.onDisconnect?.(err);
    }
  };

  return {
    start: () =>
      new Promise<void>((resolve, reject) => {
        if (loop) return reject(new Error('already started'));
        firstUp = { resolve, reject };
        loop = run().finally(() => firstUp?.reject(new Error('stopped before connecting')));
      }),
    stop: async () => {
      stopping = true;
      abort.abort();
      const c = conn;
      conn = null;
      await c?.close().catch(() => {});
      await loop;
    },
    current: () => conn,
  };
}
