/**
 * The framework-agnostic session engine. One per middleware instance: `load()` once per request
 * reads the cookie, verifies it, loads the session and returns the request's
 * {@link RequestSession}, whose `commit()` runs before the response headers leave and whose
 * `setCookieHeader()` gives the Set-Cookie value (or null). The engine also owns the work that
 * outlives a request: background touches, deferred activity, and `flush()` on shutdown.
 */
import { parse as parseCookies } from 'cookie';
import { LRUCache } from 'lru-cache';
import type { CookieOptions } from './cookie.js';
import { validateCookieOptions } from './cookie.js';
import {
  type DeviceEndpointRequest,
  type DeviceEndpointResponse,
  type DeviceEndpointServices,
  type FoundSession,
  refresh,
  register,
} from './device-bound.js';
import { type BoundCookieProblem, boundCookieExpiry } from './device-tokens.js';
import type { DeferredTouch, EngineOptions, EngineServices } from './engine-options.js';
import { backgroundFault, runStore, storeFault } from './faults.js';
import { hashId } from './id.js';
import { expiredReason } from './lifetime.js';
import { RequestSession } from './request-session.js';
import type { SessionHost } from './session.js';
import { type Secret, SIGNED_PREFIX, sign, unsignWithIndex } from './signature.js';
import type { SessionRecord } from './store.js';

export type { EngineOptions, SessionEvent } from './engine-options.js';

/** Cookie values longer than this are never a session of ours; skip the HMAC. */
const MAX_COOKIE_VALUE = 4096;
/** Most verified cookie values remembered (~300 B each). */
const VERIFIED_MEMO_MAX = 10_000;
/** Longer verified values are not remembered (a default cookie value is 89 characters). */
const VERIFIED_MEMO_VALUE_MAX = 256;
/** A full memo takes one new value in this many (a power of two). */
const FULL_MEMO_ADMIT_ONE_IN = 8;

/**
 * Remember `value` under `key` in a verified-value memo. A full memo takes only one new value in
 * {@link FULL_MEMO_ADMIT_ONE_IN}: when more sessions are active than the memo holds, a plain LRU
 * would evict on every miss the value that is needed next (each round-robin pass would miss on
 * every request); admitting a few keeps most of the memo hitting, and new values still get in.
 */
function remember<V extends {}>(memo: LRUCache<string, V>, key: string, value: V, admitted: number): void {
  if (memo.size < VERIFIED_MEMO_MAX || (admitted & (FULL_MEMO_ADMIT_ONE_IN - 1)) === 0) memo.set(key, value);
}
/** Most throttled touches remembered for {@link SessionEngine.flush} `{ touches: true }`. */
const MAX_DEFERRED_TOUCHES = 10_000;
/** Deferred touches written at once on shutdown. */
const FLUSH_CONCURRENCY = 8;

/** A session cookie whose signature verified, and the storage key of its id. Shared: read-only. */
interface VerifiedCookie {
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
  /** The `Secure-Session-Skipped` request header, with `deviceBound` on (reported with unbound requests). */
  deviceSkipped?: string | undefined;
}

/** The session cookie in cookie-parser's `req.signedCookies` (an id it verified) and `req.cookies` (a value). */
export interface ParsedCookies {
  signedId?: unknown;
  raw?: unknown;
}

