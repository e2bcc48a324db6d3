// Which units make up each service. A unit is a stage under the runner or a connector; the order
// is the start order (downstream first, so nothing is produced before its consumer exists).
import type { RuntimeParts } from '../runtime/service.ts';
import { defineUnit, settingsOf, type UnitDefinition } from '../runtime/unit.ts';
import { schemaRegistryUrl } from '../runtime/config.ts';
import { createTopicCodec } from '../schemas/topic-codec.ts';
import { runnerDeps, stageUnit } from '../pipelines/stage-unit.ts';
import { createSignalDecideStage, drainRisk, GROUP as SIGNAL_DECIDE_GROUP, RISK_GROUP } from '../pipelines/signal-decide.ts';
import { topicName } from '../runtime/topics.ts';
import { rebuildBooks } from '../pipelines/pnl-sql.ts';
import { registerPnlMetrics } from '../pipelines/pnl-metrics.ts';
import { parseConfig as validateConfig, configSchema as validateSettings } from '../pipelines/validate.ts';
import { createSignalBridge, parseConfig as bridgeConfig, configSchema as signalBridgeSettings } from '../connectors/signal-bridge.ts';
import { createSizeRiskStage, parseConfig as riskConfig, configSchema as riskSettings } from '../pipelines/size-risk.ts';
import { createPlaceStage, parseConfig as placeConfig, configSchema as placeSettings } from '../pipelines/place.ts';
import { createBybitCaller, createBybitRest, parseConfig as restConfig, configSchema as bybitRestSettings } from '../connectors/bybit-rest.ts';
import { createExchangeSync, parseConfig as syncConfig, configSchema as exchangeSyncSettings } from '../connectors/exchange-sync.ts';
import { createTrackStage, parseConfig as trackConfig, configSchema as trackSettings } from '../pipelines/track.ts';
import { name as TICKER_PROJECTION, runTickerProjection, parseConfig as tickerProjectionConfig, configSchema as tickerProjectionSettings } from '../pipelines/ticker-projection.ts';
import { MODEL_UNITS } from '../model/service.ts';
import { reconcilerUnit } from '../connectors/reconciler.ts';
import { killSwitchUnit } from '../connectors/kill-switch.ts';
import { protectUnit } from '../connectors/protect.ts';
import { createWsGatewayBridge, parseConfig as wsGatewayConfig, configSchema as wsGatewaySettings } from '../connectors/ws-gateway-bridge.ts';
import { createBybitWs, parseConfig as bybitWsConfig, configSchema as bybitWsSettings } from '../connectors/bybit-ws.ts';
import { createEventsOutBridge, parseConfig as eventsOutConfig, configSchema as eventsOutSettings } from '../connectors/events-out-bridge.ts';

