import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SerializationError } from '../../src/core/errors.js';
import { hashId } from '../../src/core/id.js';
import type { SessionChange, SessionRecord } from '../../src/core/store.js';
import { PostgresSessionStore } from '../../src/stores/postgres/session-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
let clock: number;
let store: PostgresSessionStore;
const T0 = Date.UTC(2030, 0, 15, 12, 0, 0, 123);

beforeAll(async () => {
  db = await createTestDatabase();
  store = new PostgresSessionStore({ pool: db.pool, tableName: 'sessions', now: () => clock });
  await store.ready();
});

afterAll(async () => {
  await store?.close();
  await db?.drop();
});

beforeEach(async () => {
  clock = T0;
  await db.pool.query('TRUNCATE sessions');
});

function record(overrides: Partial<SessionRecord> = {}, data: Record<string, unknown> = {}): SessionRecord {
  return {
    data: { cookie: { originalMaxAge: 3_600_000, httpOnly: true, path: '/' }, ...data },
    expiresAt: clock + 3_600_000,
    createdAt: clock,
    lastActiveAt: clock,
    userId: null,
    version: 0,
    ...overrides,
  };
}

function change(
  set: Record<string, unknown>,
  unset: string[] = [],
  overrides: Partial<SessionChange> = {},
): SessionChange {
  return {
    set,
    unset,
    data: { cookie: { originalMaxAge: 3_600_000 }, ...set },
    expiresAt: clock + 3_600_000,
    lastActiveAt: clock,
    userId: null,
    baseVersion: 0,
    ...overrides,
  };
}

/**
 * Start `race` while another connection holds the row lock of `sid`, wait until `waiters`
 * statements queue up behind that lock, then let go and return what the race resolved to.
 */
async function whileRowLocked<T>(sid: string, waiters: number, race: () => Promise<T>): Promise<T> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT 1 FROM sessions WHERE sid = $1 FOR UPDATE', [sid]);
    const racing = race();
    racing.catch(() => {}); // awaited below, after the lock is released
    await waitForLockWaiters(waiters);
    await client.query('COMMIT');
    return await racing;
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  } finally {
    client.release();
  }
}

/** Wait until `n` backends are blocked on a lock (so the racing statements really queued up). */
async function waitForLockWaiters(n: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (rows[0]!.n >= n) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`expected ${n} statements waiting on a lock`);
}

