/**
 * Stores written for express-session, used by pgsession's middleware: readiness events, stores
 * with and without `touch`, old-style `util.inherits` stores, file-store ENOENT, rows written by
 * express-session itself, and stores whose `touch` keeps only a TTL.
 */
import type { EventEmitter } from 'node:events';
import util from 'node:util';
import cookieSignature from 'cookie-signature';
import type { Express } from 'express';
import expressSession from 'express-session';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { MemoryStore, Store } from '../../src/index.js';
import { fetchSeen, type RecordingStore, recordingStoreClass, SECRET, startPg } from './support.js';

type Started = Awaited<ReturnType<typeof startPg>>;
const running: Started[] = [];
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(running.splice(0).map((r) => r.close()));
});

const routes = (app: Express) => {
  app.get('/login', (req, res) => {
    req.session.userId = 9;
    res.send(req.sessionID);
  });
  app.get('/me', (req, res) =>
    res.json({
      hasSession: req.session !== undefined,
      userId: req.session?.userId ?? null,
      id: req.sessionID ?? null,
    }),
  );
};

async function start(options: Parameters<typeof startPg>[0]) {
  const app = await startPg({ name: 'sid', ...options }, routes);
  running.push(app);
  return app;
}

const ExpressBase = expressSession.Store as unknown as new () => EventEmitter;

describe('store readiness', () => {
  it('a store that emits disconnect is bypassed (no session) until it emits connect', async () => {
    const store = new (recordingStoreClass(ExpressBase))() as RecordingStore;
    const app = await start({ store });
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    store.emit('disconnect');
    store.calls = [];
    const down = await fetchSeen(`${app.url}/me`, 'sid', login.pair);
    expect(JSON.parse(down.body)).toEqual({ hasSession: false, userId: null, id: null });
    expect(down.cookie).toBe('none');
    expect(store.calls).toEqual([]);
    store.emit('connect');
    const up = await fetchSeen(`${app.url}/me`, 'sid', login.pair);
    expect(JSON.parse(up.body)).toMatchObject({ hasSession: true, userId: 9 });
  });
});

describe.each([true, false])('a store %s touch', (withTouch) => {
  it(
    withTouch
      ? 'is touched for an unchanged session, with the session as express-session hands it'
      : 'is left alone for an unchanged session',
    async () => {
      const store = new (recordingStoreClass(ExpressBase, { touch: withTouch }))() as RecordingStore;
      const app = await start({ store, touchAfter: 0, cookie: { maxAge: 60_000 } });
      const login = await fetchSeen(`${app.url}/login`, 'sid');
      expect(store.calls.filter((c) => c.op === 'set')).toHaveLength(1);
      // Stores compute their TTL from sess.cookie.maxAge or .expires: both must be usable.
      expect(store.calls.find((c) => c.op === 'set')?.maxAgeType).toBe('number');
      const storedExpiry = JSON.parse(store.sessions.get(hashId(login.body))!).cookie.expires;
      await new Promise((r) => setTimeout(r, 20));
      store.calls = [];
      await fetchSeen(`${app.url}/me`, 'sid', login.pair);
      await app.mw.flush();
      if (withTouch) {
        expect(store.ops()).toEqual(['get', 'touch']);
        const touched = store.calls[1]!;
        expect(touched.maxAgeType).toBe('number');
        expect((touched.sess as { userId: number }).userId).toBe(9);
        expect(Date.parse((touched.sess as { cookie: { expires: string } }).cookie.expires)).toBeGreaterThan(
          Date.parse(storedExpiry),
        );
      } else {
        expect(store.ops()).toEqual(['get']);
      }
    },
  );
});

