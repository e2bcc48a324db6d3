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
// - Messages are parsed one at a time in arrival order (so per-symbol order on each topic is the
//   stream's order, and ticker deltas are completed from every snapshot before them); a Kafka or
//   registry failure is retried with backoff until it succeeds, holding the messages behind it in
//   memory (a websocket cannot be paused), up to BYBIT_WS_BUFFER_MAX_MESSAGES / _MAX_BYTES. When
//   that is full the oldest waiting ticker is dropped (the next ticker supersedes it), else the new
//   message: a dropped private message (order, execution, position, wallet) is counted
//   (pipeline_bridge_messages_dropped_total), logged once per episode and reported through onGap,
//   since it is a gap the reconciler repairs from Bybit REST. What is still unwritten when the
//   process stops is lost here and repaired by the reconciler too.
// - Unusable messages go to exchange.dlq (original JSON, reason as in the bridge, original_topic
//   `ws:<wsKey>`); ticker categories come from the connection (v5SpotPublic → spot, …).
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { int, opt } from '../runtime/setting-types.ts';
import { WebsocketClient, type WSClientConfigurableOptions } from 'bybit-api';
import type { Headers, KafkaPort, OutMessage, ProducerPort } from '../runtime/kafka.ts';
import { chunkByBytes, createCoalescer, recordBytes } from '../runtime/coalesce.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { Codec } from '../runtime/codec.ts';
import { systemClock, type Clock } from '../runtime/clock.ts';
import { signMessage } from './bybit-sign.ts';
import { RejectedError } from '../runtime/errors.ts';
import { backoffMs, connectWithBackoff } from '../runtime/retry.ts';
import { topicName, type TopicName } from '../runtime/topics.ts';
import { describeProblems, parseStreamMessage, streamDeadLetter, TickerBook, unwrap, type ParseResult, type StreamMessage, type StreamRejectReason } from './bybit-stream-format.ts';

export const name = 'bybit-ws';

export const PRIVATE_TOPICS = ['order', 'execution', 'position', 'wallet'] as const;

/** Headers written on every record the connector produces. */
export const WS_DIRECT_HEADERS = {
  wsKey: 'ws.key',
  receivedAt: 'received_at',
  bybitTopic: 'bybit.topic',
  bybitMessageId: 'bybit.message_id',
} as const;

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
  BYBIT_WS_BUFFER_MAX_MESSAGES: opt(int.min(1).default(100000)).describe('Most stream messages the direct connector keeps waiting while Kafka or the registry is unreachable (a websocket cannot be paused). When full: the oldest ticker is dropped, else the new message; a dropped private message is a gap the reconciler repairs.'),
  BYBIT_WS_BUFFER_MAX_BYTES: opt(int.min(65536).default(33554432)).describe('Most bytes (JSON as received) of stream messages the direct connector keeps waiting; as BYBIT_WS_BUFFER_MAX_MESSAGES.'),
  BYBIT_DCP_WINDOW_S: opt(int.refine((v) => v === 0 || (v >= 3 && v <= 300), '0 (off) or 3..300').default(0)).describe('Disconnection protection (Bybit DCP) armed by the direct connector: when every private connection of ours has been gone this many seconds, the exchange cancels our open orders of BYBIT_DCP_PRODUCTS. 0: off. With ws-gateway the gateway owns the connection (docs/deployment.md).'),
  BYBIT_DCP_PRODUCTS: z.preprocess((v) => list(v) ?? ['SPOT', 'DERIVATIVES'], z.array(z.enum(['SPOT', 'DERIVATIVES'])).min(1)).describe('Products DCP covers (comma-separated SPOT,DERIVATIVES; DERIVATIVES is linear).'),
  BYBIT_WS_BATCH_MAX_BYTES: opt(int.min(1024).max(1000000).default(524288)).describe('Largest Kafka send of the direct connector, bytes (records, keys, headers); more goes in several sends, under the broker message.max.bytes of 1 MiB.'),
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
  const base: WSClientConfigurableOptions = { key: cfg.BYBIT_API_KEY, secret: cfg.BYBIT_API_SECRET, market: 'v5', customSignMessageFn: signMessage };
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
  /**
   * Private stream messages were lost (dropped from a full buffer, or pushed while a private
   * connection was down): the order state may lag Bybit until the reconciler has run.
   */
  onGap?: (why: 'buffer_full' | 'reconnect') => void;
  /**
   * Sets Bybit's DCP window for a product (POST /v5/order/disconnected-cancel-all through the REST
   * core); needed when BYBIT_DCP_WINDOW_S > 0. The connector then subscribes the private dcp
   * topics, which is what arms the protection (and re-arms it on every reconnect, as bybit-api
   * resubscribes).
   */
  setDcpWindow?: (product: 'SPOT' | 'DERIVATIVES', seconds: number) => Promise<void>;
}

