/**
 * Logging in and out: the password step, the TOTP step (for accounts that turned it on),
 * logout (POST, and a GET that a link on another site cannot use), and step-up
 * re-authentication before sensitive actions.
 */
import { type Request, type Response, Router } from 'express';
import { csrfToken, isAuthenticated, isSecondFactorRequired, wantsJson } from '../../src/auth/index.js';
import {
  bodyField,
  firstString,
  LOGGED_OUT,
  nextOf,
  safeNext,
  sessionUser,
  userOf,
  withNext,
} from '../http.js';
import { loginPage, logoutConfirmPage, REAUTH_ERRORS, reauthPage } from '../views.js';
import { totpLoginPage } from '../views-mfa.js';
import type { RouteContext } from './context.js';

export function authRoutes(ctx: RouteContext): Router {
  const { auth, config, csrf, authed, user } = ctx;
  const router = Router();

  /** After a complete login: this browser gets (or renews) its device cookie for the account. */
  const trustThisDevice = (req: Request, res: Response, email: string) => {
    // Like the session cookie: Secure in production, and never sent over plain HTTP there (a
    // device cookie seen in clear could be copied to escape the account's limit).
    if (!auth.devices || (config.secureCookies && !req.secure)) return;
    res.append('Set-Cookie', auth.devices.setCookieHeader(email, { secure: config.secureCookies }));
  };

  router.get('/login', (req, res) => {
    const next = safeNext(firstString(req.query.next));
    if (isAuthenticated(req)) return res.redirect(302, next ?? '/dashboard');
    res.type('html').send(loginPage({ error: firstString(req.query.error), next: next ?? undefined }));
  });

  router.post('/login', async (req, res) => {
    const json = wantsJson(req);
    const next = nextOf(req);
    const loggedIn = await auth.login(req, bodyField(req, 'email'), bodyField(req, 'password'));
    // Right password, TOTP on (the demo's only second factor): not logged in yet; the code step
    // keeps the same-site `next`.
    if (isSecondFactorRequired(loggedIn)) {
      if (json) return res.status(202).json({ status: 'totp-required', next: '/login/totp' });
      return res.redirect(303, withNext('/login/totp', next));
    }
    if (!loggedIn) {
      if (json) return res.status(401).json({ error: 'invalid_credentials' });
      return res.redirect(303, withNext('/login?error=invalid_credentials', next));
    }
    trustThisDevice(req, res, loggedIn.email);
    if (json) return res.status(200).json({ user: loggedIn });
    res.redirect(303, next ?? '/dashboard');
  });

  // The login's second step (TOTP on): only for a session waiting for its code, which holds a
  // CSRF token of its own; anything else starts again at the password.
  router.get('/login/totp', (req, res) => {
    const next = safeNext(firstString(req.query.next)) ?? undefined;
    if (isAuthenticated(req)) return res.redirect(302, next ?? '/dashboard');
    if (!req.session.pendingFactor) return res.redirect(302, '/login?error=login_required');
    // Only known error keys show anything (the page maps them to fixed text).
    const error = firstString(req.query.error);
    res.type('html').send(totpLoginPage({ csrfToken: csrfToken(req), next, error }));
  });

  router.post('/login/totp', csrf, async (req, res) => {
    const json = wantsJson(req);
    const next = nextOf(req);
    const result = await auth.completeTotp(req, bodyField(req, 'code'));
    if (result.ok) {
      trustThisDevice(req, res, result.user.email);
      if (json) return res.status(200).json({ user: result.user });
      return res.redirect(303, next ?? '/dashboard');
    }
    if (result.reason === 'wrong-code') {
      if (json) return res.status(401).json({ error: 'wrong_code' });
      return res.redirect(303, withNext('/login/totp?error=wrong_code', next));
    }
    if (json) return res.status(401).json({ error: 'login_required' });
    res.redirect(303, '/login?error=login_required');
  });

  router.post('/logout', async (req, res, next) => {
    // Nothing to protect when not logged in: just make sure nothing is left and go home.
    if (isAuthenticated(req)) {
      const err = await new Promise<unknown>((resolve) => csrf(req, res, resolve));
      if (err) return next(err);
    }
    await auth.logout(req);
    res.redirect(303, LOGGED_OUT);
  });

  router.get('/logout', async (req, res) => {
    // A GET that changes state: a link on another site must not be able to log people out.
    const site = firstString(req.headers['sec-fetch-site']);
    if (isAuthenticated(req) && (site === 'cross-site' || site === 'same-site')) {
      const current = await sessionUser(auth, req);
      return res
        .type('html')
        .send(logoutConfirmPage({ user: current, csrfToken: current ? csrfToken(req) : undefined }));
    }
    await auth.logout(req);
    res.redirect(302, LOGGED_OUT);
  });

  router.get('/reauth', authed, user, (req, res) => {
    const next = safeNext(firstString(req.query.next)) ?? undefined;
    const error = REAUTH_ERRORS[firstString(req.query.error) ?? ''];
    res.type('html').send(
      reauthPage({
        user: userOf(res),
        csrfToken: csrfToken(req),
        next,
        error,
        window: ctx.reauthWindow,
      }),
    );
  });

  // Confirm the password (auth.reauthenticate: counted by the failed-login limits, 429 past
  // them; the session id is renewed on success), then back to a same-site `next`.
  router.post('/reauth', authed, csrf, user, async (req, res) => {
    const next = nextOf(req);
    const confirmed = await auth.reauthenticate(req, bodyField(req, 'password'));
    if (!confirmed) {
      if (wantsJson(req))
        return res.status(400).json({ error: 'wrong_password', message: 'Your password is not correct.' });
      return res.redirect(303, withNext('/reauth?error=wrong_password', next));
    }
    if (wantsJson(req)) return res.json({ ok: true });
    res.redirect(
      303,
      !next || next === '/account/sessions' ? '/account/sessions?notice=reauthenticated' : next,
    );
  });

  return router;
}
