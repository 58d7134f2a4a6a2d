import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSqlMigrations, type Migration, runMigrations } from '../../src/db/migrate.js';
import { createPool } from '../../src/db/pool.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

// Each test uses its own migrations table (and objects) so they don't depend on each other.
describe('runMigrations', () => {
  it('applies pending migrations in order, once', async () => {
    const migrations: Migration[] = [
      { id: '001_a', sql: 'CREATE TABLE once_a (id int); INSERT INTO once_a VALUES (1);' },
      { id: '002_b', sql: 'ALTER TABLE once_a ADD COLUMN b text' },
    ];
    const options = { table: 'mig_once' };
    expect(await runMigrations(db.pool, migrations, options)).toEqual(['001_a', '002_b']);
    expect(await runMigrations(db.pool, migrations, options)).toEqual([]);

    const more = [...migrations, { id: '003_c', sql: 'ALTER TABLE once_a ADD COLUMN c text' }];
    expect(await runMigrations(db.pool, more, options)).toEqual(['003_c']);

    const { rows } = await db.pool.query('SELECT id, applied_at FROM mig_once ORDER BY applied_at, id');
    expect(rows.map((r) => r.id)).toEqual(['001_a', '002_b', '003_c']);
    expect(rows[0].applied_at).toBeInstanceOf(Date);
  });

  it('applies each migration exactly once when several processes run at the same time', async () => {
    // Not idempotent on purpose (CREATE TABLE fails the second time), and slow enough to overlap.
    const migrations: Migration[] = [
      { id: '001', sql: 'CREATE TABLE race_log (id text); CREATE TABLE race_t1 (); SELECT pg_sleep(0.05);' },
      ...['002', '003', '004'].map((id) => ({
        id,
        sql: `CREATE TABLE race_t${id} (); INSERT INTO race_log VALUES ('${id}'); SELECT pg_sleep(0.05);`,
      })),
    ];
    const pools = [db.pool, createPool(db.url), createPool(db.url)];
    try {
      const results = await Promise.all(
        [...pools, ...pools].map((pool) => runMigrations(pool, migrations, { table: 'mig_race' })),
      );
      expect(results.flat().sort()).toEqual(['001', '002', '003', '004']);
      const { rows } = await db.pool.query('SELECT id FROM race_log ORDER BY id');
      expect(rows.map((r) => r.id)).toEqual(['002', '003', '004']);
    } finally {
      await Promise.all(pools.slice(1).map((p) => p.end()));
    }
  });

  it('rolls back a failing migration, keeps earlier ones and names the culprit', async () => {
    const good: Migration = { id: '001_good', sql: 'CREATE TABLE fail_good ()' };
    const bad: Migration = {
      id: '002_bad',
      sql: 'CREATE TABLE fail_bad (); SELECT no_such_column FROM fail_good',
    };
    const after: Migration = { id: '003_after', sql: 'CREATE TABLE fail_after ()' };
    const options = { table: 'mig_fail' };
    await expect(runMigrations(db.pool, [good, bad, after], options)).rejects.toThrow(
      /Migration 002_bad failed: column "no_such_column" does not exist/,
    );
    const { rows } = await db.pool.query('SELECT id FROM mig_fail');
    expect(rows.map((r) => r.id)).toEqual(['001_good']);
    const tables = await db.pool.query(
      "SELECT count(*)::int AS n FROM pg_tables WHERE tablename IN ('fail_bad', 'fail_after')",
    );
    expect(tables.rows[0].n).toBe(0);

    const fixed = { id: '002_bad', sql: 'CREATE TABLE fail_bad ()' };
    expect(await runMigrations(db.pool, [good, fixed, after], options)).toEqual(['002_bad', '003_after']);
    // The pool is still healthy (no client left in an aborted transaction).
    expect((await db.pool.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
  });

  it('puts its table in the given schema, quoting odd names', async () => {
    const schema = 'odd "schema"';
    const table = 'mig"s; DROP TABLE x';
    expect(await runMigrations(db.pool, [{ id: '1', sql: 'SELECT 1' }], { schema, table })).toEqual(['1']);
    const { rows } = await db.pool.query(
      'SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = $1',
      [schema],
    );
    expect(rows).toEqual([{ table_schema: schema, table_name: table }]);
    expect(await runMigrations(db.pool, [{ id: '1', sql: 'SELECT 1' }], { schema, table })).toEqual([]);
  });

  it('does not leak session settings made by migrations into the pool', async () => {
    const before = (await db.pool.query('SHOW statement_timeout')).rows[0].statement_timeout;
    expect(before).not.toBe('1h');
    await runMigrations(db.pool, [{ id: '1', sql: "SET statement_timeout = '1h'" }], {
      table: 'mig_session',
    });
    const results = await Promise.all(
      Array.from({ length: 3 }, () => db.pool.query('SHOW statement_timeout')),
    );
    expect(results.map((r) => r.rows[0].statement_timeout)).toEqual([before, before, before]);
  });

  it('rejects duplicate and empty ids before touching the database', async () => {
    await expect(
      runMigrations(db.pool, [
        { id: 'a', sql: '' },
        { id: 'a', sql: '' },
      ]),
    ).rejects.toThrow(/Duplicate migration id: a/);
    await expect(runMigrations(db.pool, [{ id: '', sql: '' }])).rejects.toThrow(/must not be empty/);
  });
});

describe('loadSqlMigrations', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'pgsession-migrations-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads NNN_name.sql files in numeric order and ignores other files', async () => {
    await writeFile(path.join(dir, '10_c.sql'), 'SELECT 10');
    await writeFile(path.join(dir, '2_b.sql'), 'SELECT 2');
    await writeFile(path.join(dir, '001_a.sql'), 'SELECT 1');
    await writeFile(path.join(dir, 'README.md'), 'not a migration');
    await writeFile(path.join(dir, 'notes.sql'), 'no number');
    expect(await loadSqlMigrations(dir)).toEqual([
      { id: '001_a', sql: 'SELECT 1' },
      { id: '2_b', sql: 'SELECT 2' },
      { id: '10_c', sql: 'SELECT 10' },
    ]);
  });

  it('refuses two files with the same number', async () => {
    await writeFile(path.join(dir, '02_dup.sql'), 'SELECT 2');
    await expect(loadSqlMigrations(dir)).rejects.toThrow(/same number/);
  });
});
