/** The admin pages: every user with their session count, and ending all of a user's sessions. */
import { Router } from 'express';
import { csrfToken, requireRole, wantsJson } from '../../src/auth/index.js';
import { userOf } from '../http.js';
import { adminPage } from '../views.js';
import type { RouteContext } from './context.js';

export function adminRoutes(ctx: RouteContext): Router {
  const { auth, csrf, user } = ctx;
  const router = Router();
  const adminOnly = requireRole('admin');

  router.get('/admin', adminOnly, user, async (req, res) => {
    const users = await auth.users.list();
    res.type('html').send(adminPage({ user: userOf(res), users, csrfToken: csrfToken(req) }));
  });

  router.post('/admin/users/:id/revoke-sessions', adminOnly, csrf, async (req, res, next) => {
    const id = Number(req.params.id);
    if (!Number.isSafeInteger(id) || id <= 0 || !(await auth.users.findById(id))) return next();
    const count = await auth.revokeAllSessions(id);
    if (wantsJson(req)) return res.json({ revoked: count });
    res.redirect(303, '/admin');
  });

  return router;
}
