import type { EventEmitter } from 'node:events';
import { LRUCache } from 'lru-cache';
import type pg from 'pg';
import { ConfigError } from '../../core/errors.js';
import { hashId } from '../../core/id.js';
import { CachedPostgresSessionStore, type PostgresCacheOptions } from '../cache/postgres.js';
import { DEFAULT_CHANNEL, generateNodeId, type NotifyTarget } from '../cache/protocol.js';
import { type Store, Store as StoreBase } from '../connect-store.js';
import { markNativeStoreMethods, plannedWrite } from '../engine-face.js';
import { type HasSessionStore, kSessionStore, type SessionJSON, userIdOf } from '../types.js';
import { defaultPruneJitter, PostgresSessionStore } from './session-store.js';

/** connect-pg-simple's default lifetime when the cookie has no expiry: one day, in seconds. */
const ONE_DAY_SECONDS = 86_400;
/** connect-pg-simple's default prune interval, in seconds. */
const DEFAULT_PRUNE_INTERVAL_SECONDS = 15 * 60;
/** How many recently loaded session keys each process remembers (see `set`). */
const DEFAULT_LOADED_KEYS = 10_000;

/** Options of {@link PgStore}: connect-pg-simple's, plus `hashIds`. */
export interface PgStoreOptions {
  /** The pool to use; never ended by the store. */
  pool?: pg.Pool | undefined;
  /** Connection string for a pool the store creates (and ends on `close()`). Default `process.env.DATABASE_URL`. */
  conString?: string | undefined;
  /** Pool configuration for a pool the store creates (and ends on `close()`); wins over `conString`. */
  conObject?: pg.PoolConfig | undefined;
  /** Schema of the table; default the `search_path`. */
  schemaName?: string | undefined;
  /** Table name; default `session`. */
  tableName?: string | undefined;
  /** Create the table if it is missing. Default true for `PgStore`, false for the connect-pg-simple factory (as connect-pg-simple). */
  createTableIfMissing?: boolean | undefined;
  /** Lifetime in seconds of sessions whose cookie has no `expires`. Default one day. */
  ttl?: number | undefined;
  /** Make `touch` a no-op (the expiry then only moves when the session is saved). */
  disableTouch?: boolean | undefined;
  /** Seconds between background prunes, or false for none. Default 900. */
  pruneSessionInterval?: number | false | undefined;
  /** Maps the prune interval (ms) to the actual delay; false for no jitter. Default: 50%–150% of it. */
  pruneSessionRandomizedInterval?: false | ((delayMs: number) => number) | undefined;
  /** Where background errors go (pool errors, failed prunes). Default `console.error`. */
  errorLog?: ((...args: unknown[]) => void) | undefined;
  /**
   * Store the SHA-256 of the session id instead of the id itself (default true), so a leaked
   * table or backup cannot be replayed as cookies. Rows stored under raw ids (by
   * connect-pg-simple) are still found and re-keyed on first read.
   */
  hashIds?: boolean | undefined;
  /** How many loaded session keys to remember for UPDATE-only saves. Default 10 000. */
  loadedKeysCacheSize?: number | undefined;
  /** The clock (epoch ms). For tests; default `Date.now`. */
  now?: (() => number) | undefined;
  /** Announce changed keys to other processes' caches (see `PostgresSessionStoreOptions.notify`). */
  notify?: NotifyTarget | undefined;
  /**
   * The per-process session cache (see docs/scaling.md): sessions are served from memory after
   * their first load, kept coherent across processes by `LISTEN/NOTIFY`. Default on (off when
   * `hashIds` is false, since changes to rows keyed by raw ids are announced as "flush
   * everything"); `false` turns it off, an object sets its bounds and listener.
   */
  cache?: false | PostgresCacheOptions | undefined;
  /**
   * The channel changes are announced on, in the statement that makes them (default
   * `pgsession_invalidate`). Announcements stay on with the cache off, so processes that cache
   * hear about changes made by processes (or CLIs) that do not. `false`: announce nothing — only
   * when no process uses the cache.
   */
  notifyChannel?: string | false | undefined;
  /**
   * Where the cache's listener connects when the pool cannot carry `LISTEN` (e.g. the pool goes
   * through PgBouncer in transaction mode): a direct or session-mode connection string.
   * Shorthand for `cache: { listenConnection }`.
   */
  listenConnectionString?: string | undefined;
}

