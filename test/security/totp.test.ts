/**
 * Optional TOTP second factor (ASVS 6.3.3): black-box over HTTP against the demo app, codes
 * generated with `otpauth` as an authenticator app would, on a clock the test steps through;
 * plus the library's storage rules (replay race, hashed recovery codes, encryption at rest).
 */
import { Secret, TOTP } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuth, TotpManager } from '../../src/auth/index.js';
import { ConfigError, session } from '../../src/index.js';
import { PgStore } from '../../src/stores/postgres/index.js';
import {
  csrfFrom,
  csrfOf,
  loginForm,
  migratedDatabase,
  PASSWORD,
  type RunningApp,
  startApp,
} from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import type { Client } from '../helpers/http.js';

const STEP = 30_000;
// The middle of a time step, so ±1 step of drift is exactly what the test says it is.
let clock = Math.floor(Date.now() / STEP) * STEP + STEP / 2;
const now = () => clock;

/** The code an authenticator app shows at `ms` for a base32 secret. */
function codeAt(secret: string, ms = clock): string {
  return TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: ms });
}

let db: TestDatabase;
let t: RunningApp;
/** Every response body the tests saw, to check the secret appears only where it must. */
const bodies: string[] = [];

beforeAll(async () => {
  db = await migratedDatabase();
  // The library's default failed-login limits (5 per account+address per 15 min): each test
  // uses its own user and address.
  t = await startApp({ db, totp: { now } });
});
afterAll(async () => {
  await t?.close();
  await db?.drop();
});

async function text(res: Response): Promise<string> {
  const body = await res.text();
  bodies.push(body);
  return body;
}

/** Log in with the password only (a user without TOTP): 303 to the dashboard. */
async function passwordLogin(c: Client, email: string) {
  const res = await loginForm(c, email);
  await text(res);
  return res;
}

/** Enable TOTP through the pages, as a user would: returns the secret and recovery codes. */
async function enable(c: Client): Promise<{ secret: string; uri: string; recoveryCodes: string[] }> {
  const page = await text(await c.get('/account/mfa'));
  expect(page).toContain('Set up two-factor authentication');
  const start = await c.post('/account/mfa/start', { form: { _csrf: csrfFrom(page) } });
  expect(start.status).toBe(200);
  const html = await start.text(); // The one response allowed to carry the secret: not collected.
  const secret = /<code id="totp-secret">([^<]+)<\/code>/.exec(html)![1]!.replaceAll(' ', '');
  const uri = /<code id="totp-uri">([^<]+)<\/code>/.exec(html)![1]!.replaceAll('&amp;', '&');
  expect(html).toContain('<svg');
  // Not on until a code proves the app has the secret.
  expect(
    await (await c.get('/account/mfa', { headers: { accept: 'application/json' } })).json(),
  ).toMatchObject({
    enabled: false,
    pending: true,
  });
  const confirm = await c.post('/account/mfa/confirm', {
    form: { _csrf: csrfFrom(html), code: codeAt(secret) },
  });
  expect(confirm.status).toBe(200);
  const shown = await confirm.text(); // Recovery codes, shown once: not collected either.
  const recoveryCodes = [...shown.matchAll(/<li><code>([A-Z2-7-]+)<\/code><\/li>/g)].map((m) => m[1]!);
  expect(recoveryCodes).toHaveLength(10);
  // The confirming code's step is used up: step the clock so the next code is a new one.
  clock += STEP;
  return { secret, uri, recoveryCodes };
}

async function logout(c: Client) {
  const res = await c.post('/logout', { form: { _csrf: await csrfOf(c) } });
  expect(res.status).toBe(303);
}

/** POST /login/totp with the pending session's CSRF token (read from the code form). */
async function submitCode(c: Client, code: string) {
  const form = await c.get('/login/totp');
  if (form.status !== 200) return form;
  const res = await c.post('/login/totp', { form: { _csrf: csrfFrom(await text(form)), code } });
  await text(res);
  return res;
}

/** A user with TOTP on, logged out, and a client from its own address. */
async function enrolledUser(email: string, ip: string) {
  await t.createUser(email);
  const c = t.client({ 'x-forwarded-for': ip });
  expect((await passwordLogin(c, email)).headers.get('location')).toBe('/dashboard');
  const enrolled = await enable(c);
  await logout(c);
  return { c, ...enrolled };
}

