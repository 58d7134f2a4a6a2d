import { ConfigError } from './errors.js';
import type { Secret } from './signature.js';

/** Secrets copied from docs and tutorials; signing with one lets anyone forge cookies. */
const EXAMPLE_SECRETS = new Set(
  [
    'keyboard cat',
    'abc123',
    'secret',
    'changeme',
    'change-me',
    'change me',
    'mysecret',
    'my secret',
    'my-secret',
    'supersecret',
    'super secret',
    'your-secret-key',
    'your secret key',
    'session-secret',
    'session_secret',
    'sessionsecret',
    'secret-key',
    'secretkey',
    'replace-me',
    'replace-with-a-long-random-string',
    'pgsession-example-secret',
    'password',
    'test',
  ].map((s) => s.toLowerCase()),
);

/** Shortest secret accepted in production: 32 characters (a 256-bit key written as text). */
export const MIN_PRODUCTION_SECRET_LENGTH = 32;

/** The command that makes a real secret, quoted in every message about a weak one. */
export const GENERATE_SECRET_COMMAND = `node -e "console.log(require('crypto').randomBytes(32).toString('base64url'))"`;

/** What is wrong with one secret, or null. */
function weakness(secret: Secret): 'example' | 'short' | null {
  const text = typeof secret === 'string' ? secret : secret.toString('utf8');
  if (EXAMPLE_SECRETS.has(text.trim().toLowerCase())) return 'example';
  if (secret.length < MIN_PRODUCTION_SECRET_LENGTH) return 'short';
  return null;
}

/** Names a weak secret without revealing it: example secrets are public, others are only measured. */
function describe(secret: Secret, index: number, kind: 'example' | 'short'): string {
  if (kind === 'example') return `secret #${index + 1} is the example secret "${String(secret)}"`;
  const unit = typeof secret === 'string' ? 'characters' : 'bytes';
  return `secret #${index + 1} has ${secret.length} ${unit}`;
}

const ROTATE_HINT =
  'To switch without logging anyone out, put the new secret first and keep the old one after it (secret: [newSecret, oldSecret]): older secrets only verify cookies, which are then re-signed with the first.';

/**
 * Validate and normalise `secret` (a string, a Buffer, or an array of them: the first signs, all
 * verify), in express-session's terms: an empty array or an empty/odd entry is a ConfigError.
 *
 * Weak secrets (copied from examples, or shorter than {@link MIN_PRODUCTION_SECRET_LENGTH}):
 * - with `production`, the first (signing) secret must not be weak: anyone could forge cookies
 *   signed with it. Older, verify-only entries of a rotation list may be, so an app can move off
 *   a weak secret without logging anyone out (cookies they verify are re-signed with the first);
 * - outside production every secret is accepted.
 *
 * Either way, `warn` gets one message naming every weak secret (without printing non-example
 * ones) and the command that makes a real one.
 */
export function normalizeSecrets(
  secret: unknown,
  production: boolean,
  warn: (message: string) => void = () => {},
): Secret[] {
  if (Array.isArray(secret) && secret.length === 0) {
    throw new ConfigError('secret option array must contain one or more strings');
  }
  const list: unknown[] = Array.isArray(secret) ? secret : [secret];
  if (list.some((s) => !(typeof s === 'string' || Buffer.isBuffer(s)) || s.length === 0)) {
    throw new ConfigError(
      'secret option required for sessions: a non-empty string or Buffer, or an array of them (the first signs, all verify)',
    );
  }
  const secrets = list as Secret[];
  const signing = weakness(secrets[0]!);
  if (production && signing === 'example') {
    throw new ConfigError(
      `refusing the example secret "${String(secrets[0])}" in production: anyone can forge cookies signed with it. Generate a real one with: ${GENERATE_SECRET_COMMAND}. ${ROTATE_HINT}`,
    );
  }
  if (production && signing === 'short') {
    throw new ConfigError(
      `the signing secret must be at least ${MIN_PRODUCTION_SECRET_LENGTH} characters in production (${describe(secrets[0]!, 0, signing)}). Generate one with: ${GENERATE_SECRET_COMMAND}. ${ROTATE_HINT}`,
    );
  }
  const weak = secrets.flatMap((s, i) => {
    const kind = weakness(s);
    return kind ? [describe(s, i, kind)] : [];
  });
  if (weak.length > 0) {
    warn(
      production
        ? `pgsession: WEAK SESSION SECRET: ${weak.join('; ')}. Accepted in production only because older secrets just verify existing cookies, which are then re-signed with the first secret. Remove it from the list once the cookies it signed have expired.`
        : `pgsession: WEAK SESSION SECRET: ${weak.join('; ')}: with a weak secret others can forge session cookies. Accepted only because NODE_ENV is not "production" (there it is refused). Make a real secret with ${GENERATE_SECRET_COMMAND} and pass it as secret (e.g. from process.env.SESSION_SECRET).`,
    );
  }
  return secrets;
}
