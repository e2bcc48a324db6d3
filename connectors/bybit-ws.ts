// Direct Bybit websocket connector (EXCHANGE_STREAM_SOURCE=direct, for deployments without the
// ws-gateway service): bybit-api's WebsocketClient on the private topics order, execution, position
// and wallet and on the public tickers of the configured symbols, writing the same records to the
// same topics as the ws-gateway bridge, through the same parsing (connectors/bybit-stream-format.ts).
//
// - Which Bybit: BYBIT_ENV only (sim: ws://127.0.0.1:BYBIT_SIM_PORT/v5/private, where the simulator
//   serves private and public topics on one endpoint; testnet / demo / mainnet: bybit-api's own URLs).
//   BYBIT_WS_URL overrides the URL (e.g. a simulator on another port).
// - Connections, heartbeats, reconnects, re-authentication and resubscription are bybit-api's. Each
//   drop is logged and each reconnect counted (pipeline_bridge_reconnects_total{bridge="bybit-ws",
//   peer="bybit"}). Messages Bybit pushed while a connection was down are NOT replayed by Bybit: the
//   reconciler (Bybit REST → the same exchange topics) repairs that gap.
// - Messages are handled one at a time in arrival order (so per-symbol order on each topic is the
//   stream's order); a Kafka or registry failure is retried with backoff until it succeeds, holding
//   the messages behind it in memory (a websocket cannot be paused). What is still unwritten when the
//   process stops is lost here and repaired by the reconciler too.
// - Unusable messages go to exchange.dlq (original JSON, reason as in the bridge, original_topic
//   `ws:<wsKey>`); ticker categories come from the connection (v5SpotPublic → spot, …).
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { WebsocketClient, type WSClientConfigurableOptions } from 'bybit-api';
import type { Headers, KafkaPort, OutMessage, ProducerPort } from '../runtime/kafka.ts';
import { createCoalescer, mergeByTopic } from '../runtime/coalesce.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { Codec } from '../pipelines/runner.ts';
import { systemClock, type Clock } from '../runtime/clock.ts';
import { RejectedError } from '../runtime/errors.ts';
import { backoffMs, connectWithBackoff } from '../runtime/retry.ts';
import { topicName, type TopicName } from '../runtime/topics.ts';
import { describeProblems, parseStreamMessage, streamDeadLetter, TickerBook, unwrap, type StreamRejectReason } from './bybit-stream-format.ts';

export const name = 'bybit-ws';

export const PRIVATE_TOPICS = ['order', 'execution', 'position', 'wallet'] as const;

/** Headers written on every record the connector produces. */
export const WS_DIRECT_HEADERS = {
  wsKey: 'ws.key',
  receivedAt: 'received_at',
  bybitTopic: 'bybit.topic',
  bybitMessageId: 'bybit.message_id',
} as const;

const int = z.coerce.number().int();
const opt = <T extends z.ZodTypeAny>(s: T) => z.preprocess((v) => (v === '' ? undefined : v), s);
const list = (v: unknown) => (Array.isArray(v) ? v : typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v);

