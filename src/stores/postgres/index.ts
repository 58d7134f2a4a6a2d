/**
 * The PostgreSQL session store: the promise face the engine uses ({@link PostgresSessionStore}),
 * the express-session face ({@link PgStore}), and the schema helpers. The connect-pg-simple
 * factory is a separate entry point (`pgsession/connect-pg-simple`).
 */

export { UnknownSessionKeyError } from '../admin-keys.js';
export {
  createPgStoreClass,
  type PgPromiseLike,
  PgStore,
  type PgStoreConstructor,
  type PgStoreFlavor,
  type PgStoreInstance,
  type PgStoreOptions,
  type QueryCallback,
} from './pg-store.js';
export { buildQueries, type Queries, type Statement } from './queries.js';
export {
  advisoryLockKeys,
  DEFAULT_TABLE_NAME,
  type EnsureSchemaOptions,
  type EnsureSchemaResult,
  EXTRA_COLUMNS,
  ensureSchema,
  type TableNames,
  type TableOptions,
  tableNames,
} from './schema.js';
export {
  DEFAULT_PRUNE_BATCH_SIZE,
  DEFAULT_PRUNE_INTERVAL_MS,
  defaultPruneJitter,
  PostgresSessionStore,
  type PostgresSessionStoreOptions,
  type PostgresStore,
  type PruneOptions,
  type PruningScheduleOptions,
  type Queryable,
  type Row,
  type RunStatement,
  type StoredKey,
  type StoredSession,
} from './session-store.js';
