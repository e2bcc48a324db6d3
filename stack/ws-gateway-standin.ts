// LOCAL TEST STAND-IN for the desk's ws-gateway service, for chaos runs (`--stream=ws-gateway`) only;
// deployments run the real ws-gateway. It does what the order manager expects ws-gateway to do
// (../shared/DESIGN.md, docs/bridges.md): keep one authenticated Bybit v5 websocket, subscribed to
// the private topics order, execution, position, wallet and to tickers.{symbol}, and relay every
// topic message, byte for byte as Bybit sent it ({topic, id, creationTime, data}), into the
// durable RabbitMQ queue of its kind (ws-gateway.order, .execution, .position, .wallet, .ticker;
// names from the WS_GATEWAY_*_QUEUE settings, as the bridge reads them), persistent, with publisher
// confirms. What it promises, and no more:
//   - a message is published until RabbitMQ confirmed it (held in memory meanwhile, in order);
//   - a websocket push Bybit sent while the connection was down, or that it held unconfirmed when it
//     was killed, is lost, as with the real service; the order manager's reconciler repairs that.
// Run: tsx stack/ws-gateway-standin.ts --ws=<url> --amqp=<url> --symbols=BTCUSDT,ETHUSDT [--chaos-run=<dir>]
// (key and secret from BYBIT_API_KEY / BYBIT_API_SECRET). One JSON line per event on stdout; the
// line with "ws-gateway stand-in ready" means subscribed and connected to RabbitMQ.
import { createHmac } from 'node:crypto';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import amqplib, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import WebSocket from 'ws';
import { parseConfig as bridgeConfig } from '../connectors/ws-gateway-bridge.ts';
import { queueArguments } from '../connectors/amqp.ts';

export const READY_LINE = 'ws-gateway stand-in ready';

const say = (msg: string, extra: Record<string, unknown> = {}) => process.stdout.write(`${JSON.stringify({ time: Date.now(), name: 'ws-gateway-standin', msg, ...extra })}\n`);

/** The queue of a Bybit topic, or null for messages ws-gateway does not relay. */
export function queueOf(topic: string, q: { order: string; execution: string; position: string; wallet: string; ticker: string }): string | null {
  const kind = topic.split('.')[0];
  if (kind === 'order') return q.order;
  if (kind === 'execution') return q.execution;
  if (kind === 'position') return q.position;
  if (kind === 'wallet') return q.wallet;
  if (kind === 'tickers') return q.ticker;
  return null;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { ws: { type: 'string' }, amqp: { type: 'string' }, symbols: { type: 'string', default: '' }, 'chaos-run': { type: 'string' } } });
  if (!values.ws || !values.amqp) throw new Error('usage: ws-gateway-standin --ws=<url> --amqp=<url> --symbols=A,B');
  const cfg = bridgeConfig(process.env);
  const queues = { order: cfg.WS_GATEWAY_ORDER_QUEUE, execution: cfg.WS_GATEWAY_EXECUTION_QUEUE, position: cfg.WS_GATEWAY_POSITION_QUEUE, wallet: cfg.WS_GATEWAY_WALLET_QUEUE, ticker: cfg.WS_GATEWAY_TICKER_QUEUE };
  const key = process.env.BYBIT_API_KEY ?? 'sim-key';
  const secret = process.env.BYBIT_API_SECRET ?? 'sim-secret';
  const symbols = values.symbols.split(',').filter(Boolean);

  // --- RabbitMQ side: one confirm channel, messages in order, each published until confirmed.
  const pending: Array<{ queue: string; body: Buffer }> = [];
  let wake: (() => void) | null = null;
  let amqpUp = false;
  let wsUp = false;
  let announced = false;
  const announce = () => {
    if (amqpUp && wsUp && !announced) {
      announced = true;
      say(READY_LINE, { queues, symbols });
    }
  };
  const publisher = async () => {
    let conn: ChannelModel | null = null;
    let ch: ConfirmChannel | null = null;
    for (let failures = 0; ; ) {
      try {
        if (!ch) {
          conn = await amqplib.connect(values.amqp!);
          conn.on('error', () => {});
          const c = await conn.createConfirmChannel();
          c.on('error', () => {});
          // With the bridge's arguments (length limits), which it declares the queues with too.
          for (const q of Object.values(queues)) await c.assertQueue(q, { durable: true, arguments: queueArguments({ maxLength: cfg.WS_GATEWAY_QUEUE_MAX_LENGTH, maxBytes: cfg.WS_GATEWAY_QUEUE_MAX_BYTES }) });
          ch = c;
          amqpUp = true;
          failures = 0;
          say('RabbitMQ connected');
          announce();
        }
        if (pending.length === 0) {
          await new Promise<void>((r) => (wake = r));
          continue;
        }
        const batch = pending.slice(0, 256);
        for (const m of batch) ch.sendToQueue(m.queue, m.body, { persistent: true, contentType: 'application/json' });
        await ch.waitForConfirms();
        pending.splice(0, batch.length);
      } catch (err) {
        failures++;
        say('RabbitMQ publish failed; reconnecting', { err: (err as Error).message, pending: pending.length });
        void conn?.close().catch(() => {});
        conn = null;
        ch = null;
        await sleep(Math.min(2000, 100 * 2 ** Math.min(failures, 5)));
      }
    }
  };
  void publisher();

  // --- Bybit side: one authenticated connection, resubscribed after every reconnect.
  for (let attempt = 0; ; attempt++) {
    await new Promise<void>((resolve) => {
      const ws = new WebSocket(values.ws!);
      let ping: NodeJS.Timeout | undefined;
      ws.on('open', () => {
        const expires = Date.now() + 10_000;
        ws.send(JSON.stringify({ op: 'auth', args: [key, expires, createHmac('sha256', secret).update(`GET/realtime${expires}`).digest('hex')] }));
        ping = setInterval(() => ws.send(JSON.stringify({ op: 'ping' })), 20_000);
      });
      ws.on('message', (data: Buffer) => {
        let msg: { op?: string; success?: boolean; ret_msg?: string; topic?: string };
        try {
          msg = JSON.parse(data.toString('utf8')) as typeof msg;
        } catch {
          return;
        }
        if (msg.op === 'auth') {
          if (!msg.success) {
            say('auth refused', { ret_msg: msg.ret_msg });
            ws.close();
            return;
          }
          ws.send(JSON.stringify({ op: 'subscribe', args: ['order', 'execution', 'position', 'wallet', ...symbols.map((s) => `tickers.${s}`)] }));
          return;
        }
        if (msg.op === 'subscribe') {
          if (msg.success) {
            wsUp = true;
            say('subscribed', { attempt });
            announce();
          } else say('subscribe refused', { ret_msg: msg.ret_msg });
          return;
        }
        const queue = typeof msg.topic === 'string' ? queueOf(msg.topic, queues) : null;
        if (!queue) return;
        pending.push({ queue, body: data });
        const w = wake;
        wake = null;
        w?.();
      });
      ws.on('close', () => {
        clearInterval(ping);
        wsUp = false;
        say('websocket closed; reconnecting');
        resolve();
      });
      ws.on('error', (err) => say('websocket error', { err: err.message }));
    });
    await sleep(Math.min(2000, 200 * (attempt + 1)));
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    say('stand-in failed', { err: (err as Error).message });
    process.exit(1);
  });
}
