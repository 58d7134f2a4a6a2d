/**
 * What a store failure becomes. A fault must never be mistaken for "no session", which would
 * log the user out: every store call the engine makes goes through {@link runStore}, so a
 * failure reaches the app as a `StoreUnavailableError` (503 + `Retry-After`, the cookie left
 * alone), or, from a store written for express-session, as that store's own error, as
 * express-session passes it on.
 */
import { SerializationError, StoreUnavailableError } from './errors.js';
import { ConnectStoreError } from './store.js';

export function storeFault(what: string, err: unknown): unknown {
  if (err instanceof ConnectStoreError) return err.original;
  if (err instanceof SerializationError || err instanceof StoreUnavailableError) return err;
  return new StoreUnavailableError(`session store failed to ${what}`, err);
}

/** Run one store call; `what` names it in the error ("load the session"). */
export async function runStore<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw storeFault(what, err);
  }
}

/** An error from background work (a throttled touch), as `onBackgroundError` is given it. */
export function backgroundFault(err: unknown): unknown {
  return err instanceof ConnectStoreError ? err.original : err;
}

/**
 * A write refused because the request's session is a last-known-good copy served while the
 * database cannot be reached (degraded mode): nothing may be written that could be lost.
 */
export function readOnlyFault(what: string): StoreUnavailableError {
  return new StoreUnavailableError(
    `cannot ${what}: the session store is unreachable and this session is read-only until it is back`,
  );
}
