/**
 * Development tooling of this repository (the demo app, the CLI, the tests and the benchmarks):
 * a zero-setup embedded PostgreSQL. Not exported by the package's entry points.
 */
export { type Binaries, reachableBinaries } from './binaries.js';
export {
  checkDatabaseUrl,
  type Database,
  DatabaseUrlError,
  type OpenDatabaseOptions,
  openDatabase,
} from './database.js';
export {
  type EmbeddedPostgresHandle,
  type EmbeddedPostgresOptions,
  startEmbeddedPostgres,
} from './embedded.js';
export type { RunAs } from './privileges.js';
