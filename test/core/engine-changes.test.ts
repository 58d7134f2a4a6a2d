/**
 * Change detection on the engine's fast path: a loaded session is compared with the JSON text
 * it was loaded from (the cache's, or serialized on load) and snapshotted per key only when it
 * may have changed. The verdict must stay express-session's: per top-level key, by JSON,
 * in-place changes to nested objects included, key order irrelevant.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SessionEngine } from '../../src/core/engine.js';
import { SerializationError } from '../../src/core/errors.js';
import { generateId } from '../../src/core/id.js';
import type { SessionHost } from '../../src/core/session.js';
import { kSessionStore, type SessionStore } from '../../src/core/store.js';
import { CachedSessionStore } from '../../src/stores/cache/cached-store.js';
import type { InvalidationSource } from '../../src/stores/cache/types.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';

const SECRET = 'engine-changes-test-secret-0123456789abcdef';
const listening: InvalidationSource = { listening: true, subscribe: () => () => {}, close: async () => {} };

let memory: MemoryStore;
afterEach(async () => {
  await memory.close();
});
beforeEach(() => {
  memory = new MemoryStore();
});

type Data = Record<string, unknown>;

for (const kind of [
  'cache (split by key, object values read lazily)',
  'memory store (text made on load)',
] as const) {
  describe(`change detection, ${kind}`, () => {
    let store: SessionStore;
    let engine: SessionEngine;
    let cookie: string;

    beforeEach(async () => {
      store =
        kind === 'cache (split by key, object values read lazily)'
          ? new CachedSessionStore(memory[kSessionStore], listening)
          : memory[kSessionStore];
      engine = new SessionEngine({
        name: 'sid',
        secrets: [SECRET],
        store,
        cookie: { maxAge: 60_000 },
        resave: false,
        saveUninitialized: false,
        rolling: false,
        unset: 'keep',
        genid: generateId,
        hashIds: true,
        idleTimeout: 60_000,
        absoluteTimeout: null,
        touchAfter: 60_000,
        now: Date.now,
      });
      const { setCookie } = await request(undefined, (s) => {
        s.userId = 1;
        s.meta = { ip: '127.0.0.1', tags: ['a'] };
        s.role = 'user';
      });
      cookie = setCookie!.split(';')[0]!;
      vi.spyOn(store, 'update');
    });

    async function request(
      cookieHeader: string | undefined,
      handle: (session: Data) => void,
    ): Promise<{ setCookie: string | null; host: SessionHost }> {
      const host: SessionHost = {};
      const ctx = await engine.load(host, { cookieHeader, secure: false });
      handle(host.session as unknown as Data);
      await ctx.commit();
      return { setCookie: ctx.setCookieHeader(), host };
    }

    const updates = () => vi.mocked(store.update).mock.calls.map(([, change]) => change);

    it('an untouched or merely read session is neither saved nor re-sent', async () => {
      for (let i = 0; i < 2; i++) {
        const { setCookie } = await request(cookie, (s) => {
          expect(s.userId).toBe(1);
        });
        expect(setCookie).toBeNull();
      }
      expect(updates()).toEqual([]);
    });

    it('an in-place change to a nested object is a change of that key only', async () => {
      const { setCookie } = await request(cookie, (s) => {
        (s.meta as { tags: string[] }).tags.push('b');
      });
      expect(setCookie).not.toBeNull();
      expect(updates()).toHaveLength(1);
      expect(updates()[0]!.set).toEqual(
        expect.objectContaining({ meta: { ip: '127.0.0.1', tags: ['a', 'b'] } }),
      );
      expect(Object.keys(updates()[0]!.set).sort()).toEqual(['cookie', 'meta']);
      // And the next request sees it, unchanged.
      await request(cookie, (s) => expect(s.meta).toEqual({ ip: '127.0.0.1', tags: ['a', 'b'] }));
      expect(updates()).toHaveLength(1);
    });

    it('same keys and values in another order, or a value changed and put back, is no change', async () => {
      await request(cookie, (s) => {
        const { userId } = s;
        delete s.userId;
        s.userId = userId;
        s.role = 'admin';
        s.role = 'user';
        s.meta = { ip: '127.0.0.1', tags: ['a'] }; // a new object, same JSON
      });
      expect(updates()).toEqual([]);
    });

    it('an added, deleted or undefined-valued key is judged as express-session judges it', async () => {
      await request(cookie, (s) => {
        s.fn = () => 1; // no JSON: not a change
        s.nothing = undefined;
      });
      expect(updates()).toEqual([]);
      await request(cookie, (s) => {
        delete s.role;
      });
      expect(updates().at(-1)!.unset).toEqual(['role']);
      await request(cookie, (s) => {
        s.added = 0;
      });
      expect(updates().at(-1)!.set).toEqual(expect.objectContaining({ added: 0 }));
    });

    it('data that cannot be serialized still fails with SerializationError naming the key', async () => {
      const host: SessionHost = {};
      const ctx = await engine.load(host, { cookieHeader: cookie, secure: false });
      (host.session as unknown as Data).big = 1n;
      let error: unknown;
      try {
        ctx.commit();
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(SerializationError);
      expect((error as Error).message).toContain('req.session.big cannot be saved');
    });

    it('a stored key that the session cannot hold (a method name) never reads as a change', async () => {
      const { host } = await request(cookie, () => {});
      const key = engine.keyOf(host.sessionID!);
      const record = await memory[kSessionStore].get(key);
      await memory[kSessionStore].update(key, {
        set: { save: 'shadowed' },
        unset: [],
        data: { ...record!.data, save: 'shadowed' },
        expiresAt: record!.expiresAt,
        lastActiveAt: record!.lastActiveAt,
        userId: record!.userId,
        baseVersion: record!.version,
      });
      (store as Partial<CachedSessionStore>).invalidate?.([key]);
      vi.mocked(store.update).mockClear();
      await request(cookie, (s) => {
        expect(typeof s.save).toBe('function');
      });
      expect(updates()).toEqual([]);
    });
  });
}

describe('attach: the steady request without a promise', () => {
  function engineOver(store: SessionStore): SessionEngine {
    return new SessionEngine({
      name: 'sid',
      secrets: [SECRET],
      store,
      cookie: { maxAge: 60_000 },
      resave: false,
      saveUninitialized: false,
      rolling: true,
      unset: 'keep',
      genid: generateId,
      hashIds: true,
      idleTimeout: 60_000,
      absoluteTimeout: null,
      touchAfter: 60_000,
      now: Date.now,
    });
  }

  async function logIn(engine: SessionEngine): Promise<string> {
    const host: SessionHost = {};
    const ctx = await engine.load(host, { cookieHeader: undefined, secure: false });
    (host.session as unknown as Data).userId = 7;
    await ctx.commit();
    return ctx.setCookieHeader()!.split(';')[0]!;
  }

  it('a session the cache holds is attached in the call; a miss, or a cache that is not serving, is a promise', async () => {
    const source = { ...listening };
    const cache = new CachedSessionStore(memory[kSessionStore], source);
    const engine = engineOver(cache);
    const cookie = await logIn(engine);
    const host: SessionHost = {};
    const ctx = engine.attach(host, { cookieHeader: cookie, secure: false });
    expect(ctx).not.toBeInstanceOf(Promise);
    expect((host.session as unknown as Data).userId).toBe(7);
    expect(ctx instanceof Promise ? null : ctx.commit()).toBeNull();
    // Gone from memory (invalidated by another process): the store is asked, asynchronously.
    cache.invalidate([engine.keyOf(host.sessionID!)]);
    const missed = engine.attach({}, { cookieHeader: cookie, secure: false });
    expect(missed).toBeInstanceOf(Promise);
    expect(((await missed).host.session as unknown as Data).userId).toBe(7);
    source.listening = false;
    const bypassed = engine.attach({}, { cookieHeader: cookie, secure: false });
    expect(bypassed).toBeInstanceOf(Promise);
    expect(((await bypassed).host.session as unknown as Data).userId).toBe(7);
    // No cookie at all: a new session, at once.
    expect(engine.attach({}, { cookieHeader: undefined, secure: false })).not.toBeInstanceOf(Promise);
    await cache.close();
  });

  it('a store fault arrives as a rejection of load, never as a throw or an empty session', async () => {
    const cache = new CachedSessionStore(memory[kSessionStore], listening);
    const engine = engineOver(cache);
    const cookie = await logIn(engine);
    cache.clear();
    vi.spyOn(memory[kSessionStore], 'get').mockRejectedValueOnce(new Error('connection refused'));
    await expect(engine.load({}, { cookieHeader: cookie, secure: false })).rejects.toThrow(
      /load the session/,
    );
    await cache.close();
  });
});
