/**
 * Security notices (ASVS 6.3.5, 6.3.7): the account owner is told about a sign-in from an
 * unfamiliar device, repeated wrong passwords, a lockout, and password and email changes — in
 * the app (dashboard, /account/notices) and through the `notify` hook (email, push). Black-box
 * over HTTP against the demo app, plus the library's API (`auth.notices`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SecurityNotice, SecurityNoticeMessage } from '../../src/auth/index.js';
import { addressNetwork, deviceKey } from '../../src/auth/notices.js';
import { WindowCounter } from '../../src/auth/rate-limit.js';
import { hashId } from '../../src/core/id.js';
import { loginForm, PASSWORD, type RunningApp, sessionCookie, startApp } from '../app/harness.js';
import type { Client } from '../helpers/http.js';
import { csrfOn, parseCookieValue } from './support.js';

const FIREFOX_LINUX = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0';
const FIREFOX_LINUX_NEWER = 'Mozilla/5.0 (X11; Linux x86_64; rv:129.0) Gecko/20100101 Firefox/129.0';
const CHROME_MAC =
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36';
const HOOK_TIMEOUT_MS = 2000;

let t: RunningApp;
/** Every message the app's notify hook received. */
const sent: SecurityNoticeMessage[] = [];
/** How the hook behaves for the next calls. */
let hook: 'ok' | 'throw' | 'hang' = 'ok';
/** Every password typed in this file and every session cookie the server sent, for the leak check. */
const secrets = new Set<string>([PASSWORD]);
const cookies = new Set<string>();
let ipCounter = 0;

beforeAll(async () => {
  t = await startApp({
    notify: (notice) => {
      sent.push(notice);
      if (hook === 'throw') throw new Error('mailer down');
      if (hook === 'hang') return new Promise<void>(() => {});
    },
    notices: { notifyTimeoutMs: HOOK_TIMEOUT_MS },
  });
});
afterAll(() => t?.close());

/** A browser: this user agent, from this address (its own by default, so limits never mix). */
function browser(ua: string, ip = `198.18.1.${++ipCounter}`): Client {
  const c = t.client({ 'user-agent': ua, 'x-forwarded-for': ip });
  const request = c.request.bind(c);
  c.request = async (path, init) => {
    const res = await request(path, init);
    const value = sessionCookie(c);
    if (value) cookies.add(value);
    return res;
  };
  return c;
}

async function login(c: Client, email: string, password = PASSWORD) {
  secrets.add(password);
  return loginForm(c, email, password);
}

/** The user's notices once background work (failures, lockouts, hook calls) is done. */
async function noticesOf(userId: number): Promise<SecurityNotice[]> {
  await t.app.auth.notices.settled();
  return t.app.auth.notices.list(userId);
}

const sentTo = (userId: number) => sent.filter((m) => m.userId === userId);

