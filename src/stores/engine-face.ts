/**
 * How the engine reaches a store: {@link toSessionStore}. Stores written for express-session are
 * adapted (`fromConnectStore`); pgsession's own stores are watched, as the app may have
 * instrumented them.
 *
 * The middleware talks to `PgStore` and `MemoryStore` through their engine face
 * (`[kSessionStore]`): promises, storage keys, key-level merges. But apps instrument stores the
 * express-session way, by wrapping or replacing `store.get/set/touch/destroy` on the instance (or
 * overriding them in a subclass) to log, time or fail calls, and they expect those methods to be
 * called as express-session calls them. So each call looks the method up on the store at call
 * time: if it is still pgsession's own, the engine face is used directly (the fast path); if not,
 * the method is called with express-session's arguments (the session id, the session with its
 * `Cookie`, a callback).
 *
 * A wrapper usually calls through to our method. Then the write the engine planned travels
 * along, attached to the session object it hands over (a non-enumerable symbol, which stores'
 * `JSON.stringify` never sees): our `set`/`touch` find it and apply the engine's change instead
 * of replacing the whole session, so key-level merges and "never resurrect a destroyed session"
 * still hold, and the engine learns whether the session was gone.
 */

import {
  type HasSessionStore,
  kSessionStore,
  type SessionJSON,
  type SessionRecord,
  type SessionStore,
  userIdOf,
} from '../core/store.js';
import { callStore, fromConnectStore, isNotFound, toConnectSession } from './connect-adapter.js';
import type { ConnectStore } from './connect-store.js';

/** The engine face of any store: pgsession's own stores expose one (watched); others are adapted. */
export function toSessionStore(
  store: ConnectStore | HasSessionStore,
  now: () => number = Date.now,
): SessionStore {
  const own = (store as Partial<HasSessionStore>)[kSessionStore];
  return own
    ? watchOwnStore(store as ConnectStore & HasSessionStore, own, now)
    : fromConnectStore(store as ConnectStore, now);
}

/** Marks a function as one of pgsession's own store methods. */
const kNative: unique symbol = Symbol('pgsession.nativeStoreMethod');
/** Where a planned write rides on the session object handed to `set`/`touch`. */
const kPlanned: unique symbol = Symbol('pgsession.plannedWrite');

type Method = 'get' | 'set' | 'touch' | 'destroy';
type StoreTouch = (sid: string, session: SessionJSON, callback: (err?: unknown) => void) => void;
const METHODS: readonly Method[] = ['get', 'set', 'touch', 'destroy'];

/** Declare `proto`'s get/set/touch/destroy to be pgsession's own (called by the store classes once). */
export function markNativeStoreMethods(proto: object): void {
  for (const name of METHODS) {
    const fn = (proto as Record<string, unknown>)[name];
    if (typeof fn === 'function') Object.defineProperty(fn, kNative, { value: true });
  }
}

/** `bound` (e.g. `fn.bind(store)` in a proxy) stands for `fn`: native if `fn` is. */
export function keepNativeMark<F extends object>(fn: object, bound: F): F {
  if ((fn as { [kNative]?: true })[kNative] === true) Object.defineProperty(bound, kNative, { value: true });
  return bound;
}

function isNative(fn: unknown): boolean {
  return typeof fn === 'function' && (fn as { [kNative]?: true })[kNative] === true;
}

/** A write the engine planned, for our own `set`/`touch` to apply on the engine face. */
export interface PlannedWrite {
  /** The storage key it is for: applied only by a store that maps the given id to it. */
  readonly key: string;
  apply(face: SessionStore): Promise<void>;
}

/** The write planned for `key` that rides on `session`, if any (see the module comment). */
export function plannedWrite(session: unknown, key: string): PlannedWrite | undefined {
  if (!session || typeof session !== 'object') return undefined;
  const planned = (session as { [kPlanned]?: PlannedWrite })[kPlanned];
  return planned?.key === key ? planned : undefined;
}

function carrying(session: SessionJSON, planned: PlannedWrite): SessionJSON {
  Object.defineProperty(session, kPlanned, { value: planned });
  return session;
}

/**
 * The engine face of one of our stores, calling the store's own express-session methods instead
 * wherever the app has replaced them (see the module comment).
 */
