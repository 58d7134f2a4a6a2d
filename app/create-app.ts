import { createHmac } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import helmet from 'helmet';
import type pg from 'pg';
import type { Logger } from 'pino';
import { pinoHttp } from 'pino-http';
import {
  type Auth,
  AuthError,
  type AuthEvent,
  type AuthOptions,
  clientAddress,
  createAuth,
  csrfToken,
  DuplicateEmailError,
  isAuthenticated,
  isRecentlyAuthenticated,
  isTotpRequired,
  PasswordCheckUnavailableError,
  PasswordPolicyError,
  pwnedPasswords,
  rejectCrossSite,
  requireAuth,
  requireRecentAuth,
  requireRole,
  type SecurityNotice,
  safeRedirectPath,
  TooManyAttemptsError,
  userAgent,
  verifyCsrfToken,
  wantsJson,
} from '../src/auth/index.js';
import {
  type ConnectStore,
  type HasSessionStore,
  PgSessionError,
  type SessionEvent,
  type SessionMiddleware,
  StoreUnavailableError,
  session,
} from '../src/index.js';
import { PgStore } from '../src/stores/postgres/index.js';
import { type AppConfig, DEMO_PASSWORD_CONTEXT_WORDS } from './config.js';
import {
  accountPage,
  adminPage,
  dashboardPage,
  errorPage,
  homePage,
  loginPage,
  logoutConfirmPage,
  noticesPage,
  noticeText,
  REAUTH_ERRORS,
  reauthPage,
  type ServerRow,
  sessionsPage,
  type ViewUser,
} from './views.js';
import {
  MFA_ERRORS,
  MFA_NOTICES,
  mfaEnrollPage,
  mfaPage,
  mfaRecoveryCodesPage,
  totpLoginPage,
} from './views-mfa.js';

/** Options of {@link createApp}. */
export interface CreateAppOptions {
  pool: pg.Pool;
  config: AppConfig;
  logger: Logger;
  /** The session store. Default: a `PgStore` on `pool` (table `session`, created if missing). */
  store?: ConnectStore | HasSessionStore;
  /** Failed-login limits; default the library's policy (see docs/demo-app.md). */
  rateLimit?: AuthOptions['rateLimit'];
  /** argon2id cost; default OWASP's. */
  argon2?: AuthOptions['argon2'];
  /** Delivery of security notices; default: an "outbox" log line (the demo sends no email). */
  notify?: AuthOptions['notify'];
  /** Security-notice tunables (windows, hook time limit); default the library's. */
  notices?: AuthOptions['notices'];
  /** The TOTP second factor's options (tests inject its clock); the issuer defaults to the demo's name. */
  totp?: AuthOptions['totp'];
  /** The session clock, for tests. */
  now?: () => number;
}

/** The Express app, with what shutdown needs. */
export type DemoApp = express.Express & {
  readonly sessionMiddleware: SessionMiddleware;
  readonly auth: Auth;
  /** Write pending session activity, wait for background writes, stop the store's timers and listener (the pool stays open). */
  close(): Promise<void>;
};

export const LOGGED_OUT = '/?message=Logged%20out%20successfully';

/**
 * `next` if it is a path on this site, else null. Only `/path` forms are accepted: no scheme,
 * no `//host` (protocol-relative), no backslashes (browsers read `/\host` as `//host`), no
 * control characters or spaces, and none of those hidden behind percent-encoding.
 */
export function safeNext(value: unknown): string | null {
  // The check lives in the library, where requireAuth and requireRecentAuth build their `next`.
  return safeRedirectPath(value);
}

/** Messages the sessions page shows for `?notice=` (never reflected text). */
const SESSION_NOTICES: Record<string, string> = {
  revoked: 'Session revoked: that browser is logged out.',
  others: 'All your other sessions are logged out.',
  none: 'There were no other sessions.',
  reauthenticated: 'Password confirmed: you can revoke sessions now.',
};

/** Messages the account page shows for `?notice=` (never reflected text). */
const ACCOUNT_NOTICES: Record<string, string> = {
  password: 'Password changed.',
  'password-others': 'Password changed. Your other sessions are logged out.',
  email: 'Email changed.',
};

