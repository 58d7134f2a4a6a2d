/**
 * The session cookie on the wire: whatever the client sends, a bad cookie means "no session"
 * (never a 5xx); Secure handling behind proxies; cookie-name prefixes; caching; secret rotation.
 */
import net from 'node:net';
import cookieSignature from 'cookie-signature';
import type { Express } from 'express';
import * as fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { hashId } from '../../src/core/id.js';
import session, { MemoryStore } from '../../src/index.js';
import { fetchSeen, SECRET, serve, startPg } from './support.js';

type Started = Awaited<ReturnType<typeof startPg>>;

/** Send raw header bytes (fetch refuses many of the values worth testing); resolves the status. */
function rawRequest(url: string, cookieHeaders: Buffer[]): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text });
    });
    const head = Buffer.from(`GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n`, 'latin1');
    const lines = cookieHeaders.flatMap((h) => [Buffer.from('Cookie: ', 'latin1'), h, Buffer.from('\r\n')]);
    socket.end(Buffer.concat([head, ...lines, Buffer.from('\r\n')]));
  });
}

const routes = (app: Express) => {
  app.get('/login', (req, res) => {
    req.session.userId = 7;
    res.send(req.sessionID);
  });
  app.get('/whoami', (req, res) => res.json({ userId: req.session.userId ?? null, id: req.sessionID }));
};

describe('bad cookies mean "no session", never an error', () => {
  let app: Started;
  let realId = '';
  let realPair = '';
  beforeAll(async () => {
    app = await startPg({ name: 'sid' }, routes);
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    realId = login.body;
    realPair = login.pair ?? '';
  });
  afterAll(() => app.close());

  const signed = (id: string, secret = SECRET) => encodeURIComponent(`s:${cookieSignature.sign(id, secret)}`);

  it('the genuine cookie is recognised', async () => {
    const me = await fetchSeen(`${app.url}/whoami`, 'sid', realPair);
    expect(JSON.parse(me.body)).toEqual({ userId: 7, id: realId });
  });

  const cases: Array<[string, () => string]> = [
    ['missing', () => ''],
    ['empty value', () => 'sid='],
    ['malformed', () => 'sid'],
    ['unsigned id', () => `sid=${realId}`],
    ['unsigned with prefix', () => `sid=s:${realId}`],
    ['signed with another secret', () => `sid=${signed(realId, `${SECRET}-other`)}`],
    ['tampered id', () => `sid=${signed(realId).replace(/^s%3A./, 's%3AX')}`],
    ['tampered MAC', () => `sid=${signed(realId).slice(0, -2)}AA`],
    ['truncated', () => `sid=${signed(realId).slice(0, 30)}`],
    ['a genuine signature of an unknown id', () => `sid=${signed('no-such-session')}`],
    ['a signed empty id', () => `sid=${signed('')}`],
    ['8 KB value', () => `sid=s%3A${'A'.repeat(8192)}`],
    ['8 KB of other cookies first', () => `${'x'.repeat(8000)}=1; sid=${signed('nope')}`],
    ['bad %-encoding', () => 'sid=s%3A%E0%A4%A.%ZZ'],
    ['lone percent', () => 'sid=%'],
    ['duplicated names (forged first)', () => `sid=${signed('forged')}; ${realPair}`],
    ['hundreds of cookies', () => Array.from({ length: 500 }, (_, i) => `c${i}=${i}`).join('; ')],
    ['unicode', () => `sid=${encodeURIComponent('s:☃.é')}`],
    ['unicode in the MAC', () => `sid=${signed(realId).slice(0, -3)}%C3%A9`],
    ['only separators', () => ';;;=;= ;'],
  ];

  it.each(cases)('%s', async (_name, header) => {
    const value = header();
    const me = await fetchSeen(`${app.url}/whoami`, 'sid', value || undefined);
    expect(me.status).toBe(200);
    const body = JSON.parse(me.body);
    expect(body.id).not.toBe(realId);
    expect(body.userId).toBeNull();
  });

  it('duplicated names: the first one counts, as in express-session (the genuine one first works)', async () => {
    const me = await fetchSeen(`${app.url}/whoami`, 'sid', `${realPair}; sid=${signed('forged')}`);
    expect(JSON.parse(me.body)).toEqual({ userId: 7, id: realId });
  });

  it('never adopts an attacker-chosen id, even a well-formed one', async () => {
    const chosen = 'attacker-chosen-id-0000000000000000000000000';
    const me = await fetchSeen(`${app.url}/whoami`, 'sid', `sid=${signed(chosen, 'guessed-secret')}`);
    expect(JSON.parse(me.body).id).not.toBe(chosen);
  });

  it.each([
    ['NUL', Buffer.from('sid=s:abc\u0000def.x', 'latin1')],
    ['raw UTF-8 bytes', Buffer.from(`sid=s:${realId}☃.é`, 'utf8')],
    ['control characters', Buffer.from('sid=\u0001\u0002\u007f', 'latin1')],
    ['a cookie line of 16 KB', Buffer.from(`sid=${'%'.repeat(16_000)}`, 'latin1')],
  ])('raw bytes: %s', async (_name, bytes) => {
    const res = await rawRequest(app.url, [bytes]);
    expect(res.status).toBeGreaterThan(0);
    expect(res.status).toBeLessThan(500);
  });

  it('two Cookie header lines', async () => {
    const res = await rawRequest(app.url, [Buffer.from('a=1'), Buffer.from(decodeURIComponent(realPair))]);
    expect(res.status).toBe(200);
  });

  it('property: arbitrary Cookie header strings never give a 5xx', async () => {
    const fragments = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 60 }),
      fc.constantFrom('sid=', 's:', 's%3A', ';', '=', '%', '.', ' ', '\u0000', realPair, signed(realId)),
      fc.string({ unit: 'binary-ascii', maxLength: 40 }).map((v) => `sid=${encodeURIComponent(`s:${v}`)}`),
    );
    const header = fc
      .array(fragments, { maxLength: 8 })
      .map((parts) => parts.join(''))
      // A bare CR or LF would end the header line: that is the HTTP parser's business, not ours.
      .map((h) => h.replace(/[\r\n]/g, ''));
    await fc.assert(
      fc.asyncProperty(header, async (h) => {
        const res = await rawRequest(app.url, [Buffer.from(h, 'utf8')]);
        expect(res.status).toBeGreaterThan(0);
        expect(res.status).toBeLessThan(500);
      }),
      { numRuns: 300 },
    );
  });
});

