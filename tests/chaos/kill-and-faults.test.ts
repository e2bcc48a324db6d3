// The bounded form of `npm run chaos`: a steady flow of signals into the order manager running as
// one process per stage / bridge, on a private Kafka broker and a private RabbitMQ node, while
//   - a stage process and a bridge process are killed with SIGKILL (and restarted),
//   - the Kafka broker is restarted,
//   - RabbitMQ's connections are closed and the node is restarted,
//   - the simulator loses answers, sends 5xx after executing, refuses with 10006, and drops,
//     duplicates and reorders websocket pushes.
// Nothing may be lost and nothing placed twice; every order state change reaches orders.events and
// the RabbitMQ order events queue; PostgreSQL equals the exchange.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runChaos } from '../../stack/chaos.ts';

const STAGES = ['validate', 'size-risk', 'place', 'track'];
const BRIDGES = ['signal-bridge', 'events-out', 'exchange-streams'];

test('kill -9 of stage and bridge processes, Kafka and RabbitMQ restarts, exchange faults: one outcome per signal, no order twice, every state change published, PostgreSQL equals the exchange', async () => {
  const lines: string[] = [];
  const f = await runChaos({ signals: 60, ratePerSec: 1, kills: 2, kafkaRestarts: 1, rabbitFaults: 3, answerLoss: 0.08, seed: 3, log: (l) => lines.push(l) });
  const log = lines.join('\n');
  assert.equal(f.signals, 60);
  const killed = lines.map((l) => /^kill -9 (\S+);/.exec(l)?.[1]).filter((x): x is string => Boolean(x));
  assert.equal(killed.length, 2, log);
  assert.ok(killed.some((k) => STAGES.includes(k)), `a stage process was killed: ${log}`);
  assert.ok(killed.some((k) => BRIDGES.includes(k)), `a bridge process was killed: ${log}`);
  assert.equal(f.kafka_restarts, 1, log);
  assert.ok(lines.some((l) => l.startsWith('Kafka broker restarted')), log);
  assert.equal(f.rabbit_faults, 3, log);
  assert.ok(lines.some((l) => l.startsWith('RabbitMQ node restarted (rabbitmqctl stop)')), log);
  assert.ok(lines.some((l) => l.startsWith('RabbitMQ node restarted (SIGKILL of its VM)')), log);
  assert.ok(lines.some((l) => l.startsWith('RabbitMQ: closed')), log);
  assert.ok(f.exchange_faults > 0, `exchange faults injected (${f.exchange_faults})`);
  assert.ok(f.faults >= 5 + f.exchange_faults, `faults counted (${f.faults})`);
  assert.ok(f.orders > 0, 'orders were placed');
  assert.ok(f.order_events > 0, 'order events were published');
  assert.equal(f.duplicates, 0, `no orderLinkId placed twice, no event twice under two ids: ${log}`);
  assert.equal(f.losses, 0, `nothing lost: ${log}`);
  assert.ok(f.max_recovery_ms > 0, 'recovery measured');
});
