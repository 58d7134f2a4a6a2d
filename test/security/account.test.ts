/**
 * Credential changes over HTTP (issue 6 item 7; ASVS 6.2.2–6.2.4, 7.2.4, 7.4.3, 7.5.1): the
 * current password is required, common passwords are refused, a password change renews the
 * session id and by default logs out every other session.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PasswordPolicyError } from '../../src/auth/index.js';
import { loginForm, PASSWORD, type RunningApp, sessionCookie, startApp } from '../app/harness.js';
import type { Client } from '../helpers/http.js';
import { csrfOn, replay, runCli } from './support.js';

let t: RunningApp;
let ipCounter = 0;
/** A client from its own address, so the failed-attempt limits of one test never touch another. */
const fresh = () => t.client({ 'x-forwarded-for': `198.18.0.${++ipCounter}` });

beforeAll(async () => {
  t = await startApp();
});
afterAll(() => t?.close());

async function loggedIn(email: string, c: Client = fresh()) {
  const res = await loginForm(c, email);
  expect(res.status).toBe(303);
  return c;
}

const canLogin = async (email: string, password: string) =>
  (await loginForm(fresh(), email, password)).headers.get('location') === '/dashboard';

describe('password change (POST /account/password)', () => {
  it('the account page offers it: masked fields, current password required, "log out other sessions" ticked by default', async () => {
    await t.createUser('page@example.com');
    const c = await loggedIn('page@example.com');
    const res = await c.get('/account');
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const html = await res.text();
    expect(html).toMatch(/<form method="post" action="\/account\/password">/);
    expect(html).toMatch(/name="currentPassword" type="password" autocomplete="current-password" required/);
    expect(html).toMatch(/name="newPassword" type="password" autocomplete="new-password" required/);
    expect(html).toMatch(/<input type="checkbox" name="logoutOthers" value="on" checked>/);
    expect(html).toMatch(/<form method="post" action="\/account\/email">/);
    // Paste and password managers are not blocked (ASVS 6.2.7).
    expect(html).not.toMatch(/onpaste|oncopy|autocomplete="off"/i);
    // Anonymous: the login page, not the form.
    const anon = await fresh().get('/account');
    expect(anon.status).toBe(302);
    expect(anon.headers.get('location')).toBe('/login?error=login_required&next=%2Faccount');
  });

  it('needs the current password: missing or wrong is 400, and nothing changes', async () => {
    await t.createUser('wrong@example.com');
    const c = await loggedIn('wrong@example.com');
    const other = await loggedIn('wrong@example.com');
    const _csrf = await csrfOn(c);
    const before = sessionCookie(c);
    const forms: Record<string, string>[] = [
      { _csrf, newPassword: 'a brand new passphrase' },
      { _csrf, currentPassword: 'not my password', newPassword: 'a brand new passphrase' },
    ];
    for (const form of forms) {
      const res = await c.post('/account/password', { form });
      expect(res.status).toBe(400);
      expect(await res.text()).toContain('Your current password is not correct.');
    }
    const json = await c.post('/account/password', {
      json: { currentPassword: 'still not it', newPassword: 'a brand new passphrase' },
      headers: { 'x-csrf-token': _csrf, accept: 'application/json' },
    });
    expect(json.status).toBe(400);
    expect(await json.json()).toMatchObject({ error: 'wrong_password' });
    expect(sessionCookie(c)).toBe(before);
    expect((await c.get('/api/me')).status).toBe(200);
    expect((await other.get('/api/me')).status).toBe(200);
    expect(await canLogin('wrong@example.com', PASSWORD)).toBe(true);
    expect(await canLogin('wrong@example.com', 'a brand new passphrase')).toBe(false);
  });

  it('wrong current passwords count as failed logins: the 6th from one address is 429', async () => {
    await t.createUser('guessed@example.com');
    const c = await loggedIn('guessed@example.com');
    const _csrf = await csrfOn(c);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await c.post('/account/password', {
        form: { _csrf, currentPassword: `guess number ${i}`, newPassword: 'a brand new passphrase' },
      });
      statuses.push(res.status);
    }
    expect(statuses).toEqual([400, 400, 400, 400, 400, 429]);
    // The right one from this address now waits too: no guessing around the limit.
    const right = await c.post('/account/password', {
      form: { _csrf, currentPassword: PASSWORD, newPassword: 'a brand new passphrase' },
    });
    expect(right.status).toBe(429);
    expect(right.headers.get('retry-after')).toMatch(/^\d+$/);
  });

  it('refuses common passwords whatever their case, and short ones, with a clear message', async () => {
    await t.createUser('weak@example.com');
    const c = await loggedIn('weak@example.com');
    const _csrf = await csrfOn(c);
    for (const newPassword of ['password123', 'Password123', 'QWERTYUIOP', 'iloveyou', '12345678']) {
      const res = await c.post('/account/password', {
        form: { _csrf, currentPassword: PASSWORD, newPassword },
      });
      expect(res.status, newPassword).toBe(400);
      expect(await res.text()).toContain('This password is too common');
    }
    const short = await c.post('/account/password', {
      json: { currentPassword: PASSWORD, newPassword: 'short' },
      headers: { 'x-csrf-token': _csrf, accept: 'application/json' },
    });
    expect(short.status).toBe(400);
    expect(await short.json()).toEqual({
      error: 'password_policy',
      message: 'Password must be at least 8 characters',
    });
    expect(await canLogin('weak@example.com', PASSWORD)).toBe(true);
    expect(await canLogin('weak@example.com', 'password123')).toBe(false);
  });

  it('accepts any composition: no character-class rules; long passphrases and unicode work (ASVS 6.2.5, 6.2.9)', async () => {
    await t.createUser('any@example.com');
    const c = await loggedIn('any@example.com');
    const passwords = ['zebrafoxmoonlamp', '🔑 ünïcødé passphrase ✓', `${'long passphrase '.repeat(5)}end`];
    let current = PASSWORD;
    for (const newPassword of passwords) {
      const _csrf = await csrfOn(c);
      const res = await c.post('/account/password', {
        form: { _csrf, currentPassword: current, newPassword },
      });
      expect(res.status, newPassword).toBe(303);
      current = newPassword;
    }
    expect([...current].length).toBeGreaterThanOrEqual(80);
    expect(await canLogin('any@example.com', current)).toBe(true);
  });

  it('success: a new session id (the old one is dead), every other session logged out, the old password refused', async () => {
    const changer = await t.createUser('changer@example.com');
    const a = await loggedIn('changer@example.com');
    const b = await loggedIn('changer@example.com');
    const c = await loggedIn('changer@example.com');
    await t.createUser('bystander@example.com');
    const bystander = await loggedIn('bystander@example.com');
    const before = sessionCookie(a)!;
    const _csrf = await csrfOn(a);
    const res = await a.post('/account/password', {
      form: { _csrf, currentPassword: PASSWORD, newPassword: 'a brand new passphrase', logoutOthers: 'on' },
    });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/account?notice=password-others');
    const after = sessionCookie(a)!;
    expect(after).not.toBe(before);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect((await a.get('/api/me')).status).toBe(200);
    expect((await replay(t, before).get('/api/me')).status).toBe(401);
    expect((await b.get('/api/me')).status).toBe(401);
    expect((await c.get('/api/me')).status).toBe(401);
    expect((await bystander.get('/api/me')).status).toBe(200);
    // The CSRF token was renewed with the id: the old one no longer works.
    const stale = await a.post('/account/sessions/revoke-others', { form: { _csrf } });
    expect(stale.status).toBe(403);
    expect(await canLogin('changer@example.com', PASSWORD)).toBe(false);
    expect(await canLogin('changer@example.com', 'a brand new passphrase')).toBe(true);
    const event = t.logs.events().find((e) => e.event === 'auth.password-changed' && e.userId === changer.id);
    expect(event).toMatchObject({ revoked: 2 });
  });

  it('"log out other sessions" unticked keeps them; this session still gets a new id', async () => {
    await t.createUser('keeper@example.com');
    const a = await loggedIn('keeper@example.com');
    const b = await loggedIn('keeper@example.com');
    const before = sessionCookie(a)!;
    const _csrf = await csrfOn(a);
    // What the form sends with the box unticked: only the hidden "off".
    const res = await a.post('/account/password', {
      body: new URLSearchParams([
        ['_csrf', _csrf],
        ['currentPassword', PASSWORD],
        ['newPassword', 'a brand new passphrase'],
        ['logoutOthers', 'off'],
      ]).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/account?notice=password');
    expect(sessionCookie(a)).not.toBe(before);
    expect((await replay(t, before).get('/api/me')).status).toBe(401);
    expect((await b.get('/api/me')).status).toBe(200);
    // Ticked, as the browser sends it: the hidden "off" then the box's "on" (the last wins).
    const c = await loggedIn('keeper@example.com');
    const csrf2 = await csrfOn(b);
    const ticked = await b.post('/account/password', {
      body: new URLSearchParams([
        ['_csrf', csrf2],
        ['currentPassword', 'a brand new passphrase'],
        ['newPassword', 'another new passphrase'],
        ['logoutOthers', 'off'],
        ['logoutOthers', 'on'],
      ]).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(ticked.status).toBe(303);
    expect((await a.get('/api/me')).status).toBe(401);
    expect((await c.get('/api/me')).status).toBe(401);
    expect((await b.get('/api/me')).status).toBe(200);
  });

  it('JSON clients: 200 {ok, revoked}; logoutOthers defaults to true', async () => {
    await t.createUser('api@example.com');
    const a = await loggedIn('api@example.com');
    const b = await loggedIn('api@example.com');
    const res = await a.post('/account/password', {
      json: { currentPassword: PASSWORD, newPassword: 'a brand new passphrase' },
      headers: { 'x-csrf-token': await csrfOn(a), accept: 'application/json' },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, revoked: 1 });
    expect((await b.get('/api/me')).status).toBe(401);
    expect((await a.get('/api/me')).status).toBe(200);
  });
});

describe('email change (POST /account/email)', () => {
  it('needs the current password; then the new email logs in and the old one does not', async () => {
    await t.createUser('old-address@example.com');
    const c = await loggedIn('old-address@example.com');
    const _csrf = await csrfOn(c);
    const wrong = await c.post('/account/email', {
      form: { _csrf, email: 'new-address@example.com', currentPassword: 'not my password' },
    });
    expect(wrong.status).toBe(400);
    expect(await wrong.text()).toContain('Your current password is not correct.');
    const missing = await c.post('/account/email', { form: { _csrf, email: 'new-address@example.com' } });
    expect(missing.status).toBe(400);
    expect(await (await c.get('/api/me')).json()).toMatchObject({ email: 'old-address@example.com' });
    const ok = await c.post('/account/email', {
      form: { _csrf, email: '  New-Address@Example.com ', currentPassword: PASSWORD },
    });
    expect(ok.status).toBe(303);
    expect(ok.headers.get('location')).toBe('/account?notice=email');
    expect(await (await c.get('/api/me')).json()).toMatchObject({ email: 'new-address@example.com' });
    expect(await canLogin('new-address@example.com', PASSWORD)).toBe(true);
    expect(await canLogin('old-address@example.com', PASSWORD)).toBe(false);
    expect(t.logs.events().some((e) => e.event === 'auth.email-changed')).toBe(true);
  });

  it('a taken or implausible email is refused and nothing changes', async () => {
    await t.createUser('taken@example.com');
    await t.createUser('mover@example.com');
    const c = await loggedIn('mover@example.com');
    const _csrf = await csrfOn(c);
    const taken = await c.post('/account/email', {
      form: { _csrf, email: 'TAKEN@example.com', currentPassword: PASSWORD },
    });
    expect(taken.status).toBe(409);
    const bad = await c.post('/account/email', {
      json: { email: 'not an email', currentPassword: PASSWORD },
      headers: { 'x-csrf-token': _csrf, accept: 'application/json' },
    });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: 'invalid_email' });
    expect(await (await c.get('/api/me')).json()).toMatchObject({ email: 'mover@example.com' });
  });
});

describe('common passwords are refused everywhere a password is set', () => {
  it('user creation (the library) refuses them', async () => {
    await expect(
      t.app.auth.users.create({ email: 'common@example.com', password: 'Password123' }),
    ).rejects.toBeInstanceOf(PasswordPolicyError);
    expect(await t.app.auth.users.findByEmail('common@example.com')).toBeNull();
  });

  it('the CLI refuses them (user add, user passwd): non-zero exit, clear message, nothing stored', async () => {
    const env = { DATABASE_URL: t.db.url };
    const add = await runCli(['user', 'add', 'cli-common@example.com'], env, 'password123\n');
    expect(add.code).not.toBe(0);
    expect(add.stderr).toMatch(/too common/);
    expect(await t.app.auth.users.findByEmail('cli-common@example.com')).toBeNull();
    await t.createUser('cli-user@example.com');
    const passwd = await runCli(['user', 'passwd', 'cli-user@example.com'], env, 'iloveyou\n');
    expect(passwd.code).not.toBe(0);
    expect(passwd.stderr).toMatch(/too common/);
    expect(await canLogin('cli-user@example.com', PASSWORD)).toBe(true);
  });
});
