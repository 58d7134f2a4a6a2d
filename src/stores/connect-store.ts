import { EventEmitter } from 'node:events';
import { Cookie } from '../core/cookie.js';
import { Session, type SessionHost } from '../core/session.js';
import type { SessionJSON } from '../core/store.js';

/** Node-style callback used by the express-session store API. */
export type Callback<T = void> = (err?: unknown, result?: T) => void;

/**
 * The express-session store API (the "Connect store" API): callbacks, keyed by session id.
 * `touch`, `all`, `length`, `clear` and `ids` are optional, as in express-session.
 */
export interface ConnectStore extends EventEmitter {
  get(sid: string, callback: (err: unknown, session?: SessionJSON | null) => void): void;
  set(sid: string, session: SessionJSON, callback?: (err?: unknown) => void): void;
  destroy(sid: string, callback?: (err?: unknown) => void): void;
  touch?(sid: string, session: SessionJSON, callback?: (err?: unknown) => void): void;
  all?(callback: (err: unknown, sessions?: Record<string, SessionJSON> | SessionJSON[] | null) => void): void;
  length?(callback: (err: unknown, length?: number) => void): void;
  clear?(callback?: (err?: unknown) => void): void;
  ids?(callback: (err: unknown, ids?: string[]) => void): void;
  /** Set by the middleware, as express-session does. */
  generate?(req: SessionHost): void;
  regenerate?(req: SessionHost, callback: (err?: unknown) => void): void;
  load?(sid: string, callback: (err: unknown, session?: Session) => void): void;
  createSession?(req: SessionHost, session: SessionJSON): Session;
}

/** Instance shape of {@link Store}. */
export interface Store extends EventEmitter {
  regenerate(req: SessionHost, callback: (err?: unknown) => void): void;
  load(sid: string, callback: (err: unknown, session?: Session) => void): void;
  createSession(req: SessionHost, session: SessionJSON): Session;
  generate?(req: SessionHost): void;
  get(sid: string, callback: (err: unknown, session?: SessionJSON | null) => void): void;
  set(sid: string, session: SessionJSON, callback?: (err?: unknown) => void): void;
  destroy(sid: string, callback?: (err?: unknown) => void): void;
}

/** Constructor shape of {@link Store}: callable with `new`, and with `Store.call(this)` from old-style subclasses. */
export interface StoreConstructor {
  new (): Store;
  (this: EventEmitter): void;
  prototype: Store;
}

/**
 * Base class for session stores, identical in behaviour to express-session's `Store`. It is a
 * plain function (not an ES class) on purpose: stores written for express-session subclass it
 * with `util.inherits(MyStore, Store)` and call `Store.call(this)`, which a class would forbid.
 */
export const Store = function Store(this: EventEmitter) {
  EventEmitter.call(this);
} as unknown as StoreConstructor;

Object.setPrototypeOf(Store.prototype, EventEmitter.prototype);
Object.setPrototypeOf(Store, EventEmitter);

/** Replace the request's session with a new, empty one (express-session semantics: data is dropped). */
Store.prototype.regenerate = function regenerate(this: Store, req: SessionHost, fn: (err?: unknown) => void) {
  this.destroy(req.sessionID ?? '', (err) => {
    this.generate?.(req);
    fn(err);
  });
};

/** Load a session by id into a `Session` detached from any request. */
Store.prototype.load = function load(
  this: Store,
  sid: string,
  fn: (err: unknown, session?: Session) => void,
) {
  this.get(sid, (err, sess) => {
    if (err) return fn(err);
    if (!sess) return fn(undefined);
    const req: SessionHost = { sessionID: sid, sessionStore: this };
    fn(undefined, this.createSession(req, sess));
  });
};

/** Inflate stored JSON into `req.session`, restoring the `Cookie` and its `expires` date. */
Store.prototype.createSession = function createSession(this: Store, req: SessionHost, sess: SessionJSON) {
  const expires = sess.cookie?.expires;
  const originalMaxAge = sess.cookie?.originalMaxAge ?? null;
  const cookie = new Cookie(sess.cookie ?? {});
  if (typeof expires === 'string') cookie.expires = new Date(expires);
  cookie.originalMaxAge = originalMaxAge;
  const session = new Session(req, { ...sess, cookie });
  req.session = session;
  return session;
};
