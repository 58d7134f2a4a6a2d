/**
 * The session is committed before the response leaves; a failed commit is an error response
 * (never a response without the session); data JSON cannot hold is a clear SerializationError.
 */
import type { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import express5, { type Express, type NextFunction, type Request, type Response } from 'express';
import expressSession from 'express-session';
import { afterEach, describe, expect, it } from 'vitest';
import { kSessionStore, MemoryStore, SerializationError, StoreUnavailableError } from '../../src/index.js';
import { fetchSeen, type RecordingStore, recordingStoreClass, SECRET, serve, startPg } from './support.js';

const Recording = recordingStoreClass(expressSession.Store as unknown as new () => EventEmitter);

/** A recording store whose `set` completes after `ms`, noting when. */
function slowStore(ms: number) {
  const store = new Recording() as RecordingStore & { setDoneAt: number[] };
  store.setDoneAt = [];
  const set = store.set.bind(store);
  store.set = (sid, sess, cb) =>
    set(sid, sess, (err?: unknown) => {
      setTimeout(() => {
        store.setDoneAt.push(performance.now());
        cb?.(err);
      }, ms);
    });
  return store;
}

/** pgsession's own store whose database fails `op` (its engine face rejects, as PgStore's does when PostgreSQL is down). */
function failingOwnStore(op: 'get' | 'create' | 'update') {
  const store = new MemoryStore();
  const face = store[kSessionStore] as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const healthy = face[op]!;
  let failing = false;
  face[op] = (...args: unknown[]) =>
    failing ? Promise.reject(new Error('db down')) : healthy.apply(face, args);
  return { store, fail: (on = true) => (failing = on) };
}

/** GET /login stores userId 1; GET /me answers it. */
const loginAndMe = (a: Express) => {
  a.get('/login', (req, res) => {
    req.session.userId = 1;
    res.send('ok');
  });
  a.get('/me', (req, res) => res.send(String(req.session.userId)));
};

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
});

