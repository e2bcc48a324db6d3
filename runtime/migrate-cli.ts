// `npm run migrate`: create the database when missing, apply pending migrations from sql/, print what
// was applied. Exit code 0 on success (including "nothing to do"), 1 on any failure.
import { loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { createDb, ensureDatabase, redactUrl, type DatabasePool } from './db.ts';
import { defaultMigrationsDir, migrate } from './migrate.ts';

async function main(): Promise<number> {
  const cfg = loadConfig(process.env, []); // migrations run no unit
  const log = createLogger(cfg, 'migrate');
  const url = cfg.DATABASE_URL;
  let pool: DatabasePool | undefined;
  try {
    const created = await ensureDatabase(url);
    if (created) console.log(`created database ${redactUrl(url)}`);
    pool = await createDb(url, { maximumPoolSize: 1, statementTimeout: 'DISABLE_TIMEOUT' });
    const result = await migrate(pool, { dir: defaultMigrationsDir, logger: log });
    for (const m of result.applied) console.log(`applied ${m.name} (${m.durationMs} ms, sha256 ${m.checksum.slice(0, 12)})`);
    console.log(
      result.applied.length === 0
        ? `database is up to date (${result.alreadyApplied.length} migrations applied earlier)`
        : `applied ${result.applied.length} migration(s); ${result.alreadyApplied.length} were already applied`,
    );
    return 0;
  } catch (err) {
    log.error({ err, database: redactUrl(url) }, 'migration failed');
    console.error(`migrate: ${(err as Error).message}`);
    return 1;
  } finally {
    await pool?.end();
  }
}

process.exitCode = await main();