describe('sign-in from an unfamiliar device (ASVS 6.3.5)', () => {
  it('a login from a new user agent is a new-sign-in notice with device, address and time, sent to the account; the same device again is not', async () => {
    const user = await t.createUser('devices@example.com');
    // The first sign-in of an account only sets the baseline: nothing to compare with yet.
    expect((await login(browser(FIREFOX_LINUX, '203.0.113.5'), user.email)).status).toBe(303);
    expect(await noticesOf(user.id)).toEqual([]);
    // The same browser family on the same network, even a newer version: familiar.
    expect((await login(browser(FIREFOX_LINUX_NEWER, '203.0.113.77'), user.email)).status).toBe(303);
    expect(await noticesOf(user.id)).toEqual([]);

    const before = Date.now();
    const res = await login(browser(CHROME_MAC, '203.0.113.5'), user.email);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/dashboard');
    const notices = await noticesOf(user.id);
    expect(notices).toHaveLength(1);
    const [notice] = notices;
    expect(notice).toMatchObject({
      kind: 'new-sign-in',
      userId: user.id,
      readAt: null,
      details: { ip: '203.0.113.5', ua: CHROME_MAC, device: 'Chrome 120 on macOS Catalina' },
    });
    expect(Date.parse(notice!.details.at)).toBeGreaterThanOrEqual(before - 1000);
    expect(sentTo(user.id)).toEqual([{ ...notice, to: 'devices@example.com' }]);

    // The same device again: no new notice, no new message.
    expect((await login(browser(CHROME_MAC, '203.0.113.5'), user.email)).status).toBe(303);
    expect(await noticesOf(user.id)).toHaveLength(1);
    expect(sentTo(user.id)).toHaveLength(1);

    // A known browser from another network is a new device too.
    expect((await login(browser(FIREFOX_LINUX, '198.51.100.7'), user.email)).status).toBe(303);
    const after = await noticesOf(user.id);
    expect(after.map((n) => [n.kind, n.details.ip])).toEqual([
      ['new-sign-in', '198.51.100.7'],
      ['new-sign-in', '203.0.113.5'],
    ]);
  });

  it('the dashboard shows unread notices: device, address, time, and what to do, with links', async () => {
    const user = await t.createUser('dashboard-notice@example.com');
    const c = browser(FIREFOX_LINUX, '203.0.113.5');
    await login(c, user.email);
    expect(await (await c.get('/dashboard')).text()).not.toContain('Security notices');
    await login(browser(CHROME_MAC, '192.0.2.44'), user.email);
    const html = await (await c.get('/dashboard')).text();
    expect(html).toContain('Security notices (1 unread)');
    expect(html).toMatch(
      /New sign-in from Chrome 120 on macOS Catalina, 192\.0\.2\.44, at \d{4}-\d\d-\d\d \d\d:\d\d UTC\./,
    );
    expect(html).toContain(
      'If this wasn&#39;t you, <a href="/account">change your password</a> and <a href="/account/sessions">log out your other sessions</a>.',
    );
    expect(html).toContain('<a href="/account/notices">See all security notices</a>');
  });

  it('marking read: POST /account/notices/read needs the CSRF token, touches only the user’s own notices, and clears the dashboard', async () => {
    const user = await t.createUser('reader@example.com');
    const other = await t.createUser('other-reader@example.com');
    for (const email of [user.email, other.email]) {
      await login(browser(FIREFOX_LINUX), email);
      await login(browser(CHROME_MAC, '192.0.2.10'), email);
      await login(browser(CHROME_MAC, '192.0.3.10'), email);
    }
    const c = browser(FIREFOX_LINUX);
    await login(c, user.email);
    expect(await t.app.auth.notices.countUnread(user.id)).toBe(2);
    const page = await c.get('/account/notices');
    expect(page.status).toBe(200);
    expect(page.headers.get('cache-control')).toBe('no-store');
    const html = await page.text();
    expect(html.match(/<tr data-notice="new-sign-in" class="unread">/g)).toHaveLength(2);
    expect(html).toContain('<form method="post" action="/account/notices/read">');

    // No token, a wrong token, another site: refused, nothing changes.
    const [mine] = await t.app.auth.notices.list(user.id);
    const forms: Record<string, string>[] = [
      { id: String(mine!.id) },
      { id: String(mine!.id), _csrf: 'x'.repeat(43) },
    ];
    for (const form of forms) {
      expect((await c.post('/account/notices/read', { form })).status).toBe(403);
    }
    const _csrf = await csrfOn(c, '/account/notices');
    const crossSite = await c.post('/account/notices/read', {
      form: { _csrf },
      headers: { origin: 'https://evil.example' },
    });
    expect(crossSite.status).toBe(403);
    expect(await t.app.auth.notices.countUnread(user.id)).toBe(2);

    // Another user's notice id marks nothing.
    const [theirs] = await t.app.auth.notices.list(other.id);
    const json = await c.post('/account/notices/read', {
      json: { id: theirs!.id },
      headers: { 'x-csrf-token': _csrf, accept: 'application/json' },
    });
    expect(await json.json()).toEqual({ marked: 0 });
    expect(await t.app.auth.notices.countUnread(other.id)).toBe(2);

    // One, then all.
    const one = await c.post('/account/notices/read', { form: { _csrf, id: String(mine!.id) } });
    expect(one.status).toBe(303);
    expect(one.headers.get('location')).toBe('/account/notices?notice=read');
    expect(await t.app.auth.notices.countUnread(user.id)).toBe(1);
    expect((await t.app.auth.notices.list(user.id)).find((n) => n.id === mine!.id)?.readAt).toBeInstanceOf(
      Date,
    );
    expect((await c.post('/account/notices/read', { form: { _csrf } })).status).toBe(303);
    expect(await t.app.auth.notices.countUnread(user.id)).toBe(0);
    expect(await (await c.get('/dashboard')).text()).not.toContain('Security notices');
    // Still listed, as read.
    const listed = await (await c.get('/account/notices')).text();
    expect(listed.match(/<tr data-notice="new-sign-in">/g)).toHaveLength(2);
    expect(listed).not.toContain('Mark all as read');
  });
});

