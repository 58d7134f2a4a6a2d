/**
 * Signing secrets ("can't be forged"; issue 6 item 4): rotation end to end through restarts of
 * the real app process, and the refusal of short or example secrets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../app/config.js';
import { UserRepository } from '../../src/auth/index.js';
import { ConfigError, session, unsign } from '../../src/index.js';
import { migratedDatabase, PASSWORD } from '../app/harness.js';
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

describe('weak secrets are refused', () => {
  const SHORT = 'only-twenty-chars-xx';
  const EXAMPLES = ['keyboard cat', 'secret', 'changeme', 'replace-with-a-long-random-string'];

  it('production config: a missing, short (< 32 characters) or example secret is a clear ConfigError', () => {
    const load = (env: Record<string, string>) => () => loadConfig({ NODE_ENV: 'production', ...env });
    expect(load({})).toThrow(/SESSION_SECRET is required when NODE_ENV=production/);
    expect(load({ SESSION_SECRET: SHORT })).toThrow(
      /at least 32 characters in production \(secret #1 has 20\)/,
    );
    expect(load({ SESSION_SECRET: `${A},${SHORT}` })).toThrow(/secret #2 has 20/);
    for (const example of EXAMPLES) expect(load({ SESSION_SECRET: example })).toThrow(ConfigError);
    // The one example that is long enough to pass the length rule is still refused by name.
    expect(load({ SESSION_SECRET: 'replace-with-a-long-random-string' })).toThrow(/example secret/);
    expect(loadConfig({ NODE_ENV: 'production', SESSION_SECRET: `${B},${A}` }).sessionSecrets).toEqual([
      B,
      A,
    ]);
  });

  it('example secrets are refused outside production too, by the config and by the middleware itself', () => {
    for (const example of EXAMPLES) {
      expect(() => loadConfig({ SESSION_SECRET: example }), example).toThrow(/example secret/);
      expect(() => session({ secret: example }), example).toThrow(/example secret/);
      expect(() => session({ secret: [A, example] }), example).toThrow(ConfigError);
    }
    expect(() => session({ secret: '' })).toThrow(ConfigError);
  });

  it('the middleware refuses a short secret when NODE_ENV=production', () => {
    const previous = process.env.NODE_ENV;
    process.env.NODE_ENV = 'production';
    try {
      expect(() => session({ secret: SHORT })).toThrow(/at least 32 characters in production/);
      expect(() => session({ secret: [A, SHORT] })).toThrow(/at least 32 characters in production/);
      expect(() =>
        session({ secret: A, store: { get() {}, set() {}, destroy() {} } as never }),
      ).not.toThrow();
    } finally {
      process.env.NODE_ENV = previous;
    }
  });

  it('npm start refuses to start (exit 1, the reason on stderr) with a short or example secret in production', async () => {
    const short = await exitOf({ NODE_ENV: 'production', SESSION_SECRET: SHORT, DATABASE_URL: db.url });
    expect(short.code).toBe(1);
    expect(short.output).toMatch(
      /refusing to start: SESSION_SECRET: every secret must be at least 32 characters/,
    );
    const example = await exitOf({
      NODE_ENV: 'production',
      SESSION_SECRET: 'replace-with-a-long-random-string',
      DATABASE_URL: db.url,
    });
    expect(example.code).toBe(1);
    expect(example.output).toMatch(/refusing to start: refusing the example secret/);
  }, 60_000);
});