describe('TOTP login over HTTP (ASVS 6.3.3)', () => {
  it('a user without TOTP logs in as before: one step, straight to the dashboard', async () => {
    await t.createUser('plain@example.com');
    const c = t.client({ 'x-forwarded-for': '198.51.100.1' });
    const res = await passwordLogin(c, 'plain@example.com');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/dashboard');
    expect((await c.get('/api/me')).status).toBe(200);
    const json = await t.client({ 'x-forwarded-for': '198.51.100.1' }).post('/login', {
      json: { email: 'plain@example.com', password: PASSWORD },
      headers: { accept: 'application/json' },
    });
    expect(json.status).toBe(200);
    expect(await json.json()).toMatchObject({ user: { email: 'plain@example.com' } });
  });

  it('enable → logout → the password alone does not log in: the dashboard sends back to the login', async () => {
    const { c } = await enrolledUser('two@example.com', '198.51.100.2');
    const before = c.jar.get('sessionId');
    const res = await passwordLogin(c, 'two@example.com');
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/login/totp');
    // The id is renewed at the password step already (no fixation into the second step).
    expect(c.jar.get('sessionId')).toBeDefined();
    expect(c.jar.get('sessionId')).not.toBe(before);
    const dash = await c.get('/dashboard');
    expect(dash.status).toBe(302);
    expect(dash.headers.get('location')).toMatch(/^\/login\?error=login_required/);
    expect((await c.get('/api/me')).status).toBe(401);
    expect((await c.get('/account/mfa')).status).toBe(302);
    // JSON clients get a result to branch on, not a user.
    const json = await t.client({ 'x-forwarded-for': '198.51.100.2' }).post('/login', {
      json: { email: 'two@example.com', password: PASSWORD },
      headers: { accept: 'application/json' },
    });
    expect(json.status).toBe(202);
    expect(await json.json()).toEqual({ status: 'totp-required', next: '/login/totp' });
  });

  it('a wrong code is refused; the right one logs in with a new session id, as a password login does', async () => {
    const { c, secret } = await enrolledUser('right@example.com', '198.51.100.3');
    await passwordLogin(c, 'right@example.com');
    const pending = c.jar.get('sessionId')!;
    const wrong = await submitCode(c, codeAt(secret) === '000000' ? '111111' : '000000');
    expect(wrong.status).toBe(303);
    expect(wrong.headers.get('location')).toBe('/login/totp?error=wrong_code');
    expect((await c.get('/api/me')).status).toBe(401);
    const logins = t.logs.events().filter((e) => e.event === 'auth.login').length;
    const right = await submitCode(c, codeAt(secret));
    expect(right.status).toBe(303);
    expect(right.headers.get('location')).toBe('/dashboard');
    expect(c.jar.get('sessionId')).not.toBe(pending);
    const me = await c.get('/api/me');
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ email: 'right@example.com' });
    // Same as a password-only login: a CSRF token (forms work), a `login` audit event.
    expect(await csrfOf(c)).toMatch(/^[\w-]{43}$/);
    expect(t.logs.events().filter((e) => e.event === 'auth.login')).toHaveLength(logins + 1);
    // The pending cookie is dead: neither logged in nor still waiting for a code.
    const old = t.client();
    old.jar.set('sessionId', pending);
    expect((await old.get('/api/me')).status).toBe(401);
    expect((await old.get('/login/totp')).headers.get('location')).toBe('/login?error=login_required');
  });

  it('a wrong code after the right password tells the owner (ASVS 6.3.5): one second-factor-failed notice per window, without the code', async () => {
    const { c, secret } = await enrolledUser('known-password@example.com', '198.51.100.14');
    const user = (await t.app.auth.users.findByEmail('known-password@example.com'))!;
    const kinds = async () => {
      await t.app.auth.notices.settled();
      return (await t.app.auth.notices.list(user.id)).filter((n) => n.kind === 'second-factor-failed');
    };
    expect(await kinds()).toEqual([]);
    await passwordLogin(c, 'known-password@example.com');
    const wrong = codeAt(secret) === '000000' ? '111111' : '000000';
    expect((await submitCode(c, wrong)).headers.get('location')).toBe('/login/totp?error=wrong_code');
    const first = await kinds();
    expect(first).toHaveLength(1);
    expect(first[0]!.details).toMatchObject({ ip: '198.51.100.14' });
    expect(JSON.stringify(first[0])).not.toContain(wrong);
    // A second wrong code in the same window: no second notice.
    expect((await submitCode(c, wrong)).headers.get('location')).toBe('/login/totp?error=wrong_code');
    expect(await kinds()).toHaveLength(1);
    // The dashboard says what it means once the owner logs in.
    expect((await submitCode(c, codeAt(secret))).headers.get('location')).toBe('/dashboard');
    expect(await text(await c.get('/dashboard'))).toContain(
      'Your password was entered correctly but the two-factor code was wrong',
    );
  });

  it('the same code twice is refused (replay); a code from 3 steps ago too; the next step’s code works', async () => {
    const { c, secret } = await enrolledUser('replay@example.com', '198.51.100.4');
    const code = codeAt(secret);
    await passwordLogin(c, 'replay@example.com');
    expect((await submitCode(c, code)).headers.get('location')).toBe('/dashboard');
    await logout(c);
    await passwordLogin(c, 'replay@example.com');
    const again = await submitCode(c, code);
    expect(again.headers.get('location')).toBe('/login/totp?error=wrong_code');
    // 3 steps back from a later now: a step never used, but outside the ±1 window.
    clock += 4 * STEP;
    const old = codeAt(secret, clock - 3 * STEP);
    expect((await submitCode(c, old)).headers.get('location')).toBe('/login/totp?error=wrong_code');
    expect((await c.get('/api/me')).status).toBe(401);
    clock += STEP;
    expect((await submitCode(c, codeAt(secret))).headers.get('location')).toBe('/dashboard');
    expect((await c.get('/api/me')).status).toBe(200);
  });

  it('a recovery code logs in once only', async () => {
    const { c, recoveryCodes } = await enrolledUser('recover@example.com', '198.51.100.5');
    const [first, second] = recoveryCodes;
    await passwordLogin(c, 'recover@example.com');
    // As typed by a person: lower case, no dashes.
    expect((await submitCode(c, first!.toLowerCase().replaceAll('-', ''))).headers.get('location')).toBe(
      '/dashboard',
    );
    expect((await c.get('/api/me')).status).toBe(200);
    const left = await c.get('/account/mfa', { headers: { accept: 'application/json' } });
    expect(await left.json()).toMatchObject({ enabled: true, recoveryCodesLeft: 9 });
    await logout(c);
    await passwordLogin(c, 'recover@example.com');
    expect((await submitCode(c, first!)).headers.get('location')).toBe('/login/totp?error=wrong_code');
    expect((await c.get('/api/me')).status).toBe(401);
    expect((await submitCode(c, second!)).headers.get('location')).toBe('/dashboard');
  });

  it('wrong codes count as failed logins: with the password’s attempt, the 6th is 429, the right code included', async () => {
    const { c, secret } = await enrolledUser('guess@example.com', '198.51.100.6');
    await passwordLogin(c, 'guess@example.com');
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await submitCode(c, `99999${i}`)).status);
    expect(statuses).toEqual([303, 303, 303, 303, 429]);
    const right = await submitCode(c, codeAt(secret));
    expect(right.status).toBe(429);
    expect(Number(right.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await c.get('/api/me')).status).toBe(401);
    // The owner, from another address, still logs in.
    const owner = t.client({ 'x-forwarded-for': '198.51.100.66' });
    await passwordLogin(owner, 'guess@example.com');
    expect((await submitCode(owner, codeAt(secret))).headers.get('location')).toBe('/dashboard');
    expect(t.logs.events().some((e) => e.event === 'auth.second-factor-failed')).toBe(true);
  });

  it('a pending login expires after 5 minutes: back to the password', async () => {
    const { c, secret } = await enrolledUser('slow@example.com', '198.51.100.7');
    await passwordLogin(c, 'slow@example.com');
    const form = await c.get('/login/totp');
    const csrf = csrfFrom(await text(form));
    clock += 5 * 60_000 + STEP;
    const res = await c.post('/login/totp', { form: { _csrf: csrf, code: codeAt(secret) } });
    expect(res.headers.get('location')).toBe('/login?error=login_required');
    expect((await c.get('/api/me')).status).toBe(401);
  });

  it('disabling needs the current password and a code; then the password alone logs in again', async () => {
    const { c, secret } = await enrolledUser('off@example.com', '198.51.100.8');
    await passwordLogin(c, 'off@example.com');
    await submitCode(c, codeAt(secret));
    clock += STEP;
    const csrf = await csrfOf(c);
    const disable = (currentPassword: string, code: string) =>
      c.post('/account/mfa/disable', { form: { _csrf: csrf, currentPassword, code } });
    const noPassword = await disable('not the password', codeAt(secret));
    expect(noPassword.headers.get('location')).toBe('/account/mfa?error=wrong_password');
    const noCode = await disable(PASSWORD, '000000' === codeAt(secret) ? '111111' : '000000');
    expect(noCode.headers.get('location')).toBe('/account/mfa?error=wrong_code');
    const status = await c.get('/account/mfa', { headers: { accept: 'application/json' } });
    expect(await status.json()).toMatchObject({ enabled: true });
    // Without the CSRF token: refused before anything is checked.
    expect(
      (await c.post('/account/mfa/disable', { form: { currentPassword: PASSWORD, code: codeAt(secret) } }))
        .status,
    ).toBe(403);
    const ok = await disable(PASSWORD, codeAt(secret));
    expect(ok.headers.get('location')).toBe('/account/mfa?notice=disabled');
    await logout(c);
    const res = await passwordLogin(c, 'off@example.com');
    expect(res.headers.get('location')).toBe('/dashboard');
    expect((await c.get('/api/me')).status).toBe(200);
  });

  it('setting up needs a recent password and the CSRF token', async () => {
    const stale = await startApp({ db, totp: { now }, config: { reauthWindow: 1 } });
    try {
      await stale.createUser('stale@example.com');
      const c = stale.client({ 'x-forwarded-for': '198.51.100.9' });
      await loginForm(c, 'stale@example.com');
      const page = await c.get('/account/mfa');
      const csrf = csrfFrom(await page.text());
      await new Promise((r) => setTimeout(r, 5));
      const res = await c.post('/account/mfa/start', { form: { _csrf: csrf } });
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toMatch(/^\/reauth\?error=reauth_required/);
      expect((await c.post('/account/mfa/start', { form: {} })).status).toBe(403);
      const status = await c.get('/account/mfa', { headers: { accept: 'application/json' } });
      expect(await status.json()).toMatchObject({ enabled: false, pending: false });
    } finally {
      await stale.close();
    }
  });

  it('nothing in the audit log or in any other response carries the secret or a recovery code', async () => {
    const { c, secret, uri, recoveryCodes } = await enrolledUser('quiet@example.com', '198.51.100.10');
    await passwordLogin(c, 'quiet@example.com');
    await submitCode(c, recoveryCodes[0]!);
    await text(await c.get('/account/mfa'));
    await text(await c.get('/account/mfa', { headers: { accept: 'application/json' } }));
    expect(uri).toMatch(/^otpauth:\/\/totp\/pgsession%20demo:quiet%40example\.com\?/);
    expect(uri).toContain('algorithm=SHA1&digits=6&period=30');
    const seen = [t.logs.text, ...bodies];
    for (const s of seen) {
      expect(s).not.toContain(secret);
      for (const code of recoveryCodes) {
        expect(s).not.toContain(code);
        expect(s).not.toContain(code.replaceAll('-', ''));
      }
    }
    expect(t.logs.events().some((e) => e.event === 'auth.totp-enabled')).toBe(true);
    // Stored: recovery codes only as hashes.
    const { rows } = await db.pool.query<{ code_hash: string }>(
      'SELECT code_hash FROM auth_totp_recovery_codes r JOIN users u ON u.id = r.user_id WHERE u.email = $1',
      ['quiet@example.com'],
    );
    expect(rows).toHaveLength(10);
    for (const { code_hash } of rows) for (const code of recoveryCodes) expect(code_hash).not.toContain(code);
  });
});

