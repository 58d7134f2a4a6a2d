import { parse as parseCookies, serialize as serializeCookie } from 'cookie';
import { LRUCache } from 'lru-cache';
import {
  ConnectStoreError,
  type SessionJSON,
  type SessionRecord,
  type SessionStore,
  userIdOf,
} from '../stores/types.js';
import { Cookie, type CookieOptions, validateCookieOptions } from './cookie.js';
import { SerializationError, SessionStateError, StoreUnavailableError } from './errors.js';
import { hashId } from './id.js';
import {
  kController,
  type RegenerateOptions,
  Session,
  type SessionController,
  type SessionData,
  type SessionHost,
} from './session.js';
import { type Secret, SIGNED_PREFIX, sign, unsignWithIndex } from './signature.js';

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
  | { type: 'invalid-cookie'; reason: 'signature' | 'unknown'; key: string | null };

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
   * (null: only the store's expiry applies); see {@link SessionEngine.idleTimeoutOf}.
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
  /** A Secure cookie could not be sent because the request was plain HTTP. */
  /**
   * A Secure cookie could not be sent because the request was plain HTTP. `reason`: the app set
   * `secure` (`'secure'`), or only the name's `__Host-`/`__Secure-` prefix made it Secure (`'prefix'`).
   */
  onInsecureRequest?: ((reason: 'secure' | 'prefix') => void) | undefined;
}

/** Without an idle timeout, a row lives as long as connect-pg-simple's default ttl: one day. */
const DEFAULT_STORE_TTL = 86_400_000;
/**
 * Lifetimes closer than this are the same one: a cookie express-session created records its
 * `originalMaxAge` from two clock reads, so it can be a few ms short of the configured maxAge.
 */
const CLOCK_SLACK = 1000;

/** A cookie lifetime in ms, or null for a browser-session cookie (null, undefined, false). */
function lifetime(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}
/** Cookie values longer than this are never a session of ours; skip the HMAC. */
const MAX_COOKIE_VALUE = 4096;
/** Most verified cookie values remembered by {@link SessionEngine.readCookie} (~300 B each). */
const VERIFIED_MEMO_MAX = 10_000;
/** Longer verified values are not remembered (a default cookie value is 89 characters). */
const VERIFIED_MEMO_VALUE_MAX = 256;

/** A session cookie whose signature verified, and the storage key of its id. Shared: read-only. */
export interface VerifiedCookie {
  readonly id: string;
  /** The cookie's value as sent (`s:<id>.<mac>`). */
  readonly raw: string;
  /** Which secret verified it (0: the current one). */
  readonly secretIndex: number;
  readonly key: string;
}
/** What an adapter knows of one request, for {@link SessionEngine.load}. */
export interface LoadRequest {
  cookieHeader: string | undefined;
  secure: boolean;
  /** This request's cookie options (default: {@link SessionEngine.cookieOptionsFor}). */
  cookie?: CookieOptions | undefined;
  /** This request's secrets, when the adapter resolves them per request (default: the configured ones). */
  secrets?: readonly Secret[] | undefined;
  /** The session cookie as cookie-parser saw it, read when the Cookie header has no valid one. */
  parsedCookies?: ParsedCookies | undefined;
}

/** The session cookie in cookie-parser's `req.signedCookies` (an id it verified) and `req.cookies` (a value). */
export interface ParsedCookies {
  signedId?: unknown;
  raw?: unknown;
}

/** Most throttled touches remembered for {@link SessionEngine.flush} `{ touches: true }`. */
const MAX_DEFERRED_TOUCHES = 10_000;
/** Deferred touches written at once on shutdown. */
const FLUSH_CONCURRENCY = 8;

/** Activity a throttled touch did not write yet (written on shutdown). */
interface DeferredTouch {
  expiresAt: number;
  lastActiveAt: number;
  state: { data: SessionJSON; createdAt: number; version: number } | undefined;
  /** The session id, for a store called as express-session calls it. */
  id: string;
}

/** Cookie-name prefixes that browsers accept only with `Secure` (RFC 6265bis §4.1.3). */
export function hasSecurePrefix(name: string): boolean {
  // Browsers match the prefixes case-insensitively.
  return /^__(host|secure)-/i.test(name);
}

type Snapshot = Map<string, string>;

function snapshot(session: Session): Snapshot {
  const snap: Snapshot = new Map();
  for (const key of Object.keys(session)) {
    if (key === 'cookie') continue;
    let json: string | undefined;
    try {
      json = JSON.stringify(session[key]);
    } catch (err) {
      throw new SerializationError(
        `req.session.${key} cannot be saved: ${(err as Error).message}. Session data must be JSON-serializable (no BigInt, no cycles).`,
        err,
      );
    }
    if (json !== undefined) snap.set(key, json);
  }
  return snap;
}

function sameSnapshot(a: Snapshot | undefined, b: Snapshot): boolean {
  if (!a || a.size !== b.size) return false;
  for (const [key, json] of b) if (a.get(key) !== json) return false;
  return true;
}

