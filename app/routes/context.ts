import type { RequestHandler } from 'express';
import type pg from 'pg';
import { type Auth, requireAuth, verifyCsrfToken } from '../../src/auth/index.js';
import type { AppConfig } from '../config.js';
import { loadUser } from '../http.js';

/** What every group of routes is built from: the app's collaborators and its shared guards. */
export interface RouteContext {
  auth: Auth;
  pool: pg.Pool;
  config: AppConfig;
  /** A login is required (HTML: to the login page and back; API: 401). */
  authed: RequestHandler;
  /** The form's anti-forgery token must match the session's. */
  csrf: RequestHandler;
  /** After `authed`: the user from the database in `res.locals.user` (see `userOf`). */
  user: RequestHandler;
  /** How recent the password must be for sensitive actions (step-up, ASVS 7.5.2), ms. */
  reauthWindow: number;
}

export function routeContext(auth: Auth, pool: pg.Pool, config: AppConfig): RouteContext {
  return {
    auth,
    pool,
    config,
    authed: requireAuth(),
    csrf: verifyCsrfToken(),
    user: loadUser(auth),
    reauthWindow: config.reauthWindow ?? 5 * 60_000,
  };
}
