// The operator CLI as an operator runs it: a child process (`node --import tsx cli/main.ts`), its
// stdout, stderr and exit code, against the real stack (own topic namespace, own database) and the
// simulator.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { namespace, testKafka, createNamespace, testCfg, registryUrl } from '../helpers.ts';
import { ensureDatabase, dropDatabase, withDatabase, createDb, sql } from '../../runtime/db.ts';
import { migrate } from '../../runtime/migrate.ts';
import { createTopicCodec } from '../../schemas/topic-codec.ts';
import { startSimulator } from '../../sim/server.ts';
import type { ExchangeOrderUpdate } from '../../schemas/types.ts';
import { z } from 'zod';

const root = fileURLToPath(new URL('../../', import.meta.url));
const prefix = namespace('cli');
const dbUrl = withDatabase(testCfg.DATABASE_URL, `cli_${randomBytes(4).toString('hex')}`);
const kafka = testKafka();
let sim: Awaited<ReturnType<typeof startSimulator>>;
let dropTopics: () => Promise<void>;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'cli/main.ts', ...args],
      {
        cwd: root,
        timeout: 120_000,
        env: { ...process.env, TOPIC_PREFIX: prefix, DATABASE_URL: dbUrl, BYBIT_SIM_PORT: String(sim.port), LOG_LEVEL: 'error', ADMIN_PORT: '1', ...env },
      },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

before(async () => {
  sim = await startSimulator({ port: 0, seed: 3 });
  sim.setPrice('ETHUSDT', 3000);
  await ensureDatabase(dbUrl);
  const pool = await createDb(dbUrl);
  await migrate(pool);
  await pool.end();
  dropTopics = await createNamespace(kafka, prefix, 3);
});

after(async () => {
  await dropTopics?.();
  await sim?.close();
  await dropDatabase(dbUrl).catch(() => {});
});

test('--help answers with the commands and exit 0; unknown commands and bad arguments exit 2', async () => {
  const help = await cli(['--help']);
  assert.equal(help.code, 0);
  for (const c of ['status', 'reconcile', 'kill-switch on', 'tail <topic>', 'replay', 'retrain', 'Exit codes']) assert.ok(help.stdout.includes(c), `help mentions ${c}`);

  const unknown = await cli(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);

  assert.equal((await cli([])).code, 2, 'no command');
  assert.equal((await cli(['status', '--bogus-flag'])).code, 2, 'unknown option');
  const ks = await cli(['kill-switch', 'maybe']);
  assert.equal(ks.code, 2);
  assert.match(ks.stderr, /"on" or "off"/);
  const tail = await cli(['tail', 'no.such.topic']);
  assert.equal(tail.code, 2);
  assert.match(tail.stderr, /unknown topic/);
  const replay = await cli(['replay']);
  assert.equal(replay.code, 2, 'replay without an input is a usage error');
  assert.match(replay.stderr, /replay needs --file or --topic-prefix/);
});

test('tail decodes Avro records to JSON lines and prints raw topics as text', async () => {
  const codec = await createTopicCodec({ registryUrl, prefix });
  const topic = `${prefix}exchange.orders`;
  const upd = (i: number): ExchangeOrderUpdate => ({
    orderId: `oid-${i}`, orderLinkId: `link-${i}`, symbol: 'ETHUSDT', category: 'linear', side: 'Buy', orderType: 'Limit', price: '2900', qty: '0.1', marketUnit: null,
    timeInForce: 'GTC', orderStatus: 'New', cumExecQty: '0', cumExecValue: '0', cumExecFee: '0', avgPrice: '', leavesQty: '0.1', rejectReason: 'EC_NoError', cancelType: null,
    reduceOnly: false, createdTime: 1_760_000_000_000 + i, updatedTime: 1_760_000_000_000 + i, source: 'ws', streamMessageId: `m-${i}`, creationTime: null, observedAt: 1_760_000_000_100 + i,
  });
  const producer = kafka.producer();
  await producer.connect();
  await producer.send(topic, await Promise.all([1, 2, 3].map(async (i) => ({ key: 'ETHUSDT', value: await codec.encode(topic, upd(i)), partition: 0 }))));
  await producer.send(`${prefix}signals.raw`, [{ key: 'ETHUSDT', value: Buffer.from('{"signal_id":"raw-1"}'), partition: 0 }]);
  await producer.disconnect();

  const r = await cli(['tail', 'exchange.orders', '--from-beginning', '--max', '3']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { topic: string; key: string; offset: number; value: ExchangeOrderUpdate });
  assert.equal(lines.length, 3);
  assert.deepEqual(lines.map((l) => l.value), [upd(1), upd(2), upd(3)]);
  assert.deepEqual(lines.map((l) => l.offset), [0, 1, 2]);
  assert.ok(lines.every((l) => l.topic === 'exchange.orders' && l.key === 'ETHUSDT'));

  const raw = await cli(['tail', 'signals.raw', '--from-beginning', '--max', '1', '--prefix', prefix], { TOPIC_PREFIX: '' });
  assert.equal(raw.code, 0, raw.stderr);
  assert.equal((JSON.parse(raw.stdout.trim()) as { value: string }).value, '{"signal_id":"raw-1"}');
});

