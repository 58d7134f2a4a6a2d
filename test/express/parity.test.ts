/**
 * Differential tests: the same Express app, once with the real express-session and once with
 * pgsession, each over its own instance of the same store written for express-session. For every
 * combination of resave × saveUninitialized × rolling × unset × cookie.maxAge × (store with or
 * without touch) and a set of request scenarios, both must make the same observable decisions:
 * Set-Cookie or not (and its attributes), which store writes happen (set / touch / destroy),
 * what ends up in the store, and the same status and body.
 *
 * pgsession differs on purpose in a few places; each is an explicit exception below, applied to
 * express-session's observation to get what pgsession must do (see docs/compat.md):
 *   (a) after destroy(), and after `req.session = null` with unset:'destroy', pgsession deletes
 *       the cookie in the browser (express-session leaves it: expressjs/session#241);
 *   (b) touches are throttled by touchAfter: parity runs use touchAfter 0;
 *   (c) ids are stored hashed: parity runs use hashIds false;
 *   (d) the save happens before the response leaves (not observable here);
 *   (e) none any more: the store is asked to destroy exactly as often as by express-session,
 *       including for a brand-new session on regenerate/destroy/unset, and a second time at the
 *       end of a request that called destroy() under unset:'destroy';
 *   (f) a new session the app saved explicitly gets its cookie even when saveUninitialized is
 *       false (express-session stores it but sends no cookie, leaving an unreachable row).
 * Store reads (`get`) are not compared: pgsession's adapter reads before updating, so that an
 * update never re-creates a session destroyed meanwhile.
 */
import type { EventEmitter } from 'node:events';
import express5 from 'express';
import expressSession from 'express-session';
import express4 from 'express4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import session from '../../src/index.js';
import {
  fetchSeen,
  type RecordingStore,
  recordingStoreClass,
  SECRET,
  type Seen,
  serve,
  settle,
} from './support.js';

const NAME = 'sid';

interface Config {
  resave: boolean;
  saveUninitialized: boolean;
  rolling: boolean;
  unset: 'keep' | 'destroy';
  maxAge: number | undefined;
  touch: boolean;
}

type Setup = 'fresh' | 'existing' | 'stale';
const ROUTES = [
  'noop',
  'set',
  'unset',
  'regen',
  'regen-set',
  'destroy',
  'save',
  'save-then-modify',
  'cookie-maxage',
  'reload',
  'redirect-set',
] as const;
type Route = (typeof ROUTES)[number];

interface Observation {
  status: number;
  body: string;
  cookie: Seen['cookie'];
  attributes: string[];
  set: number;
  touch: number;
  destroy: number;
  stored: string[];
}

interface SessionLike {
  [key: string]: unknown;
  cookie: { maxAge: unknown };
  regenerate(cb: (err?: Error) => void): void;
  destroy(cb: (err?: Error) => void): void;
  save(cb: (err?: Error) => void): void;
  reload(cb: (err?: Error) => void): void;
}
type Req = { session: SessionLike | null | undefined };
type Res = { send(body: string): void; redirect(url: string): void; status(code: number): Res };
type Handler = (req: Req, res: Res) => void;
interface App {
  use(...args: unknown[]): void;
  get(path: string, handler: Handler): void;
}

function routes(app: App): void {
  const body = (req: Req) => {
    if (!req.session) return 'null';
    const { cookie: _cookie, ...data } = req.session;
    return JSON.stringify(data);
  };
  const reply = (req: Req, res: Res) => (err?: Error) => res.send(err ? `error: ${err.message}` : body(req));
  const s = (req: Req) => req.session as SessionLike;
  app.get('/noop', (req, res) => res.send(body(req)));
  app.get('/set', (req, res) => {
    s(req).n = ((s(req).n as number | undefined) ?? 0) + 1;
    res.send(body(req));
  });
  app.get('/unset', (req, res) => {
    req.session = null;
    res.send(body(req));
  });
  app.get('/regen', (req, res) => s(req).regenerate(reply(req, res)));
  app.get('/regen-set', (req, res) =>
    s(req).regenerate((err) => {
      if (!err) s(req).n = 100;
      reply(req, res)(err);
    }),
  );
  app.get('/destroy', (req, res) => s(req).destroy(reply(req, res)));
  app.get('/save', (req, res) => s(req).save(reply(req, res)));
  app.get('/save-then-modify', (req, res) => {
    s(req).n = 5;
    s(req).save((err) => {
      s(req).n = 6;
      reply(req, res)(err);
    });
  });
  app.get('/cookie-maxage', (req, res) => {
    s(req).cookie.maxAge = 5000;
    res.send(body(req));
  });
  app.get('/reload', (req, res) => s(req).reload(reply(req, res)));
  app.get('/redirect-set', (req, res) => {
    s(req).n = 42;
    res.redirect('/noop');
  });
  app.use((err: Error, _req: unknown, res: Res, _next: unknown) =>
    res.status(500).send(`error: ${err.message}`),
  );
}

type Impl = 'express-session' | 'pgsession';

