/**
 * pgsession for Koa 2/3: the same engine, signed cookie and `session` table as the Express
 * middleware, so one store (and one cookie) can serve Express and Koa apps alike.
 *
 * ```ts
 * import Koa from 'koa';
 * import { PgStore } from 'pgsession';
 * import { pgsessionKoa } from 'pgsession/koa';
 *
 * const app = new Koa();
 * app.use(pgsessionKoa({ secret: process.env.SESSION_SECRET!, store: new PgStore({ pool }) }));
 * app.use(async (ctx) => {
 *   ctx.session.views = (ctx.session.views ?? 0) + 1;
 *   ctx.body = { views: ctx.session.views };
 * });
 * ```
 *
 * @module
 */
import type { IncomingMessage } from 'node:http';
import type { Context, Middleware } from 'koa';
import { ConfigError } from '../../core/errors.js';
import type { Session, SessionData, SessionHost } from '../../core/session.js';
import {
  attachHandle,
  forHost,
  isSecureRequest,
  nodeDeviceRequest,
  pathnameOf,
  REGISTRATION_HEADER,
  resolveSessionOptions,
  type SessionHandle,
  type SessionOptions,
  SKIPPED_HEADER,
  sessionHeaders,
} from '../http.js';

/**
 * Options of {@link pgsessionKoa}: the Express middleware's. Callbacks that take a request
 * (`genid`, `onEvent`, a `cookie` function) receive Koa's `Context`. `proxy` undefined follows
 * Koa's own `app.proxy` (through `ctx.secure`).
 */
export type PgSessionKoaOptions = SessionOptions<Context>;

/** The middleware, with the engine exposed for tests and shutdown (`flush({ touches: true })`). */
export interface PgSessionKoaMiddleware extends Middleware, SessionHandle {}

declare module 'koa' {
  interface DefaultContext {
    /**
     * The request's session (express-session's API: data as properties, plus `regenerate`,
     * `destroy`, `save`, `reload`, `touch`). After `regenerate()` it is the new session; after
     * `destroy()` undefined; assign `null` to unset it. Undefined outside `cookie.path`.
     */
    session: Session & Partial<SessionData>;
    /** The session id (never logged or stored by pgsession; the store sees its SHA-256). */
    readonly sessionID: string;
  }
}

/** The session hangs off Node's request, as in Express; `ctx.session` is a view of it. */
type Host = IncomingMessage & SessionHost & { koaContext?: Context };

/**
 * The Koa middleware: `app.use(pgsessionKoa(options))`. Loads the session before `next()`,
 * commits it after (Koa writes the response only once every middleware has returned, so the
 * store has it before any header leaves), then sets `Set-Cookie` and `Cache-Control: no-store`
 * when the cookie is (re)sent. A store failure is thrown with `status` 503 and a `Retry-After`
 * header (Koa's error handler answers it), never an empty session.
 */
export function pgsessionKoa(options: PgSessionKoaOptions): PgSessionKoaMiddleware {
  if (!options || typeof options !== 'object') {
    throw new ConfigError('pgsessionKoa(options): options object required');
  }
  // The engine hands callbacks its host, the Node request: the app's callbacks get the context.
  const contextOf = (host: Host) => host.koaContext as Context;
  const { engine, sessionStore, proxy, cookiePath } = resolveSessionOptions<Host>({
    ...forHost(options, contextOf),
    proxy: options.proxy,
  });

  const deviceBound = engine.options.deviceBound !== undefined;
  const middleware: Middleware = async (ctx, next) => {
    installAccessors(ctx);
    const host = ctx.req as Host;
    const pathname = pathnameOf(ctx.url);
    if (host.session || !pathname.startsWith(cookiePath)) return next();
    host.koaContext = ctx;
    // Without `proxy`, Koa's own `ctx.secure` (its `app.proxy` setting) decides.
    const secure = isSecureRequest(ctx.req, proxy, () => ctx.secure);
    // A store fault is thrown as is: a StoreUnavailableError carries `status` 503 and its
    // `Retry-After` in `headers`, which Koa's error handler applies.
    const endpoint = deviceBound ? engine.deviceEndpoint(pathname) : null;
    if (endpoint) {
      const answer = await engine.handleDeviceEndpoint(endpoint, host, nodeDeviceRequest(ctx.req, secure));
      ctx.status = answer.status;
      ctx.set(answer.headers);
      ctx.body = answer.body;
      return;
    }
    const session = await engine.load(host, {
      cookieHeader: ctx.get('cookie') || undefined,
      secure,
      deviceSkipped: deviceBound ? ctx.get(SKIPPED_HEADER) || undefined : undefined,
    });
    await next();
    await session.commit();
    const headers = sessionHeaders(session);
    if (headers) {
      ctx.append('Set-Cookie', headers.setCookie);
      ctx.set('Cache-Control', headers.cacheControl);
      if (headers.registration) ctx.set(REGISTRATION_HEADER, headers.registration);
    }
  };
  return attachHandle(middleware, engine, sessionStore) as PgSessionKoaMiddleware;
}

const installed = new WeakSet<object>();

/**
 * `ctx.session` and `ctx.sessionID` as views of Node's request, defined once on the app's
 * context prototype (`app.context`, which every `ctx` inherits from) the first time the
 * middleware runs: Koa has no other hook for it, and a view keeps `regenerate()`'s new session
 * and an app's `ctx.session = null` in one place.
 */
function installAccessors(ctx: Context): void {
  const proto = Object.getPrototypeOf(ctx) as object;
  if (installed.has(proto)) return;
  installed.add(proto);
  Object.defineProperty(proto, 'session', {
    configurable: true,
    get(this: Context) {
      return (this.req as Host).session;
    },
    set(this: Context, value: (Session & Partial<SessionData>) | null | undefined) {
      (this.req as Host).session = value ?? undefined;
    },
  });
  Object.defineProperty(proto, 'sessionID', {
    configurable: true,
    get(this: Context) {
      return (this.req as Host).sessionID;
    },
  });
}

export default pgsessionKoa;
