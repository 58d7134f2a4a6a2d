import type { ConnectStore } from './connect-store.js';
import {
  type HasSessionStore,
  kSessionStore,
  type SessionJSON,
  type SessionRecord,
  type SessionStore,
  userIdOf,
} from './types.js';

/**
 * Times that express-session stores have no columns for travel inside the stored JSON under this
 * key, hidden from `req.session`.
 */
const META = '__pgsession';

interface Meta {
  c: number;
  a: number;
  v: number;
}

function call<T>(fn: (cb: (err?: unknown, value?: T) => void) => void): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    try {
      fn((err, value) => (err ? reject(err) : resolve(value)));
    } catch (err) {
      reject(err);
    }
  });
}

/**
 * Wrap a store written for express-session (callbacks, with or without `touch`) in the engine's
 * promise API. Such stores replace whole sessions, so two concurrent requests changing different
 * keys cannot both win, and an update racing a logout may re-create the row; pgsession's own
 * stores do not have these limits.
 */
export function fromConnectStore(store: ConnectStore, now: () => number = Date.now): SessionStore {
  const toRecord = (data: SessionJSON): SessionRecord => {
    const { [META]: meta, ...rest } = data as SessionJSON & { [META]?: Meta };
    const t = now();
    const expires = rest.cookie?.expires ? Date.parse(String(rest.cookie.expires)) : Number.NaN;
    return {
      data: rest as SessionJSON,
      expiresAt: Number.isFinite(expires) ? expires : t + 86_400_000,
      createdAt: meta?.c ?? t,
      lastActiveAt: meta?.a ?? t,
      userId: userIdOf(rest as SessionJSON),
      version: meta?.v ?? 0,
    };
  };
  const withMeta = (data: SessionJSON, meta: Meta): SessionJSON => ({ ...data, [META]: meta });

  const adapter: SessionStore = {
    async get(key, options) {
      let data = await call<SessionJSON | null>((cb) => store.get(key, cb));
      if (!data && options?.legacyKey !== undefined && options.legacyKey !== key) {
        data = await call<SessionJSON | null>((cb) => store.get(options.legacyKey!, cb));
        if (data) {
          await call((cb) => store.set(key, data!, cb));
          await call((cb) => store.destroy(options.legacyKey!, cb));
        }
      }
      return data ? toRecord(data) : null;
    },
    async create(key, record) {
      await call((cb) =>
        store.set(key, withMeta(record.data, { c: record.createdAt, a: record.lastActiveAt, v: 0 }), cb),
      );
    },
    async update(key, change) {
      const current = await call<SessionJSON | null>((cb) => store.get(key, cb));
      if (!current) return null;
      const meta = (current as { [META]?: Meta })[META];
      const next: Meta = { c: meta?.c ?? now(), a: change.lastActiveAt, v: (meta?.v ?? 0) + 1 };
      await call((cb) => store.set(key, withMeta(change.data, next), cb));
      return toRecord(withMeta(change.data, next));
    },
    async touch(key, _expiresAt, lastActiveAt) {
      if (typeof store.touch !== 'function') return true;
      const current = await call<SessionJSON | null>((cb) => store.get(key, cb));
      if (!current) return false;
      const meta = (current as { [META]?: Meta })[META];
      const next = withMeta(current, { c: meta?.c ?? now(), a: lastActiveAt, v: meta?.v ?? 0 });
      await call((cb) => store.touch!(key, next, cb));
      return true;
    },
    async destroy(key) {
      await call((cb) => store.destroy(key, cb));
    },
  };
  return adapter;
}

/** The engine face of any store: pgsession's own stores expose one; others are adapted. */
export function toSessionStore(store: ConnectStore | HasSessionStore): SessionStore {
  const own = (store as Partial<HasSessionStore>)[kSessionStore];
  return own ?? fromConnectStore(store as ConnectStore);
}
