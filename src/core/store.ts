/**
 * The store contract the core engine talks to.
 *
 * Keys are *storage keys*: by default the SHA-256 (base64url) of the session id, so a leaked
 * table cannot be replayed as cookies. The engine hashes; stores never persist raw ids. The raw
 * id reaches a store only as `legacyKey` (looking up a row written by connect-pg-simple /
 * express-session) and as `id` in {@link StoreCallOptions}, for the layer that calls a store's
 * express-session face (which takes ids, as express-session passes them) and never for storage.
 *
 * All times are milliseconds since the epoch, taken from the app server's clock (`Date.now()`),
 * as connect-pg-simple does. The database clock is never compared against them.
 */
import type { StoredData } from './stored-data.js';

/** express-session's JSON form of the cookie, stored inside `sess.cookie`. */
export interface CookieJSON {
  originalMaxAge: number | null;
  expires?: string | null;
  secure?: boolean | undefined;
  httpOnly?: boolean | undefined;
  domain?: string | undefined;
  path?: string | undefined;
  sameSite?: boolean | 'lax' | 'strict' | 'none' | undefined;
  partitioned?: boolean | undefined;
  priority?: 'low' | 'medium' | 'high' | undefined;
}

/** A session as express-session serializes it: the app's keys plus `cookie`. */
export interface SessionJSON {
  cookie: CookieJSON;
  [key: string]: unknown;
}

/** One session at rest. */
export interface SessionRecord {
  /** The `sess` column: app data plus `cookie`. */
  data: SessionJSON;
  /** When the store may forget the session (the `expire` column). */
  expiresAt: number;
  /** When the session was created; the absolute timeout counts from here. */
  createdAt: number;
  /** The last time activity was recorded (throttled); the idle timeout counts from here. */
  lastActiveAt: number;
  /** Who the session belongs to, for listing and revocation; null for anonymous sessions. */
  userId: string | null;
  /** Bumped by every data write; lets a cache tell a stale copy from a current one. */
  version: number;
  /**
   * Set by a caching layer that answers from a last-known-good copy because the database cannot
   * be reached (degraded mode, docs/reliability.md). The engine serves such a session but refuses
   * every write for the request (`StoreUnavailableError`, 503), skips its touch and sends no
   * Set-Cookie. Stores never persist it.
   */
  readOnly?: boolean | undefined;
  /**
   * Optional, from `get` only: the JSON text `data` was just parsed from, exactly
   * `JSON.stringify(data)`, when the store has it anyway (the cache keeps sessions as text). The
   * engine then detects changes against it without serializing the session on load. Stores
   * never persist it; leave it out rather than give a text that differs from `data`.
   */
  json?: string | undefined;
  /**
   * Optional, from `get` and `peek` only: the same data as `data`, split by top-level key, when
   * the store keeps it that way (the cache does). The engine then copies and compares the
   * session key by key instead of reading `data`, so a store may make `data` a lazy property.
   * Stores never persist it.
   */
  stored?: StoredData | undefined;
  /**
   * The device key the session is bound to (DBSC, the `deviceBound` option), or null/absent
   * when it is not bound. Stored apart from `data`: only {@link SessionStore.bindDevice} writes
   * it, so no save of the session's data can lose or bring back a binding. A session created
   * by `create` (a login, a renewed id) starts unbound.
   */
  device?: DeviceBinding | null | undefined;
}

/** The stored cookie of a record: from its split data when the store gave it, else from `data`. */
export function storedCookieOf(record: SessionRecord): CookieJSON | undefined {
  return record.stored ? record.stored.cookie : record.data.cookie;
}

/** A session's device binding (W3C Device Bound Session Credentials), as stored. */
export interface DeviceBinding {
  /** The device's public key: only the public members of its JWK. */
  jwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string } | { kty: 'RSA'; n: string; e: string };
  /** The algorithm the key signs with. */
  alg: 'ES256' | 'RS256';
  /** The DBSC session identifier the browser knows the binding by (`Sec-Secure-Session-Id`). */
  id: string;
  /** When the key was registered (epoch ms). */
  boundAt: number;
  /**
   * The issue time of the last challenge accepted (registration or refresh): a challenge issued
   * at or before it is refused, so each challenge is good once.
   */
  challengeAt: number;
}

/** A change to an existing session, expressed as top-level keys so concurrent writers merge. */
export interface SessionChange {
  /** Top-level keys whose value changed or appeared, with the new values. */
  set: Record<string, unknown>;
  /** Top-level keys the request deleted. */
  unset: string[];
  /** The whole session after the change, for stores that can only replace (express-session stores). */
  data: SessionJSON;
  expiresAt: number;
  lastActiveAt: number;
  userId: string | null;
  /** The version the request loaded; stores may use it to detect that another writer came first. */
  baseVersion: number;
}

/** Metadata recorded for "your sessions" pages; all optional. */
export interface SessionListing {
  key: string;
  record: SessionRecord;
}

/**
 * Said by the engine with each call that express-session would make too (`store.get`/`set`/
 * `touch`/`destroy` with the session id), so a store written for express-session — or one of
 * ours whose methods the app has wrapped — is called where, and with what, express-session
 * would call it. Calls without `id` are pgsession's own housekeeping (re-reading a session that
 * looks expired, deleting an expired row): express-session makes no such call, so they go to the
 * engine face only. Engine-face stores ignore these options.
 */
