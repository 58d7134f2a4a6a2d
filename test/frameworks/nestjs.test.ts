/**
 * A NestJS app on @nestjs/platform-express with pgsession's Express middleware as the drop-in
 * for express-session (test/frameworks/nestjs-app/app.ts, the code of docs/nestjs.md), run as
 * separate processes: login, a guard on the protected route, sliding expiry, logout seen by
 * another process, a restart that keeps the session, and a tampered cookie that is anonymous.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { type ChildServer, startServer } from '../helpers/process.js';
import { docFile, ensureDist, root } from './support.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 300_000 });

const SECRET = 'nestjs-test-secret-0123456789abcdefghijklmnop';
const appDir = path.join(root, 'test/frameworks/nestjs-app');
let db: TestDatabase;
const servers: ChildServer[] = [];

function start(extra: Record<string, string> = {}): Promise<ChildServer> {
  return startServer(process.execPath, ['--import', 'tsx', 'app.ts'], {
    cwd: appDir,
    env: {
      ...process.env,
      NODE_ENV: 'production',
      PORT: '0',
      DATABASE_URL: db.url,
      SESSION_SECRET: SECRET,
      ...extra,
    },
    name: 'the NestJS app',
    timeoutMs: 60_000,
  }).then((s) => {
    servers.push(s);
    return s;
  });
}

async function call(base: string, method: string, route: string, cookie?: string, body?: unknown) {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: { ...(cookie ? { cookie } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, setCookie: res.headers.get('set-cookie'), body: await res.json() };
}

const ALICE = { email: 'alice@example.com', password: 'correct horse battery staple' };

async function logIn(base: string): Promise<string> {
  const res = await call(base, 'POST', '/login', undefined, ALICE);
  expect(res.status).toBe(200);
  expect(res.setCookie).toMatch(/^connect\.sid=s%3A[^;]+; Path=\/; Expires=[^;]+; HttpOnly; SameSite=Lax$/);
  return res.setCookie!.split(';')[0]!;
}

beforeAll(async () => {
  db = await createTestDatabase();
  await ensureDist();
});

afterAll(async () => {
  for (const s of servers) await s.stop();
  await db?.drop();
});

describe('NestJS (platform-express) with the pgsession drop-in', () => {
  it('is the code docs/nestjs.md shows', async () => {
    for (const file of ['app.ts', 'tsconfig.json']) {
      expect(`${await docFile('docs/nestjs.md', 'nestjs', file)}\n`, file).toBe(
        readFileSync(path.join(appDir, file), 'utf8'),
      );
    }
  });

  it('logs in; the guard answers 401 without a session, a wrong password or a tampered cookie', async () => {
    const a = await start();
    expect((await call(a.url, 'GET', '/me')).status).toBe(401);
    const wrong = await call(a.url, 'POST', '/login', undefined, { ...ALICE, password: 'nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.setCookie).toBeNull();

    const cookie = await logIn(a.url);
    expect((await call(a.url, 'GET', '/me', cookie)).body).toEqual({ userId: 1 });
    const signed = decodeURIComponent(cookie.slice('connect.sid='.length));
    const { rows } = await db.pool.query<{ sid: string }>('SELECT sid FROM session');
    expect(rows.map((r) => r.sid)).toContain(hashId(signed.slice(2, signed.lastIndexOf('.'))));

    const forged = `${cookie.slice(0, -1)}${cookie.endsWith('A') ? 'B' : 'A'}`;
    const tampered = await call(a.url, 'GET', '/me', forged);
    expect(tampered.status).toBe(401);
    expect(tampered.body).toMatchObject({ message: 'login required' });
  });

  it('a logout on one process is seen by another; a restart keeps the session', async () => {
    const a = await start();
    const b = await start();
    const cookie = await logIn(a.url);
    expect((await call(b.url, 'GET', '/me', cookie)).body).toEqual({ userId: 1 }); // b caches it now

    // Restart a: the session is in PostgreSQL.
    expect(await a.stop()).toBe(0); // a graceful shutdown on SIGTERM
    const a2 = await start();
    expect((await call(a2.url, 'GET', '/me', cookie)).body).toEqual({ userId: 1 });

    const out = await call(a2.url, 'POST', '/logout', cookie);
    expect(out.body).toEqual({ loggedIn: false });
    expect((await call(b.url, 'GET', '/me', cookie)).status).toBe(401);
    expect((await call(a2.url, 'GET', '/me', cookie)).status).toBe(401);
  });

  it('sliding expiry: active past the idle timeout stays in, idle past it is out', async () => {
    const a = await start({ SESSION_IDLE_TIMEOUT: '3s' });
    const cookie = await logIn(a.url);
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 1_200));
      expect((await call(a.url, 'GET', '/me', cookie)).status).toBe(200);
    }
    await new Promise((r) => setTimeout(r, 4_000));
    expect((await call(a.url, 'GET', '/me', cookie)).status).toBe(401);
  });
});
