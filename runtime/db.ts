// PostgreSQL access for the whole project (house style 10): a slonik pool, the project's `sql` tag
// (with zod row validation switched on), and the few helpers every stage needs.
//
// - Rows are validated: a query built with `sql.type(zodSchema)` or `sql.typeAlias(name)` has every
//   returned row parsed by its schema (slonik 47 only does that through an interceptor, installed
//   here); a mismatch throws slonik's SchemaValidationError.
// - Money and quantities are `numeric` in the schema and come back as exact decimal *strings*
//   (slonik's default parses numeric with parseFloat, which would silently round).
// - int8 comes back as a JS number when it is a safe integer (ms timestamps, counters, offsets),
//   and throws otherwise rather than losing digits.
// - timestamptz comes back as epoch milliseconds (slonik's default).
// - A unique violation on an idempotency key means "already done", not an error: `isUniqueViolation`
//   and `insertOnce` turn it into data.
// - A connection goes back to the pool as it is: no `DISCARD ALL` (slonik's default reset), which
//   cost a round trip and a statement on every release, i.e. after every query outside a transaction
//   and every transaction (about five per signal at 50/s; 4.2 of the idle order manager's 9.1 statements a
//   second).
//   Nothing here leaves session state behind for the next user to trip on: no `SET` (settings go in
//   the connection's startup parameters), no named prepared statements, temporary tables or
//   `LISTEN`, and advisory locks are transaction-scoped (`pg_advisory_xact_lock`) except the
//   migration lock, which migrate.ts releases itself and, if it cannot, ends the session.
import {
  createPool,
  createSqlTag,
  createTypeParserPreset,
  parseDsn,
  SchemaValidationError,
  stringifyDsn,
  UniqueIntegrityConstraintViolationError,
  type ClientConfigurationInput,
  type CommonQueryMethods,
  type DatabasePool,
  type DriverTypeParser,
  type FragmentSqlToken,
  type Interceptor,
  type QueryResultRow,
} from 'slonik';
import { z } from 'zod';

export type { CommonQueryMethods, DatabasePool, QueryResultRow };
export type DatabaseTransactionConnection = CommonQueryMethods;

/** Shared row shapes, usable as `sql.typeAlias('void')` etc. */
const typeAliases = {
  /** Statements whose rows are ignored (DDL, INSERT without RETURNING, `SELECT fn()` for effect). */
  void: z.object({}).passthrough(),
  id: z.object({ id: z.number() }),
  exists: z.object({ exists: z.boolean() }),
  count: z.object({ count: z.number() }),
};

/**
 * The project's sql tag. Same API as slonik's (`sql.type`, `sql.typeAlias`, `sql.fragment`,
 * `sql.identifier`, `sql.join`, `sql.json`, `sql.jsonb`, `sql.array`, `sql.unnest`, `sql.timestamp`,
 * `sql.uuid`, `sql.binary`), plus the aliases above. `sql.unsafe` exists but lint forbids it.
 */
export const sql = createSqlTag({ typeAliases });

/** One read of `readParts`: a query, and the schema of each of its rows as JSON gives them back. */
export interface ReadPart<S extends z.ZodTypeAny = z.ZodTypeAny> {
  rows: S;
  query: FragmentSqlToken;
  /** Columns of the query's rows the array is ordered by (a subquery's ORDER BY alone is not a guarantee). */
  orderBy?: string[];
}

export type PartRows<P extends Record<string, ReadPart>> = { [K in keyof P]: Array<z.infer<P[K]['rows']>> };

/**
 * Several reads in one statement, one round trip: each part's rows come back as one JSON array,
 * parsed by the part's row schema. On this machine a round trip costs a stage more CPU than the rows
 * it brings (docs/performance.md, "Round trips"), and every read of a load on its own pooled
 * connection also sees its own snapshot; here they share one.
 *
 * JSON has no exact decimal and no timestamp: a part's query casts numeric columns to text and
 * timestamps to epoch ms with `epochMs` (what the pool's parsers give for a plain query). A cast
 * forgotten fails the row schema (a JSON number where a string is expected), it does not round.
 */
