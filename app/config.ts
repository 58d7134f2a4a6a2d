import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { queryOptionsFromEnv } from '../src/db/index.js';
import {
  ConfigError,
  GENERATE_SECRET_COMMAND,
  MIN_PRODUCTION_SECRET_LENGTH,
  normalizeSecrets,
  parseDuration,
} from '../src/index.js';
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from './server.js';

/**
 * Words tied to this demo that no password may contain (ASVS 6.1.2, 6.2.11): its product and
 * library names and what its pages are about. The user's own email
 * (local part and domain labels) is refused on top of these by the library. Matching is
 * case-insensitive and sees through substitutions (`P4ssw0rd-PgS3ssion!` contains
 * `pgsession`); words shorter than 4 characters are ignored. `PASSWORD_CONTEXT_WORDS` adds more.
 * Documented in docs/demo-app.md ("Passwords").
 */
export const DEMO_PASSWORD_CONTEXT_WORDS: readonly string[] = Object.freeze([
  'pgsession',
  'postgres',
  'postgresql',
  'dashboard',
  'nginx',
  'redis',
]);

/** The breached-password check of the demo (`PWNED_PASSWORDS_URL`); null when off. */
export interface PwnedPasswordsConfig {
  /** The range API endpoint, e.g. `https://api.pwnedpasswords.com/range/`. */
  url: string;
  /** `PWNED_PASSWORDS_ON_ERROR`: what to do when the service cannot answer. */
  onError: 'allow' | 'refuse';
  /** `PWNED_PASSWORDS_TIMEOUT`, ms. */
  timeoutMs: number;
}

/** `trust proxy` as Express takes it: a boolean, a hop count, or addresses/subnets/names. */
export type TrustProxy = boolean | number | string | string[];

/** The demo app's configuration, from the environment (see docs/demo-app.md). */
export interface AppConfig {
  /** `DATABASE_URL`; undefined means the embedded PostgreSQL in `.data/postgres`. */
  databaseUrl: string | undefined;
  port: number;
  host: string;
  /** First signs, all verify. */
  sessionSecrets: string[];
  /** Where the generated development secret lives (null when `SESSION_SECRET` was given). */
  generatedSecretFile: string | null;
  /**
   * The warning about weak secrets (examples, short ones) that {@link loadConfig} printed, if
   * any: the session middleware gives the same one, which the app does not log a second time.
   */
  secretWarning?: string | undefined;
  /** Sliding server-side timeout, ms. */
  idleTimeout: number;
  /** Maximum session lifetime, ms. */
  absoluteTimeout: number;
  production: boolean;
  /** Cookie name: `__Host-sessionId` in production (Secure, Path=/, no Domain), else `sessionId`. */
  cookieName: string;
  /** Secure cookies (production). */
  secureCookies: boolean;
  trustProxy: TrustProxy;
  /** `HEADERS_TIMEOUT`, `REQUEST_TIMEOUT`, `MAX_CONNECTIONS_PER_CLIENT` (see app/server.ts). Absent: the defaults. */
  server?: ServerLimits;
  /**
   * `REAUTH_WINDOW`: how recent the password must be (login or re-authentication) to revoke
   * sessions, ms. Default 5 minutes. Optional so configs built in code keep the default.
   */
  reauthWindow?: number;
  /**
   * Words no password may contain: {@link DEMO_PASSWORD_CONTEXT_WORDS} plus
   * `PASSWORD_CONTEXT_WORDS` (comma-separated). Absent (configs built in code): the demo's list.
   */
  passwordContextWords?: readonly string[];
  /** Breached-password check (`PWNED_PASSWORDS_URL`); absent or null: off. */
  pwnedPasswords?: PwnedPasswordsConfig | null;
  /**
   * `TOTP_ENCRYPTION_KEY`: 32 bytes (64 hex characters or base64) that encrypt the users' TOTP
   * secrets in the database (AES-256-GCM). Absent: stored as is (see docs/demo-app.md).
   */
  totpEncryptionKey?: string | undefined;
  /**
   * `TRUSTED_DEVICE_COOKIES=on`: device cookies against distributed lockout (OWASP; see
   * docs/demo-app.md). Off unless set.
   */
  trustedDeviceCookies?: boolean;
  /** How the app talks to PostgreSQL (`DATABASE_*`). Absent (configs built in code): the defaults. */
  database?: DatabaseConfig;
  /** `METRICS=on`: `GET /metrics` (Prometheus text). Off unless set: see docs/demo-app.md. */
  metrics?: boolean;
  /**
   * `DEVICE_BOUND`: device-bound sessions (DBSC), `report` (default), `require` or `off`. Absent
   * (configs built in code): `report`.
   */
  deviceBound?: 'off' | 'report' | 'require';
}

