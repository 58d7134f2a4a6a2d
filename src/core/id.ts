import { createHash, randomBytes } from 'node:crypto';

/** Bytes of randomness in a session id: 256 bits, twice ASVS's 128-bit floor. */
export const ID_BYTES = 32;

/** A new session id: 32 bytes from the CSPRNG, base64url (43 characters, cookie-safe). */
export function generateId(): string {
  return randomBytes(ID_BYTES).toString('base64url');
}

/**
 * The key a session is stored under: SHA-256 of the id, base64url. A plain hash suffices (no
 * salt, no KDF) because ids are 256-bit random values: there is nothing to brute-force, and the
 * hash only has to stop a leaked table or backup from being replayed as cookies.
 */
export function hashId(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}
