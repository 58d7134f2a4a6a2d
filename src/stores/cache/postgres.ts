import type pg from 'pg';
import type { SessionChange, SessionJSON, SessionRecord, SessionStore } from '../../core/store.js';
import { PostgresSessionStore, type PostgresSessionStoreOptions } from '../postgres/session-store.js';
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
}

/** Options of {@link CachedPostgresSessionStore}. */
export interface CachedPostgresSessionStoreOptions extends PostgresSessionStoreOptions {
  /** Cache settings; see {@link PostgresCacheOptions}. */
  cache?: PostgresCacheOptions | undefined;
}

/** {@link CacheStats} plus the listener's counters, flat (as metrics exporters read them). */
export interface PostgresCacheStats extends CacheStats, Omit<ListenerStats, 'listening'> {}

/**
 * The PostgreSQL store with a per-process session cache in front (a {@link CachedSessionStore}
 * kept coherent by a {@link PgInvalidationListener}), for `PgStore`'s default configuration.
 *
 * It *is* a {@link PostgresSessionStore} (same methods, `instanceof`, `pool`, `ready()`,
 * pruning): the engine-facing methods (`get`, `create`, `update`, `touch`, `destroy`,
 * `destroyByUser`) go through the cache; the express-session–only writes (`replace`,
 * `upsert`, `clear`) evict what they touch. Every change is also announced with `pg_notify`
 * in its own statement (the store's `notify`), under a node id the listener recognises, so
 * this process skips its own announcements.
 *
 * The listener connects on first use (a store that is only used for `ready()` or migrations
 * never opens it) and never keeps the process alive; `close()` ends it.
 */
export class CachedPostgresSessionStore extends PostgresSessionStore {
  /** The cache in front of the table. */
  readonly cache: CachedSessionStore;
  /** The listener keeping {@link cache} coherent with other processes. */
  readonly listener: PgInvalidationListener;

  constructor(options: CachedPostgresSessionStoreOptions) {
    const nodeId = options.notify?.nodeId ?? generateNodeId();
    const channel = options.notify?.channel ?? DEFAULT_CHANNEL;
    super({ ...options, notify: { channel, nodeId } });
    const cacheOptions = options.cache ?? {};
    this.listener = new PgInvalidationListener({
      connection: cacheOptions.listenConnection ?? clientConfigOf(this.pool),
      channel,
      ignoreSender: nodeId,
      healthCheckIntervalMs: cacheOptions.healthCheckIntervalMs,
      healthCheckTimeoutMs: cacheOptions.healthCheckTimeoutMs,
      onError: cacheOptions.onError,
      autoStart: false,
    });
    // The table itself, for the cache to read through to.
    const table: SessionStore = {
      get: (key, opts) => super.get(key, opts),
      create: (key, record) => super.create(key, record),
      update: (key, change) => super.update(key, change),
      touch: (key, expiresAt, lastActiveAt) => super.touch(key, expiresAt, lastActiveAt),
      destroy: (key, ...rest: unknown[]) => super.destroy(key, rest[0] as { legacyKey?: string } | undefined),
      destroyByUser: (userId, exceptKey) => super.destroyByUser(userId, exceptKey),
    };
    this.cache = new CachedSessionStore(table, this.listener, {
      max: cacheOptions.max,
      maxSize: cacheOptions.maxSize,
      maxEntrySize: cacheOptions.maxEntrySize,
      lastKnownGoodMaxAge: cacheOptions.lastKnownGoodMaxAge,
      remoteFlushIntervalMs: cacheOptions.remoteFlushIntervalMs,
      now: options.now,
      closeSource: true,
    });
  }

  /** Cache and listener counters, for metrics (`createSessionMetrics().observeStore`). */
  stats(): PostgresCacheStats {
    const { listening: _, ...listener } = this.listener.stats();
    return { ...listener, ...this.cache.stats() };
  }

  override get(
    key: string,
    options?: { legacyKey?: string; fresh?: boolean },
  ): Promise<SessionRecord | null> {
    return this.cache.get(key, options);
  }

  override create(key: string, record: SessionRecord): Promise<void> {
    return this.cache.create(key, record);
  }

  override update(key: string, change: SessionChange): Promise<SessionRecord | null> {
    return this.cache.update(key, change);
  }

  override touch(key: string, expiresAt: number, lastActiveAt: number): Promise<boolean> {
    return this.cache.touch(key, expiresAt, lastActiveAt);
  }

  override destroy(key: string, options?: { legacyKey?: string }): Promise<void> {
    return this.cache.destroy(key, options);
  }

  override destroyByUser(userId: string, exceptKey?: string): Promise<number> {
    return this.cache.destroyByUser!(userId, exceptKey);
  }

  override async replace(
    key: string,
    data: SessionJSON,
    expiresAt: number,
    lastActiveAt: number,
    userId?: string | null,
    options?: { legacyKey?: string },
  ): Promise<boolean> {
    try {
      return await super.replace(key, data, expiresAt, lastActiveAt, userId, options);
    } finally {
      this.cache.invalidate([key]);
    }
  }

  override async upsert(key: string, record: SessionRecord, options?: { legacyKey?: string }): Promise<void> {
    try {
      await super.upsert(key, record, options);
    } finally {
      this.cache.invalidate([key]);
    }
  }

  override async remove(key: string, options?: { legacyKey?: string }): Promise<boolean> {
    try {
      return await super.remove(key, options);
    } finally {
      this.cache.invalidate([key]);
    }
  }

  override async clear(): Promise<void> {
    try {
      await super.clear();
    } finally {
      this.cache.clear();
    }
  }

  /** Close the listener, then the store (pruning; the pool if the store created it). */
  override async close(): Promise<void> {
    await this.cache.close();
    await super.close();
  }
}
