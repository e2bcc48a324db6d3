// Client evaluation (issue 17, "transactions that span partitions"): the project's kafkajs, through
// the Kafka port with the stage runner's settings, against @confluentinc/kafka-javascript (librdkafka,
// which has KIP-447), on the running broker. Stand-alone: the project does not depend on the
// confluent client; it is loaded from the directory in KJS_CONFLUENT_PATH (an install made outside
// the project, see docs/performance.md), and without it only kafkajs is measured.
//
//   npx tsx stack/bench/client-eval.ts            # a–c for each client, d for confluent; JSON lines
//   EVAL_CLIENTS=kafkajs EVAL_PARTS=latency,idle npx tsx stack/bench/client-eval.ts
//
// The stage under test runs in a child process of its own (one consumer + one transactional
// producer; per record one transaction: send + sendOffsets + commit), so process.cpuUsage() there is
// the client's CPU alone. The driver (idempotent producer, acks=all, into the input topic) and the
// sink (read_committed consumer on the output topic) stay in this process and are always the
// port's kafkajs, so they cost the same for both clients. Latency = driver send → sink receipt: a
// raw hop in, the stage's consume + transaction, a read_committed hop out.
//
//   a/b  `latency`: paced at EVAL_RATES (default 50,200 records/s), EVAL_N records each (default
//        400; 20 more before them warm up and are not counted); nearest-rank quantiles; the stage's
//        CPU per transaction over the measured records.
//   b    `saturate`: EVAL_SAT_N records (default 1500) written first, then the stage drains them
//        one transaction each: transactions/s and CPU per transaction, first to last record.
//   c    `idle`: the stage connected and joined, nothing to do, EVAL_IDLE_S seconds (default 30):
//        its CPU in % of one core.
//   d    `kip447` (confluent only; kafkajs's sendOffsets takes a group id and nothing else):
//        ONE transactional producer commits the offsets of three input partitions with the
//        consumer's group metadata; then a zombie, a member that lost its partitions to a new
//        generation without having rejoined, tries to commit with its old metadata.
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { createKafka, failTool, type KafkaPort } from '../../runtime/kafka.ts';
import { createLogger } from '../../runtime/logger.ts';
import { dist } from './stats.ts';

const BROKERS = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',').map((s) => s.trim());
const CONFLUENT_PATH = process.env.KJS_CONFLUENT_PATH;
const SELF = fileURLToPath(import.meta.url);
const log = (s: string) => process.stderr.write(`[client-eval] ${s}\n`);
const hex = () => randomBytes(4).toString('hex');
const cpuUs = () => {
  const c = process.cpuUsage();
  return c.user + c.system;
};
const portKafka = (clientId: string): KafkaPort =>
  createKafka({ brokers: BROKERS, clientId, logger: createLogger({ LOG_LEVEL: 'silent', BYBIT_API_SECRET: 'unused', ADMIN_TOKEN: undefined }, clientId) });

// ---------------------------------------------------------------------------------------------
// The confluent client, as much of its surface as this script uses.

interface CkMessage { key: Buffer | null; value: Buffer | null; offset: string }
interface CkOffsets { topic: string; partitions: Array<{ partition: number; offset: string }> }
interface CkProducer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  /** Resolves with the producer itself: a confluent producer is its own transaction. */
  transaction(): Promise<CkProducer>;
  send(a: { topic: string; messages: Array<{ key: string | Buffer | null; value: Buffer; partition?: number }> }): Promise<unknown>;
  /** `consumer`: the consumer whose group metadata (group, generation, member) goes with the offsets (KIP-447). */
  sendOffsets(a: { consumer: unknown; topics: CkOffsets[] }): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}
