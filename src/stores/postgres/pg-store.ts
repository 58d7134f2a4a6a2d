import type { EventEmitter } from 'node:events';
import { LRUCache } from 'lru-cache';
import type pg from 'pg';
import { ConfigError } from '../../core/errors.js';
import { hashId } from '../../core/id.js';
import { type HasSessionStore, kSessionStore, type SessionJSON, userIdOf } from '../../core/store.js';
import { guardPoolErrors } from '../../db/pool.js';
import { type QueryOptions, resolveQueryOptions, withQueryOptions } from '../../db/query.js';
import { goneKeyError, issueAdminKey, readAdminKey, UnknownSessionKeyError } from '../admin-keys.js';
import { clientConfigOf } from '../cache/pg-listener.js';
import { CachedPostgresSessionStore, type PostgresCacheOptions } from '../cache/postgres.js';
import { DEFAULT_CHANNEL, generateNodeId, type NotifyTarget } from '../cache/protocol.js';
import { type Store, Store as StoreBase } from '../connect-store.js';
import { markNativeStoreMethods, plannedWrite } from '../engine-face.js';
import type { Statement } from './queries.js';
import { createTableSql, type TableNames, tableNames } from './schema.js';
import {
  createOwnPool,
  defaultPruneJitter,
  PostgresSessionStore,
  type PostgresStore,
  type Queryable,
  type Row,
} from './session-store.js';

/** connect-pg-simple's default lifetime when the cookie has no expiry: one day, in seconds. */
const ONE_DAY_SECONDS = 86_400;
/** connect-pg-simple's default prune interval, in seconds. */
const DEFAULT_PRUNE_INTERVAL_SECONDS = 15 * 60;
/** How many recently loaded session keys each process remembers (see `set`). */
const DEFAULT_LOADED_KEYS = 10_000;

/** What the store needs of a pg-promise database object: `any`, as connect-pg-simple. */
export interface PgPromiseLike {
  any(query: string, values?: unknown): Promise<unknown[]>;
  /** The database's own `pg.Pool` (pg-promise's `db.$pool`), used for schema changes, pruning and the cache's listener. */
  $pool?: unknown;
}

/** Options of {@link PgStore}: connect-pg-simple's, plus pgsession's. */
export interface PgStoreOptions {
  /**
   * The pool to use; never ended by the store. A `pg.Pool`, or any object with its promise
   * `query()` (a wrapper, another pg-compatible pool).
   */
  pool?: pg.Pool | undefined;
  /**
   * A pg-promise database object to run every statement through (`db.any`), instead of a pool
   * (connect-pg-simple's option). Never closed by the store.
   */
  pgPromise?: PgPromiseLike | undefined;
  /** Connection string for a pool the store creates (and ends on `close()`). Default `process.env.DATABASE_URL`. */
  conString?: string | undefined;
  /** Pool configuration for a pool the store creates (and ends on `close()`); wins over `conString`. */
  conObject?: pg.PoolConfig | undefined;
  /** Schema of the table; default the `search_path`. */
  schemaName?: string | undefined;
  /** Table name; default `session`. */
  tableName?: string | undefined;
  /**
   * Create the table if it is missing, on the first query. Default true for `PgStore`, false for
   * the connect-pg-simple factory (as connect-pg-simple). Either way a table that lacks
   * pgsession's columns is upgraded when a statement first needs them.
   */
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
   * Store new sessions under the SHA-256 of their id (default true), so a leaked table or
   * backup cannot be replayed as cookies. Rows connect-pg-simple stored under raw ids are still
   * found (and stay where they are until `pgsession migrate --finish`). `false` stores new
   * sessions under raw ids too, as connect-pg-simple does, for a switch that must stay
   * reversible for every session (docs/migrating.md); with pgsession's middleware, set it there too.
   */
  hashIds?: boolean | undefined;
  /** How many loaded session keys to remember for UPDATE-only saves. Default 10 000. */
  loadedKeysCacheSize?: number | undefined;
  /** The clock (epoch ms). For tests; default `Date.now`, looked up at each call. */
  now?: (() => number) | undefined;
  /** Announce changed keys to other processes' caches (see `PostgresSessionStoreOptions.notify`). */
  notify?: NotifyTarget | undefined;
  /**
   * The per-process session cache (see docs/scaling.md): sessions are served from memory after
   * their first load, kept coherent across processes by `LISTEN/NOTIFY`. Default on when the
   * store can open a listening connection (a `pg.Pool`, pg-promise's `$pool`, or
   * `listenConnectionString`) and ids are hashed; `false` turns it off, an object sets its
   * bounds and listener.
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
  /**
   * Named prepared statements (default true, or the setting of a pool made by `createPool`).
   * `false` behind a transaction-mode pooler that does not track them (docs/scaling.md).
   */
  preparedStatements?: QueryOptions['preparedStatements'];
  /**
   * Time limit of each statement, in milliseconds (default 15 000, or the setting of a pool made
   * by `createPool`; `false`: none). Enforced by cancelling the statement, so it works through
   * transaction-mode poolers, unlike `statement_timeout` in the pool's configuration.
   */
  statementTimeout?: QueryOptions['statementTimeout'];
  /**
   * How saves that change only a session's data are announced to other processes' caches:
   * `'coalesced'` (default) in batches, one `pg_notify` statement per `announceIntervalMs` for
   * all of them, so saves commit without NOTIFY's database-wide commit lock; `'statement'` in
   * each save's own statement. Deletes, revocations and changes of owner are announced in the
   * write's own statement either way. See docs/scaling.md, "Invalidation at scale".
   */
  announceData?: 'statement' | 'coalesced' | undefined;
  /** With `announceData: 'coalesced'`: most ms between a save and its announcement. Default 5. */
  announceIntervalMs?: number | undefined;
  /**
   * Send the saves of different sessions made in the same turn of the event loop as one
   * statement (up to 100): one round trip and one commit for many requests on a busy server,
   * none added when it is idle. Each save keeps its own outcome. Default true.
   */
  batchSaves?: boolean | undefined;
}

