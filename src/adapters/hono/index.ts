/**
 * pgsession for Hono (on `@hono/node-server`): the same engine, signed cookie and `session`
 * table as the Express middleware, so one store (and one cookie) can serve Express and Hono apps
 * alike.
 *
 * ```ts
 * import { Hono } from 'hono';
 * import { serve } from '@hono/node-server';
 * import { PgStore } from 'pgsession';
 * import { pgsessionHono } from 'pgsession/hono';
 *
 * const app = new Hono();
 * app.use(pgsessionHono({ secret: process.env.SESSION_SECRET!, store: new PgStore({ pool }) }));
 * app.post('/login', async (c) => {
 *   await c.get('session').regenerate();
 *   c.get('session').userId = user.id;
 *   return c.json({ ok: true });
 * });
 * serve(app);
 * ```
 *
 * @module
 */
import type { Context, MiddlewareHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { ConfigError, StoreUnavailableError } from '../../core/errors.js';
import type { RequestSession } from '../../core/request-session.js';
import { kController, type Session, type SessionController, type SessionData } from '../../core/session.js';
import {
  attachHandle,
  deviceFetchResponse,
  fetchDeviceRequest,
  forHost,
  forwardedHttps,
  REGISTRATION_HEADER,
  resolveSessionOptions,
  type SessionHandle,
  type SessionOptions,
  SKIPPED_HEADER,
  sessionHeaders,
  unavailableResponse,
} from '../http.js';

/** The context variables the middleware sets: `c.get('session')`, `c.get('sessionID')`. */
export interface PgSessionVariables {
  /**
   * The request's session (express-session's API: data as properties, plus `regenerate`,
   * `destroy`, `save`, `reload`, `touch`). Always the current one: after `regenerate()` it is the
   * new session; after `destroy()` it is undefined. `c.set('session', null)` unsets it.
   */
  session: Session & Partial<SessionData>;
  /** The session id (never logged or stored by pgsession; the store sees its SHA-256). */
  sessionID: string;
}

/** A Hono `Env` with the session variables, for `new Hono<PgSessionEnv>()` and typed handlers. */
export interface PgSessionEnv {
  Variables: PgSessionVariables;
}

declare module 'hono' {
  interface ContextVariableMap {
    /** The request's session, set by `pgsessionHono()`. */
    session: Session & Partial<SessionData>;
    /** The session id, set by `pgsessionHono()`. */
    sessionID: string;
  }
}

/**
 * Options of {@link pgsessionHono}: the Express middleware's, except that the callbacks that
 * take a request get Hono's `Context`, and `proxy` is a plain switch (Hono has no `trust proxy`).
 */
export interface PgSessionHonoOptions extends Omit<SessionOptions<Context<PgSessionEnv>>, 'proxy'> {
  /**
   * Trust `X-Forwarded-Proto` to decide whether the request came over HTTPS (for `Secure` and
   * `cookie.secure: 'auto'`). Set it only behind a proxy that sets the header. Default false:
   * the scheme of the request URL (HTTPS when the Node server itself terminates TLS).
   */
  proxy?: boolean;
}

/** The middleware, with the engine exposed for tests and shutdown (`flush({ touches: true })`). */
export interface PgSessionHonoMiddleware extends MiddlewareHandler<PgSessionEnv>, SessionHandle {}

type SessionContext = Context<PgSessionEnv>;

/**
 * The engine's view of one request: `session`/`sessionID` read and write the context variables,
 * so whatever the engine or the app assigns (a regenerated session, `null`) is what the other sees.
 */
class ContextHost {
  [kController]: SessionController | undefined = undefined;
  constructor(readonly context: SessionContext) {}
  get session(): (Session & Partial<SessionData>) | undefined {
    return this.context.get('session') ?? undefined;
  }
  set session(value: (Session & Partial<SessionData>) | null | undefined) {
    this.context.set('session', (value ?? undefined) as Session & Partial<SessionData>);
  }
  get sessionID(): string | undefined {
    return this.context.get('sessionID');
  }
  set sessionID(value: string | undefined) {
    this.context.set('sessionID', value as string);
  }
}

/** The scheme of the request: `X-Forwarded-Proto` when trusted (`proxy: true`), else the URL's. */
function isSecure(c: SessionContext, proxy: boolean): boolean {
  const forwarded = proxy ? c.req.header('x-forwarded-proto') : undefined;
  if (forwarded) return forwardedHttps(forwarded);
  return c.req.url.startsWith('https:');
}

/** Store faults become a 503 with Retry-After; the cause is the `StoreUnavailableError`. */
function toHttpError(err: unknown): unknown {
  if (!(err instanceof StoreUnavailableError)) return err;
  return new HTTPException(503, { message: err.message, cause: err, res: unavailableResponse(err) });
}

/**
 * The Hono middleware: `app.use(pgsessionHono(options))`. Loads the session before `next()`,
 * commits it after (before the response is handed back to the server, so the store has it before
 * any header leaves), then sets `Set-Cookie` and `Cache-Control: no-store` on `c.res` when the
 * cookie is (re)sent. A store failure is thrown as an `HTTPException` 503 with `Retry-After`,
 * whose `cause` is the `StoreUnavailableError` — never an empty session.
 */
export function pgsessionHono(options: PgSessionHonoOptions): PgSessionHonoMiddleware {
  if (!options || typeof options !== 'object') {
    throw new ConfigError('pgsessionHono(options): options object required');
  }
  const { proxy } = options;
  // The engine hands callbacks its host, a ContextHost: the app's callbacks get the context.
  const { engine, sessionStore, cookiePath } = resolveSessionOptions<ContextHost>(
    forHost(options, (host) => host.context),
  );
  const trustProxy = proxy === true;

  const deviceBound = engine.options.deviceBound !== undefined;
  const middleware: MiddlewareHandler<PgSessionEnv> = async (c, next) => {
    if (c.get('session')) return next();
    if (!c.req.path.startsWith(cookiePath)) return next();
    const host = new ContextHost(c);
    const secure = isSecure(c, trustProxy);
    let ctx: RequestSession;
    try {
      const endpoint = deviceBound ? engine.deviceEndpoint(c.req.path) : null;
      if (endpoint) {
        const answer = await engine.handleDeviceEndpoint(
          endpoint,
          host,
          fetchDeviceRequest(c.req.raw, secure),
        );
        return deviceFetchResponse(answer);
      }
      const loaded = engine.attach(host, {
        cookieHeader: c.req.header('cookie'),
        secure,
        deviceSkipped: deviceBound ? c.req.header(SKIPPED_HEADER) : undefined,
      });
      // A cached session is attached at once: no await, no turn of the microtask queue.
      ctx = loaded instanceof Promise ? await loaded : loaded;
    } catch (err) {
      throw toHttpError(err);
    }
    await next();
    try {
      // null in the steady state: nothing to wait for.
      const pending = ctx.commit();
      if (pending) await pending;
    } catch (err) {
      throw toHttpError(err);
    }
    const headers = sessionHeaders(ctx);
    if (headers) {
      // On a response the handler already made, `c.header` copies it first (it may be shared), so
      // only the first header goes through it: the copy is this request's own, and takes the
      // second directly instead of being copied again.
      c.header('Set-Cookie', headers.setCookie, { append: true });
      c.res.headers.set('Cache-Control', headers.cacheControl);
      if (headers.registration) c.res.headers.set(REGISTRATION_HEADER, headers.registration);
    }
  };
  return attachHandle(middleware, engine, sessionStore) as PgSessionHonoMiddleware;
}

export default pgsessionHono;
