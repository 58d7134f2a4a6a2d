/**
 * Two-factor authentication (TOTP, ASVS 6.3.3). Setting it up needs a recent password (a stolen
 * session must not bind the account to the thief's phone); turning it off needs the password
 * and a code. The secret is shown once, in the POST's answer (never in a URL).
 */
import { Router } from 'express';
import { type Auth, AuthError, csrfToken, requireRecentAuth, wantsJson } from '../../src/auth/index.js';
import { bodyField, firstString, userOf } from '../http.js';
import { MFA_ERRORS, MFA_NOTICES, mfaEnrollPage, mfaPage, mfaRecoveryCodesPage } from '../views-mfa.js';
import type { RouteContext } from './context.js';

export function mfaRoutes(ctx: RouteContext): Router {
  const { auth, authed, csrf, user, reauthWindow } = ctx;
  const router = Router();
  const recentForMfa = requireRecentAuth({ within: reauthWindow, reauthPath: '/reauth' });

  router.get('/account/mfa', authed, user, async (req, res) => {
    const status = await auth.totp.status(userOf(res).id);
    if (wantsJson(req)) return res.json(status);
    res.type('html').send(
      mfaPage({
        user: userOf(res),
        csrfToken: csrfToken(req),
        status,
        message: MFA_NOTICES[firstString(req.query.notice) ?? ''],
        error: MFA_ERRORS[firstString(req.query.error) ?? ''],
      }),
    );
  });

  router.post('/account/mfa/start', authed, csrf, recentForMfa, user, async (req, res) => {
    let enrollment: Awaited<ReturnType<Auth['startTotpEnrollment']>>;
    try {
      enrollment = await auth.startTotpEnrollment(userOf(res).id);
    } catch (err) {
      if (!(err instanceof AuthError) || err.status !== 409) throw err;
      if (wantsJson(req)) return res.status(409).json({ error: 'already_enabled' });
      return res.redirect(303, '/account/mfa?error=already_enabled');
    }
    if (wantsJson(req)) return res.json(enrollment);
    res.type('html').send(mfaEnrollPage({ user: userOf(res), csrfToken: csrfToken(req), enrollment }));
  });

  router.post('/account/mfa/confirm', authed, csrf, user, async (req, res) => {
    const result = await auth.confirmTotp(userOf(res).id, bodyField(req, 'code'));
    if (!result.ok) {
      const error = result.reason === 'wrong-code' ? 'wrong_code' : 'no_enrollment';
      if (wantsJson(req)) return res.status(400).json({ error });
      // The secret is not shown again: a wrong code starts the setup over.
      return res.redirect(303, `/account/mfa?error=${error}`);
    }
    if (wantsJson(req)) return res.json({ ok: true, recoveryCodes: result.recoveryCodes });
    res
      .type('html')
      .send(
        mfaRecoveryCodesPage({ user: userOf(res), csrfToken: csrfToken(req), codes: result.recoveryCodes }),
      );
  });

  router.post('/account/mfa/disable', authed, csrf, user, async (req, res) => {
    const result = await auth.disableTotp(req, bodyField(req, 'currentPassword'), bodyField(req, 'code'));
    if (!result.ok) {
      const error = result.reason === 'wrong-password' ? 'wrong_password' : 'wrong_code';
      if (wantsJson(req)) return res.status(400).json({ error });
      return res.redirect(303, `/account/mfa?error=${error}`);
    }
    if (wantsJson(req)) return res.json({ ok: true });
    res.redirect(303, '/account/mfa?notice=disabled');
  });

  return router;
}