type Done = (err?: unknown) => void;
type GetCallback = (err: unknown, session?: SessionJSON | null) => void;
type AllCallback = (err: unknown, sessions?: Record<string, SessionJSON> | null) => void;

/**
 * An express-session store (callback API, plus promises when no callback is given) on
 * PostgreSQL, and, through `[kSessionStore]`, the richer promise API pgsession's middleware
 * uses.
 */
export interface PgStoreInstance extends Store, HasSessionStore {
  /** The promise-based store this wraps; pgsession's middleware talks to it directly. */
  readonly [kSessionStore]: PostgresSessionStore;
  /** Whether session ids are hashed before they reach the table. */
  readonly hashIds: boolean;
  /** Lifetime in seconds of sessions without a cookie expiry (connect-pg-simple's public field). */
  ttl: number | undefined;
  /** Set once `close()` has been called (as connect-pg-simple). */
  closed: boolean;
  get(sid: string): Promise<SessionJSON | null>;
  get(sid: string, callback: GetCallback): void;
  set(sid: string, session: SessionJSON): Promise<void>;
  set(sid: string, session: SessionJSON, callback: Done): void;
  destroy(sid: string): Promise<void>;
  destroy(sid: string, callback: Done): void;
  touch(sid: string, session: SessionJSON): Promise<void>;
  touch(sid: string, session: SessionJSON, callback: Done): void;
  all(): Promise<Record<string, SessionJSON>>;
  all(callback: AllCallback): void;
  length(): Promise<number>;
  length(callback: (err: unknown, length?: number) => void): void;
  clear(): Promise<void>;
  clear(callback: Done): void;
  ids(): Promise<string[]>;
  ids(callback: (err: unknown, ids?: string[]) => void): void;
  /** Delete expired sessions now (connect-pg-simple's public method). */
  pruneSessions(): Promise<void>;
  pruneSessions(callback: Done): void;
  /** Stop pruning and end the pool if the store created it. */
  close(): Promise<void>;
}

/** Constructor of {@link PgStore} (and of the classes the connect-pg-simple factory returns). */
export interface PgStoreConstructor {
  new (options?: PgStoreOptions): PgStoreInstance;
  readonly prototype: PgStoreInstance;
}

/** What `extends` needs from express-session's (or our) `Store`. */
type BaseConstructor = new (...args: never[]) => EventEmitter;

/** Settings that differ between `PgStore` and the connect-pg-simple factory. */
export interface PgStoreFlavor {
  /** Class name, for stack traces and `constructor.name`. */
  name: string;
  createTableIfMissing: boolean;
  /** Accept connect-pg-simple's deprecated `tableName: 'schema"."table'` spelling. */
  legacyTableNameSyntax: boolean;
}

/**
 * Settle a promise through a Node-style callback, or hand the promise back when there is none.
 * Callbacks run on `process.nextTick`, outside the promise chain, so an exception thrown by a
 * callback surfaces as such instead of becoming a rejected promise nobody sees (as
 * connect-pg-simple does).
 */
function settle<T>(
  promise: Promise<T>,
  callback: ((err: unknown, value?: T) => void) | undefined,
): Promise<T> | undefined {
  if (!callback) return promise;
  promise.then(
    (value) => process.nextTick(callback, null, value),
    (err: unknown) => process.nextTick(callback, err ?? new Error('Session store operation failed')),
  );
  return undefined;
}

/** When connect-pg-simple would expire a session: the cookie's expiry, else `ttl`, else one day. */
function expireTime(sess: SessionJSON, ttlSeconds: number | undefined, now: number): number {
  const expires = sess?.cookie?.expires as string | Date | null | undefined;
  if (expires) {
    const at = new Date(expires).getTime();
    if (Number.isFinite(at)) return at;
  }
  return now + (ttlSeconds || ONE_DAY_SECONDS) * 1000;
}

