import type pg from 'pg';
import { quoteIdent } from '../db/sql.js';
import { AuthError, DuplicateEmailError } from './errors.js';
import { PasswordPolicy, type PasswordPolicyOptions } from './password-policy.js';
import { PasswordHasher } from './passwords.js';
import type { AuthUser, Role } from './types.js';

/** A user row without its password hash. */
export interface UserRecord extends AuthUser {
  disabled: boolean;
  createdAt: Date;
  updatedAt: Date;
}

/** A user row with its password hash (only for verification; never hand it to views). */
export interface UserWithHash extends UserRecord {
  passwordHash: string;
}

/** A user in the admin list, with the number of live sessions. */
export interface UserListEntry extends UserRecord {
  sessions: number;
}

/** Options of {@link UserRepository}. */
export interface UserRepositoryOptions {
  /** Hashes new passwords. Default: a {@link PasswordHasher} with OWASP's argon2id parameters. */
  hasher?: PasswordHasher;
  /**
   * The session table, for session counts in {@link UserRepository.list} (its `user_id` and
   * `expire` columns). Default `session`; null leaves counts at 0.
   */
  sessionTable?: string | { schema?: string; name: string } | null;
  /** Clock for "live" in session counts (epoch ms). Default `Date.now`. */
  now?: () => number;
  /**
   * The rules new passwords must meet beyond length and the common list: context words,
   * breached-password check (see {@link PasswordPolicyOptions}). The user's email is always
   * refused as part of a password. Default: no words, no breached check.
   */
  passwordPolicy?: PasswordPolicy | PasswordPolicyOptions;
}

/** The longest email accepted (RFC 5321's path limit). */
export const MAX_EMAIL_LENGTH = 254;

