/**
 * Issue 2's acceptance: the seed's Express code with only its imports changed runs on pgsession —
 * login, dashboard, a restart of the app (a new process, after a kill -9) with the same cookie
 * still logged in, and logout removing the row. It loads the built package (`require('pgsession')`
 * resolves to dist/ through package.json's exports), so it builds first when dist/ is missing.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { unsign } from '../../src/core/signature.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { Client } from '../helpers/http.js';
import { type ChildServer, startServer } from '../helpers/process.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const script = fileURLToPath(new URL('./seed-app.cjs', import.meta.url));
const SECRET = 'seed-test-secret-3f9a1c7e5b2d4a6c8e0f1a3b5c7d9e1f';

let db: TestDatabase;
let app: ChildServer | undefined;

function start(): Promise<ChildServer> {
  return startServer(process.execPath, [script], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: db.url, SESSION_SECRET: SECRET, PORT: '0', NODE_ENV: 'development' },
    name: 'seed app',
    timeoutMs: 30_000,
  });
}

/** kill -9: no shutdown code runs, as in a crash. */
async function kill(running: ChildServer): Promise<void> {
  await running.stop('SIGKILL');
}

beforeAll(async () => {
  if (!existsSync(`${root}dist/index.cjs`) || !existsSync(`${root}dist/connect-pg-simple.cjs`)) {
    execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'ignore' });
  }
  db = await createTestDatabase();
  // The seed's users table, with a bcrypt hash as the seed stores them.
  await db.pool.query(
    'CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE NOT NULL, password_hash text NOT NULL, role text NOT NULL)',
  );
  await db.pool.query('INSERT INTO users (email, password_hash, role) VALUES ($1, $2, $3)', [
    'ada@example.com',
    await bcrypt.hash('correct horse battery staple', 10),
    'user',
  ]);
}, 240_000);

afterAll(async () => {
  if (app) await kill(app).catch(() => {});
  await db?.drop();
});

describe("the seed's app with only its imports changed", () => {
  it('logs in, survives a kill -9 and restart with the same cookie, and logout removes the row', async () => {
    app = await start();
    const browser = new Client(app.url);

    const login = await browser.post('/login', {
      form: { email: 'ada@example.com', password: 'correct horse battery staple' },
    });
    expect(login.status).toBe(302);
    expect(login.headers.get('location')).toBe('/dashboard');
    const cookie = browser.jar.get('connect.sid');
    expect(cookie).toMatch(/^s%3A/);
    const id = unsign(decodeURIComponent(cookie!).slice(2), [SECRET]);
    expect(id).not.toBe(false);

    const dashboard = await browser.get('/dashboard');
    expect(dashboard.status).toBe(200);
    expect(await dashboard.text()).toBe('dashboard of user 1 (user)');

    // The row is in connect-pg-simple's table, under the hash of the id, never the id itself.
    const { rows } = await db.pool.query('SELECT sid, sess FROM session');
    expect(rows).toHaveLength(1);
    expect(rows[0].sid).toBe(hashId(id as string));
    expect(rows[0].sess).toMatchObject({ userId: 1, userRole: 'user', cookie: { httpOnly: true } });

    // A crash and a new process: the same cookie is still logged in.
    await kill(app);
    app = await start();
    const again = new Client(app.url);
    again.jar.set('connect.sid', cookie!);
    const afterRestart = await again.get('/dashboard');
    expect(afterRestart.status).toBe(200);
    expect(await afterRestart.text()).toBe('dashboard of user 1 (user)');

    const logout = await again.get('/logout');
    expect(logout.status).toBe(302);
    expect(logout.headers.get('location')).toBe('/?message=Logged%20out%20successfully');
    expect((await db.pool.query('SELECT count(*)::int AS n FROM session')).rows[0].n).toBe(0);

    // The old cookie, replayed, is refused like no cookie at all.
    const replay = new Client(app.url);
    replay.jar.set('connect.sid', cookie!);
    const refused = await replay.get('/dashboard');
    expect(refused.status).toBe(302);
    expect(refused.headers.get('location')).toBe('/login?error=login_required');
  }, 120_000);
});
