/**
 * Login abuse (ASVS 6.1.1, 6.3.1, 6.3.8): no user enumeration by status, body, headers or time;
 * failed-login limits that stop guessing without locking the account's owner out.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_ARGON2_PARAMS } from '../../src/auth/passwords.js';
import { loginForm, migratedDatabase, PASSWORD, type RunningApp, startApp } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import { NO_LIMITS } from './support.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await migratedDatabase();
});
afterAll(async () => {
  await db?.drop();
});

/** What a client can observe of an answer, minus what differs between any two responses. */
async function observe(res: Response) {
  const headers = [...res.headers]
    .filter(([k]) => !['date', 'keep-alive', 'connection'].includes(k))
    .map(([k, v]) => `${k}: ${v}`)
    .sort();
  return { status: res.status, headers, body: await res.text(), cookies: res.headers.getSetCookie() };
}

describe('no user enumeration (ASVS 6.3.8)', () => {
  let t: RunningApp;
  beforeAll(async () => {
    // The production argon2id cost: timing is what is compared.
    t = await startApp({ db, argon2: DEFAULT_ARGON2_PARAMS, rateLimit: NO_LIMITS });
    await t.app.auth.users.create({ email: 'known@example.com', password: PASSWORD });
    const disabled = await t.app.auth.users.create({ email: 'disabled@example.com', password: PASSWORD });
    await t.app.auth.users.disable(disabled.id);
  });
  afterAll(() => t?.close());

  const attempt = async (email: string, json = false) => {
    const started = performance.now();
    const res = json
      ? await t.client().post('/login', {
          json: { email, password: 'not the password 1' },
          headers: { accept: 'application/json' },
        })
      : await t
          .client()
          .post('/login', { form: { email, password: 'not the password 1', next: '/account' } });
    const ms = performance.now() - started;
    return { ...(await observe(res)), ms };
  };

  it('known, unknown and disabled emails: same status, headers, body and (no) cookie, form and JSON', async () => {
    for (const json of [false, true]) {
      const known = await attempt('known@example.com', json);
      expect(known.cookies).toEqual([]);
      expect(known.status).toBe(json ? 401 : 303);
      for (const email of ['unknown@example.com', 'disabled@example.com', 'KNOWN@example.com ', 'x@y']) {
        const other = await attempt(email, json);
        expect(other.status, email).toBe(known.status);
        expect(other.headers, email).toEqual(known.headers);
        expect(other.body, email).toBe(known.body);
        expect(other.cookies, email).toEqual([]);
      }
    }
  });

  it('and similar time: the medians of 20 interleaved tries differ by far less than one hash', async () => {
    await attempt('known@example.com');
    await attempt('warm-up@example.com');
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 20; i++) {
      known.push((await attempt('known@example.com')).ms);
      unknown.push((await attempt(`nobody-${i}@example.com`)).ms);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const mk = median(known);
    const mu = median(unknown);
    // Skipping the hash for unknown emails would make them faster by a whole argon2id
    // verification (the smaller of the two medians, roughly); allow a third of that for noise.
    expect(Math.min(mk, mu)).toBeGreaterThan(5);
    expect(Math.abs(mk - mu)).toBeLessThan(Math.max(15, Math.min(mk, mu) / 3));
  });
});

describe('failed-login limits (ASVS 6.1.1, 6.3.1)', () => {
  let t: RunningApp;
  beforeAll(async () => {
    // The default policy: 5 per account+address per 15 min, 100 per address per hour, 50 per account per hour.
    t = await startApp({ db });
    await t.createUser('owner@example.com');
    await t.createUser('neighbour@example.com');
  });
  afterAll(() => t?.close());

  const from = (ip: string) => t.client({ 'x-forwarded-for': ip });

  it('an attacker guessing from one address is stopped after 5 failures, the right password included', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) {
      statuses.push((await loginForm(from('203.0.113.66'), 'owner@example.com', `guess ${i} guess`)).status);
    }
    expect(statuses).toEqual([303, 303, 303, 303, 303, 429, 429]);
    const right = await loginForm(from('203.0.113.66'), 'owner@example.com', PASSWORD);
    expect(right.status).toBe(429);
    expect(Number(right.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(right.headers.getSetCookie()).toEqual([]);
  });

  it('…while the owner, from their own address, logs in at once; their open session was never touched', async () => {
    const already = from('198.51.100.200');
    expect((await loginForm(already, 'owner@example.com')).status).toBe(303);
    for (let i = 0; i < 10; i++)
      await loginForm(from('203.0.113.67'), 'owner@example.com', `more ${i} guesses`);
    const res = await loginForm(from('198.51.100.201'), 'owner@example.com', PASSWORD);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/dashboard');
    expect((await already.get('/api/me')).status).toBe(200);
    // The attacker's address is not banned for other accounts either (only that pair).
    const neighbour = await loginForm(from('203.0.113.66'), 'neighbour@example.com', PASSWORD);
    expect(neighbour.status).toBe(303);
  });

  it('the limits are shared by every server on the database', async () => {
    const second = await startApp({ db });
    try {
      const res = await loginForm(
        second.client({ 'x-forwarded-for': '203.0.113.66' }),
        'owner@example.com',
        PASSWORD,
      );
      expect(res.status).toBe(429);
    } finally {
      await second.close();
    }
  });

  it('JSON logins go through the same limits (one pathway, ASVS 6.1.3 / 6.3.4)', async () => {
    const res = await from('203.0.113.66').post('/login', {
      json: { email: 'owner@example.com', password: PASSWORD },
      headers: { accept: 'application/json' },
    });
    expect(res.status).toBe(429);
    expect(await res.json()).toMatchObject({ error: 'rate_limited' });
  });
});
