import type pg from 'pg';
import type {
  DeviceBinding,
  SessionChange,
  SessionJSON,
  SessionListing,
  SessionRecord,
  StoreCallOptions,
} from '../../core/store.js';
import type { TableNames } from '../postgres/schema.js';
import {
  PostgresSessionStore,
  type PostgresSessionStoreOptions,
  type PostgresStore,
  type PruneOptions,
  type PruningScheduleOptions,
  type StoredKey,
  type StoredSession,
} from '../postgres/session-store.js';
import { CachedSessionStore, type CacheStats } from './cached-store.js';
import { clientConfigOf, type ListenerStats, PgInvalidationListener } from './pg-listener.js';
import { DEFAULT_CHANNEL, generateNodeId } from './protocol.js';

/** Settings of the session cache in front of the PostgreSQL store. */
export interface PostgresCacheOptions {
  /** Most sessions cached per process. Default 100 000. */
  max?: number | undefined;
  /** Most (estimated) bytes cached per process. Default 64 MiB. */
  maxSize?: number | undefined;
  /** Sessions estimated larger than this are not cached. Default `maxSize / 64`. */
  maxEntrySize?: number | undefined;
  /**
   * Where the invalidation listener connects, when the store's pool cannot carry `LISTEN` (a
   * transaction-mode pooler such as PgBouncer with `pool_mode = transaction`): a connection
   * string (or config) reaching PostgreSQL directly or through a session-mode pool. Default:
   * the store's pool's own settings.
   */
  listenConnection?: string | pg.ClientConfig | undefined;
  /** See `PgInvalidationListenerOptions.healthCheckIntervalMs` (default 3000 ms). */
  healthCheckIntervalMs?: number | undefined;
  /** See `PgInvalidationListenerOptions.healthCheckTimeoutMs` (default 2000 ms). */
  healthCheckTimeoutMs?: number | undefined;
  /** Listener failures (it reconnects by itself). Default: a throttled line on stderr. */
  onError?: ((err: Error) => void) | undefined;
  /**
   * Degraded mode during a database outage: how long (ms) a last-known-good copy of a cached
   * session may be served, read-only, while the database cannot be reached. Default 15 minutes;
   * 0 turns it off. See `CachedSessionStoreOptions.lastKnownGoodMaxAge` and docs/reliability.md.
   */
  lastKnownGoodMaxAge?: number | undefined;
  /**
   * At most one whole-cache flush per this many ms for `'*'` notifications from other
   * processes (any database role can send them). Default 1000; see
   * `CachedSessionStoreOptions.remoteFlushIntervalMs` and docs/security.md.
   */
  remoteFlushIntervalMs?: number | undefined;
  /**
   * Most ms a cached session is served before it is read again. Default 60 000 with
   * `announceData: 'coalesced'` (it bounds how long another server's data-only save can go
   * unseen if that server died before announcing it), else no limit. See
   * `CachedSessionStoreOptions.entryMaxAge` and docs/scaling.md.
   */
  entryMaxAge?: number | undefined;
}

/** Default `entryMaxAge` with coalesced announcements: one minute. */
export const DEFAULT_COALESCED_ENTRY_MAX_AGE = 60_000;

/** Options of {@link CachedPostgresSessionStore}. */
export interface CachedPostgresSessionStoreOptions extends PostgresSessionStoreOptions {
  /** Cache settings; see {@link PostgresCacheOptions}. */
  cache?: PostgresCacheOptions | undefined;
}

/** {@link CacheStats} plus the listener's counters, flat (as metrics exporters read them). */
export interface PostgresCacheStats extends CacheStats, Omit<ListenerStats, 'listening'> {}

/**
 * The PostgreSQL store with a per-process session cache in front, for `PgStore`'s default
 * configuration: a {@link PostgresSessionStore} (the table), wrapped by a
 * {@link CachedSessionStore} (the cache, a decorator over any store) kept coherent by a
 * {@link PgInvalidationListener}.
 *
 * It offers the table's whole surface ({@link PostgresStore}: `pool`, `ready()`, pruning, the
 * express-session–only writes) by composition. The engine's methods (`get`, `create`, `update`,
 * `touch`, `destroy`, `destroyByUser`) go through the cache; the express-session–only writes
 * (`replace`, `upsert`, `remove`, `clear`) go to the table and evict what they touch; the rest
 * (listing, counting, pruning, re-keying) go to the table, as they change nothing a cached
 * copy holds. Every change is also announced with `pg_notify` in its own statement (the table's
 * `notify`), under a node id the listener recognises, so this process skips its own
 * announcements.
 *
 * The listener connects on first use (a store that is only used for `ready()` or migrations
 * never opens it) and never keeps the process alive; `close()` ends it.
 */
export class CachedPostgresSessionStore implements PostgresStore {
  /** The table the cache reads through to. */
  readonly table: PostgresSessionStore;
  /** The cache in front of {@link table}. */
  readonly cache: CachedSessionStore;
  /** The listener keeping {@link cache} coherent with other processes. */
  readonly listener: PgInvalidationListener;
  readonly tracksActivity = true;

