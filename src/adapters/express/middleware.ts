/**
 * The express-session–compatible middleware: same options, same `req.session` API, same signed
 * cookie, and the same `session` table through `PgStore`; plus commit-before-response, hashed
 * ids at rest, server-side idle/absolute timeouts and throttled touches.
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import type { CookieOptions } from '../../core/cookie.js';
import type { ParsedCookies } from '../../core/engine.js';
import { ConfigError } from '../../core/errors.js';
import { warnOnce } from '../../core/options.js';
import type { RequestSession } from '../../core/request-session.js';
import { normalizeSecrets } from '../../core/secrets.js';
import type { Session, SessionData, SessionHost } from '../../core/session.js';
import type { Secret } from '../../core/signature.js';
import type { HasSessionStore } from '../../core/store.js';
import type { ConnectStore } from '../../stores/connect-store.js';
import {
  attachHandle,
  isSecureRequest,
  nodeDeviceRequest,
  pathnameOf,
  resolveSessionOptions,
  type SessionHandle,
  type SessionOptions,
  SKIPPED_HEADER,
  sendDeviceResponse,
} from '../http.js';
import { toDictionaryMode } from './dictionary-mode.js';
import { holdResponse } from './response-hold.js';

export type { SessionOptions } from '../http.js';

declare global {
  namespace Express {
    // `session` comes from the interface below, typed by express-session's declarations when
    // they are in the program; `sessionStore` from Node's IncomingMessage (see there).
    interface Request extends PgsessionRequest {
      sessionID: string;
    }
  }
}

/**
 * Whether express-session's declarations (`@types/express-session`, which
 * `@types/connect-pg-simple` pulls in) are in the program: they give Express's Request a
 * `sessionStore`, which pgsession declares elsewhere. Only the member's presence is tested, so
 * the types below can depend on it without referring to themselves.
 */
type WithExpressSessionTypes = Express.Request extends { sessionStore: unknown } ? true : false;

/** The type express-session's declarations give `req[K]`. */
type ExpressSessionOwn<K extends 'session' | 'sessionStore'> = Express.Request extends { [P in K]: infer T }
  ? T
  : never;

/**
 * express-session's `SessionData` (with the app's augmentations) when its declarations are in the
 * program — read off its store's `set`, the one place it names the interface — else nothing.
 */
type ExpressSessionDataBase = WithExpressSessionTypes extends true
  ? ExpressSessionOwn<'sessionStore'> extends {
      set(sid: string, session: infer D, ...rest: never[]): unknown;
    }
    ? D
    : {}
  : {};

// pgsession's SessionData takes in express-session's, so `session.SessionData` (and Fastify's and
// Hono's `session`) see what an app declared with `declare module 'express-session'`.
declare module '../../core/session.js' {
  interface SessionData extends ExpressSessionDataBase {}
}

/**
 * `req.session`: express-session's own type when its declarations are in the program (so the two
 * declarations cannot clash, and an app's `declare module 'express-session' { interface
 * SessionData { … } }` keeps typing `req.session` after the switch), else pgsession's.
 */
interface PgsessionRequest {
  session: WithExpressSessionTypes extends true
    ? ExpressSessionOwn<'session'>
    : Session & Partial<SessionData>;
}

declare module 'http' {
  interface IncomingMessage {
    /**
     * On Node's request, which Express's extends, because on Express's Request it would hide
     * whether express-session's declarations are there.
     */
    sessionStore: WithExpressSessionTypes extends true
      ? ExpressSessionOwn<'sessionStore'>
      : ConnectStore | HasSessionStore;
  }
}

type Req = IncomingMessage &
  SessionHost & {
    originalUrl?: string;
    secure?: boolean;
    /** cookie-parser's secret, read when the `secret` option is absent (as express-session). */
    secret?: unknown;
    /** cookie-parser's results, read when the Cookie header has no valid session cookie. */
    cookies?: Record<string, unknown>;
    signedCookies?: Record<string, unknown>;
  };
type Next = (err?: unknown) => void;

/** The middleware function, with the engine exposed for tests, tooling and shutdown (`flush`). */
export interface SessionMiddleware extends SessionHandle {
  (req: IncomingMessage, res: ServerResponse, next: Next): void;
}

/**
 * express-session–compatible middleware. Same options, same `req.session` API, same signed
 * cookie, and the same `session` table through `PgStore`; plus commit-before-response, hashed
 * ids at rest, server-side idle/absolute timeouts and throttled touches.
 */
