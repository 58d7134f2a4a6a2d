import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../src/dev/index.js';
import { pruneTestDatabases } from './helpers/db.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the test server; test files create their own databases on it. */
    databaseUrl: string;
  }
}

/**
 * Gives the test run a PostgreSQL server: `DATABASE_URL` when set, else the embedded server of
 * the project's `.data/postgres` (shared with the demo app, and joined if already running).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let url = process.env.DATABASE_URL?.trim();
  let release = async () => {};
  if (!url) {
    const server = await startEmbeddedPostgres({
      // Anchored to the repository, not the cwd, so it is the demo app's folder wherever vitest runs.
      dataDir: fileURLToPath(new URL('../.data/postgres', import.meta.url)),
    });
    url = server.url;
    release = () => server.stop();
  }
  try {
    await pruneTestDatabases(url);
  } catch (err) {
    await release();
    throw new Error(`Cannot use the test database server: ${(err as Error).message}`, { cause: err });
  }
  project.provide('databaseUrl', url);
  // Processes spawned by tests don't get `inject`; vitest workers inherit this too.
  process.env.PGSESSION_TEST_ADMIN_URL = url;
  return release;
}
