// stack/kafka/TxnProbe.java (probeTransactions) is what the chaos reader prints about a partition it could not read to
// its end (the broker's own admin client: offsets, producers with an open transaction, the
// coordinator's state of each). On the stack's broker: a transaction left open on one partition
// shows there (last stable offset below the high watermark, the producer's open transaction from
// its first offset, the coordinator's Ongoing state naming the partition); a partition with only a
// plain write shows none; after the abort the partition is stable again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { loadConfig, kafkaBrokers } from '../../runtime/config.ts';
import { createKafka } from '../../runtime/kafka.ts';
import { createLogger } from '../../runtime/logger.ts';
import { paths } from '../../stack/stack.ts';
import { probeTransactions } from '../../stack/chaos-infra.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';

const cfg = loadConfig(process.env, UNIT_SCHEMAS);
const brokers = kafkaBrokers(cfg);

const probe = async (partitions: string[]): Promise<Array<Record<string, unknown>>> =>
  (await probeTransactions(paths(cfg).libs, brokers, partitions)).split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

test('TxnProbe: an open transaction shows on its partition and at its coordinator; a plain write and an ended transaction show none', async () => {
  const kafka = createKafka({ brokers, clientId: 'txn-probe-test', logger: createLogger(cfg, 'test').child({}, { level: 'fatal' }) });
  const topic = `txn-probe-${randomBytes(4).toString('hex')}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.ensureTopics([{ topic, partitions: 2, config: {} }]);
  const plain = kafka.producer();
  const tx = kafka.producer({ transactionalId: `${topic}-tx` });
  try {
    await plain.connect();
    await plain.sendAt(topic, [{ key: null, value: Buffer.from('plain'), partition: 1 }]);
    await tx.connect();
    const t = await tx.transaction();
    await t.send(topic, [{ key: null, value: Buffer.from('a'), partition: 0 }, { key: null, value: Buffer.from('b'), partition: 0 }]);

    const open = await probe([`${topic}/0`, `${topic}/1`]);
    const p0 = open.find((x) => x.partition === `${topic}/0`)!;
    const p1 = open.find((x) => x.partition === `${topic}/1`)!;
    assert.deepEqual([p0.lastStable, p0.highWatermark], [0, 2], JSON.stringify(p0));
    const producers = p0.producers as Array<{ producerId: number; openTransactionFrom: number }>;
    assert.deepEqual(producers.map((x) => x.openTransactionFrom), [0]);
    assert.deepEqual([p1.lastStable, p1.highWatermark], [1, 1], JSON.stringify(p1));
    assert.ok((p1.producers as Array<{ openTransactionFrom: number }>).every((x) => x.openTransactionFrom === -1));
    const coordinator = open.find((x) => x.transactionalId === `${topic}-tx`)!;
    assert.equal(coordinator.producerId, producers[0]!.producerId);
    assert.equal(coordinator.state, 'Ongoing');
    assert.deepEqual(coordinator.partitions, [`${topic}/0`]);

    await t.abort();
    const ended = await probe([`${topic}/0`]);
    assert.equal(ended.length, 1, 'no producer with an open transaction, so nothing asked of the coordinator');
    assert.ok((ended[0]!.lastStable as number) > 2 && ended[0]!.lastStable === ended[0]!.highWatermark, JSON.stringify(ended[0]));
  } finally {
    await tx.disconnect().catch(() => {});
    await plain.disconnect().catch(() => {});
    await admin.deleteTopics([topic]).catch(() => {});
    await admin.disconnect();
  }
});
