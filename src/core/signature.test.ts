import cookieSignature from 'cookie-signature';
// express-session depends on its own, older copy: test against both.
import expressSignature from 'express-session/node_modules/cookie-signature/index.js';
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SIGNED_PREFIX, sign, unsign, unsignWithIndex } from './signature.js';

const SECRET = 'first-secret-0123456789abcdefghijklmnop';
const OLD = 'older-secret-0123456789abcdefghijklmnop';
const libraries = [
  ['cookie-signature (top level)', cookieSignature],
  ['cookie-signature used by express-session', expressSignature],
] as const;

const value = fc.string({ unit: 'binary', maxLength: 80 });
const secret = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 64 });

describe.each(libraries)('compatibility with %s', (_name, lib) => {
  it('signs exactly as it does', () => {
    fc.assert(fc.property(value, secret, (v, s) => sign(v, s) === lib.sign(v, s)));
  });

  it('verifies what it signs, and it verifies what we sign', () => {
    fc.assert(
      fc.property(
        value.filter((v) => v.length > 0),
        secret,
        (v, s) => {
          expect(unsign(lib.sign(v, s), [s])).toBe(v);
          expect(lib.unsign(sign(v, s), s)).toBe(v);
        },
      ),
    );
  });

  it('agrees on arbitrary input (we additionally refuse an empty value)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 120 }), secret, (input, s) => {
        const theirs = lib.unsign(input, s);
        const ours = unsign(input, [s]);
        expect(ours === theirs || (theirs === '' && ours === false)).toBe(true);
      }),
    );
  });

  it('verifies a real express-session cookie value', () => {
    const id = 'xJ3kZbN8vH0sQ2-_mP7rT9wY1uE4aD6f';
    const cookieValue = `${SIGNED_PREFIX}${lib.sign(id, SECRET)}`;
    expect(unsign(cookieValue.slice(SIGNED_PREFIX.length), [SECRET])).toBe(id);
  });
});

describe('rotation', () => {
  const id = 'session-id-abcdefghijklmnopqrstuvwxyz0123456';

  it('signs with the first secret and verifies with every one, telling which', () => {
    expect(sign(id, SECRET)).toBe(cookieSignature.sign(id, SECRET));
    expect(unsignWithIndex(sign(id, SECRET), [SECRET, OLD])).toEqual({ value: id, index: 0 });
    expect(unsignWithIndex(sign(id, OLD), [SECRET, OLD])).toEqual({ value: id, index: 1 });
    expect(unsign(sign(id, OLD), [SECRET, OLD])).toBe(id);
  });

  it('refuses a value signed with a secret no longer listed', () => {
    expect(unsign(sign(id, OLD), [SECRET])).toBe(false);
    expect(unsignWithIndex(sign(id, OLD), [SECRET])).toBeNull();
    expect(unsign(sign(id, SECRET), [])).toBe(false);
  });
});

describe('forgeries are refused', () => {
  const id = 'session-id-abcdefghijklmnopqrstuvwxyz0123456';
  const good = sign(id, SECRET);
  const mac = good.slice(id.length + 1);

  it('accepts the genuine value', () => {
    expect(unsign(good, [SECRET])).toBe(id);
  });

  it('refuses any single-character change, in the value or the MAC', () => {
    const alphabet = 'Aa0+/=-_.x';
    for (let i = 0; i < good.length; i++) {
      for (const c of alphabet) {
        if (good[i] === c) continue;
        const tampered = good.slice(0, i) + c + good.slice(i + 1);
        expect(unsign(tampered, [SECRET]), tampered).toBe(false);
      }
    }
  });

  it('refuses truncated, extended and empty values', () => {
    for (let n = 0; n < good.length; n++) expect(unsign(good.slice(0, n), [SECRET])).toBe(false);
    expect(unsign(`${good}=`, [SECRET])).toBe(false);
    expect(unsign(`${good}A`, [SECRET])).toBe(false);
    expect(unsign('', [SECRET])).toBe(false);
    expect(unsign('.', [SECRET])).toBe(false);
    expect(unsign(`.${mac}`, [SECRET])).toBe(false);
    expect(unsign(sign('', SECRET), [SECRET])).toBe(false);
    expect(unsign(id, [SECRET])).toBe(false);
  });

  it('refuses a value moved under another MAC, and MACs with unicode or NUL', () => {
    const other = sign('another-id', SECRET);
    expect(unsign(`${id}.${other.slice('another-id'.length + 1)}`, [SECRET])).toBe(false);
    expect(unsign(`${id}\u0000.${mac}`, [SECRET])).toBe(false);
    expect(unsign(`${id}.${mac}\u0000`, [SECRET])).toBe(false);
    expect(unsign(`${id}.${mac.slice(0, -1)}é`, [SECRET])).toBe(false);
    expect(unsign(`${id}.${'é'.repeat(22)}`, [SECRET])).toBe(false);
    expect(unsign(`☃${id.slice(1)}.${mac}`, [SECRET])).toBe(false);
  });

  it('round-trips ids holding unicode and NUL when they are genuinely signed', () => {
    for (const v of ['☃-snow', 'nul\u0000inside', 'dots.in.value'])
      expect(unsign(sign(v, SECRET), [SECRET])).toBe(v);
  });

  it('never throws, whatever the input', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 200 }),
        fc.array(secret, { maxLength: 3 }),
        (input, secrets) => {
          const result = unsign(input, secrets);
          expect(result === false || typeof result === 'string').toBe(true);
        },
      ),
    );
  });
});
