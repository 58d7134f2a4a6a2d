export { queryOptionsFromEnv } from './env.js';
export {
  isConnectionError,
  isDatabaseUnavailable,
  isLoginRefused,
  isStatementTimeout,
  StatementTimeoutError,
} from './errors.js';
export { loadSqlMigrations, type Migration, type RunMigrationsOptions, runMigrations } from './migrate.js';
export { type CreatePoolOptions, createPool, describeError, guardPoolErrors, POOL_DEFAULTS } from './pool.js';
export {
  DEFAULT_STATEMENT_TIMEOUT_MS,
  type QueryOptions,
  queryOptionsOf,
  resolveQueryOptions,
  unwrapPool,
  withQueryOptions,
} from './query.js';
export { quoteIdent, quoteQualified } from './sql.js';
