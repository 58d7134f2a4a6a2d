import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { type CookieOptions, validateCookieName, validateCookieOptions } from '../core/cookie.js';
import { parseDuration } from '../core/duration.js';
import {
  hasSecurePrefix,
  type ParsedCookies,
  type RequestSession,
  SessionEngine,
  type SessionEvent,
} from '../core/engine.js';
import { ConfigError } from '../core/errors.js';
import { generateId } from '../core/id.js';
import { normalizeSecrets } from '../core/secrets.js';
import type { Session, SessionData, SessionHost } from '../core/session.js';
import type { Secret } from '../core/signature.js';
import type { ConnectStore } from '../stores/connect-store.js';
import { toSessionStore } from '../stores/engine-face.js';
import { MemoryStore } from '../stores/memory/memory-store.js';
import { type HasSessionStore, kSessionStore, type SessionStore } from '../stores/types.js';

/** Options of {@link session}: express-session's, plus pgsession's timeouts and hardening. */
export interface SessionOptions {
  /**
   * Signs the cookie. A string or Buffer, or an array of them: the first signs, all verify
   * (rotation). Required, except that the Express middleware falls back, as express-session
   * does, to cookie-parser's `req.secret`. With `NODE_ENV=production` the first must not be an
   * example secret and must have 32+ characters; older ones may be weak (with a warning).
   */
  secret?: Secret | readonly Secret[] | undefined;
  /**
   * Cookie name. Default `connect.sid`, as express-session (so switching keeps existing cookies).
   * A `__Host-` name (recommended on HTTPS) makes the cookie Secure, `Path=/` and host-only;
   * `__Secure-` makes it Secure. Options that contradict the prefix are a ConfigError.
   */
  name?: string;
  /** @deprecated express-session's old name for `name`. */
  key?: string;
  /** Where sessions live. Default: a {@link MemoryStore} (development only). */
  store?: ConnectStore | HasSessionStore;
  /** Cookie settings, or a function of the request returning them (express-session 1.19). */
  cookie?: CookieOptions | ((req: IncomingMessage) => CookieOptions);
  /** Save the session on every request even when unchanged. Default true (express-session's default). */
  resave?: boolean;
  /** Save new sessions that the request did not modify. Default true (express-session's default). */
  saveUninitialized?: boolean;
  /** Re-send the cookie on every response (sliding expiry in the browser). Default false. */
  rolling?: boolean;
  /** Generates session ids. Default: 32 random bytes, base64url. */
  genid?: (req: IncomingMessage) => string;
  /** Trust `X-Forwarded-Proto` for Secure cookies: true/false, or undefined to follow Express's `trust proxy`. */
  proxy?: boolean;
  /** What `req.session = null` / `delete req.session` does: `'keep'` (default) or `'destroy'`. */
  unset?: 'keep' | 'destroy';
  /**
   * Store SHA-256 of the id rather than the id, so a leaked table can't be replayed as cookies.
   * Default true. Turning it off is weaker; only for tools that need raw ids in the table.
   */
  hashIds?: boolean;
  /** Server-side sliding timeout (ms or `'7d'`). Default: `cookie.maxAge`, if set. */
  idleTimeout?: number | string;
  /** Server-side maximum lifetime from creation (ms or `'30d'`), whatever the activity. Default: none. */
  absoluteTimeout?: number | string;
  /** Write activity to the store at most this often per session. Default 1% of the idle timeout, at most 1 minute. */
  touchAfter?: number | string;
  /** Lifecycle events (created, renewed, destroyed, expired…) for audit logs and metrics. */
  onEvent?: (event: SessionEvent, req: IncomingMessage) => void;
  /** Warnings (e.g. a Secure cookie dropped on plain HTTP). Default: `process.emitWarning`, at most once a minute. */
  onWarning?: (message: string) => void;
  /** Errors from background writes (throttled touches). Default: a warning. */
  onBackgroundError?: (err: unknown) => void;
  /** Clock, for tests. */
  now?: () => number;
}

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
declare module '../core/session.js' {
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

/** The middleware function, with the engine exposed for adapters, tests and shutdown. */
export interface SessionMiddleware {
  (req: IncomingMessage, res: ServerResponse, next: Next): void;
  readonly engine: SessionEngine;
  readonly store: SessionStore;
  /**
   * Wait for background writes (touches in flight). On shutdown pass `{ touches: true }`: the
   * activity touch throttling deferred is written first, so each session's `last_active_at`
   * reflects its last request.
   */
  flush(options?: { touches?: boolean }): Promise<void>;
}

function isSecure(req: Req, trustProxy: boolean | undefined): boolean {
  if ((req.socket as TLSSocket | undefined)?.encrypted) return true;
  if (trustProxy === false) return false;
  if (trustProxy !== true) return req.secure === true;
  const header = req.headers['x-forwarded-proto'];
  const value = (Array.isArray(header) ? header[0] : header) ?? '';
  const comma = value.indexOf(',');
  return (comma === -1 ? value : value.slice(0, comma)).trim().toLowerCase() === 'https';
}

function pathnameOf(req: Req): string {
  const url = req.originalUrl ?? req.url ?? '/';
  const q = url.indexOf('?');
  // An empty URL is the root, as express-session reads it.
  return (q === -1 ? url : url.slice(0, q)) || '/';
}

function appendHeader(res: ServerResponse, name: string, value: string): void {
  const prev = res.getHeader(name);
  if (prev === undefined) res.setHeader(name, value);
  else res.setHeader(name, Array.isArray(prev) ? [...prev, value] : [String(prev), value]);
}

function rateLimited(fn: (m: string) => void, intervalMs: number): (m: string) => void {
  let last = 0;
  return (message) => {
    const now = Date.now();
    if (now - last < intervalMs) return;
    last = now;
    fn(message);
  };
}

/** Messages already emitted through `process.emitWarning` (start-up warnings appear once per process). */
const emittedOnce = new Set<string>();

/** A start-up warning: to `onWarning` when the app gave one, else once per process. */
function warnOnce(options: SessionOptions, message: string, code: string): void {
  if (options.onWarning) {
    options.onWarning(message);
    return;
  }
  if (emittedOnce.has(message)) return;
  emittedOnce.add(message);
  process.emitWarning(message, { code });
}

/** The name without its `__Host-`/`__Secure-` prefix (`sessionId` for `__Host-sessionId`). */
function unprefixed(name: string): string {
  return name.replace(/^__(host|secure)-/i, '') || 'sid';
}

function insecureRequestWarning(name: string, reason: 'secure' | 'prefix'): string {
  const prefix = /^__host-/i.test(name) ? '__Host-' : '__Secure-';
  const proxy = 'behind a TLS-terminating proxy, set app.set("trust proxy", 1) or the proxy option';
  if (reason === 'prefix') {
    return `pgsession: the session cookie was NOT sent: its name "${name}" has the ${prefix} prefix, which browsers accept only on a Secure cookie set over HTTPS, and this request came over plain HTTP. On http://localhost, use a name without the prefix outside production, e.g. name: process.env.NODE_ENV === 'production' ? '${name}' : '${unprefixed(name)}'; ${proxy}.`;
  }
  const prefixed = hasSecurePrefix(name)
    ? ` and a name without the ${prefix} prefix (browsers accept "${name}" only with Secure, over HTTPS)`
    : '';
  return `pgsession: a Secure session cookie was NOT sent because the request came over plain HTTP. Behind a TLS-terminating proxy, set app.set("trust proxy", 1) or the proxy option; in development, use cookie.secure "auto"${prefixed}.`;
}

/** How an adapter takes the options (the Express middleware resolves `secret` per request if absent). */
export interface ResolveContext {
  /** `secret` may be absent: the adapter passes cookie-parser's `req.secret` per request. */
  secretPerRequest?: boolean;
}

/** Resolve express-style options into the engine's. Exported for the other framework adapters. */
export function resolveOptions(
  options: SessionOptions,
  context: ResolveContext = {},
): {
  engine: SessionEngine;
  store: ConnectStore | HasSessionStore;
  /** The store's own engine face (pgsession's stores), or the adapter of one written for express-session. */
  sessionStore: SessionStore;
  proxy: boolean | undefined;
  cookiePath: string;
  production: boolean;
} {
  if (!options || typeof options !== 'object')
    throw new ConfigError('session(options): options object required');
  const production = process.env.NODE_ENV === 'production';
  validateTypes(options);
  const secrets =
    options.secret === undefined && context.secretPerRequest
      ? []
      : normalizeSecrets(options.secret, production, (m) => warnOnce(options, m, 'PGSESSION_WEAK_SECRET'));
  const name = validateCookieName(options.name ?? options.key ?? 'connect.sid');
  const cookieFor = typeof options.cookie === 'function' ? options.cookie : undefined;
  const cookie: CookieOptions = validateCookieOptions(name, cookieFor ? {} : options.cookie);
  const idle =
    options.idleTimeout !== undefined
      ? parseDuration(options.idleTimeout, 'idleTimeout')
      : typeof cookie.maxAge === 'number'
        ? cookie.maxAge
        : null;
  // The cookie lives as long as the idle timeout: the browser forgets it when the server would.
  if (idle !== null && cookie.maxAge == null && cookie.expires == null) cookie.maxAge = idle;
  const absolute =
    options.absoluteTimeout !== undefined ? parseDuration(options.absoluteTimeout, 'absoluteTimeout') : null;
  if (options.unset !== undefined && options.unset !== 'keep' && options.unset !== 'destroy') {
    throw new ConfigError(`unset option must be "destroy" or "keep", got ${String(options.unset)}`);
  }
  let store = options.store;
  if (store !== undefined && !isStore(store)) {
    throw new ConfigError('store option must be a session store (with get, set and destroy methods)');
  }
  if (!store) {
    if (production) {
      process.emitWarning(
        'pgsession: no store given, using MemoryStore, which loses every session on restart and is not shared between processes. Pass a PgStore.',
        { code: 'PGSESSION_MEMORY_STORE' },
      );
    }
    store = new MemoryStore({ hashIds: options.hashIds ?? true });
  }
  const warn =
    options.onWarning ?? rateLimited((m) => process.emitWarning(m, { code: 'PGSESSION_WARNING' }), 60_000);
  const genid = options.genid;
  const now = options.now ?? Date.now;
  const sessionStore = toSessionStore(store, now);
  // A touch of an in-process store costs nothing: throttling it would only differ from
  // express-session. Database stores get at most one activity write per touchAfter.
  const touchAfter =
    options.touchAfter !== undefined
      ? parseDuration(options.touchAfter, 'touchAfter')
      : sessionStore.inProcess
        ? 0
        : Math.min(Math.floor((idle ?? 86_400_000) / 100), 60_000);
  if (sessionStore.tracksActivity === false && options.idleTimeout !== undefined) {
    const maxAge = cookieFor ? undefined : cookie.maxAge;
    if (typeof maxAge === 'number' && maxAge !== idle) {
      warn(
        `pgsession: this store (written for express-session) cannot record activity, so it expires sessions by cookie.maxAge (${maxAge} ms), not idleTimeout (${idle} ms). Make them equal, or use PgStore.`,
      );
    }
  }
  if (!cookieFor && cookie.sameSite !== undefined && String(cookie.sameSite).toLowerCase() === 'none') {
    if (cookie.secure !== true && cookie.secure !== 'auto') {
      warn(
        'pgsession: browsers reject a SameSite=None cookie without Secure: set cookie.secure to true or "auto".',
      );
    }
  }
  const engine = new SessionEngine({
    name,
    secrets,
    store: sessionStore,
    cookie,
    cookieFor: cookieFor ? (host) => cookieFor(host as IncomingMessage) : undefined,
    resave: options.resave ?? true,
    saveUninitialized: options.saveUninitialized ?? true,
    rolling: options.rolling ?? false,
    unset: options.unset ?? 'keep',
    genid: genid ? (host) => genid(host as IncomingMessage) : generateId,
    hashIds: options.hashIds ?? true,
    idleTimeout: idle,
    idleTimeoutFromCookie: options.idleTimeout === undefined,
    absoluteTimeout: absolute,
    touchAfter,
    now,
    onEvent: options.onEvent ? (event, host) => options.onEvent?.(event, host as IncomingMessage) : undefined,
    onBackgroundError:
      options.onBackgroundError ??
      ((err) =>
        warn(`pgsession: background session write failed: ${(err as Error)?.message ?? String(err)}`)),
    onInsecureRequest: (reason) => warn(insecureRequestWarning(name, reason)),
  });
  // With per-request cookie options the path is checked per request; '/' lets every request in.
  return {
    engine,
    store,
    sessionStore: (store as Partial<HasSessionStore>)[kSessionStore] ?? sessionStore,
    proxy: options.proxy,
    cookiePath: cookie.path ?? '/',
    production,
  };
}

function isStore(store: unknown): store is ConnectStore | HasSessionStore {
  if (!store || typeof store !== 'object') return false;
  if ((store as Partial<HasSessionStore>)[kSessionStore]) return true;
  const s = store as Record<string, unknown>;
  return typeof s.get === 'function' && typeof s.set === 'function' && typeof s.destroy === 'function';
}

/** A ConfigError at start-up for options of the wrong type, rather than odd behaviour per request. */
function validateTypes(options: SessionOptions): void {
  const o = options as unknown as Record<string, unknown>;
  const expect = (key: string, type: 'boolean' | 'function' | 'string') => {
    const value = o[key];
    if (value !== undefined && typeof value !== type) {
      throw new ConfigError(
        `${key} option must be a ${type}, got ${typeof value === 'string' ? JSON.stringify(value) : String(value)} (${typeof value})`,
      );
    }
  };
  for (const key of ['resave', 'saveUninitialized', 'rolling', 'proxy', 'hashIds']) expect(key, 'boolean');
  for (const key of ['genid', 'now', 'onEvent', 'onWarning', 'onBackgroundError']) expect(key, 'function');
  for (const key of ['name', 'key']) expect(key, 'string');
  if (
    o.cookie !== undefined &&
    o.cookie !== null &&
    typeof o.cookie !== 'object' &&
    typeof o.cookie !== 'function'
  ) {
    throw new ConfigError(`cookie option must be an object or a function, got ${typeof o.cookie}`);
  }
  for (const key of ['idleTimeout', 'absoluteTimeout', 'touchAfter']) {
    const value = o[key];
    if (value !== undefined && typeof value !== 'number' && typeof value !== 'string') {
      throw new ConfigError(
        `${key} option must be milliseconds or a duration string like '7d', got ${typeof value}`,
      );
    }
  }
}

type Chunks = Array<{ end: boolean; args: unknown[] }>;

/** Node's error for a header change after the headers left (`ERR_HTTP_HEADERS_SENT`). */
function headersSentError(verb: string): Error {
  return Object.assign(new Error(`Cannot ${verb} headers after they are sent to the client`), {
    code: 'ERR_HTTP_HEADERS_SENT',
  });
}

/** Header methods that throw once the headers left, with the verb of Node's message. */
const HEADER_METHODS = [
  ['setHeader', 'set'],
  ['appendHeader', 'append'],
  ['removeHeader', 'remove'],
] as const;

/**
 * Hold the response until the session is committed, so a redirect right after login can never
 * reach a server that does not see the session yet (express-session writes the body first).
 * `commit()` returns null in the steady state, and then nothing is held at all.
 *
 * The state lives in one object with its steps as methods, and the patched `write`, `end` and
 * `writeHead` are the only closures made per request: this runs on every request, and nine
 * closures per response (each also renamed by esbuild's keepNames under tsx) were ~10% of the
 * session layer's CPU.
 */
class ResponseHold {
  state: 'open' | 'committing' | 'done' = 'open';
  abandoned = false;
  /** Calls held while the commit is in flight (allocated only then). */
  queue: Chunks | undefined;
  /** The Set-Cookie value, once decided (undefined: not yet). */
  header: string | null | undefined;
  /** Header methods replaced while the response is held (see {@link freeze}). */
  frozen: Array<[name: string, own: PropertyDescriptor | undefined]> | undefined;

