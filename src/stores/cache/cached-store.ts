import { LRUCache } from 'lru-cache';
import { ConfigError } from '../../core/errors.js';
import type {
  DeviceBinding,
  SessionChange,
  SessionJSON,
  SessionListing,
  SessionRecord,
  SessionStore,
  StoreCallOptions,
} from '../../core/store.js';
import { StoredData, type StoredParts, textBytes } from '../../core/stored-data.js';
import { isConnectionError } from '../../db/errors.js';
import { ALL_KEYS } from './protocol.js';
import type { InvalidationHandlers, InvalidationSource } from './types.js';

/** Options for {@link CachedSessionStore}. */
export interface CachedSessionStoreOptions {
  /** Most sessions kept. Default 100 000. */
  max?: number | undefined;
  /**
   * Most bytes kept (estimated: the session's JSON plus a fixed per-entry overhead, see
   * {@link entrySize}). Default 64 MiB.
   */
  maxSize?: number | undefined;
  /** Sessions estimated larger than this are never cached. Default `maxSize / 64` (1 MiB). */
  maxEntrySize?: number | undefined;
  /** The clock for the cached expiry check (epoch ms). Default `Date.now`. */
  now?: (() => number) | undefined;
  /** `close()` also closes the invalidation source. Default true. */
  closeSource?: boolean | undefined;
  /** `close()` also closes the inner store. Default false (the caller created it). */
  closeInner?: boolean | undefined;
  /**
   * Degraded mode (docs/reliability.md): how long, in ms, a *last-known-good* copy may be served,
   * read-only, while the database cannot be reached. When the invalidation source goes down the
   * cached sessions are not thrown away but set aside as last-known-good copies, stamped with
   * the time they were last known current; they are served (marked `readOnly`) only when a
   * read-through fails with a connection-level error, and only while younger than this. They
   * are dropped when the source is up again. Default 15 minutes; 0 turns degraded mode off
   * (down flushes, and every read of an unreachable database fails).
   *
   * Why a bound: during a partition in which only this process cannot reach the database,
   * other processes may revoke a session that this one keeps serving; the bound caps that
   * stale window even if the outage lasts longer.
   */
  lastKnownGoodMaxAge?: number | undefined;
  /**
   * Whole-cache flushes asked for by *other processes* (`'*'` over the invalidation channel)
   * happen at most once per this many ms: the first at once, and any more that arrive within
   * the interval as one flush at its end. Any role that can connect to the database can
   * `NOTIFY` the channel, so a flood of `'*'` must not turn every request into a database
   * read; the price is that, during such a flood, a change announced only as `'*'` may be
   * served from memory for up to this long. Flushes of this process (`clear()`,
   * `invalidate(['*'])`) and of the source going down or up are never delayed. Default 1000;
   * 0 turns the limit off.
   */
  remoteFlushIntervalMs?: number | undefined;
  /**
   * Most ms a session is served from memory after it was cached, before it is read again.
   * Default: no limit (invalidations keep entries current). For sources that may, rarely, miss
   * an announcement of a data-only change (coalesced announcements whose writer died before
   * sending them, docs/scaling.md): it bounds how long that older copy can be served.
   */
  entryMaxAge?: number | undefined;
}

/** Counters for metrics; all monotonic except `entries`, `bytes` and `listening`. */
export interface CacheStats {
  /** Reads answered from memory (no SQL). */
  hits: number;
  /** Reads not in memory (or expired there) that went to the inner store. */
  misses: number;
  /** `get(key, { fresh: true })` reads, which always go to the inner store. */
  freshReads: number;
  /** Calls served by the inner store because the invalidation source was not listening. */
  bypasses: number;
  /** Entries dropped to stay within `max` / `maxSize`. */
  evictions: number;
  /** Keys named by invalidations received from other processes. */
  invalidations: number;
  /** Whole-cache flushes (listener down or up, `'*'` invalidations, `clear()`). */
  flushes: number;
  /** `'*'` invalidations from other processes folded into a later flush by `remoteFlushIntervalMs`. */
  flushesDeferred: number;
  /** Reads whose result was not cached because the key was invalidated while they were in flight. */
  racesSkipped: number;
  /** Sessions in memory now. */
  entries: number;
  /** Estimated bytes in memory now. */
  bytes: number;
  /** Whether the cache is serving (the invalidation source is listening). */
  listening: boolean;
  /** Last-known-good copies held now (set aside while the source is down). */
  lastKnownGood: number;
  /** Reads answered with a last-known-good copy because the database could not be reached. */
  staleServed: number;
}

