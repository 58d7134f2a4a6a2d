/**
 * What every framework adapter does the same way: take the options (the store as an
 * express-session store, `proxy`), tell whether a request came over HTTPS, find its path, and
 * know which headers go with a session cookie. Each adapter (`express/`, `fastify/`, `hono/`)
 * only maps its framework's request and response onto these and onto the engine.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { DeviceEndpointRequest, DeviceEndpointResponse } from '../core/device-bound.js';
import type { SessionEngine, SessionEvent } from '../core/engine.js';
import { ConfigError, StoreUnavailableError } from '../core/errors.js';
import { type EngineConfig, type ResolvedSession, resolveEngine } from '../core/options.js';
import type { RequestSession } from '../core/request-session.js';
import { type HasSessionStore, kSessionStore, type SessionStore } from '../core/store.js';
import type { ConnectStore } from '../stores/connect-store.js';
import { toSessionStore } from '../stores/engine-face.js';
import { MemoryStore } from '../stores/memory/memory-store.js';

/** Options of the session middleware: express-session's, plus pgsession's timeouts and hardening. */
export interface SessionOptions<Req = IncomingMessage> extends EngineConfig<Req> {
  /** Where sessions live. Default: a {@link MemoryStore} (development only). */
  store?: ConnectStore | HasSessionStore;
  /** Trust `X-Forwarded-Proto` for Secure cookies: true/false, or undefined to follow the framework's own setting (Express's `trust proxy`). */
  proxy?: boolean;
}

/** The engine, and what an adapter needs around it. */
export interface ResolvedAdapter extends ResolvedSession {
  /** The `store` option as given (or the default MemoryStore): what `req.sessionStore` is. */
  store: ConnectStore | HasSessionStore;
  /** The store's own engine face (pgsession's stores), or the adapter of one written for express-session. */
  sessionStore: SessionStore;
  proxy: boolean | undefined;
}

/** `proxy` is a switch: true, false, or absent (follow the framework's own setting). */
function checkProxy(proxy: unknown): void {
  if (proxy !== undefined && typeof proxy !== 'boolean') {
    throw new ConfigError(`proxy option must be a boolean, got ${String(proxy)} (${typeof proxy})`);
  }
}

function isStore(store: unknown): store is ConnectStore | HasSessionStore {
  if (!store || typeof store !== 'object') return false;
  if ((store as Partial<HasSessionStore>)[kSessionStore]) return true;
  const s = store as Record<string, unknown>;
  return typeof s.get === 'function' && typeof s.set === 'function' && typeof s.destroy === 'function';
}

/**
 * Resolve an adapter's options: the store (default: a MemoryStore, with a warning in
 * production), then everything else in core. Every bad option is a ConfigError, at start-up.
 */
export function resolveSessionOptions<Req>(
  options: SessionOptions<Req>,
  context: { secretPerRequest?: boolean } = {},
): ResolvedAdapter {
  if (!options || typeof options !== 'object')
    throw new ConfigError('session(options): options object required');
  checkProxy(options.proxy);
  let store = options.store;
  if (store !== undefined && !isStore(store)) {
    throw new ConfigError('store option must be a session store (with get, set and destroy methods)');
  }
  if (!store) {
    if (process.env.NODE_ENV === 'production') {
      process.emitWarning(
        'pgsession: no store given, using MemoryStore, which loses every session on restart and is not shared between processes. Pass a PgStore.',
        { code: 'PGSESSION_MEMORY_STORE' },
      );
    }
    store = new MemoryStore({ hashIds: options.hashIds ?? true });
  }
  const engineStore = toSessionStore(store, options.now ?? Date.now);
  const resolved = resolveEngine(options, { store: engineStore, secretPerRequest: context.secretPerRequest });
  return {
    ...resolved,
    store,
    sessionStore: (store as Partial<HasSessionStore>)[kSessionStore] ?? engineStore,
    proxy: options.proxy,
  };
}

/**
 * An adapter's options with the callbacks that take a request (`genid`, `onEvent`, a `cookie`
 * function) rewritten for the engine's host object: the engine calls them with its host, the
 * app's callbacks get the framework's own request or context (`requestOf(host)`).
 */
export function forHost<Host, Req>(
  options: Omit<SessionOptions<Req>, 'proxy'> & { proxy?: unknown },
  requestOf: (host: Host) => Req,
): SessionOptions<Host> {
  const { genid, onEvent, cookie, proxy, ...rest } = options;
  // The adapter reads `proxy` itself (its framework has no setting of its own to follow).
  checkProxy(proxy);
  return {
    ...rest,
    ...(genid ? { genid: (host: Host) => genid(requestOf(host)) } : {}),
    ...(onEvent ? { onEvent: (event: SessionEvent, host: Host) => onEvent(event, requestOf(host)) } : {}),
    ...(cookie !== undefined
      ? { cookie: typeof cookie === 'function' ? (host: Host) => cookie(requestOf(host)) : cookie }
      : {}),
  };
}

/** Whether the first `X-Forwarded-Proto` value (the one the client-facing proxy set) is https. */
export function forwardedHttps(header: string | readonly string[] | undefined): boolean {
  const value = (typeof header === 'string' ? header : header?.[0]) ?? '';
  const comma = value.indexOf(',');
  return (comma === -1 ? value : value.slice(0, comma)).trim().toLowerCase() === 'https';
}