/**
 * A checkbox from a form or JSON: the last value wins (the account form sends a hidden `off`
 * before the box, so unticked still says so); absent means `fallback`.
 */
function checkbox(value: unknown, fallback: boolean): boolean {
  const v = Array.isArray(value) ? value.at(-1) : value;
  if (v === undefined || v === null) return fallback;
  if (typeof v === 'boolean') return v;
  return typeof v === 'string' && ['on', '1', 'true', 'yes'].includes(v.toLowerCase());
}

function firstString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
  return undefined;
}

function bodyField(req: Request, name: string): unknown {
  const body = req.body as Record<string, unknown> | undefined;
  return body && typeof body === 'object' ? body[name] : undefined;
}

/** pg and network errors meaning "the database is not there right now". */
function isDatabaseDown(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  if (!e) return false;
  if (typeof e.code === 'string') {
    if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EPIPE', 'EHOSTUNREACH'].includes(e.code))
      return true;
    // Class 08: connection exception; 57P: operator intervention (shutdown); 53: resources.
    if (/^(08|57P|53)/.test(e.code)) return true;
  }
  return /timeout exceeded when trying to connect|Connection terminated|connection timeout/i.test(
    e.message ?? '',
  );
}

/**
 * The demo app: the seed's routes done properly (docs/demo-app.md is the contract). Built on
 * pgsession's public API only, as an application would.
 */
