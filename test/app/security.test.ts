import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { safeNext } from '../../app/create-app.js';
import { generateId, hashId } from '../../src/core/id.js';
import { sign } from '../../src/core/signature.js';
import {
  csrfFrom,
  csrfOf,
  loginForm,
  PASSWORD,
  type RunningApp,
  sessionCookie,
  startApp,
  TEST_SECRET,
} from './harness.js';

let t: RunningApp;
let demo: { id: number };

/** A cookie value for `id`, signed as the app signs (what only the server can make). */
const signed = (id: string) => encodeURIComponent(`s:${sign(id, TEST_SECRET)}`);

beforeAll(async () => {
  t = await startApp({
    // Many logins from one address in this file: the limits are tested in rate-limit.test.ts.
    rateLimit: {
      policy: {
        perAccountAddress: { points: 1000, duration: 60 },
        perAccount: { points: 1000, duration: 60 },
      },
    },
  });
  demo = await t.createUser('demo@example.com');
  await t.createUser('other@example.com');
  await t.db.pool.query("INSERT INTO servers (user_id, name) VALUES ($1, 'web-1')", [demo.id]);
});
afterAll(() => t?.close());

describe('tampered and forged cookies', () => {
  it('a modified signature, id, or unsigned value is anonymous (never a 500)', async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const good = sessionCookie(c)!;
    expect((await t.client({ cookie: `sessionId=${good}` }).get('/api/me')).status).toBe(200);
    const raw = decodeURIComponent(good); // s:<id>.<sig>
    const dot = raw.lastIndexOf('.');
    const id = raw.slice(2, dot);
    const sig = raw.slice(dot + 1);
    const flip = (s: string) => s.slice(0, -1) + (s.endsWith('A') ? 'B' : 'A');
    const variants = [
      encodeURIComponent(`s:${id}.${flip(sig)}`),
      encodeURIComponent(`s:${flip(id)}.${sig}`),
      encodeURIComponent(id),
      encodeURIComponent(`s:${id}`),
      'garbage',
      `s%3A${'A'.repeat(8000)}.x`,
      encodeURIComponent("s:' OR 1=1 --.x"),
      encodeURIComponent('s:ünïcødé.✓'),
      '%E0%A4%A',
    ];
    for (const v of variants) {
      const res = await t.client({ cookie: `sessionId=${v}` }).get('/api/me');
      expect(res.status, v.slice(0, 40)).toBe(401);
    }
    // Two cookies of the same name: the first is used, a forged one never authenticates.
    const dup = await t.client({ cookie: `sessionId=garbage; sessionId=${good}` }).get('/api/me');
    expect([200, 401]).toContain(dup.status);
    const forgedFirst = await t
      .client({ cookie: `sessionId=${variants[0]}; sessionId=${good}` })
      .get('/api/me');
    expect([200, 401]).toContain(forgedFirst.status);
  });

  it('the session id is meaningless: no user id or email in the cookie', async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const raw = decodeURIComponent(sessionCookie(c)!);
    const decoded = Buffer.from(raw.slice(2).split('.')[0]!, 'base64url').toString('latin1');
    expect(raw.slice(2).split('.')[0]).toMatch(/^[A-Za-z0-9_-]{43}$/); // 32 random bytes
    expect(decoded).not.toContain('demo');
  });

  it('the token is never accepted outside the cookie (query, body, header)', async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const value = sessionCookie(c)!;
    const plain = decodeURIComponent(value);
    expect((await t.client().get(`/api/me?sessionId=${value}`)).status).toBe(401);
    expect(
      (await t.client({ authorization: `Bearer ${plain}`, 'x-session-id': plain }).get('/api/me')).status,
    ).toBe(401);
  });
});

