import { createHash } from 'node:crypto';
import { type NotifyTarget, notifyKeysSql } from '../cache/protocol.js';
import { MARK_ANNOUNCED } from './announce-trigger.js';
import { keepRawIdsStatement, keepsRawIdsSql, type TableNames } from './schema.js';

/**
 * Every SQL statement the PostgreSQL store runs, built once per table when a store is
 * constructed: no SQL is assembled per request, and the only dynamic parts (table and index
 * names) come from {@link TableNames}, already quoted as identifiers.
 *
 * Every statement returns at most one row (lists come back as one JSON or array value), so a
 * store can run them through anything that yields "the first row": node-postgres, pg-promise's
 * `any`, or connect-pg-simple's `store.query(sql, params, cb)`.
 *
 * ## Which row a session is
 *
 * A session is addressed by its storage key `h` (SHA-256 of its id) and, when the caller has it,
 * its raw id `k` (else NULL). It is the row that is
 * - stored under the hash: `sid = h AND id_hashed`, or
 * - stored under its raw id by connect-pg-simple (or with `hashIds: false`) and already matched
 *   once: `key_hash = h`, or
 * - stored under its raw id: `sid = k AND NOT id_hashed`.
 *
 * Raw-id rows stay under their raw id (so connect-pg-simple can still read them after a
 * rollback) until `pgsession migrate --finish` re-keys them. The `id_hashed` guards keep a leaked
 * *hash* from ever being presented as a raw id: a hashed row only answers to the hash of what
 * the client sent, a raw row only to what the client sent.
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
 * `replace`, `upsert`, `destroy`, `clear`) also `pg_notify` the storage keys they touched, from a
 * CTE of the same statement: other processes' caches hear of a change exactly when it commits.
 * A raw-id row is announced by its `key_hash` when it has one (else as "everything"), so a raw
 * id never leaves the database. `touch` does not notify (it is the most frequent write, and a
 * cached copy with an older expiry only makes the engine re-read), nor do `create` (nobody can
 * have cached a new key), `get` (recording `key_hash` changes no data) and the prune and re-key
 * batches (caches check expiry themselves; a re-key keeps the storage key). The announcing
 * statements (and `get`'s first match of a raw-id row) also set {@link MARK_ANNOUNCED}, so the
 * table's triggers for other writers (announce-trigger.ts) do not announce them a second time.
 */

/** A statement and, for hot paths, the prepared-statement name node-postgres caches it under. */
export interface Statement {
  readonly text: string;
  /** Present when the statement should be prepared once per connection. */
  readonly name?: string;
}

