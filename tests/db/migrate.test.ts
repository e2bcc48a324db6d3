// Migration runner against the real PostgreSQL: every test makes its own database (random name)
// and drops it afterwards.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, readdir, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { loadConfig } from '../../runtime/config.ts';
import { FatalError } from '../../runtime/errors.ts';
import {
  createDb,
  dropDatabase,
  ensureDatabase,
  insertOnce,
  isUniqueViolation,
  sql,
  withDatabase,
  type DatabasePool,
} from '../../runtime/db.ts';
import { defaultMigrationsDir, migrate, MIGRATION_LOCK_KEY, sha256 } from '../../runtime/migrate.ts';
import { UNIT_SCHEMAS } from '../../stack/services.ts';

const baseUrl = loadConfig(process.env, UNIT_SCHEMAS).DATABASE_URL;

/** A fresh, empty database for this test, dropped (with its pools ended) when the test ends. */
async function freshDatabase(t: TestContext): Promise<{ url: string; pool: () => Promise<DatabasePool> }> {
  const url = withDatabase(baseUrl, `test_db_${randomBytes(6).toString('hex')}`);
  assert.equal(await ensureDatabase(url), true, 'database should be new');
  assert.equal(await ensureDatabase(url), false, 'second ensureDatabase finds it');
  const pools: DatabasePool[] = [];
  t.after(async () => {
    await Promise.all(pools.map((p) => p.end()));
    await dropDatabase(url);
  });
  return {
    url,
    pool: async () => {
      const p = await createDb(url, { maximumPoolSize: 2 });
      pools.push(p);
      return p;
    },
  };
}

async function sqlFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
}

async function tempMigrations(t: TestContext, files: Record<string, string> | 'copy-repo'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'migrations-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  if (files === 'copy-repo') await cp(defaultMigrationsDir, dir, { recursive: true });
  else for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  return dir;
}

const migrationRow = z.object({ name: z.string(), checksum: z.string(), applied_at: z.number() });

async function migrationRows(pool: DatabasePool) {
  return pool.any(sql.type(migrationRow)`SELECT name, checksum, applied_at FROM schema_migrations ORDER BY name`);
}

async function publicTables(pool: DatabasePool): Promise<string[]> {
  const rows = await pool.anyFirst(sql.type(z.object({ table_name: z.string() }))`
    SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`);
  return [...rows];
}

const EXPECTED_TABLES = [
  'balances', 'decisions', 'executions', 'instruments', 'invalid_transitions', 'model_mode_transitions',
  'model_versions', 'order_events', 'order_state_history', 'orders', 'pnl_books', 'pnl_days', 'positions', 'reconcile_runs', 'schema_migrations', 'signals', 'stage_conflicts', 'tickers',
  'trading_state', 'trading_state_transitions', 'training_samples',
];

test('applies every migration to an empty database and records name + checksum', async (t) => {
  const db = await freshDatabase(t);
  const pool = await db.pool();
  assert.deepEqual(await publicTables(pool), []);

  const files = await sqlFiles(defaultMigrationsDir);
  assert.ok(files.length >= 3, `the migrations are there, got ${files.join(', ')}`);
  const result = await migrate(pool);
  assert.deepEqual(result.applied.map((m) => m.name), files);
  assert.deepEqual(result.alreadyApplied, []);

  assert.deepEqual(await publicTables(pool), EXPECTED_TABLES);
  const rows = await migrationRows(pool);
  assert.deepEqual(rows.map((r) => r.name), files);
  for (const r of rows) {
    assert.equal(r.checksum, sha256(await readFile(path.join(defaultMigrationsDir, r.name), 'utf8')), r.name);
    assert.ok(Math.abs(r.applied_at - Date.now()) < 60_000, 'applied_at is now');
  }
  // Every table the migrations create carries a COMMENT.
  const uncommented = await pool.anyFirst(sql.type(z.object({ relname: z.string() }))`
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'r' AND obj_description(c.oid, 'pg_class') IS NULL`);
  assert.deepEqual(uncommented, []);
  // The singleton trading state row exists and starts ACTIVE.
  const state = await pool.one(sql.type(z.object({ state: z.string(), kill_switch: z.boolean() }))`SELECT state, kill_switch FROM trading_state`);
  assert.deepEqual(state, { state: 'ACTIVE', kill_switch: false });
});

test('a second run applies nothing and changes nothing', async (t) => {
  const db = await freshDatabase(t);
  const pool = await db.pool();
  const first = await migrate(pool);
  assert.ok(first.applied.length > 0);
  const before = await migrationRows(pool);

  const second = await migrate(pool);
  assert.deepEqual(second.applied, []);
  assert.deepEqual(second.alreadyApplied, first.applied.map((m) => m.name));
  assert.deepEqual(await migrationRows(pool), before);

  // A new pool (another process) sees the same: nothing to do.
  const third = await migrate(await db.pool());
  assert.deepEqual(third.applied, []);
});

