/** What a {@link InvalidationSource} tells its subscribers. */
export interface InvalidationHandlers {
  /**
   * These storage keys changed or were deleted elsewhere: forget them. The key `'*'`
   * (`ALL_KEYS`) means every key.
   */
  onInvalidate(keys: readonly string[]): void;
  /**
   * The source stopped listening (startup failure, dropped connection, failed health check,
   * close): changes may now go unannounced, so nothing cached can be vouched for any more.
   * Called synchronously at the moment the source notices, before `listening` is read again.
   */
  onDown(): void;
  /** The source is listening again; changes from now on will be announced. */
  onUp(): void;
}

/**
 * Where a cache learns that sessions changed in another process: PostgreSQL `LISTEN` in
 * production (`PgInvalidationListener`), anything else in tests.
 *
 * The contract a cache relies on: while `listening` is true, every change committed after the
 * moment `listening` last became true is eventually delivered through `onInvalidate`; when
 * that can no longer be guaranteed, `listening` becomes false and `onDown` is called at once.
 */
export interface InvalidationSource {
  /** True while changes are guaranteed to be announced. */
  readonly listening: boolean;
  /** Begin listening if not yet started (idempotent). The cache calls it when it is first used. */
  start?(): void;
  /** Register handlers; returns a function that unregisters them. */
  subscribe(handlers: InvalidationHandlers): () => void;
  /** Stop listening and release connections and timers. Idempotent. */
  close(): Promise<void>;
}
