/**
 * The demo app's database settings (docs/demo-app.md, "Environment"): parsed by loadConfig, and
 * honoured by `npm start` (app/main.ts as a process).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../app/config.js';
import { UserRepository } from '../../src/auth/index.js';
import { ConfigError } from '../../src/index.js';
import { migratedDatabase, PASSWORD, TEST_SECRET } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client } from '../helpers/http.js';
import { type ChildApp, spawnApp } from '../security/support.js';

const base = { SESSION_SECRET: TEST_SECRET };

describe('DATABASE_* and METRICS in loadConfig', () => {
  it('reads each variable, with the defaults when unset', () => {
    expect(loadConfig(base).database).toEqual({ directUrl: undefined, poolMax: 10 });
    expect(loadConfig(base).metrics).toBe(false);
    const config = loadConfig({
      ...base,
      DATABASE_DIRECT_URL: 'postgres://app@db-primary:5432/app',
      DATABASE_POOL_MAX: '25',
      DATABASE_PREPARED_STATEMENTS: 'off',
      DATABASE_STATEMENT_TIMEOUT: '5s',
      METRICS: 'on',
    });
    expect(config.database).toEqual({
      directUrl: 'postgres://app@db-primary:5432/app',
      poolMax: 25,
      preparedStatements: false,
      statementTimeout: 5_000,
    });
    expect(config.metrics).toBe(true);
    expect(loadConfig({ ...base, DATABASE_STATEMENT_TIMEOUT: 'off' }).database?.statementTimeout).toBe(false);
    expect(loadConfig({ ...base, DATABASE_STATEMENT_TIMEOUT: '2500' }).database?.statementTimeout).toBe(
      2_500,
    );
  });

  it.each([
    ['DATABASE_DIRECT_URL', 'db-primary:5432'],
    ['DATABASE_POOL_MAX', '0'],
    ['DATABASE_POOL_MAX', 'ten'],
    ['DATABASE_PREPARED_STATEMENTS', 'sometimes'],
    ['DATABASE_STATEMENT_TIMEOUT', 'soon'],
    ['METRICS', 'maybe'],
  ])('refuses %s=%s with a ConfigError naming it', (name, value) => {
    expect(() => loadConfig({ ...base, [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base, [name]: value })).toThrow(name);
  });
});

describe('npm start honours them', () => {
  let db: TestDatabase;
  let app: ChildApp;
  let plain: ChildApp;

  beforeAll(async () => {
    db = await migratedDatabase();
    await new UserRepository(db.pool).create({ email: 'env@example.com', password: PASSWORD });
    app = await spawnApp({
      ...base,
      DATABASE_URL: db.url,
      DATABASE_POOL_MAX: '2',
      DATABASE_STATEMENT_TIMEOUT: '400ms',
      LOG_LEVEL: 'warn',
    });
  }, 90_000);
  afterAll(async () => {
    await app?.stop().catch(() => {});
    await plain?.stop().catch(() => {});
    await db?.drop();
  });

  it('DATABASE_POOL_MAX: at most that many connections under concurrent logins', async () => {
    const pid = app.child.pid;
    expect(pid).toBeDefined();
    const logins = await Promise.all(
      Array.from({ length: 5 }, () =>
        new Client(app.url).post('/login', { form: { email: 'env@example.com', password: PASSWORD } }),
      ),
    );
    expect(logins.map((r) => r.status)).toEqual(Array(5).fill(303));
    // The pool's connections are named `pgsession`; the cache's listener has its own name.
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgsession' AND pid <> pg_backend_pid()",
      [db.name],
    );
    // This test's own pool is a `createPool` pool too: subtract its connections.
    const own = (db.pool as pg.Pool).totalCount;
    expect(rows[0].n - own).toBeLessThanOrEqual(2);
    expect(rows[0].n - own).toBeGreaterThan(0);
  }, 60_000);

  it('DATABASE_STATEMENT_TIMEOUT: a statement stuck behind a lock is a 503 after the limit, not a hang', async () => {
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
      const started = Date.now();
      const res = await new Client(app.url).post('/login', {
        form: { email: 'env@example.com', password: PASSWORD },
      });
      const elapsed = Date.now() - started;
      expect(res.status).toBe(503);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(elapsed).toBeLessThan(5_000);
    } finally {
      await locker.query('ROLLBACK').catch(() => {});
      await locker.end();
    }
    expect(
      (await new Client(app.url).post('/login', { form: { email: 'env@example.com', password: PASSWORD } }))
        .status,
    ).toBe(303);
  }, 60_000);

  it('METRICS: /metrics is a 404 unless METRICS=on', async () => {
    plain = await spawnApp({ ...base, DATABASE_URL: db.url, LOG_LEVEL: 'warn' });
    expect((await fetch(`${plain.url}/metrics`)).status).toBe(404);
  }, 60_000);
});
