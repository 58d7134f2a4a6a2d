/**
 * Hostile input against the demo app (issue 5, point 6): a corpus and fast-check properties for
 * cookies, bodies, emails, paths and `next` values. None may produce a 5xx, a crash, a polluted
 * `Object.prototype` or a stack trace (or any internal detail) in a response.
 *
 * Complements, without repeating, test/express/cookies.test.ts (arbitrary Cookie headers
 * against the bare middleware), test/app/security.test.ts (tampered cookies, errors) and
 * test/security/forgery.test.ts (a corpus of open-redirect tricks): here everything goes to the
 * whole demo app, raw bytes included (NUL, 8 KB+, hundreds of cookies, which `fetch` will not send).
 */
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { csrfOf, loginForm, type RunningApp, startApp } from '../app/harness.js';
import type { Client } from '../helpers/http.js';
import { type RawResponse, rawRequest, sleep } from './support.js';

let app: RunningApp;
let port: number;
let user: Client;
let cookie: string;
let csrf: string;
const prototypeBefore = Object.getOwnPropertyNames(Object.prototype).sort();
const crashes: unknown[] = [];
const onCrash = (err: unknown) => crashes.push(err);

beforeAll(async () => {
  process.on('unhandledRejection', onCrash);
  process.on('uncaughtException', onCrash);
  app = await startApp();
  port = Number(new URL(app.url).port);
  await app.createUser('victim@example.com');
  user = app.client();
  expect((await loginForm(user, 'victim@example.com')).status).toBe(303);
  cookie = user.jar.get('sessionId')!;
  csrf = await csrfOf(user);
}, 60_000);

afterAll(async () => {
  process.off('unhandledRejection', onCrash);
  process.off('uncaughtException', onCrash);
  await app?.close();
});

/** Anything that would tell an attacker how the server is built. */
const LEAK =
  /\bat \S+ \(|at (async )?\S+:\d+:\d+|node_modules|\/work\/|(Type|Range|Syntax|Reference)Error|ECONN|SQLSTATE|syntax error at|relation "|duplicate key|pg_|stack/i;

function judge(status: number, body: string, label: string): void {
  expect(status, label).toBeGreaterThanOrEqual(200);
  expect(status, label).toBeLessThan(500);
  expect(body, label).not.toMatch(LEAK);
}

function clean(): void {
  expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeBefore);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
  expect(crashes).toEqual([]);
}

/** A random client address, so the failed-login limits (per address) let the requests through. */
const randomIp = () =>
  `10.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 256)}.${1 + Math.floor(Math.random() * 254)}`;

