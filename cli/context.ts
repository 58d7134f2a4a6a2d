/**
 * The database side of a command: which PostgreSQL (DATABASE_URL, else the embedded server in
 * `.data/postgres`, shared with a running demo app), a small pool, the session store and the
 * users repository; and closing all of it so the process exits at once.
 */
import type pg from 'pg';
import {
  PasswordHasher,
  PasswordPolicy,
  type PasswordPolicyOptions,
  pwnedPasswords,
  UserRepository,
} from '../src/auth/index.js';
import {
  createPool,
  isConnectionError,
  isLoginRefused,
  type QueryOptions,
  queryOptionsFromEnv,
} from '../src/db/index.js';
import { type Database, DatabaseUrlError, openDatabase } from '../src/dev/index.js';
import { ConfigError, parseDuration } from '../src/index.js';
import { DEFAULT_CHANNEL, generateNodeId } from '../src/stores/cache/protocol.js';
import { PostgresSessionStore, tableNames } from '../src/stores/postgres/index.js';
import { CliError, describeTarget, messageOf } from './errors.js';
import type { Io } from './output.js';

/** The options every command accepts (see `pgsession --help`). */
export interface GlobalOptions {
  /** Session table name. */
  table: string;
  /** Schema of the session table. */
  schema?: string | undefined;
  /** NOTIFY channel for caching app servers, or false. */
  notify: string | false;
}

export const DEFAULT_GLOBALS: GlobalOptions = { table: 'session', notify: DEFAULT_CHANNEL };

/**
 * The password policy of `user add` and `user passwd`, from the environment, so operators apply
 * the same rules as their app (ASVS 6.1.3): `PASSWORD_CONTEXT_WORDS` (comma-separated words tied
 * to the site; the user's email is always refused too), `PWNED_PASSWORDS_URL` (turns the
 * breached-password check on; e.g. https://api.pwnedpasswords.com/range/),
 * `PWNED_PASSWORDS_ON_ERROR` (`allow`, the default, or `refuse`) and `PWNED_PASSWORDS_TIMEOUT`
 * (default 2s). The demo app reads the same variables. When the check cannot be made and lets
 * the password through, a warning says so on stderr.
 */
export function passwordPolicyFromEnv(env: NodeJS.ProcessEnv, stderr: Io['stderr']): PasswordPolicy {
  const contextWords = (env.PASSWORD_CONTEXT_WORDS ?? '')
    .split(',')
    .map((w) => w.trim())
    .filter(Boolean);
  const options: PasswordPolicyOptions = { contextWords };
  const url = env.PWNED_PASSWORDS_URL?.trim();
  try {
    if (url) {
      const onError = (env.PWNED_PASSWORDS_ON_ERROR?.trim() || 'allow').toLowerCase();
      if (onError !== 'allow' && onError !== 'refuse') {
        throw new ConfigError(`PWNED_PASSWORDS_ON_ERROR must be "allow" or "refuse", got "${onError}"`);
      }
      const timeoutMs = parseDuration(env.PWNED_PASSWORDS_TIMEOUT?.trim() || '2s', 'PWNED_PASSWORDS_TIMEOUT');
      options.breached = pwnedPasswords({ url, onError, timeoutMs });
    }
  } catch (err) {
    throw new CliError(messageOf(err));
  }
  return new PasswordPolicy(options, {
    onUnavailable: (report) => {
      if (report.outcome === 'allowed') {
        stderr.write(
          `pgsession: warning: the password could not be checked against breached passwords (${report.reason}); it was accepted\n`,
        );
      }
    },
  });
}

/** What a command works with. Everything is created on first use and closed by {@link withContext}. */
export class Context {
  readonly io: Io;
  readonly options: GlobalOptions;
  readonly pool: pg.Pool;
  readonly #db: Database;
  #store: PostgresSessionStore | undefined;
  #users: UserRepository | undefined;

  constructor(io: Io, options: GlobalOptions, db: Database, pool: pg.Pool) {
    this.io = io;
    this.options = options;
    this.#db = db;
    this.pool = pool;
  }

  get databaseUrl(): string {
    return this.#db.url;
  }

