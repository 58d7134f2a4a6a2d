import type pg from 'pg';
import { quoteIdent } from '../../db/sql.js';
import { ALL_KEYS, checkChannel, KEYS_PER_PAYLOAD, quoteLiteral } from '../cache/protocol.js';
import type { TableNames } from './schema.js';

/*
 * Writes not made by pgsession (an admin's `DELETE FROM session WHERE user_id = …`, a script,
 * a GDPR erase, connect-pg-simple during a rolling deploy) are announced to every cache by
 * triggers on the session table, installed by `ensureSchema`:
 *
 * - `AFTER UPDATE`, per row, only when a cache must hear of it: the data (`sess`), the key
 *   (`sid`) or the owner (`user_id`) changed, or `expire` was moved into the past (a revocation
 *   written as an expiry). Never for activity alone (a touch: `expire`/`last_active_at`
 *   forward), never for pgsession's adoption of a legacy row (re-keyed to a key nobody caches).
 *   The condition is the trigger's `WHEN`, evaluated without calling the function, so a touch
 *   costs one comparison of its old and new row.
 * - `AFTER DELETE`, per statement (transition table): the keys of the rows that were still
 *   live, 100 per notification, or `*` past {@link MAX_KEYS}; expired rows are nobody's
 *   business (caches check expiry themselves), so pruning announces nothing.
 * - `AFTER TRUNCATE`: `*`.
 *
 * pgsession's own statements already announce their changes in the same statement (under the
 * writing process's id, so it keeps its fresh copy). They mark themselves with a
 * transaction-local setting ({@link MARK_ANNOUNCED}) that the triggers check first, so they are
 * never announced twice. Keys are storage keys as the caches know them: the row's `sid` when
 * `id_hashed`, else the SHA-256 of the raw id (base64url), exactly `hashId()`, so a raw id
 * never leaves the database.
 *
 * Kept apart from the rest of the schema on purpose: issue 19 may replace how announcements
 * are made under heavy write load; this file and the mark in queries.ts are all there is.
 */

/** The transaction-local setting pgsession's self-announcing statements set. */
export const ANNOUNCED_SETTING = 'pgsession.announced';

/** An SQL expression that marks the current statement's changes as announced already. */
export const MARK_ANNOUNCED = `set_config('${ANNOUNCED_SETTING}', 'on', true)`;

/** Past this many live rows deleted in one statement, the announcement is `*` (forget everything). */
export const MAX_KEYS = 1000;

/** Bumped when the functions or triggers change: the names carry it, so an upgrade installs the new ones. */
const VERSION = 'v1';
const TRIGGERS = {
  update: `pgsession_announce_${VERSION}_update`,
  delete: `pgsession_announce_${VERSION}_delete`,
  truncate: `pgsession_announce_${VERSION}_truncate`,
} as const;

interface Functions {
  /** Qualified names for SQL. */
  key: string;
  row: string;
  rows: string;
  all: string;
  /** The schema to look them up in (null: the connection's current schema). */
  schema: string | null;
}

function functionsOf(names: TableNames): Functions {
  const q = (name: string) =>
    names.schema === undefined ? quoteIdent(name) : `${names.schema}.${quoteIdent(name)}`;
  return {
    key: q(`pgsession_storage_key_${VERSION}`),
    row: q(`pgsession_announce_row_${VERSION}`),
    rows: q(`pgsession_announce_rows_${VERSION}`),
    all: q(`pgsession_announce_all_${VERSION}`),
    schema: names.schemaName ?? null,
  };
}

function functionsSql(f: Functions): string[] {
  const skipMarked = `IF current_setting('${ANNOUNCED_SETTING}', true) = 'on' THEN RETURN NULL; END IF;`;
  return [
    // hashId(): SHA-256 of the id, base64url without padding.
    `CREATE OR REPLACE FUNCTION ${f.key}(sid text, hashed boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN hashed THEN sid
    ELSE rtrim(translate(encode(sha256(convert_to(sid, 'UTF8')), 'base64'), '+/', '-_'), '=') END
$$`,
    `CREATE OR REPLACE FUNCTION ${f.row}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(TG_ARGV[0], ${f.key}(OLD.sid, OLD.id_hashed));
  IF NEW.sid IS DISTINCT FROM OLD.sid THEN
    PERFORM pg_notify(TG_ARGV[0], ${f.key}(NEW.sid, NEW.id_hashed));
  END IF;
  RETURN NULL;
END
$$`,
    `CREATE OR REPLACE FUNCTION ${f.rows}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  live integer;
BEGIN
  ${skipMarked}
  SELECT count(*) INTO live FROM gone WHERE expire >= localtimestamp;
  IF live > ${MAX_KEYS} THEN
    PERFORM pg_notify(TG_ARGV[0], ${quoteLiteral(ALL_KEYS)});
  ELSIF live > 0 THEN
    PERFORM pg_notify(TG_ARGV[0], string_agg(k, ','))
    FROM (
      SELECT k, (row_number() OVER (ORDER BY k) - 1) / ${KEYS_PER_PAYLOAD} AS chunk
      FROM (SELECT DISTINCT ${f.key}(sid, id_hashed) AS k FROM gone WHERE expire >= localtimestamp) keys
    ) keyed
    GROUP BY chunk;
  END IF;
  RETURN NULL;
END
$$`,
    `CREATE OR REPLACE FUNCTION ${f.all}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  ${skipMarked}
  PERFORM pg_notify(TG_ARGV[0], ${quoteLiteral(ALL_KEYS)});
  RETURN NULL;
END
$$`,
  ];
}

