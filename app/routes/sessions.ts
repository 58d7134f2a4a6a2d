/**
 * "Your sessions": every browser where the user is logged in, revoking one, and logging out all
 * the others. Listing needs a login; revoking another session needs the password from the last
 * `REAUTH_WINDOW` (step-up, ASVS 7.5.2). Refused HTML forms come back to this page, which then
 * shows why and the "confirm your password" form; JSON clients get 401
 * `{"error":"reauthentication_required"}`. The guard runs before the handler: nothing changes.
 */
import { Router } from 'express';
import { csrfToken, isRecentlyAuthenticated, requireRecentAuth, wantsJson } from '../../src/auth/index.js';
import { firstString, LOGGED_OUT, userOf } from '../http.js';
import { REAUTH_ERRORS, sessionsPage } from '../views.js';
import type { RouteContext } from './context.js';

/** Messages the sessions page shows for `?notice=` (never reflected text). */
const SESSION_NOTICES: Record<string, string> = {
  revoked: 'Session revoked: that browser is logged out.',
  others: 'All your other sessions are logged out.',
  none: 'There were no other sessions.',
  reauthenticated: 'Password confirmed: you can revoke sessions now.',
};

export function sessionRoutes(ctx: RouteContext): Router {
  const { auth, authed, csrf, user, reauthWindow } = ctx;
  const router = Router();
  const recentAuth = requireRecentAuth({ within: reauthWindow, reauthPath: '/account/sessions' });

  router.get('/account/sessions', authed, user, async (req, res) => {
    const sessions = await auth.sessions.list(req);
    res.type('html').send(
      sessionsPage({
        user: userOf(res),
        sessions,
        csrfToken: csrfToken(req),
        message: SESSION_NOTICES[firstString(req.query.notice) ?? ''],
        error: REAUTH_ERRORS[firstString(req.query.error) ?? ''],
        reauth: { recent: isRecentlyAuthenticated(req, reauthWindow), window: reauthWindow },
      }),
    );
  });

  router.post('/account/sessions/revoke-others', authed, csrf, recentAuth, async (req, res) => {
    const count = await auth.revokeOtherSessions(req);
    if (wantsJson(req)) return res.json({ revoked: count });
    res.redirect(303, `/account/sessions?notice=${count > 0 ? 'others' : 'none'}`);
  });

  router.post(
    '/account/sessions/:id/revoke',
    authed,
    csrf,
    (req, res, next) => {
      // Ending this very session is a logout, which must never be harder than the logout button.
      if (String(req.params.id) === auth.sessions.currentKey(req)) return next();
      recentAuth(req, res, next);
    },
    async (req, res, next) => {
      const outcome = await auth.revokeSession(req, String(req.params.id));
      if (outcome === 'not-found') return next();
      if (wantsJson(req)) return res.json({ revoked: outcome });
      res.redirect(303, outcome === 'current' ? LOGGED_OUT : '/account/sessions?notice=revoked');
    },
  );

  return router;
}
