import { PgSessionError } from '../core/errors.js';

/**
 * Errors the auth layer passes to `next(err)` (guards, CSRF) or throws (login). Each carries an
 * HTTP `status`, a stable `code`, and `expose`: `true` for client errors (4xx), whose messages
 * are written for the end user; `false` for the rest.
 */
export class AuthError extends PgSessionError {
  constructor(code: string, message: string, status: number) {
    super(code, message, { status, expose: status < 500 });
  }
}

/** Not logged in (API requests; HTML requests are redirected to the login page instead). */
export class UnauthorizedError extends AuthError {
  constructor(message = 'Login required') {
    super('PGSESSION_UNAUTHORIZED', message, 401);
  }
}

/** Logged in, but not allowed (e.g. `requireRole('admin')` for a user). */
export class ForbiddenError extends AuthError {
  constructor(message = 'Forbidden') {
    super('PGSESSION_FORBIDDEN', message, 403);
  }
}

/** A state-changing request that is cross-site or lacks a valid anti-forgery token. */
export class CsrfError extends AuthError {
  readonly reason: 'cross-site' | 'origin' | 'token';
  constructor(reason: 'cross-site' | 'origin' | 'token') {
    super('PGSESSION_CSRF', 'Request refused: it did not come from this site or its form expired', 403);
    this.reason = reason;
  }
}

/** Too many failed logins: answer 429 with `Retry-After: retryAfter` (seconds). */
export class TooManyAttemptsError extends AuthError {
  readonly retryAfter: number;
  /** Which limit refused the attempt: account+address, address, or account. */
  readonly scope: 'account-ip' | 'ip' | 'account' | 'device';
  constructor(retryAfterSeconds: number, scope: 'account-ip' | 'ip' | 'account' | 'device' = 'account-ip') {
    super('PGSESSION_RATE_LIMITED', 'Too many failed login attempts; try again later', 429);
    this.retryAfter = Math.max(1, Math.ceil(retryAfterSeconds));
    this.scope = scope;
  }
}

/** A new password that breaks the password policy (length). `message` is safe to show. */
export class PasswordPolicyError extends AuthError {
  constructor(message: string) {
    super('PGSESSION_PASSWORD_POLICY', message, 400);
  }
}

/** Creating a user whose email is already taken (case-insensitively). */
export class DuplicateEmailError extends AuthError {
  constructor() {
    super('PGSESSION_DUPLICATE_EMAIL', 'A user with this email already exists', 409);
  }
}