/**
 * A write refused because the request's session is a last-known-good copy served while the
 * database cannot be reached (degraded mode): nothing may be written that could be lost.
 */
function readOnlyFault(what: string): StoreUnavailableError {
  return new StoreUnavailableError(
    `cannot ${what}: the session store is unreachable and this session is read-only until it is back`,
  );
}

function storeFault(what: string, err: unknown): unknown {
  // A store written for express-session: its own error, as express-session passes it on.
  if (err instanceof ConnectStoreError) return err.original;
  if (err instanceof SerializationError || err instanceof StoreUnavailableError) return err;
  return new StoreUnavailableError(`session store failed to ${what}`, err);
}

/**
 * The framework-agnostic session engine. One per middleware instance; `load()` once per request
 * returns the request's {@link RequestSession}, whose `commit()` runs before the response
 * headers leave and whose `setCookieHeader()` gives the Set-Cookie value (or null).
 */
export class SessionEngine {
  readonly options: EngineOptions;
  private readonly pending = new Set<Promise<unknown>>();
  /** Background touches still running, by key (see {@link load}). */
  private readonly touching = new Map<string, Promise<unknown>>();
  /**
   * Activity that touch throttling has not written yet, by key: the latest request of each
   * session seen since its last write. Written by `flush({ touches: true })` (graceful
   * shutdown), so the row's `last_active_at` reflects the last request. Bounded (oldest first).
   */
  private readonly deferred = new Map<string, DeferredTouch>();
  /**
   * Cookie values that verified, most recently used last: a returning cookie skips the HMAC
   * (and, with hashed ids, the SHA-256 of its id): a third of the session layer's CPU per request
   * in `bench/micro/hot-path.ts`.
   *
   * Why this keeps verification constant-time against forgery: only values that *verified* are
   * ever stored, and a hit needs the exact string, i.e. a cookie this app signed. A forged or
   * tampered value is never in here, so it takes the same path as before (HMAC per secret and
   * `timingSafeEqual`), and a miss costs what every request cost before. The string lookup
   * itself compares contents only after a full hash match (V8's seeded string hash), so its
   * timing tells a guesser nothing about any stored value's bytes. Entries cannot go stale:
   * the secrets are fixed for the engine's life, and whether the session still exists is asked
   * of the store on every request anyway. Bounded by count (least recently used evicted) and value length.
   */
  private readonly verified = new LRUCache<string, VerifiedCookie>({ max: VERIFIED_MEMO_MAX });

  constructor(options: EngineOptions) {
    this.options = options;
  }

  /** The storage key for an id. */
  keyOf(id: string): string {
    return this.options.hashIds ? hashId(id) : id;
  }

  /** Read the session cookie's id if its signature verifies with one of the secrets. */
  readCookie(cookieHeader: string | undefined): VerifiedCookie | null {
    const raw = this.rawCookie(cookieHeader);
    return raw ? this.verify(raw, this.options.secrets) : null;
  }

  /** The session cookie's value as sent, or undefined when there is none. */
  private rawCookie(cookieHeader: string | undefined): string | undefined {
    if (!cookieHeader || cookieHeader.indexOf(this.options.name) === -1) return undefined;
    try {
      return parseCookies(cookieHeader)[this.options.name] || undefined;
    } catch {
      // A header the parser refuses carries no usable session cookie: treat it as a bad one.
      return '';
    }
  }

  /**
   * `raw` verified with `secrets`, or null if it is not a value we signed. Remembered (see
   * {@link verified}) only with the configured secrets, which never change; per-request ones
   * (cookie-parser's `req.secret`) are checked every time.
   */
  private verify(raw: string, secrets: readonly Secret[]): VerifiedCookie | null {
    const memo = secrets === this.options.secrets;
    const known = memo ? this.verified.get(raw) : undefined;
    if (known !== undefined) return known;
    if (raw.length > MAX_COOKIE_VALUE || !raw.startsWith(SIGNED_PREFIX)) return null;
    const verified = unsignWithIndex(raw.slice(SIGNED_PREFIX.length), secrets);
    if (!verified || verified.value.length === 0) return null;
    const cookie: VerifiedCookie = {
      id: verified.value,
      raw,
      secretIndex: verified.index,
      key: this.keyOf(verified.value),
    };
    if (memo && raw.length <= VERIFIED_MEMO_VALUE_MAX) this.verified.set(raw, Object.freeze(cookie));
    return cookie;
  }

  /**
   * express-session's fall-backs when the Cookie header has no valid session cookie: an id
   * cookie-parser already verified (`req.signedCookies`), then a signed value it parsed
   * (`req.cookies`), verified here.
   */
  private fromParsedCookies(parsed: ParsedCookies, secrets: readonly Secret[]): VerifiedCookie | null {
    const id = parsed.signedId;
    if (typeof id === 'string' && id.length > 0 && id.length <= MAX_COOKIE_VALUE && secrets.length > 0) {
      return { id, raw: SIGNED_PREFIX + sign(id, secrets[0]!), secretIndex: 0, key: this.keyOf(id) };
    }
    const raw = parsed.raw;
    return typeof raw === 'string' && raw.length > 0 ? this.verify(raw, secrets) : null;
  }

