/**
 * Re-authentication (ASVS 7.5.2, 7.5.3), black-box over HTTP: the demo's sessions page lists
 * sessions to any logged-in user, but revoking them needs the password from the last
 * REAUTH_WINDOW (here 2 s, so the tests can outwait it). A fresh login counts. Re-authenticating
 * is counted by the failed-login limits and renews the session id. Plus the library guard
 * (`requireRecentAuth`) on its own: legacy sessions, API answers, same-site `next`.
 */
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../app/config.js';
import {
  type AuthRequest,
  isRecentlyAuthenticated,
  ReauthenticationRequiredError,
  requireRecentAuth,
} from '../../src/auth/index.js';
import { hashId } from '../../src/core/id.js';
import { ConfigError } from '../../src/index.js';
import { csrfFrom, loginForm, PASSWORD, type RunningApp, sessionCookie, startApp } from '../app/harness.js';
import type { Client } from '../helpers/http.js';
import { parseCookieValue, refusedWithin, replay, secondServer, sleep } from './support.js';

/** The demo's REAUTH_WINDOW in these tests. */
const WINDOW = 2000;
/** Long enough after a login or re-auth for it to be stale. */
const outwait = () => sleep(WINDOW + 200);

let t: RunningApp;
let ipCounter = 0;
/** A client from its own address, so the failed-attempt limits of one test never touch another. */
const fresh = (app: RunningApp = t, ip = `198.18.1.${++ipCounter}`) => app.client({ 'x-forwarded-for': ip });

beforeAll(async () => {
  // The library's default failed-login limits (5 per account and address), as in production.
  t = await startApp({ config: { reauthWindow: WINDOW } });
  await t.createUser('step-up@example.com');
});
afterAll(() => t?.close());

async function loggedIn(c: Client = fresh(), email = 'step-up@example.com') {
  expect((await loginForm(c, email)).status).toBe(303);
  return c;
}

/** The storage key of a client's session: what the sessions page lists and revokes. */
const keyOf = (c: Client) => hashId(parseCookieValue(sessionCookie(c)!).id);

async function sessionsPage(c: Client, path = '/account/sessions') {
  const res = await c.get(path);
  expect(res.status).toBe(200);
  const html = await res.text();
  return { html, csrf: csrfFrom(html), asksPassword: html.includes('Confirm your password to manage') };
}