/**
 * Whether a request came over HTTPS, for `Secure` and the `'auto'` cookie settings: TLS on the
 * socket always counts; `proxy: true` trusts `X-Forwarded-Proto`; `proxy: false` trusts nothing
 * else; undefined asks the framework, which applies its own proxy setting (Express's
 * `trust proxy`, Fastify's `trustProxy`).
 */
export function isSecureRequest<R extends Pick<IncomingMessage, 'socket' | 'headers'>>(
  req: R,
  proxy: boolean | undefined,
  /** Called with `req`, so that it need not be a closure made per request. */
  framework: (req: R) => boolean,
): boolean {
  if ((req.socket as TLSSocket | undefined)?.encrypted) return true;
  if (proxy === false) return false;
  if (proxy === true) return forwardedHttps(req.headers['x-forwarded-proto']);
  return framework(req);
}

/** The path of a request URL, without the query string; an empty URL is the root (as express-session reads it). */
export function pathnameOf(url: string | undefined): string {
  const u = url ?? '/';
  const q = u.indexOf('?');
  return (q === -1 ? u : u.slice(0, q)) || '/';
}

/**
 * The pathname of an absolute URL (a Fetch `Request`'s `url`, already normalised by the URL
 * parser that made it), found without parsing it again on every request.
 */
export function pathnameOfUrl(url: string): string {
  const scheme = url.indexOf('://');
  const slash = scheme === -1 ? -1 : url.indexOf('/', scheme + 3);
  return slash === -1 ? '/' : pathnameOf(url.slice(slash));
}

/** What {@link sessionHeaders} gives a response. */
export interface SessionHeaders {
  setCookie: string;
  cacheControl: 'no-store';
  /** `Secure-Session-Registration` (DBSC), on the response that logs a session in with `deviceBound` on. */
  registration?: string | undefined;
}

/**
 * The headers a response gets for its session, or null: the Set-Cookie value the engine
 * decided, and `Cache-Control: no-store`, because a response that sets a session cookie must
 * never be stored by a shared cache (it would log its next receiver in as someone else); plus
 * the DBSC registration offer after a login.
 */
export function sessionHeaders(ctx: RequestSession): SessionHeaders | null {
  const setCookie = ctx.setCookieHeader();
  if (setCookie === null) return null;
  const registration = ctx.deviceRegistration();
  return registration === null
    ? { setCookie, cacheControl: 'no-store' }
    : { setCookie, cacheControl: 'no-store', registration };
}

/** The DBSC header names the adapters read and write. */
export const REGISTRATION_HEADER = 'Secure-Session-Registration';
export const SKIPPED_HEADER = 'secure-session-skipped';

/** A Node request to a DBSC endpoint, for {@link SessionEngine.handleDeviceEndpoint}. */
export function nodeDeviceRequest(req: IncomingMessage, secure: boolean): DeviceEndpointRequest {
  return {
    method: req.method ?? 'GET',
    cookieHeader: req.headers.cookie,
    secure,
    header: (name) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v[0] : v;
    },
  };
}

/** A Fetch request to a DBSC endpoint. */
export function fetchDeviceRequest(request: Request, secure: boolean): DeviceEndpointRequest {
  return {
    method: request.method,
    cookieHeader: request.headers.get('cookie') ?? undefined,
    secure,
    header: (name) => request.headers.get(name) ?? undefined,
  };
}

/** Send a DBSC endpoint's answer on a Node response. */
export function sendDeviceResponse(res: ServerResponse, answer: DeviceEndpointResponse): void {
  res.statusCode = answer.status;
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
  res.end(answer.body);
}

/** A DBSC endpoint's answer as a Fetch `Response`. */
export function deviceFetchResponse(answer: DeviceEndpointResponse): Response {
  return new Response(answer.body, { status: answer.status, headers: answer.headers });
}

/** `Retry-After` (seconds) for a store fault, which adapters answer with 503. */
export function retryAfterOf(err: unknown): string | undefined {
  return err instanceof StoreUnavailableError ? String(err.retryAfter) : undefined;
}

/** The answer to a store fault for the Fetch-API adapters: 503, `Retry-After`, never cached. */
export function unavailableResponse(err: StoreUnavailableError): Response {
  return new Response('Service Unavailable', {
    status: 503,
    headers: {
      'content-type': 'text/plain; charset=utf-8',
      'retry-after': String(err.retryAfter),
      'cache-control': 'no-store',
    },
  });
}

/** What each adapter exposes besides its handler: the engine, the store's engine face, and flush. */
export interface SessionHandle {
  /** The engine behind the adapter. */
  readonly engine: SessionEngine;
  /** The store's engine face (what the engine reads and writes). */
  readonly store: SessionStore;
  /**
   * Wait for background writes (touches in flight). On shutdown pass `{ touches: true }`: the
   * activity touch throttling deferred is written first, so each session's `last_active_at`
   * reflects its last request.
   */
  flush(options?: { touches?: boolean }): Promise<void>;
}

/** Put {@link SessionHandle}'s members on `target` (a middleware function, a Fastify decoration). */
export function attachHandle<T extends object>(
  target: T,
  engine: SessionEngine,
  store: SessionStore,
): T & SessionHandle {
  Object.defineProperty(target, 'engine', { value: engine });
  Object.defineProperty(target, 'store', { value: store });
  Object.defineProperty(target, 'flush', {
    value: (options?: { touches?: boolean }) => engine.flush(options),
  });
  return target as T & SessionHandle;
}
