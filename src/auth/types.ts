/**
 * The session keys the auth layer reads and writes, typed on `req.session` through declaration
 * merging. Apps add their own keys the same way:
 *
 * ```ts
 * declare module 'pgsession' {
 *   interface SessionData { cart: string[] }
 * }
 * ```
 */

/** A user's role. */
export type Role = 'user' | 'admin';

/** Where and how a session was opened, recorded at login for the "your sessions" page. */
export interface SessionMeta {
  /** Client address at login (Express's `req.ip`: honours `trust proxy`). */
  ip: string;
  /** User-Agent at login (truncated to 512 characters). */
  ua: string;
  /** Login time, epoch milliseconds. */
  loginAt: number;
}

declare module '../core/session.js' {
  interface SessionData {
    /** The logged-in user's id (the seed's `req.session.userId`). */
    userId: number;
    /** The logged-in user's role (the seed's `req.session.userRole`). */
    userRole: Role;
    /** Per-session anti-forgery token (32 random bytes, base64url). */
    csrfToken: string;
    /** Login address and user agent, for the sessions page. */
    _meta: SessionMeta;
    /**
     * When the password was last verified for this session (login, re-authentication, password
     * change), epoch ms: what `requireRecentAuth` compares (ASVS 7.5.3).
     */
    authenticatedAt: number;
    /**
     * A password-verified login waiting for a second factor (ASVS 6.3.3): which factor, whose,
     * and since when (epoch ms). Such a session is not logged in: `userId` is not set until the
     * factor passes.
     */
    pendingFactor: { factor: string; userId: number; at: number };
  }
}

/** A user as the auth layer hands it to the app (never includes the password hash). */
export interface AuthUser {
  id: number;
  email: string;
  role: Role;
}

/**
 * Audit events of the auth layer, for structured logs. Session keys are storage keys (hashed
 * ids), never raw ids; passwords never appear. `emailHash` lets failed attempts against one
 * account be correlated without writing what was typed into the email field to the log.
 */
export type AuthEvent =
  | { type: 'login'; userId: number; key: string; ip: string; ua: string }
  | { type: 'login-failed'; userId: number | null; emailHash: string; ip: string; ua: string }
  | {
      type: 'rate-limited';
      scope: 'ip' | 'account' | 'account-ip' | 'device';
      emailHash: string;
      ip: string;
      ua: string;
      retryAfter: number;
    }
  | { type: 'logout'; userId: number | null; key: string; ip: string; ua: string }
  | { type: 'revoked'; userId: number; key: string; by: 'user' | 'admin' | 'system'; reason: string }
  | { type: 'password-rehashed'; userId: number; from: 'bcrypt' | 'argon2id' }
  | { type: 'password-changed'; userId: number; revoked: number }
  | { type: 'email-changed'; userId: number }
  /**
   * The breached-password service could not answer for a new password: `allowed` means it was
   * accepted unchecked (`onError: 'allow'`), `refused` that the user was asked to try again.
   * `reason` is "timeout after 2000 ms", "HTTP 500"…; never the password or its hash.
   */
  | {
      type: 'password-check-unavailable';
      userId: number | null;
      outcome: 'allowed' | 'refused';
      reason: string;
    }
  /** The password was confirmed for step-up; the session got a new id (`previousKey` is dead). */
  | { type: 'reauthenticated'; userId: number; key: string; previousKey: string; ip: string; ua: string }
  /** Right password for an account that requires `factor`: the session (`key`) now waits for it. */
  | { type: 'second-factor-required'; factor: string; userId: number; key: string; ip: string; ua: string }
  /** A wrong, replayed or expired second-factor proof (counted by the failed-login limits). */
  | { type: 'second-factor-failed'; factor: string; userId: number; ip: string; ua: string }
  /** The second factor was accepted; for TOTP, `method: 'recovery-code'` means one was used up. */
  | {
      type: 'second-factor-verified';
      factor: string;
      method: string;
      userId: number;
      ip: string;
      ua: string;
    }
  | { type: 'totp-enabled'; userId: number }
  | { type: 'totp-disabled'; userId: number; by: 'user' | 'admin' };
