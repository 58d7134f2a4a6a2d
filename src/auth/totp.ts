import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { HOTP, Secret, TOTP } from 'otpauth';
import type pg from 'pg';
import { parseDuration } from '../core/duration.js';
import { ConfigError } from '../core/errors.js';
import { watchCheckedOut } from '../db/checkout.js';
import { AuthError } from './errors.js';
import { isSecondFactorRequired, type SecondFactor, type SecondFactorRequired } from './factors.js';

/**
 * Optional TOTP second factor (RFC 6238; ASVS 6.3.3). The parameters are the ones every
 * authenticator app speaks (Google Authenticator ignores anything else): HMAC-SHA-1, 6 digits,
 * 30-second steps. The code arithmetic is `otpauth`'s; what this module adds is storage,
 * replay refusal, recovery codes and optional encryption of the secret at rest.
 */
export const TOTP_ALGORITHM = 'SHA1';
export const TOTP_DIGITS = 6;
export const TOTP_PERIOD_SECONDS = 30;
/** RFC 4226 recommends at least 160-bit secrets for HMAC-SHA-1. */
export const TOTP_SECRET_BYTES = 20;
/** How many single-use recovery codes an enrollment gets. */
export const RECOVERY_CODE_COUNT = 10;

/** Options of the TOTP second factor (`createAuth({ totp })`). */
export interface TotpOptions {
  /** The issuer shown in authenticator apps (and the URI's label prefix). Default `pgsession`. */
  issuer?: string;
  /**
   * Encrypt secrets at rest with AES-256-GCM: 32 bytes, as a Buffer, 64 hex characters or
   * base64. Without it the base32 secret is stored as is, so whoever reads the `auth_totp`
   * table (a shared database, a backup) can generate codes: set a key unless the database is
   * as private as the app's own configuration. Secrets stored before a key was set still work.
   */
  encryptionKey?: Buffer | string | undefined;
  /** Accepted drift in steps either side of now. Default 1 (±30 s), RFC 6238's recommendation. */
  window?: number;
  /** How long a password-verified login waits for its code. Default `5m`. */
  pendingLoginTtl?: string | number;
  /** How long a started enrollment can be confirmed. Default `15m`. */
  enrollmentTtl?: string | number;
  /** The clock, epoch ms. Default `Date.now` (tests inject one to step through time). */
  now?: () => number;
}

/** A started enrollment: what the user's app needs. Show it once; it is not a login credential yet. */
export interface TotpEnrollment {
  /** The shared secret, base32 (for typing into an app by hand). */
  secret: string;
  /** `otpauth://totp/…` with issuer, label, algorithm, digits and period (for a QR code). */
  uri: string;
}

/** What {@link Auth.login} returns when the account has TOTP on (the generic result, named). */
export type TotpRequired = SecondFactorRequired & { factor: 'totp' };

/** Whether a login result asks for the TOTP code. */
export function isTotpRequired(result: unknown): result is TotpRequired {
  return isSecondFactorRequired(result, 'totp');
}

/** Result of a code check: which kind of code was accepted. */
export type TotpCheck = { ok: true; method: 'totp' | 'recovery-code' } | { ok: false };

/** A user's second-factor state, for an account page. */
export interface TotpStatus {
  enabled: boolean;
  /** An enrollment was started and not confirmed (nor expired). */
  pending: boolean;
  /** Unused recovery codes left (0 when not enabled). */
  recoveryCodesLeft: number;
}

/** Result of {@link TotpManager.confirmEnrollment}. */
export type TotpConfirmResult =
  | { ok: true; recoveryCodes: string[] }
  | { ok: false; reason: 'wrong-code' | 'no-enrollment' };

const ENCRYPTED_PREFIX = 'enc1:';
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function parseKey(key: Buffer | string): Buffer {
  const buf =
    typeof key !== 'string'
      ? key
      : /^[0-9a-f]{64}$/i.test(key)
        ? Buffer.from(key, 'hex')
        : Buffer.from(key, 'base64');
  if (buf.length !== 32)
    throw new ConfigError('totp.encryptionKey must be 32 bytes (64 hex characters or base64)');
  return buf;
}

/** A 6-digit code as typed (spaces allowed, as apps show "123 456"), or null. */
export function normalizeTotpCode(input: unknown): string | null {
  if (typeof input !== 'string' || input.length > 32) return null;
  const code = input.replace(/[\s-]/g, '');
  return /^\d{6}$/.test(code) ? code : null;
}

