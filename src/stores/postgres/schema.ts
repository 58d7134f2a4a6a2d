import { createHash } from 'node:crypto';
import type pg from 'pg';
import { ConfigError } from '../../core/errors.js';
import { quoteIdent } from '../../db/sql.js';
import { DEFAULT_CHANNEL, quoteLiteral } from '../cache/protocol.js';
import { ensureAnnounceTriggers } from './announce-trigger.js';

/** Where the session table lives. */
export interface TableOptions {
  /** Schema of the table; default: the connection's `search_path` (as connect-pg-simple). */
  schemaName?: string | undefined;
  /** Table name; default `session` (connect-pg-simple's default). */
  tableName?: string | undefined;
}

/** The identifiers of one session table, each already quoted for SQL. */
export interface TableNames {
  /** The raw schema name, if one was given. */
  readonly schemaName: string | undefined;
  /** The raw table name. */
  readonly tableName: string;
  /** `"schema"."table"` or `"table"`, for use in statements. */
  readonly qualified: string;
  /** Quoted schema, if one was given. */
  readonly schema: string | undefined;
  /** Unqualified name of the expire index (`IDX_<table>_expire`, connect-pg-simple's name). */
  readonly expireIndex: string;
  /** Unqualified name of the partial user_id index (`IDX_<table>_user_id`). */
  readonly userIndex: string;
  /** Unqualified name of the partial unique key_hash index (`IDX_<table>_key_hash`). */
  readonly keyHashIndex: string;
  /** A stable identity for advisory-lock keys. */
  readonly identity: string;
}

/** Default table name, shared with connect-pg-simple. */
export const DEFAULT_TABLE_NAME = 'session';

/**
 * Resolve and quote the table's names. Names are quoted as identifiers (never interpolated raw),
 * so any string — quotes, semicolons, spaces — names a table and cannot inject SQL.
 *
 * @throws ConfigError for an empty name or one containing a NUL character.
 */
export function tableNames(options: TableOptions = {}): TableNames {
  const tableName = options.tableName ?? DEFAULT_TABLE_NAME;
  const schemaName = options.schemaName === '' ? undefined : options.schemaName;
  for (const [what, name] of [
    ['tableName', tableName],
    ['schemaName', schemaName],
  ] as const) {
    if (name === undefined) continue;
    if (typeof name !== 'string' || name.length === 0)
      throw new ConfigError(`${what} must be a non-empty string`);
    if (name.includes('\0')) throw new ConfigError(`${what} must not contain NUL characters`);
  }
  const schema = schemaName === undefined ? undefined : quoteIdent(schemaName);
  const table = quoteIdent(tableName);
  return {
    schemaName,
    tableName,
    schema,
    qualified: schema === undefined ? table : `${schema}.${table}`,
    expireIndex: quoteIdent(`IDX_${tableName}_expire`),
    userIndex: quoteIdent(`IDX_${tableName}_user_id`),
    keyHashIndex: quoteIdent(`IDX_${tableName}_key_hash`),
    identity: `${schemaName ?? ''}\0${tableName}`,
  };
}

/**
 * Two 32-bit advisory-lock keys for a purpose on a table. The two-key form of
 * `pg_advisory_lock` keeps us clear of applications using the one-bigint form with small
 * numbers; the hash keeps different tables (and purposes) from blocking each other.
 */
export function advisoryLockKeys(purpose: 'schema' | 'prune', names: TableNames): [number, number] {
  const digest = createHash('sha256').update(`pgsession:${purpose}\0${names.identity}`).digest();
  return [digest.readInt32BE(0), digest.readInt32BE(4)];
}

/** The columns pgsession adds to connect-pg-simple's three, with their definitions. */
export const EXTRA_COLUMNS: ReadonlyArray<readonly [name: string, definition: string]> = [
  // All nullable or defaulted: connect-pg-simple's INSERT names only sid, sess and expire, and
  // must keep working against the upgraded table (rolling deploys, shared databases).
  ['user_id', 'text'],
  ['created_at', 'timestamptz'],
  ['last_active_at', 'timestamptz'],
  ['version', 'integer NOT NULL DEFAULT 0'],
  // Rows written by connect-pg-simple are keyed by the raw id (false); ours by its hash (true).
  ['id_hashed', 'boolean NOT NULL DEFAULT false'],
  // A raw-id row's storage key, recorded when pgsession first matches it, so the row can stay
  // where connect-pg-simple looks for it (rollback) until `pgsession migrate --finish`.
  ['key_hash', 'text'],
];