describe('failed sign-ins and lockouts (ASVS 6.3.5)', () => {
  it('3 wrong passwords make exactly one failed-sign-ins notice, not one per failure', async () => {
    const user = await t.createUser('guessed-notice@example.com');
    const c = browser(FIREFOX_LINUX, '203.0.113.99');
    for (let i = 0; i < 4; i++) expect((await login(c, user.email, `wrong guess ${i}`)).status).toBe(303);
    const notices = await noticesOf(user.id);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatchObject({
      kind: 'failed-sign-ins',
      details: { failures: 3, windowSeconds: 900, ip: '203.0.113.99', device: 'Firefox 128 on Linux' },
    });
    expect(sentTo(user.id)).toEqual([{ ...notices[0], to: user.email }]);
  });

  it('wrong current passwords from inside a session count too (someone holding the session is guessing)', async () => {
    const user = await t.createUser('session-guess@example.com');
    const c = browser(FIREFOX_LINUX, '203.0.113.120');
    await login(c, user.email);
    const _csrf = await csrfOn(c);
    for (let i = 0; i < 3; i++) {
      const res = await c.post('/account/password', {
        form: { _csrf, currentPassword: `inside guess ${i}`, newPassword: 'a brand new passphrase' },
      });
      expect(res.status).toBe(400);
    }
    const notices = await noticesOf(user.id);
    expect(notices.map((n) => n.kind)).toEqual(['failed-sign-ins']);
    const html = await (await c.get('/dashboard')).text();
    expect(html).toMatch(
      /3 wrong passwords entered for your account in 15 minutes, the last from Firefox 128 on Linux, 203\.0\.113\.120, at /,
    );
  });

  it('parallel wrong passwords from several addresses still make exactly one', async () => {
    const user = await t.createUser('parallel-notice@example.com');
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => login(browser(CHROME_MAC), user.email, `parallel guess ${i}`)),
    );
    expect(results.map((r) => r.status)).toEqual(Array(8).fill(303));
    expect((await noticesOf(user.id)).map((n) => n.kind)).toEqual(['failed-sign-ins']);
  });

  it('a rate-limit lockout is one locked notice, however many attempts are refused', async () => {
    const user = await t.createUser('locked-notice@example.com');
    const c = browser(FIREFOX_LINUX, '203.0.113.150');
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await login(c, user.email, `lockout guess ${i}`)).status);
    expect(statuses).toEqual([303, 303, 303, 303, 303, 429, 429, 429]);
    const notices = await noticesOf(user.id);
    expect(notices.map((n) => n.kind)).toEqual(['locked', 'failed-sign-ins']);
    expect(notices[0]).toMatchObject({
      kind: 'locked',
      details: { scope: 'account-ip', ip: '203.0.113.150' },
    });
    const locked = notices[0] as Extract<SecurityNotice, { kind: 'locked' }>;
    expect(locked.details.retryAfter).toBeGreaterThan(0);
    expect(sentTo(user.id).map((m) => [m.kind, m.to])).toEqual([
      ['failed-sign-ins', user.email],
      ['locked', user.email],
    ]);
  });

  it('unknown emails create nothing, and their failure is byte-identical to a wrong password’s over HTTP', async () => {
    const user = await t.createUser('twin@example.com');
    await t.app.auth.notices.settled();
    const count = async () =>
      (await t.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM auth_security_notices')).rows[0]!
        .n;
    const rows = await count();
    const messages = sent.length;
    /** Everything the client sees but the Date header (the clock ticks between requests). */
    const seen = async (res: Response) => ({
      status: res.status,
      headers: [...res.headers].filter(([k]) => k !== 'date'),
      body: await res.text(),
    });
    for (const json of [false, true]) {
      for (let i = 0; i < 4; i++) {
        const ip = `203.0.114.${++ipCounter}`;
        const attempt = (email: string) =>
          browser(FIREFOX_LINUX, ip).post(
            '/login',
            json
              ? { json: { email, password: 'not it' }, headers: { accept: 'application/json' } }
              : { form: { email, password: 'not it' } },
          );
        const known = await seen(await attempt(user.email));
        const unknown = await seen(await attempt(`nobody-${ipCounter}@example.com`));
        expect(unknown).toEqual(known);
      }
    }
    // Locked out, unknown email: refused like a known one, still nothing recorded for it.
    const c = browser(FIREFOX_LINUX, '203.0.115.1');
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await login(c, 'ghost@example.com', `ghost ${i}`)).status);
    expect(statuses.slice(-2)).toEqual([429, 429]);
    await t.app.auth.notices.settled();
    // Only the known account's failures counted: one notice, at its 3rd.
    const twin = await noticesOf(user.id);
    expect(twin.map((n) => n.kind)).toEqual(['failed-sign-ins']);
    expect(await count()).toBe(rows + 1);
    expect(sent.slice(messages).map((m) => m.to)).toEqual([user.email]);
  });
});

