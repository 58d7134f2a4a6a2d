/**
 * Proves docs/migrating.md: an Express app on the REAL express-session + connect-pg-simple
 * (createTableIfMissing) logs users in and stores data; the same app code with only its imports
 * changed to pgsession serves the same cookies — still logged in, data intact, rows left where
 * connect-pg-simple reads them — and switching back and forth (connect-pg-simple → pgsession →
 * connect-pg-simple → pgsession) logs out nobody, including users who first logged in under
 * pgsession, until `pgsession migrate --finish` (rows re-keyed to the hash, new ones hashed).
 * Also the table upgrade (extra nullable columns, connect-pg-simple still works on it), a rolling
 * deploy with both running, and `hashIds: false`.
 */
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import pgsession from '../../src/index.js';
import pgsessionConnectPgSimple from '../../src/stores/postgres/connect-pg-simple.js';
import { PostgresSessionStore } from '../../src/stores/postgres/session-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';

const require = createRequire(import.meta.url);

// The two libraries the app is migrated from, loaded as their users load them.
type AnySession = (options: Record<string, unknown>) => express.RequestHandler;
type AnyFactory = (session: never) => new (options: Record<string, unknown>) => { close(): Promise<void> };
const expressSession = require('express-session') as AnySession;
const connectPgSimple = require('connect-pg-simple') as AnyFactory;

type Req = express.Request & {
  session: Record<string, unknown> & {
    regenerate(cb: (err?: unknown) => void): void;
    destroy(cb: (err?: unknown) => void): void;
  };
};

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

/**
 * The application, written once. `session` and `connectPgSimple` are its two imports:
 * `require('express-session')` / `require('connect-pg-simple')` before the migration,
 * `pgsession` / `pgsession/connect-pg-simple` after.
 */
async function startApp(
  session: unknown,
  factory: unknown,
  config: { schemaName: string; hashIds?: false },
): Promise<{ url: string; close(): Promise<void> }> {
  const PgSession = (factory as AnyFactory)(session as never);
  const store = new PgSession({
    pool: db.pool,
    schemaName: config.schemaName,
    tableName: 'session',
    createTableIfMissing: true,
    pruneSessionInterval: false,
    ...(config.hashIds === false ? { hashIds: false } : {}),
  });
  const app = express();
  app.use(express.json());
  app.use(
    (session as AnySession)({
      store,
      secret: 'the-production-secret-kept-across-the-migration',
      name: 'sid',
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 7 * 24 * 60 * 60 * 1000, httpOnly: true, sameSite: 'lax' },
      ...(config.hashIds === false ? { hashIds: false } : {}),
    }),
  );
  app.post('/login', (req, res, next) => {
    const r = req as Req;
    r.session.regenerate((err) => {
      if (err) return next(err);
      r.session.userId = (req.body as { userId: number }).userId;
      r.session.cart = ['book'];
      res.send('ok');
    });
  });
  app.post('/logout', (req, res, next) => {
    (req as Req).session.destroy((err) => (err ? next(err) : res.send('bye')));
  });
  // Reads without writing: what this server sees of the session right now.
  app.get('/peek', (req, res) => {
    const s = (req as Req).session;
    res.json({ userId: s.userId ?? null, views: s.views ?? null });
  });
  app.get('/me', (req, res) => {
    const s = (req as Req).session;
    s.views = ((s.views as number | undefined) ?? 0) + 1;
    res.json({ userId: s.userId ?? null, cart: s.cart ?? null, views: s.views });
  });
  const server: Server = app.listen(0, '127.0.0.1');
  const { url, close } = await listen(server);
  return {
    url,
    close: async () => {
      await close();
      await store.close();
    },
  };
}

// One schema per scenario (connect-pg-simple names every table's index IDX_session_expire).
const oldApp = (schemaName: string) => startApp(expressSession, connectPgSimple, { schemaName });
const newApp = (schemaName: string, hashIds?: false) =>
  startApp(pgsession, pgsessionConnectPgSimple, hashIds === false ? { schemaName, hashIds } : { schemaName });

/** The raw session id inside a signed cookie value (`s:<id>.<signature>`, URL-encoded). */
function rawId(cookie: string): string {
  const value = decodeURIComponent(cookie);
  return value.slice(2, value.lastIndexOf('.'));
}

async function me(client: Client): Promise<unknown> {
  return (await client.get('/me')).json();
}