/** A recovery code as typed (any case, dashes and spaces ignored), or null if it cannot be one. */
export function normalizeRecoveryCode(input: unknown): string | null {
  if (typeof input !== 'string' || input.length > 64) return null;
  const code = input.replace(/[\s-]/g, '').toUpperCase();
  return /^[A-Z2-7]{16}$/.test(code) ? code : null;
}

/** 80 random bits as 16 base32 characters in groups of 4: `ABCD-EFGH-IJKL-MNOP`. */
function newRecoveryCode(): string {
  const bytes = randomBytes(10);
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join('-');
}

/**
 * Recovery codes are hashed with plain SHA-256, not argon2: each carries 80 random bits, so an
 * offline search of the hashes is hopeless at any hashing speed, and a fast hash lets the
 * lookup be one indexed equality. The user id is mixed in so equal codes of two users (never
 * expected) would not even hash alike.
 */
function hashRecoveryCode(userId: number, normalized: string): string {
  return createHash('sha256').update(`${userId}:${normalized}`).digest('base64url');
}

interface TotpRow {
  secret: string | null;
  enabled_at: Date | null;
  last_step: string | null;
  pending_secret: string | null;
  pending_at: Date | null;
}

/**
 * Storage and verification of TOTP secrets and recovery codes (tables `auth_totp` and
 * `auth_totp_recovery_codes`, migration `auth/004_totp`). Used through {@link Auth} (`auth.totp`),
 * which adds the login flow, rate limiting and audit events; its methods are also usable by
 * operators (`disable(userId)` for a user who lost both phone and recovery codes).
 */
export class TotpManager implements SecondFactor {
  readonly name = 'totp';
  readonly issuer: string;
  readonly window: number;
  /** ms a password-verified login may wait for its code. */
  readonly pendingLoginTtl: number;
  readonly enrollmentTtl: number;
  readonly now: () => number;
  readonly #pool: pg.Pool;
  readonly #key: Buffer | null;

  constructor(pool: pg.Pool, options: TotpOptions = {}) {
    this.#pool = pool;
    this.issuer = options.issuer ?? 'pgsession';
    if (this.issuer.includes(':')) throw new ConfigError('totp.issuer must not contain ":"');
    this.window = options.window ?? 1;
    if (!Number.isInteger(this.window) || this.window < 0 || this.window > 10) {
      throw new ConfigError('totp.window must be an integer from 0 to 10');
    }
    this.pendingLoginTtl = parseDuration(options.pendingLoginTtl ?? '5m', 'totp.pendingLoginTtl');
    this.enrollmentTtl = parseDuration(options.enrollmentTtl ?? '15m', 'totp.enrollmentTtl');
    this.now = options.now ?? Date.now;
    this.#key = options.encryptionKey ? parseKey(options.encryptionKey) : null;
  }

  /** The time step a moment falls in (RFC 6238's T). */
  stepAt(ms: number): number {
    return Math.floor(ms / 1000 / TOTP_PERIOD_SECONDS);
  }

  #seal(userId: number, base32: string): string {
    if (!this.#key) return base32;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    // Bound to the user: a ciphertext copied onto another user's row does not decrypt.
    cipher.setAAD(Buffer.from(`pgsession-totp:${userId}`));
    const ct = Buffer.concat([cipher.update(base32, 'utf8'), cipher.final()]);
    return ENCRYPTED_PREFIX + Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64url');
  }

