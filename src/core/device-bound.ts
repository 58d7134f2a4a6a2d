/**
 * Device Bound Session Credentials (W3C DBSC, https://w3c.github.io/webappsec-dbsc/), server
 * side: the `deviceBound` option, resolved, and its two endpoints.
 *
 * After a login the response offers registration (`Secure-Session-Registration`, with a
 * challenge bound to the new session). A browser that supports DBSC makes a key pair on the
 * device and posts a proof (a JWT signed by it, carrying the public key) to the registration
 * endpoint; the key is stored with the session (`SessionStore.bindDevice`) and the browser gets
 * a short-lived bound cookie. When that cookie runs out, the browser posts to the refresh
 * endpoint: first without a proof (answered 403 with a fresh `Secure-Session-Challenge`), then
 * with the challenge signed by the stored key (answered 200 with a new bound cookie and the
 * next challenge). Per request, a session that registered a key is checked for a valid bound
 * cookie: one HMAC (device-tokens.ts), no store call. See docs/security.md.
 */
import { randomBytes } from 'node:crypto';
import { serialize } from 'cookie';
import { type CookieOptions, resolveAuto, validateCookieName } from './cookie.js';
import {
  DEVICE_ALGORITHMS,
  type DeviceAlgorithm,
  importKey,
  ProofError,
  parseProof,
  registrationKey,
  sfString,
  verifyProof,
} from './device-proof.js';
import { boundCookieValue, issueChallenge, readChallenge } from './device-tokens.js';
import { parseDuration } from './duration.js';
import type { SessionEvent } from './engine-options.js';
import { ConfigError } from './errors.js';
import type { Secret } from './signature.js';
import type { DeviceBinding, SessionRecord, SessionStore } from './store.js';

/** The `deviceBound` option. */
export interface DeviceBoundOptions {
  /**
   * What a request gets whose session registered a device key but that carries no valid bound
   * cookie: `'report'` (default) serves it and reports it (`onEvent` `device-unbound-request`);
   * `'require'` serves it as having no session (the refresh endpoint excepted); `'off'` runs the
   * protocol but checks nothing. Sessions that never registered (browsers without DBSC) are
   * never affected.
   */
  enforce?: 'off' | 'report' | 'require' | undefined;
  /** Name of the short-lived bound cookie. Default: the session cookie's name + `.bound`. */
  cookieName?: string | undefined;
  /** Lifetime of the bound cookie (ms or `'10m'`). Default 10 minutes. */
  maxAge?: number | string | undefined;
  /** How long a challenge may be used (ms or `'20m'`); more than `maxAge`. Default twice `maxAge`. */
  challengeMaxAge?: number | string | undefined;
  /** The registration endpoint's path. Default `/.pgsession/dbsc/register`. */
  registrationPath?: string | undefined;
  /** The refresh endpoint's path. Default `/.pgsession/dbsc/refresh`. */
  refreshPath?: string | undefined;
  /** The key algorithms offered, most preferred first. Default `['ES256', 'RS256']`. */
  algorithms?: readonly DeviceAlgorithm[] | undefined;
}

/** The option, checked. */
export interface ResolvedDeviceBound {
  readonly enforce: 'off' | 'report' | 'require';
  readonly cookieName: string;
  readonly maxAge: number;
  readonly challengeMaxAge: number;
  readonly registrationPath: string;
  readonly refreshPath: string;
  readonly algorithms: readonly DeviceAlgorithm[];
}

const DEFAULT_MAX_AGE = 10 * 60_000;