describe.each([4, 5] as const)('commit before response (Express %i)', (version) => {
  it('the 302 after login arrives only once the 200 ms store write has completed', async () => {
    const store = slowStore(200);
    const app = await startPg(
      { store, name: 'sid' },
      (a) =>
        a.post('/login', (req, res) => {
          req.session.userId = 42;
          res.redirect('/dashboard');
        }),
      { version },
    );
    closers.push(app.close);
    const sentAt = performance.now();
    const res = await fetchSeen(`${app.url}/login`, 'sid', undefined, { method: 'POST' });
    const receivedAt = performance.now();
    expect(res.status).toBe(302);
    expect(res.cookie).toBe('set');
    expect(store.setDoneAt).toHaveLength(1);
    expect(receivedAt).toBeGreaterThanOrEqual(store.setDoneAt[0]!);
    expect(store.setDoneAt[0]! - sentAt).toBeGreaterThanOrEqual(195);
    // Following the redirect at once finds the session.
    expect(store.sessions.size).toBe(1);
  });

  it('(contrast) express-session answers before the same write completes', async () => {
    const store = slowStore(200);
    const app = express5();
    app.use(expressSession({ store, secret: SECRET, resave: false, saveUninitialized: false, name: 'sid' }));
    app.post('/login', (req, res) => {
      (req as unknown as { session: Record<string, unknown> }).session.userId = 42;
      res.redirect('/dashboard');
    });
    const server = await serve(app);
    closers.push(server.close);
    const res = await fetch(`${server.url}/login`, { method: 'POST', redirect: 'manual' });
    const headersAt = performance.now();
    expect(res.status).toBe(302);
    expect(store.setDoneAt).toHaveLength(0);
    await res.text();
    expect(store.setDoneAt.length === 0 || store.setDoneAt[0]! > headersAt).toBe(true);
  });

  it.each([
    ['pgsession', 'a StoreUnavailableError (503) whose cause is the fault'],
    ['express-session', "the store's own error, as express-session passes it"],
  ] as const)(
    'a save failing in a store written for %s reaches next(err) as %s: the error handler answers, without Set-Cookie',
    async (kind, _as) => {
      const own = failingOwnStore('create');
      own.fail();
      const foreign = new Recording() as RecordingStore;
      foreign.failing.add('set');
      const store = kind === 'pgsession' ? own.store : foreign;
      const seen: unknown[] = [];
      const app = await startPg(
        { store, name: 'sid' },
        (a) => {
          a.post('/login', (req, res) => {
            req.session.userId = 42;
            res.redirect('/dashboard');
          });
          a.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
            seen.push(err);
            res.status(599).send('handled');
          });
        },
        { version },
      );
      closers.push(app.close);
      const res = await fetchSeen(`${app.url}/login`, 'sid', undefined, { method: 'POST' });
      expect(res.status).toBe(599);
      expect(res.body).toBe('handled');
      expect(res.cookie).toBe('none');
      expect(res.headers.getSetCookie()).toEqual([]);
      expect(seen).toHaveLength(1);
      if (kind === 'pgsession') {
        expect(seen[0]).toBeInstanceOf(StoreUnavailableError);
        expect((seen[0] as StoreUnavailableError).status).toBe(503);
        expect(((seen[0] as Error).cause as Error).message).toBe('db down');
      } else {
        expect(seen[0]).not.toBeInstanceOf(StoreUnavailableError);
        expect((seen[0] as Error).message).toBe('store set failed');
      }
    },
  );

  it("the default error status of pgsession's store failing is 503", async () => {
    const { store, fail } = failingOwnStore('create');
    fail();
    const app = await startPg(
      { store, name: 'sid' },
      (a) =>
        a.get('/', (req, res) => {
          req.session.n = 1;
          res.send('ok');
        }),
      { version },
    );
    closers.push(app.close);
    const res = await fetchSeen(`${app.url}/`, 'sid');
    expect(res.status).toBe(503);
    expect(res.cookie).toBe('none');
  });

  it.each([
    ['pgsession', 503],
    ['express-session', 500],
  ] as const)(
    'a load failing in a store written for %s is an error (%i), not an empty session (which would log the user out)',
    async (kind, status) => {
      const own = failingOwnStore('get');
      const foreign = new Recording() as RecordingStore;
      const store = kind === 'pgsession' ? own.store : foreign;
      const app = await startPg({ store, name: 'sid' }, loginAndMe, { version });
      closers.push(app.close);
      const login = await fetchSeen(`${app.url}/login`, 'sid');
      own.fail();
      foreign.failing.add('get');
      const me = await fetchSeen(`${app.url}/me`, 'sid', login.pair);
      expect(me.status).toBe(status);
      expect(me.cookie).toBe('none');
      own.fail(false);
      foreign.failing.clear();
      expect((await fetchSeen(`${app.url}/me`, 'sid', login.pair)).body).toBe('1');
    },
  );

  it('a failing background touch is reported to onBackgroundError, not to the request', async () => {
    const store = new Recording() as RecordingStore;
    const background: unknown[] = [];
    const app = await startPg(
      { store, name: 'sid', touchAfter: 0, onBackgroundError: (err) => background.push(err) },
      loginAndMe,
      { version },
    );
    closers.push(app.close);
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    store.failing.add('touch');
    const me = await fetchSeen(`${app.url}/me`, 'sid', login.pair);
    expect(me.status).toBe(200);
    await app.mw.flush();
    expect(background).toHaveLength(1);
    expect((background[0] as Error).message).toBe('store touch failed');
  });

  it('a store error on destroy reaches the callback, and the cookie stays', async () => {
    const store = new Recording() as RecordingStore;
    const app = await startPg(
      { store, name: 'sid' },
      (a) => {
        a.get('/login', (req, res) => {
          req.session.userId = 1;
          res.send('ok');
        });
        a.get('/logout', (req, res) =>
          req.session.destroy((err) => res.status(err ? 500 : 200).send(err ? 'failed' : 'bye')),
        );
      },
      { version },
    );
    closers.push(app.close);
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    store.failing.add('destroy');
    const out = await fetchSeen(`${app.url}/logout`, 'sid', login.pair);
    expect(out.status).toBe(500);
    expect(out.cookie).toBe('none');
  });
});

