import type { SessionChange, SessionRecord } from '../../src/core/store.js';

/** One hour, the lifetime of the records below. */
export const HOUR = 3_600_000;

/** A live session record of `userId` (expiring in an hour), with `extra` in its data. */
export function sessionRecord(
  userId: string | null = 'u1',
  extra: Record<string, unknown> = {},
): SessionRecord {
  const now = Date.now();
  return {
    data: { cookie: { originalMaxAge: HOUR, httpOnly: true, path: '/' }, userId, ...extra },
    expiresAt: now + HOUR,
    createdAt: now,
    lastActiveAt: now,
    userId,
    version: 0,
  };
}

/** A change setting `set` on a session of `userId`, extending it by an hour. */
export function sessionChange(set: Record<string, unknown>, userId: string | null = 'u1'): SessionChange {
  return {
    set,
    unset: [],
    data: { cookie: { originalMaxAge: HOUR }, ...set },
    expiresAt: Date.now() + HOUR,
    lastActiveAt: Date.now(),
    userId,
    baseVersion: 0,
  };
}
