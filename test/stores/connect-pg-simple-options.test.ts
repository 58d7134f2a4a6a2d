/**
 * Every connect-pg-simple option and the semi-private members its users (and its own test
 * suite) reach for, on `pgsession/connect-pg-simple`: pools that are not `pg.Pool`s, pg-promise,
 * the prune timer, `createTableIfMissing`, `errorLog`, `ttl`, `conString` / `conObject` /
 * `DATABASE_URL`. (connect-pg-simple's own suite runs against the build with
 * `npm run compat:upstream`; these keep the behaviour in CI, which has no mirror of it.)
 */
import { createRequire } from 'node:module';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { hashId } from '../../src/core/id.js';
import { kSessionStore, type SessionJSON } from '../../src/core/store.js';
import { queryOptionsOf } from '../../src/db/query.js';
import connectPgSimple from '../../src/stores/postgres/connect-pg-simple.js';
import type { PgStoreInstance, QueryCallback } from '../../src/stores/postgres/pg-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

const require = createRequire(import.meta.url);
const session = require('express-session') as { Store: new () => object };
const PGStore = connectPgSimple(session);

let db: TestDatabase;
const open: PgStoreInstance[] = [];
/** A store closed after the test. */
function track<T extends PgStoreInstance>(store: T): T {
  open.push(store);
  return store;
}

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(open.splice(0).map((s) => s.close()));
});
afterAll(async () => {
  await db?.drop();
});

const sess = (ms = 60_000): SessionJSON => ({
  cookie: { originalMaxAge: ms, expires: new Date(Date.now() + ms).toISOString() },
  n: 1,
});

async function tableExists(name: string): Promise<boolean> {
  const { rows } = await db.pool.query('SELECT to_regclass($1) IS NOT NULL AS ok', [name]);
  return rows[0].ok as boolean;
}

