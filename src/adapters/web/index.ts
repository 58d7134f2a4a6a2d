/**
 * pgsession for the Fetch API (`Request` → `Response`): Next.js route handlers, Remix/React
 * Router, SvelteKit, Astro, Bun, Deno, or `node:http` through a Fetch bridge. The same engine,
 * signed cookie and `session` table as the Express middleware, so an Express app and a Fetch
 * app on one domain share their sessions.
 *
 * ```ts
 * import { PgStore } from 'pgsession';
 * import { webSessions } from 'pgsession/web';
 *
 * const sessions = webSessions({ secret: process.env.SESSION_SECRET!, store: new PgStore({ pool }) });
 *
 * export const GET = sessions.handler(async (request, session) => {
 *   if (!session?.userId) return new Response('Login required', { status: 401 });
 *   return Response.json({ userId: session.userId });
 * });
 * ```
 *
 * @module
 */
import { parseSetCookie } from 'cookie';
import { ConfigError, StoreUnavailableError } from '../../core/errors.js';
import type { RequestSession } from '../../core/request-session.js';
import { kController, type Session, type SessionController, type SessionData } from '../../core/session.js';
import {
  attachHandle,
  deviceFetchResponse,
  fetchDeviceRequest,
  forHost,
  forwardedHttps,
  pathnameOfUrl,
  resolveSessionOptions,
  type SessionHandle,
  type SessionHeaders,
  type SessionOptions,
  SKIPPED_HEADER,
  sessionHeaders,
  unavailableResponse,
} from '../http.js';

/** The request's session: express-session's API (data as properties, `regenerate`, `destroy`…). */
export type WebSession = Session & Partial<SessionData>;

/**
 * Options of {@link webSessions}: the Express middleware's, except that the callbacks that take
 * a request get the Fetch `Request`, and `proxy` is a plain switch.
 */
export interface WebSessionOptions extends Omit<SessionOptions<Request>, 'proxy'> {
  /**
   * Trust `X-Forwarded-Proto` to decide whether the request came over HTTPS (for `Secure` and
   * `cookie.secure: 'auto'`). Set it only behind a proxy that sets the header. Default false:
   * the scheme of the request URL.
   */
  proxy?: boolean;
}

/** The headers {@link LoadedSession.commit} gives a response. */
export interface SessionResponseHeaders {
  'set-cookie': string;
  'cache-control': 'no-store';
  /** DBSC's registration offer, on the response that logs a session in (with `deviceBound` on). */
  'secure-session-registration'?: string;
}

/** One request's session, loaded by {@link WebSessions.load}. */
export interface LoadedSession {
  /** The current session: after `regenerate()` the new one; after `destroy()` undefined. */
  readonly session: WebSession | undefined;
  /** The session id (never logged or stored by pgsession; the store sees its SHA-256). */
  readonly sessionID: string | undefined;
  /**
   * Commit the session (the store has it before this resolves) and return the headers the
   * response needs, or null when there are none: for frameworks that build the response
   * themselves. Throws `StoreUnavailableError` when the store cannot be reached.
   */
  commit(): Promise<SessionResponseHeaders | null>;
  /**
   * Commit, then return `response` with the session's `Set-Cookie` and `Cache-Control` (a
   * copy when its headers are immutable, as `Response.redirect()`'s are).
   */
  respond(response: Response): Promise<Response>;
}

/** The attributes a {@link CookieJar} is given with the session cookie. */
export interface JarCookieOptions {
  expires?: Date;
  maxAge?: number;
  domain?: string;
  path?: string;
  httpOnly?: boolean;
  secure?: boolean;
  sameSite?: boolean | 'lax' | 'strict' | 'none';
  priority?: 'low' | 'medium' | 'high';
  partitioned?: boolean;
}

/**
 * A cookie jar as a framework hands it out where there is no `Request`: Next.js `cookies()` in
 * a server action or a server component.
 */
export interface CookieJar {
  get(name: string): { value: string } | undefined;
  set(name: string, value: string, options: JarCookieOptions): unknown;
}

/** One session loaded from a {@link CookieJar} by {@link WebSessions.fromCookies}. */
export interface JarSession {
  /** The current session: after `regenerate()` the new one; after `destroy()` undefined. */
  readonly session: WebSession | undefined;
  /** The session id (never logged or stored by pgsession; the store sees its SHA-256). */
  readonly sessionID: string | undefined;
  /**
   * Commit the session (the store has it before this resolves), then set the cookie on the jar
   * when it is (re)sent. A steady request sets nothing, so a server component, whose jar is
   * read-only, can commit its touches too. Throws `StoreUnavailableError` on a store fault.
   */
  commit(): Promise<void>;
}

