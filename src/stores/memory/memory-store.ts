import { LRUCache } from 'lru-cache';
import { PgSessionError } from '../../core/errors.js';
import { hashId } from '../../core/id.js';
import {
  type DeviceBinding,
  kSessionStore,
  type SessionJSON,
  type SessionListing,
  type SessionRecord,
  type SessionStore,
  userIdOf,
} from '../../core/store.js';
import { goneKeyError, issueAdminKey, readAdminKey, UnknownSessionKeyError } from '../admin-keys.js';
import { type Callback, Store } from '../connect-store.js';
import { markNativeStoreMethods, plannedWrite } from '../engine-face.js';

/** Options for {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /** Most sessions kept; the least recently used is dropped beyond it. Default 10 000. */
  max?: number;
  /** How often expired sessions are swept, in ms. Default 60 000. */
  checkPeriod?: number;
  /**
   * Key sessions by the SHA-256 of their id, as `PgStore` does (default true). The
   * express-session methods (`get(sid)`, `set(sid, …)`, …) take session ids either way. Set it
   * as the middleware's `hashIds`.
   */
  hashIds?: boolean;
  /** Clock, for tests. */
  now?: () => number;
}

interface Entry {
  json: string;
  expiresAt: number;
  createdAt: number;
  lastActiveAt: number;
  userId: string | null;
  version: number;
  /** The device binding (DBSC), apart from the data as in PgStore. */
  device: DeviceBinding | null;
}

const DAY = 86_400_000;

/**
 * An in-process store for development and tests. **Not for production**: sessions vanish on
 * restart and are not shared between processes. Unlike express-session's MemoryStore it is
 * bounded (LRU) and sweeps expired sessions, so it cannot grow without limit.
 */
export class MemoryStore extends (Store as unknown as new () => InstanceType<typeof Store>) {
  private readonly entries: LRUCache<string, Entry>;
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout;
  /** Whether session ids are hashed into storage keys. */
  readonly hashIds: boolean;
  readonly [kSessionStore]: SessionStore;

  constructor(options: MemoryStoreOptions = {}) {
    super();
    this.now = options.now ?? Date.now;
    this.hashIds = options.hashIds ?? true;
    this.entries = new LRUCache<string, Entry>({ max: options.max ?? 10_000 });
    this.timer = setInterval(() => this.sweep(), options.checkPeriod ?? 60_000);
    this.timer.unref();
    this[kSessionStore] = this.engineFace();
  }

  private live(key: string): Entry | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  private sweep(): number {
    const now = this.now();
    let removed = 0;
    for (const [key, entry] of this.entries.entries()) {
      if (entry.expiresAt <= now) {
        this.entries.delete(key);
        removed++;
      }
    }
    return removed;
  }

  private static record(entry: Entry): SessionRecord {
    // A fresh parse per read: callers may mutate what they get without touching the store.
    return {
      data: JSON.parse(entry.json) as SessionJSON,
      expiresAt: entry.expiresAt,
      createdAt: entry.createdAt,
      lastActiveAt: entry.lastActiveAt,
      userId: entry.userId,
      version: entry.version,
      device: entry.device && { ...entry.device, jwk: { ...entry.device.jwk } },
    };
  }

