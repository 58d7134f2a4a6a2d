import { createPublicKey, type KeyObject, verify } from 'node:crypto';

/**
 * The DBSC proof: the JWT a browser sends in `Secure-Session-Response`, signed with the
 * device's key (W3C DBSC, "DBSC Proof JWT Syntax"). Parsed and verified with node:crypto only:
 * the JWK is imported with `createPublicKey({ format: 'jwk' })`, ES256 is checked as raw r||s
 * (`dsaEncoding: 'ieee-p1363'`, the JWS form) and RS256 as RSASSA-PKCS1-v1_5 with SHA-256.
 *
 * The algorithm is pinned: it must be one the server offered and, on refresh, the one the key
 * was registered with, so neither `none` nor an RSA/EC confusion gets through.
 */

/** The signature algorithms a device key may use. */
export type DeviceAlgorithm = 'ES256' | 'RS256';
export const DEVICE_ALGORITHMS: readonly DeviceAlgorithm[] = ['ES256', 'RS256'];

/** A device's public key as stored: only the public members of its JWK. */
export type PublicJwk =
  | { kty: 'EC'; crv: 'P-256'; x: string; y: string }
  | { kty: 'RSA'; n: string; e: string };

/** Why a proof was refused. */
export type ProofProblem = 'malformed' | 'algorithm' | 'key' | 'signature';

export class ProofError extends Error {
  constructor(
    readonly problem: ProofProblem,
    message: string,
  ) {
    super(message);
    this.name = 'ProofError';
  }
}

/** A JWT split and decoded, not yet verified. */
export interface ParsedProof {
  readonly alg: DeviceAlgorithm;
  readonly header: Readonly<Record<string, unknown>>;
  readonly payload: Readonly<Record<string, unknown>>;
  readonly signingInput: string;
  readonly signature: Buffer;
}

/** Longer headers are not a proof (a 4096-bit RSA key's JWT is well under 2 KiB). */
const MAX_PROOF = 8192;
const B64URL = /^[A-Za-z0-9_-]+$/;

function decodeObject(part: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    throw new ProofError('malformed', `the proof's ${what} is not JSON`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new ProofError('malformed', `the proof's ${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/**
 * The `Secure-Session-Response` header's JWT (an sf-string: quoted, or bare as some browsers
 * sent it), split and decoded. `allowed`: the algorithms acceptable here.
 */
export function parseProof(
  headerValue: string | undefined,
  allowed: readonly DeviceAlgorithm[],
): ParsedProof {
  if (headerValue === undefined || headerValue === '') throw new ProofError('malformed', 'no proof was sent');
  let token = headerValue.trim();
  if (token.length > MAX_PROOF) throw new ProofError('malformed', 'the proof is too long');
  if (token.length >= 2 && token.startsWith('"') && token.endsWith('"')) token = token.slice(1, -1);
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => B64URL.test(p))) {
    throw new ProofError('malformed', 'the proof is not a signed JWT (three base64url parts)');
  }
  const [h, p, s] = parts as [string, string, string];
  const header = decodeObject(h, 'header');
  const payload = decodeObject(p, 'payload');
  if (header.typ !== undefined && header.typ !== 'dbsc+jwt') {
    throw new ProofError('malformed', 'the proof is not of type dbsc+jwt');
  }
  const alg = header.alg;
  if (typeof alg !== 'string' || !(allowed as readonly string[]).includes(alg)) {
    throw new ProofError('algorithm', `the proof's algorithm ${JSON.stringify(alg)} is not accepted here`);
  }
  return {
    alg: alg as DeviceAlgorithm,
    header,
    payload,
    signingInput: `${h}.${p}`,
    signature: Buffer.from(s, 'base64url'),
  };
}

/**
 * The device key a registration proof carries: in the JWT header's `jwk` (the spec), or in the
 * payload's `key` (Chrome's earlier form). Only the public members are kept; a key that does
 * not suit `alg` (curve, type, an RSA modulus under 2048 bits) or does not import is refused.
 */
export function registrationKey(proof: ParsedProof): { jwk: PublicJwk; key: KeyObject } {
  const raw = proof.header.jwk ?? proof.payload.key;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ProofError('key', 'the registration proof carries no public key (jwk)');
  }
  const j = raw as Record<string, unknown>;
  if ('d' in j) throw new ProofError('key', 'the registration proof carries a private key');
  const str = (name: string): string => {
    const v = j[name];
    if (typeof v !== 'string' || v.length === 0 || v.length > 1024 || !B64URL.test(v)) {
      throw new ProofError('key', `the key's "${name}" is not a base64url string`);
    }
    return v;
  };
  let jwk: PublicJwk;
  if (proof.alg === 'ES256') {
    if (j.kty !== 'EC' || j.crv !== 'P-256')
      throw new ProofError('key', 'an ES256 key must be an EC P-256 key');
    jwk = { kty: 'EC', crv: 'P-256', x: str('x'), y: str('y') };
  } else {
    if (j.kty !== 'RSA') throw new ProofError('key', 'an RS256 key must be an RSA key');
    jwk = { kty: 'RSA', n: str('n'), e: str('e') };
  }
  const key = importKey(jwk);
  if (proof.alg === 'RS256' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
    throw new ProofError('key', 'an RS256 key must have at least 2048 bits');
  }
  return { jwk, key };
}

/** A stored public JWK as a key object. */
export function importKey(jwk: PublicJwk): KeyObject {
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch {
    throw new ProofError('key', 'the public key does not import (not a valid key)');
  }
}

/** Whether `proof` is signed by `key` (an ES256 signature must be the 64-byte JWS form). */
export function verifyProof(proof: ParsedProof, key: KeyObject): boolean {
  const data = Buffer.from(proof.signingInput);
  try {
    if (proof.alg === 'ES256') {
      if (key.asymmetricKeyType !== 'ec' || proof.signature.length !== 64) return false;
      return verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, proof.signature);
    }
    if (key.asymmetricKeyType !== 'rsa') return false;
    return verify('sha256', data, key, proof.signature);
  } catch {
    return false;
  }
}

/** An sf-string header value (`"…"`), or a bare token as sent by older browsers; undefined if neither. */
export function sfString(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v.length >= 2 && v.startsWith('"')) {
    const end = v.indexOf('"', 1);
    return end > 0 ? v.slice(1, end) : undefined;
  }
  const semi = v.indexOf(';');
  return (semi === -1 ? v : v.slice(0, semi)) || undefined;
}