export function watchOwnStore(
  store: ConnectStore & HasSessionStore,
  own: SessionStore,
  now: () => number = Date.now,
): SessionStore {
  const method = (name: Method) => (store as unknown as Record<Method, unknown>)[name];
  // A store that has no such method at all (only an engine face) is not instrumented either.
  const wrapped = (name: Method, id: string | undefined): id is string => {
    const fn = method(name);
    return id !== undefined && typeof fn === 'function' && !isNative(fn);
  };

  const watched: SessionStore = {
    tracksActivity: own.tracksActivity,
    inProcess: own.inProcess,
    // Only while the app has not replaced `get`: its own `get` must see every read.
    ...(own.peek
      ? {
          peek: (key: string, options?: { id?: string | undefined }) =>
            wrapped('get', options?.id) ? undefined : own.peek!(key, options),
        }
      : {}),
    async get(key, options) {
      const id = options?.id;
      if (!wrapped('get', id)) return own.get(key, options);
      let data: SessionJSON | null;
      try {
        data = (await callStore<SessionJSON | null>((cb) => store.get(id, cb))) ?? null;
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
      if (!data) return null;
      // Creation and activity times live beside the data: read them from the engine face, but
      // serve the data the app's `get` returned.
      const meta = await own.get(key, options?.fresh ? { fresh: true } : undefined);
      const { json: _json, ...known } = meta ?? fallbackRecord(data, now());
      return { ...known, data };
    },
    async create(key, record, options) {
      const id = options?.id;
      // The id travels on: a table in the middle of a switch stores new sessions under it.
      if (!wrapped('set', id)) return own.create(key, record, options);
      const planned: PlannedWrite = { key, apply: (face) => face.create(key, record, { id }) };
      await callStore((cb) => store.set(id, carrying(toConnectSession(record.data), planned), cb));
    },
    async update(key, change, options) {
      const id = options?.id;
      if (!wrapped('set', id)) return own.update(key, change);
      let stored: SessionRecord | null | undefined;
      const planned: PlannedWrite = {
        key,
        apply: async (face) => {
          stored = await face.update(key, change);
        },
      };
      await callStore((cb) => store.set(id, carrying(toConnectSession(change.data), planned), cb));
      // `undefined`: the app's `set` stored the session itself, as express-session's stores do.
      if (stored !== undefined) return stored;
      return {
        ...fallbackRecord(change.data, now()),
        lastActiveAt: change.lastActiveAt,
        version: change.baseVersion + 1,
      };
    },
    async touch(key, expiresAt, lastActiveAt, current, options) {
      const id = options?.id;
      if (!wrapped('touch', id)) return own.touch(key, expiresAt, lastActiveAt, current);
      const touch = method('touch');
      const data = current?.data ?? (await own.get(key))?.data;
      if (!data) return false;
      let touched = true;
      const planned: PlannedWrite = {
        key,
        apply: async (face) => {
          touched = await face.touch(key, expiresAt, lastActiveAt);
        },
      };
      const session = carrying(toConnectSession(data), planned);
      await callStore((cb) => (touch as StoreTouch).call(store, id, session, cb));
      return touched;
    },
    async destroy(key, options) {
      const id = options?.id;
      if (!wrapped('destroy', id)) {
        // Nothing to delete, and nobody watching: skip the round trip.
        if (options?.alreadyGone) return;
        return own.destroy(key);
      }
      await callStore((cb) => store.destroy(id, cb));
    },
  };
  // Optional engine-face methods (listing, revocation, pruning, close) pass straight through.
  for (const name of ['listByUser', 'destroyByUser', 'bindDevice', 'prune', 'close'] as const) {
    const fn = own[name];
    if (typeof fn === 'function') Object.defineProperty(watched, name, { value: fn.bind(own) });
  }
  return watched;
}

/** A record for data whose times the store cannot tell (the app's `get` made it up). */
function fallbackRecord(data: SessionJSON, now: number): SessionRecord {
  const expires = data.cookie?.expires ? Date.parse(String(data.cookie.expires)) : Number.NaN;
  return {
    data,
    expiresAt: Number.isFinite(expires) ? expires : now + 86_400_000,
    createdAt: now,
    lastActiveAt: now,
    userId: userIdOf(data),
    version: 0,
  };
}
