/**
 * Keys handed out by a store's `all()` / `ids()` for sessions stored under a hash:
 * `<storage key>.<tag>`, the tag an HMAC under a key that never leaves this process. A storage
 * key read from the table (a leak, a backup) cannot be turned into one, so it can never be
 * presented as a session id; a key from this process works in its store's `get` / `set` /
 * `touch` / `destroy`, so list-then-revoke does what it says.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { PgSessionError } from '../core/errors.js';

/**
 * A key from `all()` / `ids()` that names no session (or was issued by another process).
 * `code` is `ENOENT`, the "not found" convention of express-session stores.
 */
export class UnknownSessionKeyError extends PgSessionError {
  constructor(message: string) {
    super('ENOENT', message, { status: 404 });
  }
}

const adminKeySecret = randomBytes(32);
const ADMIN_KEY_SHAPE = /^([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{22})$/;

function adminTag(storageKey: string): string {
  return createHmac('sha256', adminKeySecret).update(storageKey).digest('base64url').slice(0, 22);
}

/** The key `all()` / `ids()` hand out for a session stored under `storageKey`. */
export function issueAdminKey(storageKey: string): string {
  return `${storageKey}.${adminTag(storageKey)}`;
}

/**
 * What a `sid` handed to a store's express-session methods names: the storage key inside a key
 * this process listed; an {@link UnknownSessionKeyError} for a key of that shape from elsewhere
 * (never mistaken for a session id); undefined for anything else (a session id).
 */
export function readAdminKey(value: string): string | UnknownSessionKeyError | undefined {
  const match = ADMIN_KEY_SHAPE.exec(value);
  if (!match) return undefined;
  const [, key, tag] = match as unknown as [string, string, string];
  const expected = Buffer.from(adminTag(key));
  const given = Buffer.from(tag);
  // Constant-time: the tag is a MAC, and its comparison must not say how much of it matched.
  return given.length === expected.length && timingSafeEqual(given, expected)
    ? key
    : new UnknownSessionKeyError(
        'pgsession: unknown session key (keys from all() and ids() work in the process that listed them)',
      );
}

/** What `destroy` of a listed key says when the session is gone already. */
export function goneKeyError(): UnknownSessionKeyError {
  return new UnknownSessionKeyError('pgsession: no session with this key (already gone)');
}
