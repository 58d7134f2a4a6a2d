import { createHash } from 'node:crypto';
import { type NotifyTarget, notifyKeysSql } from '../cache/protocol.js';
import { MARK_ANNOUNCED } from './announce-trigger.js';
import type { TableNames } from './schema.js';

/**
 * Every SQL statement the PostgreSQL store runs, built once per table when a store is
 * constructed: no SQL is assembled per request, and the only dynamic parts (table and index
 * names) come from {@link TableNames}, already quoted as identifiers.
 *
 * ## Time
 *
 * Times travel as JavaScript milliseconds (`Date.now()` of the app server, or the store's
 * injected clock) and are converted with `to_timestamp($n::float8 / 1000)`, exactly the
 * expression connect-pg-simple uses (it passes seconds). `expire` is `timestamp without time
 * zone`, so the conversion goes through the connection's `TimeZone` on the way in and back out;
 * comparing against the same expression keeps both sides in the same frame, and tests that fake
 * the clock keep working. The database's `now()` is never used in a comparison.
 *
 * Times come back as epoch milliseconds computed in SQL (`extract(epoch …)`), never as `Date`s
 * parsed by node-postgres, which would read a `timestamp without time zone` in the Node
 * process's local zone instead of the connection's.
 *
 * ## Cache invalidation
 *
 * With a {@link NotifyTarget}, the statements that change or delete existing sessions (`update`,
 * `replace`, `upsert`, `destroy*`, `clear`) also `pg_notify` the storage keys they touched, from
 * a CTE of the same statement: other processes' caches hear of a change exactly when it commits.
 * `touch` does not notify (it is the most frequent write, and a cached copy with an older expiry
 * only makes the engine re-read), nor do `create` (nobody can have cached a new key), the legacy
 * re-key (the new key cannot be cached yet) and `pruneBatch` (caches check expiry themselves).
 * The announcing statements also set {@link MARK_ANNOUNCED}, so the table's triggers for other
 * writers (announce-trigger.ts) do not announce them a second time.
 */

/** A statement and, for hot paths, the prepared-statement name node-postgres caches it under. */
export interface Statement {
  readonly text: string;
  /** Present when the statement should be prepared once per connection. */
  readonly name?: string;
}

/** The statements of one session table. */
export interface Queries {
  /** `$1` key, `$2` now → one record row. */
  readonly get: Statement;
  /** `$1` key, `$2` now, `$3` legacy key → a record row, or one row with `retry` true, or none. */
  readonly getLegacy: Statement;
  /** `$1` key, `$2` sess, `$3` expire, `$4` created, `$5` last active, `$6` user, `$7` version, `$8` id_hashed. */
  readonly insert: Statement;
  /** Same parameters as `insert`, plus `$9` now; replaces an existing row. */
  readonly upsert: Statement;
  /** `$1` key, `$2` sess, `$3` expire, `$4` last active, `$5` user, `$6` now → `version` when updated. */
  readonly replace: Statement;
  /** `$1` key, `$2` unset keys, `$3` set object, `$4` expire, `$5` last active, `$6` user, `$7` now → record row. */
  readonly update: Statement;
  /** `$1` key, `$2` expire, `$3` last active, `$4` now → rowCount. */
  readonly touch: Statement;
  /** `$1` key. */
  readonly destroy: Statement;
  /** `$1` key, `$2` legacy (raw) key. */
  readonly destroyLegacy: Statement;
  /** `$1` user, `$2` now → `sid` + record rows. */
  readonly listByUser: Statement;
  /** `$1` user, `$2` except key or null, `$3` now → `count` of live sessions deleted. */
  readonly destroyByUser: Statement;
  /** `$1` cutoff, `$2` batch size → rowCount. */
  readonly pruneBatch: Statement;
  /** `$1`, `$2` advisory-lock keys → `locked`. */
  readonly pruneLock: Statement;
  /** `$1`, `$2` advisory-lock keys. */
  readonly pruneUnlock: Statement;
  /** `$1` now → `sid`, `sess` rows. */
  readonly all: Statement;
  /** `$1` now → `count`. */
  readonly count: Statement;
  /** `$1` now → `sid` rows. */
  readonly keys: Statement;
  readonly clear: Statement;
}

/** Milliseconds parameter → timestamp, as connect-pg-simple writes `expire`. */
const ts = (param: string): string => `to_timestamp(${param}::float8 / 1000)`;

/** timestamp(tz) column → epoch milliseconds as a JS number (float8: exact for ms epochs). */
const ms = (expr: string): string => `round(extract(epoch FROM ${expr}) * 1000)::float8`;

/** The columns every record-returning statement selects, in the shape `rowToRecord` reads. */
const RECORD_COLUMNS = [
  'sess',
  // `expire` has no time zone: read it back through the connection's TimeZone, as it was written.
  `${ms('expire::timestamptz')} AS expires_ms`,
  `${ms('created_at')} AS created_ms`,
  `${ms('last_active_at')} AS active_ms`,
  'user_id',
  'version',
].join(', ');

