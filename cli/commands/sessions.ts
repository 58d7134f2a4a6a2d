/** `pgsession sessions …`: list and revoke. Sessions are named by their hashed id (storage key). */
import { describeUserAgent } from '../../src/auth/index.js';
import { hashId } from '../../src/core/id.js';
import type { Context } from '../context.js';
import { NotFoundError, UsageError } from '../errors.js';
import { formatTime, plural, printable, SHORT_ID_LENGTH, shortId, table } from '../output.js';
import { findUser } from './users.js';

/** One live session as the CLI shows it. */
export interface SessionRow {
  /** The storage key: SHA-256 of the session id (for a legacy raw-id row, the key it will get). */
  id: string;
  /** Stored under its raw id by connect-pg-simple, not yet re-keyed. */
  legacy: boolean;
  userId: string | null;
  email: string | null;
  createdAt: Date | null;
  lastActiveAt: Date | null;
  expiresAt: Date;
  ip: string | null;
  userAgent: string | null;
  browser: string;
}

interface Row {
  sid: string;
  id_hashed: boolean;
  user_id: string | null;
  email: string | null;
  expires_ms: number;
  created_ms: number | null;
  active_ms: number | null;
  ip: string | null;
  ua: string | null;
}

/** Times as the store writes them (see src/stores/postgres/queries.ts: one clock, the caller's). */
const ts = (param: string) => `to_timestamp(${param}::float8 / 1000)`;
const ms = (expr: string) => `round(extract(epoch FROM ${expr}) * 1000)::float8`;

async function hasUsersTable(ctx: Context): Promise<boolean> {
  const { rows } = await ctx.pool.query<{ ok: boolean }>("SELECT to_regclass('users') IS NOT NULL AS ok");
  return rows[0]?.ok === true;
}

/** Live sessions, most recently active first, optionally of one user id; and how many there are. */
async function loadSessions(
  ctx: Context,
  filter: { userId?: string; limit: number },
): Promise<{ rows: SessionRow[]; total: number }> {
  const store = await ctx.store();
  const t = store.names.qualified;
  const withUsers = await hasUsersTable(ctx);
  const now = Date.now();
  const where = `s.expire >= ${ts('$1')}${filter.userId !== undefined ? ' AND s.user_id = $2' : ''}`;
  const params: unknown[] = filter.userId !== undefined ? [now, filter.userId] : [now];
  // Rows written by connect-pg-simple have no user_id until first read: derive it as the store does.
  const userId = `coalesce(s.user_id, CASE WHEN json_typeof(s.sess->'userId') IN ('string', 'number') THEN s.sess->>'userId' END)`;
  const { rows } = await ctx.pool.query<Row>(
    `SELECT s.sid, s.id_hashed, ${userId} AS user_id,
            ${withUsers ? 'u.email' : 'NULL::text AS email'},
            ${ms('s.expire::timestamptz')} AS expires_ms,
            ${ms('s.created_at')} AS created_ms,
            ${ms('s.last_active_at')} AS active_ms,
            s.sess->'_meta'->>'ip' AS ip,
            s.sess->'_meta'->>'ua' AS ua
       FROM ${t} s
       ${withUsers ? `LEFT JOIN users u ON u.id::text = ${userId}` : ''}
      WHERE ${where}
      ORDER BY s.last_active_at DESC NULLS LAST, s.sid
      LIMIT ${Math.floor(filter.limit)}`,
    params,
  );
  let total = rows.length;
  if (rows.length >= filter.limit) {
    const count = await ctx.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${t} s WHERE ${where}`,
      params,
    );
    total = count.rows[0]?.n ?? rows.length;
  }
  return {
    total,
    rows: rows.map((r) => ({
      id: r.id_hashed ? r.sid : hashId(r.sid),
      legacy: !r.id_hashed,
      userId: r.user_id,
      email: r.email,
      createdAt: r.created_ms === null ? null : new Date(r.created_ms),
      lastActiveAt: r.active_ms === null ? null : new Date(r.active_ms),
      expiresAt: new Date(r.expires_ms),
      ip: r.ip,
      userAgent: r.ua,
      browser: describeUserAgent(r.ua),
    })),
  };
}

export async function sessionsList(
  ctx: Context,
  options: { user?: string; json?: boolean; limit: number },
): Promise<void> {
  let userId: string | undefined;
  let label = '';
  if (options.user !== undefined) {
    const user = await findUser(await ctx.users(), options.user);
    userId = String(user.id);
    label = ` of ${user.email}`;
  }
  const { rows, total } = await loadSessions(ctx, { userId, limit: options.limit });
  const out = ctx.io.stdout;
  if (options.json) {
    const json = rows.map((r) => ({
      id: r.id,
      legacy: r.legacy,
      userId: r.userId,
      email: r.email,
      createdAt: r.createdAt?.toISOString() ?? null,
      lastActiveAt: r.lastActiveAt?.toISOString() ?? null,
      expiresAt: r.expiresAt.toISOString(),
      ip: r.ip,
      userAgent: r.userAgent,
      browser: r.browser,
    }));
    out.write(`${JSON.stringify(json, null, 2)}\n`);
    return;
  }
  if (rows.length === 0) {
    out.write(`No active sessions${label}.\n`);
    return;
  }
  const dash = (d: Date | null) => (d ? formatTime(d) : '-');
  out.write(
    table(
      ['ID', 'USER', 'CREATED', 'LAST ACTIVE', 'EXPIRES', 'ADDRESS', 'BROWSER'],
      rows.map((r) => [
        `${shortId(r.id)}${r.legacy ? '*' : ''}`,
        printable(r.email ?? (r.userId !== null ? `#${r.userId}` : '-')),
        dash(r.createdAt),
        dash(r.lastActiveAt),
        formatTime(r.expiresAt),
        printable(r.ip ?? '-'),
        printable(r.browser),
      ]),
    ),
  );
  const shown = rows.length < total ? `Showing ${rows.length.toLocaleString('en-US')} of ` : '';
  const legacy = rows.some((r) => r.legacy) ? ' (* stored by connect-pg-simple, not yet re-keyed)' : '';
  out.write(`${shown}${plural(total, 'active session')}${label}.${legacy}\n`);
}

