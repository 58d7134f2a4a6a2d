import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { watchCheckedOut } from './checkout.js';
import { quoteIdent, quoteQualified } from './sql.js';

/** One schema change. `id` is recorded once applied; never rename or edit an applied migration. */
export interface Migration {
  id: string;
  /**
   * One or more statements, run in a transaction the runner manages: do not include
   * `BEGIN`/`COMMIT`, or statements that cannot run in a transaction (`CREATE INDEX CONCURRENTLY`).
   */
  sql: string;
}

/** Options for {@link runMigrations}. */
export interface RunMigrationsOptions {
  /** Table recording applied migrations. Default `pgsession_migrations`. */
  table?: string;
  /** Schema of that table (created if missing). Default: the first schema on `search_path`. */
  schema?: string;
  /**
   * Time limit for each migration, including waiting for another process's migration to finish.
   * Replaces the pool's (short) statement and query timeouts for these transactions. Default 5 min.
   */
  timeoutMs?: number;
}

const DEFAULT_TABLE = 'pgsession_migrations';
const DEFAULT_TIMEOUT_MS = 5 * 60_000;

/**
 * Applies the pending migrations in array order, each in its own transaction, and returns the ids
 * applied by this call. Safe to call from several processes at once: every transaction first takes
 * a transaction-scoped advisory lock (keyed on the migrations table) and re-checks whether its
 * migration was applied meanwhile, so each migration runs exactly once.
 *
 * @throws Error naming the failed migration; that migration is rolled back, earlier ones stay applied.
 */
export async function runMigrations(
  pool: pg.Pool,
  migrations: readonly Migration[],
  options: RunMigrationsOptions = {},
): Promise<string[]> {
  const seen = new Set<string>();
  for (const m of migrations) {
    if (!m.id) throw new TypeError('Migration id must not be empty');
    if (seen.has(m.id)) throw new TypeError(`Duplicate migration id: ${m.id}`);
    seen.add(m.id);
  }
  const tableName = options.table ?? DEFAULT_TABLE;
  const table = quoteQualified(tableName, options.schema);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
    throw new TypeError('timeoutMs must be a positive integer');
  const lockKey = advisoryLockKey(`pgsession:migrations:${options.schema ?? ''}:${tableName}`);

  const client = await pool.connect();
  const watch = watchCheckedOut(client);
  let broken: Error | undefined;
  const applied: string[] = [];
  // query_timeout is a runtime option of pg's query config that @types/pg does not declare.
  const q = (text: string, values?: unknown[]) =>
    client.query({ text, values, query_timeout: timeoutMs + 5_000 } as pg.QueryConfig);

  const transaction = async <T>(body: () => Promise<T>): Promise<T> => {
    await q('BEGIN');
    try {
      await q(`SET LOCAL statement_timeout = ${timeoutMs}`);
      await q('SELECT pg_advisory_xact_lock($1::bigint)', [lockKey]);
      const result = await body();
      await q('COMMIT');
      return result;
    } catch (err) {
      await q('ROLLBACK').catch((rollbackErr: Error) => {
        // The connection is unusable; it must not go back to the pool.
        broken = rollbackErr;
      });
      throw err;
    }
  };

  try {
    // Under the lock too: concurrent CREATE TABLE IF NOT EXISTS can fail with a unique violation.
    await transaction(async () => {
      if (options.schema !== undefined) await q(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(options.schema)}`);
      await q(
        `CREATE TABLE IF NOT EXISTS ${table} (
           id text PRIMARY KEY,
           applied_at timestamptz NOT NULL DEFAULT now()
         )`,
      );
    });
    const done = new Set((await q(`SELECT id FROM ${table}`)).rows.map((r: { id: string }) => r.id));
    for (const migration of migrations) {
      if (done.has(migration.id)) continue;
      const ran = await transaction(async () => {
        const again = await q(`SELECT 1 FROM ${table} WHERE id = $1`, [migration.id]);
        if (again.rowCount) return false;
        try {
          await q(migration.sql);
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          throw new Error(`Migration ${migration.id} failed: ${message}`, { cause: err });
        }
        await q(`INSERT INTO ${table} (id) VALUES ($1)`, [migration.id]);
        return true;
      });
      if (ran) applied.push(migration.id);
    }
    return applied;
  } finally {
    // A migration may have changed session state (SET search_path, ...); don't hand that
    // connection to the application.
    watch.done();
    client.release(watch.error() ?? broken ?? applied.length > 0);
  }
}

/**
 * Reads `NNN_name.sql` files from `dir` (other files are ignored), ordered by their numeric
 * prefix so `10_x` follows `9_x` even without zero padding. The id is the file name without `.sql`.
 *
 * @throws Error when two files share a number: their relative order would be an accident.
 */
export async function loadSqlMigrations(dir: string): Promise<Migration[]> {
  const files = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isFile() && /^\d+_.+\.sql$/.test(e.name))
    .map((e) => ({ name: e.name, number: BigInt(e.name.slice(0, e.name.indexOf('_'))) }))
    .sort((a, b) => (a.number === b.number ? 0 : a.number < b.number ? -1 : 1));
  for (let i = 1; i < files.length; i++) {
    const prev = files[i - 1]!;
    const cur = files[i]!;
    if (prev.number === cur.number) {
      throw new Error(`Migrations ${prev.name} and ${cur.name} in ${dir} have the same number`);
    }
  }
  return Promise.all(
    files.map(async (f) => ({
      id: f.name.slice(0, -'.sql'.length),
      sql: await readFile(path.join(dir, f.name), 'utf8'),
    })),
  );
}

/** A stable signed 64-bit key (as a string, for `::bigint`) derived from a name. */
function advisoryLockKey(name: string): string {
  const digest = createHash('sha256').update(name).digest();
  return digest.readBigInt64BE(0).toString();
}