describe('revoking sessions needs a recent password (ASVS 7.5.2)', () => {
  it('a fresh login counts as recent: the page does not ask for the password and revoking works at once', async () => {
    const a = await loggedIn();
    const b = await loggedIn();
    const page = await sessionsPage(a);
    expect(page.asksPassword).toBe(false);
    const res = await a.post(`/account/sessions/${keyOf(b)}/revoke`, { form: { _csrf: page.csrf } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/account/sessions?notice=revoked');
    expect((await b.get('/api/me')).status).toBe(401);
  });

  it('after the window, revoking one or all other sessions is refused (303 back with a message) and the target session still works', async () => {
    const a = await loggedIn();
    const b = await loggedIn();
    const target = keyOf(b);
    await outwait();
    // Listing still works for any logged-in user; the page offers the confirm form.
    const page = await sessionsPage(a);
    expect(page.html).toContain(target);
    expect(page.asksPassword).toBe(true);
    expect(page.html).toMatch(
      /<form method="post" action="\/reauth"><input type="hidden" name="_csrf" value="[^"]+">\s*<input type="hidden" name="next" value="\/account\/sessions">/,
    );
    expect(page.html).toMatch(/name="password" type="password" autocomplete="current-password" required/);

    const one = await a.post(`/account/sessions/${target}/revoke`, { form: { _csrf: page.csrf } });
    expect(one.status).toBe(303);
    expect(one.headers.get('location')).toBe('/account/sessions?error=reauth_required');
    const all = await a.post('/account/sessions/revoke-others', { form: { _csrf: page.csrf } });
    expect(all.status).toBe(303);
    expect(all.headers.get('location')).toBe('/account/sessions?error=reauth_required');
    const back = await a.get('/account/sessions?error=reauth_required');
    const html = await back.text();
    expect(html).toContain('role="alert">Confirm your password first: this needs a recent sign-in.');
    expect(html).toContain(target);

    expect((await b.get('/api/me')).status).toBe(200);
    expect((await t.db.pool.query('SELECT 1 FROM session WHERE sid = $1', [target])).rowCount).toBe(1);
    expect((await a.get('/api/me')).status).toBe(200);
  });

  it('JSON clients get 401 {"error":"reauthentication_required"}; after POST /reauth (JSON) the revoke goes through', async () => {
    await t.createUser('api-step-up@example.com');
    const a = await loggedIn(fresh(), 'api-step-up@example.com');
    const b = await loggedIn(fresh(), 'api-step-up@example.com');
    const headers = { 'x-csrf-token': (await sessionsPage(a)).csrf, accept: 'application/json' };
    await outwait();
    for (const path of [`/account/sessions/${keyOf(b)}/revoke`, '/account/sessions/revoke-others']) {
      const res = await a.post(path, { headers });
      expect(res.status, path).toBe(401);
      expect(await res.json(), path).toMatchObject({ error: 'reauthentication_required' });
    }
    expect((await b.get('/api/me')).status).toBe(200);

    const wrong = await a.post('/reauth', { json: { password: 'not my password' }, headers });
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toMatchObject({ error: 'wrong_password' });
    const ok = await a.post('/reauth', { json: { password: PASSWORD }, headers });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ ok: true });
    // Same CSRF token after the id renewal: an API client goes on without fetching a page.
    const res = await a.post('/account/sessions/revoke-others', { headers });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ revoked: 1 });
    expect((await b.get('/api/me')).status).toBe(401);
  });

  it('after re-authenticating with the right password, revoking works: the revoked session is refused at once, here and on another server', async () => {
    const a = await loggedIn();
    const b = await loggedIn();
    const bCookie = sessionCookie(b)!;
    const other = await secondServer(t.db, { config: { reauthWindow: WINDOW } });
    try {
      // The other server has the session cached: only the invalidation can tell it.
      for (let i = 0; i < 3; i++) expect((await replay(other, bCookie).get('/api/me')).status).toBe(200);
      await outwait();
      const { csrf } = await sessionsPage(a);
      const confirm = await a.post('/reauth', {
        form: { _csrf: csrf, password: PASSWORD, next: '/account/sessions' },
      });
      expect(confirm.status).toBe(303);
      expect(confirm.headers.get('location')).toBe('/account/sessions?notice=reauthenticated');
      const page = await sessionsPage(a, '/account/sessions?notice=reauthenticated');
      expect(page.html).toContain('Password confirmed: you can revoke sessions now.');
      expect(page.asksPassword).toBe(false);

      const res = await a.post(`/account/sessions/${keyOf(b)}/revoke`, { form: { _csrf: page.csrf } });
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toBe('/account/sessions?notice=revoked');
      expect((await b.get('/api/me')).status).toBe(401);
      await refusedWithin(other, bCookie, 1000);
      expect((await a.get('/api/me')).status).toBe(200);
    } finally {
      await other.close();
    }
  });

  it('REAUTH_WINDOW sets the window: 5 minutes by default, any duration, never 0', () => {
    const env = { SESSION_SECRET: 'x'.repeat(40) };
    expect(loadConfig(env).reauthWindow).toBe(300_000);
    expect(loadConfig({ ...env, REAUTH_WINDOW: '90s' }).reauthWindow).toBe(90_000);
    expect(() => loadConfig({ ...env, REAUTH_WINDOW: '0' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...env, REAUTH_WINDOW: 'soon' })).toThrow(/REAUTH_WINDOW/);
  });

  it('ending this very session from the list is a logout: it never needs the password', async () => {
    const a = await loggedIn();
    await outwait();
    const { csrf } = await sessionsPage(a);
    const res = await a.post(`/account/sessions/${keyOf(a)}/revoke`, { form: { _csrf: csrf } });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/?message=Logged%20out%20successfully');
    expect((await a.get('/api/me')).status).toBe(401);
  });

  it('a session from before authenticatedAt was recorded counts as not recent', async () => {
    const a = await loggedIn();
    const b = await loggedIn();
    const key = keyOf(a);
    // What an older pgsession wrote: no authenticatedAt. Served by a server that never cached it.
    await t.db.pool.query(
      `UPDATE session SET sess = (sess::jsonb - 'authenticatedAt')::json WHERE sid = $1`,
      [key],
    );
    const other = await secondServer(t.db, { config: { reauthWindow: WINDOW } });
    try {
      const legacy = replay(other, sessionCookie(a)!);
      const page = await sessionsPage(legacy);
      expect(page.asksPassword).toBe(true);
      const res = await legacy.post(`/account/sessions/${keyOf(b)}/revoke`, { form: { _csrf: page.csrf } });
      expect(res.headers.get('location')).toBe('/account/sessions?error=reauth_required');
      expect((await b.get('/api/me')).status).toBe(200);
    } finally {
      await other.close();
    }
  });
});