describe('credential changes (ASVS 6.3.7)', () => {
  it('a password change is a password-changed notice, sent to the account', async () => {
    const user = await t.createUser('pw-notice@example.com');
    const c = browser(FIREFOX_LINUX, '203.0.113.200');
    await login(c, user.email);
    secrets.add('a brand new passphrase');
    const res = await c.post('/account/password', {
      form: { _csrf: await csrfOn(c), currentPassword: PASSWORD, newPassword: 'a brand new passphrase' },
    });
    expect(res.status).toBe(303);
    const notices = await noticesOf(user.id);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatchObject({
      kind: 'password-changed',
      details: { ip: '203.0.113.200', device: 'Firefox 128 on Linux', revokedSessions: 0 },
    });
    expect(sentTo(user.id)).toEqual([{ ...notices[0], to: user.email }]);
    const html = await (await c.get('/dashboard')).text();
    expect(html).toMatch(/Your password was changed from Firefox 128 on Linux, 203\.0\.113\.200, at /);
  });

  it('an email change is an email-changed notice, sent to the old and the new address', async () => {
    const user = await t.createUser('before-move@example.com');
    const c = browser(CHROME_MAC);
    await login(c, user.email);
    const res = await c.post('/account/email', {
      form: { _csrf: await csrfOn(c), email: 'after-move@example.com', currentPassword: PASSWORD },
    });
    expect(res.status).toBe(303);
    const notices = await noticesOf(user.id);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatchObject({
      kind: 'email-changed',
      details: { previousEmail: 'before-move@example.com', newEmail: 'after-move@example.com' },
    });
    expect(
      sentTo(user.id)
        .map((m) => m.to)
        .sort(),
    ).toEqual(['after-move@example.com', 'before-move@example.com']);
    for (const m of sentTo(user.id)) expect(m).toEqual({ ...notices[0], to: m.to });
  });
});

describe('the notify hook cannot break or slow sign-in', () => {
  it('a throwing hook: the login still succeeds, the notice is stored, the error is logged', async () => {
    const user = await t.createUser('throwing-hook@example.com');
    await login(browser(FIREFOX_LINUX), user.email);
    hook = 'throw';
    try {
      const res = await login(browser(CHROME_MAC, '192.0.2.200'), user.email);
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toBe('/dashboard');
      expect((await noticesOf(user.id)).map((n) => n.kind)).toEqual(['new-sign-in']);
    } finally {
      hook = 'ok';
    }
    expect(t.logs.text).toMatch(/"msg":"auth background error"/);
    expect(t.logs.text).toContain('mailer down');
  });

  it('a hanging hook: the login answers without waiting for it, and the hook is abandoned after its time limit', async () => {
    const user = await t.createUser('hanging-hook@example.com');
    await login(browser(FIREFOX_LINUX), user.email);
    hook = 'hang';
    try {
      const c = browser(CHROME_MAC, '192.0.2.201');
      const started = performance.now();
      const res = await login(c, user.email);
      const elapsed = performance.now() - started;
      expect(res.status).toBe(303);
      // Waiting for the hook would take at least its whole time limit.
      expect(elapsed).toBeLessThan(HOOK_TIMEOUT_MS);
      expect((await c.get('/api/me')).status).toBe(200);
      // Bounded: given up after the limit, with an error in the log.
      const waited = performance.now();
      await t.app.auth.notices.settled();
      expect(performance.now() - waited).toBeLessThan(HOOK_TIMEOUT_MS + 1000);
    } finally {
      hook = 'ok';
    }
    expect(t.logs.text).toContain(`security notice hook timed out after ${HOOK_TIMEOUT_MS} ms`);
    expect((await noticesOf(user.id)).map((n) => n.kind)).toEqual(['new-sign-in']);
  });
});