  /**
   * Attach a session to `host` for this request. Rejects (StoreUnavailableError) when the store
   * fails: a fault must never be mistaken for "no session", which would log the user out.
   */
  async load(host: SessionHost, request: LoadRequest): Promise<RequestSession> {
    const secrets = request.secrets ?? this.options.secrets;
    const ctx = new RequestSession(
      this,
      host,
      request.secure,
      request.cookie ?? this.cookieOptionsFor(host),
      secrets,
    );
    const raw = this.rawCookie(request.cookieHeader);
    let cookie = raw === undefined ? null : this.verify(raw, secrets);
    if (!cookie && request.parsedCookies) cookie = this.fromParsedCookies(request.parsedCookies, secrets);
    if (raw !== undefined && !cookie)
      this.emit({ type: 'invalid-cookie', reason: 'signature', key: null }, host);
    if (cookie) {
      ctx.cookieId = cookie.id;
      ctx.cookieRaw = cookie.raw;
      ctx.cookieSecretIndex = cookie.secretIndex;
      const key = cookie.key;
      // The previous request's touch of this session may still be running: let it land first,
      // or the activity it records would be missing and an active session could look idle.
      const touching = this.touching.get(key);
      if (touching) await touching;
      let record = await this.get(key, cookie.id, false);
      if (!record) this.emit({ type: 'invalid-cookie', reason: 'unknown', key }, host);
      if (record && this.expiredReason(record, ctx.cookieOptions)) {
        // A cached copy may lag another server's activity: confirm with the store before killing it.
        record = await this.get(key, cookie.id, true);
        const reason = record && this.expiredReason(record, ctx.cookieOptions);
        if (record && reason) {
          await this.run('destroy an expired session', () => this.options.store.destroy(key));
          this.emit({ type: 'expired', key, userId: record.userId, reason }, host);
          record = null;
          ctx.clearCookie = true;
        }
      }
      if (record) {
        ctx.inflate(cookie.id, key, record);
        return ctx;
      }
      // A cookie we signed whose session the store no longer serves (expired, revoked, logged out
      // elsewhere): tell the browser to forget it, and delete any expired row still waiting for
      // the pruner, so an expired session is destroyed on sight, not just ignored. (Stores written
      // for express-session keep express-session's behaviour: their TTL already removed it.)
      if (this.options.store.tracksActivity !== false) {
        ctx.clearCookie = true;
        this.background(this.options.store.destroy(key));
      }
    }
    // No cookie, a forged one, or one for a session that no longer exists: a fresh id, never the
    // presented one (an attacker-chosen id is never adopted).
    ctx.generate();
    return ctx;
  }

  private get(key: string, rawId: string, fresh: boolean): Promise<SessionRecord | null> {
    const options: { legacyKey?: string; fresh?: boolean; id?: string } = {};
    if (this.options.hashIds) options.legacyKey = rawId;
    // The re-read of a session that looks expired is ours alone: express-session reads once.
    if (fresh) options.fresh = true;
    else options.id = rawId;
    return this.run('load the session', () => this.options.store.get(key, options));
  }

  /** The cookie options for one request: the static ones, or the result of the `cookie` function. */
  cookieOptionsFor(host: SessionHost): CookieOptions {
    const { cookieFor, name, cookie } = this.options;
    return cookieFor ? validateCookieOptions(name, cookieFor(host)) : cookie;
  }

  /**
   * The idle timeout of one session, from its own cookie exactly as the browser sees it: a
   * lifetime the app gave this session (`req.session.cookie.maxAge = 30 days` for "remember
   * me", a fixed `expires`) is its idle timeout, and a browser-session cookie (`expires: false`
   * or `null`) has none but an explicit `idleTimeout`. Sessions whose cookie has the configured
   * lifetime get the configured idle timeout: it is the default, never a cap that ends a longer
   * session early (`absoluteTimeout` is the cap).
   */
  idleTimeoutOf(cookie: { originalMaxAge?: unknown } | undefined, options: CookieOptions): number | null {
    const { idleTimeout, idleTimeoutFromCookie } = this.options;
    const own = lifetime(cookie?.originalMaxAge);
    const configured = lifetime(options.maxAge);
    if (
      own === configured ||
      (own !== null && configured !== null && Math.abs(own - configured) < CLOCK_SLACK)
    )
      return idleTimeout;
    if (own !== null) return own;
    return idleTimeoutFromCookie ? null : idleTimeout;
  }