interface CkConsumer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  subscribe(a: { topics: string[] }): Promise<void>;
  run(a: { eachMessage: (p: { topic: string; partition: number; message: CkMessage }) => Promise<void> }): Promise<void>;
}
interface CkKafka {
  producer(cfg: Record<string, unknown>): CkProducer;
  consumer(cfg: Record<string, unknown>): CkConsumer;
}
interface RdError { code: number; message: string }
interface RdConsumer {
  connect(opts: Record<string, unknown>, cb: (err: unknown) => void): void;
  disconnect(cb: () => void): void;
  subscribe(topics: string[]): void;
  consume(n: number, cb: (err: unknown, messages?: unknown[]) => void): void;
  assign(tps: unknown[]): void;
  unassign(): void;
  on(event: 'rebalance', cb: (err: RdError | undefined, assignment: Array<{ topic: string; partition: number }>) => void): void;
}
interface Confluent {
  KafkaJS: { Kafka: new (cfg: Record<string, unknown>) => CkKafka; logLevel: Record<string, number> };
  KafkaConsumer: new (conf: Record<string, unknown>, topicConf: Record<string, unknown>) => RdConsumer;
  librdkafkaVersion: string;
}
const loadConfluent = (): Confluent => createRequire(import.meta.url)(CONFLUENT_PATH!) as Confluent;
const ERR_ASSIGN = -175; // librdkafka's ERR__ASSIGN_PARTITIONS
const ERR_REVOKE = -174; // ERR__REVOKE_PARTITIONS

function ckKafka(ck: Confluent, clientId: string): CkKafka {
  return new ck.KafkaJS.Kafka({ kafkaJS: { brokers: BROKERS, clientId, logLevel: ck.KafkaJS.logLevel.ERROR } });
}
/**
 * The stage runner's producer settings in confluent terms: idempotent, acks=all, transactional.
 * linger.ms 0: librdkafka waits 5 ms by default to batch, kafkajs sends at once; the runner awaits
 * each send, so a linger would only add latency.
 */
const ckProducer = (k: CkKafka, transactionalId: string) =>
  k.producer({ kafkaJS: { transactionalId, idempotent: true, acks: -1, transactionTimeout: 60_000 }, 'linger.ms': 0 });

// ---------------------------------------------------------------------------------------------
// The stage (child process): consume → one transaction per record → output topic.

interface Mark { count: number; cpuUs: number; firstAt: number | null; lastAt: number | null; cpuFirst: number | null; cpuLast: number | null }