  constructor(options: CachedPostgresSessionStoreOptions) {
    const nodeId = options.notify?.nodeId ?? generateNodeId();
    const channel = options.notify?.channel ?? DEFAULT_CHANNEL;
    const { cache: cacheOptions = {}, ...tableOptions } = options;
    this.table = new PostgresSessionStore({ ...tableOptions, notify: { channel, nodeId } });
    this.listener = new PgInvalidationListener({
      connection: cacheOptions.listenConnection ?? clientConfigOf(this.table.pool),
      channel,
      ignoreSender: nodeId,
      healthCheckIntervalMs: cacheOptions.healthCheckIntervalMs,
      healthCheckTimeoutMs: cacheOptions.healthCheckTimeoutMs,
      onError: cacheOptions.onError,
      autoStart: false,
    });
    this.cache = new CachedSessionStore(this.table, this.listener, {
      max: cacheOptions.max,
      maxSize: cacheOptions.maxSize,
      maxEntrySize: cacheOptions.maxEntrySize,
      lastKnownGoodMaxAge: cacheOptions.lastKnownGoodMaxAge,
      remoteFlushIntervalMs: cacheOptions.remoteFlushIntervalMs,
      entryMaxAge:
        cacheOptions.entryMaxAge ??
        (options.announceData === 'coalesced' ? DEFAULT_COALESCED_ENTRY_MAX_AGE : undefined),
      now: options.now,
      closeSource: true,
      closeInner: false,
    });
  }

  /** Cache and listener counters, for metrics (`createSessionMetrics().observeStore`). */
  stats(): PostgresCacheStats {
    const { listening: _, ...listener } = this.listener.stats();
    return { ...listener, ...this.cache.stats() };
  }

  // ---- the table's own properties ----

  get names(): TableNames {
    return this.table.names;
  }

  get pool(): pg.Pool {
    return this.table.pool;
  }

  get idsHashed(): boolean {
    return this.table.idsHashed;
  }

  get pruning(): boolean {
    return this.table.pruning;
  }

  get closed(): boolean {
    return this.table.closed;
  }

  ready(): Promise<void> {
    return this.table.ready();
  }

  // ---- the engine's port, through the cache ----

  peek(key: string): SessionRecord | undefined {
    return this.cache.peek(key);
  }

  get(
    key: string,
    options?: { legacyKey?: string; fresh?: boolean; id?: string | undefined },
  ): Promise<SessionRecord | null> {
    return this.cache.get(key, options);
  }

  create(key: string, record: SessionRecord, options?: StoreCallOptions): Promise<void> {
    return this.cache.create(key, record, options);
  }

  update(key: string, change: SessionChange, options?: StoreCallOptions): Promise<SessionRecord | null> {
    return this.cache.update(key, change, options);
  }

  touch(key: string, expiresAt: number, lastActiveAt: number): Promise<boolean> {
    return this.cache.touch(key, expiresAt, lastActiveAt);
  }

  destroy(key: string, options?: StoreCallOptions & { legacyKey?: string }): Promise<void> {
    return this.cache.destroy(key, options);
  }

  destroyByUser(userId: string, exceptKey?: string): Promise<number> {
    return this.cache.destroyByUser!(userId, exceptKey);
  }

  bindDevice(key: string, binding: DeviceBinding | null): Promise<boolean> {
    return this.cache.bindDevice(key, binding);
  }

  listByUser(userId: string): Promise<SessionListing[]> {
    return this.table.listByUser(userId);
  }

  // ---- express-session–only writes: to the table, evicting what they touch ----

  async replace(
    key: string,
    data: SessionJSON,
    expiresAt: number,
    lastActiveAt: number,
    userId?: string | null,
    options?: { legacyKey?: string },
  ): Promise<boolean> {
    try {
      return await this.table.replace(key, data, expiresAt, lastActiveAt, userId, options);
    } finally {
      this.cache.invalidate([key]);
    }
  }

  async upsert(key: string, record: SessionRecord, options?: { legacyKey?: string }): Promise<void> {
    try {
      await this.table.upsert(key, record, options);
    } finally {
      this.cache.invalidate([key]);
    }
  }

  async remove(key: string, options?: { legacyKey?: string }): Promise<boolean> {
    try {
      return await this.table.remove(key, options);
    } finally {
      this.cache.invalidate([key]);
    }
  }

  async clear(): Promise<void> {
    try {
      await this.table.clear();
    } finally {
      this.cache.clear();
    }
  }

  // ---- reads and housekeeping that no cached copy depends on ----

  all(): Promise<StoredSession[]> {
    return this.table.all();
  }

  count(): Promise<number> {
    return this.table.count();
  }

  keys(): Promise<StoredKey[]> {
    return this.table.keys();
  }

  countRaw(): Promise<number> {
    return this.table.countRaw();
  }

  keepsRawIds(): Promise<boolean> {
    return this.table.keepsRawIds();
  }

  /** Rows keep their storage key, so cached copies stay valid. */
  rekey(options?: PruneOptions): Promise<number> {
    return this.table.rekey(options);
  }

  /** Only expired rows go, which the cache already refuses to serve. */
  prune(options?: PruneOptions): Promise<number> {
    return this.table.prune(options);
  }

  startPruning(options?: PruningScheduleOptions): void {
    this.table.startPruning(options);
  }

  stopPruning(): void {
    this.table.stopPruning();
  }

  /** Close the listener, then the table (pruning; the pool if the table created it). */
  async close(): Promise<void> {
    await this.cache.close();
    await this.table.close();
  }
}