/**
 * The mark of a switch from connect-pg-simple that is not finished yet: a comment on
 * pgsession's own `key_hash` column, set when pgsession first upgrades a table connect-pg-simple
 * made and removed by `pgsession migrate --finish`. While it is there, sessions pgsession creates
 * are stored as connect-pg-simple stores them (under the raw id) with their storage key in
 * `key_hash`, so a rollback to connect-pg-simple logs out nobody — not even users who first
 * logged in after the switch. A comment rather than a side table: it lives and dies with the
 * table (dumps, restores, renames) and needs no privilege the upgrade does not already need.
 */
export const KEEP_RAW_IDS_MARK = 'pgsession:keep-raw-ids';

/** The comment {@link ensureSchema} sets (the mark, then why, for whoever reads `\d+`). */
const KEEP_RAW_IDS_COMMENT = `${KEEP_RAW_IDS_MARK} (new sessions are stored under their raw id too, where connect-pg-simple reads them, until "pgsession migrate --finish")`;

/**
 * An SQL boolean: whether the table carries {@link KEEP_RAW_IDS_MARK}. A catalog lookup by
 * index, evaluated in the statement that inserts, so every server follows `--finish` at once.
 */
export function keepsRawIdsSql(names: TableNames): string {
  return `EXISTS (SELECT 1 FROM pg_catalog.pg_description d
    JOIN pg_catalog.pg_attribute a ON a.attrelid = d.objoid AND a.attnum = d.objsubid
    WHERE d.classoid = 'pg_catalog.pg_class'::regclass AND d.objoid = ${quoteLiteral(names.qualified)}::regclass
      AND a.attname = 'key_hash' AND d.description LIKE '${KEEP_RAW_IDS_MARK}%')`;
}

/** `COMMENT ON` pgsession's `key_hash` column: the mark ({@link KEEP_RAW_IDS_MARK}), or none. */
export function keepRawIdsStatement(names: TableNames, keep: boolean): string {
  return `COMMENT ON COLUMN ${names.qualified}.${quoteIdent('key_hash')} IS ${keep ? quoteLiteral(KEEP_RAW_IDS_COMMENT) : 'NULL'}`;
}

/**
 * The device binding (DBSC, the `deviceBound` option): the registered public key and its state,
 * kept beside `sess` so only `bindDevice` writes it. Its own migration step (added after the
 * columns above, in a separate ALTER), so tables upgraded before it existed get it on the next
 * `ensureSchema` / `pgsession migrate`. Nullable: connect-pg-simple never writes it.
 */
export const DEVICE_COLUMNS: ReadonlyArray<readonly [name: string, definition: string]> = [
  ['device', 'jsonb'],
];

/** The partial indexes pgsession adds: `user_id` (listing, revocation) and `key_hash` (raw-id rows by storage key). */
const EXTRA_INDEXES = [
  { column: 'user_id', unique: false },
  { column: 'key_hash', unique: true },
] as const;

/** Options for {@link ensureSchema}. */
export interface EnsureSchemaOptions extends TableOptions {
  /**
   * Create the table (and the schema, if named and missing) when it does not exist. Default
   * true. When false a missing table is an error; an existing table is still upgraded, since
   * the store's statements need the extra columns.
   */
  createTable?: boolean | undefined;
  /** How long DDL may wait for a table lock before giving up (ms). Default 10 000. */
  lockTimeoutMs?: number | undefined;
  /**
   * Announce changes made by other writers (hand-written SQL, scripts, connect-pg-simple) to
   * every cache, with triggers on the table sending on this channel (see announce-trigger.ts).
   * Default: on, on the default channel; `false` installs nothing (and leaves existing ones).
   * (Only on a pool that lends a connection: the triggers are installed in the transaction.)
   */
  announceWrites?: { channel: string } | false | undefined;
}