/**
 * Build a store class on top of `Base` (our `Store`, or express-session's `session.Store`) so
 * `instanceof` and the inherited `regenerate`/`load`/`createSession` are the host library's own.
 */
export function createPgStoreClass(Base: BaseConstructor, flavor: PgStoreFlavor): PgStoreConstructor {
  const Parent = Base as unknown as new () => EventEmitter;

  class PgStoreImpl extends Parent {
    readonly [kSessionStore]: PostgresSessionStore;
    readonly hashIds: boolean;
    ttl: number | undefined;
    closed = false;
    readonly #disableTouch: boolean;
    readonly #now: () => number;
    /**
     * Keys of sessions this process has loaded (or written, or destroyed) recently. A `set` for
     * one of them is UPDATE-only, so a save racing a logout on another request or server cannot
     * bring the session back. Unknown keys are new sessions (express-session just generated the
     * id), which are inserted, as connect-pg-simple does.
     */
    readonly #known: LRUCache<string, true>;

    constructor(options: PgStoreOptions = {}) {
      super();
      const errorLog = options.errorLog ?? console.error.bind(console);
      let { schemaName, tableName } = options;
      if (flavor.legacyTableNameSyntax && !schemaName && tableName) {
        const match = /^([^"]+)"\."([^"]+)$/.exec(tableName);
        if (match) {
          console.warn(
            'DEPRECATION WARNING: Schema should be provided through its dedicated "schemaName" option rather than through "tableName"',
          );
          schemaName = match[1];
          tableName = match[2];
        }
      }
      if ((options as { pgPromise?: unknown }).pgPromise !== undefined) {
        throw new ConfigError('pgsession: the pgPromise option is not supported; pass a pg `pool` instead');
      }
      let poolConfig: pg.PoolConfig | undefined;
      if (!options.pool) {
        const conString = options.conString || process.env.DATABASE_URL;
        poolConfig = options.conObject ?? (conString ? { connectionString: conString } : {});
      }
      this.hashIds = options.hashIds ?? true;
      this.ttl = options.ttl;
      this.#disableTouch = options.disableTouch === true;
      this.#now = options.now ?? Date.now;
      this.#known = new LRUCache<string, true>({ max: options.loadedKeysCacheSize ?? DEFAULT_LOADED_KEYS });
      const notify =
        options.notify ??
        (options.notifyChannel === false
          ? undefined
          : { channel: options.notifyChannel ?? DEFAULT_CHANNEL, nodeId: generateNodeId() });
      if (options.cache && !notify) {
        throw new ConfigError(
          'pgsession: the session cache needs notifications (notifyChannel must not be false)',
        );
      }
      const storeOptions = {
        pool: options.pool,
        poolConfig,
        schemaName,
        tableName,
        createTableIfMissing: options.createTableIfMissing ?? flavor.createTableIfMissing,
        idsHashed: this.hashIds,
        now: this.#now,
        errorLog,
        notify,
      };
      const cache = options.cache ?? (this.hashIds && notify ? {} : false);
      this[kSessionStore] = cache
        ? new CachedPostgresSessionStore({
            ...storeOptions,
            cache: { ...cache, listenConnection: cache.listenConnection ?? options.listenConnectionString },
          })
        : new PostgresSessionStore(storeOptions);
      if (options.pruneSessionInterval !== false) {
        const seconds = options.pruneSessionInterval || DEFAULT_PRUNE_INTERVAL_SECONDS;
        const randomize = options.pruneSessionRandomizedInterval;
        // Started here rather than on first use (connect-pg-simple's way) so pruning also runs
        // when pgsession's middleware bypasses these methods for `[kSessionStore]`. The timer
        // is unref()ed and the first run waits a full (jittered) interval.
        this[kSessionStore].startPruning({
          intervalMs: seconds * 1000,
          jitter: randomize === false ? false : (randomize ?? defaultPruneJitter),
          onError: (err) => errorLog('Failed to prune sessions:', err),
        });
      }
    }

    /** The storage key of a session id. */
    #key(sid: string): string {
      return this.hashIds ? hashId(sid) : sid;
    }

    get(sid: string, callback?: GetCallback): Promise<SessionJSON | null> | undefined {
      const key = this.#key(sid);
      const work = this[kSessionStore]
        .get(key, this.hashIds ? { legacyKey: sid } : undefined)
        .then((record) => {
          if (!record) return null;
          this.#known.set(key, true);
          return record.data;
        });
      return settle(work, callback);
    }

    set(sid: string, session: SessionJSON, callback?: Done): Promise<void> | undefined {
      const key = this.#key(sid);
      const store = this[kSessionStore];
      // pgsession's middleware, through a wrapper the app put on this method: its key-level change.
      const planned = plannedWrite(session, key);
      if (planned) return settle(planned.apply(store), callback);
      const now = this.#now();
      const expiresAt = expireTime(session, this.ttl, now);
      const userId = userIdOf(session);
      let work: Promise<void>;
      if (this.#known.has(key)) {
        // A session this process loaded: UPDATE-only. If it is gone (logged out meanwhile),
        // nothing is written — silently, as the logout is what the user asked for last.
        work = store.replace(key, session, expiresAt, now, userId).then(() => {});
      } else {
        work = store
          .upsert(key, { data: session, expiresAt, createdAt: now, lastActiveAt: now, userId, version: 0 })
          .then(() => {
            this.#known.set(key, true);
          });
      }
      return settle(work, callback);
    }

    destroy(sid: string, callback?: Done): Promise<void> | undefined {
      const key = this.#key(sid);
      // Remembered, not forgotten: a request that loaded this session before the logout must
      // not re-insert it when it saves afterwards.
      this.#known.set(key, true);
      const work = this[kSessionStore].destroy(key, this.hashIds ? { legacyKey: sid } : undefined);
      return settle(work, callback);
    }

    touch(sid: string, session: SessionJSON, callback?: Done): Promise<void> | undefined {
      const planned = plannedWrite(session, this.#key(sid));
      if (planned) return settle(planned.apply(this[kSessionStore]), callback);
      if (this.#disableTouch) return settle(Promise.resolve(), callback);
      const now = this.#now();
      const work = this[kSessionStore]
        .touch(this.#key(sid), expireTime(session, this.ttl, now), now)
        .then(() => {});
      return settle(work, callback);
    }

    all(callback?: AllCallback): Promise<Record<string, SessionJSON>> | undefined {
      const work = this[kSessionStore].all().then((sessions) => {
        const byKey: Record<string, SessionJSON> = Object.create(null);
        for (const { key, data } of sessions) byKey[key] = data;
        return byKey;
      });
      return settle(work, callback);
    }

    length(callback?: (err: unknown, length?: number) => void): Promise<number> | undefined {
      return settle(this[kSessionStore].count(), callback);
    }

    clear(callback?: Done): Promise<void> | undefined {
      return settle(this[kSessionStore].clear(), callback);
    }

    ids(callback?: (err: unknown, ids?: string[]) => void): Promise<string[]> | undefined {
      return settle(this[kSessionStore].keys(), callback);
    }

    pruneSessions(callback?: Done): Promise<void> | undefined {
      return settle(
        this[kSessionStore].prune().then(() => {}),
        callback,
      );
    }

    async close(): Promise<void> {
      this.closed = true;
      await this[kSessionStore].close();
    }
  }

  Object.defineProperty(PgStoreImpl, 'name', { value: flavor.name });
  markNativeStoreMethods(PgStoreImpl.prototype);
  return PgStoreImpl as unknown as PgStoreConstructor;
}

/**
 * PostgreSQL session store for express-session (and pgsession's own middleware): a drop-in for
 * connect-pg-simple's store with hashed ids, no resurrection of destroyed sessions, and
 * batched, single-process pruning.
 *
 * ```ts
 * app.use(session({ store: new PgStore({ pool }), secret, resave: false, saveUninitialized: false }));
 * ```
 */
export const PgStore: PgStoreConstructor = createPgStoreClass(StoreBase as unknown as BaseConstructor, {
  name: 'PgStore',
  createTableIfMissing: true,
  legacyTableNameSyntax: false,
});
/** An instance of {@link PgStore}. */
export type PgStore = PgStoreInstance;
