// Migration runner: applies `sql/NNN_name.sql` in order, each file in its own transaction, under a
// PostgreSQL advisory lock, recording name + sha256 checksum + applied_at in `schema_migrations`.
// An applied file whose checksum changed is refused (fatal) before anything else is applied; a
// second run is a no-op.
//
// How the raw file text is executed. This is the one place where SQL that is not written with the
// `sql` tag runs. Slonik 47 has no raw-query call besides `sql.unsafe` (forbidden by lint), and its pg
// driver runs every query in extended-protocol mode (`queryMode: 'extended'`), where PostgreSQL
// refuses a string with several statements - so neither `sql.unsafe` nor a hand-built query token
// could run a migration file. Instead each file is passed as a *bound parameter* to a session-local
// helper, `pg_temp.schema_migration_exec(text)`, a one-line PL/pgSQL function doing `EXECUTE $1`
// (PL/pgSQL's dynamic EXECUTE accepts several statements and analyses each one after the previous
// has run, so `CREATE TABLE t ...; CREATE INDEX ON t ...` works). Everything stays on one slonik
// connection inside the file's transaction, the text is never spliced into a query, and no `pg`
// client is needed. Limits: a migration file cannot contain transaction control (BEGIN/COMMIT) or
// statements that refuse to run in a transaction (CREATE INDEX CONCURRENTLY, VACUUM); such a change
// needs its own tool.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { z } from 'zod';
import { FatalError } from './errors.ts';
import { sql, type CommonQueryMethods, type DatabasePool } from './db.ts';

/** The repository's `sql/` folder. */
export const defaultMigrationsDir = fileURLToPath(new URL('../sql/', import.meta.url));

/**
 * Advisory lock key held while migrating (advisory locks are per database, so databases on the same
 * server do not block each other). Fixed: every version of the runner must use the same key.
 */
export const MIGRATION_LOCK_KEY = 7_351_204_118_336_001;

const FILE_PATTERN = /^(\d{3,})_([a-z0-9_]+)\.sql$/;

export interface MigrationFile {
  /** File name, e.g. `001_core.sql`; the key in schema_migrations. */
  readonly name: string;
  readonly version: number;
  readonly checksum: string;
  readonly sql: string;
}

export interface AppliedMigration {
  readonly name: string;
  readonly checksum: string;
  readonly durationMs: number;
}

export interface MigrateResult {
  /** Files applied by this call, in order. */
  readonly applied: readonly AppliedMigration[];
  /** Files that were already applied (checksum verified). */
  readonly alreadyApplied: readonly string[];
}

/** What the runner logs through; a pino Logger fits. */
export interface MigrateLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface MigrateOptions {
  /** Folder of `NNN_name.sql` files; default the repository's `sql/`. */
  dir?: string;
  logger?: MigrateLogger;
}

export function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** Read and order the migration files; a `.sql` file not named `NNN_name.sql`, or a repeated number, is fatal. */
export async function loadMigrations(dir: string): Promise<MigrationFile[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files: MigrationFile[] = [];
  for (const e of entries) {
    if (!e.isFile() || !e.name.endsWith('.sql')) continue;
    const m = FILE_PATTERN.exec(e.name);
    if (!m) throw new FatalError('migration_bad_name', `migration file ${e.name} in ${dir} is not named NNN_name.sql (lower case)`);
    const text = await readFile(path.join(dir, e.name), 'utf8');
    files.push({ name: e.name, version: Number(m[1]), checksum: sha256(text), sql: text });
  }
  files.sort((a, b) => a.version - b.version || a.name.localeCompare(b.name));
  for (let i = 1; i < files.length; i++) {
    if (files[i]!.version === files[i - 1]!.version) {
      throw new FatalError('migration_duplicate_version', `migrations ${files[i - 1]!.name} and ${files[i]!.name} share a version number`);
    }
  }
  return files;
}

const appliedRow = z.object({ name: z.string(), checksum: z.string() });

/**
 * Apply pending migrations from `dir` (default: the repository's `sql/`). Safe to call from several
 * processes at once: they serialise on an advisory lock and each file is applied exactly once.
 * Throws FatalError when an applied file changed (`migration_checksum_mismatch`, every changed file
 * listed) or when a file fails (`migration_failed`; that file's transaction is rolled back, files
 * before it stay applied).
 */
