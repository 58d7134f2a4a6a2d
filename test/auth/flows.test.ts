import http from 'node:http';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateApp } from '../../app/migrate.js';
import {
  type Auth,
  createAuth,
  LoginRateLimiter,
  requireAuth,
  TooManyAttemptsError,
} from '../../src/auth/index.js';
import { ConfigError, session } from '../../src/index.js';
import { PgStore } from '../../src/stores/postgres/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';

let db: TestDatabase;
let auth: Auth;
let url: string;
let closeServer: () => Promise<void>;
let store: InstanceType<typeof PgStore>;

beforeAll(async () => {
  db = await createTestDatabase();
  await migrateApp(db.pool);
  store = new PgStore({ pool: db.pool, pruneSessionInterval: false });
  const mw = session({
    secret: 'flows-test-secret-0123456789abcdefghij',
    store,
    resave: false,
    saveUninitialized: false,
    name: 'sid',
  });
  auth = createAuth({
    pool: db.pool,
    session: mw,
    keep: ['cart'],
    argon2: { memoryCost: 4096 },
    rateLimit: false,
  });
  const app = express();
  app.use(mw);
  app.use(express.json());
  app.post('/cart', (req, res) => {
    req.session.cart = ['apple'];
    req.session.scratch = 'dropped at login';
    res.json({ ok: true });
  });
  app.post('/login', async (req, res) => {
    const body = req.body as { email?: unknown; password?: unknown };
    const user = await auth.login(req, body.email, body.password);
    res.status(user ? 200 : 401).json({ user, session: user ? { ...req.session, cookie: undefined } : null });
  });
  app.post('/password', requireAuth(), async (req, res) => {
    const body = req.body as { current?: unknown; next: string };
    res.json(await auth.changePassword(req, body.current, body.next));
  });
  app.get('/api/me', requireAuth(), (req, res) => {
    // Typed through declaration merging.
    const id: number | undefined = req.session.userId;
    const role: 'user' | 'admin' | undefined = req.session.userRole;
    // @ts-expect-error userId is a number
    const wrong: string | undefined = req.session.userId;
    res.json({ id, role, wrong: typeof wrong });
  });
  app.use(
    (err: { status?: number }, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(err.status ?? 500).json({ error: String(err) });
    },
  );
  const server = await listen(http.createServer(app));
  url = server.url;
  closeServer = server.close;
  await auth.users.create({ email: 'flow@example.com', password: 'first-password' });
});
afterAll(async () => {
  await closeServer?.();
  await store?.close();
  await db?.drop();
});

declare module '../../src/core/session.js' {
  interface SessionData {
    cart: string[];
    scratch: string;
  }
}

