import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { CsrfError } from './errors.js';
import { type AuthRequest, type Middleware, SAFE_METHODS } from './request.js';

/** Options of {@link rejectCrossSite}. */
export interface CrossSiteOptions {
  /**
   * Origins allowed besides the request's own (scheme://host[:port]), e.g. a separate front-end.
   * The request's own origin is derived from `Host` and Express's `req.protocol` (which honours
   * `trust proxy`).
   */
  allowedOrigins?: readonly string[];
  /**
   * Accept `Sec-Fetch-Site: same-site` (a sibling subdomain). Default false: a sibling
   * subdomain is another site as far as your sessions are concerned.
   */
  allowSameSite?: boolean;
}

function normalizeOrigin(value: string): string | null {
  try {
    const url = new URL(value);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
    return url.origin;
  } catch {
    return null;
  }
}

/** The request's own origin, as a browser would write it in `Origin`. */
export function requestOrigin(req: AuthRequest): string | null {
  const host = req.headers.host;
  if (!host) return null;
  const proto =
    req.protocol ?? ((req.socket as { encrypted?: boolean } | undefined)?.encrypted ? 'https' : 'http');
  return normalizeOrigin(`${proto}://${host}`);
}

/**
 * Why a state-changing request must be refused as cross-site, or null. Browsers send
 * `Sec-Fetch-Site` with every request and `Origin` with every POST; a request that has neither
 * is not from a browser form or fetch of another site (and still needs the token).
 */
export function crossSiteReason(
  req: AuthRequest,
  options: CrossSiteOptions = {},
): 'cross-site' | 'origin' | null {
  const site = req.headers['sec-fetch-site'];
  if (typeof site === 'string') {
    const s = site.trim().toLowerCase();
    if (s === 'cross-site') return 'cross-site';
    if (s === 'same-site' && !options.allowSameSite) return 'cross-site';
    // The browser itself vouches for the request: no page of another site can send this header.
    // Checked before Origin because with `Referrer-Policy: no-referrer` (helmet's default)
    // Chromium sends `Origin: null` on same-origin form posts.
    if (s === 'same-origin') return null;
  }
  const origin = req.headers.origin;
  if (typeof origin === 'string') {
    const given = normalizeOrigin(origin.trim());
    // `Origin: null` (sandboxed frames, privacy-sensitive redirects) is never ours.
    if (!given) return 'origin';
    const own = requestOrigin(req);
    const allowed = new Set((options.allowedOrigins ?? []).map((o) => normalizeOrigin(o)).filter(Boolean));
    if (given !== own && !allowed.has(given)) return 'origin';
  }
  return null;
}

/**
 * Refuse state-changing requests (anything but GET/HEAD/OPTIONS/TRACE) sent by another site:
 * `Sec-Fetch-Site: cross-site` (or `same-site` unless allowed) or an `Origin` that is not this
 * site's. Passes a {@link CsrfError} (403) to `next`. Mount it before the routes, including
 * `POST /login` (login CSRF).
 */
export function rejectCrossSite(options: CrossSiteOptions = {}): Middleware {
  return (req, _res, next) => {
    if (SAFE_METHODS.has(req.method ?? 'GET')) return next();
    const reason = crossSiteReason(req, options);
    next(reason ? new CsrfError(reason) : undefined);
  };
}

/** A fresh token: 32 random bytes, base64url. */
export function generateCsrfToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * The session's anti-forgery token, created on first use. Put it in forms as `_csrf` and send it
 * from scripts as the `x-csrf-token` header. Creating one modifies the session, so call it only
 * for sessions worth saving (logged in); `login()` sets a fresh one.
 */
export function csrfToken(req: AuthRequest): string {
  const session = req.session;
  if (!session) throw new Error('csrfToken(req) needs the session middleware');
  if (typeof session.csrfToken !== 'string' || session.csrfToken.length < 32) {
    session.csrfToken = generateCsrfToken();
  }
  return session.csrfToken;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Constant-time comparison of a presented token with the session's (hashing first: no length leak). */
export function csrfTokenMatches(expected: unknown, presented: unknown): boolean {
  if (typeof expected !== 'string' || expected.length === 0) return false;
  if (typeof presented !== 'string' || presented.length === 0 || presented.length > 1024) return false;
  return timingSafeEqual(digest(expected), digest(presented));
}

/** The token a request presents: the `x-csrf-token` header, else the `_csrf` body field. */
export function presentedCsrfToken(req: AuthRequest): string | undefined {
  const header = req.headers['x-csrf-token'];
  if (typeof header === 'string' && header) return header;
  const body = req.body as Record<string, unknown> | undefined;
  const field = body && typeof body === 'object' ? body._csrf : undefined;
  return typeof field === 'string' ? field : undefined;
}

/**
 * Require the session's token on state-changing requests (a {@link CsrfError}, 403, otherwise).
 * Mount it after the body parser, on every state-changing route except `POST /login`.
 */
export function verifyCsrfToken(): Middleware {
  return (req, _res, next) => {
    if (SAFE_METHODS.has(req.method ?? 'GET')) return next();
    const ok = csrfTokenMatches(req.session?.csrfToken, presentedCsrfToken(req));
    next(ok ? undefined : new CsrfError('token'));
  };
}

/** {@link rejectCrossSite} and {@link verifyCsrfToken} in one middleware. */
export function csrfProtection(options: CrossSiteOptions = {}): Middleware {
  const crossSite = rejectCrossSite(options);
  const token = verifyCsrfToken();
  return (req, res, next) => crossSite(req, res, (err) => (err ? next(err) : token(req, res, next)));
}
