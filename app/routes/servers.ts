/**
 * The landing page, the dashboard (the user's servers and unread security notices) and the
 * small JSON API. The dashboard stays readable, from what the session knows, while the
 * database is down (docs/reliability.md).
 */
import { Router } from 'express';
import { csrfToken, isAuthenticated, type SecurityNotice, wantsJson } from '../../src/auth/index.js';
import { isDatabaseUnavailable } from '../../src/index.js';
import { bodyField, firstString, homeMessage, positiveId, sessionUser, userOf } from '../http.js';
import { dashboardPage, deleteServerPage, homePage, type ServerRow } from '../views.js';
import type { RouteContext } from './context.js';

/** Messages the dashboard shows for `?notice=` (never reflected text). */
const DASHBOARD_NOTICES: Record<string, string> = {
  deleted: 'The server was deleted.',
};

export function serverRoutes(ctx: RouteContext): Router {
  const { auth, pool, authed, csrf, user } = ctx;
  const router = Router();

  router.get('/', async (req, res) => {
    const current = await sessionUser(auth, req);
    const message = homeMessage(firstString(req.query.message));
    res.type('html').send(
      homePage({
        user: current,
        ...(current ? { csrfToken: csrfToken(req) } : {}),
        ...(message ? { message } : {}),
      }),
    );
  });

  router.get('/dashboard', authed, async (req, res) => {
    let current: Awaited<ReturnType<typeof sessionUser>>;
    let servers: ServerRow[];
    let notices: SecurityNotice[];
    let unreadNotices: number;
    try {
      current = await sessionUser(auth, req);
      if (!current) return res.redirect(302, '/login?error=login_required');
      const { rows } = await pool.query<{ id: string; name: string; created_at: Date }>(
        'SELECT id, name, created_at FROM servers WHERE user_id = $1 ORDER BY id',
        [current.id],
      );
      servers = rows.map((r) => ({ id: Number(r.id), name: r.name, createdAt: r.created_at }));
      // Unread security notices first thing on the dashboard (ASVS 6.3.5, 6.3.7).
      [notices, unreadNotices] = await Promise.all([
        auth.notices.list(current.id, { unreadOnly: true, limit: 5 }),
        auth.notices.countUnread(current.id),
      ]);
    } catch (err) {
      // Database outage, session still served (from the cache, read-only; docs/reliability.md):
      // a read-only page from what the session knows, instead of a 503.
      if (!isDatabaseUnavailable(err) || !isAuthenticated(req)) throw err;
      const role = req.session.userRole === 'admin' ? 'admin' : 'user';
      const fallback = { email: `user #${req.session.userId}`, role } as const;
      return res
        .type('html')
        .send(
          dashboardPage({ user: fallback, servers: [], serversUnavailable: true, csrfToken: csrfToken(req) }),
        );
    }
    res.type('html').send(
      dashboardPage({
        user: current,
        servers,
        csrfToken: csrfToken(req),
        notices,
        unreadNotices,
        message: DASHBOARD_NOTICES[firstString(req.query.notice) ?? ''],
      }),
    );
  });

  // The confirmation before a delete; only for the user's own servers (anything else: 404).
  router.get('/servers/:id/delete', authed, user, async (req, res, next) => {
    const id = /^\d{1,15}$/.test(String(req.params.id)) ? Number(req.params.id) : 0;
    const { rows } = await pool.query<{ id: string; name: string; created_at: Date }>(
      'SELECT id, name, created_at FROM servers WHERE id = $1 AND user_id = $2',
      [id, userOf(res).id],
    );
    const row = rows[0];
    if (!row) return next();
    const server = { id: Number(row.id), name: row.name, createdAt: row.created_at };
    res.type('html').send(deleteServerPage({ user: userOf(res), server, csrfToken: csrfToken(req) }));
  });

  router.post('/delete-server', authed, csrf, async (req, res) => {
    const serverId = positiveId(bodyField(req, 'serverId'), 'serverId');
    const result = await pool.query('DELETE FROM servers WHERE id = $1 AND user_id = $2', [
      serverId,
      req.session.userId,
    ]);
    if (wantsJson(req)) return res.status(200).json({ deleted: result.rowCount ?? 0 });
    res.redirect(303, result.rowCount ? '/dashboard?notice=deleted' : '/dashboard');
  });

  router.get('/api/me', authed, user, (_req, res) => {
    const me = userOf(res);
    res.json({ id: me.id, email: me.email, role: me.role });
  });

  return router;
}