/** Log two users in on the express-session + connect-pg-simple app. */
async function loginBefore(schemaName: string): Promise<{ alice: Client; bob: Client }> {
  await db.pool.query(`CREATE SCHEMA IF NOT EXISTS "${schemaName}"`);
  const app = await oldApp(schemaName);
  try {
    const alice = new Client(app.url);
    const bob = new Client(app.url);
    expect(await (await alice.post('/login', { json: { userId: 1 } })).text()).toBe('ok');
    expect(await (await bob.post('/login', { json: { userId: 2 } })).text()).toBe('ok');
    expect(await me(alice)).toEqual({ userId: 1, cart: ['book'], views: 1 });
    return { alice, bob };
  } finally {
    await app.close();
  }
}

/** The same browser (cookie jar) pointed at another server. */
function moveTo(client: Client, url: string): Client {
  const moved = new Client(url);
  for (const [k, v] of client.jar) moved.jar.set(k, v);
  return moved;
}

async function rows(schemaName: string): Promise<Array<{ sid: string; id_hashed: boolean }>> {
  const { rows } = await db.pool.query<{ sid: string; id_hashed: boolean }>(
    `SELECT sid, id_hashed FROM "${schemaName}".session ORDER BY sid`,
  );
  return rows;
}

/** Log a new user in on a running app. */
async function logIn(url: string, userId: number): Promise<Client> {
  const client = new Client(url);
  expect(await (await client.post('/login', { json: { userId } })).text()).toBe('ok');
  return client;
}

/** Run `body` against a running app, then stop it (as a deploy would). */
async function deployed<T>(
  app: Promise<{ url: string; close(): Promise<void> }>,
  body: (url: string) => Promise<T>,
) {
  const running = await app;
  try {
    return await body(running.url);
  } finally {
    await running.close();
  }
}

/** `pgsession migrate --finish` on a table (the CLI calls this). */
async function finish(schemaName: string): Promise<number> {
  const store = new PostgresSessionStore({ pool: db.pool, schemaName, createTableIfMissing: false });
  try {
    return await store.rekey();
  } finally {
    await store.close();
  }
}

