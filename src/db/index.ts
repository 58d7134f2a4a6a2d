export { type Database, type OpenDatabaseOptions, openDatabase } from './database.js';
export {
  type EmbeddedPostgresHandle,
  type EmbeddedPostgresOptions,
  startEmbeddedPostgres,
} from './embedded.js';
export { loadSqlMigrations, type Migration, type RunMigrationsOptions, runMigrations } from './migrate.js';
export { type CreatePoolOptions, createPool, POOL_DEFAULTS } from './pool.js';
export { quoteIdent, quoteQualified } from './sql.js';
