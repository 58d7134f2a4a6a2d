/**
 * Degraded mode, unit level: the cache's last-known-good copies (set aside when the listener
 * goes down, served read-only only when the database cannot be reached), the error
 * classification behind it, the engine's read-only requests, and deferred touches written on
 * shutdown. The end-to-end outage (a real PostgreSQL stopped under load) is outage.test.ts.
 */
import http from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { sign } from '../../src/core/signature.js';
import session, { kSessionStore, type SessionStore } from '../../src/index.js';
import {
  CachedSessionStore,
  DEFAULT_LAST_KNOWN_GOOD_MAX_AGE,
  type InvalidationHandlers,
  type InvalidationSource,
  isConnectionError,
} from '../../src/stores/cache/index.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { listen } from '../helpers/http.js';
import { HOUR, sessionRecord as record } from '../helpers/records.js';
import { touchRecorder } from '../helpers/touch-recorder.js';

class FakeSource implements InvalidationSource {
  listening = true;
  readonly handlers = new Set<InvalidationHandlers>();
  subscribe(h: InvalidationHandlers): () => void {
    this.handlers.add(h);
    return () => this.handlers.delete(h);
  }
  async close(): Promise<void> {}
  down(): void {
    this.listening = false;
    for (const h of this.handlers) h.onDown();
  }
  up(): void {
    this.listening = true;
    for (const h of this.handlers) h.onUp();
  }
}

const refused = () =>
  Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
const sqlError = () =>
  Object.assign(new Error('relation "session" does not exist'), { code: '42P01', severity: 'ERROR' });

/** A MemoryStore's engine face that can be switched to failing with a given error. */
function failingStore() {
  const memory = new MemoryStore()[kSessionStore];
  let failure: (() => Error) | undefined;
  const calls: string[] = [];
  const guard = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    calls.push(name);
    if (failure) throw failure();
    return work();
  };
  const store: SessionStore = {
    tracksActivity: true,
    get: (key, options) => guard('get', () => memory.get(key, options)),
    create: (key, record) => guard('create', () => memory.create(key, record)),
    update: (key, change) => guard('update', () => memory.update(key, change)),
    touch: (key, expiresAt, lastActiveAt) => guard('touch', () => memory.touch(key, expiresAt, lastActiveAt)),
    destroy: (key) => guard('destroy', () => memory.destroy(key)),
    destroyByUser: (userId, exceptKey) =>
      guard('destroyByUser', () => memory.destroyByUser!(userId, exceptKey)),
  };
  return {
    store,
    memory,
    calls,
    fail(err: (() => Error) | undefined) {
      failure = err;
    },
  };
}

function setup(options: ConstructorParameters<typeof CachedSessionStore>[2] = {}) {
  const inner = failingStore();
  const source = new FakeSource();
  const cache = new CachedSessionStore(inner.store, source, options);
  return { inner, source, cache };
}

describe('isConnectionError', () => {
  it('is true for an unreachable or departing database, false for answers from a live one', () => {
    const yes = [
      refused(),
      Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
      Object.assign(new Error('connect ETIMEDOUT'), { code: 'ETIMEDOUT' }),
      Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }),
      Object.assign(new Error('the database system is shutting down'), { code: '57P03' }),
      Object.assign(new Error('the database system is starting up'), { code: '57P03' }),
      Object.assign(new Error('connection failure'), { code: '08006' }),
      new Error('timeout exceeded when trying to connect'),
      new Error('Connection terminated due to connection timeout'),
      new Error('Connection terminated unexpectedly'),
      new Error('Query read timeout'),
      Object.assign(new AggregateError([refused(), refused()], 'connect failed'), { code: undefined }),
      new Error('session store failed to load the session', { cause: refused() }),
    ];
    const no = [
      sqlError(),
      Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' }),
      Object.assign(new Error('duplicate key value violates unique constraint'), { code: '23505' }),
      Object.assign(new Error('sorry, too many clients already'), { code: '53300' }),
      Object.assign(new Error('password authentication failed'), { code: '28P01' }),
      new TypeError('Cannot read properties of undefined'),
      new SyntaxError('Unexpected token'),
      null,
      undefined,
      'ECONNREFUSED',
      { code: '42P01', cause: refused() },
    ];
    for (const err of yes) expect(isConnectionError(err), String((err as Error).message)).toBe(true);
    for (const err of no) expect(isConnectionError(err), String((err as Error)?.message ?? err)).toBe(false);
  });
});