async function stageMain(client: string, inTopic: string, outTopic: string, groupId: string, txId: string): Promise<void> {
  const st: Mark = { count: 0, cpuUs: 0, firstAt: null, lastAt: null, cpuFirst: null, cpuLast: null };
  const before = () => {
    if (st.count === 0 && st.firstAt === null) {
      st.firstAt = performance.now();
      st.cpuFirst = cpuUs();
    }
  };
  const after = () => {
    st.count++;
    st.lastAt = performance.now();
    st.cpuLast = cpuUs();
  };
  let ready: () => void = () => {};
  const joined = new Promise<void>((r) => (ready = r));
  let close: () => Promise<void>;
  if (client === 'kafkajs') {
    const kafka = portKafka('eval-stage');
    const producer = kafka.producer({ transactionalId: txId });
    await producer.connect();
    // As the runner: read_committed, the default fetch wait (100 ms), offsets only in transactions.
    const consumer = kafka.consumer({ groupId, readCommitted: true, onFatal: failTool('eval stage') });
    consumer.onGroupJoin(() => ready());
    await consumer.connect();
    await consumer.subscribe([inTopic], true);
    await consumer.run(async (batch, ctl) => {
      for (const m of batch.messages) {
        before();
        const tx = await producer.transaction();
        try {
          await tx.send(outTopic, [{ key: m.key, value: m.value ?? Buffer.alloc(0) }]);
          await tx.sendOffsets(groupId, [{ topic: batch.topic, partition: batch.partition, offset: String(BigInt(m.offset) + 1n) }]);
          await tx.commit();
        } catch (err) {
          await tx.abort().catch(() => {});
          throw err;
        }
        ctl.resolveOffset(m.offset);
        after();
      }
    });
    close = async () => {
      await consumer.disconnect();
      await producer.disconnect();
    };
  } else {
    const ck = loadConfluent();
    const k = ckKafka(ck, 'eval-stage');
    const producer = ckProducer(k, txId);
    await producer.connect();
    const consumer = k.consumer({
      // The runner's consumer settings; read_committed is librdkafka's default (readUncommitted false).
      kafkaJS: { groupId, fromBeginning: true, autoCommit: false, maxWaitTimeInMs: 100, sessionTimeout: 10_000, heartbeatInterval: 3000 },
      rebalance_cb: (err: RdError) => {
        if (err.code === ERR_ASSIGN) ready();
      },
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [inTopic] });
    await consumer.run({
      eachMessage: async ({ topic, partition, message }) => {
        before();
        const tx = await producer.transaction();
        try {
          await tx.send({ topic: outTopic, messages: [{ key: message.key, value: message.value ?? Buffer.alloc(0) }] });
          await tx.sendOffsets({ consumer, topics: [{ topic, partitions: [{ partition, offset: String(BigInt(message.offset) + 1n) }] }] });
          await tx.commit();
        } catch (err) {
          await tx.abort().catch(() => {});
          throw err;
        }
        after();
      },
    });
    close = async () => {
      await consumer.disconnect();
      await producer.disconnect();
    };
  }
  await joined;
  process.send!({ type: 'ready' });
  process.on('message', async (msg: { type: string }) => {
    if (msg.type === 'mark') process.send!({ type: 'mark', ...st, cpuUs: cpuUs() });
    if (msg.type === 'stop') {
      await close().catch(() => {});
      process.exit(0);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// The driver side (this process).

interface StageHandle { mark(): Promise<Mark>; stop(): Promise<void> }

async function startStage(client: string, inTopic: string, outTopic: string): Promise<StageHandle> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', SELF, 'stage', client, inTopic, outTopic, `${inTopic}-g`, `${inTopic}-tx`], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: process.env,
  });
  const waiters: Array<(m: { type: string } & Mark) => void> = [];
  let onReady: () => void = () => {};
  const ready = new Promise<void>((r) => (onReady = r));
  child.on('message', (m: { type: string } & Mark) => {
    if (m.type === 'ready') onReady();
    else waiters.shift()?.(m);
  });
  const exited = new Promise<never>((_, rej) => child.on('exit', (code) => rej(new Error(`stage (${client}) exited with ${code}`))));
  exited.catch(() => {});
  await Promise.race([ready, exited, sleep(60_000).then(() => Promise.reject(new Error('stage did not join within 60 s')))]);
  return {
    mark: () =>
      Promise.race([
        new Promise<Mark>((r) => {
          waiters.push(r);
          child.send({ type: 'mark' });
        }),
        exited,
      ]),
    stop: async () => {
      child.send({ type: 'stop' });
      await Promise.race([new Promise((r) => child.on('exit', r)), sleep(15_000).then(() => child.kill('SIGKILL'))]);
    },
  };
}

/** Fresh input and output topics (one partition each) and a sink reading the output read_committed. */
async function topics(kafka: KafkaPort, prefix: string) {
  const inTopic = `eval-${prefix}-${hex()}`;
  const outTopic = `${inTopic}-out`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.ensureTopics([{ topic: inTopic, partitions: 1, config: {} }, { topic: outTopic, partitions: 1, config: {} }]);
  const cleanup = async () => {
    await admin.deleteTopics([inTopic, outTopic]).catch(() => {});
    await admin.disconnect();
  };
  return { inTopic, outTopic, cleanup };
}

async function sink(kafka: KafkaPort, topic: string, onKey: (key: string, at: number) => void) {
  const consumer = kafka.consumer({ groupId: `${topic}-sink`, readCommitted: true, maxWaitMs: 10, onFatal: failTool('eval sink') });
  let joined = false;
  consumer.onGroupJoin(() => (joined = true));
  await consumer.connect();
  await consumer.subscribe([topic], true);
  await consumer.run(async (batch, ctl) => {
    const t = performance.now();
    for (const m of batch.messages) {
      onKey(m.key ?? '', t);
      ctl.resolveOffset(m.offset);
    }
  });
  while (!joined) await sleep(20);
  return consumer;
}

const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

async function latency(kafka: KafkaPort, client: string, rate: number, n: number) {
  const { inTopic, outTopic, cleanup } = await topics(kafka, `lat${rate}`);
  const sent = new Map<string, number>();
  const lat: number[] = [];
  const snk = await sink(kafka, outTopic, (key, at) => {
    const s = sent.get(key);
    if (s !== undefined) lat.push(at - s);
  });
  const driver = kafka.producer();
  await driver.connect();
  const stage = await startStage(client, inTopic, outTopic);
  const gap = 1000 / rate;
  const pace = async (from: number, count: number, measure: boolean) => {
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      const wait = t0 + i * gap - performance.now();
      if (wait > 0) await sleep(wait);
      const key = `k${from + i}`;
      if (measure) sent.set(key, performance.now());
      await driver.send(inTopic, [{ key, value: Buffer.from('x') }]);
    }
  };
  await pace(0, 20, false);
  await sleep(500);
  const m0 = await stage.mark();
  const t0 = performance.now();
  await pace(20, n, true);
  const until = Date.now() + 30_000;
  while (lat.length < n && Date.now() < until) await sleep(20);
  const m1 = await stage.mark();
  const secs = (performance.now() - t0) / 1000;
  await stage.stop();
  await snk.disconnect();
  await driver.disconnect();
  await cleanup();
  const tx = m1.count - m0.count;
  return { part: 'latency', client, rate, ...dist(lat), delivered: lat.length, sent: n, achievedPerS: round(n / secs, 1), txs: tx, cpuMsPerTx: round((m1.cpuUs - m0.cpuUs) / 1000 / tx), stageCpuPctOfCore: round(((m1.cpuUs - m0.cpuUs) / 1e6 / secs) * 100, 1) };
}

