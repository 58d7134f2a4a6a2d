/**
 * What the bench runner tells a server child (as JSON in `BENCH_SERVER`), and what every
 * configuration shares: the seed's session settings and the session data a login stores.
 */

import type { Framework, Layer } from '../apps/common.js';

/** One benchmark server: a framework, a session layer, and what the section needs of it. */
export interface ServerConfig {
  framework: Framework;
  layer: Layer;
  /** The database of this configuration (absent for the floor and the ceiling). */
  databaseUrl?: string | undefined;
  /** pgsession's per-process cache (default on, as `PgStore`'s default). */
  cache?: boolean | undefined;
  /** Cache bounds (the memory section raises `maxSize` so 100k sessions fit). */
  cacheMax?: number | undefined;
  cacheMaxSize?: number | undefined;
  /** The login-storm server: pgsession's auth layer with this many users (`bench-user-<i>@example.com`). */
  users?: number | undefined;
  /** pgsession with `deviceBound` (DBSC) on: `enforce: 'require'`, the bound cookie checked per request. */
  deviceBound?: boolean | undefined;
}

/** A short name for a configuration, in logs and tables. */
export const configName = (c: Pick<ServerConfig, 'framework' | 'layer' | 'deviceBound'>): string =>
  `${c.framework}/${c.layer}${c.deviceBound ? '+deviceBound' : ''}`;

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
