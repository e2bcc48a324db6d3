// connectors/rate-limiter.ts: unit tests on a manual clock (sleeping advances it, so no test waits
// on wall time), then the adapter against a simulator that enforces Bybit's per-UID limits: with
// the limiter no request is refused; with the limiter's own limit set too high the simulator does
// refuse (so the test can fail), and a lower real limit announced in X-Bapi-Limit is honoured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ManualClock } from '../../runtime/clock.ts';
import { RateLimiter } from '../../connectors/rate-limiter.ts';
import { createBybitRest, parseConfig } from '../../connectors/bybit-rest.ts';
import { BybitRetriableError } from '../../pipelines/exchange-port.ts';
import { startSimulator } from '../../sim/server.ts';

function manual(opts: ConstructorParameters<typeof RateLimiter>[0] = {}) {
  const clock = new ManualClock(1_000_000);
  const sleeps: number[] = [];
  const limiter = new RateLimiter({
    clock,
    sleep: async (ms) => {
      sleeps.push(ms);
      clock.advance(ms);
      await new Promise((r) => setImmediate(r)); // yield, as a real sleep would
    },
    ...opts,
  });
  return { clock, sleeps, limiter };
}

const CREATE_SPOT = RateLimiter.key('/v5/order/create', 'spot');
const CREATE_LINEAR = RateLimiter.key('/v5/order/create', 'linear');
const REALTIME = RateLimiter.key('/v5/order/realtime', 'spot');

test("limits are Bybit's per endpoint and category, times the fraction", () => {
  const { limiter } = manual({ fraction: 1 });
  assert.equal(limiter.limitOf(CREATE_SPOT), 20);
  assert.equal(limiter.limitOf(CREATE_LINEAR), 10);
  assert.equal(limiter.limitOf(RateLimiter.key('/v5/order/cancel', 'linear')), 10);
  assert.equal(limiter.limitOf(REALTIME), 50);
  const { limiter: l8 } = manual({ fraction: 0.8 });
  assert.equal(l8.limitOf(CREATE_SPOT), 16);
  assert.equal(l8.limitOf(CREATE_LINEAR), 8);
  assert.throws(() => new RateLimiter({ fraction: 0 }));
});

test('a full window waits until its oldest request is a second old; keys do not share budgets', async () => {
  const { clock, sleeps, limiter } = manual({ fraction: 1 });
  const t0 = clock.now();
  for (let i = 0; i < 10; i++) (await limiter.acquire(CREATE_LINEAR))();
  assert.deepEqual(sleeps, [], 'ten linear creates go at once');
  for (let i = 0; i < 20; i++) (await limiter.acquire(CREATE_SPOT))();
  assert.deepEqual(sleeps, [], 'spot has its own budget');
  clock.advance(250);
  (await limiter.acquire(CREATE_LINEAR))();
  assert.deepEqual(sleeps, [751], 'the 11th waits for the window to roll (a second after the first answer, +1 ms)');
  assert.equal(clock.now(), t0 + 1001);
  assert.equal(limiter.waitedMs, 751);
});

test('a slot counts from its answer, and not at all while its request is in flight', async () => {
  const { clock, sleeps, limiter } = manual({ fraction: 1 });
  const releases = [];
  for (let i = 0; i < 10; i++) releases.push(await limiter.acquire(CREATE_LINEAR));
  clock.advance(300);
  releases.forEach((r) => r()); // the answers arrive 300 ms later
  clock.advance(800); // 1100 ms after the sends, 800 ms after the answers
  (await limiter.acquire(CREATE_LINEAR))();
  assert.deepEqual(sleeps, [201], 'waits for a second after the first answer');
  // A window full of requests still in flight: poll until one is answered.
  const { clock: c2, sleeps: s2, limiter: l2 } = manual({ fraction: 1 });
  const held = [];
  for (let i = 0; i < 10; i++) held.push(await l2.acquire(CREATE_LINEAR));
  c2.advance(5000);
  const p = l2.acquire(CREATE_LINEAR);
  await new Promise((r) => setImmediate(r));
  assert.ok(s2.length > 0 && s2.every((ms) => ms === 20), 'polls while all in flight');
  held[0]!();
  (await p)();
});

test('concurrent callers queue in order and never exceed the limit in any rolling second', async () => {
  const { clock, limiter } = manual({ fraction: 1 });
  const times: number[] = [];
  await Promise.all(
    Array.from({ length: 35 }, () =>
      limiter.acquire(CREATE_LINEAR).then((release) => {
        times.push(clock.now());
        release();
      }),
    ),
  );
  assert.equal(times.length, 35);
  for (let i = 10; i < times.length; i++) assert.ok(times[i]! - times[i - 10]! >= 1000, `request ${i} within a second of request ${i - 10}`);
});