describe('Secure cookies', () => {
  const started: Started[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((s) => s.close()));
  });
  async function start(options: Parameters<typeof startPg>[0], configure?: (app: Express) => void) {
    const app = await startPg({ name: 'sid', ...options }, (a) => {
      configure?.(a);
      routes(a);
    });
    started.push(app);
    return app;
  }

  it('secure: true over plain HTTP: the cookie is not sent and a warning says why', async () => {
    const warnings: string[] = [];
    const app = await start({ cookie: { secure: true }, onWarning: (m) => warnings.push(m) });
    const res = await fetchSeen(`${app.url}/login`, 'sid');
    expect(res.status).toBe(200);
    expect(res.cookie).toBe('none');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/Secure session cookie was NOT sent .* plain HTTP/);
    expect(warnings[0]).toMatch(/trust proxy/);
  });

  it("secure: 'auto' + proxy: true + X-Forwarded-Proto: https sends it with Secure", async () => {
    const app = await start({ proxy: true, cookie: { secure: 'auto', sameSite: 'auto' } });
    const https = await fetchSeen(`${app.url}/login`, 'sid', undefined, {
      headers: { 'x-forwarded-proto': 'https' },
    });
    expect(https.cookie).toBe('set');
    expect(https.attributes).toContain('secure');
    expect(https.headers.getSetCookie()[0]).toMatch(/; Secure; SameSite=None$/);
    const plain = await fetchSeen(`${app.url}/login`, 'sid');
    expect(plain.cookie).toBe('set');
    expect(plain.attributes).not.toContain('secure');
    expect(plain.headers.getSetCookie()[0]).toMatch(/SameSite=Lax$/);
    // The first value of a list is the client's protocol.
    const listed = await fetchSeen(`${app.url}/login`, 'sid', undefined, {
      headers: { 'x-forwarded-proto': 'HTTPS, http' },
    });
    expect(listed.attributes).toContain('secure');
  });

  it('proxy: false ignores X-Forwarded-Proto', async () => {
    const app = await start({ proxy: false, cookie: { secure: true }, onWarning: () => {} });
    const res = await fetchSeen(`${app.url}/login`, 'sid', undefined, {
      headers: { 'x-forwarded-proto': 'https' },
    });
    expect(res.cookie).toBe('none');
  });

  it("proxy unset follows Express's trust proxy setting", async () => {
    const app = await start({ cookie: { secure: true } }, (a) => a.set('trust proxy', 1));
    const res = await fetchSeen(`${app.url}/login`, 'sid', undefined, {
      headers: { 'x-forwarded-proto': 'https' },
    });
    expect(res.cookie).toBe('set');
    expect(res.attributes).toContain('secure');
  });

  it('the deleting cookie after logout carries Secure and SameSite=None when the cookie had them', async () => {
    const app = await start({ proxy: true, cookie: { secure: 'auto', sameSite: 'auto' } }, (a) =>
      a.get('/logout', (req, res) => req.session.destroy(() => res.send('bye'))),
    );
    const https = { headers: { 'x-forwarded-proto': 'https' } };
    const login = await fetchSeen(`${app.url}/login`, 'sid', undefined, https);
    const out = await fetchSeen(`${app.url}/logout`, 'sid', login.pair, https);
    expect(out.cookie).toBe('clear');
    expect(out.headers.getSetCookie()[0]).toMatch(/; Secure; SameSite=None$/);
  });
});