type Done = (err?: unknown) => void;
type GetCallback = (err: unknown, session?: SessionJSON | null) => void;
type AllCallback = (err: unknown, sessions?: Record<string, SessionJSON> | null) => void;
/** connect-pg-simple's query callback: the first row of the result. */
export type QueryCallback = (err: Error | null, firstRow?: Row) => void;

/**
 * An express-session store (callback API, plus promises when no callback is given) on
 * PostgreSQL, and, through `[kSessionStore]`, the richer promise API pgsession's middleware
 * uses.
 */
export interface PgStoreInstance extends Store, HasSessionStore {
  /** The promise-based store this wraps; pgsession's middleware talks to it directly. */
  readonly [kSessionStore]: PostgresStore;
  /** Whether new sessions are stored under the hash of their id. */
  readonly hashIds: boolean;
  /** Lifetime in seconds of sessions without a cookie expiry (connect-pg-simple's public field). */
  ttl: number | undefined;
  /** Set once `close()` has been called (as connect-pg-simple). */
  closed: boolean;
  /** Load a session by id, or by a key from `all()` / `ids()`. */
  get(sid: string): Promise<SessionJSON | null>;
  get(sid: string, callback: GetCallback): void;
  set(sid: string, session: SessionJSON): Promise<void>;
  set(sid: string, session: SessionJSON, callback: Done): void;
  /** Delete a session by id (missing is fine), or by a key from `all()` / `ids()` (missing is an `UnknownSessionKeyError`). */
  destroy(sid: string): Promise<void>;
  destroy(sid: string, callback: Done): void;
  touch(sid: string, session: SessionJSON): Promise<void>;
  touch(sid: string, session: SessionJSON, callback: Done): void;
  /**
   * Every live session, by a key that `get`, `destroy` and `touch` accept: the id for a row
   * still stored under it, otherwise the storage key with a tag only this process can make
   * (so a hash read from a leaked table never works as a session id). Treat keys as secrets.
   */
  all(): Promise<Record<string, SessionJSON>>;
  all(callback: AllCallback): void;
  length(): Promise<number>;
  length(callback: (err: unknown, length?: number) => void): void;
  clear(): Promise<void>;
  clear(callback: Done): void;
  /** The keys of every live session, as `all()` gives them. */
  ids(): Promise<string[]>;
  ids(callback: (err: unknown, ids?: string[]) => void): void;
  /** Delete expired sessions now (connect-pg-simple's public method). */
  pruneSessions(): Promise<void>;
  pruneSessions(callback: Done): void;
  /** Stop pruning and end the pool if the store created it. */
  close(): Promise<void>;
  /**
   * Run SQL on the store's database, as connect-pg-simple's (semi-private) `query`: the callback
   * gets the first row. Every statement the store runs goes through here.
   */
  query(query: string | Statement, params: readonly unknown[] | undefined, callback: QueryCallback): void;
  query(query: string | Statement, callback: QueryCallback): void;
  /** The promise form of {@link query}, creating the table first when `createTableIfMissing` (connect-pg-simple's). */
  _asyncQuery(
    query: string | Statement,
    params?: readonly unknown[],
    noTableCreation?: boolean,
  ): Promise<Row | undefined>;
  /** Create the table once when `createTableIfMissing` (connect-pg-simple's). */
  _ensureSessionStoreTable(noTableCreation?: boolean): Promise<void>;
  /** Create the table if `to_regclass` finds none (connect-pg-simple's). */
  _rawEnsureSessionStoreTable(): Promise<void>;
  /** The quoted (schema-qualified) table name (connect-pg-simple's). */
  quotedTable(): string;
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
  /**
   * Start the prune timer on first use, as connect-pg-simple does (its tests check it), rather
   * than in the constructor.
   */
  lazyPruning: boolean;
}

