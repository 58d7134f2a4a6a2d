/**
 * Per-session lifetime (issue 11 item 7): the classic "remember me" checkbox. The app sets a
 * short global `cookie.maxAge` and, when the box is ticked, `req.session.cookie.maxAge = 30 days`
 * for that session; an app may also make a session a browser-session one
 * (`req.session.cookie.expires = false`). A session's own cookie lifetime governs its row's
 * expiry and the server-side idle check, exactly as the cookie does, so pgsession keeps exactly
 * the users that the real express-session + connect-pg-simple keep: the same app runs on both,
 * on the same clock (Date faked), and must log in and out the same users.
 */
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import express from 'express';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import pgsession, { MemoryStore } from '../../src/index.js';
import pgsessionConnectPgSimple from '../../src/stores/postgres/connect-pg-simple.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';

const require = createRequire(import.meta.url);
type AnySession = (options: Record<string, unknown>) => express.RequestHandler;
type AnyFactory = (session: never) => new (options: Record<string, unknown>) => { close(): Promise<void> };
const expressSession = require('express-session') as AnySession;
const connectPgSimple = require('connect-pg-simple') as AnyFactory;

const T0 = Date.UTC(2030, 0, 1);
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** The app's global cookie lifetime: short. */
const SHORT = 30 * MINUTE;
/** "Remember me". */
const REMEMBER = 30 * DAY;

type Req = express.Request & {
  session: Record<string, unknown> & {
    regenerate(cb: (err?: unknown) => void): void;
    cookie: { maxAge: number | null };
  };
};

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});
afterEach(() => {
  vi.useRealTimers();
});

type Impl =
  | 'express-session + connect-pg-simple'
  | 'pgsession + pgsession/connect-pg-simple'
  | 'pgsession + MemoryStore';
const IMPLS: Impl[] = [
  'express-session + connect-pg-simple',
  'pgsession + pgsession/connect-pg-simple',
  'pgsession + MemoryStore',
];

/** The app, written once: a login form with a "remember me" box (and a "this browser session only" one). */
async function startApp(impl: Impl, schemaName: string) {
  await db.pool.query(`CREATE SCHEMA IF NOT EXISTS "${schemaName}"`);
  const session = impl.startsWith('express-session') ? expressSession : (pgsession as unknown as AnySession);
  let store: { close(): Promise<void> };
  if (impl === 'pgsession + MemoryStore') store = new MemoryStore();
  else {
    const factory = impl.startsWith('express-session')
      ? connectPgSimple
      : (pgsessionConnectPgSimple as unknown as AnyFactory);
    const PgSession = factory(session as never);
    store = new PgSession({
      pool: db.pool,
      schemaName,
      tableName: 'session',
      createTableIfMissing: true,
      pruneSessionInterval: false,
    });
  }
  const app = express();
  app.use(express.urlencoded({ extended: false }));
  app.use(
    session({
      store,
      secret: 'remember-me-test-secret-0123456789abcdef',
      name: 'sid',
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: SHORT, httpOnly: true, sameSite: 'lax' },
    }),
  );
  app.post('/login', (req, res, next) => {
    const r = req as Req;
    r.session.regenerate((err) => {
      if (err) return next(err);
      r.session.user = (req.body as { user: string }).user;
      const { remember } = req.body as { remember?: string };
      if (remember === 'on') r.session.cookie.maxAge = REMEMBER;
      // express-session's documented spelling of a browser-session cookie.
      if (remember === 'browser-session') (r.session.cookie as { expires: unknown }).expires = false;
      res.redirect('/');
    });
  });
  app.get('/me', (req, res) => res.json({ user: (req as Req).session.user ?? null }));
  const server: Server = app.listen(0, '127.0.0.1');
  const { url, close } = await listen(server);
  return {
    url,
    /** Whether the store is PostgreSQL (rows can be read). */
    stored: impl !== 'pgsession + MemoryStore',
    /** The `expire` column of the user's row, when the store is PostgreSQL. */
    async rowExpiry(user: string): Promise<number | null> {
      if (impl === 'pgsession + MemoryStore') return null;
      const { rows } = await db.pool.query(
        `SELECT expire FROM "${schemaName}".session WHERE sess->>'user' = $1`,
        [user],
      );
      return rows[0] ? new Date(rows[0].expire).getTime() : null;
    },
    close: async () => {
      await close();
      await store.close();
    },
  };
}

type App = Awaited<ReturnType<typeof startApp>>;

