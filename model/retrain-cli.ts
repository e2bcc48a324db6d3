// `npm run retrain` — rebuild the training windows by replaying the topics and train a candidate.
//
//   npm run retrain -- [--from-offset=N | --from-offset=0:N,1:M] [--from-time=2025-01-06T12:00:00Z]
//                      [--promote] [--dry-run]
//
// Reads orders.events from the chosen offsets (per partition; default the beginning) or event time,
// plus model.signals and market.tickers around it, merges them in event-time order (deterministic:
// the same offsets give the same samples), stores the samples (one per signal, "already done" on a
// replay), trains a candidate on them, evaluates it, the active model and the warm-up heuristic on
// the same held-out windows, stores the candidate version and prints the metrics table. With
// --promote the promotion rule decides whether it becomes active. --dry-run stores nothing.
//
// It trains on all of the data or not at all: PostgreSQL, Kafka or the schema registry unreachable
// (or answering 5xx) stops it with exit code 1 and the reason, before anything is stored. Only
// records that can never be decoded (not Avro, a schema id the registry does not know) are skipped,
// and counted on the output.
import { randomBytes } from 'node:crypto';
import { loadConfig, kafkaBrokers, schemaRegistryUrl } from '../runtime/config.ts';
import { createLogger } from '../runtime/logger.ts';
import { failTool, createKafka, type KafkaPort, type InMessage } from '../runtime/kafka.ts';
import { createDb, redactUrl } from '../runtime/db.ts';
import { FatalError, RejectedError } from '../runtime/errors.ts';
import { createTopicCodec, type TopicCodec } from '../schemas/topic-codec.ts';
import { topicName } from '../runtime/topics.ts';
import type { ModelSignal, OrderEvent, Ticker } from '../schemas/types.ts';
import { configSchema as modelSettings, parseModelConfig } from './config.ts';
import { loadTf } from './tf.ts';
import { isModelTicker, WindowBuilder, mergeByEventTime, type WindowInput } from './windows.ts';
import { windowConfig } from './service.ts';
import * as reg from './registry.ts';
import { fromArtifacts, toArtifacts, type LabelledRow } from './learner.ts';
import { metricsTable, trainingRound, versionMetrics, versionName } from './trainer.ts';
import { labelledRowOf } from './money.ts';

function bar(label: string, done: number, total: number): void {
  const w = 30;
  const f = total > 0 ? Math.min(1, done / total) : 1;
  process.stderr.write(`\r${label.padEnd(22)} [${'#'.repeat(Math.round(f * w)).padEnd(w, '.')}] ${(f * 100).toFixed(0).padStart(3)}% ${done}/${total}   `);
  if (f >= 1) process.stderr.write('\n');
}

function arg(name: string): string | undefined {
  const a = process.argv.find((x) => x === `--${name}` || x.startsWith(`--${name}=`));
  if (!a) return undefined;
  return a.includes('=') ? a.slice(a.indexOf('=') + 1) : 'true';
}

/** Stops the retrain: what was read so far is not all of the data. */
class IncompleteRead extends FatalError {
  constructor(what: string, cause: unknown) {
    super('retrain_incomplete', `${what}: ${(cause as Error)?.message ?? String(cause)} (nothing trained or stored)`, { cause });
  }
}

/** Every committed record of a topic up to its current end. */
async function readTopic(kafka: KafkaPort, topic: string, label: string): Promise<InMessage[]> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.topicOffsets(topic);
  await admin.disconnect();
  const total = ends.reduce((a, e) => a + Number(BigInt(e.high) - BigInt(e.low)), 0);
  const out: InMessage[] = [];
  if (total === 0) {
    bar(label, 0, 0);
    return out;
  }
  const consumer = kafka.consumer({ groupId: `retrain-${randomBytes(4).toString('hex')}`, readCommitted: true, onFatal: failTool('retrain') });
  const reached = new Map<number, boolean>(ends.map((e) => [e.partition, BigInt(e.high) <= BigInt(e.low)]));
  await consumer.connect();
  await consumer.subscribe([topic], true);
  let lastProgress = Date.now();
  await consumer.run(async (batch, ctl) => {
    for (const m of batch.messages) {
      const end = ends.find((e) => e.partition === m.partition)!;
      if (BigInt(m.offset) >= BigInt(end.high)) continue;
      out.push(m);
      if (BigInt(m.offset) + 1n >= BigInt(end.high)) reached.set(m.partition, true);
      ctl.resolveOffset(m.offset);
    }
    lastProgress = Date.now();
    bar(label, out.length, total);
  });
  // Transaction markers occupy offsets too, so "reached" may never flip for a partition that ends
  // in one: stop as well after 3 s without new records. The same silence is what a broker that went
  // away looks like: then ask it again, which fails when it cannot answer.
  while (![...reached.values()].every(Boolean) && Date.now() - lastProgress < 3000) await new Promise((r) => setTimeout(r, 100));
  if (![...reached.values()].every(Boolean)) {
    const check = kafka.admin();
    try {
      await check.connect();
      await check.topicOffsets(topic);
    } catch (err) {
      throw new IncompleteRead(`Kafka stopped answering while ${topic} was read (${out.length} of ${total} records)`, err);
    } finally {
      await check.disconnect().catch(() => {});
    }
  }
  await consumer.disconnect();
  bar(label, total, total);
  return out;
}