describe('where queries go', () => {
  it('any object with node-postgres’s query() will do: no pool.options, no connect()', async () => {
    const seen: string[] = [];
    // A logging wrapper, as apps write them: only `query`.
    const wrapper = {
      query: (text: string, values?: unknown[]) => {
        seen.push(text);
        return db.pool.query(text, values);
      },
    };
    const store = track(
      new PGStore({ pool: wrapper as unknown as pg.Pool, tableName: 'wrapped', createTableIfMissing: true }),
    );
    await store.set('a', sess());
    expect(await store.get('a')).toMatchObject({ n: 1 });
    await store.touch('a', sess(120_000));
    expect(await store.length()).toBe(1);
    await store.destroy('a');
    expect(await store.get('a')).toBeNull();
    await db.pool.query(
      `INSERT INTO wrapped (sid, sess, expire) VALUES ('old', '{"cookie":{}}', now()::timestamp - interval '1 day')`,
    );
    await new Promise<void>((resolve, reject) =>
      store.pruneSessions((err) => (err ? reject(err) : resolve())),
    );
    expect((await db.pool.query('SELECT count(*)::int AS n FROM wrapped')).rows[0].n).toBe(0);
    // Everything went through the wrapper, pruning (lock held per statement) included.
    expect(seen.some((t) => t.includes('pg_try_advisory_xact_lock'))).toBe(true);
    expect(seen.some((t) => /^CREATE TABLE IF NOT EXISTS "wrapped"/m.test(t))).toBe(true);
  });

  it('upgrades a connect-pg-simple table through such a wrapper, without a transaction', async () => {
    await db.pool.query(
      `CREATE TABLE cps_wrapped (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL)`,
    );
    await db.pool.query(
      `INSERT INTO cps_wrapped VALUES ('raw', '{"cookie":{},"userId":9}', now()::timestamp + interval '1 hour')`,
    );
    const wrapper = { query: (text: string, values?: unknown[]) => db.pool.query(text, values) };
    const store = track(new PGStore({ pool: wrapper as unknown as pg.Pool, tableName: 'cps_wrapped' }));
    expect(await store.get('raw')).toMatchObject({ userId: 9 });
    const { rows } = await db.pool.query('SELECT sid, id_hashed, key_hash, user_id FROM cps_wrapped');
    expect(rows).toEqual([{ sid: 'raw', id_hashed: false, key_hash: hashId('raw'), user_id: '9' }]);
  });

  it('pgPromise: every statement goes through its any(query, values)', async () => {
    const calls: Array<[string, unknown]> = [];
    const pgPromise = {
      any: async (query: string, values?: unknown) => {
        calls.push([query, values]);
        return (await db.pool.query(query, values as unknown[] | undefined)).rows;
      },
    };
    const store = track(new PGStore({ pgPromise, tableName: 'via_pgp', createTableIfMissing: true }));
    expect(store[kSessionStore].idsHashed).toBe(true);
    await store.set('p', sess());
    expect(await store.get('p')).toMatchObject({ n: 1 });
    const first = await store._asyncQuery('SELECT $1::int AS x', [41]);
    expect(first).toEqual({ x: 41 });
    expect(calls.at(-1)).toEqual(['SELECT $1::int AS x', [41]]);
    const viaCallback = await new Promise((resolve, reject) =>
      store.query('SELECT 2 AS y', [], (err, row) => (err ? reject(err) : resolve(row))),
    );
    expect(viaCallback).toEqual({ y: 2 });
    await store.pruneSessions();
    expect(calls.length).toBeGreaterThan(5);
  });

  it("pgPromise without any(): connect-pg-simple's own TypeError", () => {
    expect(() => new PGStore({ pgPromise: {} as never })).toThrow(
      new TypeError(
        '`pgPromise` config must point to an existing and configured instance of pg-promise pointing at your database',
      ),
    );
  });

  it('conString, conObject and DATABASE_URL build a pg.Pool with exactly that configuration, plus timeouts', async () => {
    const byString = track(new PGStore({ conString: db.url, pruneSessionInterval: false }));
    const pool = byString[kSessionStore].pool as pg.Pool & { options: pg.PoolConfig };
    expect(pool.options.connectionString).toBe(db.url);
    // pgsession's timeouts, so an outage never hangs requests (unless the config sets them);
    // the statement limit per query, not as a startup parameter a transaction pooler refuses.
    expect(pool.options).toMatchObject({ connectionTimeoutMillis: 5000, keepAlive: true });
    expect(pool.options.statement_timeout).toBeUndefined();
    expect(queryOptionsOf(pool)).toEqual({ preparedStatements: true, statementTimeoutMs: 15_000 });
    const byObject = track(
      new PGStore({
        conObject: { connectionString: db.url, statement_timeout: 1234 },
        pruneSessionInterval: false,
      }),
    );
    expect(
      (byObject[kSessionStore].pool as pg.Pool & { options: pg.PoolConfig }).options.statement_timeout,
    ).toBe(1234);
    const saved = process.env.DATABASE_URL;
    process.env.DATABASE_URL = db.url;
    try {
      const byEnv = track(
        new PGStore({ tableName: 'env_made', createTableIfMissing: true, pruneSessionInterval: false }),
      );
      await byEnv.set('e', sess());
      expect(await tableExists('env_made')).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.DATABASE_URL;
      else process.env.DATABASE_URL = saved;
    }
    await byString.close();
    expect(pool.ended).toBe(true);
  });

  it('bad option types are a ConfigError', () => {
    expect(() => new PGStore({ ttl: '1d' as never })).toThrow(ConfigError);
    expect(() => new PGStore({ pruneSessionInterval: '60' as never })).toThrow(ConfigError);
    expect(() => new PGStore({ pruneSessionRandomizedInterval: 2 as never })).toThrow(ConfigError);
    expect(() => new PGStore({ errorLog: 'stderr' as never })).toThrow(ConfigError);
    expect(() => new PGStore({ disableTouch: 'yes' as never })).toThrow(ConfigError);
    expect(() => new PGStore({ batchSaves: 'no' as never })).toThrow(ConfigError);
    expect(() => new PGStore({ pool: 'postgres://x' as never })).toThrow(ConfigError);
  });
});

describe('the semi-private members', () => {
  it('quotedTable(): quoted, schema-qualified, dots kept, the legacy "schema"."table" spelling read', () => {
    const quoted = (options: object) =>
      track(new PGStore({ pool: {} as pg.Pool, pruneSessionInterval: false, ...options })).quotedTable();
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      expect(quoted({})).toBe('"session"');
      expect(quoted({ schemaName: 'a', tableName: 'b.c' })).toBe('"a"."b.c"');
      expect(quoted({ tableName: 'x"."y' })).toBe('"x"."y"');
      expect(quoted({ tableName: 'q"uote' })).toBe('"q""uote"');
    } finally {
      warn.mockRestore();
    }
  });

  it('set and every prune go through this.query (a mock of it sees them), the callback gets the first row', async () => {
    const store = track(new PGStore({ pool: {} as pg.Pool, pruneSessionInterval: false }));
    const texts: string[] = [];
    store.query = ((text: string | { text: string }, _params: unknown, cb: QueryCallback) => {
      texts.push(typeof text === 'string' ? text : text.text);
      process.nextTick(cb, null, undefined);
    }) as PgStoreInstance['query'];
    await store.set('m', sess());
    await store.pruneSessions();
    expect(texts).toHaveLength(2);
    expect(texts[0]).toMatch(/INSERT INTO "session"/);
    expect(texts[1]).toMatch(/DELETE FROM "session"/);
    const plain = track(new PGStore({ pool: {} as pg.Pool, pruneSessionInterval: false }));
    const twoCallbacks = plain.query as unknown as (q: string, a: () => void, b: () => void) => void;
    expect(() =>
      twoCallbacks.call(
        plain,
        '',
        () => {},
        () => {},
      ),
    ).toThrow(/Two callback functions/);
  });

  it('createTableIfMissing: the table is made on the first query, once for concurrent ones', async () => {
    const store = track(new PGStore({ conString: db.url, tableName: 'lazy', createTableIfMissing: true }));
    const asyncQuery = vi.spyOn(store, '_asyncQuery');
    const raw = vi.spyOn(store, '_rawEnsureSessionStoreTable');
    expect(await tableExists('lazy')).toBe(false);
    await Promise.all([1, 2, 3].map(() => store._asyncQuery('SELECT 1')));
    expect(raw).toHaveBeenCalledTimes(1);
    // The three queries, then to_regclass and the DDL.
    expect(asyncQuery).toHaveBeenCalledTimes(5);
    expect(asyncQuery.mock.calls.map((call) => call[0])).toContain('SELECT to_regclass($1::text)');
    expect(await tableExists('lazy')).toBe(true);
    await store._ensureSessionStoreTable();
    expect(raw).toHaveBeenCalledTimes(1);
    // Off (the default): no table is created, and a store query says what is missing.
    const off = track(
      new PGStore({ conString: db.url, tableName: 'never_made', pruneSessionInterval: false }),
    );
    await off._ensureSessionStoreTable();
    expect(await tableExists('never_made')).toBe(false);
    await expect(off.get('x')).rejects.toThrow(/does not exist/);
  });
});

