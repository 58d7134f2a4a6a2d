/**
 * The packages express-session apps use, for real (issue 11: "what already works… keep it so"):
 * passport 0.7 + passport-local (login regenerates the session, logout, a restart keeps the
 * login), connect-flash and express-flash, csrf-sync and csrf-csrf, and `trust proxy` with
 * `secure: true` — each on Express 4 and 5, over pgsession's PostgreSQL store.
 *
 * The packages are loaded with `require`, as their users load them; the small shapes below are
 * what the tests use of their APIs.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import express5, { type Express, type NextFunction, type Request, type Response } from 'express';
import express4 from 'express4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import session, { PgStore } from '../../src/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';
import { SECRET } from './support.js';

const require = createRequire(import.meta.url);
type Handler = (req: Request, res: Response, next: NextFunction) => void;
type Done = (err: unknown, value?: unknown) => void;

interface Passport {
  use(strategy: unknown): void;
  serializeUser(fn: (user: User, done: Done) => void): void;
  deserializeUser(fn: (id: number, done: Done) => void): void;
  initialize(): Handler;
  session(): Handler;
  authenticate(name: string, options?: Record<string, unknown>): Handler;
}
type PassportCtor = new () => Passport;
type LocalStrategy = new (verify: (username: string, password: string, done: Done) => void) => unknown;
type PassportRequest = Request & {
  user?: User;
  logout(cb: (err?: unknown) => void): void;
  isAuthenticated(): boolean;
};
type FlashRequest = Request & { flash(type?: string, message?: string): string[] | Record<string, string[]> };
interface CsrfSync {
  csrfSynchronisedProtection: Handler;
  generateToken(req: Request): string;
}
interface DoubleCsrf {
  doubleCsrfProtection: Handler;
  generateCsrfToken(req: Request, res: Response): string;
}

const { Passport } = require('passport') as { Passport: PassportCtor };
const { Strategy: LocalStrategy } = require('passport-local') as { Strategy: LocalStrategy };
const connectFlash = require('connect-flash') as () => Handler;
const expressFlash = require('express-flash') as () => Handler;
const { csrfSync } = require('csrf-sync') as { csrfSync: () => CsrfSync };
const { doubleCsrf } = require('csrf-csrf') as {
  doubleCsrf: (options: Record<string, unknown>) => DoubleCsrf;
};
const cookieParser = require('cookie-parser') as () => Handler;

interface User {
  id: number;
  name: string;
}
const USERS: User[] = [{ id: 1, name: 'alice' }];

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

/** An Express app (4 or 5) with pgsession on PgStore in front of `routes`. */
async function start(version: 4 | 5, routes: (app: Express) => void, cookie: Record<string, unknown> = {}) {
  const store = new PgStore({ pool: db.pool, pruneSessionInterval: false });
  const app = (version === 4 ? (express4 as unknown as typeof express5) : express5)();
  app.use(express5.urlencoded({ extended: false }));
  app.use(
    session({
      store,
      secret: SECRET,
      name: 'sid',
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 3_600_000, httpOnly: true, sameSite: 'lax', ...cookie },
    }),
  );
  routes(app);
  app.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    res.status(err.status ?? 500).send(`error: ${err.message}`);
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

function passportApp(app: Express): void {
  const passport = new Passport();
  passport.use(
    new LocalStrategy((username, password, done) => {
      const user = USERS.find((u) => u.name === username);
      done(null, user && password === 'right' ? user : false);
    }),
  );
  passport.serializeUser((user, done) => done(null, user.id));
  passport.deserializeUser((id, done) => done(null, USERS.find((u) => u.id === id) ?? false));
  app.use(passport.initialize());
  app.use(passport.session());
  app.get('/visit', (req, res) => {
    req.session.visited = true;
    res.send(req.sessionID);
  });
  app.post('/login', passport.authenticate('local', { failureRedirect: '/login-failed' }), (req, res) =>
    res.send(req.sessionID),
  );
  app.get('/me', (req, res) => {
    const r = req as PassportRequest;
    res.json({
      user: r.isAuthenticated() ? (r.user?.name ?? null) : null,
      visited: req.session.visited ?? null,
    });
  });
  app.post('/logout', (req, res, next) =>
    (req as PassportRequest).logout((err) => (err ? next(err) : res.send('bye'))),
  );
}