/** Check the `deviceBound` option (every problem a ConfigError, at start-up). */
export function resolveDeviceBound(
  input: unknown,
  context: { name: string; cookiePath: string; secretGiven: boolean },
): ResolvedDeviceBound | undefined {
  if (input === undefined || input === false) return undefined;
  if (input === true) input = {};
  if (!input || typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigError('deviceBound option must be an object (or true, or false)');
  }
  const o = input as DeviceBoundOptions;
  const known = new Set([
    'enforce',
    'cookieName',
    'maxAge',
    'challengeMaxAge',
    'registrationPath',
    'refreshPath',
    'algorithms',
  ]);
  for (const k of Object.keys(o)) {
    if (!known.has(k)) throw new ConfigError(`deviceBound.${k} is not an option (${[...known].join(', ')})`);
  }
  if (!context.secretGiven) {
    throw new ConfigError(
      'deviceBound needs the secret option (its cookies and challenges are signed with it)',
    );
  }
  const enforce = o.enforce ?? 'report';
  if (enforce !== 'off' && enforce !== 'report' && enforce !== 'require') {
    throw new ConfigError(`deviceBound.enforce must be "off", "report" or "require", got ${String(enforce)}`);
  }
  const cookieName = validateCookieName(o.cookieName ?? `${context.name}.bound`);
  if (cookieName === context.name) {
    throw new ConfigError('deviceBound.cookieName must differ from the session cookie name');
  }
  const duration = (value: unknown, what: string, fallback: number): number => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' && typeof value !== 'string') {
      throw new ConfigError(`${what} must be milliseconds or a duration string like '10m'`);
    }
    return parseDuration(value, what);
  };
  const maxAge = duration(o.maxAge, 'deviceBound.maxAge', DEFAULT_MAX_AGE);
  if (maxAge < 10_000) throw new ConfigError('deviceBound.maxAge must be at least 10 seconds');
  const challengeMaxAge = duration(o.challengeMaxAge, 'deviceBound.challengeMaxAge', maxAge * 2);
  if (challengeMaxAge <= maxAge) {
    throw new ConfigError(
      'deviceBound.challengeMaxAge must be longer than deviceBound.maxAge (a browser signs the challenge it was handed one cookie lifetime earlier)',
    );
  }
  const path = (value: unknown, what: string, fallback: string): string => {
    const p = value ?? fallback;
    if (typeof p !== 'string' || !p.startsWith('/') || /[\s"\\?#;,]/.test(p)) {
      throw new ConfigError(`${what} must be a path starting with "/" (no spaces, quotes, ? or #)`);
    }
    if (!p.startsWith(context.cookiePath)) {
      throw new ConfigError(
        `${what} (${p}) must lie under cookie.path (${context.cookiePath}): the browser sends the session cookie there`,
      );
    }
    return p;
  };
  const registrationPath = path(
    o.registrationPath,
    'deviceBound.registrationPath',
    '/.pgsession/dbsc/register',
  );
  const refreshPath = path(o.refreshPath, 'deviceBound.refreshPath', '/.pgsession/dbsc/refresh');
  if (registrationPath === refreshPath) {
    throw new ConfigError('deviceBound.registrationPath and refreshPath must differ');
  }
  const algorithms = o.algorithms ?? DEVICE_ALGORITHMS;
  if (
    !Array.isArray(algorithms) ||
    algorithms.length === 0 ||
    !algorithms.every((a) => (DEVICE_ALGORITHMS as readonly unknown[]).includes(a))
  ) {
    throw new ConfigError(
      `deviceBound.algorithms must be a non-empty list of ${DEVICE_ALGORITHMS.join(', ')}`,
    );
  }
  return {
    enforce,
    cookieName,
    maxAge,
    challengeMaxAge,
    registrationPath,
    refreshPath,
    algorithms: [...new Set(algorithms)] as DeviceAlgorithm[],
  };
}

/** The `Secure-Session-Registration` value offering registration to the session stored under `key`. */
export function registrationHeader(
  bound: ResolvedDeviceBound,
  key: string,
  now: number,
  secret: Secret,
): string {
  return `(${bound.algorithms.join(' ')});path="${bound.registrationPath}";challenge="${issueChallenge(key, now, secret)}"`;
}

/** What an adapter passes for a request to one of the endpoints. */
export interface DeviceEndpointRequest {
  method: string;
  cookieHeader: string | undefined;
  secure: boolean;
  /** A request header by its lower-case name. */
  header(name: 'secure-session-response' | 'sec-secure-session-id'): string | undefined;
}

/** The answer, for the adapter to send as is. */
export interface DeviceEndpointResponse {
  status: number;
  /** Lower-case names; `set-cookie` at most once. */
  headers: Record<string, string>;
  body: string;
}

