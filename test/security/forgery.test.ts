/**
 * Request forgery and redirects (ASVS 3.5.1–3.5.3, 3.5.6, 3.5.8; "can't be forged"): every
 * state-changing route of the demo app refuses cross-site requests, requests without the
 * session's token and CORS-safelisted `text/plain` bodies, and changes nothing; no GET changes
 * state behind the user's back; `next` never sends anyone to another site.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashId } from '../../src/core/id.js';
import { csrfOf, loginForm, PASSWORD, type RunningApp, sessionCookie, startApp } from '../app/harness.js';
import type { Client } from '../helpers/http.js';
import { NO_LIMITS, parseCookieValue, setCookieOf } from './support.js';

let t: RunningApp;
let victim: { id: number };
let target: { id: number };

beforeAll(async () => {
  t = await startApp({ rateLimit: NO_LIMITS });
  victim = await t.createUser('victim@example.com');
  target = await t.createUser('target@example.com');
  await t.createUser('admin@example.com', 'admin');
});
afterAll(() => t?.close());

async function loggedIn(email = 'victim@example.com'): Promise<Client> {
  const c = t.client();
  expect((await loginForm(c, email)).status).toBe(303);
  return c;
}

const alive = async (c: Client) => (await c.get('/api/me')).status === 200;

/**
 * One state-changing route: how to prepare a change it would make, the form it takes, and how
 * to tell whether the change happened.
 */
interface Scenario {
  name: string;
  prepare(): Promise<{
    actor: Client;
    path: string;
    form: Record<string, string>;
    changed(): Promise<boolean>;
  }>;
}

const scenarios: Scenario[] = [
  {
    name: 'POST /logout',
    prepare: async () => {
      const actor = await loggedIn();
      return { actor, path: '/logout', form: {}, changed: async () => !(await alive(actor)) };
    },
  },
  {
    name: 'POST /delete-server',
    prepare: async () => {
      const actor = await loggedIn();
      const { rows } = await t.db.pool.query<{ id: string }>(
        "INSERT INTO servers (user_id, name) VALUES ($1, 'prod-db') RETURNING id",
        [victim.id],
      );
      const id = rows[0]!.id;
      return {
        actor,
        path: '/delete-server',
        form: { serverId: id },
        changed: async () =>
          (await t.db.pool.query('SELECT 1 FROM servers WHERE id = $1', [id])).rowCount === 0,
      };
    },
  },
  {
    name: 'POST /account/sessions/revoke-others',
    prepare: async () => {
      const actor = await loggedIn();
      const other = await loggedIn();
      return {
        actor,
        path: '/account/sessions/revoke-others',
        form: {},
        changed: async () => !(await alive(other)),
      };
    },
  },
  {
    name: 'POST /account/sessions/:id/revoke',
    prepare: async () => {
      const actor = await loggedIn();
      const other = await loggedIn();
      const key = hashId(parseCookieValue(sessionCookie(other)!).id);
      return {
        actor,
        path: `/account/sessions/${key}/revoke`,
        form: {},
        changed: async () => !(await alive(other)),
      };
    },
  },
  {
    name: 'POST /admin/users/:id/revoke-sessions',
    prepare: async () => {
      const actor = await loggedIn('admin@example.com');
      const other = await loggedIn('target@example.com');
      return {
        actor,
        path: `/admin/users/${target.id}/revoke-sessions`,
        form: {},
        changed: async () => !(await alive(other)),
      };
    },
  },
  {
    name: 'POST /account/password',
    prepare: async () => {
      const actor = await loggedIn();
      return {
        actor,
        path: '/account/password',
        form: { currentPassword: PASSWORD, newPassword: 'attacker chosen passphrase' },
        changed: async () =>
          (await loginForm(t.client(), 'victim@example.com', PASSWORD)).headers.get('location') !==
          '/dashboard',
      };
    },
  },
  {
    name: 'POST /account/email',
    prepare: async () => {
      const actor = await loggedIn();
      return {
        actor,
        path: '/account/email',
        form: { currentPassword: PASSWORD, email: 'attacker@evil.example' },
        changed: async () => (await t.app.auth.users.findByEmail('victim@example.com')) === null,
      };
    },
  },
];

