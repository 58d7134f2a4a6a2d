import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sign } from '../../src/core/signature.js';
import { createPool } from '../../src/db/index.js';
import type { Client } from '../helpers/http.js';
import {
  csrfFrom,
  loginForm,
  PASSWORD,
  type RunningApp,
  sessionCookie,
  startApp,
  TEST_SECRET,
} from './harness.js';

let t: RunningApp;
let demo: { id: number };
let other: { id: number };

const CHROME_MAC =
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36';
const FIREFOX_LINUX = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0';

beforeAll(async () => {
  t = await startApp({
    rateLimit: {
      policy: {
        perAccountAddress: { points: 1000, duration: 60 },
        perAccount: { points: 1000, duration: 60 },
      },
    },
  });
  demo = await t.createUser('demo@example.com');
  other = await t.createUser('other@example.com');
});
afterAll(() => t?.close());

async function sessionsPage(c: Client) {
  const res = await c.get('/account/sessions');
  expect(res.status).toBe(200);
  const html = await res.text();
  const rows = [...html.matchAll(/<tr>\s*<td>([\s\S]*?)<\/tr>/g)].map((m) => {
    const row = m[0];
    return {
      row,
      id: /action="\/account\/sessions\/([^/]+)\/revoke"/.exec(row)?.[1],
      current: row.includes('this session'),
    };
  });
  return { html, rows, csrf: csrfFrom(html) };
}

describe('GET /account/sessions', () => {
  it('lists active sessions with created, last active, address, browser and OS in words; current one marked', async () => {
    await t.db.pool.query('DELETE FROM session');
    const laptop = t.client({ 'user-agent': CHROME_MAC, 'x-forwarded-for': '198.51.100.10' });
    const desktop = t.client({ 'user-agent': FIREFOX_LINUX, 'x-forwarded-for': '198.51.100.20' });
    await loginForm(laptop, 'demo@example.com');
    await loginForm(desktop, 'demo@example.com');
    await loginForm(t.client(), 'other@example.com');
    const page = await sessionsPage(laptop);
    expect(page.rows).toHaveLength(2);
    expect(page.rows.filter((r) => r.current)).toHaveLength(1);
    const current = page.rows.find((r) => r.current)!;
    expect(current.row).toContain('Chrome 120 on macOS Catalina');
    expect(current.row).toContain('198.51.100.10');
    const second = page.rows.find((r) => !r.current)!;
    expect(second.row).toContain('Firefox 128 on Linux');
    expect(second.row).toContain('198.51.100.20');
    expect(page.html).toMatch(/\d{4}-\d\d-\d\d \d\d:\d\d UTC/);
    expect(page.html).toMatch(/just now/);
    expect(page.html).not.toContain('other@example.com');
  });

  it('the ids shown are storage hashes: not usable as cookies, even signed', async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const { rows } = await sessionsPage(c);
    const shown = decodeURIComponent(rows.find((r) => r.current)!.id!);
    expect(decodeURIComponent(sessionCookie(c)!)).not.toContain(shown);
    for (const value of [shown, `s:${shown}`, `s:${sign(shown, TEST_SECRET)}`]) {
      const res = await t.client({ cookie: `sessionId=${encodeURIComponent(value)}` }).get('/api/me');
      expect(res.status).toBe(401);
    }
  });

  it('anonymous: redirected to login', async () => {
    const res = await t.client().get('/account/sessions');
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/login?error=login_required&next=%2Faccount%2Fsessions');
  });
});