/** What {@link ensureSchema} did. */
export interface EnsureSchemaResult {
  /** The table did not exist and was created. */
  created: boolean;
  /** Columns added to an existing table (empty when it was already current). */
  addedColumns: string[];
  /** Indexes created. */
  addedIndexes: string[];
  /**
   * The table was connect-pg-simple's (it lacked every pgsession column) and is now marked
   * {@link KEEP_RAW_IDS_MARK}: the switch stays reversible until `pgsession migrate --finish`.
   */
  keepsRawIds: boolean;
}

interface CatalogRow {
  exists: boolean;
  schema_exists: boolean;
  columns: string[] | null;
  /** Columns that have an index starting with them. */
  indexed: string[] | null;
  /** Which of the index names asked about (`$2`) are already taken in the table's schema. */
  taken: string[] | null;
}

/** One query answering everything ensureSchema needs to decide. `$1` qualified name, `$2` index names, `$3` schema. */
const CATALOG_SQL = `WITH rel AS (SELECT to_regclass($1::text) AS oid),
ns AS (
  SELECT coalesce(
    (SELECT c.relnamespace FROM pg_class c, rel WHERE c.oid = rel.oid),
    (SELECT oid FROM pg_namespace WHERE nspname = $3::text),
    (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
  ) AS oid
)
SELECT
  rel.oid IS NOT NULL AS exists,
  ($3::text IS NULL OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $3::text)) AS schema_exists,
  (SELECT array_agg(attname::text) FROM pg_attribute
    WHERE attrelid = rel.oid AND attnum > 0 AND NOT attisdropped) AS columns,
  (SELECT array_agg(DISTINCT a.attname::text) FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = rel.oid) AS indexed,
  (SELECT array_agg(c.relname::text) FROM pg_class c, ns
    WHERE c.relnamespace = ns.oid AND c.relname = ANY($2::text[])) AS taken
FROM rel`;

/** The quoted name pgsession gives the index on `column`. */
function indexName(names: TableNames, column: string): string {
  return column === 'expire'
    ? names.expireIndex
    : column === 'user_id'
      ? names.userIndex
      : names.keyHashIndex;
}

/** `CREATE [UNIQUE] INDEX` for one of pgsession's indexes (`name` '' lets PostgreSQL choose). */
function indexSql(names: TableNames, column: string, name: string, ifNotExists = false): string {
  const unique = EXTRA_INDEXES.some((x) => x.column === column && x.unique) ? 'UNIQUE ' : '';
  // Partial: anonymous sessions (most rows on many sites) and hashed rows stay out.
  const where = column === 'expire' ? '' : ` WHERE ${quoteIdent(column)} IS NOT NULL`;
  const exists = ifNotExists ? 'IF NOT EXISTS ' : '';
  return `CREATE ${unique}INDEX ${exists}${name} ON ${names.qualified} (${quoteIdent(column)})${where}`;
}

/** connect-pg-simple's `table.sql`, column for column, plus pgsession's columns. */
function createTableStatement(names: TableNames, ifNotExists = false): string {
  // The primary key is left unnamed so PostgreSQL names it `<table>_pkey` (truncating long
  // names and avoiding clashes).
  const columns = [
    'sid varchar NOT NULL COLLATE "default" PRIMARY KEY',
    'sess json NOT NULL',
    'expire timestamp(6) NOT NULL',
    ...EXTRA_COLUMNS.map(([name, def]) => `${quoteIdent(name)} ${def}`),
    ...DEVICE_COLUMNS.map(([name, def]) => `${quoteIdent(name)} ${def}`),
  ];
  return `CREATE TABLE ${ifNotExists ? 'IF NOT EXISTS ' : ''}${names.qualified} (\n  ${columns.join(',\n  ')}\n)`;
}