  expiredReason(record: SessionRecord, options: CookieOptions): 'idle' | 'absolute' | null {
    const { absoluteTimeout, touchAfter } = this.options;
    const now = this.options.now();
    if (absoluteTimeout !== null && now - record.createdAt > absoluteTimeout) return 'absolute';
    // Activity is written at most every touchAfter, so the last write may be that much behind.
    // Stores adapted from express-session cannot record activity on touch (most keep only a
    // TTL): for them the idle timeout is their own expiry, refreshed by every touch.
    if (this.options.store.tracksActivity === false) return null;
    const idle = this.idleTimeoutOf(record.data.cookie, options);
    return idle !== null && now - record.lastActiveAt > idle + touchAfter ? 'idle' : null;
  }

  /** When the store may forget a session last active at `now`, created at `createdAt`. */
  expiresAt(now: number, createdAt: number, cookie: Cookie, options: CookieOptions): number {
    const { absoluteTimeout, touchAfter } = this.options;
    const idle = this.idleTimeoutOf(cookie, options);
    const expires = cookie.expires;
    let at: number;
    if (idle !== null) at = now + idle + touchAfter;
    else if (expires instanceof Date) at = expires.getTime();
    else at = now + DEFAULT_STORE_TTL;
    if (absoluteTimeout !== null) at = Math.min(at, createdAt + absoluteTimeout);
    return at;
  }

  async run<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw storeFault(what, err);
    }
  }

  emit(event: SessionEvent, host?: SessionHost): void {
    this.options.onEvent?.(event, host);
  }

  /** Track background work (throttled touches) so shutdown can wait for it. */
  background(work: Promise<unknown>, key?: string): void {
    const tracked = work.catch((err) =>
      this.options.onBackgroundError?.(err instanceof ConnectStoreError ? err.original : err),
    );
    this.pending.add(tracked);
    if (key !== undefined) this.touching.set(key, tracked);
    void tracked.finally(() => {
      this.pending.delete(tracked);
      if (key !== undefined && this.touching.get(key) === tracked) this.touching.delete(key);
    });
  }

  /** Remember activity a throttled touch skipped (see {@link flush}). */
  defer(key: string, touch: DeferredTouch): void {
    const known = this.deferred.get(key);
    if (known) {
      known.expiresAt = touch.expiresAt;
      known.lastActiveAt = touch.lastActiveAt;
      known.state = touch.state;
      known.id = touch.id;
      return;
    }
    if (this.deferred.size >= MAX_DEFERRED_TOUCHES) {
      const oldest = this.deferred.keys().next().value;
      if (oldest !== undefined) this.deferred.delete(oldest);
    }
    this.deferred.set(key, touch);
  }

  /** The session's activity was written (touch, save) or it is gone: nothing deferred is left. */
  undefer(key: string): void {
    if (this.deferred.size > 0) this.deferred.delete(key);
  }

  /**
   * Wait for background writes to finish. With `touches: true` (graceful shutdown), first write
   * the activity that touch throttling deferred, so each row's `last_active_at` reflects its
   * session's last request; if the store fails (an outage), the rest are dropped at once rather
   * than holding up the shutdown, and the failure goes to `onBackgroundError`.
   */
  async flush(options: { touches?: boolean } = {}): Promise<void> {
    if (options.touches && this.deferred.size > 0) {
      const work = [...this.deferred];
      this.deferred.clear();
      const { store } = this.options;
      let failed = false;
      for (let i = 0; i < work.length && !failed; i += FLUSH_CONCURRENCY) {
        await Promise.all(
          work.slice(i, i + FLUSH_CONCURRENCY).map(([key, t]) =>
            store.touch(key, t.expiresAt, t.lastActiveAt, t.state, { id: t.id }).catch((err: unknown) => {
              if (!failed)
                this.options.onBackgroundError?.(err instanceof ConnectStoreError ? err.original : err);
              failed = true;
            }),
          ),
        );
      }
    }
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  /** True when the cookie name has a `__Host-`/`__Secure-` prefix: browsers drop it without Secure. */
  get securePrefixed(): boolean {
    return hasSecurePrefix(this.options.name);
  }

  /**
   * A header that deletes the session cookie in the browser. It carries the attributes the cookie
   * was set with as this request resolves them: browsers ignore a deletion of a prefixed or
   * `SameSite=None` cookie that lacks `Secure`.
   */
  clearCookieHeader(secureRequest: boolean, c: CookieOptions = this.options.cookie): string {
    const secure = c.secure === true || (c.secure === 'auto' && secureRequest) || this.securePrefixed;
    const sameSite = c.sameSite === 'auto' ? (secureRequest ? 'none' : 'lax') : c.sameSite;
    return serializeCookie(this.options.name, '', {
      expires: new Date(0),
      path: c.path ?? '/',
      domain: c.domain,
      httpOnly: c.httpOnly ?? true,
      secure,
      sameSite: sameSite === 'none' && !secure ? undefined : sameSite,
      partitioned: c.partitioned,
    });
  }
}

/**
 * One request's view of its session: the decisions express-session makes (when to create, save,
 * touch and re-send the cookie), made in one place, plus the methods behind `req.session.*`.
 */