export function createApp(options: CreateAppOptions): DemoApp {
  const { pool, config, logger } = options;
  const audit = logger.child({ component: 'audit' });
  const outbox = logger.child({ component: 'outbox' });

  const sessionEvent = (event: SessionEvent, req: IncomingMessage) => {
    if (event.type === 'touched' || event.type === 'touch-skipped' || event.type === 'saved') return;
    const r = req as Request;
    audit.info(
      {
        event: `session.${event.type}`,
        sid: event.key,
        ...('previousKey' in event ? { previousSid: event.previousKey } : {}),
        ...('reason' in event ? { reason: event.reason } : {}),
        userId: 'userId' in event ? event.userId : null,
        ip: clientAddress(r),
        ua: userAgent(r),
      },
      `session ${event.type}`,
    );
  };

  const store = options.store ?? new PgStore({ pool, tableName: 'session', createTableIfMissing: true });
  const sessionMiddleware = session({
    name: config.cookieName,
    secret: config.sessionSecrets,
    store,
    resave: false,
    saveUninitialized: false,
    rolling: true,
    idleTimeout: config.idleTimeout,
    absoluteTimeout: config.absoluteTimeout,
    cookie: { httpOnly: true, sameSite: 'lax', path: '/', secure: config.secureCookies },
    onEvent: sessionEvent,
    onWarning: (message) => logger.warn(message),
    onBackgroundError: (err) => logger.warn({ err }, 'background session write failed'),
    ...(options.now ? { now: options.now } : {}),
  });

  const authEvent = (event: AuthEvent) => {
    const level =
      event.type === 'login-failed' ||
      event.type === 'rate-limited' ||
      event.type === 'password-check-unavailable' ||
      event.type === 'totp-failed'
        ? 'warn'
        : 'info';
    // Session keys are logged as `sid` (hashed ids), like the session events.
    const { type, ...fields } = event;
    const { key, ...rest } = fields as typeof fields & { key?: string };
    audit[level](
      { event: `auth.${type}`, ...rest, ...(key !== undefined ? { sid: key } : {}) },
      `auth ${type}`,
    );
  };
  const auth = createAuth({
    pool,
    session: sessionMiddleware,
    rateLimit: options.rateLimit,
    argon2: options.argon2,
    // ASVS 6.2.11 / 6.2.12: the demo's documented context words; the breached-password check
    // only when PWNED_PASSWORDS_URL is set (off by default: it needs the internet).
    passwordPolicy: {
      contextWords: config.passwordContextWords ?? DEMO_PASSWORD_CONTEXT_WORDS,
      ...(config.pwnedPasswords ? { breached: pwnedPasswords(config.pwnedPasswords) } : {}),
    },
    // Device cookies (OWASP): the owner's browser keeps logging in while an attack spread over
    // many addresses has used up the account's failed-login budget. Keyed from the session
    // secrets (a label of its own), so rotating those rotates these.
    ...(config.trustedDeviceCookies
      ? {
          trustedDevices: {
            secret: config.sessionSecrets.map((s) =>
              createHmac('sha256', s).update('pgsession demo: device cookies').digest('base64url'),
            ),
          },
        }
      : {}),
    onEvent: authEvent,
    onError: (err) => logger.warn({ err }, 'auth background error'),
    // The demo sends no email: each security notice is written as an "outbox" log line, where a
    // real app would hand it to its mailer (an email change goes to the old and the new address).
    notify:
      options.notify ??
      ((notice) =>
        outbox.info(
          {
            event: 'outbox.security-notice',
            to: notice.to,
            kind: notice.kind,
            noticeId: notice.id,
            userId: notice.userId,
            text: Object.values(noticeText(notice)).join(' '),
          },
          'security notice (outbox: not sent, the demo has no mailer)',
        )),
    ...(options.notices !== undefined ? { notices: options.notices } : {}),
    // Optional TOTP (ASVS 6.3.3), per user from /account/mfa.
    totp: {
      issuer: 'pgsession demo',
      ...(config.totpEncryptionKey ? { encryptionKey: config.totpEncryptionKey } : {}),
      ...options.totp,
    },
  });

  const app = express() as DemoApp;
  app.set('trust proxy', config.trustProxy);
  app.disable('x-powered-by');

  app.use(
    helmet({
      // `no-referrer` (helmet's default) makes browsers send `Origin: null` on same-origin form
      // posts, which the cross-site check cannot tell from a sandboxed attacker frame.
      referrerPolicy: { policy: 'same-origin' },
      ...(config.production
        ? {}
        : {
            // Over plain HTTP in development, HSTS and upgrade-insecure-requests would send the
            // browser to an https:// that is not there.
            strictTransportSecurity: false,
            contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } },
          }),
    }),
  );
  app.use(
    pinoHttp({
      logger,
      // Never the cookie, never a header: method, path, status, time.
      serializers: {
        req: (req: { method: string; url: string; id: unknown }) => ({
          id: req.id,
          method: req.method,
          url: req.url.split('?')[0],
        }),
        res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      },
      customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : 'info'),
    }),
  );
  // Everything here is per-user and dynamic: no shared or browser cache may keep it.
  app.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });

  // Browsers ask for it on every first visit; the pages declare an empty icon, so this is only
  // for those that ask anyway: no content, no session, no 404 in the logs.
  app.get('/favicon.ico', (_req, res) => {
    res.setHeader('Cache-Control', 'public, max-age=86400');
    res.status(204).end();
  });

  // Before the session middleware: probes must not create sessions or depend on cookies.
  app.get('/healthz', async (_req, res) => {
    try {
      await pool.query({ text: 'SELECT 1', query_timeout: 2000 } as pg.QueryConfig);
      res.status(200).json({ status: 'ok' });
    } catch {
      res.status(503).setHeader('Retry-After', '5').json({ status: 'unavailable' });
    }
  });

  app.use(sessionMiddleware);
  app.use(express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 50 }));
  app.use(express.json({ limit: '16kb' }));
  // State-changing requests from other sites are refused everywhere, POST /login included.
  app.use(rejectCrossSite());

  const csrf = verifyCsrfToken();
  const authed = requireAuth();

  /** The logged-in user from the database; a session whose user is gone or disabled is ended. */
  async function viewUser(req: Request): Promise<(ViewUser & { id: number }) | null> {
    if (!isAuthenticated(req)) return null;
    const user = await auth.currentUser(req);
    if (!user) await auth.logout(req);
    return user;
  }

  app.get('/', async (req, res) => {
    const user = await viewUser(req);
    const message = firstString(req.query.message)?.slice(0, 200);
    res
      .type('html')
      .send(
        homePage({ user, ...(user ? { csrfToken: csrfToken(req) } : {}), ...(message ? { message } : {}) }),
      );
  });

  app.get('/login', (req, res) => {
    const next = safeNext(firstString(req.query.next));
    if (isAuthenticated(req)) return res.redirect(302, next ?? '/dashboard');
    res.type('html').send(loginPage({ error: firstString(req.query.error), next: next ?? undefined }));
  });

  /** After a complete login: this browser gets (or renews) its device cookie for the account. */
  const trustThisDevice = (req: Request, res: Response, email: string) => {
    // Like the session cookie: Secure in production, and never sent over plain HTTP there (a
    // device cookie seen in clear could be copied to escape the account's limit).
    if (!auth.devices || (config.secureCookies && !req.secure)) return;
    res.append('Set-Cookie', auth.devices.setCookieHeader(email, { secure: config.secureCookies }));
  };

  app.post('/login', async (req, res) => {
    const json = wantsJson(req);
    const next = safeNext(bodyField(req, 'next') ?? firstString(req.query.next));
    const user = await auth.login(req, bodyField(req, 'email'), bodyField(req, 'password'));
    // Right password, TOTP on: not logged in yet; the code step keeps the same-site `next`.
    if (isTotpRequired(user)) {
      if (json) return res.status(202).json({ status: 'totp-required', next: '/login/totp' });
      return res.redirect(303, `/login/totp${next ? `?next=${encodeURIComponent(next)}` : ''}`);
    }
    if (!user) {
      if (json) return res.status(401).json({ error: 'invalid_credentials' });
      const query = next ? `&next=${encodeURIComponent(next)}` : '';
      return res.redirect(303, `/login?error=invalid_credentials${query}`);
    }
    trustThisDevice(req, res, user.email);
    if (json) return res.status(200).json({ user });
    res.redirect(303, next ?? '/dashboard');
  });

  // The login's second step (TOTP on): only for a session waiting for its code, which holds a
  // CSRF token of its own; anything else starts again at the password.
  app.get('/login/totp', (req, res) => {
    const next = safeNext(firstString(req.query.next)) ?? undefined;
    if (isAuthenticated(req)) return res.redirect(302, next ?? '/dashboard');
    if (!req.session.totpPending) return res.redirect(302, '/login?error=login_required');
    // Only known error keys show anything (the page maps them to fixed text).
    const error = firstString(req.query.error);
    res.type('html').send(totpLoginPage({ csrfToken: csrfToken(req), next, error }));
  });

  app.post('/login/totp', csrf, async (req, res) => {
    const json = wantsJson(req);
    const next = safeNext(bodyField(req, 'next') ?? firstString(req.query.next));
    const result = await auth.completeTotp(req, bodyField(req, 'code'));
    if (result.ok) {
      trustThisDevice(req, res, result.user.email);
      if (json) return res.status(200).json({ user: result.user });
      return res.redirect(303, next ?? '/dashboard');
    }
    if (result.reason === 'wrong-code') {
      if (json) return res.status(401).json({ error: 'wrong_code' });
      const query = next ? `&next=${encodeURIComponent(next)}` : '';
      return res.redirect(303, `/login/totp?error=wrong_code${query}`);
    }
    if (json) return res.status(401).json({ error: 'login_required' });
    res.redirect(303, '/login?error=login_required');
  });

  app.get('/dashboard', authed, async (req, res) => {
    let user: Awaited<ReturnType<typeof viewUser>>;
    let servers: ServerRow[];
    let notices: SecurityNotice[];
    let unreadNotices: number;
    try {
      user = await viewUser(req);
      if (!user) return res.redirect(302, '/login?error=login_required');
      const { rows } = await pool.query<{ id: string; name: string; created_at: Date }>(
        'SELECT id, name, created_at FROM servers WHERE user_id = $1 ORDER BY id',
        [user.id],
      );
      servers = rows.map((r) => ({ id: Number(r.id), name: r.name, createdAt: r.created_at }));
      // Unread security notices first thing on the dashboard (ASVS 6.3.5, 6.3.7).
      [notices, unreadNotices] = await Promise.all([
        auth.notices.list(user.id, { unreadOnly: true, limit: 5 }),
        auth.notices.countUnread(user.id),
      ]);
    } catch (err) {
      // Database outage, session still served (from the cache, read-only; docs/reliability.md):
      // a read-only page from what the session knows, instead of a 503.
      if (!isDatabaseDown(err) || !isAuthenticated(req)) throw err;
      const role = req.session.userRole === 'admin' ? 'admin' : 'user';
      const fallback = { email: `user #${req.session.userId}`, role } as const;
      return res
        .type('html')
        .send(
          dashboardPage({ user: fallback, servers: [], serversUnavailable: true, csrfToken: csrfToken(req) }),
        );
    }
    res
      .type('html')
      .send(dashboardPage({ user, servers, csrfToken: csrfToken(req), notices, unreadNotices }));
  });

  app.post('/delete-server', authed, csrf, async (req, res) => {
    const raw = bodyField(req, 'serverId');
    const serverId =
      typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d{1,15}$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(serverId) || serverId <= 0) {
      throw new AuthError('BAD_REQUEST', 'serverId must be a positive integer', 400);
    }
    const result = await pool.query('DELETE FROM servers WHERE id = $1 AND user_id = $2', [
      serverId,
      req.session.userId,
    ]);
    if (wantsJson(req)) return res.status(200).json({ deleted: result.rowCount ?? 0 });
    res.redirect(303, '/dashboard');
  });

  app.get('/api/me', authed, async (req, res) => {
    const user = await viewUser(req);
    if (!user) return res.status(401).json({ error: 'unauthorized', message: 'Login required' });
    res.json({ id: user.id, email: user.email, role: user.role });
  });

  app.post('/logout', async (req, res, next) => {
    // Nothing to protect when not logged in: just make sure nothing is left and go home.
    if (isAuthenticated(req)) {
      const err = await new Promise<unknown>((resolve) => csrf(req, res, resolve));
      if (err) return next(err);
    }
    await auth.logout(req);
    res.redirect(303, LOGGED_OUT);
  });

  app.get('/logout', async (req, res) => {
    // A GET that changes state: a link on another site must not be able to log people out.
    const site = firstString(req.headers['sec-fetch-site']);
    if (isAuthenticated(req) && (site === 'cross-site' || site === 'same-site')) {
      const user = await viewUser(req);
      return res.type('html').send(logoutConfirmPage({ user, csrfToken: user ? csrfToken(req) : undefined }));
    }
    await auth.logout(req);
    res.redirect(302, LOGGED_OUT);
  });

  // Step-up (ASVS 7.5.2): listing needs a login; revoking needs the password from the last
  // REAUTH_WINDOW (a fresh login counts). Refused HTML forms go back to the sessions page, which
  // then shows why and the "confirm your password" form; JSON clients get 401
  // {"error":"reauthentication_required"}. The guard runs before the handler: nothing changes.
  const reauthWindow = config.reauthWindow ?? 5 * 60_000;
  const recentAuth = requireRecentAuth({ within: reauthWindow, reauthPath: '/account/sessions' });

  app.get('/account/sessions', authed, async (req, res) => {
    const user = await viewUser(req);
    if (!user) return res.redirect(302, '/login?error=login_required');
    const sessions = await auth.sessions.list(req);
    const notice = SESSION_NOTICES[firstString(req.query.notice) ?? ''];
    const error = REAUTH_ERRORS[firstString(req.query.error) ?? ''];
    res.type('html').send(
      sessionsPage({
        user,
        sessions,
        csrfToken: csrfToken(req),
        message: notice,
        error,
        reauth: { recent: isRecentlyAuthenticated(req, reauthWindow), window: reauthWindow },
      }),
    );
  });

  app.get('/reauth', authed, async (req, res) => {
    const user = await viewUser(req);
    if (!user) return res.redirect(302, '/login?error=login_required');
    const next = safeNext(firstString(req.query.next)) ?? undefined;
    const error = REAUTH_ERRORS[firstString(req.query.error) ?? ''];
    res.type('html').send(reauthPage({ user, csrfToken: csrfToken(req), next, error, window: reauthWindow }));
  });

  // Confirm the password (auth.reauthenticate: counted by the failed-login limits, 429 past
  // them; the session id is renewed on success), then back to a same-site `next`.
  app.post('/reauth', authed, csrf, async (req, res) => {
    if (!(await viewUser(req))) throw new AuthError('PGSESSION_UNAUTHORIZED', 'Login required', 401);
    const next = safeNext(bodyField(req, 'next') ?? firstString(req.query.next));
    const user = await auth.reauthenticate(req, bodyField(req, 'password'));
    if (!user) {
      if (wantsJson(req))
        return res.status(400).json({ error: 'wrong_password', message: 'Your password is not correct.' });
      const query = next ? `&next=${encodeURIComponent(next)}` : '';
      return res.redirect(303, `/reauth?error=wrong_password${query}`);
    }
    if (wantsJson(req)) return res.json({ ok: true });
    res.redirect(
      303,
      !next || next === '/account/sessions' ? '/account/sessions?notice=reauthenticated' : next,
    );
  });

  app.post('/account/sessions/revoke-others', authed, csrf, recentAuth, async (req, res) => {
    const count = await auth.revokeOtherSessions(req);
    if (wantsJson(req)) return res.json({ revoked: count });
    res.redirect(303, `/account/sessions?notice=${count > 0 ? 'others' : 'none'}`);
  });

  app.post(
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

  app.get('/account', authed, async (req, res) => {
    const user = await viewUser(req);
    if (!user) return res.redirect(302, '/login?error=login_required');
    const notice = ACCOUNT_NOTICES[firstString(req.query.notice) ?? ''];
    res.type('html').send(accountPage({ user, csrfToken: csrfToken(req), message: notice }));
  });

  // Credential changes: the current password is required (and counted by the login limits).
  app.post('/account/password', authed, csrf, async (req, res) => {
    const user = await viewUser(req);
    if (!user) throw new AuthError('PGSESSION_UNAUTHORIZED', 'Login required', 401);
    const fail = (status: number, error: string, message: string) => {
      if (wantsJson(req)) return res.status(status).json({ error, message });
      res
        .status(status)
        .type('html')
        .send(accountPage({ user, csrfToken: csrfToken(req), error: message }));
    };
    const next = bodyField(req, 'newPassword');
    if (typeof next !== 'string' || next.length === 0)
      return fail(400, 'password_policy', 'Choose a new password.');
    const logoutOthers = checkbox(bodyField(req, 'logoutOthers'), true);
    let result: Awaited<ReturnType<Auth['changePassword']>>;
    try {
      result = await auth.changePassword(req, bodyField(req, 'currentPassword'), next, {
        revokeOthers: logoutOthers,
      });
    } catch (err) {
      if (err instanceof PasswordPolicyError) return fail(400, 'password_policy', err.message);
      if (err instanceof PasswordCheckUnavailableError) {
        res.setHeader('Retry-After', String(err.retryAfter));
        return fail(503, 'password_check_unavailable', err.message);
      }
      throw err;
    }
    if (!result.ok) return fail(400, 'wrong_password', 'Your current password is not correct.');
    if (wantsJson(req)) return res.json({ ok: true, revoked: result.revoked });
    res.redirect(303, `/account?notice=${logoutOthers ? 'password-others' : 'password'}`);
  });

  app.post('/account/email', authed, csrf, async (req, res) => {
    const user = await viewUser(req);
    if (!user) throw new AuthError('PGSESSION_UNAUTHORIZED', 'Login required', 401);
    const fail = (status: number, error: string, message: string) => {
      if (wantsJson(req)) return res.status(status).json({ error, message });
      res
        .status(status)
        .type('html')
        .send(accountPage({ user, csrfToken: csrfToken(req), error: message }));
    };
    let result: Awaited<ReturnType<Auth['changeEmail']>>;
    try {
      result = await auth.changeEmail(req, bodyField(req, 'currentPassword'), bodyField(req, 'email'));
    } catch (err) {
      if (err instanceof DuplicateEmailError)
        return fail(409, 'email_taken', 'That email address belongs to another account.');
      if (err instanceof AuthError && err.status === 400)
        return fail(400, 'invalid_email', 'Enter a valid email address.');
      throw err;
    }
    if (!result.ok) return fail(400, 'wrong_password', 'Your current password is not correct.');
    if (wantsJson(req)) return res.json({ ok: true, email: result.email });
    res.redirect(303, '/account?notice=email');
  });

  // Two-factor authentication (TOTP, ASVS 6.3.3). Setting it up needs a recent password (a
  // stolen session must not bind the account to the thief's phone); turning it off needs the
  // password and a code. The secret is shown once, in the POST's answer (never in a URL).
  const recentForMfa = requireRecentAuth({ within: reauthWindow, reauthPath: '/reauth' });

  app.get('/account/mfa', authed, async (req, res) => {
    const user = await viewUser(req);
    if (!user) return res.redirect(302, '/login?error=login_required');
    const status = await auth.totp.status(user.id);
    if (wantsJson(req)) return res.json(status);
    res.type('html').send(
      mfaPage({
        user,
        csrfToken: csrfToken(req),
        status,
        message: MFA_NOTICES[firstString(req.query.notice) ?? ''],
        error: MFA_ERRORS[firstString(req.query.error) ?? ''],
      }),
    );
  });

  app.post('/account/mfa/start', authed, csrf, recentForMfa, async (req, res) => {
    const user = await viewUser(req);
    if (!user) throw new AuthError('PGSESSION_UNAUTHORIZED', 'Login required', 401);
    let enrollment: Awaited<ReturnType<Auth['startTotpEnrollment']>>;
    try {
      enrollment = await auth.startTotpEnrollment(user.id);
    } catch (err) {
      if (!(err instanceof AuthError) || err.status !== 409) throw err;
      if (wantsJson(req)) return res.status(409).json({ error: 'already_enabled' });
      return res.redirect(303, '/account/mfa?error=already_enabled');
    }
    if (wantsJson(req)) return res.json(enrollment);
    res.type('html').send(mfaEnrollPage({ user, csrfToken: csrfToken(req), enrollment }));
  });

  app.post('/account/mfa/confirm', authed, csrf, async (req, res) => {
    const user = await viewUser(req);
    if (!user) throw new AuthError('PGSESSION_UNAUTHORIZED', 'Login required', 401);
    const result = await auth.confirmTotp(user.id, bodyField(req, 'code'));
    if (!result.ok) {
      const error = result.reason === 'wrong-code' ? 'wrong_code' : 'no_enrollment';
      if (wantsJson(req)) return res.status(400).json({ error });
      // The secret is not shown again: a wrong code starts the setup over.
      return res.redirect(303, `/account/mfa?error=${error}`);
    }
    if (wantsJson(req)) return res.json({ ok: true, recoveryCodes: result.recoveryCodes });
    res
      .type('html')
      .send(mfaRecoveryCodesPage({ user, csrfToken: csrfToken(req), codes: result.recoveryCodes }));
  });

  app.post('/account/mfa/disable', authed, csrf, async (req, res) => {
    const user = await viewUser(req);
    if (!user) throw new AuthError('PGSESSION_UNAUTHORIZED', 'Login required', 401);
    const result = await auth.disableTotp(req, bodyField(req, 'currentPassword'), bodyField(req, 'code'));
    if (!result.ok) {
      const error = result.reason === 'wrong-password' ? 'wrong_password' : 'wrong_code';
      if (wantsJson(req)) return res.status(400).json({ error });
      return res.redirect(303, `/account/mfa?error=${error}`);
    }
    if (wantsJson(req)) return res.json({ ok: true });
    res.redirect(303, '/account/mfa?notice=disabled');
  });

  // Security notices: the list (newest first), and marking them read (one, or all).
  app.get('/account/notices', authed, async (req, res) => {
    const user = await viewUser(req);
    if (!user) return res.redirect(302, '/login?error=login_required');
    const notices = await auth.notices.list(user.id, { limit: 100 });
    if (wantsJson(req)) return res.json({ notices });
    const message = firstString(req.query.notice) === 'read' ? 'Marked as read.' : undefined;
    res.type('html').send(noticesPage({ user, notices, csrfToken: csrfToken(req), message }));
  });

  app.post('/account/notices/read', authed, csrf, async (req, res) => {
    const user = await viewUser(req);
    if (!user) throw new AuthError('PGSESSION_UNAUTHORIZED', 'Login required', 401);
    const raw = bodyField(req, 'id');
    let ids: number[] | undefined;
    if (raw !== undefined && raw !== '') {
      const id =
        typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d{1,15}$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(id) || id <= 0)
        throw new AuthError('BAD_REQUEST', 'id must be a positive integer', 400);
      ids = [id];
    }
    // Only the user's own notices can change: another user's id marks nothing.
    const marked = await auth.notices.markRead(user.id, ids);
    if (wantsJson(req)) return res.json({ marked });
    res.redirect(303, '/account/notices?notice=read');
  });

  const adminOnly = requireRole('admin');
  app.get('/admin', adminOnly, async (req, res) => {
    const user = await viewUser(req);
    if (!user) return res.redirect(302, '/login?error=login_required');
    const users = await auth.users.list();
    res.type('html').send(adminPage({ user, users, csrfToken: csrfToken(req) }));
  });

  app.post('/admin/users/:id/revoke-sessions', adminOnly, csrf, async (req, res, next) => {
    const id = Number(req.params.id);
    if (!Number.isSafeInteger(id) || id <= 0 || !(await auth.users.findById(id))) return next();
    const count = await auth.revokeAllSessions(id);
    if (wantsJson(req)) return res.json({ revoked: count });
    res.redirect(303, '/admin');
  });

  // A real 404, in the format the client asked for.
  app.use((req: Request, res: Response) => {
    res.status(404);
    if (wantsJson(req)) return res.json({ error: 'not_found' });
    res
      .type('html')
      .send(errorPage({ status: 404, title: 'Not found', message: 'There is no page at this address.' }));
  });

  // Errors: a status and a message safe to show; never a stack trace or an internal message.
  app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    let status = 500;
    let code = 'internal_error';
    let message = 'Something went wrong on our side. Please try again.';
    let title = 'Server error';
    if (err instanceof StoreUnavailableError || isDatabaseDown(err)) {
      status = 503;
      code = 'unavailable';
      title = 'Temporarily unavailable';
      message = 'The service is temporarily unavailable. Please try again in a moment.';
      res.setHeader('Retry-After', String(err instanceof StoreUnavailableError ? err.retryAfter : 5));
    } else if (err instanceof TooManyAttemptsError) {
      status = 429;
      code = 'rate_limited';
      title = 'Too many attempts';
      message = `Too many failed login attempts. Try again in ${Math.ceil(err.retryAfter / 60)} minute(s).`;
      res.setHeader('Retry-After', String(err.retryAfter));
    } else if (err instanceof AuthError) {
      status = err.status;
      code = err.code === 'BAD_REQUEST' ? 'bad_request' : err.code.replace(/^PGSESSION_/, '').toLowerCase();
      title = status === 401 ? 'Login required' : status === 403 ? 'Forbidden' : 'Bad request';
      message = err.message;
    } else if (err instanceof PgSessionError) {
      // Other library errors (serialisation, state): programming errors, 500.
    } else {
      const e = err as { status?: unknown; statusCode?: unknown; type?: unknown };
      const s = Number(e?.status ?? e?.statusCode);
      // body-parser and friends: 400 (malformed), 413 (too large), 415 …
      if (Number.isInteger(s) && s >= 400 && s < 500) {
        status = s;
        code = typeof e.type === 'string' ? e.type : 'bad_request';
        title = 'Bad request';
        message = 'The request could not be understood.';
      }
    }
    if (status >= 500) logger.error({ err, url: req.originalUrl.split('?')[0] }, 'request failed');
    else if (status === 403)
      audit.warn(
        { event: 'request.forbidden', code, ip: clientAddress(req), ua: userAgent(req), url: req.path },
        'forbidden',
      );
    res.status(status);
    if (wantsJson(req)) return res.json({ error: code, message });
    res.type('html').send(errorPage({ status, title, message }));
  });

  Object.defineProperty(app, 'sessionMiddleware', { value: sessionMiddleware });
  Object.defineProperty(app, 'auth', { value: auth });
  Object.defineProperty(app, 'close', {
    value: async () => {
      // Touches in flight, and the activity touch throttling deferred (last_active_at).
      await sessionMiddleware.flush({ touches: true });
      // Notices being recorded after failed logins, and hook calls (each bounded by its time limit).
      await auth.notices.settled();
      const s = store as { close?: () => Promise<void> | void };
      if (!options.store && typeof s.close === 'function') await s.close();
    },
  });
  return app;
}
