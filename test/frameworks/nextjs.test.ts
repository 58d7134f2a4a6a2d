/**
 * A real Next.js App Router app on pgsession/web (test/frameworks/nextjs-app, the code of
 * docs/nextjs.md), built with `next build` and run with `next start` as separate processes,
 * driven by Chromium: the login server action, the protected page rendered on the server, the
 * protected route handler, logout; sliding expiry, a logout seen by another server process, a
 * restart that keeps the session, and a tampered cookie that is anonymous.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import {
  buildNextApp,
  docFile,
  freePort,
  launchChromium,
  type NextServer,
  nextApp,
  startNext,
} from './support.js';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 300_000 });

const SECRET = 'nextjs-test-secret-0123456789abcdefghijklmnop';
const PASSWORD = 'correct horse battery staple';

let db: TestDatabase;
let browser: Browser;
const servers: NextServer[] = [];

async function start(port: number, extra: Record<string, string> = {}): Promise<NextServer> {
  const server = await startNext(port, {
    DATABASE_URL: db.url,
    SESSION_SECRET: SECRET,
    DEMO_PASSWORD: PASSWORD,
    ...extra,
  });
  servers.push(server);
  return server;
}

beforeAll(async () => {
  db = await createTestDatabase();
  await buildNextApp();
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  for (const s of servers) await s.stop();
  await db?.drop();
});

async function logIn(page: Page, base: string, password = PASSWORD): Promise<void> {
  await page.goto(`${base}/login`);
  await page.fill('input[name=email]', 'alice@example.com');
  await page.fill('input[name=password]', password);
  await page.getByRole('button', { name: 'Log in' }).click();
}

/** A new browser context logged in on `base` (through the login page's server action). */
async function loggedIn(base: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await logIn(page, base);
  await page.waitForURL(`${base}/dashboard`);
  return { context, page };
}

async function cookieOf(context: BrowserContext): Promise<string> {
  const cookie = (await context.cookies()).find((c) => c.name === 'connect.sid');
  if (!cookie) throw new Error('no connect.sid cookie');
  return `connect.sid=${cookie.value}`;
}

async function me(base: string, cookie?: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${base}/api/me`, { headers: cookie ? { cookie } : {} });
  return { status: res.status, body: await res.json() };
}

describe('Next.js App Router on pgsession/web', () => {
  it('is the code docs/nextjs.md shows', async () => {
    const files = [
      'lib/sessions.ts',
      'lib/users.ts',
      'app/actions.ts',
      'app/layout.tsx',
      'app/login/page.tsx',
      'app/dashboard/page.tsx',
      'app/api/me/route.ts',
    ];
    for (const file of files) {
      expect(`${await docFile('docs/nextjs.md', 'nextjs', file, 'file')}\n`, file).toBe(
        readFileSync(path.join(nextApp, file), 'utf8'),
      );
    }
  });

  let a: NextServer;
  let b: NextServer;
  let portA: number;

  beforeAll(async () => {
    portA = await freePort();
    a = await start(portA);
    b = await start(await freePort());
  });

  it('anonymous: the page redirects to /login, the route handler answers 401, no cookie is set', async () => {
    const page = await fetch(`${a.url}/dashboard`, { redirect: 'manual' });
    expect(page.status).toBe(307);
    expect(page.headers.get('location')).toMatch(/\/login$/);
    const api = await fetch(`${a.url}/api/me`);
    expect(api.status).toBe(401);
    expect(api.headers.get('set-cookie')).toBeNull();
  });

  it('a wrong password is refused by the server action, and no session is stored', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await logIn(page, a.url, 'wrong password');
    await expect.poll(() => page.textContent('[role=alert]')).toContain('Wrong email or password.');
    expect((await context.cookies()).find((c) => c.name === 'connect.sid')).toBeUndefined();
    await context.close();
  });

  it('logs in through the server action; the server-rendered page and the route handler see it; logout ends it on every server', async () => {
    const { context, page } = await loggedIn(a.url);
    expect(await page.textContent('#who')).toBe('Signed in as user 1');

    const [cookie] = (await context.cookies()).filter((c) => c.name === 'connect.sid');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' });
    const signed = decodeURIComponent(cookie!.value);
    const { rows } = await db.pool.query<{ sid: string }>('SELECT sid FROM session');
    expect(rows.map((r) => r.sid)).toEqual([hashId(signed.slice(2, signed.lastIndexOf('.')))]);

    const header = await cookieOf(context);
    expect(await me(a.url, header)).toEqual({ status: 200, body: { userId: 1 } });
    // Another server process on the same database: the same session.
    expect(await me(b.url, header)).toEqual({ status: 200, body: { userId: 1 } });

    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${a.url}/login`);
    expect((await context.cookies()).find((c) => c.name === 'connect.sid')).toBeUndefined();
    // The other process, which had the session cached, sees the logout.
    expect((await me(b.url, header)).status).toBe(401);
    expect((await me(a.url, header)).status).toBe(401);
    await context.close();
  });

  it('a restart of the server keeps the login (sessions live in PostgreSQL)', async () => {
    const { context, page } = await loggedIn(a.url);
    const header = await cookieOf(context);
    await a.stop();
    a = await start(portA);
    expect(await me(a.url, header)).toEqual({ status: 200, body: { userId: 1 } });
    await page.goto(`${a.url}/dashboard`);
    expect(await page.textContent('#who')).toBe('Signed in as user 1');
    await context.close();
  });

  it('a tampered cookie is anonymous on the page and on the route handler', async () => {
    const { context, page } = await loggedIn(a.url);
    const [cookie] = (await context.cookies()).filter((c) => c.name === 'connect.sid');
    const value = decodeURIComponent(cookie!.value);
    const forged = `${value.slice(0, -1)}${value.endsWith('A') ? 'B' : 'A'}`;
    await context.addCookies([{ ...cookie!, value: encodeURIComponent(forged) }]);
    expect((await me(a.url, `connect.sid=${encodeURIComponent(forged)}`)).status).toBe(401);
    await page.goto(`${a.url}/dashboard`);
    expect(new URL(page.url()).pathname).toBe('/login');
    await context.close();
  });
});

describe('sliding expiry (SESSION_IDLE_TIMEOUT=4s)', () => {
  it('stays logged in while active, and is logged out after the idle time', async () => {
    const server = await start(await freePort(), { SESSION_IDLE_TIMEOUT: '4s' });
    const { context, page } = await loggedIn(server.url);
    const header = await cookieOf(context);
    // Active for longer than the idle timeout: each request slides it.
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 1_500));
      if (i % 2 === 0) {
        await page.goto(`${server.url}/dashboard`);
        expect(await page.textContent('#who')).toBe('Signed in as user 1');
      } else {
        expect((await me(server.url, header)).status).toBe(200);
      }
    }
    // Then idle past it: gone, on the page and on the route handler.
    await new Promise((r) => setTimeout(r, 5_000));
    expect((await me(server.url, header)).status).toBe(401);
    await page.goto(`${server.url}/dashboard`);
    expect(new URL(page.url()).pathname).toBe('/login');
    await context.close();
  });
});
