/**
 * The README's ESM example (issue 16 item 3), run with its own options: a user can log in on
 * http://localhost as shown, and in production behind a TLS proxy the cookie is
 * `__Host-sessionId` with Secure. A `__Host-` name on plain HTTP is warned about by its real
 * cause, the prefix.
 */
import { readFileSync } from 'node:fs';
import type { Express } from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore, type SessionOptions } from '../../src/index.js';
import { fetchSeen, SECRET, startPg } from './support.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
/** The README's ESM example (its `app.ts`, which the guides test also runs as written). */
const esmExample = /<!-- example: readme app\.ts -->\s*\n```ts\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';

/** The `name:` expression of the example, evaluated as it would be with this NODE_ENV. */
function exampleName(nodeEnv: string | undefined): string {
  const expression = /^\s*name: (.+),$/m.exec(esmExample)?.[1];
  if (!expression) throw new Error('the README ESM example has no name: line');
  return new Function('process', `return ${expression}`)({ env: { NODE_ENV: nodeEnv } });
}

/** The example's options (the store aside: any store shows the cookie behaviour). */
function exampleOptions(nodeEnv: string | undefined, onWarning: (m: string) => void): SessionOptions {
  return {
    store: new MemoryStore(),
    secret: [SECRET],
    name: exampleName(nodeEnv),
    resave: false,
    saveUninitialized: false,
    rolling: true,
    idleTimeout: '7d',
    absoluteTimeout: '30d',
    cookie: { httpOnly: true, secure: 'auto', sameSite: 'lax' },
    onWarning,
  };
}

const routes = (app: Express) => {
  app.set('trust proxy', 'loopback');
  app.get('/login', (req, res) => {
    req.session.userId = 1;
    res.send('ok');
  });
  app.get('/me', (req, res) => res.json({ userId: req.session.userId ?? null }));
};

type Started = Awaited<ReturnType<typeof startPg>>;
const running: Started[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.close()));
});

async function start(options: SessionOptions) {
  const app = await startPg(options, routes);
  running.push(app);
  return app;
}

describe("the README's ESM example", () => {
  it('uses the __Host- prefix in production only', () => {
    expect(esmExample).toContain("secure: 'auto'");
    expect(exampleName('production')).toBe('__Host-sessionId');
    expect(exampleName(undefined)).toBe('sessionId');
  });

  it('logs in on http://localhost as shown, with no warning', async () => {
    const warnings: string[] = [];
    const app = await start(exampleOptions(undefined, (m) => warnings.push(m)));
    const login = await fetchSeen(`${app.url}/login`, 'sessionId');
    expect(login.cookie).toBe('set');
    expect(login.attributes).not.toContain('secure');
    expect(JSON.parse((await fetchSeen(`${app.url}/me`, 'sessionId', login.pair)).body)).toEqual({
      userId: 1,
    });
    expect(warnings).toEqual([]);
  });

  it('in production behind a TLS proxy: __Host-sessionId, Secure, and the login holds', async () => {
    const app = await start(exampleOptions('production', () => {}));
    const https = { headers: { 'x-forwarded-proto': 'https' } };
    const login = await fetchSeen(`${app.url}/login`, '__Host-sessionId', undefined, https);
    expect(login.cookie).toBe('set');
    expect(login.attributes).toEqual(expect.arrayContaining(['secure', 'httponly', 'path']));
    expect(login.attributes).not.toContain('domain');
    const me = await fetchSeen(`${app.url}/me`, '__Host-sessionId', login.pair, https);
    expect(JSON.parse(me.body)).toEqual({ userId: 1 });
  });
});

describe('a __Host- name over plain HTTP', () => {
  it("is not sent, and the warning names the prefix, not cookie.secure (which is already 'auto')", async () => {
    const warnings: string[] = [];
    const app = await start({
      ...exampleOptions(undefined, (m) => warnings.push(m)),
      name: '__Host-sessionId',
    });
    const login = await fetchSeen(`${app.url}/login`, '__Host-sessionId');
    expect(login.cookie).toBe('none');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/its name "__Host-sessionId" has the __Host- prefix/);
    expect(warnings[0]).toMatch(
      /name: process\.env\.NODE_ENV === 'production' \? '__Host-sessionId' : 'sessionId'/,
    );
    expect(warnings[0]).not.toMatch(/cookie\.secure/);
  });

  it('with secure: true, the warning names both causes', async () => {
    const warnings: string[] = [];
    const app = await start({
      ...exampleOptions(undefined, (m) => warnings.push(m)),
      name: '__Secure-sid',
      cookie: { secure: true },
    });
    expect((await fetchSeen(`${app.url}/login`, '__Secure-sid')).cookie).toBe('none');
    expect(warnings[0]).toMatch(/Secure session cookie was NOT sent/);
    expect(warnings[0]).toMatch(/without the __Secure- prefix/);
  });
});