export function session(options: SessionOptions): SessionMiddleware {
  const { engine, store, sessionStore, proxy, production } = resolveSessionOptions(options, {
    secretPerRequest: true,
  });
  const { name } = engine.options;
  const deviceBound = engine.options.deviceBound !== undefined;
  const secretPerRequest = engine.options.secrets.length === 0;
  const requestSecrets = secretPerRequest ? requestSecretResolver(options, production) : undefined;
  let storeReady = true;
  const emitter = store as Partial<NodeJS.EventEmitter>;
  if (typeof emitter.on === 'function') {
    // express-session semantics: a store that says it is disconnected is bypassed, not awaited.
    emitter.on('disconnect', () => {
      storeReady = false;
    });
    emitter.on('connect', () => {
      storeReady = true;
    });
  }
  const middleware = (req: Req, res: ServerResponse, next: Next) => {
    if (req.session) return next();
    if (!storeReady) return next();
    let cookie: CookieOptions;
    let secrets: readonly Secret[] | undefined;
    let pathname: string;
    try {
      cookie = engine.cookieOptionsFor(req);
      pathname = pathnameOf(req.originalUrl ?? req.url);
      if (!pathname.startsWith(cookie.path ?? '/')) return next();
      secrets = requestSecrets?.(req.secret);
    } catch (err) {
      return next(err);
    }
    // Before the first property this adds: see dictionary-mode.ts (this is most of the hot path's
    // cost under Express, and makes Express's own additions after it cheap too).
    toDictionaryMode(req, IncomingMessage.prototype, 'httpVersion');
    toDictionaryMode(res, ServerResponse.prototype, 'sendDate');
    req.sessionStore = store;
    // Without `proxy`, Express's own `req.secure` (its `trust proxy` setting) decides.
    const secure = isSecureRequest(req, proxy, expressSecure);
    if (deviceBound) {
      const endpoint = engine.deviceEndpoint(pathname);
      if (endpoint) {
        engine
          .handleDeviceEndpoint(endpoint, req, nodeDeviceRequest(req, secure))
          .then((answer) => sendDeviceResponse(res, answer), next);
        return;
      }
    }
    let loaded: RequestSession | Promise<RequestSession>;
    try {
      loaded = engine.attach(req, {
        cookieHeader: req.headers.cookie,
        secure,
        cookie,
        secrets,
        parsedCookies: parsedCookiesOf(req, name),
        deviceSkipped: deviceBound ? (req.headers[SKIPPED_HEADER] as string | undefined) : undefined,
      });
    } catch (err) {
      return next(err);
    }
    // A cached session is attached at once: the app's next handler runs in this same call.
    if (!(loaded instanceof Promise)) return attached(loaded, res, next);
    loaded.then(
      (ctx) => attached(ctx, res, next),
      (err) => next(err),
    );
  };
  return attachHandle(middleware, engine, sessionStore) as SessionMiddleware;
}

/** The request has its session: hold the response for the commit, and go on. */
function attached(ctx: RequestSession, res: ServerResponse, next: Next): void {
  holdResponse(res, ctx, next);
  next();
}

/** Express's own `req.secure` (its `trust proxy` setting). */
const expressSecure = (req: Req): boolean => req.secure === true;

/**
 * Without a `secret` option, express-session signs with cookie-parser's `req.secret`. The same
 * rules as for the option apply (in production a weak one is refused), checked once per value.
 */
function requestSecretResolver(
  options: SessionOptions,
  production: boolean,
): (secret: unknown) => readonly Secret[] {
  let last: { secret: unknown; secrets: readonly Secret[] } | undefined;
  return (secret) => {
    if (last && last.secret === secret) return last.secrets;
    if (secret === undefined || secret === null || secret === '') {
      throw new ConfigError(
        'secret option required for sessions: pass secret to session(), or put cookie-parser with a secret before it',
      );
    }
    const secrets = normalizeSecrets(secret, production, (m) =>
      warnOnce(options, m, 'PGSESSION_WEAK_SECRET'),
    );
    last = { secret, secrets };
    return secrets;
  };
}

/** The session cookie as cookie-parser parsed it (express-session's fall-back), if it ran. */
function parsedCookiesOf(req: Req, name: string): ParsedCookies | undefined {
  const { signedCookies, cookies } = req;
  if (!signedCookies && !cookies) return undefined;
  return { signedId: signedCookies?.[name], raw: cookies?.[name] };
}