describe('session fixation', () => {
  it('logging in issues a new id; the pre-login id is dead', async () => {
    const c = t.client();
    await loginForm(c, 'other@example.com');
    const before = sessionCookie(c)!;
    const res = await loginForm(c, 'demo@example.com');
    expect(res.status).toBe(303);
    const after = sessionCookie(c)!;
    expect(after).not.toBe(before);
    expect((await t.client({ cookie: `sessionId=${before}` }).get('/api/me')).status).toBe(401);
    expect(await (await c.get('/api/me')).json()).toMatchObject({ email: 'demo@example.com' });
  });

  it('an attacker-chosen id (even validly signed) is never adopted', async () => {
    const chosen = generateId();
    const c = t.client({ cookie: `sessionId=${signed(chosen)}` });
    const res = await c.post('/login', { form: { email: 'demo@example.com', password: PASSWORD } });
    expect(res.status).toBe(303);
    const issued = decodeURIComponent(/sessionId=([^;]+)/.exec(res.headers.getSetCookie()[0]!)![1]!);
    expect(issued.slice(2).split('.')[0]).not.toBe(chosen);
    expect((await t.client({ cookie: `sessionId=${signed(chosen)}` }).get('/api/me')).status).toBe(401);
  });

  it('two logins of the same user get different ids', async () => {
    const a = t.client();
    const b = t.client();
    await loginForm(a, 'demo@example.com');
    await loginForm(b, 'demo@example.com');
    expect(sessionCookie(a)).not.toBe(sessionCookie(b));
  });
});

describe('CSRF', () => {
  async function loggedIn() {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    const { rows } = await t.db.pool.query(
      "INSERT INTO servers (user_id, name) VALUES ($1, 'x') RETURNING id",
      [demo.id],
    );
    return { c, token: await csrfOf(c), serverId: String(rows[0].id) };
  }
  const exists = async (id: string) =>
    (await t.db.pool.query('SELECT 1 FROM servers WHERE id = $1', [id])).rowCount === 1;

  it('a missing or wrong token is 403 and changes nothing', async () => {
    const { c, serverId } = await loggedIn();
    const missing = await c.post('/delete-server', { form: { serverId } });
    expect(missing.status).toBe(403);
    const wrong = await c.post('/delete-server', { form: { serverId, _csrf: 'x'.repeat(43) } });
    expect(wrong.status).toBe(403);
    const otherSession = await loggedIn();
    const foreign = await c.post('/delete-server', { form: { serverId, _csrf: otherSession.token } });
    expect(foreign.status).toBe(403);
    const json = await c.post('/delete-server', {
      json: { serverId },
      headers: { accept: 'application/json' },
    });
    expect(json.status).toBe(403);
    expect(await json.json()).toMatchObject({ error: 'csrf' });
    expect(await exists(serverId)).toBe(true);
  });

  it('the token works as the _csrf field and as the x-csrf-token header', async () => {
    const a = await loggedIn();
    expect(
      (await a.c.post('/delete-server', { form: { serverId: a.serverId, _csrf: a.token } })).status,
    ).toBe(303);
    expect(await exists(a.serverId)).toBe(false);
    const b = await loggedIn();
    const res = await b.c.post('/delete-server', {
      json: { serverId: Number(b.serverId) },
      headers: { 'x-csrf-token': b.token, accept: 'application/json' },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ deleted: 1 });
  });

  it('cross-site requests are refused even with a valid token (Sec-Fetch-Site, Origin)', async () => {
    const { c, token, serverId } = await loggedIn();
    const cases: Record<string, string>[] = [
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { origin: 'https://evil.example' },
      { origin: 'null' },
      { origin: t.url.replace('127.0.0.1', 'localhost') },
    ];
    for (const headers of cases) {
      const res = await c.post('/delete-server', { form: { serverId, _csrf: token }, headers });
      expect(res.status, JSON.stringify(headers)).toBe(403);
    }
    expect(await exists(serverId)).toBe(true);
    const same = await c.post('/delete-server', {
      form: { serverId, _csrf: token },
      headers: { origin: t.url, 'sec-fetch-site': 'same-origin' },
    });
    expect(same.status).toBe(303);
    expect(await exists(serverId)).toBe(false);
  });

  it('a text/plain POST (a CORS-safelisted form) cannot carry the token and is refused', async () => {
    const { c, token, serverId } = await loggedIn();
    const res = await c.post('/delete-server', {
      body: `serverId=${serverId}&_csrf=${token}`,
      headers: { 'content-type': 'text/plain' },
    });
    expect(res.status).toBe(403);
  });

  it('POST /login from another site is refused (login CSRF) and sets no cookie', async () => {
    const res = await t.client().post('/login', {
      form: { email: 'demo@example.com', password: PASSWORD },
      headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
    });
    expect(res.status).toBe(403);
    expect(res.headers.getSetCookie()).toEqual([]);
  });

  it('POST /logout without the token is 403 and keeps the session; revocation routes need it too', async () => {
    const { c } = await loggedIn();
    expect((await c.post('/logout')).status).toBe(403);
    expect((await c.post('/account/sessions/revoke-others')).status).toBe(403);
    expect((await c.post('/account/sessions/abc/revoke')).status).toBe(403);
    expect((await c.get('/api/me')).status).toBe(200);
  });

  it('GET /logout from another site asks for confirmation instead of logging out', async () => {
    const { c } = await loggedIn();
    const res = await c.get('/logout', { headers: { 'sec-fetch-site': 'cross-site' } });
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain('Log out?');
    expect(csrfFrom(html)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await c.get('/api/me')).status).toBe(200);
  });
});

