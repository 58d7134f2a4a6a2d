/**
 * List-then-revoke with the express-session store API: the keys `all()` and `ids()` return are
 * accepted by `get`, `touch` and `destroy`; `destroy` of a listed key that names nothing says so;
 * and a hash read from the table is never accepted in place of a session id.
 */
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import express from 'express';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { PgStore, UnknownSessionKeyError } from '../../src/stores/postgres/pg-store.js';
import { kSessionStore, type SessionJSON } from '../../src/stores/types.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';

const require = createRequire(import.meta.url);
const session = require('express-session') as (options: Record<string, unknown>) => express.RequestHandler;

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

const sess = (n: number, ms = 60_000): SessionJSON => ({
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

describe('keys from all() and ids()', () => {
  it('are accepted by get, touch and destroy', async () => {
    await store.set('one', sess(1));
    await store.set('two', sess(2));
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
    await store.touch(first, sess(n as number, 3_600_000));
    expect(await expireOf(hashId(n === 1 ? 'one' : 'two'))).toBeGreaterThan(before + 3_000_000);
    await store.destroy(first);
    expect(await store.get(first)).toBeNull();
    expect(await store.length()).toBe(1);
    expect(Object.keys(await store.all())).toEqual([second]);
  });

  it('destroy of a listed key that is gone says so (ENOENT), with callbacks too', async () => {
    await store.set('gone', sess(1));
    const [key] = (await store.ids()) as [string];
    await store.destroy(key);
    await expect(store.destroy(key)).rejects.toBeInstanceOf(UnknownSessionKeyError);
    const err = await new Promise<unknown>((resolve) => store.destroy(key, resolve));
    expect(err).toMatchObject({ code: 'ENOENT', message: expect.stringMatching(/no session with this key/) });
    // A session id that names nothing is still fine, as express-session's logout expects.
    await expect(store.destroy('never-existed')).resolves.toBeUndefined();
  });

  it('a key with a tag this process did not make is refused, not silently ignored', async () => {
    await store.set('tagged', sess(1));
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
    await store.set('secret-id', sess(7));
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