export async function readParts<P extends Record<string, ReadPart>>(
  db: CommonQueryMethods,
  parts: P,
  options: { /** A WITH list the parts share (`name AS (query)`, several joined by commas): read once for every part that uses it. */ with?: FragmentSqlToken } = {},
): Promise<PartRows<P>> {
  const names = Object.keys(parts);
  const columns = names.map((n) => {
    const part = parts[n]!;
    const order = part.orderBy?.length ? sql.fragment` ORDER BY ${sql.join(part.orderBy.map((c) => sql.identifier(['x', c])), sql.fragment`, `)}` : sql.fragment``;
    return sql.fragment`(SELECT coalesce(json_agg(x${order}), '[]') FROM (${part.query}) x) AS ${sql.identifier([n])}`;
  });
  const schema = z.object(Object.fromEntries(names.map((n) => [n, z.array(parts[n]!.rows)])));
  const shared = options.with ? sql.fragment`WITH ${options.with} ` : sql.fragment``;
  return (await db.one(sql.type(schema)`${shared}SELECT ${sql.join(columns, sql.fragment`, `)}`)) as PartRows<P>;
}

/** A timestamp column as epoch ms, truncated as the pool's timestamptz parser truncates it (for `readParts`). */
export const epochMs = (column: FragmentSqlToken): FragmentSqlToken => sql.fragment`floor(extract(epoch FROM ${column}) * 1000)::int8`;

/** Parse rows with the query's zod schema (slonik's documented result-parser interceptor). */
export function createResultParserInterceptor(): Interceptor {
  return {
    name: 'result-parser',
    transformRow: (ctx, query, row) => {
      const parser = ctx.resultParser;
      if (!parser) return row;
      const parsed = parser.safeParse(row);
      if (!parsed.success) throw new SchemaValidationError(query, row, parsed.error.issues);
      return parsed.data as QueryResultRow;
    },
  };
}

function int8Parser(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`int8 value ${value} does not fit a JS number exactly`);
  return n;
}

/** slonik's preset with numeric kept exact (string) and int8 as a checked number. */
export function typeParsers(): DriverTypeParser[] {
  const overrides: Record<string, (value: string) => unknown> = { numeric: (v) => v, int8: int8Parser };
  return createTypeParserPreset().map((p) => (overrides[p.name] ? { name: p.name, parse: overrides[p.name]! } : p));
}

export type CreateDbOptions = ClientConfigurationInput & {
  /** Shown in pg_stat_activity; defaults to 'bybit-pipeline'. */
  applicationName?: string;
};

/** A slonik pool on `databaseUrl`, with row validation and the type parsers above. */
export async function createDb(databaseUrl: string, opts: CreateDbOptions = {}): Promise<DatabasePool> {
  const { applicationName = 'bybit-pipeline', interceptors = [], ...rest } = opts;
  const dsn = parseDsn(databaseUrl);
  const uri = stringifyDsn({ ...dsn, applicationName: dsn.applicationName ?? applicationName });
  return createPool(uri, {
    typeParsers: typeParsers(),
    resetConnection: keepSession,
    ...rest,
    interceptors: [createResultParserInterceptor(), ...interceptors],
  });
}

/** The pool's reset on release: none (see the header); a caller may still pass its own. */
async function keepSession(): Promise<void> {}

/** Name of the database a URL points at. */
export function databaseName(databaseUrl: string): string {
  const name = parseDsn(databaseUrl).databaseName;
  if (!name) throw new Error(`DATABASE_URL names no database: ${redactUrl(databaseUrl)}`);
  return name;
}

/** The same server and credentials, another database (e.g. the `postgres` maintenance db). */
export function withDatabase(databaseUrl: string, name: string): string {
  return stringifyDsn({ ...parseDsn(databaseUrl), databaseName: name });
}

