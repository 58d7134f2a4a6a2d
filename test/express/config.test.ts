/**
 * Options: wrong types are a ConfigError at construction (never odd behaviour per request), and
 * express-session's option forms (`key`, `cookie` as a function of the request) are accepted.
 */
import type { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import expressSession from 'express-session';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, MemoryStore, type SessionOptions, session } from '../../src/index.js';
import { fetchSeen, recordingStoreClass, SECRET, startPg } from './support.js';

const store = new MemoryStore();
const make = (options: Record<string, unknown>) => () =>
  session({ secret: SECRET, store, ...options } as unknown as SessionOptions);

describe('ConfigError for options of the wrong type', () => {
  it.each([
    ['no options', undefined, /options object required/],
    ['empty secret', { secret: '' }, /secret option required/],
    ['empty secret list', { secret: [] }, /secret option array must contain one or more strings/],
    ['non-string secret', { secret: 12345 }, /secret option required/],
    ['cookie.maxAge as a string', { cookie: { maxAge: '7d' } }, /cookie\.maxAge must be a number/],
    ['cookie.maxAge NaN', { cookie: { maxAge: Number.NaN } }, /cookie\.maxAge/],
    [
      'cookie.expires as a string',
      { cookie: { expires: '2030-01-01' } },
      /cookie\.expires must be a valid Date/,
    ],
    ['cookie.expires invalid Date', { cookie: { expires: new Date('nope') } }, /cookie\.expires/],
    ['cookie.httpOnly as a string', { cookie: { httpOnly: 'yes' } }, /cookie\.httpOnly must be a boolean/],
    [
      'cookie.secure as a string',
      { cookie: { secure: 'true' } },
      /cookie\.secure must be true, false or 'auto'/,
    ],
    ['cookie.sameSite unknown', { cookie: { sameSite: 'relaxed' } }, /cookie\.sameSite/],
    ['cookie.priority unknown', { cookie: { priority: 'urgent' } }, /cookie\.priority/],
    ['cookie.domain invalid', { cookie: { domain: 'bad domain' } }, /cookie\.domain/],
    ['cookie.path with a semicolon', { cookie: { path: '/a;b' } }, /cookie\.path/],
    ['cookie.partitioned as a number', { cookie: { partitioned: 1 } }, /cookie\.partitioned/],
    ['cookie as a string', { cookie: 'secure' }, /cookie option must be an object/],
    ['name with a space', { name: 'my sid' }, /name must be a cookie name/],
    ['empty name', { name: '' }, /name must be a cookie name/],
    ['name as a number', { name: 5 }, /name option must be a string/],
    ['resave as a string', { resave: 'false' }, /resave option must be a boolean/],
    ['saveUninitialized as a number', { saveUninitialized: 0 }, /saveUninitialized option must be a boolean/],
    ['rolling as a string', { rolling: 'true' }, /rolling option must be a boolean/],
    ['proxy as a string', { proxy: 'yes' }, /proxy option must be a boolean/],
    ['unset unknown', { unset: 'drop' }, /unset option must be "destroy" or "keep"/],
    ['genid not a function', { genid: 'uuid' }, /genid option must be a function/],
    ['store without methods', { store: {} }, /store option must be a session store/],
    ['store as a string', { store: 'postgres' }, /store option must be a session store/],
    ['idleTimeout unparseable', { idleTimeout: 'soon' }, /idleTimeout/],
    ['idleTimeout negative', { idleTimeout: -1 }, /idleTimeout/],
    ['absoluteTimeout as an object', { absoluteTimeout: {} }, /absoluteTimeout option must be/],
    ['touchAfter unparseable', { touchAfter: '1 minute' }, /touchAfter/],
    ['onEvent not a function', { onEvent: true }, /onEvent option must be a function/],
  ])('%s', (_name, options, message) => {
    const build = options === undefined ? () => session(undefined as never) : make(options);
    expect(build).toThrow(ConfigError);
    expect(build).toThrow(message);
  });

  it('accepts every documented form', () => {
    expect(
      make({
        name: 'app.sid',
        secret: [SECRET, `${SECRET}-old`],
        resave: false,
        saveUninitialized: false,
        rolling: true,
        proxy: true,
        unset: 'destroy',
        hashIds: true,
        genid: () => 'x',
        idleTimeout: '30m',
        absoluteTimeout: 86_400_000,
        touchAfter: '1m',
        cookie: {
          maxAge: null,
          expires: new Date(Date.now() + 1000),
          httpOnly: true,
          secure: 'auto',
          sameSite: 'Lax',
          domain: '.example.com',
          path: '/app',
          partitioned: false,
          priority: 'High',
        },
      }),
    ).not.toThrow();
    expect(make({ cookie: { sameSite: true } })).not.toThrow();
    expect(make({ cookie: (_req: IncomingMessage) => ({ maxAge: 1000 }) })).not.toThrow();
  });

  it('warns when a store written for express-session cannot enforce idleTimeout (≠ cookie.maxAge)', () => {
    const connectStore = new (recordingStoreClass(
      expressSession.Store as unknown as new () => EventEmitter,
    ))();
    const warnings: string[] = [];
    const onWarning = (m: string) => warnings.push(m);
    make({ store: connectStore, idleTimeout: '30m', cookie: { maxAge: 86_400_000 }, onWarning })();
    expect(warnings).toEqual([
      expect.stringMatching(/expires sessions by cookie\.maxAge .* not idleTimeout/),
    ]);
    make({ store: connectStore, idleTimeout: '30m', cookie: { maxAge: 1_800_000 }, onWarning })();
    make({ store: connectStore, idleTimeout: '30m', onWarning })();
    make({ store: new MemoryStore(), idleTimeout: '30m', cookie: { maxAge: 86_400_000 }, onWarning })();
    expect(warnings).toHaveLength(1);
  });

  it('warns about a SameSite=None cookie without Secure, which browsers reject', () => {
    const warnings: string[] = [];
    make({ cookie: { sameSite: 'none' }, onWarning: (m: string) => warnings.push(m) })();
    expect(warnings).toEqual([expect.stringMatching(/SameSite=None cookie without Secure/)]);
  });
});

