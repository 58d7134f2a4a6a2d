/**
 * Helpers for the black-box security tests: the demo app in-process (test/app/harness.ts) or as
 * a child process (`app/main.ts`, as `npm start` runs it), and what an attacker can read from a
 * Set-Cookie header.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { createPool } from '../../src/db/index.js';
import { csrfFrom, type RunningApp, startApp } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client } from '../helpers/http.js';
import { type ChildServer, runToExit, startServer } from '../helpers/process.js';

export const root = fileURLToPath(new URL('../../', import.meta.url));
const tsx = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));

/** Limits out of the way for files that log in many times from one address. */
export const NO_LIMITS = {
  policy: {
    perAccountAddress: { points: 100_000, duration: 60 },
    perAddress: { points: 100_000, duration: 60 },
    perAccount: { points: 100_000, duration: 60 },
  },
};

/** The parts of a session cookie value (`s:<id>.<mac>`, URL-encoded as sent). */
export function parseCookieValue(value: string): { raw: string; id: string; mac: string } {
  const raw = decodeURIComponent(value);
  if (!raw.startsWith('s:')) throw new Error(`not a signed cookie: ${value}`);
  const dot = raw.lastIndexOf('.');
  return { raw, id: raw.slice(2, dot), mac: raw.slice(dot + 1) };
}

/** The session cookie a response sets (name=value), or undefined. */
export function setCookieOf(res: Response, name = 'sessionId'): string | undefined {
  return res.headers.getSetCookie().find((line) => line.startsWith(`${name}=`));
}

/** The value of a `name=value; attrs` Set-Cookie line. */
export function cookieValue(setCookie: string): string {
  const pair = setCookie.split(';')[0]!;
  return pair.slice(pair.indexOf('=') + 1);
}

/** The attributes of a Set-Cookie line, lower-cased names: `{ path: '/', httponly: '', … }`. */
export function attributesOf(setCookie: string): Map<string, string> {
  const attrs = new Map<string, string>();
  for (const part of setCookie.split(';').slice(1)) {
    const eq = part.indexOf('=');
    const name = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase();
    attrs.set(name, eq === -1 ? '' : part.slice(eq + 1).trim());
  }
  return attrs;
}

/** A client that sends exactly this cookie (an attacker replaying a stolen or old value). */
export function replay(app: { url: string } | string, cookie: string, name = 'sessionId'): Client {
  const c = new Client(typeof app === 'string' ? app : app.url);
  c.jar.set(name, cookie);
  return c;
}

/** GET a page and read its `_csrf` field. */
export async function csrfOn(c: Client, path = '/account'): Promise<string> {
  const res = await c.get(path);
  if (res.status !== 200) throw new Error(`GET ${path}: ${res.status}`);
  return csrfFrom(await res.text());
}

/**
 * A second app instance ("server") on the same database with its own pool and its own store
 * (and so its own session cache and invalidation listener), as another process would have.
 */
export async function secondServer(
  db: TestDatabase,
  options: Parameters<typeof startApp>[0] = {},
): Promise<RunningApp & { pool: pg.Pool }> {
  const pool = createPool(db.url);
  const app = await startApp({ ...options, db: { ...db, pool, drop: async () => {} } });
  return {
    ...app,
    pool,
    close: async () => {
      await app.close();
      await pool.end();
    },
  };
}

/**
 * The demo app as its own process, as `npm start` runs it, but as `node --import tsx`: the `tsx`
 * wrapper relays SIGTERM to the app and exits 143 itself if the app does not acknowledge within
 * ~30 ms (a loaded machine), which made graceful-shutdown checks flaky.
 */
export type ChildApp = ChildServer;

/** Start `app/main.ts` with this environment; resolves once it listens. */
export function spawnApp(env: Record<string, string | undefined>): Promise<ChildApp> {
  return startServer(process.execPath, ['--import', 'tsx', 'app/main.ts'], {
    cwd: root,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    name: 'app',
  });
}

/** Run `app/main.ts` expecting it to refuse to start: its exit code and output. */
export function exitOf(
  env: Record<string, string | undefined>,
): Promise<{ code: number | null; output: string }> {
  return runToExit(process.execPath, ['--import', 'tsx', 'app/main.ts'], {
    cwd: root,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', ...env },
  });
}

/** Run the CLI (`tsx cli/main.ts …`) with `stdin` piped in. */
export async function runCli(
  args: string[],
  env: Record<string, string | undefined>,
  stdin = '',
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(tsx, ['cli/main.ts', ...args], { cwd: root, env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  child.stdin.end(stdin);
  const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * How long after now `cookie` stops working on `app` (`GET /api/me` answers 401), polling every
 * few milliseconds; throws if it still works after `limitMs`. For revocations made by another
 * process, which a caching server learns about when PostgreSQL's notification arrives
 * (docs/scaling.md, "The revocation window").
 */
export async function refusedWithin(
  app: { url: string } | string,
  cookie: string,
  limitMs: number,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    const status = (await replay(app, cookie).get('/api/me')).status;
    const elapsed = performance.now() - started;
    if (status === 401) return elapsed;
    if (status !== 200) throw new Error(`unexpected status ${status}`);
    if (elapsed > limitMs) throw new Error(`still accepted ${Math.round(elapsed)} ms after the revocation`);
    await sleep(2);
  }
}