export class RequestSession implements SessionController {
  cookieId: string | undefined;
  cookieRaw: string | undefined;
  cookieSecretIndex = -1;
  /** The client's cookie should be deleted (logout, expiry, revoked elsewhere). */
  clearCookie = false;
  /**
   * The session is a last-known-good copy served while the store is unreachable (degraded
   * mode): reading works, any write fails with StoreUnavailableError, touches are skipped and
   * no Set-Cookie is sent (the cookie is neither refreshed nor replaced).
   */
  readOnly = false;
  id = '';
  key = '';
  private persisted = false;
  private createdAt = 0;
  private lastActiveAt = 0;
  private version = 0;
  private originalId = '';
  /**
   * Change detection. "Modified" is judged per top-level key by its JSON, as express-session
   * does (so in-place changes to nested objects count), against the data as loaded. Serializing
   * every key on load and again on commit was the largest part of the engine's own CPU, so a
   * loaded session keeps only the JSON text it was loaded from (`baseText`: the store's, when it
   * has it) and the per-key snapshot is built from that text only when something may have
   * changed (see {@link unchangedSinceLoad}).
   */
  private baseText: string | undefined;
  /** The loaded cookie's JSON value, which stands in for the live cookie when comparing with `baseText`. */
  private baseCookie: unknown;
  /** Per-key JSON of the data as loaded or generated; built lazily from `baseText` for loaded sessions. */
  private originalSnapValue: Snapshot | undefined;
  private savedSnap: Snapshot | undefined;
  /** What was last saved is the data as loaded (`savedSnap` then stays undefined). */
  private savedIsOriginal = false;
  private touched = false;
  private committed = false;
  /**
   * The session method (save, destroy, regenerate, reload) still running, if any. Methods run one
   * after another, and the commit waits for them: `req.session.save(); res.redirect('/')` must
   * not race the commit into a second insert, nor `req.session.destroy(); res.redirect('/')`
   * answer before the row is gone.
   */
  private inflight: Promise<void> | undefined;

  constructor(
    private readonly engine: SessionEngine,
    readonly host: SessionHost,
    readonly secure: boolean,
    /** This request's cookie options. */
    readonly cookieOptions: CookieOptions = engine.options.cookie,
    /** This request's secrets: the first signs the cookie. */
    readonly secrets: readonly Secret[] = engine.options.secrets,
  ) {
    host[kController] = this;
  }

  private get opts(): EngineOptions {
    return this.engine.options;
  }

  /** A brand-new, unsaved session with a fresh id. */
  generate(keep?: Record<string, unknown>): void {
    const { opts, host } = this;
    this.id = opts.genid(host);
    this.key = this.engine.keyOf(this.id);
    host.sessionID = this.id;
    const session = new Session(host) as Session & Partial<SessionData>;
    const options = this.cookieOptions;
    const cookie = new Cookie(options);
    if (options.secure === 'auto') cookie.secure = this.secure;
    if (options.sameSite === 'auto') cookie.sameSite = this.secure ? 'none' : 'lax';
    session.cookie = cookie;
    host.session = session;
    this.persisted = false;
    this.createdAt = opts.now();
    this.lastActiveAt = this.createdAt;
    this.version = 0;
    this.readOnly = false;
    this.originalId = this.id;
    this.baseText = undefined;
    this.baseCookie = undefined;
    this.originalSnapValue = snapshot(session);
    this.savedSnap = undefined;
    this.savedIsOriginal = false;
    if (keep) for (const [k, v] of Object.entries(keep)) if (!(k in session)) session[k] = v;
  }

  /** Attach a stored session. */
  inflate(id: string, key: string, record: SessionRecord): void {
    const { host } = this;
    this.id = id;
    this.key = key;
    host.sessionID = id;
    const stored = record.data.cookie ?? { originalMaxAge: null };
    const cookie = new Cookie(stored);
    if (typeof stored.expires === 'string') cookie.expires = new Date(stored.expires);
    cookie.originalMaxAge = stored.originalMaxAge ?? null;
    const session = new Session(host, record.data) as Session & Partial<SessionData>;
    session.cookie = cookie;
    host.session = session;
    this.persisted = true;
    this.createdAt = record.createdAt;
    this.lastActiveAt = record.lastActiveAt;
    this.version = record.version;
    this.readOnly = record.readOnly === true;
    this.originalId = id;
    // The text must be exactly JSON.stringify(record.data): a store that kept it says so.
    let text = record.json;
    if (text === undefined) {
      try {
        text = JSON.stringify(record.data);
      } catch {
        // Data no JSON can hold (only a foreign store could return it): the eager snapshot below
        // reports it as before.
      }
    }
    this.baseText = text;
    this.baseCookie = record.data.cookie;
    this.originalSnapValue = text === undefined ? snapshot(session) : undefined;
    this.savedSnap = undefined;
    this.savedIsOriginal = !this.opts.resave;
  }