describe('open redirect', () => {
  const bad = [
    '//evil.example',
    '//evil.example/path',
    '/\\evil.example',
    '\\\\evil.example',
    '/\\/evil.example',
    '/.//evil.example',
    '/a/..//evil.example',
    '/%2e//evil.example',
    'https://evil.example',
    'http:evil.example',
    'javascript:alert(1)',
    '/%2Fevil.example',
    '%2F%2Fevil.example',
    '/%5Cevil.example',
    '/%252F%252Fevil.example',
    '/%09/evil.example',
    '/\t/evil.example',
    ' /dashboard',
    '/ /evil.example',
    'evil.example',
    '',
  ];

  it('login never redirects off-site through next (urlencoded and encoded variants)', async () => {
    for (const next of bad) {
      const res = await loginForm(t.client(), 'demo@example.com', PASSWORD, { next });
      expect(res.status, next).toBe(303);
      expect(res.headers.get('location'), next).toBe('/dashboard');
    }
  });

  it('next from the query string is checked the same way', async () => {
    const res = await t.client().post(`/login?next=${encodeURIComponent('//evil.example')}`, {
      form: { email: 'demo@example.com', password: PASSWORD },
    });
    expect(res.headers.get('location')).toBe('/dashboard');
  });

  it('safeNext accepts same-site paths only', () => {
    for (const next of bad) expect(safeNext(next), next).toBeNull();
    expect(safeNext('/account/sessions')).toBe('/account/sessions');
    expect(safeNext('/dashboard?tab=1#top')).toBe('/dashboard?tab=1#top');
    expect(safeNext('/a/../dashboard')).toBe('/dashboard');
    expect(safeNext(42)).toBeNull();
  });
});

describe('errors never leak internals', () => {
  it('a failing query gives a 500 page/JSON without stack trace or SQL details', async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    await t.db.pool.query('ALTER TABLE servers RENAME TO servers_hidden');
    try {
      const res = await c.get('/dashboard');
      expect(res.status).toBe(500);
      const html = await res.text();
      expect(html).not.toMatch(/servers|relation|at \S+ \(|\.ts:\d+|Error:/);
      const json = await c.get('/dashboard', { headers: { accept: 'application/json' } });
      expect(json.status).toBe(500);
      expect(await json.json()).toEqual({
        error: 'internal_error',
        message: 'Something went wrong on our side. Please try again.',
      });
      // The details go to the log instead.
      expect(t.logs.text).toMatch(/servers/);
    } finally {
      await t.db.pool.query('ALTER TABLE servers_hidden RENAME TO servers');
    }
  });

  it('the raw session id and passwords never reach the logs', async () => {
    const c = t.client();
    await loginForm(c, 'demo@example.com');
    await loginForm(t.client(), 'demo@example.com', 'a wrong password 123');
    const cookie = decodeURIComponent(sessionCookie(c)!);
    const id = cookie.slice(2, cookie.lastIndexOf('.'));
    await c.get('/dashboard');
    await c.post('/logout', { form: { _csrf: await csrfOf(c) } });
    const text = t.logs.text;
    expect(text).not.toContain(id);
    expect(text).not.toContain(encodeURIComponent(id));
    expect(text).not.toContain(PASSWORD);
    expect(text).not.toContain('a wrong password 123');
    // …while the audit trail names the session by its hash.
    const events = t.logs.events();
    const key = hashId(id);
    const mine = events.filter((e) => e.sid === key).map((e) => e.event);
    expect(mine).toEqual(
      expect.arrayContaining(['session.renewed', 'session.created', 'auth.login', 'session.destroyed']),
    );
    const created = events.find((e) => e.sid === key && e.event === 'session.created')!;
    expect(created).toMatchObject({ userId: String(demo.id), ip: '127.0.0.1' });
    expect(events.some((e) => e.event === 'auth.login-failed' && e.userId === demo.id)).toBe(true);
  });
});