test('X-Bapi-Limit-Status 0 blocks the key until X-Bapi-Limit-Reset-Timestamp; X-Bapi-Limit lowers the limit', async () => {
  const { clock, sleeps, limiter } = manual({ fraction: 1 });
  limiter.observe(CREATE_SPOT, { limit: 20, remaining: 0, resetAtMs: clock.now() + 400 });
  (await limiter.acquire(CREATE_SPOT))();
  assert.deepEqual(sleeps, [400]);
  (await limiter.acquire(REALTIME))();
  assert.deepEqual(sleeps, [400], 'other endpoints are not blocked');
  limiter.observe(CREATE_LINEAR, { limit: 4, remaining: 3, resetAtMs: clock.now() });
  assert.equal(limiter.limitOf(CREATE_LINEAR), 4, 'the account’s real (lower) limit wins');
  limiter.observe(CREATE_LINEAR, { limit: 100, remaining: 99, resetAtMs: clock.now() });
  assert.equal(limiter.limitOf(CREATE_LINEAR), 10, 'never above the documented limit');
});

test('a 10006 block is capped (a skewed exchange clock cannot stall the client for long)', async () => {
  const { clock, sleeps, limiter } = manual();
  limiter.blockUntil(CREATE_SPOT, clock.now() + 3_600_000);
  (await limiter.acquire(CREATE_SPOT))();
  assert.deepEqual(sleeps, [5000]);
});

const link = () => `rl-${randomBytes(8).toString('hex')}`;
const linearBuy = () => ({ category: 'linear' as const, symbol: 'ETHUSDT', side: 'Buy' as const, orderType: 'Limit' as const, qty: '0.01', price: '2800', timeInForce: 'GTC' as const, orderLinkId: link() });

test('on the simulator: 25 linear creates in a burst are paced under 10/s and none is refused', async () => {
  const sim = await startSimulator({ port: 0, seed: 5 });
  try {
    const rest = createBybitRest({ config: parseConfig({ BYBIT_SIM_PORT: String(sim.port), BYBIT_RATE_LIMIT_FRACTION: '1' }) });
    const results = await Promise.allSettled(Array.from({ length: 25 }, () => rest.createOrder(linearBuy())));
    const refused = results.filter((r) => r.status === 'rejected');
    assert.deepEqual(refused.map((r) => String((r as PromiseRejectedResult).reason)), []);
    assert.equal(sim.orders().length, 25);
    assert.ok(rest.limiter.waitedMs > 0, 'the limiter held requests back');
  } finally {
    await sim.close();
  }
});

test('on the simulator: with a client limit above the exchange’s, the exchange refuses (10006 → retriable)', async () => {
  const sim = await startSimulator({ port: 0, seed: 5 });
  try {
    const limiter = new RateLimiter({ fraction: 1, limits: { '/v5/order/create:linear': 1000 } });
    const rest = createBybitRest({ config: parseConfig({ BYBIT_SIM_PORT: String(sim.port) }), limiter });
    const results = await Promise.allSettled(Array.from({ length: 25 }, () => rest.createOrder(linearBuy())));
    const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as BybitRetriableError);
    assert.ok(refused.length > 0, 'the simulator enforces 10/s');
    assert.ok(refused.every((e) => e instanceof BybitRetriableError && e.code === 'rate_limited' && !e.uncertain));
  } finally {
    await sim.close();
  }
});

test('on the simulator: a lower per-UID limit announced in X-Bapi-Limit is learnt and honoured', async () => {
  const sim = await startSimulator({ port: 0, seed: 5, rateLimits: { limits: { '/v5/order/create:linear': 3 } } });
  try {
    const rest = createBybitRest({ config: parseConfig({ BYBIT_SIM_PORT: String(sim.port), BYBIT_RATE_LIMIT_FRACTION: '1' }) });
    await rest.createOrder(linearBuy()); // learns X-Bapi-Limit: 3
    assert.equal(rest.limiter.limitOf(CREATE_LINEAR), 3);
    const results = await Promise.allSettled(Array.from({ length: 7 }, () => rest.createOrder(linearBuy())));
    assert.deepEqual(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)), []);
    assert.equal(sim.orders().length, 8);
  } finally {
    await sim.close();
  }
});
