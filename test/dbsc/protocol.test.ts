/**
 * DBSC (W3C Device Bound Session Credentials) over HTTP, on the Express middleware and PgStore
 * with its cache: a protocol-level browser (dbsc-client.ts) registers a device key after login,
 * refreshes the short-lived bound cookie by signing server challenges, and the tests check what
 * a copied cookie, a replayed or stale challenge, a wrong key, logout and revocation get.
 */
import { describe, expect, it } from 'vitest';
import { session } from '../../src/adapters/express/middleware.js';
import { ConfigError } from '../../src/core/errors.js';
import { createSessionMetrics } from '../../src/metrics/index.js';
import { Client } from '../helpers/http.js';
import { DbscBrowser, deviceKey, parseChallenge, proof } from './dbsc-client.js';
import {
  type Clock,
  dbscApp,
  dbscSuite,
  eventsOf,
  MINUTE,
  revokeUser,
  SECRET,
  storedDevice,
} from './support.js';

const suite = dbscSuite();
const { closers } = suite;
let clock: Clock;

function start(enforce: 'off' | 'report' | 'require' = 'report') {
  clock = { now: Date.now() };
  return dbscApp(suite.db.pool, clock, { enforce }, closers);
}

/** A browser that logged in and registered its key; returns it with the session's storage key. */
async function boundBrowser(
  url: string,
  events: Parameters<typeof eventsOf>[0],
  alg: 'ES256' | 'RS256' = 'ES256',
  user = '42',
) {
  const browser = new DbscBrowser(url, alg);
  expect((await browser.post(`/login?user=${user}`)).status).toBe(200);
  const res = await browser.register();
  expect(res.status).toBe(200);
  const registered = eventsOf(events, 'device-registered').at(-1)!;
  return { browser, key: registered.key };
}