/** The statements of one session table. `h` is a storage key, `k` a raw id or null (see above). */
export interface Queries {
  /** `$1` h, `$2` now, `$3` k → a record row (recording `key_hash` on a raw-id row's first match). */
  readonly get: Statement;
  /**
   * `$1` sid, `$2` sess, `$3` expire, `$4` created, `$5` last active, `$6` user, `$7` version,
   * `$8` id_hashed, `$9` key_hash, `$10` k (or null). With `k` (then `$1` is h) and the table
   * marked `KEEP_RAW_IDS_MARK`, the row goes under `k` with h as its `key_hash` instead.
   */
  readonly insert: Statement;
  /** The row of h/k overwritten, else inserted (as `insert`): `insert`'s nine, `$10` now, `$11` h, `$12` k → `written`. */
  readonly upsert: Statement;
  /** `$1` h, `$2` sess, `$3` expire, `$4` last active, `$5` user, `$6` now, `$7` k → `version` when updated. */
  readonly replace: Statement;
  /** `$1` h, `$2` unset keys, `$3` set object, `$4` expire, `$5` last active, `$6` user, `$7` now, `$8` k → record row. */
  readonly update: Statement;
  /**
   * `update` for several sessions in one statement: `$1` a JSON array of
   * `{ bi, bh, bk, bunset, bset, bexp, bact, buid }` (index, h, k and `update`'s `$2`–`$6`),
   * `$2` now → `rows`: a JSON array of `{ bi, hashed, owner, …record columns }` (`owner`: the
   * save changed the session's owner), one or more per row written (an item's rows may repeat
   * when a session has two rows: the caller combines them).
   */
  readonly updateMany: Statement;
  /** `$1` h, `$2` expire, `$3` last active, `$4` now, `$5` k → `touched` when a live row was found. */
  readonly touch: Statement;
  /** `$1` h, `$2` k → `deleted` (a count). */
  readonly destroy: Statement;
  /** `$1` h, `$2` device binding JSON or null, `$3` now, `$4` k → `bound` (a count). */
  readonly bindDevice: Statement;
  /** `$1` user, `$2` now → `sessions`: a JSON array of `{ sid, hashed, key_hash, …record columns }`, most recently active first. */
  readonly listByUser: Statement;
  /** `$1` user, `$2` except h or null, `$3` now, `$4` except k → `count` of live sessions deleted. */
  readonly destroyByUser: Statement;
  /** `$1` cutoff, `$2` batch size → `deleted`. For a connection holding the prune lock. */
  readonly pruneBatch: Statement;
  /** `$1` cutoff, `$2` batch size, `$3`, `$4` advisory-lock keys → `deleted`, `locked` (lock held for the statement only). */
  readonly pruneBatchLocked: Statement;
  /** `$1`, `$2` advisory-lock keys → `locked`. */
  readonly pruneLock: Statement;
  /** `$1`, `$2` advisory-lock keys. */
  readonly pruneUnlock: Statement;
  /** `$1` now → `sessions`: a JSON array of `{ sid, hashed, sess }`. */
  readonly all: Statement;
  /** `$1` now → `count`. */
  readonly count: Statement;
  /** `$1` now → `hashed`, `raw`: the `sid`s stored under hashes and under raw ids. */
  readonly keys: Statement;
  /** → `deleted`. */
  readonly clear: Statement;
  /** `$1` batch size → `rekeyed`: raw-id rows moved under the hash of their id (`pgsession migrate --finish`). */
  readonly rekeyBatch: Statement;
  /** → `raw`: how many rows are still stored under a raw id. */
  readonly countRaw: Statement;
  /** → `keep`: whether new sessions are stored under their raw id too (an unfinished switch). */
  readonly keepsRawIds: Statement;
  /** Ends an unfinished switch: new sessions are stored under hashes only (table owner only). */
  readonly stopKeepingRawIds: Statement;
}

/** Milliseconds parameter → timestamp, as connect-pg-simple writes `expire`. */
const ts = (param: string): string => `to_timestamp(${param}::float8 / 1000)`;

/** timestamp(tz) column → epoch milliseconds as a JS number (float8: exact for ms epochs). */
const ms = (expr: string): string => `round(extract(epoch FROM ${expr}) * 1000)::float8`;

/** The record columns every record-returning statement selects, in the shape `toRecord` reads. */
const RECORD = [
  'sess',
  // `expire` has no time zone: read it back through the connection's TimeZone, as it was written.
  `${ms('expire::timestamptz')} AS expires_ms`,
  `${ms('created_at')} AS created_ms`,
  `${ms('last_active_at')} AS active_ms`,
  'user_id',
  'version',
  'device',
].join(', ');
/** The names of those columns, to select them again from a CTE. */
const RECORD_NAMES = 'sess, expires_ms, created_ms, active_ms, user_id, version, device';

/**
 * The session's row (see "Which row a session is"). A hashed row is preferred by the callers
 * that can see two (a raw row shadowed by a hashed one with the same key cannot be created by
 * pgsession, but a table is shared with other code).
 */
const match = (h: string, k: string): string =>
  `((sid = ${h} AND id_hashed) OR key_hash = ${h} OR (sid = ${k} AND NOT id_hashed))`;

/** Keep `key_hash` right on every write that found the row: `h` for a raw-id row, NULL for a hashed one. */
const keyHash = (h: string): string => `key_hash = CASE WHEN id_hashed THEN NULL ELSE ${h} END`;

/**
 * SHA-256 of a text column, base64url without padding: exactly `hashId()` (a 32-byte digest is
 * 44 base64 characters, so `encode` adds no line break). Used only to re-key raw-id rows.
 */
const sqlHash = (column: string): string =>
  `rtrim(translate(encode(sha256(convert_to(${column}, 'UTF8')), 'base64'), '+/', '-_'), '=')`;

/**
 * The user a raw-id row belongs to, derived in SQL from the same keys as `userIdOf()` (`userId`,
 * then Passport's `passport.user`) when the row is first matched, so listing and revocation find
 * sessions written by connect-pg-simple.
 */
const DERIVED_USER_ID = `CASE
      WHEN json_typeof(sess->'userId') IN ('string', 'number') THEN sess->>'userId'
      WHEN json_typeof(sess->'passport'->'user') IN ('string', 'number') THEN sess->'passport'->>'user'
    END`;

