/**
 * Crash (issue 5, point 2): `kill -9` of the app process in the middle of a login storm. Every
 * login whose client received its redirect is still valid after a restart (the session is
 * committed before the response leaves), and no row in the session table is half-written.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratedDatabase } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client } from '../helpers/http.js';
import { type AppProcess, createUsers, killAll, PASSWORD, startAppProcess, waitUntil } from './support.js';

let db: TestDatabase;
const USERS = 10;
const LOGINS = 50;

beforeAll(async () => {
  db = await migratedDatabase();
  await createUsers(
    db.pool,
    Array.from({ length: USERS }, (_, i) => `storm${i}@example.com`),
  );
}, 60_000);

afterAll(async () => {
  await killAll();
  await db?.drop();
});

interface Attempt {
  client: Client;
  email: string;
  outcome: 'pending' | 'acknowledged' | 'refused' | 'failed';
  status?: number;
}

describe('kill -9 during a login storm', () => {
  it('every acknowledged login survives the crash; no row is half-written', async () => {
    const env = { DATABASE_URL: db.url };
    let app: AppProcess = await startAppProcess(env);
    const attempts: Attempt[] = Array.from({ length: LOGINS }, (_, i) => ({
      client: new Client(app.url),
      email: `storm${i % USERS}@example.com`,
      outcome: 'pending',
    }));
    const storm = attempts.map(async (a) => {
      try {
        const res = await a.client.post('/login', { form: { email: a.email, password: PASSWORD } });
        a.status = res.status;
        await res.arrayBuffer();
        a.outcome = res.status === 303 && a.client.jar.has('sessionId') ? 'acknowledged' : 'refused';
      } catch {
        a.outcome = 'failed'; // the connection died with the process
      }
    });
    const acked = () => attempts.filter((a) => a.outcome === 'acknowledged').length;
    // Kill once some logins are acknowledged and the rest are still in flight.
    expect(await waitUntil(() => acked() >= 10, 30_000, 5)).toBe(true);
    const inFlightAtKill = attempts.filter((a) => a.outcome === 'pending').length;
    app.child.kill('SIGKILL');
    const { signal } = await app.exited;
    expect(signal).toBe('SIGKILL');
    await Promise.all(storm);

    const acknowledged = attempts.filter((a) => a.outcome === 'acknowledged');
    const failed = attempts.filter((a) => a.outcome === 'failed');
    expect(attempts.filter((a) => a.outcome === 'refused')).toEqual([]);
    expect(inFlightAtKill).toBeGreaterThan(0);
    expect(acknowledged.length + failed.length).toBe(LOGINS);

    // No half-written row: every row is a complete login (saveUninitialized: false means there
    // are no other rows), its JSON intact, its columns consistent with it.
    const { rows } = await db.pool.query<{
      sid: string;
      sess: string;
      expire: Date | null;
      user_id: string | null;
      created_ms: number | null;
      active_ms: number | null;
    }>(
      `SELECT sid, sess::text AS sess, expire, user_id,
              extract(epoch from created_at) * 1000 AS created_ms,
              extract(epoch from last_active_at) * 1000 AS active_ms
         FROM session`,
    );
    expect(rows.length).toBeGreaterThanOrEqual(acknowledged.length);
    const userIds = new Map<string, number>();
    const { rows: users } = await db.pool.query<{ id: string; email: string }>('SELECT id, email FROM users');
    for (const u of users) userIds.set(u.email, Number(u.id));
    for (const row of rows) {
      const sess = JSON.parse(row.sess) as Record<string, unknown> & { cookie?: Record<string, unknown> };
      expect(sess.cookie, row.sid).toMatchObject({
        originalMaxAge: expect.any(Number),
        httpOnly: true,
        path: '/',
      });
      expect(row.expire, row.sid).toBeInstanceOf(Date);
      expect(row.expire!.getTime()).toBeGreaterThan(Date.now());
      expect(typeof sess.userId, row.sid).toBe('number');
      expect(row.user_id, row.sid).toBe(String(sess.userId));
      expect([...userIds.values()]).toContain(sess.userId);
      expect(sess.userRole).toBe('user');
      expect(typeof sess.csrfToken).toBe('string');
      expect((sess.csrfToken as string).length).toBeGreaterThanOrEqual(32);
      expect(sess._meta).toMatchObject({ ip: expect.any(String), loginAt: expect.any(Number) });
      expect(row.created_ms).not.toBeNull();
      expect(row.active_ms).not.toBeNull();
    }

    // Restart: every acknowledged login is still valid, for the right user.
    app = await startAppProcess(env);
    for (const a of acknowledged) {
      const again = new Client(app.url);
      again.jar.set('sessionId', a.client.jar.get('sessionId')!);
      const me = await again.get('/api/me');
      expect(me.status, a.email).toBe(200);
      expect(((await me.json()) as { email: string }).email).toBe(a.email);
    }
    // And the service works as before.
    const fresh = new Client(app.url);
    expect(
      (await fresh.post('/login', { form: { email: 'storm0@example.com', password: PASSWORD } })).status,
    ).toBe(303);
    expect((await app.stop()).code).toBe(0);
    console.log(
      `crash figures: ${JSON.stringify({ logins: LOGINS, acknowledged: acknowledged.length, inFlightAtKill, failed: failed.length, rows: rows.length })}`,
    );
  }, 120_000);
});
