/**
 * pgsession: persistent, secure login sessions for Node.js, stored in PostgreSQL.
 *
 * The default export is the express-session–compatible middleware factory; everything else is a
 * named export. `require('pgsession')` returns the same function with the named exports on it.
 */
import { Cookie } from './core/cookie.js';
import { Session } from './core/session.js';
import {
  session as createSessionMiddleware,
  type SessionOptions as MiddlewareOptions,
  type SessionMiddleware,
} from './express/middleware.js';
import { Store } from './stores/connect-store.js';
import { MemoryStore } from './stores/memory/memory-store.js';

export { Cookie, type CookieOptions } from './core/cookie.js';
export { parseDuration } from './core/duration.js';
export { type EngineOptions, RequestSession, SessionEngine, type SessionEvent } from './core/engine.js';
export {
  ConfigError,
  PgSessionError,
  SerializationError,
  SessionStateError,
  StoreUnavailableError,
} from './core/errors.js';
export { generateId, hashId } from './core/id.js';
export { GENERATE_SECRET_COMMAND, MIN_PRODUCTION_SECRET_LENGTH, normalizeSecrets } from './core/secrets.js';
export {
  type RegenerateOptions,
  Session,
  type SessionController,
  type SessionData,
  type SessionHost,
} from './core/session.js';
export { type Secret, sign, unsign } from './core/signature.js';
export { type CreatePoolOptions, createPool, runMigrations } from './db/index.js';
export { resolveOptions, type SessionMiddleware, type SessionOptions } from './express/middleware.js';
export {
  CachedSessionStore,
  type CachedSessionStoreOptions,
  type CacheStats,
  isConnectionError,
  PgInvalidationListener,
  type PgInvalidationListenerOptions,
} from './stores/cache/index.js';
export { fromConnectStore } from './stores/connect-adapter.js';
export { type Callback, type ConnectStore, Store, type StoreConstructor } from './stores/connect-store.js';
export { toSessionStore } from './stores/engine-face.js';
export { MemoryStore, type MemoryStoreOptions } from './stores/memory/memory-store.js';
export {
  ensureSchema,
  type PgPromiseLike,
  PgStore,
  type PgStoreInstance,
  type PgStoreOptions,
  PostgresSessionStore,
  type PostgresSessionStoreOptions,
  type Queryable,
  UnknownSessionKeyError,
} from './stores/postgres/index.js';
export {
  type CookieJSON,
  type HasSessionStore,
  kSessionStore,
  type SessionChange,
  type SessionJSON,
  type SessionListing,
  type SessionRecord,
  type SessionStore,
  userIdOf,
} from './stores/types.js';

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
