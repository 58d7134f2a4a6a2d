import pg from 'pg';

/** Options for {@link createPool}: any `pg.PoolConfig` field overrides the defaults. */
export type CreatePoolOptions = Partial<pg.PoolConfig> & {
  /**
   * Called when an idle pooled client fails (server restart, network drop). Without a listener
   * `pg.Pool` re-emits the error as an unhandled `'error'` event, which kills the process.
   * Defaults to writing one line to stderr.
   */
  onError?: (err: Error) => void;
};

/** Defaults applied by {@link createPool}; exported so callers and tests can see what they get. */
export const POOL_DEFAULTS = {
  max: 10,
  // A pool that waits forever for a connection turns a database outage into hung requests.
  connectionTimeoutMillis: 5_000,
  idleTimeoutMillis: 30_000,
  // Server-side limit (cancels the statement) plus client-side limit (covers a dead network).
  statement_timeout: 15_000,
  query_timeout: 15_000,
  application_name: 'pgsession',
} as const satisfies pg.PoolConfig;

/**
 * Creates a `pg.Pool` with production-safe defaults (see {@link POOL_DEFAULTS}) and an `'error'`
 * listener, so an idle client error is reported instead of crashing the process.
 */
export function createPool(connectionString: string, options: CreatePoolOptions = {}): pg.Pool {
  const { onError, ...config } = options;
  const pool = new pg.Pool({ ...POOL_DEFAULTS, ...config, connectionString });
  pool.on('error', (err) => {
    if (onError) {
      onError(err);
    } else {
      process.stderr.write(`pgsession: idle PostgreSQL client error: ${err.message}\n`);
    }
  });
  return pool;
}
