/**
 * End to end in a real browser: Debian's Chromium driven by playwright-core, against the demo
 * app running as a separate process (`app/main.ts` with tsx's loader, what `npm start` runs) on a fresh
 * database. Log in through the form; the session cookie is invisible to scripts; a restart of
 * the app process keeps the login; a second browser revokes the first one's session from the
 * sessions page; logging out clears the cookie; once the password is no longer recent, revoking
 * needs it confirmed in the page's form first (REAUTH_WINDOW).
 *
 * Chromium is required: when /usr/bin/chromium is missing this file FAILS (it never skips, and
 * never downloads a browser). `.ci/run` installs Debian's `chromium` package.
 *
 * Screenshots of the dashboard and the sessions page (1200×800, and the sessions page on a
 * 360 px phone) go to docs/screenshots/ when
 * they are missing or with UPDATE_SCREENSHOTS=1; otherwise to a temporary folder, so a test run
 * does not rewrite committed images (their timestamps change on every run).
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { runCli } from '../cli/run-cli.js';
import { launchChromium } from '../helpers/browser.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { type ChildServer, freePort, startServer } from '../helpers/process.js';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const root = fileURLToPath(new URL('../../', import.meta.url));
const SECRET = 'e2e-secret-0123456789abcdefghijklmnopqrstuvwxyz';
const EMAIL = 'alice@example.com';
const ADMIN_EMAIL = 'root-admin@example.com';
const PASSWORD = 'correct horse battery staple';
const FIREFOX_MAC = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:128.0) Gecko/20100101 Firefox/128.0';

const screenshotDir =
  process.env.UPDATE_SCREENSHOTS ||
  !existsSync(path.join(root, 'docs/screenshots/dashboard.png')) ||
  !existsSync(path.join(root, 'docs/screenshots/sessions.png')) ||
  !existsSync(path.join(root, 'docs/screenshots/sessions-phone.png'))
    ? path.join(root, 'docs/screenshots')
    : path.join(tmpdir(), 'pgsession-e2e-screenshots');

type AppProcess = ChildServer;

/** Start the demo app as a child process (its own process group: see killApps); resolves once it listens. */
function startApp(env: Record<string, string>): Promise<AppProcess> {
  // node with tsx's loader, not the tsx wrapper: the wrapper exits 143 when the app is slow to
  // acknowledge a relayed SIGTERM (a loaded machine), and the app's shutdown would go unchecked.
  return startServer(process.execPath, ['--import', 'tsx', 'app/main.ts'], {
    cwd: root,
    env: { ...process.env, LOG_LEVEL: 'warn', NODE_ENV: 'development', ...env },
    name: 'the app',
    timeoutMs: 90_000,
    detached: true,
    onSpawn: (child) => started.push(child),
  });
}

/** SIGTERM to the app (graceful shutdown); the exit status. */
const stopApp = (app: AppProcess): Promise<number | null> => app.stop();

/** Every app process group started, for the clean-up. */
const started: ChildProcess[] = [];

/** Whatever is left of the app processes, killed (group by group). */
function killApps(): void {
  for (const child of started) {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** The storage key of a context's session (what the sessions page shows and revokes). */
async function sessionKey(context: BrowserContext): Promise<string> {
  const cookie = (await context.cookies()).find((c) => c.name === 'sessionId');
  if (!cookie) throw new Error('no sessionId cookie in this browser context');
  const signed = decodeURIComponent(cookie.value); // s:<id>.<signature>
  return hashId(signed.slice(2, signed.lastIndexOf('.')));
}

/**
 * Submit a form by clicking, expect the POST to answer 303, then wait for the page it leads to.
 * A refusal fails with the status, the request's Origin/Sec-Fetch-Site and the page's message.
 */
async function submit(page: Page, click: () => Promise<void>, expectedUrl: string): Promise<void> {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    click(),
  ]);
  if (response.status() !== 303) {
    const headers = await response.request().allHeaders();
    const text = (await response.text().catch(() => ''))
      .replace(/<style>[\s\S]*?<\/style>|<[^>]+>/g, ' ')
      .replace(/\s+/g, ' ')
      .trim();
    throw new Error(
      `POST ${new URL(response.url()).pathname} answered ${response.status()} instead of 303 ` +
        `(request Origin: ${headers.origin ?? '(none)'}, Sec-Fetch-Site: ${headers['sec-fetch-site'] ?? '(none)'}; ` +
        `response Referrer-Policy: ${(await response.allHeaders())['referrer-policy'] ?? '(none)'}): ${text.slice(0, 300)}`,
    );
  }
  await page.waitForURL(expectedUrl);
}

