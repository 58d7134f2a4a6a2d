/**
 * Hashed ids at rest and a clean audit trail (issue 6 items 1 and 6): after a full tour of the
 * app — logins, a failed login, pages, a password change (renewal), revocation, expiry, logout —
 * neither the database nor the logs hold a raw session id, a cookie value or a password; and
 * what the table does hold cannot be turned back into a working cookie.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { sign } from '../../src/core/signature.js';
import {
  csrfOf,
  loginForm,
  PASSWORD,
  type RunningApp,
  sessionCookie,
  startApp,
  TEST_SECRET,
} from '../app/harness.js';
import { Client } from '../helpers/http.js';
import { csrfOn, NO_LIMITS, parseCookieValue, replay, setCookieOf, spawnApp } from './support.js';

const NEW_PASSWORD = 'a completely new passphrase';
const WRONG_PASSWORD = 'a wrong guess of a password';

let t: RunningApp;
let offset = 0;
/** Every session cookie value the server ever sent, and every id inside them. */
const cookies = new Set<string>();
const ids = new Set<string>();

function collect(c: Client) {
  const request = c.request.bind(c);
  c.request = async (path, init) => {
    const res = await request(path, init);
    const line = setCookieOf(res);
    if (line && !line.startsWith('sessionId=;')) {
      const value = line.split(';')[0]!.slice('sessionId='.length);
      cookies.add(value);
      ids.add(parseCookieValue(value).id);
    }
    return res;
  };
  return c;
}

beforeAll(async () => {
  t = await startApp({
    rateLimit: NO_LIMITS,
    config: { idleTimeout: 10 * 60_000 },
    now: () => Date.now() + offset,
  });
  await t.createUser('tour@example.com', 'admin');

  // The tour.
  const a = collect(t.client());
  const b = collect(t.client());
  const idle = collect(t.client());
  await loginForm(a, 'tour@example.com');
  await loginForm(b, 'tour@example.com');
  await loginForm(idle, 'tour@example.com');
  await loginForm(collect(t.client()), 'tour@example.com', WRONG_PASSWORD);
  await loginForm(collect(t.client()), 'nobody@example.com', WRONG_PASSWORD);
  for (const p of ['/', '/dashboard', '/account', '/account/sessions', '/admin', '/api/me']) await a.get(p);
  // Password change: a renews its id, b and idle are revoked.
  const res = await a.post('/account/password', {
    form: {
      _csrf: await csrfOn(a),
      currentPassword: PASSWORD,
      newPassword: NEW_PASSWORD,
      logoutOthers: 'off',
    },
  });
  expect(res.status).toBe(303);
  // Revoke b from a's sessions page.
  const key = hashId(parseCookieValue(sessionCookie(b)!).id);
  await a.post(`/account/sessions/${key}/revoke`, { form: { _csrf: await csrfOf(a) } });
  expect((await b.get('/api/me')).status).toBe(401);
  // Eleven minutes later (idle timeout 10 min): the sessions left expire on their next request.
  offset += 11 * 60_000;
  expect((await idle.get('/api/me')).status).toBe(401);
  // Log in again with the new password, then log out.
  const d = collect(t.client());
  expect((await loginForm(d, 'tour@example.com', NEW_PASSWORD)).status).toBe(303);
  await d.get('/dashboard');
  await d.post('/logout', { form: { _csrf: await csrfOf(d) } });
  expect(ids.size).toBeGreaterThanOrEqual(5);
});
afterAll(() => t?.close());

const secrets = () => [
  ...ids,
  ...[...ids].map((id) => encodeURIComponent(id)),
  ...cookies,
  ...[...cookies].map((c) => decodeURIComponent(c)),
  PASSWORD,
  NEW_PASSWORD,
  WRONG_PASSWORD,
];

