import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_ARGON2_PARAMS } from '../../src/auth/passwords.js';
import type { TestDatabase } from '../helpers/db.js';
import { loginForm, migratedDatabase, PASSWORD, type RunningApp, startApp } from './harness.js';

let db: TestDatabase;
let t: RunningApp;

const from = (app: RunningApp, ip: string) => app.client({ 'x-forwarded-for': ip });

/**
 * Failed logins on a fresh account each, the i-th from `ipOf(i)`, on an app whose per-address
 * limit is `points` an hour: the statuses.
 */
async function sprayStatuses(points: number, count: number, ipOf: (i: number) => string, tag: string) {
  const spray = await startApp({ db, rateLimit: { policy: { perAddress: { points, duration: 3600 } } } });
  try {
    const statuses: number[] = [];
    for (let i = 0; i < count; i++) {
      statuses.push((await loginForm(from(spray, ipOf(i)), `${tag}${i}@example.com`, 'Password1!')).status);
    }
    return statuses;
  } finally {
    await spray.close();
  }
}

beforeAll(async () => {
  db = await migratedDatabase();
  t = await startApp({ db });
  await t.createUser('victim@example.com');
  await t.createUser('sprayed1@example.com');
});
afterAll(async () => {
  await t?.close();
  await db?.drop();
});

