import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * express-session's cookie signature (the `cookie-signature` format): `<value>.<mac>` where mac
 * is base64 HMAC-SHA256 of the value with trailing `=` removed. The session cookie holds
 * `s:` + that, URL-encoded by the cookie serializer.
 */
export const SIGNED_PREFIX = 's:';

/** A signing secret: a string or, as express-session accepts, a Buffer. */
export type Secret = string | Buffer;

function mac(value: string, secret: Secret): string {
  return createHmac('sha256', secret).update(value).digest('base64').replace(/=+$/, '');
}

/** Sign `value` with `secret`: `value.mac`. */
export function sign(value: string, secret: Secret): string {
  return `${value}.${mac(value, secret)}`;
}

/**
 * Verify `signed` against each secret in turn (the first signs, all verify: rotation) and return
 * the value, or false. The MAC comparison is constant-time so a forger learns nothing from how
 * long a wrong guess takes; only the length check (public: always 43 characters) exits early.
 */
export function unsign(signed: string, secrets: readonly Secret[]): string | false {
  return unsignWithIndex(signed, secrets)?.value ?? false;
}

/**
 * Which secret (index into `secrets`) verified `signed`, or -1. Used to re-sign cookies made
 * with an old secret so rotation converges without logging anyone out.
 */
export function unsignWithIndex(
  signed: string,
  secrets: readonly Secret[],
): { value: string; index: number } | null {
  const dot = signed.lastIndexOf('.');
  if (dot <= 0) return null;
  const value = signed.slice(0, dot);
  const given = Buffer.from(signed.slice(dot + 1));
  for (let i = 0; i < secrets.length; i++) {
    const expected = Buffer.from(mac(value, secrets[i]!));
    if (expected.length === given.length && timingSafeEqual(expected, given)) return { value, index: i };
  }
  return null;
}
