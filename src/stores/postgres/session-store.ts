import pg from 'pg';
import { SerializationError } from '../../core/errors.js';
import { POOL_DEFAULTS } from '../../db/pool.js';
import type { NotifyTarget } from '../cache/protocol.js';
import {
  type SessionChange,
  type SessionJSON,
  type SessionListing,
  type SessionRecord,
  type SessionStore,
  userIdOf,
} from '../types.js';
import { buildQueries, type Queries, type Statement } from './queries.js';
import { advisoryLockKeys, ensureSchema, type TableNames, type TableOptions, tableNames } from './schema.js';

/** Options for {@link PostgresSessionStore}. */
export interface PostgresSessionStoreOptions extends TableOptions {
  /** The pool to use. The store never ends a pool it was given. */
  pool?: pg.Pool | undefined;
  /**
   * Used only when `pool` is absent: the store creates its own pool from this configuration
   * (adding connection, statement and query timeouts unless set) and ends it in
   * {@link PostgresSessionStore.close}.
   */
  poolConfig?: pg.PoolConfig | undefined;
  /**
   * Create the table when it is missing (default true). Either way an existing table is
   * upgraded with pgsession's columns on first use (see `ensureSchema`).
   */
  createTableIfMissing?: boolean | undefined;
  /** The clock, in epoch milliseconds. Default `Date.now`; tests inject a fake one. */
  now?: (() => number) | undefined;
  /**
   * The value written to `id_hashed` for new rows: true when keys are hashes of session ids
   * (pgsession's default), false when they are raw ids. Only rows with `id_hashed = false` can
   * be adopted through `legacyKey`. Default true.
   */
  idsHashed?: boolean | undefined;
  /** Use named prepared statements for the hot paths (default true; turn off behind PgBouncer in transaction mode). */
  preparedStatements?: boolean | undefined;
  /** Rows deleted per statement by {@link PostgresSessionStore.prune}. Default 5000. */
  pruneBatchSize?: number | undefined;
  /**
   * Announce the keys of changed and deleted sessions with `pg_notify`, in the same statement
   * as the change, for the caches of other processes (`PgInvalidationListener`). Default: off.
   */
  notify?: NotifyTarget | undefined;
  /**
   * With `notify`: also install triggers that announce changes made by other writers
   * (hand-written SQL, scripts, connect-pg-simple) on the same channel (see `ensureSchema`'s
   * `announceWrites`). Default true.
   */
  announceOtherWriters?: boolean | undefined;
  /** Where errors nobody awaits are reported (an idle pool client failing, background pruning). Default `console.error`. */
  errorLog?: ((...args: unknown[]) => void) | undefined;
}

/** Options for {@link PostgresSessionStore.prune}. */
export interface PruneOptions {
  /** Rows deleted per statement; default the store's `pruneBatchSize` (5000). */
  batchSize?: number | undefined;
  /** Called after each non-empty batch with the running total (e.g. for a CLI progress bar); awaited. */
  onProgress?: ((deletedSoFar: number) => void | Promise<void>) | undefined;
  /** Stop after the current batch when aborted; the rows deleted so far stay deleted. */
  signal?: AbortSignal | undefined;
}

/** Options for {@link PostgresSessionStore.startPruning}. */
export interface PruningScheduleOptions {
  /** Average time between two prunes, in milliseconds. Default 15 minutes (connect-pg-simple's). */
  intervalMs?: number | undefined;
  /**
   * Spread of each delay so that many servers do not prune in step. `true` (default) picks
   * uniformly between 50% and 150% of the interval, as connect-pg-simple does; `false` uses the
   * interval as is; a function maps the interval to the delay to use.
   */
  jitter?: boolean | ((intervalMs: number) => number) | undefined;
  /** Called when a background prune fails. Default: the store's `errorLog`. */
  onError?: ((err: unknown) => void) | undefined;
  /** Batch size for each prune. */
  batchSize?: number | undefined;
}

/** A session as returned by {@link PostgresSessionStore.all}. */
export interface StoredSession {
  key: string;
  data: SessionJSON;
}