describe('POST /reauth (ASVS 7.5.3)', () => {
  it('success renews the session id: the old cookie is dead at once, the new one stays logged in; audited', async () => {
    const c = await loggedIn();
    const before = sessionCookie(c)!;
    const { csrf } = await sessionsPage(c);
    const res = await c.post('/reauth', { form: { _csrf: csrf, password: PASSWORD } });
    expect(res.status).toBe(303);
    const after = sessionCookie(c)!;
    expect(parseCookieValue(after).id).not.toBe(parseCookieValue(before).id);
    expect((await replay(t, before).get('/api/me')).status).toBe(401);
    expect((await c.get('/api/me')).status).toBe(200);
    const oldKey = hashId(parseCookieValue(before).id);
    expect((await t.db.pool.query('SELECT 1 FROM session WHERE sid = $1', [oldKey])).rowCount).toBe(0);
    const event = t.logs.events().find((e) => e.event === 'auth.reauthenticated' && e.previousKey === oldKey);
    expect(event).toMatchObject({ sid: keyOf(c) });
    expect(JSON.stringify(t.logs.lines)).not.toContain(PASSWORD);
  });

  it('a wrong password is refused and changes nothing; counted like a login: the 6th wrong one from one address is 429', async () => {
    const ip = '198.18.2.1';
    const c = await loggedIn(fresh(t, ip));
    const b = await loggedIn();
    const before = sessionCookie(c)!;
    await outwait();
    const { csrf } = await sessionsPage(c);
    const statuses: number[] = [];
    const locations: (string | null)[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await c.post('/reauth', {
        form: { _csrf: csrf, password: `guess number ${i}`, next: '/account/sessions' },
      });
      statuses.push(res.status);
      locations.push(res.headers.get('location'));
    }
    expect(statuses).toEqual([303, 303, 303, 303, 303, 429]);
    expect(locations[0]).toBe('/reauth?error=wrong_password&next=%2Faccount%2Fsessions');
    expect(await (await c.get(locations[0]!)).text()).toContain('That password is not correct.');
    // The right password from this address now waits too, and so does the login form: one budget.
    const right = await c.post('/reauth', { form: { _csrf: csrf, password: PASSWORD } });
    expect(right.status).toBe(429);
    expect(right.headers.get('retry-after')).toMatch(/^\d+$/);
    expect((await loginForm(fresh(t, ip), 'step-up@example.com')).status).toBe(429);
    // Nothing changed: same id, still not recent, the other session untouched.
    expect(sessionCookie(c)).toBe(before);
    const refused = await c.post(`/account/sessions/${keyOf(b)}/revoke`, { form: { _csrf: csrf } });
    expect(refused.headers.get('location')).toBe('/account/sessions?error=reauth_required');
    expect((await b.get('/api/me')).status).toBe(200);
    const failed = t.logs.events().filter((e) => e.event === 'auth.login-failed' && e.ip === ip);
    expect(failed).toHaveLength(5);
    expect(t.logs.events().some((e) => e.event === 'auth.rate-limited' && e.ip === ip)).toBe(true);
  });

  it('needs a login and the CSRF token', async () => {
    const anon = await fresh().post('/reauth', { form: { password: PASSWORD } });
    expect(anon.status).toBe(302);
    expect(anon.headers.get('location')).toBe('/login?error=login_required');
    const c = await loggedIn();
    const before = sessionCookie(c);
    const forged = await c.post('/reauth', { form: { password: PASSWORD } });
    expect(forged.status).toBe(403);
    expect(sessionCookie(c)).toBe(before);
    const page = await fresh().get('/reauth');
    expect(page.status).toBe(302);
    expect(page.headers.get('location')).toBe('/login?error=login_required&next=%2Freauth');
  });

  it('`next` stays same-site: off-site values are dropped, same-site paths are followed', async () => {
    const c = await loggedIn();
    // Each wrong attempt below follows a right one, which gives the counter back: no 429 here.
    for (const next of [
      'https://evil.example/',
      '//evil.example/',
      '/\\evil.example',
      '/.//evil.example',
      '/%2F%2Fevil.example',
      'javascript:alert(1)',
    ]) {
      const { csrf } = await sessionsPage(c);
      const ok = await c.post('/reauth', { form: { _csrf: csrf, password: PASSWORD, next } });
      expect(ok.headers.get('location'), next).toBe('/account/sessions?notice=reauthenticated');
      const wrong = await c.post('/reauth', { form: { _csrf: csrf, password: 'wrong password', next } });
      expect(wrong.headers.get('location'), next).toBe('/reauth?error=wrong_password');
      const page = await (await c.get(`/reauth?next=${encodeURIComponent(next)}`)).text();
      expect(page, next).not.toContain('name="next"');
    }
    const { csrf } = await sessionsPage(c);
    const ok = await c.post('/reauth', {
      form: { _csrf: csrf, password: PASSWORD, next: '/dashboard?tab=1' },
    });
    expect(ok.headers.get('location')).toBe('/dashboard?tab=1');
    const page = await (await c.get('/reauth?next=%2Faccount')).text();
    expect(page).toContain('<input type="hidden" name="next" value="/account">');
  });
});