/**
 * The whole table — columns and indexes — as one script of statements without parameters,
 * for connect-pg-simple's `createTableIfMissing` step (`_rawEnsureSessionStoreTable`), which
 * runs DDL through the store's own `query()`. Sent as one simple-protocol query, it runs as one
 * implicit transaction, serialised with {@link ensureSchema} by the same advisory lock.
 */
export function createTableSql(names: TableNames): string {
  const [k1, k2] = advisoryLockKeys('schema', names);
  return [
    `SELECT pg_advisory_xact_lock(${k1}, ${k2})`,
    ...(names.schema === undefined ? [] : [`CREATE SCHEMA IF NOT EXISTS ${names.schema}`]),
    createTableStatement(names, true),
    ...['expire', ...EXTRA_INDEXES.map((x) => x.column)].map((column) =>
      indexSql(names, column, indexName(names, column), true),
    ),
  ].join(';\n');
}

/** What {@link ensureSchema} needs of a pool: `query`, and `connect` for a transaction when it has one. */
export interface SchemaPool {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
  connect?(): Promise<pg.PoolClient>;
}

/** PostgreSQL truncates identifiers to 63 bytes; compare index names the way it stores them. */
function storedName(name: string): string {
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length <= 63) return name;
  let end = 63;
  // Do not cut a multi-byte character in half (PostgreSQL does the same).
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8');
}

/**
 * Make sure the session table exists and has pgsession's columns and indexes.
 *
 * - Missing table: created with connect-pg-simple's columns as its `table.sql` has them (`sid
 *   varchar` primary key, `sess json`, `expire timestamp(6)`, index `IDX_<table>_expire`) and
 *   pgsession's.
 * - Existing table (including one created by connect-pg-simple): the extra columns are added
 *   (nullable or with constant defaults, so it is a catalog-only change and connect-pg-simple
 *   can keep reading and writing the table) plus partial indexes on `user_id` and `key_hash`.
 *
 * Idempotent, and safe to run from many processes at once: everything happens in one
 * transaction under a transaction-scoped advisory lock, so concurrent callers run one after
 * another and later ones find nothing to do. DDL waits at most `lockTimeoutMs` for its table
 * lock, so a long-running query cannot make start-up queue every other session query behind it.
 * (Given a pool without `connect()`, the steps run one by one, outside a transaction.)
 */