/**
 * The user a legacy row belongs to, derived in SQL from the same keys as `userIdOf()`
 * (`userId`, then Passport's `passport.user`) when the row is adopted, so listing and
 * revocation find sessions written by connect-pg-simple.
 */
const DERIVED_USER_ID = `CASE
      WHEN json_typeof(sess->'userId') IN ('string', 'number') THEN sess->>'userId'
      WHEN json_typeof(sess->'passport'->'user') IN ('string', 'number') THEN sess->'passport'->>'user'
    END`;

/**
 * Build the statements for one table.
 *
 * @param names - the quoted names from `tableNames()`.
 * @param prepare - give hot statements a prepared-statement name (disable behind a transaction
 *   pooler such as PgBouncer in transaction mode, which cannot keep them).
 * @param notify - announce changed keys on this channel (see "Cache invalidation" above).
 */
export function buildQueries(names: TableNames, prepare = true, notify?: NotifyTarget): Queries {
  const t = names.qualified;
  const notifySql = notify === undefined ? undefined : notifyKeysSql('w', notify);

  /**
   * A write, with `RETURNING returning` (if any); with notifications on, wrapped as a CTE whose
   * rows are announced and then returned (the main query reads the notify CTE, or it would not run).
   */
  const announced = (write: string, returning: string): string => {
    if (notifySql === undefined) return returning ? `${write}\nRETURNING ${returning}` : write;
    return `WITH w AS (
${write}
RETURNING sid, id_hashed${returning ? `, ${returning}` : ''}
), n AS (
${notifySql}
)
SELECT w.* FROM w CROSS JOIN (SELECT count(*) FROM n) AS notified`;
  };
  const live = (nowParam: string) => `expire >= ${ts(nowParam)}`;
  // Statements that announce their own changes say so before they change a row (the triggers'
  // conditions are checked as each row changes): see announce-trigger.ts.
  const marked = notifySql === undefined ? '' : `\n  AND ${MARK_ANNOUNCED} IS NOT NULL`;

  // Names are derived from the text itself, so two stores on different tables sharing a pool
  // never collide (node-postgres rejects one name used for two texts on a connection), and two
  // stores on the same table share the prepared statement.
  const named = (text: string): Statement =>
    prepare
      ? { text, name: `pgsession_${createHash('sha256').update(text).digest('hex').slice(0, 24)}` }
      : { text };
  const plain = (text: string): Statement => ({ text });

  const insertColumns = 'sid, sess, expire, created_at, last_active_at, user_id, version, id_hashed';
  const insertValues = `$1, $2::json, ${ts('$3')}, ${ts('$4')}, ${ts('$5')}, $6, $7, $8`;

  return {
    get: named(`SELECT ${RECORD_COLUMNS} FROM ${t} WHERE sid = $1 AND ${live('$2')}`),

    // One round trip for "the hashed key, else adopt the legacy row": the UPDATE re-keys a row
    // written by connect-pg-simple under the raw id, so the raw id (a replayable cookie value)
    // leaves the table the first time it is used. `id_hashed = false` keeps a leaked *hash* from
    // being presented as a legacy raw id. The NOT EXISTS guard avoids a primary-key clash with
    // an (expired, unpruned) row already under the new key. When a concurrent request adopts the
    // same row first, our UPDATE finds the row re-keyed and matches nothing, while `seen` (same
    // snapshot) still shows the legacy row: the `retry` row tells the caller to read the new key.
    getLegacy: named(`WITH hit AS (
  SELECT ${RECORD_COLUMNS} FROM ${t} WHERE sid = $1 AND ${live('$2')}
), adopted AS (
  UPDATE ${t} SET
    sid = $1,
    id_hashed = true,
    created_at = coalesce(created_at, ${ts('$2')}),
    last_active_at = coalesce(last_active_at, ${ts('$2')}),
    user_id = coalesce(user_id, ${DERIVED_USER_ID})
  WHERE sid = $3 AND id_hashed = false AND ${live('$2')}
    AND NOT EXISTS (SELECT 1 FROM ${t} WHERE sid = $1)
  RETURNING ${RECORD_COLUMNS}
), seen AS (
  SELECT 1 FROM ${t} WHERE sid = $3 AND id_hashed = false AND ${live('$2')}
)
SELECT *, false AS retry FROM hit
UNION ALL
SELECT *, false AS retry FROM adopted
UNION ALL
SELECT NULL::json, NULL::float8, NULL::float8, NULL::float8, NULL::text, NULL::integer, true
WHERE NOT EXISTS (SELECT 1 FROM hit) AND NOT EXISTS (SELECT 1 FROM adopted) AND EXISTS (SELECT 1 FROM seen)`),

    insert: plain(`INSERT INTO ${t} (${insertColumns}) VALUES (${insertValues})`),

    // Only for express-session's `set` of a session this process never loaded (a new id): an
    // upsert is what connect-pg-simple does. A row that had already expired is a new session.
    upsert: plain(
      announced(
        `INSERT INTO ${t} AS s (${insertColumns}) VALUES (${insertValues})
ON CONFLICT (sid) DO UPDATE SET
  sess = EXCLUDED.sess,
  expire = EXCLUDED.expire,
  created_at = CASE WHEN s.expire < ${ts('$9')} THEN EXCLUDED.created_at
    ELSE coalesce(s.created_at, EXCLUDED.created_at) END,
  last_active_at = EXCLUDED.last_active_at,
  user_id = EXCLUDED.user_id,
  version = s.version + 1,
  id_hashed = EXCLUDED.id_hashed${notifySql === undefined ? '' : `\nWHERE ${MARK_ANNOUNCED} IS NOT NULL`}`,
        '',
      ),
    ),

    // UPDATE-only whole-session write (express-session's `set` of a loaded session): a session
    // destroyed meanwhile stays destroyed.
    replace: plain(
      announced(
        `UPDATE ${t} SET
  sess = $2::json,
  expire = ${ts('$3')},
  last_active_at = ${ts('$4')},
  user_id = $5,
  version = version + 1
WHERE sid = $1 AND ${live('$6')}${marked}`,
        'version',
      ),
    ),

    // Key-level merge: two requests that changed different keys both keep their change, because
    // each applies only its own keys to whatever the row holds when it gets the row lock. Never
    // inserts: a row deleted by a concurrent logout matches nothing and stays deleted.
    update: plain(
      announced(
        `UPDATE ${t} SET
  sess = ((sess::jsonb - $2::text[]) || $3::jsonb)::json,
  expire = ${ts('$4')},
  last_active_at = ${ts('$5')},
  user_id = $6,
  version = version + 1
WHERE sid = $1 AND ${live('$7')}${marked}`,
        RECORD_COLUMNS,
      ),
    ),

    // Never writes `sess`: a touch racing a data write cannot undo it.
    touch: named(`UPDATE ${t} SET expire = ${ts('$2')}, last_active_at = ${ts('$3')}
WHERE sid = $1 AND ${live('$4')}`),

    destroy: named(announced(`DELETE FROM ${t} WHERE sid = $1${marked}`, '')),
    // A logout must also remove a row connect-pg-simple stored under the raw id that no read
    // has re-keyed yet (a store used directly, without a `get` first).
    destroyLegacy: plain(
      announced(`DELETE FROM ${t} WHERE (sid = $1 OR (sid = $2 AND id_hashed = false))${marked}`, ''),
    ),

    listByUser: plain(`SELECT sid, ${RECORD_COLUMNS} FROM ${t}
WHERE user_id = $1 AND ${live('$2')}
ORDER BY last_active_at DESC NULLS LAST, sid`),

    // Expired rows of the user go too (they are garbage), but only live ones are counted.
    destroyByUser: plain(`WITH w AS (
  DELETE FROM ${t} WHERE user_id = $1 AND ($2::text IS NULL OR sid <> $2)${marked} RETURNING sid, id_hashed, expire
)${notifySql === undefined ? '' : `, n AS (\n${notifySql}\n)`}
SELECT count(*) FILTER (WHERE expire >= ${ts('$3')})::integer AS count${
      notifySql === undefined ? '' : ', (SELECT count(*) FROM n) AS notified'
    } FROM w`),

    // Bounded batches keep each statement's locks and WAL short on a big backlog. The inner
    // SELECT walks the expire index; rows re-checked by ctid that a concurrent touch extended
    // meanwhile are skipped (their new version has another ctid and a later expire).
    pruneBatch: plain(`DELETE FROM ${t}
WHERE ctid = ANY(ARRAY(SELECT ctid FROM ${t} WHERE expire < ${ts('$1')} LIMIT $2))
  AND expire < ${ts('$1')}`),

    // Session-level (not transaction-level) so the lock spans the batches, each of which
    // commits on its own; `try` so a second pruner gives up at once instead of queueing.
    pruneLock: plain('SELECT pg_try_advisory_lock($1, $2) AS locked'),
    pruneUnlock: plain('SELECT pg_advisory_unlock($1, $2)'),

    all: plain(`SELECT sid, sess FROM ${t} WHERE ${live('$1')}`),
    count: plain(`SELECT count(*)::integer AS count FROM ${t} WHERE ${live('$1')}`),
    keys: plain(`SELECT sid FROM ${t} WHERE ${live('$1')}`),
    // Announced as "everything" (every row's key is reported as `*`, collapsed to one payload).
    clear: plain(
      notify === undefined
        ? `DELETE FROM ${t}`
        : `WITH w AS (DELETE FROM ${t} WHERE ${MARK_ANNOUNCED} IS NOT NULL RETURNING sid, false AS id_hashed), n AS (\n${notifySql}\n)
SELECT (SELECT count(*) FROM n) AS notified`,
    ),
  };
}
