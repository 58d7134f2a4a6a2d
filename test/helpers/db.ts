import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createPool } from '../../src/db/pool.js';
import { quoteIdent } from '../../src/db/sql.js';

/** A private database for one test file; see {@link createTestDatabase}. */
export interface TestDatabase {
  /** Connection string of the new database (same server and credentials as the admin URL). */
  url: string;
  name: string;
  /** A `createPool` pool on `url`, ended by `drop()`. */
  pool: pg.Pool;
  /** Ends `pool` and drops the database, disconnecting anyone still connected. Idempotent. */
  drop(): Promise<void>;
}

/**
 * URL of the test server (from `test/global-setup.ts`): vitest's provide/inject in test files,
 * the environment variable in processes that tests spawn. (`vitest` is imported lazily because
 * importing it outside a test worker, e.g. from the global setup, throws.)
 */
export async function testAdminUrl(): Promise<string> {
  let url: string | undefined;
  try {
    const { inject } = await import('vitest');
    url = inject('databaseUrl');
  } catch {
    // Not inside a vitest worker.
  }
  url ||= process.env.PGSESSION_TEST_ADMIN_URL;
  if (!url) throw new Error('No test database server: run the tests through vitest (test/global-setup.ts)');
  return url;
}

// The creator's pid is part of the name so leftovers of crashed runs can be told apart from
// databases of test runs still going on (see pruneTestDatabases).
const NAME_PATTERN = /^t_(\d+)_[0-9a-f]+$/;

/**
 * Creates a fresh, uniquely named database on the test server, so test files running in
 * parallel never see each other's rows. Call `drop()` in `afterAll`.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = await testAdminUrl();
  const name = `t_${process.pid}_${randomBytes(6).toString('hex')}`;
  await withAdmin(adminUrl, (c) => c.query(`CREATE DATABASE ${quoteIdent(name)}`));
  const url = withDatabase(adminUrl, name);
  const pool = createPool(url);
  let dropped: Promise<void> | undefined;
  return {
    url,
    name,
    pool,
    drop: () => {
      dropped ??= (async () => {
        await pool.end();
        await withAdmin(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`));
      })();
      return dropped;
    },
  };
}

/**
 * Drops test databases left behind by test processes that died before `drop()`. Only on a
 * server on this machine, where the pid in the name can be checked. Returns the dropped names.
 */
export async function pruneTestDatabases(adminUrl: string): Promise<string[]> {
  const host = new URL(adminUrl).hostname;
  if (!['127.0.0.1', 'localhost', '[::1]', '::1', ''].includes(host)) return [];
  return withAdmin(adminUrl, async (c) => {
    const { rows } = await c.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'`,
    );
    const dropped: string[] = [];
    for (const { datname } of rows) {
      const pid = Number(NAME_PATTERN.exec(datname)?.[1]);
      if (!pid || isAlive(pid)) continue;
      await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(datname)} WITH (FORCE)`);
      dropped.push(datname);
    }
    return dropped;
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** `url` with its database replaced. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

async function withAdmin<T>(adminUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}
