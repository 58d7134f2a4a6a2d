/**
 * Many servers (issue 5, point 4): three app processes on one database behind a small
 * round-robin proxy. A login through one works on all, requests spread over all three, a
 * session value written on one is read on the others, and a logout (or revocation) on any is
 * refused on all of them at once — each had the session cached.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { csrfFrom, migratedDatabase } from '../app/harness.js';
import type { TestDatabase } from '../helpers/db.js';
import { Client } from '../helpers/http.js';
import { type AppProcess, createUsers, killAll, PASSWORD, sleep, startAppProcess } from './support.js';

let db: TestDatabase;
let apps: AppProcess[] = [];
let proxy: http.Server;
let proxyUrl: string;

beforeAll(async () => {
  db = await migratedDatabase();
  await createUsers(db.pool, ['alice@example.com', 'bob@example.com']);
  apps = await Promise.all([0, 1, 2].map(() => startAppProcess({ DATABASE_URL: db.url })));
  // The load balancer: round robin, a header saying which server answered.
  let next = 0;
  proxy = http.createServer((req, res) => {
    const index = next++ % apps.length;
    const upstream = http.request(
      { host: '127.0.0.1', port: apps[index]!.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, { ...up.headers, 'x-backend': String(index) });
        up.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  proxy?.closeAllConnections();
  await new Promise((resolve) => proxy?.close(resolve));
  await Promise.all(apps.map((a) => a.stop()));
  await killAll();
  await db?.drop();
}, 60_000);

/** A client on one backend, sharing another client's cookie jar value. */
function direct(app: AppProcess, cookie: string): Client {
  const c = new Client(app.url);
  c.jar.set('sessionId', cookie);
  return c;
}

async function status(app: AppProcess, cookie: string): Promise<number> {
  const res = await direct(app, cookie).get('/api/me');
  await res.arrayBuffer();
  return res.status;
}

/** Poll every backend until each refuses `cookie`; ms from `since` per backend (bounded). */
async function refusedEverywhere(cookie: string, since: number, timeoutMs = 3000): Promise<number[]> {
  return Promise.all(
    apps.map(async (app) => {
      while (Date.now() - since < timeoutMs) {
        if ((await status(app, cookie)) === 401) return Date.now() - since;
        await sleep(5);
      }
      return Number.POSITIVE_INFINITY;
    }),
  );
}

describe('three app processes behind a round-robin proxy', () => {
  it('a login through one works on all; requests spread; values written on one are read on the others', async () => {
    const alice = new Client(proxyUrl);
    const login = await alice.post('/login', { form: { email: 'alice@example.com', password: PASSWORD } });
    expect(login.status).toBe(303);
    const served = new Map<string, number>();
    for (let i = 0; i < 12; i++) {
      const res = await alice.get('/api/me');
      expect(res.status).toBe(200);
      expect(((await res.json()) as { email: string }).email).toBe('alice@example.com');
      const b = res.headers.get('x-backend')!;
      served.set(b, (served.get(b) ?? 0) + 1);
    }
    expect([...served.keys()].sort()).toEqual(['0', '1', '2']);
    for (const n of served.values()) expect(n).toBe(4);

    // The session's CSRF token (written at login, on whichever server took it) is the same on all.
    const cookie = alice.jar.get('sessionId')!;
    const tokens = await Promise.all(
      apps.map(async (app) => csrfFrom(await (await direct(app, cookie).get('/dashboard')).text())),
    );
    expect(new Set(tokens).size).toBe(1);

    // A session change on server 2 (password change: new id, new token, other sessions revoked),
    // read at once on servers 0 and 1, which had the old session cached.
    const changer = direct(apps[2]!, cookie);
    const changed = await changer.post('/account/password', {
      form: { currentPassword: PASSWORD, newPassword: 'another long passphrase 42', _csrf: tokens[0]! },
    });
    expect(changed.status).toBe(303);
    const renewed = changer.jar.get('sessionId')!;
    expect(renewed).not.toBe(cookie);
    expect(await status(apps[0]!, cookie)).toBe(401);
    expect(await status(apps[1]!, cookie)).toBe(401);
    const newTokens = await Promise.all(
      apps.map(async (app) => {
        const page = await direct(app, renewed).get('/dashboard');
        expect(page.status).toBe(200);
        return csrfFrom(await page.text());
      }),
    );
    expect(new Set(newTokens).size).toBe(1);
    expect(newTokens[0]).not.toBe(tokens[0]);
    // Application data written through one server is read on the others.
    await db.pool.query(
      `INSERT INTO servers (user_id, name) SELECT id, 'web-' || g FROM users, generate_series(1, 2) g WHERE email = 'alice@example.com'`,
    );
    const { rows } = await db.pool.query<{ id: string }>(
      `SELECT s.id FROM servers s JOIN users u ON u.id = s.user_id WHERE u.email = 'alice@example.com' ORDER BY s.id`,
    );
    const del = await direct(apps[1]!, renewed).post('/delete-server', {
      form: { serverId: rows[0]!.id, _csrf: newTokens[0]! },
    });
    expect(del.status).toBe(303);
    for (const app of [apps[0]!, apps[2]!]) {
      const html = await (await direct(app, renewed).get('/dashboard')).text();
      expect(html).not.toContain('web-1');
      expect(html).toContain('web-2');
    }
  }, 60_000);

  it('a logout or revocation on any server is refused on all three at once (< 500 ms)', async () => {
    const delays: number[] = [];
    for (let round = 0; round < 6; round++) {
      const bob = new Client(proxyUrl);
      expect(
        (await bob.post('/login', { form: { email: 'bob@example.com', password: PASSWORD } })).status,
      ).toBe(303);
      const cookie = bob.jar.get('sessionId')!;
      // Every server has the session cached.
      for (const app of apps) expect(await status(app, cookie)).toBe(200);
      const on = apps[round % 3]!;
      const csrf = csrfFrom(await (await direct(on, cookie).get('/dashboard')).text());
      let since: number;
      if (round % 2 === 0) {
        // Logout on one server.
        const res = await direct(on, cookie).post('/logout', { form: { _csrf: csrf } });
        since = Date.now();
        expect(res.status).toBe(303);
      } else {
        // "Log out everywhere else" from a second session, on one server.
        const other = new Client(on.url);
        expect(
          (await other.post('/login', { form: { email: 'bob@example.com', password: PASSWORD } })).status,
        ).toBe(303);
        const otherCsrf = csrfFrom(await (await other.get('/dashboard')).text());
        const res = await other.post('/account/sessions/revoke-others', { form: { _csrf: otherCsrf } });
        since = Date.now();
        expect(res.status).toBe(303);
        await other.post('/logout', { form: { _csrf: otherCsrf } });
      }
      const times = await refusedEverywhere(cookie, since);
      for (const t of times) expect(t).toBeLessThan(500);
      delays.push(...times);
    }
    console.log(
      `many-servers figures: ${JSON.stringify({ refusedWithinMs: { max: Math.max(...delays), samples: delays.length } })}`,
    );
  }, 90_000);
});