describe('cookie-name prefixes', () => {
  const started: Started[] = [];
  afterAll(async () => {
    await Promise.all(started.map((s) => s.close()));
  });

  it('__Host-: Secure, Path=/ and no Domain are forced; sent only over HTTPS', async () => {
    const warnings: string[] = [];
    const app = await startPg(
      { name: '__Host-sid', proxy: true, onWarning: (m) => warnings.push(m) },
      routes,
    );
    started.push(app);
    const https = await fetchSeen(`${app.url}/login`, '__Host-sid', undefined, {
      headers: { 'x-forwarded-proto': 'https' },
    });
    expect(https.cookie).toBe('set');
    expect(https.headers.getSetCookie()[0]).toMatch(/^__Host-sid=s%3A[^;]+; Path=\/; HttpOnly; Secure$/);
    const plain = await fetchSeen(`${app.url}/login`, '__Host-sid');
    expect(plain.cookie).toBe('none');
    expect(warnings).toHaveLength(1);
  });

  it("__Host- with secure: 'auto' is still never sent without Secure", async () => {
    const app = await startPg(
      { name: '__Host-sid', cookie: { secure: 'auto' }, onWarning: () => {} },
      routes,
    );
    started.push(app);
    expect((await fetchSeen(`${app.url}/login`, '__Host-sid')).cookie).toBe('none');
  });

  it('__Secure-: Secure is forced, Domain and Path allowed', async () => {
    const app = await startPg(
      { name: '__Secure-sid', proxy: true, cookie: { path: '/', domain: 'localhost' } },
      routes,
    );
    started.push(app);
    const res = await fetchSeen(`${app.url}/login`, '__Secure-sid', undefined, {
      headers: { 'x-forwarded-proto': 'https' },
    });
    expect(res.headers.getSetCookie()[0]).toMatch(
      /^__Secure-sid=[^;]+; Domain=localhost; Path=\/; HttpOnly; Secure$/,
    );
  });

  it.each([
    ['__Host-sid', { secure: false }, /__Host- cookie must be Secure/],
    ['__Host-sid', { domain: 'example.com' }, /__Host- cookie cannot have a Domain/],
    ['__Host-sid', { path: '/app' }, /__Host- cookie must have Path=\//],
    ['__host-sid', { secure: false }, /__Host- cookie must be Secure/],
    ['__Secure-sid', { secure: false }, /__Secure- cookie must be Secure/],
  ] as const)('%s with %j is a ConfigError', (name, cookie, message) => {
    const make = () => session({ secret: SECRET, name, cookie, store: new MemoryStore() });
    expect(make).toThrow(ConfigError);
    expect(make).toThrow(message);
  });
});

describe('responses that set the cookie are not cacheable', () => {
  let app: Started;
  beforeAll(async () => {
    app = await startPg({ name: 'sid' }, (a) => {
      routes(a);
      a.get('/public', (_req, res) => {
        res.set('Cache-Control', 'public, max-age=60');
        res.send('cacheable');
      });
      a.get('/public-login', (req, res) => {
        req.session.userId = 1;
        res.set('Cache-Control', 'public, max-age=60');
        res.send('not cacheable');
      });
    });
  });
  afterAll(() => app.close());

  it('Cache-Control: no-store when Set-Cookie is sent, overriding the route', async () => {
    const login = await fetchSeen(`${app.url}/login`, 'sid');
    expect(login.cookie).toBe('set');
    expect(login.headers.get('cache-control')).toBe('no-store');
    const publicLogin = await fetchSeen(`${app.url}/public-login`, 'sid');
    expect(publicLogin.headers.get('cache-control')).toBe('no-store');
  });

  it('untouched otherwise', async () => {
    const res = await fetchSeen(`${app.url}/public`, 'sid');
    expect(res.cookie).toBe('none');
    expect(res.headers.get('cache-control')).toBe('public, max-age=60');
  });
});

describe('headers the app passes to writeHead', () => {
  // Raw `res.writeHead(status, headers)` (plain node:http handlers, and middleware such as
  // compression and serve-static under Express): the app's headers and the session's both leave,
  // as with express-session, and no-store still wins over the app's Cache-Control.
  let app: Started;
  beforeAll(async () => {
    app = await startPg({ name: 'sid' }, (a) => {
      routes(a);
      a.get('/object', (req, res) => {
        req.session.userId = 2;
        res.writeHead(200, {
          'Set-Cookie': 'theme=dark',
          'Cache-Control': 'public, max-age=60',
          'X-App': '1',
        });
        res.end('object');
      });
      a.get('/reason', (req, res) => {
        req.session.userId = 3;
        res.writeHead(201, 'Made', { 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain' });
        res.end('reason');
      });
      a.get('/flat', (req, res) => {
        req.session.userId = 4;
        res.setHeader('Set-Cookie', 'early=1');
        res.writeHead(200, ['Set-Cookie', 'late=1', 'Set-Cookie', 'later=1', 'X-App', '2']);
        res.end('flat');
      });
      a.get('/untouched', (_req, res) => {
        res.writeHead(200, { 'Cache-Control': 'public, max-age=60', 'Set-Cookie': 'theme=dark' });
        res.end('no session');
      });
    });
  });
  afterAll(() => app.close());

  const cookieNames = (res: Awaited<ReturnType<typeof fetchSeen>>) =>
    res.headers.getSetCookie().map((line) => line.slice(0, line.indexOf('=')));

  it('an object of headers: both cookies, the app header, no-store', async () => {
    const res = await fetchSeen(`${app.url}/object`, 'sid');
    expect(res.status).toBe(200);
    expect(res.cookie).toBe('set');
    expect(cookieNames(res).sort()).toEqual(['sid', 'theme']);
    expect(res.headers.get('x-app')).toBe('1');
    expect(res.headers.get('cache-control')).toBe('no-store');
    const me = await fetchSeen(`${app.url}/whoami`, 'sid', res.pair);
    expect(JSON.parse(me.body).userId).toBe(2);
  });

  it('with a reason phrase and an array of cookies', async () => {
    const res = await fetchSeen(`${app.url}/reason`, 'sid');
    expect(res.status).toBe(201);
    expect(cookieNames(res).sort()).toEqual(['a', 'b', 'sid']);
    expect(res.headers.get('content-type')).toBe('text/plain');
  });

  it("after setHeader, a flat array's pairs replace each other, as over plain http, and the session's cookie stays", async () => {
    const res = await fetchSeen(`${app.url}/flat`, 'sid');
    expect(cookieNames(res).sort()).toEqual(['later', 'sid']);
    expect(res.headers.get('x-app')).toBe('2');
  });

  it('plain node:http, no earlier setHeader: every pair the app passes leaves, with the session cookie and no-store', async () => {
    // Express sets X-Powered-By first; a bare server does not, and Node then writes every pair
    // it is given, duplicates included.
    const mw = session({ secret: SECRET, name: 'sid', store: new MemoryStore() });
    const server = await serve((req, res) =>
      mw(req, res, () => {
        (req as unknown as { session: { userId: number } }).session.userId = 5;
        if (req.url === '/object') {
          res.writeHead(200, 'Fine', {
            'set-cookie': 'theme=dark',
            'Cache-Control': 'public, max-age=60',
            'Content-Type': 'text/plain',
          });
        } else if (req.url === '/flat') {
          res.writeHead(202, ['Set-Cookie', 'one=1', 'X-App', '3', 'Set-Cookie', 'two=2']);
        } else {
          (res as unknown as { writeHead(s: number, h: string[][]): void }).writeHead(200, [
            ['Set-Cookie', 'one=1'],
            ['Set-Cookie', 'two=2'],
          ]);
        }
        res.end('pairs');
      }),
    );
    try {
      const res = await fetchSeen(`${server.url}/`, 'sid');
      expect(res.status).toBe(200);
      expect(res.cookie).toBe('set');
      expect(cookieNames(res).sort()).toEqual(['one', 'sid', 'two']);
      const object = await fetchSeen(`${server.url}/object`, 'sid');
      expect([object.status, object.cookie]).toEqual([200, 'set']);
      expect(cookieNames(object).sort()).toEqual(['sid', 'theme']);
      expect(object.headers.get('cache-control')).toBe('no-store');
      expect(object.headers.get('content-type')).toBe('text/plain');
      const flat = await fetchSeen(`${server.url}/flat`, 'sid');
      expect(flat.status).toBe(202);
      expect(cookieNames(flat).sort()).toEqual(['one', 'sid', 'two']);
      expect(flat.headers.get('x-app')).toBe('3');
      // The cookie it sent is the session's: sent back, it finds the session as saved (unchanged,
      // so no new cookie; an unknown one would start a new session and set one).
      const again = await fetchSeen(`${server.url}/object`, 'sid', flat.pair);
      expect([again.status, again.cookie]).toEqual([200, 'none']);
      expect(cookieNames(again)).toEqual(['theme']);
    } finally {
      await server.close();
    }
  });

  it('without a session cookie to send, the headers leave as the app gave them', async () => {
    const res = await fetchSeen(`${app.url}/untouched`, 'sid');
    expect(res.cookie).toBe('none');
    expect(cookieNames(res)).toEqual(['theme']);
    expect(res.headers.get('cache-control')).toBe('public, max-age=60');
  });
});

describe('secret rotation', () => {
  it('a cookie signed with an old secret still works and comes back signed with the new one', async () => {
    const store = new MemoryStore();
    const OLD = `${SECRET}-old`;
    const before = await startPg({ name: 'sid', store, secret: OLD }, routes);
    const login = await fetchSeen(`${before.url}/login`, 'sid');
    await before.close();
    const after = await startPg({ name: 'sid', store, secret: [SECRET, OLD] }, routes);
    try {
      const me = await fetchSeen(`${after.url}/whoami`, 'sid', login.pair);
      expect(JSON.parse(me.body).userId).toBe(7);
      expect(me.cookie).toBe('set');
      const value = decodeURIComponent(me.pair!.slice('sid='.length));
      expect(cookieSignature.unsign(value.slice(2), SECRET)).toBe(login.body);
      // Once re-signed, it is not re-sent again.
      expect((await fetchSeen(`${after.url}/whoami`, 'sid', me.pair)).cookie).toBe('none');
      // The row is keyed by the hash of the id, never the id (ids() lists it tagged).
      const keys = await new Promise<string[]>((r) => store.ids((_e, ids) => r(ids ?? [])));
      expect(keys.map((k) => k.split('.')[0])).toEqual([hashId(login.body)]);
    } finally {
      await after.close();
    }
  });
});
