import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserRepository } from '../../src/auth/index.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client } from '../helpers/http.js';
import { type ChildApp, exitOf, spawnApp } from '../security/support.js';
import { migratedDatabase, PASSWORD, TEST_SECRET } from './harness.js';

/** The demo app as `npm start` runs it, quieter. */
const start = (env: Record<string, string | undefined>) => spawnApp({ LOG_LEVEL: 'warn', ...env });
const stop = (app: ChildApp) => app.stop();

let db: TestDatabase;
const live: ChildApp[] = [];

beforeAll(async () => {
  db = await migratedDatabase();
  await new UserRepository(db.pool).create({ email: 'restart@example.com', password: PASSWORD });
});
afterAll(async () => {
  for (const r of live) if (r.child.exitCode === null) r.child.kill('SIGKILL');
  await db?.drop();
});

describe('npm start (app/main.ts as a process)', () => {
  it('a login survives a restart: same cookie, still logged in; SIGTERM exits 0', async () => {
    const env = { DATABASE_URL: db.url, SESSION_SECRET: TEST_SECRET, NODE_ENV: 'development' };
    const first = await start(env);
    live.push(first);
    const client = new Client(first.url);
    const login = await client.post('/login', { form: { email: 'restart@example.com', password: PASSWORD } });
    expect(login.status).toBe(303);
    const cookie = client.jar.get('sessionId');
    expect(cookie).toBeDefined();
    expect((await client.get('/api/me')).status).toBe(200);
    expect(await stop(first)).toBe(0);

    const second = await start(env);
    live.push(second);
    const again = new Client(second.url);
    again.jar.set('sessionId', cookie!);
    const me = await again.get('/api/me');
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ email: 'restart@example.com', role: 'user' });
    expect(await stop(second)).toBe(0);
  });

  it('prints a clear block: the demo logins on a first start, and on later starts how to reset a password', async () => {
    const fresh = await migratedDatabase();
    try {
      const env = { DATABASE_URL: fresh.url, SESSION_SECRET: TEST_SECRET, NODE_ENV: 'development' };
      const first = await start(env);
      live.push(first);
      const out1 = first.output();
      expect(out1).toMatch(/Demo accounts, created now\. Their passwords are shown this once/);
      const logins = [...out1.matchAll(/^ {4}(user|admin) +(\S+@example\.com) +password: (\S+)$/gm)];
      expect(logins.map((m) => [m[1], m[2]])).toEqual([
        ['user', 'demo@example.com'],
        ['admin', 'admin@example.com'],
      ]);
      // The printed password works.
      const client = new Client(first.url);
      const login = await client.post('/login', {
        form: { email: 'demo@example.com', password: logins[0]![3]! },
      });
      expect(login.status).toBe(303);
      expect(await stop(first)).toBe(0);

      const second = await start(env);
      live.push(second);
      const out2 = second.output();
      expect(out2).not.toMatch(/password: /);
      expect(out2).toContain('Demo accounts (their passwords were shown on the first start):');
      expect(out2).toContain('npm run cli -- user passwd demo@example.com');
      expect(await stop(second)).toBe(0);
    } finally {
      await fresh.drop();
    }
  });

  it('refuses to start in production without SESSION_SECRET, or with a short signing one (exit 1, clear message)', async () => {
    const missing = await exitOf({ NODE_ENV: 'production', SESSION_SECRET: '', DATABASE_URL: db.url });
    expect(missing.code).toBe(1);
    expect(missing.output).toMatch(/SESSION_SECRET is required when NODE_ENV=production/);
    const short = await exitOf({
      NODE_ENV: 'production',
      SESSION_SECRET: `short,${'x'.repeat(40)}`,
      DATABASE_URL: db.url,
    });
    expect(short.code).toBe(1);
    expect(short.output).toMatch(/at least 32 characters in production \(secret #1 has 5 characters\)/);
    const badDuration = await exitOf({
      SESSION_IDLE_TIMEOUT: 'soon',
      SESSION_SECRET: TEST_SECRET,
      DATABASE_URL: db.url,
    });
    expect(badDuration.code).toBe(1);
    expect(badDuration.output).toMatch(/SESSION_IDLE_TIMEOUT must be a duration/);
  });
});