/** The forgeries: each must be refused with 403 whatever the route. */
const forgeries: Array<{
  name: string;
  headers: Record<string, string>;
  token: 'valid' | 'none' | 'wrong' | 'text';
}> = [
  {
    name: 'cross-site form (Origin of another site)',
    headers: { origin: 'https://evil.example' },
    token: 'valid',
  },
  { name: 'Sec-Fetch-Site: cross-site', headers: { 'sec-fetch-site': 'cross-site' }, token: 'valid' },
  {
    name: 'Sec-Fetch-Site: same-site (a sibling subdomain)',
    headers: { 'sec-fetch-site': 'same-site' },
    token: 'valid',
  },
  { name: 'Origin: null (sandboxed frame)', headers: { origin: 'null' }, token: 'valid' },
  { name: 'same-origin but no token', headers: { 'sec-fetch-site': 'same-origin' }, token: 'none' },
  { name: 'a wrong token', headers: {}, token: 'wrong' },
  { name: 'Content-Type: text/plain (no preflight) carrying the token', headers: {}, token: 'text' },
];

describe('cross-site and token-less state changes are refused (ASVS 3.5.1, 3.5.2)', () => {
  for (const scenario of scenarios) {
    it(`${scenario.name}: every forgery is 403 and changes nothing; the genuine request works`, async () => {
      const { actor, path, form, changed } = await scenario.prepare();
      const token = await csrfOf(actor);
      for (const forgery of forgeries) {
        const init =
          forgery.token === 'text'
            ? {
                body: new URLSearchParams({ ...form, _csrf: token }).toString(),
                headers: { ...forgery.headers, 'content-type': 'text/plain' },
              }
            : {
                form: {
                  ...form,
                  ...(forgery.token === 'valid' ? { _csrf: token } : {}),
                  ...(forgery.token === 'wrong' ? { _csrf: `${token.slice(0, -2)}xx` } : {}),
                },
                headers: forgery.headers,
              };
        const before = sessionCookie(actor);
        const res = await actor.post(path, init);
        expect(res.status, `${scenario.name} / ${forgery.name}`).toBe(403);
        // At most the same cookie re-sent (sliding expiry): never a new, renewed or cleared one.
        const line = setCookieOf(res);
        if (line !== undefined) expect(line.startsWith(`sessionId=${before};`), forgery.name).toBe(true);
        expect(await changed(), `${scenario.name} / ${forgery.name}`).toBe(false);
      }
      // JSON from a script on another origin (it would need a preflight we never grant).
      const json = await actor.post(path, {
        json: form,
        headers: { origin: 'https://evil.example', 'x-csrf-token': token, accept: 'application/json' },
      });
      expect(json.status).toBe(403);
      expect(await json.json()).toMatchObject({ error: 'csrf' });
      expect(await changed()).toBe(false);
      // The same request from the site itself goes through: the refusals above were not vacuous.
      const genuine = await actor.post(path, {
        form: { ...form, _csrf: token },
        headers: { origin: t.url, 'sec-fetch-site': 'same-origin' },
      });
      expect(genuine.status).toBe(303);
      expect(await changed()).toBe(true);
      // Put things back for the next scenario.
      if (scenario.name === 'POST /account/password') await t.app.auth.users.setPassword(victim.id, PASSWORD);
      if (scenario.name === 'POST /account/email') {
        await t.db.pool.query("UPDATE users SET email = 'victim@example.com' WHERE id = $1", [victim.id]);
      }
    });
  }

  it('POST /login from another site (login CSRF) is 403 and sets no cookie', async () => {
    const cases: Record<string, string>[] = [
      { origin: 'https://evil.example' },
      { 'sec-fetch-site': 'cross-site' },
      { origin: 'null' },
    ];
    for (const headers of cases) {
      const res = await t.client().post('/login', {
        form: { email: 'victim@example.com', password: PASSWORD },
        headers,
      });
      expect(res.status, JSON.stringify(headers)).toBe(403);
      expect(res.headers.getSetCookie()).toEqual([]);
    }
  });
});

