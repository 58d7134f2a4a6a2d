import { Cookie } from '../core/cookie.js';
import {
  ConnectStoreError,
  type SessionJSON,
  type SessionRecord,
  type SessionStore,
  userIdOf,
} from '../core/store.js';
import type { ConnectStore } from './connect-store.js';

/**
 * Times that express-session stores have no columns for travel inside the stored JSON under this
 * key, hidden from `req.session`.
 */
const META = '__pgsession';

/** connect-pg-simple's default lifetime for a session whose cookie has no expiry. */
const DAY = 86_400_000;

interface Meta {
  c: number;
  a: number;
  v: number;
}

/**
 * Call a store method written for express-session and settle on its callback. What it gives the
 * callback as an error (or throws) rejects as a {@link ConnectStoreError}, so it reaches
 * `next(err)` as the store gave it, as with express-session.
 */
export function callStore<T>(fn: (cb: (err?: unknown, value?: T) => void) => void): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    try {
      fn((err, value) => (err ? reject(new ConnectStoreError(err)) : resolve(value)));
    } catch (err) {
      reject(new ConnectStoreError(err));
    }
  });
}

/** The express-session convention of file-based stores: `ENOENT` from `get` means "no such session". */
export function isNotFound(err: unknown): boolean {
  const original = err instanceof ConnectStoreError ? err.original : err;
  return (original as { code?: unknown } | null)?.code === 'ENOENT';
}

/**
 * The object handed to the store's `set`/`touch`: the stored JSON with `cookie` as a `Cookie`,
 * as express-session hands over `req.session`. Stores read `sess.cookie.expires` (a Date) or
 * `sess.cookie.maxAge` (a number) to compute their TTL; plain JSON has neither.
 */
export function toConnectSession(data: SessionJSON, meta?: Meta): SessionJSON {
  const session = (meta ? { ...data, [META]: meta } : { ...data }) as SessionJSON;
  if (data.cookie && typeof data.cookie === 'object') session.cookie = new Cookie(data.cookie) as never;
  return session;
}

/**
 * Wrap a store written for express-session (callbacks, with or without `touch`) in the engine's
 * promise API. Such stores replace whole sessions, so two concurrent requests changing different
 * keys cannot both win, and an update racing a logout may re-create the row; pgsession's own
 * stores do not have these limits. Their `touch` keeps only a TTL, so `tracksActivity` is false:
 * the store's expiry (from `cookie.expires`, refreshed by each touch) is the idle timeout, exactly
 * as under express-session.
 */
export function fromConnectStore(store: ConnectStore, now: () => number = Date.now): SessionStore {
  const toRecord = (data: SessionJSON): SessionRecord => {
    const { [META]: meta, ...rest } = data as SessionJSON & { [META]?: Meta };
    const t = now();
    const cookie = rest.cookie as SessionJSON['cookie'] | undefined;
    const expires = cookie?.expires ? Date.parse(String(cookie.expires)) : Number.NaN;
    // Every commit rolls `cookie.expires` to commit time + originalMaxAge, so a store that keeps
    // the touched session (express-session's MemoryStore does) reveals activity after the last set.
    const rolled =
      Number.isFinite(expires) && typeof cookie?.originalMaxAge === 'number'
        ? expires - cookie.originalMaxAge
        : Number.NEGATIVE_INFINITY;
    const active = Math.max(meta?.a ?? Number.NEGATIVE_INFINITY, rolled);
    return {
      data: rest as SessionJSON,
      expiresAt: Number.isFinite(expires) ? expires : t + DAY,
      createdAt: meta?.c ?? t,
      lastActiveAt: Number.isFinite(active) ? Math.min(active, t) : t,
      userId: userIdOf(rest as SessionJSON),
      version: meta?.v ?? 0,
    };
  };
  const load = async (sid: string): Promise<SessionJSON | null> => {
    try {
      return (await callStore<SessionJSON | null>((cb) => store.get(sid, cb))) ?? null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  };
  const save = (sid: string, data: SessionJSON, meta: Meta) =>
    callStore((cb) => store.set(sid, toConnectSession(data, meta), cb));

  const adapter: SessionStore = {
    tracksActivity: false,
    async get(key, options) {
      let data = await load(key);
      if (!data && options?.legacyKey !== undefined && options.legacyKey !== key) {
        const legacy = options.legacyKey;
        data = await load(legacy);
        if (data) {
          const record = toRecord(data);
          await save(key, record.data, { c: record.createdAt, a: record.lastActiveAt, v: record.version });
          await callStore((cb) => store.destroy(legacy, cb));
        }
      }
      return data ? toRecord(data) : null;
    },
    async create(key, record) {
      await save(key, record.data, { c: record.createdAt, a: record.lastActiveAt, v: 0 });
    },
    async update(key, change) {
      // Read first: these stores upsert, and a set must not bring back a session destroyed meanwhile.
      const current = await load(key);
      if (!current) return null;
      const meta = (current as { [META]?: Meta })[META];
      const next: Meta = { c: meta?.c ?? now(), a: change.lastActiveAt, v: (meta?.v ?? 0) + 1 };
      await save(key, change.data, next);
      return toRecord({ ...change.data, [META]: next });
    },
    async touch(key, _expiresAt, lastActiveAt, current) {
      // A store without touch is left alone, as express-session does.
      const touch = store.touch;
      if (typeof touch !== 'function') return true;
      let state = current;
      if (!state) {
        const stored = await load(key);
        if (!stored) return false;
        const record = toRecord(stored);
        state = { data: record.data, createdAt: record.createdAt, version: record.version };
      }
      const meta: Meta = { c: state.createdAt, a: lastActiveAt, v: state.version };
      await callStore((cb) => touch.call(store, key, toConnectSession(state.data, meta), cb));
      return true;
    },
    async destroy(key, options) {
      await callStore((cb) => store.destroy(key, cb));
      // A row still under the raw id (never re-keyed by a `get`); the engine itself never asks.
      const legacy = options?.legacyKey;
      if (legacy !== undefined && legacy !== key) await callStore((cb) => store.destroy(legacy, cb));
    },
  };
  return adapter;
}
