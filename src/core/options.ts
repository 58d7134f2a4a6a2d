/**
 * Options, resolved once: the express-session–style options every adapter takes, checked and
 * turned into the engine's settings. Adapters add only what is theirs (the store given as an
 * express-session store, `proxy`, their request type in callbacks) in `adapters/http.ts`.
 */
import { type CookieOptions, hasSecurePrefix, validateCookieName, validateCookieOptions } from './cookie.js';
import { type DeviceBoundOptions, resolveDeviceBound } from './device-bound.js';
import { parseDuration } from './duration.js';
import { type EngineOptions, SessionEngine, type SessionEvent } from './engine.js';
import { ConfigError } from './errors.js';
import { generateId } from './id.js';
import { normalizeSecrets } from './secrets.js';
import type { SessionHost } from './session.js';
import type { Secret } from './signature.js';
import type { SessionStore } from './store.js';

/**
 * The options the engine understands, as express-session spells them. `Req` is what callbacks
 * receive: the framework's request (Express's `req`, Fastify's raw request, Hono's context).
 */
export interface EngineConfig<Req = SessionHost> {
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
  /** Cookie settings, or a function of the request returning them (express-session 1.19). */
  cookie?: CookieOptions | ((req: Req) => CookieOptions);
  /** Save the session on every request even when unchanged. Default true (express-session's default). */
  resave?: boolean;
  /** Save new sessions that the request did not modify. Default true (express-session's default). */
  saveUninitialized?: boolean;
  /** Re-send the cookie on every response (sliding expiry in the browser). Default false. */
  rolling?: boolean;
  /** Generates session ids. Default: 32 random bytes, base64url. */
  genid?: (req: Req) => string;
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
  onEvent?: (event: SessionEvent, req: Req) => void;
  /** Warnings (e.g. a Secure cookie dropped on plain HTTP). Default: `process.emitWarning`, at most once a minute. */
  onWarning?: (message: string) => void;
  /** Errors from background writes (throttled touches). Default: a warning. */
  onBackgroundError?: (err: unknown) => void;
  /**
   * Device-bound sessions (W3C DBSC): after a login, browsers that support it bind the session
   * to a key kept on the device, and refresh a short-lived bound cookie by signing challenges
   * with it, so a copied session cookie alone stops working elsewhere. Off by default; `true`
   * is `{}` (enforce `'report'`). Needs a store with `bindDevice` (PgStore, MemoryStore). See
   * docs/security.md and docs/options.md.
   */
  deviceBound?: DeviceBoundOptions | boolean | undefined;
  /** Clock, for tests. */
  now?: () => number;
}

/** What the adapter knows besides the options. */
export interface ResolveContext {
  /** The store's engine face (the adapter turned the `store` option into it). */
  store: SessionStore;
  /** `secret` may be absent: the adapter passes cookie-parser's `req.secret` per request. */
  secretPerRequest?: boolean | undefined;
}

/** The engine, and what the adapter needs to route requests to it. */
export interface ResolvedSession {
  engine: SessionEngine;
  /** Requests outside this path get no session (per-request cookie options: '/'). */
  cookiePath: string;
  production: boolean;
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
export function warnOnce(
  options: { onWarning?: ((m: string) => void) | undefined },
  message: string,
  code: string,
): void {
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

/** A ConfigError at start-up for options of the wrong type, rather than odd behaviour per request. */
function validateTypes(options: object): void {
  const o = options as Record<string, unknown>;
  const expect = (key: string, type: 'boolean' | 'function' | 'string') => {
    const value = o[key];
    if (value !== undefined && typeof value !== type) {
      throw new ConfigError(
        `${key} option must be a ${type}, got ${typeof value === 'string' ? JSON.stringify(value) : String(value)} (${typeof value})`,
      );
    }
  };
  for (const key of ['resave', 'saveUninitialized', 'rolling', 'hashIds']) expect(key, 'boolean');
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
  if (o.unset !== undefined && o.unset !== 'keep' && o.unset !== 'destroy') {
    throw new ConfigError(`unset option must be "destroy" or "keep", got ${String(o.unset)}`);
  }
}

/** Check `options` and build the engine (every bad option is a ConfigError here, at start-up). */
export function resolveEngine<Req>(options: EngineConfig<Req>, context: ResolveContext): ResolvedSession {
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
  const warn =
    options.onWarning ?? rateLimited((m) => process.emitWarning(m, { code: 'PGSESSION_WARNING' }), 60_000);
  const { store } = context;
  // A touch of an in-process store costs nothing: throttling it would only differ from
  // express-session. Database stores get at most one activity write per touchAfter.
  const touchAfter =
    options.touchAfter !== undefined
      ? parseDuration(options.touchAfter, 'touchAfter')
      : store.inProcess
        ? 0
        : Math.min(Math.floor((idle ?? 86_400_000) / 100), 60_000);
  if (store.tracksActivity === false && options.idleTimeout !== undefined) {
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
  const deviceBound = resolveDeviceBound(options.deviceBound, {
    name,
    cookiePath: cookieFor ? '/' : (cookie.path ?? '/'),
    secretGiven: secrets.length > 0,
  });
  if (deviceBound && typeof store.bindDevice !== 'function') {
    throw new ConfigError(
      'deviceBound needs a store that can keep device keys apart from session data (bindDevice): PgStore or MemoryStore',
    );
  }
  const { genid, onEvent } = options;
  const engineOptions: EngineOptions = {
    name,
    secrets,
    store,
    cookie,
    // The engine hands callbacks its host, which is the adapter's request (or stands for it).
    cookieFor: cookieFor ? (host) => cookieFor(host as Req) : undefined,
    resave: options.resave ?? true,
    saveUninitialized: options.saveUninitialized ?? true,
    rolling: options.rolling ?? false,
    unset: options.unset ?? 'keep',
    genid: genid ? (host) => genid(host as Req) : generateId,
    hashIds: options.hashIds ?? true,
    idleTimeout: idle,
    idleTimeoutFromCookie: options.idleTimeout === undefined,
    absoluteTimeout: absolute,
    touchAfter,
    now: options.now ?? Date.now,
    onEvent: onEvent ? (event, host) => onEvent(event, host as Req) : undefined,
    onBackgroundError:
      options.onBackgroundError ??
      ((err) =>
        warn(`pgsession: background session write failed: ${(err as Error)?.message ?? String(err)}`)),
    onInsecureRequest: (reason) => warn(insecureRequestWarning(name, reason)),
    deviceBound,
  };
  return { engine: new SessionEngine(engineOptions), cookiePath: cookie.path ?? '/', production };
}
