import { createHash } from 'node:crypto';
import { ConfigError, StoreUnavailableError } from '../core/errors.js';
import type { RegenerateOptions } from '../core/session.js';
import { isDatabaseUnavailable } from '../db/errors.js';
import { guardPoolErrors } from '../db/pool.js';
import { type QueryOptions, withQueryOptions } from '../db/query.js';
import { generateCsrfToken } from './csrf.js';
import { type TrustedDeviceOptions, TrustedDevices } from './devices.js';
import { AuthError, PasswordPolicyError, TooManyAttemptsError, UnauthorizedError } from './errors.js';
import { pendingFactorOf, type SecondFactor, type SecondFactorRequired } from './factors.js';
import { type NotifyHook, type SecurityNoticeOptions, SecurityNotices } from './notices.js';
import { PasswordPolicy, type PasswordPolicyOptions } from './password-policy.js';
import { type Argon2Params, MAX_PASSWORD_LENGTH, PasswordHasher, type VerifyResult } from './passwords.js';
import { type LoginAttempt, LoginRateLimiter, type LoginRateLimiterOptions } from './rate-limit.js';
import { type AuthRequest, clientAddress, userAgent } from './request.js';
import { type SessionAccess, SessionManager } from './sessions.js';
import { type TotpConfirmResult, type TotpEnrollment, TotpManager, type TotpOptions } from './totp.js';
import type { AuthEvent, AuthUser, Role } from './types.js';
import {
  isPlausibleEmail,
  normalizeEmail,
  type UserRecord,
  UserRepository,
  type UserRepositoryOptions,
  type UserWithHash,
} from './users.js';

/** Options of {@link createAuth}. */
export interface AuthOptions {
  /** The database holding `users` and `auth_rate_limits` (see `runAuthMigrations`). */
  pool: import('pg').Pool;
  /**
   * Named prepared statements for the auth queries and the rate limiter (default true, or the
   * setting of a pool made by `createPool`); `false` behind a transaction-mode pooler.
   */
  preparedStatements?: QueryOptions['preparedStatements'];
  /** Time limit of each auth statement, ms (default 15 000, or the pool's; see `withQueryOptions`). */
  statementTimeout?: QueryOptions['statementTimeout'];
  /** pgsession's middleware (for storage keys and the store: listing and revocation). */
  session: SessionAccess;
  /**
   * What survives the id change at login besides the auth keys (a cart, a flash message…).
   * `true` keeps everything, a list keeps those keys. Default: nothing.
   */
  keep?: RegenerateOptions['keep'];
  /** argon2id cost for new hashes. Default OWASP's m=19456, t=2, p=1. */
  argon2?: Partial<Argon2Params>;
  /**
   * Failed-login limits (counters in PostgreSQL by default). `false` turns them off (tests
   * only); an object overrides parts of the policy; a {@link LoginRateLimiter} is used as is.
   */
  rateLimit?: false | LoginRateLimiter | Omit<LoginRateLimiterOptions, 'pool'>;
  /** The session table, for session counts on the admin list. Default `session`. */
  sessionTable?: UserRepositoryOptions['sessionTable'];
  /**
   * New-password rules beyond 8–1024 characters and the common list (ASVS 6.2.11, 6.2.12):
   * `contextWords` tied to this site (the user's email is always refused too) and a `breached`
   * check such as `pwnedPasswords()`. Applies to `users.create`, `users.setPassword` and
   * `changePassword`. A breached check that cannot be made is reported as a
   * `password-check-unavailable` event.
   */
  passwordPolicy?: PasswordPolicyOptions;
  /** Audit events (login, failures, rate limiting, revocation). Never carries passwords or raw ids. */
  onEvent?: (event: AuthEvent, req?: AuthRequest) => void;
  /** Errors the auth layer swallows on purpose (a failed bcrypt→argon2id upgrade). Default: a warning. */
  onError?: (err: unknown) => void;
  /**
   * Deliver security notices (new sign-in, repeated failures, lockout, password or email change)
   * to the user: email, push… Called detached, with a time limit, once per recipient (an email
   * change goes to the old and the new address); its errors and timeouts go to `onError` and
   * never affect the login or change that caused the notice. Notices are stored either way
   * (`auth.notices`).
   */
  notify?: NotifyHook;
  /** Security-notice tunables; `false` records and sends none. Default on (see `SecurityNotices`). */
  notices?: false | SecurityNoticeOptions;
  /**
   * The optional TOTP second factor (issuer name, encryption key for the secrets, clock). Users
   * who have not enabled it log in with their password alone, as before.
   */
  totp?: TotpOptions;
  /**
   * More factors after the password (WebAuthn, push, e-mailed codes…), each one class
   * implementing {@link SecondFactor}. TOTP comes first; a login asks for the first factor the
   * account requires (`login()` answers `{ status: 'second-factor-required', factor }`) and
   * {@link Auth.completeSecondFactor} checks it.
   */
  secondFactors?: readonly SecondFactor[];
  /**
   * Device cookies against distributed lockout (OWASP): a browser that has logged in to an
   * account presents a MAC'd cookie, and its failed logins count against a limit of its own
   * instead of the account's, so an attacker spread over many addresses cannot lock the owner
   * out. Off unless given; the app sets the cookie after a login with
   * `auth.devices.setCookieHeader(email, { secure })`.
   */
  trustedDevices?: TrustedDeviceOptions | TrustedDevices;
}