describe('registration', () => {
  it('a login offers registration; a DBSC browser registers its key, stored with the session, and gets a bound cookie', async () => {
    const app = await start();
    const browser = new DbscBrowser(app.url);
    const login = await browser.post('/login');
    expect(login.headers.get('secure-session-registration')).toMatch(
      /^\(ES256 RS256\);path="\/\.pgsession\/dbsc\/register";challenge="[0-9a-z]+\.[\w-]{16}\.[\w-]{43}"$/,
    );
    // Only the response that logs in offers it.
    expect((await browser.get('/me')).headers.get('secure-session-registration')).toBeNull();

    const res = await browser.register();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    // No challenge on the registration response (Chrome reports a challenge error for one).
    expect(res.headers.get('secure-session-challenge')).toBeNull();
    const setCookie = res.headers.getSetCookie();
    expect(setCookie).toHaveLength(1);
    expect(setCookie[0]).toMatch(
      /^connect\.sid\.bound=[0-9a-z]+\.[\w-]{43}; Max-Age=600; Path=\/; HttpOnly; SameSite=Lax$/,
    );
    const instructions = browser.session!;
    expect(instructions.session_identifier).toMatch(/^[\w-]{22}$/);
    expect(instructions.refresh_url).toBe('/.pgsession/dbsc/refresh');
    expect(instructions.scope).toEqual({ include_site: false });
    expect(instructions.credentials).toEqual([
      { type: 'cookie', name: 'connect.sid.bound', attributes: 'Path=/; HttpOnly; SameSite=Lax' },
    ]);

    const [registered] = eventsOf(app.events, 'device-registered');
    expect(registered).toMatchObject({ userId: '42', alg: 'ES256' });
    const device = await storedDevice(suite.db.pool, registered!.key);
    expect(device).toMatchObject({
      alg: 'ES256',
      id: instructions.session_identifier,
      jwk: { kty: 'EC', crv: 'P-256', x: browser.key.jwk.x, y: browser.key.jwk.y },
    });
    expect(device).not.toHaveProperty('jwk.d');
    // The bound session is served, with nothing to report.
    expect(await (await browser.get('/me')).json()).toEqual({ userId: 42 });
    expect(eventsOf(app.events, 'device-unbound-request')).toEqual([]);
  });

  it('RS256 keys register and refresh too', async () => {
    const app = await start('require');
    const { browser, key } = await boundBrowser(app.url, app.events, 'RS256');
    expect(await storedDevice(suite.db.pool, key)).toMatchObject({ alg: 'RS256', jwk: { kty: 'RSA' } });
    clock.now += 11 * MINUTE;
    expect((await browser.refresh()).status).toBe(200);
    expect(await (await browser.get('/me')).json()).toEqual({ userId: 42 });
  });

  it('a browser without DBSC never registers and is unaffected, even under require', async () => {
    const app = await start('require');
    const plain = new Client(app.url);
    await plain.post('/login');
    clock.now += 60 * MINUTE;
    expect(await (await plain.get('/me')).json()).toEqual({ userId: 42 });
    expect(eventsOf(app.events, 'device-unbound-request')).toEqual([]);
  });

  it('refuses a proof by another key than the one it carries, a foreign or expired challenge, a second registration, and bad input, each with a clear 4xx', async () => {
    const app = await start();
    const browser = new DbscBrowser(app.url);
    await browser.post('/login');
    const offer = browser.offer!;
    const other = deviceKey();
    const send = (value: string | undefined, method = 'POST') =>
      browser.request(offer.path, {
        method,
        headers: value === undefined ? {} : { 'secure-session-response': value },
      });
    const cases: Array<[string | undefined, number, string]> = [
      [undefined, 400, 'malformed'],
      ['garbage', 400, 'malformed'],
      ['"a.b.c"', 400, 'malformed'],
      [`"${proof(browser.key, { jti: offer.challenge }, { alg: 'none' })}"`, 400, 'algorithm'],
      [`"${proof(browser.key, { jti: offer.challenge }, { alg: 'HS256' })}"`, 400, 'algorithm'],
      [
        `"${proof(browser.key, { jti: offer.challenge }, { jwk: { kty: 'EC', crv: 'P-384', x: 'AA', y: 'AA' } })}"`,
        400,
        'key',
      ],
      [
        `"${proof(browser.key, { jti: offer.challenge }, { jwk: { ...browser.key.jwk, x: 'AAAA' } })}"`,
        400,
        'key',
      ],
      [`"${proof(browser.key, { jti: offer.challenge }, { jwk: 'nope' })}"`, 400, 'key'],
      // Signed by another key than the JWK it carries.
      [`"${proof(other, { jti: offer.challenge }, { jwk: browser.key.jwk })}"`, 400, 'signature'],
      [`"${proof(browser.key, { jti: 'made-up' }, { jwk: browser.key.jwk })}"`, 400, 'challenge'],
      [`"${proof(browser.key, {}, { jwk: browser.key.jwk })}"`, 400, 'challenge'],
    ];
    for (const [value, status, reason] of cases) {
      const res = await send(value);
      expect([value, res.status]).toEqual([value, status]);
      expect(res.headers.getSetCookie()).toEqual([]);
      expect(eventsOf(app.events, 'device-proof-refused').at(-1)).toMatchObject({
        endpoint: 'registration',
        reason,
      });
    }
    expect((await send(undefined, 'GET')).status).toBe(405);

    // A challenge issued to another session.
    const other2 = new DbscBrowser(app.url);
    await other2.post('/login?user=7');
    expect((await browser.register({ challenge: other2.offer!.challenge })).status).toBe(400);
    // An expired challenge (older than challengeMaxAge, 20 minutes by default).
    clock.now += 21 * MINUTE;
    expect((await browser.register()).status).toBe(400);
    expect(eventsOf(app.events, 'device-proof-refused').at(-1)?.reason).toBe('challenge-expired');
    // Nothing was bound by any of these.
    const key = eventsOf(app.events, 'device-proof-refused').at(-1)!.key!;
    expect(await storedDevice(suite.db.pool, key)).toBeNull();

    // Once bound, a session does not take a second key (a new login, a new id, does).
    const bound = await boundBrowser(app.url, app.events);
    bound.browser.offer = { ...offer, challenge: offer.challenge };
    const again = await bound.browser.register();
    expect(again.status).toBe(400);
    expect(eventsOf(app.events, 'device-proof-refused').at(-1)?.reason).toBe('already-bound');
    // No session cookie at all.
    const stranger = new DbscBrowser(app.url);
    stranger.offer = offer;
    expect((await stranger.register()).status).toBe(401);
  });
});

