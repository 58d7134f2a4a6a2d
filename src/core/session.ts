import type { Cookie } from './cookie.js';

/**
 * The app's session data. Augment it to type `req.session`:
 *
 * ```ts
 * declare module 'pgsession' {
 *   interface SessionData { userId: number; userRole: 'user' | 'admin' }
 * }
 * ```
 */
// biome-ignore lint/suspicious/noEmptyInterface: declaration-merging target for apps.
export interface SessionData {}

/** Options for {@link Session.regenerate}. */
export interface RegenerateOptions {
  /**
   * Data to carry into the new session: `true` keeps every key, an array keeps the listed keys.
   * Default: nothing (express-session's behaviour).
   */
  keep?: boolean | readonly string[];
}

/** What the engine supplies to a session so its methods act on the request they belong to. */
export interface SessionController {
  save(): Promise<void>;
  reload(): Promise<void>;
  destroy(): Promise<void>;
  regenerate(options: RegenerateOptions): Promise<void>;
}

export const kController: unique symbol = Symbol.for('pgsession.controller');

/** Whether a stored key may be copied onto `session`: never one shadowing a method or `id`, nor `__proto__`. */
export function isDataKey(session: Session, key: string): boolean {
  return !(key in session) && key !== '__proto__';
}

/** The object sessions hang off: Express's `req`, a Fastify request, or a Hono context's holder. */
export interface SessionHost {
  sessionID?: string | undefined;
  session?: (Session & Partial<SessionData>) | undefined;
  sessionStore?: unknown;
  [kController]?: SessionController | undefined;
}

interface LegacyStore {
  set(sid: string, sess: unknown, cb: (err?: unknown) => void): void;
  get(sid: string, cb: (err: unknown, sess?: unknown) => void): void;
  destroy(sid: string, cb: (err?: unknown) => void): void;
  regenerate(req: SessionHost, cb: (err?: unknown) => void): void;
  createSession(req: SessionHost, sess: unknown): Session;
}

type Done = (err?: unknown) => void;

function settle<T>(work: () => Promise<void>, callback: Done | undefined, self: T): Promise<void> | T {
  let promise: Promise<void>;
  try {
    promise = work();
  } catch (err) {
    promise = Promise.reject(err);
  }
  if (callback) {
    promise.then(() => callback(), callback);
    return self;
  }
  // express-session code often calls these without a callback and ignores the result
  // (`req.session.destroy(); res.redirect('/')`). Marking the promise handled keeps such a call
  // from crashing the process on a store error; whoever awaits it still gets the rejection.
  promise.catch(() => {});
  return promise;
}

function fromCallback(fn: (cb: Done) => void): Promise<void> {
  return new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve())));
}

/**
 * `req.session`: the app's data as plain properties, plus express-session's methods. Every
 * method takes an optional callback and returns a promise when none is given.
 */
export class Session {
  // Private fields, read through getters: like express-session's non-enumerable `req` and `id`,
  // they stay out of Object.keys and JSON (the stored data), cannot be assigned, and cost no
  // Object.defineProperty per request.
  readonly #req: SessionHost;
  readonly #id: string;
  declare cookie: Cookie;
  [key: string]: unknown;

  /** The request this session belongs to. */
  get req(): SessionHost {
    return this.#req;
  }

  /** The session id (as `req.sessionID` was when this session was made). */
  get id(): string {
    return this.#id;
  }

  constructor(req: SessionHost, data?: object | null) {
    this.#req = req;
    this.#id = req.sessionID as string;
    if (data && typeof data === 'object') {
      for (const prop of Object.keys(data)) {
        if (isDataKey(this, prop)) this[prop] = (data as Record<string, unknown>)[prop];
      }
    }
  }

  /**
   * What `console.log(req.session)` shows: every value, object values not read yet included (a
   * cached session's object values are parsed on first read, see `StoredData`; reading them here
   * makes them plain properties, which changes nothing stored).
   */
  [Symbol.for('nodejs.util.inspect.custom')](
    _depth: number,
    options: object,
    inspect: (value: unknown, options: object) => string,
  ): string {
    for (const key of Object.keys(this)) void this[key];
    return inspect(this, { ...options, customInspect: false });
  }

  /** Restart the cookie's lifetime (sliding expiry). Synchronous, as in express-session. */
  touch(): this {
    return this.resetMaxAge();
  }

  resetMaxAge(): this {
    this.cookie.maxAge = this.cookie.originalMaxAge;
    return this;
  }

  /** Persist the session now (it is saved automatically before the response anyway). */
  save(callback?: Done): Promise<void> | this {
    return settle(
      () =>
        this.req[kController]?.save() ??
        fromCallback((cb) => (this.req.sessionStore as LegacyStore).set(this.id, this, cb)),
      callback,
      this,
    );
  }

  /** Re-read the session from the store, discarding unsaved changes. */
  reload(callback?: Done): Promise<void> | this {
    return settle(
      () =>
        this.req[kController]?.reload() ??
        fromCallback((cb) =>
          (this.req.sessionStore as LegacyStore).get(this.id, (err, sess) => {
            if (err) return cb(err);
            if (!sess) return cb(new Error('failed to load session'));
            (this.req.sessionStore as LegacyStore).createSession(this.req, sess);
            cb();
          }),
        ),
      callback,
      this,
    );
  }

  /** Delete the session from the store everywhere and clear the cookie. */
  destroy(callback?: Done): Promise<void> | this {
    return settle(
      () => {
        const ctrl = this.req[kController];
        if (ctrl) return ctrl.destroy();
        delete this.req.session;
        return fromCallback((cb) => (this.req.sessionStore as LegacyStore).destroy(this.id, cb));
      },
      callback,
      this,
    );
  }

  /**
   * Replace the session id (do it on login and any privilege change: it defeats fixation). The
   * old id stops working at once. Data is dropped unless `options.keep` says what to carry over.
   */
  regenerate(callback?: Done): Promise<void> | this;
  regenerate(options: RegenerateOptions, callback?: Done): Promise<void> | this;
  regenerate(optionsOrCallback?: RegenerateOptions | Done, callback?: Done): Promise<void> | this {
    const options =
      typeof optionsOrCallback === 'object' && optionsOrCallback !== null ? optionsOrCallback : {};
    const cb = typeof optionsOrCallback === 'function' ? optionsOrCallback : callback;
    return settle(
      () =>
        this.req[kController]?.regenerate(options) ??
        fromCallback((done) => (this.req.sessionStore as LegacyStore).regenerate(this.req, done)),
      cb,
      this,
    );
  }
}