describe('TOTP_ENCRYPTION_KEY (the demo)', () => {
  it('with the key set, the stored secret is encrypted and logins with codes work as before', async () => {
    const key = Buffer.alloc(32, 9).toString('base64');
    const enc = await startApp({ db, totp: { now }, config: { totpEncryptionKey: key } });
    const saved = t;
    try {
      t = enc;
      const { c, secret } = await enrolledUser('sealed@example.com', '198.51.100.11');
      const { rows } = await db.pool.query<{ secret: string }>(
        'SELECT t.secret FROM auth_totp t JOIN users u ON u.id = t.user_id WHERE u.email = $1',
        ['sealed@example.com'],
      );
      expect(rows[0]!.secret).toMatch(/^enc1:/);
      expect(rows[0]!.secret).not.toContain(secret);
      await passwordLogin(c, 'sealed@example.com');
      expect((await submitCode(c, codeAt(secret))).headers.get('location')).toBe('/dashboard');
    } finally {
      t = saved;
      await enc.close();
    }
  });
});

describe('TotpManager (library)', () => {
  async function user(email: string): Promise<number> {
    const { rows } = await db.pool.query<{ id: string }>(
      "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id",
      [email],
    );
    return Number(rows[0]!.id);
  }

  it('enrollment: a 160-bit secret, the URI every app reads, off until a valid code confirms it', async () => {
    const totp = new TotpManager(db.pool, { issuer: 'Acme', now });
    const id = await user('lib-enroll@example.com');
    const { secret, uri } = await totp.startEnrollment(id, 'lib-enroll@example.com');
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    expect(uri).toBe(
      `otpauth://totp/Acme:lib-enroll%40example.com?issuer=Acme&secret=${secret}&algorithm=SHA1&digits=6&period=30`,
    );
    expect(await totp.isEnabled(id)).toBe(false);
    expect(await totp.confirmEnrollment(id, '12345')).toEqual({ ok: false, reason: 'wrong-code' });
    // ±1 step of drift is accepted, 2 is not.
    expect(await totp.confirmEnrollment(id, codeAt(secret, clock - 2 * STEP))).toEqual({
      ok: false,
      reason: 'wrong-code',
    });
    const ok = await totp.confirmEnrollment(id, codeAt(secret, clock - STEP));
    expect(ok.ok).toBe(true);
    if (!ok.ok) return;
    expect(new Set(ok.recoveryCodes).size).toBe(10);
    for (const code of ok.recoveryCodes) expect(code).toMatch(/^[A-Z2-7]{4}(-[A-Z2-7]{4}){3}$/);
    expect(await totp.isEnabled(id)).toBe(true);
    // Enabled: a new enrollment cannot silently replace the secret.
    await expect(totp.startEnrollment(id, 'x')).rejects.toMatchObject({ status: 409 });
    // The confirming code's step is used: the same step again is a replay.
    expect(await totp.verifyCode(id, codeAt(secret, clock - STEP))).toBe(false);
    expect(await totp.verifyCode(id, codeAt(secret))).toBe(true);
  });

  it('two requests racing with one code: exactly one is accepted', async () => {
    const totp = new TotpManager(db.pool, { now });
    const id = await user('lib-race@example.com');
    const { secret } = await totp.startEnrollment(id, 'lib-race@example.com');
    await totp.confirmEnrollment(id, codeAt(secret, clock - STEP));
    const code = codeAt(secret);
    const results = await Promise.all(Array.from({ length: 8 }, () => totp.verifyCode(id, code)));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it('with an encryption key the stored secret is AES-256-GCM, bound to its user', async () => {
    const key = Buffer.alloc(32, 7);
    const totp = new TotpManager(db.pool, { encryptionKey: key.toString('hex'), now });
    const id = await user('lib-enc@example.com');
    const other = await user('lib-enc-other@example.com');
    const { secret } = await totp.startEnrollment(id, 'lib-enc@example.com');
    await totp.confirmEnrollment(id, codeAt(secret, clock - STEP));
    const { rows } = await db.pool.query<{ secret: string }>(
      'SELECT secret FROM auth_totp WHERE user_id = $1',
      [id],
    );
    expect(rows[0]!.secret).toMatch(/^enc1:/);
    expect(rows[0]!.secret).not.toContain(secret);
    expect(await totp.verifyCode(id, codeAt(secret))).toBe(true);
    // Without the key: a clear configuration error, not a silent "wrong code".
    clock += STEP;
    await expect(new TotpManager(db.pool, { now }).verifyCode(id, codeAt(secret))).rejects.toBeInstanceOf(
      ConfigError,
    );
    // Copied onto another user's row: does not decrypt.
    await db.pool.query(
      'INSERT INTO auth_totp (user_id, secret, enabled_at) SELECT $2, secret, now() FROM auth_totp WHERE user_id = $1',
      [id, other],
    );
    await expect(totp.verifyCode(other, codeAt(secret))).rejects.toThrow();
    expect(() => new TotpManager(db.pool, { encryptionKey: 'short' })).toThrow(ConfigError);
  });

  it('createAuth exposes it, and login() of a user without TOTP is unchanged', async () => {
    const store = new PgStore({ pool: db.pool, pruneSessionInterval: false });
    try {
      const auth = createAuth({
        pool: db.pool,
        session: session({ secret: 'totp-test-secret-0123456789abcdefghij', store }),
        rateLimit: false,
      });
      expect(auth.totp).toBeInstanceOf(TotpManager);
      expect(await auth.totp.status(await user('lib-none@example.com'))).toEqual({
        enabled: false,
        pending: false,
        recoveryCodesLeft: 0,
      });
    } finally {
      await store.close();
    }
  });
});