  private engineFace(): SessionStore {
    return {
      inProcess: true,
      get: async (key, options) => {
        let entry = this.live(key);
        if (!entry && options?.legacyKey !== undefined) {
          entry = this.live(options.legacyKey);
          if (entry) {
            this.entries.delete(options.legacyKey);
            this.entries.set(key, entry);
          }
        }
        return entry ? MemoryStore.record(entry) : null;
      },
      create: async (key, record) => {
        // As a primary key would: ids have 256 bits, so a collision means a bug, never a session to overwrite.
        if (this.live(key)) {
          throw new PgSessionError(
            'PGSESSION_KEY_EXISTS',
            'pgsession: a session with this key exists already',
          );
        }
        this.entries.set(key, {
          json: JSON.stringify(record.data),
          expiresAt: record.expiresAt,
          createdAt: record.createdAt,
          lastActiveAt: record.lastActiveAt,
          userId: record.userId,
          version: 0,
          device: null,
        });
      },
      update: async (key, change) => {
        const entry = this.live(key);
        if (!entry) return null;
        const data = JSON.parse(entry.json) as SessionJSON;
        for (const k of change.unset) delete data[k];
        Object.assign(data, change.set);
        const next: Entry = {
          json: JSON.stringify(data),
          expiresAt: change.expiresAt,
          createdAt: entry.createdAt,
          lastActiveAt: change.lastActiveAt,
          userId: change.userId,
          version: entry.version + 1,
          device: entry.device,
        };
        this.entries.set(key, next);
        return MemoryStore.record(next);
      },
      touch: async (key, expiresAt, lastActiveAt, current) => {
        const entry = this.live(key);
        if (!entry) return false;
        entry.expiresAt = expiresAt;
        entry.lastActiveAt = lastActiveAt;
        // As express-session's MemoryStore: the stored cookie is the touched one (its new expiry).
        const cookie = current?.data.cookie;
        if (cookie) {
          const data = JSON.parse(entry.json) as SessionJSON;
          data.cookie = cookie;
          entry.json = JSON.stringify(data);
        }
        return true;
      },
      destroy: async (key, options) => {
        this.entries.delete(key);
        // A row still kept under the raw id (one `get` would have re-keyed) goes too.
        if (options?.legacyKey !== undefined) this.entries.delete(options.legacyKey);
      },
      bindDevice: async (key, binding) => {
        const entry = this.live(key);
        if (!entry) return false;
        if (binding && entry.device && entry.device.challengeAt >= binding.challengeAt) return false;
        entry.device = binding && { ...binding, jwk: { ...binding.jwk } };
        entry.version++;
        return true;
      },
      listByUser: async (userId) => {
        const out: SessionListing[] = [];
        for (const key of [...this.entries.keys()]) {
          const entry = this.live(key);
          if (entry && entry.userId === userId) out.push({ key, record: MemoryStore.record(entry) });
        }
        return out.sort((a, b) => b.record.lastActiveAt - a.record.lastActiveAt);
      },
      destroyByUser: async (userId, exceptKey) => {
        let n = 0;
        for (const [key, entry] of [...this.entries.entries()]) {
          if (entry.userId === userId && key !== exceptKey) {
            this.entries.delete(key);
            n++;
          }
        }
        return n;
      },
      prune: async () => this.sweep(),
      close: async () => this.close(),
    };
  }

  // ---- express-session store API (callbacks, keyed by session id) ----

  /** The storage key of a session id. */
  private keyOf(sid: string): string {
    return this.hashIds ? hashId(sid) : sid;
  }

  /**
   * The storage key `sid` names: a session id's, or the one inside a key from this process's
   * `all()` / `ids()` (`admin`); an error for such a key from elsewhere.
   */
  private resolve(sid: string): { key: string; admin: boolean } | UnknownSessionKeyError {
    const admin = this.hashIds ? readAdminKey(sid) : undefined;
    if (admin instanceof UnknownSessionKeyError) return admin;
    return admin === undefined ? { key: this.keyOf(sid), admin: false } : { key: admin, admin: true };
  }

  /** What `all()` / `ids()` call a session: a key its `get` / `destroy` accept. */
  private listedKey(key: string): string {
    return this.hashIds ? issueAdminKey(key) : key;
  }

  /** Run a write the engine planned (see `plannedWrite`), answering `callback` when it is done. */
  private applyPlanned(write: Promise<void>, callback: Callback | undefined): void {
    write.then(
      () => callback?.(),
      (err: unknown) => callback?.(err),
    );
  }

