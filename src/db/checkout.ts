import type pg from 'pg';

/**
 * Watch a client checked out of a pool. While a client is checked out, node-postgres leaves its
 * `'error'` events to the borrower: a server that goes away between two statements (a failover,
 * a restart, "terminating connection due to unexpected postmaster exit") would otherwise be an
 * uncaught exception that ends the process. The error is kept, so the caller can hand it to
 * `release(err)` and the pool discards the client instead of lending it again.
 */
export function watchCheckedOut(client: pg.PoolClient): { error(): Error | undefined; done(): void } {
  let failed: Error | undefined;
  const onError = (err: Error) => {
    failed ??= err;
  };
  client.on('error', onError);
  return {
    error: () => failed,
    done: () => {
      client.removeListener('error', onError);
    },
  };
}
