import pg from 'pg';
import { ConfigError, SerializationError } from '../../core/errors.js';
import { hashId } from '../../core/id.js';
import {
  type DeviceBinding,
  type SessionChange,
  type SessionJSON,
  type SessionListing,
  type SessionRecord,
  type SessionStore,
  userIdOf,
} from '../../core/store.js';
import { watchCheckedOut } from '../../db/checkout.js';
import { describeError, guardPoolErrors, POOL_DEFAULTS } from '../../db/pool.js';
import { type QueryOptions, queryOptionsOf, withQueryOptions } from '../../db/query.js';
import { CoalescingAnnouncer } from '../cache/announcer.js';
import type { NotifyTarget } from '../cache/protocol.js';
import { SaveBatch } from './batch.js';
import { SaveCombiner } from './combine.js';
import { buildQueries, type Queries, type Statement } from './queries.js';
import {
  advisoryLockKeys,
  ensureSchema,
  type SchemaPool,
  type TableNames,
  type TableOptions,
  tableNames,
} from './schema.js';

/**
 * What the store needs of a pool: node-postgres's promise `query(textOrConfig, values)`. Any
 * pool-like object with it works (a wrapper, a mock, another pg-compatible pool); `connect()`
 * (a dedicated connection, for the schema upgrade's transaction and the prune lock) and named
 * prepared statements are used only when the pool has `connect()`, as node-postgres pools do.
 */
export interface Queryable {
  query(textOrConfig: string | pg.QueryConfig, values?: unknown[]): Promise<{ rows: unknown[] }>;
  connect?(): Promise<pg.PoolClient>;
}

/** One row of a statement's result. */
export type Row = Record<string, unknown>;

/**
 * Runs one of the store's statements and resolves with its first row (every statement returns
 * at most one). `PgStore` routes them through its own `query()`, as connect-pg-simple does.
 */
export type RunStatement = (statement: Statement, values: unknown[]) => Promise<Row | undefined>;

/** Options for {@link PostgresSessionStore}. */
export interface PostgresSessionStoreOptions extends TableOptions {
  /** The pool to use (see {@link Queryable}). The store never ends a pool it was given, unless `ownsPool`. */
  pool?: pg.Pool | Queryable | undefined;
  /** End `pool` in {@link PostgresSessionStore.close} (for a pool made for this store alone). Default false. */
  ownsPool?: boolean | undefined;
  /**
   * Used only when `pool` and `db` are absent: the store creates its own pool from this
   * configuration (adding connection, statement and query timeouts unless set) and ends it in
   * {@link PostgresSessionStore.close}.
   */
  poolConfig?: pg.PoolConfig | undefined;
  /** Where statements and schema changes go when there is no pool (pg-promise: `PgStore`'s adapter). */
  db?: Queryable | undefined;
  /** How statements run; default: on `pool` (or `db`). */
  run?: RunStatement | undefined;
  /**
   * Create the table when it is missing (default true). Either way an existing table is
   * upgraded with pgsession's columns when a statement first finds them missing (see `ensureSchema`).
   */
  createTableIfMissing?: boolean | undefined;
  /** The clock, in epoch milliseconds. Default `Date.now` (looked up at each call); tests inject a fake one. */
  now?: (() => number) | undefined;
  /**
   * Whether the keys this store is given are hashes of session ids (true, pgsession's default)
   * or the ids themselves (false, for a switch that must stay reversible: new rows are then
   * stored under raw ids, as connect-pg-simple stores them). Either way every row is found,
   * whichever way it is stored. Default true.
   */
  idsHashed?: boolean | undefined;
  /**
   * Use named prepared statements for the hot paths (default true, or the setting of a pool made
   * by `createPool`). Turn off behind a transaction-mode pooler that does not track them.
   */
  preparedStatements?: QueryOptions['preparedStatements'];
  /**
   * Time limit of each statement in milliseconds (default 15 000, or the setting of a pool made
   * by `createPool`; `false`: none), enforced by cancelling the statement, so it works through
   * transaction-mode poolers (see `withQueryOptions`).
   */
  statementTimeout?: QueryOptions['statementTimeout'];
  /** Rows deleted per statement by {@link PostgresSessionStore.prune}. Default 5000. */
  pruneBatchSize?: number | undefined;
  /**
   * Announce the keys of changed and deleted sessions with `pg_notify`, in the same statement
   * as the change, for the caches of other processes (`PgInvalidationListener`). Default: off.
   */
  notify?: NotifyTarget | undefined;
  /**
   * With `notify`, how saves that change only a session's data are announced: `'statement'`
   * (default here) in the save's own statement, like deletes; `'coalesced'` (`PgStore`'s
   * default) in batches, one `pg_notify` statement per `announceIntervalMs` for every key this
   * process saved meanwhile, so saves commit without a pending notification (NOTIFY's
   * database-wide commit lock, docs/scaling.md). Deletes, revocations and changes of owner are
   * announced in the write's own statement either way.
   */
  announceData?: 'statement' | 'coalesced' | undefined;
  /** With `announceData: 'coalesced'`: most ms between a save and its announcement. Default 5. */
  announceIntervalMs?: number | undefined;
  /**
   * With `notify`: also install triggers that announce changes made by other writers
   * (hand-written SQL, scripts, connect-pg-simple) on the same channel (see `ensureSchema`'s
   * `announceWrites`). Default true.
   */
  announceOtherWriters?: boolean | undefined;
  /**
   * Send the saves of different sessions made in the same turn of the event loop as one
   * statement (up to 100 each): one round trip and one commit for many requests on a busy
   * server, none added when it is idle. Each save keeps its own outcome. Default true.
   */
  batchSaves?: boolean | undefined;
  /** Where errors nobody awaits are reported (an idle pool client failing, background pruning). Default `console.error`. */
  errorLog?: ((...args: unknown[]) => void) | undefined;
}

