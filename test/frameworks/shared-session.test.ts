/**
 * One browser, two apps on one host: the Express demo app (app/main.ts, pgsession's Express
 * middleware) and the Next.js app (pgsession/web), with the same cookie name, secret and
 * database. Logged in on one is logged in on the other; a logout on either ends it on both.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../cli/run-cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { type ChildServer, startServer } from '../helpers/process.js';
import { buildNextApp, freePort, launchChromium, type NextServer, root, startNext } from './support.js';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 300_000 });

const SECRET = 'shared-session-secret-0123456789abcdefghijklmn';
const EMAIL = 'alice@example.com';
const PASSWORD = 'correct horse battery staple';

let db: TestDatabase;
let browser: Browser;
let demo: ChildServer | undefined;
let next: NextServer | undefined;
let userId: number;

beforeAll(async () => {
  db = await createTestDatabase();
  const [, port] = await Promise.all([buildNextApp(), freePort()]);
  demo = await startServer(process.execPath, ['--import', 'tsx', 'app/main.ts'], {
    cwd: root,
    env: {
      ...process.env,
      LOG_LEVEL: 'warn',
      NODE_ENV: 'development',
      HOST: '127.0.0.1',
      PORT: '0',
      DATABASE_URL: db.url,
      SESSION_SECRET: SECRET,
    },
    name: 'the demo app',
    timeoutMs: 90_000,
  });
  const added = await runCli(['user', 'add', EMAIL], {
    input: `${PASSWORD}\n`,
    env: { DATABASE_URL: db.url },
  });
  expect(added.code, added.stderr).toBe(0);
  const { rows } = await db.pool.query<{ id: number }>('SELECT id FROM users WHERE email = $1', [EMAIL]);
  userId = Number(rows[0]!.id);
  // The demo's cookie name outside production, its secret, its database.
  next = await startNext(port, {
    DATABASE_URL: db.url,
    SESSION_SECRET: SECRET,
    SESSION_COOKIE_NAME: 'sessionId',
  });
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await next?.stop();
  await demo?.stop();
  await db?.drop();
});

async function demoLogIn(page: Page): Promise<void> {
  await page.goto(`${demo!.url}/login`);
  await page.fill('#email', EMAIL);
  await page.fill('#password', PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${demo!.url}/dashboard`);
}

async function nextSees(context: BrowserContext, page: Page): Promise<number | null> {
  const api = await context.request.get(`${next!.url}/api/me`);
  await page.goto(`${next!.url}/dashboard`);
  const onPage = new URL(page.url()).pathname === '/dashboard' ? await page.textContent('#who') : null;
  if (api.status() === 401) {
    expect(onPage).toBeNull();
    return null;
  }
  const { userId: seen } = (await api.json()) as { userId: number };
  expect(onPage).toBe(`Signed in as user ${seen}`);
  return seen;
}

describe('one browser, the Express demo and the Next.js app on one host', () => {
  it('a login on the Express app is a login on the Next.js app; logging out on Next.js ends it on Express', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await demoLogIn(page);
    expect(await nextSees(context, page)).toBe(userId);

    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${next!.url}/login`);
    expect((await context.cookies()).find((c) => c.name === 'sessionId')).toBeUndefined();
    await page.goto(`${demo!.url}/dashboard`);
    expect(new URL(page.url()).pathname).toBe('/login');
    await context.close();
  });

  it('logging out on the Express app ends it on the Next.js app', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await demoLogIn(page);
    const cookie = (await context.cookies()).find((c) => c.name === 'sessionId')!;
    expect(await nextSees(context, page)).toBe(userId);

    await page.goto(`${demo!.url}/dashboard`);
    await page.locator('header').getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(/\/\?message=/);
    expect(await nextSees(context, page)).toBeNull();
    // The old cookie, replayed, is refused by the Next.js app too (the session is gone).
    const replay = await fetch(`${next!.url}/api/me`, { headers: { cookie: `sessionId=${cookie.value}` } });
    expect(replay.status).toBe(401);
    await context.close();
  });
});