describe("express-session's option forms", () => {
  const running: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((r) => r.close()));
  });

  it('`key` is the old name of `name`', async () => {
    const app = await startPg({ key: 'legacy.sid' }, (a) =>
      a.get('/', (req, res) => {
        req.session.n = 1;
        res.send('ok');
      }),
    );
    running.push(app);
    expect((await fetchSeen(`${app.url}/`, 'legacy.sid')).cookie).toBe('set');
  });

  it('`cookie` as a function of the request: per-request attributes and path scoping', async () => {
    const app = await startPg(
      {
        name: 'sid',
        cookie: (req: IncomingMessage) => {
          const tenant = /^\/t\/([^/]+)/.exec(req.url ?? '')?.[1];
          return {
            path: tenant ? `/t/${tenant}` : '/',
            maxAge: tenant === 'short' ? 1000 : 60_000,
            sameSite: 'strict',
          };
        },
      },
      (a) => {
        a.get(['/t/:tenant/login', '/login'], (req, res) => {
          req.session.n = 1;
          res.send(String(req.session.cookie.originalMaxAge));
        });
      },
    );
    running.push(app);
    const tenant = await fetchSeen(`${app.url}/t/short/login`, 'sid');
    expect(tenant.body).toBe('1000');
    expect(tenant.headers.getSetCookie()[0]).toMatch(
      /; Path=\/t\/short; Expires=[^;]+; HttpOnly; SameSite=Strict$/,
    );
    const root = await fetchSeen(`${app.url}/login`, 'sid');
    expect(root.body).toBe('60000');
    expect(root.headers.getSetCookie()[0]).toMatch(/; Path=\/; /);
  });

  it('a cookie function returning bad options fails the request, not the process', async () => {
    const app = await startPg({ name: 'sid', cookie: () => ({ maxAge: 'soon' }) as never }, (a) =>
      a.get('/', (_req, res) => res.send('unreachable')),
    );
    running.push(app);
    const res = await fetchSeen(`${app.url}/`, 'sid');
    expect(res.status).toBe(500);
    expect(res.body).toMatch(/ConfigError: cookie\.maxAge/);
  });

  it('requests outside cookie.path get no session, as in express-session', async () => {
    const app = await startPg({ name: 'sid', cookie: { path: '/app' } }, (a) => {
      a.get('/app/x', (req, res) => res.send(String(req.session !== undefined)));
      a.get('/other', (req, res) => res.send(String(req.session !== undefined)));
    });
    running.push(app);
    expect((await fetchSeen(`${app.url}/app/x`, 'sid')).body).toBe('true');
    expect((await fetchSeen(`${app.url}/other`, 'sid')).body).toBe('false');
  });
});

describe('secrets as express-session takes them', () => {
  const started: Array<Awaited<ReturnType<typeof startPg>>> = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((s) => s.close()));
  });
  const routes = (a: import('express').Express) => {
    a.get('/login', (req, res) => {
      req.session.userId = 4;
      res.send('ok');
    });
    a.get('/me', (req, res) => res.json({ userId: req.session.userId ?? null }));
  };

  it('a Buffer secret signs and verifies', async () => {
    const app = await startPg({ name: 'sid', secret: Buffer.alloc(32, 9) }, routes);
    started.push(app);
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    expect(JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', login.pair)).body)).toEqual({ userId: 4 });
  });

  it("without a secret option, cookie-parser's req.secret signs; without either, 500 /secret option required/", async () => {
    let requestSecret: string | undefined = SECRET;
    const express = (await import('express')).default;
    const front = express();
    // cookie-parser's part: req.secret, set before the session middleware runs.
    front.use((req, _res, next) => {
      (req as unknown as { secret?: string }).secret = requestSecret;
      next();
    });
    front.use(session({ name: 'sid', store: new MemoryStore() } as SessionOptions));
    routes(front);
    front.use((err: Error, _req: unknown, res: import('express').Response, _next: unknown) =>
      res.status(500).send(err.message),
    );
    const { listen } = await import('../helpers/http.js');
    const server = await listen(front.listen(0, '127.0.0.1'));
    try {
      const login = await fetchSeen(`${server.url}/login`, 'sid');
      expect(login.cookie).toBe('set');
      expect(JSON.parse((await fetchSeen(`${server.url}/me`, 'sid', login.pair)).body)).toEqual({
        userId: 4,
      });
      requestSecret = undefined;
      const none = await fetchSeen(`${server.url}/me`, 'sid', login.pair);
      expect(none.status).toBe(500);
      expect(none.body).toMatch(/secret option required/);
    } finally {
      await server.close();
    }
  });
});
