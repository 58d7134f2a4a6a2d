/**
 * pgsession: persistent, secure login sessions for Node.js, stored in PostgreSQL.
 *
 * The default export is the express-session–compatible middleware factory; everything else is a
 * named export. `require('pgsession')` returns the same function with the named exports on it.
 */

import {
  session as createSessionMiddleware,
  type SessionOptions as MiddlewareOptions,
  type SessionMiddleware,
} from './adapters/express/middleware.js';
import { Cookie } from './core/cookie.js';
import { Session } from './core/session.js';
import { Store } from './stores/connect-store.js';
import { MemoryStore } from './stores/memory/memory-store.js';

// What an app uses, and nothing else (docs/api.md justifies each). The engine, the cache and
// the stores' internals are not exported: adapters and stores live in this repository, one
// folder each (docs/architecture.md), and store authors get the contract suite from
// `pgsession/testing`.

// express-session's API: the middleware (below), its options, and the classes it carries.
export type { SessionMiddleware, SessionOptions } from './adapters/express/middleware.js';
export { Cookie, type CookieOptions } from './core/cookie.js';
// The `deviceBound` option (DBSC) and the binding a store keeps for it.
export type { DeviceBoundOptions } from './core/device-bound.js';
// Checking configuration the way the middleware will (an app's own start-up checks).
export { parseDuration } from './core/duration.js';
export type { SessionEvent } from './core/engine.js';
// Errors, each with a stable `code`; and the one question an app asks of any error.
export {
  ConfigError,
  PgSessionError,
  SerializationError,
  SessionStateError,
  StoreUnavailableError,
} from './core/errors.js';
export { GENERATE_SECRET_COMMAND, MIN_PRODUCTION_SECRET_LENGTH, normalizeSecrets } from './core/secrets.js';
export { type RegenerateOptions, Session, type SessionData } from './core/session.js';
export type { Secret } from './core/signature.js';
// Writing a store with pgsession's own guarantees (docs/stores.md): the port the engine talks to.
export {
  type CookieJSON,
  type DeviceBinding,
  type HasSessionStore,
  kSessionStore,
  type SessionChange,
  type SessionJSON,
  type SessionListing,
  type SessionRecord,
  type SessionStore,
  type StoreCallOptions,
} from './core/store.js';
export { StoredData } from './core/stored-data.js';
export {
  type CreatePoolOptions,
  createPool,
  isConnectionError,
  isDatabaseUnavailable,
  type QueryOptions,
  runMigrations,
  StatementTimeoutError,
} from './db/index.js';
export { type Callback, type ConnectStore, Store, type StoreConstructor } from './stores/connect-store.js';
export { MemoryStore, type MemoryStoreOptions } from './stores/memory/memory-store.js';
// The PostgreSQL store (connect-pg-simple's table), and a pool to give it.
export {
  type PgPromiseLike,
  PgStore,
  type PgStoreInstance,
  type PgStoreOptions,
  UnknownSessionKeyError,
} from './stores/postgres/index.js';

/**
 * The middleware factory, express-session's API (`session(options)`), and the default export.
 * Like express-session's, it carries `session.Store`, `session.MemoryStore`, `session.Cookie` and
 * `session.Session`, so code written for express-session — `require('connect-pg-simple')(session)`,
 * `class X extends session.Store` — works unchanged; `require('pgsession')` is this function
 * with every named export on it. Its type namespace (`session.SessionOptions`,
 * `session.SessionData`, `session.Store`, … every named export) is added to the published
 * declarations by scripts/fix-dts.mjs.
 */
function session(options: MiddlewareOptions): SessionMiddleware {
  return createSessionMiddleware(options);
}
// Assigned rather than declared as properties: the published declarations type them in the
// function's namespace (scripts/fix-dts.mjs), alongside every other export.
Object.assign(session, { Store, MemoryStore, Cookie, Session });
// Bundlers may rename it (the middleware module's factory has the same name).
Object.defineProperty(session, 'name', { value: 'session' });

export { session };
export default session;