/** A request as the guard sees it, and what it answered. */
function run(
  guard: ReturnType<typeof requireRecentAuth>,
  req: { method?: string; url?: string; accept?: string; session?: Record<string, unknown> },
) {
  const headers: Record<string, string> = {};
  const out: { status?: number; location?: string; error?: unknown; passed: boolean } = { passed: false };
  const res = {
    statusCode: 200,
    setHeader(name: string, value: string) {
      headers[name.toLowerCase()] = value;
    },
    end() {
      out.status = this.statusCode;
      out.location = headers.location;
    },
  };
  const request = {
    method: req.method ?? 'GET',
    url: req.url ?? '/settings',
    headers: req.accept ? { accept: req.accept } : {},
    session: req.session,
  } as unknown as AuthRequest;
  guard(request, res as unknown as ServerResponse, (err?: unknown) => {
    out.error = err;
    out.passed = err === undefined;
  });
  return { ...out, cacheControl: headers['cache-control'] };
}

describe('requireRecentAuth (the library guard)', () => {
  const now = 1_000_000_000_000;
  const guard = requireRecentAuth({ within: '5m', now: () => now });
  const session = (authenticatedAt?: number) => ({
    userId: 7,
    userRole: 'user',
    ...(authenticatedAt === undefined ? {} : { authenticatedAt }),
  });

  it('lets a session through when its password was verified within the window, and only then', () => {
    expect(run(guard, { session: session(now - 299_000) })).toMatchObject({ passed: true });
    expect(run(guard, { session: session(now - 300_000) })).toMatchObject({ passed: true });
    const stale = run(guard, { session: session(now - 300_001) });
    expect(stale).toMatchObject({ passed: false, status: 303 });
    expect(stale.cacheControl).toBe('no-store');
  });

  it('sessions without authenticatedAt (created before it was recorded) are not recent', () => {
    expect(run(guard, { session: session() })).toMatchObject({ passed: false, status: 303 });
    const req = { session: session() } as unknown as AuthRequest;
    expect(isRecentlyAuthenticated(req, '1h', now)).toBe(false);
    expect(isRecentlyAuthenticated({ session: session(now) } as unknown as AuthRequest, '1h', now)).toBe(
      true,
    );
  });

  it('HTML: 303 to the re-auth page with a same-site next (GET only); API: 401 reauthentication_required', () => {
    const get = run(guard, { url: '/settings?tab=keys', session: session() });
    expect(get.location).toBe('/reauth?error=reauth_required&next=%2Fsettings%3Ftab%3Dkeys');
    const offSite = run(guard, { url: '//evil.example/x', session: session() });
    expect(offSite.location).toBe('/reauth?error=reauth_required');
    const post = run(guard, { method: 'POST', url: '/settings/delete', session: session() });
    expect(post.location).toBe('/reauth?error=reauth_required');
    const api = run(guard, { url: '/api/keys', session: session() });
    expect(api.error).toBeInstanceOf(ReauthenticationRequiredError);
    expect(api.error).toMatchObject({ status: 401, code: 'PGSESSION_REAUTHENTICATION_REQUIRED' });
    const json = run(guard, { method: 'POST', accept: 'application/json', session: session() });
    expect(json.error).toBeInstanceOf(ReauthenticationRequiredError);
    const custom = requireRecentAuth({ within: 1000, reauthPath: '/account/sessions', now: () => now });
    expect(run(custom, { method: 'POST', session: session(now - 5000) }).location).toBe(
      '/account/sessions?error=reauth_required',
    );
  });

  it('not logged in: the login redirect (or 401), as requireAuth; bad options are refused at start-up', () => {
    expect(run(guard, { url: '/settings' })).toMatchObject({
      status: 302,
      location: '/login?error=login_required&next=%2Fsettings',
    });
    expect(run(guard, { url: '/api/keys' }).error).toMatchObject({
      status: 401,
      code: 'PGSESSION_UNAUTHORIZED',
    });
    expect(() => requireRecentAuth({ within: 'soon' })).toThrow(ConfigError);
    expect(() => requireRecentAuth({ within: 0 })).toThrow(ConfigError);
    expect(() => requireRecentAuth({ within: '5m', reauthPath: 'https://evil.example/' })).toThrow(
      ConfigError,
    );
  });
});
