/**
 * pgsession: persistent, secure login sessions for Node.js, stored in PostgreSQL.
 *
 * The default export is the express-session–compatible middleware factory; everything else is a
 * named export. `require('pgsession')` returns the same function with the named exports on it.
 */
import { session } from './express/middleware.js';

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
export { MIN_PRODUCTION_SECRET_LENGTH, normalizeSecrets } from './core/secrets.js';
export {
  type RegenerateOptions,
  Session,
  type SessionController,
  type SessionData,
  type SessionHost,
} from './core/session.js';
export { sign, unsign } from './core/signature.js';
export {
  resolveOptions,
  type SessionMiddleware,
  type SessionOptions,
  session,
} from './express/middleware.js';
export { fromConnectStore, toSessionStore } from './stores/connect-adapter.js';
export { type Callback, type ConnectStore, Store, type StoreConstructor } from './stores/connect-store.js';
export { MemoryStore, type MemoryStoreOptions } from './stores/memory/memory-store.js';
export {
  CachedSessionStore,
  type CachedSessionStoreOptions,
  type CacheStats,
  PgInvalidationListener,
  type PgInvalidationListenerOptions,
} from './stores/cache/index.js';
export {
  ensureSchema,
  PgStore,
  type PgStoreInstance,
  type PgStoreOptions,
  PostgresSessionStore,
  type PostgresSessionStoreOptions,
} from './stores/postgres/index.js';
export { type CreatePoolOptions, createPool, type Database, openDatabase, runMigrations } from './db/index.js';
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

export default session;
