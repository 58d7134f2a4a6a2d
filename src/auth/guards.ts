import { parseDuration } from '../core/duration.js';
import { ConfigError } from '../core/errors.js';
import { AuthError, ForbiddenError, UnauthorizedError } from './errors.js';
import { type AuthRequest, type Middleware, wantsJson } from './request.js';
import type { Role } from './types.js';

/**
 * `value` if it is a path on this site, else null: what a `next=` parameter may redirect to.
 * Only `/path` forms are accepted: no scheme, no `//host` (protocol-relative), no backslashes
 * (browsers read `/\host` as `//host`), no control characters or spaces, and none of those hidden
 * behind percent-encoding. Returns the path with dot segments resolved.
 */
export function safeRedirectPath(value: unknown): string | null {
  if (typeof value !== 'string' || value.length === 0 || value.length > 2048) return null;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse.
  const bad = /[\\\u0000-\u0020\u007f-\u009f]/;
  if (!value.startsWith('/') || value.startsWith('//') || bad.test(value)) return null;
  let decoded = value;
  for (let i = 0; i < 5; i++) {
    let next: string;
    try {
      next = decodeURIComponent(decoded);
    } catch {
      return null;
    }
    if (next === decoded) break;
    decoded = next;
    if (decoded.startsWith('//') || !decoded.startsWith('/') || bad.test(decoded)) return null;
  }
  const base = 'http://next.invalid';
  let url: URL;
  try {
    url = new URL(value, base);
  } catch {
    return null;
  }
  if (url.origin !== base) return null;
  // Dot segments are resolved here: `/.//evil.example` and `/a/..//evil.example` become
  // `//evil.example`, which a browser reads as another host. Check the result, not just the input.
  const path = url.pathname + url.search + url.hash;
  if (path.startsWith('//') || bad.test(path)) return null;
  return path;
}

/** Options of {@link requireAuth} and {@link requireRole}. */
export interface GuardOptions {
  /** Where HTML requests without a login go. Default `/login`. */
  loginPath?: string;
  /** Which requests get a 401 (passed to `next`) instead of a redirect. Default {@link wantsJson}. */
  isApiRequest?: (req: AuthRequest) => boolean;
}

/** Whether the request's session belongs to a logged-in user. */
export function isAuthenticated(req: AuthRequest): boolean {
  const id = req.session?.userId;
  // A login still waiting for its second factor is not a login, whatever else the session holds.
  if (req.session?.pendingFactor !== undefined) return false;
  return typeof id === 'number' && Number.isSafeInteger(id) && id > 0;
}

/**
 * Where to come back to after logging in or re-authenticating: the request's own URL for GET
 * and HEAD (a POST cannot be replayed by a redirect), if it is a same-site path. A request
 * line such as `GET //evil.example/` must not become an off-site `next`.
 */
function returnPath(req: AuthRequest): string | null {
  if (req.method !== 'GET' && req.method !== 'HEAD') return null;
  return safeRedirectPath(req.originalUrl ?? req.url);
}

function deny(
  req: AuthRequest,
  res: Parameters<Middleware>[1],
  next: Parameters<Middleware>[2],
  options: GuardOptions,
) {
  if ((options.isApiRequest ?? wantsJson)(req)) return next(new UnauthorizedError());
  let location = `${options.loginPath ?? '/login'}?error=login_required`;
  // Come back here after logging in (GET only: a POST cannot be replayed by a redirect).
  const target = returnPath(req);
  if (target && target !== '/') location += `&next=${encodeURIComponent(target)}`;
  res.statusCode = 302;
  res.setHeader('Location', location);
  res.setHeader('Cache-Control', 'no-store');
  res.end();
}

/**
 * Let logged-in users through; otherwise redirect HTML requests to
 * `/login?error=login_required` (plus `&next=` for GET) and pass an {@link UnauthorizedError}
 * (401) to `next` for API/JSON requests. Marks the response `Cache-Control: no-store`:
 * authenticated pages must not be kept by browsers or proxies.
 */
export function requireAuth(options: GuardOptions = {}): Middleware {
  return (req, res, next) => {
    if (!isAuthenticated(req)) return deny(req, res, next, options);
    res.setHeader('Cache-Control', 'no-store');
    next();
  };
}

/**
 * Like {@link requireAuth}, and the session's role must be one of `roles`: a
 * {@link ForbiddenError} (403) otherwise.
 */