/**
 * Decoded records. Bytes that can never be decoded (RejectedError) cannot become samples: skipped and
 * counted. Anything else (the registry unreachable, a 5xx) stops the retrain instead of leaving out
 * every record of a schema it could not fetch.
 */
async function decodeAll(codec: TopicCodec, msgs: InMessage[], kind: WindowInput['kind']): Promise<WindowInput[]> {
  const out: WindowInput[] = [];
  let undecodable = 0;
  for (const m of msgs) {
    if (!m.value) continue;
    try {
      const value = codec.decodeSync(m.topic, m.value) ?? (await codec.decode(m.topic, m.value));
      out.push({ kind, value, src: { topic: m.topic, partition: m.partition, offset: m.offset } } as WindowInput);
    } catch (err) {
      if (!(err instanceof RejectedError)) throw new IncompleteRead(`cannot decode ${m.topic} partition ${m.partition} offset ${m.offset}`, err);
      undecodable++;
    }
  }
  if (undecodable > 0) console.log(`${msgs[0]!.topic}: ${undecodable} undecodable records skipped`);
  return out;
}

export async function main(): Promise<void> {
  const base = loadConfig(process.env, [modelSettings]);
  const cfg = parseModelConfig({ ...process.env, TOPIC_PREFIX: base.TOPIC_PREFIX });
  const log = createLogger({ ...base, LOG_LEVEL: base.LOG_LEVEL === 'info' ? 'warn' : base.LOG_LEVEL }, 'retrain');
  const kafka = createKafka({ brokers: kafkaBrokers(base), clientId: `${base.KAFKA_CLIENT_ID}-retrain`, logger: log });
  const fromOffsetArg = arg('from-offset');
  const fromTimeArg = arg('from-time');
  const fromTime = fromTimeArg ? Date.parse(fromTimeArg) : undefined;
  if (fromTimeArg && !Number.isFinite(fromTime)) throw new Error(`--from-time: not a date: ${fromTimeArg}`);
  const fromOffset = (partition: number): bigint => {
    if (!fromOffsetArg) return 0n;
    if (!fromOffsetArg.includes(':')) return BigInt(fromOffsetArg);
    const hit = fromOffsetArg.split(',').find((p) => p.split(':')[0] === String(partition));
    return hit ? BigInt(hit.split(':')[1]!) : 0n;
  };

  // PostgreSQL first (the active model is read now): a retrain that cannot store its result
  // should fail before it reads the topics, not after.
  const dbUnavailable = (err: unknown) => new FatalError('retrain_db_unavailable', `PostgreSQL (${redactUrl(base.DATABASE_URL)}): ${(err as Error)?.message ?? String(err)}`, { cause: err });
  const db = await createDb(base.DATABASE_URL).catch((err: unknown) => {
    throw dbUnavailable(err);
  });
  try {
    const activeRec = await reg.loadActive(db).catch((err: unknown) => {
      throw dbUnavailable(err);
    });
    const codec = await createTopicCodec({ registryUrl: schemaRegistryUrl(base), prefix: base.TOPIC_PREFIX });
    const t = { events: topicName('orders.events', cfg.TOPIC_PREFIX), signals: topicName('model.signals', cfg.TOPIC_PREFIX), tickers: topicName('market.tickers', cfg.TOPIC_PREFIX) };
    const events = (await decodeAll(codec, await readTopic(kafka, t.events, 'orders.events'), 'event')).filter(
      (i) => BigInt(i.src.offset) >= fromOffset(i.src.partition) && (fromTime === undefined || (i.value as OrderEvent).occurred_at >= fromTime),
    );
    const start = events.length ? Math.min(...events.map((e) => (e.value as OrderEvent).occurred_at)) : (fromTime ?? 0);
    // Signals and tickers from a margin before the first event (feature history, late signals).
    const margin = 30 * 60_000 + cfg.MODEL_HORIZON_MS + cfg.MODEL_ALLOWED_LATENESS_MS + cfg.MODEL_ORDER_EVENTS_MAX_WAIT_MS;
    const signals = (await decodeAll(codec, await readTopic(kafka, t.signals, 'model.signals'), 'signal')).filter((i) => (i.value as ModelSignal).timestamp >= start - margin);
    const tickers = (await decodeAll(codec, await readTopic(kafka, t.tickers, 'market.tickers'), 'ticker')).filter((i) => (i.value as Ticker).ts >= start - 2 * margin && isModelTicker(i.value as Ticker));

    const builder = new WindowBuilder(windowConfig(cfg));
    const merged = mergeByEventTime([...events, ...signals, ...tickers]);
    const samples = [];
    for (let i = 0; i < merged.length; i++) {
      samples.push(...builder.add(merged[i]!));
      if (i % 5000 === 0 || i === merged.length - 1) bar('building windows', i + 1, merged.length);
    }
    const inRange = samples.filter((s) => fromTime === undefined || s.ts >= fromTime);
    console.log(`windows: ${inRange.length} samples (${inRange.filter((s) => s.label !== null).length} labelled), ${builder.pendingCount()} still open; dropped: ${JSON.stringify(builder.stats)}`);

    const dry = arg('dry-run') === 'true';
    if (!dry) console.log(`stored ${await reg.saveSamples(db, inRange)} new samples`);
    const rows: LabelledRow[] = inRange.map(labelledRowOf).filter((r) => r !== null);
    if (rows.length < cfg.MODEL_MIN_TRAIN_SAMPLES) {
      console.log(`too few labelled samples to train (${rows.length} < MODEL_MIN_TRAIN_SAMPLES ${cfg.MODEL_MIN_TRAIN_SAMPLES})`);
      process.exitCode = 2;
      return;
    }
    const { tf, backend } = await loadTf(cfg.MODEL_TFJS_NODE);
    const active = activeRec ? await fromArtifacts(tf, activeRec.artifacts, cfg.MODEL_LEARNING_RATE) : null;
    const r = await trainingRound(tf, rows, cfg, active, (e) => bar(`training (${backend})`, e, cfg.MODEL_EPOCHS));
    const version = versionName(r.trainRange.toTs, cfg.MODEL_SEED, r.trainRange.n);
    const offsets = (list: WindowInput[], pick: (a: bigint, b: bigint) => boolean) => {
      const o: Record<string, string> = {};
      for (const e of list) {
        const k = String(e.src.partition);
        if (o[k] === undefined || pick(BigInt(e.src.offset), BigInt(o[k]))) o[k] = e.src.offset;
      }
      return o;
    };
    console.log(`\ncandidate ${version}: trained on ${r.trainRange.n} samples ${new Date(r.trainRange.fromTs).toISOString()} .. ${new Date(r.trainRange.toTs).toISOString()}, held out ${r.holdoutRange.n}; current: ${activeRec?.version ?? 'none (warm-up)'}\n`);
    console.log(metricsTable(r));
    console.log(`\npromotion rule: ${r.decision.promote ? 'PASS' : 'FAIL'} — ${r.decision.reason}`);
    if (dry) return;
    await reg.saveVersion(db, {
      version,
      parent_version: activeRec?.version ?? null,
      artifacts: await toArtifacts(tf, r.candidate),
      sample_count: r.trainRange.n,
      train_from_ts: r.trainRange.fromTs,
      train_to_ts: r.trainRange.toTs,
      train_from_offsets: offsets(events, (a, b) => a < b),
      train_to_offsets: offsets(events, (a, b) => a > b),
      metrics: { ...versionMetrics(r, activeRec?.version ?? null), source: 'retrain-cli' },
      notes: `npm run retrain: ${r.decision.reason}`,
    });
    console.log(`stored candidate ${version}`);
    if (arg('promote') === 'true' && r.decision.promote) {
      await reg.activate(db, version, Date.now());
      console.log(`promoted ${version} (the running service picks it up at its next mode check / restart)`);
    }
  } finally {
    await db.end();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    () => process.exit(process.exitCode ?? 0),
    (err) => {
      // The reason only: the error's causes carry request details (registry, database URLs).
      process.stderr.write(`\nretrain failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