export interface StoreCallOptions {
  /** The session id (what express-session passes as `sid`). */
  id?: string | undefined;
  /**
   * `destroy` only: the store holds nothing under this id — the session was never stored, or
   * this request destroyed it already. express-session still calls `store.destroy` then (on
   * `regenerate()`, `destroy()` or `unset: 'destroy'` of a brand-new session, and again at the
   * end of a request that destroyed it under `unset: 'destroy'`). pgsession's own stores skip
   * such a no-op; stores written for express-session are called, as by it.
   */
  alreadyGone?: boolean | undefined;
}

/**
 * What the engine needs from a store. Every method rejects on a store fault (the engine turns
 * that into `next(err)` / 503 — never into "no session", which would log the user out).
 */
export interface SessionStore {
  /**
   * Load a live (not expired) session, or null. When `legacyKey` is given and no row has `key`,
   * the store looks the legacy key up and, if found, re-keys that row to `key` atomically.
   * `fresh` asks caching layers to bypass their cache (the engine does before destroying a
   * session that looks expired, since a cached copy may lag another server's activity).
   * The returned record belongs to the caller: mutating it must not affect the store.
   */
  get(
    key: string,
    options?: { legacyKey?: string; fresh?: boolean; id?: string | undefined },
  ): Promise<SessionRecord | null>;
  /**
   * Optional: the live session `get` would return, if this store holds it in memory and can say
   * so without waiting (a cache hit); undefined when only `get` can answer (not held, not
   * serving, or held but expired). Never a substitute for `get`'s null: a miss always goes
   * through `get`. The returned record belongs to the caller, as `get`'s does.
   */
  peek?(key: string, options?: { id?: string | undefined }): SessionRecord | undefined;
  /** Insert a new session. A key collision is an error (ids have 256 bits; it means a bug). */
  create(key: string, record: SessionRecord, options?: StoreCallOptions): Promise<void>;
  /**
   * Apply a change to an existing session. Never creates a row: if the session was destroyed
   * meanwhile (a concurrent logout), nothing is written and null is returned — the logout wins.
   * Otherwise returns the record as stored after the change (merged with concurrent writers).
   */
  update(key: string, change: SessionChange, options?: StoreCallOptions): Promise<SessionRecord | null>;
  /**
   * Extend the expiry of an existing session without rewriting its data. False if it is gone.
   * `current` is the session as the request sees it; stores that can only touch by handing the
   * session over (express-session stores derive the expiry from `data.cookie`) use it.
   */
  touch(
    key: string,
    expiresAt: number,
    lastActiveAt: number,
    current?: { data: SessionJSON; createdAt: number; version: number },
    options?: StoreCallOptions,
  ): Promise<boolean>;
  /**
   * Delete a session. Deleting a missing session is not an error. `legacyKey`: also a row kept
   * under the raw id (stores that re-key legacy rows; the engine never needs it).
   */
  destroy(key: string, options?: StoreCallOptions & { legacyKey?: string }): Promise<void>;
  /**
   * Optional (the `deviceBound` option needs it): set or clear a live session's device binding
   * without touching its data, expiry or activity. With `binding` set, it is written only when
   * the session has no binding or one whose `challengeAt` is earlier than `binding.challengeAt`
   * (so two uses of one challenge cannot both succeed); the check and the write are one atomic
   * step. Returns false when the session is gone or the condition failed. Caching layers must
   * not serve the old binding afterwards.
   */
  bindDevice?(key: string, binding: DeviceBinding | null): Promise<boolean>;
  /** Optional: every live session of a user. */
  listByUser?(userId: string): Promise<SessionListing[]>;
  /** Optional: delete every session of a user, except `exceptKey`. Returns how many were deleted. */
  destroyByUser?(userId: string, exceptKey?: string): Promise<number>;
  /** Optional: delete expired sessions; returns how many were deleted. */
  prune?(): Promise<number>;
  /** Release timers, listeners and pools this store created. */
  close?(): Promise<void>;
  /**
   * False when `touch` cannot record `lastActiveAt` (stores written for express-session keep
   * only a TTL): the engine then leaves the idle timeout to the store's own expiry.
   */
  readonly tracksActivity?: boolean;
  /**
   * True for stores that keep sessions in this process's memory (`MemoryStore`): a write costs
   * nothing, so the engine does not throttle touches by default.
   */
  readonly inProcess?: boolean;
}

/**
 * Stores that keep a cross-process cache (or are the cache) expose whether they can currently
 * vouch for cached data; the engine reads through when they cannot.
 */
export interface StoreEvents {
  /** Emitted when the store cannot serve requests (express-session's `disconnect`). */
  disconnect: [];
  /** Emitted when the store can serve requests again. */
  connect: [];
}

/**
 * An error a store written for express-session gave its callback, on its way to `next(err)`
 * unchanged, as express-session passes it (the app's error handler may know that store's
 * errors). Adapters throw it; the engine unwraps it instead of turning it into a
 * `StoreUnavailableError`, which stays the answer of pgsession's own stores.
 */
export class ConnectStoreError extends Error {
  constructor(readonly original: unknown) {
    super('session store error', { cause: original });
    this.name = 'ConnectStoreError';
  }
}

/** The symbol by which an express-session–style Store exposes its promise-based engine face. */
export const kSessionStore: unique symbol = Symbol.for('pgsession.store');

/** Anything that can hand the engine a `SessionStore`. */
export interface HasSessionStore {
  [kSessionStore]: SessionStore;
}

/** Derive the owning user id from session data (the seed's `userId`, or Passport's `passport.user`). */
export function userIdOf(data: SessionJSON): string | null {
  const direct = data.userId;
  if (typeof direct === 'string' || typeof direct === 'number') return String(direct);
  const passport = data.passport as { user?: unknown } | undefined;
  const user = passport?.user;
  if (typeof user === 'string' || typeof user === 'number') return String(user);
  return null;
}