describe('revocation', () => {
  it('POST /account/sessions/:id/revoke ends that session at once; the others stay', async () => {
    await t.db.pool.query('DELETE FROM session');
    const a = t.client();
    const b = t.client();
    const c = t.client();
    await loginForm(a, 'demo@example.com');
    await loginForm(b, 'demo@example.com');
    await loginForm(c, 'demo@example.com');
    const page = await sessionsPage(a);
    expect(page.rows).toHaveLength(3);
    const target = page.rows.find((r) => !r.current)!.id!;
    const res = await a.post(`/account/sessions/${target}/revoke`, { form: { _csrf: page.csrf } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/account/sessions?notice=revoked');
    const statuses = [(await b.get('/api/me')).status, (await c.get('/api/me')).status].sort();
    expect(statuses).toEqual([200, 401]);
    expect((await a.get('/api/me')).status).toBe(200);
    const after = await a.get('/account/sessions?notice=revoked');
    const html = await after.text();
    expect(html).toContain('Session revoked');
    expect(html).not.toContain(target);
  });

  it('revoking the other browser logs it out (next request 401, cookie cleared)', async () => {
    await t.db.pool.query('DELETE FROM session');
    const a = t.client();
    const b = t.client();
    await loginForm(a, 'demo@example.com');
    await loginForm(b, 'demo@example.com');
    const page = await sessionsPage(a);
    const target = page.rows.find((r) => !r.current)!.id!;
    expect((await a.post(`/account/sessions/${target}/revoke`, { form: { _csrf: page.csrf } })).status).toBe(
      303,
    );
    const res = await b.get('/api/me');
    expect(res.status).toBe(401);
  });

  it("a session id of another user's session is 404, and that session survives", async () => {
    await t.db.pool.query('DELETE FROM session');
    const mine = t.client();
    const theirs = t.client();
    await loginForm(mine, 'demo@example.com');
    await loginForm(theirs, 'other@example.com');
    const theirId = (await sessionsPage(theirs)).rows[0]!.id!;
    const { csrf } = await sessionsPage(mine);
    const res = await mine.post(`/account/sessions/${theirId}/revoke`, { form: { _csrf: csrf } });
    expect(res.status).toBe(404);
    expect((await theirs.get('/api/me')).status).toBe(200);
    const missing = await mine.post('/account/sessions/does-not-exist/revoke', { form: { _csrf: csrf } });
    expect(missing.status).toBe(404);
  });

  it('revoking the current session from the list logs out', async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const page = await sessionsPage(c);
    const current = page.rows.find((r) => r.current)!.id!;
    const res = await c.post(`/account/sessions/${current}/revoke`, { form: { _csrf: page.csrf } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/?message=Logged%20out%20successfully');
    expect((await c.get('/api/me')).status).toBe(401);
  });

  it('POST /account/sessions/revoke-others logs out every other session of the user only', async () => {
    const a = t.client();
    const b = t.client();
    const c = t.client();
    const stranger = t.client();
    await loginForm(a, 'demo@example.com');
    await loginForm(b, 'demo@example.com');
    await loginForm(c, 'demo@example.com');
    await loginForm(stranger, 'other@example.com');
    const { csrf } = await sessionsPage(a);
    const res = await a.post('/account/sessions/revoke-others', { form: { _csrf: csrf } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/account/sessions?notice=others');
    expect((await b.get('/api/me')).status).toBe(401);
    expect((await c.get('/api/me')).status).toBe(401);
    expect((await a.get('/api/me')).status).toBe(200);
    expect((await stranger.get('/api/me')).status).toBe(200);
    const page = await sessionsPage(a);
    expect(page.rows).toHaveLength(1);
    expect(t.logs.events().some((e) => e.event === 'auth.revoked' && e.userId === demo.id)).toBe(true);
  });

  it('disabling an account ends its sessions and refuses its logins (same answer as a wrong password)', async () => {
    const victim = await t.createUser('leaver@example.com');
    const c = t.client();
    await loginForm(c, 'leaver@example.com');
    expect((await c.get('/api/me')).status).toBe(200);
    await t.app.auth.disableUser(victim.id);
    expect((await c.get('/api/me')).status).toBe(401);
    const again = await loginForm(t.client(), 'leaver@example.com');
    expect(again.headers.get('location')).toBe('/login?error=invalid_credentials');
    expect(other.id).toBeGreaterThan(0);
  });
});

describe('bcrypt hashes (the seed) are verified and upgraded', () => {
  for (const prefix of ['$2a$', '$2b$', '$2y$']) {
    it(`${prefix} hash: login works and the hash becomes argon2id`, async () => {
      const email = `legacy${prefix.replaceAll('$', '')}@example.com`;
      const hash = prefix + (await bcrypt.hash('seed-password', 10)).slice(4);
      const { rows } = await t.db.pool.query<{ id: string }>(
        'INSERT INTO users (email, password_hash) VALUES ($1, $2) RETURNING id',
        [email, hash],
      );
      const res = await loginForm(t.client(), email, 'seed-password');
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toBe('/dashboard');
      const stored = await t.db.pool.query<{ password_hash: string }>(
        'SELECT password_hash FROM users WHERE id = $1',
        [rows[0]!.id],
      );
      expect(stored.rows[0]!.password_hash).toMatch(/^\$argon2id\$v=19\$/);
      expect((await loginForm(t.client(), email, 'seed-password')).headers.get('location')).toBe(
        '/dashboard',
      );
      expect((await loginForm(t.client(), email, 'seed-passwore')).headers.get('location')).toBe(
        '/login?error=invalid_credentials',
      );
      expect(
        t.logs.events().some((e) => e.event === 'auth.password-rehashed' && e.userId === Number(rows[0]!.id)),
      ).toBe(true);
    });
  }

  it('a wrong password leaves the bcrypt hash alone', async () => {
    const hash = await bcrypt.hash('seed-password', 10);
    await t.db.pool.query('INSERT INTO users (email, password_hash) VALUES ($1, $2)', [
      'stays@example.com',
      hash,
    ]);
    await loginForm(t.client(), 'stays@example.com', 'not-it-at-all');
    const { rows } = await t.db.pool.query(
      "SELECT password_hash FROM users WHERE email = 'stays@example.com'",
    );
    expect(rows[0].password_hash).toBe(hash);
  });

  it('passwords are checked as typed: no 72-byte truncation with argon2id', async () => {
    const long = `${'a'.repeat(72)}-the-rest-matters`;
    await t.app.auth.users.create({ email: 'long@example.com', password: long });
    expect((await loginForm(t.client(), 'long@example.com', long)).headers.get('location')).toBe(
      '/dashboard',
    );
    expect(
      (await loginForm(t.client(), 'long@example.com', `${'a'.repeat(72)}-different`)).headers.get(
        'location',
      ),
    ).toBe('/login?error=invalid_credentials');
  });
});

describe('timeouts are enforced by the server', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('idle timeout: a session unused for longer is gone, whatever the cookie says; activity slides it', async () => {
    const app = await startApp({ db: t.db, config: { idleTimeout: 1500, absoluteTimeout: 60_000 } });
    try {
      const busy = app.client();
      const idle = app.client();
      await loginForm(busy, 'demo@example.com');
      await loginForm(idle, 'demo@example.com');
      for (let i = 0; i < 5; i++) {
        await sleep(500);
        expect((await busy.get('/api/me')).status).toBe(200);
      }
      const res = await idle.get('/api/me');
      expect(res.status).toBe(401);
      // Never a live session cookie for it: either nothing or a deletion.
      for (const line of res.headers.getSetCookie()) expect(line).toMatch(/^sessionId=;/);
    } finally {
      await app.close();
    }
  });

  it('absolute timeout: even a busy session ends', async () => {
    const app = await startApp({ db: t.db, config: { idleTimeout: 60_000, absoluteTimeout: 1500 } });
    try {
      const c = app.client();
      await loginForm(c, 'demo@example.com');
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        await sleep(400);
        statuses.push((await c.get('/api/me')).status);
      }
      expect(statuses[0]).toBe(200);
      expect(statuses.at(-1)).toBe(401);
    } finally {
      await app.close();
    }
  });

  it('the cookie is re-sent on every response with a fresh expiry (rolling)', async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const first = await c.get('/api/me');
    const cookie = first.headers.getSetCookie()[0];
    expect(cookie).toMatch(/^sessionId=s%3A/);
    expect(cookie).toMatch(/Expires=/);
  });
});

describe('production mode', () => {
  it('__Host-sessionId, Secure, behind a TLS proxy (TRUST_PROXY + X-Forwarded-Proto); HSTS on', async () => {
    const app = await startApp({
      db: t.db,
      config: {
        production: true,
        cookieName: '__Host-sessionId',
        secureCookies: true,
        trustProxy: 'loopback',
      },
    });
    try {
      const c = app.client({ 'x-forwarded-proto': 'https' });
      const res = await loginForm(c, 'demo@example.com');
      expect(res.status).toBe(303);
      const cookie = res.headers.getSetCookie()[0]!;
      expect(cookie).toMatch(/^__Host-sessionId=s%3A/);
      expect(cookie).toMatch(/; Secure/);
      expect(cookie).toMatch(/; HttpOnly/);
      expect(cookie).toMatch(/; Path=\//);
      expect(cookie).not.toMatch(/Domain=/i);
      expect(res.headers.get('strict-transport-security')).toMatch(/max-age=\d{8,}/);
      expect((await c.get('/api/me')).status).toBe(200);
      // Same-origin check uses the proxy's scheme.
      const origin = app.url.replace('http:', 'https:');
      const page = await c.get('/account/sessions');
      const csrf = csrfFrom(await page.text());
      const ok = await c.post('/account/sessions/revoke-others', {
        form: { _csrf: csrf },
        headers: { origin },
      });
      expect(ok.status).toBe(303);
      // Plain HTTP without a trusted proxy: no Secure cookie is sent at all.
      const plain = await loginForm(app.client(), 'demo@example.com');
      expect(plain.headers.getSetCookie()).toEqual([]);
    } finally {
      await app.close();
    }
  });
});

describe('database outage', () => {
  it('503 + Retry-After (HTML and JSON), never a logout; /healthz 503', async () => {
    const dead = createPool('postgres://postgres@127.0.0.1:1/none', {
      connectionTimeoutMillis: 300,
      onError: () => {},
    });
    const app = await startApp({ db: { ...t.db, pool: dead, drop: async () => {} } });
    try {
      const health = await app.client().get('/healthz');
      expect(health.status).toBe(503);
      const cookie = `sessionId=${encodeURIComponent(`s:${sign('x'.repeat(43), TEST_SECRET)}`)}`;
      const html = await app.client({ cookie }).get('/dashboard');
      expect(html.status).toBe(503);
      expect(html.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(html.headers.getSetCookie()).toEqual([]);
      const body = await html.text();
      expect(body).toContain('temporarily unavailable');
      expect(body).not.toMatch(/ECONNREFUSED|at \S+ \(/);
      const json = await app.client({ cookie, accept: 'application/json' }).get('/api/me');
      expect(json.status).toBe(503);
      expect(await json.json()).toMatchObject({ error: 'unavailable' });
      const login = await loginForm(app.client(), 'demo@example.com', PASSWORD);
      expect(login.status).toBe(503);
      // The landing page needs no database.
      expect((await app.client().get('/')).status).toBe(200);
    } finally {
      await app.close();
      await dead.end();
    }
  });
});