describe('docs/migrating.md', () => {
  it('pgsession (ESM default export) carries express-session’s Store, so connectPgSimple(session) works', () => {
    // `import session from 'pgsession'; connectPgSimple(session)` — the step the guide prescribes.
    expect(typeof (pgsession as unknown as { Store?: unknown }).Store).toBe('function');
  });

  it('the switch: same cookies, still logged in, data intact, rows left where connect-pg-simple reads them', async () => {
    const { alice, bob } = await loginBefore('steps');
    const aliceId = rawId(alice.jar.get('sid')!);
    const bobId = rawId(bob.jar.get('sid')!);
    const { rows: legacy } = await db.pool.query<{ sid: string }>('SELECT sid FROM steps.session');
    expect(legacy.map((r) => r.sid).sort()).toEqual([aliceId, bobId].sort());

    await deployed(newApp('steps'), async (url) => {
      const a = moveTo(alice, url);
      expect(await me(a)).toEqual({ userId: 1, cart: ['book'], views: 2 });
      expect(await me(a)).toEqual({ userId: 1, cart: ['book'], views: 3 });
      // Both rows are still under the raw ids; alice's has recorded its storage key.
      const { rows: now } = await db.pool.query(`SELECT sid, id_hashed, key_hash FROM steps.session`);
      expect(now).toContainEqual({ sid: aliceId, id_hashed: false, key_hash: hashId(aliceId) });
      expect(now).toContainEqual({ sid: bobId, id_hashed: false, key_hash: null });
      // The cookie is the same one: no new Set-Cookie value for the same session.
      expect(a.jar.get('sid')).toBe(alice.jar.get('sid'));
      expect(await me(moveTo(bob, url))).toEqual({ userId: 2, cart: ['book'], views: 1 });
      // Until `migrate --finish`, a session created by pgsession is stored as connect-pg-simple
      // stores it, with its storage key beside it.
      const carol = await logIn(url, 3);
      const carolId = rawId(carol.jar.get('sid')!);
      const { rows: after } = await db.pool.query(`SELECT sid, id_hashed, key_hash FROM steps.session`);
      expect(after).toContainEqual({ sid: carolId, id_hashed: false, key_hash: hashId(carolId) });
    });
  });

  it('the table gains nullable/defaulted columns and indexes only; connect-pg-simple keeps working on it', async () => {
    const first = await loginBefore('upgraded');
    await deployed(newApp('upgraded'), async (url) => {
      // Upgraded on first use (or beforehand by `pgsession migrate`).
      expect(await me(moveTo(first.alice, url))).toMatchObject({ userId: 1 });
    });
    const { rows: columns } = await db.pool.query<{ column_name: string; is_nullable: string }>(
      `SELECT column_name, is_nullable FROM information_schema.columns
        WHERE table_schema = 'upgraded' AND table_name = 'session' ORDER BY ordinal_position`,
    );
    expect(columns.map((c) => c.column_name)).toEqual([
      'sid',
      'sess',
      'expire',
      'user_id',
      'created_at',
      'last_active_at',
      'version',
      'id_hashed',
      'key_hash',
      'device',
    ]);
    // connect-pg-simple on the upgraded table: logs a new user in and serves them.
    const { alice } = await loginBefore('upgraded');
    expect(alice.jar.has('sid')).toBe(true);
  });

  it('connect-pg-simple → pgsession → connect-pg-simple → pgsession: nobody is logged out until --finish', async () => {
    await db.pool.query('CREATE SCHEMA IF NOT EXISTS roundtrip');
    // 1. connect-pg-simple: alice, bob and carol log in.
    const [alice, bob, carol] = await deployed(oldApp('roundtrip'), async (url) => {
      const users = [await logIn(url, 1), await logIn(url, 2), await logIn(url, 3)];
      expect(await me(users[0]!)).toEqual({ userId: 1, cart: ['book'], views: 1 });
      return users;
    });
    // 2. pgsession: alice keeps browsing, bob logs out.
    const dave = await deployed(newApp('roundtrip'), async (url) => {
      expect(await me(moveTo(alice!, url))).toEqual({ userId: 1, cart: ['book'], views: 2 });
      expect(await (await moveTo(bob!, url).post('/logout')).text()).toBe('bye');
      return logIn(url, 4);
    });
    // 3. Rolled back to connect-pg-simple: alice and carol are still logged in, with what
    //    pgsession wrote; bob's logout held; dave, who first logged in on pgsession, too (the
    //    switch is unfinished, so pgsession stored his session where connect-pg-simple looks);
    //    a new user (erin) logs in.
    const erin = await deployed(oldApp('roundtrip'), async (url) => {
      expect(await me(moveTo(alice!, url))).toEqual({ userId: 1, cart: ['book'], views: 3 });
      expect(await me(moveTo(carol!, url))).toEqual({ userId: 3, cart: ['book'], views: 1 });
      expect(await me(moveTo(bob!, url))).toMatchObject({ userId: null });
      expect(await me(moveTo(dave, url))).toEqual({ userId: 4, cart: ['book'], views: 1 });
      return logIn(url, 5);
    });
    // 4. pgsession again: everyone logged in under connect-pg-simple still is.
    await deployed(newApp('roundtrip'), async (url) => {
      expect(await me(moveTo(alice!, url))).toEqual({ userId: 1, cart: ['book'], views: 4 });
      expect(await me(moveTo(carol!, url))).toEqual({ userId: 3, cart: ['book'], views: 2 });
      expect(await me(moveTo(dave, url))).toEqual({ userId: 4, cart: ['book'], views: 2 });
      expect(await me(moveTo(erin, url))).toEqual({ userId: 5, cart: ['book'], views: 1 });
      expect(await me(moveTo(bob!, url))).toMatchObject({ userId: null });
    });
    // Once there is no going back: `pgsession migrate --finish` moves every row under the hash
    // of its id. pgsession serves everyone as before; no raw id is left in the table, and
    // sessions created from then on are stored under the hash only.
    expect(await finish('roundtrip')).toBeGreaterThanOrEqual(4);
    expect((await rows('roundtrip')).every((r) => r.id_hashed)).toBe(true);
    const ids = [alice!, carol!, dave, erin].map((c) => rawId(c.jar.get('sid')!));
    for (const id of ids) expect((await rows('roundtrip')).map((r) => r.sid)).not.toContain(id);
    const frank = await deployed(newApp('roundtrip'), async (url) => {
      expect(await me(moveTo(alice!, url))).toEqual({ userId: 1, cart: ['book'], views: 5 });
      expect(await me(moveTo(erin, url))).toEqual({ userId: 5, cart: ['book'], views: 2 });
      const created = await logIn(url, 6);
      expect(await rows('roundtrip')).toContainEqual({
        sid: hashId(rawId(created.jar.get('sid')!)),
        id_hashed: true,
      });
      return created;
    });
    expect((await rows('roundtrip')).every((r) => r.id_hashed)).toBe(true);
    // …and that is the step after which connect-pg-simple no longer finds them.
    await deployed(oldApp('roundtrip'), async (url) => {
      expect(await me(moveTo(carol!, url))).toMatchObject({ userId: null });
      expect(await me(moveTo(frank, url))).toMatchObject({ userId: null });
    });
  });

  it('while the switch is unfinished, pgsession stores new sessions where connect-pg-simple reads them, found by pgsession through its hash', async () => {
    const { alice } = await loginBefore('unfinished');
    const store = new PostgresSessionStore({
      pool: db.pool,
      schemaName: 'unfinished',
      createTableIfMissing: false,
    });
    try {
      expect(await store.keepsRawIds()).toBe(true);
      const dave = await deployed(newApp('unfinished'), (url) => logIn(url, 4));
      const id = rawId(dave.jar.get('sid')!);
      const { rows: stored } = await db.pool.query<{
        sid: string;
        id_hashed: boolean;
        key_hash: string | null;
      }>('SELECT sid, id_hashed, key_hash FROM unfinished.session WHERE sid = $1', [id]);
      expect(stored).toEqual([{ sid: id, id_hashed: false, key_hash: hashId(id) }]);
      // Nothing is stored under the hash alone: the row is one, found both ways.
      expect((await rows('unfinished')).map((r) => r.sid)).not.toContain(hashId(id));
      await deployed(oldApp('unfinished'), async (url) => {
        expect(await me(moveTo(dave, url))).toEqual({ userId: 4, cart: ['book'], views: 1 });
        expect(await me(moveTo(alice, url))).toEqual({ userId: 1, cart: ['book'], views: 2 });
      });
      expect(await finish('unfinished')).toBe(3); // alice, bob and dave
      expect(await store.keepsRawIds()).toBe(false);
    } finally {
      await store.close();
    }
  });

  it('a rolling deploy: old and new servers side by side serve, change and log out each other’s new sessions', async () => {
    await loginBefore('rolling');
    const [before, after] = await Promise.all([oldApp('rolling'), newApp('rolling')]);
    const peek = async (client: Client, url: string) => (await moveTo(client, url).get('/peek')).json();
    try {
      // Logged in on a new server, then served by an old one.
      const dave = await logIn(after.url, 4);
      expect(await peek(dave, after.url)).toEqual({ userId: 4, views: null });
      expect(await me(moveTo(dave, before.url))).toEqual({ userId: 4, cart: ['book'], views: 1 });
      // The old server's write reaches the new server's cache (the table's triggers announce it).
      await expect.poll(() => peek(dave, after.url), { timeout: 10_000 }).toEqual({ userId: 4, views: 1 });
      expect(await me(moveTo(dave, after.url))).toEqual({ userId: 4, cart: ['book'], views: 2 });
      expect(await me(moveTo(dave, before.url))).toEqual({ userId: 4, cart: ['book'], views: 3 });
      // Logged in on an old server: served by a new one.
      const erin = await logIn(before.url, 5);
      expect(await peek(erin, after.url)).toEqual({ userId: 5, views: null });
      // Logged out on an old server: the new server holds the logout too.
      expect(await (await moveTo(dave, before.url).post('/logout')).text()).toBe('bye');
      await expect
        .poll(() => peek(dave, after.url), { timeout: 10_000 })
        .toEqual({ userId: null, views: null });
    } finally {
      await Promise.all([before.close(), after.close()]);
    }
  });

  it('a table pgsession creates is never in a switch: new sessions are hashed from the start', async () => {
    await db.pool.query('CREATE SCHEMA IF NOT EXISTS fresh');
    const store = new PostgresSessionStore({ pool: db.pool, schemaName: 'fresh' });
    try {
      await store.ready();
      expect(await store.keepsRawIds()).toBe(false);
      const user = await deployed(newApp('fresh'), (url) => logIn(url, 7));
      expect(await rows('fresh')).toEqual([{ sid: hashId(rawId(user.jar.get('sid')!)), id_hashed: true }]);
    } finally {
      await store.close();
    }
  });

  it('hashIds: false: sessions created by pgsession are stored under their raw id and survive a rollback', async () => {
    const { alice } = await loginBefore('reversible');
    const dave = await deployed(newApp('reversible', false), async (url) => {
      expect(await me(moveTo(alice, url))).toEqual({ userId: 1, cart: ['book'], views: 2 });
      const created = await logIn(url, 4);
      // Stored under the raw id, as connect-pg-simple stores it.
      expect(await rows('reversible')).toContainEqual({
        sid: rawId(created.jar.get('sid')!),
        id_hashed: false,
      });
      return created;
    });
    await deployed(oldApp('reversible'), async (url) => {
      expect(await me(moveTo(alice, url))).toEqual({ userId: 1, cart: ['book'], views: 3 });
      expect(await me(moveTo(dave, url))).toEqual({ userId: 4, cart: ['book'], views: 1 });
    });
    // Later, the default (hashIds on) finds every row, however it is stored.
    await deployed(newApp('reversible'), async (url) => {
      expect(await me(moveTo(alice, url))).toEqual({ userId: 1, cart: ['book'], views: 4 });
      expect(await me(moveTo(dave, url))).toEqual({ userId: 4, cart: ['book'], views: 2 });
    });
  });
});