/** The `DATABASE_*` settings besides `DATABASE_URL` (docs/demo-app.md, docs/scaling.md). */
export interface DatabaseConfig {
  /**
   * `DATABASE_DIRECT_URL`: where the session cache's `LISTEN` connection goes when
   * `DATABASE_URL` is a transaction-mode pooler (which cannot carry `LISTEN`). Default: the pool's.
   */
  directUrl?: string | undefined;
  /** `DATABASE_POOL_MAX`: connections in the app's pool (default 10). */
  poolMax: number;
  /** `DATABASE_PREPARED_STATEMENTS=off`: no named statements (a transaction-mode pooler). */
  preparedStatements?: boolean | undefined;
  /** `DATABASE_STATEMENT_TIMEOUT`: each statement's limit, ms, or false for none (default 15 s). */
  statementTimeout?: number | false | undefined;
}

/** `DATABASE_DIRECT_URL`, `DATABASE_POOL_MAX`, `DATABASE_PREPARED_STATEMENTS`, `DATABASE_STATEMENT_TIMEOUT`. */
export function parseDatabaseConfig(env: NodeJS.ProcessEnv): DatabaseConfig {
  const direct = env.DATABASE_DIRECT_URL?.trim() || undefined;
  if (direct !== undefined && !/^postgres(ql)?:\/\//.test(direct)) {
    throw new ConfigError('DATABASE_DIRECT_URL must be a postgres:// connection string');
  }
  const max = env.DATABASE_POOL_MAX?.trim();
  if (max && !/^[1-9]\d{0,3}$/.test(max)) {
    throw new ConfigError(`DATABASE_POOL_MAX must be a whole number from 1 to 9999, got "${max}"`);
  }
  return { directUrl: direct, poolMax: max ? Number(max) : 10, ...queryOptionsFromEnv(env) };
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Folder for generated development files. Default `.data` (relative to the working directory). */
  dataDir?: string;
  /** Warnings (the generated secret). Default: stderr. */
  warn?: (message: string) => void;
}

function parsePort(value: string | undefined): number {
  if (value === undefined || value.trim() === '') return 3000;
  const n = Number(value.trim());
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new ConfigError(`PORT must be an integer from 0 to 65535, got "${value}"`);
  }
  return n;
}

/** The names Express's `trust proxy` (proxy-addr) accepts besides addresses and subnets. */
const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** An address (`10.0.0.1`), a subnet (`10.0.0.0/8`, `fd00::/8`, `10.0.0.0/255.0.0.0`) or a name. */
function isProxyEntry(entry: string): boolean {
  if (PROXY_NAMES.has(entry)) return true;
  const [address = '', bits, ...rest] = entry.split('/');
  if (rest.length > 0 || isIP(address) === 0) return false;
  if (bits === undefined) return true;
  if (/^\d{1,3}$/.test(bits)) return Number(bits) <= (isIP(address) === 4 ? 32 : 128);
  return isIP(address) === 4 && isIP(bits) === 4;
}

/**
 * `TRUST_PROXY`: `true`/`false`, a hop count (how many proxies are in front), or a comma list of
 * the proxies' addresses, subnets and the names `loopback`, `linklocal`, `uniquelocal`.
 * `true` trusts every hop, so a client picks its own address (and rate-limit key) by sending
 * `X-Forwarded-For`: {@link loadConfig} warns about it.
 * @throws ConfigError for an entry that is none of those
 */
export function parseTrustProxy(value: string | undefined): TrustProxy {
  const v = value?.trim();
  if (!v) return false;
  const lower = v.toLowerCase();
  if (['true', 'yes', 'on'].includes(lower)) return true;
  if (['false', 'no', 'off', '0'].includes(lower)) return false;
  if (/^\d+$/.test(v)) return Number(v);
  const list = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = list.filter((entry) => !isProxyEntry(entry));
  if (bad.length > 0) {
    throw new ConfigError(
      `TRUST_PROXY must be true/false, a hop count, or a comma list of proxy addresses, subnets, ` +
        `loopback, linklocal or uniquelocal; got ${bad.map((b) => `"${b}"`).join(', ')}`,
    );
  }
  return list.length === 1 ? list[0]! : list;
}