describe('CachedSessionStore: last-known-good copies', () => {
  it('sets cached sessions aside on down; serves them read-only only when the database is unreachable', async () => {
    const { inner, source, cache } = setup();
    await inner.memory.create('k1', record('u1', { n: 1 }));
    await inner.memory.create('k2', record('u2'));
    await cache.get('k1');
    expect(cache.stats()).toMatchObject({ entries: 1, lastKnownGood: 0 });

    source.down();
    expect(cache.stats()).toMatchObject({ entries: 0, lastKnownGood: 1, listening: false });

    // Database reachable: reads go through, as always; the copy is not served.
    inner.calls.length = 0;
    const through = await cache.get('k1');
    expect(through?.readOnly).toBeUndefined();
    expect(inner.calls).toEqual(['get']);

    // Unreachable: the copy, marked read-only, each caller its own.
    inner.fail(refused);
    const a = await cache.get('k1');
    expect(a).toMatchObject({ readOnly: true, userId: 'u1', data: { n: 1 } });
    a!.data.n = 99;
    expect((await cache.get('k1'))?.data.n).toBe(1);
    expect(cache.stats().staleServed).toBe(2);
    // Never cached: unknown here, so a 503 (the error goes up).
    await expect(cache.get('k2')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    // `fresh` reads are never answered from memory.
    await expect(cache.get('k1', { fresh: true })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    // A SQL error is an answer from a live server: never papered over.
    inner.fail(sqlError);
    await expect(cache.get('k1')).rejects.toMatchObject({ code: '42P01' });
  });

  it('drops the copies when the listener is up again, and caches afresh', async () => {
    const { inner, source, cache } = setup();
    await inner.memory.create('k1', record());
    await cache.get('k1');
    source.down();
    source.up();
    expect(cache.stats()).toMatchObject({ entries: 0, lastKnownGood: 0 });
    inner.fail(refused);
    await expect(cache.get('k1')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    inner.fail(undefined);
    await cache.get('k1');
    inner.fail(refused);
    // Listening again: served from the live cache, as before.
    expect((await cache.get('k1'))?.readOnly).toBeUndefined();
  });

  it('serves a copy only while it is younger than lastKnownGoodMaxAge (default 15 min)', async () => {
    expect(DEFAULT_LAST_KNOWN_GOOD_MAX_AGE).toBe(15 * 60_000);
    let now = Date.now();
    const { inner, source, cache } = setup({ now: () => now, lastKnownGoodMaxAge: 60_000 });
    await inner.memory.create('k1', record());
    await cache.get('k1');
    source.down();
    inner.fail(refused);
    now += 60_000;
    expect((await cache.get('k1'))?.readOnly).toBe(true);
    now += 1;
    await expect(cache.get('k1')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(cache.stats().lastKnownGood).toBe(0);
  });

  it('never serves a copy past the session’s own expiry', async () => {
    let now = Date.now();
    const { inner, source, cache } = setup({ now: () => now });
    const rec = record();
    rec.expiresAt = now + 1000;
    await inner.memory.create('k1', rec);
    await cache.get('k1');
    source.down();
    inner.fail(refused);
    expect((await cache.get('k1'))?.readOnly).toBe(true);
    now += 1001;
    await expect(cache.get('k1')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('lastKnownGoodMaxAge: 0 turns degraded mode off: down flushes', async () => {
    const { inner, source, cache } = setup({ lastKnownGoodMaxAge: 0 });
    await inner.memory.create('k1', record());
    await cache.get('k1');
    source.down();
    expect(cache.stats()).toMatchObject({ entries: 0, lastKnownGood: 0 });
    inner.fail(refused);
    await expect(cache.get('k1')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('is bounded like the cache (entries and bytes)', async () => {
    const { inner, source, cache } = setup({ max: 3 });
    for (let i = 0; i < 6; i++) {
      await inner.memory.create(`k${i}`, record());
      await cache.get(`k${i}`);
    }
    source.down();
    expect(cache.stats().lastKnownGood).toBe(3);
    // Reads through while down refresh and add copies, within the same bound.
    for (let i = 0; i < 6; i++) await cache.get(`k${i}`);
    expect(cache.stats().lastKnownGood).toBe(3);
    inner.fail(refused);
    // The most recently used ones are kept.
    expect((await cache.get('k5'))?.readOnly).toBe(true);
    await expect(cache.get('k0')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('while down, a read that finds the session gone, a destroy or a user revocation removes its copy', async () => {
    const { inner, source, cache } = setup();
    for (const k of ['a', 'b', 'c', 'd']) {
      await inner.memory.create(k, record(k === 'd' ? 'u2' : 'u1'));
      await cache.get(k);
    }
    source.down();
    await inner.memory.destroy('a'); // another process's logout, unheard
    expect(await cache.get('a')).toBeNull(); // ...but the database says so
    await cache.destroy('b'); // this process's logout
    await cache.destroyByUser!('u1', undefined); // revocation of every session of u1 (c)
    inner.fail(refused);
    for (const k of ['a', 'b', 'c'])
      await expect(cache.get(k)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect((await cache.get('d'))?.readOnly).toBe(true);
  });

  it('while down, this process’s own writes refresh the copy', async () => {
    const { inner, source, cache } = setup();
    const rec = record('u1', { n: 1 });
    await inner.memory.create('k1', rec);
    await cache.get('k1');
    source.down();
    await cache.update('k1', {
      set: { n: 2 },
      unset: [],
      data: { ...rec.data, n: 2 },
      expiresAt: Date.now() + HOUR,
      lastActiveAt: Date.now(),
      userId: 'u1',
      baseVersion: 0,
    });
    await cache.create('k2', record('u2', { n: 3 }));
    inner.fail(refused);
    expect((await cache.get('k1'))?.data.n).toBe(2);
    expect((await cache.get('k2'))?.data.n).toBe(3);
  });
});

describe('the engine with a read-only session', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });

  async function start(options: { resave?: boolean } = {}) {
    const inner = failingStore();
    const source = new FakeSource();
    const cache = new CachedSessionStore(inner.store, source);
    const mw = session({
      secret: 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz',
      name: 'sid',
      store: { [kSessionStore]: cache },
      resave: options.resave ?? false,
      saveUninitialized: false,
      rolling: true,
      cookie: { maxAge: HOUR },
      touchAfter: 0,
    });
    const app = express();
    app.use(mw);
    app.get('/login', (req, res) => {
      req.session.userId = 7;
      res.send(req.sessionID);
    });
    app.get('/me', (req, res) => res.json({ userId: req.session.userId ?? null }));
    app.get('/change', (req, res) => {
      req.session.n = 1;
      res.send('changed');
    });
    app.get('/save', async (req, res, next) => {
      try {
        if (req.query.change) req.session.n = 2;
        await req.session.save();
        res.send('saved');
      } catch (err) {
        next(err);
      }
    });
    app.get('/logout', (req, res, next) => req.session.destroy((err) => (err ? next(err) : res.send('out'))));
    app.get('/regenerate', (req, res, next) =>
      req.session.regenerate((err) => (err ? next(err) : res.send('new'))),
    );
    app.use(
      (
        err: { status?: number; headers?: Record<string, string> },
        _req: Request,
        res: Response,
        _next: NextFunction,
      ) => {
        for (const [k, v] of Object.entries(err.headers ?? {})) res.setHeader(k, v);
        res.status(err.status ?? 500).send('error');
      },
    );
    const server = await listen(http.createServer(app));
    closers.push(server.close);
    const login = await fetch(`${server.url}/login`);
    const cookie = login.headers.getSetCookie()[0]!.split(';')[0]!;
    // Cached while listening, then the listener and the database go away.
    expect(await (await fetch(`${server.url}/me`, { headers: { cookie } })).json()).toEqual({ userId: 7 });
    source.down();
    inner.fail(refused);
    inner.calls.length = 0;
    const get = (path: string) => fetch(`${server.url}${path}`, { headers: { cookie } });
    return { get, inner, cache, cookie };
  }

  it('reads work; no touch, no write, no Set-Cookie (rolling or not)', async () => {
    const { get, inner } = await start();
    const res = await get('/me');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ userId: 7 });
    expect(res.headers.getSetCookie()).toEqual([]);
    expect(inner.calls).toEqual(['get']); // the read-through that failed; nothing else
  });

  it('resave: true does not turn an unchanged read-only session into a failed write', async () => {
    const { get, inner } = await start({ resave: true });
    expect((await get('/me')).status).toBe(200);
    expect(inner.calls).toEqual(['get']);
  });

  it('any change, save of a change, logout or regenerate is a 503 with Retry-After and leaves the cookie alone', async () => {
    const { get, inner } = await start();
    // save() of an unchanged session has nothing to lose: a no-op.
    expect((await get('/save')).status).toBe(200);
    for (const path of ['/change', '/save?change=1', '/logout', '/regenerate']) {
      inner.calls.length = 0;
      const res = await get(path);
      expect(res.status, path).toBe(503);
      expect(res.headers.get('retry-after'), path).toMatch(/^\d+$/);
      expect(res.headers.getSetCookie(), path).toEqual([]);
      expect(inner.calls, path).toEqual(['get']);
    }
    // Still logged in once the database is back.
    expect((await get('/me')).status).toBe(200);
  });

  it('an unknown or uncached session is a 503, never anonymous', async () => {
    const { get } = await start();
    const other = `sid=${encodeURIComponent(`s:${sign('x'.repeat(43), 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz')}`)}`;
    const res = await get('/me').then(() => get('/me'));
    expect(res.status).toBe(200);
    const unknown = await fetch(res.url, { headers: { cookie: other } });
    expect(unknown.status).toBe(503);
    expect(unknown.headers.getSetCookie()).toEqual([]);
  });
});

describe('deferred touches', () => {
  it('throttled activity is written by flush({ touches: true }), not by flush()', async () => {
    const { store, touches } = touchRecorder();
    let now = Date.UTC(2030, 0, 1);
    const mw = session({
      secret: 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz',
      name: 'sid',
      store,
      resave: false,
      saveUninitialized: false,
      rolling: true,
      idleTimeout: HOUR,
      touchAfter: 60_000,
      now: () => now,
    });
    const app = express();
    app.use(mw);
    app.get('/login', (req, res) => {
      req.session.userId = 7;
      res.send('ok');
    });
    app.get('/logout', (req, res) => req.session.destroy(() => res.send('out')));
    app.get('/me', (_req, res) => res.send('me'));
    const server = await listen(http.createServer(app));
    try {
      const cookieOf = async () =>
        (await fetch(`${server.url}/login`)).headers.getSetCookie()[0]!.split(';')[0]!;
      const a = await cookieOf();
      const b = await cookieOf();
      for (const step of [1000, 2000, 3000]) {
        now = Date.UTC(2030, 0, 1) + step;
        await fetch(`${server.url}/me`, { headers: { cookie: a } });
        await fetch(`${server.url}/me`, { headers: { cookie: b } });
      }
      await fetch(`${server.url}/logout`, { headers: { cookie: b } }); // b's activity no longer matters
      await mw.flush();
      expect(touches).toEqual([]);
      await mw.flush({ touches: true });
      expect(touches).toEqual([{ key: expect.any(String), lastActiveAt: Date.UTC(2030, 0, 1) + 3000 }]);
      await mw.flush({ touches: true });
      expect(touches).toHaveLength(1);
    } finally {
      await server.close();
    }
  });
});