/**
 * Settle a promise through a Node-style callback, or hand the promise back when there is none.
 * Callbacks run on `process.nextTick`, outside the promise chain, so an exception thrown by a
 * callback surfaces as such instead of becoming a rejected promise nobody sees (as
 * connect-pg-simple does). Success is reported as `null`, as connect-pg-simple does.
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

// ---- options ----

function checkOptions(options: PgStoreOptions): void {
  const o = options as Record<string, unknown>;
  const fail = (name: string, expected: string) => {
    throw new ConfigError(
      `pgsession: the ${name} option must be ${expected}, got ${JSON.stringify(o[name])}`,
    );
  };
  resolveQueryOptions({
    preparedStatements: o.preparedStatements as boolean | undefined,
    statementTimeout: o.statementTimeout as number | false | undefined,
  });
  for (const name of ['createTableIfMissing', 'disableTouch', 'hashIds', 'batchSaves']) {
    if (o[name] !== undefined && typeof o[name] !== 'boolean') fail(name, 'a boolean');
  }
  for (const name of ['conString', 'tableName', 'schemaName', 'listenConnectionString']) {
    if (o[name] !== undefined && typeof o[name] !== 'string') fail(name, 'a string');
  }
  for (const name of ['errorLog', 'now']) {
    if (o[name] !== undefined && typeof o[name] !== 'function') fail(name, 'a function');
  }
  const nonNegative = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  if (o.ttl !== undefined && !nonNegative(o.ttl)) fail('ttl', 'a number of seconds');
  if (
    o.pruneSessionInterval !== undefined &&
    o.pruneSessionInterval !== false &&
    !nonNegative(o.pruneSessionInterval)
  ) {
    fail('pruneSessionInterval', 'a number of seconds or false');
  }
  if (o.announceData !== undefined && o.announceData !== 'statement' && o.announceData !== 'coalesced') {
    fail('announceData', "'statement' or 'coalesced'");
  }
  if (o.announceIntervalMs !== undefined && !nonNegative(o.announceIntervalMs)) {
    fail('announceIntervalMs', 'a number of milliseconds');
  }
  const randomized = o.pruneSessionRandomizedInterval;
  if (randomized !== undefined && randomized !== false && typeof randomized !== 'function') {
    fail('pruneSessionRandomizedInterval', 'a function or false');
  }
  // Not checked for `query()`: connect-pg-simple's own tests pass `pool: {}` and replace the
  // store's `query` method instead.
  if (o.pool !== undefined && (typeof o.pool !== 'object' || o.pool === null)) fail('pool', 'a pg.Pool');
}

/** Whether `pool` exposes node-postgres's `options` (a `pg.Pool`), from which a listener can connect. */
function hasPoolOptions(pool: unknown): pool is pg.Pool {
  const options = (pool as { options?: unknown } | null | undefined)?.options;
  return typeof options === 'object' && options !== null;
}

/**
 * Build a store class on top of `Base` (our `Store`, or express-session's `session.Store`) so
 * `instanceof` and the inherited `regenerate`/`load`/`createSession` are the host library's own.
 */