/** The form emails are stored and looked up in: trimmed and lower-cased. */
export function normalizeEmail(email: unknown): string {
  return typeof email === 'string' ? email.trim().toLowerCase() : '';
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses.
const PLAUSIBLE_EMAIL = /^[^\s@\u0000-\u001f\u007f]+@[^\s@\u0000-\u001f\u007f]+$/;

/**
 * A deliberately loose check (something@something, no spaces or control characters, not too
 * long). Control characters matter beyond plausibility: PostgreSQL refuses a NUL in text, so one
 * reaching a query would turn a bad login into a 500.
 */
export function isPlausibleEmail(email: string): boolean {
  return email.length <= MAX_EMAIL_LENGTH && PLAUSIBLE_EMAIL.test(email);
}

function isRole(role: unknown): role is Role {
  return role === 'user' || role === 'admin';
}

interface Row {
  id: string | number;
  email: string;
  role: string;
  disabled: boolean;
  created_at: Date;
  updated_at: Date;
  password_hash?: string;
  sessions?: number;
}

const COLUMNS = 'id, email, role, disabled, created_at, updated_at';

function toUser(row: Row): UserRecord {
  return {
    // bigint comes back as a string; ids stay far below 2^53.
    id: Number(row.id),
    email: row.email,
    role: isRole(row.role) ? row.role : 'user',
    disabled: row.disabled,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/**
 * The `users` table (see `migrations/auth`). Emails are stored normalised and matched
 * case-insensitively (unique index on `lower(email)`); passwords are stored as argon2id hashes.
 */
export class UserRepository {
  readonly pool: pg.Pool;
  readonly hasher: PasswordHasher;
  readonly passwordPolicy: PasswordPolicy;
  readonly #sessionTable: string | null;
  readonly #now: () => number;

  constructor(pool: pg.Pool, options: UserRepositoryOptions = {}) {
    this.pool = pool;
    this.hasher = options.hasher ?? new PasswordHasher();
    this.passwordPolicy =
      options.passwordPolicy instanceof PasswordPolicy
        ? options.passwordPolicy
        : new PasswordPolicy(options.passwordPolicy);
    const t = options.sessionTable === undefined ? 'session' : options.sessionTable;
    this.#sessionTable =
      t === null
        ? null
        : typeof t === 'string'
          ? quoteIdent(t)
          : t.schema
            ? `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`
            : quoteIdent(t.name);
    this.#now = options.now ?? Date.now;
  }

  /**
   * Create a user with a new password (checked against the whole policy, the email included,
   * then hashed with argon2id).
   * @throws DuplicateEmailError, PasswordPolicyError, PasswordCheckUnavailableError (the
   * breached-password service is down and the policy refuses then), AuthError (invalid email or role)
   */
  async create(input: { email: string; password: string; role?: Role }): Promise<UserRecord> {
    await this.passwordPolicy.check(input.password, { email: normalizeEmail(input.email) });
    const passwordHash = await this.hasher.hash(input.password);
    return this.createWithHash({ email: input.email, passwordHash, role: input.role });
  }

  /** Create a user from an existing hash (argon2 or bcrypt), e.g. when importing the seed's users. */
  async createWithHash(input: {
    email: string;
    passwordHash: string;
    role?: Role | undefined;
  }): Promise<UserRecord> {
    const email = normalizeEmail(input.email);
    if (!isPlausibleEmail(email))
      throw new AuthError('PGSESSION_INVALID_EMAIL', 'Invalid email address', 400);
    const role = input.role ?? 'user';
    if (!isRole(role)) throw new AuthError('PGSESSION_INVALID_ROLE', 'Role must be "user" or "admin"', 400);
    try {
      const { rows } = await this.pool.query<Row>(
        `INSERT INTO users (email, password_hash, role) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`,
        [email, input.passwordHash, role],
      );
      // A kind of hash new to this process (an imported bcrypt-12, say) is measured now, so
      // logins are padded to it from the first one (see PasswordHasher.calibrate).
      await this.hasher.calibrate([input.passwordHash]);
      return toUser(rows[0]!);
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw new DuplicateEmailError();
      throw err;
    }
  }

  /**
   * One stored hash prefix per kind of hash in the table (scheme and cost, e.g. `$2b$12$`),
   * for `PasswordHasher.calibrate`.
   */
  async hashKinds(): Promise<string[]> {
    const { rows } = await this.pool.query<{ kind: string }>(
      String.raw`SELECT DISTINCT substring(password_hash FROM '^(\$2[aby]\$\d{2}\$|\$argon2(?:id|i|d)\$(?:v=\d+\$)?m=\d+,t=\d+,p=\d+\$)') AS kind
FROM users WHERE password_hash IS NOT NULL`,
    );
    return rows.flatMap((r) => (r.kind ? [r.kind] : []));
  }

  /** The user with this email (normalised; case-insensitive), with the password hash. */
  async findByEmail(email: string): Promise<UserWithHash | null> {
    const normalized = normalizeEmail(email);
    if (!normalized || normalized.length > MAX_EMAIL_LENGTH) return null;
    const { rows } = await this.pool.query<Row>(
      `SELECT ${COLUMNS}, password_hash FROM users WHERE lower(email) = $1`,
      [normalized],
    );
    const row = rows[0];
    return row ? { ...toUser(row), passwordHash: row.password_hash ?? '' } : null;
  }

  async findById(id: number): Promise<UserRecord | null> {
    if (!Number.isSafeInteger(id) || id <= 0) return null;
    const { rows } = await this.pool.query<Row>(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id]);
    return rows[0] ? toUser(rows[0]) : null;
  }

  /**
   * Replace the password (checked against the whole policy with the user's email, argon2id).
   * Revoking sessions is the caller's business.
   * @throws PasswordPolicyError, PasswordCheckUnavailableError
   */
  async setPassword(id: number, password: string): Promise<boolean> {
    const user = await this.findById(id);
    await this.passwordPolicy.check(password, { email: user?.email, userId: user?.id });
    const hash = await this.hasher.hash(password);
    return this.setPasswordHash(id, hash);
  }

  /**
   * Store a new hash. With `expected`, only if the stored hash is still that one (an upgrade of
   * a bcrypt hash must not overwrite a password changed meanwhile).
   */
  async setPasswordHash(id: number, hash: string, expected?: string): Promise<boolean> {
    const result =
      expected === undefined
        ? await this.pool.query('UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1', [
            id,
            hash,
          ])
        : await this.pool.query(
            'UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1 AND password_hash = $3',
            [id, hash, expected],
          );
    return (result.rowCount ?? 0) > 0;
  }

  /**
   * Replace the email (normalised; matched case-insensitively like at creation).
   * @throws DuplicateEmailError when another account has it, AuthError when it is not plausible
   */
  async setEmail(id: number, email: string): Promise<boolean> {
    const normalized = normalizeEmail(email);
    if (!isPlausibleEmail(normalized))
      throw new AuthError('PGSESSION_INVALID_EMAIL', 'Invalid email address', 400);
    try {
      const result = await this.pool.query('UPDATE users SET email = $2, updated_at = now() WHERE id = $1', [
        id,
        normalized,
      ]);
      return (result.rowCount ?? 0) > 0;
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw new DuplicateEmailError();
      throw err;
    }
  }

  async setRole(id: number, role: Role): Promise<boolean> {
    if (!isRole(role)) throw new AuthError('PGSESSION_INVALID_ROLE', 'Role must be "user" or "admin"', 400);
    const result = await this.pool.query('UPDATE users SET role = $2, updated_at = now() WHERE id = $1', [
      id,
      role,
    ]);
    return (result.rowCount ?? 0) > 0;
  }

  /** Mark the user disabled (they can no longer log in). Revoke their sessions too: see `Auth.disableUser`. */
  async disable(id: number): Promise<boolean> {
    return this.#setDisabled(id, true);
  }

  async enable(id: number): Promise<boolean> {
    return this.#setDisabled(id, false);
  }

  async #setDisabled(id: number, disabled: boolean): Promise<boolean> {
    const result = await this.pool.query('UPDATE users SET disabled = $2, updated_at = now() WHERE id = $1', [
      id,
      disabled,
    ]);
    return (result.rowCount ?? 0) > 0;
  }

  async count(): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM users');
    return rows[0]?.n ?? 0;
  }

  /** Every user, by id, with the number of live sessions in the session table. */
  async list(): Promise<UserListEntry[]> {
    if (this.#sessionTable === null) {
      const { rows } = await this.pool.query<Row>(`SELECT ${COLUMNS} FROM users ORDER BY id`);
      return rows.map((row) => ({ ...toUser(row), sessions: 0 }));
    }
    const { rows } = await this.pool.query<Row>(
      `SELECT u.id, u.email, u.role, u.disabled, u.created_at, u.updated_at, coalesce(s.n, 0)::int AS sessions
         FROM users u
         LEFT JOIN (
           SELECT user_id, count(*) AS n FROM ${this.#sessionTable}
            WHERE user_id IS NOT NULL AND expire > to_timestamp($1::float8 / 1000)
            GROUP BY user_id
         ) s ON s.user_id = u.id::text
        ORDER BY u.id`,
      [this.#now()],
    );
    return rows.map((row) => ({ ...toUser(row), sessions: row.sessions ?? 0 }));
  }
}