/** The session a request to an endpoint names by its session cookie, read fresh and live. */
export interface FoundSession {
  key: string;
  record: SessionRecord;
  cookie: CookieOptions;
}

/** What the endpoints use of the engine. */
export interface DeviceEndpointServices {
  readonly bound: ResolvedDeviceBound;
  readonly store: SessionStore;
  readonly secrets: readonly Secret[];
  now(): number;
  find(request: DeviceEndpointRequest): Promise<FoundSession | null>;
  emit(event: SessionEvent): void;
}

type Refusal = Extract<SessionEvent, { type: 'device-proof-refused' }>['reason'];

function text(status: number, body: string, headers: Record<string, string> = {}): DeviceEndpointResponse {
  return {
    status,
    headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers },
    body,
  };
}

/** The bound cookie's Set-Cookie value, and its attributes as the session instructions name them. */
function boundCookie(
  services: DeviceEndpointServices,
  found: FoundSession,
  secure: boolean,
): { setCookie: string; attributes: string } {
  const { bound } = services;
  const options = resolveAuto(found.cookie, secure);
  const expiresAt = services.now() + bound.maxAge;
  const sameSite = options.sameSite === 'auto' ? undefined : options.sameSite;
  const setCookie = serialize(
    bound.cookieName,
    boundCookieValue(found.key, expiresAt, services.secrets[0]!),
    {
      path: options.path ?? '/',
      domain: options.domain,
      secure: options.secure === true,
      httpOnly: true,
      sameSite: sameSite === undefined ? 'lax' : sameSite,
      maxAge: Math.floor(bound.maxAge / 1000),
    },
  );
  const attributes = setCookie
    .split('; ')
    .slice(1)
    .filter((a) => !/^(max-age|expires)=/i.test(a))
    .join('; ');
  return { setCookie, attributes };
}

function instructions(bound: ResolvedDeviceBound, id: string, attributes: string): string {
  return JSON.stringify({
    session_identifier: id,
    refresh_url: bound.refreshPath,
    scope: { include_site: false },
    credentials: [{ type: 'cookie', name: bound.cookieName, attributes }],
  });
}

/**
 * `Secure-Session-Challenge` with a new challenge for the binding `id` of the session `key`,
 * issued after `after` (the last accepted challenge's time), so it is never taken for a used one
 * even within the same millisecond.
 */
function challengeHeader(services: DeviceEndpointServices, key: string, id: string, after: number): string {
  const at = Math.max(services.now(), after + 1);
  return `"${issueChallenge(key, at, services.secrets[0]!)}";id="${id}"`;
}

/** Refusals of one endpoint request: reported (`device-proof-refused`), answered in plain text. */
function refuser(
  services: DeviceEndpointServices,
  endpoint: 'registration' | 'refresh',
  found: FoundSession | null,
): (status: number, reason: Refusal, message: string) => DeviceEndpointResponse {
  return (status, reason, message) => {
    services.emit({
      type: 'device-proof-refused',
      endpoint,
      key: found?.key ?? null,
      userId: found?.record.userId ?? null,
      reason,
    });
    return text(status, message);
  };
}

