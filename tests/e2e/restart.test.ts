// The second start, as people run it: `npm start` (stack/start.ts: the simulator and every service in
// one process) on the same database, topics, RabbitMQ queues and simulator state, stopped with SIGINT
// and started again three times, then killed with SIGKILL mid-flow (power loss) and started once
// more. After every start: ready, warm-up signals trade (no signal refused as a duplicate of
// yesterday's, no order id taken twice), fills come back as order events on RabbitMQ, PostgreSQL
// equals the simulator order by order, a reconciliation finds nothing it cannot repair, nothing was
// dead-lettered as a conflict, and trading is ACTIVE.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { connect, type ConsumeMessage } from 'amqplib';
import { z } from 'zod';
import { namespace, testCfg, waitFor, testKafka } from '../helpers.ts';
import { createDb, dropDatabase, withDatabase, sql, type DatabasePool } from '../../runtime/db.ts';
import { topicSpecs } from '../../runtime/topics.ts';
import { freePort } from '../../stack/chaos-infra.ts';
import { ROOT } from '../../runtime/paths.ts';

const prefix = namespace('restart');
const stackDir = mkdtempSync(join(tmpdir(), 'restart-stack-'));
const dbUrl = withDatabase(testCfg.DATABASE_URL, `restart_e2e_${randomBytes(4).toString('hex')}`);
const signalsQueue = `test.${prefix}trading_signals`;
const eventsQueue = `test.${prefix}order_events`;
const token = randomBytes(12).toString('hex');
const logFile = join(stackDir, 'starts.log');

type SimOrder = { orderId: string; orderLinkId: string; orderStatus: string; cumExecQty: string; createdTime: string; updatedTime: string };

after(async () => {
  await dropDatabase(dbUrl).catch(() => {});
  const admin = testKafka().admin();
  await admin.connect();
  await admin.deleteTopics(topicSpecs(prefix, 3).map((s) => s.topic)).catch(() => {});
  await admin.disconnect();
  const conn = await connect(testCfg.AMQP_URL);
  const ch = await conn.createChannel();
  for (const q of [signalsQueue, eventsQueue]) await ch.deleteQueue(q).catch(() => {});
  await conn.close();
  rmSync(stackDir, { recursive: true, force: true });
});

