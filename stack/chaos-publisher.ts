// The chaos run's signal source: publishes each signal to RabbitMQ with publisher confirms and does
// not give up when the connection goes away (connections closed by the broker, the broker
// restarted). A signal whose confirm did not arrive is published again after reconnecting: it may
// then be in the queue twice, which is fine because the pipeline drops repeats by signal_id (the
// validate stage records signal_id in PostgreSQL; the second copy only bumps duplicate_count).
import amqplib, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { queueArguments } from '../connectors/amqp.ts';
import { parseConfig as signalBridgeConfig } from '../connectors/signal-bridge.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export interface SignalPublisher {
  /** Publish until confirmed; returns how many attempts it took. */
  publish(body: Buffer, messageId: string): Promise<number>;
  /** Publishes that had to be repeated after a lost connection or a missing confirm. */
  republished: number;
  close(): Promise<void>;
}

export function createSignalPublisher(url: string, queue: string, opts: { confirmTimeoutMs?: number; giveUpMs?: number } = {}): SignalPublisher {
  const bridge = signalBridgeConfig(process.env);
  const limits = { maxLength: bridge.SIGNALS_QUEUE_MAX_LENGTH, maxBytes: bridge.SIGNALS_QUEUE_MAX_BYTES };
  let conn: ChannelModel | null = null;
  let ch: ConfirmChannel | null = null;
  const drop = () => {
    const c = conn;
    conn = null;
    ch = null;
    void c?.close().catch(() => {});
  };
  const channel = async (): Promise<ConfirmChannel> => {
    if (ch) return ch;
    const c = await amqplib.connect(url);
    c.on('error', () => {});
    c.on('close', () => {
      if (conn === c) {
        conn = null;
        ch = null;
      }
    });
    const x = await c.createConfirmChannel();
    x.on('error', () => {});
    x.on('close', () => {
      if (ch === x) ch = null;
    });
    // With the signal bridge's arguments, as the model service declares it: whichever of the two
    // comes first, the other's declaration matches (a difference would be refused with 406).
    await x.assertQueue(queue, { durable: true, arguments: queueArguments(limits) });
    conn = c;
    ch = x;
    return x;
  };
  const self: SignalPublisher = {
    republished: 0,
    async publish(body, messageId) {
      const until = Date.now() + (opts.giveUpMs ?? 180_000);
      for (let attempt = 1; ; attempt++) {
        try {
          const x = await channel();
          x.sendToQueue(queue, body, { persistent: true, messageId, contentType: 'application/json' });
          let timer: NodeJS.Timeout | undefined;
          let onClose: () => void = () => {};
          const closed = new Promise<never>((_, reject) => {
            onClose = () => reject(new Error('channel closed before the confirm'));
            x.once('close', onClose);
          });
          closed.catch(() => {});
          await Promise.race([
            x.waitForConfirms(),
            closed,
            new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no confirm in time')), opts.confirmTimeoutMs ?? 10_000))),
          ]).finally(() => {
            clearTimeout(timer);
            x.removeListener('close', onClose);
          });
          if (attempt > 1) self.republished++;
          return attempt;
        } catch (err) {
          drop();
          if (Date.now() > until) throw new Error(`could not publish signal ${messageId}: ${(err as Error).message}`, { cause: err });
          await sleep(Math.min(2000, 100 * attempt));
        }
      }
    },
    async close() {
      const c = conn;
      conn = null;
      ch = null;
      await c?.close().catch(() => {});
    },
  };
  return self;
}
