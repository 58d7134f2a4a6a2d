/**
 * pgsession: persistent, secure login sessions for Node.js, stored in PostgreSQL.
 *
 * The default export is the express-session–compatible middleware factory; everything else is a
 * named export. `require('pgsession')` returns the same function with the named exports on it.
 */
import { Cookie } from './core/cookie.js';
import { Session } from './core/session.js';
import { session } from './express/middleware.js';
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
export {
  resolveOptions,
  type SessionMiddleware,
  type SessionOptions,
  session,
} from './express/middleware.js';
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
 * The default export: the middleware factory carrying express-session's static members
 * (`session.Store`, `session.MemoryStore`, `session.Cookie`, `session.Session`), so code written
 * for express-session — `require('connect-pg-simple')(session)`, `class X extends session.Store` —
 * works unchanged.
 */
const defaultExport: typeof session & {
  Store: typeof Store;
  MemoryStore: typeof MemoryStore;
  Cookie: typeof Cookie;
  Session: typeof Session;
} = Object.assign(session, { Store, MemoryStore, Cookie, Session });

export default defaultExport;
