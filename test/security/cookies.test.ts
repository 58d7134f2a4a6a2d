/**
 * The session cookie's attributes and caching (ASVS 3.3.1–3.3.4; Session Management Cheat
 * Sheet "Cookies" and "Web content caching"): production mode behind a TLS proxy, plain HTTP
 * without a trusted proxy, and `Cache-Control: no-store`.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../app/config.js';
import { session } from '../../src/index.js';
import { csrfFrom, loginForm, migratedDatabase, type RunningApp, startApp } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client, listen } from '../helpers/http.js';
import { attributesOf, NO_LIMITS, setCookieOf } from './support.js';

const PROD_SECRET = 'prod-secret-0123456789-abcdefghijklmnop';
let db: TestDatabase;
let dataDir: string;

beforeAll(async () => {
  db = await migratedDatabase();
  dataDir = mkdtempSync(path.join(tmpdir(), 'pgsession-sec-'));
});
afterAll(async () => {
  await db?.drop();
  rmSync(dataDir, { recursive: true, force: true });
});

/** The demo app configured from a production environment, as `npm start` would read it. */
async function productionApp(env: Record<string, string>): Promise<RunningApp> {
  const config = loadConfig({ NODE_ENV: 'production', SESSION_SECRET: PROD_SECRET, ...env }, { dataDir });
  const app = await startApp({ db, config, rateLimit: NO_LIMITS });
  if (!(await app.app.auth.users.findByEmail('prod@example.com'))) await app.createUser('prod@example.com');
  return app;
}

describe('production behind a TLS-terminating proxy (NODE_ENV=production, TRUST_PROXY)', () => {
  let t: RunningApp;
  beforeAll(async () => {
    t = await productionApp({ TRUST_PROXY: 'loopback' });
  });
  afterAll(() => t?.close());

  it('X-Forwarded-Proto: https → __Host-sessionId; Secure; HttpOnly; SameSite=Lax; Path=/; no Domain', async () => {
    const c = t.client({ 'x-forwarded-proto': 'https' });
    const res = await loginForm(c, 'prod@example.com');
    expect(res.status).toBe(303);
    const line = setCookieOf(res, '__Host-sessionId')!;
    expect(line).toBeDefined();
    expect(res.headers.getSetCookie()).toHaveLength(1);
    const attrs = attributesOf(line);
    expect(attrs.has('secure')).toBe(true);
    expect(attrs.has('httponly')).toBe(true);
    expect(attrs.get('samesite')).toBe('Lax');
    expect(attrs.get('path')).toBe('/');
    expect(attrs.has('domain')).toBe(false);
    // Expires = now + the idle timeout (7 days by default).
    const expires = new Date(attrs.get('expires')!).getTime();
    expect(Math.abs(expires - (Date.now() + 7 * 86_400_000))).toBeLessThan(60_000);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('strict-transport-security')).toMatch(/max-age=(\d+)/);
    expect(
      Number(/max-age=(\d+)/.exec(res.headers.get('strict-transport-security')!)![1]),
    ).toBeGreaterThanOrEqual(31_536_000);
    expect((await c.get('/api/me')).status).toBe(200);
  });

  it('the logout deletion carries Secure and the prefix rules too (else browsers ignore it)', async () => {
    const c = t.client({ 'x-forwarded-proto': 'https' });
    await loginForm(c, 'prod@example.com');
    const page = await c.get('/dashboard');
    const res = await c.post('/logout', {
      form: { _csrf: csrfFrom(await page.text()) },
      headers: { origin: t.url.replace('http:', 'https:') },
    });
    expect(res.status).toBe(303);
    const line = setCookieOf(res, '__Host-sessionId')!;
    expect(line).toMatch(/^__Host-sessionId=;/);
    const attrs = attributesOf(line);
    expect(attrs.has('secure')).toBe(true);
    expect(attrs.get('path')).toBe('/');
    expect(attrs.has('domain')).toBe(false);
    expect(new Date(attrs.get('expires')!).getTime()).toBe(0);
  });

  it('plain HTTP through the trusted proxy (no X-Forwarded-Proto): no cookie, and a warning in the log', async () => {
    const before = t.logs.lines.length;
    const res = await loginForm(t.client(), 'prod@example.com');
    expect(res.headers.getSetCookie()).toEqual([]);
    const warnings = t.logs.lines
      .slice(before)
      .filter((l) => l.includes('Secure session cookie was NOT sent'));
    expect(warnings.length).toBeGreaterThan(0);
    expect(JSON.parse(warnings[0]!).level).toBe(40);
  });
});

describe('production without a trusted proxy (TRUST_PROXY unset)', () => {
  it('a spoofed X-Forwarded-Proto: https is not believed: no cookie, and a warning', async () => {
    const t = await productionApp({});
    try {
      const res = await loginForm(t.client({ 'x-forwarded-proto': 'https' }), 'prod@example.com');
      expect(res.headers.getSetCookie()).toEqual([]);
      expect(t.logs.text).toContain('Secure session cookie was NOT sent');
      expect(t.logs.text).toContain('trust proxy');
    } finally {
      await t.close();
    }
  });
});

describe('Cache-Control: no-store', () => {
  let t: RunningApp;
  beforeAll(async () => {
    t = await startApp({ db, rateLimit: NO_LIMITS });
    await t.createUser('cache@example.com', 'admin');
  });
  afterAll(() => t?.close());

  it('on every authenticated response and every response that sets or clears the cookie', async () => {
    const c = t.client();
    const login = await loginForm(c, 'cache@example.com');
    expect(setCookieOf(login)).toBeDefined();
    expect(login.headers.get('cache-control')).toBe('no-store');
    for (const p of ['/dashboard', '/account', '/account/sessions', '/admin', '/api/me', '/']) {
      const res = await c.get(p);
      expect(res.status, p).toBe(200);
      expect(res.headers.get('cache-control'), p).toBe('no-store');
      expect(setCookieOf(res), p).toBeDefined();
    }
    const out = await c.get('/logout');
    expect(setCookieOf(out)).toMatch(/^sessionId=;/);
    expect(out.headers.get('cache-control')).toBe('no-store');
  });

  it('the middleware itself forces no-store on a response that sets the cookie, whatever the route said', async () => {
    const app = express();
    app.use(
      session({
        secret: 'cache-test-secret-0123456789abcdefghij',
        resave: false,
        saveUninitialized: false,
      }),
    );
    app.get('/public', (_req, res) => {
      res.setHeader('Cache-Control', 'public, max-age=3600');
      res.send('cacheable');
    });
    app.get('/login', (req, res) => {
      res.setHeader('Cache-Control', 'public, max-age=3600');
      req.session.userId = 1;
      res.send('logged in');
    });
    const server = await listen(http.createServer(app));
    try {
      const c = new Client(server.url);
      const anon = await c.get('/public');
      expect(anon.headers.getSetCookie()).toEqual([]);
      expect(anon.headers.get('cache-control')).toBe('public, max-age=3600');
      const res = await c.get('/login');
      expect(res.headers.getSetCookie()).toHaveLength(1);
      expect(res.headers.get('cache-control')).toBe('no-store');
    } finally {
      await server.close();
    }
  });
});