/** Options for {@link PostgresSessionStore.prune} and {@link PostgresSessionStore.rekey}. */
export interface PruneOptions {
  /** Rows per statement; default the store's `pruneBatchSize` (5000). */
  batchSize?: number | undefined;
  /** Called after each non-empty batch with the running total (e.g. for a CLI progress bar); awaited. */
  onProgress?: ((doneSoFar: number) => void | Promise<void>) | undefined;
  /** Stop after the current batch when aborted; the rows handled so far stay handled. */
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
  /** What each run does; default {@link PostgresSessionStore.prune}. (`PgStore` runs its `pruneSessions()`.) */
  run?: (() => Promise<unknown>) | undefined;
}

/** A session as returned by {@link PostgresSessionStore.all}. */
export interface StoredSession extends StoredKey {
  data: SessionJSON;
}

/** How a stored session can be named, from {@link PostgresSessionStore.keys}. */
export interface StoredKey {
  /** The key this store's methods take for it (in `idsHashed` mode: the storage key). */
  key: string;
  /** The session id itself, for a row still stored under it (connect-pg-simple's, or `hashIds: false`). */
  rawId: string | undefined;
}

/** Fifteen minutes: connect-pg-simple's default prune interval. */
export const DEFAULT_PRUNE_INTERVAL_MS = 15 * 60_000;
/** Rows per DELETE when pruning. */
export const DEFAULT_PRUNE_BATCH_SIZE = 5000;

/** connect-pg-simple's randomizer: between 50% and 150% of the interval. */
export const defaultPruneJitter = (delay: number): number => Math.ceil(delay / 2 + delay * Math.random());

/** The pool settings pgsession adds to a pool it creates, unless the configuration sets them. */
const OWN_POOL_DEFAULTS = {
  // Timeouts so a database outage never turns into hung requests (see `POOL_DEFAULTS`):
  // connecting, the statement on the server, and the wait for an answer on the client.
  // The statement's own limit is `statementTimeout`, applied per query (not a startup parameter,
  // which transaction-mode poolers refuse).
  connectionTimeoutMillis: POOL_DEFAULTS.connectionTimeoutMillis,
  query_timeout: POOL_DEFAULTS.query_timeout,
  keepAlive: true,
} as const satisfies pg.PoolConfig;

/**
 * A pool for a store that was given a configuration rather than a pool. `pg.Pool` gets the
 * configuration exactly as given (connect-pg-simple's behaviour, which its tests check); the
 * defaults go into the pool's `options` afterwards, where node-postgres reads them each time it
 * opens a client, and only for settings the configuration leaves unset.
 */
export function createOwnPool(config: pg.PoolConfig, errorLog: (...args: unknown[]) => void): pg.Pool {
  const pool = new pg.Pool(config);
  const options = (pool as unknown as { options?: unknown }).options;
  if (options && typeof options === 'object') {
    const settings = options as Record<string, unknown>;
    for (const [key, value] of Object.entries(OWN_POOL_DEFAULTS)) settings[key] ??= value;
  }
  // Without a listener, an idle client's error (server restart) would crash the process.
  pool.on('error', (err) => errorLog(`pgsession: PostgreSQL pool error: ${describeError(err)}`));
  return pool;
}

