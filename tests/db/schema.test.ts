// The schema's own guarantees (keys, checks) and runtime/db.ts's typed reads, on a migrated
// database of this test file's own (random name, dropped afterwards).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { SchemaValidationError } from 'slonik';
import { loadConfig } from '../../runtime/config.ts';
import {
  createDb,
  dropDatabase,
  ensureDatabase,
  isUniqueViolation,
  pgErrorCode,
  sql,
  withDatabase,
  type DatabasePool,
} from '../../runtime/db.ts';
import { migrate } from '../../runtime/migrate.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';

const url = withDatabase(loadConfig(process.env, UNIT_SCHEMAS).DATABASE_URL, `test_db_${randomBytes(6).toString('hex')}`);
let pool: DatabasePool;

before(async () => {
  await ensureDatabase(url);
  pool = await createDb(url, { maximumPoolSize: 2 });
  await migrate(pool);
});

after(async () => {
  await pool?.end();
  await dropDatabase(url);
});

const CHECK_VIOLATION = '23514';

function order(overrides: { link?: string | null; orderId?: string | null; status?: string; external?: boolean; type?: string; price?: string | null } = {}) {
  const o = { link: 'om-test', orderId: null, status: 'Intent', external: false, type: 'Market', price: null, ...overrides };
  return sql.typeAlias('void')`
    INSERT INTO orders (order_link_id, order_id, category, symbol, side, order_type, qty, price, status, external)
    VALUES (${o.link}, ${o.orderId}, 'spot', 'ETHUSDT', 'Buy', ${o.type}, ${'0.2'}, ${o.price}, ${o.status}, ${o.external})`;
}

test('numeric comes back exact, as a decimal string; int8 as a number; timestamptz as epoch ms', async () => {
  const row = await pool.one(sql.type(z.object({ big: z.string(), tiny: z.string(), ms: z.number(), at: z.number() }))`
    SELECT ${'12345678901234567890.123456789'}::numeric AS big, 0.1::numeric + 0.2::numeric AS tiny,
           1735689600123::bigint AS ms, '2025-01-01T00:00:00.123Z'::timestamptz AS at`);
  assert.deepEqual(row, { big: '12345678901234567890.123456789', tiny: '0.3', ms: 1735689600123, at: 1735689600123 });
  await assert.rejects(pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT 9223372036854775807::bigint AS n`), /does not fit/);
});

test('rows are validated by the query schema', async () => {
  await assert.rejects(
    pool.one(sql.type(z.object({ n: z.string() }))`SELECT 1 AS n`),
    (e: unknown) => e instanceof SchemaValidationError,
  );
});

test('every Bybit and local order status is accepted; anything else is refused', async () => {
  const statuses = ['New', 'PartiallyFilled', 'Filled', 'Cancelled', 'PartiallyFilledCanceled', 'Rejected', 'Untriggered',
    'Triggered', 'Deactivated', 'Intent', 'Submitted', 'PendingAmend', 'PendingCancel', 'Unknown'];
  await pool.transaction(async (tx) => {
    for (const [i, status] of statuses.entries()) await tx.query(order({ link: `om-status-${i}`, status }));
    await assert.rejects(tx.transaction((s) => s.query(order({ link: 'om-bad', status: 'Open' }))), (e: unknown) => pgErrorCode(e) === CHECK_VIOLATION);
    const n = await tx.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM orders WHERE order_link_id LIKE 'om-status-%'`);
    assert.equal(n, statuses.length);
    throw new Rollback();
  }).catch((e: unknown) => { if (!(e instanceof Rollback)) throw e; });
});

class Rollback extends Error {}

test('order_link_id: unique, at most 36 of Bybit\'s characters, NULL only for external orders', async () => {
  await pool.transaction(async (tx) => {
    const ok36 = 'a'.repeat(36);
    await tx.query(order({ link: ok36 }));
    const refused = async (q: ReturnType<typeof order>, check: (e: unknown) => boolean) =>
      assert.rejects(tx.transaction((s) => s.query(q)), check);
    await refused(order({ link: ok36 }), (e) => isUniqueViolation(e, 'orders_order_link_id_key'));
    await refused(order({ link: 'a'.repeat(37) }), (e) => pgErrorCode(e) === CHECK_VIOLATION);
    await refused(order({ link: 'has space' }), (e) => pgErrorCode(e) === CHECK_VIOLATION);
    await refused(order({ link: null }), (e) => pgErrorCode(e) === CHECK_VIOLATION);
    await refused(order({ link: 'om-limit', type: 'Limit', price: null }), (e) => pgErrorCode(e) === CHECK_VIOLATION);
    await tx.query(order({ link: null, orderId: 'ex-1', external: true, status: 'New' }));
    // order_id is unique when set.
    await refused(order({ link: 'om-other', orderId: 'ex-1' }), (e) => isUniqueViolation(e, 'orders_order_id_key'));
    await tx.query(order({ link: 'om-no-id-1' }));
    await tx.query(order({ link: 'om-no-id-2' }));
    throw new Rollback();
  }).catch((e: unknown) => { if (!(e instanceof Rollback)) throw e; });
});

test('a replayed transition event is already done; at most one active model version; trading_state stays single', async () => {
  await pool.transaction(async (tx) => {
    const id = await tx.oneFirst(sql.type(z.object({ id: z.number() }))`
      INSERT INTO orders (order_link_id, category, symbol, side, order_type, qty, status)
      VALUES ('om-hist', 'linear', 'BTCUSDT', 'Sell', 'Market', ${'0.01'}, 'Submitted') RETURNING id`);
    const transition = sql.typeAlias('void')`
      INSERT INTO order_state_history (order_row_id, order_link_id, from_status, to_status, cause, event_id)
      VALUES (${id}, 'om-hist', 'Submitted', 'New', 'ws_order', 'exchange.order/0/42')`;
    await tx.query(transition);
    await assert.rejects(tx.transaction((s) => s.query(transition)), (e: unknown) => isUniqueViolation(e, 'order_state_history_event_key'));

    const model = (version: string, status: string) => sql.typeAlias('void')`
      INSERT INTO model_versions (version, status, weights, feature_spec, promoted_at)
      VALUES (${version}, ${status}, ${sql.binary(Buffer.from([1, 2, 3]))}, ${sql.jsonb({ features: ['ret_1m'] })}, now())`;
    await tx.query(model('m1', 'active'));
    await tx.query(model('m0', 'retired'));
    await assert.rejects(tx.transaction((s) => s.query(model('m2', 'active'))), (e: unknown) => isUniqueViolation(e, 'model_versions_one_active'));

    await assert.rejects(tx.transaction((s) => s.query(sql.typeAlias('void')`INSERT INTO trading_state (id) VALUES (true)`)), (e: unknown) => isUniqueViolation(e));
    await assert.rejects(
      tx.transaction((s) => s.query(sql.typeAlias('void')`UPDATE trading_state SET kill_switch = true, state = 'ACTIVE'`)),
      (e: unknown) => pgErrorCode(e) === CHECK_VIOLATION,
    );
    throw new Rollback();
  }).catch((e: unknown) => { if (!(e instanceof Rollback)) throw e; });
});