describe('nothing replayable at rest (hashed ids)', () => {
  it('no row of any table holds a raw id, a cookie value or a password', async () => {
    const { rows: tables } = await t.db.pool.query<{ name: string }>(
      "SELECT quote_ident(table_name) AS name FROM information_schema.tables WHERE table_schema = 'public'",
    );
    expect(tables.map((r) => r.name)).toEqual(
      expect.arrayContaining(['session', 'users', 'auth_rate_limits']),
    );
    let dumped = '';
    for (const { name } of tables) {
      const { rows } = await t.db.pool.query<{ row: string }>(`SELECT t::text AS row FROM ${name} t`);
      dumped += rows.map((r) => r.row).join('\n');
    }
    for (const s of secrets()) expect(dumped).not.toContain(s);
    // The live sessions are there, under the SHA-256 of their ids.
    const { rows } = await t.db.pool.query<{ sid: string }>('SELECT sid FROM session');
    expect(rows.length).toBeGreaterThan(0);
    const hashes = new Set([...ids].map(hashId));
    for (const { sid } of rows) expect(hashes.has(sid)).toBe(true);
  });

  it('a leaked table gives no working cookie, even to someone who also has the signing secret', async () => {
    const { rows } = await t.db.pool.query<{ sid: string; sess: unknown }>('SELECT sid, sess FROM session');
    expect(rows.length).toBeGreaterThan(0);
    for (const { sid } of rows) {
      for (const value of [sid, `s:${sid}`, `s:${sign(sid, TEST_SECRET)}`]) {
        const res = await replay(t, encodeURIComponent(value)).get('/api/me');
        expect(res.status).toBe(401);
      }
    }
  });
});

describe('the logs (pino JSON, captured in full at level debug)', () => {
  it('hold no raw id, cookie value or password', () => {
    const text = t.logs.text;
    expect(t.logs.lines.length).toBeGreaterThan(30);
    for (const s of secrets()) expect(text).not.toContain(s);
  });

  it('and name sessions by their hash: created, renewed, revoked, expired, destroyed, failed login', () => {
    const events = t.logs.events();
    const names = new Set(events.map((e) => e.event));
    for (const name of [
      'session.created',
      'session.renewed',
      'session.destroyed',
      'session.expired',
      'auth.login',
      'auth.login-failed',
      'auth.logout',
      'auth.revoked',
      'auth.password-changed',
    ]) {
      expect(names.has(name), name).toBe(true);
    }
    const hashes = new Set([...ids].map(hashId));
    const withSid = events.filter((e) => typeof e.sid === 'string' && e.sid !== '*' && e.sid !== '*others');
    // A cookie that verifies but names no session (replayed after logout, or forged by someone
    // holding the secret) is logged under the hash of the id it presented, which this server may
    // never have issued: a hash all the same, never the presented id.
    const presented = withSid.filter((e) => e.event === 'session.invalid-cookie');
    expect(presented.length).toBeGreaterThan(0);
    for (const e of presented) {
      expect(e.sid).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(ids.has(e.sid as string)).toBe(false);
    }
    const issued = withSid.filter((e) => e.event !== 'session.invalid-cookie');
    expect(issued.length).toBeGreaterThan(5);
    for (const e of issued) expect(hashes.has(e.sid as string), String(e.event)).toBe(true);
    for (const e of events.filter((x) => String(x.event).startsWith('session.'))) {
      expect(e).toHaveProperty('ip');
      expect(e).toHaveProperty('ua');
    }
  });
});

describe('the real process (npm start, LOG_LEVEL=debug)', () => {
  it('its stdout and stderr hold no raw id, cookie value or password', async () => {
    const child = await spawnApp({
      DATABASE_URL: t.db.url,
      SESSION_SECRET: TEST_SECRET,
      NODE_ENV: 'development',
      LOG_LEVEL: 'debug',
    });
    try {
      const c = new Client(child.url);
      await loginForm(c, 'tour@example.com', WRONG_PASSWORD);
      expect((await loginForm(c, 'tour@example.com', NEW_PASSWORD)).status).toBe(303);
      const value = sessionCookie(c)!;
      const { id, raw } = parseCookieValue(value);
      await c.get('/dashboard');
      await c.get(`/api/me?sid=${encodeURIComponent(value)}`);
      await c.post('/logout', { form: { _csrf: await csrfOf(c) } });
      expect(await child.stop()).toBe(0);
      const out = child.output();
      expect(out).toContain('"event":"auth.login"');
      for (const s of [id, raw, value, encodeURIComponent(id), NEW_PASSWORD, WRONG_PASSWORD]) {
        expect(out).not.toContain(s);
      }
      expect(out).toContain(hashId(id));
    } finally {
      await child.stop();
    }
  }, 60_000);
});