describe.each([4, 5] as const)('Express %i', (version) => {
  it('passport 0.7 + passport-local: login regenerates the session, a restart keeps it, logout ends it', async () => {
    const first = await start(version, passportApp);
    const client = new Client(first.url);
    const before = await (await client.get('/visit')).text();
    const wrong = await client.post('/login', { form: { username: 'alice', password: 'wrong' } });
    expect(wrong.status).toBe(302);
    expect(wrong.headers.get('location')).toBe('/login-failed');
    const login = await client.post('/login', { form: { username: 'alice', password: 'right' } });
    expect(login.status).toBe(200);
    const after = await login.text();
    // passport 0.7 regenerates the session at login (fixation): a new id, the old one gone.
    expect(after).not.toBe(before);
    expect(await (await client.get('/me')).json()).toEqual({ user: 'alice', visited: null });
    const loggedIn = client.cookieHeader();
    await first.close();

    // A restart (a new process would do the same: a new middleware and store on the same table).
    const second = await start(version, passportApp);
    const again = new Client(second.url);
    const replay = (c: string) => fetch(`${second.url}/me`, { headers: { cookie: c } }).then((r) => r.json());
    expect(await replay(loggedIn)).toEqual({ user: 'alice', visited: null });
    again.jar.set('sid', loggedIn.slice('sid='.length));
    expect((await again.post('/logout')).status).toBe(200);
    expect(await (await again.get('/me')).json()).toEqual({ user: null, visited: null });
    // The logged-out cookie, replayed, is anonymous.
    expect(await replay(loggedIn)).toEqual({ user: null, visited: null });
    await second.close();
  });

  it('connect-flash: a message survives the redirect and is shown once', async () => {
    const app = await start(version, (a) => {
      a.use(connectFlash());
      a.post('/save', (req, res) => {
        (req as FlashRequest).flash('info', 'Saved.');
        res.redirect('/');
      });
      a.get('/', (req, res) => res.json((req as FlashRequest).flash('info')));
    });
    try {
      const client = new Client(app.url);
      expect((await client.post('/save')).status).toBe(302);
      expect(await (await client.get('/')).json()).toEqual(['Saved.']);
      expect(await (await client.get('/')).json()).toEqual([]);
    } finally {
      await app.close();
    }
  });

  it('express-flash: the messages reach the rendered view after the redirect', async () => {
    const views = mkdtempSync(path.join(tmpdir(), 'pgsession-flash-'));
    writeFileSync(path.join(views, 'page.flash'), '');
    const app = await start(version, (a) => {
      a.set('views', views);
      a.set('view engine', 'flash');
      a.engine('flash', (_file: string, locals: object, cb: (err: unknown, html?: string) => void) =>
        cb(null, JSON.stringify((locals as { messages?: unknown }).messages)),
      );
      a.use(expressFlash());
      a.post('/save', (req, res) => {
        (req as FlashRequest).flash('error', 'Try again.');
        res.redirect('/');
      });
      a.get('/', (_req, res) => res.render('page'));
    });
    try {
      const client = new Client(app.url);
      await client.post('/save');
      expect(await (await client.get('/')).json()).toEqual({ error: ['Try again.'] });
      expect(await (await client.get('/')).json()).toEqual({});
    } finally {
      await app.close();
    }
  });

  it('csrf-sync: the token lives in the session; a POST without it is refused', async () => {
    const { csrfSynchronisedProtection, generateToken } = csrfSync();
    const app = await start(version, (a) => {
      a.get('/form', (req, res) => res.send(generateToken(req)));
      a.post('/change', csrfSynchronisedProtection, (_req, res) => res.send('changed'));
    });
    try {
      const client = new Client(app.url);
      const token = await (await client.get('/form')).text();
      expect((await client.post('/change')).status).toBe(403);
      const ok = await client.post('/change', { headers: { 'x-csrf-token': token } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toBe('changed');
      // Another session's token is worth nothing here.
      const other = new Client(app.url);
      expect((await other.post('/change', { headers: { 'x-csrf-token': token } })).status).toBe(403);
    } finally {
      await app.close();
    }
  });

  it('csrf-csrf: the double-submit token is bound to the session id', async () => {
    const { doubleCsrfProtection, generateCsrfToken } = doubleCsrf({
      getSecret: () => 'csrf-secret-0123456789abcdefghijklmnop',
      getSessionIdentifier: (req: Request) => req.session.id,
      cookieName: 'csrf',
      cookieOptions: { secure: false, sameSite: 'lax' },
    });
    const app = await start(version, (a) => {
      a.use(cookieParser());
      a.get('/form', (req, res) => {
        req.session.started = true; // a stored session, so its id stays
        res.send(generateCsrfToken(req, res));
      });
      a.post('/change', doubleCsrfProtection, (_req, res) => res.send('changed'));
    });
    try {
      const client = new Client(app.url);
      const token = await (await client.get('/form')).text();
      expect(client.jar.has('csrf')).toBe(true);
      expect((await client.post('/change')).status).toBe(403);
      const ok = await client.post('/change', { headers: { 'x-csrf-token': token } });
      expect(ok.status).toBe(200);
      // The same token and cookie with another session: refused.
      const other = new Client(app.url);
      await other.get('/form');
      other.jar.set('csrf', client.jar.get('csrf')!);
      expect((await other.post('/change', { headers: { 'x-csrf-token': token } })).status).toBe(403);
    } finally {
      await app.close();
    }
  });

  it('trust proxy + secure: true: the cookie is Secure behind the TLS proxy, and withheld on plain HTTP', async () => {
    const app = await start(
      version,
      (a) => {
        a.set('trust proxy', 1);
        a.get('/login', (req, res) => {
          req.session.userId = 3;
          res.send('ok');
        });
        a.get('/me', (req, res) => res.json({ userId: req.session.userId ?? null, secure: req.secure }));
      },
      { secure: true },
    );
    try {
      const https = { headers: { 'x-forwarded-proto': 'https' } };
      const login = await fetch(`${app.url}/login`, https);
      const [line] = login.headers.getSetCookie();
      expect(line).toMatch(/^sid=s%3A/);
      expect(line).toMatch(/; Secure/);
      const cookie = line!.split(';')[0]!;
      const me = await fetch(`${app.url}/me`, { headers: { ...https.headers, cookie } });
      expect(await me.json()).toEqual({ userId: 3, secure: true });
      const plain = await fetch(`${app.url}/login`);
      expect(plain.headers.getSetCookie()).toEqual([]);
    } finally {
      await app.close();
    }
  });
});