/** POST to the registration endpoint: verify the proof, store the key, hand out the bound cookie. */
export async function register(
  services: DeviceEndpointServices,
  request: DeviceEndpointRequest,
): Promise<DeviceEndpointResponse> {
  if (request.method !== 'POST') return text(405, 'Method Not Allowed', { allow: 'POST' });
  const found = await services.find(request);
  const refuse = refuser(services, 'registration', found);
  if (!found) return refuse(401, 'no-session', 'No session to bind');
  if (found.record.device) return refuse(400, 'already-bound', 'This session is bound to a device already');
  const { bound, secrets } = services;
  let jwk: DeviceBinding['jwk'];
  let alg: DeviceBinding['alg'];
  let jti: unknown;
  try {
    const proof = parseProof(request.header('secure-session-response'), bound.algorithms);
    const imported = registrationKey(proof);
    if (!verifyProof(proof, imported.key))
      throw new ProofError('signature', 'the proof is not signed by its key');
    jwk = imported.jwk;
    alg = proof.alg;
    jti = proof.payload.jti;
  } catch (err) {
    if (!(err instanceof ProofError)) throw err;
    return refuse(400, err.problem, `Invalid registration proof: ${err.message}`);
  }
  const challenge = readChallenge(jti, found.key, secrets);
  if (!challenge)
    return refuse(400, 'challenge', 'The proof does not sign a challenge issued to this session');
  const now = services.now();
  if (now - challenge.issuedAt > bound.challengeMaxAge) {
    return refuse(400, 'challenge-expired', 'The registration challenge has expired');
  }
  const binding: DeviceBinding = {
    jwk,
    alg,
    id: randomBytes(16).toString('base64url'),
    boundAt: now,
    challengeAt: challenge.issuedAt,
  };
  if (!(await services.store.bindDevice!(found.key, binding))) {
    return refuse(400, 'challenge-used', 'The session is gone, or bound by another request meanwhile');
  }
  services.emit({ type: 'device-registered', key: found.key, userId: found.record.userId, alg });
  const { setCookie, attributes } = boundCookie(services, found, request.secure);
  return {
    status: 200,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', 'set-cookie': setCookie },
    body: instructions(bound, binding.id, attributes),
  };
}

/** POST to the refresh endpoint: a challenge round, or a proof by the stored key for a new bound cookie. */
export async function refresh(
  services: DeviceEndpointServices,
  request: DeviceEndpointRequest,
): Promise<DeviceEndpointResponse> {
  if (request.method !== 'POST') return text(405, 'Method Not Allowed', { allow: 'POST' });
  const found = await services.find(request);
  const device = found?.record.device ?? null;
  const refuse = refuser(services, 'refresh', found);
  // Any 4xx but 403 ends the browser's device-bound session: right for a session that is gone
  // (logged out, revoked, expired) or was never bound.
  if (!found) return refuse(401, 'no-session', 'No session');
  if (!device) return refuse(401, 'not-bound', 'This session is not bound to a device');
  const named = sfString(request.header('sec-secure-session-id'));
  if (named === undefined) return refuse(400, 'malformed', 'Sec-Secure-Session-Id is missing');
  if (named !== device.id) return refuse(401, 'session-id', 'Sec-Secure-Session-Id names another session');
  const { key } = found;
  const again = (reason: Refusal | null): DeviceEndpointResponse => {
    if (reason) refuse(403, reason, '');
    // 403: the browser signs this challenge and retries at once.
    return text(403, 'Sign the new challenge', {
      'secure-session-challenge': challengeHeader(services, key, device.id, device.challengeAt),
    });
  };
  const header = request.header('secure-session-response');
  if (header === undefined || header === '') return again(null);
  let jti: unknown;
  try {
    const proof = parseProof(header, [device.alg]);
    if (!verifyProof(proof, importKey(device.jwk))) {
      throw new ProofError('signature', 'the proof is not signed by the key this session is bound to');
    }
    jti = proof.payload.jti;
  } catch (err) {
    if (!(err instanceof ProofError)) throw err;
    return refuse(
      err.problem === 'malformed' ? 400 : 401,
      err.problem,
      `Invalid refresh proof: ${err.message}`,
    );
  }
  // Signed by the device: a challenge that is not (or no longer) good gets a new one.
  const challenge = readChallenge(jti, key, services.secrets);
  if (!challenge) return again('challenge');
  if (services.now() - challenge.issuedAt > services.bound.challengeMaxAge) return again('challenge-expired');
  if (challenge.issuedAt <= device.challengeAt) return again('challenge-used');
  if (!(await services.store.bindDevice!(key, { ...device, challengeAt: challenge.issuedAt }))) {
    return again('challenge-used');
  }
  services.emit({ type: 'device-refreshed', key, userId: found.record.userId });
  const { setCookie, attributes } = boundCookie(services, found, request.secure);
  return {
    status: 200,
    headers: {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      'set-cookie': setCookie,
      'secure-session-challenge': challengeHeader(services, key, device.id, challenge.issuedAt),
    },
    body: instructions(services.bound, device.id, attributes),
  };
}
