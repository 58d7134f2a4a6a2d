/**
 * A protocol-level DBSC browser for the tests: a cookie jar (test/helpers/http.ts) that, like
 * Chrome, keeps the `Secure-Session-Registration` offer and the `Secure-Session-Challenge` it is
 * handed, makes a device key (ES256 or RS256, node:crypto), registers with a signed proof and
 * refreshes the bound cookie (the 403 challenge round, then the signed proof). Nothing here is
 * automatic: each test says when the browser registers or refreshes.
 */
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { Client } from '../helpers/http.js';

export type Alg = 'ES256' | 'RS256';

/** A device key pair and its public JWK. */
export interface DeviceKey {
  alg: Alg;
  privateKey: KeyObject;
  jwk: Record<string, unknown>;
}

export function deviceKey(alg: Alg = 'ES256'): DeviceKey {
  const { privateKey, publicKey } =
    alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { alg, privateKey, jwk: publicKey.export({ format: 'jwk' }) as Record<string, unknown> };
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A DBSC proof: a JWT signed with `key` (`header` and `payload` added to the defaults). */
export function proof(
  key: DeviceKey,
  payload: Record<string, unknown>,
  header: Record<string, unknown> = {},
): string {
  const input = `${b64({ alg: key.alg, typ: 'dbsc+jwt', ...header })}.${b64(payload)}`;
  const signature =
    key.alg === 'ES256'
      ? sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' })
      : sign('sha256', Buffer.from(input), key.privateKey);
  return `${input}.${signature.toString('base64url')}`;
}

/** The registration offer a response made. */
export interface Offer {
  algorithms: string[];
  path: string;
  challenge: string;
}

export function parseOffer(header: string | null): Offer | null {
  if (!header) return null;
  const m = /^\(([^)]*)\);path="([^"]+)";challenge="([^"]+)"$/.exec(header);
  if (!m) throw new Error(`unexpected Secure-Session-Registration: ${header}`);
  return { algorithms: m[1]!.split(' '), path: m[2]!, challenge: m[3]! };
}

export function parseChallenge(header: string | null): { challenge: string; id: string } | null {
  if (!header) return null;
  const m = /^"([^"]+)";id="([^"]+)"$/.exec(header);
  if (!m) throw new Error(`unexpected Secure-Session-Challenge: ${header}`);
  return { challenge: m[1]!, id: m[2]! };
}

/** What the registration answered (the session instructions). */
export interface Instructions {
  session_identifier: string;
  refresh_url: string;
  scope: { include_site: boolean };
  credentials: Array<{ type: string; name: string; attributes: string }>;
}

export class DbscBrowser extends Client {
  key: DeviceKey;
  offer: Offer | null = null;
  session: Instructions | null = null;
  /** The challenge cached for the session (from the last 403 or 200 of a refresh). */
  challenge: string | null = null;
  /** The last proof sent to the refresh endpoint (for replay tests). */
  lastProof: string | null = null;

  /** The server this browser talks to; change it to follow the user to another server of the site. */
  origin: string;

  constructor(origin: string, alg: Alg = 'ES256') {
    super('');
    this.origin = origin;
    this.key = deviceKey(alg);
  }

  override async request(
    path: string,
    init: RequestInit & { json?: unknown; form?: Record<string, string> } = {},
  ): Promise<Response> {
    const res = await super.request(this.origin + path, init);
    const offer = parseOffer(res.headers.get('secure-session-registration'));
    if (offer) this.offer = offer;
    const challenge = parseChallenge(res.headers.get('secure-session-challenge'));
    if (challenge && challenge.id === this.session?.session_identifier) this.challenge = challenge.challenge;
    return res;
  }

  /** POST the registration proof for the last offer (signed by this browser's key). */
  async register(options: { key?: DeviceKey; challenge?: string; jwk?: Record<string, unknown> } = {}) {
    const offer = this.offer;
    if (!offer) throw new Error('no registration offer');
    const key = options.key ?? this.key;
    const jwt = proof(
      key,
      { jti: options.challenge ?? offer.challenge },
      { jwk: options.jwk ?? this.key.jwk },
    );
    const res = await this.request(offer.path, {
      method: 'POST',
      headers: { 'secure-session-response': `"${jwt}"` },
    });
    if (res.status === 200) {
      this.session = (await res.clone().json()) as Instructions;
      this.offer = null;
    }
    return res;
  }

  /** One refresh request: with a proof of the cached challenge if there is one, else without. */
  async refreshOnce(options: { key?: DeviceKey; challenge?: string; jwt?: string } = {}) {
    const session = this.session;
    if (!session) throw new Error('not registered');
    const headers: Record<string, string> = { 'sec-secure-session-id': `"${session.session_identifier}"` };
    const challenge = options.challenge ?? this.challenge;
    const jwt = options.jwt ?? (challenge ? proof(options.key ?? this.key, { jti: challenge }) : undefined);
    if (jwt) {
      headers['secure-session-response'] = `"${jwt}"`;
      this.lastProof = jwt;
    }
    return this.request(session.refresh_url, { method: 'POST', headers });
  }

  /** Refresh as Chrome does: a 403 hands a challenge, signed and sent again (at most twice). */
  async refresh(options: { key?: DeviceKey } = {}): Promise<Response> {
    let res = await this.refreshOnce(options);
    for (let i = 0; i < 2 && res.status === 403; i++) res = await this.refreshOnce(options);
    return res;
  }
}
