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

/** `DATABASE_URL` is set but is not a PostgreSQL connection string. */
export class DatabaseUrlError extends Error {
  readonly code = 'ERR_DATABASE_URL';
  constructor(message: string) {
    super(message);
    this.name = 'DatabaseUrlError';
  }
}

/**
 * Refuse what `pg` would misread: it parses any string as a URL relative to `postgres://base`,
 * so `notaurl` becomes a connection to the host `base` and fails with `getaddrinfo ENOTFOUND base`.
 * Accepted: `postgres://` and `postgresql://` URLs with a host, `socket:` URLs and socket paths.
 * The value itself is never echoed: it may hold a password.
 */
export function checkDatabaseUrl(url: string): void {
  const expected =
    'expected postgres://user:password@host:5432/database (or unset DATABASE_URL to use the embedded PostgreSQL)';
  if (url.startsWith('/')) return; // a Unix socket directory, as pg reads it
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new DatabaseUrlError(`DATABASE_URL is not a PostgreSQL connection URL: ${expected}`);
  }
  if (parsed.protocol === 'socket:') return;
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new DatabaseUrlError(
      `DATABASE_URL has the scheme "${parsed.protocol}", not postgres: or postgresql:: ${expected}`,
    );
  }
  // `postgres:///db` (no host) means the local socket to pg, which is fine; `postgres:db` is not.
  if (!url.slice(parsed.protocol.length).startsWith('//')) {
    throw new DatabaseUrlError(`DATABASE_URL is not a PostgreSQL connection URL: ${expected}`);
  }
}

/**
 * Finds the database to use: `DATABASE_URL` when set, otherwise the embedded development server
 * (started, or joined when another process in the same folder already runs it), so a fresh
 * checkout of the demo, the CLI, the tests and the benchmarks works with no setup.
 */
export async function openDatabase(options: OpenDatabaseOptions = {}): Promise<Database> {
  const url = (options.env ?? process.env).DATABASE_URL?.trim();
  if (url) checkDatabaseUrl(url);
  if (url) return { url, embedded: false, close: async () => {} };
  const server = await startEmbeddedPostgres({
    dataDir: options.dataDir,
    database: options.database,
    onLog: options.onLog,
  });
  return { url: server.url, embedded: true, close: () => server.stop() };
}