  constructor(
    readonly res: ServerResponse,
    readonly ctx: RequestSession,
    readonly next: Next,
    readonly write: ServerResponse['write'],
    readonly end: ServerResponse['end'],
  ) {}

  cookieHeader(): string | null {
    if (this.header === undefined) this.header = this.ctx.setCookieHeader();
    return this.header;
  }

  /** The patched writeHead: add the cookie (decided once) to headers about to leave. */
  onWriteHead(res: ServerResponse): void {
    if (this.abandoned || res.headersSent) return;
    let value: string | null = null;
    try {
      value = this.cookieHeader();
    } catch (err) {
      // Only when the app wrote headers before ending (writeHead, flushHeaders): the response
      // is on its way, so it leaves without the cookie and Express gets the error, as with
      // express-session. Otherwise the value was decided, and any error handled, in finish().
      this.header = null;
      process.nextTick(this.next, err);
    }
    if (value) {
      appendHeader(res, 'Set-Cookie', value);
      // A response that sets a session cookie must never be stored by a shared cache.
      res.setHeader('Cache-Control', 'no-store');
    }
  }

  restore(): void {
    this.thaw();
    this.res.write = this.write;
    this.res.end = this.end;
  }

  /**
   * The app wrote or ended a response that is held for the commit. Without the hold its headers
   * would have left by now, so they behave as if they had: changing one throws Node's own error
   * and `headersSent` is true, exactly as over plain `http` (and with express-session).
   */
  freeze(): void {
    if (this.frozen) return;
    const res = this.res as unknown as Record<string, unknown>;
    this.frozen = [];
    for (const [name, verb] of HEADER_METHODS) {
      this.frozen.push([name, Object.getOwnPropertyDescriptor(res, name)]);
      Object.defineProperty(res, name, {
        configurable: true,
        writable: true,
        value: () => {
          throw headersSentError(verb);
        },
      });
    }
    this.frozen.push(['headersSent', Object.getOwnPropertyDescriptor(res, 'headersSent')]);
    Object.defineProperty(res, 'headersSent', { configurable: true, get: () => true });
  }

