/**
 * The demo app: the seed's routes done properly (docs/demo-app.md is the contract), built on
 * pgsession's public API only, as an application would. This file wires it together, top to
 * bottom: the session middleware, auth, the middleware chain, the routes (one file per area in
 * `routes/`), and the 404 and error handlers.
 */
import { createHmac } from 'node:crypto';
import express from 'express';
import helmet from 'helmet';
import type pg from 'pg';
import type { Logger } from 'pino';
import {
  type Auth,
  type AuthOptions,
  createAuth,
  pwnedPasswords,
  rejectCrossSite,
} from '../src/auth/index.js';
import { type ConnectStore, type HasSessionStore, type SessionMiddleware, session } from '../src/index.js';
import { createSessionMetrics } from '../src/metrics/index.js';
import { PgStore } from '../src/stores/postgres/index.js';
import { type AppConfig, DEMO_PASSWORD_CONTEXT_WORDS } from './config.js';
import { errorHandler, notFound } from './errors.js';
import { accessLog, authAudit, outbox, sessionAudit } from './logging.js';
import { accountRoutes } from './routes/account.js';
import { adminRoutes } from './routes/admin.js';
import { authRoutes } from './routes/auth.js';
import { routeContext } from './routes/context.js';
import { mfaRoutes } from './routes/mfa.js';
import { serverRoutes } from './routes/servers.js';
import { sessionRoutes } from './routes/sessions.js';

export { LOGGED_OUT, safeNext } from './http.js';

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

export function createApp(options: CreateAppOptions): DemoApp {
  const { pool, config, logger } = options;
  const audit = logger.child({ component: 'audit' });

  // METRICS=on: Prometheus metrics of the sessions, the cache and logins (GET /metrics below).
  const metrics = config.metrics ? createSessionMetrics() : undefined;
  const ownStore =
    options.store === undefined
      ? new PgStore({
          pool,
          tableName: 'session',
          createTableIfMissing: true,
          // The cache's LISTEN connection, when DATABASE_URL goes through a transaction-mode pooler.
          ...(config.database?.directUrl ? { listenConnectionString: config.database.directUrl } : {}),
        })
      : undefined;
  const store = options.store ?? (metrics && ownStore ? metrics.instrumentStore(ownStore) : ownStore!);
  if (metrics) metrics.observeStore(store as HasSessionStore);
  const onSessionEvent = sessionAudit(audit);
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
    // Device-bound sessions (DBSC): browsers that support it bind each login to a key on the
    // device; in `report` mode a session cookie used without its bound cookie is logged.
    ...((config.deviceBound ?? 'report') === 'off'
      ? {}
      : { deviceBound: { enforce: config.deviceBound ?? 'report' } }),
    onEvent: metrics
      ? (event, req) => {
          metrics.onEvent(event);
          onSessionEvent(event, req);
        }
      : onSessionEvent,
    // loadConfig already printed the weak-secret warning, if any: once is enough.
    onWarning: (message) => {
      if (message !== config.secretWarning) logger.warn(message);
    },
    onBackgroundError: (err) => logger.warn({ err }, 'background session write failed'),
    ...(options.now ? { now: options.now } : {}),
  });

  const onAuthEvent = authAudit(audit);
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
    onEvent: metrics
      ? (event) => {
          if (event.type === 'login') metrics.recordLogin('succeeded');
          else if (event.type === 'login-failed') metrics.recordLogin('failed');
          else if (event.type === 'rate-limited') metrics.recordLogin('rate-limited');
          onAuthEvent(event);
        }
      : onAuthEvent,
    onError: (err) => logger.warn({ err }, 'auth background error'),
    notify: options.notify ?? outbox(logger.child({ component: 'outbox' })),
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
  app.use(accessLog(logger));
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

  // Off unless METRICS=on: the page is unauthenticated and tells anyone who can reach it how
  // many people log in and fail to (docs/demo-app.md). Before the session middleware: a scraper
  // gets no session.
  if (metrics) {
    app.get('/metrics', async (_req, res) => {
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    });
  }

  app.use(sessionMiddleware);
  app.use(express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 50 }));
  app.use(express.json({ limit: '16kb' }));
  // State-changing requests from other sites are refused everywhere, POST /login included.
  app.use(rejectCrossSite());

  const ctx = routeContext(auth, pool, config);
  app.use(serverRoutes(ctx));
  app.use(authRoutes(ctx));
  app.use(sessionRoutes(ctx));
  app.use(accountRoutes(ctx));
  app.use(mfaRoutes(ctx));
  app.use(adminRoutes(ctx));

  app.use(notFound(auth));
  app.use(errorHandler(auth, logger, audit));

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