  /** Per-key JSON of the data as loaded (built on first use for a loaded session). */
  private get originalSnap(): Snapshot {
    if (this.originalSnapValue === undefined) {
      // The same copy rules as on load (keys shadowing methods, `__proto__` and `cookie` skipped),
      // applied to a fresh parse of the loaded text: exactly the snapshot load would have taken.
      this.originalSnapValue =
        this.baseText === undefined ? new Map() : snapshot(new Session({}, JSON.parse(this.baseText)));
    }
    return this.originalSnapValue;
  }

  /**
   * True when the session certainly holds the data it was loaded with, under the same id: its
   * keys, in their order, with the loaded cookie in place of the live one, serialize to the
   * loaded text. One JSON.stringify, no per-key snapshot. False means "compare per key" (the
   * exact check), never "modified": a key order change or a skipped key only costs the slow path.
   */
  private unchangedSinceLoad(session: Session): boolean {
    const text = this.baseText;
    if (text === undefined || this.originalId !== this.id) return false;
    const probe: Record<string, unknown> = {};
    for (const key of Object.keys(session)) {
      // An own `__proto__` key would set the probe's prototype instead of a property.
      if (key === '__proto__') return false;
      probe[key] = key === 'cookie' ? this.baseCookie : session[key];
    }
    let json: string;
    try {
      json = JSON.stringify(probe);
    } catch {
      // Not serializable (BigInt, cycle): the per-key snapshot reports which key.
      return false;
    }
    return json === text;
  }

  private isModified(current: Snapshot): boolean {
    return this.originalId !== this.id || !sameSnapshot(this.originalSnap, current);
  }

  private isSaved(current: Snapshot): boolean {
    const saved = this.savedIsOriginal ? this.originalSnap : this.savedSnap;
    return this.originalId === this.id && sameSnapshot(saved, current);
  }

  private shouldSave(current: Snapshot): boolean {
    if (
      !this.opts.saveUninitialized &&
      this.savedSnap === undefined &&
      !this.savedIsOriginal &&
      this.cookieId !== this.id
    ) {
      return this.isModified(current);
    }
    return !this.isSaved(current);
  }

  /** Whether the data or id differ from what was loaded (a snapshot only when it may). */
  private modifiedNow(session: Session): boolean {
    return !this.unchangedSinceLoad(session) && this.isModified(snapshot(session));
  }

  private touchCookie(session: Session): void {
    if (this.touched) return;
    this.touched = true;
    session.touch();
  }

  /**
   * Persist what the request changed. Returns null when nothing has to be awaited (the steady
   * state: no write, or only a throttled touch in the background), so the adapter can end the
   * response synchronously.
   */
  commit(): Promise<void> | null {
    if (this.committed) return null;
    this.committed = true;
    if (this.inflight) return this.inflight.then(() => this.decide() ?? undefined);
    return this.decide();
  }

  private decide(): Promise<void> | null {
    const session = this.host.session;
    if (!session) {
      if (this.opts.unset === 'destroy') {
        if (this.readOnly) return Promise.reject(readOnlyFault('destroy the session'));
        return this.destroyStored();
      }
      return null;
    }
    // As express-session: an app that made req.sessionID something else than an id gets no save.
    if (typeof this.host.sessionID !== 'string') return null;
    this.touchCookie(session);
    if (this.savedIsOriginal && this.unchangedSinceLoad(session)) {
      // The steady state: same id, same data as loaded and saved. Nothing to save (the checks
      // below would find the same without serializing every key), at most a touch.
      if (this.readOnly) {
        this.engine.emit({ type: 'touch-skipped', key: this.key }, this.host);
        return null;
      }
      if (this.cookieId === this.id && this.persisted) this.touchStore(session, undefined);
      return null;
    }
    const current = snapshot(session);
    if (this.readOnly) {
      // Degraded mode: an unchanged session needs nothing (not even resave's rewrite); a changed
      // one cannot be saved, and the request must fail rather than pretend it was.
      if (this.isModified(current)) return Promise.reject(readOnlyFault('save the session'));
      this.engine.emit({ type: 'touch-skipped', key: this.key }, this.host);
      return null;
    }
    if (this.shouldSave(current)) return this.persist(session, current);
    if (this.cookieId === this.id && this.persisted) this.touchStore(session, current);
    return null;
  }