interface RecordRow {
  sess: SessionJSON | string;
  expires_ms: number;
  created_ms: number | null;
  active_ms: number | null;
  user_id: string | null;
  version: number | null;
  /** Absent from rows of statements that do not select it. */
  device?: DeviceBinding | string | null | undefined;
}

/** A row of `updateMany`'s answer. */
interface BatchRow extends RecordRow {
  /** The item's index in the batch. */
  bi: number;
  hashed: boolean;
  /** The save changed the session's owner (then its statement announced it). */
  owner: boolean;
}

/** A save waiting for its batch (see batch.ts). */
interface QueuedSave {
  key: string;
  h: string;
  k: string | null;
  change: SessionChange;
  /** `change.set`, serialized. */
  set: string;
}

interface ListedRow extends RecordRow {
  sid: string;
  hashed: boolean;
  key_hash: string | null;
}

function parseJson<T>(value: T | string): T {
  // node-postgres parses `json` columns itself, unless the application replaced the type parser.
  return typeof value === 'string' ? (JSON.parse(value) as T) : value;
}

/** Most saves in one batched statement (see batch.ts). */
const SAVES_PER_STATEMENT = 100;

function serialize(value: unknown): string {
  try {
    const json = JSON.stringify(value);
    if (json === undefined) throw new TypeError('value is not JSON-serializable');
    return json;
  } catch (err) {
    throw new SerializationError(`Session data cannot be stored as JSON: ${(err as Error).message}`, err);
  }
}

/** Undefined table or column: the table is missing or predates pgsession's columns. */
function isSchemaMissing(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '42P01' || code === '42703';
}

/**
 * Session records in PostgreSQL, in connect-pg-simple's table (upgraded in place), keyed by
 * storage key (the hash of the session id). This is the promise-based face the pgsession engine
 * uses; `PgStore` wraps it in express-session's callback API.
 *
 * Every method rejects on a database fault: a fault never reads as "no session".
 */
export class PostgresSessionStore implements SessionStore {
  /** The table's quoted names. */
  readonly names: TableNames;
  /** `touch` records `lastActiveAt` (the `last_active_at` column), so the engine can enforce idle timeouts. */
  readonly tracksActivity = true;
  readonly #pool: pg.Pool | Queryable | undefined;
  /** Where schema changes and (by default) statements go. */
  readonly #db: Queryable;
  readonly #run: RunStatement;
  readonly #queries: Queries;
  readonly #ownsPool: boolean;
  readonly #createTable: boolean;
  readonly #announce: { channel: string } | false;
  readonly #now: () => number;
  readonly #idsHashed: boolean;
  readonly #pruneBatchSize: number;
  readonly #errorLog: (...args: unknown[]) => void;
  readonly #saves = new SaveCombiner<SessionRecord | null>((r) => (r === null ? null : structuredClone(r)));
  /** Saves of different sessions in one turn of the event loop, sent as one statement (`batchSaves`). */
  readonly #batch: SaveBatch<QueuedSave, SessionRecord | null> | undefined;
  /** Batches data-only saves' announcements (`announceData: 'coalesced'`). */
  readonly #announcer: CoalescingAnnouncer | undefined;
  #schemaReady = false;
  #schemaPromise: Promise<void> | undefined;
  #pruneTimer: NodeJS.Timeout | undefined;
  #pruneRun: Promise<void> | undefined;
  #stopRun: (() => void) | undefined;
  #closed = false;

  constructor(options: PostgresSessionStoreOptions) {
    this.names = tableNames(options);
    const coalesce = options.notify !== undefined && options.announceData === 'coalesced';
    this.#createTable = options.createTableIfMissing ?? true;
    this.#announce =
      options.notify && options.announceOtherWriters !== false ? { channel: options.notify.channel } : false;
    this.#now = options.now ?? (() => Date.now());
    this.#idsHashed = options.idsHashed ?? true;
    this.#pruneBatchSize = positiveInteger(
      options.pruneBatchSize ?? DEFAULT_PRUNE_BATCH_SIZE,
      'pruneBatchSize',
    );
    this.#errorLog = options.errorLog ?? console.error.bind(console);
    // Every statement the store sends goes through this seam (see `withQueryOptions`).
    const sending = {
      preparedStatements: options.preparedStatements,
      statementTimeout: options.statementTimeout,
    };
    if (options.pool) {
      guardPoolErrors(options.pool, (line) => this.#errorLog(line));
      this.#pool = withQueryOptions(options.pool, sending);
      this.#ownsPool = options.ownsPool === true;
    } else if (options.db) {
      this.#pool = undefined;
      this.#ownsPool = false;
    } else {
      this.#pool = withQueryOptions(createOwnPool({ ...options.poolConfig }, this.#errorLog), sending);
      this.#ownsPool = true;
    }
    const db = this.#pool ?? (options.db && withQueryOptions(options.db, sending));
    if (!db) throw new ConfigError('pgsession: the store needs a pool');
    this.#db = db;
    const prepared = queryOptionsOf(db)?.preparedStatements ?? true;
    this.#queries = buildQueries(this.names, prepared, options.notify, coalesce);
    this.#run = options.run ?? ((statement, values) => this.#runOnPool(statement, values));
    if (options.batchSaves !== undefined && typeof options.batchSaves !== 'boolean') {
      throw new ConfigError(
        `pgsession: the batchSaves option must be a boolean, got ${JSON.stringify(options.batchSaves)}`,
      );
    }
    this.#batch =
      options.batchSaves === false
        ? undefined
        : new SaveBatch({
            one: (save) => this.#updateOne(save),
            many: (saves) => this.#updateMany(saves),
            max: SAVES_PER_STATEMENT,
          });
    this.#announcer =
      coalesce && options.notify
        ? new CoalescingAnnouncer({
            // Housekeeping, not one of the table's statements: straight to the pool.
            send: (text, values) => db.query(text, values),
            target: options.notify,
            intervalMs: options.announceIntervalMs,
            onError: (err) => this.#errorLog('pgsession: failed to announce saved sessions:', err),
          })
        : undefined;
  }