/** Fifteen minutes: connect-pg-simple's default prune interval. */
export const DEFAULT_PRUNE_INTERVAL_MS = 15 * 60_000;
/** Rows per DELETE when pruning. */
export const DEFAULT_PRUNE_BATCH_SIZE = 5000;

/** connect-pg-simple's randomizer: between 50% and 150% of the interval. */
export const defaultPruneJitter = (delay: number): number => Math.ceil(delay / 2 + delay * Math.random());

interface RecordRow {
  sess: SessionJSON | string;
  expires_ms: number;
  created_ms: number | null;
  active_ms: number | null;
  user_id: string | null;
  version: number | null;
}

function parseSess(sess: SessionJSON | string): SessionJSON {
  // node-postgres parses `json` columns itself, unless the application replaced the type parser.
  return typeof sess === 'string' ? (JSON.parse(sess) as SessionJSON) : sess;
}

function serialize(value: unknown): string {
  try {
    const json = JSON.stringify(value);
    if (json === undefined) throw new TypeError('value is not JSON-serializable');
    return json;
  } catch (err) {
    throw new SerializationError(`Session data cannot be stored as JSON: ${(err as Error).message}`, err);
  }
}

/**
 * Session records in PostgreSQL, in connect-pg-simple's table (upgraded in place), keyed by
 * storage key (the hash of the session id). This is the promise-based face the pgsession engine
 * uses; `PgStore` wraps it in express-session's callback API.
 *
 * Every method rejects on a database fault: a fault never reads as "no session".
 */
export class PostgresSessionStore implements SessionStore {
  /** The pool queries run on. */
  readonly pool: pg.Pool;
  /** The table's quoted names. */
  readonly names: TableNames;
  /** `touch` records `lastActiveAt` (the `last_active_at` column), so the engine can enforce idle timeouts. */
  readonly tracksActivity = true;
  readonly #queries: Queries;
  readonly #ownsPool: boolean;
  readonly #createTable: boolean;
  readonly #announce: { channel: string } | false;
  readonly #now: () => number;
  readonly #idsHashed: boolean;
  readonly #pruneBatchSize: number;
  readonly #errorLog: (...args: unknown[]) => void;
  #schemaReady = false;
  #schemaPromise: Promise<void> | undefined;
  #pruneTimer: NodeJS.Timeout | undefined;
  #pruneRun: Promise<void> | undefined;
  #closed = false;

  constructor(options: PostgresSessionStoreOptions) {
    this.names = tableNames(options);
    this.#queries = buildQueries(this.names, options.preparedStatements ?? true, options.notify);
    this.#createTable = options.createTableIfMissing ?? true;
    this.#announce =
      options.notify && options.announceOtherWriters !== false ? { channel: options.notify.channel } : false;
    this.#now = options.now ?? Date.now;
    this.#idsHashed = options.idsHashed ?? true;
    this.#pruneBatchSize = positiveInteger(
      options.pruneBatchSize ?? DEFAULT_PRUNE_BATCH_SIZE,
      'pruneBatchSize',
    );
    this.#errorLog = options.errorLog ?? console.error.bind(console);
    if (options.pool) {
      this.pool = options.pool;
      this.#ownsPool = false;
    } else {
      // Timeouts so a database outage never turns into hung requests (see `POOL_DEFAULTS`):
      // connecting, the statement on the server, and the wait for an answer on the client.
      this.pool = new pg.Pool({
        connectionTimeoutMillis: POOL_DEFAULTS.connectionTimeoutMillis,
        statement_timeout: POOL_DEFAULTS.statement_timeout,
        query_timeout: POOL_DEFAULTS.query_timeout,
        keepAlive: true,
        ...options.poolConfig,
      });
      // Without a listener, an idle client's error (server restart) would crash the process.
      this.pool.on('error', (err) => this.#errorLog('pgsession: PostgreSQL pool error:', err));
      this.#ownsPool = true;
    }
  }

