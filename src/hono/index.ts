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
import type { RequestSession, SessionEngine, SessionEvent } from '../core/engine.js';
import { ConfigError, StoreUnavailableError } from '../core/errors.js';
import { kController, type Session, type SessionController, type SessionData } from '../core/session.js';
import { resolveOptions, type SessionOptions } from '../express/middleware.js';
import type { SessionStore } from '../stores/types.js';

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
export interface PgSessionHonoOptions extends Omit<SessionOptions, 'genid' | 'onEvent' | 'proxy'> {
  /** Generates session ids (the session variables are not set yet). Default: 32 random bytes, base64url. */
  genid?: (c: Context<PgSessionEnv>) => string;
  /** Lifecycle events (created, renewed, destroyed, expired…) for audit logs and metrics. */
  onEvent?: (event: SessionEvent, c: Context<PgSessionEnv>) => void;
  /**
   * Trust `X-Forwarded-Proto` to decide whether the request came over HTTPS (for `Secure` and
   * `cookie.secure: 'auto'`). Set it only behind a proxy that sets the header. Default false:
   * the scheme of the request URL (HTTPS when the Node server itself terminates TLS).
   */
  proxy?: boolean;
}

/** The middleware, with the engine exposed for tests and shutdown. */
export interface PgSessionHonoMiddleware extends MiddlewareHandler<PgSessionEnv> {
  /** The engine behind the middleware. */
  readonly engine: SessionEngine;
  /** The store's engine face (what the engine reads and writes). */
  readonly store: SessionStore;
  /**
   * Wait for background writes. Call `flush({ touches: true })` on shutdown: it first writes the
   * activity touch throttling deferred, so sessions active since their last write do not look
   * idle after the restart.
   */
  flush(options?: { touches?: boolean }): Promise<void>;
}

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

/** The engine hands callbacks its host; ours is a {@link ContextHost}. */
function contextOf(req: unknown): SessionContext {
  return (req as ContextHost).context;
}

function isSecure(c: SessionContext, proxy: boolean): boolean {
  if (proxy) {
    const value = c.req.header('x-forwarded-proto');
    if (value) {
      const comma = value.indexOf(',');
      return (comma === -1 ? value : value.slice(0, comma)).trim().toLowerCase() === 'https';
    }
  }
  return c.req.url.startsWith('https:');
}

/** Store faults become a 503 with Retry-After; the cause is the `StoreUnavailableError`. */
function toHttpError(err: unknown): unknown {
  if (!(err instanceof StoreUnavailableError)) return err;
  return new HTTPException(503, {
    message: err.message,
    cause: err,
    res: new Response('Service Unavailable', {
      status: 503,
      headers: {
        'content-type': 'text/plain; charset=utf-8',
        'retry-after': String(err.retryAfter),
        'cache-control': 'no-store',
      },
    }),
  });
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
  const { genid, onEvent, proxy, ...rest } = options;
  const { engine, sessionStore, cookiePath } = resolveOptions({
    ...rest,
    genid: genid ? (req) => genid(contextOf(req)) : undefined,
    onEvent: onEvent ? (event, req) => onEvent(event, contextOf(req)) : undefined,
  } as SessionOptions);
  const trustProxy = proxy === true;

  const middleware: MiddlewareHandler<PgSessionEnv> = async (c, next) => {
    if (c.get('session')) return next();
    if (!c.req.path.startsWith(cookiePath)) return next();
    const host = new ContextHost(c);
    let ctx: RequestSession;
    try {
      ctx = await engine.load(host, {
        cookieHeader: c.req.header('cookie'),
        secure: isSecure(c, trustProxy),
      });
    } catch (err) {
      throw toHttpError(err);
    }
    await next();
    try {
      await ctx.commit();
    } catch (err) {
      throw toHttpError(err);
    }
    const header = ctx.setCookieHeader();
    if (header) {
      c.header('Set-Cookie', header, { append: true });
      // A response that sets a session cookie must never be stored by a shared cache.
      c.header('Cache-Control', 'no-store');
    }
  };

  Object.defineProperty(middleware, 'engine', { value: engine });
  Object.defineProperty(middleware, 'store', { value: sessionStore });
  Object.defineProperty(middleware, 'flush', {
    value: (flushOptions?: { touches?: boolean }) => engine.flush(flushOptions),
  });
  return middleware as PgSessionHonoMiddleware;
}

export default pgsessionHono;