export const DEFAULT_CACHE_MAX = 100_000;
export const DEFAULT_CACHE_MAX_SIZE = 64 * 1024 * 1024;
/** Default of {@link CachedSessionStoreOptions.lastKnownGoodMaxAge}: 15 minutes. */
export const DEFAULT_LAST_KNOWN_GOOD_MAX_AGE = 15 * 60_000;
/** Default of {@link CachedSessionStoreOptions.remoteFlushIntervalMs}. */
export const DEFAULT_REMOTE_FLUSH_INTERVAL_MS = 1000;

/**
 * Estimated bytes per entry besides the session's JSON text: the key string (~64 B for a
 * 43-character storage key), the entry object, the data's per-key array, frozen cookie and
 * string headers, lru-cache's slots and its `Map` entry. Measured at about 370 B on Node 20 for
 * the seed's session (see `test/stores/cache.test.ts`); rounded up, as an estimate below the
 * truth would let the cache outgrow `maxSize`.
 */
export const ENTRY_OVERHEAD = 384;

/** Past this many keys invalidated during in-flight reads, all in-flight reads are refused instead. */
const MAX_TRACKED_INVALIDATIONS = 4096;

/**
 * One cached session: its data split by top-level key ({@link StoredData}, which the entry
 * extends, so data and times are one object): compact (primitives and JSON text, no object
 * graph), every read gets a fresh copy the caller owns, and the engine copies and compares it key
 * by key. No closures per entry.
 */
class Entry extends StoredData {
  // The times are kept as offsets from createdAt: a timestamp is a boxed number in V8, an offset
  // of less than ~24 days a small integer stored in the object itself (16 B saved per time).
  #expiresIn: number;
  #activeAfter: number;
  #cachedAfter: number;

  constructor(
    parts: StoredParts,
    expiresAt: number,
    readonly createdAt: number,
    lastActiveAt: number,
    readonly userId: string | null,
    readonly version: number,
    /** The device binding (DBSC), carried with the session so a bound-cookie check needs no SQL. */
    readonly device: DeviceBinding | null,
  ) {
    super(parts);
    this.#expiresIn = expiresAt - createdAt;
    this.#activeAfter = lastActiveAt - createdAt;
    this.#cachedAfter = 0;
  }

  get expiresAt(): number {
    return this.createdAt + this.#expiresIn;
  }

  set expiresAt(at: number) {
    this.#expiresIn = at - this.createdAt;
  }

  get lastActiveAt(): number {
    return this.createdAt + this.#activeAfter;
  }

  set lastActiveAt(at: number) {
    this.#activeAfter = at - this.createdAt;
  }

  /** When it was cached (the store's clock), for `entryMaxAge`. */
  get cachedAt(): number {
    return this.createdAt + this.#cachedAfter;
  }

  set cachedAt(at: number) {
    this.#cachedAfter = at - this.createdAt;
  }

  static fromRecord(record: SessionRecord, parts: StoredParts = StoredData.split(record.data)): Entry {
    return new Entry(
      parts,
      record.expiresAt,
      record.createdAt,
      record.lastActiveAt,
      record.userId,
      record.version,
      record.device ? { ...record.device, jwk: { ...record.device.jwk } } : null,
    );
  }

  toRecord(): SessionRecord {
    return new CachedRecord(this);
  }
}

/**
 * A record read from the cache. Its `data` is built only when something reads it: the engine
 * reads `stored` instead, so a steady request never materialises the whole session twice.
 */
class CachedRecord implements SessionRecord {
  /** Own, enumerable and lazy, like a plain record's `data` (the same accessor for every record). */
  static readonly #dataProperty: PropertyDescriptor = {
    get(this: CachedRecord): SessionJSON {
      if (this.#data === undefined) this.#data = this.stored.data();
      return this.#data;
    },
    set(this: CachedRecord, data: SessionJSON) {
      this.#data = data;
    },
    enumerable: true,
    configurable: true,
  };

