/**
 * Errors pgsession throws or passes to `next(err)`. Each has a stable `code` to branch on and,
 * where it maps to HTTP, a `status`, and `expose` (the http-errors convention Express's error
 * handler follows): `false` unless the message is written for the end user, so no handler shows
 * internal details by default.
 */
export class PgSessionError extends Error {
  readonly code: string;
  readonly status: number;
  readonly expose: boolean;
  constructor(
    code: string,
    message: string,
    options?: { cause?: unknown; status?: number; expose?: boolean },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = options?.status ?? 500;
    this.expose = options?.expose ?? false;
  }
}

/** Invalid options given to a pgsession constructor or factory. Thrown at start-up, never per request. */
export class ConfigError extends PgSessionError {
  constructor(message: string) {
    super('PGSESSION_CONFIG', message);
  }
}

/**
 * The session store failed (database down, timeout). Maps to 503 with `Retry-After`: the
 * request could not be served, but the user's session is intact and their cookie untouched.
 */
export class StoreUnavailableError extends PgSessionError {
  readonly retryAfter: number;
  /** Response headers, in the http-errors convention that Express's default error handler applies. */
  readonly headers: Record<string, string>;
  constructor(message: string, cause?: unknown, retryAfterSeconds = 2) {
    super('PGSESSION_STORE_UNAVAILABLE', message, { cause, status: 503 });
    this.retryAfter = retryAfterSeconds;
    this.headers = { 'Retry-After': String(retryAfterSeconds) };
  }
}

/** Session data that JSON cannot represent (BigInt, cycles): a programming error, reported on save. */
export class SerializationError extends PgSessionError {
  constructor(message: string, cause?: unknown) {
    super('PGSESSION_SERIALIZE', message, { cause });
  }
}

/** A session method was used wrongly (e.g. `save()` after `destroy()`). */
export class SessionStateError extends PgSessionError {
  constructor(message: string) {
    super('PGSESSION_STATE', message);
  }
}