describe('failed-login rate limiting (counters in PostgreSQL)', () => {
  it('5 failures for one account from one address, then 429 + Retry-After (even with the right password)', async () => {
    const attacker = '203.0.113.9';
    for (let i = 0; i < 5; i++) {
      const res = await loginForm(from(t, attacker), 'victim@example.com', `guess-${i}-xxxx`);
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toBe('/login?error=invalid_credentials');
    }
    const limited = await loginForm(from(t, attacker), 'victim@example.com', 'guess-6-xxxx');
    expect(limited.status).toBe(429);
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(15 * 60);
    expect(await limited.text()).toContain('Too many');
    expect(limited.headers.getSetCookie()).toEqual([]);
    // The right password from the attacking address is refused too (no guessing around the limit)…
    const right = await loginForm(from(t, attacker), 'victim@example.com', PASSWORD);
    expect(right.status).toBe(429);
    // …JSON clients get JSON.
    const json = await from(t, attacker).post('/login', {
      json: { email: 'victim@example.com', password: PASSWORD },
      headers: { accept: 'application/json' },
    });
    expect(json.status).toBe(429);
    expect(json.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await json.json()).toMatchObject({ error: 'rate_limited' });
  });

  it('the victim still logs in from another address (no lockout)', async () => {
    const res = await loginForm(from(t, '198.51.100.7'), 'victim@example.com', PASSWORD);
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/dashboard');
  });

  it('the counters are shared by every app server on the database', async () => {
    const second = await startApp({ db });
    try {
      const res = await loginForm(from(second, '203.0.113.9'), 'victim@example.com', PASSWORD);
      expect(res.status).toBe(429);
    } finally {
      await second.close();
    }
    const { rows } = await db.pool.query<{ key: string }>('SELECT key FROM auth_rate_limits');
    expect(rows.length).toBeGreaterThan(0);
    // Keys hold hashes, never the emails typed.
    for (const { key } of rows) expect(key).not.toContain('@');
  });

  it('unknown emails are limited exactly like known ones (no enumeration through the limits)', async () => {
    const ip = '203.0.113.50';
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++)
      statuses.push((await loginForm(from(t, ip), 'nobody@example.com', 'whatever-1')).status);
    expect(statuses).toEqual([303, 303, 303, 303, 303, 429]);
  });

  it('password spraying from one address is limited across accounts', async () => {
    const statuses = await sprayStatuses(10, 12, () => '203.0.113.77', 'user');
    expect(statuses.slice(0, 10).every((s) => s === 303)).toBe(true);
    expect(statuses.slice(10)).toEqual([429, 429]);
  });

  it('distributed guessing is capped per account (documented: the owner then waits too)', async () => {
    const capped = await startApp({
      db,
      rateLimit: { policy: { perAccount: { points: 8, duration: 3600 } } },
    });
    try {
      await capped.createUser('target@example.com');
      for (let i = 0; i < 8; i++) {
        const res = await loginForm(from(capped, `192.0.2.${i + 1}`), 'target@example.com', 'wrong-password');
        expect(res.status).toBe(303);
      }
      expect(
        (await loginForm(from(capped, '192.0.2.200'), 'target@example.com', 'wrong-password')).status,
      ).toBe(429);
    } finally {
      await capped.close();
    }
  });

  it('a successful login clears the failures of its account+address pair', async () => {
    await t.createUser('typo@example.com');
    const ip = '203.0.113.120';
    for (let i = 0; i < 4; i++) await loginForm(from(t, ip), 'typo@example.com', 'typo-typo');
    expect((await loginForm(from(t, ip), 'typo@example.com', PASSWORD)).status).toBe(303);
    for (let i = 0; i < 5; i++) {
      expect((await loginForm(from(t, ip), 'typo@example.com', 'typo-typo')).status).toBe(303);
    }
    expect((await loginForm(from(t, ip), 'typo@example.com', 'typo-typo')).status).toBe(429);
  });

  // Issue 12, item 2: every address of one /64 used to be a new client, so neither the pair
  // nor the per-address limit ever tripped for an attacker holding an IPv6 prefix.
  describe('IPv6: one /64 is one client', () => {
    const inPrefix = (prefix: string, i: number) =>
      `${prefix}:${(i + 1).toString(16)}:${((i * 7919) & 0xffff).toString(16)}:0:${(i + 3).toString(16)}`;

    it('one account guessed from many addresses of one /64: refused after 5, the owner elsewhere is not', async () => {
      await t.createUser('v6victim@example.com');
      const statuses: number[] = [];
      for (let i = 0; i < 7; i++) {
        const res = await loginForm(
          from(t, inPrefix('2001:db8:aa:1', i)),
          'v6victim@example.com',
          `guess-${i}-xxxx`,
        );
        statuses.push(res.status);
      }
      expect(statuses).toEqual([303, 303, 303, 303, 303, 429, 429]);
      // The same /64 written another way is the same client…
      expect(
        (await loginForm(from(t, '2001:DB8:AA:1:0:0:0:FFFF'), 'v6victim@example.com', PASSWORD)).status,
      ).toBe(429);
      // …and the neighbouring /64 (another customer) is not.
      expect((await loginForm(from(t, '2001:db8:aa:2::1'), 'v6victim@example.com', PASSWORD)).status).toBe(
        303,
      );
    });

    it('password spraying over many accounts from one /64 is limited across accounts', async () => {
      const statuses = await sprayStatuses(10, 12, (i) => inPrefix('2001:db8:bb:7', i), 'v6user');
      expect(statuses.slice(0, 10).every((s) => s === 303)).toBe(true);
      expect(statuses.slice(10)).toEqual([429, 429]);
    });

    it('an IPv4-mapped IPv6 address counts as its IPv4 address', async () => {
      const forms = ['198.51.100.33', '::ffff:198.51.100.33', '::ffff:c633:6421', '198.51.100.33'];
      expect(await sprayStatuses(3, forms.length, (i) => forms[i]!, 'mapped')).toEqual([303, 303, 303, 429]);
    });
  });

  it('rate limiting is in the audit log, with a hashed email', async () => {
    const events = t.logs.events().filter((e) => e.event === 'auth.rate-limited');
    expect(events.length).toBeGreaterThan(0);
    expect(events[0]).toMatchObject({ scope: 'account-ip', ip: '203.0.113.9' });
    expect(JSON.stringify(events)).not.toContain('victim@example.com');
  });
});