  /** Undo {@link freeze} before the held response is written out (or abandoned). */
  thaw(): void {
    const frozen = this.frozen;
    if (!frozen) return;
    this.frozen = undefined;
    const res = this.res as unknown as Record<string, unknown>;
    for (const [name, own] of frozen) {
      if (own) Object.defineProperty(res, name, own);
      else delete res[name];
    }
  }

  replay(): void {
    this.restore();
    const queue = this.queue;
    if (!queue) return;
    this.queue = undefined;
    for (const { end, args } of queue) {
      if (end) (this.end as (...a: unknown[]) => void).apply(this.res, args);
      else (this.write as (...a: unknown[]) => void).apply(this.res, args);
    }
  }

  fail(err: unknown): void {
    this.state = 'done';
    this.abandoned = true;
    this.queue = undefined;
    this.restore();
    this.next(err);
  }

  finish(): void {
    // Decide the Set-Cookie value while an error can still become an error response: the app
    // may have put a value the serializer refuses on req.session.cookie (say, priority 'urgent').
    try {
      this.cookieHeader();
    } catch (err) {
      this.fail(err);
      return;
    }
    this.state = 'done';
    this.replay();
  }

  start(): void {
    this.state = 'committing';
    let pending: Promise<void> | null;
    try {
      pending = this.ctx.commit();
    } catch (err) {
      this.fail(err);
      return;
    }
    if (!pending) {
      this.finish();
      return;
    }
    // Anything thrown while replaying the response goes to Express, never unhandled.
    pending
      .then(
        () => this.finish(),
        (err: unknown) => this.fail(err),
      )
      .catch((err: unknown) => this.next(err));
  }