/** Settings (BYBIT_ENV … BYBIT_SIM_PORT and TOPIC_PREFIX exist in runtime/config.ts; the rest are new). */
export const configSchema = z.object({
  TOPIC_PREFIX: opt(z.string().regex(/^[a-zA-Z0-9._-]*$/).default('')).describe('Prefix for every topic.'),
  EXCHANGE_STREAM_SOURCE: opt(z.enum(['ws-gateway', 'direct']).default('ws-gateway')).describe('Where the order manager reads Bybit\'s streams: the ws-gateway service\'s RabbitMQ queues, or its own websocket connection (bybit-api).'),
  BYBIT_ENV: opt(z.enum(['sim', 'testnet', 'demo', 'mainnet']).default('sim')),
  BYBIT_API_KEY: opt(z.string().default('sim-key')),
  BYBIT_API_SECRET: opt(z.string().default('sim-secret')),
  BYBIT_SIM_PORT: opt(int.min(1).max(65535).default(9380)),
  BYBIT_WS_URL: opt(z.string().regex(/^wss?:\/\//).optional()).describe('Websocket URL for every Bybit connection of the direct connector; unset: chosen by BYBIT_ENV (the simulator, or bybit-api\'s testnet/demo/mainnet URLs).'),
  BYBIT_WS_TICKER_SYMBOLS: z.preprocess(list, z.array(z.string().regex(/^[A-Z0-9]{2,32}$/)).default([])).describe('Comma-separated symbols whose public tickers the direct connector follows; empty: ASSETS.'),
  BYBIT_WS_TICKER_CATEGORIES: z.preprocess((v) => list(v) ?? ['linear'], z.array(z.enum(['spot', 'linear'])).min(1)).describe('Categories of the public tickers the direct connector follows (comma-separated spot,linear).'),
  BYBIT_WS_RETRY_MAX_MS: opt(int.min(100).default(10000)).describe('Longest backoff between Kafka retries of the direct websocket connector, ms.'),
});
export type BybitWsConfig = z.output<typeof configSchema>;

export function parseConfig(env: Record<string, unknown> = process.env): BybitWsConfig {
  return configSchema.parse(env);
}

/** Input and output (house style 8). */
export const inputSchema = { websocket: 'bybit-v5', topics: [...PRIVATE_TOPICS, 'tickers.{symbol}'] } as const;
export const outputSchemas = [
  { topic: 'exchange.orders', record: 'ExchangeOrderUpdate' },
  { topic: 'exchange.executions', record: 'Execution' },
  { topic: 'exchange.positions', record: 'Position' },
  { topic: 'exchange.wallet', record: 'WalletBalance' },
  { topic: 'market.tickers', record: 'Ticker' },
  { topic: 'exchange.dlq', record: 'DeadLetter' },
] as const;

/** WebsocketClient options for an environment (exported for tests: the choice is config only). */
export function wsOptions(cfg: BybitWsConfig): WSClientConfigurableOptions {
  const base: WSClientConfigurableOptions = { key: cfg.BYBIT_API_KEY, secret: cfg.BYBIT_API_SECRET, market: 'v5' };
  if (cfg.BYBIT_WS_URL) return { ...base, wsUrl: cfg.BYBIT_WS_URL };
  switch (cfg.BYBIT_ENV) {
    case 'sim':
      return { ...base, wsUrl: `ws://127.0.0.1:${cfg.BYBIT_SIM_PORT}/v5/private` };
    case 'testnet':
      return { ...base, testnet: true };
    case 'demo':
      return { ...base, demoTrading: true };
    case 'mainnet':
      return base;
  }
}

/** Category of a public connection, from bybit-api's wsKey. */
export function categoryOfWsKey(wsKey: string): string | null {
  const m = /^v5(Spot|Linear|Inverse|Option)Public$/.exec(wsKey);
  return m ? m[1]!.toLowerCase() : null;
}

export interface BybitWsDeps {
  kafka: KafkaPort;
  codec: Codec;
  logger: Logger;
  metrics: Metrics;
  config: BybitWsConfig;
  /** Symbols to follow tickers of when BYBIT_WS_TICKER_SYMBOLS is empty (the ASSETS setting). */
  assets?: readonly string[];
  clock?: Clock;
}

export interface BybitWsConnector {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Subscribed (private authenticated) with a connected Kafka producer and no connection down. */
  ready(): boolean;
}

/** bybit-api's logger, routed to ours (its default prints every connect to the console). */
function bybitLogger(log: Logger) {
  return {
    trace: () => {},
    info: (...args: unknown[]) => log.debug({ bybitApi: args.slice(1) }, String(args[0])),
    error: (...args: unknown[]) => log.warn({ bybitApi: args.slice(1).map((a) => (a instanceof Error ? a.message : a)) }, String(args[0])),
  };
}

export function createBybitWs(deps: BybitWsDeps): BybitWsConnector {
  const cfg = deps.config;
  const clock = deps.clock ?? systemClock;
  const log = deps.logger.child({ connector: name, env: cfg.BYBIT_ENV });
  const mb = deps.metrics.bridge;
  const topic = (t: TopicName) => topicName(t, cfg.TOPIC_PREFIX);
  const dlqTopic = topic('exchange.dlq');
  const symbols = cfg.BYBIT_WS_TICKER_SYMBOLS.length > 0 ? cfg.BYBIT_WS_TICKER_SYMBOLS : [...(deps.assets ?? [])];
  const tickers = new TickerBook();
  const abort = new AbortController();

  let client: WebsocketClient | null = null;
  let producer: ProducerPort | null = null;
  let producerUp = false;
  let subscribed = false;
  let stopping = false;
  const down = new Set<string>();
  let chain: Promise<void> = Promise.resolve();
  let queued = 0;

  /** Send with retries until it succeeds or the connector stops: one produce request for all topics. */
  const sendAll = async (byTopic: Map<string, OutMessage[]>): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      try {
        await producer!.sendBatch([...byTopic].map(([topic, messages]) => ({ topic, messages })));
        return;
      } catch (err) {
        const delay = backoffMs(attempt, 200, cfg.BYBIT_WS_RETRY_MAX_MS);
        log.warn({ err: (err as Error).message, attempt: attempt + 1, delayMs: delay, queued }, 'Kafka send failed; retrying');
        await sleep(delay, undefined, { signal: abort.signal });
      }
    }
  };

  // Stream messages are handled one after another (order kept); their records are written by a
  // coalescing writer: while one produce request is in flight, the next messages' records gather
  // and go out together in the next, in order. One request per stream message (an order update,
  // an execution, a position, a wallet change: five or six per order) was most of the order
  // manager's produce requests in the bench.
  const writer = createCoalescer<Map<string, OutMessage[]>>((maps) => sendAll(mergeByTopic(maps)));

  const handle = async (event: Record<string, unknown>): Promise<void> => {
    const receivedAt = clock.now();
    const wsKey = typeof event.wsKey === 'string' ? event.wsKey : 'unknown';
    const { wsKey: _drop, ...raw } = event;
    mb.in.inc({ bridge: name, source: wsKey });
    const byTopic = new Map<string, OutMessage[]>();
    const add = (t: string, m: OutMessage) => byTopic.set(t, [...(byTopic.get(t) ?? []), m]);
    const state: { rejected: StreamRejectReason | null } = { rejected: null };
    const deadLetter = async (reason: StreamRejectReason, detail: string) => {
      state.rejected = reason;
      const value = streamDeadLetter({ origin: `ws:${wsKey}`, bytes: Buffer.from(JSON.stringify(raw)), headers: { [WS_DIRECT_HEADERS.wsKey]: wsKey }, stage: name, reason, detail, traceId: null, timestamp: null, failedAt: clock.now() });
      add(dlqTopic, { key: null, value: await deps.codec.encode(dlqTopic, value), headers: { [WS_DIRECT_HEADERS.wsKey]: wsKey, [WS_DIRECT_HEADERS.receivedAt]: String(receivedAt), 'dlq.reason': reason } });
      log.warn({ wsKey, reason, detail: detail.slice(0, 300) }, 'Bybit stream message dead-lettered');
    };
    for (let attempt = 0; ; attempt++) {
      byTopic.clear();
      state.rejected = null;
      try {
        const u = unwrap(raw);
        if (!u.ok) {
          await deadLetter(u.reason, u.detail);
        } else {
          const m = u.message;
          const parsed = parseStreamMessage(m, { source: 'ws', observedAt: receivedAt, tickerCategory: categoryOfWsKey(wsKey) ?? 'linear', tickers });
          if (!parsed.ok) {
            await deadLetter(parsed.reason, parsed.detail);
          } else {
            const headers: Headers = { [WS_DIRECT_HEADERS.wsKey]: wsKey, [WS_DIRECT_HEADERS.receivedAt]: String(receivedAt), [WS_DIRECT_HEADERS.bybitTopic]: m.topic };
            if (m.id) headers[WS_DIRECT_HEADERS.bybitMessageId] = m.id;
            const problems = [...parsed.problems];
            for (const r of parsed.records) {
              const t = topic(r.topic);
              try {
                add(t, { key: r.key, value: await deps.codec.encode(t, r.value), headers });
              } catch (err) {
                if (!(err instanceof RejectedError)) throw err;
                problems.push({ index: -1, detail: `${r.key}: ${err.message}` });
              }
            }
            if (parsed.skipped > 0) mb.rejected.inc({ bridge: name, reason: 'ticker_delta_without_snapshot' }, parsed.skipped);
            if (problems.length > 0) await deadLetter('invalid_item', describeProblems(problems, parsed.items));
          }
        }
        break;
      } catch (err) {
        // the registry is unreachable (encoding): retry like a Kafka failure
        const delay = backoffMs(attempt, 200, cfg.BYBIT_WS_RETRY_MAX_MS);
        log.warn({ err: (err as Error).message, attempt: attempt + 1, delayMs: delay }, 'encoding failed; retrying');
        await sleep(delay, undefined, { signal: abort.signal });
      }
    }
    if (state.rejected) mb.rejected.inc({ bridge: name, reason: state.rejected });
    if (byTopic.size === 0) return;
    void writer.write(byTopic).then(
      () => {
        for (const [t, msgs] of byTopic) if (t !== dlqTopic) mb.out.inc({ bridge: name, destination: t }, msgs.length);
      },
      (err: Error) => {
        if (!abort.signal.aborted) log.error({ err: err.message }, 'stream message not written');
      },
    );
  };

  const enqueue = (event: Record<string, unknown>) => {
    if (stopping) return;
    queued++;
    chain = chain
      .then(() => handle(event))
      .catch((err: Error) => {
        if (!abort.signal.aborted) log.error({ err: err.message }, 'stream message not written');
      })
      .finally(() => queued--);
  };

  return {
    start: async () => {
      producer = deps.kafka.producer();
      // No deadline: a bridge waits for Kafka as long as it runs; stop() aborts the wait.
      await connectWithBackoff(() => producer!.connect(), log, cfg.BYBIT_WS_RETRY_MAX_MS, { deadlineMs: Infinity, signal: abort.signal });
      producerUp = true;
      const c = new WebsocketClient(wsOptions(cfg), bybitLogger(log));
      client = c;
      c.on('update', (evt: Record<string, unknown>) => enqueue(evt));
      c.on('reconnect', ({ wsKey }: { wsKey: string }) => {
        down.add(wsKey);
        log.warn({ wsKey }, 'Bybit websocket dropped; bybit-api reconnects (messages of the gap are the reconciler\'s job)');
      });
      c.on('reconnected', ({ wsKey }: { wsKey: string }) => {
        down.delete(wsKey);
        mb.reconnects.inc({ bridge: name, peer: 'bybit' });
        log.info({ wsKey }, 'Bybit websocket reconnected and resubscribed');
      });
      c.on('exception', (e: Record<string, unknown>) => log.warn({ wsKey: e?.wsKey, detail: JSON.stringify(e).slice(0, 500) }, 'Bybit websocket exception'));
      // The category argument of private topics is only used to pick the connection: one private one.
      const subs: Array<Promise<unknown>> = [...c.subscribeV5([...PRIVATE_TOPICS], 'linear', true)];
      if (symbols.length > 0) for (const cat of cfg.BYBIT_WS_TICKER_CATEGORIES) subs.push(...c.subscribeV5(symbols.map((s) => `tickers.${s}`), cat));
      else log.warn('no ticker symbols configured (BYBIT_WS_TICKER_SYMBOLS / ASSETS): tickers not followed');
      await Promise.all(subs);
      subscribed = true;
      log.info({ private: PRIVATE_TOPICS, symbols, categories: cfg.BYBIT_WS_TICKER_CATEGORIES }, 'subscribed');
    },
    stop: async () => {
      if (stopping) return;
      stopping = true;
      client?.removeAllListeners();
      client?.closeAll(true);
      // Let what was received be written; a Kafka outage at stop ends the wait (the reconciler repairs).
      const timer = new AbortController();
      const drained = chain.then(() => writer.idle()).then(() => true);
      const grace = sleep(Math.min(5000, cfg.BYBIT_WS_RETRY_MAX_MS), false, { signal: timer.signal }).catch(() => false);
      if (!(await Promise.race([drained, grace]))) log.warn({ queued, unwritten: writer.pending() }, 'stopping with stream messages not yet written');
      timer.abort();
      abort.abort();
      await chain;
      await writer.idle();
      if (producerUp) await producer?.disconnect().catch(() => {});
      producerUp = false;
      log.info('direct websocket connector stopped');
    },
    ready: () => producerUp && subscribed && down.size === 0 && !stopping,
  };
}