/** Bybit's streams into the exchange topics: from ws-gateway's queues, or our own websocket. */
const exchangeStreams = defineUnit({
  name: 'exchange-streams',
  doc: "Bybit's private and ticker streams (ws-gateway queues or direct websocket) → exchange.*, market.tickers",
  settings: [bybitWsSettings, wsGatewaySettings, bybitRestSettings],
  inputs: ['bybit:ws', 'rabbitmq:WS_GATEWAY_ORDER_QUEUE', 'rabbitmq:WS_GATEWAY_EXECUTION_QUEUE', 'rabbitmq:WS_GATEWAY_POSITION_QUEUE', 'rabbitmq:WS_GATEWAY_WALLET_QUEUE', 'rabbitmq:WS_GATEWAY_TICKER_QUEUE'],
  outputs: ['exchange.orders', 'exchange.executions', 'exchange.positions', 'exchange.wallet', 'market.tickers', 'exchange.dlq'],
  writes: [],
  create: async (rt) => {
    const ws = bybitWsConfig(rt.cfg);
    if (ws.EXCHANGE_STREAM_SOURCE === 'direct') {
      // Tickers of the traded assets: ASSETS, else what the model service trades.
      const assets = (rt.cfg.ASSETS as string[]).length ? (rt.cfg.ASSETS as string[]) : (rt.cfg.MODEL_ASSETS as string[]);
      // DCP's window goes through the one REST core (limiter, error mapping) like every Bybit call.
      const rest = createBybitCaller({ config: restConfig(rt.cfg), clock: rt.clock, logger: rt.logger.child({ unit: 'bybit-ws-dcp' }) });
      const setDcpWindow = async (product: 'SPOT' | 'DERIVATIVES', seconds: number) => {
        await rest.call('query', '/v5/order/disconnected-cancel-all', undefined, () => rest.client.setDisconnectCancelAllWindowV2({ product, timeWindow: seconds }) as never);
      };
      const c = createBybitWs({ kafka: rt.kafka, codec: rt.codec, logger: rt.logger, metrics: rt.metrics, config: ws, assets, clock: rt.clock, setDcpWindow });
      await c.start();
      return { name: 'bybit-ws', ready: () => c.ready(), stop: () => c.stop() };
    }
    const b = createWsGatewayBridge({ kafka: rt.kafka, codec: rt.codec, logger: rt.logger, metrics: rt.metrics, config: wsGatewayConfig(rt.cfg), clock: rt.clock });
    await b.start();
    return { name: 'ws-gateway-bridge', ready: () => b.ready(), stop: () => b.stop() };
  },
});

const eventsOut = defineUnit({
  name: 'events-out-bridge',
  doc: 'orders.events → RabbitMQ order events queue',
  settings: [eventsOutSettings],
  inputs: ['orders.events'],
  outputs: ['rabbitmq:ORDER_EVENTS_QUEUE', 'orders.dlq'],
  writes: [],
  create: async (rt) => {
    const b = createEventsOutBridge({ kafka: rt.kafka, codec: rt.codec, logger: rt.logger, metrics: rt.metrics, config: eventsOutConfig(rt.cfg), clock: rt.clock, onFatal: rt.fatal });
    await b.start();
    return { name: 'events-out-bridge', ready: () => b.ready(), stop: () => b.stop() };
  },
});

const track = stageUnit({
  name: 'track',
  doc: 'orders.submissions + exchange.* → orders.events; order state, positions, balances in PostgreSQL',
  settings: [trackSettings],
  inputs: ['orders.submissions', 'exchange.orders', 'exchange.executions', 'exchange.positions', 'exchange.wallet'],
  outputs: ['orders.events', 'orders.dlq'],
  writes: ['orders(exchange state)', 'order_state_history(exchange)', 'order_events', 'invalid_transitions', 'executions', 'positions', 'balances', 'pnl_books', 'pnl_days'],
  make: async (rt) => {
    // Books missing over stored executions (a database upgraded from a release without them) are
    // rebuilt before the first record is booked on top of them.
    const rebuilt = await rebuildBooks(rt.db);
    if (rebuilt.rebuilt) rt.logger.info(rebuilt, 'P&L books rebuilt from stored executions');
    registerPnlMetrics(rt.metrics.registry, rt.db, rt.clock);
    return createTrackStage({ config: trackConfig(rt.cfg), db: rt.db, clock: rt.clock, logger: rt.logger, registry: rt.metrics.registry });
  },
});

/**
 * market.tickers → `tickers`, outside the exactly-once path: its own consumer group, at-least-once,
 * one ts-guarded upsert per Kafka batch (pipelines/ticker-projection.ts says why that is enough).
 */
