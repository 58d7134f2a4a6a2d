import pg from 'pg';
import { type QueryOptions, withQueryOptions } from './query.js';

/** Options for {@link createPool}: any `pg.PoolConfig` field overrides the defaults. */
export type CreatePoolOptions = Partial<pg.PoolConfig> &
  QueryOptions & {
    /**
     * Called when an idle pooled client fails (server restart, network drop). Without a listener
     * `pg.Pool` re-emits the error as an unhandled `'error'` event, which kills the process.
     * Defaults to writing one line to stderr.
     */
    onError?: (err: Error) => void;
  };

/**
 * Defaults applied by {@link createPool}; exported so callers and tests can see what they get.
 * The statement time limit is not among them: it is `statementTimeout` of {@link QueryOptions}
 * (15 s by default), applied per query so it works through transaction-mode poolers, which
 * refuse `statement_timeout` as a startup parameter.
 */
export const POOL_DEFAULTS = {
  max: 10,
  // A pool that waits forever for a connection turns a database outage into hung requests.
  connectionTimeoutMillis: 5_000,
  idleTimeoutMillis: 30_000,
  // Client-side limit for a dead network, on top of the per-query statementTimeout (15 s).
  query_timeout: 20_000,
  application_name: 'pgsession',
} as const satisfies pg.PoolConfig;

/**
 * Creates a `pg.Pool` with production-safe defaults (see {@link POOL_DEFAULTS}), an `'error'`
 * listener, so an idle client error is reported instead of crashing the process, and the
 * {@link QueryOptions} (`preparedStatements`, `statementTimeout`) applied to its queries.
 */
export function createPool(connectionString: string, options: CreatePoolOptions = {}): pg.Pool {
  const { onError, preparedStatements, statementTimeout, ...config } = options;
  const pool = new pg.Pool({ ...POOL_DEFAULTS, ...config, connectionString });
  pool.on('error', (err) => {
    if (onError) {
      onError(err);
    } else {
      process.stderr.write(`pgsession: idle PostgreSQL client error: ${describeError(err)}\n`);
    }
  });
  return withQueryOptions(pool, { preparedStatements, statementTimeout });
}

/**
 * One line for a database error: SQLSTATE (or socket code) and message, never the whole
 * `pg.Client` that node-postgres attaches to a pool's error.
 */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const inner = (err as { errors?: unknown[] }).errors?.[0];
  const message = err.message || (inner instanceof Error ? inner.message : '') || err.name;
  return typeof code === 'string' && !message.includes(code) ? `${message} (${code})` : message;
}

interface ErrorEmitter {
  listenerCount(event: string): number;
  on(event: 'error', listener: (err: Error) => void): unknown;
}

const guarded = new WeakSet<object>();
let warned = false;

/**
 * Makes a pool the application passed in safe against a database restart. A bare
 * `new pg.Pool()` has no `'error'` listener, so an idle client's `Connection terminated
 * unexpectedly` is an uncaught `'error'` event that ends the process. When the pool has no
 * listener, this adds one that logs the error as one line, and warns once per process
 * (`PGSESSION_POOL_ERROR_LISTENER`) that the application should add its own.
 */
export function guardPoolErrors(pool: unknown, log: (line: string) => void): void {
  const p = pool as Partial<ErrorEmitter> | null;
  if (!p || typeof p.listenerCount !== 'function' || typeof p.on !== 'function') return;
  if (guarded.has(p) || p.listenerCount('error') > 0) return;
  guarded.add(p);
  p.on('error', (err) => log(`pgsession: PostgreSQL pool error: ${describeError(err)}`));
  if (!warned) {
    warned = true;
    process.emitWarning(
      "The pg.Pool given to pgsession has no 'error' listener: pgsession added one that logs, so a database restart cannot crash the process. Add your own: pool.on('error', (err) => log(err.message)).",
      { code: 'PGSESSION_POOL_ERROR_LISTENER' },
    );
  }
}
