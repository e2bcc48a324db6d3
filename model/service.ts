// The model service's units, for the service entry (stack/services.ts) like the order manager's:
//
//   model-core   consumes market.tickers + orders.events + model.signals (its own output, for the
//                join) into the window builder; stores samples and feeds the engine (judging,
//                online updates); emits signals (warm-up or model) to model.signals on a timer;
//                retrains on MODEL_RETRAIN_CRON (node-cron, inside the process); checks the mode
//                rules every MODEL_MODE_CHECK_MS; refreshes exposure (positions) and the instruments'
//                quantity filters from PostgreSQL; closes model-mode entries at their horizon
//                (model/exits.ts), following its own signals and their order events.
//                Offsets are committed up to what the window builder no longer holds, so a restart
//                rebuilds the pending windows (samples already stored are "already done").
//   model-signal-out-bridge   model.signals → RabbitMQ model-service.trading_signals (JSON);
//                connectors/signal-out-bridge.ts.
import cron, { type ScheduledTask } from 'node-cron';
import type { Runtime } from '../runtime/service.ts';
import { defineUnit, type Unit } from '../runtime/unit.ts';
import { topicName } from '../runtime/topics.ts';
import { connectWithBackoff } from '../runtime/retry.ts';
import type { ModelSignal, OrderEvent, Ticker } from '../schemas/types.ts';
import type { TopicCodec } from '../schemas/topic-codec.ts';
import { parseModelConfig, configSchema as modelSettings, type ModelConfig } from './config.ts';
import { ModelEngine, createModelMetrics } from './engine.ts';
import { exposures, qtyFilters } from './registry.ts';
import { createSignalOutBridge } from '../connectors/signal-out-bridge.ts';
import { parseConfig as signalBridgeConfig, configSchema as signalBridgeSettings } from '../connectors/signal-bridge.ts';
import { loadTf } from './tf.ts';
import { isModelTicker, WindowBuilder, type WindowInput, type WindowStats } from './windows.ts';

export function windowConfig(cfg: ModelConfig) {
  return {
    horizonMs: cfg.MODEL_HORIZON_MS,
    allowedLatenessMs: cfg.MODEL_ALLOWED_LATENESS_MS,
    orderEventsMaxWaitMs: cfg.MODEL_ORDER_EVENTS_MAX_WAIT_MS,
    lookback: cfg.MODEL_FEATURE_LOOKBACK,
    labelMinMoveBps: cfg.MODEL_LABEL_MIN_MOVE_BPS,
    strategyId: cfg.MODEL_STRATEGY_ID,
  };
}

/** The model settings of a runtime: its env plus the runtime's TOPIC_PREFIX and AMQP_URL. */
function configOf(rt: Runtime): ModelConfig {
  return parseModelConfig({ ...rt.env, TOPIC_PREFIX: rt.cfg.TOPIC_PREFIX, AMQP_URL: rt.cfg.AMQP_URL });
}