export async function migrate(pool: DatabasePool, opts: MigrateOptions = {}): Promise<MigrateResult> {
  const dir = opts.dir ?? defaultMigrationsDir;
  const log = opts.logger;
  const files = await loadMigrations(dir);

  return pool.connect(async (conn) => {
    const free = await conn.oneFirst(sql.type(z.object({ ok: z.boolean() }))`SELECT pg_try_advisory_lock(${MIGRATION_LOCK_KEY}::bigint) AS ok`);
    if (!free) {
      log?.info({ lockKey: MIGRATION_LOCK_KEY }, 'another process is migrating this database; waiting for the migration lock');
      await conn.query(sql.typeAlias('void')`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY}::bigint)`);
    }
    try {
      return await migrateLocked(conn, files, dir, log);
    } finally {
      // Released explicitly: the pool hands the connection on as it is (no DISCARD ALL, db.ts), so a
      // lock left here would block every later migration for the life of the pooled session. If the
      // unlock fails, end the session (the lock goes with it; the pool drops the dead connection).
      await conn.query(sql.typeAlias('void')`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY}::bigint)`).catch(async (err: unknown) => {
        log?.warn({ err }, 'could not release the migration lock; ending the session, which releases it');
        await conn.query(sql.typeAlias('void')`SELECT pg_terminate_backend(pg_backend_pid())`).catch(() => {});
      });
    }
  });
}

async function migrateLocked(
  conn: CommonQueryMethods,
  files: MigrationFile[],
  dir: string,
  log: MigrateOptions['logger'],
): Promise<MigrateResult> {
  const exists = await conn.oneFirst(sql.typeAlias('exists')`SELECT to_regclass('schema_migrations') IS NOT NULL AS exists`);
  if (!exists) await createMigrationsTable(conn);

  const applied = new Map((await conn.any(sql.type(appliedRow)`SELECT name, checksum FROM schema_migrations`)).map((r) => [r.name, r.checksum]));

  const changed = files.filter((f) => applied.has(f.name) && applied.get(f.name) !== f.checksum);
  if (changed.length > 0) {
    throw new FatalError(
      'migration_checksum_mismatch',
      `refusing to migrate: applied migration file(s) changed since they were applied: ${changed.map((f) => f.name).join(', ')} ` +
        `(in ${dir}). Restore the original text and put the change in a new migration file.`,
    );
  }
  const known = new Set(files.map((f) => f.name));
  const unknown = [...applied.keys()].filter((n) => !known.has(n)).sort();
  if (unknown.length > 0) {
    log?.warn({ migrations: unknown }, 'database has applied migrations that are not in the migrations folder (newer code ran here?)');
  }

  const pending = files.filter((f) => !applied.has(f.name));
  if (pending.length === 0) return { applied: [], alreadyApplied: files.map((f) => f.name) };

  await conn.query(sql.typeAlias('void')`
    CREATE OR REPLACE FUNCTION pg_temp.schema_migration_exec(migration_sql text) RETURNS void
    LANGUAGE plpgsql AS $fn$ BEGIN EXECUTE migration_sql; END $fn$`);

  const done: AppliedMigration[] = [];
  for (const file of pending) {
    const started = performance.now();
    try {
      await conn.transaction(async (tx) => {
        await tx.query(sql.typeAlias('void')`SELECT pg_temp.schema_migration_exec(${file.sql})`);
        const durationMs = Math.round(performance.now() - started);
        await tx.query(sql.typeAlias('void')`
          INSERT INTO schema_migrations (name, checksum, duration_ms) VALUES (${file.name}, ${file.checksum}, ${durationMs})`);
      }, 0);
    } catch (err) {
      throw new FatalError('migration_failed', `migration ${file.name} failed${where(err, file.sql)}: ${(err as Error).message}`, { cause: err });
    }
    const durationMs = Math.round(performance.now() - started);
    done.push({ name: file.name, checksum: file.checksum, durationMs });
    log?.info({ migration: file.name, durationMs }, 'migration applied');
  }
  return { applied: done, alreadyApplied: files.filter((f) => applied.has(f.name)).map((f) => f.name) };
}

async function createMigrationsTable(conn: CommonQueryMethods): Promise<void> {
  await conn.transaction(async (tx) => {
    await tx.query(sql.typeAlias('void')`
      CREATE TABLE schema_migrations (
        name        text PRIMARY KEY,
        checksum    text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
        applied_at  timestamptz NOT NULL DEFAULT now(),
        duration_ms integer NOT NULL DEFAULT 0
      )`);
    await tx.query(sql.typeAlias('void')`
      COMMENT ON TABLE schema_migrations IS 'Migration files of sql/ applied by runtime/migrate.ts: file name, sha256 of its text, when.'`);
  });
}

/** " at line N" from the position PostgreSQL reports inside the EXECUTEd text, when it does. */
function where(err: unknown, text: string): string {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const pos = Number((e as { internalPosition?: unknown }).internalPosition);
    if (Number.isInteger(pos) && pos > 0) return ` at line ${text.slice(0, pos - 1).split('\n').length}`;
  }
  return '';
}