async function startApp(impl: Impl, version: 4 | 5, config: Config) {
  const Store = recordingStoreClass(expressSession.Store as unknown as new () => EventEmitter, {
    touch: config.touch,
  });
  const store = new Store() as RecordingStore;
  const cookie = config.maxAge === undefined ? {} : { maxAge: config.maxAge };
  const common = {
    name: NAME,
    secret: SECRET,
    store,
    resave: config.resave,
    saveUninitialized: config.saveUninitialized,
    rolling: config.rolling,
    unset: config.unset,
    cookie,
  };
  const middleware =
    impl === 'express-session'
      ? expressSession(common)
      : // (b) and (c): compare touches one for one, and store under the id, as express-session does.
        session({ ...common, touchAfter: 0, hashIds: false });
  const app = (version === 4 ? express4() : express5()) as unknown as App & ((...a: unknown[]) => void);
  app.use(middleware);
  routes(app);
  const server = await serve(app as unknown as Parameters<typeof serve>[0]);
  const flush = async () => {
    await settle();
    if (impl === 'pgsession') await (middleware as ReturnType<typeof session>).flush();
    await settle();
  };
  return { store, server, flush };
}

type Running = Awaited<ReturnType<typeof startApp>>;

/** The stored sessions, comparable across implementations (expiry dates and pgsession's metadata masked). */
function storedState(store: RecordingStore): string[] {
  return [...store.sessions.values()]
    .map((json) => {
      const sess = JSON.parse(json);
      delete sess.__pgsession;
      if (sess.cookie && typeof sess.cookie.expires === 'string') sess.cookie.expires = '<date>';
      // Both compute originalMaxAge from two clock reads, so it can be a few ms short under load.
      if (sess.cookie && typeof sess.cookie.originalMaxAge === 'number') {
        sess.cookie.originalMaxAge = Math.round(sess.cookie.originalMaxAge / 1000) * 1000;
      }
      return JSON.stringify(sess);
    })
    .sort();
}

async function observe(app: Running, setup: Setup, route: Route): Promise<Observation> {
  app.store.sessions.clear();
  let cookie: string | undefined;
  if (setup !== 'fresh') {
    const first = await fetchSeen(`${app.server.url}/set`, NAME);
    expect(first.cookie, 'setup request must create a session').toBe('set');
    cookie = first.pair;
    await app.flush();
    if (setup === 'stale') app.store.sessions.clear();
  }
  app.store.calls = [];
  const seen = await fetchSeen(`${app.server.url}/${route}`, NAME, cookie);
  await app.flush();
  return {
    status: seen.status,
    body: seen.body,
    cookie: seen.cookie,
    attributes: seen.attributes,
    set: app.store.count('set'),
    touch: app.store.count('touch'),
    destroy: app.store.count('destroy'),
    stored: storedState(app.store),
  };
}

/** Apply pgsession's documented differences to what express-session did. */
function pgsessionExpected(ex: Observation, config: Config, setup: Setup, route: Route): Observation {
  const expected = { ...ex };
  const hadCookie = setup !== 'fresh';
  const wasStored = setup === 'existing';
  // (a) the browser's cookie is deleted once the session is gone.
  if (route === 'destroy' && hadCookie) expected.cookie = 'clear';
  if (route === 'unset' && config.unset === 'destroy' && wasStored) expected.cookie = 'clear';
  // (f) an explicitly saved new session gets its cookie.
  if (!wasStored && route === 'save' && !config.saveUninitialized) {
    expected.cookie = 'set';
    expected.attributes = ['httponly', 'path', ...(config.maxAge === undefined ? [] : ['expires'])].sort();
  }
  if (expected.cookie !== 'set') expected.attributes = [];
  return expected;
}

const configs: Config[] = [];
for (const resave of [false, true])
  for (const saveUninitialized of [false, true])
    for (const rolling of [false, true])
      for (const unset of ['keep', 'destroy'] as const)
        for (const maxAge of [undefined, 60_000])
          for (const touch of [true, false])
            configs.push({ resave, saveUninitialized, rolling, unset, maxAge, touch });

const label = (c: Config) =>
  `resave=${c.resave} saveUninitialized=${c.saveUninitialized} rolling=${c.rolling} unset=${c.unset} maxAge=${c.maxAge ?? 'none'} touch=${c.touch}`;

const scenarios: Array<[Setup, Route]> = [];
for (const setup of ['fresh', 'existing', 'stale'] as const)
  for (const route of ROUTES) scenarios.push([setup, route]);

for (const version of [4, 5] as const) {
  describe(`parity with express-session on Express ${version}`, () => {
    // The Express version does not meet the store's API: the touch-less store runs on Express 5 only.
    const matrix = version === 5 ? configs : configs.filter((c) => c.touch);
    it.concurrent.each(matrix.map((c) => [label(c), c] as const))('%s', async (_label, config) => {
      const reference = await startApp('express-session', version, config);
      const ours = await startApp('pgsession', version, config);
      try {
        const mismatches: unknown[] = [];
        for (const [setup, route] of scenarios) {
          const [ex, pg] = await Promise.all([observe(reference, setup, route), observe(ours, setup, route)]);
          const expected = pgsessionExpected(ex, config, setup, route);
          try {
            expect(pg).toEqual(expected);
          } catch {
            mismatches.push({ scenario: `${setup} ${route}`, expressSession: ex, expected, pgsession: pg });
          }
        }
        expect(mismatches).toEqual([]);
      } finally {
        await reference.server.close();
        await ours.server.close();
      }
    });
  });
}

describe('parity harness sanity', () => {
  let app: Running;
  beforeAll(async () => {
    app = await startApp('express-session', 5, {
      resave: false,
      saveUninitialized: false,
      rolling: false,
      unset: 'keep',
      maxAge: 60_000,
      touch: true,
    });
  });
  afterAll(() => app.server.close());

  it('sees express-session touch an unchanged session and save a changed one', async () => {
    expect((await observe(app, 'existing', 'noop')).touch).toBe(1);
    const changed = await observe(app, 'existing', 'set');
    expect(changed.set).toBe(1);
    expect(changed.cookie).toBe('set');
  });
});