test('reconcile, status and kill-switch run against the configured Bybit and database with the right exit codes', async () => {
  const ext = sim.placeOrder({ category: 'linear', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Limit', qty: '0.1', price: '2800', orderLinkId: 'desk-cli-1' });
  const ours = sim.placeOrder({ category: 'spot', symbol: 'ETHUSDT', side: 'Buy', orderType: 'Limit', qty: '0.1', price: '2800', orderLinkId: `om-${randomBytes(6).toString('hex')}` });

  const rec = await cli(['reconcile'], { RECONCILE_GRACE_MS: '0' });
  assert.equal(rec.code, 0, rec.stderr);
  assert.match(rec.stdout, /reconciliation \(cli\).*OK/);
  assert.match(rec.stdout, /missing_order\s+2/);
  const json = await cli(['reconcile', '--json'], { RECONCILE_GRACE_MS: '0' });
  assert.equal(json.code, 0, json.stderr);
  assert.equal((JSON.parse(json.stdout) as { ok: boolean; trigger: string }).trigger, 'cli');

  const st = await cli(['status']);
  assert.equal(st.code, 0, st.stderr);
  assert.match(st.stdout, /kafka\s+up/);
  assert.match(st.stdout, /postgresql\s+up/);
  assert.match(st.stdout, /ACTIVE/);
  assert.match(st.stdout, /track\s+exchange\.orders/);
  assert.match(st.stdout, /last reconciliation\n\s+\S+ cli ok/);

  const on = await cli(['kill-switch', 'on', '--reason', 'cli test']);
  assert.equal(on.code, 0, on.stdout + on.stderr);
  assert.match(on.stdout, /verified\s+yes/);
  const open = sim.orders().filter((o) => o.orderStatus === 'New');
  assert.deepEqual(open.map((o) => o.orderId), [ext.orderId], 'ours cancelled, the external one left');
  assert.equal(sim.orders().find((o) => o.orderId === ours.orderId)?.orderStatus, 'Cancelled');
  const pool = await createDb(dbUrl);
  try {
    const row = await pool.one(sql.type(z.object({ state: z.string(), kill_switch: z.boolean() }))`SELECT state, kill_switch FROM trading_state WHERE id`);
    assert.deepEqual(row, { state: 'HALTED', kill_switch: true });
    assert.match((await cli(['status'])).stdout, /HALTED\s+KILL SWITCH ON/);
    const off = await cli(['kill-switch', 'off']);
    assert.equal(off.code, 0, off.stderr);
    const after = await pool.one(sql.type(z.object({ state: z.string(), kill_switch: z.boolean() }))`SELECT state, kill_switch FROM trading_state WHERE id`);
    assert.deepEqual(after, { state: 'ACTIVE', kill_switch: false });
  } finally {
    await pool.end();
  }

  // A Bybit that does not answer: reconcile fails with exit 1.
  const down = await cli(['reconcile'], { BYBIT_SIM_PORT: '1', BYBIT_REST_TIMEOUT_MS: '500' });
  assert.equal(down.code, 1, down.stdout + down.stderr);
  assert.match(down.stdout, /FAILED/);
});