test('an applied file whose text changed is refused, and nothing else is applied', async (t) => {
  const db = await freshDatabase(t);
  const pool = await db.pool();
  const dir = await tempMigrations(t, 'copy-repo');
  const files = await sqlFiles(dir);
  await migrate(pool, { dir });

  const edited = files[1]!;
  await appendFile(path.join(dir, edited), '\n-- an innocent-looking edit\n');
  await writeFile(path.join(dir, '900_later.sql'), 'CREATE TABLE later_table (id int);\n');

  await assert.rejects(migrate(pool, { dir }), (err: unknown) => {
    assert.ok(err instanceof FatalError);
    assert.equal(err.code, 'migration_checksum_mismatch');
    assert.match(err.message, new RegExp(edited.replace('.', '\\.')));
    assert.doesNotMatch(err.message, /900_later/);
    return true;
  });
  assert.deepEqual((await migrationRows(pool)).map((r) => r.name), files, 'no new migration recorded');
  assert.equal(await pool.exists(sql.typeAlias('void')`SELECT 1 FROM pg_class WHERE relname = 'later_table'`), false);
});

test('a failing file is rolled back entirely; the files before it stay applied', async (t) => {
  const db = await freshDatabase(t);
  const pool = await db.pool();
  const dir = await tempMigrations(t, {
    '001_good.sql': 'CREATE TABLE good_one (id int PRIMARY KEY);\nCREATE INDEX ON good_one (id);\n',
    '002_bad.sql': '-- header\nCREATE TABLE half_done (id int);\nCREAT TABLE typo (id int);\n',
  });
  await assert.rejects(migrate(pool, { dir }), (err: unknown) => {
    assert.ok(err instanceof FatalError);
    assert.equal(err.code, 'migration_failed');
    assert.match(err.message, /002_bad\.sql failed at line 3/);
    return true;
  });
  assert.deepEqual((await migrationRows(pool)).map((r) => r.name), ['001_good.sql']);
  assert.equal(await pool.exists(sql.typeAlias('void')`SELECT 1 FROM pg_class WHERE relname = 'good_one'`), true);
  assert.equal(await pool.exists(sql.typeAlias('void')`SELECT 1 FROM pg_class WHERE relname = 'half_done'`), false);

  // Fixed (a file that never applied may change), the run goes on from there.
  await writeFile(path.join(dir, '002_bad.sql'), 'CREATE TABLE half_done (id int);\n');
  const again = await migrate(pool, { dir });
  assert.deepEqual(again.applied.map((m) => m.name), ['002_bad.sql']);
});

test('badly named or duplicate-numbered files are refused before touching the database', async (t) => {
  const db = await freshDatabase(t);
  const pool = await db.pool();
  const badName = await tempMigrations(t, { '001_ok.sql': 'SELECT 1;', '2_short.sql': 'SELECT 1;' });
  await assert.rejects(migrate(pool, { dir: badName }), (e: unknown) => e instanceof FatalError && e.code === 'migration_bad_name');
  const dup = await tempMigrations(t, { '001_a.sql': 'SELECT 1;', '001_b.sql': 'SELECT 1;' });
  await assert.rejects(migrate(pool, { dir: dup }), (e: unknown) => e instanceof FatalError && e.code === 'migration_duplicate_version');
  assert.deepEqual(await publicTables(pool), []);
});

test('concurrent migrate calls on a fresh database: all succeed, each file applied exactly once', async (t) => {
  const db = await freshDatabase(t);
  const pools = await Promise.all([db.pool(), db.pool(), db.pool()]);
  const files = await sqlFiles(defaultMigrationsDir);
  const results = await Promise.all(pools.map((p) => migrate(p)));

  const appliedNames = results.flatMap((r) => r.applied.map((m) => m.name)).sort();
  assert.deepEqual(appliedNames, files, 'each file applied by exactly one caller');
  for (const r of results) {
    assert.deepEqual([...r.applied.map((m) => m.name), ...r.alreadyApplied].sort(), files);
  }
  assert.deepEqual((await migrationRows(pools[0]!)).map((r) => r.name), files);
});

test('the advisory lock makes a second process wait for a slow migration instead of racing it', async (t) => {
  const db = await freshDatabase(t);
  const dir = await tempMigrations(t, {
    '001_slow.sql': 'SELECT pg_sleep(0.4);\nCREATE TABLE slow_one (id int PRIMARY KEY);\n',
    '002_after.sql': 'CREATE TABLE after_one (id int REFERENCES slow_one (id));\n',
  });
  const [a, b] = [await db.pool(), await db.pool()];
  const waits: string[] = [];
  const logger = { info: (_o: object, msg: string) => { waits.push(msg); }, warn: () => {} };
  const first = migrate(a, { dir, logger });
  await new Promise((r) => setTimeout(r, 100)); // the first holds the lock and is sleeping
  const second = migrate(b, { dir, logger });
  const [r1, r2] = await Promise.all([first, second]);

  assert.deepEqual(r1.applied.map((m) => m.name), ['001_slow.sql', '002_after.sql']);
  assert.deepEqual(r2.applied, []);
  assert.deepEqual(r2.alreadyApplied, ['001_slow.sql', '002_after.sql']);
  assert.ok(waits.some((m) => /waiting for the migration lock/.test(m)), `second caller waited: ${waits.join(' | ')}`);
});

