/**
 * The engine's settings and what it reports: the types shared by the engine and the request
 * sessions it creates (and the adapters that build them, in `options.ts`).
 */
import type { CookieOptions } from './cookie.js';
import type { ResolvedDeviceBound } from './device-bound.js';
import type { SessionHost } from './session.js';
import type { Secret } from './signature.js';
import type { SessionJSON, SessionStore } from './store.js';

/** Session lifecycle events, for audit logs and metrics. Keys are storage keys (hashed ids), never raw ids. */
export type SessionEvent =
  | { type: 'created'; key: string; userId: string | null }
  | { type: 'renewed'; key: string; previousKey: string; userId: string | null }
  | { type: 'destroyed'; key: string; userId: string | null }
  | { type: 'expired'; key: string; userId: string | null; reason: 'idle' | 'absolute' }
  | { type: 'saved'; key: string; userId: string | null }
  | { type: 'lost'; key: string; userId: string | null }
  | { type: 'touched'; key: string }
  | { type: 'touch-skipped'; key: string }
  /**
   * The request carried a session cookie that names no session (ASVS: many invalid ids from one
   * source is an attack signal). `signature`: the value is not one this app signed (forged,
   * tampered, unsigned, or signed with a secret no longer configured); `key` is null, as an
   * unverified id is never hashed or stored. `unknown`: the signature verified but the store has
   * no such session (logged out, revoked, pruned); `key` is its storage key. Never a raw value.
   */
  | { type: 'invalid-cookie'; reason: 'signature' | 'unknown'; key: string | null }
  /** DBSC (`deviceBound`): the browser registered a device key for the session. */
  | { type: 'device-registered'; key: string; userId: string | null; alg: 'ES256' | 'RS256' }
  /** DBSC: the browser proved it holds the session's device key and got a new bound cookie. */
  | { type: 'device-refreshed'; key: string; userId: string | null }
  /**
   * DBSC: a registration or refresh was refused. `key` is null when the request named no live
   * session. `challenge*` reasons on refresh are answered with a new challenge (the browser
   * retries); the others end the browser's device-bound session. A `signature` or `key` refusal
   * on refresh means a proof by another key than the one registered: a copied cookie, most likely.
   */
  | {
      type: 'device-proof-refused';
      endpoint: 'registration' | 'refresh';
      key: string | null;
      userId: string | null;
      reason:
        | 'no-session'
        | 'not-bound'
        | 'already-bound'
        | 'session-id'
        | 'malformed'
        | 'algorithm'
        | 'key'
        | 'signature'
        | 'challenge'
        | 'challenge-expired'
        | 'challenge-used';
    }
  /**
   * DBSC: a request carried the cookie of a session bound to a device, without a valid bound
   * cookie (`missing`, `invalid`, or `expired`). `action`: served anyway (`reported`, enforce
   * `'report'`) or served as having no session (`refused`, enforce `'require'`). `skipped`: the
   * browser's `Secure-Session-Skipped` header, when it said why it did not refresh.
   */
  | {
      type: 'device-unbound-request';
      key: string;
      userId: string | null;
      reason: 'missing' | 'invalid' | 'expired';
      action: 'reported' | 'refused';
      skipped?: string | undefined;
    };

/** Resolved engine settings (the framework adapters build these from their options). */
export interface EngineOptions {
  /** Cookie name. */
  name: string;
  /**
   * First signs, all verify. Empty when the adapter supplies them per request (express-session
   * falls back to cookie-parser's `req.secret`): then every `load()` passes its own.
   */
  secrets: readonly Secret[];
  store: SessionStore;
  cookie: CookieOptions;
  /** Per-request cookie options (express-session's `cookie: (req) => ({...})`); overrides `cookie`. */
  cookieFor?: ((host: SessionHost) => CookieOptions) | undefined;
  resave: boolean;
  saveUninitialized: boolean;
  rolling: boolean;
  unset: 'keep' | 'destroy';
  genid: (host: SessionHost) => string;
  /** Store SHA-256(id) instead of the id. */
  hashIds: boolean;
  /**
   * Server-side sliding timeout in ms for sessions whose cookie has the configured lifetime
   * (null: only the store's expiry applies); see `idleTimeoutOf` in lifetime.ts.
   */
  idleTimeout: number | null;
  /**
   * The idle timeout is the configured `cookie.maxAge` (no `idleTimeout` option): a session whose
   * cookie the app made a browser-session one then has no server-side idle timeout either.
   */
  idleTimeoutFromCookie?: boolean | undefined;
  /** Server-side lifetime cap in ms, counted from creation (null: none). */
  absoluteTimeout: number | null;
  /** Write activity to the store at most this often (ms) per session. */
  touchAfter: number;
  now: () => number;
  onEvent?: ((event: SessionEvent, host: SessionHost | undefined) => void) | undefined;
  /** Errors from background work (throttled touches) that no request can report. */
  onBackgroundError?: ((err: unknown) => void) | undefined;
  /**
   * A Secure cookie could not be sent because the request was plain HTTP. `reason`: the app set
   * `secure` (`'secure'`), or only the name's `__Host-`/`__Secure-` prefix made it Secure (`'prefix'`).
   */
  onInsecureRequest?: ((reason: 'secure' | 'prefix') => void) | undefined;
  /** Device-bound sessions (DBSC); absent when off. */
  deviceBound?: ResolvedDeviceBound | undefined;
}

/** Activity a throttled touch did not write yet (written on shutdown). */
export interface DeferredTouch {
  expiresAt: number;
  lastActiveAt: number;
  state: { data: SessionJSON; createdAt: number; version: number } | undefined;
  /** The session id, for a store called as express-session calls it. */
  id: string;
}

/**
 * What a request's session uses of its engine: its settings, and the bookkeeping of work that
 * outlives a request. Nothing else of the engine is reachable from a request.
 */
export interface EngineServices {
  readonly options: EngineOptions;
  /** The storage key of an id (its SHA-256 unless ids are stored raw). */
  keyOf(id: string): string;
  /** Track background work (a throttled touch) so shutdown can wait for it, and the next load of `key` too. */
  background(work: Promise<unknown>, key: string): void;
  /** Remember activity a throttled touch skipped (written by `flush({ touches: true })`). */
  defer(key: string, touch: DeferredTouch): void;
  /** The session's activity was written (touch, save) or it is gone: nothing deferred is left. */
  undefer(key: string): void;
}
