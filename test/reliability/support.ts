/**
 * Shared pieces of the reliability tests: the demo app as a child process (`app/main.ts`, run
 * by node itself with tsx's loader, so a signal reaches the app and not a wrapper), users with
 * known passwords, a raw HTTP client for requests `fetch` refuses to send, and small timing
 * helpers. Everything is loopback-only and bounded.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { PasswordHasher, UserRepository } from '../../src/auth/index.js';
import { TEST_SECRET } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The environment `npm start` gives the demo (scripts/start.mjs: the allocator setting of
 * docs/reliability.md, "Memory and argon2id"), so app processes here run as the demo does.
 */
const START_ENV = JSON.parse(readFileSync(`${ROOT}scripts/start-env.json`, 'utf8')) as Record<string, string>;
export const PASSWORD = 'correct horse battery staple';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Poll `check` every `everyMs` until it returns true or `timeoutMs` passes; returns whether it did. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 25,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(everyMs);
  }
}

/** The demo app running as a child process. */
export interface AppProcess {
  child: ChildProcess;
  pid: number;
  url: string;
  port: number;
  /** Everything it wrote to stdout and stderr (the last 256 KB). */
  output(): string;
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then wait for the exit (SIGKILL after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChildProcess>();

/** Kill every app process still running (for `afterAll`). */
export async function killAll(): Promise<void> {
  const waits: Promise<unknown>[] = [];
  for (const child of running) {
    if (child.exitCode === null && child.signalCode === null) {
      waits.push(once(child, 'exit'));
      child.kill('SIGKILL');
    }
  }
  await Promise.all(waits);
  running.clear();
}

/**
 * Start `app/main.ts` with `DATABASE_URL` and the test secret on a free loopback port; resolves
 * once it prints its address.
 */
export function startAppProcess(
  env: Record<string, string | undefined>,
  startTimeoutMs = 60_000,
): Promise<AppProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'app/main.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      SESSION_SECRET: TEST_SECRET,
      NODE_ENV: 'development',
      TRUST_PROXY: 'loopback',
      ...START_ENV,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let out = '';
  const append = (d: Buffer) => {
    out += d.toString('utf8');
    if (out.length > 512 * 1024) out = out.slice(-256 * 1024);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`app did not start within ${startTimeoutMs} ms:\n${out.slice(-4000)}`));
    }, startTimeoutMs);
    const onData = () => {
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      const port = Number(m[1]);
      resolve({
        child,
        pid: child.pid!,
        port,
        url: `http://127.0.0.1:${port}`,
        output: () => out,
        exited,
        stop: async (timeoutMs = 15_000) => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
          try {
            return await exited;
          } finally {
            clearTimeout(killer);
          }
        },
      });
    };
    child.stdout!.on('data', onData);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`app exited (${code ?? signal}) before listening:\n${out.slice(-4000)}`));
    });
  });
}

/** Resident set size of a process in bytes (Linux `/proc/<pid>/status`). */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/**
 * Create users with the demo app's production argon2id parameters (so logging in never
 * triggers a rehash), a few at a time.
 */
export async function createUsers(
  pool: pg.Pool,
  emails: readonly string[],
  role: 'user' | 'admin' = 'user',
): Promise<Array<{ id: number; email: string }>> {
  const users = new UserRepository(pool, { hasher: new PasswordHasher() });
  const out: Array<{ id: number; email: string }> = [];
  for (let i = 0; i < emails.length; i += 4) {
    const batch = await Promise.all(
      emails.slice(i, i + 4).map((email) => users.create({ email, password: PASSWORD, role })),
    );
    for (const u of batch) out.push({ id: u.id, email: u.email });
  }
  return out;
}

/** One raw HTTP/1.1 exchange over a fresh socket: for requests `fetch` refuses to send. */
export interface RawResponse {
  status: number;
  head: string;
  headers: Array<[string, string]>;
  body: string;
}

export function parseRaw(text: string): RawResponse {
  const end = text.indexOf('\r\n\r\n');
  const head = end === -1 ? text : text.slice(0, end);
  const body = end === -1 ? '' : text.slice(end + 4);
  const [statusLine, ...lines] = head.split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0);
  const headers = lines.map((l): [string, string] => {
    const i = l.indexOf(':');
    return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
  });
  return { status, head, headers, body };
}

/**
 * Send `request` (bytes exactly as given; add `Connection: close`) and read until the server
 * closes or `timeoutMs` passes. Status 0 means the server closed without answering.
 */
export function rawRequest(port: number, request: string | Buffer, timeoutMs = 10_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', () => {
      // A reset after the answer is fine; the answer is judged below.
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(parseRaw(Buffer.concat(chunks).toString('latin1')));
    });
    socket.write(request);
  });
}

/** Set-Cookie lines of a fetch response for the session cookie. */
export function sessionSetCookies(res: Response, name = 'sessionId'): string[] {
  return res.headers.getSetCookie().filter((l) => l.startsWith(`${name}=`));
}

/** Connections of pgsession pools and listeners to the test database, the test's own pool excepted. */
export async function appConnections(database: TestDatabase): Promise<number> {
  const probe = new pg.Client({ connectionString: database.url, application_name: 'reliability-probe' });
  probe.on('error', () => {});
  await probe.connect();
  try {
    const { rows } = await probe.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name LIKE 'pgsession%'`,
    );
    return Number(rows[0]!.n) - database.pool.totalCount;
  } finally {
    await probe.end();
  }
}