describe('no state change through GET, HEAD or OPTIONS (ASVS 3.5.3)', () => {
  it('the state-changing routes do not answer safe methods, and nothing changes', async () => {
    for (const scenario of scenarios.filter((s) => s.name !== 'POST /logout')) {
      const { actor, path, form, changed } = await scenario.prepare();
      const token = await csrfOf(actor);
      const query = new URLSearchParams({ ...form, _csrf: token }).toString();
      for (const method of ['GET', 'HEAD']) {
        const res = await actor.request(`${path}?${query}`, { method });
        expect([404, 405], `${method} ${path}`).toContain(res.status);
        expect(await changed(), `${method} ${path}`).toBe(false);
      }
      // OPTIONS may be answered (Express lists the allowed methods) but never acts.
      await actor.request(`${path}?${query}`, { method: 'OPTIONS' });
      expect(await changed(), `OPTIONS ${path}`).toBe(false);
    }
  });

  it('GET /logout (kept from the seed) only logs out on a same-origin or typed navigation; from another site it asks', async () => {
    const c = await loggedIn();
    // An <img src> or a link on another site.
    for (const headers of [
      { 'sec-fetch-site': 'cross-site', 'sec-fetch-dest': 'image', 'sec-fetch-mode': 'no-cors' },
      { 'sec-fetch-site': 'cross-site', 'sec-fetch-dest': 'document', 'sec-fetch-mode': 'navigate' },
      { 'sec-fetch-site': 'same-site', 'sec-fetch-dest': 'document', 'sec-fetch-mode': 'navigate' },
    ]) {
      const res = await c.get('/logout', { headers });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('Log out?');
      expect(await alive(c)).toBe(true);
    }
    const res = await c.get('/logout', { headers: { 'sec-fetch-site': 'same-origin' } });
    expect(res.status).toBe(302);
    expect(await alive(c)).toBe(false);
  });
});

describe('cross-origin reads (ASVS 3.5.6, 3.5.8)', () => {
  it('no JSONP: ?callback= still answers JSON, never script', async () => {
    const c = await loggedIn();
    const res = await c.get('/api/me?callback=steal&jsonp=steal');
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.text()).not.toMatch(/steal\s*\(/);
  });

  it('no page ships a script or a postMessage listener, and the CSP allows no inline script (ASVS 3.5.5, 3.5.7)', async () => {
    const c = await loggedIn();
    const anonymous = t.client();
    const pages: Array<[Client, string]> = [
      [anonymous, '/'],
      [anonymous, '/login'],
      ...['/dashboard', '/account', '/account/sessions', '/account/notices', '/account/mfa', '/reauth'].map(
        (p): [Client, string] => [c, p],
      ),
    ];
    for (const [client, p] of pages) {
      const res = await client.get(p);
      expect(res.status, p).toBe(200);
      const html = await res.text();
      expect(html, p).not.toMatch(/<script|postMessage|\son[a-z]+\s*=/i);
      const csp = res.headers.get('content-security-policy') ?? '';
      const directive = (name: string) =>
        csp
          .split(';')
          .map((d) => d.trim())
          .find((d) => d.startsWith(`${name} `));
      expect(directive('script-src'), p).toBe("script-src 'self'");
      expect(directive('script-src-attr'), p).toBe("script-src-attr 'none'");
    }
  });

  it('authenticated responses tell browsers not to hand them to other origins (CORP, no CORS)', async () => {
    const c = await loggedIn();
    for (const p of ['/dashboard', '/api/me', '/account/sessions']) {
      const res = await c.get(p, { headers: { origin: 'https://evil.example' } });
      expect(res.headers.get('cross-origin-resource-policy'), p).toBe('same-origin');
      expect(res.headers.get('access-control-allow-origin'), p).toBeNull();
      expect(res.headers.get('x-frame-options') ?? '', p).toMatch(/SAMEORIGIN|DENY/);
    }
  });
});

