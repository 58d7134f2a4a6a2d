import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { boundCookieValue, checkBoundCookie, issueChallenge, readChallenge } from './device-tokens.js';

const SECRET = 'first-secret-0123456789abcdefghijklmnop';
const OLD = 'older-secret-0123456789abcdefghijklmnop';
const KEY = 'storage-key-of-the-session-aaaaaaaaaaaaaaaa';
const T = Date.UTC(2030, 0, 1);

describe('the bound cookie', () => {
  it('vouches for its session until its expiry, then says expired', () => {
    const value = boundCookieValue(KEY, T + 600_000, SECRET);
    expect(value).toMatch(/^[0-9a-z]+\.[\w-]{43}$/);
    expect(checkBoundCookie(value, KEY, T, [SECRET])).toBeNull();
    expect(checkBoundCookie(value, KEY, T + 599_999, [SECRET])).toBeNull();
    expect(checkBoundCookie(value, KEY, T + 600_000, [SECRET])).toBe('expired');
  });

  it('is worthless for another session, with another secret, or with its expiry changed', () => {
    const value = boundCookieValue(KEY, T + 600_000, SECRET);
    expect(checkBoundCookie(value, `${KEY}x`, T, [SECRET])).toBe('invalid');
    expect(checkBoundCookie(value, KEY, T, [OLD])).toBe('invalid');
    const [, mac] = value.split('.');
    expect(checkBoundCookie(`${(T + 9e9).toString(36)}.${mac}`, KEY, T, [SECRET])).toBe('invalid');
    expect(checkBoundCookie(undefined, KEY, T, [SECRET])).toBe('missing');
    expect(checkBoundCookie('', KEY, T, [SECRET])).toBe('missing');
  });

  it('verifies with any configured secret (rotation)', () => {
    expect(checkBoundCookie(boundCookieValue(KEY, T + 1, OLD), KEY, T, [SECRET, OLD])).toBeNull();
  });

  it('never throws on arbitrary input, and accepts none of it', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (v) => {
        expect(['missing', 'invalid', 'expired']).toContain(checkBoundCookie(v, KEY, T, [SECRET]));
      }),
    );
  });
});

describe('the challenge', () => {
  it('reads back its issue time for the session it was issued to, and only for it', () => {
    const c = issueChallenge(KEY, T, SECRET);
    expect(readChallenge(c, KEY, [SECRET])).toEqual({ issuedAt: T });
    expect(readChallenge(c, `${KEY}x`, [SECRET])).toBeNull();
    expect(readChallenge(c, KEY, [OLD])).toBeNull();
    expect(readChallenge(c, KEY, [OLD, SECRET])).toEqual({ issuedAt: T });
  });

  it('is new each time, and cannot stand for a bound cookie or be re-dated', () => {
    const a = issueChallenge(KEY, T, SECRET);
    expect(issueChallenge(KEY, T, SECRET)).not.toBe(a);
    const [, nonce, mac] = a.split('.');
    expect(readChallenge(`${(T + 1).toString(36)}.${nonce}.${mac}`, KEY, [SECRET])).toBeNull();
    expect(checkBoundCookie(`${T.toString(36)}.${mac}`, KEY, T - 1, [SECRET])).toBe('invalid');
  });

  it('never throws on arbitrary input', () => {
    fc.assert(
      fc.property(fc.anything(), (v) => {
        expect(readChallenge(v, KEY, [SECRET])).toBeNull();
      }),
    );
  });
});
