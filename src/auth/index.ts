/**
 * pgsession's auth layer: users, password hashing (argon2id, bcrypt upgrade), login with
 * fixation defence, rate limiting and enumeration-safe answers, guards, CSRF defence, and
 * session listing/revocation. Builds on pgsession's session middleware and PostgreSQL.
 *
 * ```ts
 * import session from 'pgsession';
 * import { createAuth, requireAuth, csrfProtection, runAuthMigrations } from 'pgsession/auth';
 * ```
 */
import './types.js';

export {
  type CrossSiteOptions,
  crossSiteReason,
  csrfProtection,
  csrfToken,
  csrfTokenMatches,
  generateCsrfToken,
  presentedCsrfToken,
  rejectCrossSite,
  requestOrigin,
  verifyCsrfToken,
} from './csrf.js';
export {
  AuthError,
  CsrfError,
  DuplicateEmailError,
  ForbiddenError,
  PasswordPolicyError,
  TooManyAttemptsError,
  UnauthorizedError,
} from './errors.js';
export {
  authenticatedAt,
  type GuardOptions,
  isAuthenticated,
  isRecentlyAuthenticated,
  ReauthenticationRequiredError,
  type RecentAuthOptions,
  requireAuth,
  requireRecentAuth,
  requireRole,
  safeRedirectPath,
} from './guards.js';
export { Auth, type AuthOptions, type ChangePasswordResult, createAuth } from './login.js';
export { AUTH_MIGRATION_PREFIX, authMigrations, authMigrationsDir, runAuthMigrations } from './migrations.js';
export {
  type Argon2Params,
  DEFAULT_ARGON2_PARAMS,
  isCommonPassword,
  isSupportedHash,
  MAX_PASSWORD_LENGTH,
  MIN_PASSWORD_LENGTH,
  PasswordHasher,
  passwordProblem,
  type VerifyResult,
} from './passwords.js';
export {
  DEFAULT_LOGIN_RATE_LIMITS,
  emailKey,
  type Limit,
  type LimitScope,
  type LoginAttempt,
  LoginRateLimiter,
  type LoginRateLimiterOptions,
  type LoginRateLimitPolicy,
} from './rate-limit.js';
export { type AuthRequest, clientAddress, type Middleware, pathOf, userAgent, wantsJson } from './request.js';
export {
  describeUserAgent,
  type RevokeOutcome,
  type SessionAccess,
  type SessionInfo,
  SessionManager,
} from './sessions.js';
export type { AuthEvent, AuthUser, Role, SessionMeta } from './types.js';
export {
  isPlausibleEmail,
  MAX_EMAIL_LENGTH,
  normalizeEmail,
  type UserListEntry,
  type UserRecord,
  UserRepository,
  type UserRepositoryOptions,
  type UserWithHash,
} from './users.js';