/** A positive number of milliseconds from a duration (`10s`, `30000`), or the default. */
function parseTimeout(value: string | undefined, name: string, fallback: number): number {
  const v = value?.trim();
  if (!v) return fallback;
  const ms = parseDuration(/^\d+$/.test(v) ? `${v}ms` : v, name);
  if (ms <= 0) throw new ConfigError(`${name} must be more than 0`);
  return ms;
}

/** `MAX_CONNECTIONS_PER_CLIENT`: a whole number, 0 for no limit. */
function parseConnectionCap(value: string | undefined): number {
  const v = value?.trim();
  if (!v) return DEFAULT_SERVER_LIMITS.maxConnectionsPerClient;
  if (!/^\d+$/.test(v))
    throw new ConfigError(`MAX_CONNECTIONS_PER_CLIENT must be a whole number, got "${value}"`);
  return Number(v);
}

/** A comma-separated list of words (`PASSWORD_CONTEXT_WORDS`), trimmed, empties dropped. */
export function parseWordList(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((w) => w.trim())
    .filter(Boolean);
}

/**
 * `PWNED_PASSWORDS_URL` (an http(s) URL turns the check on), `PWNED_PASSWORDS_ON_ERROR`
 * (`allow`, the default, or `refuse`) and `PWNED_PASSWORDS_TIMEOUT` (a duration, default 2s).
 */
export function parsePwnedPasswords(env: NodeJS.ProcessEnv): PwnedPasswordsConfig | null {
  const url = env.PWNED_PASSWORDS_URL?.trim();
  if (!url) return null;
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (parsed?.protocol !== 'https:' && parsed?.protocol !== 'http:') {
    throw new ConfigError(`PWNED_PASSWORDS_URL must be an http(s) URL, got "${url}"`);
  }
  const onError = (env.PWNED_PASSWORDS_ON_ERROR?.trim() || 'allow').toLowerCase();
  if (onError !== 'allow' && onError !== 'refuse') {
    throw new ConfigError(`PWNED_PASSWORDS_ON_ERROR must be "allow" or "refuse", got "${onError}"`);
  }
  const timeoutMs = parseDuration(env.PWNED_PASSWORDS_TIMEOUT?.trim() || '2s', 'PWNED_PASSWORDS_TIMEOUT');
  if (timeoutMs <= 0) throw new ConfigError('PWNED_PASSWORDS_TIMEOUT must be more than 0');
  return { url, onError, timeoutMs };
}

