import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import express from 'express';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { kSessionStore, type SessionJSON } from '../../src/core/store.js';
import { UnknownSessionKeyError } from '../../src/stores/admin-keys.js';
import { CachedPostgresSessionStore } from '../../src/stores/cache/postgres.js';
import { Store } from '../../src/stores/connect-store.js';
import { PgStore } from '../../src/stores/postgres/pg-store.js';
import { PostgresSessionStore } from '../../src/stores/postgres/session-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';

// express-session ships no types here: load it with the little typing these tests need.
const require = createRequire(import.meta.url);
const session = require('express-session') as ((
  options: Record<string, unknown>,
) => express.RequestHandler) & {
  Store: new () => object;
};

type Req = express.Request & {
  session: Record<string, unknown> & { destroy(cb: (err?: unknown) => void): void };
};

let db: TestDatabase;
let store: PgStore;

beforeAll(async () => {
  db = await createTestDatabase();
  store = new PgStore({ pool: db.pool, pruneSessionInterval: false });
  await store[kSessionStore].ready();
});

afterAll(async () => {
  await store?.close();
  await db?.drop();
});

beforeEach(async () => {
  await db.pool.query('TRUNCATE session');
});

/** The raw session id inside an express-session cookie value (`s:<id>.<signature>`, URL-encoded). */
function rawSid(cookieValue: string): string {
  const decoded = decodeURIComponent(cookieValue);
  return decoded.slice(2, decoded.lastIndexOf('.'));
}

async function startApp(
  sessionStore: object,
  extra: Record<string, unknown> = {},
): Promise<{ url: string; close(): Promise<void> }> {
  const app = express();
  app.use(
    session({
      store: sessionStore,
      secret: 'a test secret',
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 7 * 24 * 3600 * 1000 },
      ...extra,
    }),
  );
  app.post('/login', (req, res) => {
    (req as Req).session.userId = 42;
    (req as Req).session.userRole = 'user';
    res.send('ok');
  });
  app.get('/me', (req, res) => {
    res.json({ userId: (req as Req).session.userId ?? null });
  });
  app.post('/logout', (req, res, next) => {
    (req as Req).session.destroy((err) => (err ? next(err) : res.send('bye')));
  });
  app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).send(`error: ${err.message}`);
  });
  const server: Server = app.listen(0, '127.0.0.1');
  return listen(server);
}

async function rows(): Promise<
  Array<{ sid: string; sess: SessionJSON; user_id: string | null; id_hashed: boolean }>
> {
  return (await db.pool.query('SELECT sid, sess, user_id, id_hashed FROM session')).rows;
}

function cookieJSON(expires: Date | null): SessionJSON['cookie'] {
  return { originalMaxAge: null, expires: expires?.toISOString() ?? null, httpOnly: true, path: '/' };
}

describe('PgStore with express-session', () => {
  it('stores a login under the hash of the id; the raw id never reaches the table', async () => {
    const app = await startApp(store);
    try {
      const alice = new Client(app.url);
      // Read the bodies: express-session finishes the response only after the store's save.
      expect(await (await alice.post('/login')).text()).toBe('ok');
      const sid = rawSid(alice.jar.get('connect.sid')!);
      const stored = await rows();
      expect(stored).toEqual([
        { sid: hashId(sid), sess: expect.objectContaining({ userId: 42 }), user_id: '42', id_hashed: true },
      ]);
      const { rows: leaks } = await db.pool.query(
        `SELECT 1 FROM session s WHERE s::text LIKE '%' || $1 || '%'`,
        [sid],
      );
      expect(leaks).toEqual([]);

      expect(await (await alice.get('/me')).json()).toEqual({ userId: 42 });
      expect(await (await alice.post('/logout')).text()).toBe('bye');
      expect(await rows()).toEqual([]);
      expect(await (await alice.get('/me')).json()).toEqual({ userId: null });
    } finally {
      await app.close();
    }
  });

  it('touches (expire only) when the session is unchanged, and extends it with rolling', async () => {
    const app = await startApp(store, { rolling: true });
    try {
      const alice = new Client(app.url);
      await (await alice.post('/login')).text();
      const key = hashId(rawSid(alice.jar.get('connect.sid')!));
      await db.pool.query(
        `UPDATE session SET expire = expire - interval '1 day', version = 5 WHERE sid = $1`,
        [key],
      );
      const before = (await db.pool.query('SELECT expire, sess FROM session WHERE sid = $1', [key])).rows[0];
      await (await alice.get('/me')).text();
      const after = (await db.pool.query('SELECT expire, sess, version FROM session WHERE sid = $1', [key]))
        .rows[0];
      expect(after.expire.getTime()).toBeGreaterThan(before.expire.getTime());
      expect(after.version).toBe(5); // touch never rewrites sess, so the version stays
    } finally {
      await app.close();
    }
  });
});