/** Shortest id prefix `sessions revoke` accepts. */
export const MIN_ID_PREFIX = 8;

/** The one live session whose hashed id starts with `prefix`: its stored `sid` and its id. */
async function findSession(
  ctx: Context,
  prefix: string,
): Promise<{ sid: string; id: string; userId: string | null }> {
  const store = await ctx.store();
  const t = store.names.qualified;
  const now = Date.now();
  const exact = prefix.length >= 43;
  const { rows } = await ctx.pool.query<{ sid: string; user_id: string | null }>(
    exact
      ? `SELECT sid, user_id FROM ${t} WHERE sid = $2 AND id_hashed AND expire >= ${ts('$1')}`
      : `SELECT sid, user_id FROM ${t} WHERE id_hashed AND left(sid, length($2)) = $2 AND expire >= ${ts('$1')} LIMIT 2`,
    [now, prefix],
  );
  const matches = rows.map((r) => ({ sid: r.sid, id: r.sid, userId: r.user_id }));
  if (matches.length < 2) {
    // Rows still under connect-pg-simple's raw id are shown (and matched) by their future key.
    const legacy = await ctx.pool.query<{ sid: string; user_id: string | null }>(
      `SELECT sid, user_id FROM ${t} WHERE NOT id_hashed AND expire >= ${ts('$1')}`,
      [now],
    );
    for (const r of legacy.rows) {
      const id = hashId(r.sid);
      if (id.startsWith(prefix)) matches.push({ sid: r.sid, id, userId: r.user_id });
    }
  }
  if (matches.length === 0) throw new NotFoundError(`no active session with id ${prefix}`);
  if (matches.length > 1) {
    throw new UsageError(`the id ${prefix} matches more than one session: give more of its characters`);
  }
  return matches[0]!;
}

/**
 * Check `sessions revoke`'s arguments before touching the database: exactly one of an id and
 * `--user`; an id as shown (the web page's "…" and the table's legacy "*" are accepted).
 * Returns the id prefix to look up, or null for `--user`.
 */
export function revokeTarget(id: string | undefined, options: { user?: string }): string | null {
  if (id !== undefined && options.user !== undefined) {
    throw new UsageError('give either a session id or --user <email>, not both');
  }
  if (id === undefined && options.user === undefined) {
    throw new UsageError(
      'give the id of the session to revoke (as "sessions list" shows it) or --user <email>',
    );
  }
  if (id === undefined) return null;
  const prefix = id.trim().replace(/(…|\.\.\.|\*)$/, '');
  if (!/^[A-Za-z0-9_-]+$/.test(prefix) || prefix.length > 64) {
    throw new UsageError(`"${id}" is not a session id (ids are base64url, as "sessions list" shows them)`);
  }
  if (prefix.length < MIN_ID_PREFIX) {
    throw new UsageError(
      `give at least ${MIN_ID_PREFIX} characters of the session id ("sessions list" shows ${SHORT_ID_LENGTH})`,
    );
  }
  return prefix;
}

export async function sessionsRevoke(
  ctx: Context,
  prefix: string | null,
  options: { user?: string },
): Promise<void> {
  const out = ctx.io.stdout;
  if (prefix === null) {
    const user = await findUser(await ctx.users(), options.user ?? '');
    const store = await ctx.store();
    const count = await store.destroyByUser(String(user.id));
    out.write(`Revoked ${plural(count, 'session')} of ${user.email}.\n`);
    return;
  }
  const session = await findSession(ctx, prefix);
  await (await ctx.store()).destroy(session.sid);
  let owner = '';
  if (session.userId !== null) {
    const { rows } = (await hasUsersTable(ctx))
      ? await ctx.pool.query<{ email: string }>('SELECT email FROM users WHERE id::text = $1', [
          session.userId,
        ])
      : { rows: [] };
    owner = ` of ${rows[0]?.email ?? `user #${session.userId}`}`;
  }
  out.write(`Revoked session ${shortId(session.id)}${owner}.\n`);
}