// The rules every store keeps run in contract.test.ts (the store contract); these are the table's own.
describe('PostgresSessionStore', () => {
  it('writes expire like connect-pg-simple: to_timestamp of the app clock, as timestamp without time zone', async () => {
    await store.create('k1', record({ expiresAt: T0 + 60_000 }));
    const { rows } = await db.pool.query(
      `SELECT expire = to_timestamp($1::float8 / 1000)::timestamp AS same, id_hashed FROM sessions WHERE sid = 'k1'`,
      [T0 + 60_000],
    );
    expect(rows).toEqual([{ same: true, id_hashed: true }]);
  });

  // get / touch / update / listByUser of an expired row: the store contract (contract.test.ts).
  it('never replaces, counts or lists an expired row, even before pruning', async () => {
    await store.create('k1', record({ expiresAt: T0 + 1000, userId: 'u1' }));
    clock = T0 + 1001;
    expect(await store.get('k1')).toBeNull();
    expect(await store.replace('k1', record().data, clock + 60_000, clock)).toBe(false);
    expect(await store.count()).toBe(0);
    expect(await store.keys()).toEqual([]);
    expect(await store.all()).toEqual([]);
    // Still there for the pruner.
    expect((await db.pool.query('SELECT count(*)::int AS n FROM sessions')).rows[0].n).toBe(1);
  });

  it('rejects a duplicate key on create', async () => {
    await store.create('k1', record());
    await expect(store.create('k1', record())).rejects.toMatchObject({ code: '23505' });
  });

  it('keeps both changes when two servers update different keys at the same time', async () => {
    await store.create('k1', record({}, { a: 0, b: 0 }));
    // Two processes (one store each: within one process, concurrent saves share a statement).
    const other = new PostgresSessionStore({ pool: db.pool, tableName: 'sessions', now: () => clock });
    const results = await whileRowLocked('k1', 2, () =>
      Promise.all([store.update('k1', change({ a: 1 })), other.update('k1', change({ b: 2 }))]),
    );
    expect(results.every((r) => r !== null)).toBe(true);
    const final = await store.get('k1');
    expect(final?.data).toMatchObject({ a: 1, b: 2 });
    expect(final?.version).toBe(2);
  });

  it('combines concurrent saves of one session in this process into one statement, each caller getting its own copy', async () => {
    await store.create('k1', record({}, { a: 0, b: 0, c: 0 }));
    let statements = 0;
    const counting = new PostgresSessionStore({
      pool: db.pool,
      tableName: 'sessions',
      now: () => clock,
      run: async (statement, values) => {
        statements++;
        return (await db.pool.query(statement.text, values)).rows[0];
      },
    });
    const results = await whileRowLocked('k1', 1, () =>
      Promise.all([
        counting.update('k1', change({ a: 1 })),
        counting.update('k1', change({ b: 2 }, ['c'])),
        counting.update('k1', change({ c: 3, a: 4 })),
      ]),
    );
    // The first waited for the lock; the two that came while it ran went as one.
    expect(statements).toBe(2);
    expect(results.map((r) => r?.version)).toEqual([1, 2, 2]);
    expect(results[1]).toEqual(results[2]);
    expect(results[1]).not.toBe(results[2]);
    expect(results[2]?.data).toMatchObject({ a: 4, b: 2, c: 3 });
    expect((await store.get('k1'))?.data).toMatchObject({ a: 4, b: 2, c: 3 });
  });

  it('saves a session holding "\\u0000" (which jsonb refuses) whole instead of failing every update', async () => {
    await store.create('k1', record({}, { a: 0, note: 'x\u0000y' }));
    const updated = await store.update('k1', change({ a: 1, note: 'x\u0000y' }));
    expect(updated?.data).toMatchObject({ a: 1, note: 'x\u0000y' });
    const again = await store.update('k1', change({ a: 2, note: 'plain' }));
    expect(again?.data).toMatchObject({ a: 2, note: 'plain' });
    expect((await store.get('k1'))?.data).toMatchObject({ a: 2, note: 'plain' });
    await store.destroy('k1');
    expect(await store.update('k1', change({ a: 3, note: 'x\u0000y' }))).toBeNull();
  });

  // update / touch / get after destroy: the store contract (contract.test.ts).
  it('never resurrects a destroyed session through replace', async () => {
    await store.create('k1', record({}, { userId: 1 }));
    await store.destroy('k1');
    expect(await store.replace('k1', record().data, clock + 1000, clock)).toBe(false);
    expect(await store.get('k1')).toBeNull();
  });

  it('lets a logout that commits while an update waits win', async () => {
    await store.create('k1', record());
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`DELETE FROM sessions WHERE sid = 'k1'`);
      const pending = store.update('k1', change({ a: 1 }));
      await waitForLockWaiters(1);
      await client.query('COMMIT');
      expect(await pending).toBeNull();
    } finally {
      client.release();
    }
    expect(await store.get('k1')).toBeNull();
  });

  it('fills in defaults for rows written by connect-pg-simple (no metadata columns)', async () => {
    const raw = new PostgresSessionStore({
      pool: db.pool,
      tableName: 'sessions',
      now: () => clock,
      idsHashed: false,
    });
    await db.pool.query(
      `INSERT INTO sessions (sid, sess, expire) VALUES ('raw', '{"cookie":{"originalMaxAge":null},"passport":{"user":5}}', to_timestamp($1::float8 / 1000))`,
      [T0 + 60_000],
    );
    expect(await raw.get('raw')).toEqual({
      data: { cookie: { originalMaxAge: null }, passport: { user: 5 } },
      expiresAt: T0 + 60_000,
      createdAt: T0,
      lastActiveAt: T0,
      userId: '5',
      version: 0,
      device: null,
    });
  });

  describe('legacy keys', () => {
    const insertLegacy = (sid: string, sess: object, idHashed = false) =>
      db.pool.query(
        `INSERT INTO sessions (sid, sess, expire, id_hashed) VALUES ($1, $2, to_timestamp($3::float8 / 1000), $4)`,
        [sid, JSON.stringify(sess), T0 + 60_000, idHashed],
      );

    it('keeps a raw-id row where it is, recording its storage key, so writes by key find it', async () => {
      await insertLegacy('raw-id', { cookie: { originalMaxAge: null }, userId: 'u1' });
      const r = await store.get('hashed', { legacyKey: 'raw-id' });
      expect(r).toMatchObject({ data: { userId: 'u1' }, userId: 'u1', createdAt: T0, lastActiveAt: T0 });
      // Still under the raw id, where connect-pg-simple looks (a rollback keeps the user).
      const { rows } = await db.pool.query('SELECT sid, id_hashed, key_hash, user_id FROM sessions');
      expect(rows).toEqual([{ sid: 'raw-id', id_hashed: false, key_hash: 'hashed', user_id: 'u1' }]);
      // pgsession's middleware only knows the key after the first read: every call finds the row.
      expect(await store.get('hashed')).toMatchObject({ data: { userId: 'u1' } });
      expect(await store.touch('hashed', T0 + 90_000, T0 + 1)).toBe(true);
      expect(await store.update('hashed', change({ n: 2 }, [], { userId: 'u1' }))).toMatchObject({
        data: { userId: 'u1', n: 2 },
      });
      expect((await store.listByUser('u1')).map((l) => l.key)).toEqual(['hashed']);
      expect(await store.remove('hashed')).toBe(true);
      expect((await db.pool.query('SELECT count(*)::int AS n FROM sessions')).rows[0].n).toBe(0);
    });

    it('prefers the hashed row and does not adopt an expired legacy row', async () => {
      await store.create('hashed', record({}, { which: 'new' }));
      await insertLegacy('raw-id', { cookie: {}, which: 'old' });
      expect((await store.get('hashed', { legacyKey: 'raw-id' }))?.data.which).toBe('new');
      await db.pool.query('TRUNCATE sessions');
      await insertLegacy('raw-id', { cookie: {} });
      clock = T0 + 60_001;
      expect(await store.get('hashed', { legacyKey: 'raw-id' })).toBeNull();
      expect((await db.pool.query('SELECT sid FROM sessions')).rows).toEqual([{ sid: 'raw-id' }]);
    });

    it('does not accept a stored hash presented as a raw id', async () => {
      // A leaked table gives away hashes; sending one as a cookie must not log anyone in.
      await insertLegacy('the-hash', { cookie: {} }, true);
      expect(await store.get('hash-of-the-hash', { legacyKey: 'the-hash' })).toBeNull();
      expect((await db.pool.query('SELECT sid FROM sessions')).rows).toEqual([{ sid: 'the-hash' }]);
    });

    it('never accepts a stored hash as a raw id: neither a hashed row’s sid nor a recorded key_hash', async () => {
      await insertLegacy('raw-id', { cookie: {}, who: 'legacy' });
      await store.get('hashed', { legacyKey: 'raw-id' }); // records key_hash = 'hashed'
      await store.create('stored-hash', record({}, { who: 'new' }));
      // Whatever a leaked table shows (`hashed`, `stored-hash`), sent as a cookie id, finds nothing.
      expect(await store.get(hashId('hashed'), { legacyKey: 'hashed' })).toBeNull();
      expect(await store.get(hashId('stored-hash'), { legacyKey: 'stored-hash' })).toBeNull();
      const raw = new PostgresSessionStore({
        pool: db.pool,
        tableName: 'sessions',
        idsHashed: false,
        now: () => clock,
      });
      try {
        expect(await raw.get('hashed')).toBeNull();
        expect(await raw.get('stored-hash')).toBeNull();
        // …while the raw id itself, and the hash route, still work in raw mode.
        expect(await raw.get('raw-id')).toMatchObject({ data: { who: 'legacy' } });
        // A middleware that hashes over a store told ids are raw is a configuration error.
        await expect(raw.get('k', { legacyKey: 'id' })).rejects.toThrow(/hashIds: false on both/);
      } finally {
        await raw.close();
      }
    });

    it('serves both of two concurrent first reads of a legacy session', async () => {
      await insertLegacy('raw-id', { cookie: {}, n: 1 });
      const results = await whileRowLocked('raw-id', 2, () =>
        Promise.all([
          store.get('hashed', { legacyKey: 'raw-id' }),
          store.get('hashed', { legacyKey: 'raw-id' }),
        ]),
      );
      expect(results.map((r) => r?.data.n)).toEqual([1, 1]);
      expect((await db.pool.query('SELECT sid, key_hash FROM sessions')).rows).toEqual([
        { sid: 'raw-id', key_hash: 'hashed' },
      ]);
    });
  });

  it('upsert inserts new ids and overwrites existing rows; replace never inserts', async () => {
    await store.upsert('k1', record({}, { n: 1 }));
    await store.upsert('k1', record({}, { n: 2 }));
    expect(await store.get('k1')).toMatchObject({ data: { n: 2 }, version: 1 });
    expect(await store.replace('k1', record({}, { m: 1 }).data, clock + 1000, clock)).toBe(true);
    const r = await store.get('k1');
    expect(r?.data).toEqual({ cookie: expect.any(Object), m: 1 });
    expect(await store.replace('k2', record().data, clock + 1000, clock)).toBe(false);
    expect(await store.get('k2')).toBeNull();
  });

  it('all, count, keys and clear', async () => {
    await store.create('a', record({}, { n: 1 }));
    await store.create('b', record({}, { n: 2 }));
    expect(await store.count()).toBe(2);
    expect((await store.keys()).sort((x, y) => x.key.localeCompare(y.key))).toEqual([
      { key: 'a', rawId: undefined },
      { key: 'b', rawId: undefined },
    ]);
    expect((await store.all()).sort((x, y) => x.key.localeCompare(y.key)).map((s) => s.data.n)).toEqual([
      1, 2,
    ]);
    await store.clear();
    expect(await store.count()).toBe(0);
  });

  it('refuses data JSON cannot represent', async () => {
    await expect(store.create('k1', record({}, { big: 10n }))).rejects.toBeInstanceOf(SerializationError);
  });

  it('rejects on database faults instead of reporting "no session"', async () => {
    const badPool = new pg.Pool({ connectionString: `${db.url}_missing`, connectionTimeoutMillis: 2000 });
    const broken = new PostgresSessionStore({ pool: badPool });
    try {
      await expect(broken.get('k1')).rejects.toThrow();
      await expect(broken.get('k1', { legacyKey: 'raw' })).rejects.toThrow();
      await expect(broken.touch('k1', 1, 1)).rejects.toThrow();
    } finally {
      await broken.close();
      await badPool.end();
    }
    // A table dropped under a running store is a fault too, not an empty result.
    const other = new PostgresSessionStore({ pool: db.pool, tableName: 'dropped' });
    await other.ready();
    await db.pool.query('DROP TABLE dropped');
    await expect(other.get('k1')).rejects.toMatchObject({ code: '42P01' });
  });

  it('retries schema setup after a failure instead of staying broken', async () => {
    const lazy = new PostgresSessionStore({ pool: db.pool, tableName: 'later', createTableIfMissing: false });
    await expect(lazy.get('k')).rejects.toThrow(/does not exist/);
    await db.pool.query(
      'CREATE TABLE later (sid varchar PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL)',
    );
    expect(await lazy.get('k')).toBeNull();
  });
});