describe('refresh', () => {
  it('an expired bound cookie is refreshed: a 403 challenge round, then the signed challenge gets a new cookie and the next challenge', async () => {
    const app = await start('require');
    const { browser, key } = await boundBrowser(app.url, app.events);
    const firstCookie = browser.jar.get('connect.sid.bound');
    clock.now += 11 * MINUTE;
    // The browser holds no challenge yet: it asks, and is handed one.
    const round = await browser.refreshOnce();
    expect(round.status).toBe(403);
    const issued = parseChallenge(round.headers.get('secure-session-challenge'))!;
    expect(issued.id).toBe(browser.session!.session_identifier);
    expect(round.headers.getSetCookie()).toEqual([]);

    const ok = await browser.refreshOnce();
    expect(ok.status).toBe(200);
    const next = parseChallenge(ok.headers.get('secure-session-challenge'))!;
    expect(next.challenge).not.toBe(issued.challenge);
    expect(browser.jar.get('connect.sid.bound')).not.toBe(firstCookie);
    expect(((await ok.json()) as { session_identifier: string }).session_identifier).toBe(
      browser.session!.session_identifier,
    );
    expect(await (await browser.get('/me')).json()).toEqual({ userId: 42 });
    expect(eventsOf(app.events, 'device-refreshed')).toEqual([
      { type: 'device-refreshed', key, userId: '42' },
    ]);

    // The next refresh uses the challenge the last one handed out: one round trip.
    clock.now += 11 * MINUTE;
    const single = await browser.refreshOnce();
    expect(single.status).toBe(200);
    // Every refresh rotates both the cookie value and the challenge.
    expect(parseChallenge(single.headers.get('secure-session-challenge'))!.challenge).not.toBe(
      next.challenge,
    );
  });

  it('a replayed proof, a stale or foreign challenge get a new challenge and no cookie; a proof by another key ends the refresh with 401', async () => {
    const app = await start('require');
    const { browser, key } = await boundBrowser(app.url, app.events);
    clock.now += 11 * MINUTE;
    expect((await browser.refresh()).status).toBe(200);
    const used = browser.lastProof!;

    // Replayed: the very proof that was just accepted.
    const replay = await browser.refreshOnce({ jwt: used });
    expect(replay.status).toBe(403);
    expect(replay.headers.getSetCookie()).toEqual([]);
    expect(eventsOf(app.events, 'device-proof-refused').at(-1)).toMatchObject({
      reason: 'challenge-used',
      key,
    });

    // Stale: the cached challenge, used after challengeMaxAge.
    clock.now += 21 * MINUTE;
    const stale = await browser.refreshOnce();
    expect(stale.status).toBe(403);
    expect(eventsOf(app.events, 'device-proof-refused').at(-1)?.reason).toBe('challenge-expired');
    expect((await browser.refreshOnce()).status).toBe(200);

    // A challenge issued to another session, signed by the right key.
    const other = await boundBrowser(app.url, app.events);
    clock.now += 11 * MINUTE;
    expect((await other.browser.refresh()).status).toBe(200);
    const foreign = await browser.refreshOnce({ challenge: other.browser.challenge! });
    expect(foreign.status).toBe(403);
    expect(eventsOf(app.events, 'device-proof-refused').at(-1)?.reason).toBe('challenge');

    // Wrong key: the right challenge, signed by a key that is not the registered one.
    const wrong = await browser.refreshOnce({ key: deviceKey() });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.getSetCookie()).toEqual([]);
    expect(eventsOf(app.events, 'device-proof-refused').at(-1)).toMatchObject({ reason: 'signature', key });
    // An RS256 proof for an ES256 key.
    const rs = await browser.refreshOnce({ key: deviceKey('RS256') });
    expect(rs.status).toBe(401);
    expect(eventsOf(app.events, 'device-proof-refused').at(-1)?.reason).toBe('algorithm');

    // Bad input: a clear 4xx, never a crash.
    const raw = (headers: Record<string, string>, method = 'POST') =>
      browser.request('/.pgsession/dbsc/refresh', { method, headers });
    const id = `"${browser.session!.session_identifier}"`;
    expect((await raw({ 'secure-session-response': 'x.y.z' })).status).toBe(400);
    expect((await raw({ 'sec-secure-session-id': id, 'secure-session-response': 'x.y.z' })).status).toBe(400);
    expect((await raw({ 'sec-secure-session-id': id, 'secure-session-response': '"%%%"' })).status).toBe(400);
    expect((await raw({ 'sec-secure-session-id': '"someone-else"' })).status).toBe(401);
    expect((await raw({ 'sec-secure-session-id': id }, 'GET')).status).toBe(405);
    // The session still refreshes fine after all that.
    expect((await browser.refresh()).status).toBe(200);
    expect(await (await browser.get('/me')).json()).toEqual({ userId: 42 });
  });
});