  #data: SessionJSON | undefined = undefined;
  declare data: SessionJSON;
  readonly stored: StoredData;
  expiresAt: number;
  createdAt: number;
  lastActiveAt: number;
  userId: string | null;
  version: number;
  device: DeviceBinding | null;
  readOnly: boolean | undefined = undefined;

  constructor(entry: Entry) {
    Object.defineProperty(this, 'data', CachedRecord.#dataProperty);
    this.stored = entry;
    this.expiresAt = entry.expiresAt;
    this.createdAt = entry.createdAt;
    this.lastActiveAt = entry.lastActiveAt;
    this.userId = entry.userId;
    this.version = entry.version;
    this.device = entry.device && { ...entry.device, jwk: { ...entry.device.jwk } };
  }
}

/** A last-known-good copy: the entry, and when it was last known to be current (epoch ms). */
class Stale {
  constructor(
    readonly entry: Entry,
    readonly asOf: number,
  ) {}
}

/** The estimated memory of one entry whose data's JSON text is `json`. */
export function entrySize(key: string, json: string): number {
  return ENTRY_OVERHEAD + key.length + textBytes(json);
}

/** {@link entrySize} of a cached entry, from its stored data's own estimate. */
function storedSize(key: string, stored: StoredData): number {
  return ENTRY_OVERHEAD + key.length + stored.bytes;
}

/**
 * A read-through cache in front of any {@link SessionStore}, kept coherent across processes by
 * an {@link InvalidationSource} (PostgreSQL `LISTEN/NOTIFY` in production).
 *
 * **It serves from memory only while the source is listening.** When the source goes down
 * (start-up, dropped connection, failed health check) the cached sessions are set aside as
 * *last-known-good* copies and every call reads through until the source is back; then the
 * copies are dropped and it starts again, empty.
 *
 * **Degraded mode.** While the source is down, a read-through that fails with a connection-level
 * error (see {@link isConnectionError}) is answered with the last-known-good copy, if one younger
 * than `lastKnownGoodMaxAge` exists, marked `readOnly: true`: the engine then refuses every write
 * for that request (503) and skips its touch. Reads of other sessions fail as before. Successful
 * reads and this process's own writes while the source is down refresh the copies (a copy is
 * only as old as the last time the database confirmed it); deletes remove them.
 *
 * A read that was in flight when its key (or everything) was invalidated is returned to its
 * caller but not cached: every invalidation bumps a generation counter, each read notes the
 * generation it started at, and a read is cached only if neither its key nor the whole cache
 * was invalidated since. The same guard orders this process's own writes against its reads, so
 * a slow read can never overwrite the result of a faster write.
 *
 * Entries are bounded by count (`max`) and by estimated bytes (`maxSize`). Unknown ids are never
 * cached (no negative caching): new sessions are created by this process, and unknown ids are
 * expired cookies or guesses.
 */
export class CachedSessionStore implements SessionStore {
  readonly inner: SessionStore;
  readonly source: InvalidationSource;
  listByUser?: (userId: string) => Promise<SessionListing[]>;
  destroyByUser?: (userId: string, exceptKey?: string) => Promise<number>;
  prune?: () => Promise<number>;
  /** Mirrors the inner store's (whether its `touch` records `lastActiveAt`). */
  readonly tracksActivity?: boolean;

  readonly #cache: LRUCache<string, Entry>;
  /** Last-known-good copies, kept only while the source is down (same bounds as the cache). */
  readonly #lkg: LRUCache<string, Stale>;
  readonly #lkgMaxAge: number;
  readonly #now: () => number;
  readonly #closeSource: boolean;
  readonly #closeInner: boolean;
  readonly #unsubscribe: () => void;
  #closed = false;
  readonly #remoteFlushInterval: number;
  readonly #entryMaxAge: number;
  /** When the last flush asked for by another process ran (performance.now()), and the pending one. */
  #lastRemoteFlush = -Infinity;
  #remoteFlushTimer: NodeJS.Timeout | undefined;

