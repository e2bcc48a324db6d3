// Scaling out, as the design promises it: two instances of every order-manager part (signal bridge,
// signal-decide, place, track, exchange streams, events-out, ops), each its own process in the
// same consumer group, on topics of four partitions, under a steady flow of signals; mid-flow one
// instance of each part is killed with SIGKILL (and restarted), the other keeps the group going. The
// chaos run's checks then hold exactly as with one instance (stack/chaos-checks.ts): every signal has
// one outcome, at most one create per signal at the exchange, PostgreSQL equals the exchange order by
// order, every state change on orders.events and RabbitMQ, one record per id on the pipeline topics.
// (Risk caps shared by the instances: tests/pipelines/risk-instances.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runChaos } from '../../stack/chaos.ts';

const PARTS = ['ops', 'track', 'events-out', 'exchange-streams', 'place', 'signal-decide', 'signal-bridge'];

test('two instances of every order-manager part, one of each killed mid-flow: exactly-once outcomes', async () => {
  const lines: string[] = [];
  const f = await runChaos({ signals: 48, ratePerSec: 1, kills: PARTS.length, instances: 2, partitions: 4, answerLoss: 0.05, seed: 11, stream: 'direct', minOrderShare: 0.2, log: (l) => lines.push(l) });
  const log = lines.join('\n');
  assert.ok(lines.some((l) => /^\d+ processes ready \(2 instances of each order-manager part, 4 partitions\)/.test(l)), log);
  const killed = lines.map((l) => /^kill -9 (\S+);/.exec(l)?.[1]).filter((x): x is string => Boolean(x));
  assert.deepEqual([...killed].sort(), [...PARTS].sort(), `one instance of each part killed, once: ${log}`);
  assert.equal(f.signals, 48);
  assert.ok(f.orders >= f.order_floor, `orders executed (${f.orders}) at least the floor ${f.order_floor}`);
  assert.ok(f.traced > 0 && f.order_events > 0, log);
  assert.equal(f.shortfalls, 0, log);
  assert.equal(f.duplicates, 0, `nothing twice with two instances: ${log}`);
  assert.equal(f.losses, 0, `nothing lost with two instances: ${log}`);
});