export class SessionEngine {
  readonly options: EngineOptions;
  /** Background work (touches) still running, for flush(). */
  readonly #pending = new Set<Promise<unknown>>();
  /** Background touches still running, by key (see {@link load}). */
  readonly #touching = new Map<string, Promise<unknown>>();
  /**
   * Activity that touch throttling has not written yet, by key: the latest request of each
   * session seen since its last write. Written by `flush({ touches: true })` (graceful
   * shutdown), so the row's `last_active_at` reflects the last request. Bounded (oldest first).
   */
  readonly #deferred = new Map<string, DeferredTouch>();
  /**
   * Cookie values that verified, most recently used last: a returning cookie skips the HMAC
   * (and, with hashed ids, the SHA-256 of its id).
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
  readonly #verified = new LRUCache<string, VerifiedCookie>({ max: VERIFIED_MEMO_MAX });
  /** Values verified and not found in a memo, counted for {@link remember}. */
  #memoMisses = 0;
  /**
   * Bound cookies (DBSC) whose MAC verified, with the storage key they are for and their
   * expiry: a returning one skips the HMAC. Safe for the same reasons as {@link #verified}: only
   * verified values are stored, a hit needs the exact string, and the key and expiry are still
   * compared on every request.
   */
  readonly #boundVerified = new LRUCache<string, { key: string; expiresAt: number }>({
    max: VERIFIED_MEMO_MAX,
  });
  /** What request sessions may use of the engine. */
  readonly #services: EngineServices;

  constructor(options: EngineOptions) {
    this.options = options;
    this.#services = {
      options,
      keyOf: (id) => this.keyOf(id),
      background: (work, key) => this.#background(work, key),
      defer: (key, touch) => this.#defer(key, touch),
      undefer: (key) => this.#undefer(key),
    };
  }

  /** The storage key for an id (its SHA-256 unless ids are stored raw). */
  keyOf(id: string): string {
    return this.options.hashIds ? hashId(id) : id;
  }

  /** The cookie options for one request: the static ones, or the result of the `cookie` function. */
  cookieOptionsFor(host: SessionHost): CookieOptions {
    const { cookieFor, name, cookie } = this.options;
    return cookieFor ? validateCookieOptions(name, cookieFor(host)) : cookie;
  }

  /**
   * Attach a session to `host` for this request. Rejects (StoreUnavailableError) when the store
   * fails: a fault must never be mistaken for "no session", which would log the user out.
   */
  load(host: SessionHost, request: LoadRequest): Promise<RequestSession> {
    try {
      const ctx = this.attach(host, request);
      return ctx instanceof RequestSession ? Promise.resolve(ctx) : ctx;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * {@link load}, answered synchronously when it can be: with no cookie, a forged one, or a
   * session the store holds in memory ({@link SessionStore.peek}: the steady request of a cached
   * store), the request's session comes back at once, and the adapter carries on without a
   * promise or a turn of the event loop. Otherwise a promise, as from `load`. May throw a
   * ConfigError (a bad `cookie` function result); store faults always arrive as a rejection.
   */
  attach(host: SessionHost, request: LoadRequest): RequestSession | Promise<RequestSession> {
    const secrets = request.secrets ?? this.options.secrets;
    const ctx = new RequestSession(
      this.#services,
      host,
      request.secure,
      request.cookie ?? this.cookieOptionsFor(host),
      secrets,
    );
    const raw = this.#rawCookie(request.cookieHeader, ctx);
    let cookie = raw === undefined ? null : this.#verify(raw, secrets);
    if (!cookie && request.parsedCookies) cookie = this.#fromParsedCookies(request.parsedCookies, secrets);
    if (raw !== undefined && !cookie)
      this.#emit({ type: 'invalid-cookie', reason: 'signature', key: null }, host);
    if (!cookie) {
      // No cookie, or a forged one: a fresh id, never the presented one (an attacker-chosen id is
      // never adopted).
      ctx.generate();
      return ctx;
    }
    ctx.presentedCookie(cookie);
    // The previous request's touch of this session may still be running: let it land first, or
    // the activity it records would be missing and an active session could look idle.
    const touching = this.#touching.get(cookie.key);
    const found = cookie;
    if (touching) return touching.then(() => this.#read(ctx, host, found, request));
    const peeked = this.#peek(cookie);
    // A session that looks expired takes the store's own read (#settle re-reads it fresh).
    return (
      (peeked && this.#live(ctx, host, cookie, peeked, request)) || this.#read(ctx, host, found, request)
    );
  }

  /** Attach `record` if it is live; null if it looks expired (then {@link #settle} decides). */
  #live(
    ctx: RequestSession,
    host: SessionHost,
    cookie: VerifiedCookie,
    record: SessionRecord,
    request: LoadRequest,
  ): RequestSession | null {
    if (expiredReason(this.options, record, ctx.cookieOptions)) return null;
    if (record.device) return this.#attachBound(ctx, host, cookie, record, request);
    ctx.inflate(cookie.id, cookie.key, record);
    return ctx;
  }

  /** The store's in-memory copy of the cookie's session, if it has one (a fault counts as none). */
  #peek(cookie: VerifiedCookie): SessionRecord | undefined {
    const { store } = this.options;
    if (!store.peek) return undefined;
    try {
      return store.peek(cookie.key, { id: cookie.id });
    } catch {
      // The read that follows reports the fault.
      return undefined;
    }
  }

  #read(
    ctx: RequestSession,
    host: SessionHost,
    cookie: VerifiedCookie,
    request: LoadRequest,
  ): Promise<RequestSession> {
    return this.#query(cookie.key, cookie.id, false).then(
      (record) =>
        (record && this.#live(ctx, host, cookie, record, request)) ||
        this.#settle(ctx, host, cookie, record, request),
      (err: unknown) => {
        throw storeFault('load the session', err);
      },
    );
  }

  /** A presented cookie whose session is unknown, or looks expired. */
  async #settle(
    ctx: RequestSession,
    host: SessionHost,
    cookie: VerifiedCookie,
    found: SessionRecord | null,
    request: LoadRequest,
  ): Promise<RequestSession> {
    const key = cookie.key;
    let record = found;
    if (!record) this.#emit({ type: 'invalid-cookie', reason: 'unknown', key }, host);
    if (record) {
      // A cached copy may lag another server's activity: confirm with the store before killing it.
      record = await this.#get(key, cookie.id, true);
      const reason = record && expiredReason(this.options, record, ctx.cookieOptions);
      if (record && reason) {
        await runStore('destroy an expired session', () => this.options.store.destroy(key));
        this.#emit({ type: 'expired', key, userId: record.userId, reason }, host);
        record = null;
        ctx.clearCookie = true;
      }
    }
    if (record) {
      if (record.device) return this.#attachBound(ctx, host, cookie, record, request);
      ctx.inflate(cookie.id, key, record);
      return ctx;
    }
    // A cookie we signed whose session the store no longer serves (expired, revoked, logged out
    // elsewhere): tell the browser to forget it, and delete any expired row still waiting for
    // the pruner, so an expired session is destroyed on sight, not just ignored. (Stores written
    // for express-session keep express-session's behaviour: their TTL already removed it.)
    if (this.options.store.tracksActivity !== false) {
      ctx.clearCookie = true;
      this.#background(this.options.store.destroy(key));
    }
    // A fresh id, never the presented one.
    ctx.generate();
    return ctx;
  }

  /**
   * A session bound to a device key (DBSC): attached if the request carries a valid bound cookie
   * (one HMAC, no store call); otherwise reported, and under enforce `'require'` the request is
   * served as having no session, without touching the stored one or its cookie (the browser
   * refreshes the bound cookie and comes back).
   */
  #attachBound(
    ctx: RequestSession,
    host: SessionHost,
    cookie: VerifiedCookie,
    record: SessionRecord,
    request: LoadRequest,
  ): RequestSession {
    const bound = this.options.deviceBound;
    if (bound && bound.enforce !== 'off') {
      const problem = this.#checkBound(ctx.boundCookie, cookie.key);
      if (problem) {
        const refused = bound.enforce === 'require';
        this.#emit(
          {
            type: 'device-unbound-request',
            key: cookie.key,
            userId: record.userId,
            reason: problem,
            action: refused ? 'refused' : 'reported',
            ...(request.deviceSkipped ? { skipped: request.deviceSkipped.slice(0, 200) } : {}),
          },
          host,
        );
        if (refused) {
          ctx.refuseForDevice();
          return ctx;
        }
      }
    }
    ctx.inflate(cookie.id, cookie.key, record);
    return ctx;
  }

  /** Why `value` is not a valid bound cookie for `key` now (null: it is one). */
  #checkBound(value: string | undefined, key: string): BoundCookieProblem | null {
    const now = this.options.now();
    const known = value === undefined ? undefined : this.#boundVerified.get(value);
    if (known !== undefined) {
      if (known.key !== key) return 'invalid';
      return known.expiresAt > now ? null : 'expired';
    }
    const expiresAt = boundCookieExpiry(value, key, this.options.secrets);
    if (typeof expiresAt !== 'number') return expiresAt;
    if (expiresAt <= now) return 'expired';
    remember(this.#boundVerified, value!, { key, expiresAt }, ++this.#memoMisses);
    return null;
  }

  // ---- Device-bound sessions (DBSC): the registration and refresh endpoints ----

  /** Which DBSC endpoint `pathname` is, if any (always null with `deviceBound` off). */
  deviceEndpoint(pathname: string): 'register' | 'refresh' | null {
    const bound = this.options.deviceBound;
    if (!bound) return null;
    return pathname === bound.registrationPath
      ? 'register'
      : pathname === bound.refreshPath
        ? 'refresh'
        : null;
  }

  /**
   * Answer a request to a DBSC endpoint (adapters send the answer as is, without running the
   * app). Bad input is a 4xx; a store fault rejects with StoreUnavailableError (answer 503: the
   * browser keeps its session and retries later).
   */
  handleDeviceEndpoint(
    endpoint: 'register' | 'refresh',
    host: SessionHost,
    request: DeviceEndpointRequest,
  ): Promise<DeviceEndpointResponse> {
    const { deviceBound: bound, store, secrets, now } = this.options;
    if (!bound) return Promise.reject(new Error('pgsession: deviceBound is off'));
    const services: DeviceEndpointServices = {
      bound,
      store,
      secrets,
      now,
      emit: (event) => this.#emit(event, host),
      find: (r) => this.#findForDevice(r, host),
    };
    return (endpoint === 'register' ? register : refresh)(services, request);
  }

  /** The live session a DBSC endpoint request names by its session cookie, read fresh. */
  async #findForDevice(request: DeviceEndpointRequest, host: SessionHost): Promise<FoundSession | null> {
    const raw = this.#rawCookie(request.cookieHeader);
    const cookie = raw === undefined ? null : this.#verify(raw, this.options.secrets);
    if (!cookie) return null;
    const record = await this.#get(cookie.key, cookie.id, true);
    if (!record) return null;
    const options = this.cookieOptionsFor(host);
    if (expiredReason(this.options, record, options)) return null;
    return { key: cookie.key, record, cookie: options };
  }

  /**
   * Wait for background writes to finish. With `touches: true` (graceful shutdown), first write
   * the activity that touch throttling deferred, so each row's `last_active_at` reflects its
   * session's last request; if the store fails (an outage), the rest are dropped at once rather
   * than holding up the shutdown, and the failure goes to `onBackgroundError`.
   */
  async flush(options: { touches?: boolean } = {}): Promise<void> {
    if (options.touches && this.#deferred.size > 0) {
      const work = [...this.#deferred];
      this.#deferred.clear();
      const { store } = this.options;
      let failed = false;
      for (let i = 0; i < work.length && !failed; i += FLUSH_CONCURRENCY) {
        await Promise.all(
          work.slice(i, i + FLUSH_CONCURRENCY).map(([key, t]) =>
            store.touch(key, t.expiresAt, t.lastActiveAt, t.state, { id: t.id }).catch((err: unknown) => {
              if (!failed) this.options.onBackgroundError?.(backgroundFault(err));
              failed = true;
            }),
          ),
        );
      }
    }
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }

  // ---- Reading the cookie ----

  /** The session cookie's value as sent, or undefined when there is none. */
  #rawCookie(cookieHeader: string | undefined, ctx?: RequestSession): string | undefined {
    if (!cookieHeader || cookieHeader.indexOf(this.options.name) === -1) return undefined;
    try {
      const parsed = parseCookies(cookieHeader);
      // With `deviceBound` on, the bound cookie comes from the same parse (for #attachBound).
      const bound = this.options.deviceBound;
      if (ctx && bound) ctx.boundCookie = parsed[bound.cookieName];
      return parsed[this.options.name] || undefined;
    } catch {
      // A header the parser refuses carries no usable session cookie: treat it as a bad one.
      return '';
    }
  }

  /**
   * `raw` verified with `secrets`, or null if it is not a value we signed. Remembered (see
   * {@link #verified}) only with the configured secrets, which never change; per-request ones
   * (cookie-parser's `req.secret`) are checked every time.
   */
  #verify(raw: string, secrets: readonly Secret[]): VerifiedCookie | null {
    const memo = secrets === this.options.secrets;
    const known = memo ? this.#verified.get(raw) : undefined;
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
    if (memo && raw.length <= VERIFIED_MEMO_VALUE_MAX)
      remember(this.#verified, raw, Object.freeze(cookie), ++this.#memoMisses);
    return cookie;
  }

  /**
   * express-session's fall-backs when the Cookie header has no valid session cookie: an id
   * cookie-parser already verified (`req.signedCookies`), then a signed value it parsed
   * (`req.cookies`), verified here.
   */
  #fromParsedCookies(parsed: ParsedCookies, secrets: readonly Secret[]): VerifiedCookie | null {
    const id = parsed.signedId;
    if (typeof id === 'string' && id.length > 0 && id.length <= MAX_COOKIE_VALUE && secrets.length > 0) {
      return { id, raw: SIGNED_PREFIX + sign(id, secrets[0]!), secretIndex: 0, key: this.keyOf(id) };
    }
    const raw = parsed.raw;
    return typeof raw === 'string' && raw.length > 0 ? this.#verify(raw, secrets) : null;
  }

  /** {@link #query}, with its failure as a store fault (as {@link runStore}). */
  #get(key: string, rawId: string, fresh: boolean): Promise<SessionRecord | null> {
    return this.#query(key, rawId, fresh).then(undefined, (err: unknown) => {
      throw storeFault('load the session', err);
    });
  }

  /** The store's read of a session; its failure as the store gave it (a synchronous throw rejects). */
  #query(key: string, rawId: string, fresh: boolean): Promise<SessionRecord | null> {
    const options: { legacyKey?: string; fresh?: boolean; id?: string } = {};
    if (this.options.hashIds) options.legacyKey = rawId;
    // The re-read of a session that looks expired is ours alone: express-session reads once.
    if (fresh) options.fresh = true;
    else options.id = rawId;
    // Without runStore's closure and async frame: this is every request's one store call.
    try {
      return this.options.store.get(key, options);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #emit(event: Parameters<NonNullable<EngineOptions['onEvent']>>[0], host: SessionHost | undefined): void {
    this.options.onEvent?.(event, host);
  }

  // ---- Work that outlives a request ----

  #background(work: Promise<unknown>, key?: string): void {
    const tracked = work.catch((err) => this.options.onBackgroundError?.(backgroundFault(err)));
    this.#pending.add(tracked);
    if (key !== undefined) this.#touching.set(key, tracked);
    void tracked.finally(() => {
      this.#pending.delete(tracked);
      if (key !== undefined && this.#touching.get(key) === tracked) this.#touching.delete(key);
    });
  }

  #defer(key: string, touch: DeferredTouch): void {
    const known = this.#deferred.get(key);
    if (known) {
      known.expiresAt = touch.expiresAt;
      known.lastActiveAt = touch.lastActiveAt;
      known.state = touch.state;
      known.id = touch.id;
      return;
    }
    if (this.#deferred.size >= MAX_DEFERRED_TOUCHES) {
      const oldest = this.#deferred.keys().next().value;
      if (oldest !== undefined) this.#deferred.delete(oldest);
    }
    this.#deferred.set(key, touch);
  }

  #undefer(key: string): void {
    if (this.#deferred.size > 0) this.#deferred.delete(key);
  }
}