function readOrCreateSecret(file: string, warn: (m: string) => void): string {
  try {
    const existing = readFileSync(file, 'utf8').trim();
    if (existing.length >= MIN_PRODUCTION_SECRET_LENGTH) return existing;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const secret = randomBytes(32).toString('base64url');
  mkdirSync(path.dirname(file), { recursive: true });
  try {
    // `wx`: if another process created it meanwhile, use theirs.
    writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFileSync(file, 'utf8').trim();
    throw err;
  }
  chmodSync(file, 0o600);
  warn(
    `SESSION_SECRET is not set: generated one into ${file} (development only; kept across restarts). In production set SESSION_SECRET.`,
  );
  return secret;
}

/**
 * Read the configuration from the environment. Throws {@link ConfigError} with a message meant
 * for the operator: `main.ts` prints it and exits with status 1.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, options: LoadConfigOptions = {}): AppConfig {
  const production = env.NODE_ENV === 'production';
  const warn = options.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
  const dataDir = path.resolve(options.dataDir ?? '.data');

  const rawSecret = env.SESSION_SECRET?.trim();
  let sessionSecrets: string[];
  let generatedSecretFile: string | null = null;
  let secretWarning: string | undefined;
  if (rawSecret) {
    sessionSecrets = rawSecret
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (sessionSecrets.length === 0) throw new ConfigError('SESSION_SECRET is empty');
    // The library's rules: in production the first secret (it signs) must be strong; older,
    // verify-only ones may be weak, so rotating off a weak secret logs nobody out. Weak secrets
    // get one loud warning, printed here, at start-up.
    try {
      normalizeSecrets(sessionSecrets, production, (m) => {
        secretWarning = m;
        warn(m);
      });
    } catch (err) {
      if (err instanceof ConfigError) throw new ConfigError(`SESSION_SECRET: ${err.message}`);
      throw err;
    }
  } else if (production) {
    throw new ConfigError(
      `SESSION_SECRET is required when NODE_ENV=production: one or more comma-separated secrets, the first (it signs new cookies) of at least ${MIN_PRODUCTION_SECRET_LENGTH} characters; all verify. Generate one with: ${GENERATE_SECRET_COMMAND}`,
    );
  } else {
    generatedSecretFile = path.join(dataDir, 'session-secret');
    sessionSecrets = [readOrCreateSecret(generatedSecretFile, warn)];
  }

  const idleTimeout = parseDuration(env.SESSION_IDLE_TIMEOUT?.trim() || '7d', 'SESSION_IDLE_TIMEOUT');
  const absoluteTimeout = parseDuration(
    env.SESSION_ABSOLUTE_TIMEOUT?.trim() || '30d',
    'SESSION_ABSOLUTE_TIMEOUT',
  );
  if (idleTimeout <= 0) throw new ConfigError('SESSION_IDLE_TIMEOUT must be more than 0');
  if (absoluteTimeout <= 0) throw new ConfigError('SESSION_ABSOLUTE_TIMEOUT must be more than 0');
  const trustProxy = parseTrustProxy(env.TRUST_PROXY);
  if (trustProxy === true) {
    warn(
      'TRUST_PROXY=true trusts every X-Forwarded-For hop: a client can pick its own address, and ' +
        'so its own login rate-limit key. Set the number of proxies in front (TRUST_PROXY=1) or ' +
        'their addresses/subnets (TRUST_PROXY=10.0.0.0/8) instead.',
    );
  }
  const reauthWindow = parseDuration(env.REAUTH_WINDOW?.trim() || '5m', 'REAUTH_WINDOW');
  if (reauthWindow <= 0) throw new ConfigError('REAUTH_WINDOW must be more than 0');

  return {
    databaseUrl: env.DATABASE_URL?.trim() || undefined,
    port: parsePort(env.PORT),
    host: env.HOST?.trim() || '127.0.0.1',
    sessionSecrets,
    generatedSecretFile,
    secretWarning,
    idleTimeout,
    absoluteTimeout,
    production,
    cookieName: production ? '__Host-sessionId' : 'sessionId',
    secureCookies: production,
    trustProxy,
    server: {
      headersTimeout: parseTimeout(
        env.HEADERS_TIMEOUT,
        'HEADERS_TIMEOUT',
        DEFAULT_SERVER_LIMITS.headersTimeout,
      ),
      requestTimeout: parseTimeout(
        env.REQUEST_TIMEOUT,
        'REQUEST_TIMEOUT',
        DEFAULT_SERVER_LIMITS.requestTimeout,
      ),
      maxConnectionsPerClient: parseConnectionCap(env.MAX_CONNECTIONS_PER_CLIENT),
    },
    reauthWindow,
    passwordContextWords: [...DEMO_PASSWORD_CONTEXT_WORDS, ...parseWordList(env.PASSWORD_CONTEXT_WORDS)],
    pwnedPasswords: parsePwnedPasswords(env),
    totpEncryptionKey: env.TOTP_ENCRYPTION_KEY?.trim() || undefined,
    trustedDeviceCookies: parseOnOff(env.TRUSTED_DEVICE_COOKIES, 'TRUSTED_DEVICE_COOKIES'),
    database: parseDatabaseConfig(env),
    metrics: parseOnOff(env.METRICS, 'METRICS'),
    deviceBound: parseDeviceBound(env.DEVICE_BOUND),
  };
}

/** `DEVICE_BOUND`: `report` (unset), `require` or `off`. */
function parseDeviceBound(value: string | undefined): 'off' | 'report' | 'require' {
  const v = value?.trim().toLowerCase() || 'report';
  if (v === 'off' || v === 'report' || v === 'require') return v;
  throw new ConfigError(`DEVICE_BOUND must be report, require or off, got "${value}"`);
}

/** `on`/`off` (also true/false, 1/0, yes/no); unset is off. */
function parseOnOff(value: string | undefined, name: string): boolean {
  const v = value?.trim().toLowerCase();
  if (!v || ['off', 'false', '0', 'no'].includes(v)) return false;
  if (['on', 'true', '1', 'yes'].includes(v)) return true;
  throw new ConfigError(`${name} must be on or off, got "${value}"`);
}