  hold(end: boolean, args: unknown[]): void {
    if (this.queue) this.queue.push({ end, args });
    else this.queue = [{ end, args }];
    this.freeze();
  }
}

function holdResponse(res: ServerResponse, ctx: RequestSession, next: Next): void {
  const originalWriteHead = res.writeHead;
  const hold = new ResponseHold(res, ctx, next, res.write, res.end);
  // Anonymous function expressions: they need `this` (the response), and an anonymous one is
  // not wrapped for its name by tsx/esbuild's keepNames on every request.
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    if (hold.frozen) throw headersSentError('write');
    hold.onWriteHead(this);
    return (originalWriteHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as ServerResponse['writeHead'];
  res.write = function (this: ServerResponse, ...args: unknown[]) {
    if (hold.state === 'open') hold.start();
    if (hold.state === 'done') {
      return hold.abandoned ? true : (hold.write as (...a: unknown[]) => boolean).apply(this, args);
    }
    hold.hold(false, args);
    return true;
  } as ServerResponse['write'];
  res.end = function (this: ServerResponse, ...args: unknown[]) {
    if (hold.state === 'open') hold.start();
    if (hold.state === 'done') {
      if (!hold.abandoned) (hold.end as (...a: unknown[]) => void).apply(this, args);
      return this;
    }
    hold.hold(true, args);
    return this;
  } as ServerResponse['end'];
}

/**
 * express-session–compatible middleware. Same options, same `req.session` API, same signed
 * cookie, and the same `session` table through {@link PgStore}; plus commit-before-response,
 * hashed ids at rest, server-side idle/absolute timeouts and throttled touches.
 */
export function session(options: SessionOptions): SessionMiddleware {
  const { engine, store, sessionStore, proxy, production } = resolveOptions(options, {
    secretPerRequest: true,
  });
  const { name } = engine.options;
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
  const middleware = ((req: Req, res: ServerResponse, next: Next) => {
    if (req.session) return next();
    if (!storeReady) return next();
    let cookie: CookieOptions;
    let secrets: readonly Secret[] | undefined;
    try {
      cookie = engine.cookieOptionsFor(req);
      if (!pathnameOf(req).startsWith(cookie.path ?? '/')) return next();
      secrets = requestSecrets?.(req.secret);
    } catch (err) {
      return next(err);
    }
    req.sessionStore = store;
    engine
      .load(req, {
        cookieHeader: req.headers.cookie,
        secure: isSecure(req, proxy),
        cookie,
        secrets,
        parsedCookies: parsedCookiesOf(req, name),
      })
      .then(
        (ctx) => {
          holdResponse(res, ctx, next);
          next();
        },
        (err) => next(err),
      );
  }) as SessionMiddleware;

  Object.defineProperty(middleware, 'engine', { value: engine });
  Object.defineProperty(middleware, 'store', { value: sessionStore });
  Object.defineProperty(middleware, 'flush', {
    value: (flushOptions?: { touches?: boolean }) => engine.flush(flushOptions),
  });
  return middleware;
}

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
