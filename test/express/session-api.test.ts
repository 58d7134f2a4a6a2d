/**
 * `req.session`, `req.sessionID` and `req.sessionStore` as express-session defines them, each
 * method both with a callback and as a promise, on Express 4 and 5.
 */
import type { Express } from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { kSessionStore, MemoryStore, type Session, Store } from '../../src/index.js';
import { startPg } from './support.js';

type Style = 'callback' | 'promise';
type Started = Awaited<ReturnType<typeof startPg>>;

/** Call a session method the way `style` says; resolves either way. */
function call(style: Style, fn: (cb?: (err?: unknown) => void) => unknown): Promise<void> {
  if (style === 'promise') return fn() as Promise<void>;
  return new Promise((resolve, reject) => {
    const ret = fn((err) => (err ? reject(err) : resolve()));
    // With a callback, express-session's methods return the session (for chaining).
    if (!ret || typeof (ret as Session).touch !== 'function')
      reject(new Error('callback style must return the session'));
  });
}

let running: Started[] = [];
afterEach(async () => {
  await Promise.all(running.map((r) => r.close()));
  running = [];
});

async function start(routes: (app: Express) => void, options = {}, version: 4 | 5 = 5) {
  const store = new MemoryStore();
  const started = await startPg({ store, ...options }, routes, { version });
  running.push(started);
  return { ...started, store };
}

function stored(store: MemoryStore, id: string): Promise<Record<string, unknown> | null> {
  return new Promise((resolve, reject) =>
    store.get(id, (err, sess) => (err ? reject(err) : resolve((sess as Record<string, unknown>) ?? null))),
  );
}

const cookieId = (pair: string | undefined) => {
  const value = decodeURIComponent(pair?.split('=')[1] ?? '');
  return value.slice(2, value.lastIndexOf('.'));
};

