// The floor: what one raw hop costs on this machine, measured in the same run as the pipeline so
// the pipeline's numbers can be read against it. A Kafka hop = kafkajs produce (acks=all,
// idempotent) → a subscribed consumer receives it; a RabbitMQ hop = publish on a confirm channel →
// a consumer receives it. Messages are sent one at a time at a paced rate (latency, not throughput).
// Each returns its samples (ms); stats.ts summarises them.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { connect } from 'amqplib';
import { failTool, type KafkaPort } from '../../runtime/kafka.ts';

export async function kafkaHop(kafka: KafkaPort, n: number, gapMs: number): Promise<number[]> {
  const topic = `bench-floor-${randomBytes(4).toString('hex')}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.ensureTopics([{ topic, partitions: 1, config: {} }]);
  const producer = kafka.producer();
  await producer.connect();
  const consumer = kafka.consumer({ groupId: `${topic}-g`, maxWaitMs: 10, onFatal: failTool('floor reader') });
  const sent = new Map<string, number>();
  const lat: number[] = [];
  let joined = false;
  consumer.onGroupJoin(() => (joined = true));
  await consumer.connect();
  await consumer.subscribe([topic], false);
  await consumer.run(async (batch, ctl) => {
    const t = performance.now();
    for (const m of batch.messages) {
      const s = sent.get(m.key ?? '');
      if (s !== undefined) lat.push(t - s);
      ctl.resolveOffset(m.offset);
    }
  });
  while (!joined) await sleep(20);
  // Warm the connections, then measure.
  for (let i = 0; i < n + 20; i++) {
    const key = `k${i}`;
    if (i >= 20) sent.set(key, performance.now());
    await producer.send(topic, [{ key, value: Buffer.from('x') }]);
    await sleep(gapMs);
  }
  const until = Date.now() + 10_000;
  while (lat.length < n && Date.now() < until) await sleep(20);
  await consumer.disconnect();
  await producer.disconnect();
  await admin.deleteTopics([topic]).catch(() => {});
  await admin.disconnect();
  return lat;
}

export async function rabbitHop(url: string, n: number, gapMs: number): Promise<number[]> {
  const queue = `bench.floor.${randomBytes(4).toString('hex')}`;
  const conn = await connect(url);
  const pub = await conn.createConfirmChannel();
  const sub = await conn.createChannel();
  await pub.assertQueue(queue, { durable: true });
  const sent = new Map<string, number>();
  const lat: number[] = [];
  await sub.consume(queue, (m) => {
    if (!m) return;
    const s = sent.get(String(m.properties.messageId));
    if (s !== undefined) lat.push(performance.now() - s);
    sub.ack(m);
  });
  for (let i = 0; i < n + 20; i++) {
    const id = `m${i}`;
    if (i >= 20) sent.set(id, performance.now());
    pub.sendToQueue(queue, Buffer.from('x'), { persistent: true, messageId: id });
    await pub.waitForConfirms();
    await sleep(gapMs);
  }
  const until = Date.now() + 10_000;
  while (lat.length < n && Date.now() < until) await sleep(20);
  await pub.deleteQueue(queue);
  await conn.close();
  return lat;
}

/**
 * The exactly-once floor: one record produced inside a Kafka transaction (send + sendOffsets +
 * commit, as the stage runner does per chunk) → a read_committed consumer receives it. This is the
 * least one runner hop can cost; the gap to kafkaHop is the price of exactly-once.
 */
export async function kafkaTxHop(kafka: KafkaPort, n: number, gapMs: number, maxWaitMs = 10): Promise<number[]> {
  const topic = `bench-floor-tx-${randomBytes(4).toString('hex')}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.ensureTopics([{ topic, partitions: 1, config: {} }]);
  const producer = kafka.producer({ transactionalId: `${topic}-tx` });
  await producer.connect();
  const consumer = kafka.consumer({ groupId: `${topic}-g`, maxWaitMs, readCommitted: true, onFatal: failTool('floor reader') });
  const sent = new Map<string, number>();
  const lat: number[] = [];
  let joined = false;
  consumer.onGroupJoin(() => (joined = true));
  await consumer.connect();
  await consumer.subscribe([topic], false);
  await consumer.run(async (batch, ctl) => {
    const t = performance.now();
    for (const m of batch.messages) {
      const s = sent.get(m.key ?? '');
      if (s !== undefined) lat.push(t - s);
      ctl.resolveOffset(m.offset);
    }
  });
  while (!joined) await sleep(20);
  for (let i = 0; i < n + 20; i++) {
    const key = `k${i}`;
    if (i >= 20) sent.set(key, performance.now());
    const tx = await producer.transaction();
    await tx.send(topic, [{ key, value: Buffer.from('x') }]);
    await tx.sendOffsets(`${topic}-src`, [{ topic, partition: 0, offset: String(i) }]);
    await tx.commit();
    await sleep(gapMs);
  }
  const until = Date.now() + 10_000;
  while (lat.length < n && Date.now() < until) await sleep(20);
  await consumer.disconnect();
  await producer.disconnect();
  await admin.deleteTopics([topic]).catch(() => {});
  await admin.disconnect();
  return lat;
}