export async function ensureSchema(
  pool: pg.Pool | SchemaPool,
  options: EnsureSchemaOptions = {},
): Promise<EnsureSchemaResult> {
  const names = tableNames(options);
  const createTable = options.createTable ?? true;
  const lockTimeoutMs = Math.max(0, Math.floor(options.lockTimeoutMs ?? 10_000));
  const [k1, k2] = advisoryLockKeys('schema', names);
  const columnsToIndex = ['expire', ...EXTRA_INDEXES.map((x) => x.column)];
  const result: EnsureSchemaResult = {
    created: false,
    addedColumns: [],
    addedIndexes: [],
    keepsRawIds: false,
  };

  // A pool that cannot lend a connection (a query-only wrapper, pg-promise) gets each statement
  // on its own: no transaction, but every step is idempotent and re-checked on the next call.
  const client = typeof pool.connect === 'function' ? await pool.connect() : undefined;
  const query = async <R>(text: string, values?: unknown[]): Promise<R[]> =>
    ((await (client ?? (pool as SchemaPool)).query(text, values)) as { rows: R[] }).rows;
  let broken: Error | undefined;
  try {
    if (client) {
      await query('BEGIN');
      await query('SELECT pg_advisory_xact_lock($1, $2)', [k1, k2]);
      await query(`SET LOCAL lock_timeout = ${lockTimeoutMs}`);
    }

    const catalog = async (): Promise<CatalogRow> => {
      const rows = await query<CatalogRow>(CATALOG_SQL, [
        names.qualified,
        columnsToIndex.map((column) => storedName(unquote(indexName(names, column)))),
        names.schemaName ?? null,
      ]);
      return rows[0]!;
    };

    let state = await catalog();
    if (!state.exists) {
      if (!createTable) {
        throw new Error(
          `pgsession: session table ${names.qualified} does not exist (enable createTableIfMissing or run the migrations)`,
        );
      }
      if (names.schema !== undefined && !state.schema_exists) {
        await query(`CREATE SCHEMA IF NOT EXISTS ${names.schema}`);
      }
      await query(createTableStatement(names, !client));
      result.created = true;
      state = await catalog();
    }

    const present = new Set(state.columns ?? []);
    // One ALTER per step for all its columns: a single brief ACCESS EXCLUSIVE lock. Constant
    // defaults make it catalog-only (PostgreSQL 11+), no table rewrite even on a large table.
    const addColumns = async (columns: typeof EXTRA_COLUMNS): Promise<string[]> => {
      const missing = columns.filter(([name]) => !present.has(name));
      if (missing.length === 0) return [];
      const clauses = missing.map(([name, def]) => `ADD COLUMN IF NOT EXISTS ${quoteIdent(name)} ${def}`);
      try {
        await query(`ALTER TABLE ${names.qualified} ${clauses.join(', ')}`);
      } catch (err) {
        throw new Error(
          `pgsession: cannot add columns ${missing.map(([n]) => n).join(', ')} to session table ${names.qualified} ` +
            `(run the migrations as the table owner): ${(err as Error).message}`,
          { cause: err },
        );
      }
      return missing.map(([name]) => name);
    };
    const added = await addColumns(EXTRA_COLUMNS);
    // A table without any of our columns is connect-pg-simple's: its users may come back to it.
    // (A partly upgraded table was seen by pgsession before and keeps the mark it has.)
    if (!result.created && added.length === EXTRA_COLUMNS.length) {
      await query(keepRawIdsStatement(names, true));
      result.keepsRawIds = true;
    }
    // Step 2: the device binding column (DBSC).
    added.push(...(await addColumns(DEVICE_COLUMNS)));
    if (!result.created) result.addedColumns = added;

    const indexed = new Set(state.indexed ?? []);
    const taken = new Set(state.taken ?? []);
    for (const column of columnsToIndex) {
      if (indexed.has(column)) continue;
      // pgsession's name; if another table already took it (connect-pg-simple always names its
      // index IDX_session_expire, whatever the table), let PostgreSQL choose one.
      const stored = storedName(unquote(indexName(names, column)));
      const name = taken.has(stored) ? '' : indexName(names, column);
      await query(indexSql(names, column, name));
      result.addedIndexes.push(name === '' ? `(${column})` : stored);
    }
    const announce = options.announceWrites ?? { channel: DEFAULT_CHANNEL };
    if (announce && client) await ensureAnnounceTriggersIfAllowed(client, names, announce.channel);
    if (client) await query('COMMIT');
    return result;
  } catch (err) {
    if (client) {
      await client.query('ROLLBACK').catch((rollbackError: Error) => {
        broken = rollbackError;
      });
    }
    throw err;
  } finally {
    // A connection whose ROLLBACK failed is in an unknown state: destroy it rather than reuse it.
    client?.release(broken);
  }
}

/** The name inside a quoted identifier. */
function unquote(quoted: string): string {
  return quoted.slice(1, -1).replaceAll('""', '"');
}

/**
 * The announce triggers, unless this role may not create them (not the table's owner, no
 * CREATE on the schema): then the store still works as before, other writers' changes are not
 * announced, and a process warning says how to install them.
 */
async function ensureAnnounceTriggersIfAllowed(client: pg.PoolClient, names: TableNames, channel: string) {
  await client.query('SAVEPOINT pgsession_announce');
  try {
    await ensureAnnounceTriggers(client, names, channel);
    await client.query('RELEASE SAVEPOINT pgsession_announce');
  } catch (err) {
    if ((err as { code?: string }).code !== '42501') throw err;
    await client.query('ROLLBACK TO SAVEPOINT pgsession_announce');
    process.emitWarning(
      `pgsession: not allowed to install the triggers that announce other writers' changes to ${names.qualified} ` +
        `(${(err as Error).message}): run "pgsession migrate" (or ensureSchema) as the table's owner once.`,
      { code: 'PGSESSION_ANNOUNCE_TRIGGERS' },
    );
  }
}