describe('a copied cookie', () => {
  it('under report: served, and each request without a valid bound cookie raises an event', async () => {
    const app = await start('report');
    const { browser, key } = await boundBrowser(app.url, app.events);
    // Malware copies the session cookie (not the key, which never leaves the device).
    const thief = new DbscBrowser(app.url);
    thief.jar.set('connect.sid', browser.jar.get('connect.sid')!);
    expect(await (await thief.get('/me')).json()).toEqual({ userId: 42 });
    expect(eventsOf(app.events, 'device-unbound-request')).toEqual([
      { type: 'device-unbound-request', key, userId: '42', reason: 'missing', action: 'reported' },
    ]);
    thief.jar.set('connect.sid.bound', 'lr0x.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    await thief.get('/me', { headers: { 'secure-session-skipped': 'unreachable;session_identifier="x"' } });
    expect(eventsOf(app.events, 'device-unbound-request').at(-1)).toMatchObject({
      reason: 'invalid',
      skipped: 'unreachable;session_identifier="x"',
    });
    // The owner's browser, with its bound cookie, is served without an event.
    const before = app.events.length;
    await browser.get('/me');
    expect(app.events.slice(before).filter((e) => e.type === 'device-unbound-request')).toEqual([]);
    // The metrics (fed by onEvent) count both, by reason and action.
    const metrics = createSessionMetrics();
    for (const event of app.events) metrics.onEvent(event);
    const text = await metrics.registry.metrics();
    expect(text).toContain('pgsession_device_unbound_requests_total{reason="missing",action="reported"} 1');
    expect(text).toContain('pgsession_device_unbound_requests_total{reason="invalid",action="reported"} 1');
    expect(text).toContain('pgsession_device_bound_total{event="registered"} 1');
  });

  it('under require: refused as having no session once the bound cookie expired; the thief cannot refresh; the owner can', async () => {
    const app = await start('require');
    const { browser, key } = await boundBrowser(app.url, app.events);
    const thief = new DbscBrowser(app.url);
    // Both cookies copied: the bound one works until it expires (10 minutes), no longer.
    thief.jar.set('connect.sid', browser.jar.get('connect.sid')!);
    thief.jar.set('connect.sid.bound', browser.jar.get('connect.sid.bound')!);
    expect(await (await thief.get('/me')).json()).toEqual({ userId: 42 });
    clock.now += 11 * MINUTE;
    const refused = await thief.get('/me');
    expect(await refused.json()).toEqual({ userId: null });
    // The stolen session is left alone: no cookie is replaced or cleared.
    expect(refused.headers.getSetCookie()).toEqual([]);
    expect(eventsOf(app.events, 'device-unbound-request').at(-1)).toEqual({
      type: 'device-unbound-request',
      key,
      userId: '42',
      reason: 'expired',
      action: 'refused',
    });
    // A write on the refused request makes a new anonymous session, never touching the real one.
    const visit = await thief.post('/visit');
    expect(await visit.json()).toEqual({ visits: 1 });
    expect(thief.jar.get('connect.sid')).not.toBe(browser.jar.get('connect.sid'));
    thief.jar.set('connect.sid', browser.jar.get('connect.sid')!);

    // The thief knows the session identifier and tries to refresh with a key of its own.
    thief.session = browser.session;
    const attempt = await thief.refresh();
    expect(attempt.status).toBe(401);
    expect(await (await thief.get('/me')).json()).toEqual({ userId: null });

    // The owner refreshes and carries on.
    expect((await browser.refresh()).status).toBe(200);
    expect(await (await browser.get('/me')).json()).toEqual({ userId: 42 });
    const me = await browser.get('/me');
    expect(me.headers.getSetCookie()).toEqual([]);
  });

  it('enforce off runs the protocol but checks nothing', async () => {
    const app = await start('off');
    const { browser } = await boundBrowser(app.url, app.events);
    const thief = new Client(app.url);
    thief.jar.set('connect.sid', browser.jar.get('connect.sid')!);
    expect(await (await thief.get('/me')).json()).toEqual({ userId: 42 });
    expect(eventsOf(app.events, 'device-unbound-request')).toEqual([]);
  });
});

describe('the session lifecycle applies to bound sessions', () => {
  it('logout: the session is gone and its refresh ends with 401', async () => {
    const app = await start('require');
    const { browser } = await boundBrowser(app.url, app.events);
    expect((await browser.post('/logout')).status).toBe(200);
    clock.now += 11 * MINUTE;
    const res = await browser.refresh();
    expect(res.status).toBe(401);
    expect(eventsOf(app.events, 'device-proof-refused').at(-1)?.reason).toBe('no-session');
  });

  it('revocation (every session of the user) and the idle timeout end it the same way', async () => {
    const app = await start('require');
    const a = await boundBrowser(app.url, app.events, 'ES256', '1001');
    expect(await revokeUser(app.store, '1001')).toBe(1);
    expect(await (await a.browser.get('/me')).json()).toEqual({ userId: null });
    expect((await a.browser.refresh()).status).toBe(401);

    const b = await boundBrowser(app.url, app.events, 'ES256', '1002');
    clock.now += 3 * 60 * MINUTE; // past the 2-hour idle timeout
    expect((await b.browser.refresh()).status).toBe(401);
    expect(await (await b.browser.get('/me')).json()).toEqual({ userId: null });
  });

  it('a new login renews the id, which starts unbound: registration is offered again', async () => {
    const app = await start('require');
    const { browser, key } = await boundBrowser(app.url, app.events);
    const login = await browser.post('/login');
    expect(login.headers.get('secure-session-registration')).not.toBeNull();
    const renewed = eventsOf(app.events, 'renewed').at(-1)!;
    expect(renewed.previousKey).toBe(key);
    expect(await storedDevice(suite.db.pool, renewed.key)).toBeNull();
    expect((await suite.db.pool.query('SELECT 1 FROM session WHERE sid = $1', [key])).rowCount).toBe(0);
    // Unbound, so served without a bound cookie until it registers again.
    browser.jar.delete('connect.sid.bound');
    expect(await (await browser.get('/me')).json()).toEqual({ userId: 42 });
    expect((await browser.register()).status).toBe(200);
  });
});

describe('configuration', () => {
  it('every bad deviceBound option is a ConfigError at start-up', () => {
    const bad: unknown[] = [
      'yes',
      { enforce: 'strict' },
      { maxAge: 'soon' },
      { maxAge: 1000 },
      { maxAge: '10m', challengeMaxAge: '5m' },
      { registrationPath: 'dbsc/register' },
      { refreshPath: '/a b' },
      { registrationPath: '/x', refreshPath: '/x' },
      { algorithms: ['HS256'] },
      { algorithms: [] },
      { cookieName: 'connect.sid' },
      { cookieName: 'bad name' },
      { unknown: 1 },
    ];
    for (const deviceBound of bad) {
      expect(() => session({ secret: SECRET, deviceBound: deviceBound as never })).toThrow(ConfigError);
    }
    // Signed with the secret: cookie-parser's per-request secret will not do.
    expect(() => session({ deviceBound: true })).toThrow(/needs the secret/);
    // A store written for express-session has nowhere to keep a key apart from the data.
    const connectStore = { get() {}, set() {}, destroy() {} };
    expect(() => session({ secret: SECRET, store: connectStore as never, deviceBound: true })).toThrow(
      /bindDevice/,
    );
    expect(() =>
      session({ secret: SECRET, deviceBound: { enforce: 'require', maxAge: '5m' } }),
    ).not.toThrow();
  });
});
