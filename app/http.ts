/**
 * Small request helpers shared by the demo's routes: reading form/JSON fields and query values
 * without trusting their type, and the "who is logged in" middleware.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import {
  type Auth,
  AuthError,
  isAuthenticated,
  safeRedirectPath,
  UnauthorizedError,
  wantsJson,
} from '../src/auth/index.js';
import type { ViewUser } from './views.js';

/** Where a logout lands: the seed's redirect, whose `message` is a known key of the home page. */
export const LOGGED_OUT = '/?message=Logged%20out%20successfully';

/**
 * The landing page's `?message=` keys and the only texts it shows: anything else in the URL is
 * ignored, so a link cannot put the attacker's words on the page as an official notice. The
 * key of the logout redirect is its text, as in the seed app (`/?message=Logged out successfully`).
 */
const HOME_MESSAGES: Readonly<Record<string, string>> = Object.freeze({
  'Logged out successfully': 'Logged out successfully',
});

/** The fixed text for a `?message=` key, or undefined for anything else. */
export function homeMessage(key: string | undefined): string | undefined {
  return key !== undefined && Object.hasOwn(HOME_MESSAGES, key) ? HOME_MESSAGES[key] : undefined;
}

/** The logged-in user, as routes use them (from the database, not from the session). */
export type AppUser = ViewUser & { id: number };

/**
 * `next` if it is a path on this site, else null. Only `/path` forms are accepted: no scheme,
 * no `//host` (protocol-relative), no backslashes (browsers read `/\host` as `//host`), no
 * control characters or spaces, and none of those hidden behind percent-encoding.
 */
export function safeNext(value: unknown): string | null {
  // The check lives in the library, where requireAuth and requireRecentAuth build their `next`.
  return safeRedirectPath(value);
}

/** The first string of a query or body value (`?a=1&a=2` gives `'1'`), else undefined. */
export function firstString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
  return undefined;
}

/** A field of the parsed form or JSON body, whatever its type. */
export function bodyField(req: Request, name: string): unknown {
  const body = req.body as Record<string, unknown> | undefined;
  return body && typeof body === 'object' ? body[name] : undefined;
}

/** The same-site `next` of a form (body first, then the query), or null. */
export function nextOf(req: Request): string | null {
  return safeNext(bodyField(req, 'next') ?? firstString(req.query.next));
}

/**
 * A checkbox from a form or JSON: the last value wins (the account form sends a hidden `off`
 * before the box, so unticked still says so); absent means `fallback`.
 */
export function checkbox(value: unknown, fallback: boolean): boolean {
  const v = Array.isArray(value) ? value.at(-1) : value;
  if (v === undefined || v === null) return fallback;
  if (typeof v === 'boolean') return v;
  return typeof v === 'string' && ['on', '1', 'true', 'yes'].includes(v.toLowerCase());
}

/** A positive integer id from a form or JSON field; a 400 for anything else. */
export function positiveId(value: unknown, name: string): number {
  const id =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && /^\d{1,15}$/.test(value)
        ? Number(value)
        : Number.NaN;
  if (!Number.isSafeInteger(id) || id <= 0) {
    throw new AuthError('BAD_REQUEST', `${name} must be a positive integer`, 400);
  }
  return id;
}

/** `?query` appended to a redirect for a same-site `next`, or nothing. */
export function withNext(path: string, next: string | null): string {
  if (!next) return path;
  return `${path}${path.includes('?') ? '&' : '?'}next=${encodeURIComponent(next)}`;
}

/** The logged-in user of a request that went through {@link loadUser}. */
export function userOf(res: Response): AppUser {
  return res.locals.user as AppUser;
}

/**
 * The user of a session, from the database; a session whose user is gone or disabled is ended
 * (an admin disabling an account logs it out on its next request, on every server).
 */
export async function sessionUser(auth: Auth, req: Request): Promise<AppUser | null> {
  if (!isAuthenticated(req)) return null;
  const user = await auth.currentUser(req);
  if (!user) await auth.logout(req);
  return user;
}

/**
 * After `requireAuth`: loads the logged-in user into `res.locals.user` (read it with
 * {@link userOf}). If the account is gone or disabled, the session ends, and a page view is sent
 * to the login page while anything else (a form post, an API call) gets a 401.
 */
export function loadUser(auth: Auth): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction) => {
    const user = await sessionUser(auth, req);
    if (user) {
      res.locals.user = user;
      return next();
    }
    if (req.method === 'GET' && !wantsJson(req)) return res.redirect(302, '/login?error=login_required');
    next(new UnauthorizedError());
  };
}