describe('no user enumeration', () => {
  /** Real argon2id cost, and limits out of the way: these tests measure the login itself. */
  const timingApp = () =>
    startApp({
      db,
      argon2: DEFAULT_ARGON2_PARAMS,
      rateLimit: {
        policy: {
          perAccountAddress: { points: 10_000, duration: 60 },
          perAddress: { points: 10_000, duration: 60 },
          perAccount: { points: 10_000, duration: 60 },
        },
      },
    });

  it('known and unknown emails: same status, same body, no cookie, similar time', async () => {
    const app = await timingApp();
    try {
      await app.app.auth.users.create({ email: 'known@example.com', password: PASSWORD });
      const attempt = async (email: string) => {
        const started = performance.now();
        const res = await app.client().post('/login', { form: { email, password: 'not the password' } });
        const ms = performance.now() - started;
        return {
          status: res.status,
          location: res.headers.get('location'),
          body: await res.text(),
          cookies: res.headers.getSetCookie(),
          ms,
        };
      };
      const known: number[] = [];
      const unknown: number[] = [];
      // Warm up (first hash, connections), then alternate to spread noise evenly.
      await attempt('known@example.com');
      await attempt('unknown-0@example.com');
      for (let i = 0; i < 20; i++) {
        const k = await attempt('known@example.com');
        const u = await attempt(`unknown-${i}@example.com`);
        expect(u.status).toBe(k.status);
        expect(u.location).toBe(k.location);
        expect(u.body).toBe(k.body);
        expect(k.cookies).toEqual([]);
        expect(u.cookies).toEqual([]);
        known.push(k.ms);
        unknown.push(u.ms);
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const mk = median(known);
      const mu = median(unknown);
      // Both pay one argon2id verification; generous bound for a shared CI machine.
      expect(Math.abs(mk - mu)).toBeLessThan(Math.max(25, 0.5 * Math.max(mk, mu)));
      const json = async (email: string) => {
        const res = await app.client().post('/login', {
          json: { email, password: 'not the password' },
          headers: { accept: 'application/json' },
        });
        return [res.status, await res.text()];
      };
      expect(await json('known@example.com')).toEqual(await json('unknown-x@example.com'));
    } finally {
      await app.close();
    }
  });

  // Issue 12, item 3: an unknown email was checked against a dummy argon2id hash while a bcrypt
  // account paid bcrypt's cost (cost-12: 359 ms median against 52 ms), so timing told which
  // accounts still have imported legacy hashes. Every attempt now waits as long as a bcrypt-12
  // verification: ~10 s alone, several times that on a busy machine (hence the timeout).
  it('argon2id, bcrypt-10 and bcrypt-12 accounts and unknown emails: failed-login medians within 1.5x', async () => {
    const app = await timingApp();
    try {
      const users = app.app.auth.users;
      await users.create({ email: 'timing-argon2@example.com', password: PASSWORD });
      // Imported the way the seed's users are: their bcrypt hashes as they were.
      await users.createWithHash({
        email: 'timing-b10@example.com',
        passwordHash: bcrypt.hashSync(PASSWORD, 10),
      });
      await users.createWithHash({
        email: 'timing-b12@example.com',
        passwordHash: bcrypt.hashSync(PASSWORD, 12),
      });
      const attempt = async (email: string) => {
        const started = performance.now();
        const res = await app.client().post('/login', { form: { email, password: 'not the password' } });
        await res.text();
        expect(res.status).toBe(303);
        return performance.now() - started;
      };
      const classes = {
        argon2: () => 'timing-argon2@example.com',
        bcrypt10: () => 'timing-b10@example.com',
        bcrypt12: () => 'timing-b12@example.com',
        unknown: (i: number) => `timing-nobody-${i}@example.com`,
      };
      const times: Record<keyof typeof classes, number[]> = {
        argon2: [],
        bcrypt10: [],
        bcrypt12: [],
        unknown: [],
      };
      // Interleaved rounds, so a noisy moment hits every class alike.
      for (let i = 0; i < 5; i++) {
        for (const [name, email] of Object.entries(classes) as Array<
          [keyof typeof classes, (i: number) => string]
        >) {
          times[name].push(await attempt(email(i)));
        }
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const unknown = median(times.unknown);
      for (const name of ['argon2', 'bcrypt10', 'bcrypt12'] as const) {
        const ratio = median(times[name]) / unknown;
        expect(
          ratio,
          `${name}: ${median(times[name]).toFixed(0)} ms vs unknown ${unknown.toFixed(0)} ms`,
        ).toBeLessThan(1.5);
        expect(
          ratio,
          `${name}: ${median(times[name]).toFixed(0)} ms vs unknown ${unknown.toFixed(0)} ms`,
        ).toBeGreaterThan(1 / 1.5);
      }
    } finally {
      await app.close();
    }
  }, 180_000);
});