describe('PgStore API', () => {
  it('is an express-session Store with the engine face attached', () => {
    expect(store).toBeInstanceOf(Store);
    // The engine face: the table, behind the session cache (which wraps it, see cache-pg.test.ts).
    expect(store[kSessionStore]).toBeInstanceOf(CachedPostgresSessionStore);
    expect((store[kSessionStore] as CachedPostgresSessionStore).table).toBeInstanceOf(PostgresSessionStore);
    expect(store.hashIds).toBe(true);
    expect(typeof store.regenerate).toBe('function');
    expect(typeof store.createSession).toBe('function');
  });

  it('supports callbacks and promises', async () => {
    const sess = { cookie: cookieJSON(new Date(Date.now() + 60_000)), n: 1 };
    await new Promise<void>((resolve, reject) =>
      store.set('sid-1', sess, (err) => (err ? reject(err) : resolve())),
    );
    const viaCallback = await new Promise<SessionJSON | null | undefined>((resolve, reject) =>
      store.get('sid-1', (err, s) => (err ? reject(err) : resolve(s))),
    );
    expect(viaCallback).toEqual(sess);
    expect(await store.get('sid-1')).toEqual(sess);
    expect(await store.get('nope')).toBeNull();
    expect(await store.length()).toBe(1);
    // Listed by a key that is not the stored hash (see the admin-key tests), once.
    const ids = await store.ids();
    expect(ids).toHaveLength(1);
    expect(ids[0]).not.toBe(hashId('sid-1'));
    expect(await store.all()).toEqual({ [ids[0]!]: sess });
    await store.touch('sid-1', sess);
    await store.destroy('sid-1');
    expect(await store.length()).toBe(0);
    await store.set('sid-2', sess);
    await new Promise<void>((resolve) => store.clear(() => resolve()));
    expect(await store.length()).toBe(0);
  });

  it('computes expire like connect-pg-simple: cookie expiry, else ttl, else one day', async () => {
    let now = Date.UTC(2032, 0, 1);
    const timed = new PgStore({ pool: db.pool, pruneSessionInterval: false, now: () => now, ttl: 60 });
    const expiryOf = async (sid: string) => (await timed[kSessionStore].get(hashId(sid)))?.expiresAt;
    await timed.set('a', { cookie: cookieJSON(new Date(now + 5000)) });
    expect(await expiryOf('a')).toBe(now + 5000);
    await timed.set('b', { cookie: cookieJSON(null) });
    expect(await expiryOf('b')).toBe(now + 60_000);
    const dayStore = new PgStore({ pool: db.pool, pruneSessionInterval: false, now: () => now });
    await dayStore.set('c', { cookie: cookieJSON(null) });
    expect(await expiryOf('c')).toBe(now + 86_400_000);
    // Expired sessions are never returned.
    now += 5001;
    expect(await timed.get('a')).toBeNull();
    await timed.close();
    await dayStore.close();
  });

  it('does not resurrect a session destroyed while a request that loaded it was running', async () => {
    const sess = { cookie: cookieJSON(new Date(Date.now() + 60_000)), userId: 1 };
    await store.set('sid-3', sess);
    // Server A loads the session; server B (another store instance) logs the user out.
    const serverA = new PgStore({ pool: db.pool, pruneSessionInterval: false });
    const serverB = new PgStore({ pool: db.pool, pruneSessionInterval: false });
    expect(await serverA.get('sid-3')).toEqual(sess);
    await serverB.destroy('sid-3');
    // Server A's request ends and express-session saves: UPDATE-only, nothing comes back.
    await serverA.set('sid-3', { ...sess, extra: true });
    expect(await rows()).toEqual([]);
    // Same when the logout happened in the same process.
    await store.set('sid-4', sess);
    expect(await store.get('sid-4')).toEqual(sess);
    await store.destroy('sid-4');
    await store.set('sid-4', sess);
    expect(await rows()).toEqual([]);
    await serverA.close();
    await serverB.close();
  });

  it('touch changes expire only, never sess', async () => {
    const sess = { cookie: cookieJSON(new Date(Date.now() + 60_000)), n: 1 };
    // (A fresh id: the shared store remembers ids it has seen, and saves those UPDATE-only.)
    await store.set('sid-5', sess);
    await db.pool.query(`UPDATE session SET sess = '{"cookie":{},"n":2}' WHERE sid = $1`, [hashId('sid-5')]);
    const later = { ...sess, cookie: cookieJSON(new Date(Date.now() + 120_000)), n: 99 };
    await store.touch('sid-5', later);
    const r = await store[kSessionStore].get(hashId('sid-5'));
    expect(r?.data.n).toBe(2);
    expect(r?.expiresAt).toBe(new Date(later.cookie.expires!).getTime());
    // disableTouch makes it a no-op.
    const noTouch = new PgStore({ pool: db.pool, disableTouch: true, pruneSessionInterval: false });
    await noTouch.touch('sid-5', { ...sess, cookie: cookieJSON(new Date(Date.now() + 999_000)) });
    expect((await store[kSessionStore].get(hashId('sid-5')))?.expiresAt).toBe(r?.expiresAt);
    await noTouch.close();
  });

  it('reads a row connect-pg-simple stored under the raw id, and leaves it there', async () => {
    await db.pool.query(
      `INSERT INTO session (sid, sess, expire) VALUES ('raw-sid', '{"cookie":{"originalMaxAge":null},"userId":7}', now()::timestamp + interval '1 hour')`,
    );
    expect(await store.get('raw-sid')).toMatchObject({ userId: 7 });
    // Where connect-pg-simple reads it (until `pgsession migrate --finish`), with its storage key.
    expect(await rows()).toEqual([
      { sid: 'raw-sid', sess: expect.any(Object), user_id: '7', id_hashed: false },
    ]);
    const { rows: keyed } = await db.pool.query('SELECT key_hash FROM session');
    expect(keyed).toEqual([{ key_hash: hashId('raw-sid') }]);
    // Its key from ids() is the id itself: the row is stored under it anyway.
    expect(await store.ids()).toEqual(['raw-sid']);
  });

  it('keeps raw ids with hashIds: false', async () => {
    const raw = new PgStore({ pool: db.pool, hashIds: false, pruneSessionInterval: false });
    await raw.set('plain', { cookie: cookieJSON(null) });
    expect(await rows()).toEqual([
      { sid: 'plain', sess: expect.any(Object), user_id: null, id_hashed: false },
    ]);
    expect(await raw.ids()).toEqual(['plain']);
    await raw.close();
  });

  it('passes database faults to the callback (and rejects without one)', async () => {
    const badPool = new pg.Pool({ connectionString: `${db.url}_missing` });
    const broken = new PgStore({ pool: badPool, pruneSessionInterval: false });
    const err = await new Promise((resolve) => broken.get('x', (e) => resolve(e)));
    expect(err).toBeInstanceOf(Error);
    await expect(broken.set('x', { cookie: cookieJSON(null) })).rejects.toThrow();
    await broken.close();
    await badPool.end();
  });

  it('creates and ends its own pool from conString', async () => {
    const owning = new PgStore({ conString: db.url, tableName: 'own_pool' });
    expect(owning[kSessionStore].pruning).toBe(true);
    await owning.set('a', { cookie: cookieJSON(null) });
    expect(await owning.length()).toBe(1);
    await owning.close();
    expect(owning.closed).toBe(true);
    expect(owning[kSessionStore].pool.ended).toBe(true);
    expect(owning[kSessionStore].pruning).toBe(false);
  });
});