  /** Bumped by every invalidation that an in-flight call must notice. */
  #gen = 0;
  /** Calls that began at a generation below this must not cache (a flush happened since). */
  #floor = 0;
  /** Calls in flight that may cache their result. */
  #inflight = 0;
  /** Key → generation of its last invalidation, kept only while calls are in flight. */
  readonly #invalidatedAt = new Map<string, number>();
  /**
   * Key → generation and version of this process's last successful update of it, kept only
   * while calls are in flight: reads that began before it must not cache what they got, and
   * slower updates must not replace it with an older version.
   */
  readonly #writtenAt = new Map<string, { gen: number; version: number }>();

  #hits = 0;
  #misses = 0;
  #freshReads = 0;
  #bypasses = 0;
  #evictions = 0;
  #invalidations = 0;
  #flushes = 0;
  #flushesDeferred = 0;
  #racesSkipped = 0;
  #staleServed = 0;

  constructor(inner: SessionStore, source: InvalidationSource, options: CachedSessionStoreOptions = {}) {
    this.inner = inner;
    this.source = source;
    this.#now = options.now ?? Date.now;
    this.#closeSource = options.closeSource ?? true;
    this.#closeInner = options.closeInner ?? false;
    const max = positive(options.max ?? DEFAULT_CACHE_MAX, 'max');
    const maxSize = positive(options.maxSize ?? DEFAULT_CACHE_MAX_SIZE, 'maxSize');
    const maxEntrySize = positive(
      options.maxEntrySize ?? Math.max(1, Math.floor(maxSize / 64)),
      'maxEntrySize',
    );
    this.#cache = new LRUCache<string, Entry>({
      max,
      maxSize,
      maxEntrySize,
      sizeCalculation: (entry, key) => storedSize(key, entry),
      dispose: (_entry, _key, reason) => {
        if (reason === 'evict') this.#evictions++;
      },
    });
    const lkgMaxAge = options.lastKnownGoodMaxAge ?? DEFAULT_LAST_KNOWN_GOOD_MAX_AGE;
    if (!Number.isFinite(lkgMaxAge) || lkgMaxAge < 0) {
      throw new ConfigError('lastKnownGoodMaxAge must be a non-negative number of milliseconds');
    }
    this.#lkgMaxAge = lkgMaxAge;
    this.#lkg = new LRUCache<string, Stale>({
      max,
      maxSize,
      maxEntrySize,
      sizeCalculation: (stale, key) => storedSize(key, stale.entry),
    });

    const tracksActivity = (inner as { tracksActivity?: boolean }).tracksActivity;
    if (tracksActivity !== undefined) this.tracksActivity = tracksActivity;
    // Optional methods exist exactly when the inner store has them.
    if (inner.listByUser) this.listByUser = inner.listByUser.bind(inner);
    if (inner.destroyByUser) {
      const destroyByUser = inner.destroyByUser.bind(inner);
      this.destroyByUser = (userId, exceptKey) => this.#destroyByUser(destroyByUser, userId, exceptKey);
    }
    if (inner.prune) this.prune = inner.prune.bind(inner);

    const flushInterval = options.remoteFlushIntervalMs ?? DEFAULT_REMOTE_FLUSH_INTERVAL_MS;
    if (!Number.isFinite(flushInterval) || flushInterval < 0) {
      throw new ConfigError('remoteFlushIntervalMs must be a non-negative number of milliseconds');
    }
    this.#remoteFlushInterval = flushInterval;
    const entryMaxAge = options.entryMaxAge ?? Number.POSITIVE_INFINITY;
    if (Number.isNaN(entryMaxAge) || entryMaxAge < 0) {
      throw new ConfigError('entryMaxAge must be a non-negative number of milliseconds');
    }
    this.#entryMaxAge = entryMaxAge;

    const handlers: InvalidationHandlers = {
      onInvalidate: (keys) => {
        this.#invalidations += keys.length;
        if (!keys.includes(ALL_KEYS)) return this.invalidate(keys);
        this.invalidate(keys.filter((key) => key !== ALL_KEYS));
        this.#remoteFlush();
      },
      onDown: () => this.#setAside(),
      onUp: () => this.#flush(),
    };
    this.#unsubscribe = source.subscribe(handlers);
  }

  /** Whether reads can currently be served from memory. */
  get listening(): boolean {
    return !this.#closed && this.source.listening;
  }

  /** A snapshot of the counters. */
  stats(): CacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      freshReads: this.#freshReads,
      bypasses: this.#bypasses,
      evictions: this.#evictions,
      invalidations: this.#invalidations,
      flushes: this.#flushes,
      flushesDeferred: this.#flushesDeferred,
      racesSkipped: this.#racesSkipped,
      entries: this.#cache.size,
      bytes: this.#cache.calculatedSize,
      listening: this.listening,
      lastKnownGood: this.#lkg.size,
      staleServed: this.#staleServed,
    };
  }

  /**
   * Forget these keys in this process (`'*'`: everything). For writes that reached the inner
   * store without going through this wrapper; other processes learn of them by notification.
   */
  invalidate(keys: readonly string[]): void {
    for (const key of keys) {
      if (key === ALL_KEYS) {
        this.#flush();
        return;
      }
      this.#mark(key);
    }
  }

  /** Forget every cached session in this process. */
  clear(): void {
    this.#flush();
  }

  /**
   * The cached session, when the cache is serving and holds a live copy; undefined otherwise
   * (then `get` answers, and counts the miss or the bypass).
   */
  peek(key: string): SessionRecord | undefined {
    return this.listening ? this.#hit(key) : undefined;
  }

  async get(
    key: string,
    options?: { legacyKey?: string; fresh?: boolean; id?: string | undefined },
  ): Promise<SessionRecord | null> {
    const serving = this.#serving();
    if (!serving) {
      // Read through; counted as a bypass.
    } else if (options?.fresh) {
      this.#freshReads++;
    } else {
      const record = this.#hit(key);
      if (record) return record;
      this.#misses++;
    }
    const gen0 = this.#begin();
    let record: SessionRecord | null;
    try {
      record = await this.inner.get(key, options);
    } catch (err) {
      this.#end(key, gen0);
      // Degraded mode: only a plain read, only while not listening, only if nothing answered.
      if (!serving && !options?.fresh && isConnectionError(err)) {
        const stale = this.#lastKnownGood(key);
        if (stale) return stale;
      }
      throw err;
    }
    if (this.#end(key, gen0)) {
      // Nothing touched this key since the read began: what the store said is current.
      if (record) this.#store(key, Entry.fromRecord(record));
      else this.#forget(key);
    }
    return record;
  }

  async create(key: string, record: SessionRecord, options?: StoreCallOptions): Promise<void> {
    // Copied now, as the inner store serializes it: the caller may reuse its objects afterwards.
    const parts = StoredData.split(record.data);
    const gen0 = this.#begin();
    let ok = false;
    try {
      await this.inner.create(key, record, options);
      ok = true;
    } finally {
      const fresh = this.#end(key, gen0);
      this.#mark(key);
      if (ok && fresh) this.#store(key, Entry.fromRecord(record, parts));
    }
  }

  async update(
    key: string,
    change: SessionChange,
    options?: StoreCallOptions,
  ): Promise<SessionRecord | null> {
    const gen0 = this.#begin();
    let record: SessionRecord | null = null;
    try {
      record = await this.inner.update(key, change, options);
      return record;
    } finally {
      // This process knows what it wrote: the stored record (merged with concurrent writers
      // under the row lock, with its version) is the current session unless something else
      // invalidated the key meanwhile. Concurrent updates of one session keep the highest
      // version, whatever order their answers arrive in. On failure the write may or may not
      // have committed, and a null means the session is gone: the entry is dropped.
      const fresh = this.#end(key, gen0, true);
      if (record && fresh) this.#keepWritten(key, record);
      else this.#mark(key);
    }
  }

  async touch(
    key: string,
    expiresAt: number,
    lastActiveAt: number,
    current?: { data: SessionJSON; createdAt: number; version: number },
    options?: StoreCallOptions,
  ): Promise<boolean> {
    const touched = await this.inner.touch(key, expiresAt, lastActiveAt, current, options);
    if (!touched) {
      this.#mark(key);
    } else {
      // Times only; touches are not announced, so other processes' copies keep older times and
      // the engine re-reads (`fresh`) before it acts on a session that looks expired.
      const entry = this.#cache.peek(key) ?? this.#lkg.peek(key)?.entry;
      if (entry) {
        entry.expiresAt = expiresAt;
        entry.lastActiveAt = lastActiveAt;
      }
    }
    return touched;
  }

  async destroy(key: string, options?: StoreCallOptions & { legacyKey?: string }): Promise<void> {
    this.#mark(key);
    try {
      // `legacyKey`: a row still stored under the raw id goes too (connect-pg-simple's rows).
      await this.inner.destroy(key, options);
    } finally {
      this.#mark(key);
    }
  }

  /**
   * Bind or unbind a device key (DBSC): through to the inner store, the cached copy dropped
   * before and after (the next read gets the binding from the table), as for `destroy`.
   */
  async bindDevice(key: string, binding: DeviceBinding | null): Promise<boolean> {
    const bind = this.inner.bindDevice;
    if (!bind) throw new ConfigError('pgsession: the store behind this cache cannot bind devices');
    this.#mark(key);
    try {
      return await bind.call(this.inner, key, binding);
    } finally {
      this.#mark(key);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#remoteFlushTimer);
    this.#unsubscribe();
    this.#flush();
    this.#lkg.clear();
    if (this.#closeSource) await this.source.close();
    if (this.#closeInner) await this.inner.close?.();
  }

  // ---- internals ----

  /** A live cached copy of `key`, counted as a hit; a stale one is dropped. */
  #hit(key: string): SessionRecord | undefined {
    const entry = this.#cache.get(key);
    if (entry === undefined) return undefined;
    const now = this.#now();
    if (entry.expiresAt >= now && now - entry.cachedAt <= this.#entryMaxAge) {
      this.#hits++;
      return entry.toRecord();
    }
    this.#cache.delete(key);
    return undefined;
  }

  /** Whether to use the cache for this call; counts and cleans up when not. */
  #serving(): boolean {
    if (this.listening) return true;
    if (!this.#closed) this.source.start?.();
    this.#bypasses++;
    // A source that went quiet without calling onDown still must not leave entries behind.
    if (this.#cache.size > 0) this.#setAside();
    return false;
  }

  async #destroyByUser(
    destroyByUser: (userId: string, exceptKey?: string) => Promise<number>,
    userId: string,
    exceptKey: string | undefined,
  ): Promise<number> {
    try {
      return await destroyByUser(userId, exceptKey);
    } finally {
      // The deleted keys are unknown here: evict this user's entries, and keep any read in
      // flight (which may belong to the user) from caching what it got.
      this.#floor = ++this.#gen;
      this.#invalidatedAt.clear();
      this.#writtenAt.clear();
      const doomed: string[] = [];
      for (const [key, entry] of this.#cache.entries()) {
        if (entry.userId === userId && key !== exceptKey) doomed.push(key);
      }
      for (const [key, stale] of this.#lkg.entries()) {
        if (stale.entry.userId === userId && key !== exceptKey) doomed.push(key);
      }
      for (const key of doomed) this.#forget(key);
    }
  }

  /**
   * Keep what the store just confirmed: in the cache while listening, else (degraded mode on,
   * not closed) as a last-known-good copy, current as of now.
   */
  #store(key: string, entry: Entry): void {
    if (this.listening) {
      entry.cachedAt = this.#now();
      this.#cache.set(key, entry);
    } else if (this.#lkgMaxAge > 0 && !this.#closed) this.#lkg.set(key, new Stale(entry, this.#now()));
  }

  /** Drop `key` from memory, cache and last-known-good copies alike. */
  #forget(key: string): void {
    this.#cache.delete(key);
    this.#lkg.delete(key);
  }

  /** The read-only last-known-good copy of `key`, if it is young enough and not expired. */
  #lastKnownGood(key: string): SessionRecord | null {
    const stale = this.#lkg.get(key);
    if (stale === undefined) return null;
    const now = this.#now();
    if (now - stale.asOf > this.#lkgMaxAge || stale.entry.expiresAt < now) {
      this.#lkg.delete(key);
      return null;
    }
    this.#staleServed++;
    const record = stale.entry.toRecord();
    record.readOnly = true;
    return record;
  }

  #begin(): number {
    this.#inflight++;
    return this.#gen;
  }

  /**
   * Ends a call begun at `gen0`; true when its result may be kept (nothing invalidated its key,
   * or everything, since it began). Where it is kept is {@link #store}'s business.
   */
  #end(key: string, gen0: number, write = false): boolean {
    const fresh =
      gen0 >= this.#floor &&
      (this.#invalidatedAt.get(key) ?? -1) <= gen0 &&
      // A read that overlapped this process's own update of the key holds an older copy.
      (write || (this.#writtenAt.get(key)?.gen ?? -1) <= gen0);
    if (--this.#inflight === 0) {
      this.#invalidatedAt.clear();
      this.#writtenAt.clear();
    }
    if (!fresh) this.#racesSkipped++;
    return fresh;
  }

  /** Keep the record an update of this process returned, unless a newer one is kept already. */
  #keepWritten(key: string, record: SessionRecord): void {
    const newest = Math.max(
      this.#writtenAt.get(key)?.version ?? Number.NEGATIVE_INFINITY,
      this.#cache.peek(key)?.version ?? Number.NEGATIVE_INFINITY,
    );
    if (record.version > newest) this.#store(key, Entry.fromRecord(record));
    if (this.#inflight === 0) return;
    const gen = ++this.#gen;
    if (this.#writtenAt.size >= MAX_TRACKED_INVALIDATIONS) {
      // Bounded memory, as in #mark: past the limit, calls in flight cache nothing.
      this.#writtenAt.clear();
      this.#invalidatedAt.clear();
      this.#floor = gen;
    } else {
      this.#writtenAt.set(key, { gen, version: Math.max(record.version, newest) });
    }
  }

  /** Forget `key`, and make sure no call already in flight caches it. */
  #mark(key: string): void {
    this.#forget(key);
    if (this.#inflight === 0) return;
    const gen = ++this.#gen;
    if (this.#invalidatedAt.size >= MAX_TRACKED_INVALIDATIONS) {
      // Bounded memory: past the limit, refuse every call in flight instead of tracking keys.
      this.#invalidatedAt.clear();
      this.#floor = gen;
    } else {
      this.#invalidatedAt.set(key, gen);
    }
  }

  /**
   * A flush asked for by another process (`'*'`), rate-limited (see `remoteFlushIntervalMs`):
   * at once if the last one is older than the interval, else once at the end of it.
   */
  #remoteFlush(): void {
    const now = performance.now();
    const due = this.#lastRemoteFlush + this.#remoteFlushInterval;
    if (now >= due) {
      this.#lastRemoteFlush = now;
      this.#flush();
      return;
    }
    this.#flushesDeferred++;
    if (this.#remoteFlushTimer !== undefined) return;
    this.#remoteFlushTimer = setTimeout(() => {
      this.#remoteFlushTimer = undefined;
      if (this.#closed) return;
      this.#lastRemoteFlush = performance.now();
      this.#flush();
    }, due - now);
    this.#remoteFlushTimer.unref();
  }

  /** Forget everything: cache, last-known-good copies, and what calls in flight would cache. */
  #flush(): void {
    this.#flushes++;
    this.#floor = ++this.#gen;
    this.#invalidatedAt.clear();
    this.#writtenAt.clear();
    this.#cache.clear();
    this.#lkg.clear();
  }

  /**
   * The source went down: nothing cached can be vouched for any more, so the cache is emptied
   * (as by {@link #flush}); with degraded mode on, its live sessions become last-known-good
   * copies, current as of now, least recently used first so the LRU order carries over.
   */
  #setAside(): void {
    const now = this.#now();
    const keep = this.#lkgMaxAge > 0 && !this.#closed;
    const moved: Array<[string, Entry]> = [];
    if (keep) for (const [key, entry] of this.#cache.rentries()) moved.push([key as string, entry as Entry]);
    this.#flushes++;
    this.#floor = ++this.#gen;
    this.#invalidatedAt.clear();
    this.#writtenAt.clear();
    this.#cache.clear();
    for (const [key, entry] of moved) {
      if (entry.expiresAt >= now) this.#lkg.set(key, new Stale(entry, now));
    }
  }
}

function positive(value: number, what: string): number {
  if (!Number.isFinite(value) || value < 1) throw new ConfigError(`${what} must be a positive number`);
  return Math.floor(value);
}
