export { loadSqlMigrations, type Migration, type RunMigrationsOptions, runMigrations } from './migrate.js';
export { type CreatePoolOptions, createPool, POOL_DEFAULTS } from './pool.js';
export { quoteIdent, quoteQualified } from './sql.js';