describe('open redirect through next', () => {
  const tricky = [
    '//evil.example',
    '///evil.example',
    '////evil.example',
    '//evil.example/%2F..',
    '/\\evil.example',
    '\\/evil.example',
    '\\\\evil.example',
    '/\\/evil.example',
    '/\t/evil.example',
    '/%09/evil.example',
    '/%2F/evil.example',
    '/%2f%2fevil.example',
    '%2F%2Fevil.example',
    '/%5C%5Cevil.example',
    '/%255C%255Cevil.example',
    '/%252F%252Fevil.example',
    '/.//evil.example',
    '/..//evil.example',
    '/a/..//evil.example',
    '/%2e//evil.example',
    '/%2e%2e//evil.example',
    '/./\\evil.example',
    'https://evil.example',
    'HTTPS://evil.example',
    'https:evil.example',
    'https:/evil.example',
    '//evil.example@127.0.0.1',
    'javascript:alert(1)',
    'JaVaScRiPt:alert(1)',
    'java\tscript:alert(1)',
    'data:text/html,<script>alert(1)</script>',
    '/\u2215\u2215evil.example',
    '/%E2%88%95%E2%88%95evil.example',
    '/\u3002evil.example',
    ' //evil.example',
    '\n//evil.example',
    '/\r\nSet-Cookie: x=1',
    '/%0d%0aSet-Cookie:%20x=1',
    'evil.example',
    '',
  ];
  const base = 'http://app.test';
  /** A Location a browser would follow on this site only. */
  const sameSite = (location: string | null) => {
    if (location === null) return false;
    if (!location.startsWith('/') || location.startsWith('//') || location.includes('\\')) return false;
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse.
    if (/[\u0000-\u0020\u007f]/.test(location)) return false;
    return new URL(location, base).origin === base;
  };

  it('POST /login (form field and query string): the redirect stays on this site', async () => {
    for (const next of tricky) {
      const res = await loginForm(t.client(), 'victim@example.com', PASSWORD, { next });
      expect(res.status, JSON.stringify(next)).toBe(303);
      expect(
        sameSite(res.headers.get('location')),
        `${JSON.stringify(next)} → ${res.headers.get('location')}`,
      ).toBe(true);
      const viaQuery = await t.client().post(`/login?next=${encodeURIComponent(next)}`, {
        form: { email: 'victim@example.com', password: PASSWORD },
      });
      expect(sameSite(viaQuery.headers.get('location')), JSON.stringify(next)).toBe(true);
      expect(viaQuery.headers.getSetCookie().some((l) => l.startsWith('x='))).toBe(false);
    }
  });

  it('GET /login when already logged in redirects to next: same check', async () => {
    const c = await loggedIn();
    for (const next of tricky) {
      const res = await c.get(`/login?next=${encodeURIComponent(next)}`);
      expect(res.status, JSON.stringify(next)).toBe(302);
      expect(
        sameSite(res.headers.get('location')),
        `${JSON.stringify(next)} → ${res.headers.get('location')}`,
      ).toBe(true);
    }
  });

  it('the login form keeps only a safe next, and a failed login keeps it safe too', async () => {
    for (const next of tricky) {
      const page = await t.client().get(`/login?next=${encodeURIComponent(next)}`);
      const html = await page.text();
      const kept = /name="next" value="([^"]*)"/.exec(html)?.[1];
      if (kept !== undefined)
        expect(sameSite(kept.replaceAll('&amp;', '&')), JSON.stringify(next)).toBe(true);
      const failed = await loginForm(t.client(), 'victim@example.com', 'wrong password!', { next });
      const location = new URL(failed.headers.get('location')!, base);
      expect(location.origin).toBe(base);
      const carried = location.searchParams.get('next');
      if (carried !== null) expect(sameSite(carried), JSON.stringify(next)).toBe(true);
    }
    // And a genuine same-site next still works.
    const ok = await loginForm(t.client(), 'victim@example.com', PASSWORD, { next: '/account/sessions?x=1' });
    expect(ok.headers.get('location')).toBe('/account/sessions?x=1');
  });
});
