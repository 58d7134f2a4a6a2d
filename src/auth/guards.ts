import { ForbiddenError, UnauthorizedError } from './errors.js';
import { type AuthRequest, type Middleware, wantsJson } from './request.js';
import type { Role } from './types.js';

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
  return typeof id === 'number' && Number.isSafeInteger(id) && id > 0;
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
  const target = req.originalUrl ?? req.url;
  if ((req.method === 'GET' || req.method === 'HEAD') && target && target.startsWith('/') && target !== '/') {
    location += `&next=${encodeURIComponent(target)}`;
  }
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
