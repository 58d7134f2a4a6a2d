/**
 * The second-factor seam: a factor is one class implementing `SecondFactor`, passed to
 * `createAuth({ secondFactors })`; the login flow treats it as it treats TOTP (new session id,
 * a pending state no guard counts as logged in, a time limit, the failed-login limits, events).
 * The factor here is an e-mailed one-time code, as an app would write it.
 */

import { createServer } from 'node:http';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AuthEvent,
  createAuth,
  isAuthenticated,
  isSecondFactorRequired,
  type SecondFactor,
  type SecondFactorCheck,
} from '../../src/auth/index.js';
import { ConfigError, session } from '../../src/index.js';
import { PgStore } from '../../src/stores/postgres/index.js';
import { migratedDatabase } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';

const PASSWORD = 'correct horse battery staple';

/** Codes "sent by e-mail" to the users who turned the factor on; each code works once. */
class EmailCodeFactor implements SecondFactor {
  readonly name = 'email-code';
  readonly pendingLoginTtl = 60_000;
  readonly enrolled = new Set<number>();
  readonly sent = new Map<number, string>();
  clock = Date.now();
  now(): number {
    return this.clock;
  }
  async isRequired(userId: number): Promise<boolean> {
    if (!this.enrolled.has(userId)) return false;
    this.sent.set(userId, String(100000 + Math.floor(Math.random() * 900000)));
    return true;
  }
  async verify(userId: number, proof: unknown): Promise<SecondFactorCheck> {
    const expected = this.sent.get(userId);
    if (expected === undefined || proof !== expected) return { ok: false };
    this.sent.delete(userId);
    return { ok: true, method: 'email' };
  }
}

let db: TestDatabase;
let store: PgStore;
let server: { url: string; close(): Promise<void> };
const factor = new EmailCodeFactor();
const events: AuthEvent[] = [];
let userId = 0;

beforeAll(async () => {
  db = await migratedDatabase();
  store = new PgStore({ pool: db.pool, pruneSessionInterval: false });
  const middleware = session({ secret: 'second-factor-test-secret-0123456789abcdef', store });
  const auth = createAuth({
    pool: db.pool,
    session: middleware,
    rateLimit: false,
    secondFactors: [factor],
    onEvent: (event) => events.push(event),
    argon2: { memoryCost: 1024, timeCost: 1, parallelism: 1 },
  });
  userId = (await auth.users.create({ email: 'factor@example.com', password: PASSWORD })).id;
  factor.enrolled.add(userId);

  const app = express();
  app.use(express.json());
  app.use(middleware);
  app.post('/login', async (req, res) => {
    const result = await auth.login(req, req.body.email, req.body.password);
    if (isSecondFactorRequired(result)) return res.status(202).json(result);
    res.status(result ? 200 : 401).json({ user: result });
  });
  app.post('/factor', async (req, res) => {
    const result = await auth.completeSecondFactor(req, req.body.code);
    res.status(result.ok ? 200 : 401).json(result);
  });
  app.get('/me', (req, res) => res.json({ authenticated: isAuthenticated(req), userId: req.session.userId }));
  server = await listen(createServer(app));
});

afterAll(async () => {
  await server?.close();
  await store?.close();
  await db?.drop();
});

describe('a second factor given to createAuth({ secondFactors })', () => {
  it('the right password only opens a wait: a new session id, not logged in, until the factor passes', async () => {
    const c = new Client(server.url);
    await c.get('/me');
    const planted = c.cookieHeader();
    const res = await c.post('/login', { json: { email: 'factor@example.com', password: PASSWORD } });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ status: 'second-factor-required', factor: 'email-code' });
    expect(c.cookieHeader()).not.toBe(planted);
    expect(await (await c.get('/me')).json()).toEqual({ authenticated: false });
    expect(events.some((e) => e.type === 'second-factor-required' && e.factor === 'email-code')).toBe(true);

    // A wrong code is refused and leaves the wait as it was.
    const wrong = await c.post('/factor', { json: { code: 'nope' } });
    expect(await wrong.json()).toEqual({ ok: false, reason: 'wrong-code' });
    expect(events.some((e) => e.type === 'second-factor-failed' && e.factor === 'email-code')).toBe(true);

    const waiting = c.cookieHeader();
    const right = await c.post('/factor', { json: { code: factor.sent.get(userId) } });
    expect(right.status).toBe(200);
    expect(await right.json()).toMatchObject({ ok: true, factor: 'email-code', method: 'email' });
    // Logged in exactly as a password-only login: a new id again, userId set.
    expect(c.cookieHeader()).not.toBe(waiting);
    expect(await (await c.get('/me')).json()).toEqual({ authenticated: true, userId });
  });

  it("a wait older than the factor's pendingLoginTtl (on its clock) is dropped: expired", async () => {
    const c = new Client(server.url);
    await c.post('/login', { json: { email: 'factor@example.com', password: PASSWORD } });
    const code = factor.sent.get(userId);
    factor.clock += factor.pendingLoginTtl + 1;
    try {
      const res = await c.post('/factor', { json: { code } });
      expect(await res.json()).toEqual({ ok: false, reason: 'expired' });
      const again = await c.post('/factor', { json: { code } });
      expect(await again.json()).toEqual({ ok: false, reason: 'no-pending-login' });
    } finally {
      factor.clock = Date.now();
    }
  });

  it('a session with no wait cannot complete one', async () => {
    const c = new Client(server.url);
    const res = await c.post('/factor', { json: { code: '123456' } });
    expect(await res.json()).toEqual({ ok: false, reason: 'no-pending-login' });
  });

  it('factors need unique names and a positive pendingLoginTtl (ConfigError at start-up)', () => {
    const middleware = session({ secret: 'second-factor-test-secret-0123456789abcdef', store });
    const totpNamed = Object.assign(new EmailCodeFactor(), { name: 'totp' });
    expect(() => createAuth({ pool: db.pool, session: middleware, secondFactors: [totpNamed] })).toThrow(
      ConfigError,
    );
    const noTtl = Object.assign(new EmailCodeFactor(), { pendingLoginTtl: 0 });
    expect(() => createAuth({ pool: db.pool, session: middleware, secondFactors: [noTtl] })).toThrow(
      /pendingLoginTtl/,
    );
  });
});