  override get(sid: string, callback: Callback<SessionJSON | null>): void {
    const target = this.resolve(sid);
    const entry = target instanceof UnknownSessionKeyError ? undefined : this.live(target.key);
    queueMicrotask(() => callback(undefined, entry ? (JSON.parse(entry.json) as SessionJSON) : null));
  }

  override set(sid: string, session: SessionJSON, callback?: Callback): void {
    const target = this.resolve(sid);
    if (target instanceof UnknownSessionKeyError) {
      if (callback) queueMicrotask(() => callback(target));
      return;
    }
    const { key } = target;
    // Called by pgsession's middleware through a wrapper the app put on this method: apply the
    // engine's change (a key-level merge that never re-creates a destroyed session).
    const planned = plannedWrite(session, key);
    if (planned) {
      this.applyPlanned(planned.apply(this[kSessionStore]), callback);
      return;
    }
    const now = this.now();
    const expires = session.cookie?.expires ? Date.parse(String(session.cookie.expires)) : Number.NaN;
    const existing = this.live(key);
    // A listed session is only ever updated: one revoked meanwhile stays revoked.
    if (target.admin && !existing) {
      if (callback) queueMicrotask(() => callback());
      return;
    }
    this.entries.set(key, {
      json: JSON.stringify(session),
      expiresAt: Number.isFinite(expires) ? expires : now + DAY,
      createdAt: existing?.createdAt ?? now,
      lastActiveAt: now,
      userId: userIdOf(session),
      version: (existing?.version ?? -1) + 1,
      // express-session's `set` rewrites the data; the binding is not part of it.
      device: existing?.device ?? null,
    });
    if (callback) queueMicrotask(() => callback());
  }

  touch(sid: string, session: SessionJSON, callback?: Callback): void {
    const target = this.resolve(sid);
    if (target instanceof UnknownSessionKeyError) {
      if (callback) queueMicrotask(() => callback(target));
      return;
    }
    const { key } = target;
    const planned = plannedWrite(session, key);
    if (planned) {
      this.applyPlanned(planned.apply(this[kSessionStore]), callback);
      return;
    }
    const entry = this.live(key);
    if (entry) {
      const expires = session.cookie?.expires ? Date.parse(String(session.cookie.expires)) : Number.NaN;
      if (Number.isFinite(expires)) entry.expiresAt = expires;
      entry.lastActiveAt = this.now();
    }
    if (callback) queueMicrotask(() => callback());
  }

  override destroy(sid: string, callback?: Callback): void {
    const target = this.resolve(sid);
    // A session id that names nothing is fine (a logout twice); a listed key that names nothing
    // says so, so "revoke this session" cannot silently do nothing.
    const gone =
      target instanceof UnknownSessionKeyError
        ? target
        : !this.entries.delete(target.key) && target.admin
          ? goneKeyError()
          : undefined;
    if (callback) queueMicrotask(() => callback(gone));
  }

  /**
   * Every live session, by a key its `get` / `set` / `touch` / `destroy` accept: with `hashIds`,
   * the storage key with a tag only this process can make (never a session id).
   */
  all(callback: Callback<Record<string, SessionJSON>>): void {
    const out: Record<string, SessionJSON> = {};
    for (const key of [...this.entries.keys()]) {
      const entry = this.live(key);
      if (entry) out[this.listedKey(key)] = JSON.parse(entry.json) as SessionJSON;
    }
    queueMicrotask(() => callback(undefined, out));
  }

  length(callback: Callback<number>): void {
    this.sweep();
    queueMicrotask(() => callback(undefined, this.entries.size));
  }

  clear(callback?: Callback): void {
    this.entries.clear();
    if (callback) queueMicrotask(() => callback());
  }

  ids(callback: Callback<string[]>): void {
    this.sweep();
    queueMicrotask(() =>
      callback(
        undefined,
        [...this.entries.keys()].map((key) => this.listedKey(key)),
      ),
    );
  }

  /** Stop the sweep timer. */
  async close(): Promise<void> {
    clearInterval(this.timer);
  }
}

markNativeStoreMethods(MemoryStore.prototype);
