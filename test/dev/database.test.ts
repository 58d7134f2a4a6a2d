import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { quoteIdent, quoteQualified } from '../../src/db/sql.js';
import { DatabaseUrlError, openDatabase } from '../../src/dev/index.js';
import { createTestDatabase, testAdminUrl } from '../helpers/db.js';

describe('openDatabase', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'pgsession-open-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('uses DATABASE_URL when set, without starting the embedded server', async () => {
    const url = 'postgres://someone@db.example:5432/app';
    const db = await openDatabase({ env: { DATABASE_URL: url }, dataDir: path.join(dir, 'pg') });
    expect(db).toMatchObject({ url, embedded: false });
    await db.close();
    expect(await readdir(dir)).toEqual([]);
  });
  // The embedded case is covered in embedded.test.ts, which has a server to join.

  it.each([
    'postgresql://app:pw@db.example/app?sslmode=require',
    'postgres:///app',
    'postgres://%2Fvar%2Frun%2Fpostgresql/app',
    'socket:/var/run/postgresql?db=app',
    '/var/run/postgresql app',
  ])('takes every form pg reads: %s', async (url) => {
    const db = await openDatabase({ env: { DATABASE_URL: url }, dataDir: path.join(dir, 'pg') });
    expect(db).toMatchObject({ url, embedded: false });
  });

  it.each(['notaurl', 'db.example:5432/app', 'http://db.example/app', 'postgres:app'])(
    'refuses %s with a DatabaseUrlError saying what is expected (not ENOTFOUND base)',
    async (url) => {
      const err = await openDatabase({ env: { DATABASE_URL: url }, dataDir: path.join(dir, 'pg') }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DatabaseUrlError);
      expect(err).toMatchObject({ code: 'ERR_DATABASE_URL' });
      expect((err as Error).message).toContain('expected postgres://user:password@host:5432/database');
      expect(await readdir(dir)).toEqual([]);
    },
  );
});

describe('test harness', () => {
  it('gives each caller its own database on the test server', async () => {
    const a = await createTestDatabase();
    const b = await createTestDatabase();
    try {
      expect(a.name).not.toBe(b.name);
      await a.pool.query('CREATE TABLE only_in_a (v int)');
      const inB = await b.pool.query("SELECT to_regclass('only_in_a') AS t");
      expect(inB.rows).toEqual([{ t: null }]);
    } finally {
      await a.drop();
      await b.drop();
      await b.drop(); // idempotent
    }
    const admin = await createTestDatabase();
    try {
      const { rows } = await admin.pool.query('SELECT datname FROM pg_database WHERE datname = ANY($1)', [
        [a.name, b.name],
      ]);
      expect(rows).toEqual([]);
    } finally {
      await admin.drop();
    }
  });

  it('passes the server URL to workers both ways', async () => {
    expect(inject('databaseUrl')).toMatch(/^postgres(ql)?:\/\//);
    expect(process.env.PGSESSION_TEST_ADMIN_URL).toBe(inject('databaseUrl'));
    expect(await testAdminUrl()).toBe(inject('databaseUrl'));
  });
});

describe('quoteIdent', () => {
  it('double-quotes and escapes', () => {
    expect(quoteIdent('session')).toBe('"session"');
    expect(quoteIdent('we"ird')).toBe('"we""ird"');
    expect(quoteQualified('t', 's"x')).toBe('"s""x"."t"');
    expect(quoteQualified('t')).toBe('"t"');
    expect(() => quoteIdent('')).toThrow(TypeError);
    expect(() => quoteIdent('a\0b')).toThrow(TypeError);
  });
});
