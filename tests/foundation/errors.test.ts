// classify() on the errors a PostgreSQL restart really produces, through slonik: a session ended by
// the server (what a fast or immediate shutdown does to every session) and a server that refuses
// connections (down, or starting up). Both must be retriable: the chaos run found stages stopping
// (exit 70) on the first, because slonik wraps the driver's 57P01 in a BackendTerminatedError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { createDb, sql, withDatabase } from '../../runtime/db.ts';
import { classify, FatalError, RetriableError } from '../../runtime/errors.ts';
import { freePort } from '../../stack/chaos-infra.ts';
import { testCfg } from '../helpers.ts';

test('a database session terminated by the server is retriable (slonik BackendTerminatedError around 57P01)', async () => {
  const victim = await createDb(withDatabase(testCfg.DATABASE_URL, 'postgres'), { maximumPoolSize: 1 });
  const killer = await createDb(withDatabase(testCfg.DATABASE_URL, 'postgres'), { maximumPoolSize: 1 });
  try {
    // The error surfaces from the query or from the connection routine around it (slonik rejects
    // the routine as soon as the connection reports the termination).
    const err = await victim
      .connect(async (c) => {
        const pid = await c.oneFirst(sql.type(z.object({ pid: z.number() }))`SELECT pg_backend_pid() AS pid`);
        await killer.query(sql.typeAlias('void')`SELECT pg_terminate_backend(${pid})`);
        await c.query(sql.typeAlias('void')`SELECT 1`);
      })
      .then(
        () => null,
        (e: unknown) => e,
      );
    assert.ok(err, 'the terminated session fails');
    assert.equal((err as Error).constructor.name, 'BackendTerminatedError');
    assert.equal(classify(err), 'retriable', `${(err as Error).constructor.name}: ${(err as Error).message}`);
  } finally {
    await victim.end().catch(() => {});
    await killer.end();
  }
});

test('a database that refuses connections is retriable; our own hierarchy still decides for itself', async () => {
  const port = await freePort();
  // slonik connects when the pool is created: the refusal comes from there or from the query.
  const err = await createDb(`postgres://postgres@127.0.0.1:${port}/postgres`, { maximumPoolSize: 1, connectionTimeout: 2000 }).then(
    (down) => down.query(sql.typeAlias('void')`SELECT 1`).finally(() => down.end().catch(() => {})).then(() => null),
    (e: unknown) => e,
  ).catch((e: unknown) => e);
  assert.ok(err, 'nobody listens there');
  assert.equal(classify(err), 'retriable', `${(err as Error).constructor.name}: ${(err as Error).message}`);
  assert.equal(classify(new FatalError('x', 'broken invariant', { cause: Object.assign(new Error('reset'), { code: 'ECONNRESET' }) })), 'fatal');
  assert.equal(classify(new RetriableError('x', 'later')), 'retriable');
  assert.equal(classify(new Error('plain bug')), 'fatal');
  assert.equal(classify(new Error('wrapped', { cause: new Error('bug') })), 'fatal');
});
