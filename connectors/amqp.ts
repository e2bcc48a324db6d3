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

/** Length limits of an inbound queue; 0 leaves that limit out (a RabbitMQ policy may set it). */
export interface QueueLimits {
  maxLength: number;
  maxBytes: number;
}

/**
 * Queue arguments for the limits: x-max-length (ready messages), x-max-length-bytes (their bodies)
 * and x-overflow reject-publish, so a full queue refuses new messages (a publisher using confirms
 * gets a basic.nack) instead of dropping the oldest or growing until RabbitMQ's memory alarm
 * blocks every publisher of the node.
 */
export function queueArguments(limits: QueueLimits): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  if (limits.maxLength > 0) args['x-max-length'] = limits.maxLength;
  if (limits.maxBytes > 0) args['x-max-length-bytes'] = limits.maxBytes;
  if (Object.keys(args).length > 0) args['x-overflow'] = 'reject-publish';
  return args;
}

const isPreconditionFailed = (err: unknown) => (err as { code?: unknown })?.code === 406;

/**
 * How a bridge declares its inbound queues: durable, with the limits. Queue arguments are fixed when
 * a queue is created, and declaring an existing queue with other ones fails (PRECONDITION_FAILED,
 * 406): a queue left by an earlier version without limits, or created first by a publisher that
 * declares it bare. Such a queue is used as it is, with one warning per queue saying how to apply
 * the limits (a policy). Each declaration runs on a channel of its own, since a 406 closes the
 * channel it happens on. Declaring again at every (re)opened channel recreates a deleted queue.
 * The declarer resolves to whether the limits hold.
 */
export function queueDeclarer(limits: QueueLimits, log: Logger): (conn: ChannelModel, queue: string) => Promise<boolean> {
  const args = queueArguments(limits);
  const warned = new Set<string>();
  return async (conn, queue) => {
    const ch = await conn.createChannel();
    ch.on('error', () => {}); // the 406 arrives as a channel error too; it is handled below
    try {
      await ch.assertQueue(queue, { durable: true, arguments: args });
      await ch.close();
      return true;
    } catch (err) {
      if (!isPreconditionFailed(err)) throw err;
      if (!warned.has(queue)) {
        warned.add(queue);
        log.warn(
          { queue, wanted: args, err: (err as Error).message },
          'queue exists with other arguments: using it as it is, without these length limits (apply them with a RabbitMQ policy, see docs/bridges.md)',
        );
      }
      return false;
    }
  };
}