/** Result of {@link Auth.changePassword}. */
export type ChangePasswordResult = { ok: true; revoked: number } | { ok: false; reason: 'wrong-password' };

/** Result of {@link Auth.completeSecondFactor}: `factor` and `method` say what was accepted. */
export type CompleteSecondFactorResult =
  | { ok: true; user: AuthUser; factor: string; method: string }
  | { ok: false; reason: 'wrong-code' | 'expired' | 'no-pending-login' };

/** Result of {@link Auth.completeTotp}. */
export type CompleteTotpResult = CompleteSecondFactorResult;

/** Result of {@link Auth.disableTotp}. */
export type DisableTotpResult =
  | { ok: true }
  | { ok: false; reason: 'wrong-password' | 'wrong-code' | 'not-enabled' };

/** Result of {@link Auth.changeEmail}. */
export type ChangeEmailResult = { ok: true; email: string } | { ok: false; reason: 'wrong-password' };

/**
 * A login that failed because the database did (not because of the password) is given back to
 * the limits: an outage must never add up to a lockout once the database is back.
 */
async function abandonOnOutage(attempt: LoginAttempt | undefined, err: unknown): Promise<void> {
  if (err instanceof StoreUnavailableError || isDatabaseUnavailable(err)) await attempt?.abandoned();
}

/** Now, on the clock a factor measures its wait with. */
function nowOf(factor: SecondFactor): number {
  return factor.now ? factor.now() : Date.now();
}

function hashEmail(email: string): string {
  return createHash('sha256').update(email).digest('base64url').slice(0, 16);
}

function validPasswordInput(password: unknown): password is string {
  if (typeof password !== 'string' || password.length === 0) return false;
  // Cheap bound first (UTF-16 units ≥ code points), exact count only when it matters.
  if (password.length <= MAX_PASSWORD_LENGTH) return true;
  return [...password].length <= MAX_PASSWORD_LENGTH;
}

/**
 * The auth layer bound to a database and a session middleware: login/logout with fixation
 * defence, rate limiting and enumeration-safe answers; password changes; account disabling;
 * session listing and revocation. Create it with {@link createAuth}.
 */
export class Auth {
  readonly users: UserRepository;
  readonly hasher: PasswordHasher;
  /** The rules for new passwords (also `users.passwordPolicy`). */
  readonly passwordPolicy: PasswordPolicy;
  readonly sessions: SessionManager;
  readonly limiter: LoginRateLimiter | null;
  /** Device cookies (`trustedDevices` option), or null when off. */
  readonly devices: TrustedDevices | null;
  /** Security notices: what the user is told about sign-ins and credential changes (ASVS 6.3.5, 6.3.7). */
  readonly notices: SecurityNotices;
  /** TOTP secrets and recovery codes (ASVS 6.3.3); the login flow uses it through `completeTotp`. */
  readonly totp: TotpManager;
  /** Every factor a login may ask for after the password, TOTP first. */
  readonly factors: readonly SecondFactor[];
  readonly #access: SessionAccess;
  readonly #keep: RegenerateOptions['keep'];
  readonly #onEvent: (event: AuthEvent, req?: AuthRequest) => void;
  readonly #onError: (err: unknown) => void;

