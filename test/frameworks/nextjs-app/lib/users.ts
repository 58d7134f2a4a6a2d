import { timingSafeEqual } from 'node:crypto';

// Stands in for your user table (pgsession/auth's login does this properly: argon2id hashes,
// rate limits). One user, alice@example.com, with the password in DEMO_PASSWORD.
export async function checkPassword(email: string, password: string): Promise<number | null> {
  const expected = Buffer.from(process.env.DEMO_PASSWORD ?? '');
  const given = Buffer.from(password);
  const ok = expected.length > 0 && given.length === expected.length && timingSafeEqual(given, expected);
  return ok && email === 'alice@example.com' ? 1 : null;
}