const tickerProjection = defineUnit({
  name: TICKER_PROJECTION,
  doc: 'market.tickers → tickers in PostgreSQL (newest exchange time wins; at-least-once, one upsert per batch, no Kafka transaction)',
  settings: [tickerProjectionSettings],
  inputs: ['market.tickers'],
  outputs: ['orders.dlq'],
  writes: ['tickers'],
  create: async (rt) => {
    const p = await runTickerProjection({
      kafka: rt.kafka,
      codec: rt.codec,
      db: rt.db,
      logger: rt.logger,
      metrics: rt.metrics,
      clock: rt.clock,
      topic: rt.topic('market.tickers'),
      dlqTopic: rt.topic('orders.dlq'),
      groupId: rt.group(TICKER_PROJECTION),
      retryMaxMs: rt.cfg.STAGE_RETRY_MAX_MS,
      sessionTimeoutMs: rt.cfg.KAFKA_SESSION_TIMEOUT_MS,
      config: tickerProjectionConfig(rt.cfg),
      onFatal: rt.fatal,
    });
    return { name: TICKER_PROJECTION, ready: p.ready, stop: p.stop };
  },
});

const exchangeSync = defineUnit({
  name: 'exchange-sync',
  doc: 'Bybit REST → instruments in PostgreSQL; tickers, wallet and positions → market.tickers, exchange.wallet, exchange.positions',
  settings: [exchangeSyncSettings, bybitRestSettings],
  inputs: ['bybit:rest'],
  outputs: ['market.tickers', 'exchange.wallet', 'exchange.positions'],
  writes: ['instruments'],
  create: async (rt) => {
    const sync = createExchangeSync({ db: rt.db, kafka: rt.kafka, codec: rt.codec, topicPrefix: rt.cfg.TOPIC_PREFIX, logger: rt.logger.child({ unit: 'exchange-sync' }), clock: rt.clock, config: syncConfig(rt.cfg), env: rt.cfg, assets: rt.cfg.ASSETS as string[] });
    await sync.start();
    return { name: 'exchange-sync', ready: () => sync.ready(), stop: () => sync.stop() };
  },
});

const place = stageUnit({
  name: 'place',
  doc: 'orders.intents → Bybit REST → orders.submissions',
  settings: [placeSettings, bybitRestSettings],
  inputs: ['orders.intents'],
  outputs: ['orders.submissions', 'orders.dlq', 'bybit:rest'],
  writes: ['orders(placement)', 'order_state_history(placement)'],
  make: (rt) =>
    createPlaceStage({
      config: placeConfig(rt.cfg),
      rest: createBybitRest({ config: restConfig(rt.cfg), clock: rt.clock, logger: rt.logger.child({ unit: 'bybit-rest' }) }),
      db: rt.db,
      clock: rt.clock,
      logger: rt.logger,
    }),
});

const signalBridge = defineUnit({
  name: 'signal-bridge',
  doc: 'RabbitMQ signals queue → signals.raw',
  settings: [signalBridgeSettings],
  inputs: ['rabbitmq:SIGNALS_QUEUE'],
  outputs: ['signals.raw'],
  writes: [],
  create: async (rt) => {
    const bridge = createSignalBridge({ kafka: rt.kafka, logger: rt.logger.child({ unit: 'signal-bridge' }), metrics: rt.metrics, config: bridgeConfig(rt.cfg), clock: rt.clock });
    await bridge.start();
    return { name: 'signal-bridge', ready: () => bridge.ready(), stop: () => bridge.stop() };
  },
});

/**
 * Validation and risk & sizing in one stage and one Kafka transaction per chunk
 * (pipelines/signal-decide.ts). Before its first raw record it decides what the two-stage risk group
 * left on signals.valid (an upgrade from a release with separate validate and size-risk stages).
 */
