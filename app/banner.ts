/**
 * What `npm start` prints for a person (the log lines around it are JSON for machines): where
 * the demo listens, and how to log in — the demo accounts' one-time passwords on the first
 * start, and on later starts which accounts exist and how to give one a new password.
 */
import type { SeededAccount } from './migrate.js';

const RULE = '─'.repeat(72);

export function startBanner(
  url: string,
  seeded: readonly SeededAccount[],
  existing: ReadonlyArray<{ email: string; role: 'user' | 'admin' }>,
): string {
  const lines = [RULE, `  pgsession demo listening on ${url}`, ''];
  if (seeded.length > 0) {
    lines.push('  Demo accounts, created now. Their passwords are shown this once');
    lines.push('  (only argon2id hashes are stored):');
    for (const a of seeded)
      lines.push(`    ${a.role.padEnd(5)}  ${a.email.padEnd(20)}  password: ${a.password}`);
  } else if (existing.length > 0) {
    lines.push('  Demo accounts (their passwords were shown on the first start):');
    for (const a of existing) lines.push(`    ${a.role.padEnd(5)}  ${a.email}`);
    lines.push('');
    lines.push('  Forgot one? Give it a new password (this logs that account out everywhere):');
    lines.push(`    npm run cli -- user passwd ${existing[0]!.email}`);
  } else {
    lines.push('  No demo accounts here. Create a user with:');
    lines.push('    npm run cli -- user add you@example.com');
  }
  lines.push(RULE, '');
  return `\n${lines.join('\n')}\n`;
}