  #open(userId: number, stored: string): Secret {
    if (!stored.startsWith(ENCRYPTED_PREFIX)) return Secret.fromBase32(stored);
    if (!this.#key)
      throw new ConfigError('a TOTP secret is encrypted but no totp.encryptionKey is configured');
    const raw = Buffer.from(stored.slice(ENCRYPTED_PREFIX.length), 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', this.#key, raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(`pgsession-totp:${userId}`));
    decipher.setAuthTag(raw.subarray(12, 28));
    const base32 = Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
    return Secret.fromBase32(base32);
  }

  async #row(userId: number): Promise<TotpRow | null> {
    try {
      const { rows } = await this.#pool.query<TotpRow>(
        'SELECT secret, enabled_at, last_step, pending_secret, pending_at FROM auth_totp WHERE user_id = $1',
        [userId],
      );
      return rows[0] ?? null;
    } catch (err) {
      // Before migration auth/004 nobody can have enrolled: logins go on as before the upgrade.
      if ((err as { code?: string }).code === '42P01') return null;
      throw err;
    }
  }

  /** Whether the user must give a code after their password. */
  async isEnabled(userId: number): Promise<boolean> {
    const row = await this.#row(userId);
    return row?.enabled_at != null;
  }

  async status(userId: number): Promise<TotpStatus> {
    const row = await this.#row(userId);
    const enabled = row?.enabled_at != null;
    const pending =
      row?.pending_secret != null &&
      row.pending_at != null &&
      this.now() - row.pending_at.getTime() <= this.enrollmentTtl;
    let recoveryCodesLeft = 0;
    if (enabled) {
      const { rows } = await this.#pool.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM auth_totp_recovery_codes WHERE user_id = $1 AND used_at IS NULL',
        [userId],
      );
      recoveryCodesLeft = rows[0]?.n ?? 0;
    }
    return { enabled, pending, recoveryCodesLeft };
  }

  /**
   * Start (or restart) an enrollment: a new secret from `crypto.randomBytes(20)`, stored as
   * pending. It does nothing to logins until {@link confirmEnrollment} sees a valid code from it.
   * Refused (AuthError 409) while TOTP is enabled: disable it first, so a stolen session cannot
   * silently swap the secret.
   */
  async startEnrollment(userId: number, label: string): Promise<TotpEnrollment> {
    const secret = new Secret({ buffer: new Uint8Array(randomBytes(TOTP_SECRET_BYTES)).buffer });
    const { rowCount } = await this.#pool.query(
      `INSERT INTO auth_totp (user_id, pending_secret, pending_at) VALUES ($1, $2, to_timestamp($3 / 1000.0))
       ON CONFLICT (user_id) DO UPDATE SET pending_secret = EXCLUDED.pending_secret,
         pending_at = EXCLUDED.pending_at, updated_at = now()
       WHERE auth_totp.enabled_at IS NULL`,
      [userId, this.#seal(userId, secret.base32), this.now()],
    );
    if (rowCount !== 1)
      throw new AuthError('PGSESSION_TOTP_ENABLED', 'Two-factor authentication is already on', 409);
    const uri = new TOTP({
      issuer: this.issuer,
      label,
      secret,
      algorithm: TOTP_ALGORITHM,
      digits: TOTP_DIGITS,
      period: TOTP_PERIOD_SECONDS,
    }).toString();
    return { secret: secret.base32, uri };
  }

  /**
   * The latest step within the window whose code equals `code`, or null. Every candidate is
   * computed and compared with `timingSafeEqual`, without stopping at a match, so the time
   * says nothing about which digits (or which step) matched.
   */
  #matchStep(secret: Secret, code: string, now: number): number | null {
    const current = this.stepAt(now);
    const given = Buffer.from(code);
    let matched: number | null = null;
    for (let step = current - this.window; step <= current + this.window; step++) {
      const expected = Buffer.from(
        HOTP.generate({ secret, algorithm: TOTP_ALGORITHM, digits: TOTP_DIGITS, counter: step }),
      );
      if (expected.length === given.length && timingSafeEqual(expected, given)) matched = step;
    }
    return matched;
  }

  /**
   * Enable TOTP if `code` is valid for the pending secret; returns the recovery codes (shown to
   * the user once: only their hashes are kept). The confirming code's step counts as used.
   */
  async confirmEnrollment(userId: number, code: unknown): Promise<TotpConfirmResult> {
    const row = await this.#row(userId);
    const now = this.now();
    if (
      !row?.pending_secret ||
      !row.pending_at ||
      row.enabled_at ||
      now - row.pending_at.getTime() > this.enrollmentTtl
    ) {
      return { ok: false, reason: 'no-enrollment' };
    }
    const digits = normalizeTotpCode(code);
    const step = digits ? this.#matchStep(this.#open(userId, row.pending_secret), digits, now) : null;
    if (step === null) return { ok: false, reason: 'wrong-code' };
    const codes = Array.from({ length: RECOVERY_CODE_COUNT }, newRecoveryCode);
    const enabled = await this.#transaction(async (client) => {
      // Only the pending secret that was checked is promoted (a concurrent restart changes it).
      const { rowCount } = await client.query(
        `UPDATE auth_totp SET secret = pending_secret, enabled_at = now(), last_step = $3,
             pending_secret = NULL, pending_at = NULL, updated_at = now()
           WHERE user_id = $1 AND pending_secret = $2 AND enabled_at IS NULL`,
        [userId, row.pending_secret, step],
      );
      if (rowCount !== 1) return null;
      await client.query('DELETE FROM auth_totp_recovery_codes WHERE user_id = $1', [userId]);
      await client.query(
        'INSERT INTO auth_totp_recovery_codes (user_id, code_hash) SELECT $1, unnest($2::text[])',
        [userId, codes.map((c) => hashRecoveryCode(userId, normalizeRecoveryCode(c)!))],
      );
      return true;
    });
    if (!enabled) return { ok: false, reason: 'no-enrollment' };

    return { ok: true, recoveryCodes: codes };
  }

  /**
   * Check a 6-digit code of an enabled user. A code is accepted once: its step must be later
   * than the last accepted one, and recording it is one conditional UPDATE, so two requests
   * racing with the same code (on any number of servers) cannot both pass.
   */
  async verifyCode(userId: number, code: unknown): Promise<boolean> {
    const digits = normalizeTotpCode(code);
    const row = await this.#row(userId);
    if (!row?.secret || !row.enabled_at) return false;
    const step = digits ? this.#matchStep(this.#open(userId, row.secret), digits, this.now()) : null;
    if (step === null) return false;
    const { rowCount } = await this.#pool.query(
      `UPDATE auth_totp SET last_step = $3, updated_at = now()
       WHERE user_id = $1 AND secret = $2 AND enabled_at IS NOT NULL AND (last_step IS NULL OR last_step < $3)`,
      [userId, row.secret, step],
    );
    return rowCount === 1;
  }

  /** Use up one recovery code; false if it is not one of the user's unused codes. */
  async useRecoveryCode(userId: number, code: unknown): Promise<boolean> {
    const normalized = normalizeRecoveryCode(code);
    if (!normalized) return false;
    // Marking it used is the check: a second use (or a racing one) updates nothing.
    const { rowCount } = await this.#pool.query(
      `UPDATE auth_totp_recovery_codes r SET used_at = now()
       FROM auth_totp t
       WHERE r.user_id = $1 AND r.code_hash = $2 AND r.used_at IS NULL
         AND t.user_id = r.user_id AND t.enabled_at IS NOT NULL`,
      [userId, hashRecoveryCode(userId, normalized)],
    );
    return rowCount === 1;
  }

  /** {@link SecondFactor}: required once the user has enabled TOTP. */
  isRequired(userId: number): Promise<boolean> {
    return this.isEnabled(userId);
  }

  /** {@link SecondFactor}: a 6-digit code or a recovery code. */
  verify(userId: number, proof: unknown): Promise<TotpCheck> {
    return this.check(userId, proof);
  }

  /** A 6-digit code or a recovery code, whichever `input` looks like. */
  async check(userId: number, input: unknown): Promise<TotpCheck> {
    if (normalizeTotpCode(input) !== null) {
      return (await this.verifyCode(userId, input)) ? { ok: true, method: 'totp' } : { ok: false };
    }
    return (await this.useRecoveryCode(userId, input))
      ? { ok: true, method: 'recovery-code' }
      : { ok: false };
  }

  /** Turn TOTP off for a user: secret, pending enrollment and recovery codes deleted. */
  async disable(userId: number): Promise<boolean> {
    const enabled = await this.#transaction(async (client) => {
      await client.query('DELETE FROM auth_totp_recovery_codes WHERE user_id = $1', [userId]);
      const { rows } = await client.query<{ enabled: boolean }>(
        'DELETE FROM auth_totp WHERE user_id = $1 RETURNING enabled_at IS NOT NULL AS enabled',
        [userId],
      );
      return rows[0]?.enabled === true;
    });
    return enabled === true;
  }

  /**
   * Run `fn` in a transaction on one connection: committed when it returns a value, rolled back
   * when it returns null or throws. The connection's errors are watched while it is checked out.
   */
  async #transaction<T>(fn: (client: pg.PoolClient) => Promise<T | null>): Promise<T | null> {
    const client = await this.#pool.connect();
    const watch = watchCheckedOut(client);
    try {
      await client.query('BEGIN');
      const value = await fn(client);
      await client.query(value === null ? 'ROLLBACK' : 'COMMIT');
      return value;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      watch.done();
      client.release(watch.error());
    }
  }
}
