// BYBIT_RATE_LIMIT_MULTIPLIER: raises the client-side limits for a simulator with relaxed limits
// (benchmarks), refused by configuration for any real Bybit; the exchange's X-Bapi-Limit still wins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../runtime/clock.ts';
import { ConfigError, loadConfig } from '../../runtime/config.ts';
import { RateLimiter } from '../../connectors/rate-limiter.ts';
import { parseConfig } from '../../connectors/bybit-rest.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';

const CREATE_SPOT = RateLimiter.key('/v5/order/create', 'spot');
const QUERY = RateLimiter.key('/v5/order/realtime', 'spot');

test('the multiplier scales every configured limit; a lower X-Bapi-Limit from the exchange still wins', () => {
  const l = new RateLimiter({ clock: new ManualClock(0), fraction: 0.8, multiplier: 1000 });
  assert.equal(l.limitOf(CREATE_SPOT), 16_000);
  assert.equal(l.limitOf(QUERY), 40_000);
  l.observe(CREATE_SPOT, { limit: 20, remaining: 10, resetAtMs: 1000 });
  assert.equal(l.limitOf(CREATE_SPOT), 16, 'the exchange says 20/s: 20 × 0.8');
  assert.equal(new RateLimiter({ clock: new ManualClock(0) }).limitOf(CREATE_SPOT), 16, 'default multiplier 1');
  assert.throws(() => new RateLimiter({ multiplier: 0.5 }), RangeError);
});

test('BYBIT_RATE_LIMIT_MULTIPLIER above 1 is accepted only with BYBIT_ENV=sim', () => {
  assert.equal(parseConfig({}).BYBIT_RATE_LIMIT_MULTIPLIER, 1);
  assert.equal(parseConfig({ BYBIT_ENV: 'sim', BYBIT_RATE_LIMIT_MULTIPLIER: '1000' }).BYBIT_RATE_LIMIT_MULTIPLIER, 1000);
  for (const env of ['testnet', 'demo', 'mainnet']) {
    assert.throws(() => parseConfig({ BYBIT_ENV: env, BYBIT_RATE_LIMIT_MULTIPLIER: '2' }), /only 1 is allowed unless BYBIT_ENV=sim/);
    assert.equal(parseConfig({ BYBIT_ENV: env, BYBIT_RATE_LIMIT_MULTIPLIER: '1' }).BYBIT_RATE_LIMIT_MULTIPLIER, 1);
  }
  assert.throws(() => parseConfig({ BYBIT_RATE_LIMIT_MULTIPLIER: '0.5' }));
  // Through the service configuration too: the start stops with the problem listed.
  assert.throws(() => loadConfig({ BYBIT_ENV: 'mainnet', BYBIT_RATE_LIMIT_MULTIPLIER: '10' }, UNIT_SCHEMAS), (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.startsWith('BYBIT_RATE_LIMIT_MULTIPLIER')));
});
