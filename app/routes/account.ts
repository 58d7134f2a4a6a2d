/**
 * The account: changing the password and the email (the current password is required, and
 * counted by the login limits), and the security notices (list, mark read).
 */
import { type Request, type Response, Router } from 'express';
import {
  type Auth,
  AuthError,
  csrfToken,
  DuplicateEmailError,
  PasswordCheckUnavailableError,
  PasswordPolicyError,
  wantsJson,
} from '../../src/auth/index.js';
import { bodyField, checkbox, firstString, positiveId, userOf } from '../http.js';
import { accountPage, noticesPage } from '../views.js';
import type { RouteContext } from './context.js';

/** Messages the account page shows for `?notice=` (never reflected text). */
const ACCOUNT_NOTICES: Record<string, string> = {
  password: 'Password changed.',
  'password-others': 'Password changed. Your other sessions are logged out.',
  email: 'Email changed.',
};

/** A refused account form: the page again with the error (HTML), or `{ error, message }` (JSON). */
function refuse(req: Request, res: Response, status: number, error: string, message: string): void {
  if (wantsJson(req)) {
    res.status(status).json({ error, message });
    return;
  }
  res
    .status(status)
    .type('html')
    .send(accountPage({ user: userOf(res), csrfToken: csrfToken(req), error: message }));
}

async function changePassword(auth: Auth, req: Request, res: Response): Promise<void> {
  const next = bodyField(req, 'newPassword');
  if (typeof next !== 'string' || next.length === 0)
    return refuse(req, res, 400, 'password_policy', 'Choose a new password.');
  const logoutOthers = checkbox(bodyField(req, 'logoutOthers'), true);
  let result: Awaited<ReturnType<Auth['changePassword']>>;
  try {
    result = await auth.changePassword(req, bodyField(req, 'currentPassword'), next, {
      revokeOthers: logoutOthers,
    });
  } catch (err) {
    if (err instanceof PasswordPolicyError) return refuse(req, res, 400, 'password_policy', err.message);
    if (err instanceof PasswordCheckUnavailableError) {
      res.setHeader('Retry-After', String(err.retryAfter));
      return refuse(req, res, 503, 'password_check_unavailable', err.message);
    }
    throw err;
  }
  if (!result.ok) return refuse(req, res, 400, 'wrong_password', 'Your current password is not correct.');
  if (wantsJson(req)) {
    res.json({ ok: true, revoked: result.revoked });
    return;
  }
  res.redirect(303, `/account?notice=${logoutOthers ? 'password-others' : 'password'}`);
}

async function changeEmail(auth: Auth, req: Request, res: Response): Promise<void> {
  let result: Awaited<ReturnType<Auth['changeEmail']>>;
  try {
    result = await auth.changeEmail(req, bodyField(req, 'currentPassword'), bodyField(req, 'email'));
  } catch (err) {
    if (err instanceof DuplicateEmailError)
      return refuse(req, res, 409, 'email_taken', 'That email address belongs to another account.');
    if (err instanceof AuthError && err.status === 400)
      return refuse(req, res, 400, 'invalid_email', 'Enter a valid email address.');
    throw err;
  }
  if (!result.ok) return refuse(req, res, 400, 'wrong_password', 'Your current password is not correct.');
  if (wantsJson(req)) {
    res.json({ ok: true, email: result.email });
    return;
  }
  res.redirect(303, '/account?notice=email');
}

export function accountRoutes(ctx: RouteContext): Router {
  const { auth, authed, csrf, user } = ctx;
  const router = Router();

  router.get('/account', authed, user, (req, res) => {
    const notice = ACCOUNT_NOTICES[firstString(req.query.notice) ?? ''];
    res.type('html').send(accountPage({ user: userOf(res), csrfToken: csrfToken(req), message: notice }));
  });

  router.post('/account/password', authed, csrf, user, (req, res) => changePassword(auth, req, res));
  router.post('/account/email', authed, csrf, user, (req, res) => changeEmail(auth, req, res));

  // Security notices: the list (newest first), and marking them read (one, or all).
  router.get('/account/notices', authed, user, async (req, res) => {
    const notices = await auth.notices.list(userOf(res).id, { limit: 100 });
    if (wantsJson(req)) return res.json({ notices });
    const message = firstString(req.query.notice) === 'read' ? 'Marked as read.' : undefined;
    res.type('html').send(noticesPage({ user: userOf(res), notices, csrfToken: csrfToken(req), message }));
  });

  router.post('/account/notices/read', authed, csrf, user, async (req, res) => {
    const raw = bodyField(req, 'id');
    const ids = raw === undefined || raw === '' ? undefined : [positiveId(raw, 'id')];
    // Only the user's own notices can change: another user's id marks nothing.
    const marked = await auth.notices.markRead(userOf(res).id, ids);
    if (wantsJson(req)) return res.json({ marked });
    res.redirect(303, '/account/notices?notice=read');
  });

  return router;
}