describe('the demo outbox and the library', () => {
  it('the demo’s default hook writes an outbox log line addressed to the user (no email is sent)', async () => {
    const app = await startApp({ db: t.db });
    try {
      const user = await app.createUser('outbox@example.com');
      const c = (ua: string, ip: string) => app.client({ 'user-agent': ua, 'x-forwarded-for': ip });
      await loginForm(c(FIREFOX_LINUX, '203.0.113.1'), user.email);
      await loginForm(c(CHROME_MAC, '192.0.2.1'), user.email);
      await app.app.auth.notices.settled();
      const lines = app.logs.events().filter((e) => e.event === 'outbox.security-notice');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({
        component: 'outbox',
        to: 'outbox@example.com',
        kind: 'new-sign-in',
        userId: user.id,
      });
      expect(lines[0]!.text).toMatch(
        /^New sign-in from Chrome 120 on macOS Catalina, 192\.0\.2\.1, at .* UTC\./,
      );
    } finally {
      await app.close();
    }
  });

  it('a device is browser family + OS family + network (IPv4 /24, IPv6 /64), not versions', () => {
    expect(addressNetwork('203.0.113.5')).toBe('203.0.113.0/24');
    expect(addressNetwork('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressNetwork('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressNetwork('::1')).toBe('0:0:0:0::/64');
    expect(deviceKey(FIREFOX_LINUX, '203.0.113.5')).toBe(deviceKey(FIREFOX_LINUX_NEWER, '203.0.113.77'));
    expect(deviceKey(FIREFOX_LINUX, '203.0.113.5')).not.toBe(deviceKey(CHROME_MAC, '203.0.113.5'));
    expect(deviceKey(FIREFOX_LINUX, '203.0.113.5')).not.toBe(deviceKey(FIREFOX_LINUX, '203.0.114.5'));
    expect(deviceKey('curl/8.5.0', '203.0.113.5')).not.toBe(deviceKey('python-requests/2.31', '203.0.113.5'));
  });

  it('WindowCounter: parallel hits each get their own count (exactly one sees any number)', async () => {
    const counter = new WindowCounter({ pool: t.db.pool, keyPrefix: 'test_counter', duration: 60 });
    const counts = await Promise.all(Array.from({ length: 10 }, () => counter.hit('k')));
    expect([...counts].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('notices: false records nothing; the list, count and mark-read API still answer', async () => {
    const { createAuth } = await import('../../src/auth/index.js');
    const quiet = createAuth({ pool: t.db.pool, session: t.app.sessionMiddleware, notices: false });
    const user = await t.createUser('quiet@example.com');
    expect(await quiet.notices.signedIn(user, quiet.notices.context(fakeRequest()))).toBeNull();
    expect(await quiet.notices.list(user.id)).toEqual([]);
    expect(await quiet.notices.countUnread(user.id)).toBe(0);
    expect(await quiet.notices.markRead(user.id)).toBe(0);
  });

  it('notices and hook messages never hold a password or a session id (raw, signed or hashed)', async () => {
    await t.app.auth.notices.settled();
    const { rows } = await t.db.pool.query(
      'SELECT n.*, d.device FROM auth_security_notices n LEFT JOIN auth_known_devices d USING (user_id)',
    );
    expect(rows.length).toBeGreaterThan(10);
    const stored = JSON.stringify(rows) + JSON.stringify(sent);
    expect(cookies.size).toBeGreaterThan(10);
    for (const cookie of cookies) {
      const { id, raw } = parseCookieValue(cookie);
      for (const needle of [cookie, raw, id, hashId(id)]) expect(stored).not.toContain(needle);
    }
    for (const password of secrets) expect(stored).not.toContain(password);
  });
});

function fakeRequest() {
  return { headers: { 'user-agent': FIREFOX_LINUX }, ip: '203.0.113.9' } as unknown as Parameters<
    typeof t.app.auth.notices.context
  >[0];
}