/** What a changed row is announced as: its storage key, or (a raw-id row never matched by hash) "everything". */
const ANNOUNCED = 'coalesce(key_hash, sid) AS sid, (id_hashed OR key_hash IS NOT NULL) AS id_hashed';

/**
 * Build the statements for one table.
 *
 * @param names - the quoted names from `tableNames()`.
 * @param prepare - give hot statements a prepared-statement name (disable behind a transaction
 *   pooler such as PgBouncer in transaction mode, which cannot keep them).
 * @param notify - announce changed keys on this channel (see "Cache invalidation" above).
 */
export function buildQueries(
  names: TableNames,
  prepare = true,
  notify?: NotifyTarget,
  coalesceData = false,
): Queries {
  const t = names.qualified;
  const live = (nowParam: string) => `expire >= ${ts(nowParam)}`;
  // For lookups by key or owner (a few rows): the expiry is checked on the rows found, never
  // through the expire index. As an index condition, `expire >= now` matches every live session;
  // a planner working from stale statistics (a table filled since its last ANALYZE) or a generic
  // plan estimates it selective, ANDs it with the key lookup and reads the whole index on each
  // call. `IS TRUE` (the same test: an expire is never NULL) is not an index condition.
  const liveRow = (nowParam: string) => `(expire >= ${ts(nowParam)}) IS TRUE`;

  // With notifications on, a write's rows (a CTE `w` with `RETURNING ${ANNOUNCED}`) are announced
  // by the CTE `n`, which only runs if the main query reads it: `notified` in its select list.
  const notifyCte = notify === undefined ? '' : `, n AS (\n${notifyKeysSql('w', notify)}\n)`;
  const notified = notify === undefined ? '' : ', (SELECT count(*) FROM n) AS notified';
  const written = (write: string, returning = ''): string =>
    `WITH w AS (\n${write}\nRETURNING ${ANNOUNCED}${returning ? `, ${returning}` : ''}\n)${notifyCte}`;
  // `coalesceData`: a save announces itself in its own statement only when it changes the
  // session's owner (`before`, the row as the statement's snapshot saw it); data-only saves
  // are announced in batches by the store (CoalescingAnnouncer), after they commit, so they
  // commit without a pending notification. The notify CTE reads `wi`, which is empty then.
  const coalescedWritten = (write: string, returning = ''): string =>
    `w AS (\n${write}\nRETURNING ${ANNOUNCED}${returning ? `, ${returning}` : ''}, user_id AS written_user\n), wi AS (\n  SELECT * FROM w WHERE EXISTS (SELECT 1 FROM before WHERE before.user_id IS DISTINCT FROM w.written_user)\n)${
      notify === undefined ? '' : `, n AS (\n${notifyKeysSql('wi', notify)}\n)`
    }`;
  // Statements that announce their own changes say so before they change a row (the triggers'
  // conditions are checked as each row changes): see announce-trigger.ts.
  const marked = notify === undefined ? '' : `\n  AND ${MARK_ANNOUNCED} IS NOT NULL`;
  // The same for a statement that changes many rows: as an uncorrelated subquery it runs once,
  // before the first row is tested (an InitPlan), not once per row.
  const markedOnce = notify === undefined ? '' : `\n  AND (SELECT ${MARK_ANNOUNCED}) IS NOT NULL`;

  // Names are derived from the text itself, so two stores on different tables sharing a pool
  // never collide (node-postgres rejects one name used for two texts on a connection), and two
  // stores on the same table share the prepared statement.
  const named = (text: string): Statement =>
    prepare
      ? { text, name: `pgsession_${createHash('sha256').update(text).digest('hex').slice(0, 24)}` }
      : { text };
  const plain = (text: string): Statement => ({ text });

  const insertColumns =
    'sid, sess, expire, created_at, last_active_at, user_id, version, id_hashed, key_hash';
  // Cast: in `INSERT … SELECT` the parameters' types cannot be taken from the target columns.
  // `k` is the raw id (or null): while the switch from connect-pg-simple is unfinished, a new
  // session is stored where connect-pg-simple would look for it, found by pgsession through
  // `key_hash` like any raw-id row it has matched (see schema.ts, KEEP_RAW_IDS_MARK).
  const insertValues = (k: string, h: string) =>
    `CASE WHEN m.raw THEN ${k}::text ELSE $1::text END, $2::json, ${ts('$3')}, ${ts('$4')}, ${ts('$5')}, $6::text, $7::integer,
    CASE WHEN m.raw THEN false ELSE $8::boolean END, CASE WHEN m.raw THEN ${h}::text ELSE $9::text END`;
  const keepRaw = (k: string) => `(SELECT ${k}::text IS NOT NULL AND ${keepsRawIdsSql(names)} AS raw) m`;

  return {
    // One round trip. A raw-id row matched for the first time records `key_hash` (and the
    // metadata connect-pg-simple never wrote), so the calls that only know the storage key —
    // every write of pgsession's own middleware — find it, while the row stays where
    // connect-pg-simple looks for it. Two concurrent first reads: the second UPDATE finds
    // `key_hash` already set, matches nothing, and the row comes from `found`.
    get: named(`WITH found AS (
  SELECT ${RECORD}, id_hashed, key_hash FROM ${t}
  WHERE ${match('$1', '$3')} AND ${liveRow('$2')}
  ORDER BY id_hashed DESC LIMIT 1
), adopted AS (
  UPDATE ${t} SET
    key_hash = $1,
    created_at = coalesce(created_at, ${ts('$2')}),
    last_active_at = coalesce(last_active_at, ${ts('$2')}),
    user_id = coalesce(user_id, ${DERIVED_USER_ID})
  WHERE sid = $3 AND NOT id_hashed AND key_hash IS NULL AND ${liveRow('$2')}
    AND EXISTS (SELECT 1 FROM found WHERE NOT found.id_hashed AND found.key_hash IS NULL)${marked}
  RETURNING ${RECORD}
)
SELECT ${RECORD_NAMES} FROM adopted
UNION ALL
SELECT ${RECORD_NAMES} FROM found WHERE NOT EXISTS (SELECT 1 FROM adopted)`),

    insert: named(
      `INSERT INTO ${t} (${insertColumns}) SELECT ${insertValues('$10', '$1')} FROM ${keepRaw('$10')}`,
    ),

    // express-session's `set` of a session this process never loaded: an upsert, as
    // connect-pg-simple does, onto the session's row wherever it is stored (a raw-id row stays
    // raw); a row that had already expired is a new session.
    upsert: named(`WITH u AS (
  UPDATE ${t} SET
    sess = $2::json,
    expire = ${ts('$3')},
    created_at = CASE WHEN expire < ${ts('$10')} THEN ${ts('$4')} ELSE coalesce(created_at, ${ts('$4')}) END,
    last_active_at = ${ts('$5')},
    user_id = $6,
    version = version + 1,
    ${keyHash('$11')}
  WHERE ${match('$11', '$12')}${marked}
  RETURNING ${ANNOUNCED}
), i AS (
  INSERT INTO ${t} AS s (${insertColumns})
  SELECT ${insertValues('$12', '$11')} FROM ${keepRaw('$12')} WHERE NOT EXISTS (SELECT 1 FROM u)
  ON CONFLICT (sid) DO UPDATE SET
    sess = EXCLUDED.sess,
    expire = EXCLUDED.expire,
    created_at = CASE WHEN s.expire < ${ts('$10')} THEN EXCLUDED.created_at
      ELSE coalesce(s.created_at, EXCLUDED.created_at) END,
    last_active_at = EXCLUDED.last_active_at,
    user_id = EXCLUDED.user_id,
    version = s.version + 1,
    id_hashed = EXCLUDED.id_hashed,
    key_hash = EXCLUDED.key_hash${notify === undefined ? '' : `\n  WHERE ${MARK_ANNOUNCED} IS NOT NULL`}
  RETURNING ${ANNOUNCED}
), w AS (SELECT * FROM u UNION ALL SELECT * FROM i)${notifyCte}
SELECT count(*)::integer AS written${notified} FROM w`),

    // UPDATE-only whole-session write (express-session's `set` of a loaded session): a session
    // destroyed meanwhile stays destroyed.
    replace: named(`${written(
      `UPDATE ${t} SET
  sess = $2::json,
  expire = ${ts('$3')},
  last_active_at = ${ts('$4')},
  user_id = $5,
  version = version + 1,
  ${keyHash('$1')}
WHERE ${match('$1', '$7')} AND ${liveRow('$6')}${marked}`,
      'version',
    )}
SELECT max(version) AS version${notified} FROM w`),

    // Key-level merge: two requests that changed different keys both keep their change, because
    // each applies only its own keys to whatever the row holds when it gets the row lock. Never
    // inserts: a row deleted by a concurrent logout matches nothing and stays deleted.
    update: named(`${
      coalesceData && notify
        ? `WITH before AS (
  SELECT user_id FROM ${t} WHERE ${match('$1', '$8')}
), `
        : ''
    }${(coalesceData && notify ? coalescedWritten : written)(
      `UPDATE ${t} SET
  sess = ((sess::jsonb - $2::text[]) || $3::jsonb)::json,
  expire = ${ts('$4')},
  last_active_at = ${ts('$5')},
  user_id = $6,
  version = version + 1,
  ${keyHash('$1')}
WHERE ${match('$1', '$8')} AND ${liveRow('$7')}${marked}`,
      `${RECORD}, id_hashed AS hashed`,
    )}
SELECT ${RECORD_NAMES}${notified} FROM w ORDER BY hashed DESC LIMIT 1`),

    // `update` of several sessions (saves of different sessions made in the same turn of the
    // event loop, combined by the store): one round trip and one commit instead of one each.
    // The items are locked in key order, so two processes whose batches share sessions cannot
    // deadlock on each other's rows. `before` and `wi` do per item what `update`'s do.
    updateMany: named(`WITH x AS MATERIALIZED (
  SELECT * FROM jsonb_to_recordset($1::jsonb)
    AS x(bi integer, bh text, bk text, bunset text[], bset jsonb, bexp float8, bact float8, buid text)
  ORDER BY bh
)${
      coalesceData && notify
        ? `, before AS MATERIALIZED (
  SELECT x.bi, t.user_id FROM x JOIN ${t} AS t ON ${match('x.bh', 'x.bk')}
)`
        : ''
    }, w AS (
  UPDATE ${t} AS t SET
    sess = ((sess::jsonb - x.bunset) || x.bset)::json,
    expire = ${ts('x.bexp')},
    last_active_at = ${ts('x.bact')},
    user_id = x.buid,
    version = version + 1,
    ${keyHash('x.bh')}
  FROM x
  WHERE ${match('x.bh', 'x.bk')} AND ${liveRow('$2')}${markedOnce}
  RETURNING x.bi, ${ANNOUNCED}, ${RECORD}, id_hashed AS hashed, user_id AS written_user
), wo AS (
  ${
    coalesceData && notify
      ? 'SELECT w.*, before.user_id IS DISTINCT FROM w.written_user AS owner FROM w LEFT JOIN before ON before.bi = w.bi'
      : 'SELECT w.*, false AS owner FROM w'
  }
)${
      notify === undefined
        ? ''
        : `, n AS (\n${notifyKeysSql(coalesceData ? '(SELECT * FROM wo WHERE owner) AS wi' : 'wo', notify)}\n)`
    }
SELECT coalesce(json_agg(json_build_object(
  'bi', bi, 'hashed', hashed, 'owner', owner, 'sess', sess, 'expires_ms', expires_ms,
  'created_ms', created_ms, 'active_ms', active_ms, 'user_id', user_id, 'version', version,
  'device', device
)), '[]'::json) AS rows${notified} FROM wo`),

    // Never writes `sess`: a touch racing a data write cannot undo it.
    touch: named(`UPDATE ${t} SET expire = ${ts('$2')}, last_active_at = ${ts('$3')}, ${keyHash('$1')}
WHERE ${match('$1', '$5')} AND ${liveRow('$4')}
RETURNING true AS touched`),

    // A logout also removes a row connect-pg-simple stored under the raw id.
    destroy: named(`${written(`DELETE FROM ${t} WHERE ${match('$1', '$2')}${marked}`)}
SELECT count(*)::integer AS deleted${notified} FROM w`),

    // The device binding (DBSC), never `sess`: a save cannot lose it, nor a binding a save. A
    // new binding is written only over none or one with an earlier accepted challenge (so a
    // challenge is good once, even when two requests present it at the same time). Announced,
    // so no other process keeps serving the old binding from its cache.
    bindDevice: plain(`${written(
      `UPDATE ${t} SET
  device = $2::jsonb,
  version = version + 1,
  ${keyHash('$1')}
WHERE ${match('$1', '$4')} AND ${liveRow('$3')}
  AND ($2::jsonb IS NULL OR device IS NULL
    OR (device->>'challengeAt')::float8 < ($2::jsonb->>'challengeAt')::float8)${marked}`,
    )}
SELECT count(*)::integer AS bound${notified} FROM w`),

    listByUser:
      plain(`SELECT coalesce(json_agg(x ORDER BY x.active_ms DESC NULLS LAST, x.sid), '[]'::json) AS sessions
FROM (
  SELECT sid, id_hashed AS hashed, key_hash, ${RECORD} FROM ${t} WHERE user_id = $1 AND ${liveRow('$2')}
) x`),

    // Expired rows of the user go too (they are garbage), but only live ones are counted.
    destroyByUser: plain(`${written(
      `DELETE FROM ${t} WHERE user_id = $1
  AND ($2::text IS NULL OR NOT coalesce(${match('$2', '$4')}, false))${marked}`,
      'expire',
    )}
SELECT count(*) FILTER (WHERE expire >= ${ts('$3')})::integer AS count${notified} FROM w`),

    // Bounded batches keep each statement's locks and WAL short on a big backlog. The inner
    // SELECT walks the expire index; rows re-checked by ctid that a concurrent touch extended
    // meanwhile are skipped (their new version has another ctid and a later expire).
    pruneBatch: plain(`WITH d AS (
DELETE FROM ${t}
WHERE ctid = ANY(ARRAY(SELECT ctid FROM ${t} WHERE expire < ${ts('$1')} LIMIT $2))
  AND expire < ${ts('$1')}
RETURNING 1
) SELECT count(*)::integer AS deleted FROM d`),

    // For pools that cannot lend a dedicated connection (a query-only wrapper, pg-promise): the
    // lock is transaction-scoped, so it is held for this one statement. The one-time filter on
    // `l` runs before anything is deleted; a process that finds the lock taken deletes nothing.
    pruneBatchLocked: plain(`WITH l AS (SELECT pg_try_advisory_xact_lock($3, $4) AS locked), d AS (
DELETE FROM ${t}
WHERE (SELECT locked FROM l)
  AND ctid = ANY(ARRAY(SELECT ctid FROM ${t} WHERE expire < ${ts('$1')} LIMIT $2))
  AND expire < ${ts('$1')}
RETURNING 1
) SELECT (SELECT count(*) FROM d)::integer AS deleted, (SELECT locked FROM l) AS locked`),

    // Session-level (not transaction-level) so the lock spans the batches, each of which
    // commits on its own; `try` so a second pruner gives up at once instead of queueing.
    pruneLock: plain('SELECT pg_try_advisory_lock($1, $2) AS locked'),
    pruneUnlock: plain('SELECT pg_advisory_unlock($1, $2)'),

    all: plain(`SELECT coalesce(json_agg(json_build_object('sid', sid, 'hashed', id_hashed, 'sess', sess)), '[]'::json) AS sessions
FROM ${t} WHERE ${live('$1')}`),
    count: plain(`SELECT count(*)::integer AS count FROM ${t} WHERE ${live('$1')}`),
    keys: plain(`SELECT coalesce(array_agg(sid) FILTER (WHERE id_hashed), '{}') AS hashed,
  coalesce(array_agg(sid) FILTER (WHERE NOT id_hashed), '{}') AS raw
FROM ${t} WHERE ${live('$1')}`),
    // Announced as "everything" (every row's key is reported as `*`, collapsed to one payload).
    clear: plain(
      notify === undefined
        ? `WITH w AS (DELETE FROM ${t} RETURNING 1) SELECT count(*)::integer AS deleted FROM w`
        : `WITH w AS (DELETE FROM ${t} WHERE ${MARK_ANNOUNCED} IS NOT NULL RETURNING sid, false AS id_hashed)${notifyCte}
SELECT count(*)::integer AS deleted${notified} FROM w`,
    ),

    // The hash is recomputed from `sid` (not taken from `key_hash`), so a row can only ever move
    // to the hash of its own id. A row whose hash is already taken stays raw (it is skipped, not
    // retried, so the loop ends) and is counted by `countRaw`.
    rekeyBatch: plain(`WITH b AS (
  SELECT s.ctid, ${sqlHash('s.sid')} AS h FROM ${t} s
  WHERE NOT s.id_hashed
    AND NOT EXISTS (SELECT 1 FROM ${t} o WHERE o.sid = ${sqlHash('s.sid')})
  LIMIT $1
), u AS (
  UPDATE ${t} AS r SET sid = b.h, id_hashed = true, key_hash = NULL
  FROM b WHERE r.ctid = b.ctid AND NOT r.id_hashed
  RETURNING 1
) SELECT count(*)::integer AS rekeyed FROM u`),
    countRaw: plain(`SELECT count(*)::integer AS raw FROM ${t} WHERE NOT id_hashed`),
    keepsRawIds: plain(`SELECT ${keepsRawIdsSql(names)} AS keep`),
    stopKeepingRawIds: plain(keepRawIdsStatement(names, false)),
  };
}
