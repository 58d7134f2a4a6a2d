import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { parse as parseCookies, serialize as serializeCookie } from 'cookie';
import { ConfigError } from '../core/errors.js';
import { emailKey } from './rate-limit.js';
import type { AuthRequest } from './request.js';

/** Options of {@link TrustedDevices} (`createAuth({ trustedDevices })`). */
export interface TrustedDeviceOptions {
  /**
   * Key(s) for the device cookie's MAC, newest first (old ones still verify, for rotation). At
   * least 32 characters. Use a secret of its own, or the session secret.
   */
  secret: string | readonly string[];
  /** Cookie name. Default `pgsession_device`. */
  name?: string;
  /** Lifetime in seconds. Default one year. */
  maxAge?: number;
}

const MAC_LABEL = 'pgsession-trusted-device-v1';
const NONCE_BYTES = 16;

/**
 * Device cookies (OWASP "Slow Down Online Guessing Attacks with Device Cookies"). A browser that
 * has logged in to an account gets a long-lived cookie naming that account, MAC'd by the server.
 * When the account's own failed-login limit trips (an attacker spread over many addresses), the
 * owner's browser, presenting its cookie, is counted against a limit of its own instead, so a
 * distributed guessing attack cannot lock the owner out. The cookie grants nothing else: the
 * password is still required, and a stolen cookie only buys its own small budget of guesses.
 *
 * Value: `<nonce>.<mac>`, where `mac = HMAC-SHA256(secret, label:<account key>:<nonce>)`: the
 * account is not in the cookie (no email in the browser), only bound into the MAC.
 */
export class TrustedDevices {
  readonly name: string;
  readonly maxAge: number;
  readonly #secrets: readonly string[];

  constructor(options: TrustedDeviceOptions) {
    const secrets = typeof options.secret === 'string' ? [options.secret] : [...options.secret];
    if (secrets.length === 0 || secrets.some((s) => typeof s !== 'string' || s.length < 32)) {
      throw new ConfigError('trustedDevices.secret must be one or more strings of at least 32 characters');
    }
    this.#secrets = secrets;
    this.name = options.name ?? 'pgsession_device';
    this.maxAge = options.maxAge ?? 365 * 86_400;
    if (!Number.isInteger(this.maxAge) || this.maxAge <= 0) {
      throw new ConfigError('trustedDevices.maxAge must be a positive number of seconds');
    }
  }

  #mac(secret: string, account: string, nonce: string): Buffer {
    return createHmac('sha256', secret).update(`${MAC_LABEL}:${account}:${nonce}`).digest();
  }

  /** A new device token for this account (after a successful login). */
  issue(normalizedEmail: string): string {
    const nonce = randomBytes(NONCE_BYTES).toString('base64url');
    return `${nonce}.${this.#mac(this.#secrets[0]!, emailKey(normalizedEmail), nonce).toString('base64url')}`;
  }

  /**
   * The device id (its nonce) if `token` was issued for this account by one of the secrets, else
   * null. Constant-time in the MAC comparison, like the session cookie's.
   */
  verify(token: unknown, normalizedEmail: string): string | null {
    if (typeof token !== 'string' || token.length > 128) return null;
    const dot = token.indexOf('.');
    if (dot <= 0) return null;
    const nonce = token.slice(0, dot);
    const given = Buffer.from(token.slice(dot + 1), 'base64url');
    const account = emailKey(normalizedEmail);
    let ok = false;
    for (const secret of this.#secrets) {
      const expected = this.#mac(secret, account, nonce);
      // Every secret is tried, so timing does not say which one (if any) matched.
      if (given.length === expected.length && timingSafeEqual(given, expected)) ok = true;
    }
    return ok ? nonce : null;
  }

  /** The device token the request's cookie carries, if any (unverified). */
  tokenOf(req: AuthRequest): string | undefined {
    const header = req.headers.cookie;
    if (!header?.includes(this.name)) return undefined;
    try {
      return parseCookies(header)[this.name] || undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * The `Set-Cookie` header giving this browser a device cookie for the account: HttpOnly,
   * SameSite=Lax, Path=/, Secure when `secure` (it must be on HTTPS: a device cookie sent in
   * clear could be copied to skip the account's limit).
   */
  setCookieHeader(normalizedEmail: string, options: { secure: boolean }): string {
    return serializeCookie(this.name, this.issue(normalizedEmail), {
      httpOnly: true,
      sameSite: 'lax',
      path: '/',
      secure: options.secure,
      maxAge: this.maxAge,
    });
  }
}
