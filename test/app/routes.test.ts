import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  csrfFrom,
  csrfOf,
  loginForm,
  PASSWORD,
  type RunningApp,
  sessionCookie,
  startApp,
} from './harness.js';

let t: RunningApp;
let demo: { id: number; email: string };
let admin: { id: number; email: string };

beforeAll(async () => {
  t = await startApp();
  demo = await t.createUser('demo@example.com');
  admin = await t.createUser('admin@example.com', 'admin');
  await t.db.pool.query(
    "INSERT INTO servers (user_id, name) VALUES ($1, 'web-1'), ($1, 'db-<1>'), ($2, 'admin-box')",
    [demo.id, admin.id],
  );
});
afterAll(() => t?.close());

describe('GET /', () => {
  it('is a landing page; ?message= shows only the fixed text of a known key', async () => {
    const res = await t.client().get('/?message=Logged%20out%20successfully');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    expect(await res.text()).toContain('<div class="notice" role="status">Logged out successfully</div>');
    expect(res.headers.getSetCookie()).toEqual([]);
  });

  // Issue 12, item 5: the page used to render any 200 characters of ?message= as a notice.
  it('shows no text of an unknown ?message= (no content spoofing)', async () => {
    for (const text of [
      'Your account is locked. Call +1-555-0100',
      '<script>alert(1)</script>',
      'constructor',
      '__proto__',
    ]) {
      const html = await (await t.client().get(`/?message=${encodeURIComponent(text)}`)).text();
      expect(html).not.toContain('class="notice"');
      expect(html).not.toContain('555-0100');
      expect(html).not.toMatch(/&lt;script|<script>|constructor|__proto__/);
    }
  });

  it('declares no icon and answers /favicon.ico with 204 and no session: no 404 on a first visit', async () => {
    const html = await (await t.client().get('/')).text();
    expect(html).toContain('<link rel="icon" href="data:,">');
    const icon = await t.client().get('/favicon.ico');
    expect(icon.status).toBe(204);
    expect(icon.headers.get('cache-control')).toBe('public, max-age=86400');
    expect(icon.headers.getSetCookie()).toEqual([]);
  });

  it('sends security headers (helmet)', async () => {
    const res = await t.client().get('/');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    // Not helmet's no-referrer: under it browsers send `Origin: null` on same-origin form posts.
    expect(res.headers.get('referrer-policy')).toBe('same-origin');
    expect(res.headers.get('x-powered-by')).toBeNull();
  });
});

describe('GET /login', () => {
  it('shows the form with email and password fields and keeps a safe next', async () => {
    const res = await t.client().get('/login?next=%2Faccount%2Fsessions');
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toMatch(/<form method="post" action="\/login">/);
    expect(html).toMatch(/name="email"/);
    expect(html).toMatch(/name="password" type="password"/);
    expect(html).toContain('name="next" value="/account/sessions"');
  });

  it('drops an unsafe next and shows known error messages only', async () => {
    const html = await (await t.client().get('/login?next=https%3A%2F%2Fevil.example&error=%3Cb%3Ex')).text();
    expect(html).not.toContain('evil.example');
    expect(html).not.toContain('<b>x');
    const known = await (await t.client().get('/login?error=invalid_credentials')).text();
    expect(known).toContain('Invalid email or password.');
  });
});

