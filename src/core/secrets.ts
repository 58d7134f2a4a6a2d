import { ConfigError } from './errors.js';

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

/**
 * Validate and normalise `secret` (a string or an array: the first signs, all verify). Refuses
 * empty and well-known example secrets everywhere, and short ones in production.
 */
export function normalizeSecrets(secret: unknown, production: boolean): string[] {
  const list = Array.isArray(secret) ? secret : [secret];
  if (list.length === 0 || list.some((s) => typeof s !== 'string' || s.length === 0)) {
    throw new ConfigError('secret option required for sessions: a non-empty string or array of strings');
  }
  for (const s of list as string[]) {
    if (EXAMPLE_SECRETS.has(s.trim().toLowerCase())) {
      throw new ConfigError(
        `refusing the example secret "${s}": anyone can forge cookies signed with it. Use a random value of ${MIN_PRODUCTION_SECRET_LENGTH}+ characters, e.g. node -e "console.log(require('crypto').randomBytes(32).toString('base64url'))"`,
      );
    }
    if (production && s.length < MIN_PRODUCTION_SECRET_LENGTH) {
      throw new ConfigError(
        `session secrets must be at least ${MIN_PRODUCTION_SECRET_LENGTH} characters in production (got one of ${s.length})`,
      );
    }
  }
  return list as string[];
}
