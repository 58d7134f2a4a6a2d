import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { importKey, ProofError, parseProof, registrationKey, sfString, verifyProof } from './device-proof.js';

const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ecJwk = ec.publicKey.export({ format: 'jwk' });
const rsaJwk = rsa.publicKey.export({ format: 'jwk' });
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

function jwt(alg: string, key: KeyObject, header: object, payload: object): string {
  const input = `${b64({ alg, typ: 'dbsc+jwt', ...header })}.${b64(payload)}`;
  const sig =
    alg === 'ES256'
      ? sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
      : sign('sha256', Buffer.from(input), key);
  return `${input}.${sig.toString('base64url')}`;
}

const problem = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ProofError) return err.problem;
    throw err;
  }
  return null;
};

describe('registration proofs', () => {
  it('ES256 and RS256: the key the proof carries (header jwk, or payload key) verifies it', () => {
    for (const [alg, pair, pub, where] of [
      ['ES256', ec, ecJwk, 'header'],
      ['RS256', rsa, rsaJwk, 'header'],
      ['ES256', ec, ecJwk, 'payload'],
    ] as const) {
      const token =
        where === 'header'
          ? jwt(alg, pair.privateKey, { jwk: pub }, { jti: 'c' })
          : jwt(alg, pair.privateKey, {}, { jti: 'c', key: pub });
      const proof = parseProof(`"${token}"`, ['ES256', 'RS256']);
      const { jwk, key } = registrationKey(proof);
      expect(verifyProof(proof, key)).toBe(true);
      expect(proof.payload.jti).toBe('c');
      expect(Object.keys(jwk).sort()).toEqual(alg === 'ES256' ? ['crv', 'kty', 'x', 'y'] : ['e', 'kty', 'n']);
      // The stored key verifies it again (refresh).
      expect(verifyProof(proof, importKey(jwk))).toBe(true);
    }
  });

  it('refuses other algorithms, mismatched keys, private keys, small RSA keys and tampering', () => {
    const token = jwt('ES256', ec.privateKey, { jwk: ecJwk }, { jti: 'c' });
    expect(problem(() => parseProof(token, ['RS256']))).toBe('algorithm');
    expect(problem(() => parseProof(jwt('ES256', ec.privateKey, { alg: 'none' }, {}), ['ES256']))).toBe(
      'algorithm',
    );
    const wrongType = parseProof(jwt('ES256', ec.privateKey, { jwk: rsaJwk }, {}), ['ES256']);
    expect(problem(() => registrationKey(wrongType))).toBe('key');
    const priv = parseProof(
      jwt('ES256', ec.privateKey, { jwk: ec.privateKey.export({ format: 'jwk' }) }, {}),
      ['ES256'],
    );
    expect(problem(() => registrationKey(priv))).toBe('key');
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const weak = parseProof(
      jwt('RS256', small.privateKey, { jwk: small.publicKey.export({ format: 'jwk' }) }, {}),
      ['RS256'],
    );
    expect(problem(() => registrationKey(weak))).toBe('key');
    // Signed by another key than the one carried.
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const forged = parseProof(jwt('ES256', other.privateKey, { jwk: ecJwk }, {}), ['ES256']);
    expect(verifyProof(forged, registrationKey(forged).key)).toBe(false);
    // A payload changed after signing.
    const [h, , s] = token.split('.');
    const tampered = parseProof(`${h}.${b64({ jti: 'other' })}.${s}`, ['ES256']);
    expect(verifyProof(tampered, registrationKey(tampered).key)).toBe(false);
    // An RSA key cannot verify an "ES256" proof, nor the reverse.
    expect(verifyProof(parseProof(token, ['ES256']), importKey(rsaJwk as never))).toBe(false);
    expect(problem(() => parseProof(jwt('ES256', ec.privateKey, { typ: 'JWT' }, {}), ['ES256']))).toBe(
      'malformed',
    );
  });

  it('never throws anything but a ProofError on arbitrary headers', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (v) => {
        const p = problem(() => registrationKey(parseProof(v, ['ES256', 'RS256'])));
        expect(['malformed', 'algorithm', 'key', null]).toContain(p);
      }),
    );
  });
});

describe('sfString', () => {
  it('reads a quoted string, a bare token, and ignores parameters', () => {
    expect(sfString('"abc"')).toBe('abc');
    expect(sfString('"abc";x=1')).toBe('abc');
    expect(sfString('abc')).toBe('abc');
    expect(sfString('abc;x=1')).toBe('abc');
    expect(sfString(undefined)).toBeUndefined();
    expect(sfString('"unterminated')).toBeUndefined();
  });
});
