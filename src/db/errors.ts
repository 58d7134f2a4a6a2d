import { PgSessionError } from '../core/errors.js';

/**
 * Which store failures mean "the database cannot be reached right now" (as opposed to "the
 * database answered with an error"). Only the former lets the cache serve a last-known-good
 * copy: a SQL error, a constraint violation or a statement cancelled by `statement_timeout` come
 * from a server that is up — and that other processes may be using to revoke sessions — so they
 * are never papered over.
 */

/** Socket and resolver errors: nothing answered at the other end. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * SQLSTATEs of a server that is going away or not there yet: class 08 (connection exception),
 * 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up, shutting
 * down, in recovery). Not 57014 (query_canceled: a statement timeout on a live server).
 */
const SQLSTATE = /^(08[0-9A-Z]{3}|57P0[123])$/;

/**
 * Messages node-postgres uses for connection failures that carry no code: the pool's connect
 * timeout, the client's connect timeout, a connection that died under a query, the client-side
 * `query_timeout` (no answer at all), and use of a client whose connection already ended.
 */
const MESSAGES =
  /timeout exceeded when trying to connect|Connection terminated|connection timeout|Query read timeout|Client has encountered a connection error and is not queryable|Connection closed/i;

/**
 * True when `err` (or what it wraps: `cause`, an `AggregateError`'s `errors`) says the database
 * could not be reached or went away mid-call. False for everything the server answered with.
 */
export function isConnectionError(err: unknown): boolean {
  return check(err, 0);
}

function check(err: unknown, depth: number): boolean {
  if (depth > 4 || err === null || typeof err !== 'object') return false;
  const e = err as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === 'string') {
    if (NETWORK_CODES.has(e.code) || SQLSTATE.test(e.code)) return true;
    // Any other SQLSTATE is an answer from a live server, whatever it wraps.
    if (/^[0-9A-Z]{5}$/.test(e.code)) return false;
  }
  if (typeof e.message === 'string' && MESSAGES.test(e.message)) return true;
  if (Array.isArray(e.errors) && e.errors.some((inner) => check(inner, depth + 1))) return true;
  return check(e.cause, depth + 1);
}

/**
 * SQLSTATEs of a server that answered but will not let this configuration in: a wrong password
 * or role (28P01, 28000), a database that does not exist (3D000), too many connections (53300).
 * Not a passing outage: retrying will not help until the configuration (or the server) changes.
 */
const LOGIN_SQLSTATES = new Set(['28P01', '28000', '3D000', '53300']);

/** True when PostgreSQL refused to let this role into this database (see {@link LOGIN_SQLSTATES}). */
export function isLoginRefused(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && LOGIN_SQLSTATES.has(code);
}

/**
 * The statement ran out of time: cancelled by the server's `statement_timeout` or by the
 * per-query limit of {@link withQueryOptions} (SQLSTATE 57014, or {@link StatementTimeoutError}).
 */
export function isStatementTimeout(err: unknown): boolean {
  return err instanceof StatementTimeoutError || (err as { code?: unknown } | null)?.code === '57014';
}

/**
 * The one test for "answer 503 and let the client retry": the database could not be reached or
 * went away ({@link isConnectionError}), refused the login ({@link isLoginRefused}), or a
 * statement ran out of time ({@link isStatementTimeout}). Everything else the server answered
 * with (a constraint, a syntax error) is a bug: 500.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  return isConnectionError(err) || isLoginRefused(err) || isStatementTimeout(err);
}

/**
 * A statement cancelled by pgsession's per-query time limit (`statementTimeout`). `cause` is the
 * server's `57014 canceling statement due to user request`.
 */
export class StatementTimeoutError extends PgSessionError {
  readonly timeoutMs: number;
  constructor(timeoutMs: number, cause?: unknown) {
    super('PGSESSION_STATEMENT_TIMEOUT', `statement cancelled after ${timeoutMs} ms (statementTimeout)`, {
      cause,
      status: 503,
    });
    this.timeoutMs = timeoutMs;
  }
}
