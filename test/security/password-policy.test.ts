/**
 * The password policy beyond length and the common list (ASVS 6.1.2, 6.2.11, 6.2.12): words tied
 * to the site or the user's own email are refused, and so are passwords known from breaches
 * (Have I Been Pwned's range API, k-anonymity) — through the library, the demo app over HTTP and
 * the CLI. The range API is a local `node:http` server that records what it is sent: nothing
 * here touches the network.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DEMO_PASSWORD_CONTEXT_WORDS, loadConfig } from '../../app/config.js';
import {
  type AuthEvent,
  PasswordCheckUnavailableError,
  type PasswordCheckUnavailableReport,
  PasswordPolicy,
  PasswordPolicyError,
  pwnedPasswords,
} from '../../src/auth/index.js';
import { BREACHED_PASSWORD_MESSAGE, contextWordIn } from '../../src/auth/password-policy.js';
import { loginForm, PASSWORD, type RunningApp, startApp } from '../app/harness.js';
import type { Client } from '../helpers/http.js';
import { csrfOn, NO_LIMITS, root, runCli, secondServer } from './support.js';

// CLI runs are process starts (and argon2): seconds each on a loaded machine.
vi.setConfig({ testTimeout: 90_000, hookTimeout: 90_000 });

const sha1 = (password: string) => createHash('sha1').update(password, 'utf8').digest('hex').toUpperCase();

/** Passwords the fake service knows as breached, with their counts. */
const BREACHED = new Map([
  ['breached passphrase 2019', 42],
  ['rarely breached passphrase', 2],
]);
/** Not breached, but its suffix is in the answer as a padding entry (count 0). */
const PADDED_ONLY = 'padded but never breached';
const CLEAN = 'an unexposed passphrase 7781';

type Mode = 'ok' | 'hang' | 'error' | 'garbage';

/**
 * The Pwned Passwords range API, as far as clients can tell: `GET /range/<5 hex>` answers every
 * known suffix under that prefix as `SUFFIX:COUNT` lines (CRLF), padded with decoy entries of
 * count 0 when asked (`Add-Padding: true`). Records every request's path and headers.
 */
class FakeRangeApi {
  readonly requests: Array<{ path: string; headers: http.IncomingHttpHeaders }> = [];
  mode: Mode = 'ok';
  readonly #server = http.createServer((req, res) => {
    this.requests.push({ path: req.url ?? '', headers: req.headers });
    if (this.mode === 'hang') return; // never answers: the client's timeout must end it
    if (this.mode === 'error') {
      res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error');
      return;
    }
    if (this.mode === 'garbage') {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>Sign in to the hotel Wi-Fi</html>');
      return;
    }
    const m = /^\/range\/([0-9A-F]{5})$/.exec(req.url ?? '');
    if (!m) {
      res.writeHead(400).end('The hash prefix was not in a valid format');
      return;
    }
    const prefix = m[1]!;
    const lines: string[] = [];
    for (const [password, count] of BREACHED) {
      const hash = sha1(password);
      // One suffix in lower case: the comparison must not care.
      if (hash.startsWith(prefix))
        lines.push(`${count === 2 ? hash.slice(5).toLowerCase() : hash.slice(5)}:${count}`);
    }
    if (req.headers['add-padding'] === 'true') {
      const padded = sha1(PADDED_ONLY);
      if (padded.startsWith(prefix)) lines.push(`${padded.slice(5)}:0`);
      for (let i = 0; i < 20; i++) lines.push(`${sha1(`decoy ${prefix} ${i}`).slice(5)}:0`);
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(lines.join('\r\n'));
  });

  url = '';
  async start(): Promise<void> {
    this.#server.listen(0, '127.0.0.1');
    await new Promise((resolve) => this.#server.once('listening', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/range/`;
  }
  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }
  /** Every request so far sent only a 5-character uppercase hex prefix, and never `secrets`. */
  expectOnlyPrefixesSent(secrets: string[]): void {
    expect(this.requests.length).toBeGreaterThan(0);
    for (const r of this.requests) {
      expect(r.path).toMatch(/^\/range\/[0-9A-F]{5}$/);
      expect(r.headers['add-padding']).toBe('true');
      const seen = `${r.path}\n${JSON.stringify(r.headers)}`.toUpperCase();
      for (const secret of secrets) {
        expect(seen).not.toContain(secret.toUpperCase());
        expect(seen).not.toContain(sha1(secret));
        expect(seen).not.toContain(sha1(secret).slice(5));
      }
    }
  }
}

