import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import express from 'express';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { ensureSchema, tableNames } from '../../src/stores/postgres/schema.js';
import { PostgresSessionStore } from '../../src/stores/postgres/session-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';

// express-session and connect-pg-simple ship no types (and @types/express-session is not
// installed): load them through require with the little typing these tests need.
const require = createRequire(import.meta.url);
type Middleware = express.RequestHandler;
interface ExpressSession {
  (options: Record<string, unknown>): Middleware;
  Store: new () => object;
}
const session = require('express-session') as ExpressSession;
const connectPgSimple = require('connect-pg-simple') as (
  s: ExpressSession,
) => new (
  options: Record<string, unknown>,
) => { close(): Promise<void> };

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

interface ColumnInfo {
  column_name: string;
  data_type: string;
  is_nullable: 'YES' | 'NO';
  column_default: string | null;
}

async function columns(pool: pg.Pool, table: string, schema = 'public'): Promise<Record<string, ColumnInfo>> {
  const { rows } = await pool.query<ColumnInfo>(
    `SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns
     WHERE table_schema = $1 AND table_name = $2`,
    [schema, table],
  );
  return Object.fromEntries(rows.map((r) => [r.column_name, r]));
}

async function indexes(pool: pg.Pool, table: string, schema = 'public'): Promise<Record<string, string>> {
  const { rows } = await pool.query<{ indexname: string; indexdef: string }>(
    'SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2',
    [schema, table],
  );
  return Object.fromEntries(rows.map((r) => [r.indexname, r.indexdef]));
}

/** The raw session id inside an express-session cookie value (`s:<id>.<signature>`, URL-encoded). */
function rawSid(cookieValue: string): string {
  const decoded = decodeURIComponent(cookieValue);
  return decoded.slice(2, decoded.lastIndexOf('.'));
}

async function startApp(store: object): Promise<{ url: string; close(): Promise<void> }> {
  const app = express();
  app.use(session({ store, secret: 'test secret', resave: false, saveUninitialized: false }));
  app.post('/login', (req, res) => {
    (req as unknown as { session: Record<string, unknown> }).session.userId = 42;
    res.send('ok');
  });
  app.get('/me', (req, res) => {
    res.json({ userId: (req as unknown as { session: Record<string, unknown> }).session.userId ?? null });
  });
  const server: Server = app.listen(0, '127.0.0.1');
  return listen(server);
}