  private async persist(session: Session & Partial<SessionData>, current: Snapshot): Promise<void> {
    const { opts, engine } = this;
    const now = opts.now();
    const data = toJSON(session, current);
    const userId = userIdOf(data);
    const expiresAt = engine.expiresAt(now, this.createdAt, session.cookie, this.cookieOptions);
    if (!this.persisted) {
      const record: SessionRecord = {
        data,
        expiresAt,
        createdAt: this.createdAt,
        lastActiveAt: now,
        userId,
        version: 0,
      };
      await engine.run('save the session', () => opts.store.create(this.key, record, { id: this.id }));
      this.persisted = true;
      engine.emit({ type: 'created', key: this.key, userId }, this.host);
    } else {
      const base = this.savedSnap ?? this.originalSnap;
      const set: Record<string, unknown> = { cookie: data.cookie };
      const unset: string[] = [];
      for (const [k, json] of current) if (base.get(k) !== json) set[k] = data[k];
      for (const k of base.keys()) if (!current.has(k)) unset.push(k);
      const stored = await engine.run('save the session', () =>
        opts.store.update(
          this.key,
          {
            set,
            unset,
            data,
            expiresAt,
            lastActiveAt: now,
            userId,
            baseVersion: this.version,
          },
          { id: this.id },
        ),
      );
      if (!stored) {
        // Destroyed meanwhile (logout or revocation elsewhere): that wins; never resurrect it.
        this.persisted = false;
        this.host.session = undefined;
        this.clearCookie = true;
        engine.emit({ type: 'lost', key: this.key, userId }, this.host);
        return;
      }
      this.version = stored.version;
      engine.emit({ type: 'saved', key: this.key, userId }, this.host);
    }
    this.lastActiveAt = now;
    this.savedSnap = current;
    this.savedIsOriginal = false;
    engine.undefer(this.key);
  }

  /** Record activity, at most once per touchAfter, without holding up the response. */
  /** `current`: the session's snapshot if the caller has it (built here only if a store needs it). */
  private touchStore(session: Session, current: Snapshot | undefined): void {
    const { opts, engine } = this;
    const now = opts.now();
    const expiresAt = engine.expiresAt(now, this.createdAt, session.cookie, this.cookieOptions);
    if (now - this.lastActiveAt < opts.touchAfter) {
      // Written later only if nothing else writes it first: on shutdown (flush({ touches: true })).
      // The session's JSON is kept only for stores that need it, off the hot path otherwise.
      const lazy = opts.store.tracksActivity === false ? this.touchState(session, current) : undefined;
      // Serialized now: by shutdown the app may have changed the object.
      const state = lazy && { data: lazy.data, createdAt: lazy.createdAt, version: lazy.version };
      engine.defer(this.key, { expiresAt, lastActiveAt: now, state, id: this.id });
      engine.emit({ type: 'touch-skipped', key: this.key }, this.host);
      return;
    }
    const key = this.key;
    this.lastActiveAt = now;
    engine.undefer(key);
    // The session goes along for stores that derive their expiry from it (express-session stores)
    // and for the app's own `store.touch`, which gets what express-session hands it.
    engine.background(
      opts.store.touch(key, expiresAt, now, this.touchState(session, current), { id: this.id }),
      key,
    );
    engine.emit({ type: 'touched', key }, this.host);
  }

  /** The session as a store's `touch` is handed it; its JSON is only built if a store reads it. */
  private touchState(session: Session, current: Snapshot | undefined): DeferredTouch['state'] {
    let data: SessionJSON | undefined;
    return {
      get data() {
        data ??= toJSON(session, current ?? snapshot(session));
        return data;
      },
      createdAt: this.createdAt,
      version: this.version,
    };
  }

  /** `unset: 'destroy'`: the request dropped `req.session`. */
  private async destroyStored(): Promise<void> {
    const userId = this.host.session ? userIdOf(this.host.session as unknown as SessionJSON) : null;
    const { key, id } = this;
    if (!this.persisted) {
      // express-session asks the store to destroy even a session it never stored, or one this
      // request destroyed already.
      await this.engine.run('destroy the session', () =>
        this.opts.store.destroy(key, { id, alreadyGone: true }),
      );
      return;
    }
    await this.engine.run('destroy the session', () => this.opts.store.destroy(key, { id }));
    this.engine.undefer(key);
    this.persisted = false;
    // Only once the row is gone: a fault must never clear the cookie.
    this.clearCookie = true;
    this.engine.emit({ type: 'destroyed', key, userId }, this.host);
  }

  /**
   * The Set-Cookie value for this response, or null. Called when headers are written, after
   * `commit()`. express-session's rules, plus: a destroyed or expired session's cookie is deleted,
   * and a cookie signed with an old secret is re-signed with the current one.
   */
  setCookieHeader(): string | null {
    const { opts } = this;
    // Degraded mode: nothing was stored, so nothing is refreshed, replaced or cleared.
    if (this.readOnly) return null;
    // As express-session: no cookie without a session id.
    if (typeof this.host.sessionID !== 'string') return null;
    const session = this.host.session;
    if (!session || !this.shouldSetCookie(session)) {
      return this.clearCookie && this.cookieRaw !== undefined
        ? this.engine.clearCookieHeader(this.secure, this.cookieOptions)
        : null;
    }
    // A prefixed cookie without Secure would be rejected by the browser: treat it as Secure.
    if ((session.cookie.secure === true || this.engine.securePrefixed) && !this.secure) {
      opts.onInsecureRequest?.(session.cookie.secure === true ? 'secure' : 'prefix');
      return null;
    }
    this.touchCookie(session);
    const value =
      this.cookieId === this.id && this.cookieSecretIndex === 0 && this.cookieRaw !== undefined
        ? this.cookieRaw
        : SIGNED_PREFIX + sign(this.id, this.secrets[0]!);
    return session.cookie.serialize(opts.name, value);
  }