/**
 * A handler that gets the request's session (undefined only for a request outside
 * `cookie.path`, as in express-session); what it returns is committed, then answered.
 */
export type SessionRouteHandler<Args extends unknown[] = []> = (
  request: Request,
  session: WebSession | undefined,
  ...rest: Args
) => Response | Promise<Response>;

/** The adapter: `load()` per request, or `handler()` around a route. */
export interface WebSessions extends SessionHandle {
  /** Load the request's session. A store failure throws `StoreUnavailableError` (answer 503). */
  load(request: Request): Promise<LoadedSession>;
  /**
   * Wrap a route handler: loads the session, runs the handler, commits before the response is
   * returned, applies the headers; a store failure is a `503` with `Retry-After`, never an
   * empty session. Extra arguments (a framework's context) are passed through.
   */
  handler<Args extends unknown[]>(
    fn: SessionRouteHandler<Args>,
  ): (request: Request, ...rest: Args) => Promise<Response>;
  /**
   * Load the session from a cookie jar (Next.js `await cookies()`), where there is no `Request`.
   * `secure`: whether the request came over HTTPS (for `Secure` and `cookie.secure: 'auto'`);
   * default false. A store failure throws `StoreUnavailableError`.
   */
  fromCookies(jar: CookieJar, request?: { secure?: boolean }): Promise<JarSession>;
  /**
   * With `deviceBound` on: the answer to a request for one of the DBSC endpoints, or null for
   * any other request. `handler()` routes them itself; with `load()`, call this first (or route
   * `deviceBound.registrationPath` and `refreshPath` to it). A store failure throws
   * `StoreUnavailableError`.
   */
  device(request: Request): Promise<Response | null>;
}

/** The engine's view of one request: where the current session and its id live. */
class RequestHost {
  [kController]: SessionController | undefined = undefined;
  session: WebSession | undefined = undefined;
  sessionID: string | undefined = undefined;
  constructor(readonly request: Request) {}
}

/** The scheme of the request: `X-Forwarded-Proto` when trusted (`proxy: true`), else the URL's. */
function isSecure(request: Request, proxy: boolean): boolean {
  const forwarded = proxy ? request.headers.get('x-forwarded-proto') : null;
  if (forwarded) return forwardedHttps(forwarded);
  return request.url.startsWith('https:');
}

/** `response` with `headers` added: in place when its headers are mutable, else on a copy. */
function withHeaders(response: Response, headers: SessionResponseHeaders): Response {
  const apply = (target: Response): Response => {
    target.headers.append('set-cookie', headers['set-cookie']);
    target.headers.set('cache-control', headers['cache-control']);
    const registration = headers['secure-session-registration'];
    if (registration) target.headers.set('secure-session-registration', registration);
    return target;
  };
  try {
    return apply(response);
  } catch {
    // Immutable headers (Response.redirect(), a fetched response): copy, then add.
    return apply(new Response(response.body, response));
  }
}

/** The headers {@link sessionHeaders} asks for, as a Fetch response takes them. */
function isPromiseLike<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/** A store that cannot be reached answers 503 (never "logged out"); anything else goes on. */
function orUnavailable(err: unknown): Response {
  if (err instanceof StoreUnavailableError) return unavailableResponse(err);
  throw err;
}

/** The route's response with the session's headers, once the commit landed. */
function respondWith(
  ctx: RequestSession,
  result: Response | PromiseLike<Response>,
): Response | PromiseLike<Response> {
  if (isPromiseLike(result)) return Promise.resolve(result).then((response) => finish(ctx, response));
  return finish(ctx, result);
}

function finish(ctx: RequestSession, response: Response): Response | Promise<Response> {
  const pending = ctx.commit();
  if (pending) return pending.then(() => withSession(ctx, response));
  return withSession(ctx, response);
}

function withSession(ctx: RequestSession, response: Response): Response {
  const headers = sessionHeaders(ctx);
  return headers ? withHeaders(response, responseHeaders(headers)) : response;
}

function responseHeaders(headers: SessionHeaders): SessionResponseHeaders {
  const out: SessionResponseHeaders = {
    'set-cookie': headers.setCookie,
    'cache-control': headers.cacheControl,
  };
  if (headers.registration) out['secure-session-registration'] = headers.registration;
  return out;
}