test('a released connection is handed on as it is, and migrate leaves no lock on it', async (t) => {
  const db = await freshDatabase(t);
  const dir = await tempMigrations(t, { '001_one.sql': 'CREATE TABLE one_table (id int PRIMARY KEY);\n' });
  const url = db.url;
  const pool = await createDb(url, { maximumPoolSize: 1 });
  const other = await createDb(url, { maximumPoolSize: 1 });
  try {
    // No DISCARD ALL on release (runtime/db.ts): a session setting made through one use of the only
    // connection is still there at the next. (It fails if the pool resets, the round trip this saves.)
    const pid = await pool.oneFirst(sql.type(z.object({ pid: z.number() }))`SELECT pg_backend_pid() AS pid`);
    await pool.query(sql.typeAlias('void')`SELECT set_config('bybit.probe', 'kept', false)`);
    const after = await pool.one(sql.type(z.object({ pid: z.number(), probe: z.string().nullable() }))`SELECT pg_backend_pid() AS pid, current_setting('bybit.probe', true) AS probe`);
    assert.deepEqual(after, { pid, probe: 'kept' }, 'the same session, not reset');
    // So the migration's session-level advisory lock must be released by migrate itself: the same
    // pooled session holds no advisory lock afterwards, and another session takes it at once.
    assert.deepEqual((await migrate(pool, { dir })).applied.map((m) => m.name), ['001_one.sql']);
    const held = await pool.oneFirst(sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = ${pid}`);
    assert.equal(held, 0, 'no advisory lock left on the pooled session');
    assert.equal(await other.oneFirst(sql.type(z.object({ ok: z.boolean() }))`SELECT pg_try_advisory_lock(${MIGRATION_LOCK_KEY}::bigint) AS ok`), true);
  } finally {
    await Promise.all([pool.end(), other.end()]);
  }
});

test('unique keys give "already done" semantics: same signal_id / exec_id twice', async (t) => {
  const db = await freshDatabase(t);
  const pool = await db.pool();
  await migrate(pool);

  const signalId = '6f1c1a52-3e0b-4a55-9d6e-1a2b3c4d5e6f';
  const insertSignal = (conn: Pick<DatabasePool, 'query'>) =>
    conn.query(sql.typeAlias('void')`
      INSERT INTO signals (signal_id, status, asset, side, amount, confidence, payload)
      VALUES (${signalId}, 'valid', 'ETHUSDT', 'buy', ${'500'}, ${'0.85'}, ${sql.jsonb({ signal_id: signalId, asset: 'ETHUSDT' })})`);

  const s1 = await insertOnce(pool, insertSignal);
  assert.equal(s1.inserted, true);
  const s2 = await insertOnce(pool, insertSignal);
  assert.deepEqual(s2, { inserted: false, constraint: 'signals_pkey' });
  // The raw error is recognised too (for callers that catch themselves).
  await assert.rejects(insertSignal(pool), (e: unknown) => isUniqueViolation(e) && isUniqueViolation(e, 'signals_pkey') && !isUniqueViolation(e, 'other'));

  const insertExecution = (conn: Pick<DatabasePool, 'query'>) =>
    conn.query(sql.typeAlias('void')`
      INSERT INTO executions (exec_id, order_link_id, order_id, category, symbol, side, exec_qty, exec_price, exec_fee, fee_currency, is_maker, exec_time)
      VALUES ('e-1', 'om-abc', 'o-1', 'spot', 'ETHUSDT', 'Buy', ${'0.1'}, ${'2500.5'}, ${'0.0001'}, 'ETH', false, ${sql.timestamp(new Date('2025-01-01T00:00:00Z'))})`);
  // Inside a transaction the duplicate runs in a savepoint: the transaction stays usable.
  await pool.transaction(async (tx) => {
    assert.equal((await insertOnce(tx, insertExecution, 'executions_pkey')).inserted, true);
    assert.deepEqual(await insertOnce(tx, insertExecution, 'executions_pkey'), { inserted: false, constraint: 'executions_pkey' });
    await tx.query(sql.typeAlias('void')`UPDATE signals SET status = 'decided', outcome = 'create', outcome_at = now() WHERE signal_id = ${signalId}`);
  });
  const counts = await pool.one(sql.type(z.object({ s: z.number(), e: z.number(), outcome: z.string() }))`
    SELECT (SELECT count(*)::int FROM signals) AS s, (SELECT count(*)::int FROM executions) AS e,
           (SELECT outcome FROM signals WHERE signal_id = ${signalId}) AS outcome`);
  assert.deepEqual(counts, { s: 1, e: 1, outcome: 'create' });

  // Other errors are not "already done": a check violation propagates.
  await assert.rejects(
    insertOnce(pool, (conn) => conn.query(sql.typeAlias('void')`
      INSERT INTO orders (order_link_id, category, symbol, side, order_type, qty, status)
      VALUES ('om-1', 'spot', 'ETHUSDT', 'Buy', 'Market', ${'0.1'}, 'Exploded')`)),
    (e: unknown) => !isUniqueViolation(e),
  );
});