  /** The announcer of data-only saves, with `announceData: 'coalesced'`. */
  get announcer(): CoalescingAnnouncer | undefined {
    return this.#announcer;
  }

  /** The pool queries run on (the one given, or the one the store created). */
  get pool(): pg.Pool {
    if (!this.#pool) throw new ConfigError('pgsession: this store runs on pg-promise and has no pg pool');
    return this.#pool as pg.Pool;
  }

  /** Whether rows this store writes are keyed by hashed ids (the `idsHashed` option). */
  get idsHashed(): boolean {
    return this.#idsHashed;
  }

  /**
   * Create or upgrade the table if needed (once; retried on the next call after a failure, so a
   * database that is down at start-up does not disable the store for good). Statements that find
   * the table or a column missing call it and run again; call it at start-up to fail fast.
   */
  ready(): Promise<void> {
    if (this.#schemaReady) return Promise.resolve();
    this.#schemaPromise ??= ensureSchema(this.#db as SchemaPool, {
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

  /**
   * Run `work` on a current schema. On a pool that lends connections the schema is made current
   * once, before the first statement (columns, indexes and the announce triggers, in one
   * transaction). On any other pool (a query-only wrapper, pg-promise without its pool, a test
   * double of the store's `query`) no schema query is spent up front: a statement that finds the
   * table or one of pgsession's columns missing creates or upgrades it and runs once more.
   */
  async #withSchema<T>(work: () => Promise<T>): Promise<T> {
    if (!this.#schemaReady && typeof this.#db.connect === 'function') await this.ready();
    try {
      return await work();
    } catch (err) {
      if (this.#schemaReady || !isSchemaMissing(err)) throw err;
      await this.ready();
      return work();
    }
  }

  async #runOnPool(statement: Statement, values: unknown[]): Promise<Row | undefined> {
    // Prepared statements only on node-postgres pools (they lend connections); a query-only
    // object gets node-postgres's plain `(text, values)` call.
    const { rows } =
      statement.name !== undefined && typeof this.#db.connect === 'function'
        ? await this.#db.query({ text: statement.text, name: statement.name, values })
        : await this.#db.query(statement.text, values);
    return rows[0] as Row | undefined;
  }

  #query<R>(statement: Statement, values: unknown[]): Promise<R | undefined> {
    return this.#withSchema(async () => (await this.#run(statement, values)) as R | undefined);
  }

  /**
   * The storage key `h` and raw id `k` (or null) of a session, as the statements take them.
   * With `idsHashed`, keys are hashes and the raw id is known only when the caller passes it.
   */
  #address(key: string, legacyKey?: string): [h: string, k: string | null] {
    if (!this.#idsHashed) return [hashId(key), key];
    return [key, legacyKey === undefined || legacyKey === key ? null : legacyKey];
  }

  /** How a new row is stored: its `sid`, `id_hashed` and `key_hash`. */
  #newRow(key: string): [sid: string, hashed: boolean, keyHash: string | null] {
    return this.#idsHashed ? [key, true, null] : [key, false, hashId(key)];
  }

  #toRecord(row: RecordRow, now: number): SessionRecord {
    const data = parseJson(row.sess);
    return {
      data,
      expiresAt: row.expires_ms,
      // Rows written by connect-pg-simple have no metadata: they count as created and active now.
      createdAt: row.created_ms ?? now,
      lastActiveAt: row.active_ms ?? now,
      userId: row.user_id ?? userIdOf(data),
      version: row.version ?? 0,
      device: row.device ? parseJson(row.device) : null,
    };
  }