function triggersSql(names: TableNames, f: Functions, channel: string): string[] {
  const t = names.qualified;
  const arg = quoteLiteral(channel);
  return [
    `CREATE TRIGGER ${quoteIdent(TRIGGERS.update)} AFTER UPDATE ON ${t} FOR EACH ROW
WHEN (current_setting('${ANNOUNCED_SETTING}', true) IS DISTINCT FROM 'on'
  AND NOT (NOT OLD.id_hashed AND NEW.id_hashed)
  AND (OLD.sid IS DISTINCT FROM NEW.sid
    OR OLD.user_id IS DISTINCT FROM NEW.user_id
    OR (NEW.expire < OLD.expire AND NEW.expire < localtimestamp)
    OR OLD.sess::text IS DISTINCT FROM NEW.sess::text))
EXECUTE FUNCTION ${f.row}(${arg})`,
    `CREATE TRIGGER ${quoteIdent(TRIGGERS.delete)} AFTER DELETE ON ${t} REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION ${f.rows}(${arg})`,
    `CREATE TRIGGER ${quoteIdent(TRIGGERS.truncate)} AFTER TRUNCATE ON ${t}
FOR EACH STATEMENT EXECUTE FUNCTION ${f.all}(${arg})`,
  ];
}

/** The pgsession announce triggers on the table, with the channel each sends to. */
async function installed(client: pg.ClientBase, names: TableNames): Promise<Map<string, string>> {
  const { rows } = await client.query<{ name: string; channel: string }>(
    `SELECT tgname AS name, convert_from(substring(tgargs FROM 1 FOR position('\\x00'::bytea IN tgargs) - 1), 'UTF8') AS channel
FROM pg_trigger
WHERE tgrelid = to_regclass($1::text) AND tgname LIKE 'pgsession\\_announce\\_%' AND NOT tgisinternal`,
    [names.qualified],
  );
  // tgargs holds each argument followed by a NUL byte; the channel is the only one.
  return new Map(rows.map((r) => [r.name, r.channel]));
}

/**
 * Makes the table's announce triggers exist, sending to `channel` (see the module comment).
 * Run inside `ensureSchema`'s transaction, after the columns exist. Does nothing when they are
 * already current; replaces triggers of another version or channel.
 */
export async function ensureAnnounceTriggers(
  client: pg.ClientBase,
  names: TableNames,
  channel: string,
): Promise<void> {
  checkChannel(channel);
  const present = await installed(client, names);
  const current = Object.values(TRIGGERS).every((name) => present.get(name) === channel);
  if (current && present.size === Object.keys(TRIGGERS).length) return;
  const f = functionsOf(names);
  for (const name of present.keys())
    await client.query(`DROP TRIGGER ${quoteIdent(name)} ON ${names.qualified}`);
  for (const sql of functionsSql(f)) await client.query(sql);
  for (const sql of triggersSql(names, f, channel)) await client.query(sql);
}

/**
 * Removes the table's announce triggers (any version) and their functions when no other table
 * uses them. For a migration's way back; `ensureSchema({ announceWrites: false })` never installs them.
 */
export async function dropAnnounceTriggers(client: pg.ClientBase, names: TableNames): Promise<void> {
  for (const name of (await installed(client, names)).keys()) {
    await client.query(`DROP TRIGGER ${quoteIdent(name)} ON ${names.qualified}`);
  }
  const f = functionsOf(names);
  const fns = [`${f.row}()`, `${f.rows}()`, `${f.all}()`];
  // The functions are shared by the tables of one schema: they stay while another uses them.
  const { rows } = await client.query<{ users: number }>(
    'SELECT count(*)::int AS users FROM pg_trigger WHERE tgfoid IN (SELECT to_regprocedure(unnest($1::text[])))',
    [fns],
  );
  if ((rows[0]?.users ?? 0) > 0) return;
  for (const fn of [...fns, `${f.key}(text, boolean)`]) await client.query(`DROP FUNCTION IF EXISTS ${fn}`);
}
