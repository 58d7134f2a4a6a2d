/**
 * Signing secrets ("can't be forged"; issue 6 item 4): rotation end to end through restarts of
 * the real app process, and the refusal of short or example secrets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../app/config.js';
import { UserRepository } from '../../src/auth/index.js';
import { unsign } from '../../src/core/signature.js';
import { ConfigError, MemoryStore, session } from '../../src/index.js';
import { migratedDatabase, PASSWORD } from '../app/harness.js';
import { fetchSeen, startPg } from '../express/support.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client } from '../helpers/http.js';
import { type ChildApp, exitOf, parseCookieValue, replay, setCookieOf, spawnApp } from './support.js';

const A = 'secret-A-0123456789abcdefghijklmnopqrstuv';
const B = 'secret-B-zyxwvutsrqponmlkjihgfedcba9876543';

let db: TestDatabase;
const running: ChildApp[] = [];

beforeAll(async () => {
  db = await migratedDatabase();
  await new UserRepository(db.pool).create({ email: 'rotate@example.com', password: PASSWORD });
});
afterAll(async () => {
  for (const app of running) if (app.child.exitCode === null) app.child.kill('SIGKILL');
  await db?.drop();
});

async function start(secret: string): Promise<ChildApp> {
  const app = await spawnApp({ DATABASE_URL: db.url, SESSION_SECRET: secret, NODE_ENV: 'development' });
  running.push(app);
  return app;
}

describe('secret rotation, end to end (SESSION_SECRET=new,old)', () => {
  it('A → restart with "B,A": old cookies still work and come back signed with B → restart with "B": A-signed cookies are refused', async () => {
    // 1. Secret A: log in.
    const first = await start(A);
    const c = new Client(first.url);
    expect(
      (await c.post('/login', { form: { email: 'rotate@example.com', password: PASSWORD } })).status,
    ).toBe(303);
    const signedWithA = c.jar.get('sessionId')!;
    const { id, raw } = parseCookieValue(signedWithA);
    expect(unsign(raw.slice(2), [A])).toBe(id);
    expect(await first.stop()).toBe(0);

    // 2. Secrets "B,A": the A cookie is accepted, and the response re-signs it with B (same id).
    const second = await start(`${B},${A}`);
    const res = await replay(second.url, signedWithA).get('/api/me');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ email: 'rotate@example.com' });
    const resigned = setCookieOf(res)!.split(';')[0]!.slice('sessionId='.length);
    const after = parseCookieValue(resigned);
    expect(after.id).toBe(id);
    expect(unsign(after.raw.slice(2), [B])).toBe(id);
    expect(unsign(after.raw.slice(2), [A])).toBe(false);
    // New logins are signed with B.
    const d = new Client(second.url);
    await d.post('/login', { form: { email: 'rotate@example.com', password: PASSWORD } });
    const fresh = parseCookieValue(d.jar.get('sessionId')!);
    expect(unsign(fresh.raw.slice(2), [B])).toBe(fresh.id);
    expect(await second.stop()).toBe(0);

    // 3. Secret "B" only: the A-signed cookie is anonymous (no error, no cookie); B-signed ones work.
    const third = await start(B);
    const old = await replay(third.url, signedWithA).get('/api/me');
    expect(old.status).toBe(401);
    expect(old.headers.getSetCookie()).toEqual([]);
    expect((await replay(third.url, resigned).get('/api/me')).status).toBe(200);
    expect((await replay(third.url, d.jar.get('sessionId')!).get('/api/me')).status).toBe(200);
    expect(await third.stop()).toBe(0);
  }, 120_000);
});

describe('weak secrets: refused in production, one loud warning elsewhere', () => {
  const SHORT = 'only-twenty-chars-xx';
  const EXAMPLES = ['keyboard cat', 'secret', 'changeme', 'replace-with-a-long-random-string'];
  const MAKE = /node -e "console\.log\(require\('crypto'\)\.randomBytes\(32\)\.toString\('base64url'\)\)"/;

  async function inProduction<T>(fn: () => T | Promise<T>): Promise<T> {
    const previous = process.env.NODE_ENV;
    process.env.NODE_ENV = 'production';
    try {
      return await fn();
    } finally {
      process.env.NODE_ENV = previous;
    }
  }

  it('production config: a missing, short or example signing secret is a clear ConfigError that says how to make one', () => {
    const load = (env: Record<string, string>) => () => loadConfig({ NODE_ENV: 'production', ...env });
    expect(load({})).toThrow(/SESSION_SECRET is required when NODE_ENV=production/);
    expect(load({})).toThrow(MAKE);
    expect(load({ SESSION_SECRET: SHORT })).toThrow(
      /at least 32 characters in production \(secret #1 has 20 characters\)/,
    );
    expect(load({ SESSION_SECRET: SHORT })).toThrow(MAKE);
    expect(load({ SESSION_SECRET: SHORT })).not.toThrow(/got one of/);
    expect(load({ SESSION_SECRET: `${SHORT},${A}` })).toThrow(/secret #1 has 20/);
    for (const example of EXAMPLES) expect(load({ SESSION_SECRET: example })).toThrow(ConfigError);
    // The one example that is long enough to pass the length rule is still refused by name.
    expect(load({ SESSION_SECRET: 'replace-with-a-long-random-string' })).toThrow(/example secret/);
    expect(loadConfig({ NODE_ENV: 'production', SESSION_SECRET: `${B},${A}` }).sessionSecrets).toEqual([
      B,
      A,
    ]);
    // Older, verify-only secrets may be weak: rotating off one logs nobody out.
    expect(
      loadConfig({ NODE_ENV: 'production', SESSION_SECRET: `${B},${SHORT},keyboard cat` }).sessionSecrets,
    ).toEqual([B, SHORT, 'keyboard cat']);
  });

  it('outside production, example and short secrets are accepted with one warning that says how to make a real one', () => {
    for (const example of [...EXAMPLES, SHORT]) {
      expect(loadConfig({ SESSION_SECRET: example }).sessionSecrets, example).toEqual([example]);
      const warnings: string[] = [];
      session({ secret: [example, SHORT], onWarning: (m) => warnings.push(m) });
      expect(warnings, example).toHaveLength(1);
      expect(warnings[0]).toMatch(/WEAK SESSION SECRET/);
      expect(warnings[0]).toMatch(MAKE);
    }
    const quiet: string[] = [];
    session({ secret: [A, B], onWarning: (m) => quiet.push(m) });
    expect(quiet).toEqual([]);
    expect(() => session({ secret: '' })).toThrow(ConfigError);
  });

  it('the middleware in production: a weak signing secret is refused; weak older ones are accepted with a loud warning', async () => {
    const store = { get() {}, set() {}, destroy() {} } as never;
    await inProduction(() => {
      expect(() => session({ secret: SHORT, store })).toThrow(/at least 32 characters in production/);
      expect(() => session({ secret: SHORT, store })).toThrow(MAKE);
      expect(() => session({ secret: 'keyboard cat', store })).toThrow(/example secret/);
      expect(() => session({ secret: [SHORT, A], store })).toThrow(ConfigError);
      const warnings: string[] = [];
      expect(() =>
        session({ secret: [A, SHORT, 'keyboard cat'], store, onWarning: (m) => warnings.push(m) }),
      ).not.toThrow();
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(
        /WEAK SESSION SECRET: secret #2 has 20 characters; secret #3 is the example secret "keyboard cat"/,
      );
      expect(warnings[0]).not.toContain(SHORT);
      expect(() => session({ secret: A, store })).not.toThrow();
    });
  });

  it('rotating off a weak secret in production logs nobody out: "keyboard cat" cookies are re-signed with the new secret', async () => {
    const store = new MemoryStore();
    const app = (secret: string | string[]) =>
      startPg({ secret, store, name: 'sid', onWarning: () => {} }, (a) => {
        a.get('/login', (req, res) => {
          req.session.userId = 5;
          res.send('ok');
        });
        a.get('/me', (req, res) => res.json({ userId: req.session.userId ?? null }));
      });
    // The app as it ran before (express-session, or pgsession in development): "keyboard cat".
    const before = await app('keyboard cat');
    const login = await fetchSeen(`${before.url}/login`, 'sid');
    await before.close();
    const weakCookie = login.pair!;
    expect(unsign(decodeURIComponent(weakCookie.split('=')[1]!).slice(2), ['keyboard cat'])).not.toBe(false);
    // Deployed to production with the new secret first and the weak one after it.
    const rotating = await inProduction(() => app([A, 'keyboard cat']));
    const me = await fetchSeen(`${rotating.url}/me`, 'sid', weakCookie);
    await rotating.close();
    expect(JSON.parse(me.body)).toEqual({ userId: 5 });
    expect(me.cookie).toBe('set');
    const resigned = me.pair!;
    expect(unsign(decodeURIComponent(resigned.split('=')[1]!).slice(2), [A])).not.toBe(false);
    // Later, the weak secret removed: the re-signed cookie still works, the weak one no longer.
    const after = await inProduction(() => app(A));
    expect(JSON.parse((await fetchSeen(`${after.url}/me`, 'sid', resigned)).body)).toEqual({ userId: 5 });
    expect(JSON.parse((await fetchSeen(`${after.url}/me`, 'sid', weakCookie)).body)).toEqual({
      userId: null,
    });
    await after.close();
  });

  it('npm start refuses to start (exit 1, the reason and how to make a secret on stderr) with a short or example secret in production', async () => {
    const short = await exitOf({ NODE_ENV: 'production', SESSION_SECRET: SHORT, DATABASE_URL: db.url });
    expect(short.code).toBe(1);
    expect(short.output).toMatch(
      /refusing to start: SESSION_SECRET: the signing secret must be at least 32 characters in production/,
    );
    expect(short.output).toMatch(MAKE);
    const example = await exitOf({
      NODE_ENV: 'production',
      SESSION_SECRET: 'replace-with-a-long-random-string',
      DATABASE_URL: db.url,
    });
    expect(example.code).toBe(1);
    expect(example.output).toMatch(/refusing to start: SESSION_SECRET: refusing the example secret/);
  }, 60_000);

  it('npm start outside production with "keyboard cat": starts, with one weak-secret warning', async () => {
    const app = await start('keyboard cat');
    expect((await fetch(`${app.url}/login`)).status).toBe(200);
    const output = app.output();
    expect(await app.stop()).toBe(0);
    expect(output.match(/WEAK SESSION SECRET/g)).toHaveLength(1);
    expect(output).toMatch(MAKE);
  }, 60_000);
});