/** A URL on which nothing listens (a port just freed): connection refused. */
async function closedPortUrl(): Promise<string> {
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}/range/`;
}

const api = new FakeRangeApi();
let t: RunningApp;
let ipCounter = 0;
/** A client from its own address, so no test's failed attempts count against another's. */
const fresh = () => t.client({ 'x-forwarded-for': `198.18.7.${++ipCounter}` });
const canLogin = async (email: string, password: string) =>
  (await loginForm(fresh(), email, password)).headers.get('location') === '/dashboard';

beforeAll(async () => {
  await api.start();
  // The demo app as configured from PWNED_PASSWORDS_URL (onError: allow, the default).
  t = await startApp({
    rateLimit: NO_LIMITS,
    config: { pwnedPasswords: { url: api.url, onError: 'allow', timeoutMs: 300 } },
  });
});
afterAll(async () => {
  await t?.close();
  await api.close();
});

async function changePassword(c: Client, newPassword: string, currentPassword = PASSWORD) {
  const _csrf = await csrfOn(c);
  return c.post('/account/password', { form: { _csrf, currentPassword, newPassword } });
}

async function loggedIn(email: string) {
  const c = fresh();
  expect((await loginForm(c, email)).status).toBe(303);
  return c;
}

describe('context-specific words (ASVS 6.1.2, 6.2.11)', () => {
  it('context words are refused whatever the case, substitutions and padding; ordinary strong passwords pass', () => {
    const policy = new PasswordPolicy({ contextWords: ['PgSession', 'Acme-Corp', 'HR'] });
    const refused = [
      'P4ssw0rd-PgSession!',
      'pgsession2024',
      '#PGSESSION#',
      'my pg-session passphrase',
      'Pg$e55i0n rules',
      'PGS3SS10N forever',
      'pgséssion-accented',
      'I work at acmecorp',
      'ACME_C0RP!!2024',
    ];
    for (const password of refused) {
      const problem = policy.problem(password);
      expect(problem, password).toMatch(
        /^This password contains a word tied to this site or your account \("/,
      );
      expect(problem, password).toContain('choose one that is harder to guess');
      expect(problem, password).not.toContain(password);
    }
    expect(policy.problem('P4ssw0rd-PgSession!')).toBe(
      'This password contains a word tied to this site or your account ("PgSession"): choose one that is harder to guess',
    );
    // Words under 4 characters are ignored ("HR"); a space is not padding inside a word.
    for (const password of [
      PASSWORD,
      'zebrafoxmoonlamp',
      'hr department lunch 2024',
      'pg session is two words',
      'a brand new passphrase',
      '🔑 ünïcødé passphrase ✓',
    ]) {
      expect(policy.problem(password), password).toBeNull();
    }
    expect(contextWordIn('totally unrelated', ['pgsession'])).toBeNull();
  });

  it("the user's own email (local part, domain labels) is refused; the message names the word, never the password", () => {
    const policy = new PasswordPolicy();
    const email = 'marguerite.duras@lighthouse-books.example';
    for (const password of [
      'Marguerite1914!',
      'm4rgu3r1t3 is me',
      'duras-duras-duras',
      'lighthouse keeper 9',
      'B00ks and more books',
    ]) {
      const problem = policy.problem(password, { email });
      expect(problem, password).toMatch(/^This password contains a word tied to this site or your account/);
      expect(problem, password).not.toContain(password);
    }
    expect(policy.problem('Marguerite1914!', { email })).toContain('("marguerite")');
    // The top-level domain and pieces shorter than 4 say nothing about the user.
    expect(policy.problem('my example of a passphrase', { email })).toBeNull();
    expect(policy.problem('correct horse battery staple', { email: 'bo@ex.io' })).toBeNull();
  });

  it('user creation and setPassword (the library) refuse them and store nothing', async () => {
    const users = t.app.auth.users;
    for (const password of ['P4ssw0rd-PgSession!', 'postgres-rocks-2024', 'Rosalind2024!']) {
      const err = await users.create({ email: 'rosalind@example.com', password }).catch((e: unknown) => e);
      expect(err, password).toBeInstanceOf(PasswordPolicyError);
      expect((err as Error).message).toMatch(/word tied to this site or your account/);
    }
    expect(await users.findByEmail('rosalind@example.com')).toBeNull();
    const u = await t.createUser('rosalind@example.com');
    await expect(users.setPassword(u.id, 'Dashb0ard-2024')).rejects.toBeInstanceOf(PasswordPolicyError);
    await expect(users.setPassword(u.id, 'r0salind forever')).rejects.toThrow(/\("rosalind"\)/);
    expect(await canLogin('rosalind@example.com', PASSWORD)).toBe(true);
    expect(await users.setPassword(u.id, 'zebra fox moon lamp')).toBe(true);
    expect(await canLogin('rosalind@example.com', 'zebra fox moon lamp')).toBe(true);
  });

  it('the demo app documents its list, uses it, and the password change form refuses it over HTTP', async () => {
    const doc = readFileSync(path.join(root, 'docs/demo-app.md'), 'utf8');
    for (const word of DEMO_PASSWORD_CONTEXT_WORDS) expect(doc, word).toContain(`\`${word}\``);
    expect(doc).toContain('DEMO_PASSWORD_CONTEXT_WORDS');
    expect(loadConfig({ SESSION_SECRET: 'x'.repeat(40) }).passwordContextWords).toEqual([
      ...DEMO_PASSWORD_CONTEXT_WORDS,
    ]);
    expect(
      loadConfig({ SESSION_SECRET: 'x'.repeat(40), PASSWORD_CONTEXT_WORDS: ' Initech, TPS report ,' })
        .passwordContextWords,
    ).toEqual([...DEMO_PASSWORD_CONTEXT_WORDS, 'Initech', 'TPS report']);
    expect(t.app.auth.passwordPolicy.contextWords).toEqual([...DEMO_PASSWORD_CONTEXT_WORDS]);

    await t.createUser('beatrix@example.com');
    const c = await loggedIn('beatrix@example.com');
    for (const newPassword of ['P4ssw0rd-PgSession!', 'my d4shb0ard pass', 'Beatrix-1999!']) {
      const res = await changePassword(c, newPassword);
      expect(res.status, newPassword).toBe(400);
      const html = await res.text();
      expect(html).toContain('This password contains a word tied to this site or your account');
      expect(html).not.toContain(newPassword);
    }
    const json = await c.post('/account/password', {
      json: { currentPassword: PASSWORD, newPassword: 'PostgreSQL-is-great' },
      headers: { 'x-csrf-token': await csrfOn(c), accept: 'application/json' },
    });
    expect(json.status).toBe(400);
    expect(await json.json()).toEqual({
      error: 'password_policy',
      message:
        'This password contains a word tied to this site or your account ("postgres"): choose one that is harder to guess',
    });
    expect(await canLogin('beatrix@example.com', PASSWORD)).toBe(true);
    expect(await canLogin('beatrix@example.com', 'P4ssw0rd-PgSession!')).toBe(false);
    const ok = await changePassword(c, 'quiet orchard lantern');
    expect(ok.status).toBe(303);
    expect(await canLogin('beatrix@example.com', 'quiet orchard lantern')).toBe(true);
  });

  it('the CLI refuses them (user add, user passwd): non-zero exit, clear message, nothing stored', async () => {
    const env = { DATABASE_URL: t.db.url, PASSWORD_CONTEXT_WORDS: 'pgsession,initech' };
    const add = await runCli(['user', 'add', 'cli-context@example.com'], env, 'P4ssw0rd-PgSession!\n');
    expect(add.code).toBe(1);
    expect(add.stderr).toContain(
      'This password contains a word tied to this site or your account ("pgsession"): choose one that is harder to guess; nothing was changed',
    );
    expect(add.stderr).not.toContain('P4ssw0rd');
    expect(await t.app.auth.users.findByEmail('cli-context@example.com')).toBeNull();
    await t.createUser('cli-octavia@example.com');
    const passwd = await runCli(['user', 'passwd', 'cli-octavia@example.com'], env, 'Octavia-2024!\n');
    expect(passwd.code).toBe(1);
    expect(passwd.stderr).toMatch(/\("octavia"\).*nothing was changed/);
    expect(await canLogin('cli-octavia@example.com', PASSWORD)).toBe(true);
    expect(await canLogin('cli-octavia@example.com', 'Octavia-2024!')).toBe(false);
  });
});