export function requireRole(roles: Role | readonly Role[], options: GuardOptions = {}): Middleware {
  const allowed = new Set<Role>(typeof roles === 'string' ? [roles] : roles);
  return (req, res, next) => {
    if (!isAuthenticated(req)) return deny(req, res, next, options);
    res.setHeader('Cache-Control', 'no-store');
    const role = req.session?.userRole;
    next(role && allowed.has(role) ? undefined : new ForbiddenError());
  };
}

/**
 * A logged-in session whose password was not verified recently enough for a sensitive action
 * (ASVS 7.5.3). API requests get it from {@link requireRecentAuth} (401, code
 * `PGSESSION_REAUTHENTICATION_REQUIRED`); HTML requests are redirected to the re-auth page.
 */
export class ReauthenticationRequiredError extends AuthError {
  constructor(message = 'Confirm your password to continue: this action needs a recent sign-in') {
    // 401 rather than 403, as OAuth step-up (RFC 9470) does: the credentials are what is
    // insufficient, not the user's rights. The code tells it apart from "not logged in".
    super('PGSESSION_REAUTHENTICATION_REQUIRED', message, 401);
  }
}

/** Options of {@link requireRecentAuth}. */
export interface RecentAuthOptions extends GuardOptions {
  /**
   * How recent the last password verification (login or `auth.reauthenticate()`) must be:
   * milliseconds or a duration string (`'5m'`, `'30s'`, as elsewhere in pgsession).
   */
  within: string | number;
  /**
   * Where HTML requests that need a re-authentication go (303), with `?error=reauth_required`
   * and, for GET/HEAD, `&next=<this URL>` (same-site paths only). Default `/reauth`.
   */
  reauthPath?: string;
  /** The clock, epoch milliseconds. Default `Date.now`. */
  now?: () => number;
}

/**
 * When the session's password was last verified (epoch ms), or null. Sessions from before
 * pgsession recorded it have none: they count as not recent, so an old login never passes a
 * step-up check by default.
 */
export function authenticatedAt(req: AuthRequest): number | null {
  const at = req.session?.authenticatedAt;
  return typeof at === 'number' && Number.isFinite(at) && at > 0 ? at : null;
}

/**
 * Whether the request's session is logged in and its password was verified within `within`
 * (milliseconds or a duration string) before `now`.
 */
export function isRecentlyAuthenticated(
  req: AuthRequest,
  within: string | number,
  now: number = Date.now(),
): boolean {
  if (!isAuthenticated(req)) return false;
  const at = authenticatedAt(req);
  return at !== null && now - at <= parseDuration(within, 'within');
}

/**
 * Step-up for sensitive actions (ASVS 7.5.2, 7.5.3): let a request through only when its
 * session's password was verified within `within` (a fresh login counts). Otherwise:
 *
 * - not logged in at all: as {@link requireAuth} (login redirect, or 401 for API requests);
 * - API/JSON requests: a {@link ReauthenticationRequiredError} (401,
 *   `reauthentication_required`) is passed to `next`, so the app's error handler answers in its
 *   format;
 * - HTML requests: `303` to `reauthPath?error=reauth_required` (plus a same-site `&next=` for
 *   GET/HEAD), where the app asks for the password and calls `auth.reauthenticate()`.
 *
 * Responses are marked `Cache-Control: no-store`. The guard runs before the handler, so a
 * refused request changes nothing.
 */
export function requireRecentAuth(options: RecentAuthOptions): Middleware {
  if (!options || options.within === undefined) {
    throw new ConfigError('requireRecentAuth: `within` (a duration such as "5m") is required');
  }
  const within = parseDuration(options.within, 'requireRecentAuth: within');
  if (within <= 0) throw new ConfigError('requireRecentAuth: `within` must be more than 0');
  const reauthPath = options.reauthPath ?? '/reauth';
  if (safeRedirectPath(reauthPath) === null) {
    throw new ConfigError(`requireRecentAuth: reauthPath must be a path on this site, got "${reauthPath}"`);
  }
  const now = options.now ?? Date.now;
  const isApi = options.isApiRequest ?? wantsJson;
  return (req, res, next) => {
    if (!isAuthenticated(req)) return deny(req, res, next, options);
    res.setHeader('Cache-Control', 'no-store');
    if (isRecentlyAuthenticated(req, within, now())) return next();
    if (isApi(req)) return next(new ReauthenticationRequiredError());
    let location = `${reauthPath}${reauthPath.includes('?') ? '&' : '?'}error=reauth_required`;
    const target = returnPath(req);
    if (target) location += `&next=${encodeURIComponent(target)}`;
    // 303: the browser follows with a GET whatever the refused method was.
    res.statusCode = 303;
    res.setHeader('Location', location);
    res.end();
  };
}
