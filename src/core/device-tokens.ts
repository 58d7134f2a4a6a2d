import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Secret } from './signature.js';

/**
 * The two values the server makes for device-bound sessions (DBSC), both checkable with no
 * store round trip, so a request with deviceBound on costs one HMAC more than without:
 *
 * - the **bound cookie**: `<expiry>.<mac>`, an HMAC over the session's storage key and the
 *   cookie's own expiry. It proves the browser refreshed it (signed a challenge with the device
 *   key) before `expiry`; copied to another machine it works until then and no longer.
 * - the **challenge** the browser signs: `<issued>.<nonce>.<mac>`, an HMAC over the storage key,
 *   its issue time and a random nonce. It is bound to one session (a challenge issued to another
 *   session does not verify), it expires, and the store keeps the issue time of the last one
 *   accepted, so each is accepted once (see `DeviceBinding.challengeAt`).
 *
 * Times are epoch milliseconds in base 36. Each MAC has its own label, so neither value can
 * stand for the other, nor for a session cookie signature. The first secret signs; all verify
 * (rotation), as for the session cookie.
 */

const COOKIE_LABEL = 'pgsession dbsc bound-cookie\0';
const CHALLENGE_LABEL = 'pgsession dbsc challenge\0';
/** Base64url of a SHA-256 MAC. */
const MAC_LENGTH = 43;
/** Longer values are never ours: skip the HMAC. */
const MAX_VALUE = 128;

function mac(label: string, message: string, secret: Secret): Buffer {
  return createHmac('sha256', secret).update(label).update(message).digest();
}

function matches(label: string, message: string, given: string, secrets: readonly Secret[]): boolean {
  if (given.length !== MAC_LENGTH) return false;
  const presented = Buffer.from(given, 'base64url');
  if (presented.length !== 32) return false;
  for (const secret of secrets) {
    if (timingSafeEqual(mac(label, message, secret), presented)) return true;
  }
  return false;
}

/** A time in base 36, or NaN for anything that is not one. */
function parseTime(text: string): number {
  if (text.length === 0 || text.length > 11 || !/^[0-9a-z]+$/.test(text)) return Number.NaN;
  return Number.parseInt(text, 36);
}

/** The bound cookie's value for `key`, valid until `expiresAt`. */
export function boundCookieValue(key: string, expiresAt: number, secret: Secret): string {
  const time = expiresAt.toString(36);
  return `${time}.${mac(COOKIE_LABEL, `${key}\0${time}`, secret).toString('base64url')}`;
}

/** Why a presented bound cookie does not vouch for the session (null: it does). */
export type BoundCookieProblem = 'missing' | 'invalid' | 'expired';

/** Check a presented bound cookie for `key` at `now`. */
export function checkBoundCookie(
  value: string | undefined,
  key: string,
  now: number,
  secrets: readonly Secret[],
): BoundCookieProblem | null {
  const expiresAt = boundCookieExpiry(value, key, secrets);
  if (typeof expiresAt !== 'number') return expiresAt;
  return expiresAt > now ? null : 'expired';
}

/** The expiry a bound cookie for `key` carries, if its MAC verifies; else why it is no such cookie. */
export function boundCookieExpiry(
  value: string | undefined,
  key: string,
  secrets: readonly Secret[],
): number | 'missing' | 'invalid' {
  if (value === undefined || value === '') return 'missing';
  const dot = value.indexOf('.');
  if (dot <= 0 || value.length > MAX_VALUE) return 'invalid';
  const time = value.slice(0, dot);
  const expiresAt = parseTime(time);
  if (Number.isNaN(expiresAt)) return 'invalid';
  if (!matches(COOKIE_LABEL, `${key}\0${time}`, value.slice(dot + 1), secrets)) return 'invalid';
  return expiresAt;
}

/** A new challenge for the session stored under `key`. */
export function issueChallenge(key: string, now: number, secret: Secret): string {
  const time = now.toString(36);
  const nonce = randomBytes(12).toString('base64url');
  return `${time}.${nonce}.${mac(CHALLENGE_LABEL, `${key}\0${time}\0${nonce}`, secret).toString('base64url')}`;
}

/** What a presented challenge is: `issuedAt` if this server issued it for `key`, else null. */
export function readChallenge(
  value: unknown,
  key: string,
  secrets: readonly Secret[],
): { issuedAt: number } | null {
  if (typeof value !== 'string' || value.length > MAX_VALUE) return null;
  const parts = value.split('.');
  if (parts.length !== 3) return null;
  const [time, nonce, given] = parts as [string, string, string];
  const issuedAt = parseTime(time);
  if (Number.isNaN(issuedAt) || nonce.length !== 16) return null;
  return matches(CHALLENGE_LABEL, `${key}\0${time}\0${nonce}`, given, secrets) ? { issuedAt } : null;
}