  get embedded(): boolean {
    return this.#db.embedded;
  }

  /** A store on the existing session table (an error naming `pgsession migrate` if it is missing). */
  async store(): Promise<PostgresSessionStore> {
    if (this.#store) return this.#store;
    const store = new PostgresSessionStore({
      pool: this.pool,
      tableName: this.options.table,
      schemaName: this.options.schema,
      createTableIfMissing: false,
      // A revocation must reach the caches of running app servers (PgInvalidationListener).
      notify: this.options.notify ? { channel: this.options.notify, nodeId: generateNodeId() } : undefined,
      errorLog: (...args: unknown[]) => this.io.stderr.write(`pgsession: ${args.map(messageOf).join(' ')}\n`),
    });
    await this.requireTable(store.names.qualified, 'the session table');
    await store.ready();
    this.#store = store;
    return store;
  }

  /** The users repository (an error naming `pgsession migrate` if the table is missing). */
  async users(): Promise<UserRepository> {
    if (this.#users) return this.#users;
    await this.requireTable('users', 'the users table');
    const names = tableNames({ tableName: this.options.table, schemaName: this.options.schema });
    this.#users = new UserRepository(this.pool, {
      hasher: new PasswordHasher(),
      passwordPolicy: passwordPolicyFromEnv(this.io.env, this.io.stderr),
      sessionTable: names.schemaName
        ? { schema: names.schemaName, name: names.tableName }
        : { name: names.tableName },
    });
    return this.#users;
  }

  /** An error naming `pgsession migrate` when `qualified` does not exist. */
  async requireTable(qualified: string, what: string): Promise<void> {
    const { rows } = await this.pool.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [
      qualified,
    ]);
    if (!rows[0]?.ok) {
      throw new CliError(
        `${what} (${qualified}) does not exist in ${describeTarget(this.#db.url)}: run "pgsession migrate" first`,
      );
    }
  }

  async close(): Promise<void> {
    await this.#store?.close().catch(() => {});
    await this.pool.end().catch(() => {});
    await this.#db.close().catch(() => {});
  }
}

/**
 * Open the database, run `fn`, close everything. A failure to connect becomes one line naming
 * the server (never the password).
 */
export async function withContext<T>(
  io: Io,
  options: GlobalOptions,
  fn: (ctx: Context) => Promise<T>,
): Promise<T> {
  const debug = Boolean(io.env.DEBUG);
  let db: Database;
  try {
    db = await openDatabase({
      env: io.env,
      onLog: (line) => {
        // Starting the embedded server can take a few seconds the first time: say why we wait.
        if (debug || (io.stderr.isTTY && /^(Creating|Starting) PostgreSQL/.test(line))) {
          io.stderr.write(`pgsession: ${line}\n`);
        }
      },
    });
  } catch (err) {
    if (err instanceof DatabaseUrlError) throw new CliError(err.message, 1, { cause: err });
    throw new CliError(`cannot start the embedded PostgreSQL in .data/postgres: ${messageOf(err)}`, 1, {
      cause: err,
    });
  }
  let sending: QueryOptions;
  try {
    sending = queryOptionsFromEnv(io.env);
  } catch (err) {
    await db.close().catch(() => {});
    throw new CliError(messageOf(err), 2, { cause: err });
  }
  const pool = createPool(db.url, {
    max: 2,
    application_name: 'pgsession-cli',
    ...sending,
    onError: (err) => {
      if (debug) io.stderr.write(`pgsession: idle PostgreSQL client error: ${err.message}\n`);
    },
  });
  const ctx = new Context(io, options, db, pool);
  try {
    return await fn(ctx);
  } catch (err) {
    if (isConnectionError(err) || isLoginRefused(err)) {
      throw new CliError(
        `cannot connect to PostgreSQL at ${describeTarget(db.url)}${db.embedded ? ' (embedded)' : ''}: ${messageOf(err)}`,
        1,
        { cause: err },
      );
    }
    if ((err as { code?: unknown }).code === '42P01') {
      throw new CliError(`${messageOf(err)}: run "pgsession migrate" first`, 1, { cause: err });
    }
    throw err;
  } finally {
    await ctx.close();
  }
}
