/**
 * How long a session lives: its idle timeout (from its own cookie, "remember me" included), the
 * absolute cap, and the expiry its row gets. The server enforces these from stored times, so a
 * cookie that outlives its session (a copied cookie, a browser that ignores Expires) is refused.
 */
import type { Cookie, CookieOptions } from './cookie.js';
import type { EngineOptions } from './engine-options.js';
import { type SessionRecord, storedCookieOf } from './store.js';

/** Without an idle timeout, a row lives as long as connect-pg-simple's default ttl: one day. */
const DEFAULT_STORE_TTL = 86_400_000;
/**
 * Lifetimes closer than this are the same one: a cookie express-session created records its
 * `originalMaxAge` from two clock reads, so it can be a few ms short of the configured maxAge.
 */
const CLOCK_SLACK = 1000;

/** A cookie lifetime in ms, or null for a browser-session cookie (null, undefined, false). */
function lifetime(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/**
 * The idle timeout of one session, from its own cookie exactly as the browser sees it: a
 * lifetime the app gave this session (`req.session.cookie.maxAge = 30 days` for "remember
 * me", a fixed `expires`) is its idle timeout, and a browser-session cookie (`expires: false`
 * or `null`) has none but an explicit `idleTimeout`. Sessions whose cookie has the configured
 * lifetime get the configured idle timeout: it is the default, never a cap that ends a longer
 * session early (`absoluteTimeout` is the cap).
 */
export function idleTimeoutOf(
  options: EngineOptions,
  cookie: { originalMaxAge?: unknown } | undefined,
  cookieOptions: CookieOptions,
): number | null {
  const { idleTimeout, idleTimeoutFromCookie } = options;
  const own = lifetime(cookie?.originalMaxAge);
  const configured = lifetime(cookieOptions.maxAge);
  if (own === configured || (own !== null && configured !== null && Math.abs(own - configured) < CLOCK_SLACK))
    return idleTimeout;
  if (own !== null) return own;
  return idleTimeoutFromCookie ? null : idleTimeout;
}

/** Why a stored session is over, or null while it is live. */
export function expiredReason(
  options: EngineOptions,
  record: SessionRecord,
  cookieOptions: CookieOptions,
): 'idle' | 'absolute' | null {
  const { absoluteTimeout, touchAfter } = options;
  const now = options.now();
  if (absoluteTimeout !== null && now - record.createdAt > absoluteTimeout) return 'absolute';
  // Activity is written at most every touchAfter, so the last write may be that much behind.
  // Stores adapted from express-session cannot record activity on touch (most keep only a
  // TTL): for them the idle timeout is their own expiry, refreshed by every touch.
  if (options.store.tracksActivity === false) return null;
  const idle = idleTimeoutOf(options, storedCookieOf(record), cookieOptions);
  return idle !== null && now - record.lastActiveAt > idle + touchAfter ? 'idle' : null;
}

/** When the store may forget a session last active at `now`, created at `createdAt`. */
export function expiresAt(
  options: EngineOptions,
  now: number,
  createdAt: number,
  cookie: Cookie,
  cookieOptions: CookieOptions,
): number {
  const { absoluteTimeout, touchAfter } = options;
  const idle = idleTimeoutOf(options, cookie, cookieOptions);
  const expires = cookie.expires;
  let at: number;
  if (idle !== null) at = now + idle + touchAfter;
  else if (expires instanceof Date) at = expires.getTime();
  else at = now + DEFAULT_STORE_TTL;
  if (absoluteTimeout !== null) at = Math.min(at, createdAt + absoluteTimeout);
  return at;
}