test('npm start, stopped and started again on the same state (3 × SIGINT, then a SIGKILL of everything), trades after every start and stays equal to the exchange', async () => {
  const simPort = await freePort();
  const adminPort = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TOPIC_PREFIX: prefix,
    DATABASE_URL: dbUrl,
    STACK_DIR: stackDir,
    BYBIT_SIM_PORT: String(simPort),
    ADMIN_PORT: String(adminPort),
    ADMIN_TOKEN: token,
    SIGNALS_QUEUE: signalsQueue,
    MODEL_SIGNALS_QUEUE: signalsQueue,
    ORDER_EVENTS_QUEUE: eventsQueue,
    WARMUP_INTERVAL_MS: '2000',
    LOG_LEVEL: 'info',
  };
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const simUrl = `http://127.0.0.1:${simPort}`;
  let child: ChildProcess | null = null;
  const dbBox: { db: DatabasePool | null } = { db: null };

  // Order events as another service reads them, across every start.
  const conn = await connect(testCfg.AMQP_URL);
  const ch = await conn.createChannel();
  await ch.assertQueue(eventsQueue, { durable: true });
  const events: Array<Record<string, unknown>> = [];
  await ch.consume(eventsQueue, (m: ConsumeMessage | null) => {
    if (!m) return;
    events.push(JSON.parse(m.content.toString('utf8')) as Record<string, unknown>);
    ch.ack(m);
  });

  const start = (): ChildProcess => {
    const out = openSync(logFile, 'a');
    const c = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'stack/start.ts')], { env, cwd: ROOT, stdio: ['ignore', out, out] });
    closeSync(out);
    return c;
  };
  const exited = (c: ChildProcess) => new Promise<number | null>((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve(c.exitCode) : c.once('exit', (code) => resolve(code))));
  const simOrders = async (): Promise<SimOrder[]> => {
    const r = await fetch(`${simUrl}/sim/orders`);
    const body = (await r.json()) as { result: { list: SimOrder[] } };
    return body.result.list.filter((o) => String(o.orderLinkId).startsWith('om-'));
  };
  const countRow = z.object({ n: z.number() });

  const phase = async (label: string) => {
    const began = Date.now();
    child = start();
    const ready = await waitFor(`${label}: /readyz 200`, async () => {
      if (child!.exitCode !== null) throw new Error(`${label}: npm start exited with ${child!.exitCode} (see ${logFile}):\n${readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n')}`);
      const r = await fetch(`${adminUrl}/readyz`).catch(() => null);
      return r?.status === 200 ? Date.now() - began : null;
    }, 180_000, 250);
    const db = (dbBox.db ??= await createDb(dbUrl, { maximumPoolSize: 2 }));

    // Warm-up signals of this start trade: new orders at the exchange, each once, filled, and their fills on RabbitMQ.
    const fresh = await waitFor(`${label}: 3 new orders at the exchange`, async () => {
      const mine = (await simOrders()).filter((o) => Number(o.createdTime) >= began);
      return mine.length >= 3 ? mine : null;
    }, 180_000, 500);
    await waitFor(`${label}: order_filled events on RabbitMQ for this start's orders`, () => {
      const links = new Set(fresh.map((o) => o.orderLinkId));
      return events.filter((e) => e.event_type === 'order_filled' && links.has(String(e.order_link_id))).length >= 2;
    }, 120_000, 250);
    const all = await simOrders();
    assert.equal(new Set(all.map((o) => o.orderLinkId)).size, all.length, 'no orderLinkId twice at the exchange');
    assert.equal(new Set(all.map((o) => o.orderId)).size, all.length, 'no orderId handed out twice by the exchange');

    // PostgreSQL equals the exchange for every settled order of ours.
    await waitFor(`${label}: PostgreSQL equal to the exchange`, async () => {
      const sim = (await simOrders()).filter((o) => Number(o.updatedTime) < Date.now() - 5000);
      const rows = await db.any(sql.type(z.object({ order_link_id: z.string(), order_id: z.string().nullable(), status: z.string(), cum_exec_qty: z.string() }))`
        SELECT order_link_id, order_id, status, cum_exec_qty FROM orders WHERE order_link_id LIKE 'om-%'`);
      const pg = new Map(rows.map((r) => [r.order_link_id, r]));
      const off = sim.filter((o) => {
        const r = pg.get(o.orderLinkId);
        return !r || r.order_id !== o.orderId || r.status !== o.orderStatus || Number(r.cum_exec_qty) !== Number(o.cumExecQty);
      });
      return off.length === 0 ? true : null;
    }, 120_000, 1000);

    // A reconciliation now finds nothing it cannot repair: its own corrections leave it with nothing to report.
    await waitFor(`${label}: a reconciliation with no discrepancy`, async () => {
      const r = await fetch(`${adminUrl}/admin/reconcile`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
      const rep = (await r.json()) as { ok?: boolean; discrepancies?: Record<string, number> };
      return r.status === 200 && rep.ok && Object.values(rep.discrepancies ?? {}).every((n) => n === 0) ? true : null;
    }, 120_000, 2000);

    assert.equal(await db.oneFirst(sql.type(countRow)`SELECT count(*)::int AS n FROM stage_conflicts`), 0, `${label}: records dead-lettered as conflicts`);
    assert.equal(await db.oneFirst(sql.type(countRow)`SELECT count(*)::int AS n FROM signals WHERE outcome_reason = 'duplicate_signal'`), 0, `${label}: signals refused as duplicates of an earlier start's`);
    const st = await db.one(sql.type(z.object({ state: z.string() }))`SELECT state FROM trading_state WHERE id`);
    assert.equal(st.state, 'ACTIVE', label);
    return { readyMs: ready, orders: fresh.length };
  };

  try {
    const seen: Array<{ label: string; readyMs: number }> = [];
    for (const label of ['first start', 'second start (after SIGINT)', 'third start (after SIGINT)', 'fourth start (after SIGINT)']) {
      const r = await phase(label);
      seen.push({ label, readyMs: r.readyMs });
      if (label.startsWith('fourth')) break;
      child!.kill('SIGINT');
      assert.equal(await exited(child!), 0, `${label}: SIGINT drains and exits 0`);
      assert.ok(existsSync(join(stackDir, 'sim')), 'the simulator kept its paper account under STACK_DIR');
    }
    // Power loss: everything at once, mid-flow (the simulator runs inside the same process).
    child!.kill('SIGKILL');
    await exited(child!);
    const r = await phase('start after SIGKILL of everything');
    seen.push({ label: 'after SIGKILL', readyMs: r.readyMs });
    process.stdout.write(`# restart: ready after ${seen.map((s) => `${s.label} ${s.readyMs} ms`).join(', ')}\n`);
    child!.kill('SIGINT');
    assert.equal(await exited(child!), 0);
  } finally {
    if (child && (child as ChildProcess).exitCode === null) (child as ChildProcess).kill('SIGKILL');
    await dbBox.db?.end();
    await conn.close().catch(() => {});
  }
});
