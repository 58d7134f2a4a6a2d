/**
 * The seam for factors checked after the password (ASVS 6.3.3). TOTP is one; a WebAuthn, push
 * or e-mailed-code factor is another, written as one class implementing {@link SecondFactor}
 * and passed to `createAuth({ secondFactors })`. The login flow does the rest the same way for
 * every factor: a new session id, a pending state that no guard counts as logged in, a time
 * limit, the failed-login limits, the events and notices.
 */

/** What a factor's check accepted; `method` names it for the audit log (`'totp'`, `'recovery-code'`). */
export type SecondFactorCheck = { ok: true; method: string } | { ok: false };

/** A factor an account may have to pass after its password. */
export interface SecondFactor {
  /** Stable name: stored in the waiting session and given to the app in the login result. */
  readonly name: string;
  /** How long a password-verified login may wait for this factor, in ms. */
  readonly pendingLoginTtl: number;
  /** Whether this account must pass this factor after its password. */
  isRequired(userId: number): Promise<boolean>;
  /** Check what the user presented (a code, an assertion). Called at most once per attempt. */
  verify(userId: number, proof: unknown): Promise<SecondFactorCheck>;
  /** The clock the wait is measured with, epoch ms. Default `Date.now`. */
  now?(): number;
}

/** What {@link Auth.login} returns instead of a user when the account must pass a factor first. */
export interface SecondFactorRequired {
  status: 'second-factor-required';
  /** The {@link SecondFactor.name} to ask for (`'totp'`). */
  factor: string;
}

/** Whether a login result asks for a second factor (any, or the one named). */
export function isSecondFactorRequired(result: unknown, factor?: string): result is SecondFactorRequired {
  if (typeof result !== 'object' || result === null) return false;
  const r = result as { status?: unknown; factor?: unknown };
  return r.status === 'second-factor-required' && (factor === undefined || r.factor === factor);
}

/** The session state of a login waiting for a factor: which, whose, and since when (epoch ms). */
export interface PendingFactor {
  factor: string;
  userId: number;
  at: number;
}

/** The pending state of a session if it is well formed, else undefined (never trust stored shape). */
export function pendingFactorOf(value: unknown): PendingFactor | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const p = value as Partial<PendingFactor>;
  if (typeof p.factor !== 'string' || typeof p.userId !== 'number' || typeof p.at !== 'number')
    return undefined;
  return { factor: p.factor, userId: p.userId, at: p.at };
}