async function saturate(kafka: KafkaPort, client: string, n: number) {
  const { inTopic, outTopic, cleanup } = await topics(kafka, 'sat');
  const driver = kafka.producer();
  await driver.connect();
  for (let i = 0; i < n; i += 100) {
    await driver.send(inTopic, Array.from({ length: Math.min(100, n - i) }, (_, j) => ({ key: `k${i + j}`, value: Buffer.from('x') })));
  }
  await driver.disconnect();
  const stage = await startStage(client, inTopic, outTopic);
  const until = Date.now() + 300_000;
  let m = await stage.mark();
  while (m.count < n && Date.now() < until) {
    await sleep(200);
    m = await stage.mark();
  }
  await stage.stop();
  await cleanup();
  const secs = (m.lastAt! - m.firstAt!) / 1000;
  return { part: 'saturate', client, records: n, done: m.count, txPerS: round(m.count / secs, 1), cpuMsPerTx: round((m.cpuLast! - m.cpuFirst!) / 1000 / m.count), stageCpuPctOfCore: round(((m.cpuLast! - m.cpuFirst!) / 1e6 / secs) * 100, 1) };
}

async function idle(kafka: KafkaPort, client: string, seconds: number) {
  const { inTopic, outTopic, cleanup } = await topics(kafka, 'idle');
  const stage = await startStage(client, inTopic, outTopic);
  await sleep(3000); // past the join and the first fetches
  const m0 = await stage.mark();
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const m1 = await stage.mark();
  const secs = (performance.now() - t0) / 1000;
  await stage.stop();
  await cleanup();
  return { part: 'idle', client, seconds: round(secs, 1), cpuPctOfCore: round(((m1.cpuUs - m0.cpuUs) / 1e6 / secs) * 100, 2) };
}

// ---------------------------------------------------------------------------------------------
// d. KIP-447 with the confluent client.