const numbered = (n: number, ms = 60_000): SessionJSON => ({
  cookie: { originalMaxAge: ms, expires: new Date(Date.now() + ms).toISOString() },
  n,
});

async function expireOf(sid: string): Promise<number> {
  const { rows } = await db.pool.query(
    'SELECT round(extract(epoch FROM expire::timestamptz) * 1000)::float8 AS ms FROM session WHERE sid = $1 OR key_hash = $1',
    [sid],
  );
  return rows[0].ms as number;
}

describe('keys from all() and ids() (list-then-revoke)', () => {
  it('are accepted by get, touch and destroy', async () => {
    await store.set('one', numbered(1));
    await store.set('two', numbered(2));
    const all = await store.all();
    const keys = Object.keys(all);
    expect(keys.sort()).toEqual((await store.ids()).sort());
    expect(
      Object.values(all)
        .map((s) => s.n)
        .sort(),
    ).toEqual([1, 2]);
    const [first, second] = keys as [string, string];
    const n = all[first]!.n;
    // Not the stored hash: a value read from the table is not a key (see below).
    expect([hashId('one'), hashId('two')]).not.toContain(first);

    expect(await store.get(first)).toMatchObject({ n });
    const before = await expireOf(hashId(n === 1 ? 'one' : 'two'));
    await store.touch(first, numbered(n as number, 3_600_000));
    expect(await expireOf(hashId(n === 1 ? 'one' : 'two'))).toBeGreaterThan(before + 3_000_000);
    await store.destroy(first);
    expect(await store.get(first)).toBeNull();
    expect(await store.length()).toBe(1);
    expect(Object.keys(await store.all())).toEqual([second]);
  });

  it('destroy of a listed key that is gone says so (ENOENT), with callbacks too', async () => {
    await store.set('gone', numbered(1));
    const [key] = (await store.ids()) as [string];
    await store.destroy(key);
    await expect(store.destroy(key)).rejects.toBeInstanceOf(UnknownSessionKeyError);
    const err = await new Promise<unknown>((resolve) => store.destroy(key, resolve));
    expect(err).toMatchObject({ code: 'ENOENT', message: expect.stringMatching(/no session with this key/) });
    // A session id that names nothing is still fine, as express-session's logout expects.
    await expect(store.destroy('never-existed')).resolves.toBeUndefined();
  });

  it('a key with a tag this process did not make is refused, not silently ignored', async () => {
    await store.set('tagged', numbered(1));
    const [key] = (await store.ids()) as [string];
    const forged = `${key.slice(0, 44)}${key.at(44) === 'A' ? 'B' : 'A'}${key.slice(45)}`;
    await expect(store.destroy(forged)).rejects.toMatchObject({
      code: 'ENOENT',
      message: expect.stringMatching(/process that listed them/),
    });
    expect(await store.get(forged)).toBeNull();
    expect(await store.length()).toBe(1);
  });

  it('a hash read from the table never works as a session id', async () => {
    await store.set('secret-id', numbered(7));
    const { rows } = await db.pool.query<{ sid: string }>('SELECT sid FROM session');
    expect(rows).toEqual([{ sid: hashId('secret-id') }]);
    expect(await store.get(rows[0]!.sid)).toBeNull();
    await store.destroy(rows[0]!.sid); // treated as an id: nothing of that id to delete
    expect(await store.length()).toBe(1);
  });

  it('a row connect-pg-simple stored under its raw id is listed by that id', async () => {
    await db.pool.query(
      `INSERT INTO session (sid, sess, expire) VALUES ('legacy-id', '{"cookie":{},"n":3}', now()::timestamp + interval '1 hour')`,
    );
    expect(await store.ids()).toEqual(['legacy-id']);
    expect(await store.get('legacy-id')).toMatchObject({ n: 3 });
    await store.destroy('legacy-id');
    expect(await store.length()).toBe(0);
  });

  it('an admin page lists the sessions and revokes one: that browser is logged out, the other is not', async () => {
    const app = express();
    app.use(session({ store, secret: 'admin page secret', resave: false, saveUninitialized: false }));
    app.post('/login', (req, res) => {
      (req as unknown as { session: Record<string, unknown> }).session.user = req.query.user;
      res.send('ok');
    });
    app.get('/me', (req, res) => {
      res.json({ user: (req as unknown as { session: Record<string, unknown> }).session.user ?? null });
    });
    app.get('/admin/sessions', async (_req, res) => {
      const all = await store.all();
      res.json(Object.entries(all).map(([key, s]) => ({ key, user: s.user })));
    });
    app.post('/admin/revoke', async (req, res) => {
      try {
        await store.destroy(String(req.query.key));
        res.send('revoked');
      } catch (err) {
        res.status(404).send((err as Error).message);
      }
    });
    const server: Server = app.listen(0, '127.0.0.1');
    const running = await listen(server);
    try {
      const alice = new Client(running.url);
      const bob = new Client(running.url);
      await (await alice.post('/login?user=alice')).text();
      await (await bob.post('/login?user=bob')).text();
      const admin = new Client(running.url);
      const listed = (await (await admin.get('/admin/sessions')).json()) as Array<{
        key: string;
        user: string;
      }>;
      const aliceKey = listed.find((s) => s.user === 'alice')!.key;
      const revoked = await admin.post(`/admin/revoke?key=${encodeURIComponent(aliceKey)}`);
      expect(await revoked.text()).toBe('revoked');
      expect(await (await alice.get('/me')).json()).toEqual({ user: null });
      expect(await (await bob.get('/me')).json()).toEqual({ user: 'bob' });
      const again = await admin.post(`/admin/revoke?key=${encodeURIComponent(aliceKey)}`);
      expect(again.status).toBe(404);
    } finally {
      await running.close();
    }
  });
});