describe('old-style stores (util.inherits + Store.call(this))', () => {
  function defineOldStore(Base: typeof Store | (new () => EventEmitter)) {
    function OldStore(this: { map: Map<string, string> }) {
      (Base as unknown as (this: unknown) => void).call(this);
      this.map = new Map();
    }
    util.inherits(OldStore, Base as unknown as new () => EventEmitter);
    const proto = OldStore.prototype as Record<string, unknown>;
    proto.get = function get(
      this: { map: Map<string, string> },
      sid: string,
      cb: (e: unknown, s?: unknown) => void,
    ) {
      const json = this.map.get(sid);
      process.nextTick(cb, null, json ? JSON.parse(json) : null);
    };
    proto.set = function set(
      this: { map: Map<string, string> },
      sid: string,
      sess: unknown,
      cb?: () => void,
    ) {
      this.map.set(sid, JSON.stringify(sess));
      if (cb) process.nextTick(cb);
    };
    proto.destroy = function destroy(this: { map: Map<string, string> }, sid: string, cb?: () => void) {
      this.map.delete(sid);
      if (cb) process.nextTick(cb);
    };
    return OldStore as unknown as new () => EventEmitter & { map: Map<string, string> };
  }

  it.each([
    ['pgsession', Store],
    ['express-session', ExpressBase],
  ] as const)("inheriting %s's Store: login, read back, logout", async (_name, Base) => {
    const OldStore = defineOldStore(Base);
    const store = new OldStore();
    expect(store).toBeInstanceOf(Base);
    const app = await startPg({ name: 'sid', store: store as never }, (a) => {
      routes(a);
      a.get('/logout', (req, res) => req.session.destroy(() => res.send('bye')));
    });
    running.push(app);
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    expect(store.map.size).toBe(1);
    expect(JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', login.pair)).body).userId).toBe(9);
    const out = await fetchSeen(`${app.url}/logout`, 'sid', login.pair);
    expect(out.cookie).toBe('clear');
    expect(store.map.size).toBe(0);
  });

  it("pgsession's Store gives subclasses express-session's load/createSession/regenerate", async () => {
    const OldStore = defineOldStore(Store);
    const store = new OldStore() as unknown as Store & { map: Map<string, string> };
    store.map.set(
      'abc',
      JSON.stringify({ cookie: { originalMaxAge: 1000, expires: new Date(Date.now() + 1000) }, n: 1 }),
    );
    const loaded = await new Promise<Record<string, unknown>>((resolve, reject) =>
      store.load('abc', (err, s) => (err ? reject(err) : resolve(s as never))),
    );
    expect(loaded.n).toBe(1);
    expect(loaded.id).toBe('abc');
    expect((loaded.cookie as { originalMaxAge: number }).originalMaxAge).toBe(1000);
    expect((loaded.cookie as { expires: unknown }).expires).toBeInstanceOf(Date);
  });
});

describe('file stores', () => {
  it('a get failing with ENOENT means "no such session", as in express-session', async () => {
    const store = new (recordingStoreClass(ExpressBase))() as RecordingStore;
    const app = await start({ store });
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    store.get = (_sid, cb) => setImmediate(() => cb(Object.assign(new Error('no file'), { code: 'ENOENT' })));
    const me = await fetchSeen(`${app.url}/me`, 'sid', login.pair);
    expect(me.status).toBe(200);
    expect(JSON.parse(me.body)).toMatchObject({ hasSession: true, userId: null });
  });
});

describe('switching from express-session', () => {
  /** A cookie and a row as express-session writes them: raw id as the key. */
  function legacySession(id: string) {
    const cookie = `sid=${encodeURIComponent(`s:${cookieSignature.sign(id, SECRET)}`)}`;
    const sess = {
      cookie: {
        originalMaxAge: 3_600_000,
        expires: new Date(Date.now() + 3_600_000).toISOString(),
        httpOnly: true,
        path: '/',
      },
      userId: 77,
    };
    return { cookie, sess };
  }

  it('MemoryStore: the old row is found by its raw id and re-keyed to the hash', async () => {
    const store = new MemoryStore();
    const id = 'legacyIdFromUidSafe24BytesXXXXXXX';
    const { cookie, sess } = legacySession(id);
    await new Promise<void>((r) => store.set(id, sess as never, () => r()));
    const app = await start({ store });
    const me = await fetchSeen(`${app.url}/me`, 'sid', cookie);
    expect(JSON.parse(me.body)).toEqual({ hasSession: true, userId: 77, id });
    const keys = await new Promise<string[]>((r) => store.ids((_e, ids) => r(ids ?? [])));
    // Listed by its storage key (tagged, see MemoryStore.all): the hash of the id.
    expect(keys.map((k) => k.split('.')[0])).toEqual([hashId(id)]);
  });

  it('a store written for express-session: same', async () => {
    const store = new (recordingStoreClass(ExpressBase))() as RecordingStore;
    const id = 'anotherLegacyId0123456789abcdefgh';
    const { cookie, sess } = legacySession(id);
    store.sessions.set(id, JSON.stringify(sess));
    const app = await start({ store });
    expect(JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', cookie)).body).userId).toBe(77);
    expect([...store.sessions.keys()]).toEqual([hashId(id)]);
    expect(JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', cookie)).body).userId).toBe(77);
  });

  it("express-session's own MemoryStore works as pgsession's store", async () => {
    const store = new expressSession.MemoryStore();
    const app = await start({ store: store as never, cookie: { maxAge: 60_000 } });
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    expect(JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', login.pair)).body).userId).toBe(9);
  });
});

describe('stores whose touch keeps only a TTL (connect-pg-simple, connect-redis)', () => {
  /** A store that, like connect-pg-simple, expires rows by a TTL column that touch alone updates. */
  function ttlOnlyStore() {
    const Base = recordingStoreClass(ExpressBase, { touch: false });
    return new (class extends Base {
      readonly expiry = new Map<string, number>();
      override get(sid: string, cb: (e?: unknown, v?: unknown) => void) {
        if ((this.expiry.get(sid) ?? 0) <= Date.now()) this.sessions.delete(sid);
        super.get(sid, cb);
      }
      override set(sid: string, sess: { cookie?: object }, cb?: (e?: unknown) => void) {
        this.expiry.set(sid, new Date((sess.cookie as { expires: Date }).expires).getTime());
        super.set(sid, sess, cb);
      }
      touch(sid: string, sess: { cookie: { expires: Date } }, cb?: () => void) {
        this.calls.push({ op: 'touch', sid });
        this.expiry.set(sid, new Date(sess.cookie.expires).getTime());
        setImmediate(() => cb?.());
      }
    })();
  }

  it('an active user is not logged out after idleTimeout; an idle one is', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.UTC(2030, 0, 1) });
    const store = ttlOnlyStore();
    const app = await start({ store: store as never, cookie: { maxAge: 10_000 } });
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    for (let i = 0; i < 6; i++) {
      vi.advanceTimersByTime(6000);
      const me = JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', login.pair)).body);
      expect(me.userId, `after ${(i + 1) * 6} s of activity`).toBe(9);
      await app.mw.flush();
    }
    expect(store.count('touch')).toBe(6);
    vi.advanceTimersByTime(10_001);
    expect(JSON.parse((await fetchSeen(`${app.url}/me`, 'sid', login.pair)).body).userId).toBeNull();
  });
});