async function until<T>(what: string, f: () => T | undefined | null | false, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function kip447(kafka: KafkaPort, emit: (o: object) => void): Promise<void> {
  const ck = loadConfluent();
  const k = ckKafka(ck, 'eval-447');
  const topic = `eval-447-${hex()}`;
  const outTopic = `${topic}-out`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.ensureTopics([{ topic, partitions: 3, config: {} }, { topic: outTopic, partitions: 1, config: {} }]);
  const driver = kafka.producer();
  await driver.connect();
  for (const partition of [0, 1, 2]) await driver.send(topic, [0, 1, 2].map((i) => ({ key: `p${partition}-${i}`, value: Buffer.from('x'), partition })));
  const all = (offset: string): CkOffsets[] => [{ topic, partitions: [0, 1, 2].map((partition) => ({ partition, offset })) }];
  const out: Record<string, unknown> = { part: 'kip447', client: 'confluent', librdkafka: ck.librdkafkaVersion };

  // 1. One consumer of a group holding three partitions, one transactional producer, one
  //    transaction: the outputs of all nine records and the offsets of all three partitions.
  const group1 = `${topic}-g1`;
  const got: string[] = [];
  const c1 = k.consumer({ kafkaJS: { groupId: group1, fromBeginning: true, autoCommit: false } });
  await c1.connect();
  await c1.subscribe({ topics: [topic] });
  await c1.run({ eachMessage: async ({ message }) => void got.push(String(message.key)) });
  await until('9 records in group 1', () => got.length >= 9, 60_000);
  const p1 = ckProducer(k, `${topic}-one`);
  await p1.connect();
  const tx1 = await p1.transaction();
  await tx1.send({ topic: outTopic, messages: got.map((key) => ({ key: `out-${key}`, value: Buffer.from('y') })) });
  await tx1.sendOffsets({ consumer: c1, topics: all('3') });
  await tx1.commit();
  out.onePartitionsCommitted = await admin.groupOffsets(group1, topic);
  await c1.disconnect();
  await p1.disconnect();

  // 2. The zombie. Two members of group 2 through librdkafka's own API, which lets a member hold a
  //    revocation while it keeps polling (the KafkaJS-compatible API stops polling during its
  //    rebalance callback, and librdkafka then leaves the group itself after max.poll.interval.ms,
  //    which resets the metadata a zombie would commit with). Z holds all three partitions and has
  //    an open transaction; B joins; Z never releases, so after its rebalance timeout (10 s) the
  //    coordinator drops Z and gives B all three partitions in a new generation. B commits its
  //    offsets (3); then Z, still holding its old generation's metadata, commits 1.
  const group2 = `${topic}-g2`;
  const rd = (name: string, rebalance: boolean | ((this: RdConsumer, err: RdError, a: unknown[]) => void)) => {
    const c = new ck.KafkaConsumer(
      {
        'bootstrap.servers': BROKERS.join(','),
        'client.id': `eval-447-${name}`,
        'group.id': group2,
        'enable.auto.commit': false,
        'session.timeout.ms': 6000,
        'heartbeat.interval.ms': 2000,
        'max.poll.interval.ms': 10_000,
        'partition.assignment.strategy': 'range',
        rebalance_cb: rebalance,
      },
      { 'auto.offset.reset': 'earliest' },
    );
    let polling = true;
    const seen: unknown[] = [];
    const loop = (async () => {
      while (polling) {
        await new Promise<void>((r) =>
          c.consume(100, (_e, ms) => {
            if (ms) seen.push(...ms);
            r();
          }),
        );
      }
    })();
    return { c, seen, connect: () => new Promise<void>((r, j) => c.connect({}, (e) => (e ? j(e) : r()))), startLoop: () => loop, stop: async () => {
        polling = false;
        await loop;
      } };
  };
  const events: string[] = [];
  const t0 = performance.now();
  const ev = (s: string) => events.push(`${Math.round(performance.now() - t0)} ms ${s}`);
  let zAssigned = 0;
  let zHeld = false;
  let released = false;
  const z = rd('zombie', function (this: RdConsumer, err, a) {
    // Once released (the check is over), Z rejoins like any member; librdkafka may refuse an
    // assign in the state the held revocation left, which no longer matters then.
    try {
      if (err.code === ERR_ASSIGN) {
        zAssigned = a.length;
        ev(`Z assigned ${a.length}`);
        this.assign(a);
      } else if (err.code === ERR_REVOKE && !released) {
        zHeld = true;
        ev('Z asked to revoke: holds its partitions');
      } else if (err.code === ERR_REVOKE) this.unassign();
    } catch (e) {
      ev(`Z rebalance after release: ${(e as Error).message}`);
    }
  });
  await z.connect();
  z.c.subscribe([topic]);
  void z.startLoop();
  await until('Z to hold 3 partitions and read 9 records', () => zAssigned === 3 && z.seen.length >= 9, 60_000);
  const pz = ckProducer(k, `${topic}-zombie`);
  await pz.connect();
  const txz = await pz.transaction();
  await txz.send({ topic: outTopic, messages: [{ key: 'zombie', value: Buffer.from('z') }] });
  ev('Z: transaction open, output sent');

  let bAssigned = 0;
  const b = rd('b', true);
  b.c.on('rebalance', (err, a) => {
    if (err?.code === ERR_ASSIGN) {
      bAssigned = a.length;
      ev(`B assigned ${a.length}`);
    }
  });
  await b.connect();
  b.c.subscribe([topic]);
  void b.startLoop();
  await until('B to get all 3 partitions', () => bAssigned === 3, 60_000);
  const pb = ckProducer(k, `${topic}-b`);
  await pb.connect();
  // The confluent producer asks the consumer object for librdkafka's consumer handle
  // (_getInternalClient); these members are librdkafka consumers already.
  const handle = (c: RdConsumer) => ({ _getInternalClient: () => c });
  const txb = await pb.transaction();
  await txb.send({ topic: outTopic, messages: [{ key: 'b', value: Buffer.from('b') }] });
  await txb.sendOffsets({ consumer: handle(b.c), topics: all('3') });
  await txb.commit();
  ev('B committed offsets 3,3,3');
  try {
    await txz.sendOffsets({ consumer: handle(z.c), topics: all('1') });
    await txz.commit();
    ev('Z committed: NOT fenced');
    out.zombie = 'committed (not fenced)';
  } catch (err) {
    const e = err as { code?: number; message?: string; name?: string; type?: string };
    ev(`Z refused: ${e.name} ${e.code ?? ''} ${e.type ?? ''} ${e.message}`);
    out.zombie = { fenced: true, name: e.name, code: e.code, type: e.type, message: e.message };
    await txz.abort().catch((x: Error) => ev(`Z abort: ${x.message}`));
  }
  out.zombieHeldRevoke = zHeld;
  out.group2Committed = await admin.groupOffsets(group2, topic);
  const keys: string[] = [];
  const reader = await sink(kafka, outTopic, (key) => keys.push(key));
  await until('the outputs', () => keys.length >= 10, 15_000).catch(() => {});
  await sleep(1000);
  out.outputsVisibleReadCommitted = { total: keys.length, b: keys.filter((x) => x === 'b').length, zombie: keys.filter((x) => x === 'zombie').length };
  out.events = events;
  emit(out);
  await reader.disconnect();
  released = true;
  try {
    z.c.unassign();
  } catch {
    // already unassigned by a rejoin
  }
  await z.stop();
  await b.stop();
  await Promise.all([z, b].map((m) => new Promise<void>((r) => m.c.disconnect(() => r()))));
  await pz.disconnect().catch(() => {});
  await pb.disconnect();
  await driver.disconnect();
  await admin.deleteTopics([topic, outTopic]).catch(() => {});
  await admin.disconnect();
}

// ---------------------------------------------------------------------------------------------

if (process.argv[2] === 'stage') {
  const [, , , client, inTopic, outTopic, groupId, txId] = process.argv;
  await stageMain(client!, inTopic!, outTopic!, groupId!, txId!);
} else {
  // A throw inside one of librdkafka's callbacks would otherwise leave its threads holding the
  // process open.
  process.on('uncaughtException', (err) => {
    log(`failed: ${err.stack ?? err.message}`);
    process.exit(1);
  });
  const clients = (process.env.EVAL_CLIENTS ?? (CONFLUENT_PATH ? 'kafkajs,confluent' : 'kafkajs')).split(',');
  if (clients.includes('confluent') && !CONFLUENT_PATH) throw new Error('KJS_CONFLUENT_PATH: the directory of an installed @confluentinc/kafka-javascript');
  const parts = (process.env.EVAL_PARTS ?? 'latency,saturate,idle,kip447').split(',');
  const rates = (process.env.EVAL_RATES ?? '50,200').split(',').map(Number);
  const n = Number(process.env.EVAL_N ?? 400);
  const kafka = portKafka('eval-driver');
  const emit = (o: object) => console.log(JSON.stringify(o));
  for (const client of clients) {
    if (parts.includes('latency')) for (const rate of rates) emit(await latency(kafka, client, rate, n));
    if (parts.includes('saturate')) emit(await saturate(kafka, client, Number(process.env.EVAL_SAT_N ?? 1500)));
    if (parts.includes('idle')) emit(await idle(kafka, client, Number(process.env.EVAL_IDLE_S ?? 30)));
  }
  // librdkafka's members can take a while to leave; the result is out before that.
  if (parts.includes('kip447') && clients.includes('confluent')) await Promise.race([kip447(kafka, emit), sleep(120_000)]);
  log('done');
  process.exit(0);
}