  /** Whether rows this store writes are keyed by hashed ids (the `idsHashed` option). */
  get idsHashed(): boolean {
    return this.#idsHashed;
  }

  /**
   * Create or upgrade the table if needed (once; retried on the next call after a failure, so a
   * database that is down at start-up does not disable the store for good). Every method calls
   * it; call it at start-up to fail fast.
   */
  ready(): Promise<void> {
    if (this.#schemaReady) return Promise.resolve();
    this.#schemaPromise ??= ensureSchema(this.pool, {
      schemaName: this.names.schemaName,
      tableName: this.names.tableName,
      createTable: this.#createTable,
      announceWrites: this.#announce,
    }).then(
      () => {
        this.#schemaReady = true;
      },
      (err: unknown) => {
        this.#schemaPromise = undefined;
        throw err;
      },
    );
    return this.#schemaPromise;
  }

  async #query<R extends pg.QueryResultRow>(
    statement: Statement,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    if (!this.#schemaReady) await this.ready();
    return this.pool.query<R>({ text: statement.text, name: statement.name, values });
  }

  #toRecord(row: RecordRow, now: number): SessionRecord {
    const data = parseSess(row.sess);
    return {
      data,
      expiresAt: row.expires_ms,
      // Rows written by connect-pg-simple have no metadata: they count as created and active now.
      createdAt: row.created_ms ?? now,
      lastActiveAt: row.active_ms ?? now,
      userId: row.user_id ?? userIdOf(data),
      version: row.version ?? 0,
    };
  }

  /**
   * Load a live session. With `legacyKey`, a row stored under that raw id by connect-pg-simple
   * (`id_hashed = false`) is re-keyed to `key` in the same statement, so the raw id leaves the
   * table the first time it is seen. (`fresh` is accepted for caching layers; this store always
   * reads the table.)
   */
  async get(key: string, options?: { legacyKey?: string; fresh?: boolean }): Promise<SessionRecord | null> {
    const now = this.#now();
    const legacyKey = options?.legacyKey;
    if (legacyKey === undefined || legacyKey === key) {
      const { rows } = await this.#query<RecordRow>(this.#queries.get, [key, now]);
      return rows[0] ? this.#toRecord(rows[0], now) : null;
    }
    const { rows } = await this.#query<RecordRow & { retry: boolean }>(this.#queries.getLegacy, [
      key,
      now,
      legacyKey,
    ]);
    const row = rows[0];
    if (!row) return null;
    if (row.retry) {
      // A concurrent request adopted the legacy row first; it is now under `key`.
      const again = await this.#query<RecordRow>(this.#queries.get, [key, now]);
      return again.rows[0] ? this.#toRecord(again.rows[0], now) : null;
    }
    return this.#toRecord(row, now);
  }

  /** Insert a new session; an existing row with the same key is an error (unique violation). */
  async create(key: string, record: SessionRecord): Promise<void> {
    await this.#query(this.#queries.insert, [
      key,
      serialize(record.data),
      record.expiresAt,
      record.createdAt,
      record.lastActiveAt,
      record.userId,
      record.version,
      this.#idsHashed,
    ]);
  }

  /**
   * Apply a change as a key-level merge onto the row as it is when the UPDATE takes its lock, so
   * concurrent requests that changed different keys both keep their change. Never inserts: if
   * the session is gone or expired, nothing is written and null is returned (a concurrent
   * logout wins; no resurrection). `baseVersion` is not enforced: merging is the conflict policy.
   */
  async update(key: string, change: SessionChange): Promise<SessionRecord | null> {
    const now = this.#now();
    try {
      const { rows } = await this.#query<RecordRow>(this.#queries.update, [
        key,
        change.unset,
        serialize(change.set),
        change.expiresAt,
        change.lastActiveAt,
        change.userId,
        now,
      ]);
      return rows[0] ? this.#toRecord(rows[0], now) : null;
    } catch (err) {
      // The merge goes through jsonb, which cannot hold "\u0000" although the json column can
      // (22P05). Such a session is still saved, whole: it loses the key-level merge, not the write.
      if ((err as { code?: unknown }).code !== '22P05') throw err;
      const written = await this.replace(
        key,
        change.data,
        change.expiresAt,
        change.lastActiveAt,
        change.userId,
      );
      if (!written) return null;
      const { rows } = await this.#query<RecordRow>(this.#queries.get, [key, now]);
      return rows[0] ? this.#toRecord(rows[0], now) : null;
    }
  }

  /**
   * Replace a live session's data wholesale (express-session's `set` of a session this process
   * loaded). UPDATE-only for the same reason as {@link update}. Returns whether a row was written.
   */
  async replace(
    key: string,
    data: SessionJSON,
    expiresAt: number,
    lastActiveAt: number,
    userId: string | null = userIdOf(data),
  ): Promise<boolean> {
    const result = await this.#query(this.#queries.replace, [
      key,
      serialize(data),
      expiresAt,
      lastActiveAt,
      userId,
      this.#now(),
    ]);
    return (result.rowCount ?? 0) > 0;
  }

  /**
   * Insert, or overwrite an existing row (connect-pg-simple's `set`). Only for ids this process
   * has never loaded, i.e. brand-new sessions: for loaded ones use {@link replace} or {@link update}.
   */
  async upsert(key: string, record: SessionRecord): Promise<void> {
    await this.#query(this.#queries.upsert, [
      key,
      serialize(record.data),
      record.expiresAt,
      record.createdAt,
      record.lastActiveAt,
      record.userId,
      record.version,
      this.#idsHashed,
      this.#now(),
    ]);
  }

  /** Extend a live session's expiry without touching `sess`. False when it is gone or expired. */
  async touch(key: string, expiresAt: number, lastActiveAt: number): Promise<boolean> {
    const result = await this.#query(this.#queries.touch, [key, expiresAt, lastActiveAt, this.#now()]);
    return (result.rowCount ?? 0) > 0;
  }

  /**
   * Delete a session (missing is fine). With `legacyKey`, a row still stored under that raw id
   * by connect-pg-simple goes too.
   */
  async destroy(key: string, options?: { legacyKey?: string }): Promise<void> {
    const legacyKey = options?.legacyKey;
    if (legacyKey === undefined || legacyKey === key) await this.#query(this.#queries.destroy, [key]);
    else await this.#query(this.#queries.destroyLegacy, [key, legacyKey]);
  }

  /** The user's live sessions, most recently active first. */
  async listByUser(userId: string): Promise<SessionListing[]> {
    const now = this.#now();
    const { rows } = await this.#query<RecordRow & { sid: string }>(this.#queries.listByUser, [userId, now]);
    return rows.map((row) => ({ key: row.sid, record: this.#toRecord(row, now) }));
  }

  /** Delete every session of the user except `exceptKey`; returns how many live sessions went. */
  async destroyByUser(userId: string, exceptKey?: string): Promise<number> {
    const { rows } = await this.#query<{ count: number }>(this.#queries.destroyByUser, [
      userId,
      exceptKey ?? null,
      this.#now(),
    ]);
    return rows[0]?.count ?? 0;
  }

  /** Every live session (express-session's `all`). Loads the whole table: for admin tools and tests. */
  async all(): Promise<StoredSession[]> {
    const { rows } = await this.#query<{ sid: string; sess: SessionJSON | string }>(this.#queries.all, [
      this.#now(),
    ]);
    return rows.map((row) => ({ key: row.sid, data: parseSess(row.sess) }));
  }

  /** Number of live sessions. */
  async count(): Promise<number> {
    const { rows } = await this.#query<{ count: number }>(this.#queries.count, [this.#now()]);
    return rows[0]?.count ?? 0;
  }

  /** Storage keys of all live sessions. */
  async keys(): Promise<string[]> {
    const { rows } = await this.#query<{ sid: string }>(this.#queries.keys, [this.#now()]);
    return rows.map((row) => row.sid);
  }

  /** Delete every session in the table. */
  async clear(): Promise<void> {
    await this.#query(this.#queries.clear, []);
  }

  /**
   * Delete expired sessions in batches of `batchSize` rows (each its own short statement, so no
   * long-held locks or giant transactions), until a batch comes back short. Only one process
   * prunes a table at a time: the others get 0 at once instead of queueing up behind it (a
   * session-level `pg_try_advisory_lock` on a dedicated connection, released at the end).
   *
   * @returns the number of rows deleted by this call.
   */
  async prune(options: PruneOptions = {}): Promise<number> {
    const batchSize = positiveInteger(options.batchSize ?? this.#pruneBatchSize, 'batchSize');
    if (!this.#schemaReady) await this.ready();
    // One cutoff for the whole run: rows expiring while we work wait for the next run, which
    // also bounds the loop.
    const cutoff = this.#now();
    const [k1, k2] = advisoryLockKeys('prune', this.names);
    const client = await this.pool.connect();
    let broken: Error | undefined;
    let locked = false;
    try {
      const { rows } = await client.query<{ locked: boolean }>(this.#queries.pruneLock.text, [k1, k2]);
      locked = rows[0]?.locked === true;
      if (!locked) return 0;
      let total = 0;
      for (;;) {
        const result = await client.query(this.#queries.pruneBatch.text, [cutoff, batchSize]);
        const deleted = result.rowCount ?? 0;
        total += deleted;
        if (deleted > 0) await options.onProgress?.(total);
        if (deleted < batchSize || options.signal?.aborted) break;
      }
      return total;
    } finally {
      if (locked) {
        await client.query(this.#queries.pruneUnlock.text, [k1, k2]).catch((err: Error) => {
          // Destroying the connection releases its session-level lock.
          broken = err;
        });
      }
      client.release(broken);
    }
  }

  /**
   * Prune in the background every `intervalMs` (with jitter), until {@link stopPruning} or
   * {@link close}. The timer is `unref()`ed: it never keeps the process alive. Calling it again
   * restarts the schedule with the new options.
   */
  startPruning(options: PruningScheduleOptions = {}): void {
    if (this.#closed) return;
    this.stopPruning();
    const interval = positiveInteger(options.intervalMs ?? DEFAULT_PRUNE_INTERVAL_MS, 'intervalMs');
    const jitter =
      typeof options.jitter === 'function'
        ? options.jitter
        : options.jitter === false
          ? (delay: number) => delay
          : defaultPruneJitter;
    const onError =
      options.onError ?? ((err: unknown) => this.#errorLog('pgsession: failed to prune sessions:', err));
    const schedule = () => {
      const timer = setTimeout(
        () => {
          this.#pruneRun = this.prune({ batchSize: options.batchSize })
            .then(
              () => {},
              (err: unknown) => {
                try {
                  onError(err);
                } catch {
                  // A throwing error handler must not stop the schedule (nor go unhandled).
                }
              },
            )
            .finally(() => {
              this.#pruneRun = undefined;
              // Rescheduled only if nobody stopped or restarted the schedule meanwhile.
              if (this.#pruneTimer === timer) schedule();
            });
        },
        Math.max(0, jitter(interval)),
      );
      timer.unref();
      this.#pruneTimer = timer;
    };
    schedule();
  }

  /** Whether background pruning is scheduled. */
  get pruning(): boolean {
    return this.#pruneTimer !== undefined;
  }

  /** Stop background pruning (a prune already running finishes). */
  stopPruning(): void {
    if (this.#pruneTimer) clearTimeout(this.#pruneTimer);
    this.#pruneTimer = undefined;
  }

  /**
   * Stop background pruning, wait for a running prune, and end the pool if this store created
   * it (a pool passed in belongs to the caller). Idempotent.
   */
  async close(): Promise<void> {
    this.stopPruning();
    if (this.#closed) return;
    this.#closed = true;
    await this.#pruneRun;
    if (this.#ownsPool) await this.pool.end();
  }
}

function positiveInteger(value: number, what: string): number {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${what} must be a positive number`);
  return Math.floor(value);
}