describe.each([4, 5] as const)('a cookie attribute the serializer refuses (Express %i)', (version) => {
  it.each([
    ['after a store write', true],
    ['with nothing to write', false],
  ])('%s: reaches the error handler, nothing unhandled', async (_name, modify) => {
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      const app = await startPg(
        { name: 'sid', saveUninitialized: true },
        (a) =>
          a.get('/', (req, res) => {
            if (modify) req.session.n = 1;
            (req.session.cookie as { priority: unknown }).priority = 'urgent';
            res.send('ok');
          }),
        { version },
      );
      closers.push(app.close);
      const res = await fetchSeen(`${app.url}/`, 'sid');
      expect(res.status).toBe(500);
      expect(res.body).toMatch(/priority is invalid/);
      expect(res.cookie).toBe('none');
      await new Promise((r) => setTimeout(r, 10));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe.each([4, 5] as const)('data that JSON cannot hold (Express %i)', (version) => {
  async function attempt(put: (session: Record<string, unknown>) => void, explicitSave = false) {
    const seen: unknown[] = [];
    const app = await startPg(
      { name: 'sid' },
      (a) => {
        a.get('/', async (req, res, next) => {
          put(req.session as unknown as Record<string, unknown>);
          if (!explicitSave) return res.send('ok');
          try {
            await req.session.save();
            res.send('saved');
          } catch (err) {
            next(err);
          }
        });
        a.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
          seen.push(err);
          res.status(500).send((err as Error).message);
        });
      },
      { version },
    );
    closers.push(app.close);
    const res = await fetchSeen(`${app.url}/`, 'sid');
    return { res, err: seen[0] as SerializationError };
  }

  it('a BigInt gives a SerializationError naming the key, and no cookie', async () => {
    const { res, err } = await attempt((s) => {
      s.ok = 1;
      s.balance = 10n;
    });
    expect(res.status).toBe(500);
    expect(res.cookie).toBe('none');
    expect(err).toBeInstanceOf(SerializationError);
    expect(err.code).toBe('PGSESSION_SERIALIZE');
    expect(err.message).toMatch(/req\.session\.balance/);
    expect(err.message).toMatch(/BigInt/);
  });

  it('a cycle gives a SerializationError naming the top-level key', async () => {
    const { res, err } = await attempt((s) => {
      const node: Record<string, unknown> = { name: 'a' };
      node.self = node;
      s.tree = node;
    });
    expect(res.status).toBe(500);
    expect(err).toBeInstanceOf(SerializationError);
    expect(err.message).toMatch(/req\.session\.tree/);
    expect(err.message).toMatch(/circular/i);
  });

  it('an explicit save() rejects with the same error', async () => {
    const { err } = await attempt((s) => {
      s.big = 1n;
    }, true);
    expect(err).toBeInstanceOf(SerializationError);
    expect(err.message).toMatch(/req\.session\.big/);
  });
});

describe("Express's default error handler", () => {
  it("answers pgsession's store failing with 503 and Retry-After", async () => {
    const { store, fail } = failingOwnStore('create');
    fail();
    const { default: session } = await import('../../src/index.js');
    const app = express5();
    app.use(session({ store, secret: SECRET, resave: false, saveUninitialized: false, name: 'sid' }));
    app.get('/', (req, res) => {
      req.session.n = 1;
      res.send('ok');
    });
    const server = await serve(app);
    closers.push(server.close);
    const res = await fetchSeen(`${server.url}/`, 'sid');
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    expect(res.cookie).toBe('none');
  });
});

describe('a response held for the commit behaves as if its headers had left', () => {
  it('after res.end(), changing a header throws the same error as over plain http; headersSent is true', async () => {
    const http = await import('node:http');
    const { listen } = await import('../helpers/http.js');
    const seen: Array<{ message: string | undefined; sent: boolean }> = [];
    const attempt = (res: import('node:http').ServerResponse) => {
      res.end('first');
      let message: string | undefined;
      try {
        res.setHeader('Content-Length', '3');
      } catch (err) {
        message = (err as Error).message;
      }
      seen.push({ message, sent: res.headersSent });
    };
    const plain = await listen(http.createServer((_req, res) => attempt(res)));
    closers.push(plain.close);
    await (await fetch(plain.url)).text();
    const store = slowStore(50);
    const app = await startPg({ store, name: 'sid' }, (a) =>
      a.get('/', (req, res) => {
        req.session.n = 1; // a save is in flight when the app ends the response
        attempt(res);
      }),
    );
    closers.push(app.close);
    const res = await fetchSeen(`${app.url}/`, 'sid');
    expect(res.body).toBe('first');
    expect(res.cookie).toBe('set');
    expect(seen[0]!.message).toMatch(/Cannot set headers after they are sent/);
    expect(seen[1]).toEqual(seen[0]);
  });
});
