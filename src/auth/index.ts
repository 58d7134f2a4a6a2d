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
  csrfProtection,
  csrfToken,
  rejectCrossSite,
  verifyCsrfToken,
} from './csrf.js';
export { type TrustedDeviceOptions, TrustedDevices } from './devices.js';
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
  isSecondFactorRequired,
  type PendingFactor,
  type SecondFactor,
  type SecondFactorCheck,
  type SecondFactorRequired,
} from './factors.js';
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
export {
  Auth,
  type AuthOptions,
  type ChangePasswordResult,
  type CompleteSecondFactorResult,
  type CompleteTotpResult,
  createAuth,
  type DisableTotpResult,
} from './login.js';
export {
  authMigrations,
  runAuthMigrations,
} from './migrations.js';
export {
  type NoticeContext,
  type NoticeRecipient,
  type NotifyHook,
  type SecurityNotice,
  type SecurityNoticeDetails,
  type SecurityNoticeKind,
  type SecurityNoticeMessage,
  type SecurityNoticeOptions,
  SecurityNotices,
  type SecurityNoticesConfig,
} from './notices.js';
export {
  type BreachedPasswordCheck,
  type BreachedPasswordCheckContext,
  PasswordCheckUnavailableError,
  type PasswordCheckUnavailableReport,
  type PasswordContext,
  PasswordPolicy,
  type PasswordPolicyHooks,
  type PasswordPolicyOptions,
} from './password-policy.js';
export {
  type Argon2Params,
  MAX_PASSWORD_LENGTH,
  MIN_PASSWORD_LENGTH,
  PasswordHasher,
  passwordProblem,
  type VerifyResult,
} from './passwords.js';
export {
  PWNED_PASSWORDS_URL,
  type PwnedPasswordsOptions,
  pwnedPasswords,
} from './pwned.js';
export {
  DEFAULT_LOGIN_RATE_LIMITS,
  type Limit,
  type LimitScope,
  type LoginAttempt,
  LoginRateLimiter,
  type LoginRateLimiterOptions,
  type LoginRateLimitPolicy,
} from './rate-limit.js';
export {
  type AuthRequest,
  clientAddress,
  type Middleware,
  userAgent,
  wantsJson,
} from './request.js';
export {
  describeUserAgent,
  type RevokeOutcome,
  type SessionAccess,
  type SessionInfo,
  type SessionManager,
} from './sessions.js';
export {
  isTotpRequired,
  type TotpCheck,
  type TotpConfirmResult,
  type TotpEnrollment,
  TotpManager,
  type TotpOptions,
  type TotpRequired,
  type TotpStatus,
} from './totp.js';
export type { AuthEvent, AuthUser, Role, SessionMeta } from './types.js';
export {
  isPlausibleEmail,
  normalizeEmail,
  type UserListEntry,
  type UserRecord,
  UserRepository,
  type UserRepositoryOptions,
  type UserWithHash,
} from './users.js';
