/**
 * The demo app started against a database it cannot use (issue 14, item 4): one line naming
 * host, port, database and the cause; 503 + Retry-After meanwhile (never a stack trace); recovery
 * on its own once the database is there; pool errors logged as one line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserRepository } from '../../src/auth/index.js';
import { migratedDatabase, PASSWORD, TEST_SECRET } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client } from '../helpers/http.js';
import { type ChildApp, spawnApp } from '../security/support.js';
import { freePort, startTcpProxy, type TcpProxy } from './support.js';

let db: TestDatabase;
const live: ChildApp[] = [];
const proxies: TcpProxy[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  db = await migratedDatabase();
  await new UserRepository(db.pool).create({ email: 'startup@example.com', password: PASSWORD });
}, 60_000);
afterAll(async () => {
  for (const app of live) await app.stop('SIGKILL').catch(() => {});
  for (const p of proxies) await p.close();
  await db?.drop();
});

const start = async (url: string) => {
  const app = await spawnApp({ DATABASE_URL: url, SESSION_SECRET: TEST_SECRET, LOG_LEVEL: 'info' });
  live.push(app);
  return app;
};
const hostPortDb = (url: string) => {
  const u = new URL(url);
  return `${u.hostname}:${u.port || 5432}${u.pathname}`;
};

describe('start-up without a usable database', () => {
  it('a role that does not exist: one line naming the server and the cause, then 503 + Retry-After', async () => {
    const url = new URL(db.url);
    url.username = 'no_such_role';
    // A password, for servers that ask for one (the embedded PostgreSQL): SCRAM then answers
    // "password authentication failed" instead of naming the missing role.
    url.password = 'not-the-password';
    const app = await start(url.toString());
    const lines = app
      .output()
      .split('\n')
      .filter((l) => l.includes('database unavailable'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`database unavailable at ${hostPortDb(db.url)}`);
    expect(lines[0]).toMatch(/role \\?"no_such_role\\?" does not exist|password authentication failed/);
    const res = await fetch(`${app.url}/login`);
    expect(res.status).toBe(503);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    const body = await res.text();
    expect(body).not.toMatch(/StoreUnavailableError|engine\.ts|\n\s+at /);
    expect((await fetch(`${app.url}/healthz`)).status).toBe(503);
    await app.stop();
  }, 60_000);

  it('a server that is not there yet: 503 meanwhile, then it recovers by itself and logins work', async () => {
    const port = await freePort(); // nothing listens here yet
    const url = new URL(db.url);
    url.hostname = '127.0.0.1';
    url.port = String(port);
    const app = await start(url.toString());
    const lines = app
      .output()
      .split('\n')
      .filter((l) => l.includes('database unavailable'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`127.0.0.1:${port}${new URL(db.url).pathname}`);
    expect(lines[0]).toMatch(/ECONNREFUSED/);
    expect((await fetch(`${app.url}/login`)).status).toBe(503);

    // The database "comes up": a proxy to the real server on that port.
    const upstream = new URL(db.url);
    proxies.push(await startTcpProxy(Number(upstream.port || 5432), port));
    const started = Date.now();
    for (;;) {
      const res = await fetch(`${app.url}/healthz`);
      await res.arrayBuffer();
      if (res.status === 200) break;
      if (Date.now() - started > 15_000) throw new Error(`still ${res.status} after 15 s:\n${app.output()}`);
      await sleep(100);
    }
    expect(app.output()).toMatch(/database available at/);
    const c = new Client(app.url);
    const login = await c.post('/login', { form: { email: 'startup@example.com', password: PASSWORD } });
    expect(login.status).toBe(303);
    expect((await c.get('/api/me')).status).toBe(200);

    // Its pool's connections killed under it: one log line each, and it keeps serving.
    const before = app.output().length;
    await db.pool.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name LIKE 'pgsession%'",
      [db.name],
    );
    await sleep(500);
    const after = app.output().slice(before);
    const errorLines = after.split('\n').filter((l) => l.includes('PostgreSQL client error'));
    expect(errorLines.length).toBeGreaterThan(0);
    for (const line of errorLines) expect(line.length).toBeLessThan(400);
    expect(after).not.toMatch(/_queryable|connectionParameters/);
    expect(app.child.exitCode).toBeNull();
    expect((await c.get('/api/me')).status).toBe(200);
    expect(await app.stop()).toBe(0);
  }, 60_000);
});
