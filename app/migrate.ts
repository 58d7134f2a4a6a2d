import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { authMigrations, type UserRepository } from '../src/auth/index.js';
import { loadSqlMigrations, runMigrations } from '../src/db/index.js';
import { kSessionStore } from '../src/index.js';
import { PgStore } from '../src/stores/postgres/index.js';

/** The demo app's own migrations (`app/migrations`), ids prefixed `app/`. */
export async function appMigrations() {
  const dir = fileURLToPath(new URL('./migrations/', import.meta.url));
  return (await loadSqlMigrations(dir)).map((m) => ({ id: `app/${m.id}`, sql: m.sql }));
}

/**
 * Bring the database up to date for the demo app: the session table (created or upgraded by the
 * store), then the auth migrations (users, login counters), then the app's (servers). Safe from
 * several processes at once. Returns the migration ids applied.
 */
export async function migrateApp(pool: pg.Pool): Promise<string[]> {
  const store = new PgStore({
    pool,
    tableName: 'session',
    createTableIfMissing: true,
    pruneSessionInterval: false,
  });
  try {
    await store[kSessionStore].ready();
  } finally {
    await store.close();
  }
  return runMigrations(pool, [...(await authMigrations()), ...(await appMigrations())]);
}

/** The demo accounts created on first start, with their one-time passwords. */
export interface SeededAccount {
  email: string;
  password: string;
  role: 'user' | 'admin';
}

/** The demo accounts {@link seedDemoData} creates on a first start. */
export const DEMO_ACCOUNTS: ReadonlyArray<{ email: string; role: 'user' | 'admin' }> = [
  { email: 'demo@example.com', role: 'user' },
  { email: 'admin@example.com', role: 'admin' },
];

/** Which demo accounts exist (on later starts, when their passwords are not shown again). */
export async function demoAccountsPresent(
  users: UserRepository,
): Promise<Array<{ email: string; role: 'user' | 'admin' }>> {
  const found = await Promise.all(DEMO_ACCOUNTS.map((a) => users.findByEmail(a.email)));
  return DEMO_ACCOUNTS.filter((_, i) => found[i] !== null);
}

/**
 * When the users table is empty: a demo user (with three servers) and a demo admin, each with a
 * random password that is returned once (main prints it) and stored only as an argon2id hash.
 */
export async function seedDemoData(pool: pg.Pool, users: UserRepository): Promise<SeededAccount[]> {
  if ((await users.count()) > 0) return [];
  const accounts: SeededAccount[] = DEMO_ACCOUNTS.map((a) => ({
    ...a,
    password: randomBytes(12).toString('base64url'),
  }));
  const created: SeededAccount[] = [];
  for (const account of accounts) {
    try {
      const user = await users.create(account);
      created.push(account);
      if (account.role === 'user') {
        await pool.query(
          "INSERT INTO servers (user_id, name) SELECT $1, unnest(ARRAY['web-1 (nginx)', 'db-1 (PostgreSQL 16)', 'cache-1 (Redis)'])",
          [user.id],
        );
      }
    } catch (err) {
      // Another process seeding at the same moment got there first.
      if ((err as { code?: string }).code !== 'PGSESSION_DUPLICATE_EMAIL') throw err;
    }
  }
  return created;
}
