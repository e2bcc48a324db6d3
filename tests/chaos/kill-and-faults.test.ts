// The bounded form of `npm run chaos`, once per exchange-stream path: a steady flow of signals into
// the order manager running as one process per stage / bridge, on a private Kafka broker, RabbitMQ
// node, PostgreSQL cluster and schema registry, while
//   - direct websocket path: a stage and a bridge are killed with SIGKILL (and restarted), the Kafka
//     broker and the schema registry are restarted, the placement process is frozen (SIGSTOP) past
//     the session timeout while a standby takes over and then woken, the exchange's clock jumps;
//   - ws-gateway path (production's): a stage, a bridge and the ws-gateway stand-in are killed, the
//     RabbitMQ node is stopped, has its connections closed and its VM killed, PostgreSQL is stopped
//     with a fast and with an immediate shutdown;
//   - on both, the simulator loses answers, sends 5xx after executing, refuses with 10006, and drops,
//     duplicates and reorders websocket pushes.
// Nothing may be lost and nothing done twice (stack/chaos-checks.ts, each check shown to fail in
// tests/chaos/checks.test.ts); every planned fault must have been injected and enough orders placed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runChaos, type ChaosFigures, type ChaosOptions } from '../../stack/chaos.ts';

const STAGES = ['signal-decide', 'place', 'track'];
const BRIDGES = ['signal-bridge', 'events-out', 'exchange-streams'];

async function run(opts: Omit<ChaosOptions, 'signals' | 'ratePerSec' | 'answerLoss' | 'log'>): Promise<{ f: ChaosFigures; lines: string[]; log: string }> {
  const lines: string[] = [];
  const f = await runChaos({ signals: 30, ratePerSec: 1, answerLoss: 0.1, minOrderShare: 0.2, ...opts, log: (l) => lines.push(l) });
  return { f, lines, log: lines.join('\n') };
}

function assertClean({ f, log }: { f: ChaosFigures; log: string }): void {
  assert.equal(f.signals, 30);
  assert.ok(f.exchange_faults > 0, `exchange faults injected (${f.exchange_faults})`);
  assert.ok(f.orders >= f.order_floor, `orders executed (${f.orders}) at least the floor ${f.order_floor}`);
  assert.ok(f.traced > 0, 'orders traced back to their signals');
  assert.ok(f.order_events > 0, 'order events were published');
  assert.equal(f.shortfalls, 0, `every planned fault injected, enough orders, few refusals: ${log}`);
  assert.equal(f.duplicates, 0, `nothing twice (orders per signal, decisions, records, events): ${log}`);
  assert.equal(f.losses, 0, `nothing lost, PostgreSQL equals the exchange: ${log}`);
  assert.ok(f.max_recovery_ms > 0, 'recovery measured');
}

test('direct websocket path: kill -9 of a stage and a bridge, Kafka and schema registry restarts, a frozen placement process woken after its standby took over, an exchange clock jump', async () => {
  const r = await run({ stream: 'direct', seed: 3, kills: 2, kafkaRestarts: 1, registryRestarts: 1, pauses: 1, clockJumps: 1 });
  const { f, lines, log } = r;
  const killed = lines.map((l) => /^kill -9 (\S+);/.exec(l)?.[1]).filter((x): x is string => Boolean(x));
  assert.equal(killed.length, 2, log);
  assert.ok(killed.some((k) => STAGES.includes(k)), `a stage process was killed: ${log}`);
  assert.ok(killed.some((k) => BRIDGES.includes(k)), `a bridge process was killed: ${log}`);
  assert.equal(f.kafka_restarts, 1, log);
  assert.equal(f.registry_restarts, 1, log);
  assert.ok(lines.some((l) => /^SIGSTOP place for \d+ ms .*standby owned its partitions/.test(l)), `placement frozen and taken over: ${log}`);
  assert.ok(lines.some((l) => l.startsWith('exchange clock jumped forward 60 s')), log);
  assertClean(r);
});

test('ws-gateway path: kill -9 of a stage, a bridge and the ws-gateway stand-in, RabbitMQ stopped, connections closed and VM killed, PostgreSQL fast and immediate shutdowns', async () => {
  const r = await run({ stream: 'ws-gateway', seed: 5, kills: 3, rabbitFaults: 3, pgRestarts: 2 });
  const { f, lines, log } = r;
  assert.equal(f.stream, 'ws-gateway');
  const killed = lines.map((l) => /^kill -9 (\S+);/.exec(l)?.[1]).filter((x): x is string => Boolean(x));
  assert.ok(killed.includes('ws-gateway'), `the ws-gateway stand-in was killed: ${log}`);
  assert.ok(killed.some((k) => STAGES.includes(k)) && killed.some((k) => BRIDGES.includes(k)), log);
  assert.equal(f.rabbit_faults, 3, log);
  assert.ok(lines.some((l) => l.startsWith('RabbitMQ node restarted (rabbitmqctl stop)')), log);
  assert.ok(lines.some((l) => l.startsWith('RabbitMQ node restarted (SIGKILL of its VM)')), log);
  assert.ok(lines.some((l) => l.startsWith('RabbitMQ: closed')), log);
  assert.ok(lines.some((l) => l.startsWith('PostgreSQL restarted (pg_ctl stop -m fast)')), log);
  assert.ok(lines.some((l) => l.startsWith('PostgreSQL restarted (pg_ctl stop -m immediate)')), log);
  assertClean(r);
});