  /**
   * Load a live session, wherever its row is stored (see queries.ts, "Which row a session is").
   * `legacyKey` is the raw id, for a row connect-pg-simple stored under it; such a row stays
   * where it is (so a rollback to connect-pg-simple keeps the user logged in) and records its
   * storage key, so later calls that only know the key find it. (`fresh` is accepted for
   * caching layers; this store always reads the table.)
   */
  async get(key: string, options?: { legacyKey?: string; fresh?: boolean }): Promise<SessionRecord | null> {
    const legacyKey = options?.legacyKey;
    if (!this.#idsHashed && legacyKey !== undefined && legacyKey !== key) {
      // The middleware hashes ids but this store was told they are raw: its rows would be
      // stored under hashes marked as raw ids, which a leaked table could then replay.
      throw new ConfigError(
        'pgsession: the store keeps raw session ids (hashIds: false) but the middleware hashes them: set hashIds: false on both, or on neither',
      );
    }
    const now = this.#now();
    const [h, k] = this.#address(key, legacyKey);
    const row = await this.#query<RecordRow>(this.#queries.get, [h, now, k]);
    return row ? this.#toRecord(row, now) : null;
  }

  /** The columns of a new row for `key`, in the order the insert and upsert statements take them. */
  #rowValues(key: string, record: SessionRecord): unknown[] {
    const [sid, hashed, keyHash] = this.#newRow(key);
    return [
      sid,
      serialize(record.data),
      record.expiresAt,
      record.createdAt,
      record.lastActiveAt,
      record.userId,
      record.version,
      hashed,
      keyHash,
    ];
  }

  /**
   * Insert a new session; an existing row with the same key is an error (unique violation).
   * `id` is the session id, which the row is stored under instead while a switch from
   * connect-pg-simple is unfinished (schema.ts, `KEEP_RAW_IDS_MARK`).
   */
  async create(key: string, record: SessionRecord, options?: { id?: string | undefined }): Promise<void> {
    const [, k] = this.#address(key, options?.id);
    await this.#query(this.#queries.insert, [...this.#rowValues(key, record), this.#idsHashed ? k : null]);
  }

  /**
   * Apply a change as a key-level merge onto the row as it is when the UPDATE takes its lock, so
   * concurrent requests that changed different keys both keep their change. Never inserts: if
   * the session is gone or expired, nothing is written and null is returned (a concurrent
   * logout wins; no resurrection). `baseVersion` is not enforced: merging is the conflict policy.
   */
  update(key: string, change: SessionChange): Promise<SessionRecord | null> {
    // Concurrent saves of one session share one statement (see combine.ts).
    return this.#saves.run(key, change, (combined) => this.#update(key, combined));
  }

  async #update(key: string, change: SessionChange): Promise<SessionRecord | null> {
    const [h, k] = this.#address(key);
    // Serialized now: a session that cannot be stored fails its own save, not its batch's.
    const save: QueuedSave = { key, h, k, change, set: serialize(change.set) };
    return this.#batch ? this.#batch.run(save) : this.#updateOne(save);
  }

  async #updateOne(save: QueuedSave): Promise<SessionRecord | null> {
    const { key, h, k, change } = save;
    const now = this.#now();
    try {
      const row = await this.#query<RecordRow & { notified?: number }>(this.#queries.update, [
        h,
        change.unset,
        save.set,
        change.expiresAt,
        change.lastActiveAt,
        change.userId,
        now,
        k,
      ]);
      // A data-only save (its statement announced nothing): announced with the next batch.
      if (row && this.#announcer && !(Number(row.notified) > 0)) this.#announcer.add(h);
      return row ? this.#toRecord(row, now) : null;
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
      return this.get(key);
    }
  }

  /** Several sessions' saves as one statement (see batch.ts); each gets what `#updateOne` would return. */
  async #updateMany(saves: readonly QueuedSave[]): Promise<Array<SessionRecord | null>> {
    const now = this.#now();
    // Written out rather than JSON.stringify'd: each save's data is already serialized.
    const items = saves
      .map(
        (s, i) =>
          `{"bi":${i},"bh":${JSON.stringify(s.h)},"bk":${JSON.stringify(s.k)},"bunset":${JSON.stringify(s.change.unset)},"bset":${s.set},"bexp":${JSON.stringify(s.change.expiresAt)},"bact":${JSON.stringify(s.change.lastActiveAt)},"buid":${JSON.stringify(s.change.userId)}}`,
      )
      .join(',');
    const result = await this.#query<{ rows: BatchRow[] | string }>(this.#queries.updateMany, [
      `[${items}]`,
      now,
    ]);
    const rows = result ? parseJson<BatchRow[]>(result.rows) : [];
    // As `update`'s `ORDER BY hashed DESC LIMIT 1`: a hashed row wins over a raw row of the same session.
    const found: Array<BatchRow | undefined> = [];
    const ownerChanged: boolean[] = [];
    for (const row of rows) {
      const seen = found[row.bi];
      if (!seen || (row.hashed && !seen.hashed)) found[row.bi] = row;
      if (row.owner) ownerChanged[row.bi] = true;
    }
    return saves.map((s, i) => {
      const row = found[i];
      if (!row) return null;
      // A data-only save (its statement announced nothing): announced with the next batch.
      if (this.#announcer && !ownerChanged[i]) this.#announcer.add(s.h);
      return this.#toRecord(row, now);
    });
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
    options?: { legacyKey?: string },
  ): Promise<boolean> {
    const [h, k] = this.#address(key, options?.legacyKey);
    const row = await this.#query<{ version: number | null }>(this.#queries.replace, [
      h,
      serialize(data),
      expiresAt,
      lastActiveAt,
      userId,
      this.#now(),
      k,
    ]);
    return row?.version !== null && row?.version !== undefined;
  }

  /**
   * Write a session whether or not it exists (connect-pg-simple's `set`): its row is overwritten
   * wherever it is stored, else a row is inserted. Only for ids this process has never loaded,
   * i.e. brand-new sessions: for loaded ones use {@link replace} or {@link update}.
   */
  async upsert(key: string, record: SessionRecord, options?: { legacyKey?: string }): Promise<void> {
    const [h, k] = this.#address(key, options?.legacyKey);
    await this.#query(this.#queries.upsert, [...this.#rowValues(key, record), this.#now(), h, k]);
  }

  /** Extend a live session's expiry without touching `sess`. False when it is gone or expired. */
  async touch(key: string, expiresAt: number, lastActiveAt: number): Promise<boolean> {
    const [h, k] = this.#address(key);
    const row = await this.#query<{ touched: boolean }>(this.#queries.touch, [
      h,
      expiresAt,
      lastActiveAt,
      this.#now(),
      k,
    ]);
    return row?.touched === true;
  }

  /**
   * Delete a session (missing is fine). With `legacyKey`, a row still stored under that raw id
   * by connect-pg-simple goes too.
   */
  async destroy(key: string, options?: { legacyKey?: string }): Promise<void> {
    await this.#remove(key, options);
  }

  /** {@link destroy}, resolving with whether a session was there to delete (admin tools). */
  remove(key: string, options?: { legacyKey?: string }): Promise<boolean> {
    return this.#remove(key, options);
  }

  async #remove(key: string, options?: { legacyKey?: string }): Promise<boolean> {
    const [h, k] = this.#address(key, options?.legacyKey);
    const row = await this.#query<{ deleted: number }>(this.#queries.destroy, [h, k]);
    return (row?.deleted ?? 0) > 0;
  }

  /** The key the engine knows a listed row by, and its raw id if it is stored under one. */
  #keyOf(row: { sid: string; hashed: boolean; key_hash?: string | null }): StoredKey {
    if (row.hashed) return { key: row.sid, rawId: undefined };
    return { key: this.#idsHashed ? (row.key_hash ?? hashId(row.sid)) : row.sid, rawId: row.sid };
  }

  /**
   * Set or clear the session's device binding (DBSC) without touching its data: a new binding
   * only over none or one with an earlier `challengeAt` (see queries.ts). False when the
   * session is gone or the condition failed.
   */
  async bindDevice(key: string, binding: DeviceBinding | null): Promise<boolean> {
    const [h, k] = this.#address(key);
    const row = await this.#query<{ bound: number }>(this.#queries.bindDevice, [
      h,
      binding === null ? null : serialize(binding),
      this.#now(),
      k,
    ]);
    return (row?.bound ?? 0) > 0;
  }

  /** The user's live sessions, most recently active first. */
  async listByUser(userId: string): Promise<SessionListing[]> {
    const now = this.#now();
    const row = await this.#query<{ sessions: ListedRow[] | string }>(this.#queries.listByUser, [
      userId,
      now,
    ]);
    return parseJson(row?.sessions ?? []).map((listed) => ({
      key: this.#keyOf(listed).key,
      record: this.#toRecord(listed, now),
    }));
  }

  /** Delete every session of the user except `exceptKey`; returns how many live sessions went. */
  async destroyByUser(userId: string, exceptKey?: string): Promise<number> {
    const [h, k] = exceptKey === undefined ? [null, null] : this.#address(exceptKey);
    const row = await this.#query<{ count: number }>(this.#queries.destroyByUser, [
      userId,
      h,
      this.#now(),
      k,
    ]);
    return row?.count ?? 0;
  }

  /** Every live session (express-session's `all`). Loads the whole table: for admin tools and tests. */
  async all(): Promise<StoredSession[]> {
    const row = await this.#query<{
      sessions: Array<{ sid: string; hashed: boolean; sess: SessionJSON }> | string;
    }>(this.#queries.all, [this.#now()]);
    return parseJson(row?.sessions ?? []).map((s) => ({ ...this.#keyOf(s), data: parseJson(s.sess) }));
  }

  /** Number of live sessions. */
  async count(): Promise<number> {
    const row = await this.#query<{ count: number }>(this.#queries.count, [this.#now()]);
    return row?.count ?? 0;
  }

  /** The keys of all live sessions. */
  async keys(): Promise<StoredKey[]> {
    const row = await this.#query<{ hashed: string[]; raw: string[] }>(this.#queries.keys, [this.#now()]);
    return [
      ...(row?.hashed ?? []).map((sid) => this.#keyOf({ sid, hashed: true })),
      ...(row?.raw ?? []).map((sid) => this.#keyOf({ sid, hashed: false })),
    ];
  }

  /** Delete every session in the table. */
  async clear(): Promise<void> {
    await this.#query(this.#queries.clear, []);
  }

  /** How many rows are still stored under a raw session id (connect-pg-simple's, or `hashIds: false`). */
  async countRaw(): Promise<number> {
    const row = await this.#query<{ raw: number }>(this.#queries.countRaw, []);
    return row?.raw ?? 0;
  }

  /**
   * Whether the switch from connect-pg-simple is unfinished: new sessions are then stored under
   * their raw id too, so a rollback logs nobody out (schema.ts, `KEEP_RAW_IDS_MARK`).
   */
  async keepsRawIds(): Promise<boolean> {
    const row = await this.#query<{ keep: boolean }>(this.#queries.keepsRawIds, []);
    return row?.keep === true;
  }

  /**
   * Finish a switch from connect-pg-simple (`pgsession migrate --finish`): from now on new
   * sessions are stored under hashes only, and every row still stored under a raw id moves to
   * the hash of that id, in batches. Users stay logged in (pgsession finds them either way);
   * connect-pg-simple no longer would, so this is the step after which a rollback logs those
   * users out. Rows keep their storage key, so caches stay valid.
   *
   * @returns how many rows were re-keyed (rows whose hash is already taken stay, see `countRaw`).
   */
  async rekey(options: PruneOptions = {}): Promise<number> {
    const batchSize = positiveInteger(options.batchSize ?? this.#pruneBatchSize, 'batchSize');
    // First, so that sessions created while the batches run are hashed already.
    if (await this.keepsRawIds()) await this.#query(this.#queries.stopKeepingRawIds, []);
    let total = 0;
    for (;;) {
      const row = await this.#query<{ rekeyed: number }>(this.#queries.rekeyBatch, [batchSize]);
      const done = row?.rekeyed ?? 0;
      total += done;
      if (done > 0) await options.onProgress?.(total);
      if (done === 0 || options.signal?.aborted) return total;
    }
  }

  /**
   * Delete expired sessions in batches of `batchSize` rows (each its own short statement, so no
   * long-held locks or giant transactions), until a batch comes back short. Only one process
   * prunes a table at a time: the others get 0 at once instead of queueing up behind it. On a
   * pool that lends connections that is a session-level `pg_try_advisory_lock` on a dedicated
   * connection, released at the end; otherwise (a query-only pool, pg-promise, or
   * `preparedStatements: false`, the transaction-pooler setting) each batch takes the lock for
   * its own statement.
   *
   * @returns the number of rows deleted by this call.
   */
  async prune(options: PruneOptions = {}): Promise<number> {
    const batchSize = positiveInteger(options.batchSize ?? this.#pruneBatchSize, 'batchSize');
    // One cutoff for the whole run: rows expiring while we work wait for the next run, which
    // also bounds the loop.
    const cutoff = this.#now();
    const [k1, k2] = advisoryLockKeys('prune', this.names);
    const batches = async (batch: () => Promise<number | null>): Promise<number> => {
      let total = 0;
      for (;;) {
        // Stopped (or the CLI interrupted) before this batch: the rows stay for the next run.
        if (options.signal?.aborted) return total;
        const deleted = await batch();
        if (deleted === null) return total;
        total += deleted;
        if (deleted > 0) await options.onProgress?.(total);
        if (deleted < batchSize || options.signal?.aborted) return total;
      }
    };
    // Behind a transaction-mode pooler (preparedStatements off) a connection's statements may run
    // on different backends, so a session-level lock could be taken on one and never released:
    // each batch takes a transaction-level lock for its own statement instead.
    if (typeof this.#db.connect !== 'function' || queryOptionsOf(this.#db)?.preparedStatements === false) {
      return batches(async () => {
        const row = await this.#query<{ deleted: number; locked: boolean }>(this.#queries.pruneBatchLocked, [
          cutoff,
          batchSize,
          k1,
          k2,
        ]);
        // Another process holds the lock (a mock or wrapper that answers nothing: nothing to do).
        if (row && row.locked === false) return null;
        return row?.deleted ?? 0;
      });
    }
    const connect = this.#db.connect.bind(this.#db);
    return this.#withSchema(async () => {
      const client = await connect();
      const watch = watchCheckedOut(client);
      let broken: Error | undefined;
      let locked = false;
      try {
        const { rows } = await client.query<{ locked: boolean }>(this.#queries.pruneLock.text, [k1, k2]);
        locked = rows[0]?.locked === true;
        if (!locked) return 0;
        return await batches(async () => {
          const { rows: done } = await client.query<{ deleted: number }>(this.#queries.pruneBatch.text, [
            cutoff,
            batchSize,
          ]);
          return done[0]?.deleted ?? 0;
        });
      } finally {
        if (locked) {
          await client.query(this.#queries.pruneUnlock.text, [k1, k2]).catch((err: Error) => {
            // Destroying the connection releases its session-level lock.
            broken = err;
          });
        }
        watch.done();
        client.release(watch.error() ?? broken);
      }
    });
  }

  /**
   * Prune in the background every `intervalMs` (with jitter), until {@link stopPruning} or
   * {@link close}. The timer is `unref()`ed: it never keeps the process alive, and it is re-armed
   * after each run ends, so runs never overlap. Calling it again restarts the schedule with the
   * new options.
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
    // stopPruning() also stops a default run that has not deleted anything yet.
    const stopped = new AbortController();
    this.#stopRun = () => stopped.abort();
    const run = options.run ?? (() => this.prune({ batchSize: options.batchSize, signal: stopped.signal }));
    const schedule = () => {
      // The global setTimeout, looked up at each arming (fake timers in tests replace it).
      const timer = setTimeout(
        () => {
          this.#pruneRun = Promise.resolve()
            .then(run)
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
      timer.unref?.();
      this.#pruneTimer = timer;
    };
    schedule();
  }

  /** Whether background pruning is scheduled. */
  get pruning(): boolean {
    return this.#pruneTimer !== undefined;
  }

  /** Whether {@link close} has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Stop background pruning (a prune already deleting finishes its batch). */
  stopPruning(): void {
    if (this.#pruneTimer) clearTimeout(this.#pruneTimer);
    this.#pruneTimer = undefined;
    this.#stopRun?.();
    this.#stopRun = undefined;
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
    // Saves already queued still go out (their callers are waiting), and are announced.
    await this.#batch?.settled();
    await this.#announcer?.close();
    if (this.#ownsPool) await (this.#pool as pg.Pool).end();
  }
}

function positiveInteger(value: number, what: string): number {
  if (!Number.isFinite(value) || value <= 0) throw new ConfigError(`${what} must be a positive number`);
  return Math.floor(value);
}

/**
 * The PostgreSQL store's whole surface: the engine's port plus what `PgStore`, the CLI and admin
 * tools use. {@link PostgresSessionStore} is the table itself; `CachedPostgresSessionStore`
 * puts the session cache in front of one and offers the same surface, by composition.
 */
export type PostgresStore = SessionStore &
  Pick<
    PostgresSessionStore,
    | 'names'
    | 'tracksActivity'
    | 'pool'
    | 'idsHashed'
    | 'ready'
    | 'get'
    | 'create'
    | 'update'
    | 'touch'
    | 'destroy'
    | 'replace'
    | 'upsert'
    | 'remove'
    | 'listByUser'
    | 'destroyByUser'
    | 'bindDevice'
    | 'all'
    | 'count'
    | 'keys'
    | 'clear'
    | 'countRaw'
    | 'keepsRawIds'
    | 'rekey'
    | 'prune'
    | 'startPruning'
    | 'stopPruning'
    | 'pruning'
    | 'closed'
    | 'close'
  >;
