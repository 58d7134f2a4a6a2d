/**
 * DBSC on several servers sharing one database, each with its own session cache: a key bound
 * on one server is enforced by the others at once (the binding is announced like any other
 * change), a bound cookie made by one is good on all, a refresh can land on any of them, and a
 * challenge accepted by one is refused by the others.
 */
import { expect, it } from 'vitest';
import { kSessionStore } from '../../src/core/store.js';
import { createPool } from '../../src/db/pool.js';
import { CachedPostgresSessionStore } from '../../src/stores/cache/postgres.js';
import { DbscBrowser } from './dbsc-client.js';
import { type Clock, dbscApp, dbscSuite, eventsOf, MINUTE } from './support.js';

const suite = dbscSuite();
const { closers } = suite;

/** `check` until it holds (another server hears of a change within milliseconds), at most 3 s. */
async function eventually(check: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return check();
}

it('bound on one server, enforced, refreshed and replay-checked on another', async () => {
  const clock: Clock = { now: Date.now() };
  const poolB = createPool(suite.db.url);
  closers.push(() => poolB.end());
  const a = await dbscApp(suite.db.pool, clock, { enforce: 'require' }, closers);
  const b = await dbscApp(poolB, clock, { enforce: 'require' }, closers);
  expect(a.store[kSessionStore]).toBeInstanceOf(CachedPostgresSessionStore);
  expect(b.store[kSessionStore]).toBeInstanceOf(CachedPostgresSessionStore);

  const browser = new DbscBrowser(a.url);
  await browser.post('/login');
  // B serves (and caches) the session while it is still unbound.
  browser.origin = b.url;
  expect(await (await browser.get('/me')).json()).toEqual({ userId: 42 });

  // Registered on A.
  browser.origin = a.url;
  expect((await browser.register()).status).toBe(200);
  const { key } = eventsOf(a.events, 'device-registered')[0]!;

  // B knows at once: the session cookie alone no longer gets the session there.
  const thief = new DbscBrowser(b.url);
  thief.jar.set('connect.sid', browser.jar.get('connect.sid')!);
  expect(
    await eventually(
      async () => ((await (await thief.get('/me')).json()) as { userId: unknown }).userId === null,
    ),
  ).toBe(true);
  expect(eventsOf(b.events, 'device-unbound-request').at(-1)).toMatchObject({ key, action: 'refused' });
  // The bound cookie A made is good on B.
  browser.origin = b.url;
  expect(await (await browser.get('/me')).json()).toEqual({ userId: 42 });

  // It expires; the refresh lands on B; the new cookie is good on A.
  clock.now += 11 * MINUTE;
  expect(await (await browser.get('/me')).json()).toEqual({ userId: null });
  expect((await browser.refresh()).status).toBe(200);
  expect(eventsOf(b.events, 'device-refreshed')).toHaveLength(1);
  browser.origin = a.url;
  expect(await (await browser.get('/me')).json()).toEqual({ userId: 42 });

  // The proof B accepted, replayed to A, gets a new challenge and no cookie.
  const replay = await browser.refreshOnce({ jwt: browser.lastProof! });
  expect(replay.status).toBe(403);
  expect(replay.headers.getSetCookie()).toEqual([]);
  expect(eventsOf(a.events, 'device-proof-refused').at(-1)).toMatchObject({ reason: 'challenge-used', key });

  // Logout on A ends it on B too.
  expect((await browser.post('/logout')).status).toBe(200);
  browser.origin = b.url;
  clock.now += 11 * MINUTE;
  expect((await browser.refresh()).status).toBe(401);
});