/** A URL safe to log (password removed). */
export function redactUrl(databaseUrl: string): string {
  try {
    const dsn = parseDsn(databaseUrl);
    return stringifyDsn(dsn.password ? { ...dsn, password: 'redacted' } : dsn);
  } catch {
    return '[unparseable url]';
  }
}

// duplicate_database, and the unique index on pg_database when two CREATEs race.
const DUPLICATE_DATABASE = new Set(['42P04', '23505']);

/**
 * Create the database `databaseUrl` names when it does not exist; returns whether it was created.
 * Goes through the `postgres` maintenance database. Slonik's `sql.identifier` quotes the name, so no
 * raw `pg` client is needed here (CREATE DATABASE runs fine as a single extended-protocol statement
 * outside a transaction). Safe when several processes race: "already exists" is success.
 */
export async function ensureDatabase(databaseUrl: string, maintenanceDb = 'postgres'): Promise<boolean> {
  const name = databaseName(databaseUrl);
  const admin = await createDb(withDatabase(databaseUrl, maintenanceDb), { maximumPoolSize: 1 });
  try {
    const found = await admin.exists(sql.typeAlias('void')`SELECT 1 FROM pg_database WHERE datname = ${name}`);
    if (found) return false;
    try {
      await admin.query(sql.typeAlias('void')`CREATE DATABASE ${sql.identifier([name])}`);
      return true;
    } catch (err) {
      if (DUPLICATE_DATABASE.has(pgErrorCode(err) ?? '')) return false;
      throw err;
    }
  } finally {
    await admin.end();
  }
}

/** Drop the database `databaseUrl` names (terminating its sessions). For tests and tooling. */
export async function dropDatabase(databaseUrl: string, maintenanceDb = 'postgres'): Promise<void> {
  const name = databaseName(databaseUrl);
  const admin = await createDb(withDatabase(databaseUrl, maintenanceDb), { maximumPoolSize: 1 });
  try {
    await admin.query(sql.typeAlias('void')`DROP DATABASE IF EXISTS ${sql.identifier([name])} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

/** The PostgreSQL SQLSTATE of an error (slonik keeps the driver error as `cause`). */
export function pgErrorCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

/** Name of the violated constraint, when the error carries one. */
export function violatedConstraint(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const c = (e as { constraint?: unknown }).constraint;
    if (typeof c === 'string' && c) return c;
  }
  return undefined;
}

/**
 * True when `err` is a unique violation (SQLSTATE 23505), optionally of one named constraint or
 * index. Use it where a duplicate idempotency key means "already done" (house style 10).
 */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const unique = err instanceof UniqueIntegrityConstraintViolationError || pgErrorCode(err) === '23505';
  if (!unique) return false;
  return constraint === undefined || violatedConstraint(err) === constraint;
}

export type InsertOnceResult<T> =
  | { readonly inserted: true; readonly value: T }
  | { readonly inserted: false; readonly constraint: string | undefined };

/**
 * Run an insert keyed by an idempotency key; a unique violation (of `constraint`, when given) comes
 * back as `{ inserted: false }` instead of an error. Inside a transaction the insert runs in a
 * savepoint (slonik's nested transaction), so the surrounding transaction stays usable.
 * Where no caller needs the distinction, `INSERT ... ON CONFLICT DO NOTHING` is simpler still.
 */
export async function insertOnce<T>(
  db: CommonQueryMethods,
  insert: (conn: CommonQueryMethods) => Promise<T>,
  constraint?: string,
): Promise<InsertOnceResult<T>> {
  try {
    const value = await db.transaction((tx) => insert(tx));
    return { inserted: true, value };
  } catch (err) {
    if (isUniqueViolation(err, constraint)) return { inserted: false, constraint: violatedConstraint(err) };
    throw err;
  }
}