describe('POST /login', () => {
  it('form login: new session cookie (HttpOnly, SameSite=Lax, Path=/, expiry = idle timeout) and 303 to /dashboard', async () => {
    const c = t.client();
    const res = await loginForm(c, 'demo@example.com');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/dashboard');
    const [cookie] = res.headers.getSetCookie();
    expect(cookie).toMatch(/^sessionId=s%3A[A-Za-z0-9_-]{43}\.[A-Za-z0-9%]+;/);
    expect(cookie).toMatch(/; HttpOnly/);
    expect(cookie).toMatch(/; SameSite=Lax/);
    expect(cookie).toMatch(/; Path=\//);
    expect(cookie).not.toMatch(/Domain=/i);
    const expires = Date.parse(/Expires=([^;]+)/.exec(cookie!)![1]!);
    expect(Math.abs(expires - (Date.now() + 7 * 86_400_000))).toBeLessThan(60_000);
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  it('is case-insensitive and trims the email', async () => {
    const res = await loginForm(t.client(), '  Demo@Example.COM ');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/dashboard');
  });

  it('redirects to a same-site next', async () => {
    const res = await loginForm(t.client(), 'demo@example.com', PASSWORD, { next: '/account/sessions?x=1' });
    expect(res.headers.get('location')).toBe('/account/sessions?x=1');
  });

  it('JSON login (Accept: application/json) answers 200 {user:{id,email,role}}', async () => {
    const c = t.client();
    const res = await c.post('/login', {
      json: { email: 'demo@example.com', password: PASSWORD },
      headers: { accept: 'application/json' },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ user: { id: demo.id, email: 'demo@example.com', role: 'user' } });
    expect(sessionCookie(c)).toBeDefined();
  });

  it('a wrong password redirects to /login?error=invalid_credentials with no cookie (JSON: 401)', async () => {
    const res = await loginForm(t.client(), 'demo@example.com', 'wrong password!');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/login?error=invalid_credentials');
    expect(res.headers.getSetCookie()).toEqual([]);
    const json = await t.client().post('/login', {
      json: { email: 'demo@example.com', password: 'nope-nope' },
      headers: { accept: 'application/json' },
    });
    expect(json.status).toBe(401);
    expect(await json.json()).toEqual({ error: 'invalid_credentials' });
    expect(json.headers.getSetCookie()).toEqual([]);
  });

  it('malformed input (missing fields, non-strings, huge password) is just a failed login, never a 500', async () => {
    const c = t.client();
    expect((await c.post('/login', { form: {} })).headers.get('location')).toBe(
      '/login?error=invalid_credentials',
    );
    const weird = await c.post('/login', {
      json: { email: ['demo@example.com'], password: { $ne: 1 } },
      headers: { accept: 'application/json' },
    });
    expect(weird.status).toBe(401);
    const huge = await c.post('/login', {
      json: { email: 'demo@example.com', password: 'x'.repeat(5000) },
      headers: { accept: 'application/json' },
    });
    expect(huge.status).toBe(401);
    const bad = await c.post('/login', {
      body: '{"email":',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
    });
    expect(bad.status).toBe(400);
    const body = await bad.text();
    expect(body).not.toMatch(/at \w+ \(|node_modules|SyntaxError/);
    const big = await c.post('/login', { form: { email: 'demo@example.com', password: 'x'.repeat(20_000) } });
    expect(big.status).toBe(413);
  });
});

describe('GET /dashboard', () => {
  it('anonymous: redirect to /login?error=login_required (with next)', async () => {
    const res = await t.client().get('/dashboard');
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/login?error=login_required&next=%2Fdashboard');
  });

  it("shows the user's email and servers, each with a Delete link to a confirmation page", async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const res = await c.get('/dashboard');
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const html = await res.text();
    expect(html).toContain('demo@example.com');
    expect(html).toContain('web-1');
    expect(html).toContain('db-&lt;1&gt;');
    expect(html).not.toContain('admin-box');
    const links = [...html.matchAll(/href="\/servers\/(\d+)\/delete"/g)].map((m) => m[1]);
    expect(links).toHaveLength(2);
    // A logout control on every authenticated page.
    expect(html).toMatch(/<form method="post" action="\/logout">/);
  });

  it('the confirmation page names the server and holds the form posting serverId and _csrf; not for other users', async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const { rows } = await t.db.pool.query<{ id: string }>(
      "SELECT id FROM servers WHERE user_id = $1 AND name = 'web-1'",
      [demo.id],
    );
    const page = await c.get(`/servers/${rows[0]!.id}/delete`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('Delete this server?');
    expect(html).toContain('web-1');
    const form = /<form method="post" action="\/delete-server">[\s\S]*?<\/form>/.exec(html)?.[0] ?? '';
    expect(form).toMatch(/name="_csrf" value="[A-Za-z0-9_-]{43}"/);
    expect(form).toContain(`name="serverId" value="${rows[0]!.id}"`);
    expect(html).toContain('href="/dashboard">Cancel');
    const { rows: theirs } = await t.db.pool.query<{ id: string }>(
      'SELECT id FROM servers WHERE user_id = $1',
      [admin.id],
    );
    expect((await c.get(`/servers/${theirs[0]!.id}/delete`)).status).toBe(404);
    expect((await c.get('/servers/abc/delete')).status).toBe(404);
  });
});

describe('POST /delete-server', () => {
  it("deletes one of the user's servers and redirects back to /dashboard", async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const { rows } = await t.db.pool.query(
      "INSERT INTO servers (user_id, name) VALUES ($1, 'tmp') RETURNING id",
      [demo.id],
    );
    const id = String(rows[0].id);
    const token = await csrfOf(c);
    const res = await c.post('/delete-server', { form: { serverId: id, _csrf: token } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/dashboard?notice=deleted');
    expect(await (await c.get('/dashboard?notice=deleted')).text()).toContain('The server was deleted.');
    const left = await t.db.pool.query('SELECT 1 FROM servers WHERE id = $1', [id]);
    expect(left.rowCount).toBe(0);
  });

  it("never deletes another user's server", async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const { rows } = await t.db.pool.query('SELECT id FROM servers WHERE user_id = $1', [admin.id]);
    const res = await c.post('/delete-server', {
      form: { serverId: String(rows[0].id), _csrf: await csrfOf(c) },
    });
    expect(res.status).toBe(303);
    const still = await t.db.pool.query('SELECT 1 FROM servers WHERE id = $1', [rows[0].id]);
    expect(still.rowCount).toBe(1);
  });

  it('anonymous: redirected to login (HTML) or 401 (JSON); bad serverId: 400', async () => {
    const anon = await t.client().post('/delete-server', { form: { serverId: '1' } });
    expect(anon.status).toBe(302);
    expect(anon.headers.get('location')).toBe('/login?error=login_required');
    const anonJson = await t.client().post('/delete-server', {
      json: { serverId: 1 },
      headers: { accept: 'application/json' },
    });
    expect(anonJson.status).toBe(401);
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const bad = await c.post('/delete-server', { form: { serverId: 'abc', _csrf: await csrfOf(c) } });
    expect(bad.status).toBe(400);
  });

  it('a query that hangs past its timeout (the database went away mid-request) is a 503 with Retry-After, not a 500', async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const token = await csrfOf(c);
    const pool = t.db.pool as unknown as { query: (...args: unknown[]) => unknown };
    const query = pool.query;
    // What node-postgres raises when `query_timeout` passes with no answer from the server.
    pool.query = function (this: unknown, ...args: unknown[]) {
      const text = typeof args[0] === 'string' ? args[0] : '';
      if (text.startsWith('DELETE FROM servers')) return Promise.reject(new Error('Query read timeout'));
      return query.apply(this, args);
    };
    try {
      const res = await c.post('/delete-server', { form: { serverId: '1', _csrf: token } });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(await res.text()).toContain('temporarily unavailable');
    } finally {
      pool.query = query;
    }
  });
});

describe('GET /api/me', () => {
  it('200 {id,email,role} when logged in, 401 JSON when not', async () => {
    const anon = await t.client().get('/api/me');
    expect(anon.status).toBe(401);
    expect(anon.headers.get('content-type')).toMatch(/application\/json/);
    expect(await anon.json()).toMatchObject({ error: 'unauthorized' });
    const c = t.client();
    await loginForm(c, 'admin@example.com');
    const res = await c.get('/api/me');
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await res.json()).toEqual({ id: admin.id, email: 'admin@example.com', role: 'admin' });
  });
});

describe('logout', () => {
  it('POST /logout destroys the session, clears the cookie and redirects with the message', async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const cookie = sessionCookie(c)!;
    const token = await csrfOf(c);
    const res = await c.post('/logout', { form: { _csrf: token } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/?message=Logged%20out%20successfully');
    const [clear] = res.headers.getSetCookie();
    expect(clear).toMatch(/^sessionId=;/);
    expect(clear).toMatch(/Expires=Thu, 01 Jan 1970/);
    // The copied cookie is dead on the server too.
    const replay = await t.client({ cookie: `sessionId=${cookie}` }).get('/api/me');
    expect(replay.status).toBe(401);
    const home = await (await c.get('/?message=Logged%20out%20successfully')).text();
    expect(home).toContain('Logged out successfully');
  });

  it('GET /logout (as in the seed) does the same', async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const cookie = sessionCookie(c)!;
    const res = await c.get('/logout');
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/?message=Logged%20out%20successfully');
    expect(res.headers.getSetCookie()[0]).toMatch(/^sessionId=;/);
    expect((await t.client({ cookie: `sessionId=${cookie}` }).get('/api/me')).status).toBe(401);
  });

  it('logging out when not logged in just redirects', async () => {
    const res = await t.client().post('/logout');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/?message=Logged%20out%20successfully');
  });
});

describe('GET /admin', () => {
  it('403 for a user (HTML page and JSON), redirect for anonymous', async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const res = await c.get('/admin');
    expect(res.status).toBe(403);
    expect(await res.text()).toContain('403');
    const json = await c.get('/admin', { headers: { accept: 'application/json' } });
    expect(json.status).toBe(403);
    expect(await json.json()).toMatchObject({ error: 'forbidden' });
    const anon = await t.client().get('/admin');
    expect(anon.status).toBe(302);
  });

  it("the 403 page says why, and its header is the logged-in user's (no 'Log in' link)", async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const html = await (await c.get('/admin')).text();
    expect(html).toContain('it is for administrators');
    expect(html).toContain('demo@example.com');
    expect(html).toContain('action="/logout"');
    expect(html).not.toContain('href="/login"');
  });

  it('lists users with their session counts for an admin', async () => {
    await t.db.pool.query('DELETE FROM session');
    const a = t.client();
    await loginForm(a, 'admin@example.com');
    const d1 = t.client();
    const d2 = t.client();
    await loginForm(d1, 'demo@example.com');
    await loginForm(d2, 'demo@example.com');
    const res = await a.get('/admin');
    expect(res.status).toBe(200);
    const html = await res.text();
    const row = (email: string) =>
      new RegExp(`<td>${email}</td><td[^>]*>\\w+</td>\\s*<td[^>]*>active</td><td[^>]*>(\\d+)</td>`).exec(
        html,
      )?.[1];
    expect(row('demo@example.com')).toBe('2');
    expect(row('admin@example.com')).toBe('1');
  });

  it('an admin can end all sessions of a user', async () => {
    const a = t.client();
    await loginForm(a, 'admin@example.com');
    const d = t.client();
    await loginForm(d, 'demo@example.com');
    const html = await (await a.get('/admin')).text();
    const res = await a.post(`/admin/users/${demo.id}/revoke-sessions`, { form: { _csrf: csrfFrom(html) } });
    expect(res.status).toBe(303);
    expect((await d.get('/api/me')).status).toBe(401);
    expect((await a.get('/api/me')).status).toBe(200);
  });
});

describe('GET /healthz', () => {
  it('200 when the database answers, without touching sessions', async () => {
    const res = await t.client().get('/healthz');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
    expect(res.headers.getSetCookie()).toEqual([]);
  });
});

describe('404', () => {
  it('a real 404 page (HTML) and JSON for API clients', async () => {
    const res = await t.client().get('/no/such/page');
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    expect(await res.text()).toContain('Not found');
    const api = await t.client().get('/api/nothing');
    expect(api.status).toBe(404);
    expect(await api.json()).toEqual({ error: 'not_found' });
  });

  it("for a logged-in user, the 404 page keeps their header (no 'Log in' link)", async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const res = await c.get('/no/such/page');
    expect(res.status).toBe(404);
    const html = await res.text();
    expect(html).toContain('demo@example.com');
    expect(html).toContain('href="/dashboard"');
    expect(html).not.toContain('href="/login"');
    const anon = await (await t.client().get('/no/such/page')).text();
    expect(anon).toContain('href="/login"');
  });
});
