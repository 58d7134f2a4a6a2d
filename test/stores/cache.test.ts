import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it, vi } from 'vitest';
import { hashId } from '../../src/core/id.js';
import {
  kSessionStore,
  type SessionChange,
  type SessionRecord,
  type SessionStore,
} from '../../src/core/store.js';
import {
  ALL_KEYS,
  CachedSessionStore,
  decodePayload,
  ENTRY_OVERHEAD,
  encodePayloads,
  entrySize,
  type InvalidationHandlers,
  type InvalidationSource,
  MAX_PAYLOAD_BYTES,
} from '../../src/stores/cache/index.js';
import { MemoryStore } from '../../src/stores/memory/memory-store.js';
import { HOUR, sessionRecord as record } from '../helpers/records.js';

/** A source driven by the test. */
class FakeSource implements InvalidationSource {
  listening = true;
  readonly handlers = new Set<InvalidationHandlers>();
  readonly close = vi.fn(async () => {});
  subscribe(h: InvalidationHandlers): () => void {
    this.handlers.add(h);
    return () => this.handlers.delete(h);
  }
  down(): void {
    this.listening = false;
    for (const h of this.handlers) h.onDown();
  }
  up(): void {
    this.listening = true;
    for (const h of this.handlers) h.onUp();
  }
  invalidate(...keys: string[]): void {
    for (const h of this.handlers) h.onInvalidate(keys);
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** An in-memory store whose calls are counted and whose reads can be held. */
function innerStore() {
  const memory = new MemoryStore()[kSessionStore];
  const calls: Record<string, number> = {};
  let gate: Promise<void> | undefined;
  const count = (name: string) => {
    calls[name] = (calls[name] ?? 0) + 1;
  };
  const store: SessionStore = {
    get: async (key, options) => {
      count('get');
      // Read first, then wait: the caller gets what the store held when the read ran.
      const record = await memory.get(key, options);
      if (gate) await gate;
      return record;
    },
    create: async (key, record) => {
      count('create');
      await memory.create(key, record);
    },
    update: async (key, change) => {
      count('update');
      return memory.update(key, change);
    },
    touch: async (key, expiresAt, lastActiveAt) => {
      count('touch');
      return memory.touch(key, expiresAt, lastActiveAt);
    },
    destroy: async (key) => {
      count('destroy');
      await memory.destroy(key);
    },
    listByUser: (userId) => memory.listByUser!(userId),
    destroyByUser: async (userId, exceptKey) => {
      count('destroyByUser');
      return memory.destroyByUser!(userId, exceptKey);
    },
    prune: () => memory.prune!(),
    close: vi.fn(async () => {}),
  };
  return {
    store,
    memory,
    calls,
    hold(): () => void {
      const d = deferred();
      gate = d.promise;
      return () => {
        gate = undefined;
        d.resolve();
      };
    },
  };
}

function change(set: Record<string, unknown>, base: SessionRecord): SessionChange {
  return {
    set,
    unset: [],
    data: { ...base.data, ...set },
    expiresAt: Date.now() + HOUR,
    lastActiveAt: Date.now(),
    userId: base.userId,
    baseVersion: base.version,
  };
}

function setup(options: ConstructorParameters<typeof CachedSessionStore>[2] = {}) {
  const inner = innerStore();
  const source = new FakeSource();
  const cache = new CachedSessionStore(inner.store, source, options);
  return { inner, source, cache };
}

describe('CachedSessionStore', () => {
  it('serves a session from memory after the first load', async () => {
    const { inner, cache } = setup();
    await inner.memory.create('k1', record());
    expect((await cache.get('k1'))?.userId).toBe('u1');
    expect((await cache.get('k1'))?.userId).toBe('u1');
    expect((await cache.get('k1'))?.data.userId).toBe('u1');
    expect(inner.calls.get).toBe(1);
    expect(cache.stats()).toMatchObject({ hits: 2, misses: 1, entries: 1 });
  });

  it('caches what it creates, and never caches unknown ids', async () => {
    const { inner, cache } = setup();
    const rec = record();
    await cache.create('new', rec);
    rec.data.userId = 'changed after create';
    expect((await cache.get('new'))?.data.userId).toBe('u1');
    expect(inner.calls.get ?? 0).toBe(0);
    expect(await cache.get('nope')).toBeNull();
    expect(await cache.get('nope')).toBeNull();
    expect(inner.calls.get).toBe(2);
  });

  it('reads through and caches nothing while the source is not listening', async () => {
    const { inner, source, cache } = setup();
    source.listening = false;
    await inner.memory.create('k1', record());
    await cache.get('k1');
    await cache.get('k1');
    expect(inner.calls.get).toBe(2);
    await cache.create('k2', record());
    await cache.get('k2');
    expect(inner.calls.get).toBe(3);
    expect(cache.stats()).toMatchObject({ bypasses: 3, entries: 0, listening: false });
    source.up();
    await cache.get('k1');
    await cache.get('k1');
    expect(inner.calls.get).toBe(4);
  });

  it('flushes on down, reads through while down, starts empty on up', async () => {
    const { inner, source, cache } = setup();
    await inner.memory.create('k1', record());
    await cache.get('k1');
    expect(cache.stats().entries).toBe(1);
    source.down();
    expect(cache.stats().entries).toBe(0);
    // Changed while nobody was listening: the next read must see it.
    await inner.memory.destroy('k1');
    expect(await cache.get('k1')).toBeNull();
    source.up();
    await inner.memory.create('k1', record('u2'));
    expect((await cache.get('k1'))?.userId).toBe('u2');
    expect((await cache.get('k1'))?.userId).toBe('u2');
    expect(inner.calls.get).toBe(3);
  });

  it('flushes entries if the source stops listening without saying so', async () => {
    const { inner, source, cache } = setup();
    await inner.memory.create('k1', record());
    await cache.get('k1');
    source.listening = false;
    await inner.memory.destroy('k1');
    expect(await cache.get('k1')).toBeNull();
    source.listening = true;
    expect(await cache.get('k1')).toBeNull();
  });

  it('evicts invalidated keys, and everything on "*"', async () => {
    const { inner, source, cache } = setup();
    await inner.memory.create('k1', record());
    await inner.memory.create('k2', record());
    await cache.get('k1');
    await cache.get('k2');
    source.invalidate('k1');
    expect(cache.stats()).toMatchObject({ entries: 1, invalidations: 1 });
    await cache.get('k1');
    expect(inner.calls.get).toBe(3);
    source.invalidate(ALL_KEYS);
    expect(cache.stats().entries).toBe(0);
  });

  // Issue 12, item 7: any database role can NOTIFY the channel; each '*' used to flush every
  // cache at once, so a flood turned every request into a database read.
  it('a flood of flush-everything notifications from other processes flushes at most once per remoteFlushIntervalMs, and once more after it', async () => {
    const { inner, source, cache } = setup({ remoteFlushIntervalMs: 300 });
    await inner.memory.create('k1', record());
    await cache.get('k1');
    const started = performance.now();
    for (let i = 0; i < 1000; i++) {
      source.invalidate(ALL_KEYS);
      await cache.get('k1');
    }
    expect(performance.now() - started).toBeLessThan(300); // the flood fitted in one interval
    // One flush (the first '*' after a quiet spell is honoured at once), one read-through.
    expect(inner.calls.get).toBe(2);
    expect(cache.stats()).toMatchObject({ flushes: 1, flushesDeferred: 999 });
    // The '*'s that arrived meanwhile are not lost: one more flush at the end of the interval.
    await new Promise((r) => setTimeout(r, 350));
    expect(cache.stats()).toMatchObject({ flushes: 2, entries: 0 });
    await cache.get('k1');
    expect(inner.calls.get).toBe(3);
    // Keys named beside '*' are forgotten at once.
    await cache.get('k1');
    source.invalidate(ALL_KEYS, 'k1');
    expect(cache.stats().entries).toBe(0);
    await cache.close();
  });

  it('the flushes that keep the cache correct are never delayed: listener down and up, clear(), a local flush-everything', async () => {
    const { inner, source, cache } = setup({ remoteFlushIntervalMs: 60_000 });
    await inner.memory.create('k1', record());
    await cache.get('k1');
    source.invalidate(ALL_KEYS); // starts a long interval
    await cache.get('k1');
    expect(cache.stats().entries).toBe(1);
    source.down();
    source.up();
    expect(cache.stats().entries).toBe(0);
    await cache.get('k1');
    cache.clear();
    expect(cache.stats().entries).toBe(0);
    await cache.get('k1');
    cache.invalidate([ALL_KEYS]);
    expect(cache.stats().entries).toBe(0);
    await cache.close();
  });

  it('treats a cached session past its expiry as a miss', async () => {
    let now = Date.now();
    const { inner, cache } = setup({ now: () => now });
    const rec = record();
    await inner.memory.create('k1', rec);
    await cache.get('k1');
    now = rec.expiresAt + 1;
    await cache.get('k1');
    expect(inner.calls.get).toBe(2);
    expect(cache.stats().misses).toBe(2);
  });

  it('peek answers from memory only: a live cached copy, else undefined (never a null, never the inner store)', async () => {
    let now = Date.now();
    const { inner, source, cache } = setup({ now: () => now });
    const rec = record();
    await inner.memory.create('k1', rec);
    expect(cache.peek('k1')).toBeUndefined(); // not cached yet: only get can say
    await cache.get('k1');
    const peeked = cache.peek('k1');
    expect(peeked?.data.userId).toBe('u1');
    // The caller owns what it got, as from get.
    peeked!.data.userId = 'mutated';
    expect(cache.peek('k1')?.data.userId).toBe('u1');
    expect(inner.calls.get).toBe(1);
    expect(cache.stats()).toMatchObject({ hits: 2, misses: 1 });
    // Invalidated elsewhere: gone from memory, so peek has no answer and get reads through.
    source.invalidate('k1');
    expect(cache.peek('k1')).toBeUndefined();
    await cache.get('k1');
    // Not listening: nothing is served from memory, and peek counts no bypass (get does).
    source.listening = false;
    expect(cache.peek('k1')).toBeUndefined();
    expect(cache.stats().bypasses).toBe(0);
    source.listening = true;
    // Past its expiry: dropped, not served.
    now = rec.expiresAt + 1;
    expect(cache.peek('k1')).toBeUndefined();
    expect(cache.stats().entries).toBe(0);
  });

  it('reads through on `fresh` and refreshes the entry', async () => {
    const { inner, cache } = setup();
    await inner.memory.create('k1', record());
    await cache.get('k1');
    // Another server's touch (not announced) moved lastActiveAt.
    await inner.memory.touch('k1', Date.now() + 2 * HOUR, Date.now() + 1000);
    const fresh = await cache.get('k1', { fresh: true });
    const cached = await cache.get('k1');
    expect(cached?.lastActiveAt).toBe(fresh?.lastActiveAt);
    expect(inner.calls.get).toBe(2);
    expect(cache.stats().freshReads).toBe(1);
  });

  it('caches the merged record an update returns; evicts when the session is gone', async () => {
    const { inner, cache } = setup();
    const rec = record();
    await cache.create('k1', rec);
    const stored = await cache.update('k1', change({ theme: 'dark' }, rec));
    expect(stored?.version).toBe(1);
    expect((await cache.get('k1'))?.data.theme).toBe('dark');
    expect(inner.calls.get ?? 0).toBe(0);
    await inner.memory.destroy('k1');
    expect(await cache.update('k1', change({ theme: 'light' }, rec))).toBeNull();
    expect(await cache.get('k1')).toBeNull();
  });

  it('drops the entry when an update fails (it may have committed)', async () => {
    const { inner, cache } = setup();
    await cache.create('k1', record());
    inner.store.update = async () => {
      throw new Error('connection lost');
    };
    await expect(cache.update('k1', change({ a: 1 }, record()))).rejects.toThrow('connection lost');
    expect(cache.stats().entries).toBe(0);
  });

  it('applies touches in place, and evicts when the touch finds nothing', async () => {
    const { inner, cache } = setup();
    await cache.create('k1', record());
    const later = Date.now() + 5000;
    expect(await cache.touch('k1', later + HOUR, later)).toBe(true);
    expect(await cache.get('k1')).toMatchObject({ lastActiveAt: later, expiresAt: later + HOUR });
    await inner.memory.destroy('k1');
    expect(await cache.touch('k1', later + HOUR, later)).toBe(false);
    expect(cache.stats().entries).toBe(0);
  });

  it('evicts on destroy and destroyByUser (except the kept session)', async () => {
    const { cache } = setup();
    await cache.create('a1', record('alice'));
    await cache.create('a2', record('alice'));
    await cache.create('a3', record('alice'));
    await cache.create('b1', record('bob'));
    await cache.destroy('a1');
    expect(await cache.get('a1')).toBeNull();
    expect(await cache.destroyByUser!('alice', 'a3')).toBe(1);
    expect(await cache.get('a2')).toBeNull();
    expect((await cache.get('a3'))?.userId).toBe('alice');
    expect((await cache.get('b1'))?.userId).toBe('bob');
  });

  it('exposes exactly the optional methods the inner store has', () => {
    const { store } = innerStore();
    const bare: SessionStore = {
      get: store.get,
      create: store.create,
      update: store.update,
      touch: store.touch,
      destroy: store.destroy,
    };
    const cache = new CachedSessionStore(bare, new FakeSource());
    expect(cache.listByUser).toBeUndefined();
    expect(cache.destroyByUser).toBeUndefined();
    expect(cache.prune).toBeUndefined();
    expect(typeof setup().cache.listByUser).toBe('function');
  });

  describe('reads in flight', () => {
    it('does not cache a read during which its key was invalidated', async () => {
      const { inner, source, cache } = setup();
      await inner.memory.create('k1', record('u1', { v: 'old' }));
      const release = inner.hold();
      const read = cache.get('k1');
      await vi.waitFor(() => expect(inner.calls.get).toBe(1));
      // Another server changes it; its notification arrives while our read is on the wire.
      await inner.memory.update('k1', change({ v: 'new' }, record()));
      source.invalidate('k1');
      release();
      expect((await read)?.data.v).toBe('old'); // what the store said when asked
      expect(cache.stats()).toMatchObject({ entries: 0, racesSkipped: 1 });
      expect((await cache.get('k1'))?.data.v).toBe('new');
      expect((await cache.get('k1'))?.data.v).toBe('new');
      expect(inner.calls.get).toBe(2);
    });

    it('still caches a read when only other keys were invalidated', async () => {
      const { inner, source, cache } = setup();
      await inner.memory.create('k1', record());
      const release = inner.hold();
      const read = cache.get('k1');
      await vi.waitFor(() => expect(inner.calls.get).toBe(1));
      source.invalidate('other');
      release();
      await read;
      expect(cache.stats().entries).toBe(1);
    });

    it('does not cache a read during which the source went down (even if it came back)', async () => {
      const { inner, source, cache } = setup();
      await inner.memory.create('k1', record());
      const release = inner.hold();
      const read = cache.get('k1');
      await vi.waitFor(() => expect(inner.calls.get).toBe(1));
      source.down();
      source.up();
      release();
      await read;
      expect(cache.stats().entries).toBe(0);
    });

    it('never lets a slow read overwrite a faster local write', async () => {
      const { inner, cache } = setup();
      const rec = record('u1', { v: 'old' });
      await inner.memory.create('k1', rec);
      const release = inner.hold();
      const read = cache.get('k1');
      await vi.waitFor(() => expect(inner.calls.get).toBe(1));
      await cache.update('k1', change({ v: 'new' }, rec));
      release();
      expect((await read)?.data.v).toBe('old');
      expect((await cache.get('k1'))?.data.v).toBe('new');
      expect(inner.calls.get).toBe(1);
    });

    it('keeps its own fresh copy through concurrent updates of one session: the newest version, whatever order the answers come in', async () => {
      const { inner, cache } = setup();
      const rec = record();
      await cache.create('k1', rec);
      // Three requests save the same session at once; the store answers the oldest write last.
      const answers: Array<() => void> = [];
      const update = inner.store.update;
      inner.store.update = async (key, ch) => {
        const stored = await update(key, ch);
        await new Promise<void>((resolve) => answers.push(resolve));
        return stored;
      };
      const writes = [1, 2, 3].map((n) => cache.update('k1', change({ [`k${n}`]: n }, rec)));
      await vi.waitFor(() => expect(answers).toHaveLength(3));
      // A read that began before the answers came back must not be cached over them.
      const read = cache.get('k1');
      for (const answer of [...answers].reverse()) answer();
      const versions = (await Promise.all(writes)).map((r) => r?.version);
      expect(versions).toEqual([1, 2, 3]);
      await read;
      inner.store.update = update;
      const reads = inner.calls.get ?? 0;
      // The next request runs no SQL: the writes' own copy (the newest) is served.
      expect(await cache.get('k1')).toMatchObject({ version: 3, data: { k1: 1, k2: 2, k3: 3 } });
      expect(inner.calls.get ?? 0).toBe(reads);
    });

    it('still drops its copy when another process invalidates the key during its update', async () => {
      const { inner, source, cache } = setup();
      const rec = record();
      await cache.create('k1', rec);
      let answer!: () => void;
      const update = inner.store.update;
      inner.store.update = async (key, ch) => {
        const stored = await update(key, ch);
        await new Promise<void>((resolve) => {
          answer = resolve;
        });
        return stored;
      };
      const write = cache.update('k1', change({ n: 2 }, rec));
      await vi.waitFor(() => expect(answer).toBeDefined());
      source.invalidate('k1');
      answer();
      await write;
      inner.store.update = update;
      const reads = inner.calls.get ?? 0;
      await cache.get('k1');
      expect(inner.calls.get).toBe(reads + 1);
    });

    it('does not cache reads that overlapped a destroyByUser', async () => {
      const { inner, cache } = setup();
      await inner.memory.create('k1', record('alice'));
      const release = inner.hold();
      const read = cache.get('k1');
      await vi.waitFor(() => expect(inner.calls.get).toBe(1));
      await cache.destroyByUser!('alice');
      release();
      expect(await read).not.toBeNull();
      expect(await cache.get('k1')).toBeNull();
    });

    it('keeps its bookkeeping bounded under an invalidation storm', async () => {
      const { inner, source, cache } = setup();
      await inner.memory.create('k1', record());
      const release = inner.hold();
      const read = cache.get('k1');
      await vi.waitFor(() => expect(inner.calls.get).toBe(1));
      for (let i = 0; i < 20_000; i++) source.invalidate(`other-${i}`);
      release();
      await read;
      // Past the tracking limit every in-flight read is refused: safe, if conservative.
      expect(cache.stats().entries).toBe(0);
      await cache.get('k1');
      expect(cache.stats().entries).toBe(1);
    });
  });

  describe('bounds', () => {
    it('keeps at most `max` sessions', async () => {
      const { cache } = setup({ max: 10 });
      for (let i = 0; i < 25; i++) await cache.create(`k${i}`, record());
      expect(cache.stats()).toMatchObject({ entries: 10, evictions: 15 });
    });

    it('keeps the estimated bytes within `maxSize` and skips oversized sessions', async () => {
      const maxSize = 20_000;
      const { cache } = setup({ maxSize, maxEntrySize: 5_000 });
      for (let i = 0; i < 100; i++)
        await cache.create(hashId(`id${i}`), record('u', { blob: 'x'.repeat(500) }));
      const stats = cache.stats();
      expect(stats.bytes).toBeLessThanOrEqual(maxSize);
      expect(stats.entries).toBeGreaterThan(0);
      expect(stats.entries).toBeLessThan(100);
      expect(stats.evictions).toBe(100 - stats.entries);
      await cache.create('huge', record('u', { blob: 'x'.repeat(10_000) }));
      expect(await cache.get('huge')).not.toBeNull(); // served, from the store
      expect(cache.stats().entries).toBe(stats.entries);
    });

    it('counts non-Latin-1 text at two bytes a character', () => {
      expect(entrySize('k', 'abc')).toBe(ENTRY_OVERHEAD + 1 + 3);
      expect(entrySize('k', 'a€c')).toBe(ENTRY_OVERHEAD + 1 + 6);
    });

    it('uses at most 1 KB of heap per cached session at 100k sessions', async () => {
      setFlagsFromString('--expose-gc');
      const gc = runInNewContext('gc') as () => void;
      const noop: SessionStore = {
        get: async () => null,
        create: async () => {},
        update: async () => null,
        touch: async () => false,
        destroy: async () => {},
      };
      const cache = new CachedSessionStore(noop, new FakeSource());
      const n = 100_000;
      // The seed's session: express-session's cookie plus a user id and a CSRF token.
      const sample = (i: number): SessionRecord => {
        const now = Date.now();
        return {
          data: {
            cookie: {
              originalMaxAge: 604_800_000,
              expires: new Date(now + 604_800_000).toISOString(),
              secure: true,
              httpOnly: true,
              path: '/',
              sameSite: 'lax',
            },
            userId: 100_000 + i,
            csrf: hashId(`csrf${i}`),
          },
          expiresAt: now + 604_800_000,
          createdAt: now,
          lastActiveAt: now,
          userId: String(100_000 + i),
          version: 0,
        };
      };
      const keys = Array.from({ length: n }, (_, i) => hashId(`session-${i}`));
      gc();
      gc();
      const before = process.memoryUsage().heapUsed;
      for (let i = 0; i < n; i++) await cache.create(keys[i]!, sample(i));
      gc();
      gc();
      const after = process.memoryUsage().heapUsed;
      const stats = cache.stats();
      expect(stats.entries).toBe(n);
      // The keys existed before the measurement (the engine computes them per request), so add
      // their size back: a 43-character string is 64 bytes in V8.
      const perSession = (after - before) / n + 64;
      const estimated = stats.bytes / n;
      console.log(
        `cache memory: ${perSession.toFixed(0)} B/session measured, ${estimated.toFixed(0)} B/session estimated ` +
          `(JSON ${(estimated - ENTRY_OVERHEAD - 43).toFixed(0)} B)`,
      );
      expect(perSession).toBeLessThanOrEqual(1024);
      // The byte bound is meaningful only if the estimate is not far below the truth.
      expect(estimated).toBeGreaterThanOrEqual(perSession * 0.8);
      await cache.close();
    });
  });

  it('close() closes the source (and the inner store only when asked)', async () => {
    const a = setup();
    await a.cache.close();
    expect(a.source.close).toHaveBeenCalledOnce();
    expect(a.inner.store.close).not.toHaveBeenCalled();
    expect(a.source.handlers.size).toBe(0);
    const b = setup({ closeInner: true, closeSource: false });
    await b.cache.close();
    expect(b.source.close).not.toHaveBeenCalled();
    expect(b.inner.store.close).toHaveBeenCalledOnce();
  });
});

describe('CachedSessionStore options', () => {
  it('a bad option is a ConfigError at construction, naming the option', async () => {
    const { ConfigError } = await import('../../src/core/errors.js');
    const inner = new MemoryStore()[kSessionStore];
    for (const [options, name] of [
      [{ lastKnownGoodMaxAge: -1 }, 'lastKnownGoodMaxAge'],
      [{ remoteFlushIntervalMs: Number.NaN }, 'remoteFlushIntervalMs'],
      [{ entryMaxAge: -5 }, 'entryMaxAge'],
    ] as const) {
      expect(() => new CachedSessionStore(inner, new FakeSource(), options)).toThrow(ConfigError);
      expect(() => new CachedSessionStore(inner, new FakeSource(), options)).toThrow(name);
    }
  });
});

describe('invalidation payloads', () => {
  it('round-trips sender and keys', () => {
    const keys = [hashId('a'), hashId('b')];
    const [payload] = encodePayloads('node1', keys);
    expect(decodePayload(payload!)).toEqual({ sender: 'node1', keys });
    expect(decodePayload('*')).toEqual({ sender: null, keys: ['*'] });
    expect(decodePayload('')).toEqual({ sender: null, keys: [] });
  });

  it('splits under PostgreSQL’s 8000-byte limit', () => {
    const keys = Array.from({ length: 1000 }, (_, i) => hashId(String(i)));
    const payloads = encodePayloads('node1', keys);
    expect(payloads.length).toBeGreaterThan(1);
    for (const p of payloads) expect(Buffer.byteLength(p)).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
    expect(payloads.flatMap((p) => decodePayload(p).keys)).toEqual(keys);
  });
});