describe('breached passwords: pwnedPasswords() (ASVS 6.2.12)', () => {
  it('only the 5-character uppercase SHA-1 prefix leaves the process, with Add-Padding: true', async () => {
    api.mode = 'ok';
    api.requests.length = 0;
    const check = pwnedPasswords({ url: api.url });
    const passwords = [...BREACHED.keys(), PADDED_ONLY, CLEAN];
    for (const p of passwords) await check(p);
    expect(api.requests.map((r) => r.path)).toEqual(passwords.map((p) => `/range/${sha1(p).slice(0, 5)}`));
    api.expectOnlyPrefixesSent(passwords);
  });

  it('a breached password is refused with a clear message; an unbreached one is accepted', async () => {
    api.mode = 'ok';
    const policy = new PasswordPolicy({ breached: pwnedPasswords({ url: api.url }) });
    const err = await policy.check('breached passphrase 2019').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PasswordPolicyError);
    expect((err as Error).message).toBe(BREACHED_PASSWORD_MESSAGE);
    expect((err as Error).message).toMatch(/appeared in a data breach.*choose a different one/);
    await expect(policy.check(CLEAN)).resolves.toBeUndefined();
    // Through the library's user creation: refused, nothing stored.
    await expect(
      t.app.auth.users.create({ email: 'victim@example.com', password: 'breached passphrase 2019' }),
    ).rejects.toThrow(BREACHED_PASSWORD_MESSAGE);
    expect(await t.app.auth.users.findByEmail('victim@example.com')).toBeNull();
    await t.app.auth.users.create({ email: 'victim@example.com', password: CLEAN });
    expect(await canLogin('victim@example.com', CLEAN)).toBe(true);
  });

  it('padding entries (count 0) are ignored, suffixes compare case-insensitively, minCount counts', async () => {
    api.mode = 'ok';
    const check = pwnedPasswords({ url: api.url });
    expect(await check(PADDED_ONLY)).toBe(false);
    // Its suffix really was in the answer, as padding: the test would catch a parser that
    // ignored counts.
    const body = await (
      await fetch(`${api.url}${sha1(PADDED_ONLY).slice(0, 5)}`, { headers: { 'Add-Padding': 'true' } })
    ).text();
    expect(body).toContain(`${sha1(PADDED_ONLY).slice(5)}:0`);
    expect(body).toContain('\r\n');
    // Answered in lower case by the service.
    expect(await check('rarely breached passphrase')).toBe(true);
    expect(await pwnedPasswords({ url: api.url, minCount: 3 })('rarely breached passphrase')).toBe(false);
    expect(await pwnedPasswords({ url: api.url, minCount: 3 })('breached passphrase 2019')).toBe(true);
    expect(() => pwnedPasswords({ minCount: 0 })).toThrow(/minCount/);
  });

  it('service down (timeout, HTTP 500, unreadable answer, connection refused): allowed and reported under "allow"', async () => {
    const reports: PasswordCheckUnavailableReport[] = [];
    const policy = new PasswordPolicy(
      { breached: pwnedPasswords({ url: api.url, timeoutMs: 200 }) },
      { onUnavailable: (r) => reports.push(r) },
    );
    const refusedUrl = pwnedPasswords({ url: await closedPortUrl(), timeoutMs: 1000 });
    const down = new PasswordPolicy({ breached: refusedUrl }, { onUnavailable: (r) => reports.push(r) });
    for (const mode of ['hang', 'error', 'garbage'] as const) {
      api.mode = mode;
      const started = performance.now();
      await expect(policy.check('breached passphrase 2019', { userId: 7 }), mode).resolves.toBeUndefined();
      expect(performance.now() - started, mode).toBeLessThan(2000);
    }
    await expect(down.check('breached passphrase 2019')).resolves.toBeUndefined();
    expect(reports).toEqual([
      { userId: 7, outcome: 'allowed', reason: 'timeout after 200 ms' },
      { userId: 7, outcome: 'allowed', reason: 'HTTP 500' },
      { userId: 7, outcome: 'allowed', reason: 'unexpected response body' },
      { userId: null, outcome: 'allowed', reason: expect.stringMatching(/^network error \(ECONNREFUSED/) },
    ]);
    for (const r of reports) expect(JSON.stringify(r)).not.toContain('breached passphrase');
    api.mode = 'ok';
  });

  it('service down under "refuse": a clear "try again" error (503), reported', async () => {
    const reports: PasswordCheckUnavailableReport[] = [];
    const policy = new PasswordPolicy(
      { breached: pwnedPasswords({ url: api.url, timeoutMs: 200, onError: 'refuse' }) },
      { onUnavailable: (r) => reports.push(r) },
    );
    for (const mode of ['hang', 'error'] as const) {
      api.mode = mode;
      const err = await policy.check(CLEAN).catch((e: unknown) => e);
      expect(err, mode).toBeInstanceOf(PasswordCheckUnavailableError);
      expect((err as PasswordCheckUnavailableError).status).toBe(503);
      expect((err as Error).message).toMatch(/could not check this password.*try again/);
    }
    expect(reports.map((r) => [r.outcome, r.reason])).toEqual([
      ['refused', 'timeout after 200 ms'],
      ['refused', 'HTTP 500'],
    ]);
    // A custom check that throws is "could not check" too (refused, never a 500).
    const custom = new PasswordPolicy(
      {
        breached: async () => {
          throw new Error('our breach database is offline');
        },
      },
      { onUnavailable: (r) => reports.push(r) },
    );
    await expect(custom.check(CLEAN)).rejects.toBeInstanceOf(PasswordCheckUnavailableError);
    expect(reports.at(-1)).toEqual({
      userId: null,
      outcome: 'refused',
      reason: 'our breach database is offline',
    });
    api.mode = 'ok';
  });

  it('the demo app over HTTP: breached refused (400), clean accepted; service down → accepted and audited ("allow") or 503 ("refuse")', async () => {
    api.mode = 'ok';
    await t.createUser('hibp-user@example.com');
    const c = await loggedIn('hibp-user@example.com');
    const breached = await changePassword(c, 'breached passphrase 2019');
    expect(breached.status).toBe(400);
    const html = await breached.text();
    expect(html).toContain('This password has appeared in a data breach');
    expect(html).not.toContain('breached passphrase 2019');
    expect(await canLogin('hibp-user@example.com', PASSWORD)).toBe(true);
    const clean = await changePassword(c, CLEAN);
    expect(clean.status).toBe(303);
    expect(t.logs.events().some((e) => e.event === 'auth.password-check-unavailable')).toBe(false);

    // Service down, the app's default ("allow"): the change goes through, the miss is audited.
    api.mode = 'error';
    const allowed = await changePassword(c, 'breached passphrase 2019', CLEAN);
    expect(allowed.status).toBe(303);
    const event = t.logs.events().find((e) => e.event === 'auth.password-check-unavailable');
    expect(event).toMatchObject({ outcome: 'allowed', reason: 'HTTP 500', level: 40 });
    expect(JSON.stringify(event)).not.toContain('breached passphrase');
    expect(await canLogin('hibp-user@example.com', 'breached passphrase 2019')).toBe(true);

    // A second server configured with PWNED_PASSWORDS_ON_ERROR=refuse: 503, nothing changes.
    const strict = await secondServer(t.db, {
      rateLimit: NO_LIMITS,
      config: { pwnedPasswords: { url: api.url, onError: 'refuse', timeoutMs: 300 } },
    });
    try {
      const s = strict.client({ 'x-forwarded-for': '198.18.8.1' });
      expect((await loginForm(s, 'hibp-user@example.com', 'breached passphrase 2019')).status).toBe(303);
      const _csrf = await csrfOn(s);
      const res = await s.post('/account/password', {
        json: { currentPassword: 'breached passphrase 2019', newPassword: CLEAN },
        headers: { 'x-csrf-token': _csrf, accept: 'application/json' },
      });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(await res.json()).toMatchObject({
        error: 'password_check_unavailable',
        message: expect.stringMatching(/could not check this password.*try again/),
      });
      expect(strict.logs.events().find((e) => e.event === 'auth.password-check-unavailable')).toMatchObject({
        outcome: 'refused',
      });
      expect(await canLogin('hibp-user@example.com', 'breached passphrase 2019')).toBe(true);
    } finally {
      await strict.close();
      api.mode = 'ok';
    }
  });

  it('createAuth reports a check it could not make as an audit event, never with the password', async () => {
    const events: AuthEvent[] = [];
    const { createAuth } = await import('../../src/auth/index.js');
    const auth = createAuth({
      pool: t.db.pool,
      session: t.app.sessionMiddleware,
      rateLimit: false,
      argon2: { memoryCost: 4096, timeCost: 2, parallelism: 1 },
      passwordPolicy: { breached: pwnedPasswords({ url: api.url, timeoutMs: 200 }) },
      onEvent: (e) => events.push(e),
    });
    api.mode = 'hang';
    try {
      await auth.users.create({ email: 'event@example.com', password: 'breached passphrase 2019' });
    } finally {
      api.mode = 'ok';
    }
    expect(events).toEqual([
      {
        type: 'password-check-unavailable',
        userId: null,
        outcome: 'allowed',
        reason: 'timeout after 200 ms',
      },
    ]);
  });

  it('the CLI (PWNED_PASSWORDS_URL): breached refused with exit 1 and nothing stored; service down → accepted with a warning', async () => {
    api.mode = 'ok';
    api.requests.length = 0;
    const env = { DATABASE_URL: t.db.url, PWNED_PASSWORDS_URL: api.url, PWNED_PASSWORDS_TIMEOUT: '300ms' };
    const add = await runCli(['user', 'add', 'cli-pwned@example.com'], env, 'breached passphrase 2019\n');
    expect(add.code).toBe(1);
    expect(add.stderr).toContain(`${BREACHED_PASSWORD_MESSAGE}; nothing was changed`);
    expect(await t.app.auth.users.findByEmail('cli-pwned@example.com')).toBeNull();
    api.expectOnlyPrefixesSent(['breached passphrase 2019']);

    const refuse = await runCli(
      ['user', 'add', 'cli-pwned@example.com'],
      { ...env, PWNED_PASSWORDS_URL: await closedPortUrl(), PWNED_PASSWORDS_ON_ERROR: 'refuse' },
      `${CLEAN}\n`,
    );
    expect(refuse.code).toBe(1);
    expect(refuse.stderr).toMatch(/could not check this password.*try again.*; nothing was changed/);
    expect(await t.app.auth.users.findByEmail('cli-pwned@example.com')).toBeNull();

    api.mode = 'error';
    try {
      const allowed = await runCli(['user', 'add', 'cli-pwned@example.com'], env, `${CLEAN}\n`);
      expect(allowed.code).toBe(0);
      expect(allowed.stderr).toContain(
        'pgsession: warning: the password could not be checked against breached passwords (HTTP 500); it was accepted',
      );
    } finally {
      api.mode = 'ok';
    }
    expect(await canLogin('cli-pwned@example.com', CLEAN)).toBe(true);
  });
});
