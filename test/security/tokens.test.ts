/**
 * Session tokens seen from outside (ASVS 7.2.1–7.2.3, 3.3.4, 3.3.5): what a client can collect
 * from Set-Cookie headers, where the server accepts a token from, and where it never shows it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { csrfOf, loginForm, PASSWORD, type RunningApp, sessionCookie, startApp } from '../app/harness.js';
import { parseCookieValue, replay, setCookieOf } from './support.js';

let t: RunningApp;
let admin: { id: number };

beforeAll(async () => {
  // Cheap argon2 (the token, not the hash, is under test here) and no login limits: 10k logins.
  t = await startApp({ argon2: { memoryCost: 64, timeCost: 1, parallelism: 1 }, rateLimit: false });
  await t.createUser('entropy@example.com');
  admin = await t.createUser('root@example.com', 'admin');
});
afterAll(() => t?.close());

const N = 10_000;

describe('token entropy (ASVS 7.2.3)', () => {
  it(`${N} fresh ids from logins over HTTP: unique, 256 bits each, every bit a fair coin`, async () => {
    const ids: string[] = [];
    const body = new URLSearchParams({ email: 'entropy@example.com', password: PASSWORD }).toString();
    let next = 0;
    const worker = async () => {
      while (next < N) {
        next++;
        const res = await fetch(`${t.url}/login`, {
          method: 'POST',
          body,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          redirect: 'manual',
        });
        expect(res.status).toBe(303);
        const line = setCookieOf(res);
        expect(line).toBeDefined();
        ids.push(parseCookieValue(line!.split(';')[0]!.slice('sessionId='.length)).id);
        await res.arrayBuffer();
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    expect(ids).toHaveLength(N);

    // No duplicates, not even of a 48-bit prefix (which a counter or a clock would give).
    expect(new Set(ids).size).toBe(N);
    expect(new Set(ids.map((id) => id.slice(0, 8))).size).toBe(N);

    // Length and charset: 43 base64url characters in canonical form = 32 bytes = 256 bits ≥ 128.
    const bytes = ids.map((id) => {
      expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const b = Buffer.from(id, 'base64url');
      expect(b.toString('base64url')).toBe(id);
      return b;
    });
    const bits = bytes[0]!.length * 8;
    expect(bits).toBe(256);
    expect(bits).toBeGreaterThanOrEqual(128);

    // Bit frequency: each of the 256 positions is 1 in about half the ids. The proportion's
    // standard deviation is 0.005 at N = 10 000, so ±0.03 is 6σ (a false alarm ~1e-9 per bit).
    const ones = new Array<number>(bits).fill(0);
    let total = 0;
    for (const b of bytes) {
      for (let bit = 0; bit < bits; bit++) {
        if (b[bit >> 3]! & (0x80 >> (bit & 7))) {
          ones[bit]!++;
          total++;
        }
      }
    }
    const biased = ones.map((n, bit) => ({ bit, p: n / N })).filter(({ p }) => Math.abs(p - 0.5) > 0.03);
    expect(biased).toEqual([]);
    // Monobit over all 2.56 million bits: σ of the proportion is 0.0003; 6σ ≈ 0.002.
    expect(Math.abs(total / (N * bits) - 0.5)).toBeLessThan(0.002);
    // Byte values uniform: χ² with 255 degrees of freedom, 99.99th percentile ≈ 346.
    const counts = new Array<number>(256).fill(0);
    for (const b of bytes) for (const v of b) counts[v]!++;
    const expected = (N * bits) / 8 / 256;
    const chi2 = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    expect(chi2).toBeLessThan(346);

    // Every login is a session row keyed by the id's hash.
    const { rows } = await t.db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM session WHERE sid = ANY($1)',
      [ids.slice(0, 500).map(hashId)],
    );
    expect(rows[0]!.n).toBe(500);
  }, 300_000);
});

describe('the token is accepted from the cookie only', () => {
  it('as a query parameter, a header or a body field it authenticates nothing', async () => {
    const c = t.client();
    await loginForm(c, 'entropy@example.com');
    const value = sessionCookie(c)!;
    const { raw, id } = parseCookieValue(value);
    const anon = () => t.client();
    for (const v of [value, raw, id]) {
      for (const name of ['sid', 'sessionId', 'session', 'connect.sid', 'token']) {
        const q = `${name}=${encodeURIComponent(v)}`;
        expect((await anon().get(`/api/me?${q}`)).status, q).toBe(401);
        expect((await anon().get(`/dashboard?${q}`)).status, q).toBe(302);
      }
      const headers: Record<string, string>[] = [
        { authorization: `Bearer ${v}` },
        { 'x-session-id': v },
        { 'x-sid': v },
        { 'x-csrf-token': v },
        // The right value under another cookie name is not the session cookie.
        { cookie: `connect.sid=${encodeURIComponent(v)}` },
        { cookie: `sid=${encodeURIComponent(v)}` },
      ];
      for (const h of headers) {
        expect((await anon().get('/api/me', { headers: h })).status, JSON.stringify(h)).toBe(401);
      }
      // In a JSON or form body of a state-changing request: still anonymous, nothing happens.
      const json = await anon().post('/account/sessions/revoke-others', {
        json: { sessionId: v, sid: v, _csrf: v },
        headers: { accept: 'application/json' },
      });
      expect(json.status).toBe(401);
      const form = await anon().post('/account/sessions/revoke-others', { form: { sessionId: v, sid: v } });
      expect(form.status).toBe(302);
      expect(form.headers.get('location')).toMatch(/^\/login\?error=login_required/);
    }
    expect((await c.get('/api/me')).status).toBe(200);
  });
});

describe('the token never leaves the server except in Set-Cookie (ASVS 3.3.4)', () => {
  it('no response body, Location or other header carries the id or the cookie value', async () => {
    const c = t.client();
    const login = await loginForm(c, 'root@example.com');
    expect(login.status).toBe(303);
    const value = sessionCookie(c)!;
    const { raw, id } = parseCookieValue(value);
    const secrets = [id, raw, value, encodeURIComponent(id), encodeURIComponent(raw)];
    const seen: string[] = [];
    const check = async (label: string, res: Response) => {
      const text = await res.text();
      const headers = [...res.headers].filter(([k]) => k !== 'set-cookie').map(([k, v]) => `${k}: ${v}`);
      for (const s of secrets) {
        expect(text, `${label} body`).not.toContain(s);
        for (const h of headers) expect(h, `${label} header`).not.toContain(s);
      }
      seen.push(label);
    };
    await check('POST /login', login);
    const csrf = await csrfOf(c);
    expect(csrf).not.toBe(id);
    const pages: [string, RequestInit?][] = [
      ['/'],
      ['/?message=hello'],
      ['/dashboard'],
      ['/account'],
      ['/account/sessions'],
      ['/admin'],
      ['/api/me'],
      ['/api/me', { headers: { accept: 'application/json' } }],
      ['/login'],
      ['/login?next=/account'],
      ['/no-such-page'],
      ['/no-such-page', { headers: { accept: 'application/json' } }],
      ['/healthz'],
      ['/logout', { headers: { 'sec-fetch-site': 'cross-site' } }],
    ];
    for (const [path, init] of pages) await check(`GET ${path}`, await c.get(path, init));
    // Error pages: CSRF refusal (403), bad request (400), wrong current password (400).
    await check('403', await c.post('/delete-server', { form: { serverId: '1' } }));
    await check('400', await c.post('/delete-server', { form: { serverId: 'x', _csrf: csrf } }));
    await check(
      'password 400',
      await c.post('/account/password', {
        form: { _csrf: csrf, currentPassword: 'nope nope', newPassword: 'something else 1' },
      }),
    );
    await check(
      'admin revoke',
      await c.post(`/admin/users/${admin.id + 1000}/revoke-sessions`, { form: { _csrf: csrf } }),
    );
    await check('POST /logout', await c.post('/logout', { form: { _csrf: csrf } }));
    expect(seen.length).toBeGreaterThan(15);
  });
});

describe('cookie size (ASVS 3.3.5)', () => {
  it('name and value stay far below 4096 bytes whatever the session holds (it is only a reference)', async () => {
    // The user agent is stored in the session (for the sessions page): send a huge one.
    const c = t.client({ 'user-agent': `Mozilla/5.0 ${'x'.repeat(8000)}` });
    const res = await loginForm(c, 'entropy@example.com');
    const line = setCookieOf(res)!;
    const pair = line.split(';')[0]!;
    expect(Buffer.byteLength(pair)).toBeLessThan(200);
    expect(Buffer.byteLength(line)).toBeLessThan(4096);
    const again = setCookieOf(await c.get('/api/me'))!;
    expect(Buffer.byteLength(again)).toBeLessThan(4096);
    // The session itself holds the (capped) user agent server-side.
    const { rows } = await t.db.pool.query<{ n: number }>(
      'SELECT length(sess::text)::int AS n FROM session WHERE sid = $1',
      [hashId(parseCookieValue(sessionCookie(c)!).id)],
    );
    expect(rows[0]!.n).toBeGreaterThan(512);
    expect((await replay(t, sessionCookie(c)!).get('/api/me')).status).toBe(200);
  });
});