/** One request's session. `commit` and `respond` are bound, so they can be destructured. */
class Loaded implements LoadedSession {
  readonly #host: RequestHost;
  readonly #ctx: RequestSession | null;
  constructor(host: RequestHost, ctx: RequestSession | null) {
    this.#host = host;
    this.#ctx = ctx;
  }
  get session(): WebSession | undefined {
    return this.#host.session;
  }
  get sessionID(): string | undefined {
    return this.#host.sessionID;
  }
  readonly commit = async (): Promise<SessionResponseHeaders | null> => {
    if (!this.#ctx) return null;
    await this.#ctx.commit();
    const headers = sessionHeaders(this.#ctx);
    return headers ? responseHeaders(headers) : null;
  };
  readonly respond = async (response: Response): Promise<Response> => {
    const headers = await this.commit();
    return headers ? withHeaders(response, headers) : response;
  };
}

/**
 * The Fetch-API adapter: `webSessions(options)` once, then `load(request)` or
 * `handler(fn)` per route. Requests outside `cookie.path` get no session (as in Express).
 */
export function webSessions(options: WebSessionOptions): WebSessions {
  if (!options || typeof options !== 'object') {
    throw new ConfigError('webSessions(options): options object required');
  }
  const { proxy } = options;
  // The engine hands callbacks its host, a RequestHost: the app's callbacks get the Request.
  const { engine, sessionStore, cookiePath } = resolveSessionOptions<RequestHost>(
    forHost(options, (host) => host.request),
  );
  const trustProxy = proxy === true;

  const deviceBound = engine.options.deviceBound !== undefined;

  async function load(request: Request): Promise<LoadedSession> {
    const host = new RequestHost(request);
    if (!pathnameOfUrl(request.url).startsWith(cookiePath)) return new Loaded(host, null);
    const ctx = await engine.load(host, {
      cookieHeader: request.headers.get('cookie') ?? undefined,
      secure: isSecure(request, trustProxy),
      deviceSkipped: deviceBound ? (request.headers.get(SKIPPED_HEADER) ?? undefined) : undefined,
    });
    return new Loaded(host, ctx);
  }

  async function fromCookies(jar: CookieJar, request: { secure?: boolean } = {}): Promise<JarSession> {
    const name = engine.options.name;
    const presented = jar.get(name)?.value;
    const host = new RequestHost(new Request('http://localhost/'));
    const ctx = await engine.load(host, {
      cookieHeader: presented === undefined ? undefined : `${name}=${encodeURIComponent(presented)}`,
      secure: request.secure === true,
    });
    const loaded = new Loaded(host, ctx);
    return {
      get session() {
        return loaded.session;
      },
      get sessionID() {
        return loaded.sessionID;
      },
      async commit() {
        const headers = await loaded.commit();
        if (!headers) return;
        const { name: cookieName, value, ...attributes } = parseSetCookie(headers['set-cookie']);
        jar.set(cookieName, value ?? '', attributes);
      },
    };
  }

  async function device(request: Request): Promise<Response | null> {
    if (!deviceBound) return null;
    const endpoint = engine.deviceEndpoint(pathnameOfUrl(request.url));
    if (!endpoint) return null;
    const answer = await engine.handleDeviceEndpoint(
      endpoint,
      new RequestHost(request),
      fetchDeviceRequest(request, isSecure(request, trustProxy)),
    );
    return deviceFetchResponse(answer);
  }

  // load() + respond() without the LoadedSession between them: the steady path of a route. A
  // cached session is attached synchronously and a steady commit has nothing to wait for: then
  // the route runs in the same call and the handler settles one promise, with no await.
  function handler<Args extends unknown[]>(fn: SessionRouteHandler<Args>) {
    const route = (request: Request, args: Args): Response | PromiseLike<Response> => {
      if (!pathnameOfUrl(request.url).startsWith(cookiePath)) return fn(request, undefined, ...args);
      const host = new RequestHost(request);
      const loaded = engine.attach(host, {
        cookieHeader: request.headers.get('cookie') ?? undefined,
        secure: isSecure(request, trustProxy),
        deviceSkipped: deviceBound ? (request.headers.get(SKIPPED_HEADER) ?? undefined) : undefined,
      });
      if (loaded instanceof Promise) {
        return loaded.then((ctx) => respondWith(ctx, fn(request, host.session, ...args)));
      }
      return respondWith(loaded, fn(request, host.session, ...args));
    };
    const routeOrDevice = async (request: Request, args: Args): Promise<Response> =>
      (await device(request)) ?? (await route(request, args));
    return (request: Request, ...args: Args): Promise<Response> => {
      let result: Response | PromiseLike<Response>;
      try {
        result = deviceBound ? routeOrDevice(request, args) : route(request, args);
      } catch (err) {
        return Promise.reject(err).catch(orUnavailable);
      }
      return isPromiseLike(result) ? Promise.resolve(result).catch(orUnavailable) : Promise.resolve(result);
    };
  }

  return attachHandle({ load, handler, fromCookies, device }, engine, sessionStore) as WebSessions;
}

export default webSessions;