  private shouldSetCookie(session: Session): boolean {
    const { opts } = this;
    if (this.cookieId !== this.id) {
      return opts.saveUninitialized || this.persisted || this.isModified(snapshot(session));
    }
    if (this.cookieSecretIndex > 0) return true;
    return opts.rolling || (session.cookie.expires != null && this.modifiedNow(session));
  }

  // ---- SessionController: the methods behind req.session.save() & co ----

  /** Run session methods one at a time; the first starts synchronously, as in express-session. */
  private serial(op: () => Promise<void>): Promise<void> {
    const run = this.inflight ? this.inflight.then(op) : op();
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.inflight = settled;
    void settled.then(() => {
      if (this.inflight === settled) this.inflight = undefined;
    });
    return run;
  }

  save(): Promise<void> {
    return this.serial(() => this.saveNow());
  }

  reload(): Promise<void> {
    return this.serial(() => this.reloadNow());
  }

  destroy(): Promise<void> {
    return this.serial(() => this.destroyNow());
  }

  regenerate(options: RegenerateOptions): Promise<void> {
    return this.serial(() => this.regenerateNow(options));
  }

  private async saveNow(): Promise<void> {
    const session = this.host.session;
    if (!session) throw new SessionStateError('cannot save a destroyed session');
    const current = snapshot(session);
    if (this.readOnly) {
      if (this.isModified(current)) throw readOnlyFault('save the session');
      return;
    }
    await this.persist(session, current);
  }

  private async reloadNow(): Promise<void> {
    const record = await this.engine.run('reload the session', () =>
      this.opts.store.get(this.key, { fresh: true, id: this.id }),
    );
    if (!record) throw new SessionStateError('failed to load session');
    this.inflate(this.id, this.key, record);
  }

  private async destroyNow(): Promise<void> {
    // Degraded mode: a logout that cannot reach the store fails (503) and leaves everything be.
    if (this.readOnly) throw readOnlyFault('destroy the session');
    const wasPersisted = this.persisted;
    const userId = this.host.session ? userIdOf(this.host.session as unknown as SessionJSON) : null;
    this.host.session = undefined;
    const { key, id } = this;
    if (wasPersisted) {
      await this.engine.run('destroy the session', () => this.opts.store.destroy(key, { id }));
      this.engine.undefer(key);
      this.persisted = false;
      this.engine.emit({ type: 'destroyed', key, userId }, this.host);
    } else {
      // express-session asks the store to destroy even a session it never stored.
      await this.engine.run('destroy the session', () =>
        this.opts.store.destroy(key, { id, alreadyGone: true }),
      );
    }
    // Only once the row is gone: a failed logout must not look like a successful one.
    this.clearCookie = true;
  }

  private async regenerateNow(options: RegenerateOptions): Promise<void> {
    if (this.readOnly) throw readOnlyFault('regenerate the session');
    const previous = this.host.session;
    const previousKey = this.key;
    let keep: Record<string, unknown> | undefined;
    if (previous && options.keep) {
      keep = {};
      const names = options.keep === true ? Object.keys(previous) : options.keep;
      for (const k of names) if (k !== 'cookie' && k in previous) keep[k] = previous[k];
    }
    const previousId = this.id;
    if (this.persisted) {
      await this.engine.run('destroy the old session', () =>
        this.opts.store.destroy(previousKey, { id: previousId }),
      );
      this.engine.undefer(previousKey);
    } else {
      // express-session's Store#regenerate destroys even a session it never stored.
      await this.engine.run('destroy the old session', () =>
        this.opts.store.destroy(previousKey, { id: previousId, alreadyGone: true }),
      );
    }
    const originalId = this.originalId;
    this.generate(keep);
    // As in express-session, the request's original id stays the reference: a regenerated
    // session counts as modified, so it is saved and its cookie sent even when empty.
    this.originalId = originalId;
    this.touched = false;
    this.engine.emit(
      {
        type: 'renewed',
        key: this.key,
        previousKey,
        userId: userIdOf((this.host.session ?? {}) as SessionJSON),
      },
      this.host,
    );
  }
}

function toJSON(session: Session, snap: Snapshot): SessionJSON {
  const data: SessionJSON = { cookie: session.cookie.toJSON() as SessionJSON['cookie'] };
  for (const key of snap.keys()) data[key] = JSON.parse(snap.get(key)!);
  // Dates inside the cookie become ISO strings, as in the stored JSON.
  const expires = data.cookie.expires as unknown;
  if (expires instanceof Date) data.cookie.expires = expires.toISOString();
  return data;
}
