/**
 * Proves docs/migrating.md: an Express app on the REAL express-session + connect-pg-simple
 * (createTableIfMissing) logs users in and stores data; the same app code with only its imports
 * changed to pgsession serves the same cookies — still logged in, data intact, each row re-keyed
 * to the SHA-256 of its id on first use, the raw id gone from the table. Also the table upgrade
 * (extra nullable columns, connect-pg-simple still works on it) and both roll-back paths.
 */
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import pgsession from '../../src/index.js';
import pgsessionConnectPgSimple from '../../src/stores/postgres/connect-pg-simple.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';

const require = createRequire(import.meta.url);

// The two libraries the app is migrated from, loaded as their users load them.
type AnySession = (options: Record<string, unknown>) => express.RequestHandler;
type AnyFactory = (session: never) => new (options: Record<string, unknown>) => { close(): Promise<void> };
const expressSession = require('express-session') as AnySession;
const connectPgSimple = require('connect-pg-simple') as AnyFactory;

type Req = express.Request & {
  session: Record<string, unknown> & { regenerate(cb: (err?: unknown) => void): void };
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

describe('docs/migrating.md', () => {
  it('pgsession (ESM default export) carries express-session’s Store, so connectPgSimple(session) works', () => {
    // `import session from 'pgsession'; connectPgSimple(session)` — the step the guide prescribes.
    expect(typeof (pgsession as unknown as { Store?: unknown }).Store).toBe('function');
  });

  it('steps 1–3: same cookies, still logged in, data intact, rows re-keyed to the hash on first use', async () => {
    const { alice, bob } = await loginBefore('steps');
    const aliceId = rawId(alice.jar.get('sid')!);
    const bobId = rawId(bob.jar.get('sid')!);
    const { rows: legacy } = await db.pool.query<{ sid: string }>('SELECT sid FROM steps.session');
    expect(legacy.map((r) => r.sid).sort()).toEqual([aliceId, bobId].sort());

    const app = await newApp('steps');
    try {
      const a = moveTo(alice, app.url);
      expect(await me(a)).toEqual({ userId: 1, cart: ['book'], views: 2 });
      expect(await me(a)).toEqual({ userId: 1, cart: ['book'], views: 3 });
      // Alice's row now lives under the hash of her id; the raw id is gone. Bob's is untouched.
      const now = await rows('steps');
      expect(now).toContainEqual({ sid: hashId(aliceId), id_hashed: true });
      expect(now).toContainEqual({ sid: bobId, id_hashed: false });
      expect(now.map((r) => r.sid)).not.toContain(aliceId);
      // The cookie is the same one: no new Set-Cookie value for the same session.
      expect(a.jar.get('sid')).toBe(alice.jar.get('sid'));

      const b = moveTo(bob, app.url);
      expect(await me(b)).toEqual({ userId: 2, cart: ['book'], views: 1 });
      expect((await rows('steps')).map((r) => r.sid).sort()).toEqual([hashId(aliceId), hashId(bobId)].sort());
    } finally {
      await app.close();
    }
  });

  it('the table gains nullable/defaulted columns and indexes only; connect-pg-simple keeps working on it', async () => {
    const first = await loginBefore('upgraded');
    const app = await newApp('upgraded');
    try {
      // Upgraded on first use (or beforehand by `pgsession migrate`).
      expect(await me(moveTo(first.alice, app.url))).toMatchObject({ userId: 1 });
    } finally {
      await app.close();
    }
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
    ]);
    // connect-pg-simple on the upgraded table: logs a new user in and serves them.
    const { alice } = await loginBefore('upgraded');
    expect(alice.jar.has('sid')).toBe(true);
  });

  it('roll back after re-keying: users not yet seen by pgsession stay logged in, re-keyed ones log in again', async () => {
    const { alice, bob } = await loginBefore('rollback');
    const app = await newApp('rollback');
    try {
      expect(await me(moveTo(alice, app.url))).toMatchObject({ userId: 1 });
    } finally {
      await app.close();
    }
    const old = await oldApp('rollback');
    try {
      expect(await me(moveTo(bob, old.url))).toMatchObject({ userId: 2 });
      expect(await me(moveTo(alice, old.url))).toMatchObject({ userId: null });
    } finally {
      await old.close();
    }
  });

  it('the reversible path: with hashIds: false nothing is re-keyed, and rolling back logs nobody out', async () => {
    const { alice, bob } = await loginBefore('reversible');
    const aliceId = rawId(alice.jar.get('sid')!);
    const app = await newApp('reversible', false);
    try {
      expect(await me(moveTo(alice, app.url))).toEqual({ userId: 1, cart: ['book'], views: 2 });
      expect(await rows('reversible')).toContainEqual({ sid: aliceId, id_hashed: false });
    } finally {
      await app.close();
    }
    const old = await oldApp('reversible');
    try {
      expect(await me(moveTo(alice, old.url))).toEqual({ userId: 1, cart: ['book'], views: 3 });
      expect(await me(moveTo(bob, old.url))).toMatchObject({ userId: 2 });
    } finally {
      await old.close();
    }
    // Later, the default (hashIds on): re-keyed on first use, as in steps 1–3.
    const hashed = await newApp('reversible');
    try {
      expect(await me(moveTo(alice, hashed.url))).toEqual({ userId: 1, cart: ['book'], views: 4 });
      expect(await rows('reversible')).toContainEqual({ sid: hashId(aliceId), id_hashed: true });
    } finally {
      await hashed.close();
    }
  });
});