/** The private topic that arms DCP for a product. */
export const DCP_TOPICS = { SPOT: 'dcp.spot', DERIVATIVES: 'dcp.future' } as const;

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
  /** Private stream messages given up since the buffer last emptied (one gap report each episode). */
  let gapDropped = 0;

  /** Retry until it succeeds or the connector stops (Kafka and the registry are waited for). */
  const untilDone = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const delay = backoffMs(attempt, 200, cfg.BYBIT_WS_RETRY_MAX_MS);
        log.warn({ err: (err as Error).message, attempt: attempt + 1, delayMs: delay, buffered: writer.pending(), bufferedBytes: writer.bytes() }, `${what} failed; retrying`);
        await sleep(delay, undefined, { signal: abort.signal });
      }
    }
  };

  /** A received stream message, parsed (so ticker deltas are completed in arrival order) but not yet encoded. */
  interface Received {
    raw: Record<string, unknown>;
    wsKey: string;
    receivedAt: number;
    /** The message's JSON size: what the buffer bound counts. */
    bytes: number;
    ticker: boolean;
    parsed: { ok: true; message: StreamMessage; result: ParseResult } | { ok: false; reason: StreamRejectReason; detail: string };
  }

  /** Records and dead letters of received messages, encoded (the registry is needed once per schema). */
  const encode = async (items: Received[]): Promise<{ byTopic: Map<string, OutMessage[]>; rejected: StreamRejectReason[] }> => {
    const byTopic = new Map<string, OutMessage[]>();
    const rejected: StreamRejectReason[] = [];
    const add = (t: string, m: OutMessage) => {
      const list = byTopic.get(t);
      if (list) list.push(m);
      else byTopic.set(t, [m]);
    };
    for (const it of items) {
      const deadLetter = async (reason: StreamRejectReason, detail: string) => {
        rejected.push(reason);
        const value = streamDeadLetter({ origin: `ws:${it.wsKey}`, bytes: Buffer.from(JSON.stringify(it.raw)), headers: { [WS_DIRECT_HEADERS.wsKey]: it.wsKey }, stage: name, reason, detail, traceId: null, timestamp: null, failedAt: clock.now() });
        add(dlqTopic, { key: null, value: await deps.codec.encode(dlqTopic, value), headers: { [WS_DIRECT_HEADERS.wsKey]: it.wsKey, [WS_DIRECT_HEADERS.receivedAt]: String(it.receivedAt), 'dlq.reason': reason } });
        log.warn({ wsKey: it.wsKey, reason, detail: detail.slice(0, 300) }, 'Bybit stream message dead-lettered');
      };
      const p = it.parsed;
      if (!p.ok) {
        await deadLetter(p.reason, p.detail);
        continue;
      }
      if (!p.result.ok) {
        await deadLetter(p.result.reason, p.result.detail);
        continue;
      }
      const m = p.message;
      const headers: Headers = { [WS_DIRECT_HEADERS.wsKey]: it.wsKey, [WS_DIRECT_HEADERS.receivedAt]: String(it.receivedAt), [WS_DIRECT_HEADERS.bybitTopic]: m.topic };
      if (m.id) headers[WS_DIRECT_HEADERS.bybitMessageId] = m.id;
      const problems = [...p.result.problems];
      for (const r of p.result.records) {
        const t = topic(r.topic);
        try {
          add(t, { key: r.key, value: await deps.codec.encode(t, r.value), headers });
        } catch (err) {
          if (!(err instanceof RejectedError)) throw err;
          problems.push({ index: -1, detail: `${r.key}: ${err.message}` });
        }
      }
      if (problems.length > 0) await deadLetter('invalid_item', describeProblems(problems, p.result.items));
    }
    return { byTopic, rejected };
  };

  // Stream messages are parsed one after another as they arrive (order kept); their records are
  // written by a coalescing writer: while one produce request is in flight, the next messages
  // gather and go out together in the next, in order (in sends of at most BYBIT_WS_BATCH_MAX_BYTES).
  // One request per stream message (an order update, an execution, a position, a wallet change:
  // five or six per order) was most of the order manager's produce requests in the bench. A
  // websocket cannot be paused, so while Kafka (or the registry) is unreachable the writer's buffer
  // is bounded: tickers are given up oldest first (the next one supersedes them), then new private
  // messages, which is a gap the reconciler repairs from Bybit REST (onGap).
  const writer = createCoalescer<Received>(
    async (items) => {
      const { byTopic, rejected } = await untilDone('encoding', () => encode(items));
      for (const chunk of chunkByBytes(byTopic, recordBytes, cfg.BYBIT_WS_BATCH_MAX_BYTES)) {
        await untilDone('Kafka send', () => producer!.sendBatch([...chunk].map(([topic, messages]) => ({ topic, messages }))));
      }
      for (const [t, msgs] of byTopic) if (t !== dlqTopic) mb.out.inc({ bridge: name, destination: t }, msgs.length);
      for (const r of rejected) mb.rejected.inc({ bridge: name, reason: r });
    },
    {
      maxItems: cfg.BYBIT_WS_BUFFER_MAX_MESSAGES,
      maxBytes: cfg.BYBIT_WS_BUFFER_MAX_BYTES,
      size: (r) => r.bytes,
      // The oldest waiting ticker; none (-1): the incoming message itself is given up.
      shed: (waiting) => waiting.findIndex((r) => r.ticker),
    },
  );

  const buffered = () => mb.buffered.set({ bridge: name }, writer.bytes());

  const dropped = (r: Received) => {
    if (r.ticker) {
      mb.dropped.inc({ bridge: name, reason: 'buffer_full_ticker' });
      return;
    }
    mb.dropped.inc({ bridge: name, reason: 'buffer_full_private' });
    if (gapDropped++ === 0) {
      log.error(
        { wsKey: r.wsKey, buffered: writer.pending(), bufferedBytes: writer.bytes(), maxMessages: cfg.BYBIT_WS_BUFFER_MAX_MESSAGES, maxBytes: cfg.BYBIT_WS_BUFFER_MAX_BYTES },
        'stream buffer full (Kafka or the registry unreachable): private stream messages are being dropped; a gap the reconciler repairs from Bybit REST',
      );
      deps.onGap?.('buffer_full');
    }
  };

  const receive = (event: Record<string, unknown>): void => {
    if (stopping) return;
    const receivedAt = clock.now();
    const wsKey = typeof event.wsKey === 'string' ? event.wsKey : 'unknown';
    const { wsKey: _drop, ...raw } = event;
    mb.in.inc({ bridge: name, source: wsKey });
    const u = unwrap(raw);
    let parsed: Received['parsed'];
    if (!u.ok) parsed = { ok: false, reason: u.reason, detail: u.detail };
    else {
      const result = parseStreamMessage(u.message, { source: 'ws', observedAt: receivedAt, tickerCategory: categoryOfWsKey(wsKey) ?? 'linear', tickers });
      if (result.ok && result.skipped > 0) mb.rejected.inc({ bridge: name, reason: 'ticker_delta_without_snapshot' }, result.skipped);
      parsed = { ok: true, message: u.message, result };
    }
    const ticker = parsed.ok && parsed.result.ok && parsed.result.kind === 'ticker';
    if (ticker && parsed.ok && parsed.result.ok && parsed.result.records.length === 0 && parsed.result.problems.length === 0) return; // a skipped delta: nothing to write
    const r: Received = { raw, wsKey, receivedAt, bytes: Buffer.byteLength(JSON.stringify(raw)), ticker, parsed };
    writer.write(r).then(
      () => {
        buffered();
        if (writer.pending() === 0 && gapDropped > 0) {
          log.warn({ dropped: gapDropped }, 'stream buffer drained; private stream messages dropped meanwhile are the reconciler\'s to repair');
          gapDropped = 0;
        }
      },
      (err: Error) => {
        buffered();
        if (err instanceof RejectedError && err.code === 'buffer_full') dropped(r);
        else if (!abort.signal.aborted) log.error({ err: err.message }, 'stream message not written');
      },
    );
    buffered();
  };

  return {
    start: async () => {
      producer = deps.kafka.producer();
      // No deadline: a bridge waits for Kafka as long as it runs; stop() aborts the wait.
      await connectWithBackoff(() => producer!.connect(), log, cfg.BYBIT_WS_RETRY_MAX_MS, { deadlineMs: Infinity, signal: abort.signal });
      producerUp = true;
      const c = new WebsocketClient(wsOptions(cfg), bybitLogger(log));
      client = c;
      c.on('update', (evt: Record<string, unknown>) => receive(evt));
      c.on('reconnect', ({ wsKey }: { wsKey: string }) => {
        down.add(wsKey);
        log.warn({ wsKey }, 'Bybit websocket dropped; bybit-api reconnects (messages of the gap are the reconciler\'s job)');
      });
      c.on('reconnected', ({ wsKey }: { wsKey: string }) => {
        down.delete(wsKey);
        mb.reconnects.inc({ bridge: name, peer: 'bybit' });
        log.info({ wsKey }, 'Bybit websocket reconnected and resubscribed');
        if (categoryOfWsKey(wsKey) === null) deps.onGap?.('reconnect'); // the private connection
      });
      c.on('exception', (e: Record<string, unknown>) => log.warn({ wsKey: e?.wsKey, detail: JSON.stringify(e).slice(0, 500) }, 'Bybit websocket exception'));
      // The category argument of private topics is only used to pick the connection: one private one.
      const subs: Array<Promise<unknown>> = [...c.subscribeV5([...PRIVATE_TOPICS], 'linear', true)];
      if (cfg.BYBIT_DCP_WINDOW_S > 0) {
        // The window first, then the subscription that arms it: if this process (or its host)
        // vanishes, the exchange cancels what we leave resting. A failure here fails the start.
        if (!deps.setDcpWindow) throw new Error('BYBIT_DCP_WINDOW_S is set but the connector was given no way to set the window (setDcpWindow)');
        for (const p of cfg.BYBIT_DCP_PRODUCTS) await deps.setDcpWindow(p, cfg.BYBIT_DCP_WINDOW_S);
        subs.push(...c.subscribeV5(cfg.BYBIT_DCP_PRODUCTS.map((p) => DCP_TOPICS[p]), 'linear', true));
        log.info({ window_s: cfg.BYBIT_DCP_WINDOW_S, products: cfg.BYBIT_DCP_PRODUCTS }, 'Bybit disconnection protection armed');
      }
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
      const drained = writer.idle().then(() => true);
      const grace = sleep(Math.min(5000, cfg.BYBIT_WS_RETRY_MAX_MS), false, { signal: timer.signal }).catch(() => false);
      if (!(await Promise.race([drained, grace]))) log.warn({ unwritten: writer.pending() }, 'stopping with stream messages not yet written');
      timer.abort();
      abort.abort();
      await writer.idle();
      if (producerUp) await producer?.disconnect().catch(() => {});
      producerUp = false;
      log.info('direct websocket connector stopped');
    },
    ready: () => producerUp && subscribed && down.size === 0 && !stopping,
  };
}
