import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserRepository } from '../../src/auth/index.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client } from '../helpers/http.js';
import { migratedDatabase, PASSWORD, TEST_SECRET } from './harness.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const tsx = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));

interface Running {
  child: ChildProcess;
  url: string;
  output: () => string;
}

function start(env: Record<string, string | undefined>): Promise<Running> {
  const child = spawn(tsx, ['app/main.ts'], {
    cwd: root,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`app did not start:\n${out}`)), 45_000);
    const onData = () => {
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        resolve({ child, url: m[1]!, output: () => out });
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`app exited with ${code} before listening:\n${out}`));
    });
  });
}

async function stop(app: Running): Promise<number | null> {
  const exited = once(app.child, 'exit');
  app.child.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  return code;
}

async function exitOf(
  env: Record<string, string | undefined>,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(tsx, ['app/main.ts'], { cwd: root, env: { ...process.env, PORT: '0', ...env } });
  let output = '';
  child.stdout.on('data', (d) => {
    output += d;
  });
  child.stderr.on('data', (d) => {
    output += d;
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, output };
}

let db: TestDatabase;
const live: Running[] = [];

beforeAll(async () => {
  db = await migratedDatabase();
  await new UserRepository(db.pool).create({ email: 'restart@example.com', password: PASSWORD });
});
afterAll(async () => {
  for (const r of live) if (r.child.exitCode === null) r.child.kill('SIGKILL');
  await db?.drop();
});

describe('npm start (app/main.ts as a process)', () => {
  it('a login survives a restart: same cookie, still logged in; SIGTERM exits 0', async () => {
    const env = { DATABASE_URL: db.url, SESSION_SECRET: TEST_SECRET, NODE_ENV: 'development' };
    const first = await start(env);
    live.push(first);
    const client = new Client(first.url);
    const login = await client.post('/login', { form: { email: 'restart@example.com', password: PASSWORD } });
    expect(login.status).toBe(303);
    const cookie = client.jar.get('sessionId');
    expect(cookie).toBeDefined();
    expect((await client.get('/api/me')).status).toBe(200);
    expect(await stop(first)).toBe(0);

    const second = await start(env);
    live.push(second);
    const again = new Client(second.url);
    again.jar.set('sessionId', cookie!);
    const me = await again.get('/api/me');
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ email: 'restart@example.com', role: 'user' });
    expect(await stop(second)).toBe(0);
  });

  it('refuses to start in production without SESSION_SECRET, or with a short one (exit 1, clear message)', async () => {
    const missing = await exitOf({ NODE_ENV: 'production', SESSION_SECRET: '', DATABASE_URL: db.url });
    expect(missing.code).toBe(1);
    expect(missing.output).toMatch(/SESSION_SECRET is required when NODE_ENV=production/);
    const short = await exitOf({
      NODE_ENV: 'production',
      SESSION_SECRET: `${'x'.repeat(40)},short`,
      DATABASE_URL: db.url,
    });
    expect(short.code).toBe(1);
    expect(short.output).toMatch(/at least 32 characters in production \(secret #2 has 5\)/);
    const badDuration = await exitOf({
      SESSION_IDLE_TIMEOUT: 'soon',
      SESSION_SECRET: TEST_SECRET,
      DATABASE_URL: db.url,
    });
    expect(badDuration.code).toBe(1);
    expect(badDuration.output).toMatch(/SESSION_IDLE_TIMEOUT must be a duration/);
  });
});
