import { startEmbeddedPostgres } from './embedded.js';

/** Options for {@link openDatabase}. */
export interface OpenDatabaseOptions {
  /** Where to read `DATABASE_URL` from. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Embedded server data dir (see `startEmbeddedPostgres`). Default `.data/postgres`. */
  dataDir?: string;
  /** Embedded server database name. Default `pgsession`. */
  database?: string;
  /** Progress messages of the embedded server. */
  onLog?: (line: string) => void;
}

/** A database to connect to, from {@link openDatabase}. */
export interface Database {
  /** Connection string to hand to `createPool`. */
  url: string;
  /** True when `url` points to the embedded development server. */
  embedded: boolean;
  /** Releases the embedded server reference (it stops when no process uses it); no-op otherwise. */
  close(): Promise<void>;
}

/**
 * Finds the database to use: `DATABASE_URL` when set, otherwise the embedded development server
 * (started, or joined when another process in the same folder already runs it), so a fresh
 * checkout of the demo, the CLI, the tests and the benchmarks works with no setup.
 */
export async function openDatabase(options: OpenDatabaseOptions = {}): Promise<Database> {
  const url = (options.env ?? process.env).DATABASE_URL?.trim();
  if (url) return { url, embedded: false, close: async () => {} };
  const server = await startEmbeddedPostgres({
    dataDir: options.dataDir,
    database: options.database,
    onLog: options.onLog,
  });
  return { url: server.url, embedded: true, close: () => server.stop() };
}