describe.each([4, 5] as const)('Express %i', (version) => {
  describe.each(['callback', 'promise'] as const)('req.session methods, %s style', (style) => {
    it('exposes id, cookie, sessionID and sessionStore', async () => {
      const { client, store } = await start(
        (app) =>
          app.get('/', (req, res) => {
            req.session.n = 1;
            res.json({
              id: req.session.id,
              sessionID: req.sessionID,
              sameStore: req.sessionStore === store,
              cookie: req.session.cookie.toJSON(),
              idEnumerable: Object.keys(req.session).includes('id'),
            });
          }),
        {},
        version,
      );
      const res = await client.get('/');
      const body = (await res.json()) as Record<string, unknown>;
      expect(body.id).toBe(body.sessionID);
      expect(body.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(body.sameStore).toBe(true);
      expect(body.cookie).toMatchObject({ path: '/', httpOnly: true, originalMaxAge: null });
      expect(body.idEnumerable).toBe(false);
      expect(cookieId(res.headers.getSetCookie()[0]?.split(';')[0])).toBe(body.id);
    });

    it('save() writes the session before answering', async () => {
      let seenInStore: unknown;
      const { client, store } = await start(
        (app) =>
          app.get('/', async (req, res, next) => {
            req.session.n = 7;
            try {
              await call(style, (cb) => req.session.save(cb));
              seenInStore = await stored(store, req.sessionID);
              res.send('ok');
            } catch (err) {
              next(err);
            }
          }),
        {},
        version,
      );
      expect((await client.get('/')).status).toBe(200);
      expect(seenInStore).toMatchObject({ n: 7 });
    });

    it('reload() re-reads the store, dropping unsaved changes', async () => {
      const { client, store } = await start(
        (app) => {
          app.get('/set', (req, res) => {
            req.session.n = 1;
            res.send('ok');
          });
          app.get('/reload', async (req, res, next) => {
            req.session.n = 99; // unsaved
            // Another request changed the stored session meanwhile.
            const sess = await stored(store, req.sessionID);
            await new Promise<void>((r) =>
              store.set(req.sessionID, { ...(sess as object), n: 2 } as never, () => r()),
            );
            try {
              await call(style, (cb) => req.session.reload(cb));
              res.json({ n: req.session.n, hasCookie: typeof req.session.cookie.serialize === 'function' });
            } catch (err) {
              next(err);
            }
          });
        },
        {},
        version,
      );
      await client.get('/set');
      expect(await (await client.get('/reload')).json()).toEqual({ n: 2, hasCookie: true });
    });

    it('reload() of a session the store no longer has fails with "failed to load session"', async () => {
      const { client } = await start(
        (app) =>
          app.get('/', async (req, res) => {
            try {
              await call(style, (cb) => req.session.reload(cb));
              res.send('reloaded');
            } catch (err) {
              res.send(`error: ${(err as Error).message}`);
            }
          }),
        {},
        version,
      );
      expect(await (await client.get('/')).text()).toBe('error: failed to load session');
    });

    it('destroy() removes the session from the store and clears the cookie', async () => {
      let id = '';
      const { client, store } = await start(
        (app) => {
          app.get('/login', (req, res) => {
            req.session.userId = 42;
            id = req.sessionID;
            res.send('ok');
          });
          app.get('/logout', async (req, res) => {
            await call(style, (cb) => req.session.destroy(cb));
            res.json({ session: req.session ?? null });
          });
          app.get('/me', (req, res) => res.json({ userId: req.session.userId ?? null }));
        },
        {},
        version,
      );
      await client.get('/login');
      expect(await stored(store, id)).toMatchObject({ userId: 42 });
      const out = await client.get('/logout');
      expect(await out.json()).toEqual({ session: null });
      expect(out.headers.getSetCookie()[0]).toMatch(/^connect\.sid=; Path=\/; Expires=Thu, 01 Jan 1970/);
      expect(await stored(store, id)).toBeNull();
      expect(client.jar.size).toBe(0);
      expect(await (await client.get('/me')).json()).toEqual({ userId: null });
    });

    it('regenerate() gives a new id, drops the data and the old session', async () => {
      const ids: string[] = [];
      const { client, store } = await start(
        (app) => {
          app.get('/login', (req, res) => {
            req.session.cart = ['book'];
            ids.push(req.sessionID);
            res.send('ok');
          });
          app.get('/regen', async (req, res) => {
            await call(style, (cb) => req.session.regenerate(cb));
            ids.push(req.sessionID);
            res.json({ id: req.session.id, cart: req.session.cart ?? null });
          });
        },
        {},
        version,
      );
      await client.get('/login');
      const out = await client.get('/regen');
      const body = await out.json();
      expect(body).toEqual({ id: ids[1], cart: null });
      expect(ids[1]).not.toBe(ids[0]);
      expect(await stored(store, ids[0]!)).toBeNull();
      expect(await stored(store, ids[1]!)).not.toBeNull();
      expect(cookieId(client.jar.get('connect.sid') && `x=${client.jar.get('connect.sid')}`)).toBe(ids[1]);
    });

    it('regenerate({ keep: true }) carries every key; { keep: [...] } only those listed', async () => {
      const { client } = await start(
        (app) => {
          app.get('/set', (req, res) => {
            Object.assign(req.session, { a: 1, b: { deep: [1, 2] }, c: 'x' });
            res.send('ok');
          });
          app.get('/keep-all', async (req, res) => {
            const before = req.sessionID;
            await call(style, (cb) =>
              cb ? req.session.regenerate({ keep: true }, cb) : req.session.regenerate({ keep: true }),
            );
            const { cookie: _c, ...data } = req.session;
            res.json({ changed: before !== req.sessionID, data });
          });
          app.get('/keep-some', async (req, res) => {
            await call(style, (cb) =>
              cb
                ? req.session.regenerate({ keep: ['b', 'nope'] }, cb)
                : req.session.regenerate({ keep: ['b', 'nope'] }),
            );
            const { cookie: _c, ...data } = req.session;
            res.json(data);
          });
        },
        {},
        version,
      );
      await client.get('/set');
      expect(await (await client.get('/keep-all')).json()).toEqual({
        changed: true,
        data: { a: 1, b: { deep: [1, 2] }, c: 'x' },
      });
      expect(await (await client.get('/keep-some')).json()).toEqual({ b: { deep: [1, 2] } });
    });
  });

  it('touch() and resetMaxAge() restart the cookie lifetime synchronously and chain', async () => {
    const { client } = await start(
      (app) =>
        app.get('/', async (req, res) => {
          const c = req.session.cookie;
          c.maxAge = 10; // nearly expired
          const returned = req.session.touch();
          res.json({ chained: returned === req.session, maxAge: c.maxAge, original: c.originalMaxAge });
        }),
      { cookie: { maxAge: 60_000 } },
      version,
    );
    const body = (await (await client.get('/')).json()) as Record<string, number | boolean>;
    expect(body.chained).toBe(true);
    // Setting maxAge rebases originalMaxAge, as express-session does.
    expect(body.original).toBe(10);
    expect(body.maxAge).toBeGreaterThan(0);
    expect(body.maxAge).toBeLessThanOrEqual(10);
  });

  it('session methods called without a callback and not awaited still take effect before the response', async () => {
    const store = new MemoryStore();
    const face = store[kSessionStore];
    const create = face.create;
    let creates = 0;
    face.create = (key, record) => {
      creates++;
      return create(key, record);
    };
    const { client } = await start(
      (app) => {
        app.get('/save', (req, res) => {
          req.session.n = 1;
          void req.session.save(); // fire and forget, then answer at once
          res.redirect('/after');
        });
        app.get('/logout', (req, res) => {
          void req.session.destroy();
          res.redirect('/');
        });
      },
      { store },
      version,
    );
    const saved = await client.get('/save');
    expect(saved.status).toBe(302);
    const id = cookieId(`x=${client.jar.get('connect.sid')}`);
    expect(await stored(store, id)).toMatchObject({ n: 1 });
    // Inserted once: the commit waited for the save instead of racing it into a second insert.
    expect(creates).toBe(1);
    const out = await client.get('/logout');
    expect(out.headers.getSetCookie()[0]).toMatch(/Expires=Thu, 01 Jan 1970/);
    expect(await stored(store, id)).toBeNull();
  });

  it('a failing fire-and-forget destroy does not crash the process', async () => {
    const store = new MemoryStore();
    const face = store[kSessionStore];
    const { client } = await start(
      (app) => {
        app.get('/login', (req, res) => {
          req.session.n = 1;
          res.send('ok');
        });
        app.get('/logout', (req, res) => {
          face.destroy = () => Promise.reject(new Error('db down'));
          void req.session.destroy();
          res.send('bye');
        });
      },
      { store },
      version,
    );
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      await client.get('/login');
      const out = await client.get('/logout');
      expect(out.status).toBe(200);
      await new Promise((r) => setTimeout(r, 20));
      expect(unhandled).toEqual([]);
      // The row survived the failed destroy, so the cookie was not cleared.
      expect(out.headers.getSetCookie()).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('what counts as a modification (docs/compat.md)', () => {
  async function countingApp(
    handler: (session: Session & Record<string, unknown>, store: MemoryStore) => Promise<void> | void,
  ) {
    const store = new MemoryStore();
    const face = store[kSessionStore];
    const update = face.update;
    let updates = 0;
    face.update = (key, change) => {
      updates++;
      return update(key, change);
    };
    const app = await start(
      (a) => {
        a.get('/login', (req, res) => {
          Object.assign(req.session, { a: 1, b: 2 });
          res.send('ok');
        });
        a.get('/act', async (req, res) => {
          await handler(req.session as Session & Record<string, unknown>, store);
          res.send('ok');
        });
      },
      { store, touchAfter: 0 },
    );
    await app.client.get('/login');
    return { client: app.client, updates: () => updates };
  }

  it('moving a key in the key order (delete, then set the same value) is not a change', async () => {
    const app = await countingApp((s) => {
      delete s.a;
      s.a = 1;
    });
    await app.client.get('/act');
    expect(app.updates()).toBe(0);
  });

  it('after reload(), the reloaded data is the reference: picking up another change does not re-save it', async () => {
    const app = await countingApp(async (s, store) => {
      const sess = await stored(store, s.id);
      await new Promise<void>((r) => store.set(s.id, { ...(sess as object), b: 3 } as never, () => r()));
      await s.reload();
      expect(s.b).toBe(3);
    });
    await app.client.get('/act');
    expect(app.updates()).toBe(0);
  });
});

describe('Store base class', () => {
  it('is an EventEmitter usable with `new` and with Store.call(this)', () => {
    const s = new Store();
    expect(typeof s.on).toBe('function');
    function Old(this: object) {
      Store.call(this as never);
    }
    const instance = Object.create(Store.prototype);
    Old.call(instance);
    expect(typeof instance.emit).toBe('function');
  });
});