  constructor(options: AuthOptions) {
    if (!options?.pool) throw new ConfigError('createAuth: `pool` (a pg.Pool) is required');
    if (!options.session?.store || !options.session.engine) {
      throw new ConfigError('createAuth: `session` must be the middleware returned by session(options)');
    }
    // Every auth query (users, TOTP, notices, the rate limiter) goes through this seam.
    guardPoolErrors(options.pool, (line) => process.stderr.write(`${line}\n`));
    const pool = withQueryOptions(options.pool, {
      preparedStatements: options.preparedStatements,
      statementTimeout: options.statementTimeout,
    });
    this.hasher = new PasswordHasher(options.argon2);
    // Reports go through #emit, which reads #onEvent when called (after the constructor).
    this.passwordPolicy = new PasswordPolicy(options.passwordPolicy, {
      onUnavailable: (report) => this.#emit({ type: 'password-check-unavailable', ...report }),
    });
    this.users = new UserRepository(pool, {
      hasher: this.hasher,
      passwordPolicy: this.passwordPolicy,
      sessionTable: options.sessionTable,
    });
    this.sessions = new SessionManager(options.session);
    this.totp = new TotpManager(pool, options.totp);
    this.factors = [this.totp, ...(options.secondFactors ?? [])];
    const names = new Set<string>();
    for (const factor of this.factors) {
      if (typeof factor?.name !== 'string' || !factor.name || names.has(factor.name)) {
        throw new ConfigError(
          `createAuth: each second factor needs a unique name (got ${String(factor?.name)})`,
        );
      }
      if (!(Number.isFinite(factor.pendingLoginTtl) && factor.pendingLoginTtl > 0)) {
        throw new ConfigError(
          `createAuth: second factor "${factor.name}" needs a positive pendingLoginTtl (ms)`,
        );
      }
      names.add(factor.name);
    }
    this.devices = !options.trustedDevices
      ? null
      : options.trustedDevices instanceof TrustedDevices
        ? options.trustedDevices
        : new TrustedDevices(options.trustedDevices);
    this.#access = options.session;
    this.#keep = options.keep;
    this.limiter =
      options.rateLimit === false
        ? null
        : options.rateLimit instanceof LoginRateLimiter
          ? options.rateLimit
          : new LoginRateLimiter({ ...options.rateLimit, pool });
    this.#onEvent = options.onEvent ?? (() => {});
    this.#onError =
      options.onError ??
      ((err) =>
        process.emitWarning(`pgsession auth: ${(err as Error)?.message ?? String(err)}`, {
          code: 'PGSESSION_AUTH',
        }));
    this.notices = new SecurityNotices(pool, {
      ...(options.notices === false ? { enabled: false } : options.notices),
      notify: options.notify,
      onError: this.#onError,
      // Its counters live next to the login limits' (a limiter passed in keeps its table private).
      counterTable:
        options.rateLimit && !(options.rateLimit instanceof LoginRateLimiter)
          ? options.rateLimit.tableName
          : undefined,
    });
  }

  /**
   * Prepare what the first login would otherwise wait for: the dummy hash, and the time of each
   * kind of hash in the users table (so the first login of, say, a bcrypt-12 account takes no
   * longer than any other: see `PasswordHasher.calibrate`). Optional but recommended; a
   * database error while measuring is reported to `onError` and the kinds are learnt at use.
   */
  async ready(): Promise<void> {
    const dummy = await this.hasher.dummyHash();
    let kinds: string[] = [];
    try {
      kinds = await this.users.hashKinds();
    } catch (err) {
      this.#onError(err);
    }
    await this.hasher.calibrate([dummy, ...kinds]);
  }