describe('pruning', () => {
  it('starts on first use, jittered, unref()ed, re-armed after each run, stopped by close()', async () => {
    vi.useFakeTimers();
    const random = vi.spyOn(Math, 'random').mockReturnValue(0.1);
    const store = track(new PGStore({ pool: {} as pg.Pool }));
    store.query = ((_t: unknown, _p: unknown, cb: QueryCallback) => process.nextTick(cb, null)) as never;
    const prune = vi.spyOn(store, 'pruneSessions');
    const delay = Math.ceil(900_000 / 2 + 900_000 * 0.1);
    await vi.advanceTimersByTimeAsync(delay + 1);
    expect(prune).not.toHaveBeenCalled(); // not from the constructor
    expect(vi.getTimerCount()).toBe(0);
    await store.set('s', sess());
    await vi.advanceTimersByTimeAsync(delay);
    expect(prune).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(delay);
    expect(prune).toHaveBeenCalledTimes(2);
    await store.close();
    await vi.advanceTimersByTimeAsync(delay * 3);
    expect(prune).toHaveBeenCalledTimes(2);
    random.mockRestore();
  });

  it('pruneSessionInterval (seconds), a custom randomizer, false; a failed prune goes to errorLog', async () => {
    vi.useFakeTimers();
    const errorLog = vi.fn();
    const randomizer = vi.fn((ms: number) => ms * 2);
    const store = track(
      new PGStore({
        pool: {} as pg.Pool,
        pruneSessionInterval: 5,
        pruneSessionRandomizedInterval: randomizer,
        errorLog,
      }),
    );
    const boom = new Error('prune failed');
    store.query = ((text: unknown, _p: unknown, cb: QueryCallback) =>
      process.nextTick(
        cb,
        String((text as { text?: string }).text ?? text).includes('DELETE') ? boom : null,
      )) as never;
    await store.get('s');
    expect(randomizer).toHaveBeenCalledWith(5000);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(errorLog).toHaveBeenCalledWith('Failed to prune sessions:', boom);
    expect(randomizer).toHaveBeenCalledTimes(2); // re-armed after the failure too
    const never = track(new PGStore({ pool: {} as pg.Pool, pruneSessionInterval: false }));
    never.query = ((_t: unknown, _p: unknown, cb: QueryCallback) => process.nextTick(cb, null)) as never;
    await never.get('s');
    expect(never[kSessionStore].pruning).toBe(false);
  });
});

describe('ttl and disableTouch', () => {
  it('ttl (seconds) for sessions without a cookie expiry; disableTouch leaves expire alone', async () => {
    const store = track(
      new PGStore({
        pool: db.pool,
        tableName: 'ttl',
        createTableIfMissing: true,
        ttl: 90,
        disableTouch: true,
        pruneSessionInterval: false,
      }),
    );
    const before = Date.now();
    await store.set('t', { cookie: { originalMaxAge: null } });
    const expiry = async () =>
      (
        await db.pool.query(
          'SELECT round(extract(epoch FROM expire::timestamptz) * 1000)::float8 AS ms FROM ttl',
        )
      ).rows[0].ms as number;
    const first = await expiry();
    expect(first).toBeGreaterThanOrEqual(before + 90_000);
    expect(first).toBeLessThan(before + 95_000);
    await store.touch('t', sess(3_600_000));
    expect(await expiry()).toBe(first);
  });
});