export function createPgStoreClass(Base: BaseConstructor, flavor: PgStoreFlavor): PgStoreConstructor {
  const Parent = Base as unknown as new (options?: unknown) => EventEmitter;

  class PgStoreImpl extends Parent {
    readonly [kSessionStore]: PostgresStore;
    readonly hashIds: boolean;
    ttl: number | undefined;
    closed = false;
    readonly #names: TableNames;
    readonly #disableTouch: boolean;
    readonly #now: () => number;
    readonly #createTableIfMissing: boolean;
    /** The pool or pg-promise adapter raw queries (`query`, `_asyncQuery`) run on. */
    readonly #db: Queryable | undefined;
    readonly #pgPromise: PgPromiseLike | undefined;
    #tableCreation: Promise<void> | undefined;
    /** Starts the prune timer the first time it is called (a no-op without pruning). */
    readonly #startPruning: () => void;
    /**
     * Keys of sessions this process has loaded (or written, or destroyed) recently. A `set` for
     * one of them is UPDATE-only, so a save racing a logout on another request or server cannot
     * bring the session back. Unknown keys are new sessions (express-session just generated the
     * id), which are inserted, as connect-pg-simple does.
     */
    readonly #known: LRUCache<string, true>;

    constructor(options: PgStoreOptions = {}) {
      super(options);
      checkOptions(options);
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
      this.#names = tableNames({ schemaName, tableName });
      this.hashIds = options.hashIds ?? true;
      this.ttl = options.ttl;
      this.#disableTouch = options.disableTouch === true;
      this.#now = options.now ?? (() => Date.now());
      this.#createTableIfMissing = options.createTableIfMissing ?? flavor.createTableIfMissing;
      this.#known = new LRUCache<string, true>({ max: options.loadedKeysCacheSize ?? DEFAULT_LOADED_KEYS });

      // Where queries go, in connect-pg-simple's order: a pool, else pg-promise, else a pool of
      // our own from conObject / conString / DATABASE_URL (given to pg.Pool exactly as is).
      let pool: pg.Pool | undefined;
      let ownsPool = false;
      let db: Queryable | undefined;
      if (options.pool !== undefined) {
        pool = options.pool;
      } else if (options.pgPromise !== undefined) {
        const pgPromise = options.pgPromise;
        if (typeof pgPromise?.any !== 'function') {
          // connect-pg-simple's own error, word for word.
          throw new TypeError(
            '`pgPromise` config must point to an existing and configured instance of pg-promise pointing at your database',
          );
        }
        this.#pgPromise = pgPromise;
        db = {
          query: async (textOrConfig, values) => {
            const text = typeof textOrConfig === 'string' ? textOrConfig : textOrConfig.text;
            return { rows: await pgPromise.any(text, values) };
          },
        };
        // Real pg-promise has its pg.Pool: transactions for the schema, the prune lock, LISTEN.
        const own = pgPromise.$pool as { connect?: unknown } | undefined;
        if (typeof own?.connect === 'function') pool = own as unknown as pg.Pool;
      } else {
        const conString = options.conString || process.env.DATABASE_URL;
        const config: pg.PoolConfig = options.conObject ?? (conString ? { connectionString: conString } : {});
        pool = createOwnPool(config, (...args) => errorLog(...args));
        ownsPool = true;
      }
      // Every statement the store sends goes through this seam (see `withQueryOptions`).
      if (pool) {
        guardPoolErrors(pool, (line) => errorLog(line));
        pool = withQueryOptions(pool, {
          preparedStatements: options.preparedStatements,
          statementTimeout: options.statementTimeout,
        });
      }
      this.#db = db ?? pool;

      const notify =
        options.notify ??
        (options.notifyChannel === false
          ? undefined
          : { channel: options.notifyChannel ?? DEFAULT_CHANNEL, nodeId: generateNodeId() });
      const listenConnection =
        (options.cache ? options.cache.listenConnection : undefined) ??
        options.listenConnectionString ??
        (hasPoolOptions(pool) ? clientConfigOf(pool) : undefined);
      if (options.cache && !notify) {
        throw new ConfigError(
          'pgsession: the session cache needs notifications (notifyChannel must not be false)',
        );
      }
      if (options.cache && listenConnection === undefined) {
        throw new ConfigError(
          'pgsession: the session cache needs a connection to LISTEN on: pass listenConnectionString',
        );
      }
      const storeOptions = {
        pool,
        db,
        ownsPool,
        schemaName,
        tableName,
        createTableIfMissing: this.#createTableIfMissing,
        idsHashed: this.hashIds,
        now: this.#now,
        errorLog,
        notify,
        announceData: options.announceData ?? 'coalesced',
        announceIntervalMs: options.announceIntervalMs,
        batchSaves: options.batchSaves,
        // Every statement goes through `this.query`, as in connect-pg-simple (its tests replace
        // `query` on the instance): looked up at each call.
        run: (statement: Statement, values: unknown[]) => {
          this.#startPruning();
          return new Promise<Row | undefined>((resolve, reject) => {
            this.query(statement, values, (err, row) => (err ? reject(err) : resolve(row)));
          });
        },
      };
      const cache = options.cache ?? (this.hashIds && notify && listenConnection !== undefined ? {} : false);
      this[kSessionStore] = cache
        ? new CachedPostgresSessionStore({ ...storeOptions, cache: { ...cache, listenConnection } })
        : new PostgresSessionStore(storeOptions);

      let pruningStarted = false;
      this.#startPruning = () => {
        if (pruningStarted || options.pruneSessionInterval === false) return;
        pruningStarted = true;
        const seconds = options.pruneSessionInterval || DEFAULT_PRUNE_INTERVAL_SECONDS;
        const randomize = options.pruneSessionRandomizedInterval;
        this[kSessionStore].startPruning({
          intervalMs: seconds * 1000,
          jitter: randomize === false ? false : (randomize ?? defaultPruneJitter),
          onError: (err) => errorLog('Failed to prune sessions:', err),
          // Looked up at each run, as connect-pg-simple's timer calls `this.pruneSessions()`.
          run: () => this.pruneSessions() ?? Promise.resolve(),
        });
      };
      // PgStore starts pruning at once; connect-pg-simple on the first get/set/destroy/touch
      // (or, here, the first statement of pgsession's middleware). The timer is unref()ed.
      if (!flavor.lazyPruning) this.#startPruning();
    }

    // ---- connect-pg-simple's query layer ----

    quotedTable(): string {
      return this.#names.qualified;
    }

    query(
      query: string | Statement,
      params?: readonly unknown[] | QueryCallback,
      callback?: QueryCallback,
      noTableCreation?: boolean,
    ): void {
      let values: readonly unknown[];
      if (typeof params === 'function') {
        if (callback) throw new Error('Two callback functions set at once');
        callback = params;
        values = [];
      } else {
        values = params ?? [];
      }
      const result = this._asyncQuery(query, values, noTableCreation);
      if (!callback) {
        // As connect-pg-simple: without a callback, a failure is nobody's to report.
        result.catch(() => {});
        return;
      }
      settle<Row | undefined>(result, callback as (err: unknown, value?: Row | undefined) => void);
    }

    async _asyncQuery(
      query: string | Statement,
      params?: readonly unknown[],
      noTableCreation?: boolean,
    ): Promise<Row | undefined> {
      await this._ensureSessionStoreTable(noTableCreation);
      const text = typeof query === 'string' ? query : query.text;
      const values = params === undefined ? undefined : [...params];
      if (this.#pgPromise) {
        const rows = await this.#pgPromise.any(text, values);
        return (rows?.[0] ?? undefined) as Row | undefined;
      }
      const db = this.#db;
      if (!db || typeof db.query !== 'function') throw new Error('pgsession: the store has no pool to query');
      // Named (prepared) statements only on pools that lend connections, as node-postgres does.
      const name = typeof query === 'string' ? undefined : query.name;
      const result =
        name !== undefined && typeof db.connect === 'function'
          ? await db.query({ text, name, values: values ?? [] })
          : await db.query(text, values);
      return (result?.rows?.[0] ?? undefined) as Row | undefined;
    }

    _ensureSessionStoreTable(noTableCreation?: boolean): Promise<void> {
      if (noTableCreation || !this.#createTableIfMissing) return Promise.resolve();
      // One creation at a time; forgotten if it fails, so a database that was down at
      // start-up is tried again on the next query.
      this.#tableCreation ??= this._rawEnsureSessionStoreTable().catch((err: unknown) => {
        this.#tableCreation = undefined;
        throw err;
      });
      return this.#tableCreation;
    }

    async _rawEnsureSessionStoreTable(): Promise<void> {
      const row = await this._asyncQuery('SELECT to_regclass($1::text)', [this.quotedTable()], true);
      if (row && row.to_regclass === null) {
        // pgsession's table (connect-pg-simple's columns and its own, with their indexes).
        await this._asyncQuery(createTableSql(this.#names), [], true);
      }
    }

    // ---- express-session's store API ----

    /** The storage key and raw id a session id or admin key names (an error for a foreign admin key). */
    #resolve(sid: string): { key: string; legacyKey?: string; admin?: true } | UnknownSessionKeyError {
      const admin = readAdminKey(sid);
      if (admin instanceof UnknownSessionKeyError) return admin;
      if (admin !== undefined) return { key: admin, admin: true };
      return this.hashIds ? { key: hashId(sid), legacyKey: sid } : { key: sid };
    }

    get(sid: string, callback?: GetCallback): Promise<SessionJSON | null> | undefined {
      this.#startPruning();
      const target = this.#resolve(sid);
      if (target instanceof UnknownSessionKeyError) return settle(Promise.resolve(null), callback);
      const options = target.legacyKey === undefined ? undefined : { legacyKey: target.legacyKey };
      const work = this[kSessionStore].get(target.key, options).then((record) => {
        if (!record) return null;
        this.#known.set(target.key, true);
        return record.data;
      });
      return settle(work, callback);
    }

    set(sid: string, session: SessionJSON, callback?: Done): Promise<void> | undefined {
      this.#startPruning();
      const target = this.#resolve(sid);
      if (target instanceof UnknownSessionKeyError) return settle(Promise.reject(target), callback);
      const store = this[kSessionStore];
      // pgsession's middleware, through a wrapper the app put on this method: its key-level change.
      const planned = plannedWrite(session, target.key);
      if (planned) return settle(planned.apply(store), callback);
      const now = this.#now();
      const expiresAt = expireTime(session, this.ttl, now);
      const userId = userIdOf(session);
      const options = target.legacyKey === undefined ? undefined : { legacyKey: target.legacyKey };
      let work: Promise<void>;
      if (this.#known.has(target.key) || target.admin) {
        // A session this process loaded: UPDATE-only. If it is gone (logged out meanwhile),
        // nothing is written — silently, as the logout is what the user asked for last.
        work = store.replace(target.key, session, expiresAt, now, userId, options).then(() => {});
      } else {
        work = store
          .upsert(
            target.key,
            { data: session, expiresAt, createdAt: now, lastActiveAt: now, userId, version: 0 },
            options,
          )
          .then(() => {
            this.#known.set(target.key, true);
          });
      }
      return settle(work, callback);
    }

    destroy(sid: string, callback?: Done): Promise<void> | undefined {
      this.#startPruning();
      const target = this.#resolve(sid);
      if (target instanceof UnknownSessionKeyError) return settle(Promise.reject(target), callback);
      // Remembered, not forgotten: a request that loaded this session before the logout must
      // not re-insert it when it saves afterwards.
      this.#known.set(target.key, true);
      const store = this[kSessionStore];
      let work: Promise<void>;
      if (target.admin) {
        // An admin tool revoking a listed session: say so when there was nothing to revoke.
        work = store.remove(target.key).then((removed) => {
          if (!removed) throw goneKeyError();
        });
      } else {
        // express-session's logout: a session already gone is fine.
        work = store.destroy(
          target.key,
          target.legacyKey === undefined ? undefined : { legacyKey: target.legacyKey },
        );
      }
      return settle(work, callback);
    }

    touch(sid: string, session: SessionJSON, callback?: Done): Promise<void> | undefined {
      this.#startPruning();
      const target = this.#resolve(sid);
      if (target instanceof UnknownSessionKeyError) return settle(Promise.reject(target), callback);
      // pgsession's middleware, through a wrapper the app put on this method: its planned touch.
      const planned = plannedWrite(session, target.key);
      if (planned) return settle(planned.apply(this[kSessionStore]), callback);
      if (this.#disableTouch) return settle(Promise.resolve(), callback);
      const now = this.#now();
      const work = this[kSessionStore]
        .touch(target.key, expireTime(session, this.ttl, now), now)
        .then(() => {});
      return settle(work, callback);
    }

    /** The key `all()` / `ids()` give a stored session (see `PgStoreInstance.all`). */
    #listedKey(stored: { key: string; rawId: string | undefined }): string {
      return stored.rawId ?? issueAdminKey(stored.key);
    }

    all(callback?: AllCallback): Promise<Record<string, SessionJSON>> | undefined {
      const work = this[kSessionStore].all().then((sessions) => {
        const byKey: Record<string, SessionJSON> = Object.create(null);
        for (const stored of sessions) byKey[this.#listedKey(stored)] = stored.data;
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
      const work = this[kSessionStore].keys().then((keys) => keys.map((stored) => this.#listedKey(stored)));
      return settle(work, callback);
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
  lazyPruning: false,
});
/** An instance of {@link PgStore}. */
export type PgStore = PgStoreInstance;