const signalDecide = stageUnit({
  name: 'signal-decide',
  doc: 'signals.raw → signals.valid (audit) | signals.dlq, and orders.intents (or a rejection event), in one transaction',
  settings: [validateSettings, riskSettings],
  inputs: ['signals.raw'],
  outputs: ['signals.valid', 'signals.dlq', 'orders.intents', 'orders.events', 'orders.dlq'],
  writes: ['signals(identity)', 'decisions', 'orders(intent)', 'signals(outcome)', 'trading_state(daily loss)'],
  group: SIGNAL_DECIDE_GROUP,
  make: async (rt) => {
    const risk = riskConfig(rt.cfg);
    const logger = rt.logger.child({ stage: 'signal-decide' });
    await drainRisk({
      ...runnerDeps(rt, RISK_GROUP),
      risk: createSizeRiskStage({ config: risk, db: rt.db, clock: rt.clock, logger, registry: rt.metrics.registry }),
      topic: topicName('signals.valid', rt.cfg.TOPIC_PREFIX),
    });
    return createSignalDecideStage({ validate: validateConfig(rt.cfg), risk, codec: rt.codec, db: rt.db, clock: rt.clock, logger, registry: rt.metrics.registry });
  },
});

/**
 * The simulated account `npm start` trades with (BYBIT_ENV=sim): holdings inside the default risk
 * limits (RISK_MAX_TOTAL_EXPOSURE 20,000 USDT), so both buys and sells can be placed.
 */
export const SIM_BALANCES: Record<string, number> = { USDT: 100_000, BTC: 0.05, ETH: 0.5, SOL: 5 };

export const SERVICES: Record<string, { doc: string; units: readonly UnitDefinition[] }> = {
  'order-manager': {
    doc: 'signal bridge, validation, risk & sizing, placement, tracking & enrichment, exchange state sync, reconciler, kill switch, TP/SL',
    // track and the ticker projection before exchange sync: the sync's start waits until they have
    // projected the wallet, positions and tickers it published.
    units: [eventsOut, track, tickerProjection, exchangeSync, exchangeStreams, reconcilerUnit, killSwitchUnit, protectUnit, place, signalDecide, signalBridge],
  },
  'model': {
    doc: 'model service: training windows, learner, warm-up, versions, signals out through the bridge',
    units: MODEL_UNITS,
  },
};

/**
 * The order manager split into one unit (or one small group) per process, for deployments that
 * scale or restart the stages separately and for the chaos run, which kills each of them with
 * SIGKILL on its own: `tsx stack/service-main.ts place`. Not part of SERVICES, so `npm start`
 * (every service) does not run them next to the whole 'order-manager'. Each process needs its own
 * ADMIN_PORT (0 = any free port).
 */
export const UNIT_SERVICES: Record<string, { doc: string; units: readonly UnitDefinition[] }> = {
  ...Object.fromEntries([signalBridge, signalDecide, place, track, exchangeStreams].map((u) => [u.name, { doc: u.doc, units: [u] }])),
  'events-out': { doc: eventsOut.doc, units: [eventsOut] },
  // The ticker projection before exchange sync (see SERVICES).
  ops: { doc: 'ticker projection, exchange state sync, reconciler, kill switch, TP/SL', units: [tickerProjection, exchangeSync, reconcilerUnit, killSwitchUnit, protectUnit] },
};

/** Every unit definition of every service, each once, in the order of the flow (UNIT_SERVICES first). */
export const ALL_UNITS: readonly UnitDefinition[] = [...new Set([...Object.values(UNIT_SERVICES), ...Object.values(SERVICES)].flatMap((s) => s.units))];

/**
 * Every unit's own settings schemas, from the definitions, handed to the config loader
 * (runtime/config.ts) by whoever loads the whole configuration, so a bad value of any unit fails
 * every start and the README table lists them all.
 */
export const UNIT_SCHEMAS = settingsOf(ALL_UNITS);

/** What the runtime (runtime/service.ts) is built from: every unit's settings and the registry's topic codec. */
export const RUNTIME_PARTS: RuntimeParts = {
  unitSchemas: UNIT_SCHEMAS,
  codec: (cfg) => createTopicCodec({ registryUrl: schemaRegistryUrl(cfg), prefix: cfg.TOPIC_PREFIX }),
};
