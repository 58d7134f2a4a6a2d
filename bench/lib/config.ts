/**
 * What the bench runner tells a server child (as JSON in `BENCH_SERVER`), and what every
 * configuration shares: the seed's session settings and the session data a login stores.
 */

/** The session stacks compared by the throughput benchmark, plus the auth server of the login storm. */
export type ServerMode =
  /** Express without sessions: the ceiling. */
  | 'bare'
  /** express-session + its MemoryStore. */
  | 'memory'
  /** express-session + connect-pg-simple: the seed's stack. */
  | 'cps'
  /** pgsession + `PgStore({ cache: false })`. */
  | 'pg-nocache'
  /** pgsession + `PgStore()` (its default: cache on). */
  | 'pg-cache'
  /** pgsession + `PgStore()` + the auth layer (argon2id logins), for the login storm. */
  | 'auth';

export interface ServerConfig {
  mode: ServerMode;
  /** The database of this configuration (absent for `bare` and `memory`). */
  databaseUrl?: string | undefined;
  /**
   * Idle pooled connections are closed after this many ms, so that the runner can make every
   * backend of the database exit (which flushes its statistics) before it reads
   * `pg_stat_database`. The same for every configuration.
   */
  poolIdleMs?: number | undefined;
  /** Cache bounds for `pg-cache` (the memory benchmark raises `maxSize` so 100k sessions fit). */
  cacheMax?: number | undefined;
  cacheMaxSize?: number | undefined;
  /** Users the `auth` server creates at start-up (`bench-user-<i>@example.com`). */
  users?: number | undefined;
}

/** Environment variable carrying the {@link ServerConfig}. */
export const CONFIG_ENV = 'BENCH_SERVER';

/** Same secret everywhere: 48 characters, above every policy's minimum. */
export const SECRET = 'bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz';

/** express-session's default cookie name, as the seed uses. */
export const COOKIE_NAME = 'connect.sid';

/** The seed's cookie lifetime: 7 days. */
export const MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;

/** A realistic browser user agent, stored in the session at login as the demo app does. */
export const USER_AGENT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';

/** The password of every user of the `auth` server. */
export const USER_PASSWORD = 'load-7f3a9c2e-Kq4vXz';

/** The email of auth user `i`. */
export const userEmail = (i: number): string => `bench-user-${i}@example.com`;