describe('ensureSchema', () => {
  it('adds the device column (DBSC) on its own to a table upgraded before it existed', async () => {
    await ensureSchema(db.pool, { tableName: 'before_dbsc' });
    await db.pool.query('ALTER TABLE before_dbsc DROP COLUMN device');
    const result = await ensureSchema(db.pool, { tableName: 'before_dbsc' });
    expect(result).toEqual({
      created: false,
      addedColumns: ['device'],
      addedIndexes: [],
      keepsRawIds: false,
    });
    expect((await columns(db.pool, 'before_dbsc')).device).toMatchObject({
      data_type: 'jsonb',
      is_nullable: 'YES',
    });
    // Run again: nothing left to do.
    expect((await ensureSchema(db.pool, { tableName: 'before_dbsc' })).addedColumns).toEqual([]);
  });

  it("creates connect-pg-simple's table plus pgsession's columns and indexes", async () => {
    const result = await ensureSchema(db.pool, { tableName: 'fresh' });
    expect(result.created).toBe(true);

    const cols = await columns(db.pool, 'fresh');
    expect(Object.keys(cols).sort()).toEqual(
      [
        'created_at',
        'device',
        'expire',
        'id_hashed',
        'key_hash',
        'last_active_at',
        'sess',
        'sid',
        'user_id',
        'version',
      ].sort(),
    );
    expect(cols.sid).toMatchObject({ data_type: 'character varying', is_nullable: 'NO' });
    expect(cols.sess).toMatchObject({ data_type: 'json', is_nullable: 'NO' });
    expect(cols.expire).toMatchObject({ data_type: 'timestamp without time zone', is_nullable: 'NO' });
    expect(cols.user_id).toMatchObject({ data_type: 'text', is_nullable: 'YES' });
    expect(cols.created_at).toMatchObject({ data_type: 'timestamp with time zone', is_nullable: 'YES' });
    expect(cols.last_active_at).toMatchObject({ data_type: 'timestamp with time zone', is_nullable: 'YES' });
    expect(cols.version).toMatchObject({ data_type: 'integer', is_nullable: 'NO', column_default: '0' });
    expect(cols.id_hashed).toMatchObject({
      data_type: 'boolean',
      is_nullable: 'NO',
      column_default: 'false',
    });
    expect(cols.key_hash).toMatchObject({ data_type: 'text', is_nullable: 'YES' });

    const { rows } = await db.pool.query(
      `SELECT conname FROM pg_constraint WHERE conrelid = 'fresh'::regclass AND contype = 'p'`,
    );
    expect(rows).toEqual([{ conname: 'fresh_pkey' }]);
    const idx = await indexes(db.pool, 'fresh');
    expect(idx.IDX_fresh_expire).toMatch(/\(expire\)/);
    expect(idx.IDX_fresh_user_id).toMatch(/\(user_id\) WHERE \(user_id IS NOT NULL\)/);
    // Unique: two rows can never answer to the same storage key.
    expect(idx.IDX_fresh_key_hash).toMatch(/UNIQUE INDEX .*\(key_hash\) WHERE \(key_hash IS NOT NULL\)/);
    const { rows: precision } = await db.pool.query(
      `SELECT datetime_precision FROM information_schema.columns WHERE table_name = 'fresh' AND column_name = 'expire'`,
    );
    expect(precision[0].datetime_precision).toBe(6);
  });

  it("names the default table's index IDX_session_expire, as connect-pg-simple does", async () => {
    const schema = 'defaults_here';
    await ensureSchema(db.pool, { schemaName: schema });
    const idx = await indexes(db.pool, 'session', schema);
    expect(Object.keys(idx).sort()).toEqual([
      'IDX_session_expire',
      'IDX_session_key_hash',
      'IDX_session_user_id',
      'session_pkey',
    ]);
  });

  it('is idempotent', async () => {
    await ensureSchema(db.pool, { tableName: 'twice' });
    const before = await indexes(db.pool, 'twice');
    const again = await ensureSchema(db.pool, { tableName: 'twice' });
    expect(again).toEqual({ created: false, addedColumns: [], addedIndexes: [], keepsRawIds: false });
    expect(await indexes(db.pool, 'twice')).toEqual(before);
  });

  it('is safe when many processes run it at once', async () => {
    const pools = [new pg.Pool({ connectionString: db.url }), new pg.Pool({ connectionString: db.url })];
    try {
      const results = await Promise.all(
        [...pools, ...pools].map((pool) =>
          ensureSchema(pool, { schemaName: 'racing', tableName: 'sessions' }),
        ),
      );
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(Object.keys(await indexes(db.pool, 'sessions', 'racing'))).toHaveLength(4);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('does not create a missing table when told not to', async () => {
    await expect(ensureSchema(db.pool, { tableName: 'absent', createTable: false })).rejects.toThrow(
      /does not exist/,
    );
    const { rows } = await db.pool.query(`SELECT to_regclass('absent') AS t`);
    expect(rows[0].t).toBeNull();
  });

  it('quotes schema and table names: quotes and semicolons name a table, they inject nothing', async () => {
    const schemaName = 'we"ird; DROP TABLE canary; --';
    const tableName = 'sess"ion"; DELETE FROM canary; --';
    await db.pool.query('CREATE TABLE canary (x int)');
    await db.pool.query('INSERT INTO canary VALUES (1)');

    const store = new PostgresSessionStore({ pool: db.pool, schemaName, tableName });
    const now = Date.now();
    await store.create('k', {
      data: { cookie: { originalMaxAge: null }, n: 1 },
      expiresAt: now + 60_000,
      createdAt: now,
      lastActiveAt: now,
      userId: 'u',
      version: 0,
    });
    expect((await store.get('k'))?.data.n).toBe(1);
    expect(await store.listByUser('u')).toHaveLength(1);
    expect(
      await store.update('k', {
        set: { n: 2 },
        unset: [],
        data: { cookie: { originalMaxAge: null }, n: 2 },
        expiresAt: now + 60_000,
        lastActiveAt: now,
        userId: 'u',
        baseVersion: 0,
      }),
    ).toMatchObject({ data: { n: 2 } });
    expect(await store.prune()).toBe(0);
    await store.destroy('k');

    const { rows } = await db.pool.query('SELECT x FROM canary');
    expect(rows).toEqual([{ x: 1 }]);
    const { rows: tables } = await db.pool.query(
      'SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = $1',
      [schemaName],
    );
    expect(tables).toEqual([{ table_schema: schemaName, table_name: tableName }]);
    expect(tableNames({ schemaName, tableName }).qualified).toBe(
      '"we""ird; DROP TABLE canary; --"."sess""ion""; DELETE FROM canary; --"',
    );
    await store.close();
  });

  it('rejects empty and NUL-containing names before touching the database', () => {
    expect(() => tableNames({ tableName: '' })).toThrow();
    expect(() => tableNames({ tableName: 'a\0b' })).toThrow();
    expect(() => tableNames({ schemaName: 'a\0b' })).toThrow();
  });
});

describe('upgrading a table created by connect-pg-simple', () => {
  it('adds the columns in place, keeps connect-pg-simple working, and leaves legacy rows where it reads them', async () => {
    const schema = 'legacy';
    await db.pool.query(`CREATE SCHEMA ${schema}`);
    const PGStore = connectPgSimple(session);
    const legacyStore = new PGStore({
      pool: db.pool,
      schemaName: schema,
      createTableIfMissing: true,
      pruneSessionInterval: false,
    });
    const app = await startApp(legacyStore);
    try {
      // The real connect-pg-simple creates its table and stores a login under the raw id.
      const alice = new Client(app.url);
      // Reading the body matters: express-session sends the headers before the store's save
      // completes and ends the body after it.
      expect(await (await alice.post('/login')).text()).toBe('ok');
      const sid = rawSid(alice.jar.get('connect.sid')!);
      const before = await db.pool.query(`SELECT sid, sess FROM ${schema}.session`);
      expect(before.rows).toEqual([{ sid, sess: expect.objectContaining({ userId: 42 }) }]);
      expect(Object.keys(await columns(db.pool, 'session', schema)).sort()).toEqual([
        'expire',
        'sess',
        'sid',
      ]);

      // pgsession's store upgrades the table in place.
      const store = new PostgresSessionStore({
        pool: db.pool,
        schemaName: schema,
        createTableIfMissing: false,
      });
      const upgrade = await ensureSchema(db.pool, { schemaName: schema, createTable: false });
      expect(upgrade.created).toBe(false);
      expect(upgrade.addedColumns.sort()).toEqual([
        'created_at',
        'device',
        'id_hashed',
        'key_hash',
        'last_active_at',
        'user_id',
        'version',
      ]);
      // The expire index was there already.
      expect(upgrade.addedIndexes).toEqual(['IDX_session_user_id', 'IDX_session_key_hash']);
      // connect-pg-simple's table: the switch is reversible until `pgsession migrate --finish`.
      expect(upgrade.keepsRawIds).toBe(true);
      expect(await store.keepsRawIds()).toBe(true);
      expect(Object.keys(await indexes(db.pool, 'session', schema)).sort()).toEqual([
        'IDX_session_expire',
        'IDX_session_key_hash',
        'IDX_session_user_id',
        'session_pkey',
      ]);

      // connect-pg-simple keeps reading and writing the upgraded table.
      expect(await (await alice.get('/me')).json()).toEqual({ userId: 42 });
      const bob = new Client(app.url);
      expect(await (await bob.post('/login')).text()).toBe('ok');
      const bobSid = rawSid(bob.jar.get('connect.sid')!);
      const { rows: bobRows } = await db.pool.query(
        `SELECT id_hashed, version, user_id FROM ${schema}.session WHERE sid = $1`,
        [bobSid],
      );
      expect(bobRows).toEqual([{ id_hashed: false, version: 0, user_id: null }]);

      // pgsession reads alice's legacy row by the hash of her id, giving the raw id as legacyKey…
      const key = hashId(sid);
      const record = await store.get(key, { legacyKey: sid });
      expect(record).toMatchObject({ data: { userId: 42 }, userId: '42', version: 0 });
      expect(record!.createdAt).toBeGreaterThan(Date.now() - 60_000);
      // …and the row stays where connect-pg-simple looks for it (a rollback keeps alice logged
      // in), recording its storage key and owner for the calls that only know the key.
      const { rows } = await db.pool.query(
        `SELECT sid, id_hashed, key_hash, user_id FROM ${schema}.session ORDER BY sid`,
      );
      expect(rows).toContainEqual({ sid, id_hashed: false, key_hash: key, user_id: '42' });
      expect(await store.get(key)).toMatchObject({ data: { userId: 42 } });
      expect(await store.get(key, { legacyKey: sid })).toMatchObject({ data: { userId: 42 } });
      // Listed for its user, under its storage key (never the raw id).
      expect((await store.listByUser('42')).map((l) => l.key)).toContain(key);
      expect(await (await alice.get('/me')).json()).toEqual({ userId: 42 });
      // `pgsession migrate --finish` moves it under the hash; pgsession still finds it by key.
      expect(await store.rekey()).toBe(2);
      const { rows: after } = await db.pool.query(`SELECT sid, id_hashed, key_hash FROM ${schema}.session`);
      expect(after).toContainEqual({ sid: key, id_hashed: true, key_hash: null });
      expect(after).toContainEqual({ sid: hashId(bobSid), id_hashed: true, key_hash: null });
      expect(await store.get(key)).toMatchObject({ data: { userId: 42 } });
      expect(await store.countRaw()).toBe(0);
      await store.close();
    } finally {
      await app.close();
      await legacyStore.close();
    }
  });
});