async function login(app: App | { url: string }, user: string, remember?: string) {
  const client = new Client(app.url);
  const res = await client.post('/login', { form: { user, ...(remember ? { remember } : {}) } });
  expect(res.status).toBe(302);
  // express-session answers before its store write completes (pgsession does not): wait for the
  // row, or the next request could race it.
  if ('rowExpiry' in app && app.stored) {
    for (let i = 0; i < 200 && (await app.rowExpiry(user)) === null; i++)
      await new Promise((r) => setTimeout(r, 10));
  }
  return client;
}
const who = async (c: Client) => ((await (await c.get('/me')).json()) as { user: string | null }).user;

describe.each(IMPLS)('"remember me" on %s', (impl) => {
  /** Run `steps` against the app on a faked clock starting at T0 (one schema per test and impl). */
  async function onClock(name: string, steps: (app: App) => Promise<void>) {
    vi.useFakeTimers({ toFake: ['Date'], now: T0 });
    const app = await startApp(impl, `${name}_${IMPLS.indexOf(impl)}`);
    try {
      await steps(app);
    } finally {
      await app.close();
    }
  }

  it('past the short global maxAge, the user who ticked the box stays logged in; the other does not', () =>
    onClock('remember', async (app) => {
      const ticked = await login(app, 'ticked', 'on');
      const unticked = await login(app, 'unticked');
      // The row lives as long as the session's own cookie, not the global maxAge.
      const tickedExpiry = await app.rowExpiry('ticked');
      const untickedExpiry = await app.rowExpiry('unticked');
      if (tickedExpiry !== null && untickedExpiry !== null) {
        expect(tickedExpiry).toBeGreaterThanOrEqual(T0 + REMEMBER - 1000);
        expect(untickedExpiry).toBeLessThan(T0 + SHORT + 2 * MINUTE);
      }
      vi.setSystemTime(T0 + 2 * HOUR);
      expect(await who(ticked)).toBe('ticked');
      expect(await who(unticked)).toBeNull();
      // 29 days without a visit: still within the remembered lifetime.
      vi.setSystemTime(T0 + 2 * HOUR + 29 * DAY);
      expect(await who(ticked)).toBe('ticked');
    }));

  it('a remembered session ends once idle for longer than its own lifetime', () =>
    onClock('remember_idle', async (app) => {
      const ticked = await login(app, 'ticked', 'on');
      vi.setSystemTime(T0 + REMEMBER + 2 * HOUR);
      expect(await who(ticked)).toBeNull();
    }));

  it("expires: false (a browser-session cookie) survives the short global maxAge, for a day of inactivity (connect-pg-simple's ttl)", () =>
    onClock('browser', async (app) => {
      const browser = await login(app, 'browser', 'browser-session');
      vi.setSystemTime(T0 + 2 * HOUR);
      expect(await who(browser)).toBe('browser');
      vi.setSystemTime(T0 + 2 * HOUR + 23 * HOUR);
      expect(await who(browser)).toBe('browser');
      vi.setSystemTime(T0 + 2 * HOUR + 23 * HOUR + 25 * HOUR);
      expect(await who(browser)).toBeNull();
    }));
});

describe('idleTimeout is the default, not a cap', () => {
  it('with an explicit idleTimeout, a session whose cookie says 30 days is kept 30 days; the others end after idleTimeout', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: T0 });
    const app = express();
    app.use(express.urlencoded({ extended: false }));
    app.use(
      pgsession({
        store: new MemoryStore(),
        secret: 'remember-me-test-secret-0123456789abcdef',
        name: 'sid',
        resave: false,
        saveUninitialized: false,
        idleTimeout: '15m',
      }),
    );
    app.post('/login', (req, res) => {
      const r = req as Req;
      r.session.user = (req.body as { user: string }).user;
      if ((req.body as { remember?: string }).remember === 'on') r.session.cookie.maxAge = REMEMBER;
      res.redirect('/');
    });
    app.get('/me', (req, res) => res.json({ user: (req as Req).session.user ?? null }));
    const server = await listen(app.listen(0, '127.0.0.1'));
    try {
      const ticked = await login(server, 'ticked', 'on');
      const unticked = await login(server, 'unticked');
      vi.setSystemTime(T0 + 20 * MINUTE);
      expect(await who(unticked)).toBeNull();
      vi.setSystemTime(T0 + 20 * DAY);
      expect(await who(ticked)).toBe('ticked');
    } finally {
      await server.close();
    }
  });
});