describe('cache invalidation notifications', () => {
  it('announces changed and deleted keys in the same statement, never raw ids, and not touches', async () => {
    const channel = 'pgsession_test_invalidate';
    const notifying = new PostgresSessionStore({
      pool: db.pool,
      tableName: 'sessions',
      now: () => clock,
      notify: { channel, nodeId: 'node-a' },
    });
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    const payloads: string[] = [];
    listener.on('notification', (msg) => payloads.push(msg.payload ?? ''));
    await listener.query(`LISTEN ${channel}`);
    const drain = async (): Promise<string[]> => {
      // A round trip on the listening connection delivers what was sent before it.
      await listener.query('SELECT 1');
      return payloads.splice(0);
    };
    try {
      await notifying.create('k1', record({ userId: 'u' }, { n: 1 }));
      expect(await drain()).toEqual([]);
      expect(await notifying.update('k1', change({ n: 2 }, [], { userId: 'u' }))).toMatchObject({
        data: { n: 2 },
      });
      expect(await drain()).toEqual(['node-a:k1']);
      expect(await notifying.touch('k1', clock + 10_000, clock)).toBe(true);
      expect(await drain()).toEqual([]);
      expect(await notifying.replace('k1', record().data, clock + 10_000, clock)).toBe(true);
      expect(await notifying.replace('missing', record().data, clock + 10_000, clock)).toBe(false);
      await notifying.upsert('k1', record({ userId: 'u' }));
      expect(await drain()).toEqual(['node-a:k1', 'node-a:k1']);
      await notifying.create('k2', record({ userId: 'u' }));
      expect(await notifying.destroyByUser('u', 'k1')).toBe(1);
      expect(await drain()).toEqual(['node-a:k2']);
      await notifying.destroy('k1');
      await notifying.destroy('k1'); // nothing deleted, nothing announced
      expect(await drain()).toEqual(['node-a:k1']);
      // A row under a raw id is announced as "everything", so the raw id never leaves the database.
      await db.pool.query(
        `INSERT INTO sessions (sid, sess, expire) VALUES ('raw-id', '{"cookie":{}}', to_timestamp($1::float8 / 1000))`,
        [clock + 60_000],
      );
      await notifying.destroy('hashed', { legacyKey: 'raw-id' });
      expect(await drain()).toEqual(['node-a:*']);
      await notifying.create('k3', record());
      await notifying.clear();
      expect(await drain()).toEqual(['node-a:*']);
    } finally {
      await listener.end();
      await notifying.close();
    }
  });
});