async function logIn(page: Page, base: string, email = EMAIL): Promise<void> {
  await page.goto(`${base}/login`);
  await page.fill('#email', email);
  await page.fill('#password', PASSWORD);
  await submit(page, () => page.getByRole('button', { name: 'Log in' }).click(), `${base}/dashboard`);
}

describe('the demo app in Chromium', () => {
  let db: TestDatabase;
  let port: number;
  let base: string;
  let env: Record<string, string>;
  let app: AppProcess | undefined;
  let browser: Browser;
  let first: BrowserContext;
  let second: BrowserContext;
  let page1: Page;
  let page2: Page;

  // Only the database here: everything else is a step, so that a failure (no Chromium, an app
  // that does not start) is reported as a failed test, never as skipped ones.
  beforeAll(async () => {
    db = await createTestDatabase();
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    env = { PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: db.url, SESSION_SECRET: SECRET };
    mkdirSync(screenshotDir, { recursive: true });
  });

  // The steps build on each other: after a failure, the next ones fail at once (not after
  // timeouts), naming the step that broke.
  let brokenStep: string | undefined;
  afterEach(({ task }) => {
    if (task.result?.state === 'fail') brokenStep ??= task.name;
  });
  beforeEach(() => {
    if (brokenStep) throw new Error(`not run: the earlier step "${brokenStep}" failed`);
  });

  afterAll(async () => {
    await browser?.close();
    killApps();
    await db?.drop();
  });

  it("launches Debian's Chromium (/usr/bin/chromium; never a downloaded browser)", async () => {
    browser = await launchChromium();
    expect(browser.version()).toMatch(/^\d+\./);
  });

  it('starts the demo app as a process on a fresh database; the CLI creates the user', async () => {
    app = await startApp(env); // migrates the fresh database
    const added = await runCli(['user', 'add', EMAIL], {
      input: `${PASSWORD}\n`,
      env: { DATABASE_URL: db.url },
    });
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    // A few servers, so the dashboard has something to show.
    await db.pool.query(
      `INSERT INTO servers (user_id, name)
       SELECT u.id, s FROM users u, unnest(ARRAY['web-1 (nginx)', 'db-1 (PostgreSQL 16)', 'cache-1 (Redis)']) s
        WHERE u.email = $1`,
      [EMAIL],
    );
  });

  it('logs in through the form; the session cookie is HttpOnly; the dashboard shows the email', async () => {
    first = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    page1 = await first.newPage();
    await logIn(page1, base);

    expect(await page1.evaluate('document.cookie')).not.toContain('sessionId');
    const cookie = (await first.cookies()).find((c) => c.name === 'sessionId');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/', secure: false });
    expect(cookie!.expires).toBeGreaterThan(Date.now() / 1000 + 6 * 86_400); // idle timeout 7d

    await expect.poll(() => page1.textContent('main')).toContain(EMAIL);
    expect(await page1.textContent('h1')).toBe('Dashboard');
    expect(await page1.locator('tbody tr').count()).toBe(3);
    await page1.screenshot({ path: path.join(screenshotDir, 'dashboard.png') });
  });

  it('stays logged in across a restart of the app process', async () => {
    const keyBefore = await sessionKey(first);
    expect(await stopApp(app!)).toBe(0);
    app = await startApp(env);
    await page1.reload();
    expect(new URL(page1.url()).pathname).toBe('/dashboard');
    expect(await page1.textContent('main')).toContain(EMAIL);
    expect(await sessionKey(first)).toBe(keyBefore); // same session, not a new login
  });

  it("a second browser revokes the first one's session from the sessions page", async () => {
    second = await browser.newContext({ viewport: { width: 1200, height: 800 }, userAgent: FIREFOX_MAC });
    page2 = await second.newPage();
    await logIn(page2, base);
    await page2.goto(`${base}/account/sessions`);

    const firstKey = await sessionKey(first);
    const secondKey = await sessionKey(second);
    expect(firstKey).not.toBe(secondKey);
    const rows = page2.locator('tbody tr');
    expect(await rows.count()).toBe(2);
    // The current session is marked; ids are hashes, shown shortened.
    const current = rows.filter({ hasText: 'this session' });
    expect(await current.count()).toBe(1);
    expect(await current.textContent()).toContain('Firefox 128 on macOS');
    expect(await current.textContent()).toContain(secondKey.slice(0, 12));
    expect(await rows.filter({ hasText: firstKey.slice(0, 12) }).textContent()).toContain('Chrome');
    await page2.screenshot({ path: path.join(screenshotDir, 'sessions.png') });

    await submit(
      page2,
      () => page2.locator(`form[action="/account/sessions/${firstKey}/revoke"] button`).click(),
      `${base}/account/sessions?notice=revoked`,
    );
    expect(await page2.textContent('[role=status]')).toContain('Session revoked');
    expect(await page2.locator('tbody tr').count()).toBe(1);

    // The first browser's next navigation lands on the login page.
    await page1.reload();
    expect(new URL(page1.url()).pathname).toBe('/login');
    expect(await page1.textContent('[role=alert]')).toContain('Please log in to continue.');
  });

  it('logs out in the second browser: cookie cleared, the dashboard redirects to the login page', async () => {
    await submit(
      page2,
      () => page2.locator('header').getByRole('button', { name: 'Log out' }).click(),
      `${base}/?message=Logged%20out%20successfully`,
    );
    expect(await page2.textContent('[role=status]')).toContain('Logged out successfully');
    expect((await second.cookies()).find((c) => c.name === 'sessionId')).toBeUndefined();
    await page2.goto(`${base}/dashboard`);
    expect(new URL(page2.url()).pathname).toBe('/login');

    const { rows } = await db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM session s JOIN users u ON u.id::text = s.user_id WHERE u.email = $1',
      [EMAIL],
    );
    expect(rows[0]!.n).toBe(0);
    expect(await stopApp(app!)).toBe(0);
  });

  it('revoking needs a recent password: after REAUTH_WINDOW the sessions page asks for it, then the revoke goes through', async () => {
    // Long enough that confirming the password and then revoking fit in it on a loaded CI
    // machine (3 s did not), short enough to wait out.
    app = await startApp({ ...env, REAUTH_WINDOW: '8s' });
    const contexts = [await browser.newContext(), await browser.newContext()];
    try {
      const [pageA, pageB] = await Promise.all(contexts.map((c) => c.newPage()));
      await logIn(pageA!, base);
      await logIn(pageB!, base);
      const keyB = await sessionKey(contexts[1]!);
      await new Promise((r) => setTimeout(r, 8500));
      await pageA!.goto(`${base}/account/sessions`);
      expect(await pageA!.textContent('main')).toContain('Confirm your password to manage your sessions');
      const revokeB = () => pageA!.locator(`form[action="/account/sessions/${keyB}/revoke"] button`).click();
      // Not recent: refused, back to the page with the reason; B is still logged in.
      await submit(pageA!, revokeB, `${base}/account/sessions?error=reauth_required`);
      expect(await pageA!.textContent('[role=alert]')).toContain('Confirm your password first');
      await pageB!.reload();
      expect(new URL(pageB!.url()).pathname).toBe('/dashboard');
      // Confirm the password in the page's form; then the revoke is accepted.
      await pageA!.fill('#reauthPassword', PASSWORD);
      await submit(
        pageA!,
        () => pageA!.getByRole('button', { name: 'Confirm password' }).click(),
        `${base}/account/sessions?notice=reauthenticated`,
      );
      expect(await pageA!.textContent('main')).not.toContain('Confirm your password to manage');
      await submit(pageA!, revokeB, `${base}/account/sessions?notice=revoked`);
      await pageB!.reload();
      expect(new URL(pageB!.url()).pathname).toBe('/login');
    } finally {
      await Promise.all(contexts.map((c) => c.close()));
    }
    expect(await stopApp(app!)).toBe(0);
  });

  it('every page fits a 360 px phone: no horizontal scrolling, every button inside the screen', async () => {
    app = await startApp(env);
    const added = await runCli(['user', 'add', ADMIN_EMAIL, '--role', 'admin'], {
      input: `${PASSWORD}\n`,
      env: { DATABASE_URL: db.url },
    });
    expect(added.code).toBe(0);
    const phone = { viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true };
    const contexts = [await browser.newContext(phone), await browser.newContext(phone)];
    try {
      const [page, other] = await Promise.all(contexts.map((c) => c.newPage()));
      // A second session, so the sessions page has a "Revoke" row next to "Log out".
      await logIn(other!, base, ADMIN_EMAIL);
      await page!.goto(`${base}/`);
      const overflow = async (where: string) => {
        // A string: this file is compiled without the DOM's types.
        const found = (await page!.evaluate(`(() => {
          const width = document.documentElement.clientWidth;
          const outside = [...document.querySelectorAll('button, a.button, input, table')]
            .filter((el) => {
              const r = el.getBoundingClientRect();
              return r.width > 0 && (r.right > width + 0.5 || r.left < -0.5);
            })
            .map((el) => el.tagName.toLowerCase() + ' "' + (el.textContent || '').trim().slice(0, 30) + '"');
          return { scrollWidth: document.documentElement.scrollWidth, width, outside };
        })()`)) as { scrollWidth: number; width: number; outside: string[] };
        return { where, ...found };
      };
      const pages = ['/', '/login'];
      const results = [];
      for (const p of pages) {
        await page!.goto(`${base}${p}`);
        results.push(await overflow(p));
      }
      await logIn(page!, base, ADMIN_EMAIL);
      for (const p of [
        '/dashboard',
        '/account/sessions',
        '/account',
        '/account/mfa',
        '/account/notices',
        '/reauth',
        '/admin',
        '/no/such/page',
      ]) {
        await page!.goto(`${base}${p}`);
        results.push(await overflow(p));
        if (p === '/account/sessions') {
          await page!.screenshot({ path: path.join(screenshotDir, 'sessions-phone.png'), fullPage: true });
        }
      }
      expect(results.map((r) => r.width)).toEqual(results.map(() => 360));
      expect(results.filter((r) => r.scrollWidth > r.width || r.outside.length > 0)).toEqual([]);
    } finally {
      await Promise.all(contexts.map((c) => c.close()));
    }
    expect(await stopApp(app!)).toBe(0);
  });

  it('saved the screenshots (PNG, 1200×800, and the sessions page on a phone)', () => {
    for (const name of ['dashboard.png', 'sessions.png']) {
      const png = readFileSync(path.join(screenshotDir, name));
      expect(png.subarray(1, 4).toString()).toBe('PNG');
      expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([1200, 800]);
    }
    // The phone one is the whole page, 360 px wide (at the phone's device pixel ratio).
    const phone = readFileSync(path.join(screenshotDir, 'sessions-phone.png'));
    expect(phone.subarray(1, 4).toString()).toBe('PNG');
    expect(phone.readUInt32BE(16) % 360).toBe(0);
  });
});