  #emit(event: AuthEvent, req?: AuthRequest): void {
    try {
      this.#onEvent(event, req);
    } catch (err) {
      this.#onError(err);
    }
  }

  /**
   * Check an email and password and, when right, log the request's session in:
   *
   * 1. Count the attempt against the failed-login limits (throws {@link TooManyAttemptsError}).
   * 2. Verify the password against the user's hash — or against a dummy argon2id hash when the
   *    email is unknown or the account disabled, so the answer and its time are the same.
   * 3. On success: a new session id (the old one dies at once: no fixation), keeping only what
   *    the `keep` option says; then `userId`, `userRole`, a fresh `csrfToken` and `_meta`
   *    (address, user agent, time) for the sessions page. A bcrypt (or weaker argon2) hash is
   *    replaced by an argon2id hash of the password as typed.
   *
   * Returns the user, or null for any failure (wrong password, unknown email, disabled account,
   * malformed input) — the caller cannot tell them apart, and neither can the client. For an
   * account that requires a second factor (TOTP on, or one of `secondFactors`), the right
   * password returns `{ status: 'second-factor-required', factor }` instead and does not log
   * in: the session gets a new id and waits for {@link completeSecondFactor}.
   */
  async login(
    req: AuthRequest,
    email: unknown,
    password: unknown,
  ): Promise<AuthUser | SecondFactorRequired | null> {
    if (!req.session) throw new ConfigError('login(req, …) needs the session middleware in front of it');
    const normalized = normalizeEmail(email);
    const ip = clientAddress(req);
    const ua = userAgent(req);
    // The account's owner hears of a lockout, if there is an account (looked up in the
    // background, so a 429 says nothing about whether it exists).
    const attempt = await this.#countAttempt(req, normalized, () => this.#noticeRecipient(normalized));

    try {
      return await this.#passwordStep(req, attempt, normalized, password, ip, ua);
    } catch (err) {
      await abandonOnOutage(attempt, err);
      throw err;
    }
  }

  /** {@link login} after the attempt was counted: the password, then a factor or the sign-in. */
  async #passwordStep(
    req: AuthRequest,
    attempt: LoginAttempt | undefined,
    normalized: string,
    password: unknown,
    ip: string,
    ua: string,
  ): Promise<AuthUser | SecondFactorRequired | null> {
    const inputOk = validPasswordInput(password) && isPlausibleEmail(normalized);
    const user = inputOk ? await this.users.findByEmail(normalized) : null;
    let result: VerifyResult = { ok: false, needsRehash: false, scheme: 'unknown' };
    if (!inputOk || !user) {
      await this.hasher.verifyDummy(inputOk ? (password as string) : '');
    } else {
      result = await this.hasher.verify(user.passwordHash, password as string);
      if (user.disabled) result = { ok: false, needsRehash: false, scheme: result.scheme };
    }
    if (!user || !result.ok) {
      // Wrong password for a real, enabled account: counted for a failed-sign-ins notice, in the
      // background so the answer is the same, and as fast, as for an unknown email.
      if (user && !user.disabled) this.notices.failedSignIn(user, this.notices.context(req));
      this.#emit(
        { type: 'login-failed', userId: user?.id ?? null, emailHash: hashEmail(normalized), ip, ua },
        req,
      );
      return null;
    }

    if (result.needsRehash)
      await this.#upgradeHash(user.id, user.passwordHash, password as string, result.scheme);
    // Second factor (ASVS 6.3.3): for an account that requires one, the right password only
    // opens a short wait, and `completeSecondFactor` logs in. The password's attempt stays
    // counted until then, so knowing the password alone never resets the failed-code counters.
    const factor = await this.#requiredFactor(user.id);
    if (factor) return this.#awaitSecondFactor(req, user.id, factor, ip, ua);
    await attempt?.succeeded();
    return this.#signIn(req, user, ip, ua);
  }

  /** The verified trusted-device id the request's cookie carries for this account, if any. */
  #deviceOf(req: AuthRequest, normalizedEmail: string): string | null {
    return this.devices ? this.devices.verify(this.devices.tokenOf(req), normalizedEmail) : null;
  }

  /** Log the request's session in as `user`, every factor verified: the same for both paths. */
  async #signIn(req: AuthRequest, user: UserRecord, ip: string, ua: string): Promise<AuthUser> {
    await req.session!.regenerate({ keep: this.#keep });
    const session = req.session!;
    // A second-factor wait carried over by `keep` must not outlive the login it belonged to.
    delete session.pendingFactor;
    session.userId = user.id;
    session.userRole = user.role;
    session.csrfToken = generateCsrfToken();
    session._meta = { ip, ua, loginAt: Date.now() };
    // A login is a password verification: it counts as recent for requireRecentAuth.
    session.authenticatedAt = session._meta.loginAt;

    await this.notices.signedIn(user, this.notices.context(req));
    this.#emit({ type: 'login', userId: user.id, key: this.sessions.currentKey(req) ?? '', ip, ua }, req);
    return { id: user.id, email: user.email, role: user.role };
  }

  /** The first factor the account must pass after its password, if any. */
  async #requiredFactor(userId: number): Promise<SecondFactor | undefined> {
    for (const factor of this.factors) if (await factor.isRequired(userId)) return factor;
    return undefined;
  }

  /**
   * The password was right and the account requires `factor`: a new session id (as at any
   * login, so a planted id never reaches the second step either), not logged in, holding only
   * which factor is awaited, whose and since when, plus a CSRF token for the factor's form.
   */
  async #awaitSecondFactor(
    req: AuthRequest,
    userId: number,
    factor: SecondFactor,
    ip: string,
    ua: string,
  ): Promise<SecondFactorRequired> {
    await req.session!.regenerate({ keep: this.#keep });
    const session = req.session!;
    // `keep` may carry a previous login's keys: this session must not be logged in as anyone.
    delete session.userId;
    delete session.userRole;
    delete session._meta;
    delete session.authenticatedAt;
    session.csrfToken = generateCsrfToken();
    session.pendingFactor = { factor: factor.name, userId, at: nowOf(factor) };
    const key = this.sessions.currentKey(req) ?? '';
    this.#emit({ type: 'second-factor-required', factor: factor.name, userId, key, ip, ua }, req);
    return { status: 'second-factor-required', factor: factor.name };
  }

  /**
   * Finish a login that {@link login} answered with `{ status: 'second-factor-required' }`:
   * `proof` is what the awaited factor checks (for TOTP, the 6-digit code of the user's app or
   * one of their recovery codes, used up). The attempt is counted by the failed-login limits of
   * the account, like a password (throws {@link TooManyAttemptsError} past them). On success the
   * login completes exactly as a password-only one: a new session id, `userId`, `userRole`, a
   * fresh CSRF token, `_meta`, `authenticatedAt`, a `login` event. A wait older than the
   * factor's `pendingLoginTtl` (TOTP: 5 minutes) is dropped: `expired`, start again with the
   * password.
   */
  async completeSecondFactor(req: AuthRequest, proof: unknown): Promise<CompleteSecondFactorResult> {
    if (!req.session)
      throw new ConfigError('completeSecondFactor(req, …) needs the session middleware in front of it');
    const pending = pendingFactorOf(req.session.pendingFactor);
    const factor = pending && this.factors.find((f) => f.name === pending.factor);
    if (!pending || !factor) return { ok: false, reason: 'no-pending-login' };
    const age = nowOf(factor) - pending.at;
    // A little tolerance for clocks stepping back; a wait "from the future" beyond it is forged.
    if (age > factor.pendingLoginTtl || age < -60_000) {
      delete req.session.pendingFactor;
      return { ok: false, reason: 'expired' };
    }
    const ip = clientAddress(req);
    const ua = userAgent(req);
    const user = await this.users.findById(pending.userId);
    if (!user || user.disabled) {
      delete req.session.pendingFactor;
      return { ok: false, reason: 'no-pending-login' };
    }
    // The account's own budget (shared with its password guesses), counted before the check.
    const attempt = await this.#countAttempt(req, user.email, async () => user);
    let check: Awaited<ReturnType<SecondFactor['verify']>>;
    try {
      check = await factor.verify(user.id, proof);
    } catch (err) {
      await abandonOnOutage(attempt, err);
      throw err;
    }
    if (!check.ok) {
      this.notices.wrongSecondFactor(user, this.notices.context(req));
      this.#emit({ type: 'second-factor-failed', factor: factor.name, userId: user.id, ip, ua }, req);
      return { ok: false, reason: 'wrong-code' };
    }
    // Twice: this attempt, and the password's, which login() held back until the factor passed.
    await attempt?.succeeded();
    await attempt?.succeeded();
    const verified = { factor: factor.name, method: check.method };
    this.#emit({ type: 'second-factor-verified', ...verified, userId: user.id, ip, ua }, req);
    return { ok: true, user: await this.#signIn(req, user, ip, ua), ...verified };
  }

  /** {@link completeSecondFactor} for a login waiting for its TOTP code (or a recovery code). */
  completeTotp(req: AuthRequest, code: unknown): Promise<CompleteTotpResult> {
    return this.completeSecondFactor(req, code);
  }

  /**
   * Start enrolling the user in TOTP: a new secret (pending until {@link confirmTotp}) and its
   * `otpauth://` URI, labelled with the user's email. AuthError 409 while TOTP is on.
   */
  async startTotpEnrollment(userId: number): Promise<TotpEnrollment> {
    const user = await this.users.findById(userId);
    if (!user || user.disabled) throw new UnauthorizedError();
    return this.totp.startEnrollment(user.id, user.email);
  }

  /**
   * Turn TOTP on once `code` proves the user's app holds the pending secret. Returns the 10
   * recovery codes: show them once, only their hashes are kept.
   */
  async confirmTotp(userId: number, code: unknown): Promise<TotpConfirmResult> {
    const result = await this.totp.confirmEnrollment(userId, code);
    if (result.ok) this.#emit({ type: 'totp-enabled', userId });
    return result;
  }

  /**
   * Turn TOTP off for the logged-in user: needs the current password and a current code (or a
   * recovery code), both counted by the failed-login limits, so a stolen session alone cannot
   * remove the second factor.
   */
  async disableTotp(req: AuthRequest, currentPassword: unknown, code: unknown): Promise<DisableTotpResult> {
    const user = await this.#reauthenticate(req, currentPassword);
    if (!user) return { ok: false, reason: 'wrong-password' };
    if (!(await this.totp.isEnabled(user.id))) return { ok: false, reason: 'not-enabled' };
    const attempt = await this.#countAttempt(req, user.email, async () => user);
    let check: Awaited<ReturnType<TotpManager['check']>>;
    try {
      check = await this.totp.check(user.id, code);
    } catch (err) {
      await abandonOnOutage(attempt, err);
      throw err;
    }
    if (!check.ok) {
      this.#emit(
        {
          type: 'second-factor-failed',
          factor: 'totp',
          userId: user.id,
          ip: clientAddress(req),
          ua: userAgent(req),
        },
        req,
      );
      return { ok: false, reason: 'wrong-code' };
    }
    await attempt?.succeeded();
    await this.totp.disable(user.id);
    this.#emit({ type: 'totp-disabled', userId: user.id, by: 'user' }, req);
    return { ok: true };
  }

  async #upgradeHash(userId: number, oldHash: string, password: string, scheme: VerifyResult['scheme']) {
    try {
      const hash = await this.hasher.hashUnchecked(password);
      if (await this.users.setPasswordHash(userId, hash, oldHash)) {
        this.#emit({ type: 'password-rehashed', userId, from: scheme === 'bcrypt' ? 'bcrypt' : 'argon2id' });
      }
    } catch (err) {
      // The login itself succeeded; the upgrade is retried at the next one.
      this.#onError(err);
    }
  }

  /** The enabled account with this (normalised) email, as a notice recipient; null for anything else. */
  async #noticeRecipient(email: string): Promise<{ id: number; email: string } | null> {
    if (!isPlausibleEmail(email)) return null;
    const user = await this.users.findByEmail(email);
    return user && !user.disabled ? { id: user.id, email: user.email } : null;
  }

  /** Destroy the session (row deleted, cookie cleared). Safe to call when not logged in. */
  async logout(req: AuthRequest): Promise<void> {
    const session = req.session;
    if (!session) return;
    const key = this.sessions.currentKey(req) ?? '';
    const userId = typeof session.userId === 'number' ? session.userId : null;
    await session.destroy();
    this.#emit({ type: 'logout', userId, key, ip: clientAddress(req), ua: userAgent(req) }, req);
  }

  /** The logged-in user, fresh from the database (null when not logged in, deleted or disabled). */
  async currentUser(req: AuthRequest): Promise<AuthUser | null> {
    const id = req.session?.userId;
    if (typeof id !== 'number') return null;
    const user = await this.users.findById(id);
    if (!user || user.disabled) return null;
    return { id: user.id, email: user.email, role: user.role };
  }

  /**
   * Change the logged-in user's password: the current one is required (and counted by the
   * failed-login limits), the new one must meet the policy (PasswordPolicyError; length, common list and
   * context words are checked first, the breached check after the current password;
   * PasswordCheckUnavailableError when that check cannot be made and the policy refuses then).
   * On success this session always gets a new id (renewal after a credential change: the old id
   * is dead at once), and by default every other session of the user is revoked
   * (`revokeOthers: false` keeps them: the "log out other sessions" box unticked).
   */
  async changePassword(
    req: AuthRequest,
    currentPassword: unknown,
    newPassword: string,
    options: { revokeOthers?: boolean } = {},
  ): Promise<ChangePasswordResult> {
    // The cheap rules first (the email is a context word), the breached check only once the
    // current password is proven: a network call per guess would help nobody.
    const userId = req.session?.userId;
    const owner = typeof userId === 'number' ? await this.users.findById(userId) : null;
    const problem = this.passwordPolicy.problem(newPassword, { email: owner?.email });
    if (problem) throw new PasswordPolicyError(problem);
    const user = await this.#reauthenticate(req, currentPassword);
    if (!user) return { ok: false, reason: 'wrong-password' };
    const breached = await this.passwordPolicy.breachProblem(newPassword, { userId: user.id });
    if (breached) throw new PasswordPolicyError(breached);
    await this.users.setPasswordHash(user.id, await this.hasher.hash(newPassword));
    let revoked = 0;
    if (options.revokeOthers !== false) revoked = await this.sessions.revokeOthers(req);
    await req.session!.regenerate({ keep: true });
    req.session!.csrfToken = generateCsrfToken();
    // The current password was just verified, and the id renewed with it.
    req.session!.authenticatedAt = Date.now();
    this.#emit({ type: 'password-changed', userId: user.id, revoked }, req);
    await this.notices.passwordChanged(user, this.notices.context(req), revoked);
    return { ok: true, revoked };
  }

  /**
   * Change the logged-in user's email (ASVS 7.5.1: re-authentication first). The current
   * password is required and counted by the failed-login limits like a login. The new email is
   * normalised; AuthError (400) when it is not plausible, DuplicateEmailError (409) when taken.
   */
  async changeEmail(
    req: AuthRequest,
    currentPassword: unknown,
    newEmail: unknown,
  ): Promise<ChangeEmailResult> {
    const email = normalizeEmail(newEmail);
    if (!isPlausibleEmail(email))
      throw new AuthError('PGSESSION_INVALID_EMAIL', 'Invalid email address', 400);
    const user = await this.#reauthenticate(req, currentPassword);
    if (!user) return { ok: false, reason: 'wrong-password' };
    await this.users.setEmail(user.id, email);
    this.#emit({ type: 'email-changed', userId: user.id }, req);
    // `user` was read before the change: its email is the previous address, told too.
    await this.notices.emailChanged(user.id, user.email, email, this.notices.context(req));
    return { ok: true, email };
  }

  /**
   * Step-up (ASVS 7.5.2, 7.5.3): confirm the logged-in user's password before a sensitive action
   * guarded by `requireRecentAuth`. The attempt is counted by the same failed-login limits as a
   * login (throws {@link TooManyAttemptsError} past them; a wrong password is `login-failed`).
   * On success the session gets a new id, keeping its data (a copy of the old cookie taken
   * before must not inherit the fresh status), `authenticatedAt` is set to now, and a
   * `reauthenticated` event is emitted. The CSRF token is kept: it guards against forged
   * requests from other sites, which the new id does not change, and API clients keep working.
   *
   * Returns the user, or null when not logged in (or disabled) or when the password is wrong.
   */
  async reauthenticate(req: AuthRequest, password: unknown): Promise<AuthUser | null> {
    if (!req.session)
      throw new ConfigError('reauthenticate(req, …) needs the session middleware in front of it');
    const user = await this.#reauthenticate(req, password);
    if (!user) return null;
    const previousKey = this.sessions.currentKey(req) ?? '';
    await req.session.regenerate({ keep: true });
    req.session.authenticatedAt = Date.now();
    this.#emit(
      {
        type: 'reauthenticated',
        userId: user.id,
        key: this.sessions.currentKey(req) ?? '',
        previousKey,
        ip: clientAddress(req),
        ua: userAgent(req),
      },
      req,
    );
    return { id: user.id, email: user.email, role: user.role };
  }

  /**
   * The logged-in user if `password` is their current password: step-up, credential changes,
   * turning TOTP off. Keyed by the account's email like a login, so guesses here and at the login
   * form share one budget (step-up is no side door for guessing with a stolen session); a wrong
   * password is a `login-failed` event and counts for the failed-sign-ins notice.
   */
  async #reauthenticate(req: AuthRequest, password: unknown): Promise<UserWithHash | null> {
    const userId = req.session?.userId;
    if (typeof userId !== 'number') return null;
    const current = await this.users.findById(userId);
    if (!current || current.disabled) return null;
    const attempt = await this.#countAttempt(req, current.email, async () => current);
    let user: UserWithHash | null;
    let ok = false;
    try {
      user = await this.users.findByEmail(current.email);
      if (user && validPasswordInput(password)) {
        ok = (await this.hasher.verify(user.passwordHash, password)).ok;
      } else {
        // Same cost whatever was sent, so the answer's time says nothing about the input.
        await this.hasher.verifyDummy(validPasswordInput(password) ? password : '');
      }
    } catch (err) {
      // An outage is nobody's guess: as for a login, it is given back to the limits.
      await abandonOnOutage(attempt, err);
      throw err;
    }
    if (!ok || !user) {
      this.notices.failedSignIn(current, this.notices.context(req));
      const emailHash = hashEmail(current.email);
      this.#emit(
        { type: 'login-failed', userId, emailHash, ip: clientAddress(req), ua: userAgent(req) },
        req,
      );
      return null;
    }
    await attempt?.succeeded();
    return user;
  }

  /**
   * Count one password or code attempt for `email` against the failed-login limits, from this
   * address and (when its device cookie verifies) this trusted device. Past a limit: the
   * account's owner is told (`recipient`, looked up in the background), a `rate-limited` event,
   * and TooManyAttemptsError thrown.
   */
  async #countAttempt(
    req: AuthRequest,
    email: string,
    recipient: () => Promise<{ id: number; email: string } | null>,
  ): Promise<LoginAttempt | undefined> {
    if (!this.limiter) return undefined;
    const ip = clientAddress(req);
    try {
      return await this.limiter.attempt(email, ip, { device: this.#deviceOf(req, email) });
    } catch (err) {
      if (err instanceof TooManyAttemptsError) {
        this.notices.lockedOut(recipient, err, this.notices.context(req));
        this.#emit(
          {
            type: 'rate-limited',
            scope: err.scope,
            emailHash: hashEmail(email),
            ip,
            ua: userAgent(req),
            retryAfter: err.retryAfter,
          },
          req,
        );
      }
      throw err;
    }
  }

  /** Disable an account and end all its sessions (on every server). */
  async disableUser(userId: number): Promise<number> {
    await this.users.disable(userId);
    return this.#revokeAll(userId, 'account disabled');
  }

  /** Change a user's role and end their sessions (the role is cached in the session). */
  async setRole(userId: number, role: Role): Promise<number> {
    await this.users.setRole(userId, role);
    return this.#revokeAll(userId, 'role changed');
  }

  /** End every session of a user (admin action). */
  async revokeAllSessions(userId: number, reason = 'revoked by an administrator'): Promise<number> {
    return this.#revokeAll(userId, reason);
  }

  async #revokeAll(userId: number, reason: string): Promise<number> {
    const count = await this.sessions.revokeAll(userId);
    this.#emit({
      type: 'revoked',
      userId,
      key: '*',
      by: reason.includes('admin') ? 'admin' : 'system',
      reason,
    });
    return count;
  }

  /** Revoke one of the requester's sessions by its listed id (see {@link SessionManager.revoke}). */
  async revokeSession(req: AuthRequest, id: string) {
    const userId = req.session?.userId;
    const outcome = await this.sessions.revoke(req, id);
    if (outcome !== 'not-found' && typeof userId === 'number') {
      this.#emit(
        {
          type: 'revoked',
          userId,
          key: id,
          by: 'user',
          reason: outcome === 'current' ? 'logout' : 'revoked',
        },
        req,
      );
    }
    return outcome;
  }

  /** Revoke all the requester's other sessions ("log out everywhere else"). */
  async revokeOtherSessions(req: AuthRequest): Promise<number> {
    const userId = req.session?.userId;
    const count = await this.sessions.revokeOthers(req);
    if (typeof userId === 'number' && count > 0) {
      this.#emit(
        { type: 'revoked', userId, key: '*others', by: 'user', reason: 'log out everywhere else' },
        req,
      );
    }
    return count;
  }

  /** The storage key of a session id (for logs and comparisons; never a cookie value). */
  keyOf(sessionId: string): string {
    return this.#access.engine.keyOf(sessionId);
  }
}

/** Bind the auth layer to a pool and pgsession's middleware. */
export function createAuth(options: AuthOptions): Auth {
  return new Auth(options);
}