describe('login()', () => {
  it('keeps only what `keep` lists across the id change, and sets userId, userRole, csrfToken, _meta', async () => {
    const c = new Client(url);
    await c.post('/cart', { json: {} });
    const before = c.jar.get('sid');
    expect(before).toBeDefined();
    const res = await c.post('/login', {
      json: { email: 'flow@example.com', password: 'first-password' },
      headers: { 'user-agent': 'test-agent/1.0' },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      user: { id: number };
      session: Record<string, unknown> & { _meta: unknown };
    };
    expect(body.user).toMatchObject({ email: 'flow@example.com', role: 'user' });
    expect(body.session).toMatchObject({ cart: ['apple'], userId: body.user.id, userRole: 'user' });
    expect(body.session.scratch).toBeUndefined();
    expect(body.session.csrfToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(body.session._meta).toMatchObject({ ip: '127.0.0.1', ua: 'test-agent/1.0' });
    expect(c.jar.get('sid')).not.toBe(before);
    expect(await (await c.get('/api/me')).json()).toMatchObject({ id: body.user.id, role: 'user' });
  });

  it('needs the session middleware', async () => {
    await expect(auth.login({ headers: {}, socket: {} } as never, 'a@b.c', 'x')).rejects.toBeInstanceOf(
      ConfigError,
    );
  });
});

describe('changePassword()', () => {
  it('requires the current password, revokes the other sessions and renews this one', async () => {
    const a = new Client(url);
    const b = new Client(url);
    for (const c of [a, b])
      await c.post('/login', { json: { email: 'flow@example.com', password: 'first-password' } });
    const wrong = await a.post('/password', { json: { current: 'nope-nope', next: 'second-password' } });
    expect(await wrong.json()).toEqual({ ok: false, reason: 'wrong-password' });
    const aBefore = a.jar.get('sid');
    const ok = await a.post('/password', { json: { current: 'first-password', next: 'second-password' } });
    expect(await ok.json()).toMatchObject({ ok: true });
    expect(a.jar.get('sid')).not.toBe(aBefore);
    expect((await a.get('/api/me')).status).toBe(200);
    expect((await b.get('/api/me')).status).toBe(401);
    expect(
      (
        await new Client(url).post('/login', {
          json: { email: 'flow@example.com', password: 'first-password' },
        })
      ).status,
    ).toBe(401);
    expect(
      (
        await new Client(url).post('/login', {
          json: { email: 'flow@example.com', password: 'second-password' },
        })
      ).status,
    ).toBe(200);
  });
});

describe('setRole() and disableUser()', () => {
  it('end every session of the user', async () => {
    const u = await auth.users.create({ email: 'promoted@example.com', password: 'elevated-pw' });
    const c = new Client(url);
    await c.post('/login', { json: { email: 'promoted@example.com', password: 'elevated-pw' } });
    expect((await c.get('/api/me')).status).toBe(200);
    expect(await auth.setRole(u.id, 'admin')).toBe(1);
    expect((await c.get('/api/me')).status).toBe(401);
    await c.post('/login', { json: { email: 'promoted@example.com', password: 'elevated-pw' } });
    expect(await (await c.get('/api/me')).json()).toMatchObject({ role: 'admin' });
    expect(await auth.disableUser(u.id)).toBe(1);
    expect((await c.get('/api/me')).status).toBe(401);
    expect(
      (await c.post('/login', { json: { email: 'promoted@example.com', password: 'elevated-pw' } })).status,
    ).toBe(401);
  });
});

describe('LoginRateLimiter', () => {
  it('reports which limit refused (pair, address, account) and gives back what a refused attempt took', async () => {
    const limiter = new LoginRateLimiter({
      pool: db.pool,
      policy: {
        perAccountAddress: { points: 2, duration: 60 },
        perAddress: { points: 3, duration: 60 },
        perAccount: { points: 4, duration: 60 },
      },
    });
    const scope = async (email: string, ip: string) =>
      limiter.attempt(email, ip).then(
        () => 'ok',
        (err) => (err instanceof TooManyAttemptsError ? err.scope : 'error'),
      );
    expect(await scope('a@x', '10.0.0.1')).toBe('ok');
    expect(await scope('a@x', '10.0.0.1')).toBe('ok');
    expect(await scope('a@x', '10.0.0.1')).toBe('account-ip');
    expect(await scope('b@x', '10.0.0.1')).toBe('ok');
    expect(await scope('c@x', '10.0.0.1')).toBe('ip');
    expect(await scope('a@x', '10.0.0.2')).toBe('ok');
    expect(await scope('a@x', '10.0.0.3')).toBe('ok');
    expect(await scope('a@x', '10.0.0.4')).toBe('account');
    // Refused attempts did not count against the address limit: 10.0.0.4 has room.
    expect(await scope('d@x', '10.0.0.4')).toBe('ok');
  });

  it('works in memory without a pool (development)', async () => {
    const limiter = new LoginRateLimiter({ policy: { perAccountAddress: { points: 1, duration: 60 } } });
    const first = await limiter.attempt('m@x', '1.1.1.1');
    await first.succeeded();
    await limiter.attempt('m@x', '1.1.1.1');
    await expect(limiter.attempt('m@x', '1.1.1.1')).rejects.toBeInstanceOf(TooManyAttemptsError);
  });
});

describe('a database failure in the middle of a login', () => {
  it('is given back to the failed-login limits: once the database is back, the owner is not locked out', async () => {
    const mw = session({ secret: 'flows-outage-secret-0123456789abcdefgh', store, name: 'sid' });
    const limited = createAuth({
      pool: db.pool,
      session: mw,
      argon2: { memoryCost: 4096 },
      rateLimit: { policy: { perAccountAddress: { points: 2, duration: 600 } } },
    });
    await limited.users.create({ email: 'outage@example.com', password: 'violet harbour lantern 42' });
    const app = express();
    app.use(mw);
    app.use(express.json());
    app.post('/login', async (req, res) => {
      const body = req.body as { email?: unknown; password?: unknown };
      try {
        res.status((await limited.login(req, body.email, body.password)) ? 200 : 401).end();
      } catch (err) {
        res.status(err instanceof TooManyAttemptsError ? 429 : 503).end();
      }
    });
    const server = await listen(http.createServer(app));
    try {
      const c = new Client(server.url);
      const login = () =>
        c.post('/login', { json: { email: 'outage@example.com', password: 'violet harbour lantern 42' } });
      // The user lookup fails as it does when the database goes away mid-request.
      const lookup = limited.users.findByEmail;
      limited.users.findByEmail = () =>
        Promise.reject(
          Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
        );
      for (let i = 0; i < 4; i++) expect((await login()).status).toBe(503);
      limited.users.findByEmail = lookup;
      expect((await login()).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('in a step-up or while turning TOTP off is given back too: the signed-in user is not locked out', async () => {
    const mw = session({ secret: 'flows-outage-secret-0123456789abcdefgh', store, name: 'sid' });
    const limited = createAuth({
      pool: db.pool,
      session: mw,
      argon2: { memoryCost: 4096 },
      // The address budget: what a success does not clear, only refunds one attempt of.
      rateLimit: { policy: { perAddress: { points: 3, duration: 600 } } },
    });
    const password = 'amber orchard compass 17';
    await limited.users.create({ email: 'stepup-outage@example.com', password });
    const app = express();
    app.use(mw);
    app.use(express.json());
    const answer =
      (work: () => Promise<unknown>): express.RequestHandler =>
      async (_req, res) => {
        try {
          res.status((await work()) ? 200 : 401).end();
        } catch (err) {
          res.status(err instanceof TooManyAttemptsError ? 429 : 503).end();
        }
      };
    app.post('/login', (req, res, next) =>
      answer(() => limited.login(req, 'stepup-outage@example.com', password))(req, res, next),
    );
    app.post('/reauth', (req, res, next) =>
      answer(() => limited.reauthenticate(req, password))(req, res, next),
    );
    app.post('/totp/disable', (req, res, next) =>
      answer(async () => (await limited.disableTotp(req, password, '123456')).ok)(req, res, next),
    );
    const server = await listen(http.createServer(app));
    const outage = () =>
      Promise.reject(
        Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      );
    try {
      const c = new Client(server.url);
      expect((await c.post('/login')).status).toBe(200);
      // Step-up while the user lookup fails, more often than the budget allows.
      const lookup = limited.users.findByEmail;
      limited.users.findByEmail = outage;
      for (let i = 0; i < 4; i++) expect((await c.post('/reauth')).status).toBe(503);
      limited.users.findByEmail = lookup;
      expect((await c.post('/reauth')).status).toBe(200);
      // Turning TOTP off while the code check fails: the same.
      const { isEnabled, check } = limited.totp;
      limited.totp.isEnabled = async () => true;
      limited.totp.check = outage;
      for (let i = 0; i < 4; i++) expect((await c.post('/totp/disable')).status).toBe(503);
      limited.totp.isEnabled = isEnabled;
      limited.totp.check = check;
      expect((await c.post('/reauth')).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});