function raw(
  method: string,
  target: string,
  headers: Array<[string, string]>,
  body: Buffer | string = '',
): Buffer {
  const bodyBuf = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
  for (const [k, v] of headers) lines.push(`${k}: ${v}`);
  if (bodyBuf.length > 0 || method === 'POST') lines.push(`Content-Length: ${bodyBuf.length}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8'), bodyBuf]);
}

async function send(request: Buffer, label: string): Promise<RawResponse> {
  const res = await rawRequest(port, request);
  judge(res.status, res.body, label);
  return res;
}

describe('hostile cookies', () => {
  it('a corpus of broken, oversized, duplicated and binary cookies: never a 5xx, never someone else’s session', async () => {
    const real = cookie;
    const value = decodeURIComponent(real);
    const corpus: Array<[string, string]> = [
      ['tampered signature', `sessionId=${real.slice(0, -2)}${real.endsWith('A') ? 'B' : 'A'}x`],
      ['tampered id', `sessionId=${encodeURIComponent(`s:x${value.slice(3)}`)}`],
      ['truncated', `sessionId=${real.slice(0, Math.floor(real.length / 2))}`],
      ['no signature', `sessionId=${encodeURIComponent(value.split('.')[0]!)}`],
      ['unsigned', `sessionId=${encodeURIComponent(value.slice(2))}`],
      ['bad percent-encoding', 'sessionId=s%3A%E0%A4%A.%ZZ%'],
      ['lone surrogate encoded', 'sessionId=%ED%A0%80'],
      ['latin-1 bytes', 'sessionId=s:\u00ff\u00fe\u00e9'],
      ['empty', 'sessionId='],
      ['only separators', ';;;; ; = ;=;'],
      ['8 KB value', `sessionId=${'a'.repeat(8200)}`],
      ['8 KB signed-looking value', `sessionId=s%3A${'A'.repeat(8000)}.${'B'.repeat(43)}`],
      ['the real one after 8 KB of others', `big=${'x'.repeat(8200)}; sessionId=${real}`],
      ['500 cookies', Array.from({ length: 500 }, (_, i) => `c${i}=v${i}`).join('; ')],
      [
        '500 cookies then the real one',
        `${Array.from({ length: 500 }, (_, i) => `c${i}=v${i}`).join('; ')}; sessionId=${real}`,
      ],
      ['duplicates, forged first', `sessionId=s%3Aforged.sig; sessionId=${real}`],
      ['duplicates, real first', `sessionId=${real}; sessionId=s%3Aforged.sig`],
      ['100 copies', Array.from({ length: 100 }, () => `sessionId=${real}`).join('; ')],
      ['quoted', `sessionId="${real}"`],
      ['prototype names', '__proto__=x; constructor=y; toString=z; hasOwnProperty=1'],
    ];
    for (const [label, header] of corpus) {
      for (const path of ['/dashboard', '/api/me', '/']) {
        const res = await send(raw('GET', path, [['Cookie', header]]), `${label} ${path}`);
        if (path === '/api/me' && res.status === 200) {
          // Only ever the genuine session's owner.
          expect(JSON.parse(res.body).email, label).toBe('victim@example.com');
          expect(header, label).toContain(real);
        }
      }
    }
    // Bytes no client should send: the parser answers 400, the app never sees them.
    const binary: Array<[string, Buffer]> = [
      ['NUL in the value', Buffer.from(`sessionId=s:\u0000abc`, 'latin1')],
      [
        'NUL before the real one',
        Buffer.concat([Buffer.from('a=\u0000; ', 'latin1'), Buffer.from(`sessionId=${real}`)]),
      ],
      ['raw UTF-8', Buffer.from('sessionId=s:日本語.✓; ü=é', 'utf8')],
      ['CR inside', Buffer.from('sessionId=a\rb', 'latin1')],
      ['DEL and controls', Buffer.from('sessionId=\u007f\u0001\u0002', 'latin1')],
    ];
    for (const [label, bytes] of binary) {
      const head = Buffer.from(
        'GET /dashboard HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: ',
        'utf8',
      );
      await send(Buffer.concat([head, bytes, Buffer.from('\r\n\r\n')]), label);
    }
    // Past Node's 16 KB header limit: 431, not a crash.
    const huge = await rawRequest(port, raw('GET', '/dashboard', [['Cookie', `x=${'y'.repeat(20_000)}`]]));
    expect(huge.status).toBe(431);
    // The genuine session still works.
    expect((await user.get('/api/me')).status).toBe(200);
    clean();
  });

  it('property: arbitrary Cookie headers built from real, forged and random parts', async () => {
    const value = decodeURIComponent(cookie);
    const part = fc.oneof(
      fc.constant(`sessionId=${cookie}`),
      fc.constant('sessionId='),
      fc.string({ maxLength: 30 }).map((s) => `sessionId=${encodeURIComponent(`s:${s}`)}`),
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.string({ unit: 'grapheme', maxLength: 20 }),
      fc.constantFrom(';', '; ', '=', '%', '"', ',', '\\', 's%3A', value.slice(0, 10), '__proto__=1'),
      fc.nat({ max: value.length }).map((n) => `sessionId=${encodeURIComponent(value.slice(0, n))}`),
      fc.integer({ min: 1, max: 9000 }).map((n) => `k=${'z'.repeat(n)}`),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(part, { maxLength: 8 }), async (parts) => {
        const header = Buffer.from(parts.join('; '), 'utf8');
        const head = Buffer.from('GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: ');
        const res = await rawRequest(port, Buffer.concat([head, header, Buffer.from('\r\n\r\n')]));
        // 431 when the parts add up past the header limit; 400 for bytes HTTP forbids.
        judge(res.status, res.body, JSON.stringify(parts).slice(0, 200));
        if (res.status === 200) expect(JSON.parse(res.body).email).toBe('victim@example.com');
      }),
      { numRuns: 150 },
    );
    clean();
  });
});

describe('hostile bodies', () => {
  const authed: Array<[string, string]> = [];
  beforeAll(() => {
    authed.push(['Cookie', `sessionId=${cookie}`], ['X-CSRF-Token', csrf]);
  });

  it('a corpus: huge, deeply nested, prototype keys, wrong types, broken JSON, form arrays', async () => {
    const json = (body: string, extra: Array<[string, string]> = []) =>
      raw(
        'POST',
        '/login',
        [['Content-Type', 'application/json'], ['X-Forwarded-For', randomIp()], ...extra],
        body,
      );
    const form = (path: string, body: string, extra: Array<[string, string]> = []) =>
      raw(
        'POST',
        path,
        [['Content-Type', 'application/x-www-form-urlencoded'], ['X-Forwarded-For', randomIp()], ...extra],
        body,
      );
    const corpus: Array<[string, Buffer, number[]?]> = [
      ['1 MB form', form('/login', `email=${'a'.repeat(1 << 20)}`), [413]],
      ['1 MB JSON', json(`{"email":"${'a'.repeat(1 << 20)}"}`), [413]],
      ['deeply nested arrays', json(`${'['.repeat(7000)}${']'.repeat(7000)}`)],
      ['deeply nested objects', json(`${'{"a":'.repeat(2500)}1${'}'.repeat(2500)}`)],
      [
        '__proto__ in JSON',
        json('{"__proto__":{"polluted":"yes","isAdmin":true},"email":"a@b.c","password":"x"}'),
      ],
      [
        'constructor.prototype in JSON',
        json('{"constructor":{"prototype":{"polluted":"yes"}},"email":"a@b.c"}'),
      ],
      ['__proto__ in a form', form('/login', '__proto__[polluted]=yes&__proto__=x&email=a%40b.c&password=x')],
      ['constructor in a form', form('/login', 'constructor[prototype][polluted]=yes&constructor=1')],
      [
        '__proto__ on an authenticated route',
        form('/account/email', '__proto__[isAdmin]=1&email=x%40y.z', authed),
      ],
      ['JSON array body', json('[1,2,3]')],
      ['JSON string body', json('"email"')],
      ['JSON null', json('null')],
      ['JSON numbers', json('{"email":1e999,"password":-0}')],
      ['JSON nested email', json('{"email":{"$gt":""},"password":{"$ne":null}}')],
      ['JSON email array', json('{"email":["a@b.c","d@e.f"],"password":["x"]}')],
      ['invalid JSON', json('{"email":')],
      ['invalid JSON, BOM', json('\ufeff{"email":"a"}')],
      ['JSON with a lone surrogate', json('{"email":"\\ud800@x.y","password":"\\udfff"}')],
      ['JSON in UTF-16', raw('POST', '/login', [['Content-Type', 'application/json; charset=utf-16']], '{}')],
      [
        'unknown charset',
        form('/login', 'email=a', [['Content-Type', 'application/x-www-form-urlencoded; charset=koi8-x']]),
      ],
      ['text/plain', raw('POST', '/login', [['Content-Type', 'text/plain']], 'email=a@b.c&password=x')],
      ['XML', raw('POST', '/login', [['Content-Type', 'application/xml']], '<email>a</email>')],
      [
        'multipart without boundary',
        raw('POST', '/login', [['Content-Type', 'multipart/form-data']], '--x--'),
      ],
      ['no content type', raw('POST', '/login', [], 'email=a&password=b')],
      ['gzip that is not gzip', json('{"email":"a"}', [['Content-Encoding', 'gzip']])],
      ['unknown encoding', json('{"email":"a"}', [['Content-Encoding', 'br, zstd, x-evil']])],
      ['form arrays', form('/login', 'email=a%40b.c&email=c%40d.e&password=x&password=y')],
      ['bracket keys', form('/login', 'email[]=a&password[0]=x&next[]=//evil.example')],
      ['60 parameters', form('/login', Array.from({ length: 60 }, (_, i) => `p${i}=${i}`).join('&'))],
      ['broken percent-encoding', form('/login', 'email=%E0%A4%A&password=%ZZ&next=%')],
      ['NUL in a form', form('/login', 'email=a%00b%40c.d&password=%00')],
      ['serverId injection', form('/delete-server', 'serverId=1%20OR%201%3D1', authed)],
      ['serverId huge', form('/delete-server', `serverId=${'9'.repeat(400)}`, authed)],
      ['serverId negative', form('/delete-server', 'serverId=-1', authed)],
      [
        'password change with prototype keys',
        form('/account/password', '__proto__[x]=1&currentPassword[]=a&newPassword=%00', authed),
      ],
      [
        'chunked and Content-Length',
        Buffer.from(
          'POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n',
        ),
      ],
    ];
    for (const [label, request, statuses] of corpus) {
      const res = await send(request, label);
      if (statuses) expect(statuses, label).toContain(res.status);
    }
    // A body that never finishes: the client gives up; nothing breaks.
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write(
      'POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"email"',
    );
    await sleep(300);
    socket.destroy();
    await sleep(100);
    clean();
    // The session survived all of it, unchanged in what matters.
    const me = await user.get('/api/me');
    expect(me.status).toBe(200);
    expect(((await me.json()) as { email: string }).email).toBe('victim@example.com');
  }, 60_000);

  it('property: arbitrary JSON bodies on the login and account routes', async () => {
    const key = fc.oneof(
      fc.constantFrom(
        'email',
        'password',
        'next',
        '__proto__',
        'constructor',
        'prototype',
        '_csrf',
        'currentPassword',
        'newPassword',
        'logoutOthers',
      ),
      fc.string({ maxLength: 10 }),
    );
    const body = fc.oneof(
      fc.jsonValue({ maxDepth: 4 }),
      fc.dictionary(key, fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 }),
    );
    await fc.assert(
      fc.asyncProperty(
        body,
        fc.constantFrom('/login', '/account/password', '/account/email', '/logout'),
        async (value, path) => {
          // JSON.stringify drops nothing here: a literal `__proto__` key survives as an own key.
          const text = JSON.stringify(value) ?? 'null';
          const res = await rawRequest(
            port,
            raw(
              'POST',
              path,
              [
                ['Content-Type', 'application/json'],
                ['Accept', 'application/json'],
                ['X-Forwarded-For', randomIp()],
                ...(path === '/login'
                  ? []
                  : ([
                      ['Cookie', `sessionId=${cookie}`],
                      ['X-CSRF-Token', 'wrong'],
                    ] as Array<[string, string]>)),
              ],
              text,
            ),
          );
          judge(res.status, res.body, `${path} ${text.slice(0, 200)}`);
        },
      ),
      { numRuns: 120 },
    );
    clean();
    expect((await user.get('/api/me')).status).toBe(200);
  }, 60_000);
});

describe('hostile emails', () => {
  const corpus = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "admin'--",
    '"; DROP TABLE users; --',
    "victim@example.com' --",
    "x@y.z'; UPDATE users SET role='admin'; --",
    '\\x00',
    '%',
    '_',
    '%@%',
    '$1',
    'victim@example.com\u0000',
    ' victim@example.com ',
    'VICTIM@EXAMPLE.COM',
    `${'a'.repeat(10_000)}@example.com`,
    'a'.repeat(10_000),
    'ü@例え.テスト',
    '𝓪𝓭𝓶𝓲𝓷@example.com',
    'victim@exаmple.com', // Cyrillic а
    '\u202evictim@example.com',
    '',
    ' ',
    '@',
    '<script>alert(1)</script>@x.y',
  ];

  it('a corpus on login (form and JSON) and email change: only ever 303/400/401/409/429', async () => {
    for (const email of corpus) {
      const label = JSON.stringify(email.slice(0, 60));
      const formRes = await send(
        raw(
          'POST',
          '/login',
          [
            ['Content-Type', 'application/x-www-form-urlencoded'],
            ['X-Forwarded-For', randomIp()],
          ],
          new URLSearchParams({ email, password: 'correct horse battery staple' }).toString(),
        ),
        `form ${label}`,
      );
      // A 10k-character email is over the 16 KB form limit only when encoded large; both are fine.
      expect([303, 413, 429], label).toContain(formRes.status);
      if (formRes.status === 303) {
        const location = formRes.headers.find(([k]) => k === 'location')?.[1];
        // Only the genuine address (trimmed, case-folded) logs in.
        if (location === '/dashboard') expect(email.trim().toLowerCase()).toBe('victim@example.com');
      }
      const jsonRes = await send(
        raw(
          'POST',
          '/login',
          [
            ['Content-Type', 'application/json'],
            ['Accept', 'application/json'],
            ['X-Forwarded-For', randomIp()],
          ],
          JSON.stringify({ email, password: 'wrong' }),
        ),
        `json ${label}`,
      );
      expect([401, 413, 429], label).toContain(jsonRes.status);
      const change = await send(
        raw(
          'POST',
          '/account/email',
          [
            ['Content-Type', 'application/json'],
            ['Cookie', `sessionId=${cookie}`],
            ['X-CSRF-Token', csrf],
            ['X-Forwarded-For', randomIp()],
          ],
          JSON.stringify({ email, currentPassword: 'wrong password' }),
        ),
        `change ${label}`,
      );
      expect([400, 413, 429], label).toContain(change.status);
    }
    const { rows } = await app.db.pool.query<{ n: string }>('SELECT count(*) AS n FROM users');
    expect(Number(rows[0]!.n)).toBe(1);
    clean();
  }, 60_000);

  it('property: arbitrary emails and passwords never get past the login or break it', async () => {
    const email = fc.oneof(
      fc.emailAddress(),
      fc.string({ unit: 'grapheme', maxLength: 80 }),
      fc.string({ unit: 'binary', maxLength: 80 }),
      fc.constantFrom(...corpus),
      fc.tuple(fc.constantFrom(...corpus), fc.emailAddress()).map(([a, b]) => a + b),
    );
    await fc.assert(
      fc.asyncProperty(email, fc.string({ unit: 'binary', maxLength: 100 }), async (e, password) => {
        const res = await rawRequest(
          port,
          raw(
            'POST',
            '/login',
            [
              ['Content-Type', 'application/json'],
              ['Accept', 'application/json'],
              ['X-Forwarded-For', randomIp()],
            ],
            JSON.stringify({ email: e, password }),
          ),
        );
        judge(res.status, res.body, JSON.stringify([e, password]).slice(0, 200));
        expect([401, 429]).toContain(res.status);
      }),
      { numRuns: 120 },
    );
    clean();
  }, 60_000);
});

describe('hostile paths and next values', () => {
  it('a corpus of request targets: never a 5xx', async () => {
    const targets = [
      '/%ZZ',
      '/%',
      '/%00',
      '/dashboard%00',
      '/..%2f..%2f..%2fetc%2fpasswd',
      '/../../etc/passwd',
      '//evil.example',
      '/\\evil.example',
      `/${'a'.repeat(8000)}`,
      `/?${'a=1&'.repeat(1500)}`,
      '/login?next=%',
      '/login?next[]=x&next[y]=z',
      '/login?error=%E0%A4%A',
      '/?message=<script>alert(1)</script>',
      `/?message=${'%F0%9F%92%A9'.repeat(500)}`,
      '/account/sessions/%2e%2e%2f/revoke',
      '/account/sessions/__proto__/revoke',
      '/admin/users/constructor/revoke-sessions',
      '/api/me?__proto__[polluted]=1',
      '*',
      'http://evil.example/dashboard',
      '/dashboard#fragment',
    ];
    // Ids that reach a query: with the CSRF token, so the route itself runs.
    for (const id of ['%00', 'a%00b', '%FF', "'%20OR%201=1", `${'a'.repeat(3000)}`, '__proto__', '..']) {
      for (const path of [`/account/sessions/${id}/revoke`, `/admin/users/${id}/revoke-sessions`]) {
        await send(
          raw('POST', path, [
            ['Cookie', `sessionId=${cookie}`],
            ['X-CSRF-Token', csrf],
          ]),
          `POST ${path.slice(0, 80)}`,
        );
      }
    }
    for (const target of targets) {
      for (const method of ['GET', 'POST', 'HEAD', 'OPTIONS', 'DELETE', 'PROPFIND']) {
        await send(
          raw(method, target, [
            ['Cookie', `sessionId=${cookie}`],
            ['X-Forwarded-For', randomIp()],
          ]),
          `${method} ${target.slice(0, 80)}`,
        );
      }
    }
    clean();
  }, 60_000);

  it('property: arbitrary paths and query strings', async () => {
    const segment = fc.oneof(
      fc.webSegment(),
      fc.string({ unit: 'grapheme', maxLength: 12 }).map(encodeURIComponent),
      fc.constantFrom(
        '..',
        '.',
        '%2e%2e',
        '%2f',
        '%5c',
        '%00',
        '%',
        '%ZZ',
        '__proto__',
        'constructor',
        'api',
        'admin',
      ),
    );
    const target = fc
      .tuple(fc.array(segment, { maxLength: 6 }), fc.webQueryParameters())
      .map(([segs, q]) => `/${segs.join('/')}${q ? `?${q}` : ''}`);
    await fc.assert(
      fc.asyncProperty(
        target,
        fc.constantFrom('GET', 'POST'),
        fc.boolean(),
        async (t, method, withCookie) => {
          const res = await rawRequest(
            port,
            raw(
              method,
              t,
              withCookie ? [['Cookie', `sessionId=${cookie}`]] : [['Accept', 'application/json']],
            ),
          );
          judge(res.status, res.body, `${method} ${t}`);
        },
      ),
      { numRuns: 150 },
    );
    clean();
  }, 60_000);

  it('property: whatever next says, the redirect after login stays on this site', async () => {
    const next = fc.oneof(
      fc.webUrl(),
      fc.webPath(),
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc
        .tuple(
          fc.constantFrom('/', '//', '/\\', '\\', '/%2f', '/%5c', '/.', '/..', 'https:', ' ', '\t/'),
          fc.webSegment(),
        )
        .map(([a, b]) => a + b),
    );
    const base = new URL(app.url);
    await fc.assert(
      fc.asyncProperty(next, async (n) => {
        const res = await rawRequest(
          port,
          raw('GET', `/login?next=${encodeURIComponent(n)}`, [['Cookie', `sessionId=${cookie}`]]),
        );
        judge(res.status, res.body, n);
        expect(res.status).toBe(302);
        const location = res.headers.find(([k]) => k === 'location')?.[1] ?? '';
        expect(location.startsWith('/'), location).toBe(true);
        expect(/^\/[/\\]/.test(location), location).toBe(false);
        // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse.
        expect(/[\u0000-\u0020\u007f]/.test(location), location).toBe(false);
        expect(new URL(location, base).origin, location).toBe(base.origin);
      }),
      { numRuns: 200 },
    );
    clean();
  }, 60_000);
});