async function startModelCore(rt: Runtime): Promise<Unit> {
  const cfg = configOf(rt);
  const log = rt.logger.child({ unit: 'model-core' });
  const { tf, backend } = await loadTf(cfg.MODEL_TFJS_NODE);
  log.info({ backend }, 'tensorflow.js loaded');
  const metrics = createModelMetrics(rt.metrics.registry);
  const topics = { tickers: topicName('market.tickers', cfg.TOPIC_PREFIX), events: topicName('orders.events', cfg.TOPIC_PREFIX), signals: topicName('model.signals', cfg.TOPIC_PREFIX) };
  const engine = new ModelEngine({ cfg, db: rt.db, tf, logger: log, metrics }, rt.clock.now());
  await engine.restore(rt.clock.now());
  const builder = new WindowBuilder(windowConfig(cfg));
  const seen: WindowStats = { ...builder.stats };
  const producer = rt.kafka.producer();
  await connectWithBackoff(() => producer.connect(), log, rt.cfg.STAGE_RETRY_MAX_MS);
  const consumer = rt.kafka.consumer({ groupId: rt.group('model-service-windows'), readCommitted: true, sessionTimeoutMs: rt.cfg.KAFKA_SESSION_TIMEOUT_MS, onFatal: rt.fatal });
  let joined = false;
  consumer.onGroupJoin(() => (joined = true));
  consumer.onCrash((err, restart) => {
    joined = false;
    log.error({ err, restart }, 'model consumer crashed');
  });
  await connectWithBackoff(() => consumer.connect(), log, rt.cfg.STAGE_RETRY_MAX_MS);
  await consumer.subscribe([topics.tickers, topics.events, topics.signals], true);
  const decodeSync = 'decodeSync' in rt.codec ? (rt.codec as TopicCodec).decodeSync : undefined;
  await consumer.run(async (batch, ctl) => {
    for (const msg of batch.messages) {
      if (!msg.value) continue;
      const src = { topic: msg.topic, partition: msg.partition, offset: msg.offset };
      let input: WindowInput;
      try {
        // Synchronous once the writer schema is cached (no promise per record); the port's decode otherwise.
        const value = decodeSync?.(msg.topic, msg.value) ?? (await rt.codec.decode(msg.topic, msg.value));
        if (msg.topic === topics.tickers) {
          if (!isModelTicker(value as Ticker)) continue;
          input = { kind: 'ticker', value: value as Ticker, src };
          engine.onTicker(value as Ticker);
        } else if (msg.topic === topics.events) {
          input = { kind: 'event', value: value as OrderEvent, src };
          engine.onOrderEvent(value as OrderEvent);
        } else {
          input = { kind: 'signal', value: value as ModelSignal, src };
          engine.onOwnSignal(value as ModelSignal);
        }
      } catch (err) {
        metrics.windowDrops.inc({ reason: 'undecodable' });
        log.warn({ err: (err as Error).message, ...src }, 'record could not be decoded; skipped');
        continue;
      }
      const samples = builder.add(input);
      if (samples.length) await engine.onSamples(samples);
    }
    for (const k of Object.keys(seen) as Array<keyof WindowStats>) {
      const delta = builder.stats[k] - seen[k];
      if (delta > 0 && k !== 'samples') metrics.windowDrops.inc({ reason: k }, delta);
      seen[k] = builder.stats[k];
    }
    const last = batch.messages[batch.messages.length - 1];
    if (!last) return;
    ctl.resolveOffset(last.offset);
    const commit = builder.committable().filter((c) => c.topic === batch.topic && c.partition === batch.partition);
    if (commit.length) await consumer.commitOffsets(commit);
    await ctl.heartbeat().catch(() => {});
  });

  // Emission timer (event time of the injected clock decides what is due).
  const tickMs = Math.max(100, Math.min(1000, cfg.WARMUP_INTERVAL_MS, cfg.MODEL_SIGNAL_INTERVAL_MS));
  let emitting = false;
  const emitTimer = setInterval(() => {
    if (emitting) return;
    emitting = true;
    (async () => {
      const signals = engine.emit(rt.clock.now());
      if (!signals.length) return;
      try {
        const messages = await Promise.all(signals.map(async (s) => ({ key: s.asset, value: await rt.codec.encode(topics.signals, s), headers: { trace_id: s.trace_id ?? '', signal_id: s.signal_id } })));
        await producer.send(topics.signals, messages);
      } catch (err) {
        engine.onUnsent(signals); // an exit not published is not working: the next emission decides it again
        throw err;
      }
      for (const s of signals) log.info({ signal_id: s.signal_id, asset: s.asset, side: s.signal_type, amount: s.amount, confidence: s.confidence, is_warmup: s.is_warmup, model_version: s.model_version, mode: s.metadata?.mode }, 'signal emitted');
    })()
      .catch((err) => log.error({ err }, 'signal emission failed; the next interval tries again'))
      .finally(() => (emitting = false));
  }, tickMs);
  const refresh = () => {
    exposures(rt.db).then((e) => engine.setExposures(e), (err) => log.warn({ err: (err as Error).message }, 'exposure refresh failed'));
    qtyFilters(rt.db).then((f) => engine.setQtyFilters(f), (err) => log.warn({ err: (err as Error).message }, 'instrument filters refresh failed'));
  };
  refresh();
  const exposureTimer = setInterval(refresh, 5000);
  const modeTimer = setInterval(() => {
    engine.checkMode(rt.clock.now()).catch((err) => log.error({ err }, 'mode check failed'));
  }, cfg.MODEL_MODE_CHECK_MS);
  const retrainTask: ScheduledTask = cron.schedule(cfg.MODEL_RETRAIN_CRON, async () => {
    await engine.retrain(rt.clock.now()).catch(() => {});
    await engine.checkMode(rt.clock.now()).catch((err) => log.error({ err }, 'mode check failed'));
  }, { noOverlap: true });

  return {
    name: 'model-core',
    ready: () => joined,
    stop: async () => {
      clearInterval(emitTimer);
      clearInterval(exposureTimer);
      clearInterval(modeTimer);
      await retrainTask.stop();
      await consumer.disconnect().catch(() => {});
      await producer.disconnect().catch(() => {});
    },
  };
}

async function startSignalOutBridge(rt: Runtime): Promise<Unit> {
  const cfg = configOf(rt);
  const signals = signalBridgeConfig(rt.cfg);
  const bridge = createSignalOutBridge({
    kafka: rt.kafka,
    codec: rt.codec,
    logger: rt.logger.child({ unit: 'model-signal-out-bridge' }),
    metrics: rt.metrics,
    amqpUrl: cfg.AMQP_URL,
    queue: cfg.MODEL_SIGNALS_QUEUE,
    queueLimits: { maxLength: signals.SIGNALS_QUEUE_MAX_LENGTH, maxBytes: signals.SIGNALS_QUEUE_MAX_BYTES },
    topicPrefix: cfg.TOPIC_PREFIX,
    groupId: rt.group('model-signal-out-bridge'),
    batchMax: cfg.MODEL_BRIDGE_BATCH_MAX,
    retryMaxMs: cfg.MODEL_BRIDGE_RETRY_MAX_MS,
    onFatal: rt.fatal,
  });
  await bridge.start();
  return { name: 'model-signal-out-bridge', ready: () => bridge.ready(), stop: () => bridge.stop() };
}

const modelCore = defineUnit({
  name: 'model-core',
  doc: 'market.tickers + orders.events + model.signals → training windows, learner, warm-up, versions → model.signals',
  settings: [modelSettings],
  inputs: ['market.tickers', 'orders.events', 'model.signals'],
  outputs: ['model.signals'],
  writes: ['model_versions', 'training_samples', 'model_mode_transitions'],
  create: startModelCore,
});

const signalOutBridge = defineUnit({
  name: 'model-signal-out-bridge',
  doc: 'model.signals → RabbitMQ signals queue (JSON), undecodable records to signals.dlq',
  settings: [modelSettings, signalBridgeSettings],
  inputs: ['model.signals'],
  outputs: ['rabbitmq:MODEL_SIGNALS_QUEUE', 'signals.dlq'],
  writes: [],
  create: startSignalOutBridge,
});

/** The model service's units in start order (the bridge first, so nothing emitted waits on it). */
export const MODEL_UNITS = [signalOutBridge, modelCore] as const;
